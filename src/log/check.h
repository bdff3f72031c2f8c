/*
 * check: verify a data directory without opening a store (mcdb-fsck).
 *
 * check_dir() reads META, every segment record by record (rec_decode),
 * every hint file (hint_read, compared entry by entry with its segment) and
 * the files around them, and reports each finding through a callback as it
 * goes. With repair it does only what is safe without judgement: it
 * truncates the torn tail of the last segment (saving the cut bytes as
 * recovery does) and rebuilds hint files. It never deletes a byte it could
 * not read.
 *
 * The rules (which record is valid, what is a torn tail) are record.c's;
 * this file only walks them.
 */
#ifndef MCDB_CHECK_H
#define MCDB_CHECK_H

#include <stdbool.h>
#include <stdint.h>

/* What a finding is about: enum name, name in reports. */
#define CHECK_KINDS(X)                                                         \
    X(CHECK_META, "meta")                                                      \
    X(CHECK_HEADER, "segment-header")                                          \
    X(CHECK_UNREADABLE, "unreadable")                                          \
    X(CHECK_TORN_TAIL, "torn-tail")                                            \
    X(CHECK_FOOTER, "footer")                                                  \
    X(CHECK_MISSING, "missing-segment")                                        \
    X(CHECK_OVERLAP, "overlap")                                                \
    X(CHECK_HINT, "hint")                                                      \
    X(CHECK_STRAY, "stray-file")                                               \
    X(CHECK_LIVE, "live")                                                      \
    X(CHECK_IO, "io")

enum check_kind {
#define X(name, str) name,
    CHECK_KINDS(X)
#undef X
};
const char *check_kind_name(enum check_kind kind);

enum check_sev {
    CHECK_NOTE,     /* worth knowing, not a problem */
    CHECK_ERROR,    /* a problem left as it is */
    CHECK_REPAIRED, /* a problem that repair fixed */
};
const char *check_sev_name(enum check_sev sev);

struct check_finding {
    enum check_sev sev;
    enum check_kind kind;
    const char *file; /* a name inside the directory; "" for the directory */
    bool range;       /* [from, to) below are log offsets that apply */
    uint64_t from, to;
    const char *msg; /* one line, without the file name */
};

/* name, description: the struct and every report of the totals. */
#define CHECK_TOTALS(X)                                                        \
    X(segments, "segment files")                                               \
    X(sealed, "segments with a valid footer")                                  \
    X(records, "valid records")                                                \
    X(puts, "PUT records")                                                     \
    X(deletes, "DELETE records")                                               \
    X(touches, "TOUCH records")                                                \
    X(flushes, "FLUSH records")                                                \
    X(headers, "segment headers")                                              \
    X(footers, "segment footers")                                              \
    X(drops, "DROP records")                                                   \
    X(skipped, "records of unknown types that readers may skip")               \
    X(log_start, "log offset of the first segment")                            \
    X(log_end, "log offset just past the last segment")                        \
    X(bytes, "bytes in segment files")                                         \
    X(live_keys, "keys a start-up would load")                                 \
    X(live_bytes, "bytes of the records those keys point at")                  \
    X(garbage_bytes, "bytes that compaction can reclaim")                      \
    X(unreadable_ranges, "byte ranges that did not decode")                    \
    X(unreadable_bytes, "bytes in those ranges")                               \
    X(hints, "hint files that match their segment (or were rebuilt)")          \
    X(errors, "problems left")                                                 \
    X(repaired, "problems repaired")                                           \
    X(notes, "notes")                                                          \
    X(io_errors, "files that could not be read or written")

struct check_totals {
#define X(name, desc) uint64_t name;
    CHECK_TOTALS(X)
#undef X
};

/* Call fn for each figure of t, in table order. */
void check_totals_each(const struct check_totals *t,
                       void (*fn)(void *arg, const char *name, const char *desc,
                                  uint64_t value),
                       void *arg);

struct check_opts {
    /* Cut a torn tail, rebuild missing, stale or damaged hints. The caller
     * must hold the directory's LOCK (logdir_lock). */
    bool repair;
    /* A server holds the directory: the segments being written (the last
     * one, and the one before while the log rolls over) may grow or lack
     * their footer while read; they are judged leniently. Segments and
     * hints that compaction deletes while read are noted, not errors. */
    bool live;
    void (*report)(void *arg, const struct check_finding *f);
    /* Called now and then with bytes of segments read and the total. */
    void (*progress)(void *arg, uint64_t done, uint64_t total);
    void *arg;
};

/*
 * Check the data directory dir. Every finding goes to o->report and is
 * counted in *t (errors, repaired, notes, io_errors). Returns 0 when the
 * directory could be checked (whatever was found), else a negative code
 * (-errno, or -ENOTDIR when dir is not a data directory), also reported.
 */
int check_dir(const char *dir, const struct check_opts *o,
              struct check_totals *t);

#endif
