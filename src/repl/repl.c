/*
 * repl: the module's face (repl.h). A server is either a primary (its
 * senders and the --sync-replicas watcher, primary.c) or a replica (its
 * link, replica.c); which one is the store's role, and only the operator
 * changes it: --replica-of and --promote at start, "promote" at run time.
 */
#include "repl/repl_int.h"
#include "util/say.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void
repl_free(struct repl *r)
{
    free(r->replica_of);
    free(r->secret_file);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int
repl_start(const struct repl_config *cfg, store_t *store, repl_t **out,
           char *err, size_t errlen)
{
    struct repl *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->cfg = *cfg;
    r->store = store;
    pthread_mutex_init(&r->mu, NULL);
    struct logdir_meta m;
    store_meta(store, &m);
    r->replica_of = strdup(m.primary);
    r->secret_file = strdup(cfg->secret_file ? cfg->secret_file : "");
    r->cfg.replica_of = r->replica_of;
    r->cfg.secret_file = r->secret_file;
    int rc = 0;
    if (r->secret_file[0])
        rc = repl_key_load(&r->key, r->secret_file, err, errlen);
    if (rc == 0)
        rc = store_is_replica(store) ? replica_start(r, err, errlen)
                                     : primary_start(r, err, errlen);
    if (rc) {
        repl_free(r);
        return -1;
    }
    if (store_is_replica(store))
        say(SAY_INFO, "replica of %s%s", r->replica_of,
            r->key.set ? " (with a shared secret)" : "");
    *out = r;
    return 0;
}

void
repl_stop(repl_t *r)
{
    pthread_mutex_lock(&r->mu);
    if (r->replica)
        replica_stop(r->replica);
    if (r->primary)
        primary_stop(r->primary);
    r->replica = NULL;
    r->primary = NULL;
    pthread_mutex_unlock(&r->mu);
    repl_free(r);
}

void
repl_adopt(repl_t *r, int fd, const void *bytes, size_t n)
{
    pthread_mutex_lock(&r->mu);
    if (r->primary) {
        primary_adopt(r->primary, fd, bytes, n);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    pthread_mutex_unlock(&r->mu);
    char msg[400];
    int k = snprintf(msg, sizeof(msg),
                     "this server is a replica of %s: replicate from its "
                     "primary",
                     r->replica_of);
    rs_send(fd, RS_ERROR, 0, msg, (uint32_t)k);
    shutdown(fd, SHUT_RDWR);
    close(fd);
}

int
repl_promote(repl_t *r, char *err, size_t errlen)
{
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    if (!r->replica) {
        snprintf(err, errlen, "this server is the primary already");
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    replica_stop(r->replica);
    r->replica = NULL;
    rc = store_promote(r->store, err, errlen);
    if (rc) {
        /* still a replica: follow the primary again */
        char e2[256];
        if (replica_start(r, e2, sizeof(e2)) != 0)
            say(SAY_ERROR, "promote failed and the link did not restart: %s",
                e2);
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    rc = primary_start(r, err, errlen);
    pthread_mutex_unlock(&r->mu);
    return rc ? -1 : 0;
}

void
repl_stat_u64(void (*fn)(void *, const char *, const char *), void *arg,
              const char *name, uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    fn(arg, name, buf);
}

static void
hex(char *out, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

void
repl_stats(repl_t *r,
           void (*fn)(void *arg, const char *name, const char *value),
           void *arg)
{
    struct logdir_meta m;
    store_meta(r->store, &m);
    char buf[64];
    fn(arg, "role", m.role == LOGDIR_REPLICA ? "replica" : "primary");
    if (m.has_log_id) {
        hex(buf, m.log_id, 16);
        fn(arg, "log_id", buf);
    } else {
        fn(arg, "log_id", "none");
    }
    if (m.nepochs) {
        const struct logdir_epoch *e = &m.epochs[m.nepochs - 1];
        repl_stat_u64(fn, arg, "epoch", e->seq);
        snprintf(buf, sizeof(buf), "%016" PRIx64, e->id);
        fn(arg, "epoch_id", buf);
        repl_stat_u64(fn, arg, "epoch_start_offset", e->start);
    }
    repl_stat_u64(fn, arg, "log_start", store_log_start(r->store));
    repl_stat_u64(fn, arg, "durable_offset", store_durable(r->store));
    fn(arg, "secret", r->key.set ? "yes" : "no");
    pthread_mutex_lock(&r->mu);
    if (r->replica)
        replica_stats(r->replica, fn, arg);
    if (r->primary)
        primary_stats(r->primary, fn, arg);
    pthread_mutex_unlock(&r->mu);
}

void
repl_stats_reset(repl_t *r)
{
    pthread_mutex_lock(&r->mu);
    if (r->primary)
        primary_stats_reset(r->primary);
    pthread_mutex_unlock(&r->mu);
}
