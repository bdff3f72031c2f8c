/*
 * Failing disks, through the real server: mcdbd runs with an LD_PRELOAD
 * shim (shim.c) that makes chosen file calls in its data directory fail
 * with EIO or ENOSPC once the test arms it, while three clients write.
 * Each test checks what the design promises:
 *   - no write is answered STORED on a connection after one was answered
 *     SERVER_ERROR there (every write the failure covered fails, and the
 *     store stays read-only);
 *   - `stats log` says error 1 and why (the call's error, the file);
 *   - reads go on: every acknowledged key reads back as acknowledged, and
 *     a new write gets SERVER_ERROR;
 *   - the server stops on SIGTERM; restarted without the shim (the disk is
 *     back) it holds every acknowledged write, each key either as last
 *     acknowledged or as one of the failed writes that followed, and takes
 *     writes again; stopped, mcdb-fsck finds the directory clean.
 *   build/tests/test_faults_faults --verbose
 */
#include "helpers/server.h"
#include "helpers/target.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS 3
#define MAX_WRITES 20000
#define MAX_FAILED 8 /* failed writes remembered per key */

/* ---- the shim's environment ---- */

struct fault {
    const char *calls, *path, *err, *thread;
    int after, count;
    bool short_write;
};

static char shim_preload[8192];

/* LD_PRELOAD for the shim. Under AddressSanitizer its runtime must come
 * first: the one this test program runs with is preloaded before it. */
static const char *
preload(void)
{
    char asan[4096] = "";
    FILE *f = fopen("/proc/self/maps", "r");
    char line[8192];
    while (f && fgets(line, sizeof(line), f)) {
        char *p = strchr(line, '/');
        if (p && strstr(p, "/libasan.so")) {
            p[strcspn(p, "\n")] = '\0';
            snprintf(asan, sizeof(asan), "%s", p);
            break;
        }
    }
    if (f)
        fclose(f);
    snprintf(shim_preload, sizeof(shim_preload), "%s%s%s", asan,
             asan[0] ? " " : "", MCDB_FAULT_SHIM);
    return shim_preload;
}

static void
setenv_int(const char *name, int v)
{
    char b[32];
    snprintf(b, sizeof(b), "%d", v);
    setenv(name, b, 1);
}

static void
shim_env(const char *dir, const char *arm, const struct fault *f)
{
    setenv("LD_PRELOAD", preload(), 1);
    setenv("MCDB_FAULT_DIR", dir, 1);
    setenv("MCDB_FAULT_CALLS", f->calls, 1);
    setenv("MCDB_FAULT_PATH", f->path ? f->path : "*", 1);
    setenv("MCDB_FAULT_ERRNO", f->err, 1);
    setenv_int("MCDB_FAULT_AFTER", f->after);
    setenv_int("MCDB_FAULT_COUNT", f->count);
    setenv("MCDB_FAULT_ARM", arm, 1);
    if (f->thread)
        setenv("MCDB_FAULT_THREAD", f->thread, 1);
    setenv_int("MCDB_FAULT_SHORT", f->short_write);
    const char *old = getenv("ASAN_OPTIONS");
    char asan[1024];
    snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", old ? old : "",
             old ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
}

