/* simplify.c — the Core simplifier, run to a fixed point.
 *
 * One forward walk per function does, binding by binding (Appel, "Compiling
 * with Continuations" ch. 6; Peyton Jones & Santos, "A transformation-based
 * optimiser for Haskell", SCP 1998):
 *   - copy and constant propagation: `let x = a` substitutes a for x;
 *   - constant folding of scalar prims whose result IEEE arithmetic fixes
 *     exactly (no libm calls, no folding that would hide a run-time error),
 *     and exact algebraic identities (x*1, x-0, ...);
 *   - known products and sums: proj of a tuple, field of a record, tag and
 *     payload of a constructor, `case` of a constructor, `if` of a literal;
 *   - beta reduction of `apply c a` where c is a known lambda, and inlining
 *     of calls to small or once-called non-recursive functions (never of
 *     functions with custom derivative rules: the AD stages need the call);
 *   - common subexpressions: an effect-free prim equal to one in scope;
 *   - map fusion: map f (map g xs), the inner map used once, is one map.
 * Then dead-code elimination, backwards: an unused binding goes when
 * evaluating it can neither have an effect nor fail (core_prim_may_fail),
 * calls only to functions that are so throughout. Functions no longer
 * reachable from main, the exports and REPL roots are dropped. */
#include "dcc.h"

#include <math.h>
#include <string.h>

enum { INLINE_SIZE = 24, MAX_ROUNDS = 16, INLINE_BUDGET = 4000 };

typedef struct Simp {
    CProgram *p;
    bool changed;
    CoreMap sub;     /* CVar -> CAtom */
    CoreMap defs;    /* CVar -> CExpr defining it (prims, lambdas, soacs) */
    CoreMap cse;     /* interned key -> CVar */
    Vec cse_undo;    /* keys added, for scoping */
    CoreMap impure;  /* CFun -> (void*)1 when a call may fail or have effects */
    CoreMap rec;     /* CFun -> (void*)1 when recursive */
    CoreMap ncalls;  /* CFun -> number of call sites (as intptr_t) */
    int budget;
} Simp;

/* ---------------------------------------------------------------- helpers */

static CAtom *sub_atom(Simp *S, CAtom *a)
{
    while (a && a->kind == CA_VAR) {
        CAtom *n = core_map_get(&S->sub, a->u.var);
        if (!n)
            break;
        a = n;
    }
    return a;
}

static void set_sub(Simp *S, CVar *x, CAtom *a)
{
    core_map_put(&S->sub, x, a);
    S->changed = true;
}

static void push_bind(CBlock *b, CVar *v, CExpr *e)
{
    if (b->nbinds == b->cap) {
        int cap = b->cap ? b->cap * 2 : 8;
        CBind *nb = NEWN(CBind, cap);
        if (b->nbinds)
            memcpy(nb, b->binds, sizeof *nb * (size_t)b->nbinds);
        b->binds = nb;
        b->cap = cap;
    }
    b->binds[b->nbinds].var = v;
    b->binds[b->nbinds].e = e;
    b->nbinds++;
}

static bool atom_same(CAtom *a, CAtom *b)
{
    if (a == b)
        return true;
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case CA_VAR: return a->u.var == b->u.var;
    case CA_INT: case CA_BOOL: return a->u.ival == b->u.ival;
    case CA_FLOAT:
        return memcmp(&a->u.fval, &b->u.fval, sizeof(double)) == 0 &&
               core_type_equal(a->type, b->type);
    case CA_UNIT: return true;
    case CA_STRING: return strcmp(a->u.sval, b->u.sval) == 0;
    case CA_FUN: return a->u.fun == b->u.fun;
    }
    return false;
}

static int block_size(CBlock *b);

static int lambda_size(CLambda *l) { return l ? block_size(l->body) : 0; }

static int expr_size(CExpr *e)
{
    int n = 1;
    switch (e->kind) {
    case CE_LAMBDA: n += lambda_size(e->u.lambda); break;
    case CE_IF: n += block_size(e->u.if_.then_) + block_size(e->u.if_.else_); break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            n += block_size(e->u.case_.alts[i].body);
        break;
    case CE_LOOP:
        n += block_size(e->u.loop.body) + (e->u.loop.cond ? block_size(e->u.loop.cond) : 0);
        break;
    case CE_SOAC: n += lambda_size(e->u.soac.fn); break;
    case CE_DERIV: n += lambda_size(e->u.deriv.fn); break;
    default: break;
    }
    return n;
}

static int block_size(CBlock *b)
{
    int n = 0;
    for (int i = 0; i < b->nbinds; i++)
        n += expr_size(b->binds[i].e);
    return n;
}

