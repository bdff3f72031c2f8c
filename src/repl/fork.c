/*
 * fork: where a replica's log stops agreeing with its primary's, and how
 * the replica resumes.
 *
 * Two copies of one log (same log id) hold the same bytes up to the point
 * where their histories part. A history is a list of epochs (META, dir.c):
 * each begins at an offset, and an epoch id names one run of writes made by
 * one primary. Worked example:
 *
 *   old primary P  epochs  (1, a, 0)                     log end 250
 *   replica R      epochs  (1, a, 0)                     log end 200
 *   R is promoted at 200: (1, a, 0) (2, b, 200)
 *   P comes back as a replica of R. The newest epoch of P that R also has
 *   is a. In P's history a runs to P's end, 250; in R's it runs to 200,
 *   where b begins. They agree up to min(250, 200) = 200: the fork point.
 *   P's bytes [200, 250) were written by P alone: they are cut and moved
 *   aside, and P resumes from 200.
 *
 * The rules:
 *   1. Different log ids, or a replica without a log: nothing in common;
 *      a full copy (the replica's old log, if any, is kept aside).
 *   2. Otherwise find the newest epoch of the replica that the primary's
 *      history has too. Each side's copy of it ends where that side's next
 *      epoch begins, or at that side's log end. The fork point is the
 *      smaller of the two ends (never past the replica's end).
 *   3. Bytes of the replica at or after the fork point are divergent.
 *   4. If the fork point is before the replica's log start, or at it with
 *      bytes after it (nothing left in common), or the primary no longer
 *      has it (compacted away),
 *      the replica gets a full copy, keeping its old files aside when some
 *      of them are divergent. Otherwise it cuts its log at the fork point
 *      (when it is longer) and continues from there: the usual case, a
 *      partial resume, whatever the gap.
 * Promotions in a chain work the same way: a replica that missed an epoch
 * still shares the one before it.
 */
#include "repl/repl_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Where epoch i of this side's history ends. */
static uint64_t
epoch_end(const struct repl_side *s, size_t i)
{
    return i + 1 < s->nepochs ? s->epochs[i + 1].start : s->end;
}

static void
plan_full(struct rs_plan *p, const struct repl_side *replica,
          const struct repl_side *primary, uint64_t fork, const char *why)
{
    p->mode = RS_FULL;
    p->fork = fork;
    p->from = primary->start;
    p->copy_end = primary->end;
    p->keep_old = replica->has_log && fork < replica->end &&
                  replica->end > replica->start;
    snprintf(p->why, sizeof(p->why), "%s", why);
}

void
repl_plan(const struct repl_side *replica, const struct repl_side *primary,
          struct rs_plan *p)
{
    memcpy(p->log_id, primary->log_id, 16);
    p->nepochs = primary->nepochs;
    memcpy(p->epochs, primary->epochs,
           primary->nepochs * sizeof(*primary->epochs));
    if (!replica->has_log) {
        plan_full(p, replica, primary, 0, "the replica holds no log yet");
        return;
    }
    if (memcmp(replica->log_id, primary->log_id, 16) != 0) {
        plan_full(p, replica, primary, 0,
                  "the replica holds another log (a different log id)");
        return;
    }
    /* rule 2 */
    size_t ri = replica->nepochs, pj = 0;
    while (ri-- > 0) {
        for (pj = 0; pj < primary->nepochs; pj++)
            if (primary->epochs[pj].id == replica->epochs[ri].id)
                break;
        if (pj < primary->nepochs)
            break;
    }
    if (ri == (size_t)-1) {
        plan_full(p, replica, primary, 0,
                  "the histories have no epoch in common");
        return;
    }
    uint64_t fork = epoch_end(replica, ri);
    if (epoch_end(primary, pj) < fork)
        fork = epoch_end(primary, pj);
    if (replica->end < fork)
        fork = replica->end;
    /* rule 4 */
    if (fork < replica->start ||
        (fork == replica->start && replica->end > replica->start)) {
        plan_full(p, replica, primary, fork,
                  "the logs part before the replica's first byte");
        return;
    }
    if (fork < primary->start) {
        char why[160];
        snprintf(why, sizeof(why),
                 "the primary no longer has offset %" PRIu64
                 " (its log starts at %" PRIu64 ": compacted)",
                 fork, primary->start);
        plan_full(p, replica, primary, fork, why);
        return;
    }
    p->mode = RS_CONTINUE;
    p->fork = fork;
    p->from = fork;
    p->copy_end = 0;
    p->keep_old = false;
    if (fork < replica->end)
        snprintf(p->why, sizeof(p->why),
                 "the histories part at offset %" PRIu64
                 "; the replica's %" PRIu64 " bytes after it move aside",
                 fork, replica->end - fork);
    else
        snprintf(p->why, sizeof(p->why), "resuming at offset %" PRIu64, fork);
}
