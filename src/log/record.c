/*
 * The log format, version 1.
 *
 * THE LOG is one byte stream whose offsets only grow. It is stored in segment
 * files named by the log offset of their first byte, 20 decimal digits:
 * 00000000000067108864.seg holds the bytes [67108864, 67108864 + file size).
 * Every byte of a segment file is part of the stream, its header too, so
 * "log offset = segment base + position in file" holds everywhere and a
 * replica's files are byte-identical to its primary's. The next segment
 * starts exactly where the previous one ends.
 *
 * A RECORD is a 40-byte header, then the key, then the value. All integers
 * are little-endian. Records never span segments.
 *
 *   0  u64  checksum  xxh3_64 of bytes [8, end of record), seeded with
 *                     seed = xxh3_64(log id) ^ (offset * 0x9E3779B97F4A7C15)
 *                     so that a record copied into another log, to another
 *                     offset, or left over in a reused file never validates.
 *                     (The multiplier is odd, so distinct offsets give
 *                     distinct seeds.)
 *   8  u8   type      REC_PUT, REC_DELETE, REC_TOUCH, REC_FLUSH,
 *                     REC_SEG_HEADER, REC_SEG_FOOTER, REC_DROP; 0 is never
 *                     valid so
 *                     that zero-filled space reads as "no record". Types
 *                     with the high bit (0x80) set may be skipped by readers
 *                     that do not know them; any other unknown type is an
 *                     error.
 *   9  u8   rflags    REC_F_STALE: a PUT of a stale value (meta ms I), a
 *                     TOUCH that marks the item stale (md I);
 *                     REC_F_CAS_CLIENT: the cas is one a client chose
 *                     (meta E) or one kept from before (touch, a copy by
 *                     compaction): it moves the next cas only when near
 *                     its write time (apply.c rule 5);
 *                     REC_F_STUB: a PUT of the empty item meta's N
 *                     vivified, not yet filled (or a TOUCH of one): after
 *                     a restart its next reader wins the recache; the
 *                     other bits are 0
 *  10  u16  klen      key length: 1..250 for PUT/DELETE/TOUCH, else 0
 *  12  u32  vlen      value length (under 1 GiB)
 *  16  u32  flags     memcached's opaque client flags
 *  20  u32  exptime   absolute unix seconds, 0 = never. TOUCH: the new
 *                     exptime. FLUSH: when it takes effect (0 = at once).
 *  24  u64  cas       cas unique; the ones the store generates are a
 *                     clock in unix microseconds that grows with the log
 *                     and across restarts (store.h: Versions). TOUCH: the
 *                     item's cas from now on (md I gives it a new one).
 *  32  u64  time      wall-clock write time, unix milliseconds
 *  40       key bytes, then value bytes
 *
 * A SEGMENT starts with a REC_SEG_HEADER record (empty key) whose 48-byte
 * value is: magic "MCDBLOG\0" (8), format version u32, reserved u32 (0), log
 * id (16), the segment's base offset u64, and the cas floor u64 (every cas
 * the store generates in this and later segments is at least this, so cas
 * values keep growing even when compaction has removed the records that
 * carried the largest ones, or the clock went back).
 * A SEALED segment ends with a REC_SEG_FOOTER record whose 16-byte value is
 * the number of records in the segment (header and footer included) and the
 * log offset just past the footer. Only the last segment may lack a footer:
 * it is the active one.
 *
 * A DROP record (empty key, 16-byte value: base u64, end u64) says that
 * compaction removed the segment [base, end) after copying its live records
 * to the end of the log; a segment file that a DROP names and that is still
 * there (a crash between the two) is deleted at the next start.
 *
 * VALIDITY: a record at offset X is valid when its type is known (or
 * skippable), its lengths are within bounds, it fits in the segment, and its
 * checksum matches with X's seed.
 *
 * RECOVERY (store recovery and mcdb-fsck apply the same rules): records are
 * replayed in offset order and later records win. In the active segment, the
 * first invalid record starts a torn tail (an interrupted write: nothing from
 * there on was ever acknowledged, because an acknowledgement needs an
 * fdatasync that covers every earlier byte), which is truncated, unless a
 * valid record follows it with no sign of pages reaching the disk out of
 * order between them (log_torn in recover.c), which means the damage is not
 * a torn write but corruption. Corruption anywhere else stops start-up and
 * names the file and offset.
 */
#include "log/record.h"

#include <string.h>
#include <xxhash.h>

#define REC_MAX_KLEN 250
#define SEED_MULT 0x9E3779B97F4A7C15ull

static inline void
put16(char *p, uint16_t v)
{
    memcpy(p, &v, 2); /* little-endian hosts only; see the static assert */
}

