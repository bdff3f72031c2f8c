/*
 * Checking a data directory (mcdb-fsck). The format and the validity and
 * recovery rules are record.c's and hint.c's; this file applies them to a
 * directory without opening a store, and reports instead of refusing.
 *
 * The walk, in log order:
 *   1. META: it must parse and give the log id (every record's checksum is
 *      seeded with it; without it nothing else can be checked).
 *   2. Each segment file, oldest first:
 *      a. it starts where the previous one ended (else a range of the log
 *         is missing, or two files overlap);
 *      b. every record decodes (rec_decode) in order: the first is this
 *         segment's header (this log, this base, this format version);
 *         a footer, when there is one, is the last record and states the
 *         record count and the end offset that were read;
 *      c. after a record that does not decode, the next offset where one
 *         does is searched byte by byte. A record's checksum is seeded with
 *         its own offset, so bytes inside a value never pass for a record
 *         and the search cannot land in the middle of one. The bytes in
 *         between are reported as unreadable, with file and offsets.
 *         In the last segment, bad bytes with no valid record after them
 *         are a torn tail (an interrupted write, never acknowledged), which
 *         repair cuts with recovery's own function (log_cut_tail), saving
 *         the bytes. Bad bytes followed by a valid record are corruption,
 *         not a torn write, wherever they are: never cut;
 *      d. a sealed segment's hint must list exactly the segment's records:
 *         it is read with hint_read and compared entry by entry with the
 *         records decoded from the segment. Repair rewrites (hint_write)
 *         a missing, stale, damaged or disagreeing hint of a clean segment.
 *         The same for the hint a clean close writes of the active segment
 *         (start-up reads it once), except that none, or a stale one
 *         (start-up ignores it), is only a note.
 *   3. Every record read is replayed into an index (src/index) as start-up
 *      would (later records win, DELETE removes, FLUSH empties what came
 *      before, expired items do not count) to count live keys and bytes.
 *   4. Other files: saved torn tails (*.tail-*), temporary files (*.tmp),
 *      hints without a segment and unknown names are noted.
 *
 * A live directory (a server holds LOCK) is read as it changes: the last
 * segment grows, and while the log rolls over the one before it may still
 * lack its footer when read, so bad or missing bytes at the end of those
 * two are notes (and bad bytes in them are looked at again first:
 * decodes_later); a segment or hint that compaction deletes while we read
 * is a note, and the log then simply starts later.
 */
#include "log/check.h"
#include "index/index.h"
#include "log/hint.h"
#include "log/log_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_STEP (4u << 20)

/* One run of check_dir. */
struct ck {
    const char *dir;
    const struct check_opts *o;
    struct check_totals *t;
    uint8_t log_id[16];
    uint64_t seed;
    struct apply ap;      /* the replay into a bare index (ap.ix) */
    uint64_t done, total; /* progress */
    uint64_t shown;
};

/* One segment file being checked. */
struct segck {
    uint64_t base;
    char path[4096];
    const char *name; /* inside path */
    int fd;
    const char *map;
    uint64_t size;
    bool last;    /* the log's last segment: a torn tail may end it */
    bool lenient; /* live, and possibly being written: map is a copy */
    bool sealed;  /* its last record is a valid footer */
    uint64_t records;
    uint64_t bad; /* unreadable bytes */
};

const char *
check_kind_name(enum check_kind kind)
{
    static const char *names[] = {
#define X(name, str) [name] = str,
        CHECK_KINDS(X)
#undef X
    };
    return names[kind];
}

const char *
check_sev_name(enum check_sev sev)
{
    return sev == CHECK_ERROR      ? "error"
           : sev == CHECK_REPAIRED ? "repaired"
                                   : "note";
}

void
check_totals_each(const struct check_totals *t,
                  void (*fn)(void *arg, const char *name, const char *desc,
                             uint64_t value),
                  void *arg)
{
#define X(name, desc) fn(arg, #name, desc, t->name);
    CHECK_TOTALS(X)
#undef X
}

static void report(struct ck *c, enum check_sev sev, enum check_kind kind,
                   const char *file, bool range, uint64_t from, uint64_t to,
                   const char *fmt, ...) __attribute__((format(printf, 8, 9)));

