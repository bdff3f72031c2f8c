/* The record codec: round trips, and that damage or a move never validates. */
#include "log/record.h"

#include <criterion/criterion.h>
#include <string.h>

static const uint8_t log_a[16] = "log-a-0123456789";
static const uint8_t log_b[16] = "log-b-0123456789";

static size_t
encode_sample(char *buf, uint8_t type, uint64_t off)
{
    struct rec r = {.type = type,
                    .flags = 0xdeadbeef,
                    .exptime = 1234567890,
                    .cas = 42,
                    .time_ms = 1700000000123ull};
    if (type == REC_PUT || type == REC_DELETE || type == REC_TOUCH) {
        r.key = "some:key";
        r.klen = 8;
    }
    if (type == REC_PUT) {
        r.val = "value\r\nwith\0binary";
        r.vlen = 18;
    }
    return rec_encode(buf, &r, rec_log_seed(log_a), off);
}

Test(record, every_type_round_trips_with_all_fields)
{
    uint8_t types[] = {REC_PUT, REC_DELETE, REC_TOUCH, REC_FLUSH};
    for (size_t i = 0; i < sizeof(types); i++) {
        char buf[256];
        size_t n = encode_sample(buf, types[i], 4096);
        struct rec r;
        long got = rec_decode(buf, n, rec_log_seed(log_a), 4096, &r);
        cr_assert_eq(got, (long)n, "type %d", types[i]);
        cr_assert_eq(r.type, types[i]);
        cr_assert_eq(r.flags, 0xdeadbeef);
        cr_assert_eq(r.exptime, 1234567890);
        cr_assert_eq(r.cas, 42);
        cr_assert_eq(r.time_ms, 1700000000123ull);
        if (types[i] == REC_PUT) {
            cr_assert_eq(r.vlen, 18);
            cr_assert(memcmp(r.val, "value\r\nwith\0binary", 18) == 0);
        }
        if (r.klen)
            cr_assert(memcmp(r.key, "some:key", 8) == 0);
    }
}

Test(record, segment_header_and_footer_round_trip)
{
    char hv[REC_SEG_HEADER_VLEN], fv[REC_SEG_FOOTER_VLEN], buf[256];
    struct rec_seg_header h = {
        .version = REC_FORMAT_VERSION, .base = 1 << 20, .cas_floor = 777};
    memcpy(h.log_id, log_a, 16);
    rec_seg_header_encode(hv, &h);
    struct rec r = {.type = REC_SEG_HEADER, .vlen = sizeof(hv), .val = hv};
    size_t n = rec_encode(buf, &r, rec_log_seed(log_a), 1 << 20);
    struct rec d;
    struct rec_seg_header h2;
    cr_assert_eq(rec_decode(buf, n, rec_log_seed(log_a), 1 << 20, &d), (long)n);
    cr_assert_eq(rec_seg_header_decode(&d, &h2), 0);
    cr_assert_eq(h2.base, 1 << 20);
    cr_assert_eq(h2.cas_floor, 777);
    cr_assert_eq(h2.version, REC_FORMAT_VERSION);
    cr_assert(memcmp(h2.log_id, log_a, 16) == 0);

    struct rec_seg_footer f = {.records = 12, .end = 99999}, f2;
    rec_seg_footer_encode(fv, &f);
    struct rec fr = {.type = REC_SEG_FOOTER, .vlen = sizeof(fv), .val = fv};
    n = rec_encode(buf, &fr, rec_log_seed(log_a), 500);
    cr_assert_eq(rec_decode(buf, n, rec_log_seed(log_a), 500, &d), (long)n);
    cr_assert_eq(rec_seg_footer_decode(&d, &f2), 0);
    cr_assert_eq(f2.records, 12);
    cr_assert_eq(f2.end, 99999);
}

Test(record, every_single_byte_corruption_is_detected)
{
    char buf[256], bad[256];
    size_t n = encode_sample(buf, REC_PUT, 8192);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, buf, n);
            bad[i] ^= (char)(1 << bit);
            struct rec r;
            long got = rec_decode(bad, n, rec_log_seed(log_a), 8192, &r);
            cr_assert(got < 0, "flip of bit %d at byte %zu was not detected",
                      bit, i);
        }
        /* and a byte replaced by every other value */
        for (int v = 0; v < 256; v += 37) {
            if ((char)v == buf[i])
                continue;
            memcpy(bad, buf, n);
            bad[i] = (char)v;
            struct rec r;
            cr_assert(rec_decode(bad, n, rec_log_seed(log_a), 8192, &r) < 0,
                      "byte %zu = %d not detected", i, v);
        }
    }
}

Test(record, a_record_moved_to_another_offset_fails_its_checksum)
{
    char buf[256];
    size_t n = encode_sample(buf, REC_PUT, 8192);
    struct rec r;
    cr_assert_eq(rec_decode(buf, n, rec_log_seed(log_a), 8192 + 1, &r),
                 REC_E_CHECKSUM);
    cr_assert_eq(rec_decode(buf, n, rec_log_seed(log_a), 0, &r),
                 REC_E_CHECKSUM);
    cr_assert_eq(
        rec_decode(buf, n, rec_log_seed(log_a), 8192 + (1ull << 32), &r),
        REC_E_CHECKSUM);
}

Test(record, a_record_copied_into_another_log_fails_its_checksum)
{
    char buf[256];
    size_t n = encode_sample(buf, REC_PUT, 8192);
    struct rec r;
    cr_assert_eq(rec_decode(buf, n, rec_log_seed(log_b), 8192, &r),
                 REC_E_CHECKSUM);
}

Test(record, zero_fill_and_short_data_are_told_apart)
{
    char zeros[100] = {0}, buf[256];
    struct rec r;
    cr_assert_eq(rec_decode(zeros, sizeof(zeros), 1, 0, &r), REC_E_ZERO);
    cr_assert_eq(rec_decode(zeros, 10, 1, 0, &r), REC_E_ZERO);
    size_t n = encode_sample(buf, REC_PUT, 0);
    for (size_t cut = 1; cut < n; cut++)
        cr_assert_lt(rec_decode(buf, cut, rec_log_seed(log_a), 0, &r), 0,
                     "a record cut to %zu bytes decoded", cut);
}

Test(record, impossible_lengths_and_unknown_types_are_header_errors)
{
    char buf[256];
    size_t n = encode_sample(buf, REC_PUT, 0);
    struct rec r;
    buf[8] = 0x31; /* unknown, not skippable */
    cr_assert_eq(rec_decode(buf, n, rec_log_seed(log_a), 0, &r), REC_E_HEADER);
    n = encode_sample(buf, REC_PUT, 0);
    buf[10] = (char)251; /* klen 251 */
    cr_assert_eq(rec_decode(buf, n, rec_log_seed(log_a), 0, &r), REC_E_HEADER);
    n = encode_sample(buf, REC_FLUSH, 0);
    buf[10] = 1; /* FLUSH with a key */
    cr_assert_eq(rec_decode(buf, n, rec_log_seed(log_a), 0, &r), REC_E_HEADER);
}

Test(record, skippable_unknown_types_decode)
{
    char buf[256];
    struct rec r = {.type = 0x80 | 9, .vlen = 3, .val = "abc"};
    size_t n = rec_encode(buf, &r, rec_log_seed(log_a), 64);
    struct rec d;
    cr_assert_eq(rec_decode(buf, n, rec_log_seed(log_a), 64, &d), (long)n);
    cr_assert_eq(d.type, 0x89);
}
