/* Segments, torn tails and corruption: what reopening a data dir does. */
#include "helpers/store_util.h"
#include "helpers/tool.h"
#include "log/record.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct tstore t;

static void
setup(void)
{
    ts_init(&t, 64 << 10, 0); /* 64 KiB segments */
    t.cfg.compactor = false;  /* no hints: start-up scans every segment */
    ts_open(&t);
}

static void
teardown(void)
{
    ts_destroy(&t);
}

TestSuite(recovery, .init = setup, .fini = teardown);

static void
fill(int n, int vlen, const char *prefix)
{
    char key[64], *val = malloc((size_t)vlen + 1);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        memset(val, 'a' + i % 26, (size_t)vlen);
        val[vlen] = '\0';
        cr_assert_eq(ts_set(&t, key, val, (uint32_t)i, 0), 0);
    }
    free(val);
}

static void
check(int n, int vlen, const char *prefix)
{
    char key[64];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        uint32_t flags;
        char *v = ts_get(&t, key, &flags, NULL);
        cr_assert_not_null(v, "%s lost", key);
        cr_assert_eq(strlen(v), (size_t)vlen);
        cr_assert_eq(v[0], 'a' + i % 26);
        cr_assert_eq(flags, (uint32_t)i);
        free(v);
    }
}

static void
read_file(const char *path, char **buf, size_t *len)
{
    *buf = tt_slurp(path, len);
    cr_assert_not_null(*buf, "%s", path);
}

