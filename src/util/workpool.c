/* Worker pool: one mutex guards the job queue and the completion list;
 * workers sleep on a condition variable. The owner's thread drains the
 * completion list in one swap, so DONE callbacks run without the lock
 * and may submit again. */
#include "util/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

struct lmq_workpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct lmq_work *q_head, *q_tail;       /* submitted, not started */
    struct lmq_work *done_head, *done_tail; /* finished, DONE not run */
    size_t pending;                         /* owner's thread only */
    bool stopping;
    void (*notify)(void *ctx);
    void *notify_ctx;
    unsigned n_threads;
    pthread_t threads[LMQ_WORKPOOL_MAX_THREADS];
};

static void *workpool__main(void *arg)
{
    struct lmq_workpool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->q_head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        struct lmq_work *w = p->q_head;
        if (!w)
            break; /* stopping and nothing left */
        p->q_head = w->next;
        if (!p->q_head)
            p->q_tail = NULL;
        pthread_mutex_unlock(&p->mu);

        w->work(w);
        w->next = NULL;

        pthread_mutex_lock(&p->mu);
        bool was_empty = p->done_head == NULL;
        if (p->done_tail)
            p->done_tail->next = w;
        else
            p->done_head = w;
        p->done_tail = w;
        if (was_empty && p->notify) {
            /* Outside the lock: notify may take locks of its own. */
            pthread_mutex_unlock(&p->mu);
            p->notify(p->notify_ctx);
            pthread_mutex_lock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct lmq_workpool *lmq_workpool_new(unsigned threads, void (*notify)(void *ctx), void *ctx)
{
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    if (threads > LMQ_WORKPOOL_MAX_THREADS)
        threads = LMQ_WORKPOOL_MAX_THREADS;
    struct lmq_workpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->notify = notify;
    p->notify_ctx = ctx;
    for (unsigned i = 0; i < threads; i++) {
        int rc = pthread_create(&p->threads[i], NULL, workpool__main, p);
        if (rc != 0) {
            lmq_workpool_free(p);
            errno = rc;
            return NULL;
        }
        p->n_threads++;
    }
    return p;
}

void lmq_workpool_submit(struct lmq_workpool *p, struct lmq_work *w)
{
    w->next = NULL;
    p->pending++;
    pthread_mutex_lock(&p->mu);
    if (p->q_tail)
        p->q_tail->next = w;
    else
        p->q_head = w;
    p->q_tail = w;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void lmq_workpool_post(struct lmq_workpool *p, struct lmq_work *w)
{
    w->work = NULL;
    w->next = NULL;
    pthread_mutex_lock(&p->mu);
    bool was_empty = p->done_head == NULL;
    if (p->done_tail)
        p->done_tail->next = w;
    else
        p->done_head = w;
    p->done_tail = w;
    pthread_mutex_unlock(&p->mu);
    if (was_empty && p->notify)
        p->notify(p->notify_ctx);
}

size_t lmq_workpool_drain(struct lmq_workpool *p)
{
    pthread_mutex_lock(&p->mu);
    struct lmq_work *w = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    size_t n = 0;
    while (w) {
        struct lmq_work *next = w->next; /* DONE may free or resubmit W */
        if (w->work) /* posted jobs (work NULL) were not counted */
            p->pending--;
        w->done(w);
        w = next;
        n++;
    }
    return n;
}

size_t lmq_workpool_pending(const struct lmq_workpool *p)
{
    return p->pending;
}

unsigned lmq_workpool_threads(const struct lmq_workpool *p)
{
    return p->n_threads;
}

void lmq_workpool_free(struct lmq_workpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    /* Workers finish the queue before they stop: every job is done now. */
    p->notify = NULL;
    lmq_workpool_drain(p);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
