/*
 * net: mcdbd's network front end. io_uring worker threads that accept
 * memcached text-protocol connections, parse requests with src/net/proto,
 * run them against the engine (src/log/store) and send the replies, each
 * write's reply only once the engine reports it durable.
 *
 *   struct net_config cfg;
 *   switch (net_config_parse(&cfg, argc, argv)) { ... }   command line
 *   net_start(&cfg, store, repl, &net, err, sizeof(err)); listen, spawn workers
 *   ... net_stop(net);                                    from any thread
 *   net_wait(net);                                        drain, join, free
 *
 * The command line is declared once, in NET_OPTIONS below and the other
 * modules' tables it is composed with (MCDBD_OPTIONS): the struct, the
 * defaults, getopt's tables, --help and "stats settings" are generated from
 * them.
 */
#ifndef MCDB_NET_H
#define MCDB_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log/store.h"
#include "repl/repl.h"

/*
 * --help's groups, in the order it prints them, with their headings; a
 * group with no option is not printed. (memcached 1.6.18's --help is one
 * list in roughly this order, network first, with its -o options apart;
 * mcdbd names the groups.)
 */
#define MCDBD_GROUPS(G)                                                        \
    G(NETWORK, "Network")                                                      \
    G(LIMITS, "Connections and limits")                                        \
    G(STORAGE, "Storage")                                                      \
    G(REPLICATION, "Replication")                                              \
    G(SECURITY, "Security")                                                    \
    G(LOGGING, "Logging")                                                      \
    G(GENERAL, "General")

/*
 * group (MCDBD_GROUPS), field, long name, short (0: none), kind, default,
 * "stats settings" name (memcached's where the meaning is the same; NULL:
 * not a setting), help. A kind names a C type (NET_CTYPE_<kind>) and a
 * parser in options.c.
 */
#define NET_OPTIONS(X)                                                         \
    X(NETWORK, port, "port", 'p', PORT, "11211", "tcpport",                    \
      "TCP port to listen on")                                                 \
    X(NETWORK, listen, "listen", 'l', ADDRS, "127.0.0.1", "inter",             \
      "address to listen on; repeat or comma-separate for several; "           \
      "IPv6 literals allowed")                                                 \
    X(NETWORK, threads, "threads", 't', THREADS, "0", "num_threads",           \
      "worker threads, one io_uring each (0: one per CPU it may run on)")      \
    X(LIMITS, max_connections, "max-connections", 'c', COUNT, "4096",          \
      "maxconns", "most client connections open at once")                      \
    X(LIMITS, idle_timeout, "idle-timeout", 0, SECONDS, "0", "idle_timeout",   \
      "close a client connection that has sent nothing and has nothing "       \
      "left to receive for this many seconds (0: never)")                      \
    X(LIMITS, conn_memory_limit, "conn-memory-limit", 0, MEMORY, "auto",       \
      "conn_memory_limit",                                                     \
      "memory all client connections together may hold for requests not "      \
      "yet received whole and replies not yet sent; past it a connection "     \
      "that asks for more is closed (k, m, g suffixes; auto: an eighth of "    \
      "physical memory, at least 64m)")                                        \
    X(LIMITS, max_item_size, "max-item-size", 'I', SIZE, "1m",                 \
      "item_size_max", "largest value accepted (k, m, g suffixes)")            \
    X(STORAGE, data_dir, "data-dir", 0, PATH, "./data", "data_dir",            \
      "directory that holds the log")                                          \
    X(STORAGE, fsync, "fsync", 0, FSYNC, "always", "fsync",                    \
      "when a write is acknowledged: always (after fdatasync), everysec, "     \
      "never")                                                                 \
    X(STORAGE, segment_size, "segment-size", 0, SIZE, "64m", "segment_size",   \
      "size at which a log segment is sealed (k, m, g suffixes)")              \
    X(STORAGE, value_cache, "value-cache", 0, SIZE0, "64m", "value_cache",     \
      "memory for copies of recently read values, split between the "          \
      "worker threads: a get of a hot key then copies it instead of "          \
      "reading the log (k, m, g suffixes; 0: none). On top of the index; "     \
      "unlike memcached's -m it limits no data, only this cache")              \
    X(STORAGE, compact_garbage, "compact-garbage", 0, RATIO, "0.5",            \
      "compact_garbage",                                                       \
      "compact the oldest segments while more than this fraction of the "      \
      "log is garbage (between 0 and 1)")                                      \
    X(STORAGE, compact_rate, "compact-rate", 0, RATE, "64m", "compact_rate",   \
      "bytes per second the compactor may read (k, m, g suffixes; 0: no "      \
      "limit); lifted while garbage is past halfway from --compact-garbage "   \
      "to 1")                                                                  \
    X(STORAGE, preallocate, "preallocate", 0, YESNO, "no", "preallocate",      \
      "zero-fill the newest segment file a MiB ahead of its writes: an "       \
      "fdatasync that does not change the file's size is cheaper (faster "     \
      "durable writes), but the file's size no longer shows that it "          \
      "changed (its mtime does, a second later): passes of rsync into one "    \
      "backup must start two seconds apart")                                   \
    X(STORAGE, direct_reads, "direct-reads", 0, YESNO, "no", "direct_reads",   \
      "read a value that is not in the page cache straight from the disk "     \
      "(O_DIRECT), not through the page cache: for more data than memory, "    \
      "where the page cache would only churn and read ahead (hot values "      \
      "stay in --value-cache). Not for data that fits in memory: such "        \
      "reads never warm the page cache")                                       \
    X(SECURITY, auth_file, "auth-file", 'Y', AUTHFILE, "",                     \
      "auth_enabled_ascii",                                                    \
      "a file of user:password lines (memcached's -Y); a client must log "     \
      "in before any other command: over text with a set whose data is "       \
      "\"user password\", over the binary protocol with SASL PLAIN (no "       \
      "encryption: private networks or TLS tunnels only)")                     \
    X(LOGGING, verbose, "verbose", 'v', LEVEL, "0", "verbosity",               \
      "-v: connection events and io_uring features, -vv: debug")               \
    X(GENERAL, help, "help", 'h', HELP, "", NULL, "print this help and exit")  \
    X(GENERAL, version, "version", 'V', VERSION, "", NULL,                     \
      "print the version and exit")

