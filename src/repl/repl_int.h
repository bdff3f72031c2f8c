/*
 * What the files of src/repl share: the wire format (stream.c), the plan
 * that decides how a replica resumes (fork.c), the handshake's MACs
 * (auth.c), and the two sides (primary.c, replica.c).
 */
#ifndef MCDB_REPL_INT_H
#define MCDB_REPL_INT_H

#include "log/store.h"
#include "repl/repl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- stream.c: frames ---- */

#define RS_HDR 16
#define RS_MAX_PAYLOAD (16u << 20)
#define RS_DATA_CHUNK (1u << 20) /* log bytes in one DATA frame, at most */
#define RS_NONCE 32
#define RS_MAC 32
#define RS_MAGIC "MCDBREPL"

/* name, value, who sends it */
#define RS_TYPES(X)                                                            \
    X(RS_HELLO, 1, "primary: version, whether it wants a MAC, its nonce")      \
    X(RS_IDENT, 2, "replica: its MAC, log id, offsets, history")               \
    X(RS_PLAN, 3, "primary: how the replica resumes, the primary's history")   \
    X(RS_DATA, 4, "primary: log bytes at offset `off`")                        \
    X(RS_PING, 5, "primary: its durable offset (`off`) and clock")             \
    X(RS_ACK, 6, "replica: the offset it has made durable (`off`)")            \
    X(RS_ERROR, 7, "either: why it closes the link (text)")

enum rs_type {
#define X(name, value, what) name = value,
    RS_TYPES(X)
#undef X
};
const char *rs_type_name(int type);

/* Frame header: u8 type, u8 0, u16 0, u32 payload length, u64 offset;
 * little-endian; then the payload. */
struct rs_frame {
    uint8_t type;
    uint32_t len;
    uint64_t off;
    const char *payload;
};

enum { RS_E_TYPE = -1, RS_E_LENGTH = -2, RS_E_BODY = -3 };
const char *rs_strerror(int err);

void rs_header(char out[RS_HDR], uint8_t type, uint32_t len, uint64_t off);
/* The frame at buf: its whole size (> 0), 0 when more bytes are needed, or
 * RS_E_TYPE / RS_E_LENGTH. */
long rs_decode(const void *buf, size_t len, struct rs_frame *f);

struct rs_hello {
    uint32_t version;
    bool auth; /* the primary wants a MAC */
    uint8_t nonce[RS_NONCE];
};

struct rs_ident {
    uint32_t version;
    uint8_t nonce[RS_NONCE];
    uint8_t mac[RS_MAC]; /* zeros without a secret */
    uint16_t port;       /* the replica's client port, for stats */
    bool has_log;
    uint8_t log_id[16];
    uint64_t start, end; /* its log: [start, end) */
    uint64_t last_off;   /* its last record's offset ... */
    uint64_t last_sum;   /* ... and checksum field (end > start) */
    size_t nepochs;
    struct logdir_epoch epochs[LOGDIR_MAX_EPOCHS];
};

enum rs_mode { RS_CONTINUE = 1, RS_FULL = 2 };

struct rs_plan {
    uint8_t mac[RS_MAC];
    uint8_t mode;       /* RS_CONTINUE or RS_FULL */
    bool keep_old;      /* FULL: the replica's old files move aside */
    uint64_t fork;      /* CONTINUE: cut the replica's log here first */
    uint64_t from;      /* DATA frames start here */
    uint64_t copy_end;  /* FULL: the copy is whole at this offset */
    uint8_t log_id[16]; /* the primary's log and history */
    size_t nepochs;
    struct logdir_epoch epochs[LOGDIR_MAX_EPOCHS];
    char why[160]; /* for the logs: why this plan */
};

/* Payload encoders return the payload's size; out must have room
 * (RS_MAX_BODY). Decoders return 0 or RS_E_BODY. */
