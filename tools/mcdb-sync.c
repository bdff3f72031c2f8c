/*
 * mcdb-sync: compare the rows of a database of record with what mcdb
 * holds, and refresh mcdb from them without ever writing stale data.
 *   sqlite3 app.db "SELECT json_object('key', 'setting:' || id, 'version',
 *       CAST(strftime('%s', updated_at) AS INTEGER), 'value', value)
 *       FROM settings" | build/mcdb-sync check --version-unit s
 *   build/mcdb-sync apply --format csv --source-cmd "psql -c '\copy (...) \
 *       to stdout with (format csv, header)'" --servers a:11211,b:11211
 * (README.md, "Refreshing from the database of record", has the command
 * lines for SQLite, PostgreSQL and MySQL.)
 *
 * What it relies on (docs/architecture.md, section 8): the cas of an item
 * in mcdbd is a hybrid logical clock in microseconds, so it says when the
 * item was written, and a writer that knows its row's version stores it as the
 * cas with meta's E. A row's version (in microseconds, or as given with
 * --version-unit none) is therefore comparable with the store's cas.
 *
 * Each row is read with "mg <key> c v f" and classified:
 *   in sync         the store holds the row's value (and its flags, when
 *                   the row has flags); the versions are not compared
 *   missing         the store does not hold the key
 *   older in store  another value, with a cas below the row's version
 *   newer in store  another value, with a cas above the row's version (an
 *                   application write the database has not seen, or a
 *                   database write that did not reach the store yet)
 *   conflict        another value with the same version: two writers
 *                   disagree, nobody can tell which is right
 * apply then writes the missing and older ones, race-free:
 *   1. missing: "ms <key> <n> ME E<version> ..." (add: NS if the key came
 *      into being since the read)
 *   2. older: "ms <key> <n> C<cas read> E<version> ..." (EX if anything was
 *      written since the read)
 *   3. on NS, EX or NF the key is read again and judged again (step 1 or
 *      2, or no write if the store is now newer): a write by the
 *      application between the read and the write always wins.
 * apply --write-only skips the read: each row is one
 * "ms <key> <n> V<version> E<version> ...", which mcdbd stores only when
 * the key is missing or its cas is below the row's version, comparing and
 * writing under the key's lock (EX: kept). The rows it keeps are not
 * classified (in sync, newer or a conflict: run check), a row whose value
 * the store already holds under an older cas is written again, and rows
 * without flags are written with flags 0. It exits 0, or 3 as apply does
 * (a refusal, a bad row). memcached does not know V.
 * With --delete-missing, the store's keys are listed first (memcached's
 * "lru_crawler metadump all", which mcdbd answers too), and the ones no
 * row names are deleted with "md <key> C<cas listed>" at the end, only if
 * the source ended cleanly; check counts them as "not in source".
 *
 * Requests are pipelined: --connections per server for the reads, up to
 * --pipeline in flight on each, replies matched in order (one FIFO per
 * connection). apply writes on as many connections again, its own: a
 * server answers in order, and a write is answered only once it is on
 * disk, so a read queued behind writes on one connection would wait a
 * whole fsync for nothing. A key always goes to the same read and the
 * same write connection; two rows of one key may still cross (the second
 * read before the first write), which the compare on cas turns into a
 * retry (step 3). Keys are placed on servers by libmemcached itself
 * (memcached_generate_hash), with the behaviours an application sets for
 * --distribution.
 *
 * Exit status (a monitoring check's), judged for check on what it found
 * and for apply on what is still out of sync when it ends:
 *   0 nothing out of sync; 1 at least --warn keys out of sync; 2 at least
 *   --crit, or any conflict; 3 could not check: bad usage, bad input (the
 *   line is named), a failed source command, a server that did not answer
 *   or refused a request. The summary line says what was written first.
 */
#include "progress.h"
#include "sync/source.h"
#include "util/clock.h"
#include "util/usage.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <libmemcached/memcached.h>
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
#include <unistd.h>
#include <xxhash.h>

enum exit_state { EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN };
static const char *const exit_names[] = {"OK", "WARNING", "CRITICAL",
                                         "UNKNOWN"};

/* The classes of a key, in the order they are printed. */
#define CLASSES(X)                                                             \
    X(IN_SYNC, "in sync", "in-sync")                                           \
    X(MISSING, "missing", "missing")                                           \
    X(OLDER, "older in store", "older")                                        \
    X(NEWER, "newer in store", "newer")                                        \
    X(CONFLICT, "conflict", "conflict")                                        \
    X(EXTRA, "not in source", "not-in-source")

enum cls {
#define X(name, text, tag) CLS_##name,
    CLASSES(X)
#undef X
        CLS_COUNT
};
static const char *const cls_text[] = {
#define X(name, text, tag) text,
    CLASSES(X)
#undef X
};
static const char *const cls_tag[] = {
#define X(name, text, tag) tag,
    CLASSES(X)
#undef X
};

#define MAX_RACES 50 /* lost races of one key before it is an error */

/* ---- options: one table gives the struct, the parser and --help ---- */

