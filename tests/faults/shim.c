/*
 * An LD_PRELOAD shim that makes a process's file calls in one directory
 * fail as a failing or full disk does, for the failing-disk tests
 * (test_faults.c). Driven by the environment:
 *
 *   MCDB_FAULT_DIR=/abs/data      the directory watched (required; without
 *                                 it every call just goes through)
 *   MCDB_FAULT_CALLS=write,fsync  the calls that fail, comma-separated:
 *                                 open (an open that may create or write),
 *                                 write (write, pwrite, writev, pwritev),
 *                                 fsync (fsync, fdatasync), rename, unlink
 *   MCDB_FAULT_PATH=*.seg         fnmatch(3) patterns (comma-separated) for
 *                                 the name relative to the directory; "."
 *                                 is the directory itself (default: *)
 *   MCDB_FAULT_ERRNO=EIO          EIO, ENOSPC, EDQUOT, EROFS or a number
 *   MCDB_FAULT_AFTER=N            let N matching calls through first
 *   MCDB_FAULT_COUNT=N            fail N calls, then let calls through
 *                                 again (default 0: fail every one after)
 *   MCDB_FAULT_ARM=/abs/file      count and fail nothing until this file
 *                                 exists (the test creates it while its
 *                                 clients write)
 *   MCDB_FAULT_THREAD=mcdb-log    only calls from threads whose name
 *                                 starts so (prctl PR_GET_NAME)
 *   MCDB_FAULT_SHORT=1            the first failing write writes half its
 *                                 bytes and returns that count, as a file
 *                                 system that fills up mid-write does
 *
 * Every failure injected is said on stderr ("fault shim: ..."), so that
 * the server's log shows it next to what the server said about it.
 *
 *   MCDB_FAULT_DIR=/tmp/d MCDB_FAULT_CALLS=fsync MCDB_FAULT_PATH='*.seg' \
 *   MCDB_FAULT_ERRNO=EIO LD_PRELOAD=build/tests/libmcdb_fault_shim.so \
 *   build/mcdbd --data-dir /tmp/d
 *
 * Like the power-cut shim (tests/powercut/shim.c) it sees the calls a
 * program makes through the C library's dynamic symbols; mcdb's log code
 * makes all of its file writes so.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define FS_EXPORT __attribute__((visibility("default")))
#define FD_MAX 65536

#define REAL_FUNCS(X)                                                          \
    X(open, int, (const char *, int, ...))                                     \
    X(openat, int, (int, const char *, int, ...))                              \
    X(write, ssize_t, (int, const void *, size_t))                             \
    X(writev, ssize_t, (int, const struct iovec *, int))                       \
    X(pwrite, ssize_t, (int, const void *, size_t, off_t))                     \
    X(pwritev, ssize_t, (int, const struct iovec *, int, off_t))               \
    X(pwritev2, ssize_t, (int, const struct iovec *, int, off_t, int))         \
    X(fsync, int, (int))                                                       \
    X(fdatasync, int, (int))                                                   \
    X(rename, int, (const char *, const char *))                               \
    X(renameat, int, (int, const char *, int, const char *))                   \
    X(renameat2, int, (int, const char *, int, const char *, unsigned))        \
    X(unlink, int, (const char *))                                             \
    X(unlinkat, int, (int, const char *, int))                                 \
    X(close, int, (int))

#define DECLARE(name, ret, args) static ret(*real_##name) args;
REAL_FUNCS(DECLARE)
#undef DECLARE

enum { C_OPEN = 1, C_WRITE = 2, C_FSYNC = 4, C_RENAME = 8, C_UNLINK = 16 };

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool active;
static char watch[PATH_MAX];
static char watch_real[PATH_MAX];
static unsigned calls;
static char patterns[1024];
static int fail_errno = EIO;
static long after, count;
static char arm_path[PATH_MAX];
static atomic_bool armed;
static char thread_prefix[16];
static bool short_write;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static long seen, injected;

/* The name (relative to the directory) of each descriptor opened in it. */
static char *_Atomic fd_names[FD_MAX];

