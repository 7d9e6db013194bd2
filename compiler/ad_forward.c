/* ad_forward.c — forward mode (and the engine Taylor mode shares) as a
 * structure-preserving macro on Core IR.
 *
 * The macro D maps each variable x : t of the differentiated region to the
 * coefficients of its truncated Taylor series in the perturbation,
 * c[0] = x and c[1] = dx : T t (forward mode, order 1) or c[1..K] (Taylor
 * mode, order K; ad_taylor.c). Each construct maps to the same construct
 * (Huot, Staton & Vákár, "Correctness of automatic differentiation via
 * diffeologies and categorical gluing", FoSSaCS 2020, §4: D is a
 * structure-preserving functor):
 *   - products, records and sums componentwise; a constructor's tangent is
 *     the constructor of T(t) applied to the tangent of its argument, so a
 *     `case` finds the tangent of the payload in the same constructor;
 *   - `if` and `case` transform their branches, so only the taken branch's
 *     derivative is computed (no NaN from the branch not taken);
 *   - loops carry (state, dstate); map is a second map over (xs, dxs)
 *     (arrays stay struct-of-arrays); reduce (+) is reduce (+) of the
 *     tangents; other reductions, folds and scans become loops;
 *   - a call of a top-level function calls its generated transform f_fwd
 *     (one per function, order and set of active parameters; recursion
 *     works); a `with jvp` rule is called instead where there is one;
 *   - a closure becomes a closure on packed pairs Pack(a) -> Pack(b);
 *   - each primitive has one forward rule (PrimInfo.jvp_rule, below).
 * A tangent that is zero is a NULL atom: no code is emitted for it, and
 * values without tangent (int, bool, ...) never get one. The macro runs on
 * program text, innermost derivative first (ad.c), and every application
 * creates fresh variables: nested derivatives cannot confuse their
 * perturbations (Siskind & Pearlmutter 2005). */
#include "dcc.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ================================================================ types */

static Type *rs(Type *t) { return type_resolve(t); }

static bool is_floatish(Type *t)
{
    t = rs(t);
    return t->kind == TY_FLOAT || t->kind == TY_F32;
}

static Type *elem_of(Type *t)
{
    t = rs(t);
    return t->kind == TY_ARRAY ? rs(t->elem) : t;
}

static int rank_of(Type *t)
{
    t = rs(t);
    return t->kind == TY_ARRAY ? t->rank : 0;
}

static int rank_of_atom(CAtom *a) { return rank_of(core_atom_type(a)); }

static bool trivial_in(Type *t, Vec *seen)
{
    t = rs(t);
    switch (t->kind) {
    case TY_FLOAT: case TY_F32: case TY_FUNC: case TY_ERROR:
        return false;
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (!trivial_in(t->args[i], seen))
                return false;
        return true;
    case TY_ARRAY:
        return trivial_in(t->elem, seen);
    case TY_NAMED: {
        for (int i = 0; i < seen->len; i++)
            if (seen->data[i] == t->decl)
                return true;
        vec_push(seen, t->decl);
        bool r = true;
        if (t->decl->kind == TD_RECORD) {
            for (int i = 0; i < t->decl->nfields && r; i++)
                r = trivial_in(type_field_type(t, i), seen);
        } else if (t->decl->kind == TD_VARIANT) {
            for (int i = 0; i < t->decl->ncons && r; i++) {
                Type *a = type_con_arg(t, i);
                if (a)
                    r = trivial_in(a, seen);
            }
        }
        seen->len--;
        return r;
    }
    default:
        return true;
    }
}

bool ad_tangent_trivial(Type *t)
{
    Vec seen = {0};
    bool r = trivial_in(t, &seen);
    vec_free(&seen);
    return r;
}

/* A function type somewhere inside data (not at the top). */
static bool func_inside(Type *t, Vec *seen, bool top)
{
    t = rs(t);
    switch (t->kind) {
    case TY_FUNC:
        return !top;
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (func_inside(t->args[i], seen, false))
                return true;
        return false;
    case TY_ARRAY:
        return func_inside(t->elem, seen, false);
    case TY_NAMED: {
        for (int i = 0; i < seen->len; i++)
            if (seen->data[i] == t->decl)
                return false;
        vec_push(seen, t->decl);
        bool r = false;
        if (t->decl->kind == TD_RECORD) {
            for (int i = 0; i < t->decl->nfields && !r; i++)
                r = func_inside(type_field_type(t, i), seen, false);
        } else if (t->decl->kind == TD_VARIANT) {
            for (int i = 0; i < t->decl->ncons && !r; i++) {
                Type *a = type_con_arg(t, i);
                if (a)
                    r = func_inside(a, seen, false);
            }
        }
        seen->len--;
        return r;
    }
    default:
        return false;
    }
}

/* How values of a type are represented by the macro. */
typedef enum {
    TK_DIFF, /* coefficients c[0..K] */
    TK_NONE, /* c[0] only: no tangent (int, bool, ...) or functions inside data */
    TK_FUNC, /* a function: its dual closure */
} TKind;

static TKind tkind(Type *t)
{
    t = rs(t);
    if (t->kind == TY_FUNC)
        return TK_FUNC;
    Vec seen = {0};
    bool inside = func_inside(t, &seen, true);
    vec_free(&seen);
    if (inside || ad_tangent_trivial(t))
        return TK_NONE;
    return TK_DIFF;
}

static Type *tangent_of(Type *t) { return rs(type_tangent(t)); }

/* Pack(t) for order K (see dcc.h). */
static Type *pack_type(Type *t, int K)
{
    t = rs(t);
    switch (tkind(t)) {
    case TK_FUNC:
        return type_func(pack_type(t->args[0], K), pack_type(t->args[1], K));
    case TK_NONE:
        return t;
    case TK_DIFF: {
        Type **it = NEWN(Type *, K + 1);
        it[0] = t;
        for (int k = 1; k <= K; k++)
            it[k] = tangent_of(t);
        return type_tuple(it, K + 1);
    }
    }
    return t;
}

/* ================================================================ emission */

void ad_error(AdFwd *F, Loc loc, const char *fmt, ...)
{
    if (F->quiet > 0)
        return;
    F->ok = false;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    error_at(loc.file ? loc : F->loc, "%s", msg);
}

static const char *dname(const char *n)
{
    if (!n || !*n)
        return "d";
    return arena_printf(dcc_arena, "d%s", n);
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

static CAtom *bind_expr(AdFwd *F, const char *name, CExpr *e)
{
    CVar *v = core_bind(F->blk, name, e);
    ad_note_def(v, e);
    return core_atom_var(v);
}

CAtom *ad_emit(AdFwd *F, const char *name, Prim op, Type *t, CAtom **args, int n, int64_t imm)
{
    return bind_expr(F, name, core_prim(op, t, F->loc, args, n, imm));
}

static CAtom *emit1(AdFwd *F, const char *name, Prim op, Type *t, CAtom *a, int64_t imm)
{
    return ad_emit(F, name, op, t, &a, 1, imm);
}

static CAtom *emit2(AdFwd *F, const char *name, Prim op, Type *t, CAtom *a, CAtom *b)
{
    CAtom *xs[2] = {a, b};
    return ad_emit(F, name, op, t, xs, 2, 0);
}

CAtom *ad_lit(double v, Type *like)
{
    Type *e = elem_of(like);
    return core_atom_float(v, e->kind == TY_F32 ? type_f32() : type_float());
}

static bool is_flit(CAtom *a) { return a && a->kind == CA_FLOAT; }

static bool is_val(CAtom *a, double v) { return is_flit(a) && a->u.fval == v; }

/* NULL when the atom is a known zero tangent: a 0.0 literal, zeros_like,
 * a tuple or record of known zeros. */
static CAtom *nz(CAtom *a)
{
    if (!a)
        return NULL;
    if (a->kind == CA_FLOAT && a->u.fval == 0)
        return NULL;
    if (a->kind == CA_UNIT)
        return NULL;
    CExpr *d = ad_def_of(a);
    if (d && d->kind == CE_PRIM) {
        if (d->u.prim.op == P_ZEROS_LIKE || d->u.prim.op == P_ZEROS)
            return NULL;
        if ((d->u.prim.op == P_TUPLE || d->u.prim.op == P_RECORD) && d->nargs > 0) {
            for (int i = 0; i < d->nargs; i++)
                if (nz(d->args[i]))
                    return a;
            return NULL;
        }
    }
    return a;
}

static Type *bcast_type(Type *a, Type *b)
{
    a = rs(a);
    b = rs(b);
    if (a->kind == TY_ARRAY && b->kind == TY_ARRAY)
        return b->rank > a->rank ? b : a;
    if (a->kind == TY_ARRAY)
        return a;
    if (b->kind == TY_ARRAY)
        return b;
    return a;
}

CAtom *ad_add(AdFwd *F, CAtom *a, CAtom *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (is_flit(a) && is_flit(b))
        return ad_lit(a->u.fval + b->u.fval, a->type);
    return emit2(F, "t", P_ADD, bcast_type(core_atom_type(a), core_atom_type(b)), a, b);
}

CAtom *ad_neg(AdFwd *F, CAtom *a)
{
    if (!a)
        return NULL;
    if (is_flit(a))
        return ad_lit(-a->u.fval, a->type);
    return emit1(F, "t", P_NEG, core_atom_type(a), a, 0);
}

CAtom *ad_sub(AdFwd *F, CAtom *a, CAtom *b)
{
    if (!b)
        return a;
    if (!a)
        return ad_neg(F, b);
    if (is_flit(a) && is_flit(b))
        return ad_lit(a->u.fval - b->u.fval, a->type);
    return emit2(F, "t", P_SUB, bcast_type(core_atom_type(a), core_atom_type(b)), a, b);
}

CAtom *ad_mul(AdFwd *F, CAtom *a, CAtom *b)
{
    if (!a || !b || is_val(a, 0) || is_val(b, 0))
        return NULL;
    if (is_flit(a) && is_flit(b))
        return ad_lit(a->u.fval * b->u.fval, a->type);
    Type *t = bcast_type(core_atom_type(a), core_atom_type(b));
    if (is_val(a, 1) && core_type_equal(core_atom_type(b), t))
        return b;
    if (is_val(b, 1) && core_type_equal(core_atom_type(a), t))
        return a;
    if (is_val(a, -1) && core_type_equal(core_atom_type(b), t))
        return ad_neg(F, b);
    if (is_val(b, -1) && core_type_equal(core_atom_type(a), t))
        return ad_neg(F, a);
    return emit2(F, "t", P_MUL, t, a, b);
}

CAtom *ad_div(AdFwd *F, CAtom *a, CAtom *b)
{
    if (!a || is_val(a, 0))
        return NULL;
    if (!b)
        b = ad_lit(0, core_atom_type(a));
    if (is_flit(a) && is_flit(b) && b->u.fval != 0)
        return ad_lit(a->u.fval / b->u.fval, a->type);
    Type *t = bcast_type(core_atom_type(a), core_atom_type(b));
    if (is_val(b, 1) && core_type_equal(core_atom_type(a), t))
        return a;
    return emit2(F, "t", P_DIV, t, a, b);
}

CAtom *ad_un(AdFwd *F, Prim op, CAtom *a)
{
    return emit1(F, "t", op, core_atom_type(a), a, 0);
}

CAtom *ad_bin(AdFwd *F, Prim op, CAtom *a, CAtom *b)
{
    return emit2(F, "t", op, bcast_type(core_atom_type(a), core_atom_type(b)), a, b);
}

CAtom *ad_cmp(AdFwd *F, Prim op, CAtom *a, CAtom *b)
{
    if (is_flit(a) && is_flit(b)) {
        double x = a->u.fval, y = b->u.fval;
        switch (op) {
        case P_EQ: return core_atom_bool(x == y);
        case P_NE: return core_atom_bool(x != y);
        case P_LT: return core_atom_bool(x < y);
        case P_LE: return core_atom_bool(x <= y);
        case P_GT: return core_atom_bool(x > y);
        case P_GE: return core_atom_bool(x >= y);
        default: break;
        }
    }
    Type *t = bcast_type(core_atom_type(a), core_atom_type(b));
    Type *bt = rank_of(t) ? type_array(type_bool(), rank_of(t)) : type_bool();
    return emit2(F, "c", op, bt, a, b);
}

CAtom *ad_select(AdFwd *F, CAtom *c, CAtom *a, CAtom *b)
{
    if (!a && !b)
        return NULL;
    if (c->kind == CA_BOOL)
        return c->u.ival ? a : b;
    Type *like = a ? core_atom_type(a) : core_atom_type(b);
    if (!a)
        a = ad_lit(0, like);
    if (!b)
        b = ad_lit(0, like);
    Type *t = bcast_type(core_atom_type(a), core_atom_type(b));
    int r = rank_of(core_atom_type(c));
    if (r > rank_of(t))
        t = type_array(elem_of(t), r);
    CAtom *xs[3] = {c, a, b};
    return ad_emit(F, "t", P_SELECT, t, xs, 3, 0);
}

/* s * a on any vector space (tuples and records componentwise). */
CAtom *ad_scale(AdFwd *F, double s, CAtom *a)
{
    if (!a)
        return NULL;
    if (s == 1)
        return a;
    Type *t = rs(core_atom_type(a));
    if (t->kind == TY_TUPLE || (t->kind == TY_NAMED && t->decl->kind == TD_RECORD)) {
        bool tup = t->kind == TY_TUPLE;
        int n = tup ? t->nargs : t->decl->nfields;
        CAtom **c = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++) {
            Type *ct = tup ? rs(t->args[i]) : core_type_field(t, i);
            CAtom *x = emit1(F, "c", tup ? P_PROJ : P_FIELD, ct, a, i);
            c[i] = ad_tangent_trivial(ct) ? x : ad_scale(F, s, x);
            if (!c[i])
                c[i] = x;
        }
        return ad_emit(F, "s", tup ? P_TUPLE : P_RECORD, t, c, n, 0);
    }
    if (ad_tangent_trivial(t))
        return a;
    return ad_mul(F, ad_lit(s, t), a);
}

/* ================================================================ zeros */

typedef struct ZeroHelper {
    Type *t;
    CFun *f;
    struct ZeroHelper *next;
} ZeroHelper;

static ZeroHelper *zero_helpers;
static CProgram *zero_prog;

static bool has_variant(Type *t, Vec *seen)
{
    t = rs(t);
    switch (t->kind) {
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (has_variant(t->args[i], seen))
                return true;
        return false;
    case TY_ARRAY:
        return has_variant(t->elem, seen);
    case TY_NAMED: {
        if (t->decl->kind == TD_VARIANT)
            return true;
        for (int i = 0; i < seen->len; i++)
            if (seen->data[i] == t->decl)
                return false;
        vec_push(seen, t->decl);
        bool r = false;
        for (int i = 0; i < t->decl->nfields && !r; i++)
            r = has_variant(type_field_type(t, i), seen);
        seen->len--;
        return r;
    }
    default:
        return false;
    }
}

static CFun *zero_helper(AdFwd *F, Type *t);

CAtom *ad_zero(AdFwd *F, Type *t, CAtom *x)
{
    t = rs(t);
    Type *tt = tangent_of(t);
    switch (t->kind) {
    case TY_FLOAT: case TY_F32:
        return ad_lit(0, t);
    case TY_INT: case TY_BOOL: case TY_UNIT: case TY_STRING: case TY_KEY:
        return core_atom_unit();
    case TY_TUPLE: {
        CAtom **c = NEWN(CAtom *, t->nargs > 0 ? t->nargs : 1);
        for (int i = 0; i < t->nargs; i++) {
            Type *ct = rs(t->args[i]);
            CAtom *xi = (is_floatish(ct) || ad_tangent_trivial(ct)) && rs(ct)->kind != TY_NAMED
                            ? x : emit1(F, "c", P_PROJ, ct, x, i);
            c[i] = ad_zero(F, ct, xi);
        }
        return ad_emit(F, "z", P_TUPLE, tt, c, t->nargs, 0);
    }
    case TY_FUNC:
        ad_error(F, F->loc, "internal error: ad: zero of a function type");
        return core_atom_unit();
    case TY_NAMED:
        if (t->decl->kind == TD_VARIANT) {
            CFun *h = zero_helper(F, t);
            CExpr *e = core_expr(CE_CALL, tt, F->loc);
            e->u.fun = h;
            e->nargs = 1;
            e->args = NEWN(CAtom *, 1);
            e->args[0] = x;
            return bind_expr(F, "z", e);
        }
        if (t->decl->kind == TD_RECORD) {
            Vec seen = {0};
            bool v = has_variant(t, &seen);
            vec_free(&seen);
            if (v) {
                int n = t->decl->nfields;
                CAtom **c = NEWN(CAtom *, n > 0 ? n : 1);
                for (int i = 0; i < n; i++) {
                    Type *ct = core_type_field(t, i);
                    c[i] = ad_zero(F, ct, emit1(F, "c", P_FIELD, ct, x, i));
                }
                return ad_emit(F, "z", P_RECORD, tt, c, n, 0);
            }
        }
        break;
    case TY_ARRAY: {
        Vec seen = {0};
        bool v = has_variant(t, &seen);
        vec_free(&seen);
        if (v)
            ad_error(F, F->loc, "cannot differentiate: the zero of an array of variants is not supported yet");
        break;
    }
    default:
        break;
    }
    return emit1(F, "z", P_ZEROS_LIKE, tt, x, 0);
}

