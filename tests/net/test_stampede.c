/*
 * The anti-stampede side of memcached's meta protocol, as a crowd of clients
 * sees it. 200 clients, each on its own connection, send the same request
 * at the same moment (a barrier releases them) and the replies are counted:
 *
 *   mg <key> v c N30 on a miss creates an empty item ("vivify") and exactly
 *   one client gets W (win: you fetch the value); every other one gets Z (a
 *   win token is already out) until the winner, or anyone, stores the key.
 *   md <key> I marks the item stale (kept, new cas): exactly one reader gets
 *   W beside X (stale), every other one X and Z, and all of them the stale
 *   value.
 *
 * memcached (proto_text.c, process_mget_command) writes the return flags in
 * request order, then Z, then X, then W: "VA 0 c7 W", "VA 2 c8 Z X",
 * "VA 2 c8 X W". The last two tests are mcdbd's own: stale marks and
 * vivified items are durable, win tokens live in RAM, so after kill -9 and
 * a restart exactly one new winner is handed out. Each test starts its own
 * server; the suite takes about a second.
 *
 *   build/tests/test_net_stampede
 *   MCDB_TEST_TARGET=memcached build/tests/test_net_stampede
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

TG_SUITE_NEEDS(0)

static struct th_server srv;

static void
setup(void)
{
    cr_assert_eq(tg_start(&srv, NULL), 0, "%s did not start", tg_name());
}

static void
teardown(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
}

TestSuite(stampede, .init = setup, .fini = teardown, .timeout = 60);

/* printf into one of a few static buffers: short requests and replies. */
static const char *
f(const char *fmt, ...)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof(bufs[0]), fmt, ap);
    va_end(ap);
    return b;
}

/* ---- a crowd: CROWD connections that send one request at once ---- */

enum { CROWD = 200 };

struct reply {
    char *line; /* the first line, without "\r\n" (malloc'd) */
    char *data; /* a VA's value, without "\r\n" (malloc'd) */
    size_t dlen;
    char err[160]; /* why there is no complete reply */
};

struct crowd {
    int fd[CROWD];
    struct reply r[CROWD];
    const char *req;
    pthread_barrier_t go;
};

struct member {
    struct crowd *c;
    int i;
};

static void
reply_free(struct reply *r)
{
    free(r->line);
    free(r->data);
    *r = (struct reply){0};
}

/* Send the request on the barrier's signal and read one reply: a line, and
 * for "VA <n> ..." the n bytes of the value and "\r\n". */
static void *
member_run(void *p)
{
    struct member *m = p;
    struct crowd *c = m->c;
    struct reply *r = &c->r[m->i];
    int fd = c->fd[m->i];
    pthread_barrier_wait(&c->go);
    if (th_sends(fd, c->req) != 0) {
        snprintf(r->err, sizeof(r->err), "send failed");
        return NULL;
    }
    r->line = tg_recv_line(fd);
    if (!r->line) {
        snprintf(r->err, sizeof(r->err), "no reply (EOF or timeout)");
        return NULL;
    }
    unsigned long n;
    if (sscanf(r->line, "VA %lu", &n) != 1)
        return NULL;
    if (n > 1024 * 1024) {
        snprintf(r->err, sizeof(r->err), "value of %lu bytes", n);
        return NULL;
    }
    r->data = malloc(n + 2);
    if (tg_recv_n(fd, r->data, n + 2) != n + 2 || r->data[n] != '\r' ||
        r->data[n + 1] != '\n') {
        snprintf(r->err, sizeof(r->err),
                 "value of %lu bytes: short, or no \\r\\n after it", n);
        return NULL;
    }
    r->dlen = n;
    return NULL;
}

static void
crowd_open(struct crowd *c)
{
    for (int i = 0; i < CROWD; i++) {
        c->fd[i] = tg_connect(srv.port);
        cr_assert(c->fd[i] >= 0, "connection %d to %s refused", i, tg_name());
        c->r[i] = (struct reply){0};
    }
}

static void
crowd_close(struct crowd *c)
{
    for (int i = 0; i < CROWD; i++) {
        close(c->fd[i]);
        reply_free(&c->r[i]);
    }
}

