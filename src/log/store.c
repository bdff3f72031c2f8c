/*
 * store: the engine's frame. Opening and closing a store (the data
 * directory's lock, recovery, the writer and compactor threads), the
 * store's clocks, the segment table's pins, the live-byte accounting that
 * moves with every index change (store_index_put/remove), acknowledgements
 * (store_ack_status, store_wait, the subscribers' eventfds) and the
 * statistics. The item semantics every front end shares are item.c's; the
 * invariants and the lock order are written at the top of log_int.h.
 */
#include "log/log_int.h"
#include "util/clock.h"
#include "util/say.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *
store_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define X(name, code, msg)                                                     \
    case name:                                                                 \
        return msg;
        STORE_ERRORS(X)
#undef X
    }
    return err < 0 ? strerror(-err) : "unknown error";
}

void
store_config_default(struct store_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->dir = "./data";
    cfg->segment_size = STORE_DEFAULT_SEGMENT_SIZE;
    cfg->fsync = STORE_FSYNC_ALWAYS;
    cfg->max_item_size = STORE_DEFAULT_MAX_ITEM;
    cfg->compactor = true;
    cfg->compact_garbage = STORE_DEFAULT_COMPACT_GARBAGE;
    cfg->compact_rate = STORE_DEFAULT_COMPACT_RATE;
}

int64_t
store_now_ms(struct store *s)
{
    if (s->cfg.now_ms)
        return s->cfg.now_ms(s->cfg.now_arg);
    return clock_wall_ms();
}

int64_t
store_now_us(struct store *s)
{
    if (s->cfg.now_ms)
        return s->cfg.now_ms(s->cfg.now_arg) * 1000;
    return clock_wall_us();
}

uint32_t
store_now(store_t *s)
{
    return (uint32_t)(store_now_ms(s) / 1000);
}

/* ---- segments: pins and live bytes ---- */

static struct seg *
seg_find_locked(struct store *s, uint64_t off)
{
    size_t lo = 0, hi = s->nsegs;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (s->segs[mid]->seg_base <= off)
            lo = mid;
        else
            hi = mid;
    }
    return s->nsegs && s->segs[lo]->seg_base <= off ? s->segs[lo] : NULL;
}

struct seg *
seg_pin(struct store *s, uint64_t off)
{
    pthread_mutex_lock(&s->seg_mu);
    struct seg *g = seg_find_locked(s, off);
    if (g)
        atomic_fetch_add(&g->seg_refs, 1);
    pthread_mutex_unlock(&s->seg_mu);
    return g;
}

void
seg_unpin(struct seg *g)
{
    if (atomic_fetch_sub(&g->seg_refs, 1) == 1) {
        close(g->seg_fd);
        if (g->seg_dfd >= 0)
            close(g->seg_dfd);
        free(g);
    }
}

void
seg_account(struct store *s, uint64_t off, int64_t delta)
{
    pthread_mutex_lock(&s->seg_mu);
    struct seg *g = seg_find_locked(s, off);
    if (g)
        atomic_fetch_add(&g->seg_live, (uint64_t)delta);
    pthread_mutex_unlock(&s->seg_mu);
}

/* The accounting of delta bytes at off, at once or gathered in acc. */
static void
acct_add(struct store *s, struct store_acct *acc, uint64_t off, int64_t delta)
{
    if (!acc) {
        seg_account(s, off, delta);
        return;
    }
    /* the table does not change while acc is in use (struct store_acct) */
    struct seg *g = seg_find_locked(s, off);
    if (!g)
        return;
    /* from the last: records come segment by segment */
    size_t i = acc->sa_n;
    while (i > 0 && acc->sa_segs[i - 1] != g)
        i--;
    if (i == 0) {
        if (acc->sa_n == STORE_ACCT_SEGS) { /* full: the slow way */
            seg_account(s, off, delta);
            return;
        }
        acc->sa_segs[acc->sa_n] = g;
        acc->sa_live[acc->sa_n] = 0;
        i = ++acc->sa_n;
    }
    acc->sa_live[i - 1] += delta;
}

static int64_t
entry_size(size_t klen, const struct index_entry *e)
{
    return (int64_t)rec_size(klen, e->vlen);
}

/* An index entry's live bytes and value bytes, counted in (sign 1) or
 * out (-1). */
