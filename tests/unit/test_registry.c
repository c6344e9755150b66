/* Tests of src/identity/registry.c and the registry records of
 * src/ledger/record.c: kinds 3/4/5 round trips and the pinned example of
 * docs/FORMATS.md "Registry records", the registry rules applied from a
 * real ledger, forged and untrusted operator signatures, the replay slot,
 * and the index rebuilt after it is deleted or the operator set changes.
 * LMQ_PRINT_EXAMPLES=1 prints the example's hex. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/hash.h"
#include "crypto/note.h"
#include "crypto/sign.h"
#include "identity/device_id.h"
#include "identity/registry.h"
#include "ledger/log.h"
#include "ledger/record.h"
#include "util/config.h"
#include "util/log.h"

#define B(s) ((struct ledger_bytes){(const uint8_t *)(s), sizeof(s) - 1})
#define T0 1767225600000ull

static char errbuf[1024];

struct keypair {
    uint8_t pk[32], sk[64];
    char id[DEVICE_ID_LEN + 1];
    char vkey[NOTE_VKEY_MAX];
    struct note_verifier v;
};

static void seeded(struct keypair *k, uint8_t seed_byte, const char *op_name)
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof seed);
    assert_int_equal(crypto_ed25519_seed_keypair(k->pk, k->sk, seed), 0);
    device_id_from_pk(k->pk, k->id);
    if (op_name) {
        assert_int_equal(note_verifier_init(&k->v, op_name, k->pk), 0);
        assert_true(note_verifier_format(&k->v, k->vkey, sizeof k->vkey) > 0);
    }
}

static struct keypair op_a, op_b, dev1, dev2, dev1_new;

static void make_keys(void)
{
    seeded(&op_a, 0x0a, "operator-a");
    seeded(&op_b, 0x0b, "operator-b");
    seeded(&dev1, 0x21, NULL);
    seeded(&dev2, 0x22, NULL);
    seeded(&dev1_new, 0x23, NULL);
}

/* Encodes and signs a registry record; returns its length. */
static size_t make_rec(uint8_t *buf, size_t cap, uint64_t kind, const char *id, const uint8_t *pk,
                       const char *name, uint64_t time_ms, const char *reason,
                       const struct keypair *op)
{
    struct ledger_record r;
    uint8_t sig[64];
    size_t len = 0;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.reg.device_id = (struct ledger_bytes){(const uint8_t *)id, strlen(id)};
    if (pk)
        r.reg.public_key = (struct ledger_bytes){pk, 32};
    if (name)
        r.reg.name = (struct ledger_bytes){(const uint8_t *)name, strlen(name)};
    if (reason)
        r.reg.reason = (struct ledger_bytes){(const uint8_t *)reason, strlen(reason)};
    r.reg.time_ms = time_ms;
    assert_int_equal(registry_sign_record(&r, op->vkey, op->sk, sig, buf, cap, &len), 0);
    return len;
}

static void print_hex(const char *what, const uint8_t *p, size_t n)
{
    if (!getenv("LMQ_PRINT_EXAMPLES"))
        return;
    printf("%s (%zu bytes):\n", what, n);
    for (size_t i = 0; i < n; i++)
        printf("%02x%s", p[i], (i + 1) % 36 == 0 || i + 1 == n ? "\n" : "");
}

/* The FORMATS.md example: dev1 registered by operator-a with two
 * attributes given out of order. */
static const char example_hex[] =
    "a900030101027822642d6877736e6177767035746b346e69326f35616a6d61626b356b75"
    "6d7637637135035820884b8857f4eaa1613c61504db34d4beaf346517a0e31de3cddd4d9"
    "b4201d9d0b04686d657465722d303105a26562617463686432303236656d6f64656c664b"
    "4d2d323030061b0000019b76daa8000e78406f70657261746f722d612b35643665613530"
    "642b41554f6e4c6e464541585974396d746f776d333733796143717579664a4854737047"
    "452b516b6f50757630380f58404ce34ed98b4a4df39e33e0546669b345726ce61d9cb1fb"
    "93cbcddc3883f934f49c8fcc7760eba7834a251c3332043f2d8b7ac4cdbd7e3680697acc"
    "daf7f5c105";

