/* test_parser.c — the DL parser: the shape of the trees it builds
 * (precedence, postfix, sugar, declarations), locations, the printer
 * round trip (parse → print → parse → print gives the same text for every
 * construct), error messages and recovery, the REPL entry, deep nesting. */
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

#define ASSERT_DIAG(substr)                                                            \
    do {                                                                               \
        const char *d_ = captured();                                                   \
        ck_assert_msg(strstr(d_, substr) != NULL, "diagnostics lack \"%s\":\n%s", substr, d_); \
    } while (0)

static SrcFile *src(const char *text)
{
    size_t n = strlen(text);
    char *copy = xmalloc(n + 1);
    memcpy(copy, text, n + 1);
    return diag_add_file("t.dl", "t.dl", copy, n);
}

/* Parses one expression; fails the test on a syntax error. */
static Expr *parse_expr(const char *text)
{
    Decl **decls;
    int ndecls;
    Expr *e;
    bool incomplete;
    int before = diag_error_count();
    bool ok = parse_repl_input(src(text), &decls, &ndecls, &e, &incomplete);
    ck_assert_msg(ok && e && diag_error_count() == before, "'%s' does not parse:\n%s", text,
                  captured());
    return e;
}

static Module *parse_ok(const char *text)
{
    int before = diag_error_count();
    Module *m = parse_file(src(text));
    ck_assert_ptr_nonnull(m);
    ck_assert_msg(diag_error_count() == before, "'%s' does not parse:\n%s", text, captured());
    return m;
}

static const char *print_expr(const Expr *e)
{
    StrBuf b = {0};
    ast_print_expr(&b, e);
    char *s = arena_strdup(dcc_arena, b.data ? b.data : "");
    sb_free(&b);
    return s;
}

static const char *print_module(const Module *m)
{
    StrBuf b = {0};
    for (int i = 0; i < m->ndecls; i++) {
        ast_print_decl(&b, m->decls[i]);
        sb_putc(&b, '\n');
    }
    char *s = arena_strdup(dcc_arena, b.data ? b.data : "");
    sb_free(&b);
    return s;
}

/* The expression printed after parsing. */
static const char *canon(const char *text) { return print_expr(parse_expr(text)); }

#define ASSERT_CANON(text, expect) ck_assert_str_eq(canon(text), expect)

/* ---------------------------------------------------------------- shapes */

START_TEST(test_precedence_arith)
{
    capture();
    Expr *e = parse_expr("1 + 2 * 3");
    ck_assert_int_eq(e->kind, EX_BINOP);
    ck_assert_int_eq(e->u.op.op, OP_ADD);
    ck_assert_int_eq(e->u.op.r->kind, EX_BINOP);
    ck_assert_int_eq(e->u.op.r->u.op.op, OP_MUL);
    e = parse_expr("1 - 2 - 3");
    ck_assert_int_eq(e->u.op.op, OP_SUB);
    ck_assert_int_eq(e->u.op.l->kind, EX_BINOP); /* left associative */
    e = parse_expr("2.0 ^ 3.0 ^ 4.0");
    ck_assert_int_eq(e->u.op.op, OP_POW);
    ck_assert_int_eq(e->u.op.r->kind, EX_BINOP); /* right associative */
    /* -x ^ 2.0 = -(x ^ 2.0) */
    e = parse_expr("-x ^ 2.0");
    ck_assert_int_eq(e->kind, EX_UNOP);
    ck_assert_int_eq(e->u.op.op, OP_NEG);
    ck_assert_int_eq(e->u.op.l->kind, EX_BINOP);
    ck_assert_int_eq(e->u.op.l->u.op.op, OP_POW);
    /* -x * y = (-x) * y */
    e = parse_expr("-x * y");
    ck_assert_int_eq(e->kind, EX_BINOP);
    ck_assert_int_eq(e->u.op.l->kind, EX_UNOP);
    /* x @ w + b */
    e = parse_expr("x @ w + b");
    ck_assert_int_eq(e->u.op.op, OP_ADD);
    ck_assert_int_eq(e->u.op.l->u.op.op, OP_MATMUL);
    /* ! binds tighter than && */
    e = parse_expr("!a && b || c");
    ck_assert_int_eq(e->u.op.op, OP_OR);
    ck_assert_int_eq(e->u.op.l->u.op.op, OP_AND);
    ck_assert_int_eq(e->u.op.l->u.op.l->kind, EX_UNOP);
    e = parse_expr("(a < b) == (c > d)");
    ck_assert_int_eq(e->u.op.op, OP_EQ);
    /* comparisons do not associate */
    Decl **decls;
    int n;
    bool incomplete;
    ck_assert(!parse_repl_input(src("a < b == c"), &decls, &n, &e, &incomplete));
    ASSERT_DIAG("t.dl:1:1: error: comparison operators do not chain");
}
END_TEST

START_TEST(test_precedence_pipes)
{
    capture();
    Expr *e = parse_expr("x |> f >>> g *** h");
    ck_assert_int_eq(e->u.op.op, OP_PIPE);
    ck_assert_int_eq(e->u.op.r->u.op.op, OP_COMPOSE);
    ck_assert_int_eq(e->u.op.r->u.op.r->u.op.op, OP_PAR);
    e = parse_expr("a |> f |> g");
    ck_assert_int_eq(e->u.op.l->kind, EX_BINOP); /* (a |> f) |> g */
    e = parse_expr("a || b |> f");
    ck_assert_int_eq(e->u.op.op, OP_PIPE);
    e = parse_expr("x |> fn y => y + 1");
    ck_assert_int_eq(e->u.op.op, OP_PIPE);
    ck_assert_int_eq(e->u.op.r->kind, EX_LAMBDA);
}
END_TEST