#define SYNC_OPTIONS(X)                                                        \
    X(servers, "servers", 's', LIST, "127.0.0.1:11211",                        \
      "the servers, HOST:PORT,... in the order the application's clients "     \
      "list them (ketama hashes the names as written)")                        \
    X(distribution, "distribution", 'd', DIST, "modula",                       \
      "how keys are placed, as libmemcached computes it: modula "              \
      "(libmemcached's default: one-at-a-time hash modulo the server "         \
      "count) or ketama (MEMCACHED_BEHAVIOR_KETAMA: libketama's MD5 ring, "    \
      "as pylibmc, php-memcached and twemproxy use)")                          \
    X(format, "format", 'f', FORMAT, "jsonl",                                  \
      "rows as jsonl (key, version, value or value_base64, optional flags "    \
      "and exptime), tsv (key, version, value[, flags[, exptime]], "           \
      "backslash escapes, no header) or csv (with a header naming those "      \
      "columns)")                                                              \
    X(unit, "version-unit", 'u', UNIT, "us",                                   \
      "what a row's version counts: s, ms or us since the epoch (compared "    \
      "with the store's cas, a clock in microseconds), or none: a row "        \
      "version that every writer also stores with meta's E")                   \
    X(source_cmd, "source-cmd", 'c', STRING, NULL,                             \
      "read the rows from this command's standard output (sh -c); a "          \
      "command that fails is an error even after its last row (default: "      \
      "standard input)")                                                       \
    X(list, "list", 'l', FLAG, NULL,                                           \
      "name the keys of each class but in sync, one \"CLASS KEY\" a line")     \
    X(list_limit, "list-limit", 0, COUNT, "20",                                \
      "--list: at most N keys per class (0: all)")                             \
    X(warn, "warn", 'w', COUNT, "1",                                           \
      "exit 1 (WARNING) when at least N keys are out of sync (0: never)")      \
    X(crit, "crit", 0, COUNT, "0",                                             \
      "exit 2 (CRITICAL) when at least N keys are out of sync (0: only for "   \
      "a conflict)")                                                           \
    X(delete_missing, "delete-missing", 0, FLAG, NULL,                         \
      "apply: delete the keys the store holds and no row names (listed "       \
      "first with lru_crawler metadump; refused when a server cannot list "    \
      "its keys, skipped when the source did not end cleanly); check: count "  \
      "them as \"not in source\"")                                             \
    X(dry_run, "dry-run", 'n', FLAG, NULL,                                     \
      "apply: read and judge every key, write and delete nothing; the "        \
      "summary says what would have been written")                             \
    X(write_only, "write-only", 0, FLAG, NULL,                                 \
      "apply: no reads, one conditional write per row (ms V<version>, "        \
      "mcdbd's own flag): written where the key is missing or older in the "   \
      "store, kept where the store's version is as new or newer; kept rows "   \
      "are not classified (run check)")                                        \
    X(rate, "rate", 'r', COUNT, "0",                                           \
      "at most N requests a second over all servers (0: no limit)")            \
    X(connections, "connections", 0, COUNT, "4",                               \
      "connections to each server for the reads; apply opens as many again "   \
      "for its writes (--write-only: only those)")                             \
    X(pipeline, "pipeline", 0, COUNT, "64",                                    \
      "requests in flight on each connection")                                 \
    X(timeout, "timeout", 't', SECONDS, "10",                                  \
      "give up (exit 3) when a server does not answer for this long")          \
    X(quiet, "quiet", 'q', FLAG, NULL,                                         \
      "no progress bar (it is drawn only on a terminal anyway)")               \
    X(help, "help", 'h', FLAG, NULL, "print this help and exit")               \
    X(version, "version", 'V', FLAG, NULL, "print the version and exit")

enum dist { DIST_MODULA, DIST_KETAMA };

#define OPT_CTYPE_LIST const char *
#define OPT_CTYPE_STRING const char *
#define OPT_CTYPE_DIST enum dist
#define OPT_CTYPE_FORMAT enum source_format
#define OPT_CTYPE_UNIT enum source_unit
#define OPT_CTYPE_COUNT uint64_t
#define OPT_CTYPE_SECONDS double
#define OPT_CTYPE_FLAG bool

#define OPT_METAVAR_LIST "HOST:PORT,..."
#define OPT_METAVAR_STRING "COMMAND"
#define OPT_METAVAR_DIST "modula|ketama"
#define OPT_METAVAR_FORMAT "jsonl|tsv|csv"
#define OPT_METAVAR_UNIT "s|ms|us|none"
#define OPT_METAVAR_COUNT "N"
#define OPT_METAVAR_SECONDS "SECONDS"
#define OPT_METAVAR_FLAG ""

#define OPT_HASARG_FLAG no_argument
#define OPT_HASARG(kind)                                                       \
    (OPT_IS_FLAG_##kind + 0 ? no_argument : required_argument)
#define OPT_IS_FLAG_FLAG 1
#define OPT_IS_FLAG_LIST 0
#define OPT_IS_FLAG_STRING 0
#define OPT_IS_FLAG_DIST 0
#define OPT_IS_FLAG_FORMAT 0
#define OPT_IS_FLAG_UNIT 0
#define OPT_IS_FLAG_COUNT 0
#define OPT_IS_FLAG_SECONDS 0

enum {
#define X(field, lname, sname, kind, def, help) OPT_IDX_##field,
    SYNC_OPTIONS(X)
#undef X
        OPT_COUNT
};
#define OPT_VAL(field, sname) ((sname) ? (sname) : 256 + OPT_IDX_##field)

struct opts {
#define X(field, lname, sname, kind, def, help) OPT_CTYPE_##kind field;
    SYNC_OPTIONS(X)
#undef X
    bool apply;
};

/* Each parser: NULL, or why s is not a value of its kind. */
static const char *
pick(const char *s, const char *const *names, int *v)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0) {
            *v = i;
            return NULL;
        }
    return "not one of the choices";
}

static const char *
opt_parse_LIST(const char *s, const char **v)
{
    *v = s;
    return *s ? NULL : "empty";
}

static const char *
opt_parse_STRING(const char *s, const char **v)
{
    *v = s;
    return *s ? NULL : "empty";
}

static const char *
opt_parse_DIST(const char *s, enum dist *v)
{
    static const char *const n[] = {"modula", "ketama", NULL};
    int i = 0;
    const char *why = pick(s, n, &i);
    *v = (enum dist)i;
    return why ? "expected modula or ketama" : NULL;
}

static const char *
opt_parse_FORMAT(const char *s, enum source_format *v)
{
    static const char *const n[] = {"jsonl", "tsv", "csv", NULL};
    int i = 0;
    const char *why = pick(s, n, &i);
    *v = (enum source_format)i;
    return why ? "expected jsonl, tsv or csv" : NULL;
}

static const char *
opt_parse_UNIT(const char *s, enum source_unit *v)
{
    static const char *const n[] = {"s", "ms", "us", "none", NULL};
    int i = 0;
    const char *why = pick(s, n, &i);
    *v = (enum source_unit)i;
    return why ? "expected s, ms, us or none" : NULL;
}

static const char *
opt_parse_COUNT(const char *s, uint64_t *v)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return "expected a number, such as 10";
    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno || *end ? "expected a number, such as 10" : NULL;
}

static const char *
opt_parse_SECONDS(const char *s, double *v)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end || !(d > 0) || d > 86400)
        return "expected seconds, more than 0 and at most 86400";
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
    fprintf(out,
            "Usage: mcdb-sync [check|apply] [options] < ROWS\n"
            "Compare the rows of a database of record with mcdb (check, the "
            "default: reads\nonly), or refresh mcdb from them (apply: writes "
            "only where the row is newer or\nthe key is missing, with a "
            "compare on cas, so that an application write that\nlands "
            "meanwhile always wins). A row's version is compared with the "
            "store's cas\n(mcdbd's cas is a clock in microseconds). apply "
            "--write-only skips the reads:\none conditional write per row, "
            "compared and written by mcdbd (ms V).\n\n"
            "Options:\n");
