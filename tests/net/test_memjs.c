/*
 * memjs, the most used memcached client for Node.js, which speaks only the
 * binary protocol: tests/js/memjs_test.js (pinned in tests/js/package-lock
 * .json, installed by ./test.sh through scripts/deps.sh need_npm) run with
 * node against a server this suite starts and stops by its pid.
 *
 *   npm ci --prefix tests/js
 *   build/tests/test_net_memjs
 *   MCDB_TEST_TARGET=memcached build/tests/test_net_memjs
 *
 * memcached runs without -B ascii here (it negotiates, as by default), and
 * for SASL with -S and a sasldb made by saslpasswd2 (Debian's sasl2-bin);
 * mcdbd with --auth-file, whose user:password lines serve SASL PLAIN.
 * Without node, or without memjs in tests/js/node_modules, the whole suite
 * is skipped (exit 77) saying which.
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
#include "helpers/tool.h"

#ifndef MCDB_SOURCE_DIR
#define MCDB_SOURCE_DIR "."
#endif

#define MEMJS_SCRIPT MCDB_SOURCE_DIR "/tests/js/memjs_test.js"
#define MEMJS_MODULE MCDB_SOURCE_DIR "/tests/js/node_modules/memjs/package.json"
#define SASLPASSWD2 "/usr/sbin/saslpasswd2"

#define USER "alice"
#define PASSWORD "s3cret"

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    tg_require(0);
    if (!th_in_path("node")) {
        fprintf(stderr, "SKIP: node is not installed (apt-get install "
                        "nodejs npm), so memjs cannot run\n");
        exit(77);
    }
    if (access(MEMJS_MODULE, R_OK) != 0) {
        fprintf(stderr, "SKIP: memjs is not installed in tests/js/"
                        "node_modules: run npm ci --prefix tests/js (./test.sh "
                        "does it when npm is there)\n");
        exit(77);
    }
}

static struct th_server srv;
/* memcached -S: SASL_CONF_PATH, with its sasldb; mcdbd: the auth file's */
static char *saslconf;

static void
teardown(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
    if (saslconf) {
        th_rmrf(saslconf);
        free(saslconf);
        saslconf = NULL;
    }
}

TestSuite(memjs, .fini = teardown, .timeout = 120);

/* memcached as memjs meets it: both protocols on one port, -S for SASL. */
static int
start_memcached(int sasl)
{
    const char *argv[16] = {"memcached", "-p", "{port}", "-l",
                            "127.0.0.1", "-U", "0",      "-t",
                            "1",         "-c", "4096"};
    int n = 11;
    if (sasl)
        argv[n++] = "-S";
    if (geteuid() == 0) { /* memcached refuses to run as root without -u */
        argv[n++] = "-u";
        argv[n++] = "root";
    }
    srv.port = 0;
    if (!sasl)
        return th_server_start(&srv, argv);
    /* -S turns the text protocol off, so th_server_start's "version"
     * would go unanswered: wait until the port accepts instead */
    th_server_spawn(&srv, argv);
    for (int i = 0; i < 1000; i++) {
        int st, fd;
        if (waitpid(srv.pid, &st, WNOHANG) == srv.pid) {
            srv.pid = 0;
            return -1;
        }
        if ((fd = th_connect(srv.port)) >= 0) {
            close(fd);
            return 0;
        }
        usleep(10000);
    }
    return -1;
}

/*
 * A sasldb holding USER's PASSWORD and the memcached.conf that names it
 * (Cyrus SASL reads SASL_CONF_PATH/memcached.conf): 0, or -1 with a
 * message. Debian's memcached has no password-file option of its own.
 */
static int
make_sasldb(void)
{
    char cmd[1024], *out = NULL;
    saslconf = th_tmpdir();
    snprintf(cmd, sizeof(cmd),
             "printf %%s '%s' | " SASLPASSWD2 " -p -a memcached -c -f "
             "'%s/sasldb2' '%s' && printf 'mech_list: plain\\nsasldb_path: "
             "%%s/sasldb2\\n' '%s' >'%s/memcached.conf'",
             PASSWORD, saslconf, USER, saslconf, saslconf);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    int rc = tt_run(&out, argv);
    if (rc != 0)
        fprintf(stderr, "making the sasldb failed (%d): %s\n", rc, out);
    free(out);
    setenv("SASL_CONF_PATH", saslconf, 1);
    return rc == 0 ? 0 : -1;
}

/* Run memjs_test.js against srv (with credentials when user); its exit
 * status, and its report on stderr. */
static int
run_memjs(const char *user, const char *password)
{
    char server[32], pid[16], *out = NULL;
    snprintf(server, sizeof(server), "127.0.0.1:%d", srv.port);
    snprintf(pid, sizeof(pid), "%d", (int)srv.pid);
    const char *argv[] = {
        "node", MEMJS_SCRIPT,           "--server", server,       "--pid",
        pid,    user ? "--user" : NULL, user,       "--password", password,
        NULL};
    int rc = tt_run(&out, argv);
    fprintf(stderr, "memjs against %s:\n%s", tg_name(), out ? out : "");
    free(out);
    return rc;
}

Test(memjs, every_command_memjs_has_works_against_the_server)
{
    int rc = tg_is_memcached() ? start_memcached(0)
                               : th_mcdbd_start(&srv, NULL, NULL);
    cr_assert_eq(rc, 0, "%s did not start", tg_name());
    rc = run_memjs(NULL, NULL);
    cr_assert_eq(rc, 0, "memjs_test.js exited %d (its report is above)", rc);
}

/* mcdbd --auth-file: one "user:password" line, read for SASL PLAIN too. */
static int
start_mcdbd_with_auth(void)
{
    char path[512];
    saslconf = th_tmpdir();
    snprintf(path, sizeof(path), "%s/auth", saslconf);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fprintf(f, "%s:%s\n", USER, PASSWORD);
    fclose(f);
    const char *extra[] = {"--auth-file", path, NULL};
    return th_mcdbd_start(&srv, NULL, extra);
}

Test(memjs, sasl_plain_login_works_with_the_right_password_only)
{
    int rc;
    if (tg_is_memcached()) {
        if (access(SASLPASSWD2, X_OK) != 0)
            cr_skip_test("SKIP: " SASLPASSWD2 " is missing (apt-get install "
                         "sasl2-bin): no sasldb for memcached -S");
        cr_assert_eq(make_sasldb(), 0);
        rc = start_memcached(1);
    } else {
        rc = start_mcdbd_with_auth();
    }
    cr_assert_eq(rc, 0, "%s with authentication did not start", tg_name());
    rc = run_memjs(USER, PASSWORD);
    cr_assert_eq(rc, 0, "memjs_test.js exited %d (its report is above)", rc);
}
