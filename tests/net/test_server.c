/*
 * mcdbd's own behaviour, over raw sockets: the event loop (pipelining,
 * split requests, backpressure, the kernel-feature fallbacks), the limits
 * (--max-item-size, --max-connections), the command line and the life
 * cycle (SIGTERM, restart, a second server on the same data directory).
 * The protocol in breadth is test_protocol.c's; this suite is the server's.
 *   ctest --test-dir build -R net/server --output-on-failure
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

static struct th_server srv;

static char *small_mnt; /* a tmpfs mounted by a test, if any */

static void
stop_server(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
    memset(&srv, 0, sizeof(srv));
    th_umount_tmpfs(&small_mnt);
}

TestSuite(server, .fini = stop_server, .timeout = 120);

static void
start(const char *const *extra)
{
    cr_assert_eq(th_mcdbd_start(&srv, NULL, extra), 0, "mcdbd did not start");
}

static int
conn(void)
{
    int fd = tg_connect(srv.port);
    cr_assert(fd >= 0, "cannot connect to mcdbd");
    return fd;
}

static const char *
mcdbd_path(void)
{
    return getenv("MCDBD") ? getenv("MCDBD") : MCDBD_PATH;
}

/*
 * Run mcdbd with args (after argv[0]) to completion: its exit status, and
 * what it wrote to stdout and stderr in *out (malloc'd). Kills it after 10 s.
 */
static int
run_mcdbd(const char *const *args, char **out)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        const char *argv[32] = {mcdbd_path()};
        for (int i = 0; args[i] && i < 30; i++)
            argv[i + 1] = args[i];
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    int st = 0;
    for (;;) {
        ssize_t n = read(pfd[0], buf + len, cap - len - 1);
        if (n > 0 && (len += (size_t)n) + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        if (waitpid(pid, &st, WNOHANG) == pid)
            break;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            cr_assert_fail("mcdbd did not exit within 10 s");
        }
        if (n <= 0)
            usleep(10000);
    }
    ssize_t n;
    while ((n = read(pfd[0], buf + len, cap - len - 1)) > 0)
        if ((len += (size_t)n) + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    close(pfd[0]);
    buf[len] = '\0';
    *out = buf;
    return st;
}

/* Read exactly n bytes from fd; cr_assert on EOF or timeout. */
static char *
recv_n(int fd, size_t n)
{
    char *buf = malloc(n + 1);
    size_t got = tg_recv_n(fd, buf, n);
    cr_assert_eq(got, n, "expected %zu bytes of reply, %zu arrived", n, got);
    buf[n] = '\0';
    return buf;
}

static char *
value_of(size_t len, char fill)
{
    char *v = malloc(len);
    memset(v, fill, len);
    return v;
}

/* "set key 0 0 len\r\n<len bytes>\r\n" and expect STORED. */
static void
set_value(int fd, const char *key, const char *v, size_t len)
{
    char hdr[300];
    int hl = snprintf(hdr, sizeof(hdr), "set %s 0 0 %zu\r\n", key, len);
    char *req = malloc((size_t)hl + len + 2);
    memcpy(req, hdr, (size_t)hl);
    memcpy(req + hl, v, len);
    memcpy(req + hl + len, "\r\n", 2);
    tg_expect_n(fd, req, (size_t)hl + len + 2, "STORED\r\n", 8);
    free(req);
}

/* "get key" answers exactly v. */
static void
expect_value(int fd, const char *key, const char *v, size_t len)
{
    char hdr[300];
    int hl = snprintf(hdr, sizeof(hdr), "VALUE %s 0 %zu\r\n", key, len);
    size_t wl = (size_t)hl + len + 7;
    char *want = malloc(wl);
    memcpy(want, hdr, (size_t)hl);
    memcpy(want + hl, v, len);
    memcpy(want + hl + len, "\r\nEND\r\n", 7);
    char req[300];
    snprintf(req, sizeof(req), "get %s\r\n", key);
    tg_expect_n(fd, req, strlen(req), want, wl);
    free(want);
}

/* ---- requests and replies ---- */

