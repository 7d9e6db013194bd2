/* test_ad_reverse.c — reverse mode (ad_reverse.c): small programs compiled
 * end to end, their gradients checked against central finite differences
 * (h = 1e-6 max(1, |x|), relative 1e-6) and analytic values; forward and
 * reverse mode against each other (<jvp f x v, w> = <v, vjp f x w>);
 * nesting; and properties of the transformed Core (no derivative form
 * left, no tape or closure for straight-line code, symbolic zeros, loop
 * residuals recomputed rather than saved, one f_rev per function, the
 * errors for what is not supported).
 * Running programs needs libdlrt built ($DCC_BUILDDIR, set by make check). */
#include "ad_support.h"

/* The text of function `name` in a printed program. */
static char *fun_text(const char *prog, const char *name)
{
    char head[128];
    snprintf(head, sizeof head, "def %s ", name);
    const char *s = strstr(prog, head);
    ck_assert_msg(s, "no function %s in:\n%s", name, prog);
    const char *e = strstr(s + 1, "\ndef ");
    size_t n = e ? (size_t)(e - s) : strlen(s);
    return arena_strndup(dcc_arena, s, n);
}

/* ------------------------------------------------------------ gradients */

/* Scalar functions: grad at x against the central difference. */
static const struct {
    const char *f; /* DL lambda float -> float */
    double x;
} scalar_cases[] = {
    {"fn x => exp (sin x) * x", 0.7},
    {"fn x => log (1.0 + x * x) / sqrt x", 1.3},
    {"fn x => tanh (3.0 * x) + sigmoid x - softplus (2.0 * x) + log1p x + expm1 x", 0.4},
    {"fn x => x ^ 2.5 + 2.0 ^ x + atan2 x 1.5 + atan2 0.5 x", 2.0},
    {"fn x => if x > 1.0 then log x else x * x", 1.7},
    {"fn x => if x > 1.0 then log x else x * x", 0.3},
    {"fn x => loop s = x for i < 4 do s * x + 1.0", 0.9},
    {"fn x => loop y = x while y < 50.0 do y * y + x", 1.2},
    {"fn x => sum (map (fn v => v * x + sin (v * x)) [1.0, 2.0, 3.0]) * x", 1.1},
    {"fn x => det [[x, 2.0], [1.0, x * x]] + (inv [[x, 1.0], [0.0, 2.0]])[0, 0]", 1.5},
    {"fn x => logsumexp [x, 2.0 * x, -x] + (softmax [x, 0.0])[0]", 0.3},
    {"fn x => prod [x, x + 1.0, 3.0] + maximum [x, 1.0 - x] + minimum [x, 2.0]", 0.8},
    {"fn x => (cholesky [[4.0 + x, x], [x, 2.0]])[1, 1] + (solve [[x, 1.0], [1.0, 3.0]] [1.0, x])[0]", 0.6},
    {"fn x => fold (fn a v => a * v + x) x [1.0, 2.0, 0.5] + sum (scan (fn a v => a * v + x) 1.0 [x, 2.0])", 0.7},
    {"fn x => reduce (+) 0.0 [x, x * x] + reduce (fn a b => max a b) 0.0 [x, 2.0 * x]", 0.9},
    {"fn x => let (a, b) = loop (a, b) = (x, 1.0) for i < 5 do (a * b + 0.1, a - x) in a + b", 0.4},
    {"fn x => abs (x - 1.0) + relu (x - 0.5) + max x 0.2 + min x 0.2 + floor x", 0.6},
    {"fn x => x % 0.25 + 2.0 % x + x * x", 0.9},
};

