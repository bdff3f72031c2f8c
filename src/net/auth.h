/*
 * auth: who may use the server (--auth-file). One file of "user:password"
 * lines serves both of memcached's methods, the ASCII login (a set whose
 * data is "user password") and SASL PLAIN over the binary protocol.
 *
 *   auth_t *a;
 *   if (auth_load(path, &a, err, sizeof(err)) != 0) ... err names file, line
 *   auth_check(a, user, ulen, pass, plen)             constant time
 *   auth_free(a);
 *
 * The format is memcached's -Y (its authfile.c) and auth.c's top comment
 * says where mcdbd is stricter.
 */
#ifndef MCDB_AUTH_H
#define MCDB_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define AUTH_MAX_ENTRIES 1024 /* one login compares against every entry */
#define AUTH_MAX_LINE 255     /* memcached's fgets of 256 bytes */

typedef struct auth auth_t;

/* Read path; 0, or -1 with the reason (file and line) in err and *out
 * untouched. */
int auth_load(const char *path, auth_t **out, char *err, size_t errlen);

/* true when user and pass are one of the file's entries. Takes the same
 * time whatever they are and whichever entry matches. */
bool auth_check(const auth_t *a, const char *user, size_t ulen,
                const char *pass, size_t plen);

/* How many entries the file had. */
unsigned auth_count(const auth_t *a);

void auth_free(auth_t *a);

#endif
