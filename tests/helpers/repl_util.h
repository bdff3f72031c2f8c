/*
 * Helpers for the replication suites (tests/repl): primaries and replicas
 * as real mcdbd processes on loopback, what "stats" says, waiting for a
 * replica to catch up, and comparing two data directories file by file.
 */
#ifndef MCDB_TEST_REPL_UTIL_H
#define MCDB_TEST_REPL_UTIL_H

#include "helpers/server.h"

#include <stddef.h>
#include <stdint.h>

/* Start a replica of 127.0.0.1:primary_port (extra args may be NULL);
 * fails the test if it does not come up. */
void tr_start_replica(struct th_server *s, int primary_port,
                      const char *const *extra);
/* Start mcdbd with extra args (small segments are the caller's choice);
 * fails the test if it does not come up. */
void tr_start(struct th_server *s, const char *const *extra);

/* "stats <group>" field as text (malloc'd), NULL when absent or down. */
char *tr_stat(int port, const char *group, const char *name);
/* The same as a number; -1 when absent. */
long long tr_stat_num(int port, const char *group, const char *name);

/* Wait (up to ms) until the primary's log has been still for a moment and
 * the replica's durable offset equals the primary's with its link up.
 * Fails the test, with both sides' stats, when it does not happen. */
void tr_wait_caught_up(int primary_port, int replica_port, int ms);

/* NULL when every segment file of a is in b with the same bytes and b has
 * no other (hint files too, where both have one); the last segment of
 * either may go on in zeros after the other's end (a writer's padding,
 * docs/architecture.md). Else a description (malloc'd). */
char *tr_diff_dirs(const char *a, const char *b);

/* Run mcdb-fsck on dir; its exit status (0: clean). Its output goes to
 * *out (malloc'd) when out is not NULL. */
int tr_fsck(const char *dir, char **out);

/* One request on a fresh connection; the reply up to `end` (malloc'd),
 * NULL when the server is down. */
char *tr_ask(int port, const char *req, const char *end);

#endif
