/*
 * Power cuts: what kill -9 cannot show. A killed process leaves the page
 * cache behind, and with it every write it made; a power cut keeps only
 * what had reached the disk. These tests record what mcdbd writes, syncs,
 * creates, renames and deletes (an LD_PRELOAD shim, shim.c) under a durable
 * load, then rebuild its data directory as a power cut at many points
 * could have left it (image.c says exactly what may survive), and on each
 * image
 *   - run mcdb-fsck (no --repair) and tally what it says;
 *   - start mcdbd, which must start: recovery never refuses what a power
 *     cut leaves (tiers A and B of image.c; tier C refusals are counted and
 *     reported, and fail the test only with MCDB_POWERCUT_STRICT=1), and a
 *     refusal must name a file and an offset;
 *   - read every key back: each write acknowledged before the cut (its
 *     STORED or DELETED had arrived) is there with its value, or a later
 *     write to the key that had been sent by then; nothing sent after the
 *     cut is (a check of the model itself).
 *
 * The load: four connections set, overwrite and delete their own 40 keys in
 * pipelined batches of 1 to 6 requests (connection 0 with values of 6 to
 * 16 KiB, the others mostly small), with --fsync always, --segment-size 64k,
 * -I 16k and the compactor at full speed (--compact-rate 0), so that the
 * log rolls over, sometimes twice within one fdatasync, and compaction
 * copies, drops and deletes segments and writes hints. After each reply the
 * test reads the shim's counter: the reply arrived after every record
 * numbered below it. mcdbd then stops with SIGTERM (its shutdown is traced
 * too).
 *
 * Images: half the budget right after name changes with everything kept
 * (the state a kill -9 there leaves); the rest at cut points (the two sides
 * of syncs, then of name changes, then random points, and the end), four
 * images each: nothing pending, everything, and two random modes of
 * image.c. 200 images in CI (120 under the sanitizers) and three fifths of
 * that for the replica. Longer:
 *   MCDB_POWERCUT_IMAGES=8000 build/tests/test_powercut_powercut --jobs 1
 * (MCDB_POWERCUT_SEED=N varies the choices; MCDB_KEEP_TEST_DIRS=1 keeps
 * every directory). The first image of each kind of failure is kept as
 * <root>/failed-N/, <root>/failed-N.why saying what was cut and how, with
 * the trace in <root>; `build/mcdbd --data-dir` on a copy reproduces it.
 *
 * The replica test does the same to a replica's directory while its
 * primary (--sync-replicas 1, so that a client's STORED means on the
 * replica's disk) streams to it; the primary is traced as well, for its
 * whole log. After a cut the replica's segment files must hold the
 * primary's bytes at their offsets, and its log must reach what it had
 * acknowledged to the primary (replica0_acked_offset, polled during the
 * load and dated by the replica's counter).
 */
#include "helpers/repl_util.h"
#include "helpers/server.h"
#include "helpers/target.h"
#include "helpers/tool.h"
#include "powercut/image.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TG_SUITE_NEEDS(1)

#define NCONN 4
#define KEYS_PER_CONN 40
#define NKEYS (NCONN * KEYS_PER_CONN)
#define IMAGES_PER_CUT 4
#define MAX_KEPT 8

static const char *const server_args[] = {
    "--fsync", "always", "--segment-size", "64k", "-I", "16k", "--compact-rate",
    "0",       NULL};
/* The single server also zero-fills its segment files ahead of the writes
 * (so its records overwrite zeros within the file's size); the replica's
 * pair grows them (the default). */
static const char *const single_args[] = {
    "--fsync",        "always", "--segment-size", "64k", "-I", "16k",
    "--compact-rate", "0",      "--preallocate",  "yes", NULL};

/* ---- the load ---- */

enum { OP_SET, OP_DELETE };

struct op {
    int key;
    int kind;
    uint32_t id;    /* flags of the value; the value is made from it */
    uint64_t sent;  /* the counter before the request was sent */
    uint64_t acked; /* the counter once its reply arrived; UINT64_MAX: none */
};

static struct op *ops;
static _Atomic size_t nops;
static size_t ops_cap;
static pthread_mutex_t ops_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pc_counter *counter;
static int load_port;
static int ops_per_conn;
static atomic_int load_failed;

static const char *
env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && v[0] ? v : dflt;
}

/* Values of 16 bytes to 16 KiB, mostly small; connection 0 writes large
 * ones, in pipelined batches, so that the log rolls over twice while one
 * fdatasync runs. */
static size_t
value_len(uint32_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ULL;
    unsigned pick = (unsigned)(h >> 32) % 20, r = (unsigned)(h >> 8);
    if (id < 1000000)
        return 6000 + r % 10000;
    if (pick < 14)
        return 16 + r % 600;
    if (pick < 19)
        return 600 + r % 3400;
    return 4000 + r % 12000;
}

static void
make_value(char *buf, uint32_t id, size_t len)
{
    int n = snprintf(buf, len + 1, "v%u:", id);
    for (size_t i = (size_t)n; i < len; i++)
        buf[i] = (char)('a' + (id * 131u + i * 7u) % 26);
}

static size_t
op_add(struct op o)
{
    pthread_mutex_lock(&ops_mu);
    if (nops == ops_cap) {
        ops_cap = ops_cap ? 2 * ops_cap : 4096;
        ops = realloc(ops, ops_cap * sizeof(*ops));
    }
    size_t i = nops;
    ops[i] = o;
    atomic_store(&nops, i + 1);
    pthread_mutex_unlock(&ops_mu);
    return i;
}

static void
op_acked(size_t i, uint64_t when)
{
    pthread_mutex_lock(&ops_mu);
    ops[i].acked = when;
    pthread_mutex_unlock(&ops_mu);
}

