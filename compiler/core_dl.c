/* core_dl.c — Core IR printed back as DL source (--emit=ad).
 *
 * The program after the AD stages is printed as a DL program that dcc
 * compiles again to the same Core: every def reachable from main and the
 * exports, the record and variant types they use declared with `type`, one
 * `let` per Core binding (annotated unless its type is a scalar the
 * right-hand side determines), parameters of defs and lambdas annotated.
 *
 *  - Primitives with DL syntax print as it (operators, built-ins, indexing
 *    and slicing, tuples, records, constructors); those without print as
 *    the built-ins of docs/language.md, "Built-ins that --emit=ad uses",
 *    which lower to the same primitives: P_SELECT `select` (a scalar
 *    operand broadcast by `fill`; on bools an `if`), P_UPDATE `update_at`,
 *    P_FILL `fill`, P_SUM_AXIS0 `sum_axis0`, P_SHAPE of a tuple type
 *    `dims`, elementwise comparisons `lt_each` ... A variant's tag and
 *    payload (P_TAG, P_PAYLOAD) print as a `match`, a map of more than
 *    three arrays as `map` over nested `zip`s.
 *  - Names: each variable keeps its source name or hint, with a suffix _2,
 *    _3, ... where that name is taken in the function; names of keywords,
 *    built-ins and printed defs are never given to variables, and a def
 *    whose name is a built-in's is renamed the same way, so a user's
 *    identifiers never capture the built-ins the printed program calls.
 *    Variables the AD stages made read as the derivative they hold: the
 *    tangent `dx` of x prints as x_dot (x_bar inside a pullback, where it
 *    is a cotangent), the cotangent parameter of a pullback as y_bar (of
 *    the result y); pullbacks keep their name pb.
 *  - Unit values print as () (a unit `let` binds `_`).
 *  - A synthesised tangent type T(D) (types.c: the tangent of a record or
 *    variant that is not D itself) has no name in DL, and its record
 *    literal would read as a D: its values are left unannotated (inferred)
 *    and a record of it is built as `{ (zeros_like x) with f = .. }` from a
 *    variable x : D in scope. Where none is in scope the literal falls back
 *    to a declared D_tangent with fields and constructors suffixed _dot,
 *    which compiles but prints those names. */
#include "dcc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct DlPrinter {
    FILE *out;
    int first_ad_var;  /* variables with this id or more were made by AD */
    CoreMap var_names; /* CVar -> printed name */
    CoreMap taken;     /* interned name -> (void *)1, in the current def */
    CoreMap reserved;  /* interned name -> (void *)1: keywords, built-ins, defs */
    CoreMap fun_names; /* CFun -> printed name */
    CoreMap src_names; /* interned source name -> (void *)1 (for x_dot) */
    Vec funs;          /* CFuns printed, in program order */
    CoreMap fun_seen;
    Vec decls;         /* TypeDecls to declare */
    CoreMap decl_seen;
    CoreMap decl_names; /* TypeDecl -> printed name */
    Vec scope;          /* CVars in scope where printing is */
    int in_pullback;    /* > 0 inside a pullback: d<x> is x's cotangent */
} DlPrinter;

static const char *const keywords[] = {
    "def", "export", "import", "as", "type", "of", "let", "rec", "in", "fn", "if", "then",
    "else", "match", "with", "loop", "for", "while", "do", "true", "false",
};

/* ---------------------------------------------------------------- names */

static bool name_free(DlPrinter *P, const char *n)
{
    return !core_map_get(&P->taken, n) && !core_map_get(&P->reserved, n);
}

/* A DL value identifier from a hint: [a-z_][A-Za-z0-9_']*. */
static const char *clean_name(const char *n)
{
    if (!n || !*n)
        return "t";
    StrBuf b = {0};
    if (!((*n >= 'a' && *n <= 'z') || *n == '_'))
        sb_puts(&b, "v_");
    for (const char *s = n; *s; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '\'';
        sb_putc(&b, ok ? c : '_');
    }
    const char *r = intern(b.data);
    sb_free(&b);
    return r;
}

static const char *fresh_name(DlPrinter *P, const char *base)
{
    base = clean_name(base);
    const char *n = base;
    for (int k = 2; !name_free(P, n); k++)
        n = intern(arena_printf(dcc_arena, "%s_%d", base, k));
    core_map_put(&P->taken, n, (void *)1);
    return n;
}

/* The name a variable reads as: its hint, or for a variable the AD stages
 * made, the derivative it holds (dx -> x_dot). */
static const char *var_hint(DlPrinter *P, CVar *v)
{
    const char *n = v->name && *v->name ? v->name : "t";
    if (v->id >= P->first_ad_var && strcmp(n, "dbr") == 0) /* reverse mode's */
        return "br_bar";                                     /* branch adjoints */
    if (v->id >= P->first_ad_var && n[0] == 'd' && n[1] &&
        core_map_get(&P->src_names, intern(n + 1)))
        return arena_printf(dcc_arena, "%s_%s", n + 1, P->in_pullback ? "bar" : "dot");
    return n;
}

static const char *bind_name(DlPrinter *P, CVar *v, const char *hint)
{
    const char *n = fresh_name(P, hint ? hint : var_hint(P, v));
    core_map_put(&P->var_names, v, (void *)n);
    vec_push(&P->scope, v);
    return n;
}

static bool is_unit(Type *t) { return type_resolve(t)->kind == TY_UNIT; }

static const char *var_name(DlPrinter *P, CVar *v)
{
    const char *n = core_map_get(&P->var_names, v);
    if (!n) /* free in its def (a broken invariant): give it a name anyway */
        n = bind_name(P, v, NULL);
    return n;
}

