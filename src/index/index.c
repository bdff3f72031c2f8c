/*
 * index: the keydir, a sharded open-addressing hash table whose entries live
 * in per-shard byte-packed arenas.
 *
 * Layout. The top bits of a key's XXH3 hash pick a shard. A shard is a mutex,
 * a table of 32-bit slots and an arena. The arena holds one packed entry per
 * key, unaligned and read with memcpy:
 *
 *     0  u64 off   8  u32 vlen (30 bits), stale, fetched   12  u32 exptime
 *    16  u64 cas  24  u8 klen   25  key bytes (1..255)
 *
 * that is, struct index_entry byte for byte followed by the key: 25 + klen
 * bytes. A slot is 0 (empty), 1 (deleted, a tombstone) or a ref:
 *
 *     ref = tag << obits | arena offset of the entry
 *
 * where obits (24..32) is the shard's offset width and tag the top 32 - obits
 * (at most 8) bits of hash bits 32..39. Lookups probe linearly from
 * fastrange(low 32 hash bits, capacity), compare the tag and only then the
 * key in the arena, so a miss rarely touches the arena.
 *
 * Why slots hold the tag instead of a SwissTable-style control byte array:
 * a control byte plus a 32-bit ref costs 5 bytes per slot, 6.4 bytes per key
 * at the average load below, which alone breaks the budget of 32 bytes per
 * key beside the key. Folding the tag into the ref costs 4 bytes per slot.
 *
 * The arena is a list of at most 64 chunks of 2^cshift bytes each (512 B to
 * 64 MiB, one size per shard); an offset is chunk << cshift | position, and
 * entries never straddle chunks. The first ARENA_BASE bytes are unused, so
 * no ref is 0 or 1. A new chunk starts at half size and doubles by realloc
 * when full (it may move: refs hold offsets, not addresses), which halves
 * the average slack. Growth never copies more than that half chunk, and since
 * chunk sizes are powers of two, malloc reuses freed chunks well. (Growing
 * one block per shard by realloc in steps small enough for little slack left
 * glibc's heap 35 % fragmented at 1M keys: the index counted 47.5 bytes per
 * key while the resident set grew by 65.5.) An arena with 64 full chunks is
 * rewritten into chunks twice as large (or four times). obits is
 * always at least cshift + 6: an arena outgrowing 2^obits widens its offsets
 * by a bit and shortens every tag of its shard by one (retag), so an arena
 * can reach 4 GiB with tags that only get weaker.
 *
 * Memory arithmetic, per key, beside the key's own bytes:
 *   - entry: 25 bytes (24 of fields, 1 of length);
 *   - table: 4 bytes / load. A table is rehashed at load 7/8 (tombstones
 *     included) into the next capacity of a geometric series of ratio 5/4,
 *     so its load lies in [0.7, 0.875). Each shard scales the series by its
 *     own factor in [1, 5/4) so that shards grow at different times and the
 *     load averaged over shards is that of a uniform phase,
 *     0.875 * (1 - 4/5) / ln(5/4) = 0.784, i.e. 5.1 bytes;
 *   - arena: a shard has 16 to 64 chunks (fewer only when small); the
 *     unused part of the last chunk averages a quarter chunk, the tail of
 *     each chunk that did not fit the next entry about entry / (2 * chunk),
 *     chunk pointers 8 bytes a chunk: measured, 1.3 bytes for a 16-byte key
 *     at 1M keys (2 KiB chunks), 0.4 at 10M (8 KiB chunks);
 *   - shard structs: 112 bytes per shard, 0.1 byte per key at 1M keys.
 * Total, measured with 16-byte keys: 31.7 bytes per key beside the key at
 * 1M keys, 30.5 at 10M (Bitcask: 44.5). The resident set grows by 38.8 and
 * 34.3: the rest is freed memory that glibc keeps for reuse.
 * index_bytes counts each chunk as 2^cshift bytes: the request is 8 bytes
 * less, so that with glibc's 8-byte header the chunk fills a whole size
 * class and the count is what the resident set really holds.
 *
 * Deletes leave holes in the arena (unless the entry was the last one). When
 * holes exceed a quarter of the arena the live entries are rewritten
 * contiguously into right-sized chunks and the refs are fixed; tables shrink
 * when they fall under a quarter full; an emptied shard frees everything. An
 * overwrite of a key rewrites its entry in place.
 *
 * No long stall: a resize or compaction rehashes or copies one shard only,
 * 1/1024 of the keys with the default shard count, while every other shard
 * stays available. At 10M keys a shard holds 10,000: its rehash takes about
 * 150 microseconds, a compaction 300 to 500. An index meant for far more
 * keys should ask for more shards.
 *
 * Locking: the caller of every keyed call holds index_lock(hash). Debug
 * builds record the owner of each shard lock and assert it. The counters read
 * by index_count and index_bytes are written under the lock with relaxed
 * atomic stores, so stats never take a shard lock.
 */