static void
shim_env_clear(void)
{
    static const char *names[] = {"LD_PRELOAD",        "MCDB_FAULT_DIR",
                                  "MCDB_FAULT_CALLS",  "MCDB_FAULT_PATH",
                                  "MCDB_FAULT_ERRNO",  "MCDB_FAULT_AFTER",
                                  "MCDB_FAULT_COUNT",  "MCDB_FAULT_ARM",
                                  "MCDB_FAULT_THREAD", "MCDB_FAULT_SHORT"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
}

/* ---- clients that remember what was acknowledged ---- */

/* A key's history: the last write answered STORED (-1: none) and the
 * writes answered SERVER_ERROR after it (any of them may have reached the
 * disk before the failure). */
struct key_state {
    int acked;
    int nfailed;
    int failed[MAX_FAILED];
};

struct client {
    pthread_t th;
    int id, port, keys;
    struct key_state *ks;
    atomic_int stored, errors;
    bool stored_after_error; /* a promise broken */
    char unexpected[256];    /* a reply that is neither */
};

static atomic_bool stop;

static void
key_name(char *out, size_t n, int client, int k)
{
    snprintf(out, n, "c%d-k%d", client, k);
}

/* The value of write i of a client: 300 to 1800 bytes, its number first. */
static size_t
value_of(char *out, int client, int i)
{
    size_t len = 300 + (size_t)((i * 7919 + client * 104729) % 1500);
    int n = snprintf(out, len + 1, "c%d-w%d-", client, i);
    for (size_t j = (size_t)n; j < len; j++)
        out[j] = (char)('a' + (i + (int)j) % 26);
    out[len] = '\0';
    return len;
}

static void *
client_main(void *arg)
{
    struct client *c = arg;
    int fd = th_connect(c->port);
    if (fd < 0) {
        snprintf(c->unexpected, sizeof(c->unexpected), "cannot connect");
        return NULL;
    }
    char key[64], val[2048], req[2200];
    int consecutive = 0;
    unsigned seed = (unsigned)c->id * 7919u + 1;
    for (int i = 0; i < MAX_WRITES && consecutive < 10; i++) {
        if (atomic_load(&stop) && c->errors == 0)
            break;
        /* random keys: compaction's oldest segments keep live records */
        int k = c->keys < MAX_WRITES ? rand_r(&seed) % c->keys : i;
        key_name(key, sizeof(key), c->id, k);
        size_t vlen = value_of(val, c->id, i);
        int n = snprintf(req, sizeof(req), "set %s 0 0 %zu\r\n%s\r\n", key,
                         vlen, val);
        char *r = th_send(fd, req, (size_t)n) == 0
                      ? th_recv_until(fd, "\r\n", NULL)
                      : NULL;
        struct key_state *ks = &c->ks[k];
        if (r && strcmp(r, "STORED\r\n") == 0) {
            if (c->errors)
                c->stored_after_error = true;
            ks->acked = i;
            ks->nfailed = 0;
            c->stored++;
            consecutive = 0;
        } else if (r && strncmp(r, "SERVER_ERROR ", 13) == 0) {
            if (ks->nfailed < MAX_FAILED)
                ks->failed[ks->nfailed++] = i;
            c->errors++;
            consecutive++;
        } else {
            snprintf(c->unexpected, sizeof(c->unexpected), "%s: %s", key,
                     r ? r : "(no reply)");
            free(r);
            break;
        }
        free(r);
    }
    close(fd);
    return NULL;
}

static int
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Check every key against its history on a running server: 0 when all
 * hold. */
static int
check_keys(int port, struct client *cl, const char *when)
{
    int fd = th_connect(port);
    cr_assert_geq(fd, 0, "%s: cannot connect", when);
    int bad = 0, checked = 0;
    char key[64], req[128], want[2048], exp[2200];
    for (int c = 0; c < CLIENTS; c++) {
        for (int k = 0; k < cl[c].keys; k++) {
            struct key_state *ks = &cl[c].ks[k];
            if (ks->acked < 0 && ks->nfailed == 0)
                continue;
            key_name(key, sizeof(key), c, k);
            snprintf(req, sizeof(req), "get %s\r\n", key);
            char *r = th_ask(fd, req, "END\r\n");
            cr_assert_not_null(r, "%s: no reply to get %s", when, key);
            bool ok = false;
            if (strcmp(r, "END\r\n") == 0) {
                ok = ks->acked < 0;
            } else {
                for (int j = -1; j < ks->nfailed && !ok; j++) {
                    int w = j < 0 ? ks->acked : ks->failed[j];
                    if (w < 0)
                        continue;
                    size_t n = value_of(want, c, w);
                    snprintf(exp, sizeof(exp),
                             "VALUE %s 0 %zu\r\n%s\r\nEND\r\n", key, n, want);
                    ok = strcmp(r, exp) == 0;
                }
            }
            if (!ok && bad++ < 5)
                cr_log_error("%s: %s acknowledged as write %d, reads %.60s",
                             when, key, ks->acked, r);
            checked += ks->acked >= 0;
            free(r);
        }
    }
    close(fd);
    cr_log_info("%s: %d acknowledged keys checked, %d wrong", when, checked,
                bad);
    return bad;
}

/* SIGTERM, and the server must be gone within 10 s. */
static void
stop_server(struct th_server *s)
{
    kill(s->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        usleep(10000);
    }
    th_server_stop(s, SIGKILL);
    cr_assert_fail("the server did not stop on SIGTERM within 10 s");
}

static char *
slurp_log(const struct th_server *s)
{
    size_t n;
    char *t = tt_slurp(s->log, &n);
    return t ? t : strdup("");
}

/*
 * The test itself. args: the server's extra arguments. keys: keys per
 * client (fewer: more overwrites, so compaction has garbage). arm_when:
 * called every 10 ms until it says to arm the fault (NULL: once the
 * clients have 100 writes acknowledged each). want: text the error must
 * contain.
 */
struct scenario {
    struct fault f; /* no calls: no shim (a real disk fails) */
    const char *const *args;
    int keys;
    bool (*arm_when)(int port);
    const char *want[3];
    const char *data_dir;    /* NULL: a fresh one under $TMPDIR */
    void (*disk_back)(void); /* between the stop and the restart */
    int wait_ms;             /* for the failure once armed (default 10 s) */
};

static void
run(const struct scenario *sc)
{
    char *dir = sc->data_dir ? strdup(sc->data_dir) : th_tmpdir();
    char arm[4200];
    snprintf(arm, sizeof(arm), "%s.arm", dir);
    unlink(arm);
    if (sc->f.calls)
        shim_env(dir, arm, &sc->f);
    struct th_server srv = {0};
    int rc = th_mcdbd_start(&srv, dir, sc->args);
    shim_env_clear();
    cr_assert_eq(rc, 0, "mcdbd did not start");

    struct client cl[CLIENTS];
    atomic_store(&stop, false);
    for (int c = 0; c < CLIENTS; c++) {
        cl[c] = (struct client){.id = c,
                                .port = srv.port,
                                .keys = sc->keys ? sc->keys : MAX_WRITES};
        cl[c].ks = malloc((size_t)cl[c].keys * sizeof(*cl[c].ks));
        for (int k = 0; k < cl[c].keys; k++)
            cl[c].ks[k] = (struct key_state){.acked = -1};
        pthread_create(&cl[c].th, NULL, client_main, &cl[c]);
    }
    /* arm while they write */
    int t0 = now_ms();
    for (;;) {
        int fewest = cl[0].stored;
        for (int c = 1; c < CLIENTS; c++)
            if (cl[c].stored < fewest)
                fewest = cl[c].stored;
        if (sc->arm_when ? sc->arm_when(srv.port) : fewest >= 100)
            break;
        cr_assert_lt(now_ms() - t0, 15000, "the moment to arm never came");
        usleep(10000);
    }
    FILE *af = fopen(arm, "w");
    cr_assert_not_null(af);
    fclose(af);
    int armed_at = now_ms();
    /* the clients stop after 10 failures in a row each; give the failure
     * 10 s to come */
    while (now_ms() - armed_at < (sc->wait_ms ? sc->wait_ms : 10000)) {
        int done = 0;
        for (int c = 0; c < CLIENTS; c++)
            done += cl[c].errors >= 10;
        if (done == CLIENTS)
            break;
        usleep(10000);
    }
    atomic_store(&stop, true);
    int stored = 0, errors = 0;
    for (int c = 0; c < CLIENTS; c++) {
        pthread_join(cl[c].th, NULL);
        cr_expect_eq(cl[c].unexpected[0], '\0',
                     "client %d: unexpected reply %s", c, cl[c].unexpected);
        cr_expect(!cl[c].stored_after_error,
                  "client %d: a write was STORED after one failed", c);
        stored += cl[c].stored;
        errors += cl[c].errors;
    }
    cr_log_info("%d writes acknowledged, %d answered SERVER_ERROR", stored,
                errors);
    char *log = slurp_log(&srv);
    cr_assert_gt(errors, 0, "no write failed; the server's log:\n%s", log);
    if (sc->f.calls)
        cr_assert(strstr(log, "fault shim: "), "the shim injected nothing");

    /* read-only, and says why */
    int fd = th_connect(srv.port);
    cr_assert_geq(fd, 0);
    cr_expect_eq(tg_stat(fd, "log", "error"), 1, "stats log: error is not 1");
    char *st = tg_stats(fd, "log");
    cr_assert_not_null(st);
    char *et = strstr(st, "STAT error_text ");
    cr_assert_not_null(et, "no error_text in stats log");
    for (int i = 0; i < 3 && sc->want[i]; i++)
        cr_expect(strstr(et, sc->want[i]), "error_text lacks '%s': %.200s",
                  sc->want[i], et);
    cr_log_info("stats log: %.*s", (int)strcspn(et, "\r"), et);
    free(st);
    /* every write command is refused, whatever the key's state */
    static const char *const writes[] = {"set k 0 0 1\r\nx\r\n",
                                         "add k 0 0 1\r\nx\r\n",
                                         "replace c0-k0 0 0 1\r\nx\r\n",
                                         "append c0-k0 0 0 1\r\nx\r\n",
                                         "prepend c0-k0 0 0 1\r\nx\r\n",
                                         "cas c0-k0 0 0 1 1\r\nx\r\n",
                                         "incr c0-k0 1\r\n",
                                         "decr n 1\r\n",
                                         "delete c0-k0\r\n",
                                         "touch c0-k0 100\r\n",
                                         "ms k 1 T0\r\nx\r\n",
                                         "md c0-k0\r\n",
                                         "ma n N0 J5\r\n",
                                         "flush_all\r\n"};
    for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
        char *r = th_ask(fd, writes[i], "\r\n");
        cr_expect(r && strncmp(r, "SERVER_ERROR ", 13) == 0,
                  "after the failure, %.*s answers %s",
                  (int)strcspn(writes[i], "\r"), writes[i],
                  r ? r : "(no reply)");
        free(r);
    }
    /* reads go on, with everything acknowledged */
    cr_expect_eq(check_keys(srv.port, cl, "read-only"), 0);

    stop_server(&srv);
    /* the disk is back */
    if (sc->disk_back)
        sc->disk_back();
    cr_assert_eq(th_mcdbd_restart(&srv, sc->args), 0, "no restart");
    cr_expect_eq(check_keys(srv.port, cl, "after the restart"), 0);
    fd = th_connect(srv.port);
    cr_expect_eq(tg_stat(fd, "log", "error"), 0);
    char *r = th_ask(fd, "set after-restart 0 0 1\r\nx\r\n", "\r\n");
    cr_expect(r && strcmp(r, "STORED\r\n") == 0,
              "a write after the restart: %s", r ? r : "(no reply)");
    free(r);
    close(fd);
    stop_server(&srv);
    /* start-up cut what the failure left torn: the directory is clean */
    const char *fsck_argv[] = {tt_tool("mcdb-fsck"), dir, NULL};
    char *out = NULL;
    int frc = tt_run(&out, fsck_argv);
    cr_expect_eq(frc, 0, "mcdb-fsck exits %d:\n%s", frc, out ? out : "");
    free(out);

    for (int c = 0; c < CLIENTS; c++)
        free(cl[c].ks);
    free(log);
    unlink(arm);
    th_server_cleanup(&srv);
    free(dir);
}

