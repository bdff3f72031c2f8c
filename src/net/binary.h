/*
 * binary: memcached's binary protocol, parsed by a pure function over a
 * byte buffer (no I/O, no allocation, no store access), as proto.h does for
 * the text protocol. A connection whose first byte is BIN_REQ_MAGIC speaks
 * it for its whole life (conn.c); cmd_bin.c runs the requests.
 *
 * A packet is a 24-byte header, then extras, key and value:
 *
 *   byte  0     magic      0x80 request, 0x81 response
 *         1     opcode     BIN_COMMANDS below
 *         2-3   key length (network order, as every field)
 *         4     extras length
 *         5     data type  (0; ignored)
 *         6-7   vbucket in a request, status in a response
 *         8-11  body length: extras + key + value
 *        12-15  opaque     copied into the response as it is
 *        16-23  cas
 *
 * Contract of bin_parse(buf, len, max_item, &req):
 *   - BIN_NEED_MORE (0): buf holds no complete request yet. It never asks
 *     for more than BIN_HEADER + 20 + PROTO_MAX_KEY + max_item bytes: a
 *     body that would be larger is an error as soon as its header is in.
 *   - BIN_OK (1): req describes one request of req.consumed bytes; every
 *     pointer points into buf, and the extras are decoded.
 *   - BIN_ERROR (-1): req.status is the status to answer with (its body:
 *     bin_status_text), req.consumed the bytes to drop, req.swallow a
 *     further number to discard as they arrive, req.close set when the
 *     stream can no longer be framed (the connection closes after the
 *     reply). As memcached 1.6: a key over PROTO_MAX_KEY or a body whose
 *     lengths do not fit the opcode is EINVAL and closes; an unknown opcode
 *     is UNKNOWN_COMMAND and its body is swallowed; a value over max_item
 *     is E2BIG and is swallowed (req.key is then set: a set drops the old
 *     value, as memcached's does). Unlike memcached, which closes without
 *     a word, a header whose magic is not 0x80 is answered with EINVAL
 *     before the close.
 */
#ifndef MCDB_BINARY_H
#define MCDB_BINARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BIN_HEADER 24
#define BIN_REQ_MAGIC 0x80
#define BIN_RES_MAGIC 0x81

/* memcached's status codes and the bodies its errors carry (proto_bin.c). */
#define BIN_STATUSES(X)                                                        \
    X(BIN_OK, 0x00, "")                                                        \
    X(BIN_KEY_ENOENT, 0x01, "Not found")                                       \
    X(BIN_KEY_EEXISTS, 0x02, "Data exists for key.")                           \
    X(BIN_E2BIG, 0x03, "Too large.")                                           \
    X(BIN_EINVAL, 0x04, "Invalid arguments")                                   \
    X(BIN_NOT_STORED, 0x05, "Not stored.")                                     \
    X(BIN_DELTA_BADVAL, 0x06,                                                  \
      "Non-numeric server-side value for incr or decr")                        \
    X(BIN_AUTH_ERROR, 0x20, "Auth failure.")                                   \
    X(BIN_AUTH_CONTINUE, 0x21, "")                                             \
    X(BIN_UNKNOWN_COMMAND, 0x81, "Unknown command")                            \
    X(BIN_ENOMEM, 0x82, "Out of memory")                                       \
    X(BIN_NOT_SUPPORTED, 0x83, "Not supported")                                \
    X(BIN_EINTERNAL, 0x84, "Internal error")                                   \
    X(BIN_EBUSY, 0x85, "Busy")                                                 \
    X(BIN_ETMPFAIL, 0x86, "Temporary failure")

enum bin_status {
#define X(sym, code, text) sym = code,
    BIN_STATUSES(X)
#undef X
};

/* The body of an error with this status ("" for an unknown status). */
const char *bin_status_text(uint16_t status);

/* What a command's body holds besides its extras. */
#define BIN_K_NONE 0 /* no key */
#define BIN_K_REQ 1  /* a key of 1..PROTO_MAX_KEY bytes */
#define BIN_K_OPT 2  /* a key or none */