/* One reply line (without "\r\n") from a buffered connection. */
struct conn {
    int fd;
    char buf[4096];
    size_t len;
};

static bool
recv_line(struct conn *c, char *line, size_t n)
{
    for (;;) {
        char *e = memmem(c->buf, c->len, "\r\n", 2);
        if (e) {
            size_t k = (size_t)(e - c->buf);
            snprintf(line, n, "%.*s", (int)k, c->buf);
            memmove(c->buf, e + 2, c->len - k - 2);
            c->len -= k + 2;
            return true;
        }
        if (c->len == sizeof(c->buf))
            return false;
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        c->len += (size_t)r;
    }
}

/*
 * Connection c sets and deletes its own keys in batches of 1 to 6
 * requests sent together (pipelined), then reads their replies in order;
 * each reply is acknowledged at the counter read just after it arrived.
 */
static void *
client(void *arg)
{
    int c = (int)(intptr_t)arg;
    struct conn cn = {.fd = th_connect(load_port)};
    if (cn.fd < 0) {
        atomic_store(&load_failed, 1);
        return NULL;
    }
    /* every write waits for an fdatasync under the shim, and a disk that
     * other jobs keep busy (CI builds beside it) has taken over ten
     * seconds for one: the test is about what a cut keeps, not latency */
    struct timeval tv = {.tv_sec = 120};
    setsockopt(cn.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint64_t rng = 0x5DEECE66DULL * (uint64_t)(c + 1);
    bool live[KEYS_PER_CONN] = {0};
    enum { BATCH = 6 };
    char *req = malloc(BATCH * 16500), *val = malloc(16384);
    int done = 0;
    while (done < ops_per_conn && !atomic_load(&load_failed)) {
        int nb = 1 + (int)pc_rand(&rng, BATCH);
        if (nb > ops_per_conn - done)
            nb = ops_per_conn - done;
        size_t idx[BATCH], n = 0;
        int kind[BATCH];
        uint64_t sent = pc_counter_now(counter);
        for (int b = 0; b < nb; b++) {
            int k = (int)pc_rand(&rng, KEYS_PER_CONN);
            struct op o = {.key = c * KEYS_PER_CONN + k,
                           .id = (uint32_t)(c * 1000000 + ++done),
                           .sent = sent,
                           .acked = UINT64_MAX};
            o.kind = live[k] && pc_rand(&rng, 100) < 15 ? OP_DELETE : OP_SET;
            live[k] = o.kind == OP_SET;
            if (o.kind == OP_SET) {
                size_t len = value_len(o.id);
                make_value(val, o.id, len);
                n += (size_t)sprintf(req + n, "set pc%d %u 0 %zu\r\n", o.key,
                                     o.id, len);
                memcpy(req + n, val, len);
                memcpy(req + n + len, "\r\n", 2);
                n += len + 2;
            } else {
                n += (size_t)sprintf(req + n, "delete pc%d\r\n", o.key);
            }
            kind[b] = o.kind;
            idx[b] = op_add(o);
        }
        if (th_send(cn.fd, req, n) != 0) {
            atomic_store(&load_failed, 1);
            break;
        }
        for (int b = 0; b < nb; b++) {
            char line[256];
            bool got = recv_line(&cn, line, sizeof(line));
            uint64_t now = pc_counter_now(counter);
            const char *want = kind[b] == OP_SET ? "STORED" : "DELETED";
            if (!got || strcmp(line, want) != 0) {
                fprintf(stderr, "client %d: op %zu: %s\n", c, idx[b],
                        got ? line : "(no reply)");
                atomic_store(&load_failed, 1);
                break;
            }
            op_acked(idx[b], now);
        }
    }
    free(req);
    free(val);
    close(cn.fd);
    return NULL;
}

static void
run_load(int port, int per_conn)
{
    load_port = port;
    ops_per_conn = per_conn;
    pthread_t th[NCONN];
    for (int c = 0; c < NCONN; c++)
        pthread_create(&th[c], NULL, client, (void *)(intptr_t)c);
    for (int c = 0; c < NCONN; c++)
        pthread_join(th[c], NULL);
    cr_assert(!atomic_load(&load_failed), "the load failed (see above)");
}

/* ---- what each key may hold after a cut at point cut ---- */

/* Per key, its operations in order (one connection owns each key and
 * sends one request at a time, so they are ordered). */
static size_t *key_ops[NKEYS];
static size_t key_nops[NKEYS];

static void
index_keys(void)
{
    for (int k = 0; k < NKEYS; k++) {
        free(key_ops[k]);
        key_ops[k] = NULL;
        key_nops[k] = 0;
    }
    for (size_t i = 0; i < nops; i++) {
        int k = ops[i].key;
        key_ops[k] = realloc(key_ops[k], (key_nops[k] + 1) * sizeof(size_t));
        key_ops[k][key_nops[k]++] = i;
    }
}

/* What came back for one key: id 0 = absent. */
struct seen {
    uint32_t id;
    bool bad_value;
};

/* V_LOST_INFLIGHT: lost while a newer write to the key, sent but not yet
 * acknowledged, was in flight at the cut. */
enum verdict { V_OK, V_LOST, V_PHANTOM, V_CORRUPT, V_LOST_INFLIGHT };

/*
 * The states the key may be in after a cut at cut: after the last
 * operation acknowledged before it, or after one sent before it but not yet
 * acknowledged. An older state is a lost write; a state from a request sent
 * after the cut is a phantom (the model is wrong).
 */
static enum verdict
judge(int k, struct seen s, uint64_t cut, char *why, size_t whylen)
{
    if (s.bad_value) {
        snprintf(why, whylen, "pc%d: the value of op %u is damaged", k, s.id);
        return V_CORRUPT;
    }
    size_t n = key_nops[k];
    long last = -1; /* index into key_ops[k] of the last acked before cut */
    for (size_t j = 0; j < n; j++)
        if (ops[key_ops[k][j]].acked <= cut)
            last = (long)j;
    /* allowed: state after `last` (absent if none or a delete), or after
     * any later op sent before the cut */
    bool absent_ok = last < 0 || ops[key_ops[k][last]].kind == OP_DELETE;
    enum verdict lost = V_LOST;
    for (size_t j = (size_t)(last + 1); j < n; j++) {
        const struct op *o = &ops[key_ops[k][j]];
        if (o->sent >= cut)
            break;
        lost = V_LOST_INFLIGHT;
        if (o->kind == OP_DELETE)
            absent_ok = true;
        else if (o->id == s.id)
            return V_OK;
    }
    if (s.id == 0) {
        if (absent_ok)
            return V_OK;
        snprintf(why, whylen,
                 "pc%d: missing; op %u (set, acknowledged at %" PRIu64
                 ") is lost%s",
                 k, ops[key_ops[k][last]].id, ops[key_ops[k][last]].acked,
                 lost == V_LOST ? "" : " (a newer write was in flight)");
        return lost;
    }
    if (last >= 0 && ops[key_ops[k][last]].kind == OP_SET &&
        ops[key_ops[k][last]].id == s.id)
        return V_OK;
    for (long j = 0; j < last; j++)
        if (ops[key_ops[k][j]].id == s.id) {
            const struct op *l = &ops[key_ops[k][last]];
            snprintf(why, whylen,
                     "pc%d: holds op %u, older than op %u (%s, acknowledged "
                     "at %" PRIu64 "), which is lost%s",
                     k, s.id, l->id, l->kind == OP_SET ? "set" : "delete",
                     l->acked,
                     lost == V_LOST ? "" : " (a newer write was in flight)");
            return lost;
        }
    snprintf(why, whylen,
             "pc%d: holds op %u, which was not sent before the cut (or is "
             "not this key's)",
             k, s.id);
    return V_PHANTOM;
}

/* ---- checking one image ---- */

struct tally {
    long images, started, refused, refused_unnamed, lost, lost_inflight,
        phantom, corrupt, repl_bad;
};

/* Messages by kind: numbers and paths taken out. */
#define MAX_KINDS 24
struct kind {
    char text[200];
    long tier[3]; /* A, B, C */
};

struct kinds {
    struct kind v[MAX_KINDS];
    int n;
};

struct results {
    struct tally mode[PC_NMODES];
    struct kinds refusals, fsck;
    long keys_checked, after_name_changes;
    int kept;
    long strict_fail;
    char first_failure[2048];
};

static const char *
mcdbd_bin(void)
{
    return getenv("MCDBD") ? getenv("MCDBD") : MCDBD_PATH;
}

/* The port of a stopped primary that replica images still name, and the
 * arguments that restart a replica as its operator would (--replica-of). */
static int avoid_port;
static const char *image_args[4];

/* The replica test's extra checks on a recovered image (NULL: none). */
struct replica_check;
static struct replica_check *replica;
static void replica_check_image(const char *dir, int port, uint64_t cut,
                                char *why, size_t whylen, long *bad);

/* Start mcdbd on dir without the shim; 0 and its pid and port, or -1 when
 * it exited (its log in *log, malloc'd). */
static int
start_on(const char *dir, const char *logpath, pid_t *pid, int *port,
         char **log)
{
    do
        *port = th_free_port();
    while (*port == avoid_port);
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", *port);
    const char *argv[32] = {mcdbd_bin(), "--port",     portstr, "--listen",
                            "127.0.0.1", "--data-dir", dir};
    size_t n = 7;
    for (size_t i = 0; server_args[i]; i++)
        argv[n++] = server_args[i];
    for (size_t i = 0; image_args[i]; i++)
        argv[n++] = image_args[i];
    argv[n] = NULL;
    pid_t p = fork();
    if (p == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 2000; i++) {
        int st;
        if (waitpid(p, &st, WNOHANG) == p) {
            size_t len;
            *log = tt_slurp(logpath, &len);
            if (!*log)
                *log = strdup("(no log)");
            return -1;
        }
        /* th_listens: not another test's server on the same free port */
        int fd = th_listens(p, *port) ? th_connect(*port) : -1;
        if (fd >= 0) {
            char *r = th_ask(fd, "version\r\n", "\r\n");
            close(fd);
            bool ok = r && strncmp(r, "VERSION", 7) == 0;
            free(r);
            if (ok) {
                *pid = p;
                return 0;
            }
        }
        usleep(5000);
    }
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    *log = strdup("did not answer within 10 s");
    return -1;
}

/* Read every key from the server on port; tally verdicts. */
static void
read_back(int port, uint64_t cut, long *counts, char *why, size_t whylen)
{
    int fd = th_connect(port);
    cr_assert(fd >= 0, "cannot connect to the recovered server");
    for (int k0 = 0; k0 < NKEYS; k0 += 40) {
        char req[2048] = "get";
        size_t n = 3;
        for (int k = k0; k < k0 + 40 && k < NKEYS; k++)
            n += (size_t)snprintf(req + n, sizeof(req) - n, " pc%d", k);
        snprintf(req + n, sizeof(req) - n, "\r\n");
        size_t len;
        th_sends(fd, req);
        char *rep = th_recv_until(fd, "\r\n", &len);
        cr_assert(rep, "no reply to a get");
        if (strcmp(rep, "SERVER_ERROR replica syncing\r\n") == 0) {
            /* a replica before its first copy: it has nothing */
            free(rep);
            rep = strdup("END\r\n");
            len = 5;
        }
        while (len < 5 || strcmp(rep + len - 5, "END\r\n") != 0) {
            char *more = th_recv_until(fd, "END\r\n", NULL);
            cr_assert(more, "a get's reply ends early: %s", rep);
            rep = realloc(rep, strlen(rep) + strlen(more) + 1);
            strcat(rep, more);
            len = strlen(rep);
            free(more);
        }
        struct seen seen[40] = {0};
        char *p = rep;
        while (strncmp(p, "VALUE ", 6) == 0) {
            int key;
            unsigned flags;
            size_t vlen;
            int used = 0;
            cr_assert(sscanf(p, "VALUE pc%d %u %zu\r\n%n", &key, &flags, &vlen,
                             &used) == 3 &&
                          used > 0,
                      "bad reply line: %.80s", p);
            char *v = p + used;
            cr_assert(key >= k0 && key < k0 + 40);
            struct seen *s = &seen[key - k0];
            s->id = flags;
            char *want = malloc(vlen + 1);
            make_value(want, flags, value_len(flags));
            s->bad_value = vlen != value_len(flags) ||
                           memcmp(v, want, vlen) != 0 || flags == 0;
            free(want);
            p = v + vlen + 2;
        }
        cr_assert(strcmp(p, "END\r\n") == 0, "reply ends with %.80s", p);
        for (int k = k0; k < k0 + 40 && k < NKEYS; k++) {
            char w[512];
            enum verdict v = judge(k, seen[k - k0], cut, w, sizeof(w));
            counts[v]++;
            if (v != V_OK && !why[0])
                snprintf(why, whylen, "%s", w);
        }
        free(rep);
    }
    close(fd);
}

/* The kind of a message: what follows the file's name, with every number
 * written N. Returns true the first time a kind is seen. */
static bool
classify(struct kinds *ks, const char *prefix, const char *msg, const char *dir,
         char tier)
{
    char text[200];
    snprintf(text, sizeof(text), "%s", prefix);
    const char *p = strstr(msg, dir);
    if (p) {
        p += strlen(dir);
        const char *colon = strstr(p, ": ");
        p = colon ? colon + 2 : p;
    } else {
        p = msg;
    }
    size_t n = strlen(text);
    for (; *p && n + 2 < sizeof(text); p++) {
        if (*p >= '0' && *p <= '9') {
            if (n == 0 || text[n - 1] != 'N')
                text[n++] = 'N';
        } else {
            text[n++] = *p;
        }
    }
    text[n] = '\0';
    int k = 0;
    while (k < ks->n && strcmp(ks->v[k].text, text) != 0)
        k++;
    bool first = k == ks->n;
    if (first && ks->n < MAX_KINDS)
        snprintf(ks->v[ks->n++].text, sizeof(text), "%s", text);
    if (k < ks->n)
        ks->v[k].tier[tier - 'A']++;
    return first;
}

/* A refusal names a file of the image and an offset. */
static bool
names_file_and_offset(const char *log, const char *dir)
{
    return strstr(log, dir) && strstr(log, "offset");
}

static void
keep_image(struct results *res, const char *root, const struct pc_trace *t,
           uint64_t cut, enum pc_mode mode, uint64_t seed, const char *what)
{
    if (res->kept >= MAX_KEPT)
        return;
    char dir[4096], path[4200], desc[16384];
    snprintf(dir, sizeof(dir), "%s/failed-%d", root, res->kept++);
    mkdir(dir, 0755);
    uint64_t rng = seed;
    pc_image_write(t, cut, mode, &rng, dir, desc, sizeof(desc));
    snprintf(path, sizeof(path), "%s.why", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f,
                "%s\n\nimage: %s\n\nreproduce: %s --data-dir %s "
                "(after copying it: recovery changes it)\n",
                what, desc, mcdbd_bin(), dir);
        fclose(f);
    }
    fprintf(stderr, "kept %s: %s\n", dir, what);
}

