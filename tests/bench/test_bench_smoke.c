/*
 * Smoke test of bench/mcdb-bench against servers it can start: it runs, its
 * counts add up and its JSON parses. A few seconds in all.
 *   cmake --build build --target mcdb-bench test_bench_bench_smoke
 *   ctest --test-dir build -R bench/bench_smoke --output-on-failure
 * A test whose server (memcached, redis-server) is not installed is skipped.
 * --protocol meta runs against memcached, against mcdbd (its own Test, so a
 * mcdbd without meta fails there alone), and against a fake server in this
 * program that sends its replies a byte at a time; --protocol binary
 * against memcached and mcdbd. mcdb-nothing (bench/mcdb-nothing.c, the
 * server that stores nothing) is loaded by mcdb-bench and spoken to in raw
 * bytes cut at every place.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers/server.h"

#define BENCH MCDB_BUILD_DIR "/bench/mcdb-bench"
#define NOTHING MCDB_BUILD_DIR "/bench/mcdb-nothing"

struct bench_run {
    int status; /* exit code, or 128 + signal */
    char out[1 << 16];
    char err[1 << 14];
};

static bool
installed(const char *prog)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "command -v %s >/dev/null 2>&1 || test -x /usr/sbin/%s", prog,
             prog);
    return system(cmd) == 0;
}

/* Read both pipes to EOF into r->out and r->err. */
static void
drain(int out_fd, int err_fd, struct bench_run *r)
{
    struct pollfd p[2] = {{.fd = out_fd, .events = POLLIN},
                          {.fd = err_fd, .events = POLLIN}};
    char *buf[2] = {r->out, r->err};
    size_t cap[2] = {sizeof(r->out) - 1, sizeof(r->err) - 1}, len[2] = {0, 0};
    int open_fds = 2;
    while (open_fds) {
        if (poll(p, 2, 30000) <= 0)
            break;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            char scratch[4096];
            char *dst = len[i] < cap[i] ? buf[i] + len[i] : scratch;
            size_t room = len[i] < cap[i] ? cap[i] - len[i] : sizeof(scratch);
            ssize_t n = read(p[i].fd, dst, room);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            } else if (dst != scratch) {
                len[i] += (size_t)n;
            }
        }
    }
    r->out[len[0]] = '\0';
    r->err[len[1]] = '\0';
}

