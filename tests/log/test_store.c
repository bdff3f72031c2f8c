/* memcached's item semantics as the engine implements them. */
#include "helpers/store_util.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct tstore t;

static void
setup(void)
{
    ts_init(&t, 0, 1);
    ts_open(&t);
}

static void
teardown(void)
{
    ts_destroy(&t);
}

TestSuite(store, .init = setup, .fini = teardown);

static int
put(enum store_mode mode, const char *key, const char *val, uint32_t flags,
    int64_t exptime, uint64_t cas, uint64_t *cas_out)
{
    struct store_write w;
    int rc = store_set(t.s,
                       &(struct store_req){.key = key,
                                           .klen = strlen(key),
                                           .mode = mode,
                                           .val = val,
                                           .vlen = strlen(val),
                                           .flags = flags,
                                           .exptime = exptime,
                                           .cas_in = cas},
                       &w);
    if (rc == 0)
        cr_assert_eq(store_wait(t.s, w.ack), 0);
    if (cas_out)
        *cas_out = w.cas;
    return rc;
}

static void
expect(const char *key, const char *val)
{
    char *got = ts_get(&t, key, NULL, NULL);
    if (!val)
        cr_assert_null(got, "%s should be missing, is '%s'", key, got);
    else {
        cr_assert_not_null(got, "%s is missing, expected '%s'", key, val);
        cr_assert_str_eq(got, val, "%s", key);
    }
    free(got);
}

Test(store, set_then_get_returns_value_and_flags)
{
    cr_assert_eq(put(STORE_SET, "k", "v1", 7, 0, 0, NULL), 0);
    uint32_t flags;
    char *v = ts_get(&t, "k", &flags, NULL);
    cr_assert_str_eq(v, "v1");
    cr_assert_eq(flags, 7);
    free(v);
    cr_assert_eq(put(STORE_SET, "k", "v2", 8, 0, 0, NULL), 0);
    expect("k", "v2");
}

Test(store, add_stores_only_a_missing_key)
{
    cr_assert_eq(put(STORE_ADD, "k", "a", 0, 0, 0, NULL), 0);
    cr_assert_eq(put(STORE_ADD, "k", "b", 0, 0, 0, NULL), STORE_NOT_STORED);
    expect("k", "a");
}

Test(store, replace_stores_only_an_existing_key)
{
    cr_assert_eq(put(STORE_REPLACE, "k", "a", 0, 0, 0, NULL), STORE_NOT_STORED);
    expect("k", NULL);
    put(STORE_SET, "k", "a", 0, 0, 0, NULL);
    cr_assert_eq(put(STORE_REPLACE, "k", "b", 0, 0, 0, NULL), 0);
    expect("k", "b");
}

Test(store, append_and_prepend_keep_the_old_flags)
{
    cr_assert_eq(put(STORE_APPEND, "k", "x", 0, 0, 0, NULL), STORE_NOT_STORED);
    cr_assert_eq(put(STORE_PREPEND, "k", "x", 0, 0, 0, NULL), STORE_NOT_STORED);
    put(STORE_SET, "k", "mid", 99, 0, 0, NULL);
    cr_assert_eq(put(STORE_APPEND, "k", "-end", 5, 0, 0, NULL), 0);
    cr_assert_eq(put(STORE_PREPEND, "k", "start-", 6, 0, 0, NULL), 0);
    uint32_t flags;
    char *v = ts_get(&t, "k", &flags, NULL);
    cr_assert_str_eq(v, "start-mid-end");
    cr_assert_eq(flags, 99);
    free(v);
}

Test(store, append_beyond_the_item_size_limit_is_refused)
{
    ts_close(&t);
    t.cfg.max_item_size = 10;
    ts_open(&t);
    put(STORE_SET, "k", "123456", 0, 0, 0, NULL);
    cr_assert_eq(put(STORE_APPEND, "k", "7890", 0, 0, 0, NULL), 0);
    cr_assert_eq(put(STORE_APPEND, "k", "X", 0, 0, 0, NULL), STORE_TOO_LARGE);
    cr_assert_eq(put(STORE_SET, "k", "12345678901", 0, 0, 0, NULL),
                 STORE_TOO_LARGE);
    expect("k", "1234567890");
}

