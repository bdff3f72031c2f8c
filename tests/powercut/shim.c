/*
 * An LD_PRELOAD shim that records what a process writes, syncs, creates,
 * renames and deletes in one directory, for the power-cut test
 * (test_powercut.c). It changes nothing: every call goes on to the C
 * library; the shim only appends a record of it to a trace (trace.h).
 *
 *   MCDB_POWERCUT_DIR=/abs/data MCDB_POWERCUT_TRACE=/abs/trace \
 *   MCDB_POWERCUT_SEQ=/abs/seq LD_PRELOAD=build/tests/libmcdb_powercut_shim.so
 * \ build/mcdbd --data-dir /abs/data ...
 *
 * Without MCDB_POWERCUT_DIR it only passes calls on.
 *
 * What it sees: the calls a program makes through the C library's dynamic
 * symbols: open/openat/creat (and their 64 and fortified forms), write,
 * pwrite, writev, pwritev(2), ftruncate, truncate, fallocate, fsync,
 * fdatasync, syncfs, sync, rename/renameat/renameat2, link/linkat,
 * unlink/unlinkat, mkdir/mkdirat, rmdir, close, and fopen for writing
 * (recorded as PC_STDIO: stdio's own writes happen inside the C library,
 * where no shim sees them). What it does not see: writes through a shared
 * writable mmap, io_uring file operations, dup'ed descriptors, raw
 * syscall(2). mcdb's log code uses none of them on its data directory (its
 * mmaps are read-only and io_uring serves only sockets), and the test
 * checks that no PC_STDIO record names a file that matters.
 */
#include "powercut/trace.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define PC_EXPORT __attribute__((visibility("default")))
#define FD_MAX 65536

/* The C library's functions, found once (RTLD_NEXT: the next definition
 * after this library, which may be a sanitizer's interceptor). */
#define REAL_FUNCS(X)                                                          \
    X(open, int, (const char *, int, ...))                                     \
    X(openat, int, (int, const char *, int, ...))                              \
    X(write, ssize_t, (int, const void *, size_t))                             \
    X(writev, ssize_t, (int, const struct iovec *, int))                       \
    X(pwrite, ssize_t, (int, const void *, size_t, off_t))                     \
    X(pwritev, ssize_t, (int, const struct iovec *, int, off_t))               \
    X(pwritev2, ssize_t, (int, const struct iovec *, int, off_t, int))         \
    X(ftruncate, int, (int, off_t))                                            \
    X(truncate, int, (const char *, off_t))                                    \
    X(fallocate, int, (int, int, off_t, off_t))                                \
    X(fsync, int, (int))                                                       \
    X(fdatasync, int, (int))                                                   \
    X(syncfs, int, (int))                                                      \
    X(sync, void, (void))                                                      \
    X(renameat2, int, (int, const char *, int, const char *, unsigned))        \
    X(rename, int, (const char *, const char *))                               \
    X(renameat, int, (int, const char *, int, const char *))                   \
    X(link, int, (const char *, const char *))                                 \
    X(linkat, int, (int, const char *, int, const char *, int))                \
    X(unlink, int, (const char *))                                             \
    X(unlinkat, int, (int, const char *, int))                                 \
    X(mkdir, int, (const char *, mode_t))                                      \
    X(mkdirat, int, (int, const char *, mode_t))                               \
    X(rmdir, int, (const char *))                                              \
    X(close, int, (int))                                                       \
    X(fopen, FILE *, (const char *, const char *))

#define DECLARE(name, ret, args) static ret(*real_##name) args;
REAL_FUNCS(DECLARE)
#undef DECLARE

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool active;               /* MCDB_POWERCUT_DIR is set and usable */
static char watch[PATH_MAX];      /* the directory, normalized */
static char watch_real[PATH_MAX]; /* and its realpath */
static int trace_fd = -1;
static _Atomic uint64_t *counter; /* shared with the test */
static pthread_mutex_t trace_mu = PTHREAD_MUTEX_INITIALIZER;

/* Which descriptors are in the watched directory: 0 no, 1 a file, 2 a
 * directory (its relative name kept in dir_names for openat and friends). */
static _Atomic unsigned char fd_kind[FD_MAX];
static char *_Atomic dir_names[FD_MAX];

/* Lexically normalize an absolute path in place: no "//", "/./", "..",
 * or trailing "/". Symbolic links are not resolved. */
