/*
 * Smoke test of bench/mcdb-bench against servers it can start: it runs, its
 * counts add up and its JSON parses. A few seconds in all.
 *   cmake --build build --target mcdb-bench test_bench_bench_smoke
 *   ctest --test-dir build -R bench/bench_smoke --output-on-failure
 * A test whose server (memcached, redis-server) is not installed is skipped.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/server.h"

#define BENCH MCDB_BUILD_DIR "/bench/mcdb-bench"

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

/* Every field the JSON promises, and the totals that must add up. */
static void
assert_counts_add_up(const char *json)
{
    assert_one_json_object(json);
    static const char *const fields[] = {
        "ops",    "ops_per_sec", "duration_s", "hits",  "misses",
        "errors", "sets",        "gets",       "p50",   "p90",
        "p99",    "p999",        "max",        "config"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char key[32];
        snprintf(key, sizeof(key), "\"%s\":", fields[i]);
        cr_assert(strstr(json, key), "no %s in %s", key, json);
    }
    cr_assert(strstr(json, "\"latency_us\":{"), "no latency_us object");
    double ops = json_num(json, "ops"), sets = json_num(json, "sets");
    double gets = json_num(json, "gets"), hits = json_num(json, "hits");
    double misses = json_num(json, "misses");
    cr_assert_gt(ops, 0);
    cr_assert_eq(ops, sets + gets, "ops %.0f != sets %.0f + gets %.0f", ops,
                 sets, gets);
    cr_assert_eq(json_num(json, "errors"), 0);
    cr_assert_eq(hits + misses, gets, "hits %.0f + misses %.0f != gets %.0f",
                 hits, misses, gets);
    cr_assert_gt(json_num(json, "ops_per_sec"), 0);
    double p50 = json_num(json, "p50"), p99 = json_num(json, "p99");
    cr_assert(p50 > 0 && p50 <= p99 && p99 <= json_num(json, "max"),
              "percentiles out of order: %s", json);
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