/* ---------------------------------------------------------------- types */

static bool has_tangent_decl(Type *t);

static void collect_type(DlPrinter *P, Type *t);

static void collect_decl(DlPrinter *P, TypeDecl *d)
{
    if (core_map_get(&P->decl_seen, d))
        return;
    core_map_put(&P->decl_seen, d, (void *)1);
    vec_push(&P->decls, d);
    int n = d->kind == TD_RECORD ? d->nfields : d->ncons;
    Type **ts = d->kind == TD_RECORD ? d->field_types : d->con_args;
    for (int i = 0; i < n; i++)
        if (ts && ts[i])
            collect_type(P, ts[i]);
}

static void collect_type(DlPrinter *P, Type *t)
{
    if (!t)
        return;
    t = type_resolve(t);
    switch (t->kind) {
    case TY_TUPLE:
    case TY_FUNC:
        for (int i = 0; i < t->nargs; i++)
            collect_type(P, t->args[i]);
        break;
    case TY_ARRAY:
        collect_type(P, t->elem);
        break;
    case TY_NAMED:
        for (int i = 0; i < t->nargs; i++)
            collect_type(P, t->args[i]);
        collect_decl(P, t->decl);
        break;
    default:
        break;
    }
}

static const char *decl_name(DlPrinter *P, TypeDecl *d)
{
    const char *n = core_map_get(&P->decl_names, d);
    return n ? n : d->name;
}

/* Field / constructor i of d as printed: a synthesised tangent's are the
 * primal's with _dot. */
static const char *member_name(TypeDecl *d, int i)
{
    const char *n = d->kind == TD_RECORD ? d->fields[i] : d->cons[i];
    return d->primal ? arena_printf(dcc_arena, "%s_dot", n) : n;
}

/* prec 0: anywhere; 1: left of ->, component of a tuple; 2: argument of a
 * named type or element of an array. */
static void print_type(DlPrinter *P, StrBuf *b, Type *t, TypeDecl *in, int prec)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_INT: sb_puts(b, "int"); break;
    case TY_FLOAT: sb_puts(b, "float"); break;
    case TY_F32: sb_puts(b, "f32"); break;
    case TY_BOOL: sb_puts(b, "bool"); break;
    case TY_UNIT: sb_puts(b, "unit"); break;
    case TY_STRING: sb_puts(b, "string"); break;
    case TY_KEY: sb_puts(b, "key"); break;
    case TY_QVAR:
        if (in && t->id < in->ntparams && in->tparams)
            sb_printf(b, "'%s", in->tparams[t->id]);
        else
            sb_printf(b, "'t%d", t->id);
        break;
    case TY_TUPLE:
        sb_putc(b, '(');
        for (int i = 0; i < t->nargs; i++) {
            if (i)
                sb_puts(b, ", ");
            print_type(P, b, t->args[i], in, 1);
        }
        sb_putc(b, ')');
        break;
    case TY_ARRAY:
        for (int i = 0; i < t->rank; i++)
            sb_puts(b, "[]");
        print_type(P, b, t->elem, in, 2);
        break;
    case TY_FUNC:
        if (prec > 0)
            sb_putc(b, '(');
        print_type(P, b, t->args[0], in, 1);
        sb_puts(b, " -> ");
        print_type(P, b, t->args[1], in, 0);
        if (prec > 0)
            sb_putc(b, ')');
        break;
    case TY_NAMED:
        if (t->nargs == 1) { /* ([]float) option, ((int, int)) option */
            TypeKind ak = type_resolve(t->args[0])->kind;
            bool arr = ak == TY_ARRAY || ak == TY_TUPLE;
            if (arr)
                sb_putc(b, '(');
            print_type(P, b, t->args[0], in, 2);
            sb_puts(b, arr ? ") " : " ");
        } else if (t->nargs > 1) {
            sb_putc(b, '(');
            for (int i = 0; i < t->nargs; i++) {
                if (i)
                    sb_puts(b, ", ");
                print_type(P, b, t->args[i], in, 1);
            }
            sb_puts(b, ") ");
        }
        sb_puts(b, decl_name(P, t->decl));
        break;
    default: /* unbound variables do not survive monomorphisation */
        sb_puts(b, "unit");
        break;
    }
}

static void put_type(DlPrinter *P, Type *t)
{
    StrBuf b = {0};
    print_type(P, &b, t, NULL, 0);
    fputs(b.data ? b.data : "unit", P->out);
    sb_free(&b);
}

static void print_decl(DlPrinter *P, TypeDecl *d)
{
    StrBuf b = {0};
    sb_puts(&b, "type ");
    if (d->ntparams == 1)
        sb_printf(&b, "'%s ", d->tparams[0]);
    else if (d->ntparams > 1) {
        sb_putc(&b, '(');
        for (int i = 0; i < d->ntparams; i++)
            sb_printf(&b, "%s'%s", i ? ", " : "", d->tparams[i]);
        sb_puts(&b, ") ");
    }
    sb_printf(&b, "%s =", decl_name(P, d));
    if (d->kind == TD_RECORD) {
        sb_puts(&b, " {");
        for (int i = 0; i < d->nfields; i++) {
            sb_printf(&b, "%s %s: ", i ? "," : "", member_name(d, i));
            print_type(P, &b, d->field_types[i], d, 0);
        }
        sb_puts(&b, " }");
    } else {
        for (int i = 0; i < d->ncons; i++) {
            sb_printf(&b, "%s %s", i ? " |" : "", member_name(d, i));
            Type *a = d->con_args ? d->con_args[i] : NULL;
            if (!a)
                continue;
            sb_puts(&b, " of ");
            a = type_resolve(a);
            if (a->kind == TY_TUPLE) { /* C of a * b: the arguments */
                for (int k = 0; k < a->nargs; k++) {
                    if (k)
                        sb_puts(&b, " * ");
                    print_type(P, &b, a->args[k], d, 2);
                }
            } else {
                print_type(P, &b, a, d, 1);
            }
        }
    }
    fprintf(P->out, "%s\n", b.data);
    sb_free(&b);
}

