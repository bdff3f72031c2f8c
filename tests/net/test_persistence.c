/*
 * Durability of mcdbd: every write acknowledged with STORED (or DELETED, OK)
 * is there after a restart, whether the server was stopped with SIGTERM or
 * killed with SIGKILL at any moment, under load, with --fsync always,
 * everysec or never (a killed process loses nothing that reached the page
 * cache; only a machine crash could). mcdbd only: skipped (exit 77) with
 * MCDB_TEST_TARGET=memcached.
 *
 *   build/tests/test_net_persistence                 3 crash rounds
 *   MCDB_SOAK=50 build/tests/test_net_persistence    50 crash rounds
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

TG_SUITE_NEEDS(1)

static struct th_server srv;

static void
teardown(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
}

TestSuite(persistence, .fini = teardown, .timeout = 300);

/* (Re)start mcdbd on srv.dir (a fresh one the first time). */
static void
start(const char *const *extra)
{
    cr_assert_eq(th_mcdbd_start(&srv, srv.dir, extra), 0,
                 "mcdbd did not start on %s", srv.dir ? srv.dir : "a new dir");
}

static int
conn(void)
{
    int fd = tg_connect(srv.port);
    cr_assert(fd >= 0, "cannot connect to mcdbd");
    return fd;
}

/* ---- a model of many keys: key i at version v (0: absent) ---- */

#define NKEYS 5000

static size_t
val_len(unsigned i, unsigned v)
{
    if (i % 500 == 0)
        return 100000 + i + v; /* a few large ones */
    return ((i + v) * 7919u) % 3000;
}

static void
val_fill(char *buf, unsigned i, unsigned v, size_t n)
{
    for (size_t j = 0; j < n; j++)
        buf[j] = (char)((i * 131u + v * 17u + (unsigned)j * 7u) & 0xff);
}

static uint32_t
val_flags(unsigned i, unsigned v)
{
    return (i * 2654435761u) ^ v;
}

struct buf {
    char *p;
    size_t len, cap;
};

/* Room for n more bytes at b->p + b->len. */
static void
reserve(struct buf *b, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
}

static void
put(struct buf *b, const void *data, size_t n)
{
    reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void putf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void
putf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)n);
}

/* Version v of key i's value, then "\r\n". */
static void
put_data(struct buf *b, unsigned i, unsigned v)
{
    size_t n = val_len(i, v);
    reserve(b, n + 2);
    val_fill(b->p + b->len, i, v, n);
    b->len += n;
    put(b, "\r\n", 2);
}

static void
put_set(struct buf *b, unsigned i, unsigned v)
{
    putf(b, "set key:%05u %u 0 %zu\r\n", i, val_flags(i, v), val_len(i, v));
    put_data(b, i, v);
}

static void
put_value(struct buf *b, unsigned i, unsigned v)
{
    putf(b, "VALUE key:%05u %u %zu\r\n", i, val_flags(i, v), val_len(i, v));
    put_data(b, i, v);
}

/*
 * Write the model: keys "pre:*" then flush_all (gone for good), every key
 * at version 1, every tenth (i%10==5) again at version 2, every tenth
 * (i%10==3) deleted, a counter incremented 500 times. Pipelined in batches
 * of 100, each reply checked. Fills ver[i].
 */
static void
write_model(int fd, unsigned *ver)
{
    struct buf req = {0}, want = {0};
    for (int i = 0; i < 100; i++) {
        putf(&req, "set pre:%d 0 0 3\r\npre\r\n", i);
        putf(&want, "STORED\r\n");
    }
    putf(&req, "flush_all\r\nset counter 0 0 1\r\n0\r\n");
    putf(&want, "OK\r\nSTORED\r\n");
    tg_expect_n(fd, req.p, req.len, want.p, want.len);
    for (unsigned i = 0; i < NKEYS; i += 100) {
        req.len = want.len = 0;
        for (unsigned j = i; j < i + 100; j++) {
            put_set(&req, j, 1);
            putf(&want, "STORED\r\n");
            ver[j] = 1;
        }
        for (unsigned j = i; j < i + 100; j++) {
            if (j % 10 == 5) {
                put_set(&req, j, 2);
                putf(&want, "STORED\r\n");
                ver[j] = 2;
            } else if (j % 10 == 3) {
                putf(&req, "delete key:%05u\r\n", j);
                putf(&want, "DELETED\r\n");
                ver[j] = 0;
            }
        }
        for (unsigned j = i; j < i + 5; j++) {
            putf(&req, "incr counter 1\r\n");
            putf(&want, "%u\r\n", j / 20 + (j - i) + 1);
        }
        tg_expect_n(fd, req.p, req.len, want.p, want.len);
    }
    free(req.p);
    free(want.p);
}

