/*
 * Authentication (--auth-file, memcached's -Y): the ASCII login and what is
 * refused before it, the counters and settings, all as memcached 1.6.18
 * answers them; then mcdbd's own: the file's format (auth_load), the
 * credentials kept out of the log, replication without a login.
 *   ctest --test-dir build -R net/auth --output-on-failure
 *   MCDB_TEST_TARGET=memcached ctest --test-dir build -R net/auth
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers/repl_util.h"
#include "helpers/server.h"
#include "helpers/target.h"
#include "helpers/tool.h"
#include "net/auth.h"

TG_SUITE_NEEDS(0)

static struct th_server srv, replica;
static char *tmp;

static void
teardown(void)
{
    tg_report_death(&srv);
    th_server_cleanup(&srv);
    th_server_cleanup(&replica);
    memset(&srv, 0, sizeof(srv));
    memset(&replica, 0, sizeof(replica));
    if (tmp)
        th_rmrf(tmp);
    free(tmp);
    tmp = NULL;
}

TestSuite(auth, .fini = teardown, .timeout = 60);

/* A file named name in the test's temp dir holding text (mode 600). */
static char *
write_file(const char *name, const char *text, size_t len)
{
    if (!tmp)
        tmp = th_tmpdir();
    char *path;
    cr_assert_geq(asprintf(&path, "%s/%s", tmp, name), 0);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
    chmod(path, 0600);
    return path;
}

#define USERS "alice:wonderland\nbob:pa:ss\n"

/* The target with USERS as its auth file and mcdbd's extra arguments. */
static const char *
start_with_users(const char *const *mcdbd_more)
{
    static char *path;
    free(path);
    path = write_file("users", USERS, strlen(USERS));
    const char *margs[16] = {"--auth-file", path};
    size_t n = 2;
    for (size_t i = 0; mcdbd_more && mcdbd_more[i] && n < 15; i++)
        margs[n++] = mcdbd_more[i];
    margs[n] = NULL;
    cr_assert_eq(
        tg_start_args(&srv, margs, (const char *const[]){"-Y", path, NULL}), 0,
        "%s did not start", tg_name());
    return path;
}

static int
conn(int port)
{
    int fd = tg_connect(port);
    cr_assert(fd >= 0, "cannot connect to %s", tg_name());
    return fd;
}

static void
login(int fd, const char *user, const char *pass)
{
    char req[256];
    snprintf(req, sizeof(req), "set auth 0 0 %zu\r\n%s %s\r\n",
             strlen(user) + 1 + strlen(pass), user, pass);
    tg_expect(fd, req, "STORED\r\n");
}

static void
mcdbd_only(void)
{
    if (tg_is_memcached())
        cr_skip_test("mcdbd's own");
}

/* ---- before login ---- */

Test(
    auth,
    before_login_every_command_is_refused_with_unauthenticated_and_the_connection_stays_open)
{
    start_with_users(NULL);
    int fd = conn(srv.port);
    static const char *const reqs[] = {
        "get alice\r\n",   "version\r\n",    "stats\r\n",     "quit\r\n",
        "delete k\r\n",    "mn\r\n",         "flush_all\r\n", "incr n 1\r\n",
        "set k 0 0 x\r\n", "set k 0 0\r\n",  "mg k v\r\n",    "\r\n",
        "promote\r\n",     "verbosity 1\r\n"};
    for (size_t i = 0; i < sizeof(reqs) / sizeof(*reqs); i++)
        tg_expect(fd, reqs[i], "CLIENT_ERROR unauthenticated\r\n");
    /* Still open, and a login on it works. */
    login(fd, "alice", "wonderland");
    tg_expect(fd, "get alice\r\n", "END\r\n");
    close(fd);
}

Test(auth,
     a_set_of_user_and_password_logs_in_with_stored_then_every_command_runs)
{
    start_with_users(NULL);
    int fd = conn(srv.port);
    login(fd, "alice", "wonderland");
    tg_expect(fd, "set k 0 0 5\r\nhello\r\n", "STORED\r\n");
    tg_expect(fd, "get k\r\n", "VALUE k 0 5\r\nhello\r\nEND\r\n");
    tg_expect(fd, "mn\r\n", "MN\r\n");
    tg_expect_quiet(fd);
    /* The login's own key was not stored. */
    tg_expect(fd, "get auth\r\n", "END\r\n");
    close(fd);
    /* Each connection logs in for itself. */
    fd = conn(srv.port);
    tg_expect(fd, "get k\r\n", "CLIENT_ERROR unauthenticated\r\n");
    close(fd);
}

