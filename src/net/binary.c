/*
 * binary: memcached's binary protocol parser (the contract is in binary.h).
 * Pure: it reads the bytes it is given and nothing else, so that a fuzz
 * target (fuzz/fuzz_binary.c) can call it.
 *
 * The checks, in memcached 1.6's order:
 *   1. a whole header (24 bytes) or "need more";
 *   2. magic 0x80, else EINVAL and close;
 *   3. key length at most PROTO_MAX_KEY, extras and key within the body,
 *      else EINVAL and close (the body cannot be trusted to frame the
 *      stream);
 *   4. an opcode of the table, else UNKNOWN_COMMAND, body swallowed;
 *   5. the opcode's shape: extras length, key present or absent, no value
 *      unless the opcode takes one; else EINVAL and close;
 *   6. a value of at most max_item bytes, else E2BIG, value swallowed;
 *   7. the whole body, or "need more".
 */
#include "net/binary.h"

#include <string.h>

#include "net/proto.h"

static const struct {
    const char *name;
    uint8_t emin, emax, key;
    unsigned attrs;
} commands[BIN_NCMDS + 1] = {
#define X(sym, op, name, run, emin, emax, key, attrs)                          \
    [BIN_##sym] = {name, emin, emax, key, attrs},
    BIN_COMMANDS(X)
#undef X
        [BIN_NCMDS] = {"unknown", 0, 0, BIN_K_NONE, 0},
};

/* opcode -> command + 1 (0: not an opcode of the table) */
static const uint8_t by_opcode[256] = {
#define X(sym, op, name, run, emin, emax, key, attrs) [op] = BIN_##sym + 1,
    BIN_COMMANDS(X)
#undef X
};

const char *
bin_status_text(uint16_t status)
{
    switch (status) {
#define X(sym, code, text)                                                     \
    case code:                                                                 \
        return text;
        BIN_STATUSES(X)
#undef X
    default:
        return "";
    }
}

const char *
bin_cmd_name(enum bin_cmd cmd)
{
    return commands[(unsigned)cmd < BIN_NCMDS ? cmd : BIN_NCMDS].name;
}

unsigned
bin_cmd_attrs(enum bin_cmd cmd)
{
    return commands[(unsigned)cmd < BIN_NCMDS ? cmd : BIN_NCMDS].attrs;
}

static uint16_t
get16(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint16_t)(u[0] << 8 | u[1]);
}

static uint32_t
get32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 |
           u[3];
}

static uint64_t
get64(const char *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void
put16(char *p, uint16_t v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

static void
put32(char *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

void
bin_put_header(char *dst, const struct bin_res *res)
{
    dst[0] = (char)BIN_RES_MAGIC;
    dst[1] = (char)res->opcode;
    put16(dst + 2, res->klen);
    dst[4] = (char)res->extlen;
    dst[5] = 0;
    put16(dst + 6, res->status);
    put32(dst + 8, res->bodylen);
    put32(dst + 12, res->opaque);
    put32(dst + 16, (uint32_t)(res->cas >> 32));
    put32(dst + 20, (uint32_t)res->cas);
}

static int
fail(struct bin_req *req, uint16_t status, size_t consumed, uint64_t swallow,
     bool close)
{
    req->status = status;
    req->consumed = consumed;
    req->swallow = swallow;
    req->close = close;
    return BIN_ERROR;
}

/* The extras of a request whose body is all in (their length checked). */
static void
decode_extras(struct bin_req *req, const char *ext)
{
    switch (req->cmd) {
    case BIN_SET:
    case BIN_SETQ:
    case BIN_ADD:
    case BIN_ADDQ:
    case BIN_REPLACE:
    case BIN_REPLACEQ:
        req->flags = get32(ext);
        req->exptime = get32(ext + 4);
        break;
    case BIN_INCREMENT:
    case BIN_INCREMENTQ:
    case BIN_DECREMENT:
    case BIN_DECREMENTQ:
        req->delta = get64(ext);
        req->initial = get64(ext + 8);
        req->exptime = get32(ext + 16);
        break;
    case BIN_VERBOSITY:
        req->level = get32(ext);
        break;
    default: /* touch gat flush: an expiration, when present */
        if (req->extlen == 4)
            req->exptime = get32(ext);
        break;
    }
}

int
bin_parse(const char *buf, size_t len, uint32_t max_item, struct bin_req *req)
{
    memset(req, 0, sizeof(*req));
    req->cmd = BIN_NCMDS;
    if (len < BIN_HEADER)
        return BIN_NEED_MORE;
    req->opcode = (uint8_t)buf[1];
    req->klen = get16(buf + 2);
    req->extlen = (uint8_t)buf[4];
    req->bodylen = get32(buf + 8);
    req->opaque = get32(buf + 12);
    req->cas = get64(buf + 16);
    if ((uint8_t)buf[0] != BIN_REQ_MAGIC)
        return fail(req, BIN_EINVAL, BIN_HEADER, 0, true);
    if (req->klen > PROTO_MAX_KEY ||
        (uint32_t)req->extlen + req->klen > req->bodylen)
        return fail(req, BIN_EINVAL, BIN_HEADER, 0, true);
    uint8_t slot = by_opcode[req->opcode];
    if (slot == 0)
        return fail(req, BIN_UNKNOWN_COMMAND, BIN_HEADER, req->bodylen, false);
    req->cmd = (enum bin_cmd)(slot - 1);
    const unsigned attrs = commands[req->cmd].attrs;
    const uint8_t krule = commands[req->cmd].key;
    size_t head = (size_t)req->extlen + req->klen;
    if (req->extlen < commands[req->cmd].emin ||
        req->extlen > commands[req->cmd].emax ||
        (krule == BIN_K_REQ && req->klen == 0) ||
        (krule == BIN_K_NONE && req->klen != 0) ||
        (!(attrs & BIN_A_VALUE) && req->bodylen != head))
        return fail(req, BIN_EINVAL, BIN_HEADER, 0, true);
    req->vlen = req->bodylen - (uint32_t)head;
    if (req->vlen > max_item) {
        if (len < BIN_HEADER + head)
            return BIN_NEED_MORE;
        if (req->klen)
            req->key = buf + BIN_HEADER + req->extlen;
        return fail(req, BIN_E2BIG, BIN_HEADER + head, req->vlen, false);
    }
    if (len - BIN_HEADER < req->bodylen)
        return BIN_NEED_MORE;
    const char *body = buf + BIN_HEADER;
    if (req->klen)
        req->key = body + req->extlen;
    req->value = body + head;
    decode_extras(req, body);
    req->consumed = BIN_HEADER + (size_t)req->bodylen;
    return BIN_PARSED;
}
