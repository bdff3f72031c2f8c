/*
 * cmd_meta.c: the meta commands (mg ms md ma mn me) executed against the
 * engine. meta.c parsed the flags; the engine (src/log/item.c) holds every
 * rule (vivify, recache, stale, win tokens, client cas); this file maps a
 * request to one store call and its outcome to one reply, rendered from a
 * descriptor (out.h: struct out_meta) with a policy:
 *
 *   command  codes          shows (return flags)   q hides
 *   mg       VA HD EN       s t c f l h O k Z X W  EN
 *   ms       HD NS EX NF    O k c s                HD
 *   md       HD NF EX       O k                    HD
 *   ma       VA HD NF EX    c t O k                HD and VA
 *   mn       MN             -                      -
 *   me       ME EN          -                      -
 *
 * Errors (CLIENT_ERROR, SERVER_ERROR) are always sent. A write's reply
 * waits for its ack like every write's (cmd_hold), and a quiet one still
 * holds the replies behind it until it is durable.
 *
 * An mg that shows f or l, or returns the value, is answered once the
 * record is read (out_start_read); any other mg from the index alone.
 */
#include "net/net_int.h"

#include <string.h>

static bool
has(const struct proto_req *req, char flag)
{
    return (req->meta.has & PROTO_MF(flag)) != 0;
}

static enum out_policy
quiet_policy(const struct proto_req *req)
{
    return has(req, 'q') ? OUT_ON_FAILURE : OUT_ALWAYS;
}

static struct out_meta
describe(const struct proto_req *req, enum out_code code, uint64_t show)
{
    return (struct out_meta){.code = (uint8_t)code,
                             .show = show,
                             .ret = &req->meta.ret,
                             .key = req->key,
                             .klen = req->klen};
}

/* A reply rendered now; held for ack (0: none) and sent as policy says. */
static void
meta_reply(struct conn *c, const struct out_meta *m, uint64_t ack,
           enum out_policy policy)
{
    char line[OUT_META_LINE_MAX(PROTO_MAX_KEY)];
    uint32_t now = out_meta_needs_clock(m) ? store_now(c->w->net->store) : 0;
    size_t n = out_meta_line(line, m, now);
    cmd_hold(c, ack, line, n, policy);
}

/* A status the command has no code for: the store's failure, always sent. */
static void
meta_failure(struct conn *c, int rc)
{
    char buf[512];
    out_text(c, buf, cmd_status_text(c->w->net->store, rc, buf, sizeof(buf)));
}

#define MG_SHOWS                                                               \
    (PROTO_MF('s') | PROTO_MF('t') | PROTO_MF('c') | PROTO_MF('f') |           \
     PROTO_MF('l') | PROTO_MF('h') | PROTO_MF('O') | PROTO_MF('k'))
#define KEY_SHOWS (PROTO_MF('O') | PROTO_MF('k'))

bool
cmd_mg(struct conn *c, const struct proto_req *req)
{
    struct worker *w = c->w;
    store_t *s = w->net->store;
    const struct proto_meta *m = &req->meta;
    bool touch = has(req, 'T');
    bool read = has(req, 'v') || has(req, 'f') || has(req, 'l');
    struct store_mget q = {.key = req->key,
                           .klen = req->klen,
                           .touch = touch,
                           .exptime = m->ttl,
                           .vivify = has(req, 'N'),
                           .vivify_exptime = m->vivify_ttl,
                           .recache = has(req, 'R'),
                           .recache_ttl = m->recache_ttl,
                           .cas_new = m->cas_new,
                           .no_bump = has(req, 'u'),
                           .no_record = !read};
    struct store_mget_res res;
    int rc = store_mget(s, &q, &res);
    if (rc != 0 && rc != STORE_NOT_FOUND) {
        meta_failure(c, rc);
        return true;
    }
    cmd_count_read(w, touch ? CMD_READ_TOUCH : CMD_READ_GET, rc, res.miss);
    if (rc == STORE_NOT_FOUND) {
        if (!has(req, 'q')) {
            struct out_meta d = describe(req, OUT_EN, KEY_SHOWS);
            meta_reply(c, &d, 0, OUT_ALWAYS);
        }
        return true;
    }
    /* the vivify or touch is a write: nothing of this reply before it is
     * durable */
    if (res.ack)
        cmd_hold(c, res.ack, "", 0, OUT_NEVER);
    /* C: the client has this version already, so no value */
    bool value = has(req, 'v') && !(has(req, 'C') && res.cas == m->cas);
    struct out_meta d = describe(req, value ? OUT_VA : OUT_HD, MG_SHOWS);
    d.cas = res.cas;
    d.exptime = res.exptime;
    d.vlen = res.vlen;
    d.fetched = res.hit_before;
    d.stale = res.stale;
    d.won = res.won;
    d.token_out = res.token_out;
    if (read)
        out_start_read(c, &res.loc, req->key, req->klen, false, &d);
    else
        meta_reply(c, &d, 0, OUT_ALWAYS);
    return true;
}