#include "index/index.h"

#include <assert.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define INDEX_DEFAULT_SHARD_BITS 10
#define INDEX_MAX_SHARD_BITS 20 /* shard bits stay clear of tag bits */

#define SLOT_EMPTY 0u
#define SLOT_TOMB 1u

#define ENTRY_FIXED 24u             /* struct index_entry, packed */
#define ENTRY_HDR (ENTRY_FIXED + 1) /* plus the key length byte */
#define ARENA_BASE 2u               /* keeps refs clear of 0 and 1 */

#define OBITS_MIN 24u /* offsets start at 24 bits, leaving an 8-bit tag */

/* Tables: max load 7/8, capacities 16 * (5/4)^k * per-shard factor. */
#define TABLE_LOAD_NUM 7u
#define TABLE_LOAD_DEN 8u
#define TABLE_MIN 16u
#define TABLE_GROW_SHIFT 2u
#define TABLE_MAX (1u << 31)

/* Arenas: up to 64 chunks of 512 B to 64 MiB, so offsets up to 32 bits. */
#define CHUNKS_BITS 6u
#define CHUNKS_MAX (1u << CHUNKS_BITS)
#define CHUNK_MIN_SHIFT 9u
#define CHUNK_MAX_SHIFT 26u
#define CHUNK_HDR 8u /* glibc's chunk header: requests leave room */
#define ENTRY_MAX (ENTRY_HDR + 255)
#define ARENA_TIDY_MIN 1024u /* smaller arenas are not compacted on delete */

_Static_assert(sizeof(struct index_entry) == ENTRY_FIXED,
               "struct index_entry must have no padding");
_Static_assert(offsetof(struct index_entry, exptime) == 12 &&
                   offsetof(struct index_entry, cas) == 16,
               "struct index_entry layout is the arena's entry layout");

struct index_shard {
    pthread_mutex_t sh_lock;
    uint32_t *sh_slots;  /* sh_cap slots: empty, tombstone or ref */
    uint8_t **sh_chunks; /* sh_nchunks chunks of 2^sh_cshift bytes */
    uint32_t sh_cap;
    uint32_t sh_count; /* live keys (relaxed atomic stores) */
    uint32_t sh_tombs;
    uint32_t sh_nchunks;
    uint32_t sh_used;  /* arena offset of the next entry, in the last chunk */
    uint32_t sh_live;  /* bytes of live entries */
    uint32_t sh_holes; /* bytes of removed entries below sh_used */
    uint64_t sh_bytes; /* table and arena bytes (relaxed atomic stores) */
    uint8_t sh_obits;
    uint8_t sh_cshift;
    uint8_t sh_half;    /* the last chunk has only 2^(cshift-1) bytes */
    uint8_t sh_jit;     /* growth phase: scales capacities by 1 + jit/256/2^k */
    uint8_t sh_reserve; /* empty: the chunk shift index_reserve chose, or 0 */
    /* the arena's end after the last insert, for index_prefetch alone: it
     * may be stale (the chunk moved or freed since) */
    uint8_t *sh_tail;
#ifndef NDEBUG
    pthread_t sh_owner;
#endif
};

struct index {
    unsigned ix_bits;
    unsigned ix_nshards;
    struct index_shard ix_shards[];
};

/* ---- hashing and refs ---- */

uint64_t
index_hash(const void *key, size_t klen)
{
    return XXH3_64bits(key, klen);
}

static inline struct index_shard *
index_shard_of(index_t *ix, uint64_t hash)
{
    /* Two shifts: a shift by 64 (one shard) would be undefined. */
    return &ix->ix_shards[(hash >> 1) >> (63 - ix->ix_bits)];
}

static inline uint32_t
shard_home(const struct index_shard *sh, uint64_t hash)
{
    return (uint32_t)(((uint64_t)(uint32_t)hash * sh->sh_cap) >> 32);
}

static inline uint32_t
shard_tag(const struct index_shard *sh, uint64_t hash)
{
    return (uint8_t)(hash >> 32) >> (sh->sh_obits - OBITS_MIN);
}

static inline uint32_t
shard_ref(const struct index_shard *sh, uint32_t tag, uint32_t off)
{
    return (uint32_t)((uint64_t)tag << sh->sh_obits | off);
}

static inline uint32_t
shard_ref_tag(const struct index_shard *sh, uint32_t ref)
{
    return (uint32_t)((uint64_t)ref >> sh->sh_obits);
}

