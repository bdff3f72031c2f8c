/*
 * What a power cut leaves on disk: the model the power-cut test checks
 * mcdb against, built from a trace of the calls a process made (trace.h).
 *
 * 1. Time is the trace's numbering. A power cut at point c: the records
 *    numbered below c happened, none from c on. (A sync happened when its
 *    END is below c, and covers what was numbered below its BEGIN.)
 *
 * 2. Names and files are apart, as in the kernel: a directory entry points
 *    to an inode (a file or a directory), and the trace's name changes
 *    (open with O_CREAT of a new name, fopen for writing, rename, link,
 *    unlink, mkdir, rmdir) are replayed in order; a renamed directory takes
 *    what is in it along. A name change is durable once an fsync of its
 *    directory (for a rename, of either directory) that began after it has
 *    completed. Name changes reach the disk in order: an image keeps a
 *    prefix of them, at least up to the last durable one (ext4's journal
 *    commits them in the order they were made, a whole transaction at a
 *    time; a prefix is at least that much freedom). An fsync or fdatasync
 *    of a file makes its data durable, never its name: POSIX does not
 *    promise it, and ext4 only happens to. sync() and syncfs() make
 *    everything durable.
 *
 * 3. A file's durable contents are every write, truncate and fallocate to
 *    it (through any descriptor, under any name) numbered below the BEGIN
 *    of its last fsync or fdatasync that completed before c. Open with
 *    O_TRUNC of an existing file is a truncate to 0. The file's writes from
 *    that BEGIN to c are pending: rules 4 to 6 choose what of them is in the
 *    image (PC_NONE: nothing, PC_ALL: all).
 *
 * 4. PC_PREFIX (tier A, what a file system that writes back in order can
 *    leave): the pending writes up to a random one, in order, and of the
 *    next one only its first bytes, cut at a 512- or 4096-byte boundary of
 *    the file or at any byte: a torn write.
 *
 * 5. PC_HOLES (tier B, out-of-order write-back of new pages): rule 4, and
 *    besides some whole 4096-byte pages of the file read as zeros: pages
 *    that lie wholly past the durable size and before the page that holds
 *    the new last byte. Write-back had not reached them when it wrote a
 *    later page and the file size moved past them, so their blocks were
 *    never allocated: a hole. (On ext4 with data=ordered, the default, the
 *    size never covers blocks whose data was not written, so nothing but
 *    zeros or written data appears.)
 *
 * 6. PC_SUBSET (tier C): any subset of the pending writes, each possibly
 *    torn as in rule 4. PC_PAGES (tier C): every page of the file as it was
 *    at any moment since the last sync (the states after each pending
 *    write), one of them possibly torn at a 512-byte sector between two of
 *    its states; the size reaches as far as the pages chosen reach. These
 *    leave a page partly stale (bytes that were written, then zeros to the
 *    page's end) before later data: write-back must have rewritten an
 *    already allocated page after a later page's size change was committed
 *    (a flusher pass that starts mid-file, a disk that completes in-flight
 *    writes out of order). Possible, but rare.
 *
 * Names (rule 2) are chosen with the same mode: PC_NONE keeps only the
 * durable name changes, PC_ALL all of them, the others a random prefix of
 * the rest.
 */
#include "powercut/image.h"
#include "powercut/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096
#define SECTOR 512
#define FD_MAX 65536

struct pc_counter {
    _Atomic uint64_t *p;
};

struct pc_counter *
pc_counter_create(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, sizeof(uint64_t)) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    void *m =
        mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return NULL;
    struct pc_counter *c = malloc(sizeof(*c));
    if (!c) {
        munmap(m, sizeof(uint64_t));
        return NULL;
    }
    c->p = m;
    return c;
}

uint64_t
pc_counter_now(const struct pc_counter *c)
{
    return atomic_load(c->p);
}

void
pc_counter_free(struct pc_counter *c)
{
    if (!c)
        return;
    munmap((void *)c->p, sizeof(uint64_t));
    free(c);
}

uint64_t
pc_rand(uint64_t *rng, uint64_t n)
{
    uint64_t x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return (x * 0x2545F4914F6CDD1DULL) % n;
}

/* ---- the trace, resolved ---- */

struct span {
    uint64_t begin, end; /* a sync's BEGIN and END numbers */
};

struct spans {
    struct span *v;
    size_t n, cap;
};

struct u32s {
    uint32_t *v;
    size_t n, cap;
};