static int
parse_errno(const char *v)
{
    static const struct {
        const char *name;
        int e;
    } names[] = {
        {"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(v, names[i].name) == 0)
            return names[i].e;
    int e = atoi(v);
    return e > 0 ? e : EIO;
}

static unsigned
parse_calls(const char *v)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"open", C_OPEN},
                 {"write", C_WRITE},
                 {"fsync", C_FSYNC},
                 {"rename", C_RENAME},
                 {"unlink", C_UNLINK}};
    unsigned bits = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *save, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        bool known = false;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (strcmp(t, names[i].name) == 0) {
                bits |= names[i].bit;
                known = true;
            }
        if (!known) {
            fprintf(stderr,
                    "fault shim: unknown call '%s' in "
                    "MCDB_FAULT_CALLS\n",
                    t);
            abort();
        }
    }
    return bits;
}

static void
init(void)
{
#define RESOLVE(name, ret, args)                                               \
    real_##name = (ret(*) args)dlsym(RTLD_NEXT, #name);
    REAL_FUNCS(RESOLVE)
#undef RESOLVE
    const char *dir = getenv("MCDB_FAULT_DIR");
    const char *c = getenv("MCDB_FAULT_CALLS");
    if (!dir || dir[0] != '/' || !c || strlen(dir) >= sizeof(watch))
        return;
    snprintf(watch, sizeof(watch), "%s", dir);
    size_t n = strlen(watch);
    while (n > 1 && watch[n - 1] == '/')
        watch[--n] = '\0';
    if (!realpath(watch, watch_real))
        snprintf(watch_real, sizeof(watch_real), "%s", watch);
    calls = parse_calls(c);
    const char *v = getenv("MCDB_FAULT_PATH");
    snprintf(patterns, sizeof(patterns), "%s", v && v[0] ? v : "*");
    if ((v = getenv("MCDB_FAULT_ERRNO")))
        fail_errno = parse_errno(v);
    if ((v = getenv("MCDB_FAULT_AFTER")))
        after = atol(v);
    if ((v = getenv("MCDB_FAULT_COUNT")))
        count = atol(v);
    if ((v = getenv("MCDB_FAULT_ARM")))
        snprintf(arm_path, sizeof(arm_path), "%s", v);
    else
        armed = true;
    if ((v = getenv("MCDB_FAULT_THREAD")))
        snprintf(thread_prefix, sizeof(thread_prefix), "%s", v);
    short_write = (v = getenv("MCDB_FAULT_SHORT")) && atoi(v);
    active = true;
}

__attribute__((constructor)) static void
shim_ctor(void)
{
    pthread_once(&once, init);
}

static inline void
ensure_init(void)
{
    pthread_once(&once, init);
}

/* The name of path (relative to dirfd) inside the watched directory, "."
 * for the directory itself; false when it is outside. */
static bool
rel_name(int dirfd, const char *path, char *out, size_t outlen)
{
    if (!active || !path)
        return false;
    char abs[PATH_MAX * 2];
    if (path[0] == '/') {
        snprintf(abs, sizeof(abs), "%s", path);
    } else if (dirfd != AT_FDCWD && dirfd >= 0 && dirfd < FD_MAX &&
               fd_names[dirfd]) {
        const char *d = fd_names[dirfd];
        snprintf(abs, sizeof(abs), "%s/%s/%s", watch, d, path);
    } else {
        char cwd[PATH_MAX];
        if (dirfd != AT_FDCWD || !getcwd(cwd, sizeof(cwd)))
            return false;
        snprintf(abs, sizeof(abs), "%s/%s", cwd, path);
    }
    /* squeeze "//" and "/./": enough for the paths mcdb builds */
    char *w = abs;
    for (const char *r = abs; *r;) {
        if (r[0] == '/' && (r[1] == '/' || (r[1] == '.' && r[2] == '/'))) {
            r += r[1] == '/' ? 1 : 2;
            continue;
        }
        *w++ = *r++;
    }
    *w = '\0';
    if (w > abs + 1 && w[-1] == '/')
        w[-1] = '\0';
    const char *roots[2] = {watch, watch_real};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(roots[i]);
        if (strncmp(abs, roots[i], n) != 0)
            continue;
        if (abs[n] == '\0' || (abs[n] == '/' && abs[n + 1] == '\0')) {
            snprintf(out, outlen, ".");
            return true;
        }
        if (abs[n] == '/') {
            snprintf(out, outlen, "%s", abs + n + 1);
            return true;
        }
    }
    return false;
}

