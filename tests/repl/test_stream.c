/*
 * The replication stream (src/repl/stream.c): frames and their bodies
 * round trip, a frame decodes only when whole, malformed input is refused,
 * and rs_recv over a socket pair gets whole frames in order whatever the
 * pieces they arrive in, and stops on a timeout, EOF, garbage or a stop
 * flag.
 */
#include "log/logdir.h"
#include "repl/repl_int.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

TestSuite(stream, .timeout = 60);

static const uint8_t every_type[] = {
#define X(name, value, what) name,
    RS_TYPES(X)
#undef X
};
#define NTYPES sizeof(every_type)

static const uint8_t log_a[16] = "log-a-0123456789";

/* A frame as a sender puts it on the wire: header, then payload. */
static size_t
frame_bytes(char *out, uint8_t type, uint64_t off, const void *payload,
            uint32_t len)
{
    rs_header(out, type, len, off);
    if (len)
        memcpy(out + RS_HDR, payload, len);
    return RS_HDR + len;
}

/* A received frame carrying body, for the body decoders. */
static struct rs_frame
body_frame(uint8_t type, const char *body, size_t n)
{
    return (struct rs_frame){.type = type, .len = (uint32_t)n, .payload = body};
}

static void
fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + 37 * i);
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- frames ---- */

Test(stream, every_frame_type_round_trips_its_type_length_offset_and_payload)
{
    for (size_t i = 0; i < NTYPES; i++) {
        char payload[64], buf[RS_HDR + 64];
        uint32_t len = (uint32_t)(7 * i); /* the first one is empty */
        fill((uint8_t *)payload, len, (uint8_t)i);
        uint64_t off = 0x0123456789abcdefull + i;
        size_t n = frame_bytes(buf, every_type[i], off, payload, len);
        struct rs_frame f;
        cr_assert_eq(rs_decode(buf, n, &f), (long)n, "%s",
                     rs_type_name(every_type[i]));
        cr_assert_eq(f.type, every_type[i]);
        cr_assert_eq(f.len, len);
        cr_assert_eq(f.off, off);
        cr_assert_eq(f.payload, buf + RS_HDR);
        cr_assert(memcmp(f.payload, payload, len) == 0);
    }
}

Test(stream, the_header_is_laid_out_little_endian_as_the_format_says)
{
    /* a peer built from the format's description must read our frames */
    char hdr[RS_HDR];
    rs_header(hdr, RS_DATA, 0x04030201u, 0x0c0b0a0908070605ull);
    const uint8_t want[RS_HDR] = {RS_DATA, 0, 0, 0, 1, 2,  3,  4,
                                  5,       6, 7, 8, 9, 10, 11, 12};
    cr_assert(memcmp(hdr, want, RS_HDR) == 0);
}

Test(stream, a_frame_split_at_every_byte_decodes_only_when_whole)
{
    for (size_t i = 0; i < NTYPES; i++) {
        char payload[40], buf[RS_HDR + 40];
        fill((uint8_t *)payload, sizeof(payload), (uint8_t)i);
        size_t n =
            frame_bytes(buf, every_type[i], 99, payload, sizeof(payload));
        for (size_t k = 0; k < n; k++) {
            /* exactly k bytes, so that a read past them is caught */
            char *prefix = malloc(k ? k : 1);
            memcpy(prefix, buf, k);
            struct rs_frame f;
            cr_assert_eq(rs_decode(prefix, k, &f), 0, "%s: %zu of %zu bytes",
                         rs_type_name(every_type[i]), k, n);
            free(prefix);
        }
        struct rs_frame f;
        cr_assert_eq(rs_decode(buf, n, &f), (long)n);
    }
}

