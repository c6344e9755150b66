/* libFuzzer target: the broker core fed arbitrary bytes from up to four
 * concurrent clients (sessions, takeover, routing, retained, wills, QoS
 * state), through a fake transport that discards output. Input format: a
 * sequence of chunks [client (low 2 bits) | flags][length][bytes]; flag
 * 0x80 drops the client's connection before the chunk (abnormal close),
 * 0x40 runs a tick, 0x20 opens a new connection with a canned MQTT 5
 * CONNECT (session expiry, receive maximum 2, maximum packet size 200,
 * topic alias maximum, a will with properties and a delay) so the v5 paths
 * are reached without the fuzzer having to build one. One broker (store
 * in a temp dir) lives for the whole run, so state accumulates like in a
 * real server. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "util/config.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CLIENTS 4

struct fz_conn {
    struct lmq_client *c;
    bool closing;
    uint8_t rest[4096];
    size_t rest_len;
};

static struct fz_conn fz_conns[FZ_CLIENTS];

static void fz_flush(void *tctx)
{
    struct fz_conn *f = tctx;
    struct lmq_outq *q = lmq_broker_client_outq(f->c);
    lmq_outq_consume(q, q->bytes);
}

static void fz_close(void *tctx)
{
    struct fz_conn *f = tctx;
    fz_flush(f);
    f->closing = true;
}

static void fz_pause(void *tctx)
{
    (void)tctx;
}

static void fz_resume(void *tctx)
{
    (void)tctx;
}

static const struct lmq_transport fz_tr = {fz_flush, fz_close, fz_pause, fz_resume, NULL};

static struct lmq_broker *fz_broker(void)
{
    static struct lmq_broker *b;
    static struct lmq_config cfg;
    if (b)
        return b;
    lmq_log_set_level(LMQ_LOG_ERROR + 1);
    /* The test-only method "ledgermq-test-echo" (broker/auth.c), so that
     * enhanced authentication and re-authentication (AUTH 0x19) are
     * reached too (seed v5-reauth). */
    setenv("LEDGERMQ_TEST_AUTH_ECHO", "1", 1);
    lmq_config_defaults(&cfg);
    char dir[] = "/tmp/lmq-fuzz-broker-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char err[256];
    if (lmq_config_finish(&cfg, 0, dir, err, sizeof err) < 0)
        abort();
    cfg.store_sync = LMQ_SYNC_BATCH;
    cfg.max_packet_size = 4096;
    cfg.max_inflight_messages = 4;
    cfg.max_queued_messages = 8;
    cfg.max_retained_messages = 64;
    cfg.max_subscriptions_per_client = 8;
    b = lmq_broker_new(&cfg, &fz_tr, err, sizeof err);
    if (!b) {
        fprintf(stderr, "fuzz_broker: %s\n", err);
        abort();
    }
    return b;
}

/* An MQTT 5 CONNECT for client "v5-N" (N at FZ_V5_ID_AT). */
static const uint8_t fz_v5_connect[] = {
    0x10, 60,                                        /* CONNECT, remaining length */
    0, 4, 'M', 'Q', 'T', 'T', 5, 0x0C, 0, 10,        /* will QoS 1, keep-alive 10 */
    18,                                              /* properties */
    0x11, 0, 0, 0, 30,                               /* session expiry 30 */
    0x21, 0, 2,                                      /* receive maximum 2 */
    0x27, 0, 0, 0, 200,                              /* maximum packet size 200 */
    0x22, 0, 3,                                      /* topic alias maximum 3 */
    0x17, 1,                                         /* request problem info */
    0, 4, 'v', '5', '-', '0',                        /* client id */
    14,                                              /* will properties */
    0x18, 0, 0, 0, 1,                                /* will delay 1 */
    0x01, 1,                                         /* payload format: UTF-8 */
    0x26, 0, 1, 'k', 0, 1, 'v',                      /* user property */
    0, 3, 'w', '/', 'x',                             /* will topic */
    0, 3, 'b', 'y', 'e',                             /* will payload */
};
#define FZ_V5_ID_AT 36

static void fz_drop(struct fz_conn *f, bool lost)
{
    if (!f->c)
        return;
    if (lost)
        lmq_broker_client_lost(f->c, "fuzz");
    lmq_broker_client_free(f->c);
    memset(f, 0, sizeof *f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lmq_broker *b = fz_broker();
    size_t i = 0;
    while (i + 2 <= size) {
        uint8_t hdr = data[i];
        size_t len = data[i + 1];
        i += 2;
        if (len > size - i)
            len = size - i;
        struct fz_conn *f = &fz_conns[hdr & 3];
        if (hdr & 0x80)
            fz_drop(f, true);
        if (!f->c) {
            f->c = lmq_broker_client_new(b, f, NULL, NULL);
            if (!f->c)
                abort();
            if (hdr & 0x20) {
                memcpy(f->rest, fz_v5_connect, sizeof fz_v5_connect);
                f->rest[FZ_V5_ID_AT] = (uint8_t)('0' + (hdr & 3));
                f->rest_len = sizeof fz_v5_connect;
            }
        }
        if (!f->closing && f->rest_len + len <= sizeof f->rest) {
            memcpy(f->rest + f->rest_len, data + i, len);
            f->rest_len += len;
            size_t used = 0;
            if (lmq_broker_input(f->c, f->rest, f->rest_len, &used) == 0) {
                if (used > f->rest_len)
                    abort();
                memmove(f->rest, f->rest + used, f->rest_len - used);
                f->rest_len -= used;
            } else {
                f->rest_len = 0;
            }
        }
        i += len;
        if (hdr & 0x40)
            lmq_broker_tick(b);
        lmq_broker_flush(b);
        for (int k = 0; k < FZ_CLIENTS; k++)
            if (fz_conns[k].closing)
                fz_drop(&fz_conns[k], false);
    }
    for (int k = 0; k < FZ_CLIENTS; k++)
        fz_drop(&fz_conns[k], true);
    lmq_broker_flush(b);
    return 0;
}
