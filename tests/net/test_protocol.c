/*
 * memcached's text protocol over raw sockets, command by command: every
 * reply and error string as memcached 1.6 sends it (doc/protocol.txt and
 * proto_text.c in memcached/memcached). Each test starts its own server.
 *
 *   build/tests/test_net_protocol                      against mcdbd
 *   MCDB_TEST_TARGET=memcached build/tests/test_net_protocol   the reference
 *
 * Where issue 4 asks more than memcached does, the test says so and runs
 * against mcdbd only. Two tests sleep (expiry, delayed flush_all): ~6 s.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

TG_SUITE_NEEDS(0)

TG_CONNECTED_SUITE(protocol, 60);

/* printf into one of a few static buffers: short requests and replies. */
static const char *
f(const char *fmt, ...)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof(bufs[0]), fmt, ap);
    va_end(ap);
    return b;
}

static void
set_ok(int c, const char *key, unsigned flags, long exptime, const char *val)
{
    tg_expect(
        c,
        f("set %s %u %ld %zu\r\n%s\r\n", key, flags, exptime, strlen(val), val),
        "STORED\r\n");
}

/* "gets key" of a stored key: its cas unique. */
static unsigned long long
gets_cas(int c, const char *key)
{
    cr_assert_eq(th_sends(c, f("gets %s\r\n", key)), 0);
    char *line = tg_recv_line(c);
    cr_assert(line, "no reply to gets %s", key);
    unsigned long long cas = 0;
    unsigned flags, len;
    char k[256];
    cr_assert_eq(sscanf(line, "VALUE %250s %u %u %llu", k, &flags, &len, &cas),
                 4, "gets %s: got \"%s\"", key, line);
    free(line);
    char *data = malloc(len + 2);
    cr_assert_eq(tg_recv_n(c, data, len + 2), len + 2);
    free(data);
    tg_expect(c, "", "END\r\n");
    return cas;
}

/* get of a counter: memcached keeps the length of a value that incr/decr
 * made shorter and pads it with spaces ("100" decr 1 reads "99 "); the issue
 * does not ask for that, so trailing spaces are ignored here. */
static unsigned long long
get_number(int c, const char *key)
{
    cr_assert_eq(th_sends(c, f("get %s\r\n", key)), 0);
    char *line = tg_recv_line(c);
    cr_assert(line, "no reply to get %s", key);
    unsigned len;
    cr_assert_eq(sscanf(line, "VALUE %*s %*u %u", &len), 1,
                 "get %s: got \"%s\"", key, line);
    free(line);
    char data[64] = {0};
    cr_assert_lt(len, 40);
    cr_assert_eq(tg_recv_n(c, data, len + 2), len + 2);
    tg_expect(c, "", "END\r\n");
    data[len] = '\0';
    for (unsigned i = 0; i < len; i++)
        cr_assert(data[i] == ' ' ? strspn(data + i, " ") == len - i
                                 : data[i] >= '0' && data[i] <= '9',
                  "counter %s reads \"%s\"", key, data);
    return strtoull(data, NULL, 10);
}

/* After an error whose aftermath may differ between servers (e.g. a data
 * line read as a command): send "version" and skip lines up to its reply.
 * Returns how many lines came before it. */
static int
resync(int c)
{
    cr_assert_eq(th_sends(c, "version\r\n"), 0);
    for (int n = 0; n < 16; n++) {
        char *line = tg_recv_line(c);
        cr_assert(line, "connection lost while resynchronising");
        int v = strncmp(line, "VERSION ", 8) == 0;
        free(line);
        if (v)
            return n;
    }
    cr_assert_fail("no VERSION reply after 16 lines");
    return -1;
}

/* ---- retrieval ---- */

Test(protocol, get_of_a_missing_key_returns_only_end)
{
    tg_expect(fd, "get nokey\r\n", "END\r\n");
}

Test(protocol, set_then_get_returns_the_value_and_its_flags)
{
    tg_expect(fd, "set k 42 0 5\r\nhello\r\n", "STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 42 5\r\nhello\r\nEND\r\n");
}

Test(protocol, flags_keep_all_32_bits)
{
    set_ok(fd, "k", 4294967295u, 0, "v");
    tg_expect(fd, "get k\r\n", "VALUE k 4294967295 1\r\nv\r\nEND\r\n");
}

Test(protocol, empty_value_is_stored_and_returned)
{
    tg_expect(fd, "set k 1 0 0\r\n\r\n", "STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 1 0\r\n\r\nEND\r\n");
}

Test(protocol, set_replaces_the_value_and_the_flags)
{
    set_ok(fd, "k", 1, 0, "first");
    set_ok(fd, "k", 2, 0, "second value");
    tg_expect(fd, "get k\r\n", "VALUE k 2 12\r\nsecond value\r\nEND\r\n");
}

Test(protocol, get_with_many_keys_returns_the_hits_in_request_order)
{
    /* 200 keys of 30 bytes: a 6 KB command line; every third one missing. */
    char *req = malloc(16384), *want = malloc(65536);
    size_t rl = 0, wl = 0;
    rl += (size_t)sprintf(req, "get");
    for (int i = 199; i >= 0; i--) {
        char key[40];
        snprintf(key, sizeof(key), "many-keys-in-one-request-%05d", i);
        if (i % 3)
            set_ok(fd, key, (unsigned)i, 0, f("value-%d", i));
        rl += (size_t)sprintf(req + rl, " %s", key);
        if (i % 3)
            wl += (size_t)sprintf(want + wl, "VALUE %s %d %zu\r\nvalue-%d\r\n",
                                  key, i, strlen(f("value-%d", i)), i);
    }
    rl += (size_t)sprintf(req + rl, "\r\n");
    wl += (size_t)sprintf(want + wl, "END\r\n");
    tg_expect_n(fd, req, rl, want, wl);
    free(req);
    free(want);
}

/* Real clients (libmemcached's mget, pymemcache's get_many) put all their
 * keys on one line: memcached reads key lists of any length, where other
 * lines are limited. 1,000 keys of 24 bytes: a 25 KB line. */
Test(protocol, get_with_a_25_kb_key_list_is_answered)
{
    struct {
        char *p;
        size_t n;
    } req = {malloc(32768), 0}, want = {malloc(4096), 0};
    req.n += (size_t)sprintf(req.p, "get");
    for (int i = 0; i < 1000; i++) {
        char key[40];
        snprintf(key, sizeof(key), "a-rather-long-key-%06d", i);
        if (i % 100 == 7) {
            set_ok(fd, key, 0, 0, "hit");
            want.n += (size_t)sprintf(want.p + want.n,
                                      "VALUE %s 0 3\r\nhit\r\n", key);
        }
        req.n += (size_t)sprintf(req.p + req.n, " %s", key);
    }
    req.n += (size_t)sprintf(req.p + req.n, "\r\n");
    want.n += (size_t)sprintf(want.p + want.n, "END\r\n");
    tg_expect_n(fd, req.p, req.n, want.p, want.n);
    free(req.p);
    free(want.p);
}

