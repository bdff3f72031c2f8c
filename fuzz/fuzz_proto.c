/*
 * fuzz_proto: memcached's text protocol parser (src/net/proto.h) over
 * arbitrary bytes, pipelined as a connection feeds it (src/net/conn.c):
 * parse requests one after another until it needs more bytes, drop what an
 * error says to drop (consumed, then swallow), stop at a close.
 *
 * Input: byte 0 picks max_item (the table below), the rest is the stream.
 * Checked, per proto.h's contract:
 *   - consumed is within what was given and never 0 on PROTO_OK or
 *     PROTO_ERROR; a request ends with its line's "\n" (or the data's
 *     "\r\n");
 *   - every pointer (key, keys, data, arg) lies inside the request's bytes
 *     (a meta command's base64 key: inside req.meta.key); keys (those of
 *     proto_next_key too) are 1..PROTO_MAX_KEY bytes without control
 *     characters or spaces; a command with a data block (PROTO_A_DATA) has
 *     its data followed by "\r\n"; an error's reply is its code's (from
 *     proto_err_reply) and ends in "\r\n", or is empty and closes.
 *   - PROTO_NEED_MORE never comes with more bytes pending than one line,
 *     one value and one resync allow, so a client cannot make the server
 *     buffer without bound.
 */
#include "fuzz.h"
#include "net/proto.h"

static const uint32_t max_items[8] = {1u << 20, 0,    1,    5,
                                      100,      1000, 8192, UINT32_MAX};

static int
inside(const char *buf, size_t n, const char *p, size_t len)
{
    return p >= buf && p <= buf + n && len <= (size_t)(buf + n - p);
}

static int
key_ok(const char *k, size_t n)
{
    if (n == 0 || n > PROTO_MAX_KEY)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] <= ' ' || (unsigned char)k[i] == 0x7f)
            return 0;
    return 1;
}

/* A key is in the request's bytes, or a meta command's decoded base64 key
 * in req->meta.key (1..PROTO_MAX_KEY bytes, any value). */
static void
check_key(const char *p, size_t n, const struct proto_req *req, int ok)
{
#ifdef PROTO_A_META
    if (inside(req->meta.key, sizeof(req->meta.key), req->key, req->klen)) {
        FUZZ_CHECK(proto_cmd_attrs(req->cmd) & PROTO_A_META);
        FUZZ_CHECK(req->meta.ret.b64);
        FUZZ_CHECK(req->klen >= 1 && req->klen <= PROTO_MAX_KEY);
        return;
    }
#endif
    FUZZ_CHECK(inside(p, n, req->key, req->klen));
    if (ok)
        FUZZ_CHECK(key_ok(req->key, req->klen));
}

static void
check_keys(const char *p, const struct proto_req *req)
{
    size_t pos = 0, nkeys = 0;
    const char *k;
    size_t klen;

    FUZZ_CHECK(req->keys != NULL && req->keys_len > 0);
    FUZZ_CHECK(inside(p, req->consumed, req->keys, req->keys_len));
    while (proto_next_key(req, &pos, &k, &klen)) {
        FUZZ_CHECK(inside(req->keys, req->keys_len, k, klen));
        FUZZ_CHECK(key_ok(k, klen));
        FUZZ_CHECK(pos <= req->keys_len);
        nkeys++;
    }
    FUZZ_CHECK(nkeys >= 1);
    FUZZ_CHECK(!proto_next_key(req, &pos, &k, &klen)); /* stays at the end */
}

static void
check_ok(const char *p, size_t left, const struct proto_req *req)
{
    size_t n = req->consumed;
    unsigned attrs = proto_cmd_attrs(req->cmd);

    FUZZ_CHECK(req->cmd < PROTO_NCMDS);
    FUZZ_CHECK(strcmp(proto_cmd_name(req->cmd), "unknown") != 0);
    FUZZ_CHECK(req->reply == NULL && req->err == PE_NONE);
    FUZZ_CHECK(req->swallow == 0 && !req->close);
    FUZZ_CHECK(n > 0 && n <= left);
    FUZZ_CHECK(p[n - 1] == '\n');
    if (attrs & PROTO_A_KEYS)
        check_keys(p, req);
    if (req->key != NULL)
        check_key(p, n, req, 1);
    if (attrs & PROTO_A_DATA) {
        FUZZ_CHECK(req->key != NULL);
        FUZZ_CHECK(req->data != NULL && inside(p, n, req->data, req->bytes));
        FUZZ_CHECK(req->data + req->bytes + 2 == p + n);
        FUZZ_CHECK(req->data[req->bytes] == '\r');
    } else {
        FUZZ_CHECK(req->data == NULL);
    }
    if (req->arg != NULL)
        FUZZ_CHECK(inside(p, n, req->arg, req->arg_len));
    if (req->cmd == PROTO_STATS)
        FUZZ_CHECK(req->arg != NULL);
}

static void
check_error(const char *p, size_t left, const struct proto_req *req)
{
    size_t rlen;

    FUZZ_CHECK(req->cmd <= PROTO_NCMDS);
    FUZZ_CHECK(req->consumed > 0 && req->consumed <= left);
    FUZZ_CHECK(req->err != PE_NONE && req->reply != NULL);
    rlen = strlen(req->reply);
    if (rlen == 0) {
        FUZZ_CHECK(req->close); /* closed without a reply */
    } else {
        FUZZ_CHECK(req->reply == proto_err_reply(req->err));
        FUZZ_CHECK(rlen > 2 && strcmp(req->reply + rlen - 2, "\r\n") == 0);
        FUZZ_CHECK(strncmp(req->reply, "ERROR", 5) == 0 ||
                   strncmp(req->reply, "CLIENT_ERROR ", 13) == 0 ||
                   strncmp(req->reply, "SERVER_ERROR ", 13) == 0);
    }
    if (req->key != NULL)
        check_key(p, req->consumed, req, 0);
    if (req->swallow)
        FUZZ_CHECK(req->swallow >= 2 &&
                   req->swallow <= (uint64_t)PROTO_MAX_BYTES + 2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t max_item = max_items[data[0] & 7];
    const char *p = (const char *)data + 1;
    size_t left = size - 1;

    for (;;) {
        struct proto_req req;
        int rc = proto_parse(p, left, max_item, &req);

        if (rc == PROTO_NEED_MORE) {
            /* one line, one value with its "\r\n", one resync */
            FUZZ_CHECK(left < 2 * (uint64_t)PROTO_MAX_LINE + max_item + 2);
            break;
        }
        FUZZ_CHECK(rc == PROTO_OK || rc == PROTO_ERROR);
        if (rc == PROTO_OK)
            check_ok(p, left, &req);
        else
            check_error(p, left, &req);
        p += req.consumed;
        left -= req.consumed;
        if (rc == PROTO_ERROR) {
            if (req.close)
                break;
            uint64_t skip = req.swallow < left ? req.swallow : left;
            p += skip;
            left -= (size_t)skip;
        }
    }
    return 0;
}
