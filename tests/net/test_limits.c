/*
 * Limits an operator relies on against careless and hostile clients:
 * --idle-timeout closes idle connections, and only those.
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
    tg_recv_line(answered); /* the rest of the line */
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