/* ---------------------------------------------------------------- atoms */

static void put_float(DlPrinter *P, double v, bool f32)
{
    const char *sfx = f32 ? "f32" : "";
    if (isnan(v)) {
        fprintf(P->out, "(0.0%s / 0.0%s)", sfx, sfx);
        return;
    }
    if (isinf(v)) {
        fprintf(P->out, "(%s1.0%s / 0.0%s)", v < 0 ? "-" : "", sfx, sfx);
        return;
    }
    char buf[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (f32 ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".e"))
        strcat(buf, ".0");
    else if (!strchr(buf, '.')) { /* 1e+20 -> 1.0e+20: DL needs the digits */
        char tmp[64];
        char *e = strchr(buf, 'e');
        snprintf(tmp, sizeof tmp, "%.*s.0%s", (int)(e - buf), buf, e);
        strcpy(buf, tmp);
    }
    if (buf[0] == '-') /* -x is unary minus: parenthesised */
        fprintf(P->out, "(%s%s)", buf, sfx);
    else
        fprintf(P->out, "%s%s", buf, sfx);
}

static const char *fun_name(DlPrinter *P, CFun *f)
{
    const char *n = core_map_get(&P->fun_names, f);
    return n ? n : f->name;
}

/* An atom as an argument: negative literals in parentheses. */
static void put_atom(DlPrinter *P, CAtom *a)
{
    FILE *out = P->out;
    if (a->kind != CA_FUN && is_unit(a->type)) {
        fputs("()", out);
        return;
    }
    switch (a->kind) {
    case CA_VAR: fputs(var_name(P, a->u.var), out); break;
    case CA_INT:
        if (a->u.ival == INT64_MIN)
            fputs("(-9223372036854775807 - 1)", out);
        else if (a->u.ival < 0)
            fprintf(out, "(%lld)", (long long)a->u.ival);
        else
            fprintf(out, "%lld", (long long)a->u.ival);
        break;
    case CA_FLOAT: put_float(P, a->u.fval, type_resolve(a->type)->kind == TY_F32); break;
    case CA_BOOL: fputs(a->u.ival ? "true" : "false", out); break;
    case CA_UNIT: fputs("()", out); break;
    case CA_STRING: core_print_string_literal(P->out, a->u.sval); break;
    case CA_FUN: fputs(fun_name(P, a->u.fun), out); break;
    }
}

static void put_atoms(DlPrinter *P, CAtom **a, int n)
{
    for (int i = 0; i < n; i++) {
        fputc(' ', P->out);
        put_atom(P, a[i]);
    }
}

/* dims as a shape: d, or (d1, d2, ...); () for none. */
static void put_shape(DlPrinter *P, CAtom **d, int n)
{
    if (n == 1) {
        put_atom(P, d[0]);
        return;
    }
    fputc('(', P->out);
    for (int i = 0; i < n; i++) {
        if (i)
            fputs(", ", P->out);
        put_atom(P, d[i]);
    }
    fputc(')', P->out);
}

/* ---------------------------------------------------------------- expressions */

static void put_block(DlPrinter *P, CBlock *b, int indent);

static void indent_to(FILE *out, int n)
{
    for (int i = 0; i < n; i++)
        fputc(' ', out);
}

/* A nested block as an expression: the atom alone, or the lets in
 * parentheses on lines of their own. */
static void put_nested(DlPrinter *P, CBlock *b, int indent)
{
    if (b->nbinds == 0 && b->result) {
        put_atom(P, b->result);
        return;
    }
    fputs("(\n", P->out);
    put_block(P, b, indent + 2);
    indent_to(P->out, indent);
    fputc(')', P->out);
}

static void put_param(DlPrinter *P, CVar *v, const char *hint)
{
    if (is_unit(v->type)) {
        bind_name(P, v, "_");
        fputs("()", P->out);
        return;
    }
    if (has_tangent_decl(v->type)) { /* no name for its type: inferred */
        fputs(bind_name(P, v, hint), P->out);
        return;
    }
    fprintf(P->out, "(%s : ", bind_name(P, v, hint));
    put_type(P, v->type);
    fputc(')', P->out);
}

static bool is_ad_var(DlPrinter *P, CVar *v) { return v->id >= P->first_ad_var; }

/* The parameters of a lambda; a cotangent reverse mode takes (`ct`) reads
 * as y_bar. Returns whether there was one (the body is then a pullback's). */
static bool put_lambda_params(DlPrinter *P, CLambda *l)
{
    bool pullback = false;
    for (int i = 0; i < l->nparams; i++) {
        CVar *p = l->params[i];
        const char *hint = NULL;
        if (is_ad_var(P, p) && strcmp(p->name, "ct") == 0) {
            hint = "y_bar";
            pullback = true;
        }
        fputc(' ', P->out);
        put_param(P, p, hint);
    }
    return pullback;
}

/* An inline lambda (of a SOAC), in parentheses. */
static void put_lambda(DlPrinter *P, CLambda *l, int indent)
{
    fputs("(fn", P->out);
    bool pullback = put_lambda_params(P, l);
    fputs(" => ", P->out);
    P->in_pullback += pullback;
    put_nested(P, l->body, indent + 2);
    P->in_pullback -= pullback;
    fputc(')', P->out);
}

