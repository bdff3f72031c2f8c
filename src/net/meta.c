/*
 * meta.c: memcached's meta commands, parsed by a pure function (the
 * contract is proto_parse's, proto.h). The reference is memcached's
 * doc/protocol.txt at its newest release and, where the prose is silent,
 * its code: 1.6.18's proto_text.c for everything 1.6.18 has (it is the
 * oracle of the test suites), the newest proto_parser.c for the rest.
 *
 * Lines
 *   mg <key> <flag>*                  ms <key> <datalen> <flag>*  + data
 *   md <key> <flag>*                  ma <key> <flag>*
 *   mn                                me <key> [b]
 * A flag is a token: its first byte names it, the rest is its argument.
 *
 * Flags (one table for every command, as memcached's _meta_flag_preparse:
 * a flag that another command uses is accepted and ignored)
 *   b        the key is base64 (decoded into req->meta.key; k echoes it
 *            base64 with " b")
 *   c f h k l s t v O   return flags, echoed in request order (O: opaque,
 *            the whole token, at most 32 bytes)
 *   q        quiet: hide the nominal reply (mg: EN; ms md ma: HD)
 *   u        mg: the read does not count as a fetch
 *   x        md: empty the value, keep the item
 *   I        md: invalidate (stale); ms: with C, a lower cas is accepted
 *   N<ttl>   vivify on miss        T<ttl>  new TTL     R<ttl>  recache
 *   F<u32>   client flags          C<u64>  compare cas E<u64>  new cas
 *   M<c>     mode (ms: E A P R S; ma: I + D -)
 *   J<u64>   ma: initial value     D<u64>  ma: delta (default 1)
 *   P L      proxy hints, ignored
 *   V<u64>   mcdb's own, not memcached's: ms stores only when the key is
 *            missing or its cas is below <u64>, else EX (a refresh that
 *            must not overwrite a newer version: mcdb-sync apply
 *            --write-only; memcached answers CLIENT_ERROR invalid flag)
 *
 * Errors (memcached 1.6.18's words and order; always sent, q or not)
 *   ERROR                                      no key
 *   CLIENT_ERROR bad command line format       key over 250 bytes (before
 *       decoding), a control character in a text key, ms without or with a
 *       bad <datalen> (0..2^31-3), a bad F
 *   CLIENT_ERROR options flags are too long    mg with 20 tokens or more
 *   CLIENT_ERROR options flags too long        ms md ma, the same
 *   CLIENT_ERROR duplicate flag                a flag twice (or a byte >= 127)
 *   CLIENT_ERROR invalid flag                  a flag no command has
 *   CLIENT_ERROR bad token in command line format   a bad N T R C E
 *   CLIENT_ERROR incorrect length for M token  M with not one letter
 *   CLIENT_ERROR invalid numeric initial value / delta value   J / D
 *   CLIENT_ERROR error decoding key            b with a key that is not
 *                                              base64
 *   CLIENT_ERROR opaque token too long         O over 32 bytes
 *   CLIENT_ERROR invalid mode for ms M token / ma M token
 *   CLIENT_ERROR invalid or duplicate flag     md and ma say this for every
 *                                              flag error above (1.6.18)
 * The first of a duplicate or an invalid flag ends the scan; the other
 * flag errors let it go on, and the last one found is reported, as
 * memcached does.
 *
 * Framing
 *   Like the classic storage commands: an error on ms before its <datalen>
 *   is known drops the line only; any later error (a flag, the mode, the
 *   opaque) also swallows <datalen> + 2 bytes, as memcached does, so the
 *   stream stays in step. A value over max_item: SERVER_ERROR object too
 *   large for cache, swallowed, and (as for set) the key's old value goes.
 *
 * Differences from memcached, on purpose
 *   - An opaque that is too long is an error before anything is done
 *     (memcached finds it while writing the reply, after mg T or ma acted).
 *   - A base64 key must be strict base64 with its padding (libsodium's
 *     decoder; memcached's skips bytes it does not know).
 */
#include "net/proto_int.h"

#include <sodium.h>

#define META_MAX_OPAQUE 32

/* Flags memcached's preparse knows (1.6.45's set: 1.6.18's plus E and x),
 * and mcdb's own: V. */
static const char known_flags[] = "bNTRlOPLkstcfvhuqxFCEMJDIV";

static bool
known(unsigned char o)
{
    return o != '\0' && memchr(known_flags, o, sizeof(known_flags) - 1);
}

