/*
 * cmd_bin: memcached's binary protocol executed against the engine. The
 * parser (binary.c) framed and checked the request; each handler makes the
 * same store call the text and meta commands make (one store, three front
 * ends) and maps its status to memcached 1.6.18's (proto_bin.c):
 *
 *   store            binary status (body)
 *   0                OK
 *   NOT_FOUND        KEY_ENOENT "Not found" (getk: the key)
 *   EXISTS           KEY_EEXISTS "Data exists for key."
 *   NOT_STORED       add: KEY_EEXISTS; replace: KEY_ENOENT; append,
 *                    prepend: NOT_STORED "Not stored."
 *   TOO_LARGE        E2BIG "Too large."
 *   NON_NUMERIC      DELTA_BADVAL "Non-numeric server-side value for incr
 *                    or decr"
 *   NOMEM            ENOMEM "Out of memory"
 *   REPLICA          NOT_SUPPORTED, with the text path's words ("read-only
 *                    replica")
 *   SYNCING, STALE,  ETMPFAIL, with the text path's words
 *   NO_REPLICAS,
 *   REPL_TIMEOUT
 *   anything else    EINTERNAL, with the text path's words (a failed disk)
 *
 * Quiet opcodes (getq, setq, ...) as memcached: a get's miss and a write's
 * success are not answered, an error always is; noop answers, and so
 * shows that everything before it was done. A write's reply (or its
 * silence) waits for its ack like every write's (cmd_hold_bin).
 */
#include "net/net_int.h"

#include <stdio.h>
#include <string.h>

#include "net/binary.h"
#include "util/say.h"

/* The largest error packet: a header and the text path's words. */
#define BIN_ERR_MAX 512

static struct out_bin
bin_id(const struct bin_req *r)
{
    unsigned a = bin_cmd_attrs(r->cmd);
    return (struct out_bin){.opcode = r->opcode,
                            .opaque = r->opaque,
                            .quiet = (a & BIN_A_QUIET) != 0,
                            .with_key = (a & BIN_A_KEY) != 0,
                            .no_value = r->cmd == BIN_TOUCH};
}

static bool
quiet(const struct bin_req *r)
{
    return (bin_cmd_attrs(r->cmd) & BIN_A_QUIET) != 0;
}

/* A packet with this status and body at dst (cap bytes, body cut to fit). */
static size_t
bin_packet(char *dst, size_t cap, uint8_t opcode, uint32_t opaque,
           uint16_t status, const char *body, size_t blen)
{
    if (blen > cap - BIN_HEADER)
        blen = cap - BIN_HEADER;
    struct bin_res h = {.opcode = opcode,
                        .opaque = opaque,
                        .status = status,
                        .bodylen = (uint32_t)blen};
    bin_put_header(dst, &h);
    memcpy(dst + BIN_HEADER, body, blen);
    return BIN_HEADER + blen;
}

size_t
cmd_bin_failure(store_t *s, int rc, const struct out_bin *b, char *buf,
                size_t len)
{
    uint16_t status;
    switch (rc) {
    case STORE_NOT_FOUND:
        status = BIN_KEY_ENOENT;
        break;
    case STORE_EXISTS:
        status = BIN_KEY_EEXISTS;
        break;
    case STORE_NOT_STORED:
        status = BIN_NOT_STORED;
        break;
    case STORE_TOO_LARGE:
        status = BIN_E2BIG;
        break;
    case STORE_NON_NUMERIC:
        status = BIN_DELTA_BADVAL;
        break;
    case STORE_NOMEM:
        status = BIN_ENOMEM;
        break;
    case STORE_BAD_KEY:
        status = BIN_EINVAL;
        break;
    case STORE_REPLICA:
        status = BIN_NOT_SUPPORTED;
        break;
    case STORE_SYNCING:
    case STORE_STALE:
    case STORE_NO_REPLICAS:
    case STORE_REPL_TIMEOUT:
        status = BIN_ETMPFAIL;
        break;
    default:
        status = BIN_EINTERNAL;
        break;
    }
    const char *body = bin_status_text(status);
    size_t blen = strlen(body);
    char text[BIN_ERR_MAX];
    if (status >= BIN_NOT_SUPPORTED) {
        /* the text path's words, without "SERVER_ERROR " and "\r\n" */
        size_t n = cmd_status_text(s, rc, text, sizeof(text));
        body = text;
        blen = n >= 2 ? n - 2 : 0;
        if (blen >= 13 && memcmp(text, "SERVER_ERROR ", 13) == 0) {
            body += 13;
            blen -= 13;
        }
    }
    return bin_packet(buf, len, b->opcode, b->opaque, status, body, blen);
}

