/*
 * Compaction: reclaim the space of overwritten, deleted and expired records.
 *
 * Live bytes are counted per segment (store_index_put/remove move them as
 * the index changes). When more than --compact-garbage of the log is
 * garbage, the oldest sealed segment is compacted:
 *   1. every PUT the index still points at is re-appended at the log's end
 *      under its key's lock (so a concurrent newer write always wins: it
 *      either ran before, and the index no longer points here, or runs
 *      after and overwrites the copy), keeping its cas, flags, time and the
 *      exptime the index holds (a TOUCH may have changed it);
 *      expired and flushed items are dropped from the index instead;
 *      a delayed FLUSH still pending is re-appended too;
 *      tombstones, TOUCH and immediate FLUSH records are not copied: the
 *      segment is the oldest, so no older record is left for them to hide;
 *   2. the copies are made durable (log_sync), whatever --fsync says;
 *   3. a DROP record naming the segment is appended (replicas and audits
 *      read it; recovery deletes a named segment that is still there);
 *   4. the segment leaves the table and its file is deleted (readers that
 *      pinned it keep their open descriptor until they finish).
 * A crash at any step leaves either the old segment (with copies that
 * replay after it, to the same result) or only the copies.
 *
 * A failing disk: a copy that cannot be written fails the log (writer.c),
 * so step 2 never completes and the segment stays. A deletion that cannot
 * be made durable (step 4), or a hint file that cannot be written, makes
 * the store read-only too (log_fail): the disk that failed them holds the
 * log.
 *
 * Oldest-first keeps the log one contiguous range, so rsync of a live data
 * dir copies a consistent prefix and replicas only ever lose their oldest
 * files. Write amplification is bounded by 1 / garbage fraction.
 */
#include "log/hint.h"
#include "log/log_int.h"
#include "util/clock.h"
#include "util/say.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t
compact_garbage_permille(struct store *s)
{
    uint64_t live = 0, start, end;
    pthread_mutex_lock(&s->seg_mu);
    for (size_t i = 0; i < s->nsegs; i++)
        live += atomic_load(&s->segs[i]->seg_live);
    start = s->nsegs ? s->segs[0]->seg_base : 0;
    pthread_mutex_unlock(&s->seg_mu);
    pthread_mutex_lock(&s->mu);
    end = s->end;
    pthread_mutex_unlock(&s->mu);
    uint64_t total = end - start;
    return total && live < total ? (total - live) * 1000 / total : 0;
}

/* The oldest segment, pinned, if it is sealed, its seal is durable and no
 * replica's sender still has to send it (store_hold). */
static struct seg *
victim(struct store *s)
{
    struct seg *g = NULL;
    pthread_mutex_lock(&s->seg_mu);
    if (s->nsegs > 1 && s->segs[0]->seg_end &&
        atomic_load(&s->durable) >= s->segs[0]->seg_end &&
        s->segs[0]->seg_end <= store_held_from(s)) {
        g = s->segs[0];
        atomic_fetch_add(&g->seg_refs, 1);
    }
    pthread_mutex_unlock(&s->seg_mu);
    return g;
}

/*
 * Step 1 for one PUT at offset off. *copy_end advances past a copy. It holds
 * flush_mu: a flush_all decides by log offset (apply.c rule 4), so a copy
 * must land before a FLUSH that covers its original or be of an item that
 * the FLUSH did not cover.
 */
static int
copy_if_live(struct store *s, const struct rec *r, uint64_t h, uint64_t off,
             uint64_t *copy_end)
{
    struct index_entry e;
    int rc = 0;
    pthread_mutex_lock(&s->flush_mu);
    index_lock(s->ix, h);
    if (index_find(s->ix, h, r->key, r->klen, &e) && e.off == off) {
        if (store_expired(e.exptime, store_now(s)) ||
            e.off < atomic_load(&s->flush_before_off)) {
            store_index_remove(s, h, r->key, r->klen);
        } else {
            struct rec c = *r;
            c.exptime = e.exptime;
            c.cas = e.cas;
            /* what the index holds now: a TOUCH since may have marked it
             * stale and given it another cas. That cas may have been a
             * client's (E): flagged as one, it never moves the next cas;
             * one the store generated was counted when it was made, and
             * this segment's header cas floor keeps it counted. */
            c.rflags = (uint8_t)((c.rflags & ~(REC_F_STALE | REC_F_STUB)) |
                                 (e.stale ? REC_F_STALE : 0) |
                                 (e.stub ? REC_F_STUB : 0) | REC_F_CAS_CLIENT);
            uint64_t noff;
            rc = log_append(s, &c, false, &noff);
            if (rc == 0) {
                e.off = noff;
                rc = store_index_put(s, h, r->key, r->klen, &e);
                *copy_end = noff + rec_size(r->klen, r->vlen);
                atomic_fetch_add(&s->st_compact_copied,
                                 rec_size(r->klen, r->vlen));
            }
        }
    }
    index_unlock(s->ix, h);
    pthread_mutex_unlock(&s->flush_mu);
    return rc;
}

