/*
 * mcdb-check: a monitoring check of an mcdbd's role and replication, in the
 * tradition of Nagios plugins (one status line, exit 0 to 3).
 *   build/mcdb-check 127.0.0.1:11211
 *   build/mcdb-check --role primary --min-replicas 1 db1:11211
 *   build/mcdb-check --role replica --warn-lag 500 --max-lag 2000 \
 *       --max-lag-bytes 64m [::1]:11212
 *
 * It sends "stats repl" to the server's client port, reads the STAT lines up
 * to END and prints one line on stdout:
 *   MCDB OK - replica of 10.0.0.1:11211, link up, lag 0 ms (0 bytes) |
 *   lag_ms=0;500;2000 lag_bytes=0;;67108864
 * (one line in fact), with the exit status a Nagios-compatible scheduler
 * reads. The worst rule that applies decides:
 *   0 OK        every rule below holds
 *   1 WARNING   a replica is copying its primary's log in full (link
 *               copying); a replica's lag_ms exceeds --warn-lag
 *   2 CRITICAL  the role is not --role; a replica's link is down, connecting,
 *               in its handshake (anything but up or copying); a replica's
 *               lag_ms exceeds --max-lag or its lag_bytes --max-lag-bytes; a
 *               primary has fewer than --min-replicas replicas connected
 *   3 UNKNOWN   no verdict: HOST cannot be resolved or connected to,
 *               --timeout passed, the connection closed before END, the
 *               server is not an mcdbd with replication (memcached answers
 *               "ERROR" to "stats repl"), a figure is missing or not a
 *               number; also bad usage (a message on stderr, none on stdout)
 * The lag options judge replicas only and --min-replicas primaries only, so
 * that one command line serves a pair whose roles may swap.
 *
 * A check runs in three steps, each bounded by one deadline --timeout
 * seconds after the start: connect (to each address HOST resolves to, in
 * turn), send "stats repl\r\n", read until a line "END" (a first line that
 * is not "STAT ..." ends the reply too: ERROR, CLIENT_ERROR, ...). Resolving
 * a name is not interruptible that way: alarm() bounds it, a second later.
 * Then judge() applies the rules and status_line() prints.
 * Docs: docs/tools.md.
 */
#include "util/clock.h"
#include "util/usage.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Nagios plugin exit codes; in this order, a larger one is worse. */
enum state {
    STATE_OK = 0,
    STATE_WARNING = 1,
    STATE_CRITICAL = 2,
    STATE_UNKNOWN = 3,
};
static const char *const state_names[] = {"OK", "WARNING", "CRITICAL",
                                          "UNKNOWN"};

#define REPLY_MAX (256u << 10) /* a primary with many replicas: ~300 B each */
#define LINE_MAX_CHARS 300     /* the status line, performance data included */
#define VALUE_SHOWN 120        /* longest server text quoted in the line */

enum role { ROLE_ANY, ROLE_PRIMARY, ROLE_REPLICA };
static const char *const role_names[] = {"any", "primary", "replica"};

/* ---- options: one table gives the struct, the parser and --help ---- */

/*
 * field, long name, short name (0: none), kind, default (NULL: none), help.
 * A kind names its C type, its metavariable and its parser opt_parse_KIND.
 */
#define CHECK_OPTIONS(X)                                                       \
    X(role, "role", 0, ROLE, NULL,                                             \
      "CRITICAL when the server's role is another (catches a wrong "           \
      "failover)")                                                             \
    X(warn_lag, "warn-lag", 0, MILLIS, NULL,                                   \
      "replica: WARNING when lag_ms exceeds MS")                               \
    X(max_lag, "max-lag", 0, MILLIS, NULL,                                     \
      "replica: CRITICAL when lag_ms exceeds MS")                              \
    X(max_lag_bytes, "max-lag-bytes", 0, BYTES, NULL,                          \
      "replica: CRITICAL when lag_bytes exceeds BYTES (suffixes k, m, g: "     \
      "powers of 1024)")                                                       \
    X(min_replicas, "min-replicas", 0, COUNT, NULL,                            \
      "primary: CRITICAL when fewer than N replicas are connected")            \
    X(timeout, "timeout", 't', SECONDS, "5",                                   \
      "UNKNOWN when connecting and reading the reply take longer "             \
      "(fractions allowed)")                                                   \
    X(help, "help", 'h', FLAG, NULL, "print this help and exit")               \
    X(version, "version", 'V', FLAG, NULL, "print the version and exit")

