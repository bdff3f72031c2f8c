/*
 * replica: the link to the primary, in one thread.
 *
 * The link's states (the function that makes each move):
 *
 *   connecting ── TCP connect, "mcdb_replicate 1" (link_connect)
 *        │
 *   handshake ─── HELLO, IDENT (our log id, offsets, history, last
 *        │        record), PLAN (link_handshake); with a secret, both MACs
 *        │        are checked. PLAN says:
 *        ├─ continue from the fork point: cut our log there first if it is
 *        │  longer (store_cut_log: the tail moves aside, never deleted),
 *        │  take the primary's history (store_set_history)
 *        └─ full copy: DATA from the primary's log start is written beside
 *           our log (store_copy_*) while we keep serving what we have;
 *           at PLAN's copy_end it is installed (store_copy_finish)
 *   streaming ─── DATA appended verbatim (store_append_raw), ACK of our
 *        │        durable offset whenever it moves (link_stream)
 *        │ any error, silence for REPL_SILENCE_MS, or stop
 *        ▼
 *   down ──────── wait (100 ms, doubling to 2 s) and connect again; a
 *                 restart or a broken link resumes from our end offset
 *
 * Reads: until the first copy is installed the store answers "replica
 * syncing" (it holds no log). While the link is not streaming, a replica
 * serves what it has, stale by the lag that "stats repl" shows; with
 * --replica-serve-stale no it answers SERVER_ERROR instead.
 * Writes are refused by the store (a replica's write gate). Nothing here
 * ever promotes: repl_promote() stops this thread first.
 */
#include "repl/repl_int.h"
#include "util/clock.h"
#include "util/say.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define REPL_CONNECT_MS 5000
#define REPL_HANDSHAKE_MS 10000
#define REPL_SILENCE_MS 5000 /* the primary PINGs every second */
#define REPL_ACK_MS 1000
#define REPL_BACKOFF_MAX_MS 2000

enum link_state {
    LINK_CONNECTING,
    LINK_HANDSHAKE,
    LINK_COPYING,
    LINK_STREAMING,
    LINK_DOWN
};
static const char *const link_names[] = {"connecting", "handshake", "copying",
                                         "up", "down"};

struct repl_replica {
    struct repl *r;
    store_t *store;
    pthread_t thread;
    atomic_bool stop;
    int efd;
    pthread_mutex_t mu; /* everything below */
    int fd;
    enum link_state state;
    char last_error[256];
    int64_t last_byte_us;
    uint64_t primary_durable; /* as the primary last said */
    int64_t behind_since_us;  /* when it got ahead of our durable offset */
    uint64_t connects, full_resyncs, partial_resyncs;
    uint64_t copy_end, copy_done;
    char diverged[4200]; /* the last tail moved aside */
};

/* A link in progress: the socket, what was received but not yet taken. */
struct link {
    struct repl_replica *rp;
    int fd;
    struct rs_reader rd;
    struct rs_plan plan;
    struct store_copy *copy;
    char *pend; /* log bytes from pend_off not yet taken */
    size_t pend_len, pend_cap;
    uint64_t pend_off;
    uint64_t acked; /* the last offset we ACKed */
    int64_t acked_at;
};

static void
set_state(struct repl_replica *rp, enum link_state st, const char *why)
{
    pthread_mutex_lock(&rp->mu);
    rp->state = st;
    if (why)
        snprintf(rp->last_error, sizeof(rp->last_error), "%s", why);
    pthread_mutex_unlock(&rp->mu);
    if (st == LINK_STREAMING)
        store_set_read_gate(rp->store, 0);
    else if (!rp->r->cfg.serve_stale)
        store_set_read_gate(rp->store, STORE_STALE);
}

/* "host:port" or "[v6]:port" */
static int
split_hostport(const char *s, char *host, size_t hn, char *port, size_t pn)
{
    const char *colon = strrchr(s, ':');
    if (!colon || !colon[1])
        return -1;
    size_t len = (size_t)(colon - s);
    if (s[0] == '[' && len >= 2 && s[len - 1] == ']') {
        s++;
        len -= 2;
    }
    if (len == 0 || len >= hn || strlen(colon + 1) >= pn)
        return -1;
    memcpy(host, s, len);
    host[len] = '\0';
    snprintf(port, pn, "%s", colon + 1);
    return 0;
}

