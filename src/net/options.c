/*
 * options: mcdbd's command line, generated from MCDBD_OPTIONS (net.h: the
 * network's NET_OPTIONS and replication's REPL_OPTIONS from repl.h).
 *
 * Each kind of option has a parser (opt_parse_<kind>: text -> field, or an
 * error message), a formatter for "stats settings" (opt_format_<kind>), a
 * getopt has-arg value and a metavar for --help. Defaults are parsed by the
 * same parsers, so the table's default column is the only place a default
 * is written. Flags with no argument (-v, -h, -V) are given NULL.
 */
#include "net/net.h"
#include "util/cpus.h"
#include "util/usage.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPT_MAX_THREADS 128u    /* the store takes at most 256 subscribers */
#define OPT_MIN_ITEM 1024u      /* memcached's -I lower bound */
#define OPT_MAX_ITEM (1u << 30) /* memcached's -I upper bound */
#define OPT_MAX_CONNECTIONS 1000000u
#define OPT_MIN_CONN_MEMORY (1u << 20)

#define OPT_HASARG_PORT required_argument
#define OPT_HASARG_ADDRS required_argument
#define OPT_HASARG_THREADS required_argument
#define OPT_HASARG_COUNT required_argument
#define OPT_HASARG_SIZE required_argument
#define OPT_HASARG_MEMORY required_argument
#define OPT_HASARG_PATH required_argument
#define OPT_HASARG_FSYNC required_argument
#define OPT_HASARG_RATIO required_argument
#define OPT_HASARG_RATE required_argument
#define OPT_HASARG_SIZE0 required_argument
#define OPT_HASARG_LEVEL no_argument
#define OPT_HASARG_HELP no_argument
#define OPT_HASARG_VERSION no_argument
#define OPT_HASARG_HOSTPORT required_argument
#define OPT_HASARG_FLAG no_argument
#define OPT_HASARG_REPLICAS required_argument
#define OPT_HASARG_MILLIS required_argument
#define OPT_HASARG_FILE required_argument
#define OPT_HASARG_YESNO required_argument
#define OPT_HASARG_AUTHFILE required_argument
#define OPT_HASARG_SECONDS required_argument

#define OPT_METAVAR_PORT "PORT"
#define OPT_METAVAR_ADDRS "ADDR"
#define OPT_METAVAR_THREADS "N"
#define OPT_METAVAR_COUNT "N"
#define OPT_METAVAR_SIZE "SIZE"
#define OPT_METAVAR_MEMORY "SIZE"
#define OPT_METAVAR_PATH "DIR"
#define OPT_METAVAR_FSYNC "MODE"
#define OPT_METAVAR_RATIO "RATIO"
#define OPT_METAVAR_RATE "BYTES"
#define OPT_METAVAR_SIZE0 "SIZE"
#define OPT_METAVAR_LEVEL ""
#define OPT_METAVAR_HELP ""
#define OPT_METAVAR_VERSION ""
#define OPT_METAVAR_HOSTPORT "HOST:PORT"
#define OPT_METAVAR_FLAG ""
#define OPT_METAVAR_REPLICAS "N"
#define OPT_METAVAR_MILLIS "MS"
#define OPT_METAVAR_FILE "FILE"
#define OPT_METAVAR_YESNO "yes|no"
#define OPT_METAVAR_AUTHFILE "FILE"
#define OPT_METAVAR_SECONDS "SECONDS"

/* Which kinds own a string (copied by net_config_copy, freed by
 * net_config_free). */
#define OPT_STRING_PORT 0
#define OPT_STRING_ADDRS 1
#define OPT_STRING_THREADS 0
#define OPT_STRING_COUNT 0
#define OPT_STRING_SIZE 0
#define OPT_STRING_MEMORY 0
#define OPT_STRING_PATH 1
#define OPT_STRING_FSYNC 0
#define OPT_STRING_RATIO 0
#define OPT_STRING_RATE 0
#define OPT_STRING_SIZE0 0
#define OPT_STRING_LEVEL 0
#define OPT_STRING_HELP 0
#define OPT_STRING_VERSION 0
#define OPT_STRING_HOSTPORT 1
#define OPT_STRING_FLAG 0
#define OPT_STRING_REPLICAS 0
#define OPT_STRING_MILLIS 0
#define OPT_STRING_FILE 1
#define OPT_STRING_YESNO 0
#define OPT_STRING_AUTHFILE 1
#define OPT_STRING_SECONDS 0

enum {
#define X(group, field, lname, sname, kind, def, stat, help) OPT_IDX_##field,
    MCDBD_OPTIONS(X)
#undef X
        OPT_COUNT
};

