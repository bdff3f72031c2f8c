/*
 * Replication between two hosts that are not loopback to each other: two
 * network namespaces that this test creates, joined by a veth pair
 * (10.231.<n>.1 and .2). A primary without --repl-secret-file refuses a
 * replica there; with the secret on both ends it replicates. All traffic
 * stays inside the two namespaces. Needs root and iproute2; skips loudly
 * otherwise.
 */
#include "helpers/server.h"
#include "helpers/tool.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char nsa[32], nsb[32], net[16];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
netns_down(void)
{
    sh("ip netns del %s 2>/dev/null", nsa);
    sh("ip netns del %s 2>/dev/null", nsb);
}

/* The whole suite skips (exit 77, ctest's SKIP) where namespaces cannot
 * be made. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    char probe[32];
    snprintf(probe, sizeof(probe), "mcdb-probe-%d", (int)getpid());
    if (geteuid() != 0 || !th_installed("ip") || !MCDBD_PATH[0] ||
        sh("ip netns add %s 2>/dev/null && ip netns del %s", probe, probe)) {
        fprintf(stderr, "SKIP: replication beyond loopback is tested in "
                        "network namespaces, which need root, iproute2 (ip) "
                        "and a built mcdbd\n");
        exit(77);
    }
}

/* Each test gets its own two namespaces (Criterion runs every test in a
 * process of its own). */
static void
setup(void)
{
    if (geteuid() != 0 || !th_installed("ip") || !MCDBD_PATH[0])
        cr_skip_test("network namespaces need root, iproute2 (ip) and a "
                     "built mcdbd");
    int n = (int)(getpid() % 200) + 20;
    snprintf(nsa, sizeof(nsa), "mcdb-a-%d", (int)getpid());
    snprintf(nsb, sizeof(nsb), "mcdb-b-%d", (int)getpid());
    snprintf(net, sizeof(net), "10.231.%d", n);
    if (sh("ip netns add %s && ip netns add %s && "
           "ip link add va%d netns %s type veth peer name vb%d netns %s && "
           "ip -n %s addr add %s.1/24 dev va%d && "
           "ip -n %s addr add %s.2/24 dev vb%d && "
           "ip -n %s link set va%d up && ip -n %s link set vb%d up && "
           "ip -n %s link set lo up && ip -n %s link set lo up",
           nsa, nsb, n, nsa, n, nsb, nsa, net, n, nsb, net, n, nsa, n, nsb, n,
           nsa, nsb) != 0) {
        netns_down();
        cr_skip_test("cannot create network namespaces here");
    }
}

TestSuite(netns, .init = setup, .fini = netns_down, .timeout = 60);

/* mcdbd inside namespace ns, its log in log; returns its pid. */
static pid_t
start_in(const char *ns, const char *dir, const char *log,
         const char *const *extra)
{
    pid_t pid = fork();
    if (pid == 0) {
        const char *argv[32] = {"ip",       "netns",      "exec",   ns,
                                MCDBD_PATH, "--data-dir", dir,      "-p",
                                "11211",    "-l",         "0.0.0.0"};
        size_t k = 11;
        for (size_t i = 0; extra && extra[i] && k < 31; i++)
            argv[k++] = extra[i];
        argv[k] = NULL;
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execvp("ip", (char **)argv);
        _exit(127);
    }
    return pid;
}

/* Wait up to ms for text to appear in file. */
static bool
log_says(const char *path, const char *text, int ms)
{
    for (int i = 0; i < ms / 50; i++) {
        size_t len;
        char *s = tt_slurp(path, &len);
        bool found = s && strstr(s, text);
        free(s);
        if (found)
            return true;
        usleep(50 * 1000);
    }
    return false;
}

static void
stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static char *
secret(const char *dir)
{
    char *path;
    cr_assert_geq(asprintf(&path, "%s/secret", dir), 0);
    FILE *f = fopen(path, "w");
    fputs("a secret the two hosts share\n", f);
    fclose(f);
    chmod(path, 0600);
    return path;
}

Test(netns, a_replica_beyond_loopback_is_refused_without_a_shared_secret)
{
    char *tmp = th_tmpdir(), pd[4200], rd[4200], pl[4200], rl[4200], of[64];
    snprintf(pd, sizeof(pd), "%s/p", tmp);
    snprintf(rd, sizeof(rd), "%s/r", tmp);
    snprintf(pl, sizeof(pl), "%s/p.log", tmp);
    snprintf(rl, sizeof(rl), "%s/r.log", tmp);
    snprintf(of, sizeof(of), "%s.1:11211", net);
    pid_t p = start_in(nsa, pd, pl, NULL);
    cr_assert(log_says(pl, "ready", 10000), "the primary did not start");
    const char *rargs[] = {"--replica-of", of, NULL};
    pid_t r = start_in(nsb, rd, rl, rargs);
    cr_assert(log_says(pl, "not on loopback, and no --repl-secret-file", 10000),
              "the primary did not refuse the replica");
    cr_assert(
        log_says(rl, "beyond loopback only with --repl-secret-file", 10000),
        "the replica did not say why it was refused");
    stop(r);
    stop(p);
    th_rmrf(tmp);
    free(tmp);
}

Test(netns, a_replica_beyond_loopback_with_the_shared_secret_replicates)
{
    char *tmp = th_tmpdir(), pd[4200], rd[4200], pl[4200], rl[4200], of[64];
    char *key = secret(tmp);
    snprintf(pd, sizeof(pd), "%s/p", tmp);
    snprintf(rd, sizeof(rd), "%s/r", tmp);
    snprintf(pl, sizeof(pl), "%s/p.log", tmp);
    snprintf(rl, sizeof(rl), "%s/r.log", tmp);
    snprintf(of, sizeof(of), "%s.1:11211", net);
    const char *pargs[] = {"--repl-secret-file", key, NULL};
    pid_t p = start_in(nsa, pd, pl, pargs);
    cr_assert(log_says(pl, "ready", 10000), "the primary did not start");
    const char *rargs[] = {"--replica-of", of, "--repl-secret-file", key, NULL};
    pid_t r = start_in(nsb, rd, rl, rargs);
    cr_assert(log_says(rl, "installed a full copy", 10000),
              "the replica did not get its copy");
    char addr[64];
    snprintf(addr, sizeof(addr), "replica %s.2:11211: full copy", net);
    cr_assert(log_says(pl, addr, 1000), "the primary names it otherwise");
    stop(r);
    stop(p);
    th_rmrf(tmp);
    free(tmp);
    free(key);
}
