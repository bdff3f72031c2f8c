/*
 * panic: stop the process on a broken invariant, saying where.
 *
 *   MCDB_ASSERT(cond)                  a condition the code relies on
 *   MCDB_PANIC(fmt, ...)               a state the code cannot go on from
 *   MCDB_PANIC_AT(path, off, fmt, ...) the same, caused by a data file's
 *                                      bytes at that offset
 *
 * Each writes one error line (say.h) with the source file and line, and
 * for MCDB_PANIC_AT the data file and offset, then abort()s so that a core
 * dump or a sanitizer shows the stack. Unlike assert(), MCDB_ASSERT stays
 * in release builds: keep it to checks that cost a comparison or two.
 * Errors a user can cause (bad input, a full disk, a corrupt file found by
 * recovery) are answered, never panicked on.
 */
#ifndef MCDB_PANIC_H
#define MCDB_PANIC_H

#include <stdint.h>

_Noreturn void mcdb_panic(const char *src, int line, const char *path,
                          uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6), cold));

#define MCDB_PANIC(...) mcdb_panic(__FILE__, __LINE__, NULL, 0, __VA_ARGS__)
#define MCDB_PANIC_AT(path, off, ...)                                          \
    mcdb_panic(__FILE__, __LINE__, (path), (off), __VA_ARGS__)
#define MCDB_ASSERT(cond)                                                      \
    do {                                                                       \
        if (__builtin_expect(!(cond), 0))                                      \
            mcdb_panic(__FILE__, __LINE__, NULL, 0, "assertion failed: %s",    \
                       #cond);                                                 \
    } while (0)

#endif