Test(stream, bytes_after_a_frame_are_left_for_the_next_decode)
{
    char buf[256];
    size_t a = frame_bytes(buf, RS_DATA, 1000, "first", 5);
    size_t b = frame_bytes(buf + a, RS_PING, 2000, NULL, 0);
    size_t c = frame_bytes(buf + a + b, RS_ACK, 3000, NULL, 0);
    /* the third frame only partly here */
    size_t n = a + b + c - 3;

    struct rs_frame f;
    cr_assert_eq(rs_decode(buf, n, &f), (long)a);
    cr_assert_eq(f.type, RS_DATA);
    cr_assert(memcmp(f.payload, "first", 5) == 0);
    cr_assert_eq(rs_decode(buf + a, n - a, &f), (long)b);
    cr_assert_eq(f.type, RS_PING);
    cr_assert_eq(f.off, 2000);
    cr_assert_eq(rs_decode(buf + a + b, n - a - b, &f), 0);
}

Test(stream, an_unknown_frame_type_is_refused)
{
    const uint8_t bad[] = {0, RS_ERROR + 1, 0x45 /* 'E' */, 255};
    for (size_t i = 0; i < sizeof(bad); i++) {
        char buf[RS_HDR + 4];
        size_t n = frame_bytes(buf, bad[i], 0, "abcd", 4);
        struct rs_frame f;
        cr_assert_eq(rs_decode(buf, n, &f), RS_E_TYPE, "type %u", bad[i]);
        cr_assert_eq(rs_decode(buf, RS_HDR, &f), RS_E_TYPE, "type %u", bad[i]);
    }
}

Test(stream, a_length_over_the_maximum_is_refused_before_the_payload_arrives)
{
    const uint32_t bad[] = {RS_MAX_PAYLOAD + 1, UINT32_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char hdr[RS_HDR];
        rs_header(hdr, RS_DATA, bad[i], 0);
        struct rs_frame f;
        cr_assert_eq(rs_decode(hdr, RS_HDR, &f), RS_E_LENGTH, "length %u",
                     bad[i]);
    }
    /* the largest allowed one is waited for */
    char hdr[RS_HDR];
    rs_header(hdr, RS_DATA, RS_MAX_PAYLOAD, 0);
    struct rs_frame f;
    cr_assert_eq(rs_decode(hdr, RS_HDR, &f), 0);
}

/* ---- bodies ---- */

static struct rs_hello
sample_hello(void)
{
    struct rs_hello h = {.version = 0x01020304, .auth = true};
    fill(h.nonce, RS_NONCE, 11);
    return h;
}

/* A history with two promotions at one offset (nothing written between
 * them), as logdir_meta_promote can make. */
static const struct logdir_epoch history[] = {
    {1, 0x1111111111111111ull, 0},
    {2, 0x2222222222222222ull, 4096},
    {3, 0x3333333333333333ull, 4096},
    {7, 0x7777777777777777ull, 1ull << 40},
};
#define NHISTORY (sizeof(history) / sizeof(history[0]))

static struct rs_ident
sample_ident(void)
{
    struct rs_ident m = {.version = 1,
                         .port = 11311,
                         .has_log = true,
                         .start = 1ull << 20,
                         .end = (1ull << 40) + 555,
                         .last_off = (1ull << 40) + 500,
                         .last_sum = 0xfeedfacecafebeefull,
                         .nepochs = NHISTORY};
    fill(m.nonce, RS_NONCE, 21);
    fill(m.mac, RS_MAC, 31);
    memcpy(m.log_id, log_a, 16);
    memcpy(m.epochs, history, sizeof(history));
    return m;
}

static struct rs_plan
sample_plan(uint8_t mode)
{
    struct rs_plan p = {.mode = mode,
                        .keep_old = true,
                        .fork = 4000,
                        .from = 4096,
                        .copy_end = 1ull << 41,
                        .nepochs = NHISTORY};
    fill(p.mac, RS_MAC, 41);
    memcpy(p.log_id, log_a, 16);
    memcpy(p.epochs, history, sizeof(history));
    snprintf(p.why, sizeof(p.why),
             "the histories part at offset 4000; "
             "the replica's 96 bytes after it move aside");
    return p;
}

Test(stream, hello_round_trips_every_field)
{
    for (int auth = 0; auth <= 1; auth++) {
        struct rs_hello h = sample_hello(), d;
        h.auth = auth;
        char body[RS_MAX_BODY];
        size_t n = rs_hello_encode(body, &h);
        cr_assert_leq(n, RS_MAX_BODY);
        memset(&d, 0xee, sizeof(d));
        struct rs_frame f = body_frame(RS_HELLO, body, n);
        cr_assert_eq(rs_hello_decode(&f, &d), 0);
        cr_assert_eq(d.version, h.version);
        cr_assert_eq(d.auth, h.auth);
        cr_assert(memcmp(d.nonce, h.nonce, RS_NONCE) == 0);
    }
}