static inline uint32_t
shard_ref_off(const struct index_shard *sh, uint32_t ref)
{
    return (uint32_t)(ref & ((1ull << sh->sh_obits) - 1));
}

static inline uint8_t *
shard_at(const struct index_shard *sh, uint32_t off)
{
    return sh->sh_chunks[off >> sh->sh_cshift] +
           (off & ((1u << sh->sh_cshift) - 1));
}

static inline uint8_t *
shard_entry(const struct index_shard *sh, uint32_t ref)
{
    return shard_at(sh, shard_ref_off(sh, ref));
}

void
index_prefetch(index_t *ix, uint64_t hash, int stage)
{
    struct index_shard *sh = index_shard_of(ix, hash);
    if (stage == 0) {
        __builtin_prefetch(sh, 1);
        return;
    }
    if (stage == 2) {
        /* where the next new entry goes, as of the last insert: a stale
         * address, even a freed one, is harmless (a prefetch never faults) */
        uint8_t *tail = __atomic_load_n(&sh->sh_tail, __ATOMIC_RELAXED);
        if (tail)
            __builtin_prefetch(tail, 1);
        return;
    }
    if (stage == 3) {
        /* The first entry on the key's path with its tag: that reads the
         * slots, so only with the lock (a resize frees the table), and
         * only if nobody holds it. */
        if (pthread_mutex_trylock(&sh->sh_lock) != 0)
            return;
        uint32_t tag = shard_tag(sh, hash);
        uint32_t i = shard_home(sh, hash);
        for (unsigned n = 0; sh->sh_cap && n < 4; n++) {
            uint32_t ref = sh->sh_slots[i];
            if (ref == SLOT_EMPTY)
                break;
            if (ref != SLOT_TOMB && shard_ref_tag(sh, ref) == tag) {
                __builtin_prefetch(shard_entry(sh, ref));
                break;
            }
            i = i + 1 == sh->sh_cap ? 0 : i + 1;
        }
        pthread_mutex_unlock(&sh->sh_lock);
        return;
    }
    /* unlocked: a table being resized may be read stale, which only makes
     * the hint useless (a prefetch never faults) */
    uint32_t *slots = __atomic_load_n(&sh->sh_slots, __ATOMIC_RELAXED);
    uint32_t cap = __atomic_load_n(&sh->sh_cap, __ATOMIC_RELAXED);
    if (slots && cap)
        __builtin_prefetch(&slots[((uint64_t)(uint32_t)hash * cap) >> 32]);
}

static inline uint32_t
entry_size(const uint8_t *p)
{
    return ENTRY_HDR + p[ENTRY_FIXED];
}

static inline uint64_t
entry_hash(const uint8_t *p)
{
    return index_hash(p + ENTRY_HDR, p[ENTRY_FIXED]);
}

static inline uint32_t
slot_next(const struct index_shard *sh, uint32_t i)
{
    return i + 1 == sh->sh_cap ? 0 : i + 1;
}

/* ---- sizes ---- */

/*
 * The smallest size at least need in the series base * (1 + 2^-shift)^k,
 * scaled by the shard's factor 1 + jit / 256 * 2^-shift; 0 if above max.
 */
static uint64_t
geo_fit(uint64_t base, unsigned shift, unsigned jit, uint64_t need,
        uint64_t max)
{
    uint64_t x = base << 16; /* 16 fractional bits */
    for (;;) {
        uint64_t size = (x + ((x >> shift) * jit >> 8)) >> 16;
        if (size >= need)
            return size <= max ? size : 0;
        x += x >> shift;
    }
}

static inline uint32_t
table_max_load(uint32_t cap)
{
    return (uint32_t)((uint64_t)cap * TABLE_LOAD_NUM / TABLE_LOAD_DEN);
}

/* The capacity of the smallest table with room for n keys, 0 if none. */
static uint32_t
table_fit(const struct index_shard *sh, uint64_t n)
{
    uint64_t need = (n * TABLE_LOAD_DEN + TABLE_LOAD_NUM - 1) / TABLE_LOAD_NUM;
    if (need < TABLE_MIN)
        need = TABLE_MIN;
    if (need * TABLE_LOAD_NUM / TABLE_LOAD_DEN < n)
        need++;
    return (uint32_t)geo_fit(TABLE_MIN, TABLE_GROW_SHIFT, sh->sh_jit, need,
                             TABLE_MAX);
}

static inline uint32_t
chunk_use(unsigned cshift)
{
    return (1u << cshift) - CHUNK_HDR;
}

/*
 * The chunk size for an arena of live bytes: they fill at most half of the
 * chunks (each may lose a tail shorter than an entry), so the arena can
 * double before it is rewritten. 0 if even 64 MiB chunks are too small.
 */
