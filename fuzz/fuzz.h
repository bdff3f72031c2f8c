/*
 * What the fuzz targets share (fuzz/README.md says what each one checks):
 *   FUZZ_CHECK   an invariant of the code under test; a failure prints the
 *                file, line and condition and aborts, and libFuzzer keeps
 *                the input as a crash artifact.
 *   fuzz_log_id  the log id every seed of fuzz/corpus was written with
 *                (fuzz/mkcorpus, fuzz/seeds.c), so that the checksums in
 *                the seeds validate and mutations start from real records.
 *   fuzz_dir()   a scratch directory for the targets that read files,
 *                on tmpfs when there is one (/dev/shm), removed at exit
 *                and before a failed check or a sanitizer report ends the
 *                process.
 *   fuzz_step_around_open_bugs()
 *                true when MCDB_FUZZ_OPEN_BUGS=skip: a target then does
 *                not check the open bugs it names (each has its input in
 *                fuzz/regressions/), so that a long run goes on looking
 *                for new ones. fuzz/run sets it for timed runs; the ctest
 *                smoke (fuzz/run --runs) checks everything.
 */
#ifndef MCDB_FUZZ_H
#define MCDB_FUZZ_H

#include <dirent.h>
#include <fcntl.h>
#include <sanitizer/common_interface_defs.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void fuzz_fail(const char *file, int line, const char *what);

#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond))                                                           \
            fuzz_fail(__FILE__, __LINE__, #cond);                              \
    } while (0)

static const uint8_t fuzz_log_id[16] = {'m', 'c', 'd', 'b', '-', 'f', 'u', 'z',
                                        'z', '-', 'l', 'o', 'g', '-', 'i', 'd'};

/* Little-endian reads of the input's control fields. */
static inline uint64_t
fuzz_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Write n bytes to path (created or truncated); 0 or -1. */
static inline int
fuzz_write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    ssize_t w = n ? write(fd, data, n) : 0;
    return close(fd) == 0 && w == (ssize_t)n ? 0 : -1;
}

static inline int
fuzz_step_around_open_bugs(void)
{
    const char *v = getenv("MCDB_FUZZ_OPEN_BUGS");
    return v && strcmp(v, "skip") == 0;
}

static char fuzz_dir_path[256];

/* Empty and remove the scratch directory: at exit, and before a failed
 * check or a sanitizer report ends the process. */
static void
fuzz_dir_remove(void)
{
    DIR *d = fuzz_dir_path[0] ? opendir(fuzz_dir_path) : NULL;
    struct dirent *e;
    char path[512];

    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof(path), "%s/%s", fuzz_dir_path, e->d_name);
            unlink(path);
        }
    }
    if (d) {
        closedir(d);
        rmdir(fuzz_dir_path);
    }
}

static inline const char *
fuzz_dir(void)
{
    if (fuzz_dir_path[0])
        return fuzz_dir_path;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;
    if (!base)
        base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/mcdb-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_dir_path)) {
        perror(fuzz_dir_path);
        abort();
    }
    atexit(fuzz_dir_remove);
    __sanitizer_set_death_callback(fuzz_dir_remove);
    return fuzz_dir_path;
}

static inline void
fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
    fuzz_dir_remove();
    abort();
}

#endif
