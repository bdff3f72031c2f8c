/*
 * primary: a sender thread per replica, and the bookkeeping behind
 * --sync-replicas.
 *
 * A sender's life (the function that makes each move):
 *   adopted     a worker saw "mcdb_replicate" and handed over the socket
 *               (primary_adopt)
 *   handshake   HELLO, IDENT (checked: version, MAC or loopback), PLAN
 *               (repl_plan, and the tail check below) (sender_handshake)
 *   copying     a FULL plan: DATA from the log's start; the replica
 *               installs the copy when it reaches PLAN's copy_end and goes
 *               on with the same stream (the sender does not tell the two
 *               apart beyond stats)
 *   streaming   DATA of every byte the log makes durable, at once (the
 *               sender's eventfd is subscribed to the store); PING when
 *               idle; ACKs read as they come (sender_stream)
 *   gone        the link broke or the server stops: the thread ends; the
 *               replica reconnects and resumes from what it has
 * The sender holds compaction (store_hold) at the replica's acknowledged
 * offset, so that the bytes it still needs stay; when it is gone the hold
 * lingers --repl-backlog-ttl seconds for the replica to come back and
 * resume instead of copying everything (a restart, a network blip).
 *
 * Only durable bytes are sent (store_span stops at the durable offset):
 * a replica is never ahead of what its primary keeps after a crash, so
 * its log stays a prefix of the primary's (invariant 8, log_int.h). With
 * --fsync everysec or never the sender has written bytes synced within
 * REPL_SYNC_MS (store_sync_soon), so that replicas are not a second or
 * more behind.
 *
 * The tail check: before resuming a replica whose log ends at E with a
 * record at offset L, the primary checks that its own log has the same
 * record (the same checksum field) in [L, E). Epochs catch a promoted
 * replica; this catches a primary restored from an older backup, whose new
 * writes sit at offsets the replica already holds with other bytes. On a
 * mismatch the replica gets a full copy and its old log is kept aside.
 *
 * --sync-replicas N: `replicated` is the N-th highest offset acknowledged
 * by connected replicas; every ACK recomputes it (primary_replicated) and
 * the store wakes the workers, whose held replies then go out. The watcher
 * thread samples when the durable offset moved, so that writes made
 * durable more than --sync-timeout ago and still not replicated fail
 * (store_set_replicated's timed_out), and closes the write gate while
 * fewer than N replicas are connected.
 */
#include "repl/repl_int.h"
#include "util/clock.h"
#include "util/say.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define REPL_MAX_SENDERS 16
#define REPL_PING_MS 1000     /* a PING when nothing else was sent */
#define REPL_SILENCE_MS 10000 /* no ACK for this long: the link is dead */
#define REPL_HANDSHAKE_MS 10000
#define REPL_SYNC_MS 50      /* written bytes wait at most this for a sync */
#define LAG_BUCKETS (64 * 8) /* lag histogram: 8 buckets per power of 2 */
#define SAMPLE_RING 4096

enum sender_state { SND_HANDSHAKE, SND_COPYING, SND_STREAMING, SND_GONE };
static const char *const sender_state_names[] = {"handshake", "copying",
                                                 "streaming", "gone"};

/* When the durable offset reached `off` (monotonic us). */
struct sample {
    uint64_t off;
    int64_t t;
};

struct samples {
    struct sample v[SAMPLE_RING];
    size_t head, n;
};

static void
samples_push(struct samples *s, uint64_t off, int64_t t)
{
    if (s->n && s->v[(s->head + s->n - 1) % SAMPLE_RING].off >= off)
        return;
    if (s->n == SAMPLE_RING) {
        s->head = (s->head + 1) % SAMPLE_RING;
        s->n--;
    }
    s->v[(s->head + s->n++) % SAMPLE_RING] = (struct sample){off, t};
}

/* Drop samples at or below off; the first one left is when the log first
 * went past off (0 when none). */
static int64_t
samples_after(struct samples *s, uint64_t off)
{
    while (s->n && s->v[s->head].off <= off) {
        s->head = (s->head + 1) % SAMPLE_RING;
        s->n--;
    }
    return s->n ? s->v[s->head].t : 0;
}

