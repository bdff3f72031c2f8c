/*
 * Internals of the log module shared by its files (store.c, writer.c,
 * recover.c, apply.c, compact.c, hint.c, dir.c, check.c). Nothing outside
 * src/log includes this.
 *
 * INVARIANTS of the engine (each names where it is kept):
 *   1. Offset = base + position: the byte at position p of the segment
 *      file that starts at log offset B is the log's byte B + p, header
 *      included (record.c).
 *   2. The segments are contiguous and ordered: each starts where the one
 *      before it ends; only the last may be unsealed; a sealed segment
 *      never changes until compaction deletes it whole (writer.c).
 *   3. Log order is index order for every key: a keyed write holds the
 *      key's index lock from its lookup to its index update, and appends
 *      its record in between (store.c); the compactor and a replica's
 *      applier do the same. Replaying the log in order (apply.c) therefore
 *      rebuilds the index that was served.
 *   4. durable <= written <= end: the bytes below `written` are in the
 *      files, those below `durable` are covered by fdatasync (writer.c).
 *   5. An acknowledgement means durable (--fsync always; written for the
 *      other modes): no reply to a write leaves before store_ack_status()
 *      says so, and with --sync-replicas before enough replicas say it too.
 *   6. Every cas the store generates is above every cas in the log that
 *      counts (apply.c rule 5: generated ones, and clients' near their
 *      write time) and every segment header's cas floor, and is at least
 *      the wall clock in microseconds (writer.c, recover.c).
 *   7. Compaction deletes only the oldest segment, and only after the live
 *      records it copied are durable at the log's end and a DROP record
 *      names it (compact.c).
 *   8. A replica's log is a byte-identical prefix of its primary's: a
 *      primary sends only durable bytes, and a replica appends only the
 *      bytes it received, checked record by record, at its own end; it
 *      never appends a record of its own and never compacts
 *      (store_append_raw, src/repl).
 *
 * LOCK ORDER (a thread holding one may take those to its right):
 *   flush_mu -> an index shard lock -> mu -> seg_mu
 *   maint_mu -> (everything the compactor takes: index shard locks, mu,
 *                seg_mu, compact_mu)
 *   compact_mu -> seg_mu, compact_mu -> mu (never with a shard lock held)
 *   subs_rw -> mu (log_notify, store_unsubscribe)
 *   meta_mu: taken alone
 * The writer thread takes mu and seg_mu only one at a time, never a shard
 * lock, so nothing a worker holds can stall it.
 */
#ifndef MCDB_LOG_INT_H
#define MCDB_LOG_INT_H

#include "index/index.h"
#include "log/logdir.h"
#include "log/record.h"
#include "log/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

struct store;

/*
 * Live-byte accounting gathered by one thread and added to the store at
 * once (store_acct_flush): recovery's replay threads would otherwise take
 * seg_mu and write the same counters for every record. Only while the
 * segment table does not change (recovery, before the writer starts).
 */
#define STORE_ACCT_SEGS 64 /* segments gathered; others accounted at once */
struct store_acct {
    struct seg *sa_segs[STORE_ACCT_SEGS];
    int64_t sa_live[STORE_ACCT_SEGS];
    size_t sa_n;
    int64_t sa_value_bytes;
};

/* apply.c: the replay rules (written there), one record at a time. */
struct apply {
    index_t *ix;
    struct store *s;         /* NULL: a bare index (mcdb-fsck), no live bytes */
    struct store_acct *acct; /* with s: gather the accounting here (NULL:
                                account at once) */
    bool live;             /* a replica's stream: the store's state moves too */
    unsigned part, nparts; /* apply only the keys of this partition */
    uint64_t next_cas;     /* above every cas the store generated */
    uint64_t flush_before; /* the last immediate FLUSH's offset */
    uint32_t flush_deadline; /* the last delayed FLUSH's time, if pending */
    uint64_t dropped_end;    /* highest end of a segment a DROP names */
    uint64_t drop_off;       /* ... and that DROP's offset */
    uint64_t max_rec;        /* largest PUT record */
    uint64_t last_off;       /* the offset of the last record applied */
    uint32_t exp_min; /* earliest exptime of a PUT or TOUCH applied, 0: none */
};

