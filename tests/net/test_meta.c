/*
 * memcached's meta protocol (mg, ms, md, ma, mn, me) over raw sockets: every
 * reply exactly as memcached 1.6.18 sends it (proto_text.c at tag 1.6.18:
 * process_mget_command, process_mset_command, process_mdelete_command,
 * process_marithmetic_command, process_meta_command, _meta_flag_preparse,
 * _finalize_mset; and doc/protocol.txt). Each test starts its own server.
 *
 *   build/tests/test_net_meta                               against mcdbd
 *   MCDB_TEST_TARGET=memcached build/tests/test_net_meta    the reference
 *
 * The tests named newer_* cover what memcached added after 1.6.18 (E, mg C,
 * md x, ms N in append mode, ms s, me exp= as remaining seconds), and the
 * tests named store_* what only a persistent store has to get right
 * (flush_all against client-chosen cas values, an invalidated item across a
 * restart): they run against mcdbd only and skip against memcached. The
 * tests named mcdb_* cover mcdb's own flag, ms V (against memcached they
 * check that it refuses the flag).
 *
 * No test sleeps (the byte-split test pauses 0.3 ms between its two writes);
 * where a TTL is read back, T100 is set and 99..100 accepted. About 5 s.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <ctype.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

TG_SUITE_NEEDS(0)

TG_CONNECTED_SUITE(meta, 60);

#define NEWER_THAN_1_6_18()                                                    \
    do {                                                                       \
        if (tg_is_memcached())                                                 \
            cr_skip_test("memcached 1.6.18 predates this (newer memcached "    \
                         "or mcdbd only)");                                    \
    } while (0)

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

/* " v v ... v": n copies of one flag, for the flag-count limits. */
static const char *
flags(int n)
{
    static char buf[256];
    buf[0] = '\0';
    for (int i = 0; i < n; i++)
        strcat(buf, " v");
    return buf;
}

/* "ms key <len>\r\nval\r\n" answered "HD". */
static void
ms_ok(int c, const char *key, const char *val)
{
    tg_expect(c, f("ms %s %zu\r\n%s\r\n", key, strlen(val), val), "HD\r\n");
}

/* Send req and return the first line of the reply, without its "\r\n". */
static char *
ask_line(int c, const char *req)
{
    cr_assert_eq(th_sends(c, req), 0, "cannot send a request");
    char *line = tg_recv_line(c);
    char *esc = tg_escape(req, strlen(req), 100);
    cr_assert(line, "no reply line to \"%s\"", esc);
    free(esc);
    return line;
}

/* 1 if s matches pat, where '#' in pat stands for one or more digits, '*'
 * for one or more characters other than a space, and every other character
 * for itself. */
static int
like(const char *s, const char *pat)
{
    for (; *pat; pat++) {
        if (*pat == '#') {
            if (!isdigit((unsigned char)*s))
                return 0;
            while (isdigit((unsigned char)*s))
                s++;
        } else if (*pat == '*') {
            if (!*s || *s == ' ')
                return 0;
            while (*s && *s != ' ')
                s++;
        } else if (*s++ != *pat) {
            return 0;
        }
    }
    return *s == '\0';
}

/* Send req: the first line of its reply must match pat (see like()).
 * Returns that line (malloc'd); what follows it is still to be read. */
static char *
expect_like(int c, const char *req, const char *pat)
{
    char *line = ask_line(c, req);
    char *esc = tg_escape(req, strlen(req), 100);
    cr_assert(like(line, pat),
              "request \"%s\": expected a line like \"%s\\r\\n\", got "
              "\"%s\\r\\n\"",
              esc, pat, line);
    free(esc);
    return line;
}

/* The number that return flag `flag` carries in a reply line ('t' in
 * "HD t99 c5" -> 99). The status and the VA length are not flags. */
static long long
flag_num(const char *line, char flag)
{
    for (const char *p = strchr(line, ' '); p; p = strchr(p + 1, ' ')) {
        if (p[1] == flag && (isdigit((unsigned char)p[2]) || p[2] == '-'))
            return strtoll(p + 2, NULL, 10);
    }
    cr_assert_fail("no flag %c in \"%s\"", flag, line);
    return 0;
}

/* A TTL read back a moment after T100 was set: 100, or 99 if a second
 * boundary passed in between. */
static void
assert_ttl_near_100(const char *line, char flag)
{
    long long t = flag_num(line, flag);
    cr_assert(t >= 99 && t <= 100, "expected %c99 or %c100 in \"%s\"", flag,
              flag, line);
}

/* The cas unique of a stored key, by "mg key c u" (u: without counting as
 * a fetch, for h and me). Not for a stale item: it would take its token. */
static unsigned long long
cas_of(int c, const char *key)
{
    char *line = ask_line(c, f("mg %s c u\r\n", key));
    cr_assert(strncmp(line, "HD c", 4) == 0 && isdigit((unsigned char)line[4]),
              "mg %s c: got \"%s\"", key, line);
    unsigned long long cas = strtoull(line + 4, NULL, 10);
    free(line);
    return cas;
}

/* After a reply whose aftermath may differ between servers (memcached reads
 * the rest of a bad data block as a command): send "version" and skip lines
 * up to its reply. */
static void
resync(int c)
{
    cr_assert_eq(th_sends(c, "version\r\n"), 0);
    for (int n = 0; n < 16; n++) {
        char *line = tg_recv_line(c);
        cr_assert(line, "connection lost while resynchronising");
        int v = strncmp(line, "VERSION ", 8) == 0;
        free(line);
        if (v)
            return;
    }
    cr_assert_fail("no VERSION reply after 16 lines");
}

/* ---- mn, and meta mixed with the classic commands ---- */

Test(meta, mn_answers_MN_whatever_follows_it)
{
    tg_expect(fd, "mn\r\n", "MN\r\n");
    tg_expect(fd, "mn ignored tokens\r\n", "MN\r\n");
}

Test(meta, classic_writes_are_read_by_mg_and_meta_writes_by_get_and_gets)
{
    tg_expect(fd, "set k 5 0 2\r\nab\r\n", "STORED\r\n");
    tg_expect(fd, "mg k v f\r\n", "VA 2 f5\r\nab\r\n");
    tg_expect(fd, "ms k 3 F9\r\nxyz\r\n", "HD\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 9 3\r\nxyz\r\nEND\r\n");
    unsigned long long cas = cas_of(fd, "k");
    tg_expect(fd, "gets k\r\n", f("VALUE k 9 3 %llu\r\nxyz\r\nEND\r\n", cas));
    tg_expect(fd, "append k 0 0 1\r\n!\r\n", "STORED\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 4\r\nxyz!\r\n");
    tg_expect(fd, "ms n 2\r\n40\r\n", "HD\r\n");
    tg_expect(fd, "incr n 1\r\n", "41\r\n");
    tg_expect(fd, "ma n v\r\n", "VA 2\r\n42\r\n");
    tg_expect(fd, "delete k\r\n", "DELETED\r\n");
    tg_expect(fd, "mg k\r\n", "EN\r\n");
    tg_expect(fd, "md n\r\n", "HD\r\n");
    tg_expect(fd, "get n\r\n", "END\r\n");
}

