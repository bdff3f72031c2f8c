/*
 * apply: what one record of the log does to an index. The one place where
 * the replay rules live; recovery (recover.c), mcdb-fsck (check.c) and a
 * replica applying its primary's stream (store_append_raw) all call it.
 *
 * The rules (record.c describes the format):
 *   1. Records are applied in log order; for every key a later record wins.
 *   2. PUT points the key at this record. Expiry is not judged here: a
 *      later TOUCH may extend the item; the caller sweeps expired items
 *      when it is done (recovery, if apply_may_expire: the earliest
 *      exptime applied has passed) or they are dropped when looked up (a
 *      live store). A PUT flagged REC_F_STALE is a stale item (ms I).
 *   3. DELETE removes the key; TOUCH sets its exptime, its cas and its
 *      stale flag (md I) if it is there.
 *   4. FLUSH with no time, or a time not after its own write time, empties
 *      every item whose record lies before it in the log, at once; a later
 *      time is remembered as pending (the store appends an immediate FLUSH
 *      when it comes). The log offset, not the cas, decides: clients may
 *      choose cas values (meta's E), offsets only grow. (Compaction copies
 *      an item only under flush_mu, so a copy placed after a FLUSH is of an
 *      item that was not flushed.)
 *   5. Every cas the store generated, and every segment header's cas
 *      floor (checked by the callers), raises the next cas above it. So
 *      does a cas a client chose (meta E, or one kept: REC_F_CAS_CLIENT)
 *      when it is at most STORE_CAS_AHEAD_US past the record's write time
 *      (apply_cas_counts; store.h says why): a later write then gets a
 *      larger cas than any row version stored with E, while a version far
 *      in the future (or near 2^64) cannot drag the clock along. The
 *      writer applies the same test when it appends, from the same fields
 *      of the record, so a restart, a replica and mcdb-fsck agree with the
 *      store that wrote it.
 *   6. DROP names a segment that compaction removed after copying its live
 *      records (which come before the DROP in the log): the segment may be
 *      deleted once the DROP is durable.
 *   7. Segment headers and footers, and skippable types, change nothing.
 *
 * With several threads each applies only the keys of its partition (part of
 * nparts); FLUSH and the offsets are seen by all. In live mode (a replica)
 * the store's own state moves with each record: the next cas, the flush
 * point, and the DROP that its background thread acts on once durable.
 *
 * Batches (recovery): apply_batch_add() queues records and
 * apply_batch_run() applies them, still one at a time and in order,
 * through the same apply_one() as apply_record(). What a batch changes is
 * only when the memory is read: it first hashes every keyed record of the
 * batch and prefetches its index shard, then the first slot of its table,
 * then for a PUT the end of the shard's arena (where a new entry goes), so
 * that the cache misses of 16 records overlap instead of following one
 * another (each apply used to hash, then wait for the shard, then for the
 * slot). A record's hash does not depend on what the records before it did,
 * so computing it early changes nothing; a prefetch only loads memory.
 */
#include "log/log_int.h"
#include "util/panic.h"

#include <stdlib.h>

bool
apply_cas_counts(const struct rec *r)
{
    if (!(r->rflags & REC_F_CAS_CLIENT))
        return true;
    /* r->time_ms * 1000 + STORE_CAS_AHEAD_US cannot overflow: time_ms is
     * a wall clock, far below 2^64 / 1000. */
    return r->cas <= r->time_ms * 1000 + STORE_CAS_AHEAD_US;
}

static void
ap_put(struct apply *a, uint64_t h, const struct rec *r,
       const struct index_entry *e)
{
    if (a->s) {
        store_index_put_acct(a->s, a->acct, h, r->key, r->klen, e);
    } else if (index_put(a->ix, h, r->key, r->klen, e, NULL) < 0) {
        /* a bare index out of memory: its figures would lie */
        MCDB_PANIC("out of memory for the index of key '%.*s'", (int)r->klen,
                   (const char *)r->key);
    }
}

static void
ap_remove(struct apply *a, uint64_t h, const struct rec *r)
{
    if (a->s)
        store_index_remove_acct(a->s, a->acct, h, r->key, r->klen);
    else
        index_remove(a->ix, h, r->key, r->klen, NULL);
}

struct sweep {
    struct apply *a;
    uint32_t now;
    uint64_t before_off;
};

static int
sweep_visit(void *arg, const void *key, size_t klen, struct index_entry *e)
{
    struct sweep *sw = arg;
    struct apply *a = sw->a;
    if (a->nparts > 1 &&
        store_part_of(index_hash(key, klen), a->nparts) != a->part)
        return INDEX_KEEP;
    bool gone = store_expired(e->exptime, sw->now);
    if (!gone && e->off >= sw->before_off)
        return INDEX_KEEP;
    if (a->s)
        store_index_dropped_acct(a->s, a->acct, klen, e, gone);
    return INDEX_DROP;
}

bool
apply_may_expire(const struct apply *a, uint32_t now)
{
    return a->exp_min && store_expired(a->exp_min, now);
}

void
apply_sweep(struct apply *a, uint64_t before_off, uint32_t now)
{
    struct sweep sw = {.a = a, .now = now, .before_off = before_off};
    for (unsigned i = 0; i < index_shards(a->ix); i++)
        index_scan(a->ix, i, sweep_visit, &sw);
}

