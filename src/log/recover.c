/*
 * Recovery: rebuild the index from the segment files at start-up.
 *
 * Rules (the format and why they are safe are in record.c):
 *   1. Segment files must be contiguous: each starts where the previous one
 *      ends. Every segment starts with a header of this log at its base.
 *   2. Every segment but the last must be sealed (end with its footer). Any
 *      invalid record in them is corruption: open refuses, naming the file
 *      and offset, and points to mcdb-fsck.
 *   3. In the last (active) segment, zeros from a record boundary to the
 *      end of the file are where the log ends (the room --preallocate
 *      gives the file, or writes that never reached the disk): nothing is
 *      cut. Otherwise the first invalid record starts a torn tail: the
 *      file is cut there and the cut is logged. Bytes cut that are not all
 *      zero are first saved beside the segment as <segment>.tail-<offset>,
 *      so that not even unacknowledged bytes are thrown away unseen. A
 *      torn write leaves either nothing valid after the bad record or,
 *      when the machine stopped with pages of the last write in any order
 *      on disk, a hole: a whole page of zeros, or a page as it was before
 *      the write reached it, so that the bad record starts in zeros that
 *      run to the page's end (a live copy read while the page was written
 *      looks the same). Bad bytes followed by valid records with no such
 *      hole are corruption (a flipped bit in an acknowledged record): open
 *      refuses (log_torn).
 *   4. Records are applied in offset order by apply_record (apply.c, where
 *      the rules are written), expired items are swept out at the end, and
 *      the next cas is above every cas seen and every segment's cas floor.
 *      They are queued in batches of 16 (apply_batch_add), which applies
 *      them in the same order with the index's cache misses overlapped.
 */
#include "log/hint.h"
#include "log/log_int.h"
#include "util/cpus.h"
#include "util/panic.h"
#include "util/say.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct scan {
    struct store *s;
    struct seg *g;
    const char *map;
    uint64_t size; /* file size */
    bool last;
    bool sealed;
    bool no_hint;   /* its hint was already found unusable */
    uint64_t valid; /* bytes of valid records from the start */
    uint64_t records;
    /* What the replay learns; with several threads each has its own and
     * they are merged (apply_merge). */
    struct apply ap;
    /* records queued for ap, pointing into the mapped segment or hint:
     * applied before it is unmapped */
    struct apply_batch batch;
    char path[4096];
};

static int
check_header(struct scan *sc, const struct rec *r, char *err, size_t errlen)
{
    struct rec_seg_header h;
    if (rec_seg_header_decode(r, &h) != 0) {
        snprintf(err, errlen, "%s: offset %" PRIu64 ": no segment header",
                 sc->path, sc->g->seg_base);
        return STORE_CORRUPT;
    }
    if (memcmp(h.log_id, sc->s->log_id, 16) != 0 || h.base != sc->g->seg_base) {
        snprintf(err, errlen,
                 "%s: segment header names another log or base offset "
                 "%" PRIu64 " (this log's META disagrees)",
                 sc->path, h.base);
        return STORE_CORRUPT;
    }
    if (h.cas_floor > sc->ap.next_cas)
        sc->ap.next_cas = h.cas_floor;
    return 0;
}

int
log_cut_tail(struct log_tail *t, char *err, size_t errlen)
{
    uint64_t from = t->from, to = t->size;
    while (to > from && t->map[to - 1] == 0)
        to--;
    uint64_t off = t->base + from;
    t->saved[0] = '\0';
    if (to > from) {
        char save[sizeof(t->saved)];
        snprintf(save, sizeof(save), "%s.tail-%" PRIu64, t->path, off);
        int fd = open(save, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 ||
            write(fd, t->map + from, to - from) != (ssize_t)(to - from) ||
            fsync(fd) != 0) {
            snprintf(err, errlen, "saving torn tail to %s: %s", save,
                     strerror(errno));
            if (fd >= 0)
                close(fd);
            return -EIO;
        }
        close(fd);
        snprintf(t->saved, sizeof(t->saved), "%s", save);
        say(SAY_WARN, "saved %" PRIu64 " bytes of the torn tail to %s",
            to - from, save);
    }
    say(SAY_WARN,
        "%s: torn tail at offset %" PRIu64 " (file position %" PRIu64
        "): %s; truncating %" PRIu64 " bytes",
        t->path, off, from, t->why, t->size - from);
    if (ftruncate(t->fd, (off_t)from) != 0 || fdatasync(t->fd) != 0) {
        snprintf(err, errlen, "truncating %s: %s", t->path, strerror(errno));
        return -errno;
    }
    return 0;
}

