/*
 * progress: the offline tools' progress bar and byte sizes (header only:
 * each tools/<name>.c is one program).
 *
 * The bar goes to stderr, only when stderr is a terminal, only once a run
 * has lasted half a second (short runs stay silent), and at most ten times
 * a second:
 *   [##########..........]  50%   32.0 MiB / 64.0 MiB
 * or, when the total is unknown, a count and a rate (progress_count).
 */
#ifndef MCDB_TOOLS_PROGRESS_H
#define MCDB_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

struct progress {
    bool on;       /* drawing allowed (a terminal, not --quiet) */
    bool drawn;    /* a bar is on the screen */
    int64_t t0_ms; /* start of the run */
    int64_t last_ms;
};

static inline int64_t
progress_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void
progress_init(struct progress *p, bool quiet)
{
    p->on = !quiet && isatty(STDERR_FILENO);
    p->drawn = false;
    p->t0_ms = p->last_ms = progress_now_ms();
}

/* "12.3 MiB" */
static inline const char *
progress_size(uint64_t n, char *buf, size_t len)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

static inline void
progress_show(struct progress *p, uint64_t done, uint64_t total)
{
    int64_t now = progress_now_ms();
    if (!p->on || now - p->t0_ms < 500 || (p->drawn && now - p->last_ms < 100))
        return;
    p->last_ms = now;
    p->drawn = true;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (pct > 100)
        pct = 100;
    char bar[21], a[32], b[32];
    for (int i = 0; i < 20; i++)
        bar[i] = i < pct / 5 ? '#' : '.';
    bar[20] = '\0';
    fprintf(stderr, "\r[%s] %3d%%  %s / %s\033[K", bar, pct,
            progress_size(done, a, sizeof(a)),
            progress_size(total, b, sizeof(b)));
    fflush(stderr);
}

/* For a run whose size is unknown (rows from a pipe): a count and a rate,
 *   1234567 keys  210345/s */
static inline void
progress_count(struct progress *p, uint64_t done, const char *what)
{
    int64_t now = progress_now_ms();
    if (!p->on || now - p->t0_ms < 500 || (p->drawn && now - p->last_ms < 100))
        return;
    p->last_ms = now;
    p->drawn = true;
    fprintf(stderr, "\r%llu %s  %.0f/s\033[K", (unsigned long long)done, what,
            (double)done * 1000 / (double)(now - p->t0_ms));
    fflush(stderr);
}

/* Erase the bar (before printing a line, and at the end). */
static inline void
progress_clear(struct progress *p)
{
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = false;
    }
}

#endif