#define X(field, lname, sname, kind, def, help)                                \
    usage_option(out, sname, lname, OPT_METAVAR_##kind, help, def);
    SYNC_OPTIONS(X)
#undef X
    fprintf(out,
            "\nClasses: in sync (same value; flags too when the row has "
            "them), missing,\nolder in store, newer in store (another value, "
            "cas below or above the row's\nversion), conflict (another value, "
            "same version), not in source (--delete-missing).\n"
            "\nExit status, for check on what it found, for apply on what is "
            "still out of sync\nwhen it ends (apply --write-only: 0 or 3):\n"
            "  0 OK        no key out of sync\n"
            "  1 WARNING   at least --warn keys out of sync\n"
            "  2 CRITICAL  at least --crit keys out of sync, or any conflict\n"
            "  3 UNKNOWN   could not check: bad usage, a bad row (its line is "
            "named), a\n              failed source command, a server that "
            "did not answer or refused\nSee README.md, \"Refreshing from the "
            "database of record\".\n");
}

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int
usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mcdb-sync: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'mcdb-sync --help'.\n", stderr);
    return EXIT_UNKNOWN;
}

/* 0: run; -1: exit 0 (help, version); else the exit status. */
static int
parse_args(struct opts *o, int argc, char **argv)
{
    static const struct option longs[] = {
#define X(field, lname, sname, kind, def, help)                                \
    {lname, OPT_HASARG(kind), NULL, OPT_VAL(field, sname)},
        SYNC_OPTIONS(X)
#undef X
            {NULL, 0, NULL, 0}};
    char shorts[2 * OPT_COUNT + 2] = ":";
    size_t ns = 1;
    memset(o, 0, sizeof(*o));
#define X(field, lname, sname, kind, def, help)                                \
    if (sname) {                                                               \
        shorts[ns++] = (char)(sname);                                          \
        if (OPT_HASARG(kind) == required_argument)                             \
            shorts[ns++] = ':';                                                \
    }                                                                          \
    if (def)                                                                   \
        opt_parse_##kind(def, &o->field);
    SYNC_OPTIONS(X)
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
        continue;                                                              \
    }
        SYNC_OPTIONS(X)
#undef X
        return usage_error("unknown option '%s'", argv[optind - 1]);
    }
    if (o->help) {
        usage(stdout);
        return -1;
    }
    if (o->version) {
        printf("mcdb-sync %s\n", MCDB_VERSION);
        return -1;
    }
    if (optind < argc) {
        if (strcmp(argv[optind], "apply") == 0)
            o->apply = true;
        else if (strcmp(argv[optind], "check") != 0)
            return usage_error("unknown command '%s' (check or apply)",
                               argv[optind]);
        optind++;
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->dry_run && !o->apply)
        return usage_error("--dry-run is for apply (check never writes)");
    if (o->write_only && (!o->apply || o->dry_run || o->list))
        return usage_error("--write-only is for apply, without --dry-run or "
                           "--list (it reads nothing to judge)");
    if (!o->connections || o->connections > 64)
        return usage_error("--connections must be 1 to 64");
    if (!o->pipeline || o->pipeline > 4096)
        return usage_error("--pipeline must be 1 to 4096");
    if (o->crit && o->warn > o->crit)
        return usage_error("--warn %llu is above --crit %llu",
                           (unsigned long long)o->warn,
                           (unsigned long long)o->crit);
    return 0;
}

/* ---- the run's state ---- */

struct server {
    char name[280]; /* as given: HOST:PORT */
    char host[256];
    char port[8];
    uint32_t conn0; /* its first connection: --connections for reads, then
                       as many for writes (apply, not --write-only) */
};

enum rq { RQ_MG, RQ_MS, RQ_MD };

struct pending {
    uint32_t slot; /* a row's slot, or (RQ_MD) a listed key's entry */
    uint8_t kind;
};

struct conn {
    int fd;
    uint32_t server;
    char *out, *in;
    size_t outoff, outlen, outcap;
    size_t inoff, inlen, incap;
    struct pending *q; /* ring of requests in flight, oldest first */
    size_t qhead, qlen, qcap;
};

/* A row being judged or written. */
struct slot {
    struct source_row row;
    uint64_t cas;    /* the store's, at the last read */
    uint32_t sflags; /* the store's client flags */
    uint32_t conn;
    uint16_t races; /* writes that lost to another write */
    int8_t found;   /* class of the first read, -1 before it */
    uint32_t next_free;
};

/* A key the store listed (--delete-missing). */
struct listed {
    char *key; /* NULL: an empty entry */
    uint64_t cas;
    uint32_t server;
    bool seen; /* a row names it */
};

struct run {
    struct opts *o;
    struct server *servers;
    uint32_t nservers;
    uint32_t *pos_server; /* libmemcached's server position -> ours */
    memcached_st *mc;
    struct conn *conns;
    uint32_t nconns;
    uint32_t writes; /* a write connection's offset from its read one */
    struct slot *slots;
    uint32_t nslots, free_slot, inflight;
    struct source *src;
    bool src_done, src_failed;
    char src_why[300];
    /* --delete-missing */
    struct listed *table;
    size_t tcap, tcount, tnext; /* tnext: the next entry to judge */
    bool deleting;
    /* what happened */
    uint64_t rows, sent;
    uint64_t found[CLS_COUNT]; /* first read of each key */
    uint64_t final[CLS_COUNT]; /* after apply's writes */
    uint64_t written[CLS_COUNT], would_write, would_delete, races;
    uint64_t wo_written, wo_kept; /* --write-only: HD, EX */
    uint64_t deleted, delete_lost;
    uint64_t failed;
    char fail_why[400];
    char **lists[CLS_COUNT];
    uint64_t listed_n[CLS_COUNT];
    bool fatal; /* a connection broke or a server went quiet */
    int64_t t0_us;
    struct progress bar;
};

static void fatal(struct run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Something the run cannot go on after (the first one is kept). */
static void
fatal(struct run *r, const char *fmt, ...)
{
    if (r->fatal)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->fail_why, sizeof(r->fail_why), fmt, ap);
    va_end(ap);
    r->fatal = true;
}

/* A request the server refused: counted; the first is quoted. */
static void
refused(struct run *r, const char *what, const char *key, const char *line,
        size_t n)
{
    if (!r->failed++ && !r->fatal)
        snprintf(r->fail_why, sizeof(r->fail_why),
                 "%s %s: the server said '%.*s'", what, key,
                 (int)(n > 200 ? 200 : n), line);
}

