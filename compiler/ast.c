/* ast.c — constructors of the syntax tree, the --emit=ast dump, and the
 * printer back to DL source.
 *
 * The printer is the inverse of the parser: parse(print(e)) is e again
 * (up to locations). It inserts parentheses by the precedence levels of
 * parser.y; the open constructs (let, fn, if, match, loop) are bracketed
 * wherever they would otherwise extend over what follows them. */
#include "dcc.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

Expr *expr_new(ExprKind kind, Loc loc)
{
    Expr *e = NEW(Expr);
    e->kind = kind;
    e->loc = loc;
    return e;
}

Pat *pat_new(PatKind kind, Loc loc)
{
    Pat *p = NEW(Pat);
    p->kind = kind;
    p->loc = loc;
    return p;
}

TypeExpr *texpr_new(TypeExprKind kind, Loc loc)
{
    TypeExpr *t = NEW(TypeExpr);
    t->kind = kind;
    t->loc = loc;
    return t;
}

Decl *decl_new(DeclKind kind, Loc loc)
{
    Decl *d = NEW(Decl);
    d->kind = kind;
    d->loc = loc;
    d->name_loc = loc;
    return d;
}

const char *op_spelling(OpKind op)
{
    static const char *const names[OP__COUNT] = {
        [OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/", [OP_MOD] = "%",
        [OP_MATMUL] = "@", [OP_POW] = "^", [OP_EQ] = "==", [OP_NE] = "!=", [OP_LT] = "<",
        [OP_LE] = "<=", [OP_GT] = ">", [OP_GE] = ">=", [OP_AND] = "&&", [OP_OR] = "||",
        [OP_PIPE] = "|>", [OP_COMPOSE] = ">>>", [OP_PAR] = "***", [OP_NEG] = "-",
        [OP_NOT] = "!",
    };
    return (unsigned)op < OP__COUNT && names[op] ? names[op] : "?";
}

/* ======================================================================
 * Printing as DL source
 * ====================================================================== */

/* Precedence levels of parser.y, loosest first. */
enum {
    PREC_OPEN,    /* let fn if match loop */
    PREC_PIPE,    /* |> */
    PREC_COMPOSE, /* >>> */
    PREC_PAR,     /* *** */
    PREC_OR,
    PREC_AND,
    PREC_CMP,
    PREC_ADD,
    PREC_MUL,
    PREC_UNARY,
    PREC_POW,
    PREC_APP,
    PREC_ATOM,
};

static int binop_prec(OpKind op)
{
    switch (op) {
    case OP_PIPE: return PREC_PIPE;
    case OP_COMPOSE: return PREC_COMPOSE;
    case OP_PAR: return PREC_PAR;
    case OP_OR: return PREC_OR;
    case OP_AND: return PREC_AND;
    case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE: return PREC_CMP;
    case OP_ADD: case OP_SUB: return PREC_ADD;
    case OP_MUL: case OP_DIV: case OP_MOD: case OP_MATMUL: return PREC_MUL;
    case OP_POW: return PREC_POW;
    default: return PREC_UNARY;
    }
}

static bool is_negative_literal(const Expr *e)
{
    return (e->kind == EX_INT && e->u.ival < 0) ||
           (e->kind == EX_FLOAT && (e->u.fl.val < 0 || (e->u.fl.val == 0 && signbit(e->u.fl.val))));
}

static int expr_prec(const Expr *e)
{
    switch (e->kind) {
    case EX_LET: case EX_LETREC: case EX_LAMBDA: case EX_IF: case EX_MATCH: case EX_LOOP:
        return PREC_OPEN;
    case EX_BINOP:
        return binop_prec(e->u.op.op);
    case EX_UNOP:
        return PREC_UNARY;
    case EX_APP:
        return PREC_APP;
    case EX_INT: case EX_FLOAT:
        return is_negative_literal(e) ? PREC_UNARY : PREC_ATOM;
    default:
        return PREC_ATOM;
    }
}

/* Whether e, printed without parentheses, ends in a match whose cases
 * would take a following '| p => ...'. */
static bool ends_in_match(const Expr *e)
{
    switch (e->kind) {
    case EX_MATCH: return true;
    case EX_LET: return ends_in_match(e->u.let.body);
    case EX_LETREC: return ends_in_match(e->u.letrec.body);
    case EX_LAMBDA: return ends_in_match(e->u.lam.body);
    case EX_IF: return ends_in_match(e->u.if_.else_);
    case EX_LOOP: return ends_in_match(e->u.loop.body);
    default: return false;
    }
}

static void print_expr(StrBuf *b, const Expr *e, int prec);
static void print_pat(StrBuf *b, const Pat *p, bool atomic);
static void print_texpr(StrBuf *b, const TypeExpr *t, int prec);

static void print_name(StrBuf *b, const char *s) { sb_puts(b, s ? s : "<null>"); }

/* The shortest decimal form that reads back as the same double, always
 * with a '.' or an exponent so that it lexes as a float. */
static void print_float(StrBuf *b, double v, bool f32)
{
    if (isnan(v)) {
        sb_puts(b, f32 ? "(0.0f32 / 0.0f32)" : "(0.0 / 0.0)");
        return;
    }
    if (isinf(v)) {
        sb_puts(b, v > 0 ? "" : "-");
        sb_puts(b, f32 ? "(1.0f32 / 0.0f32)" : "(1.0 / 0.0)");
        return;
    }
    char buf[64];
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    sb_puts(b, buf);
    if (!strpbrk(buf, ".e"))
        sb_puts(b, ".0"); /* 1e+20 is a float already */
    if (f32)
        sb_puts(b, "f32");
}

static void print_string(StrBuf *b, const char *s)
{
    sb_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\r': sb_puts(b, "\\r"); break;
        default:
            if (*p < 32 || *p == 127)
                sb_printf(b, "\\x%02x", *p);
            else
                sb_putc(b, (char)*p);
        }
    }
    sb_putc(b, '"');
}

