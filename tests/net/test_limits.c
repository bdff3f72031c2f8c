/*
 * Limits an operator relies on against careless and hostile clients, and a
 * restart right after a crash: --idle-timeout closes idle connections (and
 * only those), --conn-memory-limit closes the clients that hold the memory
 * of all connections past the cap while others are served, and mcdbd
 * started again at once after kill -9 on the same port comes up every time.
 * Each test starts its own mcdbd.
 *
 *   build/tests/test_net_limits
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/repl_util.h"
#include "helpers/server.h"
#include "helpers/target.h"

TG_SUITE_NEEDS(1)

static struct th_server srv;

static void
teardown(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
}

TestSuite(limits, .fini = teardown, .timeout = 120);

static int
conn(void)
{
    int fd = tg_connect(srv.port);
    cr_assert(fd >= 0, "cannot connect to mcdbd");
    return fd;
}

static void
still_serving(void)
{
    int st;
    cr_assert_eq(waitpid(srv.pid, &st, WNOHANG), 0,
                 "mcdbd died (status 0x%x); see %s", st, srv.log);
    int fd = conn();
    tg_expect(fd, "set health 3 0 2\r\nok\r\n", "STORED\r\n");
    tg_expect(fd, "get health\r\n", "VALUE health 3 2\r\nok\r\nEND\r\n");
    close(fd);
}

/* ---- restart after kill -9 ---- */

struct load {
    int port;
    volatile int stop;
    long sets;
};

/* Writes on a few connections, reconnecting whenever the server dies. */
static void *
load_main(void *p)
{
    struct load *l = p;
    char req[64 * 40];
    size_t n = 0;
    for (int i = 0; i < 64; i++)
        n += (size_t)sprintf(req + n, "set load%d 0 0 5\r\nvalue\r\n", i);
    while (!l->stop) {
        int fd = th_connect(l->port);
        if (fd < 0) {
            usleep(1000);
            continue;
        }
        struct timeval tv = {.tv_usec = 200 * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[4096];
        while (!l->stop && send(fd, req, n, MSG_NOSIGNAL) == (ssize_t)n) {
            ssize_t r = recv(fd, buf, sizeof(buf), 0);
            if (r <= 0)
                break;
            l->sets += r / 8; /* "STORED\r\n" */
        }
        close(fd);
    }
    return NULL;
}

static int
count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/*
 * What an operator (or systemd with RestartSec=100ms) does: kill -9 under
 * load, then start the same command at once. The dead server's io_uring is
 * torn down asynchronously and holds the port a little longer; mcdbd holds
 * the data directory's lock by then, so it knows the old server is gone
 * and waits for the port instead of failing.
 */
Test(limits, restart_on_the_same_port_right_after_kill_9_succeeds_20_times)
{
    cr_assert_eq(th_mcdbd_start(&srv, NULL, NULL), 0);
    const char *bin = getenv("MCDBD") ? getenv("MCDBD") : MCDBD_PATH;
    const char *argv[] = {bin,         "--port",     "{port}", "--listen",
                          "127.0.0.1", "--data-dir", srv.dir,  NULL};
    struct load load = {.port = srv.port};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, load_main, &load);
    int rounds = 20, started = 0, waited = 0;
    uint64_t slowest = 0;
    char log[sizeof(srv.log)];
    for (int i = 0; i < rounds; i++) {
        long before = load.sets;
        for (int t = 0; t < 200 && load.sets == before; t++)
            usleep(5000); /* the load reaches this server */
        th_server_stop(&srv, SIGKILL);
        uint64_t t0 = tg_now_ms();
        int rc = th_server_start(&srv, argv);
        uint64_t ms = tg_now_ms() - t0;
        if (ms > slowest)
            slowest = ms;
        cr_assert_eq(rc, 0, "start %d after kill -9 failed; see %s", i + 1,
                     srv.log);
        started++;
        snprintf(log, sizeof(log), "%s", srv.log);
        waited += count_in_file(log, "is still held") > 0;
    }
    load.stop = 1;
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    fprintf(stderr,
            "restart after kill -9: %d of %d starts succeeded, %d waited for "
            "the port, slowest %llu ms; %ld sets acknowledged meanwhile\n",
            started, rounds, waited, (unsigned long long)slowest, load.sets);
    cr_assert_eq(started, rounds);
    cr_assert_gt(load.sets, 0, "the load never reached the server");
    still_serving();
}

/* ---- --idle-timeout ---- */