Test(auth,
     a_wrong_password_is_an_authentication_failure_and_the_client_may_try_again)
{
    start_with_users(NULL);
    int fd = conn(srv.port);
    static const char *const bad[] = {
        "set a 0 0 15\r\nalice wonderlan\r\n",   /* a prefix */
        "set a 0 0 17\r\nalice wonderlandx\r\n", /* longer */
        "set a 0 0 11\r\nalice pa:ss\r\n",       /* bob's */
        "set a 0 0 14\r\nbob wonderland\r\n",    /* alice's */
        "set a 0 0 12\r\nmallory pass\r\n",      /* nobody's */
        "set a 0 0 16\r\nALICE wonderland\r\n",  /* names are exact */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        tg_expect(fd, bad[i], "CLIENT_ERROR authentication failure\r\n");
        tg_expect(fd, "get k\r\n", "CLIENT_ERROR unauthenticated\r\n");
    }
    login(fd, "alice", "wonderland");
    tg_expect(fd, "get k\r\n", "END\r\n");
    close(fd);
}

Test(auth, a_password_may_hold_a_colon_and_tokens_after_it_are_ignored)
{
    start_with_users(NULL);
    int fd = conn(srv.port);
    login(fd, "bob", "pa:ss");
    close(fd);
    fd = conn(srv.port);
    tg_expect(fd, "set a 0 0 17\r\n  bob  pa:ss more\r\n", "STORED\r\n");
    close(fd);
}

Test(auth, a_noreply_login_is_still_answered_as_memcached_does)
{
    start_with_users(NULL);
    int fd = conn(srv.port);
    tg_expect(fd, "set a 0 0 16 noreply\r\nalice wonderland\r\n", "STORED\r\n");
    tg_expect(fd, "get a\r\n", "END\r\n");
    close(fd);
}

Test(auth, a_login_without_a_password_is_a_bad_authentication_token_format)
{
    start_with_users(NULL);
    int fd = conn(srv.port);
    tg_expect(fd, "set a 0 0 5\r\nalice\r\n",
              "CLIENT_ERROR bad authentication token format\r\n");
    tg_expect(fd, "set a 0 0 0\r\n\r\n",
              "CLIENT_ERROR bad authentication token format\r\n");
    tg_expect(fd, "get k\r\n", "CLIENT_ERROR unauthenticated\r\n");
    login(fd, "alice", "wonderland");
    close(fd);
}

Test(auth,
     a_login_whose_data_does_not_end_in_crlf_is_a_bad_command_line_termination)
{
    start_with_users(NULL);
    int fd = conn(srv.port);
    tg_expect(fd, "set a 0 0 16\r\nalice wonderlandXY",
              "CLIENT_ERROR bad command line termination\r\n");
    tg_expect(fd, "get k\r\n", "CLIENT_ERROR unauthenticated\r\n");
    /* a bare "\n" ends the line but not the data */
    tg_expect(fd, "set a 0 0 16\nalice wonderland\r\nget k\n",
              "STORED\r\nEND\r\n");
    close(fd);
}

Test(auth,
     a_line_with_no_newline_in_2048_bytes_before_login_closes_the_connection)
{
    start_with_users(NULL);
    int fd = conn(srv.port);
    char junk[3000];
    memset(junk, 'x', sizeof(junk));
    cr_assert_eq(th_send(fd, junk, sizeof(junk)), 0);
    char *got = NULL;
    cr_assert(tg_wait_closed(fd, 3000, &got, NULL),
              "still open after 3000 bytes without a newline");
    cr_assert_null(got, "it answered \"%s\"", got);
    close(fd);
    /* 2000 bytes leave it waiting for the rest of the line */
    fd = conn(srv.port);
    cr_assert_eq(th_send(fd, junk, 2000), 0);
    cr_assert_not(tg_wait_closed(fd, 300, NULL, NULL), "closed at 2000");
    tg_expect(fd, "\r\n", "CLIENT_ERROR unauthenticated\r\n");
    close(fd);
}

/* "set a 0 0 <size>\r\n" and size bytes of "a b xxx..." and "\r\n". */
static char *
big_login(size_t size, size_t *len)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "set a 0 0 %zu\r\n", size);
    char *req = malloc((size_t)n + size + 2);
    memcpy(req, line, (size_t)n);
    memset(req + n, 'x', size);
    memcpy(req + n, "a b", 3);
    memcpy(req + n + size, "\r\n", 2);
    *len = (size_t)n + size + 2;
    return req;
}

