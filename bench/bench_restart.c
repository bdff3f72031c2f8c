/*
 * bench_restart: how long start-up takes with N keys, with and without
 * hint files.
 *
 *   build-release/bench/bench_restart 10000000        # 10M keys, 100 B values
 *   build-release/bench/bench_restart 1000000 --value-size 100 --dir /tmp
 *
 * Writes N keys (fsync never, to build the data dir quickly), closes the
 * store (which writes the hint of every sealed segment), then times
 * store_open three times with hints and three times after deleting them.
 */
#include "log/hint.h"
#include "log/logdir.h"
#include "log/store.h"
#include "util/say.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

int
main(int argc, char **argv)
{
    long keys = 1000000;
    int vsize = 100;
    const char *base = "/tmp";
    static const struct option lo[] = {{"value-size", 1, 0, 'v'},
                                       {"dir", 1, 0, 'd'},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (c == 'v')
            vsize = atoi(optarg);
        else if (c == 'd')
            base = optarg;
        else {
            printf(
                "usage: bench_restart [KEYS] [--value-size N] [--dir DIR]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind < argc)
        keys = atol(argv[optind]);
    say_set_level(SAY_WARN);
    char dir[512], cmd[600];
    snprintf(dir, sizeof(dir), "%s/bench-restart-%d", base, (int)getpid());
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;

    store_t *s = open_store(dir, NULL);
    char key[32], *val = malloc((size_t)vsize);
    memset(val, 'v', (size_t)vsize);
    struct store_write w = {0};
    double t0 = now_s();
    for (long k = 0; k < keys; k++) {
        int klen = snprintf(key, sizeof(key), "key:%ld", k);
        if (store_set(s,
                      &(struct store_req){.key = key,
                                          .klen = (size_t)klen,
                                          .mode = STORE_SET,
                                          .val = val,
                                          .vlen = (size_t)vsize},
                      &w)) {
            fprintf(stderr, "bench_restart: write failed\n");
            return 1;
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

    for (int hints = 1; hints >= 0; hints--) {
        for (int run = 0; run < 3; run++) {
            if (!hints)
                remove_hints(dir);
            double secs;
            s = open_store(dir, &secs);
            store_stats(s, &st);
            printf("restart %s hints: %.2f s (%.2f M keys/s), %llu keys\n",
                   hints ? "with" : "without", secs, keys / secs / 1e6,
                   (unsigned long long)st.items);
            store_close(s); /* rewrites the hints */
        }
    }
    free(val);
    return system(cmd) != 0;
}
