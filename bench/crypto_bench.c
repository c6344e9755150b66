/* crypto_bench: per-operation cost of the pure crypto core on this machine
 * (single thread): SHA-256 (OpenSSL EVP), leaf hashing plus frontier
 * append, CRC-32C, Ed25519 sign/verify (libsodium; ours alone and in
 * batches: crypto/ed25519_batch.h), checkpoint note
 * verification with three node signatures, record encode/decode, receipt
 * verification. One line per figure; each runs for about 0.3 s.
 *
 *   crypto_bench [-t SECONDS_PER_FIGURE] [-c]
 *
 * -c: measure the thread's CPU time instead of wall time (on a shared
 * machine, time other processes take is then not counted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/ed25519_batch.h"
#include "crypto/hash.h"
#include "util/crc32c.h"
#include "crypto/note.h"
#include "crypto/sign.h"
#include "ledger/checkpoint.h"
#include "ledger/merkle.h"
#include "ledger/receipt.h"
#include "ledger/record.h"

static double per_figure = 0.3;
static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs fn in rounds of `batch` calls until per_figure seconds pass. */
#define MEASURE(label, batch, bytes_per_op, body)                                                  \
    do {                                                                                           \
        unsigned long long ops__ = 0;                                                              \
        double t0__ = now(), t__;                                                                  \
        do {                                                                                       \
            for (int i__ = 0; i__ < (batch); i__++) {                                              \
                body;                                                                              \
            }                                                                                      \
            ops__ += (batch);                                                                      \
            t__ = now() - t0__;                                                                    \
        } while (t__ < per_figure);                                                                \
        double rate__ = (double)ops__ / t__;                                                       \
        if ((bytes_per_op) > 0)                                                                    \
            printf("%-40s %12.0f ops/s %9.1f ns/op %8.2f GB/s\n", label, rate__, 1e9 / rate__,     \
                   rate__ * (double)(bytes_per_op) / 1e9);                                         \
        else                                                                                       \
            printf("%-40s %12.0f ops/s %9.1f ns/op\n", label, rate__, 1e9 / rate__);               \
    } while (0)

