/* Ledger record codec. Decoding validates the whole record as
 * deterministic CBOR first (cbor_validate_deterministic), so the typed
 * walk that follows only has to check the schema: uint keys, required
 * fields, types, and (for known kind + version) no unknown keys.
 * Field tables: docs/FORMATS.md "Ledger records". */
#include "ledger/record.h"
#include "util/utf8.h"

#include <string.h>

#include "crypto/hash.h"
#include "crypto/note.h"
#include "util/cbor.h"

const char *ledger_record_strerror(int err)
{
    switch (err) {
    case LEDGER_REC_ERR_MISSING:
        return "record lacks a required field";
    case LEDGER_REC_ERR_UNKNOWN:
        return "record has a field unknown to its kind and version";
    case LEDGER_REC_ERR_FIELD:
        return "record field has the wrong type or value";
    case LEDGER_REC_ERR_KIND:
        return "not a ledger record of an encodable kind";
    case LEDGER_REC_ERR_PAYLOAD:
        return "message record needs exactly one of payload and payload digest";
    default:
        return cbor_strerror(err);
    }
}

static int rec__tstr_ok(const struct ledger_bytes *b, int required, int nonempty)
{
    if (b->ptr == NULL)
        return !required;
    if (nonempty && b->len == 0)
        return 0;
    return lmq_utf8_valid(b->ptr, b->len);
}

static void rec__put_tstr(struct cbor_writer *w, unsigned key, const struct ledger_bytes *b)
{
    cbor_put_uint(w, key);
    cbor_put_tstr(w, (const char *)b->ptr, b->len);
}

static void rec__put_bstr(struct cbor_writer *w, unsigned key, const struct ledger_bytes *b)
{
    cbor_put_uint(w, key);
    cbor_put_bstr(w, b->ptr, b->len);
}

static int rec__encode_message(const struct ledger_message *m, struct cbor_writer *w)
{
    int has_payload = m->payload.ptr != NULL, has_digest = m->payload_digest.ptr != NULL;
    if (has_payload == has_digest)
        return LEDGER_REC_ERR_PAYLOAD;
    if (has_digest && m->payload_digest.len != LEDGER_PAYLOAD_DIGEST_LEN)
        return LEDGER_REC_ERR_FIELD;
    if (m->topic.ptr == NULL || m->publisher.ptr == NULL || m->client_id.ptr == NULL ||
        m->ingress_node.ptr == NULL)
        return LEDGER_REC_ERR_MISSING;
    if (!rec__tstr_ok(&m->topic, 1, 1) || !rec__tstr_ok(&m->publisher, 1, 1) ||
        !rec__tstr_ok(&m->client_id, 1, 0) || !rec__tstr_ok(&m->ingress_node, 1, 1))
        return LEDGER_REC_ERR_FIELD;
    /* kind, version, topic, payload|digest, publisher, client id, broker time, ingress node */
    uint64_t n = 8;
    n += m->has_device_seq + m->has_device_time + (m->cose.ptr != NULL);
    cbor_put_map(w, n);
    cbor_put_uint(w, LEDGER_KEY_KIND);
    cbor_put_uint(w, LEDGER_KIND_MESSAGE);
    cbor_put_uint(w, LEDGER_KEY_VERSION);
    cbor_put_uint(w, LEDGER_RECORD_VERSION);
    rec__put_tstr(w, LEDGER_MSG_TOPIC, &m->topic);
    if (has_payload)
        rec__put_bstr(w, LEDGER_MSG_PAYLOAD, &m->payload);
    else
        rec__put_bstr(w, LEDGER_MSG_PAYLOAD_DIGEST, &m->payload_digest);
    rec__put_tstr(w, LEDGER_MSG_PUBLISHER, &m->publisher);
    rec__put_tstr(w, LEDGER_MSG_CLIENT_ID, &m->client_id);
    if (m->has_device_seq) {
        cbor_put_uint(w, LEDGER_MSG_DEVICE_SEQ);
        cbor_put_uint(w, m->device_seq);
    }
    if (m->has_device_time) {
        cbor_put_uint(w, LEDGER_MSG_DEVICE_TIME);
        cbor_put_uint(w, m->device_time_ms);
    }
    cbor_put_uint(w, LEDGER_MSG_BROKER_TIME);
    cbor_put_uint(w, m->broker_time_ms);
    rec__put_tstr(w, LEDGER_MSG_INGRESS_NODE, &m->ingress_node);
    if (m->cose.ptr != NULL)
        rec__put_bstr(w, LEDGER_MSG_COSE, &m->cose);
    return 0;
}

