/*
 * Unit tests for src/net/proto.c, memcached's text protocol parser.
 *   ctest --test-dir build -R net/proto --output-on-failure
 * Every input is copied into a heap buffer of exactly its length, so ASan
 * reports any read past len.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/proto.h"

#define MAX_ITEM (1024u * 1024u)

static const char R_ERROR[] = "ERROR\r\n";
static const char R_BAD_FORMAT[] = "CLIENT_ERROR bad command line format\r\n";
static const char R_BAD_DELTA[] =
    "CLIENT_ERROR invalid numeric delta argument\r\n";
static const char R_BAD_EXPTIME[] = "CLIENT_ERROR invalid exptime argument\r\n";
static const char R_DELETE_USAGE[] = "CLIENT_ERROR bad command line format.  "
                                     "Usage: delete <key> [noreply]\r\n";
static const char R_TOO_LARGE[] = "SERVER_ERROR object too large for cache\r\n";
static const char R_BAD_CHUNK[] = "CLIENT_ERROR bad data chunk\r\n";
static const char R_LINE_TOO_LONG[] = "CLIENT_ERROR line too long\r\n";

/* ---- helpers ---- */

/* The buffer of the last parse; freed by the next one. */
static char *g_buf;

static char *
dup_exact(const void *s, size_t n)
{
    char *b = malloc(n ? n : 1);

    cr_assert_not_null(b);
    if (n)
        memcpy(b, s, n);
    return b;
}

static int
parse_n(const void *s, size_t n, uint32_t max_item, struct proto_req *r)
{
    free(g_buf);
    g_buf = dup_exact(s, n);
    return proto_parse(g_buf, n, max_item, r);
}

static int
parse(const char *s, struct proto_req *r)
{
    return parse_n(s, strlen(s), MAX_ITEM, r);
}

static bool
bytes_eq(const char *p, size_t n, const char *s)
{
    return p != NULL && n == strlen(s) && memcmp(p, s, n) == 0;
}

#define assert_key(r, s)                                                       \
    cr_assert(bytes_eq((r).key, (r).klen, (s)), "key is not \"%s\"", (s))

static void
assert_ok(const char *s, enum proto_cmd cmd, struct proto_req *r)
{
    int rc = parse(s, r);

    cr_assert_eq(rc, PROTO_OK, "\"%s\": rc %d, reply %s", s, rc,
                 r->reply ? r->reply : "-");
    cr_assert_eq(r->cmd, cmd, "\"%s\": cmd %s", s, proto_cmd_name(r->cmd));
    cr_assert_eq(r->consumed, strlen(s), "\"%s\": consumed %zu", s,
                 r->consumed);
    cr_assert_null(r->reply);
}

static void
assert_error_n(const void *s, size_t n, uint32_t max_item, const char *reply,
               size_t consumed, uint64_t swallow, bool close)
{
    struct proto_req r;
    int rc = parse_n(s, n, max_item, &r);

    cr_assert_eq(rc, PROTO_ERROR, "\"%.*s\": rc %d", (int)n, (const char *)s,
                 rc);
    cr_assert_str_eq(r.reply, reply, "\"%.*s\"", (int)n, (const char *)s);
    cr_assert_eq(r.consumed, consumed, "\"%.*s\": consumed %zu, not %zu",
                 (int)n, (const char *)s, r.consumed, consumed);
    cr_assert_eq(r.swallow, swallow, "\"%.*s\": swallow %llu", (int)n,
                 (const char *)s, (unsigned long long)r.swallow);
    cr_assert_eq(r.close, close, "\"%.*s\": close", (int)n, (const char *)s);
}

/* A one-line error: the whole line is consumed, nothing swallowed. */
static void
assert_line_error(const char *s, const char *reply)
{
    assert_error_n(s, strlen(s), MAX_ITEM, reply, strlen(s), 0, false);
}

static bool
noreply_of(const char *s)
{
    struct proto_req r;

    parse(s, &r);
    return r.noreply;
}

static size_t
count_keys(const struct proto_req *r)
{
    size_t pos = 0, n = 0, klen;
    const char *key;

    while (proto_next_key(r, &pos, &key, &klen))
        n++;
    return n;
}

static long long
off(const char *p, const char *base)
{
    return p ? (long long)(p - base) : -1;
}

/* Two parses of (possibly different copies of) the same bytes agree. */
static void
assert_same(int rc_a, const struct proto_req *a, const char *abuf, int rc_b,
            const struct proto_req *b, const char *bbuf, const char *what)
{
    cr_assert_eq(rc_a, rc_b, "%s: rc %d vs %d", what, rc_a, rc_b);
    cr_assert_eq(a->consumed, b->consumed, "%s: consumed %zu vs %zu", what,
                 a->consumed, b->consumed);
    if (rc_a == PROTO_NEED_MORE)
        return;
    cr_assert_eq(a->cmd, b->cmd, "%s: cmd", what);
    cr_assert_eq(off(a->key, abuf), off(b->key, bbuf), "%s: key", what);
    cr_assert_eq(a->klen, b->klen, "%s: klen", what);
    cr_assert_eq(off(a->keys, abuf), off(b->keys, bbuf), "%s: keys", what);
    cr_assert_eq(a->keys_len, b->keys_len, "%s: keys_len", what);
    cr_assert_eq(a->flags, b->flags, "%s: flags", what);
    cr_assert_eq(a->exptime, b->exptime, "%s: exptime", what);
    cr_assert_eq(a->bytes, b->bytes, "%s: bytes", what);
    cr_assert_eq(off(a->data, abuf), off(b->data, bbuf), "%s: data", what);
    cr_assert_eq(a->cas, b->cas, "%s: cas", what);
    cr_assert_eq(a->delta, b->delta, "%s: delta", what);
    cr_assert_eq(a->delay, b->delay, "%s: delay", what);
    cr_assert_eq(a->level, b->level, "%s: level", what);
    cr_assert_eq(off(a->arg, abuf), off(b->arg, bbuf), "%s: arg", what);
    cr_assert_eq(a->arg_len, b->arg_len, "%s: arg_len", what);
    cr_assert_eq(a->noreply, b->noreply, "%s: noreply", what);
    cr_assert_eq(a->reply, b->reply, "%s: reply", what);
    cr_assert_eq(a->swallow, b->swallow, "%s: swallow", what);
    cr_assert_eq(a->close, b->close, "%s: close", what);
}

