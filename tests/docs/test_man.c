/*
 * The man pages (docs/man): help2man generates each one at build time from
 * its program's --help and --version plus docs/man/PROGRAM.SECTION.h2m, and
 * the package installs them gzipped. These tests read the gzipped pages the
 * package ships: each renders with man(1) without a single warning from
 * groff or man, and names every option its program's --help prints, so a
 * page can neither break nor fall behind the program.
 * Skipped (77) when man(1) is missing (apt-get install man-db).
 *   build/tests/test_docs_man --verbose
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/server.h"
#include "helpers/tool.h"

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    if (!th_in_path("man") || !th_in_path("zcat")) {
        fprintf(stderr, "SKIP: man or zcat is not installed "
                        "(apt-get install man-db gzip)\n");
        exit(77);
    }
}

/* The gzipped pages, as the package installs them. */
static glob_t pages;

static void
setup(void)
{
    char pat[1100];
    snprintf(pat, sizeof(pat), "%s/docs/man/*.[18].gz", MCDB_BUILD_DIR);
    cr_assert_eq(glob(pat, 0, NULL, &pages), 0, "no man page in %s", pat);
}

static void
teardown(void)
{
    globfree(&pages);
}

TestSuite(man, .init = setup, .fini = teardown);

/* "mcdbd" from ".../mcdbd.8.gz" into name; the program's path. */
static const char *
page_program(const char *page, char *name, size_t len)
{
    const char *base = strrchr(page, '/') + 1;
    size_t n = strcspn(base, ".");
    snprintf(name, len, "%.*s", (int)n, base);
    return strcmp(name, "mcdbd") == 0 ? MCDBD_PATH : tt_tool(name);
}

Test(man, the_server_and_every_installed_tool_have_a_page)
{
    const char *want[] = {"mcdbd.8.gz", "mcdb-fsck.8.gz", "mcdb-compact.8.gz",
                          "mcdb-check.1.gz", "mcdb-sync.1.gz"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        bool found = false;
        for (size_t p = 0; p < pages.gl_pathc; p++) {
            const char *base = strrchr(pages.gl_pathv[p], '/') + 1;
            found = found || strcmp(base, want[i]) == 0;
        }
        cr_expect(found, "no page %s in %s/docs/man", want[i], MCDB_BUILD_DIR);
    }
}

Test(man, every_page_renders_without_a_warning)
{
    for (size_t p = 0; p < pages.gl_pathc; p++) {
        char cmd[2048], *out = NULL;
        /* Only stderr is kept: man's and groff's warnings. */
        snprintf(cmd, sizeof(cmd),
                 "LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings "
                 "-E UTF-8 -l '%s' 2>&1 >/dev/null",
                 pages.gl_pathv[p]);
        const char *sh[] = {"sh", "-c", cmd, NULL};
        int rc = tt_run(&out, sh);
        cr_expect(rc == 0 && out && out[0] == '\0',
                  "%s: man exits %d and warns:\n%s", pages.gl_pathv[p], rc,
                  out ? out : "");
        free(out);
    }
}

/*
 * Every "-x" and "--long" at the start of an option line of --help (a line
 * that begins with 2 to 6 spaces and a dash: wrapped help text is indented
 * further) must be in the page's source, where
 * help2man writes it as roff: "\-x", "\-\-long".
 */
Test(man, every_page_names_every_option_its_program_prints_in_help)
{
    for (size_t p = 0; p < pages.gl_pathc; p++) {
        char name[256], *help = NULL, *roff = NULL;
        const char *prog = page_program(pages.gl_pathv[p], name, sizeof(name));
        const char *hargv[] = {prog, "--help", NULL};
        cr_assert_eq(tt_run(&help, hargv), 0, "%s --help fails", prog);
        const char *zargv[] = {"zcat", pages.gl_pathv[p], NULL};
        cr_assert_eq(tt_run(&roff, zargv), 0, "zcat %s", pages.gl_pathv[p]);
        int options = 0;
        for (char *line = help; line && *line;) {
            char *end = strchr(line, '\n');
            if (end)
                *end = '\0';
            size_t indent = strspn(line, " ");
            const char *s = line + indent;
            while (indent >= 2 && indent <= 6 && *s == '-') {
                size_t len = strcspn(s, "=, ");
                char opt[128], esc[256];
                snprintf(opt, sizeof(opt), "%.*s", (int)len, s);
                size_t e = 0;
                for (size_t i = 0; opt[i] && e + 2 < sizeof(esc); i++) {
                    if (opt[i] == '-')
                        esc[e++] = '\\';
                    esc[e++] = opt[i];
                }
                esc[e] = '\0';
                cr_expect(strstr(roff, esc), "%s: %s --help prints %s",
                          pages.gl_pathv[p], name, opt);
                options++;
                s += strcspn(s, " "); /* past "-x," or "--long=ARG" */
                if (s[-1] != ',')     /* "-x, --long": one more */
                    break;
                s += strspn(s, " ");
            }
            line = end ? end + 1 : NULL;
        }
        cr_expect_geq(options, 4, "%s: found only %d options in --help:\n%s",
                      name, options, help);
        free(help);
        free(roff);
    }
}
