/*
 * store: memcached's item semantics on the log and the index.
 *
 * Every write follows the same steps, under its key's index lock:
 *   1. look the key up (an expired or flushed entry counts as absent and is
 *      dropped on the way);
 *   2. decide (add, replace, cas, append... may refuse here, writing nothing);
 *   3. append one record with log_append(), which gives it its offset and,
 *      for new versions, its cas;
 *   4. point the index at it, moving live-byte accounting from the record it
 *      replaces.
 * Because the lock is held from 1 to 4, log order is index order for every
 * key, and recovery (replaying the log in order) rebuilds the same index.
 *
 * Expiry is memcached's: 0 never; up to 30 days relative seconds; beyond
 * that an absolute unix time; negative already expired. An item is expired
 * when exptime != 0 && exptime <= now.
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

#define REALTIME_MAXDELTA (60 * 60 * 24 * 30)

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

uint32_t
store_now(store_t *s)
{
    return (uint32_t)(store_now_ms(s) / 1000);
}

/* memcached's exptime rules; 1 stands for "already expired". */
static uint32_t
abs_exptime(struct store *s, int64_t exptime)
{
    if (exptime == 0)
        return 0;
    if (exptime < 0)
        return 1;
    uint32_t now = store_now(s);
    if (exptime > REALTIME_MAXDELTA)
        return exptime > UINT32_MAX ? UINT32_MAX
               : exptime <= now     ? 1
                                    : (uint32_t)exptime;
    return now + (uint32_t)exptime;
}

