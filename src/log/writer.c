/*
 * Appending to the log, and the writer thread.
 *
 * Appenders (worker threads, holding their key's index lock) encode their
 * record straight into the fill buffer at the log's end, under `mu`. The
 * writer thread repeatedly:
 *   1. swaps the fill buffer for the empty one (under mu), so appenders keep
 *      going while it writes;
 *   2. pwrite()s the swapped buffer to the segment files, splitting it where
 *      a segment was sealed; a sealed segment is fdatasynced at once and the
 *      directory is fsynced so the next segment's name is durable;
 *   3. publishes `written`, and with --fsync always calls fdatasync and
 *      publishes `durable` (everysec: at most once a second);
 *   4. wakes waiters (store_wait) and subscribers (eventfds).
 * Group commit falls out of step 1: whatever arrived while one fdatasync ran
 * is written and synced by the next one.
 *
 * Gathering (--fsync always). Clients whose writes one fdatasync made
 * durable get their replies together and send their next writes together,
 * a network round trip later. Were the writer to start the next fdatasync
 * at the first of them, the rest would arrive while it runs and wait for
 * the one after: two syncs per write instead of one (and the clients
 * settle into two cohorts that alternate, each half the size). So before
 * step 1, when the last fdatasync covered R records and B more arrived
 * while it ran, the writer waits until R + B records are in the buffer or
 * half the buffer is full, for at most a window: twice what the last
 * successful wait took (the clients' round trip), halved after each wait
 * that ran out (a mixed load whose clients read next stops waiting), and
 * every GATHER_PROBE_EVERY fdatasyncs as long as the last fdatasync took
 * (at most GATHER_MAX_US), so that a change of load is noticed. A lone
 * client (R = 1) never waits; the appender that completes the count wakes
 * the writer.
 *
 * Reads of records not yet in the files copy them from the buffers (under
 * mu): the fill buffer, or the one being written, which the writer only
 * reuses after publishing `written` under mu.
 *
 * Failure: a failed pwrite or fdatasync sets `failed` (sticky); the writer
 * stops writing but keeps its buffers, so reads of everything already
 * appended keep working; appends are refused; pending acks beyond what was
 * made safe fail.
 */
#include "log/log_int.h"
#include "util/clock.h"
#include "util/panic.h"
#include "util/say.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GATHER_MAX_US 2000
#define GATHER_MIN_US 20
#define GATHER_PROBE_EVERY 16

void
log_fail(struct store *s, int err, const char *fmt, ...)
{
    pthread_mutex_lock(&s->mu);
    if (!atomic_load(&s->failed)) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->errtext, sizeof(s->errtext), fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < sizeof(s->errtext))
            snprintf(s->errtext + n, sizeof(s->errtext) - (size_t)n, ": %s",
                     strerror(-err));
        atomic_store(&s->failed, err);
        say(SAY_ERROR, "store is read-only from now on: %s", s->errtext);
    }
    pthread_cond_broadcast(&s->cv_ack);
    pthread_cond_broadcast(&s->cv_space);
    pthread_mutex_unlock(&s->mu);
}

uint64_t
log_acked(struct store *s)
{
    return s->cfg.fsync == STORE_FSYNC_ALWAYS ? atomic_load(&s->durable)
                                              : atomic_load(&s->written);
}

int
log_open_segment(struct store *s, uint64_t base, bool create, struct seg **out)
{
    char path[4096];
    (create ? dir_seg_tmp_path : dir_seg_path)(s, base, path, sizeof(path));
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0);
    /* Reads never update the access time: a get is not a change to the
     * file, and the kernel then skips the atime check on every read. */
    int fd = open(path, flags | O_NOATIME, 0644);
    if (fd < 0 && errno == EPERM) /* not the file's owner */
        fd = open(path, flags, 0644);
    if (fd < 0)
        return -errno;
    struct seg *g = calloc(1, sizeof(*g));
    if (!g) {
        close(fd);
        return STORE_NOMEM;
    }
    struct stat st;
    g->seg_base = base;
    g->seg_fd = fd;
    g->seg_dfd = -1;
    /* A file system without O_DIRECT (tmpfs) refuses it: reads then all go
     * through the page cache. */
    if (s->cfg.direct_reads) {
        int dflags = O_RDONLY | O_CLOEXEC | O_DIRECT;
        g->seg_dfd = open(path, dflags | O_NOATIME);
        if (g->seg_dfd < 0 && errno == EPERM)
            g->seg_dfd = open(path, dflags);
    }
    g->seg_size = !create && fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    atomic_init(&g->seg_refs, 1);
    atomic_init(&g->seg_live, 0);
    *out = g;
    return 0;
}

