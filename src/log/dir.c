/*
 * The data directory: LOCK, META and the names of segment files.
 *
 *   LOCK  flock()ed for as long as a server or tool has the directory open;
 *         it holds the holder's pid so that a second opener can name it.
 *   META  text, one "key value..." per line, replaced atomically (write
 *         META.tmp, fsync, rename, fsync the directory):
 *             mcdb-meta 1
 *             log_id 0f3c...       32 hex digits; absent on a replica that
 *                                  has not finished its first sync
 *             format 1
 *             role primary         or replica
 *             primary HOST:PORT    a replica's primary
 *             epoch 1 5be2...1c 0  the history, oldest first: sequence
 *             epoch 2 9a01...77 1048576   number, id (16 hex digits) and
 *                                  the log offset where the epoch began
 *         An epoch begins when a log is created (sequence 1, its id derived
 *         from the log id so that every copy of the log agrees on it) and
 *         each time a replica is promoted (a random id). Two logs with the
 *         same log id hold the same bytes up to the point where their
 *         histories part (repl/fork.c finds it). META files written before
 *         the history existed say "epoch 1": the first epoch, from 0.
 */
#include "log/log_int.h"
#include "log/logdir.h"
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

uint64_t
logdir_first_epoch_id(const uint8_t log_id[16])
{
    return rec_log_seed(log_id) | 1; /* never 0 */
}

int
logdir_meta_new(struct logdir_meta *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    if (getrandom(m->log_id, 16, 0) != 16) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        return -EIO;
    }
    m->has_log_id = true;
    m->role = LOGDIR_PRIMARY;
    m->nepochs = 1;
    m->epochs[0] = (struct logdir_epoch){
        .seq = 1, .id = logdir_first_epoch_id(m->log_id), .start = 0};
    return 0;
}

int
logdir_meta_promote(struct logdir_meta *m, uint64_t start)
{
    uint64_t id = 0;
    while (id == 0)
        if (getrandom(&id, sizeof(id), 0) != sizeof(id))
            return -EIO;
    if (m->nepochs == LOGDIR_MAX_EPOCHS) { /* the oldest goes */
        memmove(m->epochs, m->epochs + 1,
                (LOGDIR_MAX_EPOCHS - 1) * sizeof(*m->epochs));
        m->nepochs--;
    }
    uint64_t seq = m->nepochs ? m->epochs[m->nepochs - 1].seq + 1 : 1;
    m->epochs[m->nepochs++] = (struct logdir_epoch){seq, id, start};
    m->role = LOGDIR_PRIMARY;
    m->primary[0] = '\0';
    return 0;
}