static void
assert_ident_eq(const struct rs_ident *a, const struct rs_ident *b)
{
    cr_assert_eq(a->version, b->version);
    cr_assert(memcmp(a->nonce, b->nonce, RS_NONCE) == 0);
    cr_assert(memcmp(a->mac, b->mac, RS_MAC) == 0);
    cr_assert_eq(a->port, b->port);
    cr_assert_eq(a->has_log, b->has_log);
    cr_assert(memcmp(a->log_id, b->log_id, 16) == 0);
    cr_assert_eq(a->start, b->start);
    cr_assert_eq(a->end, b->end);
    cr_assert_eq(a->last_off, b->last_off);
    cr_assert_eq(a->last_sum, b->last_sum);
    cr_assert_eq(a->nepochs, b->nepochs);
    cr_assert(memcmp(a->epochs, b->epochs, a->nepochs * sizeof(a->epochs[0])) ==
              0);
}

Test(stream, ident_round_trips_every_field_and_the_history)
{
    static struct rs_ident m, d;
    m = sample_ident();
    char body[RS_MAX_BODY];
    size_t n = rs_ident_encode(body, &m);
    memset(&d, 0xee, sizeof(d));
    struct rs_frame f = body_frame(RS_IDENT, body, n);
    cr_assert_eq(rs_ident_decode(&f, &d), 0);
    assert_ident_eq(&d, &m);
}

Test(stream, ident_of_a_replica_without_a_log_round_trips)
{
    static struct rs_ident m, d;
    m = (struct rs_ident){.version = 1, .port = 1};
    fill(m.nonce, RS_NONCE, 5);
    char body[RS_MAX_BODY];
    size_t n = rs_ident_encode(body, &m);
    memset(&d, 0xee, sizeof(d));
    struct rs_frame f = body_frame(RS_IDENT, body, n);
    cr_assert_eq(rs_ident_decode(&f, &d), 0);
    assert_ident_eq(&d, &m);
    cr_assert_not(d.has_log);
}

static void
assert_plan_eq(const struct rs_plan *a, const struct rs_plan *b)
{
    cr_assert(memcmp(a->mac, b->mac, RS_MAC) == 0);
    cr_assert_eq(a->mode, b->mode);
    cr_assert_eq(a->keep_old, b->keep_old);
    cr_assert_eq(a->fork, b->fork);
    cr_assert_eq(a->from, b->from);
    cr_assert_eq(a->copy_end, b->copy_end);
    cr_assert(memcmp(a->log_id, b->log_id, 16) == 0);
    cr_assert_eq(a->nepochs, b->nepochs);
    cr_assert(memcmp(a->epochs, b->epochs, a->nepochs * sizeof(a->epochs[0])) ==
              0);
    cr_assert_str_eq(a->why, b->why);
}

Test(stream, plan_round_trips_every_field_and_the_reason_in_both_modes)
{
    const uint8_t modes[] = {RS_CONTINUE, RS_FULL};
    for (size_t i = 0; i < sizeof(modes); i++) {
        static struct rs_plan p, d;
        p = sample_plan(modes[i]);
        char body[RS_MAX_BODY];
        size_t n = rs_plan_encode(body, &p);
        memset(&d, 0xee, sizeof(d));
        struct rs_frame f = body_frame(RS_PLAN, body, n);
        cr_assert_eq(rs_plan_decode(&f, &d), 0, "mode %u", modes[i]);
        assert_plan_eq(&d, &p);
    }
}

