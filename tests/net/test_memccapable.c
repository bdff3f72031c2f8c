/*
 * memccapable (Debian's libmemcached-tools), libmemcached's own protocol
 * conformance checker, runs all its ASCII tests, and all 27 of its binary
 * protocol tests, against the server under test and must report every one
 * passed:
 *   memccapable -h 127.0.0.1 -p PORT -a
 *   memccapable -h 127.0.0.1 -p PORT -b
 *
 *   build/tests/test_net_memccapable
 *   MCDB_TEST_TARGET=memcached build/tests/test_net_memccapable
 *
 * Skipped (exit 77, with a message) when the tool is not installed.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

/* Debian names it memccapable; upstream builds call it memcapable. */
static const char *const tools[] = {
    "/usr/bin/memccapable", "/usr/bin/memcapable", "/usr/local/bin/memccapable",
    "/usr/local/bin/memcapable"};

static const char *
find_tool(void)
{
    for (size_t i = 0; i < sizeof(tools) / sizeof(*tools); i++)
        if (access(tools[i], X_OK) == 0)
            return tools[i];
    return NULL;
}

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    if (!find_tool()) {
        fprintf(stderr, "SKIP: memccapable is not installed "
                        "(apt-get install libmemcached-tools)\n");
        exit(77);
    }
    tg_require(0);
}

static struct th_server srv;

static void
setup(void)
{
    cr_assert_eq(tg_start(&srv, NULL), 0, "%s did not start", tg_name());
}

static void
teardown(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
}

TestSuite(memccapable, .init = setup, .fini = teardown, .timeout = 120);

/* Runs memccapable with mode ("-a" or "-b"); asserts it passed every test
 * and returns how many lines said "[pass]". */
static int
run_memccapable(const char *mode)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s -h 127.0.0.1 -p %d %s -t 10 2>&1",
             find_tool(), srv.port, mode);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    char *out = NULL;
    size_t outlen = 0;
    FILE *o = open_memstream(&out, &outlen);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
        fwrite(buf, 1, n, o);
    fclose(o);
    int st = pclose(p);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    cr_assert(ok && strstr(out, "All tests passed"),
              "%s exited with %d%s; its output:\n%s", cmd,
              WIFEXITED(st) ? WEXITSTATUS(st) : -1,
              WIFSIGNALED(st) ? " (killed by a signal)" : "", out);
    int passed = 0;
    for (const char *q = out; (q = strstr(q, "[pass]")); q++)
        passed++;
    /* The server is still up and in step after all of that. */
    cr_assert(tg_answers_version(srv.port));
    free(out);
    return passed;
}

Test(memccapable, passes_every_ascii_test)
{
    run_memccapable("-a");
}

Test(memccapable, passes_all_27_binary_tests)
{
    int passed = run_memccapable("-b");
    cr_assert_eq(passed, 27, "memccapable -b passed %d tests, not 27", passed);
}
