/* Compaction: live-byte accounting, which segment goes, what is copied and
 * what is dropped, disk use under overwrites, and crashes in the middle. */
#include "helpers/store_util.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct tstore t;

static void
setup(void)
{
    ts_init(&t, 64 << 10, 1);
    t.cfg.compactor = false; /* tests drive it with store_compact() */
    t.cfg.compact_rate = 0;
    ts_open(&t);
}

static void
teardown(void)
{
    ts_destroy(&t);
}

TestSuite(compact, .init = setup, .fini = teardown);

static struct store_stats
stats(void)
{
    struct store_stats st;
    store_stats(t.s, &st);
    return st;
}

static void
set_n(const char *prefix, int n, int vlen, int64_t exptime)
{
    char key[64], *val = malloc((size_t)vlen + 1);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        memset(val, 'a' + i % 26, (size_t)vlen);
        val[vlen] = '\0';
        cr_assert_eq(ts_set(&t, key, val, (uint32_t)i, exptime), 0);
    }
    free(val);
}

static void
expect_n(const char *prefix, int n, int vlen, int present)
{
    char key[64];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        uint32_t flags;
        char *v = ts_get(&t, key, &flags, NULL);
        if (!present) {
            cr_assert_null(v, "%s came back", key);
            continue;
        }
        cr_assert_not_null(v, "%s lost", key);
        cr_assert_eq(strlen(v), (size_t)vlen, "%s", key);
        cr_assert_eq(v[0], 'a' + i % 26);
        cr_assert_eq(flags, (uint32_t)i);
        free(v);
    }
}

Test(compact, live_bytes_follow_overwrites_deletes_and_flushes)
{
    cr_assert_eq(stats().live_bytes, 0);
    ts_set(&t, "k", "12345", 0, 0);
    cr_assert_eq(stats().live_bytes, 40 + 1 + 5);
    ts_set(&t, "k", "1", 0, 0);
    cr_assert_eq(stats().live_bytes, 40 + 1 + 1);
    struct store_write w;
    store_delete(t.s, &(struct store_del){.key = "k", .klen = 1}, &w);
    store_wait(t.s, w.ack);
    cr_assert_eq(stats().live_bytes, 0);
    set_n("f", 10, 10, 0);
    cr_assert_eq(stats().live_bytes, 10 * (40 + 2 + 10));
    store_flush(t.s, 0, &w);
    store_wait(t.s, w.ack);
    cr_assert_eq(stats().live_bytes, 0);
    cr_assert_eq(stats().items, 0);
}

Test(compact, only_sealed_segments_are_compacted_oldest_first)
{
    set_n("k", 30, 1000, 0); /* one segment, not sealed */
    cr_assert_eq(stats().segments, 1);
    cr_assert_eq(store_compact(t.s, true, NULL, NULL), 0);
    cr_assert_eq(stats().compact_runs, 0, "the active segment was compacted");
    set_n("k", 200, 1000, 0); /* rolls */
    uint64_t bases[64];
    size_t n = ts_segments(&t, bases, 64);
    cr_assert_geq(n, 3);
    /* compact exactly one: a threshold just under the current garbage */
    ts_close(&t);
    t.cfg.compact_garbage = 0.01;
    ts_open(&t);
    struct store_stats before = stats();
    int rc = store_compact(t.s, false, NULL, NULL);
    cr_assert_eq(rc, 0, "%s", store_strerror(rc));
    uint64_t after[64];
    size_t m = ts_segments(&t, after, 64);
    cr_assert_gt(stats().compact_runs, before.compact_runs);
    /* whatever was deleted is a prefix: the oldest files */
    cr_assert_gt(after[0], bases[0]);
    for (size_t i = 0; i + 1 < m; i++)
        cr_assert_lt(after[i], after[i + 1]);
    expect_n("k", 200, 1000, 1);
}

