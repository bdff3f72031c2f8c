/*
 * auth: the --auth-file and the check of a login against it.
 *
 * The file, as memcached 1.6.18's -Y reads it (authfile.c): one entry per
 * line, "user:password"; the user ends at the first ':', the password is
 * the rest of the line (it may hold ':'); lines end in "\n" or "\r\n", the
 * last one may lack it. No comments ("#x:y" is the user "#x"), no blank
 * lines (memcached refuses the file). Where memcached is silent mcdbd
 * refuses the file instead, naming the line, so that no entry is one that
 * cannot log in:
 *   - memcached keeps the first 8 entries and drops the rest unsaid; mcdbd
 *     takes up to AUTH_MAX_ENTRIES and refuses more;
 *   - memcached splits a line longer than 255 bytes into two entries;
 *     mcdbd refuses it;
 *   - an empty user or password, or one with a space or a control
 *     character, cannot be sent by the ASCII login (its data is "user
 *     password", split at spaces) nor always by SASL PLAIN (NUL-separated);
 *     a user twice is a typo. mcdbd refuses these; memcached takes them.
 *   - a file with no entry locks everyone out: refused.
 *
 * What is kept: the keyed BLAKE2b-256 (libsodium's crypto_generichash, a
 * random key per process) of each user and password, never the text, so a
 * core dump does not hold the passwords. A check hashes the pair it is
 * given and compares it with every entry with sodium_memcmp, without
 * stopping at a match: the time taken says neither whether nor where it
 * matched, nor how much of it did.
 */
#include "net/auth.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/say.h"

#define AUTH_HASH 32 /* crypto_generichash_BYTES */
#define AUTH_MAX_FILE ((size_t)AUTH_MAX_ENTRIES * (AUTH_MAX_LINE + 2))

struct auth_entry {
    uint8_t user[AUTH_HASH];
    uint8_t pass[AUTH_HASH];
};

struct auth {
    uint8_t key[crypto_generichash_KEYBYTES];
    unsigned n;
    struct auth_entry *e;
};

static void
auth_hash(const auth_t *a, const char *s, size_t len, uint8_t out[AUTH_HASH])
{
    crypto_generichash(out, AUTH_HASH, (const unsigned char *)s, len, a->key,
                       sizeof(a->key));
}

/* Why the user or password of one line cannot be used; NULL if it can. */
static const char *
auth_bad_field(const char *s, size_t len, const char *what)
{
    if (len == 0)
        return what[0] == 'u' ? "an empty user name (every line is "
                                "user:password)"
                              : "an empty password";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= ' ' || ch == 0x7f)
            return what[0] == 'u'
                       ? "a space or control character in the user name "
                         "(the ASCII login separates user and password by "
                         "a space)"
                       : "a space or control character in the password "
                         "(the ASCII login separates user and password by "
                         "a space)";
    }
    return NULL;
}

/* Parse the file's text into a; NULL or why it is refused (*line set). */
static const char *
auth_parse(auth_t *a, const char *text, size_t len, unsigned *line)
{
    size_t pos = 0;
    *line = 0;
    while (pos < len) {
        ++*line;
        const char *l = text + pos;
        const char *nl = memchr(l, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - l) : len - pos;
        pos += n + (nl != NULL);
        if (n && l[n - 1] == '\r')
            n--;
        if (n > AUTH_MAX_LINE)
            return "longer than 255 bytes (memcached would split it)";
        if (n == 0)
            return "empty (every line is user:password; memcached refuses "
                   "blank lines too)";
        const char *colon = memchr(l, ':', n);
        if (!colon)
            return "no ':' (every line is user:password)";
        size_t ulen = (size_t)(colon - l), plen = n - ulen - 1;
        const char *why = auth_bad_field(l, ulen, "user");
        if (!why)
            why = auth_bad_field(colon + 1, plen, "password");
        if (why)
            return why;
        if (a->n == AUTH_MAX_ENTRIES)
            return "one entry too many (at most 1024)";
        struct auth_entry *e = &a->e[a->n];
        auth_hash(a, l, ulen, e->user);
        auth_hash(a, colon + 1, plen, e->pass);
        for (unsigned i = 0; i < a->n; i++)
            if (memcmp(a->e[i].user, e->user, AUTH_HASH) == 0)
                return "the same user as an earlier line";
        a->n++;
    }
    return a->n ? NULL : "no user:password line: nobody could log in";
}

int
auth_load(const char *path, auth_t **out, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "--auth-file %s: %s", path, strerror(errno));
        return -1;
    }
    char *text = malloc(AUTH_MAX_FILE + 1);
    size_t len = text ? fread(text, 1, AUTH_MAX_FILE + 1, f) : 0;
    bool failed = !text || ferror(f);
    fclose(f);
    if (failed || len > AUTH_MAX_FILE) {
        snprintf(err, errlen, "--auth-file %s: %s", path,
                 failed ? "cannot be read"
                        : "too large (at most 1024 lines of 255 bytes)");
        free(text);
        return -1;
    }
    auth_t *a = calloc(1, sizeof(*a));
    a->e = calloc(AUTH_MAX_ENTRIES, sizeof(*a->e));
    randombytes_buf(a->key, sizeof(a->key));
    unsigned line;
    const char *why = auth_parse(a, text, len, &line);
    sodium_memzero(text, len);
    free(text);
    if (why) {
        if (line)
            snprintf(err, errlen, "--auth-file %s: line %u: %s", path, line,
                     why);
        else
            snprintf(err, errlen, "--auth-file %s: %s", path, why);
        auth_free(a);
        return -1;
    }
    *out = a;
    return 0;
}

bool
auth_check(const auth_t *a, const char *user, size_t ulen, const char *pass,
           size_t plen)
{
    uint8_t hu[AUTH_HASH], hp[AUTH_HASH];
    auth_hash(a, user, ulen, hu);
    auth_hash(a, pass, plen, hp);
    int ok = 0;
    for (unsigned i = 0; i < a->n; i++) {
        int same_user = sodium_memcmp(a->e[i].user, hu, AUTH_HASH) == 0;
        int same_pass = sodium_memcmp(a->e[i].pass, hp, AUTH_HASH) == 0;
        ok |= same_user & same_pass;
    }
    sodium_memzero(hp, sizeof(hp));
    return ok != 0;
}

unsigned
auth_count(const auth_t *a)
{
    return a->n;
}

void
auth_free(auth_t *a)
{
    if (!a)
        return;
    sodium_memzero(a->key, sizeof(a->key));
    free(a->e);
    free(a);
}
