/*
 * A replica's data directory changed as a whole (resync.c): a divergent
 * tail moved aside, a full copy installed, and each of them interrupted.
 */
#include "helpers/server.h"
#include "helpers/store_util.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG (64u << 10)

static struct tstore p, r;

static void
setup(void)
{
    ts_init(&p, SEG, 0);
    p.cfg.compactor = false;
    ts_open(&p);
    ts_init(&r, SEG, 0);
    r.cfg.replica_of = "127.0.0.1:1";
}

static void
teardown(void)
{
    ts_destroy(&p);
    ts_destroy(&r);
}

TestSuite(resync, .init = setup, .fini = teardown, .timeout = 60);

static void
fill(const char *prefix, int n, size_t vlen)
{
    char key[64], *val = malloc(vlen + 1);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%s%d", prefix, i);
        memset(val, 'a' + i % 26, vlen);
        val[vlen] = '\0';
        cr_assert_eq(ts_set(&p, key, val, 0, 0), 0);
    }
    free(val);
}

/* Start a copy of the primary's whole durable log into the replica; the
 * copy is left for the caller to finish. */
static struct store_copy *
copy_all(void)
{
    struct logdir_meta m;
    store_meta(p.s, &m);
    uint64_t start = store_log_start(p.s), end = store_durable(p.s);
    struct store_copy *c;
    char err[512];
    cr_assert_eq(store_copy_begin(r.s, &m, start, &c, err, sizeof(err)), 0,
                 "%s", err);
    uint64_t off = start;
    char *buf = malloc(end - start);
    while (off < end) {
        struct store_span sp;
        cr_assert_eq(store_span(p.s, off, end, &sp), 0);
        cr_assert_eq(pread(sp.fd, buf + (off - start), sp.len, (off_t)sp.pos),
                     (ssize_t)sp.len);
        store_span_done(&sp);
        off += sp.len;
    }
    size_t used;
    cr_assert_eq(store_copy_add(c, buf, end - start, &used, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(used, end - start);
    free(buf);
    return c;
}

static void
replica_from_copy(void)
{
    ts_open(&r);
    char err[512];
    cr_assert_eq(store_copy_finish(r.s, copy_all(), false, err, sizeof(err)), 0,
                 "%s", err);
}

static int
count_prefix(const char *dir, const char *prefix, char *found, size_t n)
{
    DIR *d = opendir(dir);
    int k = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
            k++;
            if (found)
                snprintf(found, n, "%s/%s", dir, de->d_name);
        }
    if (d)
        closedir(d);
    return k;
}

static int
has_key(struct tstore *t, const char *key)
{
    char *v = ts_get(t, key, NULL, NULL);
    free(v);
    return v != NULL;
}

Test(resync,
     a_divergent_tail_moves_aside_whole_and_the_log_ends_where_it_parted)
{
    fill("a", 15, 6000); /* two segments */
    uint64_t from = store_durable(p.s);
    fill("b", 4, 6000);
    replica_from_copy();
    cr_assert(has_key(&r, "b3"));
    char aside[4096], err[512];
    uint64_t records = 0;
    cr_assert_eq(store_cut_log(r.s, from, aside, sizeof(aside), &records, err,
                               sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(records, 4, "moved %" PRIu64 " records", records);
    cr_assert_eq(store_log_end(r.s), from);
    cr_assert(has_key(&r, "a14"));
    cr_assert_not(has_key(&r, "b0"), "a key written after the cut is served");
    char about[4200];
    snprintf(about, sizeof(about), "%s/ABOUT", aside);
    size_t len;
    char *text = tt_slurp(about, &len);
    cr_assert_not_null(text, "%s is missing", about);
    cr_assert(strstr(text, "4 records"), "%s", text);
    free(text);
    /* the segment cut in the middle is there whole */
    uint64_t bases[8];
    size_t n = ts_segments(&r, bases, 8);
    char seg[4096], moved[4400];
    ts_seg_path(&r, bases[n - 1], seg, sizeof(seg));
    snprintf(moved, sizeof(moved), "%s/%s", aside, strrchr(seg, '/') + 1);
    cr_assert_gt(ts_file_size(moved), ts_file_size(seg));
    /* and it all survives a restart */
    ts_close(&r);
    ts_open(&r);
    cr_assert_eq(store_log_end(r.s), from);
    cr_assert(has_key(&r, "a0"));
}

Test(resync, a_copy_cut_short_is_thrown_away_and_the_old_log_kept)
{
    fill("a", 3, 100);
    replica_from_copy();
    fill("b", 3, 100);
    struct store_copy *c = copy_all();
    (void)c; /* never finished: the process "dies" */
    ts_close(&r);
    char partial[4200];
    snprintf(partial, sizeof(partial), "%s/resync.partial", r.dir);
    cr_assert_eq(access(partial, F_OK), 0);
    ts_open(&r);
    cr_assert_neq(access(partial, F_OK), 0, "the partial copy is still there");
    cr_assert(has_key(&r, "a2"));
    cr_assert_not(has_key(&r, "b0"));
    free(c); /* what store_copy_abort would free, without its rm */
}

Test(resync, a_copy_complete_before_a_crash_is_installed_at_the_next_open)
{
    fill("a", 3, 100);
    replica_from_copy();
    fill("b", 3, 100);
    struct store_copy *c = copy_all();
    ts_close(&r);
    /* what store_copy_finish does before it installs */
    char partial[4200], ready[4200], old[4300];
    snprintf(partial, sizeof(partial), "%s/resync.partial", r.dir);
    snprintf(ready, sizeof(ready), "%s/resync.ready", r.dir);
    snprintf(old, sizeof(old), "%s/OLD", partial);
    FILE *f = fopen(old, "w");
    fputs("delete\n", f);
    fclose(f);
    cr_assert_eq(rename(partial, ready), 0);
    free(c);
    ts_open(&r);
    cr_assert_neq(access(ready, F_OK), 0);
    cr_assert(has_key(&r, "b2"), "the copy was not installed");
    cr_assert_eq(count_prefix(r.dir, "diverged-", NULL, 0), 0);
    cr_assert_eq(store_log_end(r.s), store_durable(p.s));
}

Test(resync, a_copy_that_replaces_a_foreign_log_keeps_the_old_files_aside)
{
    /* the replica first follows another log */
    struct tstore other;
    ts_init(&other, SEG, 0);
    other.cfg.compactor = false;
    ts_open(&other);
    cr_assert_eq(ts_set(&other, "theirs", "1", 0, 0), 0);
    struct tstore save = p;
    p = other;
    replica_from_copy();
    p = save;
    cr_assert(has_key(&r, "theirs"));
    fill("ours", 2, 10);
    char err[512];
    cr_assert_eq(store_copy_finish(r.s, copy_all(), true, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_not(has_key(&r, "theirs"));
    cr_assert(has_key(&r, "ours1"));
    char aside[4096];
    cr_assert_eq(count_prefix(r.dir, "diverged-", aside, sizeof(aside)), 1);
    cr_assert_geq(count_prefix(aside, "0000", NULL, 0), 1);
    char meta[4200];
    snprintf(meta, sizeof(meta), "%s/META", aside);
    cr_assert_eq(access(meta, F_OK), 0);
    ts_destroy(&other);
}
