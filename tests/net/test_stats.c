/*
 * The "stats" family as dashboards and exporters read it: memcached 1.6.18's
 * names, shapes and terminators, and counters that move. The names of
 * "stats" and "stats settings" are compared with memcached's, and every
 * difference is listed below with its reason.
 *
 *   build/tests/test_net_stats                                   mcdbd
 *   MCDB_TEST_TARGET=memcached build/tests/test_net_stats        the reference
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

TG_SUITE_NEEDS(0)

TG_CONNECTED_SUITE(stats, 60);

/* ---- the names, and why they differ ---- */

struct why {
    const char *name, *why;
};

/* memcached 1.6.18's "stats", as tg_start runs it (no idle timeout, no
 * extstore, no TLS), in its order. */
static const char *const mc_stats[] = {"pid",
                                       "uptime",
                                       "time",
                                       "version",
                                       "libevent",
                                       "pointer_size",
                                       "rusage_user",
                                       "rusage_system",
                                       "max_connections",
                                       "curr_connections",
                                       "total_connections",
                                       "rejected_connections",
                                       "connection_structures",
                                       "response_obj_oom",
                                       "response_obj_count",
                                       "response_obj_bytes",
                                       "read_buf_count",
                                       "read_buf_bytes",
                                       "read_buf_bytes_free",
                                       "read_buf_oom",
                                       "reserved_fds",
                                       "cmd_get",
                                       "cmd_set",
                                       "cmd_flush",
                                       "cmd_touch",
                                       "cmd_meta",
                                       "get_hits",
                                       "get_misses",
                                       "get_expired",
                                       "get_flushed",
                                       "delete_misses",
                                       "delete_hits",
                                       "incr_misses",
                                       "incr_hits",
                                       "decr_misses",
                                       "decr_hits",
                                       "cas_misses",
                                       "cas_hits",
                                       "cas_badval",
                                       "touch_hits",
                                       "touch_misses",
                                       "store_too_large",
                                       "store_no_memory",
                                       "auth_cmds",
                                       "auth_errors",
                                       "bytes_read",
                                       "bytes_written",
                                       "limit_maxbytes",
                                       "accepting_conns",
                                       "listen_disabled_num",
                                       "time_in_listen_disabled_us",
                                       "threads",
                                       "conn_yields",
                                       "hash_power_level",
                                       "hash_bytes",
                                       "hash_is_expanding",
                                       "slab_reassign_rescues",
                                       "slab_reassign_chunk_rescues",
                                       "slab_reassign_evictions_nomem",
                                       "slab_reassign_inline_reclaim",
                                       "slab_reassign_busy_items",
                                       "slab_reassign_busy_deletes",
                                       "slab_reassign_running",
                                       "slabs_moved",
                                       "lru_crawler_running",
                                       "lru_crawler_starts",
                                       "lru_maintainer_juggles",
                                       "malloc_fails",
                                       "log_worker_dropped",
                                       "log_worker_written",
                                       "log_watcher_skipped",
                                       "log_watcher_sent",
                                       "log_watchers",
                                       "unexpected_napi_ids",
                                       "round_robin_fallback",
                                       "bytes",
                                       "curr_items",
                                       "total_items",
                                       "slab_global_page_pool",
                                       "expired_unfetched",
                                       "evicted_unfetched",
                                       "evicted_active",
                                       "evictions",
                                       "reclaimed",
                                       "crawler_reclaimed",
                                       "crawler_items_checked",
                                       "lrutail_reflocked",
                                       "moves_to_cold",
                                       "moves_to_warm",
                                       "moves_within_lru",
                                       "direct_reclaims",
                                       "lru_bumps_dropped",
                                       NULL};

static const struct why stats_only_memcached[] = {
    {"libevent", "mcdbd has no libevent: its workers run io_uring"},
    {NULL, NULL}};

