/*
 * proto.c: memcached's classic text protocol, parsed by a pure function.
 * The contract is in proto.h; this comment says what is accepted and which
 * reply each malformed input gets. The reference is memcached 1.6's
 * doc/protocol.txt and proto_text.c: replies, their order and noreply follow
 * it unless "Framing" below says otherwise.
 *
 * Lines
 *   A command line ends in "\r\n" or a bare "\n" and is at most
 *   PROTO_MAX_LINE bytes, terminator included. Tokens are separated by one or
 *   more spaces (only ' ', as memcached's tokenizer); leading and trailing
 *   spaces are ignored. Commands are case-sensitive.
 *
 *   get|gets <key>+                    gat|gats <exptime> <key>+
 *   set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]
 *   cas <key> <flags> <exptime> <bytes> <unique> [noreply]
 *       followed by a data block of exactly <bytes> bytes and "\r\n"
 *   incr|decr <key> <delta> [noreply]  touch <key> <exptime> [noreply]
 *   delete <key> [0] [noreply]         flush_all [delay] [noreply]
 *   verbosity <level> [noreply]        version   quit   stats [args...]
 *   mcdb's own: mcdb_replicate <version> (a replica's first line, see
 *   src/repl/stream.c)   promote (a replica becomes the primary)
 *
 * Values
 *   key      1..PROTO_MAX_KEY bytes, none of them a control character
 *            (0x00-0x20, 0x7f); bytes >= 0x80 are allowed, as in memcached.
 *   flags, level: decimal, 0..2^32-1. unique, delta: 0..2^64-1.
 *   bytes    decimal, 0..2^31-3: memcached reads it as a signed 32-bit
 *            number and calls anything beyond INT_MAX - 2 a malformed line
 *            (not a value too large to store: nothing is swallowed).
 *   exptime, delay: decimal with optional '-', within int32 (memcached's
 *            safe_strtol). Numbers are digits only: no '+', no spaces, no
 *            trailing garbage, no wraparound.
 *
 * Replies (exact strings of memcached 1.6, each ending in "\r\n")
 *   ERROR: unknown command, empty line, wrong number of tokens, no keys.
 *   CLIENT_ERROR bad command line format: bad key (over PROTO_MAX_KEY
 *       bytes, control character), bad storage number, bad verbosity level.
 *   CLIENT_ERROR invalid numeric delta argument: incr/decr delta.
 *   CLIENT_ERROR invalid exptime argument: touch, gat/gats, flush_all.
 *   CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]:
 *       delete with extra arguments other than "0" and "noreply".
 *   SERVER_ERROR object too large for cache: <bytes> > max_item.
 *   CLIENT_ERROR bad data chunk: data block not followed by "\r\n".
 *   CLIENT_ERROR line too long: no "\n" within PROTO_MAX_LINE (close).
 *   A trailing token that is not "noreply" is ignored where memcached
 *   ignores it (set k 0 0 1 x, incr k 1 x, touch k 1 x, flush_all 1 x).
 *
 * noreply
 *   req.noreply is set whenever the last token is "noreply" and the command
 *   takes it, on errors too: memcached suppresses a CLIENT_ERROR or
 *   SERVER_ERROR of such a request (its out_string() honours noreply), so a
 *   caller matching memcached skips the reply when req.noreply is set.
 *   "ERROR" for a wrong token count never has noreply set: memcached checks
 *   the count before it looks for noreply.
 *
 * Framing: what is dropped after an error
 *   1. A line error drops the line (req.consumed = up to and including "\n").
 *   2. SERVER_ERROR object too large: the line, then req.swallow = bytes + 2,
 *      as memcached's conn_swallow. req.key/klen are set so the caller can
 *      drop the old value as memcached does for set.
 *   3. Any other error on a storage line (bad key, bad flags, exptime,
 *      bytes or unique) drops only the line, as memcached does: the data
 *      block that follows is then read as command lines (usually ERROR).
 *      Swallowing it would trust a length from a line already known to be
 *      wrong, and clients written against memcached expect this framing.
 *   4. Differs from memcached: when the <bytes> data bytes are not followed
 *      by "\r\n", the error consumes through the first "\n" at or after the
 *      end of the declared data, so a client that sent a longer value than
 *      declared (or a bare "\n" after it) resumes at its next line. memcached
 *      drops exactly bytes + 2 and parses the rest of the value as a command.
 *      If no "\n" comes within PROTO_MAX_LINE bytes the stream cannot be
 *      framed: the same reply with req.close set.
 *   5. A line longer than PROTO_MAX_LINE: req.consumed = PROTO_MAX_LINE and
 *      req.close, since the rest of it cannot be told from the next command.
 *
 * Other choices
 *   - gat/gats with an exptime but no key reply ERROR (memcached says END).
 *   - A key error in a multi-key get fails the whole request, as memcached
 *     1.6 does (it discards the values it had queued).
 *   - On PROTO_ERROR req.cmd is the command if it was recognised, else
 *     PROTO_NCMDS. req.key is NULL except for "object too large".
 *   - stats: req.arg is the rest of the line after "stats", outer spaces
 *     trimmed; the caller interprets (and rejects) subcommands.
 *   - version and quit ignore extra tokens, as memcached does.
 *
 * Cost: one memchr over at most PROTO_MAX_LINE bytes, one pass over the
 * line, O(1) for the data block (its length is known), and at most
 * PROTO_MAX_LINE bytes more to resync after a bad data chunk. No allocation,
 * no state between calls: the caller re-calls with the grown buffer.
 */
