/* Tests for src/net/tls.c (and the ws-over-tls stack of transport.c). A CA,
 * a server certificate and client certificates (EC and Ed25519 signed by
 * the CA, and a self-signed "wrong" one) are made at run time with the
 * openssl command into a temporary directory; nothing is committed. Each
 * test drives an in-memory handshake between the server filter and an
 * OpenSSL client on memory BIOs, for TLS 1.2 and 1.3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/tls.h"
#include "net/transport.h"
#include "net/ws.h"

static char dir[64];

static char *path(const char *name)
{
    static char buf[8][PATH_MAX];
    static int i;
    char *p = buf[i++ % 8];
    snprintf(p, PATH_MAX, "%s/%s", dir, name);
    return p;
}

static int run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "cd %s && (%s) >>openssl.log 2>&1", dir, cmd);
    return system(full);
}

/* ca.crt/ca.key; server.crt/key (CN=localhost); client.crt/key (EC,
 * CN=device-1,O=Acme); ed.crt/key (Ed25519, CN=device-ed); wrong.crt/key
 * (self-signed, CN=intruder). */
static int make_pki(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/lmq-test-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    static const char *cmds[] = {
        "printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign,cRLSign\\n' "
        "> ca.ext",
        "printf 'basicConstraints=CA:FALSE\\nsubjectAltName=DNS:localhost\\n"
        "extendedKeyUsage=serverAuth\\n' > server.ext",
        "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
        "-out ca.crt -days 2 -subj '/CN=ledgermq test CA' -extensions v3_ca "
        "-addext 'keyUsage=critical,keyCertSign,cRLSign'",
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key "
        "-out server.csr -subj '/CN=localhost'",
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile server.ext -out server.crt",
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key "
        "-out client.csr -subj '/O=Acme/CN=device-1'",
        "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile client.ext -out client.crt",
        "openssl genpkey -algorithm ed25519 -out ed.key",
        "openssl req -new -key ed.key -out ed.csr -subj '/CN=device-ed'",
        "openssl x509 -req -in ed.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile client.ext -out ed.crt",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout wrong.key "
        "-out wrong.crt -days 2 -subj '/CN=intruder'",
        /* A client of another CA that the server does not trust. */
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key "
        "-out other.crt -days 2 -subj '/CN=other CA' -extensions v3_ca",
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "
        "stranger.key -out stranger.csr -subj '/CN=stranger'",
        "openssl x509 -req -in stranger.csr -CA other.crt -CAkey other.key -CAcreateserial "
        "-days 2 -extfile client.ext -out stranger.crt",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (run("%s", cmds[i]) != 0) {
            fprintf(stderr, "failed: %s (see %s/openssl.log)\n", cmds[i], dir);
            return -1;
        }
    return 0;
}

static int remove_pki(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void listener(struct lmq_listener_config *l, const char *cafile, bool require)
{
    memset(l, 0, sizeof *l);
    l->port = 8883;
    snprintf(l->certfile, sizeof l->certfile, "%s", path("server.crt"));
    snprintf(l->keyfile, sizeof l->keyfile, "%s", path("server.key"));
    if (cafile)
        snprintf(l->cafile, sizeof l->cafile, "%s", cafile);
    l->require_certificate = require;
}

/* ---- an OpenSSL client on memory BIOs ---- */

struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out; /* in: from the server; out: to the server */
};

static void client_new(struct client *c, int version, const char *cert, const char *key)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(c->ctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(c->ctx, version), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(c->ctx, version), 1);
    assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, path("ca.crt"), NULL), 1);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (cert) {
        assert_int_equal(SSL_CTX_use_certificate_file(c->ctx, path(cert), SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(c->ctx, path(key), SSL_FILETYPE_PEM), 1);
    }
    c->ssl = SSL_new(c->ctx);
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c->in, -1);
    BIO_set_mem_eof_return(c->out, -1);
    SSL_set_bio(c->ssl, c->in, c->out);
    SSL_set_connect_state(c->ssl);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    assert_int_equal(SSL_set1_host(c->ssl, "localhost"), 1);
}