Test(server, a_set_then_get_returns_the_value_flags_and_cas)
{
    start(NULL);
    int fd = conn();
    tg_expect(fd, "set greeting 42 0 5\r\nhello\r\n", "STORED\r\n");
    tg_expect(fd, "get greeting\r\n",
              "VALUE greeting 42 5\r\nhello\r\nEND\r\n");
    th_sends(fd, "gets greeting\r\n");
    char *line = tg_recv_line(fd);
    unsigned long long cas = 0;
    cr_assert(line && sscanf(line, "VALUE greeting 42 5 %llu", &cas) == 1,
              "gets answered \"%s\"", line ? line : "");
    free(line);
    free(recv_n(fd, 12)); /* hello\r\nEND\r\n */
    char req[128];
    snprintf(req, sizeof(req), "cas greeting 1 0 2 %llu\r\nhi\r\n", cas);
    tg_expect(fd, req, "STORED\r\n");
    tg_expect(fd, req, "EXISTS\r\n");
    close(fd);
}

Test(server, noreply_writes_send_nothing_even_their_errors)
{
    start((const char *const[]){"-I", "1k", NULL});
    int fd = conn();
    char *big = value_of(2000, 'b');
    char req[2100];
    int n = snprintf(req, sizeof(req), "set big 0 0 2000 noreply\r\n");
    memcpy(req + n, big, 2000);
    memcpy(req + n + 2000, "\r\n", 2);
    cr_assert_eq(th_send(fd, req, (size_t)n + 2002), 0);
    cr_assert_eq(th_sends(fd, "set a 0 0 1 noreply\r\nx\r\n"
                              "incr a 1 noreply\r\n"       /* non-numeric */
                              "delete nothing noreply\r\n" /* not found */
                              "add a 0 0 1 noreply\r\ny\r\n"
                              "touch a 100 noreply\r\n"
                              "flush_all 1000 noreply\r\n"),
                 0);
    tg_expect_quiet(fd);
    tg_expect(fd, "get a\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n");
    free(big);
    close(fd);
}

Test(server, pipelined_requests_in_one_send_are_answered_in_order)
{
    start(NULL);
    int fd = conn();
    size_t cap = 1 << 20, len = 0, wlen = 0;
    char *req = malloc(cap), *want = malloc(cap);
    for (int i = 0; i < 200; i++) {
        char v[32];
        int vl = sprintf(v, "%0*d", 1 + i % 9, i);
        len += (size_t)sprintf(req + len, "set key%d %d 0 %d\r\n%s\r\n", i, i,
                               vl, v);
        wlen += (size_t)sprintf(want + wlen, "STORED\r\n");
        len += (size_t)sprintf(req + len, "get key%d nokey key%d\r\n", i, i);
        wlen += (size_t)sprintf(want + wlen,
                                "VALUE key%d %d %d\r\n%s\r\n"
                                "VALUE key%d %d %d\r\n%s\r\nEND\r\n",
                                i, i, vl, v, i, i, vl, v);
        len += (size_t)sprintf(req + len, "incr n%d 1\r\ndelete key%d\r\n",
                               i % 3, i);
        wlen += (size_t)sprintf(want + wlen, "NOT_FOUND\r\nDELETED\r\n");
    }
    tg_expect_n(fd, req, len, want, wlen);
    free(req);
    free(want);
    close(fd);
}

Test(server, a_request_sent_one_byte_at_a_time_is_answered)
{
    start(NULL);
    int fd = conn();
    const char req[] = "set split 3 0 10\r\n0123456789\r\nget split\r\n"
                       "incr nope 1\r\n";
    for (size_t i = 0; i < sizeof(req) - 1; i++) {
        cr_assert_eq(th_send(fd, req + i, 1), 0);
        usleep(1000);
    }
    tg_expect_n(fd, "", 0,
                "STORED\r\nVALUE split 3 10\r\n0123456789\r\nEND\r\n"
                "NOT_FOUND\r\n",
                strlen("STORED\r\nVALUE split 3 10\r\n0123456789\r\nEND\r\n"
                       "NOT_FOUND\r\n"));
    close(fd);
}

