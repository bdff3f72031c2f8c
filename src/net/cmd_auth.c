/*
 * cmd_auth: logging in (--auth-file). The ASCII login here first, SASL over
 * the binary protocol below.
 *
 * The ASCII login, as memcached 1.6.18 does it with
 * -Y (proto_text.c's try_read_command_asciiauth). Until a connection has
 * logged in, each request is one of:
 *
 *   set <key> <flags> <exptime> <bytes> ...\r\n<user> <password>\r\n
 *       The login. Only the word "set" and a number of bytes count: key,
 *       flags, exptime and noreply are ignored. The data is split at spaces
 *       and its first two tokens are the user and the password (more are
 *       ignored). Replies:
 *         STORED                                   logged in (auth_cmds)
 *         CLIENT_ERROR authentication failure      (auth_cmds, auth_errors)
 *         CLIENT_ERROR bad authentication token format   fewer than two
 *         CLIENT_ERROR bad command line termination      no "\r\n" after it
 *       and after any but the first the client may try again.
 *   mcdb_replicate ...
 *       Replication's handshake, parsed and run as usual: the link has its
 *       own guard (loopback only, or --repl-secret-file's challenge and
 *       response, src/repl/auth.c), and a replica has no password to send.
 *   anything else
 *       One line, answered "CLIENT_ERROR unauthenticated"; the connection
 *       stays open. Also a set whose line is not a login's ("set k 0 0 x").
 *
 * As memcached, the connection is closed without a reply when a line has no
 * "\n" within AUTH_LINE_WAIT bytes, or when a login's data with its "\r\n"
 * would not fit memcached's 16 KiB read buffer.
 *
 * Logging (-vv): the set's line is shown, as any request's; its data never
 * is, nor a refused line, which could be a password sent by mistake.
 */
#include "net/net_int.h"

#include <string.h>
#include <strings.h>

#include "net/binary.h"
#include "util/say.h"

#define AUTH_LINE_WAIT 2048         /* memcached's wait for a "\n" */
#define AUTH_DATA_MAX (16384u - 2u) /* its read buffer, less "\r\n" */

struct auth_tok {
    const char *p;
    size_t n;
};

/* Split [s, end) at spaces, as memcached's tokenize_command (runs of
 * spaces make no empty tokens); fills up to max, returns how many. */
static unsigned
auth_split(const char *s, const char *end, struct auth_tok *tok, unsigned max)
{
    unsigned n = 0;
    while (s < end && n < max) {
        while (s < end && *s == ' ')
            s++;
        const char *t = s;
        while (s < end && *s != ' ')
            s++;
        if (s > t)
            tok[n++] = (struct auth_tok){t, (size_t)(s - t)};
    }
    return n;
}

/* memcached's safe_strtoul on a token: white space, an optional '+',
 * digits, then the end or white space (the "\r" of the line). Over
 * UINT32_MAX reads as UINT32_MAX (too large for a login anyway). */
static bool
auth_size(const struct auth_tok *t, uint32_t *out)
{
    const char *s = t->p, *end = t->p + t->n;
    while (s < end && (*s == '\t' || *s == '\r' || *s == '\v' || *s == '\f'))
        s++;
    if (s < end && *s == '+')
        s++;
    if (s == end || *s < '0' || *s > '9')
        return false;
    uint64_t v = 0;
    for (; s < end && *s >= '0' && *s <= '9'; s++)
        if ((v = v * 10 + (uint64_t)(*s - '0')) > UINT32_MAX)
            v = UINT32_MAX + 1ull;
    if (s < end && *s != '\t' && *s != '\r' && *s != '\v' && *s != '\f')
        return false;
    *out = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    return true;
}

static size_t
auth_refuse(struct conn *c, size_t used)
{
    say(SAY_DEBUG, "%s: a request before login, refused (not shown)", c->peer);
    out_str(c, "CLIENT_ERROR unauthenticated\r\n");
    return used;
}

/* The login's data (size bytes and "\r\n" at data): check it, reply. */
static void
auth_login(struct conn *c, const char *data, uint32_t size)
{
    struct worker *w = c->w;
    say(SAY_DEBUG, "%s < (%u bytes of credentials, not shown)", c->peer, size);
    if (data[size] != '\r' || data[size + 1] != '\n') {
        out_str(c, "CLIENT_ERROR bad command line termination\r\n");
        return;
    }
    struct auth_tok tok[2];
    const char *end = data + strnlen(data, size); /* memcached: a C string */
    if (auth_split(data, end, tok, 2) < 2) {
        out_str(c, "CLIENT_ERROR bad authentication token format\r\n");
        return;
    }
    CNT_INC(w, auth_cmds);
    if (!auth_check(w->net->auth, tok[0].p, tok[0].n, tok[1].p, tok[1].n)) {
        CNT_INC(w, auth_errors);
        say(SAY_VERBOSE, "%s: login failed", c->peer);
        out_str(c, "CLIENT_ERROR authentication failure\r\n");
        return;
    }
    say(SAY_VERBOSE, "%s: logged in", c->peer);
    c->authed = true;
    out_str(c, "STORED\r\n");
}