static const struct why stats_only_mcdb[] = {
    {"conn_memory_bytes", "what client connections hold (no memcached "
                          "equivalent in one figure)"},
    {"conn_memory_kicks", "connections closed past --conn-memory-limit"},
    {"value_cache_bytes", "--value-cache: mcdb reads values from disk"},
    {"value_cache_hits", "gets answered from --value-cache"},
    {"value_cache_misses", "gets that read the log"},
    {"value_cache_evictions", "entries --value-cache dropped for room"},
    {NULL, NULL}};

/* memcached 1.6.18's "stats settings" as tg_start runs it. */
static const char *const mc_settings[] = {"maxbytes",
                                          "maxconns",
                                          "tcpport",
                                          "udpport",
                                          "inter",
                                          "verbosity",
                                          "oldest",
                                          "evictions",
                                          "domain_socket",
                                          "umask",
                                          "shutdown_command",
                                          "growth_factor",
                                          "chunk_size",
                                          "num_threads",
                                          "num_threads_per_udp",
                                          "stat_key_prefix",
                                          "detail_enabled",
                                          "reqs_per_event",
                                          "cas_enabled",
                                          "tcp_backlog",
                                          "binding_protocol",
                                          "auth_enabled_sasl",
                                          "auth_enabled_ascii",
                                          "item_size_max",
                                          "maxconns_fast",
                                          "hashpower_init",
                                          "slab_reassign",
                                          "slab_automove",
                                          "slab_automove_ratio",
                                          "slab_automove_window",
                                          "slab_chunk_max",
                                          "lru_crawler",
                                          "lru_crawler_sleep",
                                          "lru_crawler_tocrawl",
                                          "tail_repair_time",
                                          "flush_enabled",
                                          "dump_enabled",
                                          "hash_algorithm",
                                          "lru_maintainer_thread",
                                          "lru_segmented",
                                          "hot_lru_pct",
                                          "warm_lru_pct",
                                          "hot_max_factor",
                                          "warm_max_factor",
                                          "temp_lru",
                                          "temporary_ttl",
                                          "idle_timeout",
                                          "watcher_logbuf_size",
                                          "worker_logbuf_size",
                                          "read_buf_mem_limit",
                                          "track_sizes",
                                          "inline_ascii_response",
                                          "ext_item_size",
                                          "ext_item_age",
                                          "ext_low_ttl",
                                          "ext_recache_rate",
                                          "ext_wbuf_size",
                                          "ext_compact_under",
                                          "ext_drop_under",
                                          "ext_max_sleep",
                                          "ext_max_frag",
                                          "slab_automove_freeratio",
                                          "ext_drop_unread",
                                          "ssl_enabled",
                                          "ssl_chain_cert",
                                          "ssl_key",
                                          "ssl_verify_mode",
                                          "ssl_keyformat",
                                          "ssl_ciphers",
                                          "ssl_ca_cert",
                                          "ssl_wbuf_size",
                                          "ssl_session_cache",
                                          "ssl_kernel_tls",
                                          "ssl_min_version",
                                          "num_napi_ids",
                                          "memory_file",
                                          NULL};

