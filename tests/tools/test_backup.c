/*
 * Backups by rsync: `rsync -a DATA/ BACKUP/` of a live mcdbd, while clients
 * write and overwrite keys and the compactor deletes old segments, copies a
 * log that a second mcdbd starts on, with every write acknowledged before
 * the rsync began (that value, or a newer one).
 *
 * Three writer threads overwrite their keys over and over; for each key the
 * test keeps the highest version acknowledged (STORED). Before each rsync it
 * snapshots those versions; after the writers stop, a server is started on
 * each copy and every key is read back. Several copies are taken (a few
 * hundred milliseconds apart) so that rsync meets the log in different
 * states: mid-roll-over, mid-compaction.
 *   build/tests/test_tools_backup --verbose
 *   MCDB_BACKUP_ROUNDS=50 build/tests/test_tools_backup     (soak)
 */
#include "helpers/server.h"
#include "helpers/target.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    tg_require(1);
    if (!th_in_path("rsync")) {
        fprintf(stderr, "SKIP: rsync is not installed (apt-get install "
                        "rsync): the backup test cannot run\n");
        exit(77);
    }
}

#define NTHREADS 3
#define KEYS_PER_THREAD 150
#define NKEYS (NTHREADS * KEYS_PER_THREAD)
#define MAX_ROUNDS 200

static struct th_server srv;
static _Atomic uint32_t acked[NKEYS]; /* highest version acknowledged */
static atomic_bool stop;
static atomic_uint_fast64_t nwrites;
static atomic_int writer_failed;

static void
teardown(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
}

TestSuite(backup, .fini = teardown, .timeout = 120);

/* Key k at version v: "v<v>:<k>:" then a fill that depends on both, of a
 * length that varies, so that a mixed-up or damaged value shows. */
static size_t
make_value(char *buf, int k, uint32_t v)
{
    size_t len = 200 + (size_t)((k * 7919u + v * 104729u) % 700);
    int n = snprintf(buf, len + 1, "v%u:%d:", v, k);
    memset(buf + n, 'a' + (int)((k + v) % 26), len - (size_t)n);
    buf[len] = '\0';
    return len;
}

static void *
writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    int fd = th_connect(srv.port);
    if (fd < 0) {
        atomic_store(&writer_failed, 1);
        return NULL;
    }
    char req[1200], val[1000];
    for (uint32_t v = 1; !atomic_load(&stop); v++)
        for (int i = 0; i < KEYS_PER_THREAD && !atomic_load(&stop); i++) {
            int k = id * KEYS_PER_THREAD + i;
            size_t len = make_value(val, k, v);
            int n = snprintf(req, sizeof(req), "set k%d 0 0 %zu\r\n%s\r\n", k,
                             len, val);
            char *reply = th_ask(fd, req, "\r\n");
            if (!reply || strcmp(reply, "STORED\r\n") != 0) {
                fprintf(stderr, "writer %d: set k%d: %s\n", id, k,
                        reply ? reply : "(no reply)");
                atomic_store(&writer_failed, 1);
                free(reply);
                close(fd);
                return NULL;
            }
            (void)n;
            free(reply);
            atomic_store(&acked[k], v);
            atomic_fetch_add(&nwrites, 1);
        }
    close(fd);
    return NULL;
}

static long long
compact_runs(int fd)
{
    return tg_stat(fd, "log", "compact_runs");
}

/* Read every key from a server started on dir; count keys older than
 * snap[] (lost acknowledged writes) and damaged values. */
/* mcdb-fsck on a copy: at most a torn tail (the active segment was being
 * written while rsync read it), which start-up truncates. */
