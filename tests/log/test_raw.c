/*
 * The log as bytes (raw.c, role.c, resync.c): a replica store fed its
 * primary's bytes, with no network in between. The primary is read with
 * store_span; the replica gets its first log by a full copy, then appends.
 */
#include "helpers/server.h"
#include "helpers/store_util.h"
#include "helpers/tool.h"
#include "log/record.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG (64u << 10)

static struct tstore p, r; /* primary, replica */

static void
setup(void)
{
    ts_init(&p, SEG, 0);
    p.cfg.compactor = false; /* the tests compact when they mean to */
    ts_open(&p);
    ts_init(&r, SEG, 0);
    r.cfg.replica_of = "127.0.0.1:1";
}

static void
teardown(void)
{
    ts_destroy(&p);
    ts_destroy(&r);
}

TestSuite(raw, .init = setup, .fini = teardown, .timeout = 120);

/* The primary's log bytes [from, to) (durable), read through store_span. */
static char *
primary_bytes(uint64_t from, uint64_t to)
{
    char *buf = malloc(to - from + 1);
    uint64_t off = from;
    while (off < to) {
        struct store_span sp;
        cr_assert_eq(store_span(p.s, off, to, &sp), 0);
        cr_assert_gt(sp.len, 0, "nothing at %" PRIu64, off);
        ssize_t n = pread(sp.fd, buf + (off - from), sp.len, (off_t)sp.pos);
        cr_assert_eq(n, (ssize_t)sp.len);
        store_span_done(&sp);
        off += sp.len;
    }
    return buf;
}

static void
fill(const char *prefix, int n, size_t vlen)
{
    char key[64], *val = malloc(vlen + 1);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        memset(val, 'a' + i % 26, vlen);
        val[vlen] = '\0';
        cr_assert_eq(ts_set(&p, key, val, (uint32_t)i, 0), 0);
    }
    free(val);
}