START_TEST(test_application)
{
    capture();
    /* f x y = (f x) y */
    Expr *e = parse_expr("f x y");
    ck_assert_int_eq(e->kind, EX_APP);
    ck_assert_int_eq(e->u.app.fn->kind, EX_APP);
    ck_assert_str_eq(e->u.app.arg->u.var.name, "y");
    /* f x.a = f (x.a) */
    e = parse_expr("f x.a");
    ck_assert_int_eq(e->kind, EX_APP);
    ck_assert_int_eq(e->u.app.arg->kind, EX_FIELD);
    ck_assert_str_eq(e->u.app.arg->u.field.name, "a");
    /* f -1 is a subtraction */
    e = parse_expr("f -1");
    ck_assert_int_eq(e->kind, EX_BINOP);
    ck_assert_int_eq(e->u.op.op, OP_SUB);
    /* application binds tighter than any operator */
    e = parse_expr("f x + g y");
    ck_assert_int_eq(e->kind, EX_BINOP);
    ck_assert_int_eq(e->u.op.l->kind, EX_APP);
    /* constructors apply like functions */
    e = parse_expr("Some (1, 2)");
    ck_assert_int_eq(e->kind, EX_APP);
    ck_assert_int_eq(e->u.app.fn->kind, EX_CON);
    ck_assert_str_eq(e->u.app.fn->u.con.name, "Some");
    ck_assert_int_eq(e->u.app.arg->kind, EX_TUPLE);
    e = parse_expr("None");
    ck_assert_int_eq(e->kind, EX_CON);
}
END_TEST

START_TEST(test_index_and_arrays)
{
    capture();
    Expr *e = parse_expr("m[i, j]");
    ck_assert_int_eq(e->kind, EX_INDEX);
    ck_assert_int_eq(e->u.index.n, 2);
    ck_assert(!e->u.index.args[0].is_slice);
    e = parse_expr("xs[i:j, :k, l:, :]");
    ck_assert_int_eq(e->u.index.n, 4);
    ck_assert(e->u.index.args[0].is_slice && e->u.index.args[0].lo && e->u.index.args[0].hi);
    ck_assert(e->u.index.args[1].is_slice && !e->u.index.args[1].lo && e->u.index.args[1].hi);
    ck_assert(e->u.index.args[2].is_slice && e->u.index.args[2].lo && !e->u.index.args[2].hi);
    ck_assert(e->u.index.args[3].is_slice && !e->u.index.args[3].lo && !e->u.index.args[3].hi);
    /* (x @ transpose x)[0, 0] indexes */
    e = parse_expr("(x @ transpose x)[0, 0]");
    ck_assert_int_eq(e->kind, EX_INDEX);
    ck_assert_int_eq(e->u.index.e->kind, EX_BINOP);
    /* grad det [[...]] passes an array literal */
    e = parse_expr("grad det [[1.0, 2.0], [2.0, 4.0]]");
    ck_assert_int_eq(e->kind, EX_APP);
    ck_assert_int_eq(e->u.app.arg->kind, EX_ARRAY);
    ck_assert_int_eq(e->u.app.arg->u.list.n, 2);
    ck_assert_int_eq(e->u.app.arg->u.list.items[0]->kind, EX_ARRAY);
    e = parse_expr("f []");
    ck_assert_int_eq(e->u.app.arg->kind, EX_ARRAY);
    ck_assert_int_eq(e->u.app.arg->u.list.n, 0);
    /* postfix binds tighter than application: f xs[0] = f (xs[0]) */
    e = parse_expr("f xs[0]");
    ck_assert_int_eq(e->kind, EX_APP);
    ck_assert_int_eq(e->u.app.arg->kind, EX_INDEX);
}
END_TEST

START_TEST(test_projection_fields)
{
    capture();
    Expr *e = parse_expr("t.0.1");
    ck_assert_int_eq(e->kind, EX_PROJ);
    ck_assert_int_eq(e->u.field.index, 1);
    ck_assert_int_eq(e->u.field.e->kind, EX_PROJ);
    ck_assert_int_eq(e->u.field.e->u.field.index, 0);
    e = parse_expr("p.w1.b");
    ck_assert_int_eq(e->kind, EX_FIELD);
    ck_assert_str_eq(e->u.field.name, "b");
    e = parse_expr("(1, 2).1");
    ck_assert_int_eq(e->kind, EX_PROJ);
    ck_assert_int_eq(e->u.field.e->kind, EX_TUPLE);
}
END_TEST

START_TEST(test_records)
{
    capture();
    Expr *e = parse_expr("{ w1 = a, b1 = b }");
    ck_assert_int_eq(e->kind, EX_RECORD);
    ck_assert_int_eq(e->u.rec.n, 2);
    ck_assert_str_eq(e->u.rec.names[1], "b1");
    ck_assert_ptr_null(e->u.rec.base);
    e = parse_expr("{ p.inner with b1 = z, w1 = y }");
    ck_assert_int_eq(e->kind, EX_UPDATE);
    ck_assert_int_eq(e->u.rec.base->kind, EX_FIELD);
    ck_assert_int_eq(e->u.rec.n, 2);
}
END_TEST

