/* ledger_bench: throughput and latency of the ledger store on this machine.
 * Appends N 256-byte records in batches of 1,000 with sync=always (one
 * write + one fdatasync per batch), then measures inclusion-proof latency
 * (p50/p99 over random indices at the full size), consistency proofs, the
 * offline audit rate, and the peak RSS. One table row per figure.
 *
 *   ledger_bench [-n RECORDS] [-b BATCH] [-d DIR] [--keep] [--sync batch]
 *
 * DIR defaults to a fresh directory under /tmp (removed unless --keep). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ledger/audit.h"
#include "ledger/log.h"
#include "ledger/merkle.h"
#include "util/log.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void row(const char *figure, double value, const char *unit, const char *note)
{
    printf("| %-44s | %14.1f | %-10s | %s |\n", figure, value, unit, note);
    fflush(stdout);
}

/* RssAnon of this process in MiB (heap, stacks, private mappings; not the
 * page cache behind the mapped node files), or -1. */
static double rss_anon_mib(void)
{
    FILE *sf = fopen("/proc/self/status", "r");
    char line[256];
    double v = -1;
    while (sf && fgets(line, sizeof line, sf))
        if (strncmp(line, "RssAnon:", 8) == 0)
            v = strtod(line + 8, NULL) / 1024.0;
    if (sf)
        fclose(sf);
    return v;
}

