/*
 * Replication, end to end: real mcdbd processes on loopback, each with a
 * fresh data directory, stopped by pid. A small TCP relay in the test
 * (helpers/relay.h) stalls, slows and cuts links. MCDB_SOAK=N runs N
 * kill -9 rounds instead of a few.
 */
#include "helpers/relay.h"
#include "helpers/repl_util.h"
#include "helpers/server.h"
#include "helpers/target.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef MCDB_HAVE_LIBMEMCACHED
#include <libmemcached/memcached.h>
#endif

#define SMALL_SEGMENTS "--segment-size", "64k", "-I", "16k"
#define FAST_COMPACTION "--compact-rate", "0"

TestSuite(replication, .timeout = 300);

/* ---- a blocking line client ---- */

struct cli {
    int fd;
    char buf[65536];
    size_t len, at;
};

static int
cli_open(struct cli *c, int port)
{
    memset(c, 0, sizeof(*c));
    c->fd = th_connect(port);
    return c->fd;
}

static void
cli_close(struct cli *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* The next line without "\r\n" in out; false on EOF or timeout. */
static bool
cli_line(struct cli *c, char *out, size_t n)
{
    for (;;) {
        char *nl = memchr(c->buf + c->at, '\n', c->len - c->at);
        if (nl) {
            size_t k = (size_t)(nl - (c->buf + c->at));
            size_t m = k && nl[-1] == '\r' ? k - 1 : k;
            snprintf(out, n, "%.*s", (int)m, c->buf + c->at);
            c->at += k + 1;
            return true;
        }
        if (c->at) {
            memmove(c->buf, c->buf + c->at, c->len - c->at);
            c->len -= c->at;
            c->at = 0;
        }
        if (c->len == sizeof(c->buf))
            return false;
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (r <= 0)
            return false;
        c->len += (size_t)r;
    }
}

static bool
cli_cmd(struct cli *c, const char *req, char *reply, size_t n)
{
    return th_sends(c->fd, req) == 0 && cli_line(c, reply, n);
}

/* get or gets of one key: "VALUE ...|data" or "" for a miss; false when
 * the connection failed or the server answered something else. */
static bool
cli_get(struct cli *c, const char *cmd, const char *key, char *out, size_t n)
{
    char req[300], line[512], data[4096];
    snprintf(req, sizeof(req), "%s %s\r\n", cmd, key);
    if (!cli_cmd(c, req, line, sizeof(line)))
        return false;
    if (strcmp(line, "END") == 0) {
        out[0] = '\0';
        return true;
    }
    if (strncmp(line, "VALUE ", 6) != 0 || !cli_line(c, data, sizeof(data)))
        return false;
    if (snprintf(out, n, "%.500s|%.3600s", line, data) >= (int)n)
        return false; /* more than the caller's buffer holds */
    char end[16];
    return cli_line(c, end, sizeof(end)) && strcmp(end, "END") == 0;
}

/* ---- load ---- */

#define NKEYS 200

struct load {
    int port;
    unsigned seed;
    atomic_bool *stop;
    long ops, server_errors;
    char last_error[256];
};

/* One random write of every kind memcached has. */
static void
one_write(struct cli *c, struct load *l)
{
    char req[512], line[512], got[4200];
    int k = (int)(rand_r(&l->seed) % NKEYS), op = (int)(rand_r(&l->seed) % 11);
    char key[32];
    snprintf(key, sizeof(key), op >= 6 && op <= 7 ? "n%d" : "k%d", k % 20);
    if (op < 6 || op > 7)
        snprintf(key, sizeof(key), "k%d", k);
    int vlen = 1 + (int)(rand_r(&l->seed) % 300);
    char val[301];
    memset(val, 'a' + k % 26, (size_t)vlen);
    val[vlen] = '\0';
    static const char *const stores[] = {"set", "add", "replace", "append",
                                         "prepend"};
    switch (op) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
        snprintf(req, sizeof(req), "%s %s %d 0 %d\r\n%s\r\n", stores[op], key,
                 k, vlen, val);
        break;
    case 5: /* cas on what gets says */
        if (!cli_get(c, "gets", key, got, sizeof(got)) || !got[0])
            return;
        {
            unsigned long long cas = 0;
            char *last = strrchr(got, '|');
            *last = '\0';
            char *sp = strrchr(got, ' ');
            cas = strtoull(sp + 1, NULL, 10);
            snprintf(req, sizeof(req), "cas %s 1 0 %d %llu\r\n%s\r\n", key,
                     vlen, cas, val);
        }
        break;
    case 6:
        snprintf(req, sizeof(req), "set %s 0 0 1\r\n5\r\n", key);
        break;
    case 7:
        snprintf(req, sizeof(req), "%s %s %d\r\n",
                 rand_r(&l->seed) % 2 ? "incr" : "decr", key, k);
        break;
    case 8:
        snprintf(req, sizeof(req), "delete %s\r\n", key);
        break;
    case 9:
        snprintf(req, sizeof(req), "touch %s %d\r\n", key,
                 rand_r(&l->seed) % 2 ? 0 : 86400);
        break;
    default:
        snprintf(req, sizeof(req), "set %s %d 86400 %d\r\n%s\r\n", key, k, vlen,
                 val);
    }
    if (!cli_cmd(c, req, line, sizeof(line)))
        return;
    l->ops++;
    if (strncmp(line, "SERVER_ERROR", 12) == 0 ||
        strncmp(line, "CLIENT_ERROR", 12) == 0 || strcmp(line, "ERROR") == 0) {
        l->server_errors++;
        snprintf(l->last_error, sizeof(l->last_error), "%.120s -> %.120s", req,
                 line);
    }
}

