/* libFuzzer target: the broker core fed arbitrary bytes from up to four
 * concurrent clients (sessions, takeover, routing, retained, wills, QoS
 * state), through a fake transport that discards output. Input format: a
 * sequence of chunks [client (low 2 bits) | flags][length][bytes]; flag
 * 0x80 drops the client's connection before the chunk (abnormal close),
 * 0x40 runs a tick. One broker (store in a temp dir) lives for the whole
 * run, so state accumulates like in a real server. */
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

static const struct lmq_transport fz_tr = {fz_flush, fz_close, fz_pause, fz_resume};

static struct lmq_broker *fz_broker(void)
{
    static struct lmq_broker *b;
    static struct lmq_config cfg;
    if (b)
        return b;
    lmq_log_set_level(LMQ_LOG_ERROR + 1);
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
            f->c = lmq_broker_client_new(b, f, NULL, "fuzz");
            if (!f->c)
                abort();
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
