/*
 * The Debian package (packaging/, README "Installing as a service"): cpack
 * builds mcdb_VERSION_ARCH.deb from this build directory into a temporary
 * directory, and the tests read it with dpkg-deb as apt would: the files
 * and their places, the control fields (depends computed by
 * dpkg-shlibdeps, the conffile, the maintainer scripts), the unit checked
 * by systemd-analyze verify, and the installed programs' --help. Nothing is
 * installed on this machine and no service is started. Skipped (77) when
 * cpack or dpkg-deb is missing; the systemd-analyze part skips loudly alone.
 *   build/tests/test_package_package --verbose
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/tool.h"

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    const char *need[] = {"cpack", "dpkg-deb", "dpkg-shlibdeps"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (!th_in_path(need[i])) {
            fprintf(stderr, "SKIP: %s is not installed (apt-get install %s)\n",
                    need[i], i ? "dpkg-dev" : "cmake");
            exit(77);
        }
    }
}

static char *dir;      /* the package and its unpacked tree */
static char deb[1024]; /* dir/mcdb_*.deb */
static char root[1024];

static void
teardown(void)
{
    th_rmrf(dir);
    free(dir);
}

/* Build the package into a fresh directory and unpack it under dir/root. */
static void
setup(void)
{
    dir = th_tmpdir();
    char *out = NULL;
    const char *cpack[] = {"cpack", "--config", tt_tool("CPackConfig.cmake"),
                           "-G",    "DEB",      "-B",
                           dir,     NULL};
    int rc = tt_run(&out, cpack);
    cr_assert_eq(rc, 0, "cpack failed (%d):\n%s", rc, out);
    free(out);
    char pat[1100];
    snprintf(pat, sizeof(pat), "%s/mcdb_*.deb", dir);
    glob_t g;
    cr_assert_eq(glob(pat, 0, NULL, &g), 0, "no %s after cpack", pat);
    cr_assert_eq(g.gl_pathc, 1);
    snprintf(deb, sizeof(deb), "%s", g.gl_pathv[0]);
    globfree(&g);
    snprintf(root, sizeof(root), "%s/root", dir);
    const char *x[] = {"dpkg-deb", "-x", deb, root, NULL};
    cr_assert_eq(tt_run(NULL, x), 0, "dpkg-deb -x %s", deb);
}

TestSuite(package, .init = setup, .fini = teardown, .timeout = 120);

/* What a dpkg-deb option prints. */
static char *
dpkg_deb(const char *opt, const char *field)
{
    char *out = NULL;
    const char *argv[] = {"dpkg-deb", opt, deb, field, NULL};
    int rc = tt_run(&out, argv);
    cr_assert_eq(rc, 0, "dpkg-deb %s %s: %s", opt, deb, out);
    return out;
}

