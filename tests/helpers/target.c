#include "helpers/target.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MCDBD_PATH
#define MCDBD_PATH ""
#endif

int
tg_is_memcached(void)
{
    const char *t = getenv("MCDB_TEST_TARGET");
    return t && strcmp(t, "memcached") == 0;
}

const char *
tg_name(void)
{
    return tg_is_memcached() ? "memcached" : "mcdbd";
}

void
tg_require(int mcdbd_only)
{
    if (tg_is_memcached()) {
        if (mcdbd_only) {
            fprintf(stderr, "SKIP: this suite only makes sense for mcdbd "
                            "(MCDB_TEST_TARGET=memcached)\n");
            exit(77);
        }
        if (!th_installed("memcached")) {
            fprintf(stderr, "SKIP: memcached is not installed\n");
            exit(77);
        }
        return;
    }
    const char *bin = getenv("MCDBD") ? getenv("MCDBD") : MCDBD_PATH;
    if (!bin[0] || access(bin, X_OK) != 0) {
        fprintf(stderr, "SKIP: mcdbd is not built (set MCDBD=path, or "
                        "MCDB_TEST_TARGET=memcached to check the tests)\n");
        exit(77);
    }
}

int
tg_start(struct th_server *s, const char *const *mcdbd_extra)
{
    return tg_start_args(s, mcdbd_extra, NULL);
}

int
tg_start_args(struct th_server *s, const char *const *mcdbd_extra,
              const char *const *memcached_extra)
{
    if (!tg_is_memcached())
        return th_mcdbd_start(s, s->dir, mcdbd_extra);
    /* No -B: memcached's default, auto (a first byte of 0x80 speaks
     * binary), which -Y (ASCII authentication) turns into ascii. */
    const char *argv[64] = {"memcached", "-p", "{port}", "-l",
                            "127.0.0.1", "-U", "0",      "-t",
                            "1",         "-c", "4096"};
    size_t n = 11;
    /* memcached refuses to run as root without -u */
    if (geteuid() == 0) {
        argv[n++] = "-u";
        argv[n++] = "root";
    }
    for (size_t i = 0; memcached_extra && memcached_extra[i] && n < 63; i++)
        argv[n++] = memcached_extra[i];
    argv[n] = NULL;
    s->port = 0;
    return th_server_start(s, argv);
}

int
tg_connect(int port)
{
    int fd = th_connect(port);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

size_t
tg_recv_n(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

char *
tg_recv_line(int fd)
{
    size_t cap = 256, len = 0;
    char *line = malloc(cap);
    for (;;) {
        char c;
        ssize_t r = recv(fd, &c, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(line);
            return NULL;
        }
        if (len + 2 > cap)
            line = realloc(line, cap *= 2);
        line[len++] = c;
        if (len >= 2 && line[len - 2] == '\r' && line[len - 1] == '\n') {
            line[len - 2] = '\0';
            return line;
        }
    }
}

char *
tg_escape(const void *buf, size_t len, size_t max)
{
    const unsigned char *p = buf;
    size_t n = len < max ? len : max;
    char *out = malloc(n * 4 + 8), *o = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '\r')
            o += sprintf(o, "\\r");
        else if (c == '\n')
            o += sprintf(o, "\\n");
        else if (c == '\\')
            o += sprintf(o, "\\\\");
        else if (c < 32 || c >= 127)
            o += sprintf(o, "\\x%02x", c);
        else
            *o++ = (char)c;
    }
    if (n < len)
        o += sprintf(o, "...");
    *o = '\0';
    return out;
}

static int
wait_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return r > 0;
}

char *
tg_exchange(int fd, const void *req, size_t reqlen, const void *want,
            size_t wantlen)
{
    char *msg = NULL;
    size_t mlen = 0;
    if (reqlen && th_send(fd, req, reqlen) != 0) {
        FILE *f = open_memstream(&msg, &mlen);
        fprintf(f, "send failed: %s", strerror(errno));
        fclose(f);
        return msg;
    }
    const char *w = want;
    size_t cap = wantlen + 512, got = 0, diff = (size_t)-1;
    char *buf = malloc(cap + 1);
    const char *why = "";
    while (got < wantlen) {
        ssize_t r = recv(fd, buf + got, wantlen - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            why = r == 0 ? " (then the connection closed)"
                  : errno == EAGAIN || errno == EWOULDBLOCK
                      ? " (then nothing more within the timeout)"
                      : " (then the connection failed)";
            break;
        }
        for (size_t i = got; i < got + (size_t)r; i++) {
            if (buf[i] != w[i]) {
                diff = i;
                break;
            }
        }
        got += (size_t)r;
        if (diff != (size_t)-1) {
            /* Collect the rest of what was sent, for the message. */
            while (got < cap && wait_readable(fd, 200)) {
                r = recv(fd, buf + got, cap - got, 0);
                if (r <= 0)
                    break;
                got += (size_t)r;
            }
            break;
        }
    }
    if (got == wantlen && diff == (size_t)-1) {
        free(buf);
        return NULL;
    }
    if (diff == (size_t)-1)
        diff = got;
    /* Show some context before the first difference. */
    size_t from = diff > 40 ? diff - 40 : 0;
    char *r_esc = tg_escape(req, reqlen, 100);
    char *w_esc = tg_escape(w + from, wantlen - from, 160);
    char *g_esc = tg_escape(buf + from, got - from, 160);
    FILE *f = open_memstream(&msg, &mlen);
    fprintf(f,
            "request \"%s\": expected \"%s\", got \"%s\"%s "
            "(first difference at byte %zu; %zu expected, %zu received",
            r_esc, w_esc, g_esc, why, diff, wantlen, got);
    if (from)
        fprintf(f, "; both shown from byte %zu", from);
    fputc(')', f);
    fclose(f);
    free(r_esc);
    free(w_esc);
    free(g_esc);
    free(buf);
    return msg;
}

