/* test_codegen.c — the LLVM back end on Core programs built by hand: each
 * program is compiled to an executable, run, and its output compared.
 * Needs libdlrt built ($DCC_BUILDDIR, set by `make check`). */
#include <check.h>
#include <glob.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dcc.h"

/* ------------------------------------------------------------ building */

static Type *tf, *ti, *tb, *tu, *ts;
static CProgram *prog;
static int line;

static Loc L(void)
{
    line++;
    return (Loc){"t.dl", line, 7, line, 9};
}

static void setup(void)
{
    tf = type_float();
    ti = type_int();
    tb = type_bool();
    tu = type_unit();
    ts = type_string();
    prog = NEW(CProgram);
    prog->module = "t";
    line = 0;
}

#define V(v) core_atom_var(v)
#define I(n) core_atom_int(n)
#define F(x) core_atom_float(x, tf)
#define S(s) core_atom_string(s)

static CAtom *prim(CBlock *b, Prim op, Type *t, int64_t imm, int n, ...)
{
    CAtom *args[16];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        args[i] = va_arg(ap, CAtom *);
    va_end(ap);
    return V(core_bind(b, "t", core_prim(op, t, L(), args, n, imm)));
}

#define P(b, op, t, ...) prim(b, op, t, 0, (int)(sizeof((CAtom *[]){__VA_ARGS__}) / sizeof(CAtom *)), __VA_ARGS__)

static void println(CBlock *b, CAtom *a) { prim(b, P_PRINTLN, tu, 0, 1, a); }

static CFun *fun(const char *name, CVar **params, int n, Type *ret, CBlock *body)
{
    CFun *f = core_fun_new(name, name, L());
    f->params = params;
    f->nparams = n;
    f->ret = ret;
    f->body = body;
    core_program_add(prog, f);
    return f;
}

static CBlock *main_block(void)
{
    CBlock *b = core_block_new();
    CVar **ps = NEWN(CVar *, 1);
    ps[0] = core_var("u", tu, L());
    CFun *m = fun("main", ps, 1, tu, b);
    m->is_main = true;
    prog->main = m;
    return b;
}

static void finish(CBlock *b) { b->result = core_atom_unit(); }

static CAtom *call(CBlock *b, CFun *f, Type *t, int n, CAtom **args)
{
    CExpr *e = core_expr(CE_CALL, t, L());
    e->u.fun = f;
    e->args = args;
    e->nargs = n;
    return V(core_bind(b, "r", e));
}

static CAtom *lambda(CBlock *b, CVar **ps, int n, CBlock *body, Type *t)
{
    CExpr *e = core_expr(CE_LAMBDA, t, L());
    e->u.lambda = core_lambda(ps, n, body, t, L());
    return V(core_bind(b, "f", e));
}

static CAtom *apply(CBlock *b, CAtom *f, CAtom *x, Type *t)
{
    CExpr *e = core_expr(CE_APPLY, t, L());
    e->args = NEWN(CAtom *, 2);
    e->args[0] = f;
    e->args[1] = x;
    e->nargs = 2;
    return V(core_bind(b, "r", e));
}

static CAtom *soac(CBlock *b, SoacKind k, CLambda *l, Type *t, int n, CAtom **args)
{
    CExpr *e = core_expr(CE_SOAC, t, L());
    e->u.soac.kind = k;
    e->u.soac.fn = l;
    e->args = args;
    e->nargs = n;
    return V(core_bind(b, "s", e));
}

/* ------------------------------------------------------------ running */

typedef struct Run {
    int status;
    char out[8192], err[8192];
} Run;

static void slurp(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    buf[k] = 0;
    if (f)
        fclose(f);
}

static Options opts(int opt, const char *out)
{
    Options o = {0};
    o.input = "t.dl";
    o.output = out;
    o.opt_level = opt;
    o.emit = EMIT_EXE;
    return o;
}

