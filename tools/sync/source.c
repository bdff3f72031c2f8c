/*
 * source: reading and checking mcdb-sync's rows (the formats are in
 * source.h). One line (one csv record) is read with getline(), split into
 * fields, unescaped and checked into a struct source_row; nothing is kept
 * between rows but the csv header's column map.
 */
#include "sync/source.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    COL_KEY,
    COL_VERSION,
    COL_VALUE,
    COL_VALUE64,
    COL_FLAGS,
    COL_EXPTIME,
    COL_COUNT
};
static const char *const col_names[COL_COUNT] = {
    "key", "version", "value", "value_base64", "flags", "exptime"};

struct source {
    FILE *in;
    pid_t pid; /* the command, or 0 */
    const char *cmd;
    enum source_format fmt;
    enum source_unit unit;
    int state; /* 0 reading, 1 at the end, -1 failed */
    char err[256];
    char *line;
    size_t cap;
    uint64_t lineno, bytes, size;
    int csv_col[COL_COUNT]; /* column of each name, -1: absent */
    size_t csv_fields;      /* columns in the header, 0 before it */
    /* the fields of the current line or record */
    char *buf; /* their unescaped bytes, one after another */
    size_t buflen, bufcap;
    size_t fstart[64], flen[64];
    size_t nfields;
};

static void fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

struct source *
source_open(const char *cmd, enum source_format fmt, enum source_unit unit,
            char *why, size_t whylen)
{
    struct source *s = calloc(1, sizeof(*s));
    if (!s) {
        fail(why, whylen, "out of memory");
        return NULL;
    }
    s->fmt = fmt;
    s->unit = unit;
    s->cmd = cmd;
    if (!cmd) {
        s->in = stdin;
        struct stat st;
        if (fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode))
            s->size = (uint64_t)st.st_size;
        return s;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        fail(why, whylen, "pipe: %s", strerror(errno));
        free(s);
        return NULL;
    }
    fflush(NULL);
    s->pid = fork();
    if (s->pid < 0) {
        fail(why, whylen, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        free(s);
        return NULL;
    }
    if (s->pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    s->in = fdopen(p[0], "r");
    return s;
}

uint64_t
source_bytes(const struct source *s)
{
    return s->bytes;
}

uint64_t
source_size(const struct source *s)
{
    return s->size;
}

void
source_row_free(struct source_row *row)
{
    free(row->key);
    free(row->value);
    row->key = row->value = NULL;
}

/* ---- checking fields ---- */

const char *
source_parse_version(const char *t, size_t n, enum source_unit unit,
                     uint64_t *out)
{
    static const unsigned digits_of[] = {6, 3, 0, 0};
    unsigned fd = digits_of[unit];
    uint64_t v = 0;
    size_t i = 0;
    if (n == 0)
        return "is empty";
    for (; i < n && t[i] >= '0' && t[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return "does not fit 64 bits";
        v = v * 10 + (uint64_t)(t[i] - '0');
    }
    if (i == 0)
        return "is not a number";
    unsigned frac = 0;
    uint64_t fv = 0;
    if (i < n && t[i] == '.') {
        if (fd == 0)
            return "is not an integer (a fraction needs --version-unit s "
                   "or ms)";
        for (i++; i < n && t[i] >= '0' && t[i] <= '9'; i++)
            if (frac < fd) {
                fv = fv * 10 + (uint64_t)(t[i] - '0');
                frac++;
            }
    }
    if (i != n)
        return "is not a number";
    for (; frac < fd; frac++)
        fv *= 10;
    uint64_t scale = fd == 6 ? 1000000 : fd == 3 ? 1000 : 1;
    if (v > (UINT64_MAX - fv) / scale)
        return "does not fit 64 bits in microseconds";
    v = v * scale + fv;
    if (v == 0)
        return "must be above 0";
    *out = v;
    return NULL;
}

static const char *
check_key(const char *k, size_t n)
{
    if (n == 0)
        return "the key is empty";
    if (n > SOURCE_KEY_MAX)
        return "the key is longer than 250 bytes";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] <= ' ' || k[i] == 0x7f)
            return "the key holds a space or a control character (the text "
                   "protocol cannot carry it)";
    return NULL;
}

/* A decimal integer in [0, max]: 0, or -1. */
static int
parse_uint(const char *t, size_t n, uint64_t max, uint64_t *v)
{
    uint64_t x = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (t[i] < '0' || t[i] > '9' || x > (max - (uint64_t)(t[i] - '0')) / 10)
            return -1;
        x = x * 10 + (uint64_t)(t[i] - '0');
    }
    *v = x;
    return 0;
}

static char *
dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

/* A row from its fields (text, length; value64: value is base64; flags
 * and exptime may be NULL): NULL, or why not. */