static unsigned
arena_chunk_shift(uint64_t live)
{
    for (unsigned c = CHUNK_MIN_SHIFT; c <= CHUNK_MAX_SHIFT; c++)
        if (live <= (uint64_t)(CHUNKS_MAX / 2) * (chunk_use(c) - ENTRY_MAX + 1))
            return c;
    return 0;
}

/* Usable bytes of the last chunk, which may be a half chunk. */
static inline uint32_t
arena_last_use(const struct index_shard *sh)
{
    return sh->sh_half ? (1u << (sh->sh_cshift - 1)) - CHUNK_HDR
                       : chunk_use(sh->sh_cshift);
}

static inline uint32_t
arena_capacity(const struct index_shard *sh)
{
    if (sh->sh_nchunks == 0)
        return 0;
    return (sh->sh_nchunks - 1) * chunk_use(sh->sh_cshift) + arena_last_use(sh);
}

static void
shard_account(struct index_shard *sh)
{
    uint64_t bytes = (uint64_t)sh->sh_cap * sizeof(uint32_t) +
                     ((uint64_t)sh->sh_nchunks << sh->sh_cshift) -
                     (sh->sh_half ? 1u << (sh->sh_cshift - 1) : 0) +
                     sh->sh_nchunks * sizeof(sh->sh_chunks[0]);
    __atomic_store_n(&sh->sh_bytes, bytes, __ATOMIC_RELAXED);
}

static inline void
shard_set_count(struct index_shard *sh, uint32_t count)
{
    __atomic_store_n(&sh->sh_count, count, __ATOMIC_RELAXED);
}

/* ---- resizing ---- */

/* Rehash every key into a fresh table of newcap slots (no tombstones). */
static int
table_resize(struct index_shard *sh, uint32_t newcap)
{
    uint32_t *slots = calloc(newcap, sizeof(*slots));
    if (slots == NULL)
        return INDEX_ENOMEM;
    uint32_t *old = sh->sh_slots;
    uint32_t oldcap = sh->sh_cap;
    sh->sh_slots = slots;
    sh->sh_cap = newcap;
    for (uint32_t i = 0; i < oldcap; i++) {
        uint32_t ref = old[i];
        if (ref <= SLOT_TOMB)
            continue;
        uint32_t j = shard_home(sh, entry_hash(shard_entry(sh, ref)));
        while (slots[j] != SLOT_EMPTY)
            j = slot_next(sh, j);
        slots[j] = ref;
    }
    free(old);
    sh->sh_tombs = 0;
    shard_account(sh);
    return 0;
}

/*
 * Make offsets obits wide: each extra offset bit takes the lowest bit of
 * every tag of the shard.
 */
static void
arena_widen(struct index_shard *sh, unsigned obits)
{
    if (obits <= sh->sh_obits)
        return;
    assert(obits <= 32);
    unsigned shift = obits - sh->sh_obits;
    for (uint32_t i = 0; i < sh->sh_cap; i++) {
        uint32_t ref = sh->sh_slots[i];
        if (ref <= SLOT_TOMB)
            continue;
        uint32_t tag = shard_ref_tag(sh, ref) >> shift;
        sh->sh_slots[i] =
            (uint32_t)((uint64_t)tag << obits | shard_ref_off(sh, ref));
    }
    sh->sh_obits = (uint8_t)obits;
}

/*
 * Append a half chunk to the arena; the next entry goes at its start. The
 * last chunk starts half size and doubles when full (arena_grow_last), which
 * halves the average slack; it may move then, but refs hold offsets, not
 * addresses.
 */
static int
arena_add_chunk(struct index_shard *sh)
{
    uint32_t n = sh->sh_nchunks;
    assert(n < CHUNKS_MAX && !(n > 0 && sh->sh_half));
    uint8_t **chunks = realloc(sh->sh_chunks, (n + 1) * sizeof(*chunks));
    if (chunks == NULL)
        return INDEX_ENOMEM;
    sh->sh_chunks = chunks;
    chunks[n] = malloc((1u << (sh->sh_cshift - 1)) - CHUNK_HDR);
    if (chunks[n] == NULL)
        return INDEX_ENOMEM;
    sh->sh_nchunks = n + 1;
    sh->sh_half = 1;
    sh->sh_used = n == 0 ? ARENA_BASE : n << sh->sh_cshift;
    shard_account(sh);
    return 0;
}

static int
arena_grow_last(struct index_shard *sh)
{
    uint32_t n = sh->sh_nchunks;
    assert(n > 0 && sh->sh_half);
    uint8_t *chunk = realloc(sh->sh_chunks[n - 1], chunk_use(sh->sh_cshift));
    if (chunk == NULL)
        return INDEX_ENOMEM;
    sh->sh_chunks[n - 1] = chunk;
    sh->sh_half = 0;
    shard_account(sh);
    return 0;
}