static void
report(struct ck *c, enum check_sev sev, enum check_kind kind, const char *file,
       bool range, uint64_t from, uint64_t to, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (kind == CHECK_IO)
        c->t->io_errors++;
    else if (sev == CHECK_ERROR)
        c->t->errors++;
    else if (sev == CHECK_REPAIRED)
        c->t->repaired++;
    else
        c->t->notes++;
    struct check_finding f = {.sev = sev,
                              .kind = kind,
                              .file = file,
                              .range = range,
                              .from = from,
                              .to = to,
                              .msg = msg};
    if (c->o->report)
        c->o->report(c->o->arg, &f);
}

static void
progress(struct ck *c, bool force)
{
    if (c->o->progress && (force || c->done - c->shown >= PROGRESS_STEP)) {
        c->shown = c->done;
        c->o->progress(c->o->arg, c->done, c->total);
    }
}

/* ---- step 3: replay ---- */

/* Count the record, and replay it as start-up would (apply.c). */
static void
replay(struct ck *c, const struct rec *r, uint64_t off)
{
    switch (r->type) {
    case REC_PUT:
        c->t->puts++;
        break;
    case REC_DELETE:
        c->t->deletes++;
        break;
    case REC_TOUCH:
        c->t->touches++;
        break;
    case REC_FLUSH:
        c->t->flushes++;
        break;
    case REC_SEG_HEADER:
        c->t->headers++;
        break;
    case REC_SEG_FOOTER:
        c->t->footers++;
        break;
    case REC_DROP:
        c->t->drops++;
        break;
    default:
        c->t->skipped++;
    }
    c->t->records++;
    apply_record(&c->ap, r, off);
}

struct live {
    uint32_t now;
    uint64_t keys, bytes;
};

static int
live_visit(void *arg, const void *key, size_t klen, struct index_entry *e)
{
    (void)key;
    struct live *l = arg;
    if (e->exptime && e->exptime <= l->now)
        return INDEX_DROP;
    l->keys++;
    l->bytes += rec_size(klen, e->vlen);
    return INDEX_KEEP;
}

static void
count_live(struct ck *c)
{
    struct live l = {.now = (uint32_t)time(NULL)};
    /* a delayed flush whose time has passed: the next start flushes
     * everything the log holds */
    if (c->ap.flush_deadline && c->ap.flush_deadline <= l.now)
        apply_sweep(&c->ap, UINT64_MAX, 0);
    for (unsigned i = 0; i < index_shards(c->ap.ix); i++)
        index_scan(c->ap.ix, i, live_visit, &l);
    c->t->live_keys = l.keys;
    c->t->live_bytes = l.bytes;
    c->t->garbage_bytes = c->t->bytes > l.bytes ? c->t->bytes - l.bytes : 0;
}

/* ---- step 2b, 2c: the records of one segment ---- */

/* The end of a segment that does not decode from pos on, and nothing
 * after: a torn tail in the last segment (cut on repair). */
