/*
 * say (src/util/say.c): what mcdbd's log lines look like to whatever keeps
 * them. Each test sends stderr to a file of its own (Criterion runs each
 * test in its own process, so say's journal detection is fresh).
 *   build/tests/test_util_say --verbose
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/tool.h"
#include "util/say.h"

static char *dir;
static char path[1100];

/* stderr to dir/stderr (O_APPEND, as journald's and a shell's >> are). */
static void
setup(void)
{
    dir = th_tmpdir();
    snprintf(path, sizeof(path), "%s/stderr", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    cr_assert(fd >= 0);
    cr_assert(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    close(fd);
    unsetenv("JOURNAL_STREAM");
}

static void
teardown(void)
{
    th_rmrf(dir);
    free(dir);
}

TestSuite(say, .init = setup, .fini = teardown);

static char *
logged(void)
{
    char *s = tt_slurp(path, NULL);
    cr_assert(s, "cannot read %s", path);
    return s;
}

Test(say, a_line_starts_with_the_utc_time_and_the_level)
{
    say(SAY_WARN, "disk %d is %s", 3, "slow");
    char *s = logged();
    int y, mo, d, h, mi, se, ms;
    char rest[256];
    cr_assert_eq(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %255[^\n]", &y, &mo,
                        &d, &h, &mi, &se, &ms, rest),
                 8, "not TIME LEVEL MESSAGE: %s", s);
    cr_expect_str_eq(rest, "warn    disk 3 is slow");
    cr_expect_eq(strchr(s, '\n'), s + strlen(s) - 1, "not one line: %s", s);
    free(s);
}

Test(say, on_the_journal_a_line_starts_with_its_syslog_priority_not_the_time)
{
    struct stat st;
    cr_assert(fstat(STDERR_FILENO, &st) == 0);
    char js[64];
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    say(SAY_ERROR, "e");
    say(SAY_WARN, "w");
    say(SAY_INFO, "i");
    say_set_level(SAY_DEBUG);
    say(SAY_DEBUG, "d");
    char *s = logged();
    cr_expect_str_eq(s, "<3>error   e\n<4>warn    w\n<6>info    i\n"
                        "<7>debug   d\n");
    free(s);
}

Test(say, a_journal_stream_that_is_not_stderr_gets_no_priorities)
{
    /* systemd's JOURNAL_STREAM is inherited by a child whose stderr was
     * redirected: that child must not mark up a file. */
    setenv("JOURNAL_STREAM", "1:1", 1);
    say(SAY_ERROR, "e");
    char *s = logged();
    cr_expect(s[0] != '<', "a priority on a file that is not the journal: %s",
              s);
    free(s);
}

Test(say, a_message_with_newlines_or_escapes_is_one_line_of_plain_text)
{
    say(SAY_ERROR, "bad key \"\x1b[31mred\x1b[0m\"\nsecond\rline\t!");
    char *s = logged();
    cr_expect_eq(strchr(s, '\n'), s + strlen(s) - 1, "not one line: %s", s);
    cr_expect(!strchr(s, '\x1b') && !strchr(s, '\r') && !strchr(s, '\t'),
              "control characters in %s", s);
    cr_expect(strstr(s, "error   bad key \" [31mred [0m\" second line !\n"),
              "%s", s);
    free(s);
}

Test(say, a_message_longer_than_a_line_is_cut_and_still_ends_the_line)
{
    char big[4000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    say(SAY_INFO, "%s", big);
    say(SAY_INFO, "next");
    char *s = logged();
    char *nl = strchr(s, '\n');
    cr_assert(nl && nl - s < 1024, "first line %zu bytes", strlen(s));
    cr_expect(strstr(nl + 1, "info    next\n"), "%s", nl + 1);
    free(s);
}

enum { THREADS = 8, LINES = 2000 };

static void *
talk(void *arg)
{
    long t = (long)arg;
    char pad[600];
    memset(pad, 'a' + (int)t, sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 0; i < LINES; i++)
        say(SAY_INFO, "thread %ld line %d %s end", t, i, pad);
    return NULL;
}

Test(say, lines_from_threads_never_interleave)
{
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, talk, (void *)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    char *s = logged();
    int lines = 0;
    for (char *line = s; *line; lines++) {
        char *end = strchr(line, '\n');
        cr_assert(end, "a partial last line");
        *end = '\0';
        long t;
        int i, off = 0;
        cr_assert(sscanf(strstr(line, "thread "), "thread %ld line %d %n", &t,
                         &i, &off) == 2 &&
                      off > 0,
                  "a mixed line: %.100s", line);
        const char *pad = strstr(line, "thread ") + off;
        cr_assert(strspn(pad, (char[]){(char)('a' + t), 0}) == 599 &&
                      strcmp(pad + 599, " end") == 0,
                  "a mixed line: %.100s", line);
        line = end + 1;
    }
    cr_expect_eq(lines, THREADS * LINES);
    free(s);
}
