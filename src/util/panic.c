#include "util/panic.h"
#include "util/say.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void
mcdb_panic(const char *src, int line, const char *path, uint64_t off,
           const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (path != NULL)
        say(SAY_ERROR, "panic: %s (%s, offset %" PRIu64 ") at %s:%d", what,
            path, off, src, line);
    else
        say(SAY_ERROR, "panic: %s at %s:%d", what, src, line);
    abort();
}
