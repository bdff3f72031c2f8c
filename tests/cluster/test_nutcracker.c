/*
 * Scale-out behind twemproxy (nutcracker): three primaries and Debian's
 * nutcracker 0.5.0 on loopback, configured as docs/nutcracker.yml is (ketama
 * over md5, auto_eject_hosts: false, node names). Keys written through the
 * proxy with libmemcached must be on the primary that ketama names, as a
 * ketama-aware client computes it (libmemcached's weighted ketama), and on
 * no other; a primary killed with kill -9 and started again under load comes
 * back with every write it acknowledged, and the writes meant for it while it
 * was down failed instead of landing on another primary.
 *
 *   build/tests/test_cluster_nutcracker
 *   MCDB_TEST_TARGET=memcached build/tests/test_cluster_nutcracker
 *
 * Against memcached only the placement tests run (a restarted memcached has
 * nothing to come back with). Skipped (exit 77) without nutcracker
 * (apt-get install nutcracker) or libmemcached.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/server.h"
#include "helpers/target.h"

#ifndef MCDB_HAVE_LIBMEMCACHED

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    fprintf(stderr, "SKIP: built without libmemcached "
                    "(apt-get install libmemcached-dev)\n");
    exit(77);
}
Test(nutcracker, needs_libmemcached)
{
}

#else

#include <libmemcached/memcached.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    tg_require(0);
    if (!th_installed("nutcracker")) {
        fprintf(stderr, "SKIP: nutcracker is not installed "
                        "(apt-get install nutcracker)\n");
        exit(77);
    }
}

TestSuite(nutcracker, .timeout = 120);

#define NODES 3

/*
 * Three primaries behind one nutcracker. With names, node i is called
 * "mcdb<i+1>" in the proxy's config, and ketama hashes that name instead of
 * the address: a ketama-aware client that knows the nodes by those host
 * names on port 11211 (which libmemcached leaves out of the hashed string)
 * places keys the same way, wherever the nodes really are.
 */
struct cluster {
    struct th_server node[NODES];
    struct th_server proxy;
    char *dir; /* the proxy's config, pid file and log */
    char conf[512], proxy_log[512];
    bool named;
    memcached_st *ring;          /* placement only: never connects */
    memcached_st *direct[NODES]; /* a client of each primary */
};

/* Placement is the same whatever --fsync does; the restart test needs
 * always (the default), where STORED means on disk. */
static const char *const placement_args[] = {"--fsync", "never", NULL};
static const char *const mcdbd_args[] = {"--fsync", "always", NULL};

static void
write_conf(struct cluster *c)
{
    FILE *f = fopen(c->conf, "w");
    cr_assert(f, "cannot write %s", c->conf);
    fprintf(f,
            "mcdb:\n"
            "  listen: 127.0.0.1:%d\n"
            "  hash: md5\n"
            "  distribution: ketama\n"
            "  auto_eject_hosts: false\n"
            "  timeout: 2000\n"
            "  servers:\n",
            c->proxy.port);
    for (int i = 0; i < NODES; i++) {
        if (c->named)
            fprintf(f, "   - 127.0.0.1:%d:1 mcdb%d\n", c->node[i].port, i + 1);
        else
            fprintf(f, "   - 127.0.0.1:%d:1\n", c->node[i].port);
    }
    fclose(f);
}

static void
print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

static void
proxy_start(struct cluster *c)
{
    char pidfile[512], stats_port[16];
    snprintf(pidfile, sizeof(pidfile), "%s/nutcracker.pid", c->dir);
    snprintf(stats_port, sizeof(stats_port), "%d", th_free_port());
    c->proxy.port = th_free_port();
    write_conf(c);
    /* --stats-addr: nutcracker's stats port listens on 0.0.0.0 by default */
    const char *argv[] = {"nutcracker",   "--conf-file",  c->conf,
                          "--pid-file",   pidfile,        "--output",
                          c->proxy_log,   "--stats-port", stats_port,
                          "--stats-addr", "127.0.0.1",    NULL};
    if (th_server_start(&c->proxy, argv) != 0) {
        print_file(c->conf);
        print_file(c->proxy_log);
        cr_assert_fail("nutcracker did not start");
    }
}