/* Compiles the program at -Oopt, runs it (under valgrind when asked). */
static Run *run_opt(int opt, bool valgrind)
{
    static Run r;
    char dir[] = "/tmp/dcc-cg-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char exe[256], out[256], err[256], cmd[1024];
    snprintf(exe, sizeof exe, "%s/prog", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    Options o = opts(opt, exe);
    ck_assert_msg(codegen_program(prog, &o), "codegen_program failed");
    snprintf(cmd, sizeof cmd, "%s%s >%s 2>%s",
             valgrind ? "valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all "
                        "--error-exitcode=99 "
                      : "",
             exe, out, err);
    int st = system(cmd);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    slurp(out, r.out, sizeof r.out);
    slurp(err, r.err, sizeof r.err);
    unlink(exe);
    unlink(out);
    unlink(err);
    rmdir(dir);
    return &r;
}

static void expect(const char *want)
{
    for (int opt = 0; opt <= 2; opt += 2) {
        Run *r = run_opt(opt, false);
        ck_assert_msg(r->status == 0, "-O%d: exit status %d, stderr: %s", opt, r->status, r->err);
        ck_assert_str_eq(r->out, want);
    }
}

/* With --enable-sanitizers the executables carry ASan, which valgrind
 * cannot run: LeakSanitizer checks them instead (a leak: status 23). */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static bool have_valgrind(void) { return !SANITIZED && system("valgrind --version >/dev/null 2>&1") == 0; }

static void expect_no_leak(void)
{
    if (!have_valgrind() && !SANITIZED)
        return;
    Run *r = run_opt(0, have_valgrind());
    ck_assert_msg(r->status == 0, "%s: status %d: %s", SANITIZED ? "sanitizers" : "valgrind", r->status, r->err);
}

/* Compiles DL source through the front end and lowering instead. */
static void from_source(const char *src)
{
    diag_reset();
    Vec order = {0};
    Module *root = module_load_text("t", src, strlen(src), &order);
    ck_assert_msg(root && diag_error_count() == 0, "parse errors");
    typecheck_program(&order);
    ck_assert_msg(diag_error_count() == 0, "type errors");
    prog = core_lower_program(&order, root);
    vec_free(&order);
    ck_assert_msg(prog && diag_error_count() == 0, "lowering errors");
    core_simplify(prog, 2);
}

/* ------------------------------------------------------------ programs */

START_TEST(test_scalars)
{
    CBlock *b = main_block();
    CAtom *x = P(b, P_ADD, tf, F(1.5), F(2.25));
    println(b, x);
    CAtom *y = P(b, P_MUL, ti, I(6), I(-7));
    println(b, y);
    println(b, P(b, P_DIV, ti, I(-7), I(2)));
    println(b, P(b, P_MOD, ti, I(-7), I(3)));
    println(b, P(b, P_POW, ti, I(2), I(10)));
    println(b, P(b, P_POW, tf, F(2.0), F(0.5)));
    CAtom *c = P(b, P_LT, tb, I(1), I(2));
    println(b, c);
    println(b, P(b, P_DIV, tf, F(1.0), F(10.0)));
    println(b, P(b, P_TUPLE, type_tuple((Type *[]){tf, ti, tb}, 3), x, y, c));
    println(b, S("hi \"there\""));
    println(b, P(b, P_TUPLE, type_tuple((Type *[]){ts, tf}, 2), S("a\n"), F(-0.0)));
    println(b, core_atom_unit());
    println(b, P(b, P_TO_F32, type_f32(), F(0.1)));
    println(b, P(b, P_TO_INT, ti, F(-3.7)));
    println(b, P(b, P_MAX, tf, F(1.0), F(3.0)));
    println(b, P(b, P_SIGMOID, tf, F(0.0)));
    println(b, P(b, P_NOT, tb, core_atom_bool(false)));
    finish(b);
    expect("3.75\n-42\n-3\n-1\n1024\n1.4142135623730951\ntrue\n0.1\n(3.75, -42, true)\nhi \"there\"\n"
           "(\"a\\n\", -0.0)\n()\n0.1\n-3\n3.0\n0.5\ntrue\n");
}
END_TEST

/* fib n = if n < 2 then n else fib (n - 1) + fib (n - 2) */
START_TEST(test_recursion)
{
    CVar *n = core_var("n", ti, L());
    CBlock *body = core_block_new();
    CFun *fib = fun("fib", (CVar *[]){n}, 1, ti, body);
    fib->params = NEWN(CVar *, 1);
    fib->params[0] = n;
    CAtom *c = P(body, P_LT, tb, V(n), I(2));
    CBlock *tb_ = core_block_new();
    tb_->result = V(n);
    CBlock *eb = core_block_new();
    CAtom *n1 = P(eb, P_SUB, ti, V(n), I(1));
    CAtom *n2 = P(eb, P_SUB, ti, V(n), I(2));
    CAtom *f1 = call(eb, fib, ti, 1, (CAtom *[]){n1});
    CAtom *f2 = call(eb, fib, ti, 1, (CAtom *[]){n2});
    eb->result = P(eb, P_ADD, ti, f1, f2);
    CExpr *ife = core_expr(CE_IF, ti, L());
    ife->args = NEWN(CAtom *, 1);
    ife->args[0] = c;
    ife->nargs = 1;
    ife->u.if_.then_ = tb_;
    ife->u.if_.else_ = eb;
    body->result = V(core_bind(body, "r", ife));
    CBlock *b = main_block();
    CAtom **args = NEWN(CAtom *, 1);
    args[0] = I(20);
    println(b, call(b, fib, ti, 1, args));
    finish(b);
    expect("6765\n");
}
END_TEST

START_TEST(test_loops)
{
    CBlock *b = main_block();
    /* loop acc = 0 for i < 10 do acc + i * i */
    CVar *acc = core_var("acc", ti, L()), *i = core_var("i", ti, L());
    CBlock *body = core_block_new();
    body->result = P(body, P_ADD, ti, V(acc), P(body, P_MUL, ti, V(i), V(i)));
    CExpr *lp = core_expr(CE_LOOP, ti, L());
    lp->args = NEWN(CAtom *, 2);
    lp->args[0] = I(0);
    lp->args[1] = I(10);
    lp->nargs = 2;
    lp->u.loop.state = acc;
    lp->u.loop.kind = LOOP_FOR;
    lp->u.loop.ivar = i;
    lp->u.loop.body = body;
    println(b, V(core_bind(b, "l", lp)));
    /* loop x = 1.0 while x < 1000.0 do x * 2.0 */
    CVar *x = core_var("x", tf, L());
    CBlock *cond = core_block_new();
    cond->result = P(cond, P_LT, tb, V(x), F(1000.0));
    CBlock *body2 = core_block_new();
    body2->result = P(body2, P_MUL, tf, V(x), F(2.0));
    CExpr *lw = core_expr(CE_LOOP, tf, L());
    lw->args = NEWN(CAtom *, 1);
    lw->args[0] = F(1.0);
    lw->nargs = 1;
    lw->u.loop.state = x;
    lw->u.loop.kind = LOOP_WHILE;
    lw->u.loop.cond = cond;
    lw->u.loop.body = body2;
    println(b, V(core_bind(b, "w", lw)));
    finish(b);
    expect("285\n1024.0\n");
}
END_TEST

START_TEST(test_closures)
{
    CBlock *b = main_block();
    Type *ii = type_func(ti, ti);
    /* let k = 10 in let f = fn x => x + k in f 5 */
    CAtom *k = P(b, P_ADD, ti, I(4), I(6));
    CVar *x = core_var("x", ti, L());
    CBlock *fb = core_block_new();
    fb->result = P(fb, P_ADD, ti, V(x), k);
    CAtom *f = lambda(b, (CVar *[]){x}, 1, fb, ii);
    println(b, apply(b, f, I(5), ti));
    /* g = fn a b => a * b + k (two parameters: curried) */
    CVar *a = core_var("a", ti, L()), *bb = core_var("b", ti, L());
    CBlock *gb = core_block_new();
    gb->result = P(gb, P_ADD, ti, P(gb, P_MUL, ti, V(a), V(bb)), k);
    CVar **gps = NEWN(CVar *, 2);
    gps[0] = a;
    gps[1] = bb;
    CAtom *g = lambda(b, gps, 2, gb, type_func(ti, ii));
    CAtom *g3 = apply(b, g, I(3), ii);
    println(b, apply(b, g3, I(4), ti));
    /* a closure capturing an array: h = fn i => xs[i] */
    Type *af = type_array(tf, 1);
    CAtom *xs = P(b, P_ARRAY, af, F(1.0), P(b, P_ADD, tf, F(1.0), F(1.0)));
    CVar *i = core_var("i", ti, L());
    CBlock *hb = core_block_new();
    hb->result = P(hb, P_INDEX, tf, xs, V(i));
    CAtom *h = lambda(b, (CVar *[]){i}, 1, hb, type_func(ti, tf));
    println(b, apply(b, h, I(1), tf));
    /* a top-level function used as a value, partially applied */
    CVar *p = core_var("p", ti, L()), *q = core_var("q", ti, L());
    CBlock *sb = core_block_new();
    sb->result = P(sb, P_SUB, ti, V(p), V(q));
    CVar **sps = NEWN(CVar *, 2);
    sps[0] = p;
    sps[1] = q;
    CFun *sub = fun("sub", sps, 2, ti, sb);
    CAtom *sv = core_atom_fun(sub, type_func(ti, ii));
    CAtom *s10 = apply(b, sv, I(10), ii);
    println(b, apply(b, s10, I(3), ti));
    finish(b);
    expect("15\n22\n2.0\n7\n");
    expect_no_leak();
}
END_TEST

static TypeDecl *option_decl(void)
{
    TypeDecl *d = NEW(TypeDecl);
    d->name = "option";
    d->ntparams = 1;
    d->kind = TD_VARIANT;
    d->ncons = 2;
    d->cons = NEWN(const char *, 2);
    d->cons[0] = "None";
    d->cons[1] = "Some";
    d->con_args = NEWN(Type *, 2);
    Type *q = NEW(Type);
    q->kind = TY_QVAR;
    q->id = 0;
    d->con_args[1] = q;
    return d;
}

static Type *named(TypeDecl *d, Type *arg)
{
    Type *t = NEW(Type);
    t->kind = TY_NAMED;
    t->decl = d;
    t->nargs = arg ? 1 : 0;
    t->args = NEWN(Type *, 1);
    t->args[0] = arg;
    return t;
}

START_TEST(test_variants_records)
{
    TypeDecl *od = option_decl();
    Type *oi = named(od, ti), *ooi = named(od, oi), *of = named(od, tf);
    CBlock *b = main_block();
    CAtom *s3 = prim(b, P_CON, oi, 1, 1, I(3));
    println(b, s3);
    println(b, prim(b, P_CON, oi, 0, 0));
    println(b, prim(b, P_CON, ooi, 1, 1, s3));
    println(b, prim(b, P_CON, of, 1, 1, F(-1.0)));
    println(b, prim(b, P_CON, named(od, ts), 1, 1, S("str")));
    /* match s3 with Some p => p + 1 | _ => 0 */
    CExpr *ce = core_expr(CE_CASE, ti, L());
    ce->args = NEWN(CAtom *, 1);
    ce->args[0] = s3;
    ce->nargs = 1;
    ce->u.case_.nalts = 2;
    ce->u.case_.alts = NEWN(CAlt, 2);
    CVar *p = core_var("p", ti, L());
    CBlock *ab = core_block_new();
    ab->result = P(ab, P_ADD, ti, V(p), I(1));
    ce->u.case_.alts[0] = (CAlt){1, p, ab};
    CBlock *db = core_block_new();
    db->result = I(0);
    ce->u.case_.alts[1] = (CAlt){-1, NULL, db};
    println(b, V(core_bind(b, "m", ce)));
    /* a record */
    TypeDecl *rd = NEW(TypeDecl);
    rd->name = "pt";
    rd->kind = TD_RECORD;
    rd->nfields = 2;
    rd->fields = NEWN(const char *, 2);
    rd->fields[0] = "a";
    rd->fields[1] = "b";
    rd->field_types = NEWN(Type *, 2);
    rd->field_types[0] = tf;
    rd->field_types[1] = type_array(tf, 1);
    Type *rt = named(rd, NULL);
    CAtom *arr = P(b, P_ARRAY, type_array(tf, 1), F(1.0), P(b, P_NEG, tf, F(2.0)));
    CAtom *r = P(b, P_RECORD, rt, F(9.0), arr);
    println(b, r);
    println(b, prim(b, P_FIELD, type_array(tf, 1), 1, 1, r));
    /* an array of options */
    println(b, P(b, P_ARRAY, type_array(oi, 1), s3, prim(b, P_CON, oi, 0, 0)));
    finish(b);
    expect("Some 3\nNone\nSome (Some 3)\nSome (-1.0)\nSome \"str\"\n4\n{ a = 9.0, b = [1.0, -2.0] }\n"
           "[1.0, -2.0]\n[Some 3, None]\n");
    expect_no_leak();
}
END_TEST

static CLambda *lam1(CVar *x, CBlock *body, Type *t) { return core_lambda((CVar *[]){x}, 1, body, t, L()); }

START_TEST(test_arrays)
{
    Type *af = type_array(tf, 1), *mf = type_array(tf, 2);
    CBlock *b = main_block();
    CAtom *a = P(b, P_ARRAY, af, F(1.0), F(2.0), F(3.0));
    CAtom *bb = P(b, P_ARRAY, af, F(10.0), F(20.0), F(30.0));
    println(b, P(b, P_ADD, af, a, bb));
    CAtom *m = P(b, P_ARRAY, mf, a, bb);
    println(b, m);
    println(b, P(b, P_ADD, mf, m, a));
    println(b, P(b, P_MUL, mf, F(2.0), m));
    println(b, P(b, P_SUM, tf, m));
    println(b, P(b, P_INDEX, tf, m, I(1), I(2)));
    println(b, P(b, P_INDEX, af, m, I(0)));
    println(b, P(b, P_MATMUL, af, m, a));
    println(b, P(b, P_DOT, tf, a, a));
    println(b, prim(b, P_SLICE, af, 1, 3, a, I(1), I(3)));
    println(b, P(b, P_UPDATE, af, a, F(9.0), I(0)));
    println(b, a);
    /* map (fn x => x * 2.0) a, reduce (+) 0.0 a, scan, filter */
    CVar *x = core_var("x", tf, L());
    CBlock *mb = core_block_new();
    mb->result = P(mb, P_MUL, tf, V(x), F(2.0));
    println(b, soac(b, SOAC_MAP, lam1(x, mb, type_func(tf, tf)), af, 1, (CAtom *[]){a}));
    CVar *s = core_var("s", tf, L()), *y = core_var("y", tf, L());
    CBlock *rb = core_block_new();
    rb->result = P(rb, P_ADD, tf, V(s), V(y));
    CLambda *add = core_lambda((CVar *[]){s, y}, 2, rb, type_func(tf, type_func(tf, tf)), L());
    CAtom **ra = NEWN(CAtom *, 2);
    ra[0] = F(0.0);
    ra[1] = a;
    println(b, soac(b, SOAC_REDUCE, add, tf, 2, ra));
    println(b, soac(b, SOAC_SCAN, add, af, 2, ra));
    CVar *z = core_var("z", tf, L());
    CBlock *fb = core_block_new();
    fb->result = P(fb, P_GT, tb, V(z), F(1.5));
    println(b, soac(b, SOAC_FILTER, lam1(z, fb, type_func(tf, tb)), af, 1, (CAtom *[]){a}));
    /* rows of a matrix through map: map sum m */
    CVar *row = core_var("row", af, L());
    CBlock *sb = core_block_new();
    sb->result = P(sb, P_SUM, tf, V(row));
    println(b, soac(b, SOAC_MAP, lam1(row, sb, type_func(af, tf)), af, 1, (CAtom *[]){m}));
    /* arrays of tuples and strings, iota, zeros, transpose */
    println(b, P(b, P_ZIP, type_array(type_tuple2(tf, tf), 1), a, bb));
    println(b, P(b, P_ARRAY, type_array(ts, 1), S("x"), S("y")));
    println(b, P(b, P_IOTA, type_array(ti, 1), I(4)));
    println(b, P(b, P_ZEROS, mf, I(2), I(2)));
    println(b, P(b, P_TRANSPOSE, mf, m));
    println(b, P(b, P_EQ, tb, a, a));
    println(b, P(b, P_LT, type_array(tb, 1), a, F(2.5)));
    println(b, prim(b, P_ARRAY, af, 0, 0));
    println(b, P(b, P_SUM_AXIS0, af, m));
    println(b, P(b, P_FILL, mf, F(2.0), I(2), I(2)));
    println(b, P(b, P_REPLICATE, mf, I(2), a));
    println(b, P(b, P_SOFTMAX, mf, P(b, P_ZEROS, mf, I(2), I(2))));
    println(b, P(b, P_ZEROS_LIKE, type_tuple2(af, tf), P(b, P_TUPLE, type_tuple2(af, tf), a, F(3.0))));
    println(b, P(b, P_CONCAT, mf, m, m));
    finish(b);
    expect("[11.0, 22.0, 33.0]\n[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]\n[[2.0, 4.0, 6.0], [11.0, 22.0, 33.0]]\n"
           "[[2.0, 4.0, 6.0], [20.0, 40.0, 60.0]]\n66.0\n30.0\n[1.0, 2.0, 3.0]\n[14.0, 140.0]\n14.0\n"
           "[2.0, 3.0]\n[9.0, 2.0, 3.0]\n[1.0, 2.0, 3.0]\n[2.0, 4.0, 6.0]\n6.0\n[1.0, 3.0, 6.0]\n[2.0, 3.0]\n"
           "[6.0, 60.0]\n[(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)]\n[\"x\", \"y\"]\n[0, 1, 2, 3]\n"
           "[[0.0, 0.0], [0.0, 0.0]]\n[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]\ntrue\n[true, true, false]\n[]\n"
           "[11.0, 22.0, 33.0]\n[[2.0, 2.0], [2.0, 2.0]]\n[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]\n"
           "[[0.5, 0.5], [0.5, 0.5]]\n([0.0, 0.0, 0.0], 0.0)\n"
           "[[1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]\n");
    expect_no_leak();
}
END_TEST

/* Run-time errors name the .dl position and exit with status 1. */
static void expect_error(const char *msg)
{
    Run *r = run_opt(2, false);
    ck_assert_int_eq(r->status, 1);
    ck_assert_msg(strstr(r->err, msg), "stderr '%s' lacks '%s'", r->err, msg);
}

START_TEST(test_runtime_errors)
{
    CBlock *b = main_block();
    CAtom *a = P(b, P_ARRAY, type_array(tf, 1), F(1.0), F(2.0), F(3.0));
    println(b, P(b, P_INDEX, tf, a, I(5))); /* on line 4 */
    finish(b);
    expect_error("t.dl:4:7: error: index 5 out of bounds for axis 0 of length 3");

    setup();
    b = main_block();
    CAtom *z = P(b, P_SUB, ti, I(1), I(1));
    println(b, P(b, P_DIV, ti, I(1), z));
    finish(b);
    expect_error("t.dl:4:7: error: integer division by zero");

    setup();
    b = main_block();
    CAtom *x = P(b, P_ARRAY, type_array(tf, 1), F(1.0), F(2.0));
    CAtom *y = P(b, P_ARRAY, type_array(tf, 1), F(1.0), F(2.0), F(3.0));
    println(b, P(b, P_ADD, type_array(tf, 1), x, y));
    finish(b);
    expect_error("t.dl:5:7: error: shape mismatch in '+': [2] and [3]");
}
END_TEST

/* --emit=llvm, and line tables under -g. */
START_TEST(test_emit_llvm)
{
    CBlock *b = main_block();
    println(b, P(b, P_ADD, tf, F(1.0), F(2.0)));
    finish(b);
    char path[] = "/tmp/dcc-cg-XXXXXX.ll";
    int fd = mkstemps(path, 3);
    ck_assert_int_ge(fd, 0);
    close(fd);
    Options o = opts(0, path);
    o.emit = EMIT_LLVM;
    o.debug_info = true;
    ck_assert(codegen_program(prog, &o));
    static char text[65536];
    slurp(path, text, sizeof text);
    unlink(path);
    ck_assert_ptr_nonnull(strstr(text, "define i32 @main("));
    ck_assert_ptr_nonnull(strstr(text, "define internal i8 @dl.main("));
    ck_assert_ptr_nonnull(strstr(text, "!DILocation(line: 4"));
    ck_assert_ptr_nonnull(strstr(text, "DISubprogram(name: \"main\""));
}
END_TEST

/* Elementwise chains, iota and maps of scalars are fused into the loop of
 * their consumer; the results must be those of the unfused operations. */
START_TEST(test_fusion)
{
    from_source("def main () : unit =\n"
                "  let x = [1.0, 2.0, 3.0] in\n"
                "  let y = [10.0, 20.0, 30.0] in\n"
                "  let m = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]] in\n"
                "  let _ = println (sum (x * y)) in\n"
                "  let _ = println (x * x + y) in\n"
                "  let _ = println x in\n"
                "  let z = x * 2.0 in\n"
                "  let w = z + z in\n"
                "  let _ = println (w, z) in\n"
                "  let _ = println (m * 2.0 + x) in\n"
                "  let _ = println (mean ((m - 1.0) ^ 2.0)) in\n"
                "  let _ = println (maximum (m * -1.0), minimum (x - 5.0)) in\n"
                "  let _ = println (sum (map (fn i => float i * 0.5) (iota 4))) in\n"
                "  let _ = println (map (fn i => float i + 1.0) (iota 3) + x) in\n"
                "  let _ = println (map2 (fn a b => a * b) (iota 3) (iota 3)) in\n"
                "  let _ = println (reduce (+) 0.0 (x * y)) in\n"
                "  let _ = println (fold (fn acc v => acc + v * v) 1.0 (x + 1.0)) in\n"
                "  let v = loop v = [1.0, 1.0, 1.0] for i < 3 do v * 2.0 + x in\n"
                "  let _ = println v in\n"
                "  let q = loop q = x for i < 2 do q + q in\n"
                "  let _ = println (q, x) in\n"
                "  let k = [1, 2, 3] in\n"
                "  let _ = println (k * k - 1, sum (k * 2), mean (map float k)) in\n"
                "  let e = [1.0, 2.0] in\n"
                "  let f = e + [0.5] in\n"
                "  println (f, e)\n");
    expect("140.0\n[11.0, 24.0, 39.0]\n[1.0, 2.0, 3.0]\n([4.0, 8.0, 12.0], [2.0, 4.0, 6.0])\n"
           "[[3.0, 6.0, 9.0], [9.0, 12.0, 15.0]]\n9.166666666666666\n(-1.0, -4.0)\n3.0\n[2.0, 4.0, 6.0]\n"
           "[0, 1, 4]\n140.0\n30.0\n[15.0, 22.0, 29.0]\n([4.0, 8.0, 12.0], [1.0, 2.0, 3.0])\n"
           "([0, 3, 8], 12, 2.0)\n([1.5, 2.5], [1.0, 2.0])\n");
    expect_no_leak();
    from_source("def main () : unit =\n"
                "  let x = [1.0, 2.0, 3.0] in\n"
                "  let y = [1.0, 2.0] in\n"
                "  println (sum (x * y))\n");
    expect_error("t:4:17: error: shape mismatch in '*': [3] and [2]");
    from_source("def main () : unit = println (map2 (fn a b => a + b) (iota 3) (iota 4))\n");
    expect_error("error: shape mismatch in 'map2': [3] and [4]");
}
END_TEST

/* Values built at run time: strings, show, closures in loops, arrays of
 * structures, update in place, nested variants. */
START_TEST(test_source_misc)
{
    from_source("type 'a option = None | Some of 'a\n"
                "type r = { name: string, xs: []float }\n"
                "def main () : unit =\n"
                "  let s = show (1, [2.5], Some \"a\") in\n"
                "  let _ = println (str_concat s \"!\") in\n"
                "  let fs = loop fs = [] for i < 3 do concat fs [fn x => x + i] in\n"
                "  let _ = println (map (fn f => f 10) fs) in\n"
                "  let rs = map (fn i => { name = show i, xs = replicate i 1.0 }) (iota 3) in\n"
                "  let _ = println rs in\n"
                "  let a = loop a = zeros 1 for i < 3 do concat a [float i] in\n"
                "  let _ = println (a, length a) in\n"
                "  let o = Some (Some [1, 2]) in\n"
                "  let _ = println (o, [o, None]) in\n"
                "  let t = map (fn r => sum r.xs) (filter (fn r => length r.xs > 0) rs) in\n"
                "  println (t, reverse [1, 2, 3], take 2 [1, 2, 3], drop 1 [[1], [2]])\n");
    expect("(1, [2.5], Some \"a\")!\n[10, 11, 12]\n"
           "[{ name = \"0\", xs = [] }, { name = \"1\", xs = [1.0] }, { name = \"2\", xs = [1.0, 1.0] }]\n"
           "([0.0, 0.0, 1.0, 2.0], 4)\n(Some (Some [1, 2]), [Some (Some [1, 2]), None])\n"
           "([1.0, 2.0], [3, 2, 1], [1, 2], [[2]])\n");
    expect_no_leak();
}
END_TEST

/* A DL file compiled as the driver does at -Oopt: simplified (when
 * optimising), derivatives expanded, simplified again. */
static void from_file(const char *path, int opt)
{
    module_reset();
    diag_reset();
    Vec order = {0};
    Module *root = module_load_root(path, path, &order);
    ck_assert_msg(root && diag_error_count() == 0, "%s: parse errors", path);
    typecheck_program(&order);
    ck_assert_msg(diag_error_count() == 0, "%s: type errors", path);
    prog = core_lower_program(&order, root);
    ck_assert_msg(prog && diag_error_count() == 0, "%s: lowering errors", path);
    if (opt > 0)
        core_simplify(prog, opt);
    ck_assert_msg(ad_transform_program(prog) && diag_error_count() == 0, "%s: AD errors", path);
    core_simplify(prog, opt);
    vec_free(&order);
}

/* The `-- expect: TEXT` lines of a test program, one per output line. */
static void expected_output(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[4096];
    size_t len = 0;
    buf[0] = 0;
    while (fgets(line, sizeof line, f)) {
        const char *tag = "-- expect: ";
        if (strncmp(line, tag, strlen(tag)) != 0)
            continue;
        const char *t = line + strlen(tag);
        size_t k = strlen(t);
        ck_assert_msg(len + k + 2 < n, "%s: expected output too long", path);
        memcpy(buf + len, t, k);
        len += k;
        if (len && buf[len - 1] != '\n')
            buf[len++] = '\n';
        buf[len] = 0;
    }
    fclose(f);
}

/* In-place reuse of owned operands and loop fusion happen only when
 * optimising (-O1 and up): tests/programs/codegen_inplace_*.dl must print
 * their expected output at every level, with no memory error or leak. */
START_TEST(test_inplace_all_levels)
{
    const char *src = getenv("DCC_SRCDIR");
    char pattern[1024];
    snprintf(pattern, sizeof pattern, "%s/tests/programs/codegen_inplace_*.dl", src && *src ? src : DCC_SRCDIR);
    glob_t g;
    ck_assert_int_eq(glob(pattern, 0, NULL, &g), 0);
    ck_assert_msg(g.gl_pathc >= 5, "only %zu files match %s", (size_t)g.gl_pathc, pattern);
    bool vg = have_valgrind();
    static char want[8192];
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *path = g.gl_pathv[i];
        expected_output(path, want, sizeof want);
        ck_assert_msg(want[0], "%s: no '-- expect:' lines", path);
        for (int opt = 0; opt <= 3; opt++) {
            from_file(path, opt);
            Run *r = run_opt(opt, vg);
            ck_assert_msg(r->status == 0, "%s -O%d: exit status %d, stderr: %.800s", path, opt, r->status,
                          r->err);
            ck_assert_msg(!strcmp(r->out, want), "%s -O%d: printed\n%.1000s\nexpected\n%.1000s", path, opt,
                          r->out, want);
        }
    }
    globfree(&g);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("codegen");
    TCase *t = tcase_create("programs");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, test_scalars);
    tcase_add_test(t, test_recursion);
    tcase_add_test(t, test_loops);
    tcase_add_test(t, test_closures);
    tcase_add_test(t, test_variants_records);
    tcase_add_test(t, test_arrays);
    tcase_add_test(t, test_runtime_errors);
    tcase_add_test(t, test_emit_llvm);
    tcase_add_test(t, test_fusion);
    tcase_add_test(t, test_source_misc);
    tcase_add_test(t, test_inplace_all_levels);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
