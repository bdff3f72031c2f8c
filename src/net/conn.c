/*
 * conn: one client connection. Input bytes -> proto_parse -> cmd_execute
 * (or, when its first byte is 0x80, bin_parse -> cmd_bin.c for its life);
 * replies go into an ordered output queue of items, some of them waiting
 * (for a write's ack, for a value read from a segment file); the ready
 * prefix of the queue leaves in one sendmsg at a time. The state machine
 * and the threading model are drawn at the top of server.c.
 *
 * Input. With provided buffers (the usual case) a received buffer is parsed
 * where it lies and handed back to the kernel at once; only the tail of an
 * incomplete request (or, while paused, everything) is copied into
 * conn->in. Without them, each connection receives straight into conn->in,
 * which then must not be touched while that recv is in flight. conn->in
 * never holds more than one request (at most --max-item-size plus a command
 * line) except while paused, when what was already in flight still lands
 * there: hence NET_IN_SLACK on top, beyond which the client is cut off.
 *
 * Output: the reply queue and its memory are out.c's (out.h). Above
 * NET_OUT_HIGH queued bytes the connection stops parsing and receiving
 * (backpressure); below NET_OUT_LOW it resumes. A get of many keys may stop
 * between two keys and resume later at conn->get_resume.
 *
 * Memory of all connections (--conn-memory-limit). Backpressure bounds one
 * connection (about NET_OUT_HIGH plus one request), not a thousand of them.
 * What each holds, in_cap + out_bytes, is brought up to date after every
 * receive and every flush, and while requests are parsed each time it grew
 * by NET_MEM_LEASE (conn_account), never per request; the worker
 * adds it up and reserves it from net->conn_mem in NET_MEM_LEASE steps, so
 * the shared counter is written about once per 256 KiB of change rather
 * than twice per request. When the total is past the limit, the connection
 * that has just grown, if it holds more than NET_CONN_MEM_FLOOR, is closed
 * (and counted in conn_memory_kicks): a small client is never the one cut
 * off; one that pipelines without reading its replies is, as is one of many
 * holding large values half sent. What all connections hold thus
 * stays under the limit plus NET_CONN_MEM_FLOOR per connection plus one
 * lease and one step of growth per worker.
 *
 * Idle connections (--idle-timeout). Every tick (server.c) conn_tick counts
 * how long a connection has been idle: reading, nothing received since the
 * last tick, no reply queued, waiting or being sent. A request received
 * only in part does not keep a connection open (memcached's idle_timeout
 * does the same): a client silent that long in the middle of one is gone or
 * hostile. Replication's sockets are src/repl's, never timed out here.
 */
#include "net/net_int.h"

#include "net/binary.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/panic.h"
#include "util/say.h"

void
conn_mark_dirty(struct conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        c->dirty_next = c->w->dirty;
        c->w->dirty = c;
    }
}

/* ---- memory of all connections ---- */

/* The worker's connections hold delta bytes more (or less). */
static void
worker_mem_add(struct worker *w, int64_t delta)
{
    size_t mem =
        atomic_load_explicit(&w->mem, memory_order_relaxed) + (size_t)delta;
    atomic_store_explicit(&w->mem, mem, memory_order_relaxed);
    if (mem <= w->mem_lease && mem + 2 * NET_MEM_LEASE >= w->mem_lease)
        return;
    /* A new lease in (mem, mem + NET_MEM_LEASE]. */
    size_t lease = (mem / NET_MEM_LEASE + 1) * NET_MEM_LEASE;
    if (lease > w->mem_lease)
        atomic_fetch_add_explicit(&w->net->conn_mem, lease - w->mem_lease,
                                  memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&w->net->conn_mem, w->mem_lease - lease,
                                  memory_order_relaxed);
    w->mem_lease = lease;
}

/* Count what c holds now; false if that closed it (--conn-memory-limit). */
static bool
conn_account(struct conn *c)
{
    size_t held = c->in_cap + c->out_bytes;
    if (held == c->mem_acct)
        return true;
    bool grew = held > c->mem_acct;
    worker_mem_add(c->w, (int64_t)held - (int64_t)c->mem_acct);
    c->mem_acct = held;
    struct net *net = c->w->net;
    if (!grew || held <= NET_CONN_MEM_FLOOR || c->handover ||
        atomic_load_explicit(&net->conn_mem, memory_order_relaxed) <=
            net->cfg.conn_memory_limit)
        return true;
    CNT_INC(c->w, conn_memory_kicks);
    say(SAY_VERBOSE,
        "%s: holds %zu bytes while connections together hold more than "
        "--conn-memory-limit; closing",
        c->peer, held);
    conn_close(c);
    /* The replies nobody will send are freed now, not with the
     * connection (at the end of the worker's batch, or later if a send or
     * a read is in flight), and leave the count: else every other
     * connection that grows in this batch would be closed too, past the
     * excess. What the kernel still uses (one send, reads in flight) stays
     * counted until it is freed. */
    out_drop_unsent(c);
    held = c->in_cap + c->out_bytes;
    worker_mem_add(c->w, (int64_t)held - (int64_t)c->mem_acct);
    c->mem_acct = held;
    return false;
}

