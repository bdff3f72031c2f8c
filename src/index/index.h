/*
 * index: the keydir. Maps a key to where the newest record of that key lies in
 * the log, with what the server needs to answer add/replace/cas/touch/delete
 * and expiry without reading the disk, and to read a value with one read of a
 * known length.
 *
 * The index is sharded by hash; each shard has its own lock and its own table,
 * so worker threads, the compactor and the replica applier share it, and a
 * resize only ever stalls one shard (a small fraction of the keys).
 *
 * Locking: every call that takes a hash requires the caller to hold that
 * hash's shard lock (index_lock/index_unlock). This lets the store keep a key
 * locked across "look up, decide, append to the log, update the index", which
 * is what makes log order equal index order for every key.
 *
 * Nothing here knows about the log format, sockets or the protocol.
 */
#ifndef MCDB_INDEX_H
#define MCDB_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the index keeps per key (besides the key itself). */
struct index_entry {
    uint64_t off : 63;    /* log offset of the record's first byte */
    uint64_t stub : 1;    /* vivified by meta N, not filled yet; on disk */
    uint32_t vlen : 30;   /* value length in bytes (under 1 GiB) */
    uint32_t stale : 1;   /* invalidated (meta I); on disk too */
    uint32_t fetched : 1; /* read since it was stored (meta h); RAM only:
                             a restart forgets it */
    uint32_t exptime;     /* absolute unix seconds, 0 = never */
    uint64_t cas;         /* the item's cas unique */
};

typedef struct index index_t;

/* Status codes: 0 or negative, never colliding with -errno. */
#define INDEX_ENOMEM (-2001)

/* Create an index with 2^shard_bits shards (0 picks the default, 10). A
 * key's shard is picked by the top shard_bits bits of its hash. */
index_t *index_new(unsigned shard_bits);
void index_free(index_t *ix);

/* The hash of a key: use it for index_lock and every keyed call. */
uint64_t index_hash(const void *key, size_t klen);

/* Start loading what a lookup of hash touches: stage 0 the shard (its
 * lock and table pointer), stage 1 the key's first slot, stage 2 (for an
 * insert) the end of the shard's arena, where a new entry goes, stage 3
 * the key's entry (it reads the slots, under the shard's lock if free,
 * else not at all); stages 0 to 2 lock nothing. For a batch of keys, stage
 * 0 every one, then stage 1 every one (then 2 or 3), then look them up:
 * the cache misses overlap instead of following each other. */
void index_prefetch(index_t *ix, uint64_t hash, int stage);

void index_lock(index_t *ix, uint64_t hash);
void index_unlock(index_t *ix, uint64_t hash);

/* Find key; on success copy its entry to *out (if out) and return true. */
bool index_find(index_t *ix, uint64_t hash, const void *key, size_t klen,
                struct index_entry *out);

/*
 * Insert or overwrite key with *e. Returns 1 if an entry was replaced (its old
 * value copied to *old if old is not NULL), 0 if inserted, INDEX_ENOMEM.
 * klen is 1..255.
 */
int index_put(index_t *ix, uint64_t hash, const void *key, size_t klen,
              const struct index_entry *e, struct index_entry *old);

/* Remove key; returns true (old entry in *old if old) when it was present. */
bool index_remove(index_t *ix, uint64_t hash, const void *key, size_t klen,
                  struct index_entry *old);

/*
 * Visit every entry of one shard while holding that shard's lock (taken and
 * released by index_scan itself). The callback may change *e in place (its
 * key stays the same) and returns INDEX_KEEP or INDEX_DROP (the entry is
 * removed). Used to sweep after flush_all and by compaction and tools.
 */
enum { INDEX_KEEP = 0, INDEX_DROP = 1 };
typedef int (*index_visit_fn)(void *arg, const void *key, size_t klen,
                              struct index_entry *e);
unsigned index_shards(const index_t *ix);
void index_scan(index_t *ix, unsigned shard, index_visit_fn fn, void *arg);

/*
 * Bulk loading (recovery): index_reserve sizes every table for about `keys`
 * keys in all, so that loading them rehashes nothing, and, when key_bytes
 * (their keys' bytes in all) is not 0, picks the arena chunk size of every
 * empty shard for that much, so that loading rewrites no arena into larger
 * chunks; index_trim afterwards shrinks the tables that ended up far larger
 * than their keys. Both take the shard locks themselves. index_reserve
 * returns 0 or INDEX_ENOMEM (the index is unchanged but usable).
 */
int index_reserve(index_t *ix, uint64_t keys, uint64_t key_bytes);
void index_trim(index_t *ix);

/* Figures for stats: number of keys, bytes of memory the index holds. */
uint64_t index_count(index_t *ix);
uint64_t index_bytes(index_t *ix);

#endif
