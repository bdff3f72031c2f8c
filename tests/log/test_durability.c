/* Durability: what a write call reported as safe survives a crash; group
 * commit shares fdatasyncs; a failing disk makes the store read-only. */
#include "helpers/store_util.h"
#include "log/log_int.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct tstore t;

static void
teardown(void)
{
    ts_destroy(&t);
}

TestSuite(durability, .fini = teardown);

/* Child: write k0, k1, ... and report each index on fd once store_wait()
 * said it is safe. Never returns. */
static void
child_writer(int fd)
{
    ts_open(&t);
    char key[32], val[64];
    for (int i = 0;; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "value-%d-%0*d", i, i % 40, 0);
        if (ts_set(&t, key, val, (uint32_t)i, 0) != 0)
            _exit(3);
        if (write(fd, &i, sizeof(i)) != sizeof(i))
            _exit(4);
    }
}

static void
crash_and_check(enum store_fsync mode, int rounds)
{
    ts_init(&t, 256 << 10, 0);
    t.cfg.fsync = mode;
    srand((unsigned)time(NULL));
    int total = 0;
    for (int round = 0; round < rounds; round++) {
        int p[2];
        cr_assert_eq(pipe(p), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            child_writer(p[1]);
        }
        close(p[1]);
        int i, last = -1;
        /* crash at a random moment once writing is under way */
        cr_assert_eq(read(p[0], &last, sizeof(last)), sizeof(last),
                     "round %d: the writer died before its first write", round);
        usleep((useconds_t)(rand() % 300000));
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        cr_assert(WIFSIGNALED(st), "the writer exited on its own (%d)", st);
        while (read(p[0], &i, sizeof(i)) == sizeof(i))
            last = i;
        close(p[0]);
        cr_assert_geq(last, 0, "round %d: nothing was acknowledged", round);
        ts_open(&t);
        for (int k = 0; k <= last; k++) {
            char key[32], want[64];
            snprintf(key, sizeof(key), "k%d", k);
            snprintf(want, sizeof(want), "value-%d-%0*d", k, k % 40, 0);
            uint32_t flags;
            char *v = ts_get(&t, key, &flags, NULL);
            cr_assert_not_null(v, "round %d: acknowledged %s lost (last %d)",
                               round, key, last);
            cr_assert_str_eq(v, want);
            cr_assert_eq(flags, (uint32_t)k);
            free(v);
        }
        total += last + 1;
        ts_close(&t);
    }
    cr_log_info("%d acknowledged writes checked over %d crashes", total,
                rounds);
}

Test(durability, fsync_always_writes_reported_durable_survive_sigkill)
{
    crash_and_check(STORE_FSYNC_ALWAYS, 4);
}

Test(durability, fsync_everysec_acknowledged_writes_survive_a_process_crash)
{
    crash_and_check(STORE_FSYNC_EVERYSEC, 2);
}

Test(durability, fsync_never_acknowledged_writes_survive_a_process_crash)
{
    crash_and_check(STORE_FSYNC_NEVER, 2);
}

#define GC_THREADS 16
#define GC_WRITES 150

static void *
gc_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    char key[32];
    for (int i = 0; i < GC_WRITES; i++) {
        snprintf(key, sizeof(key), "t%d-%d", id, i);
        struct store_write w;
        if (store_set(t.s,
                      &(struct store_req){.key = key,
                                          .klen = strlen(key),
                                          .mode = STORE_SET,
                                          .val = "v",
                                          .vlen = 1},
                      &w) ||
            store_wait(t.s, w.ack))
            return (void *)1;
    }
    return NULL;
}

Test(durability, group_commit_shares_fdatasyncs_among_concurrent_writers)
{
    ts_init(&t, 0, 0);
    ts_open(&t);
    struct store_stats before, after;
    store_stats(t.s, &before);
    pthread_t th[GC_THREADS];
    for (int i = 0; i < GC_THREADS; i++)
        pthread_create(&th[i], NULL, gc_thread, (void *)(intptr_t)i);
    for (int i = 0; i < GC_THREADS; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert_null(r, "thread %d failed", i);
    }
    store_stats(t.s, &after);
    uint64_t writes = GC_THREADS * GC_WRITES;
    uint64_t fsyncs = after.fsyncs - before.fsyncs;
    cr_log_info("%llu writes, %llu fdatasyncs, batch avg %llu max %llu",
                (unsigned long long)writes, (unsigned long long)fsyncs,
                (unsigned long long)after.fsync_batch_avg,
                (unsigned long long)after.fsync_batch_max);
    cr_assert_lt(fsyncs * 4, writes,
                 "%llu fdatasyncs for %llu writes: no group commit",
                 (unsigned long long)fsyncs, (unsigned long long)writes);
    cr_assert_gt(after.fsync_batch_max, 1);
    /* the time the writer spent in fdatasync is counted (stats log) */
    cr_assert_gt(after.fsync_us, before.fsync_us);
    cr_assert_eq(after.items, writes);
}

