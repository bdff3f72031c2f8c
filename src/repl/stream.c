/*
 * The replication stream, version 1 (REPL_PROTOCOL).
 *
 * A replica connects to its primary's ordinary client port and sends the
 * text line "mcdb_replicate 1\r\n". From then on both sides speak frames:
 *
 *   0  u8   type     RS_TYPES in repl_int.h
 *   1  u8   0        reserved
 *   2  u16  0        reserved
 *   4  u32  length   of the payload, at most RS_MAX_PAYLOAD
 *   8  u64  offset   DATA: log offset of the payload's first byte;
 *                    PING: the primary's durable offset; ACK: the
 *                    replica's durable offset; else 0
 *  16       payload
 *
 * All integers little-endian. The conversation:
 *   primary  HELLO  magic "MCDBREPL", u32 version, u32 flags (1: a MAC is
 *                   required), 32-byte nonce
 *   replica  IDENT  u32 version, 32-byte nonce, 32-byte MAC (zeros when no
 *                   secret), u16 client port, u8 has_log, 16-byte log id,
 *                   u64 log start, u64 log end, u64 last record's offset,
 *                   u64 its checksum field, u32 epochs, then per epoch
 *                   u64 seq, u64 id, u64 start
 *   primary  PLAN   32-byte MAC, u8 mode (1 continue, 2 full copy), u8
 *                   keep_old, u64 fork, u64 from, u64 copy_end, 16-byte log
 *                   id, u32 epochs + epochs as above, u16 length + the
 *                   reason as text
 *   primary  DATA   log bytes, in order, from PLAN's `from`; a frame may
 *                   end inside a record (the replica keeps the rest)
 *   primary  PING   every second when idle: u64 wall clock (ms)
 *   replica  ACK    whenever its durable offset moves, and every second
 *   either   ERROR  text, then the connection closes
 * A peer that sends a malformed frame is disconnected.
 */
#include "repl/repl_int.h"
#include "util/clock.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

