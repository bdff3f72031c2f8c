/*
 * stats: memcached's "stats" family, in memcached 1.6.18's names, units and
 * shapes, so that dashboards and exporters keep working.
 *
 *   stats           STATS_GENERAL below, in memcached's order. Counters are
 *                   per worker (each written by its own thread only) and
 *                   summed here. Where a figure of memcached's has a meaning
 *                   for mcdb it is mcdb's:
 *                     limit_maxbytes   the size of the file system that
 *                                      holds the data directory (mcdb's
 *                                      capacity is the disk, not RAM)
 *                     bytes            bytes of records the index points at
 *                     hash_bytes       the index's memory (it is sharded:
 *                                      hash_power_level is 0)
 *                     store_too_large  storage commands refused for a value
 *                                      over --max-item-size
 *                     store_no_memory  storage commands the store refused
 *                                      for want of room: out of memory, or
 *                                      the sticky error after a failed
 *                                      write or fsync (e.g. a full disk;
 *                                      the write whose fsync failed was
 *                                      taken, and fails at its ack)
 *                     conn_yields      times a connection stopped reading
 *                                      because its client did not read its
 *                                      replies (backpressure; mcdb has no
 *                                      -R request quota)
 *                     listen_disabled_num, time_in_listen_disabled_us,
 *                     accepting_conns  accept paused for want of
 *                                      descriptors or memory (past
 *                                      --max-connections mcdb refuses each
 *                                      connection as memcached's default
 *                                      maxconns_fast does: rejected_
 *                                      connections)
 *                     reserved_fds     descriptors kept beyond
 *                                      --max-connections
 *                     cmd_meta         every meta command (1.6.18 counts
 *                                      only "me"; later versions all)
 *                   Slab, LRU, hash table, logger and memcached's buffer
 *                   figures are 0 (mcdb has none of those); evictions is 0
 *                   (mcdb never evicts). mcdb's own: conn_memory_bytes
 *                   (what client connections hold for requests and
 *                   replies), conn_memory_kicks (closed past
 *                   --conn-memory-limit); value_cache_bytes, _hits,
 *                   _misses, _evictions (--value-cache: gets answered
 *                   from a copy in RAM, or read from the log);
 *                   value_reads_direct (--direct-reads: records read
 *                   from the disk past the page cache); idle_kicks
 *                   as memcached, only
 *                   with --idle-timeout.
 *   stats settings  every option with a "stats settings" name (net.h's
 *                   table; memcached's name where the meaning is the same),
 *                   then STATS_SETTINGS: memcached's settings that have a
 *                   fixed meaning for mcdb
 *   stats reset     zeroes what memcached zeroes (the counters, not
 *                   curr_items, bytes or curr_connections; the prefixes of
 *                   stats detail): the current sums become a baseline that
 *                   later sums subtract, so no worker is written to
 *   stats detail on|off|dump
 *                   per key prefix (up to the first ':') gets, hits, sets
 *                   and deletes, as memcached counts them (text get family,
 *                   storage commands, delete) and prints them
 *   stats items     memcached's shape: class 1 holds every item
 *   stats slabs     no slab classes: active_slabs 0, total_malloced 0
 *   stats sizes     sizes_status disabled
 *   stats cachedump <class> <limit>
 *                   memcached's errors for bad arguments, else an empty
 *                   dump (mcdb has no LRU; lru_crawler metadump lists keys)
 *   stats conns     END
 *   stats log       the engine's figures (store.h's STORE_STATS table) and
 *                   the text of its error, "none" when healthy
 *   stats repl      replication: the role, the log and its epoch, and the
 *                   link (a replica) or every replica (a primary), in
 *                   plain units (repl_stats)
 *   anything else   ERROR, as memcached.
 *
 * The binary protocol's stat asks for the same groups (its key is the
 * group and its arguments) and gets the same figures, framed by the seam
 * below: each stat a packet, the end of a group (END, RESET, OK) an empty
 * packet, an error KEY_ENOENT.
 */
#include "net/net_int.h"