START_TEST(test_let_forms)
{
    capture();
    Expr *e = parse_expr("let f x y = x + y in f 1 2");
    ck_assert_int_eq(e->kind, EX_LET);
    ck_assert_int_eq(e->u.let.pat->kind, PAT_VAR);
    ck_assert_str_eq(e->u.let.pat->name, "f");
    ck_assert_int_eq(e->u.let.value->kind, EX_LAMBDA);
    ck_assert_int_eq(e->u.let.value->u.lam.nparams, 2);
    ck_assert_int_eq(e->u.let.body->kind, EX_APP);
    e = parse_expr("let x : float = 1.0 in x");
    ck_assert_int_eq(e->u.let.pat->kind, PAT_ANNOT);
    ck_assert_int_eq(e->u.let.pat->annot->kind, TE_NAME);
    e = parse_expr("let rec go n : int = go (n - 1) in go 3");
    ck_assert_int_eq(e->kind, EX_LETREC);
    ck_assert_str_eq(e->u.letrec.name, "go");
    ck_assert_int_eq(e->u.letrec.nparams, 1);
    ck_assert_ptr_nonnull(e->u.letrec.ret);
    e = parse_expr("let (a, b) = p in let {w1, b1 = c} = q in a");
    ck_assert_int_eq(e->u.let.pat->kind, PAT_TUPLE);
    ck_assert_int_eq(e->u.let.body->u.let.pat->kind, PAT_RECORD);
    /* the let body extends to the right */
    e = parse_expr("let x = 1 in x + 2");
    ck_assert_int_eq(e->kind, EX_LET);
    ck_assert_int_eq(e->u.let.body->kind, EX_BINOP);
}
END_TEST

START_TEST(test_match)
{
    capture();
    Expr *e = parse_expr("match s with | Circle r => r | Rect (w, h) => w * h | _ => 0.0");
    ck_assert_int_eq(e->kind, EX_MATCH);
    ck_assert_int_eq(e->u.match.n, 3);
    ck_assert_int_eq(e->u.match.cases[0].pat->kind, PAT_CON);
    ck_assert_int_eq(e->u.match.cases[1].pat->arg->kind, PAT_TUPLE);
    ck_assert_int_eq(e->u.match.cases[2].pat->kind, PAT_WILD);
    /* first bar optional; a nested match takes the following cases */
    e = parse_expr("match x with None => 0 | Some y => match y with | 1 => 1 | _ => 2");
    ck_assert_int_eq(e->u.match.n, 2);
    ck_assert_int_eq(e->u.match.cases[1].body->kind, EX_MATCH);
    ck_assert_int_eq(e->u.match.cases[1].body->u.match.n, 2);
    e = parse_expr("match x with | -1 => a | 2.5 => b | \"s\" => c | true => d | () => e");
    ck_assert_int_eq(e->u.match.cases[0].pat->kind, PAT_INT);
    ck_assert(e->u.match.cases[0].pat->ival == -1);
    ck_assert_int_eq(e->u.match.cases[1].pat->kind, PAT_FLOAT);
    ck_assert_int_eq(e->u.match.cases[2].pat->kind, PAT_STRING);
    ck_assert_int_eq(e->u.match.cases[3].pat->kind, PAT_BOOL);
    ck_assert_int_eq(e->u.match.cases[4].pat->kind, PAT_UNIT);
}
END_TEST

START_TEST(test_loops_lambdas)
{
    capture();
    Expr *e = parse_expr("loop (w, b) = (zeros 2, 0.0) for i < 500 do (w, b) - 0.05 * g");
    ck_assert_int_eq(e->kind, EX_LOOP);
    ck_assert_int_eq(e->u.loop.kind, LOOP_FOR);
    ck_assert_str_eq(e->u.loop.ivar, "i");
    ck_assert_int_eq(e->u.loop.pat->kind, PAT_TUPLE);
    ck_assert_int_eq(e->u.loop.body->kind, EX_BINOP);
    e = parse_expr("loop x = 1 while x < 10 do x * 2");
    ck_assert_int_eq(e->u.loop.kind, LOOP_WHILE);
    ck_assert_int_eq(e->u.loop.cond->kind, EX_BINOP);
    e = parse_expr("fn (x: float) (_, pb) => pb x");
    ck_assert_int_eq(e->kind, EX_LAMBDA);
    ck_assert_int_eq(e->u.lam.nparams, 2);
    ck_assert_int_eq(e->u.lam.params[0]->kind, PAT_ANNOT);
    ck_assert_int_eq(e->u.lam.params[1]->kind, PAT_TUPLE);
    e = parse_expr("if a then b else c + 1");
    ck_assert_int_eq(e->kind, EX_IF);
    ck_assert_int_eq(e->u.if_.else_->kind, EX_BINOP);
    e = parse_expr("((+), (@), (|>), (>>>), (^), (<=))");
    ck_assert_int_eq(e->kind, EX_TUPLE);
    ck_assert_int_eq(e->u.list.items[0]->kind, EX_OPFN);
    ck_assert_int_eq(e->u.list.items[0]->u.opfn, OP_ADD);
    ck_assert_int_eq(e->u.list.items[1]->u.opfn, OP_MATMUL);
    ck_assert_int_eq(e->u.list.items[2]->u.opfn, OP_PIPE);
    ck_assert_int_eq(e->u.list.items[3]->u.opfn, OP_COMPOSE);
    ck_assert_int_eq(e->u.list.items[4]->u.opfn, OP_POW);
    ck_assert_int_eq(e->u.list.items[5]->u.opfn, OP_LE);
    e = parse_expr("(x : []float)");
    ck_assert_int_eq(e->kind, EX_ANNOT);
    ck_assert_int_eq(e->u.annot.t->kind, TE_ARRAY);
}
END_TEST

