/*
 * repl: replication. A replica tails its primary's log by byte offset over
 * the primary's ordinary client port, appends the same bytes to the same
 * segment files, and reports what it made durable; roles are set by the
 * operator and never change by themselves. The design (handshake, resync,
 * epochs, acknowledgements) is written at the top of primary.c and
 * replica.c; the wire format in stream.c.
 *
 *   repl_start(&cfg, store, &r, err, n)   after store_open: a replica
 *                                         starts its link, a primary its
 *                                         bookkeeping for --sync-replicas
 *   repl_adopt(r, fd, bytes, n)           a worker hands over a connection
 *                                         that asked to replicate
 *   repl_promote(r, err, n)               the "promote" admin command
 *   repl_stats(r, fn, arg)                "stats repl"
 *   repl_stop(r)                          before store_close
 */
#ifndef MCDB_REPL_H
#define MCDB_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log/store.h"

/* The first line a replica sends to its primary's client port. */
#define REPL_HELLO_CMD "mcdb_replicate"
#define REPL_PROTOCOL 1

/*
 * mcdbd's replication options, in the same columns as net.h's NET_OPTIONS
 * (group, field, long name, short, kind, default, "stats settings" name,
 * help),
 * so that the command line, --help and "stats settings" come from them.
 */
#define REPL_OPTIONS(X)                                                        \
    X(REPLICATION, replica_of, "replica-of", 0, HOSTPORT, "", "replica_of",    \
      "be a replica of the mcdbd at HOST:PORT (kept in the data directory: "   \
      "a restart without it is still a replica)")                              \
    X(REPLICATION, promote, "promote", 0, FLAG, "", NULL,                      \
      "a replica becomes the primary at start (a new epoch); also the "        \
      "\"promote\" command")                                                   \
    X(REPLICATION, sync_replicas, "sync-replicas", 0, REPLICAS, "0",           \
      "sync_replicas",                                                         \
      "hold each write's reply until this many replicas have it on disk "      \
      "(0: asynchronous)")                                                     \
    X(REPLICATION, sync_timeout, "sync-timeout", 0, MILLIS, "1000",            \
      "sync_timeout_ms",                                                       \
      "milliseconds a write waits for --sync-replicas before its client "      \
      "gets an error")                                                         \
    X(REPLICATION, repl_secret_file, "repl-secret-file", 0, FILE, "",          \
      "repl_secret_file",                                                      \
      "a file whose contents both ends of replication share; needed for "      \
      "peers that are not on loopback (challenge-response, never sent)")       \
    X(REPLICATION, repl_backlog_ttl, "repl-backlog-ttl", 0, SECONDS, "3600",   \
      "repl_backlog_ttl",                                                      \
      "seconds a primary keeps the log that a disconnected replica still "     \
      "needs, so that it resumes instead of copying everything")               \
    X(REPLICATION, replica_serve_stale, "replica-serve-stale", 0, YESNO,       \
      "yes", "replica_serve_stale",                                            \
      "whether a replica whose link to its primary is down serves what it "    \
      "has (yes) or answers SERVER_ERROR (no)")

struct repl_config {
    const char *replica_of; /* "" or NULL: as META says */
    unsigned sync_replicas;
    unsigned sync_timeout_ms;
    const char *secret_file; /* "" or NULL: none */
    unsigned backlog_ttl_s;
    bool serve_stale;
    unsigned client_port; /* this server's client port, for "stats repl" */
};

typedef struct repl repl_t;

/* Returns 0, or -1 with the reason in err (e.g. an unreadable secret). */
int repl_start(const struct repl_config *cfg, store_t *store, repl_t **out,
               char *err, size_t errlen);
void repl_stop(repl_t *r);

/*
 * Take over a client connection whose first line was REPL_HELLO_CMD: fd is
 * the socket (the caller no longer uses it), bytes/n what arrived after
 * that line (normally nothing: a replica waits for the answer).
 */
void repl_adopt(repl_t *r, int fd, const void *bytes, size_t n);

/* Promote this replica now: its link stops, store_promote() runs, and it
 * serves writes. Returns 0 or -1 with the reason in err. */
int repl_promote(repl_t *r, char *err, size_t errlen);

/* Whether the peer of socket fd is on loopback (127.0.0.0/8, ::1). */
bool repl_is_loopback(int fd);

/* "stats reset": the replicas' lag histograms start again. */
void repl_stats_reset(repl_t *r);

/* "stats repl": every figure as a name and a value, in order. */
void repl_stats(repl_t *r,
                void (*fn)(void *arg, const char *name, const char *value),
                void *arg);

#endif
