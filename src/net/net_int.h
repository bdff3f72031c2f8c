/*
 * net_int.h: what the files of src/net share and nobody else sees. The
 * model (threads, rings, the connection state machine) is described at the
 * top of server.c.
 */
#ifndef MCDB_NET_INT_H
#define MCDB_NET_INT_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "log/store.h"
#include "net/auth.h"
#include "net/net.h"
#include "net/out.h"
#include "net/proto.h"
#include "net/vcache.h"
#include "repl/repl.h"

#define NET_RING_ENTRIES 1024    /* submission queue; completions x8 */
#define NET_BUF_SIZE (16u << 10) /* one provided receive buffer */
#define NET_BUF_COUNT 256        /* provided buffers per worker */
#define NET_BUF_GROUP 0
#define NET_IN_SLACK (8u << 20) /* input beyond one request (see conn.c) */
#define NET_STOP_GRACE_MS 10000 /* then connections are closed as they are */
/* Descriptors kept beyond --max-connections for listeners, rings, eventfds
 * and the log's files (the open files limit is raised to cover both). */
#define NET_RESERVED_FDS 1024
#define NET_BACKLOG 1024 /* listen(2)'s; memcached's tcp_backlog */
/* --conn-memory-limit (see conn.c): a worker reserves from the shared count
 * in leases of this size; a connection holding no more than the floor is
 * never closed for memory. */
#define NET_MEM_LEASE (256u << 10)
#define NET_CONN_MEM_FLOOR (64u << 10)

/*
 * What "version" and "stats" say. Clients read it as memcached's version to
 * decide what the server speaks (libmemcached rejects a major version of 0,
 * memcapable expects 1.6 behaviour only from "1.6" or later), so it names
 * the memcached protocol level first and mcdb's own version after it.
 */
#define NET_VERSION "1.6.0-mcdb-" MCDB_VERSION

/* ---- statistics: per worker, one writer each, summed on demand ---- */

#define NET_COUNTERS(X)                                                        \
    X(total_connections)                                                       \
    X(rejected_connections)                                                    \
    X(idle_kicks)                                                              \
    X(conn_memory_kicks)                                                       \
    X(cmd_get)                                                                 \
    X(cmd_set)                                                                 \
    X(cmd_flush)                                                               \
    X(cmd_touch)                                                               \
    X(get_hits)                                                                \
    X(get_misses)                                                              \
    X(get_expired)                                                             \
    X(get_flushed)                                                             \
    X(delete_misses)                                                           \
    X(delete_hits)                                                             \
    X(incr_misses)                                                             \
    X(incr_hits)                                                               \
    X(decr_misses)                                                             \
    X(decr_hits)                                                               \
    X(cas_misses)                                                              \
    X(cas_hits)                                                                \
    X(cas_badval)                                                              \
    X(touch_hits)                                                              \
    X(touch_misses)                                                            \
    X(bytes_read)                                                              \
    X(bytes_written)                                                           \
    X(total_items)                                                             \
    X(auth_cmds)                                                               \
    X(auth_errors)                                                             \
    X(cmd_meta)                                                                \
    X(store_too_large)                                                         \
    X(store_no_memory)                                                         \
    X(conn_yields)                                                             \
    X(value_cache_hits)                                                        \
    X(value_cache_misses)                                                      \
    X(value_cache_evictions)                                                   \
    X(value_reads_direct)                                                      \
    X(listen_disabled_num)                                                     \
    X(time_in_listen_disabled_us)

/* Relaxed atomics so that "stats" on another thread may read them; the
 * owner's increments compile to a plain load, add and store. */
struct net_counters {
#define X(name) _Atomic uint64_t name;
    NET_COUNTERS(X)
#undef X
};

struct net_sums {
#define X(name) uint64_t name;
    NET_COUNTERS(X)
#undef X
};

#define CNT_ADD(w, name, n)                                                    \
    atomic_store_explicit(                                                     \
        &(w)->w_cnt.name,                                                      \
        atomic_load_explicit(&(w)->w_cnt.name, memory_order_relaxed) + (n),    \
        memory_order_relaxed)