static void
cluster_start(struct cluster *c, bool named, const char *const *args)
{
    memset(c, 0, sizeof(*c));
    c->named = named;
    c->dir = th_tmpdir();
    snprintf(c->conf, sizeof(c->conf), "%s/nutcracker.yml", c->dir);
    snprintf(c->proxy_log, sizeof(c->proxy_log), "%s/nutcracker.log", c->dir);
    for (int i = 0; i < NODES; i++)
        cr_assert_eq(tg_start(&c->node[i], args), 0, "%s %d did not start",
                     tg_name(), i);
    proxy_start(c);

    /* MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED: libmemcached's ketama with md5
     * for the key and 160 points a node (40 digests of "<name>-<i>", four
     * points each), as nutcracker builds its continuum */
    c->ring = memcached_create(NULL);
    cr_assert(c->ring);
    memcached_behavior_set(c->ring, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
    for (int i = 0; i < NODES; i++) {
        char name[16];
        snprintf(name, sizeof(name), "mcdb%d", i + 1);
        memcached_return_t rc =
            named ? memcached_server_add(c->ring, name, 11211)
                  : memcached_server_add(c->ring, "127.0.0.1",
                                         (in_port_t)c->node[i].port);
        cr_assert_eq(rc, MEMCACHED_SUCCESS);
        c->direct[i] = memcached_create(NULL);
        cr_assert_eq(memcached_server_add(c->direct[i], "127.0.0.1",
                                          (in_port_t)c->node[i].port),
                     MEMCACHED_SUCCESS);
    }
}

static void
cluster_stop(struct cluster *c)
{
    for (int i = 0; i < NODES; i++) {
        if (c->direct[i])
            memcached_free(c->direct[i]);
        tg_report_death(&c->node[i]);
        th_server_cleanup(&c->node[i]);
    }
    if (c->ring)
        memcached_free(c->ring);
    if (c->proxy.pid && getenv("MCDB_KEEP_TEST_DIRS"))
        print_file(c->proxy_log);
    th_server_cleanup(&c->proxy);
    th_rmrf(c->dir);
    free(c->dir);
}

/* The node that ketama places key on. */
static int
owner(struct cluster *c, const char *key)
{
    uint32_t i = memcached_generate_hash(c->ring, key, strlen(key));
    cr_assert_lt(i, NODES);
    return (int)i;
}

/* A client of the proxy. */
static memcached_st *
proxy_client(struct cluster *c)
{
    memcached_st *mc = memcached_create(NULL);
    cr_assert(mc);
    cr_assert_eq(
        memcached_server_add(mc, "127.0.0.1", (in_port_t)c->proxy.port),
        MEMCACHED_SUCCESS);
    /* a failed request must not make libmemcached hold back the next one:
     * its only server is the proxy, which is up throughout */
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
    return mc;
}

/*
 * Read keys[0..n) from node with multi-gets of 100 keys; value[k] gets a
 * malloc'd copy of what the node holds for keys[k] (NULL: nothing).
 */
static void
read_node(struct cluster *c, int node, char **keys, size_t n, char **value)
{
    memcached_st *mc = c->direct[node];
    size_t lens[100];
    for (size_t at = 0; at < n; at += 100) {
        size_t batch = n - at < 100 ? n - at : 100;
        for (size_t k = 0; k < batch; k++) {
            lens[k] = strlen(keys[at + k]);
            value[at + k] = NULL;
        }
        memcached_return_t rc =
            memcached_mget(mc, (const char *const *)keys + at, lens, batch);
        cr_assert_eq(rc, MEMCACHED_SUCCESS, "mget on node %d: %s", node,
                     memcached_last_error_message(mc));
        char key[MEMCACHED_MAX_KEY];
        size_t klen, vlen;
        uint32_t flags;
        char *v;
        while ((v = memcached_fetch(mc, key, &klen, &vlen, &flags, &rc))) {
            for (size_t k = 0; k < batch; k++) {
                if (lens[k] == klen && memcmp(keys[at + k], key, klen) == 0) {
                    value[at + k] = v;
                    v = NULL;
                    break;
                }
            }
            cr_assert_null(v, "node %d sent a key it was not asked for: %.*s",
                           node, (int)klen, key);
        }
        cr_assert(rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND,
                  "fetch from node %d: %s", node, memcached_strerror(mc, rc));
    }
}

/*
 * Every key acked[k] must be on its owner with want[k] and on no other
 * node; every key failed[k] on no node but its owner (it may be there: a
 * write cut off by a crash may have been done without its reply). Returns
 * how many keys each node held in held[].
 */
static void
check_placement(struct cluster *c, char **keys, char **want, const bool *acked,
                size_t n, size_t held[NODES])
{
    char **got[NODES];
    for (int i = 0; i < NODES; i++) {
        got[i] = calloc(n, sizeof(char *));
        read_node(c, i, keys, n, got[i]);
        held[i] = 0;
    }
    size_t lost = 0, misplaced = 0;
    for (size_t k = 0; k < n; k++) {
        int home = owner(c, keys[k]);
        for (int i = 0; i < NODES; i++) {
            if (got[i][k])
                held[i]++;
            if (i == home && acked[k] &&
                (!got[i][k] || strcmp(got[i][k], want[k]) != 0)) {
                if (lost++ < 5)
                    fprintf(stderr,
                            "%s: acknowledged with %s, its owner %d has %s\n",
                            keys[k], want[k], home,
                            got[i][k] ? got[i][k] : "nothing");
            }
            if (i != home && got[i][k] && misplaced++ < 5)
                fprintf(stderr, "%s: ketama says node %d, node %d has it\n",
                        keys[k], home, i);
            free(got[i][k]);
        }
    }
    for (int i = 0; i < NODES; i++)
        free(got[i]);
    cr_assert_eq(lost, 0, "%zu of %zu acknowledged keys are not on their owner",
                 lost, n);
    cr_assert_eq(misplaced, 0, "%zu keys are on a node ketama does not name",
                 misplaced);
}

static void
make_keys(const char *fmt, size_t n, char ***keys, char ***values)
{
    *keys = calloc(n, sizeof(char *));
    *values = calloc(n, sizeof(char *));
    for (size_t k = 0; k < n; k++) {
        char buf[64];
        snprintf(buf, sizeof(buf), fmt, k);
        (*keys)[k] = strdup(buf);
        snprintf(buf, sizeof(buf), "value of %zu", k);
        (*values)[k] = strdup(buf);
    }
}

static void
free_keys(char **keys, char **values, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        free(keys[k]);
        free(values[k]);
    }
    free(keys);
    free(values);
}