/* A file or a directory (inode 0 is the watched directory). */
struct inode {
    bool dir;
    char *first_name;   /* its path when it was made */
    struct u32s ops;    /* a file's data operations (record indices) */
    struct spans syncs; /* its completed fsyncs and fdatasyncs */
};

/* A name change (rule 2): entry na of directory pa (and nb of pb, the new
 * name of a rename or link). */
enum ns_kind { NS_CREATE, NS_RENAME, NS_LINK, NS_UNLINK, NS_MKDIR, NS_RMDIR };

struct nsop {
    uint64_t seq;
    enum ns_kind kind;
    int pa, pb;
    char *na, *nb;
    int ino; /* NS_CREATE, NS_MKDIR: what it made */
};

struct rec {
    struct pc_rec r;          /* copied: records in the file are not aligned */
    const char *name, *name2; /* NUL-terminated copies */
    const uint8_t *data;
};

struct pc_trace {
    void *map;
    size_t maplen;
    struct rec *recs;
    size_t nrecs;
    struct inode *inodes;
    size_t ninodes;
    struct nsop *ns;
    size_t nns;
    struct spans all_syncs; /* sync(), syncfs() */
    char *stdio;            /* PC_STDIO names */
    struct pc_trace_stats st;
};

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

static void
spans_add(struct spans *s, uint64_t begin, uint64_t end)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = (struct span){begin, end};
}

static void
u32s_add(struct u32s *s, uint32_t x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = x;
}

/* The latest BEGIN among syncs completed before cut; 0 if none. */
static uint64_t
synced_below(const struct spans *s, uint64_t cut)
{
    uint64_t b = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].end < cut && s->v[i].begin + 1 > b)
            b = s->v[i].begin + 1; /* +1: 0 means none */
    return b ? b - 1 : 0;
}

/* A table of names, for the replays: name -> inode (or -2: a directory). */
struct names {
    char **name;
    int *ino;
    size_t n, cap;
};

static long
names_find(const struct names *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->name[i], name) == 0)
            return (long)i;
    return -1;
}

static void
names_set(struct names *t, const char *name, int ino)
{
    long i = names_find(t, name);
    if (i >= 0) {
        t->ino[i] = ino;
        return;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 32;
        t->name = xrealloc(t->name, t->cap * sizeof(*t->name));
        t->ino = xrealloc(t->ino, t->cap * sizeof(*t->ino));
    }
    t->name[t->n] = strdup(name);
    t->ino[t->n++] = ino;
}

static void
names_del(struct names *t, const char *name)
{
    long i = names_find(t, name);
    if (i < 0)
        return;
    free(t->name[i]);
    t->name[i] = t->name[t->n - 1];
    t->ino[i] = t->ino[t->n - 1];
    t->n--;
}

static void
names_free(struct names *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->name[i]);
    free(t->name);
    free(t->ino);
}

static int
inode_new(struct pc_trace *t, bool dir, const char *path)
{
    int n = (int)t->ninodes++;
    t->inodes = xrealloc(t->inodes, t->ninodes * sizeof(*t->inodes));
    t->inodes[n] = (struct inode){.dir = dir, .first_name = strdup(path)};
    return n;
}

/* The directory tree while the trace is replayed: an entry table per
 * inode (used by directories only). */
struct tree {
    struct names *dirs;
    size_t n;
};

static struct names *
tree_dir(struct tree *tr, int ino)
{
    if ((size_t)ino >= tr->n) {
        size_t n = (size_t)ino + 16;
        tr->dirs = xrealloc(tr->dirs, n * sizeof(*tr->dirs));
        memset(tr->dirs + tr->n, 0, (n - tr->n) * sizeof(*tr->dirs));
        tr->n = n;
    }
    return &tr->dirs[ino];
}

static void
tree_free(struct tree *tr)
{
    for (size_t i = 0; i < tr->n; i++)
        names_free(&tr->dirs[i]);
    free(tr->dirs);
}

/*
 * Walk path ("" is the watched directory, "a/b" b in its subdirectory a):
 * *parent gets the directory that holds the last component (-1 for ""),
 * leaf its name, and the result is the inode it names, -1 when there is
 * none. -2 when a directory on the way is missing.
 */
