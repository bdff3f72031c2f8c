/*
 * store: the storage engine. An append-only log of records on disk, an
 * in-RAM index (src/index) pointing at the newest record of every key, and
 * memcached's semantics on top, so that every front end (the text protocol,
 * the meta protocol, the replica applier, the tools) shares them.
 *
 * Writes. A write call locks its key, checks what it must (add, replace,
 * cas...), appends its record to the log's append buffer, updates the index,
 * unlocks, and returns at once with an "ack" offset in struct store_write.
 * The log-writer thread writes the buffer to the active segment and, with
 * --fsync always, calls fdatasync; all writes that arrive while one
 * fdatasync runs share the next one (group commit). A caller must not tell
 * its client "STORED" before store_ack_status(ack) is 1:
 *   always    the record is on disk (fdatasync covered it)
 *   everysec  the record is in the file (a crash of the process loses
 *   never     nothing; a crash of the machine may lose the last second)
 * Callers that cannot block (an io_uring loop) register an eventfd with
 * store_subscribe(); it is written whenever the acked offset advances or the
 * store fails, and then they check their pending acks.
 *
 * Reads. store_get() is the simple blocking read. A caller that must not
 * block on the disk (an io_uring loop) uses the three steps
 * store_lookup() -> [store_read_buffered() or its own read of loc.fd] ->
 * store_read_finish().
 *
 * Versions. Every cas the store generates is a hybrid logical clock in
 * microseconds: max(the last one + 1, the wall clock in unix microseconds).
 * It is unique, it grows, and it says when the item was written (to the
 * microsecond while the clock is sane and writes fewer than one a
 * microsecond). It keeps growing across restarts (segment headers carry the
 * floor; a clock set back only slows it to +1 a write until the wall clock
 * catches up), compaction (a copy keeps its cas), and replication (a
 * replica's apply raises its clock with every cas it receives, so a
 * promoted replica continues above them).
 *
 * A cas a client chooses (meta E: the row's own version) is stored as it
 * is. It also raises the clock when it is at most STORE_CAS_AHEAD_US past
 * the wall clock: a later write of any key then gets a larger cas than
 * that version, so "newer than the row" keeps meaning newer. Beyond that
 * (a version in another unit, a clock far off, a value near 2^64) it is
 * only a version: it cannot drag every later cas into the future or
 * exhaust the clock. Small row versions (1, 2, 3...) lie far below the
 * clock and never move it.
 *
 * Status codes: 0 on success, a negative STORE_* code below, or -errno.
 */
#ifndef MCDB_STORE_H
#define MCDB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log/logdir.h"

#define STORE_MAX_KEY 250
/* A client's cas (meta E) raises the cas clock only up to this far past the
 * wall clock (see Versions above): 60 s, far above the skew of clocks kept
 * by NTP, far below a version in another unit. */
#define STORE_CAS_AHEAD_US (60ull * 1000000)

/* name, code, message */
#define STORE_ERRORS(X)                                                        \
    X(STORE_NOT_FOUND, -1001, "not found")                                     \
    X(STORE_EXISTS, -1002, "exists (cas mismatch)")                            \
    X(STORE_NOT_STORED, -1003, "not stored")                                   \
    X(STORE_TOO_LARGE, -1004, "object too large for cache")                    \
    X(STORE_NON_NUMERIC, -1005,                                                \
      "cannot increment or decrement non-numeric value")                       \
    X(STORE_READONLY, -1006, "store is read-only after a write error")         \
    X(STORE_CORRUPT, -1007, "corrupt record")                                  \
    X(STORE_LOCKED, -1008, "data directory is in use")                         \
    X(STORE_BAD_KEY, -1009, "bad key")                                         \
    X(STORE_NOMEM, -1010, "out of memory")                                     \
    X(STORE_BAD_CONFIG, -1011, "bad configuration")                            \
    X(STORE_CLOSED, -1012, "store is closing")                                 \
    X(STORE_REPLICA, -1013, "read-only replica")                               \
    X(STORE_SYNCING, -1014, "replica syncing")                                 \
    X(STORE_STALE, -1015, "replica link down (--replica-stale no)")            \
    X(STORE_NO_REPLICAS, -1016, "not enough replicas connected")               \
    X(STORE_REPL_TIMEOUT, -1017,                                               \
      "stored on the primary but not confirmed by the replicas in time")

enum {
#define X(name, code, msg) name = code,
    STORE_ERRORS(X)
#undef X
};

