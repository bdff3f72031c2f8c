/*
 * source: the rows mcdb-sync reads (tools/mcdb-sync.c), from its standard
 * input or from the standard output of a command it starts (sh -c), in one
 * of three formats:
 *
 *   jsonl  one JSON object a line: "key" (string), "version" (integer, or a
 *          string of digits; with --version-unit s or ms also a decimal
 *          fraction), "value" (string) or "value_base64" (string), and
 *          optionally "flags" (0 to 4294967295) and "exptime" (>= 0).
 *          Other members are ignored.
 *   tsv    key TAB version TAB value [TAB flags [TAB exptime]], no header,
 *          with the backslash escapes of PostgreSQL's COPY text format and
 *          mysql -B: \\ \t \n \r \0 \b \f \v and \NNN (octal); \N (NULL)
 *          is an error.
 *   csv    RFC 4180 with a header naming the columns key, version, value
 *          (or value_base64), and optionally flags and exptime, in any
 *          order; other columns are ignored; a quoted field may hold
 *          commas, "" and line breaks; an empty flags or exptime is absent.
 *
 * Empty lines are skipped (jsonl, tsv). Every row is checked before it is
 * handed out: a key of 1 to 250 bytes without spaces or control characters
 * (the text protocol cannot carry others), a version above 0 that fits 64
 * bits once in microseconds. A bad row is an error naming its line (the
 * line it starts on, for csv), and the source stops there.
 */
#ifndef MCDB_TOOLS_SYNC_SOURCE_H
#define MCDB_TOOLS_SYNC_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum source_format { SOURCE_JSONL, SOURCE_TSV, SOURCE_CSV };

/* The row's version as given is multiplied by 10^6, 10^3, 1 or 1 (none:
 * a row version that every writer stores with meta's E). */
enum source_unit { UNIT_S, UNIT_MS, UNIT_US, UNIT_NONE };

#define SOURCE_KEY_MAX 250

struct source_row {
    char *key; /* malloc'd, NUL-terminated (a key holds no NUL) */
    size_t klen;
    char *value; /* malloc'd, may hold any byte */
    size_t vlen;
    uint64_t version; /* in the store's unit: microseconds, or as given */
    uint32_t flags;
    bool has_flags;
    bool has_exptime;
    int64_t exptime;
    uint64_t line; /* where the row starts, from 1 */
};

struct source;

/*
 * Read rows from cmd's standard output (NULL: this process's standard
 * input). NULL on failure, with why.
 */
struct source *source_open(const char *cmd, enum source_format fmt,
                           enum source_unit unit, char *why, size_t whylen);

/*
 * The next row into *row (owned by the caller: source_row_free): 1, or 0
 * at the end, or -1 with why ("line 12: ..."). After 0 or -1 it returns
 * the same again.
 */
int source_next(struct source *s, struct source_row *row, char *why,
                size_t whylen);

/* Bytes read so far, and the input's size when it is a regular file (else
 * 0), for the progress bar. */
uint64_t source_bytes(const struct source *s);
uint64_t source_size(const struct source *s);

/*
 * Close; a command is waited for (first sent SIGTERM if the source did not
 * reach its end). 0, or -1 when the command failed (exit status or
 * signal, in why): its output may be incomplete.
 */
int source_close(struct source *s, char *why, size_t whylen);

void source_row_free(struct source_row *row);

/* "a version that is not ...": NULL if text[0, n) is a version in unit,
 * then *us holds it in the store's unit. */
const char *source_parse_version(const char *text, size_t n,
                                 enum source_unit unit, uint64_t *us);

#endif
