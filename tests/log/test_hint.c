/* Hint files: encode/decode, start-up from hints equals start-up from
 * segments, and a stale or damaged hint is never trusted. */
#include "helpers/server.h"
#include "helpers/store_util.h"
#include "helpers/tool.h"
#include "log/hint.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct tstore t;

static void
teardown(void)
{
    ts_destroy(&t);
}

TestSuite(hint, .fini = teardown);

static const uint8_t id[16] = "hint-test-log-id";

/* A segment made of records, and what a walk of its hint returns. */
struct walked {
    int n;
    uint8_t types[16];
    uint64_t offs[16];
    char keys[16][16];
    uint32_t vlens[16];
    uint64_t cas[16];
};

static int
collect(void *arg, const struct rec *r, uint64_t off)
{
    struct walked *w = arg;
    w->types[w->n] = r->type;
    w->offs[w->n] = off;
    memcpy(w->keys[w->n], r->key, r->klen);
    w->keys[w->n][r->klen] = '\0';
    w->vlens[w->n] = r->vlen;
    w->cas[w->n] = r->cas;
    cr_assert(r->type == REC_PUT ? r->val == NULL : 1);
    w->n++;
    return 0;
}

static size_t
make_segment(char *seg, uint64_t base)
{
    uint64_t seed = rec_log_seed(id);
    size_t pos = 0;
    char hv[REC_SEG_HEADER_VLEN];
    struct rec_seg_header h = {.version = 1, .base = base, .cas_floor = 5};
    memcpy(h.log_id, id, 16);
    rec_seg_header_encode(hv, &h);
    struct rec recs[] = {
        {.type = REC_SEG_HEADER, .vlen = sizeof(hv), .val = hv},
        {.type = REC_PUT,
         .klen = 3,
         .key = "one",
         .vlen = 5,
         .val = "11111",
         .cas = 7},
        {.type = REC_DELETE, .klen = 3, .key = "two", .cas = 8},
        {.type = REC_TOUCH, .klen = 3, .key = "one", .exptime = 99, .cas = 7},
        {.type = REC_FLUSH, .exptime = 1234, .cas = 9},
    };
    for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++)
        pos += rec_encode(seg + pos, &recs[i], seed, base + pos);
    char fv[REC_SEG_FOOTER_VLEN];
    struct rec_seg_footer f = {.records = 6,
                               .end = base + pos + REC_SEG_FOOTER_SIZE};
    rec_seg_footer_encode(fv, &f);
    struct rec fr = {.type = REC_SEG_FOOTER, .vlen = sizeof(fv), .val = fv};
    pos += rec_encode(seg + pos, &fr, seed, base + pos);
    return pos;
}

Test(hint, a_hint_lists_every_record_of_its_segment_without_put_values)
{
    char *dir = th_tmpdir(), seg[4096];
    size_t size = make_segment(seg, 1 << 20);
    cr_assert_eq(hint_write(dir, id, 1 << 20, seg, size), 0);
    struct walked w = {0};
    cr_assert_eq(hint_read(dir, id, 1 << 20, size, collect, &w), 0);
    cr_assert_eq(w.n, 6);
    uint8_t types[] = {REC_SEG_HEADER, REC_PUT,   REC_DELETE,
                       REC_TOUCH,      REC_FLUSH, REC_SEG_FOOTER};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(w.types[i], types[i], "entry %d", i);
    cr_assert_eq(w.offs[0], 1 << 20);
    cr_assert_eq(w.offs[1], (1 << 20) + 40 + 48);
    cr_assert_str_eq(w.keys[1], "one");
    cr_assert_eq(w.vlens[1], 5);
    cr_assert_eq(w.cas[1], 7);
    cr_assert_str_eq(w.keys[2], "two");
    th_rmrf(dir);
    free(dir);
}

Test(hint, a_hint_for_another_log_base_or_size_is_stale)
{
    char *dir = th_tmpdir(), seg[4096];
    size_t size = make_segment(seg, 0);
    cr_assert_eq(hint_write(dir, id, 0, seg, size), 0);
    struct walked w = {0};
    uint8_t other[16] = "another-log-id!!";
    cr_assert_eq(hint_read(dir, other, 0, size, collect, &w), HINT_E_CORRUPT,
                 "the checksum is seeded by the log id");
    cr_assert_eq(hint_read(dir, id, 0, size + 1, collect, &w), HINT_E_STALE);
    cr_assert_eq(hint_read(dir, id, 4096, size, collect, &w), HINT_E_MISSING);
    cr_assert_eq(w.n, 0, "a stale hint was walked");
    th_rmrf(dir);
    free(dir);
}