#include "net/proto_int.h"

#include <string.h>

static const char *const err_replies[] = {[PE_NONE] = "",
#define X(code, text) [code] = text "\r\n",
                                          PROTO_ERRORS(X)
#undef X
};

const char *
proto_err_reply(enum proto_err err)
{
    return err_replies[err];
}

int
proto_fail(struct proto_req *req, enum proto_err err, size_t consumed)
{
    req->err = err;
    req->reply = err_replies[err];
    req->consumed = consumed;
    return PROTO_ERROR;
}

static void
tokenize(const char *s, size_t n, struct line *l)
{
    size_t i = 0;

    l->ntok = 0;
    l->last_end = s;
    while (i < n) {
        size_t start;

        while (i < n && s[i] == ' ')
            i++;
        if (i == n)
            break;
        start = i;
        while (i < n && s[i] != ' ')
            i++;
        if (l->ntok < PROTO_MAX_TOKENS)
            l->tok[l->ntok] = (struct tok){s + start, i - start};
        l->ntok++;
        l->last_end = s + i;
    }
}

bool
proto_u64(struct tok t, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (t.n == 0)
        return false;
    for (size_t i = 0; i < t.n; i++) {
        unsigned d = (unsigned)((unsigned char)t.p[i] - '0');

        if (d > 9 || v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool
proto_i32(struct tok t, int64_t *out)
{
    bool neg = t.n > 0 && t.p[0] == '-';
    struct tok digits = {t.p + neg, t.n - neg};
    uint64_t mag;

    if (!proto_u64(digits, neg ? (uint64_t)INT32_MAX + 1 : INT32_MAX, &mag))
        return false;
    *out = neg ? -(int64_t)mag : (int64_t)mag;
    return true;
}

bool
proto_key_ok(const char *p, size_t n)
{
    if (n == 0 || n > PROTO_MAX_KEY)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

static bool
tok_key_ok(struct tok t)
{
    return proto_key_ok(t.p, t.n);
}

static bool
count_is(const struct line *l, size_t a, size_t b)
{
    return l->ntok == a || l->ntok == b;
}

/* get gets gat gats: [exptime] key+ */
static int
parse_get(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    bool touch = req->cmd == PROTO_GAT || req->cmd == PROTO_GATS;
    size_t first = touch ? 2 : 1;

    if (l->ntok < first + 1)
        return proto_fail(req, PE_ERROR, l->next);
    if (touch && !proto_i32(l->tok[1], &req->exptime))
        return proto_fail(req, PE_BAD_EXPTIME, l->next);
    req->keys = l->tok[first].p;
    req->keys_len = (size_t)(l->last_end - req->keys);
    /* proto_key_ok() on each key, in one pass over the list. */
    for (size_t i = 0, klen = 0; i < req->keys_len; i++) {
        unsigned char c = (unsigned char)req->keys[i];

        if (c == ' ')
            klen = 0;
        else if (c < ' ' || c == 0x7f || ++klen > PROTO_MAX_KEY)
            return proto_fail(req, PE_BAD_FORMAT, l->next);
    }
    req->consumed = l->next;
    return PROTO_OK;
}

int
proto_data(const struct line *l, struct proto_req *req)
{
    size_t d = l->next;
    size_t avail = l->len - d;
    uint64_t bytes = req->bytes;
    size_t t, lim;
    const char *nl;

    if (avail <= bytes)
        return PROTO_NEED_MORE;
    t = d + (size_t)bytes; /* < len */
    if (l->buf[t] == '\r') {
        if (avail == bytes + 1)
            return PROTO_NEED_MORE;
        if (l->buf[t + 1] == '\n') {
            req->data = l->buf + d;
            req->consumed = t + 2;
            return PROTO_OK;
        }
    }
    /* Bad chunk: resynchronise at the next "\n" (Framing, 4). */
    req->key = NULL;
    req->klen = 0;
    lim = l->len - t;
    if (lim > PROTO_MAX_LINE)
        lim = PROTO_MAX_LINE;
    nl = memchr(l->buf + t, '\n', lim);
    if (nl != NULL)
        return proto_fail(req, PE_BAD_CHUNK, (size_t)(nl - l->buf) + 1);
    if (lim < PROTO_MAX_LINE)
        return PROTO_NEED_MORE;
    req->close = true;
    return proto_fail(req, PE_BAD_CHUNK, t + PROTO_MAX_LINE);
}

/* set add replace append prepend cas */
static int
parse_storage(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    bool cas = req->cmd == PROTO_CAS;
    size_t nfixed = cas ? 6 : 5;
    const struct tok *t = l->tok;
    uint64_t bytes = 0, flags = 0, unique = 0;
    int64_t exptime = 0;

    if (!count_is(l, nfixed, nfixed + 1))
        return proto_fail(req, PE_ERROR, l->next);
    req->noreply = last_is_noreply(l);
    if (!tok_key_ok(t[1]) || !proto_u64(t[2], UINT32_MAX, &flags) ||
        !proto_i32(t[3], &exptime) ||
        !proto_u64(t[4], PROTO_MAX_BYTES, &bytes) ||
        (cas && !proto_u64(t[5], UINT64_MAX, &unique)))
        return proto_fail(req, PE_BAD_FORMAT, l->next); /* Framing, 3 */
    req->key = t[1].p;
    req->klen = t[1].n;
    req->flags = (uint32_t)flags;
    req->exptime = exptime;
    req->bytes = (uint32_t)bytes;
    req->cas = unique;
    if (bytes > max_item) {
        req->swallow = bytes + 2;
        return proto_fail(req, PE_TOO_LARGE, l->next);
    }
    return proto_data(l, req);
}

/* incr decr touch: <key> <number> [noreply] */
static int
parse_key_number(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    bool ok;

    if (!count_is(l, 3, 4))
        return proto_fail(req, PE_ERROR, l->next);
    req->noreply = last_is_noreply(l);
    if (!tok_key_ok(l->tok[1]))
        return proto_fail(req, PE_BAD_FORMAT, l->next);
    if (req->cmd == PROTO_TOUCH)
        ok = proto_i32(l->tok[2], &req->exptime);
    else
        ok = proto_u64(l->tok[2], UINT64_MAX, &req->delta);
    if (!ok) {
        return proto_fail(
            req, req->cmd == PROTO_TOUCH ? PE_BAD_EXPTIME : PE_BAD_DELTA,
            l->next);
    }
    req->key = l->tok[1].p;
    req->klen = l->tok[1].n;
    req->consumed = l->next;
    return PROTO_OK;
}

/* delete <key> [0] [noreply]: the "0" is memcached's legacy hold time. */
static int
parse_delete(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    if (l->ntok < 2 || l->ntok > 4)
        return proto_fail(req, PE_ERROR, l->next);
    if (l->ntok > 2) {
        bool zero = tok_is(l->tok[2], "0");

        req->noreply = last_is_noreply(l);
        if (!(l->ntok == 3 ? zero || req->noreply : zero && req->noreply))
            return proto_fail(req, PE_DELETE_USAGE, l->next);
    }
    if (!tok_key_ok(l->tok[1]))
        return proto_fail(req, PE_BAD_FORMAT, l->next);
    req->key = l->tok[1].p;
    req->klen = l->tok[1].n;
    req->consumed = l->next;
    return PROTO_OK;
}

/* flush_all [delay] [noreply], as memcached's process_flush_all_command. */
static int
parse_flush_all(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    if (l->ntok > 3)
        return proto_fail(req, PE_ERROR, l->next);
    req->noreply = last_is_noreply(l);
    if (l->ntok != (req->noreply ? 2u : 1u) &&
        !proto_i32(l->tok[1], &req->delay))
        return proto_fail(req, PE_BAD_EXPTIME, l->next);
    req->consumed = l->next;
    return PROTO_OK;
}

static int
parse_verbosity(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    uint64_t level;

    if (!count_is(l, 2, 3))
        return proto_fail(req, PE_ERROR, l->next);
    req->noreply = last_is_noreply(l);
    if (!proto_u64(l->tok[1], UINT32_MAX, &level))
        return proto_fail(req, PE_BAD_FORMAT, l->next);
    req->level = (uint32_t)level;
    req->consumed = l->next;
    return PROTO_OK;
}

static int
parse_stats(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    if (l->ntok >= 2) {
        req->arg = l->tok[1].p;
        req->arg_len = (size_t)(l->last_end - req->arg);
    } else {
        req->arg = l->last_end;
        req->arg_len = 0;
    }
    req->consumed = l->next;
    return PROTO_OK;
}

static int
parse_replicate(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    uint64_t version;
    if (!count_is(l, 2, 2) || !proto_u64(l->tok[1], UINT32_MAX, &version))
        return proto_fail(req, PE_ERROR, l->next);
    req->level = (uint32_t)version;
    req->consumed = l->next;
    return PROTO_OK;
}

/* version, quit: extra tokens are ignored, as memcached does */
static int
parse_bare(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    req->consumed = l->next;
    return PROTO_OK;
}

static int
parse_promote(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    if (l->ntok != 1)
        return proto_fail(req, PE_ERROR, l->next);
    req->consumed = l->next;
    return PROTO_OK;
}

/* The table's columns that this file reads. */
static const struct cmd_row {
    const char *name;
    size_t n;
    int (*parse)(const struct line *l, uint32_t max_item,
                 struct proto_req *req);
    unsigned attrs;
} commands[PROTO_NCMDS] = {
#define X(sym, name, parse, run, attrs)                                        \
    [PROTO_##sym] = {name, sizeof(name) - 1, parse, attrs},
    PROTO_COMMANDS(X)
#undef X
};

static bool
lookup(struct tok t, enum proto_cmd *cmd)
{
    for (int i = 0; i < PROTO_NCMDS; i++) {
        const struct cmd_row *c = &commands[i];

        if (t.n == c->n && t.p[0] == c->name[0] &&
            memcmp(t.p, c->name, c->n) == 0) {
            *cmd = (enum proto_cmd)i;
            return true;
        }
    }
    return false;
}

/* How long a line may be: a get-family line names many keys (clients such
 * as libmemcached send a thousand keys in one mget), so it may be as long as
 * the largest value; every other line PROTO_MAX_LINE. */
static size_t
line_limit(const char *buf, size_t len, uint32_t max_item)
{
    for (int i = 0; i < PROTO_NCMDS; i++) {
        const struct cmd_row *c = &commands[i];
        if ((c->attrs & PROTO_A_KEYS) && len > c->n && buf[c->n] == ' ' &&
            memcmp(buf, c->name, c->n) == 0)
            return PROTO_MAX_LINE + (size_t)max_item;
    }
    return PROTO_MAX_LINE;
}

/* memcached closes on an unknown command whose last token starts with
 * "HTTP/" ("GET / HTTP/1.0"). */
static bool
looks_like_http(const struct line *l)
{
    size_t n = l->last_end - l->buf;
    size_t i = n;

    while (i > 0 && l->buf[i - 1] != ' ')
        i--;
    return n - i >= 5 && memcmp(l->buf + i, "HTTP/", 5) == 0;
}

int
proto_parse(const char *buf, size_t len, uint32_t max_item,
            struct proto_req *req)
{
    struct line l; /* tokenize() fills tok[0, ntok) */
    const char *nl;
    size_t end;

    memset(req, 0, offsetof(struct proto_req, meta));
    req->cmd = PROTO_NCMDS;
    if (len == 0)
        return PROTO_NEED_MORE;
    nl = memchr(buf, '\n', len < PROTO_MAX_LINE ? len : PROTO_MAX_LINE);
    if (nl == NULL) {
        /* Only a get-family line may be longer (line_limit). */
        size_t limit = line_limit(buf, len, max_item);
        size_t scan = len < limit ? len : limit;

        if (scan > PROTO_MAX_LINE)
            nl = memchr(buf + PROTO_MAX_LINE, '\n', scan - PROTO_MAX_LINE);
        if (nl == NULL) {
            if (len < limit)
                return PROTO_NEED_MORE;
            req->close = true;
            return proto_fail(req, PE_LINE_TOO_LONG, limit);
        }
    }
    l.buf = buf;
    l.len = len;
    end = (size_t)(nl - buf);
    l.next = end + 1;
    if (end > 0 && buf[end - 1] == '\r')
        end--;
    tokenize(buf, end, &l);
    if (l.ntok == 0 || !lookup(l.tok[0], &req->cmd)) {
        req->cmd = PROTO_NCMDS;
        if (l.ntok > 0 && looks_like_http(&l)) {
            /* a browser tricked into talking to the port: no answer */
            req->close = true;
            proto_fail(req, PE_HTTP, l.next);
            req->reply = "";
            return PROTO_ERROR;
        }
        return proto_fail(req, PE_ERROR, l.next);
    }
    return commands[req->cmd].parse(&l, max_item, req);
}

bool
proto_next_key(const struct proto_req *req, size_t *pos, const char **key,
               size_t *klen)
{
    const char *k = req->keys;
    size_t i = *pos, start;

    while (i < req->keys_len && k[i] == ' ')
        i++;
    if (i >= req->keys_len) {
        *pos = i;
        return false;
    }
    start = i;
    while (i < req->keys_len && k[i] != ' ')
        i++;
    *key = k + start;
    *klen = i - start;
    *pos = i;
    return true;
}

const char *
proto_cmd_name(enum proto_cmd cmd)
{
    if ((unsigned)cmd >= PROTO_NCMDS)
        return "unknown";
    return commands[cmd].name;
}

unsigned
proto_cmd_attrs(enum proto_cmd cmd)
{
    return (unsigned)cmd < PROTO_NCMDS ? commands[cmd].attrs : 0;
}
