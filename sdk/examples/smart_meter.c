/* A simulated smart meter: loads (or creates) its device key, signs each
 * reading as a ledgermq device envelope (sequence number + time in the
 * protected header) and publishes it with MQTT 3.1.1 QoS 1 over a plain
 * TCP socket, waiting for each PUBACK. With -a AUDIENCE it logs in with a
 * CWT device token as the password (username = device id).
 *
 *   smart_meter [-k KEYFILE] [-n COUNT] [-i INTERVAL_MS] [-a AUDIENCE]
 *               HOST PORT TOPIC
 *
 * KEYFILE (default ./meter.key) holds the 32-byte seed in hex, mode 0600;
 * KEYFILE.seq the last sequence number used, so that numbers keep growing
 * across restarts. Prints the device id, then one line per acknowledged
 * reading. Exit status 0 if every reading was acknowledged. No heap use. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
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

static int recv_all(int fd, uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads one packet: type byte, body into buf. Returns body length or -1. */
static long read_packet(int fd, uint8_t *type, uint8_t *buf, size_t cap)
{
    uint32_t len = 0;
    unsigned shift = 0;
    uint8_t b;
    if (recv_all(fd, type, 1) != 0)
        return -1;
    do {
        if (shift > 21 || recv_all(fd, &b, 1) != 0)
            return -1;
        len |= (uint32_t)(b & 0x7f) << shift;
        shift += 7;
    } while (b & 0x80);
    if (len > cap || recv_all(fd, buf, len) != 0)
        return -1;
    return (long)len;
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

static int mqtt_connect(int fd, const char *client_id, const uint8_t *password, size_t pw_len)
{
    uint8_t body[1024], type, resp[8];
    size_t n = 0, h;
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
    if (read_packet(fd, &type, resp, sizeof(resp)) != 2 || type != 0x20)
        return -1;
    return resp[1]; /* CONNACK return code */
}

static int mqtt_publish_qos1(int fd, const char *topic, uint16_t id, const uint8_t *payload,
                             size_t len)
{
    size_t tl = strlen(topic), rem = 2 + tl + 2 + len, h;
    uint8_t type, resp[8];
    long n;
    if (rem + 8 > sizeof(pkt))
        return -1;
    pkt[0] = 0x32; /* PUBLISH, QoS 1 */
    h = 1 + put_varint(pkt + 1, rem);
    h += put_str(pkt + h, topic, tl);
    pkt[h++] = (uint8_t)(id >> 8);
    pkt[h++] = (uint8_t)id;
    memcpy(pkt + h, payload, len);
    if (send_all(fd, pkt, h + len) != 0)
        return -1;
    n = read_packet(fd, &type, resp, sizeof(resp));
    if (n < 2 || type != 0x40 || resp[0] != (uint8_t)(id >> 8) || resp[1] != (uint8_t)id)
        return -1;
    return 0;
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

static void usage(void)
{
    fprintf(stderr, "usage: smart_meter [-k KEYFILE] [-n COUNT] [-i INTERVAL_MS] [-a AUDIENCE] "
                    "HOST PORT TOPIC\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *keyfile = "meter.key", *aud = NULL;
    long count = 5, interval_ms = 1000;
    char seqfile[4096];
    static struct lmq_sdk_key key;
    static uint8_t env[1024], token[512];
    size_t token_len = 0;
    int opt, fd, rc, failures = 0;
    uint64_t seq;
    double kwh = 1000.0;
    long i;

    while ((opt = getopt(argc, argv, "k:n:i:a:")) != -1) {
        switch (opt) {
        case 'k': keyfile = optarg; break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        case 'i': interval_ms = strtol(optarg, NULL, 10); break;
        case 'a': aud = optarg; break;
        default: usage();
        }
    }
    if (argc - optind != 3 || count < 0 || interval_ms < 0)
        usage();
    if (lmq_sdk_init() != 0 || load_or_create_key(keyfile, &key) != 0) {
        fprintf(stderr, "smart_meter: cannot load or create key %s\n", keyfile);
        return 1;
    }
    snprintf(seqfile, sizeof(seqfile), "%s.seq", keyfile);
    seq = load_seq(seqfile);
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
    for (i = 0; i < count; i++) {
        char payload[128];
        size_t env_len;
        int plen;
        uint64_t t = now_ms();
        kwh += 0.25 + (double)(t % 100) / 1000.0;
        seq++;
        if (store_seq(seqfile, seq) != 0) { /* persist before use: never reuse a number */
            fprintf(stderr, "smart_meter: cannot store %s\n", seqfile);
            failures++;
            break;
        }
        plen = snprintf(payload, sizeof(payload), "{\"kwh\":%.3f}", kwh);
        if (lmq_sdk_envelope_sign(&key, seq, t, (const uint8_t *)payload, (size_t)plen, env,
                                  sizeof(env), &env_len) != 0 ||
            mqtt_publish_qos1(fd, argv[optind + 2], (uint16_t)(i % 65535 + 1), env, env_len) != 0) {
            fprintf(stderr, "smart_meter: publish %llu failed\n", (unsigned long long)seq);
            failures++;
            break;
        }
        printf("ack seq=%llu time=%llu %s\n", (unsigned long long)seq, (unsigned long long)t, payload);
        fflush(stdout);
        if (i + 1 < count && interval_ms > 0) {
            struct timespec ts = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    {
        static const uint8_t disconnect[2] = {0xe0, 0x00};
        (void)send_all(fd, disconnect, 2);
    }
    close(fd);
    lmq_sdk_key_wipe(&key);
    return failures ? 1 : 0;
}