char *
tg_check_quiet(int fd)
{
    char *msg = NULL;
    size_t mlen = 0;
    if (th_sends(fd, "version\r\n") != 0)
        return strdup("send of \"version\" failed");
    char *line = tg_recv_line(fd);
    if (line && strncmp(line, "VERSION ", 8) == 0 && strlen(line) > 8) {
        free(line);
        return NULL;
    }
    char *esc = line ? tg_escape(line, strlen(line), 300) : NULL;
    FILE *f = open_memstream(&msg, &mlen);
    if (esc)
        fprintf(f,
                "expected nothing but \"VERSION ...\\r\\n\", got a line "
                "\"%s\\r\\n\" first",
                esc);
    else
        fprintf(f, "expected \"VERSION ...\\r\\n\", got EOF or timeout");
    fclose(f);
    free(esc);
    free(line);
    return msg;
}

int
tg_answers_version(int port)
{
    int fd = tg_connect(port);
    if (fd < 0)
        return 0;
    char *m = tg_check_quiet(fd);
    close(fd);
    if (m)
        fprintf(stderr, "version on a fresh connection: %s\n", m);
    free(m);
    return m == NULL;
}

int
tg_wait_closed(int fd, int ms, char **got, size_t *gotlen)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    uint64_t end = tg_now_ms() + (uint64_t)ms;
    int closed = 0;
    for (;;) {
        uint64_t now = tg_now_ms();
        if (now >= end || !wait_readable(fd, (int)(end - now)))
            break;
        if (cap - len < 1024)
            buf = realloc(buf, (cap *= 2) + 1);
        ssize_t r = recv(fd, buf + len, cap - len, MSG_DONTWAIT);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0) {
            closed = 1;
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    if (gotlen)
        *gotlen = len;
    if (got && len)
        *got = buf;
    else {
        if (got)
            *got = NULL;
        free(buf);
    }
    return closed;
}

char *
tg_stats(int fd, const char *arg)
{
    char req[128];
    snprintf(req, sizeof(req), "stats%s%s\r\n", arg ? " " : "", arg ? arg : "");
    if (th_sends(fd, req) != 0)
        return NULL;
    /* Line by line: a value could contain "END\r\n" only at a line start. */
    size_t cap = 4096, len = 0;
    char *all = malloc(cap);
    all[0] = '\0';
    for (;;) {
        char *line = tg_recv_line(fd);
        if (!line) {
            free(all);
            return NULL;
        }
        size_t n = strlen(line);
        while (len + n + 3 > cap)
            all = realloc(all, cap *= 2);
        memcpy(all + len, line, n);
        memcpy(all + len + n, "\r\n", 3);
        len += n + 2;
        int done = strcmp(line, "END") == 0 || strncmp(line, "STAT ", 5) != 0;
        free(line);
        if (done)
            return all;
    }
}

long long
tg_stat(int fd, const char *arg, const char *name)
{
    char *all = tg_stats(fd, arg);
    if (!all)
        return -1;
    long long v = -1;
    size_t n = strlen(name);
    for (char *p = all; (p = strstr(p, "STAT ")) != NULL; p += 5) {
        if (strncmp(p + 5, name, n) == 0 && p[5 + n] == ' ') {
            v = strtoll(p + 6 + n, NULL, 10);
            break;
        }
    }
    free(all);
    return v;
}

long
tg_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

void
tg_report_death(struct th_server *s)
{
    int st;
    if (!s->pid || waitpid(s->pid, &st, WNOHANG) != s->pid)
        return;
    s->pid = 0;
    if (WIFSIGNALED(st))
        fprintf(stderr, "%s DIED during the test: signal %d (%s)\n", tg_name(),
                WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        fprintf(stderr, "%s EXITED during the test with status %d\n", tg_name(),
                WEXITSTATUS(st));
    FILE *f = fopen(s->log, "r");
    if (!f)
        return;
    /* The last 20 lines of its log. */
    char lines[20][512];
    int n = 0;
    while (fgets(lines[n % 20], sizeof(lines[0]), f))
        n++;
    fclose(f);
    fprintf(stderr, "---- last lines of %s ----\n", s->log);
    for (int i = n > 20 ? n - 20 : 0; i < n; i++)
        fputs(lines[i % 20], stderr);
}

uint64_t
tg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void *
tg_bystander_main(void *p)
{
    struct tg_bystander *a = p;
    int fd = tg_connect(a->port);
    if (fd < 0) {
        a->failed++;
        return NULL;
    }
    while (!a->stop) {
        uint64_t t0 = tg_now_ms();
        static const char req[] = "set other 0 0 5\r\nhello\r\nget other\r\n";
        static const char want[] =
            "STORED\r\nVALUE other 0 5\r\nhello\r\nEND\r\n";
        char *m = tg_exchange(fd, req, sizeof(req) - 1, want, sizeof(want) - 1);
        long ms = (long)(tg_now_ms() - t0);
        if (m) {
            fprintf(stderr, "other client: %s\n", m);
            free(m);
            a->failed++;
            break;
        }
        a->ok++;
        if (ms > a->max_ms)
            a->max_ms = ms;
        usleep(20 * 1000);
    }
    close(fd);
    return NULL;
}
