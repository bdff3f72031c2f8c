/*
 * mcdb-sync, the refresh from a database of record: the built binary is
 * run against real mcdbd servers with rows from a real SQLite database
 * (Debian's sqlite3), from files, and from commands that fail. Each test
 * asserts the exit status (0 in sync, 1 WARNING, 2 CRITICAL, 3 could not
 * check) and the classes and keys it names.
 *   build/test_tools_sync --verbose
 * The race: a client keeps setting newer values while apply runs; no key
 * may end older than the newest value written.
 */
#include "helpers/server.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef MCDB_HAVE_LIBMEMCACHED
#include <libmemcached/memcached.h>
#endif

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    if (access(tt_tool("mcdb-sync"), X_OK) != 0) {
        fprintf(stderr, "SKIP: %s is not built\n", tt_tool("mcdb-sync"));
        exit(77);
    }
    if (!th_in_path("sqlite3")) {
        fprintf(stderr, "SKIP: sqlite3 is not installed (apt-get install "
                        "sqlite3)\n");
        exit(77);
    }
}

static struct th_server srv[3];
static char *dir;

static void
teardown(void)
{
    for (int i = 0; i < 3; i++)
        th_server_cleanup(&srv[i]);
    if (dir)
        th_rmrf(dir);
    free(dir);
    dir = NULL;
}

TestSuite(sync, .fini = teardown, .timeout = 60);

static const char *
addr(int port)
{
    static char buf[4][32];
    static int n;
    char *b = buf[n++ % 4];
    snprintf(b, 32, "127.0.0.1:%d", port);
    return b;
}

static void
sh(const char *fmt, const char *arg)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), fmt, arg, arg, arg);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* mcdb-sync CMD --servers S --source-cmd SRC [more...]: exit status,
 * output in *out. */
static int
sync_run(char **out, const char *cmd, const char *servers, const char *src,
         const char *more1, const char *more2)
{
    const char *argv[] = {tt_tool("mcdb-sync"),
                          cmd,
                          "--servers",
                          servers,
                          "--source-cmd",
                          src,
                          more1,
                          more2,
                          NULL};
    return tt_run(out, argv);
}

#define SQL_ROWS                                                               \
    "sqlite3 %s/app.db \"SELECT json_object('key', 'setting:' || id, "         \
    "'version', version, 'value', value) FROM settings\""

Test(sync, a_sqlite_table_out_of_sync_is_checked_by_class_and_repaired_by_apply)
{
    char *out = NULL, src[1024];
    dir = th_tmpdir();
    cr_assert_eq(th_mcdbd_start(&srv[0], NULL, NULL), 0);
    const char *s = addr(srv[0].port);
    sh("sqlite3 %s/app.db \"CREATE TABLE settings(id INTEGER PRIMARY KEY, "
       "version INTEGER, value TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION "
       "ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO settings SELECT i, "
       "1000 + i, 'theme-' || i FROM n\"",
       dir);
    snprintf(src, sizeof(src), SQL_ROWS, dir);
    int rc = sync_run(&out, "apply", s, src, "--version-unit", "none");
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "wrote 500 (500 missing)"), "%s", out);
    free(out);

    /* change 3 rows, delete 2 (the store keeps them: not in the source),
     * add 1; one changed row keeps its version: a conflict */
    sh("sqlite3 %s/app.db \"UPDATE settings SET value = 'dark', version = "
       "version + 100 WHERE id IN (7, 8); UPDATE settings SET value = 'odd' "
       "WHERE id = 9; DELETE FROM settings WHERE id IN (20, 21); INSERT INTO "
       "settings VALUES (501, 5, 'new')\"",
       dir);
    rc = sync_run(&out, "check", s, src, "--version-unit", "none");
    cr_assert_eq(rc, 2, "a conflict is CRITICAL: %s", out);
    cr_assert(strstr(out, "missing          1\n"), "%s", out);
    cr_assert(strstr(out, "older in store   2\n"), "%s", out);
    cr_assert(strstr(out, "conflict         1\n"), "%s", out);
    cr_assert(strstr(out, "in sync          495\n"), "%s", out);
    free(out);
    rc = sync_run(&out, "check", s, src, "--list", "--version-unit=none");
    cr_assert(strstr(out, "missing setting:501\n"), "%s", out);
    cr_assert(strstr(out, "older setting:7\n"), "%s", out);
    cr_assert(strstr(out, "older setting:8\n"), "%s", out);
    cr_assert(strstr(out, "conflict setting:9\n"), "%s", out);
    free(out);

    rc = sync_run(&out, "apply", s, src, "--version-unit", "none");
    cr_assert_eq(rc, 2, "the conflict is left, CRITICAL: %s", out);
    cr_assert(strstr(out, "wrote 3 (1 missing, 2 older in store)"), "%s", out);
    free(out);
    sh("sqlite3 %s/app.db \"UPDATE settings SET version = version + 1 WHERE "
       "id = 9\"",
       dir);
    rc = sync_run(&out, "apply", s, src, "--version-unit", "none");
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    rc = sync_run(&out, "check", s, src, "--version-unit", "none");
    cr_assert_eq(rc, 0, "a second check is clean: %s", out);
    cr_assert(strstr(out, "in sync          499\n"), "%s", out);
    free(out);

    /* the deleted rows: listed by the store, deleted by --delete-missing */
    rc = sync_run(&out, "apply", s, src, "--version-unit=none",
                  "--delete-missing");
    if (strstr(out, "cannot list its keys")) {
        /* an mcdbd without lru_crawler metadump: a clear refusal, before
         * anything is written */
        cr_assert_eq(rc, 3, "%s", out);
        cr_assert(strstr(out, "0 keys read"), "%s", out);
    } else {
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "deleted 2 "), "%s", out);
    }
    free(out);
}