Test(auth, a_login_larger_than_16k_closes_the_connection)
{
    start_with_users(NULL);
    size_t len;
    char *req = big_login(16382, &len); /* the largest memcached reads */
    int fd = conn(srv.port);
    tg_expect_n(fd, req, len, "CLIENT_ERROR authentication failure\r\n",
                strlen("CLIENT_ERROR authentication failure\r\n"));
    close(fd);
    free(req);
    req = big_login(16383, &len);
    fd = conn(srv.port);
    send(fd, req, len, MSG_NOSIGNAL); /* may fail: it closes */
    char *got = NULL;
    cr_assert(tg_wait_closed(fd, 3000, &got, NULL), "still open");
    cr_assert_null(got, "it answered \"%s\"", got);
    close(fd);
    free(req);
}

/* ---- what stats say ---- */

Test(auth, auth_cmds_and_auth_errors_count_logins_as_memcached_does)
{
    start_with_users(NULL);
    int fd = conn(srv.port);
    tg_expect(fd, "get k\r\n", "CLIENT_ERROR unauthenticated\r\n");
    tg_expect(fd, "set a 0 0 5\r\nalice\r\n",
              "CLIENT_ERROR bad authentication token format\r\n");
    tg_expect(fd, "set a 0 0 16\r\nalice wonderlandXY",
              "CLIENT_ERROR bad command line termination\r\n");
    tg_expect(fd, "set a 0 0 9\r\nalice bad\r\n",
              "CLIENT_ERROR authentication failure\r\n");
    login(fd, "alice", "wonderland");
    /* only the logins that were checked count */
    cr_assert_eq(tg_stat(fd, NULL, "auth_cmds"), 2);
    cr_assert_eq(tg_stat(fd, NULL, "auth_errors"), 1);
    close(fd);
}

Test(auth, stats_settings_name_the_auth_file_as_auth_enabled_ascii)
{
    const char *path = start_with_users(NULL);
    int fd = conn(srv.port);
    login(fd, "alice", "wonderland");
    char *all = tg_stats(fd, "settings");
    cr_assert(all);
    char want[600];
    snprintf(want, sizeof(want), "STAT auth_enabled_ascii %s\r\n", path);
    cr_assert(strstr(all, want), "no \"%s\" in:\n%s", want, all);
    /* memcached's -Y allows no binary protocol; mcdbd's file serves SASL */
    cr_assert(strstr(all, tg_is_memcached() ? "STAT auth_enabled_sasl no\r\n"
                                            : "STAT auth_enabled_sasl yes\r\n"),
              "%s", all);
    free(all);
    close(fd);
}

Test(auth, without_an_auth_file_nothing_is_refused_and_settings_say_no)
{
    cr_assert_eq(tg_start(&srv, NULL), 0);
    int fd = conn(srv.port);
    tg_expect(fd, "get k\r\n", "END\r\n");
    char *all = tg_stats(fd, "settings");
    cr_assert(strstr(all, "STAT auth_enabled_ascii no\r\n"), "%s", all);
    free(all);
    close(fd);
}

/* ---- mcdbd's own ---- */

/* The server's -vv log, once it shows marker (it is written line by line):
 * it says who logged in and who failed, and holds neither password the
 * tests send (alice's "wonderland", the wrong "pa:ss"). */
static void
expect_log_without_credentials(const char *marker, const char *what)
{
    size_t len;
    char *log = NULL;
    for (int i = 0; i < 100; i++) {
        free(log);
        log = tt_slurp(srv.log, &len);
        if (log && strstr(log, marker))
            break;
        usleep(20000);
    }
    cr_assert(log && strstr(log, marker),
              "the log does not show %s at -vv:\n%s", what, log);
    cr_assert(strstr(log, "logged in") && strstr(log, "login failed"),
              "the log does not say who logged in:\n%s", log);
    cr_assert_null(strstr(log, "wonderland"), "a password in the log:\n%s",
                   log);
    cr_assert_null(strstr(log, "pa:ss"), "a password in the log:\n%s", log);
    free(log);
}

Test(auth, credentials_never_appear_in_the_log_even_at_vv)
{
    mcdbd_only();
    start_with_users((const char *const[]){"-vv", NULL});
    int fd = conn(srv.port);
    /* a password sent by mistake as a command line, refused */
    tg_expect(fd, "wonderland\r\n", "CLIENT_ERROR unauthenticated\r\n");
    tg_expect(fd, "set a 0 0 11\r\nalice pa:ss\r\n",
              "CLIENT_ERROR authentication failure\r\n");
    login(fd, "alice", "wonderland");
    tg_expect(fd, "set k 0 0 5\r\nhello\r\n", "STORED\r\n");
    close(fd);
    expect_log_without_credentials("< set k 0 0 5", "requests");
}