/* Save the non-zero part of a torn tail beside the segment, then cut. */
static int
cut_tail(struct scan *sc, const char *why, char *err, size_t errlen)
{
    struct log_tail t = {.path = sc->path,
                         .fd = sc->g->seg_fd,
                         .map = sc->map,
                         .base = sc->g->seg_base,
                         .from = sc->valid,
                         .size = sc->size,
                         .why = why};
    int rc = log_cut_tail(&t, err, errlen);
    if (rc == 0)
        sc->size = sc->g->seg_size = sc->valid;
    return rc;
}

uint64_t
log_resync(const char *map, uint64_t size, uint64_t pos, uint64_t seed,
           uint64_t base)
{
    struct rec r;
    for (uint64_t q = pos + 1; q < size; q++)
        if (rec_decode(map + q, size - q, seed, base + q, &r) > 0)
            return q;
    return size;
}

#define PAGE 4096

bool
log_all_zero(const char *map, uint64_t len)
{
    static const char zeros[PAGE];
    for (uint64_t p = 0; p < len; p += PAGE) {
        uint64_t n = len - p < PAGE ? len - p : PAGE;
        if (memcmp(map + p, zeros, n) != 0)
            return false;
    }
    return true;
}

int
log_file_blank(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    static char buf[1 << 16];
    int blank = 1;
    ssize_t n;
    while (blank && (n = read(fd, buf, sizeof(buf))) > 0)
        blank = log_all_zero(buf, (uint64_t)n);
    int rc = n < 0 ? -errno : blank;
    close(fd);
    return rc;
}

/* Zero bytes at a record's start that rule out a damaged record: its
 * checksum, type, flags and lengths (a valid header has a type). */
#define STALE_MIN_ZEROS 16

bool
log_torn(const char *map, uint64_t size, uint64_t pos, uint64_t next)
{
    if (next >= size)
        return true;
    /* a page written back as it was before the last write reached it: the
     * bad record starts in zeros that run to the page's end */
    uint64_t end = (pos / PAGE + 1) * PAGE;
    if (end <= next && end - pos >= STALE_MIN_ZEROS &&
        log_all_zero(map + pos, end - pos))
        return true;
    static const char zeros[PAGE];
    for (uint64_t p = (pos + PAGE - 1) / PAGE * PAGE; p + PAGE <= next;
         p += PAGE)
        if (memcmp(map + p, zeros, PAGE) == 0)
            return true;
    return false;
}

/* A header that names another log is never a torn tail: refuse before the
 * checksum (seeded with this log's id) could make it look like one. */
static int
check_foreign(struct scan *sc, char *err, size_t errlen)
{
    const char *v = sc->map + REC_HDR_SIZE;
    if (sc->size < REC_HDR_SIZE + REC_SEG_HEADER_VLEN ||
        memcmp(v, REC_MAGIC, 8) != 0 || memcmp(v + 16, sc->s->log_id, 16) == 0)
        return 0;
    snprintf(err, errlen,
             "%s: belongs to another log (its header's log id differs from "
             "META's); was META replaced? run mcdb-fsck",
             sc->path);
    return STORE_CORRUPT;
}

