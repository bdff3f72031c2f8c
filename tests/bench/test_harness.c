/*
 * Smoke test of the benchmark harness scripts, bench/compare and
 * bench/memtier: a short run of each against this build's mcdbd and
 * memcached ends with a table that has a row for each and no problems, and
 * the options a reader passes reach the servers. The figures themselves
 * are not checked: speed is measured by bench/, never asserted here.
 *   ctest --test-dir build -R bench/harness --output-on-failure
 * memcached missing: skipped. memtier_benchmark is not a Debian package
 * (bench/README.md says how to build it): its test is skipped without it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/server.h"
#include "helpers/tool.h"

#define COMPARE MCDB_SOURCE_DIR "/bench/compare"
#define MEMTIER MCDB_SOURCE_DIR "/bench/memtier"

static void
need_memcached(void)
{
    if (system("command -v memcached >/dev/null 2>&1 || "
               "test -x /usr/bin/memcached") != 0)
        cr_skip_test("memcached is not installed: bench/compare's table "
                     "needs it as its baseline");
}

/* The file a script named on its "written: PATH" line, read whole. */
static char *
written(const char *out)
{
    const char *w = strstr(out, "written: ");
    cr_assert(w, "no \"written:\" line in the output:\n%s", out);
    w += strlen("written: ");
    char path[1024];
    size_t n = strcspn(w, "\n");
    cr_assert_lt(n, sizeof(path));
    memcpy(path, w, n);
    path[n] = '\0';
    size_t len;
    char *md = tt_slurp(path, &len);
    cr_assert(md, "cannot read %s", path);
    return md;
}

/* A table row of md that starts with "| name |" and has a number in it. */
static void
assert_row(const char *md, const char *name)
{
    char head[64];
    snprintf(head, sizeof(head), "\n| %s | ", name);
    const char *row = strstr(md, head);
    cr_assert(row, "no row for %s in:\n%s", name, md);
    row += strlen(head);
    cr_assert(row[0] >= '1' && row[0] <= '9',
              "%s's row starts with no rate: %.80s", name, row);
}

/* The table the run wrote: rows for mcdbd-always and memcached, and no
 * problems seen. */
static char *
clean_table(const char *out)
{
    char *md = written(out);
    assert_row(md, "mcdbd-always");
    assert_row(md, "memcached");
    cr_assert(strstr(md, "None: every run completed"),
              "the run saw problems:\n%s", md);
    return md;
}

/* Run bench/compare: one 1-second run of workloads by servers over keys,
 * results and data dirs in dir; mcdbd_args NULL for none. */
static int
run_compare(char **out, const char *dir, const char *servers,
            const char *workloads, const char *keys, const char *mcdbd_args)
{
    const char *opts[][2] = {
        {"--servers", servers},
        {"--workloads", workloads},
        {"--runs", "1"},
        {"--duration", "1"},
        {"--warmup", "0.2"},
        {"--keys", keys},
        {"--settle", "0"},
        {"--retries", "0"},
        {"--mcdbd", MCDBD_PATH},
        {"--bench", MCDB_BUILD_DIR "/bench/mcdb-bench"},
        {"--nothing", MCDB_BUILD_DIR "/bench/mcdb-nothing"},
        {"--results", dir},
        {"--tmpdir", dir},
        {"--mcdbd-args", mcdbd_args ? mcdbd_args : ""},
    };
    const char *argv[2 * sizeof(opts) / sizeof(opts[0]) + 2] = {COMPARE};
    size_t n = 1;
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        argv[n++] = opts[i][0];
        argv[n++] = opts[i][1];
    }
    return tt_run(out, argv);
}

Test(harness, compare_runs_mcdbd_beside_memcached_and_reports_no_problems,
     .timeout = 120)
{
    need_memcached();
    char *dir = th_tmpdir();
    char *out;
    int st = run_compare(&out, dir, "mcdbd-always,memcached", "get-p1,set-p1",
                         "1000", NULL);
    cr_assert_eq(st, 0, "bench/compare exited %d:\n%s", st, out);
    char *md = clean_table(out);
    cr_assert(strstr(md, "## set-only, pipeline 1"), "%s", md);
    free(md);
    free(out);
    th_rmrf(dir);
    free(dir);
}

/* --mcdbd-args reaches the server: an option mcdbd does not know makes its
 * start fail, and compare's error shows mcdbd's own reason. */
Test(harness, compare_passes_mcdbd_args_and_shows_why_a_server_did_not_start,
     .timeout = 120)
{
    char *dir = th_tmpdir();
    char *out;
    int st = run_compare(&out, dir, "mcdbd-always", "get-p1", "100",
                         "--no-such-option 1");
    cr_assert_neq(st, 0,
                  "bench/compare ran a mcdbd given an unknown "
                  "option:\n%s",
                  out);
    cr_assert(strstr(out, "mcdbd-always did not start") &&
                  strstr(out, "mcdbd: unknown option: --no-such-option"),
              "the failure does not show mcdbd's reason:\n%s", out);
    free(out);
    th_rmrf(dir);
    free(dir);
}

Test(harness, memtier_runs_mcdbd_beside_memcached_and_reports_no_problems,
     .timeout = 180)
{
    need_memcached();
    char *dir = th_tmpdir();
    const char *argv[] = {MEMTIER,
                          "--quick",
                          "--servers",
                          "mcdbd-always,memcached",
                          "--workloads",
                          "get-p1",
                          "--keys",
                          "1000",
                          "--mcdbd",
                          MCDBD_PATH,
                          "--nothing",
                          MCDB_BUILD_DIR "/bench/mcdb-nothing",
                          "--mcdbd-args",
                          "--value-cache 1m",
                          "--results",
                          dir,
                          "--tmpdir",
                          dir,
                          NULL};
    char *out;
    int st = tt_run(&out, argv);
    if (st == 77) {
        th_rmrf(dir);
        cr_skip_test("memtier_benchmark is not built (bench/README.md, "
                     "\"memtier\"):\n%s",
                     out);
    }
    cr_assert_eq(st, 0, "bench/memtier exited %d:\n%s", st, out);
    char *md = clean_table(out);
    cr_assert(strstr(md, "--value-cache 1m"),
              "the command line is not in the table's header:\n%s", md);
    free(md);
    free(out);
    th_rmrf(dir);
    free(dir);
}
