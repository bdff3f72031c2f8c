/*
 * How a replica resumes (src/repl/fork.c): repl_plan on hand-built
 * histories, each written as (seq, id, start) epochs like the worked
 * example at the top of fork.c. Epoch ids are letters: 'a', 'b', ...
 */
#include "log/logdir.h"
#include "repl/repl_int.h"

#include <criterion/criterion.h>
#include <string.h>

static const uint8_t log_a[16] = "log-a-0123456789";
static const uint8_t log_b[16] = "log-b-0123456789";

#define E(seq, id, start) ((struct logdir_epoch){seq, id, start})
#define EPOCHS(...) ((const struct logdir_epoch[]){__VA_ARGS__})
#define NEPOCHS(...) (sizeof(EPOCHS(__VA_ARGS__)) / sizeof(struct logdir_epoch))

/* One side with a log [start, end) and its history, oldest epoch first. */
#define SIDE(id, start_, end_, ...)                                            \
    ((struct repl_side){.has_log = true,                                       \
                        .log_id = (id),                                        \
                        .start = (start_),                                     \
                        .end = (end_),                                         \
                        .nepochs = NEPOCHS(__VA_ARGS__),                       \
                        .epochs = EPOCHS(__VA_ARGS__)})

/*
 * The plan for this replica and primary. Whatever the plan, the replica
 * takes the primary's log id and history from it and logs its reason;
 * fields left over from before must not leak, so the plan starts dirty.
 */
static struct rs_plan
plan_for(const struct repl_side *replica, const struct repl_side *primary)
{
    struct rs_plan p;
    memset(&p, 0xa5, sizeof(p));
    repl_plan(replica, primary, &p);
    cr_assert(memcmp(p.log_id, primary->log_id, 16) == 0,
              "the plan carries the primary's log id");
    cr_assert_eq(p.nepochs, primary->nepochs);
    cr_assert(memcmp(p.epochs, primary->epochs,
                     primary->nepochs * sizeof(*primary->epochs)) == 0,
              "the plan carries the primary's history");
    cr_assert(memchr(p.why, '\0', sizeof(p.why)) != NULL,
              "the reason is a terminated string");
    cr_assert_gt(strlen(p.why), 10, "the reason says something: \"%s\"", p.why);
    cr_assert(p.mode == RS_CONTINUE || p.mode == RS_FULL, "mode %u", p.mode);
    if (p.mode == RS_CONTINUE) {
        cr_assert_eq(p.from, p.fork, "a replica continues where it forked");
        cr_assert_not(p.keep_old);
    }
    return p;
}

static void
assert_full_copy(const struct rs_plan *p, const struct repl_side *primary,
                 bool keep_old)
{
    cr_assert_eq(p->mode, RS_FULL, "a full copy, not: %s", p->why);
    cr_assert_eq(p->from, primary->start,
                 "the copy starts at the primary's first byte");
    cr_assert_eq(p->copy_end, primary->end,
                 "the copy is whole at the primary's end");
    cr_assert_eq(p->keep_old, keep_old, "keep_old (%s)", p->why);
}

static void
assert_continue(const struct rs_plan *p, uint64_t from)
{
    cr_assert_eq(p->mode, RS_CONTINUE, "a resume, not: %s", p->why);
    cr_assert_eq(p->fork, from, "%s", p->why);
    cr_assert_eq(p->from, from, "%s", p->why);
}

/* ---- nothing in common ---- */

Test(fork, a_replica_without_a_log_copies_everything_the_primary_has)
{
    struct repl_side replica = {.has_log = false, .log_id = log_b};
    struct repl_side primary = SIDE(log_a, 4096, 9000, E(1, 'a', 0));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_full_copy(&p, &primary, false);
}

Test(fork, a_replica_of_another_log_copies_everything_and_keeps_its_old_files)
{
    struct repl_side replica = SIDE(log_b, 0, 500, E(1, 'a', 0));
    struct repl_side primary = SIDE(log_a, 0, 9000, E(1, 'a', 0));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_full_copy(&p, &primary, true);
}

Test(fork, a_replica_of_another_log_with_no_bytes_has_nothing_to_keep)
{
    struct repl_side replica = SIDE(log_b, 0, 0, E(1, 'a', 0));
    struct repl_side primary = SIDE(log_a, 0, 9000, E(1, 'a', 0));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_full_copy(&p, &primary, false);
}

Test(fork, histories_without_a_common_epoch_get_a_full_copy)
{
    struct repl_side replica = SIDE(log_a, 0, 500, E(1, 'a', 0));
    struct repl_side primary =
        SIDE(log_a, 0, 900, E(2, 'b', 100), E(3, 'c', 300));
    struct rs_plan p = plan_for(&replica, &primary);
    cr_assert_eq(p.mode, RS_FULL, "%s", p.why);
    cr_assert_eq(p.from, primary.start);
    cr_assert_eq(p.copy_end, primary.end);
}

/* ---- one history ---- */

Test(fork, a_replica_behind_on_the_same_history_continues_from_its_end)
{
    struct repl_side replica =
        SIDE(log_a, 0, 300, E(1, 'a', 0), E(2, 'b', 200));
    struct repl_side primary =
        SIDE(log_a, 0, 800, E(1, 'a', 0), E(2, 'b', 200));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_continue(&p, 300); /* its end: nothing to cut */
}

