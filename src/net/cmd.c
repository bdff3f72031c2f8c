/*
 * cmd: one parsed request, executed against the engine, its reply queued.
 * The engine implements the item semantics (store.h); this file maps its
 * statuses to memcached's replies and counts what "stats" reports.
 *
 * Every write's reply goes through cmd_reply(): ready at once when nothing
 * needs to become durable, else held in the output queue until its ack.
 * noreply (req.noreply, also set by the parser on errors of a request that
 * carries it, as memcached suppresses those too) means no bytes at all, but
 * a noreply write still holds the replies behind it until it is durable.
 */
#include "net/net_int.h"

#include <stdio.h>
#include <string.h>

#include "util/say.h"

size_t
cmd_status_text(store_t *s, int rc, char *buf, size_t len)
{
    const char *text = NULL;
    switch (rc) {
    case STORE_NOT_STORED:
        text = "NOT_STORED\r\n";
        break;
    case STORE_EXISTS:
        text = "EXISTS\r\n";
        break;
    case STORE_NOT_FOUND:
        text = "NOT_FOUND\r\n";
        break;
    case STORE_TOO_LARGE:
        text = proto_err_reply(PE_TOO_LARGE);
        break;
    case STORE_NON_NUMERIC:
        text = "CLIENT_ERROR cannot increment or decrement non-numeric "
               "value\r\n";
        break;
    case STORE_BAD_KEY:
        text = "CLIENT_ERROR bad command line format\r\n";
        break;
    case STORE_NOMEM:
        text = "SERVER_ERROR out of memory storing object\r\n";
        break;
    default:
        break;
    }
    if (text)
        return (size_t)snprintf(buf, len, "%s", text);
    /* A failed disk: say what the engine says about it; a closed gate
     * (too few replicas) says why. */
    const char *why = store_strerror(rc);
    char gate[256];
    if (rc == STORE_NO_REPLICAS)
        why = store_gate_text(s, rc, gate, sizeof(gate));
    if (rc == STORE_READONLY || rc > -1000) {
        const char *e = store_error_text(s);
        if (e && e[0])
            why = e;
    }
    int n = snprintf(buf, len, "SERVER_ERROR %s\r\n", why);
    if (n < 0 || (size_t)n >= len) { /* keep the line ending when cut */
        memcpy(buf + len - 3, "\r\n", 3);
        return len - 1;
    }
    return (size_t)n;
}

void
cmd_count_cas(struct worker *w, int rc)
{
    if (rc == 0)
        CNT_INC(w, cas_hits);
    else if (rc == STORE_EXISTS)
        CNT_INC(w, cas_badval);
    else if (rc == STORE_NOT_FOUND)
        CNT_INC(w, cas_misses);
}

void
cmd_count_store(struct worker *w, int rc)
{
    if (rc == STORE_TOO_LARGE)
        CNT_INC(w, store_too_large);
    else if (rc == STORE_NOMEM || rc == STORE_READONLY ||
             (rc < 0 && rc > -1000))
        CNT_INC(w, store_no_memory);
}

void
cmd_count_read(struct worker *w, unsigned what, int rc, uint8_t miss)
{
    if (what & CMD_READ_TOUCH) {
        CNT_INC(w, cmd_touch);
        if (rc == 0)
            CNT_INC(w, touch_hits);
        else if (rc == STORE_NOT_FOUND)
            CNT_INC(w, touch_misses);
    }
    if (what & CMD_READ_GET) {
        CNT_INC(w, cmd_get);
        if (rc == 0) {
            CNT_INC(w, get_hits);
            return;
        }
        CNT_INC(w, get_misses);
        if (miss == STORE_MISS_EXPIRED)
            CNT_INC(w, get_expired);
        else if (miss == STORE_MISS_FLUSHED)
            CNT_INC(w, get_flushed);
    }
}

void
cmd_count_arith(struct worker *w, bool incr, int rc, bool created)
{
    if (rc == STORE_NOT_FOUND) {
        if (incr)
            CNT_INC(w, incr_misses);
        else
            CNT_INC(w, decr_misses);
    } else if (rc == 0 && !created) {
        if (incr)
            CNT_INC(w, incr_hits);
        else
            CNT_INC(w, decr_hits);
    }
}

size_t
cmd_failure_text(struct conn *c, int rc, const struct out_bin *b, char *buf,
                 size_t len)
{
    store_t *s = c->w->net->store;
    return b ? cmd_bin_failure(s, rc, b, buf, len)
             : cmd_status_text(s, rc, buf, len);
}

/* Queue text as the reply to a write with this ack, sent as policy says
 * (OUT_ON_FAILURE: only if the write fails to become durable); b: a binary
 * reply, whose failure is a packet. */
