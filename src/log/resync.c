/*
 * resync: the changes to a replica's data directory that are more than an
 * append, each followed by a reload (the index rebuilt from the files).
 *
 * CUTTING A DIVERGENT TAIL (store_cut_log). When this log's history parts
 * from its primary's at offset F (a former primary that comes back as a
 * replica; repl/fork.c finds F), the bytes [F, end) are writes the primary
 * never had. They are never deleted: they move to DATA/diverged-<time>-<F>/
 *   1. segment files that start at or after F move there whole (rename);
 *   2. the segment that holds F is copied there whole, then cut at F here
 *      (its hint, now wrong, is deleted);
 *   3. an ABOUT file there says what the bytes are and how many records;
 *   4. the directories are fsynced, then the store reloads.
 *
 * A FULL COPY (store_copy_*), when the primary no longer has the bytes this
 * replica needs (compacted away) or the logs have nothing in common, goes
 * to a directory beside the live one and is switched to only once whole:
 *   DATA/resync.partial/  the copy being written: META (the primary's log
 *                         id and history, role replica) and segment files,
 *                         each record checked as it arrives, each file
 *                         fdatasynced when its footer arrives
 *   DATA/resync.ready/    renamed from .partial when the copy reached the
 *                         offset the primary named; OLD says what to do
 *                         with the files it replaces ("delete", or "keep":
 *                         they move to a diverged-* directory as above)
 *   DATA/resync.install/  renamed from .ready once the old files are gone;
 *                         its files are then renamed into DATA, META last
 * Each rename is atomic and fsynced, so after a crash at any point the next
 * open (resync_pending) finishes an install that had begun (.ready,
 * .install) or throws away a copy that had not (.partial), and the live
 * directory is always either the old log whole or the new one whole.
 *
 * RELOAD. Reads answer STORE_SYNCING while it runs (a lookup that misses
 * meanwhile re-checks the gate, so no miss is served from a half-built
 * index); the background thread is held off (maint_mu); the writer stops
 * after writing out its buffer; the segment table and the index are
 * emptied and recovery runs again on the files, then the writer restarts.
 * A lookup that found its record before the reload still reads it from
 * the segment it pinned.
 */
#include "log/hint.h"
#include "log/log_int.h"
#include "util/say.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RESYNC_PARTIAL "resync.partial"
#define RESYNC_READY "resync.ready"
#define RESYNC_INSTALL "resync.install"

/* ---- small file helpers ---- */

static void
path_in(char *out, size_t n, const char *dir, const char *name)
{
    int k = snprintf(out, n, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= n)
        out[0] = '\0'; /* names no file rather than a wrong one */
}

static int
rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[4096];
        path_in(p, sizeof(p), path, de->d_name);
        if (unlink(p) != 0 && rc == 0)
            rc = -errno;
    }
    closedir(d);
    if (rmdir(path) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

static bool
is_log_file(const char *name)
{
    size_t len = strlen(name);
    return strspn(name, "0123456789") == 20 &&
           ((len == 24 && !strcmp(name + 20, ".seg")) ||
            (len == 25 && !strcmp(name + 20, ".hint")));
}

/* Move (or delete) every segment and hint file from `from` into `to`. */
static int
move_log_files(const char *from, const char *to, char *err, size_t errlen)
{
    DIR *d = opendir(from);
    if (!d) {
        snprintf(err, errlen, "%s: %s", from, strerror(errno));
        return -errno;
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        if (!is_log_file(de->d_name))
            continue;
        char a[4096], b[4096];
        path_in(a, sizeof(a), from, de->d_name);
        if (to)
            path_in(b, sizeof(b), to, de->d_name);
        if (to ? rename(a, b) : unlink(a)) {
            rc = -errno;
            snprintf(err, errlen, "%s %s: %s", to ? "moving" : "deleting", a,
                     strerror(errno));
        }
    }
    closedir(d);
    if (rc == 0)
        rc = logdir_sync(from);
    if (rc == 0 && to)
        rc = logdir_sync(to);
    return rc;
}

/* DATA/diverged-<unix time>-<from>, created; its path in out. */
static int
make_aside(struct store *s, uint64_t from, char *out, size_t n, char *err,
           size_t errlen)
{
    snprintf(out, n, "%s/diverged-%lld-%" PRIu64, s->dir, (long long)time(NULL),
             from);
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "creating %s: %s", out, strerror(errno));
        return -errno;
    }
    return 0;
}

