/* The topic tree: one node per topic level, holding the subscriptions whose
 * filter ends at that node and the retained message whose topic names it.
 * Publishing walks the levels of a topic once (exact child, `+`, `#`);
 * subscribing with a wildcard walks the tree to find retained messages, so
 * neither scans all subscriptions or all retained topics.
 * Invariant: a node exists only while it has subscribers, a retained
 * message or children; `$`-topics are never matched by a leading `+`/`#`.
 * Filters and topics passed in must already be valid (mqtt/topic.h).
 * Loop thread only; not thread-safe. */
#ifndef LMQ_BROKER_TOPICTREE_H
#define LMQ_BROKER_TOPICTREE_H

#include "broker/msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lmq_tree;

/* One match of a published topic: the subscription's owner (a session) and
 * the granted QoS plus options (MQTT 5 subscription options later). */
struct lmq_match {
    void *owner;
    uint8_t qos;
    uint8_t opts;
};

/* A reusable result set for lmq_tree_match(): each owner appears once, with
 * the highest granted QoS of its matching subscriptions. */
struct lmq_match_set {
    struct lmq_match *v;
    size_t n, cap;
    uint32_t *index;        /* open-addressing slots: entry index + 1, 0 = empty */
    size_t index_cap;
};

struct lmq_tree *lmq_tree_new(void);
/* Frees the tree and drops its references to retained messages. */
void lmq_tree_free(struct lmq_tree *t);

/* Adds (or, if OWNER already has FILTER, updates the QoS of) a subscription.
 * *EXISTED tells which. Returns 0 or -ENOMEM. */
int lmq_tree_subscribe(struct lmq_tree *t, const char *filter, size_t len, void *owner,
                       uint8_t qos, uint8_t opts, bool *existed);

/* Removes OWNER's subscription to FILTER. Returns 0, or -ENOENT if none. */
int lmq_tree_unsubscribe(struct lmq_tree *t, const char *filter, size_t len, void *owner);

/* Fills SET (cleared first) with the subscriptions matching TOPIC, one entry
 * per owner at its highest QoS. Returns 0 or -ENOMEM. */
int lmq_tree_match(struct lmq_tree *t, const char *topic, size_t len, struct lmq_match_set *set);

void lmq_match_set_free(struct lmq_match_set *set);

/* Sets the retained message for MSG's topic (takes a new reference), or
 * deletes it when MSG is NULL. *DELTA gets +1 (new topic), 0 (replaced or
 * nothing to delete) or -1 (deleted). Returns 0 or -ENOMEM. */
int lmq_tree_retain(struct lmq_tree *t, const char *topic, size_t len, struct lmq_msg *msg,
                    int *delta);

/* Returns the retained message of TOPIC (borrowed) or NULL. */
struct lmq_msg *lmq_tree_retained(struct lmq_tree *t, const char *topic, size_t len);

/* Calls FN for every retained message whose topic matches FILTER. */
typedef void (*lmq_tree_retained_fn)(void *ctx, struct lmq_msg *msg);
void lmq_tree_match_retained(struct lmq_tree *t, const char *filter, size_t len,
                             lmq_tree_retained_fn fn, void *ctx);

size_t lmq_tree_retained_count(const struct lmq_tree *t);
size_t lmq_tree_node_count(const struct lmq_tree *t);

#endif
