/* The TLS filter (see tls.h). Each SSL object reads ciphertext from a
 * memory BIO that lmq_filter_feed fills and writes ciphertext to a memory
 * BIO that is emptied into the filter's wire buffer after every call, so
 * the BIOs hold no data between calls (and a BIO whose buffer grew for a
 * burst is replaced once empty). OpenSSL's error queue is
 * thread-local: it is cleared before every SSL call and after every
 * failure, so one connection's errors never show up in another's reason. */
#include "net/tls.h"

#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TLS 1.2 suites: forward secret AEAD only (Mozilla "intermediate" minus
 * DHE). TLS 1.3 keeps OpenSSL's default suites. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

#define TLS_RECORD 16384
/* Memory BIO buffers above this are dropped once empty. */
#define TLS_BIO_KEEP 4096

struct lmq_tls_ctx {
    SSL_CTX *ssl_ctx;
};

struct tls__filter {
    struct lmq_filter head;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by SSL */
    int handshake_done;
};

/* The earliest queued OpenSSL error as text ("no such file", "certificate
 * verify failed"), and clears the queue. */
static const char *tls__errstr(char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (e && ERR_SYSTEM_ERROR(e))
        snprintf(buf, len, "%s", strerror(ERR_GET_REASON(e)));
    else if (r)
        snprintf(buf, len, "%s", r);
    else if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "unknown error");
    ERR_clear_error();
    return buf;
}

/* ---- context ---- */

struct lmq_tls_ctx *lmq_tls_ctx_new(const struct lmq_listener_config *l, char *err, size_t errlen)
{
    char e[200];
    ERR_clear_error();
    if (!l->certfile[0] || !l->keyfile[0]) {
        snprintf(err, errlen, "listener %u: TLS needs both certfile and keyfile", l->port);
        return NULL;
    }
    if (l->require_certificate && !l->cafile[0]) {
        snprintf(err, errlen, "listener %u: require_certificate needs a cafile", l->port);
        return NULL;
    }
    struct lmq_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    SSL_CTX *x = SSL_CTX_new(TLS_server_method());
    if (!x) {
        snprintf(err, errlen, "SSL_CTX_new: %s", tls__errstr(e, sizeof e));
        goto fail_free;
    }
    c->ssl_ctx = x;
    if (SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(x, TLS12_CIPHERS) != 1) {
        snprintf(err, errlen, "TLS setup: %s", tls__errstr(e, sizeof e));
        goto fail_ctx;
    }
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
    /* Idle connections give their record buffers back. */
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
    /* Stateless tickets only: devices that reconnect skip the full
     * handshake, and the server keeps no per-session state. */
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(x, 1);
    static const unsigned char sid_ctx[] = "ledgermq";
    SSL_CTX_set_session_id_context(x, sid_ctx, sizeof sid_ctx - 1);

