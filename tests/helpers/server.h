/*
 * Test helpers shared by every suite: fresh data directories, starting a
 * server (mcdbd, memcached, ...) on a free loopback port and stopping it by
 * its pid, and a small blocking TCP client for raw protocol bytes.
 * Network traffic only ever goes to 127.0.0.1.
 */
#ifndef MCDB_TEST_SERVER_H
#define MCDB_TEST_SERVER_H

#include <stddef.h>
#include <sys/types.h>

/* A fresh empty directory under $TMPDIR (or /tmp); caller frees. */
char *th_tmpdir(void);
/* rm -rf dir. */
void th_rmrf(const char *dir);
/* A fresh temp dir with a tmpfs of size ("2m") mounted on it: a disk that
 * fills up. NULL when the mount fails (it needs root); the dir is gone. */
char *th_mount_tmpfs(const char *size);
/* Unmount *mnt (lazily), remove it, free it, and set it to NULL. */
void th_umount_tmpfs(char **mnt);

/* Raise this process's open-file limit to its hard limit (a server it
 * starts inherits it). */
void th_raise_fd_limit(void);

/* A TCP port on 127.0.0.1 that nothing listens on right now. */
int th_free_port(void);

/* 1 if one of process pid's own sockets listens on TCP port (another
 * process's on the same port does not count). */
int th_listens(pid_t pid, int port);

/* 1 if prog is an executable in PATH (or a path to one). */
int th_in_path(const char *prog);
/* th_in_path, or an executable in /usr/sbin. */
int th_installed(const char *prog);

struct th_server {
    pid_t pid;
    int port;
    char *dir;     /* data dir (owned; removed by th_server_cleanup) */
    char log[512]; /* the server's stderr goes to this file */
};

/*
 * Start mcdbd on a free port with data dir dir (NULL: a fresh one) and extra
 * arguments (NULL-terminated list, may be NULL). Waits until it accepts
 * connections. Returns 0, or -1 if it did not come up (its log is printed).
 * If mcdbd was not built, the test program exits 77 (skip).
 */
int th_mcdbd_start(struct th_server *s, const char *dir,
                   const char *const *extra);

/* th_mcdbd_start without the wait: returns 0 once mcdbd is forked. */
int th_mcdbd_spawn(struct th_server *s, const char *dir,
                   const char *const *extra);

/* Start mcdbd again on the same port and data dir (after a stop). */
int th_mcdbd_restart(struct th_server *s, const char *const *extra);

/*
 * Start any server: argv[0] is searched in PATH; every argument equal to
 * "{port}" is replaced by the chosen port. If argv[0] is missing the test
 * program exits 77 (skip) with a message naming it.
 */
int th_server_start(struct th_server *s, const char *const *argv);
/* th_server_start without the wait: returns 0 once argv[0] is forked. */
int th_server_spawn(struct th_server *s, const char *const *argv);

/* Send sig (SIGTERM, SIGKILL...) and wait; returns the wait status. */
int th_server_stop(struct th_server *s, int sig);

/* Stop if running, remove the data dir, free. */
void th_server_cleanup(struct th_server *s);

/* Connect to 127.0.0.1:port (blocking, 10 s receive timeout); -1 on error. */
int th_connect(int port);
int th_send(int fd, const void *buf, size_t len);
int th_sends(int fd, const char *s);
/* Read until the received bytes end with `end` (e.g. "END\r\n"), or
 * timeout. Returns a malloc'd NUL-terminated string (NULL on EOF/timeout
 * before anything arrived); *len gets its length if len. */
char *th_recv_until(int fd, const char *end, size_t *len);
/* Send req and read the reply up to `end`; returns malloc'd reply. */
char *th_ask(int fd, const char *req, const char *end);

#endif