static void
check_image(struct results *res, const char *root, const struct pc_trace *t,
            uint64_t cut, enum pc_mode mode, uint64_t seed, int n, bool strict)
{
    char dir[4096], logpath[4200], desc[16384];
    snprintf(dir, sizeof(dir), "%s/image-%d", root, n);
    snprintf(logpath, sizeof(logpath), "%s/image-%d.log", root, n);
    cr_assert(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
    uint64_t rng = seed;
    cr_assert(pc_image_write(t, cut, mode, &rng, dir, desc, sizeof(desc)) == 0,
              "%s", desc);
    struct tally *tl = &res->mode[mode];
    tl->images++;

    char *out = NULL;
    const char *fsck[] = {tt_tool("mcdb-fsck"), "--quiet", dir, NULL};
    int rc = tt_run(&out, fsck);
    /* what it says: its exit status and its first line */
    char said[400], code[32];
    snprintf(said, sizeof(said), "%.*s", out ? (int)strcspn(out, "\n") : 0,
             out ? out : "");
    snprintf(code, sizeof(code), "exit %d%s", rc, said[0] ? ": " : "");
    classify(&res->fsck, code, said, dir, pc_mode_tier(mode));
    free(out);

    pid_t pid;
    int port;
    char *log = NULL, what[4096] = "";
    if (start_on(dir, logpath, &pid, &port, &log) != 0) {
        tl->refused++;
        bool named = names_file_and_offset(log, dir);
        if (!named)
            tl->refused_unnamed++;
        char *nl = strrchr(log, '\n');
        while (nl && nl > log && nl[1] == '\0') {
            *nl = '\0';
            nl = strrchr(log, '\n');
        }
        const char *last = nl ? nl + 1 : log;
        snprintf(what, sizeof(what), "tier %c image refused%s: %s",
                 pc_mode_tier(mode), named ? "" : " WITHOUT file and offset",
                 last);
        bool new_kind =
            classify(&res->refusals, "", last, dir, pc_mode_tier(mode));
        if (pc_mode_tier(mode) == 'C' && named && !strict) {
            /* reported in the summary, not a failure (image.c rule 6) */
            if (new_kind)
                keep_image(res, root, t, cut, mode, seed, what);
        } else {
            if (new_kind)
                keep_image(res, root, t, cut, mode, seed, what);
            if (!res->first_failure[0])
                snprintf(res->first_failure, sizeof(res->first_failure),
                         "%.500s\nimage: %.1500s", what, desc);
            if (pc_mode_tier(mode) == 'C' && named)
                res->strict_fail++;
        }
        free(log);
    } else {
        tl->started++;
        long counts[5] = {0};
        char why[512] = "";
        read_back(port, cut, counts, why, sizeof(why));
        long bad = 0;
        if (replica)
            replica_check_image(dir, port, cut, why, sizeof(why), &bad);
        tl->repl_bad += bad;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        counts[V_LOST] += counts[V_LOST_INFLIGHT];
        tl->lost += counts[V_LOST];
        tl->lost_inflight += counts[V_LOST_INFLIGHT];
        tl->phantom += counts[V_PHANTOM];
        tl->corrupt += counts[V_CORRUPT];
        res->keys_checked += NKEYS;
        if (counts[V_LOST] + counts[V_PHANTOM] + counts[V_CORRUPT] + bad) {
            snprintf(what, sizeof(what),
                     "tier %c image: %ld lost, %ld "
                     "phantom, %ld damaged%s; first: %s",
                     pc_mode_tier(mode), counts[V_LOST], counts[V_PHANTOM],
                     counts[V_CORRUPT], bad ? ", not its primary's log" : "",
                     why);
            keep_image(res, root, t, cut, mode, seed, what);
            if (!res->first_failure[0])
                snprintf(res->first_failure, sizeof(res->first_failure),
                         "%.500s\nimage: %.1500s", what, desc);
        }
    }
    th_rmrf(dir);
    if (!getenv("MCDB_KEEP_TEST_DIRS"))
        unlink(logpath);
}

/* ---- running the traced server ---- */

static char shim_preload[8192];

/* LD_PRELOAD for the shim. Under AddressSanitizer its runtime must come
 * first: the one this test program runs with is preloaded before it. */
static const char *
preload(void)
{
    const char *shim = MCDB_POWERCUT_SHIM;
    char asan[4096] = "";
    FILE *f = fopen("/proc/self/maps", "r");
    char line[8192];
    while (f && fgets(line, sizeof(line), f)) {
        char *p = strchr(line, '/');
        if (p && strstr(p, "/libasan.so")) {
            p[strcspn(p, "\n")] = '\0';
            snprintf(asan, sizeof(asan), "%s", p);
            break;
        }
    }
    if (f)
        fclose(f);
    snprintf(shim_preload, sizeof(shim_preload), "%s%s%s", asan,
             asan[0] ? " " : "", shim);
    return shim_preload;
}

/* Set the environment that a child started now inherits: the shim,
 * watching dir. */
static void
shim_env(const char *dir, const char *trace, const char *seq)
{
    setenv("LD_PRELOAD", preload(), 1);
    setenv("MCDB_POWERCUT_DIR", dir, 1);
    setenv("MCDB_POWERCUT_TRACE", trace, 1);
    setenv("MCDB_POWERCUT_SEQ", seq, 1);
    char asan[1024];
    snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0",
             env_or("ASAN_OPTIONS", ""), getenv("ASAN_OPTIONS") ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
}

static void
shim_env_clear(void)
{
    unsetenv("LD_PRELOAD");
    unsetenv("MCDB_POWERCUT_DIR");
    unsetenv("MCDB_POWERCUT_TRACE");
    unsetenv("MCDB_POWERCUT_SEQ");
}

/* ---- choosing cut points ---- */

/* Take up to `want` of the n points in v (all when they fit, else a
 * sample spread over the whole trace) into out. */
static size_t
sample(const uint64_t *v, size_t n, size_t want, uint64_t *rng, uint64_t *out)
{
    if (want >= n) {
        memcpy(out, v, n * sizeof(*v));
        return n;
    }
    for (size_t i = 0; i < want; i++) {
        double at = ((double)i + (double)pc_rand(rng, 1000) / 1000.0) *
                    (double)n / (double)want;
        out[i] = v[(size_t)at < n ? (size_t)at : n - 1];
    }
    return want;
}

/*
 * About `want` cut points: the two sides of syncs (every one when they fit
 * in four fifths of the budget, else a sample that size), the two sides of
 * name changes (half of what is left: roll-overs, compaction's deletes,
 * hint and META renames), and random points (the rest); always the end of
 * the trace.
 */
static uint64_t *
choose_cuts(const struct pc_trace *t, size_t want, uint64_t *rng, size_t *n)
{
    size_t nsync, nname;
    uint64_t *sync = pc_trace_sync_cuts(t, &nsync);
    uint64_t *name = pc_trace_name_cuts(t, true, &nname);
    uint64_t len = pc_trace_len(t);
    uint64_t *v = malloc((want + nsync + nname + 2) * sizeof(*v));
    size_t k = sample(sync, nsync, want * 4 / 5 + 1, rng, v);
    k += sample(name, nname, want > k ? (want - k) / 2 : 0, rng, v + k);
    while (k < want)
        v[k++] = pc_rand(rng, len + 1);
    v[k++] = len; /* after everything, the clean shutdown included */
    free(sync);
    free(name);
    *n = k;
    return v;
}

static void
report(const struct results *res, const struct pc_trace_stats *st, size_t ncuts,
       long acked_ops, const char *what)
{
    fprintf(stderr,
            "powercut %s: trace of %" PRIu64 " records (%" PRIu64
            " writes, %" PRIu64 " bytes, %" PRIu64 " file syncs, %" PRIu64
            " directory syncs, %" PRIu64 " files created, %" PRIu64
            " renames, %" PRIu64 " unlinks), %ld acknowledged writes; %zu "
            "more cut points\n",
            what, st->records, st->writes, st->write_bytes, st->file_syncs,
            st->dir_syncs, st->creates, st->renames, st->unlinks, acked_ops,
            ncuts);
    long images = 0, repl_bad = 0;
    for (int m = 0; m < PC_NMODES; m++) {
        const struct tally *t = &res->mode[m];
        images += t->images;
        repl_bad += t->repl_bad;
        fprintf(stderr,
                "  %-6s (tier %c): %4ld images, %4ld started, %4ld refused "
                "(%ld without file and offset), %ld lost (%ld with a newer "
                "write in flight), %ld phantom, %ld damaged\n",
                pc_mode_name(m), pc_mode_tier(m), t->images, t->started,
                t->refused, t->refused_unnamed, t->lost, t->lost_inflight,
                t->phantom, t->corrupt);
    }
    if (replica)
        fprintf(stderr,
                "  %ld images whose log is not a prefix of the "
                "primary's or ends before what the replica had "
                "acknowledged\n",
                repl_bad);
    fprintf(stderr,
            "  %ld images (%ld of them just after a name change, "
            "all kept), %ld key reads\n",
            images, res->after_name_changes, res->keys_checked);
    for (int k = 0; k < res->refusals.n; k++) {
        const struct kind *x = &res->refusals.v[k];
        fprintf(stderr, "  mcdbd refused (tier A %ld, B %ld, C %ld): %s\n",
                x->tier[0], x->tier[1], x->tier[2], x->text);
    }
    for (int k = 0; k < res->fsck.n; k++) {
        const struct kind *x = &res->fsck.v[k];
        fprintf(stderr, "  mcdb-fsck (tier A %ld, B %ld, C %ld): %s\n",
                x->tier[0], x->tier[1], x->tier[2], x->text);
    }
}

static void
assert_results(const struct results *res)
{
    const char *first = res->first_failure;
    for (int m = 0; m < PC_NMODES; m++) {
        const struct tally *t = &res->mode[m];
        const char *mode = pc_mode_name(m);
        cr_expect_eq(t->lost, 0,
                     "%s: acknowledged writes lost; first "
                     "failure: %s",
                     mode, first);
        cr_expect_eq(t->repl_bad, 0,
                     "%s: replica logs that are not a prefix "
                     "of the primary's or lack what the replica had "
                     "acknowledged; first failure: %s",
                     mode, first);
        cr_expect_eq(t->phantom + t->corrupt, 0,
                     "%s: values never "
                     "acknowledged or sent; first failure: %s",
                     mode, first);
        cr_expect_eq(t->refused_unnamed, 0,
                     "%s: refusals that name no file "
                     "and offset; first failure: %s",
                     mode, first);
        if (pc_mode_tier(m) != 'C')
            cr_expect_eq(t->refused, 0,
                         "%s: recovery refused images a power "
                         "cut leaves; first failure: %s",
                         mode, first);
    }
    cr_expect_eq(res->strict_fail, 0,
                 "tier C refusals "
                 "(MCDB_POWERCUT_STRICT); first failure: %s",
                 first);
}

/* ---- the tests ---- */

static long
images_wanted(void)
{
#ifdef MCDB_SANITIZED
    long dflt = 120;
#else
    long dflt = 200;
#endif
    long n = atol(env_or("MCDB_POWERCUT_IMAGES", "0"));
    return n > 0 ? n : dflt;
}

static bool
check_trace(const char *root, const char *trace, long images, long acked,
            const char *what)
{
    char err[512];
    struct pc_trace *t = pc_trace_load(trace, err, sizeof(err));
    cr_assert(t, "%s", err);
    /* The shim cannot see stdio's writes. A replica's full copy writes one
     * such file, resync.*\/OLD ("delete" or "keep" the old log): modeled
     * as empty, which reads as "delete", what a new replica writes. */
    char *stdio = pc_trace_stdio_names(t), *save = NULL;
    for (char *w = strtok_r(stdio, " ", &save); w;
         w = strtok_r(NULL, " ", &save))
        cr_assert(replica && strncmp(w, "resync.", 7) == 0 && strlen(w) > 4 &&
                      !strcmp(w + strlen(w) - 4, "/OLD"),
                  "%s: written through stdio, which the shim cannot see", w);
    free(stdio);
    struct pc_trace_stats st;
    pc_trace_stats(t, &st);
    cr_assert(st.file_syncs > 0 && st.creates > 0, "the trace is empty");

    uint64_t rng = (uint64_t)atoll(env_or("MCDB_POWERCUT_SEED", "1")) *
                       0x9E3779B97F4A7C15ULL |
                   1;
    struct results *res = calloc(1, sizeof(*res));
    bool strict = getenv("MCDB_POWERCUT_STRICT") != NULL;
    int n = 0;
    /* Half the budget: right after each name change, everything kept (what
     * a kill -9 there leaves, and a power cut that lost nothing). */
    size_t nname;
    uint64_t *name = pc_trace_name_cuts(t, false, &nname);
    uint64_t *after = malloc((nname + 1) * sizeof(*after));
    size_t nafter = sample(name, nname, (size_t)images / 2, &rng, after);
    for (size_t i = 0; i < nafter; i++) {
        uint64_t seed = rng ^ (uint64_t)(n + 1) * 0xD1B54A32D192ED03ULL;
        check_image(res, root, t, after[i], PC_ALL, seed | 1, n++, strict);
    }
    res->after_name_changes = (long)nafter;
    free(name);
    free(after);
    /* The rest: cut points, each with nothing pending, all of it, and two
     * random modes. */
    size_t ncuts;
    uint64_t *cuts = choose_cuts(t, ((size_t)images - nafter) / IMAGES_PER_CUT,
                                 &rng, &ncuts);
    for (size_t i = 0; i < ncuts; i++) {
        enum pc_mode modes[IMAGES_PER_CUT] = {PC_NONE, PC_ALL};
        for (int j = 2; j < IMAGES_PER_CUT; j++)
            modes[j] = (enum pc_mode)(PC_PREFIX + pc_rand(&rng, 4));
        for (int j = 0; j < IMAGES_PER_CUT; j++) {
            uint64_t seed = rng ^ (uint64_t)(n + 1) * 0xD1B54A32D192ED03ULL;
            check_image(res, root, t, cuts[i], modes[j], seed | 1, n++, strict);
        }
    }
    report(res, &st, ncuts, acked, what);
    assert_results(res);
    bool failed = res->first_failure[0] != 0 || res->kept > 0;
    free(res);
    free(cuts);
    pc_trace_free(t);
    if (failed)
        fprintf(stderr, "kept %s (the trace, and failed-N images)\n", root);
    return failed;
}

/* Requests per connection: `least`, or more for a long run, up to 500 (a
 * trace of about 500 fdatasyncs, whose every side a long run covers). */
static int
ops_for(long images, int least)
{
    long n = images / 8;
    return n < least ? least : n > 500 ? 500 : (int)n;
}

static long
count_acked(void)
{
    long n = 0;
    for (size_t i = 0; i < nops; i++)
        n += ops[i].acked != UINT64_MAX;
    return n;
}

TestSuite(powercut, .timeout = 3600);

Test(powercut,
     acknowledged_writes_survive_a_power_cut_at_any_point_and_recovery_starts)
{
    long images = images_wanted();
    char *root = th_tmpdir();
    char data[4200], trace[4200], seq[4200];
    snprintf(data, sizeof(data), "%s/data", root);
    snprintf(trace, sizeof(trace), "%s/trace", root);
    snprintf(seq, sizeof(seq), "%s/seq", root);
    cr_assert(mkdir(data, 0755) == 0);
    counter = pc_counter_create(seq);
    cr_assert(counter, "%s: %s", seq, strerror(errno));

    struct th_server srv = {0};
    shim_env(data, trace, seq);
    int rc = th_mcdbd_start(&srv, data, single_args);
    shim_env_clear();
    cr_assert(rc == 0, "mcdbd did not start under the shim");
    run_load(srv.port, ops_for(images, 300));
    int st = th_server_stop(&srv, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "mcdbd did not stop cleanly (status %#x)", st);

    index_keys();
    bool failed =
        check_trace(root, trace, images, count_acked(), "single server");
    th_server_cleanup(&srv);
    pc_counter_free(counter);
    if (!failed)
        th_rmrf(root);
    free(root);
}

/* ---- a replica ---- */

struct ack_sample {
    uint64_t when;  /* the replica's counter after the answer arrived */
    uint64_t acked; /* replica0_acked_offset on the primary */
};

struct replica_check {
    uint8_t *log; /* the primary's log, every byte it ever wrote */
    uint64_t log_len;
    struct ack_sample *s;
    size_t n, cap;
    int primary_port;
    atomic_bool stop;
};

static bool
all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void
replica_check_image(const char *dir, int port, uint64_t cut, char *why,
                    size_t whylen, long *bad)
{
    struct replica_check *rc = replica;
    uint64_t need = 0;
    for (size_t i = 0; i < rc->n; i++)
        if (rc->s[i].when <= cut && rc->s[i].acked > need)
            need = rc->s[i].acked;
    long long end = tr_stat_num(port, "log", "log_end");
    if (end < (long long)need) {
        (*bad)++;
        if (!why[0])
            snprintf(why, whylen,
                     "the replica's log ends at %lld, before "
                     "%" PRIu64 ", which it had acknowledged to its "
                     "primary",
                     end, need);
    }
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        const char *name = de->d_name;
        if (strlen(name) != 24 || strcmp(name + 20, ".seg") != 0)
            continue;
        char path[8192];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        size_t len;
        char *buf = tt_slurp(path, &len);
        uint64_t base = strtoull(name, NULL, 10);
        uint64_t at = 0;
        while (buf && at < len && base + at < rc->log_len &&
               (uint8_t)buf[at] == rc->log[base + at])
            at++;
        /* zeros after the log are room the writer gave the last segment
         * ahead of its records (LOG_PAD), not part of the log */
        bool same = buf && (at == len || all_zero(buf + at, len - at));
        if (!same) {
            (*bad)++;
            if (!why[0])
                snprintf(why, whylen,
                         "%s differs from the primary's log at "
                         "offset %" PRIu64 " (its size %zu)",
                         name, base + at, len);
        }
        free(buf);
    }
    if (d)
        closedir(d);
}

