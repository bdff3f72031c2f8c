/*
 * The power-cut trace: what the LD_PRELOAD shim (shim.c) writes and what the
 * test (image.c) reads back.
 *
 * The shim watches one directory, MCDB_POWERCUT_DIR, and appends one record
 * to MCDB_POWERCUT_TRACE for each call that changes a file or a name in it.
 * Records are numbered by one counter, an 8-byte integer in the file
 * MCDB_POWERCUT_SEQ that the shim maps shared, so that the test can read
 * "the next number" at any moment (pc_seq_now in image.h): every record
 * numbered below what it read happened before it read it.
 *
 * A record is numbered when its call has returned (so a write's number is
 * past the moment its bytes reached the page cache), except that
 *   - a sync is two records: PC_SYNC_BEGIN before the call and PC_SYNC_END
 *     after it returned (its off is the BEGIN's number): the sync covers
 *     writes numbered below its BEGIN, and is done for a power cut after
 *     its END;
 *   - PC_CLOSE is numbered before the close, so that a descriptor number
 *     reused by another thread's open never meets a stale record.
 * Only calls that succeeded are recorded (a failed sync has its END with
 * PC_F_FAILED). The shim writes records under a lock in number order.
 *
 * Layout: struct pc_rec, then namelen bytes of name, name2len bytes of
 * name2, and for PC_WRITE len bytes of data. Names are relative to the
 * watched directory ("" is the directory itself; "a/b" a file in a
 * subdirectory), without a terminating NUL. Integers are native-endian:
 * the trace is read on the machine that wrote it.
 */
#ifndef MCDB_TEST_POWERCUT_TRACE_H
#define MCDB_TEST_POWERCUT_TRACE_H

#include <stdint.h>

enum pc_op {
    PC_OPEN = 1,   /* name, fd, flags (open's); a directory has O_DIRECTORY */
    PC_WRITE,      /* fd, off, len, then the bytes */
    PC_TRUNC,      /* fd (or -1 and name: truncate()), len = the new size */
    PC_FALLOC,     /* fd, flags = mode, off, len */
    PC_SYNC_BEGIN, /* fd (-1: sync()/syncfs(), everything), flags below */
    PC_SYNC_END,   /* fd, off = the number of its PC_SYNC_BEGIN */
    PC_RENAME,     /* name -> name2 (flags: renameat2's) */
    PC_UNLINK,     /* name */
    PC_MKDIR,      /* name */
    PC_RMDIR,      /* name */
    PC_CLOSE,      /* fd */
    PC_LINK,       /* name -> name2, a new hard link */
    PC_STDIO,      /* name opened for writing by stdio: its writes are not
                      seen (glibc calls write internally) */
};

#define PC_F_FDATASYNC 1u /* PC_SYNC_*: fdatasync (else fsync) */
#define PC_F_FAILED 2u    /* PC_SYNC_END: the call failed */

struct pc_rec {
    uint64_t seq;
    uint32_t op;
    int32_t fd;
    uint64_t off;
    uint64_t len;
    uint32_t flags;
    uint16_t namelen;
    uint16_t name2len;
};

#endif