/*
 * Feed s as a caller would as bytes arrive: every prefix, each in a buffer of
 * exactly that size. Until the first request is complete the answer is
 * NEED_MORE; it completes exactly at the prefix of its consumed length, with
 * the same result as the whole buffer, and stays so for longer prefixes.
 * Returns the result for the whole buffer.
 */
static int
check_split(const void *s, size_t n, uint32_t max_item)
{
    struct proto_req whole, part;
    char *wbuf = dup_exact(s, n);
    int rc_whole = proto_parse(wbuf, n, max_item, &whole);
    char what[64];

    for (size_t k = 0; k <= n; k++) {
        char *pbuf = dup_exact(s, k);
        int rc = proto_parse(pbuf, k, max_item, &part);

        snprintf(what, sizeof(what), "prefix %zu of %zu", k, n);
        if (rc_whole == PROTO_NEED_MORE || k < whole.consumed) {
            cr_assert_eq(rc, PROTO_NEED_MORE, "%s: rc %d", what, rc);
            cr_assert_eq(part.consumed, 0, "%s", what);
        } else {
            assert_same(rc, &part, pbuf, rc_whole, &whole, wbuf, what);
        }
        free(pbuf);
    }
    free(wbuf);
    return rc_whole;
}

static int
check_split_str(const char *s)
{
    return check_split(s, strlen(s), MAX_ITEM);
}

/* ---- happy paths ---- */

Test(proto, get_with_one_key_parses)
{
    struct proto_req r;
    const char *key;
    size_t pos = 0, klen;

    assert_ok("get foo\r\n", PROTO_GET, &r);
    cr_assert(bytes_eq(r.keys, r.keys_len, "foo"));
    cr_assert(proto_next_key(&r, &pos, &key, &klen));
    cr_assert(bytes_eq(key, klen, "foo"));
    cr_assert_not(proto_next_key(&r, &pos, &key, &klen));
    cr_assert_not(r.noreply);
}

Test(proto, get_with_many_keys_iterates_them_in_order)
{
    static const char *const want[] = {"a", "bb", "ccc", "noreply", "d"};
    struct proto_req r;
    const char *key;
    size_t pos = 0, klen, i = 0;

    assert_ok("get a  bb ccc noreply   d  \r\n", PROTO_GET, &r);
    while (proto_next_key(&r, &pos, &key, &klen)) {
        cr_assert_lt(i, 5);
        cr_assert(bytes_eq(key, klen, want[i]), "key %zu", i);
        i++;
    }
    cr_assert_eq(i, 5);
    cr_assert_not(r.noreply, "get has no noreply: it is a key");
}

Test(proto, gets_with_many_keys_parses)
{
    struct proto_req r;

    assert_ok("gets k1 k2 k3\r\n", PROTO_GETS, &r);
    cr_assert_eq(count_keys(&r), 3);
}

Test(proto, gat_parses_exptime_then_keys)
{
    struct proto_req r;

    assert_ok("gat 3600 k1 k2\r\n", PROTO_GAT, &r);
    cr_assert_eq(r.exptime, 3600);
    cr_assert(bytes_eq(r.keys, r.keys_len, "k1 k2"));
    cr_assert_eq(count_keys(&r), 2);

    assert_ok("gats -1 k\r\n", PROTO_GATS, &r);
    cr_assert_eq(r.exptime, -1);
    cr_assert_eq(count_keys(&r), 1);
}

Test(proto, set_parses_every_field)
{
    struct proto_req r;

    assert_ok("set foo 42 100 5\r\nhello\r\n", PROTO_SET, &r);
    assert_key(r, "foo");
    cr_assert_eq(r.flags, 42);
    cr_assert_eq(r.exptime, 100);
    cr_assert_eq(r.bytes, 5);
    cr_assert(bytes_eq(r.data, r.bytes, "hello"));
    cr_assert_not(r.noreply);
    cr_assert_eq(r.swallow, 0);
    cr_assert_not(r.close);
}

Test(proto, every_storage_command_parses_with_and_without_noreply)
{
    static const struct {
        const char *name;
        enum proto_cmd cmd;
    } cmds[] = {{"set", PROTO_SET},
                {"add", PROTO_ADD},
                {"replace", PROTO_REPLACE},
                {"append", PROTO_APPEND},
                {"prepend", PROTO_PREPEND}};
    struct proto_req r;
    char line[128];

    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        snprintf(line, sizeof(line), "%s k 1 2 3\r\nabc\r\n", cmds[i].name);
        assert_ok(line, cmds[i].cmd, &r);
        cr_assert_not(r.noreply);
        cr_assert(bytes_eq(r.data, r.bytes, "abc"));
        snprintf(line, sizeof(line), "%s k 1 2 3 noreply\r\nabc\r\n",
                 cmds[i].name);
        assert_ok(line, cmds[i].cmd, &r);
        cr_assert(r.noreply, "%s noreply", cmds[i].name);
        cr_assert(bytes_eq(r.data, r.bytes, "abc"));
    }
}

Test(proto, cas_parses_the_unique)
{
    struct proto_req r;

    assert_ok("cas k 0 0 1 18446744073709551615\r\nx\r\n", PROTO_CAS, &r);
    cr_assert_eq(r.cas, UINT64_MAX);
    cr_assert_not(r.noreply);
    assert_ok("cas k 0 0 1 7 noreply\r\nx\r\n", PROTO_CAS, &r);
    cr_assert_eq(r.cas, 7);
    cr_assert(r.noreply);
}

Test(proto, storage_numbers_take_their_full_ranges)
{
    struct proto_req r;

    assert_ok("set k 4294967295 2147483647 0\r\n\r\n", PROTO_SET, &r);
    cr_assert_eq(r.flags, UINT32_MAX);
    cr_assert_eq(r.exptime, INT32_MAX);
    assert_ok("set k 0 -2147483648 0\r\n\r\n", PROTO_SET, &r);
    cr_assert_eq(r.exptime, INT32_MIN);
    assert_ok("set k 007 -0 0\r\n\r\n", PROTO_SET, &r);
    cr_assert_eq(r.flags, 7);
    cr_assert_eq(r.exptime, 0);
}