static size_t example(uint8_t *buf, size_t cap)
{
    struct ledger_record r;
    uint8_t sig[64];
    size_t len;
    memset(&r, 0, sizeof r);
    r.kind = LEDGER_KIND_DEVICE_REGISTRATION;
    r.reg.device_id = (struct ledger_bytes){(const uint8_t *)dev1.id, DEVICE_ID_LEN};
    r.reg.public_key = (struct ledger_bytes){dev1.pk, 32};
    r.reg.name = B("meter-01");
    r.reg.n_attrs = 2;
    r.reg.attr_keys[0] = B("model");
    r.reg.attr_values[0] = B("KM-200");
    r.reg.attr_keys[1] = B("batch");
    r.reg.attr_values[1] = B("2026");
    r.reg.time_ms = T0;
    assert_int_equal(registry_sign_record(&r, op_a.vkey, op_a.sk, sig, buf, cap, &len), 0);
    return len;
}

static void test_records_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[2048], buf2[2048];
    size_t n, n2;
    struct ledger_record d;

    n = example(buf, sizeof buf);
    print_hex("registration example", buf, n);
    /* pinned (Ed25519 signatures are deterministic) */
    char hex[4097];
    crypto_hex_encode(buf, n, hex, sizeof hex);
    assert_string_equal(hex, example_hex);

    assert_int_equal(ledger_record_decode(buf, n, &d), 0);
    assert_true(d.known);
    assert_int_equal(d.kind, LEDGER_KIND_DEVICE_REGISTRATION);
    assert_int_equal(d.reg.n_attrs, 2);
    /* attributes come back in deterministic order: "batch" < "model" */
    assert_memory_equal(d.reg.attr_keys[0].ptr, "batch", 5);
    assert_memory_equal(d.reg.attr_values[1].ptr, "KM-200", 6);
    assert_memory_equal(d.reg.device_id.ptr, dev1.id, DEVICE_ID_LEN);
    assert_memory_equal(d.reg.public_key.ptr, dev1.pk, 32);
    assert_int_equal(d.reg.time_ms, T0);
    assert_int_equal(ledger_record_encode(&d, buf2, sizeof buf2, &n2), 0);
    assert_int_equal(n2, n);
    assert_memory_equal(buf2, buf, n);
    assert_int_equal(registry_verify_signature(&d, &op_a.v, 1), 0);
    assert_int_equal(registry_verify_signature(&d, &op_b.v, 1), REGISTRY_ERR_OPERATOR);

    /* signed bytes = domain || record without key 15 (67 bytes shorter,
     * map header one less) */
    assert_int_equal(ledger_registry_signed_bytes(&d, buf2, sizeof buf2, &n2), 0);
    size_t dl = sizeof(LEDGER_REG_SIG_DOMAIN) - 1;
    assert_int_equal(n2, dl + n - 67);
    assert_memory_equal(buf2, LEDGER_REG_SIG_DOMAIN, dl);
    assert_int_equal(buf2[dl], buf[0] - 1);
    assert_memory_equal(buf2 + dl + 1, buf + 1, n - 68);
    assert_int_equal(crypto_ed25519_verify(d.reg.signature.ptr, buf2, n2, op_a.pk), 0);

    /* revocation and rotation */
    n = make_rec(buf, sizeof buf, LEDGER_KIND_DEVICE_REVOCATION, dev1.id, NULL, NULL, T0 + 1,
                 "stolen", &op_a);
    assert_int_equal(ledger_record_decode(buf, n, &d), 0);
    assert_true(d.known);
    assert_memory_equal(d.reg.reason.ptr, "stolen", 6);
    assert_null(d.reg.public_key.ptr);
    assert_int_equal(registry_verify_signature(&d, &op_a.v, 1), 0);
    n = make_rec(buf, sizeof buf, LEDGER_KIND_KEY_ROTATION, dev1.id, dev1_new.pk, NULL, T0 + 2,
                 NULL, &op_a);
    assert_int_equal(ledger_record_decode(buf, n, &d), 0);
    assert_memory_equal(d.reg.public_key.ptr, dev1_new.pk, 32);
    assert_int_equal(ledger_record_encode(&d, buf2, sizeof buf2, &n2), 0);
    assert_memory_equal(buf2, buf, n);
}