/* ---------------------------------------------------------------- folding */

static bool is_lit(CAtom *a)
{
    return a->kind == CA_INT || a->kind == CA_FLOAT || a->kind == CA_BOOL;
}

static bool type_is(Type *t, TypeKind k) { return type_resolve(t)->kind == k; }

/* Folds a prim on literal scalars; NULL when it cannot (or must not). */
static CAtom *fold_lits(CExpr *e)
{
    Prim op = e->u.prim.op;
    Type *rt = type_resolve(e->type);
    if (rt->kind != TY_INT && rt->kind != TY_FLOAT && rt->kind != TY_F32 && rt->kind != TY_BOOL)
        return NULL;
    for (int i = 0; i < e->nargs; i++)
        if (!is_lit(e->args[i]) && e->args[i]->kind != CA_STRING)
            return NULL;
    if (e->nargs == 0)
        return NULL;
    CAtom *a = e->args[0], *b = e->nargs > 1 ? e->args[1] : NULL;
    if (a->kind == CA_INT && (!b || b->kind == CA_INT)) {
        int64_t x = a->u.ival, y = b ? b->u.ival : 0, r;
        switch (op) {
        case P_ADD: if (__builtin_add_overflow(x, y, &r)) return NULL; return core_atom_int(r);
        case P_SUB: if (__builtin_sub_overflow(x, y, &r)) return NULL; return core_atom_int(r);
        case P_MUL: if (__builtin_mul_overflow(x, y, &r)) return NULL; return core_atom_int(r);
        case P_DIV:
            if (y == 0 || (x == INT64_MIN && y == -1)) return NULL;
            return core_atom_int(x / y);
        case P_MOD:
            if (y == 0 || (x == INT64_MIN && y == -1)) return NULL;
            return core_atom_int(x % y);
        case P_NEG: if (x == INT64_MIN) return NULL; return core_atom_int(-x);
        case P_ABS: if (x == INT64_MIN) return NULL; return core_atom_int(x < 0 ? -x : x);
        case P_MIN: return core_atom_int(x < y ? x : y);
        case P_MAX: return core_atom_int(x > y ? x : y);
        case P_EQ: return core_atom_bool(x == y);
        case P_NE: return core_atom_bool(x != y);
        case P_LT: return core_atom_bool(x < y);
        case P_LE: return core_atom_bool(x <= y);
        case P_GT: return core_atom_bool(x > y);
        case P_GE: return core_atom_bool(x >= y);
        case P_TO_FLOAT: return b ? NULL : core_atom_float((double)x, type_float());
        case P_TO_F32: return b ? NULL : core_atom_float((double)(float)x, type_f32());
        case P_TO_INT: return b ? NULL : core_atom_int(x);
        default: return NULL;
        }
    }
    if (a->kind == CA_FLOAT && (!b || b->kind == CA_FLOAT)) {
        bool f32 = type_is(a->type, TY_F32);
        if (b && type_is(b->type, TY_F32) != f32)
            return NULL;
        double x = a->u.fval, y = b ? b->u.fval : 0, r;
        if (f32) { /* operands of single precision, whatever their origin */
            x = (double)(float)x;
            y = (double)(float)y;
        }
        Type *ft = f32 ? type_f32() : type_float();
        switch (op) {
        case P_ADD: r = x + y; break;
        case P_SUB: r = x - y; break;
        case P_MUL: r = x * y; break;
        case P_DIV: r = x / y; break;
        case P_NEG: r = -x; break;
        case P_ABS: r = fabs(x); break;
        case P_SQRT: r = sqrt(x); break;
        case P_FLOOR: r = floor(x); break;
        case P_CEIL: r = ceil(x); break;
        case P_EQ: return core_atom_bool(x == y);
        case P_NE: return core_atom_bool(x != y);
        case P_LT: return core_atom_bool(x < y);
        case P_LE: return core_atom_bool(x <= y);
        case P_GT: return core_atom_bool(x > y);
        case P_GE: return core_atom_bool(x >= y);
        case P_TO_FLOAT: return b ? NULL : core_atom_float(x, type_float());
        case P_TO_F32: return b ? NULL : core_atom_float((double)(float)x, type_f32());
        default: return NULL;
        }
        /* one rounding of the exact result: float(double op) is the f32 op */
        if (f32)
            r = (double)(float)r;
        return core_atom_float(r, ft);
    }
    if (a->kind == CA_STRING && b && b->kind == CA_STRING && (op == P_EQ || op == P_NE))
        return core_atom_bool((strcmp(a->u.sval, b->u.sval) == 0) == (op == P_EQ));
    if (a->kind == CA_BOOL && (!b || b->kind == CA_BOOL)) {
        bool x = a->u.ival, y = b ? b->u.ival : 0;
        switch (op) {
        case P_NOT: return core_atom_bool(!x);
        case P_EQ: return core_atom_bool(x == y);
        case P_NE: return core_atom_bool(x != y);
        default: return NULL;
        }
    }
    return NULL;
}