Test(sync, bad_rows_name_their_line_exit_3_and_stop_there)
{
    char *out = NULL, src[1024];
    dir = th_tmpdir();
    cr_assert_eq(th_mcdbd_start(&srv[0], NULL, NULL), 0);
    const char *s = addr(srv[0].port);
    char long_key[300];
    memset(long_key, 'k', 260);
    long_key[260] = '\0';
    struct {
        const char *rows, *want;
    } cases[] = {
        {"a\\t1\\tx\\nb\\tnope\\ty\\n",
         "line 2: the version 'nope' is not a number"},
        {"a\\t1\\n", "line 1: 2 fields"},
        {"a b\\t1\\tx\\n", "line 1: the key holds a space"},
        {"a\\t1\\tx\\tbad\\n", "line 1: flags is not a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(src, sizeof(src), "printf '%s'", cases[i].rows);
        int rc = sync_run(&out, "apply", s, src, "--format", "tsv");
        cr_assert_eq(rc, 3, "%s", out);
        cr_assert(strstr(out, cases[i].want), "want '%s' in: %s", cases[i].want,
                  out);
        free(out);
    }
    snprintf(src, sizeof(src), "printf 'ok\\t1\\tv\\n%s\\t1\\tv\\n'", long_key);
    int rc = sync_run(&out, "apply", s, src, "--format", "tsv");
    cr_assert_eq(rc, 3, "%s", out);
    cr_assert(strstr(out, "line 2: the key is longer than 250 bytes"), "%s",
              out);
    cr_assert(strstr(out, "wrote 1 (1 missing)"),
              "the row before is applied and reported: %s", out);
    free(out);

    /* a source command that fails after its rows */
    rc = sync_run(&out, "apply", s,
                  "printf 'x1\\t1\\tv\\nx2\\t1\\tv\\n'; exit 4", "--format",
                  "tsv");
    cr_assert_eq(rc, 3, "%s", out);
    cr_assert(strstr(out, "exited with status 4 after line 2"), "%s", out);
    cr_assert(strstr(out, "wrote 2 (2 missing)"), "%s", out);
    free(out);

    rc = sync_run(&out, "check", s, "printf 'key,version\\nk,1\\n'", "--format",
                  "csv");
    cr_assert_eq(rc, 3, "%s", out);
    cr_assert(strstr(out, "line 1: the header needs"), "%s", out);
    free(out);
}

Test(sync, csv_with_quotes_and_line_breaks_is_read_whole)
{
    char *out = NULL;
    cr_assert_eq(th_mcdbd_start(&srv[0], NULL, NULL), 0);
    const char *s = addr(srv[0].port);
    const char *src =
        "printf 'version,key,value,flags\\n3,a,\"x,\"\"y\"\"\\nz\","
        "7\\n4,b,plain,\\n'";
    int rc = sync_run(&out, "apply", s, src, "--format", "csv");
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "wrote 2"), "%s", out);
    free(out);
    rc = sync_run(&out, "check", s, src, "--format", "csv");
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "in sync          2\n"), "%s", out);
    free(out);
}