CAtom *ad_materialise(AdFwd *F, CAtom *d, Type *t, CAtom *x)
{
    return d ? d : ad_zero(F, t, x);
}

/* zero_<D> (v : D) : T(D) = case v of C_i p => C_i (zero p): the zero
 * tangent of a variant value has the value's constructor. */
static CFun *zero_helper(AdFwd *F, Type *t)
{
    if (zero_prog != F->prog) {
        zero_helpers = NULL;
        zero_prog = F->prog;
    }
    for (ZeroHelper *z = zero_helpers; z; z = z->next)
        if (core_type_equal(z->t, t))
            return z->f;
    Type *tt = tangent_of(t);
    CFun *f = core_fun_new(ad_fun_name(F->prog, arena_printf(dcc_arena, "zero_%s", t->decl->name)),
                           "zero", F->loc);
    ZeroHelper *z = NEW(ZeroHelper);
    z->t = t;
    z->f = f;
    z->next = zero_helpers;
    zero_helpers = z;
    f->nparams = 1;
    f->params = NEWN(CVar *, 1);
    f->params[0] = core_var("v", t, F->loc);
    f->ret = tt;
    f->body = core_block_new();
    core_program_add(F->prog, f);
    int n = t->decl->ncons;
    CExpr *c = core_expr(CE_CASE, tt, F->loc);
    c->nargs = 1;
    c->args = NEWN(CAtom *, 1);
    c->args[0] = core_atom_var(f->params[0]);
    c->u.case_.nalts = n;
    c->u.case_.alts = NEWN(CAlt, n > 0 ? n : 1);
    AdFwd G = {.prog = F->prog, .order = 1, .loc = F->loc, .ok = true};
    for (int i = 0; i < n; i++) {
        CAlt *a = &c->u.case_.alts[i];
        a->con = i;
        a->body = core_block_new();
        G.blk = a->body;
        Type *at = core_type_con_arg(t, i);
        CAtom *arg = NULL;
        if (at) {
            a->payload = core_var("p", at, F->loc);
            arg = ad_zero(&G, at, core_atom_var(a->payload));
        }
        a->body->result = ad_emit(&G, "z", P_CON, tt, &arg, arg ? 1 : 0, i);
    }
    G.blk = f->body;
    f->body->result = bind_expr(&G, "z", c);
    if (!G.ok)
        F->ok = false;
    return f;
}

/* ================================================================ reps */

static AdRep *rep_new(AdFwd *F)
{
    AdRep *r = NEW(AdRep);
    r->c = NEWN(CAtom *, F->order + 1);
    return r;
}

AdRep *ad_rep(AdFwd *F, CAtom *primal)
{
    AdRep *r = rep_new(F);
    r->c[0] = primal;
    return r;
}

static AdRep *rep_of(AdFwd *F, CAtom *a)
{
    if (a->kind == CA_VAR) {
        AdRep *r = core_map_get(&F->env, a->u.var);
        if (r)
            return r;
    }
    return ad_rep(F, a); /* a literal or a variable from outside the region */
}

static bool rep_has_tangent(AdFwd *F, AdRep *r)
{
    if (r->dual)
        return r->active;
    for (int k = 1; k <= F->order; k++)
        if (r->c[k])
            return true;
    return false;
}

/* Pack(t) of a representation (materialising zeros). */
static CAtom *pack(AdFwd *F, AdRep *r, Type *t, Loc loc)
{
    t = rs(t);
    switch (tkind(t)) {
    case TK_FUNC:
        if (r->dual)
            return r->dual;
        ad_error(F, loc, "cannot differentiate through this function value: it comes from outside the "
                         "differentiated function (apply it to a value that does not depend on the input, "
                         "or define it inside)");
        return core_atom_unit();
    case TK_NONE:
        if (!r->c[0]) {
            ad_error(F, loc, "cannot differentiate: a closure that depends on the differentiated input is "
                             "stored in a data structure");
            return core_atom_unit();
        }
        return r->c[0];
    case TK_DIFF: {
        int K = F->order;
        CAtom **c = NEWN(CAtom *, K + 1);
        c[0] = r->c[0];
        for (int k = 1; k <= K; k++)
            c[k] = ad_materialise(F, r->c[k], t, r->c[0]);
        return ad_emit(F, "pk", P_TUPLE, pack_type(t, K), c, K + 1, 0);
    }
    }
    return r->c[0];
}

static AdRep *unpack(AdFwd *F, CAtom *a, Type *t)
{
    t = rs(t);
    AdRep *r = rep_new(F);
    switch (tkind(t)) {
    case TK_FUNC:
        r->dual = a;
        r->active = true;
        return r;
    case TK_NONE:
        r->c[0] = a;
        return r;
    case TK_DIFF: {
        CExpr *d = ad_def_of(a);
        bool known = d && d->kind == CE_PRIM && d->u.prim.op == P_TUPLE && d->nargs == F->order + 1;
        for (int k = 0; k <= F->order; k++) {
            CAtom *x = known ? d->args[k] : emit1(F, k ? "dx" : "x", P_PROJ, k ? tangent_of(t) : t, a, k);
            r->c[k] = k ? nz(x) : x;
        }
        return r;
    }
    }
    return r;
}

/* ================================================================ free variables */

static void fv_block(CBlock *b, CoreMap *bound, Vec *out, CoreMap *seen);

static void fv_atom(CAtom *a, CoreMap *bound, Vec *out, CoreMap *seen)
{
    if (a && a->kind == CA_VAR && !core_map_get(bound, a->u.var) && !core_map_get(seen, a->u.var)) {
        core_map_put(seen, a->u.var, (void *)1);
        vec_push(out, a->u.var);
    }
}

static void fv_bindv(CVar *v, CoreMap *bound)
{
    if (v)
        core_map_put(bound, v, (void *)1);
}

static void fv_lambda(CLambda *l, CoreMap *bound, Vec *out, CoreMap *seen)
{
    if (!l)
        return;
    for (int i = 0; i < l->nparams; i++)
        fv_bindv(l->params[i], bound);
    fv_block(l->body, bound, out, seen);
}

static void fv_expr(CExpr *e, CoreMap *bound, Vec *out, CoreMap *seen)
{
    for (int i = 0; i < e->nargs; i++)
        fv_atom(e->args[i], bound, out, seen);
    switch (e->kind) {
    case CE_LAMBDA: fv_lambda(e->u.lambda, bound, out, seen); break;
    case CE_IF:
        fv_block(e->u.if_.then_, bound, out, seen);
        fv_block(e->u.if_.else_, bound, out, seen);
        break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++) {
            fv_bindv(e->u.case_.alts[i].payload, bound);
            fv_block(e->u.case_.alts[i].body, bound, out, seen);
        }
        break;
    case CE_LOOP:
        fv_bindv(e->u.loop.state, bound);
        fv_bindv(e->u.loop.ivar, bound);
        if (e->u.loop.cond)
            fv_block(e->u.loop.cond, bound, out, seen);
        fv_block(e->u.loop.body, bound, out, seen);
        break;
    case CE_SOAC: fv_lambda(e->u.soac.fn, bound, out, seen); break;
    case CE_DERIV: fv_lambda(e->u.deriv.fn, bound, out, seen); break;
    default: break;
    }
}

static void fv_block(CBlock *b, CoreMap *bound, Vec *out, CoreMap *seen)
{
    for (int i = 0; i < b->nbinds; i++) {
        fv_expr(b->binds[i].e, bound, out, seen);
        fv_bindv(b->binds[i].var, bound);
    }
    fv_atom(b->result, bound, out, seen);
}

/* Whether a lambda uses a variable whose representation carries a tangent. */
static bool lambda_active(AdFwd *F, CLambda *l)
{
    CoreMap bound = {0}, seen = {0};
    Vec out = {0};
    fv_lambda(l, &bound, &out, &seen);
    bool act = false;
    for (int i = 0; i < out.len && !act; i++) {
        AdRep *r = core_map_get(&F->env, out.data[i]);
        if (r && rep_has_tangent(F, r))
            act = true;
    }
    core_map_free(&bound);
    core_map_free(&seen);
    vec_free(&out);
    return act;
}

/* ================================================================ the macro */

static AdRep *fwd_block(AdFwd *F, CBlock *in, CBlock *out);
static void fwd_bind(AdFwd *F, CVar *x, CExpr *e);

static void env_put(AdFwd *F, CVar *x, AdRep *r) { core_map_put(&F->env, x, r); }

/* ---------------------------------------------------------------- prims */

/* The rule of a primitive (forward: jvp_rule; Taylor: ad_taylor.c). */
static void taylor_prim(AdFwd *F, CExpr *e, AdRep **ar, CAtom **x, AdRep *res);

static AdRep *fwd_prim(AdFwd *F, CVar *xv, CExpr *e)
{
    int n = e->nargs;
    Prim op = e->u.prim.op;
    AdRep **ar = NEWN(AdRep *, n > 0 ? n : 1);
    CAtom **x = NEWN(CAtom *, n > 0 ? n : 1);
    bool any = false;
    for (int i = 0; i < n; i++) {
        ar[i] = rep_of(F, e->args[i]);
        x[i] = ar[i]->c[0];
        if (tkind(core_atom_type(e->args[i])) == TK_FUNC) {
            if (!x[i] || ar[i]->active) {
                ad_error(F, e->loc, "cannot differentiate: a closure that depends on the differentiated "
                                    "input is stored in a data structure");
                x[i] = e->args[i];
            }
        } else if (rep_has_tangent(F, ar[i])) {
            any = true;
        }
    }
    CExpr *pe = core_prim(op, e->type, e->loc, x, n, e->u.prim.imm);
    CAtom *y = bind_expr(F, xv->name, pe);
    AdRep *res = ad_rep(F, y);
    unsigned fl = core_prims[op].flags;
    if (!any || (fl & (PRIM_NONDIFF | PRIM_EFFECT)) || tkind(e->type) != TK_DIFF)
        return res;
    if (F->order == 1) {
        AdJvpRule rule = (AdJvpRule)core_prims[op].jvp_rule;
        if (!rule) {
            ad_error(F, e->loc, "no derivative rule for the primitive '%s'", core_prims[op].name);
            return res;
        }
        CAtom **dx = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            dx[i] = ar[i]->c[1];
        CAtom *d = rule(F, pe, x, dx, y);
        /* an elementwise tangent of lower rank than the value broadcasts */
        if (d && (fl & PRIM_ELEMENTWISE) && rank_of_atom(d) < rank_of_atom(y))
            d = emit2(F, "t", P_ADD, tangent_of(e->type),
                      emit1(F, "z", P_ZEROS_LIKE, tangent_of(e->type), y, 0), d);
        res->c[1] = d;
        return res;
    }
    taylor_prim(F, pe, ar, x, res);
    return res;
}

/* ---------------------------------------------------------------- calls */

typedef struct FunMemo {
    CFun *f;
    int order;
    uint64_t mask;
    CFun *g;
    struct FunMemo *next;
} FunMemo;

static FunMemo *fun_memo;
static CProgram *fun_memo_prog;

/* f_fwd: f's transform for order K with the parameters in `mask` active
 * (a differentiable one receives its K tangents after it, a function one
 * its dual closure); returns Pack(f's result). */
static CFun *fwd_fun(AdFwd *F, CFun *f, int K, uint64_t mask)
{
    if (fun_memo_prog != F->prog) {
        fun_memo = NULL;
        fun_memo_prog = F->prog;
    }
    for (FunMemo *m = fun_memo; m; m = m->next)
        if (m->f == f && m->order == K && m->mask == mask)
            return m->g;
    if (!ad_prepare_fun(f)) {
        F->ok = false;
        return NULL;
    }
    const char *base = K == 1 ? arena_printf(dcc_arena, "%s_fwd", f->name)
                              : arena_printf(dcc_arena, "%s_taylor%d", f->name, K);
    CFun *g = core_fun_new(ad_fun_name(F->prog, base), f->src_name, f->loc);
    FunMemo *m = NEW(FunMemo);
    m->f = f;
    m->order = K;
    m->mask = mask;
    m->g = g;
    m->next = fun_memo;
    fun_memo = m;
    AdFwd G = {.prog = F->prog, .order = K, .loc = f->loc, .ok = true};
    Vec ps = {0};
    for (int i = 0; i < f->nparams; i++) {
        CVar *p = f->params[i];
        Type *t = rs(p->type);
        bool on = i < 64 && (mask >> i & 1);
        AdRep *r = rep_new(&G);
        switch (tkind(t)) {
        case TK_FUNC:
            if (on) {
                CVar *d = core_var(p->name, pack_type(t, K), p->loc);
                vec_push(&ps, d);
                r->dual = core_atom_var(d);
                r->active = true;
            } else {
                CVar *v = core_var(p->name, t, p->loc);
                vec_push(&ps, v);
                r->c[0] = core_atom_var(v);
            }
            break;
        case TK_NONE: {
            CVar *v = core_var(p->name, t, p->loc);
            vec_push(&ps, v);
            r->c[0] = core_atom_var(v);
            break;
        }
        case TK_DIFF: {
            CVar *v = core_var(p->name, t, p->loc);
            vec_push(&ps, v);
            r->c[0] = core_atom_var(v);
            if (on)
                for (int k = 1; k <= K; k++) {
                    CVar *d = core_var(dname(p->name), tangent_of(t), p->loc);
                    vec_push(&ps, d);
                    r->c[k] = core_atom_var(d);
                }
            break;
        }
        }
        env_put(&G, p, r);
    }
    g->nparams = ps.len;
    g->params = NEWN(CVar *, ps.len > 0 ? ps.len : 1);
    for (int i = 0; i < ps.len; i++)
        g->params[i] = ps.data[i];
    vec_free(&ps);
    g->ret = pack_type(f->ret, K);
    g->body = core_block_new();
    core_program_add(F->prog, g);
    AdRep *r = fwd_block(&G, f->body, g->body);
    G.blk = g->body;
    g->body->result = pack(&G, r, f->ret, f->loc);
    core_map_free(&G.env);
    if (!G.ok)
        F->ok = false;
    return g;
}

static CAtom *emit_call(AdFwd *F, const char *name, CFun *f, Type *t, CAtom **args, int n)
{
    CExpr *e = core_expr(CE_CALL, t, F->loc);
    e->u.fun = f;
    e->nargs = n;
    e->args = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        e->args[i] = args[i];
    return bind_expr(F, name, e);
}

/* The argument of a rule: the parameters' values, a tuple when several. */
static Type *params_type(CFun *f)
{
    if (f->nparams == 1)
        return rs(f->params[0]->type);
    Type **ts = NEWN(Type *, f->nparams > 0 ? f->nparams : 1);
    for (int i = 0; i < f->nparams; i++)
        ts[i] = f->params[i]->type;
    return type_tuple(ts, f->nparams);
}

/* Calls the rule (x, dx) -> (b, T b) on atoms; returns its result atom. */
static CAtom *call_rule(AdFwd *F, CFun *rule, CAtom *a, CAtom *da, Type *at)
{
    Type *rt = rule->ret;
    if (rule->nparams == 1) {
        CAtom *xs[2] = {a, da};
        CAtom *p = ad_emit(F, "p", P_TUPLE, type_tuple2(at, tangent_of(at)), xs, 2, 0);
        return emit_call(F, "r", rule, rt, &p, 1);
    }
    CAtom *xs[2] = {a, da};
    return emit_call(F, "r", rule, rt, xs, 2);
}

static void fwd_rule_taylor(AdFwd *F, CVar *xv, CExpr *e, AdRep **ar);
static void ensure_dual(AdFwd *F, AdRep *r, CAtom *a);