/* getopt's val: the short letter, or 256 + index for long-only options. */
#define OPT_VAL(field, sname) ((sname) ? (sname) : 256 + OPT_IDX_##field)

static const char *const fsync_names[] = {
    [STORE_FSYNC_ALWAYS] = "always",
    [STORE_FSYNC_EVERYSEC] = "everysec",
    [STORE_FSYNC_NEVER] = "never",
};

/* ---- parsers: NULL or a message saying what is wrong ---- */

static const char *
opt_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (!s || !isdigit((unsigned char)s[0]))
        return "not a number";
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return "not a number";
    if (v < min || v > max)
        return "out of range";
    *out = v;
    return NULL;
}

static const char *
opt_parse_PORT(const char *s, unsigned *field, bool is_default)
{
    (void)is_default;
    uint64_t v;
    const char *e = opt_parse_uint(s, 1, 65535, &v);
    if (!e)
        *field = (unsigned)v;
    return e ? "expected a port number, 1 to 65535" : NULL;
}

/* Check that each comma-separated address resolves (a literal or a name). */
static const char *
opt_check_addrs(const char *list)
{
    char *copy = strdup(list), *save = NULL;
    const char *err = NULL;
    int n = 0;
    for (char *a = strtok_r(copy, ",", &save); a && !err;
         a = strtok_r(NULL, ",", &save), n++) {
        size_t len = strlen(a);
        if (a[0] == '[' && len > 2 && a[len - 1] == ']') {
            a[len - 1] = '\0';
            a++;
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE},
                        *res = NULL;
        if (getaddrinfo(a, "11211", &hints, &res) != 0)
            err = "not an address this host can listen on";
        else
            freeaddrinfo(res);
    }
    free(copy);
    return err ? err : n ? NULL : "empty address list";
}

static const char *
opt_parse_ADDRS(const char *s, char **field, bool is_default)
{
    const char *e = opt_check_addrs(s);
    if (e)
        return e;
    /* The first -l replaces the default; later ones add to the list. */
    static bool explicit_seen;
    if (is_default) {
        explicit_seen = false;
    } else if (!explicit_seen) {
        explicit_seen = true;
    } else {
        size_t n = strlen(*field) + strlen(s) + 2;
        char *joined = malloc(n);
        snprintf(joined, n, "%s,%s", *field, s);
        free(*field);
        *field = joined;
        return NULL;
    }
    free(*field);
    *field = strdup(s);
    return NULL;
}

static const char *
opt_parse_THREADS(const char *s, unsigned *field, bool is_default)
{
    (void)is_default;
    uint64_t v;
    if (opt_parse_uint(s, 0, OPT_MAX_THREADS, &v))
        return "expected a number of threads, 0 to 128 (0: online CPUs)";
    *field = (unsigned)v;
    return NULL;
}

static const char *
opt_parse_COUNT(const char *s, unsigned *field, bool is_default)
{
    (void)is_default;
    uint64_t v;
    if (opt_parse_uint(s, 1, OPT_MAX_CONNECTIONS, &v))
        return "expected a number, 1 to 1000000";
    *field = (unsigned)v;
    return NULL;
}

/* A byte count with an optional k, m or g suffix (powers of 1024). */
static const char *
opt_parse_SIZE(const char *s, uint64_t *field, bool is_default)
{
    (void)is_default;
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return "expected a size such as 1048576, 512k, 64m or 1g";
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    switch (tolower((unsigned char)*end)) {
    case 'k':
        shift = 10;
        end++;
        break;
    case 'm':
        shift = 20;
        end++;
        break;
    case 'g':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (tolower((unsigned char)*end) == 'b')
        end++;
    if (errno || *end || v == 0 || v > (UINT64_MAX >> 1) >> shift)
        return "expected a size such as 1048576, 512k, 64m or 1g";
    *field = (uint64_t)v << shift;
    return NULL;
}

/* A size, or "auto" (0 here; opt_check sizes it from the machine). */
static const char *
opt_parse_MEMORY(const char *s, uint64_t *field, bool is_default)
{
    if (strcmp(s, "auto") == 0) {
        *field = 0;
        return NULL;
    }
    return opt_parse_SIZE(s, field, is_default);
}

/* A fraction strictly between 0 and 1. */
static const char *
opt_parse_RATIO(const char *s, double *field, bool is_default)
{
    (void)is_default;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || !(v < 1))
        return "expected a fraction between 0 and 1, such as 0.5";
    *field = v;
    return NULL;
}

