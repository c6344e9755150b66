/* The CLI's blocking MQTT 5 client (see cli_mqtt.h). One socket, one
 * receive buffer that grows to the largest packet seen (at most
 * CMQ_MAX_PACKET), and a FIFO of messages received while waiting for
 * something else, so no message is lost between a SUBACK and the next
 * read. Every wait is bounded by a deadline; keep-alive PINGREQs go out
 * while cli_mqtt_next waits longer than half the keep-alive. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "cmd/cli.h"
#include "cmd/cli_mqtt.h"
#include "mqtt/codec.h"

#define CMQ_MAX_PACKET (64u << 20)
#define CMQ_KEEPALIVE 60

struct cmq_node {
    struct cmq_node *next;
    struct cli_mqtt_msg *msg;
};

struct cli_mqtt {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    const char *broker;
    char client_id[96];
    char reply_topic[160];
    bool reply_subscribed;
    int timeout_ms;
    uint16_t next_id;
    uint8_t *rbuf;
    size_t rlen, rcap;
    struct cmq_node *q_head, *q_tail;
    uint64_t last_tx_ms;
    uint64_t corr_counter;
    char ack_why[256]; /* the reason string of the last PUBACK waited for */
};

static uint64_t cmq__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int cmq__fail(const struct cli_mqtt *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int cmq__fail(const struct cli_mqtt *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ledgermq: --broker %s: ", m->broker);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_ERR;
}

/* Splits "HOST:PORT" / "[V6]:PORT" into host and port. */
static int cmq__split(const char *s, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -1;
        hl = (size_t)(end - s - 1);
        s++;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hcap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    strcpy(port, colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    return 0;
}

/* Non-blocking connect bounded by the timeout. */
static int cmq__tcp(struct cli_mqtt *m, const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return cmq__fail(m, "cannot resolve the host: %s", gai_strerror(rc));
    int err = ECONNREFUSED;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                err = errno;
                close(fd);
                continue;
            }
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int n = poll(&p, 1, m->timeout_ms);
            socklen_t sl = sizeof err;
            if (n == 0) {
                err = ETIMEDOUT;
                close(fd);
                continue;
            }
            if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0 || err != 0) {
                if (n < 0)
                    err = errno;
                close(fd);
                continue;
            }
        }
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        m->fd = fd;
        freeaddrinfo(res);
        return 0;
    }
    freeaddrinfo(res);
    return cmq__fail(m, "cannot connect: %s", err == ETIMEDOUT ? "timed out" : strerror(err));
}

