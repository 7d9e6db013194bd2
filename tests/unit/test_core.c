/* test_core.c — the Core IR: lowering from source (parse → typecheck →
 * lower) and the properties of the printed Core, the verifier, pattern
 * matching, monomorphisation, and the simplifier (folds constants, drops
 * dead code, keeps effects and failures). */
#include "core_support.h"

static char *core_of(const char *text) { return print_prog(lower_src(text)); }

static char *simplified(const char *text)
{
    CProgram *p = lower_src(text);
    core_simplify(p, 2);
    ck_assert_msg(core_verify(p), "simplified Core does not verify:\n%s\n%s", captured(),
                  print_prog(p));
    return print_prog(p);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *s = hay; (s = strstr(s, needle)); s += strlen(needle))
        n++;
    return n;
}

#define HAS(text, s) ck_assert_msg(strstr(text, s), "missing \"%s\" in:\n%s", s, text)
#define LACKS(text, s) ck_assert_msg(!strstr(text, s), "unexpected \"%s\" in:\n%s", s, text)

/* The function named `name` in the printed program (up to the next def). */
static char *fun_text(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "def %s ", name);
    const char *s = strstr(text, key);
    ck_assert_msg(s != NULL, "no function %s in:\n%s", name, text);
    const char *e = strstr(s + 1, "\ndef ");
    const char *e2 = strstr(s + 1, "\nexport def ");
    if (!e || (e2 && e2 < e))
        e = e2;
    size_t n = e ? (size_t)(e - s) : strlen(s);
    return arena_strndup(dcc_arena, s, n);
}

/* ---------------------------------------------------------------- lowering */

START_TEST(test_scalars_calls)
{
    char *c = core_of("def f (x: float) (y: float) : float = x * y + 2.0\n"
                      "def main () : unit = println (f 3.0 4.0)\n");
    char *f = fun_text(c, "f");
    HAS(f, ": float) (y");
    HAS(f, "prim mul(x");
    HAS(f, "prim add(");
    HAS(f, ", 2.0)");
    char *m = fun_text(c, "main");
    HAS(m, "call f(3.0, 4.0)");
    HAS(m, "prim println(");
    HAS(c, "-- main");
}
END_TEST

START_TEST(test_anf_one_binding_per_line)
{
    char *c = core_of("def main () : unit = println ((1.0 + 2.0) * (3.0 - 4.0))\n");
    /* nested operations are named: each prim's operands are atoms */
    HAS(c, "let ");
    ck_assert_int_eq(count(c, "prim add("), 1);
    ck_assert_int_eq(count(c, "prim sub("), 1);
    ck_assert_int_eq(count(c, "prim mul("), 1);
    LACKS(c, "mul(prim");
}
END_TEST

START_TEST(test_monomorphise_instances)
{
    char *c = core_of("def id x = x\n"
                      "def main () : unit = println (id 3, id 2.0, id true)\n");
    HAS(c, "def id (");
    HAS(c, "def id_1 (");
    HAS(c, "def id_2 (");
    LACKS(c, "def id_3 ");
    LACKS(c, "'a"); /* no type variable survives */
    HAS(c, ": int) : int =");
    HAS(c, ": float) : float =");
    HAS(c, ": bool) : bool =");
}
END_TEST

START_TEST(test_monomorphise_recursive)
{
    char *c = core_of("type 'a tree = Leaf | Node of 'a tree * 'a * 'a tree\n"
                      "def size t = match t with | Leaf => 0 | Node (l, _, r) => size l + 1 + size r\n"
                      "def main () : unit =\n"
                      "  println (size (Node (Leaf, 1, Leaf)), size (Node (Leaf, \"a\", Leaf)))\n");
    char *s0 = fun_text(c, "size");
    char *s1 = fun_text(c, "size_1");
    /* each instance calls itself, not a third (unit) instance */
    ck_assert_int_eq(count(s0, "call size("), 2);
    ck_assert_int_eq(count(s1, "call size_1("), 2);
    LACKS(c, "def size_2");
    HAS(s0, "int tree");
    HAS(s1, "string tree");
}
END_TEST