Test(auth,
     a_replica_replicates_from_a_primary_with_an_auth_file_without_a_login)
{
    mcdbd_only();
    const char *path = start_with_users(NULL);
    /* the replica serves clients: it asks them to log in too */
    tr_start_replica(&replica, srv.port,
                     (const char *const[]){"--auth-file", path, NULL});
    int fd = conn(srv.port);
    login(fd, "alice", "wonderland");
    tg_expect(fd, "set k 0 0 5\r\nhello\r\n", "STORED\r\n");
    close(fd);
    fd = conn(replica.port);
    tg_expect(fd, "get k\r\n", "CLIENT_ERROR unauthenticated\r\n");
    login(fd, "bob", "pa:ss");
    char *m = NULL;
    for (int i = 0; i < 200; i++) {
        free(m);
        m = tg_exchange(fd, "get k\r\n", 7, "VALUE k 0 5\r\nhello\r\nEND\r\n",
                        25);
        if (!m)
            break;
        /* not there yet: the rest of the reply is "END\r\n" */
        usleep(50000);
    }
    cr_assert_null(m, "the replica never had the write: %s", m);
    close(fd);
}

/* auth_load of text; NULL when it loads (*a set), else the message. */
static char *
load(const char *text, size_t len, auth_t **a)
{
    char *path = write_file("f", text, len);
    char err[512] = "";
    auth_t *got = NULL;
    int rc = auth_load(path, &got, err, sizeof(err));
    free(path);
    if (rc == 0) {
        cr_assert(got);
        if (a)
            *a = got;
        else
            auth_free(got);
        return NULL;
    }
    cr_assert_null(got);
    return strdup(err);
}

static bool
check(const auth_t *a, const char *user, const char *pass)
{
    return auth_check(a, user, strlen(user), pass, strlen(pass));
}

Test(auth, the_file_is_read_as_memcached_reads_it)
{
    mcdbd_only();
    auth_t *a = NULL;
    static const char text[] =
        "alice:wonderland\r\nbob:pa:ss\n#c:x:y\nz:\xc3\xa9";
    char *e = load(text, sizeof(text) - 1, &a);
    cr_assert_null(e, "%s", e);
    cr_assert_eq(auth_count(a), 4);
    cr_assert(check(a, "alice", "wonderland")); /* "\r\n" is not in it */
    cr_assert(check(a, "bob", "pa:ss"));
    cr_assert(check(a, "#c", "x:y"));     /* no comments: a user */
    cr_assert(check(a, "z", "\xc3\xa9")); /* no final newline */
    cr_assert_not(check(a, "alice", "wonderland\r"));
    cr_assert_not(check(a, "alice", "pa:ss"));
    cr_assert_not(check(a, "bob", "pa"));
    cr_assert_not(check(a, "", ""));
    auth_free(a);
}