static int
scan_records(struct scan *sc, char *err, size_t errlen)
{
    struct store *s = sc->s;
    uint64_t pos = 0;
    int rc = check_foreign(sc, err, errlen);
    if (rc)
        return rc;
    while (pos < sc->size) {
        struct rec r;
        uint64_t off = sc->g->seg_base + pos;
        long n =
            rec_decode(sc->map + pos, sc->size - pos, s->log_seed, off, &r);
        if (n < 0 && sc->last && log_all_zero(sc->map + pos, sc->size - pos)) {
            /* zeros to the end: the space the writer pads the file with
             * (LOG_PAD), or writes that never reached the disk (never
             * acknowledged). The log ends here; its next writes go over
             * them. */
            sc->size = pos;
            return 0;
        }
        if (n < 0 && sc->last) {
            uint64_t next = log_resync(sc->map, sc->size, pos, s->log_seed,
                                       sc->g->seg_base);
            if (log_torn(sc->map, sc->size, pos, next))
                return cut_tail(sc, rec_strerror((int)n), err, errlen);
            snprintf(err, errlen,
                     "%s: corrupt record at offset %" PRIu64
                     " (file position %" PRIu64 "): %s; valid records follow "
                     "at offset %" PRIu64 ", so this is not a torn write; "
                     "run mcdb-fsck",
                     sc->path, off, pos, rec_strerror((int)n),
                     sc->g->seg_base + next);
            return STORE_CORRUPT;
        }
        if (n < 0) {
            snprintf(err, errlen,
                     "%s: corrupt record at offset %" PRIu64
                     " (file position %" PRIu64 "): %s; run mcdb-fsck",
                     sc->path, off, pos, rec_strerror((int)n));
            return STORE_CORRUPT;
        }
        if (pos == 0) {
            int rc = check_header(sc, &r, err, errlen);
            if (rc)
                return rc;
        } else if (r.type == REC_SEG_HEADER) {
            snprintf(err, errlen,
                     "%s: offset %" PRIu64 ": stray segment "
                     "header; run mcdb-fsck",
                     sc->path, off);
            return STORE_CORRUPT;
        }
        apply_batch_add(&sc->ap, &sc->batch, &r, off);
        pos += (uint64_t)n;
        sc->valid = pos;
        sc->records++;
        if (r.type == REC_SEG_FOOTER) {
            sc->sealed = true;
            if (pos != sc->size) {
                if (sc->last)
                    return cut_tail(sc, "bytes after the footer", err, errlen);
                snprintf(err, errlen,
                         "%s: %" PRIu64 " bytes after the footer "
                         "at offset %" PRIu64 "; run mcdb-fsck",
                         sc->path, sc->size - pos, off);
                return STORE_CORRUPT;
            }
        }
    }
    return 0;
}

static int
hint_apply(void *arg, const struct rec *r, uint64_t off)
{
    struct scan *sc = arg;
    char err[256];
    if (r->type == REC_SEG_HEADER && check_header(sc, r, err, sizeof(err)))
        return STORE_CORRUPT;
    if (r->type == REC_SEG_FOOTER)
        sc->sealed = true;
    apply_batch_add(&sc->ap, &sc->batch, r, off);
    sc->records++;
    return 0;
}

/* The hint of the active segment, written at a clean close, is read once:
 * the segment grows from here on, and a hint left behind would describe
 * a size it no longer has. Gone before anything is appended. */
static void
drop_active_hint(struct scan *sc)
{
    char path[4096];
    hint_path(sc->s->dir, sc->g->seg_base, path, sizeof(path));
    if (unlink(path) != 0 || dir_sync(sc->s) != 0)
        say(SAY_WARN, "%s: %s (start-up ignores it once the segment grows)",
            path, strerror(errno));
}

/* A segment with a valid hint is replayed from the hint alone: a sealed
 * one, or the last one when the hint is of its whole file (the active
 * segment at a clean close). */
static bool
replay_hint(struct scan *sc)
{
    if (sc->no_hint)
        return false;
    struct hint h;
    int rc =
        hint_open(sc->s->dir, sc->s->log_id, sc->g->seg_base, sc->size, &h);
    if (rc == 0) {
        rc = hint_walk(&h, hint_apply, sc);
        apply_batch_run(&sc->ap, &sc->batch);
        hint_close(&h);
    }
    if (rc == 0 && sc->sealed) {
        atomic_store(&sc->g->seg_hint, true);
        sc->valid = sc->size;
        return true;
    }
    if (rc == 0 && sc->last) {
        drop_active_hint(sc);
        sc->valid = sc->size;
        return true;
    }
    if (rc != HINT_E_MISSING) {
        say(SAY_WARN,
            "%s: %s; scanning the segment instead (the hint will "
            "be rewritten)",
            sc->path, hint_strerror(rc));
        if (sc->last) /* not to be found again once the segment grows */
            drop_active_hint(sc);
    }
    if (sc->records) {
        /* cannot happen (hints are checked whole before use), but never
         * replay a segment twice */
        MCDB_PANIC_AT(sc->path, sc->g->seg_base, "a hint failed half-way");
    }
    return false;
}