static const char *
make_row(struct source *s, struct source_row *row, const char *key, size_t klen,
         const char *ver, size_t verlen, const char *val, size_t vlen,
         bool value64, const char *flags, size_t flen, const char *exp,
         size_t elen, char *why, size_t whylen)
{
    const char *bad = check_key(key, klen);
    if (bad)
        return bad;
    bad = source_parse_version(ver, verlen, s->unit, &row->version);
    if (bad) {
        snprintf(why, whylen, "the version '%.*s' %s",
                 (int)(verlen > 40 ? 40 : verlen), ver, bad);
        return why;
    }
    uint64_t n;
    if ((row->has_flags = flags != NULL)) {
        if (parse_uint(flags, flen, UINT32_MAX, &n))
            return "flags is not a number from 0 to 4294967295";
        row->flags = (uint32_t)n;
    }
    if ((row->has_exptime = exp != NULL)) {
        if (parse_uint(exp, elen, INT64_MAX, &n))
            return "exptime is not a number of 0 or more";
        row->exptime = (int64_t)n;
    }
    row->key = dup_bytes(key, klen);
    row->klen = klen;
    if (value64) {
        size_t cap = vlen / 4 * 3 + 3;
        row->value = malloc(cap + 1);
        if (row->value &&
            sodium_base642bin((unsigned char *)row->value, cap, val, vlen,
                              "\r\n", &row->vlen, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0) {
            source_row_free(row);
            return "value_base64 is not base64";
        }
    } else {
        row->value = dup_bytes(val, vlen);
        row->vlen = vlen;
    }
    if (!row->key || !row->value) {
        source_row_free(row);
        return "out of memory";
    }
    return NULL;
}

/* ---- jsonl ---- */

static const char *
json_version(struct source *s, json_t *v, char *buf, size_t buflen,
             const char **text, size_t *n)
{
    if (json_is_integer(v)) {
        *n = (size_t)snprintf(buf, buflen, "%" JSON_INTEGER_FORMAT,
                              json_integer_value(v));
    } else if (json_is_real(v)) {
        if (s->unit != UNIT_S && s->unit != UNIT_MS)
            return "version is not an integer (a fraction needs "
                   "--version-unit s or ms)";
        *n = (size_t)snprintf(buf, buflen, "%.6f", json_real_value(v));
    } else if (json_is_string(v)) {
        *text = json_string_value(v);
        *n = json_string_length(v);
        return NULL;
    } else {
        return "version is not a number";
    }
    *text = buf;
    return NULL;
}

static const char *
row_jsonl(struct source *s, const char *line, size_t len,
          struct source_row *row, char *why, size_t whylen)
{
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_ALLOW_NUL, &je);
    const char *bad = NULL;
    if (!o) {
        snprintf(why, whylen, "not JSON: %s (column %d)", je.text, je.column);
        return why;
    }
    json_t *k = json_object_get(o, "key"), *v = json_object_get(o, "version");
    json_t *val = json_object_get(o, "value");
    json_t *val64 = json_object_get(o, "value_base64");
    json_t *fl = json_object_get(o, "flags"),
           *ex = json_object_get(o, "exptime");
    char vbuf[64], fbuf[32], ebuf[32];
    const char *vtext = NULL;
    size_t vn = 0;
    if (!json_is_object(o))
        bad = "not a JSON object";
    else if (!json_is_string(k))
        bad = "no \"key\" string";
    else if (!v)
        bad = "no \"version\"";
    else if (!!val == !!val64)
        bad = "needs one of \"value\" and \"value_base64\"";
    else if (!json_is_string(val ? val : val64))
        bad = val ? "\"value\" is not a string"
                  : "\"value_base64\" is not a "
                    "string";
    else if ((fl && !json_is_integer(fl)) || (ex && !json_is_integer(ex)))
        bad = fl && !json_is_integer(fl) ? "\"flags\" is not an integer"
                                         : "\"exptime\" is not an integer";
    if (!bad)
        bad = json_version(s, v, vbuf, sizeof(vbuf), &vtext, &vn);
    if (!bad) {
        json_t *vs = val ? val : val64;
        int fn = fl ? snprintf(fbuf, sizeof(fbuf), "%" JSON_INTEGER_FORMAT,
                               json_integer_value(fl))
                    : 0;
        int en = ex ? snprintf(ebuf, sizeof(ebuf), "%" JSON_INTEGER_FORMAT,
                               json_integer_value(ex))
                    : 0;
        bad = make_row(s, row, json_string_value(k), json_string_length(k),
                       vtext, vn, json_string_value(vs), json_string_length(vs),
                       val64 != NULL, fl ? fbuf : NULL, (size_t)fn,
                       ex ? ebuf : NULL, (size_t)en, why, whylen);
    }
    json_decref(o);
    return bad;
}

