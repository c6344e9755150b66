/* ledgermqd: the broker daemon. Only option handling lives here; the work
 * is in src/net (loop, listeners) and src/broker (MQTT, sessions, store). */
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
        fprintf(stderr, "ledgermqd: %s%s%s\n", conf ? conf : "", conf ? ": " : "", err);
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
    if (lmq_server_listen(srv, err, sizeof err) < 0) {
        fprintf(stderr, "ledgermqd: %s\n", err);
        lmq_server_free(srv);
        return 1;
    }
    LMQ_NOTICE("ledgermqd %s running (data in %s)", LMQ_VERSION, cfg.data_dir);
    int rc = lmq_server_run(srv);
    lmq_server_free(srv);
    LMQ_NOTICE("ledgermqd stopped");
    return rc;
}
