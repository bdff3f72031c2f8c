/*
 * out: a connection's replies, in request order (conn.c sends them).
 *
 * A reply is an item in the connection's queue. Some are ready at once (a
 * miss, a status line); some wait: for a write's acknowledgement (the
 * engine made it durable: out_wait_ack, settled by conn_resolve) or for a
 * value read from a segment file (out_start_read, finished by
 * conn_on_read). Replies leave strictly in order, so nothing behind a
 * waiting one is sent before it settles.
 *
 * Memory. out_bytes counts every item's struct and buffers. Above
 * NET_OUT_HIGH the connection stops parsing and receiving (backpressure);
 * below NET_OUT_LOW it resumes. Items, and the buffers they own up to
 * NET_TEXT_CHUNK, go back to per-worker free lists (item_own), so that a
 * steady load of small replies calls no malloc.
 */
#ifndef MCDB_NET_OUT_H
#define MCDB_NET_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "log/store.h"

#define NET_OUT_HIGH (4u << 20) /* queued reply bytes: stop reading above */
#define NET_OUT_LOW (1u << 20)  /* ... and resume below */
#define NET_IOV_MAX 64          /* iovecs per sendmsg */
#define NET_TEXT_CHUNK (16u << 10)
#define NET_CACHE_MIN_SHIFT 9      /* recycled buffers: 512 bytes, doubling */
#define NET_CACHE_CLASSES 6        /* ... up to NET_TEXT_CHUNK */
#define NET_CACHE_BYTES (1u << 20) /* recycled bytes kept per class */
#define NET_ITEM_INLINE 40         /* reply text stored inside an item */

#include "net/proto.h"

struct conn;
struct worker;

/* When a reply is sent: always; never (noreply); only when the request
 * failed (meta's q: the nominal reply is hidden, an error never is). */
enum out_policy { OUT_ALWAYS, OUT_NEVER, OUT_ON_FAILURE };

/* A meta reply's first word. */
enum out_code { OUT_VA, OUT_HD, OUT_EN, OUT_NF, OUT_NS, OUT_EX, OUT_ME };

/*
 * The render descriptor of a meta reply: its code, then those of the
 * request's return flags (ret, in request order) that this reply shows
 * (show: PROTO_MF bits), then Z, X and W as memcached orders them. The
 * facts are what the flags print; flags and time_ms come from the record,
 * so a reply that shows f or l (or the value) is rendered once it is read.
 */
struct out_meta {
    uint8_t code;
    uint64_t show;
    const struct proto_ret *ret;
    const char *key;
    size_t klen;
    uint64_t cas;
    uint32_t flags;
    uint32_t exptime; /* absolute, 0 = never */
    uint32_t vlen;
    uint32_t size;    /* me: the record's bytes */
    uint64_t time_ms; /* written at */
    bool fetched, stale, won, token_out;
};
/* The longest line out_meta_line writes for a key of klen bytes: the code
 * and a length, each return flag once (O at most 32 bytes, the key maybe
 * in base64), Z X W, "\r\n". */
#define OUT_META_LINE_MAX(klen) (200 + 2 * (size_t)(klen))

/* The line (with "\r\n") into dst (OUT_META_LINE_MAX(m->klen) bytes); its
 * length. */
size_t out_meta_line(char *dst, const struct out_meta *m, uint32_t now);
/* The longest line out_meta_line may write for m (at most
 * OUT_META_LINE_MAX(m->klen)). */
size_t out_meta_line_max(const struct out_meta *m);
/* Whether that line shows a time (t, l, me): else now may be 0. */
bool out_meta_needs_clock(const struct out_meta *m);

/*
 * A binary reply's identity (binary.h): what its header echoes, kept with
 * a reply that is rendered later (a value read from the log, a write whose
 * ack reports a failure) so that it is framed as the request was.
 */
struct out_bin {
    uint8_t opcode;
    uint32_t opaque;
    bool quiet;    /* a miss is not answered (getq, getkq, gatq, gatkq) */
    bool with_key; /* getk, getkq, gatk, gatkq */
    bool no_value; /* touch: flags and cas only */
};

enum oi_state { OI_READY, OI_WAIT_ACK, OI_WAIT_READ };
enum oi_own { OWN_NONE, OWN_CACHED, OWN_MALLOC };