static int
copy_file(const char *from, const char *to, char *err, size_t errlen)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = in < 0 || out < 0 ? -errno : 0;
    char buf[65536];
    ssize_t n;
    while (rc == 0 && (n = read(in, buf, sizeof(buf))) != 0)
        if (n < 0 || write(out, buf, (size_t)n) != n)
            rc = errno ? -errno : -EIO;
    if (rc == 0 && fsync(out) != 0)
        rc = -errno;
    if (rc)
        snprintf(err, errlen, "copying %s to %s: %s", from, to, strerror(-rc));
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

/* ---- reload ---- */

static int
drop_all(void *arg, const void *key, size_t klen, struct index_entry *e)
{
    (void)arg, (void)key, (void)klen, (void)e;
    return INDEX_DROP;
}

typedef int (*reload_fn)(struct store *s, void *arg, char *err, size_t errlen);

static int
reload(struct store *s, reload_fn change, void *arg, char *err, size_t errlen)
{
    int gate = atomic_load(&s->read_gate);
    atomic_store(&s->read_gate, STORE_SYNCING);
    pthread_mutex_lock(&s->maint_mu);
    log_stop_writer(s);
    pthread_mutex_lock(&s->seg_mu);
    for (size_t i = 0; i < s->nsegs; i++)
        seg_unpin(s->segs[i]);
    s->nsegs = 0;
    s->drop_end = s->drop_at = 0;
    pthread_mutex_unlock(&s->seg_mu);
    for (unsigned i = 0; i < index_shards(s->ix); i++)
        index_scan(s->ix, i, drop_all, NULL);
    atomic_store(&s->st_value_bytes, 0);
    pthread_mutex_lock(&s->mu);
    s->active = NULL;
    s->fill_len = 0;
    s->fill_recs = 0;
    s->wbuf = NULL;
    s->sync_req = 0;
    s->stop = false;
    pthread_mutex_unlock(&s->mu);

    int rc = change ? change(s, arg, err, errlen) : 0;
    atomic_fetch_add(&s->log_gen, 1);
    if (rc == 0)
        rc = log_recover(s, err, errlen);
    if (rc == 0 && s->max_rec * 2 + 4096 > s->buf_cap)
        say(SAY_WARN,
            "%s: records of up to %" PRIu64 " bytes, more than "
            "this replica's --max-item-size; raise it to serve them",
            s->dir, s->max_rec);
    if (rc == 0)
        rc = log_start_writer(s);
    if (rc == 0)
        role_start_live(s);
    pthread_mutex_unlock(&s->maint_mu);
    if (rc) {
        log_fail(s, rc, "reloading %s: %s", s->dir, err);
        return rc;
    }
    if (gate == STORE_SYNCING)
        gate = 0;
    atomic_store(&s->read_gate, role_has_log(s) ? gate : STORE_SYNCING);
    log_notify(s, STORE_WAKE_ACKS | STORE_WAKE_DURABLE);
    return 0;
}

/* ---- cutting a divergent tail ---- */

struct cut {
    uint64_t from;
    char aside[4096];
    uint64_t records, bytes;
};

/* Count the records in [pos, size) of a segment file's bytes; *end: the
 * file position after the last (the zeros --preallocate pads the last
 * segment with are not log). */
static uint64_t
count_records(struct store *s, const char *map, uint64_t size, uint64_t pos,
              uint64_t base, uint64_t *end)
{
    uint64_t n = 0;
    while (pos < size) {
        struct rec r;
        long k = rec_decode(map + pos, size - pos, s->log_seed, base + pos, &r);
        if (k <= 0)
            break;
        pos += (uint64_t)k;
        n++;
    }
    *end = pos;
    return n;
}

static uint64_t
count_file(struct store *s, const char *path, uint64_t base, uint64_t from,
           uint64_t *end)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint64_t n = 0;
    *end = from;
    if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size > from) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            n = count_records(s, m, (uint64_t)st.st_size, from, base, end);
            munmap(m, (size_t)st.st_size);
        }
    }
    if (fd >= 0)
        close(fd);
    return n;
}