/* A node key is an Ed25519 verifier key named by the ledger's origin:
 * every node signs checkpoints under the origin name with its own key, so
 * any C2SP verifier holding the node keys treats them as log keys. */
static int rec__node_key_ok(const struct ledger_bytes *b, const struct ledger_bytes *origin)
{
    struct note_verifier v;
    return b->ptr != NULL && origin->ptr != NULL &&
           note_verifier_parse((const char *)b->ptr, b->len, &v) == 0 &&
           v.type == NOTE_SIG_ED25519 && v.name_len == origin->len &&
           memcmp(v.name, origin->ptr, origin->len) == 0;
}

static int rec__encode_config(const struct ledger_config *c, struct cbor_writer *w)
{
    if (c->origin.ptr == NULL || c->n_node_keys == 0)
        return LEDGER_REC_ERR_MISSING;
    if (!note_name_valid((const char *)c->origin.ptr, c->origin.len) ||
        c->n_node_keys > LEDGER_MAX_NODE_KEYS || !rec__tstr_ok(&c->params, 0, 0))
        return LEDGER_REC_ERR_FIELD;
    if (c->has_quorum && (c->quorum == 0 || c->quorum > c->n_node_keys))
        return LEDGER_REC_ERR_FIELD;
    for (size_t i = 0; i < c->n_node_keys; i++)
        if (!rec__node_key_ok(&c->node_keys[i], &c->origin))
            return LEDGER_REC_ERR_FIELD;
    cbor_put_map(w, 4 + c->has_quorum + (c->params.ptr != NULL));
    cbor_put_uint(w, LEDGER_KEY_KIND);
    cbor_put_uint(w, LEDGER_KIND_CONFIG);
    cbor_put_uint(w, LEDGER_KEY_VERSION);
    cbor_put_uint(w, LEDGER_RECORD_VERSION);
    rec__put_tstr(w, LEDGER_CFG_ORIGIN, &c->origin);
    cbor_put_uint(w, LEDGER_CFG_NODE_KEYS);
    cbor_put_array(w, c->n_node_keys);
    for (size_t i = 0; i < c->n_node_keys; i++)
        cbor_put_tstr(w, (const char *)c->node_keys[i].ptr, c->node_keys[i].len);
    if (c->has_quorum) {
        cbor_put_uint(w, LEDGER_CFG_QUORUM);
        cbor_put_uint(w, c->quorum);
    }
    if (c->params.ptr != NULL)
        rec__put_tstr(w, LEDGER_CFG_PARAMS, &c->params);
    return 0;
}

/* ---- kinds 3, 4, 5: device registry ---- */

static int rec__is_registry(uint64_t kind)
{
    return kind == LEDGER_KIND_DEVICE_REGISTRATION || kind == LEDGER_KIND_DEVICE_REVOCATION ||
           kind == LEDGER_KIND_KEY_ROTATION;
}

/* Syntax of a device id: "d-" and 32 characters of [a-z2-7] (the
 * derivation from the key is checked by identity/registry.c). */
static int rec__device_id_ok(const struct ledger_bytes *b)
{
    if (b->ptr == NULL || b->len != LEDGER_DEVICE_ID_LEN || b->ptr[0] != 'd' || b->ptr[1] != '-')
        return 0;
    for (size_t i = 2; i < b->len; i++) {
        uint8_t c = b->ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')))
            return 0;
    }
    return 1;
}

static int rec__operator_ok(const struct ledger_bytes *b)
{
    struct note_verifier v;
    return b->ptr != NULL && note_verifier_parse((const char *)b->ptr, b->len, &v) == 0 &&
           v.type == NOTE_SIG_ED25519;
}

/* Deterministic order of text keys: shorter first, then bytewise (the
 * order of their encodings, RFC 8949 §4.2.1). */
