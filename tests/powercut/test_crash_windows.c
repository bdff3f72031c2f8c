/*
 * Two moments found by the power-cut test (test_powercut.c), made
 * deterministic: the engine's writer thread is held just before it writes
 * (the store's test fault hook), the test does what the server's other
 * threads did in the trace, and copies the data directory as it is at that
 * moment: what a kill -9 leaves (the files and the page cache) and, since
 * what it holds was made durable in order, what a power cut can leave. A
 * second store is opened on the copy.
 *   build/tests/test_powercut_crash_windows --verbose
 */
#include "helpers/server.h"
#include "helpers/store_util.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- holding the writer ---- */

struct hold {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool armed;   /* the next pwrite waits */
    bool waiting; /* the writer is waiting */
    bool release;
};

static struct hold hold = {.mu = PTHREAD_MUTEX_INITIALIZER,
                           .cv = PTHREAD_COND_INITIALIZER};

static int
hold_fault(void *arg, const char *op)
{
    struct hold *h = arg;
    if (strcmp(op, "pwrite") != 0)
        return 0;
    pthread_mutex_lock(&h->mu);
    if (h->armed) {
        h->armed = false;
        h->waiting = true;
        pthread_cond_broadcast(&h->cv);
        while (!h->release)
            pthread_cond_wait(&h->cv, &h->mu);
        h->waiting = false;
    }
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static void
hold_arm(void)
{
    pthread_mutex_lock(&hold.mu);
    hold.armed = true;
    hold.release = false;
    pthread_mutex_unlock(&hold.mu);
}

static void
hold_wait_writer(void)
{
    pthread_mutex_lock(&hold.mu);
    while (!hold.waiting)
        pthread_cond_wait(&hold.cv, &hold.mu);
    pthread_mutex_unlock(&hold.mu);
}

static void
hold_release(void)
{
    pthread_mutex_lock(&hold.mu);
    hold.release = true;
    pthread_cond_broadcast(&hold.cv);
    pthread_mutex_unlock(&hold.mu);
}

/* ---- the store ---- */

static struct tstore ts, copy;

static void
setup(void)
{
    ts_init(&ts, 64 << 10, 0);
    ts.cfg.compactor = false; /* the test runs it */
    ts.cfg.fault = hold_fault;
    ts.cfg.fault_arg = &hold;
    ts_open(&ts);
}

static void
teardown(void)
{
    hold_release();
    ts_destroy(&ts);
    if (copy.dir)
        ts_destroy(&copy);
}

TestSuite(crash_windows, .init = setup, .fini = teardown, .timeout = 60);

/* Copy every file of ts.dir into a fresh directory: the crash image. */
static void
crash_copy(void)
{
    ts_init(&copy, 64 << 10, 0);
    copy.cfg.compactor = false;
    DIR *d = opendir(ts.dir);
    cr_assert(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char from[4096], to[4096];
        snprintf(from, sizeof(from), "%s/%s", ts.dir, de->d_name);
        snprintf(to, sizeof(to), "%s/%s", copy.dir, de->d_name);
        size_t len;
        char *buf = tt_slurp(from, &len);
        int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        cr_assert(fd >= 0 && write(fd, buf, len) == (ssize_t)len);
        close(fd);
        free(buf);
    }
    closedir(d);
}

/* A value of n bytes. */
static char *
value(size_t n, char c)
{
    char *v = malloc(n + 1);
    memset(v, c, n);
    v[n] = '\0';
    return v;
}

static atomic_bool compacted;
static int compact_rc;

static void *
compact_main(void *arg)
{
    (void)arg;
    compact_rc = store_compact(ts.s, true, NULL, NULL);
    atomic_store(&compacted, true);
    return NULL;
}

/* store_set without waiting for the ack. */
static void
set_async(const char *key, const char *val)
{
    struct store_write w;
    int rc = store_set(ts.s,
                       &(struct store_req){.key = key,
                                           .klen = strlen(key),
                                           .mode = STORE_SET,
                                           .val = val,
                                           .vlen = strlen(val)},
                       &w);
    cr_assert_eq(rc, 0, "%s", store_strerror(rc));
}

/*
 * Found at trace point 1150 of a run: compaction deleted the segment that
 * held an acknowledged value of pc27 because a newer set of pc27 had
 * replaced it in the index, but that newer record was still in the append
 * buffer; compaction's sync covers only its own copies (none here). The
 * crash that followed left neither.
 */
Test(
    crash_windows,
    an_acknowledged_value_survives_a_crash_after_compaction_dropped_its_segment_for_an_unsynced_overwrite)
{
    char *big = value(20000, 'g');
    cr_assert_eq(ts_set(&ts, "k", "acknowledged", 0, 0), 0);
    /* seal segment 0 (k and garbage) and start more */
    for (int i = 0; i < 8; i++)
        cr_assert_eq(ts_set(&ts, "g", big, 0, 0), 0);
    hold_arm();
    set_async("k", "newer, never acknowledged");
    hold_wait_writer();
    /* Compaction runs beside the held writer. Today it deletes the
     * segment at once; one that waits for the newer write to be durable
     * before deleting would still be waiting when the crash comes. */
    pthread_t th;
    pthread_create(&th, NULL, compact_main, NULL);
    for (int i = 0; i < 100 && !atomic_load(&compacted); i++)
        usleep(10000);
    crash_copy();
    hold_release();
    pthread_join(th, NULL);
    cr_assert_eq(compact_rc, 0, "%s", store_strerror(compact_rc));

    char err[512];
    int rc = ts_try_open(&copy, err, sizeof(err));
    cr_assert_eq(rc, 0, "the crash image does not open: %s", err);
    char *v = ts_get(&copy, "k", NULL, NULL);
    cr_expect(v && (strcmp(v, "acknowledged") == 0 ||
                    strcmp(v, "newer, never acknowledged") == 0),
              "k is %s after the crash; its acknowledged value is lost",
              v ? v : "missing");
    free(v);
    free(big);
}

/*
 * Found at trace point 366 of a run: while the writer was in one
 * fdatasync, appenders rolled the log over twice, creating two segment
 * files; the crash left the active segment without its footer and two
 * empty files after it. Recovery removed only the last empty one and then
 * refused the other ("starts at offset X but the previous segment ends at
 * Y"); mcdb-fsck --repair did not fix it either. Since then a new segment
 * file keeps a temporary name until the writer writes into it, after the
 * footer of the one before: the image holds two empty <segment>.tmp files,
 * which start-up removes.
 */

/* Segment files in dir, with the new ones still under temporary names. */
static size_t
segment_files(const char *dir, size_t *tmps)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    size_t n = 0;
    *tmps = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len > 4 && strcmp(de->d_name + len - 4, ".seg") == 0)
            n++;
        if (len > 8 && strcmp(de->d_name + len - 8, ".seg.tmp") == 0)
            (*tmps)++;
    }
    closedir(d);
    return n + *tmps;
}

Test(
    crash_windows,
    a_crash_after_two_roll_overs_ahead_of_the_writer_leaves_a_directory_that_opens)
{
    char *v30 = value(30000, 'v');
    cr_assert_eq(ts_set(&ts, "first", "durable", 0, 0), 0);
    hold_arm();
    set_async("a", v30);
    hold_wait_writer();
    /* these fill segment 0, roll to segment 1, fill it, roll to 2 */
    const char *keys[] = {"b", "c", "d", "e"};
    for (int i = 0; i < 4; i++)
        set_async(keys[i], v30);
    size_t tmps, n = segment_files(ts.dir, &tmps);
    cr_assert_geq(n, 3, "the log rolled over %zu times, not twice", n - 1);
    cr_assert_eq(tmps, n - 1,
                 "a new segment's file has its name before the writer sealed "
                 "the one before it");
    crash_copy();
    hold_release();

    char err[512];
    int rc = ts_try_open(&copy, err, sizeof(err));
    cr_expect_eq(rc, 0, "the crash image does not open: %s", err);
    if (rc == 0) {
        char *v = ts_get(&copy, "first", NULL, NULL);
        cr_expect(v && strcmp(v, "durable") == 0);
        free(v);
    }
    free(v30);
}