static void
fsck_copy(const char *dir, int round)
{
    const char *argv[] = {tt_tool("mcdb-fsck"), "--json", dir, NULL};
    char *out;
    int st = tt_run(&out, argv);
    int errors = 0, torn = 0;
    for (const char *p = out; (p = strstr(p, "\"severity\":\"error\"")); p++)
        errors++;
    for (const char *p = out;
         (p = strstr(p, "\"severity\":\"error\",\"kind\":\"torn-tail\"")); p++)
        torn++;
    cr_log_info("round %d: mcdb-fsck exit %d, %d torn tail(s)", round, st,
                torn);
    cr_expect((st == 0 || st == 4) && errors == torn,
              "round %d: mcdb-fsck on the copy, exit %d:\n%s", round, st, out);
    free(out);
}

/* mcdb-fsck beside the running server: a read-only check that must find
 * nothing wrong while segments grow, roll over and are compacted away. */
static void
fsck_live(int round)
{
    if (access(tt_tool("mcdb-fsck"), X_OK) != 0)
        return;
    const char *argv[] = {tt_tool("mcdb-fsck"), srv.dir, NULL};
    char *out;
    int st = tt_run(&out, argv);
    cr_log_info("round %d: mcdb-fsck of the live directory: exit %d\n%s", round,
                st, out);
    cr_expect_eq(st, 0,
                 "round %d: mcdb-fsck of the live directory, exit "
                 "%d:\n%s",
                 round, st, out);
    cr_expect(strstr(out, "live directory") != NULL, "%s", out);
    free(out);
}

static void
verify(const char *dir, const uint32_t *snap, int round)
{
    if (access(tt_tool("mcdb-fsck"), X_OK) == 0)
        fsck_copy(dir, round);
    struct th_server b = {0};
    const char *extra[] = {"--segment-size", "128k", "-I", "64k", NULL};
    cr_assert_eq(th_mcdbd_start(&b, dir, extra), 0,
                 "round %d: mcdbd does not start on the copy %s", round, dir);
    int fd = th_connect(b.port);
    cr_assert(fd >= 0);
    int lost = 0, damaged = 0, checked = 0;
    char req[64], want[1000];
    for (int k = 0; k < NKEYS; k++) {
        if (!snap[k])
            continue;
        checked++;
        snprintf(req, sizeof(req), "get k%d\r\n", k);
        char *r = th_ask(fd, req, "END\r\n");
        cr_assert_not_null(r, "round %d: no reply to get k%d", round, k);
        char *body = strstr(r, "\r\n");
        unsigned v = 0;
        if (strncmp(r, "VALUE ", 6) != 0 || !body ||
            sscanf(body + 2, "v%u:", &v) != 1) {
            if (lost++ < 5)
                fprintf(stderr, "round %d: k%d (acknowledged v%u) is gone\n",
                        round, k, snap[k]);
        } else if (v < snap[k]) {
            if (lost++ < 5)
                fprintf(stderr,
                        "round %d: k%d is v%u, v%u was acknowledged "
                        "before the rsync\n",
                        round, k, v, snap[k]);
        } else {
            size_t len = make_value(want, k, v);
            if (strncmp(body + 2, want, len) != 0 && damaged++ < 5)
                fprintf(stderr, "round %d: k%d v%u: wrong bytes\n", round, k,
                        v);
        }
        free(r);
    }
    close(fd);
    th_server_stop(&b, SIGTERM);
    if (lost || damaged) {
        char *log = tt_slurp(b.log, NULL);
        fprintf(stderr, "---- the server on the copy ----\n%s", log ? log : "");
        free(log);
        setenv("MCDB_KEEP_TEST_DIRS", "1", 1); /* keep it to look at */
    }
    th_server_cleanup(&b);
    cr_expect_eq(lost, 0,
                 "round %d: %d of %d keys lost writes acknowledged before the "
                 "rsync began",
                 round, lost, checked);
    cr_expect_eq(damaged, 0, "round %d: %d damaged values", round, damaged);
    cr_log_info("round %d: %d keys checked on the copy", round, checked);
}