/* ---- mg ---- */

Test(meta, mg_of_a_missing_key_is_EN)
{
    tg_expect(fd, "mg nokey\r\n", "EN\r\n");
    tg_expect(fd, "mg nokey v s t c f\r\n", "EN\r\n");
}

Test(meta, mg_of_a_stored_key_without_flags_is_HD)
{
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "mg k\r\n", "HD\r\n");
}

Test(meta, mg_v_returns_VA_with_the_length_then_the_data)
{
    ms_ok(fd, "k", "hello");
    tg_expect(fd, "mg k v\r\n", "VA 5\r\nhello\r\n");
    tg_expect(fd, "ms e 0\r\n\r\n", "HD\r\n");
    tg_expect(fd, "mg e v\r\n", "VA 0\r\n\r\n");
    tg_expect(fd, "ms b 4\r\na\r\nb\r\n", "HD\r\n");
    tg_expect(fd, "mg b v\r\n", "VA 4\r\na\r\nb\r\n");
}

Test(meta, mg_return_flags_come_back_in_request_order)
{
    tg_expect(fd, "ms k 2 F5\r\nhi\r\n", "HD\r\n");
    unsigned long long cas = cas_of(fd, "k");
    tg_expect(fd, "mg k s v c f\r\n", f("VA 2 s2 c%llu f5\r\nhi\r\n", cas));
    tg_expect(fd, "mg k f c s k Oabc\r\n",
              f("HD f5 c%llu s2 kk Oabc\r\n", cas));
    tg_expect(fd, "mg k Oabc k v\r\n", "VA 2 Oabc kk\r\nhi\r\n");
    /* O echoes its whole token, even an empty one. */
    tg_expect(fd, "mg k O\r\n", "HD O\r\n");
}

Test(meta, mg_f_returns_all_32_bits_of_the_client_flags)
{
    tg_expect(fd, "ms z 1\r\nx\r\n", "HD\r\n");
    tg_expect(fd, "mg z f\r\n", "HD f0\r\n");
    tg_expect(fd, "ms m 1 F4294967295\r\nx\r\n", "HD\r\n");
    tg_expect(fd, "mg m f\r\n", "HD f4294967295\r\n");
}

Test(meta, mg_t_is_minus_one_without_expiry_else_the_remaining_seconds)
{
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "mg k t\r\n", "HD t-1\r\n");
    tg_expect(fd, "ms k 2 T100\r\nhi\r\n", "HD\r\n");
    char *line = expect_like(fd, "mg k t v\r\n", "VA 2 t#");
    assert_ttl_near_100(line, 't');
    free(line);
    tg_expect(fd, "", "hi\r\n");
}

Test(meta, mg_h_is_0_until_the_item_is_fetched_then_1)
{
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "mg k h\r\n", "HD h0\r\n");
    tg_expect(fd, "mg k h\r\n", "HD h1\r\n");
    tg_expect(fd, "mg k v h\r\n", "VA 2 h1\r\nhi\r\n");
    /* A plain mg (no flags) counts as a fetch too. */
    ms_ok(fd, "k2", "hi");
    tg_expect(fd, "mg k2 v\r\n", "VA 2\r\nhi\r\n");
    tg_expect(fd, "mg k2 h\r\n", "HD h1\r\n");
}

Test(meta, mg_u_reads_without_marking_the_item_fetched)
{
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "mg k h u\r\n", "HD h0\r\n");
    tg_expect(fd, "mg k v u\r\n", "VA 2\r\nhi\r\n");
    tg_expect(fd, "mg k h u\r\n", "HD h0\r\n");
    tg_expect(fd, "mg k h\r\n", "HD h0\r\n");
    tg_expect(fd, "mg k h\r\n", "HD h1\r\n");
}

/* mcdb documents l as the seconds since the item was written (memcached:
 * since it was last accessed): only its form is checked. */
Test(meta, mg_l_returns_a_number_of_seconds)
{
    ms_ok(fd, "k", "hi");
    free(expect_like(fd, "mg k h l\r\n", "HD h0 l#"));
    free(expect_like(fd, "mg k l h v\r\n", "VA 2 l# h1"));
    tg_expect(fd, "", "hi\r\n");
}

Test(meta, mg_q_hides_EN_but_not_a_hit)
{
    ms_ok(fd, "k", "hi");
    tg_expect(fd,
              "mg nokey q\r\nmg nokey q v k Oa\r\nmg k q v\r\nmg k q\r\n"
              "mn\r\n",
              "VA 2\r\nhi\r\nHD\r\nMN\r\n");
}

Test(meta, mg_of_a_missing_key_renders_only_O_and_k_in_request_order)
{
    tg_expect(fd, "mg missing k Oxx\r\n", "EN kmissing Oxx\r\n");
    tg_expect(fd, "mg missing Oxx k\r\n", "EN Oxx kmissing\r\n");
    tg_expect(fd, "mg missing s v t c f h l Oq\r\n", "EN Oq\r\n");
}

Test(meta, mg_T_touches_the_item_and_t_shows_the_new_ttl)
{
    ms_ok(fd, "k", "hi");
    char *line = expect_like(fd, "mg k T100 t v\r\n", "VA 2 t#");
    assert_ttl_near_100(line, 't');
    free(line);
    tg_expect(fd, "", "hi\r\n");
    line = expect_like(fd, "mg k t\r\n", "HD t#");
    assert_ttl_near_100(line, 't');
    free(line);
    tg_expect(fd, "mg k T0 t\r\n", "HD t-1\r\n");
    tg_expect(fd, "mg nokey T100 t\r\n", "EN\r\n");
}

Test(meta, mg_N_creates_an_empty_item_and_gives_the_first_client_W)
{
    tg_expect(fd, "mg k N30 s f v\r\n", "VA 0 s0 f0 W\r\n\r\n");
    tg_expect(fd, "mg k N30 v\r\n", "VA 0 Z\r\n\r\n");
    char *line = expect_like(fd, "mg k t\r\n", "HD t# Z");
    long long t = flag_num(line, 't');
    cr_assert(t >= 29 && t <= 30, "N30 then t: \"%s\"", line);
    free(line);
    tg_expect(fd, "get k\r\n", "VALUE k 0 0\r\n\r\nEND\r\n");
    /* q hides misses only: a vivified item is a hit. */
    tg_expect(fd, "mg k2 N30 q k\r\n", "HD kk2 W\r\n");
    /* The winner fills it in: a new item, with no token out. */
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "mg k N30 v\r\n", "VA 2\r\nhi\r\n");
}