#define RS_MAX_BODY (512 + 24 * LOGDIR_MAX_EPOCHS)
size_t rs_hello_encode(char *out, const struct rs_hello *h);
int rs_hello_decode(const struct rs_frame *f, struct rs_hello *h);
size_t rs_ident_encode(char *out, const struct rs_ident *m);
int rs_ident_decode(const struct rs_frame *f, struct rs_ident *m);
size_t rs_plan_encode(char *out, const struct rs_plan *p);
int rs_plan_decode(const struct rs_frame *f, struct rs_plan *p);

/* Blocking I/O on a socket. rs_send writes a whole frame (0 or -errno).
 * rs_recv waits up to timeout_ms for one whole frame, keeping what it read
 * beyond it in r; 0 with *f set (its payload points into r, valid until
 * the next rs_recv), -ETIMEDOUT, -ECONNRESET at EOF, -EPROTO on a
 * malformed frame, or -errno. stop (may be NULL) is checked between waits
 * of at most 100 ms (-ECANCELED). */
int rs_send(int fd, uint8_t type, uint64_t off, const void *payload,
            uint32_t len);
struct rs_reader {
    int fd;
    char *buf;
    size_t len, cap, used; /* buf[used, len) is unread */
};
int rs_recv(struct rs_reader *r, struct rs_frame *f, int timeout_ms,
            const atomic_bool *stop);
void rs_reader_free(struct rs_reader *r);

/* ---- fork.c: how a replica resumes ---- */

/* One side's log as the handshake describes it. */
struct repl_side {
    bool has_log;
    const uint8_t *log_id;
    uint64_t start, end;
    size_t nepochs;
    const struct logdir_epoch *epochs;
};

/*
 * Where the replica's log stops agreeing with the primary's (the fork
 * point) and how it resumes: CONTINUE from the fork (after cutting its
 * log there when it is longer), or a FULL copy when the primary no longer
 * has the bytes from the fork or the logs share nothing; keep_old when the
 * replica's old log holds bytes the primary never had. why says which.
 */
void repl_plan(const struct repl_side *replica, const struct repl_side *primary,
               struct rs_plan *plan);

/* ---- auth.c: challenge-response with a shared secret ---- */

struct repl_key {
    bool set;
    uint8_t key[32];
};
/* Derive the key from a secret file's contents; 0 or -1 with err. */
int repl_key_load(struct repl_key *k, const char *path, char *err,
                  size_t errlen);
void repl_nonce(uint8_t nonce[RS_NONCE]);
/* The MAC of one side ("replica" or "primary") over the primary's and
 * the replica's nonces. */
void repl_mac(const struct repl_key *k, const char *side,
              const uint8_t np[RS_NONCE], const uint8_t nr[RS_NONCE],
              uint8_t mac[RS_MAC]);
bool repl_mac_ok(const struct repl_key *k, const char *side,
                 const uint8_t np[RS_NONCE], const uint8_t nr[RS_NONCE],
                 const uint8_t mac[RS_MAC]);

/* ---- the two sides ---- */

/* A "stats repl" figure that is a number. */
void repl_stat_u64(void (*fn)(void *, const char *, const char *), void *arg,
                   const char *name, uint64_t v);

struct repl_primary;
struct repl_replica;

struct repl {
    struct repl_config cfg;
    char *replica_of;
    char *secret_file;
    struct repl_key key;
    store_t *store;
    pthread_mutex_t mu;           /* the role's side below */
    struct repl_primary *primary; /* while this server is a primary */
    struct repl_replica *replica; /* while it is a replica */
};

int primary_start(struct repl *r, char *err, size_t errlen);
void primary_adopt(struct repl_primary *p, int fd, const void *bytes, size_t n);
void primary_stats(struct repl_primary *p,
                   void (*fn)(void *arg, const char *name, const char *value),
                   void *arg);
void primary_stats_reset(struct repl_primary *p);
void primary_stop(struct repl_primary *p);

int replica_start(struct repl *r, char *err, size_t errlen);
void replica_stats(struct repl_replica *rp,
                   void (*fn)(void *arg, const char *name, const char *value),
                   void *arg);
void replica_stop(struct repl_replica *rp);

#endif
