#include "helpers/repl_util.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t
ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
tr_start(struct th_server *s, const char *const *extra)
{
    cr_assert_eq(th_mcdbd_start(s, NULL, extra), 0, "mcdbd did not start");
}

void
tr_start_replica(struct th_server *s, int primary_port,
                 const char *const *extra)
{
    char of[64];
    snprintf(of, sizeof(of), "127.0.0.1:%d", primary_port);
    const char *argv[32] = {"--replica-of", of};
    size_t n = 2;
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    cr_assert_eq(th_mcdbd_start(s, NULL, argv), 0, "replica did not start");
}

char *
tr_ask(int port, const char *req, const char *end)
{
    int fd = th_connect(port);
    if (fd < 0)
        return NULL;
    char *r = th_ask(fd, req, end);
    close(fd);
    return r;
}

char *
tr_stat(int port, const char *group, const char *name)
{
    char req[64];
    snprintf(req, sizeof(req), "stats%s%s\r\n", group ? " " : "",
             group ? group : "");
    char *all = tr_ask(port, req, "END\r\n");
    if (!all)
        return NULL;
    char *v = NULL;
    size_t n = strlen(name);
    for (char *p = all; (p = strstr(p, "STAT ")) != NULL; p += 5) {
        if (strncmp(p + 5, name, n) == 0 && p[5 + n] == ' ') {
            char *start = p + 6 + n, *e = strstr(start, "\r\n");
            v = strndup(start, e ? (size_t)(e - start) : strlen(start));
            break;
        }
    }
    free(all);
    return v;
}

long long
tr_stat_num(int port, const char *group, const char *name)
{
    char *v = tr_stat(port, group, name);
    long long n = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

void
tr_wait_caught_up(int primary_port, int replica_port, int ms)
{
    uint64_t deadline = ms_now() + (uint64_t)ms;
    long long last = -2, stable_since = 0;
    while (ms_now() < deadline) {
        long long p = tr_stat_num(primary_port, "repl", "durable_offset");
        long long r = tr_stat_num(replica_port, "repl", "durable_offset");
        /* and the segments its primary dropped are gone */
        if (tr_stat_num(primary_port, "repl", "log_start") !=
            tr_stat_num(replica_port, "repl", "log_start"))
            r = -2;
        char *link = tr_stat(replica_port, "repl", "link");
        int up = link && strcmp(link, "up") == 0;
        free(link);
        if (p != last) {
            last = p;
            stable_since = (long long)ms_now();
        }
        /* still for 300 ms: compaction and hints have settled */
        if (up && p >= 0 && p == r && (long long)ms_now() - stable_since >= 300)
            return;
        usleep(20 * 1000);
    }
    char *ps = tr_ask(primary_port, "stats repl\r\n", "END\r\n");
    char *rs = tr_ask(replica_port, "stats repl\r\n", "END\r\n");
    cr_assert_fail("the replica (port %d) did not catch up in %d ms\n"
                   "primary:\n%s\nreplica:\n%s",
                   replica_port, ms, ps ? ps : "(down)", rs ? rs : "(down)");
}

static int
is_log_file(const char *name, const char *ext)
{
    size_t len = strlen(name), el = strlen(ext);
    return len == 20 + el && strspn(name, "0123456789") == 20 &&
           strcmp(name + 20, ext) == 0;
}

/* Names of dir's files ending in ext, sorted; returns how many. */
static size_t
list(const char *dir, const char *ext, char names[][32], size_t max)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && n < max)
        if (is_log_file(de->d_name, ext))
            snprintf(names[n++], 32, "%.31s", de->d_name);
    if (d)
        closedir(d);
    qsort(names, n, 32, (int (*)(const void *, const void *))strcmp);
    return n;
}

static int
zeros(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* With zero_tail (the last segment), the longer file may go on in zeros:
 * the room a writer with --fsync always pads its active segment with
 * (docs/architecture.md), which a clean stop trims and a kill leaves. */
static char *
diff_file(const char *a, const char *b, const char *name, int zero_tail)
{
    char pa[4096], pb[4096];
    snprintf(pa, sizeof(pa), "%s/%s", a, name);
    snprintf(pb, sizeof(pb), "%s/%s", b, name);
    size_t la = 0, lb = 0;
    char *x = tt_slurp(pa, &la), *y = tt_slurp(pb, &lb), *why = NULL;
    size_t common = la < lb ? la : lb;
    int same_len =
        la == lb ||
        (zero_tail && x && y &&
         (la > lb ? zeros(x + lb, la - lb) : zeros(y + la, lb - la)));
    if (!x || !y || !same_len || memcmp(x, y, common) != 0) {
        size_t at = 0;
        while (x && y && at < la && at < lb && x[at] == y[at])
            at++;
        if (asprintf(&why, "%s: %zu bytes vs %zu, first difference at %zu",
                     name, la, lb, at) < 0)
            why = NULL;
    }
    free(x);
    free(y);
    return why;
}

char *
tr_diff_dirs(const char *a, const char *b)
{
    static char na[512][32], nb[512][32];
    size_t n = list(a, ".seg", na, 512), m = list(b, ".seg", nb, 512);
    char *why = NULL;
    if (n != m ||
        (n && (strcmp(na[0], nb[0]) || strcmp(na[n - 1], nb[m - 1])))) {
        if (asprintf(&why, "%zu segments (%s .. %s) vs %zu (%s .. %s)", n,
                     n ? na[0] : "-", n ? na[n - 1] : "-", m, m ? nb[0] : "-",
                     m ? nb[m - 1] : "-") < 0)
            why = NULL;
        return why;
    }
    for (size_t i = 0; i < n && !why; i++) {
        if (strcmp(na[i], nb[i]) != 0) {
            if (asprintf(&why, "segment %s vs %s", na[i], nb[i]) < 0)
                why = NULL;
            break;
        }
        why = diff_file(a, b, na[i], i == n - 1);
    }
    n = list(a, ".hint", na, 512);
    for (size_t i = 0; i < n && !why; i++) {
        char pb[4096];
        if (snprintf(pb, sizeof(pb), "%s/%s", b, na[i]) < (int)sizeof(pb) &&
            access(pb, F_OK) == 0)
            why = diff_file(a, b, na[i], 0);
    }
    return why;
}

int
tr_fsck(const char *dir, char **out)
{
    const char *argv[] = {tt_tool("mcdb-fsck"), dir, NULL};
    char *o = NULL;
    int rc = tt_run(&o, argv);
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}
