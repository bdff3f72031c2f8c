/*
 * Helpers for engine tests: a store in a fresh directory with a clock the
 * test moves, reopened at will.
 */
#ifndef MCDB_TEST_STORE_UTIL_H
#define MCDB_TEST_STORE_UTIL_H

#include "log/store.h"

struct tstore {
    store_t *s;
    char *dir;
    struct store_config cfg;
    int64_t now_ms; /* the store's clock when fake_clock is set */
};

/* Fresh dir, default config (small segments if seg_size), fake clock at a
 * fixed time when fake_clock. Fails the test on error. */
void ts_init(struct tstore *t, uint64_t seg_size, int fake_clock);
void ts_open(struct tstore *t); /* open (or reopen) t->dir */
int ts_try_open(struct tstore *t, char *err, size_t errlen);
void ts_close(struct tstore *t);   /* clean close */
void ts_destroy(struct tstore *t); /* close if open, remove the dir */

/* set key = val (flags, exptime) and wait until durable. */
int ts_set(struct tstore *t, const char *key, const char *val, uint32_t flags,
           int64_t exptime);
/* get key: returns a malloc'd NUL-terminated value or NULL if missing. */
char *ts_get(struct tstore *t, const char *key, uint32_t *flags, uint64_t *cas);

/* Path of the segment file with the given base offset. */
void ts_seg_path(const struct tstore *t, uint64_t base, char *out, size_t n);
/* Base offsets of the segment files, sorted; returns how many. */
size_t ts_segments(const struct tstore *t, uint64_t *bases, size_t max);
/* Delete the hint file of every segment (start-up then scans them). */
void ts_remove_hints(const struct tstore *t);
/* Size of a file in bytes, -1 if missing. */
long long ts_file_size(const char *path);

#endif
