/* The WebSocket filter (see ws.h). Two phases: the Upgrade request is
 * gathered (at most LMQ_WS_MAX_HEADER bytes) and parsed here; after the
 * 101 reply, frames go through a wslay server context that reads from the
 * bytes of the current lmq_filter_feed call and writes into the wire
 * buffer. wslay runs unbuffered: payload chunks of binary frames stream
 * straight into the application buffer, so a frame costs no allocation.
 * Every wslay_event_send drains wslay completely (the send callback never
 * blocks), so data frames can be written directly after it without ever
 * interleaving with a half-sent control frame. */
#include "net/ws.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct ws__filter {
    struct lmq_filter head;
    wslay_event_context_ptr ctx; /* after the upgrade */
    uint64_t max_frame;
    struct lmq_fbuf req; /* the Upgrade request being gathered */
    const uint8_t *in;   /* input of the current feed */
    size_t in_len;
    bool upgraded;
    bool frame_is_data; /* the frame being received carries MQTT bytes */
    bool text_refused;
    bool nomem;
    char proto[16];
};

/* ---- handshake ---- */

int lmq_ws_accept_key(const char *key, size_t keylen, char out[29])
{
    uint8_t buf[64];
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    size_t glen = sizeof WS_GUID - 1;
    if (keylen > sizeof buf - glen)
        return -1;
    memcpy(buf, key, keylen);
    memcpy(buf + keylen, WS_GUID, glen);
    if (EVP_Digest(buf, keylen + glen, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return -1;
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != 28)
        return -1;
    out[28] = '\0';
    return 0;
}

/* A Sec-WebSocket-Key must be the base64 of 16 bytes: 22 characters, the
 * last carrying 2 bits, then "==". */
static bool ws__key_valid(const char *k, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n != 24 || k[22] != '=' || k[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (k[i] == '\0' || !strchr(b64, k[i]))
            return false;
    return strchr("AQgw", k[21]) != NULL;
}

/* Does the comma-separated list V (N bytes) hold TOKEN (any case)? When
 * FOUND is given, the token as spelled there is copied into it. */
static bool ws__list_has(const char *v, size_t n, const char *token, char *found, size_t flen)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0) {
            if (found && tl < flen) {
                memcpy(found, v + s, tl);
                found[tl] = '\0';
            }
            return true;
        }
    }
    return false;
}

/* Answers the request with an HTTP error and fails the filter. */
static int ws__refuse(struct ws__filter *w, int status, const char *extra, const char *why)
{
    const char *text = status == 426   ? "Upgrade Required"
                       : status == 431 ? "Request Header Fields Too Large"
                                       : "Bad Request";
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s\n",
                     status, text, strlen(why) + 1, extra, why);
    if (n > 0 && (size_t)n < sizeof resp)
        lmq_fbuf_append(&w->head.wire, resp, (size_t)n);
    w->head.state |= LMQ_FILTER_CLOSE_SENT;
    return lmq_filter__fail(&w->head, status == 431 ? LMQ_FILTER_ELIMIT : LMQ_FILTER_EPROTO,
                            "WebSocket handshake refused (%d): %s", status, why);
}

static int ws__start_frames(struct ws__filter *w);

/* Parses the request in w->req (LEN bytes, the blank line included) and
 * answers it. */