Test(proto, storage_length_beyond_int32_minus_2_is_a_bad_line_not_swallowed)
{
    /* memcached reads <bytes> as a signed 32-bit number and refuses more
     * than INT_MAX - 2: the line is malformed, nothing is swallowed. */
    const char *bad[] = {"set k 0 0 4294967295\r\n", "set k 0 0 2147483647\r\n",
                         "set k 0 0 2147483646\r\n", "set k 0 0 -1\r\n",
                         "cas k 0 0 4294967295 1\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_error_n(bad[i], strlen(bad[i]), UINT32_MAX, R_BAD_FORMAT,
                       strlen(bad[i]), 0, false);
    /* INT_MAX - 2 itself is a length: it waits for the data block, or is
     * too large (and swallowed) when max_item is lower. */
    struct proto_req r;
    const char *line = "set k 0 0 2147483645\r\n";
    cr_assert_eq(parse_n(line, strlen(line), UINT32_MAX, &r), PROTO_NEED_MORE);
    assert_error_n(line, strlen(line), MAX_ITEM, R_TOO_LARGE, strlen(line),
                   2147483647ull, false);
}

Test(proto, zero_length_value_parses)
{
    struct proto_req r;

    assert_ok("set k 0 0 0\r\n\r\n", PROTO_SET, &r);
    cr_assert_eq(r.bytes, 0);
    cr_assert_not_null(r.data);
    cr_assert_eq(r.data, g_buf + strlen("set k 0 0 0\r\n"));
    check_split_str("set k 0 0 0\r\n\r\n");
}

Test(proto, value_containing_crlf_is_taken_by_its_length)
{
    struct proto_req r;
    const char *s = "set k 0 0 12\r\nab\r\nget x\r\n\n\r\n";

    assert_ok(s, PROTO_SET, &r);
    cr_assert(bytes_eq(r.data, r.bytes, "ab\r\nget x\r\n\n"));
    cr_assert_eq(check_split_str(s), PROTO_OK);
}

Test(proto, value_with_every_byte_value_parses)
{
    char buf[64 + 256 + 2];
    int n = snprintf(buf, sizeof(buf), "set bin 0 0 256\r\n");
    struct proto_req r;

    for (int i = 0; i < 256; i++)
        buf[n + i] = (char)i;
    memcpy(buf + n + 256, "\r\n", 2);
    cr_assert_eq(parse_n(buf, n + 258, MAX_ITEM, &r), PROTO_OK);
    cr_assert_eq(r.consumed, (size_t)n + 258);
    cr_assert_eq(r.bytes, 256);
    for (int i = 0; i < 256; i++)
        cr_assert_eq((unsigned char)r.data[i], i);
    cr_assert_eq(check_split(buf, n + 258, MAX_ITEM), PROTO_OK);
}

Test(proto, value_of_exactly_max_item_is_accepted)
{
    size_t n = strlen("set k 0 0 16\r\n") + 16 + 2;
    struct proto_req r;

    cr_assert_eq(parse_n("set k 0 0 16\r\n0123456789abcdef\r\n", n, 16, &r),
                 PROTO_OK);
    assert_error_n("set k 0 0 17\r\n", 14, 16, R_TOO_LARGE, 14, 19, false);
}

Test(proto, incr_and_decr_parse_delta_and_noreply)
{
    struct proto_req r;

    assert_ok("incr n 5\r\n", PROTO_INCR, &r);
    assert_key(r, "n");
    cr_assert_eq(r.delta, 5);
    cr_assert_not(r.noreply);
    assert_ok("decr n 18446744073709551615 noreply\r\n", PROTO_DECR, &r);
    cr_assert_eq(r.delta, UINT64_MAX);
    cr_assert(r.noreply);
}

Test(proto, delete_accepts_noreply_and_the_legacy_zero)
{
    struct proto_req r;

    assert_ok("delete k\r\n", PROTO_DELETE, &r);
    assert_key(r, "k");
    cr_assert_not(r.noreply);
    assert_ok("delete k noreply\r\n", PROTO_DELETE, &r);
    cr_assert(r.noreply);
    assert_ok("delete k 0\r\n", PROTO_DELETE, &r);
    cr_assert_not(r.noreply);
    assert_ok("delete k 0 noreply\r\n", PROTO_DELETE, &r);
    cr_assert(r.noreply);
    assert_key(r, "k");
}

Test(proto, touch_parses_exptime_and_noreply)
{
    struct proto_req r;

    assert_ok("touch k 60\r\n", PROTO_TOUCH, &r);
    assert_key(r, "k");
    cr_assert_eq(r.exptime, 60);
    cr_assert_not(r.noreply);
    assert_ok("touch k -1 noreply\r\n", PROTO_TOUCH, &r);
    cr_assert_eq(r.exptime, -1);
    cr_assert(r.noreply);
}

Test(proto, flush_all_takes_an_optional_delay_and_noreply)
{
    struct proto_req r;

    assert_ok("flush_all\r\n", PROTO_FLUSH_ALL, &r);
    cr_assert_eq(r.delay, 0);
    cr_assert_not(r.noreply);
    assert_ok("flush_all 30\r\n", PROTO_FLUSH_ALL, &r);
    cr_assert_eq(r.delay, 30);
    assert_ok("flush_all noreply\r\n", PROTO_FLUSH_ALL, &r);
    cr_assert_eq(r.delay, 0);
    cr_assert(r.noreply);
    assert_ok("flush_all 10 noreply\r\n", PROTO_FLUSH_ALL, &r);
    cr_assert_eq(r.delay, 10);
    cr_assert(r.noreply);
    assert_ok("flush_all -5\r\n", PROTO_FLUSH_ALL, &r);
    cr_assert_eq(r.delay, -5);
}

Test(proto, verbosity_parses_level_and_noreply)
{
    struct proto_req r;

    assert_ok("verbosity 1\r\n", PROTO_VERBOSITY, &r);
    cr_assert_eq(r.level, 1);
    cr_assert_not(r.noreply);
    assert_ok("verbosity 4294967295 noreply\r\n", PROTO_VERBOSITY, &r);
    cr_assert_eq(r.level, UINT32_MAX);
    cr_assert(r.noreply);
}