Test(fork, a_replica_caught_up_continues_from_its_end)
{
    struct repl_side replica = SIDE(log_a, 100, 800, E(1, 'a', 0));
    struct repl_side primary = SIDE(log_a, 0, 800, E(1, 'a', 0));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_continue(&p, 800);
}

Test(fork, a_replica_ahead_of_its_primary_in_one_epoch_cuts_at_the_primary_end)
{
    /* the primary lost its last bytes (restored, or not durable) */
    struct repl_side replica = SIDE(log_a, 0, 300, E(1, 'a', 0));
    struct repl_side primary = SIDE(log_a, 0, 200, E(1, 'a', 0));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_continue(&p, 200);
}

/* ---- promotions ---- */

Test(fork, an_old_primary_rejoining_its_promoted_replica_cuts_at_the_promotion)
{
    /* the worked example at the top of fork.c */
    struct repl_side old_primary = SIDE(log_a, 0, 250, E(1, 'a', 0));
    struct repl_side promoted =
        SIDE(log_a, 0, 300, E(1, 'a', 0), E(2, 'b', 200));
    struct rs_plan p = plan_for(&old_primary, &promoted);
    assert_continue(&p, 200); /* [200, 250) was its alone */
}

Test(fork, a_replica_that_missed_promotions_in_a_chain_still_resumes)
{
    struct repl_side replica = SIDE(log_a, 0, 150, E(1, 'a', 0));
    struct repl_side primary =
        SIDE(log_a, 0, 500, E(1, 'a', 0), E(2, 'b', 200), E(3, 'c', 400));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_continue(&p, 150);
}

Test(fork, a_replica_of_a_deposed_primary_cuts_where_the_new_one_took_over)
{
    /* it followed b past 300, where c (a sibling promoted) took over */
    struct repl_side replica =
        SIDE(log_a, 0, 350, E(1, 'a', 0), E(2, 'b', 200));
    struct repl_side primary = SIDE(log_a, 0, 600, E(1, 'a', 0), E(2, 'b', 200),
                                    E(3, 'c', 300), E(4, 'd', 400));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_continue(&p, 300);
}

Test(fork, two_replicas_promoted_separately_part_at_the_first_promotion)
{
    /* both became seq 2, with their own ids */
    struct repl_side replica =
        SIDE(log_a, 0, 180, E(1, 'a', 0), E(2, 'x', 100));
    struct repl_side primary =
        SIDE(log_a, 0, 300, E(1, 'a', 0), E(2, 'y', 120));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_continue(&p, 100);
}

/* ---- the fork point out of reach ---- */

Test(fork,
     a_fork_compacted_away_on_the_primary_copies_and_keeps_the_divergent_bytes)
{
    struct repl_side replica = SIDE(log_a, 0, 250, E(1, 'a', 0));
    struct repl_side primary =
        SIDE(log_a, 220, 400, E(1, 'a', 0), E(2, 'b', 200));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_full_copy(&p, &primary, true);
}

Test(fork, a_replica_far_behind_a_compacted_primary_copies_with_nothing_to_keep)
{
    struct repl_side replica = SIDE(log_a, 0, 100, E(1, 'a', 0));
    struct repl_side primary = SIDE(log_a, 1000, 2000, E(1, 'a', 0));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_full_copy(&p, &primary, false);
}

Test(fork, a_replica_whose_end_is_the_primary_start_continues)
{
    /* nothing compacted that it lacks */
    struct repl_side replica = SIDE(log_a, 0, 1000, E(1, 'a', 0));
    struct repl_side primary = SIDE(log_a, 1000, 2000, E(1, 'a', 0));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_continue(&p, 1000);
}

Test(fork, a_fork_before_the_replica_log_start_copies_and_keeps_its_bytes)
{
    /* its log was compacted to [500, 600); the histories part at 300 */
    struct repl_side replica =
        SIDE(log_a, 500, 600, E(1, 'a', 0), E(2, 'x', 300));
    struct repl_side primary =
        SIDE(log_a, 0, 900, E(1, 'a', 0), E(2, 'y', 350));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_full_copy(&p, &primary, true);
}

Test(fork, a_fork_at_the_replica_log_start_copies_and_keeps_its_bytes)
{
    struct repl_side replica =
        SIDE(log_a, 500, 600, E(1, 'a', 0), E(2, 'x', 500));
    struct repl_side primary =
        SIDE(log_a, 0, 900, E(1, 'a', 0), E(2, 'y', 700));
    struct rs_plan p = plan_for(&replica, &primary);
    assert_full_copy(&p, &primary, true);
}

Test(fork, a_resume_never_starts_before_the_replica_log_start)
{
    /* an empty log at 500 whose history parts from the primary's at 300:
     * it cannot cut at 300 (rule 4: a full copy, nothing to keep) */
    struct repl_side replica =
        SIDE(log_a, 500, 500, E(1, 'a', 0), E(2, 'x', 300));
    struct repl_side primary =
        SIDE(log_a, 0, 900, E(1, 'a', 0), E(2, 'y', 350));
    struct rs_plan p = plan_for(&replica, &primary);
    if (p.mode == RS_CONTINUE)
        cr_assert_geq(p.from, replica.start,
                      "resumes at %llu, before its log starts: %s",
                      (unsigned long long)p.from, p.why);
    else
        assert_full_copy(&p, &primary, false);
}