static void
normalize(char *p)
{
    char out[PATH_MAX * 2];
    size_t n = 0;
    const char *s = p;
    while (*s) {
        while (*s == '/')
            s++;
        if (!*s)
            break;
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 1 && s[0] == '.') {
            /* nothing */
        } else if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
        } else if (n + 1 + len < sizeof(out)) {
            out[n++] = '/';
            memcpy(out + n, s, len);
            n += len;
        }
        s += len;
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = '\0';
    memcpy(p, out, n + 1);
}

static void
init(void)
{
#define RESOLVE(name, ret, args)                                               \
    real_##name = (ret(*) args)dlsym(RTLD_NEXT, #name);
    REAL_FUNCS(RESOLVE)
#undef RESOLVE
    const char *dir = getenv("MCDB_POWERCUT_DIR");
    const char *trace = getenv("MCDB_POWERCUT_TRACE");
    const char *seq = getenv("MCDB_POWERCUT_SEQ");
    if (!dir || !trace || !seq || dir[0] != '/' || strlen(dir) >= sizeof(watch))
        return;
    snprintf(watch, sizeof(watch), "%s", dir);
    normalize(watch);
    if (!realpath(watch, watch_real))
        snprintf(watch_real, sizeof(watch_real), "%s", watch);
    trace_fd =
        real_open(trace, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int sfd = real_open(seq, O_RDWR | O_CLOEXEC);
    void *m = sfd >= 0 ? mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE,
                              MAP_SHARED, sfd, 0)
                       : MAP_FAILED;
    if (sfd >= 0)
        real_close(sfd);
    if (trace_fd < 0 || m == MAP_FAILED) {
        fprintf(stderr, "powercut shim: cannot open %s or %s: %s\n", trace, seq,
                strerror(errno));
        abort();
    }
    counter = m;
    active = true;
}

static inline void
ensure_init(void)
{
    pthread_once(&once, init);
}

__attribute__((constructor)) static void
shim_ctor(void)
{
    ensure_init();
}

/* The name of path (relative to dirfd) inside the watched directory into
 * out; false when it is outside. */
static bool
rel_name(int dirfd, const char *path, char *out, size_t outlen)
{
    if (!active || !path)
        return false;
    char abs[PATH_MAX * 2];
    if (path[0] == '/') {
        snprintf(abs, sizeof(abs), "%s", path);
    } else if (dirfd == AT_FDCWD) {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            return false;
        snprintf(abs, sizeof(abs), "%s/%s", cwd, path);
    } else if (dirfd >= 0 && dirfd < FD_MAX && fd_kind[dirfd] == 2 &&
               dir_names[dirfd]) {
        snprintf(abs, sizeof(abs), "%s/%s/%s", watch, dir_names[dirfd], path);
    } else {
        return false;
    }
    normalize(abs);
    const char *roots[2] = {watch, watch_real};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(roots[i]);
        if (strncmp(abs, roots[i], n) != 0)
            continue;
        if (abs[n] == '\0') {
            snprintf(out, outlen, "%s", "");
            return true;
        }
        if (abs[n] == '/') {
            snprintf(out, outlen, "%s", abs + n + 1);
            return true;
        }
    }
    return false;
}

static inline bool
tracked(int fd)
{
    return active && fd >= 0 && fd < FD_MAX && fd_kind[fd] != 0;
}

static void
write_all(const struct iovec *iov, int cnt)
{
    struct iovec v[8];
    memcpy(v, iov, (size_t)cnt * sizeof(*v));
    int i = 0;
    while (i < cnt) {
        ssize_t n = real_writev(trace_fd, v + i, cnt - i);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "powercut shim: writing the trace: %s\n",
                    strerror(errno));
            abort();
        }
        while (i < cnt && (size_t)n >= v[i].iov_len)
            n -= (ssize_t)v[i++].iov_len;
        if (i < cnt) {
            v[i].iov_base = (char *)v[i].iov_base + n;
            v[i].iov_len -= (size_t)n;
        }
    }
}