Test(compact, compaction_reclaims_garbage_and_keeps_every_live_item)
{
    set_n("k", 200, 1000, 0);
    set_n("k", 200, 1000, 0); /* every first copy is garbage */
    set_n("gone", 50, 1000, 0);
    for (int i = 0; i < 50; i++) {
        char key[32];
        snprintf(key, sizeof(key), "gone%d", i);
        struct store_write w;
        cr_assert_eq(
            store_delete(
                t.s, &(struct store_del){.key = key, .klen = strlen(key)}, &w),
            0);
        store_wait(t.s, w.ack);
    }
    struct store_stats before = stats();
    cr_assert_gt(before.garbage_permille, 500);
    cr_assert_eq(store_compact(t.s, false, NULL, NULL), 0);
    struct store_stats after = stats();
    cr_assert_leq(after.garbage_permille, 500, "garbage %llu‰ after",
                  (unsigned long long)after.garbage_permille);
    cr_assert_lt(after.log_bytes, before.log_bytes);
    cr_assert_gt(after.compact_bytes_reclaimed, 0);
    cr_assert_eq(after.live_bytes, before.live_bytes);
    expect_n("k", 200, 1000, 1);
    expect_n("gone", 50, 1000, 0);
    ts_close(&t);
    ts_open(&t);
    expect_n("k", 200, 1000, 1);
    expect_n("gone", 50, 1000, 0);
    cr_assert_eq(stats().items, 200);
}

Test(compact, expired_items_are_not_copied_and_touched_ones_keep_their_new_time)
{
    set_n("short", 40, 1000, 100);
    set_n("touched", 40, 1000, 100);
    for (int i = 0; i < 40; i++) {
        char key[32];
        snprintf(key, sizeof(key), "touched%d", i);
        struct store_write w;
        cr_assert_eq(store_touch(t.s, key, strlen(key), 10000, &w), 0);
        store_wait(t.s, w.ack);
    }
    set_n("filler", 100, 1000, 0);
    t.now_ms += 200 * 1000; /* "short" expire, "touched" do not */
    struct store_stats before = stats();
    cr_assert_eq(store_compact(t.s, true, NULL, NULL), 0);
    struct store_stats after = stats();
    cr_assert_gt(after.compact_runs, before.compact_runs);
    /* copies hold only live bytes: 40 touched + 100 filler at most */
    cr_assert_leq(after.compact_bytes_copied, 140 * (40 + 10 + 1000));
    expect_n("short", 40, 1000, 0);
    expect_n("touched", 40, 1000, 1);
    ts_close(&t);
    ts_open(&t);
    expect_n("short", 40, 1000, 0);
    expect_n("touched", 40, 1000, 1);
    t.now_ms += 10000 * 1000;
    expect_n("touched", 40, 1000, 0);
}

Test(compact, a_pending_delayed_flush_survives_compaction_of_its_segment)
{
    set_n("old", 20, 1000, 0);
    struct store_write w;
    cr_assert_eq(store_flush(t.s, 1000, &w), 0);
    store_wait(t.s, w.ack);
    set_n("filler", 200, 1000, 0);
    cr_assert_eq(store_compact(t.s, true, NULL, NULL), 0);
    ts_close(&t);
    ts_open(&t);
    expect_n("old", 20, 1000, 1);
    t.now_ms += 1001 * 1000;
    expect_n("old", 20, 1000, 0);
    expect_n("filler", 200, 1000, 0);
}

Test(compact, cas_values_are_kept_by_copies)
{
    set_n("k", 100, 1000, 0);
    uint64_t cas_before;
    free(ts_get(&t, "k5", NULL, &cas_before));
    set_n("filler", 200, 1000, 0);
    cr_assert_eq(store_compact(t.s, true, NULL, NULL), 0);
    uint64_t cas_after;
    free(ts_get(&t, "k5", NULL, &cas_after));
    cr_assert_eq(cas_after, cas_before);
    struct store_write w;
    cr_assert_eq(store_set(t.s,
                           &(struct store_req){.key = "k5",
                                               .klen = 2,
                                               .mode = STORE_CAS,
                                               .val = "x",
                                               .vlen = 1,
                                               .cas_in = cas_before},
                           &w),
                 0, "a client's cas failed because compaction moved the item");
}

Test(compact, disk_use_settles_under_an_overwrite_workload)
{
    ts_close(&t);
    t.cfg.compactor = true; /* the background thread, as in the server */
    t.cfg.compact_rate = 0;
    ts_open(&t);
    uint64_t worst = 0, live = 0;
    for (int round = 0; round < 30; round++) {
        set_n("k", 100, 1000, 0); /* ~100 KB live, rewritten each round */
        struct store_stats st = stats();
        live = st.live_bytes;
        if (round >= 10 && st.log_bytes > worst)
            worst = st.log_bytes;
        usleep(20000);
    }
    /* let the compactor catch up, then check the ratio */
    for (int i = 0; i < 50 && stats().garbage_permille > 500; i++)
        usleep(100000);
    struct store_stats st = stats();
    cr_log_info("live %llu, log %llu, worst during the run %llu",
                (unsigned long long)live, (unsigned long long)st.log_bytes,
                (unsigned long long)worst);
    cr_assert_leq(st.log_bytes, live * 5 / 2, "log %llu > 2.5 x live %llu",
                  (unsigned long long)st.log_bytes, (unsigned long long)live);
    cr_assert_gt(st.compact_runs, 0);
    expect_n("k", 100, 1000, 1);
}