START_TEST(test_types)
{
    capture();
    Module *m = parse_ok("type t = 'a option -> [][]float * int -> (int, float) learner\n"
                         "type u = []float tree\n"
                         "type v = (int, float)\n"
                         "type w = ((int, float)) option\n");
    ck_assert_int_eq(m->ndecls, 4);
    TypeExpr *t = m->decls[0]->alias;
    ck_assert_int_eq(t->kind, TE_FUNC);
    ck_assert_int_eq(t->elem->kind, TE_NAME);
    ck_assert_str_eq(t->elem->name, "option");
    ck_assert_int_eq(t->elem->args[0]->kind, TE_VAR);
    ck_assert_int_eq(t->result->kind, TE_FUNC); /* right associative */
    TypeExpr *tup = t->result->elem;
    ck_assert_int_eq(tup->kind, TE_TUPLE);
    ck_assert_int_eq(tup->nargs, 2);
    ck_assert_int_eq(tup->args[0]->kind, TE_ARRAY);
    ck_assert_int_eq(tup->args[0]->elem->kind, TE_ARRAY);
    TypeExpr *l = t->result->result;
    ck_assert_str_eq(l->name, "learner");
    ck_assert_int_eq(l->nargs, 2);
    /* []float tree = [](float tree) */
    ck_assert_int_eq(m->decls[1]->alias->kind, TE_ARRAY);
    ck_assert_str_eq(m->decls[1]->alias->elem->name, "tree");
    ck_assert_int_eq(m->decls[2]->alias->kind, TE_TUPLE);
    ck_assert_int_eq(m->decls[3]->alias->kind, TE_NAME);
    ck_assert_int_eq(m->decls[3]->alias->nargs, 1);
    ck_assert_int_eq(m->decls[3]->alias->args[0]->kind, TE_TUPLE);
}
END_TEST

START_TEST(test_decls)
{
    capture();
    Module *m = parse_ok(
        "import std/nn\n"
        "import \"util.dl\"\n"
        "type shape = Circle of float | Rect of float * float\n"
        "type 'a option = | None | Some of 'a\n"
        "type ('p, 'a, 'b) learner = { implement: 'p -> 'a -> 'b, update: 'p -> 'a -> 'b -> 'p }\n"
        "type vec = []float\n"
        "export def f (x: []float) : float = sum x\n"
        "def safe_log (x: float) : float = log (max x 1e-12)\n"
        "  with jvp (x, dx) => (safe_log x, dx / max x 1e-12)\n"
        "  with vjp x => (safe_log x, fn g => g / x)\n"
        "def main () : unit = println 1\n"
        "export grad f as f_grad\n"
        "export value_and_grad f as f_vg\n"
        "def pi = 3.14\n");
    ck_assert_int_eq(m->ndecls, 12);
    ck_assert_str_eq(m->name, "t");
    Decl **d = m->decls;
    ck_assert_int_eq(d[0]->kind, DECL_IMPORT);
    ck_assert(d[0]->is_std);
    ck_assert_str_eq(d[0]->path, "std/nn");
    ck_assert(!d[1]->is_std);
    ck_assert_str_eq(d[1]->path, "util.dl");
    ck_assert_int_eq(d[2]->kind, DECL_TYPE);
    ck_assert_int_eq(d[2]->tkind, TD_VARIANT);
    ck_assert_int_eq(d[2]->ncons, 2);
    ck_assert_ptr_null(d[3]->cons[0].arg);
    ck_assert_int_eq(d[2]->cons[1].arg->kind, TE_TUPLE);
    ck_assert_int_eq(d[3]->ntparams, 1);
    ck_assert_str_eq(d[3]->tparams[0], "a");
    ck_assert_int_eq(d[4]->tkind, TD_RECORD);
    ck_assert_int_eq(d[4]->ntparams, 3);
    ck_assert_int_eq(d[4]->record->kind, TE_RECORD);
    ck_assert_str_eq(d[4]->record->fields[1], "update");
    ck_assert_int_eq(d[5]->tkind, TD_ALIAS);
    ck_assert_int_eq(d[6]->kind, DECL_DEF);
    ck_assert(d[6]->is_export);
    ck_assert_int_eq(d[6]->nparams, 1);
    ck_assert_ptr_nonnull(d[6]->ret);
    ck_assert_int_eq(d[7]->nrules, 2);
    ck_assert_int_eq(d[7]->rules[0]->kind, RULE_JVP);
    ck_assert_int_eq(d[7]->rules[0]->params[0]->kind, PAT_TUPLE);
    ck_assert_int_eq(d[7]->rules[1]->kind, RULE_VJP);
    ck_assert_int_eq(d[8]->params[0]->kind, PAT_UNIT);
    ck_assert_int_eq(d[9]->kind, DECL_EXPORT_DERIV);
    ck_assert_int_eq(d[9]->deriv, DERIV_GRAD);
    ck_assert_str_eq(d[9]->target, "f");
    ck_assert_str_eq(d[9]->name, "f_grad");
    ck_assert_int_eq(d[10]->deriv, DERIV_VALUE_AND_GRAD);
    ck_assert_int_eq(d[11]->nparams, 0);
}
END_TEST