static uint64_t
bad_tail(struct ck *c, struct segck *g, uint64_t pos, const char *why)
{
    uint64_t from = g->base + pos, to = g->base + g->size;
    if (g->lenient) {
        report(c, CHECK_NOTE, CHECK_LIVE, g->name, true, from, to,
               "being written: the last %" PRIu64 " bytes from offset "
               "%" PRIu64 " did not decode yet (%s); not checked",
               g->size - pos, from, why);
        return g->size;
    }
    if (!g->last) {
        report(c, CHECK_ERROR, pos ? CHECK_UNREADABLE : CHECK_HEADER, g->name,
               true, from, to,
               "unreadable bytes [%" PRIu64 ", %" PRIu64 ") (file positions "
               "%" PRIu64 " to %" PRIu64 ", %" PRIu64 " bytes, to the end of "
               "the file): %s%s",
               from, to, pos, g->size, g->size - pos, why,
               pos ? "" : " (a segment of another log?)");
        g->bad += g->size - pos;
        c->t->unreadable_ranges++;
        c->t->unreadable_bytes += g->size - pos;
        return g->size;
    }
    if (!c->o->repair) {
        report(c, CHECK_ERROR, CHECK_TORN_TAIL, g->name, true, from, to,
               "torn tail at offset %" PRIu64 " (file position %" PRIu64
               "): %" PRIu64 " bytes to the end of the file: %s; start-up or "
               "mcdb-fsck --repair truncates it",
               from, pos, g->size - pos, why);
        return g->size;
    }
    struct log_tail lt = {.path = g->path,
                          .fd = g->fd,
                          .map = g->map,
                          .base = g->base,
                          .from = pos,
                          .size = g->size,
                          .why = why};
    char err[512];
    int rc = log_cut_tail(&lt, err, sizeof(err));
    if (rc) {
        report(c, CHECK_ERROR, CHECK_IO, g->name, true, from, to,
               "torn tail at offset %" PRIu64 " (%s) not truncated: %s", from,
               why, err);
        return g->size;
    }
    const char *saved = strrchr(lt.saved, '/');
    report(c, CHECK_REPAIRED, CHECK_TORN_TAIL, g->name, true, from, to,
           "torn tail at offset %" PRIu64 " (file position %" PRIu64 "): %s; "
           "truncated %" PRIu64 " bytes%s%s",
           from, pos, why, g->size - pos,
           lt.saved[0] ? ", saved as " : " (all zero)",
           lt.saved[0] ? (saved ? saved + 1 : lt.saved) : "");
    g->size = pos;
    return g->size;
}

