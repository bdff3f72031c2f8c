/*
 * A real C client against the server under test: libmemcached (Debian's
 * libmemcached-dev) in its default ASCII mode. Each test starts its own
 * server.
 *
 *   build/tests/test_net_libmemcached
 *   MCDB_TEST_TARGET=memcached build/tests/test_net_libmemcached
 *
 * Without libmemcached at build time the whole suite is skipped (exit 77).
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

#ifndef MCDB_HAVE_LIBMEMCACHED

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    fprintf(stderr, "SKIP: built without libmemcached "
                    "(apt-get install libmemcached-dev)\n");
    exit(77);
}
Test(libmemcached, needs_libmemcached)
{
}

#else

#include <libmemcached/memcached.h>

TG_SUITE_NEEDS(0)

static struct th_server srv;
static memcached_st *mc;

static void
setup(void)
{
    cr_assert_eq(tg_start(&srv, NULL), 0, "%s did not start", tg_name());
    mc = memcached_create(NULL);
    cr_assert(mc);
    cr_assert_eq(memcached_server_add(mc, "127.0.0.1", (in_port_t)srv.port),
                 MEMCACHED_SUCCESS);
}

static void
teardown(void)
{
    if (mc)
        memcached_free(mc);
    tg_report_death(&srv);
    th_server_cleanup(&srv);
}

TestSuite(libmemcached, .init = setup, .fini = teardown, .timeout = 60);

#define expect_rc(rc, want)                                                    \
    cr_assert_eq((rc), (want), "%s: got %s (%s), expected %s", #rc,            \
                 memcached_strerror(mc, (rc)),                                 \
                 memcached_last_error_message(mc),                             \
                 memcached_strerror(mc, (want)))

static memcached_return_t
set(const char *key, const char *val, uint32_t flags, time_t exptime)
{
    return memcached_set(mc, key, strlen(key), val, strlen(val), exptime,
                         flags);
}

/* get key: its value must be want (NULL: not found) with flags. */
static void
expect_value(const char *key, const char *want, size_t wantlen, uint32_t flags)
{
    size_t len = 0;
    uint32_t fl = 0;
    memcached_return_t rc;
    char *v = memcached_get(mc, key, strlen(key), &len, &fl, &rc);
    if (!want) {
        cr_assert_null(v, "%s: found \"%.*s\", expected nothing", key, (int)len,
                       v);
        expect_rc(rc, MEMCACHED_NOTFOUND);
        return;
    }
    /* libmemcached returns NULL and SUCCESS for an empty value. */
    cr_assert(v || (wantlen == 0 && rc == MEMCACHED_SUCCESS),
              "%s: %s, expected a value", key, memcached_strerror(mc, rc));
    cr_assert_eq(len, wantlen, "%s: %zu bytes, expected %zu", key, len,
                 wantlen);
    cr_assert(len == 0 || memcmp(v, want, len) == 0,
              "%s: \"%.*s\", expected \"%s\"", key, (int)len, v, want);
    cr_assert_eq(fl, flags, "%s: flags %u, expected %u", key, fl, flags);
    free(v);
}

#define expect_str(key, want, flags)                                           \
    expect_value(key, want, strlen(want), flags)

Test(libmemcached, set_then_get_returns_the_value_and_its_flags)
{
    expect_rc(set("k", "hello", 42, 0), MEMCACHED_SUCCESS);
    expect_str("k", "hello", 42);
    expect_rc(set("k", "again", 7, 0), MEMCACHED_SUCCESS);
    expect_str("k", "again", 7);
}

Test(libmemcached, get_of_a_missing_key_is_not_found)
{
    expect_value("nokey", NULL, 0, 0);
}

/* Fetch every result of the mget in flight: the number of hits. Checks each
 * hit's value and flags against what set_many stored. */
