/*
 * mcdb-bench: a load generator for servers that speak memcached's text
 * protocol (get/set), memcached's meta protocol (mg/ms), memcached's binary
 * protocol (GET/SET) or Redis's RESP (GET/SET), so memcached, Redis and
 * mcdbd are driven by the same client.
 *
 * Build, then run it against a memcached pinned to the other core:
 *   cmake -S . -B build && cmake --build build -j2 --target mcdb-bench
 *   taskset -c 1 memcached -t 1 -p 11311 -l 127.0.0.1 &
 *   build/bench/mcdb-bench --server 127.0.0.1:11311 --keys 100000 \
 *       --value-size 100 --preload
 *   taskset -c 0 build/bench/mcdb-bench --server 127.0.0.1:11311 \
 *       --connections 50 --pipeline 16 --ratio 0:1 --duration 10
 * Redis, 1 set to 1 get, preloaded, JSON out:
 *   build/bench/mcdb-bench --protocol redis --server 127.0.0.1:6379 \
 *       --ratio 1:1 --preload --duration 5 --json
 * The same memcached, meta gets returning value, flags, cas and TTL:
 *   taskset -c 0 build/bench/mcdb-bench --server 127.0.0.1:11311 \
 *       --protocol meta --meta-flags "v f c t" --pipeline 16 --ratio 0:1
 * The same memcached, binary GETs and SETs, 1 set to 10 gets:
 *   taskset -c 0 build/bench/mcdb-bench --server 127.0.0.1:11311 \
 *       --protocol binary --pipeline 16 --ratio 1:10
 *   build/bench/mcdb-bench --help
 *
 * How it works
 *
 * Every thread runs one epoll event loop over its share of the connections
 * (non-blocking sockets, level-triggered). A connection keeps up to
 * --pipeline requests in flight: whenever replies free slots, the requests
 * that refill them are formatted into the connection's output buffer and
 * written with one sendmsg(); values up to VALUE_INLINE bytes are copied
 * next to their header, larger ones are sent straight from one shared value
 * buffer through the iovec. Replies are parsed in place in the input buffer;
 * a value's bytes are skipped, never copied. All buffers are allocated when
 * the connection is set up: the request path does not allocate.
 *
 * Replies match requests in FIFO order (all four protocols answer in
 * order). A connection's reply parser for the three text protocols is a small
 * state machine, advanced by conn_parse():
 *
 *   RS_LINE --VALUE/VA N/$N--> RS_DATA --N bytes--> RS_DATA_END --"\r\n"--+
 *      ^                                                                  |
 *      |<--- "END" (memcache) --- RS_END <----- memcache -----------------+
 *      |<------------------------------------ meta, redis: reply done ---+
 *
 * and every other complete line (END, EN, HD, $-1, STORED, +OK, errors)
 * ends the reply in RS_LINE. The parser only ever looks at complete lines,
 * and counts the value bytes it skips, so a reply may be split across reads
 * at any byte. A line that is an error reply (ERROR, CLIENT_ERROR,
 * SERVER_ERROR, -ERR, and the refusals NOT_STORED/NS, EXISTS/EX,
 * NOT_FOUND/NF) completes its request as an error; the first one of a run
 * is kept, with the command it answered, and reported. Any other line is a
 * protocol error: the connection is closed, naming the line.
 *
 * Meta (--protocol meta): a set is "ms KEY LEN T0 F0" and its data, answered
 * "HD"; a get is "mg KEY" plus --meta-flags (default "v f"), answered
 * "VA LEN <flags>" and the data on a hit (or, without v, "HD <flags>") and
 * "EN" on a miss. Before the run, one mg of key 0 on the first connection
 * checks that the server speaks meta at all: one that answers ERROR (an
 * unknown command) is a clear failure, not ten seconds of errors.
 *
 * Binary (--protocol binary): a get is GET (opcode 0x00: no extras, the
 * key), answered by a 24-byte header with status 0 and a body of 4 bytes
 * of flags and the value on a hit, status 0x0001 (Key not found) and a
 * short text body on a miss; a set is SET (0x01: 8 bytes of extras, flags
 * 0 and expiry 0, the key, the value), answered status 0 and no body. No
 * quiet opcodes: every request gets its reply, in order, and each carries
 * its connection's request count in `opaque`, which the reply must echo.
 * conn_parse_binary() reads a header once 24 bytes are in, then skips its
 * body (RS_DATA), so a reply may be split anywhere too. Another status is
 * an error reply (counted, the first kept); a header that is not a reply
 * to the request at the head (magic 0x81, opcode, opaque) is a protocol
 * error. Before the run, one VERSION (0x0b) on the first connection checks
 * that the server speaks binary at all (mcdb-bench stops, saying so, if the
 * reply is not binary or does not come within 10 s).
 *
 * The measured window: the main thread sleeps through --warmup, then raises
 * `measuring` and takes t0; it raises `stop` and takes t1 after --duration
 * (or, with --requests, t1 is when the last thread finished its share). A
 * request counts only if it was issued while measuring and its reply came
 * back before the stop, so ops = sets + gets, hits + misses + (gets that got
 * an error reply) = gets, and ops_per_sec = ops / (t1 - t0).
 *
 * Latency is taken from the clock read just before a batch is written to the
 * clock read just after the recv() that completed the reply, so at
 * --pipeline N it includes the wait behind the N-1 requests ahead. It goes
 * into a log-linear histogram (hist_record()): exact below 256 ns, then 128
 * buckets per power of two, so a percentile is within 0.4% of the truth.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- options: one table gives the struct, defaults, --help and JSON ---- */

/*
 * X(name, type, default, metavar, help). The long option is the name with
 * '-' for '_'; the JSON config field is the name itself.
 */
#define BENCH_OPTIONS(X)                                                       \
    X(server, STR, "127.0.0.1:11211", "HOST:PORT",                             \
      "server to load; loopback only (127.0.0.0/8, ::1, localhost)")           \
    X(protocol, STR, "memcache", "memcache|meta|binary|redis",                 \
      "memcached text protocol (get/set), memcached meta protocol (mg/ms), "   \
      "memcached binary protocol (GET/SET) or Redis RESP (GET/SET)")           \
    X(meta_flags, STR, "v f", "\"F F ...\"",                                   \
      "--protocol meta: the flags of every mg, single letters separated by "   \
      "spaces, each at most once, from c (cas), f (client flags), h (hit "     \
      "before), k (key), l (last access), s (size), t (TTL), u (no LRU "       \
      "bump), v (value); without v a hit is answered HD, not VA")              \
    X(threads, UINT, "1", "N", "event-loop threads; give each a core")         \
    X(connections, UINT, "50", "N",                                            \
      "connections in total, spread over the threads")                         \
    X(pipeline, UINT, "1", "N",                                                \
      "requests in flight per connection (refills go out in one send)")        \
    X(duration, SECS, "10", "SECONDS",                                         \
      "length of the measured run, after the warm-up")                         \
    X(requests, UINT, "0", "N",                                                \
      "instead of --duration: stop after N measured requests in total")        \
    X(warmup, SECS, "1", "SECONDS", "load this long before measuring")         \
    X(keys, UINT, "100000", "N", "key space: PREFIX0 .. PREFIX<N-1>")          \
    X(key_prefix, STR, "key:", "STR", "prefix of every key")                   \
    X(key_dist, STR, "uniform", "uniform|zipf[:THETA]",                        \
      "key choice; zipf's exponent THETA defaults to 0.99, key 0 hottest")     \
    X(value_size, STR, "100", "N|MIN-MAX",                                     \
      "bytes per value set: fixed, or uniform in [MIN, MAX]")                  \
    X(ratio, STR, "1:10", "SET:GET",                                           \
      "sets to gets, e.g. 1:10; 0:1 is get-only, 1:0 set-only")                \
    X(preload, FLAG, "0", "",                                                  \
      "first set every key once, then exit (or run, if --duration or "         \
      "--requests is given)")                                                  \
    X(json, FLAG, "0", "", "print one JSON object instead of the report")      \
    X(seed, UINT, "1", "N", "seed for key choice and value sizes")

#define OPT_CTYPE_STR const char *
#define OPT_CTYPE_UINT uint64_t
#define OPT_CTYPE_SECS double
#define OPT_CTYPE_FLAG bool
#define OPT_HASARG_STR required_argument
#define OPT_HASARG_UINT required_argument
#define OPT_HASARG_SECS required_argument
#define OPT_HASARG_FLAG no_argument

enum opt_id {
#define X(name, type, def, meta, help) OPT_##name,
    BENCH_OPTIONS(X)
#undef X
        OPT_COUNT,
    OPT_HELP = OPT_COUNT,
};

struct options {
#define X(name, type, def, meta, help) OPT_CTYPE_##type name;
    BENCH_OPTIONS(X)
#undef X
    bool given[OPT_COUNT];
};

static const char *const opt_names[] = {
#define X(name, type, def, meta, help) #name,
    BENCH_OPTIONS(X)
#undef X
};

/* ---- limits ---- */