void
cmd_hold_bin(struct conn *c, uint64_t ack, const char *text, size_t n,
             enum out_policy policy, const struct out_bin *b)
{
    int st = ack ? store_ack_status(c->w->net->store, ack) : 1;
    if (st == 0) {
        out_wait_ack_bin(c, ack, text, n, policy, b);
    } else if (policy == OUT_NEVER || (st > 0 && policy != OUT_ALWAYS)) {
        return;
    } else if (st < 0) {
        char buf[512];
        out_text(c, buf, cmd_failure_text(c, st, b, buf, sizeof(buf)));
    } else {
        out_text(c, text, n);
    }
}

void
cmd_hold(struct conn *c, uint64_t ack, const char *text, size_t n,
         enum out_policy policy)
{
    cmd_hold_bin(c, ack, text, n, policy, NULL);
}

/* The reply to a write: ok when it succeeded, else its status's text. */
static void
cmd_reply(struct conn *c, const struct proto_req *req, int rc,
          const struct store_write *w, const char *ok)
{
    char buf[512];
    const char *text = ok;
    size_t n = strlen(ok);
    if (rc != 0) {
        n = cmd_status_text(c->w->net->store, rc, buf, sizeof(buf));
        text = buf;
    }
    cmd_hold(c, w->ack, text, n, req->noreply ? OUT_NEVER : OUT_ALWAYS);
}

/* ---- retrieval ---- */

/* get gets gat gats; false when paused part way (see conn.c). */
static bool
get_keys(struct conn *c, const struct proto_req *req, bool want_cas, bool touch)
{
    struct worker *w = c->w;
    store_t *s = w->net->store;
    size_t pos = c->get_resume, start = pos;
    const char *key;
    size_t klen;
    c->get_resume = 0;
    for (;;) {
        size_t before = pos;
        if (!proto_next_key(req, &pos, &key, &klen))
            break;
        if (c->out_bytes >= NET_OUT_HIGH && before != start) {
            c->get_resume = before;
            conn_pause(c);
            return false;
        }
        struct store_loc loc;
        loc.miss = STORE_MISS_ABSENT;
        int rc;
        if (touch) {
            /* the value as it was, then the new exptime: a gat with a past
             * exptime returns the value once, as memcached's does */
            struct store_mget q = {.key = key,
                                   .klen = klen,
                                   .touch = true,
                                   .exptime = req->exptime};
            struct store_mget_res res;
            rc = store_mget(s, &q, &res);
            loc.miss = res.miss;
            if (rc == 0) {
                loc = res.loc;
                if (res.ack)
                    cmd_hold(c, res.ack, "", 0, OUT_NEVER);
            }
            if (rc == STORE_REPLICA || rc == STORE_READONLY) {
                char buf[512];
                out_text(c, buf, cmd_status_text(s, rc, buf, sizeof(buf)));
                return true;
            }
        } else {
            rc = store_lookup(s, key, klen, &loc);
        }
        if (rc == STORE_SYNCING || rc == STORE_STALE) {
            /* a replica that cannot answer: never a miss */
            char buf[512];
            out_text(c, buf, cmd_status_text(s, rc, buf, sizeof(buf)));
            return true;
        }
        STATS_DETAIL(w->net, key, klen, rc == 0 ? DETAIL_HIT : DETAIL_MISS);
        cmd_count_read(w, CMD_READ_GET | (touch ? CMD_READ_TOUCH : 0), rc,
                       loc.miss);
        if (rc != 0) {
            if (rc != STORE_NOT_FOUND)
                say(SAY_WARN, "lookup of %.*s: %s", (int)klen, key,
                    store_strerror(rc));
            continue;
        }
        out_start_read(c, &loc, key, klen, want_cas, NULL);
    }
    out_end(c);
    return true;
}

static bool
cmd_get(struct conn *c, const struct proto_req *req)
{
    return get_keys(c, req, false, false);
}

static bool
cmd_gets(struct conn *c, const struct proto_req *req)
{
    return get_keys(c, req, true, false);
}

static bool
cmd_gat(struct conn *c, const struct proto_req *req)
{
    return get_keys(c, req, false, true);
}

static bool
cmd_gats(struct conn *c, const struct proto_req *req)
{
    return get_keys(c, req, true, true);
}

/* ---- writes ---- */

