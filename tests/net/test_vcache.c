/*
 * The worker's value cache (src/net/vcache.c): what a get of a hot key is
 * answered from instead of the log. It must never answer for another
 * record, stay within its budget, and keep an entry a reply still sends
 * from alive after evicting it.
 *   ctest --test-dir build -R net/vcache --output-on-failure
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/store.h"
#include "net/vcache.h"

static struct vcache vc;

static void
fini(void)
{
    vcache_free(&vc);
}

TestSuite(vcache, .fini = fini);

static uint64_t
hash_of(const char *key)
{
    return store_hash(key, strlen(key));
}

static void
put(uint64_t off, uint64_t cas, const char *key, const char *val)
{
    vcache_insert(&vc, hash_of(key), off, cas, 1000 + off, (uint32_t)off, key,
                  strlen(key), val, strlen(val));
}

static void
expect_hit(uint64_t off, uint64_t cas, const char *key, const char *val)
{
    struct vc_entry *e =
        vcache_find(&vc, hash_of(key), off, cas, key, strlen(key));
    cr_assert(e, "offset %llu (%s) missed", (unsigned long long)off, key);
    cr_assert_eq(e->vlen, strlen(val));
    cr_assert(memcmp(vc_value(e), val, e->vlen) == 0,
              "offset %llu: wrong value", (unsigned long long)off);
    cr_assert_eq(e->flags, (uint32_t)off);
    cr_assert_eq(e->time_ms, 1000 + off);
}

Test(vcache, an_inserted_item_is_found_by_offset_cas_and_key)
{
    cr_assert_eq(vcache_init(&vc, 1 << 20), 0);
    put(4096, 7, "k1", "hello");
    expect_hit(4096, 7, "k1", "hello");
}

Test(vcache, another_cas_offset_or_key_is_a_miss)
{
    cr_assert_eq(vcache_init(&vc, 1 << 20), 0);
    put(4096, 7, "k1", "hello");
    cr_assert_null(vcache_find(&vc, hash_of("k1"), 4096, 8, "k1", 2),
                   "another cas hit");
    cr_assert_null(vcache_find(&vc, hash_of("k2"), 4096, 7, "k2", 2),
                   "another key hit");
    cr_assert_null(vcache_find(&vc, hash_of("k1"), 4097, 7, "k1", 2),
                   "another offset hit");
    /* the same hash with another key (a clash) is not that key */
    cr_assert_null(vcache_find(&vc, hash_of("k1"), 4096, 7, "k9", 2),
                   "another key under the same hash hit");
}

Test(vcache, a_newer_record_of_a_key_replaces_the_older)
{
    cr_assert_eq(vcache_init(&vc, 1 << 20), 0);
    put(4096, 7, "k1", "hello");
    put(8192, 9, "k1", "world");
    expect_hit(8192, 9, "k1", "world");
    cr_assert_null(vcache_find(&vc, hash_of("k1"), 4096, 7, "k1", 2));
    cr_assert_eq(vc.vc_count, 1);
}

Test(vcache, a_zero_budget_caches_nothing)
{
    cr_assert_eq(vcache_init(&vc, 0), 0);
    put(1, 1, "k", "v");
    cr_assert_null(vcache_find(&vc, hash_of("k"), 1, 1, "k", 1));
}

Test(vcache, an_item_over_an_eighth_of_the_budget_is_not_kept)
{
    cr_assert_eq(vcache_init(&vc, 64 * 1024), 0);
    char *big = malloc(9000);
    memset(big, 'x', 8999);
    big[8999] = 0;
    put(1, 1, "big", big);
    cr_assert_null(vcache_find(&vc, hash_of("big"), 1, 1, "big", 3));
    free(big);
}

Test(vcache, it_stays_within_its_budget_and_keeps_what_is_read)
{
    size_t budget = 256 * 1024;
    cr_assert_eq(vcache_init(&vc, budget), 0);
    char val[200];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = 0;
    /* a hot key read between every insert survives 10x the budget */
    put(1, 1, "hot", "hot value");
    unsigned evicted = 0;
    for (uint64_t i = 2; i < 20000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key%llu", (unsigned long long)i);
        evicted += vcache_insert(&vc, hash_of(key), i * 512, i, 0, 0, key,
                                 strlen(key), val, strlen(val));
        cr_assert_leq(vc.vc_bytes, budget, "%zu bytes cached", vc.vc_bytes);
        expect_hit(1, 1, "hot", "hot value");
    }
    cr_assert_gt(evicted, 10000, "only %u evicted", evicted);
    cr_assert_gt(vc.vc_count, 100);
}