Test(hint, every_flipped_byte_of_a_hint_is_detected_before_anything_is_applied)
{
    char *dir = th_tmpdir(), seg[4096], path[512];
    size_t size = make_segment(seg, 0);
    cr_assert_eq(hint_write(dir, id, 0, seg, size), 0);
    hint_path(dir, 0, path, sizeof(path));
    long long len = ts_file_size(path);
    int fd = open(path, O_RDWR);
    for (long long i = 0; i < len; i++) {
        char c;
        cr_assert_eq(pread(fd, &c, 1, i), 1);
        char bad = (char)(c ^ 0x40);
        cr_assert_eq(pwrite(fd, &bad, 1, i), 1);
        struct walked w = {0};
        int rc = hint_read(dir, id, 0, size, collect, &w);
        cr_assert(rc == HINT_E_CORRUPT || rc == HINT_E_STALE, "byte %lld: %d",
                  i, rc);
        cr_assert_eq(w.n, 0, "byte %lld: entries applied from a bad hint", i);
        cr_assert_eq(pwrite(fd, &c, 1, i), 1);
    }
    close(fd);
    th_rmrf(dir);
    free(dir);
}

Test(hint, a_segment_that_does_not_decode_gets_no_hint)
{
    char *dir = th_tmpdir(), seg[4096], path[512];
    size_t size = make_segment(seg, 0);
    seg[100] ^= 1;
    cr_assert_eq(hint_write(dir, id, 0, seg, size), HINT_E_SEGMENT);
    hint_path(dir, 0, path, sizeof(path));
    cr_assert_eq(ts_file_size(path), -1);
    th_rmrf(dir);
    free(dir);
}

static void
fill(const char *prefix, int n, int vlen)
{
    char key[64], *val = malloc((size_t)vlen + 1);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        memset(val, 'a' + i % 26, (size_t)vlen);
        val[vlen] = '\0';
        cr_assert_eq(ts_set(&t, key, val, (uint32_t)i, i % 3 ? 0 : 100000), 0);
    }
    free(val);
}

static size_t
count_hints(void)
{
    uint64_t bases[256];
    size_t n = ts_segments(&t, bases, 256), hints = 0;
    for (size_t i = 0; i < n; i++) {
        char path[512];
        hint_path(t.dir, bases[i], path, sizeof(path));
        hints += ts_file_size(path) > 0;
    }
    return hints;
}

Test(hint, start_up_from_hints_rebuilds_the_same_index_as_from_segments)
{
    ts_init(&t, 64 << 10, 1);
    ts_open(&t);
    fill("k", 300, 700);
    fill("k", 100, 300); /* overwrites */
    for (int i = 0; i < 50; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i * 3);
        struct store_write w;
        store_delete(t.s, &(struct store_del){.key = key, .klen = strlen(key)},
                     &w);
        store_wait(t.s, w.ack);
    }
    /* a flush in the middle: every recovery thread must apply it to its
     * own keys at the same point of the log */
    struct store_write fw;
    cr_assert_eq(store_flush(t.s, 0, &fw), 0);
    store_wait(t.s, fw.ack);
    fill("k", 150, 500);
    fill("after", 200, 400);
    /* the compactor thread writes hints of sealed segments */
    for (int i = 0; i < 100 && count_hints() + 1 <
                                   ts_segments(&t, (uint64_t[256]){0}, 256);
         i++)
        usleep(20000);
    uint64_t bases[256];
    size_t nseg = ts_segments(&t, bases, 256);
    cr_assert_eq(count_hints(), nseg - 1, "hints of sealed segments missing");
    struct store_stats with_hints_before;
    store_stats(t.s, &with_hints_before);
    ts_close(&t);

    /* from hints */
    t.cfg.compactor = false;
    ts_open(&t);
    struct store_stats a;
    store_stats(t.s, &a);
    char *va[300];
    uint64_t ca[300];
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        va[i] = ts_get(&t, key, NULL, &ca[i]);
    }
    ts_close(&t);
    ts_remove_hints(&t); /* from segments */
    ts_open(&t);
    struct store_stats b;
    store_stats(t.s, &b);
    cr_assert_eq(a.items, b.items);
    cr_assert_eq(a.items, 150 + 200, "the flush was not applied");
    cr_assert_eq(a.live_bytes, b.live_bytes);
    cr_assert_eq(a.value_bytes, b.value_bytes);
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        uint64_t cb;
        char *vb = ts_get(&t, key, NULL, &cb);
        if (!va[i])
            cr_assert_null(vb, "%s", key);
        else {
            cr_assert_str_eq(va[i], vb, "%s", key);
            cr_assert_eq(ca[i], cb);
        }
        free(va[i]);
        free(vb);
    }
}

