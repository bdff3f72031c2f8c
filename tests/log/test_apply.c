/*
 * apply_record (apply.c): the one place where the replay rules live, used
 * by recovery, mcdb-fsck and replicas. Driven here on a bare index, record
 * by record, as mcdb-fsck drives it, and in batches, as recovery does.
 */
#include "index/index.h"
#include "log/log_int.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static struct apply a;

static void
setup(void)
{
    a = (struct apply){.ix = index_new(0), .nparts = 1};
}

static void
teardown(void)
{
    index_free(a.ix);
}

TestSuite(apply, .init = setup, .fini = teardown);

static struct rec
rec(uint8_t type, const char *key, uint32_t vlen, uint32_t exptime,
    uint64_t cas, uint64_t time_ms)
{
    return (struct rec){.type = type,
                        .klen = key ? (uint16_t)strlen(key) : 0,
                        .vlen = vlen,
                        .exptime = exptime,
                        .cas = cas,
                        .time_ms = time_ms,
                        .key = key};
}

static bool
find(const char *key, struct index_entry *e)
{
    uint64_t h = index_hash(key, strlen(key));
    index_lock(a.ix, h);
    bool found = index_find(a.ix, h, key, strlen(key), e);
    index_unlock(a.ix, h);
    return found;
}

static void
put(const char *key, uint64_t off, uint64_t cas)
{
    struct rec r = rec(REC_PUT, key, 10, 0, cas, 1000);
    apply_record(&a, &r, off);
}

Test(apply, a_later_put_wins_and_the_index_points_at_its_offset)
{
    put("k", 100, 5);
    put("k", 200, 6);
    struct index_entry e;
    cr_assert(find("k", &e));
    cr_assert_eq(e.off, 200);
    cr_assert_eq(e.cas, 6);
    cr_assert_eq(a.next_cas, 7);
    cr_assert_eq(a.last_off, 200);
}

Test(apply, delete_removes_and_touch_changes_only_the_exptime)
{
    put("k", 100, 5);
    put("j", 150, 6);
    struct rec t = rec(REC_TOUCH, "k", 0, 12345, 5, 2000);
    apply_record(&a, &t, 300);
    struct index_entry e;
    cr_assert(find("k", &e));
    cr_assert_eq(e.exptime, 12345);
    cr_assert_eq(e.off, 100, "a touch is not where the value is");
    struct rec d = rec(REC_DELETE, "j", 0, 0, 7, 3000);
    apply_record(&a, &d, 400);
    cr_assert_not(find("j", &e));
    struct rec t2 = rec(REC_TOUCH, "j", 0, 99, 6, 4000);
    apply_record(&a, &t2, 500);
    cr_assert_not(find("j", &e), "a touch brought back a deleted key");
}

Test(apply, an_immediate_flush_empties_what_came_before_and_not_what_follows)
{
    put("old", 100, 5);
    put("high", 150, 99); /* a client's cas (E): the offset decides */
    struct rec f = rec(REC_FLUSH, NULL, 0, 0, 6, 1000);
    apply_record(&a, &f, 200);
    put("new", 300, 7);
    put("low", 400, 1); /* a client's low cas after the flush: kept */
    struct index_entry e;
    cr_assert_not(find("old", &e));
    cr_assert_not(find("high", &e));
    cr_assert(find("new", &e));
    cr_assert(find("low", &e));
    cr_assert_eq(a.flush_before, 200);
}

Test(apply, a_cas_the_client_chose_does_not_move_the_next_cas)
{
    struct rec r = rec(REC_PUT, "k", 1, 0, UINT64_MAX - 1, 1000);
    r.rflags = REC_F_CAS_CLIENT;
    apply_record(&a, &r, 100);
    cr_assert_eq(a.next_cas, 0);
    put("j", 200, 41);
    cr_assert_eq(a.next_cas, 42);
}

Test(apply, stale_marks_come_from_puts_and_touches)
{
    struct rec r = rec(REC_PUT, "k", 1, 0, 5, 1000);
    r.rflags = REC_F_STALE;
    apply_record(&a, &r, 100);
    struct index_entry e;
    cr_assert(find("k", &e));
    cr_assert(e.stale);
    put("k", 200, 6);
    cr_assert(find("k", &e));
    cr_assert_not(e.stale, "a new value is not stale");
    struct rec t = rec(REC_TOUCH, "k", 0, 77, 8, 2000);
    t.rflags = REC_F_STALE;
    apply_record(&a, &t, 300);
    cr_assert(find("k", &e));
    cr_assert(e.stale);
    cr_assert_eq(e.cas, 8, "md I bumps the cas");
    cr_assert_eq(e.exptime, 77);
    cr_assert_eq(e.off, 200);
}