/*
 * A segment file. Lifecycle (the function that makes each transition):
 *   active     created by log_append() when the previous one is full, or
 *              by recovery; records are appended to it; a clean close
 *              writes its hint (compact_write_active_hint), which the next
 *              start-up reads and deletes
 *   sealed     log_append() reserved its footer (seg_end set); the writer
 *              writes the footer and fdatasyncs it; the background thread
 *              writes its hint once it is durable (compact_write_hints,
 *              seg_hint set)
 *   compacted  store_compact() re-appended its live records, made them
 *              durable and appended a DROP record naming it (a replica:
 *              its primary's DROP is durable here, replica_drops)
 *   dropped    removed from the table and its file unlinked
 *              (compact_remove_oldest); the file is closed when the last
 *              pin goes (seg_unpin)
 * The table of segments holds one reference; every reader's pin another.
 */
struct seg {
    uint64_t seg_base; /* log offset of the first byte */
    uint64_t seg_end;  /* past the footer once sealed, else 0 */
    int seg_fd;
    int seg_dfd; /* O_DIRECT, read only (cfg.direct_reads), or -1 */
    atomic_int seg_refs;
    atomic_uint_fast64_t seg_live; /* bytes of records the index points at */
    uint64_t seg_records;          /* records appended (by log_append) */
    atomic_bool seg_hint;          /* its hint file is written and valid */
    bool seg_new;      /* created under its temporary name (create_locked) */
    uint64_t seg_size; /* the file's size (the writer's) */
};

#define STORE_MAX_SUBS 256
#define STORE_MAX_HOLDS 64
#define STORE_WON_SLOTS 65536u /* win tokens out (item.c) */

struct store {
    struct store_config cfg;
    char *dir;
    int dirfd;
    int lockfd;
    struct logdir_meta meta; /* as in META; changed under meta_mu */
    pthread_mutex_t meta_mu;
    uint8_t log_id[16]; /* meta's, for the hot paths */
    uint64_t log_seed;
    index_t *ix;

    /* The segment table, oldest first. */
    pthread_mutex_t seg_mu;
    struct seg **segs;
    size_t nsegs, segs_cap;
    /* A replica: the segments that end at or before drop_end go once the
     * DROP record that named them (ending at drop_at) is durable. */
    uint64_t drop_end, drop_at;
    atomic_bool drop_pending; /* wakes the background thread when durable */

    /*
     * The append buffer (double-buffered) and the writer thread. mu guards
     * everything up to `subs`. Writers fill buf[fill]; the writer thread
     * swaps and writes the other one (wbuf) without holding mu.
     */
    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* wakes the writer */
    pthread_cond_t cv_space; /* wakes appenders waiting for buffer space */
    pthread_cond_t cv_ack;   /* wakes store_wait() */
    char *buf[2];
    size_t buf_cap;   /* room for the largest record twice over */
    uint64_t max_rec; /* largest PUT record seen by recovery */
    int fill;
    size_t fill_len;
    uint64_t fill_start; /* log offset of buf[fill][0] */
    uint64_t fill_recs;
    /* --fsync always: the writer gathers up to this many records before the
     * next fdatasync (0: none; writer.c, "Gathering") */
    uint64_t gather_recs;
    int64_t gather_win_us; /* for at most this long (adapted) */
    int64_t gather_max_us; /* the last fdatasync's time, capped */
    uint64_t gather_n;     /* gathers so far (every 16th probes) */
    const char *wbuf;      /* being written: [wstart, wstart + wlen) */
    uint64_t wstart;
    size_t wlen;
    uint64_t end;      /* log end: fill_start + fill_len */
    uint64_t last_rec; /* offset of the log's last record */
    struct seg *active;
    uint64_t next_cas; /* the cas clock: the next cas is at least this */
    bool stop;
    int subs[STORE_MAX_SUBS];
    uint8_t sub_kinds[STORE_MAX_SUBS]; /* STORE_WAKE_* of each */
    int nsubs;
    pthread_rwlock_t subs_rw; /* held while eventfds are written (log_notify) */
    pthread_t writer;
    bool writer_running;