static int
scan_segment(struct scan *sc, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(sc->g->seg_fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", sc->path, strerror(errno));
        return -errno;
    }
    sc->size = (uint64_t)st.st_size;
    if (sc->size == 0 || replay_hint(sc))
        return 0;
    void *m = mmap(NULL, sc->size, PROT_READ, MAP_PRIVATE, sc->g->seg_fd, 0);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "mmap %s: %s", sc->path, strerror(errno));
        return -errno;
    }
    madvise(m, sc->size, MADV_SEQUENTIAL);
    sc->map = m;
    int rc = scan_records(sc, err, errlen);
    apply_batch_run(&sc->ap, &sc->batch);
    munmap(m, st.st_size);
    return rc;
}

/*
 * A crash just after log_append() created the next segment file, before the
 * writer wrote the previous segment's footer, leaves an empty (or
 * header-less) last file after an unsealed one; appenders may have rolled
 * over more than once ahead of the writer, leaving several. Nothing in them
 * was written, let alone acknowledged: remove them, and the last segment
 * with bytes stays active.
 */
static int
drop_unborn_segment(struct store *s, uint64_t *bases, size_t *n, char *err,
                    size_t errlen)
{
    while (*n >= 2) {
        char path[4096];
        dir_seg_path(s, bases[*n - 1], path, sizeof(path));
        if (log_file_blank(path) != 1)
            return 0;
        if (unlink(path) != 0) {
            snprintf(err, errlen, "removing empty segment %s: %s", path,
                     strerror(errno));
            return -errno;
        }
        say(SAY_WARN,
            "removed %s: an empty (or all-zero) segment left by a crash "
            "while the log rolled over",
            path);
        (*n)--;
    }
    return 0;
}

/* A fresh directory gets a new log; one with segments must have META. */
static int
load_meta(struct store *s, bool fresh, char *err, size_t errlen)
{
    int rc = logdir_meta_load(s->dir, &s->meta, err, errlen);
    if (rc == -ENOENT && !fresh) {
        snprintf(err, errlen,
                 "%s/META is missing but the directory holds segment files",
                 s->dir);
        return STORE_CORRUPT;
    }
    if (rc == -ENOENT && s->cfg.replica_of) {
        /* A new replica: its log (and log id) come from its primary. */
        s->meta = (struct logdir_meta){.role = LOGDIR_REPLICA};
        snprintf(s->meta.primary, sizeof(s->meta.primary), "%s",
                 s->cfg.replica_of);
        rc = logdir_meta_save(s->dir, &s->meta, err, errlen);
        if (rc == 0)
            say(SAY_INFO, "%s: a new replica of %s", s->dir, s->cfg.replica_of);
    } else if (rc == -ENOENT) {
        rc = logdir_meta_new(&s->meta, err, errlen);
        if (rc == 0)
            rc = logdir_meta_save(s->dir, &s->meta, err, errlen);
        if (rc == 0)
            say(SAY_INFO, "created a new log in %s", s->dir);
    }
    if (rc == 0 && !s->meta.has_log_id && !fresh) {
        snprintf(err, errlen,
                 "%s/META has no log id but the directory holds segment "
                 "files; run mcdb-fsck",
                 s->dir);
        rc = STORE_CORRUPT;
    }
    if (rc == 0)
        memcpy(s->log_id, s->meta.log_id, 16);
    return rc;
}

/* Open every segment file in order, checking that each starts where the
 * previous one ends; sizes[i] gets each file's size. */
static int
open_segments(struct store *s, const uint64_t *bases, size_t n, uint64_t *sizes,
              char *err, size_t errlen)
{
    uint64_t expect = n ? bases[0] : 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        dir_seg_path(s, bases[i], path, sizeof(path));
        if (bases[i] != expect) {
            snprintf(err, errlen,
                     "%s: starts at offset %" PRIu64 " but the previous "
                     "segment ends at %" PRIu64 " (a segment is missing or "
                     "damaged); run mcdb-fsck",
                     path, bases[i], expect);
            return STORE_CORRUPT;
        }
        struct seg *g;
        int rc = log_open_segment(s, bases[i], false, &g);
        struct stat st;
        if (rc == 0 && fstat(g->seg_fd, &st) != 0)
            rc = -errno;
        if (rc) {
            snprintf(err, errlen, "%s: %s", path, store_strerror(rc));
            return rc;
        }
        log_add_segment(s, g);
        sizes[i] = (uint64_t)st.st_size;
        expect = bases[i] + sizes[i];
    }
    return 0;
}

/* One thread's share of replaying hints: every hint, its keys only. */
struct replay_job {
    struct scan sc;
    struct store_acct acct; /* its live bytes, added to the store after */
    const struct hint *hints;
    size_t k;
    size_t done; /* segments replayed */
    pthread_t thread;
};