#include "net/binary.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* What one "stats" reply is computed from, taken once. */
struct stats_snap {
    struct net *net;
    struct net_sums v;
    struct store_stats st;
    struct rusage ru;
    uint64_t capacity;
    uint32_t now;
    unsigned curr_conns;
    uint64_t conn_mem;
    uint64_t vc_bytes;
    bool accepting;
};

/*
 * memcached 1.6.18's general stats in its order: name, kind (U64: a number;
 * STR: text; TV: seconds.microseconds), value (of s, a struct stats_snap),
 * and when the line is printed (memcached prints idle_kicks only with an
 * idle timeout). NET_COUNTERS' sums are s->v.
 */
#define STATS_GENERAL(X)                                                       \
    X(pid, U64, getpid(), 1)                                                   \
    X(uptime, U64, s->now - (uint32_t)s->net->started, 1)                      \
    X(time, U64, s->now, 1)                                                    \
    X(version, STR, NET_VERSION, 1)                                            \
    X(pointer_size, U64, 8 * sizeof(void *), 1)                                \
    X(rusage_user, TV, s->ru.ru_utime, 1)                                      \
    X(rusage_system, TV, s->ru.ru_stime, 1)                                    \
    X(max_connections, U64, s->net->cfg.max_connections, 1)                    \
    X(curr_connections, U64, s->curr_conns, 1)                                 \
    X(total_connections, U64, s->v.total_connections, 1)                       \
    X(rejected_connections, U64, s->v.rejected_connections, 1)                 \
    X(connection_structures, U64, s->curr_conns, 1)                            \
    X(response_obj_oom, U64, 0, 1)                                             \
    X(response_obj_count, U64, 0, 1)                                           \
    X(response_obj_bytes, U64, 0, 1)                                           \
    X(read_buf_count, U64, 0, 1)                                               \
    X(read_buf_bytes, U64, 0, 1)                                               \
    X(read_buf_bytes_free, U64, 0, 1)                                          \
    X(read_buf_oom, U64, 0, 1)                                                 \
    X(reserved_fds, U64, NET_RESERVED_FDS, 1)                                  \
    X(cmd_get, U64, s->v.cmd_get, 1)                                           \
    X(cmd_set, U64, s->v.cmd_set, 1)                                           \
    X(cmd_flush, U64, s->v.cmd_flush, 1)                                       \
    X(cmd_touch, U64, s->v.cmd_touch, 1)                                       \
    X(cmd_meta, U64, s->v.cmd_meta, 1)                                         \
    X(get_hits, U64, s->v.get_hits, 1)                                         \
    X(get_misses, U64, s->v.get_misses, 1)                                     \
    X(get_expired, U64, s->v.get_expired, 1)                                   \
    X(get_flushed, U64, s->v.get_flushed, 1)                                   \
    X(delete_misses, U64, s->v.delete_misses, 1)                               \
    X(delete_hits, U64, s->v.delete_hits, 1)                                   \
    X(incr_misses, U64, s->v.incr_misses, 1)                                   \
    X(incr_hits, U64, s->v.incr_hits, 1)                                       \
    X(decr_misses, U64, s->v.decr_misses, 1)                                   \
    X(decr_hits, U64, s->v.decr_hits, 1)                                       \
    X(cas_misses, U64, s->v.cas_misses, 1)                                     \
    X(cas_hits, U64, s->v.cas_hits, 1)                                         \
    X(cas_badval, U64, s->v.cas_badval, 1)                                     \
    X(touch_hits, U64, s->v.touch_hits, 1)                                     \
    X(touch_misses, U64, s->v.touch_misses, 1)                                 \
    X(store_too_large, U64, s->v.store_too_large, 1)                           \
    X(store_no_memory, U64, s->v.store_no_memory, 1)                           \
    X(auth_cmds, U64, s->v.auth_cmds, 1)                                       \
    X(auth_errors, U64, s->v.auth_errors, 1)                                   \
    X(idle_kicks, U64, s->v.idle_kicks, s->net->cfg.idle_timeout > 0)          \
    X(conn_memory_bytes, U64, s->conn_mem, 1)                                  \
    X(conn_memory_kicks, U64, s->v.conn_memory_kicks, 1)                       \
    X(value_cache_bytes, U64, s->vc_bytes, 1)                                  \
    X(value_cache_hits, U64, s->v.value_cache_hits, 1)                         \
    X(value_cache_misses, U64, s->v.value_cache_misses, 1)                     \
    X(value_cache_evictions, U64, s->v.value_cache_evictions, 1)               \
    X(value_reads_direct, U64, s->v.value_reads_direct,                        \
      s->net->cfg.direct_reads)                                                \
    X(bytes_read, U64, s->v.bytes_read, 1)                                     \
    X(bytes_written, U64, s->v.bytes_written, 1)                               \
    X(limit_maxbytes, U64, s->capacity, 1)                                     \
    X(accepting_conns, U64, s->accepting, 1)                                   \
    X(listen_disabled_num, U64, s->v.listen_disabled_num, 1)                   \
    X(time_in_listen_disabled_us, U64, s->v.time_in_listen_disabled_us, 1)     \
    X(threads, U64, s->net->nworkers, 1)                                       \
    X(conn_yields, U64, s->v.conn_yields, 1)                                   \
    X(hash_power_level, U64, 0, 1)                                             \
    X(hash_bytes, U64, s->st.index_bytes, 1)                                   \
    X(hash_is_expanding, U64, 0, 1)                                            \
    X(slab_reassign_rescues, U64, 0, 1)                                        \
    X(slab_reassign_chunk_rescues, U64, 0, 1)                                  \
    X(slab_reassign_evictions_nomem, U64, 0, 1)                                \
    X(slab_reassign_inline_reclaim, U64, 0, 1)                                 \
    X(slab_reassign_busy_items, U64, 0, 1)                                     \
    X(slab_reassign_busy_deletes, U64, 0, 1)                                   \
    X(slab_reassign_running, U64, 0, 1)                                        \
    X(slabs_moved, U64, 0, 1)                                                  \
    X(lru_crawler_running, U64, 0, 1)                                          \
    X(lru_crawler_starts, U64, 0, 1)                                           \
    X(lru_maintainer_juggles, U64, 0, 1)                                       \
    X(malloc_fails, U64, 0, 1)                                                 \
    X(log_worker_dropped, U64, 0, 1)                                           \
    X(log_worker_written, U64, 0, 1)                                           \
    X(log_watcher_skipped, U64, 0, 1)                                          \
    X(log_watcher_sent, U64, 0, 1)                                             \
    X(log_watchers, U64, 0, 1)                                                 \
    X(unexpected_napi_ids, U64, 0, 1)                                          \
    X(round_robin_fallback, U64, 0, 1)                                         \
    X(bytes, U64, s->st.live_bytes, 1)                                         \
    X(curr_items, U64, s->st.items, 1)                                         \
    X(total_items, U64, s->v.total_items, 1)                                   \
    X(slab_global_page_pool, U64, 0, 1)                                        \
    X(expired_unfetched, U64, 0, 1)                                            \
    X(evicted_unfetched, U64, 0, 1)                                            \
    X(evicted_active, U64, 0, 1)                                               \
    X(evictions, U64, 0, 1)                                                    \
    X(reclaimed, U64, 0, 1)                                                    \
    X(crawler_reclaimed, U64, 0, 1)                                            \
    X(crawler_items_checked, U64, 0, 1)                                        \
    X(lrutail_reflocked, U64, 0, 1)                                            \
    X(moves_to_cold, U64, 0, 1)                                                \
    X(moves_to_warm, U64, 0, 1)                                                \
    X(moves_within_lru, U64, 0, 1)                                             \
    X(direct_reclaims, U64, 0, 1)                                              \
    X(lru_bumps_dropped, U64, 0, 1)