/* Message for a STORE_* code or a -errno. */
const char *store_strerror(int err);

enum store_fsync {
    STORE_FSYNC_ALWAYS,
    STORE_FSYNC_EVERYSEC,
    STORE_FSYNC_NEVER
};

struct store_config {
    const char *dir;       /* data directory; created if missing */
    uint64_t segment_size; /* roll to a new segment at this size */
    enum store_fsync fsync;
    uint32_t max_item_size; /* largest value, bytes */
    bool compactor;         /* run the background compactor thread */
    double compact_garbage; /* compact when this fraction is garbage */
    uint64_t compact_rate;  /* compactor reads at most this many B/s */
    /* Zero-fill the active segment's file a MiB ahead of its writes, so
     * that most fdatasyncs do not change its size (writer.c). */
    bool preallocate;
    /* Open each segment a second time with O_DIRECT (store_loc.dfd), for
     * reads that miss the page cache (where the file system allows it). */
    bool direct_reads;
    /* Wall clock in unix milliseconds; NULL means the real clock. Tests
     * move time with it. */
    int64_t (*now_ms)(void *arg);
    void *now_arg;
    /* Tests only: called before every pwrite ("pwrite") and fdatasync
     * ("fdatasync") of a segment; a negative errno fails that call as if
     * the disk had. NULL in production. */
    int (*fault)(void *arg, const char *op);
    void *fault_arg;
    /* Make (or keep) this store a replica of HOST:PORT; NULL: the role
     * META says. A replica appends only what store_append_raw() is given
     * and refuses every write with STORE_REPLICA. */
    const char *replica_of;
    /* A replica becomes the primary at open (a new epoch in META). */
    bool promote;
};

#define STORE_DEFAULT_SEGMENT_SIZE (64ull << 20)
#define STORE_DEFAULT_MAX_ITEM (1u << 20)
#define STORE_MIN_SEGMENT_SIZE (64u << 10)
#define STORE_DEFAULT_COMPACT_GARBAGE 0.5
#define STORE_DEFAULT_COMPACT_RATE (64ull << 20)

void store_config_default(struct store_config *cfg);

typedef struct store store_t;

/*
 * Open (creating if needed) and recover a data directory. On failure returns
 * a status and, in err, a message naming the file and offset concerned.
 */
int store_open(const struct store_config *cfg, store_t **out, char *err,
               size_t errlen);

/* Write out and sync everything, stop the writer thread, release LOCK. */
void store_close(store_t *s);

/* ---- writes ---- */

enum store_mode {
    STORE_SET,
    STORE_ADD,
    STORE_REPLACE,
    STORE_APPEND,
    STORE_PREPEND,
    STORE_CAS
};

struct store_write {
    uint64_t cas;  /* the cas unique of what was written, 0 when nothing was */
    uint64_t ack;  /* pass to store_ack_status(); 0 = nothing to wait for */
    uint32_t vlen; /* the value's length afterwards (append: the whole) */
};

/*
 * One keyed write of the set family: the classic set, add, replace,
 * append, prepend and cas, and meta's ms with every flag. exptime is as
 * memcached clients send it: 0 never expires, up to 30 days is relative
 * seconds, beyond that absolute unix time, negative is already expired.
 */
struct store_req {
    const void *key;
    size_t klen;
    enum store_mode mode;
    const void *val;
    size_t vlen;
    uint32_t flags;
    int64_t exptime;
    /* Compare: STORE_CAS always; the other modes when has_cas (ms C): only
     * the version with this cas is replaced (add: is never replaced). */
    uint64_t cas_in;
    bool has_cas;
    /* ms I with C: a cas_in below the item's is accepted too; the value is
     * then stored stale, keeping the item's exptime and win token. */
    bool stale_ok;
    /* ms E: the new version gets this cas instead of a generated one. */
    uint64_t cas_new;
    /* ms V (mcdb's own): an item whose cas is cas_below or above is kept
     * (STORE_EXISTS); a missing one is written as the mode says. */
    uint64_t cas_below;
    bool has_below;
    /* ms N in append or prepend mode: a missing item is created with this
     * value and vivify_exptime instead of failing. */
    bool vivify;
    int64_t vivify_exptime;
};