Test(server, a_too_large_value_is_refused_swallowed_and_the_old_one_deleted)
{
    start((const char *const[]){"--max-item-size", "1k", NULL});
    int fd = conn();
    tg_expect(fd, "set k 0 0 3\r\nold\r\n", "STORED\r\n");
    char *big = value_of(5000, 'z');
    char req[5100];
    int n = snprintf(req, sizeof(req), "set k 0 0 5000\r\n");
    memcpy(req + n, big, 5000);
    memcpy(req + n + 5000, "\r\n", 2);
    tg_expect_n(fd, req, (size_t)n + 5002,
                "SERVER_ERROR object too large for cache\r\n", 41);
    /* The data block was swallowed: the next request is framed. */
    tg_expect(fd, "get k\r\n", "END\r\n");
    /* A value of exactly the limit is fine. */
    char *max = value_of(1024, 'm');
    set_value(fd, "k", max, 1024);
    expect_value(fd, "k", max, 1024);
    free(max);
    free(big);
    close(fd);
}

/* ---- connections ---- */

Test(server, max_connections_refuses_one_more_with_memcacheds_message)
{
    start((const char *const[]){"-c", "2", NULL});
    int a = conn();
    /* th_mcdbd_start's probe connection must be accepted and closed first:
     * two accepted (it and a), one open. */
    long long curr = -1, total = -1;
    for (int i = 0; i < 250 && (curr != 1 || total != 2); i++) {
        curr = tg_stat(a, NULL, "curr_connections");
        total = tg_stat(a, NULL, "total_connections");
        if (curr != 1 || total != 2)
            usleep(20000);
    }
    cr_assert(curr == 1 && total == 2, "curr_connections %lld, total %lld",
              curr, total);
    int b = conn();
    tg_expect(b, "get nokey\r\n", "END\r\n");
    int c = conn();
    char *got = NULL;
    cr_assert(tg_wait_closed(c, 5000, &got, NULL),
              "the third connection was not closed");
    cr_assert_str_eq(got ? got : "", "ERROR Too many open connections\r\n");
    free(got);
    close(c);
    cr_assert_eq(tg_stat(a, NULL, "rejected_connections"), 1);
    close(b);
    close(a);
}

Test(server, listens_on_every_listen_address_ipv6_included)
{
    start((const char *const[]){"-l", "::1", NULL});
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                             .sin6_port = htons((uint16_t)srv.port),
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0,
                 "cannot connect to [::1]:%d", srv.port);
    tg_expect(fd, "set six 0 0 1\r\n6\r\n", "STORED\r\n");
    close(fd);
    fd = conn(); /* and still on 127.0.0.1 */
    tg_expect(fd, "get six\r\n", "VALUE six 0 1\r\n6\r\nEND\r\n");
    close(fd);
}

Test(server, verbose_logs_connection_events_with_the_peer_address)
{
    start((const char *const[]){"-v", NULL});
    int fd = conn();
    tg_expect(fd, "get nokey\r\n", "END\r\n");
    close(fd);
    usleep(200 * 1000);
    FILE *f = fopen(srv.log, "r");
    cr_assert(f);
    char line[1024];
    int feats = 0, opens = 0, closes = 0;
    while (fgets(line, sizeof(line), f)) {
        feats += strstr(line, "io_uring: multishot accept") != NULL;
        opens += strstr(line, "connection from 127.0.0.1:") &&
                 !strstr(line, "closed");
        closes += strstr(line, "closed") != NULL;
    }
    fclose(f);
    cr_assert(feats == 1 && opens >= 1 && closes >= 1,
              "features %d, opens %d, closes %d in %s", feats, opens, closes,
              srv.log);
}

/* ---- memory ---- */

struct pipeline {
    int fd;
    int count;
    const char *req;
};

static void *
send_pipeline(void *arg)
{
    struct pipeline *p = arg;
    for (int i = 0; i < p->count; i++)
        if (th_sends(p->fd, p->req) != 0)
            break;
    return NULL;
}