START_TEST(test_unused_polymorphism_defaults_to_unit)
{
    char *c = core_of("def main () : unit = let xs = [] in println (length xs)\n");
    HAS(c, "[]unit");
}
END_TEST

START_TEST(test_tuples_records)
{
    char *c = core_of("type r = { a: float, b: float }\n"
                      "def main () : unit =\n"
                      "  let p = { b = 1.0, a = 2.0 } in\n"
                      "  let q = { p with b = 5.0 } in\n"
                      "  let t = (p.a, q.b) in\n"
                      "  println (t.1)\n");
    /* fields in declaration order, whatever the order written */
    HAS(c, "prim record(2.0, 1.0)");
    HAS(c, "prim field[0](");
    HAS(c, "prim field[1](");
    HAS(c, "prim tuple(");
    HAS(c, "prim proj[1](");
    ck_assert_int_eq(count(c, "prim record("), 2);
}
END_TEST

START_TEST(test_constructors_and_match)
{
    char *c = core_of("type shape = Circle of float | Rect of float * float | Empty\n"
                      "def area s = match s with\n"
                      "  | Circle r => 3.0 * r * r\n"
                      "  | Rect (w, h) => w * h\n"
                      "  | Empty => 0.0\n"
                      "def main () : unit = println (area (Rect (2.0, 3.0)), area Empty)\n");
    char *a = fun_text(c, "area");
    HAS(a, "case s");
    HAS(a, "| Circle (");
    HAS(a, "| Rect (");
    HAS(a, "| Empty =>");
    HAS(a, "prim proj[0](");
    HAS(a, "prim proj[1](");
    LACKS(a, "match failure"); /* exhaustive: no failure leaf */
    char *m = fun_text(c, "main");
    HAS(m, "prim con[1](");
    HAS(m, "prim con[2]()");
}
END_TEST

START_TEST(test_match_literals_nested_default)
{
    char *c = core_of("type 'a option = None | Some of 'a\n"
                      "def f o = match o with\n"
                      "  | Some (Some 0) => \"zero\"\n"
                      "  | Some (Some n) => \"some\"\n"
                      "  | _ => \"other\"\n"
                      "def g n = match n with | 1 => 10 | 2 => 20\n"
                      "def main () : unit = println (f (Some (Some 3)), g 2)\n");
    char *f = fun_text(c, "f");
    ck_assert_int_eq(count(f, "case "), 2); /* outer and inner option */
    HAS(f, "prim eq(");
    HAS(f, ", 0)");
    HAS(f, "| _ =>");
    char *g = fun_text(c, "g");
    HAS(g, ", 1)");
    HAS(g, ", 2)");
    HAS(g, "prim error(\"match failure: no case covers the value\")"); /* not exhaustive */
}
END_TEST

START_TEST(test_match_first_row_wins)
{
    /* both rows match (1, 2); the first must be chosen: the action of the
     * second row is reachable only where the first fails */
    char *c = simplified("def main () : unit = println (match (1, 2) with | (1, _) => 10 | (_, 2) => 20)\n");
    HAS(c, "prim println(10)");
}
END_TEST

/* The decision trees choose the right clause: every call has constant
 * arguments, so the simplifier evaluates the trees completely. */
