/* Tests for src/mqtt/topic.c: topic name and filter validation, the
 * matching table from MQTT 3.1.1 / 5.0 §4.7 (plus '$' topics, leading
 * slashes and empty levels), shared subscription parsing and the level
 * iterator. Matching is cross-checked against a naive level-splitting
 * reference on generated topics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/topic.h"

static int name_check(const char *s)
{
    return mqtt_topic_name_check(s, strlen(s), 0, 0);
}

static int filter_check(const char *s)
{
    return mqtt_topic_filter_check(s, strlen(s), 0, 0);
}

static void test_name_check(void **state)
{
    (void)state;
    static const char *ok[] = {"a",         "a/b",    "/",   "//",    "/a",
                               "a/",        "$SYS/x", "a b", "ü/€/😀", "sport/tennis/player1",
                               "$share/g/x"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (name_check(ok[i]) != MQTT_OK)
            fail_msg("rejected name %s", ok[i]);
    assert_int_equal(name_check(""), MQTT_E_TOPIC_EMPTY);
    assert_int_equal(name_check("a/+"), MQTT_E_TOPIC_WILDCARD);
    assert_int_equal(name_check("#"), MQTT_E_TOPIC_WILDCARD);
    assert_int_equal(name_check("a+b"), MQTT_E_TOPIC_WILDCARD);
    assert_int_equal(mqtt_topic_name_check("a\0b", 3, 0, 0), MQTT_E_UTF8);
    assert_int_equal(name_check("a\xC0\x80"), MQTT_E_UTF8);
    assert_int_equal(name_check("\xED\xA0\x80"), MQTT_E_UTF8);
    /* limits */
    assert_int_equal(mqtt_topic_name_check("abcd", 4, 4, 0), MQTT_OK);
    assert_int_equal(mqtt_topic_name_check("abcde", 5, 4, 0), MQTT_E_TOPIC_TOO_LONG);
    assert_int_equal(mqtt_topic_name_check("a/b/c", 5, 0, 3), MQTT_OK);
    assert_int_equal(mqtt_topic_name_check("a/b/c/", 6, 0, 3), MQTT_E_TOPIC_TOO_DEEP);
    static char big[70000];
    memset(big, 'a', sizeof big);
    assert_int_equal(mqtt_topic_name_check(big, 65535, 0, 0), MQTT_OK);
    assert_int_equal(mqtt_topic_name_check(big, 65536, 0, 0), MQTT_E_TOPIC_TOO_LONG);
    assert_int_equal(mqtt_err_reason(MQTT_E_TOPIC_WILDCARD), 0x90);
}