static bool is_num(CAtom *a, double v)
{
    if (a->kind == CA_INT)
        return a->u.ival == (int64_t)v && (double)a->u.ival == v;
    if (a->kind == CA_FLOAT)
        return a->u.fval == v && !signbit(a->u.fval);
    return false;
}

/* Exact identities: x*1 = 1*x = x/1 = x - 0 = x, and x + 0 for ints. The
 * kept operand must have the result type (no broadcasting hidden). */
static CAtom *fold_identity(CExpr *e)
{
    if (e->nargs != 2)
        return NULL;
    CAtom *a = e->args[0], *b = e->args[1];
    CAtom *keep = NULL;
    switch (e->u.prim.op) {
    case P_MUL:
        if (is_num(b, 1)) keep = a;
        else if (is_num(a, 1)) keep = b;
        break;
    case P_DIV:
        if (is_num(b, 1)) keep = a;
        break;
    case P_SUB:
        if (is_num(b, 0)) keep = a;
        break;
    case P_ADD:
        if (b->kind == CA_INT && b->u.ival == 0) keep = a;
        else if (a->kind == CA_INT && a->u.ival == 0) keep = b;
        break;
    default:
        break;
    }
    if (keep && core_type_equal(core_atom_type(keep), e->type))
        return keep;
    return NULL;
}

static CExpr *def_of(Simp *S, CAtom *a)
{
    return a && a->kind == CA_VAR ? core_map_get(&S->defs, a->u.var) : NULL;
}

static bool is_prim(CExpr *e, Prim op) { return e && e->kind == CE_PRIM && e->u.prim.op == op; }

/* Known structure: proj of a tuple, field of a record, tag / payload of a
 * constructor. */
static CAtom *fold_known(Simp *S, CExpr *e)
{
    /* tuple(proj[0] t, .., proj[n-1] t) = t, and so for records */
    if ((e->u.prim.op == P_TUPLE || e->u.prim.op == P_RECORD) && e->nargs > 0) {
        Prim part = e->u.prim.op == P_TUPLE ? P_PROJ : P_FIELD;
        CAtom *whole = NULL;
        for (int i = 0; i < e->nargs; i++) {
            CExpr *d = def_of(S, e->args[i]);
            if (!is_prim(d, part) || d->u.prim.imm != i || d->args[0]->kind != CA_VAR ||
                (whole && d->args[0]->u.var != whole->u.var))
                return NULL;
            whole = d->args[0];
        }
        return core_type_equal(core_atom_type(whole), e->type) ? whole : NULL;
    }
    if (e->nargs != 1)
        return NULL;
    CExpr *d = def_of(S, e->args[0]);
    int64_t imm = e->u.prim.imm;
    switch (e->u.prim.op) {
    case P_PROJ:
        if (is_prim(d, P_TUPLE) && imm < d->nargs)
            return d->args[imm];
        break;
    case P_FIELD:
        if (is_prim(d, P_RECORD) && imm < d->nargs)
            return d->args[imm];
        break;
    case P_TAG:
        if (is_prim(d, P_CON))
            return core_atom_int(d->u.prim.imm);
        break;
    case P_PAYLOAD:
        if (is_prim(d, P_CON) && d->u.prim.imm == imm && d->nargs == 1)
            return d->args[0];
        break;
    default:
        break;
    }
    return NULL;
}

/* ---------------------------------------------------------------- CSE */

static const char *cse_key(CExpr *e)
{
    StrBuf b = {0};
    sb_printf(&b, "%d:%lld:", (int)e->u.prim.op, (long long)e->u.prim.imm);
    for (int i = 0; i < e->nargs; i++) {
        CAtom *a = e->args[i];
        switch (a->kind) {
        case CA_VAR: sb_printf(&b, "v%d,", a->u.var->id); break;
        case CA_INT: sb_printf(&b, "i%lld,", (long long)a->u.ival); break;
        case CA_BOOL: sb_printf(&b, "b%d,", (int)a->u.ival); break;
        case CA_FLOAT:
            sb_printf(&b, "f%a%s,", a->u.fval, type_is(a->type, TY_F32) ? "s" : "d");
            break;
        case CA_UNIT: sb_puts(&b, "u,"); break;
        case CA_STRING: sb_printf(&b, "s%zu:%s,", strlen(a->u.sval), a->u.sval); break;
        case CA_FUN: sb_printf(&b, "F%p,", (void *)a->u.fun); break;
        }
    }
    sb_puts(&b, type_to_string(e->type));
    const char *k = intern(b.data);
    sb_free(&b);
    return k;
}

