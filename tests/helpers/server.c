#include "helpers/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char *
th_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/mcdb-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        abort();
    }
    return strdup(tmpl);
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void
th_rmrf(const char *dir)
{
    if (dir && getenv("MCDB_KEEP_TEST_DIRS")) {
        fprintf(stderr, "kept %s (MCDB_KEEP_TEST_DIRS)\n", dir);
        return;
    }
    if (dir)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *
th_mount_tmpfs(const char *size)
{
    char *mnt = th_tmpdir(), opts[64];
    snprintf(opts, sizeof(opts), "size=%s", size);
    if (mount("tmpfs", mnt, "tmpfs", 0, opts) != 0) {
        th_rmrf(mnt);
        free(mnt);
        return NULL;
    }
    return mnt;
}

void
th_umount_tmpfs(char **mnt)
{
    if (!*mnt)
        return;
    umount2(*mnt, MNT_DETACH);
    th_rmrf(*mnt);
    free(*mnt);
    *mnt = NULL;
}

int
th_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        perror("free port");
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}

int
th_in_path(const char *prog)
{
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    char buf[1024];
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
        if (access(buf, X_OK) == 0)
            return 1;
        p += n + (e != NULL);
    }
    return 0;
}

int
th_installed(const char *prog)
{
    if (th_in_path(prog))
        return 1;
    /* Debian puts memcached and redis-server in /usr/bin, but be kind to
     * PATHs without sbin */
    char buf[1024];
    snprintf(buf, sizeof(buf), "/usr/sbin/%s", prog);
    return access(buf, X_OK) == 0;
}

static void
print_log(const struct th_server *s)
{
    FILE *f = fopen(s->log, "r");
    if (!f)
        return;
    char line[512];
    fprintf(stderr, "---- %s ----\n", s->log);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* Something on the port answers "version" (a socket that a killed
 * server left behind accepts but never answers). */
static int
answers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_usec = 200 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char c;
    int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
             send(fd, "version\r\n", 9, MSG_NOSIGNAL) == 9 &&
             recv(fd, &c, 1, 0) == 1;
    close(fd);
    return ok;
}

/* Whether socket inode is one of pid's open descriptors. */
static int
owns_socket(pid_t pid, unsigned long inode)
{
    char dir[64], want[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d))) {
        char link[320], target[64];
        snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            found = strcmp(target, want) == 0;
        }
    }
    closedir(d);
    return found;
}

/* Whether one of pid's own sockets listens on port (/proc/PID/net/tcp*
 * lists every socket of its network namespace; /proc/PID/fd says which
 * are its own). */
int
th_listens(pid_t pid, int port)
{
    const char *files[] = {"tcp", "tcp6"};
    int found = 0;
    for (int f = 0; f < 2 && !found; f++) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)pid, files[f]);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        char line[512];
        while (!found && fgets(line, sizeof(line), fp)) {
            /* "  0: 0100007F:2BCB 00000000:0000 0A ... uid timeout inode" */
            unsigned lport, st;
            char *colon = strchr(line, ':');
            colon = colon ? strchr(colon + 1, ':') : NULL;
            if (!colon || sscanf(colon + 1, "%x %*s %x", &lport, &st) != 2 ||
                lport != (unsigned)port || st != 0x0A /* LISTEN */)
                continue;
            /* the inode is the tenth field */
            char *p = line;
            for (int i = 0; i < 9 && p; i++) {
                p += strspn(p, " ");
                p = strchr(p, ' ');
            }
            unsigned long inode;
            found =
                p && sscanf(p, "%lu", &inode) == 1 && owns_socket(pid, inode);
        }
        fclose(fp);
    }
    return found;
}

