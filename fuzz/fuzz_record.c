/* libFuzzer target: ledger record decoder and the CBOR reader/validator.
 * Invariants checked beyond "no crash": a record that decodes as a known
 * kind re-encodes to exactly the same bytes (one record, one encoding);
 * the validator and the typed walk agree on where the item ends; the bytes
 * a registry record's operator signs are the record minus its last 67
 * bytes with the map header decreased (docs/FORMATS.md "Registry
 * records"). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/cbor.h"
#include "ledger/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Walks one item with the typed getters; returns -1 when the cursor
 * could not advance (the getters leave it in place on error). */
static int walk(struct cbor_reader *r, int depth)
{
    enum cbor_type t;
    size_t before = cbor_reader_remaining(r);
    if (depth > 20 || cbor_peek_type(r, &t) != 0)
        return -1;
    uint64_t n, v;
    int64_t iv;
    const uint8_t *p;
    const char *s;
    size_t len;
    bool b;
    switch (t) {
    case CBOR_TYPE_UINT:
        (void)cbor_get_int(r, &iv);
        (void)cbor_get_uint(r, &v);
        break;
    case CBOR_TYPE_NEGINT:
        (void)cbor_get_negint(r, &v);
        break;
    case CBOR_TYPE_BSTR:
        (void)cbor_get_bstr(r, &p, &len);
        break;
    case CBOR_TYPE_TSTR:
        (void)cbor_get_tstr(r, &s, &len);
        break;
    case CBOR_TYPE_ARRAY:
    case CBOR_TYPE_MAP:
        if ((t == CBOR_TYPE_ARRAY ? cbor_get_array(r, &n) : cbor_get_map(r, &n)) != 0)
            return -1;
        if (t == CBOR_TYPE_MAP)
            n = n > UINT64_MAX / 2 ? UINT64_MAX : n * 2;
        for (uint64_t i = 0; i < n && cbor_reader_remaining(r) > 0; i++)
            if (walk(r, depth + 1) != 0)
                return -1;
        break;
    case CBOR_TYPE_TAG:
        if (cbor_get_tag(r, &v) != 0 || walk(r, depth + 1) != 0)
            return -1;
        break;
    case CBOR_TYPE_SIMPLE:
        if (cbor_get_bool(r, &b) != 0)
            (void)cbor_get_null(r);
        break;
    }
    return cbor_reader_remaining(r) < before ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ledger_record rec;
    int rc = ledger_record_decode(data, size, &rec);
    if (rc == 0 && rec.known) {
        uint8_t *out = malloc(size + 16);
        size_t len = 0;
        if (out == NULL)
            return 0;
        if (ledger_record_encode(&rec, out, size + 16, &len) != 0 || len != size ||
            memcmp(out, data, size) != 0)
            abort(); /* a decoded record must re-encode to its own bytes */
        if (rec.kind >= LEDGER_KIND_DEVICE_REGISTRATION && rec.kind <= LEDGER_KIND_KEY_ROTATION) {
            size_t dl = sizeof(LEDGER_REG_SIG_DOMAIN) - 1;
            uint8_t *body = malloc(size + dl);
            if (body == NULL || ledger_registry_signed_bytes(&rec, body, size + dl, &len) != 0 ||
                len != dl + size - 67 || memcmp(body, LEDGER_REG_SIG_DOMAIN, dl) != 0 ||
                body[dl] != data[0] - 1 || memcmp(body + dl + 1, data + 1, size - 68) != 0)
                abort();
            free(body);
        }
        free(out);
    }

    int valid = cbor_validate_deterministic(data, size);
    struct cbor_reader r;
    cbor_reader_init(&r, data, size);
    const uint8_t *item;
    size_t item_len;
    int skipped = cbor_skip(&r, &item, &item_len);
    if (valid == 0 && (skipped != 0 || item_len != size))
        abort(); /* the validator and skip disagree */
    cbor_reader_init(&r, data, size);
    (void)walk(&r, 0);
    return 0;
}
