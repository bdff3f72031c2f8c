/*
 * server: mcdbd's io_uring event loops (start, stop, accept, dispatch).
 *
 * Threading model
 *   --threads workers, each a thread with its own io_uring, its own
 *   listening socket per --listen address (SO_REUSEPORT: the kernel spreads
 *   new connections over the workers), its own provided-buffer ring and its
 *   own connections. A connection lives and dies on the worker that accepted
 *   it. Workers share only the store (thread-safe), the number of open
 *   connections (an atomic touched at accept and close, never per request)
 *   and their statistics counters (each written by its own worker only, read
 *   by "stats" on any worker). The main thread starts the workers and stops
 *   them: net_stop() raises a flag and writes every worker's eventfd.
 *
 * One loop iteration (worker_loop)
 *   1. submit what was queued, wait for at least one completion;
 *   2. handle every completion (worker_dispatch): accept -> conn_open();
 *      recv -> parse and execute requests, their replies queue up on the
 *      connection; send -> drop what went out; read (a value from a segment
 *      file) -> that reply is ready; eventfd -> the store's acks moved:
 *      release the replies of writes that are now durable;
 *   3. flush (worker_flush): each connection whose output changed sends all
 *      its ready replies in one sendmsg (at most one in flight).
 *
 * Writes and durability
 *   A write is executed at once (the engine appends its record and updates
 *   the index) and returns an ack offset. Its reply waits in the output
 *   queue as WAIT_ACK until store_ack_status() says 1, and since replies
 *   leave strictly in request order nothing behind it is sent earlier. The
 *   store writes the worker's eventfd (store_subscribe) whenever acks move;
 *   the worker then re-checks only the connections on its waiters list.
 *   A noreply write still holds the replies behind it, so that a client that
 *   sees any later reply knows the write is durable.
 *
 * Reads
 *   store_lookup() says where the record is. If it is still in the engine's
 *   append buffer it is copied at once (store_read_buffered); otherwise an
 *   IORING_OP_READ of the whole record is queued and the reply waits as
 *   WAIT_READ, so a page-cache miss blocks no other connection. Append,
 *   prepend, incr and decr are executed inside the engine, which reads the
 *   old value synchronously (usually from the page cache): they are the one
 *   place where the loop may wait for the disk.
 *
 * Connection state machine (conn.c; the function that makes each move)
 *
 *   conn_open ──▶ READING ── output > NET_OUT_HIGH (conn_pause) ──▶ PAUSED
 *                  │   ▲                                             │
 *                  │   └──── output < NET_OUT_LOW (conn_resume) ◀────┘
 *                  │   (READING or PAUSED) quit, a protocol error that
 *                  │   loses framing, peer EOF, server stop (conn_drain)
 *                  ▼
 *               DRAINING   no more requests are read; queued replies, and
 *                  │       the acks and reads they wait for, still go out
 *                  │ output queue empty (conn_flush)
 *                  ▼
 *   any error ─▶ CLOSING   shutdown(2) done (conn_close); ring operations
 *                  │       that name the connection (refs) still complete
 *                  │ refs == 0, at the end of a batch (conn_maybe_free)
 *                  ▼
 *                freed, fd closed
 *
 *   Also to CLOSING: a READING connection idle for --idle-timeout
 *   (conn_tick), and one that grows while all connections together hold
 *   more than --conn-memory-limit (conn_account).
 *
 *   Invariants: at most one recv and one send in flight per connection; a
 *   connection is freed only when no ring operation, no list and no pending
 *   engine read (each holds a ref) can name it; replies leave in request
 *   order; queued output stays under NET_OUT_HIGH plus one request's reply.
 *
 * Kernel features (net_probe, said at -v)
 *   multishot accept (5.19; else one accept at a time), provided buffer
 *   rings (5.19; else each connection receives into its own buffer),
 *   multishot recv (6.0; else one recv at a time), SINGLE_ISSUER +
 *   DEFER_TASKRUN (6.1; else COOP_TASKRUN, else none). A feature that the
 *   probe reported but that fails with EINVAL at run time is dropped then.
 *   For tests, MCDB_NET_FALLBACK=accept,recv,bufring,taskrun turns them off.
 */