#define OPT_CTYPE_ROLE enum role
#define OPT_CTYPE_MILLIS uint64_t
#define OPT_CTYPE_BYTES uint64_t
#define OPT_CTYPE_COUNT uint64_t
#define OPT_CTYPE_SECONDS double
#define OPT_CTYPE_FLAG bool

#define OPT_METAVAR_ROLE "primary|replica"
#define OPT_METAVAR_MILLIS "MS"
#define OPT_METAVAR_BYTES "BYTES"
#define OPT_METAVAR_COUNT "N"
#define OPT_METAVAR_SECONDS "SECONDS"
#define OPT_METAVAR_FLAG ""

#define OPT_HASARG_ROLE required_argument
#define OPT_HASARG_MILLIS required_argument
#define OPT_HASARG_BYTES required_argument
#define OPT_HASARG_COUNT required_argument
#define OPT_HASARG_SECONDS required_argument
#define OPT_HASARG_FLAG no_argument

enum {
#define X(field, lname, sname, kind, def, help) OPT_IDX_##field,
    CHECK_OPTIONS(X)
#undef X
        OPT_COUNT
};

/* getopt's val: the short letter, or 256 + index for long-only options. */
#define OPT_VAL(field, sname) ((sname) ? (sname) : 256 + OPT_IDX_##field)

struct opts {
#define X(field, lname, sname, kind, def, help) OPT_CTYPE_##kind field;
    CHECK_OPTIONS(X)
#undef X
    bool given[OPT_COUNT];
    const char *target; /* HOST:PORT as given */
    char host[256];     /* without brackets */
    char port[8];
};

/* Each parser: NULL, or why s is not a value of its kind. */

static const char *
opt_parse_ROLE(const char *s, enum role *v)
{
    if (strcmp(s, "primary") == 0)
        *v = ROLE_PRIMARY;
    else if (strcmp(s, "replica") == 0)
        *v = ROLE_REPLICA;
    else
        return "expected primary or replica";
    return NULL;
}

/* A decimal number without sign; 0 on success. */
static int
parse_u64(const char *s, uint64_t *v, const char **end)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    char *e;
    errno = 0;
    unsigned long long n = strtoull(s, &e, 10);
    if (errno)
        return -1;
    *v = n;
    if (end)
        *end = e;
    else if (*e)
        return -1;
    return 0;
}

static const char *
opt_parse_MILLIS(const char *s, uint64_t *v)
{
    return parse_u64(s, v, NULL) ? "expected milliseconds, such as 500" : NULL;
}

static const char *
opt_parse_COUNT(const char *s, uint64_t *v)
{
    return parse_u64(s, v, NULL) ? "expected a number, such as 1" : NULL;
}

/* A byte count with an optional k, m or g suffix (powers of 1024), as
 * mcdbd's own size options; 0 is allowed (any lag is too much). */
static const char *
opt_parse_BYTES(const char *s, uint64_t *v)
{
    static const char why[] = "expected bytes, such as 1048576, 512k or 64m";
    const char *end;
    uint64_t n;
    if (parse_u64(s, &n, &end))
        return why;
    unsigned shift = 0;
    switch (tolower((unsigned char)*end)) {
    case 'k':
        shift = 10;
        break;
    case 'm':
        shift = 20;
        break;
    case 'g':
        shift = 30;
        break;
    default:
        break;
    }
    end += shift != 0;
    if (tolower((unsigned char)*end) == 'b')
        end++;
    if (*end || n > UINT64_MAX >> shift)
        return why;
    *v = n << shift;
    return NULL;
}

static const char *
opt_parse_SECONDS(const char *s, double *v)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end || !(d > 0) || d > 3600)
        return "expected seconds, more than 0 and at most 3600";
    *v = d;
    return NULL;
}

static const char *
opt_parse_FLAG(const char *s, bool *v)
{
    (void)s;
    *v = true;
    return NULL;
}

