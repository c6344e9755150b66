/* ledgermq: the offline command-line tool. Works on a data dir (-d, as for
 * ledgermqd) or on files; results go to stdout, errors to stderr, and the
 * exit code says "ok/verified" (0), "verification failed" (1) or "could
 * not read / usage" (2). Commands live in a table so later groups (receipt,
 * watch, cluster) are one row and one cli_*.c file each. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "crypto/hash.h"
#include "util/config.h"
#include "util/log.h"

static const struct cli_command commands[] = {
    {"key show", "", "print the node's verifier key (name+keyid+base64)", cli_key_show},
    {"log info", "", "tree size, root, blocks and the latest checkpoint", cli_log_info},
    {"log get", "INDEX [--raw]", "print record INDEX decoded (or its bytes in hex)", cli_log_get},
    {"log blocks", "[--from H] [--count N]", "list block headers", cli_log_blocks},
    {"log append", "--topic TOPIC [--origin O] [--batch N] [--sync always|batch]",
     "append one message record per stdin line (stopped node only)", cli_log_append},
    {"log recover", "", "open read-write once: cut a torn tail, rebuild derived files",
     cli_log_recover},
    {"log checkpoint", "[--size N]", "print the signed checkpoint at size N (default latest)",
     cli_log_checkpoint},
    {"log proof", "INDEX [--size N] [--format json|tlog-proof]",
     "receipt (inclusion proof + checkpoint) for record INDEX", cli_log_proof},
    {"log consistency", "OLD NEW", "consistency proof between tree sizes OLD and NEW",
     cli_log_consistency},
    {"verify-receipt", "FILE... --key VKEY [--key VKEY2 ... --quorum K] [--origin O]",
     "verify receipt JSON files offline (one line per file; exit 1 if any fails)",
     cli_verify_receipt},
    {"verify-consistency", "OLD_CHECKPOINT NEW_CHECKPOINT PROOF --key VKEY [--quorum K]",
     "verify that NEW extends OLD (PROOF from `log consistency`)", cli_verify_consistency},
    {"audit", "[--key VKEY] [--quiet]",
     "recompute and check every record, node, block and checkpoint", cli_audit},
    {"receipt",
     "--broker HOST:PORT (INDEX | --hash LEAFHASH) [--key VKEY ... [--quorum K]] [--origin O] "
     "[--format json|tlog-proof] [-o FILE] [CONN]",
     "fetch a receipt from a running broker ($ledger/proof), verify it, print or save it",
     cli_receipt},
    {"watch",
     "--broker HOST:PORT --key VKEY [--key VKEY2 ... --quorum K] [--count N] [--idle S] "
     "[CONN]",
     "follow $ledger/checkpoint: verify each checkpoint and its consistency with the last",
     cli_watch},
    {"cluster status", "--broker HOST:PORT [CONN]",
     "a running node's Raft role, term, leader, applied index and members "
     "($SYS/ledger/cluster/...)",
     cli_cluster_status},
    {"cluster add", "ID HOST:PORT --broker LEADER [CONN]",
     "add node ID (Raft address HOST:PORT, started with cluster_join) as a voter; it catches "
     "up first",
     cli_cluster_add},
    {"cluster remove", "ID --broker LEADER [CONN]", "take node ID out of the cluster",
     cli_cluster_remove},
    {"cluster transfer", "[ID] --broker LEADER [CONN]",
     "hand leadership to voter ID (default: the most up-to-date one)", cli_cluster_transfer},
    {"device keygen", "--out KEYFILE",
     "new Ed25519 device key (mode 0600); prints its device id and public key", cli_device_keygen},
    {"device register",
     "--operator-key OPKEY (--pub PUBKEY | --key DEVKEY) --name NAME [--attr K=V ...] "
     "[--trust VKEY ...] [--operator-name N] [--time MS]",
     "sign and append a device registration (stopped node; or --broker HOST:PORT [CONN]: "
     "through a running one)",
     cli_device_register},
    {"device revoke", "--operator-key OPKEY --id DEVICEID [--reason R] [--trust VKEY ...]",
     "sign and append a device revocation (stopped node; or through --broker)", cli_device_revoke},
    {"device rotate", "--operator-key OPKEY --id DEVICEID --pub NEWPUB [--trust VKEY ...]",
     "sign and append a key rotation; the device id stays (stopped node; or --broker)",
     cli_device_rotate},
    {"device list", "[--trust VKEY ...] | --broker HOST:PORT [CONN] [--page N]",
     "registered devices as JSON (--trust: bring the index up to date first; --broker: from a "
     "running node's registry, N per $ledger/registry request)",
     cli_device_list},
    {"device show", "DEVICEID [--trust VKEY ...] | DEVICEID --broker HOST:PORT [CONN]",
     "one device as JSON (exit 1 if unknown; --broker: from a running node)", cli_device_show},
    {"operator keygen", "--out FILE [--name NAME]",
     "new operator key (mode 0600); prints its verifier key (for operator_key)",
     cli_operator_keygen},
    {"sign", "--key KEYFILE --seq N [--time MS] [--id DEVICEID]",
     "stdin payload -> stdout COSE_Sign1 device envelope", cli_sign},
    {"token", "--key KEYFILE (--aud ORIGIN | -c CONFIG) [--ttl SECONDS] [--iat T] [--id DEVICEID] "
              "[--hex]",
     "a CWT device token (the MQTT password) to stdout; --ttl default 300", cli_token},
    {"passwd", "--file FILE [--delete] USER",
     "add or replace USER in a password file (password: one line of stdin; mode 0600)",
     cli_passwd},
    {"verify-envelope", "--pub PUBKEY",
     "check a stdin envelope: exit 0 valid, 1 invalid (reason on stderr)", cli_verify_envelope},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: ledgermq [-c CONFIG] [-d DATADIR] COMMAND [ARGS]\n\n"
               "  -c CONFIG    read data_dir, ledger_origin and ledger_sync from ledgermqd's\n"
               "               config file (docs/CONFIG.md); -d and command flags override it;\n"
               "               the device commands trust its operator_key lines\n"
               "  -d DATADIR   the node's data dir (default: data_dir of CONFIG, else ./data;\n"
               "               the ledger is DATADIR/ledger)\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %s %s\n      %s\n", commands[i].words, commands[i].synopsis,
                commands[i].help);
    fprintf(f, "\nexit codes: 0 ok / verified, 1 verification failed (tampered, bad signature or\n"
               "proof, or a damaged ledger), 2 could not read input, usage or I/O error.\n"
               "\nCONN (commands that talk to a running broker, MQTT 5): --broker HOST:PORT\n"
               "  [--username U --password P] [--cafile CA] [--cert CERT --tls-key KEY]\n"
               "  [--client-id ID] [--timeout MS (default 10000)]\n");
}

int cli_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ledgermq: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int cli_parse_u64(const char *s, uint64_t *v)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *v = x;
    return 0;
}

int cli_read_file(const char *path, char **buf, size_t *len)
{
    int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    if (!b)
        goto nomem;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= (64u << 20)) {
                free(b);
                if (fd)
                    close(fd);
                return -EFBIG;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb)
                goto nomem;
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(b);
            if (fd)
                close(fd);
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (fd)
        close(fd);
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;
nomem:
    free(b);
    if (fd)
        close(fd);
    return -ENOMEM;
}

int cli_open_ledger(struct cli *c, bool read_only, const char *origin, struct ledger **out)
{
    struct ledger_options o;
    ledger_options_default(&o);
    o.origin = origin;
    o.read_only = read_only;
    if (!read_only) {
        if (!o.origin)
            o.origin = c->origin;
        o.sync = c->sync;
    }
    char err[512];
    if (read_only) {
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/ledger", c->datadir);
        if (stat(p, &st) != 0)
            return cli_error(CLI_ERR, "%s: no ledger in this data dir", c->datadir);
    }
    int rc = ledger_open(c->datadir, &o, out, err, sizeof err);
    if (rc)
        return cli_error(rc == LEDGER_ERR_CORRUPT ? CLI_FAIL : CLI_ERR, "%s: %s", c->datadir,
                         err[0] ? err : ledger_strerror(rc));
    return 0;
}

void cli_hex(const uint8_t *p, size_t n, char *out)
{
    crypto_hex_encode(p, n, out, 2 * n + 1);
}

int cli_parse_keys(char **keys, size_t n, struct note_verifier *out)
{
    for (size_t i = 0; i < n; i++)
        if (note_verifier_parse(keys[i], strlen(keys[i]), &out[i]) != 0)
            return cli_error(CLI_ERR, "--key %s: not a valid verifier key (name+hexid+base64)",
                             keys[i]);
    return 0;
}

/* Matches the longest command whose words prefix argv; returns the count
 * of words consumed or 0. */
