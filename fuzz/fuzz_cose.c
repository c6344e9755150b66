/* libFuzzer target for the decoders of device-supplied COSE bytes: the
 * broker's COSE_Sign1 / envelope / CWT decoders (src/crypto/cose.c,
 * src/identity/cwt.c) and the SDK's envelope and receipt parsers
 * (sdk/src, compiled in). Every input goes through all of them; decoded
 * messages are also fed to signature verification so Sig_structure
 * construction over hostile lengths is exercised (cose_sign1_tbs inline
 * and malloc'd); identity/verify.c's envelope check runs up to its
 * registry lookup, alone and as a batch. Seeds:
 * fuzz/corpus/fuzz_cose/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../sdk/src/envelope.c"
#include "../sdk/src/key.c"
#include "../sdk/src/receipt.c"
#include "../sdk/src/util.c"

#include "crypto/cose.h"
#include "identity/cwt.h"
#include "identity/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t pk[32] = {0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe,
                                   0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6,
                                   0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};
    struct cose_sign1 m;
    struct cwt_token t;

    if (cose_sign1_decode(data, size, COSE_DECODE_UNTAGGED_OK, &m) == 0) {
        if (m.protected_hdr != NULL && m.protected_len > size)
            abort();
        (void)cose_sign1_verify_sig(&m, "aad", 3, pk);
    }
    if (cose_envelope_decode(data, size, &m) == 0) {
        if (m.kid == NULL || !m.has_seq || !m.has_time)
            abort();
        (void)cose_sign1_verify_sig(&m, NULL, 0, pk);
        /* The Sig_structure of the batch path: the same bytes whether
         * they fit the caller's buffer or are malloc'd. */
        uint8_t small[16], big[512];
        uint8_t *t1 = NULL, *t2 = NULL;
        size_t l1 = 0, l2 = 0;
        int r1 = cose_sign1_tbs(&m, NULL, 0, small, sizeof small, &t1, &l1);
        int r2 = cose_sign1_tbs(&m, NULL, 0, big, sizeof big, &t2, &l2);
        if (r1 != r2 || (r1 == 0 && (l1 != l2 || memcmp(t1, t2, l1) != 0)))
            abort();
        if (r1 == 0 && t1 != small)
            free(t1);
        if (r2 == 0 && t2 != big)
            free(t2);
    }
    /* The broker's envelope check up to the registry lookup (no registry
     * here): decoding, the kid as a device id, the session binding; the
     * batch steps give each copy the same result. */
    struct verify_info vi;
    int vr = verify_envelope(NULL, data, size, 1767225600000ull, 300000,
                             "d-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &vi);
    if (vr != VERIFY_MALFORMED && vr != VERIFY_UNKNOWN && vr != VERIFY_WRONG_DEVICE &&
        vr != VERIFY_REGISTRY)
        abort();
    static struct verify_prep vp[2];
    struct verify_req rq = {data, size, 1767225600000ull, 300000,
                            "d-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    struct verify_req rqs[2] = {rq, rq};
    if (verify_prepare_many(NULL, rqs, 2, vp) != 0 || verify_signatures(vp, 2) != 0 ||
        vp[0].res != vr || vp[1].res != vr || vp[0].info.cose_err != vi.cose_err)
        abort();
    if (cwt_decode(data, size, &t) == 0) {
        if (t.sub == NULL || t.cti == NULL || t.sub_len != t.cose.kid_len)
            abort();
        (void)cwt_verify(&t, pk, "lmq://fuzz", 1767225600, 60, 3600);
    }

    uint8_t *scratch = malloc(size + 64);
    if (scratch == NULL)
        return 0;
    struct lmq_sdk_envelope e;
    if (lmq_sdk_init() == 0) {
        (void)lmq_sdk_envelope_verify(data, size, pk, scratch, size + 64, &e);
        struct lmq_sdk_receipt r;
        (void)lmq_sdk_receipt_verify((const char *)data, size, "fuzz", pk, NULL, scratch, size + 64,
                                     &r);
        char name[64];
        uint8_t vpk[32];
        (void)lmq_sdk_vkey_parse((const char *)data, size, name, sizeof(name), vpk);
    }
    free(scratch);
    return 0;
}