    if (SSL_CTX_use_certificate_chain_file(x, l->certfile) != 1) {
        snprintf(err, errlen, "listener %u: certfile %s: %s", l->port, l->certfile,
                 tls__errstr(e, sizeof e));
        goto fail_ctx;
    }
    if (SSL_CTX_use_PrivateKey_file(x, l->keyfile, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "listener %u: keyfile %s: %s", l->port, l->keyfile,
                 tls__errstr(e, sizeof e));
        goto fail_ctx;
    }
    if (SSL_CTX_check_private_key(x) != 1) {
        snprintf(err, errlen, "listener %u: keyfile %s does not match certfile %s: %s", l->port,
                 l->keyfile, l->certfile, tls__errstr(e, sizeof e));
        goto fail_ctx;
    }
    if (l->cafile[0]) {
        if (SSL_CTX_load_verify_locations(x, l->cafile, NULL) != 1) {
            snprintf(err, errlen, "listener %u: cafile %s: %s", l->port, l->cafile,
                     tls__errstr(e, sizeof e));
            goto fail_ctx;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(l->cafile);
        if (!names) {
            snprintf(err, errlen, "listener %u: cafile %s: %s", l->port, l->cafile,
                     tls__errstr(e, sizeof e));
            goto fail_ctx;
        }
        SSL_CTX_set_client_CA_list(x, names);
        SSL_CTX_set_verify(
            x, SSL_VERIFY_PEER | (l->require_certificate ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
            NULL);
    } else {
        SSL_CTX_set_verify(x, SSL_VERIFY_NONE, NULL);
    }
    ERR_clear_error();
    return c;

fail_ctx:
    SSL_CTX_free(x);
fail_free:
    free(c);
    ERR_clear_error();
    return NULL;
}

void lmq_tls_ctx_free(struct lmq_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* ---- the filter ---- */

static const struct lmq_filter_ops tls__ops;

static struct tls__filter *tls__of(const struct lmq_filter *f)
{
    return f && f->ops == &tls__ops ? (struct tls__filter *)(uintptr_t)f : NULL;
}

/* Moves what OpenSSL wrote into the wire buffer. */
static int tls__drain(struct tls__filter *t)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    while (n > 0) {
        size_t chunk = n > INT_MAX ? INT_MAX : n;
        uint8_t *d = lmq_fbuf_reserve(&t->head.wire, chunk);
        if (!d)
            return lmq_filter__fail(&t->head, LMQ_FILTER_ENOMEM, "TLS: out of memory");
        int r = BIO_read(t->wbio, d, (int)chunk);
        if (r <= 0)
            break;
        lmq_fbuf_commit(&t->head.wire, (size_t)r);
        n -= (size_t)r;
    }
    return 0;
}

/* Swaps an empty memory BIO that once held a big burst for a fresh one,
 * so an idle connection does not keep the burst's buffer. */
static void tls__trim(struct tls__filter *t)
{
    BUF_MEM *bm = NULL;
    if (BIO_ctrl_pending(t->rbio) == 0 && BIO_get_mem_ptr(t->rbio, &bm) == 1 && bm &&
        bm->max > TLS_BIO_KEEP) {
        BIO *nb = BIO_new(BIO_s_mem());
        if (nb) {
            BIO_set_mem_eof_return(nb, -1);
            SSL_set0_rbio(t->ssl, nb); /* frees the old one */
            t->rbio = nb;
        }
    }
    bm = NULL;
    if (BIO_ctrl_pending(t->wbio) == 0 && BIO_get_mem_ptr(t->wbio, &bm) == 1 && bm &&
        bm->max > TLS_BIO_KEEP) {
        BIO *nb = BIO_new(BIO_s_mem());
        if (nb) {
            SSL_set0_wbio(t->ssl, nb);
            t->wbio = nb;
        }
    }
    ERR_clear_error();
}

/* Records a fatal SSL error (what = "handshake", "read", "write"). */
static int tls__fail(struct tls__filter *t, const char *what, int sslerr)
{
    char e[200];
    long v = SSL_get_verify_result(t->ssl);
    int rc;
    if (sslerr == SSL_ERROR_SSL && v != X509_V_OK) {
        rc = lmq_filter__fail(&t->head, LMQ_FILTER_EPROTO, "TLS %s failed: %s (%s)", what,
                              tls__errstr(e, sizeof e), X509_verify_cert_error_string(v));
    } else if (sslerr == SSL_ERROR_SSL) {
        rc = lmq_filter__fail(&t->head, LMQ_FILTER_EPROTO, "TLS %s failed: %s", what,
                              tls__errstr(e, sizeof e));
    } else {
        ERR_clear_error();
        rc = lmq_filter__fail(&t->head, LMQ_FILTER_EPROTO, "TLS %s failed: SSL error %d", what,
                              sslerr);
    }
    /* Send the alert OpenSSL wrote, if any. */
    tls__drain(t);
    return rc;
}

static int tls__feed(struct lmq_filter *f, const uint8_t *wire, size_t len)
{
    struct tls__filter *t = (struct tls__filter *)f;
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        int w = BIO_write(t->rbio, wire, chunk);
        if (w <= 0)
            return lmq_filter__fail(f, LMQ_FILTER_ENOMEM, "TLS: out of memory");
        wire += w;
        len -= (size_t)w;
    }
    ERR_clear_error();
    if (!t->handshake_done) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                return tls__drain(t);
            return tls__fail(t, "handshake", e);
        }
        t->handshake_done = 1;
        f->state |= LMQ_FILTER_OPEN;
    }
    for (;;) {
        uint8_t *d = lmq_fbuf_reserve(&f->app, TLS_RECORD);
        if (!d)
            return lmq_filter__fail(f, LMQ_FILTER_ENOMEM, "TLS: out of memory");
        size_t got = 0;
        if (SSL_read_ex(t->ssl, d, TLS_RECORD, &got) == 1) {
            lmq_fbuf_commit(&f->app, got);
            continue;
        }
        int e = SSL_get_error(t->ssl, 0);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            /* close_notify: answer with ours. */
            ERR_clear_error();
            f->state |= LMQ_FILTER_PEER_CLOSED;
            snprintf(f->reason, sizeof f->reason, "TLS close_notify from peer");
            if (!(f->state & LMQ_FILTER_CLOSE_SENT)) {
                SSL_shutdown(t->ssl);
                f->state |= LMQ_FILTER_CLOSE_SENT;
            }
            ERR_clear_error();
            break;
        }
        return tls__fail(t, "read", e);
    }
    int rc = tls__drain(t);
    tls__trim(t);
    return rc;
}

