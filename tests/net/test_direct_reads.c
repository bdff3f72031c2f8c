/*
 * --direct-reads: a get whose record is not in the page cache reads it from
 * the disk with O_DIRECT (src/net/out.c, read_direct). Each test writes
 * values, drops the segments' pages from the page cache
 * (POSIX_FADV_DONTNEED: the data is durable, so the pages are clean and
 * go), and reads every value back over the protocol.
 *   ctest --test-dir build -R net/direct_reads --output-on-failure
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers/server.h"
#include "helpers/target.h"

static struct th_server srv;
static char *ramfs;

static void
teardown(void)
{
    th_server_cleanup(&srv);
    if (ramfs) {
        umount2(ramfs, MNT_DETACH);
        th_rmrf(ramfs);
        free(ramfs);
        ramfs = NULL;
    }
}

TestSuite(direct_reads, .fini = teardown, .timeout = 120);

#define NKEYS 300

/* Value i: 3000 to 9000 bytes, so that records start anywhere in a block
 * and many span two or three. */
static size_t
value_of(int i, char *buf)
{
    size_t n = 3000 + (size_t)i * 20;
    for (size_t j = 0; j < n; j++)
        buf[j] = (char)('a' + (i + j) % 26);
    return n;
}

static void
set_all(int fd)
{
    static char val[16384];
    for (int i = 0; i < NKEYS; i++) {
        char req[64];
        size_t n = value_of(i, val);
        snprintf(req, sizeof(req), "set d:%d 0 0 %zu\r\n", i, n);
        cr_assert_eq(th_sends(fd, req), 0);
        cr_assert_eq(th_send(fd, val, n), 0);
        char *r = th_ask(fd, "\r\n", "\r\n");
        cr_assert_str_eq(r, "STORED\r\n", "set d:%d: %s", i, r);
        free(r);
    }
}

/* Drop the page cache's copy of every segment of dir; returns how many. */
static int
evict_segments(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d, "opendir %s", dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 4, ".seg") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        int fd = open(path, O_RDONLY);
        cr_assert_geq(fd, 0, "open %s", path);
        fdatasync(fd);
        cr_assert_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
        close(fd);
        n++;
    }
    closedir(d);
    return n;
}

/* Every value comes back whole, twice (the second time from the value
 * cache or the disk again). */
static void
get_all(int fd)
{
    static char want[16384];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < NKEYS; i++) {
            char req[64], head[64];
            size_t n = value_of(i, want);
            snprintf(req, sizeof(req), "get d:%d\r\n", i);
            char *r = th_ask(fd, req, "END\r\n");
            int hl = snprintf(head, sizeof(head), "VALUE d:%d 0 %zu\r\n", i, n);
            cr_assert(strncmp(r, head, (size_t)hl) == 0, "get d:%d: %.60s", i,
                      r);
            cr_assert(memcmp(r + hl, want, n) == 0, "d:%d: wrong value", i);
            cr_assert_str_eq(r + hl + n, "\r\nEND\r\n", "d:%d: tail", i);
            free(r);
        }
}

/* Whether dir's file system opens files with O_DIRECT (tmpfs does not). */
static int
has_odirect(const char *dir)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/.odirect-probe", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_DIRECT, 0600);
    if (fd >= 0)
        close(fd);
    unlink(path);
    return fd >= 0;
}

Test(direct_reads,
     values_not_in_the_page_cache_are_read_past_it_and_come_back_whole)
{
    const char *extra[] = {"--direct-reads",
                           "yes",
                           "--value-cache",
                           "0",
                           "--segment-size",
                           "256k",
                           "--max-item-size",
                           "64k",
                           NULL};
    cr_assert_eq(th_mcdbd_start(&srv, NULL, extra), 0);
    if (!has_odirect(srv.dir)) {
        cr_skip_test("SKIPPED: %s does not support O_DIRECT", srv.dir);
        return;
    }
    int fd = th_connect(srv.port);
    set_all(fd);
    cr_assert_gt(evict_segments(srv.dir), 1, "expected several segments");
    get_all(fd);
    long long direct = tg_stat(fd, NULL, "value_reads_direct");
    /* every get of the first round missed the page cache; the second
     * round's did too (--value-cache 0, and O_DIRECT leaves no pages) */
    cr_assert_geq(direct, NKEYS, "value_reads_direct %lld", direct);
    close(fd);
}

Test(direct_reads, without_the_option_reads_go_through_the_page_cache)
{
    const char *extra[] = {
        "--value-cache", "0", "--segment-size", "256k", "--max-item-size",
        "64k",           NULL};
    cr_assert_eq(th_mcdbd_start(&srv, NULL, extra), 0);
    int fd = th_connect(srv.port);
    set_all(fd);
    evict_segments(srv.dir);
    get_all(fd);
    char *st = tg_stats(fd, NULL);
    cr_assert_null(strstr(st, "value_reads_direct"),
                   "stats shows value_reads_direct without --direct-reads");
    free(st);
    close(fd);
}

Test(direct_reads, a_file_system_without_o_direct_serves_every_value_anyway)
{
    /* ramfs has no O_DIRECT (tmpfs has it since Linux 6.6) */
    ramfs = th_tmpdir();
    if (mount("ramfs", ramfs, "ramfs", 0, NULL) != 0) {
        th_rmrf(ramfs);
        free(ramfs);
        ramfs = NULL;
        cr_skip_test("SKIPPED: cannot mount a ramfs here (needs root)");
        return;
    }
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/data", ramfs);
    cr_assert_eq(mkdir(dir, 0700), 0);
    if (has_odirect(dir)) {
        cr_skip_test("SKIPPED: this kernel's ramfs opens files with O_DIRECT");
        return;
    }
    const char *extra[] = {"--direct-reads", "yes", "--value-cache", "0", NULL};
    cr_assert_eq(th_mcdbd_start(&srv, dir, extra), 0);
    int fd = th_connect(srv.port);
    set_all(fd);
    get_all(fd);
    cr_assert_eq(tg_stat(fd, NULL, "value_reads_direct"), 0);
    close(fd);
}