static void *
load_main(void *arg)
{
    struct load *l = arg;
    struct cli c;
    while (!atomic_load(l->stop)) {
        if (cli_open(&c, l->port) < 0) {
            usleep(10000);
            continue;
        }
        while (!atomic_load(l->stop) && c.fd >= 0) {
            long before = l->ops;
            one_write(&c, l);
            if (l->ops == before && !atomic_load(l->stop))
                break; /* the connection failed: reconnect */
        }
        cli_close(&c);
    }
    return NULL;
}

struct loaders {
    atomic_bool stop;
    pthread_t t[8];
    struct load l[8];
    int n;
};

static void
load_start(struct loaders *ls, int port, int n)
{
    atomic_store(&ls->stop, false);
    ls->n = n;
    for (int i = 0; i < n; i++) {
        ls->l[i] = (struct load){
            .port = port, .seed = (unsigned)(i * 7919 + 1), .stop = &ls->stop};
        pthread_create(&ls->t[i], NULL, load_main, &ls->l[i]);
    }
}

static long
load_stop(struct loaders *ls, bool expect_no_errors)
{
    atomic_store(&ls->stop, true);
    long ops = 0;
    for (int i = 0; i < ls->n; i++) {
        pthread_join(ls->t[i], NULL);
        ops += ls->l[i].ops;
        if (expect_no_errors)
            cr_expect_eq(ls->l[i].server_errors, 0, "a write failed: %s",
                         ls->l[i].last_error);
    }
    return ops;
}

/* ---- checks ---- */

/* Every key reads the same (value, flags and cas) on both servers. */
static void
same_keys(int a, int b)
{
    struct cli ca, cb;
    cr_assert_geq(cli_open(&ca, a), 0);
    cr_assert_geq(cli_open(&cb, b), 0);
    char va[4200], vb[4200], key[32];
    int hits = 0;
    for (int i = 0; i < NKEYS + 20; i++) {
        snprintf(key, sizeof(key), i < NKEYS ? "k%d" : "n%d",
                 i < NKEYS ? i : i - NKEYS);
        cr_assert(cli_get(&ca, "gets", key, va, sizeof(va)), "gets %s", key);
        cr_assert(cli_get(&cb, "gets", key, vb, sizeof(vb)),
                  "gets %s on the "
                  "replica",
                  key);
        cr_assert_str_eq(vb, va,
                         "%s differs: replica has '%.80s', primary "
                         "'%.80s'",
                         key, vb, va);
        hits += va[0] != 0;
    }
    cr_assert_gt(hits, 0, "the load wrote nothing");
    cli_close(&ca);
    cli_close(&cb);
}

static void
same_files(const struct th_server *p, const struct th_server *r)
{
    /* a dropped segment's file goes a moment after the segment leaves the
     * log (what "caught up" compares): give it that moment */
    char *why = tr_diff_dirs(p->dir, r->dir);
    for (int i = 0; why && i < 100; i++) {
        free(why);
        usleep(20 * 1000);
        why = tr_diff_dirs(p->dir, r->dir);
    }
    cr_assert_null(why, "%s differs from %s: %s", r->dir, p->dir, why);
}

static void
fsck_clean(const struct th_server *s)
{
    char *out = NULL;
    int rc = tr_fsck(s->dir, &out);
    cr_assert_eq(rc, 0, "mcdb-fsck %s: exit %d\n%s", s->dir, rc, out);
    free(out);
}