START_TEST(test_grad_finite_differences)
{
    StrBuf b = {0};
    sb_puts(&b, "def main () : unit =\n");
    int n = (int)(sizeof scalar_cases / sizeof scalar_cases[0]);
    for (int i = 0; i < n; i++) {
        double x = scalar_cases[i].x, h = 1e-6 * fmax(1.0, fabs(x));
        sb_printf(&b, "  let f%d = %s in\n", i, scalar_cases[i].f);
        sb_printf(&b, "  let _ = println (grad f%d %s) in\n", i, lit(x));
        sb_printf(&b, "  let _ = println (f%d %s) in\n", i, lit(x + h));
        sb_printf(&b, "  let _ = println (f%d %s) in\n", i, lit(x - h));
    }
    sb_puts(&b, "  ()\n");
    char *out = run_src(b.data);
    double v[256];
    ck_assert_int_eq(numbers(out, v, 256), 3 * n);
    for (int i = 0; i < n; i++) {
        double x = scalar_cases[i].x, h = 1e-6 * fmax(1.0, fabs(x));
        double fd = (v[3 * i + 1] - v[3 * i + 2]) / (2 * h);
        ck_assert_msg(close_to(v[3 * i], fd, 1e-6), "%s at %g: grad %.17g, finite difference %.17g",
                      scalar_cases[i].f, x, v[3 * i], fd);
    }
    sb_free(&b);
}
END_TEST

/* Functions of arrays, records and variants: every component of the
 * gradient against its central difference. The programs print the
 * gradient's components, then f at x ± h e_i for each i. */
static const char *array_defs =
    "type r = { w: []float, b: float, k: int }\n"
    "type 'a list = Nil | Cons of 'a * 'a list\n"
    "def sumsq (l: float list) : float = match l with\n"
    "  | Nil => 0.0\n"
    "  | Cons (x, rest) => x * x + 2.0 * sumsq rest\n"
    "def g0 (x: []float) : float = loop s = 0.0 for i < length x do s * 0.9 + x[i] * x[i] * float i\n"
    "def g1 (x: []float) : float = sum (loop v = x for i < 3 do sin v * v + 0.5 * v)\n"
    "def g2 (x: []float) : float =\n"
    "  loop s = 0.0 for i < length x do (if x[i] > 0.0 then s + x[i] * s + 1.0 else s - x[i])\n"
    "def g3 (x: []float) : float = let w = x[0] in sum (map (fn v => w * v * v + sin v) x)\n"
    "def g4 (m: [][]float) : float =\n"
    "  sum (m[1:3, 0:2] * m[0:2, 1:3]) + sum (m[:, 1]) + sum (m[2, :]) + sum (softmax m * m) + sum (logsumexp m)\n"
    "def g5 (m: [][]float) : float =\n"
    "  let a = m @ transpose m + [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]] in\n"
    "  sum (cholesky a) + sum (solve a m) + det a + sum (inv a @ [1.0, 2.0, 3.0])\n"
    "def g6 (x: []float) : float = let y = concat (take 2 x) (reverse (drop 1 x)) in dot y y + prod x\n"
    "def g7 (x: []float) : float = sumsq (Cons (x[0], Cons (x[1] * x[2], Cons (x[2], Nil))))\n"
    "def g8 (x: []float) : float =\n"
    "  let (a, b) = loop (a, b) = (x[0], x) for i < 4 do (a * b[i % 3] + 1.0, b * a) in a + sum b\n"
    "def g9 (x: []float) : float = loop s = 0.0 for i < 3 do (loop t = s for j < 2 do t + x[i] * x[j] * t + 0.1)\n"
    "def g10 (p: r) : float = sum (p.w * p.w) * p.b + float p.k * p.b\n"
    "def g11 (x: []float) : float = sum (reshape (3, 1) x @ [[1.0, 2.0]]) + sum (replicate 2 x * x)\n"
    "def g12 (x: []float) : float = maximum (x * x) + minimum x + mean (exp x) + sum ([x, 2.0 * x] @ x)\n";