static int ws__handshake(struct ws__filter *w, const char *r, size_t len)
{
    const char *end = r + len;
    const char *eol = memmem(r, len, "\r\n", 2);
    /* Request line: GET SP target SP HTTP/1.1 */
    const char *sp1 = memchr(r, ' ', (size_t)(eol - r));
    if (!sp1 || (size_t)(sp1 - r) != 3 || memcmp(r, "GET", 3) != 0)
        return ws__refuse(w, 400, "", "method must be GET");
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1 || (size_t)(eol - sp2 - 1) != 8 ||
        memcmp(sp2 + 1, "HTTP/1.1", 8) != 0)
        return ws__refuse(w, 400, "", "malformed request line (need GET target HTTP/1.1)");
    bool upgrade = false, connection = false, have_version = false, version_ok = false;
    const char *key = NULL;
    size_t keylen = 0;
    int nkeys = 0;
    char mqtt[16] = "", v31[16] = "";
    const char *p = eol + 2;
    while (p < end) {
        eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol || eol == p)
            break; /* the blank line */
        if (*p == ' ' || *p == '\t')
            return ws__refuse(w, 400, "", "folded header lines are not allowed");
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p)
            return ws__refuse(w, 400, "", "malformed header line");
        for (const char *c = p; c < colon; c++)
            if (!isgraph((unsigned char)*c))
                return ws__refuse(w, 400, "", "malformed header name");
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);
        if (nl == 7 && strncasecmp(p, "upgrade", 7) == 0) {
            upgrade |= ws__list_has(v, vl, "websocket", NULL, 0);
        } else if (nl == 10 && strncasecmp(p, "connection", 10) == 0) {
            connection |= ws__list_has(v, vl, "upgrade", NULL, 0);
        } else if (nl == 21 && strncasecmp(p, "sec-websocket-version", 21) == 0) {
            have_version = true;
            version_ok = vl == 2 && memcmp(v, "13", 2) == 0;
        } else if (nl == 17 && strncasecmp(p, "sec-websocket-key", 17) == 0) {
            key = v;
            keylen = vl;
            nkeys++;
        } else if (nl == 22 && strncasecmp(p, "sec-websocket-protocol", 22) == 0) {
            if (!mqtt[0])
                ws__list_has(v, vl, "mqtt", mqtt, sizeof mqtt);
            if (!v31[0])
                ws__list_has(v, vl, "mqttv3.1", v31, sizeof v31);
        }
        p = eol + 2;
    }
    if (!upgrade || !connection)
        return ws__refuse(w, 426, "Upgrade: websocket\r\n",
                          "this port speaks MQTT over WebSocket: need Upgrade: websocket and "
                          "Connection: Upgrade");
    if (!have_version || !version_ok)
        return ws__refuse(w, 426, "Sec-WebSocket-Version: 13\r\n",
                          "Sec-WebSocket-Version must be 13");
    if (nkeys != 1 || !ws__key_valid(key, keylen))
        return ws__refuse(w, 400, "", "missing or invalid Sec-WebSocket-Key");
    const char *proto = mqtt[0] ? mqtt : v31;
    if (!proto[0])
        return ws__refuse(w, 400, "",
                          "Sec-WebSocket-Protocol must offer mqtt (MQTT over WebSocket)");
    char accept[29];
    if (lmq_ws_accept_key(key, keylen, accept) < 0)
        return lmq_filter__fail(&w->head, LMQ_FILTER_ENOMEM, "WebSocket: SHA-1 failed");
    snprintf(w->proto, sizeof w->proto, "%s", proto);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "Sec-WebSocket-Protocol: %s\r\n\r\n",
                     accept, w->proto);
    if (n <= 0 || (size_t)n >= sizeof resp || lmq_fbuf_append(&w->head.wire, resp, (size_t)n) < 0)
        return lmq_filter__fail(&w->head, LMQ_FILTER_ENOMEM, "WebSocket: out of memory");
    return ws__start_frames(w);
}

/* ---- frames (wslay callbacks) ---- */