static void
wait_link(int port, const char *state, int ms)
{
    char *v = NULL;
    for (int i = 0; i < ms / 20; i++) {
        free(v);
        v = tr_stat(port, "repl", "link");
        if (v && strcmp(v, state) == 0)
            break;
        usleep(20 * 1000);
    }
    cr_assert(v && strcmp(v, state) == 0, "link is %s, not %s", v ? v : "?",
              state);
    free(v);
}

/* ---- the tests ---- */

Test(replication,
     two_replicas_under_every_write_and_compaction_end_byte_identical)
{
    struct th_server p = {0}, r1 = {0}, r2 = {0};
    const char *args[] = {SMALL_SEGMENTS, FAST_COMPACTION, NULL};
    tr_start(&p, args);
    tr_start_replica(&r1, p.port, NULL);
    struct loaders ls;
    load_start(&ls, p.port, 3);
    usleep(300 * 1000);
    tr_start_replica(&r2, p.port, NULL); /* joins under load */
    sleep(2);
    long ops = load_stop(&ls, true);
    cr_assert_gt(ops, 1000, "only %ld writes", ops);
    cr_assert_gt(tr_stat_num(p.port, "log", "compact_runs"), 0,
                 "the primary never compacted");
    tr_wait_caught_up(p.port, r1.port, 20000);
    tr_wait_caught_up(p.port, r2.port, 20000);
    same_files(&p, &r1);
    same_files(&p, &r2);
    same_keys(p.port, r1.port);
    same_keys(p.port, r2.port);
    cr_assert_eq(tr_stat_num(p.port, "repl", "connected_replicas"), 2);
    th_server_stop(&r1, SIGTERM);
    th_server_stop(&r2, SIGTERM);
    th_server_stop(&p, SIGTERM);
    fsck_clean(&p);
    fsck_clean(&r1);
    fsck_clean(&r2);
    th_server_cleanup(&p);
    th_server_cleanup(&r1);
    th_server_cleanup(&r2);
}

Test(replication, a_cut_link_and_a_restarted_replica_resume_without_a_full_copy)
{
    struct th_server p = {0}, r = {0};
    const char *args[] = {SMALL_SEGMENTS, NULL};
    tr_start(&p, args);
    struct th_relay *relay = th_relay_start(p.port);
    tr_start_replica(&r, th_relay_port(relay), NULL);
    struct loaders ls;
    load_start(&ls, p.port, 2);
    usleep(500 * 1000);
    /* a stall, then a cut while writes go on */
    th_relay_stall(relay, 1);
    usleep(700 * 1000);
    th_relay_drop(relay, 1);
    th_relay_stall(relay, 0);
    usleep(700 * 1000);
    th_relay_drop(relay, 0);
    wait_link(r.port, "up", 10000); /* it reconnected by itself */
    /* a restart of the replica, still under load */
    th_server_stop(&r, SIGTERM);
    usleep(300 * 1000);
    cr_assert_eq(th_mcdbd_restart(&r, NULL), 0);
    usleep(500 * 1000);
    load_stop(&ls, true);
    tr_wait_caught_up(p.port, r.port, 20000);
    same_files(&p, &r);
    same_keys(p.port, r.port);
    cr_assert_eq(tr_stat_num(p.port, "repl", "full_resyncs"), 1,
                 "a full copy beyond the first one");
    cr_assert_geq(tr_stat_num(p.port, "repl", "partial_resyncs"), 2);
    cr_assert_eq(tr_stat_num(r.port, "repl", "full_resyncs"), 0);
    th_relay_stop(relay);
    th_server_cleanup(&r);
    th_server_cleanup(&p);
}

/* Overwrite every key several times: compaction then drops the oldest
 * segments. */
static void
churn(int port, int rounds)
{
    struct cli c;
    cr_assert_geq(cli_open(&c, port), 0);
    char req[600], line[64], val[501];
    memset(val, 'x', 500);
    val[500] = '\0';
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < NKEYS; i++) {
            snprintf(req, sizeof(req), "set k%d %d 0 500\r\n%s\r\n", i, r, val);
            cr_assert(cli_cmd(&c, req, line, sizeof(line)));
            cr_assert_str_eq(line, "STORED");
        }
    cli_close(&c);
}

