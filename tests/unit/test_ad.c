/* test_ad.c — forward and Taylor mode (ad_forward.c, ad_taylor.c): small
 * programs compiled end to end, their jvp results checked against central
 * finite differences (h = 1e-6 max(1, |x|)) and analytic values, nested
 * jvp against analytic higher derivatives, jet against nested jvp; and
 * properties of the transformed Core (no derivative form left, symbolic
 * zeros emit nothing, one f_fwd per function and activity, the errors for
 * what is not supported, the reusable ad_forward_lambda).
 * Running programs needs libdlrt built ($DCC_BUILDDIR, set by make check). */
#include "ad_support.h"

/* ------------------------------------------------------------ end to end */

/* Each function f: its jvp at x against the central difference with
 * h = 1e-6 max(1, |x|), and against the analytic derivative. */
static const struct {
    const char *f; /* DL lambda */
    double x;
} fd_cases[] = {
    {"fn x => exp (sin x) * x", 0.7},
    {"fn x => log (1.0 + x * x) / sqrt x", 1.3},
    {"fn x => tanh (3.0 * x) + sigmoid x - softplus (2.0 * x)", -0.4},
    {"fn x => x ^ 2.5 + 2.0 ^ x + atan2 x 1.5", 2.0},
    {"fn x => if x > 1.0 then log x else x * x", 1.7},
    {"fn x => loop s = x for i < 4 do s * x + 1.0", 0.9},
    {"fn x => sum (map (fn v => v * x) [1.0, 2.0, 3.0]) * x", 1.1},
    {"fn x => det [[x, 2.0], [1.0, x * x]] + (inv [[x, 1.0], [0.0, 2.0]])[0, 0]", 1.5},
    {"fn x => logsumexp [x, 2.0 * x, -x] + (softmax [x, 0.0])[0]", 0.3},
    {"fn x => prod [x, x + 1.0, 3.0] + maximum [x, 1.0 - x]", 0.8},
    {"fn x => (cholesky [[4.0 + x, x], [x, 2.0]])[1, 1] + (solve [[x, 1.0], [1.0, 3.0]] [1.0, x])[0]", 0.6},
};

START_TEST(test_jvp_finite_differences)
{
    StrBuf b = {0};
    sb_puts(&b, "def main () : unit =\n");
    int n = (int)(sizeof fd_cases / sizeof fd_cases[0]);
    for (int i = 0; i < n; i++) {
        double x = fd_cases[i].x, h = 1e-6 * fmax(1.0, fabs(x));
        sb_printf(&b, "  let f%d = %s in\n", i, fd_cases[i].f);
        sb_printf(&b, "  let _ = println ((jvp f%d %s 1.0).1) in\n", i, lit(x));
        sb_printf(&b, "  let _ = println (f%d %s) in\n", i, lit(x + h));
        sb_printf(&b, "  let _ = println (f%d %s) in\n", i, lit(x - h));
    }
    sb_puts(&b, "  ()\n");
    char *out = run_src(b.data);
    double v[256];
    ck_assert_int_eq(numbers(out, v, 256), 3 * n);
    for (int i = 0; i < n; i++) {
        double x = fd_cases[i].x, h = 1e-6 * fmax(1.0, fabs(x));
        double fd = (v[3 * i + 1] - v[3 * i + 2]) / (2 * h);
        ck_assert_msg(close_to(v[3 * i], fd, 1e-7), "%s at %g: jvp %.17g, finite difference %.17g",
                      fd_cases[i].f, x, v[3 * i], fd);
    }
    sb_free(&b);
}
END_TEST