/* Read every key back with multi-gets of 100 keys, byte for byte. */
static void
verify_model(int fd, const unsigned *ver)
{
    struct buf req = {0}, want = {0};
    unsigned live = 0;
    for (unsigned i = 0; i < NKEYS; i += 100) {
        req.len = want.len = 0;
        putf(&req, "get");
        for (unsigned j = i; j < i + 100; j++) {
            putf(&req, " key:%05u", j);
            if (ver[j]) {
                put_value(&want, j, ver[j]);
                live++;
            }
        }
        putf(&req, "\r\n");
        putf(&want, "END\r\n");
        tg_expect_n(fd, req.p, req.len, want.p, want.len);
    }
    req.len = want.len = 0;
    putf(&req, "get pre:0 pre:50 pre:99 counter\r\n");
    putf(&want, "VALUE counter 0 3\r\n250\r\nEND\r\n");
    tg_expect_n(fd, req.p, req.len, want.p, want.len);
    free(req.p);
    free(want.p);
    long long items = tg_stat(fd, NULL, "curr_items");
    cr_assert_eq(items, live + 1, "stats curr_items %lld, %u keys are live",
                 items, live + 1);
}

Test(persistence, every_key_survives_sigterm_and_restart)
{
    unsigned *ver = calloc(NKEYS, sizeof(*ver));
    start(NULL);
    int fd = conn();
    write_model(fd, ver);
    close(fd);
    int st = th_server_stop(&srv, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "mcdbd did not exit 0 on SIGTERM (status 0x%x)", st);
    start(NULL);
    fd = conn();
    verify_model(fd, ver);
    close(fd);
    /* And once more: a restart of a restarted store. */
    th_server_stop(&srv, SIGTERM);
    start(NULL);
    fd = conn();
    verify_model(fd, ver);
    close(fd);
    free(ver);
}

/* The reply to a hit on "small" or "big" (below); nothing for other keys. */
static void
put_hit(struct buf *b, const char *key, const char *big, size_t big_len)
{
    if (strcmp(key, "small") == 0) {
        putf(b, "VALUE small 7 5\r\nhello\r\n");
    } else if (strcmp(key, "big") == 0) {
        putf(b, "VALUE big 4294967295 %zu\r\n", big_len);
        put(b, big, big_len);
        put(b, "\r\n", 2);
    }
}

/*
 * After a restart every value is read from its segment file while the
 * replies behind it wait. A get's END still comes right after its last hit,
 * whatever misses follow it, for a value copied into the reply (small) and
 * for one sent from the record buffer (big); and before the next reply.
 */
Test(persistence,
     gets_of_values_read_from_segment_files_end_after_their_last_hit)
{
    static const char *const gets[][4] = {
        {"small", "nokey"},
        {"big", "nokey", "other"},
        {"nokey", "small"},
        {"small", "big", "nokey"},
        {"big"},
        {"nokey"},
        {"small", "small", "nokey"},
        {"big", "small"},
    };
    char big[5000];
    struct buf req = {0}, want = {0};
    memset(big, 'b', sizeof(big));
    start(NULL);
    int fd = conn();
    tg_expect(fd, "set small 7 0 5\r\nhello\r\n", "STORED\r\n");
    putf(&req, "set big 4294967295 0 %zu\r\n", sizeof(big));
    put(&req, big, sizeof(big));
    put(&req, "\r\n", 2);
    tg_expect_n(fd, req.p, req.len, "STORED\r\n", 8);
    close(fd);
    th_server_stop(&srv, SIGTERM);
    start(NULL);
    fd = conn();
    req.len = 0;
    for (size_t i = 0; i < sizeof(gets) / sizeof(*gets); i++) {
        putf(&req, "get");
        for (size_t k = 0; k < 4 && gets[i][k]; k++) {
            putf(&req, " %s", gets[i][k]);
            put_hit(&want, gets[i][k], big, sizeof(big));
        }
        putf(&req, "\r\n");
        putf(&want, "END\r\n");
    }
    putf(&req, "get big\r\nset other 0 0 1\r\nx\r\n");
    put_hit(&want, "big", big, sizeof(big));
    putf(&want, "END\r\nSTORED\r\n");
    tg_expect_n(fd, req.p, req.len, want.p, want.len);
    close(fd);
    free(req.p);
    free(want.p);
}