Test(replication,
     a_replica_behind_compaction_gets_a_full_copy_that_survives_kill_9)
{
    struct th_server p = {0}, r = {0};
    const char *args[] = {SMALL_SEGMENTS, FAST_COMPACTION, "--repl-backlog-ttl",
                          "0", NULL};
    tr_start(&p, args);
    struct th_relay *relay = th_relay_start(p.port);
    tr_start_replica(&r, th_relay_port(relay), NULL);
    churn(p.port, 2);
    tr_wait_caught_up(p.port, r.port, 20000);
    char *old = tr_ask(r.port, "get k7\r\n", "END\r\n");
    th_server_stop(&r, SIGKILL);
    long long start0 = tr_stat_num(p.port, "repl", "log_start");
    churn(p.port, 30); /* the replica's end is compacted away */
    for (int i = 0; i < 200 && tr_stat_num(p.port, "repl", "log_start") <=
                                   start0 + (64 << 10);
         i++)
        usleep(20 * 1000);
    /* the copy crawls through the relay; kill -9 the replica in the
     * middle of it */
    th_relay_rate(relay, 200 << 10);
    cr_assert_eq(th_mcdbd_restart(&r, NULL), 0);
    wait_link(r.port, "copying", 10000);
    for (int i = 0;
         i < 100 && tr_stat_num(r.port, "repl", "copy_done_offset") <= 0; i++)
        usleep(20 * 1000);
    /* meanwhile it serves its old data, not misses */
    char *during = tr_ask(r.port, "get k7\r\n", "END\r\n");
    cr_assert_str_eq(during, old);
    free(during);
    th_server_stop(&r, SIGKILL);
    char partial[4200];
    snprintf(partial, sizeof(partial), "%s/resync.partial", r.dir);
    cr_assert_eq(access(partial, F_OK), 0, "no copy was under way");
    /* it restarts, copies again at full speed, and converges */
    th_relay_rate(relay, 0);
    cr_assert_eq(th_mcdbd_restart(&r, NULL), 0);
    tr_wait_caught_up(p.port, r.port, 30000);
    same_files(&p, &r);
    same_keys(p.port, r.port);
    cr_assert_neq(access(partial, F_OK), 0);
    cr_assert_geq(tr_stat_num(r.port, "repl", "full_resyncs"), 1);
    free(old);
    th_relay_stop(relay);
    th_server_cleanup(&r);
    th_server_cleanup(&p);
}

Test(replication,
     kill_9_of_primary_and_replicas_at_random_moments_always_converges)
{
    int rounds = getenv("MCDB_SOAK") ? atoi(getenv("MCDB_SOAK")) : 4;
    struct th_server p = {0}, r1 = {0}, r2 = {0};
    const char *args[] = {SMALL_SEGMENTS, FAST_COMPACTION, NULL};
    tr_start(&p, args);
    tr_start_replica(&r1, p.port, NULL);
    tr_start_replica(&r2, p.port, NULL);
    unsigned seed = (unsigned)time(NULL);
    fprintf(stderr, "kill -9 rounds: %d, seed %u\n", rounds, seed);
    for (int round = 0; round < rounds; round++) {
        struct loaders ls;
        load_start(&ls, p.port, 2);
        usleep((useconds_t)(100 + rand_r(&seed) % 600) * 1000);
        int who = (int)(rand_r(&seed) % 3);
        struct th_server *victim = who == 0 ? &p : who == 1 ? &r1 : &r2;
        th_server_stop(victim, SIGKILL);
        usleep((useconds_t)(rand_r(&seed) % 300) * 1000);
        cr_assert_eq(th_mcdbd_restart(victim, who == 0 ? args : NULL), 0);
        usleep((useconds_t)(100 + rand_r(&seed) % 400) * 1000);
        load_stop(&ls, false);
    }
    tr_wait_caught_up(p.port, r1.port, 30000);
    tr_wait_caught_up(p.port, r2.port, 30000);
    same_files(&p, &r1);
    same_files(&p, &r2);
    same_keys(p.port, r1.port);
    same_keys(p.port, r2.port);
    th_server_stop(&r1, SIGKILL);
    th_server_stop(&r2, SIGKILL);
    th_server_stop(&p, SIGKILL);
    fsck_clean(&p);
    fsck_clean(&r1);
    fsck_clean(&r2);
    th_server_cleanup(&p);
    th_server_cleanup(&r1);
    th_server_cleanup(&r2);
}

/* ---- failover ---- */

/* Clients that write unique keys and remember which were acknowledged. */
struct writer {
    int port, id;
    atomic_bool *stop;
    char (*acked)[32];
    size_t nacked, cap;
    long errors;
};

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    struct cli c;
    if (cli_open(&c, w->port) < 0)
        return NULL;
    for (long i = 0; !atomic_load(w->stop); i++) {
        char req[128], line[256], key[32];
        snprintf(key, sizeof(key), "w%d-%ld", w->id, i);
        snprintf(req, sizeof(req), "set %s 0 0 %zu\r\n%s\r\n", key, strlen(key),
                 key);
        if (!cli_cmd(&c, req, line, sizeof(line)))
            break; /* the primary died: this write's fate is unknown */
        if (strcmp(line, "STORED") != 0) {
            w->errors++;
            continue;
        }
        if (w->nacked == w->cap) {
            w->cap = w->cap ? 2 * w->cap : 1024;
            w->acked = realloc(w->acked, w->cap * sizeof(*w->acked));
        }
        snprintf(w->acked[w->nacked++], 32, "%s", key);
    }
    cli_close(&c);
    return NULL;
}