static const char *const small_segments[] = {
    "--segment-size", "64k", "--max-item-size", "16k", "--threads", "2", NULL};

/* ---- a log write fails ---- */

Test(
    faults,
    a_log_write_failing_with_EIO_answers_SERVER_ERROR_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "write", .path = "*.seg", .err = "EIO"},
        .args = small_segments,
        .want = {"writing", ".seg", "Input/output error"}});
}

Test(
    faults,
    a_disk_that_fills_mid_write_ENOSPC_answers_SERVER_ERROR_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "write",
              .path = "*.seg",
              .err = "ENOSPC",
              .short_write = true},
        .args = small_segments,
        .want = {"writing", ".seg", "No space left on device"}});
}

/* ---- fdatasync fails ---- */

Test(
    faults,
    an_fdatasync_failing_with_EIO_answers_SERVER_ERROR_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "fsync", .path = "*.seg", .err = "EIO"},
        .args = small_segments,
        .want = {"fdatasync", ".seg", "Input/output error"}});
}

Test(
    faults,
    an_fdatasync_failing_with_ENOSPC_answers_SERVER_ERROR_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "fsync", .path = "*.seg", .err = "ENOSPC"},
        .args = small_segments,
        .want = {"fdatasync", ".seg", "No space left on device"}});
}