static void
sigkill_right_after_the_last_reply(const char *const *extra)
{
    unsigned *ver = calloc(NKEYS, sizeof(*ver));
    start(extra);
    int fd = conn();
    write_model(fd, ver);
    th_server_stop(&srv, SIGKILL); /* before even closing the connection */
    close(fd);
    start(extra);
    fd = conn();
    verify_model(fd, ver);
    close(fd);
    free(ver);
}

Test(persistence, every_acknowledged_key_survives_sigkill_right_after_it)
{
    sigkill_right_after_the_last_reply(NULL);
}

/* The process died, not the machine: the page cache still has the data. */
Test(persistence, sigkill_loses_nothing_with_fsync_everysec)
{
    static const char *const extra[] = {"--fsync", "everysec", NULL};
    sigkill_right_after_the_last_reply(extra);
}

Test(persistence, sigkill_loses_nothing_with_fsync_never)
{
    static const char *const extra[] = {"--fsync", "never", NULL};
    sigkill_right_after_the_last_reply(extra);
}

/* Every command that writes, acknowledged, then SIGKILL: after a restart
 * (1.5 s later, so that one-second expiry times have passed) each key is as
 * the last acknowledged command left it. */
Test(persistence, every_kind_of_write_survives_sigkill_with_its_expiry)
{
    start(NULL);
    int fd = conn();
    tg_expect(
        fd,
        "set s 1 0 3\r\nabc\r\n"
        "add a 2 0 1\r\nA\r\n"
        "set r 0 0 3\r\nold\r\nreplace r 3 0 3\r\nnew\r\n"
        "set ap 4 0 1\r\nm\r\nappend ap 0 0 1\r\nz\r\nprepend ap 0 0 1\r\na\r\n"
        "set n 0 0 2\r\n10\r\nincr n 32\r\ndecr n 2\r\n"
        "set d 0 0 1\r\nx\r\ndelete d\r\n"
        "set gone-at-once 0 -1 1\r\nx\r\n"
        "set expires 0 1 1\r\nx\r\n"
        "set touched-forever 0 1 1\r\nx\r\ntouch touched-forever 0\r\n"
        "set touched-short 0 0 1\r\nx\r\ntouch touched-short 1\r\n"
        "set gat-short 0 0 1\r\nx\r\ngat 1 gat-short\r\n",
        "STORED\r\nSTORED\r\nSTORED\r\nSTORED\r\n"
        "STORED\r\nSTORED\r\nSTORED\r\n"
        "STORED\r\n42\r\n40\r\n"
        "STORED\r\nDELETED\r\n"
        "STORED\r\nSTORED\r\n"
        "STORED\r\nTOUCHED\r\nSTORED\r\nTOUCHED\r\n"
        "STORED\r\nVALUE gat-short 0 1\r\nx\r\nEND\r\n");
    cr_assert_eq(th_sends(fd, "gets s\r\n"), 0);
    char *line = tg_recv_line(fd);
    unsigned long long cas = 0;
    cr_assert(line && sscanf(line, "VALUE s 1 3 %llu", &cas) == 1, "gets: %s",
              line);
    free(line);
    tg_expect(fd, "", "abc\r\nEND\r\n");
    char req[128];
    snprintf(req, sizeof(req), "cas s 5 0 3 %llu\r\nxyz\r\n", cas);
    tg_expect(fd, req, "STORED\r\n");
    th_server_stop(&srv, SIGKILL);
    close(fd);
    usleep(1500 * 1000);
    start(NULL);
    fd = conn();
    tg_expect(fd,
              "get s a r ap n d gone-at-once expires touched-forever "
              "touched-short gat-short\r\n",
              "VALUE s 5 3\r\nxyz\r\nVALUE a 2 1\r\nA\r\n"
              "VALUE r 3 3\r\nnew\r\nVALUE ap 4 3\r\namz\r\n"
              "VALUE n 0 2\r\n40\r\nVALUE touched-forever 0 1\r\nx\r\nEND\r\n");
    /* The cas unique moved on: the one used before the crash is stale. */
    tg_expect(fd, req, "EXISTS\r\n");
    close(fd);
}

