#include "helpers/relay.h"
#include "helpers/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RELAY_PAIRS 16

struct pair {
    int client, server; /* -1: free */
};

struct th_relay {
    int lfd, port, target;
    pthread_t thread;
    atomic_bool stop, stalled, refuse, drop;
    atomic_uint_fast64_t rate, bytes;
    struct pair pairs[RELAY_PAIRS];
};

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
pair_close(struct pair *p)
{
    if (p->client >= 0)
        close(p->client);
    if (p->server >= 0)
        close(p->server);
    p->client = p->server = -1;
}

static void
accept_one(struct th_relay *r)
{
    int c = accept(r->lfd, NULL, NULL);
    if (c < 0)
        return;
    if (atomic_load(&r->refuse)) {
        close(c);
        return;
    }
    int s = th_connect(r->target);
    struct pair *free_pair = NULL;
    for (int i = 0; i < RELAY_PAIRS && !free_pair; i++)
        if (r->pairs[i].client < 0)
            free_pair = &r->pairs[i];
    if (s < 0 || !free_pair) {
        close(c);
        if (s >= 0)
            close(s);
        return;
    }
    struct timeval tv = {0, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    free_pair->client = c;
    free_pair->server = s;
}

/* Move what one side has to the other; false when the pair is done. */
static bool
forward(struct th_relay *r, int from, int to, size_t max, bool count)
{
    char buf[65536];
    ssize_t n =
        recv(from, buf, max < sizeof(buf) ? max : sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return false;
    for (ssize_t off = 0; n > 0 && off < n;) {
        ssize_t w = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        off += w;
    }
    if (n > 0 && count)
        atomic_fetch_add(&r->bytes, (uint64_t)n);
    return true;
}

static void *
relay_main(void *arg)
{
    struct th_relay *r = arg;
    int64_t window = now_us();
    uint64_t window_bytes = 0;
    while (!atomic_load(&r->stop)) {
        if (atomic_load(&r->drop)) {
            for (int i = 0; i < RELAY_PAIRS; i++)
                pair_close(&r->pairs[i]);
            atomic_store(&r->drop, false);
        }
        struct pollfd pfd[1 + 2 * RELAY_PAIRS];
        int n = 0;
        pfd[n++] = (struct pollfd){.fd = r->lfd, .events = POLLIN};
        bool stalled = atomic_load(&r->stalled);
        for (int i = 0; i < RELAY_PAIRS; i++) {
            struct pair *p = &r->pairs[i];
            short ev = stalled ? 0 : POLLIN;
            pfd[n++] = (struct pollfd){.fd = p->client, .events = ev};
            pfd[n++] = (struct pollfd){.fd = p->server, .events = ev};
        }
        if (poll(pfd, (nfds_t)n, 20) < 0)
            continue;
        if (pfd[0].revents & POLLIN)
            accept_one(r);
        if (stalled)
            continue;
        uint64_t rate = atomic_load(&r->rate);
        int64_t t = now_us();
        if (t - window >= 100000) {
            window = t;
            window_bytes = 0;
        }
        size_t budget =
            rate ? (size_t)(rate / 10 > window_bytes ? rate / 10 - window_bytes
                                                     : 0)
                 : SIZE_MAX;
        for (int i = 0; i < RELAY_PAIRS; i++) {
            struct pair *p = &r->pairs[i];
            if (p->client < 0)
                continue;
            short cev = pfd[1 + 2 * i].revents, sev = pfd[2 + 2 * i].revents;
            bool ok = true;
            if (cev & (POLLIN | POLLHUP | POLLERR))
                ok = forward(r, p->client, p->server, SIZE_MAX, false);
            if (ok && (sev & (POLLIN | POLLHUP | POLLERR)) && budget) {
                uint64_t before = atomic_load(&r->bytes);
                ok = forward(r, p->server, p->client, budget, true);
                uint64_t moved = atomic_load(&r->bytes) - before;
                window_bytes += moved;
                budget = budget > moved ? budget - moved : 0;
            }
            if (!ok)
                pair_close(p);
        }
    }
    for (int i = 0; i < RELAY_PAIRS; i++)
        pair_close(&r->pairs[i]);
    return NULL;
}

struct th_relay *
th_relay_start(int target_port)
{
    struct th_relay *r = calloc(1, sizeof(*r));
    r->target = target_port;
    for (int i = 0; i < RELAY_PAIRS; i++)
        r->pairs[i].client = r->pairs[i].server = -1;
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (bind(r->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(r->lfd, 16) != 0 ||
        getsockname(r->lfd, (struct sockaddr *)&a, &len) != 0) {
        perror("relay");
        abort();
    }
    r->port = ntohs(a.sin_port);
    pthread_create(&r->thread, NULL, relay_main, r);
    return r;
}

int
th_relay_port(const struct th_relay *r)
{
    return r->port;
}

void
th_relay_stall(struct th_relay *r, int on)
{
    atomic_store(&r->stalled, on != 0);
}

void
th_relay_rate(struct th_relay *r, uint64_t bytes_per_sec)
{
    atomic_store(&r->rate, bytes_per_sec);
}

void
th_relay_drop(struct th_relay *r, int refuse)
{
    atomic_store(&r->refuse, refuse != 0);
    atomic_store(&r->drop, true);
    while (atomic_load(&r->drop))
        usleep(1000);
}

uint64_t
th_relay_bytes(const struct th_relay *r)
{
    return atomic_load(&r->bytes);
}

void
th_relay_stop(struct th_relay *r)
{
    if (!r)
        return;
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    close(r->lfd);
    free(r);
}