Test(store, cas_succeeds_only_with_the_current_unique)
{
    uint64_t c1, c2;
    cr_assert_eq(put(STORE_CAS, "k", "x", 0, 0, 1, NULL), STORE_NOT_FOUND);
    put(STORE_SET, "k", "a", 0, 0, 0, &c1);
    uint64_t got;
    free(ts_get(&t, "k", NULL, &got));
    cr_assert_eq(got, c1);
    cr_assert_eq(put(STORE_CAS, "k", "b", 0, 0, c1 + 1000, NULL), STORE_EXISTS);
    cr_assert_eq(put(STORE_CAS, "k", "b", 0, 0, c1, &c2), 0);
    cr_assert_gt(c2, c1);
    cr_assert_eq(put(STORE_CAS, "k", "c", 0, 0, c1, NULL), STORE_EXISTS);
    expect("k", "b");
}

Test(store, cas_uniques_are_distinct_and_grow_across_reopen)
{
    uint64_t prev = 0, c;
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i % 10);
        put(STORE_SET, key, "v", 0, 0, 0, &c);
        cr_assert_gt(c, prev);
        prev = c;
    }
    /* delete the key holding the largest cas: the next cas must still grow */
    struct store_write w;
    cr_assert_eq(
        store_delete(t.s, &(struct store_del){.key = "k9", .klen = 2}, &w), 0);
    store_wait(t.s, w.ack);
    ts_close(&t);
    ts_open(&t);
    put(STORE_SET, "new", "v", 0, 0, 0, &c);
    cr_assert_gt(c, prev, "cas %" PRIu64 " after reopen <= %" PRIu64, c, prev);
}

Test(store, delete_removes_and_reports_missing_keys)
{
    struct store_write w;
    cr_assert_eq(
        store_delete(t.s, &(struct store_del){.key = "k", .klen = 1}, &w),
        STORE_NOT_FOUND);
    uint64_t c;
    put(STORE_SET, "k", "v", 0, 0, 0, &c);
    cr_assert_eq(store_delete(t.s,
                              &(struct store_del){.key = "k",
                                                  .klen = 1,
                                                  .cas_in = c + 1,
                                                  .has_cas = true},
                              &w),
                 STORE_EXISTS);
    cr_assert_eq(
        store_delete(t.s,
                     &(struct store_del){
                         .key = "k", .klen = 1, .cas_in = c, .has_cas = true},
                     &w),
        0);
    store_wait(t.s, w.ack);
    expect("k", NULL);
    ts_close(&t);
    ts_open(&t);
    expect("k", NULL);
}

static uint64_t
arith(const char *key, int incr, uint64_t delta, int *rc)
{
    struct store_write w;
    struct store_arith_res res;
    struct store_arith_req q = {
        .key = key, .klen = strlen(key), .incr = incr, .delta = delta};
    *rc = store_arith(t.s, &q, &res, &w);
    if (*rc == 0)
        store_wait(t.s, w.ack);
    return res.value;
}

Test(store, incr_and_decr_follow_memcached_edges)
{
    int rc;
    arith("n", 1, 1, &rc);
    cr_assert_eq(rc, STORE_NOT_FOUND);
    put(STORE_SET, "n", "10", 3, 0, 0, NULL);
    cr_assert_eq(arith("n", 1, 5, &rc), 15);
    cr_assert_eq(arith("n", 0, 100, &rc), 0, "decr stops at 0");
    expect("n", "0");
    put(STORE_SET, "n", "18446744073709551615", 0, 0, 0, NULL);
    cr_assert_eq(arith("n", 1, 2, &rc), 1, "incr wraps at 2^64");
    put(STORE_SET, "n", "18446744073709551616", 0, 0, 0, NULL);
    arith("n", 1, 1, &rc);
    cr_assert_eq(rc, STORE_NON_NUMERIC, "a value over 2^64-1 is not a number");
    put(STORE_SET, "n", "12abc", 0, 0, 0, NULL);
    arith("n", 1, 1, &rc);
    cr_assert_eq(rc, STORE_NON_NUMERIC);
    expect("n", "12abc");
    put(STORE_SET, "n", "", 0, 0, 0, NULL);
    arith("n", 0, 1, &rc);
    cr_assert_eq(rc, STORE_NON_NUMERIC);
    put(STORE_SET, "n", "7", 42, 0, 0, NULL);
    arith("n", 1, 1, &rc);
    uint32_t flags;
    char *v = ts_get(&t, "n", &flags, NULL);
    cr_assert_str_eq(v, "8");
    cr_assert_eq(flags, 42, "incr keeps the flags");
    free(v);
}