/*
 * Lay the live entries out contiguously in chunks of 2^cshift bytes, in slot
 * order. With copy false, only count the chunks needed; with copy true, copy
 * the entries into chunks[] and point the slots at them. Returns the offset
 * after the last entry.
 */
static uint32_t
arena_layout(struct index_shard *sh, unsigned cshift, uint8_t **chunks,
             bool copy, uint32_t *nchunks)
{
    uint32_t use = chunk_use(cshift), mask = (1u << cshift) - 1;
    uint32_t used = ARENA_BASE, n = 1;
    for (uint32_t i = 0; i < sh->sh_cap; i++) {
        uint32_t ref = sh->sh_slots[i];
        if (ref <= SLOT_TOMB)
            continue;
        const uint8_t *p = shard_entry(sh, ref);
        uint32_t size = entry_size(p);
        if ((used & mask) + size > use)
            used = n++ << cshift;
        if (copy) {
            memcpy(chunks[used >> cshift] + (used & mask), p, size);
            sh->sh_slots[i] = shard_ref(sh, shard_ref_tag(sh, ref), used);
        }
        used += size;
    }
    *nchunks = n;
    return used;
}

/*
 * Rewrite the live entries contiguously into new chunks of 2^cshift bytes
 * (smaller, equal or larger than the current ones). All memory is allocated
 * before anything moves, so a failure changes nothing.
 */
static int
arena_compact(struct index_shard *sh, unsigned cshift)
{
    uint32_t n;
    arena_widen(sh, cshift + CHUNKS_BITS);
    uint32_t end = arena_layout(sh, cshift, NULL, false, &n);
    assert(n <= CHUNKS_MAX);
    uint32_t half_use = (1u << (cshift - 1)) - CHUNK_HDR;
    bool half = (end & ((1u << cshift) - 1)) <= half_use;
    uint8_t **chunks = malloc(n * sizeof(*chunks));
    uint32_t got = 0;
    if (chunks != NULL) {
        while (got < n) {
            size_t use = got == n - 1 && half ? half_use : chunk_use(cshift);
            if ((chunks[got] = malloc(use)) == NULL)
                break;
            got++;
        }
    }
    if (got < n) {
        while (got > 0)
            free(chunks[--got]);
        free(chunks);
        return INDEX_ENOMEM;
    }
    /* Offsets of the old chunks are read with the old chunk size. */
    uint8_t **old = sh->sh_chunks;
    uint32_t oldn = sh->sh_nchunks;
    uint32_t used = arena_layout(sh, cshift, chunks, true, &n);
    for (uint32_t i = 0; i < oldn; i++)
        free(old[i]);
    free(old);
    sh->sh_chunks = chunks;
    sh->sh_nchunks = n;
    sh->sh_cshift = (uint8_t)cshift;
    sh->sh_half = half;
    sh->sh_used = used;
    sh->sh_holes = 0;
    shard_account(sh);
    return 0;
}

/* Bytes left in the last chunk after sh_used. */
static inline uint32_t
arena_room(const struct index_shard *sh)
{
    return arena_last_use(sh) - (sh->sh_used & ((1u << sh->sh_cshift) - 1));
}

/*
 * Make room for one more entry of size bytes at sh_used: in the last chunk,
 * grown to full size if it was a half one, else in a new chunk, else (64
 * chunks, or holes over a quarter) after a compaction into chunks of the
 * right size. Each step adds room or chunks, and a compaction leaves at most
 * 33 chunks, so this ends.
 */
static int
arena_reserve(struct index_shard *sh, uint32_t size)
{
    bool compacted = false;
    for (;;) {
        if (sh->sh_nchunks != 0 && arena_room(sh) >= size)
            return 0;
        int rc;
        if (sh->sh_nchunks == 0) {
            unsigned cshift = arena_chunk_shift(ARENA_BASE + size);
            if (sh->sh_reserve > cshift)
                cshift = sh->sh_reserve;
            arena_widen(sh, cshift + CHUNKS_BITS);
            sh->sh_cshift = (uint8_t)cshift;
            rc = arena_add_chunk(sh);
        } else if (sh->sh_half) {
            rc = arena_grow_last(sh);
        } else if (!compacted && (sh->sh_nchunks == CHUNKS_MAX ||
                                  sh->sh_holes > arena_capacity(sh) / 4)) {
            unsigned cshift = arena_chunk_shift((uint64_t)sh->sh_live + size);
            rc = cshift ? arena_compact(sh, cshift) : INDEX_ENOMEM;
            compacted = true;
        } else {
            rc = arena_add_chunk(sh);
        }
        if (rc != 0)
            return rc;
    }
}