static const char *con_of(Type *t, int con)
{
    t = type_resolve(t);
    if (t->kind == TY_NAMED && t->decl->kind == TD_VARIANT && con >= 0 && con < t->decl->ncons)
        return member_name(t->decl, con);
    return "_";
}

static const char *const binop_spelling[P__COUNT] = {
    [P_ADD] = "+", [P_SUB] = "-", [P_MUL] = "*", [P_DIV] = "/", [P_MOD] = "%",
    [P_POW] = "^", [P_EQ] = "==", [P_NE] = "!=", [P_LT] = "<", [P_LE] = "<=",
    [P_GT] = ">", [P_GE] = ">=", [P_MATMUL] = "@",
};

/* Primitives printed as the built-in of the same name applied to their
 * operands in order. */
static const char *builtin_spelling(Prim op)
{
    switch (op) {
    case P_EXP: case P_LOG: case P_LOG1P: case P_EXPM1: case P_SQRT: case P_SIN: case P_COS:
    case P_TAN: case P_TANH: case P_ABS: case P_SIGMOID: case P_SOFTPLUS: case P_RELU:
    case P_FLOOR: case P_CEIL: case P_ATAN2: case P_MIN: case P_MAX: case P_TO_FLOAT:
    case P_TO_INT: case P_TO_F32: case P_LENGTH: case P_IOTA:
    case P_REPLICATE: case P_ZEROS_LIKE: case P_SUM: case P_PROD: case P_MEAN:
    case P_MAXIMUM: case P_MINIMUM: case P_ARGMAX: case P_SUM_AXIS0: case P_DOT:
    case P_TRANSPOSE: case P_CONCAT: case P_REVERSE: case P_TAKE: case P_DROP:
    case P_ONE_HOT: case P_ZIP: case P_UNZIP: case P_SOFTMAX: case P_LOGSUMEXP: case P_DET:
    case P_INV: case P_SOLVE: case P_CHOLESKY: case P_KEY: case P_SPLIT: case P_PERMUTATION:
    case P_PRINT: case P_PRINTLN: case P_SHOW: case P_STR_CONCAT: case P_READ_CSV:
    case P_READ_NPY: case P_WRITE_NPY: case P_READ_IDX: case P_PROGRESS: case P_ERROR:
    case P_WRITE_TEXT:
        return core_prims[op].name;
    default:
        return NULL;
    }
}

/* A scalar literal of element type elem (for zeros / ones of int or f32). */
static void put_scalar(DlPrinter *P, Type *elem, int v)
{
    switch (type_resolve(elem)->kind) {
    case TY_INT: fprintf(P->out, "%d", v); break;
    case TY_F32: fprintf(P->out, "%d.0f32", v); break;
    case TY_BOOL: fputs(v ? "true" : "false", P->out); break;
    default: fprintf(P->out, "%d.0", v); break;
    }
}

/* An operand of an elementwise primitive whose surface built-in wants it
 * of the result's shape r: a scalar is broadcast as `fill (dims x : s) v`,
 * x an operand of that rank. */
static void put_broadcast(DlPrinter *P, CAtom *v, Type *r, CAtom **ops, int n)
{
    Type *vt = type_resolve(core_atom_type(v));
    r = type_resolve(r);
    CAtom *x = NULL;
    for (int i = 0; i < n && !x; i++) {
        Type *ot = type_resolve(core_atom_type(ops[i]));
        if (r->kind == TY_ARRAY && ot->kind == TY_ARRAY && ot->rank == r->rank)
            x = ops[i];
    }
    if (vt->kind == TY_ARRAY || r->kind != TY_ARRAY || !x) {
        put_atom(P, v);
        return;
    }
    fputs("(fill (dims ", P->out);
    put_atom(P, x);
    fputs(" : ", P->out);
    if (r->rank == 1)
        fputs("int", P->out);
    else
        for (int i = 0; i < r->rank; i++)
            fputs(i == 0 ? "(int" : i == r->rank - 1 ? ", int)" : ", int", P->out);
    fputs(") ", P->out);
    put_atom(P, v);
    fputc(')', P->out);
}

/* A variable in scope whose tangent type is t (a synthesised T(D) a..). */
static CVar *primal_in_scope(DlPrinter *P, Type *t)
{
    for (int i = P->scope.len - 1; i >= 0; i--) {
        CVar *v = P->scope.data[i];
        Type *vt = type_resolve(v->type);
        if (vt->kind == TY_NAMED && vt->decl->tangent == t->decl && core_type_equal(type_tangent(vt), t))
            return v;
    }
    return NULL;
}

/* Whether t mentions a synthesised tangent type, which DL cannot name. */
static bool has_tangent_decl(Type *t)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_TUPLE: case TY_FUNC: case TY_NAMED:
        if (t->kind == TY_NAMED && t->decl->primal)
            return true;
        for (int i = 0; i < t->nargs; i++)
            if (has_tangent_decl(t->args[i]))
                return true;
        return false;
    case TY_ARRAY:
        return has_tangent_decl(t->elem);
    default:
        return false;
    }
}

/* Argument i of n of a P_DEFUN printed by put_defun: the atom a[i], or
 * else the variable hofn_q<depth - 1> of type qt (its component i when
 * n > 1). */
static Type *defun_arg(DlPrinter *P, CAtom **a, Type *qt, int i, int n, int depth, bool put)
{
    if (a) {
        if (put)
            put_atom(P, a[i]);
        return core_atom_type(a[i]);
    }
    if (put)
        fprintf(P->out, n == 1 ? "hofn_q%d" : "hofn_q%d.%d", depth - 1, i);
    return n == 1 ? qt : type_resolve(qt)->args[i];
}