static void test_records_reject(void **state)
{
    (void)state;
    uint8_t buf[2048], sig[64];
    size_t n;
    struct ledger_record r, d;
    memset(&r, 0, sizeof r);
    r.kind = LEDGER_KIND_DEVICE_REGISTRATION;
    r.reg.device_id = (struct ledger_bytes){(const uint8_t *)dev1.id, DEVICE_ID_LEN};
    r.reg.public_key = (struct ledger_bytes){dev1.pk, 32};
    r.reg.time_ms = T0;
    /* missing name */
    assert_int_equal(registry_sign_record(&r, op_a.vkey, op_a.sk, sig, buf, sizeof buf, &n),
                     LEDGER_REC_ERR_MISSING);
    r.reg.name = B("x");
    /* duplicate attribute */
    r.reg.n_attrs = 2;
    r.reg.attr_keys[0] = r.reg.attr_keys[1] = B("k");
    r.reg.attr_values[0] = r.reg.attr_values[1] = B("v");
    assert_int_equal(registry_sign_record(&r, op_a.vkey, op_a.sk, sig, buf, sizeof buf, &n),
                     LEDGER_REC_ERR_FIELD);
    r.reg.n_attrs = 0;
    /* bad device id syntax */
    r.reg.device_id = B("d-UPPERCASE");
    assert_int_equal(registry_sign_record(&r, op_a.vkey, op_a.sk, sig, buf, sizeof buf, &n),
                     LEDGER_REC_ERR_FIELD);
    r.reg.device_id = (struct ledger_bytes){(const uint8_t *)dev1.id, DEVICE_ID_LEN};
    /* a reason belongs to revocations only */
    r.reg.reason = B("why");
    assert_int_equal(registry_sign_record(&r, op_a.vkey, op_a.sk, sig, buf, sizeof buf, &n),
                     LEDGER_REC_ERR_UNKNOWN);
    r.reg.reason.ptr = NULL;
    /* operator must be a verifier key */
    assert_int_equal(registry_sign_record(&r, "nope", op_a.sk, sig, buf, sizeof buf, &n),
                     LEDGER_REC_ERR_FIELD);
    /* without signature: not encodable as a record */
    r.reg.operator_key = (struct ledger_bytes){(const uint8_t *)op_a.vkey, strlen(op_a.vkey)};
    r.reg.signature.ptr = NULL;
    assert_int_equal(ledger_record_encode(&r, buf, sizeof buf, &n), LEDGER_REC_ERR_MISSING);
    /* decoding: a record with the signature cut off */
    n = example(buf, sizeof buf);
    buf[0]--;
    assert_int_equal(ledger_record_decode(buf, n - 67, &d), LEDGER_REC_ERR_MISSING);
    /* a 63-byte signature */
    n = example(buf, sizeof buf);
    buf[n - 65] = 0x3f;
    assert_int_equal(ledger_record_decode(buf, n - 1, &d), LEDGER_REC_ERR_FIELD);
}

/* ---- registry on a real ledger ---- */

static void make_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/lmq-test-registry-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static struct ledger *open_ledger(const char *dir)
{
    struct ledger_options o;
    struct ledger *l = NULL;
    ledger_options_default(&o);
    o.origin = "example.com/registry-test";
    o.sync = LEDGER_SYNC_BATCH;
    int rc = ledger_open(dir, &o, &l, errbuf, sizeof errbuf);
    if (rc)
        fprintf(stderr, "ledger_open: %s\n", errbuf);
    assert_int_equal(rc, 0);
    return l;
}

static struct registry *open_registry(const char *dir, const struct note_verifier *ops, size_t n)
{
    struct registry_options o = {.operators = ops, .n_operators = n};
    struct registry *r = NULL;
    int rc = registry_open(dir, &o, &r, errbuf, sizeof errbuf);
    if (rc)
        fprintf(stderr, "registry_open: %s\n", errbuf);
    assert_int_equal(rc, 0);
    return r;
}

static void append(struct ledger *l, const uint8_t *p, size_t n)
{
    struct ledger_record_buf b = {p, n};
    assert_int_equal(ledger_append_batch(l, &b, 1, T0, NULL), 0);
}

/* Checks rec against the registry, then appends it (refused or not). */
static int check_append(struct registry *r, struct ledger *l, const uint8_t *p, size_t n)
{
    int rc = registry_check(r, p, n);
    append(l, p, n);
    assert_int_equal(registry_sync(r, l, NULL, NULL, NULL), 0);
    return rc;
}

static void append_message(struct ledger *l, const char *publisher, uint64_t seq)
{
    struct ledger_record m;
    uint8_t buf[512];
    size_t n;
    memset(&m, 0, sizeof m);
    m.kind = LEDGER_KIND_MESSAGE;
    m.msg.topic = B("meters/up");
    m.msg.payload = B("{}");
    m.msg.publisher = (struct ledger_bytes){(const uint8_t *)publisher, strlen(publisher)};
    m.msg.client_id = B("c");
    m.msg.has_device_seq = true;
    m.msg.device_seq = seq;
    m.msg.broker_time_ms = T0;
    m.msg.ingress_node = B("node-a");
    assert_int_equal(ledger_record_encode(&m, buf, sizeof buf, &n), 0);
    append(l, buf, n);
}

