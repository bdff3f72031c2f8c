/* META: the log id, the role, the primary and the history, as files. */
#include "helpers/server.h"
#include "log/logdir.h"
#include "log/store.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dir;

static void
setup(void)
{
    dir = th_tmpdir();
}

static void
teardown(void)
{
    th_rmrf(dir);
    free(dir);
}

TestSuite(meta, .init = setup, .fini = teardown);

static void
write_meta(const char *text)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/META", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(meta, a_new_log_saved_and_loaded_keeps_its_id_role_and_first_epoch)
{
    struct logdir_meta m, back;
    char err[256];
    cr_assert_eq(logdir_meta_new(&m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(logdir_meta_save(dir, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(logdir_meta_load(dir, &back, err, sizeof(err)), 0, "%s", err);
    cr_assert(back.has_log_id);
    cr_assert_arr_eq(back.log_id, m.log_id, 16);
    cr_assert_eq(back.role, LOGDIR_PRIMARY);
    cr_assert_eq(back.nepochs, 1);
    cr_assert_eq(back.epochs[0].seq, 1);
    cr_assert_eq(back.epochs[0].start, 0);
    cr_assert_eq(back.epochs[0].id, logdir_first_epoch_id(m.log_id));
}

Test(meta, a_promotion_adds_an_epoch_with_a_new_id_at_the_given_offset)
{
    struct logdir_meta m, back;
    char err[256];
    cr_assert_eq(logdir_meta_new(&m, err, sizeof(err)), 0);
    m.role = LOGDIR_REPLICA;
    snprintf(m.primary, sizeof(m.primary), "127.0.0.1:11211");
    cr_assert_eq(logdir_meta_promote(&m, 4096), 0);
    cr_assert_eq(logdir_meta_save(dir, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(logdir_meta_load(dir, &back, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(back.role, LOGDIR_PRIMARY);
    cr_assert_str_empty(back.primary);
    cr_assert_eq(back.nepochs, 2);
    cr_assert_eq(back.epochs[1].seq, 2);
    cr_assert_eq(back.epochs[1].start, 4096);
    cr_assert_neq(back.epochs[1].id, back.epochs[0].id);
}

Test(meta, a_replica_keeps_its_primary_and_may_have_no_log_id_yet)
{
    struct logdir_meta m = {.role = LOGDIR_REPLICA}, back;
    char err[256];
    snprintf(m.primary, sizeof(m.primary), "[::1]:11311");
    cr_assert_eq(logdir_meta_save(dir, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(logdir_meta_load(dir, &back, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(back.has_log_id);
    cr_assert_eq(back.role, LOGDIR_REPLICA);
    cr_assert_str_eq(back.primary, "[::1]:11311");
    uint8_t id[16];
    cr_assert_eq(logdir_meta_read(dir, id, err, sizeof(err)), STORE_CORRUPT);
    cr_assert(strstr(err, "no log_id"), "%s", err);
}

Test(meta, a_meta_from_before_the_history_reads_as_one_epoch_from_zero)
{
    write_meta("mcdb-meta 1\nlog_id 000102030405060708090a0b0c0d0e0f\n"
               "format 1\nrole primary\nepoch 1\n");
    struct logdir_meta m;
    char err[256];
    cr_assert_eq(logdir_meta_load(dir, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(m.nepochs, 1);
    cr_assert_eq(m.epochs[0].seq, 1);
    cr_assert_eq(m.epochs[0].start, 0);
    cr_assert_eq(m.epochs[0].id, logdir_first_epoch_id(m.log_id));
}

Test(meta, epochs_out_of_order_are_refused_naming_the_line)
{
    write_meta("mcdb-meta 1\nlog_id 000102030405060708090a0b0c0d0e0f\n"
               "format 1\nrole primary\nepoch 1 00000000000000aa 0\n"
               "epoch 2 00000000000000bb 500\nepoch 3 00000000000000cc 100\n");
    struct logdir_meta m;
    char err[256];
    cr_assert_eq(logdir_meta_load(dir, &m, err, sizeof(err)), STORE_CORRUPT);
    cr_assert(strstr(err, "line 7"), "%s", err);
}

Test(meta, a_replica_without_its_primary_is_refused)
{
    write_meta("mcdb-meta 1\nformat 1\nrole replica\n");
    struct logdir_meta m;
    char err[256];
    cr_assert_eq(logdir_meta_load(dir, &m, err, sizeof(err)), STORE_CORRUPT);
    cr_assert(strstr(err, "primary"), "%s", err);
}

Test(meta, the_history_keeps_the_newest_epochs_when_it_is_full)
{
    struct logdir_meta m, back;
    char err[256];
    cr_assert_eq(logdir_meta_new(&m, err, sizeof(err)), 0);
    for (int i = 1; i <= LOGDIR_MAX_EPOCHS + 5; i++)
        cr_assert_eq(logdir_meta_promote(&m, (uint64_t)i * 100), 0);
    cr_assert_eq(m.nepochs, LOGDIR_MAX_EPOCHS);
    cr_assert_eq(m.epochs[m.nepochs - 1].seq, LOGDIR_MAX_EPOCHS + 6);
    cr_assert_eq(logdir_meta_save(dir, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(logdir_meta_load(dir, &back, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(back.nepochs, LOGDIR_MAX_EPOCHS);
    cr_assert_eq(back.epochs[0].start, m.epochs[0].start);
}