START_TEST(test_match_semantics_by_folding)
{
    char *c = simplified(
        "type 'a option = None | Some of 'a\n"
        "type t = A | B of int | C of int * int\n"
        "def f a b = match (a, b) with\n"
        "  | (Some x, Some y) => x + y\n"
        "  | (Some x, None) => x * 10\n"
        "  | (None, Some 7) => 77\n"
        "  | (None, _) => 0\n"
        "def g v = match v with\n"
        "  | C (1, y) => y\n"
        "  | C (x, 2) => x * 100\n"
        "  | B 5 => 5000\n"
        "  | B n => n\n"
        "  | _ => -1\n"
        "def h s = match s with | \"a\" => 1 | \"b\" => 2 | _ => 3\n"
        "def main () : unit =\n"
        "  println (f (Some 1) None, f (Some 2) (Some 3), f None (Some 7), f None (Some 8),\n"
        "           f None None, g (C (1, 9)), g (C (3, 2)), g (C (3, 3)), g (B 5), g (B 6),\n"
        "           g A, h \"b\", h \"z\")\n");
    HAS(c, "prim tuple(10, 5, 77, 0, 0, 9, 300, -1, 5000, 6, -1, 2, 3)");
}
END_TEST

START_TEST(test_refutable_let_and_params)
{
    char *c = core_of("type 'a option = None | Some of 'a\n"
                      "def unwrap (Some x) = x\n"
                      "def main () : unit = let Some y = Some 2 in println (unwrap (Some y))\n");
    char *u = fun_text(c, "unwrap");
    HAS(u, "case ");
    HAS(u, "match failure");
    HAS(fun_text(c, "main"), "match failure");
}
END_TEST

START_TEST(test_loops)
{
    char *c = core_of("def main () : unit =\n"
                      "  let s = loop acc = 0.0 for i < 10 do acc + float i in\n"
                      "  let (a, b) = loop (a, b) = (0, 1) while a < 100 do (b, a + b) in\n"
                      "  println (s, a, b)\n");
    HAS(c, " for i");
    HAS(c, " < 10 do");
    HAS(c, " while\n");
    HAS(c, "do\n");
    HAS(c, "prim lt(");
    /* the state pattern is taken apart in both cond and body */
    ck_assert_int_ge(count(c, "prim proj[0]("), 2);
}
END_TEST

START_TEST(test_arrays_index_slice)
{
    char *c = core_of("def main () : unit =\n"
                      "  let m = [[1.0, 2.0], [3.0, 4.0]] in\n"
                      "  let xs = [1.0, 2.0, 3.0] in\n"
                      "  println (m[1, 0], m[0], xs[1:], xs[:2], m[:, 1])\n");
    HAS(c, "[][]float = prim array(");
    HAS(c, "prim index(m");
    HAS(c, ", 1, 0)");
    /* xs[1:]: position 0 a range (bit 0) with hi absent (bit 16) */
    HAS(c, "prim slice[65537](xs");
    HAS(c, ", 1, 0)");
    HAS(c, "prim slice[1](xs");
    HAS(c, ", 0, 2)");
    /* m[:, 1]: range then single index */
    HAS(c, "prim slice[65537](m");
    HAS(c, ", 0, 0, 1, 0)");
}
END_TEST

START_TEST(test_soacs_eta_expand)
{
    char *c = core_of("def add (a: float) (b: float) : float = a + b\n"
                      "def main () : unit =\n"
                      "  let xs = [1.0, 2.0] in\n"
                      "  println (map (add 1.0) xs, map2 add xs xs, reduce (+) 0.0 xs,\n"
                      "           fold (fn a x => a + x) 0.0 xs, filter (fn x => x > 1.0) xs,\n"
                      "           scan (+) 0.0 xs)\n");
    HAS(c, "soac map(xs");
    HAS(c, "call add(1.0, x");
    HAS(c, "soac map(xs");
    HAS(c, "soac reduce(0.0, xs");
    HAS(c, "soac fold(0.0, xs");
    HAS(c, "soac filter(xs");
    HAS(c, "soac scan(0.0, xs");
    /* the operator section is inlined into the lambda, no closure */
    LACKS(fun_text(c, "main"), "apply ");
}
END_TEST