/* The primary's whole log from its trace: a segment file's bytes are the
 * log's from the offset its name gives (the name it was created with: a
 * new segment's temporary name, <segment>.tmp, gives the same). */
static void
log_byte(void *arg, const char *name, uint64_t off, const void *data,
         uint64_t len)
{
    struct replica_check *rc = arg;
    if (strspn(name, "0123456789") != 20 ||
        (strcmp(name + 20, ".seg") != 0 && strcmp(name + 20, ".seg.tmp") != 0))
        return;
    uint64_t at = strtoull(name, NULL, 10) + off;
    if (at + len > rc->log_len) {
        rc->log = realloc(rc->log, at + len);
        memset(rc->log + rc->log_len, 0, at + len - rc->log_len);
        rc->log_len = at + len;
    }
    memcpy(rc->log + at, data, len);
}

/* Ask the primary what the replica acknowledged, over and over; each
 * answer is dated by the replica's counter read once it arrived. */
static void *
ack_poller(void *arg)
{
    struct replica_check *rc = arg;
    while (!atomic_load(&rc->stop)) {
        long long acked =
            tr_stat_num(rc->primary_port, "repl", "replica0_acked_offset");
        uint64_t when = pc_counter_now(counter);
        if (acked > 0) {
            if (rc->n == rc->cap) {
                rc->cap = rc->cap ? 2 * rc->cap : 1024;
                rc->s = realloc(rc->s, rc->cap * sizeof(*rc->s));
            }
            rc->s[rc->n++] = (struct ack_sample){when, (uint64_t)acked};
        }
        usleep(2000);
    }
    return NULL;
}