/* The replica gets its first log: a full copy of [log start, upto). */
static void
first_copy(uint64_t upto)
{
    ts_open(&r);
    struct logdir_meta m;
    store_meta(p.s, &m);
    uint64_t start = store_log_start(p.s);
    struct store_copy *c;
    char err[512];
    cr_assert_eq(store_copy_begin(r.s, &m, start, &c, err, sizeof(err)), 0,
                 "%s", err);
    char *b = primary_bytes(start, upto);
    size_t used;
    cr_assert_eq(store_copy_add(c, b, upto - start, &used, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(used, upto - start);
    free(b);
    cr_assert_eq(store_copy_finish(r.s, c, false, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(store_log_end(r.s), upto);
}

/* Feed [from, to) to the replica in chunks of `chunk` bytes, keeping what
 * a call did not take, as a receiver does. */
static void
feed(uint64_t from, uint64_t to, size_t chunk)
{
    char *b = primary_bytes(from, to);
    size_t have = 0, done = 0, total = to - from;
    while (done < total) {
        size_t add = chunk < total - done - have ? chunk : total - done - have;
        have += add;
        size_t used;
        char err[512];
        int rc = store_append_raw(r.s, from + done, b + done, have, &used, err,
                                  sizeof(err));
        cr_assert_eq(rc, 0, "%s", err);
        done += used;
        have -= used;
        cr_assert(add > 0 || used > 0, "stuck at %zu", done);
    }
    free(b);
}

/* Every segment file of the replica equals the primary's, and both hold
 * the same set of segments. */
static void
same_files(void)
{
    uint64_t pb[64], rb[64];
    size_t pn = ts_segments(&p, pb, 64), rn = ts_segments(&r, rb, 64);
    cr_assert_eq(rn, pn,
                 "replica has %zu segments (first %" PRIu64 ", last "
                 "%" PRIu64 "), primary %zu (%" PRIu64 ", %" PRIu64 ")",
                 rn, rn ? rb[0] : 0, rn ? rb[rn - 1] : 0, pn, pn ? pb[0] : 0,
                 pn ? pb[pn - 1] : 0);
    for (size_t i = 0; i < pn; i++) {
        cr_assert_eq(rb[i], pb[i]);
        char a[4096], b[4096];
        ts_seg_path(&p, pb[i], a, sizeof(a));
        ts_seg_path(&r, rb[i], b, sizeof(b));
        size_t la, lb;
        char *x = tt_slurp(a, &la), *y = tt_slurp(b, &lb);
        cr_assert_eq(lb, la, "%s: %zu bytes, primary's %zu", b, lb, la);
        cr_assert(memcmp(x, y, la) == 0, "%s differs from the primary's", b);
        free(x);
        free(y);
    }
}

static void
same_keys(const char *prefix, int n)
{
    char key[64];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        uint32_t fp = 0, fr = 0;
        uint64_t cp = 0, cr = 0;
        char *vp = ts_get(&p, key, &fp, &cp), *vr = ts_get(&r, key, &fr, &cr);
        if (!vp) {
            cr_assert_null(vr, "%s: on the replica only", key);
            continue;
        }
        cr_assert_not_null(vr, "%s: missing on the replica", key);
        cr_assert_str_eq(vr, vp, "%s differs", key);
        cr_assert_eq(fr, fp);
        cr_assert_eq(cr, cp, "%s: cas %" PRIu64 " vs %" PRIu64, key, cr, cp);
        free(vp);
        free(vr);
    }
}

/* Wait until the replica's log is durable up to its end. */
static void
replica_durable(void)
{
    uint64_t end = store_log_end(r.s);
    for (int i = 0; i < 5000 && store_durable(r.s) < end; i++)
        usleep(1000);
    cr_assert_geq(store_durable(r.s), end);
}

Test(raw, a_replica_before_its_first_copy_answers_syncing_and_refuses_writes)
{
    ts_open(&r);
    cr_assert(store_is_replica(r.s));
    struct store_loc loc;
    cr_assert_eq(store_lookup(r.s, "k", 1, &loc), STORE_SYNCING);
    struct store_write w;
    cr_assert_eq(store_set(r.s,
                           &(struct store_req){.key = "k",
                                               .klen = 1,
                                               .mode = STORE_SET,
                                               .val = "v",
                                               .vlen = 1},
                           &w),
                 STORE_REPLICA);
    cr_assert_eq(
        store_delete(r.s, &(struct store_del){.key = "k", .klen = 1}, &w),
        STORE_REPLICA);
    cr_assert_eq(store_flush(r.s, 0, &w), STORE_REPLICA);
    cr_assert_str_eq(store_strerror(STORE_REPLICA), "read-only replica");
}

Test(raw, bytes_fed_one_at_a_time_across_segments_give_identical_files)
{
    fill("a", 20, 6000); /* about two segments */
    uint64_t mid = store_durable(p.s);
    first_copy(mid);
    fill("b", 30, 5000);
    cr_assert_eq(store_delete(p.s, &(struct store_del){.key = "a3", .klen = 2},
                              &(struct store_write){0}),
                 0);
    struct store_write w;
    cr_assert_eq(store_touch(p.s, "a4", 2, 1000, &w), 0);
    cr_assert_eq(store_wait(p.s, w.ack), 0);
    uint64_t end = store_durable(p.s);
    feed(mid, end, 1);
    cr_assert_eq(store_log_end(r.s), end);
    replica_durable();
    same_files();
    same_keys("a", 20);
    same_keys("b", 30);
    struct store_loc loc;
    cr_assert_eq(store_lookup(r.s, "a3", 2, &loc), STORE_NOT_FOUND);
}

Test(raw, a_split_at_every_byte_around_a_segment_boundary_is_taken_whole)
{
    fill("a", 5, 6000);
    uint64_t mid = store_durable(p.s);
    fill("c", 5, 6000);
    fill("b", 5, 6000); /* rolls over to the next segment */
    uint64_t end = store_durable(p.s);
    uint64_t pb[8];
    cr_assert_geq(ts_segments(&p, pb, 8), 2);
    char *b = primary_bytes(mid, end);
    store_close(p.s); /* its files are the reference now */
    p.s = NULL;
    /* Every split point from the last 64 bytes of the first segment (the
     * end of its last record) to the first 64 of the next (the next
     * record's 40-byte header and key, and into its value), fresh each
     * time: a split inside a value is like any other. */
    uint64_t boundary = pb[1];
    for (uint64_t k = boundary - 64; k < boundary + 64; k++) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", r.dir);
        ts_open(&p);
        first_copy(mid);
        store_close(p.s);
        p.s = NULL;
        size_t used1, used2;
        char err[512];
        size_t first = k - mid;
        cr_assert_eq(
            store_append_raw(r.s, mid, b, first, &used1, err, sizeof(err)), 0,
            "%s", err);
        size_t rest = (end - mid) - used1;
        cr_assert_eq(store_append_raw(r.s, mid + used1, b + used1, rest, &used2,
                                      err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(used1 + used2, end - mid, "split at %" PRIu64, k);
        ts_close(&r);
        ts_open(&p);
        same_files();
        store_close(p.s);
        p.s = NULL;
        th_rmrf(r.dir);
        mkdir(r.dir, 0755);
    }
    free(b);
    ts_open(&p);
}

Test(raw,
     a_changed_byte_is_refused_naming_its_offset_and_nothing_after_it_is_taken)
{
    fill("a", 5, 1000);
    uint64_t mid = store_durable(p.s);
    first_copy(mid);
    fill("b", 5, 1000);
    uint64_t end = store_durable(p.s);
    char *b = primary_bytes(mid, end);
    size_t rec2 = 0; /* start of the second record after mid */
    struct rec rr;
    long n = rec_decode(b, end - mid, 0, mid, &rr); /* wrong seed: size only */
    (void)n;
    rec2 = REC_HDR_SIZE + 2 + 1000; /* "b0" = 1000 bytes */
    b[rec2 + 50] ^= 0x40;
    size_t used;
    char err[512];
    int rc = store_append_raw(r.s, mid, b, end - mid, &used, err, sizeof(err));
    cr_assert_eq(rc, STORE_CORRUPT);
    cr_assert_eq(used, rec2, "took %zu bytes", used);
    char want[64];
    snprintf(want, sizeof(want), "offset %" PRIu64 ":", mid + rec2);
    cr_assert(strstr(err, want), "%s (wanted %s)", err, want);
    cr_assert_eq(store_log_end(r.s), mid + rec2);
    free(b);
}

Test(raw, bytes_that_do_not_start_at_the_replica_end_are_refused)
{
    fill("a", 3, 100);
    uint64_t mid = store_durable(p.s);
    first_copy(mid);
    fill("b", 3, 100);
    uint64_t end = store_durable(p.s);
    char *b = primary_bytes(mid, end);
    size_t used;
    char err[512];
    /* the bytes from one record later, claimed for the right offset */
    size_t skip = REC_HDR_SIZE + 2 + 100;
    cr_assert_eq(store_append_raw(r.s, mid, b + skip, end - mid - skip, &used,
                                  err, sizeof(err)),
                 STORE_CORRUPT);
    cr_assert_eq(used, 0);
    /* and the right bytes for a wrong offset */
    cr_assert_eq(store_append_raw(r.s, mid + skip, b + skip, end - mid - skip,
                                  &used, err, sizeof(err)),
                 STORE_CORRUPT);
    cr_assert(strstr(err, "log ends at"), "%s", err);
    free(b);
}

Test(raw,
     a_replica_follows_compaction_and_deletes_dropped_segments_once_durable)
{
    for (int round = 0; round < 6; round++)
        fill("k", 10, 5000); /* overwrites: garbage */
    uint64_t mid = store_durable(p.s);
    first_copy(mid);
    char err[512];
    cr_assert_eq(store_compact(p.s, true, NULL, NULL), 0);
    fill("z", 3, 100);
    uint64_t end = store_durable(p.s);
    feed(mid, end, 4096);
    replica_durable();
    /* the background thread deletes what the DROP records named */
    uint64_t start = store_log_start(p.s);
    /* (the file goes a moment after the segment leaves the table) */
    uint64_t first[1] = {0};
    for (int i = 0; i < 5000 && (store_log_start(r.s) < start ||
                                 (ts_segments(&r, first, 1), first[0] < start));
         i++)
        usleep(1000);
    cr_assert_eq(store_log_start(r.s), start);
    same_files();
    same_keys("k", 10);
    same_keys("z", 3);
    (void)err;
}

Test(raw, a_promoted_replica_starts_an_epoch_at_its_end_and_takes_writes)
{
    fill("a", 5, 100);
    uint64_t end = store_durable(p.s);
    first_copy(end);
    char err[512];
    cr_assert_eq(store_promote(r.s, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(store_is_replica(r.s));
    struct logdir_meta m;
    store_meta(r.s, &m);
    cr_assert_eq(m.role, LOGDIR_PRIMARY);
    cr_assert_eq(m.nepochs, 2);
    cr_assert_eq(m.epochs[1].start, end);
    uint64_t cas_before;
    char *v = ts_get(&r, "a4", NULL, &cas_before);
    cr_assert_not_null(v);
    free(v);
    cr_assert_eq(ts_set(&r, "new", "x", 0, 0), 0);
    uint64_t cas_new;
    v = ts_get(&r, "new", NULL, &cas_new);
    cr_assert_gt(cas_new, cas_before);
    free(v);
    /* it stays the primary after a restart */
    ts_close(&r);
    r.cfg.replica_of = NULL;
    ts_open(&r);
    cr_assert_not(store_is_replica(r.s));
    v = ts_get(&r, "new", NULL, NULL);
    cr_assert_str_eq(v, "x");
    free(v);
}

Test(raw, a_replica_restarted_without_the_flag_is_still_a_replica)
{
    fill("a", 5, 100);
    first_copy(store_durable(p.s));
    ts_close(&r);
    r.cfg.replica_of = NULL;
    ts_open(&r);
    cr_assert(store_is_replica(r.s));
    struct logdir_meta m;
    store_meta(r.s, &m);
    cr_assert_str_eq(m.primary, "127.0.0.1:1");
    same_keys("a", 5);
}

Test(raw, a_hold_keeps_compaction_off_the_segments_a_sender_needs)
{
    for (int round = 0; round < 6; round++)
        fill("k", 10, 5000);
    uint64_t start = store_log_start(p.s);
    int h = store_hold(p.s, start);
    cr_assert_geq(h, 0);
    cr_assert_eq(store_compact(p.s, true, NULL, NULL), 0);
    cr_assert_eq(store_log_start(p.s), start, "a held segment was deleted");
    store_hold_release(p.s, h);
    cr_assert_eq(store_compact(p.s, true, NULL, NULL), 0);
    cr_assert_gt(store_log_start(p.s), start);
    struct store_span sp;
    cr_assert_eq(store_span(p.s, start, UINT64_MAX, &sp), STORE_NOT_FOUND);
}