Test(hint, a_damaged_hint_falls_back_to_the_segment)
{
    ts_init(&t, 64 << 10, 0);
    ts_open(&t);
    fill("k", 200, 700);
    for (int i = 0; i < 100 && count_hints() == 0; i++)
        usleep(20000);
    ts_close(&t);
    uint64_t bases[256];
    ts_segments(&t, bases, 256);
    char path[512];
    hint_path(t.dir, bases[0], path, sizeof(path));
    cr_assert_gt(ts_file_size(path), 0);
    cr_assert_eq(truncate(path, ts_file_size(path) - 1), 0);
    t.cfg.compactor = false;
    ts_open(&t);
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        char *v = ts_get(&t, key, NULL, NULL);
        cr_assert_not_null(v, "%s lost with a damaged hint", key);
        free(v);
    }
}

/* A clean close writes the hint of the active segment too, and the next
 * start-up reads it instead of the segment, once: the file is deleted
 * before the segment grows. */
Test(hint, a_clean_close_writes_the_active_segments_hint_read_once_at_start)
{
    ts_init(&t, 0, 0);
    ts_open(&t);
    fill("k", 500, 100);
    uint64_t cas_before;
    free(ts_get(&t, "k7", NULL, &cas_before));
    ts_close(&t);
    uint64_t bases[8];
    cr_assert_eq(ts_segments(&t, bases, 8), 1, "one segment, the active one");
    char path[512], seg[512];
    hint_path(t.dir, bases[0], path, sizeof(path));
    cr_assert_eq(hint_entries(t.dir, bases[0], NULL), 1 + 500,
                 "the header and every set");
    /* k0's value, damaged: a scan of the segment refuses to open it (valid
     * records follow), so an open that succeeds read the hint */
    ts_seg_path(&t, bases[0], seg, sizeof(seg));
    tt_flip(seg, 88 + 40 + 2 + 10, 0x10);
    t.cfg.compactor = false;
    ts_open(&t);
    cr_assert_eq(ts_file_size(path), -1, "the hint outlived its start-up");
    struct store_item it;
    void *buf;
    cr_assert_eq(store_get(t.s, "k0", 2, &it, &buf), STORE_CORRUPT);
    uint64_t cas_after;
    char *v = ts_get(&t, "k7", NULL, &cas_after);
    cr_assert(v && strlen(v) == 100, "k7 lost");
    cr_assert_eq(cas_after, cas_before);
    free(v);
    struct store_stats st;
    store_stats(t.s, &st);
    cr_assert_eq(st.items, 500);
}

/* A hint of the active segment at a size it no longer has (the segment
 * grew after it was written) is not used: start-up scans the segment. */
Test(hint, an_active_segments_hint_of_another_size_is_ignored)
{
    ts_init(&t, 0, 0);
    ts_open(&t);
    fill("a", 100, 50);
    ts_close(&t);
    char path[512], saved[600];
    hint_path(t.dir, 0, path, sizeof(path));
    snprintf(saved, sizeof(saved), "%s.saved", path);
    cr_assert_eq(link(path, saved), 0);
    t.cfg.compactor = false;
    ts_open(&t);
    fill("b", 100, 50);
    ts_close(&t);
    ts_remove_hints(&t);
    cr_assert_eq(rename(saved, path), 0); /* the hint of 100 keys back */
    ts_open(&t);
    struct store_stats st;
    store_stats(t.s, &st);
    cr_assert_eq(st.items, 200, "start-up trusted a stale hint");
    cr_assert_eq(ts_file_size(path), -1, "the stale hint was kept");
    char *v = ts_get(&t, "b99", NULL, NULL);
    cr_assert_not_null(v);
    free(v);
}
