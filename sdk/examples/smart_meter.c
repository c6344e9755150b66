/* A simulated smart meter: loads (or creates) its device key, signs each
 * reading as a ledgermq device envelope (sequence number + time in the
 * protected header) and publishes it with MQTT 3.1.1 QoS 1 over a plain
 * TCP socket, keeping up to WINDOW readings unacknowledged. With -a
 * AUDIENCE it logs in with a CWT device token as the password (username =
 * device id). The MQTT client id is the device id.
 *
 *   smart_meter [-k KEYFILE] [-n COUNT | -t SECONDS] [-i INTERVAL_MS]
 *               [-w WINDOW] [-R RECEIPT_DIR [-K NODE_VKEY]] [-a AUDIENCE]
 *               [-q] HOST PORT TOPIC
 *   smart_meter [-k KEYFILE] -P          (print the device id and public key)
 *
 * KEYFILE (default ./meter.key) holds the 32-byte seed in hex, mode 0600;
 * KEYFILE.seq a sequence number at or above every one used, so that numbers
 * keep growing across restarts (reserved WINDOW at a time, written before
 * use).
 * With -R the meter subscribes to its receipts topic
 * $ledger/receipts/{device id} before publishing and writes each receipt
 * it gets to RECEIPT_DIR/{device id}.{n}.json; after the last PUBACK it
 * waits (up to 10 s without progress) until it holds one per acknowledged
 * reading. With -K (the node's verifier key, `ledgermq key show`) each
 * receipt is verified on the device first (lmq_sdk_receipt_verify: the
 * checkpoint's signature, the inclusion proof) and one that fails is an
 * error. Prints the device id, one line per acknowledged reading (not
 * with -q), and a summary line "meter ID: sent N acked N receipts N
 * verified N".
 * Exit status 0 if every reading was acknowledged (and, with -R, has its
 * receipt). No heap use. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "../include/ledgermq_sdk.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Loads the seed from path or creates the file (0600) with a new one. */
static int load_or_create_key(const char *path, struct lmq_sdk_key *key)
{
    char hex[66];
    uint8_t seed[LMQ_SDK_SEED_LEN];
    int fd = open(path, O_RDONLY);
    size_t i;
    if (fd >= 0) {
        ssize_t n = read(fd, hex, sizeof(hex));
        close(fd);
        if (n < 64)
            return -1;
        for (i = 0; i < 32; i++) {
            int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return -1;
            seed[i] = (uint8_t)(hi << 4 | lo);
        }
        return lmq_sdk_key_from_seed(key, seed);
    }
    if (errno != ENOENT)
        return -1;
    if (lmq_sdk_key_generate(key, lmq_sdk_rng_system, NULL) != 0)
        return -1;
    lmq_sdk_key_seed(key, seed);
    for (i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", seed[i]);
    hex[64] = '\n';
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0 || write(fd, hex, 65) != 65 || fsync(fd) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static uint64_t load_seq(const char *path)
{
    char buf[32] = {0};
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fgets(buf, sizeof(buf), f) == NULL)
        buf[0] = '\0';
    fclose(f);
    return strtoull(buf, NULL, 10);
}

static int store_seq(const char *path, uint64_t seq)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%llu\n", (unsigned long long)seq);
    return fclose(f);
}

/* ---- a minimal MQTT 3.1.1 client ---- */

static int send_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static size_t put_varint(uint8_t *p, size_t v)
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static size_t put_str(uint8_t *p, const void *s, size_t len)
{
    p[0] = (uint8_t)(len >> 8);
    p[1] = (uint8_t)len;
    memcpy(p + 2, s, len);
    return len + 2;
}

static uint8_t pkt[4096];
static uint8_t rbuf[65536];
static size_t rlen;

/* Reads one packet within timeout_ms (-1 forever): 1 and type/body/len, 0
 * on timeout, -1 on error or EOF. The body stays in rbuf until the next
 * call. */