Test(auth, a_bad_auth_file_is_refused_naming_the_file_and_the_line)
{
    mcdbd_only();
    char long_line[300];
    memset(long_line, 'p', sizeof(long_line));
    memcpy(long_line, "a:", 2);
    memcpy(long_line + 256, "\n", 2);
    static const struct {
        const char *text, *says;
    } bad[] = {
        {"a:b\n\nc:d\n", "line 2: empty"},
        {"a:b\nc:d\nnocolon\n", "line 3: no ':'"},
        {":pw\n", "line 1: an empty user name"},
        {"a:b\nuser:\n", "line 2: an empty password"},
        {"a:two words\n", "line 1: a space or control character in the "
                          "password"},
        {"a b:c\n", "line 1: a space or control character in the user"},
        {"a:b\tc\n", "line 1: a space or control character in the password"},
        {"a:b\nc:d\na:e\n", "line 3: the same user as an earlier line"},
        {"", "no user:password line"},
        {NULL, "line 1: longer than 255 bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        const char *text = bad[i].text ? bad[i].text : long_line;
        char *e = load(text, strlen(text), NULL);
        cr_assert(e, "\"%s\" was accepted", text);
        cr_assert(strstr(e, "--auth-file ") && strstr(e, "/f: "),
                  "\"%s\" does not name the file", e);
        cr_assert(strstr(e, bad[i].says), "\"%s\": expected \"%s\"", e,
                  bad[i].says);
        free(e);
    }
    /* 255 bytes is still a line */
    long_line[255] = '\n';
    cr_assert_null(load(long_line, 256, NULL));
    /* at most AUTH_MAX_ENTRIES */
    size_t cap = (AUTH_MAX_ENTRIES + 1) * 16, len = 0;
    char *many = malloc(cap);
    for (unsigned i = 0; i < AUTH_MAX_ENTRIES; i++)
        len += (size_t)snprintf(many + len, cap - len, "u%u:p\n", i);
    cr_assert_null(load(many, len, NULL));
    len += (size_t)snprintf(many + len, cap - len, "last:p\n");
    char *e = load(many, len, NULL);
    cr_assert(e && strstr(e, "line 1025: one entry too many"), "%s", e);
    free(e);
    free(many);
    /* a missing file says why */
    char err[512];
    auth_t *a = NULL;
    cr_assert_eq(auth_load("/nonexistent/users", &a, err, sizeof(err)), -1);
    cr_assert(strstr(err, "/nonexistent/users: No such file"), "%s", err);
}

Test(auth, mcdbd_with_a_bad_auth_file_exits_1_naming_file_and_line)
{
    mcdbd_only();
    char *path = write_file("users", "a:b\nc\n", 6);
    char *dir;
    cr_assert_geq(asprintf(&dir, "%s/data", tmp), 0);
    char port[16];
    snprintf(port, sizeof(port), "%d", th_free_port());
    const char *bin = getenv("MCDBD") ? getenv("MCDBD") : MCDBD_PATH;
    char *out = NULL;
    int st = tt_run(&out, (const char *const[]){bin, "-p", port, "--data-dir",
                                                dir, "-Y", path, NULL});
    char want[600];
    snprintf(want, sizeof(want), "--auth-file %s: line 2: no ':'", path);
    cr_assert_eq(st, 1, "exit status %d:\n%s", st, out);
    cr_assert(strstr(out, want), "no \"%s\" in:\n%s", want, out);
    free(out);
    st = tt_run(&out, (const char *const[]){bin, "--help", NULL});
    cr_assert(strstr(out, "-Y, --auth-file=FILE"), "%s", out);
    free(out);
    free(dir);
    free(path);
}

/* ---- SASL PLAIN over the binary protocol ----
 * memcached 1.6.18 answers these with -S -B binary and Cyrus SASL's PLAIN
 * over a sasldb holding the same users (saslpasswd2, SASL_CONF_PATH):
 * -Y and the binary protocol exclude each other there. */

enum {
    OP_GET = 0x00,
    OP_SET = 0x01,
    OP_QUIT = 0x07,
    OP_NOOP = 0x0a,
    OP_VERSION = 0x0b,
    OP_STAT = 0x10,
    OP_LIST_MECHS = 0x20,
    OP_AUTH = 0x21,
    OP_STEP = 0x22,
    ST_OK = 0x00,
    ST_ENOENT = 0x01,
    ST_EINVAL = 0x04,
    ST_AUTH_ERROR = 0x20,
    ST_AUTH_CONTINUE = 0x21,
};

struct bres {
    int op, status;
    size_t len;
    char body[4096];
};

/* One request packet: header, extras, key, value. */
static void
bsend(int fd, int op, const void *ext, size_t elen, const char *key,
      const void *val, size_t vlen)
{
    size_t klen = key ? strlen(key) : 0, blen = elen + klen + vlen;
    unsigned char *p = calloc(1, 24 + blen);
    p[0] = 0x80;
    p[1] = (unsigned char)op;
    p[2] = (unsigned char)(klen >> 8);
    p[3] = (unsigned char)klen;
    p[4] = (unsigned char)elen;
    p[8] = (unsigned char)(blen >> 24);
    p[9] = (unsigned char)(blen >> 16);
    p[10] = (unsigned char)(blen >> 8);
    p[11] = (unsigned char)blen;
    if (elen) /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(p + 24, ext, elen);
    if (klen)
        memcpy(p + 24 + elen, key, klen);
    if (vlen)
        memcpy(p + 24 + elen + klen, val, vlen);
    cr_assert_eq(th_send(fd, p, 24 + blen), 0, "send of opcode 0x%02x", op);
    free(p);
}

/* One response; the body (extras, key and value) in r->body. */
static void
brecv(int fd, struct bres *r)
{
    unsigned char h[24];
    cr_assert_eq(tg_recv_n(fd, h, 24), 24, "no response header");
    cr_assert_eq(h[0], 0x81, "magic 0x%02x", h[0]);
    r->op = h[1];
    r->status = h[6] << 8 | h[7];
    r->len =
        (size_t)h[8] << 24 | (size_t)h[9] << 16 | (size_t)h[10] << 8 | h[11];
    cr_assert_lt(r->len, sizeof(r->body));
    cr_assert_eq(tg_recv_n(fd, r->body, r->len), r->len);
    r->body[r->len] = '\0';
}

/* Send, and expect status and body (NULL: any body) back for op. */
static void
bexpect(int fd, int op, const char *key, const void *val, size_t vlen,
        int status, const char *body)
{
    struct bres r;
    bsend(fd, op, NULL, 0, key, val, vlen);
    brecv(fd, &r);
    cr_assert_eq(r.op, op, "response to 0x%02x is for 0x%02x", op, r.op);
    cr_assert_eq(r.status, status,
                 "opcode 0x%02x: status 0x%02x (\"%s\"), expected 0x%02x", op,
                 r.status, r.body, status);
    if (body)
        cr_assert_str_eq(r.body, body, "opcode 0x%02x", op);
}

#define PLAIN(s) (s), sizeof(s) - 1

/* The target with USERS for SASL: mcdbd --auth-file, or memcached -S
 * with a sasldb of the same users. */
static void
start_sasl(const char *const *mcdbd_more)
{
    if (!tg_is_memcached()) {
        start_with_users(mcdbd_more);
        return;
    }
    if (!th_installed("saslpasswd2"))
        cr_skip_test("saslpasswd2 (sasl2-bin) is needed to give memcached "
                     "its SASL users");
    char *users[][2] = {{"alice", "wonderland"}, {"bob", "pa:ss"}};
    char *db = write_file("sasldb", "", 0), *cmd;
    unlink(db);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_geq(asprintf(&cmd,
                               "printf %%s '%s' | saslpasswd2 -p -f '%s' -a "
                               "memcached -c '%s'",
                               users[i][1], db, users[i][0]),
                      0);
        cr_assert_eq(system(cmd), 0, "%s failed", cmd);
        free(cmd);
    }
    char *conf;
    cr_assert_geq(asprintf(&conf, "mech_list: plain\nsasldb_path: %s\n", db),
                  0);
    free(write_file("memcached.conf", conf, strlen(conf)));
    setenv("SASL_CONF_PATH", tmp, 1);
    /* -B binary: th_server_start's "version\r\n" would get no answer */
    const char *argv[] = {"memcached",
                          "-p",
                          "{port}",
                          "-l",
                          "127.0.0.1",
                          "-U",
                          "0",
                          "-t",
                          "1",
                          "-S",
                          "-B",
                          "binary",
                          geteuid() == 0 ? "-u" : NULL,
                          "root",
                          NULL};
    srv.port = 0;
    cr_assert_eq(th_server_spawn(&srv, argv), 0);
    bool up = false;
    for (int i = 0; i < 500 && !up; i++) {
        int fd = th_connect(srv.port);
        if (fd >= 0) {
            unsigned char v[24] = {0x80, OP_VERSION}, h[24];
            up = th_send(fd, v, 24) == 0 && tg_recv_n(fd, h, 24) == 24;
            close(fd);
        }
        if (!up)
            usleep(20000);
    }
    cr_assert(up, "memcached -S did not answer a binary version");
    free(conf);
    free(db);
}