static void
list_key(struct run *r, enum cls c, const char *key)
{
    if (!r->o->list || c == CLS_IN_SYNC)
        return;
    uint64_t lim = r->o->list_limit;
    if (lim && r->listed_n[c] >= lim) {
        r->listed_n[c]++;
        return;
    }
    char **l = realloc(r->lists[c], (r->listed_n[c] + 1) * sizeof(*l));
    if (!l)
        return;
    r->lists[c] = l;
    l[r->listed_n[c]++] = strdup(key);
}

/* ---- servers and key placement ---- */

static const char *
split_server(struct server *s, const char *text, size_t n)
{
    if (n >= sizeof(s->name))
        return "too long";
    memcpy(s->name, text, n);
    s->name[n] = '\0';
    char *colon = strrchr(s->name, ':');
    if (!colon || colon == s->name)
        return "expected HOST:PORT";
    size_t hl = (size_t)(colon - s->name);
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (!isdigit((unsigned char)colon[1]) || *end || port == 0 || port > 65535)
        return "the port is not a number from 1 to 65535";
    memcpy(s->host, s->name, hl);
    s->host[hl] = '\0';
    snprintf(s->port, sizeof(s->port), "%lu", port);
    return NULL;
}

/* Parse --servers and give libmemcached the same list with the behaviours
 * an application sets for the distribution. */
static int
setup_servers(struct run *r)
{
    const char *p = r->o->servers;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        struct server *s = realloc(r->servers, (r->nservers + 1) * sizeof(*s));
        if (!s)
            return usage_error("out of memory");
        r->servers = s;
        s = &r->servers[r->nservers++];
        memset(s, 0, sizeof(*s));
        const char *why = split_server(s, p, n);
        if (why)
            return usage_error("--servers: '%.*s': %s", (int)n, p, why);
        p += n + (comma != NULL);
    }
    r->mc = memcached_create(NULL);
    if (!r->mc)
        return usage_error("out of memory");
    if (r->o->distribution == DIST_KETAMA)
        memcached_behavior_set(r->mc, MEMCACHED_BEHAVIOR_KETAMA, 1);
    for (uint32_t i = 0; i < r->nservers; i++) {
        memcached_return_t rc = memcached_server_add(
            r->mc, r->servers[i].host, (in_port_t)atoi(r->servers[i].port));
        if (rc != MEMCACHED_SUCCESS)
            return usage_error("--servers: %s: %s", r->servers[i].name,
                               memcached_strerror(r->mc, rc));
    }
    uint32_t count = memcached_server_count(r->mc);
    r->pos_server = calloc(count, sizeof(*r->pos_server));
    if (!r->pos_server)
        return usage_error("out of memory");
    for (uint32_t i = 0; i < count; i++) {
        const memcached_instance_st *in =
            memcached_server_instance_by_position(r->mc, i);
        r->pos_server[i] = UINT32_MAX;
        for (uint32_t j = 0; j < r->nservers; j++)
            if (strcmp(memcached_server_name(in), r->servers[j].host) == 0 &&
                memcached_server_port(in) == atoi(r->servers[j].port))
                r->pos_server[i] = j;
        if (r->pos_server[i] == UINT32_MAX)
            return usage_error("libmemcached lists a server %s:%u that is "
                               "not in --servers",
                               memcached_server_name(in),
                               memcached_server_port(in));
    }
    return 0;
}

static uint32_t
key_server(struct run *r, const char *key, size_t n)
{
    if (r->nservers == 1)
        return 0;
    return r->pos_server[memcached_generate_hash(r->mc, key, n)];
}

/* ---- connections ---- */