/* Run mcdb-bench with args (NULL-terminated) and capture what it prints. */
static struct bench_run *
bench(const char *const *args)
{
    cr_assert(access(BENCH, X_OK) == 0, "%s is not built", BENCH);
    struct bench_run *r = calloc(1, sizeof(*r));
    const char *argv[64] = {BENCH};
    size_t n = 1;
    for (; args[n - 1] && n < 63; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;

    int out[2], err[2];
    cr_assert(pipe(out) == 0 && pipe(err) == 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        execv(BENCH, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    drain(out[0], err[0], r);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (r->err[0])
        fprintf(stderr, "mcdb-bench stderr:\n%s", r->err);
    return r;
}

/* The number after "field": (its first occurrence; top-level fields come
 * first in mcdb-bench's output). */
static double
json_num(const char *json, const char *field)
{
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":", field);
    const char *p = strstr(json, key);
    cr_assert(p, "field %s missing from %s", field, json);
    char *end;
    double v = strtod(p + strlen(key), &end);
    cr_assert(end != p + strlen(key), "field %s is not a number", field);
    return v;
}

/* One object: braces balance outside strings, nothing after it. */
static void
assert_one_json_object(const char *json)
{
    int depth = 0;
    bool in_str = false;
    const char *p = json;
    cr_assert_eq(*p, '{', "not a JSON object: %s", json);
    for (; *p; p++) {
        if (in_str) {
            if (*p == '\\' && p[1])
                p++;
            else if (*p == '"')
                in_str = false;
            continue;
        }
        if (*p == '"')
            in_str = true;
        else if (*p == '{')
            depth++;
        else if (*p == '}' && --depth == 0)
            break;
    }
    cr_assert(*p == '}' && strcmp(p + 1, "\n") == 0,
              "unbalanced or trailing text: %s", json);
}

/* Every field the JSON promises, and the totals that must add up, with
 * error replies allowed (they may answer sets or gets). */
static void
assert_totals(const char *json)
{
    assert_one_json_object(json);
    static const char *const fields[] = {
        "ops",    "ops_per_sec", "duration_s", "hits",   "misses",
        "errors", "sets",        "gets",       "p50",    "p90",
        "p99",    "p999",        "max",        "config", "first_error"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char key[32];
        snprintf(key, sizeof(key), "\"%s\":", fields[i]);
        cr_assert(strstr(json, key), "no %s in %s", key, json);
    }
    cr_assert(strstr(json, "\"latency_us\":{"), "no latency_us object");
    double ops = json_num(json, "ops"), sets = json_num(json, "sets");
    double gets = json_num(json, "gets"), hits = json_num(json, "hits");
    double misses = json_num(json, "misses"), errors = json_num(json, "errors");
    cr_assert_gt(ops, 0);
    cr_assert_eq(ops, sets + gets, "ops %.0f != sets %.0f + gets %.0f", ops,
                 sets, gets);
    cr_assert(hits + misses <= gets && gets <= hits + misses + errors,
              "hits %.0f + misses %.0f (+ errors %.0f) != gets %.0f", hits,
              misses, errors, gets);
    cr_assert_gt(json_num(json, "ops_per_sec"), 0);
    double p50 = json_num(json, "p50"), p99 = json_num(json, "p99");
    cr_assert(p50 > 0 && p50 <= p99 && p99 <= json_num(json, "max"),
              "percentiles out of order: %s", json);
}

/* The same, and no error replies: every get was a hit or a miss. */
static void
assert_counts_add_up(const char *json)
{
    assert_totals(json);
    cr_assert_eq(json_num(json, "errors"), 0, "error replies: %s", json);
    cr_assert(strstr(json, "\"first_error\":null"), "%s", json);
    cr_assert_eq(json_num(json, "hits") + json_num(json, "misses"),
                 json_num(json, "gets"));
}

static void
start_memcached(struct th_server *s)
{
    if (!installed("memcached"))
        cr_skip_test("SKIP: memcached is not installed (apt-get install "
                     "memcached)");
    /* memcached refuses to run as root unless told which user to be */
    const char *argv[] = {"memcached", "-p", "{port}", "-l",   "127.0.0.1",
                          "-U",        "0",  "-u",     "root", NULL};
    if (geteuid() != 0)
        argv[7] = NULL;
    cr_assert_eq(th_server_start(s, argv), 0, "memcached did not start");
}

static void
start_redis(struct th_server *s)
{
    if (!installed("redis-server"))
        cr_skip_test("SKIP: redis-server is not installed (apt-get install "
                     "redis-server)");
    const char *argv[] = {"redis-server", "--port", "{port}", "--bind",
                          "127.0.0.1",    "--save", "",       "--appendonly",
                          "no",           NULL};
    cr_assert_eq(th_server_start(s, argv), 0, "redis-server did not start");
}

static char server_arg[64];

static const char *
server_of(const struct th_server *s)
{
    snprintf(server_arg, sizeof(server_arg), "127.0.0.1:%d", s->port);
    return server_arg;
}

/* Preload, then a 1:1 run: counts add up and, the keys preloaded, every get
 * hits. Values up to 3000 bytes take both the copied and the iovec path. */
static void
preloaded_run(struct th_server *s, const char *protocol)
{
    const char *args[] = {"--server",   server_of(s), "--protocol",    protocol,
                          "--preload",  "--json",     "--ratio",       "1:1",
                          "--duration", "1",          "--warmup",      "0.2",
                          "--keys",     "2000",       "--value-size",  "1-3000",
                          "--threads",  "2",          "--connections", "6",
                          "--pipeline", "8",          "--key-dist",    "zipf",
                          NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 0, "exit %d", r->status);
    assert_counts_add_up(r->out);
    cr_assert_eq(json_num(r->out, "misses"), 0, "a preloaded key missed");
    cr_assert_gt(json_num(r->out, "sets"), 0);
    cr_assert_gt(json_num(r->out, "gets"), 0);
    const char *pre = strstr(r->out, "\"preload\":{");
    cr_assert(pre, "no preload object: %s", r->out);
    cr_assert_eq(json_num(pre, "keys"), 2000);
    cr_assert_eq(json_num(pre, "errors"), 0);
    free(r);
}

Test(bench_smoke, memcached_preloaded_one_to_one_run_adds_up_and_every_get_hits,
     .timeout = 60)
{
    struct th_server s = {0};
    start_memcached(&s);
    preloaded_run(&s, "memcache");
    th_server_cleanup(&s);
}

Test(bench_smoke, redis_preloaded_one_to_one_run_adds_up_and_every_get_hits,
     .timeout = 60)
{
    struct th_server s = {0};
    start_redis(&s);
    preloaded_run(&s, "redis");
    th_server_cleanup(&s);
}

Test(bench_smoke, requests_mode_stops_after_exactly_that_many, .timeout = 60)
{
    struct th_server s = {0};
    start_memcached(&s);
    const char *args[] = {
        "--server",   server_of(&s), "--json", "--requests",    "5003",
        "--ratio",    "1:3",         "--keys", "100",           "--warmup",
        "0.1",        "--threads",   "2",      "--connections", "3",
        "--pipeline", "4",           NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 0, "exit %d", r->status);
    assert_counts_add_up(r->out);
    cr_assert_eq(json_num(r->out, "ops"), 5003);
    free(r);
    th_server_cleanup(&s);
}

Test(bench_smoke, preload_alone_sets_every_key_once_and_exits, .timeout = 60)
{
    struct th_server s = {0};
    start_memcached(&s);
    const char *args[] = {"--server",      server_of(&s), "--json",
                          "--preload",     "--keys",      "777",
                          "--connections", "5",           NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 0, "exit %d", r->status);
    assert_counts_add_up(r->out);
    cr_assert_eq(json_num(r->out, "sets"), 777);
    cr_assert_eq(json_num(r->out, "gets"), 0);
    free(r);
    th_server_cleanup(&s);
}

Test(bench_smoke, refuses_a_server_that_is_not_on_loopback)
{
    const char *args[] = {"--server", "192.0.2.1:11211", "--json", NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 2, "exit %d", r->status);
    cr_assert(strstr(r->err, "loopback"), "no reason given: %s", r->err);
    cr_assert_eq(r->out[0], '\0');
    free(r);

    const char *named[] = {"--server", "example.com:11211", NULL};
    r = bench(named);
    cr_assert_eq(r->status, 2, "exit %d", r->status);
    free(r);
}

Test(bench_smoke, a_server_that_is_not_there_is_a_clear_error)
{
    int port = th_free_port();
    char server[32];
    snprintf(server, sizeof(server), "127.0.0.1:%d", port);
    const char *args[] = {"--server", server, "--duration", "1", NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 1, "exit %d", r->status);
    cr_assert(strstr(r->err, "cannot connect"), "stderr: %s", r->err);
    free(r);
}

/* ---- --protocol meta ---- */

/* STAT name's value in a `stats` reply. */
static long
stat_of(int port, const char *name)
{
    int fd = th_connect(port);
    cr_assert(fd >= 0, "cannot connect to port %d", port);
    char *reply = th_ask(fd, "stats\r\n", "END\r\n");
    close(fd);
    cr_assert(reply, "no reply to stats");
    char key[64];
    snprintf(key, sizeof(key), "STAT %s ", name);
    const char *p = strstr(reply, key);
    cr_assert(p, "no %s in stats", name);
    long v = strtol(p + strlen(key), NULL, 10);
    free(reply);
    return v;
}

/*
 * Preload 2000 keys with ms, then exactly 5000 mg of them over 6
 * connections, pipeline 16, returning cas and TTL too: 5000 hits, no miss,
 * no error. When the server counts gets (memcached's get_hits and
 * get_misses), it counted the same hits, and one miss: mcdb-bench's probe
 * of key 0, before the preload.
 */
static void
meta_gets_of_preloaded_keys_all_hit(struct th_server *s, bool server_counts)
{
    long hits0 = 0, misses0 = 0;
    if (server_counts) {
        hits0 = stat_of(s->port, "get_hits");
        misses0 = stat_of(s->port, "get_misses");
    }
    const char *args[] = {"--server",
                          server_of(s),
                          "--protocol",
                          "meta",
                          "--meta-flags",
                          "v f c t",
                          "--preload",
                          "--keys",
                          "2000",
                          "--ratio",
                          "0:1",
                          "--requests",
                          "5000",
                          "--warmup",
                          "0",
                          "--threads",
                          "2",
                          "--connections",
                          "6",
                          "--pipeline",
                          "16",
                          "--json",
                          NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 0, "exit %d: %s", r->status, r->err);
    assert_counts_add_up(r->out);
    cr_assert_eq(json_num(r->out, "gets"), 5000);
    cr_assert_eq(json_num(r->out, "hits"), 5000, "%s", r->out);
    const char *pre = strstr(r->out, "\"preload\":{");
    cr_assert(pre, "no preload object: %s", r->out);
    cr_assert_eq(json_num(pre, "keys"), 2000);
    cr_assert_eq(json_num(pre, "errors"), 0);
    if (server_counts) {
        long hits = stat_of(s->port, "get_hits") - hits0;
        long misses = stat_of(s->port, "get_misses") - misses0;
        cr_assert(hits == 5000 && misses == 1,
                  "the server counted %ld hits and %ld misses", hits, misses);
    }
    free(r);
}

Test(bench_smoke, memcached_meta_gets_of_preloaded_keys_all_hit, .timeout = 60)
{
    struct th_server s = {0};
    start_memcached(&s);
    meta_gets_of_preloaded_keys_all_hit(&s, true);
    th_server_cleanup(&s);
}

Test(bench_smoke,
     memcached_meta_preloaded_one_to_one_run_adds_up_and_every_get_hits,
     .timeout = 60)
{
    struct th_server s = {0};
    start_memcached(&s);
    preloaded_run(&s, "meta");
    th_server_cleanup(&s);
}

/* Fails, naming the reply, until mcdbd speaks meta (mg, ms). */
Test(bench_smoke, mcdbd_meta_gets_of_preloaded_keys_all_hit_and_runs_add_up,
     .timeout = 60)
{
    struct th_server s = {0};
    cr_assert_eq(th_mcdbd_start(&s, NULL, NULL), 0, "mcdbd did not start");
    meta_gets_of_preloaded_keys_all_hit(&s, false);
    preloaded_run(&s, "meta");
    th_server_cleanup(&s);
}

/* ---- --protocol binary ---- */

Test(bench_smoke,
     memcached_binary_preloaded_one_to_one_run_adds_up_and_every_get_hits,
     .timeout = 60)
{
    struct th_server s = {0};
    start_memcached(&s);
    preloaded_run(&s, "binary");
    th_server_cleanup(&s);
}

/* Binary GETs of preloaded keys: mcdb-bench's hits are the server's. */
static void
binary_gets_of_preloaded_keys_all_hit(struct th_server *s)
{
    const char *pre[] = {"--server",   server_of(s), "--protocol", "binary",
                         "--preload",  "--keys",     "2000",       "--json",
                         "--pipeline", "16",         NULL};
    struct bench_run *r = bench(pre);
    cr_assert_eq(r->status, 0, "preload: exit %d: %s", r->status, r->err);
    cr_assert_eq(json_num(r->out, "errors"), 0, "%s", r->out);
    free(r);
    long hits0 = stat_of(s->port, "get_hits");
    long misses0 = stat_of(s->port, "get_misses");
    const char *args[] = {"--server",   server_of(s), "--protocol",    "binary",
                          "--keys",     "2000",       "--ratio",       "0:1",
                          "--requests", "5000",       "--warmup",      "0",
                          "--threads",  "2",          "--connections", "6",
                          "--pipeline", "16",         "--json",        NULL};
    r = bench(args);
    cr_assert_eq(r->status, 0, "exit %d: %s", r->status, r->err);
    assert_counts_add_up(r->out);
    cr_assert_eq(json_num(r->out, "gets"), 5000);
    cr_assert_eq(json_num(r->out, "hits"), 5000, "%s", r->out);
    long hits = stat_of(s->port, "get_hits") - hits0;
    long misses = stat_of(s->port, "get_misses") - misses0;
    cr_assert(hits == 5000 && misses == 0,
              "the server counted %ld hits and %ld misses", hits, misses);
    free(r);
}

Test(bench_smoke, memcached_binary_gets_of_preloaded_keys_all_hit,
     .timeout = 60)
{
    struct th_server s = {0};
    start_memcached(&s);
    binary_gets_of_preloaded_keys_all_hit(&s);
    th_server_cleanup(&s);
}

/* Fails, naming what mcdbd answered, until mcdbd speaks binary. */
Test(bench_smoke, mcdbd_binary_gets_of_preloaded_keys_all_hit_and_runs_add_up,
     .timeout = 60)
{
    struct th_server s = {0};
    cr_assert_eq(th_mcdbd_start(&s, NULL, NULL), 0, "mcdbd did not start");
    binary_gets_of_preloaded_keys_all_hit(&s);
    preloaded_run(&s, "binary");
    th_server_cleanup(&s);
}

/* memcached -B ascii reads binary bytes as the start of a text line that
 * never ends: mcdb-bench's probe waits its 10 s, then says why. */
Test(bench_smoke, binary_against_a_server_without_it_is_a_clear_error,
     .timeout = 60)
{
    if (!installed("memcached"))
        cr_skip_test("SKIP: memcached is not installed (apt-get install "
                     "memcached)");
    struct th_server s = {0};
    const char *argv[] = {"memcached", "-p", "{port}", "-l", "127.0.0.1", "-U",
                          "0",         "-B", "ascii",  "-u", "root",      NULL};
    if (geteuid() != 0)
        argv[9] = NULL;
    cr_assert_eq(th_server_start(&s, argv), 0, "memcached did not start");
    const char *args[] = {"--server",   server_of(&s), "--protocol", "binary",
                          "--requests", "10",          NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 1, "exit %d", r->status);
    cr_assert(strstr(r->err, "no reply to a binary VERSION within 10 s"), "%s",
              r->err);
    free(r);
    th_server_cleanup(&s);
}

Test(bench_smoke, meta_flags_are_checked_strictly)
{
    static const char *const bad[][2] = {{"v q", "q is not allowed"},
                                         {"vf", "'vf' is not an mg flag"},
                                         {"v v", "given twice"},
                                         {"v T30", "'T30' is not allowed"},
                                         {"v O1", "'O1' is not allowed"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[] = {"--protocol", "meta",       "--meta-flags",
                              bad[i][0],    "--requests", "1",
                              NULL};
        struct bench_run *r = bench(args);
        cr_assert_eq(r->status, 2, "--meta-flags '%s': exit %d", bad[i][0],
                     r->status);
        cr_assert(strstr(r->err, bad[i][1]), "--meta-flags '%s': %s", bad[i][0],
                  r->err);
        free(r);
    }
    const char *args[] = {"--meta-flags", "v", "--requests", "1", NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 2, "exit %d", r->status);
    cr_assert(strstr(r->err, "is for --protocol meta"), "%s", r->err);
    free(r);
}

/*
 * A fake meta server, for what real servers do not do on demand. It
 * answers ms with HD (every 11th with NS) and mg with VA and the value
 * (every 7th with SERVER_ERROR), or EN for a key never set, and sends every
 * reply a byte at a time with pauses, so that mcdb-bench's reads end at
 * every kind of place. Values are cut from "\r\nEN\r\nVA 9 HD\r\n", so a
 * parser that looked for lines inside them would go wrong. With no_meta it
 * answers ERROR to every line, as a server without meta does.
 */
#define FAKE_KEYS 64
#define FAKE_VALUE_MAX 300

struct fake {
    int lfd, port;
    bool no_meta;
    atomic_int vlen[FAKE_KEYS]; /* -1: never set */
    atomic_long ms_seen, mg_seen, hits, misses, errors;
};

struct fake_conn {
    struct fake *f;
    int fd;
};

static void
fake_send(int fd, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (send(fd, s + i, 1, MSG_NOSIGNAL) != 1)
            return;
        if (i % 3 == 0)
            nanosleep(&(struct timespec){0, 20000}, NULL);
    }
}

static void
fake_reply(struct fake *f, FILE *in, int fd, const char *line)
{
    static const char pattern[] = "\r\nEN\r\nVA 9 HD\r\n";
    char out[FAKE_VALUE_MAX + 64], data[FAKE_VALUE_MAX + 2];
    unsigned k;
    int len, n;
    if (f->no_meta) {
        fake_send(fd, "ERROR\r\n", 7);
    } else if (sscanf(line, "ms key:%u %d", &k, &len) == 2 && k < FAKE_KEYS &&
               len >= 0 && len <= FAKE_VALUE_MAX) {
        if (fread(data, 1, (size_t)len + 2, in) != (size_t)len + 2)
            return;
        if ((atomic_fetch_add(&f->ms_seen, 1) + 1) % 11 == 0) {
            atomic_fetch_add(&f->errors, 1);
            fake_send(fd, "NS\r\n", 4);
            return;
        }
        atomic_store(&f->vlen[k], len);
        fake_send(fd, "HD\r\n", 4);
    } else if (sscanf(line, "mg key:%u", &k) == 1 && k < FAKE_KEYS) {
        int v = atomic_load(&f->vlen[k]);
        if ((atomic_fetch_add(&f->mg_seen, 1) + 1) % 7 == 0) {
            atomic_fetch_add(&f->errors, 1);
            fake_send(fd, "SERVER_ERROR fake failure\r\n", 27);
        } else if (v < 0) {
            atomic_fetch_add(&f->misses, 1);
            fake_send(fd, "EN\r\n", 4);
        } else {
            atomic_fetch_add(&f->hits, 1);
            n = snprintf(out, sizeof(out), "VA %d f0 t-1\r\n", v);
            for (int i = 0; i < v; i++)
                out[n++] = pattern[i % (sizeof(pattern) - 1)];
            memcpy(out + n, "\r\n", 2);
            fake_send(fd, out, (size_t)n + 2);
        }
    } else {
        fake_send(fd, "CLIENT_ERROR what is this\r\n", 27);
    }
}

static void *
fake_conn_main(void *arg)
{
    struct fake_conn *c = arg;
    FILE *in = fdopen(c->fd, "r");
    char line[512];
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    while (in && fgets(line, sizeof(line), in))
        fake_reply(c->f, in, c->fd, line);
    if (in)
        fclose(in);
    free(c);
    return NULL;
}

static void *
fake_accept_main(void *arg)
{
    struct fake *f = arg;
    for (;;) {
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        struct fake_conn *c = malloc(sizeof(*c));
        *c = (struct fake_conn){f, fd};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, fake_conn_main, c), 0);
        pthread_detach(t);
    }
}

