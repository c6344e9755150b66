/* auth_bench: CONNECTs per second authenticated with CWT device tokens
 * (docs/BROKER.md "Authentication"). Makes COUNT single-use tokens for one
 * device key first (not timed), then keeps PARALLEL connections in flight:
 * each sends an MQTT 3.1.1 CONNECT (user name = device id, password = a
 * fresh token), waits for CONNACK 0 and closes (RST, so no TIME_WAIT piles
 * up). Prints one RESULT line. The broker and the device registration are
 * set up by bench/auth.sh. Not a test: figures go to docs/BENCHMARKS.md. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <sodium.h>

#include "crypto/sign.h"
#include "identity/cwt.h"
#include "identity/device_id.h"

struct tok {
    uint8_t b[512];
    size_t n;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t put_str(uint8_t *p, const void *s, size_t n)
{
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return n + 2;
}

/* A 3.1.1 CONNECT with clean session, user name ID and password TOK. */
static size_t connect_packet(uint8_t *out, const char *cid, const char *id, const struct tok *t)
{
    uint8_t body[1024];
    size_t n = 0;
    n += put_str(body + n, "MQTT", 4);
    body[n++] = 4;
    body[n++] = 0x02 | 0x80 | 0x40;
    body[n++] = 0;
    body[n++] = 60;
    n += put_str(body + n, cid, strlen(cid));
    n += put_str(body + n, id, strlen(id));
    n += put_str(body + n, t->b, t->n);
    size_t k = 0;
    out[k++] = 0x10;
    size_t rl = n;
    do {
        uint8_t d = rl % 128;
        rl /= 128;
        out[k++] = (uint8_t)(d | (rl ? 0x80 : 0));
    } while (rl);
    memcpy(out + k, body, n);
    return k + n;
}

int main(int argc, char **argv)
{
    const char *key = NULL, *aud = "ledgermq.local/default";
    int port = 1883, count = 20000, parallel = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--key") && i + 1 < argc)
            key = argv[++i];
        else if (!strcmp(argv[i], "--aud") && i + 1 < argc)
            aud = argv[++i];
        else if (!strcmp(argv[i], "--count") && i + 1 < argc)
            count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--parallel") && i + 1 < argc)
            parallel = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: auth_bench --key DEVKEY [--port P] [--aud ORIGIN] "
                            "[--count N] [--parallel K]\n");
            return 2;
        }
    }
    if (!key || count <= 0 || parallel <= 0 || parallel > 4096 || sodium_init() < 0) {
        fprintf(stderr, "auth_bench: --key DEVKEY is required\n");
        return 2;
    }
    uint8_t pk[32], sk[64];
    if (crypto_key_load(key, pk, sk) != 0) {
        fprintf(stderr, "auth_bench: cannot load %s\n", key);
        return 2;
    }
    char id[DEVICE_ID_LEN + 1];
    device_id_from_pk(pk, id);
    struct tok *toks = calloc((size_t)count, sizeof *toks);
    if (!toks)
        return 2;
    int64_t iat = (int64_t)time(NULL);
    double t0 = now_s();
    for (int i = 0; i < count; i++) {
        uint8_t cti[16];
        randombytes_buf(cti, sizeof cti);
        if (cwt_make(id, aud, iat, iat + 600, cti, sizeof cti, sk, toks[i].b, sizeof toks[i].b,
                     &toks[i].n) != 0) {
            fprintf(stderr, "auth_bench: cwt_make failed\n");
            return 2;
        }
    }
    sodium_memzero(sk, sizeof sk);
    fprintf(stderr, "auth_bench: %d tokens made in %.2f s\n", count, now_s() - t0);

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct pollfd *pf = calloc((size_t)parallel, sizeof *pf);
    double *started = calloc((size_t)parallel, sizeof *started);
    double *lat = calloc((size_t)count, sizeof *lat);
    if (!pf || !started || !lat)
        return 2;
    int next = 0, done = 0, ok = 0, refused = 0, errors = 0;
    for (int i = 0; i < parallel; i++)
        pf[i].fd = -1;
    t0 = now_s();
    while (done < count) {
        for (int i = 0; i < parallel; i++) {
            if (pf[i].fd >= 0 || next >= count)
                continue;
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            int one = 1;
            struct linger lg = {1, 0};
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
                fprintf(stderr, "auth_bench: connect: %s\n", strerror(errno));
                return 1;
            }
            char cid[32];
            snprintf(cid, sizeof cid, "ab-%d", next);
            uint8_t pkt[1200];
            size_t n = connect_packet(pkt, cid, id, &toks[next]);
            started[i] = now_s();
            if (write(fd, pkt, n) != (ssize_t)n) {
                fprintf(stderr, "auth_bench: write: %s\n", strerror(errno));
                return 1;
            }
            pf[i].fd = fd;
            pf[i].events = POLLIN;
            next++;
        }
        int r = poll(pf, (nfds_t)parallel, 10000);
        if (r <= 0) {
            fprintf(stderr, "auth_bench: no CONNACK within 10 s\n");
            return 1;
        }
        for (int i = 0; i < parallel; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            uint8_t ack[4];
            ssize_t k = read(pf[i].fd, ack, sizeof ack);
            if (k == 4 && ack[0] == 0x20 && ack[3] == 0)
                ok++;
            else if (k == 4 && ack[0] == 0x20)
                refused++;
            else
                errors++;
            lat[done++] = now_s() - started[i];
            close(pf[i].fd);
            pf[i].fd = -1;
        }
    }
    double secs = now_s() - t0;
    double sum = 0, max = 0;
    for (int i = 0; i < count; i++) {
        sum += lat[i];
        if (lat[i] > max)
            max = lat[i];
    }
    printf("RESULT connects=%d accepted=%d refused=%d errors=%d seconds=%.3f "
           "connects_per_s=%.0f mean_ms=%.2f max_ms=%.2f parallel=%d\n",
           count, ok, refused, errors, secs, count / secs, sum / count * 1e3, max * 1e3, parallel);
    free(toks);
    free(pf);
    free(started);
    free(lat);
    return ok == count ? 0 : 1;
}