/* A def body ending in a match, then a rule: the rule's 'with' is not the
 * match's. */
START_TEST(test_rule_after_match)
{
    capture();
    Module *m = parse_ok("def f x = match x with | 0 => 1.0 | _ => x\n"
                         "  with jvp (x, dx) => (f x, dx)\n");
    ck_assert_int_eq(m->ndecls, 1);
    ck_assert_int_eq(m->decls[0]->body->kind, EX_MATCH);
    ck_assert_int_eq(m->decls[0]->body->u.match.n, 2);
    ck_assert_int_eq(m->decls[0]->nrules, 1);
}
END_TEST

START_TEST(test_patterns)
{
    capture();
    Module *m = parse_ok("def r {w1, b1 = q, ..} (Some (x: float)) (w: []float, b: float) None = x\n");
    Decl *d = m->decls[0];
    ck_assert_int_eq(d->nparams, 4);
    Pat *p = d->params[0];
    ck_assert_int_eq(p->kind, PAT_RECORD);
    ck_assert(p->open);
    ck_assert_int_eq(p->nitems, 2);
    ck_assert_str_eq(p->fields[0], "w1");
    ck_assert_int_eq(p->items[0]->kind, PAT_VAR); /* punned */
    ck_assert_str_eq(p->items[0]->name, "w1");
    ck_assert_str_eq(p->items[1]->name, "q");
    p = d->params[1];
    ck_assert_int_eq(p->kind, PAT_CON);
    ck_assert_int_eq(p->arg->kind, PAT_ANNOT);
    p = d->params[2];
    ck_assert_int_eq(p->kind, PAT_TUPLE);
    ck_assert_int_eq(p->items[0]->kind, PAT_ANNOT);
    ck_assert_int_eq(p->items[1]->annot->kind, TE_NAME);
    p = d->params[3];
    ck_assert_int_eq(p->kind, PAT_CON);
    ck_assert_ptr_null(p->arg);
}
END_TEST

START_TEST(test_locations)
{
    capture();
    Module *m = parse_ok("def f x =\n  let y = x + 10 in\n  g y.a\n");
    Decl *d = m->decls[0];
    ck_assert_int_eq(d->loc.line, 1);
    ck_assert_int_eq(d->loc.col, 1);
    ck_assert_int_eq(d->loc.end_line, 3);
    ck_assert_int_eq(d->loc.end_col, 7);
    ck_assert_int_eq(d->name_loc.col, 5);
    Expr *let = d->body;
    ck_assert_int_eq(let->loc.line, 2);
    ck_assert_int_eq(let->loc.col, 3);
    Expr *sum = let->u.let.value;
    ck_assert_int_eq(sum->loc.line, 2);
    ck_assert_int_eq(sum->loc.col, 11);
    ck_assert_int_eq(sum->loc.end_col, 16);
    Expr *app = let->u.let.body;
    ck_assert_int_eq(app->loc.line, 3);
    ck_assert_int_eq(app->loc.col, 3);
    ck_assert_int_eq(app->u.app.arg->loc.col, 5);
    ck_assert_int_eq(app->u.app.arg->loc.end_col, 7);
    ck_assert_int_eq(d->params[0]->loc.col, 7);
}
END_TEST

/* ---------------------------------------------------------------- round trip */