void
log_add_segment(struct store *s, struct seg *g)
{
    pthread_mutex_lock(&s->seg_mu);
    if (s->nsegs == s->segs_cap) {
        size_t cap = s->segs_cap ? s->segs_cap * 2 : 16;
        struct seg **v = realloc(s->segs, cap * sizeof(*v));
        if (!v) /* a few pointers: not worth a recovery path */
            MCDB_PANIC("out of memory for the list of %zu segments", cap);
        s->segs = v;
        s->segs_cap = cap;
    }
    s->segs[s->nsegs++] = g;
    pthread_mutex_unlock(&s->seg_mu);
}

/* Encode a record at the end of the fill buffer (mu held, space checked). */
static uint64_t
append_locked(struct store *s, struct rec *r)
{
    uint64_t off = s->end;
    s->last_rec = off;
    rec_encode(s->buf[s->fill] + s->fill_len, r, s->log_seed, off);
    size_t size = rec_size(r->klen, r->vlen);
    s->fill_len += size;
    s->fill_recs++;
    s->end += size;
    s->active->seg_records++;
    return off;
}

/*
 * Seal the active segment: append its footer (mu held, room checked). The
 * writer fdatasyncs the segment when it has written up to its end.
 */
static void
seal_locked(struct store *s, int64_t now_ms)
{
    struct seg *old = s->active;
    char fv[REC_SEG_FOOTER_VLEN];
    struct rec_seg_footer f = {.records = old->seg_records + 1,
                               .end = s->end + REC_SEG_FOOTER_SIZE};
    rec_seg_footer_encode(fv, &f);
    struct rec fr = {.type = REC_SEG_FOOTER,
                     .vlen = sizeof(fv),
                     .val = fv,
                     .time_ms = (uint64_t)now_ms};
    append_locked(s, &fr);
    old->seg_end = s->end;
    pthread_cond_signal(&s->compact_cv); /* a new compaction candidate */
}

/*
 * Create the segment file that starts at base and add it to the table
 * (mu held); the caller makes it active and appends its header. The file
 * is created under a temporary name (<segment>.tmp): the writer gives it
 * its name when it starts writing into it, which is after it has written
 * the previous segment's footer, so that a segment file that has its name
 * always follows a complete one (what a copy of a live directory relies
 * on: docs/tools.md, Backups). It then fsyncs the directory, so that the
 * name is durable before anything in the file is.
 */
static int
create_locked(struct store *s, uint64_t base, struct seg **out)
{
    int rc = log_open_segment(s, base, true, out);
    if (rc) {
        char path[4096];
        dir_seg_tmp_path(s, base, path, sizeof(path));
        pthread_mutex_unlock(&s->mu);
        log_fail(s, rc, "creating %s", path);
        pthread_mutex_lock(&s->mu);
        return STORE_READONLY;
    }
    (*out)->seg_new = true;
    log_add_segment(s, *out);
    return 0;
}

/* Append this log's own header to the segment just opened (mu held). */
static void
header_locked(struct store *s, int64_t now_ms)
{
    char hv[REC_SEG_HEADER_VLEN];
    struct rec_seg_header h = {.version = REC_FORMAT_VERSION,
                               .base = s->end,
                               .cas_floor = s->next_cas};
    memcpy(h.log_id, s->log_id, 16);
    rec_seg_header_encode(hv, &h);
    struct rec hr = {.type = REC_SEG_HEADER,
                     .vlen = sizeof(hv),
                     .val = hv,
                     .cas = s->end,
                     .time_ms = (uint64_t)now_ms};
    append_locked(s, &hr);
}

