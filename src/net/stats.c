/*
 * stats: memcached's "stats" family.
 *
 *   stats           memcached's general figures, so that dashboards and
 *                   exporters keep working. Counters are per worker (each
 *                   written by its own thread only) and summed here.
 *                   limit_maxbytes is the size of the file system that
 *                   holds the data directory (mcdb's capacity is the disk,
 *                   not RAM); evictions is always 0; get_expired and
 *                   get_flushed are 0 (the engine reports both as misses).
 *                   idle_kicks counts connections --idle-timeout closed
 *                   (memcached's name); conn_memory_bytes is what client
 *                   connections hold for requests and replies (as of
 *                   their last receive or send), conn_memory_kicks the
 *                   connections closed because all of them together held
 *                   more than --conn-memory-limit.
 *   stats settings  every option (net.h's table) with its value
 *   stats reset     zeroes the counters: the current sums become a baseline
 *                   that later sums subtract, so no worker is written to
 *   stats log       the engine's figures (store.h's STORE_STATS table) and
 *                   the text of its error, "none" when healthy
 *   stats repl      replication: the role, the log and its epoch, and the
 *                   link (a replica) or every replica (a primary), in
 *                   plain units (repl_stats)
 *   stats items, slabs, sizes, conns: empty (no slab allocator); anything
 *   else: ERROR, as memcached.
 */
#include "net/net_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

static void
stat_u64(struct conn *c, const char *name, uint64_t v)
{
    out_printf(c, "STAT %s %" PRIu64 "\r\n", name, v);
}

static void
stat_str(void *arg, const char *name, const char *value)
{
    out_printf(arg, "STAT %s %s\r\n", name, value);
}

static void
stat_u64_cb(void *arg, const char *name, uint64_t v)
{
    stat_u64(arg, name, v);
}

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
stats_general(struct conn *c)
{
    struct net *net = c->w->net;
    struct net_sums v;
    stats_counters(net, &v);
    struct store_stats st;
    store_stats(net->store, &st);
    unsigned curr = 0;
    uint64_t conn_mem = 0;
    for (unsigned i = 0; i < net->nworkers; i++) {
        curr += atomic_load_explicit(&net->workers[i].curr_conns,
                                     memory_order_relaxed);
        conn_mem +=
            atomic_load_explicit(&net->workers[i].mem, memory_order_relaxed);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct statvfs vfs;
    uint64_t capacity = 0;
    if (statvfs(net->cfg.data_dir, &vfs) == 0)
        capacity = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    uint32_t now = store_now(net->store);

    stat_u64(c, "pid", (uint64_t)getpid());
    stat_u64(c, "uptime", now - (uint32_t)net->started);
    stat_u64(c, "time", now);
    out_str(c, "STAT version " NET_VERSION "\r\n");
    stat_u64(c, "pointer_size", 8 * sizeof(void *));
    out_printf(c, "STAT rusage_user %ld.%06ld\r\n", (long)ru.ru_utime.tv_sec,
               (long)ru.ru_utime.tv_usec);
    out_printf(c, "STAT rusage_system %ld.%06ld\r\n", (long)ru.ru_stime.tv_sec,
               (long)ru.ru_stime.tv_usec);
    stat_u64(c, "max_connections", net->cfg.max_connections);
    stat_u64(c, "curr_connections", curr);
    stat_u64(c, "connection_structures", curr);
    stat_u64(c, "conn_memory_bytes", conn_mem);
#define X(name) stat_u64(c, #name, v.name);
    NET_COUNTERS(X)
#undef X
    stat_u64(c, "limit_maxbytes", capacity);
    stat_u64(c, "threads", net->nworkers);
    stat_u64(c, "curr_items", st.items);
    stat_u64(c, "bytes", st.live_bytes);
    stat_u64(c, "evictions", 0);
    out_str(c, "END\r\n");
}

static void
stats_settings(struct conn *c)
{
    net_config_each(&c->w->net->cfg, stat_str, c);
    out_str(c, "STAT auth_enabled_sasl no\r\n"
               "STAT udpport 0\r\n"
               "STAT cas_enabled yes\r\n"
               "STAT evictions off\r\n"
               "STAT binding_protocol ascii\r\n"
               "END\r\n");
}

static void
stats_log(struct conn *c)
{
    store_t *s = c->w->net->store;
    struct store_stats st;
    store_stats(s, &st);
    store_stats_each(&st, stat_u64_cb, c);
    const char *e = store_error_text(s);
    out_printf(c, "STAT error_text %s\r\nEND\r\n", e && e[0] ? e : "none");
}

static void
stats_repl(struct conn *c)
{
    if (c->w->net->repl)
        repl_stats(c->w->net->repl, stat_str, c);
    out_str(c, "END\r\n");
}

static void
stats_reset(struct conn *c)
{
    struct net *net = c->w->net;
    struct net_sums now;
    worker_sum(net, &now);
    pthread_mutex_lock(&net->lock);
    net->baseline = now;
    pthread_mutex_unlock(&net->lock);
    if (net->repl)
        repl_stats_reset(net->repl);
    out_str(c, "RESET\r\n");
}

static bool
arg_is(const char *arg, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(arg, word, len) == 0;
}

void
stats_reply(struct conn *c, const char *arg, size_t len)
{
    if (len == 0)
        stats_general(c);
    else if (arg_is(arg, len, "settings"))
        stats_settings(c);
    else if (arg_is(arg, len, "reset"))
        stats_reset(c);
    else if (arg_is(arg, len, "log"))
        stats_log(c);
    else if (arg_is(arg, len, "repl"))
        stats_repl(c);
    else if (arg_is(arg, len, "items") || arg_is(arg, len, "slabs") ||
             arg_is(arg, len, "sizes") || arg_is(arg, len, "conns"))
        out_str(c, "END\r\n");
    else
        out_str(c, "ERROR\r\n");
}
