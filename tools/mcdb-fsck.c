/*
 * mcdb-fsck: check an mcdb data directory, and repair what is safe.
 *   build/mcdb-fsck ./data
 *   build/mcdb-fsck --repair ./data        (no server may hold ./data)
 *   build/mcdb-fsck --json ./data | jq .
 *
 * It checks META, every segment's header, every record's checksum, the
 * footers, the continuity of the log across files and every hint file
 * against its segment, and reports each byte range it could not read with
 * its file and log offsets (the walk is src/log/check.c's). --repair only
 * truncates a torn tail of the last segment (saving the bytes it cuts, as
 * start-up does) and rebuilds hint files: it never deletes data it could
 * not read. Without --repair it only reads, and may check the directory of
 * a running server.
 *
 * Exit status, as fsck(8), a sum of:
 *   0   no problem found
 *   1   problems were found and repaired (the directory was modified)
 *   4   problems were left as they are
 *   8   operational error: the directory or a file could not be read or
 *       written, or --repair could not take the directory's LOCK
 *   16  usage error
 * Docs: docs/tools.md.
 */
#include "log/check.h"
#include "log/logdir.h"
#include "log/store.h"
#include "util/say.h"

#include "progress.h"
#include "util/usage.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    EXIT_CLEAN = 0,
    EXIT_REPAIRED = 1,
    EXIT_LEFT = 4,
    EXIT_OPERATIONAL = 8,
    EXIT_USAGE = 16,
};

/* field, long name, short name (0: none), help */
#define FSCK_OPTIONS(X)                                                        \
    X(repair, "repair", 0,                                                     \
      "truncate a torn tail of the last segment and rebuild hint files; "      \
      "needs the directory to itself (no server running)")                     \
    X(quiet, "quiet", 'q', "print only problems and repairs; no progress bar") \
    X(json, "json", 0, "print one JSON object with the findings and totals")   \
    X(help, "help", 'h', "print this help and exit")                           \
    X(version, "version", 'V', "print the version and exit")

struct opts {
#define X(field, lname, sname, help) bool field;
    FSCK_OPTIONS(X)
#undef X
    const char *dir;
};

static void
usage(FILE *out)
{
    fprintf(out, "Usage: mcdb-fsck [options] DATA\n"
                 "Check an mcdb data directory; repair only what is safe.\n\n"
                 "Options:\n");
#define X(field, lname, sname, help)                                           \
    usage_option(out, sname, lname, NULL, help, NULL);
    FSCK_OPTIONS(X)
#undef X
    fprintf(out, "\nExit status (a sum, as fsck(8)): 0 clean, 1 problems "
                 "repaired, 4 problems left,\n8 operational error, 16 usage "
                 "error. See docs/tools.md.\n");
}

/* 0: run; else the exit status. */
static int
parse(struct opts *o, int argc, char **argv)
{
    enum {
#define X(field, lname, sname, help) OPT_##field,
        FSCK_OPTIONS(X)
#undef X
            OPT_COUNT
    };
    static const struct option longs[] = {
#define X(field, lname, sname, help)                                           \
    {lname, no_argument, NULL, sname ? sname : 256 + OPT_##field},
        FSCK_OPTIONS(X)
#undef X
            {NULL, 0, NULL, 0}};
    char shorts[OPT_COUNT + 2] = ":";
    size_t ns = 1;
#define X(field, lname, sname, help)                                           \
    if (sname)                                                                 \
        shorts[ns++] = (char)sname;
    FSCK_OPTIONS(X)
#undef X
    shorts[ns] = '\0';
    memset(o, 0, sizeof(*o));
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
#define X(field, lname, sname, help)                                           \
    if (c == (sname ? sname : 256 + OPT_##field)) {                            \
        o->field = true;                                                       \
        continue;                                                              \
    }
        FSCK_OPTIONS(X)
#undef X
        fprintf(stderr, "mcdb-fsck: unknown option '%s'\n", argv[optind - 1]);
        fprintf(stderr, "Try 'mcdb-fsck --help'.\n");
        return EXIT_USAGE;
    }
    if (o->help) {
        usage(stdout);
        return -1;
    }
    if (o->version) {
        printf("mcdb-fsck %s\n", MCDB_VERSION);
        return -1;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "mcdb-fsck: %s\n",
                optind == argc ? "no data directory given"
                               : "one data directory only");
        fprintf(stderr, "Usage: mcdb-fsck [--repair] [--quiet] [--json] "
                        "DATA\nTry 'mcdb-fsck --help'.\n");
        return EXIT_USAGE;
    }
    o->dir = argv[optind];
    return 0;
}

