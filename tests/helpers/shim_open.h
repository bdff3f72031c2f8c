/*
 * Every libc entry point that opens a file, for the LD_PRELOAD shims
 * (tests/powercut/shim.c, tests/faults/shim.c): open, open64, openat,
 * openat64, their _FORTIFY_SOURCE variants (__open_2 ...) and creat, each
 * reduced to the including file's
 *   static int do_openat(int dirfd, const char *path, int flags, mode_t mode);
 * and exported with its SHIM_EXPORT. Include it once, after do_openat.
 */
#ifndef MCDB_SHIM_OPEN_H
#define MCDB_SHIM_OPEN_H

#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>

static mode_t
mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE
               ? (mode_t)va_arg(ap, int)
               : 0;
}

SHIM_EXPORT int
open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(AT_FDCWD, path, flags, mode);
}

SHIM_EXPORT int
open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(AT_FDCWD, path, flags, mode);
}

SHIM_EXPORT int
__open_2(const char *path, int flags)
{
    return do_openat(AT_FDCWD, path, flags, 0);
}

SHIM_EXPORT int
__open64_2(const char *path, int flags)
{
    return do_openat(AT_FDCWD, path, flags, 0);
}

SHIM_EXPORT int
openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(dirfd, path, flags, mode);
}

SHIM_EXPORT int
openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return do_openat(dirfd, path, flags, mode);
}

SHIM_EXPORT int
__openat_2(int dirfd, const char *path, int flags)
{
    return do_openat(dirfd, path, flags, 0);
}

SHIM_EXPORT int
creat(const char *path, mode_t mode)
{
    return do_openat(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

SHIM_EXPORT int
creat64(const char *path, mode_t mode)
{
    return do_openat(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

#endif
