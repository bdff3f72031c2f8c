/*
 * mcdb-check, the Nagios-style monitoring check: the built binary is run
 * against a real mcdbd primary and replica, a port nothing listens on,
 * memcached (which answers "ERROR" to "stats repl"), and a fake server in a
 * thread of the test that answers "stats repl" with canned replies (lag,
 * full copies, odd text, replies cut short). Each test asserts the exit
 * status (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and the words of the one
 * status line. Everything connects to 127.0.0.1 only.
 *   build/test_tools_check --verbose
 */
#include "helpers/server.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    if (access(tt_tool("mcdb-check"), X_OK) != 0) {
        fprintf(stderr, "SKIP: %s is not built\n", tt_tool("mcdb-check"));
        exit(77);
    }
}

static struct th_server primary, replica, other;

static void
teardown(void)
{
    th_server_cleanup(&replica);
    th_server_cleanup(&primary);
    th_server_cleanup(&other);
}

TestSuite(check, .fini = teardown, .timeout = 30);

/* ---- helpers ---- */

#define OK 0
#define WARNING 1
#define CRITICAL 2
#define UNKNOWN 3

/* "127.0.0.1:port" (four buffers in turn) */
static const char *
addr(int port)
{
    static char buf[4][32];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof(buf[0]), "127.0.0.1:%d", port);
    return p;
}

/* Run mcdb-check with args (NULL-terminated); *out gets what it printed. */
static int
run_check(char **out, const char *const *args)
{
    const char *argv[16] = {tt_tool("mcdb-check")};
    size_t n = 1;
    while (args[n - 1] && n < 15) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    int st = tt_run(out, argv);
    cr_log_info("$ mcdb-check %s ... -> %d\n%s", args[0] ? args[0] : "", st,
                *out);
    return st;
}
#define check(out, ...) run_check((out), (const char *[]){__VA_ARGS__, NULL})

#define assert_has(out, s)                                                     \
    cr_assert(strstr((out), (s)) != NULL, "expected \"%s\" in:\n%s", (s), (out))
#define assert_hasnt(out, s)                                                   \
    cr_assert(strstr((out), (s)) == NULL, "did not expect \"%s\" in:\n%s",     \
              (s), (out))

/* One status line: it starts with prefix, ends with the only newline, is at
 * most 300 characters long and has at most one '|' (the perf data's). */
static void
assert_line(const char *out, const char *prefix)
{
    size_t len = strlen(out);
    cr_assert(strncmp(out, prefix, strlen(prefix)) == 0,
              "expected a line starting \"%s\", got:\n%s", prefix, out);
    cr_assert(len > 0 && out[len - 1] == '\n' &&
                  strchr(out, '\n') == out + len - 1,
              "not exactly one line:\n%s", out);
    cr_assert(len - 1 <= 300, "a line of %zu characters:\n%s", len - 1, out);
    const char *bar = strchr(out, '|');
    cr_assert(!bar || !strchr(bar + 1, '|'), "more than one '|':\n%s", out);
}

/* Run the check and assert its status and the start of its line. */
#define expect(want, prefix, out, ...)                                         \
    do {                                                                       \
        int st_ = check((out), __VA_ARGS__);                                   \
        cr_assert_eq(st_, (want), "exit %d, want %d:\n%s", st_, (want),        \
                     *(out));                                                  \
        assert_line(*(out), (prefix));                                         \
    } while (0)

static uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The reply of the server on port to "stats repl" (malloc'd; NULL on
 * error). */
static char *
stats_repl(int port)
{
    int fd = th_connect(port);
    if (fd < 0)
        return NULL;
    char *r = th_ask(fd, "stats repl\r\n", "END\r\n");
    close(fd);
    return r;
}

/* Wait (10 s at most) until the replica says link up with no lag. */
static void
wait_caught_up(int port)
{
    char *r = NULL;
    for (uint64_t end = now_ms() + 10000; now_ms() < end; usleep(50000)) {
        free(r);
        r = stats_repl(port);
        if (r && strstr(r, "STAT link up\r\n") &&
            strstr(r, "STAT lag_bytes 0\r\n"))
            break;
    }
    cr_assert(
        r && strstr(r, "STAT link up\r\n") && strstr(r, "STAT lag_bytes 0\r\n"),
        "the replica did not catch up within 10 s:\n%s", r ? r : "(no reply)");
    free(r);
}