/* P_DEFUN (dcc.h, ad_defun_call) as the DL it computes: `f x [z]`,
 * `jvp (fn q => parent) p dp` or `(vjp (fn q => parent) p).1 ct`, where
 * parent is the parent P_DEFUN on q's components. */
static void put_defun(DlPrinter *P, int64_t id, CAtom *f, CAtom **a, Type *qt, int depth)
{
    FILE *out = P->out;
    Defun *d = ad_defun_get(id);
    if (!d)
        return;
    fputc('(', out);
    if (d->form == DERIV_NONE) {
        put_atom(P, f);
        for (int i = 0; i < d->nargs; i++) {
            fputc(' ', out);
            defun_arg(P, a, qt, i, d->nargs, depth, true);
        }
        fputc(')', out);
        return;
    }
    Type *pt = defun_arg(P, a, qt, 0, 2, depth, false);
    fprintf(out, "%s (fn (hofn_q%d : ", d->form == DERIV_JVP ? "jvp" : "(vjp", depth);
    put_type(P, pt);
    fputs(") => ", out);
    put_defun(P, d->parent, f, NULL, pt, depth + 1);
    fputs(") ", out);
    defun_arg(P, a, qt, 0, 2, depth, true);
    fputs(d->form == DERIV_VJP ? ").1 " : " ", out);
    defun_arg(P, a, qt, 1, 2, depth, true);
    fputc(')', out);
}

static void put_prim(DlPrinter *P, CExpr *e)
{
    FILE *out = P->out;
    Prim op = e->u.prim.op;
    CAtom **a = e->args;
    int n = e->nargs;
    long long imm = (long long)e->u.prim.imm;
    Type *t = type_resolve(e->type);
    if (binop_spelling[op] && n == 2) {
        if (t->kind != TY_ARRAY || op == P_MATMUL || !(op >= P_EQ && op <= P_GE)) {
            put_atom(P, a[0]);
            fprintf(out, " %s ", binop_spelling[op]);
            put_atom(P, a[1]);
            return;
        }
        /* elementwise comparisons (an array of bools): lt_each a b .. */
        fprintf(out, "%s_each ", core_prims[op].name);
        put_atom(P, a[0]);
        fputc(' ', out);
        put_atom(P, a[1]);
        return;
    }
    const char *bn = builtin_spelling(op);
    if (bn) {
        fputs(bn, out);
        put_atoms(P, a, n);
        return;
    }
    switch (op) {
    case P_DEFUN: /* the application or derivative form it stands for */
        put_defun(P, imm, a[0], a + 1, NULL, 0);
        return;
    case P_NEG:
        fputs("-", out);
        put_atom(P, a[0]);
        return;
    case P_NOT:
        fputs("!", out);
        put_atom(P, a[0]);
        return;
    case P_TUPLE:
        fputc('(', out);
        for (int i = 0; i < n; i++) {
            if (i)
                fputs(", ", out);
            put_atom(P, a[i]);
        }
        fputc(')', out);
        return;
    case P_PROJ:
        put_atom(P, a[0]);
        fprintf(out, ".%lld", imm);
        return;
    case P_RECORD:
        if (t->decl->primal) {
            /* T(D) has no name in DL and its literal would read as a D:
             * update the zero of T(D) taken from a D in scope */
            CVar *x = primal_in_scope(P, t);
            if (x) {
                fprintf(out, "{ (zeros_like %s) with", var_name(P, x));
                for (int i = 0; i < n; i++) {
                    fprintf(out, "%s %s = ", i ? "," : "", t->decl->fields[i]);
                    put_atom(P, a[i]);
                }
                fputs(" }", out);
                return;
            }
        }
        fputs("{", out);
        for (int i = 0; i < n; i++) {
            fprintf(out, "%s %s = ", i ? "," : "", member_name(t->decl, i));
            put_atom(P, a[i]);
        }
        fputs(" }", out);
        return;
    case P_FIELD: {
        Type *rt = type_resolve(core_atom_type(a[0]));
        put_atom(P, a[0]);
        fprintf(out, ".%s", rt->kind == TY_NAMED ? member_name(rt->decl, (int)imm) : "?");
        return;
    }
    case P_CON:
        fputs(con_of(t, (int)imm), out);
        put_atoms(P, a, n);
        return;
    case P_TAG: { /* match v with | C0 _ => 0 | C1 => 1 ... */
        Type *vt = type_resolve(core_atom_type(a[0]));
        fputs("(match ", out);
        put_atom(P, a[0]);
        fputs(" with", out);
        for (int i = 0; i < vt->decl->ncons; i++)
            fprintf(out, " | %s%s => %d", member_name(vt->decl, i),
                    core_type_con_arg(vt, i) ? " _" : "", i);
        fputc(')', out);
        return;
    }
    case P_PAYLOAD: {
        Type *vt = type_resolve(core_atom_type(a[0]));
        fputs("(match ", out);
        put_atom(P, a[0]);
        fprintf(out, " with | %s p => p", member_name(vt->decl, (int)imm));
        if (vt->decl->ncons > 1)
            fputs(" | _ => error \"payload of another constructor\"", out);
        fputc(')', out);
        return;
    }
    case P_ARRAY:
        fputc('[', out);
        for (int i = 0; i < n; i++) {
            if (i)
                fputs(", ", out);
            put_atom(P, a[i]);
        }
        fputc(']', out);
        return;
    case P_INDEX:
        put_atom(P, a[0]);
        fputc('[', out);
        for (int i = 1; i < n; i++) {
            if (i > 1)
                fputs(", ", out);
            put_atom(P, a[i]);
        }
        fputc(']', out);
        return;
    case P_SLICE:
        put_atom(P, a[0]);
        fputc('[', out);
        for (int j = 0; 1 + 2 * j + 1 < n; j++) {
            if (j)
                fputs(", ", out);
            put_atom(P, a[1 + 2 * j]);
            if (imm & (1LL << j)) {
                fputc(':', out);
                if (!(imm & (1LL << (16 + j))))
                    put_atom(P, a[2 + 2 * j]);
            }
        }
        fputc(']', out);
        return;
    case P_UPDATE: /* update_at a (i, j) v */
        fputs("update_at ", out);
        put_atom(P, a[0]);
        fputc(' ', out);
        put_shape(P, a + 2, n - 2);
        fputc(' ', out);
        put_atom(P, a[1]);
        return;
    case P_FILL: /* fill (d1, d2) v */
        fputs("fill ", out);
        put_shape(P, a + 1, n - 1);
        fputc(' ', out);
        put_atom(P, a[0]);
        return;
    case P_ZEROS:
    case P_ONES: {
        Type *el = t->kind == TY_ARRAY ? type_resolve(t->elem) : t;
        if (t->kind == TY_ARRAY && el->kind == TY_FLOAT) {
            fputs(op == P_ZEROS ? "zeros " : "ones ", out);
            put_shape(P, a, n);
        } else if (t->kind == TY_ARRAY) {
            fputs("fill ", out);
            put_shape(P, a, n);
            fputc(' ', out);
            put_scalar(P, el, op == P_ONES);
        } else {
            put_scalar(P, el, op == P_ONES);
        }
        return;
    }
    case P_RESHAPE:
        fputs("reshape ", out);
        put_shape(P, a + 1, n - 1);
        fputc(' ', out);
        put_atom(P, a[0]);
        return;
    case P_UNIFORM:
    case P_NORMAL:
        if (n == 1 && op == P_NORMAL) { /* a scalar sample */
            fputs("normal_like ", out);
            put_atom(P, a[0]);
            fputc(' ', out);
            put_scalar(P, t, 0);
            return;
        }
        fputs(op == P_UNIFORM ? "uniform " : "normal ", out);
        put_atom(P, a[0]);
        fputc(' ', out);
        put_shape(P, a + 1, n - 1);
        return;
    case P_SELECT: /* select c a b, each operand of the result's shape */
        if (t->kind == TY_BOOL) { /* select takes numbers: on bools, if */
            fputs("if ", out);
            put_atom(P, a[0]);
            fputs(" then ", out);
            put_atom(P, a[1]);
            fputs(" else ", out);
            put_atom(P, a[2]);
            return;
        }
        fputs("select", out);
        for (int i = 0; i < 3; i++) {
            fputc(' ', out);
            put_broadcast(P, a[i], t, a, 3);
        }
        return;
    case P_SHAPE: /* []int, or a tuple of ints: dims */
        fputs(t->kind == TY_ARRAY ? "shape " : "dims ", out);
        put_atom(P, a[0]);
        return;
    case P_ARGS:
    case P_CLOCK:
        fprintf(out, "%s ()", core_prims[op].name);
        return;
    default:
        break;
    }
    fprintf(out, "%s", core_prims[op].name);
    put_atoms(P, a, n);
}

