/*
 * Hint files, format version 1.
 *
 * DATA/<base, 20 digits>.hint describes the sealed segment file of the same
 * base, or the active one as a clean close left it (recover.c reads that
 * one once, and deletes it). Little-endian:
 *
 *   header (48 bytes)
 *     0  magic "MCDBHNT\0"
 *     8  u32 version (1)      12  u32 reserved (0)
 *    16  log id (16 bytes)
 *    32  u64 base             40  u64 end (base + segment file size)
 *   entries, one per record of the segment in order:
 *     0  u8 type   1  u8 rflags   2  u16 klen   4  u32 vlen
 *     8  u32 flags   12  u32 exptime   16  u64 cas   24  u64 time
 *    32  u64 offset (log offset of the record)
 *    40  key bytes, then the value bytes for every type but PUT (a PUT's
 *        value stays in the segment: the index only needs its length)
 *   trailer (16 bytes)
 *     0  u64 number of entries
 *     8  u64 xxh3_64 of every byte before the trailer, seeded with the log
 *        seed (record.c)
 *
 * A hint is used only when the whole file checks out: trailer checksum,
 * magic, version, log id, base and end equal to the segment file's. Any
 * doubt and recovery scans the segment instead, then rewrites the hint.
 */
#include "log/hint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define HINT_MAGIC "MCDBHNT\0"
#define HINT_VERSION 1
#define HINT_HDR 48
#define HINT_ENTRY 40
#define HINT_TRAILER 16

const char *
hint_strerror(int err)
{
    switch (err) {
    case HINT_E_MISSING:
        return "no hint file";
    case HINT_E_STALE:
        return "hint file is for another log, segment or segment size";
    case HINT_E_CORRUPT:
        return "hint file is damaged";
    case HINT_E_SEGMENT:
        return "the segment does not decode";
    }
    return strerror(-err);
}

void
hint_path(const char *dir, uint64_t base, char *out, size_t n)
{
    snprintf(out, n, "%s/%020" PRIu64 ".hint", dir, base);
}

struct buf {
    char *p;
    size_t len, cap;
};