/* <u, v> on T(t): the sum of the products of the float components. */
static CAtom *inner(AdFwd *F, CAtom *u, CAtom *v, Type *et)
{
    Type *t = rs(core_atom_type(u));
    if (ad_tangent_trivial(t))
        return NULL;
    if (t->kind == TY_TUPLE || (t->kind == TY_NAMED && t->decl->kind == TD_RECORD)) {
        bool tup = t->kind == TY_TUPLE;
        int n = tup ? t->nargs : t->decl->nfields;
        CAtom *s = NULL;
        for (int i = 0; i < n; i++) {
            Type *ct = tup ? rs(t->args[i]) : core_type_field(t, i);
            s = ad_add(F, s, inner(F, emit1(F, "u", tup ? P_PROJ : P_FIELD, ct, u, i),
                                   emit1(F, "v", tup ? P_PROJ : P_FIELD, ct, v, i), et));
        }
        return s;
    }
    if (t->kind == TY_ARRAY && is_floatish(t->elem)) {
        CAtom *p = ad_mul(F, u, v);
        CAtom *s = emit1(F, "s", P_SUM, rs(t->elem), ad_flatten(F, p, NULL), 0);
        return rs(t->elem)->kind == rs(et)->kind ? s : emit1(F, "s", rs(et)->kind == TY_F32 ? P_TO_F32 : P_TO_FLOAT, et, s, 0);
    }
    if (is_floatish(t)) {
        CAtom *p = ad_mul(F, u, v);
        return t->kind == rs(et)->kind ? p : emit1(F, "s", rs(et)->kind == TY_F32 ? P_TO_F32 : P_TO_FLOAT, et, p, 0);
    }
    ad_error(F, F->loc, "forward mode through a vjp rule on %s is not supported", type_to_string(t));
    return NULL;
}

/* A function with a `with vjp` rule and a scalar result, in forward mode:
 * dy = <pullback 1, dx> (the rule's transpose applied to the only output
 * direction), so that forward and reverse mode agree with the rule. */
static AdRep *fwd_vjp_rule(AdFwd *F, CVar *xv, CExpr *e, AdRep **ar)
{
    CFun *f = e->u.fun;
    int n = e->nargs;
    for (int i = 0; i < n; i++)
        if (tkind(core_atom_type(e->args[i])) == TK_FUNC)
            return NULL;
    if (!ad_prepare_fun(f->vjp_rule))
        F->ok = false;
    Type *at = params_type(f);
    CAtom *a, *da;
    if (n == 1) {
        a = ar[0]->c[0];
        da = ad_materialise(F, ar[0]->c[1], at, a);
    } else {
        CAtom **xs = NEWN(CAtom *, n), **ds = NEWN(CAtom *, n);
        for (int i = 0; i < n; i++) {
            xs[i] = ar[i]->c[0];
            ds[i] = ad_materialise(F, ar[i]->c[1], core_atom_type(xs[i]), xs[i]);
        }
        a = ad_emit(F, "x", P_TUPLE, at, xs, n, 0);
        da = ad_emit(F, "dx", P_TUPLE, tangent_of(at), ds, n, 0);
    }
    CFun *rule = f->vjp_rule;
    CAtom *r = emit_call(F, "r", rule, rule->ret, &a, 1);
    Type *pbt = rs(rule->ret)->args[1];
    CAtom *pb = emit1(F, "pb", P_PROJ, pbt, r, 1);
    CExpr *ap = core_expr(CE_APPLY, rs(pbt)->args[1], F->loc);
    ap->nargs = 2;
    ap->args = NEWN(CAtom *, 2);
    ap->args[0] = pb;
    ap->args[1] = ad_lit(1, e->type);
    CAtom *g = bind_expr(F, "g", ap);
    AdRep *res = rep_new(F);
    res->c[0] = emit1(F, xv->name, P_PROJ, e->type, r, 0);
    res->c[1] = inner(F, g, da, e->type);
    return res;
}

static AdRep *fwd_call(AdFwd *F, CVar *xv, CExpr *e)
{
    CFun *f = e->u.fun;
    int n = e->nargs;
    AdRep **ar = NEWN(AdRep *, n > 0 ? n : 1);
    bool active = false, primal_ok = true;
    uint64_t mask = 0;
    for (int i = 0; i < n; i++) {
        ar[i] = rep_of(F, e->args[i]);
        TKind k = tkind(core_atom_type(e->args[i]));
        if (k == TK_FUNC) {
            ensure_dual(F, ar[i], e->args[i]);
            if (ar[i]->active)
                active = true;
            if (!ar[i]->c[0])
                primal_ok = false;
            if (ar[i]->dual && i < 64)
                mask |= (uint64_t)1 << i;
        } else if (k == TK_DIFF && rep_has_tangent(F, ar[i])) {
            active = true;
            if (i >= 64) {
                ad_error(F, e->loc, "cannot differentiate a call with more than 64 arguments");
                return ad_rep(F, e->args[i]);
            }
            mask |= (uint64_t)1 << i;
        }
    }
    if (!active && primal_ok) {
        CAtom **x = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            x[i] = ar[i]->c[0];
        CAtom *y = emit_call(F, xv->name, f, e->type, x, n);
        return ad_rep(F, y); /* a function result is then from outside */
    }
    if (f->jvp_rule) {
        for (int i = 0; i < n; i++)
            if (tkind(core_atom_type(e->args[i])) == TK_FUNC || tkind(e->type) == TK_FUNC) {
                ad_error(F, e->loc, "the jvp rule of '%s' cannot be used with function arguments or results",
                         f->src_name);
                return ad_rep(F, e->args[0]);
            }
        if (!ad_prepare_fun(f->jvp_rule))
            F->ok = false;
        if (F->order > 1) {
            AdRep *r = rep_new(F);
            env_put(F, xv, r); /* filled below */
            fwd_rule_taylor(F, xv, e, ar);
            return core_map_get(&F->env, xv);
        }
        Type *at = params_type(f);
        CAtom *a, *da;
        if (n == 1) {
            a = ar[0]->c[0];
            da = ad_materialise(F, ar[0]->c[1], at, a);
        } else {
            CAtom **xs = NEWN(CAtom *, n), **ds = NEWN(CAtom *, n);
            for (int i = 0; i < n; i++) {
                xs[i] = ar[i]->c[0];
                ds[i] = ad_materialise(F, ar[i]->c[1], core_atom_type(xs[i]), xs[i]);
            }
            a = ad_emit(F, "x", P_TUPLE, at, xs, n, 0);
            da = ad_emit(F, "dx", P_TUPLE, tangent_of(at), ds, n, 0);
        }
        CAtom *r = call_rule(F, f->jvp_rule, a, da, at);
        AdRep *res = rep_new(F);
        res->c[0] = emit1(F, xv->name, P_PROJ, e->type, r, 0);
        res->c[1] = nz(emit1(F, dname(xv->name), P_PROJ, tangent_of(e->type), r, 1));
        return res;
    }
    if (f->vjp_rule && F->order == 1 && is_floatish(e->type)) {
        AdRep *r = fwd_vjp_rule(F, xv, e, ar);
        if (r)
            return r;
    }
    CFun *g = fwd_fun(F, f, F->order, mask);
    if (!g)
        return ad_rep(F, e->args[0]);
    Vec args = {0};
    for (int i = 0; i < n; i++) {
        bool on = mask >> i & 1;
        TKind k = tkind(core_atom_type(e->args[i]));
        if (k == TK_FUNC) {
            vec_push(&args, on ? ar[i]->dual : ar[i]->c[0]);
        } else {
            vec_push(&args, ar[i]->c[0]);
            if (k == TK_DIFF && on)
                for (int j = 1; j <= F->order; j++)
                    vec_push(&args, ad_materialise(F, ar[i]->c[j], core_atom_type(ar[i]->c[0]), ar[i]->c[0]));
        }
    }
    CAtom *r = emit_call(F, xv->name, g, g->ret, (CAtom **)args.data, args.len);
    vec_free(&args);
    return unpack(F, r, e->type);
}

/* Taylor mode through a `with jvp` rule: y' = rule(x, x').1, so
 * y_k = [rule(x(t), x'(t)).1]_{k-1} / k, the series of the rule taken by
 * the macro at order K - 1 (the rule is an ordinary function). */
static void fwd_rule_taylor(AdFwd *F, CVar *xv, CExpr *e, AdRep **ar)
{
    int K = F->order, n = e->nargs;
    CFun *f = e->u.fun;
    AdFwd G = {.prog = F->prog, .order = K - 1, .blk = F->blk, .loc = F->loc, .ok = true, .quiet = F->quiet};
    /* source variables for x and x' with their series in G */
    CBlock *src = core_block_new();
    CAtom **xs = NEWN(CAtom *, n), **ds = NEWN(CAtom *, n);
    for (int i = 0; i < n; i++) {
        Type *t = core_atom_type(e->args[i]);
        CVar *sx = core_var("x", t, e->loc), *sd = core_var("dx", tangent_of(t), e->loc);
        AdRep *rx = rep_new(&G), *rd = rep_new(&G);
        for (int j = 0; j <= K - 1; j++)
            rx->c[j] = ar[i]->c[j];
        G.blk = F->blk;
        rd->c[0] = ad_materialise(&G, ar[i]->c[1], t, ar[i]->c[0]);
        for (int j = 1; j <= K - 1; j++)
            rd->c[j] = ad_scale(&G, (double)(j + 1), ar[i]->c[j + 1]);
        env_put(&G, sx, rx);
        env_put(&G, sd, rd);
        xs[i] = core_atom_var(sx);
        ds[i] = core_atom_var(sd);
    }
    Type *at = params_type(f);
    CAtom *a = xs[0], *da = ds[0];
    if (n > 1) {
        a = core_atom_var(core_bind(src, "x", core_prim(P_TUPLE, at, e->loc, xs, n, 0)));
        da = core_atom_var(core_bind(src, "dx", core_prim(P_TUPLE, tangent_of(at), e->loc, ds, n, 0)));
    }
    CFun *rule = f->jvp_rule;
    CExpr *call = core_expr(CE_CALL, rule->ret, e->loc);
    call->u.fun = rule;
    if (rule->nparams == 1) {
        CAtom *pr[2] = {a, da};
        CAtom *p = core_atom_var(core_bind(src, "p", core_prim(P_TUPLE, type_tuple2(at, tangent_of(at)),
                                                                e->loc, pr, 2, 0)));
        call->nargs = 1;
        call->args = NEWN(CAtom *, 1);
        call->args[0] = p;
    } else {
        call->nargs = 2;
        call->args = NEWN(CAtom *, 2);
        call->args[0] = a;
        call->args[1] = da;
    }
    CAtom *r = core_atom_var(core_bind(src, "r", call));
    CAtom *y0 = core_atom_var(core_bind(src, "y", core_prim(P_PROJ, e->type, e->loc, &r, 1, 0)));
    CAtom *g = core_atom_var(core_bind(src, "g", core_prim(P_PROJ, tangent_of(e->type), e->loc, &r, 1, 1)));
    src->result = g;
    AdRep *gr = fwd_block(&G, src, F->blk);
    AdRep *yr = core_map_get(&G.env, y0->u.var);
    core_map_free(&G.env);
    if (!G.ok)
        F->ok = false;
    AdRep *res = core_map_get(&F->env, xv);
    res->c[0] = yr->c[0];
    for (int k = 1; k <= K; k++)
        res->c[k] = ad_scale(F, 1.0 / k, gr->c[k - 1]);
}

/* ---------------------------------------------------------------- closures */

static CAtom *bind_lambda(AdFwd *F, const char *name, CLambda *l, Type *t)
{
    CExpr *e = core_expr(CE_LAMBDA, t, F->loc);
    e->u.lambda = l;
    return bind_expr(F, name, e);
}

/* fn (pp : Pack a) => Pack (D body) */
static CAtom *dual_closure(AdFwd *F, CLambda *l, Type *ft, const char *name)
{
    ft = rs(ft);
    Type *a = ft->args[0], *b = ft->args[1];
    CVar *pp = core_var(l->params[0]->name, pack_type(a, F->order), l->loc);
    CBlock *body = core_block_new();
    CBlock *save = F->blk;
    F->blk = body;
    env_put(F, l->params[0], unpack(F, core_atom_var(pp), a));
    AdRep *r = fwd_block(F, l->body, body);
    F->blk = body;
    body->result = pack(F, r, b, l->loc);
    F->blk = save;
    CLambda *nl = core_lambda(&pp, 1, body, pack_type(ft, F->order), l->loc);
    return bind_lambda(F, name, nl, nl->type);
}

/* A function value from outside the region whose definition is a lambda
 * in scope (`let f = fn ... in jvp f x dx`, before the simplifier inlines
 * it): its dual is built here, where everything it captures is in scope
 * and constant. */
static void ensure_dual(AdFwd *F, AdRep *r, CAtom *a)
{
    if (r->dual || !a || a->kind != CA_VAR)
        return;
    CExpr *d = ad_def_of(a);
    if (!d || d->kind != CE_LAMBDA || core_map_get(&F->env, a->u.var))
        return;
    r->dual = dual_closure(F, d->u.lambda, d->type, dname(a->u.var->name));
}

/* The primal closure of a lambda that captures nothing active. */
static CAtom *primal_closure(AdFwd *F, CLambda *l, Type *ft, const char *name)
{
    CVar *p = core_var(l->params[0]->name, l->params[0]->type, l->loc);
    CBlock *body = core_block_new();
    CBlock *save = F->blk;
    env_put(F, l->params[0], ad_rep(F, core_atom_var(p)));
    AdRep *r = fwd_block(F, l->body, body);
    F->blk = body;
    if (!r->c[0]) {
        body->result = pack(F, r, rs(ft)->args[1], l->loc); /* reports the error */
    } else {
        body->result = r->c[0];
    }
    F->blk = save;
    CLambda *nl = core_lambda(&p, 1, body, ft, l->loc);
    return bind_lambda(F, name, nl, ft);
}

static AdRep *fwd_closure(AdFwd *F, CVar *xv, CExpr *e)
{
    CLambda *l = e->u.lambda;
    AdRep *r = rep_new(F);
    r->active = lambda_active(F, l);
    if (!r->active)
        r->c[0] = primal_closure(F, l, e->type, xv->name);
    r->dual = dual_closure(F, l, e->type, dname(xv->name));
    return r;
}

static AdRep *fwd_apply(AdFwd *F, CVar *xv, CExpr *e)
{
    AdRep *c = rep_of(F, e->args[0]);
    AdRep *a = rep_of(F, e->args[1]);
    Type *at = core_atom_type(e->args[1]);
    if (!c->dual && rep_has_tangent(F, a))
        ensure_dual(F, c, e->args[0]);
    if (c->dual && (rep_has_tangent(F, a) || !c->c[0] || c->active || (tkind(at) == TK_FUNC && !a->c[0]))) {
        CAtom *pa = pack(F, a, at, e->loc);
        CExpr *ap = core_expr(CE_APPLY, pack_type(e->type, F->order), e->loc);
        ap->nargs = 2;
        ap->args = NEWN(CAtom *, 2);
        ap->args[0] = c->dual;
        ap->args[1] = pa;
        CAtom *r = bind_expr(F, xv->name, ap);
        return unpack(F, r, e->type);
    }
    if (rep_has_tangent(F, a)) {
        ad_error(F, e->loc, "cannot differentiate through this function value: it comes from outside the "
                            "differentiated function and is applied to a value that depends on the input");
        return ad_rep(F, e->args[0]);
    }
    if (!a->c[0] || !c->c[0]) {
        ad_error(F, e->loc, "cannot differentiate: a closure that depends on the differentiated input is "
                            "passed to a function value from outside");
        return ad_rep(F, e->args[0]);
    }
    CExpr *ap = core_expr(CE_APPLY, e->type, e->loc);
    ap->nargs = 2;
    ap->args = NEWN(CAtom *, 2);
    ap->args[0] = c->c[0];
    ap->args[1] = a->c[0];
    return ad_rep(F, bind_expr(F, xv->name, ap));
}

/* ---------------------------------------------------------------- branches */

/* The value of n branch blocks with representations rs[i] becomes one
 * CExpr result: returns the expression's type and fills the blocks'
 * results; *slots receives which tangent slots are carried. */
typedef struct Join {
    TKind kind;
    bool carry[64];
    int ncarry;
    bool dual, active;
    Type *type, *base;
} Join;