static int cse_mark(Simp *S) { return S->cse_undo.len; }

static void cse_pop(Simp *S, int mark)
{
    while (S->cse_undo.len > mark)
        core_map_put(&S->cse, vec_pop(&S->cse_undo), NULL);
}

/* ---------------------------------------------------------------- the walk */

static void simp_block(Simp *S, CBlock *b);
static void simp_bind(Simp *S, CBlock *out, CVar *x, CExpr *e);
static bool block_pure(Simp *S, CBlock *b);

static void simp_nested(Simp *S, CBlock *b)
{
    int m = cse_mark(S);
    simp_block(S, b);
    cse_pop(S, m);
}

/* Splices the bindings of `from` (renamed copies) into out, simplifying
 * them on the way, and makes x stand for its result. */
static void splice(Simp *S, CBlock *out, CVar *x, CBlock *from)
{
    for (int i = 0; i < from->nbinds; i++)
        simp_bind(S, out, from->binds[i].var, from->binds[i].e);
    set_sub(S, x, sub_atom(S, from->result));
}

static bool inlinable(Simp *S, CFun *f)
{
    if (!f->body || f->is_main || f->jvp_rule || f->vjp_rule || core_map_get(&S->rec, f))
        return false;
    if (S->budget <= 0)
        return false;
    intptr_t calls = (intptr_t)core_map_get(&S->ncalls, f);
    return block_size(f->body) <= INLINE_SIZE || (calls == 1 && !f->is_export);
}

/* map f (map g xs): the inner map's result used only here becomes one map
 * whose lambda runs g then f. */
static bool fuse_map(Simp *S, CExpr *e)
{
    if (e->u.soac.kind != SOAC_MAP || e->nargs != 1)
        return false;
    CAtom *a = e->args[0];
    CExpr *in = def_of(S, a);
    if (!in || in->kind != CE_SOAC || in->u.soac.kind != SOAC_MAP || a->u.var->uses != 1)
        return false;
    CLambda *g = in->u.soac.fn, *f = e->u.soac.fn;
    /* interleaving the two loops must not reorder effects or failures */
    if (!block_pure(S, g->body) || !block_pure(S, f->body))
        return false;
    /* the new lambda: g's parameters, g's body, then f's body on its result */
    CLambda *ng = core_copy_lambda(g, NULL, NULL, 0);
    CAtom *mid = ng->body->result;
    CBlock *fb = core_copy_block(f->body, f->params, &mid, 1);
    for (int i = 0; i < fb->nbinds; i++)
        push_bind(ng->body, fb->binds[i].var, fb->binds[i].e);
    ng->body->result = fb->result;
    ng->type = f->type;
    /* the lambda's type: g's parameter types to f's result */
    Type *t = type_resolve(f->type);
    Type *res = t->kind == TY_FUNC ? t->args[1] : t;
    for (int i = ng->nparams - 1; i >= 0; i--)
        res = type_func(ng->params[i]->type, res);
    ng->type = res;
    e->u.soac.fn = ng;
    e->nargs = in->nargs;
    e->args = NEWN(CAtom *, in->nargs > 0 ? in->nargs : 1);
    for (int i = 0; i < in->nargs; i++)
        e->args[i] = in->args[i];
    a->u.var->uses = 0;
    S->changed = true;
    return true;
}