Test(apply, a_delayed_flush_is_remembered_with_its_time_and_empties_nothing_yet)
{
    put("k", 100, 5);
    /* time_ms 1,000,000 s; takes effect at 2,000,000 s */
    struct rec f = rec(REC_FLUSH, NULL, 0, 2000000, 6, 1000000000ull);
    apply_record(&a, &f, 200);
    struct index_entry e;
    cr_assert(find("k", &e));
    cr_assert_eq(a.flush_deadline, 2000000);
    /* a flush whose time had already come when written is immediate */
    struct rec g = rec(REC_FLUSH, NULL, 0, 500, 8, 1000000000ull);
    apply_record(&a, &g, 300);
    cr_assert_not(find("k", &e));
    cr_assert_eq(a.flush_deadline, 0);
}

Test(apply, a_drop_is_remembered_and_headers_and_footers_change_nothing)
{
    char dv[REC_DROP_VLEN];
    rec_drop_encode(dv, &(struct rec_drop){.base = 0, .end = 65536});
    struct rec d = rec(REC_DROP, NULL, REC_DROP_VLEN, 0, 0, 1000);
    d.val = dv;
    apply_record(&a, &d, 70000);
    cr_assert_eq(a.dropped_end, 65536);
    cr_assert_eq(a.drop_off, 70000);
    struct rec h = rec(REC_SEG_HEADER, NULL, REC_SEG_HEADER_VLEN, 0, 99999, 0);
    apply_record(&a, &h, 65536);
    cr_assert_eq(a.next_cas, 0, "a header's cas field is not a cas");
    cr_assert_eq(index_count(a.ix), 0);
}

Test(apply, records_a_reader_may_skip_are_skipped)
{
    struct rec r = rec(REC_TYPE_SKIPPABLE | 9, "k", 3, 0, 42, 0);
    apply_record(&a, &r, 100);
    struct index_entry e;
    cr_assert_not(find("k", &e));
    cr_assert_eq(a.next_cas, 0);
}

Test(apply, partitions_apply_only_their_own_keys_and_together_all_of_them)
{
    struct apply parts[3];
    for (unsigned p = 0; p < 3; p++)
        parts[p] = (struct apply){.ix = a.ix, .part = p, .nparts = 3};
    char key[32];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "key%d", i);
        struct rec r = rec(REC_PUT, key, 10, 0, (uint64_t)i + 1, 1000);
        for (unsigned p = 0; p < 3; p++)
            apply_record(&parts[p], &r, (uint64_t)i * 100);
    }
    cr_assert_eq(index_count(a.ix), 300);
    for (unsigned p = 1; p < 3; p++)
        apply_merge(&parts[0], &parts[p]);
    cr_assert_eq(parts[0].next_cas, 301);
    cr_assert_eq(parts[0].last_off, 29900);
}

/*
 * Batches (apply_batch_add/run) must give the index record-by-record
 * replay gives, after every batch. Half the records below hit 4 hot keys,
 * so that most batches hold several records of one key (a put then its
 * delete, a delete then a touch...): applied out of order (even two
 * neighbours swapped), some key ends up with another offset, cas or
 * exptime, or present when it should be gone.
 */
#define MIX_KEYS 40
#define MIX_RECS 3000
#define MIX_NOW 2000000u /* expiry is judged at this time */

static uint64_t
mix_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Record i of the mix; key points into keys. */
static struct rec
mix_rec(uint64_t *x, int i, char keys[][16])
{
    static const uint32_t exptimes[] = {0, 1000000, 3000000}; /* past, future */
    if (i == 1234) /* an immediate FLUSH in the middle of a batch */
        return rec(REC_FLUSH, NULL, 0, 0, (uint64_t)i + 10, 1000);
    if (i == 2345) /* a delayed one */
        return rec(REC_FLUSH, NULL, 0, 4000000, (uint64_t)i + 10, 1000);
    uint64_t v = mix_next(x);
    /* half of them on 4 hot keys: neighbours in a batch often share one */
    const char *key = keys[(v >> 50) % 2 ? v % 4 : v % MIX_KEYS];
    uint32_t exptime = exptimes[(v >> 8) % 3];
    unsigned kind = (unsigned)(v >> 16) % 10;
    uint8_t type = kind < 6 ? REC_PUT : kind < 8 ? REC_DELETE : REC_TOUCH;
    struct rec r =
        rec(type, key, type == REC_PUT ? (uint32_t)(v >> 24) % 500 : 0, exptime,
            (uint64_t)i + 10, 1000);
    if ((v >> 40) % 7 == 0)
        r.rflags = REC_F_STALE;
    return r;
}

static void
assert_same_index(index_t *want, index_t *got, char keys[][16])
{
    cr_assert_eq(index_count(got), index_count(want));
    for (int k = 0; k < MIX_KEYS; k++) {
        uint64_t h = index_hash(keys[k], strlen(keys[k]));
        struct index_entry w, g;
        index_lock(want, h);
        bool in_w = index_find(want, h, keys[k], strlen(keys[k]), &w);
        index_unlock(want, h);
        index_lock(got, h);
        bool in_g = index_find(got, h, keys[k], strlen(keys[k]), &g);
        index_unlock(got, h);
        cr_assert_eq(in_g, in_w, "%s: present %d, record by record %d", keys[k],
                     in_g, in_w);
        if (!in_w)
            continue;
        cr_assert_eq(g.off, w.off, "%s: offset", keys[k]);
        cr_assert_eq(g.cas, w.cas, "%s: cas", keys[k]);
        cr_assert_eq(g.exptime, w.exptime, "%s: exptime", keys[k]);
        cr_assert_eq(g.vlen, w.vlen, "%s: vlen", keys[k]);
        cr_assert_eq(g.stale, w.stale, "%s: stale", keys[k]);
    }
}