/*
 * Whether the compactor keeps to --compact-rate now. Writes that outrun the
 * rate would grow the log without bound, so once the garbage passes halfway
 * from --compact-garbage to all of the log (0.75 for 0.5: the log at four
 * times the live data) it reads at full speed until it is back under.
 */
static bool
rate_limited(struct store *s)
{
    double hard = (1.0 + s->cfg.compact_garbage) / 2;
    return compact_garbage_permille(s) <= (uint64_t)(hard * 1000);
}

/* Sleep as needed to keep reading under --compact-rate, in steps short
 * enough to notice a stop or a log that outgrows the limit. */
static void
throttle(struct store *s, uint64_t bytes, int64_t t0)
{
    if (!s->cfg.compact_rate)
        return;
    int64_t due = t0 + (int64_t)(bytes * 1000 / s->cfg.compact_rate);
    for (int64_t now = clock_mono_ms();
         due > now + 1 && !s->compactor_stop && rate_limited(s);
         now = clock_mono_ms())
        usleep((useconds_t)(due - now < 100 ? due - now : 100) * 1000);
}

int
compact_remove_oldest(struct store *s, struct seg *g)
{
    pthread_mutex_lock(&s->seg_mu);
    int found = s->nsegs && s->segs[0] == g;
    if (found)
        memmove(s->segs, s->segs + 1, --s->nsegs * sizeof(*s->segs));
    pthread_mutex_unlock(&s->seg_mu);
    if (!found)
        return 0;
    char path[4096];
    hint_path(s->dir, g->seg_base, path, sizeof(path));
    unlink(path); /* first: a hint without its segment would be stale */
    dir_seg_path(s, g->seg_base, path, sizeof(path));
    int rc = unlink(path) == 0 ? dir_sync(s) : -errno;
    if (rc)
        say(SAY_ERROR, "deleting %s: %s", path, strerror(-rc));
    atomic_fetch_add(&s->st_compact_reclaimed, g->seg_end - g->seg_base);
    seg_unpin(g); /* the table's reference */
    return rc;
}

/* Records decoded ahead, so that their index lookups' cache misses overlap
 * (index_prefetch) instead of following each other. */
#define COPY_BATCH 16

struct batched {
    struct rec r;
    uint64_t off, h;
    long n;
};

/* Decode up to COPY_BATCH records from pos; returns how many, or the first
 * record's decoding error (a later one's waits for its own turn). */
static long
decode_batch(struct store *s, struct seg *g, const char *map, uint64_t size,
             uint64_t pos, struct batched *b)
{
    long k = 0;
    while (k < COPY_BATCH && pos < size) {
        struct batched *x = &b[k];
        x->off = g->seg_base + pos;
        x->n = rec_decode(map + pos, size - pos, s->log_seed, x->off, &x->r);
        if (x->n < 0)
            return k ? k : x->n;
        if (x->r.type == REC_PUT)
            x->h = index_hash(x->r.key, x->r.klen);
        pos += (uint64_t)x->n;
        k++;
    }
    for (int stage = 0; stage < 2; stage++)
        for (long i = 0; i < k; i++)
            if (b[i].r.type == REC_PUT)
                index_prefetch(s->ix, b[i].h, stage);
    return k;
}