#define MAX_THREADS 256
#define MAX_CONNECTIONS 100000
#define MAX_PIPELINE 4096
#define MAX_PREFIX 200         /* memcached keys are at most 250 bytes */
#define MAX_VALUE (256u << 20) /* 256 MiB */
#define VALUE_INLINE 1024      /* values up to this are copied, not iov'd */
#define REQ_HEADER_MAX (96 + MAX_PREFIX) /* request text besides the value */
#define IBUF_SIZE (64u << 10)
#define EVENTS_MAX 256
#define MG_FLAGS_MAX 9   /* --meta-flags: each allowed letter once */
#define ERR_TEXT_MAX 200 /* an error reply line as reported, quoted */
#define PROBE_TIMEOUT_S 10

/* memcached's binary protocol (protocol_binary.h): header and opcodes */
#define BIN_HEADER 24
#define BIN_REQUEST 0x80
#define BIN_RESPONSE 0x81
#define BIN_GET 0x00
#define BIN_SET 0x01
#define BIN_VERSION 0x0b
#define BIN_SET_EXTRAS 8 /* flags, expiry */
#define BIN_KEY_NOT_FOUND 0x0001

/* ---- the derived plan: options checked and turned into numbers ---- */

enum proto { PROTO_MEMCACHE, PROTO_META, PROTO_BINARY, PROTO_REDIS };
enum op { OP_GET, OP_SET };

/* Each protocol's name for each op, for messages: [proto][op]. */
static const char *const op_names[][2] = {
    [PROTO_MEMCACHE] = {"get", "set"},
    [PROTO_META] = {"mg", "ms"},
    [PROTO_BINARY] = {"binary GET", "binary SET"},
    [PROTO_REDIS] = {"GET", "SET"},
};

struct plan {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    enum proto proto;
    char mg_flags[2 * MG_FLAGS_MAX + 1]; /* " v f": what follows mg's key */
    size_t mg_flags_len;
    bool mg_value; /* v: a hit is VA and a data block, not HD */
    bool zipf;
    double theta;
    uint64_t vmin, vmax;
    uint32_t ratio_set, ratio_get;
    bool run;         /* a load run (after any preload) */
    bool by_requests; /* it ends after --requests, not --duration */
    size_t prefix_len;
};

/* ---- histogram ---- */

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_BITS 40 /* 2^40 ns, 18 minutes; longer is clamped */
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) * HIST_SUB)

struct stats {
    uint64_t ops, sets, gets, hits, misses, errors;
    uint64_t max_ns;
    char first_error[ERR_TEXT_MAX]; /* the first counted error reply, or "" */
    uint64_t hist[HIST_BUCKETS];
};

/*
 * Bucket of v: shift = max(0, msb(v) - 7), index = shift * 128 + (v >> shift).
 * Values below 256 have their own bucket; above, v >> shift is in [128, 255]
 * and each power of two gets 128 buckets, each 1/128 of its lower bound wide.
 */
static inline unsigned
hist_index(uint64_t v)
{
    if (v >= (UINT64_C(1) << HIST_MAX_BITS))
        v = (UINT64_C(1) << HIST_MAX_BITS) - 1;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v | 1);
    unsigned shift = msb > HIST_SUB_BITS ? msb - HIST_SUB_BITS : 0;
    return shift * HIST_SUB + (unsigned)(v >> shift);
}

/* The middle of bucket i, the value it reports. */
static uint64_t
hist_value(unsigned i)
{
    if (i < 2 * HIST_SUB)
        return i;
    unsigned shift = i / HIST_SUB - 1;
    uint64_t lower = (uint64_t)(i - shift * HIST_SUB) << shift;
    return lower + ((UINT64_C(1) << shift) - 1) / 2;
}

static inline void
hist_record(struct stats *st, uint64_t ns)
{
    st->hist[hist_index(ns)]++;
    if (ns > st->max_ns)
        st->max_ns = ns;
}

/* The smallest recorded value v with at least q of the samples <= v. */
static uint64_t
hist_quantile(const struct stats *st, double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += st->hist[i];
    if (!total)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)total), seen = 0;
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += st->hist[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            return v < st->max_ns ? v : st->max_ns;
        }
    }
    return st->max_ns;
}

static void
stats_add(struct stats *to, const struct stats *from)
{
    to->ops += from->ops;
    to->sets += from->sets;
    to->gets += from->gets;
    to->hits += from->hits;
    to->misses += from->misses;
    to->errors += from->errors;
    if (from->max_ns > to->max_ns)
        to->max_ns = from->max_ns;
    if (!to->first_error[0])
        memcpy(to->first_error, from->first_error, sizeof(to->first_error));
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        to->hist[i] += from->hist[i];
}

/* ---- random numbers: splitmix64, and Zipf by rejection-inversion ---- */

static inline uint64_t
rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, n) without division (Lemire's multiply-shift). */
static inline uint64_t
rng_below(uint64_t *s, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(s) * n) >> 64);
}

static inline double
rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

/*
 * Zipf over ranks 1..n with P(k) ~ k^-theta, by W. Hormann and G. Derflinger,
 * "Rejection-inversion to generate variates from monotone discrete
 * distributions" (1996), as in Apache Commons RNG: O(1) per sample, no
 * table, any theta > 0. H is an integral of h(x) = x^-theta; helper1 and
 * helper2 keep log1p(x)/x and expm1(x)/x accurate near x = 0 (theta near 1).
 */
struct zipf {
    double n, theta, h_x1, h_n, s;
};

static double
zipf_helper1(double x)
{
    return fabs(x) > 1e-8 ? log1p(x) / x
                          : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x));
}

static double
zipf_helper2(double x)
{
    return fabs(x) > 1e-8 ? expm1(x) / x
                          : 1 + x * 0.5 * (1 + x * 1.0 / 3 * (1 + 0.25 * x));
}

static double
zipf_h(const struct zipf *z, double x)
{
    return exp(-z->theta * log(x));
}

static double
zipf_H(const struct zipf *z, double x)
{
    double lx = log(x);
    return zipf_helper2((1 - z->theta) * lx) * lx;
}

static double
zipf_H_inverse(const struct zipf *z, double x)
{
    double t = x * (1 - z->theta);
    if (t < -1) /* rounding */
        t = -1;
    return exp(zipf_helper1(t) * x);
}

static void
zipf_init(struct zipf *z, uint64_t n, double theta)
{
    z->n = (double)n;
    z->theta = theta;
    z->h_x1 = zipf_H(z, 1.5) - 1;
    z->h_n = zipf_H(z, z->n + 0.5);
    z->s = 2 - zipf_H_inverse(z, zipf_H(z, 2.5) - zipf_h(z, 2));
}

/* A key in [0, n): rank - 1. */
static uint64_t
zipf_next(const struct zipf *z, uint64_t *rng)
{
    for (;;) {
        double u = z->h_n + rng_unit(rng) * (z->h_x1 - z->h_n);
        double x = zipf_H_inverse(z, u);
        double k = floor(x + 0.5);
        if (k < 1)
            k = 1;
        else if (k > z->n)
            k = z->n;
        if (k - x <= z->s || u >= zipf_H(z, k + 0.5) - zipf_h(z, k))
            return (uint64_t)k - 1;
    }
}

/* ---- the run: connections, workers and the shared control block ---- */

enum rstate { RS_LINE, RS_DATA, RS_DATA_END, RS_END };
enum result { R_STORED, R_HIT, R_MISS, R_ERROR };

struct slot {
    uint64_t sent_ns;
    uint8_t op;      /* enum op */
    uint8_t counted; /* issued while measuring */
};

struct conn {
    int fd;
    unsigned id;
    bool dead;
    bool want_out; /* EPOLLOUT armed: a batch is partly written */
    struct worker *w;
    /* requests in flight, oldest at head; a ring of --pipeline slots */
    struct slot *slots;
    uint32_t head, count;
    /* input: bytes [ibeg, iend) of ibuf are not parsed yet */
    char *ibuf;
    uint32_t ibeg, iend;
    enum rstate rs;
    enum result res;
    uint64_t skip; /* value bytes still to skip in RS_DATA */
    /* binary: requests sent and replies read; a reply's opaque is its
     * request's place in this count */
    uint32_t bin_sent, bin_read;
    /* output: a batch is iov[iov_at, niov), pointing into obuf or value */
    char *obuf;
    size_t olen, oseg;
    struct iovec *iov;
    unsigned niov, iov_at;
};

struct bench;

struct worker {
    struct bench *b;
    unsigned id;
    pthread_t tid;
    int epfd;
    struct conn *conns;
    unsigned nconns, nlive, lost;
    uint64_t rng;
    struct zipf zipf;
    uint32_t op_pos;   /* place in the SET:GET pattern */
    uint64_t inflight; /* requests in flight on all its connections */
    /* the phase, as this thread last saw it */
    bool preloading, measuring, stopping;
    uint64_t next_key, end_key; /* preload: keys still to set */
    uint64_t budget;            /* --requests: measured requests left */
    uint64_t end_ns;
    struct stats st;
};

struct bench {
    struct options o;
    struct plan p;
    char *value; /* vmax bytes, the body of every set */
    struct worker *workers;
    unsigned nworkers;
    atomic_bool measuring, stop;
    atomic_uint done; /* workers that left their loop */
};