/* Write under load, kill -9 the primary, promote the replica; returns how
 * many acknowledged writes the promoted replica lacks (and how many there
 * were in *acked). The servers stay up for the caller. */
static long
failover(struct th_server *p, struct th_server *r, long *acked)
{
    atomic_bool stop = false;
    struct writer w[4] = {0};
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct writer){.port = p->port, .id = i, .stop = &stop};
        pthread_create(&t[i], NULL, writer_main, &w[i]);
    }
    usleep(800 * 1000);
    th_server_stop(p, SIGKILL);
    atomic_store(&stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    char *ok = tr_ask(r->port, "promote\r\n", "\r\n");
    cr_assert_str_eq(ok, "OK\r\n");
    free(ok);
    char *role = tr_stat(r->port, "repl", "role");
    cr_assert_str_eq(role, "primary");
    free(role);
    struct cli c;
    cr_assert_geq(cli_open(&c, r->port), 0);
    long lost = 0;
    *acked = 0;
    for (int i = 0; i < 4; i++) {
        for (size_t k = 0; k < w[i].nacked; k++) {
            char v[4200];
            cr_assert(cli_get(&c, "get", w[i].acked[k], v, sizeof(v)));
            lost += v[0] == '\0';
        }
        *acked += (long)w[i].nacked;
        free(w[i].acked);
    }
    cli_close(&c);
    return lost;
}

/* The old primary comes back as a replica of the new one. */
static void
rejoin(struct th_server *old, struct th_server *now)
{
    char of[64];
    snprintf(of, sizeof(of), "127.0.0.1:%d", now->port);
    const char *args[] = {"--replica-of", of, NULL};
    cr_assert_eq(th_mcdbd_restart(old, args), 0);
    tr_wait_caught_up(now->port, old->port, 20000);
    same_files(now, old);
    char *moved = tr_stat(old->port, "repl", "diverged_dir");
    cr_assert_not_null(moved);
    if (strcmp(moved, "none") != 0) {
        char about[4400];
        snprintf(about, sizeof(about), "%s/ABOUT", moved);
        cr_assert_eq(access(about, F_OK), 0, "%s has no ABOUT", moved);
        fprintf(stderr, "the old primary's divergent tail is in %s\n", moved);
    }
    free(moved);
    /* writes on the new primary reach it */
    char *st = tr_ask(now->port, "set after 0 0 2\r\nok\r\n", "\r\n");
    cr_assert_str_eq(st, "STORED\r\n");
    free(st);
    tr_wait_caught_up(now->port, old->port, 20000);
    char *v = tr_ask(old->port, "get after\r\n", "END\r\n");
    cr_assert_str_eq(v, "VALUE after 0 2\r\nok\r\nEND\r\n");
    free(v);
}

Test(replication, failover_with_sync_replicas_loses_no_acknowledged_write)
{
    struct th_server p = {0}, r = {0};
    const char *args[] = {"--sync-replicas", "1", NULL};
    tr_start(&p, args);
    tr_start_replica(&r, p.port, NULL);
    wait_link(r.port, "up", 10000);
    long acked;
    long lost = failover(&p, &r, &acked);
    cr_assert_gt(acked, 100, "only %ld writes were acknowledged", acked);
    cr_assert_eq(lost, 0, "%ld of %ld acknowledged writes lost", lost, acked);
    fprintf(stderr, "--sync-replicas 1: %ld acknowledged writes, 0 lost\n",
            acked);
    rejoin(&p, &r);
    th_server_cleanup(&p);
    th_server_cleanup(&r);
}

Test(replication, failover_with_async_replication_reports_what_it_lost)
{
    struct th_server p = {0}, r = {0};
    tr_start(&p, NULL);
    tr_start_replica(&r, p.port, NULL);
    wait_link(r.port, "up", 10000);
    long acked;
    long lost = failover(&p, &r, &acked);
    cr_assert_gt(acked, 100);
    /* asynchronous: a write acknowledged by the primary may not have
     * reached the replica when the primary died */
    fprintf(stderr,
            "asynchronous: %ld acknowledged writes, %ld lost in the "
            "failover\n",
            acked, lost);
    cr_assert_lt(lost, acked);
    rejoin(&p, &r);
    th_server_cleanup(&p);
    th_server_cleanup(&r);
}