START_TEST(test_builtins_to_prims)
{
    char *c = core_of("def main () : unit =\n"
                      "  let z = zeros (2, 3) in\n"
                      "  let (k1, _) = split (key 1) in\n"
                      "  let u = uniform k1 4 in\n"
                      "  let r = reshape (3, 2) z in\n"
                      "  println (exp 1.0, sum u, transpose r, shape z, args ())\n");
    HAS(c, "prim zeros(");
    HAS(c, "prim key(1)");
    HAS(c, "prim split(");
    HAS(c, "prim uniform(k1");
    HAS(c, ", 4)");
    HAS(c, "prim reshape(z"); /* the array first, then the dimensions */
    HAS(c, "prim exp(1.0)");
    HAS(c, "prim sum(u");
    HAS(c, "prim transpose(r");
    HAS(c, "prim args()");
}
END_TEST

START_TEST(test_derivatives)
{
    char *c = core_of("def loss (w: []float, b: float) (x: [][]float) : float = sum (x @ w + b)\n"
                      "def main () : unit =\n"
                      "  let x = [[1.0, 2.0]] in\n"
                      "  let g = grad (fn p => loss p x) ([1.0, 2.0], 0.0) in\n"
                      "  let (v, d) = jvp (fn t => t * t) 3.0 1.0 in\n"
                      "  let (y, pb) = vjp sin 1.0 in\n"
                      "  println (g, v, d, y, pb 1.0, stop_gradient v)\n");
    HAS(c, "deriv grad(");
    HAS(c, "call loss(x");
    HAS(c, "deriv jvp(3.0, 1.0) fn (");
    HAS(c, "deriv vjp(1.0) fn (");
    HAS(c, "prim sin(");
    HAS(c, "deriv stop_gradient(");
    HAS(c, "apply "); /* the pullback is a closure */
}
END_TEST

START_TEST(test_vector_space_ops)
{
    char *c = core_of("def main () : unit =\n"
                      "  let p = ([1.0, 2.0], 3.0) in\n"
                      "  let q = p - 0.5 * p in\n"
                      "  println (-q)\n");
    /* componentwise: two muls, two subs, two negs; the verifier checked
     * that no arithmetic prim sees a tuple */
    ck_assert_int_eq(count(c, "prim mul(0.5, "), 2);
    ck_assert_int_eq(count(c, "prim sub("), 2);
    ck_assert_int_eq(count(c, "prim neg("), 2);
    HAS(c, "[]float = prim mul(");
}
END_TEST

START_TEST(test_short_circuit)
{
    char *c = core_of("def f (x: int) : bool = println x == ()\n"
                      "def main () : unit = println (false && f 1, true || f 2)\n");
    char *m = fun_text(c, "main");
    /* each call is inside a branch, not evaluated before the if */
    ck_assert_int_eq(count(m, "if false"), 1);
    ck_assert_int_eq(count(m, "if true"), 1);
    const char *then_ = strstr(m, "then");
    const char *call = strstr(m, "call f(1)");
    ck_assert_ptr_nonnull(call);
    ck_assert_msg(then_ && then_ < call, "call before the branch:\n%s", m);
}
END_TEST

START_TEST(test_structural_equality)
{
    char *c = core_of("type 'a option = None | Some of 'a\n"
                      "def main () : unit =\n"
                      "  println ((1, 2.0) == (1, 2.0), Some 1 == None, [1, 2] != [1, 2])\n");
    HAS(c, "def eq_option (");
    HAS(c, "call eq_option(");
    HAS(c, "prim tag(");
    HAS(c, "prim payload[1](");
    HAS(c, "prim ne("); /* arrays of scalars: one whole-array comparison */
}
END_TEST

START_TEST(test_closures_and_partial_application)
{
    char *c = core_of("def add3 (a: int) (b: int) (c: int) : int = a + b + c\n"
                      "def twice (f: int -> int) (x: int) : int = f (f x)\n"
                      "def main () : unit =\n"
                      "  let g = add3 1 2 in\n"
                      "  println (twice g 5, twice (fn v => v * 2) 1)\n");
    char *m = fun_text(c, "main");
    HAS(m, "int -> int = fn (");
    HAS(m, "call add3(1, 2, x");
    HAS(m, "call twice(");
    char *t = fun_text(c, "twice");
    ck_assert_int_eq(count(t, "apply f"), 2);
}
END_TEST

