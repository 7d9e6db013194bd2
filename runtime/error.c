/* error.c — run-time errors: per-thread message, error traps, exit.
 * Also the process-level state (program arguments, the C locale). */
#include "internal.h"

#include <malloc.h>
#include <signal.h>
#include <unistd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRAPS 64
#define MSG_SIZE 1024

static _Thread_local char err_msg[MSG_SIZE];
static _Thread_local dl_srcloc err_loc;
static _Thread_local jmp_buf *traps[MAX_TRAPS];
static _Thread_local int ntraps;

/* Formatted apart first: an argument may be dl_last_error() itself. */
void dlrt_error_setv(const char *fmt, va_list ap)
{
    char tmp[MSG_SIZE];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    memcpy(err_msg, tmp, sizeof tmp);
}

void dlrt_error_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dlrt_error_setv(fmt, ap);
    va_end(ap);
}

/* Shows the source line of a run-time error under its message, with a caret
 * at the column, as the compiler's diagnostics do (compiler/diag.c). The file
 * is the path the program was compiled from, relative to the current
 * directory or else to the directory it was compiled in (dl_set_source_root);
 * when neither can be read only the message is shown. */
static const char *source_root;

void dl_set_source_root(const char *dir) { source_root = dir; }

static void show_source_line(const dl_srcloc *loc)
{
    FILE *f = fopen(loc->file, "r");
    if (!f && loc->file[0] != '/' && source_root) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", source_root, loc->file) < (int)sizeof path)
            f = fopen(path, "r");
    }
    if (!f)
        return;
    char line[4096];
    int n = 0;
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        if (++n == loc->line) {
            found = true;
            break;
        }
        /* a line longer than the buffer: skip the rest of it */
        while (!strchr(line, '\n') && fgets(line, sizeof line, f)) {}
    }
    fclose(f);
    if (!found)
        return;
    line[strcspn(line, "\r\n")] = 0;
    fprintf(stderr, "%5d | %s\n      | ", (int)loc->line, line);
    int len = (int)strlen(line);
    for (int i = 0; i < loc->col - 1 && i < len; i++)
        fputc(line[i] == '\t' ? '\t' : ' ', stderr);
    fputs("^\n", stderr);
}

/* A trap catches the error (and is popped, so a handler that raises again
 * reaches the next one out); without one the error ends the process after
 * the program's own output, so that the message comes last. */
void dlrt_error_raise(const dl_srcloc *loc)
{
    if (loc)
        err_loc = *loc;
    else
        err_loc = (dl_srcloc){ NULL, 0, 0 };
    if (ntraps > 0) {
        jmp_buf *trap = traps[--ntraps];
        longjmp(*trap, 1);
    }
    fflush(dlrt_output());
    if (loc && loc->file) {
        if (loc->line > 0 && loc->col > 0)
        {
            fprintf(stderr, "%s:%d:%d: error: %s\n", loc->file, (int)loc->line, (int)loc->col,
                    err_msg);
            show_source_line(loc);
        }
        else if (loc->line > 0)
            fprintf(stderr, "%s:%d: error: %s\n", loc->file, (int)loc->line, err_msg);
        else
            fprintf(stderr, "%s: error: %s\n", loc->file, err_msg);
    } else {
        fprintf(stderr, "dlrt: error: %s\n", err_msg);
    }
    exit(1);
}

void dl_error(const dl_srcloc *loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dlrt_error_setv(fmt, ap);
    va_end(ap);
    dlrt_error_raise(loc);
}

void dl_error_trap_push(jmp_buf *trap)
{
    if (ntraps == MAX_TRAPS)
        dl_error(NULL, "too many nested error traps (at most %d)", MAX_TRAPS);
    traps[ntraps++] = trap;
}

void dl_error_trap_pop(void)
{
    if (ntraps > 0)
        ntraps--;
}

int dl_error_trap_depth(void) { return ntraps; }

const char *dl_last_error(void) { return err_msg; }

dl_srcloc dl_last_error_loc(void) { return err_loc; }

void dl_error_clear(void)
{
    err_msg[0] = 0;
    err_loc = (dl_srcloc){ NULL, 0, 0 };
}

void dl_bounds_error(int64_t index, int64_t extent, int32_t axis, const dl_srcloc *loc)
{
    dl_error(loc, "index %lld out of bounds for axis %d of length %lld", (long long)index,
             (int)axis, (long long)extent);
}

int64_t dl_bounds_check(int64_t index, int64_t extent, int32_t axis, const dl_srcloc *loc)
{
    /* one unsigned comparison covers index < 0 */
    if ((uint64_t)index >= (uint64_t)extent)
        dl_bounds_error(index, extent, axis, loc);
    return index;
}

void dl_div_by_zero(const dl_srcloc *loc) { dl_error(loc, "integer division by zero"); }

void dl_overflow_error(const char *op, const dl_srcloc *loc)
{
    dl_error(loc, "integer overflow in '%s'", op ? op : "?");
}

/* ---------------------------------------------------------------- C locale */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

locale_t dlrt_c_locale(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale ? c_locale : LC_GLOBAL_LOCALE;
}

/* ---------------------------------------------------------------- arguments */

static int prog_argc;
static char **prog_argv;

/* A segmentation fault in a DL program is almost always a stack overflow
 * from very deep (non-tail) recursion: say so instead of dying silently.
 * Runs on an alternate stack, since the normal one is exhausted. */
static void on_segv(int sig)
{
    static const char msg[] =
        "dlrt: error: the program ran out of stack (segmentation fault): a recursion is too deep;\n"
        "dlrt: note: write it as a loop, or raise the limit with 'ulimit -s'\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    (void)sig;
    _exit(1);
}

static void install_segv_handler(void)
{
    static char altstack[1 << 16];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
}

void dl_init(int argc, char **argv)
{
    install_segv_handler();
    prog_argc = argc;
    prog_argv = argv;
    /* Array programs free and allocate large arrays in every iteration; by
     * default glibc returns each one over 32 MiB to the kernel and takes it
     * back page fault by page fault. Keep freed memory in the process. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

int dl_argc(void) { return prog_argc; }

const char *dl_argv(int i) { return i >= 0 && i < prog_argc ? prog_argv[i] : NULL; }