    uint64_t sync_req; /* log_sync(): fdatasync up to here whatever --fsync */
    atomic_uint_fast64_t written; /* bytes [.., written) are in the files */
    atomic_uint_fast64_t durable; /* ... and covered by fdatasync */
    atomic_int failed;            /* 0 or the -errno that made us read-only */
    char errtext[256];

    /* flush_all: items whose record lies before flush_before_off are gone;
     * a delayed flush waits in flush_deadline (unix seconds, 0 = none). */
    atomic_uint_fast64_t flush_before_off;
    atomic_uint flush_deadline;
    pthread_mutex_t flush_mu;

    /* Roles and replication (role.c, raw.c). A replica's write gate is
     * STORE_REPLICA; its read gate STORE_SYNCING until it holds a log. */
    atomic_bool replica;
    atomic_int read_gate, write_gate;
    /* bumped whenever the log is reloaded (a replica's cut or full copy):
     * a log offset read before may hold another record after */
    atomic_uint_fast64_t log_gen;
    char gate_text[256];       /* write_gate's message, under meta_mu */
    struct apply live;         /* a replica's apply of what it receives */
    _Atomic uint64_t *won;     /* win tokens out (item.c): one tag a slot */
    atomic_bool repl_required; /* --sync-replicas */
    atomic_uint_fast64_t replicated;     /* acked by enough replicas */
    atomic_uint_fast64_t repl_timed_out; /* writes up to here failed */
    uint64_t holds[STORE_MAX_HOLDS];     /* under seg_mu; UINT64_MAX: free */

    /* the background compactor */
    pthread_t compactor;
    bool compactor_running;
    atomic_bool compactor_stop; /* read unlocked by throttle() */
    pthread_mutex_t compact_mu; /* one compaction at a time; guards stop */
    pthread_mutex_t maint_mu;   /* the background thread's work, or a
                                   reload (resync.c): one at a time */
    pthread_cond_t compact_cv;

    /* statistics */
    atomic_uint_fast64_t st_fsyncs, st_synced_recs, st_batch_max;
    atomic_uint_fast64_t st_fsync_us, st_gather_us;
    atomic_uint_fast64_t st_records, st_expired, st_value_bytes;
    atomic_uint_fast64_t st_compact_runs, st_compact_read, st_compact_copied;
    atomic_uint_fast64_t st_compact_reclaimed, st_compact_last_ms;
    atomic_uint_fast64_t st_compact_stopped;
};

/* dir.c (logdir.h), for a store */
static inline void
dir_seg_path(const struct store *s, uint64_t base, char *out, size_t n)
{
    logdir_seg_path(s->dir, base, out, n);
}

/* The largest record this store may hold: a value of --max-item-size under
 * the longest key, or a larger one already in the log (compaction copies
 * it). */
static inline uint64_t
log_max_record(const struct store *s)
{
    uint64_t rec = rec_size(STORE_MAX_KEY, s->cfg.max_item_size);
    return s->max_rec > rec ? s->max_rec : rec;
}

static inline void
dir_seg_tmp_path(const struct store *s, uint64_t base, char *out, size_t n)
{
    logdir_seg_tmp_path(s->dir, base, out, n);
}

static inline int
dir_sync(struct store *s)
{
    return fsync(s->dirfd) == 0 ? 0 : -errno;
}

/* writer.c: appending and the writer thread */
/* Wake store_wait() and the subscribers that asked for `what`
 * (STORE_WAKE_ACKS: acknowledgements moved; STORE_WAKE_DURABLE: the durable
 * offset moved). */
void log_notify(struct store *s, unsigned what);
/* Append n bytes of whole, checked records at the log's end (mu held,
 * room checked): raw.c's verbatim append. */
void log_append_bytes_locked(struct store *s, const void *p, size_t n,
                             uint64_t recs);
/* Wait (mu held) until n more bytes fit in the fill buffer; STORE_CLOSED
 * or STORE_READONLY instead when the store stops or failed. */