static const char *cmq__ssl_err(void)
{
    static char buf[256];
    unsigned long e = ERR_get_error();
    if (!e)
        return "handshake failed";
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

static int cmq__tls(struct cli_mqtt *m, const struct cli_mqtt_opts *o, const char *host)
{
    m->ctx = SSL_CTX_new(TLS_client_method());
    if (!m->ctx)
        return cmq__fail(m, "TLS: %s", cmq__ssl_err());
    SSL_CTX_set_min_proto_version(m->ctx, TLS1_2_VERSION);
    if (o->cafile) {
        if (SSL_CTX_load_verify_locations(m->ctx, o->cafile, NULL) != 1)
            return cmq__fail(m, "--cafile: %s", cmq__ssl_err());
        SSL_CTX_set_verify(m->ctx, SSL_VERIFY_PEER, NULL);
    } else if (SSL_CTX_set_default_verify_paths(m->ctx) == 1) {
        SSL_CTX_set_verify(m->ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->cert && SSL_CTX_use_certificate_chain_file(m->ctx, o->cert) != 1)
        return cmq__fail(m, "--cert: %s", cmq__ssl_err());
    if (o->key || o->cert) {
        if (SSL_CTX_use_PrivateKey_file(m->ctx, o->key ? o->key : o->cert, SSL_FILETYPE_PEM) != 1)
            return cmq__fail(m, "--tls-key: %s", cmq__ssl_err());
    }
    m->ssl = SSL_new(m->ctx);
    if (!m->ssl || SSL_set_fd(m->ssl, m->fd) != 1)
        return cmq__fail(m, "TLS: %s", cmq__ssl_err());
    /* Check the server's name: an IP address or a DNS name. */
    X509_VERIFY_PARAM *vp = SSL_get0_param(m->ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1) {
        SSL_set_tlsext_host_name(m->ssl, host);
        SSL_set1_host(m->ssl, host);
    }
    struct timeval tv = {m->timeout_ms / 1000, (m->timeout_ms % 1000) * 1000};
    setsockopt(m->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (SSL_connect(m->ssl) != 1) {
        long vr = SSL_get_verify_result(m->ssl);
        if (vr != X509_V_OK)
            return cmq__fail(m, "TLS: server certificate: %s", X509_verify_cert_error_string(vr));
        return cmq__fail(m, "TLS: %s", cmq__ssl_err());
    }
    tv = (struct timeval){0, 0};
    setsockopt(m->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return 0;
}

static int cmq__send(struct cli_mqtt *m, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (m->ssl) {
            int r = SSL_write(m->ssl, p, (int)n);
            w = r > 0 ? r : -1;
        } else {
            w = send(m->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
        }
        if (w <= 0)
            return cmq__fail(m, "connection lost while sending: %s",
                             m->ssl ? cmq__ssl_err() : strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    m->last_tx_ms = cmq__now_ms();
    return 0;
}

/* Reads more bytes, waiting at most timeout_ms (< 0 forever). 0, 1 on
 * timeout, CLI_ERR on EOF or error. */
static int cmq__fill(struct cli_mqtt *m, int timeout_ms)
{
    if (m->rcap - m->rlen < 4096) {
        size_t cap = m->rcap ? m->rcap * 2 : 65536;
        uint8_t *nb = realloc(m->rbuf, cap);
        if (!nb)
            return cmq__fail(m, "%s", "out of memory");
        m->rbuf = nb;
        m->rcap = cap;
    }
    if (!m->ssl || SSL_pending(m->ssl) == 0) {
        struct pollfd p = {.fd = m->fd, .events = POLLIN};
        int n;
        do
            n = poll(&p, 1, timeout_ms);
        while (n < 0 && errno == EINTR);
        if (n == 0)
            return 1;
        if (n < 0)
            return cmq__fail(m, "poll: %s", strerror(errno));
    }
    ssize_t r;
    if (m->ssl) {
        int k = SSL_read(m->ssl, m->rbuf + m->rlen, (int)(m->rcap - m->rlen));
        if (k <= 0 && SSL_get_error(m->ssl, k) == SSL_ERROR_WANT_READ)
            return 0;
        r = k > 0 ? k : -1;
    } else {
        do
            r = recv(m->fd, m->rbuf + m->rlen, m->rcap - m->rlen, 0);
        while (r < 0 && errno == EINTR);
    }
    if (r == 0 || (r < 0 && m->ssl))
        return cmq__fail(m, "%s", "the broker closed the connection");
    if (r < 0)
        return cmq__fail(m, "connection lost: %s", strerror(errno));
    m->rlen += (size_t)r;
    return 0;
}

/* Reads one whole packet into m->rbuf[0..*len) within the deadline (0 =
 * none). 0, 1 on timeout, CLI_ERR. The caller consumes it with
 * cmq__consume. */
static int cmq__packet(struct cli_mqtt *m, uint64_t deadline, struct mqtt_frame *f)
{
    for (;;) {
        int rc = mqtt_frame(m->rbuf, m->rlen, CMQ_MAX_PACKET, f);
        if (rc == MQTT_OK)
            return 0;
        if (rc != MQTT_NEED_MORE)
            return cmq__fail(m, "bad packet from the broker: %s", mqtt_err_str(rc));
        if (f->total_len > m->rcap) {
            uint8_t *nb = realloc(m->rbuf, f->total_len + 4096);
            if (!nb)
                return cmq__fail(m, "%s", "out of memory");
            m->rbuf = nb;
            m->rcap = f->total_len + 4096;
        }
        int wait = -1;
        if (deadline) {
            uint64_t now = cmq__now_ms();
            if (now >= deadline)
                return 1;
            wait = (int)(deadline - now);
        }
        rc = cmq__fill(m, wait);
        if (rc)
            return rc;
    }
}

static void cmq__consume(struct cli_mqtt *m, size_t n)
{
    memmove(m->rbuf, m->rbuf + n, m->rlen - n);
    m->rlen -= n;
}

static int cmq__ack(struct cli_mqtt *m, uint8_t type, uint16_t id)
{
    uint8_t b[8];
    int n = mqtt_encode_ack_simple(b, sizeof b, MQTT_V5, type, id, 0);
    return n > 0 ? cmq__send(m, b, (size_t)n) : CLI_ERR;
}

/* Copies a PUBLISH into the FIFO (and acknowledges QoS 1/2). */
static int cmq__keep(struct cli_mqtt *m, const struct mqtt_publish *p)
{
    bool corr = mqtt_props_has(&p->props, MQTT_PROP_CORRELATION_DATA);
    size_t cl = corr ? p->props.correlation_data.len : 0;
    struct cmq_node *nd = malloc(sizeof *nd);
    struct cli_mqtt_msg *msg = malloc(sizeof *msg + p->topic.len + 1 + p->payload.len + cl + 1);
    if (!nd || !msg) {
        free(nd);
        free(msg);
        return cmq__fail(m, "%s", "out of memory");
    }
    char *t = (char *)(msg + 1);
    memcpy(t, p->topic.ptr, p->topic.len);
    t[p->topic.len] = '\0';
    msg->topic = t;
    msg->payload = (uint8_t *)t + p->topic.len + 1;
    if (p->payload.len)
        memcpy(msg->payload, p->payload.ptr, p->payload.len);
    msg->len = p->payload.len;
    msg->payload[msg->len] = 0; /* room for it: the +1 above; handy for JSON text */
    msg->corr = corr ? msg->payload + p->payload.len + 1 : NULL;
    if (corr && cl)
        memcpy(msg->corr, p->props.correlation_data.ptr, cl);
    msg->corr_len = cl;
    msg->retain = p->retain;
    nd->msg = msg;
    nd->next = NULL;
    if (m->q_tail)
        m->q_tail->next = nd;
    else
        m->q_head = nd;
    m->q_tail = nd;
    if (p->qos == 1)
        return cmq__ack(m, MQTT_PUBACK, p->packet_id);
    if (p->qos == 2)
        return cmq__ack(m, MQTT_PUBREC, p->packet_id);
    return 0;
}

/* Handles one packet. If it is of type WANT_TYPE with packet id WANT_ID,
 * copies its reason code(s) into *reason and returns 2. */
static int cmq__handle(struct cli_mqtt *m, const struct mqtt_frame *f, uint8_t want_type,
                       uint16_t want_id, uint8_t *reason)
{
    struct mqtt_packet pk;
    int rc = mqtt_decode(m->rbuf, f->total_len, MQTT_V5, &pk);
    if (rc < 0)
        return cmq__fail(m, "bad packet from the broker: %s", mqtt_err_str(rc));
    switch (pk.type) {
    case MQTT_PUBLISH:
        return cmq__keep(m, &pk.u.publish);
    case MQTT_PUBACK:
    case MQTT_PUBCOMP:
        if (pk.type == want_type && pk.u.ack.packet_id == want_id) {
            if (reason)
                *reason = pk.u.ack.reason;
            m->ack_why[0] = '\0';
            if (mqtt_props_has(&pk.u.ack.props, MQTT_PROP_REASON_STRING)) {
                const struct mqtt_str *w = &pk.u.ack.props.reason_string;
                snprintf(m->ack_why, sizeof m->ack_why, "%.*s", (int)w->len, w->ptr);
            }
            return 2;
        }
        return 0;
    case MQTT_PUBREL:
        return cmq__ack(m, MQTT_PUBCOMP, pk.u.ack.packet_id);
    case MQTT_SUBACK:
        if (pk.type == want_type && pk.u.suback.packet_id == want_id) {
            if (reason)
                *reason = pk.u.suback.reasons.len ? pk.u.suback.reasons.ptr[0] : 0x80;
            return 2;
        }
        return 0;
    case MQTT_DISCONNECT:
        return cmq__fail(m, "the broker disconnected: 0x%02x %s", pk.u.disconnect.reason,
                         mqtt_reason_str(pk.u.disconnect.reason));
    default:
        return 0; /* PINGRESP, UNSUBACK, ... */
    }
}

/* Waits for the packet WANT_TYPE/WANT_ID until the timeout, keeping the
 * messages that arrive meanwhile. */
static int cmq__wait(struct cli_mqtt *m, uint8_t want_type, uint16_t want_id, uint8_t *reason)
{
    uint64_t deadline = cmq__now_ms() + (uint64_t)m->timeout_ms;
    for (;;) {
        struct mqtt_frame f;
        int rc = cmq__packet(m, deadline, &f);
        if (rc == 1)
            return cmq__fail(m, "no %s within %d ms", mqtt_type_str(want_type), m->timeout_ms);
        if (rc)
            return rc;
        rc = cmq__handle(m, &f, want_type, want_id, reason);
        cmq__consume(m, f.total_len);
        if (rc == 2)
            return 0;
        if (rc)
            return rc;
    }
}

static uint16_t cmq__id(struct cli_mqtt *m)
{
    if (++m->next_id == 0)
        m->next_id = 1;
    return m->next_id;
}

int cli_mqtt_connect(const struct cli_mqtt_opts *o, struct cli_mqtt **out)
{
    struct cli_mqtt *m = calloc(1, sizeof *m);
    char host[256], port[16];
    if (!m)
        return cli_error(CLI_ERR, "out of memory");
    m->fd = -1;
    m->broker = o->broker;
    m->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    if (!o->broker || cmq__split(o->broker, host, sizeof host, port, sizeof port) != 0) {
        free(m);
        return cli_error(CLI_ERR, "--broker %s: expected HOST:PORT",
                         o->broker ? o->broker : "(missing)");
    }
    if (o->client_id)
        snprintf(m->client_id, sizeof m->client_id, "%s", o->client_id);
    else
        snprintf(m->client_id, sizeof m->client_id, "ledgermq-cli-%ld-%08x", (long)getpid(),
                 randombytes_random());
    snprintf(m->reply_topic, sizeof m->reply_topic, "ledgermq-cli/%s/reply", m->client_id);
    int rc = cmq__tcp(m, host, port);
    if (rc == 0 && (o->cafile || o->cert))
        rc = cmq__tls(m, o, host);
    if (rc)
        goto fail;
    struct mqtt_connect c;
    memset(&c, 0, sizeof c);
    c.version = MQTT_V5;
    c.clean_start = true;
    c.keep_alive = CMQ_KEEPALIVE;
    c.client_id = (struct mqtt_str){m->client_id, strlen(m->client_id)};
    if (o->username)
        c.username = (struct mqtt_str){o->username, strlen(o->username)};
    if (o->password)
        c.password = (struct mqtt_bin){(const uint8_t *)o->password, strlen(o->password)};
    c.props.present = MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE);
    c.props.maximum_packet_size = CMQ_MAX_PACKET;
    uint8_t buf[1024];
    int n = mqtt_encode_connect(buf, sizeof buf, &c);
    if (n < 0) {
        rc = cmq__fail(m, "cannot encode CONNECT: %s", mqtt_err_str(n));
        goto fail;
    }
    if ((rc = cmq__send(m, buf, (size_t)n)) != 0)
        goto fail;
    struct mqtt_frame f;
    rc = cmq__packet(m, cmq__now_ms() + (uint64_t)m->timeout_ms, &f);
    if (rc == 1)
        rc = cmq__fail(m, "no CONNACK within %d ms", m->timeout_ms);
    if (rc)
        goto fail;
    struct mqtt_connack ca;
    int dr = mqtt_decode_connack(m->rbuf, f.total_len, MQTT_V5, &ca);
    if (dr < 0) {
        /* A 3.1.1-only broker answers a v5 CONNECT with a 4-byte CONNACK. */
        rc = cmq__fail(m, "bad CONNACK: %s", mqtt_err_str(dr));
        goto fail;
    }
    cmq__consume(m, f.total_len);
    if (ca.reason != 0) {
        rc = cmq__fail(m, "connection refused: CONNACK 0x%02x %s", ca.reason,
                       mqtt_reason_str(ca.reason));
        goto fail;
    }
    if (mqtt_props_has(&ca.props, MQTT_PROP_ASSIGNED_CLIENT_ID))
        snprintf(m->client_id, sizeof m->client_id, "%.*s", (int)ca.props.assigned_client_id.len,
                 ca.props.assigned_client_id.ptr);
    *out = m;
    return 0;
fail:
    cli_mqtt_close(m);
    return CLI_ERR;
}

int cli_mqtt_opt(struct cli_mqtt_opts *o, int argc, char **argv, int *i)
{
    static const char *const names[] = {"--broker",   "--cafile",   "--cert",      "--tls-key",
                                        "--username", "--password", "--client-id", "--timeout"};
    const char *a = argv[*i];
    size_t k;
    for (k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(a, names[k]) == 0)
            break;
    if (k == sizeof names / sizeof names[0])
        return 0;
    if (*i + 1 >= argc)
        return -cli_error(CLI_ERR, "%s needs a value", a);
    const char *v = argv[++*i];
    switch (k) {
    case 0:
        o->broker = v;
        break;
    case 1:
        o->cafile = v;
        break;
    case 2:
        o->cert = v;
        break;
    case 3:
        o->key = v;
        break;
    case 4:
        o->username = v;
        break;
    case 5:
        o->password = v;
        break;
    case 6:
        o->client_id = v;
        break;
    default: {
        uint64_t ms;
        if (cli_parse_u64(v, &ms) || ms == 0 || ms > 3600000)
            return -cli_error(CLI_ERR, "--timeout: milliseconds, 1..3600000");
        o->timeout_ms = (int)ms;
    }
    }
    return 1;
}

const char *cli_mqtt_client_id(const struct cli_mqtt *m)
{
    return m->client_id;
}

int cli_mqtt_subscribe(struct cli_mqtt *m, const char *filter, uint8_t qos, uint8_t *reason)
{
    struct mqtt_subscribe s;
    struct mqtt_sub_entry e;
    memset(&s, 0, sizeof s);
    memset(&e, 0, sizeof e);
    s.packet_id = cmq__id(m);
    e.filter = (struct mqtt_str){filter, strlen(filter)};
    e.qos = qos;
    size_t cap = strlen(filter) + 32;
    uint8_t *b = malloc(cap);
    if (!b)
        return cmq__fail(m, "%s", "out of memory");
    int n = mqtt_encode_subscribe(b, cap, MQTT_V5, &s, &e, 1);
    int rc = n > 0 ? cmq__send(m, b, (size_t)n) : cmq__fail(m, "bad filter: %s", filter);
    free(b);
    return rc ? rc : cmq__wait(m, MQTT_SUBACK, s.packet_id, reason);
}

int cli_mqtt_publish(struct cli_mqtt *m, const char *topic, const void *payload, size_t len,
                     uint8_t qos, const char *resp_topic, const void *corr, size_t corr_len,
                     uint8_t *reason)
{
    struct mqtt_publish p;
    memset(&p, 0, sizeof p);
    p.qos = qos;
    p.packet_id = qos ? cmq__id(m) : 0;
    p.topic = (struct mqtt_str){topic, strlen(topic)};
    p.payload = (struct mqtt_bin){payload, len};
    if (resp_topic) {
        p.props.present |= MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC);
        p.props.response_topic = (struct mqtt_str){resp_topic, strlen(resp_topic)};
    }
    if (corr) {
        p.props.present |= MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA);
        p.props.correlation_data = (struct mqtt_bin){corr, corr_len};
    }
    int n = mqtt_encode_publish(NULL, 0, MQTT_V5, &p);
    if (n < 0)
        return cmq__fail(m, "cannot encode PUBLISH: %s", mqtt_err_str(n));
    uint8_t *b = malloc((size_t)n);
    if (!b)
        return cmq__fail(m, "%s", "out of memory");
    n = mqtt_encode_publish(b, (size_t)n, MQTT_V5, &p);
    int rc = cmq__send(m, b, (size_t)n);
    free(b);
    if (rc || qos == 0)
        return rc;
    uint8_t r = 0;
    rc = cmq__wait(m, MQTT_PUBACK, p.packet_id, &r);
    if (reason)
        *reason = r;
    return rc;
}

int cli_mqtt_next(struct cli_mqtt *m, int timeout_ms, struct cli_mqtt_msg **msg)
{
    uint64_t deadline = timeout_ms >= 0 ? cmq__now_ms() + (uint64_t)timeout_ms : 0;
    for (;;) {
        if (m->q_head) {
            struct cmq_node *nd = m->q_head;
            m->q_head = nd->next;
            if (!m->q_head)
                m->q_tail = NULL;
            *msg = nd->msg;
            free(nd);
            return 0;
        }
        /* Wake up for the keep-alive ping at least every half period. */
        uint64_t now = cmq__now_ms();
        uint64_t ping_at = m->last_tx_ms + CMQ_KEEPALIVE * 500;
        if (now >= ping_at) {
            uint8_t b[2];
            int rc = cmq__send(m, b, (size_t)mqtt_encode_pingreq(b, sizeof b));
            if (rc)
                return rc;
            ping_at = cmq__now_ms() + CMQ_KEEPALIVE * 500;
        }
        if (deadline && now >= deadline)
            return 1;
        uint64_t until = deadline && deadline < ping_at ? deadline : ping_at;
        struct mqtt_frame f;
        int rc = cmq__packet(m, until, &f);
        if (rc == 1)
            continue;
        if (rc)
            return rc;
        rc = cmq__handle(m, &f, 0, 0, NULL);
        cmq__consume(m, f.total_len);
        if (rc)
            return rc;
    }
}

int cli_mqtt_request(struct cli_mqtt *m, const char *topic, const void *payload, size_t len,
                     struct cli_mqtt_msg **reply)
{
    int rc;
    if (!m->reply_subscribed) {
        uint8_t r;
        if ((rc = cli_mqtt_subscribe(m, m->reply_topic, 1, &r)) != 0)
            return rc;
        if (r >= 0x80)
            return cmq__fail(m, "subscribing to the reply topic %s refused: SUBACK 0x%02x %s",
                             m->reply_topic, r, mqtt_reason_str(r));
        m->reply_subscribed = true;
    }
    uint8_t corr[16];
    uint64_t k = ++m->corr_counter;
    randombytes_buf(corr, 8);
    memcpy(corr + 8, &k, 8);
    uint8_t r = 0;
    if ((rc = cli_mqtt_publish(m, topic, payload, len, 1, m->reply_topic, corr, sizeof corr, &r)) !=
        0)
        return rc;
    if (r >= 0x80)
        return cmq__fail(m, "request to %s refused: PUBACK 0x%02x %s%s%s", topic, r,
                         mqtt_reason_str(r), m->ack_why[0] ? ": " : "", m->ack_why);
    /* Wait for the reply; keep everything else in order for later. */
    uint64_t deadline = cmq__now_ms() + (uint64_t)m->timeout_ms;
    for (;;) {
        /* the reply may already be among the kept messages */
        struct cmq_node *prev = NULL;
        for (struct cmq_node *nd = m->q_head; nd; prev = nd, nd = nd->next) {
            struct cli_mqtt_msg *x = nd->msg;
            if (strcmp(x->topic, m->reply_topic) == 0 && x->corr && x->corr_len == sizeof corr &&
                memcmp(x->corr, corr, sizeof corr) == 0) {
                if (prev)
                    prev->next = nd->next;
                else
                    m->q_head = nd->next;
                if (m->q_tail == nd)
                    m->q_tail = prev;
                *reply = x;
                free(nd);
                return 0;
            }
        }
        uint64_t now = cmq__now_ms();
        if (now >= deadline)
            return cmq__fail(m, "no reply to %s within %d ms", topic, m->timeout_ms);
        struct mqtt_frame f;
        rc = cmq__packet(m, deadline, &f);
        if (rc == 1)
            continue;
        if (rc)
            return rc;
        rc = cmq__handle(m, &f, 0, 0, NULL);
        cmq__consume(m, f.total_len);
        if (rc)
            return rc;
    }
}

void cli_mqtt_close(struct cli_mqtt *m)
{
    if (!m)
        return;
    if (m->fd >= 0 && (m->ssl == NULL || SSL_is_init_finished(m->ssl))) {
        uint8_t b[4];
        int n = mqtt_encode_disconnect(b, sizeof b, MQTT_V5, NULL);
        if (n > 0) {
            if (m->ssl)
                SSL_write(m->ssl, b, n);
            else
                (void)send(m->fd, b, (size_t)n, MSG_NOSIGNAL);
        }
    }
    if (m->ssl) {
        SSL_shutdown(m->ssl);
        SSL_free(m->ssl);
    }
    if (m->ctx)
        SSL_CTX_free(m->ctx);
    if (m->fd >= 0)
        close(m->fd);
    while (m->q_head) {
        struct cmq_node *nd = m->q_head;
        m->q_head = nd->next;
        free(nd->msg);
        free(nd);
    }
    free(m->rbuf);
    free(m);
}