static void join_plan(AdFwd *F, AdRep **r, int n, Type *t, Join *J, Loc loc)
{
    memset(J, 0, sizeof *J);
    J->kind = tkind(t);
    J->type = t;
    J->base = t;
    if (J->kind == TK_FUNC) {
        int nd = 0;
        for (int i = 0; i < n; i++) {
            nd += r[i]->dual != NULL;
            J->active |= r[i]->active;
        }
        if (nd == n) {
            J->dual = true;
            J->type = pack_type(t, F->order);
        } else if (nd > 0) {
            ad_error(F, loc, "cannot differentiate through this function value: the branches mix a function "
                             "from outside the differentiated function with one defined inside");
        }
        return;
    }
    if (J->kind != TK_DIFF)
        return;
    for (int k = 1; k <= F->order && k < 64; k++)
        for (int i = 0; i < n; i++)
            if (r[i]->c[k])
                J->carry[k] = true;
    Type **ts = NEWN(Type *, F->order + 1);
    ts[0] = t;
    int m = 1;
    for (int k = 1; k <= F->order && k < 64; k++)
        if (J->carry[k])
            ts[m++] = tangent_of(t);
    J->ncarry = m - 1;
    if (m > 1)
        J->type = type_tuple(ts, m);
}

static CAtom *join_result(AdFwd *F, AdRep *r, Join *J, CBlock *b, Loc loc)
{
    CBlock *save = F->blk;
    F->blk = b;
    CAtom *res;
    if (J->kind == TK_FUNC) {
        res = J->dual ? r->dual : r->c[0];
        if (!res)
            res = pack(F, r, J->base, loc);
    } else if (J->kind == TK_DIFF && J->ncarry) {
        CAtom **c = NEWN(CAtom *, F->order + 1);
        c[0] = r->c[0];
        int m = 1;
        for (int k = 1; k <= F->order && k < 64; k++)
            if (J->carry[k])
                c[m++] = ad_materialise(F, r->c[k], J->base, r->c[0]);
        res = ad_emit(F, "j", P_TUPLE, J->type, c, m, 0);
    } else {
        res = r->c[0];
        if (!res)
            res = pack(F, r, J->base, loc);
    }
    F->blk = save;
    return res;
}

static AdRep *join_unpack(AdFwd *F, CAtom *v, Join *J)
{
    AdRep *r = rep_new(F);
    if (J->kind == TK_FUNC) {
        if (J->dual) {
            r->dual = v;
            r->active = true;
        } else {
            r->c[0] = v;
        }
        return r;
    }
    if (J->kind == TK_DIFF && J->ncarry) {
        Type *t = rs(J->type)->args[0];
        r->c[0] = emit1(F, "x", P_PROJ, t, v, 0);
        int m = 1;
        for (int k = 1; k <= F->order && k < 64; k++)
            if (J->carry[k]) {
                r->c[k] = emit1(F, "dx", P_PROJ, tangent_of(t), v, m);
                m++;
            }
        return r;
    }
    r->c[0] = v;
    return r;
}

static AdRep *fwd_if(AdFwd *F, CVar *xv, CExpr *e)
{
    CAtom *c = rep_of(F, e->args[0])->c[0];
    CBlock *tb = core_block_new(), *eb = core_block_new();
    AdRep *r[2];
    r[0] = fwd_block(F, e->u.if_.then_, tb);
    r[1] = fwd_block(F, e->u.if_.else_, eb);
    Join J;
    join_plan(F, r, 2, e->type, &J, e->loc);
    tb->result = join_result(F, r[0], &J, tb, e->loc);
    eb->result = join_result(F, r[1], &J, eb, e->loc);
    CExpr *ne = core_expr(CE_IF, J.type, e->loc);
    ne->nargs = 1;
    ne->args = NEWN(CAtom *, 1);
    ne->args[0] = c;
    ne->u.if_.then_ = tb;
    ne->u.if_.else_ = eb;
    return join_unpack(F, bind_expr(F, xv->name, ne), &J);
}

static AdRep *fwd_case(AdFwd *F, CVar *xv, CExpr *e)
{
    AdRep *s = rep_of(F, e->args[0]);
    Type *st = core_atom_type(e->args[0]);
    int n = e->u.case_.nalts;
    CAlt *alts = NEWN(CAlt, n > 0 ? n : 1);
    AdRep **r = NEWN(AdRep *, n > 0 ? n : 1);
    CBlock *save = F->blk;
    for (int i = 0; i < n; i++) {
        CAlt *a = &e->u.case_.alts[i];
        alts[i].con = a->con;
        alts[i].body = core_block_new();
        F->blk = alts[i].body;
        if (a->payload) {
            CVar *p = core_var(a->payload->name, a->payload->type, a->payload->loc);
            alts[i].payload = p;
            AdRep *pr = ad_rep(F, core_atom_var(p));
            if (tkind(p->type) == TK_DIFF)
                for (int k = 1; k <= F->order; k++)
                    if (s->c[k])
                        pr->c[k] = emit1(F, dname(p->name), P_PAYLOAD, tangent_of(p->type), s->c[k], a->con);
            if (tkind(p->type) == TK_FUNC && s->c[0] == NULL)
                ad_error(F, e->loc, "cannot differentiate: a closure stored in a data structure");
            env_put(F, a->payload, pr);
        }
        r[i] = fwd_block(F, a->body, alts[i].body);
    }
    F->blk = save;
    (void)st;
    Join J;
    join_plan(F, r, n, e->type, &J, e->loc);
    for (int i = 0; i < n; i++)
        alts[i].body->result = join_result(F, r[i], &J, alts[i].body, e->loc);
    CExpr *ne = core_expr(CE_CASE, J.type, e->loc);
    ne->nargs = 1;
    ne->args = NEWN(CAtom *, 1);
    ne->args[0] = s->c[0];
    ne->u.case_.alts = alts;
    ne->u.case_.nalts = n;
    return join_unpack(F, bind_expr(F, xv->name, ne), &J);
}

/* ---------------------------------------------------------------- loops */

/* The loop state carries the tangent slots in `carry` (found by a
 * speculative pass: a slot is carried when the initial value or one
 * iteration makes it non-zero, to a fixed point). */
static AdRep *loop_state_rep(AdFwd *F, CAtom *s, Type *t, bool *carry, int ncarry)
{
    AdRep *r = rep_new(F);
    if (!ncarry) {
        r->c[0] = s;
        return r;
    }
    r->c[0] = emit1(F, "s", P_PROJ, t, s, 0);
    int m = 1;
    for (int k = 1; k <= F->order; k++)
        if (carry[k])
            r->c[k] = emit1(F, "ds", P_PROJ, tangent_of(t), s, m++);
    return r;
}

static CAtom *loop_state_pack(AdFwd *F, AdRep *r, Type *t, Type *lt, bool *carry, int ncarry)
{
    if (!ncarry)
        return r->c[0];
    CAtom **c = NEWN(CAtom *, F->order + 1);
    c[0] = r->c[0];
    int m = 1;
    for (int k = 1; k <= F->order; k++)
        if (carry[k])
            c[m++] = ad_materialise(F, r->c[k], t, r->c[0]);
    return ad_emit(F, "s", P_TUPLE, lt, c, m, 0);
}

static Type *loop_type(AdFwd *F, Type *t, bool *carry, int *ncarry)
{
    Type **ts = NEWN(Type *, F->order + 1);
    ts[0] = t;
    int m = 1;
    for (int k = 1; k <= F->order; k++)
        if (carry[k])
            ts[m++] = tangent_of(t);
    *ncarry = m - 1;
    return m > 1 ? type_tuple(ts, m) : t;
}

static AdRep *fwd_loop(AdFwd *F, CVar *xv, CExpr *e)
{
    Type *t = rs(e->u.loop.state->type);
    TKind tk = tkind(t);
    if (tk == TK_FUNC) {
        ad_error(F, e->loc, "cannot differentiate a loop whose state is a function");
        return ad_rep(F, e->args[0]);
    }
    AdRep *init = rep_of(F, e->args[0]);
    int K = F->order;
    bool *carry = NEWN(bool, K + 1);
    int ncarry = 0;
    if (tk == TK_DIFF) {
        for (int k = 1; k <= K; k++)
            carry[k] = init->c[k] != NULL;
        for (int round = 0; round <= K + 1; round++) {
            Type *lt = loop_type(F, t, carry, &ncarry);
            CBlock *scratch = core_block_new();
            CBlock *save = F->blk;
            F->blk = scratch;
            F->quiet++;
            CVar *s = core_var("s", lt, e->loc);
            env_put(F, e->u.loop.state, loop_state_rep(F, core_atom_var(s), t, carry, ncarry));
            if (e->u.loop.ivar)
                env_put(F, e->u.loop.ivar, ad_rep(F, core_atom_var(core_var("i", type_int(), e->loc))));
            AdRep *r = fwd_block(F, e->u.loop.body, scratch);
            F->quiet--;
            F->blk = save;
            bool grew = false;
            for (int k = 1; k <= K; k++)
                if (r->c[k] && !carry[k]) {
                    carry[k] = true;
                    grew = true;
                }
            if (!grew)
                break;
        }
    }
    Type *lt = loop_type(F, t, carry, &ncarry);
    CAtom *init_a = loop_state_pack(F, init, t, lt, carry, ncarry);
    CVar *s = core_var(e->u.loop.state->name, lt, e->u.loop.state->loc);
    CVar *iv = e->u.loop.ivar ? core_var(e->u.loop.ivar->name, type_int(), e->u.loop.ivar->loc) : NULL;
    CBlock *save = F->blk;
    CBlock *cond = NULL;
    if (e->u.loop.cond) {
        cond = core_block_new();
        F->blk = cond;
        env_put(F, e->u.loop.state, loop_state_rep(F, core_atom_var(s), t, carry, ncarry));
        AdRep *cr = fwd_block(F, e->u.loop.cond, cond);
        cond->result = cr->c[0];
    }
    CBlock *body = core_block_new();
    F->blk = body;
    env_put(F, e->u.loop.state, loop_state_rep(F, core_atom_var(s), t, carry, ncarry));
    if (iv)
        env_put(F, e->u.loop.ivar, ad_rep(F, core_atom_var(iv)));
    AdRep *br = fwd_block(F, e->u.loop.body, body);
    F->blk = body;
    body->result = loop_state_pack(F, br, t, lt, carry, ncarry);
    F->blk = save;
    CExpr *ne = core_expr(CE_LOOP, lt, e->loc);
    ne->nargs = e->nargs;
    ne->args = NEWN(CAtom *, e->nargs);
    ne->args[0] = init_a;
    if (e->nargs > 1)
        ne->args[1] = rep_of(F, e->args[1])->c[0];
    ne->u.loop.state = s;
    ne->u.loop.kind = e->u.loop.kind;
    ne->u.loop.ivar = iv;
    ne->u.loop.cond = cond;
    ne->u.loop.body = body;
    ne->u.loop.checkpoint = e->u.loop.checkpoint;
    CAtom *v = bind_expr(F, xv->name, ne);
    return loop_state_rep(F, v, t, carry, ncarry);
}

/* ---------------------------------------------------------------- SOACs */

static Type *row_type(Type *t)
{
    t = rs(t);
    if (t->kind != TY_ARRAY)
        return t;
    return t->rank > 1 ? type_array(t->elem, t->rank - 1) : rs(t->elem);
}

static Type *lambda_type(CVar **ps, int n, Type *res)
{
    Type *t = res;
    for (int i = n - 1; i >= 0; i--)
        t = type_func(ps[i]->type, t);
    return t;
}

static bool block_has_effect(CBlock *b);

static bool expr_has_effect(CExpr *e)
{
    switch (e->kind) {
    case CE_PRIM: return (core_prims[e->u.prim.op].flags & PRIM_EFFECT) != 0;
    case CE_IF: return block_has_effect(e->u.if_.then_) || block_has_effect(e->u.if_.else_);
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            if (block_has_effect(e->u.case_.alts[i].body))
                return true;
        return false;
    case CE_LOOP:
        return block_has_effect(e->u.loop.body) || (e->u.loop.cond && block_has_effect(e->u.loop.cond));
    case CE_SOAC: return block_has_effect(e->u.soac.fn->body);
    case CE_LAMBDA: return block_has_effect(e->u.lambda->body);
    default: return false;
    }
}

static bool block_has_effect(CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++)
        if (expr_has_effect(b->binds[i].e))
            return true;
    return false;
}

static CAtom *emit_soac(AdFwd *F, const char *name, SoacKind k, Type *t, CLambda *l, CAtom **args, int n)
{
    CExpr *e = core_expr(CE_SOAC, t, F->loc);
    e->u.soac.kind = k;
    e->u.soac.fn = l;
    e->nargs = n;
    e->args = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        e->args[i] = args[i];
    return bind_expr(F, name, e);
}

/* A lambda with the given parameter reps, transformed; *r its result. */
static CBlock *lambda_body(AdFwd *F, CLambda *l, AdRep **pr, AdRep **r)
{
    CBlock *body = core_block_new();
    CBlock *save = F->blk;
    F->blk = body;
    for (int i = 0; i < l->nparams; i++)
        env_put(F, l->params[i], pr[i]);
    *r = fwd_block(F, l->body, body);
    F->blk = save;
    return body;
}

/* The primal copy of an inline lambda (its tangents, if any, are dead). */
static CLambda *primal_lambda(AdFwd *F, CLambda *l)
{
    CVar **ps = NEWN(CVar *, l->nparams > 0 ? l->nparams : 1);
    AdRep **pr = NEWN(AdRep *, l->nparams > 0 ? l->nparams : 1);
    for (int i = 0; i < l->nparams; i++) {
        ps[i] = core_var(l->params[i]->name, l->params[i]->type, l->params[i]->loc);
        pr[i] = ad_rep(F, core_atom_var(ps[i]));
    }
    AdRep *r;
    CBlock *body = lambda_body(F, l, pr, &r);
    CBlock *save = F->blk;
    F->blk = body;
    body->result = r->c[0] ? r->c[0] : pack(F, r, core_atom_type(l->body->result), l->loc);
    F->blk = save;
    return core_lambda(ps, l->nparams, body, l->type, l->loc);
}