/* Every member sends req at once; each gets exactly one complete reply. */
static void
crowd_ask(struct crowd *c, const char *req)
{
    static struct member m[CROWD];
    pthread_t th[CROWD];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 128 * 1024);
    c->req = req;
    pthread_barrier_init(&c->go, NULL, CROWD);
    for (int i = 0; i < CROWD; i++) {
        reply_free(&c->r[i]);
        m[i] = (struct member){.c = c, .i = i};
        cr_assert_eq(pthread_create(&th[i], &attr, member_run, &m[i]), 0);
    }
    for (int i = 0; i < CROWD; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&c->go);
    pthread_attr_destroy(&attr);
    for (int i = 0; i < CROWD; i++)
        cr_assert(!c->r[i].err[0], "client %d: %s (line \"%s\")", i,
                  c->r[i].err, c->r[i].line ? c->r[i].line : "");
}

/* The cas in a reply line ("... c<cas> ..."); fails if there is none. */
static unsigned long long
reply_cas(const char *line)
{
    const char *p = strstr(line, " c");
    unsigned long long cas;
    cr_assert(p && sscanf(p + 2, "%llu", &cas) == 1, "no cas in \"%s\"", line);
    return cas;
}

/* The distinct reply lines and how many got each, for messages:
 * 199 x "VA 0 c3 Z", 1 x "VA 0 c3 W". */
static void
crowd_tally(const struct crowd *c, char *out, size_t size)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < CROWD && n < size; i++) {
        int seen = 0, count = 0;
        for (int j = 0; j < CROWD; j++) {
            if (strcmp(c->r[j].line, c->r[i].line) == 0) {
                seen |= j < i;
                count++;
            }
        }
        if (seen)
            continue;
        char *esc = tg_escape(c->r[i].line, strlen(c->r[i].line), 100);
        n += (size_t)snprintf(out + n, size - n, "%s%d x \"%s\"", n ? ", " : "",
                              count, esc);
        free(esc);
    }
}

/*
 * Every reply is exactly win_line or other_line with the value val. When
 * win_line is not NULL exactly one is win_line: its index is returned
 * (else -1).
 */
static int
crowd_expect(struct crowd *c, const char *win_line, const char *other_line,
             const char *val)
{
    char tally[1024];
    crowd_tally(c, tally, sizeof(tally));
    fprintf(stderr, "%s: \"%.*s\": %s\n", tg_name(), (int)strcspn(c->req, "\r"),
            c->req, tally);
    int winner = -1, wins = 0;
    for (int i = 0; i < CROWD; i++) {
        struct reply *r = &c->r[i];
        int won = win_line && strcmp(r->line, win_line) == 0;
        cr_assert(won || strcmp(r->line, other_line) == 0,
                  "replies %s; expected only \"%s\"%s%s%s", tally, other_line,
                  win_line ? " and one \"" : "", win_line ? win_line : "",
                  win_line ? "\"" : "");
        cr_assert(r->dlen == strlen(val) &&
                      (!r->dlen || memcmp(r->data, val, r->dlen) == 0),
                  "client %d got a value of %zu bytes, expected \"%s\"", i,
                  r->dlen, val);
        if (won) {
            wins++;
            winner = i;
        }
    }
    if (win_line)
        cr_assert_eq(wins, 1, "replies %s: exactly one must be \"%s\"", tally,
                     win_line);
    return winner;
}

static int
conn(void)
{
    int fd = tg_connect(srv.port);
    cr_assert(fd >= 0, "cannot connect to %s", tg_name());
    return fd;
}

/* ---- tests ---- */

Test(stampede, a_miss_vivified_by_200_clients_at_once_has_exactly_one_winner)
{
    static struct crowd c;
    crowd_open(&c);
    crowd_ask(&c, "mg hot v c N30\r\n");
    unsigned long long cas = reply_cas(c.r[0].line);
    int w =
        crowd_expect(&c, f("VA 0 c%llu W", cas), f("VA 0 c%llu Z", cas), "");

    /* The winner fills the key, with the cas it was handed. */
    tg_expect(c.fd[w], f("ms hot 5 C%llu T60\r\nhello\r\n", cas), "HD\r\n");
    crowd_ask(&c, "mg hot v c N30\r\n");
    unsigned long long cas2 = reply_cas(c.r[0].line);
    cr_assert_neq(cas2, cas, "the store did not change the cas");
    crowd_expect(&c, NULL, f("VA 5 c%llu", cas2), "hello");
    crowd_close(&c);
}

