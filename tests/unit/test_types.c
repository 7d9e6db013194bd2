/* test_types.c — types: the unifier (rank arithmetic, occurs check,
 * levels), normalisation, the printer, tangent types, the built-in
 * schemes, and inference end to end on small programs. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dcc.h"

static FILE *diag_file;

static void capture(void)
{
    diag_file = tmpfile();
    ck_assert_ptr_nonnull(diag_file);
    diag_set_stream(diag_file);
    diag_set_colour(0);
    diag_reset();
}

static char *captured(void)
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

/* A type from the scheme syntax, with fresh variables at level 1; the
 * variables are shared across calls within a test through names/vars. */
static const char *names[32];
static Type *vars[32];
static int nvars;

static void reset_vars(void) { nvars = 0; }

static Type *ty(const char *s)
{
    Type *t = builtin_parse_type(s, 1, names, vars, &nvars);
    ck_assert_msg(t != NULL, "cannot parse type '%s'", s);
    return t;
}

static Type *var(const char *name)
{
    const char *n = intern(name);
    for (int i = 0; i < nvars; i++)
        if (names[i] == n)
            return vars[i];
    return ty(arena_printf(dcc_arena, "'%s", name));
}

#define ASSERT_TYPE(t, want)                                                             \
    do {                                                                                 \
        char *got_ = type_to_string(t);                                                  \
        ck_assert_msg(strcmp(got_, want) == 0, "type is %s, expected %s", got_, want);   \
    } while (0)

/* ---- unification -------------------------------------------------------- */

START_TEST(test_unify_base)
{
    reset_vars();
    ck_assert(type_unify(type_int(), type_int()));
    ck_assert(!type_unify(type_int(), type_float()));
    UnifyFailure f = type_unify_failure();
    ck_assert(!f.occurs);
    ck_assert_int_eq(type_resolve(f.a)->kind, TY_INT);
    ck_assert_int_eq(type_resolve(f.b)->kind, TY_FLOAT);
    ck_assert(type_unify(ty("(int, float) -> bool"), ty("(int, float) -> bool")));
    ck_assert(!type_unify(ty("(int, float)"), ty("(int, float, int)")));
    ck_assert(!type_unify(ty("int -> int"), ty("(int, int)")));
}
END_TEST

START_TEST(test_unify_vars)
{
    reset_vars();
    Type *f = ty("'a -> 'b");
    ck_assert(type_unify(f, ty("int -> []float")));
    ASSERT_TYPE(var("a"), "int");
    ASSERT_TYPE(var("b"), "[]float");
    /* once bound, a variable clashes like its value */
    ck_assert(!type_unify(var("a"), type_float()));
    ck_assert(type_unify(ty("('c, 'c)"), ty("('d, float)")));
    ASSERT_TYPE(var("d"), "float");
}
END_TEST

START_TEST(test_occurs_check)
{
    reset_vars();
    Type *a = var("a");
    ck_assert(!type_unify(a, ty("'a -> 'b")));
    UnifyFailure f = type_unify_failure();
    ck_assert(f.occurs);
    ck_assert_ptr_eq(type_resolve(f.a), type_resolve(a));
    ck_assert_int_eq(type_resolve(a)->kind, TY_VAR); /* left unbound */
    ck_assert(!type_unify(ty("[]'c"), ty("[][]'c")));
    ck_assert(type_unify_failure().occurs);
}
END_TEST

START_TEST(test_rank_arithmetic)
{
    reset_vars();
    /* []([]float) is [][]float */
    Type *t = type_array(type_array(type_float(), 1), 1);
    ck_assert_int_eq(type_resolve(t)->rank, 2);
    ASSERT_TYPE(t, "[][]float");
    /* []'a = [][]float binds 'a := []float */
    ck_assert(type_unify(ty("[]'a"), ty("[][]float")));
    ASSERT_TYPE(var("a"), "[]float");
    /* and the other way round, [][][]'b = []'c binds 'c := [][]'b */
    ck_assert(type_unify(ty("[][][]'b"), ty("[]'c")));
    ASSERT_TYPE(var("c"), "[][]'a");
    /* an array over a variable later bound to an array is flattened */
    Type *d = ty("[]'d");
    ck_assert(type_unify(var("d"), ty("[][]int")));
    ck_assert_int_eq(type_resolve(d)->rank, 3);
    ck_assert_int_eq(type_resolve(type_resolve(d)->elem)->kind, TY_INT);
    /* a known scalar element cannot absorb rank */
    ck_assert(!type_unify(ty("[][]float"), ty("[]float")));
    ck_assert(!type_unify(ty("[]float"), type_float()));
}
END_TEST