/* Attributes (the table's last column). */
#define BIN_A_QUIET 1u   /* success is not answered (a get: a miss isn't) */
#define BIN_A_KEY 2u     /* a get's reply carries the key */
#define BIN_A_VALUE 4u   /* a value follows the key */
#define BIN_A_PREAUTH 8u /* allowed before authentication (SASL) */

/*
 * Every opcode memcached 1.6 answers, one row each: the enum, the opcode,
 * the name, the handler (cmd_bin.c), the extras' lengths allowed (min,
 * max), the key, and the attributes. A quiet twin is a row of its own with
 * the same handler and BIN_A_QUIET. The parser checks a request's shape
 * from the lengths and the key column; dispatch goes through the handler.
 * SASL (0x20-0x22): bin_sasl answers as memcached without SASL does, or
 * with --auth-file as memcached with -S (cmd_auth.c); then only the
 * commands with BIN_A_PREAUTH run before the login, as memcached's
 * (version and SASL: not noop, not quit).
 */
#define BIN_COMMANDS(X)                                                        \
    X(GET, 0x00, "get", bin_get, 0, 0, BIN_K_REQ, 0)                           \
    X(SET, 0x01, "set", bin_store, 8, 8, BIN_K_REQ, BIN_A_VALUE)               \
    X(ADD, 0x02, "add", bin_store, 8, 8, BIN_K_REQ, BIN_A_VALUE)               \
    X(REPLACE, 0x03, "replace", bin_store, 8, 8, BIN_K_REQ, BIN_A_VALUE)       \
    X(DELETE, 0x04, "delete", bin_delete, 0, 0, BIN_K_REQ, 0)                  \
    X(INCREMENT, 0x05, "incr", bin_arith, 20, 20, BIN_K_REQ, 0)                \
    X(DECREMENT, 0x06, "decr", bin_arith, 20, 20, BIN_K_REQ, 0)                \
    X(QUIT, 0x07, "quit", bin_quit, 0, 0, BIN_K_NONE, 0)                       \
    X(FLUSH, 0x08, "flush", bin_flush, 0, 4, BIN_K_NONE, 0)                    \
    X(GETQ, 0x09, "getq", bin_get, 0, 0, BIN_K_REQ, BIN_A_QUIET)               \
    X(NOOP, 0x0a, "noop", bin_noop, 0, 0, BIN_K_NONE, 0)                       \
    X(VERSION, 0x0b, "version", bin_version, 0, 0, BIN_K_NONE, BIN_A_PREAUTH)  \
    X(GETK, 0x0c, "getk", bin_get, 0, 0, BIN_K_REQ, BIN_A_KEY)                 \
    X(GETKQ, 0x0d, "getkq", bin_get, 0, 0, BIN_K_REQ, BIN_A_KEY | BIN_A_QUIET) \
    X(APPEND, 0x0e, "append", bin_store, 0, 0, BIN_K_REQ, BIN_A_VALUE)         \
    X(PREPEND, 0x0f, "prepend", bin_store, 0, 0, BIN_K_REQ, BIN_A_VALUE)       \
    X(STAT, 0x10, "stat", bin_stat, 0, 0, BIN_K_OPT, 0)                        \
    X(SETQ, 0x11, "setq", bin_store, 8, 8, BIN_K_REQ,                          \
      BIN_A_VALUE | BIN_A_QUIET)                                               \
    X(ADDQ, 0x12, "addq", bin_store, 8, 8, BIN_K_REQ,                          \
      BIN_A_VALUE | BIN_A_QUIET)                                               \
    X(REPLACEQ, 0x13, "replaceq", bin_store, 8, 8, BIN_K_REQ,                  \
      BIN_A_VALUE | BIN_A_QUIET)                                               \
    X(DELETEQ, 0x14, "deleteq", bin_delete, 0, 0, BIN_K_REQ, BIN_A_QUIET)      \
    X(INCREMENTQ, 0x15, "incrq", bin_arith, 20, 20, BIN_K_REQ, BIN_A_QUIET)    \
    X(DECREMENTQ, 0x16, "decrq", bin_arith, 20, 20, BIN_K_REQ, BIN_A_QUIET)    \
    X(QUITQ, 0x17, "quitq", bin_quit, 0, 0, BIN_K_NONE, BIN_A_QUIET)           \
    X(FLUSHQ, 0x18, "flushq", bin_flush, 0, 4, BIN_K_NONE, BIN_A_QUIET)        \
    X(APPENDQ, 0x19, "appendq", bin_store, 0, 0, BIN_K_REQ,                    \
      BIN_A_VALUE | BIN_A_QUIET)                                               \
    X(PREPENDQ, 0x1a, "prependq", bin_store, 0, 0, BIN_K_REQ,                  \
      BIN_A_VALUE | BIN_A_QUIET)                                               \
    X(VERBOSITY, 0x1b, "verbosity", bin_verbosity, 4, 4, BIN_K_NONE, 0)        \
    X(TOUCH, 0x1c, "touch", bin_get, 4, 4, BIN_K_REQ, 0)                       \
    X(GAT, 0x1d, "gat", bin_get, 4, 4, BIN_K_REQ, 0)                           \
    X(GATQ, 0x1e, "gatq", bin_get, 4, 4, BIN_K_REQ, BIN_A_QUIET)               \
    X(SASL_LIST_MECHS, 0x20, "sasl_list_mechs", bin_sasl, 0, 0, BIN_K_NONE,    \
      BIN_A_PREAUTH)                                                           \
    X(SASL_AUTH, 0x21, "sasl_auth", bin_sasl, 0, 0, BIN_K_OPT,                 \
      BIN_A_VALUE | BIN_A_PREAUTH)                                             \
    X(SASL_STEP, 0x22, "sasl_step", bin_sasl, 0, 0, BIN_K_OPT,                 \
      BIN_A_VALUE | BIN_A_PREAUTH)                                             \
    X(GATK, 0x23, "gatk", bin_get, 4, 4, BIN_K_REQ, BIN_A_KEY)                 \
    X(GATKQ, 0x24, "gatkq", bin_get, 4, 4, BIN_K_REQ, BIN_A_KEY | BIN_A_QUIET)