/* ---- crash under load ---- */

#define WRITERS 4
#define WKEYS 64

struct writer {
    int id;
    int port;
    unsigned long long sent[WKEYS];  /* highest seq ever sent per key */
    unsigned long long acked[WKEYS]; /* highest seq acknowledged STORED */
    long acks;                       /* this round */
    char err[256];                   /* a wrong reply (not a lost connection) */
};

/* The value of writer id, key j at seq: "id:j:seq:" and filler. */
static size_t
load_value(char *buf, int id, int j, unsigned long long seq)
{
    int n = sprintf(buf, "%d:%d:%llu:", id, j, seq);
    size_t len = (size_t)n + (size_t)((seq * 37 + (unsigned)j) % 1500);
    for (size_t i = (size_t)n; i < len; i++)
        buf[i] = (char)('a' + (seq + i) % 26);
    return len;
}

static void *
writer_main(void *p)
{
    struct writer *w = p;
    int fd = tg_connect(w->port);
    if (fd < 0)
        return NULL;
    char *req = malloc(8 * 2048);
    char val[2048];
    for (unsigned round = 0;; round++) {
        /* 1 to 4 sets in flight at once, on consecutive keys. */
        int batch = 1 + (int)(round % 4), js[4];
        size_t len = 0;
        for (int b = 0; b < batch; b++) {
            int j = (int)((round * 4 + (unsigned)b) % WKEYS);
            js[b] = j;
            unsigned long long seq = ++w->sent[j];
            size_t vl = load_value(val, w->id, j, seq);
            len += (size_t)sprintf(req + len, "set w%d:%d %llu 0 %zu\r\n",
                                   w->id, j, seq & 0xffffffffull, vl);
            memcpy(req + len, val, vl);
            memcpy(req + len + vl, "\r\n", 2);
            len += vl + 2;
        }
        if (th_send(fd, req, len) != 0)
            break;
        int lost = 0;
        for (int b = 0; b < batch; b++) {
            char *line = tg_recv_line(fd);
            if (!line) {
                lost = 1;
                break;
            }
            if (strcmp(line, "STORED") == 0) {
                w->acked[js[b]] = w->sent[js[b]];
                w->acks++;
            } else if (!w->err[0]) {
                snprintf(w->err, sizeof(w->err),
                         "writer %d: set got \"%.100s\"", w->id, line);
            }
            free(line);
        }
        if (lost)
            break;
    }
    free(req);
    close(fd);
    return NULL;
}