/* A primary with one key, and a replica of it that has caught up. */
static void
start_pair(void)
{
    cr_assert_eq(th_mcdbd_start(&primary, NULL, NULL), 0);
    int fd = th_connect(primary.port);
    cr_assert(fd >= 0);
    char *r = th_ask(fd, "set k 0 0 1\r\nv\r\n", "\r\n");
    cr_assert(r && strcmp(r, "STORED\r\n") == 0, "set: %s", r ? r : "");
    free(r);
    close(fd);
    const char *extra[] = {"--replica-of", addr(primary.port), NULL};
    cr_assert_eq(th_mcdbd_start(&replica, NULL, extra), 0);
    wait_caught_up(replica.port);
}

/* ---- a fake server: one connection, a canned reply ---- */

struct fake {
    int lfd, port;
    const char *reply; /* sent after the request line */
    bool hold;         /* then keep the connection open until the peer
                          closes it (10 s at most) */
    char request[64];  /* the request line that came */
    pthread_t thread;
};

static void *
fake_main(void *arg)
{
    struct fake *f = arg;
    struct pollfd p = {.fd = f->lfd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1)
        return NULL;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t len = 0;
    while (len < sizeof(f->request) - 1 && !strstr(f->request, "\r\n")) {
        p = (struct pollfd){.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) != 1)
            break;
        ssize_t n = recv(fd, f->request + len, sizeof(f->request) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        f->request[len] = '\0';
    }
    th_sends(fd, f->reply);
    if (f->hold) {
        char c;
        p = (struct pollfd){.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) == 1)
            (void)recv(fd, &c, 1, 0);
    }
    close(fd);
    return NULL;
}

static void
fake_start(struct fake *f, const char *reply, bool hold)
{
    *f = (struct fake){.reply = reply, .hold = hold};
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    cr_assert(f->lfd >= 0);
    cr_assert_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(f->lfd, 4), 0);
    cr_assert_eq(getsockname(f->lfd, (struct sockaddr *)&a, &alen), 0);
    f->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

/* Wait for the fake; the check must have asked exactly "stats repl". */
static void
fake_join(struct fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->lfd);
    cr_assert_str_eq(f->request, "stats repl\r\n");
}

/* A replica's "stats repl", as mcdbd sends it, with these figures. */
static const char *
replica_reply(const char *link, const char *error, unsigned lag_ms,
              unsigned long long lag_bytes, const char *extra)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "STAT role replica\r\n"
             "STAT log_id da958367a1cacfc45ec1c6f915f93459\r\n"
             "STAT epoch 1\r\n"
             "STAT epoch_id ad8ddf6c54febbf5\r\n"
             "STAT epoch_start_offset 0\r\n"
             "STAT log_start 0\r\n"
             "STAT durable_offset 134\r\n"
             "STAT secret no\r\n"
             "STAT primary 127.0.0.1:22001\r\n"
             "STAT link %s\r\n"
             "STAT link_last_byte_seconds 0.255\r\n"
             "STAT link_error %s\r\n"
             "STAT applied_offset 134\r\n"
             "STAT primary_durable_offset 134\r\n"
             "STAT lag_bytes %llu\r\n"
             "STAT lag_ms %u\r\n"
             "STAT connects 1\r\n"
             "STAT full_resyncs 1\r\n"
             "STAT partial_resyncs 0\r\n"
             "%s"
             "STAT serve_stale yes\r\n"
             "STAT diverged_dir none\r\n"
             "END\r\n",
             link, error, lag_bytes, lag_ms, extra ? extra : "");
    return buf;
}

/* Run the check with args against a fake that sends reply. */
static int
against_fake(char **out, const char *reply, bool hold, const char *const *args)
{
    struct fake f;
    fake_start(&f, reply, hold);
    const char *a[16];
    size_t n = 0;
    while (args[n] && n < 14) {
        a[n] = args[n];
        n++;
    }
    a[n++] = addr(f.port);
    a[n] = NULL;
    int st = run_check(out, a);
    fake_join(&f);
    return st;
}
/* against(&out, reply, "--max-lag", "5"), or against(&out, reply, NO_ARGS) */
#define against(out, reply, ...)                                               \
    against_fake((out), (reply), false, (const char *[]){__VA_ARGS__, NULL})