static void test_filter_check(void **state)
{
    (void)state;
    static const char *ok[] = {"#",
                               "+",
                               "+/+",
                               "/+",
                               "+/",
                               "a/#",
                               "a/+/b",
                               "a/+/#",
                               "/#",
                               "//",
                               "$SYS/#",
                               "sport/tennis/player1/#",
                               "sport/+/player1",
                               "+/#",
                               "$share/g/a/#",
                               "$share/g/+",
                               "$share/g//",
                               "$shareX/#",
                               "$share"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (filter_check(ok[i]) != MQTT_OK)
            fail_msg("rejected filter %s", ok[i]);
    assert_int_equal(filter_check(""), MQTT_E_TOPIC_EMPTY);
    assert_int_equal(filter_check("a#"), MQTT_E_FILTER_HASH);
    assert_int_equal(filter_check("a/#/b"), MQTT_E_FILTER_HASH);
    assert_int_equal(filter_check("#/"), MQTT_E_FILTER_HASH);
    assert_int_equal(filter_check("##"), MQTT_E_FILTER_HASH);
    assert_int_equal(filter_check("sport/tennis#"), MQTT_E_FILTER_HASH);
    assert_int_equal(filter_check("a+"), MQTT_E_FILTER_PLUS);
    assert_int_equal(filter_check("sport+"), MQTT_E_FILTER_PLUS);
    assert_int_equal(filter_check("a/++/b"), MQTT_E_FILTER_PLUS);
    assert_int_equal(filter_check("+a/b"), MQTT_E_FILTER_PLUS);
    assert_int_equal(filter_check("a/\xFF"), MQTT_E_UTF8);
    assert_int_equal(filter_check("$share//a"), MQTT_E_SHARE_GROUP);
    assert_int_equal(filter_check("$share/g+/a"), MQTT_E_SHARE_GROUP);
    assert_int_equal(filter_check("$share/#/a"), MQTT_E_SHARE_GROUP);
    assert_int_equal(filter_check("$share/"), MQTT_E_SHARE_GROUP);
    assert_int_equal(filter_check("$share/g"), MQTT_E_SHARE_FILTER);
    assert_int_equal(filter_check("$share/g/"), MQTT_E_SHARE_FILTER);
    assert_int_equal(filter_check("$share/g/a#"), MQTT_E_FILTER_HASH);
    assert_int_equal(mqtt_topic_filter_check("a/b/#", 5, 0, 3), MQTT_OK);
    assert_int_equal(mqtt_topic_filter_check("a/b/c/#", 7, 0, 3), MQTT_E_TOPIC_TOO_DEEP);
    assert_int_equal(mqtt_topic_filter_check("$share/g/a/b", 12, 0, 2), MQTT_OK);
    assert_int_equal(mqtt_topic_filter_check("$share/g/a/b", 12, 11, 0), MQTT_E_TOPIC_TOO_LONG);
    assert_int_equal(mqtt_err_reason(MQTT_E_FILTER_PLUS), 0x8F);
    assert_int_equal(mqtt_err_reason(MQTT_E_SHARE_GROUP), 0x8F);
}

static const struct {
    const char *filter, *name;
    bool match;
} table[] = {
    /* MQTT §4.7.1.2 */
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/#", "sport", true},
    {"#", "sport", true},
    {"#", "/", true},
    {"#", "a/b/c", true},
    {"a/#", "a", true},
    {"a/#", "a/", true},
    {"a/#", "ab", false},
    {"a/#", "b", false},
    {"a/b/#", "a", false},
    /* §4.7.1.3 */
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player2", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+", "sport", true},
    {"+", "/", false},
    {"+", "", true},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"+/+", "a", false},
    {"+/+", "a/b", true},
    {"+/+", "a/b/c", false},
    {"+/#", "a", true},
    {"+/#", "a/b/c", true},
    {"a/+/#", "a/b", true},
    {"a/+/#", "a", false},
    {"a/+/c", "a//c", true},
    {"a/+/c", "a/c", false},
    /* §4.7.2: '$' topics */
    {"#", "$SYS", false},
    {"#", "$SYS/monitor/Clients", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"$SYS/#", "$SYS/monitor/Clients", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"+", "$", false},
    {"a/+", "a/$x", true},
    {"a/#", "a/$x", true},
    /* exact, leading slash, empty levels */
    {"a/b", "a/b", true},
    {"a/b", "a/b/", false},
    {"a/b/", "a/b/", true},
    {"a/b", "a/bc", false},
    {"a/bc", "a/b", false},
    {"/a", "a", false},
    {"a", "/a", false},
    {"/", "/", true},
    {"//", "//", true},
    {"//", "/", false},
    {"+/+/+", "//", true},
    {"/#", "/", true},
    {"/#", "/a/b", true},
    {"/#", "a", false},
    {"a//b", "a//b", true},
    {"a/+/b", "a//b", true},
    {"a/#", "a//", true},
    {"A", "a", false},
};

/* Naive reference: split both on '/', compare level lists. */
static bool ref_match(const char *f, const char *n)
{
    if ((f[0] == '+' || f[0] == '#') && n[0] == '$')
        return false;
    const char *fl[64], *nl[64];
    size_t fll[64], nll[64], fc = 0, nc = 0;
    struct mqtt_topic_iter it;
    mqtt_topic_iter_init(&it, f, strlen(f));
    while (fc < 64 && mqtt_topic_next(&it, &fl[fc], &fll[fc]))
        fc++;
    mqtt_topic_iter_init(&it, n, strlen(n));
    while (nc < 64 && mqtt_topic_next(&it, &nl[nc], &nll[nc]))
        nc++;
    size_t i;
    for (i = 0; i < fc; i++) {
        if (fll[i] == 1 && fl[i][0] == '#')
            return true;
        if (i >= nc)
            return false;
        if (fll[i] == 1 && fl[i][0] == '+')
            continue;
        if (fll[i] != nll[i] || memcmp(fl[i], nl[i], fll[i]) != 0)
            return false;
    }
    if (i == nc)
        return true;
    return false;
}

static void test_matches_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        bool m = mqtt_topic_matches(table[i].filter, strlen(table[i].filter), table[i].name,
                                    strlen(table[i].name));
        if (m != table[i].match)
            fail_msg("'%s' vs '%s': got %d", table[i].filter, table[i].name, m);
        if (table[i].name[0] && ref_match(table[i].filter, table[i].name) != m)
            fail_msg("reference disagrees on '%s' vs '%s'", table[i].filter, table[i].name);
    }
    /* not NUL-terminated inputs: lengths are honoured */
    assert_true(mqtt_topic_matches("a/bXXX", 3, "a/bYYY", 3));
    assert_false(mqtt_topic_matches("a/b", 3, "a/bc", 4));
}

