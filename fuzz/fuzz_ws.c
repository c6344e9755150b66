/* libFuzzer target: the WebSocket filter (src/net/ws.c) on arbitrary bytes.
 * The first byte picks the mode and the feed pattern: even = the input is
 * the Upgrade request itself (the HTTP parser); odd = a valid request is
 * put in front and the input is frames (wslay decoding, pings, closes,
 * refusals). Input is fed in chunks of varying size, application bytes are
 * taken in varying amounts, and the server writes now and then. Checks:
 * no more application bytes than were fed, nothing accepted after an
 * error, a refused or closed filter wrote its last words, and a failed
 * filter always has a reason. ASan/UBSan catch the rest. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/transport.h"
#include "net/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char request[] =
    "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

static void feed_all(struct lmq_filter *f, const uint8_t *p, size_t n, uint8_t pattern, size_t *fed,
                     size_t *taken)
{
    size_t i = 0, step = 0;
    while (i < n) {
        size_t chunk = (size_t)((pattern >> (step % 8)) & 0x7) * 37 + 1;
        if (pattern & 0x80)
            chunk = n - i; /* all at once */
        if (chunk > n - i)
            chunk = n - i;
        unsigned before = lmq_filter_state(f);
        int r = lmq_filter_feed(f, p + i, chunk);
        unsigned after = lmq_filter_state(f);
        if (before & LMQ_FILTER_ERROR)
            CHECK(r == LMQ_FILTER_ESTATE);
        if (r < 0) {
            CHECK(after & LMQ_FILTER_ERROR);
            CHECK(lmq_filter_reason(f)[0] != '\0');
        }
        *fed += chunk;
        size_t an;
        lmq_filter_app(f, &an);
        /* Only frame payload comes out: never more than went in. */
        CHECK(*taken + an <= *fed);
        size_t take = (step & 1) ? an : an / 2;
        lmq_filter_app_consume(f, take);
        *taken += take;
        if ((step % 3) == 2 && (after & LMQ_FILTER_OPEN) &&
            !(after & (LMQ_FILTER_ERROR | LMQ_FILTER_CLOSE_SENT))) {
            struct iovec v[2] = {{(void *)p, chunk / 2},
                                 {(void *)(p + chunk / 2), chunk - chunk / 2}};
            CHECK(lmq_filter_write(f, v, 2) == 0);
        }
        size_t wn;
        lmq_filter_wire(f, &wn);
        lmq_filter_wire_consume(f, wn / 2 + 1);
        i += chunk;
        step++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0], pattern = data[1];
    data += 2;
    size -= 2;
    uint64_t max = (mode & 0x40) ? 64 : (mode & 0x20) ? 300 : 1u << 20;
    struct lmq_filter *f = lmq_ws_filter_new(max);
    if (!f)
        return 0;
    size_t fed = 0, taken = 0;
    if (mode & 1) {
        CHECK(lmq_filter_feed(f, (const uint8_t *)request, sizeof request - 1) == 0);
        CHECK(lmq_filter_state(f) == LMQ_FILTER_OPEN);
        size_t wn;
        lmq_filter_wire(f, &wn);
        lmq_filter_wire_consume(f, wn);
    }
    feed_all(f, data, size, pattern, &fed, &taken);
    unsigned st = lmq_filter_state(f);
    if (st & LMQ_FILTER_ERROR) {
        size_t wn;
        lmq_filter_wire(f, &wn);
        (void)wn;
    }
    if (mode & 2) {
        CHECK(lmq_filter_shutdown(f) == 0 || (st & LMQ_FILTER_ERROR));
        CHECK((lmq_filter_state(f) & (LMQ_FILTER_CLOSE_SENT | LMQ_FILTER_ERROR)) != 0);
    }
    if (mode & 4) {
        uint8_t *buf;
        size_t n;
        lmq_filter_wire_take(f, &buf, &n);
        CHECK((buf == NULL) == (n == 0));
        free(buf);
    }
    lmq_filter_free(f);
    return 0;
}