static inline void
put32(char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void
put64(char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static inline uint16_t
get16(const char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint32_t
get32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t
get64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the log format is little-endian; add byte swaps for this host");

const char *
rec_strerror(int err)
{
    switch (err) {
    case REC_E_SHORT:
        return "record runs past the end of the segment";
    case REC_E_ZERO:
        return "zero-filled space where a record should be";
    case REC_E_HEADER:
        return "invalid record header";
    case REC_E_CHECKSUM:
        return "checksum mismatch";
    }
    return "unknown record error";
}

uint64_t
rec_log_seed(const uint8_t log_id[16])
{
    return XXH3_64bits(log_id, 16);
}

static uint64_t
rec_checksum(const char *rec, size_t size, uint64_t log_seed, uint64_t off)
{
    return XXH3_64bits_withSeed(rec + 8, size - 8,
                                log_seed ^ (off * SEED_MULT));
}

size_t
rec_encode(void *dst, const struct rec *r, uint64_t log_seed, uint64_t off)
{
    char *p = dst;
    size_t size = rec_size(r->klen, r->vlen);
    p[8] = (char)r->type;
    p[9] = (char)r->rflags;
    put16(p + 10, r->klen);
    put32(p + 12, r->vlen);
    put32(p + 16, r->flags);
    put32(p + 20, r->exptime);
    put64(p + 24, r->cas);
    put64(p + 32, r->time_ms);
    if (r->key && r->klen)
        memcpy(p + REC_HDR_SIZE, r->key, r->klen);
    if (r->val && r->vlen)
        memcpy(p + REC_HDR_SIZE + r->klen, r->val, r->vlen);
    put64(p, rec_checksum(p, size, log_seed, off));
    return size;
}

static int
rec_type_known(uint8_t type)
{
    return (type >= REC_PUT && type <= REC_DROP) || (type & REC_TYPE_SKIPPABLE);
}

static int
rec_klen_ok(uint8_t type, uint16_t klen)
{
    switch (type) {
    case REC_PUT:
    case REC_DELETE:
    case REC_TOUCH:
        return klen >= 1 && klen <= REC_MAX_KLEN;
    case REC_FLUSH:
    case REC_SEG_HEADER:
    case REC_SEG_FOOTER:
    case REC_DROP:
        return klen == 0;
    }
    return klen <= REC_MAX_KLEN;
}

long
rec_decode(const void *buf, size_t avail, uint64_t log_seed, uint64_t off,
           struct rec *r)
{
    const char *p = buf;
    if (avail < REC_HDR_SIZE) {
        for (size_t i = 0; i < avail; i++)
            if (p[i])
                return REC_E_SHORT;
        return REC_E_ZERO;
    }
    r->type = (uint8_t)p[8];
    if (r->type == REC_INVALID)
        return REC_E_ZERO;
    r->rflags = (uint8_t)p[9];
    r->klen = get16(p + 10);
    r->vlen = get32(p + 12);
    if (!rec_type_known(r->type) || !rec_klen_ok(r->type, r->klen) ||
        r->vlen > REC_MAX_VLEN)
        return REC_E_HEADER;
    size_t size = rec_size(r->klen, r->vlen);
    if (size > avail)
        return REC_E_SHORT;
    if (get64(p) != rec_checksum(p, size, log_seed, off))
        return REC_E_CHECKSUM;
    r->flags = get32(p + 16);
    r->exptime = get32(p + 20);
    r->cas = get64(p + 24);
    r->time_ms = get64(p + 32);
    r->key = p + REC_HDR_SIZE;
    r->val = p + REC_HDR_SIZE + r->klen;
    return (long)size;
}

void
rec_seg_header_encode(char out[REC_SEG_HEADER_VLEN],
                      const struct rec_seg_header *h)
{
    memcpy(out, REC_MAGIC, 8);
    put32(out + 8, h->version);
    put32(out + 12, 0);
    memcpy(out + 16, h->log_id, 16);
    put64(out + 32, h->base);
    put64(out + 40, h->cas_floor);
}

int
rec_seg_header_decode(const struct rec *r, struct rec_seg_header *h)
{
    if (r->type != REC_SEG_HEADER || r->vlen != REC_SEG_HEADER_VLEN ||
        memcmp(r->val, REC_MAGIC, 8) != 0)
        return -1;
    h->version = get32(r->val + 8);
    memcpy(h->log_id, r->val + 16, 16);
    h->base = get64(r->val + 32);
    h->cas_floor = get64(r->val + 40);
    return 0;
}

bool
rec_seg_header_is(const struct rec *r, const uint8_t log_id[16], uint64_t off)
{
    struct rec_seg_header h;
    return rec_seg_header_decode(r, &h) == 0 && h.base == off &&
           memcmp(h.log_id, log_id, 16) == 0;
}

void
rec_seg_footer_encode(char out[REC_SEG_FOOTER_VLEN],
                      const struct rec_seg_footer *f)
{
    put64(out, f->records);
    put64(out + 8, f->end);
}

int
rec_seg_footer_decode(const struct rec *r, struct rec_seg_footer *f)
{
    if (r->type != REC_SEG_FOOTER || r->vlen != REC_SEG_FOOTER_VLEN)
        return -1;
    f->records = get64(r->val);
    f->end = get64(r->val + 8);
    return 0;
}

void
rec_drop_encode(char out[REC_DROP_VLEN], const struct rec_drop *d)
{
    put64(out, d->base);
    put64(out + 8, d->end);
}

int
rec_drop_decode(const struct rec *r, struct rec_drop *d)
{
    if (r->type != REC_DROP || r->vlen != REC_DROP_VLEN)
        return -1;
    d->base = get64(r->val);
    d->end = get64(r->val + 8);
    return 0;
}
