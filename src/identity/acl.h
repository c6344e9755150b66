/* Access control lists in Mosquitto's acl_file style (docs/FORMATS.md
 * "ACL file"): `user NAME` and `device ID` sections, `topic [read|write|
 * readwrite|deny] FILTER` rules inside them (before any section: rules for
 * anonymous clients, i.e. no username and no device id), and `pattern
 * [access] FILTER` rules that apply to every client, with %c (client id),
 * %u (username) and %d (device id) substituted. Deny rules win over every
 * grant; no matching grant means denied.
 *
 * The parsed ACL is immutable: acl_check may be called from any number of
 * threads at once. Reload on SIGHUP = parse a new one, swap the pointer,
 * free the old one when no thread uses it. */
#ifndef LMQ_IDENTITY_ACL_H
#define LMQ_IDENTITY_ACL_H

#include <stddef.h>

#define ACL_READ 1      /* receive a message published on a topic name */
#define ACL_WRITE 2     /* publish to a topic name */
#define ACL_SUBSCRIBE 4 /* subscribe to a topic filter */
#define ACL_LINE_MAX 65536

enum acl_err {
    ACL_ERR_DENIED = -2200,
    ACL_ERR_SYNTAX = -2201, /* parse error; err names file:line */
    ACL_ERR_IO = -2202,
    ACL_ERR_NOMEM = -2203,
    ACL_ERR_ARGS = -2204,
};

struct acl;

/* Parses text[0:len]; name is used in error messages ("name:line: ...").
 * On success *out owns a new ACL (free with acl_free). */
int acl_parse(const char *text, size_t len, const char *name, struct acl **out, char *err,
              size_t errlen);
/* Reads and parses the file at path. */
int acl_load(const char *path, struct acl **out, char *err, size_t errlen);
void acl_free(struct acl *acl);
size_t acl_rule_count(const struct acl *acl);

/* 0 if allowed, ACL_ERR_DENIED otherwise. username, client_id and
 * device_id may be NULL (absent). topic is NUL-terminated: a topic name
 * for ACL_READ / ACL_WRITE, a filter for ACL_SUBSCRIBE (strip a
 * "$share/group/" prefix first). A subscription is allowed when a
 * read-granting rule covers the whole filter (every topic the filter can
 * match is matched by the rule) and no deny rule covers it; see
 * acl_subscribe_partial for deny rules that cover only part of it.
 * An identity containing '+' or '#' is denied everything when the ACL has
 * pattern rules (as in Mosquitto). */
int acl_check(const struct acl *acl, const char *username, const char *client_id,
              const char *device_id, const char *topic, int access);

/* 1 if an applicable deny rule matches some but not all topics of an
 * allowed subscription filter: the broker must then check ACL_READ for
 * each message it delivers through that subscription. 0 otherwise. */
int acl_subscribe_partial(const struct acl *acl, const char *username, const char *client_id,
                          const char *device_id, const char *filter);

/* Topic filter relations (MQTT 3.1.1 §4.7, '$' topics not matched by a
 * leading wildcard). Exposed for tests. */
int acl_filter_covers(const char *outer, const char *inner); /* every match of inner matches outer */
int acl_filter_intersects(const char *a, const char *b);     /* some topic matches both */

#endif