static AdRep *fwd_map(AdFwd *F, CVar *xv, CExpr *e)
{
    int n = e->nargs, K = F->order;
    CLambda *l = e->u.soac.fn;
    AdRep **ar = NEWN(AdRep *, n);
    for (int i = 0; i < n; i++)
        ar[i] = rep_of(F, e->args[i]);
    Type *rt = rs(e->type);
    Type *bt = row_type(rt); /* the lambda's result type */
    /* the tangent lambda: primal rows, then the rows of each tangent */
    Vec ps = {0}, as = {0};
    AdRep **pr = NEWN(AdRep *, n);
    for (int i = 0; i < n; i++) {
        Type *pt = l->params[i]->type;
        CVar *p = core_var(l->params[i]->name, pt, l->params[i]->loc);
        vec_push(&ps, p);
        vec_push(&as, ar[i]->c[0]);
        pr[i] = ad_rep(F, core_atom_var(p));
    }
    for (int i = 0; i < n; i++) {
        if (tkind(l->params[i]->type) != TK_DIFF)
            continue;
        for (int k = 1; k <= K; k++)
            if (ar[i]->c[k]) {
                CVar *d = core_var(dname(l->params[i]->name), tangent_of(l->params[i]->type), l->loc);
                vec_push(&ps, d);
                vec_push(&as, ar[i]->c[k]);
                pr[i]->c[k] = core_atom_var(d);
            }
    }
    bool effects = block_has_effect(l->body);
    AdRep *r;
    CBlock *tb = lambda_body(F, l, pr, &r);
    int m = 0;
    int slot[64];
    if (tkind(bt) == TK_DIFF)
        for (int k = 1; k <= K && m < 64; k++)
            if (r->c[k])
                slot[m++] = k;
    AdRep *res = rep_new(F);
    if (m == 0 && !effects) {
        CLambda *pl = primal_lambda(F, l);
        CAtom **pa = NEWN(CAtom *, n);
        for (int i = 0; i < n; i++)
            pa[i] = ar[i]->c[0];
        res->c[0] = emit_soac(F, xv->name, SOAC_MAP, e->type, pl, pa, n);
        vec_free(&ps);
        vec_free(&as);
        return res;
    }
    /* the tangent map returns the carried slots; with effects in the body,
     * one map returns the primal too (its effects happen once) */
    bool with_primal = effects;
    int nout = m + (with_primal ? 1 : 0);
    Type **ots = NEWN(Type *, nout > 0 ? nout : 1);
    CAtom **oas = NEWN(CAtom *, nout > 0 ? nout : 1);
    CBlock *save = F->blk;
    F->blk = tb;
    int j = 0;
    if (with_primal) {
        ots[j] = bt;
        oas[j++] = r->c[0] ? r->c[0] : pack(F, r, bt, e->loc);
    }
    for (int i = 0; i < m; i++) {
        ots[j] = tangent_of(bt);
        oas[j++] = ad_materialise(F, r->c[slot[i]], bt, r->c[0]);
    }
    Type *ot = nout == 1 ? ots[0] : type_tuple(ots, nout);
    tb->result = nout == 1 ? oas[0] : ad_emit(F, "o", P_TUPLE, ot, oas, nout, 0);
    F->blk = save;
    CAtom *tm;
    if (as.len <= 8) {
        CLambda *tl = core_lambda((CVar **)ps.data, ps.len, tb, lambda_type((CVar **)ps.data, ps.len, ot), l->loc);
        tm = emit_soac(F, dname(xv->name), SOAC_MAP, type_array(ot, 1), tl, (CAtom **)as.data, as.len);
    } else {
        /* more arrays than a map takes: map over the indices, the
         * arrays indexed inside */
        CBlock *ib = core_block_new();
        CVar *iv = core_var("i", type_int(), l->loc);
        CAtom *ia = core_atom_var(iv);
        for (int i = 0; i < ps.len; i++) {
            CAtom *xs[2] = {as.data[i], ia};
            CVar *p = ps.data[i];
            push_bind(ib, p, core_prim(P_INDEX, p->type, l->loc, xs, 2, 0));
        }
        for (int i = 0; i < tb->nbinds; i++)
            push_bind(ib, tb->binds[i].var, tb->binds[i].e);
        ib->result = tb->result;
        CAtom *len = emit1(F, "n", P_LENGTH, type_int(), ar[0]->c[0], 0);
        CAtom *idx = emit1(F, "is", P_IOTA, type_array(type_int(), 1), len, 0);
        CLambda *tl = core_lambda(&iv, 1, ib, type_func(type_int(), ot), l->loc);
        tm = emit_soac(F, dname(xv->name), SOAC_MAP, type_array(ot, 1), tl, &idx, 1);
    }
    vec_free(&ps);
    vec_free(&as);
    if (nout == 1 && !with_primal) {
        res->c[slot[0]] = tm;
    } else {
        /* project each output: map (fn o => o.j) tm */
        for (int jj = 0; jj < nout; jj++) {
            CVar *o = core_var("o", ot, l->loc);
            CBlock *pb = core_block_new();
            CAtom *oa = core_atom_var(o);
            pb->result = core_atom_var(core_bind(pb, "c", core_prim(P_PROJ, ots[jj], l->loc, &oa, 1, jj)));
            CLambda *pl = core_lambda(&o, 1, pb, type_func(ot, ots[jj]), l->loc);
            CAtom *pa = emit_soac(F, jj == 0 && with_primal ? xv->name : dname(xv->name), SOAC_MAP,
                                  type_array(ots[jj], 1), pl, &tm, 1);
            if (with_primal && jj == 0)
                res->c[0] = pa;
            else
                res->c[slot[jj - (with_primal ? 1 : 0)]] = pa;
        }
    }
    if (!res->c[0]) {
        CLambda *pl = primal_lambda(F, l);
        CAtom **pa = NEWN(CAtom *, n);
        for (int i = 0; i < n; i++)
            pa[i] = ar[i]->c[0];
        res->c[0] = emit_soac(F, xv->name, SOAC_MAP, e->type, pl, pa, n);
    }
    return res;
}

/* lambda (a, b) => a + b */
static bool is_plus_lambda(CLambda *l)
{
    if (l->nparams != 2 || l->body->nbinds != 1)
        return false;
    CBind *b = &l->body->binds[0];
    CExpr *e = b->e;
    if (e->kind != CE_PRIM || e->u.prim.op != P_ADD || e->nargs != 2)
        return false;
    if (!l->body->result || l->body->result->kind != CA_VAR || l->body->result->u.var != b->var)
        return false;
    CAtom *x = e->args[0], *y = e->args[1];
    if (x->kind != CA_VAR || y->kind != CA_VAR)
        return false;
    return (x->u.var == l->params[0] && y->u.var == l->params[1]) ||
           (x->u.var == l->params[1] && y->u.var == l->params[0]);
}

static CLambda *plus_lambda(Type *t, Loc loc)
{
    CVar *a = core_var("a", t, loc), *b = core_var("b", t, loc);
    CBlock *body = core_block_new();
    CAtom *xs[2] = {core_atom_var(a), core_atom_var(b)};
    body->result = core_atom_var(core_bind(body, "s", core_prim(P_ADD, t, loc, xs, 2, 0)));
    CVar *ps[2] = {a, b};
    return core_lambda(ps, 2, body, lambda_type(ps, 2, t), loc);
}

static CVar *src_bind(CBlock *b, const char *name, CExpr *e) { return core_bind(b, name, e); }

/* reduce / fold / scan with an active operand: the same computation as a
 * loop in source terms, which the macro then transforms (sequentially; the
 * JVP of an associative operator is associative, but a loop is simpler
 * and exact for `*`, max, min alike). */
static AdRep *fwd_fold_loop(AdFwd *F, CVar *xv, CExpr *e)
{
    CLambda *l = e->u.soac.fn;
    Loc loc = e->loc;
    CAtom *init = e->args[0], *arr = e->args[1];
    Type *acct = rs(l->params[0]->type), *elt = l->params[1]->type;
    bool scan = e->u.soac.kind == SOAC_SCAN;
    CBlock *src = core_block_new();
    CAtom *n = core_atom_var(src_bind(src, "n", core_prim(P_LENGTH, type_int(), loc, &arr, 1, 0)));
    Type *st = acct;
    CAtom *sinit = init;
    if (scan) {
        CAtom *xs[2] = {n, init};
        CAtom *out0 = core_atom_var(src_bind(src, "out", core_prim(P_REPLICATE, e->type, loc, xs, 2, 0)));
        st = type_tuple2(acct, e->type);
        CAtom *ys[2] = {init, out0};
        sinit = core_atom_var(src_bind(src, "s", core_prim(P_TUPLE, st, loc, ys, 2, 0)));
    }
    CVar *s = core_var("s", st, loc), *iv = core_var("i", type_int(), loc);
    CBlock *body = core_block_new();
    CAtom *acc = core_atom_var(s), *outa = NULL;
    if (scan) {
        CAtom *sa = core_atom_var(s);
        acc = core_atom_var(src_bind(body, "acc", core_prim(P_PROJ, acct, loc, &sa, 1, 0)));
        outa = core_atom_var(src_bind(body, "out", core_prim(P_PROJ, e->type, loc, &sa, 1, 1)));
    }
    CAtom *ix[2] = {arr, core_atom_var(iv)};
    CAtom *xa = core_atom_var(src_bind(body, "x", core_prim(P_INDEX, elt, loc, ix, 2, 0)));
    CAtom *to[2] = {acc, xa};
    CBlock *fb = core_copy_block(l->body, l->params, to, 2);
    for (int i = 0; i < fb->nbinds; i++)
        push_bind(body, fb->binds[i].var, fb->binds[i].e);
    CAtom *nacc = fb->result;
    if (scan) {
        CAtom *us[3] = {outa, nacc, core_atom_var(iv)};
        CAtom *nout = core_atom_var(src_bind(body, "out", core_prim(P_UPDATE, e->type, loc, us, 3, 0)));
        CAtom *ts[2] = {nacc, nout};
        body->result = core_atom_var(src_bind(body, "s", core_prim(P_TUPLE, st, loc, ts, 2, 0)));
    } else {
        body->result = nacc;
    }
    CExpr *lp = core_expr(CE_LOOP, st, loc);
    lp->nargs = 2;
    lp->args = NEWN(CAtom *, 2);
    lp->args[0] = sinit;
    lp->args[1] = n;
    lp->u.loop.state = s;
    lp->u.loop.kind = LOOP_FOR;
    lp->u.loop.ivar = iv;
    lp->u.loop.body = body;
    CAtom *lv = core_atom_var(src_bind(src, "r", lp));
    if (scan)
        lv = core_atom_var(src_bind(src, "r", core_prim(P_PROJ, e->type, loc, &lv, 1, 1)));
    src->result = lv;
    return fwd_block(F, src, F->blk);
}

static AdRep *fwd_filter(AdFwd *F, CVar *xv, CExpr *e)
{
    CLambda *l = e->u.soac.fn;
    AdRep *a = rep_of(F, e->args[0]);
    CLambda *pl = primal_lambda(F, l);
    AdRep *res = ad_rep(F, emit_soac(F, xv->name, SOAC_FILTER, e->type, pl, &a->c[0], 1));
    Type *et = l->params[0]->type;
    for (int k = 1; k <= F->order; k++) {
        if (!a->c[k] || tkind(et) != TK_DIFF)
            continue;
        /* filter the pairs (x, dx) on x: zip, filter, unzip */
        Type *pt = type_tuple2(et, tangent_of(et));
        CAtom *xs[2] = {a->c[0], a->c[k]};
        CAtom *z = ad_emit(F, "z", P_ZIP, type_array(pt, 1), xs, 2, 0);
        CVar *p = core_var("p", pt, l->loc);
        CBlock *pb = core_block_new();
        CAtom *pa = core_atom_var(p);
        CAtom *x0 = core_atom_var(core_bind(pb, "x", core_prim(P_PROJ, et, l->loc, &pa, 1, 0)));
        CBlock *cb = core_copy_block(pl->body, pl->params, &x0, 1);
        for (int i = 0; i < cb->nbinds; i++)
            push_bind(pb, cb->binds[i].var, cb->binds[i].e);
        pb->result = cb->result;
        CLambda *fl = core_lambda(&p, 1, pb, type_func(pt, type_bool()), l->loc);
        CAtom *fz = emit_soac(F, "fz", SOAC_FILTER, type_array(pt, 1), fl, &z, 1);
        Type *ut = type_tuple2(e->type, tangent_of(e->type));
        CAtom *u = emit1(F, "u", P_UNZIP, ut, fz, 0);
        res->c[k] = emit1(F, dname(xv->name), P_PROJ, tangent_of(e->type), u, 1);
    }
    return res;
}

static AdRep *fwd_soac(AdFwd *F, CVar *xv, CExpr *e)
{
    CLambda *l = e->u.soac.fn;
    if (e->u.soac.kind == SOAC_MAP)
        return fwd_map(F, xv, e);
    if (e->u.soac.kind == SOAC_FILTER)
        return fwd_filter(F, xv, e);
    /* reduce, fold, scan: args init, array */
    AdRep *ri = rep_of(F, e->args[0]), *ra = rep_of(F, e->args[1]);
    bool active = rep_has_tangent(F, ri) || rep_has_tangent(F, ra) || lambda_active(F, l);
    if (!active) {
        CLambda *pl = primal_lambda(F, l);
        CAtom *xs[2] = {ri->c[0], ra->c[0]};
        return ad_rep(F, emit_soac(F, xv->name, e->u.soac.kind, e->type, pl, xs, 2));
    }
    if ((e->u.soac.kind == SOAC_REDUCE || e->u.soac.kind == SOAC_SCAN) && is_plus_lambda(l) &&
        tkind(l->params[0]->type) == TK_DIFF) {
        /* D(reduce (+) ne xs) = reduce (+) dne dxs; scan alike (linear) */
        CLambda *pl = primal_lambda(F, l);
        CAtom *xs[2] = {ri->c[0], ra->c[0]};
        AdRep *res = ad_rep(F, emit_soac(F, xv->name, e->u.soac.kind, e->type, pl, xs, 2));
        Type *acct = l->params[0]->type;
        for (int k = 1; k <= F->order; k++) {
            if (!ri->c[k] && !ra->c[k])
                continue;
            CAtom *ys[2] = {ad_materialise(F, ri->c[k], acct, ri->c[0]),
                            ad_materialise(F, ra->c[k], core_atom_type(ra->c[0]), ra->c[0])};
            res->c[k] = emit_soac(F, dname(xv->name), e->u.soac.kind, tangent_of(e->type),
                                  plus_lambda(tangent_of(acct), l->loc), ys, 2);
        }
        return res;
    }
    return fwd_fold_loop(F, xv, e);
}

/* ---------------------------------------------------------------- bindings */

static void fwd_bind(AdFwd *F, CVar *x, CExpr *e)
{
    AdRep *r;
    switch (e->kind) {
    case CE_ATOM: r = rep_of(F, e->args[0]); break;
    case CE_PRIM: r = fwd_prim(F, x, e); break;
    case CE_CALL: r = fwd_call(F, x, e); break;
    case CE_APPLY: r = fwd_apply(F, x, e); break;
    case CE_LAMBDA: r = fwd_closure(F, x, e); break;
    case CE_IF: r = fwd_if(F, x, e); break;
    case CE_CASE: r = fwd_case(F, x, e); break;
    case CE_LOOP: r = fwd_loop(F, x, e); break;
    case CE_SOAC: r = fwd_soac(F, x, e); break;
    case CE_DERIV:
        if (e->u.deriv.kind == DERIV_STOP_GRADIENT) {
            /* the value, with derivative zero; kept as a stop_gradient for
             * the derivatives around this one */
            CExpr *ne = core_expr(CE_DERIV, e->type, e->loc);
            ne->u.deriv.kind = DERIV_STOP_GRADIENT;
            ne->nargs = 1;
            ne->args = NEWN(CAtom *, 1);
            AdRep *a = rep_of(F, e->args[0]);
            ne->args[0] = a->c[0] ? a->c[0] : e->args[0];
            r = ad_rep(F, bind_expr(F, x->name, ne));
            break;
        }
        ad_error(F, e->loc, "internal error: ad: a derivative form left inside the differentiated code");
        r = ad_rep(F, core_atom_unit());
        break;
    default:
        r = ad_rep(F, core_atom_unit());
        break;
    }
    env_put(F, x, r);
}

static AdRep *fwd_block(AdFwd *F, CBlock *in, CBlock *out)
{
    CBlock *save = F->blk;
    F->blk = out;
    for (int i = 0; i < in->nbinds; i++)
        fwd_bind(F, in->binds[i].var, in->binds[i].e);
    AdRep *r = rep_of(F, in->result);
    F->blk = save;
    return r;
}

AdRep *ad_fwd_lambda(AdFwd *F, CLambda *l, AdRep **args)
{
    for (int i = 0; i < l->nparams; i++)
        env_put(F, l->params[i], args[i]);
    return fwd_block(F, l->body, F->blk);
}

/* ================================================================ Taylor hook */

/* Linear primitives, and primitives with no Taylor rule of their own whose
 * forward rule is linear in the primal (none), apply per coefficient. */
