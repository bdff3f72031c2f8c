/*
 * mcdb-fsck on crafted damage: a data directory is written by the engine
 * (64 KiB segments, hints written at close), damaged one way, and the
 * built mcdb-fsck binary is run on it. Each damage must be named with its
 * file and log offsets, with fsck(8)'s exit codes; --repair fixes only a
 * torn tail and hint files.
 *   build/test_tools_fsck --verbose
 */
#include "helpers/server.h"
#include "helpers/store_util.h"
#include "helpers/tool.h"
#include "log/hint.h"
#include "log/logdir.h"
#include "log/record.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    if (access(tt_tool("mcdb-fsck"), X_OK) != 0) {
        fprintf(stderr, "SKIP: %s is not built\n", tt_tool("mcdb-fsck"));
        exit(77);
    }
}

static struct tstore t;
static uint64_t seed;
static uint64_t bases[64];
static size_t nseg;

#define NKEYS 400
#define VLEN 400

static void
setup(void)
{
    ts_init(&t, 64 << 10, 0);
    t.cfg.compactor = false; /* nothing moves; close writes the hints */
    ts_open(&t);
    char key[32], val[VLEN + 1];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < NKEYS; i += round + 1) {
            snprintf(key, sizeof(key), "key%d", i);
            memset(val, 'a' + (i + round) % 26, VLEN);
            val[VLEN] = '\0';
            cr_assert_eq(ts_set(&t, key, val, (uint32_t)i, 0), 0);
        }
    for (int i = 0; i < 10; i++) {
        struct store_write w;
        snprintf(key, sizeof(key), "key%d", i);
        cr_assert_eq(
            store_delete(
                t.s, &(struct store_del){.key = key, .klen = strlen(key)}, &w),
            0);
        cr_assert_eq(store_wait(t.s, w.ack), 0);
    }
    ts_close(&t);
    uint8_t id[16];
    char err[256];
    cr_assert_eq(logdir_meta_read(t.dir, id, err, sizeof(err)), 0, "%s", err);
    seed = rec_log_seed(id);
    nseg = ts_segments(&t, bases, 64);
    cr_assert(nseg >= 5, "only %zu segments", nseg);
}

static void
teardown(void)
{
    ts_destroy(&t);
}

TestSuite(fsck, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ---- */

static char *
seg_file(size_t i)
{
    static char path[4][4096];
    static int next;
    char *p = path[next++ % 4];
    ts_seg_path(&t, bases[i], p, sizeof(path[0]));
    return p;
}

static char *
hint_file(size_t i)
{
    static char path[4][4096];
    static int next;
    char *p = path[next++ % 4];
    hint_path(t.dir, bases[i], p, sizeof(path[0]));
    return p;
}

static const char *
base_name(const char *path)
{
    return strrchr(path, '/') + 1;
}

/* File positions of segment i's records; returns how many. */
static size_t
records(size_t i, uint64_t *pos, size_t max)
{
    size_t len, n = 0;
    char *buf = tt_slurp(seg_file(i), &len);
    cr_assert_not_null(buf);
    for (uint64_t p = 0; p < len && n < max;) {
        struct rec r;
        long sz = rec_decode(buf + p, len - p, seed, bases[i] + p, &r);
        cr_assert(sz > 0, "test setup: %s does not decode at %" PRIu64,
                  seg_file(i), p);
        pos[n++] = p;
        p += (uint64_t)sz;
    }
    free(buf);
    return n;
}

/* Run mcdb-fsck [a] [b] DATA; *out gets what it printed. */
static int
fsck(char **out, const char *a, const char *b)
{
    const char *argv[5] = {tt_tool("mcdb-fsck")};
    int n = 1;
    if (a)
        argv[n++] = a;
    if (b)
        argv[n++] = b;
    argv[n++] = t.dir;
    argv[n] = NULL;
    int st = tt_run(out, argv);
    cr_log_info("$ mcdb-fsck %s %s -> %d\n%s", a ? a : "", b ? b : "", st,
                *out);
    return st;
}

#define assert_has(out, s)                                                     \
    cr_assert(strstr((out), (s)) != NULL, "expected \"%s\" in:\n%s", (s), (out))

static void
assert_status(const char *a, int want)
{
    char *out;
    int st = fsck(&out, a, NULL);
    cr_assert_eq(st, want, "mcdb-fsck %s: exit %d, want %d:\n%s", a ? a : "",
                 st, want, out);
    free(out);
}

/* ---- a tiny JSON syntax check ---- */

static const char *json_value(const char *p);

static const char *
json_ws(const char *p)
{
    while (p && isspace((unsigned char)*p))
        p++;
    return p;
}

static const char *
json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    for (; *p && *p != '"'; p++)
        if (*p == '\\' && !*++p)
            return NULL;
        else if ((unsigned char)*p < 0x20)
            return NULL;
    return *p == '"' ? p + 1 : NULL;
}