/* ---- a new segment cannot be started ---- */

Test(
    faults,
    a_new_segment_that_cannot_be_created_ENOSPC_answers_SERVER_ERROR_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "open", .path = "*.seg.tmp", .err = "ENOSPC"},
        .args = small_segments,
        .want = {"creating", ".seg", "No space left on device"}});
}

Test(
    faults,
    a_new_segment_that_cannot_be_created_EIO_answers_SERVER_ERROR_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "open", .path = "*.seg.tmp", .err = "EIO"},
        .args = small_segments,
        .want = {"creating", ".seg", "Input/output error"}});
}

Test(
    faults,
    a_new_segment_that_cannot_be_named_answers_SERVER_ERROR_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "rename", .path = "*.seg.tmp", .err = "EIO"},
        .args = small_segments,
        .want = {"naming", ".seg", "Input/output error"}});
}

Test(
    faults,
    a_new_segment_whose_name_cannot_be_made_durable_answers_SERVER_ERROR_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f =
            {.calls = "fsync", .path = ".", .thread = "mcdb-log", .err = "EIO"},
        .args = small_segments,
        .want = {"fsync of directory", "Input/output error"}});
}

/* ---- a hint file cannot be written ---- */

Test(
    faults,
    a_hint_write_failing_with_EIO_makes_the_store_read_only_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "write", .path = "*.hint*", .err = "EIO"},
        .args = small_segments,
        .want = {"hint", "Input/output error"}});
}