#define CNT_INC(w, name) CNT_ADD(w, name, 1)

/* ---- ring operations: user_data is a pointer with a tag in its low bits */

enum ud_tag {
    UD_IGNORE = 0, /* cancellations: nothing to do */
    UD_ACCEPT,     /* struct listener */
    UD_RECV,       /* struct conn */
    UD_SEND,       /* struct conn */
    UD_READ,       /* struct oitem: a value read from a segment file */
    UD_WAKE,       /* struct worker: its eventfd became readable */
    UD_TIMER,      /* struct listener: re-arm accept after a pause */
    UD_TICK,       /* struct worker: --idle-timeout's periodic check */
};
#define UD_TAG_MASK 7ull

static inline uint64_t
ud_make(const void *p, enum ud_tag tag)
{
    return (uint64_t)(uintptr_t)p | tag;
}

static inline void *
ud_ptr(uint64_t ud)
{
    return (void *)(uintptr_t)(ud & ~UD_TAG_MASK);
}

/* ---- reply text ---- */

#define NET_U64_DIGITS 20 /* UINT64_MAX in decimal */

/* v in decimal at dst (NET_U64_DIGITS bytes of room); returns the length.
 * printf's "%" PRIu64 without printf: replies are built on every request. */
static inline size_t
net_fmt_u64(char *dst, uint64_t v)
{
    size_t n = 1;
    for (uint64_t t = v; t >= 10; t /= 10)
        n++;
    for (size_t i = n; i-- > 0; v /= 10)
        dst[i] = (char)('0' + v % 10);
    return n;
}

/* ---- what the kernel offers (probed once at start) ---- */

struct net_features {
    bool single_issuer; /* IORING_SETUP_SINGLE_ISSUER + DEFER_TASKRUN */
    bool coop_taskrun;
    bool buf_ring;  /* provided buffer rings (5.19) */
    bool ms_accept; /* multishot accept (5.19) */
    bool ms_recv;   /* multishot recv (6.0), needs buf_ring */
};

/* ---- connections ---- */

/* See the state machine at the top of server.c. */
enum conn_state { CONN_READING, CONN_PAUSED, CONN_DRAINING, CONN_CLOSING };
/* What a connection speaks: its first byte decides (0x80: binary), for
 * its whole life, as in memcached. */
enum conn_proto { CONN_PROTO_UNKNOWN, CONN_PROTO_TEXT, CONN_PROTO_BINARY };

struct conn {
    struct conn *next, *prev;   /* worker's connections */
    struct conn *wnext, *wprev; /* worker's waiters (acks pending) */
    struct conn *dirty_next;    /* worker's to-flush list */
    struct worker *w;
    int fd;
    uint8_t state;
    bool dirty, waiting, eof;
    bool handover; /* a replica: the socket goes to src/repl once idle */
    bool recv_armed, send_busy;
    bool heard;       /* --idle-timeout: active since the last tick */
    bool authed;      /* logged in, or no --auth-file */
    bool sasl_wait;   /* a SASL_AUTH continued: SASL_STEP completes it */
    uint32_t idle_ms; /* ... idle for this long, in whole ticks */
    unsigned refs;    /* ring operations naming this conn */
    uint8_t proto;    /* CONN_PROTO_*: chosen by the first byte */
    unsigned n_wait_ack;

    char *in; /* bytes received, not yet consumed */
    size_t in_len, in_cap;
    uint64_t swallow;  /* bytes still to discard */
    size_t get_resume; /* key position of a paused get, or the next part
                          of a paused metadump */

    struct oitem *oq_head, *oq_tail;
    struct oitem *send_last; /* the last item the send in flight covers */
    size_t out_bytes;
    size_t mem_acct; /* in_cap + out_bytes as last added to the worker's */

    struct msghdr msg; /* the send in flight */
    struct iovec iov[NET_IOV_MAX];
    char peer[64];
};

/* ---- a listening socket of one worker ---- */

struct listener {
    struct worker *w;
    int fd;
    bool armed, closed;
    struct __kernel_timespec pause;
    char name[64];
};

/* ---- a worker thread: one ring, its listeners and connections ---- */

