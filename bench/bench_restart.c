/*
 * bench_restart: how long start-up (recovery) takes with N keys, with and
 * without hint files.
 *
 *   build-release/bench/bench_restart 5000000                 # 5M keys, 100 B
 *   build-release/bench/bench_restart 1000000 --runs 5 --hints-only
 *   build-release/bench/bench_restart 5000000 --data /tmp/r5m --hints-only
 *   taskset -c 1 build-release/bench/bench_restart 5000000 --data /tmp/r5m
 *
 * Writes N keys ("key:0" .. , fsync never, to build the data directory
 * quickly) and closes the store, which writes the hint of every sealed
 * segment. With --data DIR a directory that already holds a log is reused
 * as it is (its keys are what it holds; N only says how many to write into
 * an empty one) and kept afterwards, so that several builds can be timed on
 * the same bytes.
 *
 * Every timed restart runs in a fresh process: the bench re-executes itself
 * with --open-once DIR, which times store_open() alone and prints it. A
 * restart timed in the process that wrote the data would start with a warm
 * allocator (the freed index's memory ready for reuse) and flatter the
 * figure. The page cache stays warm either way: these are warm restarts.
 * Each run's line shows the child's minor page faults and involuntary
 * context switches: thousands of the latter mean another process had the
 * CPU for part of the run (its time is then not the restart's alone).
 * The median of --runs restarts is printed, first with the hints, then
 * (unless --hints-only) after deleting them each time (the restart scans
 * the segments and its store_close() writes the hints again).
 */
#include "log/hint.h"
#include "log/logdir.h"
#include "log/store.h"
#include "util/say.h"
#include "util/usage.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* X(name, long option, metavar ("" for a flag), default, help) */
#define RESTART_OPTIONS(X)                                                     \
    X(value_size, "value-size", "BYTES", "100",                                \
      "bytes per value written when the data is made")                         \
    X(dir, "dir", "DIR", "/tmp",                                               \
      "where to make a temporary data directory (bench-restart-PID, removed "  \
      "at the end) when --data is not given")                                  \
    X(data, "data", "DIR", "",                                                 \
      "use this data directory and keep it: written with KEYS keys if it "     \
      "holds no log yet, else reused as it is (KEYS is then ignored)")         \
    X(runs, "runs", "N", "3",                                                  \
      "restarts timed in each mode, each in a fresh process; the median is "   \
      "reported")                                                              \
    X(hints_only, "hints-only", "", "",                                        \
      "time only the restart from hint files (the hints are not deleted)")     \
    X(open_once, "open-once", "DIR", "",                                       \
      "(what each timed child runs) open the store in DIR once, print "        \
      "\"SECONDS KEYS\" and close it")

enum opt_id {
#define X(name, lname, meta, def, help) OPT_##name,
    RESTART_OPTIONS(X)
#undef X
        OPT_HELP,
};

static void
usage(FILE *out)
{
    fprintf(out, "Usage: bench_restart [KEYS] [OPTION]...\n"
                 "Time the engine's start-up with KEYS keys (default: "
                 "1000000),\neach restart in a fresh process.\n\n"
                 "Options:\n");
#define X(name, lname, meta, def, help)                                        \
    usage_option(out, 0, lname, meta, help, def);
    RESTART_OPTIONS(X)
#undef X
    usage_option(out, 'h', "help", "", "print this help and exit", "");
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static store_t *
open_store(const char *dir, double *secs)
{
    struct store_config cfg;
    store_config_default(&cfg);
    cfg.dir = dir;
    cfg.fsync = STORE_FSYNC_NEVER;
    cfg.compactor = false;
    store_t *s;
    char err[512];
    double t0 = now_s();
    if (store_open(&cfg, &s, err, sizeof(err))) {
        fprintf(stderr, "bench_restart: %s\n", err);
        exit(1);
    }
    if (secs)
        *secs = now_s() - t0;
    return s;
}

/* The child's part: one timed open, "SECONDS KEYS" on stdout. */
static int
open_once(const char *dir)
{
    double secs;
    store_t *s = open_store(dir, &secs);
    struct store_stats st;
    store_stats(s, &st);
    printf("%.6f %llu\n", secs, (unsigned long long)st.items);
    fflush(stdout);
    store_close(s);
    return 0;
}

static void
remove_hints(const char *dir)
{
    uint64_t *bases;
    size_t n;
    if (logdir_list_segments(dir, &bases, &n))
        exit(1);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        hint_path(dir, bases[i], path, sizeof(path));
        unlink(path);
    }
    free(bases);
}

/* Whether dir already holds a log (its META). */
static bool
has_log(const char *dir)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/META", dir);
    return stat(path, &st) == 0;
}