/* 1 if the server closed fd (EOF or reset) with nothing else to read. */
static int
closed_now(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void
set_value(int fd, const char *key, size_t len)
{
    char *v = malloc(len + 64);
    int hl = sprintf(v, "set %s 0 0 %zu\r\n", key, len);
    memset(v + hl, 'v', len);
    memcpy(v + hl + len, "\r\n", 2);
    tg_expect_n(fd, v, (size_t)hl + len + 2, "STORED\r\n", 8);
    free(v);
}

/* Send without blocking until the socket takes no more for ms. */
static size_t
stuff(int fd, const char *req, size_t reqlen, int ms)
{
    size_t sent = 0;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, ms) <= 0 || !(pf.revents & POLLOUT))
            return sent;
        ssize_t n = send(fd, req, reqlen, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            return sent;
        sent += (size_t)n;
    }
}

/*
 * With --idle-timeout 1: a connection that never sends, one that sent a
 * request and got its reply, and one that stopped in the middle of a
 * request are closed after at least 1 s (and well before 2.5 s), and
 * idle_kicks counts exactly those. A client that keeps sending, and one that
 * sends nothing but has replies it does not read (the server still has
 * something to send), stay open.
 */
Test(limits, idle_timeout_closes_idle_connections_only_and_counts_them)
{
    const char *extra[] = {"--idle-timeout", "1", NULL};
    cr_assert_eq(th_mcdbd_start(&srv, NULL, extra), 0);
    int fd = conn();
    set_value(fd, "big", 256 * 1024);
    close(fd);

    /* The replies to these are 400 MB: most stay queued in the server. */
    static char gets[100 * 9];
    for (int i = 0; i < 100; i++)
        memcpy(gets + i * 9, "get big\r\n", 9);
    int unread = conn();
    stuff(unread, gets, sizeof(gets), 200);

    uint64_t t0 = tg_now_ms();
    int never = conn();
    int answered = conn();
    tg_expect(answered, "version\r\n", "VERSION ");
    free(tg_recv_line(answered)); /* the rest of the line */
    int partial = conn();
    cr_assert_eq(th_sends(partial, "set k 0 0 10\r\nabc"), 0);
    int busy = conn();

    int open_never = 1, open_answered = 1, open_partial = 1;
    uint64_t first_close = 0, last_close = 0;
    while (tg_now_ms() - t0 < 3000) {
        char *m = tg_exchange(busy, "version\r\n", 9, "VERSION ", 8);
        cr_assert_null(m, "the busy client: %s", m);
        free(tg_recv_line(busy));
        int *flags[] = {&open_never, &open_answered, &open_partial};
        int fds[] = {never, answered, partial};
        for (int i = 0; i < 3; i++) {
            if (*flags[i] && closed_now(fds[i])) {
                *flags[i] = 0;
                last_close = tg_now_ms() - t0;
                if (!first_close)
                    first_close = last_close;
            }
        }
        usleep(100 * 1000);
    }
    fprintf(stderr,
            "--idle-timeout 1: idle connections closed after %llu to %llu ms\n",
            (unsigned long long)first_close, (unsigned long long)last_close);
    cr_assert(!open_never, "a connection that never sent is still open");
    cr_assert(!open_answered, "an idle connection is still open");
    cr_assert(!open_partial, "a connection silent mid-request is still open");
    cr_assert_geq(first_close, 900, "closed after %llu ms of a 1 s timeout",
                  (unsigned long long)first_close);
    cr_assert_leq(last_close, 2500, "closed only after %llu ms",
                  (unsigned long long)last_close);
    cr_assert_not(closed_now(busy), "the busy client was closed");
    cr_assert_not(closed_now(unread),
                  "a client with replies unread was closed");
    cr_assert_eq(tg_stat(busy, NULL, "idle_kicks"), 3);
    cr_assert_eq(tg_stat(busy, "settings", "idle_timeout"), 1);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(unread, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(unread);
    close(never);
    close(answered);
    close(partial);
    close(busy);
    still_serving();
}

/*
 * A replica's link to its primary is replication's (src/repl), not a
 * client connection: with --idle-timeout 1 on both sides it outlives 2.5 s
 * without a write, and the next write still reaches the replica over the
 * same link (no second sync).
 */
Test(limits, idle_timeout_leaves_a_quiet_replication_link_open)
{
    const char *extra[] = {"--idle-timeout", "1", NULL};
    tr_start(&srv, extra);
    struct th_server replica = {0};
    tr_start_replica(&replica, srv.port, extra);
    int fd = conn();
    tg_expect(fd, "set before 0 0 1\r\nx\r\n", "STORED\r\n");
    close(fd);
    tr_wait_caught_up(srv.port, replica.port, 5000);
    usleep(2500 * 1000);
    fd = conn();
    tg_expect(fd, "set after 0 0 1\r\ny\r\n", "STORED\r\n");
    close(fd);
    tr_wait_caught_up(srv.port, replica.port, 5000);
    long long syncs = tr_stat_num(srv.port, "repl", "full_resyncs") +
                      tr_stat_num(srv.port, "repl", "partial_resyncs");
    long long kicks = tr_stat_num(srv.port, NULL, "idle_kicks");
    long long replica_kicks = tr_stat_num(replica.port, NULL, "idle_kicks");
    th_server_cleanup(&replica);
    cr_assert_eq(syncs, 1, "the replica synced %lld times", syncs);
    cr_assert_eq(kicks, 0, "the primary's idle_kicks is %lld", kicks);
    cr_assert_eq(replica_kicks, 0, "the replica's idle_kicks is %lld",
                 replica_kicks);
}

/* ---- --conn-memory-limit ---- */

#define HOGS 40
#define VALUE_HOGS 80
#define HOG_BYTES ((1ull << 30) / HOGS) /* a gigabyte together */

/*
 * HOGS clients each send req over and over (HOG_BYTES at most) for ms
 * without reading a byte,
 * watching the server's RSS; returns how many of them the server closed
 * (a send fails or a hang-up shows) and the largest RSS in *rss_max.
 */
static int
hogs_run(int *fds, const char *req, size_t reqlen, int ms, long *rss_max,
         size_t *sent_total)
{
    int closed[HOGS] = {0}, nclosed = 0;
    size_t sent[HOGS] = {0}, budget = (size_t)HOG_BYTES;
    uint64_t end = tg_now_ms() + (uint64_t)ms;
    while (tg_now_ms() < end && nclosed < HOGS) {
        struct pollfd pf[HOGS];
        for (int i = 0; i < HOGS; i++)
            pf[i] = (struct pollfd){.fd = closed[i] ? -1 : fds[i],
                                    .events = POLLOUT | POLLRDHUP};
        poll(pf, HOGS, 50);
        for (int i = 0; i < HOGS; i++) {
            if (closed[i] || !pf[i].revents || sent[i] >= budget)
                continue;
            ssize_t n = -1;
            if (!(pf[i].revents & (POLLHUP | POLLERR | POLLRDHUP)))
                n = send(fds[i], req, reqlen, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                *sent_total += (size_t)n;
                sent[i] += (size_t)n;
            } else if (n == 0 || errno != EAGAIN) {
                closed[i] = 1;
                nclosed++;
            }
        }
        long rss = tg_rss_kb(srv.pid);
        if (rss > *rss_max)
            *rss_max = rss;
    }
    return nclosed;
}

static void
hogs_reset(int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fds[i]);
    }
}