static int
walk(const struct pc_trace *t, struct tree *tr, const char *path, int *parent,
     char *leaf, size_t leaflen)
{
    *parent = -1;
    snprintf(leaf, leaflen, "%s", "");
    if (!path[0])
        return 0;
    int cur = 0;
    const char *p = path;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        snprintf(leaf, leaflen, "%.*s", (int)len, p);
        struct names *d = tree_dir(tr, cur);
        long k = names_find(d, leaf);
        if (!slash) {
            *parent = cur;
            return k >= 0 ? d->ino[k] : -1;
        }
        if (k < 0 || !t->inodes[d->ino[k]].dir)
            return -2;
        cur = d->ino[k];
        p = slash + 1;
    }
}

static void
ns_add(struct pc_trace *t, uint64_t seq, enum ns_kind kind, int pa,
       const char *na, int pb, const char *nb, int ino)
{
    t->ns = xrealloc(t->ns, (t->nns + 1) * sizeof(*t->ns));
    t->ns[t->nns++] = (struct nsop){
        seq, kind, pa, pb, strdup(na), nb ? strdup(nb) : NULL, ino};
}

/* Apply a name change to a tree; false when its source is not there. */
static bool
ns_apply(struct tree *tr, const struct nsop *op)
{
    struct names *a = tree_dir(tr, op->pa);
    long k;
    switch (op->kind) {
    case NS_CREATE:
    case NS_MKDIR:
        names_set(a, op->na, op->ino);
        return true;
    case NS_RENAME:
    case NS_LINK: {
        k = names_find(a, op->na);
        if (k < 0)
            return false;
        int x = a->ino[k];
        if (op->kind == NS_RENAME)
            names_del(a, op->na);
        names_set(tree_dir(tr, op->pb), op->nb, x);
        return true;
    }
    case NS_UNLINK:
    case NS_RMDIR:
        k = names_find(a, op->na);
        if (k < 0)
            return false;
        names_del(a, op->na);
        return true;
    }
    return false;
}

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static char *
dup_n(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Split the file into records, checking the numbering. */
static int
parse(struct pc_trace *t, char *err, size_t errlen)
{
    size_t pos = 0, cap = 0;
    const char *base = t->map;
    while (pos < t->maplen) {
        if (t->maplen - pos < sizeof(struct pc_rec))
            return fail(err, errlen, "trace ends inside a record at %zu", pos);
        struct pc_rec h;
        memcpy(&h, base + pos, sizeof(h));
        const struct pc_rec *r = &h;
        size_t data = r->op == PC_WRITE ? r->len : 0;
        size_t size = sizeof(*r) + r->namelen + r->name2len + data;
        if (t->maplen - pos < size)
            return fail(err, errlen, "trace ends inside a record at %zu", pos);
        if (r->seq != t->nrecs)
            return fail(err, errlen, "record %zu is numbered %" PRIu64,
                        t->nrecs, r->seq);
        if (t->nrecs == cap) {
            cap = cap ? 2 * cap : 1024;
            t->recs = xrealloc(t->recs, cap * sizeof(*t->recs));
        }
        const char *name = base + pos + sizeof(*r);
        t->recs[t->nrecs++] = (struct rec){
            .r = h,
            .name = dup_n(name, r->namelen),
            .name2 = dup_n(name + r->namelen, r->name2len),
            .data = (const uint8_t *)name + r->namelen + r->name2len};
        pos += size;
    }
    return 0;
}

static void
stdio_add(struct pc_trace *t, const char *name)
{
    size_t old = t->stdio ? strlen(t->stdio) : 0;
    t->stdio = xrealloc(t->stdio, old + strlen(name) + 2);
    sprintf(t->stdio + old, "%s%s", old ? " " : "", name);
    t->st.stdio++;
}

/* Replay the trace once: which file each descriptor writes, the name
 * changes, the syncs. */
static int
resolve(struct pc_trace *t, char *err, size_t errlen)
{
    int *fd_ino = malloc(FD_MAX * sizeof(int)); /* -1: none */
    if (!fd_ino)
        abort();
    for (int i = 0; i < FD_MAX; i++)
        fd_ino[i] = -1;
    struct tree tr = {0};
    inode_new(t, true, ""); /* the watched directory */
    int rc = 0;
    for (size_t i = 0; i < t->nrecs && rc == 0; i++) {
        const struct pc_rec *r = &t->recs[i].r;
        const char *a = t->recs[i].name, *b = t->recs[i].name2;
        bool fd_ok = r->fd >= 0 && r->fd < FD_MAX;
        int ino = fd_ok ? fd_ino[r->fd] : -1;
        int pa, pb, x, y;
        char la[4096], lb[4096];
        switch (r->op) {
        case PC_OPEN:
        case PC_STDIO:
            x = walk(t, &tr, a, &pa, la, sizeof(la));
            if (x == -2 || (r->op == PC_OPEN && !fd_ok)) {
                rc = fail(err, errlen, "record %zu: open of \"%s\"", i, a);
                break;
            }
            if (x < 0 && (r->op == PC_STDIO || (r->flags & O_CREAT))) {
                x = inode_new(t, false, a);
                names_set(tree_dir(&tr, pa), la, x);
                ns_add(t, r->seq, NS_CREATE, pa, la, -1, NULL, x);
                t->st.creates++;
            } else if (x < 0) {
                rc = fail(err, errlen,
                          "record %zu: open of \"%s\", which the trace never "
                          "created (the directory must start empty)",
                          i, a);
                break;
            } else if (!t->inodes[x].dir &&
                       (r->op == PC_STDIO || (r->flags & O_TRUNC))) {
                u32s_add(&t->inodes[x].ops, (uint32_t)i);
                t->st.truncates++;
            }
            if (r->op == PC_STDIO)
                stdio_add(t, a);
            else
                fd_ino[r->fd] = x;
            break;
        case PC_WRITE:
        case PC_FALLOC:
        case PC_TRUNC:
            if (r->op == PC_TRUNC && r->fd < 0)
                ino = walk(t, &tr, a, &pa, la, sizeof(la));
            if (ino < 0 || t->inodes[ino].dir) {
                rc = fail(err, errlen,
                          "record %zu: a write to fd %d, which "
                          "is no file of the directory",
                          i, r->fd);
                break;
            }
            u32s_add(&t->inodes[ino].ops, (uint32_t)i);
            if (r->op == PC_WRITE) {
                t->st.writes++;
                t->st.write_bytes += r->len;
            } else {
                t->st.truncates++;
            }
            break;
        case PC_SYNC_BEGIN:
            break;
        case PC_SYNC_END:
            if (r->flags & PC_F_FAILED)
                break;
            if (r->fd < 0)
                spans_add(&t->all_syncs, r->off, r->seq);
            else if (ino >= 0)
                spans_add(&t->inodes[ino].syncs, r->off, r->seq);
            if (r->fd < 0 || (ino >= 0 && t->inodes[ino].dir))
                t->st.dir_syncs++;
            else
                t->st.file_syncs++;
            break;
        case PC_RENAME:
        case PC_LINK:
            x = walk(t, &tr, a, &pa, la, sizeof(la));
            y = walk(t, &tr, b, &pb, lb, sizeof(lb));
            if (x < 0 || y == -2) {
                rc = fail(err, errlen, "record %zu: %s of unknown \"%s\"", i,
                          r->op == PC_RENAME ? "rename" : "link", a);
                break;
            }
            ns_add(t, r->seq, r->op == PC_RENAME ? NS_RENAME : NS_LINK, pa, la,
                   pb, lb, -1);
            ns_apply(&tr, &t->ns[t->nns - 1]);
            t->st.renames += r->op == PC_RENAME;
            break;
        case PC_UNLINK:
        case PC_RMDIR:
            x = walk(t, &tr, a, &pa, la, sizeof(la));
            if (x < 0) {
                rc = fail(err, errlen, "record %zu: unlink of unknown \"%s\"",
                          i, a);
                break;
            }
            ns_add(t, r->seq, r->op == PC_UNLINK ? NS_UNLINK : NS_RMDIR, pa, la,
                   -1, NULL, -1);
            ns_apply(&tr, &t->ns[t->nns - 1]);
            t->st.unlinks++;
            break;
        case PC_MKDIR:
            x = walk(t, &tr, a, &pa, la, sizeof(la));
            if (x != -1) {
                rc = fail(err, errlen, "record %zu: mkdir of \"%s\"", i, a);
                break;
            }
            x = inode_new(t, true, a);
            ns_add(t, r->seq, NS_MKDIR, pa, la, -1, NULL, x);
            ns_apply(&tr, &t->ns[t->nns - 1]);
            break;
        case PC_CLOSE:
            if (fd_ok)
                fd_ino[r->fd] = -1;
            break;
        default:
            rc =
                fail(err, errlen, "record %zu: unknown operation %u", i, r->op);
        }
    }
    tree_free(&tr);
    free(fd_ino);
    t->st.records = t->nrecs;
    t->st.files = t->ninodes;
    return rc;
}

struct pc_trace *
pc_trace_load(const char *path, char *err, size_t errlen)
{
    struct pc_trace *t = calloc(1, sizeof(*t));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (!t || fd < 0 || fstat(fd, &st) != 0) {
        fail(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(t);
        return NULL;
    }
    t->maplen = (size_t)st.st_size;
    t->map =
        t->maplen ? mmap(NULL, t->maplen, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (t->map == MAP_FAILED) {
        fail(err, errlen, "mmap %s: %s", path, strerror(errno));
        free(t);
        return NULL;
    }
    if (parse(t, err, errlen) != 0 || resolve(t, err, errlen) != 0) {
        pc_trace_free(t);
        return NULL;
    }
    return t;
}

void
pc_trace_free(struct pc_trace *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrecs; i++) {
        free((char *)t->recs[i].name);
        free((char *)t->recs[i].name2);
    }
    free(t->recs);
    for (size_t i = 0; i < t->ninodes; i++) {
        free(t->inodes[i].first_name);
        free(t->inodes[i].ops.v);
        free(t->inodes[i].syncs.v);
    }
    free(t->inodes);
    for (size_t i = 0; i < t->nns; i++) {
        free(t->ns[i].na);
        free(t->ns[i].nb);
    }
    free(t->ns);
    free(t->all_syncs.v);
    free(t->stdio);
    if (t->map)
        munmap(t->map, t->maplen);
    free(t);
}

uint64_t
pc_trace_len(const struct pc_trace *t)
{
    return t->nrecs;
}

void
pc_trace_stats(const struct pc_trace *t, struct pc_trace_stats *st)
{
    *st = t->st;
}

char *
pc_trace_stdio_names(const struct pc_trace *t)
{
    return strdup(t->stdio ? t->stdio : "");
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t *
sorted_unique(uint64_t *v, size_t k, size_t *n)
{
    qsort(v, k, sizeof(*v), cmp_u64);
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        if (m == 0 || v[m - 1] != v[i])
            v[m++] = v[i];
    *n = m;
    return v;
}

uint64_t *
pc_trace_sync_cuts(const struct pc_trace *t, size_t *n)
{
    uint64_t *v = xrealloc(NULL, (2 * t->nrecs + 1) * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < t->nrecs; i++) {
        const struct pc_rec *r = &t->recs[i].r;
        if (r->op == PC_SYNC_END && !(r->flags & PC_F_FAILED)) {
            v[k++] = r->off;     /* just before it began */
            v[k++] = r->seq + 1; /* just after it ended */
        }
    }
    return sorted_unique(v, k, n);
}

uint64_t *
pc_trace_name_cuts(const struct pc_trace *t, bool before, size_t *n)
{
    uint64_t *v = xrealloc(NULL, (2 * t->nns + 1) * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < t->nns; i++) {
        if (before)
            v[k++] = t->ns[i].seq;
        v[k++] = t->ns[i].seq + 1;
    }
    return sorted_unique(v, k, n);
}

const char *
pc_mode_name(enum pc_mode m)
{
    static const char *names[PC_NMODES] = {"none",  "all",    "prefix",
                                           "holes", "subset", "pages"};
    return m < PC_NMODES ? names[m] : "?";
}

char
pc_mode_tier(enum pc_mode m)
{
    return m == PC_HOLES ? 'B' : m >= PC_SUBSET ? 'C' : 'A';
}

/* ---- file contents ---- */

struct fbuf {
    uint8_t *p;
    uint64_t size, cap;
};

static void
fb_reserve(struct fbuf *f, uint64_t n)
{
    if (n <= f->cap)
        return;
    uint64_t cap = f->cap ? f->cap : 4096;
    while (cap < n)
        cap *= 2;
    f->p = xrealloc(f->p, cap);
    memset(f->p + f->cap, 0, cap - f->cap);
    f->cap = cap;
}

static void
fb_resize(struct fbuf *f, uint64_t size)
{
    fb_reserve(f, size);
    if (size < f->size)
        memset(f->p + size, 0, f->size - size);
    f->size = size;
}

static void
fb_write(struct fbuf *f, uint64_t off, const void *d, uint64_t n)
{
    if (n == 0)
        return;
    fb_reserve(f, off + n);
    memcpy(f->p + off, d, n);
    if (off + n > f->size)
        f->size = off + n;
}

static void
fb_copy(struct fbuf *to, const struct fbuf *from)
{
    fb_resize(to, 0);
    fb_reserve(to, from->size);
    if (from->size)
        memcpy(to->p, from->p, from->size);
    to->size = from->size;
}

/* Apply record i to f; of a write only its first `part` bytes. */
static void
apply(const struct pc_trace *t, struct fbuf *f, uint32_t i, uint64_t part)
{
    const struct pc_rec *r = &t->recs[i].r;
    switch (r->op) {
    case PC_OPEN:  /* O_TRUNC */
    case PC_STDIO: /* fopen "w": what it writes is not seen */
        fb_resize(f, 0);
        break;
    case PC_TRUNC:
        fb_resize(f, r->len);
        break;
    case PC_WRITE:
        fb_write(f, r->off, t->recs[i].data, part < r->len ? part : r->len);
        break;
    case PC_FALLOC:
        if (!(r->flags & 0x01 /* FALLOC_FL_KEEP_SIZE */) &&
            r->off + r->len > f->size)
            fb_resize(f, r->off + r->len);
        if (r->flags & 0x02 /* FALLOC_FL_PUNCH_HOLE */ ||
            r->flags & 0x10 /* FALLOC_FL_ZERO_RANGE */) {
            uint64_t end =
                r->off + r->len < f->size ? r->off + r->len : f->size;
            if (r->off < end)
                memset(f->p + r->off, 0, end - r->off);
        }
        break;
    }
}

/* Where to tear a write of [off, off + len): a position strictly inside,
 * at a boundary of `unit` bytes of the file (1: any byte); 0 if none. */
static uint64_t
tear_at(uint64_t *rng, uint64_t off, uint64_t len, uint64_t unit)
{
    uint64_t first = (off / unit + 1) * unit;
    if (len < 2 || first >= off + len)
        return 0;
    uint64_t n = (off + len - 1 - first) / unit + 1;
    return first + unit * pc_rand(rng, n);
}

static const uint64_t tear_units[3] = {SECTOR, PAGE, 1};

/* The pending write i, torn at random (or whole); its bytes kept. */
static uint64_t
torn_part(const struct pc_trace *t, uint32_t i, uint64_t *rng, char *how,
          size_t howlen)
{
    const struct pc_rec *r = &t->recs[i].r;
    uint64_t unit = tear_units[pc_rand(rng, 3)];
    uint64_t at = r->op == PC_WRITE ? tear_at(rng, r->off, r->len, unit) : 0;
    if (!at) {
        snprintf(how, howlen, "%s", "");
        return r->len;
    }
    snprintf(how, howlen, " torn@%" PRIu64 "(%s)", at,
             unit == 1        ? "byte"
             : unit == SECTOR ? "512"
                              : "4096");
    return at - r->off;
}

static void
appendf(char *desc, size_t desclen, const char *fmt, ...)
{
    size_t n = strlen(desc);
    if (n + 1 >= desclen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(desc + n, desclen - n, fmt, ap);
    va_end(ap);
}

/* Rule 6, PC_PAGES: each page as it was after some pending write. */
static void
pages_mix(const struct pc_trace *t, struct fbuf *f, const uint32_t *ops,
          size_t n, uint64_t *rng, char *desc, size_t desclen)
{
    struct fbuf *st = calloc(n + 1, sizeof(*st));
    if (!st)
        abort();
    fb_copy(&st[0], f);
    uint64_t max = f->size;
    for (size_t i = 0; i < n; i++) {
        fb_copy(&st[i + 1], &st[i]);
        apply(t, &st[i + 1], ops[i], UINT64_MAX);
        if (st[i + 1].size > max)
            max = st[i + 1].size;
    }
    uint64_t size = f->size, npages = (max + PAGE - 1) / PAGE, changed = 0;
    fb_reserve(f, max);
    uint64_t tear_page = npages ? pc_rand(rng, npages) : 0;
    bool tear = pc_rand(rng, 2) == 0;
    for (uint64_t q = 0; q < npages; q++) {
        size_t v = (size_t)pc_rand(rng, n + 1);
        for (size_t s = 0; s <= n; s++)
            fb_reserve(&st[s], max);
        uint64_t from = q * PAGE;
        memcpy(f->p + from, st[v].p + from,
               PAGE < max - from ? PAGE : max - from);
        if (tear && q == tear_page && v > 0) {
            uint64_t cut = SECTOR * pc_rand(rng, PAGE / SECTOR);
            if (from + cut < max)
                memcpy(f->p + from + cut, st[v - 1].p + from + cut,
                       (PAGE < max - from ? PAGE : max - from) - cut);
            appendf(desc, desclen, " page%" PRIu64 "-torn@%" PRIu64, q, cut);
        }
        if (v > 0) {
            changed++;
            uint64_t reach =
                st[v].size < from + PAGE ? st[v].size : from + PAGE;
            if (reach > size)
                size = reach;
        }
    }
    f->size = size;
    if (f->cap > size)
        memset(f->p + size, 0, f->cap - size);
    appendf(desc, desclen, " %" PRIu64 "/%" PRIu64 " pages newer", changed,
            npages);
    for (size_t s = 0; s <= n; s++)
        free(st[s].p);
    free(st);
}

/* The file ino as the power cut at cut leaves it (rules 3 to 6). */
static void
file_contents(const struct pc_trace *t, int ino, uint64_t cut,
              enum pc_mode mode, uint64_t *rng, struct fbuf *f, char *desc,
              size_t desclen)
{
    const struct inode *in = &t->inodes[ino];
    uint64_t b = synced_below(&in->syncs, cut);
    uint64_t ball = synced_below(&t->all_syncs, cut);
    if (ball > b)
        b = ball;
    size_t i = 0;
    while (i < in->ops.n && t->recs[in->ops.v[i]].r.seq < b)
        apply(t, f, in->ops.v[i++], UINT64_MAX);
    size_t j = i;
    while (j < in->ops.n && t->recs[in->ops.v[j]].r.seq < cut)
        j++;
    const uint32_t *pend = in->ops.v + i;
    size_t n = j - i;
    uint64_t durable = f->size;
    if (n == 0)
        return;
    appendf(desc, desclen, " [%" PRIu64 "B durable, %zu pending:", durable, n);
    char how[64];
    switch (mode) {
    case PC_NONE:
        appendf(desc, desclen, " none");
        break;
    case PC_ALL:
        for (size_t k = 0; k < n; k++)
            apply(t, f, pend[k], UINT64_MAX);
        appendf(desc, desclen, " all");
        break;
    case PC_PREFIX:
    case PC_HOLES: {
        size_t k = (size_t)pc_rand(rng, n + 1);
        for (size_t x = 0; x < k; x++)
            apply(t, f, pend[x], UINT64_MAX);
        appendf(desc, desclen, " first %zu", k);
        if (k < n) {
            uint64_t part = torn_part(t, pend[k], rng, how, sizeof(how));
            if (part < t->recs[pend[k]].r.len) {
                apply(t, f, pend[k], part);
                appendf(desc, desclen, " +next%s", how);
            }
        }
        if (mode == PC_HOLES && f->size > 0) {
            uint64_t q0 = (durable + PAGE - 1) / PAGE;
            uint64_t qend = (f->size - 1) / PAGE; /* this page stays */
            int holes = 0;
            for (uint64_t q = q0; q < qend; q++)
                if (pc_rand(rng, 3) == 0) {
                    memset(f->p + q * PAGE, 0, PAGE);
                    holes++;
                }
            appendf(desc, desclen, " %d hole page(s) of %" PRIu64, holes,
                    qend > q0 ? qend - q0 : 0);
        }
        break;
    }
    case PC_SUBSET:
        appendf(desc, desclen, " kept");
        for (size_t x = 0; x < n; x++) {
            if (pc_rand(rng, 2))
                continue;
            uint64_t part = pc_rand(rng, 3) == 0
                                ? torn_part(t, pend[x], rng, how, sizeof(how))
                                : UINT64_MAX;
            if (part == UINT64_MAX)
                how[0] = '\0';
            apply(t, f, pend[x], part);
            appendf(desc, desclen, " #%zu%s", x, how);
        }
        break;
    case PC_PAGES:
        if (n <= 64) {
            pages_mix(t, f, pend, n, rng, desc, desclen);
        } else {
            for (size_t x = 0; x < n; x++)
                if (pc_rand(rng, 2))
                    apply(t, f, pend[x], UINT64_MAX);
            appendf(desc, desclen, " (too many: a subset)");
        }
        break;
    }
    appendf(desc, desclen, " -> %" PRIu64 "B]", f->size);
}

/* ---- the image ---- */

/* The latest BEGIN of a completed sync of inode ino (or of everything). */
static uint64_t
synced(const struct pc_trace *t, int ino, uint64_t cut)
{
    uint64_t b = synced_below(&t->all_syncs, cut);
    uint64_t d = ino >= 0 ? synced_below(&t->inodes[ino].syncs, cut) : 0;
    return d > b ? d : b;
}

/* Whether a name change is durable at cut (rule 2): an fsync of its
 * directory (either one, for a rename) began after it and ended before. */
static bool
ns_durable(const struct pc_trace *t, const struct nsop *op, uint64_t cut)
{
    return op->seq < synced(t, op->pa, cut) ||
           (op->pb >= 0 && op->seq < synced(t, op->pb, cut));
}

static int
write_file(const char *path, const struct fbuf *f)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    uint64_t done = 0;
    while (done < f->size) {
        ssize_t n = write(fd, f->p + done, f->size - done);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (uint64_t)n;
    }
    return close(fd);
}

struct image {
    const struct pc_trace *t;
    struct tree tr;
    uint64_t cut;
    enum pc_mode mode;
    uint64_t *rng;
    char *desc;
    size_t desclen;
};

/* Write directory ino of the image, and what is under it, at path. */
static int
write_dir(struct image *im, int ino, const char *path, const char *rel,
          int depth)
{
    struct names *d = tree_dir(&im->tr, ino);
    if (depth > 16)
        return -1;
    for (size_t i = 0; i < d->n; i++) {
        char p[8192], r[4096];
        if (snprintf(p, sizeof(p), "%s/%s", path, d->name[i]) >=
                (int)sizeof(p) ||
            snprintf(r, sizeof(r), "%s%s%s", rel, rel[0] ? "/" : "",
                     d->name[i]) >= (int)sizeof(r))
            return -1; /* a path the test would never make */
        int x = d->ino[i];
        if (im->t->inodes[x].dir) {
            if ((mkdir(p, 0755) != 0 && errno != EEXIST) ||
                write_dir(im, x, p, r, depth + 1) != 0)
                return -1;
            continue;
        }
        struct fbuf f = {0};
        appendf(im->desc, im->desclen, " %s", r);
        file_contents(im->t, x, im->cut, im->mode, im->rng, &f, im->desc,
                      im->desclen);
        int rc = write_file(p, &f);
        free(f.p);
        if (rc != 0) {
            snprintf(im->desc, im->desclen, "writing %s: %s", p,
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

int
pc_image_write(const struct pc_trace *t, uint64_t cut, enum pc_mode mode,
               uint64_t *rng, const char *dir, char *desc, size_t desclen)
{
    desc[0] = '\0';
    /* rule 2: name changes in order, at least up to the last durable one */
    size_t before = 0, durable = 0;
    while (before < t->nns && t->ns[before].seq < cut) {
        if (ns_durable(t, &t->ns[before], cut))
            durable = before + 1;
        before++;
    }
    size_t optional = before - durable;
    size_t keep = mode == PC_NONE  ? 0
                  : mode == PC_ALL ? optional
                                   : (size_t)pc_rand(rng, optional + 1);
    appendf(desc, desclen,
            "cut %" PRIu64 " %s: names: %zu durable changes, %zu of %zu "
            "more;",
            cut, pc_mode_name(mode), durable, keep, optional);
    struct image im = {.t = t,
                       .cut = cut,
                       .mode = mode,
                       .rng = rng,
                       .desc = desc,
                       .desclen = desclen};
    for (size_t i = 0; i < durable + keep; i++)
        ns_apply(&im.tr, &t->ns[i]);
    int rc = write_dir(&im, 0, dir, "", 0);
    tree_free(&im.tr);
    return rc;
}

void
pc_trace_each_write(const struct pc_trace *t,
                    void (*fn)(void *arg, const char *name, uint64_t off,
                               const void *data, uint64_t len),
                    void *arg)
{
    for (size_t x = 0; x < t->ninodes; x++)
        for (size_t k = 0; k < t->inodes[x].ops.n; k++) {
            const struct rec *r = &t->recs[t->inodes[x].ops.v[k]];
            if (r->r.op == PC_WRITE)
                fn(arg, t->inodes[x].first_name, r->r.off, r->data, r->r.len);
        }
}
