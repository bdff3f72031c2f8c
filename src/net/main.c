/*
 * mcdbd: the mcdb server.
 *   mcdbd --data-dir ./data -p 11211 -l 127.0.0.1 -v
 *
 * Exit status: 0 after SIGTERM/SIGINT (every acknowledged write is on disk
 * and the data directory is closed), 1 when the server cannot start (the
 * data directory is in use, corrupt, or an address cannot be bound), 2 for
 * a bad command line.
 *
 * Under systemd (Type=notify, packaging/mcdb.service) it tells the service
 * manager through sd_notify(3) what it is doing: STATUS= while it recovers
 * the log, READY=1 once recovery is done and every worker accepts on every
 * --listen address (so "systemctl start" returns when clients can connect),
 * STOPPING=1 when a signal starts the graceful stop. Without NOTIFY_SOCKET
 * in the environment these calls do nothing.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "log/store.h"
#include "net/net.h"
#include "repl/repl.h"
#include "util/say.h"

static int
open_store(const struct net_config *cfg, store_t **s)
{
    struct store_config sc;
    char err[512] = "";
    store_config_default(&sc);
    sc.dir = cfg->data_dir;
    sc.segment_size = cfg->segment_size;
    sc.fsync = cfg->fsync;
    sc.max_item_size = (uint32_t)cfg->max_item_size;
    sc.compact_garbage = cfg->compact_garbage;
    sc.compact_rate = cfg->compact_rate;
    sc.preallocate = cfg->preallocate;
    sc.direct_reads = cfg->direct_reads;
    sc.replica_of = cfg->replica_of[0] ? cfg->replica_of : NULL;
    sc.promote = cfg->promote;
    int rc = store_open(&sc, s, err, sizeof(err));
    if (rc != 0) {
        say(SAY_ERROR, "%s", err[0] ? err : store_strerror(rc));
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct net_config cfg;
    int rc = net_config_parse(&cfg, argc, argv);
    if (rc != NET_CONFIG_OK) {
        net_config_free(&cfg);
        return rc == NET_CONFIG_EXIT ? 0 : 2;
    }
    say_set_level(cfg.verbose >= 2 ? SAY_DEBUG
                  : cfg.verbose    ? SAY_VERBOSE
                                   : SAY_INFO);

    /* Every thread inherits this mask; only sigwait() below sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    if (net_check(&cfg, err, sizeof(err)) != 0) {
        say(SAY_ERROR, "%s", err);
        net_config_free(&cfg);
        return 1;
    }
    store_t *store;
    sd_notifyf(0, "STATUS=recovering the log in %s", cfg.data_dir);
    if (open_store(&cfg, &store) != 0) {
        net_config_free(&cfg);
        return 1;
    }
    sd_notify(0, "STATUS=log recovered; opening the listening sockets");
    struct repl_config rc_cfg = {
        .sync_replicas = cfg.sync_replicas,
        .sync_timeout_ms = cfg.sync_timeout,
        .secret_file = cfg.repl_secret_file,
        .serve_stale = cfg.replica_serve_stale,
        .backlog_ttl_s = cfg.repl_backlog_ttl,
        .client_port = cfg.port,
    };
    repl_t *repl;
    net_t *net;
    if (repl_start(&rc_cfg, store, &repl, err, sizeof(err)) != 0) {
        say(SAY_ERROR, "%s", err);
        store_close(store);
        net_config_free(&cfg);
        return 1;
    }
    if (net_start(&cfg, store, repl, &net, err, sizeof(err)) != 0) {
        say(SAY_ERROR, "%s", err);
        repl_stop(repl);
        store_close(store);
        net_config_free(&cfg);
        return 1;
    }
    const char *fsync = cfg.fsync == STORE_FSYNC_ALWAYS     ? "always"
                        : cfg.fsync == STORE_FSYNC_EVERYSEC ? "everysec"
                                                            : "never";
    say(SAY_INFO, "mcdbd %s ready: data in %s, fsync %s", MCDB_VERSION,
        cfg.data_dir, fsync);
    sd_notifyf(0, "READY=1\nSTATUS=serving %s port %u, data in %s, fsync %s",
               cfg.listen, cfg.port, cfg.data_dir, fsync);

    int sig = 0;
    sigwait(&stop, &sig);
    say(SAY_INFO, "%s: finishing requests in flight", strsignal(sig));
    sd_notify(0, "STOPPING=1\nSTATUS=finishing requests in flight");
    net_stop(net);
    rc = net_wait(net);
    repl_stop(repl);
    store_close(store);
    say(SAY_INFO, "stopped");
    net_config_free(&cfg);
    return rc == 0 ? 0 : 1;
}
