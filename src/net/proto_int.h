/*
 * proto_int.h: what the parsers of the text protocol share (proto.c for
 * the classic commands, meta.c for the meta commands, admin.c for
 * memcached's admin commands): one command line split into tokens, the
 * number and key rules, and the error exit. Nothing here does I/O.
 */
#ifndef MCDB_PROTO_INT_H
#define MCDB_PROTO_INT_H

#include "net/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Tokens kept per line: meta's limit (memcached 1.6.18 answers a meta line
 * of 20 tokens or more with "options flags too long") is the longest. */
#define PROTO_MAX_TOKENS 20

struct tok {
    const char *p;
    size_t n;
};

/* One command line, split into tokens. */
struct line {
    const char *buf; /* the whole input */
    size_t len;
    size_t next; /* offset just past the line's "\n" */
    struct tok tok[PROTO_MAX_TOKENS];
    size_t ntok; /* tokens on the line; the first PROTO_MAX_TOKENS in tok */
    const char *last_end; /* one past the last token */
};

/* Set req's error (its reply from the table in proto.h) and consume. */
int proto_fail(struct proto_req *req, enum proto_err err, size_t consumed);

/* Decimal digits only, value <= max (max >= 9). */
bool proto_u64(struct tok t, uint64_t max, uint64_t *out);
/* Optional '-', then digits; within int32 as memcached's safe_strtol. */
bool proto_i32(struct tok t, int64_t *out);
/* 1..PROTO_MAX_KEY bytes, no control character, no space. */
bool proto_key_ok(const char *p, size_t n);

/* The data block after a storage line whose req->bytes is set: PROTO_OK
 * with req->data, PROTO_NEED_MORE, or the bad-chunk error. */
int proto_data(const struct line *l, struct proto_req *req);

static inline bool
tok_is(struct tok t, const char *s)
{
    size_t n = strlen(s);

    return t.n == n && memcmp(t.p, s, n) == 0;
}

/* The last token is "noreply" (false on a line longer than tok holds). */
static inline bool
last_is_noreply(const struct line *l)
{
    return l->ntok >= 2 && l->ntok <= PROTO_MAX_TOKENS &&
           tok_is(l->tok[l->ntok - 1], "noreply");
}

/* The parsers of meta.c and admin.c (the table's parser column). */
int meta_parse(const struct line *l, uint32_t max_item, struct proto_req *req);
int meta_parse_me(const struct line *l, uint32_t max_item,
                  struct proto_req *req);
int admin_parse(const struct line *l, uint32_t max_item, struct proto_req *req);

#endif