/* Listen on a free loopback port; the threads go when the test does. */
static void
fake_start(struct fake *f, bool no_meta)
{
    f->no_meta = no_meta;
    for (int i = 0; i < FAKE_KEYS; i++)
        atomic_init(&f->vlen[i], -1);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    cr_assert(f->lfd >= 0 &&
              bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              listen(f->lfd, 64) == 0 &&
              getsockname(f->lfd, (struct sockaddr *)&a, &alen) == 0);
    f->port = ntohs(a.sin_port);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fake_accept_main, f), 0);
    pthread_detach(t);
}

Test(bench_smoke,
     meta_replies_cut_at_every_byte_are_counted_as_the_server_sent_them,
     .timeout = 60)
{
    static struct fake f;
    fake_start(&f, false);
    char server[32];
    snprintf(server, sizeof(server), "127.0.0.1:%d", f.port);
    const char *args[] = {"--server",     server,  "--protocol",    "meta",
                          "--keys",       "64",    "--ratio",       "1:2",
                          "--value-size", "1-300", "--requests",    "600",
                          "--warmup",     "0",     "--connections", "3",
                          "--pipeline",   "5",     "--json",        NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 0, "exit %d: %s", r->status, r->err);
    assert_totals(r->out);
    cr_assert_eq(json_num(r->out, "ops"), 600);
    /* every request was answered, and counted as it was answered; the
     * server saw one mg more, the probe of key:0 (never set: a miss) */
    cr_assert_eq(json_num(r->out, "sets"), atomic_load(&f.ms_seen));
    cr_assert_eq(json_num(r->out, "gets") + 1, atomic_load(&f.mg_seen));
    cr_assert_eq(json_num(r->out, "hits"), atomic_load(&f.hits));
    cr_assert_eq(json_num(r->out, "misses") + 1, atomic_load(&f.misses));
    cr_assert_eq(json_num(r->out, "errors"), atomic_load(&f.errors));
    cr_assert_gt(json_num(r->out, "hits"), 0);
    cr_assert_gt(json_num(r->out, "errors"), 0);
    cr_assert(strstr(r->out, "\"first_error\":\"'SERVER_ERROR fake failure' "
                             "to mg\"") ||
                  strstr(r->out, "\"first_error\":\"'NS' to ms\""),
              "%s", r->out);
    cr_assert(strstr(r->err, "error replies; the first: '"), "%s", r->err);
    free(r);
}

