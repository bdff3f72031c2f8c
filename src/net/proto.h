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
#define PROTO_MAX_BYTES                                                        \
    (INT32_MAX - 2) /* a data length beyond is malformed                       \
                     */
#define PROTO_MAX_LINE                                                         \
    8192 /* longest command line accepted, "\r\n" included;                    \
           get/gets/gat/gats lines may be max_item longer */

/* What a command is, beside its name (the table's last column). */
#define PROTO_A_KEYS                                                           \
    1u                   /* a list of keys: its line may be as long as the     \
                            largest value (libmemcached sends 1,000 keys) */
#define PROTO_A_WRITE 2u /* it changes the store */
#define PROTO_A_DATA 4u  /* a data block follows its line */
#define PROTO_A_META 8u  /* a meta command: its errors are always sent */

/*
 * Every command, one row each: the enum, its name, the parser that reads
 * its line (proto.c), the handler that runs it (cmd.c) and its attributes.
 * Both switches (parse, execute) and the line limits come from this table.
 */
#define PROTO_COMMANDS(X)                                                      \
    X(GET, "get", parse_get, cmd_get, PROTO_A_KEYS)                            \
    X(GETS, "gets", parse_get, cmd_gets, PROTO_A_KEYS)                         \
    X(MG, "mg", meta_parse, cmd_mg, PROTO_A_META | PROTO_A_WRITE)              \
    X(MS, "ms", meta_parse, cmd_ms,                                            \
      PROTO_A_META | PROTO_A_WRITE | PROTO_A_DATA)                             \
    X(GAT, "gat", parse_get, cmd_gat, PROTO_A_KEYS | PROTO_A_WRITE)            \
    X(GATS, "gats", parse_get, cmd_gats, PROTO_A_KEYS | PROTO_A_WRITE)         \
    X(SET, "set", parse_storage, cmd_store, PROTO_A_WRITE | PROTO_A_DATA)      \
    X(ADD, "add", parse_storage, cmd_store, PROTO_A_WRITE | PROTO_A_DATA)      \
    X(REPLACE, "replace", parse_storage, cmd_store,                            \
      PROTO_A_WRITE | PROTO_A_DATA)                                            \
    X(APPEND, "append", parse_storage, cmd_store,                              \
      PROTO_A_WRITE | PROTO_A_DATA)                                            \
    X(PREPEND, "prepend", parse_storage, cmd_store,                            \
      PROTO_A_WRITE | PROTO_A_DATA)                                            \
    X(CAS, "cas", parse_storage, cmd_store, PROTO_A_WRITE | PROTO_A_DATA)      \
    X(INCR, "incr", parse_key_number, cmd_arith, PROTO_A_WRITE)                \
    X(DECR, "decr", parse_key_number, cmd_arith, PROTO_A_WRITE)                \
    X(DELETE, "delete", parse_delete, cmd_delete, PROTO_A_WRITE)               \
    X(TOUCH, "touch", parse_key_number, cmd_touch, PROTO_A_WRITE)              \
    X(FLUSH_ALL, "flush_all", parse_flush_all, cmd_flush, PROTO_A_WRITE)       \
    X(VERSION, "version", parse_bare, cmd_version, 0)                          \
    X(VERBOSITY, "verbosity", parse_verbosity, cmd_verbosity, 0)               \
    X(QUIT, "quit", parse_bare, cmd_quit, 0)                                   \
    X(STATS, "stats", parse_stats, cmd_stats, 0)                               \
    X(MD, "md", meta_parse, cmd_md, PROTO_A_META | PROTO_A_WRITE)              \
    X(MA, "ma", meta_parse, cmd_ma, PROTO_A_META | PROTO_A_WRITE)              \
    X(MN, "mn", parse_bare, cmd_mn, PROTO_A_META)                              \
    X(ME, "me", meta_parse_me, cmd_me, PROTO_A_META)                           \
    X(BGET, "bget", parse_get, cmd_get, PROTO_A_KEYS)                          \
    X(SLABS, "slabs", admin_parse, cmd_answer, 0)                              \
    X(LRU_CRAWLER, "lru_crawler", admin_parse, cmd_answer, 0)                  \
    X(LRU, "lru", admin_parse, cmd_answer, 0)                                  \
    X(WATCH, "watch", admin_parse, cmd_answer, 0)                              \
    X(CACHE_MEMLIMIT, "cache_memlimit", admin_parse, cmd_answer, 0)            \
    X(SHUTDOWN, "shutdown", admin_parse, cmd_answer, 0)                        \
    X(REPLICATE, "mcdb_replicate", parse_replicate, cmd_replicate, 0)          \
    X(PROMOTE, "promote", parse_promote, cmd_promote, PROTO_A_WRITE)

/*
 * The parser's errors, each with its exact reply (memcached's words).
 */