static const struct {
    const char *f, *x; /* the function of []float, the point */
    int n;             /* its length */
} array_cases[] = {
    {"g0", "[0.3, -0.7, 1.1]", 3},
    {"g1", "[0.3, -0.7, 1.1]", 3},
    {"g2", "[0.3, -0.7, 1.1]", 3},
    {"g3", "[0.3, -0.7, 1.1]", 3},
    {"(fn v => g4 (reshape (3, 3) v))", "[0.3, -0.7, 1.1, 0.2, 0.5, -0.4, 0.9, 1.3, -1.2]", 9},
    {"(fn v => g5 (reshape (3, 3) v))", "[0.3, -0.7, 1.1, 0.2, 0.5, -0.4, 0.9, 1.3, -1.2]", 9},
    {"g6", "[0.3, -0.7, 1.1]", 3},
    {"g7", "[0.3, -0.7, 1.1]", 3},
    {"g8", "[0.3, -0.7, 1.1]", 3},
    {"g9", "[0.3, -0.7, 1.1]", 3},
    {"(fn v => g10 { w = [v[0], v[1]], b = v[2], k = 3 })", "[0.3, -0.7, 1.1]", 3},
    {"g11", "[0.3, -0.7, 1.1]", 3},
    {"g12", "[0.3, -0.7, 1.1]", 3},
};

START_TEST(test_grad_arrays_finite_differences)
{
    StrBuf b = {0};
    sb_puts(&b, array_defs);
    sb_puts(&b, "def main () : unit =\n");
    int n = (int)(sizeof array_cases / sizeof array_cases[0]);
    int total = 0;
    for (int i = 0; i < n; i++) {
        sb_printf(&b, "  let x%d = %s in\n", i, array_cases[i].x);
        sb_printf(&b, "  let g = grad %s x%d in\n", array_cases[i].f, i);
        for (int j = 0; j < array_cases[i].n; j++)
            sb_printf(&b, "  let _ = println g[%d] in\n", j);
        for (int j = 0; j < array_cases[i].n; j++) {
            sb_printf(&b, "  let h = 1e-6 * max 1.0 (abs x%d[%d]) in\n", i, j);
            sb_printf(&b, "  let e = h * one_hot %d %d in\n", array_cases[i].n, j);
            sb_printf(&b, "  let _ = println h in\n");
            sb_printf(&b, "  let _ = println (%s (x%d + e)) in\n", array_cases[i].f, i);
            sb_printf(&b, "  let _ = println (%s (x%d - e)) in\n", array_cases[i].f, i);
        }
        total += 4 * array_cases[i].n;
    }
    sb_puts(&b, "  ()\n");
    char *out = run_src(b.data);
    double *v = malloc(sizeof *v * (size_t)(total + 8));
    ck_assert_int_eq(numbers(out, v, total + 8), total);
    int at = 0;
    for (int i = 0; i < n; i++) {
        int m = array_cases[i].n;
        for (int j = 0; j < m; j++) {
            double g = v[at + j];
            double h = v[at + m + 3 * j], fp = v[at + m + 3 * j + 1], fm = v[at + m + 3 * j + 2];
            double fd = (fp - fm) / (2 * h);
            ck_assert_msg(close_to(g, fd, 1e-6), "%s at %s, component %d: grad %.17g, finite difference %.17g",
                          array_cases[i].f, array_cases[i].x, j, g, fd);
        }
        at += 4 * m;
    }
    free(v);
    sb_free(&b);
}
END_TEST