/* Write n keys through the proxy; every one must be STORED. */
static void
write_through_proxy(struct cluster *c, char **keys, char **values, size_t n)
{
    memcached_st *mc = proxy_client(c);
    for (size_t k = 0; k < n; k++) {
        memcached_return_t rc =
            memcached_set(mc, keys[k], strlen(keys[k]), values[k],
                          strlen(values[k]), 0, (uint32_t)k);
        cr_assert_eq(rc, MEMCACHED_SUCCESS, "set %s through nutcracker: %s",
                     keys[k], memcached_last_error_message(mc));
    }
    memcached_free(mc);
}

static void
check_spread(const size_t held[NODES], size_t n)
{
    for (int i = 0; i < NODES; i++)
        cr_assert_gt(held[i], n / 5,
                     "node %d holds %zu of %zu keys: ketama spread them "
                     "badly (%zu, %zu, %zu)",
                     i, held[i], n, held[0], held[1], held[2]);
}

Test(
    nutcracker,
    ten_thousand_keys_written_through_the_proxy_are_each_on_the_node_ketama_names_and_no_other)
{
    struct cluster c;
    cluster_start(&c, true, placement_args);
    enum { N = 10000 };
    char **keys, **values;
    make_keys("user:%zu", N, &keys, &values);
    write_through_proxy(&c, keys, values, N);

    bool *acked = malloc(N);
    memset(acked, 1, N);
    size_t held[NODES];
    check_placement(&c, keys, values, acked, N, held);
    cr_assert_eq(held[0] + held[1] + held[2], N);
    check_spread(held, N);
    fprintf(stderr, "nutcracker: %d keys by name: %zu %zu %zu\n", N, held[0],
            held[1], held[2]);
    free(acked);
    free_keys(keys, values, N);
    cluster_stop(&c);
}

/*
 * Without node names nutcracker hashes "host:port" (the port left out when
 * it is 11211), as libmemcached does: a libmemcached client with the same
 * server list, connected to the primaries themselves, reads every key.
 */
Test(
    nutcracker,
    without_node_names_a_libmemcached_ketama_client_reads_every_key_from_the_primaries_directly)
{
    struct cluster c;
    cluster_start(&c, false, placement_args);
    enum { N = 2000 };
    char **keys, **values;
    make_keys("session-%05zu", N, &keys, &values);
    write_through_proxy(&c, keys, values, N);

    bool *acked = malloc(N);
    memset(acked, 1, N);
    size_t held[NODES];
    check_placement(&c, keys, values, acked, N, held);
    check_spread(held, N);

    /* the ring client itself, connected to the primaries */
    for (size_t k = 0; k < N; k++) {
        size_t len;
        uint32_t flags;
        memcached_return_t rc;
        char *v =
            memcached_get(c.ring, keys[k], strlen(keys[k]), &len, &flags, &rc);
        cr_assert_eq(rc, MEMCACHED_SUCCESS, "%s read directly: %s", keys[k],
                     memcached_last_error_message(c.ring));
        cr_assert(len == strlen(values[k]) && !memcmp(v, values[k], len) &&
                      flags == k,
                  "%s read directly: %.*s flags %u", keys[k], (int)len, v,
                  flags);
        free(v);
    }
    free(acked);
    free_keys(keys, values, N);
    cluster_stop(&c);
}