static int
cut_files(struct store *s, void *arg, char *err, size_t errlen)
{
    struct cut *c = arg;
    uint64_t *bases;
    size_t n;
    int rc = logdir_list_segments(s->dir, &bases, &n);
    if (rc) {
        snprintf(err, errlen, "listing %s: %s", s->dir, store_strerror(rc));
        return rc;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char seg[4096], hint[4096], to[4096];
        logdir_seg_path(s->dir, bases[i], seg, sizeof(seg));
        hint_path(s->dir, bases[i], hint, sizeof(hint));
        struct stat st;
        if (stat(seg, &st) != 0)
            continue;
        uint64_t end = bases[i] + (uint64_t)st.st_size;
        if (end <= c->from)
            continue;
        path_in(to, sizeof(to), c->aside, strrchr(seg, '/') + 1);
        uint64_t skip = bases[i] < c->from ? c->from - bases[i] : 0;
        uint64_t last;
        c->records += count_file(s, seg, bases[i], skip, &last);
        c->bytes += last - skip;
        unlink(hint); /* it describes the whole segment */
        if (skip == 0) {
            if (rename(seg, to) != 0) {
                rc = -errno;
                snprintf(err, errlen, "moving %s to %s: %s", seg, c->aside,
                         strerror(errno));
            }
            continue;
        }
        rc = copy_file(seg, to, err, errlen);
        if (rc == 0 && truncate(seg, (off_t)skip) != 0) {
            rc = -errno;
            snprintf(err, errlen, "cutting %s at %" PRIu64 ": %s", seg, skip,
                     strerror(errno));
        }
    }
    free(bases);
    char meta[4096], meta_to[4096];
    path_in(meta, sizeof(meta), s->dir, "META");
    path_in(meta_to, sizeof(meta_to), c->aside, "META");
    if (rc == 0)
        rc = copy_file(meta, meta_to, err, errlen);
    char about[4096];
    path_in(about, sizeof(about), c->aside, "ABOUT");
    FILE *f = rc == 0 ? fopen(about, "w") : NULL;
    if (f) {
        char hex[33];
        for (int i = 0; i < 16; i++)
            sprintf(hex + 2 * i, "%02x", s->log_id[i]);
        fprintf(f,
                "Log %s, bytes [%" PRIu64 ", %" PRIu64 "):\n"
                "%" PRIu64 " records written here that the primary (%s)\n"
                "never had: the two histories part at offset %" PRIu64 ".\n"
                "They were moved here when this data directory rejoined as "
                "a replica.\n"
                "The segment files are whole; in the one that was cut, the\n"
                "divergent bytes are those from offset %" PRIu64 " on.\n"
                "mcdb-fsck checks this directory (META is a copy).\n",
                hex, c->from, c->from + c->bytes, c->records, s->meta.primary,
                c->from, c->from);
        fclose(f);
    }
    if (rc == 0)
        rc = logdir_sync(c->aside);
    if (rc == 0)
        rc = logdir_sync(s->dir);
    return rc;
}

int
store_cut_log(store_t *s, uint64_t from, char *aside, size_t asidelen,
              uint64_t *records, char *err, size_t errlen)
{
    struct cut c = {.from = from};
    int rc = make_aside(s, from, c.aside, sizeof(c.aside), err, errlen);
    if (rc == 0)
        rc = reload(s, cut_files, &c, err, errlen);
    snprintf(aside, asidelen, "%s", c.aside);
    *records = c.records;
    if (rc == 0)
        say(SAY_WARN,
            "%s: the log's history parted from its primary's at "
            "offset %" PRIu64 "; moved %" PRIu64 " records (%" PRIu64
            " bytes) that the primary never had to %s",
            s->dir, from, c.records, c.bytes, c.aside);
    return rc;
}

/* ---- full copy ---- */

struct store_copy {
    struct store *s;
    char dir[4096]; /* DATA/resync.partial */
    uint64_t seed;  /* the primary's log's */
    uint8_t log_id[16];
    uint64_t end;    /* the next byte's offset */
    int fd;          /* the segment file being written, -1 between */
    uint64_t synced; /* the copy is durable up to here */
    uint64_t bytes;
};