struct sender {
    struct repl_primary *p;
    struct sender *next;
    int fd, efd;
    pthread_t thread;
    bool joined;
    char peer[64]; /* address:client port */
    struct rs_reader rd;
    int hold;
    /* under p->mu */
    enum sender_state state;
    uint64_t sent, acked, copy_end;
    int64_t last_ack_us;
    uint64_t lag_hist[LAG_BUCKETS]; /* lags since start or "stats reset" */
    uint64_t nlag;
    struct samples durable; /* when the log went past each offset */
};

/* The hold of a replica that went away, kept for it to come back. */
struct held {
    int hold;
    int64_t until_us;
    char peer[64]; /* the replica's address:client port */
};

struct repl_primary {
    struct repl *r;
    store_t *store;
    pthread_mutex_t mu;
    struct sender *senders;
    atomic_bool stop;
    pthread_t watcher;
    bool watcher_running;
    int wfd;
    struct samples durable; /* the watcher's, for --sync-timeout */
    uint64_t replicated, timed_out;
    uint64_t full_resyncs, partial_resyncs, refused;
    struct held helds[REPL_MAX_SENDERS * 4];
    size_t nhelds;
};

static void send_error(int fd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
send_error(int fd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n > 0)
        rs_send(
            fd, RS_ERROR, 0, msg,
            (uint32_t)((size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1));
}

/* ---- the lag histogram: 8 buckets per power of two (12.5% wide) ---- */

static unsigned
lag_bucket(int64_t us)
{
    uint64_t v = us < 1 ? 1 : (uint64_t)us;
    unsigned log2 = 63u - (unsigned)__builtin_clzll(v);
    unsigned sub = log2 >= 3 ? (unsigned)(v >> (log2 - 3)) & 7
                             : (unsigned)(v << (3 - log2)) & 7;
    return log2 * 8 + sub;
}

/* The middle of bucket b, in microseconds. */
static uint64_t
lag_value(unsigned b)
{
    unsigned log2 = b / 8, sub = b % 8;
    double lo = (double)(1ull << log2) * (1.0 + sub / 8.0);
    return (uint64_t)(lo * (1.0 + 1.0 / 16));
}

/* The q-th quantile (0..1) of a histogram. */
static uint64_t
lag_quantile(const uint64_t *hist, uint64_t n, double q)
{
    if (!n)
        return 0;
    uint64_t want = (uint64_t)(q * (double)(n - 1)) + 1, seen = 0;
    for (unsigned b = 0; b < LAG_BUCKETS; b++)
        if ((seen += hist[b]) >= want)
            return lag_value(b);
    return lag_value(LAG_BUCKETS - 1);
}

/* ---- --sync-replicas ---- */

static int
cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Connected replicas (p->mu held), and the N-th highest acked offset. */
static unsigned
connected_locked(struct repl_primary *p, uint64_t *nth)
{
    uint64_t acked[REPL_MAX_SENDERS];
    unsigned n = 0, want = p->r->cfg.sync_replicas;
    for (struct sender *s = p->senders; s; s = s->next)
        if (s->state == SND_COPYING || s->state == SND_STREAMING)
            acked[n++] = s->acked;
    qsort(acked, n, sizeof(*acked), cmp_desc);
    *nth = want && n >= want ? acked[want - 1] : 0;
    return n;
}

/* Recompute what enough replicas have and tell the store (p->mu held). */
static void
replicated_locked(struct repl_primary *p)
{
    unsigned want = p->r->cfg.sync_replicas;
    if (!want)
        return;
    uint64_t nth;
    unsigned n = connected_locked(p, &nth);
    if (nth > p->replicated)
        p->replicated = nth;
    if (n < want) {
        char text[160];
        snprintf(text, sizeof(text),
                 "not enough replicas connected for --sync-replicas %u "
                 "(%u connected); nothing was written",
                 want, n);
        store_set_write_gate(p->store, STORE_NO_REPLICAS, text);
    } else {
        store_set_write_gate(p->store, 0, NULL);
    }
    store_set_replicated(p->store, true, p->replicated, p->timed_out);
}

/* ---- a sender ---- */

static void
sender_ack(struct sender *s, uint64_t off)
{
    struct repl_primary *p = s->p;
    int64_t now = clock_mono_us();
    pthread_mutex_lock(&p->mu);
    if (off > s->acked) {
        /* lag: from the moment the log went past what was acked before
         * to now, for the bytes this ACK covers */
        int64_t t = samples_after(&s->durable, s->acked);
        if (t) {
            s->lag_hist[lag_bucket(now - t)]++;
            s->nlag++;
        }
        s->acked = off;
        if (s->state == SND_COPYING && off >= s->copy_end)
            s->state = SND_STREAMING;
    }
    s->last_ack_us = now;
    replicated_locked(p);
    pthread_mutex_unlock(&p->mu);
    store_hold_move(p->store, s->hold, off);
}

/* Read what the replica sent (ACKs); -errno when the link is done. */
static int
sender_read(struct sender *s)
{
    struct rs_frame f;
    int rc = rs_recv(&s->rd, &f, REPL_SILENCE_MS, &s->p->stop);
    if (rc)
        return rc;
    if (f.type == RS_ACK) {
        sender_ack(s, f.off);
        return 0;
    }
    if (f.type == RS_ERROR)
        say(SAY_WARN, "replica %s: %.*s", s->peer, (int)f.len, f.payload);
    return -EPROTO;
}

static int
send_span(struct sender *s, struct store_span *sp, uint64_t off)
{
    char hdr[RS_HDR];
    rs_header(hdr, RS_DATA, (uint32_t)sp->len, off);
    if (send(s->fd, hdr, RS_HDR, MSG_MORE | MSG_NOSIGNAL) != RS_HDR)
        return -errno;
    off_t pos = (off_t)sp->pos;
    uint64_t left = sp->len;
    while (left) {
        ssize_t n = sendfile(s->fd, sp->fd, &pos, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        left -= (uint64_t)n;
    }
    return 0;
}

static void
sender_note_durable(struct sender *s, uint64_t durable)
{
    pthread_mutex_lock(&s->p->mu);
    samples_push(&s->durable, durable, clock_mono_us());
    pthread_mutex_unlock(&s->p->mu);
}

/* Stream from s->sent until the link breaks or the server stops. */
static int
sender_stream(struct sender *s)
{
    struct repl_primary *p = s->p;
    int64_t last_send = clock_mono_us(), last_heard = last_send;
    int64_t unsynced_since = 0;
    for (;;) {
        if (atomic_load(&p->stop))
            return -ECANCELED;
        uint64_t durable = store_durable(p->store);
        sender_note_durable(s, durable);
        if (s->sent < durable) {
            struct store_span sp;
            int rc =
                store_span(p->store, s->sent, s->sent + RS_DATA_CHUNK, &sp);
            if (rc == STORE_NOT_FOUND) {
                send_error(s->fd,
                           "offset %" PRIu64 " is no longer on the "
                           "primary (compacted away); reconnect for a full "
                           "copy",
                           s->sent);
                return -ENOENT;
            }
            if (rc == 0 && sp.len)
                rc = send_span(s, &sp, s->sent);
            uint64_t len = sp.len;
            store_span_done(&sp);
            if (rc)
                return rc;
            if (!len) {
                say(SAY_ERROR,
                    "replica %s: nothing to send at offset %" PRIu64
                    " below the durable offset %" PRIu64,
                    s->peer, s->sent, durable);
                return -EIO;
            }
            pthread_mutex_lock(&p->mu);
            s->sent += len;
            pthread_mutex_unlock(&p->mu);
            last_send = clock_mono_us();
        }
        /* Bytes written but not yet durable (--fsync everysec or never):
         * have them synced within REPL_SYNC_MS rather than a second or
         * whenever the OS likes, so that the replica gets them. */
        int64_t now0 = clock_mono_us();
        if (store_log_end(p->store) > durable) {
            if (!unsynced_since)
                unsynced_since = now0;
            else if (now0 - unsynced_since > REPL_SYNC_MS * 1000) {
                store_sync_soon(p->store);
                unsynced_since = 0;
            }
        } else {
            unsynced_since = 0;
        }
        /* what the replica sent, and the store's news; wait only when
         * everything durable is sent */
        struct pollfd pfd[2] = {{.fd = s->fd, .events = POLLIN},
                                {.fd = s->efd, .events = POLLIN}};
        int wait = s->sent < store_durable(p->store) ? 0
                   : unsynced_since                  ? REPL_SYNC_MS
                                                     : 100;
        if (poll(pfd, 2, wait) < 0 && errno != EINTR)
            return -errno;
        if (pfd[1].revents & POLLIN) {
            uint64_t v;
            if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                return -errno;
        }
        int64_t now = clock_mono_us();
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int rc = sender_read(s);
            if (rc)
                return rc;
            last_heard = now;
        }
        if (now - last_heard > REPL_SILENCE_MS * 1000) {
            send_error(s->fd, "no acknowledgement for %d s",
                       REPL_SILENCE_MS / 1000);
            return -ETIMEDOUT;
        }
        if (now - last_send > REPL_PING_MS * 1000) {
            int64_t wall = clock_wall_ms();
            int rc = rs_send(s->fd, RS_PING, store_durable(p->store), &wall,
                             sizeof(wall));
            if (rc)
                return rc;
            last_send = now;
        }
    }
}

/* The tail check (see the top). */
static bool
tail_agrees(struct sender *s, const struct rs_ident *id)
{
    uint64_t sum;
    if (store_record_checksum(s->p->store, id->last_off, id->end, &sum) != 0)
        return false;
    return sum == id->last_sum;
}

static int
sender_handshake(struct sender *s, struct rs_plan *plan)
{
    struct repl_primary *p = s->p;
    struct repl *r = p->r;
    bool loopback = repl_is_loopback(s->fd);
    if (!r->key.set && !loopback) {
        say(SAY_WARN,
            "replication from %s refused: not on loopback, and "
            "no --repl-secret-file",
            s->peer);
        send_error(s->fd, "replication refused: the primary takes replicas "
                          "beyond loopback only with --repl-secret-file");
        return -EACCES;
    }
    struct rs_hello hello = {.version = REPL_PROTOCOL, .auth = r->key.set};
    repl_nonce(hello.nonce);
    char body[RS_MAX_BODY];
    int rc = rs_send(s->fd, RS_HELLO, 0, body,
                     (uint32_t)rs_hello_encode(body, &hello));
    struct rs_frame f;
    if (rc == 0)
        rc = rs_recv(&s->rd, &f, REPL_HANDSHAKE_MS, &p->stop);
    if (rc)
        return rc;
    struct rs_ident *ident = calloc(1, sizeof(*ident)); /* 1.5 KiB */
    if (!ident)
        return -ENOMEM;
    if (f.type != RS_IDENT || rs_ident_decode(&f, ident) != 0 ||
        ident->version != REPL_PROTOCOL) {
        send_error(s->fd, "expected IDENT of protocol version %d",
                   REPL_PROTOCOL);
        free(ident);
        return -EPROTO;
    }
    char addr[64];
    snprintf(addr, sizeof(addr), "%.40s", s->peer);
    char *colon = strrchr(addr, ':');
    if (colon)
        snprintf(colon, sizeof(addr) - (size_t)(colon - addr), ":%u",
                 ident->port);
    snprintf(s->peer, sizeof(s->peer), "%s", addr);
    if (r->key.set && !repl_mac_ok(&r->key, "replica", hello.nonce,
                                   ident->nonce, ident->mac)) {
        say(SAY_WARN, "replication from %s refused: wrong secret", s->peer);
        send_error(s->fd, "replication refused: wrong secret "
                          "(--repl-secret-file differs)");
        free(ident);
        return -EACCES;
    }
    struct logdir_meta m;
    store_meta(p->store, &m);
    uint64_t start = store_log_start(p->store);
    store_hold_move(p->store, s->hold, start);
    /* what is written goes out too (--fsync everysec, never): a plan
     * always names bytes that are durable */
    if (store_durable(p->store) < store_log_end(p->store) &&
        (rc = store_sync(p->store)) != 0) {
        send_error(s->fd, "the primary cannot make its log durable: %s",
                   store_strerror(rc));
        free(ident);
        return -EIO;
    }
    struct repl_side mine = {.has_log = true,
                             .log_id = m.log_id,
                             .start = store_log_start(p->store),
                             .end = store_durable(p->store),
                             .nepochs = m.nepochs,
                             .epochs = m.epochs};
    struct repl_side theirs = {.has_log = ident->has_log,
                               .log_id = ident->log_id,
                               .start = ident->start,
                               .end = ident->end,
                               .nepochs = ident->nepochs,
                               .epochs = ident->epochs};
    memset(plan, 0, sizeof(*plan));
    repl_plan(&theirs, &mine, plan);
    if (plan->mode == RS_CONTINUE && plan->fork == ident->end &&
        ident->end > ident->start && !tail_agrees(s, ident)) {
        plan->mode = RS_FULL;
        plan->keep_old = true;
        plan->from = mine.start;
        plan->copy_end = mine.end;
        snprintf(plan->why, sizeof(plan->why),
                 "the record where the replica's log ends (offset %" PRIu64
                 ") is not the primary's: was the primary restored from an "
                 "older copy?",
                 ident->last_off);
    }
    if (r->key.set)
        repl_mac(&r->key, "primary", hello.nonce, ident->nonce, plan->mac);
    free(ident);
    store_hold_move(p->store, s->hold, plan->from);
    rc = rs_send(s->fd, RS_PLAN, 0, body, (uint32_t)rs_plan_encode(body, plan));
    if (rc)
        return rc;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nhelds;) { /* it came back: its own hold */
        if (strcmp(p->helds[i].peer, s->peer) == 0) {
            store_hold_release(p->store, p->helds[i].hold);
            memmove(p->helds + i, p->helds + i + 1,
                    (--p->nhelds - i) * sizeof(*p->helds));
        } else {
            i++;
        }
    }
    s->sent = s->acked = plan->from;
    s->copy_end = plan->copy_end;
    s->state = plan->mode == RS_FULL ? SND_COPYING : SND_STREAMING;
    if (plan->mode == RS_FULL)
        p->full_resyncs++;
    else
        p->partial_resyncs++;
    s->last_ack_us = clock_mono_us();
    replicated_locked(p);
    pthread_mutex_unlock(&p->mu);
    say(SAY_INFO, "replica %s: %s from offset %" PRIu64 " (%s)", s->peer,
        plan->mode == RS_FULL ? "full copy" : "streaming", plan->from,
        plan->why);
    return 0;
}

