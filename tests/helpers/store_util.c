#include "helpers/store_util.h"
#include "helpers/server.h"
#include "log/hint.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int64_t
fake_now(void *arg)
{
    return *(int64_t *)arg;
}

void
ts_init(struct tstore *t, uint64_t seg_size, int fake_clock)
{
    memset(t, 0, sizeof(*t));
    t->dir = th_tmpdir();
    store_config_default(&t->cfg);
    t->cfg.dir = t->dir;
    if (seg_size)
        t->cfg.segment_size = seg_size;
    if (fake_clock) {
        t->now_ms = 1700000000000LL; /* 2023-11-14 */
        t->cfg.now_ms = fake_now;
        t->cfg.now_arg = &t->now_ms;
    }
}

int
ts_try_open(struct tstore *t, char *err, size_t errlen)
{
    return store_open(&t->cfg, &t->s, err, errlen);
}

void
ts_open(struct tstore *t)
{
    char err[512];
    int rc = ts_try_open(t, err, sizeof(err));
    cr_assert_eq(rc, 0, "store_open(%s): %s (%s)", t->dir, err,
                 store_strerror(rc));
}

void
ts_close(struct tstore *t)
{
    if (t->s)
        store_close(t->s);
    t->s = NULL;
}

void
ts_destroy(struct tstore *t)
{
    ts_close(t);
    th_rmrf(t->dir);
    free(t->dir);
    t->dir = NULL;
}

int
ts_set(struct tstore *t, const char *key, const char *val, uint32_t flags,
       int64_t exptime)
{
    struct store_write w;
    int rc = store_set(t->s,
                       &(struct store_req){.key = key,
                                           .klen = strlen(key),
                                           .mode = STORE_SET,
                                           .val = val,
                                           .vlen = strlen(val),
                                           .flags = flags,
                                           .exptime = exptime},
                       &w);
    return rc ? rc : store_wait(t->s, w.ack);
}

char *
ts_get(struct tstore *t, const char *key, uint32_t *flags, uint64_t *cas)
{
    struct store_item it;
    void *buf;
    int rc = store_get(t->s, key, strlen(key), &it, &buf);
    if (rc == STORE_NOT_FOUND)
        return NULL;
    cr_assert_eq(rc, 0, "store_get(%s): %s", key, store_strerror(rc));
    char *v = malloc(it.vlen + 1);
    memcpy(v, it.value, it.vlen);
    v[it.vlen] = '\0';
    if (flags)
        *flags = it.flags;
    if (cas)
        *cas = it.cas;
    free(buf);
    return v;
}

void
ts_seg_path(const struct tstore *t, uint64_t base, char *out, size_t n)
{
    snprintf(out, n, "%s/%020" PRIu64 ".seg", t->dir, base);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

size_t
ts_segments(const struct tstore *t, uint64_t *bases, size_t max)
{
    DIR *d = opendir(t->dir);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strlen(de->d_name) == 24 && !strcmp(de->d_name + 20, ".seg") &&
            n < max)
            bases[n++] = strtoull(de->d_name, NULL, 10);
    if (d)
        closedir(d);
    qsort(bases, n, sizeof(*bases), cmp_u64);
    return n;
}

void
ts_remove_hints(const struct tstore *t)
{
    uint64_t bases[256];
    size_t n = ts_segments(t, bases, 256);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        hint_path(t->dir, bases[i], path, sizeof(path));
        unlink(path);
    }
}

long long
ts_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}
