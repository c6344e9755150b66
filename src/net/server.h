/* The network side of ledgermqd: one libuv loop, the TCP listeners of the
 * config, and one connection object per socket that feeds received bytes to
 * the broker and writes its queued output with one writev per iteration.
 * Reads go into one shared 64 KiB buffer per loop; a connection keeps only
 * the unfinished tail of a packet, so an idle connection costs little.
 * Loop thread only. */
#ifndef LMQ_NET_SERVER_H
#define LMQ_NET_SERVER_H

#include "util/config.h"

#include <stddef.h>

struct lmq_server;

/* Creates the loop and the broker (which opens and loads the store). CFG is
 * borrowed and must outlive the server. NULL with a reason in ERR. */
struct lmq_server *lmq_server_new(const struct lmq_config *cfg, char *err, size_t errlen);

/* Binds every listener and logs "listening on ADDR:PORT" for each (with the
 * port the OS chose for port 0). Returns 0 or -1 with a reason in ERR. */
int lmq_server_listen(struct lmq_server *s, char *err, size_t errlen);

/* Runs until SIGINT/SIGTERM, then stops accepting, flushes, commits the
 * store and returns 0. */
int lmq_server_run(struct lmq_server *s);

void lmq_server_free(struct lmq_server *s);

#endif