int main(int argc, char **argv)
{
    uint64_t n = 1000000, batch = 1000;
    const char *dir = NULL;
    bool keep = false, append_only = false;
    enum ledger_sync sync = LEDGER_SYNC_ALWAYS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-b") == 0 && i + 1 < argc)
            batch = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--append-only") == 0)
            append_only = true;
        else if (strcmp(argv[i], "--keep") == 0)
            keep = true;
        else if (strcmp(argv[i], "--sync") == 0 && i + 1 < argc)
            sync = strcmp(argv[++i], "batch") == 0 ? LEDGER_SYNC_BATCH : LEDGER_SYNC_ALWAYS;
        else {
            fprintf(stderr, "usage: ledger_bench [-n RECORDS] [-b BATCH] [-d DIR] [--keep] "
                            "[--sync always|batch]\n");
            return 2;
        }
    }
    if (batch == 0 || batch > LEDGER_MAX_BATCH || (n == 0 && !dir))
        return 2; /* -n 0 -d DIR: measure an existing log without appending */
    char tmp[64];
    if (!dir) {
        snprintf(tmp, sizeof tmp, "/tmp/lmq-ledger-bench-XXXXXX");
        if (!mkdtemp(tmp)) {
            perror("mkdtemp");
            return 2;
        }
        dir = tmp;
    }
    lmq_log_set_level(LMQ_LOG_WARNING);
    struct ledger_options o;
    ledger_options_default(&o);
    o.sync = sync;
    char err[512];
    struct ledger *l;
    int rc = ledger_open(dir, &o, &l, err, sizeof err);
    if (rc) {
        fprintf(stderr, "ledger_open %s: %s\n", dir, err);
        return 2;
    }
    uint64_t start_size = ledger_size(l);

    printf("| %-44s | %14s | %-10s | %s |\n", "figure", "value", "unit", "notes");
    printf("|%s|%s|%s|%s|\n", "----------------------------------------------", "----------------",
           "------------", "------");
    char note[128];

    /* Append. */
    uint8_t *data = malloc(batch * 256);
    struct ledger_record_buf *recs = malloc(batch * sizeof *recs);
    if (!data || !recs)
        return 2;
    double t0 = now();
    uint64_t done = 0;
    while (done < n) {
        uint64_t k = n - done < batch ? n - done : batch;
        for (uint64_t i = 0; i < k; i++) {
            uint8_t *p = data + i * 256;
            uint64_t v = start_size + done + i;
            memcpy(p, &v, 8);
            for (int j = 8; j < 256; j += 8) {
                uint64_t r = rng();
                memcpy(p + j, &r, 8);
            }
            recs[i] = (struct ledger_record_buf){p, 256};
        }
        rc = ledger_append_batch(l, recs, k, (uint64_t)time(NULL) * 1000, NULL);
        if (rc) {
            fprintf(stderr, "append: %s\n", ledger_strerror(rc));
            return 2;
        }
        done += k;
    }
    double dt = now() - t0;
    if (n > 0) {
        snprintf(note, sizeof note, "%llu x 256 B, batches of %llu, sync=%s", (unsigned long long)n,
                 (unsigned long long)batch,
                 sync == LEDGER_SYNC_ALWAYS ? "always (1 fdatasync/batch)" : "batch");
        row("append throughput", (double)n / dt, "records/s", note);
        row("append batch commit (mean)", dt / ((double)(n + batch - 1) / (double)batch) * 1e6,
            "us", "write + fdatasync + sign");
    }
    free(data);
    free(recs);

    if (append_only) {
        ledger_close(l);
        if (!keep && dir == tmp) {
            char cmd[128];
            snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
            if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", tmp);
        }
        return 0;
    }
    /* Proofs at the full size. */
    uint64_t size = ledger_size(l);
    enum { SAMPLES = 100000 };
    double *lat = malloc(SAMPLES * sizeof *lat);
    uint8_t proof[MERKLE_MAX_PROOF][32];
    size_t np;
    /* First touch of each node page faults it into the mapping: measure
     * that (cold) and then a second, independent random pass (warm). */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            /* Steady state of a long-running server: every node page mapped.
             * Touch one node per 4 KiB page of every level, untimed. */
            uint8_t h[32];
            for (unsigned k = 0; k < 64 && (size >> k); k++)
                for (uint64_t j = 0; j < (size >> k); j += 128)
                    (void)ledger_get_node(l, k, j, h);
        }
        for (int i = 0; i < SAMPLES; i++) {
            uint64_t idx = rng() % size;
            double a = now();
            rc = ledger_inclusion_proof(l, idx, size, proof, &np);
            lat[i] = now() - a;
            if (rc) {
                fprintf(stderr, "proof: %d\n", rc);
                return 2;
            }
        }
        qsort(lat, SAMPLES, sizeof *lat, cmp_d);
        snprintf(note, sizeof note, "%s: random index, tree size %llu, %zu hashes",
                 pass ? "all node pages mapped" : "cold mappings (first touch faults)",
                 (unsigned long long)size, np);
        row(pass ? "inclusion proof p50" : "inclusion proof p50 (cold)", lat[SAMPLES / 2] * 1e6,
            "us", note);
        row(pass ? "inclusion proof p99" : "inclusion proof p99 (cold)",
            lat[SAMPLES * 99 / 100] * 1e6, "us", note);
    }
    for (int i = 0; i < SAMPLES; i++) {
        uint64_t old = 1 + rng() % size;
        double a = now();
        rc = ledger_consistency_proof(l, old, size, proof, &np);
        lat[i] = now() - a;
        if (rc)
            return 2;
    }
    qsort(lat, SAMPLES, sizeof *lat, cmp_d);
    row("consistency proof p99", lat[SAMPLES * 99 / 100] * 1e6, "us", "random old size -> full");
    free(lat);
    row("anonymous RSS, log open", rss_anon_mib(), "MiB",
        "after appends and proofs, before close: what does not depend on the log size");
    ledger_close(l);

    /* Audit. */
    struct ledger_audit_stats st;
    t0 = now();
    rc = ledger_audit(dir, NULL, NULL, NULL, NULL, &st, err, sizeof err);
    dt = now() - t0;
    if (rc) {
        fprintf(stderr, "audit: %d %s (%llu problems)\n", rc, err, (unsigned long long)st.problems);
        return 1;
    }
    snprintf(note, sizeof note, "%llu records, %llu blocks, page cache warm",
             (unsigned long long)st.records, (unsigned long long)st.blocks);
    row("audit", (double)st.records / dt, "records/s", note);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    row("peak RSS", (double)ru.ru_maxrss / 1024.0, "MiB",
        "whole run; includes touched pages of mapped node files (page cache)");
    row("anonymous RSS at end", rss_anon_mib(), "MiB", "after the audit and close");
    if (!keep && dir == tmp) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmp);
    }
    return 0;
}