/* A size, or 0 (none). */
static const char *
opt_parse_SIZE0(const char *s, uint64_t *field, bool is_default)
{
    if (strcmp(s, "0") == 0) {
        *field = 0;
        return NULL;
    }
    return opt_parse_SIZE(s, field, is_default);
}

/* A size per second; 0 means no limit. */
static const char *
opt_parse_RATE(const char *s, uint64_t *field, bool is_default)
{
    return opt_parse_SIZE0(s, field, is_default);
}

static const char *
opt_parse_PATH(const char *s, char **field, bool is_default)
{
    (void)is_default;
    if (!s[0])
        return "expected a directory";
    free(*field);
    *field = strdup(s);
    return NULL;
}

static const char *
opt_parse_FSYNC(const char *s, enum store_fsync *field, bool is_default)
{
    (void)is_default;
    for (size_t i = 0; i < sizeof(fsync_names) / sizeof(*fsync_names); i++) {
        if (strcmp(s, fsync_names[i]) == 0) {
            *field = (enum store_fsync)i;
            return NULL;
        }
    }
    return "expected always, everysec or never";
}

/* -v and -vv: the default "0" sets it, each flag adds one. */
static const char *
opt_parse_LEVEL(const char *s, unsigned *field, bool is_default)
{
    if (is_default)
        *field = (unsigned)atoi(s);
    else if (*field < 2)
        (*field)++;
    return NULL;
}

static const char *
opt_parse_HELP(const char *s, bool *field, bool is_default)
{
    (void)s;
    *field = !is_default;
    return NULL;
}

#define opt_parse_VERSION opt_parse_HELP
#define opt_parse_FLAG opt_parse_HELP

/* HOST:PORT, [IPv6]:PORT; "" (the default) for none. */
static const char *
opt_parse_HOSTPORT(const char *s, char **field, bool is_default)
{
    if (!is_default) {
        const char *colon = strrchr(s, ':');
        uint64_t port;
        if (!colon || colon == s || opt_parse_uint(colon + 1, 1, 65535, &port))
            return "expected HOST:PORT, such as 10.0.0.5:11211 or "
                   "[::1]:11211";
    }
    free(*field);
    *field = strdup(s);
    return NULL;
}

static const char *
opt_parse_REPLICAS(const char *s, unsigned *field, bool is_default)
{
    (void)is_default;
    uint64_t v;
    if (opt_parse_uint(s, 0, 16, &v))
        return "expected a number of replicas, 0 to 16";
    *field = (unsigned)v;
    return NULL;
}

static const char *
opt_parse_MILLIS(const char *s, unsigned *field, bool is_default)
{
    (void)is_default;
    uint64_t v;
    if (opt_parse_uint(s, 1, 3600000, &v))
        return "expected milliseconds, 1 to 3600000";
    *field = (unsigned)v;
    return NULL;
}

static const char *
opt_parse_SECONDS(const char *s, unsigned *field, bool is_default)
{
    (void)is_default;
    uint64_t v;
    if (opt_parse_uint(s, 0, 30 * 86400, &v))
        return "expected seconds, 0 to 2592000";
    *field = (unsigned)v;
    return NULL;
}

static const char *
opt_parse_FILE(const char *s, char **field, bool is_default)
{
    if (!is_default && !s[0])
        return "expected a file";
    free(*field);
    *field = strdup(s);
    return NULL;
}

#define opt_parse_AUTHFILE opt_parse_FILE

static const char *
opt_parse_YESNO(const char *s, bool *field, bool is_default)
{
    (void)is_default;
    if (strcmp(s, "yes") && strcmp(s, "no"))
        return "expected yes or no";
    *field = strcmp(s, "yes") == 0;
    return NULL;
}

/* ---- formatters for "stats settings" ---- */

static void
opt_format_PORT(const unsigned *f, char *buf, size_t len)
{
    snprintf(buf, len, "%u", *f);
}

static void
opt_format_ADDRS(char *const *f, char *buf, size_t len)
{
    snprintf(buf, len, "%s", *f);
}

#define opt_format_THREADS opt_format_PORT
#define opt_format_COUNT opt_format_PORT
#define opt_format_LEVEL opt_format_PORT
#define opt_format_PATH opt_format_ADDRS

static void
opt_format_SIZE(const uint64_t *f, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRIu64, *f);
}

static void
opt_format_RATIO(const double *f, char *buf, size_t len)
{
    snprintf(buf, len, "%g", *f);
}

#define opt_format_RATE opt_format_SIZE
#define opt_format_SIZE0 opt_format_SIZE
#define opt_format_MEMORY opt_format_SIZE