static void
acct_entry(struct store *s, struct store_acct *acc, size_t klen,
           const struct index_entry *e, int sign)
{
    acct_add(s, acc, e->off, sign * entry_size(klen, e));
    int64_t v = sign * (int64_t)e->vlen;
    if (acc)
        acc->sa_value_bytes += v;
    else
        atomic_fetch_add(&s->st_value_bytes, (uint64_t)v);
}

void
store_acct_flush(struct store *s, struct store_acct *acc)
{
    pthread_mutex_lock(&s->seg_mu);
    for (size_t i = 0; i < acc->sa_n; i++)
        atomic_fetch_add(&acc->sa_segs[i]->seg_live, (uint64_t)acc->sa_live[i]);
    pthread_mutex_unlock(&s->seg_mu);
    atomic_fetch_add(&s->st_value_bytes, (uint64_t)acc->sa_value_bytes);
    *acc = (struct store_acct){0};
}

int
store_index_put_acct(struct store *s, struct store_acct *acc, uint64_t h,
                     const void *key, size_t klen, const struct index_entry *e)
{
    struct index_entry old;
    int rc = index_put(s->ix, h, key, klen, e, &old);
    if (rc < 0)
        return STORE_NOMEM;
    acct_entry(s, acc, klen, e, 1);
    if (rc == 1)
        acct_entry(s, acc, klen, &old, -1);
    return 0;
}

int
store_index_put(struct store *s, uint64_t h, const void *key, size_t klen,
                const struct index_entry *e)
{
    return store_index_put_acct(s, NULL, h, key, klen, e);
}

bool
store_index_remove_acct(struct store *s, struct store_acct *acc, uint64_t h,
                        const void *key, size_t klen)
{
    struct index_entry old;
    if (!index_remove(s->ix, h, key, klen, &old))
        return false;
    acct_entry(s, acc, klen, &old, -1);
    return true;
}

bool
store_index_remove(struct store *s, uint64_t h, const void *key, size_t klen)
{
    return store_index_remove_acct(s, NULL, h, key, klen);
}

void
store_index_dropped_acct(struct store *s, struct store_acct *acc, size_t klen,
                         const struct index_entry *e, bool expired)
{
    if (expired)
        atomic_fetch_add(&s->st_expired, 1);
    acct_entry(s, acc, klen, e, -1);
}

void
store_index_dropped(struct store *s, size_t klen, const struct index_entry *e,
                    bool expired)
{
    store_index_dropped_acct(s, NULL, klen, e, expired);
}

void
store_sweep(struct store *s)
{
    struct apply a = {.ix = s->ix, .s = s, .nparts = 1};
    apply_sweep(&a, atomic_load(&s->flush_before_off), store_now(s));
}

void
store_raise_cas(struct store *s, uint64_t v)
{
    pthread_mutex_lock(&s->mu);
    if (v > s->next_cas)
        s->next_cas = v;
    pthread_mutex_unlock(&s->mu);
}

void
store_drop_later(struct store *s, uint64_t end, uint64_t at)
{
    pthread_mutex_lock(&s->seg_mu);
    if (end > s->drop_end) {
        s->drop_end = end;
        s->drop_at = at;
        atomic_store(&s->drop_pending, true);
    }
    pthread_mutex_unlock(&s->seg_mu);
}

/* ---- acknowledgements ---- */

int
store_ack_status(store_t *s, uint64_t ack)
{
    if (ack == 0)
        return 1;
    uint64_t local = log_acked(s);
    if (local < ack)
        return atomic_load(&s->failed) ? STORE_READONLY : 0;
    if (!atomic_load(&s->repl_required) || atomic_load(&s->replicated) >= ack)
        return 1;
    return ack <= atomic_load(&s->repl_timed_out) ? STORE_REPL_TIMEOUT : 0;
}