static int
sasl_login(int port, const char *plain, size_t len)
{
    int fd = conn(port);
    bexpect(fd, OP_AUTH, "PLAIN", plain, len, ST_OK, "Authenticated");
    return fd;
}

Test(auth, sasl_list_mechs_answers_plain)
{
    start_sasl(NULL);
    int fd = conn(srv.port);
    bexpect(fd, OP_LIST_MECHS, NULL, NULL, 0, ST_OK, "PLAIN");
    close(fd);
}

Test(
    auth,
    before_sasl_auth_every_opcode_but_version_and_sasl_is_an_auth_error_that_closes)
{
    start_sasl(NULL);
    static const int ops[] = {OP_GET, OP_NOOP, OP_QUIT, OP_STAT};
    for (size_t i = 0; i < sizeof(ops) / sizeof(*ops); i++) {
        int fd = conn(srv.port);
        bexpect(fd, OP_VERSION, NULL, NULL, 0, ST_OK, NULL);
        bexpect(fd, ops[i], ops[i] == OP_GET ? "k" : NULL, NULL, 0,
                ST_AUTH_ERROR, "Auth failure.");
        cr_assert(tg_wait_closed(fd, 3000, NULL, NULL),
                  "still open after opcode 0x%02x", ops[i]);
        close(fd);
    }
    /* a set: its value is not stored */
    int fd = conn(srv.port);
    static const char ext[8] = {0};
    bsend(fd, OP_SET, ext, 8, "k", "v", 1);
    struct bres r;
    brecv(fd, &r);
    cr_assert_eq(r.status, ST_AUTH_ERROR);
    cr_assert(tg_wait_closed(fd, 3000, NULL, NULL), "still open after a set");
    close(fd);
    fd = sasl_login(srv.port, PLAIN("\0alice\0wonderland"));
    bexpect(fd, OP_GET, "k", NULL, 0, ST_ENOENT, "Not found");
    close(fd);
}

