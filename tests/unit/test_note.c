/* Tests of src/crypto/note.c: the Go sumdb/note example (golang.org/x/mod
 * sumdb/note package documentation: PeterNeumann key, signature reproduced
 * byte for byte), a real cosigned CT log checkpoint with an Ed25519 log
 * signature (type 0x01) and a tlog-cosignature/v1 (type 0x04) from the
 * remora.n621.de witness, several signers, unknown keys, and malformed
 * notes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/hash.h"
#include "crypto/note.h"
#include "crypto/sign.h"

#define DASH "\xe2\x80\x94"

static const char go_vkey[] = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
static const char go_skey_b64[] = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"; /* 0x01 || seed */
static const char go_text[] = "If you think cryptography is the answer to your problem,\n"
                              "then you don't know what your problem is.\n";
static const char go_note[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n" DASH " PeterNeumann "
    "x08go/ZJkuBS9UG/"
    "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

/* A checkpoint of the arche2025h1.staging.ct.transparency.dev log, signed
 * by the log (0x05 RFC 6962 STH and 0x01 Ed25519) and four witnesses. */
static const char arche_note[] =
    "arche2025h1.staging.ct.transparency.dev\n"
    "1432088532\n"
    "U7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n"
    "\n" DASH " arche2025h1.staging.ct.transparency.dev "
    "zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFb"
    "on5Ch9MNL5zRNZ55lvGt0=\n" DASH " arche2025h1.staging.ct.transparency.dev "
    "ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/"
    "27lefwhUkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=\n" DASH
    " transparency.dev/DEV:witness-little-garden "
    "2AQqhwAAAABqEiEgzgFIqqhbUoDwjMWE6UP8nd8/"
    "KYTzwZ2rhIgcqoXHAwVkjZr4AscylP3v7sEodkRAErumC2q44vdgJY096st5BQ==\n" DASH
    " witness1.smartit.nu/witness1 "
    "pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/"
    "iEcxZ75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==\n" DASH " remora.n621.de "
    "2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk5XeU/"
    "zZ0WBxtqB0DrAWfBw==\n" DASH " witness.stagemole.eu "
    "Z/euoAAAAABqEiEgw0i+7g2ENfDAWHmtRzCfKTHSDwYDJA2NmKeGi9Y8FtEyOUvVr+AJmIY/"
    "2TUFucgKi7lI7cUiOvKFYe/TmN9DAg==\n";
static const char arche_vkey[] =
    "arche2025h1.staging.ct.transparency.dev+ba2f06c0+AU0vHmlGCS/PdN8b2OaGmKprLI8HKM+dJ472xgFYh15f";
static const char remora_vkey[] =
    "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";

static void parse_vkey(const char *s, struct note_verifier *v)
{
    assert_int_equal(note_verifier_parse(s, strlen(s), v), 0);
}

static void test_verifier_keys(void **state)
{
    (void)state;
    struct note_verifier v;
    char out[NOTE_VKEY_MAX];
    parse_vkey(go_vkey, &v);
    assert_string_equal(v.name, "PeterNeumann");
    assert_int_equal(v.key_id, 0xc74f20a3u);
    assert_int_equal(v.type, NOTE_SIG_ED25519);
    assert_int_equal(note_verifier_format(&v, out, sizeof out), (ssize_t)strlen(go_vkey));
    assert_string_equal(out, go_vkey);
    parse_vkey(remora_vkey, &v);
    assert_int_equal(v.type, NOTE_SIG_COSIGNATURE);
    assert_int_equal(note_verifier_format(&v, out, sizeof out), (ssize_t)strlen(remora_vkey));
    assert_string_equal(out, remora_vkey);

    /* every truncation and every single-byte change is rejected */
    size_t n = strlen(go_vkey);
    char buf[128];
    for (size_t i = 0; i < n; i++) {
        assert_int_not_equal(note_verifier_parse(go_vkey, i, &v), 0);
        memcpy(buf, go_vkey, n);
        buf[i] = (char)(buf[i] + 1);
        assert_int_not_equal(note_verifier_parse(buf, n, &v), 0);
    }
    static const char *const bad[] = {
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", /* upper-case hex */
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ApRc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", /* type 0x02 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_not_equal(note_verifier_parse(bad[i], strlen(bad[i]), &v), 0);
    uint8_t pk[32] = {0};
    assert_int_equal(note_verifier_init(&v, "a+b", pk), NOTE_ERR_ARGS);
    assert_int_equal(note_verifier_init(&v, "", pk), NOTE_ERR_ARGS);
    assert_int_equal(note_verifier_init(&v,
                                        "a\xc2\xa0"
                                        "b",
                                        pk),
                     NOTE_ERR_ARGS); /* NBSP */
    assert_int_equal(note_verifier_init(&v, "example.com/log", pk), 0);
}

static void go_signer(uint8_t pk[32], uint8_t sk[64])
{
    uint8_t k[33];
    assert_int_equal(crypto_b64_decode(go_skey_b64, strlen(go_skey_b64), k, sizeof k), 33);
    assert_int_equal(k[0], 1);
    assert_int_equal(crypto_ed25519_seed_keypair(pk, sk, k + 1), 0);
}

static void test_go_example(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    char out[1024];
    go_signer(pk, sk);
    struct note_verifier v;
    parse_vkey(go_vkey, &v);
    assert_memory_equal(v.pk, pk, 32);
    /* Ed25519 is deterministic: our signature is Go's, byte for byte. */
    ssize_t n = note_sign(go_text, strlen(go_text), "PeterNeumann", sk, pk, out, sizeof out);
    assert_int_equal(n, (ssize_t)strlen(go_note));
    assert_string_equal(out, go_note);

    bool signed_by[1];
    struct note_verified res;
    assert_int_equal(note_verify(go_note, strlen(go_note), &v, 1, signed_by, &res), 0);
    assert_true(signed_by[0]);
    assert_int_equal(res.n_verified, 1);
    assert_int_equal(res.n_sigs, 1);
    assert_int_equal(res.text_len, strlen(go_text));
    assert_memory_equal(res.text, go_text, res.text_len);

    char bad[1024];
    strcpy(bad, go_note);
    bad[10] = 'X';
    assert_int_equal(note_verify(bad, strlen(bad), &v, 1, signed_by, NULL), NOTE_ERR_BAD_SIGNATURE);
    assert_false(signed_by[0]);
    /* an unrelated verifier: nothing known signed */
    struct note_verifier other;
    parse_vkey("EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop", &other);
    assert_int_equal(note_verify(go_note, strlen(go_note), &other, 1, NULL, NULL),
                     NOTE_ERR_UNVERIFIED);
}

static void test_real_cosigned_checkpoint(void **state)
{
    (void)state;
    struct note_verifier v[2];
    bool signed_by[2];
    struct note_verified res;
    parse_vkey(arche_vkey, &v[0]);
    parse_vkey(remora_vkey, &v[1]);
    assert_int_equal(note_verify(arche_note, strlen(arche_note), v, 2, signed_by, &res), 0);
    assert_true(signed_by[0]);
    assert_true(signed_by[1]);
    assert_int_equal(res.n_verified, 2);
    assert_int_equal(res.n_sigs, 6);
    /* each alone */
    assert_int_equal(note_verify(arche_note, strlen(arche_note), &v[1], 1, NULL, NULL), 0);
    assert_int_equal(note_verify(arche_note, strlen(arche_note), &v[0], 1, NULL, NULL), 0);
    /* a clobbered size breaks both */
    char bad[2048];
    strcpy(bad, arche_note);
    char *p = strstr(bad, "1432088532");
    p[0] = '2';
    assert_int_equal(note_verify(bad, strlen(bad), &v[1], 1, NULL, NULL), NOTE_ERR_BAD_SIGNATURE);
    assert_int_equal(note_verify(bad, strlen(bad), &v[0], 1, NULL, NULL), NOTE_ERR_BAD_SIGNATURE);
}

struct signer {
    const char *name;
    uint8_t pk[32], sk[64];
    struct note_verifier v;
};

static void make_signer(struct signer *s, const char *name, uint8_t seed_byte, uint8_t type)
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof seed);
    s->name = name;
    assert_int_equal(crypto_ed25519_seed_keypair(s->pk, s->sk, seed), 0);
    assert_int_equal(note_verifier_init_type(&s->v, name, type, s->pk), 0);
}