Test(proto, version_quit_and_stats_parse)
{
    struct proto_req r;

    assert_ok("version\r\n", PROTO_VERSION, &r);
    assert_ok("quit\r\n", PROTO_QUIT, &r);
    assert_ok("quit\n", PROTO_QUIT, &r);
    assert_ok("stats\r\n", PROTO_STATS, &r);
    cr_assert_eq(r.arg_len, 0);
    cr_assert_not_null(r.arg);
    assert_ok("stats  detail dump \r\n", PROTO_STATS, &r);
    cr_assert(bytes_eq(r.arg, r.arg_len, "detail dump"));
    assert_ok("stats items\r\n", PROTO_STATS, &r);
    cr_assert(bytes_eq(r.arg, r.arg_len, "items"));
}

Test(proto, bare_newline_ends_a_line)
{
    struct proto_req r;

    assert_ok("get a b\n", PROTO_GET, &r);
    cr_assert(bytes_eq(r.keys, r.keys_len, "a b"));
    assert_ok("set k 0 0 2\nhi\r\n", PROTO_SET, &r);
    cr_assert(bytes_eq(r.data, r.bytes, "hi"));
    assert_ok("delete k\n", PROTO_DELETE, &r);
}

Test(proto, extra_spaces_between_tokens_are_ignored)
{
    struct proto_req r;

    assert_ok("  set   k  1   2  3  noreply  \r\nabc\r\n", PROTO_SET, &r);
    assert_key(r, "k");
    cr_assert_eq(r.flags, 1);
    cr_assert_eq(r.exptime, 2);
    cr_assert(r.noreply);
}

Test(proto, key_of_250_bytes_and_high_bytes_are_accepted)
{
    char line[512], key[PROTO_MAX_KEY + 1];
    struct proto_req r;

    memset(key, 'k', PROTO_MAX_KEY);
    key[PROTO_MAX_KEY] = '\0';
    snprintf(line, sizeof(line), "set %s 0 0 1\r\nx\r\n", key);
    assert_ok(line, PROTO_SET, &r);
    cr_assert_eq(r.klen, PROTO_MAX_KEY);
    snprintf(line, sizeof(line), "get %s\r\n", key);
    assert_ok(line, PROTO_GET, &r);
    assert_ok("get caf\xc3\xa9\r\n", PROTO_GET, &r);
}

Test(proto, an_unknown_last_token_is_ignored_as_memcached_does)
{
    struct proto_req r;

    assert_ok("set k 0 0 1 norepl\r\nx\r\n", PROTO_SET, &r);
    cr_assert_not(r.noreply);
    assert_ok("incr k 1 x\r\n", PROTO_INCR, &r);
    cr_assert_not(r.noreply);
    assert_ok("touch k 1 x\r\n", PROTO_TOUCH, &r);
    assert_ok("flush_all 1 x\r\n", PROTO_FLUSH_ALL, &r);
    cr_assert_eq(r.delay, 1);
}

Test(proto, a_line_of_exactly_max_line_bytes_is_accepted)
{
    char *line = malloc(PROTO_MAX_LINE + 1);
    struct proto_req r;
    size_t n = 0;

    n += (size_t)sprintf(line, "get");
    while (n + 1 + 200 + 2 <= PROTO_MAX_LINE) {
        line[n++] = ' ';
        memset(line + n, 'a', 200);
        n += 200;
    }
    memset(line + n, ' ', PROTO_MAX_LINE - 2 - n); /* pad with spaces */
    memcpy(line + PROTO_MAX_LINE - 2, "\r\n", 2);
    cr_assert_eq(parse_n(line, PROTO_MAX_LINE, MAX_ITEM, &r), PROTO_OK);
    cr_assert_eq(r.consumed, PROTO_MAX_LINE);
    cr_assert_eq(count_keys(&r), (PROTO_MAX_LINE - 5) / 201);
    free(line);
}

Test(proto, command_names_come_from_the_table)
{
    cr_assert_str_eq(proto_cmd_name(PROTO_GET), "get");
    cr_assert_str_eq(proto_cmd_name(PROTO_FLUSH_ALL), "flush_all");
    cr_assert_str_eq(proto_cmd_name(PROTO_STATS), "stats");
    cr_assert_str_eq(proto_cmd_name(PROTO_NCMDS), "unknown");
    for (int c = 0; c < PROTO_NCMDS; c++) {
        char line[64];
        struct proto_req r;

        /* Each name is recognised by the parser. */
        snprintf(line, sizeof(line), "%s\r\n", proto_cmd_name(c));
        parse(line, &r);
        cr_assert_eq(r.cmd, (enum proto_cmd)c, "%s", line);
    }
}

/* ---- errors ---- */

Test(proto, unknown_command_is_ERROR)
{
    assert_line_error("foo bar\r\n", R_ERROR);
    assert_line_error("bgetx k\r\n", R_ERROR);
    assert_line_error("getx k\r\n", R_ERROR);
    assert_line_error("g\r\n", R_ERROR);
}

Test(proto, commands_are_case_sensitive)
{
    assert_line_error("GET k\r\n", R_ERROR);
    assert_line_error("Set k 0 0 1\r\n", R_ERROR);
    assert_line_error("QUIT\r\n", R_ERROR);
}

Test(proto, empty_and_blank_lines_are_ERROR)
{
    struct proto_req r;

    assert_line_error("\r\n", R_ERROR);
    assert_line_error("\n", R_ERROR);
    assert_line_error("    \r\n", R_ERROR);
    parse("\r\n", &r);
    cr_assert_eq(r.cmd, PROTO_NCMDS);
}

Test(proto, requests_without_keys_are_ERROR)
{
    assert_line_error("get\r\n", R_ERROR);
    assert_line_error("get   \r\n", R_ERROR);
    assert_line_error("gets\r\n", R_ERROR);
    assert_line_error("gat\r\n", R_ERROR);
    assert_line_error("gat 10\r\n", R_ERROR);
    assert_line_error("gats 10   \r\n", R_ERROR);
    assert_line_error("delete\r\n", R_ERROR);
    assert_line_error("touch\r\n", R_ERROR);
    assert_line_error("incr\r\n", R_ERROR);
}

