/* A fixed pool of worker threads for CPU work that must not run on the
 * network loop (Ed25519 verification of envelopes and tokens, password
 * hashing, ...), with completions handed back to the owner's thread.
 *
 * A job is a struct lmq_work embedded in the caller's own object (no
 * allocation here): the caller fills work and done and submits it. WORK
 * runs on a worker thread; when it returns, the job goes to the completion
 * list and the pool calls NOTIFY (from the worker thread: it must only
 * wake the owner, e.g. uv_async_send). The owner then calls
 * lmq_workpool_drain on its own thread, which runs the DONE callbacks
 * there, in completion order. A job's object must stay alive until its
 * DONE has run; DONE may free it, and may submit new jobs.
 *
 * Jobs of one submitter finish in any order: a caller that needs order
 * (the ledger pipeline keeps each publisher's messages in order) keeps its
 * own sequence and waits for the earlier ones.
 *
 * Threads: submit, drain and pending from the owner's thread only;
 * lmq_workpool_free after the owner stopped submitting. */
#ifndef LMQ_UTIL_WORKPOOL_H
#define LMQ_UTIL_WORKPOOL_H

#include <stddef.h>

struct lmq_workpool;

struct lmq_work {
    void (*work)(struct lmq_work *w); /* worker thread */
    void (*done)(struct lmq_work *w); /* owner's thread, in lmq_workpool_drain */
    struct lmq_work *next;            /* the pool's */
};

#define LMQ_WORKPOOL_MAX_THREADS 64

/* Starts THREADS workers (0 = one per online CPU, at most
 * LMQ_WORKPOOL_MAX_THREADS). NOTIFY(CTX) is called from a worker thread
 * when the completion list goes from empty to not empty. Returns NULL if
 * a thread could not be started (errno set). */
struct lmq_workpool *lmq_workpool_new(unsigned threads, void (*notify)(void *ctx), void *ctx);

/* Queues W (its work and done set). Never fails and never blocks: the
 * number of jobs in flight is bounded by the callers (the broker bounds
 * its pending verifications by the ingest queue's limits). */
void lmq_workpool_submit(struct lmq_workpool *p, struct lmq_work *w);

/* Any thread: puts W (its work NULL, its done set) straight on the
 * completion list, so that its DONE runs in the owner's next drain; for
 * threads of the caller's own that hand results to the owner's thread
 * (the ledger committer, cluster/batcher.h). Not counted by
 * lmq_workpool_pending. W must not be posted again before its DONE ran. */
void lmq_workpool_post(struct lmq_workpool *p, struct lmq_work *w);

/* Runs the DONE callback of every finished job. Returns how many ran. */
size_t lmq_workpool_drain(struct lmq_workpool *p);

/* Jobs submitted whose DONE has not run yet. */
size_t lmq_workpool_pending(const struct lmq_workpool *p);

/* Number of worker threads. */
unsigned lmq_workpool_threads(const struct lmq_workpool *p);

/* Waits for the jobs in the queue to finish, runs their DONE callbacks,
 * stops the threads and frees the pool. NULL is allowed. */
void lmq_workpool_free(struct lmq_workpool *p);

#endif