static void
apply_flush(struct apply *a, const struct rec *r, uint64_t off)
{
    if (r->exptime && (uint64_t)r->exptime * 1000 > r->time_ms) {
        a->flush_deadline = r->exptime;
        if (a->live)
            atomic_store(&a->s->flush_deadline, r->exptime);
        return;
    }
    a->flush_before = off;
    a->flush_deadline = 0;
    if (a->live) {
        atomic_store(&a->s->flush_before_off, off);
        atomic_store(&a->s->flush_deadline, 0);
    }
    apply_sweep(a, a->flush_before, a->s ? store_now(a->s) : 0);
}

/* Whether r is applied to its key (PUT, DELETE, TOUCH): it needs a hash. */
static inline bool
apply_keyed(const struct rec *r)
{
    return r->type == REC_PUT || r->type == REC_DELETE || r->type == REC_TOUCH;
}

/* Whether the key of hash h belongs to a's partition. */
static inline bool
apply_mine(const struct apply *a, uint64_t h)
{
    return a->nparts <= 1 || store_part_of(h, a->nparts) == a->part;
}

/* h: index_hash of r's key */
static void
apply_key(struct apply *a, const struct rec *r, uint64_t off, uint64_t h)
{
    if (!apply_mine(a, h))
        return;
    struct index_entry e;
    if ((r->type == REC_PUT || r->type == REC_TOUCH) && r->exptime &&
        (a->exp_min == 0 || r->exptime < a->exp_min))
        a->exp_min = r->exptime;
    index_lock(a->ix, h);
    switch (r->type) {
    case REC_PUT:
        e = (struct index_entry){.off = off,
                                 .vlen = r->vlen,
                                 .exptime = r->exptime,
                                 .cas = r->cas,
                                 .stale = (r->rflags & REC_F_STALE) != 0,
                                 .stub = (r->rflags & REC_F_STUB) != 0};
        ap_put(a, h, r, &e);
        break;
    case REC_DELETE:
        ap_remove(a, h, r);
        break;
    case REC_TOUCH:
        if (index_find(a->ix, h, r->key, r->klen, &e)) {
            e.exptime = r->exptime;
            e.cas = r->cas;
            e.stale = (r->rflags & REC_F_STALE) != 0;
            e.stub = (r->rflags & REC_F_STUB) != 0;
            index_put(a->ix, h, r->key, r->klen, &e, NULL);
        }
        break;
    }
    index_unlock(a->ix, h);
}

/* The rules, for one record; h is its key's index_hash if apply_keyed(r). */
static void
apply_one(struct apply *a, const struct rec *r, uint64_t off, uint64_t h)
{
    if (off > a->last_off)
        a->last_off = off;
    switch (r->type) {
    case REC_SEG_HEADER:
    case REC_SEG_FOOTER:
        return;
    case REC_DROP: {
        struct rec_drop d;
        if (rec_drop_decode(r, &d) == 0 && d.end > a->dropped_end) {
            a->dropped_end = d.end;
            a->drop_off = off;
            if (a->live)
                store_drop_later(a->s, d.end, off + rec_size(r->klen, r->vlen));
        }
        return;
    }
    case REC_PUT:
        if (rec_size(r->klen, r->vlen) > a->max_rec)
            a->max_rec = rec_size(r->klen, r->vlen);
        break;
    }
    if (r->type & REC_TYPE_SKIPPABLE)
        return;
    if (r->cas >= a->next_cas && apply_cas_counts(r)) {
        a->next_cas = r->cas + 1;
        if (a->live)
            store_raise_cas(a->s, a->next_cas);
    }
    if (r->type == REC_FLUSH)
        apply_flush(a, r, off);
    else
        apply_key(a, r, off, h);
}

void
apply_record(struct apply *a, const struct rec *r, uint64_t off)
{
    apply_one(a, r, off, apply_keyed(r) ? index_hash(r->key, r->klen) : 0);
}

void
apply_batch_run(struct apply *a, struct apply_batch *b)
{
    uint64_t h[APPLY_BATCH];
    bool pre[APPLY_BATCH];
    for (unsigned i = 0; i < b->ab_n; i++) {
        const struct rec *r = &b->ab_rec[i];
        h[i] = apply_keyed(r) ? index_hash(r->key, r->klen) : 0;
        pre[i] = apply_keyed(r) && apply_mine(a, h[i]);
        if (pre[i])
            index_prefetch(a->ix, h[i], 0);
    }
    for (unsigned i = 0; i < b->ab_n; i++)
        if (pre[i])
            index_prefetch(a->ix, h[i], 1);
    for (unsigned i = 0; i < b->ab_n; i++)
        if (pre[i] && b->ab_rec[i].type == REC_PUT)
            index_prefetch(a->ix, h[i], 2);
    for (unsigned i = 0; i < b->ab_n; i++)
        apply_one(a, &b->ab_rec[i], b->ab_off[i], h[i]);
    b->ab_n = 0;
}

void
apply_batch_add(struct apply *a, struct apply_batch *b, const struct rec *r,
                uint64_t off)
{
    b->ab_rec[b->ab_n] = *r;
    b->ab_off[b->ab_n] = off;
    if (++b->ab_n == APPLY_BATCH)
        apply_batch_run(a, b);
}

void
apply_merge(struct apply *into, const struct apply *from)
{
#define MAX_INTO(f) into->f = from->f > into->f ? from->f : into->f
    MAX_INTO(dropped_end);
    MAX_INTO(drop_off);
    MAX_INTO(next_cas);
    MAX_INTO(flush_before);
    MAX_INTO(max_rec);
    MAX_INTO(last_off);
#undef MAX_INTO
    if (from->exp_min && (!into->exp_min || from->exp_min < into->exp_min))
        into->exp_min = from->exp_min;
    /* every thread saw the same FLUSH records */
    into->flush_deadline = from->flush_deadline;
}