/* Every filter and name over a small alphabet, against the reference,
 * with the "a/# matches a" rule handled by the reference's level walk. */
static void test_matches_exhaustive(void **state)
{
    (void)state;
    static const char alpha[] = {'a', 'b', '/', '+', '#', '$'};
    char f[8], n[8];
    unsigned checked = 0;
    for (unsigned fl = 1; fl <= 5; fl++) {
        unsigned fcount = 1;
        for (unsigned k = 0; k < fl; k++)
            fcount *= 6;
        for (unsigned fi = 0; fi < fcount; fi++) {
            unsigned x = fi;
            for (unsigned k = 0; k < fl; k++) {
                f[k] = alpha[x % 6];
                x /= 6;
            }
            f[fl] = 0;
            if (filter_check(f) != MQTT_OK)
                continue;
            for (unsigned nl = 1; nl <= 4; nl++) {
                unsigned ncount = 1;
                for (unsigned k = 0; k < nl; k++)
                    ncount *= 4;
                for (unsigned ni = 0; ni < ncount; ni++) {
                    static const char nalpha[] = {'a', 'b', '/', '$'};
                    x = ni;
                    for (unsigned k = 0; k < nl; k++) {
                        n[k] = nalpha[x % 4];
                        x /= 4;
                    }
                    n[nl] = 0;
                    bool got = mqtt_topic_matches(f, fl, n, nl);
                    if (got != ref_match(f, n))
                        fail_msg("'%s' vs '%s': got %d", f, n, got);
                    checked++;
                }
            }
        }
    }
    assert_true(checked > 10000);
}

static void test_share_parse(void **state)
{
    (void)state;
    struct mqtt_share sh;
    const char *s = "$share/grp/a/+/#";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), 1);
    assert_int_equal(sh.group.len, 3);
    assert_memory_equal(sh.group.ptr, "grp", 3);
    assert_int_equal(sh.filter.len, 5);
    assert_memory_equal(sh.filter.ptr, "a/+/#", 5);
    s = "$share/g//";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), 1);
    assert_int_equal(sh.filter.len, 1);
    s = "a/b";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), 0);
    s = "$SHARE/g/a";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), 0);
    s = "$share";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), 0);
    s = "$share/";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), MQTT_E_SHARE_GROUP);
    s = "$share//x";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), MQTT_E_SHARE_GROUP);
    s = "$share/a+b/x";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), MQTT_E_SHARE_GROUP);
    s = "$share/g";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), MQTT_E_SHARE_FILTER);
    s = "$share/g/";
    assert_int_equal(mqtt_topic_share_parse(s, strlen(s), &sh), MQTT_E_SHARE_FILTER);
}

static void test_iter(void **state)
{
    (void)state;
    static const struct {
        const char *topic;
        const char *levels[6];
        size_t n;
    } cases[] = {
        {"a//b/", {"a", "", "b", ""}, 4},   {"", {""}, 1}, {"/", {"", ""}, 2}, {"abc", {"abc"}, 1},
        {"/a/+/#", {"", "a", "+", "#"}, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mqtt_topic_iter it;
        const char *lv;
        size_t ll, k = 0;
        mqtt_topic_iter_init(&it, cases[i].topic, strlen(cases[i].topic));
        while (mqtt_topic_next(&it, &lv, &ll)) {
            assert_true(k < cases[i].n);
            assert_int_equal(ll, strlen(cases[i].levels[k]));
            assert_memory_equal(lv, cases[i].levels[k], ll);
            k++;
        }
        assert_int_equal(k, cases[i].n);
        assert_false(mqtt_topic_next(&it, &lv, &ll));
        assert_int_equal(mqtt_topic_levels(cases[i].topic, strlen(cases[i].topic)), cases[i].n);
    }
    assert_true(mqtt_topic_has_wildcard("a/+", 3));
    assert_true(mqtt_topic_has_wildcard("#", 1));
    assert_false(mqtt_topic_has_wildcard("a/b", 3));
    assert_false(mqtt_topic_has_wildcard("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_check),    cmocka_unit_test(test_filter_check),
        cmocka_unit_test(test_matches_table), cmocka_unit_test(test_matches_exhaustive),
        cmocka_unit_test(test_share_parse),   cmocka_unit_test(test_iter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
