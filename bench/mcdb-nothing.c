/*
 * mcdb-nothing: a server that speaks memcached's text protocol and stores
 * nothing, the yardstick of issue 15: what answering the protocol costs
 * when there is no store behind it, next to which mcdbd's, memcached's and
 * Redis's CPU per operation can be read.
 *
 *   cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release
 *   cmake --build build-release -j2 --target mcdb-nothing mcdb-bench
 *   taskset -c 1 build-release/bench/mcdb-nothing --port 11411 &
 *   taskset -c 0 build-release/bench/mcdb-bench --server 127.0.0.1:11411 \
 *       --connections 50 --pipeline 16 --ratio 0:1 --duration 10
 *   build-release/bench/mcdb-nothing --help
 *
 * What it answers
 *
 *   get|gets KEY...       every key hits: VALUE KEY 0 N (gets: and cas 1),
 *                         N bytes of one fixed value (--value-size), then END
 *   set|add|replace|append|prepend KEY FLAGS EXPTIME BYTES [noreply]
 *   cas KEY FLAGS EXPTIME BYTES CAS [noreply]
 *                         the data block is read and dropped; STORED
 *   delete KEY [...]      DELETED
 *   flush_all [...]       OK
 *   version               VERSION mcdb-nothing
 *   stats                 pid, uptime, time, version, curr_connections,
 *                         total_connections, cmd_get, cmd_set, get_hits,
 *                         get_misses, threads; "stats GROUP": END alone
 *   quit                  the connection is closed
 *   anything else         ERROR
 *
 * A data block that does not end in \r\n is answered CLIENT_ERROR bad data
 * chunk (as memcached does); a key over 250 bytes or a malformed storage
 * line CLIENT_ERROR bad command line format; a line that does not fit the
 * input buffer (IBUF_SIZE) CLIENT_ERROR line too long, and the connection is
 * closed.
 *
 * How it works: plainly, the way memcached and Redis do it, with no trick
 * that a real server could not use. One thread, one epoll loop
 * (level-triggered) over non-blocking sockets with TCP_NODELAY. On a
 * readable socket it reads what the socket has into the connection's input
 * buffer (again while a read fills the buffer), answers every complete
 * request in it into the output buffer, and sends that with one send(). A
 * request split across reads waits in the buffer for the rest; a data block
 * is dropped as it arrives (conn_skip), however it is split. While a reply
 * is not fully sent, the connection waits for EPOLLOUT and reads nothing
 * more. SIGTERM and SIGINT end the loop and exit 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* X(name, metavar, default, help); the long option is the name with '-'. */
#define NOTHING_OPTIONS(X)                                                     \
    X(port, "PORT", "11211", "TCP port to listen on")                          \
    X(listen, "ADDR", "127.0.0.1",                                             \
      "address to listen on; loopback only (127.0.0.0/8, ::1)")                \
    X(value_size, "N", "100",                                                  \
      "bytes of the value every get answers (0 to " VALUE_MAX_TEXT ")")

#define VALUE_MAX (1u << 20) /* memcached's default item size limit */
#define VALUE_MAX_TEXT "1048576"
#define KEY_MAX 250
#define IBUF_SIZE (64u << 10) /* the longest request line, a multi-get */
#define OBUF_INIT (16u << 10)
#define EVENTS_MAX 256
#define BACKLOG 1024
#define VERSION_TEXT "mcdb-nothing"

enum opt_id {
#define X(name, meta, def, help) OPT_##name,
    NOTHING_OPTIONS(X)
#undef X
        OPT_COUNT,
    OPT_HELP = OPT_COUNT,
};

static const char *const opt_defaults[] = {
#define X(name, meta, def, help) def,
    NOTHING_OPTIONS(X)
#undef X
};

struct conn {
    int fd;
    char *ibuf; /* IBUF_SIZE bytes: ibuf[istart, iend) is unread */
    size_t istart, iend;
    char *obuf; /* obuf[osent, olen) is still to be sent */
    size_t olen, osent, ocap;
    uint64_t skip;     /* bytes of a data block still to drop, \r\n included */
    char term[2];      /* the last two bytes dropped: the block's \r\n */
    bool reply_stored; /* when the block is dropped, answer STORED */
    bool closing;      /* close once obuf is sent (quit, line too long) */
    bool want_out;     /* EPOLLOUT armed: waiting to send the rest */
};

static struct {
    char *value; /* the value every get answers */
    size_t value_len;
    int ep;
    time_t started;
    uint64_t curr_conns, total_conns, cmd_get, cmd_set;
} srv;

static volatile sig_atomic_t stopping;