/*
 * The bound on the growth of mcdbd's RSS: the limit, plus what it allows
 * past itself (NET_CONN_MEM_FLOOR, 64 KiB, per connection; one lease and
 * one request's growth per worker; closed connections' buffers until their
 * reads complete), plus malloc's slack. Measured here with a 16 MiB limit:
 * +34 MB (pipelined gets) and +23 MB (unfinished values); without the
 * limit +193 MB and +71 MB.
 */
#define LIMIT_MB 16
#define RSS_BOUND_MB (LIMIT_MB + 40)
/* Under ASan freed memory waits in a 256 MB quarantine: RSS says nothing
 * about what mcdbd holds, and is only reported. */
#ifdef MCDB_SANITIZED
#define RSS_CHECKED 0
#else
#define RSS_CHECKED 1
#endif

/*
 * Forty clients pipeline gets of a 64 KiB value without reading a reply,
 * each trying for 3 s to send 25 MiB of them (a gigabyte together, asking
 * for 6,500 times that in replies). Backpressure stops each at
 * about 4 MiB of queued replies; the limit (16 MiB) stops all of them
 * together: the clients that grow past it are closed and counted in
 * conn_memory_kicks, mcdbd's RSS stays within RSS_BOUND_MB of where it
 * started, and another client is served throughout.
 */
