/* ledgermqd: the broker daemon. Only option handling and start-up order live
 * here; the work is in src/net (loop, listeners), src/broker (MQTT,
 * sessions, store) and src/ledger (the Merkle log, opened and held here so
 * that its node key exists from the first start and its LOCK keeps offline
 * writers out while the daemon runs). */
#include "ledger/log.h"
#include "net/server.h"
#include "util/config.h"
#include "util/log.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: ledgermqd [-c ledgermq.conf] [-p port] [-d datadir] [-v] [-h]\n"
               "  -c FILE  read the configuration from FILE (see docs/CONFIG.md)\n"
               "  -p PORT  listen on PORT (replaces the first listener's port; 0 = any)\n"
               "  -d DIR   keep the data (store, ledger) in DIR (default ./data)\n"
               "  -v       debug logging\n"
               "  -h       this help\n");
}

/* Opens the node's ledger (creating it, and the node key with mode 0600, on
 * the first start). A damaged log is reported with file and offset and not
 * served: the daemon goes on as a plain broker, because a broker that
 * refuses to start loses more than it protects. A lock held by another
 * process, an origin that differs from the log's, or an I/O error stop the
 * start (returns -1 after printing why). */
static int open_ledger(const struct lmq_config *cfg, struct ledger **out)
{
    struct ledger_options lo;
    char err[1024];
    ledger_options_default(&lo);
    lo.origin = cfg->ledger_origin;
    lo.sync = cfg->ledger_sync == LMQ_SYNC_ALWAYS ? LEDGER_SYNC_ALWAYS : LEDGER_SYNC_BATCH;
    *out = NULL;
    int rc = ledger_open(cfg->data_dir, &lo, out, err, sizeof err);
    if (rc == LEDGER_ERR_CORRUPT) {
        LMQ_ERROR("ledger: %s; the ledger is not served until this is repaired "
                  "(see `ledgermq audit`); plain MQTT goes on",
                  err);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "ledgermqd: ledger: %s\n", err);
        return -1;
    }
    char vkey[512];
    uint8_t root[32];
    char root_hex[65];
    ledger_root(*out, root);
    for (int i = 0; i < 32; i++)
        snprintf(root_hex + 2 * i, 3, "%02x", root[i]);
    if (ledger_verifier_key(*out, vkey, sizeof vkey) < 0)
        snprintf(vkey, sizeof vkey, "(unavailable)");
    LMQ_INFO("ledger: origin %s, %llu records in %llu blocks, root %s, node key %s",
             ledger_origin(*out), (unsigned long long)ledger_size(*out),
             (unsigned long long)ledger_height(*out), root_hex, vkey);
    return 0;
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *data_dir = NULL;
    int port = -1;
    bool verbose = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:p:d:vh")) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 'p': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || v < 0 || v > 65535) {
                fprintf(stderr, "ledgermqd: -p: '%s' is not a port number (0-65535)\n", optarg);
                return 1;
            }
            port = (int)v;
            break;
        }
        case 'd':
            data_dir = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ledgermqd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 1;
    }

    static struct lmq_config cfg;
    char err[1024];
    lmq_config_defaults(&cfg);
    if (conf && lmq_config_load(&cfg, conf, err, sizeof err) < 0) {
        fprintf(stderr, "ledgermqd: %s\n", err);
        return 1;
    }
    /* -p 0 means "let the OS pick"; lmq_config_finish only overrides for > 0. */
    if (lmq_config_finish(&cfg, port > 0 ? port : -1, data_dir, err, sizeof err) < 0) {
        fprintf(stderr, "ledgermqd: %s\n", err);
        return 1;
    }
    if (port == 0 && cfg.n_listeners > 0)
        cfg.listeners[0].port = 0;
    lmq_log_set_level(verbose ? LMQ_LOG_DEBUG : (enum lmq_log_level)cfg.log_level);

    struct lmq_server *srv = lmq_server_new(&cfg, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "ledgermqd: %s\n", err);
        return 1;
    }
    struct ledger *ledger = NULL;
    if (open_ledger(&cfg, &ledger) < 0) {
        lmq_server_free(srv);
        return 1;
    }
    if (lmq_server_listen(srv, err, sizeof err) < 0) {
        fprintf(stderr, "ledgermqd: %s\n", err);
        ledger_close(ledger);
        lmq_server_free(srv);
        return 1;
    }
    LMQ_NOTICE("ledgermqd %s running (data in %s)", LMQ_VERSION, cfg.data_dir);
    int rc = lmq_server_run(srv);
    lmq_server_free(srv);
    if (ledger)
        ledger_close(ledger);
    LMQ_NOTICE("ledgermqd stopped");
    return rc;
}
