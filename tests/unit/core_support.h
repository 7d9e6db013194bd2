/* core_support.h — helpers shared by the unit tests that compile DL source
 * (test_core.c, test_ptx.c, and ad_support.h for the AD tests):
 * diagnostics captured in a temporary file, source → verified Core, and
 * Core printed to a string (in the compilation's arena). */
#ifndef CORE_SUPPORT_H
#define CORE_SUPPORT_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dcc.h"

static FILE *diag_file;

static inline void setup(void)
{
    diag_file = tmpfile();
    diag_set_stream(diag_file);
    diag_set_colour(0);
    diag_reset();
    module_set_stdlib_dir(DCC_SRCDIR "/stdlib");
}

/* The diagnostics written so far (a static buffer). */
static inline char *captured(void)
{
    static char buf[1 << 16];
    fflush(diag_file);
    long n = ftell(diag_file);
    rewind(diag_file);
    size_t got = fread(buf, 1, n < (long)sizeof buf - 1 ? (size_t)n : sizeof buf - 1, diag_file);
    buf[got] = 0;
    fseek(diag_file, 0, SEEK_END);
    return buf;
}

/* Source → Core; the test fails on any diagnostic or a verifier error. */
static inline CProgram *lower_src(const char *text)
{
    Vec order = {0};
    Module *root = module_load_text("t", text, strlen(text), &order);
    ck_assert_msg(root && diag_error_count() == 0, "does not parse:\n%s", captured());
    typecheck_program(&order);
    ck_assert_msg(diag_error_count() == 0, "does not type-check:\n%s", captured());
    CProgram *p = core_lower_program(&order, root);
    vec_free(&order);
    ck_assert_msg(core_verify(p), "lowered Core does not verify:\n%s", captured());
    return p;
}

static inline char *print_prog(CProgram *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    core_print_program(f, p);
    fclose(f);
    char *s = arena_strdup(dcc_arena, buf);
    free(buf);
    return s;
}

#endif