static int
buf_put(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int
put_u32(struct buf *b, uint32_t v)
{
    return buf_put(b, &v, 4);
}

static int
put_u64(struct buf *b, uint64_t v)
{
    return buf_put(b, &v, 8);
}

static int
put_entry(struct buf *b, const struct rec *r, uint64_t off)
{
    char e[HINT_ENTRY];
    e[0] = (char)r->type;
    e[1] = (char)r->rflags;
    memcpy(e + 2, &r->klen, 2);
    memcpy(e + 4, &r->vlen, 4);
    memcpy(e + 8, &r->flags, 4);
    memcpy(e + 12, &r->exptime, 4);
    memcpy(e + 16, &r->cas, 8);
    memcpy(e + 24, &r->time_ms, 8);
    memcpy(e + 32, &off, 8);
    int rc = buf_put(b, e, sizeof(e));
    if (rc == 0)
        rc = buf_put(b, r->key, r->klen);
    if (rc == 0 && r->type != REC_PUT)
        rc = buf_put(b, r->val, r->vlen);
    return rc;
}

static int
write_file(const char *dir, uint64_t base, const struct buf *b)
{
    char path[4096], tmp[4200];
    hint_path(dir, base, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = 0;
    size_t done = 0;
    while (rc == 0 && done < b->len) {
        ssize_t n = write(fd, b->p + done, b->len - done);
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n > 0)
            done += (size_t)n;
    }
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

int
hint_write(const char *dir, const uint8_t log_id[16], uint64_t base,
           const char *seg, uint64_t size)
{
    uint64_t seed = rec_log_seed(log_id), count = 0;
    struct buf b = {0};
    int rc = buf_put(&b, HINT_MAGIC, 8);
    if (rc == 0)
        rc = put_u32(&b, HINT_VERSION);
    if (rc == 0)
        rc = put_u32(&b, 0);
    if (rc == 0)
        rc = buf_put(&b, log_id, 16);
    if (rc == 0)
        rc = put_u64(&b, base);
    if (rc == 0)
        rc = put_u64(&b, base + size);
    for (uint64_t pos = 0; rc == 0 && pos < size;) {
        struct rec r;
        long n = rec_decode(seg + pos, size - pos, seed, base + pos, &r);
        if (n < 0) {
            rc = HINT_E_SEGMENT;
            break;
        }
        rc = put_entry(&b, &r, base + pos);
        count++;
        pos += (uint64_t)n;
    }
    if (rc == 0)
        rc = put_u64(&b, count);
    if (rc == 0)
        rc = put_u64(&b, XXH3_64bits_withSeed(b.p, b.len, seed));
    if (rc == 0)
        rc = write_file(dir, base, &b);
    free(b.p);
    return rc;
}

uint64_t
hint_entries(const char *dir, uint64_t base, uint64_t *key_bytes)
{
    char path[4096];
    hint_path(dir, base, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint64_t n = 0, size = 0;
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 &&
        st.st_size >= HINT_HDR + HINT_TRAILER &&
        pread(fd, &n, 8, st.st_size - HINT_TRAILER) == 8)
        size = (uint64_t)st.st_size - HINT_HDR - HINT_TRAILER;
    if (fd >= 0)
        close(fd);
    if (n > size / HINT_ENTRY) /* not a hint: estimate nothing */
        n = 0;
    if (key_bytes)
        *key_bytes = n ? size - n * HINT_ENTRY : 0;
    return n;
}

static int
check(const char *p, size_t len, const uint8_t log_id[16], uint64_t base,
      uint64_t size, uint64_t *count)
{
    uint64_t seed = rec_log_seed(log_id), sum, b, e;
    uint32_t version;
    if (len < HINT_HDR + HINT_TRAILER)
        return HINT_E_CORRUPT;
    memcpy(&sum, p + len - 8, 8);
    if (sum != XXH3_64bits_withSeed(p, len - 8, seed))
        return HINT_E_CORRUPT;
    memcpy(&version, p + 8, 4);
    memcpy(&b, p + 32, 8);
    memcpy(&e, p + 40, 8);
    if (memcmp(p, HINT_MAGIC, 8) != 0 || version != HINT_VERSION)
        return HINT_E_CORRUPT;
    if (memcmp(p + 16, log_id, 16) != 0 || b != base || e != base + size)
        return HINT_E_STALE;
    memcpy(count, p + len - HINT_TRAILER, 8);
    return 0;
}

static int
walk(const char *p, size_t len, uint64_t count,
     int (*fn)(void *arg, const struct rec *r, uint64_t off), void *arg)
{
    size_t pos = HINT_HDR, end = len - HINT_TRAILER;
    /* First pass: structure only, so that fn never sees a partial hint. */
    for (int pass = 0; pass < 2; pass++) {
        pos = HINT_HDR;
        for (uint64_t i = 0; i < count; i++) {
            if (end - pos < HINT_ENTRY)
                return HINT_E_CORRUPT;
            struct rec r = {.type = (uint8_t)p[pos],
                            .rflags = (uint8_t)p[pos + 1]};
            uint64_t off;
            memcpy(&r.klen, p + pos + 2, 2);
            memcpy(&r.vlen, p + pos + 4, 4);
            memcpy(&r.flags, p + pos + 8, 4);
            memcpy(&r.exptime, p + pos + 12, 4);
            memcpy(&r.cas, p + pos + 16, 8);
            memcpy(&r.time_ms, p + pos + 24, 8);
            memcpy(&off, p + pos + 32, 8);
            size_t vbytes = r.type == REC_PUT ? 0 : r.vlen;
            if (end - pos - HINT_ENTRY < (size_t)r.klen + vbytes)
                return HINT_E_CORRUPT;
            r.key = p + pos + HINT_ENTRY;
            r.val = vbytes ? r.key + r.klen : NULL;
            pos += HINT_ENTRY + r.klen + vbytes;
            if (pass == 1) {
                int rc = fn(arg, &r, off);
                if (rc)
                    return rc;
            }
        }
        if (pos != end)
            return HINT_E_CORRUPT;
    }
    return 0;
}

int
hint_open(const char *dir, const uint8_t log_id[16], uint64_t base,
          uint64_t size, struct hint *h)
{
    char path[4096];
    hint_path(dir, base, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? HINT_E_MISSING : -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
        close(fd);
        return HINT_E_CORRUPT;
    }
    h->len = (size_t)st.st_size;
    h->map = mmap(NULL, h->len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (h->map == MAP_FAILED)
        return -errno;
    madvise(h->map, h->len, MADV_SEQUENTIAL);
    int rc = check(h->map, h->len, log_id, base, size, &h->count);
    if (rc)
        hint_close(h);
    return rc;
}

int
hint_walk(const struct hint *h,
          int (*fn)(void *arg, const struct rec *r, uint64_t off), void *arg)
{
    return walk(h->map, h->len, h->count, fn, arg);
}

void
hint_close(struct hint *h)
{
    if (h->map && h->map != MAP_FAILED)
        munmap(h->map, h->len);
    h->map = NULL;
}

int
hint_read(const char *dir, const uint8_t log_id[16], uint64_t base,
          uint64_t size,
          int (*fn)(void *arg, const struct rec *r, uint64_t off), void *arg)
{
    struct hint h;
    int rc = hint_open(dir, log_id, base, size, &h);
    if (rc == 0) {
        rc = hint_walk(&h, fn, arg);
        hint_close(&h);
    }
    return rc;
}