#define NO_ARGS NULL

/* ---- against mcdbd ---- */

Test(check, a_healthy_primary_is_ok_with_its_replica_count_and_epoch)
{
    cr_assert_eq(th_mcdbd_start(&primary, NULL, NULL), 0);
    char *out;
    expect(OK, "MCDB OK - primary, 0 replicas connected (epoch 1)", &out,
           addr(primary.port));
    assert_has(out, " | replicas=0;;\n");
    free(out);
    expect(OK, "MCDB OK - primary, 0 replicas connected", &out, "--role",
           "primary", addr(primary.port));
    free(out);
}

Test(check, a_caught_up_replica_is_ok_and_its_primary_counts_it)
{
    start_pair();
    char *out, want[128];
    snprintf(want, sizeof(want),
             "MCDB OK - replica of %s, link up, lag 0 ms (0 bytes) | "
             "lag_ms=0;500;2000 lag_bytes=0;;1048576\n",
             addr(primary.port));
    expect(OK, want, &out, "--role", "replica", "--warn-lag", "500",
           "--max-lag", "2000", "--max-lag-bytes", "1m", addr(replica.port));
    free(out);

    /* the primary counts a replica once it streams: poll */
    int st = -1;
    out = NULL;
    for (uint64_t end = now_ms() + 10000; now_ms() < end; usleep(100000)) {
        free(out);
        st = check(&out, "--role", "primary", "--min-replicas", "1",
                   addr(primary.port));
        if (st == OK)
            break;
    }
    cr_assert_eq(st, OK, "the primary never counted its replica:\n%s", out);
    assert_line(out, "MCDB OK - primary, 1 replica connected (epoch 1)");
    assert_has(out, "| replicas=1;;1:\n");
    free(out);
}

Test(check, role_replica_against_a_primary_is_critical_naming_both_roles)
{
    cr_assert_eq(th_mcdbd_start(&primary, NULL, NULL), 0);
    char *out;
    expect(CRITICAL,
           "MCDB CRITICAL - role is primary, expected replica; "
           "primary, 0 replicas connected",
           &out, "--role", "replica", addr(primary.port));
    free(out);
}

Test(check, min_replicas_1_with_none_connected_is_critical)
{
    cr_assert_eq(th_mcdbd_start(&primary, NULL, NULL), 0);
    char *out;
    expect(CRITICAL, "MCDB CRITICAL - primary, 0 replicas connected", &out,
           "--min-replicas", "1", addr(primary.port));
    assert_has(out, "below --min-replicas 1");
    assert_has(out, "| replicas=0;;1:\n");
    free(out);
}

Test(check, a_replica_whose_primary_stopped_is_critical_with_its_link_error)
{
    start_pair();
    th_server_stop(&primary, SIGTERM);
    char *out = NULL;
    int st = -1;
    for (uint64_t end = now_ms() + 10000; now_ms() < end; usleep(100000)) {
        free(out);
        st = check(&out, "--role", "replica", addr(replica.port));
        if (st != OK)
            break;
    }
    cr_assert_eq(st, CRITICAL, "no CRITICAL within 10 s:\n%s", out);
    char want[128];
    snprintf(want, sizeof(want), "MCDB CRITICAL - replica of %s, link ",
             addr(primary.port));
    assert_line(out, want);
    /* down or connecting, with the reason in parentheses */
    cr_assert(strstr(out, ", link down (") ||
                  strstr(out, ", link connecting ("),
              "expected the link down or connecting, with its error:\n%s", out);
    assert_hasnt(out, "link up");
    assert_has(out, "| lag_ms=");
    free(out);
}

Test(check, a_port_nothing_listens_on_is_unknown_naming_host_and_port)
{
    char *out, want[128];
    const char *target = addr(th_free_port());
    snprintf(want, sizeof(want),
             "MCDB UNKNOWN - %s: cannot connect: Connection refused\n", target);
    expect(UNKNOWN, want, &out, target);
    free(out);
}

