/* mcdbd compacts its log while clients overwrite: disk use follows the
 * live data, and `stats log` shows the compactor's work. */
#include "helpers/server.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long long
stat_value(const char *stats, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "STAT %s ", name);
    const char *p = strstr(stats, pat);
    cr_assert_not_null(p, "no %s in stats", name);
    return strtoull(p + strlen(pat), NULL, 10);
}

Test(compaction, disk_use_settles_near_the_live_data_under_overwrites)
{
    struct th_server srv = {0};
    const char *args[] = {"--segment-size", "64k", "-I", "16k",
                          "--compact-rate", "0",   NULL};
    cr_assert_eq(th_mcdbd_start(&srv, NULL, args), 0);
    int fd = th_connect(srv.port);
    cr_assert_geq(fd, 0);
    char val[1001], req[1200];
    memset(val, 'v', 1000);
    val[1000] = '\0';
    for (int round = 0; round < 30; round++) {
        /* 100 keys of 1 KB, rewritten every round: ~100 KB live */
        for (int k = 0; k < 100; k++) {
            snprintf(req, sizeof(req), "set key%d 0 0 1000 noreply\r\n%s\r\n",
                     k, val);
            cr_assert_eq(th_sends(fd, req), 0);
        }
        char *r = th_ask(fd, "version\r\n", "\r\n");
        cr_assert_not_null(r);
        free(r);
    }
    unsigned long long live = 0, log = 0, runs = 0;
    for (int i = 0; i < 100; i++) {
        char *st = th_ask(fd, "stats log\r\n", "END\r\n");
        cr_assert_not_null(st);
        live = stat_value(st, "live_bytes");
        log = stat_value(st, "log_bytes");
        runs = stat_value(st, "compact_runs");
        cr_assert_eq(stat_value(st, "compact_bytes_reclaimed") > 0, runs > 0);
        free(st);
        if (log <= live * 5 / 2)
            break;
        usleep(100000);
    }
    cr_log_info("live %llu, log %llu, compactions %llu", live, log, runs);
    cr_assert_gt(runs, 0, "the compactor never ran");
    cr_assert_leq(log, live * 5 / 2, "log %llu bytes for %llu live", log, live);
    /* every key still reads back whole */
    for (int k = 0; k < 100; k++) {
        snprintf(req, sizeof(req), "get key%d\r\n", k);
        char *r = th_ask(fd, req, "END\r\n");
        cr_assert_not_null(r);
        cr_assert(strstr(r, "VALUE") && strlen(r) > 1000, "key%d: %.60s", k, r);
        free(r);
    }
    close(fd);
    th_server_cleanup(&srv);
}

Test(compaction, compaction_settings_are_shown_and_checked)
{
    struct th_server srv = {0};
    const char *args[] = {"--compact-garbage", "0.3", NULL};
    cr_assert_eq(th_mcdbd_start(&srv, NULL, args), 0);
    int fd = th_connect(srv.port);
    char *st = th_ask(fd, "stats settings\r\n", "END\r\n");
    cr_assert(strstr(st, "STAT compact_garbage 0.3\r\n"), "%s", st);
    cr_assert(strstr(st, "STAT compact_rate "), "%s", st);
    free(st);
    close(fd);
    th_server_cleanup(&srv);
}
