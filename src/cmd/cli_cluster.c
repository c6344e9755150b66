/* `ledgermq cluster status`: a running node's view of its cluster, read
 * from the $SYS/ledger/cluster/... topics it publishes every sys_interval
 * (retained, so they arrive at once after the SUBSCRIBE). */
#include "cmd/cli.h"
#include "cmd/cli_mqtt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_PREFIX "$SYS/ledger/cluster/"

static const char *const cl__keys[] = {"role",   "node",           "term",
                                       "leader", "leader_address", "applied_index"};
#define CL_NKEYS (sizeof cl__keys / sizeof cl__keys[0])

int cli_cluster_status(struct cli *c, int argc, char **argv)
{
    (void)c;
    struct cli_mqtt_opts mo = {0};
    for (int i = 1; i < argc; i++) {
        int r = cli_mqtt_opt(&mo, argc, argv, &i);
        if (r < 0)
            return -r;
        if (r == 0)
            return cli_error(CLI_ERR, "cluster status: unexpected argument '%s'", argv[i]);
    }
    if (!mo.broker)
        return cli_error(CLI_ERR, "cluster status --broker HOST:PORT [CONN]");
    struct cli_mqtt *m;
    int rc = cli_mqtt_connect(&mo, &m);
    if (rc)
        return rc;
    uint8_t sr;
    char *vals[CL_NKEYS] = {0};
    size_t have = 0;
    if ((rc = cli_mqtt_subscribe(m, CL_PREFIX "#", 0, &sr)) != 0)
        goto out;
    if (sr >= 0x80) {
        rc = cli_error(CLI_ERR, "subscribing to " CL_PREFIX "# refused: 0x%02x", sr);
        goto out;
    }
    int wait_ms = mo.timeout_ms > 0 ? mo.timeout_ms : 10000;
    while (have < CL_NKEYS) {
        struct cli_mqtt_msg *msg;
        rc = cli_mqtt_next(m, wait_ms, &msg);
        if (rc == 1) {
            rc = cli_error(CLI_FAIL,
                           "no cluster status from %s within %d ms (not a cluster node, or "
                           "sys_interval 0)",
                           mo.broker, wait_ms);
            goto out;
        }
        if (rc)
            goto out;
        const char *k = msg->topic + (strncmp(msg->topic, CL_PREFIX, strlen(CL_PREFIX)) == 0
                                          ? strlen(CL_PREFIX)
                                          : strlen(msg->topic));
        for (size_t i = 0; i < CL_NKEYS; i++) {
            if (strcmp(k, cl__keys[i]) != 0 || vals[i])
                continue;
            vals[i] = malloc(msg->len + 1);
            if (vals[i]) {
                memcpy(vals[i], msg->payload, msg->len);
                vals[i][msg->len] = '\0';
                have++;
            }
        }
        free(msg);
    }
    for (size_t i = 0; i < CL_NKEYS; i++)
        printf("%s: %s\n", cl__keys[i], vals[i]);
    rc = CLI_OK;
out:
    for (size_t i = 0; i < CL_NKEYS; i++)
        free(vals[i]);
    cli_mqtt_close(m);
    return rc;
}