/*
 * docs/tools.md's procedure: rsync -a --delete --exclude='*.tmp' DATA/
 * BACKUP/, again while rsync exits 24 (a file vanished: compaction deleted
 * a segment between rsync's listing of the directory and its copy, so this
 * pass may miss data and is redone). snap gets the versions acknowledged before
 * the pass that succeeded began. Passes 2 s apart, as in the procedure: a
 * server with --preallocate moves its active file's mtime a second after a
 * write that rsync's quick check (size, mtime in whole seconds) would miss.
 *   MCDB_BACKUP_BWLIMIT=KBPS   rsync --bwlimit (a slow link)
 *   MCDB_BACKUP_PAUSE_MS=N     the pause between passes (default 2000)
 *   MCDB_BACKUP_ONE_PASS=1     a single rsync, whatever its exit status
 */
static bool preallocate; /* the server runs with --preallocate yes */

static void
backup(int sfd, const char *copy, uint32_t *snap, int round)
{
    char src[4200], dst[4200], bw[64];
    snprintf(src, sizeof(src), "%s/", srv.dir);
    snprintf(dst, sizeof(dst), "%s/", copy);
    snprintf(bw, sizeof(bw), "--bwlimit=%s",
             getenv("MCDB_BACKUP_BWLIMIT") ? getenv("MCDB_BACKUP_BWLIMIT")
                                           : "0");
    bool one_pass = getenv("MCDB_BACKUP_ONE_PASS") != NULL;
    /* the pause between passes that docs/tools.md's loop takes (what
     * --preallocate needs): MCDB_BACKUP_PAUSE_MS */
    long pause_ms = getenv("MCDB_BACKUP_PAUSE_MS")
                        ? atol(getenv("MCDB_BACKUP_PAUSE_MS"))
                        : 2000;
    for (int pass = 1;; pass++) {
        for (int k = 0; k < NKEYS; k++)
            snap[k] = atomic_load(&acked[k]);
        long long runs0 = compact_runs(sfd);
        uint64_t t1 = tg_now_ms();
        const char *argv[] = {"rsync", "-a", "--delete", "--exclude=*.tmp",
                              bw,      src,  dst,        NULL};
        char *out;
        int st = tt_run(&out, argv);
        long long runs1 = compact_runs(sfd);
        cr_log_info("round %d pass %d: rsync exit %d in %llu ms, compactions "
                    "%lld -> %lld, %llu writes so far%s%s",
                    round, pass, st, (unsigned long long)(tg_now_ms() - t1),
                    runs0, runs1, (unsigned long long)atomic_load(&nwrites),
                    out[0] ? "\n" : "", out);
        cr_assert(st == 0 || st == 24, "rsync exit %d:\n%s", st, out);
        free(out);
        if (st == 0 || one_pass)
            return;
        cr_assert(pass < 20, "rsync kept finding vanished files");
        usleep((useconds_t)pause_ms * 1000);
    }
}

static void
rsync_under_writes_and_compaction(void)
{
    int rounds =
        getenv("MCDB_BACKUP_ROUNDS") ? atoi(getenv("MCDB_BACKUP_ROUNDS")) : 5;
    if (rounds < 1 || rounds > MAX_ROUNDS)
        rounds = 5;
    const char *extra[] = {
        "--segment-size",           "128k", "-I", "64k", "--preallocate",
        preallocate ? "yes" : "no", NULL};
    cr_assert_eq(th_mcdbd_start(&srv, NULL, extra), 0);
    int sfd = th_connect(srv.port);
    cr_assert(sfd >= 0);

    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i);

    /* Let the overwrites make garbage until the compactor works. */
    uint64_t t0 = tg_now_ms();
    while (compact_runs(sfd) < 2 && tg_now_ms() - t0 < 10000 &&
           !atomic_load(&writer_failed))
        usleep(50000);
    cr_assert(compact_runs(sfd) >= 1,
              "no compaction after %llu ms of overwrites (%llu writes)",
              (unsigned long long)(tg_now_ms() - t0),
              (unsigned long long)atomic_load(&nwrites));

    static uint32_t snap[MAX_ROUNDS][NKEYS];
    char *copies[MAX_ROUNDS];
    long long runs_first = compact_runs(sfd);
    for (int r = 0; r < rounds; r++) {
        copies[r] = th_tmpdir();
        backup(sfd, copies[r], snap[r], r);
        fsck_live(r);
        usleep(100000); /* writes and compaction go on */
    }
    atomic_store(&stop, true);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&writer_failed), 0, "a writer failed");
    long long runs_end = compact_runs(sfd);
    cr_log_info("%llu writes; compactions: %lld during the copies, %lld in "
                "all",
                (unsigned long long)atomic_load(&nwrites),
                runs_end - runs_first, runs_end);
    cr_assert_gt(runs_end, runs_first,
                 "the compactor never ran while the copies were taken");
    close(sfd);

    for (int r = 0; r < rounds; r++) {
        verify(copies[r], snap[r], r);
        free(copies[r]);
    }
}