/* Append one record; returns its number. errno is kept for the caller. */
static uint64_t
record(uint32_t op, int fd, uint64_t off, uint64_t len, uint32_t flags,
       const char *name, const char *name2, const void *data, size_t datalen)
{
    int saved = errno;
    struct pc_rec r = {.op = op,
                       .fd = fd,
                       .off = off,
                       .len = len,
                       .flags = flags,
                       .namelen = (uint16_t)(name ? strlen(name) : 0),
                       .name2len = (uint16_t)(name2 ? strlen(name2) : 0)};
    struct iovec v[4] = {{&r, sizeof(r)},
                         {(void *)(name ? name : ""), r.namelen},
                         {(void *)(name2 ? name2 : ""), r.name2len},
                         {(void *)data, datalen}};
    pthread_mutex_lock(&trace_mu);
    r.seq = atomic_fetch_add(counter, 1);
    write_all(v, 4);
    pthread_mutex_unlock(&trace_mu);
    errno = saved;
    return r.seq;
}

static void
track_fd(int fd, int flags, const char *name)
{
    if (fd < 0 || fd >= FD_MAX)
        return;
    bool dir = (flags & O_DIRECTORY) != 0;
    if (!dir) {
        struct stat st;
        dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    }
    char *old = atomic_exchange(&dir_names[fd], dir ? strdup(name) : NULL);
    free(old);
    fd_kind[fd] = dir ? 2 : 1;
    record(PC_OPEN, fd, 0, 0, (uint32_t)(flags | (dir ? O_DIRECTORY : 0)), name,
           NULL, NULL, 0);
}

static int
do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    ensure_init();
    int fd = dirfd == AT_FDCWD ? real_open(path, flags, mode)
                               : real_openat(dirfd, path, flags, mode);
    char name[PATH_MAX];
    if (fd >= 0 && rel_name(dirfd, path, name, sizeof(name)))
        track_fd(fd, flags, name);
    return fd;
}

#define SHIM_EXPORT PC_EXPORT
#include "helpers/shim_open.h"

static void
record_write(int fd, uint64_t off, const void *p, size_t n)
{
    record(PC_WRITE, fd, off, n, 0, NULL, NULL, p, n);
}

/* The bytes of an iovec write that went through, gathered. */
static void
record_writev(int fd, uint64_t off, const struct iovec *iov, int cnt, size_t n)
{
    char *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    size_t done = 0;
    for (int i = 0; i < cnt && done < n; i++) {
        size_t k = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
        memcpy(buf + done, iov[i].iov_base, k);
        done += k;
    }
    record_write(fd, off, buf, n);
    free(buf);
}

PC_EXPORT ssize_t
write(int fd, const void *p, size_t n)
{
    ensure_init();
    ssize_t w = real_write(fd, p, n);
    if (w > 0 && tracked(fd)) {
        off_t end = lseek(fd, 0, SEEK_CUR);
        record_write(fd, (uint64_t)(end - w), p, (size_t)w);
    }
    return w;
}

PC_EXPORT ssize_t
writev(int fd, const struct iovec *iov, int cnt)
{
    ensure_init();
    ssize_t w = real_writev(fd, iov, cnt);
    if (w > 0 && tracked(fd)) {
        off_t end = lseek(fd, 0, SEEK_CUR);
        record_writev(fd, (uint64_t)(end - w), iov, cnt, (size_t)w);
    }
    return w;
}

PC_EXPORT ssize_t
pwrite(int fd, const void *p, size_t n, off_t off)
{
    ensure_init();
    ssize_t w = real_pwrite(fd, p, n, off);
    if (w > 0 && tracked(fd))
        record_write(fd, (uint64_t)off, p, (size_t)w);
    return w;
}

PC_EXPORT ssize_t
pwrite64(int fd, const void *p, size_t n, off_t off)
{
    return pwrite(fd, p, n, off);
}

PC_EXPORT ssize_t
pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ensure_init();
    ssize_t w = real_pwritev(fd, iov, cnt, off);
    if (w > 0 && tracked(fd))
        record_writev(fd, (uint64_t)off, iov, cnt, (size_t)w);
    return w;
}

PC_EXPORT ssize_t
pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return pwritev(fd, iov, cnt, off);
}

PC_EXPORT ssize_t
pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    ensure_init();
    ssize_t w = real_pwritev2(fd, iov, cnt, off, flags);
    if (w > 0 && tracked(fd)) {
        uint64_t at = (uint64_t)off;
        if (off == -1)
            at = (uint64_t)(lseek(fd, 0, SEEK_CUR) - w);
        record_writev(fd, at, iov, cnt, (size_t)w);
    }
    return w;
}