/* Analytic values, exactly where the arithmetic is exact. */
START_TEST(test_grad_analytic)
{
    const char *src =
        "type r = { a: float, b: float }\n"
        "def cube (x: float) : float = x * x * x\n"
        "def main () : unit =\n"
        "  let _ = println (grad cube 2.0) in\n"
        "  let _ = println (grad (fn p => p.a * p.a + p.b * p.b + 7.0 * p.a) { a = 1.0, b = 1.0 }) in\n"
        "  let _ = println (grad (fn v => sum (v * v)) [1.0, 2.0, 3.0]) in\n"
        "  let _ = println (grad (fn m => sum (m @ [1.0, -1.0])) [[1.0, 2.0], [3.0, 4.0]]) in\n"
        "  let _ = println (value_and_grad (fn x => x * x + 1.0) 3.0) in\n"
        "  let (y, pb) = vjp (fn v => [v[0] * v[1], v[0] + v[1]]) [2.0, 3.0] in\n"
        "  let _ = println (y, pb [1.0, 0.0], pb [0.0, 1.0]) in\n"
        "  let _ = println (jacrev (fn v => [v[0] * v[1], v[1] * v[1]]) [2.0, 3.0]) in\n"
        "  let _ = println (grad prod [0.0, 2.0, 3.0], grad prod [0.0, 0.0, 3.0]) in\n"
        "  let _ = println (grad det [[1.0, 2.0], [2.0, 4.0]]) in\n"
        "  let _ = println (grad (fn x => max x 0.0 + min x 0.0) 0.0) in\n"
        "  let _ = println (grad (fn v => (sqrt (sum (v * v))) ^ 2.0) [0.0, 0.0]) in\n"
        "  let _ = println (grad (fn x => x ^ 1.0) 0.0, grad (fn x => x ^ 0.0) 0.0) in\n"
        "  let _ = println (grad (fn (x: f32) => float (3.0f32 * x * x)) 2.0f32) in\n"
        "  println (grad (fn x => if x > 0.0 then sqrt x else x) (-1.0))\n";
    char *out = run_src(src);
    const char *want = "12.0\n"
                       "{ a = 9.0, b = 2.0 }\n"
                       "[2.0, 4.0, 6.0]\n"
                       "[[1.0, -1.0], [1.0, -1.0]]\n"
                       "(10.0, 6.0)\n"
                       "([6.0, 5.0], [3.0, 2.0], [1.0, 1.0])\n"
                       "[[3.0, 2.0], [0.0, 6.0]]\n"
                       "([6.0, 0.0, 0.0], [0.0, 0.0, 0.0])\n"
                       "[[4.0, -2.0], [-2.0, 1.0]]\n"
                       "1.0\n"
                       "[0.0, 0.0]\n"
                       "(1.0, 0.0)\n"
                       "12.0\n"
                       "1.0\n";
    ck_assert_str_eq(out, want);
}
END_TEST

/* Forward and reverse mode agree: <jvp f x v, w> = <v, vjp f x w>, to
 * 1e-10 relative, on programs with loops, branches, maps and linear
 * algebra. */
static const char *dot_fns[] = {
    "fn x => [sin x[0] * x[1], exp x[1] + x[0] * x[0], x[0] * x[1] * x[2]]",
    "fn x => loop v = x for i < 4 do tanh (v * 1.5 + reverse v) * v[i % 3]",
    "fn x => loop v = x for i < 4 do tanh (v * 1.5 + 0.25) * v[i % 3] + reverse v",
    "fn x => map (fn a => if a > 0.0 then a * a else sin a) x * x[1]",
    "fn x => [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 1.0]] @ x * softmax x + logsumexp x",
    "fn x => let m = [[x[0], x[1]], [x[2], 2.0]] in "
    "concat (inv m @ [1.0, x[0]]) [det m, sum (cholesky (m @ transpose m))]",
    "fn x => scan (fn a b => a * b + 0.5) x[2] x + cumsum_ish x",
};