/* Analytic first derivatives, and higher ones by nested jvp. */
START_TEST(test_jvp_analytic_and_nested)
{
    const char *src =
        "def d (f: float -> float) (x: float) : float = (jvp f x 1.0).1\n"
        "def main () : unit =\n"
        "  let _ = println (d sin 0.3) in\n"
        "  let _ = println (d (fn x => x * x * x) 2.0) in\n"
        "  let _ = println (d (fn x => d (fn y => y * y * y) x) 2.0) in\n"
        "  let _ = println (d (fn x => d (fn y => d (fn z => exp (2.0 * z)) y) x) 0.5) in\n"
        "  let _ = println (d (fn x => d (fn y => d (fn z => d cos z) y) x) 0.4) in\n"
        "  let _ = println (d (fn x => x * d (fn y => x * y) 2.0) 1.0) in\n"
        "  ()\n";
    double v[16];
    ck_assert_int_eq(numbers(run_src(src), v, 16), 6);
    ck_assert(close_to(v[0], cos(0.3), 1e-15));
    ck_assert(close_to(v[1], 12.0, 1e-15));
    ck_assert(close_to(v[2], 12.0, 1e-15));
    ck_assert(close_to(v[3], 8.0 * exp(1.0), 1e-14));
    ck_assert(close_to(v[4], cos(0.4), 1e-14));
    ck_assert(close_to(v[5], 2.0, 1e-15)); /* no perturbation confusion */
}
END_TEST

/* jet to order 4 against nested jvp, and sin's 30th derivative. */
START_TEST(test_jet_vs_nested)
{
    const char *src =
        "def d1 (f: float -> float) (x: float) : float = (jvp f x 1.0).1\n"
        "def d2 (f: float -> float) (x: float) : float = d1 (fn y => d1 f y) x\n"
        "def d3 (f: float -> float) (x: float) : float = d1 (fn y => d2 f y) x\n"
        "def d4 (f: float -> float) (x: float) : float = d1 (fn y => d3 f y) x\n"
        "def g (x: float) : float = exp (sin x) / (1.0 + x * x)\n"
        "def main () : unit =\n"
        "  let (_, ds) = jet g 0.8 [1.0, 0.0, 0.0, 0.0] in\n"
        "  let _ = println ds[0] in let _ = println ds[1] in\n"
        "  let _ = println ds[2] in let _ = println ds[3] in\n"
        "  let _ = println (d1 g 0.8) in let _ = println (d2 g 0.8) in\n"
        "  let _ = println (d3 g 0.8) in let _ = println (d4 g 0.8) in\n"
        "  let (_, ss) = jet sin 5.0 [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,\n"
        "    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,\n"
        "    0.0, 0.0, 0.0, 0.0, 0.0] in\n"
        "  println ss[29]\n";
    double v[16];
    ck_assert_int_eq(numbers(run_src(src), v, 16), 9);
    for (int k = 0; k < 4; k++)
        ck_assert_msg(close_to(v[k], v[4 + k], 1e-10), "order %d: jet %.17g, nested jvp %.17g", k + 1, v[k],
                      v[4 + k]);
    ck_assert_msg(fabs(v[8] + sin(5.0)) < 1e-9, "30th derivative of sin at 5: %.17g", v[8]);
}
END_TEST

/* ------------------------------------------------------------ the Core */

START_TEST(test_no_form_left)
{
    CProgram *p = ad_src("def f (x: float) : float = x * sin x\n"
                         "def main () : unit =\n"
                         "  let _ = println (jvp f 1.0 1.0, jet f 1.0 [1.0, 0.0]) in\n"
                         "  let _ = println (hessian f 1.0, jacfwd (fn v => v * v) [1.0, 2.0]) in\n"
                         "  println (jvp (fn x => stop_gradient (x * x) + x) 2.0 1.0)\n",
                         false);
    char *s = print_prog(p);
    ck_assert_msg(!strstr(s, "deriv "), "a derivative form is left:\n%s", s);
}
END_TEST

/* A value with no tangent emits no derivative code: the rule of exp is not
 * applied to a constant, and only one cos is computed for sin's tangent. */
START_TEST(test_symbolic_zeros)
{
    CProgram *p = ad_src("def main () : unit =\n"
                         "  println (jvp (fn x => exp 2.0 * sin x + exp 3.0) 1.0 1.0)\n",
                         false);
    char *s = print_prog(p);
    ck_assert_int_eq(count(s, "prim exp("), 2);
    ck_assert_int_eq(count(s, "prim cos("), 1);
    ck_assert_int_eq(count(s, "prim sin("), 1);
}
END_TEST

/* One transform per (function, order, active parameters); recursion
 * calls its own transform. */