/* ---- tsv and csv: fields into s->buf ---- */

static int
buf_put(struct source *s, const char *p, size_t n)
{
    if (s->buflen + n > s->bufcap) {
        size_t cap = s->bufcap ? s->bufcap : 4096;
        while (cap < s->buflen + n)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b)
            return -1;
        s->buf = b;
        s->bufcap = cap;
    }
    memcpy(s->buf + s->buflen, p, n);
    s->buflen += n;
    return 0;
}

static const char *
field_start(struct source *s)
{
    if (s->nfields == sizeof(s->fstart) / sizeof(s->fstart[0]))
        return "more than 64 fields";
    s->fstart[s->nfields] = s->buflen;
    s->flen[s->nfields++] = 0;
    return NULL;
}

static const char *
field_byte(struct source *s, char c)
{
    if (buf_put(s, &c, 1))
        return "out of memory";
    s->flen[s->nfields - 1]++;
    return NULL;
}

static const char *
split_tsv(struct source *s, const char *line, size_t len, char *why,
          size_t whylen)
{
    const char *bad = field_start(s);
    for (size_t i = 0; i < len && !bad; i++) {
        char c = line[i];
        if (c == '\t') {
            bad = field_start(s);
            continue;
        }
        if (c != '\\') {
            bad = field_byte(s, c);
            continue;
        }
        if (++i == len)
            return "a backslash at the end of the line";
        switch (line[i]) {
        case '\\':
            c = '\\';
            break;
        case 't':
            c = '\t';
            break;
        case 'n':
            c = '\n';
            break;
        case 'r':
            c = '\r';
            break;
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'v':
            c = '\v';
            break;
        case 'N':
            return "field is NULL (\\N)";
        default:
            if (line[i] >= '0' && line[i] <= '7') {
                unsigned o = 0, d = 0;
                for (; d < 3 && i < len && line[i] >= '0' && line[i] <= '7';
                     d++, i++)
                    o = o * 8 + (unsigned)(line[i] - '0');
                i--;
                c = (char)o;
                break;
            }
            snprintf(why, whylen, "unknown escape '\\%c'", line[i]);
            return why;
        }
        bad = field_byte(s, c);
    }
    return bad;
}

/* Read one more line into s->line; its length, or -1 at the end. */
static ssize_t
read_line(struct source *s)
{
    ssize_t n = getline(&s->line, &s->cap, s->in);
    if (n >= 0) {
        s->lineno++;
        s->bytes += (uint64_t)n;
    }
    return n;
}

/* One csv record (reading more lines while a quote is open). */
static const char *
split_csv(struct source *s, ssize_t len)
{
    const char *bad = field_start(s);
    bool quoted = false, was_quoted = false;
    for (;;) {
        for (ssize_t i = 0; i < len && !bad; i++) {
            char c = s->line[i];
            if (quoted) {
                if (c != '"')
                    bad = field_byte(s, c);
                else if (i + 1 < len && s->line[i + 1] == '"')
                    bad = field_byte(s, s->line[i++]);
                else
                    quoted = false;
            } else if (c == '"') {
                if (s->flen[s->nfields - 1] || was_quoted)
                    return "a quote inside an unquoted field";
                quoted = was_quoted = true;
            } else if (c == ',') {
                bad = field_start(s);
                was_quoted = false;
            } else if (c == '\n' ||
                       (c == '\r' && i + 1 < len && s->line[i + 1] == '\n')) {
                return bad;
            } else if (was_quoted) {
                return "text after a closing quote";
            } else {
                bad = field_byte(s, c);
            }
        }
        if (bad || !quoted)
            return bad;
        len = read_line(s);
        if (len < 0)
            return "the file ends inside a quoted field";
    }
}

static const char *
csv_header(struct source *s, char *why, size_t whylen)
{
    for (int c = 0; c < COL_COUNT; c++)
        s->csv_col[c] = -1;
    for (size_t f = 0; f < s->nfields; f++)
        for (int c = 0; c < COL_COUNT; c++)
            if (s->flen[f] == strlen(col_names[c]) &&
                memcmp(s->buf + s->fstart[f], col_names[c], s->flen[f]) == 0)
                s->csv_col[c] = (int)f;
    if (s->csv_col[COL_KEY] < 0 || s->csv_col[COL_VERSION] < 0 ||
        (s->csv_col[COL_VALUE] < 0) == (s->csv_col[COL_VALUE64] < 0)) {
        snprintf(why, whylen,
                 "the header needs the columns key, version and one of "
                 "value and value_base64");
        return why;
    }
    return NULL;
}

/* Field f of the current record, or NULL when absent (empty, for the
 * optional columns). */
