/* Tests of src/identity/pwfile.c: lines made by pwfile_make_line load and
 * verify, wrong passwords and unknown users are refused, malformed files
 * name file:line, rehash detection. Uses libsodium's minimum argon2id
 * cost so the suite stays fast. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "identity/pwfile.h"

#define OPS crypto_pwhash_argon2id_OPSLIMIT_MIN
#define MEM crypto_pwhash_argon2id_MEMLIMIT_MIN

static void test_make_load_verify(void **state)
{
    (void)state;
    char text[1024], line[256];
    size_t off = 0;
    ssize_t n = pwfile_make_line("alice", "s3cret", 6, OPS, MEM, line, sizeof(line));
    assert_true(n > 0);
    assert_non_null(strstr(line, "alice:$argon2id$"));
    assert_int_equal(line[n - 1], '\n');
    off += (size_t)snprintf(text + off, sizeof(text) - off, "# operators\n\n%s", line);
    n = pwfile_make_line("bob", "", 0, OPS, MEM, line, sizeof(line));
    assert_true(n > 0);
    off += (size_t)snprintf(text + off, sizeof(text) - off, "%.*s\r\n", (int)n - 1, line);

    struct pwfile *pw = NULL;
    char err[256];
    assert_int_equal(pwfile_parse(text, off, "pw", &pw, err, sizeof(err)), 0);
    assert_int_equal(pwfile_count(pw), 2);
    assert_int_equal(pwfile_verify(pw, "alice", "s3cret", 6), 0);
    assert_int_equal(pwfile_verify(pw, "alice", "s3cret!", 7), PWFILE_ERR_MISMATCH);
    assert_int_equal(pwfile_verify(pw, "alice", "s3cre", 5), PWFILE_ERR_MISMATCH);
    assert_int_equal(pwfile_verify(pw, "bob", "", 0), 0);
    assert_int_equal(pwfile_verify(pw, "bob", "x", 1), PWFILE_ERR_MISMATCH);
    assert_int_equal(pwfile_verify(pw, "carol", "s3cret", 6), PWFILE_ERR_NO_USER);
    assert_int_equal(pwfile_verify(pw, "Alice", "s3cret", 6), PWFILE_ERR_NO_USER);
    assert_int_equal(pwfile_needs_rehash(pw, "alice", OPS, MEM), 0);
    assert_int_equal(pwfile_needs_rehash(pw, "alice", OPS + 1, MEM), 1);
    assert_int_equal(pwfile_needs_rehash(pw, "nobody", OPS, MEM), PWFILE_ERR_NO_USER);
    pwfile_free(pw);

    /* salted: the same password hashes differently */
    char l2[256];
    assert_true(pwfile_make_line("alice", "s3cret", 6, OPS, MEM, l2, sizeof(l2)) > 0);
    n = pwfile_make_line("alice", "s3cret", 6, OPS, MEM, line, sizeof(line));
    assert_string_not_equal(line, l2);
    assert_int_equal(pwfile_make_line("alice", "s3cret", 6, OPS, MEM, line, 20), PWFILE_ERR_SPACE);
}

static void expect_syntax(const char *text, const char *msg)
{
    struct pwfile *pw = NULL;
    char err[256] = "";
    assert_int_equal(pwfile_parse(text, strlen(text), "pw", &pw, err, sizeof(err)), PWFILE_ERR_SYNTAX);
    if (strstr(err, msg) == NULL)
        fail_msg("'%s' lacks '%s'", err, msg);
}

static void test_errors(void **state)
{
    (void)state;
    char line[256];
    assert_true(pwfile_make_line("u", "p", 1, OPS, MEM, line, sizeof(line)) > 0);
    char text[600];
    snprintf(text, sizeof(text), "%s%s", line, line);
    expect_syntax(text, "pw:2: duplicate username");
    expect_syntax("alice\n", "pw:1: expected username:hash");
    expect_syntax("\n:$argon2id$x\n", "pw:2: invalid username");
    expect_syntax("a:$2y$10$abc\n", "pw:1: hash is not an argon2id");
    expect_syntax("a:\n", "pw:1: hash is not");
    assert_int_equal(pwfile_make_line("a:b", "p", 1, OPS, MEM, line, sizeof(line)), PWFILE_ERR_ARGS);
    assert_int_equal(pwfile_make_line("", "p", 1, OPS, MEM, line, sizeof(line)), PWFILE_ERR_ARGS);
    assert_int_equal(pwfile_make_line("#x", "p", 1, OPS, MEM, line, sizeof(line)), PWFILE_ERR_ARGS);
    assert_int_equal(pwfile_make_line("a\tb", "p", 1, OPS, MEM, line, sizeof(line)), PWFILE_ERR_ARGS);
    struct pwfile *pw = NULL;
    char err[256];
    assert_int_equal(pwfile_load("/nonexistent/pw", &pw, err, sizeof(err)), PWFILE_ERR_IO);
    /* empty file: every user unknown */
    assert_int_equal(pwfile_parse("", 0, "pw", &pw, err, sizeof(err)), 0);
    assert_int_equal(pwfile_verify(pw, "a", "b", 1), PWFILE_ERR_NO_USER);
    pwfile_free(pw);
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/lmq_pw_XXXXXX", line[256], err[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    ssize_t n = pwfile_make_line("op", "pass word", 9, OPS, MEM, line, sizeof(line));
    assert_true(n > 0);
    fputs(line, f);
    fclose(f);
    struct pwfile *pw = NULL;
    assert_int_equal(pwfile_load(path, &pw, err, sizeof(err)), 0);
    assert_int_equal(pwfile_verify(pw, "op", "pass word", 9), 0);
    pwfile_free(pw);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_make_load_verify),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
