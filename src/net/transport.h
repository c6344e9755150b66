/* Transport filters: the layers (TLS, WebSocket) that the server puts
 * between a socket and the MQTT byte stream. A filter does no I/O of its
 * own: wire bytes go in with lmq_filter_feed() and application bytes come
 * out of lmq_filter_app(); application bytes go in with lmq_filter_write()
 * and wire bytes come out of lmq_filter_wire(). Handshakes, pongs, alerts
 * and close frames simply appear as wire bytes to send. Filters stack
 * (lmq_filter_stack: TLS outside, WebSocket inside) and a stack is itself
 * a filter, so the server handles one filter per connection whatever the
 * listener. docs/TRANSPORTS.md shows how the server wires it.
 * Invariant: a filter never holds application bytes it has not offered to
 * its reader, and never drops wire bytes it produced; once in the ERROR
 * state it accepts no more input and lmq_filter_reason() says why.
 * One filter belongs to one thread at a time (the loop thread). */
#ifndef LMQ_NET_TRANSPORT_H
#define LMQ_NET_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Error codes (negative, distinct; the reason string says more).
 * EPROTO: the peer violated the protocol or failed its handshake.
 * ENOMEM: out of memory.
 * ELIMIT: a size limit was exceeded (request header, frame).
 * ESTATE: not allowed now (write before the handshake, anything after an
 * error, write after our close). */
#define LMQ_FILTER_EPROTO (-1)
#define LMQ_FILTER_ENOMEM (-2)
#define LMQ_FILTER_ELIMIT (-3)
#define LMQ_FILTER_ESTATE (-4)

/* State bits (lmq_filter_state).
 * OPEN: handshake done, application data flows.
 * PEER_CLOSED: the peer closed cleanly (TLS close_notify, WebSocket close
 * frame); no more input, our answer is already in the wire bytes.
 * CLOSE_SENT: our close (or refusal) is in the wire bytes; no more writes.
 * ERROR: fatal; send the wire bytes if possible, then close. */
#define LMQ_FILTER_OPEN 0x1u
#define LMQ_FILTER_PEER_CLOSED 0x2u
#define LMQ_FILTER_CLOSE_SENT 0x4u
#define LMQ_FILTER_ERROR 0x8u

#define LMQ_FILTER_REASON_MAX 256

/* A growable byte buffer holding [off, off + len) of data. */
struct lmq_fbuf {
    uint8_t *data;
    size_t off, len, cap;
};

struct lmq_filter;

/* What a concrete filter implements (tls.c, ws.c, the stack in
 * transport.c). feed and write consume all they are given or fail. */
struct lmq_filter_ops {
    const char *name;
    int (*feed)(struct lmq_filter *f, const uint8_t *wire, size_t len);
    int (*write)(struct lmq_filter *f, const struct iovec *iov, size_t n);
    int (*shutdown)(struct lmq_filter *f);
    void (*destroy)(struct lmq_filter *f);
};

/* The common head of every filter. Only transport.c, tls.c and ws.c look
 * inside; everyone else uses the functions below. */
struct lmq_filter {
    const struct lmq_filter_ops *ops;
    struct lmq_fbuf app;         /* decoded application bytes not yet taken */
    struct lmq_fbuf wire;        /* encoded wire bytes not yet taken */
    struct lmq_filter *app_src;  /* whose app buffer the reader sees (self,
                                  * or the innermost filter of a stack) */
    struct lmq_filter *wire_src; /* whose wire buffer the writer sees */
    unsigned state;
    char reason[LMQ_FILTER_REASON_MAX];
};

/* Feeds LEN wire bytes received from the peer. All are consumed: the
 * decoded application bytes are appended to lmq_filter_app(), and any
 * reply (handshake, pong, close, alert) to lmq_filter_wire(). Returns 0,
 * or a negative LMQ_FILTER_E* code with the ERROR state set; even then
 * the wire bytes (an HTTP error page, a close frame, a TLS alert) should
 * be sent before the socket is closed. Bytes arriving after the peer
 * closed are ignored. */
int lmq_filter_feed(struct lmq_filter *f, const uint8_t *wire, size_t len);

/* The application bytes decoded so far: *LEN bytes at the returned
 * pointer (NULL when none). Valid until the next call on F. The caller
 * takes a prefix with lmq_filter_app_consume(); the rest stays (it is the
 * unfinished MQTT packet, so the server needs no buffer of its own). */