int
th_server_spawn(struct th_server *s, const char *const *argv)
{
    if (!th_installed(argv[0])) {
        fprintf(stderr, "SKIP: %s is not installed\n", argv[0]);
        exit(77);
    }
    if (!s->port)
        s->port = th_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    size_t n = 0;
    while (argv[n])
        n++;
    char **args = calloc(n + 1, sizeof(*args));
    for (size_t i = 0; i < n; i++)
        args[i] = strcmp(argv[i], "{port}") ? (char *)argv[i] : port;
    snprintf(s->log, sizeof(s->log), "%s/server-%d.log",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", s->port);

    pid_t pid = fork();
    if (pid == 0) {
        /* a test that dies must not leave its server running */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(args[0], args);
        fprintf(stderr, "exec %s: %s\n", args[0], strerror(errno));
        _exit(127);
    }
    free(args);
    s->pid = pid;
    return 0;
}

int
th_server_start(struct th_server *s, const char *const *argv)
{
    th_server_spawn(s, argv);
    /* Wait until it accepts connections (or dies). */
    for (int i = 0; i < 1000; i++) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            fprintf(stderr, "server %s exited during start-up\n", argv[0]);
            print_log(s);
            return -1;
        }
        /* its own socket: another test's server may have had the same
         * free port a moment earlier, and would answer in its place */
        if (th_listens(s->pid, s->port) && answers(s->port))
            return 0;
        usleep(10000);
    }
    fprintf(stderr, "server %s did not accept within 10 s\n", argv[0]);
    print_log(s);
    th_server_stop(s, SIGKILL);
    return -1;
}

static int
mcdbd_exec(struct th_server *s, const char *const *extra, int wait)
{
    const char *bin = getenv("MCDBD") ? getenv("MCDBD") : MCDBD_PATH;
    if (!bin[0] || access(bin, X_OK) != 0) {
        fprintf(stderr, "SKIP: mcdbd is not built\n");
        exit(77);
    }
    const char *argv[64] = {bin,         "--port",     "{port}", "--listen",
                            "127.0.0.1", "--data-dir", s->dir};
    size_t n = 7;
    for (size_t i = 0; extra && extra[i] && n < 63; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return wait ? th_server_start(s, argv) : th_server_spawn(s, argv);
}

int
th_mcdbd_start(struct th_server *s, const char *dir, const char *const *extra)
{
    if (!s->dir)
        s->dir = dir ? strdup(dir) : th_tmpdir();
    s->port = th_free_port();
    return mcdbd_exec(s, extra, 1);
}

int
th_mcdbd_spawn(struct th_server *s, const char *dir, const char *const *extra)
{
    if (!s->dir)
        s->dir = dir ? strdup(dir) : th_tmpdir();
    s->port = th_free_port();
    return mcdbd_exec(s, extra, 0);
}

int
th_mcdbd_restart(struct th_server *s, const char *const *extra)
{
    /* A server killed a moment ago may still hold its port for a while
     * (its io_uring is torn down asynchronously): try for 5 s. */
    for (int i = 0; i < 25; i++) {
        if (mcdbd_exec(s, extra, 1) == 0)
            return 0;
        usleep(200 * 1000);
    }
    return -1;
}

int
th_server_stop(struct th_server *s, int sig)
{
    if (!s->pid)
        return -1;
    int st = 0;
    kill(s->pid, sig);
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
        ;
    s->pid = 0;
    return st;
}

void
th_server_cleanup(struct th_server *s)
{
    if (s->pid)
        th_server_stop(s, SIGKILL);
    th_rmrf(s->dir);
    free(s->dir);
    s->dir = NULL;
    if (!getenv("MCDB_KEEP_TEST_DIRS"))
        unlink(s->log);
}

int
th_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int
th_send(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
th_sends(int fd, const char *s)
{
    return th_send(fd, s, strlen(s));
}

char *
th_recv_until(int fd, const char *end, size_t *lenp)
{
    size_t cap = 4096, len = 0, elen = strlen(end);
    char *buf = malloc(cap);
    for (;;) {
        if (len >= elen && memcmp(buf + len - elen, end, elen) == 0)
            break;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (len == 0) {
                free(buf);
                return NULL;
            }
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (lenp)
        *lenp = len;
    return buf;
}

char *
th_ask(int fd, const char *req, const char *end)
{
    if (th_sends(fd, req) != 0)
        return NULL;
    return th_recv_until(fd, end, NULL);
}

void
th_raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}