Test(stream, plan_with_the_longest_reason_and_a_full_history_round_trips)
{
    static struct rs_plan p, d;
    p = sample_plan(RS_FULL);
    memset(p.why, 'w', sizeof(p.why) - 1);
    p.why[sizeof(p.why) - 1] = '\0';
    p.nepochs = LOGDIR_MAX_EPOCHS;
    for (size_t i = 0; i < LOGDIR_MAX_EPOCHS; i++)
        p.epochs[i] = (struct logdir_epoch){i + 1, 1000 + i, 100 * i};
    char body[RS_MAX_BODY];
    size_t n = rs_plan_encode(body, &p);
    cr_assert_leq(n, RS_MAX_BODY);
    memset(&d, 0xee, sizeof(d));
    struct rs_frame f = body_frame(RS_PLAN, body, n);
    cr_assert_eq(rs_plan_decode(&f, &d), 0);
    assert_plan_eq(&d, &p);
}

/* Decode body cut to every shorter length, each in a buffer of exactly
 * that size (so that a read past it is caught). */
static void
assert_refused_at_every_length(uint8_t type, const char *body, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        char *cut = malloc(k ? k : 1);
        memcpy(cut, body, k);
        struct rs_frame f = body_frame(type, cut, k);
        int rc;
        if (type == RS_HELLO) {
            struct rs_hello h;
            rc = rs_hello_decode(&f, &h);
        } else if (type == RS_IDENT) {
            static struct rs_ident m;
            rc = rs_ident_decode(&f, &m);
        } else {
            static struct rs_plan p;
            rc = rs_plan_decode(&f, &p);
        }
        cr_assert_eq(rc, RS_E_BODY, "%s cut to %zu of %zu bytes",
                     rs_type_name(type), k, n);
        free(cut);
    }
}

Test(stream, a_truncated_body_is_refused_at_every_length)
{
    char body[RS_MAX_BODY];
    struct rs_hello h = sample_hello();
    assert_refused_at_every_length(RS_HELLO, body, rs_hello_encode(body, &h));
    static struct rs_ident m;
    m = sample_ident();
    assert_refused_at_every_length(RS_IDENT, body, rs_ident_encode(body, &m));
    static struct rs_plan p;
    p = sample_plan(RS_CONTINUE);
    assert_refused_at_every_length(RS_PLAN, body, rs_plan_encode(body, &p));
}

Test(stream, a_body_with_trailing_garbage_is_refused)
{
    char body[RS_MAX_BODY + 1];
    struct rs_hello h = sample_hello();
    size_t n = rs_hello_encode(body, &h);
    body[n] = 0;
    struct rs_frame f = body_frame(RS_HELLO, body, n + 1);
    cr_assert_eq(rs_hello_decode(&f, &h), RS_E_BODY);

    static struct rs_ident m;
    m = sample_ident();
    n = rs_ident_encode(body, &m);
    body[n] = 0;
    f = body_frame(RS_IDENT, body, n + 1);
    cr_assert_eq(rs_ident_decode(&f, &m), RS_E_BODY);

    static struct rs_plan p;
    p = sample_plan(RS_FULL);
    n = rs_plan_encode(body, &p);
    body[n] = 0;
    f = body_frame(RS_PLAN, body, n + 1);
    cr_assert_eq(rs_plan_decode(&f, &p), RS_E_BODY);
}

static int
ident_with_history(const struct logdir_epoch *e, size_t n)
{
    static struct rs_ident m, d;
    m = sample_ident();
    m.nepochs = n;
    memcpy(m.epochs, e, n * sizeof(*e));
    char body[RS_MAX_BODY];
    struct rs_frame f = body_frame(RS_IDENT, body, rs_ident_encode(body, &m));
    return rs_ident_decode(&f, &d);
}

static int
plan_with_history(const struct logdir_epoch *e, size_t n)
{
    static struct rs_plan p, d;
    p = sample_plan(RS_CONTINUE);
    p.nepochs = n;
    memcpy(p.epochs, e, n * sizeof(*e));
    char body[RS_MAX_BODY];
    struct rs_frame f = body_frame(RS_PLAN, body, rs_plan_encode(body, &p));
    return rs_plan_decode(&f, &d);
}

