/* Tests of src/util/workpool.c: every job's WORK runs once on a worker
 * thread and its DONE once on the draining thread; notify wakes the
 * owner; DONE may resubmit; free finishes what was queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <unistd.h>

#include "util/workpool.h"

struct job {
    struct lmq_work w;
    pthread_t worker;
    int works, dones;
    int resubmit; /* times DONE submits it again */
    struct lmq_workpool *pool;
    uint64_t value; /* WORK computes something */
};

static pthread_mutex_t notify_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t notify_cv = PTHREAD_COND_INITIALIZER;
static atomic_int notifies;

static void notify(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&notify_mu);
    atomic_fetch_add(&notifies, 1);
    pthread_cond_signal(&notify_cv);
    pthread_mutex_unlock(&notify_mu);
}

static void job_work(struct lmq_work *w)
{
    struct job *j = (struct job *)w;
    j->worker = pthread_self();
    j->works++;
    uint64_t x = 1469598103934665603ull;
    for (int i = 0; i < 10000; i++)
        x = (x ^ (uint64_t)i) * 1099511628211ull;
    j->value = x;
}

static void job_done(struct lmq_work *w)
{
    struct job *j = (struct job *)w;
    assert_true(pthread_equal(pthread_self(), j->worker) == 0);
    j->dones++;
    if (j->resubmit > 0) {
        j->resubmit--;
        lmq_workpool_submit(j->pool, &j->w);
    }
}

/* Drains until PENDING is 0, sleeping on the notify condition. */
static void drain_all(struct lmq_workpool *p)
{
    while (lmq_workpool_pending(p) > 0) {
        pthread_mutex_lock(&notify_mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&notify_cv, &notify_mu, &ts);
        pthread_mutex_unlock(&notify_mu);
        lmq_workpool_drain(p);
    }
}

static void test_every_job_once(void **state)
{
    (void)state;
    enum { N = 2000 };
    struct lmq_workpool *p = lmq_workpool_new(3, notify, NULL);
    assert_non_null(p);
    assert_int_equal(lmq_workpool_threads(p), 3);
    struct job *jobs = calloc(N, sizeof *jobs);
    atomic_store(&notifies, 0);
    for (int i = 0; i < N; i++) {
        jobs[i].w.work = job_work;
        jobs[i].w.done = job_done;
        jobs[i].pool = p;
        jobs[i].resubmit = i % 7 == 0 ? 2 : 0;
        lmq_workpool_submit(p, &jobs[i].w);
    }
    drain_all(p);
    assert_true(atomic_load(&notifies) > 0);
    for (int i = 0; i < N; i++) {
        int want = i % 7 == 0 ? 3 : 1;
        assert_int_equal(jobs[i].works, want);
        assert_int_equal(jobs[i].dones, want);
        assert_int_not_equal(jobs[i].value, 0);
    }
    assert_int_equal(lmq_workpool_drain(p), 0);
    lmq_workpool_free(p);
    free(jobs);
}

static void test_free_finishes_queue(void **state)
{
    (void)state;
    enum { N = 500 };
    struct lmq_workpool *p = lmq_workpool_new(0, NULL, NULL);
    assert_non_null(p);
    assert_true(lmq_workpool_threads(p) >= 1);
    struct job *jobs = calloc(N, sizeof *jobs);
    for (int i = 0; i < N; i++) {
        jobs[i].w.work = job_work;
        jobs[i].w.done = job_done;
        jobs[i].pool = p;
        lmq_workpool_submit(p, &jobs[i].w);
    }
    lmq_workpool_free(p); /* no drain before: free runs every DONE */
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].works, 1);
        assert_int_equal(jobs[i].dones, 1);
    }
    free(jobs);
    lmq_workpool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_job_once),
        cmocka_unit_test(test_free_finishes_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