Test(stampede, a_stale_item_read_by_200_clients_at_once_has_exactly_one_winner)
{
    int fd = conn();
    tg_expect(fd, "ms hot 5 T60\r\nhello\r\n", "HD\r\n");
    tg_expect(fd, "md hot I\r\n", "HD\r\n");
    close(fd);
    static struct crowd c;
    crowd_open(&c);
    crowd_ask(&c, "mg hot v c N30\r\n");
    unsigned long long cas = reply_cas(c.r[0].line);
    int w = crowd_expect(&c, f("VA 5 c%llu X W", cas), f("VA 5 c%llu Z X", cas),
                         "hello");

    /* The winner recaches: the item is fresh again, no token out. */
    tg_expect(c.fd[w], f("ms hot 5 C%llu T60\r\nfresh\r\n", cas), "HD\r\n");
    crowd_ask(&c, "mg hot v c N30\r\n");
    unsigned long long cas2 = reply_cas(c.r[0].line);
    crowd_expect(&c, NULL, f("VA 5 c%llu", cas2), "fresh");
    crowd_close(&c);
}

/* mcdbd's own: memcached keeps nothing across a restart. A stale mark and a
 * vivified item are writes like any other and survive kill -9; the win token
 * ("a W went out for this version") is RAM only, so after the restart one
 * new winner is handed out: a second client recaches, nobody is left
 * waiting for a winner that died with the server. */
Test(stampede, after_kill_9_a_stale_item_is_still_stale_and_has_one_new_winner)
{
    if (tg_is_memcached())
        cr_skip_test("SKIPPED against memcached: it does not persist, this "
                     "test is mcdbd's restart");
    int fd = conn();
    tg_expect(fd, "ms hot 5 T60\r\nhello\r\n", "HD\r\n");
    tg_expect(fd, "md hot I\r\n", "HD\r\n");
    th_server_stop(&srv, SIGKILL);
    close(fd);
    cr_assert_eq(th_mcdbd_restart(&srv, NULL), 0, "mcdbd did not restart");

    static struct crowd c;
    crowd_open(&c);
    crowd_ask(&c, "mg hot v c N30\r\n");
    unsigned long long cas = reply_cas(c.r[0].line);
    crowd_expect(&c, f("VA 5 c%llu X W", cas), f("VA 5 c%llu Z X", cas),
                 "hello");
    crowd_close(&c);
}

/* The winner of a vivified item got its W, then the server was killed: the
 * empty item is still there with its N30 TTL running, and one of the next
 * readers wins (the others see Z, not an empty hit to use as the value). */
Test(stampede,
     after_kill_9_a_vivified_item_is_still_there_and_has_one_new_winner)
{
    if (tg_is_memcached())
        cr_skip_test("SKIPPED against memcached: it does not persist, this "
                     "test is mcdbd's restart");
    int fd = conn();
    cr_assert_eq(th_sends(fd, "mg stub v c N30\r\n"), 0);
    char *line = tg_recv_line(fd);
    cr_assert(line, "no reply to mg stub v c N30");
    unsigned long long stub_cas = reply_cas(line);
    cr_assert_str_eq(line, f("VA 0 c%llu W", stub_cas));
    free(line);
    tg_expect(fd, "", "\r\n");
    th_server_stop(&srv, SIGKILL);
    close(fd);
    cr_assert_eq(th_mcdbd_restart(&srv, NULL), 0, "mcdbd did not restart");

    fd = conn();
    cr_assert_eq(th_sends(fd, "mg stub v t\r\n"), 0);
    line = tg_recv_line(fd);
    cr_assert(line, "no reply to mg stub v t");
    int ttl = 0;
    cr_assert(sscanf(line, "VA 0 t%d", &ttl) == 1 && ttl > 0 && ttl <= 30,
              "mg stub v t after the restart: \"%s\", expected \"VA 0 t<1..30>"
              "...\" (the vivified item, its N30 TTL running)",
              line);
    free(line);
    tg_expect(fd, "", "\r\n");
    close(fd);

    static struct crowd c;
    crowd_open(&c);
    crowd_ask(&c, "mg stub v c N30\r\n");
    unsigned long long cas = reply_cas(c.r[0].line);
    crowd_expect(&c, f("VA 0 c%llu W", cas), f("VA 0 c%llu Z", cas), "");
    crowd_close(&c);
}