Test(stream, a_history_out_of_order_is_refused)
{
    const struct logdir_epoch seq_back[] = {
        {1, 10, 0}, {3, 30, 100}, {2, 20, 200}};
    const struct logdir_epoch seq_twice[] = {
        {1, 10, 0}, {2, 20, 100}, {2, 30, 200}};
    const struct logdir_epoch start_back[] = {
        {1, 10, 0}, {2, 20, 200}, {3, 30, 100}};
    cr_assert_eq(ident_with_history(seq_back, 3), RS_E_BODY);
    cr_assert_eq(ident_with_history(seq_twice, 3), RS_E_BODY);
    cr_assert_eq(ident_with_history(start_back, 3), RS_E_BODY);
    cr_assert_eq(plan_with_history(seq_back, 3), RS_E_BODY);
    cr_assert_eq(plan_with_history(seq_twice, 3), RS_E_BODY);
    cr_assert_eq(plan_with_history(start_back, 3), RS_E_BODY);
}

/*
 * The body with one more epoch than the encoder can write: the u32 count
 * sits just before the epochs, which are followed by `tail` bytes (the
 * PLAN's reason); body has room for 24 more bytes.
 */
static size_t
add_epoch(char *body, size_t n, size_t nepochs, size_t tail,
          struct logdir_epoch e)
{
    char *count = body + n - tail - 24 * nepochs - 4;
    uint32_t c;
    memcpy(&c, count, 4);
    cr_assert_eq(c, nepochs, "the epoch count is where the format says");
    c++;
    memcpy(count, &c, 4);
    char *at = body + n - tail;
    memmove(at + 24, at, tail);
    memcpy(at, &e.seq, 8);
    memcpy(at + 8, &e.id, 8);
    memcpy(at + 16, &e.start, 8);
    return n + 24;
}

Test(stream, a_history_longer_than_the_maximum_is_refused)
{
    static struct rs_ident m, dm;
    static struct rs_plan p, dp;
    m = sample_ident();
    p = sample_plan(RS_CONTINUE);
    m.nepochs = p.nepochs = LOGDIR_MAX_EPOCHS;
    for (size_t i = 0; i < LOGDIR_MAX_EPOCHS; i++)
        m.epochs[i] = p.epochs[i] = (struct logdir_epoch){i + 1, 500 + i, i};
    struct logdir_epoch extra = {LOGDIR_MAX_EPOCHS + 1, 9999,
                                 LOGDIR_MAX_EPOCHS};
    char body[RS_MAX_BODY + 24];

    /* the maximum itself is fine */
    size_t n = rs_ident_encode(body, &m);
    struct rs_frame f = body_frame(RS_IDENT, body, n);
    cr_assert_eq(rs_ident_decode(&f, &dm), 0);
    assert_ident_eq(&dm, &m);
    f = body_frame(RS_IDENT, body,
                   add_epoch(body, n, LOGDIR_MAX_EPOCHS, 0, extra));
    cr_assert_eq(rs_ident_decode(&f, &dm), RS_E_BODY);

    n = rs_plan_encode(body, &p);
    f = body_frame(RS_PLAN, body, n);
    cr_assert_eq(rs_plan_decode(&f, &dp), 0);
    assert_plan_eq(&dp, &p);
    f = body_frame(
        RS_PLAN, body,
        add_epoch(body, n, LOGDIR_MAX_EPOCHS, 2 + strlen(p.why), extra));
    cr_assert_eq(rs_plan_decode(&f, &dp), RS_E_BODY);
}

Test(stream, a_plan_with_an_unknown_mode_is_refused)
{
    const uint8_t bad[] = {0, 3, 255};
    for (size_t i = 0; i < sizeof(bad); i++) {
        static struct rs_plan p, d;
        p = sample_plan(bad[i]);
        char body[RS_MAX_BODY];
        struct rs_frame f = body_frame(RS_PLAN, body, rs_plan_encode(body, &p));
        cr_assert_eq(rs_plan_decode(&f, &d), RS_E_BODY, "mode %u", bad[i]);
    }
}

Test(stream, a_full_plan_whose_copy_ends_before_it_starts_is_refused)
{
    static struct rs_plan p, d;
    p = sample_plan(RS_FULL);
    p.from = 5000;
    p.copy_end = 4999;
    char body[RS_MAX_BODY];
    struct rs_frame f = body_frame(RS_PLAN, body, rs_plan_encode(body, &p));
    cr_assert_eq(rs_plan_decode(&f, &d), RS_E_BODY);

    /* an empty copy is a copy */
    p.copy_end = p.from;
    f = body_frame(RS_PLAN, body, rs_plan_encode(body, &p));
    cr_assert_eq(rs_plan_decode(&f, &d), 0);
}