Test(meta, mg_R_gives_W_once_when_the_remaining_ttl_is_below_R)
{
    tg_expect(fd, "ms k 2 T10\r\nhi\r\n", "HD\r\n");
    tg_expect(fd, "mg k R30 v\r\n", "VA 2 W\r\nhi\r\n");
    tg_expect(fd, "mg k R30 v\r\n", "VA 2 Z\r\nhi\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2 Z\r\nhi\r\n");
    tg_expect(fd, "ms long 2 T100\r\nhi\r\n", "HD\r\n");
    tg_expect(fd, "mg long R30\r\n", "HD\r\n");
    ms_ok(fd, "forever", "hi");
    tg_expect(fd, "mg forever R30\r\n", "HD\r\n");
    /* A new write clears the token. */
    tg_expect(fd, "ms k 2 T10\r\nho\r\n", "HD\r\n");
    tg_expect(fd, "mg k R30\r\n", "HD W\r\n");
}

/* ---- base64 keys ("Zm9v" is "foo", "YmFy" is "bar") ---- */

Test(meta, b_decodes_a_base64_key_and_k_renders_it_encoded)
{
    tg_expect(fd, "ms Zm9v 2 b\r\nhi\r\n", "HD\r\n");
    tg_expect(fd, "get foo\r\n", "VALUE foo 0 2\r\nhi\r\nEND\r\n");
    tg_expect(fd, "mg Zm9v b k v\r\n", "VA 2 kZm9v b\r\nhi\r\n");
    tg_expect(fd, "mg Zm9v v\r\n", "EN\r\n");
    tg_expect(fd, "ms Zm9v 2 b k\r\nho\r\n", "HD kZm9v b\r\n");
    tg_expect(fd, "mg YmFy b k Oo\r\n", "EN kYmFy b Oo\r\n");
    tg_expect(fd, "md YmFy b k\r\n", "NF kYmFy b\r\n");
    free(expect_like(fd, "me Zm9v b\r\n",
                     "ME Zm9v exp=-1 la=# cas=# fetch=no cls=# size=#"));
    tg_expect(fd, "md Zm9v b q\r\nmn\r\n", "MN\r\n");
    tg_expect(fd, "get foo\r\n", "END\r\n");
}

Test(meta, b_with_a_key_that_is_not_base64_is_an_error)
{
    /* Three characters cannot be base64. */
    tg_expect(fd, "mg abc b\r\n", "CLIENT_ERROR error decoding key\r\n");
    tg_expect(fd, "ms abc 2 b\r\nhi\r\nmn\r\n",
              "CLIENT_ERROR error decoding key\r\nMN\r\n");
    tg_expect(fd, "md abc b\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "ma abc b\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "me abc b\r\n", "CLIENT_ERROR bad command line format\r\n");
}

/* ---- ms ---- */

Test(meta, ms_stores_the_value_with_F_flags_and_T_ttl)
{
    tg_expect(fd, "ms k 2\r\nhi\r\n", "HD\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 0 2\r\nhi\r\nEND\r\n");
    tg_expect(fd, "ms k 2 F5 T100\r\nho\r\n", "HD\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 5 2\r\nho\r\nEND\r\n");
    char *line = expect_like(fd, "mg k t\r\n", "HD t#");
    assert_ttl_near_100(line, 't');
    free(line);
    tg_expect(fd, "ms k 2 T0\r\nhi\r\n", "HD\r\n");
    tg_expect(fd, "mg k t f\r\n", "HD t-1 f0\r\n");
}

Test(meta, ms_renders_O_k_and_the_new_cas_in_request_order)
{
    char *line = ask_line(fd, "ms k 1 c k Oab F5 T100\r\nz\r\n");
    unsigned long long cas = 0;
    int n = 0;
    cr_assert(sscanf(line, "HD c%llu kk Oab%n", &cas, &n) == 1 && n > 0 &&
                  line[n] == '\0',
              "got \"%s\"", line);
    free(line);
    cr_assert_eq(cas_of(fd, "k"), cas, "c is not the stored item's cas");
    line = ask_line(fd, "ms k 1 Oab k c\r\nz\r\n");
    unsigned long long cas2 = 0;
    n = 0;
    cr_assert(sscanf(line, "HD Oab kk c%llu%n", &cas2, &n) == 1 && n > 0 &&
                  line[n] == '\0',
              "got \"%s\"", line);
    free(line);
    cr_assert_neq(cas2, cas, "a new write kept the old cas");
}

Test(meta, ms_M_modes_add_replace_append_prepend_and_set)
{
    tg_expect(fd, "ms m 2 ME\r\nhi\r\n", "HD\r\n");
    tg_expect(fd, "ms m 2 ME\r\nho\r\n", "NS\r\n");
    tg_expect(fd, "mg m v\r\n", "VA 2\r\nhi\r\n");
    tg_expect(fd, "ms m 2 MR F7\r\nxy\r\n", "HD\r\n");
    tg_expect(fd, "ms nokey 2 MR\r\nxy\r\n", "NS\r\n");
    tg_expect(fd, "ms m 2 MA\r\n!!\r\n", "HD\r\n");
    tg_expect(fd, "ms m 2 MP\r\n<<\r\n", "HD\r\n");
    /* Append and prepend keep the flags. */
    tg_expect(fd, "mg m v f\r\n", "VA 6 f7\r\n<<xy!!\r\n");
    tg_expect(fd, "ms nokey 2 MA\r\nhi\r\n", "NS\r\n");
    tg_expect(fd, "ms nokey 2 MP\r\nhi\r\n", "NS\r\n");
    tg_expect(fd, "mg nokey\r\n", "EN\r\n");
    tg_expect(fd, "ms m 1 MS\r\nz\r\n", "HD\r\n");
    tg_expect(fd, "mg m v f\r\n", "VA 1 f0\r\nz\r\n");
}

Test(meta, ms_C_stores_only_over_the_same_cas)
{
    ms_ok(fd, "k", "a");
    unsigned long long cas = cas_of(fd, "k");
    tg_expect(fd, f("ms k 1 C%llu\r\nb\r\n", cas), "HD\r\n");
    unsigned long long cas2 = cas_of(fd, "k");
    tg_expect(fd, f("ms k 1 C%llu\r\nc\r\n", cas), "EX\r\n");
    tg_expect(fd, "ms nokey 1 C5\r\nc\r\n", "NF\r\n");
    tg_expect(fd, f("ms k 1 MA C%llu\r\nc\r\n", cas), "EX\r\n");
    tg_expect(fd, f("ms k 1 ME C%llu\r\nc\r\n", cas2), "NS\r\n");
    tg_expect(fd, "ms k 1 C999999 k Oq1\r\nc\r\n", "EX kk Oq1\r\n");
    tg_expect(fd, "ms nokey 1 C999999 Oq1 k\r\nc\r\n", "NF Oq1 knokey\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 1\r\nb\r\n");
    tg_expect(fd, f("ms k 1 MR C%llu\r\nd\r\n", cas2), "HD\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 1\r\nd\r\n");
}