static void print_params(StrBuf *b, Pat **params, int n)
{
    for (int i = 0; i < n; i++) {
        sb_putc(b, ' ');
        print_pat(b, params[i], true);
    }
}

static void print_ret(StrBuf *b, const TypeExpr *ret)
{
    if (ret) {
        sb_puts(b, " : ");
        print_texpr(b, ret, 0);
    }
}

static void print_index_arg(StrBuf *b, const IndexArg *a)
{
    if (a->lo)
        print_expr(b, a->lo, PREC_PIPE);
    if (a->is_slice) {
        sb_putc(b, ':');
        if (a->hi)
            print_expr(b, a->hi, PREC_PIPE);
    }
}

static void print_expr_inner(StrBuf *b, const Expr *e)
{
    switch (e->kind) {
    case EX_INT:
        if (e->u.ival == INT64_MIN)
            sb_puts(b, "(-9223372036854775807 - 1)");
        else
            sb_printf(b, "%" PRId64, e->u.ival);
        break;
    case EX_FLOAT:
        print_float(b, e->u.fl.val, e->u.fl.is_f32);
        break;
    case EX_BOOL:
        sb_puts(b, e->u.ival ? "true" : "false");
        break;
    case EX_UNIT:
        sb_puts(b, "()");
        break;
    case EX_STRING:
        print_string(b, e->u.sval);
        break;
    case EX_VAR:
        print_name(b, e->u.var.name);
        break;
    case EX_CON:
        print_name(b, e->u.con.name);
        break;
    case EX_OPFN:
        sb_printf(b, "(%s)", op_spelling(e->u.opfn));
        break;
    case EX_TUPLE:
        sb_putc(b, '(');
        for (int i = 0; i < e->u.list.n; i++) {
            if (i)
                sb_puts(b, ", ");
            print_expr(b, e->u.list.items[i], PREC_OPEN);
        }
        if (e->u.list.n < 2)
            sb_puts(b, e->u.list.n ? ", ()" : ")"); /* not produced by the parser */
        else
            sb_putc(b, ')');
        break;
    case EX_ARRAY:
        sb_putc(b, '[');
        for (int i = 0; i < e->u.list.n; i++) {
            if (i)
                sb_puts(b, ", ");
            print_expr(b, e->u.list.items[i], PREC_OPEN);
        }
        sb_putc(b, ']');
        break;
    case EX_RECORD:
    case EX_UPDATE:
        sb_puts(b, "{ ");
        if (e->kind == EX_UPDATE) {
            print_expr(b, e->u.rec.base, PREC_ATOM);
            sb_puts(b, " with ");
        }
        for (int i = 0; i < e->u.rec.n; i++) {
            if (i)
                sb_puts(b, ", ");
            sb_printf(b, "%s = ", e->u.rec.names[i]);
            print_expr(b, e->u.rec.values[i], PREC_OPEN);
        }
        sb_puts(b, " }");
        break;
    case EX_FIELD:
        print_expr(b, e->u.field.e, PREC_ATOM);
        sb_printf(b, ".%s", e->u.field.name);
        break;
    case EX_PROJ: {
        const Expr *t = e->u.field.e;
        /* 1.0 would lex as a float */
        bool paren = t->kind == EX_INT || t->kind == EX_FLOAT;
        if (paren)
            sb_putc(b, '(');
        print_expr(b, t, paren ? PREC_OPEN : PREC_ATOM);
        if (paren)
            sb_putc(b, ')');
        sb_printf(b, ".%d", e->u.field.index);
        break;
    }
    case EX_INDEX:
        print_expr(b, e->u.index.e, PREC_ATOM);
        sb_putc(b, '[');
        for (int i = 0; i < e->u.index.n; i++) {
            if (i)
                sb_puts(b, ", ");
            print_index_arg(b, &e->u.index.args[i]);
        }
        sb_putc(b, ']');
        break;
    case EX_APP:
        print_expr(b, e->u.app.fn, PREC_APP);
        sb_putc(b, ' ');
        print_expr(b, e->u.app.arg, PREC_ATOM);
        break;
    case EX_BINOP: {
        int p = binop_prec(e->u.op.op);
        int lp = p, rp = p + 1;
        if (e->u.op.op == OP_POW)
            lp = p + 1, rp = p;
        else if (p == PREC_CMP)
            lp = p + 1;
        print_expr(b, e->u.op.l, lp);
        sb_printf(b, " %s ", op_spelling(e->u.op.op));
        print_expr(b, e->u.op.r, rp);
        break;
    }
    case EX_UNOP: {
        const Expr *x = e->u.op.l;
        sb_puts(b, op_spelling(e->u.op.op));
        /* "- -x" and "- -1": "--" would start a comment */
        if (e->u.op.op == OP_NEG &&
            ((x->kind == EX_UNOP && x->u.op.op == OP_NEG) || is_negative_literal(x)))
            sb_putc(b, ' ');
        print_expr(b, x, PREC_UNARY);
        break;
    }
    case EX_LAMBDA:
        sb_puts(b, "fn");
        print_params(b, e->u.lam.params, e->u.lam.nparams);
        print_ret(b, e->u.lam.ret);
        sb_puts(b, " => ");
        print_expr(b, e->u.lam.body, PREC_OPEN);
        break;
    case EX_LET: {
        const Expr *v = e->u.let.value;
        sb_puts(b, "let ");
        if (e->u.let.pat->kind == PAT_VAR && v->kind == EX_LAMBDA && v->u.lam.nparams > 0) {
            /* let f x y = e in b */
            print_name(b, e->u.let.pat->name);
            print_params(b, v->u.lam.params, v->u.lam.nparams);
            print_ret(b, v->u.lam.ret);
            sb_puts(b, " = ");
            print_expr(b, v->u.lam.body, PREC_OPEN);
        } else {
            print_pat(b, e->u.let.pat, false);
            sb_puts(b, " = ");
            print_expr(b, v, PREC_OPEN);
        }
        sb_puts(b, " in ");
        print_expr(b, e->u.let.body, PREC_OPEN);
        break;
    }
    case EX_LETREC:
        sb_printf(b, "let rec %s", e->u.letrec.name);
        print_params(b, e->u.letrec.params, e->u.letrec.nparams);
        print_ret(b, e->u.letrec.ret);
        sb_puts(b, " = ");
        print_expr(b, e->u.letrec.value, PREC_OPEN);
        sb_puts(b, " in ");
        print_expr(b, e->u.letrec.body, PREC_OPEN);
        break;
    case EX_IF:
        sb_puts(b, "if ");
        print_expr(b, e->u.if_.cond, PREC_OPEN);
        sb_puts(b, " then ");
        print_expr(b, e->u.if_.then_, PREC_OPEN);
        sb_puts(b, " else ");
        print_expr(b, e->u.if_.else_, PREC_OPEN);
        break;
    case EX_MATCH:
        sb_puts(b, "match ");
        print_expr(b, e->u.match.e, PREC_OPEN);
        sb_puts(b, " with");
        for (int i = 0; i < e->u.match.n; i++) {
            const MatchCase *c = &e->u.match.cases[i];
            sb_puts(b, " | ");
            print_pat(b, c->pat, false);
            sb_puts(b, " => ");
            bool paren = i + 1 < e->u.match.n && ends_in_match(c->body);
            if (paren)
                sb_putc(b, '(');
            print_expr(b, c->body, PREC_OPEN);
            if (paren)
                sb_putc(b, ')');
        }
        break;
    case EX_LOOP:
        sb_puts(b, "loop ");
        print_pat(b, e->u.loop.pat, false);
        sb_puts(b, " = ");
        print_expr(b, e->u.loop.init, PREC_OPEN);
        if (e->u.loop.kind == LOOP_FOR) {
            sb_printf(b, " for %s < ", e->u.loop.ivar);
            print_expr(b, e->u.loop.bound, PREC_OPEN);
        } else {
            sb_puts(b, " while ");
            print_expr(b, e->u.loop.cond, PREC_OPEN);
        }
        sb_puts(b, " do ");
        print_expr(b, e->u.loop.body, PREC_OPEN);
        break;
    case EX_ANNOT:
        sb_putc(b, '(');
        print_expr(b, e->u.annot.e, PREC_OPEN);
        sb_puts(b, " : ");
        print_texpr(b, e->u.annot.t, 0);
        sb_putc(b, ')');
        break;
    case EX_ERROR:
        sb_puts(b, "<error>");
        break;
    }
}