static int rec__tstr_cmp(const struct ledger_bytes *a, const struct ledger_bytes *b)
{
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return a->len ? memcmp(a->ptr, b->ptr, a->len) : 0;
}

static int rec__attrs_ok(const struct ledger_registry *g)
{
    if (g->n_attrs > LEDGER_REG_MAX_ATTRS)
        return 0;
    for (size_t i = 0; i < g->n_attrs; i++) {
        const struct ledger_bytes *k = &g->attr_keys[i], *v = &g->attr_values[i];
        if (!rec__tstr_ok(k, 1, 1) || k->len > LEDGER_REG_ATTR_KEY_MAX || !rec__tstr_ok(v, 1, 0) ||
            v->len > LEDGER_REG_ATTR_VAL_MAX)
            return 0;
    }
    return 1;
}

/* Field rules shared by encoder and decoder (after the fields are read). */
static int rec__check_registry(uint64_t kind, const struct ledger_registry *g, int need_sig)
{
    int has_pk = g->public_key.ptr != NULL;
    if (g->device_id.ptr == NULL || g->operator_key.ptr == NULL ||
        (need_sig && g->signature.ptr == NULL))
        return LEDGER_REC_ERR_MISSING;
    if (kind != LEDGER_KIND_DEVICE_REVOCATION && !has_pk)
        return LEDGER_REC_ERR_MISSING;
    if (kind == LEDGER_KIND_DEVICE_REGISTRATION && g->name.ptr == NULL)
        return LEDGER_REC_ERR_MISSING;
    /* fields that belong to another kind */
    if ((kind == LEDGER_KIND_DEVICE_REVOCATION && has_pk) ||
        (kind != LEDGER_KIND_DEVICE_REGISTRATION && (g->name.ptr != NULL || g->n_attrs != 0)) ||
        (kind != LEDGER_KIND_DEVICE_REVOCATION && g->reason.ptr != NULL))
        return LEDGER_REC_ERR_UNKNOWN;
    if (!rec__device_id_ok(&g->device_id) || !rec__operator_ok(&g->operator_key))
        return LEDGER_REC_ERR_FIELD;
    if (has_pk && g->public_key.len != 32)
        return LEDGER_REC_ERR_FIELD;
    if (g->signature.ptr != NULL && g->signature.len != LEDGER_REG_SIG_LEN)
        return LEDGER_REC_ERR_FIELD;
    if (g->name.ptr != NULL && (!rec__tstr_ok(&g->name, 1, 1) || g->name.len > LEDGER_REG_NAME_MAX))
        return LEDGER_REC_ERR_FIELD;
    if (g->reason.ptr != NULL &&
        (!rec__tstr_ok(&g->reason, 1, 0) || g->reason.len > LEDGER_REG_REASON_MAX))
        return LEDGER_REC_ERR_FIELD;
    if (!rec__attrs_ok(g))
        return LEDGER_REC_ERR_FIELD;
    return 0;
}