static int
fetch_all(int n, int *seen)
{
    int hits = 0;
    memcached_return_t rc;
    memcached_result_st *r;
    while ((r = memcached_fetch_result(mc, NULL, &rc)) != NULL) {
        int i;
        char key[64], val[64];
        snprintf(key, sizeof(key), "%.*s", (int)memcached_result_key_length(r),
                 memcached_result_key_value(r));
        cr_assert_eq(sscanf(key, "multi-get-key-number-%d", &i), 1, "key %s",
                     key);
        cr_assert(i >= 0 && i < n && i % 4, "unexpected key %s", key);
        snprintf(val, sizeof(val), "value of %d", i);
        cr_assert_eq(memcached_result_length(r), strlen(val));
        cr_assert(memcmp(memcached_result_value(r), val, strlen(val)) == 0);
        cr_assert_eq(memcached_result_flags(r), (uint32_t)i);
        seen[i]++;
        hits++;
        memcached_result_free(r);
    }
    cr_assert(rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND,
              "fetch ended with %s", memcached_strerror(mc, rc));
    return hits;
}

static void
mget_many(int n)
{
    char **keys = calloc((size_t)n, sizeof(*keys));
    size_t *lens = calloc((size_t)n, sizeof(*lens));
    int *seen = calloc((size_t)n, sizeof(*seen));
    int want = 0;
    for (int i = 0; i < n; i++) {
        keys[i] = malloc(64);
        lens[i] = (size_t)snprintf(keys[i], 64, "multi-get-key-number-%d", i);
        if (i % 4) { /* every fourth key is missing */
            char val[64];
            snprintf(val, sizeof(val), "value of %d", i);
            expect_rc(set(keys[i], val, (uint32_t)i, 0), MEMCACHED_SUCCESS);
            want++;
        }
    }
    expect_rc(memcached_mget(mc, (const char *const *)keys, lens, (size_t)n),
              MEMCACHED_SUCCESS);
    cr_assert_eq(fetch_all(n, seen), want);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(seen[i], i % 4 ? 1 : 0, "key %d seen %d times", i,
                     seen[i]);
        free(keys[i]);
    }
    free(keys);
    free(lens);
    free(seen);
}

Test(libmemcached, mget_returns_every_stored_key_with_its_flags)
{
    mget_many(100);
}

/* libmemcached puts all the keys of one server on one "get" line, here
 * about 27 KB: memcached reads key lists of any length. */
Test(libmemcached, mget_of_a_thousand_keys_returns_every_hit)
{
    mget_many(1000);
}

Test(libmemcached, add_replace_append_prepend_follow_the_protocol)
{
    expect_rc(memcached_add(mc, "k", 1, "b", 1, 0, 5), MEMCACHED_SUCCESS);
    expect_rc(memcached_add(mc, "k", 1, "x", 1, 0, 0), MEMCACHED_NOTSTORED);
    expect_rc(memcached_replace(mc, "nokey", 5, "x", 1, 0, 0),
              MEMCACHED_NOTSTORED);
    expect_rc(memcached_append(mc, "nokey", 5, "x", 1, 0, 0),
              MEMCACHED_NOTSTORED);
    expect_rc(memcached_prepend(mc, "nokey", 5, "x", 1, 0, 0),
              MEMCACHED_NOTSTORED);
    expect_rc(memcached_append(mc, "k", 1, "cd", 2, 0, 9), MEMCACHED_SUCCESS);
    expect_rc(memcached_prepend(mc, "k", 1, "a", 1, 0, 9), MEMCACHED_SUCCESS);
    expect_str("k", "abcd", 5); /* append and prepend keep the flags */
    expect_rc(memcached_replace(mc, "k", 1, "new", 3, 0, 6), MEMCACHED_SUCCESS);
    expect_str("k", "new", 6);
    expect_value("nokey", NULL, 0, 0);
}