bool
cmd_ms(struct conn *c, const struct proto_req *req)
{
    static const enum store_mode modes[128] = {
        [0] = STORE_SET,      ['S'] = STORE_SET,     ['E'] = STORE_ADD,
        ['A'] = STORE_APPEND, ['P'] = STORE_PREPEND, ['R'] = STORE_REPLACE,
    };
    struct worker *w = c->w;
    const struct proto_meta *m = &req->meta;
    enum store_mode mode = modes[(unsigned char)m->mode & 127];
    bool compare = has(req, 'C');
    /* memcached: set and replace with a cas are cas; the others compare */
    if (compare && (mode == STORE_SET || mode == STORE_REPLACE))
        mode = STORE_CAS;
    bool append = mode == STORE_APPEND || mode == STORE_PREPEND;
    struct store_req sr = {.key = req->key,
                           .klen = req->klen,
                           .mode = mode,
                           .val = req->data,
                           .vlen = req->bytes,
                           .flags = m->client_flags,
                           .exptime = m->ttl,
                           .cas_in = m->cas,
                           .has_cas = compare,
                           .stale_ok = has(req, 'I') && mode == STORE_CAS,
                           .cas_new = m->cas_new,
                           .cas_below = m->cas_below,
                           .has_below = has(req, 'V'),
                           .vivify = has(req, 'N') && append,
                           .vivify_exptime = m->vivify_ttl};
    struct store_write wr = {0};
    int rc = store_set(w->net->store, &sr, &wr);
    CNT_INC(w, cmd_set);
    cmd_count_store(w, rc);
    enum out_code code;
    switch (rc) {
    case 0:
        CNT_INC(w, total_items);
        code = OUT_HD;
        break;
    case STORE_NOT_STORED:
        code = OUT_NS;
        break;
    case STORE_EXISTS:
        code = OUT_EX;
        break;
    case STORE_NOT_FOUND:
        code = OUT_NF;
        break;
    default:
        meta_failure(c, rc);
        return true;
    }
    if (mode == STORE_CAS)
        cmd_count_cas(w, rc);
    struct out_meta d =
        describe(req, code, KEY_SHOWS | PROTO_MF('c') | PROTO_MF('s'));
    d.cas = wr.cas;
    d.vlen = rc == 0 ? wr.vlen : req->bytes;
    meta_reply(c, &d, wr.ack, rc == 0 ? quiet_policy(req) : OUT_ALWAYS);
    return true;
}