/* An error reply, sent at once (errors are answered even when quiet). */
static void
bin_error(struct conn *c, const struct bin_req *r, uint16_t status)
{
    const char *body = bin_status_text(status);
    struct bin_res h = {
        .opcode = r->opcode, .opaque = r->opaque, .status = status};
    out_bin(c, &h, NULL, 0, NULL, 0, body, strlen(body));
}

/* A store's failure, sent at once. */
static void
bin_failure(struct conn *c, const struct bin_req *r, int rc)
{
    char buf[BIN_ERR_MAX];
    struct out_bin id = bin_id(r);
    out_text(c, buf,
             cmd_bin_failure(c->w->net->store, rc, &id, buf, sizeof(buf)));
}

/*
 * The reply to a write: on success the header with cas (and body, incr's
 * value), held until the ack and hidden when quiet; on failure its status,
 * always sent.
 */
static void
bin_write_reply(struct conn *c, const struct bin_req *r, int rc, uint64_t ack,
                uint64_t cas, const char *body, size_t blen)
{
    struct out_bin id = bin_id(r);
    if (rc != 0) {
        char buf[BIN_ERR_MAX];
        size_t n = cmd_bin_failure(c->w->net->store, rc, &id, buf, sizeof(buf));
        cmd_hold_bin(c, ack, buf, n, OUT_ALWAYS, &id);
        return;
    }
    char pkt[BIN_HEADER + 8];
    struct bin_res h = {.opcode = r->opcode,
                        .opaque = r->opaque,
                        .cas = cas,
                        .bodylen = (uint32_t)blen};
    bin_put_header(pkt, &h);
    if (blen)
        memcpy(pkt + BIN_HEADER, body, blen);
    cmd_hold_bin(c, ack, pkt, BIN_HEADER + blen,
                 id.quiet ? OUT_ON_FAILURE : OUT_ALWAYS, &id);
}

/* ---- retrieval: get getq getk getkq, touch, gat gatq gatk gatkq ---- */

static bool
bin_get(struct conn *c, const struct bin_req *r)
{
    struct worker *w = c->w;
    store_t *s = w->net->store;
    bool touch = r->extlen == 4; /* touch and the gat family */
    struct store_loc loc = {.miss = STORE_MISS_ABSENT};
    uint64_t ack = 0;
    int rc;
    if (touch) {
        struct store_mget q = {.key = r->key,
                               .klen = r->klen,
                               .touch = true,
                               .exptime = r->exptime};
        struct store_mget_res res;
        rc = store_mget(s, &q, &res);
        loc.miss = res.miss;
        if (rc == 0) {
            loc = res.loc;
            ack = res.ack;
        }
    } else {
        rc = store_lookup(s, r->key, r->klen, &loc);
    }
    if (rc == STORE_SYNCING || rc == STORE_STALE || rc == STORE_REPLICA ||
        rc == STORE_READONLY) {
        /* a replica that cannot answer, a write refused: never a miss */
        bin_failure(c, r, rc);
        return true;
    }
    unsigned what = r->cmd == BIN_TOUCH ? CMD_READ_TOUCH
                    : touch             ? CMD_READ_GET | CMD_READ_TOUCH
                                        : CMD_READ_GET;
    cmd_count_read(w, what, rc, loc.miss);
    STATS_DETAIL(w->net, r->key, r->klen, rc == 0 ? DETAIL_HIT : DETAIL_MISS);
    struct out_bin id = bin_id(r);
    if (rc != 0) {
        if (rc != STORE_NOT_FOUND)
            say(SAY_WARN, "lookup of %.*s: %s", (int)r->klen, r->key,
                store_strerror(rc));
        if (id.quiet)
            return true;
        if (!id.with_key) {
            bin_error(c, r, BIN_KEY_ENOENT);
            return true;
        }
        struct bin_res h = {
            .opcode = r->opcode, .opaque = r->opaque, .status = BIN_KEY_ENOENT};
        out_bin(c, &h, NULL, 0, r->key, r->klen, NULL, 0);
        return true;
    }
    /* the touch is a write: nothing of this reply before it is durable */
    if (ack)
        cmd_hold_bin(c, ack, "", 0, OUT_NEVER, NULL);
    out_start_read_bin(c, &loc, r->key, r->klen, &id);
    return true;
}

/* ---- writes ---- */

