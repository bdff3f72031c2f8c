/*
 * bench_index: memory per key and speed of the keydir (src/index).
 *
 *   cmake -S . -B build && cmake --build build -j2 --target bench_index
 *   ./build/bench/bench_index 1000000 16
 *   ./build/bench/bench_index 10000000 16
 *
 * Arguments: number of keys (default 1,000,000), key size in bytes (1..255,
 * default 16), shard bits (default 0: the index's default, 1024 shards).
 *
 * Inserts N distinct keys, each under its shard lock as the store does, and
 * prints the index's own count of bytes per key (allocated, not used), the
 * same minus the key length (the figure to compare with Bitcask's 44.5), the
 * growth of the resident set per key (/proc/self/statm: what malloc really
 * took), then the rate of inserts, of lookups that hit and that miss, and of
 * removes. A second pass inserts the keys into a fresh index timing every
 * put, to show the longest stall (a resize touches one shard only).
 */
#include "index/index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t
bench_mix(uint64_t x)
{
    /* splitmix64 */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Key i: its 8 bytes (fewer for short keys), then pseudo-random bytes. */
static void
bench_key(uint64_t i, uint8_t *buf, size_t klen)
{
    uint64_t words[32];
    words[0] = i;
    for (unsigned w = 1; w < 32; w++)
        words[w] = bench_mix(i * 32 + w);
    memcpy(buf, words, klen);
}

static double
bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t
bench_rss(void)
{
    unsigned long size, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t
bench_scatter(uint64_t i, uint64_t n)
{
    /* visit 0..n-1 in a scattered order: a prime step modulo n */
    return (uint64_t)((unsigned __int128)i * 2654435761u % n);
}

int
main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    size_t klen = argc > 2 ? strtoul(argv[2], NULL, 10) : 16;
    unsigned bits = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 0;
    if (n == 0 || klen < 1 || klen > 255 || (n % 2654435761u) == 0) {
        fprintf(stderr, "usage: %s [keys] [key bytes 1..255] [shard bits]\n",
                argv[0]);
        return 2;
    }
    if (klen < 8 && n > (1ull << (8 * klen))) {
        fprintf(stderr, "%lu distinct keys do not fit in %zu bytes\n",
                (unsigned long)n, klen);
        return 2;
    }

    uint8_t key[256];
    struct index_entry e = {0};
    uint64_t rss0 = bench_rss();
    index_t *ix = index_new(bits);
    if (ix == NULL) {
        fprintf(stderr, "index_new failed\n");
        return 1;
    }

    double t0 = bench_now();
    for (uint64_t i = 0; i < n; i++) {
        bench_key(i, key, klen);
        uint64_t h = index_hash(key, klen);
        e.off = i * 100;
        e.cas = i;
        index_lock(ix, h);
        int rc = index_put(ix, h, key, klen, &e, NULL);
        index_unlock(ix, h);
        if (rc != 0) {
            fprintf(stderr, "put %lu: %d\n", (unsigned long)i, rc);
            return 1;
        }
    }
    double t1 = bench_now();
    uint64_t rss1 = bench_rss();
    uint64_t bytes = index_bytes(ix);

    uint64_t misses = 0;
    double t2 = bench_now();
    for (uint64_t i = 0; i < n; i++) {
        uint64_t j = bench_scatter(i, n);
        bench_key(j, key, klen);
        uint64_t h = index_hash(key, klen);
        index_lock(ix, h);
        if (!index_find(ix, h, key, klen, &e) || e.cas != j)
            misses++;
        index_unlock(ix, h);
    }
    double t3 = bench_now();
    uint64_t hits = 0;
    for (uint64_t i = 0; i < n; i++) {
        bench_key(n + i, key, klen);
        uint64_t h = index_hash(key, klen);
        index_lock(ix, h);
        hits += index_find(ix, h, key, klen, NULL);
        index_unlock(ix, h);
    }
    double t4 = bench_now();
    if (misses != 0 || (klen >= 8 && hits != 0)) {
        fprintf(stderr, "lookups wrong: %lu misses, %lu false hits\n",
                (unsigned long)misses, (unsigned long)hits);
        return 1;
    }
    uint64_t count = index_count(ix);
    for (uint64_t i = 0; i < n; i++) {
        bench_key(bench_scatter(i, n), key, klen);
        uint64_t h = index_hash(key, klen);
        index_lock(ix, h);
        misses += !index_remove(ix, h, key, klen, NULL);
        index_unlock(ix, h);
    }
    double t5 = bench_now();
    if (misses != 0 || index_count(ix) != 0) {
        fprintf(stderr, "removes wrong: %lu misses\n", (unsigned long)misses);
        return 1;
    }
    index_free(ix);

    /* Second pass: the longest single put, resizes included. */
    ix = index_new(bits);
    double worst = 0;
    uint64_t slow = 0, slower = 0;
    for (uint64_t i = 0; i < n; i++) {
        bench_key(i, key, klen);
        uint64_t h = index_hash(key, klen);
        double a = bench_now();
        index_lock(ix, h);
        int rc = index_put(ix, h, key, klen, &e, NULL);
        index_unlock(ix, h);
        double d = bench_now() - a;
        if (rc != 0)
            return 1;
        if (d > worst)
            worst = d;
        slow += d > 100e-6;
        slower += d > 1e-3;
    }
    index_free(ix);

    double dn = (double)n;
    printf("keys                     %lu of %zu bytes, %u shards\n",
           (unsigned long)count, klen, bits ? 1u << bits : 1024u);
    printf("index bytes per key      %.2f\n", (double)bytes / dn);
    printf("  minus the key          %.2f\n",
           (double)bytes / dn - (double)klen);
    printf("RSS growth per key       %.2f\n",
           ((double)rss1 - (double)rss0) / dn);
    printf("  minus the key          %.2f\n",
           ((double)rss1 - (double)rss0) / dn - (double)klen);
    printf("inserts/s                %.0f\n", dn / (t1 - t0));
    printf("lookups/s (hits)         %.0f\n", dn / (t3 - t2));
    printf("lookups/s (misses)       %.0f\n", dn / (t4 - t3));
    printf("removes/s                %.0f\n", dn / (t5 - t4));
    printf(
        "longest put              %.0f us (%lu over 100 us, %lu over 1 ms)\n",
        worst * 1e6, (unsigned long)slow, (unsigned long)slower);
    return 0;
}