static uint64_t n_refused;
static void count_refused(void *ctx, uint64_t index, int err)
{
    (void)ctx;
    (void)index;
    (void)err;
    n_refused++;
}

static int count_dev(void *ctx, const struct registry_device *d)
{
    (void)d;
    (*(int *)ctx)++;
    return 0;
}

static void test_rules_and_rebuild(void **state)
{
    (void)state;
    char dir[128], cmd[512];
    uint8_t buf[2048];
    size_t n;
    struct registry_device *dev = malloc(sizeof *dev);
    assert_non_null(dev);
    make_dir(dir, sizeof dir);
    struct ledger *l = open_ledger(dir);
    struct registry *r = open_registry(dir, &op_a.v, 1);
    struct registry_sync_result res;
    assert_int_equal(registry_sync(r, l, &res, NULL, NULL), 0);
    assert_true(res.rebuilt);
    assert_int_equal(registry_lookup(r, dev1.id, DEVICE_ID_LEN, dev), -ENOENT);

    /* register dev1 */
    n = example(buf, sizeof buf);
    assert_int_equal(check_append(r, l, buf, n), 0);
    uint64_t reg_index = ledger_size(l) - 1;
    assert_int_equal(registry_lookup(r, dev1.id, DEVICE_ID_LEN, dev), 0);
    assert_int_equal(dev->status, REGISTRY_ACTIVE);
    assert_memory_equal(dev->public_key, dev1.pk, 32);
    assert_int_equal(dev->registered_index, reg_index);
    assert_int_equal(dev->registration.reg.n_attrs, 2);
    assert_memory_equal(dev->registration.reg.name.ptr, "meter-01", 8);
    assert_false(dev->has_last_seq);

    /* registering it again is refused (same key, other name) */
    n = make_rec(buf, sizeof buf, 3, dev1.id, dev1.pk, "again", T0, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_EXISTS);
    /* an id that is not the key's id */
    n = make_rec(buf, sizeof buf, 3, dev2.id, dev1.pk, "mismatch", T0, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_ID_MISMATCH);
    /* revocation and rotation of an unknown device */
    n = make_rec(buf, sizeof buf, 4, dev2.id, NULL, NULL, T0, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_UNKNOWN);
    n = make_rec(buf, sizeof buf, 5, dev2.id, dev2.pk, NULL, T0, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_UNKNOWN);
    /* an operator that is not configured */
    n = make_rec(buf, sizeof buf, 3, dev2.id, dev2.pk, "by-b", T0, NULL, &op_b);
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_OPERATOR);
    /* forged: operator-a's key string, signature flipped */
    n = make_rec(buf, sizeof buf, 3, dev2.id, dev2.pk, "forged", T0, NULL, &op_a);
    buf[n - 1] ^= 1;
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_SIGNATURE);
    /* forged: body changed after signing */
    n = make_rec(buf, sizeof buf, 3, dev2.id, dev2.pk, "forgeX", T0, NULL, &op_a);
    char *x = memmem(buf, n, "forgeX", 6);
    assert_non_null(x);
    x[5] = 'd';
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_SIGNATURE);
    assert_int_equal(registry_lookup(r, dev2.id, DEVICE_ID_LEN, dev), -ENOENT);

    /* replay slot from message records */
    append_message(l, dev1.id, 5);
    append_message(l, dev1.id, 3); /* lower: no change */
    assert_int_equal(registry_sync(r, l, &res, NULL, NULL), 0);
    assert_int_equal(res.seq_updates, 1);
    assert_int_equal(registry_lookup(r, dev1.id, DEVICE_ID_LEN, dev), 0);
    assert_true(dev->has_last_seq);
    assert_int_equal(dev->last_seq, 5);

    /* rotate dev1 to a new key; the id stays */
    n = make_rec(buf, sizeof buf, 5, dev1.id, dev1_new.pk, NULL, T0 + 5, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), 0);
    assert_int_equal(registry_lookup(r, dev1.id, DEVICE_ID_LEN, dev), 0);
    assert_memory_equal(dev->public_key, dev1_new.pk, 32);
    assert_int_equal(dev->n_rotations, 1);
    assert_int_equal(dev->last_seq, 5);
    char id[DEVICE_ID_LEN + 1];
    assert_int_equal(registry_lookup_key(r, dev1.pk, id), 0);
    assert_string_equal(id, dev1.id);
    assert_int_equal(registry_lookup_key(r, dev1_new.pk, id), 0);
    assert_string_equal(id, dev1.id);
    /* the rotated-to key (or the old one) can't be registered as another device */
    n = make_rec(buf, sizeof buf, 3, dev1_new.id, dev1_new.pk, "reuse", T0, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_KEY_IN_USE);
    /* rotating back to a former key */
    n = make_rec(buf, sizeof buf, 5, dev1.id, dev1.pk, NULL, T0, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_KEY_IN_USE);

    /* register dev2 properly, revoke dev1 */
    n = make_rec(buf, sizeof buf, 3, dev2.id, dev2.pk, "meter-02", T0, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), 0);
    n = make_rec(buf, sizeof buf, 4, dev1.id, NULL, NULL, T0 + 9, "decommissioned", &op_a);
    assert_int_equal(check_append(r, l, buf, n), 0);
    uint64_t rev_index = ledger_size(l) - 1;
    /* rotation and revocation of a revoked device */
    n = make_rec(buf, sizeof buf, 5, dev1.id, dev2.pk, NULL, T0, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_REVOKED);
    n = make_rec(buf, sizeof buf, 4, dev1.id, NULL, NULL, T0, NULL, &op_a);
    assert_int_equal(check_append(r, l, buf, n), REGISTRY_ERR_REVOKED);
    /* messages of a revoked device do not move its slot */
    append_message(l, dev1.id, 99);
    assert_int_equal(registry_sync(r, l, NULL, NULL, NULL), 0);

    assert_int_equal(registry_lookup(r, dev1.id, DEVICE_ID_LEN, dev), 0);
    assert_int_equal(dev->status, REGISTRY_REVOKED);
    assert_int_equal(dev->revoked_index, rev_index);
    assert_int_equal(dev->revoked_at_ms, T0 + 9);
    assert_memory_equal(dev->reason.ptr, "decommissioned", 14);
    assert_int_equal(dev->last_seq, 5);
    int count = 0;
    assert_int_equal(registry_foreach(r, count_dev, &count), 0);
    assert_int_equal(count, 2);
    uint64_t size = ledger_size(l);
    assert_int_equal(registry_ledger_size(r), size);

    /* incremental sync: nothing to do */
    assert_int_equal(registry_sync(r, l, &res, NULL, NULL), 0);
    assert_false(res.rebuilt);
    assert_int_equal(res.from, size);

    /* lose the index: rebuilt from the ledger with the same result */
    registry_close(r);
    snprintf(cmd, sizeof cmd, "rm -rf %s/registry", dir);
    assert_int_equal(system(cmd), 0);
    r = open_registry(dir, &op_a.v, 1);
    n_refused = 0;
    assert_int_equal(registry_sync(r, l, &res, count_refused, NULL), 0);
    assert_true(res.rebuilt);
    assert_int_equal(res.to, size);
    assert_int_equal(res.applied, 4);
    assert_int_equal(res.refused, 11);
    assert_int_equal(n_refused, 11);
    assert_int_equal(res.seq_updates, 1);
    assert_int_equal(registry_lookup(r, dev1.id, DEVICE_ID_LEN, dev), 0);
    assert_int_equal(dev->status, REGISTRY_REVOKED);
    assert_memory_equal(dev->public_key, dev1_new.pk, 32);
    assert_int_equal(dev->last_seq, 5);
    assert_int_equal(dev->registered_index, reg_index);
    assert_int_equal(registry_lookup(r, dev2.id, DEVICE_ID_LEN, dev), 0);
    assert_int_equal(dev->status, REGISTRY_ACTIVE);
    registry_close(r);

    /* another operator set: rebuilt; operator-b's registration now counts,
     * operator-a's do not */
    r = open_registry(dir, &op_b.v, 1);
    assert_int_equal(registry_sync(r, l, &res, NULL, NULL), 0);
    assert_true(res.rebuilt);
    assert_int_equal(res.applied, 1);
    assert_int_equal(registry_lookup(r, dev1.id, DEVICE_ID_LEN, dev), -ENOENT);
    assert_int_equal(registry_lookup(r, dev2.id, DEVICE_ID_LEN, dev), 0);
    assert_memory_equal(dev->registration.reg.name.ptr, "by-b", 4);
    registry_close(r);

    /* an index ahead of its ledger (the ledger was replaced): rebuilt */
    ledger_close(l);
    snprintf(cmd, sizeof cmd, "rm -rf %s/ledger %s/node.key", dir, dir);
    assert_int_equal(system(cmd), 0);
    l = open_ledger(dir);
    r = open_registry(dir, &op_b.v, 1);
    assert_int_equal(registry_sync(r, l, &res, NULL, NULL), 0);
    assert_true(res.rebuilt);
    assert_int_equal(registry_lookup(r, dev2.id, DEVICE_ID_LEN, dev), -ENOENT);
    registry_close(r);
    ledger_close(l);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(dev);
}