/* Writes that outrun --compact-rate: past halfway from --compact-garbage
 * to 1 the compactor reads at full speed, so disk use stays bounded. */
Test(compact, writes_faster_than_the_rate_limit_lift_it)
{
    ts_close(&t);
    t.cfg.compactor = true;
    t.cfg.compact_rate = 1000; /* 64 s per 64 KiB segment if it held */
    ts_open(&t);
    time_t t0 = time(NULL);
    for (int round = 0; round < 20; round++)
        set_n("k", 30, 1000, 0); /* ~30 KB live, 600 KB written */
    for (int i = 0; i < 100 && stats().garbage_permille > 750; i++)
        usleep(100000);
    struct store_stats st = stats();
    double secs = (double)(time(NULL) - t0) + 1;
    cr_assert_leq(st.garbage_permille, 750,
                  "garbage still %llu permille after %.0f s at 1000 B/s",
                  (unsigned long long)st.garbage_permille, secs);
    cr_assert_gt((double)st.compact_bytes_read, 10 * 1000 * secs,
                 "the compactor read %llu bytes in %.0f s: held to the rate",
                 (unsigned long long)st.compact_bytes_read, secs);
    expect_n("k", 30, 1000, 1);
}

/* A child writes, deletes and compacts in a loop, reporting every write
 * and delete once durable; it is killed at a random moment. */
static void
crash_child(int fd)
{
    t.cfg.compactor = true;
    t.cfg.compact_garbage = 0.2;
    ts_open(&t);
    char key[32], val[600];
    for (int i = 0;; i++) {
        int k = i % 300;
        snprintf(key, sizeof(key), "k%d", k);
        struct store_write w;
        int rc;
        if (i % 7 == 3) {
            rc = store_delete(
                t.s, &(struct store_del){.key = key, .klen = strlen(key)}, &w);
            if (rc == STORE_NOT_FOUND)
                rc = 0, w.ack = 0;
        } else {
            int n = snprintf(val, sizeof(val), "%d:", i);
            memset(val + n, 'x', 500);
            rc = store_set(t.s,
                           &(struct store_req){.key = key,
                                               .klen = strlen(key),
                                               .mode = STORE_SET,
                                               .val = val,
                                               .vlen = (size_t)n + 500},
                           &w);
        }
        if (rc || store_wait(t.s, w.ack))
            _exit(3);
        int msg[2] = {i, i % 7 == 3};
        if (write(fd, msg, sizeof(msg)) != sizeof(msg))
            _exit(4);
    }
}

Test(compact,
     after_kill_9_during_compaction_no_write_is_lost_and_no_delete_undone)
{
    ts_close(&t);
    srand((unsigned)time(NULL));
    for (int round = 0; round < 3; round++) {
        int p[2];
        cr_assert_eq(pipe(p), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            crash_child(p[1]);
        }
        close(p[1]);
        static int last_op[300]; /* i of the last acknowledged op per key */
        static int deleted[300];
        for (int k = 0; k < 300; k++)
            last_op[k] = -1;
        int msg[2];
        /* kill after a random number of operations, enough for several
         * compactions whatever the machine's speed */
        int kill_at = 3000 + rand() % 3000;
        do {
            cr_assert_eq(read(p[0], msg, sizeof(msg)), sizeof(msg),
                         "round %d: the writer died", round);
            last_op[msg[0] % 300] = msg[0];
            deleted[msg[0] % 300] = msg[1];
        } while (msg[0] < kill_at);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        while (read(p[0], msg, sizeof(msg)) == sizeof(msg)) {
            last_op[msg[0] % 300] = msg[0];
            deleted[msg[0] % 300] = msg[1];
        }
        close(p[0]);
        t.cfg.compactor = false;
        ts_open(&t);
        cr_assert_gt(stats().log_start, 0,
                     "round %d: the child never compacted", round);
        for (int k = 0; k < 300; k++) {
            if (last_op[k] < 0)
                continue;
            char key[32];
            snprintf(key, sizeof(key), "k%d", k);
            char *v = ts_get(&t, key, NULL, NULL);
            if (deleted[k]) {
                /* the op after the delete may have been written, not acked */
                if (v)
                    cr_assert_geq(atoi(v), last_op[k] + 1,
                                  "round %d: deleted %s came back as %s", round,
                                  key, v);
            } else if (!v) {
                /* only the unacknowledged next op on this key may have
                 * removed it: it must be a delete */
                cr_assert_eq((last_op[k] + 300) % 7, 3, "round %d: %s lost",
                             round, key);
            } else {
                cr_assert_geq(atoi(v), last_op[k],
                              "round %d: %s went back in time", round, key);
            }
            free(v);
        }
        ts_close(&t);
    }
}