START_TEST(test_dot_product_fwd_rev)
{
    StrBuf b = {0};
    sb_puts(&b, "def cumsum_ish (x: []float) : []float = scan (+) 0.0 (x * x)\n");
    sb_puts(&b, "def main () : unit =\n");
    int n = (int)(sizeof dot_fns / sizeof dot_fns[0]);
    for (int i = 0; i < n; i++) {
        sb_printf(&b, "  let f = %s in\n", dot_fns[i]);
        sb_puts(&b, "  let x = [0.5, -1.2, 0.8] in\n"
                    "  let v = [1.0, 2.0, -1.0] in\n"
                    "  let (y, t) = jvp f x v in\n"
                    "  let w = map (fn i => 0.3 * float i - 0.7) (iota (length y)) in\n"
                    "  let (_, pb) = vjp f x in\n"
                    "  let _ = println (dot t w) in\n"
                    "  let _ = println (dot v (pb w)) in\n");
    }
    sb_puts(&b, "  ()\n");
    char *out = run_src(b.data);
    double v[64];
    ck_assert_int_eq(numbers(out, v, 64), 2 * n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabs(v[2 * i] - v[2 * i + 1]) <= 1e-10 * fmax(1.0, fabs(v[2 * i])),
                      "%s: <jvp, w> = %.17g, <v, vjp> = %.17g", dot_fns[i], v[2 * i], v[2 * i + 1]);
    sb_free(&b);
}
END_TEST

/* Nesting: reverse over reverse, reverse over forward, forward over
 * reverse, without perturbation confusion. */
START_TEST(test_nested)
{
    const char *src =
        "def sq (x: float) : float = x * x\n"
        "  with jvp (x, dx) => (sq x, 2.0 * x * dx)\n"
        "def f (x: float) : float = sq (sq x)\n"
        "def pw (x: float) (n: int) : float = if n == 0 then 1.0 else x * pw x (n - 1)\n"
        "def main () : unit =\n"
        "  let _ = println (grad (fn x => x * grad (fn y => x * y) 2.0) 1.0) in\n"
        "  let _ = println (grad (grad (fn x => x * x * x)) 2.0) in\n"
        "  let _ = println (grad (fn y => grad f y) 3.0) in\n"
        "  let _ = println (grad (fn z => grad (fn y => grad f y) z) 3.0) in\n"
        "  let _ = println (grad (fn y => (jvp f y 1.0).1) 3.0) in\n"
        "  let _ = println ((jvp (fn y => grad f y) 3.0 1.0).1) in\n"
        "  let _ = println (grad (fn x => grad (fn y => loop s = y for i < 3 do s * x) 1.5) 2.0) in\n"
        "  let _ = println (grad (fn y => grad (fn x => pw x 4) y) 3.0) in\n"
        "  println (jacrev (fn v => grad (fn u => u[0] * u[0] * u[1] + u[1] * u[1] * u[1]) v) [1.0, 2.0])\n";
    char *out = run_src(src);
    const char *want = "2.0\n12.0\n108.0\n72.0\n108.0\n108.0\n12.0\n108.0\n[[4.0, 2.0], [2.0, 12.0]]\n";
    ck_assert_str_eq(out, want);
}
END_TEST

/* ------------------------------------------------------------ the Core */

START_TEST(test_no_form_left)
{
    CProgram *p = ad_src("def f (x: float) : float = x * sin x\n"
                         "def main () : unit =\n"
                         "  let _ = println (grad f 1.0, value_and_grad f 2.0) in\n"
                         "  let (_, pb) = vjp (fn v => v * v) [1.0, 2.0] in\n"
                         "  let _ = println (pb [1.0, 1.0], jacrev (fn v => v * v) [1.0, 2.0]) in\n"
                         "  println (grad (fn x => stop_gradient (x * x) + x) 2.0)\n",
                         false);
    char *s = print_prog(p);
    ck_assert_msg(!strstr(s, "deriv "), "a derivative form is left:\n%s", s);
}
END_TEST

/* Straight-line code: the forward sweep is the primal code itself and the
 * backward sweep follows it in the same block: no loop, no closure, no
 * saved values. Inactive values emit no derivative code (one cos for
 * sin's derivative, exp's rule not applied to a constant). */