static const char *const expr_snippets[] = {
    "1 + 2 * 3", "(1 + 2) * 3", "1 - (2 - 3)", "1 - 2 - 3", "2.0 ^ 3.0 ^ 4.0", "(2.0 ^ 3.0) ^ 4.0",
    "-x ^ 2.0", "(-x) ^ 2.0", "- -x", "-(-1)", "!(a && b)", "!a || b && c", "a == (b < c)",
    "f x y", "f (g x) y", "f x.a", "(f x).a", "f -1", "f (-1)", "f (-1.5)", "-f x",
    "x |> f |> g", "x |> (f |> g)", "f >>> g >>> h", "f >>> (g >>> h)", "f *** g >>> h",
    "(f >>> g) *** h", "a % b / c @ d",
    "xs[i]", "m[i, j]", "xs[i:j]", "xs[:j]", "xs[i:]", "m[:, j]", "(x @ transpose x)[0, 0]",
    "f xs[0]", "(f xs)[0]", "t.0.1", "p.w1", "p.w1[0].x", "(1).0", "(a, b).1",
    "grad det [[1.0, 2.0], [2.0, 4.0]]", "f []", "[]", "[1, 2, 3]", "[[1.0], []]",
    "(1, 2, (3, 4))", "()", "f ()", "\"a\\\"b\\n\\\\c\\x01\"", "true && false",
    "1.0 + 1e-3 + 2.5e10 + 2.0f32 + 1e300 + 0.1", "0.5f32", "9223372036854775807",
    "{ w1 = a, b1 = b }", "{ p with b1 = z, w1 = y }", "{ p.q with a = 1 }",
    "{ (f x) with a = fn y => y }", "(x : float)", "(f : 'a -> 'b -> ('a, 'b) pair)",
    "(x : [][]float * int)", "((x : int), y)",
    "let x = 1 in x", "let (a, b) = p in a + b", "let { w1, b1 = c, .. } = p in w1",
    "let f x y = x + y in f", "let f (x : float) : float = x in f 1.0",
    "let x : int = 1 in x", "let rec go n acc = if n == 0 then acc else go (n - 1) (acc * n) in go 5 1",
    "let rec xs = 1 in xs", "let x = let y = 1 in y in x", "(let x = 1 in x) + 1",
    "fn x => x", "fn (x : float) (y : float) => x * y", "fn (_, pb) => pb 1.0", "fn x : int => x",
    "fn x => fn y => x", "(fn x => x) 1", "f (fn x => x)", "x |> fn y => y",
    "a + (fn x => x)", "a + (if c then 1 else 2)",
    "if a then b else c", "if a then if b then c else d else e", "(if a then b else c) + 1",
    "match s with | Circle r => r | Rect (w, h) => w * h | _ => 0.0",
    "match x with | None => 0 | Some y => (match y with | 1 => 1 | _ => 2) | _ => 3",
    "match x with | None => 0 | Some y => match y with | 1 => 1 | _ => 2",
    "match x with | A => (let y = 1 in match y with | _ => 1) | B => 2",
    "match x with | A => (if c then 1 else match y with | _ => 2) | B => 2",
    "match x with | -1 => a | -2.5 => b | \"s\" => c | true => d | () => e",
    "match p with | (Some (x : int), { a, b = Node (l, v, r) }) => x",
    "match match a with | x => b with | y => c",
    "(match a with | x => b) + 1",
    "loop acc = 0 for i < n do acc + i",
    "loop (w, b) = (zeros 2, 0.0) for i < 500 do (w, b) - 0.05 * grad (fn p => loss p x y) (w, b)",
    "loop x = 1 while x < 10 do x * 2", "(loop x = 1 while x < 10 do x) + 1",
    "reduce (+) 0.0 xs", "((-), (*), (/), (%), (@), (^), (==), (!=), (<), (<=), (>), (>=), (&&), (||), (>>>), (***), (|>))",
    "Some (1, 2)", "Node (Leaf, 1, Leaf)", "Some None", "Some (Some 1)", "None",
    "stop_gradient (x * 2.0)", "jet f x [v1, v2]",
};

START_TEST(test_roundtrip_exprs)
{
    capture();
    for (size_t i = 0; i < sizeof expr_snippets / sizeof expr_snippets[0]; i++) {
        const char *s = expr_snippets[i];
        const char *p1 = canon(s);
        const char *p2 = canon(p1);
        ck_assert_msg(strcmp(p1, p2) == 0, "round trip of '%s':\n  %s\n  %s", s, p1, p2);
    }
}
END_TEST

/* The printer keeps what the parentheses meant, and drops the others. */
START_TEST(test_print_canonical)
{
    capture();
    ASSERT_CANON("(1 + 2) * 3", "(1 + 2) * 3");
    ASSERT_CANON("1 + (2 * 3)", "1 + 2 * 3");
    ASSERT_CANON("1 - (2 - 3)", "1 - (2 - 3)");
    ASSERT_CANON("(1 - 2) - 3", "1 - 2 - 3");
    ASSERT_CANON("(2.0 ^ 3.0) ^ 4.0", "(2.0 ^ 3.0) ^ 4.0");
    ASSERT_CANON("-(x ^ 2.0)", "-x ^ 2.0");
    ASSERT_CANON("(-x) ^ 2.0", "(-x) ^ 2.0");
    ASSERT_CANON("-(-x)", "- -x");
    ASSERT_CANON("f (x.a)", "f x.a");
    ASSERT_CANON("f (-1)", "f (-1)");
    ASSERT_CANON("((f x) y)", "f x y");
    ASSERT_CANON("f (g x)", "f (g x)");
    ASSERT_CANON("(f >>> g) >>> h", "f >>> g >>> h");
    ASSERT_CANON("(x)[0]", "x[0]");
    ASSERT_CANON("let f = fn x => x in f", "let f x = x in f");
    ASSERT_CANON("1.0 + 1e-3 + 2.5e10 + 2.0f32", "1.0 + 0.001 + 2.5e+10 + 2.0f32");
    ASSERT_CANON("{ w1 = w1 }", "{ w1 = w1 }");
    ASSERT_CANON("let {w1 = w1} = p in w1", "let { w1 } = p in w1");
    ASSERT_CANON("(a, (b : int))", "(a, (b : int))");
    ASSERT_CANON("match x with A => 1 | B => 2", "match x with | A => 1 | B => 2");
    ASSERT_CANON("match x with | A => (match y with | C => 1) | B => 2",
                 "match x with | A => (match y with | C => 1) | B => 2");
}
END_TEST