static const char *
field(struct source *s, int col, size_t *n, bool optional)
{
    int f = s->fmt == SOURCE_CSV ? s->csv_col[col] : col;
    if (f < 0 || (size_t)f >= s->nfields || (optional && !s->flen[f]))
        return NULL;
    *n = s->flen[f];
    return s->buf + s->fstart[f];
}

static const char *
row_fields(struct source *s, struct source_row *row, char *why, size_t whylen)
{
    size_t kn = 0, vn = 0, valn = 0, fn = 0, en = 0;
    if (s->fmt == SOURCE_TSV && (s->nfields < 3 || s->nfields > 5)) {
        snprintf(why, whylen,
                 "%zu fields; expected key, version, value[, flags[, "
                 "exptime]] separated by tabs",
                 s->nfields);
        return why;
    }
    if (s->fmt == SOURCE_CSV && s->nfields != s->csv_fields) {
        snprintf(why, whylen, "%zu fields; the header has %zu", s->nfields,
                 s->csv_fields);
        return why;
    }
    bool v64 = s->fmt == SOURCE_CSV && s->csv_col[COL_VALUE64] >= 0;
    const char *k = field(s, COL_KEY, &kn, false);
    const char *v = field(s, COL_VERSION, &vn, false);
    const char *val = field(s, v64 ? COL_VALUE64 : COL_VALUE, &valn, false);
    int fcol = s->fmt == SOURCE_CSV ? COL_FLAGS : 3;
    int ecol = s->fmt == SOURCE_CSV ? COL_EXPTIME : 4;
    const char *fl = field(s, fcol, &fn, true);
    const char *ex = field(s, ecol, &en, true);
    return make_row(s, row, k, kn, v, vn, val ? val : "", valn, v64, fl, fn, ex,
                    en, why, whylen);
}

/* ---- the next row ---- */

int
source_next(struct source *s, struct source_row *row, char *why, size_t whylen)
{
    char detail[200];
    memset(row, 0, sizeof(*row));
    while (s->state == 0) {
        ssize_t len = read_line(s);
        if (len < 0) {
            if (ferror(s->in)) {
                snprintf(s->err, sizeof(s->err), "after line %llu: %s",
                         (unsigned long long)s->lineno, strerror(errno));
                s->state = -1;
            } else if (s->fmt == SOURCE_CSV && !s->csv_fields) {
                snprintf(s->err, sizeof(s->err),
                         "no csv header (key,version,value,...)");
                s->state = -1;
            } else {
                s->state = 1;
            }
            break;
        }
        uint64_t first = s->lineno;
        size_t n = (size_t)len;
        if (s->fmt != SOURCE_CSV && n && s->line[n - 1] == '\n')
            n--;
        if (n == 0 || (s->fmt == SOURCE_CSV && s->line[0] == '\n') ||
            (s->fmt == SOURCE_CSV && n == 2 && s->line[0] == '\r'))
            continue;
        const char *bad;
        s->buflen = s->nfields = 0;
        if (s->fmt == SOURCE_JSONL) {
            bad = row_jsonl(s, s->line, n, row, detail, sizeof(detail));
        } else {
            bad = s->fmt == SOURCE_TSV
                      ? split_tsv(s, s->line, n, detail, sizeof(detail))
                      : split_csv(s, len);
            if (!bad && s->fmt == SOURCE_CSV && !s->csv_fields) {
                bad = csv_header(s, detail, sizeof(detail));
                s->csv_fields = s->nfields;
                if (!bad)
                    continue;
            }
            if (!bad)
                bad = row_fields(s, row, detail, sizeof(detail));
        }
        if (bad) {
            snprintf(s->err, sizeof(s->err), "line %llu: %s",
                     (unsigned long long)first, bad);
            s->state = -1;
            break;
        }
        row->line = first;
        return 1;
    }
    if (s->state < 0)
        snprintf(why, whylen, "%s", s->err);
    return s->state > 0 ? 0 : -1;
}

int
source_close(struct source *s, char *why, size_t whylen)
{
    int rc = 0;
    if (s->in && s->in != stdin)
        fclose(s->in);
    if (s->pid > 0) {
        int st;
        if (s->state <= 0)
            kill(s->pid, SIGTERM);
        while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (s->state > 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0) {
            snprintf(why, whylen,
                     "the source command exited with status %d after line "
                     "%llu: its output may be incomplete",
                     WEXITSTATUS(st), (unsigned long long)s->lineno);
            rc = -1;
        } else if (s->state > 0 && WIFSIGNALED(st)) {
            snprintf(why, whylen,
                     "the source command was killed by signal %d after line "
                     "%llu: its output may be incomplete",
                     WTERMSIG(st), (unsigned long long)s->lineno);
            rc = -1;
        }
    }
    free(s->line);
    free(s->buf);
    free(s);
    return rc;
}