START_TEST(test_levels)
{
    reset_vars();
    Type *outer = type_fresh_var(1);
    Type *inner = type_fresh_var(3);
    ck_assert(type_unify(outer, type_array(inner, 1)));
    /* inner is now reachable from a level-1 variable: it may not be
     * generalised at level 2 */
    ck_assert_int_eq(type_resolve(inner)->level, 1);
    Type *other = type_fresh_var(5);
    ck_assert(type_unify(other, type_fresh_var(2)));
    ck_assert_int_le(type_resolve(other)->level, 5);
}
END_TEST

START_TEST(test_error_type_poisons)
{
    reset_vars();
    ck_assert(type_unify(type_error(), ty("int -> int")));
    Type *a = var("a");
    ck_assert(type_unify(a, type_error()));
    ck_assert(type_unify(a, type_float()));
    ck_assert(type_unify(a, type_int()));
    ck_assert_int_eq(type_resolve(a)->kind, TY_ERROR);
}
END_TEST

/* ---- printing ------------------------------------------------------------ */

START_TEST(test_print)
{
    reset_vars();
    ASSERT_TYPE(ty("('a -> 'b) -> []'a -> []'b"), "('a -> 'b) -> []'a -> []'b");
    reset_vars();
    ASSERT_TYPE(ty("'x -> 'y -> 'x"), "'a -> 'b -> 'a");
    ASSERT_TYPE(ty("([]float, float) -> [][]float -> []float -> float"),
                "([]float, float) -> [][]float -> []float -> float");
    ASSERT_TYPE(ty("[](int -> int)"), "[](int -> int)");
    ASSERT_TYPE(ty("(key, key)"), "(key, key)");
    ASSERT_TYPE(ty("f32 -> string -> unit -> bool"), "f32 -> string -> unit -> bool");
    /* one printer names variables consistently across types */
    reset_vars();
    TypePrinter p = {.n = 0};
    Type *a = ty("'q -> 'r"), *b = ty("'r");
    ck_assert_str_eq(type_to_string_with(&p, a), "'a -> 'b");
    ck_assert_str_eq(type_to_string_with(&p, b), "'b");
}
END_TEST

/* ---- tangent types --------------------------------------------------------- */

START_TEST(test_tangent_structural)
{
    reset_vars();
    ASSERT_TYPE(type_tangent(type_float()), "float");
    ASSERT_TYPE(type_tangent(type_f32()), "f32");
    ASSERT_TYPE(type_tangent(type_int()), "unit");
    ASSERT_TYPE(type_tangent(type_bool()), "unit");
    ASSERT_TYPE(type_tangent(type_string()), "unit");
    ASSERT_TYPE(type_tangent(ty("(float, int, []float)")), "(float, unit, []float)");
    ASSERT_TYPE(type_tangent(ty("[][]float")), "[][]float");
    ASSERT_TYPE(type_tangent(ty("int -> float -> int")), "int -> float -> unit");
}
END_TEST

START_TEST(test_tangent_symbolic)
{
    reset_vars();
    Type *t = type_tangent(var("a"));
    ck_assert_int_eq(type_resolve(t)->kind, TY_TANGENT);
    ASSERT_TYPE(t, "T('a)");
    /* resolved once 'a is known */
    ck_assert(type_unify(var("a"), ty("([]float, int)")));
    ASSERT_TYPE(t, "([]float, unit)");
    /* T('b) = T('c) unifies 'b and 'c */
    Type *tb = type_tangent(var("b")), *tc = type_tangent(var("c"));
    ck_assert(type_unify(tb, tc));
    ck_assert(type_unify(var("b"), type_float()));
    ASSERT_TYPE(var("c"), "float");
    /* T('d) = (float, []float) inverts T: 'd := (float, []float) */
    ck_assert(type_unify(type_tangent(var("d")), ty("(float, []float)")));
    ASSERT_TYPE(var("d"), "(float, []float)");
    /* no type has tangent int */
    ck_assert(!type_unify(type_tangent(var("e")), type_int()));
    /* T of an array over a variable later bound to an array */
    Type *ta = type_tangent(ty("[]'f"));
    ck_assert(type_unify(var("f"), ty("[]float")));
    ck_assert_int_eq(type_resolve(ta)->rank, 2);
}
END_TEST