/* pread until len bytes or the end of the file: how many, or -errno. */
static ssize_t
pread_full(int fd, char *buf, size_t len, uint64_t at)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(at + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* A live segment may be read while the writer copies a write into it: with
 * --preallocate the bytes not reached yet are zeros inside the file, and a
 * scan that met them can find records past them that the copy has since
 * written. Such bytes decode when read again; true damage does not. Bytes
 * after a footer are the padding that sealing cuts: not waited for. */
static bool
decodes_later(struct ck *c, struct segck *g, uint64_t pos)
{
    for (int i = 0; g->lenient && !g->sealed && i < 20; i++) {
        usleep(5000);
        ssize_t n = pread_full(g->fd, (char *)g->map + pos, g->size - pos, pos);
        if (n < 0)
            return false;
        g->size = pos + (uint64_t)n; /* cut meanwhile: what is left */
        struct rec r;
        if (rec_decode(g->map + pos, g->size - pos, c->seed, g->base + pos,
                       &r) > 0)
            return true;
    }
    return false;
}

/* Bytes from pos that do not decode (why): where do records resume? */
static uint64_t
bad_bytes(struct ck *c, struct segck *g, uint64_t pos, const char *why)
{
    if (decodes_later(c, g, pos))
        return pos; /* scanned again from pos */
    if (pos >= g->size)
        return g->size;
    uint64_t q = log_resync(g->map, g->size, pos, c->seed, g->base);
    if (q == g->size || (g->last && log_torn(g->map, g->size, pos, q)))
        return bad_tail(c, g, pos, why);
    uint64_t from = g->base + pos, to = g->base + q;
    report(c, CHECK_ERROR, pos ? CHECK_UNREADABLE : CHECK_HEADER, g->name, true,
           from, to,
           "unreadable bytes [%" PRIu64 ", %" PRIu64 ") (file positions "
           "%" PRIu64 " to %" PRIu64 ", %" PRIu64 " bytes): %s%s; records "
           "resume at offset %" PRIu64 "%s",
           from, to, pos, q, q - pos, pos ? "" : "segment header: ", why, to,
           g->last ? " (not a torn tail: a valid record follows)" : "");
    g->bad += q - pos;
    c->t->unreadable_ranges++;
    c->t->unreadable_bytes += q - pos;
    return q;
}

static void
check_header(struct ck *c, struct segck *g, const struct rec *r)
{
    struct rec_seg_header h;
    if (rec_seg_header_decode(r, &h) != 0) {
        report(c, CHECK_ERROR, CHECK_HEADER, g->name, true, g->base, g->base,
               "offset %" PRIu64 ": the first record is not a segment header "
               "(type %u)",
               g->base, r->type);
        return;
    }
    if (h.version != REC_FORMAT_VERSION)
        report(c, CHECK_ERROR, CHECK_HEADER, g->name, true, g->base, g->base,
               "offset %" PRIu64 ": format version %u, this mcdb reads %d",
               g->base, h.version, REC_FORMAT_VERSION);
    if (memcmp(h.log_id, c->log_id, 16) != 0)
        report(c, CHECK_ERROR, CHECK_HEADER, g->name, true, g->base, g->base,
               "offset %" PRIu64 ": the header names another log than META",
               g->base);
    if (h.base != g->base)
        report(c, CHECK_ERROR, CHECK_HEADER, g->name, true, g->base, g->base,
               "offset %" PRIu64 ": the header says the segment starts at "
               "%" PRIu64 ", its file name says %" PRIu64,
               g->base, h.base, g->base);
}

static void
check_footer(struct ck *c, struct segck *g, const struct rec *r, uint64_t off,
             uint64_t end)
{
    struct rec_seg_footer f;
    if (rec_seg_footer_decode(r, &f) != 0) {
        report(c, CHECK_ERROR, CHECK_FOOTER, g->name, true, off, end,
               "offset %" PRIu64 ": footer of the wrong size", off);
        return;
    }
    if (f.end != end)
        report(c, CHECK_ERROR, CHECK_FOOTER, g->name, true, off, end,
               "offset %" PRIu64 ": the footer says the segment ends at "
               "%" PRIu64 ", it ends at %" PRIu64,
               off, f.end, end);
    if (f.records != g->records && !g->bad)
        report(c, CHECK_ERROR, CHECK_FOOTER, g->name, true, off, end,
               "offset %" PRIu64 ": the footer counts %" PRIu64 " records, "
               "the segment holds %" PRIu64,
               off, f.records, g->records);
}

static void
scan(struct ck *c, struct segck *g)
{
    uint64_t pos = 0, done0 = c->done;
    while (pos < g->size) {
        struct rec r;
        uint64_t off = g->base + pos;
        long n = rec_decode(g->map + pos, g->size - pos, c->seed, off, &r);
        if (n < 0 && g->last && log_all_zero(g->map + pos, g->size - pos)) {
            /* zeros to the end: where the log ends (recover.c, rule 3) */
            report(c, CHECK_NOTE, CHECK_TORN_TAIL, g->name, true, off,
                   g->base + g->size,
                   "the log ends at offset %" PRIu64 ", before %" PRIu64
                   " zero bytes (room the writer gives the file ahead of its "
                   "records, or writes that never reached the disk); the "
                   "next writes go over them",
                   off, g->size - pos);
            break;
        }
        if (n < 0) {
            pos = bad_bytes(c, g, pos, rec_strerror((int)n));
            continue;
        }
        g->records++;
        if (pos == 0)
            check_header(c, g, &r);
        else if (r.type == REC_SEG_HEADER)
            report(c, CHECK_ERROR, CHECK_HEADER, g->name, true, off, off + n,
                   "offset %" PRIu64 ": a segment header in the middle of "
                   "the segment",
                   off);
        replay(c, &r, off);
        g->sealed = false;
        pos += (uint64_t)n;
        if (r.type == REC_SEG_FOOTER) {
            check_footer(c, g, &r, off, g->base + pos);
            g->sealed = true;
            if (pos < g->size) {
                struct rec next;
                if (rec_decode(g->map + pos, g->size - pos, c->seed,
                               g->base + pos, &next) > 0)
                    report(c, CHECK_ERROR, CHECK_FOOTER, g->name, true, off,
                           g->base + pos,
                           "offset %" PRIu64 ": a footer that is not the "
                           "segment's last record",
                           off);
                else
                    pos = bad_bytes(c, g, pos, "bytes after the footer");
            }
        }
        c->done = done0 + pos;
        progress(c, false);
    }
    c->done = done0 + g->size;
}

/* ---- step 2d: the hint of a sealed (or the active) segment ---- */

struct hcmp {
    const struct ck *c;
    const struct segck *g;
    uint64_t pos, n;
    char why[256];
};

static const char *
differs(const struct rec *h, const struct rec *r)
{
    if (h->type != r->type)
        return "type";
    if (h->rflags != r->rflags || h->klen != r->klen || h->vlen != r->vlen)
        return "lengths";
    if (h->flags != r->flags || h->exptime != r->exptime)
        return "flags or exptime";
    if (h->cas != r->cas || h->time_ms != r->time_ms)
        return "cas or time";
    if (memcmp(h->key, r->key, r->klen) != 0)
        return "key";
    if (r->type != REC_PUT && r->vlen &&
        (!h->val || memcmp(h->val, r->val, r->vlen) != 0))
        return "value";
    return NULL;
}

static int
hint_entry(void *arg, const struct rec *h, uint64_t off)
{
    struct hcmp *x = arg;
    const struct segck *g = x->g;
    struct rec r;
    long n = -1;
    if (off == g->base + x->pos && x->pos < g->size)
        n = rec_decode(g->map + x->pos, g->size - x->pos, x->c->seed, off, &r);
    if (n < 0) {
        snprintf(x->why, sizeof(x->why),
                 "entry %" PRIu64 " names offset %" PRIu64 ", the segment's "
                 "record %" PRIu64 " is at %" PRIu64,
                 x->n, off, x->n, g->base + x->pos);
        return 1;
    }
    const char *field = differs(h, &r);
    if (field) {
        snprintf(x->why, sizeof(x->why),
                 "entry %" PRIu64 " (offset %" PRIu64 ") disagrees with the "
                 "segment's record: %s",
                 x->n, off, field);
        return 1;
    }
    x->pos += (uint64_t)n;
    x->n++;
    return 0;
}

static void
check_hint(struct ck *c, struct segck *g)
{
    char path[4096];
    hint_path(c->dir, g->base, path, sizeof(path));
    const char *name = strrchr(path, '/') + 1;
    /* the active segment's hint, of a clean close, is used by the next
     * start-up if its size is the file's: checked as a sealed one's */
    bool active = !g->sealed && g->last && !g->lenient && !g->bad;
    if (!g->sealed && (g->last || g->lenient) && !active) {
        if (access(path, F_OK) == 0)
            report(c, CHECK_NOTE, CHECK_HINT, name, false, 0, 0,
                   "a hint for the active segment (start-up ignores it)");
        return;
    }
    if (g->bad || (!g->sealed && !active)) {
        if (access(path, F_OK) == 0)
            report(c, CHECK_NOTE, CHECK_HINT, name, false, 0, 0,
                   "not checked: its segment %s is damaged", g->name);
        return;
    }
    struct hcmp x = {.c = c, .g = g};
    int rc = hint_read(c->dir, c->log_id, g->base, g->size, hint_entry, &x);
    if (rc == 0 && x.pos != g->size) {
        snprintf(x.why, sizeof(x.why),
                 "it lists %" PRIu64 " records, the segment has more from "
                 "offset %" PRIu64,
                 x.n, g->base + x.pos);
        rc = 1;
    }
    if (rc == 0) {
        c->t->hints++;
        return;
    }
    if (active && (rc == HINT_E_MISSING || rc == HINT_E_STALE)) {
        if (rc == HINT_E_STALE)
            report(c, CHECK_NOTE, CHECK_HINT, name, false, 0, 0,
                   "a hint for the active segment: %s (start-up ignores it)",
                   hint_strerror(rc));
        return;
    }
    if (rc == HINT_E_MISSING && g->lenient) {
        report(c, CHECK_NOTE, CHECK_LIVE, name, false, 0, 0,
               "no hint yet for the segment sealed last");
        return;
    }
    struct stat now;
    if (rc == HINT_E_STALE && g->lenient && fstat(g->fd, &now) == 0 &&
        (uint64_t)now.st_size != g->size) {
        /* sealed (its padding cut) while we read it: the hint is of the
         * file as it is now */
        report(c, CHECK_NOTE, CHECK_LIVE, name, false, 0, 0,
               "not checked: the segment changed size while it was read "
               "(%" PRIu64 " -> %lld bytes)",
               g->size, (long long)now.st_size);
        return;
    }
    const char *what = rc > 0 ? x.why : hint_strerror(rc);
    enum check_sev sev = rc == HINT_E_MISSING ? CHECK_NOTE : CHECK_ERROR;
    enum check_kind kind = rc < 0 && rc > -1000 ? CHECK_IO : CHECK_HINT;
    if (!c->o->repair || kind == CHECK_IO) {
        report(c, sev, kind, name, false, 0, 0, "%s%s", what,
               rc == HINT_E_MISSING
                   ? " (start-up scans the segment; --repair writes it)"
                   : "; start-up scans the segment instead; --repair "
                     "rebuilds it");
        return;
    }
    int wrc = hint_write(c->dir, c->log_id, g->base, g->map, g->size);
    if (wrc)
        report(c, CHECK_ERROR, CHECK_IO, name, false, 0, 0,
               "%s; rebuilding it failed: %s", what, hint_strerror(wrc));
    else {
        c->t->hints++;
        report(c, CHECK_REPAIRED, CHECK_HINT, name, false, 0, 0,
               "%s; rebuilt from %s", what, g->name);
    }
}

/* ---- step 2: one segment file ---- */

static int
open_segment(struct ck *c, struct segck *g)
{
    int flags = (c->o->repair && g->last ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    g->fd = open(g->path, flags);
    if (g->fd < 0)
        return -errno;
    struct stat st;
    if (fstat(g->fd, &st) != 0)
        return -errno;
    g->size = (uint64_t)st.st_size;
    if (g->size == 0)
        return 0;
    if (g->lenient) {
        /* A live segment is read into memory: a mapping would fault
         * (SIGBUS) where the server cuts the file while we read it (the
         * padding --preallocate gives it, cut when it is sealed). */
        char *b = malloc(g->size);
        if (!b)
            return -ENOMEM;
        g->map = b;
        ssize_t n = pread_full(g->fd, b, g->size, 0);
        if (n < 0)
            return (int)n;
        g->size = (uint64_t)n; /* cut meanwhile: what is left */
        return 0;
    }
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, g->fd, 0);
    if (m == MAP_FAILED)
        return -errno;
    madvise(m, g->size, MADV_SEQUENTIAL);
    g->map = m;
    return 0;
}

static void
close_segment(struct segck *g, uint64_t mapped)
{
    if (g->map && g->lenient)
        free((void *)g->map);
    else if (g->map)
        munmap((void *)g->map, mapped);
    if (g->fd >= 0)
        close(g->fd);
}

/* *expect: where this segment should start; UINT64_MAX when unknown. */
static void
check_segment(struct ck *c, uint64_t base, bool last, bool lenient,
              uint64_t *expect)
{
    struct segck g = {.base = base, .fd = -1, .last = last, .lenient = lenient};
    logdir_seg_path(c->dir, base, g.path, sizeof(g.path));
    g.name = strrchr(g.path, '/') + 1;
    if (*expect != UINT64_MAX && base > *expect)
        report(c, CHECK_ERROR, CHECK_MISSING, g.name, true, *expect, base,
               "log bytes [%" PRIu64 ", %" PRIu64 ") are missing (%" PRIu64
               " bytes): no segment file holds them between the previous "
               "segment and this one",
               *expect, base, base - *expect);
    else if (*expect != UINT64_MAX && base < *expect)
        report(c, CHECK_ERROR, CHECK_OVERLAP, g.name, true, base, *expect,
               "starts at offset %" PRIu64 ", inside the previous segment "
               "(which ends at %" PRIu64 ")",
               base, *expect);
    int rc = open_segment(c, &g);
    uint64_t mapped = g.size;
    if (rc == -ENOENT && c->o->live) {
        report(c, CHECK_NOTE, CHECK_LIVE, g.name, false, 0, 0,
               "deleted by compaction while checked");
        *expect = UINT64_MAX;
        close_segment(&g, mapped);
        return;
    }
    if (rc) {
        report(c, CHECK_ERROR, CHECK_IO, g.name, false, 0, 0, "%s",
               strerror(-rc));
        *expect = UINT64_MAX;
        close_segment(&g, mapped);
        return;
    }
    c->t->segments++;
    if (g.size == 0)
        report(c, CHECK_NOTE, CHECK_HEADER, g.name, true, base, base,
               "empty: the next start writes its header");
    scan(c, &g);
    if (g.sealed)
        c->t->sealed++;
    else if (!last && !lenient)
        report(c, CHECK_ERROR, CHECK_FOOTER, g.name, true, base + g.size,
               base + g.size,
               "no footer at its end (offset %" PRIu64 "), but it is not the "
               "last segment",
               base + g.size);
    else if (!last)
        report(c, CHECK_NOTE, CHECK_LIVE, g.name, false, 0, 0,
               "no footer yet: the log was rolling over while checked");
    check_hint(c, &g);
    c->t->bytes += g.size;
    if (c->t->segments == 1)
        c->t->log_start = base;
    c->t->log_end = base + g.size;
    *expect = base + g.size;
    close_segment(&g, mapped);
    progress(c, true);
}

/* ---- step 4: the other files ---- */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
is_digits(const char *s, size_t n)
{
    return strspn(s, "0123456789") >= n;
}

static bool
has_segment(const uint64_t *bases, size_t n, uint64_t base)
{
    for (size_t i = 0; i < n; i++)
        if (bases[i] == base)
            return true;
    return false;
}

static void
note_file(struct ck *c, const char *name, const uint64_t *bases, size_t n)
{
    size_t len = strlen(name);
    if (!strcmp(name, "LOCK") || !strcmp(name, "META") ||
        !strcmp(name, "ABOUT") ||
        (len == 24 && is_digits(name, 20) && !strcmp(name + 20, ".seg")))
        return;
    if (len == 25 && is_digits(name, 20) && !strcmp(name + 20, ".hint")) {
        if (!has_segment(bases, n, strtoull(name, NULL, 10)))
            report(c, CHECK_NOTE, CHECK_STRAY, name, false, 0, 0,
                   "a hint without its segment (start-up ignores it)");
    } else if (strstr(name, ".seg.tail-")) {
        report(c, CHECK_NOTE, CHECK_STRAY, name, false, 0, 0,
               "bytes of a torn tail cut by recovery or --repair: never "
               "acknowledged, not part of the log (keep it for inspection or "
               "delete it)");
    } else if (!strncmp(name, "diverged-", 9)) {
        report(c, CHECK_NOTE, CHECK_STRAY, name, false, 0, 0,
               "records that the primary never had, moved aside when this "
               "directory rejoined as a replica (its ABOUT says which; "
               "mcdb-fsck %s/%s checks them)",
               c->dir, name);
    } else if (!strncmp(name, "resync.", 7)) {
        report(c, CHECK_NOTE, CHECK_STRAY, name, false, 0, 0, "%s",
               !strcmp(name, "resync.partial")
                   ? "a replica's full copy under way, or cut short (the "
                     "next start throws it away)"
                   : "a replica's full copy being installed (the next start "
                     "finishes it)");
    } else if (len > 4 && !strcmp(name + len - 4, ".tmp")) {
        report(c, CHECK_NOTE, CHECK_STRAY, name, false, 0, 0,
               "a temporary file%s (not part of the log)",
               c->o->live ? " being written, or left by a crash"
                          : " left by a crash");
    } else {
        report(c, CHECK_NOTE, CHECK_STRAY, name, false, 0, 0,
               "not an mcdb file");
    }
}

static int
note_files(struct ck *c, const uint64_t *bases, size_t n)
{
    DIR *d = opendir(c->dir);
    if (!d)
        return -errno;
    char **names = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (cnt == cap) {
            char **v = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof(*v));
            if (!v) {
                rc = -ENOMEM;
                break;
            }
            names = v;
        }
        if (!(names[cnt] = strdup(de->d_name))) {
            rc = -ENOMEM;
            break;
        }
        cnt++;
    }
    closedir(d);
    if (cnt)
        qsort(names, cnt, sizeof(*names), cmp_str);
    for (size_t i = 0; i < cnt; i++) {
        if (rc == 0)
            note_file(c, names[i], bases, n);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ---- the whole directory ---- */

static uint64_t
file_size(const char *dir, uint64_t base)
{
    char path[4096];
    struct stat st;
    logdir_seg_path(dir, base, path, sizeof(path));
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static bool
seg_blank(const char *dir, uint64_t base)
{
    char path[4096];
    logdir_seg_path(dir, base, path, sizeof(path));
    return log_file_blank(path) == 1;
}

static void
check_segments(struct ck *c, const uint64_t *bases, size_t n)
{
    /* An empty (or all-zero) last file after another is the next segment
     * of a roll-over that a crash interrupted (recovery removes it) or,
     * live, that is under way: the segment before it is the last.
     * Appenders may have rolled over more than once ahead of the writer:
     * several such. */
    while (n >= 2 && seg_blank(c->dir, bases[n - 1])) {
        char path[4096];
        logdir_seg_path(c->dir, bases[n - 1], path, sizeof(path));
        report(c, CHECK_NOTE, c->o->live ? CHECK_LIVE : CHECK_STRAY,
               strrchr(path, '/') + 1, false, 0, 0, "%s",
               c->o->live ? "empty: the log is rolling over to it"
                          : "empty: left by a crash while the log rolled "
                            "over; the next start removes it");
        c->t->segments++;
        n--;
    }
    for (size_t i = 0; i < n; i++)
        c->total += file_size(c->dir, bases[i]);
    uint64_t expect = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        check_segment(c, bases[i], i == n - 1, c->o->live && i + 2 >= n,
                      &expect);
    /* Compaction deletes a segment just after its DROP record; a crash in
     * between leaves both, and the next start deletes the segment. */
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t end = bases[i + 1];
        if (end > c->ap.dropped_end)
            break;
        char path[4096];
        logdir_seg_path(c->dir, bases[i], path, sizeof(path));
        report(c, CHECK_NOTE, CHECK_STRAY, strrchr(path, '/') + 1, true,
               bases[i], end,
               "compaction dropped it (DROP record at offset %" PRIu64 ") "
               "but the file is still there; the next start deletes it",
               c->ap.drop_off);
    }
}

int
check_dir(const char *dir, const struct check_opts *o, struct check_totals *t)
{
    struct ck c = {.dir = dir, .o = o, .t = t};
    memset(t, 0, sizeof(*t));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        int rc = stat(dir, &st) != 0 ? -errno : -ENOTDIR;
        report(&c, CHECK_ERROR, CHECK_IO, "", false, 0, 0, "%s: %s", dir,
               strerror(-rc));
        return rc;
    }
    uint64_t *bases = NULL;
    size_t n = 0;
    int rc = logdir_list_segments(dir, &bases, &n);
    if (rc) {
        report(&c, CHECK_ERROR, CHECK_IO, "", false, 0, 0, "listing %s: %s",
               dir, store_strerror(rc));
        return rc;
    }
    char err[512];
    int mrc = logdir_meta_read(dir, c.log_id, err, sizeof(err));
    if (mrc == -ENOENT && n == 0) {
        report(&c, CHECK_ERROR, CHECK_IO, "", false, 0, 0,
               "%s: not an mcdb data directory (no META, no segment)", dir);
        free(bases);
        return -ENOTDIR;
    }
    if (mrc) {
        report(&c, CHECK_ERROR, CHECK_META, "META", false, 0, 0,
               "%s; without the log id no record can be checked",
               mrc == -ENOENT ? "missing" : err);
    } else {
        c.seed = rec_log_seed(c.log_id);
        c.ap = (struct apply){.ix = index_new(0), .nparts = 1};
        if (!c.ap.ix) {
            free(bases);
            return -ENOMEM;
        }
        check_segments(&c, bases, n);
        count_live(&c);
        index_free(c.ap.ix);
    }
    rc = note_files(&c, bases, n);
    if (rc)
        report(&c, CHECK_ERROR, CHECK_IO, "", false, 0, 0, "listing %s: %s",
               dir, strerror(-rc));
    free(bases);
    return rc;
}