static void test_several_signers(void **state)
{
    (void)state;
    struct signer a, b, c, w, stranger;
    make_signer(&a, "log.example/a", 1, NOTE_SIG_ED25519);
    make_signer(&b, "node-b.example", 2, NOTE_SIG_ED25519);
    make_signer(&c, "node-c.example", 3, NOTE_SIG_ED25519);
    make_signer(&w, "witness.example/w", 4, NOTE_SIG_COSIGNATURE);
    make_signer(&stranger, "node-b.example", 5, NOTE_SIG_ED25519); /* same name, other key */
    const char text[] = "log.example/a\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    char n1[2048], n2[2048], n3[2048], n4[2048], n5[2048];
    ssize_t l1 = note_sign(text, strlen(text), a.name, a.sk, a.pk, n1, sizeof n1);
    assert_true(l1 > 0);
    ssize_t l2 = note_add_signature(n1, (size_t)l1, b.name, b.sk, b.pk, n2, sizeof n2);
    assert_true(l2 > l1);
    ssize_t l3 = note_add_signature(n2, (size_t)l2, c.name, c.sk, c.pk, n3, sizeof n3);
    assert_true(l3 > l2);
    ssize_t l4 =
        note_add_cosignature(n3, (size_t)l3, w.name, 1700000000, w.sk, w.pk, n4, sizeof n4);
    assert_true(l4 > l3);
    ssize_t l5 =
        note_add_signature(n4, (size_t)l4, stranger.name, stranger.sk, stranger.pk, n5, sizeof n5);
    assert_true(l5 > l4);

    struct note_verifier all[4] = {a.v, b.v, c.v, w.v};
    bool sb[4];
    struct note_verified res;
    assert_int_equal(note_verify(n5, (size_t)l5, all, 4, sb, &res), 0);
    assert_true(sb[0] && sb[1] && sb[2] && sb[3]);
    assert_int_equal(res.n_verified, 4);
    assert_int_equal(res.n_sigs, 5); /* stranger's line is ignored */
    assert_int_equal(note_verify(n5, (size_t)l5, &stranger.v, 1, NULL, NULL), 0);
    struct note_verifier only_c = c.v;
    assert_int_equal(note_verify(n1, (size_t)l1, &only_c, 1, NULL, NULL), NOTE_ERR_UNVERIFIED);

    /* re-signing by a key already present replaces its line */
    char n6[2048];
    ssize_t l6 = note_add_signature(n5, (size_t)l5, b.name, b.sk, b.pk, n6, sizeof n6);
    assert_int_equal(l6, l5);
    assert_int_equal(note_verify(n6, (size_t)l6, all, 4, sb, &res), 0);
    assert_int_equal(res.n_sigs, 5);

    /* a duplicated line of a known key makes the note malformed */
    char dup[4096];
    const char *last = strrchr(n5, '\n');
    (void)last;
    const char *bline = strstr(n5, DASH " node-b.example ");
    const char *bend = strchr(bline, '\n') + 1;
    snprintf(dup, sizeof dup, "%s%.*s", n5, (int)(bend - bline), bline);
    assert_int_equal(note_verify(dup, strlen(dup), all, 4, NULL, NULL), NOTE_ERR_MALFORMED);
    /* ... but not if that key is unknown to the verifier */
    assert_int_equal(note_verify(dup, strlen(dup), &a.v, 1, NULL, NULL), 0);

    /* a forged line under a known name and key ID fails the whole note */
    char forged[4096];
    uint8_t fake[68] = {0};
    char fb[128];
    uint32_t id = c.v.key_id;
    fake[0] = (uint8_t)(id >> 24);
    fake[1] = (uint8_t)(id >> 16);
    fake[2] = (uint8_t)(id >> 8);
    fake[3] = (uint8_t)id;
    crypto_b64_encode(fake, sizeof fake, fb, sizeof fb);
    snprintf(forged, sizeof forged, "%s" DASH " node-c.example %s\n", n1, fb);
    struct note_verifier ac[2] = {a.v, c.v};
    assert_int_equal(note_verify(forged, strlen(forged), ac, 2, sb, NULL), NOTE_ERR_BAD_SIGNATURE);
    /* a cosignature with the wrong length is a bad signature too */
    assert_int_equal(note_verify(n5, (size_t)l5, &w.v, 1, NULL, NULL), 0);

    /* output too small */
    assert_int_equal(note_add_signature(n1, (size_t)l1, b.name, b.sk, b.pk, n2, (size_t)l1 + 10),
                     NOTE_ERR_SPACE);
    assert_int_equal(note_sign(text, strlen(text), a.name, a.sk, a.pk, n1, 20), NOTE_ERR_SPACE);
}

