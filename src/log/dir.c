/*
 * The data directory: LOCK, META and the names of segment files.
 *
 *   LOCK  flock()ed for as long as a server or tool has the directory open;
 *         it holds the holder's pid so that a second opener can name it.
 *   META  text, one "key value" per line, replaced atomically (write
 *         META.tmp, fsync, rename, fsync the directory):
 *             mcdb-meta 1
 *             log_id 0f3c...(32 hex digits)
 *             format 1
 *             role primary
 *             epoch 1
 */
#include "log/logdir.h"
#include "log/log_int.h"
#include "util/say.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int
logdir_lock(const char *dir, int *lockfd, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen,
                 "data directory %s is in use by process %s (%s is locked)",
                 dir, pid[0] ? pid : "(unknown)", path);
        close(fd);
        return STORE_LOCKED;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -EIO;
    }
    *lockfd = fd;
    return 0;
}

int
logdir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int
logdir_meta_create(const char *dir, uint8_t log_id[16], char *err,
                   size_t errlen)
{
    char tmp[4096], path[4096], text[256], hex[33];
    if (getrandom(log_id, 16, 0) != 16) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        return -EIO;
    }
    snprintf(tmp, sizeof(tmp), "%s/META.tmp", dir);
    snprintf(path, sizeof(path), "%s/META", dir);
    for (int i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", log_id[i]);
    int n = snprintf(text, sizeof(text),
                     "mcdb-meta 1\nlog_id %s\nformat %d\nrole primary\n"
                     "epoch 1\n",
                     hex, REC_FORMAT_VERSION);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) != 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc == 0)
        rc = logdir_sync(dir);
    if (rc)
        snprintf(err, errlen, "writing %s: %s", path, strerror(-rc));
    return rc;
}

static int
meta_parse(uint8_t log_id[16], const char *path, char *text, char *err,
           size_t errlen)
{
    bool have_id = false;
    int line = 0;
    for (char *save, *l = strtok_r(text, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        line++;
        char key[32], val[128];
        if (sscanf(l, "%31s %127s", key, val) != 2) {
            snprintf(err, errlen, "%s line %d: expected \"key value\"", path,
                     line);
            return STORE_CORRUPT;
        }
        if (line == 1 && strcmp(key, "mcdb-meta") != 0) {
            snprintf(err, errlen, "%s: not an mcdb META file", path);
            return STORE_CORRUPT;
        }
        if (strcmp(key, "format") == 0 && atoi(val) != REC_FORMAT_VERSION) {
            snprintf(err, errlen, "%s: format %s, this mcdb reads format %d",
                     path, val, REC_FORMAT_VERSION);
            return STORE_CORRUPT;
        }
        if (strcmp(key, "log_id") == 0) {
            if (strlen(val) != 32) {
                snprintf(err, errlen, "%s line %d: bad log_id", path, line);
                return STORE_CORRUPT;
            }
            for (int i = 0; i < 16; i++) {
                unsigned b;
                if (sscanf(val + 2 * i, "%2x", &b) != 1) {
                    snprintf(err, errlen, "%s line %d: bad log_id", path, line);
                    return STORE_CORRUPT;
                }
                log_id[i] = (uint8_t)b;
            }
            have_id = true;
        }
    }
    if (!have_id) {
        snprintf(err, errlen, "%s: no log_id", path);
        return STORE_CORRUPT;
    }
    return 0;
}

int
logdir_meta_read(const char *dir, uint8_t log_id[16], char *err,
                 size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/META", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    char text[4096];
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -EIO;
    }
    text[n] = '\0';
    return meta_parse(log_id, path, text, err, errlen);
}

void
logdir_seg_path(const char *dir, uint64_t base, char *out, size_t n)
{
    snprintf(out, n, "%s/%020" PRIu64 ".seg", dir, base);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int
logdir_list_segments(const char *dir, uint64_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    size_t cap = 16, cnt = 0;
    uint64_t *v = malloc(cap * sizeof(*v));
    struct dirent *de;
    while (v && (de = readdir(d))) {
        const char *name = de->d_name;
        if (strlen(name) != 24 || strcmp(name + 20, ".seg") != 0 ||
            strspn(name, "0123456789") != 20)
            continue;
        if (cnt == cap) {
            uint64_t *nv = realloc(v, (cap *= 2) * sizeof(*v));
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        v[cnt++] = strtoull(name, NULL, 10);
    }
    closedir(d);
    if (!v)
        return STORE_NOMEM;
    qsort(v, cnt, sizeof(*v), cmp_u64);
    *out = v;
    *n = cnt;
    return 0;
}