Test(replication, the_old_primary_moves_its_divergent_tail_aside_and_follows)
{
    struct th_server p = {0}, r = {0};
    tr_start(&p, NULL);
    tr_start_replica(&r, p.port, NULL);
    free(tr_ask(p.port, "set a 0 0 1\r\n1\r\n", "\r\n"));
    tr_wait_caught_up(p.port, r.port, 10000);
    th_server_stop(&r, SIGTERM);
    /* writes the replica never sees */
    free(tr_ask(p.port, "set lost1 0 0 1\r\n1\r\nset lost2 0 0 1\r\n2\r\n",
                "STORED\r\nSTORED\r\n"));
    th_server_stop(&p, SIGKILL);
    const char *promote[] = {"--promote", NULL};
    cr_assert_eq(th_mcdbd_restart(&r, promote), 0);
    free(tr_ask(r.port, "set b 0 0 1\r\n2\r\n", "\r\n"));
    char of[64];
    snprintf(of, sizeof(of), "127.0.0.1:%d", r.port);
    const char *args[] = {"--replica-of", of, NULL};
    cr_assert_eq(th_mcdbd_restart(&p, args), 0);
    tr_wait_caught_up(r.port, p.port, 20000);
    same_files(&r, &p);
    char *v = tr_ask(p.port, "get lost1 a b\r\n", "END\r\n");
    cr_assert_str_eq(v, "VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n2\r\nEND\r\n");
    free(v);
    char *dir = tr_stat(p.port, "repl", "diverged_dir");
    cr_assert(dir && strstr(dir, "/diverged-"), "diverged_dir %s", dir);
    char about[4400];
    snprintf(about, sizeof(about), "%s/ABOUT", dir);
    size_t len;
    char *text = tt_slurp(about, &len);
    cr_assert_not_null(text);
    cr_assert(strstr(text, "2 records"), "%s", text);
    free(text);
    /* the moved bytes are still readable: fsck checks the aside directory */
    char *out = NULL;
    cr_assert_eq(tr_fsck(dir, &out), 0, "%s", out);
    free(out);
    free(dir);
    th_server_cleanup(&p);
    th_server_cleanup(&r);
}

/* ---- refusals ---- */

Test(replication, a_replica_refuses_every_write_with_the_exact_error)
{
    struct th_server p = {0}, r = {0};
    tr_start(&p, NULL);
    tr_start_replica(&r, p.port, NULL);
    free(tr_ask(p.port, "set k 0 0 1\r\nv\r\n", "\r\n"));
    tr_wait_caught_up(p.port, r.port, 10000);
    static const char *const writes[] = {"set k 0 0 1\r\nx\r\n",
                                         "add n 0 0 1\r\nx\r\n",
                                         "replace k 0 0 1\r\nx\r\n",
                                         "append k 0 0 1\r\nx\r\n",
                                         "prepend k 0 0 1\r\nx\r\n",
                                         "cas k 0 0 1 1\r\nx\r\n",
                                         "incr k 1\r\n",
                                         "decr k 1\r\n",
                                         "delete k\r\n",
                                         "touch k 10\r\n",
                                         "flush_all\r\n",
                                         "gat 10 k\r\n"};
    for (size_t i = 0; i < sizeof(writes) / sizeof(*writes); i++) {
        char *got = tr_ask(r.port, writes[i], "\r\n");
        cr_assert_str_eq(got, "SERVER_ERROR read-only replica\r\n", "%s",
                         writes[i]);
        free(got);
    }
    char *v = tr_ask(r.port, "get k\r\n", "END\r\n");
    cr_assert_str_eq(v, "VALUE k 0 1\r\nv\r\nEND\r\n");
    free(v);
#ifdef MCDB_HAVE_LIBMEMCACHED
    memcached_st *mc = memcached_create(NULL);
    memcached_server_add(mc, "127.0.0.1", (in_port_t)r.port);
    memcached_return_t rc = memcached_set(mc, "k", 1, "y", 1, 0, 0);
    cr_assert_neq(rc, MEMCACHED_SUCCESS);
    const char *msg = memcached_last_error_message(mc);
    cr_assert(msg && strstr(msg, "read-only replica"), "libmemcached says %s",
              msg ? msg : "(nothing)");
    memcached_free(mc);
#endif
    th_server_cleanup(&r);
    th_server_cleanup(&p);
}