static void
usage(FILE *out)
{
    fprintf(out, "Usage: mcdb-check [options] HOST:PORT\n"
                 "Check an mcdbd's role and replication (\"stats repl\") "
                 "and print one Nagios\nstatus line. HOST may be an IPv6 "
                 "address in brackets: [::1]:11211.\n\nOptions:\n");
#define X(field, lname, sname, kind, def, help)                                \
    usage_option(out, sname, lname, OPT_METAVAR_##kind, help, def);
    CHECK_OPTIONS(X)
#undef X
    fprintf(out,
            "\nExit status and first word of the line:\n"
            "  0 OK\n"
            "  1 WARNING   a replica's link is copying (a full copy), or "
            "lag_ms > --warn-lag\n"
            "  2 CRITICAL  the role is not --role; a replica's link is "
            "down, connecting or in\n"
            "              its handshake; lag_ms > --max-lag; lag_bytes > "
            "--max-lag-bytes;\n"
            "              a primary has fewer than --min-replicas "
            "replicas connected\n"
            "  3 UNKNOWN   no answer, a timeout, not an mcdb server; or bad "
            "usage\n"
            "The lag options judge replicas only, --min-replicas primaries "
            "only.\nSee docs/tools.md.\n");
}

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Say what is wrong on stderr; returns the exit status of bad usage. */
static int
usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mcdb-check: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'mcdb-check --help'.\n", stderr);
    return STATE_UNKNOWN;
}

/* "HOST:PORT" or "[ADDRESS]:PORT" into host and port; NULL or why not. */
static const char *
split_target(const char *s, char *host, size_t hostlen, char *port,
             size_t portlen)
{
    const char *colon;
    size_t len;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return "expected [ADDRESS]:PORT";
        s++;
        len = (size_t)(rb - s);
        colon = rb + 1;
    } else {
        colon = strchr(s, ':');
        if (!colon)
            return "expected HOST:PORT";
        if (strchr(colon + 1, ':'))
            return "an IPv6 address goes in brackets, as in [::1]:11211";
        len = (size_t)(colon - s);
    }
    uint64_t p;
    if (len == 0)
        return "no host before the port";
    if (len >= hostlen)
        return "host name too long";
    if (parse_u64(colon + 1, &p, NULL) || p == 0 || p > 65535)
        return "the port is not a number from 1 to 65535";
    memcpy(host, s, len);
    host[len] = '\0';
    snprintf(port, portlen, "%u", (unsigned)p);
    return NULL;
}