Test(proto, wrong_token_counts_are_ERROR_without_noreply)
{
    static const char *const lines[] = {
        "set k 0 0\r\n",
        "set k 0 0 1 noreply extra\r\n",
        "cas k 0 0 1\r\n",
        "cas k 0 0 1 2 noreply extra\r\n",
        "incr k\r\n",
        "incr noreply\r\n",
        "decr k 1 noreply extra\r\n",
        "touch k\r\n",
        "touch k 1 noreply x\r\n",
        "delete a b c d\r\n",
        "flush_all 1 noreply x\r\n",
        "verbosity\r\n",
        "verbosity 1 noreply x\r\n",
    };

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        assert_line_error(lines[i], R_ERROR);
        cr_assert_not(noreply_of(lines[i]), "%s", lines[i]);
    }
}

Test(proto, malformed_storage_numbers_are_bad_command_line_format)
{
    /* Only the line is dropped, as memcached: nothing is swallowed. */
    assert_line_error("set k 0 0 x\r\n", R_BAD_FORMAT);
    assert_line_error("set k 0 0 -1\r\n", R_BAD_FORMAT);
    assert_line_error("set k 0 0 -0\r\n", R_BAD_FORMAT);
    assert_line_error("set k 0 0 +5\r\n", R_BAD_FORMAT);
    assert_line_error("set k 0 0 5x\r\n", R_BAD_FORMAT);
    assert_line_error("set k 0 0 4294967296\r\n", R_BAD_FORMAT);
    assert_line_error("set k 0 0 99999999999999999999999999\r\n", R_BAD_FORMAT);
    assert_line_error("cas k 0 0 -3 1\r\n", R_BAD_FORMAT);
}

Test(proto, bad_fields_beside_a_good_length_drop_only_the_line)
{
    static const char *const lines[] = {
        "set k x 0 5\r\n",
        "set k -1 0 5\r\n",
        "set k 4294967296 0 5\r\n",
        "set k 0 x 5\r\n",
        "set k 0 2147483648 5\r\n",
        "set k 0 -2147483649 5\r\n",
        "set k 0 99999999999999999999999 5\r\n",
        "cas k 0 0 5 x\r\n",
        "cas k 0 0 5 -1\r\n",
        "cas k 0 0 5 18446744073709551616\r\n",
    };

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        size_t n = strlen(lines[i]);

        assert_error_n(lines[i], n, MAX_ITEM, R_BAD_FORMAT, n, 0, false);
    }
}

Test(proto, data_block_after_a_bad_storage_line_is_read_as_commands)
{
    /* memcached's framing: the line is dropped, the value is a command. */
    const char *s = "set k x 0 5\r\nhello\r\n";
    struct proto_req r;

    cr_assert_eq(parse(s, &r), PROTO_ERROR);
    cr_assert_str_eq(r.reply, R_BAD_FORMAT);
    cr_assert_eq(r.consumed, strlen("set k x 0 5\r\n"));
    cr_assert_eq(r.swallow, 0);
    assert_line_error(s + strlen("set k x 0 5\r\n"), R_ERROR);
}

Test(proto, key_over_250_bytes_is_bad_command_line_format)
{
    char key[PROTO_MAX_KEY + 2], line[600];

    memset(key, 'k', PROTO_MAX_KEY + 1);
    key[PROTO_MAX_KEY + 1] = '\0';
    snprintf(line, sizeof(line), "set %s 0 0 5\r\n", key);
    assert_line_error(line, R_BAD_FORMAT);
    snprintf(line, sizeof(line), "get a %s b\r\n", key);
    assert_line_error(line, R_BAD_FORMAT);
    snprintf(line, sizeof(line), "gat 1 %s\r\n", key);
    assert_line_error(line, R_BAD_FORMAT);
    snprintf(line, sizeof(line), "delete %s\r\n", key);
    assert_line_error(line, R_BAD_FORMAT);
    snprintf(line, sizeof(line), "incr %s 1\r\n", key);
    assert_line_error(line, R_BAD_FORMAT);
    snprintf(line, sizeof(line), "touch %s 1\r\n", key);
    assert_line_error(line, R_BAD_FORMAT);
}

Test(proto, control_characters_in_keys_are_client_errors)
{
    static const char ctl[] = {'\0', '\x01', '\t', '\r', '\x1b', '\x7f'};
    char line[64];

    for (size_t i = 0; i < sizeof(ctl); i++) {
        int n = snprintf(line, sizeof(line), "get a%cb\r\n", 'X');

        line[5] = ctl[i];
        assert_error_n(line, n, MAX_ITEM, R_BAD_FORMAT, n, 0, false);
        n = snprintf(line, sizeof(line), "set aXb 0 0 1\r\n");
        line[5] = ctl[i];
        assert_error_n(line, n, MAX_ITEM, R_BAD_FORMAT, n, 0, false);
        n = snprintf(line, sizeof(line), "delete aXb\r\n");
        line[8] = ctl[i];
        assert_error_n(line, n, MAX_ITEM, R_BAD_FORMAT, n, 0, false);
    }
    /* "\r\r\n": only the last "\r" belongs to the terminator. */
    assert_line_error("get k\r\r\n", R_BAD_FORMAT);
}

Test(proto, binary_bytes_on_the_command_line_are_errors)
{
    static const char junk[] = "\x80\xff\x00\x01 \x02\r\n";
    static const char cmd_nul[] = "get\0 k\r\n";

    assert_error_n(junk, sizeof(junk) - 1, MAX_ITEM, R_ERROR, sizeof(junk) - 1,
                   0, false);
    assert_error_n(cmd_nul, sizeof(cmd_nul) - 1, MAX_ITEM, R_ERROR,
                   sizeof(cmd_nul) - 1, 0, false);
}

Test(proto, value_over_max_item_is_too_large_and_swallowed)
{
    struct proto_req r;
    const char *line = "set big 3 0 2000000\r\n";
    size_t n = strlen(line);

    /* Answered as soon as the line is in: the value is never buffered. */
    assert_error_n(line, n, MAX_ITEM, R_TOO_LARGE, n, 2000002, false);
    parse(line, &r);
    assert_key(r, "big");
    cr_assert_eq(r.cmd, PROTO_SET);
    cr_assert_not(r.noreply);

    parse("add big 0 0 1048577 noreply\r\n", &r);
    cr_assert_str_eq(r.reply, R_TOO_LARGE);
    cr_assert_eq(r.swallow, 1048579);
    cr_assert(r.noreply, "memcached suppresses this reply under noreply");
    assert_key(r, "big");
}