Test(auth, sasl_plain_with_a_right_password_authenticates_and_commands_then_run)
{
    start_sasl(NULL);
    int fd = sasl_login(srv.port, PLAIN("\0alice\0wonderland"));
    static const char ext[8] = {0};
    bsend(fd, OP_SET, ext, 8, "k", "v", 1);
    struct bres r;
    brecv(fd, &r);
    cr_assert_eq(r.status, ST_OK, "set after login: 0x%02x", r.status);
    bexpect(fd, OP_NOOP, NULL, NULL, 0, ST_OK, NULL);
    close(fd);
    close(sasl_login(srv.port, PLAIN("\0bob\0pa:ss")));
    /* an authorization id equal to the user is the same login */
    close(sasl_login(srv.port, PLAIN("alice\0alice\0wonderland")));
    /* the mechanism's name is not case-sensitive (Cyrus SASL) */
    fd = conn(srv.port);
    bexpect(fd, OP_AUTH, "plain", PLAIN("\0alice\0wonderland"), ST_OK,
            "Authenticated");
    close(fd);
}

Test(auth, a_failed_sasl_auth_is_an_auth_error_and_the_connection_stays_open)
{
    start_sasl(NULL);
    static const struct {
        const char *mech, *data;
        size_t len;
    } bad[] = {
        {"PLAIN", PLAIN("\0alice\0wonderlan")},
        {"PLAIN", PLAIN("\0alice\0pa:ss")},
        {"PLAIN", PLAIN("\0mallory\0wonderland")},
        {"PLAIN", PLAIN("bob\0alice\0wonderland")}, /* acting as another */
        {"PLAIN", PLAIN("alicewonderland")},
        {"PLAIN", PLAIN("alice\0wonderland")},
        {"PLAIN", PLAIN("\0alice\0wonderland\0")},
        {"PLAIN", PLAIN("\0alice\0")},
        {"CRAM-MD5", PLAIN("\0alice\0wonderland")},
        {"PLAINX", PLAIN("\0alice\0wonderland")},
    };
    int fd = conn(srv.port);
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        bexpect(fd, OP_AUTH, bad[i].mech, bad[i].data, bad[i].len,
                ST_AUTH_ERROR, "Auth failure.");
        bexpect(fd, OP_VERSION, NULL, NULL, 0, ST_OK, NULL);
    }
    bexpect(fd, OP_AUTH, "PLAIN", PLAIN("\0alice\0wonderland"), ST_OK,
            "Authenticated");
    bexpect(fd, OP_GET, "k", NULL, 0, ST_ENOENT, "Not found");
    close(fd);
}

Test(auth, sasl_auth_without_data_asks_to_continue_and_step_completes_it)
{
    start_sasl(NULL);
    int fd = conn(srv.port);
    bexpect(fd, OP_AUTH, "PLAIN", NULL, 0, ST_AUTH_CONTINUE, "");
    bexpect(fd, OP_STEP, "PLAIN", PLAIN("\0bob\0pa:ss"), ST_OK,
            "Authenticated");
    bexpect(fd, OP_GET, "k", NULL, 0, ST_ENOENT, "Not found");
    close(fd);
    fd = conn(srv.port);
    bexpect(fd, OP_AUTH, "PLAIN", NULL, 0, ST_AUTH_CONTINUE, "");
    bexpect(fd, OP_STEP, "PLAIN", PLAIN("\0bob\0wrong"), ST_AUTH_ERROR,
            "Auth failure.");
    close(fd);
    /* a step with no auth before it */
    fd = conn(srv.port);
    bexpect(fd, OP_STEP, "PLAIN", PLAIN("\0bob\0pa:ss"), ST_AUTH_ERROR,
            "Auth failure.");
    bexpect(fd, OP_VERSION, NULL, NULL, 0, ST_OK, NULL);
    close(fd);
}