struct worker {
    struct net *net;
    unsigned id;
    pthread_t thread;
    struct io_uring ring;
    bool ring_ok;
    struct net_features feat; /* may lose a feature at run time */

    int wake_fd; /* eventfd: store acks and net_stop() */
    uint64_t wake_val;
    bool wake_armed;

    struct io_uring_buf_ring *br;
    char *bufs;

    struct listener *ls;
    unsigned nls;
    unsigned nls_open;
    _Atomic unsigned nls_paused; /* accept paused (out of descriptors) */

    struct conn *conns;   /* all open or closing connections */
    struct conn *waiters; /* connections with writes awaiting acks */
    struct conn *dirty;   /* connections with output to flush */
    _Atomic unsigned curr_conns;
    /* Bytes its connections hold (conn_account; read by "stats"), and the
     * part of net->conn_mem reserved for them. */
    _Atomic size_t mem;
    size_t mem_lease;
    struct __kernel_timespec tick; /* --idle-timeout */
    unsigned tick_ms;
    bool tick_armed;
    bool stopping;
    uint64_t stop_deadline_ms;

    struct oitem *free_items; /* recycled items */
    unsigned n_free_items;
    /* recycled text chunks and record buffers, by size class */
    struct buf_cache caches[NET_CACHE_CLASSES];
    struct vcache vc; /* recently read values (--value-cache / workers) */
    uint64_t vc_gen;  /* the store's log generation vc's entries are of */
    _Atomic size_t vc_bytes; /* vc.vc_bytes, for "stats" */

    struct net_counters w_cnt;
};

struct net {
    struct net_config cfg;
    store_t *store;
    repl_t *repl;
    auth_t *auth; /* --auth-file; NULL: none */
    struct net_features feat;
    struct worker *workers;
    unsigned nworkers;
    int *listen_fds; /* [worker * naddrs + addr] */
    unsigned naddrs;
    char (*addr_names)[64];

    _Atomic unsigned conns; /* open connections, all workers */
    /* The workers' leases: what all connections hold, rounded up by at
     * most NET_MEM_LEASE per worker (--conn-memory-limit). */
    _Atomic uint64_t conn_mem;
    _Atomic bool stopping;
    _Atomic bool failed;
    int64_t started; /* unix seconds */

    pthread_mutex_t lock; /* start-up handshake, stats baseline, detail */
    pthread_cond_t cond;
    unsigned nready;
    bool start_failed;
    char start_err[256];
    struct net_sums baseline;      /* "stats reset" subtracts this */
    _Atomic bool detail_on;        /* "stats detail on" */
    struct stats_prefix *prefixes; /* its counts by key prefix, under lock */
};

/* server.c */
struct io_uring_sqe *worker_sqe(struct worker *w);
void worker_return_buf(struct worker *w, unsigned bid);
void worker_cancel(struct worker *w, uint64_t ud);
void net_addr_name(const struct sockaddr *sa, char *buf, size_t len);
void worker_sum(struct net *net, struct net_sums *sum);

/* conn.c */
void conn_open(struct worker *w, int fd);
void conn_on_recv(struct conn *c, struct io_uring_cqe *cqe);
void conn_on_send(struct conn *c, int res);
void conn_close(struct conn *c);
void conn_stop_reading(struct conn *c);
void conn_flush(struct conn *c);
void conn_mark_dirty(struct conn *c);
void conn_arm_recv(struct conn *c);
void conn_maybe_free(struct conn *c);
void conn_pause(struct conn *c);
void conn_drain(struct conn *c);
/* Finish what is queued, then hand the socket to src/repl. */
void conn_handover(struct conn *c);
/* --idle-timeout: called every tick_ms; closes c once idle that long. */
void conn_tick(struct conn *c, unsigned tick_ms);

/* cmd.c: the reply (with "\r\n") for a failed store call or ack. */
size_t cmd_status_text(store_t *s, int rc, char *buf, size_t len);
/* cmd.c: execute one parsed request. Returns false when it stopped part
 * way (a get paused by backpressure at conn->get_resume). */