static bool
bin_store(struct conn *c, const struct bin_req *r)
{
    static const enum store_mode modes[BIN_NCMDS] = {
        [BIN_SET] = STORE_SET,         [BIN_SETQ] = STORE_SET,
        [BIN_ADD] = STORE_ADD,         [BIN_ADDQ] = STORE_ADD,
        [BIN_REPLACE] = STORE_REPLACE, [BIN_REPLACEQ] = STORE_REPLACE,
        [BIN_APPEND] = STORE_APPEND,   [BIN_APPENDQ] = STORE_APPEND,
        [BIN_PREPEND] = STORE_PREPEND, [BIN_PREPENDQ] = STORE_PREPEND,
    };
    struct worker *w = c->w;
    enum store_mode mode = modes[r->cmd];
    bool append = mode == STORE_APPEND || mode == STORE_PREPEND;
    /* memcached: set, add and replace with a cas are a cas; append and
     * prepend compare it */
    if (r->cas && !append)
        mode = STORE_CAS;
    struct store_req sr = {.key = r->key,
                           .klen = r->klen,
                           .mode = mode,
                           .val = r->value,
                           .vlen = r->vlen,
                           .flags = r->flags,
                           .exptime = r->exptime,
                           .cas_in = r->cas,
                           .has_cas = append && r->cas};
    struct store_write wr = {0};
    STATS_DETAIL(w->net, r->key, r->klen, DETAIL_SET);
    int rc = store_set(w->net->store, &sr, &wr);
    CNT_INC(w, cmd_set);
    if (rc == 0)
        CNT_INC(w, total_items);
    cmd_count_store(w, rc);
    if (mode == STORE_CAS)
        cmd_count_cas(w, rc);
    /* memcached's words for "not stored": add found the key, replace
     * did not */
    if (rc == STORE_NOT_STORED && modes[r->cmd] == STORE_ADD)
        rc = STORE_EXISTS;
    else if (rc == STORE_NOT_STORED && modes[r->cmd] == STORE_REPLACE)
        rc = STORE_NOT_FOUND;
    bin_write_reply(c, r, rc, wr.ack, wr.cas, NULL, 0);
    return true;
}

static bool
bin_delete(struct conn *c, const struct bin_req *r)
{
    struct worker *w = c->w;
    struct store_del q = {
        .key = r->key, .klen = r->klen, .cas_in = r->cas, .has_cas = r->cas};
    struct store_write wr = {0};
    STATS_DETAIL(w->net, r->key, r->klen, DETAIL_DEL);
    int rc = store_delete(w->net->store, &q, &wr);
    if (rc == 0)
        CNT_INC(w, delete_hits);
    else if (rc == STORE_NOT_FOUND || rc == STORE_EXISTS)
        CNT_INC(w, delete_misses);
    bin_write_reply(c, r, rc, wr.ack, 0, NULL, 0);
    return true;
}

/* incr decr: a missing key is created with the initial value unless the
 * expiration is 0xffffffff. */
static bool
bin_arith(struct conn *c, const struct bin_req *r)
{
    struct worker *w = c->w;
    bool incr = r->cmd == BIN_INCREMENT || r->cmd == BIN_INCREMENTQ;
    struct store_arith_req q = {.key = r->key,
                                .klen = r->klen,
                                .incr = incr,
                                .delta = r->delta,
                                .vivify = r->exptime != 0xffffffffu,
                                .vivify_exptime = r->exptime,
                                .initial = r->initial};
    struct store_arith_res res = {0};
    struct store_write wr = {0};
    int rc = store_arith(w->net->store, &q, &res, &wr);
    cmd_count_arith(w, incr, rc, res.created);
    char value[8];
    for (int i = 0; i < 8; i++)
        value[i] = (char)(res.value >> (56 - 8 * i));
    bin_write_reply(c, r, rc, wr.ack, res.cas, value, sizeof(value));
    return true;
}

static bool
bin_flush(struct conn *c, const struct bin_req *r)
{
    struct store_write wr = {0};
    int rc = store_flush(c->w->net->store, r->exptime, &wr);
    CNT_INC(c->w, cmd_flush);
    bin_write_reply(c, r, rc, wr.ack, 0, NULL, 0);
    return true;
}

/* ---- the rest ---- */

static void
bin_ok(struct conn *c, const struct bin_req *r, const char *body, size_t blen)
{
    struct bin_res h = {.opcode = r->opcode, .opaque = r->opaque};
    out_bin(c, &h, NULL, 0, NULL, 0, body, blen);
}

static bool
bin_noop(struct conn *c, const struct bin_req *r)
{
    bin_ok(c, r, NULL, 0);
    return true;
}

static bool
bin_version(struct conn *c, const struct bin_req *r)
{
    bin_ok(c, r, NET_VERSION, strlen(NET_VERSION));
    return true;
}

/* verbosity: the level as the text command sets it. memcached 1.6.18
 * sends nothing back (its handler is missing); the protocol says OK. */
static bool
bin_verbosity(struct conn *c, const struct bin_req *r)
{
    say_set_level(r->level == 0   ? SAY_INFO
                  : r->level == 1 ? SAY_VERBOSE
                                  : SAY_DEBUG);
    bin_ok(c, r, NULL, 0);
    return true;
}