/*
 * One reply (or a run of ready replies) in request order. Its bytes are, in
 * order: text[0, len), then blob[0, blob_len), then the first trail (0, 2
 * or 7) bytes of "\r\nEND\r\n": the value's line end, and the get's END
 * when this was its last reply. The first `sent` of them have been sent.
 * Text is only ever appended, never moved, so a send in flight can point
 * into it while more is added.
 */
struct oitem {
    struct oitem *next;
    struct conn *conn;
    uint8_t state;
    uint8_t own;    /* what owned is: OWN_NONE, OWN_CACHED, OWN_MALLOC */
    uint8_t cls;    /* OWN_CACHED: the buffer's size class */
    uint8_t policy; /* WAIT_ACK: out_policy of its text */
    uint8_t trail;
    uint32_t len, cap; /* text */
    uint32_t sent;
    char *text;  /* inl, or inside owned */
    void *owned; /* released with the item (a record buffer, a chunk) */
    const char *blob;
    uint32_t blob_len;
    struct vc_entry *vref; /* blob points into this cache entry */
    size_t acct;           /* bytes counted in conn->out_bytes for this item */
    uint64_t ack;          /* WAIT_ACK */
    /* WAIT_READ: the record being read; the key follows it in owned */
    struct store_loc loc;
    void *dbuf; /* its O_DIRECT read's aligned buffer (read_direct) */
    uint16_t klen;
    bool want_cas;
    bool end; /* the get's "END\r\n" follows this reply (out_end) */
    struct out_meta *meta; /* a meta reply's descriptor, in owned */
    bool bin;              /* a binary reply: binid frames it */
    struct out_bin binid;
    char inl[NET_ITEM_INLINE];
};

/* A worker's recycled buffers of one size class (a list through their
 * first bytes). */
struct buf_cache {
    void *head;
    unsigned n;
};

/* The reply text of the queue (text items: appended to the last one). */
void out_text(struct conn *c, const char *s, size_t n);
void out_str(struct conn *c, const char *s);
void out_printf(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void out_set_text(struct conn *c, struct oitem *it, const char *s, size_t n);
void out_wait_ack(struct conn *c, uint64_t ack, const char *ok, size_t n,
                  enum out_policy policy);
/* The same for a binary reply: a failure is answered in a packet as b
 * says (b may be NULL: a text reply). */
void out_wait_ack_bin(struct conn *c, uint64_t ack, const char *ok, size_t n,
                      enum out_policy policy, const struct out_bin *b);
/* A binary packet: header h (its lengths and body length filled in from
 * the parts), then extras, key, value. */
struct bin_res;
void out_bin(struct conn *c, struct bin_res *h, const void *ext, size_t extlen,
             const void *key, size_t klen, const void *val, size_t vlen);
/* The reply to one hit, made once the record is read: get's VALUE line
 * (meta NULL) or the meta reply m describes (its value when m->code is
 * OUT_VA). m and what it points to are copied. */
void out_start_read(struct conn *c, const struct store_loc *loc,
                    const char *key, size_t klen, bool want_cas,
                    const struct out_meta *m);
/* The binary reply to one hit (GET, GETK, GAT, TOUCH... as b says). */
void out_start_read_bin(struct conn *c, const struct store_loc *loc,
                        const char *key, size_t klen, const struct out_bin *b);
void out_end(struct conn *c);

/* A read's completion (the ring's): its reply is ready. */
void conn_on_read(struct oitem *it, int res);
/* Settle the replies at the front whose acks have come. */
void conn_resolve(struct conn *c);
/* The connection no longer waits for acks (it closes). */
void out_forget_acks(struct conn *c);

/* For sending (conn.c): drop what is sent; the iovecs of the ready replies
 * at the front (at most max, leaving room for a whole item), how many. */
void out_trim(struct conn *c);
void out_consume(struct conn *c, size_t n);
int out_iov(struct conn *c, struct iovec *iov, int max);
/* Free every item (the connection is freed). */
void out_clear(struct conn *c);
/* The connection is closed: free the replies the kernel has no use for. */
void out_drop_unsent(struct conn *c);
void conn_free_caches(struct worker *w);

#endif