/* ---- sending ---- */

/* One sendmsg with every ready reply at the front of the queue. */
static bool
conn_send(struct conn *c)
{
    int n = out_iov(c, c->iov, NET_IOV_MAX);
    if (n == 0)
        return false;
    struct io_uring_sqe *sqe = worker_sqe(c->w);
    if (n == 1) { /* plain send: no msghdr for the kernel to copy */
        io_uring_prep_send(sqe, c->fd, c->iov[0].iov_base, c->iov[0].iov_len,
                           MSG_NOSIGNAL);
    } else {
        memset(&c->msg, 0, sizeof(c->msg));
        c->msg.msg_iov = c->iov;
        c->msg.msg_iovlen = (size_t)n;
        io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, ud_make(c, UD_SEND));
    c->send_busy = true;
    c->refs++;
    return true;
}

static void conn_resume(struct conn *c);

void
conn_flush(struct conn *c)
{
    out_trim(c);
    if (c->state == CONN_PAUSED && c->out_bytes < NET_OUT_LOW) {
        conn_resume(c);
        if (c->state == CONN_CLOSING)
            return;
        out_trim(c);
    }
    if (!conn_account(c))
        return;
    if (c->send_busy || conn_send(c))
        return;
    if (c->state == CONN_DRAINING && !c->oq_head)
        conn_close(c);
}

void
conn_on_send(struct conn *c, int res)
{
    c->send_busy = false;
    c->refs--;
    if (c->state == CONN_CLOSING) {
        conn_mark_dirty(c); /* worker_flush frees it */
        return;
    }
    if (res < 0) {
        say(SAY_DEBUG, "%s: send: %s", c->peer, strerror(-res));
        conn_close(c);
        return;
    }
    CNT_ADD(c->w, bytes_written, (uint64_t)res);
    out_consume(c, (size_t)res);
    conn_mark_dirty(c);
}

/* ---- receiving ---- */

static size_t
conn_in_limit(const struct conn *c)
{
    return c->w->net->cfg.max_item_size + PROTO_MAX_LINE + NET_IN_SLACK;
}

void
conn_arm_recv(struct conn *c)
{
    struct worker *w = c->w;
    if (c->recv_armed || c->state != CONN_READING || c->eof)
        return;
    struct io_uring_sqe *sqe = worker_sqe(w);
    if (w->feat.buf_ring) {
        if (w->feat.ms_recv)
            io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        else
            io_uring_prep_recv(sqe, c->fd, NULL, NET_BUF_SIZE, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = NET_BUF_GROUP;
    } else {
        if (c->in_cap - c->in_len < NET_BUF_SIZE / 4) {
            size_t cap = c->in_cap * 2;
            if (cap < c->in_len + NET_BUF_SIZE)
                cap = c->in_len + NET_BUF_SIZE;
            c->in = realloc(c->in, cap);
            if (!c->in)
                MCDB_PANIC("out of memory for a %zu-byte request buffer", cap);
            c->in_cap = cap;
        }
        io_uring_prep_recv(sqe, c->fd, c->in + c->in_len, c->in_cap - c->in_len,
                           0);
    }
    io_uring_sqe_set_data64(sqe, ud_make(c, UD_RECV));
    c->recv_armed = true;
    c->refs++;
}

static void
conn_cancel_recv(struct conn *c)
{
    if (c->recv_armed)
        worker_cancel(c->w, ud_make(c, UD_RECV));
}

/* -vv: the command line of each request, as memcached -vv shows it. */
static void
conn_say_request(const struct conn *c, const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len < 200 ? len : 200);
    size_t n = nl ? (size_t)(nl - buf) : (len < 200 ? len : 200);
    if (n && buf[n - 1] == '\r')
        n--;
    say(SAY_DEBUG, "%s < %.*s", c->peer, (int)n, buf);
}

/* Drop what c->swallow says of the bytes after *off (the rest later). */
static void
conn_skip(struct conn *c, size_t *off, size_t len)
{
    uint64_t skip = c->swallow < len - *off ? c->swallow : len - *off;
    *off += skip;
    c->swallow -= skip;
}