static const char *const program =
    "import std/nn\n"
    "import \"util.dl\" as u\n"
    "type shape = Circle of float | Rect of float * float\n"
    "type 'a option = None | Some of 'a\n"
    "type 'a tree = Leaf | Node of 'a tree * 'a * 'a tree\n"
    "type params = { w1: [][]float, b1: []float, w2: [][]float, b2: []float }\n"
    "type ('p, 'a, 'b) learner = { implement: 'p -> 'a -> 'b, update: 'p -> 'a -> 'b -> 'p }\n"
    "type pairs = (int, float) tree * (int * float) option * []float tree * ([]float) tree\n"
    "type fns = (int -> int) -> []('a -> 'b) -> unit\n"
    "def predict (w: []float) (b: float) (x: [][]float) : []float = x @ w + b\n"
    "def loss (w: []float, b: float) (x: [][]float) (y: []float) : float =\n"
    "  mean ((predict w b x - y) ^ 2.0)\n"
    "def main () : unit =\n"
    "  let x = [[1.0, 2.0], [2.0, 1.0], [3.0, 4.0]] in\n"
    "  let y = [5.0, 4.0, 11.0] in\n"
    "  let (w, b) = loop (w, b) = (zeros 2, 0.0) for i < 500 do\n"
    "                 (w, b) - 0.05 * grad (fn p => loss p x y) (w, b) in\n"
    "  println (w, b)\n"
    "def safe_log (x: float) : float = log (max x 1e-12)\n"
    "  with jvp (x, dx) => (safe_log x, dx / max x 1e-12)\n"
    "def area s = match s with | Circle r => 3.14 * r ^ 2.0 | Rect (w, h) => w * h\n"
    "  with vjp s => (area s, fn g => s)\n"
    "export def f (x: []float) : float = sum x\n"
    "export grad f as f_grad\n"
    "export jvp f as f_jvp\n"
    "export vjp f as f_vjp\n"
    "def const = 42\n";

START_TEST(test_roundtrip_program)
{
    capture();
    Module *m1 = parse_ok(program);
    ck_assert_int_eq(m1->ndecls, 19);
    const char *p1 = print_module(m1);
    Module *m2 = parse_ok(p1);
    ck_assert_int_eq(m2->ndecls, m1->ndecls);
    const char *p2 = print_module(m2);
    ck_assert_str_eq(p1, p2);
}
END_TEST

START_TEST(test_ast_dump)
{
    capture();
    Module *m = parse_ok("def f x = g x.0 + 1\n");
    FILE *out = tmpfile();
    ast_dump_module(out, m);
    rewind(out);
    char buf[2048];
    size_t got = fread(buf, 1, sizeof buf - 1, out);
    buf[got] = 0;
    fclose(out);
    ck_assert_str_eq(buf, "(module t \"t.dl\"\n"
                          "  (def f @1:1-1:19\n"
                          "    (pvar x @1:7-1:7)\n"
                          "    (binop + @1:11-1:19\n"
                          "      (app @1:11-1:15\n"
                          "        (var g @1:11-1:11)\n"
                          "        (proj 0 @1:13-1:15\n"
                          "          (var x @1:13-1:13)))\n"
                          "      (int 1 @1:19-1:19)))\n"
                          ")\n");
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_error_messages)
{
    capture();
    parse_file(src("def f x = let y = 1\n"));
    ASSERT_DIAG("t.dl:1:20: error: unexpected end of input, expected 'in'");
    parse_file(src("def g = (1, 2\ndef h = 1\n"));
    ASSERT_DIAG("t.dl:2:1: error: unexpected 'def', expected ')'");
    ASSERT_DIAG("t.dl:1:9: note: to match this '('");
    parse_file(src("def k = if a then b\n"));
    ASSERT_DIAG("expected 'else'");
    parse_file(src("def k = let in 3\n"));
    ASSERT_DIAG("t.dl:1:13: error: unexpected 'in', expected pattern");
    parse_file(src("def k = f (1 +)\n"));
    ASSERT_DIAG("t.dl:1:15: error: unexpected ')', expected expression");
    parse_file(src("x = 1\n"));
    ASSERT_DIAG("t.dl:1:1: error: unexpected identifier 'x', expected 'def', 'export', 'import' or 'type'");
    parse_file(src("def f x = x + 1 )\n"));
    ASSERT_DIAG("t.dl:1:17: error: unexpected ')'\n");
    parse_file(src("def f x = x\n  with grad x => x\n"));
    ASSERT_DIAG("t.dl:2:8: error: expected 'jvp' or 'vjp' after 'with'");
    parse_file(src("import nn\n"));
    ASSERT_DIAG("t.dl:1:8: error: a module path must start with 'std/'");
    parse_file(src("export hessian f as g\n"));
    ASSERT_DIAG("t.dl:1:8: error: cannot export 'hessian'");
    parse_file(src("type t = A | A\n"));
    ASSERT_DIAG("t.dl:1:14: error: constructor 'A' is declared twice");
    ck_assert_int_eq(diag_error_count(), 11);
}
END_TEST

/* Errors in one declaration do not stop the parse of the next ones; a def
 * that fails is still declared (with an error body). */
START_TEST(test_error_recovery)
{
    capture();
    Module *m = parse_file(src("def a = 1 +\n"
                               "def b x = let y = ) in y\n"
                               "type t = A | B\n"
                               "def c = (1, ]\n"
                               "export def d (x: float) : float = x ^\n"
                               "def e = 2\n"
                               "type broken = of\n"
                               "def f = e\n"));
    ck_assert_int_eq(diag_error_count(), 5);
    ck_assert_int_eq(m->ndecls, 7);
    static const char *const names[] = {"a", "b", "t", "c", "d", "e", "f"};
    for (int i = 0; i < 7; i++)
        ck_assert_str_eq(m->decls[i]->name, names[i]);
    ck_assert_int_eq(m->decls[0]->body->kind, EX_ERROR);
    /* the let value was bad, the rest of b is kept */
    ck_assert_int_eq(m->decls[1]->body->kind, EX_LET);
    ck_assert_int_eq(m->decls[1]->body->u.let.value->kind, EX_ERROR);
    ck_assert_int_eq(m->decls[1]->nparams, 1);
    ck_assert_int_eq(m->decls[2]->kind, DECL_TYPE);
    ck_assert_int_eq(m->decls[3]->body->kind, EX_ERROR);
    ck_assert_int_eq(m->decls[4]->body->kind, EX_ERROR);
    ck_assert_int_eq(m->decls[5]->body->kind, EX_INT);
    ck_assert_int_eq(m->decls[6]->body->kind, EX_VAR);
}
END_TEST

