/*
 * Where mcdbd's log goes (README, "Installing as a service"): to stderr and
 * nowhere else, one plain line per event, so that systemd's journal keeps
 * it and nothing needs logrotate. mcdbd is run here as systemd runs it:
 * stdout and stderr each a file of their own, JOURNAL_STREAM naming stderr.
 *   build/tests/test_net_logging --verbose
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/tool.h"

static char *dir;

static void
setup(void)
{
    if (!MCDBD_PATH[0] || access(MCDBD_PATH, X_OK) != 0) {
        fprintf(stderr, "SKIP: mcdbd is not built\n");
        exit(77);
    }
    dir = th_tmpdir();
}

static void
teardown(void)
{
    th_rmrf(dir);
    free(dir);
}

TestSuite(logging, .init = setup, .fini = teardown, .timeout = 60);

/* Start mcdbd in dir/data with stdout and stderr in dir; journal: set
 * JOURNAL_STREAM to stderr's device and inode. */
static pid_t
start(int port, bool journal)
{
    char out[1100], err[1100], data[1100], portarg[16];
    snprintf(out, sizeof(out), "%s/stdout", dir);
    snprintf(err, sizeof(err), "%s/stderr", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(portarg, sizeof(portarg), "%d", port);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int o = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_APPEND, 0600);
        struct stat st;
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 ||
            fstat(2, &st) < 0)
            _exit(126);
        char js[64];
        snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino);
        if (journal)
            setenv("JOURNAL_STREAM", js, 1);
        else
            unsetenv("JOURNAL_STREAM");
        execl(MCDBD_PATH, MCDBD_PATH, "--port", portarg, "--data-dir", data,
              "--threads", "2", "-v", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) {
        int fd = th_connect(port);
        if (fd >= 0) {
            /* a write and a read, so that there is something to log */
            char *r = th_ask(fd, "set k 0 0 1\r\nv\r\nget k\r\n", "END\r\n");
            cr_assert(r && strstr(r, "STORED"), "no reply: %s", r ? r : "");
            free(r);
            close(fd);
            return pid;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    cr_assert_fail("mcdbd did not accept connections within 10 s");
    return -1;
}

static void
stop(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status 0x%x", st);
}

static char *
slurp(const char *name)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *s = tt_slurp(path, NULL);
    cr_assert(s, "cannot read %s", path);
    return s;
}

/* Nothing but stdout, stderr and the data directory in dir, and nothing but
 * the log's own files in the data directory. */
static void
assert_no_log_files(void)
{
    DIR *d = opendir(dir);
    cr_assert(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        cr_expect(!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "stdout") ||
                      !strcmp(n, "stderr") || !strcmp(n, "data"),
                  "mcdbd created %s/%s", dir, n);
    }
    closedir(d);
    char data[1100];
    snprintf(data, sizeof(data), "%s/data", dir);
    d = opendir(data);
    cr_assert(d);
    while ((e = readdir(d))) {
        const char *n = e->d_name, *dot = strrchr(n, '.');
        cr_expect(!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "LOCK") ||
                      !strcmp(n, "META") ||
                      (dot && (!strcmp(dot, ".seg") || !strcmp(dot, ".hint"))),
                  "mcdbd created %s/%s", data, n);
    }
    closedir(d);
}

/* Each line of s: prefix check, a level word, text; no control byte. */
static int
check_lines(char *s, bool journal)
{
    static const char *const levels[] = {"error", "warn", "info", "verbose",
                                         "debug"};
    static const char *const prios[] = {"<3>", "<4>", "<6>", "<6>", "<7>"};
    int lines = 0;
    for (char *line = s; *line; lines++) {
        char *end = strchr(line, '\n');
        cr_assert(end, "a line without its newline: %s", line);
        *end = '\0';
        for (const char *p = line; *p; p++)
            cr_expect((unsigned char)*p >= 0x20 && *p != 0x7f,
                      "a control character in: %s", line);
        const char *rest = line;
        if (!journal) {
            int y, mo, d, h, mi, se, ms, n = 0;
            cr_assert(sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %n", &y, &mo,
                             &d, &h, &mi, &se, &ms, &n) == 7 &&
                          n > 0,
                      "no time: %s", line);
            rest = line + n;
        }
        bool known = false;
        for (size_t i = 0; i < 5 && !known; i++) {
            size_t pl = strlen(prios[i]), ll = strlen(levels[i]);
            const char *r = rest;
            if (journal) {
                if (strncmp(r, prios[i], pl) != 0)
                    continue;
                r += pl;
            }
            known = strncmp(r, levels[i], ll) == 0 && r[ll] == ' ';
        }
        cr_expect(known, "not %sLEVEL TEXT: %s", journal ? "<N>" : "TIME ",
                  line);
        line = end + 1;
    }
    return lines;
}

Test(logging, mcdbd_logs_to_stderr_only_one_timed_line_per_event_and_no_file)
{
    pid_t pid = start(th_free_port(), false);
    stop(pid);
    char *out = slurp("stdout"), *err = slurp("stderr");
    cr_expect_str_empty(out, "mcdbd wrote to stdout: %s", out);
    cr_expect(strstr(err, "ready") && strstr(err, "stopped"),
              "no start or stop in the log:\n%s", err);
    cr_expect_geq(check_lines(err, false), 3);
    assert_no_log_files();
    free(out);
    free(err);
}

Test(logging, on_the_journal_mcdbd_marks_each_line_with_its_priority)
{
    pid_t pid = start(th_free_port(), true);
    stop(pid);
    char *out = slurp("stdout"), *err = slurp("stderr");
    cr_expect_str_empty(out, "mcdbd wrote to stdout: %s", out);
    cr_expect(strstr(err, "<6>info    mcdbd ") &&
                  strstr(err, "<6>info    stopped\n"),
              "no start or stop with priority 6 in the log:\n%s", err);
    cr_expect_geq(check_lines(err, true), 3);
    assert_no_log_files();
    free(out);
    free(err);
}