Test(protocol, get_of_the_same_key_twice_returns_it_twice)
{
    set_ok(fd, "k", 0, 0, "x");
    tg_expect(fd, "get k k\r\n",
              "VALUE k 0 1\r\nx\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
}

Test(protocol, gets_returns_a_cas_unique_that_changes_with_every_write)
{
    set_ok(fd, "k", 0, 0, "a");
    set_ok(fd, "other", 0, 0, "b");
    unsigned long long c1 = gets_cas(fd, "k");
    cr_assert_eq(gets_cas(fd, "k"), c1, "a read changed the cas unique");
    set_ok(fd, "k", 0, 0, "a");
    unsigned long long c2 = gets_cas(fd, "k");
    cr_assert_neq(c2, c1, "set did not change the cas unique");
    tg_expect(fd, "append k 0 0 1\r\nb\r\n", "STORED\r\n");
    unsigned long long c3 = gets_cas(fd, "k");
    cr_assert(c3 != c2 && c3 != c1, "append did not change the cas unique");
    cr_assert_neq(gets_cas(fd, "other"), c3, "two keys share a cas unique");
    /* Many keys: each VALUE line carries its own unique. */
    tg_expect(
        fd, "gets k nokey other\r\n",
        f("VALUE k 0 2 %llu\r\nab\r\nVALUE other 0 1 %llu\r\nb\r\nEND\r\n", c3,
          gets_cas(fd, "other")));
}

Test(protocol, gat_returns_the_value_and_gats_adds_the_cas_unique)
{
    set_ok(fd, "k", 7, 0, "x");
    unsigned long long cas = gets_cas(fd, "k");
    tg_expect(fd, "gat 100 k nokey\r\n", "VALUE k 7 1\r\nx\r\nEND\r\n");
    tg_expect(fd, "gats 100 nokey k\r\n",
              f("VALUE k 7 1 %llu\r\nx\r\nEND\r\n", cas));
}

Test(protocol, gat_of_a_missing_key_returns_only_end)
{
    tg_expect(fd, "gat 10 nokey\r\n", "END\r\n");
    tg_expect(fd, "gats 10 nokey\r\n", "END\r\n");
}

/* ---- storage ---- */

Test(protocol, add_on_a_missing_key_is_stored)
{
    tg_expect(fd, "add k 3 0 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 3 1\r\nx\r\nEND\r\n");
}

Test(protocol, add_on_an_existing_key_is_not_stored)
{
    set_ok(fd, "k", 1, 0, "old");
    tg_expect(fd, "add k 2 0 3\r\nnew\r\n", "NOT_STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 1 3\r\nold\r\nEND\r\n");
}

Test(protocol, replace_on_a_missing_key_is_not_stored)
{
    tg_expect(fd, "replace k 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    tg_expect(fd, "get k\r\n", "END\r\n");
}

Test(protocol, replace_on_an_existing_key_stores_the_value_and_flags)
{
    set_ok(fd, "k", 1, 0, "old");
    tg_expect(fd, "replace k 9 0 4\r\nnew!\r\n", "STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 9 4\r\nnew!\r\nEND\r\n");
}

Test(protocol, append_and_prepend_keep_the_flags_of_the_stored_item)
{
    set_ok(fd, "k", 5, 0, "bb");
    tg_expect(fd, "append k 9 0 2\r\ncc\r\n", "STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 5 4\r\nbbcc\r\nEND\r\n");
    tg_expect(fd, "prepend k 7 0 2\r\naa\r\n", "STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 5 6\r\naabbcc\r\nEND\r\n");
}

Test(protocol, append_and_prepend_on_a_missing_key_are_not_stored)
{
    tg_expect(fd, "append k 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    tg_expect(fd, "prepend k 0 0 1\r\nx\r\n", "NOT_STORED\r\n");
    tg_expect(fd, "get k\r\n", "END\r\n");
}

Test(protocol, cas_with_the_current_unique_is_stored)
{
    set_ok(fd, "k", 1, 0, "old");
    unsigned long long cas = gets_cas(fd, "k");
    tg_expect(fd, f("cas k 4 0 3 %llu\r\nnew\r\n", cas), "STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 4 3\r\nnew\r\nEND\r\n");
    /* The unique it used is now stale. */
    tg_expect(fd, f("cas k 4 0 3 %llu\r\nold\r\n", cas), "EXISTS\r\n");
}

Test(protocol, cas_with_a_stale_unique_returns_exists_and_keeps_the_value)
{
    set_ok(fd, "k", 1, 0, "v1");
    unsigned long long cas = gets_cas(fd, "k");
    set_ok(fd, "k", 1, 0, "v2");
    tg_expect(fd, f("cas k 0 0 2 %llu\r\nv3\r\n", cas), "EXISTS\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 1 2\r\nv2\r\nEND\r\n");
}

Test(protocol, cas_on_a_missing_key_returns_not_found)
{
    tg_expect(fd, "cas k 0 0 1 12345\r\nx\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "get k\r\n", "END\r\n");
}

Test(protocol, cas_race_between_two_connections_lets_exactly_one_win)
{
    int b = tg_connect(srv.port);
    cr_assert(b >= 0);
    for (int round = 0; round < 20; round++) {
        set_ok(fd, "k", 0, 0, f("round%d", round));
        unsigned long long ca = gets_cas(fd, "k"), cb = gets_cas(b, "k");
        cr_assert_eq(ca, cb);
        /* Both requests are on the wire before either reply is read. */
        cr_assert_eq(th_sends(fd, f("cas k 0 0 1 %llu\r\nA\r\n", ca)), 0);
        cr_assert_eq(th_sends(b, f("cas k 0 0 1 %llu\r\nB\r\n", cb)), 0);
        char *ra = tg_recv_line(fd), *rb = tg_recv_line(b);
        cr_assert(ra && rb);
        int a_won = strcmp(ra, "STORED") == 0,
            b_won = strcmp(rb, "STORED") == 0;
        cr_assert(a_won != b_won && strcmp(a_won ? rb : ra, "EXISTS") == 0,
                  "round %d: connection A got \"%s\", B got \"%s\"", round, ra,
                  rb);
        tg_expect(fd, "get k\r\n",
                  f("VALUE k 0 1\r\n%s\r\nEND\r\n", a_won ? "A" : "B"));
        free(ra);
        free(rb);
    }
    close(b);
}

/* ---- incr / decr ---- */

Test(protocol, incr_and_decr_return_the_new_value_and_keep_the_flags)
{
    set_ok(fd, "n", 77, 0, "10");
    tg_expect(fd, "incr n 5\r\n", "15\r\n");
    tg_expect(fd, "decr n 3\r\n", "12\r\n");
    tg_expect(fd, "incr n 0\r\n", "12\r\n");
    tg_expect(fd, "get n\r\n", "VALUE n 77 2\r\n12\r\nEND\r\n");
}

Test(protocol, incr_and_decr_change_the_length_of_the_number)
{
    set_ok(fd, "n", 0, 0, "99");
    tg_expect(fd, "incr n 1\r\n", "100\r\n");
    tg_expect(fd, "get n\r\n", "VALUE n 0 3\r\n100\r\nEND\r\n");
    tg_expect(fd, "decr n 91\r\n", "9\r\n");
    cr_assert_eq(get_number(fd, "n"), 9);
}

Test(protocol, incr_wraps_around_at_2_pow_64)
{
    set_ok(fd, "n", 0, 0, "18446744073709551615");
    tg_expect(fd, "incr n 1\r\n", "0\r\n");
    cr_assert_eq(get_number(fd, "n"), 0);
    set_ok(fd, "n", 0, 0, "18446744073709551610");
    tg_expect(fd, "incr n 18446744073709551615\r\n",
              "18446744073709551609\r\n");
}

Test(protocol, decr_stops_at_zero)
{
    set_ok(fd, "n", 0, 0, "5");
    tg_expect(fd, "decr n 10\r\n", "0\r\n");
    tg_expect(fd, "decr n 1\r\n", "0\r\n");
    set_ok(fd, "n", 0, 0, "7");
    tg_expect(fd, "decr n 18446744073709551615\r\n", "0\r\n");
    cr_assert_eq(get_number(fd, "n"), 0);
}

Test(protocol, incr_on_a_non_numeric_value_is_a_client_error_and_leaves_it)
{
    set_ok(fd, "k", 3, 0, "abc");
    tg_expect(
        fd, "incr k 1\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    tg_expect(
        fd, "decr k 1\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    set_ok(fd, "neg", 0, 0, "-5");
    tg_expect(
        fd, "incr neg 1\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    tg_expect(fd, "get k neg\r\n",
              "VALUE k 3 3\r\nabc\r\nVALUE neg 0 2\r\n-5\r\nEND\r\n");
}

Test(protocol, incr_with_an_invalid_delta_is_a_client_error_and_leaves_it)
{
    set_ok(fd, "n", 0, 0, "10");
    const char *bad[] = {"abc", "-1", "18446744073709551616", "1x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        tg_expect(fd, f("incr n %s\r\n", bad[i]),
                  "CLIENT_ERROR invalid numeric delta argument\r\n");
        tg_expect(fd, f("decr n %s\r\n", bad[i]),
                  "CLIENT_ERROR invalid numeric delta argument\r\n");
    }
    tg_expect(fd, "get n\r\n", "VALUE n 0 2\r\n10\r\nEND\r\n");
}

Test(protocol, incr_and_decr_on_a_missing_key_return_not_found)
{
    tg_expect(fd, "incr n 1\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "decr n 1\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "get n\r\n", "END\r\n");
}

struct incr_arg {
    int port, n;
    char err[200];
};

static void *
incr_many(void *p)
{
    struct incr_arg *a = p;
    int c = tg_connect(a->port);
    if (c < 0) {
        snprintf(a->err, sizeof(a->err), "cannot connect");
        return NULL;
    }
    for (int i = 0; i < a->n && !a->err[0]; i++) {
        char *line =
            th_sends(c, "incr counter 1\r\n") == 0 ? tg_recv_line(c) : NULL;
        if (!line || !line[0] || strspn(line, "0123456789") != strlen(line))
            snprintf(a->err, sizeof(a->err), "incr got \"%s\"",
                     line ? line : "(nothing)");
        free(line);
    }
    close(c);
    return NULL;
}

Test(protocol, concurrent_incr_from_many_connections_loses_no_increment)
{
    enum { CONNS = 8, EACH = 300 };
    set_ok(fd, "counter", 0, 0, "0");
    pthread_t th[CONNS];
    struct incr_arg args[CONNS];
    for (int i = 0; i < CONNS; i++) {
        args[i] = (struct incr_arg){.port = srv.port, .n = EACH};
        pthread_create(&th[i], NULL, incr_many, &args[i]);
    }
    for (int i = 0; i < CONNS; i++) {
        pthread_join(th[i], NULL);
        cr_assert(!args[i].err[0], "connection %d: %s", i, args[i].err);
    }
    cr_assert_eq(get_number(fd, "counter"), CONNS * EACH);
}

/* ---- delete, touch ---- */

Test(protocol, delete_removes_the_key_then_reports_not_found)
{
    set_ok(fd, "k", 0, 0, "x");
    tg_expect(fd, "delete k\r\n", "DELETED\r\n");
    tg_expect(fd, "get k\r\n", "END\r\n");
    tg_expect(fd, "delete k\r\n", "NOT_FOUND\r\n");
}

Test(protocol, delete_with_a_hold_time_is_a_client_error)
{
    set_ok(fd, "k", 0, 0, "x");
    tg_expect(fd, "delete k 10\r\n",
              "CLIENT_ERROR bad command line format.  "
              "Usage: delete <key> [noreply]\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
}

Test(protocol, touch_reports_touched_or_not_found)
{
    set_ok(fd, "k", 0, 0, "x");
    tg_expect(fd, "touch k 100\r\n", "TOUCHED\r\n");
    tg_expect(fd, "touch nokey 100\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
}

Test(protocol, touch_and_gat_with_an_invalid_exptime_are_client_errors)
{
    set_ok(fd, "k", 0, 0, "x");
    tg_expect(fd, "touch k abc\r\n",
              "CLIENT_ERROR invalid exptime argument\r\n");
    tg_expect(fd, "gat abc k\r\n", "CLIENT_ERROR invalid exptime argument\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
}

/* ---- expiry (this test sleeps 2.5 s) ---- */

Test(protocol, keys_expire_after_their_relative_exptime_or_touch_or_gat)
{
    set_ok(fd, "short", 0, 1, "x");
    set_ok(fd, "long", 0, 100, "x");
    set_ok(fd, "touched-short", 0, 100, "x");
    tg_expect(fd, "touch touched-short 1\r\n", "TOUCHED\r\n");
    set_ok(fd, "gat-short", 0, 100, "x");
    tg_expect(fd, "gat 1 gat-short\r\n", "VALUE gat-short 0 1\r\nx\r\nEND\r\n");
    set_ok(fd, "touched-long", 0, 2, "x");
    tg_expect(fd, "touch touched-long 100\r\n", "TOUCHED\r\n");
    set_ok(fd, "gats-long", 0, 2, "x");
    unsigned long long cas = gets_cas(fd, "gats-long");
    tg_expect(fd, "gats 100 gats-long\r\n",
              f("VALUE gats-long 0 1 %llu\r\nx\r\nEND\r\n", cas));
    usleep(2500 * 1000);
    tg_expect(fd, "get short touched-short gat-short\r\n", "END\r\n");
    tg_expect(fd, "get long touched-long gats-long\r\n",
              "VALUE long 0 1\r\nx\r\nVALUE touched-long 0 1\r\nx\r\n"
              "VALUE gats-long 0 1\r\nx\r\nEND\r\n");
    /* An expired key is gone for every command, not only for get. */
    tg_expect(fd, "touch short 100\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "add short 0 0 1\r\ny\r\n", "STORED\r\n");
}

Test(protocol, negative_exptime_expires_the_key_at_once)
{
    set_ok(fd, "k", 0, 0, "old");
    set_ok(fd, "k", 0, -1, "new");
    tg_expect(fd, "get k\r\n", "END\r\n");
    set_ok(fd, "t", 0, 0, "x");
    tg_expect(fd, "touch t -1\r\n", "TOUCHED\r\n");
    tg_expect(fd, "get t\r\n", "END\r\n");
}

Test(protocol, absolute_exptime_in_the_past_expires_at_once_and_future_keeps)
{
    /* More than 30 days of seconds: a unix time, not a relative one. */
    long now = (long)time(NULL);
    set_ok(fd, "past", 0, now - 3600, "x");
    set_ok(fd, "future", 0, now + 3600, "y");
    tg_expect(fd, "get past future\r\n", "VALUE future 0 1\r\ny\r\nEND\r\n");
}

/* ---- flush_all ---- */

Test(protocol, flush_all_removes_every_key)
{
    for (int i = 0; i < 50; i++)
        set_ok(fd, f("k%d", i), 0, 0, "x");
    tg_expect(fd, "flush_all\r\n", "OK\r\n");
    for (int i = 0; i < 50; i++)
        tg_expect(fd, f("get k%d\r\n", i), "END\r\n");
    set_ok(fd, "k0", 0, 0, "after");
    tg_expect(fd, "get k0\r\n", "VALUE k0 0 5\r\nafter\r\nEND\r\n");
    tg_expect(fd, "flush_all 0\r\n", "OK\r\n");
    tg_expect(fd, "get k0\r\n", "END\r\n");
}

/* Sleeps 3.1 s. memcached's "flush_all 1" empties at once (its clock has
 * one-second ticks), so the delay here is 2. */
Test(protocol, flush_all_with_a_delay_removes_the_keys_only_when_it_is_due)
{
    set_ok(fd, "k", 0, 0, "x");
    tg_expect(fd, "flush_all 2\r\n", "OK\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    usleep(3100 * 1000);
    tg_expect(fd, "get k\r\n", "END\r\n");
    set_ok(fd, "k", 0, 0, "y");
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\ny\r\nEND\r\n");
}

Test(protocol, flush_all_with_an_invalid_delay_is_a_client_error)
{
    set_ok(fd, "k", 0, 0, "x");
    tg_expect(fd, "flush_all abc\r\n",
              "CLIENT_ERROR invalid exptime argument\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
}

/* ---- version, verbosity, quit ---- */

Test(protocol, version_replies_with_one_version_line)
{
    cr_assert_eq(th_sends(fd, "version\r\n"), 0);
    char *line = tg_recv_line(fd);
    cr_assert(line);
    cr_assert(strncmp(line, "VERSION ", 8) == 0 && line[8] > ' ' &&
                  !strchr(line + 8, ' '),
              "got \"%s\"", line);
    free(line);
    tg_expect_quiet(fd);
}

Test(protocol, verbosity_replies_ok)
{
    tg_expect(fd, "verbosity 1\r\n", "OK\r\n");
    tg_expect(fd, "verbosity 0\r\n", "OK\r\n");
}

Test(protocol, quit_closes_the_connection_without_a_reply)
{
    cr_assert_eq(th_sends(fd, "quit\r\n"), 0);
    char *got = NULL;
    cr_assert(tg_wait_closed(fd, 2000, &got, NULL), "still open after quit");
    cr_assert_null(got, "quit replied \"%s\"", got);
}

/* ---- stats ---- */

Test(protocol, stats_has_memcacheds_general_fields)
{
    static const char *fields[] = {
        "pid",           "uptime",           "time",
        "version",       "pointer_size",     "rusage_user",
        "rusage_system", "curr_connections", "total_connections",
        "cmd_get",       "cmd_set",          "cmd_flush",
        "cmd_touch",     "get_hits",         "get_misses",
        "get_expired",   "delete_hits",      "delete_misses",
        "incr_hits",     "incr_misses",      "decr_hits",
        "decr_misses",   "cas_hits",         "cas_misses",
        "cas_badval",    "touch_hits",       "touch_misses",
        "bytes_read",    "bytes_written",    "limit_maxbytes",
        "threads",       "curr_items",       "total_items",
        "bytes"};
    char *all = tg_stats(fd, NULL);
    cr_assert(all);
    size_t n = strlen(all);
    cr_assert(n >= 5 && strcmp(all + n - 5, "END\r\n") == 0,
              "stats does not end with END: \"%s\"", all);
    for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++) {
        char pat[64];
        snprintf(pat, sizeof(pat), "\nSTAT %s ", fields[i]);
        cr_assert(strstr(all, pat) ||
                      strncmp(all, pat + 1, strlen(pat + 1)) == 0,
                  "stats has no field %s", fields[i]);
    }
    free(all);
    cr_assert_eq(tg_stat(fd, NULL, "pid"), srv.pid);
    long long t = tg_stat(fd, NULL, "time");
    cr_assert(llabs(t - (long long)time(NULL)) <= 2, "stats time %lld", t);
    cr_assert_geq(tg_stat(fd, NULL, "threads"), 1);
    long long ps = tg_stat(fd, NULL, "pointer_size");
    cr_assert(ps == 32 || ps == 64, "pointer_size %lld", ps);
}

Test(protocol, stats_counters_follow_the_commands)
{
#define S(name) tg_stat(fd, NULL, name)
    long long get = S("cmd_get"), hits = S("get_hits"), miss = S("get_misses");
    long long set = S("cmd_set"), items = S("curr_items"),
              total = S("total_items");
    long long dh = S("delete_hits"), dm = S("delete_misses");
    long long ih = S("incr_hits"), im = S("incr_misses");
    long long dch = S("decr_hits"), dcm = S("decr_misses");
    long long th = S("touch_hits"), tm = S("touch_misses"),
              touch = S("cmd_touch");
    long long ch = S("cas_hits"), cm = S("cas_misses"), cb = S("cas_badval");
    long long flush = S("cmd_flush"), rd = S("bytes_read"),
              wr = S("bytes_written");

    set_ok(fd, "k", 0, 0, "x");
    set_ok(fd, "n", 0, 0, "1");
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    tg_expect(fd, "get nokey\r\n", "END\r\n");
    tg_expect(fd, "incr n 1\r\n", "2\r\n");
    tg_expect(fd, "incr nokey 1\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "decr n 1\r\n", "1\r\n");
    tg_expect(fd, "decr nokey 1\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "touch k 100\r\n", "TOUCHED\r\n");
    tg_expect(fd, "touch nokey 100\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "cas nokey 0 0 1 1\r\nx\r\n", "NOT_FOUND\r\n");
    tg_expect(fd, "cas k 0 0 1 999999\r\nx\r\n", "EXISTS\r\n");
    unsigned long long cas = gets_cas(fd, "k");
    tg_expect(fd, f("cas k 0 0 1 %llu\r\ny\r\n", cas), "STORED\r\n");
    cr_assert_eq(S("curr_items"), items + 2);
    tg_expect(fd, "delete n\r\n", "DELETED\r\n");
    tg_expect(fd, "delete nokey\r\n", "NOT_FOUND\r\n");

    cr_assert_eq(S("cmd_get"), get + 3, "cmd_get"); /* get, get, gets */
    cr_assert_eq(S("get_hits"), hits + 2, "get_hits");
    cr_assert_eq(S("get_misses"), miss + 1, "get_misses");
    cr_assert_geq(S("cmd_set"), set + 3, "cmd_set");
    cr_assert_eq(S("curr_items"), items + 1, "curr_items");
    cr_assert_geq(S("total_items"), total + 3, "total_items");
    cr_assert_eq(S("delete_hits"), dh + 1, "delete_hits");
    cr_assert_eq(S("delete_misses"), dm + 1, "delete_misses");
    cr_assert_eq(S("incr_hits"), ih + 1, "incr_hits");
    cr_assert_eq(S("incr_misses"), im + 1, "incr_misses");
    cr_assert_eq(S("decr_hits"), dch + 1, "decr_hits");
    cr_assert_eq(S("decr_misses"), dcm + 1, "decr_misses");
    cr_assert_eq(S("touch_hits"), th + 1, "touch_hits");
    cr_assert_eq(S("touch_misses"), tm + 1, "touch_misses");
    cr_assert_eq(S("cmd_touch"), touch + 2, "cmd_touch");
    cr_assert_eq(S("cas_hits"), ch + 1, "cas_hits");
    cr_assert_eq(S("cas_misses"), cm + 1, "cas_misses");
    cr_assert_eq(S("cas_badval"), cb + 1, "cas_badval");
    cr_assert_gt(S("bytes_read"), rd, "bytes_read");
    cr_assert_gt(S("bytes_written"), wr, "bytes_written");
    tg_expect(fd, "flush_all\r\n", "OK\r\n");
    cr_assert_eq(S("cmd_flush"), flush + 1, "cmd_flush");

#undef S
}

/* Poll a stat until it reads want, for up to ms (connection accounting may
 * trail the event, on another server thread): its last value. */
static long long
stat_settles_at(const char *name, long long want, int ms)
{
    long long v = -1;
    for (uint64_t end = tg_now_ms() + (uint64_t)ms;;) {
        v = tg_stat(fd, NULL, name);
        if (v == want || tg_now_ms() >= end)
            return v;
        usleep(20 * 1000);
    }
}

Test(protocol, stats_count_connections_while_they_are_open)
{
    /* First let the start-up probe's connection be counted and closed: two
     * equal readings 100 ms apart. */
    long long total = -1, curr = -1;
    for (int i = 0; i < 20; i++) {
        long long t = tg_stat(fd, NULL, "total_connections");
        long long c = tg_stat(fd, NULL, "curr_connections");
        if (t == total && c == curr)
            break;
        total = t;
        curr = c;
        usleep(100 * 1000);
    }
    cr_assert(total >= 1 && curr >= 1, "total %lld, curr %lld", total, curr);
    int b = tg_connect(srv.port);
    cr_assert(b >= 0);
    tg_expect_quiet(b);
    cr_assert_eq(stat_settles_at("total_connections", total + 1, 2000),
                 total + 1, "total_connections");
    cr_assert_eq(stat_settles_at("curr_connections", curr + 1, 2000), curr + 1,
                 "curr_connections while a second client is connected");
    close(b);
    cr_assert_eq(stat_settles_at("curr_connections", curr, 2000), curr,
                 "curr_connections after it left");
    cr_assert_eq(tg_stat(fd, NULL, "total_connections"), total + 1);
}

Test(protocol, stats_reset_zeroes_the_counters)
{
    set_ok(fd, "k", 0, 0, "x");
    tg_expect(fd, "get k\r\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
    tg_expect(fd, "get nokey\r\n", "END\r\n");
    tg_expect(fd, "stats reset\r\n", "RESET\r\n");
    cr_assert_eq(tg_stat(fd, NULL, "get_hits"), 0);
    cr_assert_eq(tg_stat(fd, NULL, "get_misses"), 0);
    cr_assert_eq(tg_stat(fd, NULL, "cmd_get"), 0);
    /* Not a counter: the item is still there. */
    cr_assert_eq(tg_stat(fd, NULL, "curr_items"), 1);
}

Test(protocol, stats_settings_lists_stat_lines)
{
    char *all = tg_stats(fd, "settings");
    cr_assert(all);
    size_t n = strlen(all);
    cr_assert(strncmp(all, "STAT ", 5) == 0 && n >= 5 &&
                  strcmp(all + n - 5, "END\r\n") == 0,
              "stats settings: \"%s\"", all);
    free(all);
}

/* Issue 4: "stats log" with the engine's figures; memcached has none. */
Test(protocol, stats_log_lists_the_engines_figures)
{
    if (tg_is_memcached())
        cr_skip_test("stats log is mcdbd's own");
    set_ok(fd, "k", 0, 0, "x");
    char *all = tg_stats(fd, "log");
    cr_assert(all);
    size_t n = strlen(all);
    cr_assert(strncmp(all, "STAT ", 5) == 0 && n >= 5 &&
                  strcmp(all + n - 5, "END\r\n") == 0,
              "stats log: \"%s\"", all);
    free(all);
}

/* ---- errors ---- */

Test(protocol, unknown_command_is_error)
{
    tg_expect(fd, "bogus\r\n", "ERROR\r\n");
    tg_expect(fd, "bogus with arguments\r\n", "ERROR\r\n");
    tg_expect(fd, "GET k\r\n", "ERROR\r\n"); /* commands are lower case */
    tg_expect_quiet(fd);
}

Test(protocol, command_missing_its_arguments_gets_an_error_reply)
{
    /* memcached answers ERROR to these; CLIENT_ERROR <reason> is as good. */
    const char *reqs[] = {"get\r\n",    "gets\r\n",      "gat 10\r\n",
                          "gat\r\n",    "incr\r\n",      "incr n\r\n",
                          "decr n\r\n", "touch k\r\n",   "delete\r\n",
                          "set k\r\n",  "set k 0 0\r\n", "verbosity\r\n"};
    for (size_t i = 0; i < sizeof(reqs) / sizeof(*reqs); i++) {
        if (tg_is_memcached() && strcmp(reqs[i], "gat 10\r\n") == 0)
            continue; /* memcached 1.6.18 answers END: a quirk, not a spec */
        cr_assert_eq(th_sends(fd, reqs[i]), 0);
        char *line = tg_recv_line(fd);
        char *esc = tg_escape(reqs[i], strlen(reqs[i]), 100);
        cr_assert(line, "no reply to \"%s\"", esc);
        cr_assert(strcmp(line, "ERROR") == 0 ||
                      strncmp(line, "CLIENT_ERROR ", 13) == 0,
                  "\"%s\" got \"%s\"", esc, line);
        free(esc);
        free(line);
    }
    tg_expect_quiet(fd);
}

Test(protocol, storage_command_with_a_bad_number_is_a_client_error)
{
    /* Only the command line: with a bad length there is no data to read. */
    const char *reqs[] = {
        "set k abc 0 1\r\n",  "set k 0 abc 1\r\n",
        "set k 0 0 abc\r\n",  "set k 0 0 -1\r\n",
        "set k -1 0 1\r\n",   "set k 0 0 99999999999999999999\r\n",
        "cas k 0 0 1 abc\r\n"};
    for (size_t i = 0; i < sizeof(reqs) / sizeof(*reqs); i++) {
        tg_expect(fd, reqs[i], "CLIENT_ERROR bad command line format\r\n");
        tg_expect_quiet(fd);
    }
    tg_expect(fd, "get k\r\n", "END\r\n");
}

Test(protocol, data_block_that_does_not_match_its_length_is_a_bad_data_chunk)
{
    set_ok(fd, "k", 0, 0, "old");
    cr_assert_eq(th_sends(fd, "set k 0 0 2\r\nabc\r\n"), 0);
    char *line = tg_recv_line(fd);
    cr_assert(line && strcmp(line, "CLIENT_ERROR bad data chunk") == 0,
              "got \"%s\"", line ? line : "(nothing)");
    free(line);
    resync(fd);
    tg_expect(fd, "get k\r\n", "VALUE k 0 3\r\nold\r\nEND\r\n");
}

Test(protocol, key_of_250_bytes_is_accepted)
{
    char key[251];
    memset(key, 'k', 250);
    key[250] = '\0';
    set_ok(fd, key, 1, 0, "x");
    tg_expect(fd, f("get %s\r\n", key), f("VALUE %s 1 1\r\nx\r\nEND\r\n", key));
    tg_expect(fd, f("delete %s\r\n", key), "DELETED\r\n");
}

Test(protocol, key_of_251_bytes_is_a_client_error)
{
    char key[252];
    memset(key, 'k', 251);
    key[251] = '\0';
    tg_expect(fd, f("get %s\r\n", key),
              "CLIENT_ERROR bad command line format\r\n");
    /* memcached does not swallow the data block of such a set: its data line
     * is then read as a command (ERROR). Either way, nothing is stored. */
    cr_assert_eq(th_sends(fd, f("set %s 0 0 1\r\nx\r\n", key)), 0);
    char *line = tg_recv_line(fd);
    cr_assert(line && strncmp(line, "CLIENT_ERROR ", 13) == 0, "got \"%s\"",
              line ? line : "(nothing)");
    free(line);
    resync(fd);
    key[250] = '\0';
    tg_expect(fd, f("get %s\r\n", key), "END\r\n");
}

/* Issue 4: keys have no control characters; memcached accepts them. */
Test(protocol, key_with_a_control_character_is_a_client_error)
{
    if (tg_is_memcached())
        cr_skip_test("memcached accepts control characters in keys");
    cr_assert_eq(th_sends(fd, "set a\x01z 0 0 1\r\nx\r\n"), 0);
    char *line = tg_recv_line(fd);
    cr_assert(line && strncmp(line, "CLIENT_ERROR ", 13) == 0, "got \"%s\"",
              line ? line : "(nothing)");
    free(line);
    resync(fd);
    tg_expect(fd, "get a\x01z\r\n", "CLIENT_ERROR bad command line format\r\n");
}

/* ---- noreply ---- */

Test(protocol, noreply_silences_every_command_that_has_it)
{
    const char *steps[] = {
        "set k 1 0 1 noreply\r\na\r\n",
        "add k 0 0 1 noreply\r\nb\r\n", /* NOT_STORED, silenced */
        "add k2 0 0 1 noreply\r\nb\r\n",
        "replace k 2 0 1 noreply\r\nc\r\n",
        "replace nokey 0 0 1 noreply\r\nc\r\n",
        "append k 0 0 1 noreply\r\nd\r\n",
        "prepend k 0 0 1 noreply\r\ne\r\n",
        "append nokey 0 0 1 noreply\r\nd\r\n",
        "cas k 0 0 1 1 noreply\r\nz\r\n", /* EXISTS, silenced */
        "cas nokey 0 0 1 1 noreply\r\nz\r\n",
        "set n 0 0 1 noreply\r\n5\r\n",
        "incr n 3 noreply\r\n",
        "decr n 1 noreply\r\n",
        "incr nokey 1 noreply\r\n",
        "decr nokey 1 noreply\r\n",
        "touch k 100 noreply\r\n",
        "touch nokey 100 noreply\r\n",
        "delete k2 noreply\r\n",
        "delete nokey noreply\r\n",
        "verbosity 0 noreply\r\n",
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(*steps); i++) {
        cr_assert_eq(th_sends(fd, steps[i]), 0);
        char *m = tg_check_quiet(fd);
        char *esc = tg_escape(steps[i], strlen(steps[i]), 100);
        cr_assert_null(m, "after \"%s\": %s", esc, m);
        free(esc);
    }
    tg_expect(fd, "get k k2 n\r\n",
              "VALUE k 2 3\r\necd\r\nVALUE n 0 1\r\n7\r\nEND\r\n");
    unsigned long long cas = gets_cas(fd, "k");
    cr_assert_eq(th_sends(fd, f("cas k 3 0 1 %llu noreply\r\nf\r\n", cas)), 0);
    tg_expect_quiet(fd);
    tg_expect(fd, "get k\r\n", "VALUE k 3 1\r\nf\r\nEND\r\n");
    cr_assert_eq(th_sends(fd, "flush_all noreply\r\n"), 0);
    tg_expect_quiet(fd);
    tg_expect(fd, "get k n\r\n", "END\r\n");
    cr_assert_eq(th_sends(fd, "flush_all 0 noreply\r\n"), 0);
    tg_expect_quiet(fd);
}

/* ---- framing ---- */

Test(protocol, many_pipelined_commands_in_one_send_are_answered_in_order)
{
    size_t cap = 1 << 20;
    char *req = malloc(cap), *want = malloc(cap);
    size_t rl = 0, wl = 0;
    rl += (size_t)sprintf(req + rl, "set counter 0 0 1\r\n0\r\n");
    wl += (size_t)sprintf(want + wl, "STORED\r\n");
    for (int i = 0; i < 500; i++) {
        char val[64];
        int vl = snprintf(val, sizeof(val), "value %d %.*s", i, i % 40,
                          "........................................");
        rl += (size_t)sprintf(req + rl,
                              "set p%d %d 0 %d\r\n%s\r\nget p%d miss%d\r\n"
                              "incr counter 1\r\n",
                              i, i, vl, val, i, i);
        wl += (size_t)sprintf(
            want + wl, "STORED\r\nVALUE p%d %d %d\r\n%s\r\nEND\r\n%d\r\n", i, i,
            vl, val, i + 1);
        if (i % 50 == 0) {
            rl += (size_t)sprintf(req + rl, "delete p%d\r\nget p%d\r\n", i, i);
            wl += (size_t)sprintf(want + wl, "DELETED\r\nEND\r\n");
        }
    }
    tg_expect_n(fd, req, rl, want, wl);
    free(req);
    free(want);
}

Test(protocol, commands_sent_one_byte_at_a_time_are_answered_like_whole_ones)
{
    static const char script[] = "set k 3 0 5\r\nhello\r\n"
                                 "append k 0 0 6\r\n world\r\n"
                                 "get k nokey\r\n"
                                 "set n 0 0 2\r\n41\r\n"
                                 "incr n 1\r\n"
                                 "set q 0 0 1 noreply\r\nz\r\n"
                                 "gat 100 q\r\n"
                                 "delete k\r\n"
                                 "get k\r\n"
                                 "touch n 100\r\n"
                                 "add n 0 0 1\r\nx\r\n"
                                 "set empty 0 0 0\r\n\r\n"
                                 "get empty n\r\n";
    static const char want[] =
        "STORED\r\nSTORED\r\n"
        "VALUE k 3 11\r\nhello world\r\nEND\r\n"
        "STORED\r\n42\r\n"
        "VALUE q 0 1\r\nz\r\nEND\r\n"
        "DELETED\r\nEND\r\nTOUCHED\r\nNOT_STORED\r\nSTORED\r\n"
        "VALUE empty 0 0\r\n\r\nVALUE n 0 2\r\n42\r\nEND\r\n";
    for (size_t i = 0; i < sizeof(script) - 1; i++) {
        cr_assert_eq(th_send(fd, script + i, 1), 0);
        usleep(200);
    }
    tg_expect_n(fd, NULL, 0, want, sizeof(want) - 1);
    tg_expect_quiet(fd);
}

Test(protocol, lines_may_end_in_a_bare_newline)
{
    tg_expect(fd, "set k 0 0 1\nx\r\n", "STORED\r\n");
    tg_expect(fd, "get k\n", "VALUE k 0 1\r\nx\r\nEND\r\n");
}

/* ---- values ---- */

Test(protocol, values_are_binary_safe)
{
    static const char tail[] = "\r\nEND\r\nVALUE x 0 1\r\n\r\n";
    char val[256 + sizeof(tail)];
    for (int i = 0; i < 256; i++)
        val[i] = (char)i;
    memcpy(val + 256, tail, sizeof(tail) - 1);
    size_t vl = 256 + sizeof(tail) - 1;
    char req[1024], want[1024];
    int hl = sprintf(req, "set bin 0 0 %zu\r\n", vl);
    memcpy(req + hl, val, vl);
    memcpy(req + hl + vl, "\r\n", 2);
    tg_expect_n(fd, req, (size_t)hl + vl + 2, "STORED\r\n", 8);
    int wh = sprintf(want, "VALUE bin 0 %zu\r\n", vl);
    memcpy(want + wh, val, vl);
    memcpy(want + wh + vl, "\r\nEND\r\n", 7);
    tg_expect_n(fd, "get bin\r\n", 9, want, (size_t)wh + vl + 7);
}

static char *
random_value(size_t n, unsigned seed)
{
    char *v = malloc(n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (char)(seed >> 16);
    }
    return v;
}

/* Store a value of len bytes and read it back: 0 if identical. */
static void
set_and_get_big(const char *key, size_t len)
{
    char *v = random_value(len, (unsigned)len);
    char head[128];
    int hl = snprintf(head, sizeof(head), "set %s 9 0 %zu\r\n", key, len);
    char *req = malloc((size_t)hl + len + 2);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, v, len);
    memcpy(req + hl + len, "\r\n", 2);
    tg_expect_n(fd, req, (size_t)hl + len + 2, "STORED\r\n", 8);
    free(req);
    int wl = snprintf(head, sizeof(head), "VALUE %s 9 %zu\r\n", key, len);
    char *want = malloc((size_t)wl + len + 7);
    memcpy(want, head, (size_t)wl);
    memcpy(want + wl, v, len);
    memcpy(want + wl + len, "\r\nEND\r\n", 7);
    const char *get = f("get %s\r\n", key);
    tg_expect_n(fd, get, strlen(get), want, (size_t)wl + len + 7);
    free(want);
    free(v);
}

Test(protocol, value_near_the_size_limit_is_stored_and_returned_intact)
{
    set_and_get_big("big", 1024 * 1024 - 1024);
    set_and_get_big("medium", 100 * 1000);
}

/* Issue 4: "Values up to --max-item-size" (1m by default). memcached counts
 * its item header in its limit, so it refuses a value of exactly 1 MiB. */
Test(protocol, value_of_exactly_the_max_item_size_is_stored)
{
    if (tg_is_memcached())
        cr_skip_test("memcached's limit includes its item header");
    set_and_get_big("max", 1024 * 1024);
}

Test(protocol, value_over_the_size_limit_is_refused_and_removes_the_old_one)
{
    set_ok(fd, "k", 0, 0, "old");
    size_t len = 1024 * 1024 + 1;
    char head[64];
    int hl = snprintf(head, sizeof(head), "set k 0 0 %zu\r\n", len);
    char *req = malloc((size_t)hl + len + 2);
    memcpy(req, head, (size_t)hl);
    memset(req + hl, 'v', len);
    memcpy(req + hl + len, "\r\n", 2);
    tg_expect_n(fd, req, (size_t)hl + len + 2,
                "SERVER_ERROR object too large for cache\r\n", 41);
    free(req);
    /* The data was swallowed: the next command is read as one. */
    tg_expect(fd, "get k\r\n", "END\r\n");
    tg_expect_quiet(fd);
    set_ok(fd, "k", 0, 0, "again");
    tg_expect(fd, "get k\r\n", "VALUE k 0 5\r\nagain\r\nEND\r\n");
}

/* ==== text-protocol gaps: gat with a past exptime, 32-bit lengths, HTTP,
 * ==== admin commands, get_expired/get_flushed. Every expectation is
 * ==== memcached 1.6.18's reply, byte for byte. ==== */

/* Request, then exactly the reply memcached sends ("" for none). */
struct exchange {
    const char *req, *reply;
};

static void
expect_exchanges(int c, const struct exchange *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tg_expect(c, x[i].req, x[i].reply);
    tg_expect_quiet(c);
}
#define EXPECT_EXCHANGES(c, x)                                                 \
    expect_exchanges((c), (x), sizeof(x) / sizeof(*(x)))

/*
 * For memcached: replace the server with a fresh memcached started as
 * tg_start starts it plus opts (NULL-terminated), e.g. with the features
 * turned off that mcdbd does not have, so that mcdbd's refusal is checked
 * against memcached's own words for it. Nothing for mcdbd.
 */
static void
memcached_with(const char *const *opts)
{
    if (!tg_is_memcached())
        return;
    close(fd);
    th_server_stop(&srv, SIGKILL);
    unlink(srv.log);
    const char *argv[32] = {"memcached", "-p", "{port}", "-l", "127.0.0.1",
                            "-U",        "0",  "-t",     "1",  "-B",
                            "ascii",     "-c", "4096"};
    size_t n = 13;
    if (geteuid() == 0) {
        argv[n++] = "-u";
        argv[n++] = "root";
    }
    for (size_t i = 0; opts[i] && n < 31; i++)
        argv[n++] = opts[i];
    argv[n] = NULL;
    srv.port = 0;
    cr_assert_eq(th_server_start(&srv, argv), 0, "memcached did not start");
    fd = tg_connect(srv.port);
    cr_assert(fd >= 0, "cannot connect to memcached");
}

Test(protocol,
     gat_with_a_negative_exptime_returns_the_value_then_the_key_is_gone)
{
    set_ok(fd, "k", 3, 0, "hi");
    tg_expect(fd, "gat -1 k\r\n", "VALUE k 3 2\r\nhi\r\nEND\r\n");
    tg_expect(fd, "get k\r\n", "END\r\n");
    set_ok(fd, "k", 3, 0, "hi");
    unsigned long long cas = gets_cas(fd, "k");
    tg_expect(fd, "gats -1 k\r\n", f("VALUE k 3 2 %llu\r\nhi\r\nEND\r\n", cas));
    tg_expect(fd, "gets k\r\n", "END\r\n");
    /* 0 is "never expires", not "now". */
    set_ok(fd, "k", 3, 100, "hi");
    tg_expect(fd, "gat 0 k\r\n", "VALUE k 3 2\r\nhi\r\nEND\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 3 2\r\nhi\r\nEND\r\n");
}

/* memcached reads the length as a 32-bit int and refuses anything over
 * INT_MAX - 2 (it adds 2 for the "\r\n") at once, from the command line
 * alone: no data block is read, so data sent after it is read as a
 * command. */
Test(protocol, set_with_a_length_over_int_max_minus_2_is_refused_at_once)
{
    static const char *lens[] = {"4294967295", "2147483648", "2147483647",
                                 "2147483646", "-1",         "-2147483648"};
    for (size_t i = 0; i < sizeof(lens) / sizeof(*lens); i++) {
        tg_expect(fd, f("set k 0 0 %s\r\n", lens[i]),
                  "CLIENT_ERROR bad command line format\r\n");
        tg_expect_quiet(fd); /* answered at once, nothing swallowed */
        tg_expect(fd, f("set k 0 0 %s\r\nhi\r\n", lens[i]),
                  "CLIENT_ERROR bad command line format\r\nERROR\r\n");
        tg_expect_quiet(fd);
    }
    tg_expect(fd, "get k\r\n", "END\r\n");
}

/* memcached closes, without a word, a connection whose line is not a
 * command it knows and whose last token starts with "HTTP/": an HTTP
 * client that found the wrong port. */
Test(protocol, http_request_line_closes_the_connection_without_a_reply)
{
    static const char *reqs[] = {
        "GET / HTTP/1.0\r\n",
        "PUT /x HTTP/1.1\r\n",
        "DELETE HTTP/1.1\r\n",
        "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1\r\n",
        "bogus HTTP/\r\n"};
    for (size_t i = 0; i < sizeof(reqs) / sizeof(*reqs); i++) {
        int c = tg_connect(srv.port);
        cr_assert(c >= 0);
        cr_assert_eq(th_sends(c, reqs[i]), 0);
        char *got = NULL;
        size_t gl = 0;
        char *esc = tg_escape(reqs[i], strlen(reqs[i]), 100);
        cr_assert(tg_wait_closed(c, 2000, &got, &gl), "\"%s\": still open",
                  esc);
        char *gesc = tg_escape(got ? got : "", gl, 200);
        cr_assert_null(got, "\"%s\": replied \"%s\" before closing", esc, gesc);
        free(gesc);
        free(esc);
        close(c);
    }
}

Test(protocol, http_like_lines_that_are_commands_or_do_not_end_in_http_are_not)
{
    static const struct exchange x[] = {
        /* a get of the keys "/" and "HTTP/1.0" */
        {"get / HTTP/1.0\r\n", "END\r\n"},
        {"GET / HTTP/1.1 noreply\r\n", "ERROR\r\n"},
        {"GET /HTTP/1.0\r\n", "ERROR\r\n"},
        {"xHTTP/1.0\r\n", "ERROR\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
}

/* ---- admin commands: none of them is a bare ERROR where memcached says
 * ---- something else; mcdbd answers like memcached ---- */

Test(protocol, slabs_automove_answers_like_memcached)
{
    static const struct exchange x[] = {
        {"slabs automove invalid\r\n",
         "CLIENT_ERROR bad command line format\r\n"},
        {"slabs automove -1\r\n", "CLIENT_ERROR bad command line format\r\n"},
        {"slabs automove 1\r\n", "OK\r\n"},
        {"slabs automove 2\r\n", "OK\r\n"},
        {"slabs automove 0\r\n", "OK\r\n"},
        {"slabs automove 3\r\n", "ERROR\r\n"},
        {"slabs automove ratio 0.5\r\n", "OK\r\n"},
        {"slabs automove ratio abc\r\n", "ERROR\r\n"},
        {"slabs automove ratio\r\n", "ERROR\r\n"},
        {"slabs automove 1 noreply\r\n", ""},
        {"slabs automove\r\n", "ERROR\r\n"},
        {"slabs bogus 1 2\r\n", "ERROR\r\n"},
        {"slabs\r\n", "ERROR\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
}

/* mcdbd has no slabs to move pages between: it answers as memcached does
 * with reassignment off (-o no_slab_reassign), which is what this test runs
 * memcached with. (A default memcached answers per its slab state: on a
 * fresh one "slabs reassign 1 2" is "NOSPARE source class has no spare
 * pages", "1 1" "SAME src and dst class are identical", "1 99" "BADCLASS
 * invalid src or dst class id", "a b" "CLIENT_ERROR bad command line
 * format".) */
Test(protocol, slabs_reassign_says_reassignment_is_disabled)
{
    memcached_with((const char *[]){"-o", "no_slab_reassign", NULL});
    static const struct exchange x[] = {
        {"slabs reassign 1 2\r\n",
         "CLIENT_ERROR slab reassignment disabled\r\n"},
        {"slabs reassign 1 1\r\n",
         "CLIENT_ERROR slab reassignment disabled\r\n"},
        {"slabs reassign 1 99\r\n",
         "CLIENT_ERROR slab reassignment disabled\r\n"},
        {"slabs reassign a b\r\n",
         "CLIENT_ERROR slab reassignment disabled\r\n"},
        {"slabs reassign 1\r\n", "ERROR\r\n"},
        {"slabs reassign 1 2 3\r\n", "ERROR\r\n"},
        {"slabs automove 1\r\n", "OK\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
}

Test(protocol, cache_memlimit_answers_like_memcached)
{
    static const struct exchange x[] = {
        {"cache_memlimit 100\r\n", "OK\r\n"},
        {"cache_memlimit 2\r\n",
         "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"},
        {"cache_memlimit 7\r\n",
         "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"},
        {"cache_memlimit 1000000001\r\n",
         "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"},
        {"cache_memlimit abc\r\n", "ERROR\r\n"},
        {"cache_memlimit -1\r\n", "ERROR\r\n"},
        {"cache_memlimit 64 noreply\r\n", ""},
        {"cache_memlimit\r\n", "ERROR\r\n"},
        {"cache_memlimit 1 2 3\r\n", "ERROR\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
}

/* memcached without -A; the server keeps running. */
Test(protocol, shutdown_is_not_enabled)
{
    static const struct exchange x[] = {
        {"shutdown\r\n", "ERROR: shutdown not enabled\r\n"},
        {"shutdown graceful\r\n", "ERROR: shutdown not enabled\r\n"},
        {"shutdown bogus\r\n", "ERROR: shutdown not enabled\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
    cr_assert(tg_answers_version(srv.port));
}

Test(protocol, lru_commands_answer_like_memcached)
{
    static const struct exchange x[] = {
        {"lru mode flat\r\n", "OK\r\n"},
        {"lru mode segmented\r\n", "OK\r\n"},
        {"lru mode bogus\r\n", "ERROR\r\n"},
        {"lru mode\r\n", "ERROR\r\n"},
        {"lru temp_ttl 10\r\n", "OK\r\n"},
        {"lru temp_ttl -1\r\n", "OK\r\n"},
        {"lru temp_ttl abc\r\n", "ERROR\r\n"},
        {"lru tune 10 20 0.1 2.0\r\n", "OK\r\n"},
        {"lru tune 50 40 0.1 2.0\r\n",
         "ERROR hot and warm pcts must not exceed 80\r\n"},
        {"lru tune 10 20 0 2.0\r\n",
         "ERROR hot/warm age factors must be greater than 0\r\n"},
        {"lru tune a b c d\r\n", "ERROR\r\n"},
        {"lru temp_ttl 10 noreply\r\n", ""},
        {"lru bogus\r\n", "ERROR\r\n"},
        {"lru\r\n", "ERROR\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
}

Test(protocol, verbosity_with_a_bad_level_is_a_client_error)
{
    static const struct exchange x[] = {
        {"verbosity abc\r\n", "CLIENT_ERROR bad command line format\r\n"},
        {"verbosity -1\r\n", "CLIENT_ERROR bad command line format\r\n"},
        {"verbosity 1 2\r\n", "OK\r\n"},
        {"verbosity 5\r\n", "OK\r\n"},
        {"verbosity\r\n", "ERROR\r\n"},
        {"verbosity 0\r\n", "OK\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
}

/* The crawler's settings are accepted. "enable" answers OK, or, when the
 * crawler cannot start (memcached's already runs; mcdbd has none),
 * memcached's "ERROR failed to start lru crawler thread". (memcached's
 * "disable" does not wait for its thread: a crawl sent right after it may
 * still find the crawler on, so crawl is tested below, against a memcached
 * started without one.) */
Test(protocol, lru_crawler_settings_answer_like_memcached)
{
    static const struct exchange x[] = {
        {"lru_crawler sleep 100\r\n", "OK\r\n"},
        {"lru_crawler sleep 1000001\r\n",
         "CLIENT_ERROR sleep must be one second or less\r\n"},
        {"lru_crawler sleep abc\r\n",
         "CLIENT_ERROR bad command line format\r\n"},
        {"lru_crawler tocrawl 100\r\n", "OK\r\n"},
        {"lru_crawler tocrawl abc\r\n",
         "CLIENT_ERROR bad command line format\r\n"},
        {"lru_crawler tocrawl -1\r\n",
         "CLIENT_ERROR bad command line format\r\n"},
        {"lru_crawler disable\r\n", "OK\r\n"},
        {"lru_crawler crawl\r\n", "ERROR\r\n"},
        {"lru_crawler sleep 1 2\r\n", "ERROR\r\n"},
        {"lru_crawler bogus\r\n", "ERROR\r\n"},
        {"lru_crawler\r\n", "ERROR\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
    cr_assert_eq(th_sends(fd, "lru_crawler enable\r\n"), 0);
    char *line = tg_recv_line(fd);
    cr_assert(
        line && (strcmp(line, "OK") == 0 ||
                 strcmp(line, "ERROR failed to start lru crawler thread") == 0),
        "lru_crawler enable: got \"%s\"", line ? line : "(nothing)");
    free(line);
    tg_expect_quiet(fd);
}

/* mcdbd has no LRU crawler (a log-structured store has no LRU to crawl):
 * it answers crawl and metadump as memcached does with its crawler off
 * (-o no_lru_crawler), which is what this test runs memcached with; a
 * default memcached starts a crawl ("OK") or a dump ("... END"). */
/* metadump lists keys (tests/net/test_metadump.c); crawl has nothing to
 * reclaim. */
Test(protocol, lru_crawler_crawl_says_the_crawler_is_disabled)
{
    memcached_with((const char *[]){"-o", "no_lru_crawler", NULL});
    static const struct exchange x[] = {
        {"lru_crawler crawl all\r\n", "CLIENT_ERROR lru crawler disabled\r\n"},
        {"lru_crawler crawl 1\r\n", "CLIENT_ERROR lru crawler disabled\r\n"},
        {"lru_crawler sleep 10\r\n", "OK\r\n"},
        {"lru_crawler disable\r\n", "OK\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
}

/* mcdbd has no log stream to watch: it answers as memcached does with
 * watch disabled (-W), which is what this test runs memcached with. */
Test(protocol, watch_is_refused_as_not_allowed)
{
    memcached_with((const char *[]){"-W", NULL});
    static const struct exchange x[] = {
        {"watch\r\n", "CLIENT_ERROR watch commands not allowed\r\n"},
        {"watch fetchers mutations\r\n",
         "CLIENT_ERROR watch commands not allowed\r\n"},
        {"watch bogus\r\n", "CLIENT_ERROR watch commands not allowed\r\n"},
    };
    EXPECT_EXCHANGES(fd, x);
}

/* A default memcached answers "watch" with OK and then streams its log on
 * that connection; mcdbd refuses it. Neither is a bare ERROR. */
Test(protocol, watch_is_not_an_unknown_command)
{
    cr_assert_eq(th_sends(fd, "watch\r\n"), 0);
    char *line = tg_recv_line(fd);
    cr_assert(
        line && (strcmp(line, "OK") == 0 ||
                 strcmp(line, "CLIENT_ERROR watch commands not allowed") == 0),
        "watch: got \"%s\"", line ? line : "(nothing)");
    free(line);
    cr_assert(tg_answers_version(srv.port));
}

/* ---- stats get_expired, get_flushed ---- */

/* memcached counts an expired or flushed item when a read finds it (and
 * then unlinks it: a second read is a plain miss), unless its LRU
 * maintainer thread reaped the item first. These tests run memcached
 * without that thread (-o no_lru_maintainer,no_lru_crawler) so that its
 * counts do not depend on timing. */
#define STAT_IS(name, want, when)                                              \
    do {                                                                       \
        long long v_ = tg_stat(fd, NULL, name);                                \
        cr_assert_eq(v_, (want), "%s is %lld %s, expected %lld", name, v_,     \
                     when, (long long)(want));                                 \
    } while (0)

/* Sleeps 2.2 s. Not tested: memcached also counts reads of items written
 * or touched with an exptime already past (set -1, touch -1, gat -1),
 * which it keeps until read; mcdbd drops those at the write. */
Test(protocol, stats_get_expired_counts_each_expired_item_read_once)
{
    memcached_with(
        (const char *[]){"-o", "no_lru_maintainer,no_lru_crawler", NULL});
    long long exp0 = tg_stat(fd, NULL, "get_expired");
    long long fl0 = tg_stat(fd, NULL, "get_flushed");
    long long miss0 = tg_stat(fd, NULL, "get_misses");
    long long hits0 = tg_stat(fd, NULL, "get_hits");
    cr_assert(exp0 >= 0 && fl0 >= 0, "stats has no get_expired/get_flushed");
    set_ok(fd, "short1", 0, 1, "x");
    set_ok(fd, "short2", 0, 1, "x");
    set_ok(fd, "short3", 0, 1, "x");
    set_ok(fd, "live", 0, 100, "x");
    usleep(2200 * 1000);
    tg_expect(fd, "get short1 nokey short2 live\r\n",
              "VALUE live 0 1\r\nx\r\nEND\r\n");
    tg_expect(fd, "gets short3\r\n", "END\r\n");
    STAT_IS("get_expired", exp0 + 3, "after reading 3 expired keys");
    STAT_IS("get_flushed", fl0, "after reading 3 expired keys");
    STAT_IS("get_misses", miss0 + 4, "after 3 expired keys and a missing one");
    STAT_IS("get_hits", hits0 + 1, "after a hit");
    /* Gone now: a plain miss. */
    tg_expect(fd, "get short1 short3\r\n", "END\r\n");
    STAT_IS("get_expired", exp0 + 3, "after reading 2 expired keys again");
    STAT_IS("get_misses", miss0 + 6, "after 2 more misses");
}

Test(protocol, stats_get_flushed_counts_each_flushed_item_read_once)
{
    memcached_with(
        (const char *[]){"-o", "no_lru_maintainer,no_lru_crawler", NULL});
    long long exp0 = tg_stat(fd, NULL, "get_expired");
    long long fl0 = tg_stat(fd, NULL, "get_flushed");
    long long miss0 = tg_stat(fd, NULL, "get_misses");
    long long hits0 = tg_stat(fd, NULL, "get_hits");
    cr_assert(exp0 >= 0 && fl0 >= 0, "stats has no get_expired/get_flushed");
    set_ok(fd, "a", 0, 0, "x");
    set_ok(fd, "b", 0, 100, "x");
    tg_expect(fd, "flush_all\r\n", "OK\r\n");
    tg_expect(fd, "get a nokey b\r\n", "END\r\n");
    /* mcdbd removes what flush_all hid from its index before it answers OK
     * (the memory is freed at once, curr_items is right at once): like a
     * memcached whose LRU maintainer reaped them, a read then meets no
     * flushed item, and get_flushed counts only reads that race the flush. */
    long long flushed = fl0 + (tg_is_memcached() ? 2 : 0);
    STAT_IS("get_flushed", flushed, "after reading 2 flushed keys");
    STAT_IS("get_misses", miss0 + 3, "after 2 flushed keys and a missing one");
    /* Gone now: a plain miss. */
    tg_expect(fd, "gets a\r\n", "END\r\n");
    STAT_IS("get_flushed", flushed, "after reading a flushed key again");
    STAT_IS("get_expired", exp0, "after the flush");
    /* A value written after the flush is a hit. */
    set_ok(fd, "a", 0, 0, "y");
    tg_expect(fd, "get a\r\n", "VALUE a 0 1\r\ny\r\nEND\r\n");
    STAT_IS("get_flushed", flushed, "after a hit written after the flush");
    STAT_IS("get_hits", hits0 + 1, "after a hit written after the flush");
}
#undef STAT_IS