#define SLAB "no slab allocator"
#define LRU "no LRU: mcdb never evicts"
#define EXT "no extstore: values live in mcdb's log"
#define TLS "no TLS: ssl_enabled no"
static const struct why settings_only_memcached[] = {
    {"oldest", "flush_all is a record in mcdb's log, not a time"},
    {"umask", "no unix socket"},
    {"num_threads_per_udp", "no UDP"},
    {"reqs_per_event", "no per-event request quota (conn_yields counts "
                       "backpressure instead)"},
    {"growth_factor", SLAB},
    {"chunk_size", SLAB},
    {"hashpower_init", "the index is sharded, not one power-of-two table"},
    {"hash_algorithm", "the index's hash is not configurable"},
    {"slab_reassign", SLAB},
    {"slab_automove", SLAB},
    {"slab_automove_ratio", SLAB},
    {"slab_automove_window", SLAB},
    {"slab_chunk_max", SLAB},
    {"slab_automove_freeratio", SLAB},
    {"lru_crawler", LRU},
    {"lru_crawler_sleep", LRU},
    {"lru_crawler_tocrawl", LRU},
    {"tail_repair_time", LRU},
    {"lru_maintainer_thread", LRU},
    {"lru_segmented", LRU},
    {"hot_lru_pct", LRU},
    {"warm_lru_pct", LRU},
    {"hot_max_factor", LRU},
    {"warm_max_factor", LRU},
    {"temp_lru", LRU},
    {"temporary_ttl", LRU},
    {"watcher_logbuf_size", "no watch logger"},
    {"worker_logbuf_size", "no watch logger"},
    {"read_buf_mem_limit", "conn_memory_limit is mcdb's (requests and "
                           "replies together)"},
    {"inline_ascii_response", "a memcached build option"},
    {"ext_item_size", EXT},
    {"ext_item_age", EXT},
    {"ext_low_ttl", EXT},
    {"ext_recache_rate", EXT},
    {"ext_wbuf_size", EXT},
    {"ext_compact_under", EXT},
    {"ext_drop_under", EXT},
    {"ext_max_sleep", EXT},
    {"ext_max_frag", EXT},
    {"ext_drop_unread", EXT},
    {"ssl_chain_cert", TLS},
    {"ssl_key", TLS},
    {"ssl_verify_mode", TLS},
    {"ssl_keyformat", TLS},
    {"ssl_ciphers", TLS},
    {"ssl_ca_cert", TLS},
    {"ssl_wbuf_size", TLS},
    {"ssl_session_cache", TLS},
    {"ssl_kernel_tls", TLS},
    {"ssl_min_version", TLS},
    {"num_napi_ids", "no NAPI id steering"},
    {"memory_file", "no memory file: the data is on disk"},
    {NULL, NULL}};

#define OPT "mcdbd's own option"
static const struct why settings_only_mcdb[] = {{"conn_memory_limit", OPT},
                                                {"data_dir", OPT},
                                                {"fsync", OPT},
                                                {"segment_size", OPT},
                                                {"compact_garbage", OPT},
                                                {"compact_rate", OPT},
                                                {"preallocate", OPT},
                                                {"direct_reads", OPT},
                                                {"value_cache", OPT},
                                                {"replica_of", OPT},
                                                {"sync_replicas", OPT},
                                                {"sync_timeout_ms", OPT},
                                                {"repl_secret_file", OPT},
                                                {"repl_backlog_ttl", OPT},
                                                {"replica_serve_stale", OPT},
                                                {NULL, NULL}};

static bool
listed(const char *name, const struct why *list)
{
    for (; list->name; list++)
        if (strcmp(list->name, name) == 0)
            return true;
    return false;
}

static bool
in_names(const char *name, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(*names, name) == 0)
            return true;
    return false;
}

/* The names of a "stats" reply's STAT lines (malloc'd, NULL-terminated). */
static char **
stat_names(const char *all)
{
    size_t n = 0, cap = 256;
    char **names = calloc(cap, sizeof(*names));
    for (const char *p = all; (p = strstr(p, "STAT ")) != NULL;) {
        p += 5;
        size_t len = strcspn(p, " \r");
        if (n + 2 > cap)
            names = realloc(names, (cap *= 2) * sizeof(*names));
        names[n++] = strndup(p, len);
        names[n] = NULL;
    }
    return names;
}

static void
free_names(char **names)
{
    for (char **p = names; *p; p++)
        free(*p);
    free(names);
}

/*
 * The reply's names are memcached's, less what mcdb leaves out and plus
 * what it adds (against memcached: exactly memcached's, which proves the
 * lists above). Every difference is named in one message.
 */