/* Every acknowledged seq is there, or a later one that was sent. */
static void
verify_writers(struct writer *ws)
{
    int fd = conn();
    char val[2048];
    for (int id = 0; id < WRITERS; id++) {
        struct writer *w = &ws[id];
        for (int j = 0; j < WKEYS; j++) {
            char req[64];
            snprintf(req, sizeof(req), "get w%d:%d\r\n", id, j);
            cr_assert_eq(th_sends(fd, req), 0);
            char *line = tg_recv_line(fd);
            cr_assert(line, "no reply to get w%d:%d", id, j);
            if (strcmp(line, "END") == 0) {
                cr_assert_eq(w->acked[j], 0,
                             "w%d:%d is missing; seq %llu was acknowledged", id,
                             j, w->acked[j]);
                free(line);
                continue;
            }
            unsigned long long flags;
            size_t len;
            cr_assert_eq(sscanf(line, "VALUE %*s %llu %zu", &flags, &len), 2,
                         "get w%d:%d: \"%s\"", id, j, line);
            free(line);
            cr_assert_lt(len, sizeof(val) - 2);
            cr_assert_eq(tg_recv_n(fd, val, len + 2), len + 2);
            tg_expect_n(fd, NULL, 0, "END\r\n", 5);
            int vid, vj;
            unsigned long long seq;
            val[len] = '\0';
            cr_assert_eq(sscanf(val, "%d:%d:%llu:", &vid, &vj, &seq), 3,
                         "w%d:%d holds \"%.60s\"", id, j, val);
            cr_assert(vid == id && vj == j, "w%d:%d holds w%d:%d's value", id,
                      j, vid, vj);
            cr_assert_geq(seq, w->acked[j],
                          "w%d:%d holds seq %llu; seq %llu was acknowledged",
                          id, j, seq, w->acked[j]);
            cr_assert_leq(seq, w->sent[j], "w%d:%d holds seq %llu, never sent",
                          id, j, seq);
            char want[2048];
            size_t wl = load_value(want, id, j, seq);
            cr_assert(
                wl == len && memcmp(want, val, len) == 0,
                "w%d:%d seq %llu: value corrupted (%zu bytes, %zu expected)",
                id, j, seq, len, wl);
            cr_assert_eq(flags, seq & 0xffffffffull,
                         "w%d:%d seq %llu: flags %llu", id, j, seq, flags);
        }
    }
    close(fd);
}

Test(persistence, crash_under_load_loses_no_acknowledged_write)
{
    int rounds = getenv("MCDB_SOAK") ? atoi(getenv("MCDB_SOAK")) : 3;
    if (rounds < 1)
        rounds = 3;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "crash under load: %d rounds, seed %u\n", rounds, seed);
    srand(seed);
    struct writer *ws = calloc(WRITERS, sizeof(*ws));
    for (int id = 0; id < WRITERS; id++)
        ws[id].id = id;
    long total = 0;
    for (int r = 0; r < rounds; r++) {
        start(NULL);
        /* What the previous rounds acknowledged is still there. */
        verify_writers(ws);
        pthread_t th[WRITERS];
        for (int id = 0; id < WRITERS; id++) {
            ws[id].port = srv.port;
            ws[id].acks = 0;
            pthread_create(&th[id], NULL, writer_main, &ws[id]);
        }
        int delay_ms = 200 + rand() % 800;
        usleep((useconds_t)delay_ms * 1000);
        th_server_stop(&srv, SIGKILL);
        long acks = 0;
        for (int id = 0; id < WRITERS; id++) {
            pthread_join(th[id], NULL);
            acks += ws[id].acks;
            cr_assert(!ws[id].err[0], "%s", ws[id].err);
        }
        fprintf(stderr,
                "round %d: SIGKILL after %d ms, %ld writes acknowledged\n",
                r + 1, delay_ms, acks);
        total += acks;
    }
    /* A round may be too short on a loaded machine; all of them may not. */
    cr_assert_gt(total, 0, "no write was acknowledged in %d rounds", rounds);
    start(NULL);
    verify_writers(ws);
    free(ws);
}

/* ---- the data dir belongs to one process ---- */

Test(persistence, second_server_on_the_same_data_dir_fails_at_once)
{
    start(NULL);
    int fd = conn();
    tg_expect(fd, "set k 0 0 1\r\nx\r\n", "STORED\r\n");
    struct th_server second = {0};
    second.dir = srv.dir; /* borrowed: cleanup must not remove it */
    uint64_t t0 = tg_now_ms();
    int r = th_mcdbd_start(&second, srv.dir, NULL);
    uint64_t ms = tg_now_ms() - t0;
    if (second.pid)
        th_server_stop(&second, SIGKILL);
    unlink(second.log);
    cr_assert_eq(r, -1, "a second mcdbd started on the data dir in use");
    cr_assert_lt(ms, 5000, "the second mcdbd took %llu ms to fail",
                 (unsigned long long)ms);
    /* The first one is unharmed. */
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    close(fd);
}
