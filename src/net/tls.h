/* TLS as a transport filter (see transport.h): OpenSSL 3 on memory BIOs,
 * server side, TLS 1.2 and 1.3 only. One lmq_tls_ctx per listener (built
 * from its certfile, keyfile, cafile and require_certificate), one filter
 * per connection. After the handshake the client certificate's subject
 * and public key are available for the authentication layer.
 * Invariant: a client certificate that lmq_tls_peer_subject() or
 * lmq_tls_peer_key() reports has been verified against the listener's
 * cafile (without a cafile, no client certificate is asked for).
 * A context may be shared by filters on any thread; a filter belongs to
 * one thread at a time. */
#ifndef LMQ_NET_TLS_H
#define LMQ_NET_TLS_H

#include "net/transport.h"
#include "util/config.h"

#include <stddef.h>
#include <stdint.h>

struct lmq_tls_ctx;

/* Builds the server context of listener L: certfile (PEM, the chain may
 * follow the certificate) and keyfile are required; cafile is the CA
 * bundle that client certificates must chain to; require_certificate
 * needs a cafile and refuses clients without a certificate. Session
 * tickets are on (stateless, one per TLS 1.3 handshake, 2 h lifetime);
 * there is no server-side session cache. NULL with a reason naming the
 * file that failed in ERR. */
struct lmq_tls_ctx *lmq_tls_ctx_new(const struct lmq_listener_config *l, char *err, size_t errlen);
/* NULL is fine. Filters made from CTX keep it alive (reference counted). */
void lmq_tls_ctx_free(struct lmq_tls_ctx *ctx);

/* A new server-side TLS filter on CTX, waiting for the ClientHello. NULL
 * when out of memory. Free with lmq_filter_free(). */
struct lmq_filter *lmq_tls_filter_new(struct lmq_tls_ctx *ctx);

/* Client certificate's subject as one RFC 2253 line ("CN=dev1,O=Acme")
 * into BUF. Returns 0, -1 when there is no client certificate (or F is
 * not a TLS filter or its handshake is not done), LMQ_FILTER_ELIMIT when
 * BUF is too small. */
int lmq_tls_peer_subject(const struct lmq_filter *f, char *buf, size_t len);

#define LMQ_TLS_KEY_ED25519 1 /* raw 32-byte Ed25519 public key */
#define LMQ_TLS_KEY_SPKI 2    /* DER SubjectPublicKeyInfo (RSA, EC, ...) */

/* Client certificate's public key into BUF (CAP bytes), its length in
 * *LEN. Returns LMQ_TLS_KEY_ED25519 or LMQ_TLS_KEY_SPKI, -1 when there is
 * no client certificate, LMQ_FILTER_ELIMIT when CAP is too small. */
int lmq_tls_peer_key(const struct lmq_filter *f, uint8_t *buf, size_t cap, size_t *len);

/* Negotiated protocol and cipher ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
 * for log lines; "" before the handshake. */
const char *lmq_tls_version(const struct lmq_filter *f);
const char *lmq_tls_cipher(const struct lmq_filter *f);

/* 1 when the handshake resumed a session (ticket), else 0. */
int lmq_tls_resumed(const struct lmq_filter *f);

#endif