static atomic_bool interrupted;

static uint64_t
clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* "mcdb-bench: <message><after>" on stderr, then exit(status). */
static void vfail(int status, const char *after, const char *fmt, va_list ap)
    __attribute__((noreturn));

static void
vfail(int status, const char *after, const char *fmt, va_list ap)
{
    fputs("mcdb-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(after, stderr);
    exit(status);
}

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(1, "\n", fmt, ap);
}

static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(2, "\n(mcdb-bench --help lists the options)\n", fmt, ap);
}

/* ---- request formatting ---- */

static inline char *
put(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

/* Decimal digits of v, written to the end of buf[24]; returns the first. */
static inline char *
u64_digits(char *end, uint64_t v)
{
    char *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

static inline char *
put_u64(char *p, uint64_t v)
{
    char buf[24], *d = u64_digits(buf + sizeof(buf), v);
    return put(p, d, (size_t)(buf + sizeof(buf) - d));
}

/* End the current obuf segment as an iovec. */
static inline void
out_close_segment(struct conn *c)
{
    if (c->olen > c->oseg) {
        c->iov[c->niov++] =
            (struct iovec){c->obuf + c->oseg, c->olen - c->oseg};
        c->oseg = c->olen;
    }
}

/* The value bytes of a set: copied if small, else their own iovec. */
static inline char *
put_value(struct conn *c, char *p, uint64_t vlen)
{
    if (vlen <= VALUE_INLINE)
        return put(p, c->w->b->value, vlen);
    c->olen = (size_t)(p - c->obuf);
    out_close_segment(c);
    c->iov[c->niov++] = (struct iovec){c->w->b->value, vlen};
    return p;
}

static inline char *
put_be16(char *p, uint16_t v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
    return p + 2;
}

static inline char *
put_be32(char *p, uint32_t v)
{
    p = put_be16(p, (uint16_t)(v >> 16));
    return put_be16(p, (uint16_t)v);
}

static inline uint32_t
get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

/* A binary request header: data type, vbucket and cas 0. */
static char *
bin_header(char *p, uint8_t opcode, size_t keylen, uint8_t extlen,
           uint64_t bodylen, uint32_t opaque)
{
    *p++ = (char)BIN_REQUEST;
    *p++ = (char)opcode;
    p = put_be16(p, (uint16_t)keylen);
    *p++ = (char)extlen;
    *p++ = 0; /* data type: raw bytes */
    p = put_be16(p, 0);
    p = put_be32(p, (uint32_t)bodylen);
    p = put_be32(p, opaque);
    memset(p, 0, 8);
    return p + 8;
}

/* GET: the key; SET: flags 0 and expiry 0, the key, the value. */
static char *
bin_format(struct conn *c, char *p, enum op op, const char *kd, size_t kdlen,
           uint64_t vlen)
{
    const struct bench *b = c->w->b;
    size_t klen = b->p.prefix_len + kdlen;
    if (op == OP_GET) {
        p = bin_header(p, BIN_GET, klen, 0, klen, c->bin_sent++);
    } else {
        p = bin_header(p, BIN_SET, klen, BIN_SET_EXTRAS,
                       BIN_SET_EXTRAS + klen + vlen, c->bin_sent++);
        memset(p, 0, BIN_SET_EXTRAS);
        p += BIN_SET_EXTRAS;
    }
    p = put(p, b->o.key_prefix, b->p.prefix_len);
    p = put(p, kd, kdlen);
    return op == OP_SET ? put_value(c, p, vlen) : p;
}

static void
req_format(struct conn *c, enum op op, uint64_t key, uint64_t vlen)
{
    const struct bench *b = c->w->b;
    char kbuf[24], *kd = u64_digits(kbuf + sizeof(kbuf), key);
    size_t kdlen = (size_t)(kbuf + sizeof(kbuf) - kd);
    char *p = c->obuf + c->olen;

    if (b->p.proto == PROTO_BINARY) {
        p = bin_format(c, p, op, kd, kdlen, vlen);
        c->olen = (size_t)(p - c->obuf);
        return;
    }
    if (b->p.proto == PROTO_MEMCACHE) {
        p = op == OP_GET ? PUT_LIT(p, "get ") : PUT_LIT(p, "set ");
        p = put(p, b->o.key_prefix, b->p.prefix_len);
        p = put(p, kd, kdlen);
        if (op == OP_SET) {
            p = PUT_LIT(p, " 0 0 ");
            p = put_u64(p, vlen);
            p = PUT_LIT(p, "\r\n");
            p = put_value(c, p, vlen);
        }
    } else if (b->p.proto == PROTO_META) {
        p = op == OP_GET ? PUT_LIT(p, "mg ") : PUT_LIT(p, "ms ");
        p = put(p, b->o.key_prefix, b->p.prefix_len);
        p = put(p, kd, kdlen);
        if (op == OP_GET) {
            p = put(p, b->p.mg_flags, b->p.mg_flags_len);
        } else {
            p = PUT_LIT(p, " ");
            p = put_u64(p, vlen);
            p = PUT_LIT(p, " T0 F0\r\n");
            p = put_value(c, p, vlen);
        }
    } else {
        p = op == OP_GET ? PUT_LIT(p, "*2\r\n$3\r\nGET\r\n$")
                         : PUT_LIT(p, "*3\r\n$3\r\nSET\r\n$");
        p = put_u64(p, b->p.prefix_len + kdlen);
        p = PUT_LIT(p, "\r\n");
        p = put(p, b->o.key_prefix, b->p.prefix_len);
        p = put(p, kd, kdlen);
        if (op == OP_SET) {
            p = PUT_LIT(p, "\r\n$");
            p = put_u64(p, vlen);
            p = PUT_LIT(p, "\r\n");
            p = put_value(c, p, vlen);
        }
    }
    p = PUT_LIT(p, "\r\n");
    c->olen = (size_t)(p - c->obuf);
}

/* ---- choosing the next request ---- */

static inline enum op
next_op(struct worker *w)
{
    if (w->preloading)
        return OP_SET;
    const struct plan *p = &w->b->p;
    uint32_t pos = w->op_pos;
    if (++w->op_pos == p->ratio_set + p->ratio_get)
        w->op_pos = 0;
    return pos < p->ratio_set ? OP_SET : OP_GET;
}

static inline uint64_t
next_key(struct worker *w)
{
    if (w->preloading)
        return w->next_key++;
    if (w->b->p.zipf)
        return zipf_next(&w->zipf, &w->rng);
    return rng_below(&w->rng, w->b->o.keys);
}

static inline uint64_t
next_vlen(struct worker *w)
{
    const struct plan *p = &w->b->p;
    if (p->vmin == p->vmax)
        return p->vmin;
    return p->vmin + rng_below(&w->rng, p->vmax - p->vmin + 1);
}

/* How many of `want` new requests the phase allows now. */
static unsigned
worker_allowance(struct worker *w, unsigned want)
{
    if (w->stopping)
        return 0;
    if (w->preloading) {
        uint64_t left = w->end_key - w->next_key;
        return left < want ? (unsigned)left : want;
    }
    if (w->b->p.by_requests && w->measuring) {
        unsigned n = w->budget < want ? (unsigned)w->budget : want;
        w->budget -= n;
        return n;
    }
    return want;
}

static bool
worker_may_issue(const struct worker *w)
{
    if (w->stopping)
        return false;
    if (w->preloading)
        return w->next_key < w->end_key;
    if (w->b->p.by_requests && w->measuring)
        return w->budget > 0;
    return true;
}

/* ---- connection I/O ---- */

static void conn_fail(struct conn *c, const char *what, int err);

static void
conn_want_out(struct conn *c, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    c->want_out = on;
}

/* Write what is left of the batch; arm EPOLLOUT if the socket is full. */
static void
conn_flush(struct conn *c)
{
    while (c->iov_at < c->niov) {
        unsigned n_iov = c->niov - c->iov_at;
        struct iovec *v = c->iov + c->iov_at;
        struct msghdr m = {.msg_iov = v,
                           .msg_iovlen = n_iov < IOV_MAX ? n_iov : IOV_MAX};
        /* send() skips copying a msghdr and an iovec in: the usual case */
        ssize_t n = n_iov == 1
                        ? send(c->fd, v->iov_base, v->iov_len,
                               MSG_NOSIGNAL | MSG_DONTWAIT)
                        : sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_out)
                    conn_want_out(c, true);
                return;
            }
            conn_fail(c, "send", errno);
            return;
        }
        size_t left = (size_t)n;
        while (left && left >= c->iov[c->iov_at].iov_len)
            left -= c->iov[c->iov_at++].iov_len;
        if (left) {
            c->iov[c->iov_at].iov_base =
                (char *)c->iov[c->iov_at].iov_base + left;
            c->iov[c->iov_at].iov_len -= left;
        }
    }
    c->niov = c->iov_at = 0;
    c->olen = c->oseg = 0;
    if (c->want_out)
        conn_want_out(c, false);
}