static void
shard_reset(struct index_shard *sh)
{
    for (uint32_t i = 0; i < sh->sh_nchunks; i++)
        free(sh->sh_chunks[i]);
    free(sh->sh_chunks);
    free(sh->sh_slots);
    sh->sh_chunks = NULL;
    sh->sh_slots = NULL;
    sh->sh_cap = 0;
    sh->sh_tombs = 0;
    sh->sh_nchunks = 0;
    sh->sh_half = 0;
    sh->sh_used = 0;
    sh->sh_live = 0;
    sh->sh_holes = 0;
    sh->sh_reserve = 0;
    shard_set_count(sh, 0);
    shard_account(sh);
}

/*
 * After removals: give memory back. Failures only mean the memory is given
 * back later, so they are ignored.
 */
static void
shard_tidy(struct index_shard *sh)
{
    if (sh->sh_count == 0) {
        shard_reset(sh);
        return;
    }
    uint32_t acap = arena_capacity(sh);
    unsigned cshift = arena_chunk_shift(sh->sh_live);
    if (acap >= ARENA_TIDY_MIN && sh->sh_holes > acap / 4 && cshift != 0)
        (void)arena_compact(sh, cshift);
    if (sh->sh_count < sh->sh_cap / 4) {
        uint32_t cap = table_fit(sh, (uint64_t)sh->sh_count * 3 / 2 + 1);
        if (cap != 0 && cap < sh->sh_cap)
            (void)table_resize(sh, cap);
    }
}

/* ---- probing ---- */

/*
 * Look key up. Found: true, *slot is its slot. Not found: false, *slot is
 * where to insert it (the first tombstone on its path, else the empty slot
 * that ended the path). The table must be allocated.
 */
static bool
shard_probe(const struct index_shard *sh, uint64_t hash, const void *key,
            size_t klen, uint32_t *slot)
{
    uint32_t tag = shard_tag(sh, hash);
    uint32_t i = shard_home(sh, hash);
    uint32_t tomb = UINT32_MAX;
    for (;;) {
        uint32_t ref = sh->sh_slots[i];
        if (ref == SLOT_EMPTY)
            break;
        if (ref == SLOT_TOMB) {
            if (tomb == UINT32_MAX)
                tomb = i;
        } else if (shard_ref_tag(sh, ref) == tag) {
            const uint8_t *p = shard_entry(sh, ref);
            if (p[ENTRY_FIXED] == klen &&
                memcmp(p + ENTRY_HDR, key, klen) == 0) {
                *slot = i;
                return true;
            }
        }
        i = slot_next(sh, i);
    }
    *slot = tomb != UINT32_MAX ? tomb : i;
    return false;
}

/* Remove the entry in slot i (no resizing: see shard_tidy). */
static void
shard_unlink(struct index_shard *sh, uint32_t i)
{
    uint32_t off = shard_ref_off(sh, sh->sh_slots[i]);
    uint32_t size = entry_size(shard_at(sh, off));
    if (off + size == sh->sh_used)
        sh->sh_used = off;
    else
        sh->sh_holes += size;
    sh->sh_live -= size;

    /*
     * Linear probing needs a tombstone only if a later key's path runs
     * through this slot. If the next slot is empty no path does, nor through
     * the tombstones just before this slot, which become empty too.
     */
    if (sh->sh_slots[slot_next(sh, i)] != SLOT_EMPTY) {
        sh->sh_slots[i] = SLOT_TOMB;
        sh->sh_tombs++;
    } else {
        sh->sh_slots[i] = SLOT_EMPTY;
        for (;;) {
            i = i == 0 ? sh->sh_cap - 1 : i - 1;
            if (sh->sh_slots[i] != SLOT_TOMB)
                break;
            sh->sh_slots[i] = SLOT_EMPTY;
            sh->sh_tombs--;
        }
    }
    shard_set_count(sh, sh->sh_count - 1);
}

/* ---- public calls ---- */

index_t *
index_new(unsigned shard_bits)
{
    if (shard_bits == 0)
        shard_bits = INDEX_DEFAULT_SHARD_BITS;
    if (shard_bits > INDEX_MAX_SHARD_BITS)
        return NULL;
    unsigned n = 1u << shard_bits;
    index_t *ix = calloc(1, sizeof(*ix) + n * sizeof(ix->ix_shards[0]));
    if (ix == NULL)
        return NULL;
    ix->ix_bits = shard_bits;
    ix->ix_nshards = n;

    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    /* Spin briefly, then sleep: holders may block on the log (see below). */
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    for (unsigned s = 0; s < n; s++) {
        struct index_shard *sh = &ix->ix_shards[s];
        pthread_mutex_init(&sh->sh_lock, &attr);
        sh->sh_obits = OBITS_MIN;
        /* Golden-ratio sequence: phases spread evenly over the shards. */
        sh->sh_jit = (uint8_t)(((uint64_t)s * 0x9E3779B97F4A7C15ull) >> 56);
    }
    pthread_mutexattr_destroy(&attr);
    return ix;
}

