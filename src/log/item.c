/*
 * item: memcached's item semantics on the log and the index, for every
 * front end (the classic text protocol, the meta protocol, the tools).
 *
 * Every write follows the same steps, under its key's index lock:
 *   1. look the key up (an expired or flushed entry counts as absent and is
 *      dropped on the way);
 *   2. decide (add, replace, cas, append... may refuse here, writing nothing);
 *   3. append one record with log_append(), which gives it its offset and,
 *      for new versions, its cas (or the client's, meta E: flagged so);
 *   4. point the index at it, moving live-byte accounting from the record it
 *      replaces.
 * Because the lock is held from 1 to 4, log order is index order for every
 * key, and recovery (replaying the log in order) rebuilds the same index.
 *
 * Expiry is memcached's: 0 never; up to 30 days relative seconds; beyond
 * that an absolute unix time; negative already expired. An item is expired
 * when exptime != 0 && exptime <= now.
 *
 * Anti-stampede state (meta: N vivify, R recache, I invalidate, W/X/Z):
 *   stale      in the index and on disk: a PUT of a stale value (ms I) or a
 *              TOUCH that marks the item stale (md I) carries REC_F_STALE,
 *              so a restart or a replica serves it stale too;
 *   stub       a vivified item: an empty PUT with the N TTL flagged
 *              REC_F_STUB (a bit in the index too), durable like any write;
 *              the next write of the key fills it;
 *   win token  "a W went out for this version" lives in RAM only, in a
 *              table of STORE_WON_SLOTS entries keyed by (key hash, cas): a
 *              new version (a new cas) has no token out. A stale item with
 *              no token out hands one to its next reader, a stub to its next
 *              reader with N: so after
 *              a restart exactly one client wins it again (the old winner
 *              may be gone). When more items than the table holds await a
 *              recache at once, an item may hand out one more W than
 *              memcached would: a second client recaches, nobody is left
 *              without a value.
 *   fetched    a bit in the index (meta h), RAM only.
 */
#include "log/log_int.h"
#include "util/panic.h"
#include "util/say.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REALTIME_MAXDELTA (60 * 60 * 24 * 30)

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

static int
check_key(const void *key, size_t klen)
{
    (void)key;
    return klen >= 1 && klen <= STORE_MAX_KEY ? 0 : STORE_BAD_KEY;
}

/* ---- win tokens (RAM only) ---- */

/* A slot holds one tag: the key's hash and the version's cas, mixed. Slots
 * are atomics, so the read path takes no lock; two mg of one key are
 * already serialised by the index stripe lock, and two keys that share a
 * slot only cost an extra W (see the comment at the top). */
static uint64_t
won_tag(uint64_t h, uint64_t cas)
{
    uint64_t t = h ^ (cas * 0x9e3779b97f4a7c15ull);
    return t ? t : 1;
}

static _Atomic uint64_t *
won_slot(struct store *s, uint64_t h)
{
    return &s->won[h % STORE_WON_SLOTS];
}

static bool
won_is(struct store *s, uint64_t h, uint64_t cas)
{
    return atomic_load_explicit(won_slot(s, h), memory_order_relaxed) ==
           won_tag(h, cas);
}

static void
won_set(struct store *s, uint64_t h, uint64_t cas)
{
    atomic_store_explicit(won_slot(s, h), won_tag(h, cas),
                          memory_order_relaxed);
}

/* A new version with this cas has no token out, even when a client's E
 * gives it the cas of an older one. */