static int tls__write_chunk(struct tls__filter *t, const uint8_t *p, size_t n)
{
    size_t done = 0;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, p, n, &done) != 1 || done != n)
        return tls__fail(t, "write", SSL_get_error(t->ssl, 0));
    return tls__drain(t);
}

static int tls__write(struct lmq_filter *f, const struct iovec *iov, size_t n)
{
    struct tls__filter *t = (struct tls__filter *)f;
    /* Small iovecs are gathered into full records; a large one is
     * written in place. */
    uint8_t stage[TLS_RECORD];
    size_t staged = 0;
    int r;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left > 0) {
            if (staged == 0 && left >= TLS_RECORD) {
                size_t take = left - left % TLS_RECORD;
                if ((r = tls__write_chunk(t, p, take)) < 0)
                    return r;
                p += take;
                left -= take;
                continue;
            }
            size_t take = TLS_RECORD - staged < left ? TLS_RECORD - staged : left;
            memcpy(stage + staged, p, take);
            staged += take;
            p += take;
            left -= take;
            if (staged == TLS_RECORD) {
                if ((r = tls__write_chunk(t, stage, staged)) < 0)
                    return r;
                staged = 0;
            }
        }
    }
    if (staged > 0 && (r = tls__write_chunk(t, stage, staged)) < 0)
        return r;
    tls__trim(t);
    return 0;
}

static int tls__shutdown(struct lmq_filter *f)
{
    struct tls__filter *t = (struct tls__filter *)f;
    f->state |= LMQ_FILTER_CLOSE_SENT;
    if (!t->handshake_done)
        return 0;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    return tls__drain(t);
}

static void tls__destroy(struct lmq_filter *f)
{
    struct tls__filter *t = (struct tls__filter *)f;
    SSL_free(t->ssl);
    lmq_filter__fini(f);
    free(t);
}

static const struct lmq_filter_ops tls__ops = {
    .name = "tls",
    .feed = tls__feed,
    .write = tls__write,
    .shutdown = tls__shutdown,
    .destroy = tls__destroy,
};

struct lmq_filter *lmq_tls_filter_new(struct lmq_tls_ctx *ctx)
{
    struct tls__filter *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    lmq_filter__init(&t->head, &tls__ops);
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "wait for more", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    return &t->head;
}

/* ---- the peer ---- */

static X509 *tls__peer(const struct lmq_filter *f)
{
    struct tls__filter *t = tls__of(f);
    if (!t || !t->handshake_done)
        return NULL;
    return SSL_get0_peer_certificate(t->ssl);
}

int lmq_tls_peer_subject(const struct lmq_filter *f, char *buf, size_t len)
{
    X509 *x = tls__peer(f);
    if (!x)
        return -1;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return LMQ_FILTER_ENOMEM;
    int rc = 0;
    if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) < 0) {
        rc = -1;
        goto out;
    }
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n < 0 || (size_t)n >= len) {
        rc = LMQ_FILTER_ELIMIT;
        goto out;
    }
    memcpy(buf, p, (size_t)n);
    buf[n] = '\0';
out:
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

int lmq_tls_peer_key(const struct lmq_filter *f, uint8_t *buf, size_t cap, size_t *len)
{
    X509 *x = tls__peer(f);
    if (!x)
        return -1;
    EVP_PKEY *k = X509_get0_pubkey(x);
    if (!k) {
        ERR_clear_error();
        return -1;
    }
    if (EVP_PKEY_get_id(k) == EVP_PKEY_ED25519) {
        size_t n = cap;
        if (cap < 32)
            return LMQ_FILTER_ELIMIT;
        if (EVP_PKEY_get_raw_public_key(k, buf, &n) != 1 || n != 32) {
            ERR_clear_error();
            return -1;
        }
        *len = n;
        return LMQ_TLS_KEY_ED25519;
    }
    int n = i2d_PUBKEY(k, NULL);
    if (n <= 0) {
        ERR_clear_error();
        return -1;
    }
    if ((size_t)n > cap)
        return LMQ_FILTER_ELIMIT;
    unsigned char *p = buf;
    if (i2d_PUBKEY(k, &p) != n) {
        ERR_clear_error();
        return -1;
    }
    *len = (size_t)n;
    return LMQ_TLS_KEY_SPKI;
}

const char *lmq_tls_version(const struct lmq_filter *f)
{
    struct tls__filter *t = tls__of(f);
    return t && t->handshake_done ? SSL_get_version(t->ssl) : "";
}

const char *lmq_tls_cipher(const struct lmq_filter *f)
{
    struct tls__filter *t = tls__of(f);
    const char *c = t && t->handshake_done ? SSL_get_cipher_name(t->ssl) : NULL;
    return c ? c : "";
}

int lmq_tls_resumed(const struct lmq_filter *f)
{
    struct tls__filter *t = tls__of(f);
    return t && t->handshake_done ? SSL_session_reused(t->ssl) : 0;
}