static bool
cmd_store(struct conn *c, const struct proto_req *req)
{
    static const enum store_mode modes[PROTO_NCMDS] = {
        [PROTO_SET] = STORE_SET,         [PROTO_ADD] = STORE_ADD,
        [PROTO_REPLACE] = STORE_REPLACE, [PROTO_APPEND] = STORE_APPEND,
        [PROTO_PREPEND] = STORE_PREPEND, [PROTO_CAS] = STORE_CAS,
    };
    struct worker *w = c->w;
    struct store_write wr = {0};
    struct store_req sr = {.key = req->key,
                           .klen = req->klen,
                           .mode = modes[req->cmd],
                           .val = req->data,
                           .vlen = req->bytes,
                           .flags = req->flags,
                           .exptime = req->exptime,
                           .cas_in = req->cas};
    STATS_DETAIL(w->net, req->key, req->klen, DETAIL_SET);
    int rc = store_set(w->net->store, &sr, &wr);
    CNT_INC(w, cmd_set);
    if (rc == 0)
        CNT_INC(w, total_items);
    cmd_count_store(w, rc);
    if (req->cmd == PROTO_CAS)
        cmd_count_cas(w, rc);
    cmd_reply(c, req, rc, &wr, "STORED\r\n");
    return true;
}

static bool
cmd_arith(struct conn *c, const struct proto_req *req)
{
    struct worker *w = c->w;
    bool incr = req->cmd == PROTO_INCR;
    struct store_write wr = {0};
    struct store_arith_req q = {
        .key = req->key, .klen = req->klen, .incr = incr, .delta = req->delta};
    struct store_arith_res res;
    int rc = store_arith(w->net->store, &q, &res, &wr);
    uint64_t value = res.value;
    cmd_count_arith(w, incr, rc, false);
    char ok[NET_U64_DIGITS + 3];
    size_t n = net_fmt_u64(ok, value);
    memcpy(ok + n, "\r\n", 3);
    cmd_reply(c, req, rc, &wr, ok);
    return true;
}

static bool
cmd_delete(struct conn *c, const struct proto_req *req)
{
    struct worker *w = c->w;
    struct store_write wr = {0};
    struct store_del q = {.key = req->key, .klen = req->klen};
    STATS_DETAIL(w->net, req->key, req->klen, DETAIL_DEL);
    int rc = store_delete(w->net->store, &q, &wr);
    if (rc == 0)
        CNT_INC(w, delete_hits);
    else if (rc == STORE_NOT_FOUND)
        CNT_INC(w, delete_misses);
    cmd_reply(c, req, rc, &wr, "DELETED\r\n");
    return true;
}

static bool
cmd_touch(struct conn *c, const struct proto_req *req)
{
    struct worker *w = c->w;
    struct store_write wr = {0};
    int rc = store_touch(w->net->store, req->key, req->klen, req->exptime, &wr);
    CNT_INC(w, cmd_touch);
    if (rc == 0)
        CNT_INC(w, touch_hits);
    else if (rc == STORE_NOT_FOUND)
        CNT_INC(w, touch_misses);
    cmd_reply(c, req, rc, &wr, "TOUCHED\r\n");
    return true;
}

static bool
cmd_flush(struct conn *c, const struct proto_req *req)
{
    struct store_write wr = {0};
    int rc = store_flush(c->w->net->store, req->delay, &wr);
    CNT_INC(c->w, cmd_flush);
    cmd_reply(c, req, rc, &wr, "OK\r\n");
    return true;
}

/* ---- replication ---- */

/* A replica's first line: its socket goes to src/repl (which answers
 * with the stream's frames) once what was queued before it is sent. */
static bool
cmd_replicate(struct conn *c, const struct proto_req *req)
{
    if (!c->w->net->repl || req->level != REPL_PROTOCOL) {
        out_printf(c,
                   "SERVER_ERROR replication protocol %u not spoken "
                   "here (%d is)\r\n",
                   req->level, REPL_PROTOCOL);
        return true;
    }
    conn_handover(c);
    return true;
}

/* promote: an operator's act, accepted from loopback only. */
static bool
cmd_promote(struct conn *c, const struct proto_req *req)
{
    (void)req;
    char err[256] = "";
    if (!repl_is_loopback(c->fd)) {
        out_str(c, "CLIENT_ERROR promote is accepted from loopback only\r\n");
        return true;
    }
    if (!c->w->net->repl || repl_promote(c->w->net->repl, err, sizeof(err)))
        out_printf(c, "SERVER_ERROR promote failed: %s\r\n",
                   err[0] ? err : "no replication here");
    else
        out_str(c, "OK\r\n");
    return true;
}

/* ---- the rest ---- */

/* verbosity N sets the log level, as memcached's -v count does. */
static bool
cmd_verbosity(struct conn *c, const struct proto_req *req)
{
    say_set_level(req->level == 0   ? SAY_INFO
                  : req->level == 1 ? SAY_VERBOSE
                                    : SAY_DEBUG);
    if (!req->noreply)
        out_str(c, "OK\r\n");
    return true;
}

static bool
cmd_version(struct conn *c, const struct proto_req *req)
{
    (void)req;
    out_str(c, "VERSION " NET_VERSION "\r\n");
    return true;
}