/* memcached 1.6.18 renders the cas of a store that did not happen as 0. */
Test(meta, ms_c_on_a_store_that_failed_renders_c0)
{
    ms_ok(fd, "k", "a");
    tg_expect(fd, "ms k 1 C999999 c\r\nz\r\n", "EX c0\r\n");
    tg_expect(fd, "ms nokey 1 C999999 c\r\nz\r\n", "NF c0\r\n");
    tg_expect(fd, "ms k 1 ME c\r\nz\r\n", "NS c0\r\n");
}

Test(meta, ms_q_hides_HD_but_not_NS_EX_or_NF)
{
    tg_expect(fd,
              "ms k 2 q\r\nhi\r\n"
              "ms k 2 q ME\r\nho\r\n"
              "ms nokey 2 q MR\r\nho\r\n"
              "ms k 2 q C999999\r\nho\r\n"
              "ms nokey 2 q C999999\r\nho\r\n"
              "mn\r\n",
              "NS\r\nNS\r\nEX\r\nNF\r\nMN\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2\r\nhi\r\n");
}

Test(meta, ms_I_with_an_older_cas_stores_a_stale_value)
{
    ms_ok(fd, "k", "v1");
    unsigned long long c1 = cas_of(fd, "k");
    ms_ok(fd, "k", "v2");
    unsigned long long c2 = cas_of(fd, "k");
    /* A newer cas than the item's is a mismatch, not a stale set. */
    tg_expect(fd, f("ms k 2 C%llu I\r\nv0\r\n", c2 + 1000), "EX\r\n");
    tg_expect(fd, f("ms k 2 C%llu\r\nv0\r\n", c1), "EX\r\n");
    tg_expect(fd, f("ms k 2 C%llu I\r\nv0\r\n", c1), "HD\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2 X W\r\nv0\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2 Z X\r\nv0\r\n");
    /* A plain set replaces the stale item; I without C changes nothing. */
    tg_expect(fd, "ms k 2 I\r\nv3\r\n", "HD\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2\r\nv3\r\n");
}

/* mcdb's own: ms V<n> stores only over a missing key or a cas below n;
 * memcached does not know the flag. */
Test(meta, mcdb_ms_V_stores_only_over_a_missing_key_or_an_older_cas)
{
    if (tg_is_memcached()) {
        tg_expect(fd, "ms k 1 V100 E100\r\na\r\nmn\r\n",
                  "CLIENT_ERROR invalid flag\r\nMN\r\n");
        return;
    }
    tg_expect(fd, "ms k 1 V100 E100\r\na\r\n", "HD\r\n");
    tg_expect(fd, "mg k c v\r\n", "VA 1 c100\r\na\r\n");
    /* the same version or a newer one in the store: kept, EX even with q */
    tg_expect(fd, "ms k 1 V100 E100 q\r\nb\r\nmn\r\n", "EX\r\nMN\r\n");
    tg_expect(fd, "ms k 1 V99 E99 c\r\nb\r\n", "EX c0\r\n");
    tg_expect(fd, "mg k c v\r\n", "VA 1 c100\r\na\r\n");
    tg_expect(fd, "ms k 1 V101 E101 q\r\nc\r\nmn\r\n", "MN\r\n");
    tg_expect(fd, "mg k c v\r\n", "VA 1 c101\r\nc\r\n");
    /* a generated cas (a clock in microseconds) is far above 101 */
    ms_ok(fd, "g", "x");
    unsigned long long cas = cas_of(fd, "g");
    tg_expect(fd, f("ms g 1 V%llu E%llu\r\ny\r\n", cas, cas), "EX\r\n");
    tg_expect(fd, f("ms g 1 V%llu E%llu\r\ny\r\n", cas + 1, cas + 1), "HD\r\n");
    tg_expect(fd, "mg g v\r\n", "VA 1\r\ny\r\n");
    /* with a mode: add stores only a missing key, as always */
    tg_expect(fd, "ms n 1 V5 ME\r\nz\r\n", "HD\r\n");
    tg_expect(fd, "ms n 1 V99999999999999999 ME\r\nz\r\n", "NS\r\n");
    tg_expect(fd, "ms n 1 Vx\r\nz\r\n",
              "CLIENT_ERROR bad token in command line format\r\n");
}

Test(meta, ms_with_an_invalid_mode_is_an_error_and_its_data_is_swallowed)
{
    /* The 6 data bytes "mn\r\nmn" would read as commands. */
    tg_expect(fd, "ms k 6 MZ\r\nmn\r\nmn\r\n",
              "CLIENT_ERROR invalid mode for ms M token\r\n");
    tg_expect(fd, "mn\r\n", "MN\r\n");
    tg_expect(fd, "ms k 2 Ms\r\nhi\r\nmn\r\n",
              "CLIENT_ERROR invalid mode for ms M token\r\nMN\r\n");
    tg_expect(fd, "ms k 2 MSS\r\nhi\r\nmn\r\n",
              "CLIENT_ERROR incorrect length for M token\r\nMN\r\n");
    tg_expect(fd, "mg k\r\n", "EN\r\n");
}

/* Without a length memcached cannot know what to skip: only the line is
 * consumed, and the data line is read as a command ("hi": ERROR). */
Test(meta, ms_with_a_bad_length_consumes_only_its_line)
{
    tg_expect(fd, "ms k abc\r\nhi\r\n",
              "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    tg_expect(fd, "ms k -1\r\nhi\r\n",
              "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    tg_expect(fd, "ms k 4294967295\r\nhi\r\n",
              "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    tg_expect(fd, "ms k 2x\r\nhi\r\n",
              "CLIENT_ERROR bad command line format\r\nERROR\r\n");
    tg_expect(fd, "ms k\r\n", "CLIENT_ERROR bad command line format\r\n");
    tg_expect(fd, "mg k\r\n", "EN\r\n");
}

Test(meta, ms_of_a_too_large_value_is_refused_swallowed_and_drops_the_old)
{
    ms_ok(fd, "k", "old");
    size_t len = 2 * 1024 * 1024;
    char head[64];
    /* q does not hide an error. */
    int hl = snprintf(head, sizeof(head), "ms k %zu T0 q\r\n", len);
    char *req = malloc((size_t)hl + len + 2);
    memcpy(req, head, (size_t)hl);
    memset(req + hl, 'v', len);
    memcpy(req + hl + len, "\r\n", 2);
    const char *want = "SERVER_ERROR object too large for cache\r\n";
    tg_expect_n(fd, req, (size_t)hl + len + 2, want, strlen(want));
    free(req);
    tg_expect(fd, "mg k\r\nmn\r\n", "EN\r\nMN\r\n");
}

Test(meta, ms_with_a_bad_data_chunk_keeps_the_old_value)
{
    ms_ok(fd, "k", "old");
    char *line = ask_line(fd, "ms k 2\r\nabc\r\n");
    cr_assert_str_eq(line, "CLIENT_ERROR bad data chunk");
    free(line);
    resync(fd);
    tg_expect(fd, "mg k v\r\n", "VA 3\r\nold\r\n");
}