Test(store, exptime_zero_never_expires)
{
    put(STORE_SET, "k", "v", 0, 0, 0, NULL);
    t.now_ms += 100LL * 365 * 86400 * 1000;
    expect("k", "v");
}

Test(store, exptime_up_to_thirty_days_is_relative)
{
    put(STORE_SET, "k", "v", 0, 30 * 86400, 0, NULL);
    put(STORE_SET, "short", "v", 0, 10, 0, NULL);
    t.now_ms += 9 * 1000;
    expect("short", "v");
    t.now_ms += 1000;
    expect("short", NULL);
    t.now_ms += 30LL * 86400 * 1000;
    expect("k", NULL);
}

Test(store, exptime_beyond_thirty_days_is_absolute)
{
    int64_t now = t.now_ms / 1000;
    put(STORE_SET, "future", "v", 0, now + 100, 0, NULL);
    put(STORE_SET, "past", "v", 0, now - 100, 0, NULL);
    expect("past", NULL);
    expect("future", "v");
    t.now_ms += 100 * 1000;
    expect("future", NULL);
}

Test(store, negative_exptime_is_already_expired_and_hides_the_old_value)
{
    put(STORE_SET, "k", "old", 0, 0, 0, NULL);
    cr_assert_eq(put(STORE_SET, "k", "new", 0, -1, 0, NULL), 0);
    expect("k", NULL);
    ts_close(&t);
    ts_open(&t);
    expect("k", NULL);
}

Test(store, expired_items_are_not_loaded_at_recovery)
{
    put(STORE_SET, "k", "v", 0, 10, 0, NULL);
    put(STORE_SET, "keep", "v", 0, 0, 0, NULL);
    ts_close(&t);
    t.now_ms += 11 * 1000;
    ts_open(&t);
    expect("k", NULL);
    expect("keep", "v");
    struct store_stats st;
    store_stats(t.s, &st);
    cr_assert_eq(st.items, 1);
}

Test(store, touch_changes_the_exptime_and_survives_reopen)
{
    struct store_write w;
    cr_assert_eq(store_touch(t.s, "k", 1, 10, &w), STORE_NOT_FOUND);
    put(STORE_SET, "k", "v", 0, 10, 0, NULL);
    cr_assert_eq(store_touch(t.s, "k", 1, 100, &w), 0);
    store_wait(t.s, w.ack);
    t.now_ms += 50 * 1000;
    expect("k", "v");
    ts_close(&t);
    ts_open(&t);
    expect("k", "v");
    t.now_ms += 50 * 1000;
    expect("k", NULL);
}

Test(store, flush_all_hides_everything_stored_before_it)
{
    put(STORE_SET, "a", "1", 0, 0, 0, NULL);
    put(STORE_SET, "b", "2", 0, 0, 0, NULL);
    struct store_write w;
    cr_assert_eq(store_flush(t.s, 0, &w), 0);
    store_wait(t.s, w.ack);
    expect("a", NULL);
    put(STORE_SET, "c", "3", 0, 0, 0, NULL);
    expect("c", "3");
    ts_close(&t);
    ts_open(&t);
    expect("a", NULL);
    expect("b", NULL);
    expect("c", "3");
    struct store_stats st;
    store_stats(t.s, &st);
    cr_assert_eq(st.items, 1);
}

Test(store, flush_all_with_delay_takes_effect_at_its_time)
{
    put(STORE_SET, "before", "1", 0, 0, 0, NULL);
    struct store_write w;
    cr_assert_eq(store_flush(t.s, 10, &w), 0);
    store_wait(t.s, w.ack);
    t.now_ms += 5 * 1000;
    put(STORE_SET, "during", "2", 0, 0, 0, NULL);
    expect("before", "1");
    expect("during", "2");
    t.now_ms += 5 * 1000;
    expect("before", NULL);
    expect("during", NULL);
    put(STORE_SET, "after", "3", 0, 0, 0, NULL);
    ts_close(&t);
    ts_open(&t);
    expect("before", NULL);
    expect("during", NULL);
    expect("after", "3");
}