static bool
cmd_quit(struct conn *c, const struct proto_req *req)
{
    (void)req;
    conn_drain(c);
    return true;
}

static bool
cmd_stats(struct conn *c, const struct proto_req *req)
{
    stats_reply(c, req->arg, req->arg_len);
    return true;
}

/* ---- lru_crawler metadump ---- */

struct dump_out {
    struct conn *c;
    uint32_t now;
};

/* One line in memcached 1.6.18's format, "\n"-terminated as its are: the
 * key URI-encoded (all but A-Z a-z 0-9 - . _ ~), exp -1 for never, la the
 * write time mcdb's cas says (in seconds, at most now: a client's E may
 * say anything), fetch, cls 1 (mcdb has no slab classes), size the
 * record's bytes in the log. */
static void
dump_line(void *arg, const struct store_dump_item *it)
{
    struct dump_out *d = arg;
    static const char hex[] = "0123456789ABCDEF";
    char line[4 + 3 * STORE_MAX_KEY + 160];
    size_t n = 0;
    memcpy(line, "key=", 4);
    n = 4;
    const unsigned char *k = it->key;
    for (size_t i = 0; i < it->klen; i++) {
        unsigned char ch = k[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
            ch == '~') {
            line[n++] = (char)ch;
        } else {
            line[n++] = '%';
            line[n++] = hex[ch >> 4];
            line[n++] = hex[ch & 15];
        }
    }
    uint64_t la = it->cas / 1000000;
    if (la > d->now)
        la = d->now;
    n += (size_t)snprintf(line + n, sizeof(line) - n,
                          " exp=%lld la=%llu cas=%llu fetch=%s cls=1 size=%u\n",
                          it->exptime ? (long long)it->exptime : -1LL,
                          (unsigned long long)la, (unsigned long long)it->cas,
                          it->fetched ? "yes" : "no", it->size);
    out_text(d->c, line, n);
}

/* Streams: one index part at a time, and when the queued reply passes
 * NET_OUT_HIGH the connection pauses and this resumes at the next part
 * once the client has read it (conn.c), like a get of many keys. */
static bool
metadump(struct conn *c)
{
    store_t *s = c->w->net->store;
    unsigned parts = store_dump_parts(s);
    struct dump_out d = {.c = c, .now = store_now(s)};
    size_t part = c->get_resume;
    c->get_resume = 0;
    for (; part < parts; part++) {
        if (c->out_bytes >= NET_OUT_HIGH) {
            c->get_resume = part;
            conn_pause(c);
            return false;
        }
        store_dump_part(s, (unsigned)part, dump_line, &d);
    }
    out_str(c, "END\r\n");
    return true;
}

/* memcached's admin commands (admin.c chose the reply). */
static bool
cmd_answer(struct conn *c, const struct proto_req *req)
{
    if (req->dump)
        return metadump(c);
    if (!req->noreply)
        out_printf(c, "%s\r\n", req->answer);
    return true;
}

/* The handler column of the command table (proto.h). */
static bool (*const handlers[PROTO_NCMDS])(struct conn *c,
                                           const struct proto_req *req) = {
#define X(sym, name, parse, run, attrs) [PROTO_##sym] = run,
    PROTO_COMMANDS(X)
#undef X
};

bool
cmd_execute(struct conn *c, const struct proto_req *req)
{
    if ((unsigned)req->cmd >= PROTO_NCMDS) {
        out_str(c, "ERROR\r\n");
        return true;
    }
    if (proto_cmd_attrs(req->cmd) & PROTO_A_META)
        CNT_INC(c->w, cmd_meta);
    return handlers[req->cmd](c, req);
}

/*
 * A request the parser rejected. For a value over --max-item-size memcached
 * also unlinks the key's old value when the command was set (a client must
 * not read the value it meant to replace); the delete is a write like any
 * other, so the error reply waits for its ack.
 */
void
cmd_parse_error(struct conn *c, const struct proto_req *req)
{
    if (req->err == PE_TOO_LARGE)
        CNT_INC(c->w, store_too_large);
    if ((req->cmd == PROTO_SET || req->cmd == PROTO_MS) && req->key &&
        req->swallow && req->err == PE_TOO_LARGE) {
        struct store_write wr = {0};
        struct store_del q = {.key = req->key, .klen = req->klen};
        int rc = store_delete(c->w->net->store, &q, &wr);
        if (rc == 0 || rc == STORE_NOT_FOUND) {
            cmd_hold(c, wr.ack, req->reply, strlen(req->reply),
                     req->noreply ? OUT_NEVER : OUT_ALWAYS);
            return;
        }
        /* The old value could not be removed: say why instead. */
        cmd_reply(c, req, rc, &wr, req->reply);
        return;
    }
    if (!req->noreply)
        out_str(c, req->reply);
}