int
store_wait(store_t *s, uint64_t ack)
{
    int rc;
    pthread_mutex_lock(&s->mu);
    while ((rc = store_ack_status(s, ack)) == 0)
        pthread_cond_wait(&s->cv_ack, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return rc < 0 ? rc : 0;
}

int
store_subscribe_to(store_t *s, int efd, unsigned what)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (s->nsubs == STORE_MAX_SUBS) {
        rc = -ENOSPC;
    } else {
        s->sub_kinds[s->nsubs] = (uint8_t)what;
        s->subs[s->nsubs++] = efd;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int
store_subscribe(store_t *s, int efd)
{
    return store_subscribe_to(s, efd, STORE_WAKE_ACKS);
}

void
store_unsubscribe(store_t *s, int efd)
{
    pthread_rwlock_wrlock(&s->subs_rw);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nsubs; i++)
        if (s->subs[i] == efd) {
            s->nsubs--;
            s->subs[i] = s->subs[s->nsubs];
            s->sub_kinds[i--] = s->sub_kinds[s->nsubs];
        }
    pthread_mutex_unlock(&s->mu);
    pthread_rwlock_unlock(&s->subs_rw);
}

/* ---- open, close, stats ---- */

static void
store_free(struct store *s)
{
    for (size_t i = 0; i < s->nsegs; i++)
        seg_unpin(s->segs[i]);
    free(s->segs);
    free(s->buf[0]);
    free(s->buf[1]);
    if (s->ix)
        index_free(s->ix);
    if (s->dirfd >= 0)
        close(s->dirfd);
    if (s->lockfd >= 0)
        close(s->lockfd);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->seg_mu);
    pthread_mutex_destroy(&s->meta_mu);
    pthread_rwlock_destroy(&s->subs_rw);
    pthread_mutex_destroy(&s->flush_mu);
    free((void *)s->won);
    pthread_mutex_destroy(&s->compact_mu);
    pthread_mutex_destroy(&s->maint_mu);
    pthread_cond_destroy(&s->compact_cv);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_space);
    pthread_cond_destroy(&s->cv_ack);
    free(s->dir);
    free(s);
}

/*
 * The append buffers: room for the largest record twice over, at least
 * 8 MiB. "Largest" counts the records already in the log too: compaction
 * copies them, and a value stored under a larger --max-item-size than
 * today's must still fit.
 */
static int
alloc_buffers(struct store *s)
{
    s->buf_cap = 2 * log_max_record(s) + 4096;
    if (s->buf_cap < (8u << 20))
        s->buf_cap = 8u << 20;
    s->buf[0] = malloc(s->buf_cap);
    s->buf[1] = malloc(s->buf_cap);
    return s->buf[0] && s->buf[1] ? 0 : STORE_NOMEM;
}

static int
open_dir(struct store *s, char *err, size_t errlen)
{
    if (mkdir(s->dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "creating data directory %s: %s", s->dir,
                 strerror(errno));
        return -errno;
    }
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        snprintf(err, errlen, "data directory %s: %s", s->dir, strerror(errno));
        return -errno;
    }
    return logdir_lock(s->dir, &s->lockfd, err, errlen);
}

int
store_open(const struct store_config *cfg, store_t **out, char *err,
           size_t errlen)
{
    snprintf(err, errlen, "%s", "");
    if (cfg->segment_size < STORE_MIN_SEGMENT_SIZE || !cfg->dir ||
        !cfg->max_item_size || !(cfg->compact_garbage > 0) ||
        cfg->compact_garbage >= 1) {
        snprintf(err, errlen,
                 "bad configuration: the segment size must be at least %u "
                 "bytes and the compaction garbage ratio between 0 and 1",
                 STORE_MIN_SEGMENT_SIZE);
        return STORE_BAD_CONFIG;
    }
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return STORE_NOMEM;
    s->cfg = *cfg;
    if (s->cfg.max_item_size > REC_MAX_VLEN)
        s->cfg.max_item_size = REC_MAX_VLEN;
    s->dir = strdup(cfg->dir);
    s->won = calloc(STORE_WON_SLOTS, sizeof(*s->won));
    if (!s->dir || !s->won) {
        free(s->dir);
        free((void *)s->won);
        free(s);
        return STORE_NOMEM;
    }
    s->dirfd = s->lockfd = -1;
    s->next_cas = 1;
    for (int i = 0; i < STORE_MAX_HOLDS; i++)
        s->holds[i] = UINT64_MAX;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->seg_mu, NULL);
    pthread_mutex_init(&s->meta_mu, NULL);
    pthread_rwlock_init(&s->subs_rw, NULL);
    pthread_mutex_init(&s->flush_mu, NULL);
    pthread_mutex_init(&s->compact_mu, NULL);
    pthread_mutex_init(&s->maint_mu, NULL);
    pthread_cond_init(&s->compact_cv, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_cond_init(&s->cv_space, NULL);
    pthread_cond_init(&s->cv_ack, NULL);
    s->ix = index_new(0);
    int rc = (!s->dir || !s->ix) ? STORE_NOMEM : 0;
    if (rc == 0)
        rc = open_dir(s, err, errlen);
    if (rc == 0)
        rc = resync_pending(s, err, errlen);
    if (rc == 0)
        rc = log_recover(s, err, errlen);
    if (rc == 0)
        rc = role_apply_config(s, err, errlen);
    if (rc == 0)
        rc = alloc_buffers(s);
    if (rc == 0)
        rc = log_start_writer(s);
    if (rc == 0)
        role_start_live(s);
    if (rc == 0 && cfg->promote)
        rc = store_promote(s, err, errlen);
    if (rc == 0 && !atomic_load(&s->replica) &&
        (rc = log_ensure_active(s)) != 0)
        snprintf(err, errlen, "%s", store_error_text(s));
    if (rc == 0 && cfg->compactor)
        rc = compact_start(s);
    if (rc) {
        log_stop_writer(s);
        if (!err[0])
            snprintf(err, errlen, "%s: %s", cfg->dir, store_strerror(rc));
        store_free(s);
        return rc;
    }
    flush_tick(s); /* a delayed flush that came due while we were down */
    *out = s;
    return 0;
}