static int rec__encode_registry(uint64_t kind, const struct ledger_registry *g,
                                struct cbor_writer *w, int with_sig)
{
    int rc = rec__check_registry(kind, g, with_sig);
    if (rc != 0)
        return rc;
    /* sort attribute pairs by key (insertion sort on an index array) */
    size_t order[LEDGER_REG_MAX_ATTRS];
    for (size_t i = 0; i < g->n_attrs; i++) {
        size_t j = i;
        while (j > 0 && rec__tstr_cmp(&g->attr_keys[order[j - 1]], &g->attr_keys[i]) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        if (j > 0 && rec__tstr_cmp(&g->attr_keys[order[j - 1]], &g->attr_keys[i]) == 0)
            return LEDGER_REC_ERR_FIELD; /* duplicate attribute name */
        order[j] = i;
    }
    /* kind, version, device id, time, operator (+ signature) */
    uint64_t n = 5 + (with_sig != 0);
    n += (g->public_key.ptr != NULL) + (g->name.ptr != NULL) + (g->n_attrs != 0) +
         (g->reason.ptr != NULL);
    cbor_put_map(w, n);
    cbor_put_uint(w, LEDGER_KEY_KIND);
    cbor_put_uint(w, kind);
    cbor_put_uint(w, LEDGER_KEY_VERSION);
    cbor_put_uint(w, LEDGER_RECORD_VERSION);
    rec__put_tstr(w, LEDGER_REG_DEVICE_ID, &g->device_id);
    if (g->public_key.ptr != NULL)
        rec__put_bstr(w, LEDGER_REG_PUBLIC_KEY, &g->public_key);
    if (g->name.ptr != NULL)
        rec__put_tstr(w, LEDGER_REG_NAME, &g->name);
    if (g->n_attrs != 0) {
        cbor_put_uint(w, LEDGER_REG_ATTRS);
        cbor_put_map(w, g->n_attrs);
        for (size_t i = 0; i < g->n_attrs; i++) {
            const struct ledger_bytes *k = &g->attr_keys[order[i]], *v = &g->attr_values[order[i]];
            cbor_put_tstr(w, (const char *)k->ptr, k->len);
            cbor_put_tstr(w, (const char *)v->ptr, v->len);
        }
    }
    cbor_put_uint(w, LEDGER_REG_TIME);
    cbor_put_uint(w, g->time_ms);
    if (g->reason.ptr != NULL)
        rec__put_tstr(w, LEDGER_REG_REASON, &g->reason);
    rec__put_tstr(w, LEDGER_REG_OPERATOR, &g->operator_key);
    if (with_sig)
        rec__put_bstr(w, LEDGER_REG_SIGNATURE, &g->signature);
    return 0;
}

int ledger_registry_signed_bytes(const struct ledger_record *rec, uint8_t *buf, size_t cap,
                                 size_t *len)
{
    struct cbor_writer w;
    if (!rec__is_registry(rec->kind) ||
        (rec->version != 0 && rec->version != LEDGER_RECORD_VERSION))
        return LEDGER_REC_ERR_KIND;
    cbor_writer_init(&w, buf, cap);
    cbor_put_raw(&w, LEDGER_REG_SIG_DOMAIN, sizeof(LEDGER_REG_SIG_DOMAIN) - 1);
    int rc = rec__encode_registry(rec->kind, &rec->reg, &w, 0);
    if (rc != 0)
        return rc;
    return cbor_writer_finish(&w, len);
}

int ledger_record_encode(const struct ledger_record *rec, uint8_t *buf, size_t cap, size_t *len)
{
    struct cbor_writer w;
    int rc;
    if (rec->version != 0 && rec->version != LEDGER_RECORD_VERSION)
        return LEDGER_REC_ERR_KIND;
    cbor_writer_init(&w, buf, cap);
    if (rec->kind == LEDGER_KIND_MESSAGE)
        rc = rec__encode_message(&rec->msg, &w);
    else if (rec->kind == LEDGER_KIND_CONFIG)
        rc = rec__encode_config(&rec->config, &w);
    else if (rec__is_registry(rec->kind))
        rc = rec__encode_registry(rec->kind, &rec->reg, &w, 1);
    else
        rc = LEDGER_REC_ERR_KIND;
    if (rc != 0)
        return rc;
    return cbor_writer_finish(&w, len);
}

/* ---- decode ---- */

static int rec__get_tstr(struct cbor_reader *r, struct ledger_bytes *b)
{
    const char *p;
    size_t n;
    int rc = cbor_get_tstr(r, &p, &n);
    if (rc == CBOR_ERR_TYPE)
        return LEDGER_REC_ERR_FIELD;
    b->ptr = (const uint8_t *)p;
    b->len = n;
    return rc;
}

static int rec__get_bstr(struct cbor_reader *r, struct ledger_bytes *b)
{
    int rc = cbor_get_bstr(r, &b->ptr, &b->len);
    return rc == CBOR_ERR_TYPE ? LEDGER_REC_ERR_FIELD : rc;
}

static int rec__get_uint(struct cbor_reader *r, uint64_t *v)
{
    int rc = cbor_get_uint(r, v);
    return rc == CBOR_ERR_TYPE ? LEDGER_REC_ERR_FIELD : rc;
}

static int rec__decode_message_field(struct cbor_reader *r, uint64_t key, struct ledger_message *m,
                                     int *seen_time)
{
    switch (key) {
    case LEDGER_MSG_TOPIC:
        return rec__get_tstr(r, &m->topic);
    case LEDGER_MSG_PAYLOAD:
        return rec__get_bstr(r, &m->payload);
    case LEDGER_MSG_PAYLOAD_DIGEST:
        return rec__get_bstr(r, &m->payload_digest);
    case LEDGER_MSG_PUBLISHER:
        return rec__get_tstr(r, &m->publisher);
    case LEDGER_MSG_CLIENT_ID:
        return rec__get_tstr(r, &m->client_id);
    case LEDGER_MSG_DEVICE_SEQ:
        m->has_device_seq = true;
        return rec__get_uint(r, &m->device_seq);
    case LEDGER_MSG_DEVICE_TIME:
        m->has_device_time = true;
        return rec__get_uint(r, &m->device_time_ms);
    case LEDGER_MSG_BROKER_TIME:
        *seen_time = 1;
        return rec__get_uint(r, &m->broker_time_ms);
    case LEDGER_MSG_INGRESS_NODE:
        return rec__get_tstr(r, &m->ingress_node);
    case LEDGER_MSG_COSE:
        return rec__get_bstr(r, &m->cose);
    default:
        return LEDGER_REC_ERR_UNKNOWN;
    }
}

static int rec__check_message(const struct ledger_message *m, int seen_time)
{
    if (m->topic.ptr == NULL || m->publisher.ptr == NULL || m->client_id.ptr == NULL ||
        m->ingress_node.ptr == NULL || !seen_time)
        return LEDGER_REC_ERR_MISSING;
    if ((m->payload.ptr != NULL) == (m->payload_digest.ptr != NULL))
        return LEDGER_REC_ERR_PAYLOAD;
    if (m->payload_digest.ptr != NULL && m->payload_digest.len != LEDGER_PAYLOAD_DIGEST_LEN)
        return LEDGER_REC_ERR_FIELD;
    if (m->topic.len == 0 || m->publisher.len == 0 || m->ingress_node.len == 0)
        return LEDGER_REC_ERR_FIELD;
    return 0;
}

static int rec__decode_config_field(struct cbor_reader *r, uint64_t key, struct ledger_config *c)
{
    int rc;
    switch (key) {
    case LEDGER_CFG_ORIGIN:
        rc = rec__get_tstr(r, &c->origin);
        if (rc == 0 && !note_name_valid((const char *)c->origin.ptr, c->origin.len))
            return LEDGER_REC_ERR_FIELD;
        return rc;
    case LEDGER_CFG_NODE_KEYS: {
        uint64_t n;
        rc = cbor_get_array(r, &n);
        if (rc != 0)
            return rc == CBOR_ERR_TYPE ? LEDGER_REC_ERR_FIELD : rc;
        if (n == 0 || n > LEDGER_MAX_NODE_KEYS)
            return LEDGER_REC_ERR_FIELD;
        for (uint64_t i = 0; i < n; i++) {
            rc = rec__get_tstr(r, &c->node_keys[i]);
            if (rc != 0)
                return rc;
            if (!rec__node_key_ok(&c->node_keys[i], &c->origin))
                return LEDGER_REC_ERR_FIELD;
        }
        c->n_node_keys = (size_t)n;
        return 0;
    }
    case LEDGER_CFG_QUORUM:
        c->has_quorum = true;
        return rec__get_uint(r, &c->quorum);
    case LEDGER_CFG_PARAMS:
        return rec__get_tstr(r, &c->params);
    default:
        return LEDGER_REC_ERR_UNKNOWN;
    }
}

static int rec__check_config(const struct ledger_config *c)
{
    if (c->origin.ptr == NULL || c->n_node_keys == 0)
        return LEDGER_REC_ERR_MISSING;
    if (c->has_quorum && (c->quorum == 0 || c->quorum > c->n_node_keys))
        return LEDGER_REC_ERR_FIELD;
    return 0;
}

static int rec__decode_registry_field(struct cbor_reader *r, uint64_t key,
                                      struct ledger_registry *g)
{
    int rc;
    switch (key) {
    case LEDGER_REG_DEVICE_ID:
        return rec__get_tstr(r, &g->device_id);
    case LEDGER_REG_PUBLIC_KEY:
        return rec__get_bstr(r, &g->public_key);
    case LEDGER_REG_NAME:
        return rec__get_tstr(r, &g->name);
    case LEDGER_REG_ATTRS: {
        uint64_t n;
        rc = cbor_get_map(r, &n);
        if (rc != 0)
            return rc == CBOR_ERR_TYPE ? LEDGER_REC_ERR_FIELD : rc;
        if (n == 0 || n > LEDGER_REG_MAX_ATTRS)
            return LEDGER_REC_ERR_FIELD;
        for (uint64_t i = 0; i < n; i++) {
            if ((rc = rec__get_tstr(r, &g->attr_keys[i])) != 0 ||
                (rc = rec__get_tstr(r, &g->attr_values[i])) != 0)
                return rc;
        }
        g->n_attrs = (size_t)n;
        return 0;
    }
    case LEDGER_REG_TIME:
        return rec__get_uint(r, &g->time_ms);
    case LEDGER_REG_REASON:
        return rec__get_tstr(r, &g->reason);
    case LEDGER_REG_OPERATOR:
        return rec__get_tstr(r, &g->operator_key);
    case LEDGER_REG_SIGNATURE:
        return rec__get_bstr(r, &g->signature);
    default:
        return LEDGER_REC_ERR_UNKNOWN;
    }
}

int ledger_record_decode(const uint8_t *buf, size_t len, struct ledger_record *rec)
{
    struct cbor_reader r;
    uint64_t n, key;
    int rc;
    memset(rec, 0, sizeof *rec);
    rc = cbor_validate_deterministic(buf, len);
    if (rc != 0)
        return rc;
    cbor_reader_init(&r, buf, len);
    rc = cbor_get_map(&r, &n);
    if (rc == CBOR_ERR_TYPE)
        return LEDGER_REC_ERR_KIND;
    if (rc != 0)
        return rc;
    /* Keys are sorted, so kind (0) and version (1) come first if present. */
    if (n < 2 || cbor_get_uint(&r, &key) != 0 || key != LEDGER_KEY_KIND)
        return LEDGER_REC_ERR_MISSING;
    if ((rc = rec__get_uint(&r, &rec->kind)) != 0)
        return rc;
    if (cbor_get_uint(&r, &key) != 0 || key != LEDGER_KEY_VERSION)
        return LEDGER_REC_ERR_MISSING;
    if ((rc = rec__get_uint(&r, &rec->version)) != 0)
        return rc;
    if (rec->version == 0)
        return LEDGER_REC_ERR_FIELD;
    rec->raw.ptr = buf;
    rec->raw.len = len;
    rec->n_fields = (size_t)n;
    rec->known = rec->version == LEDGER_RECORD_VERSION &&
                 (rec->kind == LEDGER_KIND_MESSAGE || rec->kind == LEDGER_KIND_CONFIG ||
                  rec__is_registry(rec->kind));
    int seen_time = 0;
    for (uint64_t i = 2; i < n; i++) {
        rc = cbor_get_uint(&r, &key);
        if (rc != 0)
            return rc == CBOR_ERR_TYPE ? LEDGER_REC_ERR_FIELD
                                       : rc; /* keys are uints in every kind */
        if (!rec->known)
            rc = cbor_skip(&r, NULL, NULL);
        else if (rec->kind == LEDGER_KIND_MESSAGE)
            rc = rec__decode_message_field(&r, key, &rec->msg, &seen_time);
        else if (rec__is_registry(rec->kind)) {
            if (key == LEDGER_REG_TIME)
                seen_time = 1;
            rc = rec__decode_registry_field(&r, key, &rec->reg);
        } else
            rc = rec__decode_config_field(&r, key, &rec->config);
        if (rc != 0)
            return rc;
    }
    if ((rc = cbor_reader_end(&r)) != 0)
        return rc;
    if (!rec->known)
        return 0;
    if (rec__is_registry(rec->kind))
        return seen_time ? rec__check_registry(rec->kind, &rec->reg, 1) : LEDGER_REC_ERR_MISSING;
    return rec->kind == LEDGER_KIND_MESSAGE ? rec__check_message(&rec->msg, seen_time)
                                            : rec__check_config(&rec->config);
}