static int
copy_records(struct store *s, struct seg *g, const char *map, uint64_t size,
             uint64_t *copy_end)
{
    int64_t t0 = clock_mono_ms();
    uint64_t pos = 0;
    struct batched b[COPY_BATCH];
    while (pos < size) {
        long k = decode_batch(s, g, map, size, pos, b);
        if (k < 0) {
            char path[4096];
            dir_seg_path(s, g->seg_base, path, sizeof(path));
            say(SAY_ERROR,
                "compaction stopped: %s: corrupt record at offset "
                "%" PRIu64 ": %s; run mcdb-fsck",
                path, g->seg_base + pos, rec_strerror((int)k));
            return STORE_CORRUPT;
        }
        for (long i = 0; i < k; i++) {
            const struct rec *r = &b[i].r;
            int rc = 0;
            if (r->type == REC_PUT)
                rc = copy_if_live(s, r, b[i].h, b[i].off, copy_end);
            else if (r->type == REC_FLUSH && r->exptime &&
                     r->exptime == atomic_load(&s->flush_deadline)) {
                struct rec c = *r;
                rc = log_append(s, &c, false, copy_end);
                *copy_end += rec_size(0, 0);
            }
            if (rc)
                return rc;
            pos += (uint64_t)b[i].n;
            atomic_fetch_add(&s->st_compact_read, (uint64_t)b[i].n);
        }
        throttle(s, pos, t0);
    }
    return 0;
}

static int
compact_one(struct store *s, struct seg *g)
{
    int64_t t0 = clock_mono_ms();
    uint64_t size = g->seg_end - g->seg_base, copy_end = 0;
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, g->seg_fd, 0);
    if (map == MAP_FAILED)
        return -errno;
    madvise(map, size, MADV_SEQUENTIAL);
    int rc = copy_records(s, g, map, size, &copy_end);
    munmap(map, size);
    /* Everything up to the log's end is durable before the DROP: a record
     * skipped above because the key has a newer write is only gone once
     * that write is (a crash would otherwise keep neither). */
    (void)copy_end;
    if (rc == 0)
        rc = log_sync(s, store_log_end(s));
    if (rc == 0) {
        char dv[REC_DROP_VLEN];
        rec_drop_encode(dv, &(struct rec_drop){g->seg_base, g->seg_end});
        struct rec d = {.type = REC_DROP, .vlen = sizeof(dv), .val = dv};
        uint64_t off;
        rc = log_append(s, &d, false, &off);
    }
    if (rc == 0) {
        rc = compact_remove_oldest(s, g);
        if (rc)
            log_fail(s, rc, "deleting compacted segment %" PRIu64, g->seg_base);
    }
    seg_unpin(g); /* victim()'s pin */
    atomic_fetch_add(&s->st_compact_runs, 1);
    atomic_store(&s->st_compact_last_ms, (uint64_t)(clock_mono_ms() - t0));
    return rc;
}

static uint64_t
sealed_bytes(struct store *s)
{
    pthread_mutex_lock(&s->seg_mu);
    uint64_t n = 0;
    for (size_t i = 0; i < s->nsegs; i++)
        if (s->segs[i]->seg_end)
            n += s->segs[i]->seg_end - s->segs[i]->seg_base;
    pthread_mutex_unlock(&s->seg_mu);
    return n;
}

int
store_compact(store_t *s, bool all,
              void (*progress)(void *arg, uint64_t done, uint64_t total),
              void *arg)
{
    if (atomic_load(&s->replica))
        return 0; /* its primary compacts; DROP records reach it */
    uint64_t threshold = (uint64_t)(s->cfg.compact_garbage * 1000);
    uint64_t total = sealed_bytes(s), done = 0;
    /* In "all" mode stop at the first segment this call created. */
    uint64_t stop_at;
    pthread_mutex_lock(&s->mu);
    stop_at = s->active->seg_base;
    pthread_mutex_unlock(&s->mu);
    int rc = 0;
    pthread_mutex_lock(&s->compact_mu);
    while (!s->compactor_stop && !atomic_load(&s->failed)) {
        if (!all && compact_garbage_permille(s) <= threshold)
            break;
        struct seg *g = victim(s);
        if (!g)
            break;
        if (g->seg_base >= stop_at) {
            seg_unpin(g);
            break;
        }
        uint64_t size = g->seg_end - g->seg_base;
        pthread_mutex_unlock(&s->compact_mu);
        rc = compact_one(s, g);
        pthread_mutex_lock(&s->compact_mu);
        if (rc)
            break;
        done += size;
        if (progress)
            progress(arg, done, total);
    }
    pthread_mutex_unlock(&s->compact_mu);
    return rc;
}

/* Write the hint of segment g's first size bytes (g pinned). */
static void
write_hint(struct store *s, struct seg *g, uint64_t size)
{
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, g->seg_fd, 0);
    int rc = map == MAP_FAILED ? -errno : 0;
    bool wrote = false;
    if (rc == 0) {
        rc = hint_write(s->dir, s->log_id, g->seg_base, map, size);
        wrote = true;
        munmap(map, size);
    }
    /* A hint is optional (start-up scans a segment without one), but
     * a disk that fails to write it fails the log next: an I/O error
     * in writing makes the store read-only now, as a failed log write
     * does. Anything else: say so and do not retry. */
    if (wrote && rc < 0 && rc > -1000 && rc != -ENOMEM)
        log_fail(s, rc, "writing the hint of segment %" PRIu64, g->seg_base);
    else if (rc)
        say(SAY_WARN, "writing the hint of segment %" PRIu64 ": %s",
            g->seg_base, hint_strerror(rc));
}

