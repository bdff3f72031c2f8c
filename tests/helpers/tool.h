/*
 * Helpers for the tests of the offline tools (tests/tools): run a program
 * and capture what it prints, damage a file byte by byte.
 */
#ifndef MCDB_TEST_TOOL_H
#define MCDB_TEST_TOOL_H

#include <stddef.h>
#include <stdint.h>

/* Path of a tool built beside the tests: MCDB_BUILD_DIR "/" name. */
const char *tt_tool(const char *name);

/*
 * Run argv[0] (a path, or a name searched in PATH) with argv (NULL-
 * terminated), its stdout and stderr together captured in *out (malloc'd,
 * NUL-terminated; may be NULL). Returns the exit status, or -1 when it did
 * not exit normally (killed by a signal, or could not run: 127).
 */
int tt_run(char **out, const char *const *argv);

/* XOR the byte at pos of path with mask (0xff when mask is 0). */
void tt_flip(const char *path, uint64_t pos, uint8_t mask);

/* Whole file, malloc'd; *len its size. NULL if it cannot be read. */
char *tt_slurp(const char *path, size_t *len);

#endif