#ifdef MCDB_HAVE_LIBMEMCACHED
Test(sync, three_servers_with_ketama_placement_by_libmemcached)
{
    char *out = NULL;
    dir = th_tmpdir();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(th_mcdbd_start(&srv[i], NULL, NULL), 0);
    char servers[128];
    snprintf(servers, sizeof(servers), "%s,%s,%s", addr(srv[0].port),
             addr(srv[1].port), addr(srv[2].port));
    memcached_st *mc = memcached_create(NULL);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_KETAMA, 1);
    for (int i = 0; i < 3; i++)
        memcached_server_add(mc, "127.0.0.1", (in_port_t)srv[i].port);
    char path[512];
    snprintf(path, sizeof(path), "%s/rows.tsv", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < 300; i++) {
        char k[32], v[32];
        snprintf(k, sizeof(k), "user:%d", i);
        snprintf(v, sizeof(v), "v%d", i);
        cr_assert_eq(memcached_set(mc, k, strlen(k), v, strlen(v), 0, 0),
                     MEMCACHED_SUCCESS);
        fprintf(f, "%s\t1\t%s\n", k, v);
    }
    fclose(f);
    memcached_free(mc);
    char src[600];
    snprintf(src, sizeof(src), "cat %s", path);
    int rc = sync_run(&out, "check", servers, src, "--format=tsv",
                      "--distribution=ketama");
    cr_assert_eq(rc, 0, "every key found where libmemcached put it: %s", out);
    cr_assert(strstr(out, "in sync          300\n"), "%s", out);
    free(out);
    rc = sync_run(&out, "check", servers, src, "--format=tsv",
                  "--distribution=modula");
    cr_assert_eq(rc, 1, "another placement misses keys: %s", out);
    free(out);
}
#endif

Test(sync, a_classic_set_after_the_row_is_newer_in_store_and_apply_leaves_it)
{
    char *out = NULL, src[256];
    cr_assert_eq(th_mcdbd_start(&srv[0], NULL, NULL), 0);
    const char *s = addr(srv[0].port);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long us = (long long)ts.tv_sec * 1000000 - 5000000; /* 5 s ago */
    snprintf(src, sizeof(src), "printf 'k\\t%lld\\tdb\\n'", us);
    int rc = sync_run(&out, "apply", s, src, "--format", "tsv");
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    int fd = th_connect(srv[0].port);
    cr_assert(fd >= 0);
    free(th_ask(fd, "set k 0 0 3\r\napp\r\n", "\r\n"));
    rc = sync_run(&out, "apply", s, src, "--format", "tsv");
    cr_assert_eq(rc, 1, "the store is newer: WARNING, nothing written: %s",
                 out);
    cr_assert(strstr(out, "newer in store   1\n"), "%s", out);
    cr_assert(strstr(out, "wrote 0"), "%s", out);
    char *v = th_ask(fd, "get k\r\n", "END\r\n");
    cr_assert(v && strstr(v, "\r\napp\r\n"), "%s", v ? v : "(nothing)");
    free(v);
    close(fd);
    free(out);
}

/* An application client: classic sets of newer values to the keys apply is
 * refreshing, logging the last value of each key it wrote. */