static int
connect_server(struct run *r, struct server *s)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV},
                    *res = NULL;
    int g = getaddrinfo(s->host, s->port, &hints, &res);
    if (g != 0) {
        fatal(r, "cannot resolve %s: %s", s->host, gai_strerror(g));
        return -1;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        struct timeval tv = {.tv_sec = (time_t)r->o->timeout};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fatal(r, "cannot connect to %s: %s", s->name, strerror(e));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int
grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 65536;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

/* Queue a request of kind for slot on c; its bytes are the caller's to
 * append right after (out_put). */
static void
push(struct run *r, struct conn *c, enum rq kind, uint32_t slot)
{
    if (c->qlen == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 256;
        struct pending *q = malloc(cap * sizeof(*q));
        if (!q) {
            fatal(r, "out of memory");
            return;
        }
        for (size_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen++) % c->qcap] =
        (struct pending){.slot = slot, .kind = (uint8_t)kind};
    r->inflight++;
    r->sent++;
}

static void
out_put(struct run *r, struct conn *c, const void *p, size_t n)
{
    if (grow(&c->out, &c->outcap, c->outlen + n)) {
        fatal(r, "out of memory");
        return;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void out_printf(struct run *r, struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
out_printf(struct run *r, struct conn *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    out_put(r, c, line, (size_t)n);
}

static void
send_mg(struct run *r, uint32_t si)
{
    struct slot *s = &r->slots[si];
    struct conn *c = &r->conns[s->conn];
    out_printf(r, c, "mg %s c v f\r\n", s->row.key);
    push(r, c, RQ_MG, si);
}

/* How a write compares: step 1 or 2 of the top comment (add a missing
 * key, or overwrite the version that was read), or --write-only's V. */
enum write_cmp { W_MISSING, W_READ, W_OLDER };

static void
send_ms(struct run *r, uint32_t si, enum write_cmp how)
{
    struct slot *s = &r->slots[si];
    struct conn *c = &r->conns[s->conn + r->writes];
    uint32_t flags = s->row.has_flags ? s->row.flags
                     : how == W_READ  ? s->sflags
                                      : 0;
    char cmp[32];
    if (how == W_MISSING)
        snprintf(cmp, sizeof(cmp), "ME");
    else
        snprintf(cmp, sizeof(cmp), "%c%llu", how == W_READ ? 'C' : 'V',
                 (unsigned long long)(how == W_READ ? s->cas : s->row.version));
    out_printf(r, c, "ms %s %zu %s E%llu F%u T%lld\r\n", s->row.key,
               s->row.vlen, cmp, (unsigned long long)s->row.version, flags,
               s->row.has_exptime ? (long long)s->row.exptime : 0LL);
    out_put(r, c, s->row.value, s->row.vlen);
    out_put(r, c, "\r\n", 2);
    push(r, c, RQ_MS, si);
}

/* The row is finished; final: its class now (-1: none, it failed). */
static void
slot_done(struct run *r, uint32_t si, int final)
{
    struct slot *s = &r->slots[si];
    if (final >= 0)
        r->final[final]++;
    source_row_free(&s->row);
    s->next_free = r->free_slot;
    r->free_slot = si;
}

/* ---- judging replies ---- */

static enum cls
classify(const struct slot *s, bool hit, const char *data, size_t n)
{
    if (!hit)
        return CLS_MISSING;
    if (n == s->row.vlen && memcmp(data, s->row.value, n) == 0 &&
        (!s->row.has_flags || s->row.flags == s->sflags))
        return CLS_IN_SYNC;
    if (s->cas < s->row.version)
        return CLS_OLDER;
    return s->cas > s->row.version ? CLS_NEWER : CLS_CONFLICT;
}

/* A read's verdict: count it the first time, then write or finish. */
static void
judged(struct run *r, uint32_t si, enum cls c)
{
    struct slot *s = &r->slots[si];
    if (s->found < 0) {
        s->found = (int8_t)c;
        r->found[c]++;
        list_key(r, c, s->row.key);
    }
    bool stale = c == CLS_MISSING || c == CLS_OLDER;
    if (!r->o->apply || !stale) {
        slot_done(r, si, c);
    } else if (r->o->dry_run) {
        r->would_write++;
        slot_done(r, si, CLS_IN_SYNC);
    } else {
        send_ms(r, si, c == CLS_MISSING ? W_MISSING : W_READ);
    }
}

/* "c123 f5 ...": the store's cas and flags. */
static void
parse_meta_flags(struct slot *s, const char *p, const char *end)
{
    s->cas = 0;
    s->sflags = 0;
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        char f = p < end ? *p++ : 0;
        uint64_t v = 0;
        while (p < end && *p >= '0' && *p <= '9')
            v = v * 10 + (uint64_t)(*p++ - '0');
        if (f == 'c')
            s->cas = v;
        else if (f == 'f')
            s->sflags = (uint32_t)v;
        while (p < end && *p != ' ')
            p++;
    }
}

/*
 * The oldest request of c answered by the bytes at in[inoff]: 1 when one
 * reply was consumed, 0 when it has not arrived whole.
 */
static int
reply_one(struct run *r, struct conn *c)
{
    const char *p = c->in + c->inoff;
    size_t avail = c->inlen - c->inoff;
    const char *nl = memchr(p, '\n', avail);
    if (!nl)
        return 0;
    size_t linelen = (size_t)(nl - p) + 1, n = linelen - 1;
    if (n && p[n - 1] == '\r')
        n--;
    struct pending q = c->q[c->qhead];
    size_t used = linelen;
    bool ok2 = n >= 2;
    if (q.kind == RQ_MG) {
        struct slot *s = &r->slots[q.slot];
        if (ok2 && memcmp(p, "VA ", 3) == 0) {
            char *end;
            unsigned long long len = strtoull(p + 3, &end, 10);
            if (avail < linelen + len + 2)
                return 0;
            parse_meta_flags(s, end, p + n);
            used += len + 2;
            judged(r, q.slot, classify(s, true, p + linelen, len));
        } else if (n == 2 && memcmp(p, "EN", 2) == 0) {
            judged(r, q.slot, CLS_MISSING);
        } else {
            refused(r, "reading", s->row.key, p, n);
            slot_done(r, q.slot, s->found < 0 ? -1 : s->found);
        }
    } else if (q.kind == RQ_MS && r->o->write_only) {
        struct slot *s = &r->slots[q.slot];
        bool wrote = n == 2 && memcmp(p, "HD", 2) == 0;
        bool kept = n == 2 && memcmp(p, "EX", 2) == 0;
        r->wo_written += wrote;
        r->wo_kept += kept;
        if (!wrote && !kept)
            refused(r,
                    memmem(p, n, "invalid flag", 12)
                        ? "writing (--write-only needs mcdbd: ms V)"
                        : "writing",
                    s->row.key, p, n);
        slot_done(r, q.slot, -1);
    } else if (q.kind == RQ_MS) {
        struct slot *s = &r->slots[q.slot];
        if (n == 2 && memcmp(p, "HD", 2) == 0) {
            r->written[s->found]++;
            slot_done(r, q.slot, CLS_IN_SYNC);
        } else if (n == 2 &&
                   (memcmp(p, "EX", 2) == 0 || memcmp(p, "NS", 2) == 0 ||
                    memcmp(p, "NF", 2) == 0)) {
            /* step 3: someone wrote since the read; judge again */
            r->races++;
            if (++s->races > MAX_RACES) {
                refused(r, "writing (kept losing races)", s->row.key, p, n);
                slot_done(r, q.slot, s->found);
            } else {
                send_mg(r, q.slot);
            }
        } else {
            refused(r, "writing", s->row.key, p, n);
            slot_done(r, q.slot, s->found);
        }
    } else {
        struct listed *l = &r->table[q.slot];
        bool gone = n == 2 && memcmp(p, "HD", 2) == 0;
        bool changed =
            n == 2 && (memcmp(p, "EX", 2) == 0 || memcmp(p, "NF", 2) == 0);
        r->deleted += gone;
        r->delete_lost += changed; /* written or deleted since the list */
        if (gone || changed)
            r->final[CLS_EXTRA]--;
        else
            refused(r, "deleting", l->key, p, n);
    }
    c->inoff += used;
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    r->inflight--;
    return 1;
}

/* Read what arrived on c and handle every whole reply. */
static void
conn_read(struct run *r, struct conn *c)
{
    if (c->inoff == c->inlen)
        c->inoff = c->inlen = 0;
    if (c->incap - c->inlen < 16384) {
        if (c->inoff) {
            memmove(c->in, c->in + c->inoff, c->inlen - c->inoff);
            c->inlen -= c->inoff;
            c->inoff = 0;
        }
        if (grow(&c->in, &c->incap, c->inlen + 65536)) {
            fatal(r, "out of memory");
            return;
        }
    }
    ssize_t got =
        recv(c->fd, c->in + c->inlen, c->incap - c->inlen, MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        fatal(r, "lost the connection to %s (%s) with %zu requests in flight",
              r->servers[c->server].name, got ? strerror(errno) : "closed",
              c->qlen);
        return;
    }
    if (got < 0)
        return;
    c->inlen += (size_t)got;
    while (c->qlen && !r->fatal && reply_one(r, c))
        ;
    if (!c->qlen && c->inoff < c->inlen)
        fatal(r, "%s sent more than was asked: '%.*s'",
              r->servers[c->server].name,
              (int)(c->inlen - c->inoff > 80 ? 80 : c->inlen - c->inoff),
              c->in + c->inoff);
}

static void
conn_write(struct run *r, struct conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                fatal(r, "lost the connection to %s: %s",
                      r->servers[c->server].name, strerror(errno));
            return;
        }
        c->outoff += (size_t)n;
    }
    c->outoff = c->outlen = 0;
}

/* ---- --delete-missing: the store's keys ---- */

static uint64_t
table_hash(uint32_t server, const char *key, size_t n)
{
    return XXH3_64bits_withSeed(key, n, server);
}

static struct listed *
table_find(struct run *r, uint32_t server, const char *key, size_t n)
{
    if (!r->tcap)
        return NULL;
    size_t i = table_hash(server, key, n) & (r->tcap - 1);
    for (;; i = (i + 1) & (r->tcap - 1)) {
        struct listed *l = &r->table[i];
        if (!l->key || (l->server == server && strncmp(l->key, key, n) == 0 &&
                        l->key[n] == '\0'))
            return l;
    }
}

static int
table_add(struct run *r, uint32_t server, char *key, uint64_t cas)
{
    if ((r->tcount + 1) * 2 > r->tcap) {
        size_t cap = r->tcap ? r->tcap * 2 : 1024;
        struct listed *old = r->table;
        size_t oldcap = r->tcap;
        r->table = calloc(cap, sizeof(*r->table));
        if (!r->table)
            return -1;
        r->tcap = cap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i].key)
                *table_find(r, old[i].server, old[i].key, strlen(old[i].key)) =
                    old[i];
        free(old);
    }
    struct listed *l = table_find(r, server, key, strlen(key));
    if (l->key) { /* listed twice: keep the later */
        free(key);
        l->cas = cas;
        return 0;
    }
    *l = (struct listed){.key = key, .cas = cas, .server = server};
    r->tcount++;
    return 0;
}