Test(check, memcached_answering_error_to_stats_repl_is_unknown)
{
    if (!th_installed("memcached")) {
        fprintf(stderr, "SKIP: memcached is not installed: cannot check "
                        "that a memcached is UNKNOWN\n");
        cr_skip_test("memcached is not installed");
    }
    const char *argv[] = {"memcached", "-p", "{port}", "-l", "127.0.0.1", "-U",
                          "0",
                          /* memcached refuses to run as root without -u */
                          geteuid() == 0 ? "-u" : NULL, "root", NULL};
    cr_assert_eq(th_server_start(&other, argv), 0);
    char *out, want[128];
    snprintf(want, sizeof(want), "MCDB UNKNOWN - %s: not an mcdb server",
             addr(other.port));
    expect(UNKNOWN, want, &out, "--role", "primary", addr(other.port));
    assert_has(out, "\"ERROR\"");
    free(out);
}

/* ---- against a fake: the rules one by one ---- */

Test(check, a_replica_copying_in_full_is_a_warning_saying_how_far_it_is)
{
    char *out;
    cr_assert_eq(against(&out,
                         replica_reply("copying", "none", 0, 4900,
                                       "STAT copy_done_offset 100\r\n"
                                       "STAT copy_end_offset 5000\r\n"),
                         "--role", "replica"),
                 WARNING, "%s", out);
    assert_line(out, "MCDB WARNING - replica of 127.0.0.1:22001, link copying "
                     "(copied up to offset 100 of 5000), lag 0 ms (4900 "
                     "bytes) | lag_ms=0;; lag_bytes=4900;;\n");
    free(out);
}

Test(check, a_link_in_its_handshake_or_connecting_is_critical)
{
    const char *links[] = {"handshake", "connecting", "down"};
    for (size_t i = 0; i < 3; i++) {
        char *out, want[128];
        cr_assert_eq(against(&out,
                             replica_reply(links[i],
                                           "handshake with "
                                           "127.0.0.1:22001: connection "
                                           "closed",
                                           0, 0, NULL),
                             NO_ARGS),
                     CRITICAL, "%s", out);
        snprintf(want, sizeof(want),
                 "MCDB CRITICAL - replica of 127.0.0.1:22001, link %s "
                 "(handshake with 127.0.0.1:22001: connection closed), lag 0 "
                 "ms (0 bytes)",
                 links[i]);
        assert_line(out, want);
        free(out);
    }
}

Test(check, lag_over_warn_lag_is_a_warning_and_over_max_lag_critical)
{
    char *out;
    cr_assert_eq(against(&out, replica_reply("up", "none", 500, 10, NULL),
                         "--warn-lag", "500", "--max-lag", "2000"),
                 OK, "%s", out);
    assert_has(out, "| lag_ms=500;500;2000 lag_bytes=10;;\n");
    free(out);

    cr_assert_eq(against(&out, replica_reply("up", "none", 501, 10, NULL),
                         "--warn-lag", "500", "--max-lag", "2000"),
                 WARNING, "%s", out);
    assert_line(out, "MCDB WARNING - replica of 127.0.0.1:22001, link up, lag "
                     "501 ms (10 bytes), lag_ms over --warn-lag 500 | "
                     "lag_ms=501;500;2000 lag_bytes=10;;\n");
    free(out);

    cr_assert_eq(against(&out, replica_reply("up", "none", 2500, 10, NULL),
                         "--warn-lag", "500", "--max-lag", "2000"),
                 CRITICAL, "%s", out);
    assert_line(out, "MCDB CRITICAL - replica of 127.0.0.1:22001, link up, "
                     "lag 2500 ms (10 bytes), lag_ms over --max-lag 2000 |");
    free(out);
}

Test(check, lag_bytes_over_max_lag_bytes_is_critical_and_suffixes_count_1024)
{
    char *out;
    cr_assert_eq(against(&out, replica_reply("up", "none", 0, 1048576, NULL),
                         "--max-lag-bytes", "1m"),
                 OK, "%s", out);
    free(out);
    cr_assert_eq(against(&out, replica_reply("up", "none", 0, 1048577, NULL),
                         "--max-lag-bytes", "1024k"),
                 CRITICAL, "%s", out);
    assert_line(out, "MCDB CRITICAL - replica of 127.0.0.1:22001, link up, "
                     "lag 0 ms (1048577 bytes), lag_bytes over "
                     "--max-lag-bytes 1048576 | lag_ms=0;; "
                     "lag_bytes=1048577;;1048576\n");
    free(out);
}