static int
connect_timeout(const struct addrinfo *ai, int ms)
{
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
               ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)
        goto fail;
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    if (poll(&pfd, 1, ms) != 1)
        goto fail;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
        errno = soerr ? soerr : errno;
        goto fail;
    }
    int flags = fcntl(fd, F_GETFL); /* blocking from here on */
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

static int link_fail(struct link *l, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Say why the link ends (once), and return rc. */
static int
link_fail(struct link *l, int rc, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct repl_replica *rp = l->rp;
    pthread_mutex_lock(&rp->mu);
    bool same = strcmp(rp->last_error, msg) == 0;
    snprintf(rp->last_error, sizeof(rp->last_error), "%s", msg);
    pthread_mutex_unlock(&rp->mu);
    if (!atomic_load(&rp->stop))
        say(same ? SAY_VERBOSE : SAY_WARN, "replica of %s: %s",
            rp->r->replica_of, msg);
    return rc;
}

static int
link_connect(struct link *l)
{
    struct repl_replica *rp = l->rp;
    char host[256], port[32];
    if (split_hostport(rp->r->replica_of, host, sizeof(host), port,
                       sizeof(port)) != 0)
        return link_fail(l, -EINVAL, "%s is not HOST:PORT", rp->r->replica_of);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return link_fail(l, -EHOSTUNREACH, "cannot resolve %s: %s", host,
                         gai_strerror(g));
    l->fd = -1;
    int e = 0;
    for (struct addrinfo *ai = res; ai && l->fd < 0; ai = ai->ai_next) {
        l->fd = connect_timeout(ai, REPL_CONNECT_MS);
        e = errno;
    }
    freeaddrinfo(res);
    if (l->fd < 0)
        return link_fail(l, -e, "cannot connect to %s: %s", rp->r->replica_of,
                         strerror(e));
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pthread_mutex_lock(&rp->mu);
    rp->fd = l->fd;
    rp->connects++;
    pthread_mutex_unlock(&rp->mu);
    l->rd.fd = l->fd;
    char line[64];
    int n = snprintf(line, sizeof(line), "%s %d\r\n", REPL_HELLO_CMD,
                     REPL_PROTOCOL);
    if (send(l->fd, line, (size_t)n, MSG_NOSIGNAL) != n)
        return link_fail(l, -errno, "sending to %s: %s", rp->r->replica_of,
                         strerror(errno));
    return 0;
}

/* The first answer of something that does not speak the stream. */
static int
not_mcdb(struct link *l)
{
    char text[64];
    size_t n = l->rd.len - l->rd.used < sizeof(text) - 1
                   ? l->rd.len - l->rd.used
                   : sizeof(text) - 1;
    memcpy(text, l->rd.buf + l->rd.used, n);
    text[n] = '\0';
    text[strcspn(text, "\r\n")] = '\0';
    return link_fail(l, -EPROTO,
                     "%s does not speak mcdb replication (it answered "
                     "\"%s\"): is it an mcdbd?",
                     l->rp->r->replica_of, text);
}

static int
expect_frame(struct link *l, uint8_t type, struct rs_frame *f)
{
    int rc = rs_recv(&l->rd, f, REPL_HANDSHAKE_MS, &l->rp->stop);
    if (rc == -EPROTO)
        return not_mcdb(l);
    if (rc)
        return link_fail(l, rc, "handshake with %s: %s", l->rp->r->replica_of,
                         rc == -ECONNRESET ? "connection closed"
                                           : strerror(-rc));
    if (f->type == RS_ERROR)
        return link_fail(l, -EPERM, "the primary refused: %.*s", (int)f->len,
                         f->payload);
    if (f->type != type)
        return link_fail(l, -EPROTO, "handshake: expected %s, got %s",
                         rs_type_name(type), rs_type_name(f->type));
    return 0;
}

static int
link_handshake(struct link *l)
{
    struct repl_replica *rp = l->rp;
    struct repl *r = rp->r;
    struct rs_frame f;
    struct rs_hello hello;
    int rc = expect_frame(l, RS_HELLO, &f);
    if (rc)
        return rc;
    if (rs_hello_decode(&f, &hello) != 0 || hello.version != REPL_PROTOCOL)
        return link_fail(l, -EPROTO,
                         "the primary speaks another version of "
                         "the replication protocol");
    if (hello.auth && !r->key.set)
        return link_fail(l, -EPERM,
                         "the primary requires a shared secret: "
                         "start this replica with --repl-secret-file");
    if (!hello.auth && r->key.set)
        return link_fail(l, -EPERM,
                         "the primary has no --repl-secret-file, "
                         "so it cannot prove it knows the secret; not "
                         "following it");
    struct logdir_meta m;
    store_meta(rp->store, &m);
    struct rs_ident *id = calloc(1, sizeof(*id));
    if (!id)
        return -ENOMEM;
    id->version = REPL_PROTOCOL;
    repl_nonce(id->nonce);
    if (r->key.set)
        repl_mac(&r->key, "replica", hello.nonce, id->nonce, id->mac);
    id->port = (uint16_t)r->cfg.client_port;
    id->has_log = m.has_log_id;
    memcpy(id->log_id, m.log_id, 16);
    id->start = store_log_start(rp->store);
    id->end = store_log_end(rp->store);
    id->last_off = store_last_record(rp->store);
    if (id->end > id->start &&
        store_record_checksum(rp->store, id->last_off, id->end,
                              &id->last_sum) != 0)
        id->last_off = id->last_sum = 0;
    id->nepochs = m.nepochs;
    memcpy(id->epochs, m.epochs, m.nepochs * sizeof(*m.epochs));
    char body[RS_MAX_BODY];
    rc = rs_send(l->fd, RS_IDENT, 0, body, (uint32_t)rs_ident_encode(body, id));
    uint8_t nr[RS_NONCE];
    memcpy(nr, id->nonce, RS_NONCE);
    uint64_t end = id->end;
    free(id);
    if (rc)
        return link_fail(l, rc, "sending to the primary: %s", strerror(-rc));
    if ((rc = expect_frame(l, RS_PLAN, &f)))
        return rc;
    if (rs_plan_decode(&f, &l->plan) != 0)
        return link_fail(l, -EPROTO, "a malformed PLAN from the primary");
    if (r->key.set &&
        !repl_mac_ok(&r->key, "primary", hello.nonce, nr, l->plan.mac))
        return link_fail(l, -EPERM,
                         "the primary's answer does not prove it "
                         "knows the secret: not following it");
    say(SAY_INFO, "replica of %s: %s from offset %" PRIu64 " (%s)",
        r->replica_of, l->plan.mode == RS_FULL ? "full copy" : "resuming",
        l->plan.from, l->plan.why);
    struct logdir_meta pm = m;
    memcpy(pm.log_id, l->plan.log_id, 16);
    pm.has_log_id = true;
    pm.nepochs = l->plan.nepochs;
    memcpy(pm.epochs, l->plan.epochs, pm.nepochs * sizeof(*pm.epochs));
    char err[512];
    if (l->plan.mode == RS_FULL && l->plan.copy_end <= l->plan.from)
        return link_fail(l, -EPROTO, "the primary offered an empty copy");
    if (l->plan.mode == RS_FULL) {
        rc = store_copy_begin(rp->store, &pm, l->plan.from, &l->copy, err,
                              sizeof(err));
        if (rc)
            return link_fail(l, rc, "starting a full copy: %s", err);
        pthread_mutex_lock(&rp->mu);
        rp->full_resyncs++;
        rp->copy_end = l->plan.copy_end;
        rp->copy_done = l->plan.from;
        pthread_mutex_unlock(&rp->mu);
        set_state(rp, LINK_COPYING, NULL);
    } else {
        if (l->plan.fork < end) {
            char aside[4096];
            uint64_t records;
            rc = store_cut_log(rp->store, l->plan.fork, aside, sizeof(aside),
                               &records, err, sizeof(err));
            if (rc)
                return link_fail(l, rc, "moving the divergent tail aside: %s",
                                 err);
            pthread_mutex_lock(&rp->mu);
            snprintf(rp->diverged, sizeof(rp->diverged), "%s", aside);
            pthread_mutex_unlock(&rp->mu);
        }
        rc = store_set_history(rp->store, &pm, err, sizeof(err));
        if (rc)
            return link_fail(l, rc, "taking the primary's history: %s", err);
        pthread_mutex_lock(&rp->mu);
        rp->partial_resyncs++;
        pthread_mutex_unlock(&rp->mu);
        set_state(rp, LINK_STREAMING, "");
    }
    l->pend_off = l->plan.from;
    l->acked = 0;
    return 0;
}

static int
send_ack(struct link *l, uint64_t off)
{
    int rc = rs_send(l->fd, RS_ACK, off, NULL, 0);
    l->acked = off;
    l->acked_at = clock_mono_us();
    return rc;
}

/* The offset to acknowledge: what is durable here. */
static uint64_t
durable_here(struct link *l)
{
    return l->copy ? store_copy_durable(l->copy) : store_durable(l->rp->store);
}

/* Hand the pending bytes to the copy or the store; install a complete
 * copy. */
static int
link_take(struct link *l)
{
    struct repl_replica *rp = l->rp;
    char err[512];
    while (l->pend_len) {
        size_t used = 0;
        int rc;
        if (l->copy) {
            uint64_t left = l->plan.copy_end - store_copy_end(l->copy);
            size_t n = l->pend_len < left ? l->pend_len : (size_t)left;
            rc = store_copy_add(l->copy, l->pend, n, &used, err, sizeof(err));
        } else {
            rc = store_append_raw(rp->store, l->pend_off, l->pend, l->pend_len,
                                  &used, err, sizeof(err));
        }
        if (rc)
            return link_fail(l, rc, "the stream at offset %" PRIu64 ": %s",
                             l->pend_off + used, err);
        memmove(l->pend, l->pend + used, l->pend_len - used);
        l->pend_len -= used;
        l->pend_off += used;
        if (l->copy) {
            uint64_t done = store_copy_end(l->copy);
            pthread_mutex_lock(&rp->mu);
            /* long work shows progress: a line per 256 MiB copied */
            if ((done - l->plan.from) >> 28 !=
                (rp->copy_done - l->plan.from) >> 28)
                say(SAY_INFO,
                    "replica of %s: full copy at %" PRIu64 " of %" PRIu64 " MB",
                    rp->r->replica_of, (done - l->plan.from) >> 20,
                    (l->plan.copy_end - l->plan.from) >> 20);
            rp->copy_done = done;
            pthread_mutex_unlock(&rp->mu);
        }
        if (l->copy && store_copy_end(l->copy) >= l->plan.copy_end) {
            struct store_copy *c = l->copy;
            l->copy = NULL;
            rc = store_copy_finish(rp->store, c, l->plan.keep_old, err,
                                   sizeof(err));
            if (rc)
                return link_fail(l, rc, "installing the full copy: %s", err);
            set_state(rp, LINK_STREAMING, "");
            continue;
        }
        if (!used)
            break; /* a partial record: wait for more */
    }
    return 0;
}

static int
link_data(struct link *l, const struct rs_frame *f)
{
    if (f->off != l->pend_off + l->pend_len)
        return link_fail(l, -EPROTO,
                         "the primary sent offset %" PRIu64
                         ", expected %" PRIu64,
                         f->off, l->pend_off + l->pend_len);
    if (l->pend_len + f->len > l->pend_cap) {
        size_t cap = l->pend_cap ? l->pend_cap : 1u << 20;
        while (cap < l->pend_len + f->len)
            cap *= 2;
        char *p = realloc(l->pend, cap);
        if (!p)
            return -ENOMEM;
        l->pend = p;
        l->pend_cap = cap;
    }
    memcpy(l->pend + l->pend_len, f->payload, f->len);
    l->pend_len += f->len;
    return link_take(l);
}

/* What the primary has durable (0: nothing new, only re-judge the lag). */
static void
note_primary(struct repl_replica *rp, uint64_t primary_durable)
{
    int64_t now = clock_mono_us();
    uint64_t mine = store_durable(rp->store);
    pthread_mutex_lock(&rp->mu);
    if (primary_durable)
        rp->last_byte_us = now;
    if (primary_durable > rp->primary_durable)
        rp->primary_durable = primary_durable;
    if (rp->primary_durable <= mine)
        rp->behind_since_us = 0;
    else if (!rp->behind_since_us)
        rp->behind_since_us = now;
    pthread_mutex_unlock(&rp->mu);
}

static int
link_stream(struct link *l)
{
    struct repl_replica *rp = l->rp;
    int64_t last_heard = clock_mono_us();
    for (;;) {
        if (atomic_load(&rp->stop))
            return -ECANCELED;
        uint64_t d = durable_here(l);
        int64_t now = clock_mono_us();
        if (d > l->acked)
            note_primary(rp, 0); /* caught up: the lag clock stops */
        if (d > l->acked || now - l->acked_at > REPL_ACK_MS * 1000) {
            int rc = send_ack(l, d);
            if (rc)
                return link_fail(l, rc, "sending to the primary: %s",
                                 strerror(-rc));
        }
        struct pollfd pfd[2] = {{.fd = l->fd, .events = POLLIN},
                                {.fd = rp->efd, .events = POLLIN}};
        bool buffered = l->rd.used < l->rd.len;
        if (!buffered && poll(pfd, 2, 100) < 0 && errno != EINTR)
            return -errno;
        if (pfd[1].revents & POLLIN) {
            uint64_t v;
            if (read(rp->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                return -errno;
        }
        now = clock_mono_us();
        if (buffered || (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            struct rs_frame f;
            int rc = rs_recv(&l->rd, &f, REPL_SILENCE_MS, &rp->stop);
            if (rc)
                return link_fail(l, rc, "the link to %s: %s", rp->r->replica_of,
                                 rc == -ECONNRESET ? "closed by the primary"
                                 : rc == -EPROTO   ? "a malformed frame"
                                                   : strerror(-rc));
            last_heard = now;
            if (f.type == RS_DATA) {
                note_primary(rp, f.off + f.len);
                if ((rc = link_data(l, &f)))
                    return rc;
            } else if (f.type == RS_PING) {
                note_primary(rp, f.off);
            } else if (f.type == RS_ERROR) {
                return link_fail(l, -EPERM, "the primary closed the link: %.*s",
                                 (int)f.len, f.payload);
            } else {
                return link_fail(l, -EPROTO, "unexpected %s frame",
                                 rs_type_name(f.type));
            }
        } else if (now - last_heard > REPL_SILENCE_MS * 1000) {
            return link_fail(l, -ETIMEDOUT, "nothing from %s for %d s",
                             rp->r->replica_of, REPL_SILENCE_MS / 1000);
        }
    }
}

static void
link_close(struct link *l)
{
    struct repl_replica *rp = l->rp;
    if (l->copy) {
        store_copy_abort(l->copy);
        l->copy = NULL;
    }
    pthread_mutex_lock(&rp->mu);
    rp->fd = -1;
    pthread_mutex_unlock(&rp->mu);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    rs_reader_free(&l->rd);
    free(l->pend);
    l->pend = NULL;
    l->pend_len = l->pend_cap = 0;
}

static void
sleep_ms(struct repl_replica *rp, int ms)
{
    for (int t = 0; t < ms && !atomic_load(&rp->stop); t += 20)
        usleep(20 * 1000);
}

static void *
replica_main(void *arg)
{
    struct repl_replica *rp = arg;
    int backoff = 100;
    struct link *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    while (!atomic_load(&rp->stop)) {
        *l = (struct link){.rp = rp, .fd = -1};
        set_state(rp, LINK_CONNECTING, NULL);
        int rc = link_connect(l);
        if (rc == 0) {
            set_state(rp, LINK_HANDSHAKE, NULL);
            rc = link_handshake(l);
        }
        if (rc == 0) {
            backoff = 100;
            rc = link_stream(l);
        }
        link_close(l);
        if (atomic_load(&rp->stop))
            break;
        set_state(rp, LINK_DOWN, NULL);
        sleep_ms(rp, backoff);
        backoff = backoff * 2 > REPL_BACKOFF_MAX_MS ? REPL_BACKOFF_MAX_MS
                                                    : backoff * 2;
    }
    free(l);
    return NULL;
}

int
replica_start(struct repl *r, char *err, size_t errlen)
{
    struct repl_replica *rp = calloc(1, sizeof(*rp));
    if (!rp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rp->r = r;
    rp->store = r->store;
    rp->fd = -1;
    pthread_mutex_init(&rp->mu, NULL);
    rp->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rp->efd < 0 ||
        store_subscribe_to(rp->store, rp->efd, STORE_WAKE_DURABLE) != 0 ||
        pthread_create(&rp->thread, NULL, replica_main, rp) != 0) {
        snprintf(err, errlen, "starting the replica link: %s", strerror(errno));
        if (rp->efd >= 0)
            close(rp->efd);
        free(rp);
        return -1;
    }
    r->replica = rp;
    return 0;
}

void
replica_stop(struct repl_replica *rp)
{
    atomic_store(&rp->stop, true);
    pthread_mutex_lock(&rp->mu);
    if (rp->fd >= 0)
        shutdown(rp->fd, SHUT_RDWR);
    pthread_mutex_unlock(&rp->mu);
    pthread_join(rp->thread, NULL);
    store_unsubscribe(rp->store, rp->efd);
    close(rp->efd);
    pthread_mutex_destroy(&rp->mu);
    free(rp);
}

void
replica_stats(struct repl_replica *rp,
              void (*fn)(void *arg, const char *name, const char *value),
              void *arg)
{
    uint64_t durable = store_durable(rp->store);
    uint64_t end = store_log_end(rp->store);
    int64_t now = clock_mono_us();
    pthread_mutex_lock(&rp->mu);
    fn(arg, "primary", rp->r->replica_of);
    fn(arg, "link", link_names[rp->state]);
    char buf[64];
    if (rp->last_byte_us)
        snprintf(buf, sizeof(buf), "%.3f",
                 (double)(now - rp->last_byte_us) / 1e6);
    else
        snprintf(buf, sizeof(buf), "-1");
    fn(arg, "link_last_byte_seconds", buf);
    fn(arg, "link_error", rp->last_error[0] ? rp->last_error : "none");
    repl_stat_u64(fn, arg, "applied_offset", end);
    repl_stat_u64(fn, arg, "primary_durable_offset", rp->primary_durable);
    uint64_t lag =
        rp->primary_durable > durable ? rp->primary_durable - durable : 0;
    if (rp->state == LINK_COPYING)
        lag = rp->copy_end > rp->copy_done ? rp->copy_end - rp->copy_done : 0;
    repl_stat_u64(fn, arg, "lag_bytes", lag);
    repl_stat_u64(fn, arg, "lag_ms",
                  lag && rp->behind_since_us
                      ? (uint64_t)(now - rp->behind_since_us) / 1000
                      : 0);
    repl_stat_u64(fn, arg, "connects", rp->connects);
    repl_stat_u64(fn, arg, "full_resyncs", rp->full_resyncs);
    repl_stat_u64(fn, arg, "partial_resyncs", rp->partial_resyncs);
    if (rp->state == LINK_COPYING) {
        repl_stat_u64(fn, arg, "copy_done_offset", rp->copy_done);
        repl_stat_u64(fn, arg, "copy_end_offset", rp->copy_end);
    }
    fn(arg, "serve_stale", rp->r->cfg.serve_stale ? "yes" : "no");
    fn(arg, "diverged_dir", rp->diverged[0] ? rp->diverged : "none");
    pthread_mutex_unlock(&rp->mu);
}
