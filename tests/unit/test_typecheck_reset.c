/* test_typecheck_reset.c — the front end run many times in one process
 * (the fuzzer, a REPL): after module_reset and arena_free nothing cached by
 * the type checker may point into the freed arena (typecheck_reset). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dcc.h"

static FILE *diag_file;

/* Reuses the freed memory with garbage, so that a stale pointer into the
 * old arena reads nonsense (and ASan reports it). */
static void scribble(void)
{
    for (int i = 0; i < 64; i++)
        memset(arena_alloc(dcc_arena, 60000), 0xAB, 60000);
}

/* One compilation of `text`: the scheme of def `name`, or the errors. */
static char *check_once(const char *text, const char *name)
{
    static char out[4096];
    diag_file = tmpfile();
    ck_assert_ptr_nonnull(diag_file);
    diag_set_stream(diag_file);
    diag_set_colour(0);
    diag_reset();
    Vec order = {0};
    Module *m = module_load_text("t.dl", text, strlen(text), &order);
    ck_assert_ptr_nonnull(m);
    typecheck_program(&order);
    vec_free(&order);
    snprintf(out, sizeof out, "(no def %s)", name);
    if (diag_error_count()) {
        rewind(diag_file);
        size_t n = fread(out, 1, sizeof out - 1, diag_file);
        out[n] = 0;
    } else {
        for (int i = 0; i < m->ndecls; i++)
            if (m->decls[i]->kind == DECL_DEF && !strcmp(m->decls[i]->name, name))
                snprintf(out, sizeof out, "%s", types_scheme_string(m->decls[i]->binding));
    }
    fclose(diag_file);
    diag_set_stream(NULL);
    module_reset();
    arena_free(dcc_arena);
    scribble();
    return out;
}

START_TEST(test_rerun_same_program)
{
    /* annotations use the scalar type nodes; built-ins their schemes */
    const char *src = "def f (x: int) (y: []float) : (int, float) = (x + 1, sum (map exp y))\n";
    for (int i = 0; i < 4; i++) {
        char *got = check_once(src, "f");
        ck_assert_msg(!strcmp(got, "int -> []float -> (int, float)"), "run %d: %s", i, got);
    }
}
END_TEST

START_TEST(test_rerun_errors_then_success)
{
    char *bad = check_once("def g (x: int) : float = x\n", "g");
    ck_assert_msg(strstr(bad, "error:") != NULL, "no error: %s", bad);
    char *good = check_once("def g (x: float) : float = x * 2.0\n", "g");
    ck_assert_str_eq(good, "float -> float");
}
END_TEST

START_TEST(test_reset_renews_caches)
{
    Type *before = type_int();
    Binding *map_before = builtin_binding(B_MAP);
    typecheck_reset();
    ck_assert_ptr_ne(type_int(), before);
    ck_assert_ptr_ne(builtin_binding(B_MAP), map_before);
    ck_assert_int_eq(type_int()->kind, TY_INT);
    ck_assert_int_eq(type_error()->kind, TY_ERROR);
    ck_assert_str_eq(types_scheme_string(builtin_binding(B_MAP)), "('a -> 'b) -> []'a -> []'b");
}
END_TEST

static Suite *reset_suite(void)
{
    Suite *s = suite_create("typecheck_reset");
    TCase *tc = tcase_create("reset");
    tcase_add_test(tc, test_rerun_same_program);
    tcase_add_test(tc, test_rerun_errors_then_success);
    tcase_add_test(tc, test_reset_renews_caches);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(reset_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