static void print_expr(StrBuf *b, const Expr *e, int prec)
{
    if (!e) {
        sb_puts(b, "<null>");
        return;
    }
    bool paren = expr_prec(e) < prec;
    if (paren)
        sb_putc(b, '(');
    print_expr_inner(b, e);
    if (paren)
        sb_putc(b, ')');
}

void ast_print_expr(StrBuf *b, const Expr *e) { print_expr(b, e, PREC_OPEN); }

/* atomic: as a def/fn parameter or a constructor argument */
static void print_pat(StrBuf *b, const Pat *p, bool atomic)
{
    if (!p) {
        sb_puts(b, "<null>");
        return;
    }
    switch (p->kind) {
    case PAT_WILD:
        sb_putc(b, '_');
        break;
    case PAT_VAR:
        print_name(b, p->name);
        break;
    case PAT_INT:
        if (p->ival == INT64_MIN)
            sb_puts(b, "-9223372036854775808"); /* not expressible; reported on reading */
        else
            sb_printf(b, "%" PRId64, p->ival);
        break;
    case PAT_FLOAT:
        print_float(b, p->fval, p->is_f32);
        break;
    case PAT_BOOL:
        sb_puts(b, p->ival ? "true" : "false");
        break;
    case PAT_STRING:
        print_string(b, p->sval);
        break;
    case PAT_UNIT:
        sb_puts(b, "()");
        break;
    case PAT_TUPLE:
        sb_putc(b, '(');
        for (int i = 0; i < p->nitems; i++) {
            const Pat *q = p->items[i];
            if (i)
                sb_puts(b, ", ");
            if (q->kind == PAT_ANNOT) { /* (w : []float, b : float) */
                print_pat(b, q->arg, false);
                sb_puts(b, " : ");
                print_texpr(b, q->annot, 0);
            } else {
                print_pat(b, q, false);
            }
        }
        sb_putc(b, ')');
        break;
    case PAT_RECORD:
        sb_puts(b, "{ ");
        for (int i = 0; i < p->nitems; i++) {
            if (i)
                sb_puts(b, ", ");
            const Pat *q = p->items[i];
            if (q->kind == PAT_VAR && q->name == p->fields[i]) {
                print_name(b, p->fields[i]);
            } else {
                sb_printf(b, "%s = ", p->fields[i]);
                print_pat(b, q, false);
            }
        }
        sb_puts(b, p->open ? (p->nitems ? ", .. }" : ".. }") : " }");
        break;
    case PAT_CON:
        if (p->arg) {
            if (atomic)
                sb_putc(b, '(');
            sb_printf(b, "%s ", p->name);
            print_pat(b, p->arg, true);
            if (atomic)
                sb_putc(b, ')');
        } else {
            print_name(b, p->name);
        }
        break;
    case PAT_ANNOT:
        sb_putc(b, '(');
        print_pat(b, p->arg, false);
        sb_puts(b, " : ");
        print_texpr(b, p->annot, 0);
        sb_putc(b, ')');
        break;
    }
}

