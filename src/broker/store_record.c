/* Encoders and decoders of the broker store's values (layouts in
 * docs/STORE.md). Integers are little-endian in values (keys, in store.c,
 * are big-endian so that they sort). Invariant: decoders never read outside
 * [buf, buf+len) and accept only what the matching encoder can produce. */
#include "broker/store_record.h"
#include "util/crc32c.h"

#include <string.h>

#define HDR 2u /* version + kind */
#define CRC 4u

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void seal_v(uint32_t key_crc, uint8_t *out, uint8_t version, uint8_t kind, size_t total)
{
    out[0] = version;
    out[1] = kind;
    put32(out + total - CRC, lmq_crc32c(key_crc, out, total - CRC));
}

static void seal(uint32_t key_crc, uint8_t *out, uint8_t kind, size_t total)
{
    seal_v(key_crc, out, LMQ_STORE_REC_VERSION, kind, total);
}

/* Common checks: fixed part present, VERSION, kind, CRC. */
static int check_v(uint32_t key_crc, const void *buf, size_t len, uint8_t version, uint8_t kind,
                   size_t min_len)
{
    const uint8_t *p = buf;
    if (len < HDR + CRC || len < min_len)
        return LMQ_STORE_REC_ESHORT;
    if (p[0] != version)
        return LMQ_STORE_REC_EVERSION;
    if (p[1] != kind)
        return LMQ_STORE_REC_EKIND;
    if (get32(p + len - CRC) != lmq_crc32c(key_crc, p, len - CRC))
        return LMQ_STORE_REC_ECRC;
    return 0;
}

static int check(uint32_t key_crc, const void *buf, size_t len, uint8_t kind, size_t min_len)
{
    return check_v(key_crc, buf, len, LMQ_STORE_REC_VERSION, kind, min_len);
}

/* ---- message / retained ----
 * flags(1: bits 0-1 qos, bit 2 retain) expiry_at(8) topic_len(2)
 * props_len(4) payload_len(4) topic props payload */
#define MSG_FIXED (HDR + 1 + 8 + 2 + 4 + 4)

size_t lmq_store_rec_message_size(const struct lmq_store_message *m)
{
    return MSG_FIXED + m->topic_len + m->props_len + m->payload_len + CRC;
}

void lmq_store_rec_message_encode(uint32_t key_crc, uint8_t kind, const struct lmq_store_message *m, uint8_t *out)
{
    size_t total = lmq_store_rec_message_size(m);
    uint8_t *p = out + HDR;
    *p++ = (uint8_t)((m->qos & 3) | (m->retain ? 4 : 0));
    put64(p, m->expiry_at);
    p += 8;
    put16(p, (uint16_t)m->topic_len);
    p += 2;
    put32(p, (uint32_t)m->props_len);
    p += 4;
    put32(p, (uint32_t)m->payload_len);
    p += 4;
    if (m->topic_len)
        memcpy(p, m->topic, m->topic_len);
    p += m->topic_len;
    if (m->props_len)
        memcpy(p, m->props, m->props_len);
    p += m->props_len;
    if (m->payload_len)
        memcpy(p, m->payload, m->payload_len);
    seal(key_crc, out, kind, total);
}

int lmq_store_rec_message_decode(uint32_t key_crc, uint8_t kind, const void *buf, size_t len,
                                 struct lmq_store_message *m)
{
    int rc = check(key_crc, buf, len, kind, MSG_FIXED + CRC);
    if (rc)
        return rc;
    const uint8_t *p = (const uint8_t *)buf + HDR;
    uint8_t flags = *p++;
    if ((flags & ~7u) || (flags & 3) == 3)
        return LMQ_STORE_REC_EFIELD;
    uint64_t expiry = get64(p);
    p += 8;
    size_t tl = get16(p);
    p += 2;
    size_t pl = get32(p);
    p += 4;
    size_t yl = get32(p);
    p += 4;
    /* Sum in 64 bits: each term is < 2^32, so no overflow. */
    if ((uint64_t)MSG_FIXED + tl + pl + yl + CRC != (uint64_t)len)
        return LMQ_STORE_REC_ELENGTH;
    if (tl == 0)
        return LMQ_STORE_REC_EFIELD;
    m->qos = flags & 3;
    m->retain = (flags & 4) != 0;
    m->expiry_at = expiry;
    m->topic = (const char *)p;
    m->topic_len = tl;
    m->props = p + tl;
    m->props_len = pl;
    m->payload = p + tl + pl;
    m->payload_len = yl;
    return 0;
}

/* ---- ref: refcount(4) msg_size(4) ---- */
void lmq_store_rec_ref_encode(uint32_t key_crc, uint32_t refcount, uint32_t msg_size, uint8_t *out)
{
    put32(out + HDR, refcount);
    put32(out + HDR + 4, msg_size);
    seal(key_crc, out, LMQ_STORE_KIND_REF, LMQ_STORE_REC_REF_SIZE);
}

