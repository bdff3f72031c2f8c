/*
 * The server under test, for the black-box suites in tests/net that speak
 * memcached's protocol (test_protocol, test_libmemcached, test_memccapable,
 * test_persistence, test_hostile).
 *
 * By default the target is the mcdbd that was built; with
 * MCDB_TEST_TARGET=memcached it is the real memcached 1.6, so that every
 * protocol expectation is first checked against the reference server:
 *   MCDB_TEST_TARGET=memcached ctest --test-dir build -R 'net/'
 *
 * Also small blocking protocol helpers that, when a reply differs from what
 * was expected, say exactly what arrived instead (printable escapes).
 * Prefix tg_ ("target"); every helpers/ source is linked into every test.
 */
#ifndef MCDB_TEST_TARGET_H
#define MCDB_TEST_TARGET_H

#include "helpers/server.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* 1 when MCDB_TEST_TARGET=memcached, else 0 (mcdbd). */
int tg_is_memcached(void);
/* "mcdbd" or "memcached", for messages. */
const char *tg_name(void);

/*
 * Exit 77 (skip, with a message on stderr) when the target cannot run here
 * (mcdbd not built, memcached not installed), or when mcdbd_only and the
 * target is memcached. Call it before any test runs, with TG_SUITE_NEEDS
 * (a Criterion PRE_ALL hook: <criterion/hooks.h>); exiting 77 from inside a
 * Criterion test would count as a failure, not a skip.
 */
void tg_require(int mcdbd_only);
#define TG_SUITE_NEEDS(mcdbd_only)                                             \
    ReportHook(PRE_ALL)(struct criterion_test_set * tg_set_)                   \
    {                                                                          \
        (void)tg_set_;                                                         \
        tg_require(mcdbd_only);                                                \
    }

/*
 * A Criterion suite whose every test finds the target started with its
 * defaults (tg_start) in `srv` and one connection to it in `fd`; after each
 * test the connection is closed, a server that died is reported and the
 * server is stopped. Needs <criterion/criterion.h> and <unistd.h>.
 */
#define TG_CONNECTED_SUITE(name, timeout_s)                                    \
    static struct th_server srv;                                               \
    static int fd = -1;                                                        \
    static void tg_suite_setup_(void)                                          \
    {                                                                          \
        cr_assert_eq(tg_start(&srv, NULL), 0, "%s did not start", tg_name());  \
        fd = tg_connect(srv.port);                                             \
        cr_assert(fd >= 0, "cannot connect to %s", tg_name());                 \
    }                                                                          \
    static void tg_suite_teardown_(void)                                       \
    {                                                                          \
        if (fd >= 0)                                                           \
            close(fd);                                                         \
        tg_report_death(&srv);                                                 \
        th_server_cleanup(&srv);                                               \
    }                                                                          \
    TestSuite(name, .init = tg_suite_setup_, .fini = tg_suite_teardown_,       \
              .timeout = (timeout_s))

/*
 * Start the target on a free 127.0.0.1 port: mcdbd with s->dir as its data
 * dir (a fresh one when NULL) and the extra arguments (NULL-terminated, may
 * be NULL), or memcached with its defaults (extra is ignored):
 *   memcached -p PORT -l 127.0.0.1 -U 0 -t 1 -c 4096 [-u root]
 * No -B: memcached's default (auto), so that both servers speak the binary
 * protocol to a connection whose first byte is 0x80 (with -Y memcached
 * speaks ascii only, as mcdbd with --auth-file); -c 4096 is mcdbd's
 * --max-connections default.
 * Returns 0, or -1 if it did not come up (its log is printed).
 */
int tg_start(struct th_server *s, const char *const *mcdbd_extra);
/* tg_start, and memcached gets memcached_extra (NULL-terminated, may be
 * NULL) after its defaults, e.g. {"-Y", file}; a later -B overrides. */
int tg_start_args(struct th_server *s, const char *const *mcdbd_extra,
                  const char *const *memcached_extra);

/* th_connect with a 5 s receive and send timeout; -1 on error. */
int tg_connect(int port);

/* Read exactly n bytes; returns how many arrived before EOF or timeout. */
size_t tg_recv_n(int fd, void *buf, size_t n);
/* One line without its "\r\n" (malloc'd), or NULL on EOF/timeout. */
char *tg_recv_line(int fd);

/*
 * Send req (nothing when reqlen is 0) and read what comes back: NULL when it
 * is exactly want, else a malloc'd description of what arrived instead.
 * Reads no more than wantlen bytes unless the reply already differs, so the
 * next exchange on fd starts at the next reply.
 */
char *tg_exchange(int fd, const void *req, size_t reqlen, const void *want,
                  size_t wantlen);
#define tg_expect_n(fd, req, reqlen, want, wantlen)                            \
    do {                                                                       \
        char *tg_m_ = tg_exchange((fd), (req), (reqlen), (want), (wantlen));   \
        cr_assert(tg_m_ == NULL, "%s", tg_m_ ? tg_m_ : "");                    \
    } while (0)
#define tg_expect(fd, req, want)                                               \
    tg_expect_n((fd), (req), strlen(req), (want), strlen(want))

/*
 * Send "version" on fd and check that the very next bytes are one VERSION
 * line: proves that nothing else (e.g. a reply to a noreply command) was
 * sent before it. NULL if so, else a description.
 */
char *tg_check_quiet(int fd);
#define tg_expect_quiet(fd)                                                    \
    do {                                                                       \
        char *tg_m_ = tg_check_quiet(fd);                                      \
        cr_assert(tg_m_ == NULL, "%s", tg_m_ ? tg_m_ : "");                    \
    } while (0)

/* A fresh connection to port gets "VERSION <something>\r\n" for "version". */
int tg_answers_version(int port);

/*
 * Wait up to ms for the peer to close fd (EOF or reset): 1 if it did, 0 if
 * it is still open. Whatever arrived meanwhile goes to *got (malloc'd,
 * NUL-terminated; NULL if nothing) when got is not NULL.
 */
int tg_wait_closed(int fd, int ms, char **got, size_t *gotlen);

/* Field name of "stats" (or "stats <arg>" when arg): value, -1 if absent. */
long long tg_stat(int fd, const char *arg, const char *name);
/* The whole reply to "stats <arg>" up to END (malloc'd), NULL on error. */
char *tg_stats(int fd, const char *arg);

/* VmRSS of pid in kB (from /proc/<pid>/status), -1 if unknown. */
long tg_rss_kb(pid_t pid);

/* A printable copy of buf ("\r\n" -> "\\r\\n", bytes -> \xNN), cut to max
 * bytes of input with "..." after; malloc'd. */
char *tg_escape(const void *buf, size_t len, size_t max);

/* If the server process has died, say how (signal or exit status) and print
 * the end of its log to stderr. For teardowns: a crash then reads as one. */
void tg_report_death(struct th_server *s);

/* Milliseconds on a monotonic clock. */
uint64_t tg_now_ms(void);

/*
 * A well-behaved client, for a thread (pthread_create(..., tg_bystander_main,
 * &b)) beside misbehaving ones: a set and a get of its own key every 20 ms
 * until stop, counting round trips answered right (ok), the slowest one
 * (max_ms) and a wrong answer or a lost connection (failed; printed).
 */
struct tg_bystander {
    int port;
    int ok, failed;
    long max_ms;
    volatile int stop;
};
void *tg_bystander_main(void *b);

#endif