void ast_print_pat(StrBuf *b, const Pat *p) { print_pat(b, p, false); }

/* Type levels: 0 a -> b, 1 a * b, 2 []a, 3 application, 4 atom. */
static int texpr_prec(const TypeExpr *t)
{
    switch (t->kind) {
    case TE_FUNC: return 0;
    case TE_TUPLE: return 1;
    case TE_ARRAY: return 2;
    case TE_NAME: return t->nargs ? 3 : 4;
    default: return 4;
    }
}

static void print_texpr(StrBuf *b, const TypeExpr *t, int prec)
{
    if (!t) {
        sb_puts(b, "<null>");
        return;
    }
    bool paren = texpr_prec(t) < prec;
    if (paren)
        sb_putc(b, '(');
    switch (t->kind) {
    case TE_NAME:
        if (t->nargs == 1) {
            print_texpr(b, t->args[0], 3);
            sb_putc(b, ' ');
        } else if (t->nargs > 1) {
            sb_putc(b, '(');
            for (int i = 0; i < t->nargs; i++) {
                if (i)
                    sb_puts(b, ", ");
                print_texpr(b, t->args[i], 0);
            }
            sb_puts(b, ") ");
        }
        print_name(b, t->name);
        break;
    case TE_VAR:
        sb_printf(b, "'%s", t->name);
        break;
    case TE_TUPLE:
        for (int i = 0; i < t->nargs; i++) {
            if (i)
                sb_puts(b, " * ");
            print_texpr(b, t->args[i], 2);
        }
        break;
    case TE_ARRAY:
        sb_puts(b, "[]");
        print_texpr(b, t->elem, 2);
        break;
    case TE_FUNC:
        print_texpr(b, t->elem, 1);
        sb_puts(b, " -> ");
        print_texpr(b, t->result, 0);
        break;
    case TE_RECORD:
        sb_puts(b, "{ ");
        for (int i = 0; i < t->nargs; i++) {
            if (i)
                sb_puts(b, ", ");
            sb_printf(b, "%s: ", t->fields[i]);
            print_texpr(b, t->args[i], 0);
        }
        sb_puts(b, " }");
        break;
    }
    if (paren)
        sb_putc(b, ')');
}