static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mcdb-nothing: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(mcdb-nothing --help lists the options)\n", stderr);
    va_end(ap);
    exit(2);
}

static void die(const char *what) __attribute__((noreturn));

static void
die(const char *what)
{
    fprintf(stderr, "mcdb-nothing: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void
usage(void)
{
    printf("usage: mcdb-nothing [options]\n"
           "A memcached text-protocol server that stores nothing: every get "
           "hits one fixed\nvalue, every set is dropped and answered STORED. "
           "A yardstick for CPU per op.\n\noptions:\n");
#define X(name, meta, def, help)                                               \
    {                                                                          \
        char opt[64];                                                          \
        snprintf(opt, sizeof(opt), "--%s %s", #name, meta);                    \
        for (char *p = opt; *p; p++)                                           \
            if (*p == '_')                                                     \
                *p = '-';                                                      \
        printf("  %-22s %s (default %s)\n", opt, help, def);                   \
    }
    NOTHING_OPTIONS(X)
#undef X
    printf("  %-22s %s\n", "--help", "this text");
}

static unsigned long
number_arg(const char *name, const char *s, unsigned long max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v > max)
        usage_error("--%s %s: not a number from 0 to %lu", name, s, max);
    return v;
}

/* ---- output ---- */

static void
out_reserve(struct conn *c, size_t n)
{
    if (c->olen + n <= c->ocap)
        return;
    size_t cap = c->ocap;
    while (cap < c->olen + n)
        cap *= 2;
    char *p = realloc(c->obuf, cap);
    if (!p)
        die("realloc");
    c->obuf = p;
    c->ocap = cap;
}

static inline void
out_put(struct conn *c, const void *s, size_t n)
{
    out_reserve(c, n);
    memcpy(c->obuf + c->olen, s, n);
    c->olen += n;
}

#define OUT_LIT(c, lit) out_put((c), (lit), sizeof(lit) - 1)

static void
out_u64(struct conn *c, uint64_t v)
{
    char buf[24], *p = buf + sizeof(buf);
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_put(c, p, (size_t)(buf + sizeof(buf) - p));
}

static void
out_stat(struct conn *c, const char *name, uint64_t v)
{
    OUT_LIT(c, "STAT ");
    out_put(c, name, strlen(name));
    OUT_LIT(c, " ");
    out_u64(c, v);
    OUT_LIT(c, "\r\n");
}

/* ---- requests ---- */

static inline bool
is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* The next space-separated token of [*p, end), or NULL; *len its length. */
static const char *
next_token(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    while (s < end && is_space(*s))
        s++;
    if (s == end)
        return NULL;
    const char *t = s;
    while (t < end && !is_space(*t))
        t++;
    *len = (size_t)(t - s);
    *p = t;
    return s;
}

static bool
token_is(const char *t, size_t len, const char *word)
{
    return t && len == strlen(word) && memcmp(t, word, len) == 0;
}

static bool
token_u64(const char *t, size_t len, uint64_t *v)
{
    if (!t || len == 0 || len > 20)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (t[i] < '0' || t[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(t[i] - '0');
    }
    *v = n;
    return true;
}

/* Does the rest of the line end with the word noreply? */
static bool
has_noreply(const char *p, const char *end)
{
    const char *last = NULL, *t;
    size_t len = 0, n;
    while ((t = next_token(&p, end, &n))) {
        last = t;
        len = n;
    }
    return token_is(last, len, "noreply");
}

static void
cmd_get(struct conn *c, const char *p, const char *end, bool cas)
{
    const char *key;
    size_t klen;
    size_t mark = c->olen;
    bool any = false;
    while ((key = next_token(&p, end, &klen))) {
        if (klen > KEY_MAX) {
            c->olen = mark; /* memcached answers only the error */
            OUT_LIT(c, "CLIENT_ERROR bad command line format\r\n");
            return;
        }
        any = true;
        srv.cmd_get++;
        OUT_LIT(c, "VALUE ");
        out_put(c, key, klen);
        OUT_LIT(c, " 0 ");
        out_u64(c, srv.value_len);
        if (cas)
            OUT_LIT(c, " 1");
        OUT_LIT(c, "\r\n");
        out_put(c, srv.value, srv.value_len);
        OUT_LIT(c, "\r\n");
    }
    if (any)
        OUT_LIT(c, "END\r\n");
    else
        OUT_LIT(c, "ERROR\r\n");
}

/* KEY FLAGS EXPTIME BYTES [CAS] [noreply]: drop the data block next. */
static void
cmd_store(struct conn *c, const char *p, const char *end, bool cas)
{
    const char *t[5] = {0};
    size_t n[5] = {0};
    int want = cas ? 5 : 4;
    uint64_t flags, exptime, bytes, unique;
    for (int i = 0; i < want; i++)
        t[i] = next_token(&p, end, &n[i]);
    if (!t[want - 1] || n[0] > KEY_MAX || !token_u64(t[1], n[1], &flags) ||
        !token_u64(t[2], n[2], &exptime) || !token_u64(t[3], n[3], &bytes) ||
        (cas && !token_u64(t[4], n[4], &unique)) || bytes > INT32_MAX) {
        OUT_LIT(c, "CLIENT_ERROR bad command line format\r\n");
        return;
    }
    srv.cmd_set++;
    c->skip = bytes + 2;
    c->term[0] = c->term[1] = 0;
    c->reply_stored = !has_noreply(p, end);
}

/* Answer one request line [line, end) (without its line end). */
static void
request(struct conn *c, const char *line, const char *end)
{
    const char *p = line;
    size_t n;
    const char *cmd = next_token(&p, end, &n);
    if (token_is(cmd, n, "get")) {
        cmd_get(c, p, end, false);
    } else if (token_is(cmd, n, "set") || token_is(cmd, n, "add") ||
               token_is(cmd, n, "replace") || token_is(cmd, n, "append") ||
               token_is(cmd, n, "prepend")) {
        cmd_store(c, p, end, false);
    } else if (token_is(cmd, n, "gets")) {
        cmd_get(c, p, end, true);
    } else if (token_is(cmd, n, "cas")) {
        cmd_store(c, p, end, true);
    } else if (token_is(cmd, n, "delete")) {
        const char *key = next_token(&p, end, &n);
        if (!key)
            OUT_LIT(c, "ERROR\r\n");
        else if (n > KEY_MAX)
            OUT_LIT(c, "CLIENT_ERROR bad command line format\r\n");
        else if (!has_noreply(p, end))
            OUT_LIT(c, "DELETED\r\n");
    } else if (token_is(cmd, n, "flush_all")) {
        if (!has_noreply(p, end))
            OUT_LIT(c, "OK\r\n");
    } else if (token_is(cmd, n, "version")) {
        OUT_LIT(c, "VERSION " VERSION_TEXT "\r\n");
    } else if (token_is(cmd, n, "stats")) {
        if (!next_token(&p, end, &n)) {
            time_t now = time(NULL);
            out_stat(c, "pid", (uint64_t)getpid());
            out_stat(c, "uptime", (uint64_t)(now - srv.started));
            out_stat(c, "time", (uint64_t)now);
            OUT_LIT(c, "STAT version " VERSION_TEXT "\r\n");
            out_stat(c, "curr_connections", srv.curr_conns);
            out_stat(c, "total_connections", srv.total_conns);
            out_stat(c, "cmd_get", srv.cmd_get);
            out_stat(c, "cmd_set", srv.cmd_set);
            out_stat(c, "get_hits", srv.cmd_get);
            out_stat(c, "get_misses", 0);
            out_stat(c, "threads", 1);
        }
        OUT_LIT(c, "END\r\n");
    } else if (token_is(cmd, n, "quit")) {
        c->closing = true;
    } else {
        OUT_LIT(c, "ERROR\r\n");
    }
}

/* Drop what the buffer holds of the current data block; STORED at its end. */
static void
conn_skip(struct conn *c)
{
    size_t avail = c->iend - c->istart;
    size_t take = c->skip < avail ? (size_t)c->skip : avail;
    const char *p = c->ibuf + c->istart;
    /* The bytes whose distance to the block's end is 2 and 1: its \r\n. */
    for (size_t i = c->skip > 2 ? (size_t)(c->skip - 2) : 0; i < take; i++)
        c->term[2 - (c->skip - i)] = p[i];
    c->istart += take;
    c->skip -= take;
    if (c->skip)
        return;
    if (c->term[0] != '\r' || c->term[1] != '\n')
        OUT_LIT(c, "CLIENT_ERROR bad data chunk\r\n");
    else if (c->reply_stored)
        OUT_LIT(c, "STORED\r\n");
}

/* Answer every complete request in ibuf; keep an incomplete one. */
static void
conn_process(struct conn *c)
{
    while (!c->closing) {
        if (c->skip) {
            conn_skip(c);
            if (c->skip)
                break;
            continue;
        }
        char *line = c->ibuf + c->istart;
        size_t avail = c->iend - c->istart;
        char *nl = memchr(line, '\n', avail);
        if (!nl) {
            if (avail == IBUF_SIZE) {
                OUT_LIT(c, "CLIENT_ERROR line too long\r\n");
                c->closing = true;
            }
            break;
        }
        c->istart += (size_t)(nl - line) + 1;
        char *end = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
        request(c, line, end);
    }
    if (c->istart == c->iend) {
        c->istart = c->iend = 0;
    } else if (c->istart > 0 && IBUF_SIZE - c->iend < IBUF_SIZE / 4) {
        memmove(c->ibuf, c->ibuf + c->istart, c->iend - c->istart);
        c->iend -= c->istart;
        c->istart = 0;
    }
}

/* ---- connections ---- */

static void
conn_close(struct conn *c)
{
    close(c->fd); /* also takes it out of the epoll set */
    free(c->ibuf);
    free(c->obuf);
    free(c);
    srv.curr_conns--;
}

static void
conn_watch(struct conn *c, bool out)
{
    if (out == c->want_out)
        return;
    struct epoll_event ev = {.events = out ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    if (epoll_ctl(srv.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->want_out = out;
}

/* Send what obuf holds; false if the connection is to be closed. */
static bool
conn_flush(struct conn *c)
{
    while (c->osent < c->olen) {
        ssize_t n =
            send(c->fd, c->obuf + c->osent, c->olen - c->osent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_watch(c, true);
            return true;
        }
        if (n <= 0)
            return false;
        c->osent += (size_t)n;
    }
    c->olen = c->osent = 0;
    conn_watch(c, false);
    return !c->closing;
}

/* Readable: read what the socket has, answer it, send. */
static bool
conn_read(struct conn *c)
{
    for (;;) {
        size_t room = IBUF_SIZE - c->iend;
        ssize_t n = recv(c->fd, c->ibuf + c->iend, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return false;
        c->iend += (size_t)n;
        conn_process(c);
        if ((size_t)n < room || c->closing)
            break;
    }
    return conn_flush(c);
}

static void
conn_event(struct conn *c, uint32_t events)
{
    bool ok;
    if (c->want_out) {
        /* The rest of a reply first; then what waited in ibuf meanwhile. */
        ok = conn_flush(c);
        if (ok && !c->want_out && c->iend > c->istart) {
            conn_process(c);
            ok = conn_flush(c);
        }
    } else {
        ok = !(events & EPOLLERR) && conn_read(c);
    }
    if (!ok)
        conn_close(c);
}

static void
accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("mcdb-nothing: accept4");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (!c || !(c->ibuf = malloc(IBUF_SIZE)) ||
            !(c->obuf = malloc(OBUF_INIT)))
            die("malloc");
        c->fd = fd;
        c->ocap = OBUF_INIT;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
        srv.curr_conns++;
        srv.total_conns++;
    }
}

/* ---- start-up ---- */

static int
listen_on(const char *addr, unsigned port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127)
            usage_error("--listen %s: refused, not a loopback address", addr);
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            usage_error("--listen %s: refused, not a loopback address", addr);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        len = sizeof(*in6);
    } else {
        usage_error("--listen %s: not a numeric IPv4 or IPv6 address", addr);
    }
    int fd =
        socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        die("socket");
    if (bind(fd, (struct sockaddr *)&ss, len) < 0)
        die("bind");
    if (listen(fd, BACKLOG) < 0)
        die("listen");
    return fd;
}

static void
on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, OPT_port},
        {"listen", required_argument, NULL, OPT_listen},
        {"value-size", required_argument, NULL, OPT_value_size},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *opt[OPT_COUNT];
    memcpy(opt, opt_defaults, sizeof(opt));
    int o;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (o == OPT_HELP) {
            usage();
            return 0;
        }
        if (o < 0 || o >= OPT_COUNT)
            usage_error("unknown option");
        opt[o] = optarg;
    }
    if (optind < argc)
        usage_error("unexpected argument: %s", argv[optind]);
    unsigned port = (unsigned)number_arg("port", opt[OPT_port], 65535);
    srv.value_len = number_arg("value-size", opt[OPT_value_size], VALUE_MAX);
    srv.value = malloc(srv.value_len + 1);
    if (!srv.value)
        die("malloc");
    for (size_t i = 0; i < srv.value_len; i++)
        srv.value[i] = (char)('a' + i % 26);
    srv.started = time(NULL);

    int lfd = listen_on(opt[OPT_listen], port);
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    srv.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (srv.ep < 0 || epoll_ctl(srv.ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll");

    struct epoll_event ev[EVENTS_MAX];
    while (!stopping) {
        int n = epoll_wait(srv.ep, ev, EVENTS_MAX, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr)
                conn_event(ev[i].data.ptr, ev[i].events);
            else
                accept_all(lfd);
        }
    }
    close(lfd);
    return 0;
}
