/*
 * Unit tests of the keydir (src/index): semantics of find/put/remove, a
 * million random operations against a reference map, scans, concurrency
 * under the shard locks, memory per key and allocation failure.
 */
#include "index/index.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <xxhash.h>

/* ---- helpers: every keyed call under its shard lock ---- */

static int
t_put(index_t *ix, const void *key, size_t klen, const struct index_entry *e,
      struct index_entry *old)
{
    uint64_t h = index_hash(key, klen);
    index_lock(ix, h);
    int rc = index_put(ix, h, key, klen, e, old);
    index_unlock(ix, h);
    return rc;
}

static bool
t_find(index_t *ix, const void *key, size_t klen, struct index_entry *out)
{
    uint64_t h = index_hash(key, klen);
    index_lock(ix, h);
    bool found = index_find(ix, h, key, klen, out);
    index_unlock(ix, h);
    return found;
}

static bool
t_remove(index_t *ix, const void *key, size_t klen, struct index_entry *old)
{
    uint64_t h = index_hash(key, klen);
    index_lock(ix, h);
    bool found = index_remove(ix, h, key, klen, old);
    index_unlock(ix, h);
    return found;
}

static struct index_entry
t_entry(uint64_t off, uint32_t vlen, uint32_t exptime, uint64_t cas)
{
    struct index_entry e = {
        .off = off, .vlen = vlen, .exptime = exptime, .cas = cas};
    return e;
}

static void
t_assert_entry_eq(const struct index_entry *a, const struct index_entry *b)
{
    cr_assert_eq(a->off, b->off);
    cr_assert_eq(a->vlen, b->vlen);
    cr_assert_eq(a->exptime, b->exptime);
    cr_assert_eq(a->cas, b->cas);
}