/* Refill the free pipeline slots with new requests and send them. */
static void
conn_fill(struct conn *c)
{
    struct worker *w = c->w;
    uint32_t depth = (uint32_t)w->b->o.pipeline;
    if (c->dead || c->niov) /* a batch is still going out */
        return;
    unsigned n = worker_allowance(w, depth - c->count);
    if (!n)
        return;
    uint64_t now = clock_ns();
    uint32_t tail = c->head + c->count;
    for (unsigned i = 0; i < n; i++, tail++) {
        enum op op = next_op(w);
        uint64_t key = next_key(w);
        req_format(c, op, key, op == OP_SET ? next_vlen(w) : 0);
        c->slots[tail % depth] = (struct slot){
            .sent_ns = now,
            .op = (uint8_t)op,
            .counted = w->measuring,
        };
    }
    c->count += n;
    w->inflight += n;
    out_close_segment(c);
    conn_flush(c);
}

/* The reply to the oldest request is complete. */
static void
conn_complete(struct conn *c, enum result res, uint64_t now)
{
    struct worker *w = c->w;
    struct slot *s = &c->slots[c->head];
    if (++c->head == w->b->o.pipeline)
        c->head = 0;
    c->count--;
    w->inflight--;
    if (!s->counted)
        return;
    struct stats *st = &w->st;
    st->ops++;
    if (s->op == OP_GET)
        st->gets++;
    else
        st->sets++;
    if (res == R_HIT)
        st->hits++;
    else if (res == R_MISS)
        st->misses++;
    else if (res == R_ERROR)
        st->errors++;
    hist_record(st, now - s->sent_ns);
}

static void
conn_fail(struct conn *c, const char *what, int err)
{
    struct worker *w = c->w;
    if (c->dead)
        return;
    if (!w->stopping)
        fprintf(stderr, "mcdb-bench: connection %u: %s%s%s\n", c->id, what,
                err ? ": " : "", err ? strerror(err) : "");
    c->dead = true;
    close(c->fd);
    c->fd = -1;
    /* its requests in flight count as errors, so the totals still add up */
    uint64_t now = clock_ns();
    while (c->count)
        conn_complete(c, R_ERROR, now);
    c->niov = c->iov_at = 0;
    w->nlive--;
    w->lost++;
}

static bool
line_is(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(s, lit, l) == 0;
}

static bool
line_starts(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && memcmp(s, lit, l) == 0;
}

/* The line's first word is `word`: the whole line, or followed by a space. */
static bool
word_is(const char *s, size_t n, const char *word)
{
    size_t l = strlen(word);
    return line_starts(s, n, word) && (n == l || s[l] == ' ');
}

/* Decimal number in s[0, n); -1 if it is not one. */
static int64_t
parse_len(const char *s, size_t n)
{
    if (n == 0 || n > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/*
 * s[0, n) in quotes, printable, in dst[cap] (cap >= 8): other bytes as
 * \xNN, and "..." where it had to be cut.
 */
static void
quote_bytes(char *dst, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    dst[o++] = '\'';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        bool plain = ch >= ' ' && ch < 0x7f && ch != '\'' && ch != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + 5 > cap) { /* room left for "...'" and the NUL */
            o = (size_t)(put(dst + o, "...", 3) - dst);
            break;
        }
        if (plain)
            dst[o++] = (char)ch;
        else
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", ch);
    }
    dst[o++] = '\'';
    dst[o] = '\0';
}

/*
 * An error reply to the oldest request: it completes as an error, and the
 * first counted one of the phase is kept with the command it answered.
 * Returns 1 (the reply is complete).
 */
static int
conn_error_reply(struct conn *c, const char *s, size_t n, enum op op)
{
    struct stats *st = &c->w->st;
    c->res = R_ERROR;
    if (c->slots[c->head].counted && !st->first_error[0]) {
        char q[ERR_TEXT_MAX - 32];
        quote_bytes(q, sizeof(q), s, n);
        snprintf(st->first_error, sizeof(st->first_error), "%s to %s", q,
                 op_names[c->w->b->p.proto][op]);
    }
    return 1;
}

/* The server's own refusals and errors, in either memcached protocol. */
static bool
mc_error_line(const char *s, size_t n)
{
    return line_starts(s, n, "ERROR") || line_starts(s, n, "CLIENT_ERROR") ||
           line_starts(s, n, "SERVER_ERROR");
}

/*
 * One header line of a memcached reply, in state RS_LINE or RS_END.
 * Returns 1 if the reply is complete (c->res says how), 0 if it goes on,
 * -1 if the line makes no sense here.
 */
static int
mc_line(struct conn *c, const char *s, size_t n, enum op op)
{
    if (c->rs == RS_END) {
        c->rs = RS_LINE;
        return line_is(s, n, "END") ? 1 : -1;
    }
    if (op == OP_GET && line_starts(s, n, "VALUE ")) {
        /* VALUE <key> <flags> <bytes> */
        const char *sp = memrchr(s, ' ', n);
        int64_t len = parse_len(sp + 1, (size_t)(s + n - sp - 1));
        if (len < 0)
            return -1;
        c->skip = (uint64_t)len;
        c->rs = RS_DATA;
        c->res = R_HIT;
        return 0;
    }
    if (op == OP_GET && line_is(s, n, "END")) {
        c->res = R_MISS;
        return 1;
    }
    if (op == OP_SET && line_is(s, n, "STORED")) {
        c->res = R_STORED;
        return 1;
    }
    if (mc_error_line(s, n) || line_is(s, n, "NOT_STORED") ||
        line_is(s, n, "EXISTS") || line_is(s, n, "NOT_FOUND"))
        return conn_error_reply(c, s, n, op);
    return -1;
}

/*
 * What a meta reply line says, for the request op. An mg with v is
 * answered "VA <bytes> <flags>*" and a data block on a hit, one without v
 * "HD <flags>*"; a miss is "EN". An ms is answered "HD" (NS, EX, NF: not
 * stored). *len gets VA's byte count.
 */
enum meta_reply { MR_VALUE, MR_HIT, MR_MISS, MR_STORED, MR_ERROR, MR_BAD };

static enum meta_reply
meta_reply(const struct plan *p, const char *s, size_t n, enum op op,
           uint64_t *len)
{
    if (op == OP_GET && p->mg_value && line_starts(s, n, "VA ")) {
        const char *num = s + 3, *sp = memchr(num, ' ', n - 3);
        int64_t v = parse_len(num, (size_t)((sp ? sp : s + n) - num));
        if (v < 0)
            return MR_BAD;
        *len = (uint64_t)v;
        return MR_VALUE;
    }
    if (op == OP_GET && line_is(s, n, "EN"))
        return MR_MISS;
    if (word_is(s, n, "HD") && (op == OP_SET || !p->mg_value))
        return op == OP_SET ? MR_STORED : MR_HIT;
    if (mc_error_line(s, n) || word_is(s, n, "NS") || word_is(s, n, "EX") ||
        word_is(s, n, "NF"))
        return MR_ERROR;
    return MR_BAD;
}

/* The same as mc_line() for a meta reply, in state RS_LINE. */
static int
meta_line(struct conn *c, const char *s, size_t n, enum op op)
{
    switch (meta_reply(&c->w->b->p, s, n, op, &c->skip)) {
    case MR_VALUE:
        c->rs = RS_DATA;
        c->res = R_HIT;
        return 0;
    case MR_HIT:
        c->res = R_HIT;
        return 1;
    case MR_MISS:
        c->res = R_MISS;
        return 1;
    case MR_STORED:
        c->res = R_STORED;
        return 1;
    case MR_ERROR:
        return conn_error_reply(c, s, n, op);
    case MR_BAD:
        break;
    }
    return -1;
}

/* The same for a RESP reply, in state RS_LINE. */
static int
redis_line(struct conn *c, const char *s, size_t n, enum op op)
{
    if (n && s[0] == '-')
        return conn_error_reply(c, s, n, op);
    if (op == OP_SET) {
        c->res = R_STORED;
        return line_is(s, n, "+OK") ? 1 : -1;
    }
    if (line_is(s, n, "$-1")) {
        c->res = R_MISS;
        return 1;
    }
    int64_t len = n && s[0] == '$' ? parse_len(s + 1, n - 1) : -1;
    if (len < 0)
        return -1;
    c->skip = (uint64_t)len;
    c->rs = RS_DATA;
    c->res = R_HIT;
    return 0;
}

/* A reply that makes no sense: close the connection, quoting its bytes. */
static void
conn_bad_reply(struct conn *c, const char *why, const char *s, size_t n)
{
    char q[120], what[256];
    quote_bytes(q, sizeof(q), s, n);
    snprintf(what, sizeof(what), "protocol error: %s: %s", why, q);
    conn_fail(c, what, 0);
}

/* Keep only what is not parsed yet (a partial line or header), at the
 * front of the input buffer. */
static void
conn_ibuf_compact(struct conn *c)
{
    if (c->ibeg == c->iend) {
        c->ibeg = c->iend = 0;
    } else if (c->ibeg) {
        memmove(c->ibuf, c->ibuf + c->ibeg, c->iend - c->ibeg);
        c->iend -= c->ibeg;
        c->ibeg = 0;
    }
}