bool
cmd_md(struct conn *c, const struct proto_req *req)
{
    struct worker *w = c->w;
    const struct proto_meta *m = &req->meta;
    struct store_del q = {.key = req->key,
                          .klen = req->klen,
                          .cas_in = m->cas,
                          .has_cas = has(req, 'C'),
                          .cas_new = m->cas_new,
                          .invalidate = has(req, 'I'),
                          .has_ttl = has(req, 'T'),
                          .exptime = m->ttl,
                          .empty_value = has(req, 'x'),
                          .flags = m->client_flags};
    struct store_write wr = {0};
    int rc = store_delete(w->net->store, &q, &wr);
    enum out_code code;
    switch (rc) {
    case 0:
        CNT_INC(w, delete_hits);
        code = OUT_HD;
        break;
    case STORE_NOT_FOUND:
        CNT_INC(w, delete_misses);
        code = OUT_NF;
        break;
    case STORE_EXISTS:
        CNT_INC(w, delete_misses);
        code = OUT_EX;
        break;
    default:
        meta_failure(c, rc);
        return true;
    }
    struct out_meta d = describe(req, code, KEY_SHOWS);
    meta_reply(c, &d, wr.ack, rc == 0 ? quiet_policy(req) : OUT_ALWAYS);
    return true;
}

bool
cmd_ma(struct conn *c, const struct proto_req *req)
{
    struct worker *w = c->w;
    const struct proto_meta *m = &req->meta;
    bool incr = m->mode != 'D' && m->mode != '-';
    struct store_arith_req q = {.key = req->key,
                                .klen = req->klen,
                                .incr = incr,
                                .delta = m->delta,
                                .cas_in = m->cas,
                                .has_cas = has(req, 'C'),
                                .cas_new = m->cas_new,
                                .vivify = has(req, 'N'),
                                .vivify_exptime = m->vivify_ttl,
                                .initial = m->initial,
                                .touch = has(req, 'T'),
                                .exptime = m->ttl};
    struct store_arith_res res = {0};
    struct store_write wr = {0};
    int rc = store_arith(w->net->store, &q, &res, &wr);
    cmd_count_arith(w, incr, rc, res.created);
    enum out_code code;
    uint64_t show = KEY_SHOWS;
    switch (rc) {
    case 0:
        code = has(req, 'v') ? OUT_VA : OUT_HD;
        show |= PROTO_MF('c') | PROTO_MF('t');
        break;
    case STORE_NOT_FOUND:
        code = OUT_NF;
        break;
    case STORE_EXISTS:
        code = OUT_EX;
        break;
    default: /* non-numeric, the store's failures */
        meta_failure(c, rc);
        return true;
    }
    char text[OUT_META_LINE_MAX(PROTO_MAX_KEY) + NET_U64_DIGITS + 2];
    char number[NET_U64_DIGITS];
    size_t digits = net_fmt_u64(number, res.value);
    struct out_meta d = describe(req, code, show);
    d.cas = res.cas;
    d.exptime = res.exptime;
    d.vlen = (uint32_t)digits;
    size_t n = out_meta_line(
        text, &d, out_meta_needs_clock(&d) ? store_now(w->net->store) : 0);
    if (code == OUT_VA) {
        memcpy(text + n, number, digits);
        memcpy(text + n + digits, "\r\n", 2);
        n += digits + 2;
    }
    cmd_hold(c, wr.ack, text, n, rc == 0 ? quiet_policy(req) : OUT_ALWAYS);
    return true;
}

bool
cmd_mn(struct conn *c, const struct proto_req *req)
{
    (void)req;
    out_str(c, "MN\r\n");
    return true;
}

/* me: memcached's debug view of one item; it does not count as a fetch. */
bool
cmd_me(struct conn *c, const struct proto_req *req)
{
    struct store_mget q = {.key = req->key, .klen = req->klen, .no_bump = true};
    struct store_mget_res res;
    int rc = store_mget(c->w->net->store, &q, &res);
    if (rc == STORE_NOT_FOUND) {
        out_str(c, "EN\r\n");
        return true;
    }
    if (rc != 0) {
        meta_failure(c, rc);
        return true;
    }
    struct out_meta d = describe(req, OUT_ME, 0);
    d.cas = res.cas;
    d.exptime = res.exptime;
    d.fetched = res.hit_before;
    out_start_read(c, &res.loc, req->key, req->klen, false, &d);
    return true;
}