/*
 * The first key of a text line that reads or writes one (get, gets, mg,
 * set and the storage commands, ms) and, for a write, the bytes of data
 * that follow the line (*data); NULL for another line. The commands and
 * the argument that counts the data: which token, after the key.
 */
static const char *
line_key(const char *p, const char *nl, size_t *klen, long *data)
{
    static const struct {
        const char *cmd;
        int bytes_arg; /* 0: no data block */
    } cmds[] = {{"get ", 0}, {"gets ", 0},    {"mg ", 0},     {"set ", 3},
                {"add ", 3}, {"replace ", 3}, {"append ", 3}, {"prepend ", 3},
                {"cas ", 3}, {"ms ", 1}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        size_t n = strlen(cmds[i].cmd);
        if ((size_t)(nl - p) <= n || memcmp(p, cmds[i].cmd, n) != 0)
            continue;
        const char *k = p + n, *e = k;
        while (e < nl && *e != ' ' && *e != '\r')
            e++;
        *klen = (size_t)(e - k);
        *data = 0;
        for (int a = 0; a < cmds[i].bytes_arg; a++) {
            while (e < nl && *e == ' ')
                e++;
            const char *t = e;
            while (e < nl && *e != ' ' && *e != '\r')
                e++;
            if (a == cmds[i].bytes_arg - 1) {
                char *end;
                *data = t < e ? strtol(t, &end, 10) : -1;
                if (t == e || end != e || *data < 0)
                    return NULL; /* malformed: let the parser say so */
            }
        }
        return *klen ? k : NULL;
    }
    *data = 0;
    return NULL;
}

/*
 * Pipelined requests: start loading, for the key of each of the next
 * PREFETCH_KEYS get and storage lines in buf, the index shard, then its
 * slot and the value cache's slot, then the entries those slots point at
 * (index_prefetch, vcache_prefetch), so that their cache misses overlap
 * instead of each lookup waiting for its own in turn. It reads no further
 * than the first line it does not know. Returns the bytes it looked through
 * (the lines prefetched and the one it stopped at, or all of buf):
 * conn_parse calls it again once it has executed them.
 */
#define PREFETCH_KEYS 16
static size_t
conn_prefetch(struct conn *c, const char *buf, size_t len)
{
    const char *key[PREFETCH_KEYS];
    size_t klen[PREFETCH_KEYS];
    uint64_t h[PREFETCH_KEYS];
    unsigned n = 0;
    const char *p = buf, *end = buf + len;
    while (n < PREFETCH_KEYS && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return len;
        long data;
        key[n] = line_key(p, nl, &klen[n], &data);
        if (!key[n] || klen[n] > PROTO_MAX_KEY) {
            p = nl + 1;
            break;
        }
        n++;
        if (data > end - (nl + 1))
            return len;
        p = nl + 1 + (data ? data + 2 : 0);
    }
    size_t seen = (size_t)(p - buf);
    if (n < 2) /* one request: nothing to overlap with */
        return seen;
    store_t *s = c->w->net->store;
    for (unsigned i = 0; i < n; i++) {
        h[i] = store_hash(key[i], klen[i]);
        store_prefetch(s, h[i], 0);
    }
    for (unsigned i = 0; i < n; i++) {
        store_prefetch(s, h[i], 1);
        vcache_prefetch(&c->w->vc, h[i], 0);
    }
    for (unsigned i = 0; i < n; i++) {
        store_prefetch(s, h[i], 3);
        vcache_prefetch(&c->w->vc, h[i], 1);
    }
    return seen;
}

/* Parse and execute complete requests in buf; returns the bytes used.
 * The first byte of a connection chooses its protocol (enum conn_proto). */
