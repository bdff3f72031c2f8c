#include "util/say.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

static volatile enum say_level say_level = SAY_INFO;

static const char *const say_names[] = {"error", "warn", "info", "verbose",
                                        "debug"};

void
say_set_level(enum say_level level)
{
    say_level = level;
}

enum say_level
say_get_level(void)
{
    return say_level;
}

void
say(enum say_level level, const char *fmt, ...)
{
    if (level > say_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[1024];
    int n = snprintf(
        line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-7s ",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, (long)(tv.tv_usec / 1000), say_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    /* One write per line so that lines from threads never interleave. */
    fprintf(stderr, "%s\n", line);
}
