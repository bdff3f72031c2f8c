/*
 * fuzz_binary: memcached's binary protocol parser (src/net/binary.h) over
 * arbitrary bytes, pipelined as a connection feeds it (src/net/conn.c):
 * parse requests one after another until it needs more bytes, drop what an
 * error says to drop (consumed, then swallow), stop at a close.
 *
 * Input: byte 0 picks max_item (the table below), bytes 1-2 a split point,
 * the rest is the stream. Checked, per binary.h's contract:
 *   - a parsed request: consumed is the header and its body length, within
 *     what was given; the command is one of the table's and its opcode;
 *     extras, key and value lie inside the request, in that order, with
 *     the lengths the opcode allows (key 1..PROTO_MAX_KEY when required,
 *     none when refused, a value only where the opcode takes one, at most
 *     max_item bytes);
 *   - an error: consumed within what was given and never 0, a status with
 *     a body text of memcached's (or UNKNOWN_COMMAND's), E2BIG swallows
 *     exactly the value, UNKNOWN_COMMAND the body;
 *   - BIN_NEED_MORE never comes with more bytes pending than a header,
 *     extras, a key and a value of max_item, so a client cannot make the
 *     server buffer without bound;
 *   - differential: the stream fed whole and fed in two pieces (a caller
 *     that keeps unconsumed bytes and calls again, carrying a swallow over)
 *     gives the same sequence of results, commands, statuses and keys.
 */
#include "fuzz.h"
#include "net/binary.h"
#include "net/proto.h"

static const uint32_t max_items[8] = {1u << 20, 0,    1,    5,
                                      100,      1000, 8192, UINT32_MAX};

#define MAX_EVENTS 4096

struct event {
    int rc;
    int cmd;
    uint8_t opcode;
    uint16_t status;
    size_t consumed;
    uint64_t swallow;
    uint32_t vlen;
    uint16_t klen;
    uint32_t key_hash;
};

struct run {
    struct event ev[MAX_EVENTS];
    size_t n;
};

static int
inside(const char *buf, size_t n, const char *p, size_t len)
{
    return p >= buf && p <= buf + n && len <= (size_t)(buf + n - p);
}

static uint32_t
hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static void
check_parsed(const char *p, size_t left, uint32_t max_item,
             const struct bin_req *r)
{
    FUZZ_CHECK(r->cmd < BIN_NCMDS);
    FUZZ_CHECK(strcmp(bin_cmd_name(r->cmd), "unknown") != 0);
    FUZZ_CHECK(r->opcode == (uint8_t)p[1]);
    FUZZ_CHECK(r->consumed == BIN_HEADER + (size_t)r->bodylen);
    FUZZ_CHECK(r->consumed <= left);
    FUZZ_CHECK(r->status == 0 && r->swallow == 0 && !r->close);
    size_t head = (size_t)r->extlen + r->klen;
    FUZZ_CHECK(head + r->vlen == r->bodylen);
    FUZZ_CHECK(r->klen <= PROTO_MAX_KEY);
    FUZZ_CHECK((r->key == NULL) == (r->klen == 0));
    if (r->key)
        FUZZ_CHECK(r->key == p + BIN_HEADER + r->extlen);
    FUZZ_CHECK(r->value == p + BIN_HEADER + head);
    FUZZ_CHECK(inside(p, r->consumed, r->value, r->vlen));
    FUZZ_CHECK(r->vlen <= max_item);
    if (!(bin_cmd_attrs(r->cmd) & BIN_A_VALUE))
        FUZZ_CHECK(r->vlen == 0);
}