void ast_print_texpr(StrBuf *b, const TypeExpr *t) { print_texpr(b, t, 0); }

static void print_rule(StrBuf *b, const DerivRule *r)
{
    sb_printf(b, "\n  with %s", r->kind == RULE_JVP ? "jvp" : "vjp");
    print_params(b, r->params, r->nparams);
    sb_puts(b, " => ");
    print_expr(b, r->body, PREC_OPEN);
}

void ast_print_decl(StrBuf *b, const Decl *d)
{
    switch (d->kind) {
    case DECL_DEF:
        sb_printf(b, "%sdef %s", d->is_export ? "export " : "", d->name);
        print_params(b, d->params, d->nparams);
        print_ret(b, d->ret);
        sb_puts(b, " =\n  ");
        print_expr(b, d->body, PREC_OPEN);
        for (int i = 0; i < d->nrules; i++)
            print_rule(b, d->rules[i]);
        break;
    case DECL_TYPE:
        sb_puts(b, "type ");
        if (d->ntparams == 1)
            sb_printf(b, "'%s ", d->tparams[0]);
        else if (d->ntparams > 1) {
            sb_putc(b, '(');
            for (int i = 0; i < d->ntparams; i++)
                sb_printf(b, "%s'%s", i ? ", " : "", d->tparams[i]);
            sb_puts(b, ") ");
        }
        sb_printf(b, "%s = ", d->name);
        if (d->tkind == TD_ALIAS)
            print_texpr(b, d->alias, 0);
        else if (d->tkind == TD_RECORD)
            print_texpr(b, d->record, 0);
        else
            for (int i = 0; i < d->ncons; i++) {
                sb_printf(b, "%s%s", i ? " | " : "", d->cons[i].name);
                if (d->cons[i].arg) {
                    sb_puts(b, " of ");
                    print_texpr(b, d->cons[i].arg, 0);
                }
            }
        break;
    case DECL_IMPORT:
        sb_puts(b, "import ");
        if (d->is_std)
            sb_puts(b, d->path);
        else
            print_string(b, d->path);
        if (d->as)
            sb_printf(b, " as %s", d->as);
        break;
    case DECL_EXPORT_DERIV: {
        static const char *const forms[] = {
            [DERIV_GRAD] = "grad", [DERIV_JVP] = "jvp", [DERIV_VJP] = "vjp",
            [DERIV_VALUE_AND_GRAD] = "value_and_grad",
        };
        const char *f = (unsigned)d->deriv < sizeof forms / sizeof forms[0] && forms[d->deriv]
                            ? forms[d->deriv] : "grad";
        sb_printf(b, "export %s %s as %s", f, d->target, d->name);
        break;
    }
    }
}

