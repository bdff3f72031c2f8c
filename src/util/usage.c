#include "util/usage.h"

#include <stdbool.h>
#include <string.h>

void
usage_option(FILE *out, int sname, const char *lname, const char *metavar,
             const char *help, const char *def)
{
    char text[2048];
    int col;
    if (sname)
        col = fprintf(out, "  -%c, --%s", sname, lname);
    else
        col = fprintf(out, "      --%s", lname);
    if (metavar && metavar[0])
        col += fprintf(out, "=%s", metavar);
    bool has_def = def && def[0];
    snprintf(text, sizeof(text), "%s%s%s%s", help, has_def ? " (default: " : "",
             has_def ? def : "", has_def ? ")" : "");
    if (col > USAGE_COLUMN - 2) {
        fputc('\n', out);
        col = 0;
    }
    for (const char *w = text + strspn(text, " "); *w; w += strspn(w, " ")) {
        int len = (int)strcspn(w, " ");
        if (col > USAGE_COLUMN && col + 1 + len > USAGE_WIDTH) {
            fputc('\n', out);
            col = 0;
        }
        if (col < USAGE_COLUMN)
            col += fprintf(out, "%*s", USAGE_COLUMN - col, "");
        else
            col += fprintf(out, " ");
        col += fprintf(out, "%.*s", len, w);
        w += len;
    }
    fputc('\n', out);
}