/* ---- a primary killed and restarted under load ---- */

enum { W_MAX = 200000 };

enum phase { BEFORE, DOWN, BACK };

struct writer {
    struct cluster *c;
    char **keys, **values;
    _Atomic size_t sent; /* keys [0, sent) have their outcome below */
    atomic_int phase;
    atomic_bool stop;
    bool acked[W_MAX];
    int owner_of[W_MAX]; /* computed before the writer starts */
    memcached_return_t rc[W_MAX];
    enum phase phase_of[W_MAX];
};

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    memcached_st *mc = proxy_client(w->c);
    size_t k;
    for (k = 0; k < W_MAX && !atomic_load(&w->stop); k++) {
        w->phase_of[k] = (enum phase)atomic_load(&w->phase);
        w->rc[k] = memcached_set(mc, w->keys[k], strlen(w->keys[k]),
                                 w->values[k], strlen(w->values[k]), 0, 0);
        w->acked[k] = w->rc[k] == MEMCACHED_SUCCESS;
        atomic_store(&w->sent, k + 1);
    }
    memcached_free(mc);
    return NULL;
}

/* Keys of node acknowledged (or failed, !ok) in phase p so far. */
static size_t
count(struct writer *w, int node, enum phase p, bool ok)
{
    size_t n = 0, sent = atomic_load(&w->sent);
    for (size_t k = 0; k < sent; k++)
        if (w->phase_of[k] == p && w->acked[k] == ok &&
            (node < 0 || w->owner_of[k] == node))
            n++;
    return n;
}

/* Wait up to ms for count(...) >= want. */
static bool
wait_count(struct writer *w, int node, enum phase p, bool ok, size_t want,
           int ms)
{
    uint64_t end = tg_now_ms() + (uint64_t)ms;
    while (count(w, node, p, ok) < want) {
        if (tg_now_ms() > end)
            return false;
        usleep(10 * 1000);
    }
    return true;
}

Test(
    nutcracker,
    a_primary_killed_and_restarted_under_load_comes_back_with_every_write_it_acknowledged_and_none_went_elsewhere)
{
    if (tg_is_memcached())
        cr_skip_test("memcached keeps nothing across a restart");
    struct cluster c;
    cluster_start(&c, true, mcdbd_args);
    struct writer *w = calloc(1, sizeof(*w));
    w->c = &c;
    make_keys("order:%zu", W_MAX, &w->keys, &w->values);
    for (size_t k = 0; k < W_MAX; k++)
        w->owner_of[k] = owner(&c, w->keys[k]);
    const int victim = 1;

    pthread_t t;
    pthread_create(&t, NULL, writer_main, w);
    cr_assert(wait_count(w, victim, BEFORE, true, 300, 10000),
              "the writer did not get 300 writes to node %d acknowledged",
              victim);

    atomic_store(&w->phase, DOWN);
    th_server_stop(&c.node[victim], SIGKILL);
    /* while it is down, the others go on taking their writes */
    bool others = wait_count(w, -1, DOWN, true, 300, 10000);
    bool failed = wait_count(w, victim, DOWN, false, 20, 10000);

    atomic_store(&w->phase, BACK);
    cr_assert_eq(th_mcdbd_restart(&c.node[victim], mcdbd_args), 0,
                 "node %d did not start again", victim);
    bool back = wait_count(w, victim, BACK, true, 300, 10000);
    atomic_store(&w->stop, true);
    pthread_join(t, NULL);
    size_t sent = atomic_load(&w->sent);

    cr_assert(others, "the other nodes took no writes while node %d was down",
              victim);
    cr_assert(failed, "no write to node %d failed while it was down", victim);
    cr_assert(back, "node %d took no writes after it came back", victim);

    /* writes failed for the victim's keys only, each with an error */
    size_t failures = 0;
    for (size_t k = 0; k < sent; k++) {
        if (w->acked[k])
            continue;
        failures++;
        cr_assert_eq(w->owner_of[k], victim,
                     "%s (node %d) failed while node %d was down: %s",
                     w->keys[k], w->owner_of[k], victim,
                     memcached_strerror(NULL, w->rc[k]));
    }
    size_t held[NODES];
    check_placement(&c, w->keys, w->values, w->acked, sent, held);
    fprintf(stderr,
            "nutcracker: %zu writes, %zu failed while node %d was down; "
            "node %d acknowledged %zu before the kill, %zu after it came "
            "back; nodes hold %zu %zu %zu\n",
            sent, failures, victim, victim, count(w, victim, BEFORE, true),
            count(w, victim, BACK, true), held[0], held[1], held[2]);

    free_keys(w->keys, w->values, W_MAX);
    free(w);
    cluster_stop(&c);
}

#endif