/*
 * Returns 0, STORE_NOT_STORED (add: exists; replace, append, prepend:
 * missing), STORE_EXISTS (cas mismatch) or STORE_NOT_FOUND (cas, missing),
 * STORE_TOO_LARGE (nothing changed), STORE_READONLY, STORE_BAD_KEY, a gate's
 * code. Append and prepend keep the item's flags and exptime.
 */
int store_set(store_t *s, const struct store_req *r, struct store_write *w);

/* A delete: the classic one, and meta's md with every flag. */
struct store_del {
    const void *key;
    size_t klen;
    uint64_t cas_in; /* with has_cas: only that version (else EXISTS) */
    bool has_cas;
    uint64_t cas_new; /* md E: the cas of the item that stays (I, x) */
    /* md I: the item stays, marked stale with a new cas (the next client
     * wins a recache); with has_ttl its exptime becomes exptime. */
    bool invalidate;
    bool has_ttl;
    int64_t exptime;
    /* md x: the item stays with an empty value, flags and exptime (as md
     * F and T give them), its cas kept (or cas_new). */
    bool empty_value;
    uint32_t flags;
};
/* 0, STORE_NOT_FOUND, STORE_EXISTS, or the store's failure. */
int store_delete(store_t *s, const struct store_del *q, struct store_write *w);

int store_touch(store_t *s, const void *key, size_t klen, int64_t exptime,
                struct store_write *w);

/* incr/decr, and meta's ma with every flag. */
struct store_arith_req {
    const void *key;
    size_t klen;
    bool incr; /* incr wraps at 2^64, decr stops at 0 */
    uint64_t delta;
    uint64_t cas_in; /* with has_cas: only that version */
    bool has_cas;
    uint64_t cas_new; /* ma E */
    bool vivify;      /* ma N: a missing item is created with initial */
    int64_t vivify_exptime;
    uint64_t initial;
    bool touch; /* ma T: the exptime changes too */
    int64_t exptime;
};
struct store_arith_res {
    uint64_t value; /* the new value */
    uint64_t cas;
    uint32_t exptime; /* absolute, 0 = never */
    bool created;     /* vivified */
};
/* 0, STORE_NOT_FOUND, STORE_EXISTS, STORE_NON_NUMERIC (unchanged), ... */
int store_arith(store_t *s, const struct store_arith_req *q,
                struct store_arith_res *res, struct store_write *w);

/* flush_all [delay]: items stored before now + delay become invisible at
 * that time (delay <= 0: now). */
int store_flush(store_t *s, int64_t delay, struct store_write *w);

/* 1 when the write with this ack may be acknowledged, 0 while pending, a
 * negative status when the store failed before making it safe. */
int store_ack_status(store_t *s, uint64_t ack);

/* Block until store_ack_status(ack) != 0; returns 0 or the failure. */
int store_wait(store_t *s, uint64_t ack);

/* Have eventfd efd written (value 1) whenever acks advance or the store
 * fails. At most 256 subscribers. */
enum { STORE_WAKE_ACKS = 1, STORE_WAKE_DURABLE = 2 };
int store_subscribe(store_t *s, int efd);
/* The same for what = STORE_WAKE_DURABLE (replication: every move of the
 * durable offset, whether or not acknowledgements moved with it) or both. */
int store_subscribe_to(store_t *s, int efd, unsigned what);
/* After it returns the store no longer writes efd: it may be closed. */
void store_unsubscribe(store_t *s, int efd);

/* ---- reads ---- */

struct store_item {
    uint32_t flags;
    uint32_t exptime; /* absolute unix seconds, 0 = never */
    uint64_t cas;
    uint64_t time_ms; /* when it was written (unix milliseconds) */
    const char *key;  /* point into the record buffer */
    uint32_t klen;
    const char *value;
    uint32_t vlen;
};

/* Where a key's newest record is. Between store_lookup() and
 * store_read_finish() the segment file stays open (pinned). */
struct store_loc {
    int fd;  /* segment file to read len bytes from at pos */
    int dfd; /* the same file opened with O_DIRECT, or -1 (direct_reads) */
    uint64_t pos;
    uint32_t len; /* whole record: allocate this many bytes to read it */
    uint64_t off; /* log offset of the record */
    uint64_t cas;
    uint32_t exptime;
    uint32_t vlen;
    void *pin;
    uint64_t gen;  /* store_log_generation() when it was looked up */
    bool fetched;  /* read before, since it was written (meta h) */
    uint64_t hash; /* the key's store_hash(), which the lookup computed */
    uint8_t miss;  /* after STORE_NOT_FOUND: why (enum store_miss) */
};