Test(proto, data_block_not_ending_in_crlf_is_bad_data_chunk)
{
    struct proto_req r;
    const char *s = "set k 0 0 3\r\nhello\r\nget a\r\n";
    size_t line = strlen("set k 0 0 3\r\n");

    /* Longer than declared: resynchronised after "hello\r\n". */
    cr_assert_eq(parse(s, &r), PROTO_ERROR);
    cr_assert_str_eq(r.reply, R_BAD_CHUNK);
    cr_assert_eq(r.consumed, line + 7);
    cr_assert_eq(r.swallow, 0);
    cr_assert_not(r.close);
    cr_assert_null(r.key);
    cr_assert_eq(parse(s + r.consumed, &r), PROTO_OK);
    cr_assert_eq(r.cmd, PROTO_GET);

    /* A bare "\n" after the data is also a bad chunk, framed by that "\n". */
    assert_error_n("set k 0 0 5\r\nhello\nget a\r\n", 26, MAX_ITEM, R_BAD_CHUNK,
                   19, 0, false);
    /* "\r" then something else. */
    assert_error_n("set k 0 0 1\r\na\rb\r\n", 18, MAX_ITEM, R_BAD_CHUNK, 18, 0,
                   false);
    /* noreply is kept: memcached suppresses this reply too. */
    cr_assert(noreply_of("set k 0 0 1 noreply\r\nab\r\n"));
}

Test(proto, bad_data_chunk_without_a_newline_closes)
{
    size_t line = strlen("set k 0 0 1\r\n");
    size_t n = line + 1 + PROTO_MAX_LINE;
    char *s = malloc(n);
    struct proto_req r;

    memcpy(s, "set k 0 0 1\r\n", line);
    memset(s + line, 'v', n - line);
    cr_assert_eq(parse_n(s, n - 1, MAX_ITEM, &r), PROTO_NEED_MORE);
    assert_error_n(s, n, MAX_ITEM, R_BAD_CHUNK, n, 0, true);
    free(s);
}

Test(proto, line_over_max_line_closes_the_connection)
{
    char *s = malloc(PROTO_MAX_LINE + 10);
    struct proto_req r;

    memcpy(s, "delete ", 7);
    memset(s + 7, 'a', PROTO_MAX_LINE + 3);
    cr_assert_eq(parse_n(s, PROTO_MAX_LINE - 1, MAX_ITEM, &r), PROTO_NEED_MORE);
    assert_error_n(s, PROTO_MAX_LINE, MAX_ITEM, R_LINE_TOO_LONG, PROTO_MAX_LINE,
                   0, true);
    assert_error_n(s, PROTO_MAX_LINE + 10, MAX_ITEM, R_LINE_TOO_LONG,
                   PROTO_MAX_LINE, 0, true);
    /* One byte over, even with its "\n" right there. */
    memcpy(s + PROTO_MAX_LINE - 1, "\r\n", 2);
    assert_error_n(s, PROTO_MAX_LINE + 1, MAX_ITEM, R_LINE_TOO_LONG,
                   PROTO_MAX_LINE, 0, true);
    free(s);
}

/* A get names many keys in one line (libmemcached's mget of 1,000 keys):
 * its line may be as long as the largest value, and no longer. */
Test(proto, get_lines_may_be_as_long_as_the_item_size_limit)
{
    const uint32_t max_item = 1000;
    size_t limit = PROTO_MAX_LINE + max_item;
    char *s = malloc(limit + 10);
    struct proto_req r;

    memcpy(s, "get ", 4);
    for (size_t i = 4; i < limit + 10; i++)
        s[i] = (i % 11 == 0) ? ' ' : 'k';
    memcpy(s + limit - 2, "\r\n", 2);
    cr_assert_eq(parse_n(s, limit, max_item, &r), PROTO_OK);
    cr_assert_eq(r.consumed, limit);
    cr_assert_gt(count_keys(&r), PROTO_MAX_LINE / 11);
    memcpy(s + limit - 2, "kk", 2);
    cr_assert_eq(parse_n(s, limit - 1, max_item, &r), PROTO_NEED_MORE);
    assert_error_n(s, limit, max_item, R_LINE_TOO_LONG, limit, 0, true);
    free(s);
}

Test(proto, invalid_incr_decr_delta_is_reported)
{
    assert_line_error("incr k x\r\n", R_BAD_DELTA);
    assert_line_error("incr k -1\r\n", R_BAD_DELTA);
    assert_line_error("incr k 1.5\r\n", R_BAD_DELTA);
    assert_line_error("decr k 18446744073709551616\r\n", R_BAD_DELTA);
    assert_line_error("decr k 99999999999999999999999999999\r\n", R_BAD_DELTA);
    cr_assert(noreply_of("incr k x noreply\r\n"));
    /* The key is checked before the delta, as in memcached. */
    assert_line_error("incr a\x01 x\r\n", R_BAD_FORMAT);
}

Test(proto, invalid_exptime_is_reported_for_touch_gat_and_flush_all)
{
    assert_line_error("touch k x\r\n", R_BAD_EXPTIME);
    assert_line_error("touch k 2147483648\r\n", R_BAD_EXPTIME);
    assert_line_error("touch k -2147483649\r\n", R_BAD_EXPTIME);
    assert_line_error("touch k 99999999999999999999999\r\n", R_BAD_EXPTIME);
    assert_line_error("gat x k\r\n", R_BAD_EXPTIME);
    assert_line_error("gats 1e3 k\r\n", R_BAD_EXPTIME);
    assert_line_error("flush_all x\r\n", R_BAD_EXPTIME);
    assert_line_error("flush_all noreply 5\r\n", R_BAD_EXPTIME);
    assert_line_error("flush_all 4294967296\r\n", R_BAD_EXPTIME);
    cr_assert(noreply_of("touch k x noreply\r\n"));
    cr_assert(noreply_of("flush_all x noreply\r\n"));
}

Test(proto, verbosity_argument_errors_are_bad_command_line_format)
{
    assert_line_error("verbosity x\r\n", R_BAD_FORMAT);
    assert_line_error("verbosity -1\r\n", R_BAD_FORMAT);
    assert_line_error("verbosity 4294967296\r\n", R_BAD_FORMAT);
    assert_line_error("verbosity noreply\r\n", R_BAD_FORMAT);
    cr_assert(noreply_of("verbosity noreply\r\n"));
}

