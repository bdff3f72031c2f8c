/*
 * vcache: a worker's cache of recently read values, so that a get of a hot
 * key is an index probe and a copy, not a read of the log.
 *
 * An entry is what a verified record held (flags, the time it was written,
 * the key and the value), filed under the key's hash and found only by the
 * record's log offset and cas, which the index gives: a record at a log
 * offset never changes, and a key's newer record is always at a new
 * offset, so an entry can only go out of date by no longer being what the
 * index points at, and then nothing finds it again (a read of the newer
 * record replaces it; otherwise the CLOCK hand ages it out). The key is
 * compared too. A replica's log that is reloaded (cut, or copied anew) can
 * put another record at an old offset: the server clears the cache then
 * (store_log_generation).
 *
 * What goes in (out.c, read_done): a value read from the log whose key
 * was read before since its record was written (the index's fetched bit)
 * and lately (vcache_seen), so that scans and random reads of far more keys
 * than fit do not churn it.
 *
 * Each worker owns its cache (no locks, plain counters); the budget of
 * --value-cache is split between the workers. Entries are counted from
 * their value bytes plus a fixed overhead; when an insert passes the budget,
 * the oldest go, with a second chance for those read since they were last
 * looked at (CLOCK over a queue in insertion order: an entry read since is
 * requeued with its "used" bit cleared). Eviction follows the queue, not
 * the table, whose linear probing would otherwise collect the survivors
 * of one sweep into ever longer runs. An entry replaced by its key's
 * newer record leaves the table at once and the queue (and the budget)
 * when the queue reaches it. A reply that sends a large value straight
 * from an entry holds a reference, so an evicted entry lives until that
 * reply is sent.
 */
#ifndef MCDB_NET_VCACHE_H
#define MCDB_NET_VCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vc_entry {
    uint64_t hash; /* the key's (store_hash) */
    uint64_t off;  /* log offset of the record */
    uint64_t cas;
    uint64_t time_ms;
    uint32_t flags;
    uint32_t vlen;
    uint32_t refs; /* 1 while queued, +1 per reply sending from it */
    uint16_t klen;
    bool used;     /* read since it was queued (or requeued) */
    bool in_table; /* findable (not replaced, evicted or cleared) */
    char data[];   /* key, then value */
};

static inline const char *
vc_value(const struct vc_entry *e)
{
    return e->data + e->klen;
}

/* A slot keeps the hash beside the pointer: a probe reads one line. */
struct vc_slot {
    uint64_t hash;
    struct vc_entry *e; /* NULL: empty */
};

struct vcache {
    struct vc_slot *vc_slots;   /* open addressing, linear probing */
    uint32_t vc_cap;            /* a power of two, or 0: no cache */
    uint32_t vc_count;          /* entries in the table */
    struct vc_entry **vc_queue; /* every entry held, oldest at vc_head */
    uint32_t vc_qcap;           /* a power of two */
    uint32_t vc_head, vc_queued;
    size_t vc_bytes; /* counted bytes of the queued entries */
    size_t vc_budget;
    /* Admission (vcache_seen): one bit per key hash, cleared every
     * VC_SEEN_WINDOW cache-fulls of keys marked */
    uint64_t *vc_seen;
    uint32_t vc_seen_bits; /* a power of two */
    uint32_t vc_seen_marked;
};

/* A cache of budget bytes (0: none; every call then misses or does
 * nothing). Returns 0 or -ENOMEM. */
int vcache_init(struct vcache *vc, size_t budget);
void vcache_free(struct vcache *vc);
/* Drop every entry (replies holding one keep it until they are sent). */
void vcache_clear(struct vcache *vc);

/* Start loading what a find of hash will read, in stages (a batch of
 * gets runs each stage over every key before the next, then finds them):
 * 0 the key's home slot; 1 the entry that slot holds if it is the key's
 * (the slot is read: stage 0 must have had time to load it). */
void vcache_prefetch(const struct vcache *vc, uint64_t hash, int stage);

/* The entry for the key (hash: store_hash) whose record is at off with
 * this cas, marked used; NULL if there is none. The pointer is good until
 * the next insert (hold a reference with vcache_ref to keep it longer). */
struct vc_entry *vcache_find(struct vcache *vc, uint64_t hash, uint64_t off,
                             uint64_t cas, const void *key, size_t klen);

/* Whether a key (hash: store_hash) read from the log was read before
 * lately: among the keys of the last VC_SEEN_WINDOW times as many reads as
 * the cache holds entries (at least VC_SEEN_MIN). The first call for a key
 * marks it and says no. The worker copies a value in only on yes, so a
 * key must be read twice within about a cache-full of other reads: a scan
 * or uniform random reads of far more keys than fit churn nothing, a hot
 * key gets in on its second read. */
bool vcache_seen(struct vcache *vc, uint64_t hash);

/* Copy a verified record's item in, in place of the key's older one
 * (unless it is already there or larger than an eighth of the budget),
 * evicting as needed; returns how many entries it evicted. */
unsigned vcache_insert(struct vcache *vc, uint64_t hash, uint64_t off,
                       uint64_t cas, uint64_t time_ms, uint32_t flags,
                       const void *key, size_t klen, const void *val,
                       size_t vlen);

static inline void
vcache_ref(struct vc_entry *e)
{
    e->refs++;
}
void vcache_unref(struct vc_entry *e);

#endif