Test(bench_smoke, meta_against_a_server_without_meta_is_a_clear_error,
     .timeout = 60)
{
    static struct fake f;
    fake_start(&f, true);
    char server[32];
    snprintf(server, sizeof(server), "127.0.0.1:%d", f.port);
    const char *args[] = {"--server",   server, "--protocol", "meta",
                          "--requests", "10",   NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 1, "exit %d", r->status);
    cr_assert(strstr(r->err, "does not speak memcached's meta protocol: it "
                             "answered 'ERROR' to 'mg key:0 v f'"),
              "%s", r->err);
    free(r);
}

/* ---- mcdb-nothing, the server that stores nothing ---- */

static void
start_nothing(struct th_server *s, const char *value_size)
{
    cr_assert(access(NOTHING, X_OK) == 0, "%s is not built", NOTHING);
    const char *argv[] = {NOTHING,     "--port",       "{port}",   "--listen",
                          "127.0.0.1", "--value-size", value_size, NULL};
    cr_assert_eq(th_server_start(s, argv), 0, "mcdb-nothing did not start");
}

/* Sets are all STORED and gets all hit; its cmd_get and get_hits are the
 * gets mcdb-bench counted (plus nothing: it has no probe in text). */
Test(bench_smoke, nothing_stores_every_set_and_every_get_hits, .timeout = 60)
{
    struct th_server s = {0};
    start_nothing(&s, "100");
    preloaded_run(&s, "memcache");
    long hits0 = stat_of(s.port, "get_hits");
    const char *args[] = {"--server",   server_of(&s), "--ratio",       "0:1",
                          "--requests", "5000",        "--warmup",      "0",
                          "--threads",  "2",           "--connections", "6",
                          "--pipeline", "16",          "--json",        NULL};
    struct bench_run *r = bench(args);
    cr_assert_eq(r->status, 0, "exit %d: %s", r->status, r->err);
    assert_counts_add_up(r->out);
    cr_assert_eq(json_num(r->out, "hits"), 5000, "%s", r->out);
    cr_assert_eq(stat_of(s.port, "get_hits") - hits0, 5000);
    cr_assert_eq(stat_of(s.port, "get_misses"), 0);
    free(r);
    th_server_cleanup(&s);
}