/* The hash of a key, as the index files it (index_hash). */
uint64_t store_hash(const void *key, size_t klen);

/* Start loading what a lookup of this hash will touch (index_prefetch's
 * stages: 0 for every key of a batch, then 1 for every key). */
void store_prefetch(store_t *s, uint64_t hash, int stage);

/* Changes whenever a replica's log is reloaded (cut or copied anew): what
 * a log offset held before may differ after. Caches keyed by offset (the
 * server's value cache) start afresh when it moves. */
uint64_t store_log_generation(store_t *s);

/* Why a read missed (stats: get_expired, get_flushed). */
enum store_miss { STORE_MISS_ABSENT, STORE_MISS_EXPIRED, STORE_MISS_FLUSHED };

/* STORE_NOT_FOUND for a missing, expired or flushed key (an expired item is
 * dropped from the index on the way; loc->miss says which). The item counts
 * as fetched. */
int store_lookup(store_t *s, const void *key, size_t klen,
                 struct store_loc *loc);

/*
 * A read that may write: meta's mg with every flag, and gat. On a hit, or a
 * miss that vivified, *res describes the item and, unless q->no_record,
 * res->loc where its record is (read it as after store_lookup). res->ack
 * is the write's (vivify, touch): the reply waits for it.
 */
struct store_mget {
    const void *key;
    size_t klen;
    bool touch; /* T (and gat): the exptime becomes exptime */
    int64_t exptime;
    bool vivify; /* N: a miss creates an empty item, and wins */
    int64_t vivify_exptime;
    bool recache; /* R: win when the item has under recache_ttl left */
    int64_t recache_ttl;
    uint64_t cas_new; /* E: the vivified item's cas */
    bool no_bump;     /* u: it does not count as fetched */
    bool no_record;   /* the record will not be read: res->loc is unset */
};
struct store_mget_res {
    struct store_loc loc;
    uint64_t cas;
    uint32_t exptime; /* absolute, 0 = never */
    uint32_t vlen;
    bool hit_before; /* h: fetched before this read */
    bool stale;      /* X */
    bool won;        /* W: this client recaches it */
    bool token_out;  /* Z: another client won it already */
    bool created;    /* vivified by this read */
    uint8_t miss;    /* after STORE_NOT_FOUND: why (enum store_miss) */
    uint64_t ack;
};
/* 0 (res filled, record pinned), STORE_NOT_FOUND, a gate's code, ... */
int store_mget(store_t *s, const struct store_mget *q,
               struct store_mget_res *res);

/* If the record is still in the append buffer, copy it to buf (loc.len
 * bytes) and return 1; return 0 when it is in the file (read it yourself). */
int store_read_buffered(store_t *s, const struct store_loc *loc, void *buf);

/* The record will not be read after all (a cached copy of its item
 * answered): unpins, in place of store_read_finish. */
void store_read_skip(store_t *s, struct store_loc *loc);

/* Verify the record read into buf (nread bytes) and decode it into *it
 * (pointing into buf); unpins. STORE_CORRUPT names nothing: the store logs
 * the file and offset. Must be called exactly once per successful lookup. */
int store_read_finish(store_t *s, struct store_loc *loc, const void *buf,
                      size_t nread, const void *key, size_t klen,
                      struct store_item *it);

/* Lookup + read + finish in one blocking call. *bufp is malloc()ed, the
 * caller frees it; it holds the record that *it points into. */
int store_get(store_t *s, const void *key, size_t klen, struct store_item *it,
              void **bufp);

/* ---- compaction ---- */

/*
 * Compact now, in the calling thread: while more than the configured
 * fraction of the log is garbage (all: while any sealed segment is left
 * that was not compacted in this call), take the oldest sealed segment,
 * re-append the records the index still points at, make them durable,
 * append a DROP record and delete the file. progress (may be NULL) is
 * called after each segment with the bytes done and the bytes in sealed
 * segments when the call started. Returns 0 or the first error.
 */
int store_compact(store_t *s, bool all,
                  void (*progress)(void *arg, uint64_t done, uint64_t total),
                  void *arg);

/* ---- roles and replication (used by src/repl) ---- */

/* A copy of META: the log id, the role, the primary, the history. */
void store_meta(store_t *s, struct logdir_meta *m);
bool store_is_replica(store_t *s);