int
store_copy_begin(store_t *s, const struct logdir_meta *primary, uint64_t start,
                 struct store_copy **out, char *err, size_t errlen)
{
    struct store_copy *c = calloc(1, sizeof(*c));
    if (!c)
        return STORE_NOMEM;
    c->s = s;
    c->fd = -1;
    c->end = start;
    memcpy(c->log_id, primary->log_id, 16);
    c->seed = rec_log_seed(primary->log_id);
    path_in(c->dir, sizeof(c->dir), s->dir, RESYNC_PARTIAL);
    int rc = rm_tree(c->dir);
    if (rc == 0 && mkdir(c->dir, 0755) != 0)
        rc = -errno;
    struct logdir_meta m = *primary;
    m.role = LOGDIR_REPLICA;
    pthread_mutex_lock(&s->meta_mu);
    snprintf(m.primary, sizeof(m.primary), "%s", s->meta.primary);
    pthread_mutex_unlock(&s->meta_mu);
    if (rc == 0)
        rc = logdir_meta_save(c->dir, &m, err, errlen);
    else
        snprintf(err, errlen, "creating %s: %s", c->dir, strerror(-rc));
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

uint64_t
store_copy_end(const struct store_copy *c)
{
    return c->end;
}

uint64_t
store_copy_durable(const struct store_copy *c)
{
    return c->synced;
}

static int
copy_write(struct store_copy *c, const char *p, size_t n, char *err,
           size_t errlen)
{
    while (n) {
        ssize_t w = write(c->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "writing the copy in %s: %s", c->dir,
                     strerror(w < 0 ? errno : EIO));
            return -EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int
copy_close_file(struct store_copy *c, char *err, size_t errlen)
{
    if (c->fd < 0)
        return 0;
    int rc = fdatasync(c->fd) == 0 ? 0 : -errno;
    close(c->fd);
    c->fd = -1;
    if (rc == 0)
        c->synced = c->end;
    if (rc)
        snprintf(err, errlen, "fdatasync in %s: %s", c->dir, strerror(-rc));
    return rc;
}

/* Write the *run bytes at p that end the current file, and close it. */
static int
copy_seal(struct store_copy *c, const char *p, size_t *run, char *err,
          size_t errlen)
{
    int rc = copy_write(c, p, *run, err, errlen);
    if (rc == 0) {
        c->end += *run;
        *run = 0;
        rc = copy_close_file(c, err, errlen);
    }
    return rc;
}

int
store_copy_add(struct store_copy *c, const void *buf, size_t len, size_t *used,
               char *err, size_t errlen)
{
    const char *p = buf;
    size_t pos = 0, run = 0; /* bytes [pos - run, pos) wait to be written */
    int rc = 0;
    while (pos < len) {
        struct rec r;
        uint64_t off = c->end + run;
        long k = rec_decode(p + pos, len - pos, c->seed, off, &r);
        if (k == REC_E_SHORT || (k == REC_E_ZERO && len - pos < REC_HDR_SIZE))
            break; /* the rest is on its way */
        if (k < 0) {
            snprintf(err, errlen, "offset %" PRIu64 ": %s", off,
                     rec_strerror((int)k));
            rc = STORE_CORRUPT;
            break;
        }
        if (r.type == REC_SEG_HEADER) {
            if (!rec_seg_header_is(&r, c->log_id, off)) {
                snprintf(err, errlen,
                         "offset %" PRIu64 ": a segment header "
                         "of another log or offset",
                         off);
                rc = STORE_CORRUPT;
                break;
            }
            if ((rc = copy_seal(c, p + pos - run, &run, err, errlen)))
                break;
            char path[4096];
            logdir_seg_path(c->dir, off, path, sizeof(path));
            c->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (c->fd < 0) {
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
                rc = -errno;
                break;
            }
        } else if (c->fd < 0) {
            snprintf(err, errlen,
                     "offset %" PRIu64 ": the copy does not "
                     "start with a segment header",
                     off);
            rc = STORE_CORRUPT;
            break;
        }
        pos += (size_t)k;
        run += (size_t)k;
        if (r.type == REC_SEG_FOOTER &&
            (rc = copy_seal(c, p + pos - run, &run, err, errlen)))
            break;
    }
    if (rc == 0 && run)
        rc = copy_write(c, p + pos - run, run, err, errlen);
    if (rc == 0) {
        c->end += run;
        c->bytes += pos;
    }
    *used = rc == 0 ? pos : pos - run;
    return rc;
}

void
store_copy_abort(struct store_copy *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    rm_tree(c->dir);
    free(c);
}

/* Step 2 and 3 of an install (resync.ready exists): the old files go,
 * then resync.install's files come in, META last. */
static int
install(struct store *s, void *arg, char *err, size_t errlen)
{
    (void)arg;
    char ready[4096], inst[4096], old[4096], meta_from[4096], meta_to[4096];
    path_in(ready, sizeof(ready), s->dir, RESYNC_READY);
    path_in(inst, sizeof(inst), s->dir, RESYNC_INSTALL);
    int rc = 0;
    if (access(ready, F_OK) == 0) {
        char what[16] = "delete";
        path_in(old, sizeof(old), ready, "OLD");
        FILE *f = fopen(old, "r");
        if (f) {
            if (!fgets(what, sizeof(what), f))
                what[0] = '\0';
            fclose(f);
        }
        char aside[4096] = "";
        if (strncmp(what, "keep", 4) == 0)
            rc = make_aside(s, 0, aside, sizeof(aside), err, errlen);
        if (rc == 0)
            rc = move_log_files(s->dir, aside[0] ? aside : NULL, err, errlen);
        if (rc == 0 && aside[0]) {
            char m[4096], to[4096];
            path_in(m, sizeof(m), s->dir, "META");
            path_in(to, sizeof(to), aside, "META");
            rc = copy_file(m, to, err, errlen);
            say(SAY_WARN,
                "%s: the old log, whose history is not its "
                "primary's, was moved to %s",
                s->dir, aside);
        }
        if (rc == 0 && rename(ready, inst) != 0) {
            rc = -errno;
            snprintf(err, errlen, "renaming %s: %s", ready, strerror(errno));
        }
        if (rc == 0)
            rc = logdir_sync(s->dir);
    }
    if (rc == 0)
        rc = move_log_files(inst, s->dir, err, errlen);
    path_in(meta_from, sizeof(meta_from), inst, "META");
    path_in(meta_to, sizeof(meta_to), s->dir, "META");
    if (rc == 0 && access(meta_from, F_OK) == 0 &&
        rename(meta_from, meta_to) != 0) {
        rc = -errno;
        snprintf(err, errlen, "renaming %s: %s", meta_from, strerror(errno));
    }
    if (rc == 0)
        rc = logdir_sync(s->dir);
    if (rc == 0)
        rc = rm_tree(inst);
    return rc;
}

int
store_copy_finish(store_t *s, struct store_copy *c, bool keep_old, char *err,
                  size_t errlen)
{
    char ready[4096], old[4096];
    int rc = copy_close_file(c, err, errlen);
    if (rc == 0)
        rc = logdir_sync(c->dir);
    path_in(old, sizeof(old), c->dir, "OLD");
    FILE *f = rc == 0 ? fopen(old, "w") : NULL;
    if (rc == 0 && (!f || fputs(keep_old ? "keep\n" : "delete\n", f) < 0)) {
        snprintf(err, errlen, "%s: %s", old, strerror(errno));
        rc = -EIO;
    }
    if (f && (fflush(f) != 0 || fsync(fileno(f)) != 0) && rc == 0)
        rc = -EIO;
    if (f)
        fclose(f);
    path_in(ready, sizeof(ready), s->dir, RESYNC_READY);
    if (rc == 0 && rename(c->dir, ready) != 0) {
        rc = -errno;
        snprintf(err, errlen, "renaming %s: %s", c->dir, strerror(errno));
    }
    if (rc == 0)
        rc = logdir_sync(s->dir);
    uint64_t bytes = c->bytes;
    free(c);
    if (rc == 0)
        rc = reload(s, install, NULL, err, errlen);
    if (rc == 0)
        say(SAY_INFO,
            "%s: installed a full copy of the primary's log (%" PRIu64
            " bytes), now at offset %" PRIu64,
            s->dir, bytes, store_log_end(s));
    return rc;
}

int
resync_pending(struct store *s, char *err, size_t errlen)
{
    char p[4096];
    path_in(p, sizeof(p), s->dir, RESYNC_PARTIAL);
    if (access(p, F_OK) == 0) {
        say(SAY_WARN, "%s: a full copy was cut short; it starts over", p);
        rm_tree(p);
    }
    char ready[4096], inst[4096];
    path_in(ready, sizeof(ready), s->dir, RESYNC_READY);
    path_in(inst, sizeof(inst), s->dir, RESYNC_INSTALL);
    if (access(ready, F_OK) != 0 && access(inst, F_OK) != 0)
        return 0;
    say(SAY_INFO, "%s: finishing the install of a full copy", s->dir);
    return install(s, NULL, err, errlen);
}
