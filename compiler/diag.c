/* diag.c — the one place that prints diagnostics.
 *
 *   file:line:col: error: message
 *      12 |   let x = y + 1 in
 *         |           ^~~~~
 *
 * Errors are counted and reporting goes on (the parser and checker recover);
 * the driver exits 1 when any error was reported. Colour only on a terminal
 * (cproc error(), chibicc verror_at, c3c diagnostics.c). */
#include "dcc.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const Loc loc_none = {0};

static int nerrors, nwarnings, max_errors = 100;
static int colour_mode = -1;
static FILE *diag_out;
static Vec files;

SrcFile *diag_add_file(const char *name, const char *path, const char *text, size_t len)
{
    SrcFile *f = xmalloc(sizeof *f);
    f->name = intern(name);
    f->path = intern(path ? path : name);
    f->text = text;
    f->len = len;
    vec_push(&files, f);
    return f;
}

SrcFile *diag_find_file(const char *name)
{
    for (int i = files.len - 1; i >= 0; i--) {
        SrcFile *f = files.data[i];
        if (f->name == name || strcmp(f->name, name) == 0)
            return f;
    }
    return NULL;
}

int diag_error_count(void) { return nerrors; }
int diag_warning_count(void) { return nwarnings; }
void diag_set_colour(int mode) { colour_mode = mode; }
void diag_set_max_errors(int n) { max_errors = n; }
void diag_set_stream(FILE *f) { diag_out = f; }
void diag_reset(void) { nerrors = nwarnings = 0; }

static FILE *out(void) { return diag_out ? diag_out : stderr; }

static bool use_colour(void)
{
    if (colour_mode >= 0)
        return colour_mode;
    if (out() != stderr || getenv("NO_COLOR"))
        return false;
    return isatty(2);
}

Loc loc_span(Loc a, Loc b)
{
    if (!a.line)
        return b;
    if (!b.line)
        return a;
    a.end_line = b.end_line;
    a.end_col = b.end_col;
    return a;
}

/* Finds line `line` (1-based) of f; returns its start and sets *len. */
static const char *find_line(const SrcFile *f, int line, size_t *len)
{
    const char *p = f->text, *end = f->text + f->len;
    for (int l = 1; l < line && p < end; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return NULL;
        p = nl + 1;
    }
    if (p > end)
        return NULL;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *len = (size_t)((nl ? nl : end) - p);
    return p;
}

/* Prints the source line and a caret under [col, end_col]. Bytes that are
 * not printable ASCII are shown as '?', tabs are kept so the caret lines up;
 * long lines are cut around the caret. */
static void print_source(FILE *o, Loc loc, const char *colour)
{
    const SrcFile *f = loc.file ? diag_find_file(loc.file) : NULL;
    if (!f || loc.line <= 0)
        return;
    size_t len;
    const char *line = find_line(f, loc.line, &len);
    if (!line)
        return;
    int col = loc.col > 0 ? loc.col : 1;
    int end = (loc.end_line == loc.line && loc.end_col >= col) ? loc.end_col : col;
    if ((size_t)col > len + 1)
        col = (int)len + 1;
    if ((size_t)end > len)
        end = (int)len > col ? (int)len : col;
    size_t from = 0;
    const size_t width = 160;
    if ((size_t)col > width - 40)
        from = (size_t)col - (width - 40);
    size_t to = len - from > width ? from + width : len;
    fprintf(o, "%5d | %s", loc.line, from ? "..." : "");
    for (size_t i = from; i < to; i++) {
        unsigned char c = (unsigned char)line[i];
        fputc(c == '\t' || (c >= 32 && c < 127) ? c : '?', o);
    }
    fprintf(o, "%s\n      | %s", to < len ? "..." : "", from ? "   " : "");
    for (size_t i = from; i + 1 < (size_t)col && i < len; i++)
        fputc(line[i] == '\t' ? '\t' : ' ', o);
    fputs(colour, o);
    fputc('^', o);
    for (int i = col + 1; i <= end && (size_t)(i - 1) < to; i++)
        fputc('~', o);
    fputs(*colour ? "\033[0m" : "", o);
    fputc('\n', o);
}

void diag_vreport(DiagLevel level, Loc loc, const char *fmt, va_list ap)
{
    if (level == DIAG_ERROR) {
        nerrors++;
        if (max_errors && nerrors > max_errors) {
            if (nerrors == max_errors + 1)
                fprintf(out(), "dcc: fatal: too many errors (%d); stopping\n", max_errors);
            return;
        }
    } else if (level == DIAG_WARNING) {
        nwarnings++;
    } else if (max_errors && nerrors > max_errors) {
        return; /* notes of suppressed errors */
    }
    FILE *o = out();
    bool c = use_colour();
    static const char *names[] = {"error", "warning", "note"};
    static const char *colours[] = {"\033[1;31m", "\033[1;35m", "\033[1;36m"};
    const char *bold = c ? "\033[1m" : "", *reset = c ? "\033[0m" : "";
    if (loc.file && loc.line > 0)
        fprintf(o, "%s%s:%d:%d: ", bold, loc.file, loc.line, loc.col > 0 ? loc.col : 1);
    else
        fprintf(o, "%sdcc: ", bold);
    fprintf(o, "%s%s:%s%s ", c ? colours[level] : "", names[level], reset, bold);
    vfprintf(o, fmt, ap);
    fprintf(o, "%s\n", reset);
    print_source(o, loc, c ? "\033[1;32m" : "");
}

void diag_report(DiagLevel level, Loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(level, loc, fmt, ap);
    va_end(ap);
}

_Noreturn void fatal(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "dcc: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void diag_forget_files(void)
{
    for (int i = 0; i < files.len; i++)
        free(files.data[i]);
    vec_free(&files);
}