static void
write_file(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

Test(recovery, segments_roll_over_at_the_size_limit_with_continuous_offsets)
{
    fill(300, 1000, "k"); /* ~312 KB over 64 KiB segments */
    ts_close(&t);
    uint64_t bases[64];
    size_t n = ts_segments(&t, bases, 64);
    cr_assert_geq(n, 4, "only %zu segments", n);
    cr_assert_eq(bases[0], 0);
    const uint8_t *id = NULL;
    uint8_t first_id[16];
    for (size_t i = 0; i < n; i++) {
        char path[512], *buf;
        size_t len;
        ts_seg_path(&t, bases[i], path, sizeof(path));
        read_file(path, &buf, &len);
        cr_assert_leq(len, 64 << 10, "%s is %zu bytes", path, len);
        if (i + 1 < n)
            cr_assert_eq(bases[i] + len, bases[i + 1], "offsets jump after %s",
                         path);
        /* every segment starts with a header of this log at its base */
        struct rec r;
        struct rec_seg_header h;
        cr_assert_eq(buf[8], REC_SEG_HEADER);
        struct rec hr = {.type = REC_SEG_HEADER,
                         .vlen = REC_SEG_HEADER_VLEN,
                         .val = buf + REC_HDR_SIZE};
        cr_assert_eq(rec_seg_header_decode(&hr, &h), 0);
        cr_assert_eq(h.base, bases[i]);
        if (!id) {
            memcpy(first_id, h.log_id, 16);
            id = first_id;
        }
        cr_assert_eq(memcmp(h.log_id, id, 16), 0);
        /* every segment but the last is sealed with a footer at its end */
        if (i + 1 < n) {
            uint64_t seed = rec_log_seed(id);
            size_t fpos = len - REC_SEG_FOOTER_SIZE;
            cr_assert_eq(rec_decode(buf + fpos, REC_SEG_FOOTER_SIZE, seed,
                                    bases[i] + fpos, &r),
                         REC_SEG_FOOTER_SIZE, "%s has no footer", path);
            struct rec_seg_footer f;
            cr_assert_eq(rec_seg_footer_decode(&r, &f), 0);
            cr_assert_eq(f.end, bases[i] + len);
        }
        free(buf);
    }
    ts_open(&t);
    check(300, 1000, "k");
}

Test(recovery, reopen_after_clean_close_keeps_everything)
{
    fill(200, 100, "a");
    fill(50, 100, "a"); /* overwrites */
    ts_close(&t);
    ts_open(&t);
    check(200, 100, "a");
    struct store_stats st;
    store_stats(t.s, &st);
    cr_assert_eq(st.items, 200);
}

/* The last record of the active segment cut at every byte position: the
 * store opens, keeps everything before the cut, and truncates the file. */
Test(recovery, a_torn_last_record_is_truncated_at_every_cut_position)
{
    fill(20, 50, "x");
    struct store_stats st;
    store_stats(t.s, &st);
    uint64_t before_last = st.log_end;
    cr_assert_eq(ts_set(&t, "last", "the-last-value", 1, 0), 0);
    store_stats(t.s, &st);
    uint64_t end = st.log_end;
    ts_close(&t);

    uint64_t bases[8];
    cr_assert_eq(ts_segments(&t, bases, 8), 1);
    char path[512], *orig;
    size_t len;
    ts_seg_path(&t, bases[0], path, sizeof(path));
    read_file(path, &orig, &len);
    cr_assert_eq(len, end);
    for (uint64_t cut = before_last; cut < end; cut++) {
        write_file(path, orig, cut);
        ts_open(&t);
        char *v = ts_get(&t, "last", NULL, NULL);
        cr_assert_null(v, "cut at %" PRIu64 ": the torn record was loaded",
                       cut);
        check(20, 50, "x");
        ts_close(&t);
        cr_assert_eq(ts_file_size(path), (long long)before_last,
                     "cut at %" PRIu64 ": file not truncated to %" PRIu64, cut,
                     before_last);
    }
    /* and the full file still has it */
    write_file(path, orig, len);
    ts_open(&t);
    char *v = ts_get(&t, "last", NULL, NULL);
    cr_assert_str_eq(v, "the-last-value");
    free(v);
    free(orig);
}

Test(recovery, a_zero_filled_tail_is_truncated)
{
    fill(10, 50, "z");
    ts_close(&t);
    uint64_t bases[8];
    ts_segments(&t, bases, 8);
    char path[512];
    ts_seg_path(&t, bases[0], path, sizeof(path));
    long long size = ts_file_size(path);
    cr_assert_eq(truncate(path, size + 4096), 0);
    ts_open(&t);
    check(10, 50, "z");
    ts_close(&t);
    cr_assert_eq(ts_file_size(path), size);
}

/* The last segment's file and where the log ends in it. */
static long long
last_segment(char *path, size_t n, uint64_t *log_end_in_it)
{
    uint64_t bases[64];
    size_t k = ts_segments(&t, bases, 64);
    cr_assert_gt(k, 0);
    ts_seg_path(&t, bases[k - 1], path, n);
    if (log_end_in_it && t.s) {
        struct store_stats st;
        store_stats(t.s, &st);
        *log_end_in_it = st.log_end - bases[k - 1];
    }
    return ts_file_size(path);
}

/* Reopen t with --preallocate. */
static void
preallocating(void)
{
    ts_close(&t);
    t.cfg.preallocate = true;
    /* the padding stops a largest record short of --segment-size */
    t.cfg.max_item_size = 4096;
    ts_open(&t);
}

Test(recovery, by_default_the_last_segment_ends_where_the_log_does)
{
    fill(10, 50, "p");
    char path[512];
    uint64_t end;
    long long size = last_segment(path, sizeof(path), &end);
    /* what rsync's quick check relies on: every write changes the size */
    cr_assert_eq(size, (long long)end, "%lld bytes for a log of %" PRIu64, size,
                 end);
}

Test(recovery, with_preallocate_the_last_segment_is_padded_and_a_close_trims_it)
{
    preallocating();
    fill(10, 50, "p");
    char path[512];
    uint64_t end;
    long long open_size = last_segment(path, sizeof(path), &end);
    /* zeros ahead of the records: the next fdatasyncs need not write the
     * file's size */
    cr_assert_gt(open_size, (long long)end, "%lld bytes for a log of %" PRIu64,
                 open_size, end);
    char *buf;
    size_t len;
    read_file(path, &buf, &len);
    for (size_t i = end; i < len; i++)
        cr_assert_eq(buf[i], 0, "a padding byte at %zu is not zero", i);
    free(buf);
    ts_close(&t);
    cr_assert_eq(ts_file_size(path), (long long)end);
}

/* A crash leaves the padding: the log ends before it, no warning, nothing
 * cut, and the next writes go over it. */
Test(recovery, the_log_continues_over_the_zeros_a_crash_left_after_it)
{
    preallocating();
    fill(10, 50, "a");
    char path[512];
    uint64_t end;
    last_segment(path, sizeof(path), &end);
    char *crashed;
    size_t len;
    read_file(path, &crashed, &len); /* all synced: --fsync always */
    cr_assert_gt(len, end);
    ts_close(&t);
    write_file(path, crashed, len);
    free(crashed);
    ts_open(&t);
    uint64_t end2;
    long long size = last_segment(path, sizeof(path), &end2);
    cr_assert_eq(size, (long long)len, "the zeros were cut: %lld bytes left",
                 size);
    cr_assert_eq(end2, end, "the log ends at %" PRIu64 ", not %" PRIu64, end2,
                 end);
    check(10, 50, "a");
    fill(20, 40, "b");
    ts_close(&t);
    ts_open(&t);
    check(10, 50, "a");
    check(20, 40, "b");
}

Test(recovery, the_store_keeps_writing_after_truncating_a_torn_tail)
{
    fill(10, 50, "a");
    ts_close(&t);
    uint64_t bases[8];
    ts_segments(&t, bases, 8);
    char path[512];
    ts_seg_path(&t, bases[0], path, sizeof(path));
    cr_assert_eq(truncate(path, ts_file_size(path) - 7), 0);
    ts_open(&t);
    fill(10, 60, "b");
    ts_close(&t);
    ts_open(&t);
    check(9, 50, "a");
    check(10, 60, "b");
}

Test(recovery,
     a_flipped_byte_in_a_sealed_segment_refuses_to_open_naming_file_and_offset)
{
    fill(300, 1000, "k");
    ts_close(&t);
    ts_remove_hints(&t); /* with hints, start-up does not read the segments */
    uint64_t bases[64];
    size_t n = ts_segments(&t, bases, 64);
    cr_assert_geq(n, 3);
    char path[512];
    ts_seg_path(&t, bases[1], path, sizeof(path));
    tt_flip(path, 5000, 0x10);
    char err[1024];
    int rc = ts_try_open(&t, err, sizeof(err));
    cr_assert_eq(rc, STORE_CORRUPT, "%s", store_strerror(rc));
    cr_assert(strstr(err, path), "error does not name %s: %s", path, err);
    cr_assert(strstr(err, "offset"), "error does not name the offset: %s", err);
    cr_assert(strstr(err, "mcdb-fsck"), "error does not point to fsck: %s",
              err);
}

Test(recovery, a_missing_segment_in_the_middle_refuses_to_open)
{
    fill(300, 1000, "k");
    ts_close(&t);
    uint64_t bases[64];
    size_t n = ts_segments(&t, bases, 64);
    cr_assert_geq(n, 3);
    char path[512];
    ts_seg_path(&t, bases[1], path, sizeof(path));
    cr_assert_eq(unlink(path), 0);
    char err[1024];
    cr_assert_eq(ts_try_open(&t, err, sizeof(err)), STORE_CORRUPT);
    cr_assert(strstr(err, "missing"), "%s", err);
}

Test(recovery, a_segment_from_another_log_is_refused)
{
    fill(5, 10, "k");
    ts_close(&t);
    /* replace META's log id */
    char meta[512];
    snprintf(meta, sizeof(meta), "%s/META", t.dir);
    char *buf;
    size_t len;
    read_file(meta, &buf, &len);
    char *id = strstr(buf, "log_id ") + 7;
    id[0] = id[0] == 'a' ? 'b' : 'a';
    write_file(meta, buf, len);
    free(buf);
    char err[1024];
    cr_assert_eq(ts_try_open(&t, err, sizeof(err)), STORE_CORRUPT);
}

Test(recovery, an_empty_or_lost_active_segment_continues_after_the_sealed_one)
{
    fill(300, 1000, "k");
    ts_close(&t);
    uint64_t bases[64];
    size_t n = ts_segments(&t, bases, 64);
    cr_assert_geq(n, 2);
    char path[512];
    /* A crash right after the new segment file was created: it is empty. */
    ts_seg_path(&t, bases[n - 1], path, sizeof(path));
    cr_assert_eq(truncate(path, 0), 0);
    ts_open(&t);
    fill(5, 10, "after-empty");
    ts_close(&t);
    ts_open(&t);
    check(5, 10, "after-empty");
    ts_close(&t);
    /* A crash right after sealing, before the next file existed. */
    n = ts_segments(&t, bases, 64);
    ts_seg_path(&t, bases[n - 1], path, sizeof(path));
    cr_assert_eq(unlink(path), 0);
    ts_open(&t);
    fill(5, 10, "after-sealed");
    ts_close(&t);
    ts_open(&t);
    check(5, 10, "after-sealed");
    cr_assert_eq(ts_segments(&t, bases, 64), n);
}

/* An empty file named for the segment at the log's end (suffix after the
 * 20 digits) is removed at start-up, and the log goes on. */
static void
empty_next_segment_file_is_removed(const char *suffix)
{
    fill(10, 100, "k");
    struct store_stats st;
    store_stats(t.s, &st);
    ts_close(&t);
    char path[512];
    snprintf(path, sizeof(path), "%s/%020" PRIu64 "%s", t.dir, st.log_end,
             suffix);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fclose(f);
    ts_open(&t);
    check(10, 100, "k");
    cr_assert_eq(ts_file_size(path), -1, "%s is still there", path);
    fill(5, 10, "more");
    ts_close(&t);
    ts_open(&t);
    check(5, 10, "more");
}

/* a crash right after the next file was created, before the footer of the
 * active one was written (as an older mcdbd could leave) */
Test(recovery, an_empty_next_segment_after_an_unsealed_one_is_removed)
{
    empty_next_segment_file_is_removed(".seg");
}

/* A new segment file gets its name when the writer first writes into it;
 * a stop before that leaves it, empty, under its temporary name. */
Test(recovery, a_new_segments_temporary_file_left_by_a_stop_is_removed)
{
    empty_next_segment_file_is_removed(".seg.tmp");
}

/* With a valid hint, start-up trusts it and does not read the segment: the
 * damage shows when the damaged record is read, naming file and offset. */
Test(recovery, with_hints_a_flipped_value_byte_fails_the_read_of_that_key)
{
    fill(300, 1000, "k");
    ts_close(&t);
    uint64_t bases[64];
    cr_assert_geq(ts_segments(&t, bases, 64), 3);
    char path[512];
    ts_seg_path(&t, bases[0], path, sizeof(path));
    /* k0's value starts after the segment header and k0's record header */
    tt_flip(path, 40 + 48 + 40 + 2 + 10, 0x10);
    ts_open(&t);
    struct store_item it;
    void *buf;
    cr_assert_eq(store_get(t.s, "k0", 2, &it, &buf), STORE_CORRUPT);
    char *v = ts_get(&t, "k1", NULL, NULL);
    cr_assert_not_null(v, "a neighbour of the damaged record is unreadable");
    free(v);
}

/* A flipped bit in an acknowledged record of the active segment is not a
 * torn write (valid records follow it): open refuses instead of cutting
 * everything after it. */
Test(recovery,
     a_flipped_byte_in_the_active_segment_before_valid_records_refuses)
{
    fill(50, 20, "k");
    ts_close(&t);
    ts_remove_hints(&t); /* start-up reads the segment, as after a crash */
    uint64_t bases[8];
    cr_assert_eq(ts_segments(&t, bases, 8), 1);
    char path[512];
    ts_seg_path(&t, bases[0], path, sizeof(path));
    long long size = ts_file_size(path);
    tt_flip(path, 88 + 45, 1); /* inside k0's record */
    char err[1024];
    cr_assert_eq(ts_try_open(&t, err, sizeof(err)), STORE_CORRUPT, "%s", err);
    cr_assert(strstr(err, path) && strstr(err, "offset 88"), "%s", err);
    cr_assert(strstr(err, "not a torn write"), "%s", err);
    cr_assert_eq(ts_file_size(path), size, "the segment was cut");
}

/* A machine that stops mid-write may leave the last write's pages on disk
 * in any order: a page never written reads as zeros, and records after it
 * may be whole. That is a torn write: cut at the hole. */
Test(recovery, a_hole_of_zeros_followed_by_records_is_a_torn_write)
{
    fill(10, 20, "a");
    struct store_stats st;
    store_stats(t.s, &st);
    uint64_t keep = st.log_end;
    fill(40, 300, "b"); /* over 12 KB: spans whole pages */
    ts_close(&t);
    ts_remove_hints(&t); /* a crash leaves no hint of the active segment */
    char path[512];
    ts_seg_path(&t, 0, path, sizeof(path));
    /* zero the first whole page after `keep`, leaving later records intact */
    uint64_t page = (keep + 4095) / 4096 * 4096;
    cr_assert_lt(page + 4096, (uint64_t)ts_file_size(path));
    static const char zeros[4096];
    int fd = open(path, O_RDWR);
    cr_assert_eq(pwrite(fd, zeros, 4096, (off_t)page), 4096);
    close(fd);
    ts_open(&t);
    check(10, 20, "a");
    char *v = ts_get(&t, "b39", NULL, NULL);
    cr_assert_null(v, "a record after the hole was kept");
    cr_assert_leq(ts_file_size(path), (long long)page);
}

/* Write `len` zeros at file position `at` of the segment file at path. */
static void
zero_range(const char *path, uint64_t at, size_t len)
{
    static const char zeros[4096];
    cr_assert_leq(len, sizeof(zeros));
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "%s", path);
    cr_assert_eq(pwrite(fd, zeros, len, (off_t)at), (ssize_t)len);
    close(fd);
}

