/* ledgermqd: the broker daemon. Only option handling and start-up order live
 * here; the work is in src/net (loop, listeners), src/broker (MQTT,
 * sessions, store) and src/ledger (the Merkle log, opened and held here so
 * that its node key exists from the first start and its LOCK keeps offline
 * writers out while the daemon runs). */
#include "broker/ledger_pipe.h"
#include "cluster/batcher.h"
#include "cluster/raft_committer.h"
#include "identity/registry.h"
#include "ledger/log.h"
#include "net/server.h"
#include "util/config.h"
#include "util/log.h"

#include <getopt.h>
#include <limits.h>
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

static void registry_refused(void *ctx, uint64_t index, int err)
{
    (void)ctx;
    LMQ_NOTICE("registry: record %llu has no effect: %s", (unsigned long long)index,
               registry_strerror(err));
}

/* Opens the device registry index under the data dir with the config's
 * operator keys and brings it up to the ledger (rebuilding it when it is
 * lost or was built from other operator keys). Without a served ledger
 * there is no registry (*OUT stays NULL): devices cannot be checked, so
 * the broker refuses what needs them. Returns -1 only when the index
 * cannot be opened at all. */
static int open_registry(const struct lmq_config *cfg, struct ledger *ledger,
                         struct registry **out)
{
    static struct note_verifier ops[LMQ_MAX_OPERATOR_KEYS];
    struct registry_options ro = {0};
    struct registry_sync_result res;
    char err[1024];
    *out = NULL;
    if (!ledger)
        return 0;
    for (size_t i = 0; i < cfg->n_operator_keys; i++) {
        const char *k = cfg->operator_keys[i];
        if (note_verifier_parse(k, strlen(k), &ops[ro.n_operators]) != 0 ||
            ops[ro.n_operators].type != NOTE_SIG_ED25519) {
            fprintf(stderr, "ledgermqd: operator_key %s: not a valid Ed25519 verifier key\n", k);
            return -1;
        }
        ro.n_operators++;
    }
    ro.operators = ops;
    if (registry_open(cfg->data_dir, &ro, out, err, sizeof err) < 0) {
        fprintf(stderr, "ledgermqd: device registry: %s\n", err);
        return -1;
    }
    int rc = registry_sync(*out, ledger, &res, registry_refused, NULL);
    if (rc < 0) {
        LMQ_ERROR("registry: sync with the ledger failed (%s); devices are not served",
                  registry_strerror(rc));
        registry_close(*out);
        *out = NULL;
        return 0;
    }
    LMQ_INFO("registry: %s at ledger size %llu (%llu registry records applied, %llu refused, "
             "%zu operator keys)",
             res.rebuilt ? "rebuilt" : "up to date", (unsigned long long)res.to,
             (unsigned long long)res.applied, (unsigned long long)res.refused, ro.n_operators);
    return 0;
}

/* With cluster_node lines the ledger is ordered through Raft
 * (cluster/raft_committer.h): the node's Raft state lives in
 * <data_dir>/raft, cluster traffic is mutual TLS when the cluster_tls_*
 * keys are set. The Raft node runs while the ledger pipeline does (not
 * when the ledger is damaged). Returns -1 after printing why. */
static int setup_cluster(const struct lmq_config *cfg, struct registry *registry)
{
    static struct lmq_raft_member members[LMQ_MAX_CLUSTER_NODES];
    static char dir[PATH_MAX];
    struct lmq_raft_committer_config rc;
    memset(&rc, 0, sizeof rc);
    for (size_t i = 0; i < cfg->n_cluster_nodes; i++) {
        members[i].id = cfg->cluster_nodes[i].id;
        snprintf(members[i].address, sizeof members[i].address, "%s",
                 cfg->cluster_nodes[i].address);
    }
    if ((size_t)snprintf(dir, sizeof dir, "%s/raft", cfg->data_dir) >= sizeof dir) {
        fprintf(stderr, "ledgermqd: data dir path too long\n");
        return -1;
    }
    rc.node.id = cfg->cluster_self;
    rc.node.dir = dir;
    rc.node.members = members;
    rc.node.n_members = cfg->n_cluster_nodes;
    rc.node.election_timeout_ms = cfg->cluster_election_ms;
    rc.node.heartbeat_timeout_ms = cfg->cluster_heartbeat_ms;
    rc.node.snapshot_threshold = cfg->cluster_snapshot_threshold;
    rc.node.snapshot_trailing = cfg->cluster_snapshot_trailing;
    rc.node.join = cfg->cluster_join;
    if (cfg->cluster_tls_cert[0]) { /* else plain TCP: raft_node warns */
        rc.node.tls_certfile = cfg->cluster_tls_cert;
        rc.node.tls_keyfile = cfg->cluster_tls_key;
        rc.node.tls_cafile = cfg->cluster_tls_ca;
    }
    rc.registry = registry;
    rc.forward.enabled = cfg->cluster_forward;
    rc.forward.port_offset = cfg->cluster_channel_port_offset;
    rc.forward.timeout_ms = cfg->cluster_forward_timeout_ms;
    rc.forward.max_inflight = cfg->cluster_forward_max;
    if (lmq_raft_committer_setup(&rc) < 0) {
        fprintf(stderr, "ledgermqd: cluster: configuration does not fit\n");
        return -1;
    }
    bk_ledger_set_committer(&lmq_raft_committer);
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

    /* Ledgered topics are ordered and committed by the single-node batcher
     * (its committer thread owns the read-write ledger handle), or with
     * cluster_node lines through Raft (set up once the registry is open). */
    bk_ledger_set_committer(&lmq_batcher_committer);
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
    struct registry *registry = NULL;
    if (open_registry(&cfg, ledger, &registry) < 0) {
        ledger_close(ledger);
        lmq_server_free(srv);
        return 1;
    }
    if (cfg.n_cluster_nodes > 0 && setup_cluster(&cfg, registry) < 0) {
        registry_close(registry);
        ledger_close(ledger);
        lmq_server_free(srv);
        return 1;
    }
    lmq_server_set_ledger(srv, ledger, registry);
    if (lmq_server_listen(srv, err, sizeof err) < 0) {
        fprintf(stderr, "ledgermqd: %s\n", err);
        registry_close(registry);
        ledger_close(ledger);
        lmq_server_free(srv);
        return 1;
    }
    LMQ_NOTICE("ledgermqd %s running (data in %s)", LMQ_VERSION, cfg.data_dir);
    int rc = lmq_server_run(srv);
    lmq_server_free(srv);
    if (registry)
        registry_close(registry);
    if (ledger)
        ledger_close(ledger);
    LMQ_NOTICE("ledgermqd stopped");
    return rc;
}