PC_EXPORT ssize_t
pwritev64v2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    return pwritev2(fd, iov, cnt, off, flags);
}

PC_EXPORT int
ftruncate(int fd, off_t len)
{
    ensure_init();
    int rc = real_ftruncate(fd, len);
    if (rc == 0 && tracked(fd))
        record(PC_TRUNC, fd, 0, (uint64_t)len, 0, NULL, NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
ftruncate64(int fd, off_t len)
{
    return ftruncate(fd, len);
}

PC_EXPORT int
truncate(const char *path, off_t len)
{
    ensure_init();
    int rc = real_truncate(path, len);
    char name[PATH_MAX];
    if (rc == 0 && rel_name(AT_FDCWD, path, name, sizeof(name)))
        record(PC_TRUNC, -1, 0, (uint64_t)len, 0, name, NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
truncate64(const char *path, off_t len)
{
    return truncate(path, len);
}

PC_EXPORT int
fallocate(int fd, int mode, off_t off, off_t len)
{
    ensure_init();
    int rc = real_fallocate(fd, mode, off, len);
    if (rc == 0 && tracked(fd))
        record(PC_FALLOC, fd, (uint64_t)off, (uint64_t)len, (uint32_t)mode,
               NULL, NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
fallocate64(int fd, int mode, off_t off, off_t len)
{
    return fallocate(fd, mode, off, len);
}

PC_EXPORT int
posix_fallocate(int fd, off_t off, off_t len)
{
    /* glibc's falls back to writing zeros when the file system cannot
     * allocate; modeled as fallocate mode 0, which it is on ext4 */
    ensure_init();
    int rc = real_fallocate(fd, 0, off, len);
    if (rc != 0)
        return errno;
    if (tracked(fd))
        record(PC_FALLOC, fd, (uint64_t)off, (uint64_t)len, 0, NULL, NULL, NULL,
               0);
    return 0;
}

PC_EXPORT int
posix_fallocate64(int fd, off_t off, off_t len)
{
    return posix_fallocate(fd, off, len);
}

static int
do_sync(int fd, uint32_t flags, int (*fn)(int))
{
    ensure_init();
    if (!tracked(fd))
        return fn(fd);
    uint64_t begin =
        record(PC_SYNC_BEGIN, fd, 0, 0, flags, NULL, NULL, NULL, 0);
    int rc = fn(fd);
    record(PC_SYNC_END, fd, begin, 0, flags | (rc ? PC_F_FAILED : 0), NULL,
           NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
fsync(int fd)
{
    ensure_init();
    return do_sync(fd, 0, real_fsync);
}

PC_EXPORT int
fdatasync(int fd)
{
    ensure_init();
    return do_sync(fd, PC_F_FDATASYNC, real_fdatasync);
}

PC_EXPORT int
syncfs(int fd)
{
    ensure_init();
    if (!active)
        return real_syncfs(fd);
    uint64_t begin = record(PC_SYNC_BEGIN, -1, 0, 0, 0, NULL, NULL, NULL, 0);
    int rc = real_syncfs(fd);
    record(PC_SYNC_END, -1, begin, 0, rc ? PC_F_FAILED : 0, NULL, NULL, NULL,
           0);
    return rc;
}

PC_EXPORT void
sync(void)
{
    ensure_init();
    if (!active) {
        real_sync();
        return;
    }
    uint64_t begin = record(PC_SYNC_BEGIN, -1, 0, 0, 0, NULL, NULL, NULL, 0);
    real_sync();
    record(PC_SYNC_END, -1, begin, 0, 0, NULL, NULL, NULL, 0);
}

static int
do_rename(int olddir, const char *from, int newdir, const char *to,
          unsigned flags)
{
    ensure_init();
    int rc;
    if (flags)
        rc = real_renameat2(olddir, from, newdir, to, flags);
    else if (olddir == AT_FDCWD && newdir == AT_FDCWD)
        rc = real_rename(from, to);
    else
        rc = real_renameat(olddir, from, newdir, to);
    char a[PATH_MAX], b[PATH_MAX];
    bool ia = rc == 0 && rel_name(olddir, from, a, sizeof(a));
    bool ib = rc == 0 && rel_name(newdir, to, b, sizeof(b));
    if (ia && ib)
        record(PC_RENAME, -1, 0, 0, flags, a, b, NULL, 0);
    else if (ia) /* moved out of the directory: gone from it */
        record(PC_UNLINK, -1, 0, 0, 0, a, NULL, NULL, 0);
    else if (ib) /* moved in: not modeled (mcdb never does it) */
        record(PC_STDIO, -1, 0, 0, 0, b, NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
rename(const char *from, const char *to)
{
    return do_rename(AT_FDCWD, from, AT_FDCWD, to, 0);
}

PC_EXPORT int
renameat(int olddir, const char *from, int newdir, const char *to)
{
    return do_rename(olddir, from, newdir, to, 0);
}

PC_EXPORT int
renameat2(int olddir, const char *from, int newdir, const char *to,
          unsigned flags)
{
    return do_rename(olddir, from, newdir, to, flags);
}

static int
do_link(int olddir, const char *from, int newdir, const char *to, int flags)
{
    ensure_init();
    int rc = olddir == AT_FDCWD && newdir == AT_FDCWD && !flags
                 ? real_link(from, to)
                 : real_linkat(olddir, from, newdir, to, flags);
    char a[PATH_MAX], b[PATH_MAX];
    if (rc == 0 && rel_name(newdir, to, b, sizeof(b))) {
        if (rel_name(olddir, from, a, sizeof(a)))
            record(PC_LINK, -1, 0, 0, 0, a, b, NULL, 0);
        else
            record(PC_STDIO, -1, 0, 0, 0, b, NULL, NULL, 0);
    }
    return rc;
}

PC_EXPORT int
link(const char *from, const char *to)
{
    return do_link(AT_FDCWD, from, AT_FDCWD, to, 0);
}

PC_EXPORT int
linkat(int olddir, const char *from, int newdir, const char *to, int flags)
{
    return do_link(olddir, from, newdir, to, flags);
}

PC_EXPORT int
unlink(const char *path)
{
    ensure_init();
    int rc = real_unlink(path);
    char name[PATH_MAX];
    if (rc == 0 && rel_name(AT_FDCWD, path, name, sizeof(name)))
        record(PC_UNLINK, -1, 0, 0, 0, name, NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
unlinkat(int dirfd, const char *path, int flags)
{
    ensure_init();
    int rc = real_unlinkat(dirfd, path, flags);
    char name[PATH_MAX];
    if (rc == 0 && rel_name(dirfd, path, name, sizeof(name)))
        record((flags & AT_REMOVEDIR) ? PC_RMDIR : PC_UNLINK, -1, 0, 0, 0, name,
               NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
mkdir(const char *path, mode_t mode)
{
    ensure_init();
    int rc = real_mkdir(path, mode);
    char name[PATH_MAX];
    if (rc == 0 && rel_name(AT_FDCWD, path, name, sizeof(name)))
        record(PC_MKDIR, -1, 0, 0, 0, name, NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
mkdirat(int dirfd, const char *path, mode_t mode)
{
    ensure_init();
    int rc = real_mkdirat(dirfd, path, mode);
    char name[PATH_MAX];
    if (rc == 0 && rel_name(dirfd, path, name, sizeof(name)))
        record(PC_MKDIR, -1, 0, 0, 0, name, NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
rmdir(const char *path)
{
    ensure_init();
    int rc = real_rmdir(path);
    char name[PATH_MAX];
    if (rc == 0 && rel_name(AT_FDCWD, path, name, sizeof(name)))
        record(PC_RMDIR, -1, 0, 0, 0, name, NULL, NULL, 0);
    return rc;
}

PC_EXPORT int
close(int fd)
{
    ensure_init();
    if (tracked(fd)) {
        record(PC_CLOSE, fd, 0, 0, 0, NULL, NULL, NULL, 0);
        fd_kind[fd] = 0;
        free(atomic_exchange(&dir_names[fd], NULL));
    }
    return real_close(fd);
}

static FILE *
do_fopen(const char *path, const char *mode)
{
    ensure_init();
    FILE *f = real_fopen(path, mode);
    char name[PATH_MAX];
    if (f && strpbrk(mode, "wa+") &&
        rel_name(AT_FDCWD, path, name, sizeof(name)))
        record(PC_STDIO, -1, 0, 0, 0, name, NULL, NULL, 0);
    return f;
}

PC_EXPORT FILE *
fopen(const char *path, const char *mode)
{
    return do_fopen(path, mode);
}

PC_EXPORT FILE *
fopen64(const char *path, const char *mode)
{
    return do_fopen(path, mode);
}