void
store_close(store_t *s)
{
    compact_stop(s);
    log_stop_writer(s);
    if (!atomic_load(&s->failed)) { /* so that the next start is fast */
        compact_write_hints(s);
        compact_write_active_hint(s);
    }
    say(SAY_INFO, "closed %s at log offset %" PRIu64, s->dir,
        (uint64_t)atomic_load(&s->durable));
    store_free(s);
}

void
store_stats(store_t *s, struct store_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->items = index_count(s->ix);
    st->value_bytes = atomic_load(&s->st_value_bytes);
    pthread_mutex_lock(&s->seg_mu);
    st->segments = s->nsegs;
    for (size_t i = 0; i < s->nsegs; i++)
        st->live_bytes += atomic_load(&s->segs[i]->seg_live);
    st->log_start = s->nsegs ? s->segs[0]->seg_base : 0;
    pthread_mutex_unlock(&s->seg_mu);
    pthread_mutex_lock(&s->mu);
    st->log_end = s->end;
    pthread_mutex_unlock(&s->mu);
    st->log_bytes = st->log_end - st->log_start;
    st->written_offset = atomic_load(&s->written);
    st->durable_offset = atomic_load(&s->durable);
    st->records_written = atomic_load(&s->st_records);
    st->fsyncs = atomic_load(&s->st_fsyncs);
    uint64_t synced = atomic_load(&s->st_synced_recs);
    st->fsync_batch_avg = st->fsyncs ? synced / st->fsyncs : 0;
    st->fsync_batch_max = atomic_load(&s->st_batch_max);
    st->fsync_us = atomic_load(&s->st_fsync_us);
    st->gather_us = atomic_load(&s->st_gather_us);
    st->index_bytes = index_bytes(s->ix);
    st->index_bytes_per_key = st->items ? st->index_bytes / st->items : 0;
    st->expired_items = atomic_load(&s->st_expired);
    st->garbage_permille = compact_garbage_permille(s);
    st->compact_runs = atomic_load(&s->st_compact_runs);
    st->compact_bytes_read = atomic_load(&s->st_compact_read);
    st->compact_bytes_copied = atomic_load(&s->st_compact_copied);
    st->compact_bytes_reclaimed = atomic_load(&s->st_compact_reclaimed);
    st->compact_last_ms = atomic_load(&s->st_compact_last_ms);
    st->compact_stopped = atomic_load(&s->st_compact_stopped);
    st->error = atomic_load(&s->failed) != 0;
}

void
store_stats_each(const struct store_stats *st,
                 void (*fn)(void *arg, const char *name, uint64_t value),
                 void *arg)
{
#define X(name, desc) fn(arg, #name, st->name);
    STORE_STATS(X)
#undef X
}

const char *
store_error_text(store_t *s)
{
    return atomic_load(&s->failed) ? s->errtext : "";
}
