/*
 * role: primary or replica, and what each lets through.
 *
 * The role is META's and only the operator changes it: --replica-of at
 * start (store_config.replica_of) turns a store into a replica, --promote
 * or store_promote() turns a replica into the primary of a new epoch.
 * Nothing here ever changes a role by itself.
 *
 *   primary  writes append records of its own; the compactor compacts.
 *   replica  the write gate is STORE_REPLICA: every write is refused
 *            before it touches anything; records enter only through
 *            store_append_raw() (raw.c); the background thread writes
 *            hints and deletes the segments that DROP records name, and
 *            never compacts. Until it holds a log (its first full copy is
 *            installed, resync.c) the read gate is STORE_SYNCING.
 *
 * Gates: a write gate refuses writes before they lock or append anything
 * (write_begin, store_flush); a read gate answers lookups with its code.
 * src/repl sets STORE_NO_REPLICAS (too few replicas for --sync-replicas)
 * and STORE_STALE (a replica whose link is down, with --replica-stale no).
 *
 * --sync-replicas: store_ack_status() also waits for `replicated`, which
 * src/repl moves as the replicas report what they made durable; writes at
 * or below `repl_timed_out` that never got there fail instead.
 */
#include "log/log_int.h"
#include "util/say.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void
store_meta(store_t *s, struct logdir_meta *m)
{
    pthread_mutex_lock(&s->meta_mu);
    *m = s->meta;
    pthread_mutex_unlock(&s->meta_mu);
}

bool
store_is_replica(store_t *s)
{
    return atomic_load(&s->replica);
}

/* Replace META (meta_mu held by the caller). */
static int
meta_save_locked(struct store *s, const struct logdir_meta *m, char *err,
                 size_t errlen)
{
    int rc = logdir_meta_save(s->dir, m, err, errlen);
    if (rc == 0)
        s->meta = *m;
    return rc;
}

int
role_apply_config(struct store *s, char *err, size_t errlen)
{
    struct logdir_meta m = s->meta;
    const char *to = s->cfg.replica_of;
    bool changed = false;
    if (to && (m.role != LOGDIR_REPLICA || strcmp(m.primary, to) != 0)) {
        if (strlen(to) >= sizeof(m.primary)) {
            snprintf(err, errlen, "replica of %s: address too long", to);
            return STORE_BAD_CONFIG;
        }
        if (m.role != LOGDIR_REPLICA)
            say(SAY_INFO, "%s: this data directory becomes a replica of %s",
                s->dir, to);
        m.role = LOGDIR_REPLICA;
        snprintf(m.primary, sizeof(m.primary), "%s", to);
        changed = true;
    }
    pthread_mutex_lock(&s->meta_mu);
    int rc = changed ? meta_save_locked(s, &m, err, errlen) : 0;
    pthread_mutex_unlock(&s->meta_mu);
    if (rc)
        return rc;
    bool replica = s->meta.role == LOGDIR_REPLICA;
    atomic_store(&s->replica, replica);
    atomic_store(&s->write_gate, replica ? STORE_REPLICA : 0);
    atomic_store(&s->read_gate,
                 replica && !role_has_log(s) ? STORE_SYNCING : 0);
    return 0;
}

bool
role_has_log(struct store *s)
{
    pthread_mutex_lock(&s->seg_mu);
    bool has = s->nsegs > 0;
    pthread_mutex_unlock(&s->seg_mu);
    return has && s->meta.has_log_id;
}

void
role_start_live(struct store *s)
{
    s->live = (struct apply){.ix = s->ix,
                             .s = s,
                             .live = true,
                             .nparts = 1,
                             .next_cas = s->next_cas,
                             .flush_before = atomic_load(&s->flush_before_off)};
}

int
store_promote(store_t *s, char *err, size_t errlen)
{
    if (!atomic_load(&s->replica)) {
        say(SAY_INFO, "promote: %s is the primary already", s->dir);
        return 0;
    }
    if (!role_has_log(s)) {
        snprintf(err, errlen,
                 "cannot promote a replica that holds no log "
                 "yet (its first sync is not complete)");
        return STORE_SYNCING;
    }
    uint64_t end = store_log_end(s);
    int rc = log_sync(s, end);
    if (rc) {
        snprintf(err, errlen, "making the log durable: %s", store_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&s->meta_mu);
    struct logdir_meta m = s->meta;
    rc = logdir_meta_promote(&m, end);
    if (rc == 0)
        rc = meta_save_locked(s, &m, err, errlen);
    else
        snprintf(err, errlen, "getrandom: %s", strerror(-rc));
    pthread_mutex_unlock(&s->meta_mu);
    if (rc)
        return rc;
    atomic_store(&s->replica, false);
    rc = log_ensure_active(s);
    if (rc) {
        snprintf(err, errlen, "%s", store_error_text(s));
        return rc;
    }
    atomic_store(&s->read_gate, 0);
    atomic_store(&s->write_gate, 0);
    say(SAY_INFO,
        "promoted to primary: epoch %" PRIu64 " begins at log offset "
        "%" PRIu64,
        m.epochs[m.nepochs - 1].seq, end);
    return 0;
}

int
store_set_history(store_t *s, const struct logdir_meta *p, char *err,
                  size_t errlen)
{
    pthread_mutex_lock(&s->meta_mu);
    struct logdir_meta m = s->meta;
    int rc = 0;
    if (!m.has_log_id || memcmp(m.log_id, p->log_id, 16) != 0) {
        snprintf(err, errlen, "the primary's log is another log");
        rc = STORE_BAD_CONFIG;
    } else if (m.nepochs != p->nepochs ||
               memcmp(m.epochs, p->epochs, p->nepochs * sizeof(*p->epochs)) !=
                   0) {
        m.nepochs = p->nepochs;
        memcpy(m.epochs, p->epochs, p->nepochs * sizeof(*p->epochs));
        rc = meta_save_locked(s, &m, err, errlen);
    }
    pthread_mutex_unlock(&s->meta_mu);
    return rc;
}

void
store_set_read_gate(store_t *s, int code)
{
    pthread_mutex_lock(&s->meta_mu);
    if (code == 0 && !role_has_log(s))
        code = STORE_SYNCING; /* nothing to serve yet */
    atomic_store(&s->read_gate, code);
    pthread_mutex_unlock(&s->meta_mu);
}

void
store_set_write_gate(store_t *s, int code, const char *text)
{
    if (atomic_load(&s->replica))
        return;
    pthread_mutex_lock(&s->meta_mu);
    snprintf(s->gate_text, sizeof(s->gate_text), "%s", text ? text : "");
    pthread_mutex_unlock(&s->meta_mu);
    atomic_store(&s->write_gate, code);
}

const char *
store_gate_text(store_t *s, int code, char *buf, size_t len)
{
    pthread_mutex_lock(&s->meta_mu);
    if (code == atomic_load(&s->write_gate) && s->gate_text[0])
        snprintf(buf, len, "%s", s->gate_text);
    else
        snprintf(buf, len, "%s", store_strerror(code));
    pthread_mutex_unlock(&s->meta_mu);
    return buf;
}

void
store_set_replicated(store_t *s, bool required, uint64_t replicated,
                     uint64_t timed_out)
{
    /* Wake the waiters only when something moved: the caller's own
     * eventfd is one of them. */
    bool moved = atomic_exchange(&s->replicated, replicated) != replicated;
    moved |= atomic_exchange(&s->repl_timed_out, timed_out) != timed_out;
    moved |= atomic_exchange(&s->repl_required, required) != required;
    if (moved)
        log_notify(s, STORE_WAKE_ACKS);
}