static void
load(const char *dir, long keys, size_t vsize)
{
    store_t *s = open_store(dir, NULL);
    char key[32], *val = malloc(vsize ? vsize : 1);
    memset(val, 'v', vsize);
    struct store_write w = {0};
    double t0 = now_s();
    for (long k = 0; k < keys; k++) {
        int klen = snprintf(key, sizeof(key), "key:%ld", k);
        if (store_set(s,
                      &(struct store_req){.key = key,
                                          .klen = (size_t)klen,
                                          .mode = STORE_SET,
                                          .val = val,
                                          .vlen = vsize},
                      &w)) {
            fprintf(stderr, "bench_restart: write failed\n");
            exit(1);
        }
    }
    store_wait(s, w.ack);
    struct store_stats st;
    store_stats(s, &st);
    printf("loaded %ld keys in %.1f s; log %.0f MB in %llu segments, index "
           "%.1f B/key\n",
           keys, now_s() - t0, st.log_bytes / 1e6,
           (unsigned long long)st.segments,
           (double)st.index_bytes / (double)st.items);
    store_close(s);
    free(val);
}

/* Run "self --open-once dir" and read its "SECONDS KEYS"; *ru gets the
 * child's resource use (its involuntary context switches tell a restart
 * that shared its CPU with another process). */
static double
timed_child(const char *self, const char *dir, unsigned long long *keys,
            struct rusage *ru)
{
    int pfd[2];
    if (pipe(pfd) != 0) {
        perror("bench_restart: pipe");
        exit(1);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_restart: fork");
        exit(1);
    }
    if (pid == 0) {
        close(pfd[0]);
        if (dup2(pfd[1], STDOUT_FILENO) < 0)
            _exit(127);
        execl(self, self, "--open-once", dir, (char *)NULL);
        fprintf(stderr, "bench_restart: exec %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    double secs = -1;
    if (!f || fscanf(f, "%lf %llu", &secs, keys) != 2)
        secs = -1;
    if (f)
        fclose(f);
    int status;
    if (wait4(pid, &status, 0, ru) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0 || secs < 0) {
        fprintf(stderr, "bench_restart: the timed restart failed\n");
        exit(1);
    }
    return secs;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
time_restarts(const char *self, const char *dir, bool hints, unsigned runs)
{
    double *t = calloc(runs, sizeof(*t));
    unsigned long long keys = 0;
    for (unsigned run = 0; run < runs; run++) {
        if (!hints)
            remove_hints(dir);
        struct rusage ru;
        t[run] = timed_child(self, dir, &keys, &ru);
        printf("restart %s hints: %.3f s (%.2f M keys/s), %llu keys; "
               "%ld minor faults, %ld involuntary context switches\n",
               hints ? "with" : "without", t[run], keys / t[run] / 1e6, keys,
               ru.ru_minflt, ru.ru_nivcsw);
    }
    qsort(t, runs, sizeof(*t), cmp_double);
    double med = runs % 2 ? t[runs / 2] : (t[runs / 2 - 1] + t[runs / 2]) / 2;
    printf("median of %u restarts %s hints: %.3f s (%.2f M keys/s), min %.3f "
           "max %.3f\n",
           runs, hints ? "with" : "without", med, keys / med / 1e6, t[0],
           t[runs - 1]);
    free(t);
}

int
main(int argc, char **argv)
{
    long keys = 1000000;
    size_t vsize = 100;
    long runs = 3;
    const char *base = "/tmp", *data = NULL, *once = NULL;
    bool hints_only = false;
    static const struct option lo[] = {
#define X(name, lname, meta, def, help)                                        \
    {lname, meta[0] ? required_argument : no_argument, 0, OPT_##name},
        RESTART_OPTIONS(X)
#undef X
            {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case OPT_value_size:
            vsize = strtoul(optarg, NULL, 10);
            break;
        case OPT_dir:
            base = optarg;
            break;
        case OPT_data:
            data = optarg;
            break;
        case OPT_runs:
            runs = atol(optarg);
            break;
        case OPT_hints_only:
            hints_only = true;
            break;
        case OPT_open_once:
            once = optarg;
            break;
        case 'h':
        case OPT_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc)
        keys = atol(argv[optind]);
    if (runs < 1 || keys < 0) {
        fprintf(stderr, "bench_restart: --runs must be at least 1 and KEYS "
                        "not negative\n");
        return 2;
    }
    say_set_level(SAY_WARN);
    if (once)
        return open_once(once);

    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        perror("bench_restart: /proc/self/exe");
        return 1;
    }
    self[n] = '\0';

    char tmp[512], cmd[600];
    const char *dir = data;
    if (!data) {
        snprintf(tmp, sizeof(tmp), "%s/bench-restart-%d", base, (int)getpid());
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
        if (system(cmd) != 0)
            return 1;
        dir = tmp;
    }
    if (data && has_log(data))
        printf("reusing the log in %s\n", data);
    else
        load(dir, keys, vsize);

    time_restarts(self, dir, true, (unsigned)runs);
    if (!hints_only)
        time_restarts(self, dir, false, (unsigned)runs);
    return data ? 0 : system(cmd) != 0;
}