static TypeDecl *record_decl(const char *name, int ntparams, const char **fields, Type **types,
                             int n)
{
    TypeDecl *d = NEW(TypeDecl);
    d->name = intern(name);
    d->kind = TD_RECORD;
    d->ntparams = ntparams;
    d->fields = fields;
    d->field_types = types;
    d->nfields = n;
    return d;
}

START_TEST(test_tangent_records)
{
    reset_vars();
    /* all fields their own tangents: T(r) = r */
    static const char *f1[] = {"w", "b"};
    Type *t1[] = {ty("[][]float"), type_float()};
    TypeDecl *params = record_decl("params", 0, f1, t1, 2);
    Type *p = type_named(params, NULL, 0);
    Type *tp = type_tangent(p);
    ck_assert_ptr_eq(type_resolve(tp)->decl, params);
    /* an int field: a synthesised tangent declaration */
    static const char *f2[] = {"n", "x"};
    Type *t2[] = {type_int(), type_float()};
    TypeDecl *s = record_decl("s", 0, f2, t2, 2);
    Type *ts = type_resolve(type_tangent(type_named(s, NULL, 0)));
    ck_assert_ptr_eq(ts->decl->primal, s);
    ASSERT_TYPE(ts, "T(s)");
    ASSERT_TYPE(type_field_type(ts, 0), "unit");
    ASSERT_TYPE(type_field_type(ts, 1), "float");
    /* parameterised and functorial: T(int box) = unit box */
    static const char *f3[] = {"v"};
    Type *t3[] = {type_qvar(0)};
    TypeDecl *box = record_decl("box", 1, f3, t3, 1);
    Type *arg[] = {type_int()};
    ASSERT_TYPE(type_tangent(type_named(box, arg, 1)), "unit box");
    /* unifying T('a) with T(s) finds 'a = s */
    ck_assert(type_unify(type_tangent(var("a")), ts));
    ck_assert_ptr_eq(type_resolve(var("a"))->decl, s);
}
END_TEST

/* ---- built-ins --------------------------------------------------------------- */

START_TEST(test_builtin_table)
{
    ck_assert_int_eq(builtin_lookup("grad"), B_GRAD);
    ck_assert_int_eq(builtin_lookup("map"), B_MAP);
    ck_assert_int_eq(builtin_lookup("float"), B_TO_FLOAT);
    ck_assert_int_eq(builtin_lookup("no_such_builtin"), B_NONE);
    for (int i = 1; i < B__COUNT; i++) {
        const BuiltinInfo *bi = builtin_info((Builtin)i);
        ck_assert_int_eq(bi->id, i);
        ck_assert_int_eq(builtin_lookup(bi->name), i);
        Binding *b = builtin_binding((Builtin)i);
        ck_assert_ptr_nonnull(b->type);
        ck_assert_int_eq(b->builtin, i);
    }
    ck_assert_int_eq(builtin_info(B_GRAD)->deriv, DERIV_GRAD);
    ck_assert_str_eq(types_scheme_string(builtin_binding(B_MAP)),
                     "('a -> 'b) -> []'a -> []'b");
    ck_assert_str_eq(types_scheme_string(builtin_binding(B_GRAD)), "('a -> float) -> 'a -> T('a)");
    ck_assert_str_eq(types_scheme_string(builtin_binding(B_EXP)), "'a -> 'a where floating 'a");
    ck_assert_ptr_nonnull(builtin_op_binding(OP_ADD));
    ck_assert_str_eq(types_scheme_string(builtin_op_binding(OP_EQ)), "'a -> 'a -> bool where eq 'a");
}
END_TEST

/* ---- inference end to end -------------------------------------------------------- */

/* Type-checks `text` (with the prelude) and returns the scheme of def
 * `name`, or the diagnostics if any error was reported. */