static size_t consumed;
static int next_packet(int fd, int timeout_ms, uint8_t *type, const uint8_t **body, size_t *len)
{
    memmove(rbuf, rbuf + consumed, rlen - consumed);
    rlen -= consumed;
    consumed = 0;
    for (;;) {
        if (rlen >= 2) {
            size_t v = 0, i = 1;
            unsigned shift = 0;
            int complete = 0;
            while (i < rlen && i <= 4) {
                v |= (size_t)(rbuf[i] & 0x7f) << shift;
                shift += 7;
                if (!(rbuf[i++] & 0x80)) {
                    complete = 1;
                    break;
                }
            }
            if (!complete && i > 4)
                return -1;
            if (complete && v + i > sizeof(rbuf))
                return -1;
            if (complete && rlen >= i + v) {
                *type = rbuf[0];
                *body = rbuf + i;
                *len = v;
                consumed = i + v;
                return 1;
            }
        }
        struct pollfd p;
        p.fd = fd;
        p.events = POLLIN;
        int n = poll(&p, 1, timeout_ms);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        ssize_t r = recv(fd, rbuf + rlen, sizeof(rbuf) - rlen, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        rlen += (size_t)r;
    }
}

static int mqtt_connect(int fd, const char *client_id, const uint8_t *password, size_t pw_len)
{
    uint8_t body[1024], type;
    const uint8_t *resp;
    size_t n = 0, h, rl;
    n += put_str(body, "MQTT", 4);
    body[n++] = 4;                                  /* protocol level 3.1.1 */
    body[n++] = (uint8_t)(0x02 | (password ? 0xc0 : 0)); /* clean session, user+password */
    body[n++] = 0;
    body[n++] = 60; /* keep alive */
    n += put_str(body + n, client_id, strlen(client_id));
    if (password) {
        if (pw_len > sizeof(body) - n - 64)
            return -1;
        n += put_str(body + n, client_id, strlen(client_id)); /* username = device id */
        n += put_str(body + n, password, pw_len);
    }
    pkt[0] = 0x10;
    h = 1 + put_varint(pkt + 1, n);
    memcpy(pkt + h, body, n);
    if (send_all(fd, pkt, h + n) != 0)
        return -1;
    if (next_packet(fd, 10000, &type, &resp, &rl) != 1 || type != 0x20 || rl != 2)
        return -1;
    return resp[1]; /* CONNACK return code */
}

/* SUBSCRIBE to one filter at QoS 1; returns the SUBACK code or -1. */
static int mqtt_subscribe(int fd, const char *filter)
{
    size_t fl = strlen(filter), rem = 2 + 2 + fl + 1, h, rl;
    uint8_t type;
    const uint8_t *resp;
    if (rem + 8 > sizeof(pkt))
        return -1;
    pkt[0] = 0x82;
    h = 1 + put_varint(pkt + 1, rem);
    pkt[h++] = 0;
    pkt[h++] = 1; /* packet id 1 */
    h += put_str(pkt + h, filter, fl);
    pkt[h++] = 1; /* QoS 1 */
    if (send_all(fd, pkt, h) != 0)
        return -1;
    if (next_packet(fd, 10000, &type, &resp, &rl) != 1 || type != 0x90 || rl != 3)
        return -1;
    return resp[2];
}

static int mqtt_publish_qos1(int fd, const char *topic, uint16_t id, const uint8_t *payload,
                             size_t len)
{
    size_t tl = strlen(topic), rem = 2 + tl + 2 + len, h;
    if (rem + 8 > sizeof(pkt))
        return -1;
    pkt[0] = 0x32; /* PUBLISH, QoS 1 */
    h = 1 + put_varint(pkt + 1, rem);
    h += put_str(pkt + h, topic, tl);
    pkt[h++] = (uint8_t)(id >> 8);
    pkt[h++] = (uint8_t)id;
    memcpy(pkt + h, payload, len);
    return send_all(fd, pkt, h + len);
}

static int tcp_connect(const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    int fd = -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* The node key receipts are checked against (-K). */
static int have_node_key;
static char node_name[256];
static uint8_t node_pk[LMQ_SDK_PK_LEN];
static uint8_t scratch[65536];

/* A receipt (PUBLISH from the broker): verified (-K), saved to dir,
 * acknowledged. */
static long receipts, verified;
static int on_publish(int fd, uint8_t type, const uint8_t *b, size_t len, const char *dir,
                      const char *id)
{
    size_t tl, off;
    uint8_t ack[4];
    if (len < 2)
        return -1;
    tl = (size_t)b[0] << 8 | b[1];
    off = 2 + tl + (((type >> 1) & 3) ? 2 : 0);
    if (off > len)
        return -1;
    if (have_node_key) {
        struct lmq_sdk_receipt r;
        int rc = lmq_sdk_receipt_verify((const char *)b + off, len - off, node_name, node_pk,
                                        node_name, scratch, sizeof(scratch), &r);
        if (rc != 0) {
            fprintf(stderr, "smart_meter: receipt NOT verified: %s\n", lmq_sdk_strerror(rc));
            return -1;
        }
        verified++;
    }
    if (dir != NULL) {
        char path[4096];
        FILE *f;
        snprintf(path, sizeof(path), "%s/%s.%ld.json", dir, id, receipts);
        f = fopen(path, "w");
        if (f == NULL || fwrite(b + off, 1, len - off, f) != len - off || fclose(f) != 0) {
            fprintf(stderr, "smart_meter: cannot write %s\n", path);
            return -1;
        }
    }
    receipts++;
    if ((type >> 1) & 3) {
        ack[0] = 0x40;
        ack[1] = 2;
        ack[2] = b[2 + tl];
        ack[3] = b[3 + tl];
        return send_all(fd, ack, 4);
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: smart_meter [-k KEYFILE] [-n COUNT | -t SECONDS] [-i INTERVAL_MS] "
                    "[-w WINDOW] [-R RECEIPT_DIR [-K NODE_VKEY]] [-a AUDIENCE] [-q] HOST PORT "
                    "TOPIC\n"
                    "       smart_meter [-k KEYFILE] -P\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *keyfile = "meter.key", *aud = NULL, *rdir = NULL, *vkey = NULL;
    long count = 5, interval_ms = 1000, window = 1, seconds = 0;
    int quiet = 0, print_key = 0;
    char seqfile[4096], rtopic[128];
    static struct lmq_sdk_key key;
    static uint8_t env[1024], token[512];
    static uint64_t sent_time[65536];
    size_t token_len = 0;
    int opt, fd, rc, failures = 0;
    uint64_t seq, seq_reserved, start, next_at;
    double kwh = 1000.0;
    long sent = 0, acked = 0, unacked = 0;

    while ((opt = getopt(argc, argv, "k:n:i:a:t:w:R:K:qP")) != -1) {
        switch (opt) {
        case 'k': keyfile = optarg; break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        case 'i': interval_ms = strtol(optarg, NULL, 10); break;
        case 'a': aud = optarg; break;
        case 't': seconds = strtol(optarg, NULL, 10); break;
        case 'w': window = strtol(optarg, NULL, 10); break;
        case 'R': rdir = optarg; break;
        case 'K': vkey = optarg; break;
        case 'q': quiet = 1; break;
        case 'P': print_key = 1; break;
        default: usage();
        }
    }
    if (print_key ? argc != optind : (argc - optind != 3 || count < 0 || interval_ms < 0 ||
                                      seconds < 0 || window < 1 || window > 1000))
        usage();
    if (lmq_sdk_init() != 0 || load_or_create_key(keyfile, &key) != 0) {
        fprintf(stderr, "smart_meter: cannot load or create key %s\n", keyfile);
        return 1;
    }
    if (print_key) {
        size_t i;
        printf("device %s\npublic ", key.device_id);
        for (i = 0; i < LMQ_SDK_PK_LEN; i++)
            printf("%02x", key.pk[i]);
        printf("\n");
        lmq_sdk_key_wipe(&key);
        return 0;
    }
    if (vkey != NULL) {
        if (lmq_sdk_vkey_parse(vkey, strlen(vkey), node_name, sizeof(node_name), node_pk) != 0) {
            fprintf(stderr, "smart_meter: -K %s: not a verifier key\n", vkey);
            return 2;
        }
        have_node_key = 1;
    }
    snprintf(seqfile, sizeof(seqfile), "%s.seq", keyfile);
    seq = load_seq(seqfile);
    seq_reserved = seq;
    printf("device %s\n", key.device_id);
    fflush(stdout);

    fd = tcp_connect(argv[optind], argv[optind + 1]);
    if (fd < 0) {
        fprintf(stderr, "smart_meter: cannot connect to %s:%s\n", argv[optind], argv[optind + 1]);
        return 1;
    }
    if (aud != NULL) {
        int64_t now = (int64_t)(now_ms() / 1000);
        if (lmq_sdk_token_make(&key, aud, now, now + 300, lmq_sdk_rng_system, NULL, token,
                               sizeof(token), &token_len) != 0) {
            fprintf(stderr, "smart_meter: cannot make token\n");
            return 1;
        }
    }
    rc = mqtt_connect(fd, key.device_id, aud ? token : NULL, token_len);
    if (rc != 0) {
        fprintf(stderr, "smart_meter: CONNECT refused (%d)\n", rc);
        close(fd);
        return 1;
    }
    if (rdir != NULL) {
        snprintf(rtopic, sizeof(rtopic), "$ledger/receipts/%s", key.device_id);
        rc = mqtt_subscribe(fd, rtopic);
        if (rc != 1) {
            fprintf(stderr, "smart_meter: SUBSCRIBE %s refused (%d)\n", rtopic, rc);
            close(fd);
            return 1;
        }
    }
    start = now_ms();
    next_at = start;
    for (;;) {
        uint64_t now = now_ms();
        int more = seconds ? now < start + (uint64_t)seconds * 1000u : sent < count;
        int wait;
        uint8_t type;
        const uint8_t *body;
        size_t blen;
        if (more && unacked < window && now >= next_at) {
            char payload[128];
            size_t env_len;
            int plen;
            uint16_t id = (uint16_t)(sent % 65535 + 1);
            kwh += 0.25 + (double)(now % 100) / 1000.0;
            seq++;
            if (seq > seq_reserved) { /* persist before use: never reuse a number */
                seq_reserved = seq + (uint64_t)window - 1;
                if (store_seq(seqfile, seq_reserved) != 0) {
                    fprintf(stderr, "smart_meter: cannot store %s\n", seqfile);
                    failures++;
                    break;
                }
            }
            plen = snprintf(payload, sizeof(payload), "{\"kwh\":%.3f}", kwh);
            if (lmq_sdk_envelope_sign(&key, seq, now, (const uint8_t *)payload, (size_t)plen, env,
                                      sizeof(env), &env_len) != 0 ||
                mqtt_publish_qos1(fd, argv[optind + 2], id, env, env_len) != 0) {
                fprintf(stderr, "smart_meter: publish %llu failed\n", (unsigned long long)seq);
                failures++;
                break;
            }
            sent_time[id] = seq;
            sent++;
            unacked++;
            next_at = now + (uint64_t)interval_ms;
            continue;
        }
        if (!more && unacked == 0 && (rdir == NULL || receipts >= acked))
            break;
        /* wait for an ack (or a receipt), or the next reading's time */
        wait = 10000;
        if (more && unacked < window)
            wait = next_at > now ? (int)(next_at - now) : 0;
        rc = next_packet(fd, wait, &type, &body, &blen);
        if (rc < 0) {
            fprintf(stderr, "smart_meter: connection lost (%ld readings unacknowledged)\n",
                    unacked);
            failures++;
            break;
        }
        if (rc == 0) {
            if (wait == 10000) {
                fprintf(stderr, "smart_meter: nothing from the broker for 10 s (%ld unacked, "
                                "%ld receipts for %ld acks)\n",
                        unacked, receipts, acked);
                failures++;
                break;
            }
            continue;
        }
        if ((type & 0xf0) == 0x40 && blen >= 2) { /* PUBACK */
            uint16_t id = (uint16_t)(body[0] << 8 | body[1]);
            unacked--;
            acked++;
            if (!quiet) {
                printf("ack seq=%llu\n", (unsigned long long)sent_time[id]);
                fflush(stdout);
            }
        } else if ((type & 0xf0) == 0x30) { /* a receipt */
            if (on_publish(fd, type, body, blen, rdir, key.device_id) != 0) {
                failures++;
                break;
            }
        }
    }
    {
        static const uint8_t disconnect[2] = {0xe0, 0x00};
        (void)send_all(fd, disconnect, 2);
    }
    close(fd);
    printf("meter %s: sent %ld acked %ld receipts %ld verified %ld\n", key.device_id, sent, acked,
           receipts, verified);
    lmq_sdk_key_wipe(&key);
    return failures || acked != sent || (rdir != NULL && receipts < acked) ? 1 : 0;
}