static void *
replay_job_main(void *arg)
{
    struct replay_job *j = arg;
    struct store *s = j->sc.s;
    for (; j->done < j->k; j->done++) {
        j->sc.g = s->segs[j->done];
        dir_seg_path(s, j->sc.g->seg_base, j->sc.path, sizeof(j->sc.path));
        j->sc.sealed = false;
        /* a hint is checked whole before its first entry is applied, so
         * a failure leaves this segment entirely unapplied */
        int rc = hint_walk(&j->hints[j->done], hint_apply, &j->sc);
        apply_batch_run(&j->sc.ap, &j->sc.batch);
        if (rc != 0 || !j->sc.sealed)
            break;
    }
    return NULL;
}

/*
 * Replay the longest run of sealed segments, from the oldest, whose hints
 * are valid, with one thread per CPU (at most 4). Every thread walks every
 * hint in log order but applies only the keys of its own partition, so each
 * key's records are applied in log order by one thread; FLUSH records are
 * applied by every thread to its own keys. Returns how many segments were
 * replayed.
 */
static size_t
replay_hints(struct store *s, const uint64_t *sizes, size_t n, struct scan *sc)
{
    struct hint *hints = calloc(n ? n : 1, sizeof(*hints));
    size_t k = 0;
    while (hints && k + 1 < n &&
           hint_open(s->dir, s->log_id, s->segs[k]->seg_base, sizes[k],
                     &hints[k]) == 0)
        k++;
    unsigned cpus = cpus_usable(); /* pinned to one CPU: one thread */
    unsigned nthreads = cpus > 4 ? 4 : cpus;
    struct replay_job jobs[4];
    size_t done = k;
    for (unsigned t = 0; k && t < nthreads; t++) {
        jobs[t] = (struct replay_job){.sc = *sc, .hints = hints, .k = k};
        jobs[t].sc.ap.acct = &jobs[t].acct;
        jobs[t].sc.ap.part = t;
        jobs[t].sc.ap.nparts = nthreads;
        if (nthreads == 1 ||
            pthread_create(&jobs[t].thread, NULL, replay_job_main, &jobs[t]))
            jobs[t].thread = 0;
    }
    for (unsigned t = 0; k && t < nthreads; t++) {
        if (jobs[t].thread)
            pthread_join(jobs[t].thread, NULL);
        else
            replay_job_main(&jobs[t]); /* no thread: do its share here */
        apply_merge(&sc->ap, &jobs[t].sc.ap);
        store_acct_flush(s, &jobs[t].acct);
        if (jobs[t].done != done && t > 0) {
            MCDB_PANIC("recovery threads disagree on the hints");
        }
        done = jobs[t].done;
    }
    for (size_t i = 0; i < k; i++)
        hint_close(&hints[i]);
    free(hints);
    for (size_t i = 0; i < done; i++) {
        atomic_store(&s->segs[i]->seg_hint, true);
        s->segs[i]->seg_end = s->segs[i]->seg_base + sizes[i];
    }
    return done;
}