static void *
sender_main(void *arg)
{
    struct sender *s = arg;
    struct repl_primary *p = s->p;
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* a replica that stops reading (gone, or its network) fails a send in
     * this time instead of blocking the sender for TCP's many minutes */
    struct timeval tv = {.tv_sec = REPL_SILENCE_MS / 1000};
    setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct rs_plan *plan = malloc(sizeof(*plan));
    int rc = plan ? sender_handshake(s, plan) : -ENOMEM;
    free(plan);
    if (rc == 0)
        rc = sender_stream(s);
    if (rc != -ECANCELED)
        say(SAY_INFO, "replica %s: link closed (%s)", s->peer,
            rc == -ECONNRESET ? "the replica hung up" : strerror(-rc));
    pthread_mutex_lock(&p->mu);
    s->state = SND_GONE;
    if (s->hold >= 0 && p->r->cfg.backlog_ttl_s) {
        if (p->nhelds == sizeof(p->helds) / sizeof(*p->helds)) {
            store_hold_release(p->store, p->helds[0].hold); /* the oldest */
            memmove(p->helds, p->helds + 1, --p->nhelds * sizeof(*p->helds));
        }
        struct held *h = &p->helds[p->nhelds++];
        h->hold = s->hold;
        h->until_us =
            clock_mono_us() + (int64_t)p->r->cfg.backlog_ttl_s * 1000000;
        snprintf(h->peer, sizeof(h->peer), "%s", s->peer);
    } else if (s->hold >= 0) {
        store_hold_release(p->store, s->hold);
    }
    s->hold = -1;
    replicated_locked(p);
    pthread_mutex_unlock(&p->mu);
    shutdown(s->fd, SHUT_RDWR);
    return NULL;
}

