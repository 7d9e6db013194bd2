/* test_emit_ad.c — --emit=ad (core_dl.c): the program after the AD stages
 * printed as DL. The text of a small jvp and a small vjp program reads as
 * DL (defs, lets, the pullback as a `fn` taking the result's cotangent
 * y_bar, tangents named x_dot, no Core syntax or derivative form left),
 * and it compiles again to a program that prints the same as the original.
 * Running programs needs libdlrt built ($DCC_BUILDDIR, set by make check). */
#include "ad_support.h"

/* Source -> the DL text --emit=ad prints (the driver's stages: simplify,
 * then the AD stages). */
static char *emit_ad(const char *text)
{
    CProgram *p = lower_src(text);
    core_simplify(p, 2);
    int first = core_dl_next_var_id();
    ck_assert_msg(ad_transform_program(p), "AD failed:\n%s", captured());
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    core_dl_print_program(f, p, first);
    fclose(f);
    char *s = arena_strdup(dcc_arena, buf);
    free(buf);
    return s;
}

/* No Core syntax and no derivative form is left in printed DL. */
static void assert_plain_dl(const char *dl)
{
    static const char *const core_words[] = {"prim ", "apply ", "call ", "soac ", "deriv ", "@"};
    for (size_t i = 0; i < sizeof core_words / sizeof *core_words; i++)
        ck_assert_msg(!strstr(dl, core_words[i]), "Core syntax '%s' in:\n%s", core_words[i], dl);
    static const char *const forms[] = {" jvp ", "(jvp ", " vjp ", "(vjp ", " grad ", "(grad "};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++)
        ck_assert_msg(!strstr(dl, forms[i]), "derivative form '%s' left in:\n%s", forms[i], dl);
}

/* The printed program, compiled again, prints what the original prints. */
static void assert_round_trip(const char *src, const char *dl)
{
    char *want = arena_strdup(dcc_arena, run_src(src));
    diag_reset();
    char *got = run_src(dl);
    ck_assert_msg(*want, "the original printed nothing");
    ck_assert_msg(strcmp(want, got) == 0, "the --emit=ad program prints\n%s\nnot\n%s\nit is:\n%s", got,
                  want, dl);
}

static const char jvp_src[] =
    "def pow_n (x: float) (n: int) : float = if n == 0 then 1.0 else x * pow_n x (n - 1)\n"
    "def main () : unit =\n"
    "  let x0 = float (length (args ())) + 0.5 in\n"
    "  println (jvp (fn x => pow_n x 3) x0 1.0)\n";

START_TEST(test_jvp_text)
{
    char *dl = emit_ad(jvp_src);
    assert_plain_dl(dl);
    ck_assert_msg(strstr(dl, "def main () : unit =\n"), "no main in:\n%s", dl);
    /* the forward-mode instance of pow_n takes the tangent x_dot beside x */
    ck_assert_msg(strstr(dl, "(x : float) (x_dot : float) (n : int) : (float, float) ="),
                  "no def taking x and x_dot in:\n%s", dl);
    ck_assert_msg(strstr(dl, " * x_dot") || strstr(dl, "x_dot * "), "x_dot unused in:\n%s", dl);
    ck_assert_msg(count(dl, "let ") > 4, "not one let per binding:\n%s", dl);
    assert_round_trip(jvp_src, dl);
}
END_TEST

static const char vjp_src[] =
    "def main () : unit =\n"
    "  let x0 = float (length (args ())) + 0.5 in\n"
    "  let (y, pb) = vjp (fn (a, b) => a * sin b) (x0, 2.0) in\n"
    "  println (y, pb 1.0, pb 2.0)\n";

START_TEST(test_vjp_text)
{
    char *dl = emit_ad(vjp_src);
    assert_plain_dl(dl);
    /* the pullback is a closure of the result's cotangent y_bar,
     * returning the cotangent of the pair */
    ck_assert_msg(strstr(dl, ": float -> (float, float) = fn (y_bar : float) => ("),
                  "no pullback fn in:\n%s", dl);
    ck_assert_msg(strstr(dl, "y_bar * "), "y_bar unused in:\n%s", dl);
    ck_assert_msg(strstr(dl, "cos b"), "no derivative of sin in:\n%s", dl);
    assert_round_trip(vjp_src, dl);
}
END_TEST

/* A user's names that are built-ins the printer uses are renamed, so the
 * printed program still means the built-ins. */
static const char names_src[] =
    "def fill (x: float) : float = x + 100.0\n"
    "def main () : unit =\n"
    "  let select = [1.0, -2.0, 3.0] in\n"
    "  let sum_axis0 = fill 1.0 in\n"
    "  println (grad (fn v => sum (map relu v) * sum_axis0) select)\n";

START_TEST(test_names_do_not_capture)
{
    char *dl = emit_ad(names_src);
    assert_plain_dl(dl);
    ck_assert_msg(!strstr(dl, "def fill "), "a def named fill in:\n%s", dl);
    ck_assert_msg(!strstr(dl, "let select "), "a variable named select in:\n%s", dl);
    assert_round_trip(names_src, dl);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("emit_ad");
    TCase *tc = tcase_create("text");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_jvp_text);
    tcase_add_test(tc, test_vjp_text);
    tcase_add_test(tc, test_names_do_not_capture);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