Test(check,
     lag_and_replica_rules_do_not_judge_a_primary_nor_min_replicas_a_replica)
{
    static const char primary_reply[] = "STAT role primary\r\n"
                                        "STAT epoch 3\r\n"
                                        "STAT connected_replicas 2\r\n"
                                        "STAT replica0_lag_ms 99999\r\n"
                                        "END\r\n";
    char *out;
    cr_assert_eq(against(&out, primary_reply, "--max-lag", "1", "--warn-lag",
                         "0", "--max-lag-bytes", "0"),
                 OK, "%s", out);
    assert_line(out, "MCDB OK - primary, 2 replicas connected (epoch 3) | "
                     "replicas=2;;\n");
    free(out);
    cr_assert_eq(against(&out, replica_reply("up", "none", 0, 0, NULL),
                         "--min-replicas", "5"),
                 OK, "%s", out);
    free(out);
}

Test(check, server_text_with_a_bar_or_control_bytes_stays_on_one_line)
{
    char err[400];
    snprintf(err, sizeof(err), "cannot connect | to\t%0300d", 0);
    char *out;
    cr_assert_eq(against(&out, replica_reply("down", err, 0, 0, NULL), NO_ARGS),
                 CRITICAL, "%s", out);
    assert_line(out, "MCDB CRITICAL - replica of 127.0.0.1:22001, link down "
                     "(cannot connect / to?000");
    assert_has(out, "...");
    assert_has(out, "| lag_ms=0;; lag_bytes=0;;\n");
    free(out);

    /* every text at its longest: the line is cut, its perf data kept */
    char reply[2048], name[200];
    snprintf(name, sizeof(name), "%0199d", 7);
    snprintf(reply, sizeof(reply),
             "STAT role replica\r\nSTAT primary %s\r\nSTAT link %s\r\n"
             "STAT link_error %s\r\nSTAT lag_ms 18446744073709551615\r\n"
             "STAT lag_bytes 18446744073709551615\r\nEND\r\n",
             name, name, err);
    cr_assert_eq(against(&out, reply, "--role", "primary", "--warn-lag", "1",
                         "--max-lag", "2", "--max-lag-bytes", "3"),
                 CRITICAL, "%s", out);
    assert_line(out, "MCDB CRITICAL - role is replica, expected primary; "
                     "replica of 0000");
    assert_has(out, "... | lag_ms=18446744073709551615;1;2 "
                    "lag_bytes=18446744073709551615;;3\n");
    free(out);
}

Test(check, a_reply_without_end_is_unknown_once_the_timeout_passes)
{
    struct fake f;
    fake_start(&f, "STAT role replica\r\nSTAT link up\r\n", true);
    char *out, want[128];
    uint64_t t0 = now_ms();
    int st = check(&out, "--timeout", "0.5", addr(f.port));
    uint64_t took = now_ms() - t0;
    fake_join(&f);
    cr_assert_eq(st, UNKNOWN, "%s", out);
    snprintf(want, sizeof(want),
             "MCDB UNKNOWN - %s: no END to stats repl within 0.5 s",
             addr(f.port));
    assert_line(out, want);
    cr_assert(took < 3000, "took %llu ms for a 0.5 s timeout",
              (unsigned long long)took);
    free(out);
}

Test(check, a_connection_closed_before_end_is_unknown)
{
    char *out;
    cr_assert_eq(against(&out, "STAT role replica\r\nSTAT li", NO_ARGS),
                 UNKNOWN, "%s", out);
    assert_has(out, ": the connection closed before END to stats repl");
    assert_line(out, "MCDB UNKNOWN - 127.0.0.1:");
    free(out);
}