static void
sender_free(struct sender *s)
{
    if (!s->joined)
        pthread_join(s->thread, NULL);
    store_unsubscribe(s->p->store, s->efd);
    close(s->efd);
    close(s->fd);
    rs_reader_free(&s->rd);
    free(s);
}

/* Free the senders whose threads ended (p->mu held). */
static void
reap_locked(struct repl_primary *p)
{
    for (struct sender **pp = &p->senders; *pp;) {
        struct sender *s = *pp;
        if (s->state == SND_GONE) {
            *pp = s->next;
            sender_free(s);
        } else {
            pp = &s->next;
        }
    }
}

void
primary_adopt(struct repl_primary *p, int fd, const void *bytes, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char peer[64] = "?";
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        char host[48] = "?";
        unsigned port = 0;
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (void *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
        } else {
            struct sockaddr_in *a = (void *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            port = ntohs(a->sin_port);
        }
        snprintf(peer, sizeof(peer), "%s:%u", host, port);
    }
    pthread_mutex_lock(&p->mu);
    reap_locked(p);
    unsigned count = 0;
    for (struct sender *s = p->senders; s; s = s->next)
        count++;
    struct sender *s = count < REPL_MAX_SENDERS ? calloc(1, sizeof(*s)) : NULL;
    if (s) {
        s->p = p;
        s->fd = fd;
        s->rd.fd = fd;
        s->hold = store_hold(p->store, store_log_start(p->store));
        s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        snprintf(s->peer, sizeof(s->peer), "%s", peer);
        if (n && (s->rd.buf = malloc(n))) {
            memcpy(s->rd.buf, bytes, n);
            s->rd.len = s->rd.cap = n;
        }
    }
    if (!s || s->hold < 0 || s->efd < 0 ||
        store_subscribe_to(p->store, s->efd, STORE_WAKE_DURABLE) != 0 ||
        pthread_create(&s->thread, NULL, sender_main, s) != 0) {
        p->refused++;
        pthread_mutex_unlock(&p->mu);
        say(SAY_WARN, "replication from %s refused: too many replicas", peer);
        send_error(fd,
                   "replication refused: the primary serves at most %d "
                   "replicas",
                   REPL_MAX_SENDERS);
        if (s) {
            if (s->hold >= 0)
                store_hold_release(p->store, s->hold);
            if (s->efd >= 0) {
                store_unsubscribe(p->store, s->efd);
                close(s->efd);
            }
            rs_reader_free(&s->rd);
            free(s);
        }
        close(fd);
        return;
    }
    s->next = p->senders;
    p->senders = s;
    pthread_mutex_unlock(&p->mu);
}