Test(package, holds_the_daemon_the_tools_the_unit_the_defaults_and_docs)
{
    char *list = dpkg_deb("-c", NULL);
    const char *want[] = {
        " ./usr/sbin/mcdbd\n",
        " ./usr/bin/mcdb-fsck\n",
        " ./usr/bin/mcdb-compact\n",
        " ./usr/bin/mcdb-check\n",
        " ./usr/lib/systemd/system/mcdb.service\n",
        " ./etc/default/mcdb\n",
        " ./usr/share/doc/mcdb/copyright\n",
        " ./usr/share/doc/mcdb/README.md\n",
        " ./usr/share/doc/mcdb/architecture.md\n", /* mcdbd(8) points there */
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect(strstr(list, want[i]), "the package lacks%.*s; it holds:\n%s",
                  (int)strlen(want[i]) - 1, want[i], list);
    /* benchmarks and tests stay in the build directory */
    const char *never[] = {"mcdb-bench", "bench_", "test_", "/usr/local/",
                           "doc/mcdb/man/"};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        cr_expect(!strstr(list, never[i]), "the package holds %s:\n%s",
                  never[i], list);
    free(list);
}

/* docs/man's pages, gzipped where Debian keeps them: man8 for the daemon and
 * the data-directory tools, man1 for the clients. */
Test(package, holds_a_gzipped_man_page_for_the_daemon_and_every_tool)
{
    char *list = dpkg_deb("-c", NULL);
    const char *want[] = {
        "usr/share/man/man8/mcdbd.8.gz",
        "usr/share/man/man8/mcdb-fsck.8.gz",
        "usr/share/man/man8/mcdb-compact.8.gz",
        "usr/share/man/man1/mcdb-check.1.gz",
        "usr/share/man/man1/mcdb-sync.1.gz",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char line[256], path[1400];
        snprintf(line, sizeof(line), " ./%s\n", want[i]);
        cr_expect(strstr(list, line), "the package lacks %s; it holds:\n%s",
                  want[i], list);
        snprintf(path, sizeof(path), "%s/%s", root, want[i]);
        size_t len = 0;
        char *page = tt_slurp(path, &len);
        cr_expect(page && len > 2 && (unsigned char)page[0] == 0x1f &&
                      (unsigned char)page[1] == 0x8b,
                  "%s is not gzipped", want[i]);
        free(page);
    }
    free(list);
}

Test(package, control_has_computed_depends_a_conffile_and_the_scripts)
{
    char *name = dpkg_deb("-f", "Package");
    cr_expect_str_eq(name, "mcdb\n");
    free(name);
    /* liburing2 and libsystemd0 come only from dpkg-shlibdeps reading the
     * binaries; adduser is the postinst's */
    char *dep = dpkg_deb("-f", "Depends");
    const char *want[] = {"libc6", "liburing2", "libsystemd0", "libsodium23",
                          "adduser"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect(strstr(dep, want[i]), "Depends lacks %s: %s", want[i], dep);
    free(dep);

    char ctrl[1100];
    snprintf(ctrl, sizeof(ctrl), "%s/DEBIAN", dir);
    const char *e[] = {"dpkg-deb", "-e", deb, ctrl, NULL};
    cr_assert_eq(tt_run(NULL, e), 0);
    char path[1200];
    snprintf(path, sizeof(path), "%s/conffiles", ctrl);
    char *conf = tt_slurp(path, NULL);
    cr_assert(conf, "no conffiles in the package");
    cr_expect_str_eq(conf, "/etc/default/mcdb\n");
    free(conf);
    const char *scripts[] = {"postinst", "prerm", "postrm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", ctrl, scripts[i]);
        cr_expect_eq(access(path, X_OK), 0, "no executable %s", scripts[i]);
        const char *sh[] = {"sh", "-n", path, NULL};
        cr_expect_eq(tt_run(NULL, sh), 0, "%s is not valid sh", scripts[i]);
    }
}

Test(package, the_unit_passes_systemd_analyze_verify)
{
    char unit[1200];
    snprintf(unit, sizeof(unit), "%s/usr/lib/systemd/system/mcdb.service",
             root);
    char *text = tt_slurp(unit, NULL);
    cr_assert(text, "no %s", unit);
    const char *want[] = {"\nType=notify\n", "\nUser=mcdb\n",
                          "\nStateDirectory=mcdb\n",
                          "\nEnvironmentFile=-/etc/default/mcdb\n",
                          "\nExecStart=/usr/sbin/mcdbd --data-dir "
                          "/var/lib/mcdb $MCDB_OPTS\n"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect(strstr(text, want[i]), "the unit lacks %s", want[i] + 1);
    free(text);
    if (!th_in_path("systemd-analyze")) {
        fprintf(stderr, "SKIPPED PART: systemd-analyze is not installed "
                        "(apt-get install systemd); the unit is unverified\n");
        cr_skip_test("systemd-analyze is not installed");
    }
    /* --root: the unit as installed, its ExecStart found in the package;
     * --recursive-errors=no: the root holds no other units (targets). */
    char arg[1100];
    snprintf(arg, sizeof(arg), "--root=%s", root);
    char *out = NULL;
    const char *v[] = {"systemd-analyze",
                       "--man=no",
                       "--recursive-errors=no",
                       "verify",
                       arg,
                       "/usr/lib/systemd/system/mcdb.service",
                       NULL};
    int rc = tt_run(&out, v);
    cr_expect(rc == 0 && out[0] == '\0', "systemd-analyze verify: %d\n%s", rc,
              out);
    free(out);
}

Test(package, the_packaged_programs_run_and_the_default_options_parse)
{
    const char *progs[] = {"usr/sbin/mcdbd", "usr/bin/mcdb-fsck",
                           "usr/bin/mcdb-compact", "usr/bin/mcdb-check"};
    char path[2400], *out;
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", root, progs[i]);
        const char *argv[] = {path, "--help", NULL};
        int rc = tt_run(&out, argv);
        cr_expect(rc == 0 && strncmp(out, "Usage: ", 7) == 0,
                  "%s --help: %d\n%s", progs[i], rc, out);
        free(out);
    }
    /* The options the unit passes, with /etc/default/mcdb's MCDB_OPTS as
     * systemd splits them: mcdbd parses every option before --help. */
    snprintf(path, sizeof(path),
             ". %s/etc/default/mcdb && exec %s/usr/sbin/mcdbd --data-dir "
             "/var/lib/mcdb $MCDB_OPTS --help",
             root, root);
    const char *sh[] = {"sh", "-c", path, NULL};
    int rc = tt_run(&out, sh);
    cr_expect_eq(rc, 0, "mcdbd refuses /etc/default/mcdb's MCDB_OPTS:\n%s",
                 out);
    free(out);
}
