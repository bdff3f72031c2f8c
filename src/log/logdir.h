/*
 * logdir: the files of a data directory (LOCK, META, segment names), for
 * the store and for offline tools that read a directory without opening a
 * store (mcdb-fsck). The formats are described in dir.c and record.c.
 */
#ifndef MCDB_LOGDIR_H
#define MCDB_LOGDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* flock DIR/LOCK and write our pid in it; *fd keeps the lock. A held lock
 * fails with STORE_LOCKED and a message naming the holder's pid. */
int logdir_lock(const char *dir, int *fd, char *err, size_t errlen);

/* META (its format is described in dir.c). */
#define LOGDIR_MAX_EPOCHS 64
struct logdir_epoch {
    uint64_t seq;   /* 1, 2, ...: one more at each promotion */
    uint64_t id;    /* unique: two forks never share an id */
    uint64_t start; /* log offset where the epoch began */
};
enum logdir_role { LOGDIR_PRIMARY, LOGDIR_REPLICA };
struct logdir_meta {
    bool has_log_id; /* a replica before its first sync has none */
    uint8_t log_id[16];
    enum logdir_role role;
    char primary[256]; /* a replica's primary, HOST:PORT */
    size_t nepochs;    /* the history, oldest first */
    struct logdir_epoch epochs[LOGDIR_MAX_EPOCHS];
};

/* Read DIR/META: 0, -ENOENT when there is none, STORE_CORRUPT. */
int logdir_meta_load(const char *dir, struct logdir_meta *m, char *err,
                     size_t errlen);
/* Replace DIR/META atomically. */
int logdir_meta_save(const char *dir, const struct logdir_meta *m, char *err,
                     size_t errlen);
/* A new log: a random log id, role primary, its first epoch. */
int logdir_meta_new(struct logdir_meta *m, char *err, size_t errlen);
/* The id of a log's first epoch (every copy of the log derives the same). */
uint64_t logdir_first_epoch_id(const uint8_t log_id[16]);
/* Start a new epoch (a random id) at log offset start; role primary. */
int logdir_meta_promote(struct logdir_meta *m, uint64_t start);
/* Only META's log id: 0, -ENOENT, STORE_CORRUPT (also when it has none). */
int logdir_meta_read(const char *dir, uint8_t log_id[16], char *err,
                     size_t errlen);

/* Sorted base offsets of DIR's *.seg files; *bases is malloc()ed. */
int logdir_list_segments(const char *dir, uint64_t **bases, size_t *n);

void logdir_seg_path(const char *dir, uint64_t base, char *out, size_t n);
/* The name a new segment file has until the writer starts writing into it
 * (<segment>.tmp): nothing is ever written to a file under it. */
void logdir_seg_tmp_path(const char *dir, uint64_t base, char *out, size_t n);
/* Delete the files left under such names by a stop before the writer
 * reached them (empty: never written), saying so; -errno on failure. One
 * that is not empty is left in place with a warning. */
int logdir_remove_seg_tmps(const char *dir);

/* fsync the directory itself. */
int logdir_sync(const char *dir);

#endif