Test(
    powercut,
    a_replica_keeps_through_a_power_cut_every_write_it_acknowledged_and_only_its_primarys_log)
{
    long images = images_wanted() * 3 / 5;
    char *root = th_tmpdir();
    char pdata[4200], ptrace[4200], pseq[4200];
    char rdata[4200], rtrace[4200], rseq[4200];
    snprintf(pdata, sizeof(pdata), "%s/primary", root);
    snprintf(ptrace, sizeof(ptrace), "%s/primary.trace", root);
    snprintf(pseq, sizeof(pseq), "%s/primary.seq", root);
    snprintf(rdata, sizeof(rdata), "%s/replica", root);
    snprintf(rtrace, sizeof(rtrace), "%s/replica.trace", root);
    snprintf(rseq, sizeof(rseq), "%s/replica.seq", root);
    cr_assert(mkdir(pdata, 0755) == 0 && mkdir(rdata, 0755) == 0);
    struct pc_counter *pcounter = pc_counter_create(pseq);
    counter = pc_counter_create(rseq);
    cr_assert(counter && pcounter);

    /* both traced: the primary's trace gives its whole log, compacted
     * segments included */
    struct th_server prim = {0}, repl = {0};
    const char *pargs[16], *rargs[16];
    size_t n = 0;
    for (; server_args[n]; n++)
        pargs[n] = rargs[n] = server_args[n];
    /* a replica's fdatasync may take over a second on a busy disk (CI
     * runs this beside the package build): what is tested is what a cut
     * keeps, not the timeout (tests/repl has that), so it is generous */
    pargs[n] = "--sync-replicas";
    pargs[n + 1] = "1";
    pargs[n + 2] = "--sync-timeout";
    pargs[n + 3] = "60000";
    pargs[n + 4] = NULL;
    shim_env(pdata, ptrace, pseq);
    int rc = th_mcdbd_start(&prim, pdata, pargs);
    shim_env_clear();
    cr_assert(rc == 0, "the primary did not start");
    char of[64];
    snprintf(of, sizeof(of), "127.0.0.1:%d", prim.port);
    rargs[n] = "--replica-of";
    rargs[n + 1] = of;
    rargs[n + 2] = NULL;
    shim_env(rdata, rtrace, rseq);
    rc = th_mcdbd_start(&repl, rdata, rargs);
    shim_env_clear();
    cr_assert(rc == 0, "the replica did not start");
    /* writes wait for the replica: start once it streams */
    bool streaming = false;
    for (int i = 0; i < 1000 && !streaming; i++) {
        char *state = tr_stat(prim.port, "repl", "replica0_state");
        streaming = state && strcmp(state, "streaming") == 0;
        free(state);
        if (!streaming)
            usleep(10000);
    }
    cr_assert(streaming, "the replica did not start streaming");

    struct replica_check *chk = calloc(1, sizeof(*chk));
    chk->primary_port = prim.port;
    pthread_t poller;
    pthread_create(&poller, NULL, ack_poller, chk);
    run_load(prim.port, ops_for(images, 200));
    atomic_store(&chk->stop, true);
    pthread_join(poller, NULL);
    int st = th_server_stop(&repl, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "the replica did not stop cleanly (status %#x)", st);
    st = th_server_stop(&prim, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "the primary did not stop cleanly (status %#x)", st);

    char err[512];
    struct pc_trace *pt = pc_trace_load(ptrace, err, sizeof(err));
    cr_assert(pt, "%s", err);
    pc_trace_each_write(pt, log_byte, chk);
    pc_trace_free(pt);
    cr_assert(chk->log_len > 0 && chk->n > 0);

    index_keys();
    replica = chk;
    avoid_port = prim.port;
    image_args[0] = "--replica-of";
    image_args[1] = of;
    bool failed = check_trace(root, rtrace, images, count_acked(), "replica");
    replica = NULL;
    image_args[0] = NULL;
    th_server_cleanup(&repl);
    th_server_cleanup(&prim);
    pc_counter_free(counter);
    pc_counter_free(pcounter);
    free(chk->log);
    free(chk->s);
    free(chk);
    if (!failed)
        th_rmrf(root);
    free(root);
}
