/* Topic names and filters (see topic.h). Matching walks filter and name
 * once, level by level, without splitting or copying; the '$' rule and
 * the "a/# matches a" rule are the only special cases.
 * Invariant: nothing here reads outside [ptr, ptr + len). */
#include "mqtt/topic.h"

#include <string.h>

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7

size_t mqtt_topic_levels(const char *topic, size_t len)
{
    size_t n = 1;
    const char *p = topic, *end = topic + len;
    while (p < end) {
        const char *s = memchr(p, '/', (size_t)(end - p));
        if (!s)
            break;
        n++;
        p = s + 1;
    }
    return n;
}

bool mqtt_topic_has_wildcard(const char *filter, size_t len)
{
    return len && (memchr(filter, '+', len) || memchr(filter, '#', len));
}

static int check_common(const char *t, size_t len, size_t max_len)
{
    if (len == 0)
        return MQTT_E_TOPIC_EMPTY;
    if (len > (max_len ? max_len : 65535))
        return MQTT_E_TOPIC_TOO_LONG;
    if (mqtt_utf8_check((const uint8_t *)t, len) < 0)
        return MQTT_E_UTF8;
    return MQTT_OK;
}

int mqtt_topic_name_check(const char *name, size_t len, size_t max_len, unsigned max_levels)
{
    int rc = check_common(name, len, max_len);
    if (rc < 0)
        return rc;
    if (mqtt_topic_has_wildcard(name, len))
        return MQTT_E_TOPIC_WILDCARD;
    if (max_levels && mqtt_topic_levels(name, len) > max_levels)
        return MQTT_E_TOPIC_TOO_DEEP;
    return MQTT_OK;
}

int mqtt_topic_filter_check(const char *filter, size_t len, size_t max_len, unsigned max_levels)
{
    int rc = check_common(filter, len, max_len);
    if (rc < 0)
        return rc;
    struct mqtt_share sh;
    rc = mqtt_topic_share_parse(filter, len, &sh);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        filter = sh.filter.ptr;
        len = sh.filter.len;
    }
    size_t levels = 0;
    struct mqtt_topic_iter it;
    const char *lv;
    size_t ll;
    mqtt_topic_iter_init(&it, filter, len);
    while (mqtt_topic_next(&it, &lv, &ll)) {
        levels++;
        if (ll == 0)
            continue;
        if (memchr(lv, '#', ll)) {
            if (ll != 1 || !it.done)
                return MQTT_E_FILTER_HASH;
        } else if (memchr(lv, '+', ll)) {
            if (ll != 1)
                return MQTT_E_FILTER_PLUS;
        }
    }
    if (max_levels && levels > max_levels)
        return MQTT_E_TOPIC_TOO_DEEP;
    return MQTT_OK;
}

bool mqtt_topic_matches(const char *f, size_t fl, const char *n, size_t nl)
{
    if (fl && (f[0] == '+' || f[0] == '#') && nl && n[0] == '$')
        return false;
    size_t i = 0, j = 0;
    while (i < fl) {
        if (f[i] == '#')
            return true; /* '#' is the whole last level: matches the rest */
        if (f[i] == '+') {
            while (j < nl && n[j] != '/')
                j++;
            i++;
        } else {
            while (i < fl && f[i] != '/') {
                if (j >= nl || n[j] != f[i])
                    return false;
                i++;
                j++;
            }
            if (j < nl && n[j] != '/')
                return false;
        }
        /* Both at the end of a level: f[i] and n[j] are '/' or the end. */
        if (i == fl)
            return j == nl;
        if (j == nl)
            return fl - i == 2 && f[i + 1] == '#'; /* "a/#" matches "a" */
        i++;
        j++;
    }
    return j == nl;
}

int mqtt_topic_share_parse(const char *filter, size_t len, struct mqtt_share *out)
{
    if (len < SHARE_PREFIX_LEN || memcmp(filter, SHARE_PREFIX, SHARE_PREFIX_LEN) != 0)
        return 0;
    const char *g = filter + SHARE_PREFIX_LEN;
    size_t rest = len - SHARE_PREFIX_LEN;
    const char *slash = memchr(g, '/', rest);
    size_t gl = slash ? (size_t)(slash - g) : rest;
    if (gl == 0 || mqtt_topic_has_wildcard(g, gl))
        return MQTT_E_SHARE_GROUP;
    if (!slash || (size_t)(slash + 1 - g) >= rest)
        return MQTT_E_SHARE_FILTER;
    out->group.ptr = g;
    out->group.len = gl;
    out->filter.ptr = slash + 1;
    out->filter.len = rest - gl - 1;
    return 1;
}

void mqtt_topic_iter_init(struct mqtt_topic_iter *it, const char *topic, size_t len)
{
    it->p = topic;
    it->end = topic + len;
    it->done = false;
}

bool mqtt_topic_next(struct mqtt_topic_iter *it, const char **level, size_t *level_len)
{
    if (it->done)
        return false;
    const char *s = it->p < it->end ? memchr(it->p, '/', (size_t)(it->end - it->p)) : NULL;
    *level = it->p;
    if (s) {
        *level_len = (size_t)(s - it->p);
        it->p = s + 1;
    } else {
        *level_len = (size_t)(it->end - it->p);
        it->p = it->end;
        it->done = true;
    }
    return true;
}