const char *
rs_type_name(int type)
{
    switch (type) {
#define X(name, value, what)                                                   \
    case name:                                                                 \
        return &(#name)[3];
        RS_TYPES(X)
#undef X
    }
    return "unknown";
}

const char *
rs_strerror(int err)
{
    switch (err) {
    case RS_E_TYPE:
        return "unknown frame type";
    case RS_E_LENGTH:
        return "frame longer than allowed";
    case RS_E_BODY:
        return "malformed frame body";
    }
    return "unknown stream error";
}

/* ---- little-endian cursors ---- */

struct wcur {
    char *p;
    size_t n;
};

static void
w_bytes(struct wcur *w, const void *b, size_t n)
{
    memcpy(w->p + w->n, b, n);
    w->n += n;
}

static void
w_u8(struct wcur *w, uint8_t v)
{
    w_bytes(w, &v, 1);
}

static void
w_u16(struct wcur *w, uint16_t v)
{
    w_bytes(w, &v, 2);
}

static void
w_u32(struct wcur *w, uint32_t v)
{
    w_bytes(w, &v, 4);
}

static void
w_u64(struct wcur *w, uint64_t v)
{
    w_bytes(w, &v, 8);
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the stream is little-endian; add byte swaps for this host");

struct rcur {
    const char *p;
    size_t n, at;
    bool bad;
};

static void
r_bytes(struct rcur *r, void *b, size_t n)
{
    if (r->bad || r->n - r->at < n) {
        r->bad = true;
        memset(b, 0, n);
        return;
    }
    memcpy(b, r->p + r->at, n);
    r->at += n;
}

static uint8_t
r_u8(struct rcur *r)
{
    uint8_t v;
    r_bytes(r, &v, 1);
    return v;
}

static uint16_t
r_u16(struct rcur *r)
{
    uint16_t v;
    r_bytes(r, &v, 2);
    return v;
}

static uint32_t
r_u32(struct rcur *r)
{
    uint32_t v;
    r_bytes(r, &v, 4);
    return v;
}

static uint64_t
r_u64(struct rcur *r)
{
    uint64_t v;
    r_bytes(r, &v, 8);
    return v;
}

/* ---- frames ---- */

void
rs_header(char out[RS_HDR], uint8_t type, uint32_t len, uint64_t off)
{
    struct wcur w = {out, 0};
    w_u8(&w, type);
    w_u8(&w, 0);
    w_u16(&w, 0);
    w_u32(&w, len);
    w_u64(&w, off);
}

long
rs_decode(const void *buf, size_t len, struct rs_frame *f)
{
    /* a bad type shows in the first byte: say so at once (a server that
     * answers "ERROR\r\n" is not one to wait for) */
    uint8_t type = len ? *(const uint8_t *)buf : 0;
    if (len && (type < RS_HELLO || type > RS_ERROR))
        return RS_E_TYPE;
    if (len < RS_HDR)
        return 0;
    struct rcur r = {buf, len, 0, false};
    f->type = r_u8(&r);
    r_u8(&r);
    r_u16(&r);
    f->len = r_u32(&r);
    f->off = r_u64(&r);
    if (f->type < RS_HELLO || f->type > RS_ERROR)
        return RS_E_TYPE;
    if (f->len > RS_MAX_PAYLOAD)
        return RS_E_LENGTH;
    if (len - RS_HDR < f->len)
        return 0;
    f->payload = (const char *)buf + RS_HDR;
    return (long)(RS_HDR + f->len);
}

/* ---- bodies ---- */

static void
w_epochs(struct wcur *w, const struct logdir_epoch *e, size_t n)
{
    w_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        w_u64(w, e[i].seq);
        w_u64(w, e[i].id);
        w_u64(w, e[i].start);
    }
}

static size_t
r_epochs(struct rcur *r, struct logdir_epoch *e)
{
    uint32_t n = r_u32(r);
    if (n > LOGDIR_MAX_EPOCHS) {
        r->bad = true;
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        e[i].seq = r_u64(r);
        e[i].id = r_u64(r);
        e[i].start = r_u64(r);
        if (i && (e[i].seq <= e[i - 1].seq || e[i].start < e[i - 1].start))
            r->bad = true;
    }
    return n;
}

static int
r_done(const struct rcur *r)
{
    return r->bad || r->at != r->n ? RS_E_BODY : 0;
}

size_t
rs_hello_encode(char *out, const struct rs_hello *h)
{
    struct wcur w = {out, 0};
    w_bytes(&w, RS_MAGIC, 8);
    w_u32(&w, h->version);
    w_u32(&w, h->auth ? 1 : 0);
    w_bytes(&w, h->nonce, RS_NONCE);
    return w.n;
}

int
rs_hello_decode(const struct rs_frame *f, struct rs_hello *h)
{
    struct rcur r = {f->payload, f->len, 0, false};
    char magic[8];
    r_bytes(&r, magic, 8);
    h->version = r_u32(&r);
    h->auth = r_u32(&r) & 1;
    r_bytes(&r, h->nonce, RS_NONCE);
    if (memcmp(magic, RS_MAGIC, 8) != 0)
        return RS_E_BODY;
    return r_done(&r);
}

size_t
rs_ident_encode(char *out, const struct rs_ident *m)
{
    struct wcur w = {out, 0};
    w_u32(&w, m->version);
    w_bytes(&w, m->nonce, RS_NONCE);
    w_bytes(&w, m->mac, RS_MAC);
    w_u16(&w, m->port);
    w_u8(&w, m->has_log);
    w_bytes(&w, m->log_id, 16);
    w_u64(&w, m->start);
    w_u64(&w, m->end);
    w_u64(&w, m->last_off);
    w_u64(&w, m->last_sum);
    w_epochs(&w, m->epochs, m->nepochs);
    return w.n;
}

int
rs_ident_decode(const struct rs_frame *f, struct rs_ident *m)
{
    struct rcur r = {f->payload, f->len, 0, false};
    m->version = r_u32(&r);
    r_bytes(&r, m->nonce, RS_NONCE);
    r_bytes(&r, m->mac, RS_MAC);
    m->port = r_u16(&r);
    m->has_log = r_u8(&r) != 0;
    r_bytes(&r, m->log_id, 16);
    m->start = r_u64(&r);
    m->end = r_u64(&r);
    m->last_off = r_u64(&r);
    m->last_sum = r_u64(&r);
    m->nepochs = r_epochs(&r, m->epochs);
    if (m->start > m->end)
        return RS_E_BODY;
    return r_done(&r);
}

size_t
rs_plan_encode(char *out, const struct rs_plan *p)
{
    struct wcur w = {out, 0};
    w_bytes(&w, p->mac, RS_MAC);
    w_u8(&w, p->mode);
    w_u8(&w, p->keep_old);
    w_u64(&w, p->fork);
    w_u64(&w, p->from);
    w_u64(&w, p->copy_end);
    w_bytes(&w, p->log_id, 16);
    w_epochs(&w, p->epochs, p->nepochs);
    size_t why = strnlen(p->why, sizeof(p->why) - 1);
    w_u16(&w, (uint16_t)why);
    w_bytes(&w, p->why, why);
    return w.n;
}

int
rs_plan_decode(const struct rs_frame *f, struct rs_plan *p)
{
    struct rcur r = {f->payload, f->len, 0, false};
    r_bytes(&r, p->mac, RS_MAC);
    p->mode = r_u8(&r);
    p->keep_old = r_u8(&r) != 0;
    p->fork = r_u64(&r);
    p->from = r_u64(&r);
    p->copy_end = r_u64(&r);
    r_bytes(&r, p->log_id, 16);
    p->nepochs = r_epochs(&r, p->epochs);
    uint16_t why = r_u16(&r);
    if (why >= sizeof(p->why))
        return RS_E_BODY;
    r_bytes(&r, p->why, why);
    p->why[why] = '\0';
    if ((p->mode != RS_CONTINUE && p->mode != RS_FULL) ||
        (p->mode == RS_FULL && p->copy_end < p->from) || p->nepochs == 0)
        return RS_E_BODY;
    return r_done(&r);
}

/* ---- blocking I/O ---- */

int
rs_send(int fd, uint8_t type, uint64_t off, const void *payload, uint32_t len)
{
    char hdr[RS_HDR];
    rs_header(hdr, type, len, off);
    struct iovec iov[2] = {{hdr, RS_HDR}, {(void *)payload, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    size_t left = RS_HDR + len;
    while (left) {
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        left -= (size_t)n;
        while (n && msg.msg_iovlen) {
            size_t k = (size_t)n < msg.msg_iov->iov_len ? (size_t)n
                                                        : msg.msg_iov->iov_len;
            msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + k;
            msg.msg_iov->iov_len -= k;
            n -= (ssize_t)k;
            if (!msg.msg_iov->iov_len) {
                msg.msg_iov++;
                msg.msg_iovlen--;
            }
        }
    }
    return 0;
}

int
rs_recv(struct rs_reader *r, struct rs_frame *f, int timeout_ms,
        const atomic_bool *stop)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    for (;;) {
        long k = rs_decode(r->buf + r->used, r->len - r->used, f);
        if (k < 0)
            return -EPROTO;
        if (k > 0) {
            r->used += (size_t)k;
            return 0;
        }
        /* the unread bytes to the front, and room for the whole frame */
        if (r->used) {
            memmove(r->buf, r->buf + r->used, r->len - r->used);
            r->len -= r->used;
            r->used = 0;
        }
        size_t need = r->len >= RS_HDR ? RS_HDR + f->len : RS_HDR;
        size_t want = need > r->len + 65536 ? need : r->len + 65536;
        if (want > r->cap) {
            char *b = realloc(r->buf, want);
            if (!b)
                return -ENOMEM;
            r->buf = b;
            r->cap = want;
        }
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        if (stop && atomic_load(stop))
            return -ECANCELED;
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left < 100 ? (int)left : 100);
        if (pr < 0 && errno != EINTR)
            return -errno;
        if (pr <= 0)
            continue;
        ssize_t n = recv(r->fd, r->buf + r->len, r->cap - r->len, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (n > 0)
            r->len += (size_t)n;
    }
}

void
rs_reader_free(struct rs_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = r->used = 0;
}