static size_t
conn_parse(struct conn *c, const char *buf, size_t len)
{
    uint32_t max_item = (uint32_t)c->w->net->cfg.max_item_size;
    size_t off = 0, prefetched = 0;
    while (off < len && c->state == CONN_READING) {
        if (off >= prefetched && c->proto == CONN_PROTO_TEXT && c->authed)
            prefetched = off + conn_prefetch(c, buf + off, len - off);
        if (c->out_bytes >= NET_OUT_HIGH) {
            conn_pause(c);
            break;
        }
        /* Many connections may each grow this much in one batch. */
        if (c->out_bytes + c->in_cap > c->mem_acct + NET_MEM_LEASE &&
            !conn_account(c))
            break;
        /* With --auth-file a binary connection logs in with SASL, a text
         * one with the ASCII login (cmd_auth.c). */
        if (c->proto == CONN_PROTO_UNKNOWN)
            c->proto = (uint8_t)buf[off] == BIN_REQ_MAGIC ? CONN_PROTO_BINARY
                                                          : CONN_PROTO_TEXT;
        if (c->proto == CONN_PROTO_BINARY) {
            size_t used = cmd_bin_step(c, buf + off, len - off);
            if (used == 0)
                break;
            off += used;
            conn_skip(c, &off, len);
            continue;
        }
        if (!c->authed) {
            size_t used = cmd_auth_ascii(c, buf + off, len - off);
            if (used == 0)
                break;
            if (used != CMD_AUTH_PASS) {
                off += used;
                continue;
            }
        }
        struct proto_req req;
        int r = proto_parse(buf + off, len - off, max_item, &req);
        if (r == PROTO_NEED_MORE)
            break;
        if (req.consumed == 0 || req.consumed > len - off) {
            say(SAY_ERROR, "%s: parser consumed %zu of %zu bytes; closing",
                c->peer, req.consumed, len - off);
            conn_drain(c);
            break;
        }
        if (r == PROTO_ERROR) {
            off += req.consumed;
            cmd_parse_error(c, &req);
            c->swallow = req.swallow;
            conn_skip(c, &off, len);
            if (req.close)
                conn_drain(c);
            continue;
        }
        if (say_get_level() >= SAY_DEBUG)
            conn_say_request(c, buf + off, len - off);
        if (!cmd_execute(c, &req))
            break;
        off += req.consumed;
    }
    return off;
}

/* Keep n more input bytes in conn->in; false if the connection was cut. */
static bool
conn_keep(struct conn *c, const char *data, size_t n)
{
    size_t need = c->in_len + n, limit = conn_in_limit(c);
    if (need > limit) {
        say(SAY_WARN, "%s: more than %zu bytes of input pending; closing",
            c->peer, limit);
        conn_close(c);
        return false;
    }
    if (need > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 4096;
        while (cap < need)
            cap *= 2;
        c->in = realloc(c->in, cap);
        if (!c->in)
            MCDB_PANIC("out of memory for a %zu-byte request buffer", cap);
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, data, n);
    c->in_len = need;
    return true;
}

/* Run what conn->in holds; at end of input, drain. */
static void
conn_process_input(struct conn *c)
{
    if (c->state == CONN_READING && c->in_len) {
        size_t used = conn_parse(c, c->in, c->in_len);
        if (c->state == CONN_CLOSING)
            return;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        /* A big value passed through: give its buffer back. */
        if (c->w->feat.buf_ring && c->in_len == 0 &&
            c->in_cap > 4 * NET_BUF_SIZE) {
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
    if (c->eof && c->state == CONN_READING)
        conn_drain(c);
}

/* Bytes from a provided buffer. */
static void
conn_input(struct conn *c, const char *data, size_t n)
{
    if (c->swallow) {
        size_t k = c->swallow < n ? c->swallow : n;
        data += k;
        n -= k;
        c->swallow -= k;
    }
    if (c->handover) { /* bytes for src/repl */
        conn_keep(c, data, n);
        return;
    }
    if (n == 0 || c->state >= CONN_DRAINING)
        return;
    if (c->in_len == 0 && c->state == CONN_READING) {
        size_t used = conn_parse(c, data, n);
        if (used < n && (c->state < CONN_DRAINING || c->handover))
            conn_keep(c, data + used, n - used);
        return;
    }
    if (conn_keep(c, data, n))
        conn_process_input(c);
}

/* Bytes received straight into conn->in (no provided buffers). */
static void
conn_input_own(struct conn *c, size_t n)
{
    size_t start = c->in_len;
    c->in_len += n;
    if (c->swallow) {
        size_t k = c->swallow < n ? c->swallow : n;
        memmove(c->in + start, c->in + start + k, n - k);
        c->in_len -= k;
        c->swallow -= k;
    }
    conn_process_input(c);
}

static void
conn_recv_error(struct conn *c, int e)
{
    struct worker *w = c->w;
    if (e == ENOBUFS)
        return; /* provided buffers ran out: armed again by the caller */
    if (e == ECANCELED) {
        if (c->eof)
            conn_process_input(c);
        return;
    }
    if (e == EINVAL && w->feat.ms_recv) {
        say(SAY_WARN, "multishot recv refused; receiving one at a time");
        w->feat.ms_recv = false;
        return;
    }
    say(SAY_DEBUG, "%s: recv: %s", c->peer, strerror(e));
    conn_close(c);
}

void
conn_on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
    struct worker *w = c->w;
    int res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        c->recv_armed = false;
        c->refs--;
    }
    if (res > 0) {
        CNT_ADD(w, bytes_read, (uint64_t)res);
        c->heard = true;
        if (cqe->flags & IORING_CQE_F_BUFFER) {
            unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            conn_input(c, w->bufs + (size_t)bid * NET_BUF_SIZE, (size_t)res);
            worker_return_buf(w, bid);
        } else if (c->state != CONN_CLOSING) {
            conn_input_own(c, (size_t)res);
        }
    } else if (res == 0) {
        c->eof = true;
        conn_process_input(c);
    } else if (c->state != CONN_CLOSING) {
        conn_recv_error(c, -res);
    }
    if (c->state != CONN_CLOSING)
        conn_account(c);
    if (c->state == CONN_CLOSING) {
        conn_mark_dirty(c); /* worker_flush frees it */
        return;
    }
    conn_arm_recv(c);
}