static void client_free(struct client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* When non-zero, pump() feeds the server this many bytes at a time. */
static size_t feed_step;

/* Moves bytes both ways until nothing moves; returns the server's last
 * feed result. The client's app data is left in its SSL. */
static int pump(struct lmq_filter *f, struct client *c)
{
    int rc = 0;
    for (int round = 0; round < 1000; round++) {
        int moved = 0;
        if (!SSL_is_init_finished(c->ssl)) {
            SSL_do_handshake(c->ssl);
            ERR_clear_error();
        }
        char buf[16384];
        int n;
        while ((n = BIO_read(c->out, buf, sizeof buf)) > 0) {
            size_t step = feed_step ? feed_step : (size_t)n;
            for (size_t i = 0; i < (size_t)n; i += step) {
                size_t k = (size_t)n - i < step ? (size_t)n - i : step;
                int r = lmq_filter_feed(f, (const uint8_t *)buf + i, k);
                if (r < 0)
                    rc = r;
            }
            moved = 1;
        }
        size_t wl;
        const uint8_t *w = lmq_filter_wire(f, &wl);
        if (wl) {
            assert_int_equal(BIO_write(c->in, w, (int)wl), (int)wl);
            lmq_filter_wire_consume(f, wl);
            moved = 1;
        }
        if (!moved)
            break;
    }
    return rc;
}

/* Reads everything the client can decrypt into OUT (at most CAP). */
static size_t client_read(struct client *c, uint8_t *out, size_t cap)
{
    size_t got = 0, n;
    while (got < cap && SSL_read_ex(c->ssl, out + got, cap - got, &n) == 1)
        got += n;
    ERR_clear_error();
    return got;
}

static void client_write(struct client *c, const uint8_t *p, size_t n)
{
    size_t w;
    assert_int_equal(SSL_write_ex(c->ssl, p, n, &w), 1);
    assert_int_equal(w, n);
}

/* Runs a handshake and returns the server filter (the caller frees it). */
static struct lmq_filter *handshake(struct lmq_tls_ctx *ctx, struct client *c, int *rc)
{
    struct lmq_filter *f = lmq_tls_filter_new(ctx);
    assert_non_null(f);
    *rc = pump(f, c);
    return f;
}

/* ---- tests ---- */

static void test_ctx_errors(void **state)
{
    (void)state;
    char err[512];
    struct lmq_listener_config l;
    listener(&l, NULL, false);
    snprintf(l.certfile, sizeof l.certfile, "%s", path("missing.crt"));
    assert_null(lmq_tls_ctx_new(&l, err, sizeof err));
    assert_non_null(strstr(err, "missing.crt"));
    assert_non_null(strstr(err, "certfile"));

    listener(&l, NULL, false);
    snprintf(l.keyfile, sizeof l.keyfile, "%s", path("client.key"));
    assert_null(lmq_tls_ctx_new(&l, err, sizeof err));
    assert_non_null(strstr(err, "client.key"));

    listener(&l, NULL, false);
    snprintf(l.keyfile, sizeof l.keyfile, "%s", path("nokey.pem"));
    assert_null(lmq_tls_ctx_new(&l, err, sizeof err));
    assert_non_null(strstr(err, "keyfile"));
    assert_non_null(strstr(err, "nokey.pem"));

    listener(&l, path("nothere.crt"), false);
    assert_null(lmq_tls_ctx_new(&l, err, sizeof err));
    assert_non_null(strstr(err, "cafile"));
    assert_non_null(strstr(err, "nothere.crt"));

    listener(&l, NULL, true);
    assert_null(lmq_tls_ctx_new(&l, err, sizeof err));
    assert_non_null(strstr(err, "require_certificate needs a cafile"));

    listener(&l, NULL, false);
    l.keyfile[0] = '\0';
    assert_null(lmq_tls_ctx_new(&l, err, sizeof err));
    assert_non_null(strstr(err, "keyfile"));
    /* The OpenSSL error queue is left clean. */
    assert_int_equal(ERR_peek_error(), 0);
}

static void data_both_ways(int version)
{
    char err[512];
    struct lmq_listener_config l;
    listener(&l, NULL, false);
    struct lmq_tls_ctx *ctx = lmq_tls_ctx_new(&l, err, sizeof err);
    assert_non_null(ctx);
    struct client c;
    client_new(&c, version, NULL, NULL);
    int rc;
    struct lmq_filter *f = handshake(ctx, &c, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(lmq_filter_state(f), LMQ_FILTER_OPEN);
    assert_true(SSL_is_init_finished(c.ssl));
    assert_string_equal(lmq_tls_version(f), version == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2");
    assert_true(strlen(lmq_tls_cipher(f)) > 0);
    assert_string_equal(lmq_filter_name(f), "tls");
    char subj[256];
    assert_int_equal(lmq_tls_peer_subject(f, subj, sizeof subj), -1); /* no client cert */

    /* Client to server: 100 KiB in several records, taken in pieces. */
    size_t big = 100 * 1024;
    uint8_t *data = malloc(big), *got = malloc(big);
    assert_non_null(data);
    assert_non_null(got);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 13 + (i >> 10));
    client_write(&c, data, big);
    assert_int_equal(pump(f, &c), 0);
    size_t n;
    const uint8_t *p = lmq_filter_app(f, &n);
    assert_int_equal(n, big);
    assert_memory_equal(p, data, big);
    lmq_filter_app_consume(f, 1000);
    p = lmq_filter_app(f, &n);
    assert_int_equal(n, big - 1000);
    assert_memory_equal(p, data + 1000, n);
    lmq_filter_app_consume(f, n);
    lmq_filter_app(f, &n);
    assert_int_equal(n, 0);

    /* Server to client: small and large iovecs (one over 16 KiB). */
    struct iovec v[5] = {
        {data, 3}, {data + 3, 0}, {data + 3, 40000}, {data + 40003, 100}, {data + 40103, 60000},
    };
    size_t total = 3 + 40000 + 100 + 60000;
    assert_int_equal(lmq_filter_write(f, v, 5), 0);
    assert_int_equal(pump(f, &c), 0);
    assert_int_equal(client_read(&c, got, big), total);
    assert_memory_equal(got, data, total);

    /* Many tiny writes, then shutdown: close_notify reaches the client. */
    for (int i = 0; i < 50; i++) {
        struct iovec one = {data + i, 1};
        assert_int_equal(lmq_filter_write(f, &one, 1), 0);
    }
    assert_int_equal(lmq_filter_shutdown(f), 0);
    assert_true(lmq_filter_state(f) & LMQ_FILTER_CLOSE_SENT);
    assert_int_equal(lmq_filter_write(f, v, 1), LMQ_FILTER_ESTATE);
    pump(f, &c);
    assert_int_equal(client_read(&c, got, big), 50);
    assert_memory_equal(got, data, 50);
    assert_int_equal(SSL_get_shutdown(c.ssl) & SSL_RECEIVED_SHUTDOWN, SSL_RECEIVED_SHUTDOWN);

    free(data);
    free(got);
    lmq_filter_free(f);
    client_free(&c);
    lmq_tls_ctx_free(ctx);
}

static void test_data_tls12(void **state)
{
    (void)state;
    data_both_ways(TLS1_2_VERSION);
}

static void test_data_tls13(void **state)
{
    (void)state;
    data_both_ways(TLS1_3_VERSION);
}

static void test_close_notify_from_client(void **state)
{
    (void)state;
    char err[512];
    struct lmq_listener_config l;
    listener(&l, NULL, false);
    struct lmq_tls_ctx *ctx = lmq_tls_ctx_new(&l, err, sizeof err);
    struct client c;
    client_new(&c, TLS1_3_VERSION, NULL, NULL);
    int rc;
    struct lmq_filter *f = handshake(ctx, &c, &rc);
    client_write(&c, (const uint8_t *)"\xc0\x00", 2);
    SSL_shutdown(c.ssl);
    assert_int_equal(pump(f, &c), 0);
    unsigned st = lmq_filter_state(f);
    assert_true(st & LMQ_FILTER_PEER_CLOSED);
    assert_true(st & LMQ_FILTER_CLOSE_SENT);
    assert_false(st & LMQ_FILTER_ERROR);
    size_t n;
    lmq_filter_app(f, &n);
    assert_int_equal(n, 2);
    assert_non_null(strstr(lmq_filter_reason(f), "close_notify"));
    lmq_filter_free(f);
    client_free(&c);
    lmq_tls_ctx_free(ctx);
}

/* A handshake that must fail on the server with a reason holding WHY. */
static void check_refused(const struct lmq_listener_config *l, int version, const char *cert,
                          const char *key, const char *why)
{
    char err[512];
    struct lmq_tls_ctx *ctx = lmq_tls_ctx_new(l, err, sizeof err);
    assert_non_null(ctx);
    struct client c;
    client_new(&c, version, cert, key);
    int rc;
    struct lmq_filter *f = handshake(ctx, &c, &rc);
    assert_int_equal(rc, LMQ_FILTER_EPROTO);
    assert_true(lmq_filter_state(f) & LMQ_FILTER_ERROR);
    const char *r = lmq_filter_reason(f);
    if (strncmp(r, "TLS handshake failed: ", 22) != 0 || !strstr(r, why))
        fail_msg("reason '%s' lacks '%s'", r, why);
    /* The client got an alert, not a session. */
    uint8_t b[16];
    client_read(&c, b, sizeof b);
    assert_true(SSL_get_shutdown(c.ssl) != 0 || !SSL_is_init_finished(c.ssl) ||
                version == TLS1_3_VERSION);
    assert_int_equal(lmq_filter_feed(f, b, 1), LMQ_FILTER_ESTATE);
    assert_int_equal(ERR_peek_error(), 0);
    lmq_filter_free(f);
    client_free(&c);
    lmq_tls_ctx_free(ctx);
}

static void test_require_certificate(void **state)
{
    (void)state;
    struct lmq_listener_config l;
    listener(&l, path("ca.crt"), true);
    check_refused(&l, TLS1_2_VERSION, NULL, NULL, "peer did not return a certificate");
    check_refused(&l, TLS1_3_VERSION, NULL, NULL, "certificate");
    /* A self-signed certificate is refused, required or optional. */
    check_refused(&l, TLS1_2_VERSION, "wrong.crt", "wrong.key",
                  "certificate verify failed (self-signed certificate)");
    check_refused(&l, TLS1_3_VERSION, "wrong.crt", "wrong.key", "certificate verify failed");
    listener(&l, path("ca.crt"), false);
    check_refused(&l, TLS1_3_VERSION, "wrong.crt", "wrong.key", "certificate verify failed");
    /* A certificate from a CA the server does not trust. */
    check_refused(&l, TLS1_2_VERSION, "stranger.crt", "stranger.key",
                  "certificate verify failed (unable to get local issuer certificate)");
    check_refused(&l, TLS1_3_VERSION, "stranger.crt", "stranger.key",
                  "certificate verify failed (unable to get local issuer certificate)");
    /* A server certificate is not a client certificate. */
    listener(&l, path("ca.crt"), true);
    check_refused(&l, TLS1_3_VERSION, "server.crt", "server.key", "certificate verify failed");
}

static void test_old_protocol_refused(void **state)
{
    (void)state;
    char err[512];
    struct lmq_listener_config l;
    listener(&l, NULL, false);
    struct lmq_tls_ctx *ctx = lmq_tls_ctx_new(&l, err, sizeof err);
    struct client c;
    c.ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(c.ctx, 0);
    SSL_CTX_set_min_proto_version(c.ctx, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(c.ctx, TLS1_1_VERSION);
    SSL_CTX_set_cipher_list(c.ctx, "ALL:@SECLEVEL=0");
    c.ssl = SSL_new(c.ctx);
    c.in = BIO_new(BIO_s_mem());
    c.out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c.in, -1);
    SSL_set_bio(c.ssl, c.in, c.out);
    SSL_set_connect_state(c.ssl);
    int rc;
    struct lmq_filter *f = handshake(ctx, &c, &rc);
    assert_int_equal(rc, LMQ_FILTER_EPROTO);
    assert_non_null(strstr(lmq_filter_reason(f), "TLS handshake failed: "));
    lmq_filter_free(f);
    client_free(&c);

    /* Plain MQTT on a TLS port. */
    f = lmq_tls_filter_new(ctx);
    static const uint8_t connect[] = {0x10, 0x0c, 0x00, 0x04, 'M',  'Q',  'T',
                                      'T',  0x04, 0x02, 0x00, 0x3c, 0x00, 0x00};
    assert_int_equal(lmq_filter_feed(f, connect, sizeof connect), LMQ_FILTER_EPROTO);
    assert_non_null(strstr(lmq_filter_reason(f), "TLS handshake failed: "));
    lmq_filter_free(f);
    lmq_tls_ctx_free(ctx);
}

/* Records and handshakes split across feeds: byte by byte and in odd
 * pieces, with a client certificate, then 40 KiB of data. */
static void test_split_feeds(void **state)
{
    (void)state;
    static const size_t steps[] = {1, 7, 1000};
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    size_t big = 40000;
    uint8_t *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 5 + 3);
    for (size_t si = 0; si < 3; si++)
        for (size_t vi = 0; vi < 2; vi++) {
            char err[512];
            struct lmq_listener_config l;
            listener(&l, path("ca.crt"), true);
            struct lmq_tls_ctx *ctx = lmq_tls_ctx_new(&l, err, sizeof err);
            struct client c;
            client_new(&c, versions[vi], "ed.crt", "ed.key");
            feed_step = steps[si];
            int rc;
            struct lmq_filter *f = handshake(ctx, &c, &rc);
            assert_int_equal(rc, 0);
            assert_true(lmq_filter_state(f) & LMQ_FILTER_OPEN);
            client_write(&c, data, big);
            assert_int_equal(pump(f, &c), 0);
            feed_step = 0;
            size_t n;
            const uint8_t *p = lmq_filter_app(f, &n);
            assert_int_equal(n, big);
            assert_memory_equal(p, data, big);
            char subj[64];
            assert_int_equal(lmq_tls_peer_subject(f, subj, sizeof subj), 0);
            assert_string_equal(subj, "CN=device-ed");
            lmq_filter_free(f);
            client_free(&c);
            lmq_tls_ctx_free(ctx);
        }
    free(data);
}

/* Good client certificate: subject and key exposed. */
static void client_cert(int version, bool require)
{
    char err[512];
    struct lmq_listener_config l;
    listener(&l, path("ca.crt"), require);
    struct lmq_tls_ctx *ctx = lmq_tls_ctx_new(&l, err, sizeof err);
    assert_non_null(ctx);

    struct client c;
    client_new(&c, version, "client.crt", "client.key");
    int rc;
    struct lmq_filter *f = handshake(ctx, &c, &rc);
    assert_int_equal(rc, 0);
    assert_true(lmq_filter_state(f) & LMQ_FILTER_OPEN);
    char subj[256];
    assert_int_equal(lmq_tls_peer_subject(f, subj, sizeof subj), 0);
    assert_string_equal(subj, "CN=device-1,O=Acme");
    assert_int_equal(lmq_tls_peer_subject(f, subj, 5), LMQ_FILTER_ELIMIT);
    uint8_t key[1024];
    size_t kl = 0;
    assert_int_equal(lmq_tls_peer_key(f, key, sizeof key, &kl), LMQ_TLS_KEY_SPKI);
    /* Same as the DER SubjectPublicKeyInfo of client.crt. */
    FILE *fp = fopen(path("client.crt"), "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    unsigned char *der = NULL;
    int dl = i2d_PUBKEY(X509_get0_pubkey(x), &der);
    assert_int_equal((size_t)dl, kl);
    assert_memory_equal(der, key, kl);
    OPENSSL_free(der);
    X509_free(x);
    assert_int_equal(lmq_tls_peer_key(f, key, 10, &kl), LMQ_FILTER_ELIMIT);
    lmq_filter_free(f);
    client_free(&c);

    /* Ed25519: the raw 32-byte key. */
    client_new(&c, version, "ed.crt", "ed.key");
    f = handshake(ctx, &c, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(lmq_tls_peer_subject(f, subj, sizeof subj), 0);
    assert_string_equal(subj, "CN=device-ed");
    assert_int_equal(lmq_tls_peer_key(f, key, sizeof key, &kl), LMQ_TLS_KEY_ED25519);
    assert_int_equal(kl, 32);
    fp = fopen(path("ed.key"), "r");
    assert_non_null(fp);
    EVP_PKEY *pk = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(pk);
    uint8_t raw[32];
    size_t rl = sizeof raw;
    assert_int_equal(EVP_PKEY_get_raw_public_key(pk, raw, &rl), 1);
    assert_memory_equal(raw, key, 32);
    EVP_PKEY_free(pk);
    lmq_filter_free(f);
    client_free(&c);

    /* Optional certificates: a client without one still gets in. */
    if (!require) {
        client_new(&c, version, NULL, NULL);
        f = handshake(ctx, &c, &rc);
        assert_int_equal(rc, 0);
        assert_true(lmq_filter_state(f) & LMQ_FILTER_OPEN);
        assert_int_equal(lmq_tls_peer_subject(f, subj, sizeof subj), -1);
        assert_int_equal(lmq_tls_peer_key(f, key, sizeof key, &kl), -1);
        lmq_filter_free(f);
        client_free(&c);
    }
    lmq_tls_ctx_free(ctx);
}

static void test_client_cert(void **state)
{
    (void)state;
    client_cert(TLS1_2_VERSION, true);
    client_cert(TLS1_3_VERSION, true);
    client_cert(TLS1_2_VERSION, false);
    client_cert(TLS1_3_VERSION, false);
}

/* A session ticket from one connection resumes the next, and the client
 * certificate is still known. */
static void test_resumption(void **state)
{
    (void)state;
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t vi = 0; vi < 2; vi++) {
        char err[512];
        struct lmq_listener_config l;
        listener(&l, path("ca.crt"), true);
        struct lmq_tls_ctx *ctx = lmq_tls_ctx_new(&l, err, sizeof err);
        struct client c;
        client_new(&c, versions[vi], "client.crt", "client.key");
        int rc;
        struct lmq_filter *f = handshake(ctx, &c, &rc);
        assert_int_equal(rc, 0);
        uint8_t b[16];
        client_read(&c, b, sizeof b); /* TLS 1.3 tickets arrive after the handshake */
        SSL_SESSION *sess = SSL_get1_session(c.ssl);
        assert_non_null(sess);
        assert_int_equal(lmq_tls_resumed(f), 0);
        lmq_filter_free(f);
        SSL *s2 = SSL_new(c.ctx);
        BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
        BIO_set_mem_eof_return(in, -1);
        SSL_set_bio(s2, in, out);
        SSL_set_connect_state(s2);
        SSL_set_tlsext_host_name(s2, "localhost");
        assert_int_equal(SSL_set_session(s2, sess), 1);
        /* Freed without a shutdown, OpenSSL would mark the session
         * unresumable. */
        SSL_shutdown(c.ssl);
        SSL_free(c.ssl);
        c.ssl = s2;
        c.in = in;
        c.out = out;
        f = handshake(ctx, &c, &rc);
        assert_int_equal(rc, 0);
        if (lmq_tls_resumed(f) != 1)
            fail_msg("no resumption with %s", lmq_tls_version(f));
        char subj[256];
        assert_int_equal(lmq_tls_peer_subject(f, subj, sizeof subj), 0);
        assert_string_equal(subj, "CN=device-1,O=Acme");
        SSL_SESSION_free(sess);
        lmq_filter_free(f);
        client_free(&c);
        lmq_tls_ctx_free(ctx);
    }
}

/* WebSocket over TLS: one stacked filter, client speaks HTTP + frames
 * through its TLS session. */
static void test_ws_over_tls(void **state)
{
    (void)state;
    char err[512];
    struct lmq_listener_config l;
    listener(&l, path("ca.crt"), false);
    struct lmq_tls_ctx *ctx = lmq_tls_ctx_new(&l, err, sizeof err);
    assert_non_null(ctx);
    struct lmq_filter *f = lmq_filter_stack(lmq_tls_filter_new(ctx), lmq_ws_filter_new(1 << 20));
    assert_non_null(f);
    assert_string_equal(lmq_filter_name(f), "ws+tls");
    assert_non_null(lmq_filter_layer(f, "tls"));
    assert_non_null(lmq_filter_layer(f, "ws"));
    assert_null(lmq_filter_layer(f, "quic"));
    /* A NULL layer makes no stack and leaks nothing. */
    assert_null(lmq_filter_stack(lmq_tls_filter_new(ctx), NULL));
    assert_null(lmq_filter_stack(NULL, lmq_ws_filter_new(1024)));
    struct client c;
    client_new(&c, TLS1_3_VERSION, "ed.crt", "ed.key");
    assert_int_equal(pump(f, &c), 0);
    /* TLS is up, WebSocket not yet: the stack is not open. */
    assert_int_equal(lmq_filter_state(f) & LMQ_FILTER_OPEN, 0);
    uint8_t key[64];
    size_t kl;
    assert_int_equal(lmq_tls_peer_key(lmq_filter_layer(f, "tls"), key, sizeof key, &kl),
                     LMQ_TLS_KEY_ED25519);

    const char *req = "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n";
    /* Request and a first masked frame (PINGREQ) in one TLS write. */
    uint8_t buf[512];
    size_t n = strlen(req);
    memcpy(buf, req, n);
    static const uint8_t fr[] = {0x82, 0x82, 1, 2, 3, 4, 0xc0 ^ 1, 0x00 ^ 2};
    memcpy(buf + n, fr, sizeof fr);
    client_write(&c, buf, n + sizeof fr);
    assert_int_equal(pump(f, &c), 0);
    assert_int_equal(lmq_filter_state(f), LMQ_FILTER_OPEN);
    const uint8_t *app = lmq_filter_app(f, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(app, "\xc0\x00", 2);
    lmq_filter_app_consume(f, n);

    /* Server PINGRESP as one frame through TLS. */
    struct iovec v = {"\xd0\x00", 2};
    assert_int_equal(lmq_filter_write(f, &v, 1), 0);
    assert_int_equal(pump(f, &c), 0);
    uint8_t got[512];
    size_t gl = client_read(&c, got, sizeof got);
    const char *hend = memmem(got, gl, "\r\n\r\n", 4);
    assert_non_null(hend);
    assert_non_null(memmem(got, gl, "Sec-WebSocket-Protocol: mqtt\r\n", 30));
    size_t off = (size_t)((const uint8_t *)hend - got) + 4;
    assert_int_equal(gl - off, 4);
    assert_memory_equal(got + off, "\x82\x02\xd0\x00", 4);

    /* Client closes the WebSocket: the stack answers with a close frame
     * and a TLS close_notify. */
    static const uint8_t cl[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    client_write(&c, cl, sizeof cl);
    assert_int_equal(pump(f, &c), 0);
    unsigned st = lmq_filter_state(f);
    assert_true(st & LMQ_FILTER_PEER_CLOSED);
    assert_true(st & LMQ_FILTER_CLOSE_SENT);
    assert_false(st & LMQ_FILTER_ERROR);
    gl = client_read(&c, got, sizeof got);
    assert_int_equal(gl, 4);
    assert_memory_equal(got, "\x88\x02\x03\xe8", 4);
    assert_int_equal(SSL_get_shutdown(c.ssl) & SSL_RECEIVED_SHUTDOWN, SSL_RECEIVED_SHUTDOWN);
    lmq_filter_free(f);
    client_free(&c);

    /* A bad WebSocket request inside good TLS: 400 page, then close_notify;
     * the stack reports the WebSocket reason. */
    f = lmq_filter_stack(lmq_tls_filter_new(ctx), lmq_ws_filter_new(1024));
    client_new(&c, TLS1_2_VERSION, NULL, NULL);
    assert_int_equal(pump(f, &c), 0);
    const char *bad = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    client_write(&c, (const uint8_t *)bad, strlen(bad));
    assert_int_equal(pump(f, &c), LMQ_FILTER_EPROTO);
    assert_true(lmq_filter_state(f) & LMQ_FILTER_ERROR);
    assert_non_null(strstr(lmq_filter_reason(f), "WebSocket handshake refused (426)"));
    gl = client_read(&c, got, sizeof got - 1);
    got[gl] = '\0';
    assert_non_null(strstr((char *)got, "HTTP/1.1 426 Upgrade Required\r\n"));
    lmq_filter_free(f);
    client_free(&c);

    /* A TLS failure under a stack is reported as such. */
    listener(&l, path("ca.crt"), true);
    lmq_tls_ctx_free(ctx);
    ctx = lmq_tls_ctx_new(&l, err, sizeof err);
    f = lmq_filter_stack(lmq_tls_filter_new(ctx), lmq_ws_filter_new(1024));
    client_new(&c, TLS1_2_VERSION, NULL, NULL);
    assert_int_equal(pump(f, &c), LMQ_FILTER_EPROTO);
    assert_non_null(strstr(lmq_filter_reason(f), "TLS handshake failed: peer did not return"));
    lmq_filter_free(f);
    client_free(&c);
    lmq_tls_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_errors),          cmocka_unit_test(test_data_tls12),
        cmocka_unit_test(test_data_tls13),          cmocka_unit_test(test_close_notify_from_client),
        cmocka_unit_test(test_require_certificate), cmocka_unit_test(test_old_protocol_refused),
        cmocka_unit_test(test_client_cert),         cmocka_unit_test(test_split_feeds),
        cmocka_unit_test(test_resumption),          cmocka_unit_test(test_ws_over_tls),
    };
    return cmocka_run_group_tests(tests, make_pki, remove_pki);
}
