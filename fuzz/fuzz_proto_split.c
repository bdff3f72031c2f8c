/*
 * fuzz_proto_split: the parser's view of a pipelined byte stream is the
 * same whether the bytes arrive whole or in pieces. proto_parse() keeps no
 * state between calls, so a caller that keeps the unconsumed bytes and
 * calls again when more arrive (src/net/conn.c) must see the same requests:
 * PROTO_NEED_MORE may only mean that more bytes could change the answer.
 *
 * Input: byte 0 picks max_item (as fuzz_proto), bytes 1-2 and 3-4 two split
 * points (modulo the stream's length), the rest is the stream. It is fed
 * once whole and once as three pieces cut at those points; the sequences of
 * (result, cmd, consumed, key, and every other field, as offsets into the
 * request; a meta command's flags and decoded key) must be equal, and so
 * must what is left pending at the end. The request struct holds a
 * different byte pattern before each call in the two runs, so a field the
 * parser forgets to set shows as a difference too.
 * The caller is conn.c's: after an error it drops `consumed`, then
 * `swallow` more bytes as they arrive, and stops at `close`.
 */
#include "fuzz.h"
#include "net/proto.h"

static const uint32_t max_items[8] = {1u << 20, 0,    1,    5,
                                      100,      1000, 8192, UINT32_MAX};

/* One parsed request; pointers as offsets from its first byte (-1: NULL;
 * KEY_IN_META: a meta command's decoded key, compared by its bytes). */
#define KEY_IN_META (-2)
struct event {
    int rc;
    int cmd;
    size_t consumed;
    long key, keys, data, arg;
    size_t klen, keys_len, arg_len;
    uint32_t flags, bytes, level;
    int64_t exptime, delay;
    uint64_t cas, delta, swallow;
    const char *reply;
    int err, noreply, close;
    uint64_t meta; /* meta commands: a digest of their flags and key */
};

struct caller {
    uint8_t garbage; /* what req holds before each call: whole and split
                        differ, so a field the parser leaves unset shows */
    char *pend; /* exactly pend_len bytes, so ASan sees any read past them */
    size_t pend_len;
    uint64_t swallow;
    int closed;
    struct event *ev;
    size_t nev, cap;
};

static long
rel(const char *base, const char *p)
{
    return p ? (long)(p - base) : -1;
}

#ifdef PROTO_A_META
static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ull;
    return h;
}

/* What a meta command's handler reads of req.meta (and a decoded key). */
static uint64_t
meta_digest(const struct proto_req *r)
{
    const struct proto_meta *m = &r->meta;
    struct {
        uint64_t has, cas, cas_new, initial, delta;
        int64_t ttl, vivify_ttl, recache_ttl;
        uint32_t client_flags;
        uint8_t n, olen, b64, too_long;
        char mode;
    } f;
    memset(&f, 0, sizeof(f)); /* padding too */
    f.has = m->has;
    f.cas = m->cas;
    f.cas_new = m->cas_new;
    f.initial = m->initial;
    f.delta = m->delta;
    f.ttl = m->ttl;
    f.vivify_ttl = m->vivify_ttl;
    f.recache_ttl = m->recache_ttl;
    f.client_flags = m->client_flags;
    f.n = m->ret.n;
    f.olen = m->ret.olen;
    f.b64 = m->ret.b64;
    f.too_long = m->opaque_too_long;
    f.mode = m->mode;
    uint64_t h = fnv(0xcbf29ce484222325ull, &f, sizeof(f));
    h = fnv(h, m->ret.flags, m->ret.n <= sizeof(m->ret.flags) ? m->ret.n : 0);
    h = fnv(h, m->ret.opaque,
            m->ret.olen <= sizeof(m->ret.opaque) ? m->ret.olen : 0);
    if (r->key == m->key)
        h = fnv(h, r->key, r->klen <= sizeof(m->key) ? r->klen : 0);
    return h;
}
#endif

static void
record(struct caller *c, const char *p, int rc, const struct proto_req *r)
{
    if (c->nev == c->cap) { /* kept from one input to the next */
        c->cap = c->cap ? 2 * c->cap : 256;
        c->ev = realloc(c->ev, c->cap * sizeof(*c->ev));
        FUZZ_CHECK(c->ev != NULL);
    }
    struct event *e = &c->ev[c->nev++];
    *e = (struct event){
        .rc = rc,
        .cmd = (int)r->cmd,
        .consumed = r->consumed,
        .key = rel(p, r->key),
        .keys = rel(p, r->keys),
        .data = rel(p, r->data),
        .arg = rel(p, r->arg),
        .klen = r->klen,
        .keys_len = r->keys_len,
        .arg_len = r->arg_len,
        .flags = r->flags,
        .bytes = r->bytes,
        .level = r->level,
        .exptime = r->exptime,
        .delay = r->delay,
        .cas = r->cas,
        .delta = r->delta,
        .swallow = r->swallow,
        .reply = r->reply,
        .err = (int)r->err,
        .noreply = r->noreply,
        .close = r->close,
    };
#ifdef PROTO_A_META
    /* mn takes no flags: its parser leaves req.meta as it was (garbage
     * here) and cmd_mn reads none of it */
    if ((proto_cmd_attrs(r->cmd) & PROTO_A_META) && r->cmd != PROTO_MN) {
        e->meta = meta_digest(r);
        if (r->key == r->meta.key)
            e->key = KEY_IN_META; /* its bytes are in the digest */
    }
#endif
}