int log_wait_room_locked(struct store *s, size_t n);
/* Create the file of the segment that starts at base and add it to the
 * table as the active one (mu held); its header is the caller's. */
int log_open_next_locked(struct store *s, uint64_t base);
/* Append r at the log's end; *off gets its offset. new_cas gives it the next
 * cas (else r->cas is kept); r->time_ms is set to now unless already set. */
int log_append(struct store *s, struct rec *r, bool new_cas, uint64_t *off);
/* Make the log durable up to `upto` whatever --fsync says; blocks. */
int log_sync(struct store *s, uint64_t upto);
int log_start_writer(struct store *s);
void log_stop_writer(struct store *s);
int log_read_buffered(struct store *s, uint64_t off, size_t len, void *out);
uint64_t log_acked(struct store *s);
void log_fail(struct store *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int log_open_segment(struct store *s, uint64_t base, bool create,
                     struct seg **out);
/* Start a segment with this log's own header at the log's end when the
 * last one is sealed or there is none (a new log, or a start after a
 * sealed segment). */
int log_ensure_active(struct store *s);
void log_add_segment(struct store *s, struct seg *g);

/* store.c: segment pins, live-byte accounting, index helpers */
struct seg *seg_pin(struct store *s, uint64_t off);
void seg_unpin(struct seg *g);
void seg_account(struct store *s, uint64_t off, int64_t delta);
int64_t store_now_ms(struct store *s);
/* The same clock in microseconds: the cas clock's wall time (writer.c). */
int64_t store_now_us(struct store *s);
/* Put e for key in the index (caller holds the key's lock) and move the
 * live-byte accounting from the entry it replaces. */
int store_index_put(struct store *s, uint64_t h, const void *key, size_t klen,
                    const struct index_entry *e);
bool store_index_remove(struct store *s, uint64_t h, const void *key,
                        size_t klen);
/* The same, gathering the accounting in acc (NULL: at once). */
int store_index_put_acct(struct store *s, struct store_acct *acc, uint64_t h,
                         const void *key, size_t klen,
                         const struct index_entry *e);
bool store_index_remove_acct(struct store *s, struct store_acct *acc,
                             uint64_t h, const void *key, size_t klen);
void store_index_dropped_acct(struct store *s, struct store_acct *acc,
                              size_t klen, const struct index_entry *e,
                              bool expired);
/* Add what acc gathered to the store and empty it. */
void store_acct_flush(struct store *s, struct store_acct *acc);
/* Drop every flushed or expired entry from the index. */
void store_sweep(struct store *s);
/* The accounting of an entry that a sweep dropped (expired: counted). */
void store_index_dropped(struct store *s, size_t klen,
                         const struct index_entry *e, bool expired);
/* Which of nparts partitions a key's hash belongs to: by its top 10 bits,
 * the bits that pick its index shard (index.h), so that with the default
 * 1024 shards each replay thread owns whole shards and no two of them
 * write the same shard's lock and cache lines. */
static inline unsigned
store_part_of(uint64_t hash, unsigned nparts)
{
    return (unsigned)((hash >> 54) % nparts);
}

bool store_expired(uint32_t exptime, uint32_t now);
/* item.c: a delayed flush_all whose time has come takes effect now. */
void flush_tick(struct store *s);
/* Live apply (a replica): the next cas goes above v; the segments a DROP
 * named (ending at or before end) are deleted once the log is durable up
 * to at. */
void store_raise_cas(struct store *s, uint64_t v);
void store_drop_later(struct store *s, uint64_t end, uint64_t at);

/* apply.c */
/* Rule 5: whether r's cas raises the next cas (writer.c asks the same when
 * it appends, so that a restart, a replica and fsck count what it did). */
bool apply_cas_counts(const struct rec *r);
void apply_record(struct apply *a, const struct rec *r, uint64_t off);
/* Records queued to be applied together (see apply.c, "Batches"): the
 * same result as apply_record() on each in order, faster on a large index.
 * The bytes of their keys and values must stay where they are until
 * apply_batch_run(). */
#define APPLY_BATCH 16
struct apply_batch {
    struct rec ab_rec[APPLY_BATCH];
    uint64_t ab_off[APPLY_BATCH];
    unsigned ab_n;
};
/* Queue r at off; a full batch is applied at once. */
void apply_batch_add(struct apply *a, struct apply_batch *b,
                     const struct rec *r, uint64_t off);
/* Apply what b holds, in order, and empty it. */
void apply_batch_run(struct apply *a, struct apply_batch *b);
/* Drop the entries (of a's partition) whose record lies before log offset
 * before_off, or expired at now (0: judge no expiry). */
void apply_sweep(struct apply *a, uint64_t before_off, uint32_t now);
/* Whether an item a applied may have expired at now (else a sweep for
 * expired items would find none). */
bool apply_may_expire(const struct apply *a, uint32_t now);
/* Fold what another thread's apply learned into `into`. */
void apply_merge(struct apply *into, const struct apply *from);

/* raw.c: the lowest offset a sender still needs (seg_mu held);
 * UINT64_MAX when none holds the log. */
uint64_t store_held_from(struct store *s);

/* role.c */
/* After recovery: the role from META and the config (--replica-of), and
 * the gates that go with it. */
int role_apply_config(struct store *s, char *err, size_t errlen);
/* A replica's live apply starts from what recovery left. */
void role_start_live(struct store *s);
/* The store holds a log (a replica before its first copy holds none). */
bool role_has_log(struct store *s);

/* resync.c: finish a full copy's install that a crash interrupted, or
 * throw away a copy that was not complete (at open, before recovery). */
int resync_pending(struct store *s, char *err, size_t errlen);

/* recover.c */
int log_recover(struct store *s, char *err, size_t errlen);
/* Recovery rule 3, shared with mcdb-fsck --repair (check.c): cut the torn
 * tail [from, size) of the segment file at path (fd open for writing, its
 * bytes at map), saving the bytes that are not all zero beside it as
 * <path>.tail-<base + from> first (their path then in saved, else ""). */
struct log_tail {
    const char *path;
    int fd;
    const char *map;
    uint64_t base, from, size;
    const char *why;
    char saved[4200];
};
int log_cut_tail(struct log_tail *t, char *err, size_t errlen);
/* The first position after pos in map[0, size) where a record of this log
 * (seed; map[0] at log offset base) decodes; size if none. */
uint64_t log_resync(const char *map, uint64_t size, uint64_t pos, uint64_t seed,
                    uint64_t base);
/* Recovery rule 3's test for bytes [pos, next) of the last segment that do
 * not decode, next being log_resync's answer: a torn write when nothing
 * valid follows, when a whole page of zeros lies between (a page the
 * kernel had not written when the machine stopped), or when the bad record
 * starts in at least 16 zero bytes that run to its page's end (a page
 * written back as it was before the last write, or a live copy that read
 * the page before the write reached it); else corruption. */
bool log_torn(const char *map, uint64_t size, uint64_t pos, uint64_t next);
/* Whether map[0, len) is all zero bytes. */
bool log_all_zero(const char *map, uint64_t len);
/* Whether the file at path is empty or all zero bytes (-errno if it cannot
 * be read): a segment that nothing was written to. */
int log_file_blank(const char *path);
/* --preallocate: the writer writes zeros past what it writes, up to the
 * next multiple of this, when a write would grow the file (writer.c). */
#define LOG_PAD (1u << 20)

/* compact.c */
int compact_start(struct store *s);
void compact_stop(struct store *s);
uint64_t compact_garbage_permille(struct store *s);
/* Write the hint of every sealed segment that lacks one. */
void compact_write_hints(struct store *s);
/* At a clean close (the writer stopped): the hint of the active segment as
 * it is, which the next start-up reads once (recover.c, replay_hint). */
void compact_write_active_hint(struct store *s);
/* Remove the oldest segment from the table and delete its file (recovery
 * uses it for a segment a DROP record names). */
int compact_remove_oldest(struct store *s, struct seg *g);

#endif