static void taylor_prim(AdFwd *F, CExpr *e, AdRep **ar, CAtom **x, AdRep *res)
{
    int K = F->order, n = e->nargs;
    Prim op = e->u.prim.op;
    AdTaylorRule tr = (AdTaylorRule)core_prims[op].taylor_rule;
    if (tr) {
        CAtom ***xs = NEWN(CAtom **, n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            xs[i] = ar[i]->c;
        tr(F, e, xs, res->c);
        (void)x;
        if (core_prims[op].flags & PRIM_ELEMENTWISE)
            for (int k = 1; k <= K; k++)
                if (res->c[k] && rank_of_atom(res->c[k]) < rank_of_atom(res->c[0]))
                    res->c[k] = emit2(F, "t", P_ADD, tangent_of(e->type),
                                      emit1(F, "z", P_ZEROS_LIKE, tangent_of(e->type), res->c[0], 0), res->c[k]);
        return;
    }
    if (!(core_prims[op].flags & PRIM_LINEAR) && op != P_NEG && op != P_TO_FLOAT && op != P_TO_F32) {
        ad_error(F, e->loc, "no Taylor rule for the primitive '%s'", core_prims[op].name);
        return;
    }
    AdJvpRule rule = (AdJvpRule)core_prims[op].jvp_rule;
    CAtom **dx = NEWN(CAtom *, n > 0 ? n : 1);
    for (int k = 1; k <= K; k++) {
        bool any = false;
        for (int i = 0; i < n; i++) {
            dx[i] = ar[i]->c[k];
            any |= dx[i] != NULL;
        }
        res->c[k] = any ? rule(F, e, x, dx, res->c[0]) : NULL;
    }
}

/* ================================================================ forward rules */

#define RULE(name) static CAtom *name(AdFwd *F, CExpr *e, CAtom **x, CAtom **dx, CAtom *y)
#define UNUSED_RULE_ARGS (void)F, (void)e, (void)x, (void)dx, (void)y

/* Which operands a linear primitive is linear in (the others are indices,
 * sizes, shapes: primal). */
static bool lin_operand(Prim op, int i)
{
    switch (op) {
    case P_TUPLE: case P_RECORD: case P_CON: case P_ARRAY: case P_ZIP: case P_CONCAT:
    case P_ADD: case P_SUB:
        return true;
    case P_UPDATE: return i <= 1;
    case P_REPLICATE: case P_TAKE: case P_DROP: return i == 1;
    case P_SELECT: return i == 1 || i == 2;
    default: return i == 0;
    }
}

/* A linear primitive: the same primitive on the tangents of its linear
 * operands (zeros materialised where some are non-zero). */
RULE(rule_linear)
{
    Prim op = e->u.prim.op;
    int n = e->nargs;
    bool any = false;
    for (int i = 0; i < n; i++)
        if (lin_operand(op, i) && dx[i])
            any = true;
    if (!any)
        return NULL;
    /* looking through: proj/field of a known tuple/record */
    if ((op == P_PROJ || op == P_FIELD) && dx[0]) {
        CExpr *d = ad_def_of(dx[0]);
        Prim want = op == P_PROJ ? P_TUPLE : P_RECORD;
        if (d && d->kind == CE_PRIM && d->u.prim.op == want && e->u.prim.imm < d->nargs)
            return nz(d->args[e->u.prim.imm]);
    }
    if (op == P_PAYLOAD && dx[0]) {
        CExpr *d = ad_def_of(dx[0]);
        if (d && d->kind == CE_PRIM && d->u.prim.op == P_CON && d->u.prim.imm == e->u.prim.imm && d->nargs == 1)
            return nz(d->args[0]);
    }
    CAtom **a = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        a[i] = lin_operand(op, i) ? ad_materialise(F, dx[i], core_atom_type(x[i]), x[i]) : x[i];
    if (op == P_SELECT)
        for (int i = 1; i < 3; i++)
            if (!dx[i] && is_floatish(core_atom_type(x[i])))
                a[i] = ad_lit(0, core_atom_type(x[i]));
    (void)y;
    return ad_emit(F, "d", op, tangent_of(e->type), a, n, e->u.prim.imm);
}

/* With one operand's tangent zero, a + b's tangent is the other one's,
 * which may have a smaller shape than the sum (broadcasting). */
static CAtom *fix_bcast(AdFwd *F, CAtom *d, CAtom **x, CAtom **dx, CAtom *y, int n)
{
    if (!d)
        return NULL;
    int ra = rank_of_atom(d), ry = rank_of_atom(y);
    bool need = ra < ry;
    for (int i = 0; i < n && !need; i++)
        if (!dx[i] && rank_of_atom(x[i]) > 0 && rank_of_atom(x[i]) >= ra)
            need = true;
    if (!need)
        return d;
    CAtom *z = emit1(F, "z", P_ZEROS_LIKE, core_atom_type(y), y, 0);
    return emit2(F, "t", P_ADD, core_atom_type(y), z, d);
}

RULE(rule_add)
{
    (void)e;
    return fix_bcast(F, ad_add(F, dx[0], dx[1]), x, dx, y, 2);
}

RULE(rule_sub)
{
    (void)e;
    return fix_bcast(F, ad_sub(F, dx[0], dx[1]), x, dx, y, 2);
}

RULE(rule_select)
{
    UNUSED_RULE_ARGS;
    CAtom *d = ad_select(F, x[0], dx[1], dx[2]);
    CAtom *xx[2] = {x[1], x[2]}, *dd[2] = {dx[1], dx[2]};
    return fix_bcast(F, d, xx, dd, y, 2);
}

/* d(a b) = da b + a db */
RULE(rule_mul)
{
    UNUSED_RULE_ARGS;
    return ad_add(F, ad_mul(F, dx[0], x[1]), ad_mul(F, x[0], dx[1]));
}

/* d(a / b) = (da - y db) / b */
RULE(rule_div)
{
    UNUSED_RULE_ARGS;
    if (!dx[1])
        return ad_div(F, dx[0], x[1]);
    return ad_div(F, ad_sub(F, dx[0], ad_mul(F, y, dx[1])), x[1]);
}

/* fmod: a - trunc(a / b) b, so d = da - ((a - y) / b) db */
RULE(rule_mod)
{
    UNUSED_RULE_ARGS;
    if (!dx[1])
        return dx[0];
    CAtom *q = ad_div(F, ad_sub(F, x[0], y), x[1]);
    return ad_sub(F, dx[0], ad_mul(F, q, dx[1]));
}

/* d(a^c) = c a^(c-1) da + a^c log a dc, with the conventions of
 * ad-cases 4: the first term is 0 when c = 0 (never 0 * inf at a = 0), and
 * a literal c = 1 gives da exactly; the second is 0 where a = 0. */
RULE(rule_pow)
{
    UNUSED_RULE_ARGS;
    CAtom *d = NULL;
    if (dx[0]) {
        CAtom *c = x[1];
        if (is_flit(c)) {
            double cv = c->u.fval;
            if (cv == 0)
                d = NULL;
            else if (cv == 1)
                d = dx[0];
            else if (cv == 2)
                d = ad_mul(F, ad_mul(F, ad_lit(2, c->type), x[0]), dx[0]);
            else {
                CAtom *p = ad_bin(F, P_POW, x[0], ad_lit(cv - 1, c->type));
                d = ad_mul(F, ad_mul(F, c, p), dx[0]);
            }
        } else {
            CAtom *p = ad_bin(F, P_POW, x[0], ad_sub(F, c, ad_lit(1, core_atom_type(c))));
            CAtom *g = ad_mul(F, c, p);
            CAtom *z = ad_cmp(F, P_EQ, c, ad_lit(0, core_atom_type(c)));
            g = ad_select(F, z, ad_lit(0, core_atom_type(g)), g);
            d = ad_mul(F, g, dx[0]);
        }
    }
    if (dx[1]) {
        CAtom *l = ad_mul(F, y, ad_un(F, P_LOG, x[0]));
        CAtom *z = ad_cmp(F, P_EQ, x[0], ad_lit(0, core_atom_type(x[0])));
        l = ad_select(F, z, ad_lit(0, core_atom_type(l)), l);
        d = ad_add(F, d, ad_mul(F, l, dx[1]));
    }
    return d;
}

RULE(rule_exp) { UNUSED_RULE_ARGS; return ad_mul(F, y, dx[0]); }
RULE(rule_log) { UNUSED_RULE_ARGS; return ad_div(F, dx[0], x[0]); }
RULE(rule_log1p) { UNUSED_RULE_ARGS; return ad_div(F, dx[0], ad_add(F, x[0], ad_lit(1, core_atom_type(x[0])))); }
RULE(rule_expm1) { UNUSED_RULE_ARGS; return ad_mul(F, ad_add(F, y, ad_lit(1, core_atom_type(y))), dx[0]); }

/* d sqrt x = dx / (2 sqrt x), and 0 when dx = 0 (also at x = 0: the
 * convention that makes ad-cases 3 give PyTorch's [0, 0]). */
RULE(rule_sqrt)
{
    UNUSED_RULE_ARGS;
    CAtom *d = ad_div(F, dx[0], ad_mul(F, ad_lit(2, core_atom_type(y)), y));
    CAtom *z = ad_cmp(F, P_EQ, dx[0], ad_lit(0, core_atom_type(dx[0])));
    return ad_select(F, z, ad_lit(0, core_atom_type(d)), d);
}

RULE(rule_sin) { UNUSED_RULE_ARGS; return ad_mul(F, ad_un(F, P_COS, x[0]), dx[0]); }
RULE(rule_cos) { UNUSED_RULE_ARGS; return ad_neg(F, ad_mul(F, ad_un(F, P_SIN, x[0]), dx[0])); }

/* tan' = 1 + tan², tanh' = 1 - tanh², sigmoid' = s (1 - s) */
RULE(rule_tan)
{
    UNUSED_RULE_ARGS;
    return ad_mul(F, ad_add(F, ad_lit(1, core_atom_type(y)), ad_mul(F, y, y)), dx[0]);
}

RULE(rule_tanh)
{
    UNUSED_RULE_ARGS;
    return ad_mul(F, ad_sub(F, ad_lit(1, core_atom_type(y)), ad_mul(F, y, y)), dx[0]);
}

RULE(rule_sigmoid)
{
    UNUSED_RULE_ARGS;
    return ad_mul(F, ad_mul(F, y, ad_sub(F, ad_lit(1, core_atom_type(y)), y)), dx[0]);
}

RULE(rule_softplus) { UNUSED_RULE_ARGS; return ad_mul(F, ad_un(F, P_SIGMOID, x[0]), dx[0]); }

/* |x|' = sign x, with sign 0 = 0 */
static CAtom *sign_of(AdFwd *F, CAtom *a)
{
    Type *t = core_atom_type(a);
    CAtom *pos = ad_cmp(F, P_GT, a, ad_lit(0, t));
    CAtom *neg = ad_cmp(F, P_LT, a, ad_lit(0, t));
    return ad_select(F, pos, ad_lit(1, t), ad_select(F, neg, ad_lit(-1, t), ad_lit(0, t)));
}

RULE(rule_abs) { UNUSED_RULE_ARGS; return ad_mul(F, sign_of(F, x[0]), dx[0]); }

/* relu' = 1 for x > 0, else 0 */
RULE(rule_relu)
{
    UNUSED_RULE_ARGS;
    CAtom *pos = ad_cmp(F, P_GT, x[0], ad_lit(0, core_atom_type(x[0])));
    return ad_select(F, pos, dx[0], NULL);
}

/* atan2 y x: (x dy - y dx) / (x² + y²) */
RULE(rule_atan2)
{
    UNUSED_RULE_ARGS;
    CAtom *q = ad_add(F, ad_mul(F, x[0], x[0]), ad_mul(F, x[1], x[1]));
    CAtom *n = ad_sub(F, ad_mul(F, x[1], dx[0]), ad_mul(F, x[0], dx[1]));
    return ad_div(F, n, q);
}

/* Ties: max takes the first operand's tangent, min the second's, so that
 * max x y + min x y has the tangent of x + y (ad-cases 5). */
RULE(rule_max)
{
    UNUSED_RULE_ARGS;
    return ad_select(F, ad_cmp(F, P_GE, x[0], x[1]), dx[0], dx[1]);
}

RULE(rule_min)
{
    UNUSED_RULE_ARGS;
    return ad_select(F, ad_cmp(F, P_LT, x[0], x[1]), dx[0], dx[1]);
}

RULE(rule_zero) { UNUSED_RULE_ARGS; return NULL; }

/* ---- reductions and linear algebra ---- */

/* The dimensions of an array as int atoms. */
static int dims_of(AdFwd *F, CAtom *a, CAtom **out)
{
    int r = rank_of_atom(a);
    if (r == 1) {
        out[0] = emit1(F, "n", P_LENGTH, type_int(), a, 0);
        return 1;
    }
    Type **ts = NEWN(Type *, r);
    for (int i = 0; i < r; i++)
        ts[i] = type_int();
    CAtom *s = emit1(F, "sh", P_SHAPE, type_tuple(ts, r), a, 0);
    for (int i = 0; i < r && i < 8; i++)
        out[i] = emit1(F, "n", P_PROJ, type_int(), s, i);
    return r;
}

CAtom *ad_flatten(AdFwd *F, CAtom *a, CAtom **size)
{
    CAtom *d[8];
    int r = dims_of(F, a, d);
    if (r == 1) {
        if (size)
            *size = d[0];
        return a;
    }
    CAtom *n = d[0];
    for (int i = 1; i < r; i++)
        n = emit2(F, "n", P_MUL, type_int(), n, d[i]);
    if (size)
        *size = n;
    CAtom *xs[2] = {a, n};
    return ad_emit(F, "flat", P_RESHAPE, type_array(elem_of(core_atom_type(a)), 1), xs, 2, 0);
}

/* d prod x: the product loop's tangent, (p, dp) -> (p x_i, dp x_i + p dx_i),
 * which is exact with zeros among the x_i (ad-cases 10) and divides by
 * nothing. */
RULE(rule_prod)
{
    UNUSED_RULE_ARGS;
    CAtom *n;
    CAtom *xf = ad_flatten(F, x[0], &n);
    CAtom *df = ad_flatten(F, dx[0], NULL);
    Type *et = elem_of(core_atom_type(x[0]));
    Type *st = type_tuple2(et, et);
    CAtom *ini[2] = {ad_lit(1, et), ad_lit(0, et)};
    CAtom *init = ad_emit(F, "s", P_TUPLE, st, ini, 2, 0);
    CVar *s = core_var("s", st, F->loc), *iv = core_var("i", type_int(), F->loc);
    CBlock *body = core_block_new();
    CBlock *save = F->blk;
    F->blk = body;
    CAtom *sa = core_atom_var(s), *ia = core_atom_var(iv);
    CAtom *p = emit1(F, "p", P_PROJ, et, sa, 0), *dp = emit1(F, "dp", P_PROJ, et, sa, 1);
    CAtom *xi = emit2(F, "x", P_INDEX, et, xf, ia), *dxi = emit2(F, "dx", P_INDEX, et, df, ia);
    CAtom *np = ad_mul(F, p, xi);
    CAtom *ndp = ad_add(F, ad_mul(F, dp, xi), ad_mul(F, p, dxi));
    CAtom *nx[2] = {np, ndp};
    body->result = ad_emit(F, "s", P_TUPLE, st, nx, 2, 0);
    F->blk = save;
    CExpr *lp = core_expr(CE_LOOP, st, F->loc);
    lp->nargs = 2;
    lp->args = NEWN(CAtom *, 2);
    lp->args[0] = init;
    lp->args[1] = n;
    lp->u.loop.state = s;
    lp->u.loop.kind = LOOP_FOR;
    lp->u.loop.ivar = iv;
    lp->u.loop.body = body;
    CAtom *r = bind_expr(F, "pr", lp);
    return emit1(F, "dprod", P_PROJ, et, r, 1);
}

/* maximum: the tangent at the (first) arg max; minimum: at the arg max of -x */
RULE(rule_maximum)
{
    UNUSED_RULE_ARGS;
    CAtom *xf = ad_flatten(F, x[0], NULL), *df = ad_flatten(F, dx[0], NULL);
    if (e->u.prim.op == P_MINIMUM)
        xf = ad_neg(F, xf);
    CAtom *i = emit1(F, "i", P_ARGMAX, type_int(), xf, 0);
    return emit2(F, "d", P_INDEX, elem_of(core_atom_type(x[0])), df, i);
}

/* dot and @ are bilinear */
RULE(rule_bilinear)
{
    UNUSED_RULE_ARGS;
    Prim op = e->u.prim.op;
    Type *t = tangent_of(e->type);
    CAtom *a = dx[0] ? emit2(F, "d", op, t, dx[0], x[1]) : NULL;
    CAtom *b = dx[1] ? emit2(F, "d", op, t, x[0], dx[1]) : NULL;
    return ad_add(F, a, b);
}

/* The sum over the last axis keeping it (length 1), for softmax. */
CAtom *ad_sum_last(AdFwd *F, CAtom *a, bool keep)
{
    Type *t = core_atom_type(a);
    int r = rank_of(t);
    Type *et = elem_of(t);
    if (r == 1)
        return emit1(F, "s", P_SUM, et, a, 0);
    CAtom *d[8];
    dims_of(F, a, d);
    CAtom *rows = d[0];
    for (int i = 1; i < r - 1; i++)
        rows = emit2(F, "n", P_MUL, type_int(), rows, d[i]);
    CAtom *xs[3] = {a, rows, d[r - 1]};
    CAtom *m = ad_emit(F, "m", P_RESHAPE, type_array(et, 2), xs, 3, 0);
    CAtom *od[1] = {d[r - 1]};
    CAtom *ones = ad_emit(F, "o", P_ONES, type_array(et, 1), od, 1, 0);
    CAtom *s = emit2(F, "s", P_MATMUL, type_array(et, 1), m, ones);
    CAtom **nd = NEWN(CAtom *, r + 1);
    nd[0] = s;
    for (int i = 0; i < r - 1; i++)
        nd[i + 1] = d[i];
    int nr = r - 1;
    if (keep)
        nd[++nr] = core_atom_int(1);
    return ad_emit(F, "s", P_RESHAPE, type_array(et, nr), nd, nr + 1, 0);
}

/* softmax: dy = y (dx - sum(y dx)) along the last axis */
RULE(rule_softmax)
{
    UNUSED_RULE_ARGS;
    CAtom *s = ad_sum_last(F, ad_mul(F, y, dx[0]), true);
    return ad_mul(F, y, ad_sub(F, dx[0], s));
}

/* logsumexp: d = sum(softmax x * dx) along the last axis (stable: softmax
 * is computed shifted by the maximum) */
RULE(rule_logsumexp)
{
    UNUSED_RULE_ARGS;
    CAtom *p = emit1(F, "p", P_SOFTMAX, core_atom_type(x[0]), x[0], 0);
    return ad_sum_last(F, ad_mul(F, p, dx[0]), false);
}

/* Jacobi's formula by rows: d det A = Σ_i det (A with row i replaced by
 * row i of dA), det being multilinear in the rows. Exact at singular
 * matrices too (ad-cases 11: no inverse), and its own derivative is again
 * made of dets, so nesting grows the code by a constant factor per level.
 * O(n⁴) per tangent. */
RULE(rule_det)
{
    UNUSED_RULE_ARGS;
    Type *mt = core_atom_type(x[0]);
    Type *et = elem_of(mt);
    Type *rt = type_array(et, 1);
    CAtom *n = emit1(F, "n", P_LENGTH, type_int(), x[0], 0);
    CAtom *idx = emit1(F, "is", P_IOTA, type_array(type_int(), 1), n, 0);
    CVar *iv = core_var("i", type_int(), F->loc);
    CBlock *ib = core_block_new();
    CBlock *save = F->blk;
    F->blk = ib;
    CAtom *ia = core_atom_var(iv);
    CAtom *row = emit2(F, "row", P_INDEX, rt, dx[0], ia);
    CAtom *us[3] = {x[0], row, ia};
    CAtom *ai = ad_emit(F, "ai", P_UPDATE, mt, us, 3, 0);
    ib->result = emit1(F, "di", P_DET, et, ai, 0);
    F->blk = save;
    CLambda *il = core_lambda(&iv, 1, ib, type_func(type_int(), et), F->loc);
    CAtom *ds = emit_soac(F, "ds", SOAC_MAP, rt, il, &idx, 1);
    return emit1(F, "ddet", P_SUM, et, ds, 0);
}

/* d inv A = -inv A dA inv A */
RULE(rule_inv)
{
    UNUSED_RULE_ARGS;
    Type *mt = core_atom_type(y);
    CAtom *a = emit2(F, "t", P_MATMUL, mt, y, dx[0]);
    return ad_neg(F, emit2(F, "t", P_MATMUL, mt, a, y));
}

/* x = solve A b: dx = solve A (db - dA x) */
RULE(rule_solve)
{
    UNUSED_RULE_ARGS;
    Type *bt = core_atom_type(y);
    CAtom *r = dx[1];
    if (dx[0])
        r = ad_sub(F, r, emit2(F, "t", P_MATMUL, bt, dx[0], y));
    return emit2(F, "dx", P_SOLVE, bt, x[0], r);
}

/* The mask of Φ: 1 below the diagonal, 1/2 on it, 0 above. */
static CAtom *phi_mask(AdFwd *F, CAtom *a)
{
    Type *et = elem_of(core_atom_type(a));
    CAtom *n = emit1(F, "n", P_LENGTH, type_int(), a, 0);
    CAtom *iv = emit1(F, "is", P_IOTA, type_array(type_int(), 1), n, 0);
    CAtom *cd[3] = {iv, n, core_atom_int(1)};
    CAtom *col = ad_emit(F, "col", P_RESHAPE, type_array(type_int(), 2), cd, 3, 0);
    CAtom *below = ad_cmp(F, P_LT, iv, col); /* j < i */
    CAtom *diag = ad_cmp(F, P_EQ, iv, col);
    return ad_select(F, below, ad_lit(1, et), ad_select(F, diag, ad_lit(0.5, et), ad_lit(0, et)));
}

/* L = chol A: dL = L Φ(L⁻¹ dA L⁻ᵀ) (Murray 2016, "Differentiation of the
 * Cholesky decomposition") */
CAtom *ad_chol_tangent(AdFwd *F, CAtom *L, CAtom *dA)
{
    Type *mt = core_atom_type(L);
    CAtom *li = emit1(F, "linv", P_INV, mt, L, 0);
    CAtom *lt = emit1(F, "linvt", P_TRANSPOSE, mt, li, 0);
    CAtom *m = emit2(F, "m", P_MATMUL, mt, emit2(F, "m", P_MATMUL, mt, li, dA), lt);
    CAtom *phi = ad_mul(F, m, phi_mask(F, L));
    return emit2(F, "dl", P_MATMUL, mt, L, phi);
}

RULE(rule_cholesky)
{
    UNUSED_RULE_ARGS;
    return ad_chol_tangent(F, y, dx[0]);
}

#undef RULE

void ad_forward_reset(void)
{
    zero_helpers = NULL;
    zero_prog = NULL;
    fun_memo = NULL;
    fun_memo_prog = NULL;
}

void ad_forward_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    for (int i = 0; i < P__COUNT; i++)
        if (core_prims[i].flags & PRIM_LINEAR)
            core_prims[i].jvp_rule = (void *)rule_linear;
    struct { Prim op; AdJvpRule r; } t[] = {
        {P_ADD, rule_add}, {P_SUB, rule_sub}, {P_NEG, rule_linear}, {P_MUL, rule_mul},
        {P_DIV, rule_div}, {P_MOD, rule_mod}, {P_POW, rule_pow}, {P_EXP, rule_exp},
        {P_LOG, rule_log}, {P_LOG1P, rule_log1p}, {P_EXPM1, rule_expm1}, {P_SQRT, rule_sqrt},
        {P_SIN, rule_sin}, {P_COS, rule_cos}, {P_TAN, rule_tan}, {P_TANH, rule_tanh},
        {P_ABS, rule_abs}, {P_SIGMOID, rule_sigmoid}, {P_SOFTPLUS, rule_softplus},
        {P_RELU, rule_relu}, {P_FLOOR, rule_zero}, {P_CEIL, rule_zero}, {P_ATAN2, rule_atan2},
        {P_MIN, rule_min}, {P_MAX, rule_max}, {P_TO_FLOAT, rule_linear}, {P_TO_F32, rule_linear},
        {P_SELECT, rule_select}, {P_PROD, rule_prod}, {P_MAXIMUM, rule_maximum},
        {P_MINIMUM, rule_maximum}, {P_DOT, rule_bilinear}, {P_MATMUL, rule_bilinear},
        {P_SOFTMAX, rule_softmax}, {P_LOGSUMEXP, rule_logsumexp}, {P_DET, rule_det},
        {P_INV, rule_inv}, {P_SOLVE, rule_solve}, {P_CHOLESKY, rule_cholesky},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        core_prims[t[i].op].jvp_rule = (void *)t[i].r;
}

/* ================================================================ the reusable entry */

static void lin_block(CBlock *b, CoreMap *lin);

static bool atom_lin(CAtom *a, CoreMap *lin)
{
    return a && a->kind == CA_VAR && core_map_get(lin, a->u.var);
}

static bool lin_expr(CExpr *e, CoreMap *lin)
{
    bool any = false;
    for (int i = 0; i < e->nargs; i++)
        any |= atom_lin(e->args[i], lin);
    switch (e->kind) {
    case CE_IF:
        lin_block(e->u.if_.then_, lin);
        lin_block(e->u.if_.else_, lin);
        any |= atom_lin(e->u.if_.then_->result, lin) || atom_lin(e->u.if_.else_->result, lin);
        break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++) {
            lin_block(e->u.case_.alts[i].body, lin);
            any |= atom_lin(e->u.case_.alts[i].body->result, lin);
        }
        break;
    case CE_LOOP:
        if (any)
            core_map_put(lin, e->u.loop.state, (void *)1);
        lin_block(e->u.loop.body, lin);
        any |= atom_lin(e->u.loop.body->result, lin);
        break;
    case CE_SOAC:
        if (any)
            for (int i = 0; i < e->u.soac.fn->nparams; i++)
                core_map_put(lin, e->u.soac.fn->params[i], (void *)1);
        lin_block(e->u.soac.fn->body, lin);
        any |= atom_lin(e->u.soac.fn->body->result, lin);
        break;
    case CE_LAMBDA:
        lin_block(e->u.lambda->body, lin);
        break;
    default:
        break;
    }
    if (e->kind == CE_PRIM && (core_prims[e->u.prim.op].flags & PRIM_NONDIFF))
        return false;
    return any;
}