Test(check, a_reply_without_a_role_or_a_figure_is_unknown)
{
    char *out;
    cr_assert_eq(against(&out, "STAT pid 1\r\nEND\r\n", NO_ARGS), UNKNOWN, "%s",
                 out);
    assert_has(out, "not an mcdb server with replication (no role");
    free(out);
    cr_assert_eq(against(&out, "STAT role primary\r\nEND\r\n", NO_ARGS),
                 UNKNOWN, "%s", out);
    assert_has(out, ": no connected_replicas in stats repl\n");
    free(out);
    cr_assert_eq(against(&out,
                         "STAT role replica\r\nSTAT link up\r\nSTAT lag_ms "
                         "x\r\nSTAT lag_bytes 0\r\nEND\r\n",
                         NO_ARGS),
                 UNKNOWN, "%s", out);
    assert_has(out, ": lag_ms is \"x\" in stats repl, not a number\n");
    free(out);
    cr_assert_eq(against(&out, "STAT role leader\r\nEND\r\n", NO_ARGS), UNKNOWN,
                 "%s", out);
    assert_has(out, "unknown role \"leader\"");
    free(out);
    cr_assert_eq(against(&out,
                         "STAT role primary\r\nSERVER_ERROR out of "
                         "memory\r\n",
                         NO_ARGS),
                 UNKNOWN, "%s", out);
    assert_has(out, ": stats repl: \"SERVER_ERROR out of memory\" after 1 "
                    "STAT line, before END\n");
    free(out);
}

Test(check, an_address_in_brackets_is_host_and_port)
{
    struct fake f;
    fake_start(&f, "STAT role primary\r\nSTAT connected_replicas 0\r\nEND\r\n",
               false);
    char target[64], *out;
    snprintf(target, sizeof(target), "[127.0.0.1]:%d", f.port);
    int st = check(&out, target);
    fake_join(&f);
    cr_assert_eq(st, OK, "%s", out);
    assert_line(out,
                "MCDB OK - primary, 0 replicas connected | replicas=0;;\n");
    free(out);
}

/* ---- usage ---- */

Test(check, usage_errors_exit_3_with_a_message_and_no_status_line)
{
    const char *bad[][6] = {
        {NULL},
        {"--bogus", "127.0.0.1:1", NULL},
        {"127.0.0.1:1", "127.0.0.1:2", NULL},
        {"127.0.0.1", NULL},
        {"127.0.0.1:0", NULL},
        {"127.0.0.1:65536", NULL},
        {"::1:11211", NULL},
        {"[::1]11211", NULL},
        {":11211", NULL},
        {"--role", "master", "127.0.0.1:1", NULL},
        {"--max-lag", "soon", "127.0.0.1:1", NULL},
        {"--max-lag", "-1", "127.0.0.1:1", NULL},
        {"--max-lag-bytes", "5x", "127.0.0.1:1", NULL},
        {"--min-replicas", "one", "127.0.0.1:1", NULL},
        {"--timeout", "0", "127.0.0.1:1", NULL},
        {"--timeout", NULL},
        {"--warn-lag", "900", "--max-lag", "500", "127.0.0.1:1", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out;
        int st = run_check(&out, bad[i]);
        cr_assert_eq(st, UNKNOWN, "case %zu (%s): exit %d:\n%s", i,
                     bad[i][0] ? bad[i][0] : "no arguments", st, out);
        cr_assert(strncmp(out, "mcdb-check: ", 12) == 0,
                  "case %zu: no message:\n%s", i, out);
        assert_has(out, "Try 'mcdb-check --help'.");
        assert_hasnt(out, "MCDB ");
        free(out);
    }
}

Test(check, help_exits_0_and_explains_every_option_and_status)
{
    static const char *const words[] = {
        "Usage: mcdb-check [options] HOST:PORT",
        "--role=primary|replica",
        "--max-lag=MS",
        "--warn-lag=MS",
        "--max-lag-bytes=BYTES",
        "--min-replicas=N",
        "--timeout=SECONDS",
        "(default: 5)",
        "--help",
        "--version",
        "[::1]:11211",
        "0 OK",
        "1 WARNING",
        "2 CRITICAL",
        "3 UNKNOWN",
    };
    const char *forms[] = {"--help", "-h"};
    for (size_t f = 0; f < 2; f++) {
        char *out;
        cr_assert_eq(check(&out, forms[f]), 0);
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
            assert_has(out, words[i]);
        free(out);
    }
    char *out;
    cr_assert_eq(check(&out, "-V"), 0);
    cr_assert(strncmp(out, "mcdb-check ", 11) == 0 && out[11] >= '0' &&
                  out[11] <= '9' && strchr(out, '\n') == out + strlen(out) - 1,
              "not \"mcdb-check VERSION\": %s", out);
    free(out);
}