static uint64_t
t_mix(uint64_t x)
{
    /* splitmix64 */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static struct index_entry
t_random_entry(uint64_t *rng)
{
    uint64_t a = t_mix((*rng)++), b = t_mix((*rng)++);
    return t_entry(a, (uint32_t)b, (uint32_t)(b >> 32), a ^ b);
}

/*
 * Key of id: ids below 256 are the 1-byte keys; the others are 3 to 62 bytes
 * (255 for one id in 64) starting with the id's 3 bytes, then bytes of
 * every value including 0. Different ids give different keys.
 */
static size_t
t_key(uint32_t id, uint8_t *buf)
{
    if (id < 256) {
        buf[0] = (uint8_t)id;
        return 1;
    }
    uint64_t r = t_mix(id);
    size_t len = (r & 63) == 0 ? 255 : 3 + (r >> 8) % 60;
    buf[0] = (uint8_t)id;
    buf[1] = (uint8_t)(id >> 8);
    buf[2] = (uint8_t)(id >> 16);
    for (size_t i = 3; i < len; i++)
        buf[i] = (uint8_t)t_mix(r + i);
    return len;
}

static uint32_t
t_key_id(const uint8_t *key, size_t klen)
{
    if (klen == 1)
        return key[0];
    return key[0] | (uint32_t)key[1] << 8 | (uint32_t)key[2] << 16;
}

/* ---- basic semantics ---- */

Test(index, default_index_has_1024_shards_and_is_empty)
{
    index_t *ix = index_new(0);
    cr_assert_not_null(ix);
    cr_assert_eq(index_shards(ix), 1024);
    cr_assert_eq(index_count(ix), 0);
    cr_assert_gt(index_bytes(ix), 0);
    index_free(ix);

    ix = index_new(3);
    cr_assert_eq(index_shards(ix), 8);
    index_free(ix);
}

Test(index, hash_is_xxh3_64_of_the_key)
{
    const char key[] = "some key\0with a nul";
    cr_assert_eq(index_hash(key, sizeof(key)), XXH3_64bits(key, sizeof(key)));
}

Test(index, find_on_empty_index_returns_false)
{
    index_t *ix = index_new(0);
    struct index_entry e;
    cr_assert_not(t_find(ix, "a", 1, &e));
    cr_assert_not(t_remove(ix, "a", 1, &e));
    index_free(ix);
}

Test(index, put_then_find_returns_the_entry)
{
    index_t *ix = index_new(0);
    struct index_entry e = t_entry(123456789012345ull, 7, 1700000000, 42), got;
    cr_assert_eq(t_put(ix, "hello", 5, &e, NULL), 0);
    cr_assert(t_find(ix, "hello", 5, &got));
    t_assert_entry_eq(&got, &e);
    cr_assert(t_find(ix, "hello", 5, NULL));
    cr_assert_not(t_find(ix, "hell", 4, NULL));
    cr_assert_not(t_find(ix, "hello!", 6, NULL));
    cr_assert_eq(index_count(ix), 1);
    index_free(ix);
}

Test(index, overwrite_keeps_one_entry_and_returns_the_old_one)
{
    index_t *ix = index_new(0);
    struct index_entry a = t_entry(1, 2, 3, 4), b = t_entry(5, 6, 7, 8), old,
                       got;
    cr_assert_eq(t_put(ix, "k", 1, &a, NULL), 0);
    memset(&old, 0xff, sizeof(old));
    cr_assert_eq(t_put(ix, "k", 1, &b, &old), 1);
    t_assert_entry_eq(&old, &a);
    cr_assert(t_find(ix, "k", 1, &got));
    t_assert_entry_eq(&got, &b);
    cr_assert_eq(index_count(ix), 1);
    /* An overwrite without room for the old entry is fine too. */
    cr_assert_eq(t_put(ix, "k", 1, &a, NULL), 1);
    cr_assert(t_find(ix, "k", 1, &got));
    t_assert_entry_eq(&got, &a);
    index_free(ix);
}

Test(index, remove_returns_the_old_entry_and_forgets_the_key)
{
    index_t *ix = index_new(0);
    struct index_entry a = t_entry(10, 20, 30, 40), old;
    cr_assert_eq(t_put(ix, "gone", 4, &a, NULL), 0);
    cr_assert(t_remove(ix, "gone", 4, &old));
    t_assert_entry_eq(&old, &a);
    cr_assert_not(t_find(ix, "gone", 4, NULL));
    cr_assert_not(t_remove(ix, "gone", 4, NULL));
    cr_assert_eq(index_count(ix), 0);
    /* and it can come back */
    cr_assert_eq(t_put(ix, "gone", 4, &a, NULL), 0);
    cr_assert(t_find(ix, "gone", 4, NULL));
    index_free(ix);
}

Test(index, binary_keys_with_nul_bytes_are_distinct)
{
    index_t *ix = index_new(0);
    static const uint8_t k1[] = {0, 0, 0}, k2[] = {0, 0}, k3[] = {0, 1, 0},
                         k4[] = {0xff, 0, 0x80};
    const uint8_t *keys[] = {k1, k2, k3, k4};
    size_t lens[] = {3, 2, 3, 3};
    for (unsigned i = 0; i < 4; i++) {
        struct index_entry e = t_entry(i, i, i, i);
        cr_assert_eq(t_put(ix, keys[i], lens[i], &e, NULL), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        struct index_entry got;
        cr_assert(t_find(ix, keys[i], lens[i], &got));
        cr_assert_eq(got.off, i);
    }
    cr_assert_eq(index_count(ix), 4);
    index_free(ix);
}

Test(index, all_256_one_byte_keys_and_255_byte_keys_work)
{
    index_t *ix = index_new(2);
    for (unsigned i = 0; i < 256; i++) {
        uint8_t k = (uint8_t)i;
        struct index_entry e = t_entry(i, 0, 0, 0);
        cr_assert_eq(t_put(ix, &k, 1, &e, NULL), 0);
    }
    uint8_t big[255];
    for (unsigned i = 0; i < 100; i++) {
        memset(big, (int)i, sizeof(big));
        struct index_entry e = t_entry(1000 + i, 255, 0, 0);
        cr_assert_eq(t_put(ix, big, sizeof(big), &e, NULL), 0);
    }
    cr_assert_eq(index_count(ix), 356);
    for (unsigned i = 0; i < 256; i++) {
        uint8_t k = (uint8_t)i;
        struct index_entry got;
        cr_assert(t_find(ix, &k, 1, &got));
        cr_assert_eq(got.off, i);
    }
    for (unsigned i = 0; i < 100; i++) {
        struct index_entry got;
        memset(big, (int)i, sizeof(big));
        cr_assert(t_find(ix, big, sizeof(big), &got));
        cr_assert_eq(got.off, 1000 + i);
        cr_assert_not(t_find(ix, big, sizeof(big) - 1, NULL));
    }
    index_free(ix);
}

Test(index, keys_that_differ_only_in_the_last_byte_are_distinct)
{
    index_t *ix = index_new(0);
    uint8_t key[200];
    memset(key, 'x', sizeof(key));
    for (unsigned i = 0; i < 256; i++) {
        key[199] = (uint8_t)i;
        struct index_entry e = t_entry(i, 0, 0, 0);
        cr_assert_eq(t_put(ix, key, sizeof(key), &e, NULL), 0);
    }
    for (unsigned i = 0; i < 256; i += 2) {
        key[199] = (uint8_t)i;
        cr_assert(t_remove(ix, key, sizeof(key), NULL));
    }
    for (unsigned i = 0; i < 256; i++) {
        struct index_entry got;
        key[199] = (uint8_t)i;
        cr_assert_eq(t_find(ix, key, sizeof(key), &got), i % 2 == 1);
        if (i % 2)
            cr_assert_eq(got.off, i);
    }
    cr_assert_eq(index_count(ix), 128);
    index_free(ix);
}

/* ---- a million random operations against a reference map ---- */

#define RAND_IDS (1u << 17)

struct t_ref {
    bool *present;
    struct index_entry *ent;
    uint64_t count;
};

struct t_seen {
    struct t_ref *ref;
    uint8_t *seen;
    uint64_t visited;
};

static int
t_check_visit(void *arg, const void *key, size_t klen, struct index_entry *e)
{
    struct t_seen *s = arg;
    uint8_t buf[255];
    uint32_t id = t_key_id(key, klen);
    cr_assert_lt(id, RAND_IDS);
    cr_assert_eq(t_key(id, buf), klen);
    cr_assert_eq(memcmp(buf, key, klen), 0);
    cr_assert(s->ref->present[id], "scan visits a key that is not there");
    cr_assert_not(s->seen[id], "scan visits a key twice");
    s->seen[id] = 1;
    t_assert_entry_eq(e, &s->ref->ent[id]);
    s->visited++;
    return INDEX_KEEP;
}

static void
t_check_all(index_t *ix, struct t_ref *ref)
{
    uint8_t key[255];
    cr_assert_eq(index_count(ix), ref->count);
    for (uint32_t id = 0; id < RAND_IDS; id++) {
        size_t klen = t_key(id, key);
        struct index_entry got;
        bool found = t_find(ix, key, klen, &got);
        cr_assert_eq(found, ref->present[id], "id %u", id);
        if (found)
            t_assert_entry_eq(&got, &ref->ent[id]);
    }
    struct t_seen s = {.ref = ref, .seen = calloc(RAND_IDS, 1)};
    for (unsigned sh = 0; sh < index_shards(ix); sh++)
        index_scan(ix, sh, t_check_visit, &s);
    cr_assert_eq(s.visited, ref->count);
    free(s.seen);
}

/*
 * Three phases with 1M operations in all on 8 shards: growth (mostly puts),
 * shrinking (mostly removes: arena compactions, table shrinks, emptied
 * shards) and churn (puts and removes balanced: tombstone cleanups).
 */
Test(index, a_million_random_operations_match_a_reference_map, .timeout = 300)
{
    index_t *ix = index_new(3);
    struct t_ref ref = {.present = calloc(RAND_IDS, sizeof(bool)),
                        .ent = calloc(RAND_IDS, sizeof(struct index_entry))};
    uint64_t rng = 1;
    uint8_t key[255];
    uint64_t peak = 0;
    static const struct {
        uint32_t ops, put, remove; /* per cent, the rest are finds */
    } phases[] = {{300000, 75, 10}, {400000, 5, 90}, {300000, 45, 45}};

    for (unsigned ph = 0; ph < 3; ph++) {
        for (uint32_t n = 0; n < phases[ph].ops; n++) {
            uint64_t r = t_mix(rng++);
            uint32_t id = (uint32_t)(r >> 32) % RAND_IDS;
            uint32_t pick = (uint32_t)r % 100;
            size_t klen = t_key(id, key);
            struct index_entry old, got;
            if (pick < phases[ph].put) {
                struct index_entry e = t_random_entry(&rng);
                int rc = t_put(ix, key, klen, &e, &old);
                cr_assert_eq(rc, ref.present[id] ? 1 : 0);
                if (ref.present[id])
                    t_assert_entry_eq(&old, &ref.ent[id]);
                else
                    ref.count++;
                ref.present[id] = true;
                ref.ent[id] = e;
            } else if (pick < phases[ph].put + phases[ph].remove) {
                bool found = t_remove(ix, key, klen, &old);
                cr_assert_eq(found, ref.present[id]);
                if (found) {
                    t_assert_entry_eq(&old, &ref.ent[id]);
                    ref.present[id] = false;
                    ref.count--;
                }
            } else {
                bool found = t_find(ix, key, klen, &got);
                cr_assert_eq(found, ref.present[id]);
                if (found)
                    t_assert_entry_eq(&got, &ref.ent[id]);
            }
            if (n % 65536 == 0)
                cr_assert_eq(index_count(ix), ref.count);
        }
        t_check_all(ix, &ref);
        if (ph == 0) {
            peak = index_bytes(ix);
        } else if (ph == 1) {
            /* Most keys are gone: so is most of the memory. */
            cr_log_info("random ops: %lu keys, %lu of %lu bytes kept",
                        (unsigned long)ref.count,
                        (unsigned long)index_bytes(ix), (unsigned long)peak);
            cr_assert_lt(ref.count, RAND_IDS / 8);
            cr_assert_lt(index_bytes(ix), peak / 3);
        }
    }
    cr_log_info("random ops: %lu keys left, %lu bytes",
                (unsigned long)ref.count, (unsigned long)index_bytes(ix));

    /* Removing everything left frees all but the shard structs. */
    for (uint32_t id = 0; id < RAND_IDS; id++) {
        size_t klen = t_key(id, key);
        cr_assert_eq(t_remove(ix, key, klen, NULL), ref.present[id]);
    }
    cr_assert_eq(index_count(ix), 0);
    index_t *fresh = index_new(3);
    cr_assert_eq(index_bytes(ix), index_bytes(fresh));
    index_free(fresh);
    index_free(ix);
    free(ref.present);
    free(ref.ent);
}

/*
 * Arenas of many MiB use large chunks and wider offsets, hence shorter tags:
 * 300,000 255-byte keys in 2 shards put about 42 MiB in each (2 MiB chunks,
 * 27-bit offsets, 5-bit tags).
 */
Test(index, arenas_of_tens_of_mib_keep_every_key, .timeout = 300)
{
    index_t *ix = index_new(1);
    uint8_t key[255];
    const uint32_t n = 300000;
    for (uint32_t i = 0; i < n; i++) {
        memset(key, (int)(i * 7), sizeof(key));
        memcpy(key, &i, sizeof(i));
        struct index_entry e = t_entry(i, i, i, i);
        cr_assert_eq(t_put(ix, key, sizeof(key), &e, NULL), 0);
    }
    cr_assert_gt(index_bytes(ix), (uint64_t)n * 280);
    for (uint32_t i = 0; i < n; i++) {
        memset(key, (int)(i * 7), sizeof(key));
        memcpy(key, &i, sizeof(i));
        struct index_entry got;
        cr_assert(t_find(ix, key, sizeof(key), &got));
        cr_assert_eq(got.cas, i);
        if (i % 3 == 0)
            cr_assert(t_remove(ix, key, sizeof(key), NULL));
    }
    for (uint32_t i = 0; i < n; i++) {
        memset(key, (int)(i * 7), sizeof(key));
        memcpy(key, &i, sizeof(i));
        struct index_entry got;
        cr_assert_eq(t_find(ix, key, sizeof(key), &got), i % 3 != 0);
        if (i % 3)
            cr_assert_eq(got.off, i);
    }
    cr_assert_eq(index_count(ix), n - (n + 2) / 3);
    index_free(ix);
}

/* ---- index_scan ---- */

struct t_scan {
    unsigned visits;
    uint8_t seen[4096];
};

static int
t_scan_visit(void *arg, const void *key, size_t klen, struct index_entry *e)
{
    struct t_scan *s = arg;
    cr_assert_eq(klen, 4);
    uint32_t id;
    memcpy(&id, key, 4);
    cr_assert_lt(id, 4096);
    cr_assert_eq(e->off, id);
    cr_assert_not(s->seen[id]);
    s->seen[id] = 1;
    s->visits++;
    if (id % 3 == 0)
        return INDEX_DROP;
    if (id % 3 == 1) {
        e->cas = 1000000 + id;
        e->exptime = 77;
    }
    return INDEX_KEEP;
}

Test(index, scan_visits_each_key_once_and_keeps_drops_or_updates_in_place)
{
    index_t *ix = index_new(4);
    for (uint32_t id = 0; id < 4096; id++) {
        struct index_entry e = t_entry(id, id, 0, id);
        cr_assert_eq(t_put(ix, &id, 4, &e, NULL), 0);
    }
    struct t_scan s = {0};
    for (unsigned sh = 0; sh < index_shards(ix); sh++)
        index_scan(ix, sh, t_scan_visit, &s);
    cr_assert_eq(s.visits, 4096);
    cr_assert_eq(index_count(ix), 4096 - 1366);
    for (uint32_t id = 0; id < 4096; id++) {
        struct index_entry got;
        bool found = t_find(ix, &id, 4, &got);
        cr_assert_eq(found, id % 3 != 0);
        if (!found)
            continue;
        cr_assert_eq(got.off, id);
        cr_assert_eq(got.vlen, id);
        cr_assert_eq(got.cas, id % 3 == 1 ? 1000000 + id : id);
        cr_assert_eq(got.exptime, id % 3 == 1 ? 77u : 0u);
    }
    index_free(ix);
}

static int
t_drop_all(void *arg, const void *key, size_t klen, struct index_entry *e)
{
    (void)key;
    (void)klen;
    (void)e;
    ++*(unsigned *)arg;
    return INDEX_DROP;
}

Test(index, scan_that_drops_everything_empties_the_index)
{
    index_t *ix = index_new(2);
    uint64_t empty = index_bytes(ix);
    for (uint32_t id = 0; id < 50000; id++) {
        struct index_entry e = t_entry(id, 0, 0, 0);
        cr_assert_eq(t_put(ix, &id, 4, &e, NULL), 0);
    }
    unsigned dropped = 0;
    for (unsigned sh = 0; sh < index_shards(ix); sh++)
        index_scan(ix, sh, t_drop_all, &dropped);
    cr_assert_eq(dropped, 50000);
    cr_assert_eq(index_count(ix), 0);
    cr_assert_eq(index_bytes(ix), empty);
    uint32_t id = 7;
    cr_assert_not(t_find(ix, &id, 4, NULL));
    struct index_entry e = t_entry(1, 2, 3, 4);
    cr_assert_eq(t_put(ix, &id, 4, &e, NULL), 0);
    cr_assert(t_find(ix, &id, 4, NULL));
    index_free(ix);
}

/* ---- concurrency ---- */

#define CONC_THREADS 4
#define CONC_OWN 20000u /* ids per thread */
#define CONC_SHARED 64u
#define CONC_OPS 200000u

struct t_worker {
    index_t *ix;
    unsigned t;
    bool present[CONC_OWN];
    uint64_t cas[CONC_OWN];
    uint64_t incs[CONC_SHARED];
};

static size_t
t_conc_key(uint32_t id, uint8_t *buf)
{
    memcpy(buf, "conc", 4);
    memcpy(buf + 4, &id, 4);
    return 8 + id % 9;
}

static void *
t_worker_run(void *arg)
{
    struct t_worker *w = arg;
    uint64_t rng = 1000 + w->t;
    uint8_t key[32] = {0};
    for (uint32_t n = 0; n < CONC_OPS; n++) {
        uint64_t r = t_mix(rng++);
        uint32_t pick = (uint32_t)r % 10;
        if (pick < 2) {
            /* increment a shared counter: find then put under one lock */
            uint32_t s = (uint32_t)(r >> 32) % CONC_SHARED;
            size_t klen = t_conc_key(s, key);
            uint64_t h = index_hash(key, klen);
            struct index_entry e = t_entry(s, 0, 0, 0);
            index_lock(w->ix, h);
            if (index_find(w->ix, h, key, klen, &e))
                e.cas++;
            else
                e.cas = 1;
            int rc = index_put(w->ix, h, key, klen, &e, NULL);
            index_unlock(w->ix, h);
            if (rc < 0)
                return "put failed";
            w->incs[s]++;
        } else if (pick < 3) {
            /* look at another thread's keys: any answer is fine */
            uint32_t id =
                CONC_SHARED + (uint32_t)(r >> 32) % (CONC_THREADS * CONC_OWN);
            size_t klen = t_conc_key(id, key);
            (void)t_find(w->ix, key, klen, NULL);
        } else {
            uint32_t i = (uint32_t)(r >> 32) % CONC_OWN;
            uint32_t id = CONC_SHARED + w->t * CONC_OWN + i;
            size_t klen = t_conc_key(id, key);
            struct index_entry e = t_entry(id, 0, 0, n), got;
            if (pick < 7) {
                if (t_put(w->ix, key, klen, &e, NULL) !=
                    (w->present[i] ? 1 : 0))
                    return "put returned the wrong status";
                w->present[i] = true;
                w->cas[i] = n;
            } else if (pick < 9) {
                if (t_remove(w->ix, key, klen, NULL) != w->present[i])
                    return "remove returned the wrong status";
                w->present[i] = false;
            } else if (t_find(w->ix, key, klen, &got) != w->present[i] ||
                       (w->present[i] && got.cas != w->cas[i])) {
                return "find disagrees";
            }
        }
        if (n % 50000 == 0) {
            /* stats run beside the writers */
            (void)index_count(w->ix);
            (void)index_bytes(w->ix);
        }
    }
    return NULL;
}

static int
t_keep(void *arg, const void *key, size_t klen, struct index_entry *e)
{
    (void)key;
    (void)klen;
    (void)e;
    ++*(uint64_t *)arg;
    return INDEX_KEEP;
}

static void *
t_scanner_run(void *arg)
{
    index_t *ix = arg;
    uint64_t visits = 0;
    for (unsigned round = 0; round < 20; round++)
        for (unsigned sh = 0; sh < index_shards(ix); sh++)
            index_scan(ix, sh, t_keep, &visits);
    return NULL;
}

Test(index, four_threads_under_shard_locks_leave_a_consistent_index,
     .timeout = 300)
{
    index_t *ix = index_new(2); /* few shards: plenty of contention */
    static struct t_worker w[CONC_THREADS];
    pthread_t th[CONC_THREADS], scanner;
    for (unsigned t = 0; t < CONC_THREADS; t++) {
        memset(&w[t], 0, sizeof(w[t]));
        w[t].ix = ix;
        w[t].t = t;
        cr_assert_eq(pthread_create(&th[t], NULL, t_worker_run, &w[t]), 0);
    }
    cr_assert_eq(pthread_create(&scanner, NULL, t_scanner_run, ix), 0);
    for (unsigned t = 0; t < CONC_THREADS; t++) {
        void *err;
        pthread_join(th[t], &err);
        cr_assert_null(err, "thread %u: %s", t, (char *)err);
    }
    pthread_join(scanner, NULL);

    uint64_t expect = 0;
    uint8_t key[32] = {0};
    for (uint32_t s = 0; s < CONC_SHARED; s++) {
        uint64_t incs = 0;
        for (unsigned t = 0; t < CONC_THREADS; t++)
            incs += w[t].incs[s];
        size_t klen = t_conc_key(s, key);
        struct index_entry got;
        cr_assert(t_find(ix, key, klen, &got));
        cr_assert_eq(got.cas, incs, "shared key %u: %lu increments of %lu", s,
                     (unsigned long)got.cas, (unsigned long)incs);
        expect++;
    }
    for (unsigned t = 0; t < CONC_THREADS; t++) {
        for (uint32_t i = 0; i < CONC_OWN; i++) {
            uint32_t id = CONC_SHARED + t * CONC_OWN + i;
            size_t klen = t_conc_key(id, key);
            struct index_entry got;
            cr_assert_eq(t_find(ix, key, klen, &got), w[t].present[i]);
            if (w[t].present[i]) {
                cr_assert_eq(got.cas, w[t].cas[i]);
                expect++;
            }
        }
    }
    cr_assert_eq(index_count(ix), expect);
    index_free(ix);
}

/* ---- memory ---- */

/*
 * 1M 16-byte keys: the budget is 32 bytes per key beside the key (Bitcask:
 * 44.5). The arithmetic at the top of index.c gives 31.7.
 */
Test(index, a_million_16_byte_keys_cost_at_most_32_bytes_each_beside_the_key,
     .timeout = 300)
{
    index_t *ix = index_new(0);
    const uint64_t n = 1000000;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t key[2] = {i, t_mix(i)};
        struct index_entry e = t_entry(i * 100, 100, 0, i);
        cr_assert_eq(t_put(ix, key, 16, &e, NULL), 0);
    }
    cr_assert_eq(index_count(ix), n);
    double per_key = (double)index_bytes(ix) / (double)n;
    cr_log_info(
        "1M 16-byte keys: %.2f index bytes per key, %.2f beside the key",
        per_key, per_key - 16);
    cr_assert_leq(per_key, 32.0 + 16, "%.2f bytes per key", per_key);
    for (uint64_t i = 0; i < n; i += 997) {
        uint64_t key[2] = {i, t_mix(i)};
        struct index_entry got;
        cr_assert(t_find(ix, key, 16, &got));
        cr_assert_eq(got.cas, i);
    }
    index_free(ix);
}

/* ---- allocation failure ---- */

#ifndef MCDB_SANITIZED
static uint64_t
t_vm_bytes(void)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%lu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return (uint64_t)pages * 4096;
}
#endif