Test(vcache, every_entry_stays_findable_through_growth_and_removals)
{
    /* a model: which offsets are in; eviction may drop any, but an entry
     * found must be the one inserted, and a big budget evicts nothing */
    cr_assert_eq(vcache_init(&vc, 64u << 20), 0);
    enum { N = 50000 };
    for (uint64_t i = 0; i < N; i++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        snprintf(val, sizeof(val), "v%llu", (unsigned long long)i);
        put(i * 64, i + 1, key, val);
    }
    /* every third key gets a newer record (removal + insert) */
    for (uint64_t i = 0; i < N; i += 3) {
        char key[32];
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        put(N * 64 + i, i + N + 1, key, "new");
    }
    cr_assert_eq(vc.vc_count, N);
    for (uint64_t i = 0; i < N; i++) {
        char key[32], val[32];
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        if (i % 3 == 0) {
            expect_hit(N * 64 + i, i + N + 1, key, "new");
            cr_assert_null(vcache_find(&vc, hash_of(key), i * 64, i + 1, key,
                                       strlen(key)));
        } else {
            snprintf(val, sizeof(val), "v%llu", (unsigned long long)i);
            expect_hit(i * 64, i + 1, key, val);
        }
    }
}

Test(vcache, an_evicted_entry_a_reply_holds_lives_until_released)
{
    cr_assert_eq(vcache_init(&vc, 64 * 1024), 0);
    put(1, 1, "held", "still here");
    struct vc_entry *e = vcache_find(&vc, hash_of("held"), 1, 1, "held", 4);
    cr_assert(e);
    vcache_ref(e);
    char val[500];
    memset(val, 'z', sizeof(val) - 1);
    val[sizeof(val) - 1] = 0;
    for (uint64_t i = 2; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "f%llu", (unsigned long long)i);
        put(i * 1024, i, key, val);
    }
    cr_assert_null(vcache_find(&vc, hash_of("held"), 1, 1, "held", 4),
                   "never evicted");
    /* under ASan a use after free here fails the test */
    cr_assert(memcmp(vc_value(e), "still here", 10) == 0);
    vcache_unref(e);
}

Test(vcache, clear_drops_every_entry_but_those_a_reply_holds)
{
    cr_assert_eq(vcache_init(&vc, 1 << 20), 0);
    put(1, 1, "held", "still here");
    put(2, 2, "k2", "v2");
    struct vc_entry *e = vcache_find(&vc, hash_of("held"), 1, 1, "held", 4);
    cr_assert(e);
    vcache_ref(e);
    vcache_clear(&vc);
    cr_assert_eq(vc.vc_count, 0);
    cr_assert_eq(vc.vc_bytes, 0);
    cr_assert_null(vcache_find(&vc, hash_of("held"), 1, 1, "held", 4));
    cr_assert_null(vcache_find(&vc, hash_of("k2"), 2, 2, "k2", 2));
    cr_assert(memcmp(vc_value(e), "still here", 10) == 0);
    vcache_unref(e);
    put(2, 3, "k2", "again"); /* usable after */
    expect_hit(2, 3, "k2", "again");
}

/* Eviction in table order once packed the survivors of each sweep into one
 * run thousands of slots long: every probe walked it (a scan of a million
 * keys through the cache slowed to a thousand gets a second). */
Test(vcache, eviction_keeps_the_tables_runs_short)
{
    cr_assert_eq(vcache_init(&vc, 8u << 20), 0);
    char val[100];
    memset(val, 'v', sizeof(val));
    for (uint64_t i = 0; i < 400000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "scan%llu", (unsigned long long)i);
        vcache_insert(&vc, hash_of(key), i * 256, i + 1, 0, 0, key, strlen(key),
                      val, sizeof(val));
    }
    cr_assert_leq(vc.vc_bytes, 8u << 20);
    uint32_t longest = 0, run = 0;
    for (uint32_t i = 0; i < 2 * vc.vc_cap; i++) { /* twice: runs wrap */
        run = vc.vc_slots[i & (vc.vc_cap - 1)].e ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    cr_assert_lt(longest, 200, "a run of %u slots (%u entries in %u)", longest,
                 vc.vc_count, vc.vc_cap);
    cr_assert_gt(vc.vc_count, 1000);
}

Test(vcache, a_key_is_seen_on_its_second_read_not_its_first)
{
    cr_assert_eq(vcache_init(&vc, 1 << 20), 0);
    cr_assert_not(vcache_seen(&vc, hash_of("hot")), "first read: not seen");
    cr_assert(vcache_seen(&vc, hash_of("hot")), "second read: seen");
    cr_assert(vcache_seen(&vc, hash_of("hot")));
}

Test(vcache, a_key_read_again_only_after_many_others_is_not_seen)
{
    cr_assert_eq(vcache_init(&vc, 1 << 20), 0);
    cr_assert_not(vcache_seen(&vc, hash_of("once")));
    char key[32];
    /* an empty cache forgets after a few thousand other keys */
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "other:%d", i);
        vcache_seen(&vc, hash_of(key));
    }
    cr_assert_not(vcache_seen(&vc, hash_of("once")),
                  "seen again after 20000 other keys");
}

Test(vcache, uniform_reads_of_far_more_keys_than_fit_are_seldom_seen)
{
    cr_assert_eq(vcache_init(&vc, 1 << 20), 0);
    char key[32];
    unsigned seen = 0, reads = 200000;
    srand(7);
    for (unsigned i = 0; i < reads; i++) {
        snprintf(key, sizeof(key), "k:%d", rand() % 400000);
        seen += vcache_seen(&vc, hash_of(key));
    }
    /* a window of 4096 keys out of 400000: about 1% repeat within it */
    cr_assert_lt(seen, reads / 20, "%u of %u reads seen", seen, reads);
}
