/* ad_support.h — shared helpers of the AD unit tests (test_ad.c,
 * test_ad_reverse.c): DL source -> verified Core with derivatives expanded,
 * compiled and run at -O2, and the printed numbers read back.
 * Diagnostics go to a temporary file that captured() returns. */
#ifndef AD_SUPPORT_H
#define AD_SUPPORT_H

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core_support.h"

/* Source -> Core with the derivative forms expanded (simplified first when
 * presimplify, as the driver does); the Core must verify. */
static inline CProgram *ad_src(const char *text, bool presimplify)
{
    CProgram *p = lower_src(text);
    if (presimplify)
        core_simplify(p, 2);
    ck_assert_msg(ad_transform_program(p), "AD failed:\n%s", captured());
    ck_assert_msg(core_verify(p), "Core after AD does not verify:\n%s\n%s", captured(), print_prog(p));
    return p;
}

static inline int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *s = hay; (s = strstr(s, needle)); s += strlen(needle))
        n++;
    return n;
}

/* ------------------------------------------------------------ running */

static inline void slurp(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    buf[k] = 0;
    if (f)
        fclose(f);
}

/* Compiles (AD, simplifier, codegen at -O2), runs, returns stdout. */
static inline char *run_src(const char *text)
{
    static char out[1 << 16];
    CProgram *p = ad_src(text, true);
    core_simplify(p, 2);
    ck_assert_msg(core_verify(p), "Core after the simplifier does not verify:\n%s", captured());
    char dir[] = "/tmp/dcc-ad-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char exe[256], outp[256], cmd[1024];
    snprintf(exe, sizeof exe, "%s/prog", dir);
    snprintf(outp, sizeof outp, "%s/out", dir);
    Options o = {0};
    o.input = "t.dl";
    o.output = exe;
    o.opt_level = 2;
    o.emit = EMIT_EXE;
    ck_assert_msg(codegen_program(p, &o), "codegen failed:\n%s", captured());
    snprintf(cmd, sizeof cmd, "%s >%s 2>&1", exe, outp);
    int st = system(cmd);
    slurp(outp, out, sizeof out);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "program failed: %s", out);
    unlink(exe);
    unlink(outp);
    rmdir(dir);
    return out;
}

/* The numbers printed, in order (nan and inf included). */
static inline int numbers(const char *out, double *v, int max)
{
    int n = 0;
    const char *s = out;
    while (*s && n < max) {
        char *end;
        double x = strtod(s, &end);
        if (end == s) {
            s++;
            continue;
        }
        v[n++] = x;
        s = end;
    }
    return n;
}

static inline bool close_to(double a, double b, double tol) { return fabs(a - b) <= tol * fmax(1.0, fabs(b)); }

/* A float literal of DL: round-trips, has a point, negative in parentheses. */
static inline char *lit(double x)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", x);
    if (!strpbrk(buf, ".e"))
        strcat(buf, ".0");
    return arena_printf(dcc_arena, x < 0 ? "(%s)" : "%s", buf);
}

#endif /* AD_SUPPORT_H */