#include "net/net_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/panic.h"
#include "util/say.h"

#define NET_BIND_RETRIES 50 /* a busy port is tried this many times more */
#define NET_BIND_WAIT_MS 100
#define NET_REFUSED "ERROR Too many open connections\r\n"

/* ---- feature probe ---- */

static bool
fallback_requested(const char *what)
{
    const char *env = getenv("MCDB_NET_FALLBACK");
    if (!env)
        return false;
    size_t n = strlen(what);
    for (const char *p = env; (p = strstr(p, what)); p += n) {
        if ((p == env || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return true;
    }
    return false;
}

static int
ring_init(struct io_uring *ring, unsigned entries, const struct net_features *f)
{
    struct io_uring_params p = {0};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 8;
    if (f->single_issuer)
        p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    else if (f->coop_taskrun)
        p.flags |= IORING_SETUP_COOP_TASKRUN;
    return io_uring_queue_init_params(entries, ring, &p);
}

/* Register a buffer ring of n entries; NULL (and errno set) on failure. */
static struct io_uring_buf_ring *
bufring_register(struct io_uring *ring, unsigned n)
{
    size_t size = n * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return NULL;
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)mem, .ring_entries = n, .bgid = NET_BUF_GROUP};
    int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc != 0) {
        munmap(mem, size);
        errno = -rc;
        return NULL;
    }
    io_uring_buf_ring_init(mem);
    return mem;
}

/* What this kernel offers; -1 if it lacks what mcdbd cannot do without. */
static int
net_probe(struct net_features *f, char *err, size_t errlen)
{
    struct io_uring ring;
    memset(f, 0, sizeof(*f));
    f->single_issuer = !fallback_requested("taskrun");
    if (f->single_issuer && ring_init(&ring, 8, f) == 0)
        goto have_ring;
    f->single_issuer = false;
    f->coop_taskrun = !fallback_requested("taskrun");
    if (f->coop_taskrun && ring_init(&ring, 8, f) == 0)
        goto have_ring;
    f->coop_taskrun = false;
    int rc = ring_init(&ring, 8, f);
    if (rc != 0) {
        snprintf(err, errlen, "io_uring_setup: %s", strerror(-rc));
        return -1;
    }
have_ring:;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    static const int needed[] = {IORING_OP_ACCEPT,  IORING_OP_RECV,
                                 IORING_OP_SENDMSG, IORING_OP_SEND,
                                 IORING_OP_READ,    IORING_OP_ASYNC_CANCEL,
                                 IORING_OP_TIMEOUT};
    for (size_t i = 0; i < sizeof(needed) / sizeof(*needed); i++) {
        if (!probe || !io_uring_opcode_supported(probe, needed[i])) {
            snprintf(err, errlen,
                     "this kernel's io_uring lacks opcode %d "
                     "(mcdbd needs Linux 5.6 or later)",
                     needed[i]);
            io_uring_free_probe(probe);
            io_uring_queue_exit(&ring);
            return -1;
        }
    }
    struct io_uring_buf_ring *br = bufring_register(&ring, 8);
    if (br) {
        io_uring_unregister_buf_ring(&ring, NET_BUF_GROUP);
        munmap(br, 8 * sizeof(struct io_uring_buf));
    }
    f->buf_ring = br && !fallback_requested("bufring");
    /* Multishot accept came with IORING_OP_SOCKET (5.19), multishot recv
     * with IORING_OP_SEND_ZC (6.0); a wrong guess is caught at run time. */
    f->ms_accept = io_uring_opcode_supported(probe, IORING_OP_SOCKET) &&
                   !fallback_requested("accept");
    f->ms_recv = f->buf_ring &&
                 io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) &&
                 !fallback_requested("recv");
    io_uring_free_probe(probe);
    io_uring_queue_exit(&ring);
    return 0;
}