/* Enough registry records in one chunk for the threaded signature check,
 * with forged ones among them, in one batch. */
static void test_many_in_one_batch(void **state)
{
    (void)state;
    enum { N = 300 };
    char dir[128], cmd[256];
    static uint8_t bufs[N][512];
    struct ledger_record_buf recs[N];
    static struct keypair devs[N];
    struct registry_sync_result res;
    struct registry_device *dev = malloc(sizeof *dev);
    assert_non_null(dev);
    make_dir(dir, sizeof dir);
    struct ledger *l = open_ledger(dir);
    for (size_t i = 0; i < N; i++) {
        uint8_t seed[32] = {0};
        seed[0] = (uint8_t)i;
        seed[1] = (uint8_t)(i >> 8);
        seed[31] = 0x5a;
        assert_int_equal(crypto_ed25519_seed_keypair(devs[i].pk, devs[i].sk, seed), 0);
        device_id_from_pk(devs[i].pk, devs[i].id);
        recs[i].len =
            make_rec(bufs[i], sizeof bufs[i], 3, devs[i].id, devs[i].pk, "m", T0 + i, NULL, &op_a);
        recs[i].data = bufs[i];
        if (i % 97 == 13)
            bufs[i][recs[i].len - 10] ^= 0x40; /* forged: 13, 110, 207 */
    }
    assert_int_equal(ledger_append_batch(l, recs, N, T0, NULL), 0);
    struct registry *r = open_registry(dir, &op_a.v, 1);
    n_refused = 0;
    assert_int_equal(registry_sync(r, l, &res, count_refused, NULL), 0);
    assert_int_equal(res.applied, N - 3);
    assert_int_equal(res.refused, 3);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(registry_lookup(r, devs[i].id, DEVICE_ID_LEN, dev),
                         i % 97 == 13 ? -ENOENT : 0);
    assert_int_equal(dev->registration.reg.time_ms, T0 + N - 1);
    registry_close(r);
    ledger_close(l);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(dev);
}