int main(int argc, char **argv)
{
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-t") == 0 && a + 1 < argc)
            per_figure = atof(argv[++a]);
        else if (strcmp(argv[a], "-c") == 0)
            clock_id = CLOCK_THREAD_CPUTIME_ID;
    }
    static uint8_t buf[1 << 20];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 31);
    uint8_t h[32];
    volatile uint32_t sink = 0;

    MEASURE("sha256 64 B", 1000, 64, crypto_sha256(buf, 64, h));
    MEASURE("sha256 1 KiB", 1000, 1024, crypto_sha256(buf, 1024, h));
    MEASURE("merkle_leaf_hash 256 B", 1000, 256, merkle_leaf_hash(buf, 256, h));
    struct merkle_frontier f;
    merkle_frontier_init(&f);
    MEASURE("leaf hash 256 B + frontier append", 1000, 0, {
        merkle_leaf_hash(buf, 256, h);
        merkle_frontier_append(&f, h, NULL, NULL);
    });
    MEASURE("merkle_frontier_root", 1000, 0, merkle_frontier_root(&f, h));
    MEASURE("crc32c 1 MiB", 10, sizeof buf, sink ^= lmq_crc32c(0, buf, sizeof buf));
    MEASURE("crc32c 64 B", 1000, 64, sink ^= lmq_crc32c(0, buf, 64));

    uint8_t pk[3][32], sk[3][64], sig[64];
    for (int i = 0; i < 3; i++) {
        uint8_t seed[32];
        memset(seed, i + 1, sizeof seed);
        crypto_ed25519_seed_keypair(pk[i], sk[i], seed);
    }
    MEASURE("ed25519 sign 128 B", 100, 0, crypto_ed25519_sign(sig, buf, 128, sk[0]));
    MEASURE("ed25519 verify 128 B", 100, 0,
            sink ^= (uint32_t)crypto_ed25519_verify(sig, buf, 128, pk[0]));
    MEASURE("ed25519 verify_one 128 B", 100, 0,
            sink ^= (uint32_t)ed25519_verify_one(sig, buf, 128, pk[0]));
    {
        /* 64 messages of 128 B signed by 64 distinct keys (64 devices), or
         * by 4 keys in turn (lmqbench's signed scenario: 4 publishers) */
        static uint8_t bpk[ED25519_BATCH_MAX][32], bsig[ED25519_BATCH_MAX][64],
            ok[ED25519_BATCH_MAX];
        struct ed25519_batch_item items[ED25519_BATCH_MAX];
        static const struct {
            int n, keys;
        } runs[] = {{16, 64}, {32, 64}, {64, 64}, {64, 4}};
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            for (int i = 0; i < ED25519_BATCH_MAX; i++) {
                uint8_t seed[32], bsk[64];
                memset(seed, 0x40 + i % runs[r].keys, sizeof seed);
                crypto_ed25519_seed_keypair(bpk[i], bsk, seed);
                crypto_ed25519_sign(bsig[i], buf + 128 * i, 128, bsk);
                items[i] = (struct ed25519_batch_item){bpk[i], bsig[i], buf + 128 * i, 128};
            }
            char label[64];
            if (runs[r].keys >= runs[r].n)
                snprintf(label, sizeof label, "ed25519 verify batch %d (per sig)", runs[r].n);
            else
                snprintf(label, sizeof label, "ed25519 verify batch %d, %d keys (per sig)",
                         runs[r].n, runs[r].keys);
            unsigned long long ops = 0;
            double t0 = now(), t;
            do {
                if (ed25519_verify_batch(items, (size_t)runs[r].n, ok) != (size_t)runs[r].n)
                    abort();
                ops += (unsigned long long)runs[r].n;
                t = now() - t0;
            } while (t < per_figure);
            printf("%-40s %12.0f ops/s %9.1f ns/op\n", label, (double)ops / t,
                   1e9 * t / (double)ops);
        }
    }

    struct note_verifier vk[3];
    struct checkpoint cp = {.origin = "ledger.example/plant1", .origin_len = 21, .size = f.size};
    merkle_frontier_root(&f, cp.root);
    char n1[2048], n2[2048], note[2048];
    ssize_t l = checkpoint_sign(&cp, sk[0], pk[0], n1, sizeof n1);
    l = note_add_signature(n1, (size_t)l, cp.origin, sk[1], pk[1], n2, sizeof n2);
    l = note_add_signature(n2, (size_t)l, cp.origin, sk[2], pk[2], note, sizeof note);
    for (int i = 0; i < 3; i++)
        note_verifier_init(&vk[i], cp.origin, pk[i]);
    MEASURE("checkpoint_verify (3 sigs, quorum 2)", 10, 0,
            sink ^= (uint32_t)checkpoint_verify(note, (size_t)l, vk, 3, 2, NULL, NULL, NULL));

    struct ledger_record rec, dec;
    memset(&rec, 0, sizeof rec);
    rec.kind = LEDGER_KIND_MESSAGE;
    rec.msg.topic = (struct ledger_bytes){(const uint8_t *)"plant1/line3/temp", 17};
    rec.msg.payload = (struct ledger_bytes){buf, 200};
    rec.msg.publisher = (struct ledger_bytes){(const uint8_t *)"meter-0042", 10};
    rec.msg.client_id = rec.msg.publisher;
    rec.msg.broker_time_ms = 1767225600123ull;
    rec.msg.ingress_node = (struct ledger_bytes){(const uint8_t *)"node-a", 6};
    uint8_t out[512];
    size_t len = 0;
    MEASURE("record encode (200 B payload)", 1000, 0,
            sink ^= (uint32_t)ledger_record_encode(&rec, out, sizeof out, &len));
    MEASURE("record decode (200 B payload)", 1000, 0,
            sink ^= (uint32_t)ledger_record_decode(out, len, &dec));

    (void)sink;
    return 0;
}