/* ---- failing disks ---- */

struct faults {
    const char *op; /* which call fails */
    int after;      /* calls that succeed first */
    int err;
    atomic_int calls;
};

static int
fault_fn(void *arg, const char *op)
{
    struct faults *f = arg;
    if (strcmp(op, f->op) != 0)
        return 0;
    return atomic_fetch_add(&f->calls, 1) >= f->after ? -f->err : 0;
}

static void
failing_disk(const char *op, int err)
{
    static struct faults f;
    f = (struct faults){.op = op, .after = 5, .err = err};
    atomic_init(&f.calls, 0);
    ts_init(&t, 0, 0);
    t.cfg.fault = fault_fn;
    t.cfg.fault_arg = &f;
    ts_open(&t);
    int ok = 0, failed = 0;
    char key[32];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        int rc = ts_set(&t, key, key, 0, 0);
        if (rc == 0) {
            cr_assert_eq(failed, 0, "a write succeeded after one failed");
            ok++;
        } else {
            cr_assert_eq(rc, STORE_READONLY, "%s", store_strerror(rc));
            failed++;
        }
    }
    cr_assert_gt(ok, 0);
    cr_assert_gt(failed, 0);
    struct store_stats st;
    store_stats(t.s, &st);
    cr_assert_eq(st.error, 1, "stats do not show the error state");
    cr_assert(strstr(store_error_text(t.s), ".seg"),
              "error text does not name the file: %s", store_error_text(t.s));
    cr_assert(strstr(store_error_text(t.s), strerror(err)), "error text: %s",
              store_error_text(t.s));
    /* reads keep working */
    for (int i = 0; i < ok; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        char *v = ts_get(&t, key, NULL, NULL);
        cr_assert_not_null(v, "%s unreadable in the error state", key);
        cr_assert_str_eq(v, key);
        free(v);
    }
    ts_close(&t);
    /* what was acknowledged is there after a restart on a healthy disk */
    t.cfg.fault = NULL;
    ts_open(&t);
    for (int i = 0; i < ok; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        char *v = ts_get(&t, key, NULL, NULL);
        cr_assert_not_null(v, "acknowledged %s lost", key);
        free(v);
    }
    cr_assert_eq(ts_set(&t, "again", "v", 0, 0), 0);
}

Test(
    durability,
    a_failed_fdatasync_makes_the_store_read_only_and_loses_nothing_acknowledged)
{
    failing_disk("fdatasync", EIO);
}

Test(durability,
     a_full_disk_makes_the_store_read_only_and_loses_nothing_acknowledged)
{
    failing_disk("pwrite", ENOSPC);
}

/* A write that finds the segment full appends a footer and the next
 * segment's header before its own record. The writer, idle and waiting
 * for a gathering of several records after a busy sync, must still wake
 * for it: before the fix it slept until some other write came, and with
 * every client waiting for its reply none came (a server that hung). */
struct rolling_write {
    struct tstore *t;
    atomic_int rc; /* 1 while running */
};

static void *
rolling_write(void *arg)
{
    struct rolling_write *w = arg;
    char val[1024];
    memset(val, 'r', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    atomic_store(&w->rc, ts_set(w->t, "roller", val, 0, 0));
    return NULL;
}

Test(durability, a_write_that_rolls_the_segment_wakes_a_gathering_writer)
{
    ts_init(&t, 64 << 10, 0);
    t.cfg.fsync = STORE_FSYNC_ALWAYS;
    ts_open(&t);
    struct store *s = t.s;
    char key[32], val[1024];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    size_t roll_size = rec_size(strlen("roller"), sizeof(val) - 1);
    for (int i = 0;; i++) {
        pthread_mutex_lock(&s->mu);
        bool full =
            s->end - s->active->seg_base + roll_size + REC_SEG_FOOTER_SIZE >
            t.cfg.segment_size;
        pthread_mutex_unlock(&s->mu);
        if (full)
            break;
        cr_assert(i < 1000, "the first segment never filled");
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(ts_set(&t, key, val, 0, 0), 0);
    }
    /* the last write is durable, so the writer has set its gathering for
     * the next sync and waits for work: ask it to gather many records */
    pthread_mutex_lock(&s->mu);
    s->gather_recs = 1000;
    uint64_t base = s->active->seg_base;
    pthread_mutex_unlock(&s->mu);

    struct rolling_write w = {.t = &t, .rc = 1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, rolling_write, &w), 0);
    for (int ms = 0; ms < 10000 && atomic_load(&w.rc) == 1; ms += 10)
        usleep(10 * 1000);
    int rc = atomic_load(&w.rc);
    if (rc == 1) { /* unstick it before failing: a write wakes the writer */
        pthread_mutex_lock(&s->mu);
        s->gather_recs = 0;
        pthread_cond_signal(&s->cv_work);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_join(th, NULL);
    cr_assert_neq(rc, 1,
                  "a write that rolled the segment at %" PRIu64
                  " was not durable after 10 s: the writer slept through it",
                  base);
    cr_assert_eq(rc, 0, "the rolling write failed: %d", rc);
    pthread_mutex_lock(&s->mu);
    cr_assert_gt(s->active->seg_base, base,
                 "the write did not roll the segment");
    pthread_mutex_unlock(&s->mu);
}

/* The segment files in dir that have their names, and their sizes (-1:
 * gone meanwhile), at most max of them; 0 if the listing fails. */
static size_t
named_segments(const char *dir, uint64_t *bases, long long *sizes, size_t max)
{
    uint64_t *v;
    size_t n;
    if (logdir_list_segments(dir, &v, &n) != 0)
        return 0;
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++) {
        char path[4200];
        struct stat st;
        bases[i] = v[i];
        logdir_seg_path(dir, v[i], path, sizeof(path));
        sizes[i] = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    }
    free(v);
    return n;
}