static void
hex_encode(char *out, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

int
logdir_meta_save(const char *dir, const struct logdir_meta *m, char *err,
                 size_t errlen)
{
    char tmp[4096], path[4096];
    char text[256 + 80 * LOGDIR_MAX_EPOCHS + sizeof(m->primary)];
    size_t n = (size_t)snprintf(text, sizeof(text), "mcdb-meta 1\n");
    if (m->has_log_id) {
        char hex[33];
        hex_encode(hex, m->log_id, 16);
        n += (size_t)snprintf(text + n, sizeof(text) - n, "log_id %s\n", hex);
    }
    n += (size_t)snprintf(text + n, sizeof(text) - n, "format %d\nrole %s\n",
                          REC_FORMAT_VERSION,
                          m->role == LOGDIR_REPLICA ? "replica" : "primary");
    if (m->primary[0])
        n += (size_t)snprintf(text + n, sizeof(text) - n, "primary %s\n",
                              m->primary);
    for (size_t i = 0; i < m->nepochs; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "epoch %" PRIu64 " %016" PRIx64 " %" PRIu64 "\n",
                              m->epochs[i].seq, m->epochs[i].id,
                              m->epochs[i].start);
    snprintf(tmp, sizeof(tmp), "%s/META.tmp", dir);
    snprintf(path, sizeof(path), "%s/META", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0 || write(fd, text, n) != (ssize_t)n || fsync(fd) != 0)
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
meta_bad(char *err, size_t errlen, const char *path, int line, const char *what)
{
    snprintf(err, errlen, "%s line %d: %s", path, line, what);
    return STORE_CORRUPT;
}

static bool
parse_hex(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned b;
        if (sscanf(s + 2 * i, "%2x", &b) != 1)
            return false;
        out[i] = (uint8_t)b;
    }
    return true;
}

/* One "epoch ..." line: "SEQ ID START", or the old "1" alone. */
static bool
parse_epoch(struct logdir_meta *m, const char *rest)
{
    struct logdir_epoch e;
    char id[32];
    int used = 0;
    if (m->nepochs == LOGDIR_MAX_EPOCHS)
        return false;
    if (sscanf(rest, "%" SCNu64 " %31s %" SCNu64 " %n", &e.seq, id, &e.start,
               &used) == 3 &&
        !rest[used]) {
        char *end;
        errno = 0;
        e.id = strtoull(id, &end, 16);
        if (errno || *end || strlen(id) != 16 || e.id == 0)
            return false;
    } else if (strcmp(rest, "1") == 0 && m->nepochs == 0) {
        e = (struct logdir_epoch){.seq = 1, .id = 0, .start = 0};
    } else {
        return false;
    }
    if (m->nepochs && (e.seq <= m->epochs[m->nepochs - 1].seq ||
                       e.start < m->epochs[m->nepochs - 1].start))
        return false;
    m->epochs[m->nepochs++] = e;
    return true;
}

static int
meta_parse(struct logdir_meta *m, const char *path, char *text, char *err,
           size_t errlen)
{
    memset(m, 0, sizeof(*m));
    int line = 0;
    for (char *save, *l = strtok_r(text, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        line++;
        char key[32];
        int used = 0;
        if (sscanf(l, "%31s %n", key, &used) != 1 || !l[used])
            return meta_bad(err, errlen, path, line, "expected \"key value\"");
        const char *val = l + used;
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
            if (!parse_hex(val, m->log_id, 16))
                return meta_bad(err, errlen, path, line, "bad log_id");
            m->has_log_id = true;
        } else if (strcmp(key, "role") == 0) {
            if (strcmp(val, "primary") && strcmp(val, "replica"))
                return meta_bad(err, errlen, path, line,
                                "role is neither primary nor replica");
            m->role = strcmp(val, "replica") ? LOGDIR_PRIMARY : LOGDIR_REPLICA;
        } else if (strcmp(key, "primary") == 0) {
            if (strlen(val) >= sizeof(m->primary))
                return meta_bad(err, errlen, path, line, "primary too long");
            snprintf(m->primary, sizeof(m->primary), "%s", val);
        } else if (strcmp(key, "epoch") == 0) {
            if (!parse_epoch(m, val))
                return meta_bad(err, errlen, path, line,
                                "bad epoch (expected SEQ ID START, in "
                                "order)");
        }
    }
    if (!m->has_log_id && m->role != LOGDIR_REPLICA) {
        snprintf(err, errlen, "%s: no log_id", path);
        return STORE_CORRUPT;
    }
    if (m->role == LOGDIR_REPLICA && !m->primary[0]) {
        snprintf(err, errlen, "%s: a replica without its primary's address",
                 path);
        return STORE_CORRUPT;
    }
    /* the old "epoch 1" names the first epoch by its log's id: without one
     * (a replica before its first sync) there is no history yet */
    if (m->nepochs && m->epochs[0].id == 0) {
        if (m->has_log_id)
            m->epochs[0].id = logdir_first_epoch_id(m->log_id);
        else
            m->nepochs = 0;
    }
    if (m->has_log_id && m->nepochs == 0) {
        m->nepochs = 1;
        m->epochs[0] = (struct logdir_epoch){
            .seq = 1, .id = logdir_first_epoch_id(m->log_id), .start = 0};
    }
    return 0;
}

int
logdir_meta_load(const char *dir, struct logdir_meta *m, char *err,
                 size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/META", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    char text[8192];
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -EIO;
    }
    text[n] = '\0';
    return meta_parse(m, path, text, err, errlen);
}

int
logdir_meta_read(const char *dir, uint8_t log_id[16], char *err, size_t errlen)
{
    struct logdir_meta m;
    int rc = logdir_meta_load(dir, &m, err, errlen);
    if (rc == 0 && !m.has_log_id) {
        snprintf(err, errlen,
                 "%s/META: no log_id yet (a replica before its first sync)",
                 dir);
        rc = STORE_CORRUPT;
    }
    if (rc == 0)
        memcpy(log_id, m.log_id, 16);
    return rc;
}

void
logdir_seg_path(const char *dir, uint64_t base, char *out, size_t n)
{
    snprintf(out, n, "%s/%020" PRIu64 ".seg", dir, base);
}

void
logdir_seg_tmp_path(const char *dir, uint64_t base, char *out, size_t n)
{
    snprintf(out, n, "%s/%020" PRIu64 ".seg.tmp", dir, base);
}

/* Whether name is a segment's file name with this suffix: 20 digits (the
 * base), then suffix. */
static bool
is_seg_name(const char *name, const char *suffix)
{
    return strspn(name, "0123456789") == 20 && strcmp(name + 20, suffix) == 0;
}

int
logdir_remove_seg_tmps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        const char *name = de->d_name;
        if (!is_seg_name(name, ".seg.tmp"))
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (log_file_blank(path) != 1)
            say(SAY_WARN,
                "%s: left in place: a new segment's temporary file "
                "should be empty",
                path);
        else if (unlink(path) != 0)
            rc = -errno;
        else
            say(SAY_INFO,
                "removed %s: a segment file created as the log rolled over, "
                "never written to",
                path);
    }
    closedir(d);
    return rc;
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
        if (!is_seg_name(name, ".seg"))
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