/* A value stored under a larger item size limit than the store now runs
 * with is still copied by compaction (it used not to fit the append
 * buffer, and the compactor waited for room forever). */
Test(compact, a_value_larger_than_todays_item_limit_is_still_compacted)
{
    ts_close(&t);
    t.cfg.max_item_size = 16 << 20;
    t.cfg.segment_size = 32 << 20;
    ts_open(&t);
    size_t big = 10 << 20;
    char *val = malloc(big);
    memset(val, 'B', big);
    struct store_write w;
    cr_assert_eq(store_set(t.s,
                           &(struct store_req){.key = "big",
                                               .klen = 3,
                                               .mode = STORE_SET,
                                               .val = val,
                                               .vlen = big},
                           &w),
                 0);
    store_wait(t.s, w.ack);
    ts_close(&t);
    t.cfg.max_item_size = 1 << 20;
    t.cfg.segment_size = 64 << 10;
    ts_open(&t);
    set_n("filler", 100, 1000, 0);
    cr_assert_eq(store_compact(t.s, true, NULL, NULL), 0);
    cr_assert_gt(stats().compact_runs, 0);
    struct store_item it;
    void *buf;
    cr_assert_eq(store_get(t.s, "big", 3, &it, &buf), 0);
    cr_assert_eq(it.vlen, big);
    cr_assert_eq(((const char *)it.value)[big - 1], 'B');
    free(buf);
    free(val);
}

/* Damage that start-up did not see (a valid hint covered the segment) stops
 * the compactor at that segment, never copies or deletes it, and shows in
 * the stats. */
Test(compact, the_compactor_stops_at_a_damaged_segment_and_says_so)
{
    set_n("k", 200, 1000, 0);
    set_n("k", 200, 1000, 0);
    ts_close(&t); /* writes hints */
    char path[512];
    ts_seg_path(&t, 0, path, sizeof(path));
    FILE *f = fopen(path, "r+b");
    fseek(f, 40 + 48 + 40 + 2 + 100, SEEK_SET); /* k0's value */
    fputc('X', f);
    fclose(f);
    t.cfg.compactor = true;
    ts_open(&t);
    for (int i = 0; i < 100 && !stats().compact_stopped; i++)
        usleep(50000);
    cr_assert_eq(stats().compact_stopped, 1);
    cr_assert_eq(ts_file_size(path) > 0, 1, "the damaged segment was deleted");
}

static void
assert_same_accounting(const struct store_stats *want, const char *when)
{
    struct store_stats got = stats();
    cr_assert_eq(got.items, want->items, "%s: items", when);
    cr_assert_eq(got.live_bytes, want->live_bytes, "%s: live bytes %llu, %llu",
                 when, (unsigned long long)got.live_bytes,
                 (unsigned long long)want->live_bytes);
    cr_assert_eq(got.value_bytes, want->value_bytes, "%s: value bytes", when);
    cr_assert_eq(got.garbage_permille, want->garbage_permille, "%s: garbage",
                 when);
}

Test(compact, a_restart_counts_the_live_bytes_the_store_counted)
{
    set_n("k", 300, 500, 0); /* several sealed 64 KiB segments */
    set_n("k", 150, 100, 0); /* overwrites: garbage in the oldest */
    struct store_write w;
    for (int i = 0; i < 300; i += 7) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        store_delete(t.s, &(struct store_del){.key = key, .klen = strlen(key)},
                     &w);
    }
    store_wait(t.s, w.ack);
    struct store_stats want = stats();
    cr_assert_gt(want.segments, 2);
    cr_assert_gt(want.garbage_permille, 0);
    ts_close(&t);
    ts_open(&t); /* from the hints (with a thread per CPU) */
    assert_same_accounting(&want, "from the hints");
    ts_close(&t);
    ts_remove_hints(&t);
    ts_open(&t); /* scanning every segment */
    assert_same_accounting(&want, "from the segments");
}
