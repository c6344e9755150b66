/* MQTT topic names and topic filters: validation, matching, shared
 * subscription parsing and a level iterator for topic trees. Pure: no I/O,
 * no allocation; any thread.
 * Invariant: mqtt_topic_matches() implements MQTT 3.1.1 §4.7 / 5.0 §4.7
 * exactly, including "a/#" matching "a" and a leading wildcard never
 * matching a topic name that starts with '$'. Topics are (ptr, len) and
 * need not be NUL-terminated. Errors are enum mqtt_err codes (codec.h). */
#ifndef LMQ_MQTT_TOPIC_H
#define LMQ_MQTT_TOPIC_H

#include "mqtt/codec.h"

#include <stdbool.h>
#include <stddef.h>

/* Validates a topic name (as in PUBLISH or a will): non-empty, at most
 * MAX_LEN bytes (0 = 65535), at most MAX_LEVELS levels (0 = no limit),
 * MQTT UTF-8 (mqtt_utf8_check), no '+' or '#'. Returns MQTT_OK,
 * MQTT_E_TOPIC_EMPTY, MQTT_E_TOPIC_TOO_LONG, MQTT_E_TOPIC_TOO_DEEP,
 * MQTT_E_UTF8 or MQTT_E_TOPIC_WILDCARD. */
int mqtt_topic_name_check(const char *name, size_t len, size_t max_len, unsigned max_levels);

/* Validates a topic filter: non-empty, limits as above, MQTT UTF-8, '#'
 * only alone in the last level, '+' only alone in its level. A shared
 * subscription "$share/group/filter" is validated as a whole: the group
 * (non-empty, no '+', '#') and the filter after it (limits apply to the
 * whole string, levels to the inner filter). Returns MQTT_OK or
 * MQTT_E_TOPIC_EMPTY, MQTT_E_TOPIC_TOO_LONG, MQTT_E_TOPIC_TOO_DEEP,
 * MQTT_E_UTF8, MQTT_E_FILTER_HASH, MQTT_E_FILTER_PLUS,
 * MQTT_E_SHARE_GROUP, MQTT_E_SHARE_FILTER. */
int mqtt_topic_filter_check(const char *filter, size_t len, size_t max_len, unsigned max_levels);

/* True if the (valid) topic FILTER matches the (valid) topic NAME.
 * Shared subscriptions are not unwrapped here: pass the inner filter. */
bool mqtt_topic_matches(const char *filter, size_t filter_len, const char *name, size_t name_len);

/* True if FILTER contains '+' or '#'. */
bool mqtt_topic_has_wildcard(const char *filter, size_t len);

/* A shared subscription "$share/{group}/{filter}". */
struct mqtt_share {
    struct mqtt_str group;  /* points into the input */
    struct mqtt_str filter; /* points into the input */
};

/* Splits FILTER. Returns 1 with *OUT set if it is a shared subscription,
 * 0 if it does not start with "$share/" (OUT untouched), or
 * MQTT_E_SHARE_GROUP (empty group, or '+' / '#' in it) or
 * MQTT_E_SHARE_FILTER (no '/' after the group, or an empty filter). The
 * inner filter itself is not validated: use mqtt_topic_filter_check(). */
int mqtt_topic_share_parse(const char *filter, size_t len, struct mqtt_share *out);

/* Iterates the levels of a topic name or filter: "a//b/" yields "a", "",
 * "b", "". An empty topic yields one empty level. */
struct mqtt_topic_iter {
    const char *p, *end;
    bool done;
};
void mqtt_topic_iter_init(struct mqtt_topic_iter *it, const char *topic, size_t len);
/* Stores the next level in *LEVEL and *LEVEL_LEN (not NUL-terminated);
 * false when there are no more levels. */
bool mqtt_topic_next(struct mqtt_topic_iter *it, const char **level, size_t *level_len);

/* Number of levels ('/' count + 1). */
size_t mqtt_topic_levels(const char *topic, size_t len);

#endif