static size_t match(const struct cli_command *cmd, int argc, char **argv)
{
    const char *w = cmd->words;
    size_t used = 0;
    while (*w) {
        size_t wl = strcspn(w, " ");
        if ((int)used >= argc || strlen(argv[used]) != wl || strncmp(argv[used], w, wl) != 0)
            return 0;
        used++;
        w += wl;
        while (*w == ' ')
            w++;
    }
    return used;
}

int main(int argc, char **argv)
{
    struct cli c = {.datadir = NULL, .prog = "ledgermq", .sync = LEDGER_SYNC_ALWAYS};
    const char *conf = NULL;
    lmq_log_set_level(LMQ_LOG_WARNING);
    /* Global -d and -c may come anywhere; collect the rest in order. */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return CLI_ERR;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        bool is_d = strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--datadir") == 0;
        bool is_c = strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0;
        if (is_d || is_c) {
            if (i + 1 >= argc) {
                free(rest);
                return cli_error(CLI_ERR, "%s needs a %s", argv[i], is_d ? "directory" : "file");
            }
            if (is_d)
                c.datadir = argv[++i];
            else
                conf = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            free(rest);
            return CLI_OK;
        } else if (strcmp(argv[i], "-v") == 0 && n == 0) {
            lmq_log_set_level(LMQ_LOG_DEBUG);
        } else {
            rest[n++] = argv[i];
        }
    }
    if (n == 0) {
        usage(stderr);
        free(rest);
        return CLI_ERR;
    }
    static struct lmq_config cfg; /* large (listener paths): not on the stack */
    if (conf) {
        char err[PATH_MAX + 256];
        lmq_config_defaults(&cfg);
        if (lmq_config_load(&cfg, conf, err, sizeof err) != 0) {
            free(rest);
            return cli_error(CLI_ERR, "%s", err);
        }
        if (!c.datadir)
            c.datadir = cfg.data_dir;
        c.origin = cfg.ledger_origin;
        c.config = &cfg;
        c.sync = cfg.ledger_sync == LMQ_SYNC_BATCH ? LEDGER_SYNC_BATCH : LEDGER_SYNC_ALWAYS;
    }
    if (!c.datadir)
        c.datadir = "./data";
    const struct cli_command *best = NULL;
    size_t best_used = 0;
    for (size_t i = 0; i < N_COMMANDS; i++) {
        size_t used = match(&commands[i], n, rest);
        if (used > best_used) {
            best = &commands[i];
            best_used = used;
        }
    }
    if (!best) {
        cli_error(CLI_ERR, "unknown command '%s'%s%s", rest[0], n > 1 ? " " : "",
                  n > 1 ? rest[1] : "");
        usage(stderr);
        free(rest);
        return CLI_ERR;
    }
    int rc = best->run(&c, n - (int)best_used + 1, rest + best_used - 1);
    free(rest);
    fflush(stdout);
    return rc;
}