static void test_malformed(void **state)
{
    (void)state;
    struct note_verifier v;
    parse_vkey(go_vkey, &v);
    const char *sig =
        "x08go/ZJkuBS9UG/"
        "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";
    char buf[8192];
    const char *cases[] = {
        "",
        "\n",
        "text\n",                                   /* no signatures */
        "text\n\n",                                 /* blank line, no signatures */
        "text\n\n" DASH " PeterNeumann %s",         /* no final newline */
        "text\n" DASH " PeterNeumann %s\n",         /* no blank line */
        "text\n\n- PeterNeumann %s\n",              /* hyphen, not em dash */
        "text\n\n" DASH "PeterNeumann %s\n",        /* no space after dash */
        "text\n\n" DASH " PeterNeumann  %s\n",      /* two spaces */
        "text\n\n" DASH " Peter+Neumann %s\n",      /* plus in name */
        "text\n\n" DASH "  %s\n",                   /* empty name */
        "text\n\n" DASH " PeterNeumann %s=\n",      /* bad base64 */
        "text\n\n" DASH " PeterNeumann AAAAAA==\n", /* 4 bytes: key ID only */
        "text\n\n" DASH " PeterNeumann %s \n",      /* trailing space */
        "te\txt\n\n" DASH " PeterNeumann %s\n",     /* control character */
        "te\rxt\n\n" DASH " PeterNeumann %s\n",
        "te\xffxt\n\n" DASH " PeterNeumann %s\n", /* invalid UTF-8 */
        "text\n\n" DASH " PeterNeumann %s\n\n",   /* blank line at the end */
        "text\n\n" DASH " PeterNeumann %s\nnot a signature\n",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(buf, sizeof buf, cases[i], sig);
        int rc = note_verify(buf, strlen(buf), &v, 1, NULL, NULL);
        if (rc != NOTE_ERR_MALFORMED)
            fail_msg("case %zu accepted or misclassified (%d): %s", i, rc, buf);
    }
    /* 100 signatures are allowed, 101 are not */
    size_t o = (size_t)snprintf(buf, sizeof buf, "%s\n", go_text);
    for (int i = 0; i < NOTE_MAX_SIGS; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, DASH " k%d AAAAAAAA\n", i);
    o += (size_t)snprintf(buf + o, sizeof buf - o, DASH " PeterNeumann %s\n", sig);
    assert_int_equal(note_verify(buf, o, &v, 1, NULL, NULL), NOTE_ERR_MALFORMED);
    char *second = strchr(strstr(buf, DASH), '\n') + 1;
    memmove(strstr(buf, DASH), second, strlen(second) + 1);
    assert_int_equal(note_verify(buf, strlen(buf), &v, 1, NULL, NULL), 0);

    /* signing refuses bad text and names */
    uint8_t pk[32], sk[64];
    go_signer(pk, sk);
    assert_int_equal(note_sign("no newline", 10, "n", sk, pk, buf, sizeof buf), NOTE_ERR_ARGS);
    assert_int_equal(note_sign("", 0, "n", sk, pk, buf, sizeof buf), NOTE_ERR_ARGS);
    assert_int_equal(note_sign("ctl\x01\n", 5, "n", sk, pk, buf, sizeof buf), NOTE_ERR_ARGS);
    assert_int_equal(note_sign("ok\n", 3, "a b", sk, pk, buf, sizeof buf), NOTE_ERR_ARGS);
    /* text that itself contains blank lines still round-trips */
    const char t2[] = "para one\n\npara two\n\n";
    ssize_t l = note_sign(t2, strlen(t2), "PeterNeumann", sk, pk, buf, sizeof buf);
    assert_true(l > 0);
    struct note_verified res;
    assert_int_equal(note_verify(buf, (size_t)l, &v, 1, NULL, &res), 0);
    assert_int_equal(res.text_len, strlen(t2));
    const char *t;
    size_t tl, ns;
    assert_int_equal(note_split(buf, (size_t)l, &t, &tl, &ns), 0);
    assert_int_equal(tl, strlen(t2));
    assert_int_equal(ns, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verifier_keys),
        cmocka_unit_test(test_go_example),
        cmocka_unit_test(test_real_cosigned_checkpoint),
        cmocka_unit_test(test_several_signers),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