static void
opt_format_FSYNC(const enum store_fsync *f, char *buf, size_t len)
{
    snprintf(buf, len, "%s", fsync_names[*f]);
}

static void
opt_format_HELP(const bool *f, char *buf, size_t len)
{
    snprintf(buf, len, "%s", *f ? "yes" : "no");
}

#define opt_format_VERSION opt_format_HELP
#define opt_format_FLAG opt_format_HELP
#define opt_format_YESNO opt_format_HELP
#define opt_format_HOSTPORT opt_format_ADDRS
#define opt_format_FILE opt_format_ADDRS
#define opt_format_REPLICAS opt_format_PORT
#define opt_format_MILLIS opt_format_PORT
#define opt_format_SECONDS opt_format_PORT

/* memcached's auth_enabled_ascii: the file, or "no". */
static void
opt_format_AUTHFILE(char *const *f, char *buf, size_t len)
{
    snprintf(buf, len, "%s", (*f)[0] ? *f : "no");
}

/* ---- usage ---- */

enum {
#define G(name, heading) OPT_GROUP_##name,
    MCDBD_GROUPS(G)
#undef G
        OPT_GROUP_COUNT
};

static const char *const opt_group_headings[] = {
#define G(name, heading) [OPT_GROUP_##name] = heading,
    MCDBD_GROUPS(G)
#undef G
};

/* What --help prints of each option, in table order. */
static const struct opt_help {
    int oh_group;
    const char *oh_long;
    int oh_short;
    const char *oh_metavar;
    const char *oh_default; /* "": none printed */
    const char *oh_help;
} opt_helps[] = {
#define X(group, field, lname, sname, kind, def, stat, help)                   \
    {OPT_GROUP_##group,                                                        \
     lname,                                                                    \
     sname,                                                                    \
     OPT_METAVAR_##kind,                                                       \
     OPT_HASARG_##kind == required_argument ? def : "",                        \
     help},
    MCDBD_OPTIONS(X)
#undef X
};

static void
opt_usage(FILE *out)
{
    fprintf(out, "Usage: mcdbd [OPTION]...\n"
                 "A persistent key-value server that speaks memcached's "
                 "protocols: text, meta\nand binary, on the same port.\n\n"
                 "Options:\n");
    for (int g = 0; g < OPT_GROUP_COUNT; g++) {
        bool heading = false;
        for (size_t i = 0; i < sizeof(opt_helps) / sizeof(opt_helps[0]); i++) {
            if (opt_helps[i].oh_group != g)
                continue;
            if (!heading)
                fprintf(out, "\n%s:\n", opt_group_headings[g]);
            heading = true;
            const struct opt_help *oh = &opt_helps[i];
            usage_option(out, oh->oh_short, oh->oh_long, oh->oh_metavar,
                         oh->oh_help, oh->oh_default);
        }
    }
}

static int
opt_fail(const char *opt, const char *value, const char *why)
{
    if (value)
        fprintf(stderr, "mcdbd: %s '%s': %s\n", opt, value, why);
    else
        fprintf(stderr, "mcdbd: %s: %s\n", opt, why);
    /* Not the whole usage: the reason would scroll out of sight (systemctl
     * status shows a unit's last lines). */
    fputs("Try 'mcdbd --help'.\n", stderr);
    return NET_CONFIG_BAD;
}

static void
opt_defaults(struct net_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
#define X(group, field, lname, sname, kind, def, stat, help)                   \
    opt_parse_##kind(def, &cfg->field, true);
    MCDBD_OPTIONS(X)
#undef X
}

/* Run the parser of the option getopt returned; NULL or the failure. */
static const char *
opt_apply(struct net_config *cfg, int val, const char *arg, const char **name)
{
    switch (val) {
#define X(group, field, lname, sname, kind, def, stat, help)                   \
    case OPT_VAL(field, sname):                                                \
        *name = "--" lname;                                                    \
        return opt_parse_##kind(arg, &cfg->field, false);
        MCDBD_OPTIONS(X)
#undef X
    default:
        *name = "?";
        return "unknown option";
    }
}