static void simp_bind(Simp *S, CBlock *out, CVar *x, CExpr *e)
{
    for (int i = 0; i < e->nargs; i++)
        e->args[i] = sub_atom(S, e->args[i]);
    switch (e->kind) {
    case CE_ATOM:
        set_sub(S, x, e->args[0]);
        return;
    case CE_PRIM: {
        CAtom *r = fold_lits(e);
        if (!r)
            r = fold_identity(e);
        if (!r)
            r = fold_known(S, e);
        if (r) {
            set_sub(S, x, r);
            return;
        }
        if (e->u.prim.op == P_SELECT && e->nargs == 3 && e->args[0]->kind == CA_BOOL &&
            core_type_equal(core_atom_type(e->args[1]), e->type)) {
            set_sub(S, x, e->args[0]->u.ival ? e->args[1] : e->args[2]);
            return;
        }
        if (!(core_prims[e->u.prim.op].flags & PRIM_EFFECT)) {
            const char *k = cse_key(e);
            CVar *y = core_map_get(&S->cse, k);
            if (y) {
                set_sub(S, x, core_atom_var(y));
                return;
            }
            core_map_put(&S->cse, k, x);
            vec_push(&S->cse_undo, (void *)k);
        }
        core_map_put(&S->defs, x, e);
        break;
    }
    case CE_IF: {
        CAtom *c = e->args[0];
        if (c->kind == CA_BOOL) {
            splice(S, out, x, c->u.ival ? e->u.if_.then_ : e->u.if_.else_);
            return;
        }
        simp_nested(S, e->u.if_.then_);
        simp_nested(S, e->u.if_.else_);
        CBlock *t = e->u.if_.then_, *f = e->u.if_.else_;
        if (!t->nbinds && !f->nbinds && atom_same(t->result, f->result)) {
            set_sub(S, x, t->result);
            return;
        }
        break;
    }
    case CE_CASE: {
        CExpr *d = def_of(S, e->args[0]);
        if (is_prim(d, P_CON)) {
            CAlt *hit = NULL;
            for (int i = 0; i < e->u.case_.nalts && !hit; i++)
                if (e->u.case_.alts[i].con == d->u.prim.imm)
                    hit = &e->u.case_.alts[i];
            for (int i = 0; i < e->u.case_.nalts && !hit; i++)
                if (e->u.case_.alts[i].con == -1)
                    hit = &e->u.case_.alts[i];
            if (hit) {
                if (hit->payload && d->nargs == 1)
                    core_map_put(&S->sub, hit->payload, d->args[0]);
                if (!hit->payload || d->nargs == 1) {
                    splice(S, out, x, hit->body);
                    return;
                }
            }
        }
        for (int i = 0; i < e->u.case_.nalts; i++)
            simp_nested(S, e->u.case_.alts[i].body);
        break;
    }
    case CE_LOOP:
        if (e->u.loop.kind == LOOP_FOR && e->args[1]->kind == CA_INT && e->args[1]->u.ival <= 0) {
            set_sub(S, x, e->args[0]);
            return;
        }
        if (e->u.loop.cond)
            simp_nested(S, e->u.loop.cond);
        simp_nested(S, e->u.loop.body);
        break;
    case CE_LAMBDA:
        simp_nested(S, e->u.lambda->body);
        core_map_put(&S->defs, x, e);
        break;
    case CE_SOAC:
        fuse_map(S, e);
        simp_nested(S, e->u.soac.fn->body);
        core_map_put(&S->defs, x, e);
        break;
    case CE_DERIV:
        if (e->u.deriv.fn)
            simp_nested(S, e->u.deriv.fn->body);
        break;
    case CE_APPLY: {
        CExpr *d = def_of(S, e->args[0]);
        if (d && d->kind == CE_LAMBDA && S->budget > 0 &&
            (e->args[0]->u.var->uses <= 1 || lambda_size(d->u.lambda) <= INLINE_SIZE)) {
            CLambda *l = d->u.lambda;
            CBlock *body = core_copy_block(l->body, l->params, &e->args[1], 1);
            S->budget--;
            splice(S, out, x, body);
            return;
        }
        break;
    }
    case CE_CALL:
        if (inlinable(S, e->u.fun)) {
            CFun *f = e->u.fun;
            CBlock *body = core_copy_block(f->body, f->params, e->args, f->nparams);
            S->budget--;
            S->changed = true;
            splice(S, out, x, body);
            return;
        }
        break;
    }
    push_bind(out, x, e);
}

static void simp_block(Simp *S, CBlock *b)
{
    CBind *in = b->binds;
    int n = b->nbinds;
    b->binds = NULL;
    b->nbinds = b->cap = 0;
    for (int i = 0; i < n; i++)
        simp_bind(S, b, in[i].var, in[i].e);
    b->result = sub_atom(S, b->result);
}

/* ---------------------------------------------------------------- uses */

static void count_block(CBlock *b, int d);

static void count_atom(CAtom *a, int d)
{
    if (a && a->kind == CA_VAR)
        a->u.var->uses += d;
}

static void count_expr(CExpr *e, int d)
{
    for (int i = 0; i < e->nargs; i++)
        count_atom(e->args[i], d);
    switch (e->kind) {
    case CE_LAMBDA: count_block(e->u.lambda->body, d); break;
    case CE_IF:
        count_block(e->u.if_.then_, d);
        count_block(e->u.if_.else_, d);
        break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            count_block(e->u.case_.alts[i].body, d);
        break;
    case CE_LOOP:
        if (e->u.loop.cond)
            count_block(e->u.loop.cond, d);
        count_block(e->u.loop.body, d);
        break;
    case CE_SOAC: count_block(e->u.soac.fn->body, d); break;
    case CE_DERIV:
        if (e->u.deriv.fn)
            count_block(e->u.deriv.fn->body, d);
        break;
    default: break;
    }
}