/* ---- the watcher ---- */

static void
watch_timeouts_locked(struct repl_primary *p, int64_t now)
{
    int64_t cutoff = now - (int64_t)p->r->cfg.sync_timeout_ms * 1000;
    uint64_t timed_out = p->timed_out;
    struct samples *d = &p->durable;
    /* the newest offset that became durable before the cutoff */
    while (d->n && d->v[d->head].t <= cutoff) {
        if (d->v[d->head].off > p->replicated && d->v[d->head].off > timed_out)
            timed_out = d->v[d->head].off;
        d->head = (d->head + 1) % SAMPLE_RING;
        d->n--;
    }
    if (timed_out != p->timed_out) {
        p->timed_out = timed_out;
        say(SAY_WARN,
            "--sync-replicas %u: writes up to offset %" PRIu64
            " were not confirmed within %u ms; their clients get an error",
            p->r->cfg.sync_replicas, timed_out, p->r->cfg.sync_timeout_ms);
    }
}

static void
watch_helds_locked(struct repl_primary *p, int64_t now)
{
    for (size_t i = 0; i < p->nhelds;) {
        if (p->helds[i].until_us <= now) {
            store_hold_release(p->store, p->helds[i].hold);
            memmove(p->helds + i, p->helds + i + 1,
                    (--p->nhelds - i) * sizeof(*p->helds));
        } else {
            i++;
        }
    }
}

