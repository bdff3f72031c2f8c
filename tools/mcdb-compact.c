/*
 * mcdb-compact: compact a data directory offline.
 *   build/mcdb-compact ./data              (no server may hold ./data)
 *
 * Opens the store as the server would (recovery included), runs the
 * engine's own compaction over every sealed segment (store_compact with
 * all = true: the code the server's background compactor runs, without its
 * rate limit), and closes it (which writes the missing hint files). Prints
 * the log and live sizes before and after; a progress bar on a terminal.
 *
 * The store is opened with the largest segment file in the directory as
 * both its segment size and its largest item: no record is larger than a
 * segment file, and the log keeps about the segment size the server used.
 *
 * Exit status, like fsck(8): 0 done, 4 the log is damaged (run mcdb-fsck;
 * nothing was compacted), 8 operational error (the directory is in use by a
 * server, unreadable, or a write failed), 16 usage error.
 * Docs: docs/tools.md.
 */
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

enum {
    EXIT_DONE = 0,
    EXIT_DAMAGED = 4,
    EXIT_OPERATIONAL = 8,
    EXIT_USAGE = 16,
};

/* field, long name, short name, help */
#define COMPACT_OPTIONS(X)                                                     \
    X(quiet, "quiet", 'q', "print only errors; no progress bar")               \
    X(help, "help", 'h', "print this help and exit")                           \
    X(version, "version", 'V', "print the version and exit")

struct opts {
#define X(field, lname, sname, help) bool field;
    COMPACT_OPTIONS(X)
#undef X
    const char *dir;
};

static void
usage(FILE *out)
{
    fprintf(out, "Usage: mcdb-compact [options] DATA\n"
                 "Compact an mcdb data directory offline (no server may "
                 "hold it).\n\nOptions:\n");
#define X(field, lname, sname, help)                                           \
    usage_option(out, sname, lname, NULL, help, NULL);
    COMPACT_OPTIONS(X)
#undef X
    fprintf(out, "\nExit status: 0 done, 4 the log is damaged (run "
                 "mcdb-fsck), 8 operational error,\n16 usage error. See "
                 "docs/tools.md.\n");
}

/* 0: run; -1: exit 0 (help, version); else the exit status. */
static int
parse(struct opts *o, int argc, char **argv)
{
    static const struct option longs[] = {
#define X(field, lname, sname, help) {lname, no_argument, NULL, sname},
        COMPACT_OPTIONS(X)
#undef X
            {NULL, 0, NULL, 0}};
    static const char shorts[] = {':',
#define X(field, lname, sname, help) sname,
                                  COMPACT_OPTIONS(X)
#undef X
                                      '\0'};
    memset(o, 0, sizeof(*o));
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
#define X(field, lname, sname, help)                                           \
    if (c == sname) {                                                          \
        o->field = true;                                                       \
        continue;                                                              \
    }
        COMPACT_OPTIONS(X)
#undef X
        fprintf(stderr,
                "mcdb-compact: unknown option '%s'\n"
                "Try 'mcdb-compact --help'.\n",
                argv[optind - 1]);
        return EXIT_USAGE;
    }
    if (o->help) {
        usage(stdout);
        return -1;
    }
    if (o->version) {
        printf("mcdb-compact %s\n", MCDB_VERSION);
        return -1;
    }
    if (optind != argc - 1) {
        fprintf(stderr,
                "mcdb-compact: %s\nUsage: mcdb-compact [--quiet] "
                "DATA\nTry 'mcdb-compact --help'.\n",
                optind == argc ? "no data directory given"
                               : "one data directory only");
        return EXIT_USAGE;
    }
    o->dir = argv[optind];
    return 0;
}

/* The largest segment file, or 0 when the directory has none. */
static int
largest_segment(const char *dir, uint64_t *largest)
{
    uint64_t *bases;
    size_t n;
    int rc = logdir_list_segments(dir, &bases, &n);
    if (rc)
        return rc;
    *largest = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        logdir_seg_path(dir, bases[i], path, sizeof(path));
        if (stat(path, &st) == 0 && (uint64_t)st.st_size > *largest)
            *largest = (uint64_t)st.st_size;
    }
    free(bases);
    return 0;
}

static void
print_sizes(const char *when, store_t *s)
{
    struct store_stats st;
    char a[32], b[32];
    store_stats(s, &st);
    printf("%-7s %" PRIu64 " segment(s), log %s, live %s in %" PRIu64
           " key(s), garbage %.1f%%\n",
           when, st.segments, progress_size(st.log_bytes, a, sizeof(a)),
           progress_size(st.live_bytes, b, sizeof(b)), st.items,
           (double)st.garbage_permille / 10);
}

static void
on_progress(void *arg, uint64_t done, uint64_t total)
{
    progress_show(arg, done, total);
}

int
main(int argc, char **argv)
{
    struct opts o;
    int status = parse(&o, argc, argv);
    if (status)
        return status < 0 ? EXIT_DONE : status;
    say_set_level(SAY_WARN); /* recovery's torn-tail warnings, not chatter */

    /* store_open creates a missing directory: refuse anything but a log. */
    char meta[4096], err0[512];
    struct stat st;
    snprintf(meta, sizeof(meta), "%s/META", o.dir);
    uint64_t largest = 0;
    int rc = stat(meta, &st) == 0 ? largest_segment(o.dir, &largest) : -ENOENT;
    if (rc) {
        fprintf(stderr, "mcdb-compact: %s: %s\n", o.dir,
                rc == -ENOENT ? "not an mcdb data directory (no META)"
                              : store_strerror(rc));
        return EXIT_OPERATIONAL;
    }

    /* A replica's log is its primary's, byte for byte: compacting it here
     * would make it another log. Its primary compacts; DROP records carry
     * that over. */
    struct logdir_meta m;
    if (logdir_meta_load(o.dir, &m, err0, sizeof(err0)) == 0 &&
        m.role == LOGDIR_REPLICA) {
        fprintf(stderr,
                "mcdb-compact: %s is a replica's data directory (of %s): "
                "its primary compacts, and the replica follows; compacting "
                "it here would make it differ from its primary\n",
                o.dir, m.primary);
        return EXIT_OPERATIONAL;
    }

    struct store_config cfg;
    store_config_default(&cfg);
    cfg.dir = o.dir;
    cfg.compactor = false;
    cfg.compact_rate = 0; /* offline: as fast as the disk goes */
    cfg.segment_size =
        largest > STORE_MIN_SEGMENT_SIZE ? largest : STORE_MIN_SEGMENT_SIZE;
    if (largest > cfg.max_item_size)
        cfg.max_item_size =
            largest < (1u << 30) ? (uint32_t)largest : (1u << 30);
    store_t *s;
    char err[512];
    rc = store_open(&cfg, &s, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "mcdb-compact: %s\n",
                err[0] ? err : store_strerror(rc));
        return rc == STORE_CORRUPT ? EXIT_DAMAGED : EXIT_OPERATIONAL;
    }
    if (!o.quiet)
        print_sizes("before:", s);
    struct progress bar;
    progress_init(&bar, o.quiet);
    rc = store_compact(s, true, on_progress, &bar);
    progress_clear(&bar);
    if (!o.quiet)
        print_sizes("after:", s);
    if (rc)
        fprintf(stderr, "mcdb-compact: compaction stopped: %s%s%s\n",
                store_strerror(rc), store_error_text(s)[0] ? ": " : "",
                store_error_text(s));
    store_close(s);
    return rc == 0               ? EXIT_DONE
           : rc == STORE_CORRUPT ? EXIT_DAMAGED
                                 : EXIT_OPERATIONAL;
}