/* "key=a%20b exp=-1 la=... cas=12 ...": the key (URL-decoded, malloc'd)
 * and cas; NULL if the line is not one. */
static char *
dump_line(const char *p, size_t n, uint64_t *cas)
{
    if (n < 4 || memcmp(p, "key=", 4) != 0)
        return NULL;
    const char *k = p + 4, *sp = memchr(k, ' ', n - 4);
    size_t kn = sp ? (size_t)(sp - k) : n - 4;
    char *key = malloc(kn + 1), *o = key;
    if (!key)
        return NULL;
    for (size_t i = 0; i < kn; i++) {
        unsigned v;
        if (k[i] == '%' && i + 2 < kn + 1 &&
            sscanf(k + i + 1, "%2x", &v) == 1) {
            *o++ = (char)v;
            i += 2;
        } else {
            *o++ = k[i];
        }
    }
    *o = '\0';
    const char *c = sp ? strstr(sp, " cas=") : NULL;
    *cas = c && c < p + n ? strtoull(c + 5, NULL, 10) : 0;
    return key;
}

/* List every server's keys before any row is read; 0, or -1 (fatal). */
static int
list_store(struct run *r)
{
    for (uint32_t si = 0; si < r->nservers; si++) {
        struct server *sv = &r->servers[si];
        int fd = connect_server(r, sv);
        if (fd < 0)
            return -1;
        static const char req[] = "lru_crawler metadump all\r\n";
        char *buf = NULL;
        size_t len = 0, cap = 0, scanned = 0;
        bool end = false;
        if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != sizeof(req) - 1)
            fatal(r, "cannot send to %s: %s", sv->name, strerror(errno));
        while (!end && !r->fatal) {
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            if (poll(&pf, 1, (int)(r->o->timeout * 1000)) == 0) {
                fatal(r, "%s did not answer lru_crawler metadump within %g s",
                      sv->name, r->o->timeout);
                break;
            }
            if (grow(&buf, &cap, len + 65536)) {
                fatal(r, "out of memory");
                break;
            }
            ssize_t got = recv(fd, buf + len, cap - len, 0);
            if (got <= 0) {
                fatal(r, "lost the connection to %s while listing its keys",
                      sv->name);
                break;
            }
            len += (size_t)got;
            char *nl;
            while (!end && (nl = memchr(buf + scanned, '\n', len - scanned))) {
                const char *line = buf + scanned;
                size_t n = (size_t)(nl - line);
                if (n && line[n - 1] == '\r')
                    n--;
                scanned = (size_t)(nl + 1 - buf);
                uint64_t cas;
                char *key = dump_line(line, n, &cas);
                bool sendable = key && *key;
                for (const char *k = key; sendable && *k; k++)
                    sendable = (unsigned char)*k > ' ' && *k != 0x7f;
                if (key && !sendable) {
                    free(key); /* the text protocol cannot name it */
                } else if (key) {
                    if (table_add(r, si, key, cas))
                        fatal(r, "out of memory");
                } else if (n == 3 && memcmp(line, "END", 3) == 0) {
                    end = true;
                } else {
                    fatal(r,
                          "%s cannot list its keys: it answered '%.*s' to "
                          "'lru_crawler metadump all'; --delete-missing needs "
                          "it",
                          sv->name, (int)(n > 120 ? 120 : n), line);
                }
            }
            if (scanned == len)
                scanned = len = 0;
            else if (scanned > 1 << 20) {
                memmove(buf, buf + scanned, len - scanned);
                len -= scanned;
                scanned = 0;
            }
        }
        free(buf);
        close(fd);
        if (r->fatal)
            return -1;
    }
    return 0;
}

/* Judge the next listed keys (after the rows): the ones no row named are
 * "not in source"; apply deletes them if their cas is still the listed
 * one. Returns false when every entry has been judged. */
static bool
judge_listed(struct run *r, uint64_t budget)
{
    for (; r->tnext < r->tcap && budget; r->tnext++) {
        struct listed *l = &r->table[r->tnext];
        if (!l->key || l->seen)
            continue;
        r->found[CLS_EXTRA]++;
        r->final[CLS_EXTRA]++;
        list_key(r, CLS_EXTRA, l->key);
        if (!r->o->apply || r->o->dry_run) {
            r->would_delete += r->o->dry_run;
            continue;
        }
        struct server *sv = &r->servers[l->server];
        struct conn *c = &r->conns[sv->conn0 + r->writes +
                                   table_hash(0, l->key, strlen(l->key)) %
                                       r->o->connections];
        out_printf(r, c, "md %s C%llu\r\n", l->key, (unsigned long long)l->cas);
        push(r, c, RQ_MD, (uint32_t)r->tnext);
        budget--;
    }
    return r->tnext < r->tcap;
}