/*
 * memcached's settings with a fixed meaning for mcdb (the options' own are
 * net.h's table): name, value. maxbytes is limit_maxbytes; mcdb never
 * evicts, refuses past --max-connections at once (maxconns_fast), allows
 * flush_all and lru_crawler metadump but not shutdown, listens on TCP
 * only.
 */
#define STATS_SETTINGS(X)                                                      \
    X(maxbytes, "%" PRIu64, s->capacity)                                       \
    X(udpport, "%d", 0)                                                        \
    X(domain_socket, "%s", "NULL")                                             \
    X(evictions, "%s", "off")                                                  \
    X(shutdown_command, "%s", "no")                                            \
    X(stat_key_prefix, "%c", STATS_PREFIX_DELIMITER)                           \
    X(detail_enabled, "%s", atomic_load(&s->net->detail_on) ? "yes" : "no")    \
    X(cas_enabled, "%s", "yes")                                                \
    X(tcp_backlog, "%d", NET_BACKLOG)                                          \
    X(binding_protocol, "%s", "auto-negotiate")                                \
    X(auth_enabled_sasl, "%s", s->net->auth ? "yes" : "no")                    \
    X(maxconns_fast, "%s", "yes")                                              \
    X(flush_enabled, "%s", "yes")                                              \
    X(dump_enabled, "%s", "yes")                                               \
    X(track_sizes, "%s", "no")                                                 \
    X(ssl_enabled, "%s", "no")