/* What the writer's test hook below watches: the segment files as the
 * writer is about to write or sync, while 300 KB roll over 64 KiB
 * segments. */
struct seg_watch {
    const char *dir;
    long long last[64]; /* sizes at the previous look */
    atomic_int looks, bad;
    char why[4400];
};

static void
roll_over(struct seg_watch *w, int (*look)(void *, const char *),
          bool preallocate)
{
    ts_init(&t, 64 << 10, 0);
    w->dir = t.dir;
    t.cfg.preallocate = preallocate;
    t.cfg.max_item_size = 4096;
    t.cfg.fault = look;
    t.cfg.fault_arg = w;
    ts_open(&t);
    char key[32], val[1001];
    memset(val, 'v', 1000);
    val[1000] = '\0';
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(ts_set(&t, key, val, 0, 0), 0);
    }
    uint64_t bases[64];
    cr_assert_geq(ts_segments(&t, bases, 64), 4, "the log did not roll over");
    cr_assert_gt(atomic_load(&w->looks), 0);
    cr_assert_eq(atomic_load(&w->bad), 0, "%s", w->why);
}

/* What a copy of a live directory relies on (docs/tools.md, Backups): at
 * any moment, every segment file that has its name, but the last, is
 * complete: sealed, and ending where the next one starts. A copy that
 * lists a new segment then finds the one before it whole, instead of a
 * segment without its footer before a gap that start-up refuses. */
static int
look_named(void *arg, const char *op)
{
    struct seg_watch *w = arg;
    uint64_t bases[64];
    long long sizes[64];
    size_t n = named_segments(w->dir, bases, sizes, 64);
    (void)op;
    for (size_t i = 0; i + 1 < n; i++)
        if (sizes[i] >= 0 && (uint64_t)sizes[i] != bases[i + 1] - bases[i] &&
            !atomic_exchange(&w->bad, 1))
            snprintf(w->why, sizeof(w->why),
                     "segment %" PRIu64 " has %lld bytes while the next "
                     "segment's file, at offset %" PRIu64
                     ", already has its name",
                     bases[i], sizes[i], bases[i + 1]);
    atomic_fetch_add(&w->looks, 1);
    return 0;
}

Test(durability, a_segment_file_is_named_only_once_the_one_before_it_is_sealed)
{
    static struct seg_watch w;
    roll_over(&w, look_named, false);
}

/* With --preallocate, a segment file is padded with zeros ahead of its
 * writes, but never past where it can be sealed: a file that shrinks while
 * rsync reads it fails the pass ("read errors mapping ...: No data
 * available"), so sealing must not cut padding. */
static int
look_shrink(void *arg, const char *op)
{
    struct seg_watch *w = arg;
    uint64_t bases[64];
    long long sizes[64];
    size_t n = named_segments(w->dir, bases, sizes, 64);
    (void)op;
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] >= 0 && sizes[i] < w->last[i] &&
            !atomic_exchange(&w->bad, 1))
            snprintf(w->why, sizeof(w->why),
                     "segment %" PRIu64 " shrank from %lld to %lld bytes",
                     bases[i], w->last[i], sizes[i]);
        w->last[i] = sizes[i];
    }
    atomic_fetch_add(&w->looks, 1);
    return 0;
}

Test(durability,
     with_preallocate_a_segment_file_never_shrinks_while_it_is_written)
{
    static struct seg_watch w;
    roll_over(&w, look_shrink, true);
}