size_t
cmd_auth_ascii(struct conn *c, const char *buf, size_t len)
{
    const char *nl = memchr(buf, '\n', len);
    if (!nl) {
        if (len > AUTH_LINE_WAIT) {
            say(SAY_VERBOSE,
                "%s: no end of line in %zu bytes before login; "
                "closing",
                c->peer, len);
            conn_drain(c);
        }
        return 0;
    }
    size_t line = (size_t)(nl - buf) + 1;
    struct auth_tok tok[5];
    unsigned n = auth_split(buf, buf + strnlen(buf, line - 1), tok, 5);
    if (n >= 1 && tok[0].n == 14 && memcmp(tok[0].p, "mcdb_replicate", 14) == 0)
        return CMD_AUTH_PASS;
    uint32_t size;
    if (n < 5 || tok[0].n != 3 || memcmp(tok[0].p, "set", 3) != 0 ||
        !auth_size(&tok[4], &size))
        return auth_refuse(c, line);
    if (size > AUTH_DATA_MAX) {
        say(SAY_VERBOSE, "%s: a login of %u bytes; closing", c->peer, size);
        conn_drain(c);
        return 0;
    }
    if (len - line < (size_t)size + 2)
        return 0;
    size_t shown = line - 1 - (line >= 2 && buf[line - 2] == '\r');
    say(SAY_DEBUG, "%s < %.*s", c->peer, (int)shown, buf);
    auth_login(c, buf + line, size);
    return line + size + 2;
}

/*
 * SASL over the binary protocol, as memcached 1.6.18 answers with -S and
 * Cyrus SASL's PLAIN, the one mechanism offered:
 *
 *   SASL_LIST_MECHS  "PLAIN"
 *   SASL_AUTH        key: the mechanism, "PLAIN" in any case (none: EINVAL
 *                    and the connection closes; over AUTH_MECH_MAX bytes:
 *                    EINVAL); value: authzid NUL user NUL password, the
 *                    authzid empty or the user's own. Answers OK
 *                    "Authenticated" (auth_cmds) or AUTH_ERROR "Auth
 *                    failure." (auth_cmds, auth_errors); an empty value
 *                    answers AUTH_CONTINUE and the next SASL_STEP carries
 *                    the credentials.
 *   SASL_STEP        completes an AUTH that was continued; any other is
 *                    AUTH_ERROR.
 *
 * Every AUTH and STEP first logs the connection out, as memcached's does
 * (init_sasl_conn): a failed one after a login leaves it logged out.
 * Before login every other opcode but VERSION is AUTH_ERROR and closes the
 * connection (cmd_bin.c's gate). The value is never logged.
 */
#define AUTH_MECH_MAX 32 /* memcached's MAX_SASL_MECH_LEN */

static void
sasl_reply(struct conn *c, const struct bin_req *r, uint16_t status,
           const char *body)
{
    struct bin_res h = {
        .opcode = r->opcode, .opaque = r->opaque, .status = status};
    out_bin(c, &h, NULL, 0, NULL, 0, body, strlen(body));
}

/* authzid NUL user NUL password, checked against the file. */
static bool
sasl_plain(const auth_t *a, const char *v, size_t n)
{
    const char *z = memchr(v, '\0', n);
    if (!z)
        return false;
    const char *user = z + 1, *end = v + n;
    const char *u = memchr(user, '\0', (size_t)(end - user));
    if (!u)
        return false;
    size_t zlen = (size_t)(z - v), ulen = (size_t)(u - user);
    const char *pass = u + 1;
    size_t plen = (size_t)(end - pass);
    if (memchr(pass, '\0', plen))
        return false; /* more than three parts */
    if (zlen && (zlen != ulen || memcmp(v, user, ulen) != 0))
        return false; /* acting as someone else */
    return auth_check(a, user, ulen, pass, plen);
}

bool
cmd_auth_sasl(struct conn *c, const struct bin_req *r)
{
    struct worker *w = c->w;
    if (r->cmd == BIN_SASL_LIST_MECHS) {
        sasl_reply(c, r, BIN_OK, "PLAIN");
        return true;
    }
    if (r->klen == 0) {
        sasl_reply(c, r, BIN_EINVAL, bin_status_text(BIN_EINVAL));
        conn_drain(c);
        return true;
    }
    if (r->klen > AUTH_MECH_MAX) {
        sasl_reply(c, r, BIN_EINVAL, bin_status_text(BIN_EINVAL));
        return true;
    }
    c->authed = false;
    bool waiting = c->sasl_wait;
    c->sasl_wait = false;
    bool plain = r->klen == 5 && strncasecmp(r->key, "PLAIN", 5) == 0;
    bool ok;
    if (r->cmd == BIN_SASL_AUTH) {
        if (plain && r->vlen == 0) {
            c->sasl_wait = true;
            sasl_reply(c, r, BIN_AUTH_CONTINUE, "");
            return true;
        }
        ok = plain && sasl_plain(w->net->auth, r->value, r->vlen);
    } else {
        ok = waiting && sasl_plain(w->net->auth, r->value, r->vlen);
    }
    CNT_INC(w, auth_cmds);
    if (!ok) {
        CNT_INC(w, auth_errors);
        say(SAY_VERBOSE, "%s: login failed (SASL)", c->peer);
        sasl_reply(c, r, BIN_AUTH_ERROR, bin_status_text(BIN_AUTH_ERROR));
        return true;
    }
    say(SAY_VERBOSE, "%s: logged in (SASL)", c->peer);
    c->authed = true;
    sasl_reply(c, r, BIN_OK, "Authenticated");
    return true;
}
