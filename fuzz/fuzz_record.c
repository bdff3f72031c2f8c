/*
 * fuzz_record: the log's record decoder, rec_decode() (src/log/record.h),
 * at every offset of the input, as recovery and mcdb-fsck walk a segment
 * and as a replica checks the bytes its primary sends. The input is a
 * segment's bytes from log offset 0, checksummed with fuzz_log_id's seed
 * (the seeds are the first records of a real segment, fuzz/mkcorpus.c).
 *
 * Checked, at every offset i:
 *   - a decoded record lies within the input and its size is
 *     rec_size(klen, vlen); key and value point just after its header;
 *   - rec_encode() of what was decoded gives back the same bytes;
 *   - the value decoders of segment headers, footers and drops accept
 *     exactly the records with their type and value length, and their
 *     encoders give back the value.
 * Then a "sealed" copy: the input read as a chain of record headers, each
 * given its correct checksum with rec_encode() (so that mutations reach
 * past the checksum); each sealed record must decode to its own size with
 * the fields it was given unless its header is invalid (type 0:
 * REC_E_ZERO; unknown type or bad lengths: REC_E_HEADER), never as a
 * checksum mismatch, and the checks above hold for it.
 */
#include "fuzz.h"
#include "log/record.h"

static uint64_t seed;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    seed = rec_log_seed(fuzz_log_id);
    return 0;
}

static void
check_values(const struct rec *r)
{
    char out[REC_SEG_HEADER_VLEN];

    struct rec_seg_header h;
    if (rec_seg_header_decode(r, &h) == 0) {
        FUZZ_CHECK(r->type == REC_SEG_HEADER && r->vlen == REC_SEG_HEADER_VLEN);
        rec_seg_header_encode(out, &h);
        /* the reserved word (value bytes 12..15) is not kept */
        FUZZ_CHECK(memcmp(out, r->val, 12) == 0);
        FUZZ_CHECK(memcmp(out + 16, r->val + 16, REC_SEG_HEADER_VLEN - 16) ==
                   0);
        FUZZ_CHECK(rec_seg_header_is(r, h.log_id, h.base));
    } else {
        FUZZ_CHECK(r->type != REC_SEG_HEADER ||
                   r->vlen != REC_SEG_HEADER_VLEN ||
                   memcmp(r->val, REC_MAGIC, 8) != 0);
        FUZZ_CHECK(!rec_seg_header_is(r, fuzz_log_id, 0));
    }

    struct rec_seg_footer f;
    if (rec_seg_footer_decode(r, &f) == 0) {
        FUZZ_CHECK(r->type == REC_SEG_FOOTER && r->vlen == REC_SEG_FOOTER_VLEN);
        rec_seg_footer_encode(out, &f);
        FUZZ_CHECK(memcmp(out, r->val, REC_SEG_FOOTER_VLEN) == 0);
    } else {
        FUZZ_CHECK(r->type != REC_SEG_FOOTER || r->vlen != REC_SEG_FOOTER_VLEN);
    }

    struct rec_drop d;
    if (rec_drop_decode(r, &d) == 0) {
        FUZZ_CHECK(r->type == REC_DROP && r->vlen == REC_DROP_VLEN);
        rec_drop_encode(out, &d);
        FUZZ_CHECK(memcmp(out, r->val, REC_DROP_VLEN) == 0);
    } else {
        FUZZ_CHECK(r->type != REC_DROP || r->vlen != REC_DROP_VLEN);
    }
}

/* Decode at every offset of buf; returns how many records decoded. */
static size_t
decode_everywhere(const char *buf, size_t n, char *scratch)
{
    size_t found = 0;

    for (size_t i = 0; i <= n; i++) {
        struct rec r;
        long rc = rec_decode(buf + i, n - i, seed, i, &r);

        if (rc <= 0) {
            FUZZ_CHECK(rc == REC_E_SHORT || rc == REC_E_ZERO ||
                       rc == REC_E_HEADER || rc == REC_E_CHECKSUM);
            FUZZ_CHECK(strcmp(rec_strerror((int)rc), "unknown record error") !=
                       0);
            continue;
        }
        found++;
        size_t size = (size_t)rc;
        FUZZ_CHECK(size >= REC_HDR_SIZE && size <= n - i);
        FUZZ_CHECK(size == rec_size(r.klen, r.vlen));
        FUZZ_CHECK(r.type != REC_INVALID);
        FUZZ_CHECK(r.key == buf + i + REC_HDR_SIZE);
        FUZZ_CHECK(r.val == r.key + r.klen);

        FUZZ_CHECK(rec_encode(scratch, &r, seed, i) == size);
        FUZZ_CHECK(memcmp(scratch, buf + i, size) == 0);
        check_values(&r);
    }
    return found;
}

/* The input as a chain of headers, each record given its right checksum. */
static void
check_sealed(char *buf, size_t n, char *scratch)
{
    size_t pos = 0;

    while (n - pos >= REC_HDR_SIZE) {
        struct rec r = {0};
        uint16_t klen;
        uint32_t vlen;
        memcpy(&klen, buf + pos + 10, 2);
        memcpy(&vlen, buf + pos + 12, 4);
        size_t size = rec_size(klen, vlen);
        if (size > n - pos)
            break;
        r.type = (uint8_t)buf[pos + 8];
        r.rflags = (uint8_t)buf[pos + 9];
        r.klen = klen;
        r.vlen = vlen;
        memcpy(&r.flags, buf + pos + 16, 4);
        memcpy(&r.exptime, buf + pos + 20, 4);
        memcpy(&r.cas, buf + pos + 24, 8);
        memcpy(&r.time_ms, buf + pos + 32, 8);
        /* key and val NULL: they are already in place */
        FUZZ_CHECK(rec_encode(buf + pos, &r, seed, pos) == size);

        struct rec back;
        long rc = rec_decode(buf + pos, n - pos, seed, pos, &back);
        if (r.type == REC_INVALID)
            FUZZ_CHECK(rc == REC_E_ZERO);
        else
            FUZZ_CHECK(rc == (long)size || rc == REC_E_HEADER);
        if (rc > 0) {
            FUZZ_CHECK(back.type == r.type && back.rflags == r.rflags &&
                       back.klen == r.klen && back.vlen == r.vlen &&
                       back.flags == r.flags && back.exptime == r.exptime &&
                       back.cas == r.cas && back.time_ms == r.time_ms);
            FUZZ_CHECK(back.key == buf + pos + REC_HDR_SIZE &&
                       back.val == back.key + back.klen);
            FUZZ_CHECK(rec_encode(scratch, &back, seed, pos) == size);
            FUZZ_CHECK(memcmp(scratch, buf + pos, size) == 0);
            check_values(&back);
        }
        pos += size;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exactly size bytes, so that ASan sees a read past the input */
    char *scratch = malloc(size ? size : 1);
    char *sealed = malloc(size ? size : 1);
    FUZZ_CHECK(scratch && sealed);

    decode_everywhere((const char *)data, size, scratch);
    memcpy(sealed, data, size);
    check_sealed(sealed, size, scratch);

    free(scratch);
    free(sealed);
    return 0;
}