bool cmd_execute(struct conn *c, const struct proto_req *req);
void cmd_parse_error(struct conn *c, const struct proto_req *req);
/* cmd.c: queue text as the reply to a write with this ack (0: none). */
void cmd_hold(struct conn *c, uint64_t ack, const char *text, size_t n,
              enum out_policy policy);
/* cmd.c: the same for a binary reply (b; NULL: text, as cmd_hold). */
void cmd_hold_bin(struct conn *c, uint64_t ack, const char *text, size_t n,
                  enum out_policy policy, const struct out_bin *b);
/* cmd.c: a store's failure rc as the reply: a packet when b (binary),
 * else cmd_status_text's line. */
size_t cmd_failure_text(struct conn *c, int rc, const struct out_bin *b,
                        char *buf, size_t len);
/* cmd.c: count a compare-and-swap's outcome (cas_hits, _badval, _misses). */
void cmd_count_cas(struct worker *w, int rc);
/* cmd.c: count a storage command the store refused for its size
 * (store_too_large) or for want of room (store_no_memory; see stats.c). */
void cmd_count_store(struct worker *w, int rc);
/* cmd.c: count one read of a key (the text get family, mg, the binary
 * get family): as a get (cmd_get, get_hits or get_misses and why) and/or
 * as a touch (cmd_touch, touch_hits or touch_misses). */
enum { CMD_READ_GET = 1, CMD_READ_TOUCH = 2 };
void cmd_count_read(struct worker *w, unsigned what, int rc, uint8_t miss);
/* cmd.c: count an incr/decr's outcome (a vivified item is neither a hit
 * nor a miss). */
void cmd_count_arith(struct worker *w, bool incr, int rc, bool created);

/* cmd_meta.c: the meta commands' handlers (the table's handler column). */
bool cmd_mg(struct conn *c, const struct proto_req *req);
bool cmd_ms(struct conn *c, const struct proto_req *req);
bool cmd_md(struct conn *c, const struct proto_req *req);
bool cmd_ma(struct conn *c, const struct proto_req *req);
bool cmd_mn(struct conn *c, const struct proto_req *req);
bool cmd_me(struct conn *c, const struct proto_req *req);

/* cmd_auth.c: before login (--auth-file), the request at the start of buf.
 * Returns the bytes it used (0: it needs more, or the connection is
 * closing), or CMD_AUTH_PASS when it is replication's handshake, which the
 * caller parses and runs as usual. */
#define CMD_AUTH_PASS ((size_t)-1)
size_t cmd_auth_ascii(struct conn *c, const char *buf, size_t len);
/* cmd_auth.c: SASL_LIST_MECHS, SASL_AUTH, SASL_STEP with --auth-file. */
struct bin_req;
bool cmd_auth_sasl(struct conn *c, const struct bin_req *r);

/* cmd_bin.c: parse and run one binary request at buf; returns the bytes
 * it used (0: it needs more), and sets c->swallow (bytes to drop next). */
size_t cmd_bin_step(struct conn *c, const char *buf, size_t len);
/* cmd_bin.c: a store's failure rc as a binary packet for b at buf. */
size_t cmd_bin_failure(store_t *s, int rc, const struct out_bin *b, char *buf,
                       size_t len);

/* stats.c: "stats [arg]"; _bin: the binary stat, answered as b says. */
void stats_reply(struct conn *c, const char *arg, size_t arg_len);
void stats_reply_bin(struct conn *c, const char *arg, size_t arg_len,
                     const struct out_bin *b);
/* "stats detail": count one get (a hit or a miss), set or delete of key
 * under its prefix; STATS_DETAIL costs one relaxed load while it is off. */
enum stats_detail_op { DETAIL_MISS, DETAIL_HIT, DETAIL_SET, DETAIL_DEL };
void stats_detail_count(struct net *net, const char *key, size_t klen,
                        enum stats_detail_op op);
#define STATS_DETAIL(net, key, klen, op)                                       \
    do {                                                                       \
        if (atomic_load_explicit(&(net)->detail_on, memory_order_relaxed))     \
            stats_detail_count(net, key, klen, op);                            \
    } while (0)
/* What "stats detail" holds, freed with the server. */
void stats_detail_free(struct net *net);

#endif