#define STATS_PREFIX_DELIMITER ':'
#define STATS_MAX_CLASS 63 /* memcached's MAX_NUMBER_OF_SLAB_CLASSES - 1 */

/*
 * Where a reply goes: every group writes through these, so that another
 * framing (the binary protocol's stat packets) can take the same figures.
 *   stat_str, stat_u64, stat_tv  one "STAT name value" line
 *   stat_end                     the group's last line (END, RESET, OK)
 *   stat_fail                    an error instead of the group
 *   stat_dump                    text that is not STAT lines (stats detail
 *                                dump's PREFIX lines), under a name
 */
struct stat_out {
    struct conn *c;
    const struct out_bin *b; /* binary: each stat a packet for b */
};

/* A binary stat packet: key name, value value (status 0). */
static void
stat_packet(struct stat_out *o, const char *name, size_t nlen,
            const char *value, size_t vlen)
{
    struct bin_res h = {.opcode = o->b->opcode, .opaque = o->b->opaque};
    out_bin(o->c, &h, NULL, 0, name, nlen, value, vlen);
}

static void
stat_str(void *arg, const char *name, const char *value)
{
    struct stat_out *o = arg;
    if (o->b)
        stat_packet(o, name, strlen(name), value, strlen(value));
    else
        out_printf(o->c, "STAT %s %s\r\n", name, value);
}

static void
stat_u64(struct stat_out *o, const char *name, uint64_t v)
{
    char num[NET_U64_DIGITS + 1];
    num[net_fmt_u64(num, v)] = '\0';
    stat_str(o, name, num);
}

static void
stat_u64_cb(void *arg, const char *name, uint64_t v)
{
    stat_u64(arg, name, v);
}