START_TEST(test_error_lexical_no_cascade)
{
    capture();
    /* a lexical error is reported once, not again by the parser */
    Module *m = parse_file(src("def a = 1 $ 2\ndef b = \"abc\ndef c = {- open\n"));
    ck_assert_int_eq(diag_error_count(), 3);
    ASSERT_DIAG("t.dl:1:11: error: invalid character '$'");
    ASSERT_DIAG("t.dl:2:9: error: unterminated string literal");
    ASSERT_DIAG("t.dl:3:9: error: unterminated block comment");
    ck_assert_int_eq(m->ndecls, 3);
}
END_TEST

START_TEST(test_repl)
{
    capture();
    Decl **decls;
    int n;
    Expr *e;
    bool incomplete;
    static const char *const unfinished[] = {
        "let x = 5", "(1, 2", "f x +", "if a then b", "match x with | A => 1 |", "def f x =",
        "{- comment", "[1, 2", "fn x", "{ a = 1",
    };
    for (size_t i = 0; i < sizeof unfinished / sizeof unfinished[0]; i++) {
        ck_assert_msg(!parse_repl_input(src(unfinished[i]), &decls, &n, &e, &incomplete),
                      "'%s' parsed", unfinished[i]);
        ck_assert_msg(incomplete, "'%s' is not incomplete", unfinished[i]);
    }
    ck_assert_int_eq(diag_error_count(), 0); /* incomplete input is not an error */
    ck_assert(parse_repl_input(src("1 + 2 * 3"), &decls, &n, &e, &incomplete));
    ck_assert(!incomplete);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(n, 0);
    ck_assert(parse_repl_input(src("def f x = x\ndef g = f 1"), &decls, &n, &e, &incomplete));
    ck_assert_int_eq(n, 2);
    ck_assert_ptr_null(e);
    ck_assert(!parse_repl_input(src("1 + )"), &decls, &n, &e, &incomplete));
    ck_assert(!incomplete);
    ck_assert_int_eq(diag_error_count(), 1);
    ck_assert(!parse_repl_input(src("def f = 1 def"), &decls, &n, &e, &incomplete));
}
END_TEST

START_TEST(test_deep_nesting)
{
    capture();
    /* 5000 levels of unary minus: deep, but within the parser's stack */
    size_t depth = 5000;
    char *s = xmalloc(depth * 2 + 16);
    size_t k = 0;
    for (size_t i = 0; i < depth; i++) {
        s[k++] = '!';
    }
    s[k++] = 'x';
    s[k] = 0;
    Expr *e = parse_expr(s);
    ck_assert_int_eq(e->kind, EX_UNOP);
    free(s);
    /* far deeper: an error, not a crash */
    depth = 600000;
    s = xmalloc(depth + 32);
    k = 0;
    k += (size_t)sprintf(s, "def f = ");
    for (size_t i = 0; i < depth; i++)
        s[k++] = '!';
    s[k++] = 'x';
    s[k] = 0;
    Module *m = parse_file(src(s));
    ck_assert_ptr_nonnull(m);
    ASSERT_DIAG("nesting too deep");
    ck_assert_int_eq(diag_error_count(), 1);
    free(s);
    /* brackets are limited by the lexer */
    depth = 3000;
    s = xmalloc(depth * 2 + 32);
    k = (size_t)sprintf(s, "def g = ");
    for (size_t i = 0; i < depth; i++)
        s[k++] = '[';
    for (size_t i = 0; i < depth; i++)
        s[k++] = ']';
    s[k] = 0;
    diag_reset();
    m = parse_file(src(s));
    ck_assert_ptr_nonnull(m);
    ASSERT_DIAG("nesting too deep");
    ck_assert_int_eq(diag_error_count(), 1);
    free(s);
}
END_TEST

static Suite *parser_suite(void)
{
    Suite *s = suite_create("parser");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_precedence_arith);
    tcase_add_test(tc, test_precedence_pipes);
    tcase_add_test(tc, test_application);
    tcase_add_test(tc, test_index_and_arrays);
    tcase_add_test(tc, test_projection_fields);
    tcase_add_test(tc, test_records);
    tcase_add_test(tc, test_let_forms);
    tcase_add_test(tc, test_match);
    tcase_add_test(tc, test_loops_lambdas);
    tcase_add_test(tc, test_types);
    tcase_add_test(tc, test_decls);
    tcase_add_test(tc, test_rule_after_match);
    tcase_add_test(tc, test_patterns);
    tcase_add_test(tc, test_locations);
    tcase_add_test(tc, test_roundtrip_exprs);
    tcase_add_test(tc, test_print_canonical);
    tcase_add_test(tc, test_roundtrip_program);
    tcase_add_test(tc, test_ast_dump);
    tcase_add_test(tc, test_error_messages);
    tcase_add_test(tc, test_error_recovery);
    tcase_add_test(tc, test_error_lexical_no_cascade);
    tcase_add_test(tc, test_repl);
    tcase_add_test(tc, test_deep_nesting);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(parser_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
