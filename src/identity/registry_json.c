/* A registry device as JSON (registry_json.h). */
#include "identity/registry_json.h"

#include "crypto/hash.h"

static void rj__str(FILE *f, const uint8_t *p, size_t n)
{
    /* registry text fields are validated UTF-8; escape for JSON */
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

void registry_device_json(FILE *f, const struct registry_device *d, const char *indent)
{
    const struct ledger_registry *g = &d->registration.reg;
    char b64[45];
    crypto_b64_encode(d->public_key, 32, b64, sizeof b64);
    fprintf(f, "%s{\n%s  \"id\": \"%s\",\n%s  \"status\": \"%s\",\n%s  \"public_key\": \"%s\",\n",
            indent, indent, d->id, indent, d->status == REGISTRY_REVOKED ? "revoked" : "active",
            indent, b64);
    fprintf(f, "%s  \"name\": ", indent);
    rj__str(f, g->name.ptr, g->name.len);
    fprintf(f, ",\n%s  \"attributes\": {", indent);
    for (size_t i = 0; i < g->n_attrs; i++) {
        if (i)
            fputs(", ", f);
        rj__str(f, g->attr_keys[i].ptr, g->attr_keys[i].len);
        fprintf(f, ": ");
        rj__str(f, g->attr_values[i].ptr, g->attr_values[i].len);
    }
    fprintf(f, "},\n%s  \"registered_at_ms\": %llu,\n%s  \"registered_index\": %llu,\n", indent,
            (unsigned long long)g->time_ms, indent, (unsigned long long)d->registered_index);
    fprintf(f, "%s  \"operator\": ", indent);
    rj__str(f, g->operator_key.ptr, g->operator_key.len);
    fprintf(f, ",\n%s  \"updated_index\": %llu,\n%s  \"rotations\": %llu", indent,
            (unsigned long long)d->updated_index, indent, (unsigned long long)d->n_rotations);
    if (d->n_rotations)
        fprintf(f, ",\n%s  \"rotated_at_ms\": %llu", indent, (unsigned long long)d->rotated_at_ms);
    if (d->status == REGISTRY_REVOKED) {
        fprintf(f, ",\n%s  \"revoked_index\": %llu,\n%s  \"revoked_at_ms\": %llu", indent,
                (unsigned long long)d->revoked_index, indent, (unsigned long long)d->revoked_at_ms);
        if (d->reason.ptr) {
            fprintf(f, ",\n%s  \"reason\": ", indent);
            rj__str(f, d->reason.ptr, d->reason.len);
        }
    }
    if (d->has_last_seq)
        fprintf(f, ",\n%s  \"last_seq\": %llu,\n%s  \"last_seq_index\": %llu", indent,
                (unsigned long long)d->last_seq, indent, (unsigned long long)d->last_seq_index);
    else
        fprintf(f, ",\n%s  \"last_seq\": null", indent);
    fprintf(f, "\n%s}", indent);
}
