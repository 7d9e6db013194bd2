/* ad_tangent.c — what the forward and Taylor engine (ad_forward.c) builds
 * its code from: how values of each type are represented (TKind, Pack(t)),
 * emission of Core bindings with arithmetic that treats NULL as a zero
 * tangent, folds literals and follows broadcasting, the zero of T(t)
 * (through a zero_<D> helper for variants, whose zero has the value's
 * constructor), and the representations (AdRep) of the macro's values. */
#include "ad.h"

#include <stdarg.h>
#include <string.h>

/* ================================================================ types */

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

TKind ad_tkind(Type *t)
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

/* Pack(t) for order K (see dcc.h). */
Type *ad_pack_type(Type *t, int K)
{
    t = rs(t);
    switch (ad_tkind(t)) {
    case TK_FUNC:
        return type_func(ad_pack_type(t->args[0], K), ad_pack_type(t->args[1], K));
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

const char *ad_dname(const char *n)
{
    if (!n || !*n)
        return "d";
    return arena_printf(dcc_arena, "d%s", n);
}

void ad_push_bind(CBlock *b, CVar *v, CExpr *e)
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

CAtom *ad_bind_expr(AdFwd *F, const char *name, CExpr *e)
{
    CVar *v = core_bind(F->blk, name, e);
    ad_note_def(v, e);
    return core_atom_var(v);
}

CAtom *ad_emit(AdFwd *F, const char *name, Prim op, Type *t, CAtom **args, int n, int64_t imm)
{
    return ad_bind_expr(F, name, core_prim(op, t, F->loc, args, n, imm));
}

CAtom *ad_emit1(AdFwd *F, const char *name, Prim op, Type *t, CAtom *a, int64_t imm)
{
    return ad_emit(F, name, op, t, &a, 1, imm);
}

CAtom *ad_emit2(AdFwd *F, const char *name, Prim op, Type *t, CAtom *a, CAtom *b)
{
    CAtom *xs[2] = {a, b};
    return ad_emit(F, name, op, t, xs, 2, 0);
}

CAtom *ad_lit(double v, Type *like)
{
    Type *e = elem_of(like);
    return core_atom_float(v, e->kind == TY_F32 ? type_f32() : type_float());
}

static bool is_val(CAtom *a, double v) { return is_flit(a) && a->u.fval == v; }

/* NULL when the atom is a known zero tangent: a 0.0 literal, zeros_like,
 * a tuple or record of known zeros. */
CAtom *ad_nz(CAtom *a)
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
                if (ad_nz(d->args[i]))
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
    return ad_emit2(F, "t", P_ADD, bcast_type(core_atom_type(a), core_atom_type(b)), a, b);
}

CAtom *ad_neg(AdFwd *F, CAtom *a)
{
    if (!a)
        return NULL;
    if (is_flit(a))
        return ad_lit(-a->u.fval, a->type);
    return ad_emit1(F, "t", P_NEG, core_atom_type(a), a, 0);
}

CAtom *ad_sub(AdFwd *F, CAtom *a, CAtom *b)
{
    if (!b)
        return a;
    if (!a)
        return ad_neg(F, b);
    if (is_flit(a) && is_flit(b))
        return ad_lit(a->u.fval - b->u.fval, a->type);
    return ad_emit2(F, "t", P_SUB, bcast_type(core_atom_type(a), core_atom_type(b)), a, b);
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
    return ad_emit2(F, "t", P_MUL, t, a, b);
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
    return ad_emit2(F, "t", P_DIV, t, a, b);
}

CAtom *ad_un(AdFwd *F, Prim op, CAtom *a)
{
    return ad_emit1(F, "t", op, core_atom_type(a), a, 0);
}

CAtom *ad_bin(AdFwd *F, Prim op, CAtom *a, CAtom *b)
{
    return ad_emit2(F, "t", op, bcast_type(core_atom_type(a), core_atom_type(b)), a, b);
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
    return ad_emit2(F, "c", op, bt, a, b);
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
            CAtom *x = ad_emit1(F, "c", tup ? P_PROJ : P_FIELD, ct, a, i);
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

void ad_zero_reset(void)
{
    zero_helpers = NULL;
    zero_prog = NULL;
}

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
                            ? x : ad_emit1(F, "c", P_PROJ, ct, x, i);
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
            return ad_bind_expr(F, "z", e);
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
                    c[i] = ad_zero(F, ct, ad_emit1(F, "c", P_FIELD, ct, x, i));
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
    return ad_emit1(F, "z", P_ZEROS_LIKE, tt, x, 0);
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
    f->body->result = ad_bind_expr(&G, "z", c);
    if (!G.ok)
        F->ok = false;
    return f;
}

/* ================================================================ reps */

AdRep *ad_rep_new(AdFwd *F)
{
    AdRep *r = NEW(AdRep);
    r->c = NEWN(CAtom *, F->order + 1);
    return r;
}

AdRep *ad_rep(AdFwd *F, CAtom *primal)
{
    AdRep *r = ad_rep_new(F);
    r->c[0] = primal;
    return r;
}

AdRep *ad_rep_of(AdFwd *F, CAtom *a)
{
    if (a->kind == CA_VAR) {
        AdRep *r = core_map_get(&F->env, a->u.var);
        if (r)
            return r;
    }
    return ad_rep(F, a); /* a literal or a variable from outside the region */
}

bool ad_rep_has_tangent(AdFwd *F, AdRep *r)
{
    if (r->dual)
        return r->active;
    for (int k = 1; k <= F->order; k++)
        if (r->c[k])
            return true;
    return false;
}

/* Pack(t) of a representation (materialising zeros). */
CAtom *ad_pack(AdFwd *F, AdRep *r, Type *t, Loc loc)
{
    t = rs(t);
    switch (ad_tkind(t)) {
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
        return ad_emit(F, "pk", P_TUPLE, ad_pack_type(t, K), c, K + 1, 0);
    }
    }
    return r->c[0];
}

AdRep *ad_unpack(AdFwd *F, CAtom *a, Type *t)
{
    t = rs(t);
    AdRep *r = ad_rep_new(F);
    switch (ad_tkind(t)) {
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
            CAtom *x = known ? d->args[k] : ad_emit1(F, k ? "dx" : "x", P_PROJ, k ? tangent_of(t) : t, a, k);
            r->c[k] = k ? ad_nz(x) : x;
        }
        return r;
    }
    }
    return r;
}