Test(replication, a_replica_before_its_first_sync_answers_syncing_not_misses)
{
    struct th_server r = {0};
    int nowhere = th_free_port();
    tr_start_replica(&r, nowhere, NULL);
    char *v = tr_ask(r.port, "get anything\r\n", "\r\n");
    cr_assert_str_eq(v, "SERVER_ERROR replica syncing\r\n");
    free(v);
    char *link = tr_stat(r.port, "repl", "link");
    cr_assert(link && strcmp(link, "up") != 0);
    free(link);
    th_server_cleanup(&r);
}

Test(
    replication,
    a_replica_told_not_to_serve_stale_data_refuses_reads_while_its_link_is_down)
{
    struct th_server p = {0}, r = {0};
    tr_start(&p, NULL);
    const char *args[] = {"--replica-serve-stale", "no", NULL};
    tr_start_replica(&r, p.port, args);
    free(tr_ask(p.port, "set k 0 0 1\r\nv\r\n", "\r\n"));
    tr_wait_caught_up(p.port, r.port, 10000);
    char *v = tr_ask(r.port, "get k\r\n", "END\r\n");
    cr_assert_str_eq(v, "VALUE k 0 1\r\nv\r\nEND\r\n");
    free(v);
    th_server_stop(&p, SIGKILL);
    wait_link(r.port, "down", 10000);
    v = tr_ask(r.port, "get k\r\n", "\r\n");
    cr_assert(v && strncmp(v, "SERVER_ERROR replica link down", 30) == 0, "%s",
              v);
    free(v);
    th_server_cleanup(&r);
    th_server_cleanup(&p);
}

static char *
secret_file(const char *dir, const char *name, const char *text)
{
    char *path;
    cr_assert_geq(asprintf(&path, "%s/%s", dir, name), 0);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
    return path;
}

Test(replication, a_wrong_secret_is_refused_and_the_right_one_replicates)
{
    char *tmp = th_tmpdir();
    char *good = secret_file(tmp, "good", "correct horse battery staple\n");
    char *bad = secret_file(tmp, "bad", "incorrect horse battery staple\n");
    struct th_server p = {0}, r = {0}, r2 = {0};
    const char *pargs[] = {"--repl-secret-file", good, NULL};
    tr_start(&p, pargs);
    const char *bargs[] = {"--repl-secret-file", bad, NULL};
    tr_start_replica(&r, p.port, bargs);
    char *err = NULL;
    for (int i = 0; i < 100; i++) {
        free(err);
        err = tr_stat(r.port, "repl", "link_error");
        if (err && strstr(err, "wrong secret"))
            break;
        usleep(50 * 1000);
    }
    cr_assert(err && strstr(err, "wrong secret"), "link_error: %s", err);
    free(err);
    char *v = tr_ask(r.port, "get k\r\n", "\r\n");
    cr_assert_str_eq(v, "SERVER_ERROR replica syncing\r\n");
    free(v);
    /* and a replica without a secret is refused too */
    tr_start_replica(&r2, p.port, NULL);
    for (int i = 0; i < 100; i++) {
        err = tr_stat(r2.port, "repl", "link_error");
        if (err && strstr(err, "secret"))
            break;
        free(err);
        err = NULL;
        usleep(50 * 1000);
    }
    cr_assert(err && strstr(err, "secret"), "link_error: %s", err);
    free(err);
    th_server_cleanup(&r2);
    th_server_cleanup(&r);
    /* the right secret */
    struct th_server ok = {0};
    tr_start_replica(&ok, p.port, pargs);
    free(tr_ask(p.port, "set k 0 0 1\r\nv\r\n", "\r\n"));
    tr_wait_caught_up(p.port, ok.port, 10000);
    v = tr_ask(ok.port, "get k\r\n", "END\r\n");
    cr_assert_str_eq(v, "VALUE k 0 1\r\nv\r\nEND\r\n");
    free(v);
    char *sec = tr_stat(ok.port, "repl", "secret");
    cr_assert_str_eq(sec, "yes");
    free(sec);
    th_server_cleanup(&ok);
    th_server_cleanup(&p);
    th_rmrf(tmp);
    free(tmp);
    free(good);
    free(bad);
}

Test(replication,
     sync_replicas_without_enough_replicas_fails_at_once_and_writes_nothing)
{
    struct th_server p = {0};
    const char *args[] = {"--sync-replicas", "1", NULL};
    tr_start(&p, args);
    char *v = tr_ask(p.port, "set k 0 0 1\r\nv\r\n", "\r\n");
    cr_assert(v && strstr(v, "SERVER_ERROR not enough replicas connected"),
              "%s", v);
    free(v);
    v = tr_ask(p.port, "get k\r\n", "END\r\n");
    cr_assert_str_eq(v, "END\r\n");
    free(v);
    th_server_cleanup(&p);
}