const uint8_t *lmq_filter_app(const struct lmq_filter *f, size_t *len);
void lmq_filter_app_consume(struct lmq_filter *f, size_t n);

/* Encodes the application bytes of N iovecs (read, not kept; the caller
 * may free them on return) into wire bytes. The WebSocket filter makes
 * one binary frame per call, TLS fills records of up to 16 KiB. Only when
 * the state has OPEN and neither ERROR nor CLOSE_SENT; else ESTATE. */
int lmq_filter_write(struct lmq_filter *f, const struct iovec *iov, size_t n);

/* The wire bytes waiting to be sent: *LEN bytes at the returned pointer
 * (NULL when none), valid until the next call on F. After a partial send
 * the caller consumes what was sent. */
const uint8_t *lmq_filter_wire(const struct lmq_filter *f, size_t *len);
void lmq_filter_wire_consume(struct lmq_filter *f, size_t n);

/* Takes the waiting wire bytes out of the filter: *BUF (malloc'd, the
 * caller frees it with free() when the write completed) and *LEN. For a
 * uv_write that must own its bytes while new output accumulates in a
 * fresh buffer. *BUF is NULL when there were none. */
void lmq_filter_wire_take(struct lmq_filter *f, uint8_t **buf, size_t *len);

/* Starts a clean close from our side: TLS close_notify, WebSocket close
 * frame 1000. The bytes appear in lmq_filter_wire(); the server sends
 * them, then closes the socket (it need not wait for the peer's reply).
 * Sets CLOSE_SENT. Returns 0 (also when already closed or failed). */
int lmq_filter_shutdown(struct lmq_filter *f);

/* The state bits above; for a stack, the union of both layers' bits
 * except OPEN, which needs both layers open. */
unsigned lmq_filter_state(const struct lmq_filter *f);

/* Why the filter failed (or closed), for one log line: e.g. "TLS
 * handshake failed: certificate verify failed (unable to get local issuer
 * certificate)". "" while nothing went wrong. Valid while F lives. */
const char *lmq_filter_reason(const struct lmq_filter *f);

/* The filter's name: "tls", "ws", or for a stack "ws+tls" (inner+outer). */
const char *lmq_filter_name(const struct lmq_filter *f);

/* The layer of F (F itself, or a layer of a stack) whose name is NAME
 * ("tls", "ws"), or NULL. E.g. lmq_filter_layer(f, "tls") to ask
 * lmq_tls_peer_subject() about a WebSocket-over-TLS connection. */
struct lmq_filter *lmq_filter_layer(struct lmq_filter *f, const char *name);

/* Frees F and everything it holds (a stack frees both layers). NULL is
 * fine. */
void lmq_filter_free(struct lmq_filter *f);

/* Stacks INNER on OUTER (WebSocket on TLS): wire bytes fed to the stack
 * go to OUTER, OUTER's application bytes feed INNER, INNER's replies and
 * writes are written through OUTER. The stack owns both, also on failure
 * (NULL: out of memory, or OUTER or INNER was NULL; the other one is freed),
 * so lmq_filter_stack(lmq_tls_filter_new(ctx), lmq_ws_filter_new(max)) needs
 * one NULL check. */
struct lmq_filter *lmq_filter_stack(struct lmq_filter *outer, struct lmq_filter *inner);

/* ---- for filter implementations (tls.c, ws.c) ---- */

/* Sets the head up for OPS (app_src = wire_src = F). */
void lmq_filter__init(struct lmq_filter *f, const struct lmq_filter_ops *ops);
/* Frees the head's buffers. */
void lmq_filter__fini(struct lmq_filter *f);
/* Sets ERROR and the reason (printf format); returns CODE. */
int lmq_filter__fail(struct lmq_filter *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends N bytes; 0 or LMQ_FILTER_ENOMEM. */
int lmq_fbuf_append(struct lmq_fbuf *b, const void *p, size_t n);
/* Makes room for N more bytes and returns where to write them (NULL when
 * out of memory); lmq_fbuf_commit() then counts the ones written. */
uint8_t *lmq_fbuf_reserve(struct lmq_fbuf *b, size_t n);
void lmq_fbuf_commit(struct lmq_fbuf *b, size_t n);
void lmq_fbuf_consume(struct lmq_fbuf *b, size_t n);
void lmq_fbuf_free(struct lmq_fbuf *b);

#endif