START_TEST(test_let_rec_lifted)
{
    char *c = core_of("def main () : unit =\n"
                      "  let k = [1, 2, 3] in\n"
                      "  let rec go i acc = if i >= length k then acc else go (i + 1) (acc + k[i]) in\n"
                      "  println (go 0 0)\n");
    /* lifted to a def taking the free variable k first */
    char *g = fun_text(c, "go");
    HAS(g, "def go (k");
    HAS(g, ": []int) (i");
    HAS(g, "call go(k");
    HAS(fun_text(c, "main"), "call go(k");
}
END_TEST

START_TEST(test_custom_rule_and_exports)
{
    char *c = core_of("def safe_log (x: float) : float = log (max x 1e-12)\n"
                      "  with jvp (x, dx) => (safe_log x, dx / max x 1e-12)\n"
                      "export def norm (v: []float) : float = sqrt (sum (v * v)) + safe_log 1.0\n"
                      "export grad norm as norm_grad\n");
    HAS(c, "export def t_norm (");
    HAS(c, "export def t_norm_grad (");
    HAS(c, "deriv grad(");
    HAS(c, "jvp rule safe_log_jvp");
    HAS(c, "def safe_log_jvp (");
    HAS(c, "rule of safe_log");
}
END_TEST

START_TEST(test_local_polymorphism)
{
    char *c = core_of("def main () : unit =\n"
                      "  let pair = fn x => (x, x) in\n"
                      "  println (pair 1, pair true)\n");
    HAS(c, "(int, int) = prim tuple(1, 1)");
    HAS(c, "(bool, bool) = prim tuple(true, true)");
}
END_TEST

START_TEST(test_every_cexpr_that_can_fail_has_a_loc)
{
    CProgram *p = lower_src("def main () : unit =\n"
                            "  let xs = [1, 2] in\n"
                            "  println (xs[3], 7 / 0)\n");
    CBlock *b = p->main->body;
    int seen = 0;
    for (int i = 0; i < b->nbinds; i++) {
        CExpr *e = b->binds[i].e;
        if (e->kind == CE_PRIM && (e->u.prim.op == P_INDEX || e->u.prim.op == P_DIV)) {
            ck_assert_int_eq(e->loc.line, 3);
            ck_assert_int_gt(e->loc.col, 1);
            seen++;
        }
    }
    ck_assert_int_eq(seen, 2);
}
END_TEST

/* ---------------------------------------------------------------- verifier */

START_TEST(test_verify_rejects_broken_core)
{
    CProgram *p = NEW(CProgram);
    CFun *f = core_fun_new("f", "f", loc_none);
    f->ret = type_float();
    f->body = core_block_new();
    CVar *ghost = core_var("ghost", type_float(), loc_none); /* never bound */
    CAtom *args[2] = {core_atom_var(ghost), core_atom_float(1.0, type_float())};
    CVar *x = core_bind(f->body, "x", core_prim(P_ADD, type_float(), loc_none, args, 2, 0));
    f->body->result = core_atom_var(x);
    core_program_add(p, f);
    ck_assert(!core_verify(p));
    ck_assert_ptr_nonnull(strstr(captured(), "out of scope"));

    /* a well-formed version passes */
    diag_reset();
    CFun *g = core_fun_new("g", "g", loc_none);
    g->ret = type_float();
    g->nparams = 1;
    g->params = NEWN(CVar *, 1);
    g->params[0] = core_var("p", type_float(), loc_none);
    g->body = core_block_new();
    CAtom *gargs[2] = {core_atom_var(g->params[0]), core_atom_float(1.0, type_float())};
    CVar *y = core_bind(g->body, "y", core_prim(P_ADD, type_float(), loc_none, gargs, 2, 0));
    g->body->result = core_atom_var(y);
    CProgram *q = NEW(CProgram);
    core_program_add(q, g);
    ck_assert(core_verify(q));

    /* a projection out of range, a call with the wrong arity */
    CProgram *r = NEW(CProgram);
    CFun *h = core_fun_new("h", "h", loc_none);
    h->ret = type_float();
    h->body = core_block_new();
    Type *items[2] = {type_float(), type_int()};
    CAtom *targs[2] = {core_atom_float(1.0, type_float()), core_atom_int(2)};
    CVar *t = core_bind(h->body, "t", core_prim(P_TUPLE, type_tuple(items, 2), loc_none, targs, 2, 0));
    CAtom *ta = core_atom_var(t);
    CVar *c = core_bind(h->body, "c", core_prim(P_PROJ, type_float(), loc_none, &ta, 1, 1));
    h->body->result = core_atom_var(c);
    core_program_add(r, h);
    ck_assert(!core_verify(r));
}
END_TEST