/* Records `a` durable, then a write of records `b` over several pages; the
 * machine stops and the page that held the end of `a` reaches the disk as it
 * was before `b` (zeros after `a`), the later pages with `b`. A live copy
 * that read that page before `b` was written into it looks the same. That
 * is a torn write: cut where `b` starts, keep every `a`. */
Test(recovery, a_page_left_as_it_was_before_the_last_write_is_a_torn_write)
{
    fill(10, 20, "a");
    struct store_stats st;
    store_stats(t.s, &st);
    uint64_t keep = st.log_end; /* a record boundary inside the first page */
    fill(40, 300, "b");
    ts_close(&t);
    ts_remove_hints(&t); /* a crash leaves no hint of the active segment */
    char path[512];
    ts_seg_path(&t, 0, path, sizeof(path));
    uint64_t page_end = (keep / 4096 + 1) * 4096;
    cr_assert_geq(page_end - keep, 16);
    cr_assert_lt(page_end + 4096, (uint64_t)ts_file_size(path));
    zero_range(path, keep, page_end - keep);
    char err[1024] = "";
    cr_assert_eq(ts_try_open(&t, err, sizeof(err)), 0, "%s", err);
    check(10, 20, "a");
    char *v = ts_get(&t, "b39", NULL, NULL);
    cr_assert_null(v, "a record after the stale page was kept");
    cr_assert_eq(ts_file_size(path), (long long)keep, "not cut where b starts");
    char tail[600];
    snprintf(tail, sizeof(tail), "%s.tail-%" PRIu64, path, keep);
    cr_assert_gt(ts_file_size(tail), 0, "the cut bytes were not saved in %s",
                 tail);
}

/* Zeros where a record should start that stop before the page's end, with
 * valid records after them in the same page, are not what a machine stop
 * leaves: that is damage, and open refuses rather than cut. */
Test(recovery, a_zeroed_record_header_mid_page_before_valid_records_refuses)
{
    fill(10, 20, "a");
    struct store_stats st;
    store_stats(t.s, &st);
    uint64_t keep = st.log_end;
    fill(40, 300, "b");
    ts_close(&t);
    ts_remove_hints(&t);
    char path[512];
    ts_seg_path(&t, 0, path, sizeof(path));
    long long size = ts_file_size(path);
    cr_assert_lt(keep + 40 + 2 + 300 + 40, (keep / 4096 + 1) * 4096);
    zero_range(path, keep, 40); /* b0's header */
    char err[1024] = "";
    cr_assert_eq(ts_try_open(&t, err, sizeof(err)), STORE_CORRUPT, "%s", err);
    cr_assert(strstr(err, path) && strstr(err, "not a torn write"), "%s", err);
    cr_assert_eq(ts_file_size(path), size, "the segment was cut");
}