/* ---- md ---- */

Test(meta, md_deletes_HD_then_NF)
{
    tg_expect(fd, "md k\r\n", "NF\r\n");
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "md k\r\n", "HD\r\n");
    tg_expect(fd, "mg k\r\n", "EN\r\n");
    tg_expect(fd, "md k\r\n", "NF\r\n");
}

Test(meta, md_C_deletes_only_the_same_cas)
{
    ms_ok(fd, "k", "hi");
    unsigned long long cas = cas_of(fd, "k");
    tg_expect(fd, f("md k C%llu\r\n", cas + 1), "EX\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2\r\nhi\r\n");
    tg_expect(fd, f("md k C%llu\r\n", cas), "HD\r\n");
    tg_expect(fd, "mg k\r\n", "EN\r\n");
}

Test(meta, md_q_hides_HD_but_not_NF_or_EX)
{
    ms_ok(fd, "k", "hi");
    ms_ok(fd, "j", "hi");
    tg_expect(fd, "md k q\r\nmd k q\r\nmd j q C999999\r\nmn\r\n",
              "NF\r\nEX\r\nMN\r\n");
}

Test(meta, md_renders_O_and_k_in_request_order)
{
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "md k C999999 k Oa\r\n", "EX kk Oa\r\n");
    tg_expect(fd, "md k Oa k\r\n", "HD Oa kk\r\n");
    tg_expect(fd, "md k k Oa\r\n", "NF kk Oa\r\n");
}

Test(meta, md_I_keeps_the_item_as_stale_with_a_new_cas)
{
    ms_ok(fd, "k", "hi");
    unsigned long long c0 = cas_of(fd, "k");
    tg_expect(fd, "md k I\r\n", "HD\r\n");
    char *line = expect_like(fd, "mg k c v\r\n", "VA 2 c# X W");
    unsigned long long c1 = (unsigned long long)flag_num(line, 'c');
    free(line);
    tg_expect(fd, "", "hi\r\n");
    cr_assert_neq(c1, c0, "md I kept the cas");
    tg_expect(fd, "mg k c v\r\n", f("VA 2 c%llu Z X\r\nhi\r\n", c1));
    tg_expect(fd, "get k\r\n", "VALUE k 0 2\r\nhi\r\nEND\r\n");
    /* Invalidating again hands out a new token. */
    tg_expect(fd, "md k I q\r\nmn\r\n", "MN\r\n");
    tg_expect(fd, "mg k\r\n", "HD X W\r\n");
    tg_expect(fd, "mg k\r\n", "HD Z X\r\n");
    tg_expect(fd, "md k\r\n", "HD\r\n");
    tg_expect(fd, "mg k\r\n", "EN\r\n");
}

Test(meta, md_I_with_T_sets_the_stale_item_s_ttl)
{
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "md k I T100\r\n", "HD\r\n");
    char *line = expect_like(fd, "mg k t\r\n", "HD t# X W");
    assert_ttl_near_100(line, 't');
    free(line);
}

/* ---- ma ---- */

Test(meta, ma_of_a_missing_key_is_NF_even_with_q)
{
    tg_expect(fd, "ma n\r\n", "NF\r\n");
    tg_expect(fd, "ma n q\r\nmn\r\n", "NF\r\nMN\r\n");
    tg_expect(fd, "ma n k Oz\r\n", "NF kn Oz\r\n");
}

Test(meta, ma_increments_by_one_and_v_returns_the_number)
{
    ms_ok(fd, "n", "5");
    tg_expect(fd, "ma n\r\n", "HD\r\n");
    tg_expect(fd, "mg n v\r\n", "VA 1\r\n6\r\n");
    tg_expect(fd, "ma n v\r\n", "VA 1\r\n7\r\n");
}

Test(meta, ma_D_sets_the_delta_and_M_the_direction)
{
    ms_ok(fd, "n", "10");
    tg_expect(fd, "ma n D5 v\r\n", "VA 2\r\n15\r\n");
    tg_expect(fd, "ma n MD D3 v\r\n", "VA 2\r\n12\r\n");
    tg_expect(fd, "ma n M- v\r\n", "VA 2\r\n11\r\n");
    tg_expect(fd, "ma n M+ D100 v\r\n", "VA 3\r\n111\r\n");
    tg_expect(fd, "ma n MI v\r\n", "VA 3\r\n112\r\n");
    tg_expect(fd, "get n\r\n", "VALUE n 0 3\r\n112\r\nEND\r\n");
}

Test(meta, ma_decrement_stops_at_0_and_increment_wraps_at_2_64)
{
    ms_ok(fd, "z", "1");
    tg_expect(fd, "ma z MD D5 v\r\n", "VA 1\r\n0\r\n");
    ms_ok(fd, "big", "18446744073709551615");
    tg_expect(fd, "ma big v\r\n", "VA 1\r\n0\r\n");
}

Test(meta, ma_N_creates_a_missing_counter_at_J)
{
    tg_expect(fd, "ma c N0 J10 v\r\n", "VA 2\r\n10\r\n");
    tg_expect(fd, "ma c N0 J10 v\r\n", "VA 2\r\n11\r\n");
    tg_expect(fd, "ma d N0 v\r\n", "VA 1\r\n0\r\n");
    char *line = expect_like(fd, "ma e N100 J7 t v\r\n", "VA 1 t#");
    assert_ttl_near_100(line, 't');
    free(line);
    tg_expect(fd, "", "7\r\n");
}

Test(meta, ma_C_applies_only_over_the_same_cas)
{
    ms_ok(fd, "n", "1");
    unsigned long long cas = cas_of(fd, "n");
    tg_expect(fd, f("ma n C%llu v\r\n", cas + 1), "EX\r\n");
    tg_expect(fd, f("ma n C%llu q k Oz\r\n", cas + 1), "EX kn Oz\r\n");
    tg_expect(fd, f("ma n C%llu v\r\n", cas), "VA 1\r\n2\r\n");
}

Test(meta, ma_renders_t_c_k_and_O_in_request_order)
{
    ms_ok(fd, "n", "10");
    char *line =
        expect_like(fd, "ma n D5 v t c k Oxy\r\n", "VA 2 t-1 c# kn Oxy");
    unsigned long long cas = (unsigned long long)flag_num(line, 'c');
    free(line);
    tg_expect(fd, "", "15\r\n");
    cr_assert_eq(cas_of(fd, "n"), cas, "c is not the counter's new cas");
    char *l2 = expect_like(fd, "ma n T100 t\r\n", "HD t#");
    assert_ttl_near_100(l2, 't');
    free(l2);
}

Test(meta, ma_q_hides_HD_and_VA)
{
    ms_ok(fd, "n", "1");
    tg_expect(fd, "ma n q\r\nma n q v\r\nmn\r\n", "MN\r\n");
    tg_expect(fd, "mg n v\r\n", "VA 1\r\n3\r\n");
}