static void count_block(CBlock *b, int d)
{
    for (int i = 0; i < b->nbinds; i++)
        count_expr(b->binds[i].e, d);
    count_atom(b->result, d);
}

static void reset_block(CBlock *b);

static void reset_lambda(CLambda *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->nparams; i++)
        l->params[i]->uses = 0;
    reset_block(l->body);
}

static void reset_block(CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++) {
        CExpr *e = b->binds[i].e;
        b->binds[i].var->uses = 0;
        switch (e->kind) {
        case CE_LAMBDA: reset_lambda(e->u.lambda); break;
        case CE_IF: reset_block(e->u.if_.then_); reset_block(e->u.if_.else_); break;
        case CE_CASE:
            for (int k = 0; k < e->u.case_.nalts; k++) {
                if (e->u.case_.alts[k].payload)
                    e->u.case_.alts[k].payload->uses = 0;
                reset_block(e->u.case_.alts[k].body);
            }
            break;
        case CE_LOOP:
            e->u.loop.state->uses = 0;
            if (e->u.loop.ivar)
                e->u.loop.ivar->uses = 0;
            if (e->u.loop.cond)
                reset_block(e->u.loop.cond);
            reset_block(e->u.loop.body);
            break;
        case CE_SOAC: reset_lambda(e->u.soac.fn); break;
        case CE_DERIV: reset_lambda(e->u.deriv.fn); break;
        default: break;
        }
    }
}

static void count_fun(CFun *f)
{
    for (int i = 0; i < f->nparams; i++)
        f->params[i]->uses = 0;
    reset_block(f->body);
    count_block(f->body, 1);
}

/* ---------------------------------------------------------------- purity, DCE */

static bool block_pure(Simp *S, CBlock *b);

static bool removable(Simp *S, CExpr *e)
{
    switch (e->kind) {
    case CE_ATOM: case CE_LAMBDA:
        return true;
    case CE_PRIM:
        return !core_prim_may_fail(e);
    case CE_CALL:
        return !core_map_get(&S->impure, e->u.fun);
    case CE_APPLY:
        return false;
    case CE_IF:
        return block_pure(S, e->u.if_.then_) && block_pure(S, e->u.if_.else_);
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            if (!block_pure(S, e->u.case_.alts[i].body))
                return false;
        return true;
    case CE_LOOP:
        return (!e->u.loop.cond || block_pure(S, e->u.loop.cond)) && block_pure(S, e->u.loop.body);
    case CE_SOAC:
        if (e->u.soac.kind == SOAC_MAP && e->nargs > 1)
            return false; /* the arrays' lengths may differ */
        return block_pure(S, e->u.soac.fn->body);
    case CE_DERIV:
        return !e->u.deriv.fn || block_pure(S, e->u.deriv.fn->body);
    }
    return false;
}

static bool block_pure(Simp *S, CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++)
        if (!removable(S, b->binds[i].e))
            return false;
    return true;
}

/* Greatest fixed point: a function is pure unless its body has a binding
 * that is not removable. */
static void compute_purity(Simp *S)
{
    core_map_free(&S->impure);
    for (bool again = true; again;) {
        again = false;
        for (int i = 0; i < S->p->nfuns; i++) {
            CFun *f = S->p->funs[i];
            if (core_map_get(&S->impure, f) || !f->body)
                continue;
            if (!block_pure(S, f->body)) {
                core_map_put(&S->impure, f, (void *)1);
                again = true;
            }
        }
    }
}

static void dce_block(Simp *S, CBlock *b);

static void dce_nested(Simp *S, CExpr *e)
{
    switch (e->kind) {
    case CE_LAMBDA: dce_block(S, e->u.lambda->body); break;
    case CE_IF: dce_block(S, e->u.if_.then_); dce_block(S, e->u.if_.else_); break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            dce_block(S, e->u.case_.alts[i].body);
        break;
    case CE_LOOP:
        if (e->u.loop.cond)
            dce_block(S, e->u.loop.cond);
        dce_block(S, e->u.loop.body);
        break;
    case CE_SOAC: dce_block(S, e->u.soac.fn->body); break;
    case CE_DERIV:
        if (e->u.deriv.fn)
            dce_block(S, e->u.deriv.fn->body);
        break;
    default: break;
    }
}