Test(store, a_delayed_flush_that_came_due_while_closed_applies_at_open)
{
    put(STORE_SET, "before", "1", 0, 0, 0, NULL);
    struct store_write w;
    store_flush(t.s, 10, &w);
    store_wait(t.s, w.ack);
    ts_close(&t);
    t.now_ms += 20 * 1000;
    ts_open(&t);
    expect("before", NULL);
    put(STORE_SET, "after", "2", 0, 0, 0, NULL);
    ts_close(&t);
    ts_open(&t);
    expect("after", "2");
}

Test(store, keys_must_be_1_to_250_bytes)
{
    char key[252];
    memset(key, 'k', sizeof(key));
    struct store_write w;
    cr_assert_eq(store_set(t.s,
                           &(struct store_req){.key = key,
                                               .klen = 250,
                                               .mode = STORE_SET,
                                               .val = "v",
                                               .vlen = 1},
                           &w),
                 0);
    cr_assert_eq(store_set(t.s,
                           &(struct store_req){.key = key,
                                               .klen = 251,
                                               .mode = STORE_SET,
                                               .val = "v",
                                               .vlen = 1},
                           &w),
                 STORE_BAD_KEY);
    cr_assert_eq(store_set(t.s,
                           &(struct store_req){.key = key,
                                               .klen = 0,
                                               .mode = STORE_SET,
                                               .val = "v",
                                               .vlen = 1},
                           &w),
                 STORE_BAD_KEY);
}

Test(store, binary_values_and_empty_values_round_trip)
{
    struct store_write w;
    char val[300];
    for (int i = 0; i < 300; i++)
        val[i] = (char)i;
    cr_assert_eq(store_set(t.s,
                           &(struct store_req){.key = "bin",
                                               .klen = 3,
                                               .mode = STORE_SET,
                                               .val = val,
                                               .vlen = 300},
                           &w),
                 0);
    cr_assert_eq(store_set(t.s,
                           &(struct store_req){.key = "empty",
                                               .klen = 5,
                                               .mode = STORE_SET,
                                               .val = "",
                                               .vlen = 0},
                           &w),
                 0);
    store_wait(t.s, w.ack);
    ts_close(&t);
    ts_open(&t);
    struct store_item it;
    void *buf;
    cr_assert_eq(store_get(t.s, "bin", 3, &it, &buf), 0);
    cr_assert_eq(it.vlen, 300);
    cr_assert(memcmp(it.value, val, 300) == 0);
    free(buf);
    cr_assert_eq(store_get(t.s, "empty", 5, &it, &buf), 0);
    cr_assert_eq(it.vlen, 0);
    free(buf);
}

Test(store, stats_count_items_and_bytes)
{
    put(STORE_SET, "a", "12345", 0, 0, 0, NULL);
    put(STORE_SET, "b", "123", 0, 0, 0, NULL);
    put(STORE_SET, "a", "1", 0, 0, 0, NULL);
    struct store_stats st;
    store_stats(t.s, &st);
    cr_assert_eq(st.items, 2);
    cr_assert_eq(st.value_bytes, 4);
    cr_assert_eq(st.live_bytes, 40 + 1 + 1 + 40 + 1 + 3);
    cr_assert_eq(st.segments, 1);
    cr_assert_geq(st.durable_offset, st.log_end - 0);
    cr_assert_eq(st.error, 0);
    cr_assert_gt(st.index_bytes, 0);
}

Test(store, a_second_open_of_the_same_dir_fails_naming_the_holder)
{
    struct store_config cfg = t.cfg;
    store_t *s2;
    char err[512];
    int rc = store_open(&cfg, &s2, err, sizeof(err));
    cr_assert_eq(rc, STORE_LOCKED);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    cr_assert(strstr(err, pid), "message does not name pid %s: %s", pid, err);
    cr_assert(strstr(err, t.dir), "message does not name the dir: %s", err);
}