static bool
name_matches(const char *name)
{
    char buf[sizeof(patterns)];
    snprintf(buf, sizeof(buf), "%s", patterns);
    for (char *save, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save))
        if (fnmatch(t, name, 0) == 0)
            return true;
    return false;
}

static void
say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        (void)!real_write(
            2, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/*
 * Whether this call (of class call, named fn, on the file called name)
 * fails: 0, or the errno to fail it with. *first is set for the first
 * failure injected.
 */
static int
decide(unsigned call, const char *fn, const char *name, bool *first)
{
    if (!active || !(calls & call) || !name || !name_matches(name))
        return 0;
    if (thread_prefix[0]) {
        char t[17] = "";
        prctl(PR_GET_NAME, t);
        if (strncmp(t, thread_prefix, strlen(thread_prefix)) != 0)
            return 0;
    }
    if (!atomic_load(&armed)) {
        if (access(arm_path, F_OK) != 0)
            return 0;
        atomic_store(&armed, true);
    }
    int e = 0;
    long nth = 0;
    pthread_mutex_lock(&mu);
    if (seen++ >= after && (count == 0 || injected < count)) {
        e = fail_errno;
        nth = ++injected;
    }
    pthread_mutex_unlock(&mu);
    if (e) {
        if (first)
            *first = nth == 1;
        say("fault shim: %s of %s fails with %s (failure %ld)\n", fn, name,
            strerror(e), nth);
    }
    return e;
}

static const char *
fd_name(int fd)
{
    return fd >= 0 && fd < FD_MAX ? fd_names[fd] : NULL;
}

static void
track(int fd, const char *name)
{
    if (fd < 0 || fd >= FD_MAX)
        return;
    free(atomic_exchange(&fd_names[fd], name ? strdup(name) : NULL));
}

static int
do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    ensure_init();
    char name[PATH_MAX];
    bool ours = rel_name(dirfd, path, name, sizeof(name));
    bool writes = (flags & O_CREAT) || (flags & O_ACCMODE) != O_RDONLY;
    if (ours && writes) {
        int e = decide(C_OPEN, "open", name, NULL);
        if (e) {
            errno = e;
            return -1;
        }
    }
    int fd = dirfd == AT_FDCWD ? real_open(path, flags, mode)
                               : real_openat(dirfd, path, flags, mode);
    if (fd >= 0)
        track(fd, ours ? name : NULL);
    return fd;
}

#define SHIM_EXPORT FS_EXPORT
#include "helpers/shim_open.h"

FS_EXPORT int
close(int fd)
{
    ensure_init();
    if (fd >= 0 && fd < FD_MAX && fd_names[fd])
        track(fd, NULL);
    return real_close(fd);
}

/* The failure for a write of n bytes on fd, or 0 to let it through; with
 * MCDB_FAULT_SHORT the first failure is a short write of *half bytes. */
static int
write_fault(int fd, const char *fn, size_t n, size_t *half)
{
    *half = 0;
    const char *name = fd_name(fd);
    if (!name)
        return 0;
    bool first = false;
    int e = decide(C_WRITE, fn, name, &first);
    *half = e && first && short_write && n >= 2 ? n / 2 : 0;
    return e;
}

FS_EXPORT ssize_t
write(int fd, const void *p, size_t n)
{
    ensure_init();
    size_t half;
    int e = write_fault(fd, "write", n, &half);
    if (e && !half) {
        errno = e;
        return -1;
    }
    return real_write(fd, p, half ? half : n);
}

FS_EXPORT ssize_t
pwrite(int fd, const void *p, size_t n, off_t off)
{
    ensure_init();
    size_t half;
    int e = write_fault(fd, "pwrite", n, &half);
    if (e && !half) {
        errno = e;
        return -1;
    }
    return real_pwrite(fd, p, half ? half : n, off);
}