static void dce_block(Simp *S, CBlock *b)
{
    int keep = b->nbinds;
    bool *dead = NEWN(bool, b->nbinds > 0 ? b->nbinds : 1);
    for (int i = b->nbinds - 1; i >= 0; i--) {
        CBind *bd = &b->binds[i];
        if (bd->var->uses == 0 && removable(S, bd->e)) {
            count_expr(bd->e, -1);
            dead[i] = true;
            keep--;
            S->changed = true;
        } else {
            dce_nested(S, bd->e);
        }
    }
    if (keep == b->nbinds)
        return;
    int k = 0;
    for (int i = 0; i < b->nbinds; i++)
        if (!dead[i])
            b->binds[k++] = b->binds[i];
    b->nbinds = k;
}

/* ---------------------------------------------------------------- call graph */

static void calls_block(CBlock *b, void (*f)(void *, CFun *), void *ctx);

static void calls_expr(CExpr *e, void (*f)(void *, CFun *), void *ctx)
{
    if (e->kind == CE_CALL)
        f(ctx, e->u.fun);
    for (int i = 0; i < e->nargs; i++)
        if (e->args[i]->kind == CA_FUN)
            f(ctx, e->args[i]->u.fun);
    switch (e->kind) {
    case CE_LAMBDA: calls_block(e->u.lambda->body, f, ctx); break;
    case CE_IF: calls_block(e->u.if_.then_, f, ctx); calls_block(e->u.if_.else_, f, ctx); break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            calls_block(e->u.case_.alts[i].body, f, ctx);
        break;
    case CE_LOOP:
        if (e->u.loop.cond)
            calls_block(e->u.loop.cond, f, ctx);
        calls_block(e->u.loop.body, f, ctx);
        break;
    case CE_SOAC: calls_block(e->u.soac.fn->body, f, ctx); break;
    case CE_DERIV:
        if (e->u.deriv.fn)
            calls_block(e->u.deriv.fn->body, f, ctx);
        break;
    default: break;
    }
}

static void calls_block(CBlock *b, void (*f)(void *, CFun *), void *ctx)
{
    for (int i = 0; i < b->nbinds; i++)
        calls_expr(b->binds[i].e, f, ctx);
    if (b->result && b->result->kind == CA_FUN)
        f(ctx, b->result->u.fun);
}

typedef struct Reach {
    CoreMap seen;
    Vec work;
} Reach;

static void reach_add(void *vctx, CFun *f)
{
    Reach *r = vctx;
    if (!f || core_map_get(&r->seen, f))
        return;
    core_map_put(&r->seen, f, (void *)1);
    vec_push(&r->work, f);
}

static void reach_from(Reach *r)
{
    while (r->work.len) {
        CFun *f = vec_pop(&r->work);
        if (f->body)
            calls_block(f->body, reach_add, r);
        reach_add(r, f->jvp_rule);
        reach_add(r, f->vjp_rule);
        reach_add(r, f->rule_of);
    }
}

static void count_call(void *vctx, CFun *f)
{
    Simp *S = vctx;
    core_map_put(&S->ncalls, f, (void *)((intptr_t)core_map_get(&S->ncalls, f) + 1));
}

/* Recursive: reachable from its own callees. Call-site counts too. */
static void analyse_calls(Simp *S)
{
    core_map_free(&S->rec);
    core_map_free(&S->ncalls);
    for (int i = 0; i < S->p->nfuns; i++)
        if (S->p->funs[i]->body)
            calls_block(S->p->funs[i]->body, count_call, S);
    for (int i = 0; i < S->p->nfuns; i++) {
        CFun *f = S->p->funs[i];
        if (!f->body)
            continue;
        Reach r = {0};
        calls_block(f->body, reach_add, &r);
        reach_from(&r);
        if (core_map_get(&r.seen, f))
            core_map_put(&S->rec, f, (void *)1);
        core_map_free(&r.seen);
        vec_free(&r.work);
    }
}

static void drop_unreachable(Simp *S)
{
    Reach r = {0};
    bool any_root = false;
    for (int i = 0; i < S->p->nfuns; i++) {
        CFun *f = S->p->funs[i];
        if (f->is_main || f->is_export || f->is_root) {
            reach_add(&r, f);
            any_root = true;
        }
    }
    if (any_root) {
        reach_from(&r);
        int k = 0;
        for (int i = 0; i < S->p->nfuns; i++)
            if (core_map_get(&r.seen, S->p->funs[i]))
                S->p->funs[k++] = S->p->funs[i];
        S->p->nfuns = k;
    }
    core_map_free(&r.seen);
    vec_free(&r.work);
}

/* ---------------------------------------------------------------- sinking */