struct writer {
    int port;
    volatile int stop;
    char last[2000][16];
};

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    int fd = th_connect(w->port);
    for (unsigned n = 0; fd >= 0 && !w->stop; n++) {
        unsigned k = (n * 7919u) % 2000u;
        char req[96], val[16];
        snprintf(val, sizeof(val), "app%u", n);
        snprintf(req, sizeof(req), "set r%u 0 0 %zu\r\n%s\r\n", k, strlen(val),
                 val);
        char *got = th_ask(fd, req, "\r\n");
        if (got && strcmp(got, "STORED\r\n") == 0)
            memcpy(w->last[k], val, sizeof(val));
        free(got);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* apply (mode: "--pipeline=4", or "--write-only") over 2000 keys while the
 * writer sets newer values to them: the newest write of each key stays. */
static void
apply_while_the_application_writes(const char *mode)
{
    char *out = NULL, src[600], path[512];
    dir = th_tmpdir();
    cr_assert_eq(th_mcdbd_start(&srv[0], NULL, NULL), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long us = (long long)ts.tv_sec * 1000000 - 2000000;
    snprintf(path, sizeof(path), "%s/rows.tsv", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < 2000; i++)
        fprintf(f, "r%d\t%lld\tdb%d\n", i, us, i);
    fclose(f);
    static struct writer w;
    memset(&w, 0, sizeof(w));
    w.port = srv[0].port;
    pthread_t t;
    pthread_create(&t, NULL, writer_main, &w);
    snprintf(src, sizeof(src), "cat %s", path);
    int rc =
        sync_run(&out, "apply", addr(srv[0].port), src, "--format=tsv", mode);
    w.stop = 1;
    pthread_join(t, NULL);
    cr_assert(rc == 0 || rc == 1, "%s", out);
    free(out);
    int fd = th_connect(srv[0].port);
    int app = 0;
    for (int i = 0; i < 2000; i++) {
        char req[32];
        snprintf(req, sizeof(req), "get r%d\r\n", i);
        char *v = th_ask(fd, req, "END\r\n");
        cr_assert(v);
        if (w.last[i][0]) {
            app++;
            cr_assert(strstr(v, w.last[i]),
                      "r%d: the newest write was %s, "
                      "the store holds %s",
                      i, w.last[i], v);
        }
        free(v);
    }
    close(fd);
    cr_assert(app > 0, "the writer wrote nothing");
}

Test(sync, apply_never_overwrites_an_application_write_that_lands_meanwhile)
{
    apply_while_the_application_writes("--pipeline=4");
}

Test(sync,
     write_only_never_overwrites_an_application_write_that_lands_meanwhile)
{
    apply_while_the_application_writes("--write-only");
}

/* Rows for apply_counts_every_class_exactly: P:k0..k99 newer than the
 * store, P:k100..k199 as the store holds them, P:k200..k299 missing. */
static void
write_rows(const char *path, const char *prefix, bool changed)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < (changed ? 300 : 200); i++) {
        bool newer = changed && (i < 100 || i >= 200);
        fprintf(f, "%s:k%d\t%d\t%s%d\n", prefix, i, newer ? 2000 : 1000,
                newer ? "new" : "old", i);
    }
    fclose(f);
}

Test(sync, apply_counts_every_class_exactly_at_any_pipeline_and_connections)
{
    static const char *const shapes[][2] = {
        {"--connections=1", "--pipeline=1"},
        {"--connections=1", "--pipeline=2"},
        {"--connections=3", "--pipeline=5"},
        {"--connections=4", "--pipeline=64"},
    };
    char *out = NULL, src[600], path[512], prefix[16];
    dir = th_tmpdir();
    cr_assert_eq(th_mcdbd_start(&srv[0], NULL, NULL), 0);
    const char *s = addr(srv[0].port);
    for (size_t n = 0; n < sizeof(shapes) / sizeof(shapes[0]); n++) {
        snprintf(prefix, sizeof(prefix), "p%zu", n);
        snprintf(path, sizeof(path), "%s/%s.tsv", dir, prefix);
        snprintf(src, sizeof(src), "cat %s", path);
        write_rows(path, prefix, false);
        int rc = sync_run(&out, "apply", s, src, "--format=tsv",
                          "--version-unit=none");
        cr_assert_eq(rc, 0, "%s", out);
        free(out);
        write_rows(path, prefix, true);
        const char *argv[] = {tt_tool("mcdb-sync"),
                              "apply",
                              "--servers",
                              s,
                              "--source-cmd",
                              src,
                              "--format=tsv",
                              "--version-unit=none",
                              shapes[n][0],
                              shapes[n][1],
                              NULL};
        rc = tt_run(&out, argv);
        cr_assert_eq(rc, 0, "%s %s: %s", shapes[n][0], shapes[n][1], out);
        cr_assert(strstr(out, "in sync          100\n") &&
                      strstr(out, "missing          100\n") &&
                      strstr(out, "older in store   100\n") &&
                      strstr(out, "newer in store   0\n") &&
                      strstr(out, "wrote 200 (100 missing, 100 older in "
                                  "store), 0 writes lost") &&
                      strstr(out, "still out of sync 0;"),
                  "%s %s: %s", shapes[n][0], shapes[n][1], out);
        free(out);
        rc = sync_run(&out, "check", s, src, "--format=tsv",
                      "--version-unit=none");
        cr_assert_eq(rc, 0, "%s %s: a second check: %s", shapes[n][0],
                     shapes[n][1], out);
        cr_assert(strstr(out, "in sync          300\n"), "%s", out);
        free(out);
    }
}