/* Rules that involve two options, or the machine. */
static const char *
opt_check(struct net_config *cfg, const char **name)
{
    if (cfg->threads == 0) {
        unsigned n = cpus_usable();
        cfg->threads = n > OPT_MAX_THREADS ? OPT_MAX_THREADS : n;
    }
    *name = "--conn-memory-limit";
    if (cfg->conn_memory_limit == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        uint64_t phys = pages > 0 && psize > 0 ? (uint64_t)pages * psize : 0;
        cfg->conn_memory_limit = phys / 8 > OPT_MIN_CONN_MEMORY * 64
                                     ? phys / 8
                                     : OPT_MIN_CONN_MEMORY * 64;
    }
    if (cfg->conn_memory_limit < OPT_MIN_CONN_MEMORY)
        return "must be at least 1m";
    *name = "--promote";
    if (cfg->promote && cfg->replica_of[0])
        return "and --replica-of contradict each other: a server is "
               "promoted to primary, or made a replica";
    *name = "--max-item-size";
    if (cfg->max_item_size < OPT_MIN_ITEM || cfg->max_item_size > OPT_MAX_ITEM)
        return "must be between 1k and 1g";
    if (cfg->max_item_size == OPT_MAX_ITEM)
        cfg->max_item_size--; /* the index keeps 30 bits of value length */
    *name = "--segment-size";
    if (cfg->segment_size < STORE_MIN_SEGMENT_SIZE)
        return "must be at least 64k";
    if (cfg->segment_size <= cfg->max_item_size + 4096)
        return "must be larger than --max-item-size (a record never spans "
               "segments)";
    return NULL;
}

int
net_config_parse(struct net_config *cfg, int argc, char **argv)
{
    static const struct option longs[] = {
#define X(group, field, lname, sname, kind, def, stat, help)                   \
    {lname, OPT_HASARG_##kind, NULL, OPT_VAL(field, sname)},
        MCDBD_OPTIONS(X)
#undef X
            {NULL, 0, NULL, 0}};
    char shorts[3 * OPT_COUNT + 2] = ":";
    size_t n = 1;
#define X(group, field, lname, sname, kind, def, stat, help)                   \
    if (sname) {                                                               \
        shorts[n++] = (char)(sname);                                           \
        if (OPT_HASARG_##kind == required_argument)                            \
            shorts[n++] = ':';                                                 \
    }
    MCDBD_OPTIONS(X)
#undef X
    shorts[n] = '\0';

    opt_defaults(cfg);
    opterr = 0;
    optind = 1;
    for (;;) {
        int prev = optind;
        int val = getopt_long(argc, argv, shorts, longs, NULL);
        if (val == -1)
            break;
        const char *bad = argv[prev < argc ? prev : argc - 1];
        if (val == '?')
            return opt_fail("unknown option", NULL, bad);
        if (val == ':')
            return opt_fail(bad, NULL, "missing value");
        const char *name, *why = opt_apply(cfg, val, optarg, &name);
        if (why)
            return opt_fail(name, optarg, why);
    }
    if (optind < argc)
        return opt_fail("unexpected argument", NULL, argv[optind]);
    if (cfg->help) {
        opt_usage(stdout);
        return NET_CONFIG_EXIT;
    }
    if (cfg->version) {
        printf("mcdbd %s\n", MCDB_VERSION);
        return NET_CONFIG_EXIT;
    }
    const char *name, *why = opt_check(cfg, &name);
    if (why)
        return opt_fail(name, NULL, why);
    return NET_CONFIG_OK;
}

/* The string fields through a char ** (other kinds: NULL). */
#define OPT_STR_0(cfg, field) ((char **)NULL)
#define OPT_STR_1(cfg, field) ((char **)&(cfg)->field)
#define OPT_STR_(n) OPT_STR_##n
#define OPT_STR(n) OPT_STR_(n)

void
net_config_copy(struct net_config *to, const struct net_config *from)
{
    *to = *from;
#define X(group, field, lname, sname, kind, def, stat, help)                   \
    {                                                                          \
        char **p = OPT_STR(OPT_STRING_##kind)(to, field);                      \
        if (p && *p)                                                           \
            *p = strdup(*p);                                                   \
    }
    MCDBD_OPTIONS(X)
#undef X
}

void
net_config_free(struct net_config *cfg)
{
#define X(group, field, lname, sname, kind, def, stat, help)                   \
    {                                                                          \
        char **p = OPT_STR(OPT_STRING_##kind)(cfg, field);                     \
        if (p) {                                                               \
            free(*p);                                                          \
            *p = NULL;                                                         \
        }                                                                      \
    }
    MCDBD_OPTIONS(X)
#undef X
}

void
net_config_each(const struct net_config *cfg,
                void (*fn)(void *arg, const char *name, const char *value),
                void *arg)
{
    char buf[1024];
#define X(group, field, lname, sname, kind, def, stat, help)                   \
    if (stat) {                                                                \
        opt_format_##kind(&cfg->field, buf, sizeof(buf));                      \
        fn(arg, stat ? stat : "", buf);                                        \
    }
    MCDBD_OPTIONS(X)
#undef X
}
