/* The cas clock (store.h: Versions): generated cas values are the wall
 * clock in microseconds, never at or below the previous one, across
 * restarts with the clock set back; a client's E raises it only near now. */
#include "helpers/store_util.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

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

TestSuite(hlc, .init = setup, .fini = teardown);

static uint64_t
put(const char *key, uint64_t e)
{
    struct store_write w;
    int rc = store_set(t.s,
                       &(struct store_req){.key = key,
                                           .klen = strlen(key),
                                           .mode = STORE_SET,
                                           .val = "v",
                                           .vlen = 1,
                                           .cas_new = e},
                       &w);
    cr_assert_eq(rc, 0);
    cr_assert_eq(store_wait(t.s, w.ack), 0);
    return w.cas;
}

static uint64_t
now_us(void)
{
    return (uint64_t)t.now_ms * 1000;
}

Test(hlc, a_generated_cas_is_the_wall_clock_in_microseconds)
{
    uint64_t c = put("a", 0);
    cr_assert_eq(c, now_us(), "cas %llu, clock %llu", (unsigned long long)c,
                 (unsigned long long)now_us());
    t.now_ms += 1500;
    cr_assert_eq(put("b", 0), now_us());
}

Test(hlc, writes_within_one_microsecond_still_get_growing_cas_values)
{
    uint64_t prev = put("k", 0);
    for (int i = 0; i < 100; i++) {
        uint64_t c = put("k", 0);
        cr_assert_eq(c, prev + 1);
        prev = c;
    }
}

Test(hlc, a_restart_with_the_clock_set_back_an_hour_continues_above_the_floor)
{
    uint64_t last = 0;
    for (int i = 0; i < 10; i++)
        last = put("k", 0);
    ts_close(&t);
    t.now_ms -= 3600 * 1000;
    ts_open(&t);
    cr_assert_eq(put("other", 0), last + 1);
    t.now_ms += 7200 * 1000; /* the clock catches up: time again */
    cr_assert_eq(put("k", 0), now_us());
}

Test(hlc, a_client_version_near_now_raises_the_clock_even_after_a_restart)
{
    uint64_t e = now_us() + 30ull * 1000000; /* 30 s ahead: a skewed DB */
    cr_assert_eq(put("row", e), e);
    cr_assert_eq(put("next", 0), e + 1);
    ts_close(&t);
    ts_open(&t);
    cr_assert_gt(put("after", 0), e + 1);
}

Test(hlc, a_client_version_far_ahead_or_near_2_64_does_not_move_the_clock)
{
    uint64_t far = now_us() + 3600ull * 1000000;
    cr_assert_eq(put("a", far), far);
    cr_assert_eq(put("b", UINT64_MAX - 1), UINT64_MAX - 1);
    cr_assert_eq(put("c", 0), now_us());
    ts_close(&t);
    ts_open(&t);
    t.now_ms += 1;
    cr_assert_eq(put("d", 0), now_us());
}

Test(hlc, small_row_versions_are_stored_as_they_are_and_never_move_the_clock)
{
    cr_assert_eq(put("row", 7), 7);
    uint64_t c;
    free(ts_get(&t, "row", NULL, &c));
    cr_assert_eq(c, 7);
    cr_assert_eq(put("x", 0), now_us());
}