/* memcached's "%ld.%06ld" seconds */
static void
stat_tv(struct stat_out *o, const char *name, struct timeval tv)
{
    char t[48];
    snprintf(t, sizeof(t), "%ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
    stat_str(o, name, t);
}

/* binary: an empty packet ends every group */
static void
stat_end(struct stat_out *o, const char *line)
{
    if (o->b)
        stat_packet(o, NULL, 0, NULL, 0);
    else
        out_str(o->c, line);
}

/* binary: KEY_ENOENT, as memcached's binary stat answers a group it does
 * not know (its text errors have no binary status of their own) */
static void
stat_fail(struct stat_out *o, const char *line)
{
    if (!o->b) {
        out_str(o->c, line);
        return;
    }
    const char *body = bin_status_text(BIN_KEY_ENOENT);
    struct bin_res h = {.opcode = o->b->opcode,
                        .opaque = o->b->opaque,
                        .status = BIN_KEY_ENOENT};
    out_bin(o->c, &h, NULL, 0, NULL, 0, body, strlen(body));
}

/* binary: one packet (key name, the text its value), then the end */
static void
stat_dump(struct stat_out *o, const char *name, const char *text, size_t len)
{
    if (!o->b) {
        out_text(o->c, text, len);
        return;
    }
    stat_packet(o, name, strlen(name), text, len);
    stat_packet(o, NULL, 0, NULL, 0);
}

#define stat_U64(o, name, v) stat_u64(o, name, (uint64_t)(v))
#define stat_STR(o, name, v) stat_str(o, name, v)
#define stat_TV(o, name, v) stat_tv(o, name, v)

static void
stats_counters(struct net *net, struct net_sums *now)
{
    worker_sum(net, now);
    pthread_mutex_lock(&net->lock);
#define X(name) now->name -= net->baseline.name;
    NET_COUNTERS(X)
#undef X
    pthread_mutex_unlock(&net->lock);
}

static void
stats_snap_take(struct net *net, struct stats_snap *s)
{
    memset(s, 0, sizeof(*s));
    s->net = net;
    stats_counters(net, &s->v);
    store_stats(net->store, &s->st);
    s->accepting = !atomic_load(&net->stopping);
    for (unsigned i = 0; i < net->nworkers; i++) {
        struct worker *w = &net->workers[i];
        s->curr_conns +=
            atomic_load_explicit(&w->curr_conns, memory_order_relaxed);
        s->conn_mem += atomic_load_explicit(&w->mem, memory_order_relaxed);
        s->vc_bytes += atomic_load_explicit(&w->vc_bytes, memory_order_relaxed);
        if (atomic_load_explicit(&w->nls_paused, memory_order_relaxed))
            s->accepting = false;
    }
    getrusage(RUSAGE_SELF, &s->ru);
    struct statvfs vfs;
    if (statvfs(net->cfg.data_dir, &vfs) == 0)
        s->capacity = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    s->now = store_now(net->store);
}

static void
stats_general(struct stat_out *o)
{
    struct stats_snap snap;
    const struct stats_snap *s = &snap;
    stats_snap_take(o->c->w->net, &snap);
#define X(name, kind, value, when)                                             \
    if (when)                                                                  \
        stat_##kind(o, #name, value);
    STATS_GENERAL(X)
#undef X
    stat_end(o, "END\r\n");
}

static void
stats_settings(struct stat_out *o)
{
    struct stats_snap snap;
    const struct stats_snap *s = &snap;
    char v[64];
    stats_snap_take(o->c->w->net, &snap);
    net_config_each(&o->c->w->net->cfg, stat_str, o);
#define X(name, fmt, value)                                                    \
    snprintf(v, sizeof(v), fmt, value);                                        \
    stat_str(o, #name, v);
    STATS_SETTINGS(X)
#undef X
    stat_end(o, "END\r\n");
}

/* memcached's per-class item figures, in its order, for class 1, which
 * holds every item (as lru_crawler metadump says cls=1): name, value (of
 * st, the store's figures). */
#define STATS_ITEMS(X)                                                         \
    X(number, st.items)                                                        \
    X(number_hot, 0)                                                           \
    X(number_warm, 0)                                                          \
    X(number_cold, 0)                                                          \
    X(age_hot, 0)                                                              \
    X(age_warm, 0)                                                             \
    X(age, 0)                                                                  \
    X(mem_requested, st.live_bytes)                                            \
    X(evicted, 0)                                                              \
    X(evicted_nonzero, 0)                                                      \
    X(evicted_time, 0)                                                         \
    X(outofmemory, 0)                                                          \
    X(tailrepairs, 0)                                                          \
    X(reclaimed, 0)                                                            \
    X(expired_unfetched, 0)                                                    \
    X(evicted_unfetched, 0)                                                    \
    X(evicted_active, 0)                                                       \
    X(crawler_reclaimed, 0)                                                    \
    X(crawler_items_checked, 0)                                                \
    X(lrutail_reflocked, 0)                                                    \
    X(moves_to_cold, 0)                                                        \
    X(moves_to_warm, 0)                                                        \
    X(moves_within_lru, 0)                                                     \
    X(direct_reclaims, 0)                                                      \
    X(hits_to_hot, 0)                                                          \
    X(hits_to_warm, 0)                                                         \
    X(hits_to_cold, 0)                                                         \
    X(hits_to_temp, 0)

/* A class with no items is not listed, as memcached's. */
static void
stats_items(struct stat_out *o)
{
    struct store_stats st;
    store_stats(o->c->w->net->store, &st);
    if (st.items > 0) {
#define X(name, value) stat_u64(o, "items:1:" #name, (uint64_t)(value));
        STATS_ITEMS(X)
#undef X
    }
    stat_end(o, "END\r\n");
}

/* No slab classes: memcached's totals for none. */
static void
stats_slabs(struct stat_out *o)
{
    stat_u64(o, "active_slabs", 0);
    stat_u64(o, "total_malloced", 0);
    stat_end(o, "END\r\n");
}

/* memcached's answer while its size histogram is off (its default). */
static void
stats_sizes(struct stat_out *o)
{
    stat_str(o, "sizes_status", "disabled");
    stat_end(o, "END\r\n");
}

/* ---- stats detail: counts by key prefix ---- */

struct stats_prefix {
    struct stats_prefix *next; /* in order of first sight */
    uint64_t gets, hits, sets, dels;
    size_t len;
    char name[];
};

void
stats_detail_count(struct net *net, const char *key, size_t klen,
                   enum stats_detail_op op)
{
    const char *end = memchr(key, STATS_PREFIX_DELIMITER, klen);
    if (!end)
        return; /* memcached counts only keys with a prefix */
    size_t len = (size_t)(end - key);
    pthread_mutex_lock(&net->lock);
    struct stats_prefix **pp = &net->prefixes;
    while (*pp && !((*pp)->len == len && memcmp((*pp)->name, key, len) == 0))
        pp = &(*pp)->next;
    if (!*pp) {
        struct stats_prefix *p = calloc(1, sizeof(*p) + len + 1);
        if (!p) {
            pthread_mutex_unlock(&net->lock);
            return;
        }
        memcpy(p->name, key, len);
        p->len = len;
        *pp = p;
    }
    struct stats_prefix *p = *pp;
    p->gets += op == DETAIL_MISS || op == DETAIL_HIT;
    p->hits += op == DETAIL_HIT;
    p->sets += op == DETAIL_SET;
    p->dels += op == DETAIL_DEL;
    pthread_mutex_unlock(&net->lock);
}

/* Under net->lock. */
static void
stats_detail_clear(struct net *net)
{
    struct stats_prefix *next;
    for (struct stats_prefix *p = net->prefixes; p; p = next) {
        next = p->next;
        free(p);
    }
    net->prefixes = NULL;
}

void
stats_detail_free(struct net *net)
{
    stats_detail_clear(net);
}

#define STATS_PREFIX_LINE                                                      \
    "PREFIX %s get %" PRIu64 " hit %" PRIu64 " set %" PRIu64 " del %" PRIu64   \
    "\r\n"

/* memcached's dump: one PREFIX line each, then END (no STAT lines); the
 * binary protocol sends it whole as the stat "detailed", as memcached. */
static void
stats_detail_dump(struct stat_out *o)
{
    struct net *net = o->c->w->net;
    pthread_mutex_lock(&net->lock);
    size_t cap = sizeof("END\r\n");
    for (struct stats_prefix *p = net->prefixes; p; p = p->next)
        cap += p->len + sizeof(STATS_PREFIX_LINE) + 4 * NET_U64_DIGITS;
    char *buf = malloc(cap);
    size_t len = 0;
    for (struct stats_prefix *p = net->prefixes; buf && p; p = p->next)
        len += (size_t)snprintf(buf + len, cap - len, STATS_PREFIX_LINE,
                                p->name, p->gets, p->hits, p->sets, p->dels);
    pthread_mutex_unlock(&net->lock);
    if (!buf) {
        stat_fail(o, "SERVER_ERROR out of memory writing stats\r\n");
        return;
    }
    len += (size_t)snprintf(buf + len, cap - len, "END\r\n");
    stat_dump(o, "detailed", buf, len);
    free(buf);
}

static bool
word_is(const char *w, const char *word)
{
    return w && strcmp(w, word) == 0;
}

static void
stats_detail(struct stat_out *o, const char *cmd)
{
    struct net *net = o->c->w->net;
    if (word_is(cmd, "on") || word_is(cmd, "off")) {
        atomic_store(&net->detail_on, word_is(cmd, "on"));
        stat_end(o, "OK\r\n");
    } else if (word_is(cmd, "dump")) {
        stats_detail_dump(o);
    } else {
        stat_fail(o, "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
    }
}

/* ---- the rest ---- */

/* A class number or limit as memcached's safe_strtoul takes it. */
static bool
parse_u32(const char *w, uint32_t *v)
{
    if (!w || !*w || strspn(w, "0123456789") != strlen(w) || strlen(w) > 10)
        return false;
    unsigned long long n = strtoull(w, NULL, 10);
    if (n > UINT32_MAX)
        return false;
    *v = (uint32_t)n;
    return true;
}

/* memcached's checks; then an empty dump, as memcached's of an empty
 * class (mcdb has no LRU to walk: lru_crawler metadump lists keys). */
static void
stats_cachedump(struct stat_out *o, const char *cls, const char *limit)
{
    uint32_t id, n;
    if (!cls || !limit)
        stat_fail(o, "CLIENT_ERROR bad command line\r\n");
    else if (!parse_u32(cls, &id) || !parse_u32(limit, &n))
        stat_fail(o, "CLIENT_ERROR bad command line format\r\n");
    else if (id > STATS_MAX_CLASS)
        stat_fail(o, "CLIENT_ERROR Illegal slab id\r\n");
    else
        stat_end(o, "END\r\n");
}

static void
stats_log(struct stat_out *o)
{
    store_t *s = o->c->w->net->store;
    struct store_stats st;
    store_stats(s, &st);
    store_stats_each(&st, stat_u64_cb, o);
    const char *e = store_error_text(s);
    stat_str(o, "error_text", e && e[0] ? e : "none");
    stat_end(o, "END\r\n");
}

static void
stats_repl(struct stat_out *o)
{
    if (o->c->w->net->repl)
        repl_stats(o->c->w->net->repl, stat_str, o);
    stat_end(o, "END\r\n");
}

static void
stats_reset(struct stat_out *o)
{
    struct net *net = o->c->w->net;
    struct net_sums now;
    worker_sum(net, &now);
    pthread_mutex_lock(&net->lock);
    net->baseline = now;
    stats_detail_clear(net);
    pthread_mutex_unlock(&net->lock);
    if (net->repl)
        repl_stats_reset(net->repl);
    stat_end(o, "RESET\r\n");
}

#define STATS_MAX_WORDS 4 /* "cachedump <class> <limit>" and one to spare */

/* One group, asked for with arg (memcached's tokens after "stats"). */
static void
stats_group(struct stat_out *o, const char *arg, size_t len)
{
    /* memcached's tokens: the group, then its arguments; more words than a
     * group takes are ignored, as memcached ignores them. */
    char buf[256];
    char *w[STATS_MAX_WORDS] = {0};
    size_t nw = 0;
    if (len >= sizeof(buf)) {
        stat_fail(o, "ERROR\r\n");
        return;
    }
    if (len) /* a binary STAT without a key has arg NULL */
        memcpy(buf, arg, len);
    buf[len] = '\0';
    for (char *save, *t = strtok_r(buf, " ", &save); t && nw < STATS_MAX_WORDS;
         t = strtok_r(NULL, " ", &save))
        w[nw++] = t;

    if (nw == 0)
        stats_general(o);
    else if (word_is(w[0], "settings"))
        stats_settings(o);
    else if (word_is(w[0], "reset"))
        stats_reset(o);
    else if (word_is(w[0], "detail"))
        stats_detail(o, w[1]);
    else if (word_is(w[0], "items"))
        stats_items(o);
    else if (word_is(w[0], "slabs"))
        stats_slabs(o);
    else if (word_is(w[0], "sizes"))
        stats_sizes(o);
    else if (word_is(w[0], "cachedump"))
        stats_cachedump(o, w[1], w[2]);
    else if (word_is(w[0], "conns"))
        stat_end(o, "END\r\n");
    else if (word_is(w[0], "log"))
        stats_log(o);
    else if (word_is(w[0], "repl"))
        stats_repl(o);
    else
        stat_fail(o, "ERROR\r\n");
}

void
stats_reply(struct conn *c, const char *arg, size_t len)
{
    struct stat_out o = {.c = c};
    stats_group(&o, arg, len);
}

void
stats_reply_bin(struct conn *c, const char *arg, size_t len,
                const struct out_bin *b)
{
    struct stat_out o = {.c = c, .b = b};
    stats_group(&o, arg, len);
}