static bool
bin_quit(struct conn *c, const struct bin_req *r)
{
    if (!quiet(r))
        bin_ok(c, r, NULL, 0);
    conn_drain(c);
    return true;
}

/* stat [group]: each stat a packet (key the name, value the value), then
 * an empty one; an unknown group is KEY_ENOENT (stats.c). */
static bool
bin_stat(struct conn *c, const struct bin_req *r)
{
    struct out_bin id = bin_id(r);
    stats_reply_bin(c, r->key ? r->key : "", r->klen, &id);
    return true;
}

/*
 * SASL: this server has no authentication, so the three opcodes are
 * answered as memcached answers them without -S: UNKNOWN_COMMAND. A server
 * with authentication replaces this handler, and bin_allowed below.
 */
static bool
bin_sasl(struct conn *c, const struct bin_req *r)
{
    if (c->w->net->auth)
        return cmd_auth_sasl(c, r);
    bin_error(c, r, BIN_UNKNOWN_COMMAND);
    return true;
}

/*
 * Authentication's gate: whether the connection may run cmd now. Without
 * SASL every command is; with it, only those with BIN_A_PREAUTH until the
 * connection has authenticated (the others are answered AUTH_ERROR).
 */
static bool
bin_allowed(const struct conn *c, enum bin_cmd cmd)
{
    return c->authed || (bin_cmd_attrs(cmd) & BIN_A_PREAUTH);
}

/* One not allowed before the login: AUTH_ERROR, and memcached closes. */
static void
bin_refuse(struct conn *c, const struct bin_req *r)
{
    bin_error(c, r, BIN_AUTH_ERROR);
    conn_drain(c);
}

/* The handler column of the command table (binary.h). */
static bool (*const handlers[BIN_NCMDS])(struct conn *c,
                                         const struct bin_req *r) = {
#define X(sym, op, name, run, emin, emax, key, attrs) [BIN_##sym] = run,
    BIN_COMMANDS(X)
#undef X
};

static void
bin_dispatch(struct conn *c, const struct bin_req *r)
{
    if (!bin_allowed(c, r->cmd)) {
        bin_refuse(c, r);
        return;
    }
    handlers[r->cmd](c, r);
}

/*
 * A request the parser rejected: its status, always answered. A set whose
 * value is over --max-item-size also drops the key's old value, as
 * memcached's does and as the text set does (cmd_parse_error); the error
 * then waits for that delete's ack.
 */
static void
bin_rejected(struct conn *c, const struct bin_req *r)
{
    if (r->status == BIN_E2BIG)
        CNT_INC(c->w, store_too_large);
    if (r->status == BIN_E2BIG && r->key &&
        (r->cmd == BIN_SET || r->cmd == BIN_SETQ)) {
        struct store_write wr = {0};
        struct store_del q = {.key = r->key, .klen = r->klen};
        int rc = store_delete(c->w->net->store, &q, &wr);
        struct out_bin id = bin_id(r);
        char buf[BIN_ERR_MAX];
        size_t n;
        if (rc == 0 || rc == STORE_NOT_FOUND) {
            const char *body = bin_status_text(BIN_E2BIG);
            n = bin_packet(buf, sizeof(buf), r->opcode, r->opaque, BIN_E2BIG,
                           body, strlen(body));
        } else { /* the old value could not be removed: say why instead */
            n = cmd_bin_failure(c->w->net->store, rc, &id, buf, sizeof(buf));
        }
        cmd_hold_bin(c, wr.ack, buf, n, OUT_ALWAYS, &id);
        return;
    }
    bin_error(c, r, r->status);
}

size_t
cmd_bin_step(struct conn *c, const char *buf, size_t len)
{
    uint32_t max_item = (uint32_t)c->w->net->cfg.max_item_size;
    struct bin_req r;
    int rc = bin_parse(buf, len, max_item, &r);
    if (rc == BIN_NEED_MORE)
        return 0;
    if (say_get_level() >= SAY_DEBUG)
        say(SAY_DEBUG, "%s < binary %s (0x%02x) key %.*s", c->peer,
            bin_cmd_name(r.cmd), r.opcode, r.key ? (int)r.klen : 0,
            r.key ? r.key : "");
    /* Before the login memcached refuses an unknown opcode, or a known one
     * of the wrong shape or size, as any other; only a header it cannot
     * frame (r.cmd unknown and r.close) is answered as it is. */
    if (rc == BIN_ERROR && !bin_allowed(c, r.cmd) &&
        !(r.cmd == BIN_NCMDS && r.close)) {
        bin_refuse(c, &r);
        return r.consumed;
    }
    if (rc == BIN_ERROR) {
        bin_rejected(c, &r);
        c->swallow = r.swallow;
        if (r.close)
            conn_drain(c);
        return r.consumed;
    }
    bin_dispatch(c, &r);
    return r.consumed;
}