Test(server, a_client_that_does_not_read_gets_backpressure_not_memory)
{
    start(NULL);
    int fd = conn();
    size_t vl = 256 * 1024;
    char *v = value_of(vl, 'p');
    set_value(fd, "p", v, vl);
    long rss0 = tg_rss_kb(srv.pid);
    /* 400 gets = 100 MB of replies that the client does not read yet. */
    struct pipeline p = {.fd = fd, .count = 400, .req = "get p\r\n"};
    pthread_t t;
    pthread_create(&t, NULL, send_pipeline, &p);
    usleep(1500 * 1000);
    long rss1 = tg_rss_kb(srv.pid);
    cr_assert(rss1 - rss0 < 48 * 1024,
              "RSS grew from %ld kB to %ld kB while the client did not read",
              rss0, rss1);
    /* Another client is served meanwhile. */
    int other = conn();
    tg_expect(other, "get nokey\r\n", "END\r\n");
    close(other);
    /* Everything arrives once the client reads. */
    size_t hl = strlen("VALUE p 0 262144\r\n");
    for (int i = 0; i < p.count; i++) {
        char *r = recv_n(fd, hl + vl + 7);
        cr_assert(memcmp(r, "VALUE p 0 262144\r\n", hl) == 0 &&
                      memcmp(r + hl + vl, "\r\nEND\r\n", 7) == 0,
                  "reply %d is malformed", i);
        free(r);
    }
    pthread_join(t, NULL);
    free(v);
    close(fd);
}

Test(server, a_get_of_more_than_the_output_limit_pauses_and_completes)
{
    start(NULL);
    int fd = conn();
    size_t vl = 1000 * 1000;
    char req[256] = "get";
    for (int i = 0; i < 10; i++) {
        char key[16], *v = value_of(vl, (char)('a' + i));
        snprintf(key, sizeof(key), "big%d", i);
        set_value(fd, key, v, vl);
        free(v);
        strcat(req, " ");
        strcat(req, key);
    }
    strcat(req, "\r\n");
    cr_assert_eq(th_sends(fd, req), 0);
    for (int i = 0; i < 10; i++) {
        char hdr[64];
        int hl = snprintf(hdr, sizeof(hdr), "VALUE big%d 0 %zu\r\n", i, vl);
        char *r = recv_n(fd, (size_t)hl + vl + 2);
        cr_assert(memcmp(r, hdr, (size_t)hl) == 0, "value %d: header", i);
        for (size_t j = 0; j < vl; j++)
            if (r[hl + j] != 'a' + i)
                cr_assert_fail("value %d: wrong byte at %zu", i, j);
        free(r);
    }
    char *end = recv_n(fd, 5);
    cr_assert_str_eq(end, "END\r\n");
    free(end);
    close(fd);
}

/* A pipelined read is scanned ahead for keys to prefetch (conn.c): data
 * that looks like commands, lying byte counts and cut lines change
 * nothing in the replies. */
Test(server,
     pipelined_requests_with_data_that_looks_like_commands_are_answered_exactly)
{
    start(NULL);
    int fd = conn();
    const char *req = "set a 0 0 22\r\nget b\r\nset c 0 0 99999\r\n"
                      "set b 0 0 1\r\nB\r\n"
                      "ms c 2\r\nCC\r\n"
                      "get a b c\r\n"
                      "set d 0 0 notanumber\r\n"
                      "gets\r\n"
                      "mg b v\r\n";
    const char *want = "STORED\r\nSTORED\r\nHD\r\n"
                       "VALUE a 0 22\r\nget b\r\nset c 0 0 99999\r\n"
                       "VALUE b 0 1\r\nB\r\nVALUE c 0 2\r\nCC\r\nEND\r\n"
                       "CLIENT_ERROR bad command line format\r\n"
                       "ERROR\r\n"
                       "VA 1\r\nB\r\n";
    tg_expect(fd, req, want);
    close(fd);
}

/* ---- the value cache (--value-cache) ---- */

Test(server, a_get_after_an_overwrite_answers_the_new_value_not_a_cached_one)
{
    const char *args[] = {"--threads", "1", NULL};
    start(args);
    int fd = conn();
    set_value(fd, "k", "first", 5);
    expect_value(fd, "k", "first", 5); /* read from the log */
    cr_assert_eq(tg_stat(fd, NULL, "value_cache_bytes"), 0,
                 "a value read once is not cached");
    expect_value(fd, "k", "first", 5); /* read again: now cached */
    expect_value(fd, "k", "first", 5); /* from the cache */
    cr_assert_geq(tg_stat(fd, NULL, "value_cache_hits"), 1);
    cr_assert_gt(tg_stat(fd, NULL, "value_cache_bytes"), 0);
    set_value(fd, "k", "second", 6);
    for (int i = 0; i < 3; i++)
        expect_value(fd, "k", "second", 6);
    cr_assert_eq(th_sends(fd, "mg k v f c s\r\n"), 0);
    char *line = tg_recv_line(fd);
    cr_assert(line && strncmp(line, "VA 6 f0 c", 9) == 0, "mg: %s",
              line ? line : "");
    free(line);
    free(recv_n(fd, 8)); /* second\r\n */
    tg_expect(fd, "delete k\r\n", "DELETED\r\n");
    tg_expect(fd, "get k\r\n", "END\r\n");
    close(fd);
}