static const char *const map_names[] = {NULL, "map", "map2", "map3"};

static void put_soac(DlPrinter *P, CExpr *e, int indent)
{
    FILE *out = P->out;
    switch (e->u.soac.kind) {
    case SOAC_MAP:
        if (e->nargs <= 3) {
            fprintf(out, "%s ", map_names[e->nargs]);
            put_lambda(P, e->u.soac.fn, indent);
            put_atoms(P, e->args, e->nargs);
        } else {
            /* more arrays than map3 takes: zip them into nested pairs and
             * take the pairs apart in the lambda */
            fputs("map (fn (", out);
            for (int i = 0; i < e->nargs - 1; i++)
                fputs("(", out);
            CLambda *l = e->u.soac.fn;
            for (int i = 0; i < e->nargs; i++) {
                if (i)
                    fputs(", ", out);
                if (is_unit(l->params[i]->type)) {
                    bind_name(P, l->params[i], "_");
                    fputs("()", out);
                } else {
                    fprintf(out, "(%s : ", bind_name(P, l->params[i], NULL));
                    put_type(P, l->params[i]->type);
                    fputc(')', out);
                }
                if (i)
                    fputc(')', out);
            }
            fputs(") => ", out);
            put_nested(P, l->body, indent + 2);
            fputs(")", out);
            for (int i = 0; i < e->nargs - 1; i++)
                fputs(" (zip", out);
            for (int i = 0; i < e->nargs; i++) {
                fputc(' ', out);
                put_atom(P, e->args[i]);
                if (i)
                    fputc(')', out);
            }
        }
        return;
    case SOAC_REDUCE: fputs("reduce ", out); break;
    case SOAC_FOLD: fputs("fold ", out); break;
    case SOAC_SCAN: fputs("scan ", out); break;
    case SOAC_FILTER: fputs("filter ", out); break;
    }
    put_lambda(P, e->u.soac.fn, indent);
    put_atoms(P, e->args, e->nargs);
}

static const char *const deriv_names[] = {
    "none", "jvp", "vjp", "grad", "value_and_grad", "jacfwd", "jacrev",
    "hessian", "hvp", "jet", "fwdgrad", "fwdgrad_dir", "stop_gradient",
};

static void put_expr_in(DlPrinter *P, CExpr *e, int indent);