/* memcached's name of a binary status, for error reports. */
static const char *
bin_status_name(unsigned status)
{
    switch (status) {
    case 0x01:
        return "Key not found";
    case 0x02:
        return "Key exists";
    case 0x03:
        return "Value too large";
    case 0x04:
        return "Invalid arguments";
    case 0x05:
        return "Item not stored";
    case 0x06:
        return "Incr/Decr on non-numeric value";
    case 0x20:
        return "Authentication error";
    case 0x81:
        return "Unknown command";
    case 0x82:
        return "Out of memory";
    case 0x83:
        return "Not supported";
    case 0x84:
        return "Internal error";
    case 0x85:
        return "Busy";
    case 0x86:
        return "Temporary failure";
    default:
        return "unknown status";
    }
}

/*
 * One binary reply header (BIN_HEADER bytes at h) for the request at the
 * head: 0 with its body to skip in c->skip and c->res set, or -1 if it
 * answers no such request (the connection has been failed).
 */
static int
bin_reply(struct conn *c, const unsigned char *h)
{
    enum op op = c->slots[c->head].op;
    uint8_t want = op == OP_GET ? BIN_GET : BIN_SET;
    unsigned status = (unsigned)h[6] << 8 | h[7];
    uint32_t opaque = get_be32(h + 12);
    char why[96];
    if (h[0] != BIN_RESPONSE || h[1] != want || opaque != c->bin_read) {
        snprintf(why, sizeof(why),
                 "not the binary reply to %s #%" PRIu32
                 " (magic 0x%02x, opcode 0x%02x, opaque %" PRIu32 ")",
                 op_names[PROTO_BINARY][op], c->bin_read, h[0], h[1], opaque);
        conn_bad_reply(c, why, (const char *)h, BIN_HEADER);
        return -1;
    }
    c->bin_read++;
    c->skip = get_be32(h + 8);
    if (status == 0) {
        c->res = op == OP_GET ? R_HIT : R_STORED;
    } else if (status == BIN_KEY_NOT_FOUND && op == OP_GET) {
        c->res = R_MISS;
    } else {
        snprintf(why, sizeof(why), "status 0x%04x (%s)", status,
                 bin_status_name(status));
        conn_error_reply(c, why, strlen(why), op);
    }
    return 0;
}

/* Consume what has arrived of the c->skip bytes of a value being
 * discarded; true once all of them are gone. */
static bool
conn_skip(struct conn *c)
{
    uint64_t avail = c->iend - c->ibeg;
    uint64_t take = avail < c->skip ? avail : c->skip;
    c->ibeg += (uint32_t)take;
    c->skip -= take;
    return c->skip == 0;
}

/* conn_parse() for the binary protocol: a header, then its body skipped. */
static int
conn_parse_binary(struct conn *c, uint64_t now)
{
    for (;;) {
        if (c->rs == RS_DATA) {
            if (!conn_skip(c))
                break;
            c->rs = RS_LINE;
            conn_complete(c, c->res, now);
        }
        size_t avail = c->iend - c->ibeg;
        if (avail && !c->count) {
            conn_bad_reply(c, "bytes after the replies to every request",
                           c->ibuf + c->ibeg, avail);
            return -1;
        }
        if (avail < BIN_HEADER)
            break;
        if (bin_reply(c, (const unsigned char *)c->ibuf + c->ibeg) != 0)
            return -1;
        c->ibeg += BIN_HEADER;
        c->rs = RS_DATA;
    }
    conn_ibuf_compact(c);
    return 0;
}

/*
 * Parse every complete reply in the input; -1 on a protocol error (the
 * connection has been failed, and why reported).
 */
static int
conn_parse(struct conn *c, uint64_t now)
{
    enum proto proto = c->w->b->p.proto;
    if (proto == PROTO_BINARY)
        return conn_parse_binary(c, now);
    for (;;) {
        if (c->rs == RS_DATA) {
            if (!conn_skip(c))
                break;
            c->rs = RS_DATA_END;
        }
        if (c->ibeg == c->iend)
            break;
        char *s = c->ibuf + c->ibeg;
        size_t avail = c->iend - c->ibeg;
        if (!c->count) {
            conn_bad_reply(c, "bytes after the replies to every request", s,
                           avail);
            return -1;
        }
        char *nl = memchr(s, '\n', avail);
        if (!nl)
            break;
        size_t n = (size_t)(nl - s);
        if (nl == s || nl[-1] != '\r') {
            conn_bad_reply(c, "a line that does not end in \\r\\n", s, n);
            return -1;
        }
        n--;
        c->ibeg = (uint32_t)(nl + 1 - c->ibuf);
        enum op op = c->slots[c->head].op;
        int r;
        if (c->rs == RS_DATA_END) {
            /* the "\r\n" after a value's bytes */
            if (n) {
                conn_bad_reply(c, "no \\r\\n after the value's bytes", s, n);
                return -1;
            }
            c->rs = proto == PROTO_MEMCACHE ? RS_END : RS_LINE;
            r = proto != PROTO_MEMCACHE;
        } else {
            r = proto == PROTO_MEMCACHE ? mc_line(c, s, n, op)
                : proto == PROTO_META   ? meta_line(c, s, n, op)
                                        : redis_line(c, s, n, op);
        }
        if (r < 0) {
            char why[64];
            snprintf(why, sizeof(why), "unexpected reply to %s",
                     op_names[proto][op]);
            conn_bad_reply(c, why, s, n);
            return -1;
        }
        if (r)
            conn_complete(c, c->res, now);
    }
    conn_ibuf_compact(c);
    return 0;
}

static void
conn_read(struct conn *c)
{
    for (;;) {
        size_t room = IBUF_SIZE - c->iend;
        if (!room) {
            conn_fail(c, "protocol error: reply line longer than the buffer",
                      0);
            return;
        }
        ssize_t n = recv(c->fd, c->ibuf + c->iend, room, MSG_DONTWAIT);
        if (n == 0) {
            conn_fail(c, "the server closed the connection", 0);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                conn_fail(c, "recv", errno);
            break;
        }
        c->iend += (uint32_t)n;
        if (conn_parse(c, clock_ns()) != 0)
            return;
        if ((size_t)n < room) /* the socket is drained */
            break;
    }
    conn_fill(c);
}

static void
conn_event(struct conn *c, uint32_t events)
{
    if (c->dead)
        return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_read(c);
    if (!c->dead && (events & EPOLLOUT) && c->niov) {
        conn_flush(c);
        if (!c->niov)
            conn_fill(c);
    }
}

/*
 * Before a meta run, on the first connection (still blocking): one mg of
 * key 0 with the run's flags must be answered VA (its data is read and
 * dropped), HD or EN. A server without meta answers ERROR, and to an ms
 * twice (the command, then its data taken for a command), so a run would
 * be errors out of step with their requests: stop here and say why.
 */