#define PROTO_ERRORS(X)                                                        \
    X(PE_ERROR, "ERROR")                                                       \
    X(PE_BAD_FORMAT, "CLIENT_ERROR bad command line format")                   \
    X(PE_BAD_DELTA, "CLIENT_ERROR invalid numeric delta argument")             \
    X(PE_BAD_EXPTIME, "CLIENT_ERROR invalid exptime argument")                 \
    X(PE_DELETE_USAGE,                                                         \
      "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]")  \
    X(PE_TOO_LARGE, "SERVER_ERROR object too large for cache")                 \
    X(PE_BAD_CHUNK, "CLIENT_ERROR bad data chunk")                             \
    X(PE_LINE_TOO_LONG, "CLIENT_ERROR line too long")                          \
    X(PE_HTTP, "") /* an HTTP request: closed without a reply */               \
    X(PE_META_DUP, "CLIENT_ERROR duplicate flag")                              \
    X(PE_META_INVALID, "CLIENT_ERROR invalid flag")                            \
    X(PE_META_TOKEN, "CLIENT_ERROR bad token in command line format")          \
    X(PE_META_M_LENGTH, "CLIENT_ERROR incorrect length for M token")           \
    X(PE_META_INITIAL, "CLIENT_ERROR invalid numeric initial value")           \
    X(PE_META_DELTA, "CLIENT_ERROR invalid numeric delta value")               \
    X(PE_META_KEY, "CLIENT_ERROR error decoding key")                          \
    X(PE_META_OPAQUE, "CLIENT_ERROR opaque token too long")                    \
    X(PE_MG_TOO_MANY, "CLIENT_ERROR options flags are too long")               \
    X(PE_META_TOO_MANY, "CLIENT_ERROR options flags too long")                 \
    X(PE_META_FLAGS, "CLIENT_ERROR invalid or duplicate flag")                 \
    X(PE_MS_MODE, "CLIENT_ERROR invalid mode for ms M token")                  \
    X(PE_MA_MODE, "CLIENT_ERROR invalid mode for ma M token")

enum proto_err {
    PE_NONE,
#define X(code, text) code,
    PROTO_ERRORS(X)
#undef X
};

/* The reply to an error, "\r\n" included. */
const char *proto_err_reply(enum proto_err err);

enum proto_cmd {
#define X(sym, name, parse, run, attrs) PROTO_##sym,
    PROTO_COMMANDS(X)
#undef X
        PROTO_NCMDS
};

enum { PROTO_ERROR = -1, PROTO_NEED_MORE = 0, PROTO_OK = 1 };

/* A meta flag's bit in proto_meta.has: PROTO_MF('v'). */
#define PROTO_MF(c) (1ull << ((c) - 'A'))

/* What a meta reply echoes: the flags in request order (each command's
 * reply shows the ones it has), the opaque token, and whether the key came
 * in base64 (k then shows it so, followed by " b"). */
struct proto_ret {
    char flags[20];
    uint8_t n;
    uint8_t olen;
    bool b64;
    char opaque[32]; /* the O token as sent, 'O' included */
};

/* A meta command's flags (meta.c's top comment says what each means). */
struct proto_meta {
    uint64_t has; /* PROTO_MF(flag) for each flag present */
    struct proto_ret ret;
    bool opaque_too_long;
    char mode;               /* M */
    int64_t ttl;             /* T */
    int64_t vivify_ttl;      /* N */
    int64_t recache_ttl;     /* R */
    uint32_t client_flags;   /* F */
    uint64_t cas;            /* C */
    uint64_t cas_new;        /* E */
    uint64_t cas_below;      /* V (mcdb's): ms only over a cas below this */
    uint64_t initial;        /* J */
    uint64_t delta;          /* D, 1 without */
    char key[PROTO_MAX_KEY]; /* b: the decoded key (req.key points here) */
};

struct proto_req {
    enum proto_cmd cmd;
    size_t consumed; /* bytes of buf this request (or error) used */

    /* One key (storage, incr/decr, delete, touch). For get/gets/gat/gats use
     * proto_next_key() over keys/keys_len instead: they may name many keys. */
    const char *key; /* meta with b: the decoded key, in meta.key */
    size_t klen;
    const char *keys; /* get family: the key list, space separated */
    size_t keys_len;

    uint32_t flags;   /* storage commands: client flags */
    int64_t exptime;  /* storage, touch, gat/gats: exptime as sent */
    uint32_t bytes;   /* storage commands: data length */
    const char *data; /* storage commands: the data block (bytes long) */
    uint64_t cas;     /* cas: the unique sent by the client */
    uint64_t delta;   /* incr/decr */
    int64_t delay;    /* flush_all: optional delay, 0 when absent */
    uint32_t level;   /* verbosity; mcdb_replicate: protocol version */
    const char *arg;  /* stats: the argument after "stats" (may be empty) */
    size_t arg_len;
    bool noreply;
    const char *answer; /* admin commands: the whole reply, without "\r\n" */
    bool dump;          /* lru_crawler metadump: list every key (cmd.c) */

    /* PROTO_ERROR only. */
    enum proto_err err;
    const char *reply; /* proto_err_reply(err) */
    uint64_t swallow;
    bool close;

    /* mg ms md ma me only (the other parsers leave it as it was). */
    struct proto_meta meta;
};

int proto_parse(const char *buf, size_t len, uint32_t max_item,
                struct proto_req *req);

/* Iterate the keys of a get-family request: returns false at the end.
 * *pos starts at 0. */
bool proto_next_key(const struct proto_req *req, size_t *pos, const char **key,
                    size_t *klen);

/* The command's name, e.g. "get", and its PROTO_A_* attributes. */
const char *proto_cmd_name(enum proto_cmd cmd);
unsigned proto_cmd_attrs(enum proto_cmd cmd);

#endif