/* The right-hand side of a binding; what it binds is out of scope after. */
static void put_expr(DlPrinter *P, CExpr *e, int indent)
{
    int mark = P->scope.len;
    put_expr_in(P, e, indent);
    P->scope.len = mark;
}

static void put_expr_in(DlPrinter *P, CExpr *e, int indent)
{
    FILE *out = P->out;
    switch (e->kind) {
    case CE_ATOM:
        put_atom(P, e->args[0]);
        break;
    case CE_PRIM:
        put_prim(P, e);
        break;
    case CE_CALL:
        fputs(fun_name(P, e->u.fun), out);
        put_atoms(P, e->args, e->nargs);
        break;
    case CE_APPLY:
        put_atom(P, e->args[0]);
        put_atoms(P, e->args + 1, e->nargs - 1);
        break;
    case CE_LAMBDA: {
        CLambda *l = e->u.lambda;
        fputs("fn", out);
        bool pullback = put_lambda_params(P, l);
        fputs(" => ", out);
        P->in_pullback += pullback;
        put_nested(P, l->body, indent);
        P->in_pullback -= pullback;
        break;
    }
    case CE_IF:
        fputs("if ", out);
        put_atom(P, e->args[0]);
        fputs(" then ", out);
        put_nested(P, e->u.if_.then_, indent);
        fputs(" else ", out);
        put_nested(P, e->u.if_.else_, indent);
        break;
    case CE_CASE: {
        Type *vt = core_atom_type(e->args[0]);
        fputs("(match ", out);
        put_atom(P, e->args[0]);
        fputs(" with", out);
        for (int i = 0; i < e->u.case_.nalts; i++) {
            CAlt *alt = &e->u.case_.alts[i];
            fputc('\n', out);
            indent_to(out, indent + 2);
            fprintf(out, "| %s", con_of(vt, alt->con));
            if (alt->con >= 0 && core_type_con_arg(vt, alt->con)) {
                if (alt->payload && !is_unit(alt->payload->type))
                    fprintf(out, " %s", bind_name(P, alt->payload, NULL));
                else {
                    if (alt->payload)
                        bind_name(P, alt->payload, "_");
                    fputs(" _", out);
                }
            }
            fputs(" => ", out);
            put_nested(P, alt->body, indent + 2);
        }
        fputc(')', out);
        break;
    }
    case CE_LOOP:
        fputs("loop ", out);
        put_param(P, e->u.loop.state, NULL);
        fputs(" = ", out);
        put_atom(P, e->args[0]);
        if (e->u.loop.kind == LOOP_FOR) {
            fprintf(out, " for %s < ", bind_name(P, e->u.loop.ivar, NULL));
            put_atom(P, e->args[1]);
        } else {
            fputs(" while ", out);
            put_nested(P, e->u.loop.cond, indent + 2);
        }
        fputs(" do ", out);
        put_nested(P, e->u.loop.body, indent);
        break;
    case CE_SOAC:
        put_soac(P, e, indent);
        break;
    case CE_DERIV: /* none are left after the AD stages */
        fputs(deriv_names[e->u.deriv.kind], out);
        if (e->u.deriv.fn) {
            fputc(' ', out);
            put_lambda(P, e->u.deriv.fn, indent);
        }
        put_atoms(P, e->args, e->nargs);
        break;
    }
}

/* Whether `let x = e` needs `x : t` for dcc to infer x's type as t: not
 * for scalars that the right-hand side determines. */
static bool needs_annotation(CExpr *e, Type *t)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_INT: case TY_FLOAT: case TY_F32: case TY_BOOL: case TY_STRING:
        return e->kind == CE_PRIM && (e->u.prim.op == P_ERROR || e->u.prim.op == P_SELECT || e->u.prim.op == P_READ_NPY ||
                                      e->u.prim.op == P_READ_IDX);
    default:
        return true;
    }
}

static void put_block(DlPrinter *P, CBlock *b, int indent)
{
    FILE *out = P->out;
    for (int i = 0; i < b->nbinds; i++) {
        CBind *bd = &b->binds[i];
        indent_to(out, indent);
        fputs("let ", out);
        /* the right-hand side first sees the names bound before it */
        bool unit = is_unit(bd->var->type);
        const char *n = unit ? "_" : NULL;
        if (!unit) {
            const char *hint = var_hint(P, bd->var);
            n = fresh_name(P, hint);
        }
        fputs(n, out);
        if (!unit && needs_annotation(bd->e, bd->var->type) && !has_tangent_decl(bd->var->type)) {
            fputs(" : ", out);
            put_type(P, bd->var->type);
        }
        fputs(" = ", out);
        put_expr(P, bd->e, indent);
        fputs(" in\n", out);
        core_map_put(&P->var_names, bd->var, (void *)n);
        vec_push(&P->scope, bd->var);
    }
    indent_to(out, indent);
    if (b->result)
        put_atom(P, b->result);
    else
        fputs("()", out);
    fputc('\n', out);
}

/* ---------------------------------------------------------------- program */

static void collect_block(DlPrinter *P, CBlock *b);

static void collect_fun(DlPrinter *P, CFun *f)
{
    if (!f || core_map_get(&P->fun_seen, f))
        return;
    core_map_put(&P->fun_seen, f, (void *)1);
    vec_push(&P->funs, f);
    for (int i = 0; i < f->nparams; i++)
        collect_type(P, f->params[i]->type);
    collect_type(P, f->ret);
    if (f->body)
        collect_block(P, f->body);
}

