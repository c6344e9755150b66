/* Shared pieces of the `ledgermq` command-line tool: the command table
 * entry, exit codes and small helpers. Each cli_*.c file implements one
 * group of commands; ledgermq.c holds the table and dispatches. To add a
 * command: write `int cli_x_y(struct cli *c, int argc, char **argv)` in a
 * cli_*.c file, declare it here and add a row to the table in ledgermq.c. */
#ifndef LMQ_CMD_CLI_H
#define LMQ_CMD_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "crypto/note.h"
#include "ledger/log.h"
#include "util/config.h"

/* Exit codes (documented in the usage text and docs/FORMATS.md "CLI"). */
#define CLI_OK 0   /* verified / done */
#define CLI_FAIL 1 /* verification failed: tampered, bad signature, bad proof */
#define CLI_ERR 2  /* could not read input, usage error, I/O error */

struct cli {
    const char *datadir; /* -d DATADIR, else data_dir of -c CONFIG, else ./data */
    const char *prog;    /* "ledgermq" */
    /* From -c CONFIG (the daemon's file): ledger_origin (NULL without -c)
     * and ledger_sync (default always). They apply where the CLI writes
     * the ledger, as ledgermqd would; command flags override them. */
    const char *origin;
    enum ledger_sync sync;
    /* The whole -c CONFIG (NULL without -c): the device commands trust its
     * operator_key lines. */
    const struct lmq_config *config;
};

/* argv[0] is the last command word; options and operands follow. */
typedef int (*cli_fn)(struct cli *c, int argc, char **argv);

struct cli_command {
    const char *words;    /* "log append" */
    const char *synopsis; /* "--topic TOPIC [--origin O] [--batch N]" */
    const char *help;     /* one line */
    cli_fn run;
};

/* Errors: "ledgermq: <what>" on stderr; returns code. */
int cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a decimal uint64; 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *v);
/* Reads a whole file ("-" = stdin) into a malloc'd NUL-terminated buffer. */
int cli_read_file(const char *path, char **buf, size_t *len);
/* Opens the ledger of c->datadir (read-write opens use origin, else
 * c->origin, and c->sync); prints the reason and returns CLI_FAIL if the
 * open found the log damaged (LEDGER_ERR_CORRUPT), else CLI_ERR. */
int cli_open_ledger(struct cli *c, bool read_only, const char *origin, struct ledger **out);
/* Hex of n bytes into out (2n+1). */
void cli_hex(const uint8_t *p, size_t n, char *out);
/* Parses --key VKEY options collected by the caller into verifiers. */
int cli_parse_keys(char **keys, size_t n, struct note_verifier *out);

int cli_key_show(struct cli *c, int argc, char **argv);
int cli_log_info(struct cli *c, int argc, char **argv);
int cli_log_get(struct cli *c, int argc, char **argv);
int cli_log_blocks(struct cli *c, int argc, char **argv);
int cli_log_append(struct cli *c, int argc, char **argv);
int cli_log_recover(struct cli *c, int argc, char **argv);
int cli_log_checkpoint(struct cli *c, int argc, char **argv);
int cli_log_proof(struct cli *c, int argc, char **argv);
int cli_log_consistency(struct cli *c, int argc, char **argv);
int cli_verify_receipt(struct cli *c, int argc, char **argv);
int cli_verify_consistency(struct cli *c, int argc, char **argv);
/* Why a receipt/checkpoint/proof check failed (cli_verify.c), one phrase. */
const char *cli_verify_reason(int rc);
/* cli_receipt.c: through a running broker's $ledger topics */
int cli_receipt(struct cli *c, int argc, char **argv);
int cli_watch(struct cli *c, int argc, char **argv);
int cli_cluster_status(struct cli *c, int argc, char **argv);
int cli_cluster_add(struct cli *c, int argc, char **argv);
int cli_cluster_remove(struct cli *c, int argc, char **argv);
int cli_cluster_transfer(struct cli *c, int argc, char **argv);
int cli_audit(struct cli *c, int argc, char **argv);
/* cli_device.c, cli_sign.c: device keys, registry, envelopes */
/* A public key as 64 hex digits, 44 base64 characters or a key file; 0 or
 * CLI_ERR (message printed). */
int cli_parse_pubkey(const char *s, uint8_t pk[32]);
int cli_device_keygen(struct cli *c, int argc, char **argv);
int cli_device_register(struct cli *c, int argc, char **argv);
int cli_device_revoke(struct cli *c, int argc, char **argv);
int cli_device_rotate(struct cli *c, int argc, char **argv);
int cli_device_list(struct cli *c, int argc, char **argv);
int cli_device_show(struct cli *c, int argc, char **argv);
int cli_operator_keygen(struct cli *c, int argc, char **argv);
/* cli_token.c: CONNECT credentials */
int cli_token(struct cli *c, int argc, char **argv);
int cli_passwd(struct cli *c, int argc, char **argv);
int cli_sign(struct cli *c, int argc, char **argv);
int cli_verify_envelope(struct cli *c, int argc, char **argv);

#endif
