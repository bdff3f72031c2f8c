/*
 * Power-cut images: read a trace written by the shim (trace.h) and write a
 * directory as a power cut at a given point of it could have left the disk.
 * image.c opens with the durability model, rule by rule.
 */
#ifndef MCDB_TEST_POWERCUT_IMAGE_H
#define MCDB_TEST_POWERCUT_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The shim's counter, shared: create the file before the traced process
 * starts, then read it at any moment. */
struct pc_counter;
struct pc_counter *pc_counter_create(const char *path);
uint64_t pc_counter_now(const struct pc_counter *c);
void pc_counter_free(struct pc_counter *c);

struct pc_trace;

/* Load a whole trace; NULL with a reason in err when it is unusable. */
struct pc_trace *pc_trace_load(const char *path, char *err, size_t errlen);
void pc_trace_free(struct pc_trace *t);

/* How many records: cut points run from 0 (nothing happened) to this
 * (everything did). */
uint64_t pc_trace_len(const struct pc_trace *t);

/* Cut points at every sync: just before each sync began (its writes all
 * pending) and just after each ended. Sorted, without duplicates;
 * malloc'd, *n entries. */
uint64_t *pc_trace_sync_cuts(const struct pc_trace *t, size_t *n);

/* Cut points at every name change (create, rename, link, unlink, mkdir,
 * rmdir): just after it, and when before is true just before it too.
 * Sorted, as above. */
uint64_t *pc_trace_name_cuts(const struct pc_trace *t, bool before, size_t *n);

/* Counts, for the report. */
struct pc_trace_stats {
    uint64_t records, writes, write_bytes, file_syncs, dir_syncs, creates,
        renames, unlinks, truncates, files, stdio;
};
void pc_trace_stats(const struct pc_trace *t, struct pc_trace_stats *st);

/* Names the program opened for writing through stdio (PC_STDIO), whose
 * writes the trace lacks; "" when none, else a malloc'd list. */
char *pc_trace_stdio_names(const struct pc_trace *t);

/*
 * How the writes that no completed sync covers are chosen (image.c, rules
 * 4 to 6). PC_NONE and PC_ALL are the two ends; PC_PREFIX is what an
 * in-order file system leaves (tier A); PC_HOLES adds whole pages that
 * write-back had not reached (tier B); PC_SUBSET and PC_PAGES are any
 * subset of the writes and any mix of page versions, sector tears included
 * (tier C: possible only with out-of-order write-back of a partly written
 * page).
 */
enum pc_mode { PC_NONE, PC_ALL, PC_PREFIX, PC_HOLES, PC_SUBSET, PC_PAGES };
#define PC_NMODES 6
const char *pc_mode_name(enum pc_mode m);
/* 'A', 'B' or 'C'. */
char pc_mode_tier(enum pc_mode m);

/*
 * Write into dir (an empty directory) the files that a power cut at cut
 * could leave, choosing with *rng (any nonzero seed; it advances). What was
 * chosen is described in desc. Returns 0, or -1 with the reason in desc.
 */
int pc_image_write(const struct pc_trace *t, uint64_t cut, enum pc_mode mode,
                   uint64_t *rng, const char *dir, char *desc, size_t desclen);

/* Every write of the trace, file by file: fn gets the path the file had
 * when it was created, the position, and the bytes. */
void pc_trace_each_write(const struct pc_trace *t,
                         void (*fn)(void *arg, const char *name, uint64_t off,
                                    const void *data, uint64_t len),
                         void *arg);

/* A random number below n (n > 0) from *rng (xorshift64*). */
uint64_t pc_rand(uint64_t *rng, uint64_t n);

#endif
