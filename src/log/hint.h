/*
 * hint: a sealed segment's records without their values, so that start-up
 * rebuilds the index without reading every value (Bitcask's hint files);
 * also of the active segment at a clean close, for the next start-up only.
 * The format is described in hint.c. Used by the store and the tools.
 */
#ifndef MCDB_HINT_H
#define MCDB_HINT_H

#include "log/record.h"

#include <stdint.h>

enum {
    HINT_E_MISSING = -1101, /* no hint file */
    HINT_E_STALE = -1102,   /* for another log, segment or segment size */
    HINT_E_CORRUPT = -1103, /* checksum or structure */
    HINT_E_SEGMENT = -1104, /* the segment itself does not decode */
};
const char *hint_strerror(int err);

void hint_path(const char *dir, uint64_t base, char *out, size_t n);

/*
 * Write the hint of the segment [base, base + size) whose bytes are
 * at seg (written to a temporary file, synced, renamed). Returns 0, -errno,
 * or HINT_E_SEGMENT if the segment does not decode (no hint is written).
 */
int hint_write(const char *dir, const uint8_t log_id[16], uint64_t base,
               const char *seg, uint64_t size);

/*
 * Check the hint of segment [base, base + size) and, only if it is entirely
 * valid, call fn for each record in order, segment header and footer
 * included: *r has every field of the record but a PUT's value (r->val is
 * NULL for PUT; the small values of other records are there), off its log
 * offset. Returns 0, a HINT_E_* code, or what fn
 * returned if non-zero (which stops the walk).
 */
int hint_read(const char *dir, const uint8_t log_id[16], uint64_t base,
              uint64_t size,
              int (*fn)(void *arg, const struct rec *r, uint64_t off),
              void *arg);

/* A hint checked whole and mapped, to walk later (possibly by several
 * threads at once: walking only reads). */
struct hint {
    char *map;
    size_t len;
    uint64_t count;
};
int hint_open(const char *dir, const uint8_t log_id[16], uint64_t base,
              uint64_t size, struct hint *h);
int hint_walk(const struct hint *h,
              int (*fn)(void *arg, const struct rec *r, uint64_t off),
              void *arg);
void hint_close(struct hint *h);

/* The number of entries a hint file says it holds, unverified (0 when it
 * has none), and in *key_bytes (if not NULL) the bytes of their keys (and
 * of the small values of records other than PUT): estimates for sizing the
 * index before loading. */
uint64_t hint_entries(const char *dir, uint64_t base, uint64_t *key_bytes);

#endif