static void lin_block(CBlock *b, CoreMap *lin)
{
    for (int i = 0; i < b->nbinds; i++)
        if (lin_expr(b->binds[i].e, lin))
            core_map_put(lin, b->binds[i].var, (void *)1);
}

CLambda *ad_forward_lambda(CProgram *p, CLambda *l, CoreMap *linear)
{
    ad_forward_init();
    if (l->nparams != 1)
        return NULL;
    Type *a = rs(l->params[0]->type);
    Type *b = rs(core_atom_type(l->body->result));
    if (tkind(a) == TK_FUNC || tkind(b) == TK_FUNC)
        return NULL;
    AdFwd F = {.prog = p, .order = 1, .loc = l->loc, .ok = true};
    CVar *x = core_var(l->params[0]->name, a, l->loc);
    CVar *dx = core_var(dname(l->params[0]->name), tangent_of(a), l->loc);
    CBlock *body = core_block_new();
    F.blk = body;
    AdRep *arg = ad_rep(&F, core_atom_var(x));
    if (tkind(a) == TK_DIFF)
        arg->c[1] = core_atom_var(dx);
    AdRep *r = ad_fwd_lambda(&F, l, &arg);
    F.blk = body;
    CAtom *xs[2] = {r->c[0], ad_materialise(&F, tkind(b) == TK_DIFF ? r->c[1] : NULL, b, r->c[0])};
    Type *rt = type_tuple2(b, tangent_of(b));
    body->result = ad_emit(&F, "r", P_TUPLE, rt, xs, 2, 0);
    core_map_free(&F.env);
    if (!F.ok)
        return NULL;
    CVar *ps[2] = {x, dx};
    if (linear) {
        core_map_put(linear, dx, (void *)1);
        lin_block(body, linear);
    }
    return core_lambda(ps, 2, body, type_func(a, type_func(tangent_of(a), rt)), l->loc);
}

/* ================================================================ the forms */

static Type *lambda_result(CLambda *l) { return rs(core_atom_type(l->body->result)); }

/* The primal (slot 0) or tangent (slot 1) closure of a function value
 * represented by its dual: fn z => (dual (z, 0)).slot; T(a -> b) = a -> T b. */
static CAtom *undual(AdFwd *F, AdRep *r, Type *ft, int slot)
{
    ft = rs(ft);
    if (slot == 0 && r->c[0])
        return r->c[0];
    Type *a = ft->args[0], *b = rs(ft->args[1]);
    CVar *z = core_var("z", a, F->loc);
    CBlock *body = core_block_new();
    CBlock *save = F->blk;
    F->blk = body;
    AdRep *zr = ad_rep(F, core_atom_var(z));
    AdRep *res;
    if (r->dual) {
        CAtom *pz = pack(F, zr, a, F->loc);
        CExpr *ap = core_expr(CE_APPLY, pack_type(b, F->order), F->loc);
        ap->nargs = 2;
        ap->args = NEWN(CAtom *, 2);
        ap->args[0] = r->dual;
        ap->args[1] = pz;
        res = unpack(F, bind_expr(F, "r", ap), b);
    } else {
        CExpr *ap = core_expr(CE_APPLY, b, F->loc);
        ap->nargs = 2;
        ap->args = NEWN(CAtom *, 2);
        ap->args[0] = r->c[0];
        ap->args[1] = core_atom_var(z);
        res = ad_rep(F, bind_expr(F, "r", ap));
    }
    CAtom *out;
    switch (tkind(b)) {
    case TK_DIFF:
        out = slot ? ad_materialise(F, res->c[1], b, res->c[0]) : res->c[0];
        break;
    case TK_NONE:
        out = slot ? ad_zero(F, b, res->c[0]) : res->c[0];
        break;
    default:
        out = undual(F, res, b, slot);
        break;
    }
    body->result = out;
    F->blk = save;
    Type *t = slot ? tangent_of(ft) : ft;
    CLambda *l = core_lambda(&z, 1, body, t, F->loc);
    return bind_lambda(F, slot ? "dclo" : "clo", l, t);
}

/* jvp f x dx = (f x, D f x dx) */
static CAtom *form_jvp(CProgram *p, CExpr *e, CBlock *b)
{
    AdFwd F = {.prog = p, .order = 1, .blk = b, .loc = e->loc, .ok = true};
    CLambda *l = e->u.deriv.fn;
    Type *a = rs(l->params[0]->type), *bt = lambda_result(l);
    if (tkind(a) == TK_FUNC) {
        ad_error(&F, e->loc, "jvp with respect to a function value is not supported");
        return NULL;
    }
    AdRep *arg = ad_rep(&F, e->args[0]);
    if (tkind(a) == TK_DIFF)
        arg->c[1] = nz(e->args[1]);
    AdRep *r = ad_fwd_lambda(&F, l, &arg);
    F.blk = b;
    CAtom *y, *dy;
    switch (tkind(bt)) {
    case TK_DIFF:
        y = r->c[0];
        dy = ad_materialise(&F, r->c[1], bt, y);
        break;
    case TK_NONE:
        y = r->c[0] ? r->c[0] : pack(&F, r, bt, e->loc);
        if (!ad_tangent_trivial(bt)) {
            ad_error(&F, e->loc, "jvp of a function whose result holds functions inside data is not supported");
            return NULL;
        }
        dy = ad_zero(&F, bt, y);
        break;
    default:
        y = undual(&F, r, bt, 0);
        dy = undual(&F, r, bt, 1);
        break;
    }
    core_map_free(&F.env);
    if (!F.ok)
        return NULL;
    CAtom *xs[2] = {y, dy};
    return ad_emit(&F, "jvp", P_TUPLE, e->type, xs, 2, 0);
}

/* Building blocks for the forms made of jvps (expanded by ad.c). */
static CAtom *bind_in(CBlock *b, const char *name, CExpr *e)
{
    CVar *v = core_bind(b, name, e);
    return core_atom_var(v);
}

static CAtom *prim_in(CBlock *b, const char *name, Prim op, Type *t, Loc loc, CAtom **xs, int n, int64_t imm)
{
    return bind_in(b, name, core_prim(op, t, loc, xs, n, imm));
}

/* (jvp l x dx).1 as a CE_DERIV in b; l is copied (fresh variables). */
static CAtom *jvp_tangent(CBlock *b, CLambda *l, CAtom *x, CAtom *dx, Loc loc)
{
    Type *bt = lambda_result(l);
    CExpr *d = core_expr(CE_DERIV, type_tuple2(bt, tangent_of(bt)), loc);
    d->u.deriv.kind = DERIV_JVP;
    d->u.deriv.fn = core_copy_lambda(l, NULL, NULL, 0);
    d->nargs = 2;
    d->args = NEWN(CAtom *, 2);
    d->args[0] = x;
    d->args[1] = dx;
    CAtom *r = bind_in(b, "jvp", d);
    return prim_in(b, "d", P_PROJ, tangent_of(bt), loc, &r, 1, 1);
}

/* fn y => (jvp l y dx).1 */
static CLambda *directional(CLambda *l, CAtom *dx, Loc loc)
{
    Type *a = l->params[0]->type;
    CVar *y = core_var("y", a, loc);
    CBlock *body = core_block_new();
    body->result = jvp_tangent(body, l, core_atom_var(y), dx, loc);
    return core_lambda(&y, 1, body, type_func(a, core_atom_type(body->result)), loc);
}

static CLambda *map_lambda(CVar *i, CBlock *body, Loc loc)
{
    return core_lambda(&i, 1, body, type_func(i->type, core_atom_type(body->result)), loc);
}

static CAtom *soac_in(CBlock *b, const char *name, Type *t, CLambda *l, CAtom *arr, Loc loc)
{
    CExpr *e = core_expr(CE_SOAC, t, loc);
    e->u.soac.kind = SOAC_MAP;
    e->u.soac.fn = l;
    e->nargs = 1;
    e->args = NEWN(CAtom *, 1);
    e->args[0] = arr;
    return bind_in(b, name, e);
}

/* The basis vector e_i of []float with n elements. */
static CAtom *one_hot_in(CBlock *b, CAtom *n, CAtom *i, Loc loc)
{
    CAtom *xs[2] = {n, i};
    return prim_in(b, "e", P_ONE_HOT, type_array(type_float(), 1), loc, xs, 2, 0);
}