Test(
    faults,
    a_hint_write_failing_with_ENOSPC_makes_the_store_read_only_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "write", .path = "*.hint*", .err = "ENOSPC"},
        .args = small_segments,
        .want = {"hint", "No space left on device"}});
}

/* ---- compaction's writes fail ---- */

static const char *const compacting[] = {
    "--segment-size",    "64k",  "--max-item-size", "16k", "--threads", "2",
    "--compact-garbage", "0.05", "--compact-rate",  "48k", NULL};

static const char *const compacting_fast[] = {
    "--segment-size",    "64k",  "--max-item-size", "16k", "--threads", "2",
    "--compact-garbage", "0.05", "--compact-rate",  "0",   NULL};

/* The compactor is copying live records of a segment: it has copied some,
 * and at 48 KiB/s a 64 KiB segment takes over a second. (400 keys a
 * client: the oldest segments still hold live records to copy.) */
static bool
compacting_now(int port)
{
    int fd = th_connect(port);
    long long read = tg_stat(fd, "log", "compact_bytes_read");
    long long copied = tg_stat(fd, "log", "compact_bytes_copied");
    close(fd);
    return read > 0 && copied > 0;
}

Test(
    faults,
    log_writes_failing_while_compaction_copies_answer_SERVER_ERROR_and_recover_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "write", .path = "*.seg", .err = "EIO"},
        .args = compacting,
        .keys = 400,
        .arm_when = compacting_now,
        .want = {"writing", ".seg", "Input/output error"}});
}

