/* `ledgermq audit`: the offline auditor (ledger/audit.h) with findings on
 * stdout ("PROBLEM: ..." / "warning: ..."), progress on stderr, and exit
 * 0 verified, 1 tampered or damaged, 2 could not read. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cmd/cli.h"
#include "ledger/audit.h"

struct audit_ui {
    bool quiet;
    double t0;
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_report(void *ctx, bool problem, const char *line)
{
    (void)ctx;
    printf("%s: %s\n", problem ? "PROBLEM" : "warning", line);
    fflush(stdout);
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct audit_ui *ui = ctx;
    if (ui->quiet)
        return;
    double dt = mono() - ui->t0;
    fprintf(stderr, "audit: %llu/%llu records (%.0f%%), %.0f records/s\n", (unsigned long long)done,
            (unsigned long long)total, total ? 100.0 * (double)done / (double)total : 100.0,
            dt > 0 ? (double)done / dt : 0.0);
}

int cli_audit(struct cli *c, int argc, char **argv)
{
    const char *vkey = NULL;
    struct audit_ui ui = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            vkey = argv[++i];
        else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0)
            ui.quiet = true;
        else
            return cli_error(CLI_ERR, "unexpected argument '%s'", argv[i]);
    }
    struct note_verifier v;
    if (vkey) {
        int rc = cli_parse_keys((char **)&vkey, 1, &v);
        if (rc)
            return rc;
    }
    ui.t0 = mono();
    struct ledger_audit_stats st;
    char err[512] = "";
    int rc = ledger_audit(c->datadir, vkey ? &v : NULL, on_report, on_progress, &ui, &st, err,
                          sizeof err);
    double dt = mono() - ui.t0;
    if (rc && rc != LEDGER_ERR_CORRUPT)
        return cli_error(CLI_ERR, "audit %s: %s", c->datadir, err[0] ? err : ledger_strerror(rc));
    char root[65];
    cli_hex(st.root, 32, root);
    if (rc == LEDGER_ERR_CORRUPT) {
        printf("audit FAILED: %llu problem(s) in %s (%llu records, %llu blocks checked)\n",
               (unsigned long long)st.problems, c->datadir, (unsigned long long)st.records,
               (unsigned long long)st.blocks);
        return CLI_FAIL;
    }
    printf("audit ok: %llu records, %llu blocks and checkpoints verified, tree size %llu, root %s "
           "(%.2f s, %.0f records/s)%s\n",
           (unsigned long long)st.records, (unsigned long long)st.blocks,
           (unsigned long long)st.tree_size, root, dt, dt > 0 ? (double)st.records / dt : 0.0,
           st.warnings ? " with warnings" : "");
    return CLI_OK;
}