Test(limits, clients_not_reading_replies_past_the_memory_limit_are_closed)
{
    const char *extra[] = {"--conn-memory-limit", "16m", NULL};
    cr_assert_eq(th_mcdbd_start(&srv, NULL, extra), 0);
    int ctl = conn();
    set_value(ctl, "v64k", 64 * 1024);
    static char gets[4096 * 10];
    for (int i = 0; i < 4096; i++)
        memcpy(gets + i * 10, "get v64k\r\n", 10);
    struct tg_bystander other = {.port = srv.port};
    pthread_t th;
    pthread_create(&th, NULL, tg_bystander_main, &other);

    long rss0 = tg_rss_kb(srv.pid), rss_max = rss0;
    int fds[HOGS];
    for (int i = 0; i < HOGS; i++)
        fds[i] = conn();
    size_t sent = 0;
    int closed = hogs_run(fds, gets, sizeof(gets), 3000, &rss_max, &sent);
    long long kicks = tg_stat(ctl, NULL, "conn_memory_kicks");
    long long held = tg_stat(ctl, NULL, "conn_memory_bytes");
    other.stop = 1;
    pthread_join(th, NULL);
    fprintf(stderr,
            "%d clients pipelining gets unread, --conn-memory-limit %dm: %zu "
            "bytes of requests sent, %d closed (conn_memory_kicks %lld), "
            "%lld bytes held; RSS %ld kB -> max %ld kB; other client: %d "
            "round trips, slowest %ld ms\n",
            HOGS, LIMIT_MB, sent, closed, kicks, held, rss0, rss_max, other.ok,
            other.max_ms);
    cr_assert_gt(closed, 0, "no client was closed");
    cr_assert_geq(kicks, closed, "%d closed, conn_memory_kicks %lld", closed,
                  kicks);
    cr_assert_lt(closed, HOGS, "every client was closed, not just the excess");
    cr_assert_leq(held, (LIMIT_MB + 8) << 20, "conn_memory_bytes %lld", held);
    if (RSS_CHECKED)
        cr_assert_lt(rss_max - rss0, RSS_BOUND_MB * 1024,
                     "RSS grew from %ld kB to %ld kB", rss0, rss_max);
    cr_assert_eq(other.failed, 0, "the other client was not served");
    cr_assert_geq(other.ok, 10, "the other client got %d round trips",
                  other.ok);
    cr_assert_lt(other.max_ms, 2000, "the other client waited %ld ms",
                 other.max_ms);
    hogs_reset(fds, HOGS);
    close(ctl);
    still_serving();
}

/*
 * Eighty clients each send most of a 1 MB value and stop (memcached's
 * read_buf_mem_limit case): each holds its unfinished request, 80 MB
 * together. Past the limit the ones that grow are closed and counted;
 * another client is served.
 */
Test(limits, clients_holding_unfinished_values_past_the_memory_limit_are_closed)
{
    const char *extra[] = {"--conn-memory-limit", "16m", NULL};
    cr_assert_eq(th_mcdbd_start(&srv, NULL, extra), 0);
    int ctl = conn();
    size_t vlen = 1000 * 1000;
    char *req = malloc(vlen);
    int hl = sprintf(req, "set half 0 0 %zu\r\n", vlen);
    memset(req + hl, 'h', vlen - (size_t)hl);
    struct tg_bystander other = {.port = srv.port};
    pthread_t th;
    pthread_create(&th, NULL, tg_bystander_main, &other);

    long rss0 = tg_rss_kb(srv.pid), rss_max = rss0;
    int fds[VALUE_HOGS], cut[VALUE_HOGS], closed = 0;
    for (int i = 0; i < VALUE_HOGS; i++) {
        fds[i] = conn();
        /* 900 KB of the value, then nothing more. */
        cut[i] = th_send(fds[i], req, 900 * 1000) != 0;
        long rss = tg_rss_kb(srv.pid);
        if (rss > rss_max)
            rss_max = rss;
    }
    free(req);
    for (int t = 0; t < 6; t++) { /* the server takes in what was sent */
        usleep(50 * 1000);
        long rss = tg_rss_kb(srv.pid);
        if (rss > rss_max)
            rss_max = rss;
    }
    /* Until the server has taken in everything (no more kicks for 300 ms),
     * then a moment for the last hang-ups to arrive. */
    long long kicks = tg_stat(ctl, NULL, "conn_memory_kicks"), prev = -1;
    for (int t = 0; t < 30 && kicks != prev; t++) {
        usleep(300 * 1000);
        prev = kicks;
        kicks = tg_stat(ctl, NULL, "conn_memory_kicks");
    }
    usleep(100 * 1000);
    for (int i = 0; i < VALUE_HOGS; i++)
        closed += cut[i] || closed_now(fds[i]);
    other.stop = 1;
    pthread_join(th, NULL);
    fprintf(stderr,
            "%d clients 900 KB into a 1 MB value, --conn-memory-limit %dm: %d "
            "closed (conn_memory_kicks %lld); RSS %ld kB -> max %ld kB; other "
            "client: %d round trips, slowest %ld ms\n",
            VALUE_HOGS, LIMIT_MB, closed, kicks, rss0, rss_max, other.ok,
            other.max_ms);
    cr_assert_gt(closed, 0, "no client was closed");
    cr_assert_eq(kicks, closed, "%d closed, conn_memory_kicks %lld", closed,
                 kicks);
    if (RSS_CHECKED)
        cr_assert_lt(rss_max - rss0, RSS_BOUND_MB * 1024,
                     "RSS grew from %ld kB to %ld kB", rss0, rss_max);
    cr_assert_eq(other.failed, 0, "the other client was not served");
    cr_assert_lt(other.max_ms, 2000, "the other client waited %ld ms",
                 other.max_ms);
    hogs_reset(fds, VALUE_HOGS);
    close(ctl);
    still_serving();
}