/* ======================================================================
 * --emit=ast: S-expressions, one node per line
 * ====================================================================== */

static void dump_indent(FILE *out, int n)
{
    for (int i = 0; i < n; i++)
        fputs("  ", out);
}

static void dump_loc(FILE *out, Loc l)
{
    fprintf(out, " @%d:%d-%d:%d", l.line, l.col, l.end_line, l.end_col);
}

static void dump_texpr_inline(FILE *out, const TypeExpr *t)
{
    StrBuf b = {0};
    print_texpr(&b, t, 0);
    fprintf(out, "%s", b.data ? b.data : "");
    sb_free(&b);
}

static void dump_pat(FILE *out, const Pat *p, int ind)
{
    dump_indent(out, ind);
    if (!p) {
        fputs("(null)\n", out);
        return;
    }
    switch (p->kind) {
    case PAT_WILD: fputs("(pwild", out); break;
    case PAT_VAR: fprintf(out, "(pvar %s", p->name); break;
    case PAT_INT: fprintf(out, "(pint %" PRId64, p->ival); break;
    case PAT_FLOAT: {
        StrBuf b = {0};
        print_float(&b, p->fval, p->is_f32);
        fprintf(out, "(pfloat %s", b.data);
        sb_free(&b);
        break;
    }
    case PAT_BOOL: fprintf(out, "(pbool %s", p->ival ? "true" : "false"); break;
    case PAT_STRING: {
        StrBuf b = {0};
        print_string(&b, p->sval);
        fprintf(out, "(pstring %s", b.data);
        sb_free(&b);
        break;
    }
    case PAT_UNIT: fputs("(punit", out); break;
    case PAT_TUPLE: fputs("(ptuple", out); break;
    case PAT_RECORD: fprintf(out, "(precord%s", p->open ? " open" : ""); break;
    case PAT_CON: fprintf(out, "(pcon %s", p->name); break;
    case PAT_ANNOT:
        fputs("(pannot ", out);
        dump_texpr_inline(out, p->annot);
        break;
    }
    dump_loc(out, p->loc);
    if (p->kind == PAT_TUPLE || p->kind == PAT_RECORD) {
        for (int i = 0; i < p->nitems; i++) {
            fputc('\n', out);
            if (p->kind == PAT_RECORD) {
                dump_indent(out, ind + 1);
                fprintf(out, "(field %s\n", p->fields[i]);
                dump_pat(out, p->items[i], ind + 2);
                fputc(')', out);
            } else {
                dump_pat(out, p->items[i], ind + 1);
            }
        }
    } else if (p->arg) {
        fputc('\n', out);
        dump_pat(out, p->arg, ind + 1);
    }
    fputc(')', out);
}

static void dump_expr(FILE *out, const Expr *e, int ind);

static void dump_child(FILE *out, const Expr *e, int ind)
{
    fputc('\n', out);
    dump_expr(out, e, ind);
}

static void dump_pat_child(FILE *out, const Pat *p, int ind)
{
    fputc('\n', out);
    dump_pat(out, p, ind);
}

static void dump_params(FILE *out, Pat **params, int n, int ind)
{
    for (int i = 0; i < n; i++)
        dump_pat_child(out, params[i], ind);
}