Test(backup, rsync_of_a_live_server_under_writes_and_compaction_restores)
{
    rsync_under_writes_and_compaction();
}

/* docs/tools.md: the same procedure for a server with --preallocate */
Test(backup, rsync_of_a_live_preallocating_server_restores)
{
    preallocate = true;
    rsync_under_writes_and_compaction();
}

/* rsync's quick check skips a file whose size and mtime (in whole seconds)
 * have not changed since its last copy, and a preallocated segment keeps
 * its size while it is written: a write made in the second in which rsync
 * copied the file, with none after it, would never reach the backup unless
 * the server moves the file's mtime past that second (writer.c). */
Test(
    backup,
    a_plain_rsync_a_second_later_copies_a_preallocating_servers_write_made_in_the_second_of_the_last_copy)
{
    const char *extra[] = {"--preallocate", "yes", NULL};
    cr_assert_eq(th_mcdbd_start(&srv, NULL, extra), 0);
    int fd = th_connect(srv.port);
    cr_assert(fd >= 0);
    char *copy = th_tmpdir(), src[4200], dst[4200], seg[4300], cseg[4300];
    snprintf(src, sizeof(src), "%s/", srv.dir);
    snprintf(dst, sizeof(dst), "%s/", copy);
    snprintf(seg, sizeof(seg), "%s/00000000000000000000.seg", srv.dir);
    snprintf(cseg, sizeof(cseg), "%s/00000000000000000000.seg", copy);
    const char *argv[] = {"rsync", "-a", "--delete", src, dst, NULL};
    bool same_second = false;
    for (int i = 0; i < 10 && !same_second; i++) {
        char req[64], *out;
        snprintf(req, sizeof(req), "set k 0 0 2\r\nv%d\r\n", i);
        free(th_ask(fd, req, "\r\n"));
        cr_assert_eq(tt_run(&out, argv), 0, "rsync: %s", out);
        free(out);
        char *r = th_ask(fd, "set k 0 0 3\r\nnew\r\n", "\r\n");
        cr_assert_str_eq(r, "STORED\r\n");
        free(r);
        struct stat a, b;
        cr_assert_eq(stat(seg, &a), 0);
        cr_assert_eq(stat(cseg, &b), 0);
        same_second = a.st_size == b.st_size && a.st_mtime == b.st_mtime;
    }
    cr_assert(same_second, "no write landed in the second of a copy in 10 "
                           "tries: the test could not set up its case");
    usleep(1500 * 1000); /* no writes: only the server can move the mtime */
    char *out;
    cr_assert_eq(tt_run(&out, argv), 0, "rsync: %s", out);
    free(out);
    size_t la, lb;
    char *a = tt_slurp(seg, &la), *b = tt_slurp(cseg, &lb);
    cr_assert(a && b && la == lb && memcmp(a, b, la) == 0,
              "the copy misses the last write (rsync's quick check saw no "
              "change)");
    free(a);
    free(b);
    close(fd);
    th_rmrf(copy);
    free(copy);
}