/* Seal the active segment and start the next one (mu held, room for the
 * footer and the next header checked). Nothing is sealed when the next
 * file cannot be created. */
static int
roll_locked(struct store *s, int64_t now_ms)
{
    struct seg *next;
    int rc = create_locked(s, s->end + REC_SEG_FOOTER_SIZE, &next);
    if (rc)
        return rc;
    seal_locked(s, now_ms);
    s->active = next;
    header_locked(s, now_ms);
    return 0;
}

int
log_ensure_active(struct store *s)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (!s->active || s->active->seg_end) {
        rc = log_open_next_locked(s, s->end);
        if (rc == 0) {
            header_locked(s, store_now_ms(s));
            pthread_cond_signal(&s->cv_work);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int
log_wait_room_locked(struct store *s, size_t n)
{
    for (;;) {
        if (atomic_load(&s->failed) || s->stop)
            return s->stop ? STORE_CLOSED : STORE_READONLY;
        if (s->fill_len + n <= s->buf_cap)
            return 0;
        pthread_cond_wait(&s->cv_space, &s->mu);
    }
}

void
log_append_bytes_locked(struct store *s, const void *p, size_t n, uint64_t recs)
{
    memcpy(s->buf[s->fill] + s->fill_len, p, n);
    s->fill_len += n;
    s->fill_recs += recs;
    s->end += n;
    s->active->seg_records += recs;
    pthread_cond_signal(&s->cv_work);
}

int
log_open_next_locked(struct store *s, uint64_t base)
{
    struct seg *g;
    int rc = create_locked(s, base, &g);
    if (rc == 0)
        s->active = g;
    return rc;
}

int
log_append(struct store *s, struct rec *r, bool new_cas, uint64_t *off)
{
    size_t size = rec_size(r->klen, r->vlen);
    size_t roll = REC_SEG_FOOTER_SIZE + rec_size(0, REC_SEG_HEADER_VLEN);
    int64_t now_ms = store_now_ms(s);
    if (size + roll > s->buf_cap)
        return STORE_TOO_LARGE; /* would wait for room forever */
    pthread_mutex_lock(&s->mu);
    int wrc = log_wait_room_locked(s, size + roll);
    if (wrc) {
        pthread_mutex_unlock(&s->mu);
        return wrc;
    }
    /* the writer may be idle waiting for a first record: whatever a roll
     * appends before ours (a footer, a header) must not hide that */
    bool was_empty = s->fill_len == 0;
    struct seg *a = s->active;
    /* Roll when this record and a footer would not fit, unless the segment
     * holds nothing but its header (a record larger than a segment then
     * gets a segment of its own). */
    if (s->end - a->seg_base + size + REC_SEG_FOOTER_SIZE >
            s->cfg.segment_size &&
        a->seg_records > 1) {
        int rc = roll_locked(s, now_ms);
        if (rc) {
            pthread_mutex_unlock(&s->mu);
            return rc;
        }
    }
    if (!r->time_ms)
        r->time_ms = (uint64_t)now_ms;
    if (new_cas) {
        /* The cas clock: the wall clock in microseconds, but never at or
         * below the last cas (the same microsecond, a clock stepped back, a
         * restart below the floor recovery found). */
        uint64_t wall = (uint64_t)store_now_us(s);
        r->cas = wall > s->next_cas ? wall : s->next_cas;
        s->next_cas = r->cas + 1;
    } else if (r->cas >= s->next_cas && apply_cas_counts(r)) {
        s->next_cas = r->cas + 1; /* a client's E near now (apply.c) */
    }
    *off = append_locked(s, r);
    /* the first records wake an idle writer; a gathering one, the last
     * (or half a buffer) */
    if (was_empty || s->fill_recs >= s->gather_recs ||
        s->fill_len >= s->buf_cap / 2)
        pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->st_records, 1);
    return 0;
}

int
log_sync(struct store *s, uint64_t upto)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (upto > s->sync_req)
        s->sync_req = upto;
    pthread_cond_signal(&s->cv_work);
    while (atomic_load(&s->durable) < upto) {
        if (atomic_load(&s->failed) || !s->writer_running) {
            rc = STORE_READONLY;
            break;
        }
        pthread_cond_wait(&s->cv_ack, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int
store_sync(store_t *s)
{
    return log_sync(s, store_log_end(s));
}

void
store_sync_soon(store_t *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->end > s->sync_req)
        s->sync_req = s->end;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
}

int
log_read_buffered(struct store *s, uint64_t off, size_t len, void *out)
{
    /* written only grows: a record below it is in the file for good, and
     * most reads need not take the writer's lock to learn that */
    if (off < atomic_load(&s->written))
        return 0;
    int found = 0;
    pthread_mutex_lock(&s->mu);
    if (off >= atomic_load(&s->written)) {
        if (s->wbuf && off >= s->wstart && off + len <= s->wstart + s->wlen) {
            memcpy(out, s->wbuf + (off - s->wstart), len);
            found = 1;
        } else if (off >= s->fill_start &&
                   off + len <= s->fill_start + s->fill_len) {
            memcpy(out, s->buf[s->fill] + (off - s->fill_start), len);
            found = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* The segment that holds log offset off (it exists: appenders open a
 * segment before appending its first record). */
static struct seg *
seg_holding(struct store *s, uint64_t off)
{
    struct seg *g = seg_pin(s, off);
    if (g)
        seg_unpin(g); /* the table keeps it: only the writer drops segments'
                         files once written, and compaction older ones */
    return g;
}

static int
fault(struct store *s, const char *op)
{
    return s->cfg.fault ? s->cfg.fault(s->cfg.fault_arg, op) : 0;
}

static int
do_fdatasync(struct store *s, struct seg *g)
{
    int64_t t0 = clock_mono_us();
    int rc = fault(s, "fdatasync");
    if (!rc && fdatasync(g->seg_fd) != 0)
        rc = -errno;
    atomic_fetch_add(&s->st_fsync_us, (uint64_t)(clock_mono_us() - t0));
    if (rc) {
        char path[4096];
        dir_seg_path(s, g->seg_base, path, sizeof(path));
        log_fail(s, rc, "fdatasync of %s", path);
    }
    return rc;
}

/* The segment to write log offset start into: *wseg, or the next one
 * once *wseg is full (and sealed: written up to its footer). A new file
 * gets its name now, made durable before anything is written into it. */
static struct seg *
write_seg(struct store *s, struct seg **wseg, uint64_t start)
{
    struct seg *g = *wseg;
    if (g && (!g->seg_end || start < g->seg_end))
        return g;
    g = *wseg = seg_holding(s, start);
    if (!g) {
        log_fail(s, -EIO, "no segment holds log offset %" PRIu64, start);
        return NULL;
    }
    if (g->seg_new) {
        char tmp[4096], path[4096];
        dir_seg_tmp_path(s, g->seg_base, tmp, sizeof(tmp));
        dir_seg_path(s, g->seg_base, path, sizeof(path));
        if (rename(tmp, path) != 0) {
            log_fail(s, -errno, "naming %s", path);
            return NULL;
        }
        int rc = dir_sync(s);
        if (rc) {
            log_fail(s, rc, "fsync of directory %s", s->dir);
            return NULL;
        }
        g->seg_new = false;
    }
    return g;
}

/*
 * With --preallocate, a write that grows the segment file is followed by
 * zeros up to the next multiple of LOG_PAD (but no closer to the segment
 * size than the largest record: see below). An fdatasync of a file whose
 * size changed writes its inode too; of one written within its size, only
 * the data. So one fdatasync in about LOG_PAD bytes of log pays for the
 * size, and the others are cheaper (here about twice as fast on a busy
 * disk). A clean stop trims the padding (trim_padding). Recovery and
 * mcdb-fsck read zeros at the end of the last segment as its end
 * (recover.c). The zeros are only a speed-up: a failure
 * to write them (a full disk) is left to the next write of records to
 * find. Not the default: the zeros double the bytes written, and a file
 * whose size does not change between two writes looks unchanged to rsync's
 * quick check (size and mtime in whole seconds) until touch_mtime moves its
 * mtime, so passes of rsync into one copy must start two seconds apart.
 */
static void
pad(struct store *s, struct seg *g, uint64_t pos)
{
    static const char zeros[1 << 16];
    if (!s->cfg.preallocate)
        return;
    uint64_t end = (pos + LOG_PAD - 1) / LOG_PAD * LOG_PAD;
    /* No further than the segment can be sealed: it is sealed before a
     * record that would take it past --segment-size, so no closer to that
     * than the largest record. Sealing then never shrinks the file, which
     * a copy may be reading (rsync fails a file that shrinks under it:
     * "read errors mapping ...: No data available"). */
    uint64_t rec = log_max_record(s);
    uint64_t cap = s->cfg.segment_size > rec ? s->cfg.segment_size - rec : 0;
    if (end > cap)
        end = cap;
    while (pos < end) {
        size_t n = end - pos < sizeof(zeros) ? end - pos : sizeof(zeros);
        ssize_t w = pwrite(g->seg_fd, zeros, n, (off_t)pos);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        pos += (uint64_t)w;
    }
    g->seg_size = pos;
}

/*
 * With --preallocate, the mtime of the segment last written is moved past
 * the second of its last write. rsync's quick check skips a file whose size
 * and mtime (in whole seconds) have not changed since its last copy, and a
 * padded file keeps its size: a write made in the second in which rsync
 * looked at the file, with none after it, would never be copied. Once the
 * clock is past that second, the writer sets the file's mtime to now (the
 * kernel's coarse clock may still be in that second: fstat tells, and it
 * tries again). Returns the second still waiting for it (0: none).
 */
static int64_t
touch_mtime(struct seg *g, int64_t second)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (!g || now.tv_sec <= second)
        return g ? second : 0;
    const struct timespec t[2] = {{.tv_nsec = UTIME_OMIT},
                                  {.tv_nsec = UTIME_NOW}};
    struct stat st;
    if (futimens(g->seg_fd, t) != 0 || fstat(g->seg_fd, &st) != 0) {
        static atomic_bool warned; /* once: it would fail every second */
        if (!atomic_exchange(&warned, true))
            say(SAY_WARN, "setting the mtime of segment %" PRIu64 ": %s",
                g->seg_base, strerror(errno));
        return 0;
    }
    return st.st_mtim.tv_sec > second ? 0 : second;
}

/* Write [start, start + len) of the log from p, sealing segments on the way.
 * *wseg is the segment last written to (NULL at first). */
static int
write_range(struct store *s, struct seg **wseg, const char *p, uint64_t start,
            size_t len)
{
    while (len) {
        struct seg *g = write_seg(s, wseg, start);
        if (!g)
            return -EIO;
        size_t n = len;
        if (g->seg_end && start + n > g->seg_end)
            n = g->seg_end - start;
        int rc = fault(s, "pwrite");
        uint64_t pos = start - g->seg_base;
        while (!rc && n) {
            ssize_t w = pwrite(g->seg_fd, p, n, (off_t)pos);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = w < 0 ? -errno : -EIO;
                break;
            }
            p += w;
            pos += (uint64_t)w;
            start += (uint64_t)w;
            len -= (size_t)w;
            n -= (size_t)w;
        }
        bool sealed = g->seg_end && start == g->seg_end;
        if (!rc && !sealed && pos > g->seg_size)
            pad(s, g, pos);
        if (!rc && sealed && g->seg_size > pos)
            rc = ftruncate(g->seg_fd, (off_t)pos) ? -errno : 0;
        if (rc) {
            char path[4096];
            dir_seg_path(s, g->seg_base, path, sizeof(path));
            log_fail(s, rc, "writing %s at offset %" PRIu64, path, start);
            return rc;
        }
        if (pos > g->seg_size || sealed)
            g->seg_size = pos;
        if (sealed) {
            /* Sealed: durable now whatever --fsync says. */
            if (do_fdatasync(s, g))
                return -EIO;
            atomic_fetch_add(&s->st_fsyncs, 1);
        }
    }
    return 0;
}

void
log_notify(struct store *s, unsigned what)
{
    if (atomic_load(&s->drop_pending)) /* a replica's DROP may be durable */
        pthread_cond_signal(&s->compact_cv);
    if (atomic_load(&s->failed))
        what |= STORE_WAKE_ACKS; /* pending acks fail now */
    int subs[STORE_MAX_SUBS], n = 0;
    /* subs_rw keeps store_unsubscribe() (and its caller's close) from
     * running while we write: a closed descriptor's number may be reused */
    pthread_rwlock_rdlock(&s->subs_rw);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->cv_ack);
    for (int i = 0; i < s->nsubs; i++)
        if (s->sub_kinds[i] & what)
            subs[n++] = s->subs[i];
    pthread_mutex_unlock(&s->mu);
    uint64_t one = 1;
    for (int i = 0; i < n; i++)
        if (write(subs[i], &one, sizeof(one)) < 0 && errno != EAGAIN)
            say(SAY_WARN, "eventfd %d: %s", subs[i], strerror(errno));
    pthread_rwlock_unlock(&s->subs_rw);
}

static void
sync_now(struct store *s, struct seg *wseg, uint64_t upto, uint64_t recs)
{
    int64_t t0 = clock_mono_us();
    if (do_fdatasync(s, wseg))
        return;
    /* gathering: the next sync waits for as many records, briefly */
    int64_t took = clock_mono_us() - t0;
    pthread_mutex_lock(&s->mu);
    s->gather_recs =
        s->cfg.fsync == STORE_FSYNC_ALWAYS ? recs + s->fill_recs : 0;
    s->gather_max_us = took < GATHER_MAX_US ? took : GATHER_MAX_US;
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->st_fsyncs, 1);
    atomic_fetch_add(&s->st_synced_recs, recs);
    if (recs > atomic_load(&s->st_batch_max))
        atomic_store(&s->st_batch_max, recs);
    /* invariant 4: durable <= written, and durable never moves back */
    MCDB_ASSERT(upto <= atomic_load(&s->written) &&
                upto >= atomic_load(&s->durable));
    atomic_store(&s->durable, upto);
}

/* Wait (mu held) until gather_recs records are in, for at most the
 * current window, and adapt the window (see "Gathering" above). */
static void
gather_locked(struct store *s)
{
    int64_t win = s->gather_win_us;
    if (++s->gather_n % GATHER_PROBE_EVERY == 0 || win > s->gather_max_us)
        win = s->gather_max_us;
    if (win <= 0)
        return;
    int64_t start = clock_mono_us();
    struct timespec until = clock_deadline_us(win);
    while (s->fill_recs < s->gather_recs && !s->stop &&
           s->fill_len < s->buf_cap / 2 &&
           s->sync_req <= atomic_load(&s->durable) &&
           !atomic_load(&s->failed) &&
           pthread_cond_timedwait(&s->cv_work, &s->mu, &until) != ETIMEDOUT)
        ;
    int64_t waited = clock_mono_us() - start;
    atomic_fetch_add(&s->st_gather_us, (uint64_t)waited);
    if (s->fill_recs >= s->gather_recs) {
        int64_t took = 2 * waited;
        s->gather_win_us = took > GATHER_MIN_US ? took : GATHER_MIN_US;
    } else {
        s->gather_win_us = win / 2 >= GATHER_MIN_US ? win / 2 : 0;
    }
}

/* On a clean stop the last segment gives back its padding (or the zeros
 * recovery found after its records), so that a closed log's files end
 * where the log does (a copy, a backup). */
static void
trim_padding(struct store *s, struct seg *g)
{
    uint64_t end = atomic_load(&s->durable);
    if (!g || atomic_load(&s->failed) || end < g->seg_base ||
        g->seg_size <= end - g->seg_base)
        return;
    if (ftruncate(g->seg_fd, (off_t)(end - g->seg_base)) == 0 &&
        fdatasync(g->seg_fd) == 0)
        g->seg_size = end - g->seg_base;
}

static void *
writer_main(void *arg)
{
    struct store *s = arg;
    struct seg *wseg = NULL;
    int64_t last_sync = clock_mono_ms();
    pthread_setname_np(pthread_self(), "mcdb-log");
    uint64_t unsynced_recs = 0;
    int64_t touch = 0; /* --preallocate: the second of the last write */
    struct timespec touch_at = {0}; /* when to move the mtime past it */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->fill_len == 0 && !s->stop &&
               s->sync_req <= atomic_load(&s->durable)) {
            if (s->cfg.fsync == STORE_FSYNC_EVERYSEC &&
                atomic_load(&s->durable) < atomic_load(&s->written)) {
                struct timespec ts = clock_deadline_ms(1000);
                pthread_cond_timedwait(&s->cv_work, &s->mu, &ts);
                break;
            }
            if (touch) {
                if (pthread_cond_timedwait(&s->cv_work, &s->mu, &touch_at) ==
                    ETIMEDOUT) {
                    pthread_mutex_unlock(&s->mu);
                    touch = touch_mtime(wseg, touch);
                    touch_at = clock_deadline_ms(20); /* if it must retry */
                    pthread_mutex_lock(&s->mu);
                }
                continue;
            }
            pthread_cond_wait(&s->cv_work, &s->mu);
        }
        if (s->gather_recs > 1 && s->fill_recs < s->gather_recs)
            gather_locked(s);
        if (atomic_load(&s->failed))
            break;
        /* step 1: swap */
        const char *p = s->buf[s->fill];
        uint64_t start = s->fill_start;
        size_t len = s->fill_len;
        uint64_t recs = s->fill_recs;
        s->wbuf = p;
        s->wstart = start;
        s->wlen = len;
        s->fill ^= 1;
        s->fill_start += len;
        s->fill_len = 0;
        s->fill_recs = 0;
        bool stopping = s->stop;
        bool forced = s->sync_req > atomic_load(&s->durable);
        pthread_cond_broadcast(&s->cv_space);
        pthread_mutex_unlock(&s->mu);

        /* step 2 and 3 */
        if (len && write_range(s, &wseg, p, start, len) == 0) {
            pthread_mutex_lock(&s->mu);
            atomic_store(&s->written, start + len);
            s->wbuf = NULL;
            pthread_mutex_unlock(&s->mu);
            unsynced_recs += recs;
            if (s->cfg.preallocate) { /* just past this second */
                touch = clock_wall_ms() / 1000;
                touch_at = (struct timespec){.tv_sec = touch + 1,
                                             .tv_nsec = 20 * 1000 * 1000};
            }
        }
        uint64_t written = atomic_load(&s->written);
        if (!atomic_load(&s->failed) && written > atomic_load(&s->durable) &&
            wseg &&
            (s->cfg.fsync == STORE_FSYNC_ALWAYS || stopping || forced ||
             (s->cfg.fsync == STORE_FSYNC_EVERYSEC &&
              clock_mono_ms() - last_sync >= 1000))) {
            sync_now(s, wseg, written, unsynced_recs);
            unsynced_recs = 0;
            last_sync = clock_mono_ms();
        }
        /* step 4: with --sync-replicas acks wait for the replicas, who
         * move them (store_set_replicated); only they need this wake */
        log_notify(s,
                   STORE_WAKE_DURABLE |
                       (atomic_load(&s->repl_required) ? 0 : STORE_WAKE_ACKS));
        pthread_mutex_lock(&s->mu);
        if (atomic_load(&s->failed) || (stopping && s->fill_len == 0))
            break;
    }
    struct seg *last = s->active;
    pthread_mutex_unlock(&s->mu);
    trim_padding(s, last);
    log_notify(s, STORE_WAKE_ACKS | STORE_WAKE_DURABLE);
    return NULL;
}

int
log_start_writer(struct store *s)
{
    int rc = pthread_create(&s->writer, NULL, writer_main, s);
    if (rc)
        return -rc;
    s->writer_running = true;
    return 0;
}

void
log_stop_writer(struct store *s)
{
    if (!s->writer_running)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv_work);
    pthread_cond_broadcast(&s->cv_space);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->writer, NULL);
    s->writer_running = false;
}