/*
 * A replica becomes the primary: what it has received is made durable, a
 * new epoch begins at its end (META), the log continues in a segment of its
 * own, writes are accepted and the compactor runs. Returns 0 or an error
 * (err says what); STORE_SYNCING when it holds no log yet.
 */
int store_promote(store_t *s, char *err, size_t errlen);

/* A replica takes its primary's history (the same log: its log id, and
 * epochs that describe this replica's log as a prefix). */
int store_set_history(store_t *s, const struct logdir_meta *primary, char *err,
                      size_t errlen);

/* Reads answer `code` (STORE_SYNCING, STORE_STALE) instead of looking; 0
 * serves them again. */
void store_set_read_gate(store_t *s, int code);

/*
 * Listing every key (lru_crawler metadump), one part at a time: part i of
 * store_dump_parts() is visited whole under one index shard lock, so a
 * batch holds about 1/1024 of the keys and no writer waits long. A key
 * lives in one shard for its whole life, so a key present throughout a
 * listing is visited exactly once; keys written meanwhile may or may not
 * be. Expired and flushed items are not visited.
 */
struct store_dump_item {
    const void *key;
    size_t klen;
    uint64_t cas;
    uint32_t exptime; /* absolute, 0 = never */
    uint32_t size;    /* the record's bytes in the log */
    bool fetched;
};
unsigned store_dump_parts(store_t *s);
void store_dump_part(store_t *s, unsigned part,
                     void (*fn)(void *arg, const struct store_dump_item *it),
                     void *arg);
/* Writes are refused with `code` (e.g. STORE_NO_REPLICAS) and its text
 * (store_gate_text) before anything is written; 0 lets them in. A
 * replica's STORE_REPLICA cannot be lifted this way (store_promote). */
void store_set_write_gate(store_t *s, int code, const char *text);
const char *store_gate_text(store_t *s, int code, char *buf, size_t len);

/*
 * --sync-replicas: acknowledgements also wait until the replicas have the
 * bytes. With `required`, a write whose ack is above `replicated` is not
 * acked; if it is at or below `timed_out` it fails with
 * STORE_REPL_TIMEOUT. Subscribers are woken.
 */
void store_set_replicated(store_t *s, bool required, uint64_t replicated,
                          uint64_t timed_out);

/* Make everything appended so far durable soon, whatever --fsync says,
 * without waiting: a primary with replicas sends only durable bytes, so
 * with --fsync everysec or never its senders ask for this. */
void store_sync_soon(store_t *s);
/* The same, waiting until it is done: 0 or the store's failure. */
int store_sync(store_t *s);

/* The log's offsets: its first byte still on disk, its end (where the next
 * byte goes) and how far it is durable. */
uint64_t store_log_start(store_t *s);
uint64_t store_log_end(store_t *s);
uint64_t store_durable(store_t *s);

/*
 * A replica appends its primary's bytes verbatim: buf holds log bytes from
 * offset off, which must be the log's end. Every whole record in it is
 * checked (checksum with this log's seed and its own offset), appended
 * (a footer seals the segment, a header opens the next one, whatever this
 * store's --segment-size) and applied to the index; *used gets the bytes
 * of the whole records taken (a partial record at the end waits for more).
 * Durability and acks work as for any write (store_durable). Returns 0,
 * or STORE_CORRUPT with err naming the offset (nothing from there on is
 * taken), or the store's failure.
 */
int store_append_raw(store_t *s, uint64_t off, const void *buf, size_t len,
                     size_t *used, char *err, size_t errlen);

/* The offset of the log's last record, and the checksum field of the
 * record at off if a valid record of this log lies exactly in [off, end)
 * (else STORE_NOT_FOUND): a replica and its primary compare the record
 * where the replica's log ends before they resume. */
uint64_t store_last_record(store_t *s);
int store_record_checksum(store_t *s, uint64_t off, uint64_t end,
                          uint64_t *checksum);

/*
 * The log by offset, for a sender: the run of bytes from `off` that lies in
 * one segment file and below `upto` (at most the durable end), as a file
 * descriptor and position, with the segment pinned (a compaction that
 * deletes it meanwhile does not take it away). STORE_NOT_FOUND when off is
 * below the log's start (compacted away); len 0 when nothing is there yet.
 * End each with store_span_done().
 */
struct store_span {
    int fd;
    uint64_t pos; /* in the file */
    uint64_t len;
    void *pin;
};
int store_span(store_t *s, uint64_t off, uint64_t upto, struct store_span *sp);
void store_span_done(struct store_span *sp);