/* Every option of mcdbd: the network's, then replication's (repl.h). */
#define MCDBD_OPTIONS(X) NET_OPTIONS(X) REPL_OPTIONS(X)

#define NET_CTYPE_PORT unsigned
#define NET_CTYPE_ADDRS char *
#define NET_CTYPE_THREADS unsigned
#define NET_CTYPE_COUNT unsigned
#define NET_CTYPE_SIZE uint64_t
#define NET_CTYPE_MEMORY uint64_t
#define NET_CTYPE_PATH char *
#define NET_CTYPE_FSYNC enum store_fsync
#define NET_CTYPE_RATIO double
#define NET_CTYPE_RATE uint64_t
#define NET_CTYPE_SIZE0 uint64_t
#define NET_CTYPE_LEVEL unsigned
#define NET_CTYPE_HELP bool
#define NET_CTYPE_VERSION bool
#define NET_CTYPE_HOSTPORT char *
#define NET_CTYPE_FLAG bool
#define NET_CTYPE_REPLICAS unsigned
#define NET_CTYPE_MILLIS unsigned
#define NET_CTYPE_FILE char *
#define NET_CTYPE_YESNO bool
#define NET_CTYPE_SECONDS unsigned
#define NET_CTYPE_AUTHFILE char *

struct net_config {
#define X(group, field, lname, sname, kind, def, stat, help)                   \
    NET_CTYPE_##kind field;
    MCDBD_OPTIONS(X)
#undef X
};

enum { NET_CONFIG_OK = 0, NET_CONFIG_EXIT = 1, NET_CONFIG_BAD = 2 };

/*
 * Fill cfg from the defaults and argv. NET_CONFIG_OK: run the server.
 * NET_CONFIG_EXIT: --help or --version was printed to stdout, exit 0.
 * NET_CONFIG_BAD: the reason and the usage went to stderr, exit 2.
 * threads 0 is resolved to the number of online CPUs, conn_memory_limit
 * auto to its size in bytes.
 */
int net_config_parse(struct net_config *cfg, int argc, char **argv);
void net_config_free(struct net_config *cfg);
/* A deep copy (its strings are the copy's own; free with net_config_free). */
void net_config_copy(struct net_config *to, const struct net_config *from);

/* Call fn for every setting (memcached's name, value as text), table order. */
void net_config_each(const struct net_config *cfg,
                     void (*fn)(void *arg, const char *name, const char *value),
                     void *arg);

typedef struct net net_t;

/*
 * Bind every --listen address (one SO_REUSEPORT socket per worker), start
 * the workers and return once all of them accept connections (repl may be
 * NULL: no replication; connections that ask for it get an error). On failure
 * returns -1 with a message in err and nothing left running.
 *
 * Call it with the store open: holding the data directory's lock proves
 * that the server that used it last is gone, so a port that is still in use
 * is most likely that dead server's (a killed process's io_uring releases
 * its sockets a moment after it exits), and the bind is retried for a few
 * seconds before it fails.
 */
int net_start(const struct net_config *cfg, store_t *store, repl_t *repl,
              net_t **out, char *err, size_t errlen);

/* What can be checked of cfg before the store recovers (minutes for a large
 * log), so that a mistake fails at once: the --auth-file is read. 0, or -1
 * with the reason in err. */
int net_check(const struct net_config *cfg, char *err, size_t errlen);

/* Begin a graceful stop: stop accepting, finish the requests in flight,
 * wait for their acks, close connections. Thread-safe; not for signal
 * handlers. */
void net_stop(net_t *net);

/* Wait until every worker has finished, then free net. Returns 0, or -1 if
 * a worker stopped on a fatal error: it was logged, the other workers were
 * stopped and SIGTERM was raised so that a caller blocked in sigwait()
 * (main.c) comes to net_wait(). */
int net_wait(net_t *net);

#endif