/* After the fixed point, each tuple and record construction moves down its
 * block to just before the first binding that uses it (let-floating inwards,
 * Peyton Jones, Partain & Santos, "Let-floating", ICFP 1996, restricted to
 * one block): building them is pure and cannot fail, and their operands are
 * defined before them either way. Packing a value early (an optimiser's new
 * state, built as soon as its parts exist) would otherwise be a use that
 * keeps the code generator from computing the part inside the loop of a
 * later consumer (codegen_mem.c, loop fusion with a stored result). */
static bool block_mentions(CBlock *b, CVar *x);

static bool atom_is(CAtom *a, CVar *x) { return a && a->kind == CA_VAR && a->u.var == x; }

static bool expr_mentions(CExpr *e, CVar *x)
{
    for (int i = 0; i < e->nargs; i++)
        if (atom_is(e->args[i], x))
            return true;
    switch (e->kind) {
    case CE_LAMBDA: return block_mentions(e->u.lambda->body, x);
    case CE_IF: return block_mentions(e->u.if_.then_, x) || block_mentions(e->u.if_.else_, x);
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            if (block_mentions(e->u.case_.alts[i].body, x))
                return true;
        return false;
    case CE_LOOP:
        return (e->u.loop.cond && block_mentions(e->u.loop.cond, x)) || block_mentions(e->u.loop.body, x);
    case CE_SOAC: return block_mentions(e->u.soac.fn->body, x);
    case CE_DERIV: return e->u.deriv.fn && block_mentions(e->u.deriv.fn->body, x);
    default: return false;
    }
}

static bool block_mentions(CBlock *b, CVar *x)
{
    for (int i = 0; i < b->nbinds; i++)
        if (expr_mentions(b->binds[i].e, x))
            return true;
    return atom_is(b->result, x);
}

static void sink_block(CBlock *b);

static void sink_nested(CExpr *e)
{
    switch (e->kind) {
    case CE_LAMBDA: sink_block(e->u.lambda->body); break;
    case CE_IF: sink_block(e->u.if_.then_); sink_block(e->u.if_.else_); break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            sink_block(e->u.case_.alts[i].body);
        break;
    case CE_LOOP:
        if (e->u.loop.cond)
            sink_block(e->u.loop.cond);
        sink_block(e->u.loop.body);
        break;
    case CE_SOAC: sink_block(e->u.soac.fn->body); break;
    case CE_DERIV:
        if (e->u.deriv.fn)
            sink_block(e->u.deriv.fn->body);
        break;
    default: break;
    }
}

static void sink_block(CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++)
        sink_nested(b->binds[i].e);
    /* from the last, so that a packed packing moves after its user moved */
    for (int i = b->nbinds - 1; i >= 0; i--) {
        CExpr *e = b->binds[i].e;
        if (!is_prim(e, P_TUPLE) && !is_prim(e, P_RECORD))
            continue;
        int q = i + 1;
        while (q < b->nbinds && !expr_mentions(b->binds[q].e, b->binds[i].var))
            q++;
        if (q == i + 1)
            continue;
        CBind bd = b->binds[i];
        memmove(&b->binds[i], &b->binds[i + 1], sizeof(CBind) * (size_t)(q - 1 - i));
        b->binds[q - 1] = bd;
    }
}

/* ---------------------------------------------------------------- driver */

void core_simplify(CProgram *p, int opt_level)
{
    if (opt_level <= 0)
        return;
    Simp S = {.p = p, .budget = INLINE_BUDGET};
    for (int round = 0; round < MAX_ROUNDS; round++) {
        S.changed = false;
        analyse_calls(&S);
        compute_purity(&S);
        for (int i = 0; i < p->nfuns; i++) {
            CFun *f = p->funs[i];
            if (!f->body)
                continue;
            count_fun(f);
            simp_nested(&S, f->body);
        }
        compute_purity(&S);
        for (int i = 0; i < p->nfuns; i++) {
            CFun *f = p->funs[i];
            if (!f->body)
                continue;
            count_fun(f);
            dce_block(&S, f->body);
        }
        drop_unreachable(&S);
        core_map_free(&S.sub);
        core_map_free(&S.defs);
        if (!S.changed)
            break;
    }
    for (int i = 0; i < p->nfuns; i++)
        if (p->funs[i]->body)
            sink_block(p->funs[i]->body);
    core_map_free(&S.sub);
    core_map_free(&S.defs);
    core_map_free(&S.cse);
    core_map_free(&S.impure);
    core_map_free(&S.rec);
    core_map_free(&S.ncalls);
    vec_free(&S.cse_undo);
}