/* More bytes arrive: drop what is being swallowed, keep the rest, parse. */
static void
feed(struct caller *c, const char *bytes, size_t n, uint32_t max_item)
{
    if (c->closed)
        return;
    size_t skip = c->swallow < n ? (size_t)c->swallow : n;
    bytes += skip;
    n -= skip;
    c->swallow -= skip;
    if (n == 0)
        return;

    char *buf = malloc(c->pend_len + n);
    FUZZ_CHECK(buf != NULL);
    if (c->pend_len)
        memcpy(buf, c->pend, c->pend_len);
    memcpy(buf + c->pend_len, bytes, n);
    free(c->pend);
    size_t len = c->pend_len + n, off = 0;

    while (off < len) {
        struct proto_req req;
        memset(&req, c->garbage, sizeof(req));
        int rc = proto_parse(buf + off, len - off, max_item, &req);
        if (rc == PROTO_NEED_MORE)
            break;
        FUZZ_CHECK(req.consumed > 0 && req.consumed <= len - off);
        record(c, buf + off, rc, &req);
        off += req.consumed;
        if (rc == PROTO_ERROR) {
            uint64_t k = req.swallow < len - off ? req.swallow : len - off;
            off += (size_t)k;
            c->swallow = req.swallow - k;
            if (req.close) {
                c->closed = 1;
                off = len;
                break;
            }
        }
    }
    c->pend_len = len - off;
    c->pend = malloc(c->pend_len ? c->pend_len : 1);
    FUZZ_CHECK(c->pend != NULL);
    memcpy(c->pend, buf + off, c->pend_len);
    free(buf);
}

static int
event_eq(const struct event *a, const struct event *b)
{
    return a->meta == b->meta && a->rc == b->rc && a->cmd == b->cmd &&
           a->consumed == b->consumed && a->key == b->key &&
           a->klen == b->klen && a->keys == b->keys &&
           a->keys_len == b->keys_len && a->data == b->data &&
           a->arg == b->arg && a->arg_len == b->arg_len &&
           a->flags == b->flags && a->bytes == b->bytes &&
           a->level == b->level && a->exptime == b->exptime &&
           a->delay == b->delay && a->cas == b->cas && a->delta == b->delta &&
           a->swallow == b->swallow && a->reply == b->reply &&
           a->err == b->err && a->noreply == b->noreply && a->close == b->close;
}

static void
report(const struct caller *whole, const struct caller *split, size_t i)
{
    const struct event *e[2] = {i < whole->nev ? &whole->ev[i] : NULL,
                                i < split->nev ? &split->ev[i] : NULL};
    const char *name[2] = {"whole", "split"};
    fprintf(stderr, "request %zu differs (whole: %zu requests, split: %zu)\n",
            i, whole->nev, split->nev);
    for (int k = 0; k < 2; k++) {
        if (!e[k]) {
            fprintf(stderr, "  %s: none\n", name[k]);
            continue;
        }
        fprintf(stderr, "  %s: rc %d cmd %s consumed %zu key %ld+%zu reply %s",
                name[k], e[k]->rc, proto_cmd_name((enum proto_cmd)e[k]->cmd),
                e[k]->consumed, e[k]->key, e[k]->klen,
                e[k]->reply ? e[k]->reply : "-\n");
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    uint32_t max_item = max_items[data[0] & 7];
    const char *s = (const char *)data + 5;
    size_t n = size - 5;
    size_t a = (size_t)fuzz_le(data + 1, 2) % (n + 1);
    size_t b = (size_t)fuzz_le(data + 3, 2) % (n + 1);
    if (a > b) {
        size_t t = a;
        a = b;
        b = t;
    }

    static struct caller whole = {.garbage = 0xa5}, split = {.garbage = 0x5a};
    whole.nev = split.nev = 0;
    whole.pend_len = split.pend_len = 0;
    whole.swallow = split.swallow = 0;
    whole.closed = split.closed = 0;

    feed(&whole, s, n, max_item);
    feed(&split, s, a, max_item);
    feed(&split, s + a, b - a, max_item);
    feed(&split, s + b, n - b, max_item);

    for (size_t i = 0; i < whole.nev || i < split.nev; i++) {
        if (i >= whole.nev || i >= split.nev ||
            !event_eq(&whole.ev[i], &split.ev[i])) {
            report(&whole, &split, i);
            FUZZ_CHECK(!"the same stream parses differently in pieces");
        }
    }
    FUZZ_CHECK(whole.pend_len == split.pend_len);
    FUZZ_CHECK(whole.swallow == split.swallow);
    FUZZ_CHECK(whole.closed == split.closed);

    free(whole.pend);
    free(split.pend);
    whole.pend = split.pend = NULL;
    return 0;
}