static void
names_match(const char *group, const char *const *mc, const struct why *only_mc,
            const struct why *only_mcdb, bool ordered)
{
    char *all = tg_stats(fd, group);
    cr_assert(all, "no reply to stats %s", group ? group : "");
    char **got = stat_names(all);
    bool is_mc = tg_is_memcached();
    char missing[4096] = "", extra[4096] = "";
    for (const char *const *m = mc; *m; m++) {
        bool want = is_mc || !listed(*m, only_mc);
        if (want && !in_names(*m, (const char *const *)got))
            snprintf(missing + strlen(missing),
                     sizeof(missing) - strlen(missing), " %s", *m);
    }
    if (!is_mc)
        for (const struct why *w = only_mcdb; w->name; w++)
            if (!in_names(w->name, (const char *const *)got))
                snprintf(missing + strlen(missing),
                         sizeof(missing) - strlen(missing), " %s", w->name);
    for (char **g = got; *g; g++) {
        bool want = in_names(*g, mc) ? is_mc || !listed(*g, only_mc)
                                     : !is_mc && listed(*g, only_mcdb);
        if (!want)
            snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
                     " %s", *g);
    }
    /* the names both print come in memcached's order */
    const char *const *m = mc;
    char *order = NULL;
    for (char **g = got; ordered && *g && !order; g++) {
        if (!in_names(*g, mc))
            continue;
        while (*m && strcmp(*m, *g) != 0)
            m++;
        if (!*m)
            order = strdup(*g);
    }
    free_names(got);
    free(all);
    cr_assert(!order, "stats %s on %s: %s is out of memcached's order",
              group ? group : "", tg_name(), order);
    cr_assert(!missing[0] && !extra[0],
              "stats %s on %s: missing%s; not expected%s", group ? group : "",
              tg_name(), missing[0] ? missing : " none",
              extra[0] ? extra : " none");
}

Test(stats, names_are_memcacheds_in_its_order_but_for_the_listed_differences)
{
    names_match(NULL, mc_stats, stats_only_memcached, stats_only_mcdb, true);
}

Test(stats, settings_names_are_memcacheds_but_for_the_listed_differences)
{
    /* in any order: mcdbd's options come first, from their table */
    names_match("settings", mc_settings, settings_only_memcached,
                settings_only_mcdb, false);
}

/* ---- values and units ---- */

static long long
stat(const char *name)
{
    return tg_stat(fd, NULL, name);
}

/* The text of one field of "stats <group>" (malloc'd), NULL if absent. */
static char *
stat_text(const char *group, const char *name)
{
    char *all = tg_stats(fd, group);
    cr_assert(all);
    char pat[128];
    snprintf(pat, sizeof(pat), "STAT %s ", name);
    char *p = strstr(all, pat), *v = NULL;
    if (p)
        v = strndup(p + strlen(pat), strcspn(p + strlen(pat), "\r"));
    free(all);
    return v;
}

Test(stats, general_fields_have_memcacheds_units)
{
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "rusage_system" : "rusage_user";
        char *v = stat_text(NULL, name);
        cr_assert(v, "no %s", name);
        const char *dot = strchr(v, '.');
        cr_assert(dot && strlen(dot + 1) == 6 &&
                      strspn(v, "0123456789.") == strlen(v),
                  "%s is \"%s\", not seconds.microseconds", name, v);
        free(v);
    }
    cr_assert_eq(stat("accepting_conns"), 1);
    long long threads = stat("threads");
    cr_assert(threads >= 1 && threads == tg_stat(fd, "settings", "num_threads"),
              "threads %lld", threads);
    cr_assert_gt(stat("limit_maxbytes"), 0);
    long long up = stat("uptime"), now = stat("time");
    cr_assert(up >= 0 && up < 60, "uptime %lld", up);
    cr_assert(llabs(now - (long long)time(NULL)) <= 2, "time %lld", now);
    cr_assert_eq(stat("pointer_size"), (long long)(8 * sizeof(void *)));
    cr_assert_eq(stat("evictions"), 0);
}

