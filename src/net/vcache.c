/*
 * vcache: a worker's cache of recently read values (vcache.h says what it
 * holds, why it needs no invalidation and how it evicts).
 *
 * The table is open addressing with linear probing on the key's hash (the
 * index's), at most 3/4 full (it doubles); a removal shifts the entries of
 * its run back instead of leaving tombstones, so a probe stops at the
 * first empty slot. The queue is a ring of the entries in insertion order,
 * the cache's own reference to each; it doubles when full.
 */
#include "net/vcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define VC_MIN_CAP 1024u
#define VC_ENTRY_OVERHEAD 16u /* malloc's header, roughly */
#define VC_SEEN_WINDOW 2u
#define VC_SEEN_MIN 4096u
#define VC_SEEN_BYTES_PER_BIT 16u /* bits: one per 16 bytes of budget */
#define VC_SEEN_MIN_BITS (1u << 18)

static size_t
entry_bytes(const struct vc_entry *e)
{
    return sizeof(*e) + e->klen + e->vlen + VC_ENTRY_OVERHEAD;
}

static uint32_t
home(const struct vcache *vc, uint64_t hash)
{
    return (uint32_t)(hash >> 32) & (vc->vc_cap - 1);
}

int
vcache_init(struct vcache *vc, size_t budget)
{
    *vc = (struct vcache){.vc_budget = budget};
    if (budget == 0)
        return 0;
    uint64_t bits = VC_SEEN_MIN_BITS;
    while (bits < budget / VC_SEEN_BYTES_PER_BIT && bits < (1u << 31))
        bits *= 2;
    vc->vc_seen_bits = (uint32_t)bits;
    vc->vc_seen = calloc(bits / 64, sizeof(uint64_t));
    vc->vc_slots = calloc(VC_MIN_CAP, sizeof(*vc->vc_slots));
    vc->vc_queue = calloc(VC_MIN_CAP, sizeof(*vc->vc_queue));
    if (!vc->vc_slots || !vc->vc_queue || !vc->vc_seen) {
        free(vc->vc_slots);
        free(vc->vc_queue);
        free(vc->vc_seen);
        *vc = (struct vcache){0};
        return -ENOMEM;
    }
    vc->vc_cap = VC_MIN_CAP;
    vc->vc_qcap = VC_MIN_CAP;
    return 0;
}

void
vcache_unref(struct vc_entry *e)
{
    if (--e->refs == 0)
        free(e);
}

void
vcache_clear(struct vcache *vc)
{
    for (uint32_t i = 0; i < vc->vc_queued; i++) {
        struct vc_entry *e =
            vc->vc_queue[(vc->vc_head + i) & (vc->vc_qcap - 1)];
        e->in_table = false;
        vcache_unref(e);
    }
    if (vc->vc_cap)
        memset(vc->vc_slots, 0, vc->vc_cap * sizeof(*vc->vc_slots));
    vc->vc_count = 0;
    vc->vc_head = vc->vc_queued = 0;
    vc->vc_bytes = 0;
}

void
vcache_free(struct vcache *vc)
{
    vcache_clear(vc);
    free(vc->vc_slots);
    free(vc->vc_queue);
    free(vc->vc_seen);
    *vc = (struct vcache){0};
}

/* The slot holding hash, or the empty slot that ends its run. */
static uint32_t
probe(const struct vcache *vc, uint64_t hash)
{
    uint32_t i = home(vc, hash);
    while (vc->vc_slots[i].e && vc->vc_slots[i].hash != hash)
        i = (i + 1) & (vc->vc_cap - 1);
    return i;
}

void
vcache_prefetch(const struct vcache *vc, uint64_t hash, int stage)
{
    if (!vc->vc_cap)
        return;
    const struct vc_slot *sl = &vc->vc_slots[home(vc, hash)];
    if (stage == 0)
        __builtin_prefetch(sl);
    else if (sl->e && sl->hash == hash) {
        /* its header, key and a small value's first bytes */
        __builtin_prefetch(sl->e);
        __builtin_prefetch((const char *)sl->e + 64);
        __builtin_prefetch((const char *)sl->e + 128);
    }
}

bool
vcache_seen(struct vcache *vc, uint64_t hash)
{
    if (!vc->vc_seen)
        return false;
    /* bits 8.. of the hash: the table's home uses the top 32 */
    uint32_t b = (uint32_t)(hash >> 8) & (vc->vc_seen_bits - 1);
    uint64_t m = 1ull << (b & 63), *w = &vc->vc_seen[b >> 6];
    if (*w & m)
        return true;
    *w |= m;
    uint32_t window = VC_SEEN_WINDOW * vc->vc_count;
    if (++vc->vc_seen_marked >= (window > VC_SEEN_MIN ? window : VC_SEEN_MIN) ||
        vc->vc_seen_marked >= vc->vc_seen_bits / 8) {
        memset(vc->vc_seen, 0, vc->vc_seen_bits / 8);
        vc->vc_seen_marked = 0;
    }
    return false;
}

struct vc_entry *
vcache_find(struct vcache *vc, uint64_t hash, uint64_t off, uint64_t cas,
            const void *key, size_t klen)
{
    if (vc->vc_cap == 0)
        return NULL;
    struct vc_entry *e = vc->vc_slots[probe(vc, hash)].e;
    if (!e || e->off != off || e->cas != cas || e->klen != klen ||
        memcmp(e->data, key, klen) != 0)
        return NULL;
    e->used = true;
    return e;
}

/* Take slot i's entry out of the table, closing the gap in its run; it
 * stays queued. */