/*
 * Under an address-space limit puts eventually fail with INDEX_ENOMEM; the
 * failed key is absent and every key stored before is intact. (Sanitizers
 * reserve huge shadow mappings and abort on failed allocations: skipped.)
 */
Test(index, put_reports_enomem_when_memory_runs_out_and_loses_nothing,
     .timeout = 300)
{
#ifdef MCDB_SANITIZED
    cr_skip_test("address-space limits do not mix with sanitizers");
#else
    index_t *ix = index_new(4);
    struct rlimit saved, lim;
    cr_assert_eq(getrlimit(RLIMIT_AS, &saved), 0);
    lim = saved;
    lim.rlim_cur = t_vm_bytes() + (48u << 20);
    cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);
    uint64_t i, failed_at = UINT64_MAX;
    int rc = 0;
    for (i = 0; i < 50000000; i++) {
        uint64_t key[3] = {i, t_mix(i), ~i};
        struct index_entry e = t_entry(i, 0, 0, i);
        rc = t_put(ix, key, 24, &e, NULL);
        if (rc != 0) {
            failed_at = i;
            break;
        }
    }
    uint64_t count = index_count(ix);
    /* Still under the limit: overwrites and finds need no memory. */
    bool ok = true;
    for (uint64_t j = 0; j < failed_at && failed_at != UINT64_MAX; j++) {
        uint64_t key[3] = {j, t_mix(j), ~j};
        struct index_entry e = t_entry(j, 1, 0, j), old;
        if (t_put(ix, key, 24, &e, &old) != 1 || old.cas != j)
            ok = false;
    }
    cr_assert_eq(setrlimit(RLIMIT_AS, &saved), 0);

    cr_assert_eq(rc, INDEX_ENOMEM, "no failure in %lu puts", (unsigned long)i);
    cr_assert(ok);
    cr_assert_eq(count, failed_at);
    cr_log_info("ENOMEM after %lu keys", (unsigned long)failed_at);
    uint64_t key[3] = {failed_at, t_mix(failed_at), ~failed_at};
    cr_assert_not(t_find(ix, key, 24, NULL));
    for (uint64_t j = 0; j < failed_at; j++) {
        uint64_t k[3] = {j, t_mix(j), ~j};
        struct index_entry got;
        cr_assert(t_find(ix, k, 24, &got));
        cr_assert_eq(got.cas, j);
        cr_assert_eq(got.vlen, 1);
    }
    /* and with memory back, the failed key goes in */
    struct index_entry e = t_entry(1, 2, 3, 4);
    cr_assert_eq(t_put(ix, key, 24, &e, NULL), 0);
    cr_assert_eq(index_count(ix), failed_at + 1);
    index_free(ix);