static const char *infer_def(const char *text, const char *name)
{
    capture();
    module_reset();
    Vec order = {0};
    Module *m = module_load_text("t", text, strlen(text), &order);
    ck_assert_msg(m && diag_error_count() == 0, "does not parse:\n%s", captured());
    typecheck_program(&order);
    vec_free(&order);
    if (diag_error_count())
        return captured();
    for (int i = 0; i < m->ndecls; i++)
        if (m->decls[i]->kind == DECL_DEF && !strcmp(m->decls[i]->name, name))
            return types_scheme_string(m->decls[i]->binding);
    return "(no such def)";
}

#define ASSERT_INFERS(text, name, want)                                                  \
    do {                                                                                 \
        const char *got_ = infer_def(text, name);                                        \
        ck_assert_msg(strcmp(got_, want) == 0, "%s : %s, expected %s", name, got_, want); \
    } while (0)

START_TEST(test_infer_core)
{
    ASSERT_INFERS("def twice f x = f (f x)", "twice", "('a -> 'a) -> 'a -> 'a");
    ASSERT_INFERS("def k = let id = fn x => x in (id 1, id true)", "k", "(int, bool)");
    ASSERT_INFERS("def e n = if n == 0 then true else o (n - 1)\n"
                  "def o n = if n == 0 then false else e (n - 1)", "o", "int -> bool");
    ASSERT_INFERS("def rows (m: [][]float) = map sum m", "rows", "[][]float -> []float");
    ASSERT_INFERS("def f (m: [][]float) (v: []float) = m + v", "f",
                  "[][]float -> []float -> [][]float");
    ASSERT_INFERS("def f (g: ([]float, float)) (w: []float) (b: float) = (w, b) - 0.05 * g", "f",
                  "([]float, float) -> []float -> float -> ([]float, float)");
    ASSERT_INFERS("def f (a: [][]float) (x: []float) = (a @ x, x @ a, x @ x, a @ a)", "f",
                  "[][]float -> []float -> ([]float, []float, float, [][]float)");
    ASSERT_INFERS("def sq x = x * x", "sq", "'a -> 'a where num 'a");
    ASSERT_INFERS("def z = (zeros 3, zeros (2, 3))", "z", "([]float, [][]float)");
    ASSERT_INFERS("def f (m: [][]float) = m[1, :]", "f", "[][]float -> []float");
    ASSERT_INFERS("type r = { a: float, b: float }\n"
                  "def g = grad (fn p => p.a * p.a + 7.0 * p.b) { a = 1.0, b = 1.0 }", "g", "r");
    ASSERT_INFERS("type 'a t = L | N of 'a t * 'a * 'a t\n"
                  "def size t = match t with | L => 0 | N (l, _, r) => size l + 1 + size r",
                  "size", "'a t -> int");
}
END_TEST

START_TEST(test_infer_more)
{
    /* int literals make the leaves int */
    ASSERT_INFERS("def f x = x + 1", "f", "'a -> 'a where num 'a of int");
    /* a field on an unknown type picks the unique record with it */
    ASSERT_INFERS("type r = { a: float, b: int }\ndef f p = p.a", "f", "r -> float");
    ASSERT_INFERS("type s = { n: int, x: float }\ndef z (p: s) = zeros_like p", "z", "s -> T(s)");
    /* polymorphic recursion through an annotation */
    ASSERT_INFERS("def pr (x: 'a) (n: int) : int = if n == 0 then 0 else pr (x, x) (n - 1)", "pr",
                  "'a -> int -> int");
    ASSERT_INFERS("def w (n: int) = loop (i, acc) = (0, 1.0) while i < n do (i + 1, acc * 2.0)",
                  "w", "int -> (int, float)");
    ASSERT_INFERS("def j = jvp (fn (x: []float) => sum x) [1.0] [1.0]", "j", "(float, float)");
    ASSERT_INFERS("def v = vjp (fn (q: (int, float)) => q.1 * 2.0) (1, 2.0)", "v",
                  "(float, float -> (unit, float))");
    ASSERT_INFERS("def o = (one_hot 3 1, one_hot 3 [1, 2], argmax [[1.0]], logsumexp [1.0])", "o",
                  "([]float, [][]float, []int, float)");
    ASSERT_INFERS("def h = (hessian (fn (x: []float) => sum x) [1.0], hessian (fn x => x * x) 1.0)",
                  "h", "([][]float, float)");
    ASSERT_INFERS("def c = (fn x => x + 1) >>> (fn y => y * 2)", "c", "int -> int");
    /* the value restriction: one type for the result of read_npy */
    const char *d = infer_def("def main () : unit =\n  let x = read_npy \"a.npy\" in\n"
                              "  let a : [][]float = x in\n  let b : []float = x in ()", "main");
    ck_assert_msg(strstr(d, "4:21: error: this expression has type [][]float but []float was expected"),
                  "%s", d);
}
END_TEST