enum bin_cmd {
#define X(sym, op, name, run, emin, emax, key, attrs) BIN_##sym,
    BIN_COMMANDS(X)
#undef X
        BIN_NCMDS
};

enum { BIN_ERROR = -1, BIN_NEED_MORE = 0, BIN_PARSED = 1 };

struct bin_req {
    enum bin_cmd cmd; /* BIN_NCMDS: not known (BIN_ERROR only) */
    uint8_t opcode;
    uint8_t extlen;
    uint16_t klen;
    uint32_t bodylen;
    uint32_t opaque;
    uint64_t cas;
    size_t consumed;

    const char *key; /* NULL when klen is 0 */
    const char *value;
    uint32_t vlen;

    /* The extras, decoded (0 when the command has none). */
    uint32_t flags;   /* set add replace */
    uint32_t exptime; /* set add replace, incr decr, touch gat, flush */
    uint64_t delta;   /* incr decr */
    uint64_t initial; /* incr decr */
    uint32_t level;   /* verbosity */

    /* BIN_ERROR only. */
    uint16_t status;
    uint64_t swallow;
    bool close;
};

int bin_parse(const char *buf, size_t len, uint32_t max_item,
              struct bin_req *req);

/* A command's name ("unknown" past the table) and its BIN_A_* attributes. */
const char *bin_cmd_name(enum bin_cmd cmd);
unsigned bin_cmd_attrs(enum bin_cmd cmd);

/* A response's header. */
struct bin_res {
    uint8_t opcode;
    uint8_t extlen;
    uint16_t klen;
    uint16_t status;
    uint32_t bodylen;
    uint32_t opaque;
    uint64_t cas;
};

/* The 24 header bytes of res at dst. */
void bin_put_header(char *dst, const struct bin_res *res);

#endif