/* The cas unique of key from a gets (mget with SUPPORT_CAS). */
static uint64_t
gets_cas(const char *key)
{
    const char *keys[] = {key};
    size_t lens[] = {strlen(key)};
    expect_rc(memcached_mget(mc, keys, lens, 1), MEMCACHED_SUCCESS);
    memcached_return_t rc;
    memcached_result_st *r = memcached_fetch_result(mc, NULL, &rc);
    cr_assert(r, "gets %s: %s", key, memcached_strerror(mc, rc));
    uint64_t cas = memcached_result_cas(r);
    memcached_result_free(r);
    while ((r = memcached_fetch_result(mc, NULL, &rc)) != NULL)
        memcached_result_free(r);
    cr_assert_neq(cas, 0, "gets %s returned no cas unique", key);
    return cas;
}

Test(libmemcached, cas_with_the_unique_from_gets_succeeds_and_a_stale_one_fails)
{
    expect_rc(memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1),
              MEMCACHED_SUCCESS);
    expect_rc(set("k", "v1", 0, 0), MEMCACHED_SUCCESS);
    uint64_t cas = gets_cas("k");
    expect_rc(memcached_cas(mc, "k", 1, "v2", 2, 0, 3, cas), MEMCACHED_SUCCESS);
    expect_str("k", "v2", 3);
    expect_rc(memcached_cas(mc, "k", 1, "v3", 2, 0, 3, cas),
              MEMCACHED_DATA_EXISTS);
    expect_str("k", "v2", 3);
    uint64_t cas2 = gets_cas("k");
    cr_assert_neq(cas2, cas);
    expect_rc(memcached_cas(mc, "nokey", 5, "v", 1, 0, 0, cas2),
              MEMCACHED_NOTFOUND);
}

Test(libmemcached, increment_and_decrement_return_the_new_value)
{
    uint64_t v = 0;
    expect_rc(set("n", "10", 0, 0), MEMCACHED_SUCCESS);
    expect_rc(memcached_increment(mc, "n", 1, 5, &v), MEMCACHED_SUCCESS);
    cr_assert_eq(v, 15);
    expect_rc(memcached_decrement(mc, "n", 1, 20, &v), MEMCACHED_SUCCESS);
    cr_assert_eq(v, 0, "decr stops at zero");
    expect_rc(set("n", "18446744073709551615", 0, 0), MEMCACHED_SUCCESS);
    expect_rc(memcached_increment(mc, "n", 1, 2, &v), MEMCACHED_SUCCESS);
    cr_assert_eq(v, 1, "incr wraps at 2^64");
    expect_rc(memcached_increment(mc, "nokey", 5, 1, &v), MEMCACHED_NOTFOUND);
    expect_rc(memcached_decrement(mc, "nokey", 5, 1, &v), MEMCACHED_NOTFOUND);
    expect_rc(set("s", "text", 0, 0), MEMCACHED_SUCCESS);
    cr_assert_neq(memcached_increment(mc, "s", 1, 1, &v), MEMCACHED_SUCCESS);
    expect_str("s", "text", 0);
}

Test(libmemcached, delete_removes_the_key)
{
    expect_rc(set("k", "x", 0, 0), MEMCACHED_SUCCESS);
    expect_rc(memcached_delete(mc, "k", 1, 0), MEMCACHED_SUCCESS);
    expect_value("k", NULL, 0, 0);
    expect_rc(memcached_delete(mc, "k", 1, 0), MEMCACHED_NOTFOUND);
}

Test(libmemcached, touch_sets_a_new_expiry)
{
    expect_rc(set("k", "x", 0, 0), MEMCACHED_SUCCESS);
    expect_rc(set("gone", "x", 0, 0), MEMCACHED_SUCCESS);
    expect_rc(memcached_touch(mc, "k", 1, 1000), MEMCACHED_SUCCESS);
    expect_rc(memcached_touch(mc, "nokey", 5, 1000), MEMCACHED_NOTFOUND);
    /* An absolute time in the past: expired at once. */
    expect_rc(memcached_touch(mc, "gone", 4, time(NULL) - 3600),
              MEMCACHED_SUCCESS);
    expect_str("k", "x", 0);
    expect_value("gone", NULL, 0, 0);
}

Test(libmemcached, flush_removes_every_key)
{
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        expect_rc(set(key, "x", 0, 0), MEMCACHED_SUCCESS);
    }
    expect_rc(memcached_flush(mc, 0), MEMCACHED_SUCCESS);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        expect_value(key, NULL, 0, 0);
    }
}