static const char *learner_src =
    "type ('p, 'a, 'b) learner = { implement: 'p -> 'a -> 'b, update: 'p -> 'a -> 'b -> 'p,\n"
    "  request: 'p -> 'a -> 'b -> 'a }\n"
    "def learner_seq (f: ('p, 'a, 'b) learner) (g: ('q, 'b, 'c) learner) : (('p, 'q), 'a, 'c) learner =\n"
    "  { implement = fn (p, q) a => g.implement q (f.implement p a),\n"
    "    update = fn (p, q) a c => (p, q), request = fn (p, q) a c => a }\n"
    "def lin : (float, float, float) learner =\n"
    "  { implement = fn w x => w * x, update = fn w x y => w, request = fn w x y => x }\n"
    "def two = lin >>> lin\n";

START_TEST(test_infer_learners)
{
    ASSERT_INFERS(learner_src, "two", "((float, float), float, float) learner");
    /* the AST records learner_seq on the >>> node */
    module_reset();
    capture();
    Vec order = {0};
    Module *m = module_load_text("t", learner_src, strlen(learner_src), &order);
    typecheck_program(&order);
    vec_free(&order);
    ck_assert_int_eq(diag_error_count(), 0);
    Expr *body = NULL;
    for (int i = 0; i < m->ndecls; i++)
        if (m->decls[i]->kind == DECL_DEF && !strcmp(m->decls[i]->name, "two"))
            body = m->decls[i]->body;
    ck_assert_ptr_nonnull(body);
    ck_assert_int_eq(body->kind, EX_BINOP);
    ck_assert_ptr_nonnull(body->u.op.binding);
    ck_assert_str_eq(body->u.op.binding->name, "learner_seq");
    ck_assert_int_eq(body->u.op.ninst, body->u.op.binding->nqvars);
}
END_TEST

START_TEST(test_infer_errors)
{
    const char *d = infer_def("def f (x: float) : float = x + 1", "f");
    ck_assert_msg(strstr(d, "1:28: error: cannot add float and int") != NULL, "%s", d);
    ck_assert_int_eq(diag_error_count(), 1);
    d = infer_def("def f x = x x", "f");
    ck_assert_msg(strstr(d, "infinite type: 'a = 'a -> 'b") != NULL, "%s", d);
    d = infer_def("def f (c: bool) = if c then 1.0 else 2", "f");
    ck_assert_msg(strstr(d, "the then-branch has type float") != NULL, "%s", d);
    ck_assert_msg(strstr(d, "note: but the else-branch has type int") != NULL, "%s", d);
    d = infer_def("def fool y = y\ndef g z = foo z", "g");
    ck_assert_msg(strstr(d, "unknown name 'foo'; did you mean 'fool'?") != NULL, "%s", d);
    /* one error, no cascade */
    d = infer_def("def f x = let y = nope in (y + 1.0, y 2, y.w)", "f");
    ck_assert_int_eq(diag_error_count(), 1);
}
END_TEST

static Suite *types_suite(void)
{
    Suite *s = suite_create("types");
    TCase *tc = tcase_create("types");
    tcase_add_test(tc, test_unify_base);
    tcase_add_test(tc, test_unify_vars);
    tcase_add_test(tc, test_occurs_check);
    tcase_add_test(tc, test_rank_arithmetic);
    tcase_add_test(tc, test_levels);
    tcase_add_test(tc, test_error_type_poisons);
    tcase_add_test(tc, test_print);
    tcase_add_test(tc, test_tangent_structural);
    tcase_add_test(tc, test_tangent_symbolic);
    tcase_add_test(tc, test_tangent_records);
    tcase_add_test(tc, test_builtin_table);
    tcase_add_test(tc, test_infer_core);
    tcase_add_test(tc, test_infer_more);
    tcase_add_test(tc, test_infer_learners);
    tcase_add_test(tc, test_infer_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(types_suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