/* ---- findings: printed as they come, or kept for --json ---- */

struct found {
    enum check_sev sev;
    enum check_kind kind;
    char *file, *msg;
    bool range;
    uint64_t from, to;
};

struct run {
    struct opts *o;
    struct progress bar;
    struct found *v;
    size_t n, cap;
};

static void
on_finding(void *arg, const struct check_finding *f)
{
    struct run *r = arg;
    if (r->o->json) {
        if (r->n == r->cap) {
            size_t cap = r->cap ? 2 * r->cap : 32;
            struct found *v = realloc(r->v, cap * sizeof(*v));
            if (!v)
                return;
            r->v = v;
            r->cap = cap;
        }
        r->v[r->n++] = (struct found){f->sev,         f->kind,  strdup(f->file),
                                      strdup(f->msg), f->range, f->from,
                                      f->to};
        return;
    }
    if (r->o->quiet && f->sev == CHECK_NOTE)
        return;
    progress_clear(&r->bar);
    printf("%s: %s%s%s\n", check_sev_name(f->sev), f->file,
           f->file[0] ? ": " : "", f->msg);
    fflush(stdout);
}

static void
on_progress(void *arg, uint64_t done, uint64_t total)
{
    struct run *r = arg;
    progress_show(&r->bar, done, total);
}

/* ---- output ---- */

static void
json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void
json_total(void *arg, const char *name, const char *desc, uint64_t value)
{
    (void)desc;
    int *first = arg;
    printf("%s\"%s\":%" PRIu64, *first ? "" : ",", name, value);
    *first = 0;
}

static void
print_json(const struct run *r, const struct check_totals *t, bool live,
           int status)
{
    printf("{\"dir\":");
    json_str(r->o->dir);
    printf(",\"live\":%s,\"repair\":%s,\"findings\":[", live ? "true" : "false",
           r->o->repair ? "true" : "false");
    for (size_t i = 0; i < r->n; i++) {
        const struct found *f = &r->v[i];
        printf("%s{\"severity\":\"%s\",\"kind\":\"%s\",\"file\":", i ? "," : "",
               check_sev_name(f->sev), check_kind_name(f->kind));
        json_str(f->file);
        if (f->range)
            printf(",\"from\":%" PRIu64 ",\"to\":%" PRIu64, f->from, f->to);
        printf(",\"message\":");
        json_str(f->msg);
        putchar('}');
    }
    printf("],\"totals\":{");
    int first = 1;
    check_totals_each(t, json_total, &first);
    printf("},\"exit\":%d}\n", status);
}

static void
print_summary(const struct run *r, const struct check_totals *t, int status)
{
    char a[32], b[32], g[32];
    printf("segments:   %" PRIu64 " (%" PRIu64 " sealed), log offsets "
           "[%" PRIu64 ", %" PRIu64 "), %s in files\n",
           t->segments, t->sealed, t->log_start, t->log_end,
           progress_size(t->bytes, a, sizeof(a)));
    printf("records:    %" PRIu64 ": %" PRIu64 " put, %" PRIu64 " delete, "
           "%" PRIu64 " touch, %" PRIu64 " flush, %" PRIu64 " header, "
           "%" PRIu64 " footer, %" PRIu64 " drop, %" PRIu64 " skipped\n",
           t->records, t->puts, t->deletes, t->touches, t->flushes, t->headers,
           t->footers, t->drops, t->skipped);
    printf("live:       %" PRIu64 " keys in %s; garbage %s (%.1f%%)\n",
           t->live_keys, progress_size(t->live_bytes, b, sizeof(b)),
           progress_size(t->garbage_bytes, g, sizeof(g)),
           t->bytes ? 100.0 * (double)t->garbage_bytes / (double)t->bytes
                    : 0.0);
    printf("hints:      %" PRIu64 " valid\n", t->hints);
    if (t->unreadable_ranges)
        printf("unreadable: %" PRIu64 " bytes in %" PRIu64 " range(s)\n",
               t->unreadable_bytes, t->unreadable_ranges);
    printf("result:     %s: %s: %" PRIu64 " problem(s) left, %" PRIu64
           " repaired, %" PRIu64 " note(s)%s; exit %d\n",
           r->o->dir,
           t->errors + t->io_errors == 0 && t->repaired == 0 ? "clean"
           : t->errors + t->io_errors == 0                   ? "repaired"
                                                             : "NOT CLEAN",
           t->errors + t->io_errors, t->repaired, t->notes,
           t->io_errors ? ", some files could not be read" : "", status);
}