Test(
    faults,
    a_disk_filling_while_compaction_copies_answers_SERVER_ERROR_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "write",
              .path = "*.seg",
              .err = "ENOSPC",
              .short_write = true},
        .args = compacting,
        .keys = 400,
        .arm_when = compacting_now,
        .want = {"writing", ".seg", "No space left on device"}});
}

/* The compactor deleted a segment: the directory's fsync fails. */
Test(
    faults,
    compaction_failing_to_make_a_deletion_durable_makes_the_store_read_only_and_recovers_every_acknowledged_write)
{
    run(&(struct scenario){
        .f = {.calls = "fsync",
              .path = ".",
              .thread = "mcdb-compact",
              .err = "EIO"},
        .args = compacting_fast,
        .keys = 40,
        .want = {"deleting compacted segment", "Input/output error"}});
}

/* ---- a real full file system: ext4 on a loop device ---- */

static char loop_img[4200], loop_mnt[4200], loop_data[4300], *loop_base;

static int
sh(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The operator makes room: the file system grows to 32 MiB. */
static void
grow_disk(void)
{
    cr_assert_eq(sh("umount %s", loop_mnt), 0);
    cr_assert_eq(sh("truncate -s 32M %s && e2fsck -fy %s >/dev/null 2>&1; "
                    "resize2fs %s >/dev/null 2>&1 && mount -o loop %s %s",
                    loop_img, loop_img, loop_img, loop_img, loop_mnt),
                 0, "cannot grow the file system");
}

static void
loop_teardown(void)
{
    if (!loop_base)
        return;
    sh("umount %s 2>/dev/null", loop_mnt);
    th_rmrf(loop_base);
    free(loop_base);
    loop_base = NULL;
}

Test(
    faults,
    a_real_full_file_system_answers_SERVER_ERROR_and_after_it_grows_a_restart_recovers_every_acknowledged_write,
    .fini = loop_teardown)
{
    if (geteuid() != 0 || !th_in_path("mkfs.ext4") || !th_in_path("mount") ||
        !th_installed("resize2fs"))
        cr_skip_test("needs root, mkfs.ext4, resize2fs and mount -o loop");
    loop_base = th_tmpdir();
    snprintf(loop_img, sizeof(loop_img), "%s/disk.img", loop_base);
    snprintf(loop_mnt, sizeof(loop_mnt), "%s/mnt", loop_base);
    snprintf(loop_data, sizeof(loop_data), "%s/data", loop_mnt);
    if (mkdir(loop_mnt, 0755) != 0 ||
        sh("truncate -s 6M %s && mkfs.ext4 -q -F -m 0 %s && "
           "mount -o loop %s %s 2>/dev/null",
           loop_img, loop_img, loop_img, loop_mnt) != 0)
        cr_skip_test("cannot mount a loop device here");
    cr_assert_eq(mkdir(loop_data, 0755), 0);
    static const char *const args[] = {"--segment-size",
                                       "256k",
                                       "--max-item-size",
                                       "16k",
                                       "--threads",
                                       "2",
                                       NULL};
    run(&(struct scenario){.args = args,
                           .data_dir = loop_data,
                           .disk_back = grow_disk,
                           .wait_ms = 30000,
                           .want = {"No space left on device"}});
}
