/* `ledgermq sign` and `ledgermq verify-envelope`: device envelopes
 * (docs/FORMATS.md "Device envelope (COSE_Sign1)") from the command line,
 * for scripts and gateways. sign reads the payload from stdin and writes
 * the binary envelope to stdout; verify-envelope reads an envelope from
 * stdin, checks it against a public key and prints its header as JSON.
 * Exit codes: 0 valid, 1 invalid (reason on stderr), 2 usage/read error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "cmd/cli.h"
#include "crypto/cose.h"
#include "crypto/sign.h"
#include "identity/device_id.h"

int cli_sign(struct cli *c, int argc, char **argv)
{
    (void)c;
    const char *key = NULL, *kid = NULL;
    uint64_t seq = 0, time_ms = 0;
    bool has_seq = false, has_time = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
            key = argv[++i];
        } else if (strcmp(argv[i], "--seq") == 0 && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &seq))
                return cli_error(CLI_ERR, "--seq: not a number");
            has_seq = true;
        } else if (strcmp(argv[i], "--time") == 0 && i + 1 < argc) {
            if (cli_parse_u64(argv[++i], &time_ms))
                return cli_error(CLI_ERR, "--time: milliseconds since the epoch");
            has_time = true;
        } else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            kid = argv[++i];
        } else {
            return cli_error(CLI_ERR, "sign: unexpected argument '%s'", argv[i]);
        }
    }
    if (key == NULL || !has_seq)
        return cli_error(CLI_ERR, "sign: --key KEYFILE and --seq N are required");
    if (kid != NULL && !device_id_valid(kid, strlen(kid)))
        return cli_error(CLI_ERR, "--id %s: not a device id", kid);
    if (!has_time) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        time_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    }
    uint8_t pk[32], sk[64];
    int rc = crypto_key_load(key, pk, sk);
    if (rc)
        return cli_error(CLI_ERR, "%s: cannot load the key: %s", key,
                         rc == -EINVAL ? "malformed key file" : strerror(-rc));
    char id[DEVICE_ID_LEN + 1];
    device_id_from_pk(pk, id);
    if (kid == NULL)
        kid = id; /* after a key rotation, pass the device's id with --id */
    char *payload = NULL;
    size_t plen = 0;
    rc = cli_read_file("-", &payload, &plen);
    if (rc) {
        sodium_memzero(sk, sizeof sk);
        return cli_error(CLI_ERR, "stdin: %s", strerror(-rc));
    }
    size_t cap = COSE_ENVELOPE_MAX(strlen(kid), plen), n;
    uint8_t *out = malloc(cap);
    rc = out ? cose_envelope_sign(kid, strlen(kid), seq, time_ms, payload, plen, sk, out, cap, &n)
             : COSE_ERR_NOMEM;
    sodium_memzero(sk, sizeof sk);
    free(payload);
    if (rc) {
        free(out);
        return cli_error(CLI_ERR, "sign: %s", cose_strerror(rc));
    }
    rc = fwrite(out, 1, n, stdout) == n && fflush(stdout) == 0 ? CLI_OK : CLI_ERR;
    free(out);
    if (rc)
        return cli_error(CLI_ERR, "stdout: write failed");
    return CLI_OK;
}

int cli_verify_envelope(struct cli *c, int argc, char **argv)
{
    (void)c;
    const char *pub = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pub") == 0 && i + 1 < argc)
            pub = argv[++i];
        else
            return cli_error(CLI_ERR, "verify-envelope: unexpected argument '%s'", argv[i]);
    }
    if (pub == NULL)
        return cli_error(CLI_ERR, "verify-envelope: --pub PUBKEY is required");
    uint8_t pk[32];
    if (cli_parse_pubkey(pub, pk))
        return CLI_ERR;
    char *buf = NULL;
    size_t len = 0;
    int rc = cli_read_file("-", &buf, &len);
    if (rc)
        return cli_error(CLI_ERR, "stdin: %s", strerror(-rc));
    struct cose_sign1 m;
    rc = cose_envelope_verify((const uint8_t *)buf, len, pk, &m);
    if (rc) {
        free(buf);
        return cli_error(CLI_FAIL, "invalid envelope: %s", cose_strerror(rc));
    }
    /* the kid is printed only when it has device id syntax (plain ASCII) */
    int kid_ok = device_id_valid((const char *)m.kid, m.kid_len);
    printf("{\"valid\": true, \"kid\": %s%.*s%s, \"seq\": %llu, \"time_ms\": %llu, "
           "\"payload_len\": %zu, \"kid_is_key_id\": %s}\n",
           kid_ok ? "\"" : "", kid_ok ? (int)m.kid_len : 4, kid_ok ? (const char *)m.kid : "null",
           kid_ok ? "\"" : "", (unsigned long long)m.seq, (unsigned long long)m.time_ms,
           m.payload_len, device_id_matches((const char *)m.kid, m.kid_len, pk) ? "true" : "false");
    free(buf);
    return CLI_OK;
}