FS_EXPORT ssize_t
pwrite64(int fd, const void *p, size_t n, off_t off)
{
    return pwrite(fd, p, n, off);
}

/* An iovec write fails whole (no short write: the callers in mcdb that
 * use them do not write the log). */
FS_EXPORT ssize_t
writev(int fd, const struct iovec *iov, int cnt)
{
    ensure_init();
    size_t half;
    int e = write_fault(fd, "writev", 0, &half);
    if (e) {
        errno = e;
        return -1;
    }
    return real_writev(fd, iov, cnt);
}

FS_EXPORT ssize_t
pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ensure_init();
    size_t half;
    int e = write_fault(fd, "pwritev", 0, &half);
    if (e) {
        errno = e;
        return -1;
    }
    return real_pwritev(fd, iov, cnt, off);
}

FS_EXPORT ssize_t
pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    return pwritev(fd, iov, cnt, off);
}

FS_EXPORT ssize_t
pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    ensure_init();
    size_t half;
    int e = write_fault(fd, "pwritev2", 0, &half);
    if (e) {
        errno = e;
        return -1;
    }
    return real_pwritev2(fd, iov, cnt, off, flags);
}

static int
sync_fault(int fd, const char *fn)
{
    const char *name = fd_name(fd);
    return name ? decide(C_FSYNC, fn, name, NULL) : 0;
}

FS_EXPORT int
fsync(int fd)
{
    ensure_init();
    int e = sync_fault(fd, "fsync");
    if (e) {
        errno = e;
        return -1;
    }
    return real_fsync(fd);
}

FS_EXPORT int
fdatasync(int fd)
{
    ensure_init();
    int e = sync_fault(fd, "fdatasync");
    if (e) {
        errno = e;
        return -1;
    }
    return real_fdatasync(fd);
}

static int
path_fault(unsigned call, const char *fn, int dirfd, const char *path)
{
    ensure_init();
    char name[PATH_MAX];
    return rel_name(dirfd, path, name, sizeof(name))
               ? decide(call, fn, name, NULL)
               : 0;
}

/* After a rename (rc 0) in the directory, descriptors open on the file go
 * by its new name: mcdb names a new segment file once it writes into it. */
static int
renamed(int rc, int fd1, const char *from, int fd2, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];
    if (rc != 0 || !rel_name(fd1, from, a, sizeof(a)) ||
        !rel_name(fd2, to, b, sizeof(b)))
        return rc;
    int e = errno;
    for (int fd = 0; fd < FD_MAX; fd++)
        if (fd_names[fd] && strcmp(fd_names[fd], a) == 0)
            track(fd, b);
    errno = e;
    return rc;
}

FS_EXPORT int
rename(const char *from, const char *to)
{
    int e = path_fault(C_RENAME, "rename", AT_FDCWD, from);
    if (e) {
        errno = e;
        return -1;
    }
    return renamed(real_rename(from, to), AT_FDCWD, from, AT_FDCWD, to);
}

FS_EXPORT int
renameat(int fd1, const char *from, int fd2, const char *to)
{
    int e = path_fault(C_RENAME, "renameat", fd1, from);
    if (e) {
        errno = e;
        return -1;
    }
    return renamed(real_renameat(fd1, from, fd2, to), fd1, from, fd2, to);
}

FS_EXPORT int
renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags)
{
    int e = path_fault(C_RENAME, "renameat2", fd1, from);
    if (e) {
        errno = e;
        return -1;
    }
    return renamed(real_renameat2(fd1, from, fd2, to, flags), fd1, from, fd2,
                   to);
}

FS_EXPORT int
unlink(const char *path)
{
    int e = path_fault(C_UNLINK, "unlink", AT_FDCWD, path);
    if (e) {
        errno = e;
        return -1;
    }
    return real_unlink(path);
}

FS_EXPORT int
unlinkat(int dirfd, const char *path, int flags)
{
    int e = path_fault(C_UNLINK, "unlinkat", dirfd, path);
    if (e) {
        errno = e;
        return -1;
    }
    return real_unlinkat(dirfd, path, flags);
}