/* Requests sent a byte at a time are answered as if sent whole; a multi-get
 * answers each key; a data block without its \r\n is a bad data chunk
 * (what follows the 2 + 2 bytes of the cas's, "\n", is an empty line:
 * ERROR), and incr, which it does not know, ERROR. */
Test(bench_smoke, nothing_answers_requests_cut_at_every_byte, .timeout = 60)
{
    struct th_server s = {0};
    start_nothing(&s, "3");
    int fd = th_connect(s.port);
    cr_assert(fd >= 0);
    static const char req[] = "set k 0 0 4\r\n\r\n\r\n\r\n"
                              "get a bb\r\ngets c\r\ndelete a\r\n"
                              "set n 0 0 1 noreply\r\nx\r\nflush_all\r\n"
                              "cas k 0 0 2 9\r\nxyz\r\nincr k 1\r\n"
                              "version\r\n";
    static const char want[] = "STORED\r\n"
                               "VALUE a 0 3\r\nabc\r\nVALUE bb 0 3\r\nabc\r\n"
                               "END\r\nVALUE c 0 3 1\r\nabc\r\nEND\r\n"
                               "DELETED\r\nOK\r\n"
                               "CLIENT_ERROR bad data chunk\r\nERROR\r\n"
                               "ERROR\r\n"
                               "VERSION mcdb-nothing\r\n";
    for (size_t i = 0; i < sizeof(req) - 1; i++) {
        cr_assert_eq(th_send(fd, req + i, 1), 0);
        if (i % 5 == 0)
            nanosleep(&(struct timespec){0, 200000}, NULL);
    }
    char *got = th_recv_until(fd, "VERSION mcdb-nothing\r\n", NULL);
    cr_assert(got, "no reply");
    cr_assert_str_eq(got, want);
    free(got);
    got = th_ask(fd, "stats\r\n", "END\r\n");
    cr_assert(got && strstr(got, "STAT curr_connections 1\r\n"), "%s", got);
    free(got);
    close(fd);
    th_server_cleanup(&s);
}