int
log_recover(struct store *s, char *err, size_t errlen)
{
    uint64_t *bases;
    size_t n;
    int rc = logdir_remove_seg_tmps(s->dir);
    if (rc) {
        snprintf(err, errlen, "removing a segment's temporary file in %s: %s",
                 s->dir, store_strerror(rc));
        return rc;
    }
    rc = logdir_list_segments(s->dir, &bases, &n);
    if (rc) {
        snprintf(err, errlen, "listing %s: %s", s->dir, store_strerror(rc));
        return rc;
    }
    rc = drop_unborn_segment(s, bases, &n, err, errlen);
    if (rc == 0)
        rc = load_meta(s, n == 0, err, errlen);
    if (rc == 0)
        s->log_seed = rec_log_seed(s->log_id);
    /* Size the index once for what the hints hold, instead of growing it
     * step by step (each step rehashes a shard); trimmed at the end. */
    uint64_t estimate = 0, key_bytes = 0, hinted = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t kb, e = hint_entries(s->dir, bases[i], &kb);
        estimate += e;
        key_bytes += kb;
        hinted += e ? bases[i + 1] - bases[i] : 0;
    }
    struct stat last;
    char lpath[4096];
    uint64_t lkb, le = n ? hint_entries(s->dir, bases[n - 1], &lkb) : 0;
    if (n)
        dir_seg_path(s, bases[n - 1], lpath, sizeof(lpath));
    if (le) { /* the active segment's hint of a clean close */
        estimate += le;
        key_bytes += lkb;
    } else if (hinted && stat(lpath, &last) == 0) { /* its share */
        double share = (double)last.st_size / (double)hinted;
        estimate += (uint64_t)((double)estimate * share);
        key_bytes += (uint64_t)((double)key_bytes * share);
    }
    if (estimate)
        (void)index_reserve(s->ix, estimate, key_bytes);
    uint64_t *sizes = calloc(n ? n : 1, sizeof(*sizes));
    if (rc == 0 && !sizes)
        rc = STORE_NOMEM;
    if (rc == 0)
        rc = open_segments(s, bases, n, sizes, err, errlen);
    /* The segment table stays as it is until the replay is over, so the
     * accounting of live bytes is gathered per thread and added once. */
    struct store_acct acct = {0};
    struct scan sc = {
        .s = s,
        .ap = {.ix = s->ix, .s = s, .acct = &acct, .nparts = 1, .next_cas = 1}};
    size_t first = rc == 0 ? replay_hints(s, sizes, n, &sc) : 0;
    uint64_t expect = first ? bases[first - 1] + sizes[first - 1]
                      : n   ? bases[0]
                            : 0;
    sc.sealed = first > 0;
    for (size_t i = first; rc == 0 && i < n; i++) {
        sc.g = s->segs[i];
        sc.last = i == n - 1;
        sc.sealed = false;
        sc.valid = 0;
        sc.records = 0;
        dir_seg_path(s, bases[i], sc.path, sizeof(sc.path));
        rc = scan_segment(&sc, err, errlen);
        if (rc)
            break;
        sc.g->seg_records = sc.records;
        if (!sc.last && !sc.sealed) {
            snprintf(err, errlen,
                     "%s: not sealed (no footer) but not the last "
                     "segment; run mcdb-fsck",
                     sc.path);
            rc = STORE_CORRUPT;
        }
        expect = bases[i] + sc.size;
        if (sc.sealed)
            sc.g->seg_end = expect;
    }
    free(sizes);
    store_acct_flush(s, &acct);
    if (rc == 0) {
        if (sc.ap.next_cas > s->next_cas)
            s->next_cas = sc.ap.next_cas;
        s->max_rec = sc.ap.max_rec;
        s->last_rec = sc.ap.last_off;
        atomic_store(&s->flush_before_off, sc.ap.flush_before);
        atomic_store(&s->flush_deadline, sc.ap.flush_deadline);
    }
    free(bases);
    if (rc)
        return rc;
    /* A last segment whose header itself was torn holds nothing: it leaves
     * the table (its file is started afresh by log_ensure_active). */
    if (n && !sc.sealed && sc.size == 0) {
        seg_unpin(s->segs[--s->nsegs]);
        s->active = s->nsegs ? s->segs[s->nsegs - 1] : NULL;
    } else {
        s->active = n ? sc.g : NULL;
    }
    s->end = expect;
    /* Segments a DROP names whose deletion a crash interrupted: their live
     * records were copied (and replayed after them), so they go now. */
    while (s->nsegs > 1 && s->segs[0]->seg_end &&
           s->segs[0]->seg_end <= sc.ap.dropped_end) {
        say(SAY_INFO,
            "deleting segment %" PRIu64 " that compaction had "
            "dropped",
            s->segs[0]->seg_base);
        rc = compact_remove_oldest(s, s->segs[0]);
        if (rc) {
            snprintf(err, errlen, "deleting a dropped segment: %s",
                     store_strerror(rc));
            return rc;
        }
    }
    /* expired items; items before the last FLUSH went when it was applied
     * (apply_flush), so a log whose exptimes all lie ahead (or that has
     * none) needs no walk over every entry (a tenth of a 5M-key restart) */
    if (apply_may_expire(&sc.ap, store_now(s)))
        store_sweep(s);
    index_trim(s->ix);
    s->fill_start = s->end;
    atomic_store(&s->written, s->end);
    atomic_store(&s->durable, s->end);
    say(SAY_INFO,
        "recovered %" PRIu64 " keys from %zu segment(s) in %s, log "
        "end %" PRIu64,
        index_count(s->ix), s->nsegs, s->dir, s->end);
    return 0;
}