START_TEST(test_straight_line)
{
    CProgram *p = ad_src("def main () : unit =\n"
                         "  println (grad (fn x => exp 2.0 * sin x * x + exp 3.0) 1.0)\n",
                         false);
    char *s = fun_text(print_prog(p), "main");
    ck_assert_int_eq(count(s, "prim cos("), 1);
    ck_assert_int_eq(count(s, "prim sin("), 1);
    ck_assert_int_eq(count(s, "prim exp("), 2);
    ck_assert_int_eq(count(s, "loop "), 0);
    ck_assert_int_eq(count(s, "fn "), 0);
    ck_assert_int_eq(count(s, "prim update("), 0);
}
END_TEST

/* A loop: x[i] only depends on the counter and x, so the reversed loop
 * recomputes it (no array of saved values); the state s is needed by the
 * derivative of s * x[i] and is saved, one value per iteration. The
 * adjoint of x is updated in place (one update per reversed iteration). */
START_TEST(test_loop_residuals)
{
    CProgram *p = ad_src("def f (x: []float) : float = loop s = 1.0 for i < length x do s * x[i]\n"
                         "def g (x: []float) : float = loop s = 0.0 for i < length x do s + x[i] * x[i]\n"
                         "def main () : unit = println (grad f [1.0, 2.0], grad g [1.0, 2.0])\n",
                         true);
    char *s = fun_text(print_prog(p), "main");
    /* f: one update saving s in the forward loop, one accumulating x̄;
     * g: nothing saved, one update accumulating x̄ */
    ck_assert_int_eq(count(s, "prim update("), 3);
    ck_assert_int_eq(count(s, "loop "), 4);
}
END_TEST

/* A map transposes to a map (no loop, no closure); sum to a fill. */
START_TEST(test_map_transposes_to_map)
{
    CProgram *p = ad_src("def main () : unit =\n"
                         "  println (grad (fn v => sum (map (fn a => a * sin a) v)) [1.0, 2.0])\n",
                         false);
    char *s = fun_text(print_prog(p), "main");
    ck_assert_int_eq(count(s, "soac map("), 2);
    ck_assert_int_eq(count(s, "prim fill("), 1);
    ck_assert_int_eq(count(s, "loop "), 0);
    ck_assert_int_eq(count(s, "prim update("), 0);
}
END_TEST

/* A gather from a captured array inside a map: its adjoint is accumulated
 * in place by one loop over the elements (no per-element array of the
 * captured array's size: no map producing a [][]float). */
START_TEST(test_map_gather)
{
    CProgram *p = ad_src("def main () : unit =\n"
                         "  println (grad (fn l => sum (map (fn i => l[i % 3] * l[i % 3]) (iota 6))) [1.0, 2.0, 3.0])\n",
                         false);
    char *s = fun_text(print_prog(p), "main");
    ck_assert_int_eq(count(s, "[][]float = soac map("), 0);
    ck_assert_int_eq(count(s, "loop "), 1);
    ck_assert_str_eq(run_src("def main () : unit =\n"
                             "  println (grad (fn l => sum (map (fn i => l[i % 3] * l[i % 3]) (iota 6))) [1.0, 2.0, 3.0])\n"),
                     "[4.0, 8.0, 12.0]\n");
}
END_TEST

/* One f_rev per recursive function, calling itself; non-recursive callees
 * are inlined. */
START_TEST(test_fun_memo)
{
    CProgram *p = ad_src("def pw (x: float) (n: int) : float = if n == 0 then 1.0 else x * pw x (n - 1)\n"
                         "def sq (x: float) : float = x * x\n"
                         "def main () : unit =\n"
                         "  let a = grad (fn x => pw x 3 + sq x) 1.5 in\n"
                         "  let b = grad (fn x => pw (sq x) 2) 1.5 in\n"
                         "  println (a, b)\n",
                         false);
    char *s = print_prog(p);
    ck_assert_int_eq(count(s, "def pw_rev "), 1);
    ck_assert_int_eq(count(s, "def pw_rev_1"), 0);
    ck_assert_int_eq(count(s, "def sq_rev"), 0);
    char *r = fun_text(s, "pw_rev");
    ck_assert_int_eq(count(r, "call pw_rev("), 1);
}
END_TEST