Test(auth, a_failed_sasl_auth_after_a_login_logs_the_connection_out)
{
    start_sasl(NULL);
    int fd = sasl_login(srv.port, PLAIN("\0alice\0wonderland"));
    bexpect(fd, OP_AUTH, "PLAIN", PLAIN("\0alice\0wrong"), ST_AUTH_ERROR,
            "Auth failure.");
    bexpect(fd, OP_GET, "k", NULL, 0, ST_AUTH_ERROR, "Auth failure.");
    cr_assert(tg_wait_closed(fd, 3000, NULL, NULL), "still open");
    close(fd);
    /* a step after a completed auth fails the same way */
    fd = sasl_login(srv.port, PLAIN("\0alice\0wonderland"));
    bexpect(fd, OP_STEP, "PLAIN", PLAIN("\0alice\0wonderland"), ST_AUTH_ERROR,
            "Auth failure.");
    bexpect(fd, OP_GET, "k", NULL, 0, ST_AUTH_ERROR, "Auth failure.");
    close(fd);
}

Test(auth, a_sasl_request_of_the_wrong_shape_is_invalid_and_closes)
{
    start_sasl(NULL);
    int fd = conn(srv.port);
    bexpect(fd, OP_AUTH, NULL, PLAIN("\0alice\0wonderland"), ST_EINVAL,
            "Invalid arguments");
    cr_assert(tg_wait_closed(fd, 3000, NULL, NULL), "no mechanism: open");
    close(fd);
    fd = conn(srv.port);
    bexpect(fd, OP_LIST_MECHS, "PLAIN", NULL, 0, ST_EINVAL,
            "Invalid arguments");
    cr_assert(tg_wait_closed(fd, 3000, NULL, NULL), "list with a key: open");
    close(fd);
    fd = conn(srv.port);
    bsend(fd, OP_AUTH, "xxxx", 4, "PLAIN", PLAIN("\0alice\0wonderland"));
    struct bres r;
    brecv(fd, &r);
    cr_assert_eq(r.status, ST_EINVAL, "auth with extras: 0x%02x", r.status);
    cr_assert(tg_wait_closed(fd, 3000, NULL, NULL), "auth with extras: open");
    close(fd);
}

/* A binary STAT's value for name (after a login), -1 if absent. */
static long long
bin_stat(int fd, const char *name)
{
    bsend(fd, OP_STAT, NULL, 0, NULL, NULL, 0);
    long long v = -1;
    for (;;) {
        struct bres r;
        brecv(fd, &r);
        cr_assert_eq(r.status, ST_OK);
        if (r.len == 0)
            return v;
        size_t n = strlen(name);
        if (r.len > n && strncmp(r.body, name, n) == 0 &&
            (r.body[n] < 'a' || r.body[n] > 'z') && r.body[n] != '_')
            v = strtoll(r.body + n, NULL, 10);
    }
}

Test(auth, sasl_logins_count_in_auth_cmds_and_auth_errors_as_memcached_does)
{
    start_sasl(NULL);
    int fd = conn(srv.port);
    bexpect(fd, OP_AUTH, "PLAIN", PLAIN("\0alice\0wrong"), ST_AUTH_ERROR, NULL);
    bexpect(fd, OP_STEP, "PLAIN", PLAIN("\0alice\0wrong"), ST_AUTH_ERROR, NULL);
    bexpect(fd, OP_AUTH, "PLAIN", NULL, 0, ST_AUTH_CONTINUE, NULL);
    bexpect(fd, OP_STEP, "PLAIN", PLAIN("\0alice\0wonderland"), ST_OK, NULL);
    /* a continue is not counted; each end of a login is */
    cr_assert_eq(bin_stat(fd, "auth_cmds"), 3);
    cr_assert_eq(bin_stat(fd, "auth_errors"), 2);
    close(fd);
}

Test(auth, one_auth_file_serves_the_ascii_login_and_sasl_and_settings_say_both)
{
    mcdbd_only();
    start_with_users(NULL);
    int fd = sasl_login(srv.port, PLAIN("\0bob\0pa:ss"));
    close(fd);
    fd = conn(srv.port);
    login(fd, "bob", "pa:ss");
    char *all = tg_stats(fd, "settings");
    cr_assert(strstr(all, "STAT auth_enabled_sasl yes\r\n"), "%s", all);
    free(all);
    close(fd);
}

Test(auth, sasl_credentials_never_appear_in_the_log_even_at_vv)
{
    mcdbd_only();
    start_with_users((const char *const[]){"-vv", NULL});
    int fd = conn(srv.port);
    bexpect(fd, OP_AUTH, "PLAIN", PLAIN("\0alice\0pa:ss"), ST_AUTH_ERROR, NULL);
    bexpect(fd, OP_AUTH, "PLAIN", PLAIN("\0alice\0wonderland"), ST_OK, NULL);
    bexpect(fd, OP_GET, "marker", NULL, 0, ST_ENOENT, NULL);
    close(fd);
    expect_log_without_credentials("marker", "binary requests");
}