Test(proto, delete_with_other_extra_arguments_shows_usage)
{
    assert_line_error("delete k 1\r\n", R_DELETE_USAGE);
    assert_line_error("delete k 00\r\n", R_DELETE_USAGE);
    assert_line_error("delete k x\r\n", R_DELETE_USAGE);
    assert_line_error("delete k 0 x\r\n", R_DELETE_USAGE);
    assert_line_error("delete k noreply 0\r\n", R_DELETE_USAGE);
    assert_line_error("delete k 5 noreply\r\n", R_DELETE_USAGE);
    cr_assert(noreply_of("delete k 5 noreply\r\n"));
}

Test(proto, noreply_is_kept_on_client_errors_as_memcached_suppresses_them)
{
    struct proto_req r;

    cr_assert_eq(parse("set k x 0 5 noreply\r\n", &r), PROTO_ERROR);
    cr_assert(r.noreply);
    cr_assert_eq(r.swallow, 0);
    /* memcached reads the last token, even in place of <bytes>. */
    cr_assert_eq(parse("set k 0 0 noreply\r\n", &r), PROTO_ERROR);
    cr_assert_str_eq(r.reply, R_BAD_FORMAT);
    cr_assert(r.noreply);
    cr_assert_eq(r.swallow, 0);
}

Test(proto, partial_requests_need_more)
{
    struct proto_req r;

    cr_assert_eq(parse_n("", 0, MAX_ITEM, &r), PROTO_NEED_MORE);
    cr_assert_eq(parse("get k", &r), PROTO_NEED_MORE);
    cr_assert_eq(parse("get k\r", &r), PROTO_NEED_MORE);
    cr_assert_eq(parse("set k 0 0 5\r\nhel", &r), PROTO_NEED_MORE);
    cr_assert_eq(parse("set k 0 0 5\r\nhello", &r), PROTO_NEED_MORE);
    cr_assert_eq(parse("set k 0 0 5\r\nhello\r", &r), PROTO_NEED_MORE);
    cr_assert_eq(r.consumed, 0);
}

/* ---- pipelining and splitting ---- */

/* Valid requests and malformed ones: each is one request (or one error). */
static const char *const samples[] = {
    "get foo\r\n",
    "get a b c\n",
    "gets a b\r\n",
    "gat 10 a b\r\n",
    "gats 0 x\r\n",
    "set k 1 2 5\r\nhello\r\n",
    "set k 1 2 5 noreply\r\nhe\r\no\r\n",
    "add k 0 0 0\r\n\r\n",
    "replace k 0 0 1\r\n\n\r\n",
    "append k 0 0 2\r\n\r\n\r\n",
    "prepend k 0 0 3 noreply\r\n\0\1\2\r\n",
    "cas k 0 0 2 99\r\nab\r\n",
    "cas k 0 0 2 99 noreply\r\nab\r\n",
    "incr k 1\r\n",
    "decr k 2 noreply\r\n",
    "delete k\r\n",
    "delete k 0 noreply\r\n",
    "touch k 10\r\n",
    "flush_all\r\n",
    "flush_all 5 noreply\r\n",
    "verbosity 1\r\n",
    "version\r\n",
    "stats\r\n",
    "stats slabs\r\n",
    "quit\r\n",
    /* errors */
    "bogus\r\n",
    "\r\n",
    "get\r\n",
    "set k 0 0 -1\r\n",
    "set k x 0 3\r\n",
    "set k 0 0 2000000\r\n",
    "set k 0 0 3\r\nhello\r\n",
    "set k 0 0 3\r\nabc\n",
    "incr k x\r\n",
    "touch k x\r\n",
    "delete k 1\r\n",
    "verbosity x\r\n",
    "flush_all x\r\n",
    "gat x k\r\n",
};
#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

/* Sample lengths: some hold NUL bytes. */
static size_t
sample_len(size_t i)
{
    const char *s = samples[i];

    if (strncmp(s, "prepend", 7) == 0)
        return strlen("prepend k 0 0 3 noreply\r\n") + 5;
    return strlen(s);
}

Test(proto, set_split_at_every_byte_parses_identically)
{
    cr_assert_eq(check_split_str("set foo 7 0 10\r\nhello\r\nwor\r\n"),
                 PROTO_OK);
    cr_assert_eq(check_split_str("set foo 7 0 5 noreply\nhello\r\n"), PROTO_OK);
}

Test(proto, every_request_split_at_every_byte_parses_identically)
{
    for (size_t i = 0; i < NSAMPLES; i++) {
        int rc = check_split(samples[i], sample_len(i), MAX_ITEM);

        cr_assert_neq(rc, PROTO_NEED_MORE, "sample %zu", i);
    }
}

Test(proto, over_long_line_split_at_every_byte_errors_at_max_line)
{
    char *s = malloc(PROTO_MAX_LINE + 64);

    memset(s, 'x', PROTO_MAX_LINE + 64);
    cr_assert_eq(check_split(s, PROTO_MAX_LINE + 64, MAX_ITEM), PROTO_ERROR);
    free(s);
}

Test(proto, pipelined_requests_parse_one_after_another)
{
    size_t total = 0, lens[NSAMPLES], pos = 0;
    char *buf;
    struct proto_req r;

    for (size_t i = 0; i < NSAMPLES; i++) {
        lens[i] = sample_len(i);
        total += lens[i];
    }
    buf = malloc(total);
    for (size_t i = 0; i < NSAMPLES; i++) {
        memcpy(buf + pos, samples[i], lens[i]);
        pos += lens[i];
    }
    pos = 0;
    for (size_t i = 0; i < NSAMPLES; i++) {
        struct proto_req alone;
        char *one = dup_exact(samples[i], lens[i]);
        int rc_alone = proto_parse(one, lens[i], MAX_ITEM, &alone);
        int rc = proto_parse(buf + pos, total - pos, MAX_ITEM, &r);
        char what[32];

        snprintf(what, sizeof(what), "request %zu", i);
        cr_assert_eq(r.consumed, lens[i], "%s: consumed %zu, not %zu", what,
                     r.consumed, lens[i]);
        assert_same(rc, &r, buf + pos, rc_alone, &alone, one, what);
        /* The too-large error asks to swallow bytes that are not sent here. */
        pos += r.consumed;
        free(one);
    }
    cr_assert_eq(pos, total);
    cr_assert_eq(proto_parse(buf + pos, 0, MAX_ITEM, &r), PROTO_NEED_MORE);
    free(buf);
}

