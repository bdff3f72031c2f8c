/*
 * usage: one option of a program's --help, in the shape GNU programs print
 * and help2man turns into a man page (mcdbd and every tool use it, so that
 * the man pages generated from --help read alike):
 *
 *   -p, --port=PORT             TCP port to listen on (default: 11211)
 *       --data-dir=DIR          directory that holds the log (default:
 *                               ./data)
 */
#ifndef MCDB_USAGE_H
#define MCDB_USAGE_H

#include <stdio.h>

/* The column the help text starts at and the width it is wrapped to. */
#define USAGE_COLUMN 32
#define USAGE_WIDTH 79

/*
 * Print "  -s, --long=METAVAR" (short 0: none; metavar "" or NULL: the option
 * takes no value), then help and " (default: DEF)" when def is neither NULL
 * nor "", wrapped at USAGE_WIDTH onto lines indented to USAGE_COLUMN. An
 * option too long for its column has its help start on the next line.
 */
void usage_option(FILE *out, int sname, const char *lname, const char *metavar,
                  const char *help, const char *def);

#endif