static const char *
json_list(const char *p, char close, bool object)
{
    p = json_ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (object) {
            p = json_string(json_ws(p));
            p = json_ws(p);
            if (!p || *p++ != ':')
                return NULL;
        }
        p = json_ws(json_value(json_ws(p)));
        if (!p)
            return NULL;
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

static const char *
json_value(const char *p)
{
    if (!p)
        return NULL;
    if (*p == '{')
        return json_list(p, '}', true);
    if (*p == '[')
        return json_list(p, ']', false);
    if (*p == '"')
        return json_string(p);
    for (const char *w = "true\0false\0null\0"; *w; w += strlen(w) + 1)
        if (!strncmp(p, w, strlen(w)))
            return p + strlen(w);
    char *end;
    strtod(p, &end);
    return end > p ? end : NULL;
}

/* ---- the tests ---- */

Test(fsck, a_clean_directory_exits_0_with_its_totals)
{
    char *out;
    cr_assert_eq(fsck(&out, NULL, NULL), 0, "%s", out);
    assert_has(out, "clean");
    char want[64];
    snprintf(want, sizeof(want), "%zu (%zu sealed)", nseg, nseg - 1);
    assert_has(out, want);
    snprintf(want, sizeof(want), "%d keys", NKEYS - 10);
    assert_has(out, want);
    free(out);
    assert_status("--repair", 0);
    assert_status("--quiet", 0);
}

Test(
    fsck,
    a_flipped_byte_in_a_sealed_record_is_an_unreadable_range_that_repair_leaves)
{
    uint64_t pos[512];
    size_t n = records(1, pos, 512);
    cr_assert(n > 8);
    tt_flip(seg_file(1), pos[5] + REC_HDR_SIZE + 3, 0x01);
    size_t len0;
    char *before = tt_slurp(seg_file(1), &len0);

    char *out, want[256];
    cr_assert_eq(fsck(&out, NULL, NULL), 4);
    assert_has(out, base_name(seg_file(1)));
    snprintf(want, sizeof(want), "unreadable bytes [%" PRIu64 ", %" PRIu64 ")",
             bases[1] + pos[5], bases[1] + pos[6]);
    assert_has(out, want);
    assert_has(out, "checksum mismatch");
    free(out);

    cr_assert_eq(fsck(&out, "--repair", NULL), 4, "%s", out);
    assert_has(out, want);
    free(out);
    size_t len1;
    char *after = tt_slurp(seg_file(1), &len1);
    cr_assert(len0 == len1 && !memcmp(before, after, len0),
              "--repair changed a sealed segment");
    free(before);
    free(after);
}

Test(fsck, a_flipped_byte_in_a_segment_header_is_reported)
{
    tt_flip(seg_file(2), REC_HDR_SIZE + 20, 0x80); /* in the log id */
    char *out, want[256];
    cr_assert_eq(fsck(&out, NULL, NULL), 4);
    assert_has(out, base_name(seg_file(2)));
    snprintf(want, sizeof(want), "unreadable bytes [%" PRIu64 ", %" PRIu64 ")",
             bases[2], bases[2] + REC_HDR_SIZE + REC_SEG_HEADER_VLEN);
    assert_has(out, want);
    assert_has(out, "segment header");
    free(out);
}

Test(fsck, a_flipped_byte_in_a_footer_is_reported)
{
    long long size = ts_file_size(seg_file(1));
    tt_flip(seg_file(1), (uint64_t)size - 4, 0x10);
    char *out, want[256];
    cr_assert_eq(fsck(&out, NULL, NULL), 4);
    snprintf(want, sizeof(want), "unreadable bytes [%" PRIu64 ", %" PRIu64 ")",
             bases[1] + (uint64_t)size - REC_SEG_FOOTER_SIZE,
             bases[1] + (uint64_t)size);
    assert_has(out, want);
    snprintf(want, sizeof(want), "%s: no footer", base_name(seg_file(1)));
    assert_has(out, want);
    free(out);
}

Test(fsck, a_flipped_byte_in_a_hint_is_reported_and_repair_rebuilds_it)
{
    tt_flip(hint_file(0), 100, 0x04);
    char *out, want[256];
    cr_assert_eq(fsck(&out, NULL, NULL), 4);
    snprintf(want, sizeof(want), "error: %s: hint file is damaged",
             base_name(hint_file(0)));
    assert_has(out, want);
    free(out);

    cr_assert_eq(fsck(&out, "--repair", NULL), 1);
    snprintf(want, sizeof(want), "repaired: %s", base_name(hint_file(0)));
    assert_has(out, want);
    free(out);
    assert_status(NULL, 0);
}

Test(fsck, a_stale_hint_is_reported_and_repair_rebuilds_it)
{
    /* the hint of segment 0 put where segment 1's belongs */
    size_t len;
    char *h0 = tt_slurp(hint_file(0), &len);
    FILE *f = fopen(hint_file(1), "wb");
    cr_assert_eq(fwrite(h0, 1, len, f), len);
    fclose(f);
    free(h0);

    char *out, want[256];
    cr_assert_eq(fsck(&out, NULL, NULL), 4);
    snprintf(want, sizeof(want), "error: %s: %s", base_name(hint_file(1)),
             hint_strerror(HINT_E_STALE));
    assert_has(out, want);
    free(out);
    cr_assert_eq(fsck(&out, "--repair", NULL), 1);
    free(out);
    assert_status(NULL, 0);
}

Test(fsck, a_missing_hint_is_a_note_that_repair_writes)
{
    cr_assert_eq(unlink(hint_file(3)), 0);
    char *out;
    cr_assert_eq(fsck(&out, NULL, NULL), 0);
    assert_has(out, "no hint file");
    free(out);
    assert_status("--repair", 1);
    cr_assert(ts_file_size(hint_file(3)) > 0);
    assert_status(NULL, 0);
}

/* What a crash leaves after the records of the last segment with --fsync
 * always: the zeros the writer padded it with. */
Test(fsck, zeros_after_the_last_record_are_a_note_and_repair_leaves_them)
{
    size_t last = nseg - 1;
    long long size = ts_file_size(seg_file(last));
    cr_assert_eq(truncate(seg_file(last), (off_t)(size + (1 << 20))), 0);
    char *out, want[256];
    cr_assert_eq(fsck(&out, NULL, NULL), 0, "%s", out);
    snprintf(want, sizeof(want),
             "note: %s: the log ends at offset %" PRIu64 ", before %d zero "
             "bytes",
             base_name(seg_file(last)), bases[last] + (uint64_t)size, 1 << 20);
    assert_has(out, want);
    free(out);
    cr_assert_eq(fsck(&out, "--repair", NULL), 0, "%s", out);
    free(out);
    cr_assert_eq(ts_file_size(seg_file(last)), size + (1 << 20));
}

Test(fsck, a_torn_tail_is_reported_and_repair_cuts_and_saves_it)
{
    size_t last = nseg - 1;
    uint64_t pos[512];
    size_t n = records(last, pos, 512);
    cr_assert(n >= 3, "the last segment holds %zu records", n);
    uint64_t cut = pos[n - 1] + 20; /* mid-record */
    cr_assert_eq(truncate(seg_file(last), (off_t)cut), 0);

    char *out, want[256];
    cr_assert_eq(fsck(&out, NULL, NULL), 4);
    snprintf(want, sizeof(want), "%s: torn tail at offset %" PRIu64,
             base_name(seg_file(last)), bases[last] + pos[n - 1]);
    assert_has(out, want);
    free(out);

    cr_assert_eq(fsck(&out, "--repair", NULL), 1);
    snprintf(want, sizeof(want), "repaired: %s: torn tail at offset %" PRIu64,
             base_name(seg_file(last)), bases[last] + pos[n - 1]);
    assert_has(out, want);
    free(out);
    cr_assert_eq(ts_file_size(seg_file(last)), (long long)pos[n - 1]);
    char saved[4200];
    snprintf(saved, sizeof(saved), "%s.tail-%" PRIu64, seg_file(last),
             bases[last] + pos[n - 1]);
    /* the cut bytes but trailing zeros (a DELETE's flags) */
    long long saved_len = ts_file_size(saved);
    cr_assert(saved_len > 8 && saved_len <= 20, "the cut bytes are not in %s",
              saved);

    cr_assert_eq(fsck(&out, NULL, NULL), 0, "%s", out);
    assert_has(out, "note: "); /* the saved tail */
    free(out);
    ts_open(&t); /* and the store starts on it */
    char *v = ts_get(&t, "key399", NULL, NULL);
    cr_assert_not_null(v);
    free(v);
    ts_close(&t);
}

Test(fsck,
     bad_bytes_followed_by_a_record_in_the_last_segment_are_not_a_torn_tail)
{
    size_t last = nseg - 1;
    uint64_t pos[512];
    size_t n = records(last, pos, 512);
    cr_assert(n >= 3);
    tt_flip(seg_file(last), pos[1] + REC_HDR_SIZE, 0x01);
    long long size = ts_file_size(seg_file(last));
    char *out, want[256];
    cr_assert_eq(fsck(&out, "--repair", NULL), 4);
    snprintf(want, sizeof(want), "unreadable bytes [%" PRIu64 ", %" PRIu64 ")",
             bases[last] + pos[1], bases[last] + pos[2]);
    assert_has(out, want);
    assert_has(out, "not a torn tail");
    free(out);
    cr_assert_eq(ts_file_size(seg_file(last)), size, "--repair cut data");
}

Test(fsck, a_missing_segment_in_the_middle_is_named_with_its_range)
{
    cr_assert_eq(unlink(seg_file(2)), 0);
    unlink(hint_file(2));
    char *out, want[256];
    cr_assert_eq(fsck(&out, NULL, NULL), 4);
    snprintf(want, sizeof(want),
             "log bytes [%" PRIu64 ", %" PRIu64 ") are missing", bases[2],
             bases[3]);
    assert_has(out, want);
    assert_has(out, base_name(seg_file(3)));
    free(out);
    assert_status("--repair", 4);
}

Test(fsck, repair_fixes_what_it_can_and_reports_the_rest)
{
    tt_flip(seg_file(1), 1000, 0x01);
    tt_flip(hint_file(2), 60, 0x01);
    cr_assert_eq(
        truncate(seg_file(nseg - 1), ts_file_size(seg_file(nseg - 1)) - 3), 0);
    assert_status(NULL, 4);
    assert_status("--repair", 1 | 4);
    assert_status(NULL, 4);
}

Test(fsck, json_prints_one_object_with_findings_and_totals)
{
    tt_flip(hint_file(0), 100, 0x04);
    char *out;
    cr_assert_eq(fsck(&out, "--json", NULL), 4);
    const char *end = json_ws(json_value(json_ws(out)));
    cr_assert(end && *end == '\0', "not one JSON value:\n%s", out);
    assert_has(out, "\"kind\":\"hint\"");
    assert_has(out, "\"live_keys\":390");
    assert_has(out, "\"exit\":4");
    free(out);
}

Test(fsck, repair_refuses_while_the_lock_is_held_and_a_check_still_runs)
{
    int fd;
    char err[256], *out, want[64];
    cr_assert_eq(logdir_lock(t.dir, &fd, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(fsck(&out, "--repair", NULL), 8);
    snprintf(want, sizeof(want), "in use by process %ld", (long)getpid());
    assert_has(out, want);
    free(out);
    cr_assert_eq(fsck(&out, NULL, NULL), 0);
    assert_has(out, "live directory");
    free(out);
    close(fd);
}

Test(fsck, usage_errors_exit_16_and_missing_directories_8)
{
    char *out;
    const char *none[] = {tt_tool("mcdb-fsck"), NULL};
    cr_assert_eq(tt_run(&out, none), 16);
    free(out);
    const char *bad[] = {tt_tool("mcdb-fsck"), "--bogus", t.dir, NULL};
    cr_assert_eq(tt_run(&out, bad), 16);
    free(out);
    const char *two[] = {tt_tool("mcdb-fsck"), t.dir, t.dir, NULL};
    cr_assert_eq(tt_run(&out, two), 16);
    free(out);
    const char *help[] = {tt_tool("mcdb-fsck"), "--help", NULL};
    cr_assert_eq(tt_run(&out, help), 0);
    assert_has(out, "Usage: mcdb-fsck");
    free(out);
    const char *gone[] = {tt_tool("mcdb-fsck"), "/nonexistent/mcdb", NULL};
    cr_assert_eq(tt_run(&out, gone), 8);
    free(out);
    char *empty = th_tmpdir();
    const char *notdata[] = {tt_tool("mcdb-fsck"), empty, NULL};
    cr_assert_eq(tt_run(&out, notdata), 8);
    assert_has(out, "not an mcdb data directory");
    cr_assert_eq(access(empty, F_OK), 0);
    free(out);
    th_rmrf(empty);
    free(empty);
}

/* A clean close leaves a hint of the active segment, which the next
 * start-up reads: checked like a sealed segment's. A stale one (start-up
 * ignores it) is a note. */
Test(fsck, the_active_segments_hint_is_checked_and_a_stale_one_is_a_note)
{
    size_t last = nseg - 1;
    cr_assert_gt(ts_file_size(hint_file(last)), 0, "close wrote no hint");
    char *out, want[256];
    cr_assert_eq(fsck(&out, NULL, NULL), 0, "%s", out);
    snprintf(want, sizeof(want), "%zu valid", nseg);
    assert_has(out, want);
    free(out);

    tt_flip(hint_file(last), 100, 0x04);
    cr_assert_eq(fsck(&out, NULL, NULL), 4);
    snprintf(want, sizeof(want), "error: %s: hint file is damaged",
             base_name(hint_file(last)));
    assert_has(out, want);
    free(out);
    assert_status("--repair", 1);
    assert_status(NULL, 0);

    /* segment 0's hint where the active segment's belongs */
    size_t len;
    char *h0 = tt_slurp(hint_file(0), &len);
    FILE *f = fopen(hint_file(last), "wb");
    cr_assert_eq(fwrite(h0, 1, len, f), len);
    fclose(f);
    free(h0);
    cr_assert_eq(fsck(&out, NULL, NULL), 0, "%s", out);
    snprintf(want, sizeof(want), "note: %s: a hint for the active segment: %s",
             base_name(hint_file(last)), hint_strerror(HINT_E_STALE));
    assert_has(out, want);
    free(out);
}

/* A live check may read a record's bytes before the server's write reaches
 * them (zeros, with --preallocate) and the records after them once it has:
 * it looks at such bytes again before it calls them damage. Here the
 * "write" puts a zeroed record back 30 ms after fsck starts. */
struct late_write {
    const char *path;
    uint64_t pos;
    const char *bytes;
    size_t len;
};

static void *
write_late(void *arg)
{
    struct late_write *w = arg;
    usleep(30000);
    int fd = open(w->path, O_WRONLY);
    cr_assert(fd >= 0);
    cr_assert_eq(pwrite(fd, w->bytes, w->len, (off_t)w->pos), (ssize_t)w->len);
    close(fd);
    return NULL;
}

Test(fsck, a_live_check_waits_for_zeros_that_a_write_is_filling_in)
{
    size_t last = nseg - 1, n, len;
    uint64_t pos[256];
    n = records(last, pos, 256);
    cr_assert_geq(n, 4, "test setup: %zu records in the last segment", n);
    char *seg = tt_slurp(seg_file(last), &len);
    struct late_write w = {.path = seg_file(last),
                           .pos = pos[1],
                           .bytes = seg + pos[1],
                           .len = pos[2] - pos[1]};
    char zeros[8192] = {0};
    cr_assert_leq(w.len, sizeof(zeros));
    int sfd = open(w.path, O_WRONLY);
    cr_assert_eq(pwrite(sfd, zeros, w.len, (off_t)w.pos), (ssize_t)w.len);
    close(sfd);

    int lfd;
    char err[256], *out;
    cr_assert_eq(logdir_lock(t.dir, &lfd, err, sizeof(err)), 0, "%s", err);
    pthread_t th;
    pthread_create(&th, NULL, write_late, &w);
    int st = fsck(&out, NULL, NULL);
    pthread_join(th, NULL);
    cr_assert_eq(st, 0, "zeros being written were judged damage:\n%s", out);
    assert_has(out, "live directory");
    free(out);
    close(lfd);
    free(seg);
}