Test(server, value_cache_0_reads_every_value_from_the_log)
{
    const char *args[] = {"--value-cache", "0", NULL};
    start(args);
    int fd = conn();
    set_value(fd, "k", "value", 5);
    for (int i = 0; i < 3; i++)
        expect_value(fd, "k", "value", 5);
    cr_assert_eq(tg_stat(fd, NULL, "value_cache_hits"), 0);
    cr_assert_eq(tg_stat(fd, NULL, "value_cache_bytes"), 0);
    close(fd);
}

/* Large values are sent straight from the cache entry: pipelined gets of
 * them while other large values evict it must still send the right bytes. */
Test(server, large_values_sent_from_the_cache_survive_their_eviction)
{
    const char *args[] = {"--threads", "1", "--value-cache", "2m", NULL};
    start(args);
    int fd = conn(), other = conn();
    size_t vl = 200 * 1000;
    enum { KEYS = 12, ROUNDS = 4 };
    for (int i = 0; i < KEYS; i++) {
        char key[16], *v = value_of(vl, (char)('a' + i));
        snprintf(key, sizeof(key), "big%d", i);
        set_value(fd, key, v, vl);
        free(v);
    }
    char req[512] = "get";
    for (int r = 0; r < ROUNDS; r++)
        for (int i = 0; i < KEYS; i++) {
            char key[16];
            snprintf(key, sizeof(key), " big%d", i);
            strcat(req, key);
        }
    strcat(req, "\r\n");
    /* twice: the second answers from the cache, evicting as it goes */
    for (int pass = 0; pass < 2; pass++) {
        cr_assert_eq(th_sends(fd, req), 0);
        /* meanwhile another connection overwrites and reads the keys */
        for (int i = 0; i < KEYS; i += 3) {
            char key[16], *v = value_of(vl, (char)('A' + i));
            snprintf(key, sizeof(key), "other%d", i);
            set_value(other, key, v, vl);
            expect_value(other, key, v, vl);
            free(v);
        }
        for (int n = 0; n < KEYS * ROUNDS; n++) {
            int i = n % KEYS;
            char hdr[64];
            int hl = snprintf(hdr, sizeof(hdr), "VALUE big%d 0 %zu\r\n", i, vl);
            char *rep = recv_n(fd, (size_t)hl + vl + 2);
            cr_assert(memcmp(rep, hdr, (size_t)hl) == 0, "reply %d: header", n);
            for (size_t j = 0; j < vl; j++)
                if (rep[hl + j] != 'a' + i)
                    cr_assert_fail("pass %d reply %d: wrong byte at %zu", pass,
                                   n, j);
            free(rep);
        }
        char *end = recv_n(fd, 5);
        cr_assert_str_eq(end, "END\r\n");
        free(end);
    }
    cr_assert_gt(tg_stat(fd, NULL, "value_cache_hits"), 0);
    cr_assert_gt(tg_stat(fd, NULL, "value_cache_evictions"), 0);
    close(fd);
    close(other);
}

/* ---- io_uring feature fallbacks ---- */