/* Checkpointing: the same gradients with the state saved per segment (k
 * segments, or about sqrt(n) with -1), and the forward loop saves states
 * only (one update per iteration at segment starts, under an if). */
static const char *ck_src =
    "def f (x: []float) : float =\n"
    "  loop s = 1.0 for i < length x do (if x[i] > 0.0 then s * x[i] + 0.5 else sin s - x[i])\n"
    "def g (x: []float) : float = sum (loop v = x for i < 7 do tanh (v * 1.1 + float i * 0.1) * v[i % 3])\n"
    "def main () : unit =\n"
    "  let x = map (fn i => sin (float i * 1.7)) (iota 50) in\n"
    "  let gf = grad f x in\n"
    "  let gg = grad g [0.3, -0.2, 0.9] in\n"
    "  let _ = println (sum gf) in let _ = println (sum (gf * x)) in\n"
    "  let _ = println gg[0] in let _ = println gg[1] in println gg[2]\n";

START_TEST(test_checkpointing)
{
    double ref[8], got[8];
    ck_assert_int_eq(numbers(run_src(ck_src), ref, 8), 5);
    int ks[3] = {3, -1, 100};
    for (int k = 0; k < 3; k++) {
        ad_reverse_checkpoint = ks[k];
        diag_reset();
        char *out = run_src(ck_src);
        ad_reverse_checkpoint = 0;
        ck_assert_int_eq(numbers(out, got, 8), 5);
        for (int i = 0; i < 5; i++)
            ck_assert_msg(close_to(got[i], ref[i], 1e-14), "checkpoint %d, value %d: %.17g, without %.17g", ks[k],
                          i, got[i], ref[i]);
    }
    ad_reverse_checkpoint = 3;
    CProgram *p = ad_src("def main () : unit =\n"
                         "  println (grad (fn x => loop s = 1.0 for i < length x do s * x[i]) [1.0, 2.0])\n",
                         false);
    ad_reverse_checkpoint = 0;
    char *s = fun_text(print_prog(p), "main");
    /* forward: the state at segment starts; a segment recomputed saving s;
     * reversed: x̄ updated in place */
    ck_assert_int_eq(count(s, "prim update("), 3);
    ck_assert_int_eq(count(s, "prim mod("), 1);
    ck_assert_int_eq(count(s, "loop "), 4);
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
    /* a closure over the differentiated input passed to a recursive
     * function (a function parameter from outside is dispatched on its
     * code: tests/ad/hofn_*.dl) */
    expect_error("def it (f: float -> float) (n: int) (x: float) : float =\n"
                 "  if n == 0 then x else it f (n - 1) (f x)\n"
                 "def main () : unit = println (grad (fn x => it (fn y => x * y) 2 x) 1.0)\n",
                 "passes a function value that depends on the differentiated input");
    /* (filter has a reverse rule now: tests/ad/rev_filter.dl) */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ad_reverse");
    TCase *run = tcase_create("run");
    tcase_add_checked_fixture(run, setup, NULL);
    tcase_set_timeout(run, 300);
    tcase_add_test(run, test_grad_finite_differences);
    tcase_add_test(run, test_grad_arrays_finite_differences);
    tcase_add_test(run, test_grad_analytic);
    tcase_add_test(run, test_dot_product_fwd_rev);
    tcase_add_test(run, test_nested);
    tcase_add_test(run, test_checkpointing);
    suite_add_tcase(s, run);
    TCase *core = tcase_create("core");
    tcase_add_checked_fixture(core, setup, NULL);
    tcase_set_timeout(core, 120);
    tcase_add_test(core, test_no_form_left);
    tcase_add_test(core, test_straight_line);
    tcase_add_test(core, test_loop_residuals);
    tcase_add_test(core, test_map_transposes_to_map);
    tcase_add_test(core, test_map_gather);
    tcase_add_test(core, test_fun_memo);
    tcase_add_test(core, test_errors);
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
