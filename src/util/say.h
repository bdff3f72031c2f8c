/*
 * say: one line per event on stderr, with a time and a level, shared by the
 * server, the engine and the tools (one write per line; control characters
 * become spaces):
 *   2026-11-24T13:40:00.123Z info    recovered 1042 records from ...
 * When stderr is systemd's journal (JOURNAL_STREAM), a syslog priority
 * instead of the time, as sd-daemon(3) describes:
 *   <6>info    recovered 1042 records from ...
 */
#ifndef MCDB_SAY_H
#define MCDB_SAY_H

enum say_level { SAY_ERROR, SAY_WARN, SAY_INFO, SAY_VERBOSE, SAY_DEBUG };

/* Lines above this level are dropped; the default is SAY_INFO. */
void say_set_level(enum say_level level);
enum say_level say_get_level(void);

void say(enum say_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
