/*
 * mcdbd under systemd's Type=notify: the messages it sends through
 * sd_notify(3) to the datagram socket named by NOTIFY_SOCKET, as
 * packaging/mcdb.service relies on. The test plays the service manager: it
 * binds a unix datagram socket, starts mcdbd with NOTIFY_SOCKET pointing at
 * it, and checks that READY=1 comes only once a pre-filled data directory
 * is recovered and the port answers, and STOPPING=1 on SIGTERM. mcdbd only
 * (memcached sends nothing): skipped with MCDB_TEST_TARGET=memcached.
 *
 *   build/tests/test_net_notify
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

TG_SUITE_NEEDS(1)

#define NKEYS 20000

static struct th_server srv;
static int notify_fd = -1;
static char *sock_dir;

static void
teardown(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
    if (notify_fd >= 0)
        close(notify_fd);
    th_rmrf(sock_dir);
    free(sock_dir);
}

TestSuite(notify, .fini = teardown, .timeout = 120);

/* Bind the "service manager's" socket and name it in NOTIFY_SOCKET, which
 * the mcdbd started next inherits. */
static void
listen_for_notifications(void)
{
    sock_dir = th_tmpdir();
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify", sock_dir);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(notify_fd >= 0);
    cr_assert_eq(bind(notify_fd, (struct sockaddr *)&a, sizeof(a)), 0,
                 "bind %s", a.sun_path);
    setenv("NOTIFY_SOCKET", a.sun_path, 1);
}

/* The next datagram (NUL-terminated in buf), or NULL after timeout_ms. */
static char *
next_notification(char *buf, size_t len, int timeout_ms)
{
    struct pollfd p = {.fd = notify_fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return NULL;
    ssize_t n = recv(notify_fd, buf, len - 1, 0);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

/* A line of msg is exactly line. */
static int
has_line(const char *msg, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = msg; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

/* A data directory that holds NKEYS keys, written by an mcdbd that has
 * been stopped since. Returns the directory (owned by srv). */
static const char *
prefilled_dir(void)
{
    cr_assert_eq(th_mcdbd_start(&srv, NULL, NULL), 0);
    int fd = tg_connect(srv.port);
    cr_assert(fd >= 0);
    char req[128];
    for (int i = 0; i < NKEYS; i++) {
        snprintf(req, sizeof(req), "set key%d 0 0 %zu noreply\r\nvalue%d\r\n",
                 i, strlen("value") + snprintf(NULL, 0, "%d", i), i);
        cr_assert_eq(th_sends(fd, req), 0);
    }
    tg_expect(fd, "mn\r\n", "MN\r\n");
    close(fd);
    cr_assert_eq(th_server_stop(&srv, SIGTERM), 0);
    return srv.dir;
}

/* Wait for READY=1; fails the test after 30 s or if mcdbd exits. Sets
 * *status_first when a STATUS= line came before it. */
static void
wait_ready(int *status_first)
{
    char buf[4096];
    *status_first = 0;
    for (int waited = 0; waited < 30000; waited += 100) {
        int st;
        cr_assert_neq(waitpid(srv.pid, &st, WNOHANG), srv.pid,
                      "mcdbd exited before READY=1 (log: %s)", srv.log);
        const char *m = next_notification(buf, sizeof(buf), 100);
        if (!m)
            continue;
        if (has_line(m, "READY=1"))
            return;
        if (strncmp(m, "STATUS=", 7) == 0)
            *status_first = 1;
    }
    cr_assert_fail("no READY=1 from mcdbd within 30 s");
}

Test(notify, ready_comes_only_after_recovery_and_once_the_port_answers)
{
    const char *dir = prefilled_dir();
    listen_for_notifications();
    cr_assert_eq(th_mcdbd_spawn(&srv, dir, NULL), 0);
    int status_first;
    wait_ready(&status_first);

    /* No retry: at READY=1 the first connection must be accepted and
     * served from the recovered log. */
    int fd = tg_connect(srv.port);
    cr_assert(fd >= 0, "READY=1 arrived but port %d refuses connections",
              srv.port);
    tg_expect(fd, "get key0\r\n", "VALUE key0 0 6\r\nvalue0\r\nEND\r\n");
    char req[64], want[128];
    snprintf(req, sizeof(req), "get key%d\r\n", NKEYS - 1);
    snprintf(want, sizeof(want), "VALUE key%d 0 10\r\nvalue%d\r\nEND\r\n",
             NKEYS - 1, NKEYS - 1);
    tg_expect(fd, req, want);
    close(fd);
    cr_expect(status_first, "no STATUS= line while recovering");
}

Test(notify, sigterm_sends_stopping_and_the_server_exits_0)
{
    listen_for_notifications();
    cr_assert_eq(th_mcdbd_spawn(&srv, NULL, NULL), 0);
    int status_first;
    wait_ready(&status_first);

    kill(srv.pid, SIGTERM);
    char buf[4096];
    int stopping = 0;
    for (int i = 0; i < 100 && !stopping; i++) {
        const char *m = next_notification(buf, sizeof(buf), 100);
        stopping = m && has_line(m, "STOPPING=1");
    }
    cr_expect(stopping, "no STOPPING=1 after SIGTERM");
    int st;
    cr_assert_eq(waitpid(srv.pid, &st, 0), srv.pid);
    srv.pid = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "mcdbd did not exit 0 after SIGTERM (wait status %#x)", st);
}

Test(notify, a_notify_socket_nobody_listens_on_does_not_stop_the_server)
{
    sock_dir = th_tmpdir();
    char path[600];
    snprintf(path, sizeof(path), "%s/nobody", sock_dir);
    setenv("NOTIFY_SOCKET", path, 1);
    cr_assert_eq(th_mcdbd_start(&srv, NULL, NULL), 0,
                 "mcdbd did not start with NOTIFY_SOCKET=%s", path);
    int fd = tg_connect(srv.port);
    cr_assert(fd >= 0);
    tg_expect(fd, "set k 0 0 1\r\nv\r\n", "STORED\r\n");
    close(fd);
    int st = th_server_stop(&srv, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "mcdbd did not exit 0 after SIGTERM (wait status %#x)", st);
}
