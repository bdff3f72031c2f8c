/*
 * bench_store: engine-level throughput of set and get, without the network.
 *
 *   build-release/bench/bench_store                  # every mode, 1/4/16
 * threads build-release/bench/bench_store --fsync always --threads 16 --seconds
 * 3 build-release/bench/bench_store --dir /path/on/the/disk/to/measure
 *
 * Each writer thread sets random keys (of --keys) with --value-size byte
 * values and waits for each write to be acknowledged (as a server holding a
 * client's reply would); then the same number of threads get random keys.
 * Prints ops/s, fdatasyncs per write and the group-commit batch sizes from
 * the engine's own counters.
 */
#include "log/store.h"
#include "util/say.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct opts {
    const char *dir;
    double seconds;
    int keys;
    int vsize;
    int threads; /* 0: 1, 4 and 16 */
    int fsync;   /* -1: every mode */
};

struct run {
    store_t *s;
    const struct opts *o;
    atomic_bool stop;
    atomic_ulong ops;
    int writes;
};

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *
worker(void *arg)
{
    struct run *r = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed ^ (unsigned)time(NULL);
    char key[32], *val = malloc((size_t)r->o->vsize);
    memset(val, 'v', (size_t)r->o->vsize);
    unsigned long n = 0;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        int k = rand_r(&seed) % r->o->keys;
        int klen = snprintf(key, sizeof(key), "key:%d", k);
        if (r->writes) {
            struct store_write w;
            if (store_set(r->s,
                          &(struct store_req){.key = key,
                                              .klen = (size_t)klen,
                                              .mode = STORE_SET,
                                              .val = val,
                                              .vlen = (size_t)r->o->vsize},
                          &w) ||
                store_wait(r->s, w.ack)) {
                fprintf(stderr, "write failed\n");
                exit(1);
            }
        } else {
            struct store_item it;
            void *buf;
            if (store_get(r->s, key, (size_t)klen, &it, &buf) == 0)
                free(buf);
        }
        n++;
    }
    atomic_fetch_add(&r->ops, n);
    free(val);
    return NULL;
}

static double
measure(store_t *s, const struct opts *o, int threads, int writes)
{
    struct run r = {.s = s, .o = o, .writes = writes};
    atomic_init(&r.stop, false);
    atomic_init(&r.ops, 0);
    pthread_t th[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, worker, &r);
    usleep((useconds_t)(o->seconds * 1e6));
    atomic_store(&r.stop, true);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    return (double)atomic_load(&r.ops) / (now_s() - t0);
}

static void
preload(store_t *s, const struct opts *o)
{
    char key[32], *val = malloc((size_t)o->vsize);
    memset(val, 'p', (size_t)o->vsize);
    struct store_write w = {0};
    for (int k = 0; k < o->keys; k++) {
        int klen = snprintf(key, sizeof(key), "key:%d", k);
        store_set(s,
                  &(struct store_req){.key = key,
                                      .klen = (size_t)klen,
                                      .mode = STORE_SET,
                                      .val = val,
                                      .vlen = (size_t)o->vsize},
                  &w);
    }
    store_wait(s, w.ack);
    free(val);
}

static void
bench_mode(const struct opts *o, enum store_fsync mode, int threads)
{
    static const char *names[] = {"always", "everysec", "never"};
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/bench-store-%d", o->dir, (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        exit(1);
    struct store_config cfg;
    store_config_default(&cfg);
    cfg.dir = dir;
    cfg.fsync = mode;
    store_t *s;
    char err[512];
    if (store_open(&cfg, &s, err, sizeof(err))) {
        fprintf(stderr, "bench_store: %s\n", err);
        exit(1);
    }
    preload(s, o);
    struct store_stats a, b;
    store_stats(s, &a);
    double sets = measure(s, o, threads, 1);
    store_stats(s, &b);
    double gets = measure(s, o, threads, 0);
    uint64_t writes = b.records_written - a.records_written;
    uint64_t fsyncs = b.fsyncs - a.fsyncs;
    printf("%-8s %7d %12.0f %12.0f %14.3f %9.1f\n", names[mode], threads, sets,
           gets, writes ? (double)fsyncs / (double)writes : 0,
           fsyncs ? (double)writes / (double)fsyncs : 0);
    store_close(s);
    if (system(cmd) != 0)
        exit(1);
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: bench_store [options]\n"
            "  --dir DIR          where to create the data dir (default /tmp)\n"
            "  --fsync MODE       always|everysec|never (default: each)\n"
            "  --threads N        writer/reader threads (default: 1, 4, 16)\n"
            "  --seconds S        seconds per measurement (default 2)\n"
            "  --keys N           key space (default 100000)\n"
            "  --value-size N     value bytes (default 100)\n"
            "  -h, --help         this text\n");
}

int
main(int argc, char **argv)
{
    struct opts o = {
        .dir = "/tmp", .seconds = 2, .keys = 100000, .vsize = 100, .fsync = -1};
    static const struct option lo[] = {
        {"dir", 1, 0, 'd'},     {"fsync", 1, 0, 'f'}, {"threads", 1, 0, 't'},
        {"seconds", 1, 0, 's'}, {"keys", 1, 0, 'k'},  {"value-size", 1, 0, 'v'},
        {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.dir = optarg;
            break;
        case 'f':
            o.fsync = !strcmp(optarg, "always")     ? STORE_FSYNC_ALWAYS
                      : !strcmp(optarg, "everysec") ? STORE_FSYNC_EVERYSEC
                      : !strcmp(optarg, "never")    ? STORE_FSYNC_NEVER
                                                    : -2;
            if (o.fsync == -2) {
                fprintf(stderr, "bench_store: bad --fsync %s\n", optarg);
                usage(stderr);
                return 2;
            }
            break;
        case 't':
            o.threads = atoi(optarg);
            break;
        case 's':
            o.seconds = atof(optarg);
            break;
        case 'k':
            o.keys = atoi(optarg);
            break;
        case 'v':
            o.vsize = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o.threads < 0 || o.threads > 64 || o.keys < 1 || o.vsize < 0 ||
        o.seconds <= 0) {
        fprintf(stderr, "bench_store: bad option value\n");
        usage(stderr);
        return 2;
    }
    say_set_level(SAY_WARN);
    printf("%-8s %7s %12s %12s %14s %9s\n", "fsync", "threads", "sets/s",
           "gets/s", "fsyncs/write", "writes/fsync");
    int tlist[] = {1, 4, 16};
    for (int m = 0; m < 3; m++) {
        if (o.fsync >= 0 && o.fsync != m)
            continue;
        if (o.threads) {
            bench_mode(&o, (enum store_fsync)m, o.threads);
            continue;
        }
        for (int i = 0; i < 3; i++)
            bench_mode(&o, (enum store_fsync)m, tlist[i]);
    }
    return 0;
}