Test(replication,
     a_sync_write_whose_replica_stalls_times_out_with_an_error_not_stored)
{
    struct th_server p = {0}, r = {0};
    const char *args[] = {"--sync-replicas", "1", "--sync-timeout", "300",
                          NULL};
    tr_start(&p, args);
    struct th_relay *relay = th_relay_start(p.port);
    tr_start_replica(&r, th_relay_port(relay), NULL);
    wait_link(r.port, "up", 10000);
    char *v = tr_ask(p.port, "set k 0 0 1\r\nv\r\n", "\r\n");
    cr_assert_str_eq(v, "STORED\r\n");
    free(v);
    th_relay_stall(relay, 1);
    v = tr_ask(p.port, "set k 0 0 1\r\nw\r\n", "\r\n");
    cr_assert(v && strstr(v, "SERVER_ERROR stored on the primary but not "
                             "confirmed by the replicas"),
              "%s", v);
    free(v);
    th_relay_stall(relay, 0);
    th_relay_stop(relay);
    th_server_cleanup(&r);
    th_server_cleanup(&p);
}

Test(replication, promote_is_refused_on_a_primary_and_accepted_on_a_replica)
{
    struct th_server p = {0}, r = {0};
    tr_start(&p, NULL);
    tr_start_replica(&r, p.port, NULL);
    tr_wait_caught_up(p.port, r.port, 10000);
    char *v = tr_ask(p.port, "promote\r\n", "\r\n");
    cr_assert_str_eq(v, "SERVER_ERROR promote failed: this server is the "
                        "primary already\r\n");
    free(v);
    v = tr_ask(r.port, "promote\r\n", "\r\n");
    cr_assert_str_eq(v, "OK\r\n");
    free(v);
    v = tr_ask(r.port, "set k 0 0 1\r\nv\r\n", "\r\n");
    cr_assert_str_eq(v, "STORED\r\n");
    free(v);
    long long epoch = tr_stat_num(r.port, "repl", "epoch");
    cr_assert_eq(epoch, 2);
    /* a primary never turns itself into anything else */
    char *role = tr_stat(p.port, "repl", "role");
    cr_assert_str_eq(role, "primary");
    free(role);
    th_server_cleanup(&r);
    th_server_cleanup(&p);
}

Test(replication, a_replica_of_a_server_that_is_not_mcdbd_says_so)
{
    if (!th_installed("memcached"))
        cr_skip_test("memcached is not installed");
    struct th_server m = {0}, r = {0};
    const char *argv[] = {
        "memcached", "-p", "{port}", "-l",
        "127.0.0.1", "-U", "0",      geteuid() == 0 ? "-u" : NULL,
        "root",      NULL};
    cr_assert_eq(th_server_start(&m, argv), 0);
    tr_start_replica(&r, m.port, NULL);
    char *err = NULL;
    for (int i = 0; i < 100; i++) {
        free(err);
        err = tr_stat(r.port, "repl", "link_error");
        if (err && strstr(err, "does not speak mcdb replication"))
            break;
        usleep(50 * 1000);
    }
    cr_assert(err && strstr(err, "does not speak mcdb replication") &&
                  strstr(err, "ERROR"),
              "link_error: %s", err);
    free(err);
    th_server_cleanup(&r);
    th_server_stop(&m, SIGTERM);
}

Test(replication,
     a_primary_with_fsync_never_has_its_writes_synced_for_its_replicas)
{
    struct th_server p = {0}, r = {0};
    const char *args[] = {"--fsync", "never", NULL};
    tr_start(&p, args);
    tr_start_replica(&r, p.port, NULL);
    wait_link(r.port, "up", 10000);
    char *v = tr_ask(p.port, "set k 0 0 1\r\nv\r\n", "\r\n");
    cr_assert_str_eq(v, "STORED\r\n");
    free(v);
    /* only durable bytes go to replicas; the primary syncs them soon */
    uint64_t t0 = tg_now_ms();
    for (int i = 0; i < 100; i++) {
        v = tr_ask(r.port, "get k\r\n", "\r\n"); /* a miss, or an error */
        if (v && strncmp(v, "VALUE k 0 1\r\n", 13) == 0)
            break;
        free(v);
        v = NULL;
        usleep(10 * 1000);
    }
    cr_assert_not_null(v, "the write did not reach the replica in 1 s");
    free(v);
    fprintf(stderr, "--fsync never: on the replica after %llu ms\n",
            (unsigned long long)(tg_now_ms() - t0));
    th_server_cleanup(&r);
    th_server_cleanup(&p);
}