int lmq_store_rec_ref_decode(uint32_t key_crc, const void *buf, size_t len, uint32_t *refcount, uint32_t *msg_size)
{
    int rc = check(key_crc, buf, len, LMQ_STORE_KIND_REF, LMQ_STORE_REC_REF_SIZE);
    if (rc)
        return rc;
    if (len != LMQ_STORE_REC_REF_SIZE)
        return LMQ_STORE_REC_ELENGTH;
    *refcount = get32((const uint8_t *)buf + HDR);
    *msg_size = get32((const uint8_t *)buf + HDR + 4);
    return 0;
}

/* ---- session: proto(1) expiry_interval(4) disconnected_at(8) cid_len(2)
 * [version 2, with a delayed will: will_at(8) will_expiry(4) will_flags(1:
 * bits 0-1 qos, bit 2 retain) topic_len(2) props_len(4) payload_len(4)]
 * cid [version 2: topic props payload] ---- */
#define SESS_FIXED (HDR + 1 + 4 + 8 + 2)
#define WILL_FIXED (8 + 4 + 1 + 2 + 4 + 4)

size_t lmq_store_rec_session_size(const struct lmq_store_session *sess)
{
    size_t n = SESS_FIXED + sess->client_id_len + CRC;
    if (sess->has_will)
        n += WILL_FIXED + sess->will.topic_len + sess->will.props_len + sess->will.payload_len;
    return n;
}

void lmq_store_rec_session_encode(uint32_t key_crc, const struct lmq_store_session *sess, uint8_t *out)
{
    const struct lmq_store_message *w = &sess->will;
    uint8_t *p = out + HDR;
    *p++ = sess->protocol_version;
    put32(p, sess->expiry_interval);
    p += 4;
    put64(p, sess->disconnected_at);
    p += 8;
    put16(p, (uint16_t)sess->client_id_len);
    p += 2;
    if (sess->has_will) {
        put64(p, sess->will_at);
        p += 8;
        put32(p, sess->will_expiry);
        p += 4;
        *p++ = (uint8_t)((w->qos & 3) | (w->retain ? 4 : 0));
        put16(p, (uint16_t)w->topic_len);
        p += 2;
        put32(p, (uint32_t)w->props_len);
        p += 4;
        put32(p, (uint32_t)w->payload_len);
        p += 4;
    }
    memcpy(p, sess->client_id, sess->client_id_len);
    p += sess->client_id_len;
    if (sess->has_will) {
        memcpy(p, w->topic, w->topic_len);
        p += w->topic_len;
        if (w->props_len)
            memcpy(p, w->props, w->props_len);
        p += w->props_len;
        if (w->payload_len)
            memcpy(p, w->payload, w->payload_len);
    }
    seal_v(key_crc, out, sess->has_will ? LMQ_STORE_REC_VERSION_WILL : LMQ_STORE_REC_VERSION,
           LMQ_STORE_KIND_SESSION, lmq_store_rec_session_size(sess));
}

int lmq_store_rec_session_decode(uint32_t key_crc, const void *buf, size_t len, struct lmq_store_session *sess)
{
    const uint8_t *p = buf;
    bool will = len > 0 && p[0] == LMQ_STORE_REC_VERSION_WILL;
    size_t fixed = SESS_FIXED + (will ? WILL_FIXED : 0);
    int rc = check_v(key_crc, buf, len, will ? LMQ_STORE_REC_VERSION_WILL : LMQ_STORE_REC_VERSION,
                     LMQ_STORE_KIND_SESSION, fixed + CRC);
    if (rc)
        return rc;
    p += HDR;
    uint8_t proto = p[0];
    size_t cl = get16(p + 13);
    uint8_t wflags = 0;
    size_t tl = 0, pl = 0, yl = 0;
    if (will) {
        wflags = p[27];
        tl = get16(p + 28);
        pl = get32(p + 30);
        yl = get32(p + 34);
    }
    /* Sum in 64 bits: each term is < 2^32, so no overflow. */
    if ((uint64_t)fixed + cl + tl + pl + yl + CRC != (uint64_t)len)
        return LMQ_STORE_REC_ELENGTH;
    if (proto < 3 || proto > 5 || cl == 0)
        return LMQ_STORE_REC_EFIELD;
    if (will && ((wflags & ~7u) || (wflags & 3) == 3 || tl == 0))
        return LMQ_STORE_REC_EFIELD;
    memset(sess, 0, sizeof *sess);
    sess->protocol_version = proto;
    sess->expiry_interval = get32(p + 1);
    sess->disconnected_at = get64(p + 5);
    sess->client_id_len = cl;
    sess->client_id = (const char *)(p + fixed - HDR);
    if (will) {
        const uint8_t *v = p + fixed - HDR + cl;
        sess->has_will = true;
        sess->will_at = get64(p + 15);
        sess->will_expiry = get32(p + 23);
        sess->will.qos = wflags & 3;
        sess->will.retain = (wflags & 4) != 0;
        sess->will.topic = (const char *)v;
        sess->will.topic_len = tl;
        sess->will.props = v + tl;
        sess->will.props_len = pl;
        sess->will.payload = v + tl + pl;
        sess->will.payload_len = yl;
    }
    return 0;
}