static void
won_clear(struct store *s, uint64_t h, uint64_t cas)
{
    uint64_t t = won_tag(h, cas);
    atomic_compare_exchange_strong_explicit(
        won_slot(s, h), &t, 0, memory_order_relaxed, memory_order_relaxed);
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
void
flush_tick(struct store *s)
{
    uint32_t d = atomic_load(&s->flush_deadline);
    if (!d || store_now(s) < d || atomic_load(&s->write_gate))
        return; /* a replica waits for its primary's FLUSH */
    pthread_mutex_lock(&s->flush_mu);
    if (atomic_load(&s->flush_deadline) == d && append_flush(s, 0, NULL) == 0)
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
 * are dropped on the way and reported absent, with the reason in *why. */
static bool
find_live(struct store *s, uint64_t h, const void *key, size_t klen,
          struct index_entry *e, uint8_t *why)
{
    *why = STORE_MISS_ABSENT;
    if (!index_find(s->ix, h, key, klen, e))
        return false;
    /* most items never expire: skip the clock for them */
    if (e->exptime && store_expired(e->exptime, store_now(s))) {
        store_index_remove(s, h, key, klen);
        atomic_fetch_add(&s->st_expired, 1);
        *why = STORE_MISS_EXPIRED;
        return false;
    }
    if (e->off < atomic_load(&s->flush_before_off)) {
        store_index_remove(s, h, key, klen);
        *why = STORE_MISS_FLUSHED;
        return false;
    }
    return true;
}

/* Where e's record is, pinned (caller holds the key lock). */
static int
locate(struct store *s, const struct index_entry *e, size_t klen,
       struct store_loc *loc)
{
    struct seg *g = seg_pin(s, e->off);
    if (!g)
        return STORE_CORRUPT;
    *loc = (struct store_loc){.gen = atomic_load(&s->log_gen),
                              .fd = g->seg_fd,
                              .dfd = g->seg_dfd,
                              .pos = e->off - g->seg_base,
                              .len = (uint32_t)rec_size(klen, e->vlen),
                              .off = e->off,
                              .cas = e->cas,
                              .exptime = e->exptime,
                              .vlen = e->vlen,
                              .pin = g};
    return 0;
}

/* The item counts as fetched (meta h) from now on (key lock held). */
static void
mark_fetched(struct store *s, uint64_t h, const void *key, size_t klen,
             struct index_entry *e)
{
    if (e->fetched)
        return;
    e->fetched = 1;
    index_put(s->ix, h, key, klen, e, NULL);
}

/* Read the record e points at into a malloc()ed buffer, blocking. */
static int
read_record(struct store *s, const struct index_entry *e, size_t klen,
            const void *key, struct store_item *it, void **bufp)
{
    struct store_loc loc;
    int rc = locate(s, e, klen, &loc);
    if (rc)
        return rc;
    char *buf = malloc(loc.len ? loc.len : 1);
    if (!buf) {
        seg_unpin(loc.pin);
        return STORE_NOMEM;
    }
    ssize_t n = loc.len;
    if (!store_read_buffered(s, &loc, buf))
        n = pread(loc.fd, buf, loc.len, (off_t)loc.pos);
    rc = store_read_finish(s, &loc, buf, n < 0 ? 0 : (size_t)n, key, klen, it);
    if (rc) {
        free(buf);
        return rc;
    }
    *bufp = buf;
    return 0;
}

/* ---- keyed writes ---- */

/* A keyed write in progress: the key's hash and, when found, its entry. */
struct keyed {
    const void *key;
    size_t klen;
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
    *k = (struct keyed){.key = key, .klen = klen, .h = index_hash(key, klen)};
    index_lock(s->ix, k->h);
    uint8_t why;
    k->found = find_live(s, k->h, key, klen, &k->e, &why);
    return 0;
}

static int
write_end(struct store *s, const struct keyed *k, int rc)
{
    index_unlock(s->ix, k->h);
    return rc;
}

/* A new version of the item: what put_locked writes. */
struct put {
    const void *val;
    size_t vlen;
    uint32_t flags;
    uint32_t exptime; /* absolute */
    uint64_t cas;     /* 0: a generated one */
    bool cas_client;  /* cas is the client's (meta E) or an old one kept */
    bool stale;
    bool stub; /* vivified (meta N) */
};

/* Steps 3 and 4: append a PUT and point the index at it. */
static int
put_locked(struct store *s, struct keyed *k, const struct put *p,
           struct store_write *w)
{
    struct rec r = {.type = REC_PUT,
                    .rflags = (uint8_t)((p->stale ? REC_F_STALE : 0) |
                                        (p->cas ? REC_F_CAS_CLIENT : 0) |
                                        (p->stub ? REC_F_STUB : 0)),
                    .klen = (uint16_t)k->klen,
                    .vlen = (uint32_t)p->vlen,
                    .flags = p->flags,
                    .exptime = p->exptime,
                    .cas = p->cas,
                    .key = k->key,
                    .val = p->val};
    uint64_t off;
    int rc = log_append(s, &r, p->cas == 0, &off);
    if (rc)
        return rc;
    /* invariant 3: a key's records are in the log in its index's order */
    MCDB_ASSERT(!k->found || off > k->e.off);
    w->cas = r.cas;
    w->ack = off + rec_size(k->klen, p->vlen);
    w->vlen = (uint32_t)p->vlen;
    won_clear(s, k->h, r.cas); /* a new version: no token out */
    if (store_expired(p->exptime, (uint32_t)(r.time_ms / 1000))) {
        /* Stored already expired (negative exptime): it only hides an older
         * value, as in memcached. */
        store_index_remove(s, k->h, k->key, k->klen);
        k->found = false;
        return 0;
    }
    k->e = (struct index_entry){.off = off,
                                .vlen = (uint32_t)p->vlen,
                                .exptime = p->exptime,
                                .cas = r.cas,
                                .stale = p->stale,
                                .stub = p->stub};
    k->found = true;
    return store_index_put(s, k->h, k->key, k->klen, &k->e);
}

/* Append a DELETE (new cas) or TOUCH (cas as given) record for the key.
 * A TOUCH carries the item's stale and stub flags: replay sets them from
 * the record. */
static int
append_key_record(struct store *s, struct keyed *k, uint8_t type,
                  uint32_t exptime, uint64_t cas, uint8_t rflags,
                  struct store_write *w)
{
    struct rec r = {.type = type,
                    .rflags = rflags,
                    .klen = (uint16_t)k->klen,
                    .exptime = exptime,
                    .cas = cas,
                    .key = k->key};
    uint64_t off;
    int rc = log_append(s, &r, type == REC_DELETE || cas == 0, &off);
    MCDB_ASSERT(rc || !k->found || off > k->e.off); /* invariant 3 */
    if (rc == 0) {
        w->ack = off + rec_size(k->klen, 0);
        w->cas = r.cas;
    }
    return rc;
}

/* The item's exptime, cas or stale mark change without a new value (key
 * locked, item found): touch and mg T keep the cas (new_cas false, cas 0),
 * md I gives a new one: generated (new_cas) or the client's (cas). */
static int
retouch_locked(struct store *s, struct keyed *k, uint32_t exptime, bool new_cas,
               uint64_t cas, bool stale, struct store_write *w)
{
    uint64_t to = new_cas ? cas : k->e.cas;
    uint8_t fl =
        (uint8_t)((stale ? REC_F_STALE : 0) | (to ? REC_F_CAS_CLIENT : 0) |
                  (k->e.stub ? REC_F_STUB : 0));
    int rc = append_key_record(s, k, REC_TOUCH, exptime, to, fl, w);
    if (rc)
        return rc;
    if (w->cas != k->e.cas)
        won_clear(s, k->h, w->cas); /* a new cas: a new win to hand out */
    k->e.exptime = exptime;
    k->e.cas = w->cas;
    k->e.stale = stale;
    if (store_expired(exptime, store_now(s))) {
        store_index_remove(s, k->h, k->key, k->klen);
        k->found = false;
    } else {
        index_put(s->ix, k->h, k->key, k->klen, &k->e, NULL);
    }
    return 0;
}

/* append/prepend: the joined value from the old record. */
static int
join_locked(struct store *s, const struct store_req *r, struct keyed *k,
            const struct put *base, struct store_write *w)
{
    if ((uint64_t)k->e.vlen + r->vlen > s->cfg.max_item_size)
        return STORE_TOO_LARGE;
    struct store_item it;
    void *rbuf;
    int rc = read_record(s, &k->e, k->klen, k->key, &it, &rbuf);
    if (rc)
        return rc;
    char *joined = malloc(it.vlen + r->vlen + 1);
    if (!joined) {
        free(rbuf);
        return STORE_NOMEM;
    }
    bool app = r->mode == STORE_APPEND;
    memcpy(joined, app ? it.value : r->val, app ? it.vlen : r->vlen);
    memcpy(joined + (app ? it.vlen : r->vlen), app ? r->val : it.value,
           app ? r->vlen : it.vlen);
    struct put p = *base;
    p.val = joined;
    p.vlen = it.vlen + r->vlen;
    p.flags = it.flags;
    p.exptime = k->e.exptime;
    rc = put_locked(s, k, &p, w);
    free(joined);
    free(rbuf);
    return rc;
}

/* How a supplied cas compares with the item's (memcached's do_store_item):
 * none supplied, a match, a lower one that meta I accepts, or a mismatch. */
enum cas_cmp { CAS_NONE, CAS_MATCH, CAS_STALE, CAS_BAD };

static enum cas_cmp
cas_compare(const struct store_req *r, const struct index_entry *e)
{
    if (r->mode != STORE_CAS && !r->has_cas)
        return CAS_NONE;
    if (r->cas_in == e->cas)
        return CAS_MATCH;
    return r->stale_ok && r->cas_in < e->cas ? CAS_STALE : CAS_BAD;
}

/* The set family on an existing item (key locked). */
static int
set_found(struct store *s, const struct store_req *r, struct keyed *k,
          struct put *p, struct store_write *w)
{
    enum cas_cmp cmp = cas_compare(r, &k->e);
    switch (r->mode) {
    case STORE_ADD:
        return STORE_NOT_STORED;
    case STORE_APPEND:
    case STORE_PREPEND:
        if (cmp != CAS_NONE && cmp != CAS_MATCH)
            return STORE_EXISTS;
        return join_locked(s, r, k, p, w);
    case STORE_SET:
    case STORE_REPLACE:
    case STORE_CAS:
        if (cmp == CAS_BAD)
            return STORE_EXISTS;
        if (cmp == CAS_STALE) {
            /* a stale-set keeps the item's exptime and its win token */
            bool won = won_is(s, k->h, k->e.cas);
            p->stale = true;
            p->exptime = k->e.exptime;
            int rc = put_locked(s, k, p, w);
            if (rc == 0 && won && k->found)
                won_set(s, k->h, k->e.cas);
            return rc;
        }
        return put_locked(s, k, p, w);
    }
    return STORE_BAD_CONFIG;
}

int
store_set(store_t *s, const struct store_req *r, struct store_write *w)
{
    if (r->vlen > s->cfg.max_item_size) {
        *w = (struct store_write){0};
        return STORE_TOO_LARGE;
    }
    struct keyed k;
    int rc = write_begin(s, r->key, r->klen, w, &k);
    if (rc)
        return rc;
    struct put p = {.val = r->val,
                    .vlen = r->vlen,
                    .flags = r->flags,
                    .exptime = abs_exptime(s, r->exptime),
                    .cas = r->cas_new};
    bool cas =
        r->mode == STORE_CAS ||
        (r->has_cas && (r->mode == STORE_SET || r->mode == STORE_REPLACE));
    if (k.found && r->has_below && k.e.cas >= r->cas_below)
        rc = STORE_EXISTS;
    else if (k.found)
        rc = set_found(s, r, &k, &p, w);
    else if (cas)
        rc = STORE_NOT_FOUND;
    else if (r->mode == STORE_SET || r->mode == STORE_ADD)
        rc = put_locked(s, &k, &p, w);
    else if (r->vivify &&
             (r->mode == STORE_APPEND || r->mode == STORE_PREPEND)) {
        p.exptime = abs_exptime(s, r->vivify_exptime);
        rc = put_locked(s, &k, &p, w);
    } else
        rc = STORE_NOT_STORED;
    return write_end(s, &k, rc);
}

int
store_delete(store_t *s, const struct store_del *q, struct store_write *w)
{
    struct keyed k;
    int rc = write_begin(s, q->key, q->klen, w, &k);
    if (rc)
        return rc;
    if (!k.found)
        return write_end(s, &k, STORE_NOT_FOUND);
    if (q->has_cas && q->cas_in != k.e.cas)
        return write_end(s, &k, STORE_EXISTS);
    if (q->empty_value) {
        /* md x: an empty value, the cas kept (or E's) */
        struct put p = {.val = "",
                        .flags = q->flags,
                        .exptime = q->has_ttl ? abs_exptime(s, q->exptime) : 0,
                        .cas = q->cas_new ? q->cas_new : k.e.cas};
        rc = put_locked(s, &k, &p, w);
        if (rc || !q->invalidate || !k.found)
            return write_end(s, &k, rc);
    }
    if (q->invalidate) {
        /* md I: stale, a new cas, maybe a new exptime */
        uint32_t exp = q->has_ttl && !q->empty_value
                           ? abs_exptime(s, q->exptime)
                           : k.e.exptime;
        rc = retouch_locked(s, &k, exp, true, q->cas_new, true, w);
        return write_end(s, &k, rc);
    }
    if (q->empty_value)
        return write_end(s, &k, rc);
    rc = append_key_record(s, &k, REC_DELETE, 0, 0, 0, w);
    if (rc == 0) {
        store_index_remove(s, k.h, k.key, k.klen);
        won_set(s, k.h, 0);
    }
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
    rc = retouch_locked(s, &k, abs_exptime(s, exptime), false, 0, k.e.stale, w);
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

static int
put_number(struct store *s, struct keyed *k, uint64_t v, uint32_t flags,
           uint32_t exptime, uint64_t cas, struct store_write *w)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRIu64, v);
    struct put p = {.val = num,
                    .vlen = (size_t)n,
                    .flags = flags,
                    .exptime = exptime,
                    .cas = cas};
    return put_locked(s, k, &p, w);
}

int
store_arith(store_t *s, const struct store_arith_req *q,
            struct store_arith_res *res, struct store_write *w)
{
    struct keyed k;
    *res = (struct store_arith_res){0};
    int rc = write_begin(s, q->key, q->klen, w, &k);
    if (rc)
        return rc;
    if (!k.found && !q->vivify)
        return write_end(s, &k, STORE_NOT_FOUND);
    if (!k.found) {
        rc = put_number(s, &k, q->initial, 0, abs_exptime(s, q->vivify_exptime),
                        q->cas_new, w);
        res->value = q->initial;
        res->created = true;
    } else if (q->has_cas && q->cas_in != k.e.cas) {
        return write_end(s, &k, STORE_EXISTS);
    } else {
        struct store_item it;
        void *rbuf = NULL;
        rc = read_record(s, &k.e, k.klen, k.key, &it, &rbuf);
        uint64_t v = 0;
        if (rc == 0 && !parse_u64(it.value, it.vlen, &v))
            rc = STORE_NON_NUMERIC;
        if (rc == 0) {
            v = q->incr ? v + q->delta : (q->delta > v ? 0 : v - q->delta);
            uint32_t exp = q->touch ? abs_exptime(s, q->exptime) : k.e.exptime;
            rc = put_number(s, &k, v, it.flags, exp, q->cas_new, w);
            res->value = v;
        }
        free(rbuf);
    }
    res->cas = w->cas;
    res->exptime = k.found ? k.e.exptime : 0;
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
    if (find_live(s, h, key, klen, &e, &loc->miss)) {
        rc = locate(s, &e, klen, loc);
        if (rc == 0) {
            loc->fetched = e.fetched;
            loc->hash = h;
            mark_fetched(s, h, key, klen, &e);
        }
    }
    index_unlock(s->ix, h);
    /* a reload (a replica's resync) may have emptied the index under us:
     * say so rather than miss */
    if (rc == STORE_NOT_FOUND && (gate = atomic_load(&s->read_gate)))
        return gate;
    return rc;
}

/* mg's N: a miss becomes an empty item that this client fills (key
 * locked, not found). */
static int
vivify_locked(struct store *s, const struct store_mget *q, struct keyed *k,
              struct store_mget_res *res)
{
    int gate = atomic_load(&s->write_gate);
    if (gate)
        return gate;
    struct store_write w;
    struct put p = {.val = "",
                    .exptime = abs_exptime(s, q->vivify_exptime),
                    .cas = q->cas_new,
                    .stub = true};
    int rc = put_locked(s, k, &p, &w);
    if (rc)
        return rc;
    if (!k->found) /* vivified already expired (a negative TTL) */
        return STORE_NOT_FOUND;
    res->created = true;
    res->won = true;
    res->ack = w.ack;
    return 0;
}

int
store_mget(store_t *s, const struct store_mget *q, struct store_mget_res *res)
{
    *res = (struct store_mget_res){0};
    if (check_key(q->key, q->klen))
        return STORE_NOT_FOUND;
    int gate = atomic_load(&s->read_gate);
    if (gate)
        return gate;
    if (atomic_load(&s->failed) && (q->vivify || q->touch))
        return STORE_READONLY;
    flush_tick(s);
    struct keyed k = {
        .key = q->key, .klen = q->klen, .h = index_hash(q->key, q->klen)};
    index_lock(s->ix, k.h);
    k.found = find_live(s, k.h, q->key, q->klen, &k.e, &res->miss);
    int rc = 0;
    if (!k.found)
        rc = q->vivify ? vivify_locked(s, q, &k, res) : STORE_NOT_FOUND;
    if (rc == 0 && q->touch && !res->created) {
        if ((gate = atomic_load(&s->write_gate))) {
            rc = gate;
        } else {
            struct store_write w;
            struct index_entry before = k.e;
            rc = retouch_locked(s, &k, abs_exptime(s, q->exptime), false, 0,
                                k.e.stale, &w);
            res->ack = w.ack;
            /* gat with a past exptime: this read still returns the value */
            if (rc == 0 && !k.found)
                k.e = before;
        }
    }
    if (rc) {
        index_unlock(s->ix, k.h);
        if (rc == STORE_NOT_FOUND && (gate = atomic_load(&s->read_gate)))
            return gate;
        return rc;
    }
    res->hit_before = k.e.fetched;
    res->stale = k.e.stale;
    /* a token goes out for a stub, a stale item or a recache (R needs a
     * TTL): an item that is none of these has none, and its read skips
     * the table (a cache miss on most reads) */
    res->token_out = !res->created && (k.e.stub || k.e.stale || k.e.exptime) &&
                     won_is(s, k.h, k.e.cas);
    if (q->recache && !res->created && !res->token_out && k.e.exptime &&
        k.e.exptime < abs_exptime(s, q->recache_ttl > 0 ? q->recache_ttl : 1) &&
        k.e.exptime > store_now(s))
        res->won = true;
    /* a stale item, or a stub whose winner may be gone (its token went
     * with a restart): the next reader recaches it; a stub only one that
     * would have vivified it (N) */
    if ((res->stale || (k.e.stub && q->vivify)) && !res->token_out)
        res->won = true;
    if (res->won)
        won_set(s, k.h, k.e.cas);
    if (!q->no_bump && k.found)
        mark_fetched(s, k.h, q->key, q->klen, &k.e);
    res->cas = k.e.cas;
    res->exptime = k.e.exptime;
    res->vlen = k.e.vlen;
    if (!q->no_record) {
        rc = locate(s, &k.e, q->klen, &res->loc);
        res->loc.fetched = res->hit_before;
        res->loc.hash = k.h;
    }
    index_unlock(s->ix, k.h);
    return rc;
}

int
store_read_buffered(store_t *s, const struct store_loc *loc, void *buf)
{
    return log_read_buffered(s, loc->off, loc->len, buf);
}

uint64_t
store_hash(const void *key, size_t klen)
{
    return index_hash(key, klen);
}

void
store_prefetch(store_t *s, uint64_t hash, int stage)
{
    index_prefetch(s->ix, hash, stage);
}

uint64_t
store_log_generation(store_t *s)
{
    return atomic_load_explicit(&s->log_gen, memory_order_relaxed);
}

void
store_read_skip(store_t *s, struct store_loc *loc)
{
    (void)s;
    seg_unpin(loc->pin);
    loc->pin = NULL;
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
        say(SAY_ERROR,
            "%s: record at offset %" PRIu64 " (file position %" PRIu64
            ") for key '%.*s' does not read back: %s",
            path, loc->off, loc->pos, (int)klen, (const char *)key,
            n < 0 ? rec_strerror((int)n) : "another record is there");
        rc = STORE_CORRUPT;
    } else {
        *it = (struct store_item){.flags = r.flags,
                                  .exptime = loc->exptime,
                                  .cas = loc->cas,
                                  .time_ms = r.time_ms,
                                  .key = r.key,
                                  .klen = r.klen,
                                  .value = r.val,
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

/* ---- listing every key (store.h) ---- */

struct dump {
    struct store *s;
    uint32_t now;
    uint64_t flushed_below;
    void (*fn)(void *arg, const struct store_dump_item *it);
    void *arg;
};

static int
dump_visit(void *arg, const void *key, size_t klen, struct index_entry *e)
{
    struct dump *d = arg;
    if (store_expired(e->exptime, d->now) || e->off < d->flushed_below)
        return INDEX_KEEP; /* a lookup or a sweep drops it */
    struct store_dump_item it = {.key = key,
                                 .klen = klen,
                                 .cas = e->cas,
                                 .exptime = e->exptime,
                                 .size = (uint32_t)rec_size(klen, e->vlen),
                                 .fetched = e->fetched};
    d->fn(d->arg, &it);
    return INDEX_KEEP;
}

unsigned
store_dump_parts(store_t *s)
{
    return index_shards(s->ix);
}

void
store_dump_part(store_t *s, unsigned part,
                void (*fn)(void *arg, const struct store_dump_item *it),
                void *arg)
{
    flush_tick(s);
    struct dump d = {.s = s,
                     .now = store_now(s),
                     .flushed_below = atomic_load(&s->flush_before_off),
                     .fn = fn,
                     .arg = arg};
    index_scan(s->ix, part, dump_visit, &d);
}