Test(server, every_io_uring_fallback_still_serves)
{
    setenv("MCDB_NET_FALLBACK", "accept,recv,bufring,taskrun", 1);
    start((const char *const[]){"-v", NULL});
    unsetenv("MCDB_NET_FALLBACK");
    int fd = conn();
    char *v = value_of(300 * 1000, 'f');
    set_value(fd, "f", v, 300 * 1000);
    expect_value(fd, "f", v, 300 * 1000);
    const char req[] = "set s 0 0 2\r\nab\r\nget s\r\n";
    for (size_t i = 0; i < sizeof(req) - 1; i++)
        cr_assert_eq(th_send(fd, req + i, 1), 0);
    const char want[] = "STORED\r\nVALUE s 0 2\r\nab\r\nEND\r\n";
    tg_expect_n(fd, "", 0, want, sizeof(want) - 1);
    /* Backpressure without provided buffers: conn->in must not move while
     * a recv into it is in flight. */
    struct pipeline p = {.fd = fd, .count = 100, .req = "get f\r\n"};
    pthread_t t;
    pthread_create(&t, NULL, send_pipeline, &p);
    usleep(300 * 1000);
    for (int i = 0; i < p.count; i++)
        free(recv_n(fd, strlen("VALUE f 0 300000\r\n") + 300000 + 7));
    pthread_join(t, NULL);
    free(v);
    close(fd);
    FILE *f = fopen(srv.log, "r");
    char line[1024];
    int said = 0;
    while (f && fgets(line, sizeof(line), f))
        said += strstr(line, "multishot accept no") &&
                strstr(line, "provided buffer ring no") &&
                strstr(line, "multishot recv no") != NULL;
    if (f)
        fclose(f);
    cr_assert_eq(said, 1, "-v did not report the fallbacks (%s)", srv.log);
}

/* ---- life cycle ---- */

Test(server, sigterm_exits_0_and_a_restart_on_the_same_dir_keeps_the_data)
{
    start(NULL);
    int fd = conn();
    char *big = value_of(700 * 1000, 'B');
    set_value(fd, "big", big, 700 * 1000);
    for (int i = 0; i < 100; i++) {
        char key[16], val[16];
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        set_value(fd, key, val, strlen(val));
    }
    tg_expect(fd, "delete k7\r\n", "DELETED\r\n");
    close(fd);
    int st = th_server_stop(&srv, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "mcdbd exited with status 0x%x after SIGTERM", st);
    start(NULL); /* same srv.dir */
    fd = conn();
    /* Now the values come from the segment files (IORING_OP_READ). */
    expect_value(fd, "big", big, 700 * 1000);
    for (int i = 0; i < 100; i++) {
        char key[16], val[16];
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        if (i == 7)
            tg_expect(fd, "get k7\r\n", "END\r\n");
        else
            expect_value(fd, key, val, strlen(val));
    }
    free(big);
    close(fd);
}

Test(server, a_second_server_on_the_same_dir_fails_naming_the_first)
{
    start(NULL);
    char port[16], *out = NULL;
    snprintf(port, sizeof(port), "%d", th_free_port());
    int st = run_mcdbd(
        (const char *const[]){"-p", port, "--data-dir", srv.dir, NULL}, &out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1,
              "second mcdbd: status 0x%x, output:\n%s", st, out);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)srv.pid);
    cr_assert(strstr(out, pid) != NULL, "the message does not name pid %s:\n%s",
              pid, out);
    free(out);
    cr_assert(tg_answers_version(srv.port), "the first one stopped serving");
}

Test(server, a_bad_command_line_exits_2_with_the_reason_and_a_pointer_to_help)
{
    static const struct {
        const char *argv[3];
        const char *names; /* what the reason must name */
    } bad[] = {
        {{"--no-such-flag", NULL}, "--no-such-flag"},
        {{"-p", "not-a-port", NULL}, "'not-a-port'"},
        {{"--fsync", "sometimes", NULL}, "--fsync 'sometimes'"},
        {{"-I", "12q", NULL}, "--max-item-size '12q'"},
        {{"--segment-size", "1k", NULL},
         "--segment-size: must be at least 64k"},
        {{"-p", NULL}, "-p: missing value"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char *out = NULL;
        int st = run_mcdbd(bad[i].argv, &out);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s: status 0x%x",
                  bad[i].names, st);
        /* two lines, so that the reason is among the last a log shows */
        cr_assert(
            strncmp(out, "mcdbd: ", 7) == 0 && strstr(out, bad[i].names) &&
                strcmp(strchr(out, '\n') + 1, "Try 'mcdbd --help'.\n") == 0,
            "%s: not the reason, naming it, then a pointer to --help:\n%s",
            bad[i].names, out);
        free(out);
    }
    char *out = NULL;
    int st = run_mcdbd((const char *const[]){"--help", NULL}, &out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
              strstr(out, "--max-connections") && strstr(out, "--fsync"));
    free(out);
    st = run_mcdbd((const char *const[]){"-V", NULL}, &out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
              strncmp(out, "mcdbd ", 6) == 0);
    free(out);
}

