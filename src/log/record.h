/*
 * record: the log's on-disk record format (see record.c for the prose
 * description). Used by the store and by the offline tools; nothing else
 * should know the byte layout.
 */
#ifndef MCDB_RECORD_H
#define MCDB_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REC_FORMAT_VERSION 1
#define REC_HDR_SIZE 40
#define REC_MAGIC "MCDBLOG\0"
#define REC_MAX_VLEN ((1u << 30) - 1) /* the index keeps 30 bits of it */

enum rec_type {
    REC_INVALID = 0,    /* never valid: zero-filled space reads as this */
    REC_PUT = 1,        /* key = value, with flags, exptime, cas */
    REC_DELETE = 2,     /* key is gone */
    REC_TOUCH = 3,      /* key's exptime changes */
    REC_FLUSH = 4,      /* items before it in the log are gone (at exptime) */
    REC_SEG_HEADER = 5, /* first record of every segment */
    REC_SEG_FOOTER = 6, /* last record of a sealed segment */
    REC_DROP = 7,       /* compaction removed the segment named in it */
};
#define REC_TYPE_SKIPPABLE                                                     \
    0x80 /* readers that do not know the type skip it                          \
          */

/* rflags */
#define REC_F_STALE 0x01 /* PUT, TOUCH: the item is stale (meta I) */
#define REC_F_CAS_CLIENT                                                       \
    0x02                /* the cas was the client's (meta E), not one          \
                           the store generated */
#define REC_F_STUB 0x04 /* PUT, TOUCH: an empty item vivified (meta N) */

struct rec {
    uint8_t type;
    uint8_t rflags;
    uint16_t klen;
    uint32_t vlen;
    uint32_t flags;
    uint32_t exptime;
    uint64_t cas;
    uint64_t time_ms;
    const char *key;
    const char *val;
};

/* Value of a segment header record. */
struct rec_seg_header {
    uint32_t version;
    uint8_t log_id[16];
    uint64_t base;      /* log offset of the segment's first byte */
    uint64_t cas_floor; /* every cas in this and later segments is >= */
};
#define REC_SEG_HEADER_VLEN 48

/* Value of a segment footer record. */
struct rec_seg_footer {
    uint64_t records; /* records in the segment, header and footer included */
    uint64_t end;     /* log offset just past this footer */
};
#define REC_SEG_FOOTER_VLEN 16
#define REC_SEG_FOOTER_SIZE (REC_HDR_SIZE + REC_SEG_FOOTER_VLEN)

/* Value of a drop record: the segment [base, end) is gone. */
struct rec_drop {
    uint64_t base;
    uint64_t end;
};
#define REC_DROP_VLEN 16

/* Decoding results (negative; 0 is never returned), below every -errno so
 * that a caller that also meets system errors cannot confuse the two (the
 * log's other codes: hint.h -1101..., index.h -2001). */
enum {
    REC_E_SHORT = -1001,   /* the header says the record runs past the data */
    REC_E_ZERO = -1002,    /* type 0: zero-filled or never written */
    REC_E_HEADER = -1003,  /* impossible lengths or unknown type */
    REC_E_CHECKSUM = -1004 /* checksum mismatch */
};
const char *rec_strerror(int err);

static inline size_t
rec_size(size_t klen, size_t vlen)
{
    return REC_HDR_SIZE + klen + vlen;
}

/* The per-log part of every record's checksum seed. */
uint64_t rec_log_seed(const uint8_t log_id[16]);

/*
 * Encode r (key and val copied) at dst, which will sit at log offset off.
 * dst must have rec_size(r->klen, r->vlen) bytes. val may be NULL when the
 * caller has already placed the value at dst + REC_HDR_SIZE + klen; likewise
 * key. Returns the record's size.
 */
size_t rec_encode(void *dst, const struct rec *r, uint64_t log_seed,
                  uint64_t off);

/*
 * Decode the record at buf (avail bytes available) that sits at log offset
 * off. Returns its size (> 0) with *r pointing into buf, or a REC_E_* code.
 */
long rec_decode(const void *buf, size_t avail, uint64_t log_seed, uint64_t off,
                struct rec *r);

void rec_seg_header_encode(char out[REC_SEG_HEADER_VLEN],
                           const struct rec_seg_header *h);
int rec_seg_header_decode(const struct rec *r, struct rec_seg_header *h);
/* r is the header of a segment of this log that starts at offset off. */
bool rec_seg_header_is(const struct rec *r, const uint8_t log_id[16],
                       uint64_t off);
void rec_seg_footer_encode(char out[REC_SEG_FOOTER_VLEN],
                           const struct rec_seg_footer *f);
int rec_seg_footer_decode(const struct rec *r, struct rec_seg_footer *f);
void rec_drop_encode(char out[REC_DROP_VLEN], const struct rec_drop *d);
int rec_drop_decode(const struct rec *r, struct rec_drop *d);

#endif