void
index_free(index_t *ix)
{
    if (ix == NULL)
        return;
    for (unsigned s = 0; s < ix->ix_nshards; s++) {
        struct index_shard *sh = &ix->ix_shards[s];
        pthread_mutex_destroy(&sh->sh_lock);
        shard_reset(sh);
    }
    free(ix);
}

/*
 * A mutex, not a spinlock: the store holds a key's lock while it appends to
 * the log, which can wait for buffer space, and spinning on a preempted
 * holder would waste a core. Uncontended, both cost one atomic operation.
 */
void
index_lock(index_t *ix, uint64_t hash)
{
    struct index_shard *sh = index_shard_of(ix, hash);
    pthread_mutex_lock(&sh->sh_lock);
#ifndef NDEBUG
    sh->sh_owner = pthread_self();
#endif
}

void
index_unlock(index_t *ix, uint64_t hash)
{
    struct index_shard *sh = index_shard_of(ix, hash);
#ifndef NDEBUG
    assert(pthread_equal(sh->sh_owner, pthread_self()));
    sh->sh_owner = 0;
#endif
    pthread_mutex_unlock(&sh->sh_lock);
}

/* The shard of a keyed call, checking the contract in debug builds. */
static inline struct index_shard *
index_keyed(index_t *ix, uint64_t hash, const void *key, size_t klen)
{
    struct index_shard *sh = index_shard_of(ix, hash);
#ifndef NDEBUG
    assert(pthread_equal(sh->sh_owner, pthread_self()));
    assert(klen == 0 || klen > 255 || hash == index_hash(key, klen));
#else
    (void)key;
    (void)klen;
#endif
    return sh;
}

bool
index_find(index_t *ix, uint64_t hash, const void *key, size_t klen,
           struct index_entry *out)
{
    struct index_shard *sh = index_keyed(ix, hash, key, klen);
    uint32_t i;
    if (sh->sh_count == 0 || klen - 1 > 254 ||
        !shard_probe(sh, hash, key, klen, &i))
        return false;
    if (out != NULL)
        memcpy(out, shard_entry(sh, sh->sh_slots[i]), ENTRY_FIXED);
    return true;
}

int
index_put(index_t *ix, uint64_t hash, const void *key, size_t klen,
          const struct index_entry *e, struct index_entry *old)
{
    struct index_shard *sh = index_keyed(ix, hash, key, klen);
    /*
     * A key length outside 1..255 breaks the contract; release builds
     * refuse it as unstorable rather than corrupt the arena.
     */
    assert(klen >= 1 && klen <= 255);
    if (klen - 1 > 254)
        return INDEX_ENOMEM;

    uint32_t i;
    int rc;
    if (sh->sh_cap == 0 && (rc = table_resize(sh, table_fit(sh, 1))) != 0)
        return rc;
    if (shard_probe(sh, hash, key, klen, &i)) {
        uint8_t *p = shard_entry(sh, sh->sh_slots[i]);
        if (old != NULL)
            memcpy(old, p, ENTRY_FIXED);
        memcpy(p, e, ENTRY_FIXED);
        return 1;
    }

    uint32_t size = ENTRY_HDR + (uint32_t)klen;
    if ((rc = arena_reserve(sh, size)) != 0)
        return rc;
    if (sh->sh_slots[i] == SLOT_EMPTY &&
        sh->sh_count + sh->sh_tombs + 1 > table_max_load(sh->sh_cap)) {
        /* Room for an eighth more keys: a tombstone cleanup must last. */
        uint64_t n = sh->sh_count + 1 + table_max_load(sh->sh_cap) / 8;
        uint32_t cap = table_fit(sh, n);
        if (cap == 0)
            return INDEX_ENOMEM;
        if ((rc = table_resize(sh, cap)) != 0)
            return rc;
        shard_probe(sh, hash, key, klen, &i);
    }

    uint8_t *p = shard_at(sh, sh->sh_used);
    memcpy(p, e, ENTRY_FIXED);
    p[ENTRY_FIXED] = (uint8_t)klen;
    memcpy(p + ENTRY_HDR, key, klen);
    if (sh->sh_slots[i] == SLOT_TOMB)
        sh->sh_tombs--;
    sh->sh_slots[i] = shard_ref(sh, shard_tag(sh, hash), sh->sh_used);
    __atomic_store_n(&sh->sh_tail, p + size, __ATOMIC_RELAXED);
    sh->sh_used += size;
    sh->sh_live += size;
    shard_set_count(sh, sh->sh_count + 1);
    return 0;
}

