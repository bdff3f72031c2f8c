/* Many threads reading and writing the same keys: every read returns a
 * whole value that some write stored for that key, never a torn or foreign
 * one, while the writer thread swaps buffers and segments roll. */
#include "helpers/store_util.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS 64
#define WRITERS 4
#define READERS 4
#define WRITES_EACH 3000

static struct tstore t;
static atomic_int writers_left;
static atomic_int bad_reads;

static void
teardown(void)
{
    ts_destroy(&t);
}

/* "key|writer|seq|padding": a value names its key, so a read can tell a
 * value that belongs to another key. */
static int
make_value(char *buf, int key, int writer, int seq)
{
    int n = sprintf(buf, "key%d|%d|%d|", key, writer, seq);
    int pad = (seq * 7 + writer) % 200;
    memset(buf + n, 'a' + key % 26, (size_t)pad);
    return n + pad;
}

static void *
writer(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned seed = (unsigned)id;
    char key[16], val[300];
    for (int i = 0; i < WRITES_EACH; i++) {
        int k = rand_r(&seed) % KEYS;
        int klen = sprintf(key, "key%d", k);
        int vlen = make_value(val, k, id, i);
        struct store_write w;
        int rc =
            (i % 10 == 9)
                ? store_delete(
                      t.s,
                      &(struct store_del){.key = key, .klen = (size_t)klen}, &w)
                : store_set(t.s,
                            &(struct store_req){.key = key,
                                                .klen = (size_t)klen,
                                                .mode = STORE_SET,
                                                .val = val,
                                                .vlen = (size_t)vlen,
                                                .flags = (uint32_t)k},
                            &w);
        if (rc && rc != STORE_NOT_FOUND)
            return (void *)1;
        if (i % 16 == 0 && rc == 0 && store_wait(t.s, w.ack))
            return (void *)1;
    }
    atomic_fetch_sub(&writers_left, 1);
    return NULL;
}

static void *
reader(void *arg)
{
    unsigned seed = (unsigned)(intptr_t)arg * 7919;
    char key[16], prefix[16];
    long reads = 0;
    while (atomic_load(&writers_left) > 0 || reads < 1000) {
        int k = rand_r(&seed) % KEYS;
        int klen = sprintf(key, "key%d", k);
        struct store_item it;
        void *buf;
        int rc = store_get(t.s, key, (size_t)klen, &it, &buf);
        reads++;
        if (rc == STORE_NOT_FOUND)
            continue;
        if (rc) {
            atomic_fetch_add(&bad_reads, 1);
            continue;
        }
        int plen = sprintf(prefix, "key%d|", k);
        if (it.vlen < (uint32_t)plen ||
            memcmp(it.value, prefix, (size_t)plen) || it.flags != (uint32_t)k)
            atomic_fetch_add(&bad_reads, 1);
        free(buf);
    }
    return NULL;
}

Test(concurrency, readers_see_whole_values_of_their_own_key_while_writers_race,
     .fini = teardown)
{
    ts_init(&t, 128 << 10, 0);
    t.cfg.fsync = STORE_FSYNC_NEVER; /* more interleavings per second */
    ts_open(&t);
    atomic_init(&writers_left, WRITERS);
    atomic_init(&bad_reads, 0);
    pthread_t w[WRITERS], r[READERS];
    for (int i = 0; i < WRITERS; i++)
        pthread_create(&w[i], NULL, writer, (void *)(intptr_t)i);
    for (int i = 0; i < READERS; i++)
        pthread_create(&r[i], NULL, reader, (void *)(intptr_t)(i + 1));
    for (int i = 0; i < WRITERS; i++) {
        void *res;
        pthread_join(w[i], &res);
        cr_assert_null(res, "writer %d failed", i);
    }
    for (int i = 0; i < READERS; i++)
        pthread_join(r[i], NULL);
    cr_assert_eq(atomic_load(&bad_reads), 0, "%d bad reads",
                 atomic_load(&bad_reads));
    /* the final state survives a reopen unchanged */
    char *before[KEYS];
    for (int k = 0; k < KEYS; k++) {
        char key[16];
        sprintf(key, "key%d", k);
        before[k] = ts_get(&t, key, NULL, NULL);
    }
    struct store_stats st;
    store_stats(t.s, &st);
    cr_assert_gt(st.segments, 2, "segments did not roll during the test");
    ts_close(&t);
    ts_open(&t);
    for (int k = 0; k < KEYS; k++) {
        char key[16];
        sprintf(key, "key%d", k);
        char *after = ts_get(&t, key, NULL, NULL);
        if (!before[k])
            cr_assert_null(after, "%s came back", key);
        else
            cr_assert_str_eq(after, before[k], "%s changed on reopen", key);
        free(before[k]);
        free(after);
    }
}