static void collect_atom(DlPrinter *P, CAtom *a)
{
    if (a->kind == CA_FUN)
        collect_fun(P, a->u.fun);
    else if (a->kind == CA_VAR)
        core_map_put(&P->src_names, intern(a->u.var->name ? a->u.var->name : "t"), (void *)1);
}

static void collect_lambda(DlPrinter *P, CLambda *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->nparams; i++)
        collect_type(P, l->params[i]->type);
    collect_block(P, l->body);
}

static void collect_block(DlPrinter *P, CBlock *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->nbinds; i++) {
        CExpr *e = b->binds[i].e;
        collect_type(P, b->binds[i].var->type);
        for (int k = 0; k < e->nargs; k++)
            collect_atom(P, e->args[k]);
        switch (e->kind) {
        case CE_CALL: collect_fun(P, e->u.fun); break;
        case CE_LAMBDA: collect_lambda(P, e->u.lambda); break;
        case CE_IF:
            collect_block(P, e->u.if_.then_);
            collect_block(P, e->u.if_.else_);
            break;
        case CE_CASE:
            for (int k = 0; k < e->u.case_.nalts; k++)
                collect_block(P, e->u.case_.alts[k].body);
            break;
        case CE_LOOP:
            collect_type(P, e->u.loop.state->type);
            collect_block(P, e->u.loop.cond);
            collect_block(P, e->u.loop.body);
            break;
        case CE_SOAC: collect_lambda(P, e->u.soac.fn); break;
        case CE_DERIV: collect_lambda(P, e->u.deriv.fn); break;
        default: break;
        }
    }
    if (b->result)
        collect_atom(P, b->result);
}

static void put_fun(DlPrinter *P, CFun *f)
{
    FILE *out = P->out;
    core_map_free(&P->taken);
    P->taken = (CoreMap){0};
    P->scope.len = 0;
    if (f->is_main)
        fputs("-- the entry point\n", out);
    else if (f->rule_of)
        fprintf(out, "-- the %s rule of %s\n", f == f->rule_of->jvp_rule ? "jvp" : "vjp",
                fun_name(P, f->rule_of));
    else if (f->src_name && strcmp(f->src_name, fun_name(P, f)) != 0)
        fprintf(out, "-- %s\n", f->src_name);
    fprintf(out, "%sdef %s", f->is_export ? "export " : "", fun_name(P, f));
    for (int i = 0; i < f->nparams; i++) {
        fputc(' ', out);
        put_param(P, f->params[i], NULL);
    }
    if (f->is_main && f->nparams == 0)
        fputs(" ()", out);
    fputs(" : ", out);
    put_type(P, f->ret);
    fputs(" =\n", out);
    if (f->body)
        put_block(P, f->body, 2);
    else
        fputs("  error \"no body\"\n", out);
}

int core_dl_next_var_id(void)
{
    return core_var(NULL, type_unit(), loc_none)->id;
}

void core_dl_print_program(FILE *out, CProgram *p, int first_ad_var)
{
    DlPrinter P = {.out = out, .first_ad_var = first_ad_var > 0 ? first_ad_var : 0x7fffffff};
    for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
        core_map_put(&P.reserved, intern(keywords[i]), (void *)1);
    for (int i = 1; i < B__COUNT; i++)
        core_map_put(&P.reserved, intern(builtin_info((Builtin)i)->name), (void *)1);
    if (p->main)
        collect_fun(&P, p->main);
    for (int i = 0; i < p->nfuns; i++)
        if (p->funs[i]->is_export)
            collect_fun(&P, p->funs[i]);
    /* def names: their own, or the source name of an export, renamed away
     * from keywords and built-ins */
    for (int i = 0; i < P.funs.len; i++) {
        CFun *f = P.funs.data[i];
        const char *base = f->is_main ? "main" : f->is_export && f->src_name ? f->src_name : f->name;
        const char *n = clean_name(base);
        for (int k = 2; core_map_get(&P.reserved, n); k++)
            n = intern(arena_printf(dcc_arena, "%s_%d", base, k));
        core_map_put(&P.reserved, n, (void *)1);
        core_map_put(&P.fun_names, f, (void *)n);
    }
    /* type names: synthesised tangents as D_tangent */
    CoreMap type_taken = {0};
    for (int i = 0; i < P.decls.len; i++) {
        TypeDecl *d = P.decls.data[i];
        if (!d->primal)
            core_map_put(&type_taken, intern(d->name), (void *)1);
    }
    for (int i = 0; i < P.decls.len; i++) {
        TypeDecl *d = P.decls.data[i];
        if (!d->primal)
            continue;
        const char *base = arena_printf(dcc_arena, "%s_tangent", d->primal->name);
        const char *n = intern(base);
        for (int k = 2; core_map_get(&type_taken, n); k++)
            n = intern(arena_printf(dcc_arena, "%s_%d", base, k));
        core_map_put(&type_taken, n, (void *)1);
        core_map_put(&P.decl_names, d, (void *)n);
    }
    core_map_free(&type_taken);

    fprintf(out, "-- %s after the AD stages (dcc --emit=ad)\n", p->module ? p->module : "program");
    for (int i = 0; i < P.decls.len; i++)
        print_decl(&P, P.decls.data[i]);
    for (int i = 0; i < P.funs.len; i++) {
        fputc('\n', out);
        put_fun(&P, P.funs.data[i]);
    }
    vec_free(&P.funs);
    vec_free(&P.decls);
    vec_free(&P.scope);
    core_map_free(&P.var_names);
    core_map_free(&P.taken);
    core_map_free(&P.reserved);
    core_map_free(&P.fun_names);
    core_map_free(&P.src_names);
    core_map_free(&P.fun_seen);
    core_map_free(&P.decl_seen);
    core_map_free(&P.decl_names);
}