bool
index_remove(index_t *ix, uint64_t hash, const void *key, size_t klen,
             struct index_entry *old)
{
    struct index_shard *sh = index_keyed(ix, hash, key, klen);
    uint32_t i;
    if (sh->sh_count == 0 || klen - 1 > 254 ||
        !shard_probe(sh, hash, key, klen, &i))
        return false;
    if (old != NULL)
        memcpy(old, shard_entry(sh, sh->sh_slots[i]), ENTRY_FIXED);
    shard_unlink(sh, i);
    shard_tidy(sh);
    return true;
}

unsigned
index_shards(const index_t *ix)
{
    return ix->ix_nshards;
}

/*
 * The callback gets a pointer into the arena for the key and a copy of the
 * entry, written back after it returns KEEP. It must not call the index for
 * this shard: removals made here only leave tombstones and holes, and the
 * tidying that may move entries waits for the end of the scan.
 */
void
index_scan(index_t *ix, unsigned shard, index_visit_fn fn, void *arg)
{
    assert(shard < ix->ix_nshards);
    struct index_shard *sh = &ix->ix_shards[shard];
    pthread_mutex_lock(&sh->sh_lock);
#ifndef NDEBUG
    sh->sh_owner = pthread_self();
#endif
    bool dropped = false;
    for (uint32_t i = 0; i < sh->sh_cap; i++) {
        uint32_t ref = sh->sh_slots[i];
        if (ref <= SLOT_TOMB)
            continue;
        uint8_t *p = shard_entry(sh, ref);
        struct index_entry e;
        memcpy(&e, p, ENTRY_FIXED);
        if (fn(arg, p + ENTRY_HDR, p[ENTRY_FIXED], &e) == INDEX_DROP) {
            shard_unlink(sh, i);
            dropped = true;
        } else {
            memcpy(p, &e, ENTRY_FIXED);
        }
    }
    if (dropped)
        shard_tidy(sh);
#ifndef NDEBUG
    sh->sh_owner = 0;
#endif
    pthread_mutex_unlock(&sh->sh_lock);
}

/* Give a shard a table for `per` keys (and an empty one arena chunks for
 * `bytes` of entries), or shrink an oversized table. */
static int
shard_size_for(struct index_shard *sh, uint64_t per, uint64_t bytes, bool grow)
{
    int rc = 0;
    pthread_mutex_lock(&sh->sh_lock);
    if (grow) {
        uint32_t cap = table_fit(sh, per);
        if (cap > sh->sh_cap)
            rc = table_resize(sh, cap);
        if (bytes && sh->sh_nchunks == 0)
            sh->sh_reserve = (uint8_t)arena_chunk_shift(bytes);
    } else if (sh->sh_cap && sh->sh_count < table_max_load(sh->sh_cap) / 2) {
        uint32_t cap = table_fit(sh, (uint64_t)sh->sh_count * 9 / 8 + 1);
        if (cap != 0 && cap < sh->sh_cap)
            (void)table_resize(sh, cap);
    }
    pthread_mutex_unlock(&sh->sh_lock);
    return rc;
}

int
index_reserve(index_t *ix, uint64_t keys, uint64_t key_bytes)
{
    uint64_t per = keys / ix->ix_nshards;
    per += per / 8 + 8; /* shards differ by a few standard deviations */
    /* entries of the average key: arena_chunk_shift leaves room to double */
    uint64_t bytes = key_bytes ? ARENA_BASE + per * ENTRY_HDR +
                                     key_bytes / ix->ix_nshards * 9 / 8
                               : 0;
    for (unsigned i = 0; i < ix->ix_nshards; i++) {
        int rc = shard_size_for(&ix->ix_shards[i], per, bytes, true);
        if (rc)
            return rc;
    }
    return 0;
}

void
index_trim(index_t *ix)
{
    for (unsigned i = 0; i < ix->ix_nshards; i++)
        (void)shard_size_for(&ix->ix_shards[i], 0, 0, false);
}

uint64_t
index_count(index_t *ix)
{
    uint64_t n = 0;
    for (unsigned s = 0; s < ix->ix_nshards; s++)
        n += __atomic_load_n(&ix->ix_shards[s].sh_count, __ATOMIC_RELAXED);
    return n;
}

uint64_t
index_bytes(index_t *ix)
{
    uint64_t n =
        sizeof(*ix) + (uint64_t)ix->ix_nshards * sizeof(ix->ix_shards[0]);
    for (unsigned s = 0; s < ix->ix_nshards; s++)
        n += __atomic_load_n(&ix->ix_shards[s].sh_bytes, __ATOMIC_RELAXED);
    return n;
}