Test(stream, an_ident_whose_log_starts_after_it_ends_is_refused)
{
    static struct rs_ident m, d;
    m = sample_ident();
    m.start = 5000;
    m.end = 4999;
    char body[RS_MAX_BODY];
    struct rs_frame f = body_frame(RS_IDENT, body, rs_ident_encode(body, &m));
    cr_assert_eq(rs_ident_decode(&f, &d), RS_E_BODY);

    /* an empty log is a log */
    m.end = m.start;
    f = body_frame(RS_IDENT, body, rs_ident_encode(body, &m));
    cr_assert_eq(rs_ident_decode(&f, &d), 0);
}

Test(stream, a_hello_without_the_magic_is_refused)
{
    for (size_t i = 0; i < strlen(RS_MAGIC); i++) {
        struct rs_hello h = sample_hello(), d;
        char body[RS_MAX_BODY];
        size_t n = rs_hello_encode(body, &h);
        body[i] ^= 0x20; /* "mCDBREPL", ... */
        struct rs_frame f = body_frame(RS_HELLO, body, n);
        cr_assert_eq(rs_hello_decode(&f, &d), RS_E_BODY, "byte %zu", i);
    }
}

/* ---- rs_send and rs_recv on a socket pair ---- */

static void
socket_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0, "%s",
                 strerror(errno));
}

static void
write_all(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        cr_assert_gt(k, 0, "write: %s", strerror(errno));
        p = (const char *)p + k;
        n -= (size_t)k;
    }
}

/* Writes bytes one at a time, with a pause after each (another thread:
 * no assertions here). */
struct dribble {
    int fd;
    const char *bytes;
    size_t n;
    size_t written;
};

static void *
dribble_main(void *arg)
{
    struct dribble *d = arg;
    struct timespec pause = {0, 200 * 1000};
    while (d->written < d->n) {
        ssize_t k = write(d->fd, d->bytes + d->written, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k != 1)
            break;
        d->written++;
        nanosleep(&pause, NULL);
    }
    return NULL;
}

struct sent {
    uint8_t type;
    uint64_t off;
    const char *payload;
    uint32_t len;
};

Test(stream, frames_written_one_byte_at_a_time_arrive_whole_and_in_order)
{
    char hello[RS_MAX_BODY];
    struct rs_hello h = sample_hello();
    uint32_t hn = (uint32_t)rs_hello_encode(hello, &h);
    char data[300];
    fill((uint8_t *)data, sizeof(data), 3);
    const struct sent frames[] = {
        {RS_HELLO, 0, hello, hn},
        {RS_DATA, 1ull << 40, data, sizeof(data)},
        {RS_PING, (1ull << 40) + 300, "", 0},
        {RS_DATA, (1ull << 40) + 300, "x", 1},
        {RS_ACK, 77, "", 0},
        {RS_ERROR, 0, "going away", 10},
    };
    size_t nframes = sizeof(frames) / sizeof(frames[0]);
    char wire[2048];
    size_t n = 0;
    for (size_t i = 0; i < nframes; i++)
        n += frame_bytes(wire + n, frames[i].type, frames[i].off,
                         frames[i].payload, frames[i].len);

    int sv[2];
    socket_pair(sv);
    struct dribble d = {sv[1], wire, n, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, dribble_main, &d), 0);
    struct rs_reader r = {.fd = sv[0]};
    for (size_t i = 0; i < nframes; i++) {
        struct rs_frame f;
        int rc = rs_recv(&r, &f, 10000, NULL);
        cr_assert_eq(rc, 0, "frame %zu: %s", i, strerror(-rc));
        cr_assert_eq(f.type, frames[i].type, "frame %zu", i);
        cr_assert_eq(f.off, frames[i].off, "frame %zu", i);
        cr_assert_eq(f.len, frames[i].len, "frame %zu", i);
        cr_assert(memcmp(f.payload, frames[i].payload, f.len) == 0, "frame %zu",
                  i);
    }
    pthread_join(t, NULL);
    cr_assert_eq(d.written, n);
    struct rs_frame f;
    cr_assert_eq(rs_recv(&r, &f, 100, NULL), -ETIMEDOUT,
                 "nothing more was sent");
    rs_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