/* --write-only: one ms V per row; the store's newer and same versions are
 * kept (not classified), the rest written, and check agrees afterwards. */
Test(sync, write_only_writes_missing_and_older_rows_and_keeps_the_rest)
{
    char *out = NULL, src[600], path[512];
    dir = th_tmpdir();
    cr_assert_eq(th_mcdbd_start(&srv[0], NULL, NULL), 0);
    const char *s = addr(srv[0].port);
    snprintf(path, sizeof(path), "%s/w.tsv", dir);
    snprintf(src, sizeof(src), "cat %s", path);
    write_rows(path, "w", false);
    int rc =
        sync_run(&out, "apply", s, src, "--format=tsv", "--version-unit=none");
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    /* w:k150 written by the application since: a generated cas, newer */
    int fd = th_connect(srv[0].port);
    cr_assert(fd >= 0);
    free(th_ask(fd, "set w:k150 0 0 3\r\napp\r\n", "\r\n"));
    write_rows(path, "w", true);
    const char *argv[] = {
        tt_tool("mcdb-sync"),  "apply", "--servers",    s,
        "--source-cmd",        src,     "--format=tsv", "--write-only",
        "--version-unit=none", NULL};
    rc = tt_run(&out, argv);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "written          200\nkept             100\n") &&
                  strstr(out, "apply --write-only: OK - 300 rows, wrote 200 "
                              "(missing or older in store), kept 100"),
              "%s", out);
    free(out);
    char *v = th_ask(fd, "get w:k150\r\n", "END\r\n");
    cr_assert(v && strstr(v, "\r\napp\r\n"), "%s", v ? v : "(nothing)");
    free(v);
    close(fd);
    rc = sync_run(&out, "check", s, src, "--format=tsv", "--version-unit=none");
    cr_assert_eq(rc, 1, "only w:k150 is out of sync (newer): %s", out);
    cr_assert(strstr(out, "in sync          299\n") &&
                  strstr(out, "newer in store   1\n"),
              "%s", out);
    free(out);
}

Test(sync, write_only_with_check_dry_run_or_list_is_a_usage_error)
{
    static const char *const bad[][2] = {
        {"check", "--write-only"},
        {"apply", "--dry-run"},
        {"apply", "--list"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = NULL;
        const char *argv[] = {tt_tool("mcdb-sync"), bad[i][0], "--write-only",
                              bad[i][1], NULL};
        int rc = tt_run(&out, argv);
        cr_assert_eq(rc, 3, "%s %s: %s", bad[i][0], bad[i][1], out);
        cr_assert(strstr(out, "--write-only is for apply, without --dry-run "
                              "or --list"),
                  "%s %s: %s", bad[i][0], bad[i][1], out);
        free(out);
    }
}

Test(sync, write_only_with_delete_missing_deletes_the_keys_no_row_names)
{
    char *out = NULL;
    cr_assert_eq(th_mcdbd_start(&srv[0], NULL, NULL), 0);
    const char *s = addr(srv[0].port);
    int rc =
        sync_run(&out, "apply", s,
                 "printf 'a\\t100\\tone\\nb\\t200\\ttwo\\nc\\t300\\tthree\\n'",
                 "--format=tsv", "--version-unit=none");
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    const char *argv[] = {tt_tool("mcdb-sync"),
                          "apply",
                          "--servers",
                          s,
                          "--source-cmd",
                          "printf 'a\\t150\\tONE\\nb\\t200\\ttwo\\n'",
                          "--format=tsv",
                          "--version-unit=none",
                          "--write-only",
                          "--delete-missing",
                          NULL};
    rc = tt_run(&out, argv);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "written          1\nkept             1\n"
                          "not in source    1\n") &&
                  strstr(out, "deleted 1 (0 changed since listed"),
              "%s", out);
    free(out);
    int fd = th_connect(srv[0].port);
    cr_assert(fd >= 0);
    char *v = th_ask(fd, "get a\r\nget c\r\n", "END\r\nEND\r\n");
    cr_assert(v && strstr(v, "\r\nONE\r\nEND\r\nEND\r\n"),
              "a is the row's value, c is gone: %s", v ? v : "(nothing)");
    free(v);
    close(fd);
}