/* ---- sub: options(1) sub_id(4) filter_len(2) filter ---- */
#define SUB_FIXED (HDR + 1 + 4 + 2)

size_t lmq_store_rec_sub_size(const struct lmq_store_sub *sub)
{
    return SUB_FIXED + sub->filter_len + CRC;
}

void lmq_store_rec_sub_encode(uint32_t key_crc, const struct lmq_store_sub *sub, uint8_t *out)
{
    uint8_t *p = out + HDR;
    *p++ = sub->options;
    put32(p, sub->sub_id);
    p += 4;
    put16(p, (uint16_t)sub->filter_len);
    p += 2;
    memcpy(p, sub->filter, sub->filter_len);
    seal(key_crc, out, LMQ_STORE_KIND_SUB, lmq_store_rec_sub_size(sub));
}

int lmq_store_rec_sub_decode(uint32_t key_crc, const void *buf, size_t len, struct lmq_store_sub *sub)
{
    int rc = check(key_crc, buf, len, LMQ_STORE_KIND_SUB, SUB_FIXED + CRC);
    if (rc)
        return rc;
    const uint8_t *p = (const uint8_t *)buf + HDR;
    size_t fl = get16(p + 5);
    if (SUB_FIXED + fl + CRC != len)
        return LMQ_STORE_REC_ELENGTH;
    uint32_t sid = get32(p + 1);
    /* options: QoS 3 and the reserved bits 6-7 are invalid; sub ids are
     * variable byte integers, at most 268435455. */
    if ((p[0] & 3) == 3 || (p[0] & 0xC0) || sid > 268435455u || fl == 0)
        return LMQ_STORE_REC_EFIELD;
    sub->options = p[0];
    sub->sub_id = sid;
    sub->filter_len = fl;
    sub->filter = (const char *)(p + 7);
    return 0;
}

/* ---- entry: qos(1) state(1) flags(1: bit 0 dup) packet_id(2) msg_id(8) msg_size(4) ---- */
void lmq_store_rec_entry_encode(uint32_t key_crc, const struct lmq_store_entry *e, uint8_t *out)
{
    uint8_t *p = out + HDR;
    p[0] = e->qos;
    p[1] = e->state;
    p[2] = e->dup ? 1 : 0;
    put16(p + 3, e->packet_id);
    put64(p + 5, e->msg_id);
    put32(p + 13, e->msg_size);
    seal(key_crc, out, LMQ_STORE_KIND_ENTRY, LMQ_STORE_REC_ENTRY_SIZE);
}

int lmq_store_rec_entry_decode(uint32_t key_crc, const void *buf, size_t len, struct lmq_store_entry *e)
{
    int rc = check(key_crc, buf, len, LMQ_STORE_KIND_ENTRY, LMQ_STORE_REC_ENTRY_SIZE);
    if (rc)
        return rc;
    if (len != LMQ_STORE_REC_ENTRY_SIZE)
        return LMQ_STORE_REC_ELENGTH;
    const uint8_t *p = (const uint8_t *)buf + HDR;
    uint8_t qos = p[0], state = p[1], flags = p[2];
    uint16_t pid = get16(p + 3);
    uint64_t mid = get64(p + 5);
    if (qos < 1 || qos > 2 || state > LMQ_STORE_AWAIT_COMP || (flags & ~1u) ||
        (state == LMQ_STORE_QUEUED && pid != 0) || (state != LMQ_STORE_QUEUED && pid == 0) ||
        (state == LMQ_STORE_AWAIT_COMP && qos != 2) ||
        (mid == 0 && state != LMQ_STORE_AWAIT_COMP))
        return LMQ_STORE_REC_EFIELD;
    e->qos = qos;
    e->state = state;
    e->dup = flags & 1;
    e->packet_id = pid;
    e->msg_id = mid;
    e->msg_size = get32(p + 13);
    return 0;
}

void lmq_store_rec_qos2in_encode(uint32_t key_crc, uint8_t *out)
{
    seal(key_crc, out, LMQ_STORE_KIND_QOS2IN, LMQ_STORE_REC_QOS2IN_SIZE);
}

int lmq_store_rec_qos2in_decode(uint32_t key_crc, const void *buf, size_t len)
{
    int rc = check(key_crc, buf, len, LMQ_STORE_KIND_QOS2IN, LMQ_STORE_REC_QOS2IN_SIZE);
    if (rc)
        return rc;
    return len == LMQ_STORE_REC_QOS2IN_SIZE ? 0 : LMQ_STORE_REC_ELENGTH;
}