Test(proto, pipelined_gets_after_a_too_large_value_resume_after_swallow)
{
    /* The caller drops consumed, then swallow bytes, then parses on. */
    const char *s = "set k 0 0 20\r\n01234567890123456789\r\nget k\r\n";
    size_t n = strlen(s);
    struct proto_req r;

    cr_assert_eq(parse_n(s, n, 10, &r), PROTO_ERROR);
    cr_assert_str_eq(r.reply, R_TOO_LARGE);
    cr_assert_eq(r.consumed + r.swallow, n - strlen("get k\r\n"));
    cr_assert_eq(parse(s + r.consumed + r.swallow, &r), PROTO_OK);
    cr_assert_eq(r.cmd, PROTO_GET);
}

/* ---- fuzz ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t
rng(void)
{
    /* xorshift64*: fixed seed, so every run sees the same inputs. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static const char special[] = " \r\n0123456789-+\0\x7f\xff"
                              "noreplyk";

static size_t
mutate(char *buf, size_t n, size_t cap)
{
    int rounds = 1 + (int)(rng() % 4);

    for (int i = 0; i < rounds; i++) {
        size_t at = n ? rng() % n : 0;

        switch (rng() % 8) {
        case 0: /* random byte */
            if (n)
                buf[at] = (char)rng();
            break;
        case 1: /* a byte that matters to the grammar */
            if (n)
                buf[at] = special[rng() % (sizeof(special) - 1)];
            break;
        case 2: /* insert */
            if (n < cap) {
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = special[rng() % (sizeof(special) - 1)];
                n++;
            }
            break;
        case 3: /* delete */
            if (n) {
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
            }
            break;
        case 4: /* truncate */
            n = at;
            break;
        case 5: { /* append another request */
            size_t j = rng() % NSAMPLES, l = sample_len(j);

            if (n + l <= cap) {
                memcpy(buf + n, samples[j], l);
                n += l;
            }
            break;
        }
        case 6: { /* a run of digits: overflowing numbers */
            size_t run = rng() % 30;

            if (n + run <= cap) {
                memmove(buf + at + run, buf + at, n - at);
                for (size_t k = 0; k < run; k++)
                    buf[at + k] = (char)('0' + rng() % 10);
                n += run;
            }
            break;
        }
        default: /* duplicate a slice */
            if (n && n < cap) {
                size_t l = rng() % (n - at) + 1;

                if (n + l > cap)
                    l = cap - n;
                memmove(buf + at + l, buf + at, n - at);
                n += l;
            }
            break;
        }
    }
    return n;
}

static bool
inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p == NULL ||
           (p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n));
}

static void
check_invariants(const char *buf, size_t len, int rc, const struct proto_req *r)
{
    cr_assert(rc == PROTO_ERROR || rc == PROTO_NEED_MORE || rc == PROTO_OK,
              "rc %d", rc);
    cr_assert_leq(r->consumed, len);
    if (rc == PROTO_NEED_MORE) {
        cr_assert_eq(r->consumed, 0);
        return;
    }
    cr_assert_gt(r->consumed, 0);
    cr_assert(inside(r->key, r->klen, buf, r->consumed));
    cr_assert(inside(r->keys, r->keys_len, buf, r->consumed));
    cr_assert(inside(r->arg, r->arg_len, buf, r->consumed));
    if (rc == PROTO_ERROR) {
        size_t n;

        cr_assert_not_null(r->reply);
        n = strlen(r->reply);
        cr_assert(n >= 2 && memcmp(r->reply + n - 2, "\r\n", 2) == 0);
        if (r->swallow) {
            cr_assert_str_eq(r->reply, R_TOO_LARGE);
            cr_assert(r->cmd >= PROTO_SET && r->cmd <= PROTO_CAS);
            cr_assert(r->key != NULL && r->bytes > MAX_ITEM);
            cr_assert_eq(r->swallow, (uint64_t)r->bytes + 2);
        }
        return;
    }
    cr_assert_null(r->reply);
    cr_assert_lt((int)r->cmd, PROTO_NCMDS);
    cr_assert_eq(r->swallow, 0);
    cr_assert_not(r->close);
    if (r->cmd >= PROTO_SET && r->cmd <= PROTO_CAS) {
        cr_assert_not_null(r->data);
        cr_assert(inside(r->data, (size_t)r->bytes + 2, buf, r->consumed));
        cr_assert_eq(r->data + r->bytes + 2, buf + r->consumed);
        cr_assert_leq(r->bytes, MAX_ITEM);
    }
    if (r->key)
        cr_assert(r->klen >= 1 && r->klen <= PROTO_MAX_KEY);
    if (r->cmd <= PROTO_GATS) {
        size_t pos = 0, klen, nkeys = 0;
        const char *key;

        while (proto_next_key(r, &pos, &key, &klen)) {
            cr_assert(inside(key, klen, buf, r->consumed));
            cr_assert(klen >= 1 && klen <= PROTO_MAX_KEY);
            for (size_t i = 0; i < klen; i++)
                cr_assert((unsigned char)key[i] > ' ' && key[i] != 0x7f);
            nkeys++;
        }
        cr_assert_gt(nkeys, 0);
    }
}

Test(proto, random_mutations_never_break_the_invariants)
{
    enum { CAP = 512, ROUNDS = 200000 };
    char work[CAP];

    for (int round = 0; round < ROUNDS; round++) {
        size_t j = rng() % NSAMPLES, n = sample_len(j), pos = 0;
        char *buf;

        memcpy(work, samples[j], n);
        n = mutate(work, n, CAP);
        buf = dup_exact(work, n);
        /* Parse the whole buffer as a pipeline; every step must progress. */
        while (pos < n) {
            struct proto_req r;
            int rc = proto_parse(buf + pos, n - pos, MAX_ITEM, &r);

            check_invariants(buf + pos, n - pos, rc, &r);
            if (rc == PROTO_NEED_MORE || r.close)
                break;
            pos += r.consumed;
            pos += r.swallow < n - pos ? (size_t)r.swallow : n - pos;
        }
        if (round % 200 == 0)
            check_split(work, n, MAX_ITEM);
        free(buf);
    }
}