static void dump_expr(FILE *out, const Expr *e, int ind)
{
    dump_indent(out, ind);
    if (!e) {
        fputs("(null)", out);
        return;
    }
    StrBuf b = {0};
    switch (e->kind) {
    case EX_INT: fprintf(out, "(int %" PRId64, e->u.ival); break;
    case EX_FLOAT:
        print_float(&b, e->u.fl.val, e->u.fl.is_f32);
        fprintf(out, "(float %s", b.data);
        break;
    case EX_BOOL: fprintf(out, "(bool %s", e->u.ival ? "true" : "false"); break;
    case EX_UNIT: fputs("(unit", out); break;
    case EX_STRING:
        print_string(&b, e->u.sval);
        fprintf(out, "(string %s", b.data);
        break;
    case EX_VAR: fprintf(out, "(var %s", e->u.var.name); break;
    case EX_CON: fprintf(out, "(con %s", e->u.con.name); break;
    case EX_OPFN: fprintf(out, "(opfn %s", op_spelling(e->u.opfn)); break;
    case EX_TUPLE: fputs("(tuple", out); break;
    case EX_ARRAY: fputs("(array", out); break;
    case EX_RECORD: fputs("(record", out); break;
    case EX_UPDATE: fputs("(update", out); break;
    case EX_FIELD: fprintf(out, "(field %s", e->u.field.name); break;
    case EX_PROJ: fprintf(out, "(proj %d", e->u.field.index); break;
    case EX_INDEX: fputs("(index", out); break;
    case EX_APP: fputs("(app", out); break;
    case EX_BINOP: fprintf(out, "(binop %s", op_spelling(e->u.op.op)); break;
    case EX_UNOP: fprintf(out, "(unop %s", op_spelling(e->u.op.op)); break;
    case EX_LAMBDA:
        fputs("(fn", out);
        if (e->u.lam.ret) {
            fputs(" : ", out);
            dump_texpr_inline(out, e->u.lam.ret);
        }
        break;
    case EX_LET: fputs("(let", out); break;
    case EX_LETREC:
        fprintf(out, "(letrec %s", e->u.letrec.name);
        if (e->u.letrec.ret) {
            fputs(" : ", out);
            dump_texpr_inline(out, e->u.letrec.ret);
        }
        break;
    case EX_IF: fputs("(if", out); break;
    case EX_MATCH: fputs("(match", out); break;
    case EX_LOOP:
        if (e->u.loop.kind == LOOP_FOR)
            fprintf(out, "(loop-for %s", e->u.loop.ivar);
        else
            fputs("(loop-while", out);
        break;
    case EX_ANNOT:
        fputs("(annot ", out);
        dump_texpr_inline(out, e->u.annot.t);
        break;
    case EX_ERROR: fputs("(error", out); break;
    }
    sb_free(&b);
    dump_loc(out, e->loc);
    switch (e->kind) {
    case EX_TUPLE: case EX_ARRAY:
        for (int i = 0; i < e->u.list.n; i++)
            dump_child(out, e->u.list.items[i], ind + 1);
        break;
    case EX_RECORD: case EX_UPDATE:
        if (e->u.rec.base)
            dump_child(out, e->u.rec.base, ind + 1);
        for (int i = 0; i < e->u.rec.n; i++) {
            fputc('\n', out);
            dump_indent(out, ind + 1);
            fprintf(out, "(= %s", e->u.rec.names[i]);
            dump_child(out, e->u.rec.values[i], ind + 2);
            fputc(')', out);
        }
        break;
    case EX_FIELD: case EX_PROJ:
        dump_child(out, e->u.field.e, ind + 1);
        break;
    case EX_INDEX:
        dump_child(out, e->u.index.e, ind + 1);
        for (int i = 0; i < e->u.index.n; i++) {
            const IndexArg *a = &e->u.index.args[i];
            fputc('\n', out);
            dump_indent(out, ind + 1);
            fputs(a->is_slice ? "(slice" : "(at", out);
            if (a->is_slice && !a->lo)
                fprintf(out, "\n%*s_", 2 * (ind + 2), "");
            if (a->lo)
                dump_child(out, a->lo, ind + 2);
            if (a->is_slice && !a->hi)
                fprintf(out, "\n%*s_", 2 * (ind + 2), "");
            if (a->hi)
                dump_child(out, a->hi, ind + 2);
            fputc(')', out);
        }
        break;
    case EX_APP:
        dump_child(out, e->u.app.fn, ind + 1);
        dump_child(out, e->u.app.arg, ind + 1);
        break;
    case EX_BINOP:
        dump_child(out, e->u.op.l, ind + 1);
        dump_child(out, e->u.op.r, ind + 1);
        break;
    case EX_UNOP:
        dump_child(out, e->u.op.l, ind + 1);
        break;
    case EX_LAMBDA:
        dump_params(out, e->u.lam.params, e->u.lam.nparams, ind + 1);
        dump_child(out, e->u.lam.body, ind + 1);
        break;
    case EX_LET:
        dump_pat_child(out, e->u.let.pat, ind + 1);
        dump_child(out, e->u.let.value, ind + 1);
        dump_child(out, e->u.let.body, ind + 1);
        break;
    case EX_LETREC:
        dump_params(out, e->u.letrec.params, e->u.letrec.nparams, ind + 1);
        dump_child(out, e->u.letrec.value, ind + 1);
        dump_child(out, e->u.letrec.body, ind + 1);
        break;
    case EX_IF:
        dump_child(out, e->u.if_.cond, ind + 1);
        dump_child(out, e->u.if_.then_, ind + 1);
        dump_child(out, e->u.if_.else_, ind + 1);
        break;
    case EX_MATCH:
        dump_child(out, e->u.match.e, ind + 1);
        for (int i = 0; i < e->u.match.n; i++) {
            const MatchCase *c = &e->u.match.cases[i];
            fputc('\n', out);
            dump_indent(out, ind + 1);
            fputs("(case", out);
            dump_loc(out, c->loc);
            dump_pat_child(out, c->pat, ind + 2);
            dump_child(out, c->body, ind + 2);
            fputc(')', out);
        }
        break;
    case EX_LOOP:
        dump_pat_child(out, e->u.loop.pat, ind + 1);
        dump_child(out, e->u.loop.init, ind + 1);
        dump_child(out, e->u.loop.kind == LOOP_FOR ? e->u.loop.bound : e->u.loop.cond, ind + 1);
        dump_child(out, e->u.loop.body, ind + 1);
        break;
    case EX_ANNOT:
        dump_child(out, e->u.annot.e, ind + 1);
        break;
    default:
        break;
    }
    fputc(')', out);
}