/* ---- the loop ---- */

/* Requests the --rate still allows now (UINT64_MAX: no limit). */
static uint64_t
rate_budget(struct run *r)
{
    if (!r->o->rate)
        return UINT64_MAX;
    double s = (double)(clock_mono_us() - r->t0_us) / 1e6;
    double allowed = (double)r->o->rate * s + 1;
    return allowed > (double)r->sent ? (uint64_t)(allowed - (double)r->sent)
                                     : 0;
}

/* Read rows into free slots and send their reads, up to budget. */
static void
admit(struct run *r, uint64_t budget)
{
    while (budget && r->free_slot != UINT32_MAX && !r->src_done && !r->fatal) {
        uint32_t si = r->free_slot;
        struct slot *s = &r->slots[si];
        int got = source_next(r->src, &s->row, r->src_why, sizeof(r->src_why));
        if (got <= 0) {
            r->src_done = true;
            r->src_failed = got < 0;
            char why[300];
            if (source_close(r->src, why, sizeof(why)) && !r->src_failed) {
                r->src_failed = true;
                snprintf(r->src_why, sizeof(r->src_why), "%s", why);
            }
            r->src = NULL;
            break;
        }
        r->free_slot = s->next_free;
        r->rows++;
        s->found = -1;
        s->races = 0;
        uint32_t sv = key_server(r, s->row.key, s->row.klen);
        s->conn = r->servers[sv].conn0 +
                  (uint32_t)(table_hash(0, s->row.key, s->row.klen) %
                             r->o->connections);
        if (r->table) {
            struct listed *l = table_find(r, sv, s->row.key, s->row.klen);
            if (l && l->key)
                l->seen = true;
        }
        if (r->o->write_only)
            send_ms(r, si, W_OLDER);
        else
            send_mg(r, si);
        budget--;
    }
}

static void
show_progress(struct run *r)
{
    if (r->src && source_size(r->src))
        progress_show(&r->bar, source_bytes(r->src), source_size(r->src));
    else
        progress_count(&r->bar, r->rows, "keys");
}

static void
run_loop(struct run *r)
{
    struct pollfd *pf = calloc(r->nconns, sizeof(*pf));
    int64_t quiet_since = clock_mono_us();
    if (!pf) {
        fatal(r, "out of memory");
        return;
    }
    while (!r->fatal) {
        uint64_t budget = rate_budget(r);
        admit(r, budget);
        if (r->src_done && !r->inflight) {
            bool skip = r->src_failed || r->failed || !r->table;
            if (skip || !judge_listed(r, rate_budget(r)))
                if (!r->inflight)
                    break;
        }
        for (uint32_t i = 0; i < r->nconns; i++) {
            struct conn *c = &r->conns[i];
            if (c->outlen)
                conn_write(r, c);
            pf[i] =
                (struct pollfd){.fd = c->fd,
                                .events = (short)((c->qlen ? POLLIN : 0) |
                                                  (c->outlen ? POLLOUT : 0))};
        }
        int wait_ms = 100;
        if (r->o->rate && !rate_budget(r))
            wait_ms = (int)(1000 / r->o->rate) + 1;
        int n = poll(pf, r->nconns, wait_ms > 100 ? 100 : wait_ms);
        if (n < 0 && errno != EINTR) {
            fatal(r, "poll: %s", strerror(errno));
            break;
        }
        int64_t now = clock_mono_us();
        if (n > 0 || !r->inflight)
            quiet_since = now;
        else if (now - quiet_since > (int64_t)(r->o->timeout * 1e6))
            fatal(r,
                  "no reply from the servers for %g s with %u requests in "
                  "flight",
                  r->o->timeout, r->inflight);
        for (uint32_t i = 0; i < r->nconns && n > 0 && !r->fatal; i++) {
            if (pf[i].revents & POLLOUT)
                conn_write(r, &r->conns[i]);
            if (pf[i].revents & (POLLIN | POLLERR | POLLHUP))
                conn_read(r, &r->conns[i]);
        }
        show_progress(r);
    }
    progress_clear(&r->bar);
    free(pf);
}

/* ---- the report ---- */

struct text {
    char buf[2048];
    size_t len;
};

