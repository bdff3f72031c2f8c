/*
 * say: mcdbd logs only to stderr, one line per event, so that whatever runs
 * it keeps the log: systemd's journal, a terminal, a pipe to a file the
 * operator rotates. There are no log files of mcdbd's own, so nothing needs
 * logrotate.
 *
 * A line is formatted whole and written with one write(2), so lines from
 * threads never interleave; control characters in a message (a newline in
 * an error text, an escape sequence in a client's key) become spaces, so an
 * event is always one line and never colours a terminal.
 *
 * When stderr is the journal (systemd sets JOURNAL_STREAM to the device and
 * inode of the stream it gave the service, see sd-daemon(3)), each line
 * starts with the level's syslog priority, "<3>" for an error to "<7>" for
 * debug, which journald strips and stores, so "journalctl -p warning" and
 * the journal's colours work; the time is left out (the journal stamps each
 * line). Anywhere else a line starts with the time in UTC.
 */
#include "util/say.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile enum say_level say_level = SAY_INFO;

static const char *const say_names[] = {"error", "warn", "info", "verbose",
                                        "debug"};

/* sd-daemon.h's SD_ERR, SD_WARNING, SD_INFO, SD_INFO, SD_DEBUG */
static const char *const say_priorities[] = {"<3>", "<4>", "<6>", "<6>", "<7>"};

static pthread_once_t say_once = PTHREAD_ONCE_INIT;
static bool say_journal;

static void
say_detect_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    say_journal = js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
                  fstat(STDERR_FILENO, &st) == 0 &&
                  (unsigned long long)st.st_dev == dev &&
                  (unsigned long long)st.st_ino == ino;
}

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
    pthread_once(&say_once, say_detect_journal);
    char line[1024];
    int n;
    if (say_journal) {
        n = snprintf(line, sizeof(line), "%s%-7s ", say_priorities[level],
                     say_names[level]);
    } else {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        n = snprintf(
            line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-7s ",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
            tm.tm_sec, (long)(tv.tv_usec / 1000), say_names[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* cut: the newline still ends it */
    for (size_t i = (size_t)n; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    line[len++] = '\n';
    /* One write per line so that lines from threads never interleave. */
    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere to report it */
        off += (size_t)w;
    }
}
