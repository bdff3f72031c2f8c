/*
 * Listing every key: lru_crawler metadump all|hash|<classes>, as memcached
 * 1.6.18 answers it (one "key=... exp=... la=... cas=... fetch=... cls=...
 * size=..." line per live item, then END), streamed under backpressure.
 * Runs against memcached too: MCDB_TEST_TARGET=memcached.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

TG_SUITE_NEEDS(0)

TG_CONNECTED_SUITE(metadump, 120);

/* The whole reply to a metadump on c, up to and with "END\r\n"
 * (malloc'd, NUL-terminated). */
static char *
dump(int c, const char *cmd, size_t *len_out)
{
    cr_assert_eq(send(c, cmd, strlen(cmd), 0), (ssize_t)strlen(cmd));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t n = recv(c, buf + len, cap - len - 1, 0);
        cr_assert(n > 0, "the dump stopped after %zu bytes", len);
        size_t from = len > 6 ? len - 6 : 0;
        len += (size_t)n;
        buf[len] = '\0';
        if (strncmp(buf, "END\r\n", 5) == 0 || strstr(buf + from, "\nEND\r\n"))
            break;
    }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

/* The line of key (URI-encoded as given) in a dump, or NULL. */
static const char *
line_of(const char *d, const char *key)
{
    char pat[300];
    snprintf(pat, sizeof(pat), "key=%s ", key);
    for (const char *p = d; *p; p = strchr(p, '\n') + 1) {
        if (strncmp(p, pat, strlen(pat)) == 0)
            return p;
        if (!strchr(p, '\n'))
            break;
    }
    return NULL;
}

static size_t
count_lines(const char *d)
{
    size_t n = 0;
    for (const char *p = d; (p = strchr(p, '\n')); p++)
        n++;
    return n - 1; /* END */
}