START_TEST(test_fun_memo)
{
    CProgram *p = ad_src("def pw (x: float) (y: float) (n: int) : float =\n"
                         "  if n == 0 then 1.0 else x * y * pw x y (n - 1)\n"
                         "def main () : unit =\n"
                         "  let a = jvp (fn x => pw x 2.0 3) 1.5 1.0 in\n"
                         "  let b = jvp (fn x => pw x 3.0 2 + pw 1.0 x 2) 1.5 1.0 in\n"
                         "  println (a, b)\n",
                         false);
    char *s = print_prog(p);
    /* x active (twice), then y active: two transforms, each calling itself */
    ck_assert_int_eq(count(s, "def pw_fwd "), 1);
    ck_assert_int_eq(count(s, "def pw_fwd_1 "), 1);
    ck_assert_int_eq(count(s, "call pw_fwd("), 3);
    ck_assert_int_eq(count(s, "call pw_fwd_1("), 2);
    ck_assert_int_eq(count(s, "def pw_fwd_2"), 0);
}
END_TEST

static void expect_error(const char *src, const char *msg)
{
    CProgram *p = lower_src(src);
    ck_assert(!ad_transform_program(p));
    char *err = captured();
    ck_assert_msg(strstr(err, msg), "expected \"%s\" in:\n%s", msg, err);
}

START_TEST(test_errors)
{
    /* a function parameter applied to the perturbed input, in Taylor mode
     * (forward mode dispatches on its code: tests/ad/hofn_*.dl) */
    expect_error("def ap (f: float -> float) (x: float) : float = (jet f x [1.0, 0.0]).0\n"
                 "def main () : unit = println (ap sin 1.0)\n",
                 "cannot differentiate through this function value");
    setup();
    expect_error("def main () : unit =\n"
                 "  let vs = map (fn i => float i) (iota 3) in\n"
                 "  println (jet sin 1.0 vs)\n",
                 "jet needs its directions as a list literal");
}
END_TEST

/* The reusable transform: fn x => e becomes fn x dx => (e, de), and the
 * linear map holds dx and what depends on it, not the primal. */
START_TEST(test_forward_lambda)
{
    CProgram *p = lower_src("def main () : unit = println (jvp (fn x => sin x * x) 1.0 1.0)\n");
    CExpr *d = NULL;
    CBlock *b = p->main->body;
    for (int i = 0; i < b->nbinds && !d; i++)
        if (b->binds[i].e->kind == CE_DERIV)
            d = b->binds[i].e;
    ck_assert_ptr_nonnull(d);
    ad_transform_program(p); /* sets up the stage's state; d's lambda stays intact */
    CoreMap lin = {0};
    CLambda *l = ad_forward_lambda(p, d->u.deriv.fn, &lin);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(l->nparams, 2);
    Type *rt = type_resolve(core_atom_type(l->body->result));
    ck_assert_int_eq(rt->kind, TY_TUPLE);
    ck_assert(core_map_get(&lin, l->params[1]));
    ck_assert(!core_map_get(&lin, l->params[0]));
    int nlin = 0, nprim = 0;
    for (int i = 0; i < l->body->nbinds; i++) {
        CBind *bd = &l->body->binds[i];
        if (bd->e->kind != CE_PRIM)
            continue;
        if (core_map_get(&lin, bd->var))
            nlin++;
        else
            nprim++;
        /* sin and cos are primal, never linear */
        if (bd->e->u.prim.op == P_SIN || bd->e->u.prim.op == P_COS)
            ck_assert(!core_map_get(&lin, bd->var));
    }
    ck_assert_int_ge(nlin, 2);
    ck_assert_int_ge(nprim, 2);
    core_map_free(&lin);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ad");
    TCase *run = tcase_create("run");
    tcase_add_checked_fixture(run, setup, NULL);
    tcase_set_timeout(run, 120);
    tcase_add_test(run, test_jvp_finite_differences);
    tcase_add_test(run, test_jvp_analytic_and_nested);
    tcase_add_test(run, test_jet_vs_nested);
    suite_add_tcase(s, run);
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, NULL);
    tcase_add_test(core, test_no_form_left);
    tcase_add_test(core, test_symbolic_zeros);
    tcase_add_test(core, test_fun_memo);
    tcase_add_test(core, test_errors);
    tcase_add_test(core, test_forward_lambda);
    suite_add_tcase(s, core);
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