static void text_add(struct text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
text_add(struct text *t, const char *fmt, ...)
{
    if (t->len >= sizeof(t->buf))
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
}

/* " (2 missing, 1 older in store)" over the classes in [from, to) of
 * counts that are not zero; nothing when all are. */
static void
text_classes(struct text *t, const uint64_t *counts, int from, int to)
{
    const char *sep = " (";
    for (int c = from; c < to; c++)
        if (counts[c]) {
            text_add(t, "%s%llu %s", sep, (unsigned long long)counts[c],
                     cls_text[c]);
            sep = ", ";
        }
    if (*sep == ',')
        text_add(t, ")");
}

/* "deleted 3 (1 changed since listed, left)": --delete-missing's work. */
static void
text_deleted(struct text *t, const struct run *r)
{
    text_add(t, "deleted %llu (%llu changed since listed, left)",
             (unsigned long long)r->deleted,
             (unsigned long long)r->delete_lost);
}

static uint64_t
out_of_sync(const uint64_t *counts)
{
    uint64_t n = 0;
    for (int c = CLS_IN_SYNC + 1; c < CLS_COUNT; c++)
        n += counts[c];
    return n;
}

static enum exit_state
verdict(const struct run *r, const uint64_t *judged)
{
    if (r->fatal || r->src_failed || r->failed)
        return EXIT_UNKNOWN;
    uint64_t out = out_of_sync(judged);
    if (judged[CLS_CONFLICT] || (r->o->crit && out >= r->o->crit))
        return EXIT_CRITICAL;
    return r->o->warn && out >= r->o->warn ? EXIT_WARNING : EXIT_OK;
}

static int
report(struct run *r)
{
    const struct opts *o = r->o;
    bool writes = o->apply && !o->dry_run;
    const uint64_t *judged = writes ? r->final : r->found;
    enum exit_state st = verdict(r, judged);
    int ncls = r->table ? CLS_COUNT : CLS_EXTRA;
    if (o->write_only) {
        printf("%-16s %llu\n%-16s %llu\n", "written",
               (unsigned long long)r->wo_written, "kept",
               (unsigned long long)r->wo_kept);
        if (r->table)
            printf("%-16s %llu\n", cls_text[CLS_EXTRA],
                   (unsigned long long)r->found[CLS_EXTRA]);
    }
    for (int c = 0; c < ncls && !o->write_only; c++)
        printf("%-16s %llu\n", cls_text[c], (unsigned long long)r->found[c]);
    for (int c = 1; c < ncls && o->list; c++) {
        uint64_t shown = r->listed_n[c];
        if (o->list_limit && shown > o->list_limit)
            shown = o->list_limit;
        for (uint64_t i = 0; i < shown; i++) {
            printf("%s %s\n", cls_tag[c], r->lists[c][i]);
            free(r->lists[c][i]);
        }
        if (shown < r->listed_n[c])
            printf("%s ... and %llu more (--list-limit 0 lists all)\n",
                   cls_tag[c], (unsigned long long)(r->listed_n[c] - shown));
        free(r->lists[c]);
    }

    struct text t = {.len = 0};
    text_add(&t, "mcdb-sync %s%s: %s - ", o->apply ? "apply" : "check",
             o->dry_run      ? " --dry-run"
             : o->write_only ? " --write-only"
                             : "",
             exit_names[st]);
    if (r->fatal || r->src_failed || r->failed)
        text_add(&t, "%s; ",
                 r->fatal || !r->src_failed ? r->fail_why : r->src_why);
    if (r->failed > 1)
        text_add(&t, "%llu requests refused in all; ",
                 (unsigned long long)r->failed);
    if (o->write_only) {
        text_add(&t,
                 "%llu rows, wrote %llu (missing or older in store), kept "
                 "%llu (as new or newer in store; not compared: run check)",
                 (unsigned long long)r->rows, (unsigned long long)r->wo_written,
                 (unsigned long long)r->wo_kept);
        if (r->table) {
            text_add(&t, "; %llu not in source, ",
                     (unsigned long long)r->found[CLS_EXTRA]);
            text_deleted(&t, r);
        }
    } else {
        text_add(&t, "%llu keys read, %llu out of sync",
                 (unsigned long long)r->rows,
                 (unsigned long long)out_of_sync(r->found));
        text_classes(&t, r->found, CLS_MISSING, CLS_COUNT);
    }
    if (writes && !o->write_only) {
        uint64_t w = 0;
        for (int c = 0; c < CLS_COUNT; c++)
            w += r->written[c];
        text_add(&t, "; wrote %llu", (unsigned long long)w);
        text_classes(&t, r->written, CLS_MISSING, CLS_COUNT);
        if (r->table) {
            text_add(&t, ", ");
            text_deleted(&t, r);
        }
        text_add(&t,
                 ", %llu writes lost to newer writes and re-judged; "
                 "still out of sync %llu",
                 (unsigned long long)r->races,
                 (unsigned long long)out_of_sync(r->final));
        text_classes(&t, r->final, CLS_MISSING, CLS_COUNT);
    } else if (o->dry_run) {
        text_add(&t, "; would write %llu", (unsigned long long)r->would_write);
        if (r->table)
            text_add(&t, ", would delete %llu",
                     (unsigned long long)r->would_delete);
    }
    if (r->table && (r->src_failed || r->failed || r->fatal))
        text_add(&t, "; nothing deleted (the run did not end cleanly)");
    double secs = (double)(clock_mono_us() - r->t0_us) / 1e6;
    text_add(&t, "; %.2f s, %.0f keys/s, %u server%s", secs,
             secs > 0 ? (double)r->rows / secs : 0.0, r->nservers,
             r->nservers == 1 ? "" : "s");
    printf("%.*s\n", (int)t.len, t.buf);
    fflush(stdout);
    if (r->fatal || r->src_failed || r->failed)
        fprintf(stderr, "mcdb-sync: %s\n",
                r->fatal || !r->src_failed ? r->fail_why : r->src_why);
    return st;
}

int
main(int argc, char **argv)
{
    struct opts o;
    int rc = parse_args(&o, argc, argv);
    if (rc)
        return rc < 0 ? 0 : rc;
    signal(SIGPIPE, SIG_IGN);
    struct run r = {.o = &o, .free_slot = UINT32_MAX};
    rc = setup_servers(&r);
    if (rc)
        return rc;
    r.t0_us = clock_mono_us();
    progress_init(&r.bar, o.quiet);
    if (o.delete_missing)
        list_store(&r);
    /* apply writes on connections of its own, after the reads' (none with
     * --write-only) */
    r.writes = o.apply && !o.write_only ? (uint32_t)o.connections : 0;
    uint32_t per_server = (uint32_t)o.connections + r.writes;
    r.nconns = r.nservers * per_server;
    r.conns = calloc(r.nconns, sizeof(*r.conns));
    for (uint32_t i = 0; i < r.nconns && !r.fatal; i++) {
        r.conns[i].server = i / per_server;
        r.servers[r.conns[i].server].conn0 = r.conns[i].server * per_server;
        r.conns[i].fd = connect_server(&r, &r.servers[r.conns[i].server]);
    }
    /* --pipeline rows in flight for each connection, read or write: apply
     * at --connections C has the concurrency of a client with 2C. */
    r.nslots = r.nconns * (uint32_t)o.pipeline;
    r.slots = calloc(r.nslots, sizeof(*r.slots));
    if (!r.slots || !r.conns)
        fatal(&r, "out of memory");
    for (uint32_t i = r.nslots; i-- > 0 && r.slots;) {
        r.slots[i].next_free = r.free_slot;
        r.free_slot = i;
    }
    if (!r.fatal) {
        char why[300];
        r.src = source_open(o.source_cmd, o.format, o.unit, why, sizeof(why));
        if (!r.src)
            fatal(&r, "cannot start the source: %s", why);
    }
    if (!r.fatal)
        run_loop(&r);
    if (r.src) {
        char why[300];
        source_close(r.src, why, sizeof(why));
    }
    if (r.fatal && r.inflight)
        fprintf(stderr,
                "mcdb-sync: %u requests were in flight when it stopped: "
                "their writes may or may not have landed (run check)\n",
                r.inflight);
    rc = report(&r);
    for (uint32_t i = 0; i < r.nconns; i++) {
        if (r.conns[i].fd > 0)
            close(r.conns[i].fd);
        free(r.conns[i].in);
        free(r.conns[i].out);
        free(r.conns[i].q);
    }
    for (uint32_t i = 0; i < r.nslots && r.slots; i++)
        source_row_free(&r.slots[i].row); /* rows left in flight */
    for (size_t i = 0; i < r.tcap; i++)
        free(r.table[i].key);
    free(r.table);
    free(r.slots);
    free(r.conns);
    free(r.servers);
    free(r.pos_server);
    memcached_free(r.mc);
    return rc;
}