/* Base64 (with padding) into req->meta.key. */
static bool
decode_key(struct proto_req *req)
{
    size_t n = 0;
    const char *end = NULL;

    if (sodium_base642bin((unsigned char *)req->meta.key, sizeof(req->meta.key),
                          req->key, req->klen, NULL, &n, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != req->key + req->klen || n == 0)
        return false;
    req->key = req->meta.key;
    req->klen = n;
    req->meta.ret.b64 = true;
    return true;
}

/* A flag's argument: the token after its letter. */
static struct tok
arg(struct tok t)
{
    return (struct tok){t.p + 1, t.n - 1};
}

/*
 * memcached's _meta_flag_preparse over tokens [first, ntok): fills
 * req->meta; returns PE_NONE or the error to report.
 */
static enum proto_err
preparse(const struct line *l, size_t first, struct proto_req *req)
{
    struct proto_meta *m = &req->meta;
    enum proto_err err = PE_NONE;
    bool seen[127] = {false};

    for (size_t i = first; i < l->ntok; i++) {
        struct tok t = l->tok[i];
        unsigned char o = (unsigned char)t.p[0];

        if (o >= 127 || seen[o])
            return PE_META_DUP;
        seen[o] = true;
        if (!known(o))
            return PE_META_INVALID;
        if (o >= 'A' && o <= 'z')
            m->has |= PROTO_MF(o);
        if (m->ret.n < sizeof(m->ret.flags))
            m->ret.flags[m->ret.n++] = (char)o;
        switch (o) {
        case 'b':
            if (!decode_key(req))
                err = PE_META_KEY;
            break;
        case 'N':
            if (!proto_i32(arg(t), &m->vivify_ttl))
                err = PE_META_TOKEN;
            break;
        case 'T':
            if (!proto_i32(arg(t), &m->ttl))
                err = PE_META_TOKEN;
            break;
        case 'R':
            if (!proto_i32(arg(t), &m->recache_ttl))
                err = PE_META_TOKEN;
            break;
        case 'F': {
            uint64_t v;
            if (proto_u64(arg(t), UINT32_MAX, &v))
                m->client_flags = (uint32_t)v;
            else
                err = PE_BAD_FORMAT;
            break;
        }
        case 'C':
            if (!proto_u64(arg(t), UINT64_MAX, &m->cas))
                err = PE_META_TOKEN;
            break;
        case 'E':
            if (!proto_u64(arg(t), UINT64_MAX, &m->cas_new))
                err = PE_META_TOKEN;
            break;
        case 'V':
            if (!proto_u64(arg(t), UINT64_MAX, &m->cas_below))
                err = PE_META_TOKEN;
            break;
        case 'M':
            if (t.n != 2)
                err = PE_META_M_LENGTH;
            else
                m->mode = t.p[1];
            break;
        case 'J':
            if (!proto_u64(arg(t), UINT64_MAX, &m->initial))
                err = PE_META_INITIAL;
            break;
        case 'D':
            if (!proto_u64(arg(t), UINT64_MAX, &m->delta))
                err = PE_META_DELTA;
            break;
        case 'O':
            if (t.n > META_MAX_OPAQUE) {
                m->opaque_too_long = true;
            } else {
                memcpy(m->ret.opaque, t.p, t.n);
                m->ret.olen = (uint8_t)t.n;
            }
            break;
        default:
            break;
        }
    }
    return err;
}

static bool
mode_ok(enum proto_cmd cmd, char mode)
{
    if (mode == 0 || (cmd != PROTO_MS && cmd != PROTO_MA))
        return true;
    if (cmd == PROTO_MS)
        return memchr("EAPRS", mode, 5) != NULL;
    return memchr("I+D-", mode, 4) != NULL;
}

/* An error on an ms line once its data length is known: swallow the data. */
static int
fail_swallow(struct proto_req *req, enum proto_err err, const struct line *l)
{
    req->swallow = (uint64_t)req->bytes + 2;
    return proto_fail(req, err, l->next);
}

/* mg ms md ma */
int
meta_parse(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    enum proto_cmd cmd = req->cmd;
    size_t first = cmd == PROTO_MS ? 3 : 2;
    enum proto_err err;

    memset(&req->meta, 0, offsetof(struct proto_meta, key));
    req->meta.delta = 1;
    if (l->ntok < 2)
        return proto_fail(req, PE_ERROR, l->next);
    req->key = l->tok[1].p;
    req->klen = l->tok[1].n;
    if (req->klen > PROTO_MAX_KEY)
        return proto_fail(req, PE_BAD_FORMAT, l->next);
    if (cmd == PROTO_MS && l->ntok == 2)
        return proto_fail(req, PE_BAD_FORMAT, l->next);
    if (l->ntok >= PROTO_MAX_TOKENS)
        return proto_fail(
            req, cmd == PROTO_MG ? PE_MG_TOO_MANY : PE_META_TOO_MANY, l->next);
    if (cmd == PROTO_MS) {
        uint64_t bytes;

        if (!proto_u64(l->tok[2], PROTO_MAX_BYTES, &bytes))
            return proto_fail(req, PE_BAD_FORMAT, l->next);
        req->bytes = (uint32_t)bytes;
    }

    err = preparse(l, first, req);
    if (err != PE_NONE && (cmd == PROTO_MD || cmd == PROTO_MA))
        err = PE_META_FLAGS;
    if (err == PE_NONE && !req->meta.ret.b64 &&
        !proto_key_ok(req->key, req->klen))
        err = PE_BAD_FORMAT;
    if (err == PE_NONE && !mode_ok(cmd, req->meta.mode))
        err = cmd == PROTO_MS ? PE_MS_MODE : PE_MA_MODE;
    if (err == PE_NONE && req->meta.opaque_too_long)
        err = PE_META_OPAQUE;
    if (cmd == PROTO_MS) {
        if (err != PE_NONE)
            return fail_swallow(req, err, l);
        if (req->bytes > max_item)
            return fail_swallow(req, PE_TOO_LARGE, l);
        return proto_data(l, req);
    }
    if (err != PE_NONE)
        return proto_fail(req, err, l->next);
    req->consumed = l->next;
    return PROTO_OK;
}

/* me <key> [b] */
int
meta_parse_me(const struct line *l, uint32_t max_item, struct proto_req *req)
{
    (void)max_item;
    memset(&req->meta, 0, offsetof(struct proto_meta, key));
    if (l->ntok < 2 || l->tok[1].n > PROTO_MAX_KEY)
        return proto_fail(req, PE_BAD_FORMAT, l->next);
    req->key = l->tok[1].p;
    req->klen = l->tok[1].n;
    if (l->ntok >= 3 && tok_is(l->tok[2], "b")) {
        if (!decode_key(req))
            return proto_fail(req, PE_BAD_FORMAT, l->next);
    } else if (!proto_key_ok(req->key, req->klen)) {
        return proto_fail(req, PE_BAD_FORMAT, l->next);
    }
    req->consumed = l->next;
    return PROTO_OK;
}