void ast_dump_expr(FILE *out, const Expr *e, int indent)
{
    dump_expr(out, e, indent);
    fputc('\n', out);
}

static void dump_decl(FILE *out, const Decl *d)
{
    switch (d->kind) {
    case DECL_DEF:
        fprintf(out, "  (%s %s", d->is_export ? "export-def" : "def", d->name);
        if (d->ret) {
            fputs(" : ", out);
            dump_texpr_inline(out, d->ret);
        }
        dump_loc(out, d->loc);
        dump_params(out, d->params, d->nparams, 2);
        dump_child(out, d->body, 2);
        for (int i = 0; i < d->nrules; i++) {
            const DerivRule *r = d->rules[i];
            fprintf(out, "\n    (rule %s", r->kind == RULE_JVP ? "jvp" : "vjp");
            dump_loc(out, r->loc);
            dump_params(out, r->params, r->nparams, 3);
            dump_child(out, r->body, 3);
            fputc(')', out);
        }
        fputs(")\n", out);
        break;
    case DECL_TYPE: {
        fputs("  (type", out);
        for (int i = 0; i < d->ntparams; i++)
            fprintf(out, " '%s", d->tparams[i]);
        fprintf(out, " %s", d->name);
        dump_loc(out, d->loc);
        if (d->tkind == TD_ALIAS || d->tkind == TD_RECORD) {
            fprintf(out, "\n    (%s ", d->tkind == TD_ALIAS ? "alias" : "record");
            dump_texpr_inline(out, d->tkind == TD_ALIAS ? d->alias : d->record);
            fputc(')', out);
        } else {
            for (int i = 0; i < d->ncons; i++) {
                fprintf(out, "\n    (con %s", d->cons[i].name);
                if (d->cons[i].arg) {
                    fputs(" of ", out);
                    dump_texpr_inline(out, d->cons[i].arg);
                }
                dump_loc(out, d->cons[i].loc);
                fputc(')', out);
            }
        }
        fputs(")\n", out);
        break;
    }
    case DECL_IMPORT:
        fprintf(out, "  (import %s%s%s", d->is_std ? "" : "\"", d->path, d->is_std ? "" : "\"");
        if (d->as)
            fprintf(out, " as %s", d->as);
        dump_loc(out, d->loc);
        fputs(")\n", out);
        break;
    case DECL_EXPORT_DERIV: {
        StrBuf b = {0};
        ast_print_decl(&b, d);
        fprintf(out, "  (export-deriv \"%s\"", b.data);
        sb_free(&b);
        dump_loc(out, d->loc);
        fputs(")\n", out);
        break;
    }
    }
}

void ast_dump_module(FILE *out, const Module *m)
{
    fprintf(out, "(module %s \"%s\"\n", m->name ? m->name : "?", m->path ? m->path : "");
    for (int i = 0; i < m->ndecls; i++)
        dump_decl(out, m->decls[i]);
    fputs(")\n", out);
}
