/*
 * logdir: the files of a data directory (LOCK, META, segment names), for
 * the store and for offline tools that read a directory without opening a
 * store (mcdb-fsck). The formats are described in dir.c and record.c.
 */
#ifndef MCDB_LOGDIR_H
#define MCDB_LOGDIR_H

#include <stddef.h>
#include <stdint.h>

/* flock DIR/LOCK and write our pid in it; *fd keeps the lock. A held lock
 * fails with STORE_LOCKED and a message naming the holder's pid. */
int logdir_lock(const char *dir, int *fd, char *err, size_t errlen);

/* Read META's log id: 0, -ENOENT when there is no META, STORE_CORRUPT. */
int logdir_meta_read(const char *dir, uint8_t log_id[16], char *err,
                     size_t errlen);

/* Create META with a new random log id (atomically). */
int logdir_meta_create(const char *dir, uint8_t log_id[16], char *err,
                       size_t errlen);

/* Sorted base offsets of DIR's *.seg files; *bases is malloc()ed. */
int logdir_list_segments(const char *dir, uint64_t **bases, size_t *n);

void logdir_seg_path(const char *dir, uint64_t base, char *out, size_t n);

/* fsync the directory itself. */
int logdir_sync(const char *dir);

#endif