/* The config's repeatable operator_key feeds registry_open. */
static void test_config_operator_key(void **state)
{
    (void)state;
    struct lmq_config *cfg = malloc(sizeof *cfg);
    char line[512], err[256];
    assert_non_null(cfg);
    lmq_config_defaults(cfg);
    assert_int_equal(cfg->n_operator_keys, 0);
    snprintf(line, sizeof line, "operator_key %s", op_a.vkey);
    assert_int_equal(lmq_config_apply(cfg, line, err, sizeof err), 0);
    assert_int_equal(lmq_config_apply(cfg, line, err, sizeof err), 0); /* twice: once */
    snprintf(line, sizeof line, "operator_key %s", op_b.vkey);
    assert_int_equal(lmq_config_apply(cfg, line, err, sizeof err), 0);
    assert_int_equal(cfg->n_operator_keys, 2);
    assert_string_equal(cfg->operator_keys[0], op_a.vkey);
    assert_int_equal(lmq_config_apply(cfg, "operator_key", err, sizeof err), -1);
    assert_int_equal(lmq_config_apply(cfg, "operator_key nope", err, sizeof err), -1);
    assert_int_equal(lmq_config_apply(cfg, "operator_key a+XYZ+b", err, sizeof err), -1);
    struct note_verifier v[2];
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(
            note_verifier_parse(cfg->operator_keys[i], strlen(cfg->operator_keys[i]), &v[i]), 0);
    assert_memory_equal(v[1].pk, op_b.pk, 32);
    free(cfg);
}

int main(void)
{
    lmq_log_set_level(LMQ_LOG_ERROR);
    make_keys();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_roundtrip),   cmocka_unit_test(test_records_reject),
        cmocka_unit_test(test_rules_and_rebuild),   cmocka_unit_test(test_many_in_one_batch),
        cmocka_unit_test(test_config_operator_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