bool
store_expired(uint32_t exptime, uint32_t now)
{
    return exptime && exptime <= now;
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

static int64_t
entry_size(size_t klen, const struct index_entry *e)
{
    return (int64_t)rec_size(klen, e->vlen);
}

int
store_index_put(struct store *s, uint64_t h, const void *key, size_t klen,
                const struct index_entry *e)
{
    struct index_entry old;
    int rc = index_put(s->ix, h, key, klen, e, &old);
    if (rc < 0)
        return STORE_NOMEM;
    seg_account(s, e->off, entry_size(klen, e));
    atomic_fetch_add(&s->st_value_bytes, e->vlen);
    if (rc == 1) {
        seg_account(s, old.off, -entry_size(klen, &old));
        atomic_fetch_sub(&s->st_value_bytes, old.vlen);
    }
    return 0;
}

bool
store_index_remove(struct store *s, uint64_t h, const void *key, size_t klen)
{
    struct index_entry old;
    if (!index_remove(s->ix, h, key, klen, &old))
        return false;
    seg_account(s, old.off, -entry_size(klen, &old));
    atomic_fetch_sub(&s->st_value_bytes, old.vlen);
    return true;
}

void
store_index_dropped(struct store *s, size_t klen, const struct index_entry *e,
                    bool expired)
{
    if (expired)
        atomic_fetch_add(&s->st_expired, 1);
    seg_account(s, e->off, -entry_size(klen, e));
    atomic_fetch_sub(&s->st_value_bytes, e->vlen);
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

/* ---- flush_all ---- */

/* Append a FLUSH record; with exptime 0 it takes effect now. */
static int
append_flush(struct store *s, uint32_t deadline, struct store_write *w)
{
    struct rec r = {.type = REC_FLUSH, .exptime = deadline};
    uint64_t off;
    int rc = log_append(s, &r, true, &off);
    if (rc)
        return rc;
    if (deadline == 0) {
        atomic_store(&s->flush_before_off, off);
        atomic_store(&s->flush_deadline, 0);
    } else {
        atomic_store(&s->flush_deadline, deadline);
    }
    if (w) {
        w->cas = 0;
        w->ack = off + rec_size(0, 0);
    }
    return 0;
}

/* A delayed flush whose time has come takes effect before anything else
 * reads or writes (see recover.c for why this keeps recovery exact). */
static void
flush_tick(struct store *s)
{
    uint32_t d = atomic_load(&s->flush_deadline);
    if (!d || store_now(s) < d || atomic_load(&s->write_gate))
        return; /* a replica waits for its primary's FLUSH */
    pthread_mutex_lock(&s->flush_mu);
    if (atomic_load(&s->flush_deadline) == d &&
        append_flush(s, 0, NULL) == 0)
        store_sweep(s);
    pthread_mutex_unlock(&s->flush_mu);
}

int
store_flush(store_t *s, int64_t delay, struct store_write *w)
{
    *w = (struct store_write){0};
    int gate = atomic_load(&s->write_gate);
    if (gate)
        return gate;
    uint32_t deadline = delay > 0 ? abs_exptime(s, delay) : 0;
    if (deadline == 1)
        deadline = 0; /* an absolute time in the past: now */
    pthread_mutex_lock(&s->flush_mu);
    int rc = append_flush(s, deadline, w);
    if (rc == 0 && deadline == 0)
        store_sweep(s);
    pthread_mutex_unlock(&s->flush_mu);
    return rc;
}

/* ---- lookups under the key lock ---- */

/* Find a live entry (caller holds the key lock): expired and flushed ones
 * are dropped on the way and reported absent. */
static bool
find_live(struct store *s, uint64_t h, const void *key, size_t klen,
          struct index_entry *e)
{
    if (!index_find(s->ix, h, key, klen, e))
        return false;
    /* most items never expire: skip the clock for them */
    if (e->exptime && store_expired(e->exptime, store_now(s))) {
        store_index_remove(s, h, key, klen);
        atomic_fetch_add(&s->st_expired, 1);
        return false;
    }
    if (e->off < atomic_load(&s->flush_before_off)) {
        store_index_remove(s, h, key, klen);
        return false;
    }
    return true;
}

/* Read the record e points at into a malloc()ed buffer, blocking. */
static int
read_record(struct store *s, const struct index_entry *e, size_t klen,
            const void *key, struct store_item *it, void **bufp)
{
    struct store_loc loc = {.off = e->off, .len = (uint32_t)rec_size(klen, e->vlen),
                            .cas = e->cas, .exptime = e->exptime,
                            .vlen = e->vlen};
    loc.pin = seg_pin(s, e->off);
    if (!loc.pin)
        return STORE_CORRUPT;
    struct seg *g = loc.pin;
    loc.fd = g->seg_fd;
    loc.pos = e->off - g->seg_base;
    char *buf = malloc(loc.len ? loc.len : 1);
    if (!buf) {
        seg_unpin(g);
        return STORE_NOMEM;
    }
    ssize_t n = loc.len;
    if (!store_read_buffered(s, &loc, buf))
        n = pread(loc.fd, buf, loc.len, (off_t)loc.pos);
    int rc = store_read_finish(s, &loc, buf, n < 0 ? 0 : (size_t)n, key, klen,
                               it);
    if (rc) {
        free(buf);
        return rc;
    }
    *bufp = buf;
    return 0;
}

static int
check_key(const void *key, size_t klen)
{
    (void)key;
    return klen >= 1 && klen <= STORE_MAX_KEY ? 0 : STORE_BAD_KEY;
}

/* A keyed write in progress: the key's hash and, when found, its entry. */
struct keyed {
    uint64_t h;
    struct index_entry e;
    bool found;
};

/*
 * Step 1 of every keyed write: check the key and the store's state, lock
 * the key and look it up. Returns 0 with the key locked (end with
 * write_end), or an error with nothing locked.
 */
static int
write_begin(struct store *s, const void *key, size_t klen,
            struct store_write *w, struct keyed *k)
{
    *w = (struct store_write){0};
    if (check_key(key, klen))
        return STORE_BAD_KEY;
    if (atomic_load(&s->failed))
        return STORE_READONLY;
    int gate = atomic_load(&s->write_gate);
    if (gate)
        return gate;
    flush_tick(s);
    k->h = index_hash(key, klen);
    index_lock(s->ix, k->h);
    k->found = find_live(s, k->h, key, klen, &k->e);
    return 0;
}

static int
write_end(struct store *s, const struct keyed *k, int rc)
{
    index_unlock(s->ix, k->h);
    return rc;
}

/* Append a DELETE (new cas) or TOUCH (the item's cas) record for key. */
static int
append_key_record(struct store *s, uint8_t type, const void *key, size_t klen,
                  uint32_t exptime, uint64_t cas, struct store_write *w)
{
    struct rec r = {.type = type, .klen = (uint16_t)klen, .exptime = exptime,
                    .cas = cas, .key = key};
    uint64_t off;
    int rc = log_append(s, &r, type == REC_DELETE, &off);
    if (rc == 0)
        w->ack = off + rec_size(klen, 0);
    return rc;
}

/* Steps 3 and 4: append a PUT and point the index at it. */
static int
put_locked(struct store *s, uint64_t h, const void *key, size_t klen,
           const void *val, size_t vlen, uint32_t flags, uint32_t exptime,
           struct store_write *w)
{
    struct rec r = {.type = REC_PUT, .klen = (uint16_t)klen,
                    .vlen = (uint32_t)vlen, .flags = flags, .exptime = exptime,
                    .key = key, .val = val};
    uint64_t off;
    int rc = log_append(s, &r, true, &off);
    if (rc)
        return rc;
    w->cas = r.cas;
    w->ack = off + rec_size(klen, vlen);
    if (store_expired(exptime, (uint32_t)(r.time_ms / 1000))) {
        /* Stored already expired (negative exptime): it only hides an older
         * value, as in memcached. */
        store_index_remove(s, h, key, klen);
        return 0;
    }
    struct index_entry e = {.off = off, .vlen = (uint32_t)vlen,
                            .exptime = exptime, .cas = r.cas};
    return store_index_put(s, h, key, klen, &e);
}

/* append/prepend: build the joined value from the old record. */
static int
join_locked(struct store *s, enum store_mode mode, uint64_t h, const void *key,
            size_t klen, const struct index_entry *old, const void *val,
            size_t vlen, struct store_write *w)
{
    if ((uint64_t)old->vlen + vlen > s->cfg.max_item_size)
        return STORE_TOO_LARGE;
    struct store_item it;
    void *rbuf;
    int rc = read_record(s, old, klen, key, &it, &rbuf);
    if (rc)
        return rc;
    char *joined = malloc(it.vlen + vlen + 1);
    if (!joined) {
        free(rbuf);
        return STORE_NOMEM;
    }
    const void *first = mode == STORE_APPEND ? it.value : val;
    size_t flen = mode == STORE_APPEND ? it.vlen : vlen;
    memcpy(joined, first, flen);
    memcpy(joined + flen, mode == STORE_APPEND ? val : (const void *)it.value,
           mode == STORE_APPEND ? vlen : it.vlen);
    rc = put_locked(s, h, key, klen, joined, it.vlen + vlen, it.flags,
                    it.exptime, w);
    free(joined);
    free(rbuf);
    return rc;
}

int
store_set(store_t *s, enum store_mode mode, const void *key, size_t klen,
          const void *val, size_t vlen, uint32_t flags, int64_t exptime,
          uint64_t cas_in, struct store_write *w)
{
    if (vlen > s->cfg.max_item_size) {
        *w = (struct store_write){0};
        return STORE_TOO_LARGE;
    }
    struct keyed k;
    int rc = write_begin(s, key, klen, w, &k);
    if (rc)
        return rc;
    switch (mode) {
    case STORE_SET:
        break;
    case STORE_ADD:
        rc = k.found ? STORE_NOT_STORED : 0;
        break;
    case STORE_REPLACE:
        rc = k.found ? 0 : STORE_NOT_STORED;
        break;
    case STORE_CAS:
        rc = !k.found ? STORE_NOT_FOUND : k.e.cas != cas_in ? STORE_EXISTS : 0;
        break;
    case STORE_APPEND:
    case STORE_PREPEND:
        rc = k.found ? join_locked(s, mode, k.h, key, klen, &k.e, val, vlen, w)
                     : STORE_NOT_STORED;
        return write_end(s, &k, rc);
    }
    if (rc == 0)
        rc = put_locked(s, k.h, key, klen, val, vlen, flags,
                        abs_exptime(s, exptime), w);
    return write_end(s, &k, rc);
}

int
store_delete(store_t *s, const void *key, size_t klen, uint64_t cas_in,
             struct store_write *w)
{
    struct keyed k;
    int rc = write_begin(s, key, klen, w, &k);
    if (rc)
        return rc;
    if (!k.found)
        rc = STORE_NOT_FOUND;
    else if (cas_in && cas_in != k.e.cas)
        rc = STORE_EXISTS;
    else if ((rc = append_key_record(s, REC_DELETE, key, klen, 0, 0, w)) == 0)
        store_index_remove(s, k.h, key, klen);
    return write_end(s, &k, rc);
}

int
store_touch(store_t *s, const void *key, size_t klen, int64_t exptime,
            struct store_write *w)
{
    struct keyed k;
    int rc = write_begin(s, key, klen, w, &k);
    if (rc)
        return rc;
    if (!k.found)
        return write_end(s, &k, STORE_NOT_FOUND);
    uint32_t abs = abs_exptime(s, exptime);
    rc = append_key_record(s, REC_TOUCH, key, klen, abs, k.e.cas, w);
    if (rc == 0) {
        w->cas = k.e.cas;
        if (store_expired(abs, store_now(s))) {
            store_index_remove(s, k.h, key, klen);
        } else {
            k.e.exptime = abs;
            index_put(s->ix, k.h, key, klen, &k.e, NULL);
        }
    }
    return write_end(s, &k, rc);
}

/* memcached's safe_strtoull over a value: optional spaces, digits, then the
 * end or a space. */
static bool
parse_u64(const char *p, size_t n, uint64_t *out)
{
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    if (i == n || p[i] < '0' || p[i] > '9')
        return false;
    uint64_t v = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (i < n && p[i] != ' ' && p[i] != '\r' && p[i] != '\n')
        return false;
    *out = v;
    return true;
}

int
store_arith(store_t *s, const void *key, size_t klen, bool incr,
            uint64_t delta, uint64_t *value, struct store_write *w)
{
    struct keyed k;
    int rc = write_begin(s, key, klen, w, &k);
    if (rc)
        return rc;
    if (!k.found)
        return write_end(s, &k, STORE_NOT_FOUND);
    struct store_item it;
    void *rbuf;
    rc = read_record(s, &k.e, klen, key, &it, &rbuf);
    if (rc == 0) {
        uint64_t v;
        if (!parse_u64(it.value, it.vlen, &v)) {
            rc = STORE_NON_NUMERIC;
        } else {
            v = incr ? v + delta : (delta > v ? 0 : v - delta);
            char num[24];
            int n = snprintf(num, sizeof(num), "%" PRIu64, v);
            rc = put_locked(s, k.h, key, klen, num, (size_t)n, it.flags,
                            it.exptime, w);
            *value = v;
        }
        free(rbuf);
    }
    return write_end(s, &k, rc);
}

/* ---- reads ---- */

int
store_lookup(store_t *s, const void *key, size_t klen, struct store_loc *loc)
{
    if (check_key(key, klen))
        return STORE_NOT_FOUND;
    int gate = atomic_load(&s->read_gate);
    if (gate)
        return gate;
    flush_tick(s);
    uint64_t h = index_hash(key, klen);
    struct index_entry e;
    index_lock(s->ix, h);
    int rc = STORE_NOT_FOUND;
    if (find_live(s, h, key, klen, &e)) {
        struct seg *g = seg_pin(s, e.off);
        if (g) {
            *loc = (struct store_loc){.fd = g->seg_fd,
                                      .pos = e.off - g->seg_base,
                                      .len = (uint32_t)rec_size(klen, e.vlen),
                                      .off = e.off, .cas = e.cas,
                                      .exptime = e.exptime, .vlen = e.vlen,
                                      .pin = g};
            rc = 0;
        } else {
            rc = STORE_CORRUPT;
        }
    }
    index_unlock(s->ix, h);
    return rc;
}

int
store_read_buffered(store_t *s, const struct store_loc *loc, void *buf)
{
    return log_read_buffered(s, loc->off, loc->len, buf);
}

int
store_read_finish(store_t *s, struct store_loc *loc, const void *buf,
                  size_t nread, const void *key, size_t klen,
                  struct store_item *it)
{
    struct seg *g = loc->pin;
    struct rec r;
    long n = nread == loc->len
                 ? rec_decode(buf, nread, s->log_seed, loc->off, &r)
                 : REC_E_SHORT;
    int rc = 0;
    if (n != (long)loc->len || r.type != REC_PUT || r.klen != klen ||
        memcmp(r.key, key, klen) != 0) {
        char path[4096];
        dir_seg_path(s, g->seg_base, path, sizeof(path));
        say(SAY_ERROR, "%s: record at offset %" PRIu64 " (file position %"
            PRIu64 ") for key '%.*s' does not read back: %s", path, loc->off,
            loc->pos, (int)klen, (const char *)key,
            n < 0 ? rec_strerror((int)n) : "another record is there");
        rc = STORE_CORRUPT;
    } else {
        *it = (struct store_item){.flags = r.flags, .exptime = loc->exptime,
                                  .cas = loc->cas, .key = r.key,
                                  .klen = r.klen, .value = r.val,
                                  .vlen = r.vlen};
    }
    seg_unpin(g);
    loc->pin = NULL;
    return rc;
}

int
store_get(store_t *s, const void *key, size_t klen, struct store_item *it,
          void **bufp)
{
    struct store_loc loc;
    *bufp = NULL;
    int rc = store_lookup(s, key, klen, &loc);
    if (rc)
        return rc;
    char *buf = malloc(loc.len);
    if (!buf) {
        struct store_item dummy;
        store_read_finish(s, &loc, "", 0, key, klen, &dummy);
        return STORE_NOMEM;
    }
    ssize_t n = loc.len;
    if (!store_read_buffered(s, &loc, buf))
        n = pread(loc.fd, buf, loc.len, (off_t)loc.pos);
    rc = store_read_finish(s, &loc, buf, n < 0 ? 0 : (size_t)n, key, klen, it);
    if (rc)
        free(buf);
    else
        *bufp = buf;
    return rc;
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
    uint64_t rec = rec_size(STORE_MAX_KEY, s->cfg.max_item_size);
    if (s->max_rec > rec)
        rec = s->max_rec;
    s->buf_cap = 2 * rec + 4096;
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
        snprintf(err, errlen, "data directory %s: %s", s->dir,
                 strerror(errno));
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
    if (!atomic_load(&s->failed))
        compact_write_hints(s); /* so that the next start is fast */
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