static void
net_say_features(const struct net_features *f)
{
    say(SAY_VERBOSE,
        "io_uring: multishot accept %s, provided buffer ring %s, multishot "
        "recv %s, task running %s",
        f->ms_accept ? "yes" : "no (one accept at a time)",
        f->buf_ring ? "yes" : "no (a buffer per connection)",
        f->ms_recv ? "yes" : "no (one recv at a time)",
        f->single_issuer  ? "single issuer, deferred"
        : f->coop_taskrun ? "cooperative"
                          : "default");
}

/* ---- listening sockets ---- */

void
net_addr_name(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(buf, len, "[%s]:%u", host, port);
    } else {
        const struct sockaddr_in *a = (const void *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(buf, len, "%s:%u", host, port);
    }
}

static int
listen_socket(const struct addrinfo *ai, bool reuseport)
{
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        (reuseport && listen(fd, NET_BACKLOG) != 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/*
 * One SO_REUSEPORT socket per worker for address ai. A plain bind first:
 * SO_REUSEPORT would otherwise let a second server of the same user share
 * the port silently instead of failing.
 */
static int
net_bind_addr(struct net *net, const struct addrinfo *ai, char *err,
              size_t errlen)
{
    char name[64];
    net_addr_name(ai->ai_addr, name, sizeof(name));
    int probe = listen_socket(ai, false);
    /* A server killed a moment ago on this data directory (we hold its
     * LOCK, so it is gone) may still hold the port while the kernel tears
     * its io_uring down: wait for it a few seconds rather than fail a
     * restart. */
    int waited = 0;
    for (; probe < 0 && errno == EADDRINUSE && waited < NET_BIND_RETRIES;
         waited++) {
        if (waited == 0)
            say(SAY_INFO,
                "%s is still held (a server that just stopped?); "
                "waiting for it",
                name);
        usleep(NET_BIND_WAIT_MS * 1000);
        probe = listen_socket(ai, false);
    }
    if (probe < 0) {
        char after[32] = "";
        if (waited)
            snprintf(after, sizeof(after), " (after waiting %.1f s)",
                     waited * NET_BIND_WAIT_MS / 1000.0);
        snprintf(err, errlen, "cannot listen on %s: %s%s", name,
                 strerror(errno), after);
        return -1;
    }
    close(probe);
    unsigned a = net->naddrs++;
    net->addr_names =
        realloc(net->addr_names, net->naddrs * sizeof(*net->addr_names));
    snprintf(net->addr_names[a], sizeof(net->addr_names[a]), "%s", name);
    /* listen_fds is [addr][worker]. */
    net->listen_fds = realloc(net->listen_fds, net->naddrs * net->nworkers *
                                                   sizeof(*net->listen_fds));
    int *fds = net->listen_fds + (size_t)a * net->nworkers;
    for (unsigned w = 0; w < net->nworkers; w++)
        fds[w] = -1;
    for (unsigned w = 0; w < net->nworkers; w++) {
        fds[w] = listen_socket(ai, true);
        if (fds[w] < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", name,
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int
net_bind_all(struct net *net, char *err, size_t errlen)
{
    char *list = strdup(net->cfg.listen), *save = NULL, port[16];
    snprintf(port, sizeof(port), "%u", net->cfg.port);
    int rc = 0;
    for (char *a = strtok_r(list, ",", &save); a && rc == 0;
         a = strtok_r(NULL, ",", &save)) {
        size_t len = strlen(a);
        if (a[0] == '[' && len > 2 && a[len - 1] == ']') {
            a[len - 1] = '\0';
            a++;
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *res = NULL;
        int g = getaddrinfo(a, port, &hints, &res);
        if (g != 0) {
            snprintf(err, errlen, "cannot resolve %s: %s", a, gai_strerror(g));
            rc = -1;
        }
        for (struct addrinfo *ai = res; ai && rc == 0; ai = ai->ai_next)
            rc = net_bind_addr(net, ai, err, errlen);
        if (res)
            freeaddrinfo(res);
    }
    free(list);
    return rc;
}

/* Enough descriptors for --max-connections plus the store's and ours. */
static void
net_raise_nofile(unsigned max_conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)max_conns + NET_RESERVED_FDS;
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        rl.rlim_cur = rl.rlim_max;
    if (rl.rlim_max < want && geteuid() == 0)
        rl.rlim_max = rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        say(SAY_WARN,
            "open files limit is %llu, below --max-connections "
            "+ %u; raise it (ulimit -n)",
            (unsigned long long)rl.rlim_cur, NET_RESERVED_FDS);
}

/* ---- ring helpers ---- */

struct io_uring_sqe *
worker_sqe(struct worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    if (!sqe) {
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    if (!sqe) {
        MCDB_PANIC("worker %u: io_uring submission queue stuck", w->id);
    }
    return sqe;
}

void
worker_return_buf(struct worker *w, unsigned bid)
{
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * NET_BUF_SIZE,
                          NET_BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(NET_BUF_COUNT), 0);
    io_uring_buf_ring_advance(w->br, 1);
}

void
worker_cancel(struct worker *w, uint64_t ud)
{
    struct io_uring_sqe *sqe = worker_sqe(w);
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

void
worker_sum(struct net *net, struct net_sums *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (unsigned i = 0; i < net->nworkers; i++) {
        struct worker *w = &net->workers[i];
#define X(name)                                                                \
    sum->name += atomic_load_explicit(&w->w_cnt.name, memory_order_relaxed);
        NET_COUNTERS(X)
#undef X
    }
}

/* ---- accept ---- */

static void
listener_arm(struct listener *l)
{
    struct worker *w = l->w;
    if (l->armed || l->closed)
        return;
    struct io_uring_sqe *sqe = worker_sqe(w);
    if (w->feat.ms_accept)
        io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_make(l, UD_ACCEPT));
    l->armed = true;
}

/* Out of descriptors or memory: try again in 100 ms rather than spin.
 * memcached counts the same pause as listen_disabled_num ("stats"). */
#define NET_ACCEPT_PAUSE_MS 100

static void
listener_pause(struct listener *l)
{
    struct io_uring_sqe *sqe = worker_sqe(l->w);
    CNT_INC(l->w, listen_disabled_num);
    atomic_fetch_add_explicit(&l->w->nls_paused, 1, memory_order_relaxed);
    l->pause = (struct __kernel_timespec){.tv_nsec = NET_ACCEPT_PAUSE_MS *
                                                     1000 * 1000};
    io_uring_prep_timeout(sqe, &l->pause, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(l, UD_TIMER));
    l->armed = true;
}

static void
listener_close_if_idle(struct listener *l)
{
    if (l->w->stopping && !l->armed && !l->closed) {
        close(l->fd);
        l->closed = true;
        l->w->nls_open--;
    }
}

/* memcached's answer to one connection too many, then close. */
static void
worker_refuse(struct worker *w, int fd)
{
    CNT_INC(w, rejected_connections); /* before the client can see it */
    ssize_t n = send(fd, NET_REFUSED, sizeof(NET_REFUSED) - 1,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n;
    close(fd);
    say(SAY_VERBOSE, "refused a connection: --max-connections %u reached",
        w->net->cfg.max_connections);
}

static void
worker_on_accept(struct listener *l, const struct io_uring_cqe *cqe)
{
    struct worker *w = l->w;
    if (!(cqe->flags & IORING_CQE_F_MORE))
        l->armed = false;
    if (cqe->res < 0) {
        int e = -cqe->res;
        if (e == EINVAL && w->feat.ms_accept && !w->stopping) {
            say(SAY_WARN, "multishot accept refused; accepting one at a time");
            w->feat.ms_accept = false;
        } else if (e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOBUFS) {
            say(SAY_WARN, "accept on %s: %s", l->name, strerror(e));
            if (!l->armed && !w->stopping)
                listener_pause(l);
        } else if (e != ECANCELED && e != EINTR && e != ECONNABORTED) {
            say(SAY_WARN, "accept on %s: %s", l->name, strerror(e));
        }
    } else if (w->stopping) {
        close(cqe->res);
    } else if (atomic_fetch_add(&w->net->conns, 1) >=
               w->net->cfg.max_connections) {
        atomic_fetch_sub(&w->net->conns, 1);
        worker_refuse(w, cqe->res);
    } else {
        conn_open(w, cqe->res);
    }
    if (!w->stopping)
        listener_arm(l);
    listener_close_if_idle(l);
}

static void
listener_on_timer(struct listener *l)
{
    CNT_ADD(l->w, time_in_listen_disabled_us, NET_ACCEPT_PAUSE_MS * 1000);
    atomic_fetch_sub_explicit(&l->w->nls_paused, 1, memory_order_relaxed);
    l->armed = false;
    if (!l->w->stopping)
        listener_arm(l);
    listener_close_if_idle(l);
}

/* ---- the loop ---- */

/* The store's acks moved (or net_stop): release what became durable. */
static void
worker_on_wake(struct worker *w, int res)
{
    w->wake_armed = false;
    (void)res;
    struct conn *next;
    for (struct conn *c = w->waiters; c; c = next) {
        next = c->wnext;
        conn_resolve(c);
    }
}

static void
worker_arm_wake(struct worker *w)
{
    if (w->wake_armed)
        return;
    struct io_uring_sqe *sqe = worker_sqe(w);
    io_uring_prep_read(sqe, w->wake_fd, &w->wake_val, sizeof(w->wake_val), 0);
    io_uring_sqe_set_data64(sqe, ud_make(w, UD_WAKE));
    w->wake_armed = true;
}

/* --idle-timeout: a timeout every tick_ms; each connection counts it. */
static void
worker_arm_tick(struct worker *w)
{
    if (w->tick_ms == 0 || w->tick_armed || w->stopping)
        return;
    struct io_uring_sqe *sqe = worker_sqe(w);
    w->tick = (struct __kernel_timespec){
        .tv_sec = w->tick_ms / 1000,
        .tv_nsec = (long long)(w->tick_ms % 1000) * 1000 * 1000};
    io_uring_prep_timeout(sqe, &w->tick, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(w, UD_TICK));
    w->tick_armed = true;
}

static void
worker_on_tick(struct worker *w)
{
    w->tick_armed = false;
    if (w->stopping)
        return;
    for (struct conn *c = w->conns; c; c = c->next)
        if (c->state != CONN_CLOSING)
            conn_tick(c, w->tick_ms);
    worker_arm_tick(w);
}

static void
worker_dispatch(struct worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    void *p = ud_ptr(ud);
    switch ((enum ud_tag)(ud & UD_TAG_MASK)) {
    case UD_IGNORE:
        break;
    case UD_ACCEPT:
        worker_on_accept(p, cqe);
        break;
    case UD_RECV:
        conn_on_recv(p, cqe);
        break;
    case UD_SEND:
        conn_on_send(p, cqe->res);
        break;
    case UD_READ:
        conn_on_read(p, cqe->res);
        break;
    case UD_WAKE:
        worker_on_wake(w, cqe->res);
        break;
    case UD_TIMER:
        listener_on_timer(p);
        break;
    case UD_TICK:
        worker_on_tick(w);
        break;
    }
}

static void
worker_reap(struct worker *w)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&w->ring, head, cqe)
    {
        worker_dispatch(w, cqe);
        n++;
    }
    io_uring_cq_advance(&w->ring, n);
}

/* Send what each touched connection has ready (one sendmsg each). */
static void
worker_flush(struct worker *w)
{
    struct conn *c;
    while ((c = w->dirty)) {
        w->dirty = c->dirty_next;
        c->dirty = false;
        if (c->state == CONN_CLOSING)
            conn_maybe_free(c);
        else
            conn_flush(c);
    }
}

/* Stop accepting; let every connection finish what it has received. */
static void
worker_begin_stop(struct worker *w)
{
    w->stopping = true;
    w->stop_deadline_ms = (uint64_t)clock_mono_ms() + NET_STOP_GRACE_MS;
    for (unsigned i = 0; i < w->nls; i++) {
        struct listener *l = &w->ls[i];
        if (l->armed) {
            worker_cancel(w, ud_make(l, UD_ACCEPT));
            worker_cancel(w, ud_make(l, UD_TIMER));
        }
        listener_close_if_idle(l);
    }
    if (w->tick_armed)
        worker_cancel(w, ud_make(w, UD_TICK));
    for (struct conn *c = w->conns; c; c = c->next)
        conn_stop_reading(c);
}

static void
worker_force_close(struct worker *w)
{
    unsigned n = 0;
    for (struct conn *c = w->conns; c; c = c->next) {
        if (c->state != CONN_CLOSING) {
            conn_close(c);
            n++;
        }
    }
    if (n)
        say(SAY_WARN,
            "worker %u: closed %u connections still busy %d s "
            "after the stop",
            w->id, n, NET_STOP_GRACE_MS / 1000);
    w->stop_deadline_ms = UINT64_MAX;
}

static bool
worker_done(const struct worker *w)
{
    return w->stopping && !w->conns && w->nls_open == 0;
}

static int
worker_loop(struct worker *w)
{
    struct net *net = w->net;
    while (!worker_done(w)) {
        worker_arm_wake(w);
        int rc;
        if (w->stopping) {
            struct __kernel_timespec ts = {.tv_nsec = 100 * 1000 * 1000};
            struct io_uring_cqe *cqe;
            rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        } else {
            rc = io_uring_submit_and_wait(&w->ring, 1);
        }
        if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY &&
            rc != -EAGAIN) {
            say(SAY_ERROR, "worker %u: io_uring_enter: %s", w->id,
                strerror(-rc));
            return -1;
        }
        worker_reap(w);
        worker_flush(w);
        if (!w->stopping && atomic_load(&net->stopping))
            worker_begin_stop(w);
        if (w->stopping && (uint64_t)clock_mono_ms() > w->stop_deadline_ms)
            worker_force_close(w);
    }
    return 0;
}

/* ---- worker set-up and teardown ---- */

static int
worker_setup_bufs(struct worker *w)
{
    w->br = bufring_register(&w->ring, NET_BUF_COUNT);
    if (!w->br)
        return -errno;
    w->bufs = malloc((size_t)NET_BUF_COUNT * NET_BUF_SIZE);
    if (!w->bufs)
        return -ENOMEM;
    for (unsigned i = 0; i < NET_BUF_COUNT; i++)
        io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * NET_BUF_SIZE,
                              NET_BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(NET_BUF_COUNT), (int)i);
    io_uring_buf_ring_advance(w->br, NET_BUF_COUNT);
    return 0;
}

static int
worker_init(struct worker *w, char *err, size_t errlen)
{
    int rc = vcache_init(&w->vc, w->net->cfg.value_cache / w->net->nworkers);
    if (rc != 0) {
        snprintf(err, errlen, "worker %u: value cache: %s", w->id,
                 strerror(-rc));
        return -1;
    }
    rc = ring_init(&w->ring, NET_RING_ENTRIES, &w->feat);
    if (rc != 0) {
        snprintf(err, errlen, "io_uring_setup: %s", strerror(-rc));
        return -1;
    }
    w->ring_ok = true;
    if (w->feat.buf_ring && (rc = worker_setup_bufs(w)) != 0) {
        say(SAY_WARN,
            "worker %u: provided buffer ring: %s; receiving into "
            "per-connection buffers",
            w->id, strerror(-rc));
        w->feat.buf_ring = w->feat.ms_recv = false;
    }
    w->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (w->wake_fd < 0 ||
        (rc = store_subscribe(w->net->store, w->wake_fd)) != 0) {
        snprintf(err, errlen, "worker %u: eventfd: %s", w->id,
                 w->wake_fd < 0 ? strerror(errno) : store_strerror(rc));
        return -1;
    }
    struct net *net = w->net;
    w->nls = w->nls_open = net->naddrs;
    w->ls = calloc(net->naddrs, sizeof(*w->ls));
    for (unsigned a = 0; a < net->naddrs; a++) {
        struct listener *l = &w->ls[a];
        l->w = w;
        int *slot = &net->listen_fds[(size_t)a * net->nworkers + w->id];
        l->fd = *slot;
        *slot = -1; /* the worker closes it now */
        snprintf(l->name, sizeof(l->name), "%s", net->addr_names[a]);
        listener_arm(l);
    }
    worker_arm_wake(w);
    /* Ticks of a quarter of the timeout, at most a second: a connection is
     * closed after at least the timeout and at most one tick more. */
    unsigned idle = net->cfg.idle_timeout;
    w->tick_ms = idle == 0 ? 0 : idle < 4 ? 250 * idle : 1000;
    worker_arm_tick(w);
    rc = io_uring_submit(&w->ring);
    if (rc < 0) {
        snprintf(err, errlen, "io_uring_submit: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

static void
worker_teardown(struct worker *w)
{
    for (unsigned i = 0; i < w->nls; i++)
        if (!w->ls[i].closed)
            close(w->ls[i].fd);
    free(w->ls);
    w->ls = NULL;
    /* The eventfd itself stays open until net_free(): net_stop() may still
     * write to it from another thread. */
    if (w->wake_fd >= 0)
        store_unsubscribe(w->net->store, w->wake_fd);
    if (w->ring_ok) {
        if (w->br)
            io_uring_unregister_buf_ring(&w->ring, NET_BUF_GROUP);
        io_uring_queue_exit(&w->ring);
    }
    if (w->br)
        munmap(w->br, NET_BUF_COUNT * sizeof(struct io_uring_buf));
    free(w->bufs);
    conn_free_caches(w);
    vcache_free(&w->vc);
}

static void
net_report_start(struct net *net, const char *err)
{
    pthread_mutex_lock(&net->lock);
    if (err) {
        if (!net->start_failed)
            snprintf(net->start_err, sizeof(net->start_err), "%s", err);
        net->start_failed = true;
    }
    net->nready++;
    pthread_cond_broadcast(&net->cond);
    pthread_mutex_unlock(&net->lock);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    char name[16], err[256];
    snprintf(name, sizeof(name), "mcdb-w%u", w->id);
    pthread_setname_np(pthread_self(), name);
    if (worker_init(w, err, sizeof(err)) != 0) {
        net_report_start(w->net, err);
        worker_teardown(w);
        return NULL;
    }
    net_report_start(w->net, NULL);
    if (worker_loop(w) != 0) {
        atomic_store(&w->net->failed, true);
        atomic_store(&w->net->stopping, true);
        /* Wake the others so that they stop too (this one's connections
         * die with its ring), and the caller's sigwait() (net.h). */
        kill(getpid(), SIGTERM);
        for (unsigned i = 0; i < w->net->nworkers; i++)
            if (w->net->workers[i].wake_fd >= 0) {
                uint64_t one = 1;
                ssize_t n = write(w->net->workers[i].wake_fd, &one, 8);
                (void)n;
            }
    }
    worker_teardown(w);
    return NULL;
}

/* ---- public ---- */

static void
net_free(struct net *net)
{
    if (net->listen_fds)
        for (unsigned i = 0; i < net->naddrs * net->nworkers; i++)
            if (net->listen_fds[i] >= 0)
                close(net->listen_fds[i]);
    free(net->listen_fds);
    free(net->addr_names);
    for (unsigned i = 0; net->workers && i < net->nworkers; i++)
        if (net->workers[i].wake_fd >= 0)
            close(net->workers[i].wake_fd);
    free(net->workers);
    stats_detail_free(net);
    pthread_mutex_destroy(&net->lock);
    pthread_cond_destroy(&net->cond);
    net_config_free(&net->cfg);
    auth_free(net->auth);
    free(net);
}

static int
net_spawn(struct net *net, char *err, size_t errlen)
{
    unsigned started = 0;
    for (; started < net->nworkers; started++) {
        struct worker *w = &net->workers[started];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(rc));
            net->start_failed = true;
            break;
        }
    }
    pthread_mutex_lock(&net->lock);
    while (net->nready < started)
        pthread_cond_wait(&net->cond, &net->lock);
    bool failed = net->start_failed;
    if (failed && net->start_err[0])
        snprintf(err, errlen, "%s", net->start_err);
    pthread_mutex_unlock(&net->lock);
    if (!failed)
        return 0;
    net_stop(net);
    for (unsigned i = 0; i < started; i++)
        pthread_join(net->workers[i].thread, NULL);
    return -1;
}

int
net_check(const struct net_config *cfg, char *err, size_t errlen)
{
    auth_t *a = NULL;
    if (cfg->auth_file[0] && auth_load(cfg->auth_file, &a, err, errlen) != 0)
        return -1;
    auth_free(a);
    return 0;
}

int
net_start(const struct net_config *cfg, store_t *store, repl_t *repl,
          net_t **out, char *err, size_t errlen)
{
    struct net *net = calloc(1, sizeof(*net));
    net_config_copy(&net->cfg, cfg);
    net->store = store;
    net->repl = repl;
    net->nworkers = cfg->threads;
    net->started = store_now(store);
    pthread_mutex_init(&net->lock, NULL);
    pthread_cond_init(&net->cond, NULL);
    if ((cfg->auth_file[0] &&
         auth_load(cfg->auth_file, &net->auth, err, errlen) != 0) ||
        net_probe(&net->feat, err, errlen) != 0 ||
        net_bind_all(net, err, errlen) != 0) {
        net_free(net);
        return -1;
    }
    net_say_features(&net->feat);
    net_raise_nofile(cfg->max_connections);
    net->workers = calloc(net->nworkers, sizeof(*net->workers));
    for (unsigned i = 0; i < net->nworkers; i++) {
        net->workers[i].net = net;
        net->workers[i].id = i;
        net->workers[i].feat = net->feat;
        net->workers[i].wake_fd = -1;
    }
    if (net_spawn(net, err, errlen) != 0) {
        net_free(net);
        return -1;
    }
    for (unsigned a = 0; a < net->naddrs; a++)
        say(SAY_INFO, "listening on %s (%u threads)", net->addr_names[a],
            net->nworkers);
    if (net->auth) {
        struct stat st;
        if (stat(cfg->auth_file, &st) == 0 && (st.st_mode & 077))
            say(SAY_WARN,
                "--auth-file %s can be read by other users; chmod 600 it",
                cfg->auth_file);
        say(SAY_INFO, "clients log in first: %u users in %s",
            auth_count(net->auth), cfg->auth_file);
    }
    *out = net;
    return 0;
}

void
net_stop(net_t *net)
{
    atomic_store(&net->stopping, true);
    for (unsigned i = 0; i < net->nworkers; i++) {
        if (net->workers[i].wake_fd >= 0) {
            uint64_t one = 1;
            ssize_t n = write(net->workers[i].wake_fd, &one, sizeof(one));
            (void)n;
        }
    }
}

int
net_wait(net_t *net)
{
    for (unsigned i = 0; i < net->nworkers; i++)
        pthread_join(net->workers[i].thread, NULL);
    int rc = atomic_load(&net->failed) ? -1 : 0;
    net_free(net);
    return rc;
}