/* ---- state changes ---- */

void
conn_pause(struct conn *c)
{
    if (c->state != CONN_READING)
        return;
    CNT_INC(c->w, conn_yields); /* "stats": memcached's name for a pause */
    c->state = CONN_PAUSED;
    conn_cancel_recv(c);
}

static void
conn_resume(struct conn *c)
{
    c->state = CONN_READING;
    /* Without provided buffers, conn->in is the target of the recv in
     * flight; its completion processes the input instead. */
    if (!c->recv_armed || c->w->feat.buf_ring)
        conn_process_input(c);
    conn_arm_recv(c);
}

void
conn_handover(struct conn *c)
{
    c->handover = true;
    conn_drain(c);
}

void
conn_drain(struct conn *c)
{
    if (c->state >= CONN_DRAINING)
        return;
    c->state = CONN_DRAINING;
    conn_cancel_recv(c);
    conn_mark_dirty(c);
}

/* The server is stopping: run what was received, then drain. */
void
conn_stop_reading(struct conn *c)
{
    if (c->state >= CONN_DRAINING)
        return;
    c->eof = true;
    conn_cancel_recv(c);
    if (!c->recv_armed || c->w->feat.buf_ring)
        conn_process_input(c);
    conn_mark_dirty(c);
}

void
conn_tick(struct conn *c, unsigned tick_ms)
{
    bool busy =
        c->state != CONN_READING || c->handover || c->oq_head || c->send_busy;
    if (busy || c->heard) {
        /* Idle from some time in the next interval at the earliest: that
         * one is not counted either. */
        c->heard = busy;
        c->idle_ms = 0;
        return;
    }
    c->idle_ms += tick_ms;
    unsigned timeout = c->w->net->cfg.idle_timeout;
    if (c->idle_ms / 1000 < timeout)
        return;
    CNT_INC(c->w, idle_kicks);
    say(SAY_VERBOSE, "%s: idle for %u s (--idle-timeout); closing", c->peer,
        timeout);
    conn_close(c);
}

void
conn_open(struct worker *w, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        MCDB_PANIC("out of memory for a connection");
    c->w = w;
    c->fd = fd;
    c->state = CONN_READING;
    c->heard = true;
    c->authed = w->net->auth == NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    atomic_fetch_add(&w->curr_conns, 1);
    CNT_INC(w, total_connections);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        net_addr_name((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    else
        snprintf(c->peer, sizeof(c->peer), "fd %d", fd);
    say(SAY_VERBOSE, "connection from %s (worker %u)", c->peer, w->id);
    conn_arm_recv(c);
}

void
conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    out_forget_acks(c);
    atomic_fetch_sub(&c->w->net->conns, 1); /* before the client sees it */
    atomic_fetch_sub(&c->w->curr_conns, 1);
    conn_cancel_recv(c);
    if (!c->handover)
        shutdown(c->fd, SHUT_RDWR);
    say(SAY_VERBOSE, "connection from %s %s", c->peer,
        c->handover ? "handed to replication" : "closed");
    /* Freed by worker_flush at the end of the batch, never here: callers
     * up the stack still hold c. */
    conn_mark_dirty(c);
}

/* Only worker_flush calls this, with nothing else holding c. */
void
conn_maybe_free(struct conn *c)
{
    struct worker *w = c->w;
    if (c->state != CONN_CLOSING || c->refs || c->dirty)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    out_clear(c);
    worker_mem_add(w, -(int64_t)c->mem_acct);
    if (c->handover && w->net->repl)
        repl_adopt(w->net->repl, c->fd, c->in, c->in_len);
    else
        close(c->fd);
    free(c->in);
    free(c);
}