/* jacfwd f x = transpose (map (fn j => (jvp f x e_j).1) (iota n)) */
static CAtom *form_jacfwd(CProgram *p, CExpr *e, CBlock *b)
{
    Loc loc = e->loc;
    CLambda *l = e->u.deriv.fn;
    CAtom *x = e->args[0];
    CBlock *t = core_block_new();
    CAtom *n = prim_in(t, "n", P_LENGTH, type_int(), loc, &x, 1, 0);
    CAtom *idx = prim_in(t, "is", P_IOTA, type_array(type_int(), 1), loc, &n, 1, 0);
    CVar *j = core_var("j", type_int(), loc);
    CBlock *jb = core_block_new();
    jb->result = jvp_tangent(jb, l, x, one_hot_in(jb, n, core_atom_var(j), loc), loc);
    Type *mt = type_array(type_float(), 2);
    CAtom *cols = soac_in(t, "cols", mt, map_lambda(j, jb, loc), idx, loc);
    t->result = prim_in(t, "jac", P_TRANSPOSE, mt, loc, &cols, 1, 0);
    if (!ad_expand_block(t))
        return NULL;
    for (int i = 0; i < t->nbinds; i++)
        push_bind(b, t->binds[i].var, t->binds[i].e);
    return t->result;
}

/* ---- the basis of T(a), for hvp and friends ---- */

typedef CAtom *(*BasisFn)(void *ctx, CBlock *b, CAtom *e);

typedef struct BasisTuple {
    BasisFn fn;
    void *ctx;
    Type *t;    /* the tuple or record type */
    CAtom *x;   /* the point (for the zeros of the other components) */
    int i;
} BasisTuple;

static CAtom *basis_map(AdFwd *F, CBlock *b, Type *t, CAtom *x, BasisFn fn, void *ctx);

static CAtom *basis_tuple_fn(void *vctx, CBlock *b, CAtom *ei)
{
    BasisTuple *c = vctx;
    Type *t = rs(c->t);
    bool tup = t->kind == TY_TUPLE;
    int n = tup ? t->nargs : t->decl->nfields;
    AdFwd G = {.order = 1, .blk = b, .ok = true};
    CAtom **cs = NEWN(CAtom *, n);
    for (int j = 0; j < n; j++) {
        Type *ct = tup ? rs(t->args[j]) : core_type_field(t, j);
        if (j == c->i) {
            cs[j] = ei;
        } else {
            CAtom *xj = emit1(&G, "c", tup ? P_PROJ : P_FIELD, ct, c->x, j);
            cs[j] = ad_zero(&G, ct, xj);
        }
    }
    CAtom *e = ad_emit(&G, "e", tup ? P_TUPLE : P_RECORD, tangent_of(t), cs, n, 0);
    return c->fn(c->ctx, b, e);
}

/* The value of T(t) whose scalar components are fn(e) for the basis
 * vectors e of T(t) (fn returns a float). */
static CAtom *basis_map(AdFwd *F, CBlock *b, Type *t, CAtom *x, BasisFn fn, void *ctx)
{
    t = rs(t);
    AdFwd G = {.prog = F->prog, .order = 1, .blk = b, .loc = F->loc, .ok = true};
    Loc loc = F->loc;
    if (ad_tangent_trivial(t))
        return ad_zero(&G, t, x);
    switch (t->kind) {
    case TY_FLOAT:
        return fn(ctx, b, ad_lit(1, t));
    case TY_F32: {
        CAtom *s = fn(ctx, b, ad_lit(1, t));
        return emit1(&G, "s", P_TO_F32, type_f32(), s, 0);
    }
    case TY_ARRAY: {
        Type *et = rs(t->elem);
        if (!is_floatish(et))
            break;
        CAtom *n;
        CAtom *d[8];
        int r = dims_of(&G, x, d);
        n = d[0];
        for (int i = 1; i < r; i++)
            n = emit2(&G, "n", P_MUL, type_int(), n, d[i]);
        CAtom *idx = emit1(&G, "is", P_IOTA, type_array(type_int(), 1), n, 0);
        CVar *iv = core_var("i", type_int(), loc);
        CBlock *ib = core_block_new();
        G.blk = ib;
        CAtom *e = one_hot_in(ib, n, core_atom_var(iv), loc);
        if (r > 1) {
            CAtom **xs = NEWN(CAtom *, r + 1);
            xs[0] = e;
            for (int i = 0; i < r; i++)
                xs[i + 1] = d[i];
            e = ad_emit(&G, "e", P_RESHAPE, type_array(type_float(), r), xs, r + 1, 0);
        }
        if (et->kind == TY_F32)
            e = emit1(&G, "e", P_TO_F32, type_array(type_f32(), r), e, 0);
        CAtom *s = fn(ctx, ib, e);
        G.blk = ib;
        if (et->kind == TY_F32)
            s = emit1(&G, "s", P_TO_F32, type_f32(), s, 0);
        ib->result = s;
        G.blk = b;
        CAtom *flat = soac_in(b, "g", type_array(et, 1), map_lambda(iv, ib, loc), idx, loc);
        if (r == 1)
            return flat;
        CAtom **xs = NEWN(CAtom *, r + 1);
        xs[0] = flat;
        for (int i = 0; i < r; i++)
            xs[i + 1] = d[i];
        return ad_emit(&G, "g", P_RESHAPE, t, xs, r + 1, 0);
    }
    case TY_TUPLE:
    case TY_NAMED: {
        if (t->kind == TY_NAMED && t->decl->kind != TD_RECORD)
            break;
        bool tup = t->kind == TY_TUPLE;
        int n = tup ? t->nargs : t->decl->nfields;
        CAtom **cs = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++) {
            Type *ct = tup ? rs(t->args[i]) : core_type_field(t, i);
            BasisTuple *c = NEW(BasisTuple);
            c->fn = fn;
            c->ctx = ctx;
            c->t = t;
            c->x = x;
            c->i = i;
            G.blk = b;
            CAtom *xi = emit1(&G, "c", tup ? P_PROJ : P_FIELD, ct, x, i);
            cs[i] = basis_map(F, b, ct, xi, basis_tuple_fn, c);
        }
        G.blk = b;
        return ad_emit(&G, "g", tup ? P_TUPLE : P_RECORD, tangent_of(t), cs, n, 0);
    }
    default:
        break;
    }
    ad_error(F, loc, "this derivative needs the basis of the tangent space of %s, which is not supported "
                     "(floats, arrays of floats, tuples and records of them are)", type_to_string(t));
    return core_atom_unit();
}

/* ---- hessian, hvp, fwdgrad ---- */

typedef struct SecondCtx {
    CLambda *l;
    CAtom *x, *v; /* second(e) = (jvp (fn y => (jvp l y e).1) x v).1 */
    Loc loc;
} SecondCtx;

static CAtom *second_fn(void *vctx, CBlock *b, CAtom *e)
{
    SecondCtx *c = vctx;
    CLambda *g = directional(c->l, e, c->loc);
    return jvp_tangent(b, g, c->x, c->v, c->loc);
}

static CAtom *expand_into(CProgram *p, CBlock *t, CBlock *b)
{
    if (!ad_expand_block(t))
        return NULL;
    for (int i = 0; i < t->nbinds; i++)
        push_bind(b, t->binds[i].var, t->binds[i].e);
    return t->result;
}

/* hessian f x: forward over forward, H[i][j] = (jvp (fn y => (jvp f y e_i).1) x e_j).1 */
static CAtom *form_hessian(CProgram *p, CExpr *e, CBlock *b)
{
    Loc loc = e->loc;
    CLambda *l = e->u.deriv.fn;
    CAtom *x = e->args[0];
    Type *a = rs(l->params[0]->type);
    CBlock *t = core_block_new();
    if (is_floatish(a)) {
        CAtom *one = ad_lit(1, a);
        t->result = jvp_tangent(t, directional(l, one, loc), x, one, loc);
        return expand_into(p, t, b);
    }
    if (a->kind != TY_ARRAY || a->rank != 1 || !is_floatish(a->elem)) {
        error_at(loc, "hessian needs a function of float or []float, not of %s", type_to_string(a));
        return NULL;
    }
    CAtom *n = prim_in(t, "n", P_LENGTH, type_int(), loc, &x, 1, 0);
    CAtom *idx = prim_in(t, "is", P_IOTA, type_array(type_int(), 1), loc, &n, 1, 0);
    CVar *iv = core_var("i", type_int(), loc), *jv = core_var("j", type_int(), loc);
    CBlock *ib = core_block_new(), *jb = core_block_new();
    CAtom *ei = one_hot_in(ib, n, core_atom_var(iv), loc);
    CAtom *ej = one_hot_in(jb, n, core_atom_var(jv), loc);
    jb->result = jvp_tangent(jb, directional(l, ei, loc), x, ej, loc);
    ib->result = soac_in(ib, "row", type_array(type_float(), 1), map_lambda(jv, jb, loc), idx, loc);
    t->result = soac_in(t, "hess", type_array(type_float(), 2), map_lambda(iv, ib, loc), idx, loc);
    return expand_into(p, t, b);
}

/* hvp f x v = ∇²f(x) v: component e of the basis: (jvp (fn y => (jvp f y e).1) x v).1 */
static CAtom *form_hvp(CProgram *p, CExpr *e, CBlock *b)
{
    AdFwd F = {.prog = p, .order = 1, .loc = e->loc, .ok = true};
    CLambda *l = e->u.deriv.fn;
    SecondCtx c = {l, e->args[0], e->args[1], e->loc};
    CBlock *t = core_block_new();
    t->result = basis_map(&F, t, l->params[0]->type, e->args[0], second_fn, &c);
    if (!F.ok)
        return NULL;
    return expand_into(p, t, b);
}

/* s v on T(a), s a float */
static CAtom *scale_atom(AdFwd *F, CAtom *s, CAtom *v)
{
    Type *t = rs(core_atom_type(v));
    if (ad_tangent_trivial(t))
        return v;
    if (t->kind == TY_TUPLE || (t->kind == TY_NAMED && t->decl->kind == TD_RECORD)) {
        bool tup = t->kind == TY_TUPLE;
        int n = tup ? t->nargs : t->decl->nfields;
        CAtom **c = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++) {
            Type *ct = tup ? rs(t->args[i]) : core_type_field(t, i);
            c[i] = scale_atom(F, s, emit1(F, "c", tup ? P_PROJ : P_FIELD, ct, v, i));
        }
        return ad_emit(F, "s", tup ? P_TUPLE : P_RECORD, t, c, n, 0);
    }
    if (elem_of(t)->kind == TY_F32)
        s = emit1(F, "s", P_TO_F32, type_f32(), s, 0);
    return emit2(F, "g", P_MUL, t, s, v);
}

/* A sample of N(0, I) on T(t) drawn from key k. */
static CAtom *normal_like(AdFwd *F, CAtom *k, Type *t, CAtom *x)
{
    t = rs(t);
    if (ad_tangent_trivial(t))
        return ad_zero(F, t, x);
    switch (t->kind) {
    case TY_FLOAT: case TY_F32:
        return emit1(F, "v", P_NORMAL, t, k, 0);
    case TY_ARRAY: {
        if (!is_floatish(t->elem))
            break;
        CAtom *d[8];
        int r = dims_of(F, x, d);
        CAtom **xs = NEWN(CAtom *, r + 1);
        xs[0] = k;
        for (int i = 0; i < r; i++)
            xs[i + 1] = d[i];
        return ad_emit(F, "v", P_NORMAL, t, xs, r + 1, 0);
    }
    case TY_TUPLE: case TY_NAMED: {
        if (t->kind == TY_NAMED && t->decl->kind != TD_RECORD)
            break;
        bool tup = t->kind == TY_TUPLE;
        int n = tup ? t->nargs : t->decl->nfields;
        CAtom **c = NEWN(CAtom *, n > 0 ? n : 1);
        Type *kt = type_rng_key();
        for (int i = 0; i < n; i++) {
            Type *ct = tup ? rs(t->args[i]) : core_type_field(t, i);
            CAtom *ks = emit1(F, "ks", P_SPLIT, type_tuple2(kt, kt), k, 0);
            CAtom *ki = emit1(F, "k", P_PROJ, kt, ks, 0);
            k = emit1(F, "k", P_PROJ, kt, ks, 1);
            c[i] = normal_like(F, ki, ct, emit1(F, "c", tup ? P_PROJ : P_FIELD, ct, x, i));
        }
        return ad_emit(F, "v", tup ? P_TUPLE : P_RECORD, tangent_of(t), c, n, 0);
    }
    default:
        break;
    }
    ad_error(F, F->loc, "fwdgrad cannot draw a direction in the tangent space of %s", type_to_string(t));
    return core_atom_unit();
}

/* fwdgrad f x k = (∇f·v) v, v ~ N(0, I) from k (Baydin et al., "Gradients
 * without backpropagation", 2022); fwdgrad_dir f x v with v given
 * (Fournier et al., "Can forward gradient match backpropagation?", 2023). */
static CAtom *form_fwdgrad(CProgram *p, CExpr *e, CBlock *b)
{
    AdFwd F = {.prog = p, .order = 1, .blk = b, .loc = e->loc, .ok = true};
    CLambda *l = e->u.deriv.fn;
    Type *a = rs(l->params[0]->type);
    CAtom *x = e->args[0];
    CAtom *v = e->u.deriv.kind == DERIV_FWDGRAD ? normal_like(&F, e->args[1], a, x) : e->args[1];
    if (!F.ok)
        return NULL;
    CBlock *t = core_block_new();
    CAtom *s = jvp_tangent(t, l, x, v, e->loc);
    t->result = s;
    if (!expand_into(p, t, b))
        return NULL;
    F.blk = b;
    return scale_atom(&F, s, v);
}

CAtom *ad_forward_form(CProgram *p, CExpr *e, CBlock *b)
{
    ad_forward_init();
    switch (e->u.deriv.kind) {
    case DERIV_JVP: return form_jvp(p, e, b);
    case DERIV_JACFWD: return form_jacfwd(p, e, b);
    case DERIV_HESSIAN: return form_hessian(p, e, b);
    case DERIV_HVP: return form_hvp(p, e, b);
    case DERIV_FWDGRAD: case DERIV_FWDGRAD_DIR: return form_fwdgrad(p, e, b);
    default: return NULL;
    }
}

/* ---- gradients by forward mode (a cross-check of reverse mode) ---- */

typedef struct GradCtx {
    CLambda *l;
    CAtom *x;
    Loc loc;
} GradCtx;

static CAtom *grad_fn(void *vctx, CBlock *b, CAtom *e)
{
    GradCtx *c = vctx;
    return jvp_tangent(b, c->l, c->x, e, c->loc);
}

/* grad f x = the basis map of e -> (jvp f x e).1 (one forward pass per
 * component); value_and_grad adds f x; jacrev is jacfwd. Used only when
 * DCC_AD_GRAD_BY_FORWARD is set, to check reverse mode against. */
CAtom *ad_forward_grad_form(CProgram *p, CExpr *e, CBlock *b)
{
    ad_forward_init();
    CLambda *l = e->u.deriv.fn;
    if (e->u.deriv.kind == DERIV_JACREV)
        return form_jacfwd(p, e, b);
    if (e->u.deriv.kind != DERIV_GRAD && e->u.deriv.kind != DERIV_VALUE_AND_GRAD)
        return NULL;
    AdFwd F = {.prog = p, .order = 1, .loc = e->loc, .ok = true};
    GradCtx c = {l, e->args[0], e->loc};
    CBlock *t = core_block_new();
    CAtom *g = basis_map(&F, t, l->params[0]->type, e->args[0], grad_fn, &c);
    if (!F.ok)
        return NULL;
    if (e->u.deriv.kind == DERIV_VALUE_AND_GRAD) {
        CExpr *d = core_expr(CE_DERIV, type_tuple2(type_float(), type_float()), e->loc);
        d->u.deriv.kind = DERIV_JVP;
        d->u.deriv.fn = core_copy_lambda(l, NULL, NULL, 0);
        d->nargs = 2;
        d->args = NEWN(CAtom *, 2);
        d->args[0] = e->args[0];
        d->args[1] = ad_zero(&(AdFwd){.prog = p, .order = 1, .blk = t, .loc = e->loc, .ok = true},
                             l->params[0]->type, e->args[0]);
        CAtom *r = bind_in(t, "vg", d);
        CAtom *v = prim_in(t, "v", P_PROJ, type_float(), e->loc, &r, 1, 0);
        CAtom *xs[2] = {v, g};
        g = prim_in(t, "vg", P_TUPLE, e->type, e->loc, xs, 2, 0);
    }
    t->result = g;
    return expand_into(p, t, b);
}