static void
assert_same_apply(const struct apply *want, const struct apply *got)
{
    cr_assert_eq(got->next_cas, want->next_cas);
    cr_assert_eq(got->flush_before, want->flush_before);
    cr_assert_eq(got->flush_deadline, want->flush_deadline);
    cr_assert_eq(got->max_rec, want->max_rec);
    cr_assert_eq(got->last_off, want->last_off);
}

Test(apply, a_batch_gives_the_same_index_as_record_by_record)
{
    char keys[MIX_KEYS][16];
    for (int k = 0; k < MIX_KEYS; k++)
        snprintf(keys[k], sizeof(keys[k]), "key%d", k);
    struct apply one = a; /* record by record, into a.ix */
    struct apply batched = {.ix = index_new(0), .nparts = 1};
    struct apply_batch b = {0};
    uint64_t x = 88172645463325252ull;
    struct rec recs[MIX_RECS]; /* the batch points at their keys */
    for (int i = 0; i < MIX_RECS; i++) {
        recs[i] = mix_rec(&x, i, keys);
        uint64_t off = 100 + (uint64_t)i * 64;
        apply_record(&one, &recs[i], off);
        apply_batch_add(&batched, &b, &recs[i], off);
        if (b.ab_n == 0) /* a batch was applied: the indexes agree now */
            assert_same_index(one.ix, batched.ix, keys);
    }
    apply_batch_run(&batched, &b);
    cr_assert_eq(b.ab_n, 0);
    cr_assert_gt(index_count(one.ix), 0, "the mix leaves some keys");
    assert_same_apply(&one, &batched);
    assert_same_index(one.ix, batched.ix, keys);

    /* expired items swept as recovery does at the end */
    apply_sweep(&one, one.flush_before, MIX_NOW);
    apply_sweep(&batched, batched.flush_before, MIX_NOW);
    assert_same_index(one.ix, batched.ix, keys);
    index_free(batched.ix);
}

Test(apply, batches_of_two_partitions_give_the_same_index_as_record_by_record)
{
    char keys[MIX_KEYS][16];
    for (int k = 0; k < MIX_KEYS; k++)
        snprintf(keys[k], sizeof(keys[k]), "key%d", k);
    struct apply one = a;
    index_t *ix = index_new(0);
    struct apply parts[2];
    struct apply_batch b[2] = {0};
    for (unsigned p = 0; p < 2; p++)
        parts[p] = (struct apply){.ix = ix, .part = p, .nparts = 2};
    uint64_t x = 1181783497276652981ull;
    struct rec recs[MIX_RECS];
    for (int i = 0; i < MIX_RECS; i++) {
        recs[i] = mix_rec(&x, i, keys);
        uint64_t off = 100 + (uint64_t)i * 64;
        apply_record(&one, &recs[i], off);
        for (unsigned p = 0; p < 2; p++)
            apply_batch_add(&parts[p], &b[p], &recs[i], off);
        if (b[0].ab_n == 0)
            assert_same_index(one.ix, ix, keys);
    }
    for (unsigned p = 0; p < 2; p++)
        apply_batch_run(&parts[p], &b[p]);
    apply_merge(&parts[0], &parts[1]);
    assert_same_apply(&one, &parts[0]);
    assert_same_index(one.ix, ix, keys);
    index_free(ix);
}

Test(apply, the_earliest_exptime_applied_says_whether_a_sweep_can_find_anything)
{
    put("forever", 100, 5);
    cr_assert_not(apply_may_expire(&a, 4000000000u), "nothing has an exptime");
    struct rec r = rec(REC_PUT, "later", 1, 5000, 6, 1000);
    apply_record(&a, &r, 200);
    struct rec t = rec(REC_TOUCH, "forever", 0, 3000, 7, 1000);
    apply_record(&a, &t, 300);
    cr_assert_not(apply_may_expire(&a, 2999));
    cr_assert(apply_may_expire(&a, 3000));
    /* another partition's earlier exptime counts once merged */
    struct apply other = {.ix = a.ix, .nparts = 1};
    struct rec o = rec(REC_PUT, "other", 1, 2000, 8, 1000);
    apply_record(&other, &o, 400);
    apply_merge(&a, &other);
    cr_assert(apply_may_expire(&a, 2000));
    struct apply none = {.ix = a.ix, .nparts = 1};
    apply_merge(&a, &none);
    cr_assert_eq(a.exp_min, 2000,
                 "a partition with no exptime changes nothing");
}