/* An mcdb data directory, so that locking it creates no LOCK elsewhere. */
static bool
is_data_dir(const char *dir)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/META", dir);
    if (stat(path, &st) == 0)
        return true;
    uint64_t *bases;
    size_t n;
    if (logdir_list_segments(dir, &bases, &n) != 0)
        return false;
    free(bases);
    return n > 0;
}

int
main(int argc, char **argv)
{
    struct opts o;
    int status = parse(&o, argc, argv);
    if (status)
        return status < 0 ? EXIT_CLEAN : status;
    say_set_level(SAY_ERROR); /* our own report says what was done */

    struct stat st;
    if (stat(o.dir, &st) != 0 || !S_ISDIR(st.st_mode) || !is_data_dir(o.dir)) {
        fprintf(stderr, "mcdb-fsck: %s: %s\n", o.dir,
                stat(o.dir, &st) != 0  ? strerror(errno)
                : !S_ISDIR(st.st_mode) ? strerror(ENOTDIR)
                                       : "not an mcdb data directory (no "
                                         "META, no segment file)");
        return EXIT_OPERATIONAL;
    }

    /* Hold LOCK when we can, so that no server starts during the check. */
    char err[512];
    int lockfd = -1;
    int lrc = logdir_lock(o.dir, &lockfd, err, sizeof(err));
    bool live = lrc == STORE_LOCKED;
    if (lrc && o.repair) {
        fprintf(stderr, "mcdb-fsck: %s\n", err);
        if (live)
            fprintf(stderr, "mcdb-fsck: --repair needs the directory to "
                            "itself: stop the server first (a check "
                            "without --repair may run beside it)\n");
        return EXIT_OPERATIONAL;
    }

    struct run r = {.o = &o};
    progress_init(&r.bar, o.quiet || o.json);
    struct check_totals t;
    struct check_opts co = {.repair = o.repair,
                            .live = live,
                            .report = on_finding,
                            .progress = on_progress,
                            .arg = &r};
    if (lrc) {
        char msg[700];
        snprintf(msg, sizeof(msg),
                 live ? "%s: read-only check of a live directory; the "
                        "segments being written are judged leniently"
                      : "%s; checked without the lock",
                 err);
        on_finding(&r, &(struct check_finding){.sev = CHECK_NOTE,
                                               .kind = CHECK_LIVE,
                                               .file = "LOCK",
                                               .msg = msg});
    }
    int rc = check_dir(o.dir, &co, &t);
    progress_clear(&r.bar);
    if (lrc)
        t.notes++; /* the note above: check_dir counts from zero */
    status = (t.repaired ? EXIT_REPAIRED : 0) | (t.errors ? EXIT_LEFT : 0) |
             (t.io_errors || rc ? EXIT_OPERATIONAL : 0);
    if (o.json)
        print_json(&r, &t, live, status);
    else if (!o.quiet)
        print_summary(&r, &t, status);
    for (size_t i = 0; i < r.n; i++) {
        free(r.v[i].file);
        free(r.v[i].msg);
    }
    free(r.v);
    if (lockfd >= 0)
        close(lockfd);
    return status;
}