#endif
}

static void
put_n(index_t *ix, int from, int to)
{
    for (int i = from; i < to; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "reserved:%d", i);
        uint64_t h = index_hash(key, (size_t)n);
        struct index_entry e = {.off = (uint64_t)i, .vlen = 1};
        index_lock(ix, h);
        cr_assert_geq(index_put(ix, h, key, (size_t)n, &e, NULL), 0);
        index_unlock(ix, h);
    }
}

/* Every 997th of the keys put_n(ix, 0, n) put is there, at its offset. */
static void
expect_put_n(index_t *ix, int n)
{
    for (int i = 0; i < n; i += 997) {
        char key[32];
        int len = snprintf(key, sizeof(key), "reserved:%d", i);
        uint64_t h = index_hash(key, (size_t)len);
        struct index_entry e;
        index_lock(ix, h);
        cr_assert(index_find(ix, h, key, (size_t)len, &e), "%s", key);
        cr_assert_eq(e.off, (uint64_t)i);
        index_unlock(ix, h);
    }
}

Test(index, reserve_then_load_keeps_every_key_and_trim_gives_memory_back)
{
    index_t *ix = index_new(0);
    cr_assert_eq(index_reserve(ix, 200000, 0), 0);
    uint64_t reserved = index_bytes(ix);
    cr_assert_gt(reserved, 200000 * 4, "the tables were not sized up front");
    put_n(ix, 0, 200000);
    cr_assert_eq(index_count(ix), 200000);
    expect_put_n(ix, 200000);
    index_free(ix);

    /* over-reserved: trim shrinks the tables to the keys loaded */
    ix = index_new(0);
    cr_assert_eq(index_reserve(ix, 1000000, 0), 0);
    put_n(ix, 0, 50000);
    uint64_t before = index_bytes(ix);
    index_trim(ix);
    uint64_t after = index_bytes(ix);
    cr_assert_lt(after, before / 2, "trim kept %llu of %llu bytes",
                 (unsigned long long)after, (unsigned long long)before);
    cr_assert_eq(index_count(ix), 50000);
    put_n(ix, 50000, 60000);
    cr_assert_eq(index_count(ix), 60000);
    index_free(ix);
}

Test(index, reserving_key_bytes_keeps_every_key_in_no_more_memory)
{
    index_t *plain = index_new(0), *ix = index_new(0);
    uint64_t key_bytes = 0;
    for (int i = 0; i < 200000; i++)
        key_bytes += (uint64_t)snprintf(NULL, 0, "reserved:%d", i);
    cr_assert_eq(index_reserve(plain, 200000, 0), 0);
    cr_assert_eq(index_reserve(ix, 200000, key_bytes), 0);
    put_n(plain, 0, 200000);
    put_n(ix, 0, 200000);
    index_trim(plain);
    index_trim(ix);
    cr_assert_eq(index_count(ix), 200000);
    expect_put_n(ix, 200000);
    /* chunks sized up front are those growth would have ended with */
    cr_assert_leq(index_bytes(ix), index_bytes(plain) * 21 / 20,
                  "reserved %llu bytes, grown %llu",
                  (unsigned long long)index_bytes(ix),
                  (unsigned long long)index_bytes(plain));
    /* and it keeps working past the estimate */
    put_n(ix, 200000, 260000);
    cr_assert_eq(index_count(ix), 260000);
    index_free(plain);
    index_free(ix);
}