Test(stats, counters_move_with_the_traffic)
{
    long long rd = stat("bytes_read"), wr = stat("bytes_written");
    long long get = stat("cmd_get"), big = stat("store_too_large");
    long long items = stat("curr_items"), bytes = stat("bytes");
    tg_expect(fd, "set k 0 0 5\r\nhello\r\n", "STORED\r\n");
    tg_expect(fd, "get k nokey\r\n", "VALUE k 0 5\r\nhello\r\nEND\r\n");
    /* 2 MB over the default 1 MB limit: refused and swallowed. */
    size_t n = 2u << 20;
    char *req = malloc(n + 64);
    int h = snprintf(req, 64, "set big 0 0 %zu\r\n", n);
    memset(req + h, 'x', n);
    memcpy(req + h + n, "\r\n", 2);
    tg_expect_n(fd, req, (size_t)h + n + 2,
                "SERVER_ERROR object too large for cache\r\n", 41);
    free(req);
    tg_expect(fd, "get big\r\n", "END\r\n");
    cr_assert_eq(stat("cmd_get"), get + 3, "cmd_get counts keys");
    cr_assert_eq(stat("store_too_large"), big + 1, "store_too_large");
    cr_assert_gt(stat("bytes_read"), rd + (long long)n, "bytes_read");
    cr_assert_gt(stat("bytes_written"), wr, "bytes_written");
    cr_assert_eq(stat("curr_items"), items + 1, "curr_items");
    cr_assert_gt(stat("bytes"), bytes, "bytes");
}

Test(stats, cmd_meta_counts_every_meta_command)
{
    if (tg_is_memcached())
        cr_skip_test("memcached 1.6.18 counts only me in cmd_meta");
    long long meta = stat("cmd_meta");
    tg_expect(fd, "ms m 1\r\nx\r\nmg m v\r\nmn\r\n",
              "HD\r\nVA 1\r\nx\r\nMN\r\n");
    cr_assert_eq(stat("cmd_meta"), meta + 3);
}

/* ---- the other groups' shapes ---- */

/* Every line "STAT <name> <value>", then END. */
static void
assert_stat_lines(const char *group, const char *all)
{
    const char *p = all;
    while (strncmp(p, "END\r\n", 5) != 0) {
        cr_assert(strncmp(p, "STAT ", 5) == 0, "stats %s: \"%s\"", group, p);
        const char *eol = strstr(p, "\r\n");
        cr_assert(eol, "stats %s: unterminated line", group);
        const char *sp = memchr(p + 5, ' ', (size_t)(eol - p - 5));
        cr_assert(sp && sp > p + 5 && sp + 1 < eol,
                  "stats %s: \"%.*s\" is not STAT name value", group,
                  (int)(eol - p), p);
        p = eol + 2;
    }
    cr_assert_str_eq(p, "END\r\n", "stats %s goes on after END", group);
}