void
compact_write_hints(struct store *s)
{
    for (;;) {
        struct seg *g = NULL;
        pthread_mutex_lock(&s->seg_mu);
        for (size_t i = 0; i < s->nsegs && !g; i++) {
            struct seg *c = s->segs[i];
            if (c->seg_end && !atomic_load(&c->seg_hint) &&
                atomic_load(&s->durable) >= c->seg_end) {
                g = c;
                atomic_fetch_add(&g->seg_refs, 1);
            }
        }
        pthread_mutex_unlock(&s->seg_mu);
        if (!g)
            return;
        write_hint(s, g, g->seg_end - g->seg_base);
        atomic_store(&g->seg_hint, true);
        seg_unpin(g);
    }
}

void
compact_write_active_hint(struct store *s)
{
    struct seg *g = s->active;
    uint64_t end = atomic_load(&s->durable);
    struct stat st;
    /* only a file that ends where the log does (its padding trimmed) */
    if (!g || g->seg_end || end <= g->seg_base || atomic_load(&s->failed) ||
        fstat(g->seg_fd, &st) != 0 || (uint64_t)st.st_size != end - g->seg_base)
        return;
    write_hint(s, g, end - g->seg_base);
}

/*
 * A replica deletes the segments its primary's DROP records named once the
 * DROP is durable here (the copies of their live records come before it in
 * the log, so they are durable too).
 */
static void
replica_drops(struct store *s)
{
    for (;;) {
        struct seg *g = NULL;
        pthread_mutex_lock(&s->seg_mu);
        if (s->nsegs > 1 && s->segs[0]->seg_end &&
            s->segs[0]->seg_end <= s->drop_end &&
            atomic_load(&s->durable) >= s->drop_at)
            g = s->segs[0];
        if (!g && atomic_load(&s->durable) >= s->drop_at)
            atomic_store(&s->drop_pending, false);
        pthread_mutex_unlock(&s->seg_mu);
        if (!g)
            return;
        uint64_t base = g->seg_base;
        int rc = compact_remove_oldest(s, g);
        if (rc) {
            log_fail(s, rc,
                     "deleting segment %" PRIu64 " dropped by the "
                     "primary",
                     base);
            return;
        }
        say(SAY_VERBOSE,
            "deleted segment %" PRIu64 ", dropped by the "
            "primary",
            base);
    }
}

static void *
compactor_main(void *arg)
{
    struct store *s = arg;
    pthread_setname_np(pthread_self(), "mcdb-compact");
    pthread_mutex_lock(&s->compact_mu);
    while (!s->compactor_stop) {
        struct timespec ts = clock_deadline_ms(1000);
        pthread_cond_timedwait(&s->compact_cv, &s->compact_mu, &ts);
        if (s->compactor_stop)
            break;
        pthread_mutex_unlock(&s->compact_mu);
        pthread_mutex_lock(&s->maint_mu);
        compact_write_hints(s);
        replica_drops(s);
        int rc = store_compact(s, false, NULL, NULL);
        pthread_mutex_unlock(&s->maint_mu);
        pthread_mutex_lock(&s->compact_mu);
        if (rc && rc != STORE_CLOSED && !atomic_load(&s->failed)) {
            say(SAY_ERROR, "compactor stopped: %s", store_strerror(rc));
            atomic_store(&s->st_compact_stopped, 1);
            break;
        }
    }
    pthread_mutex_unlock(&s->compact_mu);
    return NULL;
}

int
compact_start(struct store *s)
{
    int rc = pthread_create(&s->compactor, NULL, compactor_main, s);
    if (rc)
        return -rc;
    s->compactor_running = true;
    return 0;
}

void
compact_stop(struct store *s)
{
    pthread_mutex_lock(&s->compact_mu);
    s->compactor_stop = true;
    pthread_cond_broadcast(&s->compact_cv);
    pthread_mutex_unlock(&s->compact_mu);
    if (s->compactor_running)
        pthread_join(s->compactor, NULL);
    s->compactor_running = false;
}