static void
check_error(size_t left, const struct bin_req *r)
{
    FUZZ_CHECK(r->consumed > 0 && r->consumed <= left);
    FUZZ_CHECK(r->status != 0);
    FUZZ_CHECK(bin_status_text(r->status)[0] != '\0');
    if (r->status == BIN_E2BIG) {
        FUZZ_CHECK(r->swallow == r->vlen && !r->close);
        FUZZ_CHECK(r->consumed == BIN_HEADER + (size_t)r->extlen + r->klen);
    } else if (r->status == BIN_UNKNOWN_COMMAND) {
        FUZZ_CHECK(r->swallow == r->bodylen && !r->close);
        FUZZ_CHECK(r->consumed == BIN_HEADER);
    } else {
        FUZZ_CHECK(r->status == BIN_EINVAL && r->close);
        FUZZ_CHECK(r->swallow == 0);
    }
}

/* Feed the stream in pieces (cut at the offsets in cuts), as conn.c does;
 * record what the parser says. */
static void
feed(const char *data, size_t size, const size_t *cuts, size_t ncuts,
     uint32_t max_item, struct run *out)
{
    char *buf = malloc(size ? size : 1);
    size_t len = 0, prev = 0;
    uint64_t swallow = 0;
    bool closed = false;
    out->n = 0;
    for (size_t c = 0; c <= ncuts && !closed; c++) {
        size_t end = c < ncuts ? cuts[c] : size;
        const char *chunk = data + prev;
        size_t n = end - prev;
        prev = end;
        size_t skip = swallow < n ? (size_t)swallow : n;
        chunk += skip;
        n -= skip;
        swallow -= skip;
        memcpy(buf + len, chunk, n);
        len += n;
        size_t off = 0;
        while (off < len) {
            struct bin_req r;
            int rc = bin_parse(buf + off, len - off, max_item, &r);
            if (rc == BIN_NEED_MORE) {
                size_t pend = len - off;
                FUZZ_CHECK(pend < BIN_HEADER ||
                           pend < BIN_HEADER + (size_t)r.bodylen);
                FUZZ_CHECK(pend < BIN_HEADER + 20 + PROTO_MAX_KEY +
                                      (uint64_t)max_item);
                break;
            }
            FUZZ_CHECK(rc == BIN_PARSED || rc == BIN_ERROR);
            if (rc == BIN_PARSED)
                check_parsed(buf + off, len - off, max_item, &r);
            else
                check_error(len - off, &r);
            if (out->n < MAX_EVENTS)
                out->ev[out->n++] =
                    (struct event){.rc = rc,
                                   .cmd = (int)r.cmd,
                                   .opcode = r.opcode,
                                   .status = r.status,
                                   .consumed = r.consumed,
                                   .swallow = r.swallow,
                                   .vlen = r.vlen,
                                   .klen = r.key ? r.klen : 0,
                                   .key_hash = r.key ? hash(r.key, r.klen) : 0};
            off += r.consumed;
            if (rc == BIN_ERROR) {
                if (r.close) {
                    closed = true;
                    break;
                }
                size_t k =
                    r.swallow < len - off ? (size_t)r.swallow : len - off;
                off += k;
                swallow = r.swallow - k;
            }
        }
        memmove(buf, buf + off, len - off);
        len -= off;
    }
    free(buf);
}

static int
same(const struct event *a, const struct event *b)
{
    return a->rc == b->rc && a->cmd == b->cmd && a->opcode == b->opcode &&
           a->status == b->status && a->consumed == b->consumed &&
           a->swallow == b->swallow && a->vlen == b->vlen &&
           a->klen == b->klen && a->key_hash == b->key_hash;
}

static struct run whole, split;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint32_t max_item = max_items[data[0] & 7];
    const char *p = (const char *)data + 3;
    size_t left = size - 3;
    size_t cut = left ? (size_t)fuzz_le(data + 1, 2) % (left + 1) : 0;

    feed(p, left, NULL, 0, max_item, &whole);
    feed(p, left, &cut, 1, max_item, &split);
    FUZZ_CHECK(whole.n == split.n);
    for (size_t i = 0; i < whole.n; i++)
        FUZZ_CHECK(same(&whole.ev[i], &split.ev[i]));
    return 0;
}