Test(stats, items_lists_class_1_in_memcacheds_shape)
{
    tg_expect(fd, "stats items\r\n", "END\r\n"); /* no item, no class */
    tg_expect(fd, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
    char *all = tg_stats(fd, "items");
    cr_assert(all);
    assert_stat_lines("items", all);
    static const char *const names[] = {"number",
                                        "number_hot",
                                        "number_warm",
                                        "number_cold",
                                        "age_hot",
                                        "age_warm",
                                        "age",
                                        "mem_requested",
                                        "evicted",
                                        "evicted_nonzero",
                                        "evicted_time",
                                        "outofmemory",
                                        "tailrepairs",
                                        "reclaimed",
                                        "expired_unfetched",
                                        "evicted_unfetched",
                                        "evicted_active",
                                        "crawler_reclaimed",
                                        "crawler_items_checked",
                                        "lrutail_reflocked",
                                        "moves_to_cold",
                                        "moves_to_warm",
                                        "moves_within_lru",
                                        "direct_reclaims",
                                        "hits_to_hot",
                                        "hits_to_warm",
                                        "hits_to_cold",
                                        "hits_to_temp"};
    char **got = stat_names(all);
    size_t n = 0;
    for (; got[n]; n++) {
        cr_assert(n < sizeof(names) / sizeof(*names), "extra %s", got[n]);
        char want[64];
        snprintf(want, sizeof(want), "items:1:%s", names[n]);
        cr_assert_str_eq(got[n], want);
    }
    cr_assert_eq(n, sizeof(names) / sizeof(*names));
    free_names(got);
    free(all);
    char *num = stat_text("items", "items:1:number");
    cr_assert_str_eq(num, "1");
    free(num);
}

Test(stats, slabs_and_sizes_answer_in_memcacheds_shape)
{
    tg_expect(fd, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
    char *all = tg_stats(fd, "slabs");
    cr_assert(all);
    assert_stat_lines("slabs", all);
    cr_assert(strstr(all, "STAT active_slabs ") &&
                  strstr(all, "STAT total_malloced "),
              "stats slabs: %s", all);
    free(all);
    tg_expect(fd, "stats sizes\r\n", "STAT sizes_status disabled\r\nEND\r\n");
}

/* ---- stats detail ---- */

Test(stats, detail_counts_gets_hits_sets_and_deletes_by_prefix)
{
    tg_expect(fd, "set a:1 0 0 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "stats detail dump\r\n", "END\r\n"); /* off: nothing */
    tg_expect(fd, "stats detail on\r\n", "OK\r\n");
    char *v = stat_text("settings", "detail_enabled");
    cr_assert_str_eq(v, "yes");
    free(v);
    tg_expect(fd, "get a:1 a:2\r\n", "VALUE a:1 0 1\r\nx\r\nEND\r\n");
    tg_expect(fd, "set a:3 0 0 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "delete a:5\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "incr a:3 1\r\n",
              "CLIENT_ERROR cannot increment or decrement non-numeric "
              "value\r\n");
    tg_expect(fd, "touch a:1 0\r\n", "TOUCHED\r\n");
    tg_expect(fd, "set nokeyprefix 0 0 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "stats detail dump\r\n",
              "PREFIX a get 2 hit 1 set 1 del 1\r\nEND\r\n");
    tg_expect(fd, "stats detail off\r\n", "OK\r\n");
    tg_expect(fd, "get a:1\r\n", "VALUE a:1 0 1\r\nx\r\nEND\r\n");
    tg_expect(fd, "stats detail dump\r\n",
              "PREFIX a get 2 hit 1 set 1 del 1\r\nEND\r\n");
    tg_expect(fd, "stats reset\r\n", "RESET\r\n");
    tg_expect(fd, "stats detail dump\r\n", "END\r\n");
}

Test(stats, detail_without_on_off_or_dump_is_a_usage_error)
{
    tg_expect(fd, "stats detail\r\n",
              "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
    tg_expect(fd, "stats detail foo\r\n",
              "CLIENT_ERROR usage: stats detail on|off|dump\r\n");
    tg_expect_quiet(fd);
}

/* ---- groups that must end, so that no client waits for ever ---- */

Test(stats, cachedump_ends_with_end_or_memcacheds_error)
{
    tg_expect(fd, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
    /* tg_connect's 5 s receive timeout turns a hang into a failure */
    tg_expect(fd, "stats cachedump\r\n", "CLIENT_ERROR bad command line\r\n");
    tg_expect(fd, "stats cachedump 1\r\n", "CLIENT_ERROR bad command line\r\n");
    tg_expect(fd, "stats cachedump x 1\r\n",
              "CLIENT_ERROR bad command line format\r\n");
    tg_expect(fd, "stats cachedump 1 -1\r\n",
              "CLIENT_ERROR bad command line format\r\n");
    tg_expect(fd, "stats cachedump 64 1\r\n",
              "CLIENT_ERROR Illegal slab id\r\n");
    tg_expect(fd, "stats cachedump 7 10\r\n", "END\r\n");
    tg_expect_quiet(fd);
}

Test(stats, an_unknown_group_is_an_error_not_silence)
{
    tg_expect(fd, "stats nosuch\r\n", "ERROR\r\n");
    tg_expect(fd, "stats nosuch with words\r\n", "ERROR\r\n");
    tg_expect_quiet(fd);
}

/* ---- stats reset ---- */

Test(stats, reset_zeroes_counters_but_not_what_is_stored_or_open)
{
    tg_expect(fd, "set k 0 0 1\r\nx\r\nget k\r\n",
              "STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
    tg_expect(fd, "stats reset\r\n", "RESET\r\n");
    cr_assert_eq(stat("cmd_get"), 0);
    cr_assert_eq(stat("cmd_set"), 0);
    cr_assert_eq(stat("get_hits"), 0);
    cr_assert_eq(stat("total_items"), 0);
    cr_assert_eq(stat("total_connections"), 0);
    cr_assert_eq(stat("curr_items"), 1);
    cr_assert_gt(stat("bytes"), 0);
    cr_assert_geq(stat("curr_connections"), 1);
}

/* ---- mcdbd's own ways to move the counters ---- */

Test(stats, a_connection_past_max_connections_counts_as_rejected)
{
    if (tg_is_memcached())
        cr_skip_test("tg_start gives memcached no --max-connections");
    struct th_server s = {0};
    cr_assert_eq(
        th_mcdbd_start(&s, NULL, (const char *const[]){"-c", "1", NULL}), 0);
    /* The start-up probe's connection may still hold the one slot: retry
     * until a connection is served. */
    int a = -1;
    for (int i = 0; i < 50 && a < 0; i++) {
        a = tg_connect(s.port);
        char *m = a >= 0 ? tg_check_quiet(a) : strdup("no connect");
        if (m) {
            free(m);
            if (a >= 0)
                close(a);
            a = -1;
            usleep(50 * 1000);
        }
    }
    cr_assert(a >= 0, "mcdbd -c 1 served no connection");
    long long before = tg_stat(a, NULL, "rejected_connections");
    int b = tg_connect(s.port);
    cr_assert(b >= 0);
    char *got = NULL;
    cr_assert_eq(tg_wait_closed(b, 5000, &got, NULL), 1,
                 "a second connection was kept past -c 1");
    cr_assert(got && strcmp(got, "ERROR Too many open connections\r\n") == 0,
              "the refused client read \"%s\"", got ? got : "");
    free(got);
    close(b);
    cr_assert_eq(tg_stat(a, NULL, "rejected_connections"), before + 1);
    cr_assert_eq(tg_stat(a, NULL, "accepting_conns"), 1);
    close(a);
    th_server_cleanup(&s);
}

Test(stats, a_client_that_does_not_read_its_replies_counts_a_yield)
{
    if (tg_is_memcached())
        cr_skip_test("memcached's conn_yields counts its -R quota instead");
    /* 100 KB value, 400 gets of it unread: far past the output limit */
    size_t n = 100u << 10;
    char *req = malloc(n + 64);
    int h = snprintf(req, 64, "set v 0 0 %zu\r\n", n);
    memset(req + h, 'v', n);
    memcpy(req + h + n, "\r\n", 2);
    tg_expect_n(fd, req, (size_t)h + n + 2, "STORED\r\n", 8);
    free(req);
    int c = tg_connect(srv.port);
    cr_assert(c >= 0);
    int small = 4096;
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    for (int i = 0; i < 400; i++)
        cr_assert_eq(send(c, "get v\r\n", 7, MSG_NOSIGNAL), 7);
    long long y = 0;
    for (int i = 0; i < 100 && y == 0; i++) {
        usleep(20 * 1000);
        y = stat("conn_yields");
    }
    cr_assert_geq(y, 1, "conn_yields stayed 0");
    close(c);
}