START_TEST(test_copy_renames)
{
    CProgram *p = lower_src("def f (x: float) : float = let y = x * x in y + x\n"
                            "def main () : unit = println (f 2.0)\n");
    CFun *f = NULL;
    for (int i = 0; i < p->nfuns; i++)
        if (strcmp(p->funs[i]->name, "f") == 0)
            f = p->funs[i];
    ck_assert_ptr_nonnull(f);
    CAtom *three = core_atom_float(3.0, type_float());
    CBlock *b = core_copy_block(f->body, f->params, &three, 1);
    ck_assert_int_eq(b->nbinds, f->body->nbinds);
    for (int i = 0; i < b->nbinds; i++)
        ck_assert_ptr_ne(b->binds[i].var, f->body->binds[i].var);
    ck_assert_int_eq(b->binds[0].e->args[0]->kind, CA_FLOAT);
}
END_TEST

/* ---------------------------------------------------------------- simplifier */

START_TEST(test_simplify_folds_constants)
{
    char *c = simplified("def main () : unit = println (2.0 * 3.0 + 1.0, 7 / 2, -7 % 3, 1 < 2)\n");
    HAS(c, "prim tuple(7.0, 3, -1, true)");
    LACKS(c, "prim mul(");
    LACKS(c, "prim div(");
}
END_TEST

START_TEST(test_simplify_keeps_failures)
{
    char *c = simplified("def main () : unit =\n"
                         "  let xs = [1, 2] in\n"
                         "  let _ = xs[5] in\n"
                         "  let z = 7 / 0 in\n"
                         "  println 1\n");
    HAS(c, "prim index(");  /* may fail: kept although unused */
    HAS(c, "prim div(7, 0)"); /* not folded, not dropped */
}
END_TEST

START_TEST(test_simplify_dce_keeps_effects)
{
    char *c = simplified("def main () : unit =\n"
                         "  let x = 2.0 in\n"
                         "  let unused = sin x * 3.0 in\n"
                         "  let _ = println \"a\" in\n"
                         "  let _ = print \"b\" in\n"
                         "  println x\n");
    LACKS(c, "prim sin(");
    LACKS(c, "prim mul(");
    HAS(c, "prim println(\"a\")");
    HAS(c, "prim print(\"b\")");
    HAS(c, "prim println(2.0)");
    /* in order */
    ck_assert(strstr(c, "println(\"a\")") < strstr(c, "print(\"b\")"));
}
END_TEST

START_TEST(test_simplify_inline_beta_cse)
{
    char *c = simplified("def sq (x: float) : float = x * x\n"
                         "def main () : unit =\n"
                         "  let y = float (length (args ())) in\n"
                         "  let f = fn v => v + 1.0 in\n"
                         "  println (sq y + sq y, f y)\n");
    LACKS(c, "call sq(");  /* inlined */
    LACKS(c, "def sq ");   /* and dropped */
    LACKS(c, "apply ");    /* beta-reduced */
    ck_assert_int_eq(count(c, "prim mul(y"), 1); /* CSE */
    HAS(c, "prim add(y");
}
END_TEST