static unsigned long long
gets_cas(const char *key)
{
    char req[300];
    snprintf(req, sizeof(req), "gets %s\r\n", key);
    cr_assert_eq(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    char *l = tg_recv_line(fd);
    cr_assert(l, "no reply to gets");
    unsigned f, n;
    unsigned long long cas;
    cr_assert_eq(sscanf(l, "VALUE %*s %u %u %llu", &f, &n, &cas), 3, "%s", l);
    free(l);
    free(tg_recv_line(fd)); /* value */
    free(tg_recv_line(fd)); /* END */
    return cas;
}

Test(metadump, lists_exactly_the_live_keys_with_memcacheds_fields)
{
    tg_expect(fd, "set plain 1 0 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "set gone 1 0 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "delete gone\r\n", "DELETED\r\n");
    tg_expect(fd, "set expired 1 -1 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "set timed 1 1000 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "set \xc3\xa9=/+%~_.- 1 0 1\r\nx\r\n", "STORED\r\n");
    unsigned long long cas = gets_cas("plain"); /* fetched from now on */

    char *d = dump(fd, "lru_crawler metadump all\r\n", NULL);
    cr_assert_eq(count_lines(d), 3, "%s", d);
    cr_assert_null(line_of(d, "gone"), "a deleted key is listed:\n%s", d);
    cr_assert_null(line_of(d, "expired"), "an expired key is listed:\n%s", d);
    const char *l = line_of(d, "plain");
    cr_assert(l, "%s", d);
    long long exp;
    unsigned long long la, c;
    char fetch[8];
    unsigned cls, size;
    cr_assert_eq(sscanf(l,
                        "key=plain exp=%lld la=%llu cas=%llu fetch=%7s cls=%u "
                        "size=%u\n",
                        &exp, &la, &c, fetch, &cls, &size),
                 6, "%.200s", l);
    cr_assert_eq(exp, -1);
    cr_assert_eq(c, cas);
    cr_assert_str_eq(fetch, "yes");
    cr_assert_eq(cls, 1);
    cr_assert(size > 0);
    cr_assert(la > 1600000000ull && la <= (unsigned long long)time(NULL));
    l = line_of(d, "timed");
    cr_assert(l, "%s", d);
    cr_assert_eq(
        sscanf(l, "key=timed exp=%lld la=%*u cas=%*u fetch=%7s", &exp, fetch),
        2);
    long long now = (long long)time(NULL);
    cr_assert(exp >= now + 990 && exp <= now + 1001, "exp=%lld now %lld", exp,
              now);
    cr_assert_str_eq(fetch, "no");
    cr_assert(line_of(d, "%C3%A9%3D%2F%2B%25~_.-"),
              "the key is URI-encoded as memcached does:\n%s", d);
    free(d);
}

Test(metadump, hash_and_class_1_list_the_same_keys_other_forms_as_memcached)
{
    tg_expect(fd, "set a 0 0 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "set b 0 0 1\r\nx\r\n", "STORED\r\n");
    char *d = dump(fd, "lru_crawler metadump hash\r\n", NULL);
    cr_assert_eq(count_lines(d), 2, "%s", d);
    free(d);
    d = dump(fd, "lru_crawler metadump 1,2\r\n", NULL);
    cr_assert_eq(count_lines(d), 2, "%s", d);
    free(d);
    tg_expect(fd, "lru_crawler metadump 63\r\n", "END\r\n");
    tg_expect(fd, "lru_crawler metadump 0\r\n",
              "BADCLASS invalid class id\r\n");
    tg_expect(fd, "lru_crawler metadump x\r\n",
              "BADCLASS invalid class id\r\n");
    tg_expect(fd, "lru_crawler metadump\r\n", "ERROR\r\n");
    tg_expect(fd, "lru_crawler metadump all more\r\n", "ERROR\r\n");
    /* 1.6.18 has no mgdump */
    tg_expect(fd, "lru_crawler mgdump all\r\n", "ERROR\r\n");
}

Test(metadump, a_flushed_store_lists_nothing)
{
    tg_expect(fd, "set a 0 0 1\r\nx\r\n", "STORED\r\n");
    tg_expect(fd, "flush_all\r\n", "OK\r\n");
    tg_expect(fd, "lru_crawler metadump all\r\n", "END\r\n");
}

#define MANY 100000

static atomic_bool writing;

static void
expect_version(int c)
{
    cr_assert_eq(send(c, "version\r\n", 9, 0), 9);
    char *v = tg_recv_line(c);
    cr_assert(v && strncmp(v, "VERSION ", 8) == 0, "%s", v ? v : "(none)");
    free(v);
}

static void
load(int c, int from, int to)
{
    char buf[1 << 16];
    size_t n = 0;
    for (int i = from; i < to; i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                              "set key:%07d 0 0 1 noreply\r\nx\r\n", i);
        if (n > sizeof(buf) - 64 || i == to - 1) {
            cr_assert_eq(send(c, buf, n, 0), (ssize_t)n);
            n = 0;
        }
    }
    expect_version(c);
}

/* Every key:NNNNNNN of [0, MANY) appears exactly once in d. */
static void
each_once(const char *d)
{
    unsigned char *seen = calloc(MANY, 1);
    for (const char *p = d; strncmp(p, "END", 3); p = strchr(p, '\n') + 1) {
        /* not sscanf: glibc's measures the whole rest of the dump first,
         * which made this loop quadratic (half a minute for 100k keys) */
        static const char pre[] = "key=key%3A";
        char *e;
        long i = strncmp(p, pre, sizeof(pre) - 1) == 0
                     ? strtol(p + sizeof(pre) - 1, &e, 10)
                     : -1;
        if (i >= 0 && i < MANY && *e == ' ') {
            cr_assert_eq(seen[i], 0, "key:%07d listed twice", (int)i);
            seen[i] = 1;
        }
    }
    for (int i = 0; i < MANY; i++)
        cr_assert_eq(seen[i], 1, "key:%07d not listed", i);
    free(seen);
}

Test(metadump, a_hundred_thousand_keys_stream_to_a_slow_reader_each_once)
{
    load(fd, 0, MANY);
    const char *cmd = "lru_crawler metadump all\r\nversion\r\n";
    cr_assert_eq(send(fd, cmd, strlen(cmd), 0), (ssize_t)strlen(cmd));
    usleep(300 * 1000); /* let the server meet backpressure */
    size_t len;
    char *d = dump(fd, "", &len);
    each_once(d);
    /* the request after the dump is answered after it, in order */
    const char *end = strstr(d, "\nEND\r\n") + 6;
    char *v = NULL;
    if (tg_is_memcached()) { /* its crawler thread takes the socket */
        free(d);
        return;
    }
    if (*end == '\0')
        v = tg_recv_line(fd);
    cr_assert(strncmp(v ? v : end, "VERSION ", 8) == 0, "%s", v ? v : end);
    free(v);
    free(d);
}

static void *
writer(void *arg)
{
    (void)arg;
    int c = tg_connect(srv.port);
    char buf[128];
    for (int i = 0; atomic_load(&writing); i++) {
        int n = snprintf(buf, sizeof(buf),
                         "set key:%07d 0 0 1 noreply\r\ny\r\n"
                         "set new:%d 0 0 1 noreply\r\ny\r\n",
                         i % MANY, i % MANY);
        if (send(c, buf, (size_t)n, 0) != n)
            break;
    }
    close(c);
    return NULL;
}

Test(metadump, writes_during_a_dump_neither_crash_nor_duplicate_keys)
{
    load(fd, 0, MANY);
    atomic_store(&writing, true);
    pthread_t t;
    pthread_create(&t, NULL, writer, NULL);
    usleep(50 * 1000);
    char *d = dump(fd, "lru_crawler metadump all\r\n", NULL);
    /* memcached's crawler may miss an item overwritten meanwhile (its new
     * copy lands where the crawl has been): only mcdbd promises that every
     * key present throughout is listed, exactly once */
    if (!tg_is_memcached())
        each_once(d);
    atomic_store(&writing, false);
    pthread_join(t, NULL);
    free(d);
    expect_version(fd);
}