static void
remove_at(struct vcache *vc, uint32_t i)
{
    vc->vc_slots[i].e->in_table = false;
    uint32_t mask = vc->vc_cap - 1;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!vc->vc_slots[j].e)
            break;
        /* slot j may move back to the gap at i if its home is not in
         * (i, j] */
        uint32_t h = home(vc, vc->vc_slots[j].hash);
        if (((j - h) & mask) >= ((j - i) & mask)) {
            vc->vc_slots[i] = vc->vc_slots[j];
            i = j;
        }
    }
    vc->vc_slots[i] = (struct vc_slot){0};
    vc->vc_count--;
}

/* How far ahead of the queue's head dequeue starts loading the entries
 * (a scan evicts one per insert, each a cache miss on the entry and one on
 * its slot): the entry EVICT_AHEAD places ahead, and the slot of the one
 * half as far, whose entry was loaded by then. */
#define EVICT_AHEAD 8u

static struct vc_entry *
dequeue(struct vcache *vc)
{
    uint32_t mask = vc->vc_qcap - 1;
    struct vc_entry *e = vc->vc_queue[vc->vc_head];
    vc->vc_head = (vc->vc_head + 1) & mask;
    vc->vc_queued--;
    if (vc->vc_queued > EVICT_AHEAD) {
        __builtin_prefetch(vc->vc_queue[(vc->vc_head + EVICT_AHEAD) & mask]);
        const struct vc_entry *n =
            vc->vc_queue[(vc->vc_head + EVICT_AHEAD / 2) & mask];
        __builtin_prefetch(&vc->vc_slots[home(vc, n->hash)]);
    }
    return e;
}

/* Queue e at the tail (the ring doubles when full); false: no memory. */
static bool
enqueue(struct vcache *vc, struct vc_entry *e)
{
    if (vc->vc_queued == vc->vc_qcap) {
        uint32_t cap = vc->vc_qcap * 2;
        struct vc_entry **q = malloc(cap * sizeof(*q));
        if (!q)
            return false;
        for (uint32_t i = 0; i < vc->vc_queued; i++)
            q[i] = vc->vc_queue[(vc->vc_head + i) & (vc->vc_qcap - 1)];
        free(vc->vc_queue);
        vc->vc_queue = q;
        vc->vc_qcap = cap;
        vc->vc_head = 0;
    }
    vc->vc_queue[(vc->vc_head + vc->vc_queued) & (vc->vc_qcap - 1)] = e;
    vc->vc_queued++;
    return true;
}

/* Let the oldest entry go (an entry read since it was queued goes to the
 * tail instead, once); returns 1 if it was still findable. */
static unsigned
evict_one(struct vcache *vc)
{
    for (;;) {
        struct vc_entry *e = dequeue(vc);
        if (e->in_table && e->used) {
            e->used = false;
            enqueue(vc, e); /* room: it was just dequeued */
            continue;
        }
        unsigned was = e->in_table;
        if (was)
            remove_at(vc, probe(vc, e->hash));
        vc->vc_bytes -= entry_bytes(e);
        vcache_unref(e);
        return was;
    }
}

static void
grow(struct vcache *vc)
{
    uint32_t cap = vc->vc_cap * 2;
    struct vc_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return; /* stay fuller; inserts evict instead */
    struct vc_slot *old = vc->vc_slots;
    uint32_t oldcap = vc->vc_cap;
    vc->vc_slots = slots;
    vc->vc_cap = cap;
    for (uint32_t i = 0; i < oldcap; i++)
        if (old[i].e)
            slots[probe(vc, old[i].hash)] = old[i];
    free(old);
}

unsigned
vcache_insert(struct vcache *vc, uint64_t hash, uint64_t off, uint64_t cas,
              uint64_t time_ms, uint32_t flags, const void *key, size_t klen,
              const void *val, size_t vlen)
{
    size_t need = sizeof(struct vc_entry) + klen + vlen + VC_ENTRY_OVERHEAD;
    if (vc->vc_cap == 0 || need > vc->vc_budget / 8)
        return 0;
    uint32_t i = probe(vc, hash);
    if (vc->vc_slots[i].e) {
        struct vc_entry *old = vc->vc_slots[i].e;
        if (old->off == off && old->cas == cas)
            return 0;
        remove_at(vc, i); /* the key's older record (or a 64-bit clash) */
    }
    unsigned evicted = 0;
    while (vc->vc_queued && vc->vc_bytes + need > vc->vc_budget)
        evicted += evict_one(vc);
    if ((vc->vc_count + 1) * 4 > vc->vc_cap * 3)
        grow(vc);
    while (vc->vc_queued && (vc->vc_count + 1) * 4 > vc->vc_cap * 3)
        evicted += evict_one(vc);
    struct vc_entry *e = malloc(sizeof(*e) + klen + vlen);
    if (!e)
        return evicted;
    *e = (struct vc_entry){.hash = hash,
                           .off = off,
                           .cas = cas,
                           .time_ms = time_ms,
                           .flags = flags,
                           .vlen = (uint32_t)vlen,
                           .refs = 1,
                           .klen = (uint16_t)klen,
                           .in_table = true};
    memcpy(e->data, key, klen);
    memcpy(e->data + klen, val, vlen);
    if (!enqueue(vc, e)) {
        free(e);
        return evicted;
    }
    vc->vc_slots[probe(vc, hash)] = (struct vc_slot){.hash = hash, .e = e};
    vc->vc_count++;
    vc->vc_bytes += need;
    return evicted;
}
