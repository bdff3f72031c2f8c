/*
 * proto: memcached's text protocol, parsed by a pure function over a byte
 * buffer. No I/O, no allocation, no store access: the caller hands it the
 * bytes it has received and gets back one request (or "need more bytes", or
 * an error reply). The reference for every command and error string is
 * memcached's doc/protocol.txt.
 *
 * Contract of proto_parse(buf, len, max_item, &req):
 *   - returns PROTO_NEED_MORE (0) when buf holds no complete request yet; the
 *     caller keeps the bytes and calls again with more. A line without "\n"
 *     that is already longer than PROTO_MAX_LINE is an error, so a client
 *     cannot make the caller buffer without bound.
 *   - returns PROTO_OK (1) with req filled: req.consumed bytes (command line
 *     and, for storage commands, the data block and its "\r\n") make up the
 *     request. Every pointer in req points into buf.
 *   - returns PROTO_ERROR (-1) with req.reply set to the exact reply to send
 *     (e.g. "ERROR\r\n", "CLIENT_ERROR bad data chunk\r\n"), req.consumed the
 *     bytes to drop, req.swallow a further number of bytes to discard as they
 *     arrive (the data block of a value that is too large), and req.close set
 *     when the connection must be closed after the reply (the stream can no
 *     longer be framed, as memcached does for an over-long line).
 * Lines end in "\r\n" or a bare "\n". Tokens are separated by spaces.
 */
#ifndef MCDB_PROTO_H
#define MCDB_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAX_KEY 250
#define PROTO_MAX_LINE 8192 /* longest command line accepted, "\r\n" included;
                              get/gets/gat/gats lines may be max_item longer */

/* Every command: the enum and the names come from this one table. */
#define PROTO_COMMANDS(X)                                                      \
    X(GET, "get")                                                              \
    X(GETS, "gets")                                                            \
    X(GAT, "gat")                                                              \
    X(GATS, "gats")                                                            \
    X(SET, "set")                                                              \
    X(ADD, "add")                                                              \
    X(REPLACE, "replace")                                                      \
    X(APPEND, "append")                                                        \
    X(PREPEND, "prepend")                                                      \
    X(CAS, "cas")                                                              \
    X(INCR, "incr")                                                            \
    X(DECR, "decr")                                                            \
    X(DELETE, "delete")                                                        \
    X(TOUCH, "touch")                                                          \
    X(FLUSH_ALL, "flush_all")                                                  \
    X(VERSION, "version")                                                      \
    X(VERBOSITY, "verbosity")                                                  \
    X(QUIT, "quit")                                                            \
    X(STATS, "stats")                                                          \
    X(REPLICATE, "mcdb_replicate")                                             \
    X(PROMOTE, "promote")

enum proto_cmd {
#define X(sym, name) PROTO_##sym,
    PROTO_COMMANDS(X)
#undef X
    PROTO_NCMDS
};

enum { PROTO_ERROR = -1, PROTO_NEED_MORE = 0, PROTO_OK = 1 };

struct proto_req {
    enum proto_cmd cmd;
    size_t consumed;     /* bytes of buf this request (or error) used */

    /* One key (storage, incr/decr, delete, touch). For get/gets/gat/gats use
     * proto_next_key() over keys/keys_len instead: they may name many keys. */
    const char *key;
    size_t klen;
    const char *keys;    /* get family: the key list, space separated */
    size_t keys_len;

    uint32_t flags;      /* storage commands: client flags */
    int64_t exptime;     /* storage, touch, gat/gats: exptime as sent */
    uint32_t bytes;      /* storage commands: data length */
    const char *data;    /* storage commands: the data block (bytes long) */
    uint64_t cas;        /* cas: the unique sent by the client */
    uint64_t delta;      /* incr/decr */
    int64_t delay;       /* flush_all: optional delay, 0 when absent */
    uint32_t level;      /* verbosity; mcdb_replicate: protocol version */
    const char *arg;     /* stats: the argument after "stats" (may be empty) */
    size_t arg_len;
    bool noreply;

    /* PROTO_ERROR only. */
    const char *reply;
    uint64_t swallow;
    bool close;
};

int proto_parse(const char *buf, size_t len, uint32_t max_item,
                struct proto_req *req);

/* Iterate the keys of a get-family request: returns false at the end.
 * *pos starts at 0. */
bool proto_next_key(const struct proto_req *req, size_t *pos,
                    const char **key, size_t *klen);

/* The command's name, e.g. "get". */
const char *proto_cmd_name(enum proto_cmd cmd);

#endif