/*
 * Holds keep compaction off the segments a sender still has to send: no
 * segment that ends after a hold's offset is deleted. store_hold returns a
 * handle (>= 0) or -ENOSPC; move it as the sender advances; release it.
 */
int store_hold(store_t *s, uint64_t off);
void store_hold_move(store_t *s, int h, uint64_t off);
void store_hold_release(store_t *s, int h);

/*
 * A replica whose history parted from its primary's at offset `from`
 * moves the bytes [from, end) aside into DATA/diverged-<time>-<from>/
 * (never deleted; the path goes to aside, the number of records moved to
 * *records) and reloads. Reads answer STORE_SYNCING meanwhile.
 */
int store_cut_log(store_t *s, uint64_t from, char *aside, size_t asidelen,
                  uint64_t *records, char *err, size_t errlen);

/*
 * A full copy of the primary's log, written beside the live one (in
 * DATA/resync.partial) while the live one keeps serving, and switched to
 * only when whole: begin with the primary's META and the offset the copy
 * starts at (the primary's log start); add bytes as they come (as with
 * store_append_raw, *used says how many were taken); finish when the copy
 * has reached the offset the primary named: the old files are deleted
 * (keep_old: moved to a diverged-* directory), the copy is installed and
 * the store reloads. A crash at any point leaves the old log or the new
 * one whole (resync.c). abort throws a copy away.
 */
struct store_copy;
int store_copy_begin(store_t *s, const struct logdir_meta *primary,
                     uint64_t start, struct store_copy **out, char *err,
                     size_t errlen);
int store_copy_add(struct store_copy *c, const void *buf, size_t len,
                   size_t *used, char *err, size_t errlen);
uint64_t store_copy_end(const struct store_copy *c);
/* The copy is on disk (fdatasynced) up to this offset. */
uint64_t store_copy_durable(const struct store_copy *c);
int store_copy_finish(store_t *s, struct store_copy *c, bool keep_old,
                      char *err, size_t errlen);
void store_copy_abort(struct store_copy *c);

/* ---- statistics ---- */

/* name, description: the struct fields and the stats output come from this
 * one table. */
#define STORE_STATS(X)                                                         \
    X(items, "keys in the index")                                              \
    X(live_bytes, "bytes of records the index points at")                      \
    X(value_bytes, "bytes of values the index points at")                      \
    X(log_bytes, "bytes of log on disk (all segments)")                        \
    X(log_start, "log offset of the oldest byte still on disk")                \
    X(log_end, "log offset where the next record goes")                        \
    X(segments, "segment files")                                               \
    X(written_offset, "log offset written to the segment file")                \
    X(durable_offset, "log offset covered by fdatasync")                       \
    X(records_written, "records appended since start")                         \
    X(fsyncs, "fdatasync calls since start")                                   \
    X(fsync_batch_avg, "average records per fdatasync")                        \
    X(fsync_batch_max, "most records one fdatasync covered")                   \
    X(fsync_us, "microseconds spent in fdatasync of the log since start")      \
    X(gather_us, "microseconds the writer waited to gather records")           \
    X(index_bytes, "bytes of memory the index holds")                          \
    X(index_bytes_per_key, "index memory per key, bytes")                      \
    X(expired_items, "items dropped because they expired")                     \
    X(garbage_permille, "garbage share of the log, per thousand")              \
    X(compact_runs, "segments the compactor has processed")                    \
    X(compact_bytes_read, "bytes the compactor read")                          \
    X(compact_bytes_copied, "live bytes the compactor re-appended")            \
    X(compact_bytes_reclaimed, "bytes of segment files deleted")               \
    X(compact_last_ms, "duration of the last segment's compaction, ms")        \
    X(compact_stopped, "1 when the compactor stopped on damage (mcdb-fsck)")   \
    X(error, "1 when the store is read-only after a write or sync error")

struct store_stats {
#define X(name, desc) uint64_t name;
    STORE_STATS(X)
#undef X
};

void store_stats(store_t *s, struct store_stats *st);

/* Call fn for each figure of st, in table order. */
void store_stats_each(const struct store_stats *st,
                      void (*fn)(void *arg, const char *name, uint64_t value),
                      void *arg);

/* The error that made the store read-only ("" when healthy). */
const char *store_error_text(store_t *s);

/* The store's clock, in unix seconds (the configured now_ms). */
uint32_t store_now(store_t *s);

#endif