static ssize_t ws__recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                           void *user)
{
    (void)flags;
    struct ws__filter *w = user;
    if (w->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < w->in_len ? len : w->in_len;
    memcpy(buf, w->in, n);
    w->in += n;
    w->in_len -= n;
    return (ssize_t)n;
}

static ssize_t ws__send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                           void *user)
{
    (void)flags;
    struct ws__filter *w = user;
    if (lmq_fbuf_append(&w->head.wire, data, len) < 0) {
        w->nomem = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void ws__frame_start_cb(wslay_event_context_ptr ctx,
                               const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    struct ws__filter *w = user;
    w->frame_is_data = arg->opcode == WSLAY_BINARY_FRAME || arg->opcode == WSLAY_CONTINUATION_FRAME;
    if (arg->opcode == WSLAY_TEXT_FRAME && !w->text_refused) {
        static const char why[] = "MQTT needs binary frames";
        w->text_refused = true;
        wslay_event_queue_close(ctx, WSLAY_CODE_UNSUPPORTED_DATA, (const uint8_t *)why,
                                sizeof why - 1);
        wslay_event_shutdown_read(ctx);
    }
}

static void ws__frame_chunk_cb(wslay_event_context_ptr ctx,
                               const struct wslay_event_on_frame_recv_chunk_arg *arg, void *user)
{
    struct ws__filter *w = user;
    if (!w->frame_is_data || w->text_refused || w->nomem)
        return;
    if (lmq_fbuf_append(&w->head.app, arg->data, arg->data_length) < 0) {
        w->nomem = true;
        wslay_event_shutdown_read(ctx);
    }
}

static int ws__start_frames(struct ws__filter *w)
{
    struct wslay_event_callbacks cb = {
        .recv_callback = ws__recv_cb,
        .send_callback = ws__send_cb,
        .on_frame_recv_start_callback = ws__frame_start_cb,
        .on_frame_recv_chunk_callback = ws__frame_chunk_cb,
    };
    if (wslay_event_context_server_init(&w->ctx, &cb, w) != 0)
        return lmq_filter__fail(&w->head, LMQ_FILTER_ENOMEM, "WebSocket: out of memory");
    wslay_event_config_set_no_buffering(w->ctx, 1);
    wslay_event_config_set_max_recv_msg_length(w->ctx, w->max_frame);
    w->upgraded = true;
    w->head.state |= LMQ_FILTER_OPEN;
    return 0;
}

/* Runs wslay over IN and sends what it queued (pongs, closes). */
static int ws__frames(struct ws__filter *w, const uint8_t *in, size_t len)
{
    w->in = in;
    w->in_len = len;
    int r = wslay_event_recv(w->ctx);
    w->in = NULL;
    w->in_len = 0;
    int s = wslay_event_send(w->ctx);
    struct lmq_filter *f = &w->head;
    if (wslay_event_get_close_sent(w->ctx))
        f->state |= LMQ_FILTER_CLOSE_SENT;
    if (w->nomem)
        return lmq_filter__fail(f, LMQ_FILTER_ENOMEM, "WebSocket: out of memory");
    if (w->text_refused)
        return lmq_filter__fail(f, LMQ_FILTER_EPROTO,
                                "WebSocket text frame refused (MQTT over WebSocket is binary)");
    if (wslay_event_get_close_received(w->ctx)) {
        f->state |= LMQ_FILTER_PEER_CLOSED;
        if (!f->reason[0])
            snprintf(f->reason, sizeof f->reason, "WebSocket close from peer (code %u)",
                     (unsigned)wslay_event_get_status_code_received(w->ctx));
        return 0;
    }
    if (r < 0 || s < 0)
        return lmq_filter__fail(f, LMQ_FILTER_EPROTO, "WebSocket protocol error (bad frame)");
    if (!wslay_event_get_read_enabled(w->ctx)) {
        /* wslay refused a frame and queued a close with the reason. */
        unsigned code = wslay_event_get_status_code_sent(w->ctx);
        if (code == WSLAY_CODE_MESSAGE_TOO_BIG)
            return lmq_filter__fail(f, LMQ_FILTER_ELIMIT,
                                    "WebSocket frame larger than %llu bytes refused",
                                    (unsigned long long)w->max_frame);
        if (code == WSLAY_CODE_PROTOCOL_ERROR)
            return lmq_filter__fail(f, LMQ_FILTER_EPROTO,
                                    "WebSocket protocol error (unmasked client frame, reserved "
                                    "bits, bad opcode or bad close code)");
        return lmq_filter__fail(f, LMQ_FILTER_EPROTO, "WebSocket protocol error (close code %u)",
                                code);
    }
    return 0;
}

static int ws__feed(struct lmq_filter *f, const uint8_t *wire, size_t len)
{
    struct ws__filter *w = (struct ws__filter *)f;
    if (w->upgraded)
        return ws__frames(w, wire, len);
    /* Gather the request; look for the blank line from just before the
     * new bytes. */
    size_t old = w->req.len;
    size_t room = LMQ_WS_MAX_HEADER - old;
    size_t take = len < room ? len : room;
    if (lmq_fbuf_append(&w->req, wire, take) < 0)
        return lmq_filter__fail(f, LMQ_FILTER_ENOMEM, "WebSocket: out of memory");
    const char *r = (const char *)w->req.data + w->req.off;
    size_t from = old > 3 ? old - 3 : 0;
    const char *e = memmem(r + from, w->req.len - from, "\r\n\r\n", 4);
    if (!e) {
        /* Not HTTP at all (e.g. plain MQTT on this port): say so now
         * instead of waiting for a blank line that never comes. */
        size_t n = w->req.len < 4 ? w->req.len : 4;
        if (memcmp(r, "GET ", n) != 0)
            return ws__refuse(w, 400, "", "method must be GET");
        if (w->req.len >= LMQ_WS_MAX_HEADER)
            return ws__refuse(w, 431, "", "request header larger than 8192 bytes");
        return 0;
    }
    size_t hlen = (size_t)(e - r) + 4;
    /* Bytes after the request are the first frames (from the new input). */
    size_t rest_from = hlen - old;
    int rc = ws__handshake(w, r, hlen);
    lmq_fbuf_free(&w->req);
    if (rc < 0)
        return rc;
    if (rest_from < len)
        return ws__frames(w, wire + rest_from, len - rest_from);
    return 0;
}

size_t lmq_ws_frame_header(uint64_t len, uint8_t hdr[10])
{
    hdr[0] = 0x80 | WSLAY_BINARY_FRAME;
    if (len < 126) {
        hdr[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        return 4;
    }
    hdr[1] = 127;
    for (int i = 0; i < 8; i++)
        hdr[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

static int ws__write(struct lmq_filter *f, const struct iovec *iov, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    uint8_t hdr[10];
    size_t hl = lmq_ws_frame_header(total, hdr);
    uint8_t *d = lmq_fbuf_reserve(&f->wire, hl + total);
    if (!d)
        return lmq_filter__fail(f, LMQ_FILTER_ENOMEM, "WebSocket: out of memory");
    memcpy(d, hdr, hl);
    size_t off = hl;
    for (size_t i = 0; i < n; i++) {
        if (iov[i].iov_len)
            memcpy(d + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    lmq_fbuf_commit(&f->wire, off);
    return 0;
}

static int ws__shutdown(struct lmq_filter *f)
{
    struct ws__filter *w = (struct ws__filter *)f;
    f->state |= LMQ_FILTER_CLOSE_SENT;
    if (!w->upgraded)
        return 0;
    wslay_event_queue_close(w->ctx, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
    wslay_event_send(w->ctx);
    if (w->nomem)
        return lmq_filter__fail(f, LMQ_FILTER_ENOMEM, "WebSocket: out of memory");
    return 0;
}

static void ws__destroy(struct lmq_filter *f)
{
    struct ws__filter *w = (struct ws__filter *)f;
    if (w->ctx)
        wslay_event_context_free(w->ctx);
    lmq_fbuf_free(&w->req);
    lmq_filter__fini(f);
    free(w);
}

static const struct lmq_filter_ops ws__ops = {
    .name = "ws",
    .feed = ws__feed,
    .write = ws__write,
    .shutdown = ws__shutdown,
    .destroy = ws__destroy,
};

struct lmq_filter *lmq_ws_filter_new(uint64_t max_frame)
{
    struct ws__filter *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    lmq_filter__init(&w->head, &ws__ops);
    w->max_frame = max_frame;
    return &w->head;
}

const char *lmq_ws_subprotocol(const struct lmq_filter *f)
{
    if (!f || f->ops != &ws__ops)
        return "";
    return ((const struct ws__filter *)f)->proto;
}