/* 0: run; -1: exit 0 (help, version); else the exit status. */
static int
parse(struct opts *o, int argc, char **argv)
{
    static const struct option longs[] = {
#define X(field, lname, sname, kind, def, help)                                \
    {lname, OPT_HASARG_##kind, NULL, OPT_VAL(field, sname)},
        CHECK_OPTIONS(X)
#undef X
            {NULL, 0, NULL, 0}};
    static const char *const defaults[] = {
#define X(field, lname, sname, kind, def, help) def,
        CHECK_OPTIONS(X)
#undef X
    };
    char shorts[2 * OPT_COUNT + 2] = ":";
    size_t ns = 1;
    memset(o, 0, sizeof(*o));
#define X(field, lname, sname, kind, def, help)                                \
    if (sname) {                                                               \
        shorts[ns++] = (char)(sname);                                          \
        if (OPT_HASARG_##kind == required_argument)                            \
            shorts[ns++] = ':';                                                \
    }                                                                          \
    if (defaults[OPT_IDX_##field])                                             \
        opt_parse_##kind(defaults[OPT_IDX_##field], &o->field);
    CHECK_OPTIONS(X)
#undef X
    shorts[ns] = '\0';

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        if (c == ':')
            return usage_error("%s needs a value", argv[optind - 1]);
#define X(field, lname, sname, kind, def, help)                                \
    if (c == OPT_VAL(field, sname)) {                                          \
        const char *why = opt_parse_##kind(optarg, &o->field);                 \
        if (why)                                                               \
            return usage_error("--%s %s: %s", lname, optarg, why);             \
        o->given[OPT_IDX_##field] = true;                                      \
        continue;                                                              \
    }
        CHECK_OPTIONS(X)
#undef X
        return usage_error("unknown option '%s'", argv[optind - 1]);
    }
    if (o->help) {
        usage(stdout);
        return -1;
    }
    if (o->version) {
        printf("mcdb-check %s\n", MCDB_VERSION);
        return -1;
    }
    if (optind == argc)
        return usage_error("no HOST:PORT given");
    if (optind < argc - 1)
        return usage_error("one HOST:PORT only (got '%s' too)",
                           argv[optind + 1]);
    if (o->given[OPT_IDX_warn_lag] && o->given[OPT_IDX_max_lag] &&
        o->warn_lag > o->max_lag)
        return usage_error("--warn-lag %llu is above --max-lag %llu: it "
                           "would never warn",
                           (unsigned long long)o->warn_lag,
                           (unsigned long long)o->max_lag);
    o->target = argv[optind];
    const char *why = split_target(o->target, o->host, sizeof(o->host), o->port,
                                   sizeof(o->port));
    if (why)
        return usage_error("%s: %s", o->target, why);
    return 0;
}

/* ---- asking the server ---- */

/* Wait for events on fd until the deadline: 1 ready, 0 timed out, -1. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 0)
            return r > 0 ? 1 : -1;
    }
}

/* A non-blocking socket connected to ai by the deadline, or -1 (errno). */
static int
connect_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    if (fd < 0)
        return -1;
    int e = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        e = errno;
        if (e == EINPROGRESS) {
            int r = wait_fd(fd, POLLOUT, deadline);
            socklen_t len = sizeof(e);
            if (r == 0)
                e = ETIMEDOUT;
            else if (r < 0)
                e = errno;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
                e = errno;
        }
    }
    if (e) {
        close(fd);
        errno = e;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

enum reply_end { REPLY_MORE, REPLY_END, REPLY_OTHER };

/*
 * Whether buf[0, len) holds a whole reply: REPLY_END once a line "END"
 * came, REPLY_OTHER once a line that is not "STAT ..." came (an error
 * reply), else REPLY_MORE. *scanned: where the next unscanned line starts.
 */
static enum reply_end
reply_state(const char *buf, size_t len, size_t *scanned)
{
    for (;;) {
        const char *line = buf + *scanned;
        const char *nl = memchr(line, '\n', len - *scanned);
        if (!nl)
            return REPLY_MORE;
        size_t n = (size_t)(nl - line);
        if (n && line[n - 1] == '\r')
            n--;
        *scanned = (size_t)(nl + 1 - buf);
        if (n == 3 && memcmp(line, "END", 3) == 0)
            return REPLY_END;
        if (n < 5 || memcmp(line, "STAT ", 5) != 0)
            return REPLY_OTHER;
    }
}

/*
 * Connect, send "stats repl", read the reply (malloc'd, NUL-terminated,
 * into *out). 0, or -1 with what went wrong in why.
 */
static int
ask(const struct opts *o, char **out, char *why, size_t whylen)
{
    int64_t deadline = clock_mono_ms() + (int64_t)(o->timeout * 1000);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV},
                    *res = NULL;
    int g = getaddrinfo(o->host, o->port, &hints, &res);
    if (g != 0) {
        snprintf(why, whylen, "cannot resolve %s: %s", o->host,
                 g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
        return -1;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = connect_one(ai, deadline);
        e = errno;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(why, whylen, "cannot connect: %s",
                 e == ETIMEDOUT ? "no answer within the timeout" : strerror(e));
        return -1;
    }

    static const char req[] = "stats repl\r\n";
    size_t sent = 0;
    while (sent < sizeof(req) - 1) {
        ssize_t n = send(fd, req + sent, sizeof(req) - 1 - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(why, whylen, "sending stats repl: %s", strerror(errno));
            close(fd);
            return -1;
        }
        if (n < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT, deadline) != 1) {
            snprintf(why, whylen, "could not send stats repl within %g s",
                     o->timeout);
            close(fd);
            return -1;
        }
    }

    char *buf = malloc(REPLY_MAX + 1);
    size_t len = 0, scanned = 0;
    enum reply_end end = REPLY_MORE;
    const char *fail = NULL;
    while (buf && end == REPLY_MORE && !fail) {
        int r = wait_fd(fd, POLLIN, deadline);
        if (r != 1) {
            fail = r == 0 ? "timeout" : strerror(errno);
            break;
        }
        ssize_t n = recv(fd, buf + len, REPLY_MAX - len, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            fail = n == 0 ? "closed" : strerror(errno);
        else if ((len += (size_t)n) == REPLY_MAX)
            fail = "too long";
        else
            end = reply_state(buf, len, &scanned);
    }
    close(fd);
    if (!buf) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    buf[len] = '\0';
    if (!fail) {
        *out = buf;
        return 0;
    }
    if (strcmp(fail, "timeout") == 0)
        snprintf(why, whylen,
                 "no END to stats repl within %g s (%zu bytes "
                 "came)",
                 o->timeout, len);
    else if (strcmp(fail, "closed") == 0)
        snprintf(why, whylen,
                 "the connection closed before END to stats "
                 "repl (%zu bytes came)",
                 len);
    else if (strcmp(fail, "too long") == 0)
        snprintf(why, whylen,
                 "no END within the first %u bytes of the "
                 "reply to stats repl",
                 REPLY_MAX);
    else
        snprintf(why, whylen, "reading the reply to stats repl: %s", fail);
    free(buf);
    return -1;
}

/* Server text fit for one status line: no control characters, no '|'
 * (it would start the performance data), at most VALUE_SHOWN bytes. */
static const char *
shown(const char *s, char *buf, size_t len)
{
    size_t i = 0, max = len - 4 < VALUE_SHOWN ? len - 4 : VALUE_SHOWN;
    for (; s[i] && i < max; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?'
                 : s[i] == '|'                              ? '/'
                                                            : s[i];
    strcpy(buf + i, s[i] ? "..." : "");
    return buf;
}

/* ---- the reply: "STAT <name> <value>" lines; the value may hold spaces ----
 */

struct stat_kv {
    const char *name, *value;
};

struct stats {
    struct stat_kv *v;
    size_t n;
};

/*
 * Split a whole reply (as ask() returns it; modified in place) into its
 * STAT lines. 0, or -1 with why when it is not a STAT reply ending in END.
 */
static int
stats_parse(char *text, struct stats *st, char *why, size_t whylen)
{
    st->v = NULL;
    st->n = 0;
    size_t cap = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        char *next = nl ? nl + 1 : line + strlen(line);
        if (nl) {
            *nl = '\0';
            if (nl > line && nl[-1] == '\r')
                nl[-1] = '\0';
        }
        if (strcmp(line, "END") == 0)
            return 0;
        if (strncmp(line, "STAT ", 5) != 0) {
            /* memcached answers "ERROR" to "stats repl" */
            char buf[VALUE_SHOWN + 4];
            if (st->n == 0)
                snprintf(why, whylen,
                         "not an mcdb server with replication (it "
                         "answered \"%s\" to stats repl)",
                         shown(line, buf, sizeof(buf)));
            else
                snprintf(why, whylen,
                         "stats repl: \"%s\" after %zu STAT line%s, "
                         "before END",
                         shown(line, buf, sizeof(buf)), st->n,
                         st->n == 1 ? "" : "s");
            return -1;
        }
        if (st->n == cap) {
            cap = cap ? 2 * cap : 64;
            struct stat_kv *v = realloc(st->v, cap * sizeof(*v));
            if (!v) {
                snprintf(why, whylen, "out of memory");
                return -1;
            }
            st->v = v;
        }
        char *name = line + 5, *sp = strchr(name, ' ');
        if (sp)
            *sp = '\0';
        st->v[st->n++] = (struct stat_kv){name, sp ? sp + 1 : ""};
        line = next;
    }
    snprintf(why, whylen, "no END in the reply to stats repl");
    return -1;
}

static const char *
stats_get(const struct stats *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->v[i].name, name) == 0)
            return st->v[i].value;
    return NULL;
}

/* ---- judging: the rules in the opening comment, one function each ---- */

struct verdict {
    enum state state;
    char text[512]; /* what the status line says, before the '|' */
    char perf[256]; /* Nagios performance data, after it */
};

static void
raise_to(struct verdict *v, enum state s)
{
    if (s > v->state)
        v->state = s;
}

static void say_text(struct verdict *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append to the status text (cut at its buffer's end). */
static void
say_text(struct verdict *v, const char *fmt, ...)
{
    size_t used = strlen(v->text);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->text + used, sizeof(v->text) - used, fmt, ap);
    va_end(ap);
}

/* The number named name: 0, or -1 when it is absent or not a number. */
static int
get_number(const struct stats *st, const char *name, uint64_t *n)
{
    const char *s = stats_get(st, name);
    return s ? parse_u64(s, n, NULL) : -1;
}

/* The number named name, or an UNKNOWN verdict saying why not. */
static int
need_number(const struct stats *st, const char *name, uint64_t *n,
            struct verdict *v)
{
    const char *s = stats_get(st, name);
    char buf[VALUE_SHOWN + 4];
    if (get_number(st, name, n) == 0)
        return 0;
    v->state = STATE_UNKNOWN;
    if (s)
        say_text(v, "%s is \"%s\" in stats repl, not a number", name,
                 shown(s, buf, sizeof(buf)));
    else
        say_text(v, "no %s in stats repl", name);
    return -1;
}

/* "N:" (Nagios: alert below N) when the option was given, else "". */
static const char *
perf_min(const struct opts *o, int idx, uint64_t n, char *buf, size_t len)
{
    if (o->given[idx])
        snprintf(buf, len, "%llu:", (unsigned long long)n);
    else
        buf[0] = '\0';
    return buf;
}

/* The threshold when the option was given, else "". */
static const char *
perf_max(const struct opts *o, int idx, uint64_t n, char *buf, size_t len)
{
    if (o->given[idx])
        snprintf(buf, len, "%llu", (unsigned long long)n);
    else
        buf[0] = '\0';
    return buf;
}

static void
judge_primary(const struct opts *o, const struct stats *st, struct verdict *v)
{
    uint64_t n;
    if (need_number(st, "connected_replicas", &n, v))
        return;
    say_text(v, "primary, %llu replica%s connected", (unsigned long long)n,
             n == 1 ? "" : "s");
    const char *epoch = stats_get(st, "epoch");
    char buf[VALUE_SHOWN + 4];
    if (epoch)
        say_text(v, " (epoch %s)", shown(epoch, buf, sizeof(buf)));
    if (o->given[OPT_IDX_min_replicas] && n < o->min_replicas) {
        raise_to(v, STATE_CRITICAL);
        say_text(v, ", below --min-replicas %llu",
                 (unsigned long long)o->min_replicas);
    }
    char c[32];
    snprintf(v->perf, sizeof(v->perf), "replicas=%llu;;%s",
             (unsigned long long)n,
             perf_min(o, OPT_IDX_min_replicas, o->min_replicas, c, sizeof(c)));
}

/* up: OK; copying (a full copy): WARNING; anything else: CRITICAL. */
static enum state
link_state(const char *link)
{
    if (strcmp(link, "up") == 0)
        return STATE_OK;
    if (strcmp(link, "copying") == 0)
        return STATE_WARNING;
    return STATE_CRITICAL;
}

static void
judge_replica(const struct opts *o, const struct stats *st, struct verdict *v)
{
    const char *link = stats_get(st, "link");
    uint64_t lag_ms, lag_bytes;
    if (!link) {
        v->state = STATE_UNKNOWN;
        say_text(v, "no link in stats repl");
        return;
    }
    if (need_number(st, "lag_ms", &lag_ms, v) ||
        need_number(st, "lag_bytes", &lag_bytes, v))
        return;
    const char *primary = stats_get(st, "primary");
    char buf[VALUE_SHOWN + 4];
    say_text(v, "replica of %s, link ",
             primary ? shown(primary, buf, sizeof(buf)) : "?");
    say_text(v, "%s", shown(link, buf, sizeof(buf)));

    enum state ls = link_state(link);
    raise_to(v, ls);
    if (ls != STATE_OK) {
        /* why it is not up: how far a full copy is, the last error */
        const char *err = stats_get(st, "link_error");
        uint64_t done, end;
        bool copy = get_number(st, "copy_done_offset", &done) == 0 &&
                    get_number(st, "copy_end_offset", &end) == 0;
        bool error = err && *err && strcmp(err, "none") != 0;
        if (copy)
            say_text(v, " (copied up to offset %llu of %llu%s",
                     (unsigned long long)done, (unsigned long long)end,
                     error ? "; " : ")");
        if (error)
            say_text(v, "%s%s)", copy ? "" : " (",
                     shown(err, buf, sizeof(buf)));
    }

    say_text(v, ", lag %llu ms (%llu bytes)", (unsigned long long)lag_ms,
             (unsigned long long)lag_bytes);
    if (o->given[OPT_IDX_max_lag] && lag_ms > o->max_lag) {
        raise_to(v, STATE_CRITICAL);
        say_text(v, ", lag_ms over --max-lag %llu",
                 (unsigned long long)o->max_lag);
    } else if (o->given[OPT_IDX_warn_lag] && lag_ms > o->warn_lag) {
        raise_to(v, STATE_WARNING);
        say_text(v, ", lag_ms over --warn-lag %llu",
                 (unsigned long long)o->warn_lag);
    }
    if (o->given[OPT_IDX_max_lag_bytes] && lag_bytes > o->max_lag_bytes) {
        raise_to(v, STATE_CRITICAL);
        say_text(v, ", lag_bytes over --max-lag-bytes %llu",
                 (unsigned long long)o->max_lag_bytes);
    }
    char w[32], c[32], cb[32];
    snprintf(
        v->perf, sizeof(v->perf), "lag_ms=%llu;%s;%s lag_bytes=%llu;;%s",
        (unsigned long long)lag_ms,
        perf_max(o, OPT_IDX_warn_lag, o->warn_lag, w, sizeof(w)),
        perf_max(o, OPT_IDX_max_lag, o->max_lag, c, sizeof(c)),
        (unsigned long long)lag_bytes,
        perf_max(o, OPT_IDX_max_lag_bytes, o->max_lag_bytes, cb, sizeof(cb)));
}

static void
judge(const struct opts *o, const struct stats *st, struct verdict *v)
{
    const char *role = stats_get(st, "role");
    char buf[VALUE_SHOWN + 4];
    enum role r;
    if (!role) {
        v->state = STATE_UNKNOWN;
        say_text(v, "not an mcdb server with replication (no role in its "
                    "stats repl)");
        return;
    }
    if (opt_parse_ROLE(role, &r) != NULL) {
        v->state = STATE_UNKNOWN;
        say_text(v, "unknown role \"%s\" in stats repl",
                 shown(role, buf, sizeof(buf)));
        return;
    }
    if (o->given[OPT_IDX_role] && r != o->role) {
        raise_to(v, STATE_CRITICAL);
        say_text(v, "role is %s, expected %s; ", role_names[r],
                 role_names[o->role]);
    }
    if (r == ROLE_PRIMARY)
        judge_primary(o, st, v);
    else
        judge_replica(o, st, v);
}

/* ---- output ---- */

/*
 * "MCDB <STATE> - <text>[ | <perf>]" on one line of at most LINE_MAX_CHARS:
 * a text too long is cut (with "...") so that the performance data stays.
 */
static void
status_line(const struct verdict *v)
{
    char head[32];
    snprintf(head, sizeof(head), "MCDB %s - ", state_names[v->state]);
    size_t room =
        LINE_MAX_CHARS - strlen(head) - (v->perf[0] ? strlen(v->perf) + 3 : 0);
    size_t n = strlen(v->text);
    if (n > room)
        printf("%s%.*s...", head, (int)(room - 3), v->text);
    else
        printf("%s%s", head, v->text);
    if (v->perf[0])
        printf(" | %s", v->perf);
    putchar('\n');
}

/* What SIGALRM prints: the line for a name that takes too long to resolve
 * (written before alarm() is set: a handler may only write() and exit). */
static char alarm_line[LINE_MAX_CHARS + 2];

static void
on_alarm(int sig)
{
    (void)sig;
    ssize_t n = write(STDOUT_FILENO, alarm_line, strlen(alarm_line));
    (void)n;
    _exit(STATE_UNKNOWN);
}

int
main(int argc, char **argv)
{
    struct opts o;
    int rc = parse(&o, argc, argv);
    if (rc)
        return rc < 0 ? STATE_OK : rc;

    struct verdict v = {.state = STATE_OK};
    char target[VALUE_SHOWN + 4];
    shown(o.target, target, sizeof(target));
    snprintf(alarm_line, sizeof(alarm_line),
             "MCDB UNKNOWN - %s: no answer within %g s\n", target, o.timeout);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)o.timeout + 2);

    char *reply = NULL, why[512];
    struct stats st = {0};
    if (ask(&o, &reply, why, sizeof(why)) != 0 ||
        stats_parse(reply, &st, why, sizeof(why)) != 0) {
        alarm(0);
        v.state = STATE_UNKNOWN;
        say_text(&v, "%s: %s", target, why);
    } else {
        alarm(0);
        judge(&o, &st, &v);
        if (v.state == STATE_UNKNOWN) {
            /* name the server in an UNKNOWN: the text is the reason */
            char reason[sizeof(v.text)];
            snprintf(reason, sizeof(reason), "%s", v.text);
            v.text[0] = '\0';
            v.perf[0] = '\0';
            say_text(&v, "%s: %s", target, reason);
        }
    }
    status_line(&v);
    free(st.v);
    free(reply);
    return (int)v.state;
}