static void
meta_probe(const struct bench *b, int fd)
{
    const char *srv = b->o.server;
    char req[REQ_HEADER_MAX], buf[4096], q[128];
    int len = snprintf(req, sizeof(req), "mg %s0%s\r\n", b->o.key_prefix,
                       b->p.mg_flags);
    struct timeval tv = {.tv_sec = PROBE_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (send(fd, req, (size_t)len, MSG_NOSIGNAL) != len)
        die("%s: sending the meta probe: %s", srv, strerror(errno));
    size_t have = 0;
    char *nl;
    while (!(nl = memchr(buf, '\n', have)) && have < sizeof(buf)) {
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("%s: no reply to the meta probe '%.*s' (%s)", srv, len - 2, req,
                n ? strerror(errno) : "connection closed");
        have += (size_t)n;
    }
    /* the line without its \r\n (a line without them is no reply) */
    bool whole = nl && nl > buf && nl[-1] == '\r';
    size_t n = whole ? (size_t)(nl - 1 - buf) : nl ? (size_t)(nl - buf) : have;
    uint64_t vlen = 0;
    enum meta_reply r =
        whole ? meta_reply(&b->p, buf, n, OP_GET, &vlen) : MR_BAD;
    if (r != MR_VALUE && r != MR_HIT && r != MR_MISS) {
        quote_bytes(q, sizeof(q), buf, n);
        if (whole && word_is(buf, n, "ERROR"))
            die("%s does not speak memcached's meta protocol: it answered "
                "%s to '%.*s' (an unknown command); use --protocol memcache",
                srv, q, len - 2, req);
        die("%s: the meta probe '%.*s' was answered %s, not %s or EN%s", srv,
            len - 2, req, q, b->p.mg_value ? "VA" : "HD",
            r == MR_ERROR ? " (are all of --meta-flags supported?)" : "");
    }
    /* the rest of a VA's data block and its \r\n */
    uint64_t left = r == MR_VALUE ? vlen + 2 : 0, got = have - n - 2;
    left = got < left ? left - got : 0;
    while (left) {
        ssize_t k = recv(fd, buf, left < sizeof(buf) ? left : sizeof(buf), 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            die("%s: the meta probe's value was cut short (%s)", srv,
                k ? strerror(errno) : "connection closed");
        left -= (uint64_t)k;
    }
}

/*
 * Before a binary run, on the first connection (still blocking): a VERSION
 * must be answered by a binary reply with status 0. A server without the
 * binary protocol answers text (ERROR) or waits for a line end that never
 * comes: stop here and say why, not after a run of nothing.
 */
static void
binary_probe(const struct bench *b, int fd)
{
    const char *srv = b->o.server;
    char req[BIN_HEADER], q[128];
    unsigned char h[BIN_HEADER];
    bin_header(req, BIN_VERSION, 0, 0, 0, 0);
    struct timeval tv = {.tv_sec = PROBE_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (send(fd, req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req))
        die("%s: sending the binary VERSION probe: %s", srv, strerror(errno));
    size_t have = 0;
    while (have < sizeof(h)) {
        ssize_t n = recv(fd, h + have, sizeof(h) - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 && !have)
            die("%s: no reply to a binary VERSION within %d s (%s): does "
                "it speak memcached's binary protocol? (memcached -B ascii "
                "does not)",
                srv, PROBE_TIMEOUT_S,
                n ? strerror(errno) : "connection closed");
        if (n <= 0 || h[0] != BIN_RESPONSE) {
            quote_bytes(q, sizeof(q), (const char *)h, have + (n > 0 ? n : 0));
            die("%s does not speak memcached's binary protocol: it answered "
                "%s to a binary VERSION",
                srv, q);
        }
        have += (size_t)n;
    }
    unsigned status = (unsigned)h[6] << 8 | h[7];
    if (h[1] != BIN_VERSION || status != 0)
        die("%s: a binary VERSION was answered opcode 0x%02x, status 0x%04x "
            "(%s)",
            srv, h[1], status, bin_status_name(status));
    for (uint32_t left = get_be32(h + 8); left;) { /* the version text */
        char buf[256];
        ssize_t n = recv(fd, buf, left < sizeof(buf) ? left : sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("%s: the binary VERSION reply was cut short", srv);
        left -= (uint32_t)n;
    }
}

static void
conn_open(struct conn *c, struct worker *w, unsigned id)
{
    const struct bench *b = w->b;
    size_t depth = b->o.pipeline;
    size_t inline_max = b->p.vmax < VALUE_INLINE ? b->p.vmax : VALUE_INLINE;

    *c = (struct conn){.id = id, .w = w};
    c->slots = calloc(depth, sizeof(*c->slots));
    c->ibuf = malloc(IBUF_SIZE);
    c->obuf = malloc(depth * (REQ_HEADER_MAX + inline_max));
    c->iov = calloc(2 * depth + 1, sizeof(*c->iov));
    if (!c->slots || !c->ibuf || !c->obuf || !c->iov)
        die("out of memory for %zu-deep pipelines", depth);

    c->fd = socket(b->p.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s", strerror(errno));
    if (connect(c->fd, (const struct sockaddr *)&b->p.addr, b->p.addrlen) != 0)
        die("cannot connect to %s: %s", b->o.server, strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (id == 0 && b->p.proto == PROTO_META)
        meta_probe(b, c->fd);
    if (id == 0 && b->p.proto == PROTO_BINARY)
        binary_probe(b, c->fd);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void
conn_free(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->slots);
    free(c->ibuf);
    free(c->obuf);
    free(c->iov);
}

/* ---- workers ---- */

static void
worker_sync(struct worker *w)
{
    w->measuring = atomic_load_explicit(&w->b->measuring, memory_order_acquire);
    w->stopping = atomic_load_explicit(&w->b->stop, memory_order_acquire) ||
                  atomic_load_explicit(&interrupted, memory_order_relaxed);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event ev[EVENTS_MAX];

    worker_sync(w);
    for (unsigned i = 0; i < w->nconns; i++)
        conn_fill(&w->conns[i]);
    while (w->nlive) {
        worker_sync(w);
        if (w->stopping || (!w->inflight && !worker_may_issue(w)))
            break;
        int n = epoll_wait(w->epfd, ev, EVENTS_MAX, 100);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            conn_event(ev[i].data.ptr, ev[i].events);
    }
    w->end_ns = clock_ns();
    atomic_fetch_add(&w->b->done, 1);
    return NULL;
}

/* Sleep until `deadline`, or until stopped, or until every worker is done. */
static void
sleep_until(struct bench *b, uint64_t deadline)
{
    for (;;) {
        uint64_t now = clock_ns();
        if (now >= deadline || atomic_load(&b->stop) ||
            atomic_load(&interrupted) || atomic_load(&b->done) == b->nworkers)
            return;
        uint64_t d = deadline - now < 10000000u ? deadline - now : 10000000u;
        struct timespec ts = {0, (long)d};
        nanosleep(&ts, NULL);
    }
}

struct phase_result {
    struct stats st;
    double seconds;
    double cpu_seconds; /* this process's user + system time in the window */
    unsigned lost;
};

static double
cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/*
 * Run one phase on every worker: the preload (each thread sets its slice of
 * the keys, all of it measured), or the load run (warm-up, then measured
 * until --duration passes or --requests are done).
 */
static void
run_phase(struct bench *b, bool preload, struct phase_result *r)
{
    const struct options *o = &b->o;
    bool warm = !preload && o->warmup > 0;

    atomic_store(&b->measuring, !warm);
    atomic_store(&b->stop, atomic_load(&interrupted));
    atomic_store(&b->done, 0);
    for (unsigned i = 0; i < b->nworkers; i++) {
        struct worker *w = &b->workers[i];
        w->preloading = preload;
        w->next_key = o->keys * i / b->nworkers;
        w->end_key = o->keys * (i + 1) / b->nworkers;
        w->budget =
            o->requests * (i + 1) / b->nworkers - o->requests * i / b->nworkers;
        memset(&w->st, 0, sizeof(w->st));
    }
    uint64_t t0 = clock_ns(), t1 = 0;
    double cpu0 = cpu_seconds(), cpu1 = cpu0;
    for (unsigned i = 0; i < b->nworkers; i++)
        if (pthread_create(&b->workers[i].tid, NULL, worker_main,
                           &b->workers[i]) != 0)
            die("pthread_create failed");
    if (warm) {
        sleep_until(b, t0 + (uint64_t)(o->warmup * 1e9));
        t0 = clock_ns();
        cpu0 = cpu_seconds();
        atomic_store(&b->measuring, true);
    }
    if (!preload && !b->p.by_requests) {
        sleep_until(b, t0 + (uint64_t)(o->duration * 1e9));
        t1 = clock_ns();
        cpu1 = cpu_seconds();
        atomic_store(&b->stop, true);
    }
    memset(r, 0, sizeof(*r));
    for (unsigned i = 0; i < b->nworkers; i++) {
        struct worker *w = &b->workers[i];
        pthread_join(w->tid, NULL);
        stats_add(&r->st, &w->st);
        r->lost += w->lost;
        if (preload || b->p.by_requests)
            t1 = w->end_ns > t1 ? w->end_ns : t1;
    }
    if (preload || b->p.by_requests)
        cpu1 = cpu_seconds(); /* the threads' last moments are idle */
    r->seconds = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0;
    r->cpu_seconds = cpu1 > cpu0 ? cpu1 - cpu0 : 0;
}

/* ---- option parsing and checking ---- */

static void
opt_parse_STR(enum opt_id id, const char *arg, const char **out)
{
    (void)id;
    *out = arg;
}

static void
opt_parse_UINT(enum opt_id id, const char *arg, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || end == arg || *end || arg[0] == '-')
        usage_error("--%s: expected a whole number, got '%s'", opt_names[id],
                    arg);
    *out = v;
}

static void
opt_parse_SECS(enum opt_id id, const char *arg, double *out)
{
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end || !(v >= 0) || v > 1e7)
        usage_error("--%s: expected seconds, got '%s'", opt_names[id], arg);
    *out = v;
}

static void
opt_parse_FLAG(enum opt_id id, const char *arg, bool *out)
{
    (void)id;
    *out = !arg || strcmp(arg, "0") != 0;
}

static void
opt_set(struct options *o, enum opt_id id, const char *arg)
{
    switch (id) {
#define X(name, type, def, meta, help)                                         \
    case OPT_##name:                                                           \
        opt_parse_##type(id, arg, &o->name);                                   \
        break;
        BENCH_OPTIONS(X)
#undef X
    default:
        break;
    }
}

static void
long_name(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s", name);
    for (char *p = buf; *p; p++)
        if (*p == '_')
            *p = '-';
}

/* Print text wrapped at 78 columns, each line indented by 8. */
static void
print_wrapped(const char *text)
{
    const char *p = text;
    while (*p) {
        size_t n = strlen(p);
        if (n > 70) {
            n = 70;
            while (n && p[n] != ' ')
                n--;
            if (!n)
                n = 70;
        }
        printf("        %.*s\n", (int)n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
}

static void
print_help(void)
{
    printf("usage: mcdb-bench [options]\n"
           "Load a server speaking memcached's text, meta or binary "
           "protocol, or Redis's,\non loopback with gets and sets; report "
           "ops/s, hits, "
           "misses, errors and latency\npercentiles.\n\n");
    char name[64], text[512];
#define X(n, type, def, meta, help)                                            \
    long_name(name, sizeof(name), #n);                                         \
    printf("  --%s%s%s\n", name, *meta ? " " : "", meta);                      \
    snprintf(text, sizeof(text), "%s%s%s%s", help,                             \
             OPT_HASARG_##type == no_argument ? "" : " (default: ",            \
             OPT_HASARG_##type == no_argument ? "" : def,                      \
             OPT_HASARG_##type == no_argument ? "" : ")");                     \
    print_wrapped(text);
    BENCH_OPTIONS(X)
#undef X
    printf("  --help\n");
    print_wrapped("print this and exit");
    printf("\nOutput: a report, or with --json one object: ops, ops_per_sec, "
           "duration_s,\nsets, gets, hits, misses, errors, latency_us {p50, "
           "p90, p99, p999, max},\nclient_cpu_s, client_cpu_us_per_op, config "
           "{every option}, first_error (the\nfirst error reply counted, "
           "quoted, with the command it answered, or null)\nand, after a "
           "preload, preload {keys, errors, seconds, sets_per_sec}.\n"
           "Error replies (ERROR, CLIENT_ERROR, SERVER_ERROR, NOT_STORED, NS, "
           "-ERR, a binary\nstatus other than success and Key not found ...) "
           "are counted, and the first\nis also printed on stderr; any other "
           "unexpected reply closes its connection,\nquoted on stderr.\n"
           "Exit status: 0 done, 1 a run-time failure (connection refused or "
           "lost, or\n--protocol meta or binary against a server that does "
           "not speak it), 2 bad\noptions, 130 interrupted.\n");
}

static void
parse_options(struct options *o, int argc, char **argv)
{
    static char names[OPT_COUNT][64];
    struct option lopts[OPT_COUNT + 2];
    unsigned n = 0;
#define X(name, type, def, meta, help)                                         \
    long_name(names[OPT_##name], sizeof(names[0]), #name);                     \
    lopts[n++] = (struct option){names[OPT_##name], OPT_HASARG_##type, NULL,   \
                                 OPT_##name};                                  \
    opt_set(o, OPT_##name, OPT_HASARG_##type == no_argument ? "0" : def);
    BENCH_OPTIONS(X)
#undef X
    lopts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    lopts[n] = (struct option){0};

    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        if (c == OPT_HELP) {
            print_help();
            exit(0);
        }
        if (c < 0 || c >= OPT_COUNT)
            usage_error("unknown option or missing value: %s",
                        argv[optind - 1]);
        opt_set(o, (enum opt_id)c, optarg);
        o->given[c] = true;
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
}

/* HOST:PORT with a numeric loopback HOST ([::1] for IPv6) or localhost. */
static void
plan_server(struct plan *p, const char *arg)
{
    char host[256];
    const char *colon;
    if (arg[0] == '[') {
        const char *rb = strchr(arg, ']');
        if (!rb || rb[1] != ':')
            usage_error("--server: expected [IPV6]:PORT, got '%s'", arg);
        snprintf(host, sizeof(host), "%.*s", (int)(rb - arg - 1), arg + 1);
        colon = rb + 1;
    } else {
        colon = strrchr(arg, ':');
        if (!colon)
            usage_error("--server: expected HOST:PORT, got '%s'", arg);
        snprintf(host, sizeof(host), "%.*s", (int)(colon - arg), arg);
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 1 || port > 65535)
        usage_error("--server: bad port in '%s'", arg);

    struct sockaddr_in *a4 = (struct sockaddr_in *)&p->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&p->addr;
    memset(&p->addr, 0, sizeof(p->addr));
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
            usage_error("--server %s: refused, not a loopback address; "
                        "mcdb-bench only sends to 127.0.0.0/8, ::1 or "
                        "localhost (only local traffic is allowed here)",
                        arg);
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        p->addrlen = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
            usage_error("--server %s: refused, not a loopback address; "
                        "mcdb-bench only sends to 127.0.0.0/8, ::1 or "
                        "localhost (only local traffic is allowed here)",
                        arg);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        p->addrlen = sizeof(*a6);
    } else {
        usage_error("--server %s: refused, '%s' is not a loopback address; "
                    "give 127.0.0.1, [::1] or localhost (no name lookups: "
                    "only local traffic is allowed here)",
                    arg, host);
    }
}

static void
plan_key_dist(struct plan *p, const char *arg)
{
    if (strcmp(arg, "uniform") == 0)
        return;
    if (strncmp(arg, "zipf", 4) != 0 || (arg[4] && arg[4] != ':'))
        usage_error("--key-dist: expected uniform or zipf[:THETA], got '%s'",
                    arg);
    p->zipf = true;
    p->theta = 0.99;
    if (arg[4]) {
        char *end;
        p->theta = strtod(arg + 5, &end);
        if (end == arg + 5 || *end || !(p->theta > 0) || p->theta > 10)
            usage_error("--key-dist: THETA must be in (0, 10], got '%s'",
                        arg + 5);
    }
}

static void
plan_value_size(struct plan *p, const char *arg)
{
    char *end;
    errno = 0;
    unsigned long long lo = strtoull(arg, &end, 10), hi = lo;
    if (!errno && end != arg && *end == '-') {
        const char *h = end + 1;
        hi = strtoull(h, &end, 10);
        if (end == h)
            errno = EINVAL;
    }
    if (errno || end == arg || *end || arg[0] == '-' || lo > hi ||
        hi > MAX_VALUE)
        usage_error("--value-size: expected N or MIN-MAX, at most %u, "
                    "got '%s'",
                    MAX_VALUE, arg);
    p->vmin = lo;
    p->vmax = hi;
}

static void
plan_ratio(struct plan *p, const char *arg)
{
    unsigned s, g;
    int used = 0;
    if (sscanf(arg, "%u:%u%n", &s, &g, &used) != 2 || arg[used] || s + g == 0 ||
        s > 1000000 || g > 1000000 || arg[0] == '-')
        usage_error("--ratio: expected SET:GET such as 1:10, got '%s'", arg);
    p->ratio_set = s;
    p->ratio_get = g;
}

/*
 * --meta-flags: the flags of every mg, into p->mg_flags as " v f". Only
 * flags that ask for something back (or, u, leave the LRU alone) and take
 * no token: the load must not change the items it reads, and every request
 * must get a reply, in order.
 */
static void
plan_meta_flags(struct plan *p, const char *arg)
{
    char *out = p->mg_flags;
    for (const char *s = arg; *s;) {
        size_t n = strcspn(s, " ");
        if (n == 0) {
            s++;
            continue;
        }
        char f = *s;
        if (f == 'q')
            usage_error("--meta-flags: q is not allowed: it leaves a miss "
                        "unanswered, and mcdb-bench pairs every reply with "
                        "its request");
        if (f == 'b')
            usage_error("--meta-flags: b is not allowed: mcdb-bench's keys "
                        "are not base64");
        if (strchr("EINORT", f))
            usage_error("--meta-flags: '%.*s' is not allowed: only flags "
                        "that return something and take no token (c f h k "
                        "l s t u v)",
                        (int)n, s);
        if (n != 1 || !strchr("cfhklstuv", f))
            usage_error("--meta-flags: '%.*s' is not an mg flag mcdb-bench "
                        "knows; give single letters from c f h k l s t u v "
                        "separated by spaces, e.g. \"v f c t\"",
                        (int)n, s);
        if (memchr(p->mg_flags, f, (size_t)(out - p->mg_flags)))
            usage_error("--meta-flags: '%c' is given twice", f);
        *out++ = ' ';
        *out++ = f;
        p->mg_value |= f == 'v';
        s++;
    }
    *out = '\0';
    p->mg_flags_len = (size_t)(out - p->mg_flags);
}

static void
plan_check(struct options *o, struct plan *p)
{
    plan_server(p, o->server);
    if (strcmp(o->protocol, "memcache") == 0)
        p->proto = PROTO_MEMCACHE;
    else if (strcmp(o->protocol, "meta") == 0)
        p->proto = PROTO_META;
    else if (strcmp(o->protocol, "binary") == 0)
        p->proto = PROTO_BINARY;
    else if (strcmp(o->protocol, "redis") == 0)
        p->proto = PROTO_REDIS;
    else
        usage_error("--protocol: expected memcache, meta, binary or redis, "
                    "got '%s'",
                    o->protocol);
    if (o->given[OPT_meta_flags] && p->proto != PROTO_META)
        usage_error("--meta-flags is for --protocol meta");
    plan_meta_flags(p, o->meta_flags);
    if (o->threads < 1 || o->threads > MAX_THREADS)
        usage_error("--threads: 1 to %d", MAX_THREADS);
    if (o->connections < o->threads || o->connections > MAX_CONNECTIONS)
        usage_error("--connections: at least --threads (%" PRIu64
                    "), at most %d",
                    o->threads, MAX_CONNECTIONS);
    if (o->pipeline < 1 || o->pipeline > MAX_PIPELINE)
        usage_error("--pipeline: 1 to %d", MAX_PIPELINE);
    if (o->keys < 1 || o->keys > (UINT64_C(1) << 48))
        usage_error("--keys: 1 to 2^48");
    p->prefix_len = strlen(o->key_prefix);
    if (p->prefix_len > MAX_PREFIX)
        usage_error("--key-prefix: at most %d bytes", MAX_PREFIX);
    for (const char *s = o->key_prefix; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            usage_error("--key-prefix: no spaces or control characters");
    plan_key_dist(p, o->key_dist);
    plan_value_size(p, o->value_size);
    plan_ratio(p, o->ratio);
    if (o->given[OPT_duration] && o->given[OPT_requests])
        usage_error("give --duration or --requests, not both");
    if (o->given[OPT_requests] && o->requests == 0)
        usage_error("--requests: at least 1");
    p->by_requests = o->given[OPT_requests];
    p->run = !o->preload || o->given[OPT_duration] || o->given[OPT_requests];
    if (p->run && !p->by_requests && !(o->duration > 0))
        usage_error("--duration: must be more than 0");
}

/* ---- set-up ---- */

static void
raise_fd_limit(uint64_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return;
    rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void
bench_setup(struct bench *b)
{
    const struct options *o = &b->o;
    b->value = malloc(b->p.vmax ? b->p.vmax : 1);
    if (!b->value)
        die("out of memory for %" PRIu64 "-byte values", b->p.vmax);
    for (uint64_t i = 0; i < b->p.vmax; i++)
        b->value[i] = (char)('a' + i % 26);

    raise_fd_limit(o->connections + o->threads + 64);
    b->nworkers = (unsigned)o->threads;
    b->workers = calloc(b->nworkers, sizeof(*b->workers));
    if (!b->workers)
        die("out of memory");
    unsigned id = 0;
    for (unsigned i = 0; i < b->nworkers; i++) {
        struct worker *w = &b->workers[i];
        w->b = b;
        w->id = i;
        w->rng = o->seed ^ (UINT64_C(0x5851f42d4c957f2d) * (i + 1));
        if (b->p.zipf)
            zipf_init(&w->zipf, o->keys, b->p.theta);
        w->nconns = (unsigned)(o->connections / o->threads +
                               (i < o->connections % o->threads));
        w->nlive = w->nconns;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->conns = calloc(w->nconns, sizeof(*w->conns));
        if (w->epfd < 0 || !w->conns)
            die("epoll_create1 or out of memory: %s", strerror(errno));
        for (unsigned j = 0; j < w->nconns; j++)
            conn_open(&w->conns[j], w, id++);
    }
}

static void
bench_teardown(struct bench *b)
{
    for (unsigned i = 0; i < b->nworkers; i++) {
        struct worker *w = &b->workers[i];
        for (unsigned j = 0; j < w->nconns; j++)
            conn_free(&w->conns[j]);
        free(w->conns);
        close(w->epfd);
    }
    free(b->workers);
    free(b->value);
}

/* ---- reports ---- */

static void
json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void
opt_json_STR(FILE *f, const char *v)
{
    json_string(f, v);
}

static void
opt_json_UINT(FILE *f, uint64_t v)
{
    fprintf(f, "%" PRIu64, v);
}

static void
opt_json_SECS(FILE *f, double v)
{
    fprintf(f, "%g", v);
}

static void
opt_json_FLAG(FILE *f, bool v)
{
    fputs(v ? "true" : "false", f);
}

static double
per_sec(uint64_t n, double seconds)
{
    return seconds > 0 ? (double)n / seconds : 0;
}

static void
report_json(const struct bench *b, const struct phase_result *run,
            const struct phase_result *pre)
{
    const struct stats *st = &run->st;
    printf("{\"ops\":%" PRIu64 ",\"ops_per_sec\":%.1f,\"duration_s\":%.3f,"
           "\"sets\":%" PRIu64 ",\"gets\":%" PRIu64 ",\"hits\":%" PRIu64
           ",\"misses\":%" PRIu64 ",\"errors\":%" PRIu64 ","
           "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
           "\"p999\":%.1f,\"max\":%.1f},\"client_cpu_s\":%.3f,"
           "\"client_cpu_us_per_op\":%.3f,\"config\":{",
           st->ops, per_sec(st->ops, run->seconds), run->seconds, st->sets,
           st->gets, st->hits, st->misses, st->errors,
           hist_quantile(st, 0.50) / 1e3, hist_quantile(st, 0.90) / 1e3,
           hist_quantile(st, 0.99) / 1e3, hist_quantile(st, 0.999) / 1e3,
           st->max_ns / 1e3, run->cpu_seconds,
           per_sec(st->ops, run->cpu_seconds) > 0
               ? 1e6 / per_sec(st->ops, run->cpu_seconds)
               : 0);
    const char *sep = "";
#define X(name, type, def, meta, help)                                         \
    printf("%s\"%s\":", sep, #name);                                           \
    opt_json_##type(stdout, b->o.name);                                        \
    sep = ",";
    BENCH_OPTIONS(X)
#undef X
    printf("},\"first_error\":");
    if (st->first_error[0])
        json_string(stdout, st->first_error);
    else
        printf("null");
    if (pre && run != pre)
        printf(",\"preload\":{\"keys\":%" PRIu64 ",\"errors\":%" PRIu64
               ",\"seconds\":%.3f,\"sets_per_sec\":%.1f}",
               pre->st.sets, pre->st.errors, pre->seconds,
               per_sec(pre->st.sets, pre->seconds));
    printf("}\n");
}

static void
report_text(const struct bench *b, const struct phase_result *run,
            const struct phase_result *pre)
{
    const struct options *o = &b->o;
    const struct stats *st = &run->st;
    printf("mcdb-bench: %s %s, %" PRIu64 " thread%s, %" PRIu64
           " connections, pipeline %" PRIu64 "\n",
           o->protocol, o->server, o->threads, o->threads == 1 ? "" : "s",
           o->connections, o->pipeline);
    printf("  keys %" PRIu64 " (%s, prefix \"%s\"), values %s bytes, "
           "set:get %s\n",
           o->keys, o->key_dist, o->key_prefix, o->value_size, o->ratio);
    if (pre)
        printf("preload   %" PRIu64 " keys in %.2f s (%.0f sets/s), %" PRIu64
               " errors\n",
               pre->st.sets, pre->seconds, per_sec(pre->st.sets, pre->seconds),
               pre->st.errors);
    if (run == pre)
        return;
    printf("ops       %" PRIu64 " in %.2f s: %.0f ops/s\n", st->ops,
           run->seconds, per_sec(st->ops, run->seconds));
    printf("sets      %" PRIu64 "\ngets      %" PRIu64 " (hits %" PRIu64
           ", misses %" PRIu64 ")\nerrors    %" PRIu64 "\n",
           st->sets, st->gets, st->hits, st->misses, st->errors);
    if (st->first_error[0])
        printf("          the first: %s\n", st->first_error);
    printf("latency   p50 %.1f us, p90 %.1f us, p99 %.1f us, p99.9 %.1f us, "
           "max %.1f us\n",
           hist_quantile(st, 0.50) / 1e3, hist_quantile(st, 0.90) / 1e3,
           hist_quantile(st, 0.99) / 1e3, hist_quantile(st, 0.999) / 1e3,
           st->max_ns / 1e3);
    printf("client    %.2f us CPU per op, %.0f%% of a core\n",
           st->ops ? run->cpu_seconds * 1e6 / (double)st->ops : 0,
           run->seconds > 0 ? 100 * run->cpu_seconds / run->seconds : 0);
}

static void
on_sigint(int sig)
{
    (void)sig;
    atomic_store(&interrupted, true);
}

int
main(int argc, char **argv)
{
    static struct bench b; /* big (histograms): not on the stack */
    static struct phase_result pre, run;

    parse_options(&b.o, argc, argv);
    plan_check(&b.o, &b.p);
    bench_setup(&b);

    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    unsigned lost = 0;
    if (b.o.preload) {
        run_phase(&b, true, &pre);
        lost += pre.lost;
    }
    if (b.p.run && !lost && !atomic_load(&interrupted)) {
        run_phase(&b, false, &run);
        lost += run.lost;
    }
    const struct phase_result *shown = b.p.run ? &run : &pre;
    if (b.o.json)
        report_json(&b, shown, b.o.preload ? &pre : NULL);
    else
        report_text(&b, shown, b.o.preload ? &pre : NULL);
    fflush(stdout);
    bench_teardown(&b);

    for (const struct phase_result *r = &pre; r; r = r == &pre ? &run : NULL)
        if (r->st.errors)
            fprintf(stderr,
                    "mcdb-bench: %s: %" PRIu64 " error repl%s; the first: "
                    "%s\n",
                    r == &pre ? "preload" : "run", r->st.errors,
                    r->st.errors == 1 ? "y" : "ies", r->st.first_error);
    if (lost)
        fprintf(stderr,
                "mcdb-bench: %u connection%s lost; the figures are "
                "not trustworthy\n",
                lost, lost == 1 ? "" : "s");
    if (atomic_load(&interrupted))
        return 130;
    return lost ? 1 : 0;
}