static void *
watcher_main(void *arg)
{
    struct repl_primary *p = arg;
    bool sync = p->r->cfg.sync_replicas > 0;
    while (!atomic_load(&p->stop)) {
        struct pollfd pfd = {.fd = p->wfd, .events = POLLIN};
        poll(&pfd, 1, sync ? 5 : 1000);
        uint64_t v;
        if (read(p->wfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            break;
        int64_t now = clock_mono_us();
        pthread_mutex_lock(&p->mu);
        reap_locked(p);
        if (sync) {
            samples_push(&p->durable, store_durable(p->store), now);
            watch_timeouts_locked(p, now);
            replicated_locked(p);
        }
        watch_helds_locked(p, now);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

int
primary_start(struct repl *r, char *err, size_t errlen)
{
    struct repl_primary *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->r = r;
    p->store = r->store;
    pthread_mutex_init(&p->mu, NULL);
    p->wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->wfd < 0 ||
        store_subscribe_to(p->store, p->wfd, STORE_WAKE_DURABLE) != 0 ||
        pthread_create(&p->watcher, NULL, watcher_main, p) != 0) {
        snprintf(err, errlen, "starting replication: %s", strerror(errno));
        if (p->wfd >= 0)
            close(p->wfd);
        free(p);
        return -1;
    }
    p->watcher_running = true;
    p->durable.n = 0;
    /* with --sync-replicas, writes wait for replicas from the start */
    pthread_mutex_lock(&p->mu);
    p->replicated = p->timed_out = store_durable(p->store);
    replicated_locked(p);
    pthread_mutex_unlock(&p->mu);
    r->primary = p;
    return 0;
}

void
primary_stop(struct repl_primary *p)
{
    atomic_store(&p->stop, true);
    pthread_mutex_lock(&p->mu);
    for (struct sender *s = p->senders; s; s = s->next)
        shutdown(s->fd, SHUT_RDWR);
    pthread_mutex_unlock(&p->mu);
    uint64_t one = 1;
    if (write(p->wfd, &one, sizeof(one)) < 0)
        (void)0;
    if (p->watcher_running)
        pthread_join(p->watcher, NULL);
    while (p->senders) {
        struct sender *s = p->senders;
        p->senders = s->next;
        sender_free(s);
    }
    for (size_t i = 0; i < p->nhelds; i++)
        store_hold_release(p->store, p->helds[i].hold);
    store_set_write_gate(p->store, 0, NULL);
    store_set_replicated(p->store, false, 0, 0);
    store_unsubscribe(p->store, p->wfd);
    close(p->wfd);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ---- stats ---- */

void
primary_stats_reset(struct repl_primary *p)
{
    pthread_mutex_lock(&p->mu);
    for (struct sender *s = p->senders; s; s = s->next) {
        memset(s->lag_hist, 0, sizeof(s->lag_hist));
        s->nlag = 0;
    }
    pthread_mutex_unlock(&p->mu);
}

void
primary_stats(struct repl_primary *p,
              void (*fn)(void *arg, const char *name, const char *value),
              void *arg)
{
    uint64_t durable = store_durable(p->store);
    int64_t now = clock_mono_us();
    pthread_mutex_lock(&p->mu);
    uint64_t nth;
    unsigned n = connected_locked(p, &nth);
    repl_stat_u64(fn, arg, "sync_replicas", p->r->cfg.sync_replicas);
    repl_stat_u64(fn, arg, "sync_timeout_ms", p->r->cfg.sync_timeout_ms);
    repl_stat_u64(fn, arg, "connected_replicas", n);
    if (p->r->cfg.sync_replicas) {
        repl_stat_u64(fn, arg, "replicated_offset", p->replicated);
        repl_stat_u64(fn, arg, "timed_out_offset", p->timed_out);
    }
    repl_stat_u64(fn, arg, "full_resyncs", p->full_resyncs);
    repl_stat_u64(fn, arg, "partial_resyncs", p->partial_resyncs);
    repl_stat_u64(fn, arg, "refused_replicas", p->refused);
    repl_stat_u64(fn, arg, "holds_for_absent_replicas", p->nhelds);
    int i = 0;
    for (struct sender *s = p->senders; s; s = s->next) {
        if (s->state == SND_GONE)
            continue;
        char name[64];
#define RSTAT(field) snprintf(name, sizeof(name), "replica%d_%s", i, field)
        RSTAT("addr");
        fn(arg, name, s->peer);
        RSTAT("state");
        fn(arg, name, sender_state_names[s->state]);
        RSTAT("sent_offset");
        repl_stat_u64(fn, arg, name, s->sent);
        RSTAT("acked_offset");
        repl_stat_u64(fn, arg, name, s->acked);
        RSTAT("lag_bytes");
        repl_stat_u64(fn, arg, name,
                      durable > s->acked ? durable - s->acked : 0);
        int64_t since = samples_after(&s->durable, s->acked);
        RSTAT("lag_ms");
        repl_stat_u64(
            fn, arg, name,
            durable > s->acked && since ? (uint64_t)(now - since) / 1000 : 0);
        RSTAT("last_ack_ms");
        repl_stat_u64(fn, arg, name, (uint64_t)(now - s->last_ack_us) / 1000);
        RSTAT("lag_p50_us");
        repl_stat_u64(fn, arg, name, lag_quantile(s->lag_hist, s->nlag, 0.50));
        RSTAT("lag_p99_us");
        repl_stat_u64(fn, arg, name, lag_quantile(s->lag_hist, s->nlag, 0.99));
        RSTAT("lag_p999_us");
        repl_stat_u64(fn, arg, name, lag_quantile(s->lag_hist, s->nlag, 0.999));
        RSTAT("lag_samples");
        repl_stat_u64(fn, arg, name, s->nlag);
#undef RSTAT
        i++;
    }
    pthread_mutex_unlock(&p->mu);
}
