/*
 * mcdb-compact: offline compaction of a directory full of overwrites
 * shrinks it and keeps every live key; it refuses a directory a server
 * holds, and anything that is not a data directory.
 *   build/tests/test_tools_compact_tool --verbose
 */
#include "helpers/server.h"
#include "helpers/store_util.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    const char *tools[] = {"mcdb-compact", "mcdb-fsck"};
    for (int i = 0; i < 2; i++)
        if (access(tt_tool(tools[i]), X_OK) != 0) {
            fprintf(stderr, "SKIP: %s is not built\n", tt_tool(tools[i]));
            exit(77);
        }
}

static struct tstore t;

#define NKEYS 200
#define ROUNDS 12
#define NDELETED 20
#define VLEN 300

static void
value(char *buf, int key, int round)
{
    int n = snprintf(buf, VLEN + 1, "key%d-round%d-", key, round);
    memset(buf + n, 'a' + (key + round) % 26, (size_t)(VLEN - n));
    buf[VLEN] = '\0';
}

static void
setup(void)
{
    ts_init(&t, 64 << 10, 0);
    t.cfg.compactor = false; /* let the garbage pile up */
    ts_open(&t);
    char key[32], val[VLEN + 1];
    for (int round = 0; round < ROUNDS; round++)
        for (int i = 0; i < NKEYS; i++) {
            snprintf(key, sizeof(key), "key%d", i);
            value(val, i, round);
            cr_assert_eq(ts_set(&t, key, val, (uint32_t)round, 0), 0);
        }
    for (int i = 0; i < NDELETED; i++) {
        struct store_write w;
        snprintf(key, sizeof(key), "key%d", i);
        cr_assert_eq(
            store_delete(
                t.s, &(struct store_del){.key = key, .klen = strlen(key)}, &w),
            0);
        cr_assert_eq(store_wait(t.s, w.ack), 0);
    }
    ts_close(&t);
}

static void
teardown(void)
{
    ts_destroy(&t);
}

TestSuite(compact_tool, .init = setup, .fini = teardown, .timeout = 60);

static long long
log_size(void)
{
    uint64_t bases[256];
    size_t n = ts_segments(&t, bases, 256);
    long long total = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        ts_seg_path(&t, bases[i], path, sizeof(path));
        total += ts_file_size(path);
    }
    return total;
}

static int
run(const char *tool, const char *dir, char **out)
{
    const char *argv[] = {tt_tool(tool), dir, NULL};
    int st = tt_run(out, argv);
    cr_log_info("$ %s %s -> %d\n%s", tool, dir, st, *out);
    return st;
}

#define assert_has(out, s)                                                     \
    cr_assert(strstr((out), (s)) != NULL, "expected \"%s\" in:\n%s", (s), (out))

Test(compact_tool, shrinks_a_directory_of_overwrites_and_keeps_every_live_key)
{
    long long before = log_size();
    char *out;
    cr_assert_eq(run("mcdb-compact", t.dir, &out), 0, "%s", out);
    assert_has(out, "before:");
    assert_has(out, "after:");
    free(out);
    long long after = log_size();
    cr_log_info("log: %lld bytes before, %lld after", before, after);
    cr_assert(after < before / 4, "log %lld bytes before, %lld after", before,
              after);

    cr_assert_eq(run("mcdb-fsck", t.dir, &out), 0, "%s", out);
    free(out);

    ts_open(&t);
    char key[32], want[VLEN + 1];
    for (int i = 0; i < NKEYS; i++) {
        snprintf(key, sizeof(key), "key%d", i);
        uint32_t flags;
        char *v = ts_get(&t, key, &flags, NULL);
        if (i < NDELETED) {
            cr_assert_null(v, "%s was deleted, and is back", key);
            continue;
        }
        cr_assert_not_null(v, "%s is lost", key);
        value(want, i, ROUNDS - 1);
        cr_assert_str_eq(v, want);
        cr_assert_eq(flags, ROUNDS - 1);
        free(v);
    }
    ts_close(&t);
}

Test(compact_tool, refuses_a_directory_that_a_server_holds)
{
    ts_open(&t);
    long long before = log_size();
    char *out, want[64];
    cr_assert_eq(run("mcdb-compact", t.dir, &out), 8);
    snprintf(want, sizeof(want), "in use by process %ld", (long)getpid());
    assert_has(out, want);
    free(out);
    cr_assert_eq(log_size(), before);
    ts_close(&t);
}

Test(compact_tool, refuses_a_damaged_log_with_4)
{
    uint64_t bases[256];
    size_t n = ts_segments(&t, bases, 256);
    cr_assert(n > 3);
    char path[4096];
    ts_seg_path(&t, bases[1], path, sizeof(path));
    tt_flip(path, 1000, 0x01);
    char *out;
    cr_assert_eq(run("mcdb-compact", t.dir, &out), 4);
    assert_has(out, "mcdb-fsck");
    free(out);
}

Test(compact_tool, refuses_what_is_not_a_data_directory)
{
    char *out, *empty = th_tmpdir(), missing[4200];
    cr_assert_eq(run("mcdb-compact", empty, &out), 8);
    assert_has(out, "not an mcdb data directory");
    free(out);
    snprintf(missing, sizeof(missing), "%s/nothing", empty);
    cr_assert_eq(run("mcdb-compact", missing, &out), 8);
    free(out);
    cr_assert_neq(access(missing, F_OK), 0, "mcdb-compact created %s", missing);
    th_rmrf(empty);
    free(empty);

    const char *none[] = {tt_tool("mcdb-compact"), NULL};
    cr_assert_eq(tt_run(&out, none), 16);
    free(out);
    const char *help[] = {tt_tool("mcdb-compact"), "--help", NULL};
    cr_assert_eq(tt_run(&out, help), 0);
    assert_has(out, "Usage: mcdb-compact");
    free(out);
}

Test(compact_tool, refuses_a_replica_data_directory_whose_primary_compacts)
{
    /* the same log, now a replica's */
    struct logdir_meta m;
    char err[256];
    cr_assert_eq(logdir_meta_load(t.dir, &m, err, sizeof(err)), 0, "%s", err);
    m.role = LOGDIR_REPLICA;
    snprintf(m.primary, sizeof(m.primary), "127.0.0.1:11211");
    cr_assert_eq(logdir_meta_save(t.dir, &m, err, sizeof(err)), 0, "%s", err);
    long long before = log_size();
    char *out;
    cr_assert_eq(run("mcdb-compact", t.dir, &out), 8);
    assert_has(out, "is a replica's data directory");
    free(out);
    cr_assert_eq(log_size(), before);
}
