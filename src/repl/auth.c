/*
 * auth: who may replicate. Without --repl-secret-file only peers on
 * loopback may; with it, both ends prove they know the secret and it never
 * crosses the wire:
 *   key      = BLAKE2b-256 of the secret file's contents (libsodium's
 *              crypto_generichash), leading and trailing white space cut
 *   primary  sends a random 32-byte nonce Np (HELLO)
 *   replica  sends its nonce Nr and HMAC-SHA-512-256(key, "replica" Np Nr)
 *            (crypto_auth; IDENT)
 *   primary  checks it (constant time) and answers with
 *            HMAC(key, "primary" Np Nr) (PLAN), which the replica checks,
 *            so a replica never follows an impostor either.
 * Fresh nonces on both sides make every MAC single-use.
 */
#include "repl/repl_int.h"
#include "util/say.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

_Static_assert(RS_MAC == crypto_auth_BYTES, "the MAC's size");
_Static_assert(32 == crypto_auth_KEYBYTES, "the key's size");

int
repl_key_load(struct repl_key *k, const char *path, char *err, size_t errlen)
{
    memset(k, 0, sizeof(*k));
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "--repl-secret-file %s: %s", path,
                 strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        say(SAY_WARN, "%s can be read by other users; chmod 600 it", path);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf), f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    size_t a = 0;
    while (a < n && isspace((unsigned char)buf[a]))
        a++;
    while (n > a && isspace((unsigned char)buf[n - 1]))
        n--;
    if (n - a < 8 || more) {
        snprintf(err, errlen,
                 "--repl-secret-file %s: the secret must be 8 to 4096 bytes",
                 path);
        sodium_memzero(buf, sizeof(buf));
        return -1;
    }
    crypto_generichash(k->key, sizeof(k->key), (unsigned char *)buf + a, n - a,
                       NULL, 0);
    sodium_memzero(buf, sizeof(buf));
    k->set = true;
    return 0;
}

void
repl_nonce(uint8_t nonce[RS_NONCE])
{
    randombytes_buf(nonce, RS_NONCE);
}

/* side || Np || Nr: the same bytes whichever end computes it. */
static size_t
mac_msg(unsigned char *msg, const char *side, const uint8_t np[RS_NONCE],
        const uint8_t nr[RS_NONCE])
{
    size_t n = strlen(side);
    memcpy(msg, side, n);
    memcpy(msg + n, np, RS_NONCE);
    memcpy(msg + n + RS_NONCE, nr, RS_NONCE);
    return n + 2 * RS_NONCE;
}

void
repl_mac(const struct repl_key *k, const char *side, const uint8_t np[RS_NONCE],
         const uint8_t nr[RS_NONCE], uint8_t mac[RS_MAC])
{
    unsigned char msg[16 + 2 * RS_NONCE];
    crypto_auth(mac, msg, mac_msg(msg, side, np, nr), k->key);
}

bool
repl_mac_ok(const struct repl_key *k, const char *side,
            const uint8_t np[RS_NONCE], const uint8_t nr[RS_NONCE],
            const uint8_t mac[RS_MAC])
{
    unsigned char msg[16 + 2 * RS_NONCE];
    return crypto_auth_verify(mac, msg, mac_msg(msg, side, np, nr), k->key) ==
           0;
}

bool
repl_is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&ss;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) &&
               a->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}