Test(stream, frames_written_at_once_are_all_received_in_order)
{
    int sv[2];
    socket_pair(sv);
    char wire[RS_HDR * 40 + 40 * 40];
    size_t n = 0;
    for (uint32_t i = 0; i < 40; i++) {
        char payload[40];
        memset(payload, 'a' + i % 26, i);
        n += frame_bytes(wire + n, RS_DATA, 1000 * i, payload, i);
    }
    write_all(sv[1], wire, n);
    struct rs_reader r = {.fd = sv[0]};
    for (uint32_t i = 0; i < 40; i++) {
        struct rs_frame f;
        cr_assert_eq(rs_recv(&r, &f, 5000, NULL), 0, "frame %u", i);
        cr_assert_eq(f.off, 1000 * i);
        cr_assert_eq(f.len, i);
        for (uint32_t k = 0; k < i; k++)
            cr_assert_eq(f.payload[k], 'a' + i % 26);
    }
    rs_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

Test(stream, a_partial_frame_is_kept_across_a_timeout)
{
    int sv[2];
    socket_pair(sv);
    char wire[RS_HDR + 5];
    size_t n = frame_bytes(wire, RS_DATA, 42, "hello", 5);
    struct rs_reader r = {.fd = sv[0]};
    struct rs_frame f;
    for (size_t k = 0; k < n; k++) {
        write_all(sv[1], wire + k, 1);
        if (k + 1 < n)
            cr_assert_eq(rs_recv(&r, &f, 20, NULL), -ETIMEDOUT,
                         "%zu of %zu bytes", k + 1, n);
    }
    cr_assert_eq(rs_recv(&r, &f, 5000, NULL), 0);
    cr_assert_eq(f.off, 42);
    cr_assert(memcmp(f.payload, "hello", 5) == 0);
    rs_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

Test(stream, recv_times_out_when_nothing_comes)
{
    int sv[2];
    socket_pair(sv);
    struct rs_reader r = {.fd = sv[0]};
    struct rs_frame f;
    int64_t t0 = now_ms();
    cr_assert_eq(rs_recv(&r, &f, 200, NULL), -ETIMEDOUT);
    int64_t took = now_ms() - t0;
    cr_assert_geq(took, 190, "gave up after %lld ms", (long long)took);
    cr_assert_lt(took, 2000, "waited %lld ms", (long long)took);
    rs_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

Test(stream, recv_reports_a_reset_when_the_peer_closes)
{
    int sv[2];
    socket_pair(sv);
    struct rs_reader r = {.fd = sv[0]};
    struct rs_frame f;
    close(sv[1]);
    cr_assert_eq(rs_recv(&r, &f, 5000, NULL), -ECONNRESET);
    rs_reader_free(&r);
    close(sv[0]);
}

Test(stream, recv_reports_a_reset_when_the_peer_closes_inside_a_frame)
{
    int sv[2];
    socket_pair(sv);
    char wire[RS_HDR + 100];
    char payload[100] = {0};
    size_t n = frame_bytes(wire, RS_DATA, 0, payload, sizeof(payload));
    write_all(sv[1], wire, n - 1);
    close(sv[1]);
    struct rs_reader r = {.fd = sv[0]};
    struct rs_frame f;
    cr_assert_eq(rs_recv(&r, &f, 5000, NULL), -ECONNRESET);
    rs_reader_free(&r);
    close(sv[0]);
}

Test(stream, recv_refuses_a_memcached_server_answer_at_once)
{
    int sv[2];
    socket_pair(sv);
    /* what memcached says to "mcdb_replicate 1" and to what follows */
    const char answer[] = "ERROR\r\nERROR\r\nERROR\r\n";
    write_all(sv[1], answer, strlen(answer));
    struct rs_reader r = {.fd = sv[0]};
    struct rs_frame f;
    int64_t t0 = now_ms();
    cr_assert_eq(rs_recv(&r, &f, 5000, NULL), -EPROTO);
    cr_assert_lt(now_ms() - t0, 2500, "it waited for more garbage");
    rs_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

Test(stream, recv_refuses_an_over_long_frame_without_waiting_for_it)
{
    int sv[2];
    socket_pair(sv);
    char hdr[RS_HDR];
    rs_header(hdr, RS_DATA, RS_MAX_PAYLOAD + 1, 0);
    write_all(sv[1], hdr, RS_HDR);
    struct rs_reader r = {.fd = sv[0]};
    struct rs_frame f;
    int64_t t0 = now_ms();
    cr_assert_eq(rs_recv(&r, &f, 5000, NULL), -EPROTO);
    cr_assert_lt(now_ms() - t0, 2500, "it waited for the payload");
    rs_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

struct sender {
    int fd;
    const char *payload;
    uint32_t len;
    int rc_data, rc_ping;
};

static void *
sender_main(void *arg)
{
    struct sender *s = arg;
    s->rc_data = rs_send(s->fd, RS_DATA, 1ull << 33, s->payload, s->len);
    s->rc_ping = rs_send(s->fd, RS_PING, 12345, NULL, 0);
    return NULL;
}

Test(stream, a_data_frame_of_one_mebibyte_arrives_intact)
{
    uint32_t len = 1u << 20;
    char *payload = malloc(len);
    for (uint32_t i = 0; i < len; i++) /* no two nearby pieces alike */
        payload[i] = (char)((i * 2654435761u) >> 24);
    int sv[2];
    socket_pair(sv);
    struct sender s = {sv[1], payload, len, -1, -1};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, sender_main, &s), 0);
    struct rs_reader r = {.fd = sv[0]};
    struct rs_frame f;
    int rc = rs_recv(&r, &f, 20000, NULL);
    cr_assert_eq(rc, 0, "%s", strerror(-rc));
    cr_assert_eq(f.type, RS_DATA);
    cr_assert_eq(f.off, 1ull << 33);
    cr_assert_eq(f.len, len);
    cr_assert(memcmp(f.payload, payload, len) == 0);
    cr_assert_eq(rs_recv(&r, &f, 20000, NULL), 0);
    cr_assert_eq(f.type, RS_PING);
    cr_assert_eq(f.off, 12345);
    cr_assert_eq(f.len, 0);
    pthread_join(t, NULL);
    cr_assert_eq(s.rc_data, 0, "%s", strerror(-s.rc_data));
    cr_assert_eq(s.rc_ping, 0, "%s", strerror(-s.rc_ping));
    rs_reader_free(&r);
    free(payload);
    close(sv[0]);
    close(sv[1]);
}

Test(stream, send_to_a_closed_peer_fails_without_killing_the_process)
{
    int sv[2];
    socket_pair(sv);
    close(sv[0]);
    /* no SIGPIPE: an error to handle */
    cr_assert_eq(rs_send(sv[1], RS_PING, 1, NULL, 0), -EPIPE);
    close(sv[1]);
}

static void *
stop_later(void *arg)
{
    struct timespec pause = {0, 150 * 1000 * 1000};
    nanosleep(&pause, NULL);
    atomic_store((atomic_bool *)arg, true);
    return NULL;
}

Test(stream, recv_gives_up_soon_after_the_stop_flag_is_set)
{
    int sv[2];
    socket_pair(sv);
    atomic_bool stop = false;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, stop_later, &stop), 0);
    struct rs_reader r = {.fd = sv[0]};
    struct rs_frame f;
    int64_t t0 = now_ms();
    cr_assert_eq(rs_recv(&r, &f, 20000, &stop), -ECANCELED);
    int64_t took = now_ms() - t0;
    cr_assert_lt(took, 2000, "took %lld ms after the stop", (long long)took);
    pthread_join(t, NULL);

    /* and a stop already set returns at once */
    t0 = now_ms();
    cr_assert_eq(rs_recv(&r, &f, 20000, &stop), -ECANCELED);
    cr_assert_lt(now_ms() - t0, 1000);
    rs_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}