Test(meta, ma_of_a_non_numeric_value_is_an_error_even_with_q)
{
    ms_ok(fd, "s", "abc");
    tg_expect(
        fd, "ma s\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    tg_expect(
        fd, "ma s q\r\n",
        "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
}

Test(meta, ma_with_a_bad_mode_delta_or_initial_value_is_an_error)
{
    ms_ok(fd, "n", "1");
    tg_expect(fd, "ma n MZ\r\n",
              "CLIENT_ERROR invalid mode for ma M token\r\n");
    tg_expect(fd, "ma n MDD\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "ma n Dx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "ma n N0 Jx\r\n",
              "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "mg n v\r\n", "VA 1\r\n1\r\n");
}

/* ---- me ---- */

Test(meta, me_of_a_missing_key_is_EN)
{
    tg_expect(fd, "me nokey\r\n", "EN\r\n");
    tg_expect(fd, "me\r\n", "CLIENT_ERROR bad command line format\r\n");
}

Test(meta, me_shows_exp_la_cas_and_whether_the_item_was_fetched)
{
    ms_ok(fd, "k", "hi");
    unsigned long long cas = cas_of(fd, "k");
    const char *pat_no =
        f("ME k exp=-1 la=# cas=%llu fetch=no cls=# size=#", cas);
    free(expect_like(fd, "me k\r\n", pat_no));
    /* me itself does not count as a fetch. */
    free(expect_like(fd, "me k\r\n", pat_no));
    tg_expect(fd, "mg k v\r\n", "VA 2\r\nhi\r\n");
    free(expect_like(
        fd, "me k\r\n",
        f("ME k exp=-1 la=# cas=%llu fetch=yes cls=# size=#", cas)));
}

/* ---- what the flag parser refuses (errors are sent even with q) ---- */

Test(meta, an_unknown_flag_is_an_invalid_flag)
{
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "mg k !\r\n", "CLIENT_ERROR invalid flag\r\n");
    tg_expect(fd, "mg k q !\r\n", "CLIENT_ERROR invalid flag\r\n");
    tg_expect(fd, "mg nokey q a\r\n", "CLIENT_ERROR invalid flag\r\n");
    tg_expect(fd, "ms k 2 !\r\nho\r\nmn\r\n",
              "CLIENT_ERROR invalid flag\r\nMN\r\n");
    tg_expect(fd, "md k !\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "ma k !\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2\r\nhi\r\n");
}

Test(meta, a_repeated_flag_is_a_duplicate_flag)
{
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "mg k v v\r\n", "CLIENT_ERROR duplicate flag\r\n");
    tg_expect(fd, "mg k T1 T2 q\r\n", "CLIENT_ERROR duplicate flag\r\n");
    tg_expect(fd, "ms k 2 T1 T2\r\nho\r\nmn\r\n",
              "CLIENT_ERROR duplicate flag\r\nMN\r\n");
    tg_expect(fd, "md k q q\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "ma k q q\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2\r\nhi\r\n");
}

Test(meta, a_flag_without_its_number_is_a_bad_token)
{
    ms_ok(fd, "k", "hi");
    const char *bad = "CLIENT_ERROR bad token in command line format\r\n";
    tg_expect(fd, "mg k Nabc\r\n", bad);
    tg_expect(fd, "mg k Tx\r\n", bad);
    tg_expect(fd, "mg k Rx\r\n", bad);
    tg_expect(fd, "mg k T\r\n", bad);
    tg_expect(fd, "ms k 2 Cabc\r\nho\r\nmn\r\n", f("%sMN\r\n", bad));
    tg_expect(fd, "ms k 2 Tx\r\nho\r\nmn\r\n", f("%sMN\r\n", bad));
    /* F says nothing more precise. */
    tg_expect(fd, "ms k 2 Fabc\r\nho\r\nmn\r\n",
              "CLIENT_ERROR bad command line format\r\nMN\r\n");
    tg_expect(fd, "md k Cabc\r\n",
              "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2\r\nhi\r\n");
}

Test(meta, an_opaque_of_up_to_32_bytes_is_echoed_and_a_longer_one_refused)
{
    const char *o32 = "O1234567890123456789012345678901";
    const char *o33 = "O12345678901234567890123456789012";
    const char *err = "CLIENT_ERROR opaque token too long\r\n";
    ms_ok(fd, "k", "hi");
    tg_expect(fd, f("mg k %s\r\n", o32), f("HD %s\r\n", o32));
    tg_expect(fd, f("mg nokey %s\r\n", o32), f("EN %s\r\n", o32));
    tg_expect(fd, f("mg k q %s\r\n", o33), err);
    tg_expect(fd, f("mg nokey q %s\r\n", o33), err);
    tg_expect(fd, f("ms k 2 q %s\r\nho\r\nmn\r\n", o33), f("%sMN\r\n", err));
    tg_expect(fd, f("md k q %s\r\n", o33), err);
    tg_expect(fd, f("ma nokey %s\r\n", o33), err);
    tg_expect(fd, "mg k v\r\n", "VA 2\r\nhi\r\n");
}

/* memcached counts tokens, its terminal empty one included, and refuses
 * more than 20: mg, md and ma take 17 flags, ms (one token more) 16. The
 * lengths are checked before the flags, so a duplicate flag under the limit
 * proves it. Too long an ms is refused before its length is read: the data
 * line then reads as a command. */
Test(meta, more_than_17_flags_or_16_on_ms_are_too_many)
{
    tg_expect(fd, f("mg k%s\r\n", flags(17)),
              "CLIENT_ERROR duplicate flag\r\n");
    tg_expect(fd, f("mg k%s\r\n", flags(18)),
              "CLIENT_ERROR options flags are too long\r\n");
    tg_expect(fd, f("md k%s\r\n", flags(17)),
              "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, f("md k%s\r\n", flags(18)),
              "CLIENT_ERROR options flags too long\r\n");
    tg_expect(fd, f("ma k%s\r\n", flags(17)),
              "CLIENT_ERROR invalid or duplicate flag\r\n");
    tg_expect(fd, f("ma k%s\r\n", flags(18)),
              "CLIENT_ERROR options flags too long\r\n");
    tg_expect(fd, f("ms k 2%s\r\nhi\r\nmn\r\n", flags(16)),
              "CLIENT_ERROR duplicate flag\r\nMN\r\n");
    tg_expect(fd, f("ms k 2%s\r\nhi\r\n", flags(17)),
              "CLIENT_ERROR options flags too long\r\nERROR\r\n");
    /* 17 different flags are fine (mg parses, and ignores, those of ms
     * and ma too). */
    ms_ok(fd, "k", "hi");
    free(expect_like(fd, "mg k s t f h k Oz u P L q F1 C1 MS J1 D1 I l\r\n",
                     "HD s2 t-1 f0 h0 kk Oz l#"));
}

Test(meta, a_key_of_250_bytes_is_accepted_and_251_refused)
{
    char k250[251], k251[252];
    memset(k250, 'a', 250);
    k250[250] = '\0';
    memset(k251, 'a', 251);
    k251[251] = '\0';
    const char *bad = "CLIENT_ERROR bad command line format\r\n";
    tg_expect(fd, f("mg %s k\r\n", k250), f("EN k%s\r\n", k250));
    tg_expect(fd, f("ms %s 1\r\nx\r\n", k250), "HD\r\n");
    tg_expect(fd, f("mg %s v\r\n", k250), "VA 1\r\nx\r\n");
    tg_expect(fd, f("ma %s q N0\r\nmn\r\n", k250),
              "CLIENT_ERROR cannot increment or decrement non-numeric "
              "value\r\nMN\r\n");
    tg_expect(fd, f("md %s\r\n", k250), "HD\r\n");
    tg_expect(fd, f("mg %s\r\n", k251), bad);
    tg_expect(fd, f("mg %s q\r\n", k251), bad);
    tg_expect(fd, f("md %s\r\n", k251), bad);
    tg_expect(fd, f("ma %s\r\n", k251), bad);
    tg_expect(fd, f("me %s\r\n", k251), bad);
    /* Refused before its length is read: the data line reads as a command. */
    tg_expect(fd, f("ms %s 2\r\nhi\r\n", k251), f("%sERROR\r\n", bad));
}

Test(meta, a_meta_command_without_a_key_or_unknown_is_ERROR)
{
    tg_expect(fd, "mg\r\n", "ERROR\r\n");
    tg_expect(fd, "ms\r\n", "ERROR\r\n");
    tg_expect(fd, "md\r\n", "ERROR\r\n");
    tg_expect(fd, "ma\r\n", "ERROR\r\n");
    tg_expect(fd, "mz k\r\n", "ERROR\r\n");
    tg_expect(fd, "MG k\r\n", "ERROR\r\n");
    tg_expect(fd, "mgx k\r\n", "ERROR\r\n");
    tg_expect(fd, "mn\r\n", "MN\r\n");
}

Test(meta, extra_spaces_and_a_bare_newline_are_accepted)
{
    tg_expect(fd, "ms  k  2  T0 \r\nhi\r\n", "HD\r\n");
    tg_expect(fd, "mg  k   s  v\r\n", "VA 2 s2\r\nhi\r\n");
    tg_expect(fd, "mg k v \r\n", "VA 2\r\nhi\r\n");
    tg_expect(fd, "mg k v\n", "VA 2\r\nhi\r\n");
    tg_expect(fd, "mn\n", "MN\r\n");
}

/* ---- pipelining ---- */

Test(meta, one_write_of_many_requests_gets_exactly_the_replies_in_order)
{
    enum { N = 60 };
    size_t rcap = 64 * 1024, wcap = 64 * 1024, rl = 0, wl = 0;
    char *req = malloc(rcap), *want = malloc(wcap);
    rl += (size_t)sprintf(req + rl, "ms cnt 1\r\n0\r\n");
    wl += (size_t)sprintf(want + wl, "HD\r\n");
    for (int i = 0; i < N; i++) {
        char val[32];
        int vl = snprintf(val, sizeof(val), "value-%d", i * 7919);
        rl += (size_t)sprintf(req + rl, "ms p%d %d F%d q\r\n%s\r\n", i, vl, i,
                              val);
        rl += (size_t)sprintf(req + rl, "mg p%d v f k\r\n", i);
        wl += (size_t)sprintf(want + wl, "VA %d f%d kp%d\r\n%s\r\n", vl, i, i,
                              val);
        rl += (size_t)sprintf(req + rl, "mg miss%d q v k\r\nma cnt q\r\n", i);
        if (i % 2)
            rl += (size_t)sprintf(req + rl, "md p%d q\r\n", i);
        if (i % 10 == 0) {
            rl += (size_t)sprintf(req + rl, "mn\r\n");
            wl += (size_t)sprintf(want + wl, "MN\r\n");
        }
    }
    for (int i = 0; i < N; i++) {
        rl += (size_t)sprintf(req + rl, "mg p%d q k\r\n", i);
        if (i % 2 == 0)
            wl += (size_t)sprintf(want + wl, "HD kp%d\r\n", i);
    }
    rl += (size_t)sprintf(req + rl, "ma cnt v\r\nmn\r\n");
    wl += (size_t)sprintf(want + wl, "VA 2\r\n%d\r\nMN\r\n", N + 1);
    cr_assert_lt(rl, rcap);
    cr_assert_lt(wl, wcap);
    tg_expect_n(fd, req, rl, want, wl);
    free(req);
    free(want);
}

/* A short script, sent as two writes split at every byte position: each
 * time the same replies. It leaves nothing behind, so it can run again. */
Test(meta, a_request_split_at_any_byte_gets_the_same_replies)
{
    static const char script[] = "ms sp1 5 F3 T0\r\nhello\r\n"
                                 "mg sp1 v f k Oa1\r\n"
                                 "ms sp1 3 MA q\r\n!!!\r\n"
                                 "mg sp1 s v\r\n"
                                 "ma sp2 N0 J7 v\r\n"
                                 "ma sp2 D3 q\r\n"
                                 "ma sp2 MD v\r\n"
                                 "mg sp3 q v\r\n"
                                 "mg sp3 k Ox\r\n"
                                 "ms sp4 0\r\n\r\n"
                                 "mg sp4 v\r\n"
                                 "md sp1 q\r\nmd sp1 k\r\n"
                                 "md sp2 q\r\nmd sp4 q\r\n"
                                 "mn\r\n";
    static const char want[] = "HD\r\n"
                               "VA 5 f3 ksp1 Oa1\r\nhello\r\n"
                               "VA 8 s8\r\nhello!!!\r\n"
                               "VA 1\r\n7\r\n"
                               "VA 1\r\n9\r\n"
                               "EN ksp3 Ox\r\n"
                               "HD\r\n"
                               "VA 0\r\n\r\n"
                               "NF ksp1\r\n"
                               "MN\r\n";
    size_t n = sizeof(script) - 1;
    tg_expect_n(fd, script, n, want, sizeof(want) - 1);
    for (size_t i = 1; i < n; i++) {
        cr_assert_eq(th_send(fd, script, i), 0);
        usleep(300); /* else the two writes may arrive as one */
        char *m = tg_exchange(fd, script + i, n - i, want, sizeof(want) - 1);
        cr_assert(m == NULL, "split at byte %zu: %s", i, m ? m : "");
    }
}

/* ---- newer than 1.6.18: mcdbd only ---- */

Test(meta, newer_E_sets_the_cas_of_what_ms_mg_N_md_I_and_ma_write)
{
    NEWER_THAN_1_6_18();
    tg_expect(fd, "ms k 2 E12345 c\r\nhi\r\n", "HD c12345\r\n");
    tg_expect(fd, "mg k c v\r\n", "VA 2 c12345\r\nhi\r\n");
    tg_expect(fd, "gets k\r\n", "VALUE k 0 2 12345\r\nhi\r\nEND\r\n");
    tg_expect(fd, "ms k 2 C12345 E777 c\r\nho\r\n", "HD c777\r\n");
    tg_expect(fd, "ms k 2 C12345\r\nho\r\n", "EX\r\n");
    tg_expect(fd, "mg v N30 E4242 c\r\n", "HD c4242 W\r\n");
    tg_expect(fd, "md k I E888\r\n", "HD\r\n");
    tg_expect(fd, "mg k c\r\n", "HD c888 X W\r\n");
    ms_ok(fd, "n", "5");
    tg_expect(fd, "ma n E999 c v\r\n", "VA 1 c999\r\n6\r\n");
    tg_expect(fd, "ma m N0 J1 E5 c\r\n", "HD c5\r\n");
    tg_expect(fd, "ms k 2 Eabc\r\nhi\r\nmn\r\n",
              "CLIENT_ERROR bad token in command line format\r\nMN\r\n");
}

Test(meta, newer_mg_C_with_the_item_s_cas_returns_HD_without_the_value)
{
    NEWER_THAN_1_6_18();
    ms_ok(fd, "k", "hi");
    unsigned long long cas = cas_of(fd, "k");
    tg_expect(fd, f("mg k C%llu v\r\n", cas), "HD\r\n");
    tg_expect(fd, f("mg k C%llu v s c\r\n", cas), f("HD s2 c%llu\r\n", cas));
    tg_expect(fd, f("mg k C%llu v\r\n", cas + 1), "VA 2\r\nhi\r\n");
}

Test(meta, newer_md_x_empties_the_value_and_keeps_the_item_with_F_and_T)
{
    NEWER_THAN_1_6_18();
    tg_expect(fd, "ms k 5 F3 T0\r\nhello\r\n", "HD\r\n");
    tg_expect(fd, "md k x F7 T100\r\n", "HD\r\n");
    char *line = expect_like(fd, "mg k v f t\r\n", "VA 0 f7 t#");
    assert_ttl_near_100(line, 't');
    free(line);
    tg_expect(fd, "", "\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 7 0\r\n\r\nEND\r\n");
    tg_expect(fd, "md nokey x\r\n", "NF\r\n");
    ms_ok(fd, "j", "hello");
    tg_expect(fd, "md j x I\r\n", "HD\r\n");
    tg_expect(fd, "mg j v\r\n", "VA 0 X W\r\n\r\n");
}

Test(meta, newer_ms_N_in_append_or_prepend_mode_creates_a_missing_item)
{
    NEWER_THAN_1_6_18();
    tg_expect(fd, "ms a 2 MA N100\r\nhi\r\n", "HD\r\n");
    char *line = expect_like(fd, "mg a v t\r\n", "VA 2 t#");
    assert_ttl_near_100(line, 't');
    free(line);
    tg_expect(fd, "", "hi\r\n");
    tg_expect(fd, "ms a 2 MA N100\r\n!!\r\n", "HD\r\n");
    tg_expect(fd, "mg a v\r\n", "VA 4\r\nhi!!\r\n");
    tg_expect(fd, "ms p 2 MP N0\r\nhi\r\n", "HD\r\n");
    tg_expect(fd, "mg p v t\r\n", "VA 2 t-1\r\nhi\r\n");
    tg_expect(fd, "ms q 2 MA\r\nhi\r\n", "NS\r\n");
}

Test(meta, newer_ms_s_returns_the_stored_size_after_append_the_whole)
{
    NEWER_THAN_1_6_18();
    tg_expect(fd, "ms k 2 s\r\nhi\r\n", "HD s2\r\n");
    tg_expect(fd, "ms k 3 MA s\r\nabc\r\n", "HD s5\r\n");
    tg_expect(fd, "ms k 1 MP k s\r\n<\r\n", "HD kk s6\r\n");
}

/* 1.6.18 printed current_time - exptime: -100 for T100. */
Test(meta, newer_me_exp_is_the_remaining_seconds)
{
    NEWER_THAN_1_6_18();
    tg_expect(fd, "ms k 2 T100\r\nhi\r\n", "HD\r\n");
    char *line = expect_like(fd, "me k\r\n",
                             "ME k exp=# la=# cas=# fetch=no cls=# size=#");
    long long exp = strtoll(strstr(line, "exp=") + 4, NULL, 10);
    cr_assert(exp >= 99 && exp <= 100, "T100 then me: \"%s\"", line);
    free(line);
}

/* ---- what a persistent store must get right: mcdbd only ---- */

static void
restart(void)
{
    close(fd);
    fd = -1;
    th_server_stop(&srv, SIGKILL);
    cr_assert_eq(th_mcdbd_restart(&srv, NULL), 0, "mcdbd did not restart");
    fd = tg_connect(srv.port);
    cr_assert(fd >= 0, "cannot connect to mcdbd after its restart");
}

/* With E a client picks the cas, so cas order is not write order: a flush
 * must not be told from a cas threshold, before or after a restart (and a
 * write after it, with a low cas, must stay). */
Test(meta, store_flush_all_empties_items_written_with_any_client_cas)
{
    if (tg_is_memcached())
        cr_skip_test("needs E (newer than 1.6.18) and a restart (mcdbd)");
    ms_ok(fd, "d", "x");
    tg_expect(fd, "ms a 1 E5\r\nx\r\n", "HD\r\n");
    tg_expect(fd, "ms b 1 E999999\r\nx\r\n", "HD\r\n");
    tg_expect(fd, "ms c 1 E1\r\nx\r\n", "HD\r\n");
    tg_expect(fd, "flush_all\r\n", "OK\r\n");
    tg_expect(fd, "mg a\r\nmg b\r\nmg c\r\nmg d\r\n",
              "EN\r\nEN\r\nEN\r\nEN\r\n");
    tg_expect(fd, "ms a 1 E2\r\ny\r\n", "HD\r\n");
    restart();
    tg_expect(fd, "mg a v\r\nmg b\r\nmg c\r\nmg d\r\n",
              "VA 1\r\ny\r\nEN\r\nEN\r\nEN\r\n");
}

Test(meta, store_an_invalidated_item_stays_stale_across_a_restart)
{
    if (tg_is_memcached())
        cr_skip_test("memcached does not survive a restart");
    ms_ok(fd, "k", "hi");
    tg_expect(fd, "md k I\r\n", "HD\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2 X W\r\nhi\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2 Z X\r\nhi\r\n");
    restart();
    /* Who holds the token is not persisted: a new first reader wins. */
    tg_expect(fd, "mg k v\r\n", "VA 2 X W\r\nhi\r\n");
    tg_expect(fd, "mg k v\r\n", "VA 2 Z X\r\nhi\r\n");
}