START_TEST(test_simplify_case_of_known)
{
    char *c = simplified("type 'a option = None | Some of 'a\n"
                         "def get o = match o with | Some x => x | None => 0\n"
                         "def main () : unit = println (get (Some 41) + 1)\n");
    HAS(c, "prim println(42)");
    LACKS(c, "case ");
}
END_TEST

START_TEST(test_simplify_keeps_rule_calls)
{
    char *c = simplified("def safe_log (x: float) : float = log (max x 1e-12)\n"
                         "  with jvp (x, dx) => (safe_log x, dx / max x 1e-12)\n"
                         "def main () : unit = println (safe_log 2.0)\n");
    HAS(c, "call safe_log(2.0)");
    HAS(c, "def safe_log_jvp ");
}
END_TEST

START_TEST(test_simplify_map_fusion)
{
    char *c = simplified("def main () : unit =\n"
                         "  let xs = [1.0, 2.0] in\n"
                         "  println (map (fn x => x * 2.0) (map (fn x => x + 1.0) xs))\n");
    ck_assert_int_eq(count(c, "soac map("), 1);
    HAS(c, "prim add(");
    HAS(c, "prim mul(");
}
END_TEST

START_TEST(test_simplify_f32_folding_rounds_once)
{
    char *c = simplified("def main () : unit = println (0.1f32 + 0.2f32)\n");
    /* (float)(0.1f + 0.2f) is 0.3f exactly as printed at single precision */
    HAS(c, "prim println(0.3f32)");
}
END_TEST

static Suite *core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("lower");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_scalars_calls);
    tcase_add_test(tc, test_anf_one_binding_per_line);
    tcase_add_test(tc, test_monomorphise_instances);
    tcase_add_test(tc, test_monomorphise_recursive);
    tcase_add_test(tc, test_unused_polymorphism_defaults_to_unit);
    tcase_add_test(tc, test_tuples_records);
    tcase_add_test(tc, test_constructors_and_match);
    tcase_add_test(tc, test_match_literals_nested_default);
    tcase_add_test(tc, test_match_first_row_wins);
    tcase_add_test(tc, test_match_semantics_by_folding);
    tcase_add_test(tc, test_refutable_let_and_params);
    tcase_add_test(tc, test_loops);
    tcase_add_test(tc, test_arrays_index_slice);
    tcase_add_test(tc, test_soacs_eta_expand);
    tcase_add_test(tc, test_builtins_to_prims);
    tcase_add_test(tc, test_derivatives);
    tcase_add_test(tc, test_vector_space_ops);
    tcase_add_test(tc, test_short_circuit);
    tcase_add_test(tc, test_structural_equality);
    tcase_add_test(tc, test_closures_and_partial_application);
    tcase_add_test(tc, test_let_rec_lifted);
    tcase_add_test(tc, test_custom_rule_and_exports);
    tcase_add_test(tc, test_local_polymorphism);
    tcase_add_test(tc, test_every_cexpr_that_can_fail_has_a_loc);
    tcase_add_test(tc, test_verify_rejects_broken_core);
    tcase_add_test(tc, test_copy_renames);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("simplify");
    tcase_add_checked_fixture(ts, setup, NULL);
    tcase_add_test(ts, test_simplify_folds_constants);
    tcase_add_test(ts, test_simplify_keeps_failures);
    tcase_add_test(ts, test_simplify_dce_keeps_effects);
    tcase_add_test(ts, test_simplify_inline_beta_cse);
    tcase_add_test(ts, test_simplify_case_of_known);
    tcase_add_test(ts, test_simplify_keeps_rule_calls);
    tcase_add_test(ts, test_simplify_map_fusion);
    tcase_add_test(ts, test_simplify_f32_folding_rounds_once);
    suite_add_tcase(s, ts);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(core_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