Test(libmemcached, noreply_writes_are_applied_in_order_before_later_reads)
{
    expect_rc(memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NOREPLY, 1),
              MEMCACHED_SUCCESS);
    for (int i = 0; i < 200; i++) {
        char key[16], val[32];
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "value %d", i);
        memcached_return_t rc = set(key, val, (uint32_t)i, 0);
        cr_assert(rc == MEMCACHED_SUCCESS || rc == MEMCACHED_BUFFERED, "%s",
                  memcached_strerror(mc, rc));
    }
    memcached_return_t rc = memcached_delete(mc, "k0", 2, 0);
    cr_assert(rc == MEMCACHED_SUCCESS || rc == MEMCACHED_BUFFERED);
    rc = memcached_append(mc, "k1", 2, "+", 1, 0, 0);
    cr_assert(rc == MEMCACHED_SUCCESS || rc == MEMCACHED_BUFFERED);
    /* A read on the same connection comes after them. */
    expect_rc(memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_NOREPLY, 0),
              MEMCACHED_SUCCESS);
    expect_value("k0", NULL, 0, 0);
    expect_str("k1", "value 1+", 1);
    for (int i = 2; i < 200; i++) {
        char key[16], val[32];
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "value %d", i);
        expect_str(key, val, (uint32_t)i);
    }
    /* The connection is in step: a normal write gets its own reply. */
    expect_rc(memcached_add(mc, "k5", 2, "x", 1, 0, 0), MEMCACHED_NOTSTORED);
}

Test(libmemcached, binary_values_round_trip)
{
    size_t sizes[] = {0, 1, 255, 256, 4096, 65537, 300000};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(*sizes); s++) {
        size_t n = sizes[s];
        char *v = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            v[i] = (char)((i * 7 + s) & 0xff); /* NUL, \r, \n, 0x80... */
        if (n > 10)
            memcpy(v + n / 2, "\r\nEND\r\n", 7);
        char key[32];
        snprintf(key, sizeof(key), "bin%zu", n);
        expect_rc(memcached_set(mc, key, strlen(key), v, n, 0, (uint32_t)s),
                  MEMCACHED_SUCCESS);
        expect_value(key, v, n, (uint32_t)s);
        free(v);
    }
}

Test(libmemcached, value_over_the_size_limit_is_refused)
{
    expect_rc(set("k", "old", 0, 0), MEMCACHED_SUCCESS);
    size_t n = 2 * 1024 * 1024;
    char *v = calloc(1, n);
    memcached_return_t rc = memcached_set(mc, "k", 1, v, n, 0, 0);
    free(v);
    cr_assert(rc == MEMCACHED_E2BIG || rc == MEMCACHED_SERVER_ERROR,
              "set of 2 MB: %s", memcached_strerror(mc, rc));
    /* The connection is still usable and the old value is gone. */
    expect_value("k", NULL, 0, 0);
    expect_rc(set("k", "new", 0, 0), MEMCACHED_SUCCESS);
    expect_str("k", "new", 0);
}

Test(libmemcached, version_and_stat_answer)
{
    expect_rc(memcached_version(mc), MEMCACHED_SUCCESS);
    expect_rc(set("k", "x", 0, 0), MEMCACHED_SUCCESS);
    memcached_return_t rc;
    memcached_stat_st *st = memcached_stat(mc, NULL, &rc);
    expect_rc(rc, MEMCACHED_SUCCESS);
    cr_assert(st);
    char *items = memcached_stat_get_value(mc, st, "curr_items", &rc);
    cr_assert(items, "no curr_items: %s", memcached_strerror(mc, rc));
    cr_assert_str_eq(items, "1");
    char *pid = memcached_stat_get_value(mc, st, "pid", &rc);
    cr_assert(pid);
    cr_assert_eq(atoi(pid), srv.pid);
    free(items);
    free(pid);
    memcached_stat_free(mc, st);
}

#endif