Test(server, stats_report_memcacheds_fields_settings_and_the_log)
{
    start((const char *const[]){"-t", "2", "-c", "100", NULL});
    int fd = conn();
    tg_expect(fd, "set a 0 0 1\r\n1\r\nget a b\r\nincr a 5\r\n",
              "STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\n6\r\n");
    cr_assert_eq(tg_stat(fd, NULL, "cmd_get"), 2);
    cr_assert_eq(tg_stat(fd, NULL, "get_hits"), 1);
    cr_assert_eq(tg_stat(fd, NULL, "get_misses"), 1);
    cr_assert_eq(tg_stat(fd, NULL, "incr_hits"), 1);
    cr_assert_eq(tg_stat(fd, NULL, "curr_items"), 1);
    cr_assert_eq(tg_stat(fd, NULL, "threads"), 2);
    cr_assert_eq(tg_stat(fd, NULL, "max_connections"), 100);
    cr_assert_eq(tg_stat(fd, NULL, "pid"), srv.pid);
    cr_assert_eq(tg_stat(fd, "settings", "maxconns"), 100);
    cr_assert_eq(tg_stat(fd, "settings", "tcpport"), srv.port);
    cr_assert_eq(tg_stat(fd, "settings", "item_size_max"), 1 << 20);
    cr_assert(tg_stat(fd, "log", "fsyncs") >= 1);
    cr_assert_eq(tg_stat(fd, "log", "error"), 0);
    tg_expect(fd, "stats reset\r\n", "RESET\r\n");
    cr_assert_eq(tg_stat(fd, NULL, "cmd_get"), 0);
    cr_assert_eq(tg_stat(fd, NULL, "curr_items"), 1);
    tg_expect(fd, "stats nonsense\r\n", "ERROR\r\n");
    close(fd);
}

/* ---- a failing disk ---- */

Test(server, a_full_disk_makes_writes_server_errors_while_reads_keep_working)
{
    small_mnt = th_mount_tmpfs("2m"); /* unmounted by stop_server */
    if (!small_mnt)
        cr_skip_test("cannot mount a small tmpfs (needs root)");
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/data", small_mnt);
    srv.dir = strdup(dir);
    start((const char *const[]){"--segment-size", "256k", "-I", "100k", NULL});
    int fd = conn();
    size_t vl = 60000;
    char *v = value_of(vl, 'd'), hdr[64];
    char *req = malloc(sizeof(hdr) + vl + 2);
    set_value(fd, "first", v, vl);
    char *line = NULL;
    /* 6 MB of live data (distinct keys: compaction cannot make room) into
     * 2 MB */
    for (int i = 0; i < 100; i++) {
        int hl = snprintf(hdr, sizeof(hdr), "set k%d 0 0 %zu\r\n", i, vl);
        memcpy(req, hdr, (size_t)hl);
        memcpy(req + hl, v, vl);
        memcpy(req + hl + vl, "\r\n", 2);
        cr_assert_eq(th_send(fd, req, (size_t)hl + vl + 2), 0);
        free(line);
        line = tg_recv_line(fd);
        cr_assert(line, "no reply to set %d", i);
        if (strcmp(line, "STORED") != 0)
            break;
    }
    cr_assert(strncmp(line, "SERVER_ERROR ", 13) == 0 &&
                  strstr(line, "No space left on device"),
              "a write to a full disk answered \"%s\"", line);
    free(line);
    /* Read-only from now on, but it still serves what it has. */
    th_sends(fd, "set other 0 0 1\r\nx\r\n");
    line = tg_recv_line(fd);
    cr_assert(line && strncmp(line, "SERVER_ERROR ", 13) == 0, "\"%s\"",
              line ? line : "");
    free(line);
    expect_value(fd, "first", v, vl);
    cr_assert_eq(tg_stat(fd, "log", "error"), 1);
    /* memcached's name for a storage command refused for want of room:
     * "set other" (the one that hit the full disk failed at its fsync,
     * after it was taken: its SERVER_ERROR says so, the count does not) */
    long long nomem = tg_stat(fd, NULL, "store_no_memory");
    cr_assert(nomem >= 1, "store_no_memory %lld", nomem);
    close(fd);
    int st = th_server_stop(&srv, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
    free(req);
    free(v);
}
