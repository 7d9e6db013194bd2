/* ad_forms.c — the forward-mode derivative forms, built on the macro of
 * ad_forward.c: jvp, jacfwd (one jvp per basis vector, as a map), hessian
 * and hvp (forward over forward), fwdgrad and fwdgrad_dir (Baydin et al.,
 * "Gradients without backpropagation", 2022), and grad / value_and_grad /
 * jacrev by forward mode when DCC_AD_GRAD_BY_FORWARD asks for it (a
 * cross-check of reverse mode). First, ad_forward_lambda: the reusable
 * entry that turns a lambda into its forward-mode transform (for reverse
 * mode, which linearises and transposes it). */
#include "ad.h"

#include <string.h>

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
    if (ad_tkind(a) == TK_FUNC || ad_tkind(b) == TK_FUNC)
        return NULL;
    AdFwd F = {.prog = p, .order = 1, .loc = l->loc, .ok = true};
    CVar *x = core_var(l->params[0]->name, a, l->loc);
    CVar *dx = core_var(ad_dname(l->params[0]->name), tangent_of(a), l->loc);
    CBlock *body = core_block_new();
    F.blk = body;
    AdRep *arg = ad_rep(&F, core_atom_var(x));
    if (ad_tkind(a) == TK_DIFF)
        arg->c[1] = core_atom_var(dx);
    AdRep *r = ad_fwd_lambda(&F, l, &arg);
    F.blk = body;
    CAtom *xs[2] = {r->c[0], ad_materialise(&F, ad_tkind(b) == TK_DIFF ? r->c[1] : NULL, b, r->c[0])};
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
        CAtom *pz = ad_pack(F, zr, a, F->loc);
        CExpr *ap = core_expr(CE_APPLY, ad_pack_type(b, F->order), F->loc);
        ap->nargs = 2;
        ap->args = NEWN(CAtom *, 2);
        ap->args[0] = r->dual;
        ap->args[1] = pz;
        res = ad_unpack(F, ad_bind_expr(F, "r", ap), b);
    } else {
        CExpr *ap = core_expr(CE_APPLY, b, F->loc);
        ap->nargs = 2;
        ap->args = NEWN(CAtom *, 2);
        ap->args[0] = r->c[0];
        ap->args[1] = core_atom_var(z);
        res = ad_rep(F, ad_bind_expr(F, "r", ap));
    }
    CAtom *out;
    switch (ad_tkind(b)) {
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
    return ad_bind_lambda(F, slot ? "dclo" : "clo", l, t);
}

/* jvp f x dx = (f x, D f x dx) */
static CAtom *form_jvp(CProgram *p, CExpr *e, CBlock *b)
{
    AdFwd F = {.prog = p, .order = 1, .blk = b, .loc = e->loc, .ok = true};
    CLambda *l = e->u.deriv.fn;
    Type *a = rs(l->params[0]->type), *bt = lambda_result(l);
    if (ad_tkind(a) == TK_FUNC) {
        ad_error(&F, e->loc, "jvp with respect to a function value is not supported");
        return NULL;
    }
    if (ad_tkind(a) == TK_DIFF)
        ad_check_shapes(b, e->args[1], e->args[0], "jvp: the tangent has shape ", " but the primal has shape ", e->loc);
    AdRep *arg = ad_rep(&F, e->args[0]);
    if (ad_tkind(a) == TK_DIFF)
        arg->c[1] = ad_nz(e->args[1]);
    AdRep *r = ad_fwd_lambda(&F, l, &arg);
    F.blk = b;
    CAtom *y, *dy;
    switch (ad_tkind(bt)) {
    case TK_DIFF:
        y = r->c[0];
        dy = ad_materialise(&F, r->c[1], bt, y);
        break;
    case TK_NONE:
        y = r->c[0] ? r->c[0] : ad_pack(&F, r, bt, e->loc);
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
        ad_push_bind(b, t->binds[i].var, t->binds[i].e);
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
            CAtom *xj = ad_emit1(&G, "c", tup ? P_PROJ : P_FIELD, ct, c->x, j);
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
        return ad_emit1(&G, "s", P_TO_F32, type_f32(), s, 0);
    }
    case TY_ARRAY: {
        Type *et = rs(t->elem);
        if (!is_floatish(et))
            break;
        CAtom *n;
        CAtom *d[8];
        int r = ad_dims_of(&G, x, d);
        n = d[0];
        for (int i = 1; i < r; i++)
            n = ad_emit2(&G, "n", P_MUL, type_int(), n, d[i]);
        CAtom *idx = ad_emit1(&G, "is", P_IOTA, type_array(type_int(), 1), n, 0);
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
            e = ad_emit1(&G, "e", P_TO_F32, type_array(type_f32(), r), e, 0);
        CAtom *s = fn(ctx, ib, e);
        G.blk = ib;
        if (et->kind == TY_F32)
            s = ad_emit1(&G, "s", P_TO_F32, type_f32(), s, 0);
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
            CAtom *xi = ad_emit1(&G, "c", tup ? P_PROJ : P_FIELD, ct, x, i);
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
        ad_push_bind(b, t->binds[i].var, t->binds[i].e);
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
    ad_check_shapes(b, e->args[1], e->args[0], "hvp: the direction has shape ", " but the primal has shape ", e->loc);
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
            c[i] = scale_atom(F, s, ad_emit1(F, "c", tup ? P_PROJ : P_FIELD, ct, v, i));
        }
        return ad_emit(F, "s", tup ? P_TUPLE : P_RECORD, t, c, n, 0);
    }
    if (elem_of(t)->kind == TY_F32)
        s = ad_emit1(F, "s", P_TO_F32, type_f32(), s, 0);
    return ad_emit2(F, "g", P_MUL, t, s, v);
}

/* A sample of N(0, I) on T(t) drawn from key k. */
static CAtom *normal_like(AdFwd *F, CAtom *k, Type *t, CAtom *x)
{
    t = rs(t);
    if (ad_tangent_trivial(t))
        return ad_zero(F, t, x);
    switch (t->kind) {
    case TY_FLOAT: case TY_F32:
        return ad_emit1(F, "v", P_NORMAL, t, k, 0);
    case TY_ARRAY: {
        if (!is_floatish(t->elem))
            break;
        CAtom *d[8];
        int r = ad_dims_of(F, x, d);
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
            CAtom *ks = ad_emit1(F, "ks", P_SPLIT, type_tuple2(kt, kt), k, 0);
            CAtom *ki = ad_emit1(F, "k", P_PROJ, kt, ks, 0);
            k = ad_emit1(F, "k", P_PROJ, kt, ks, 1);
            c[i] = normal_like(F, ki, ct, ad_emit1(F, "c", tup ? P_PROJ : P_FIELD, ct, x, i));
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
    if (e->u.deriv.kind == DERIV_FWDGRAD_DIR)
        ad_check_shapes(b, v, x, "fwdgrad_dir: the direction has shape ", " but the primal has shape ", e->loc);
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


/* ================================================================ defunctionalisation */

/* A function value f : a -> b that comes from outside a differentiated
 * region, applied there to a value with a tangent (docs/ad.md, "Function
 * values from outside the region"). Its code is not known where it is
 * applied, but the program is whole: f is a closure of one of the lambdas
 * of type a -> b in the program, or one of its top-level functions used as
 * a value. As in Reynolds' defunctionalisation ("Definitional interpreters
 * for higher-order programming languages", 1972), the application becomes
 * a dispatch on f's code over that finite set, P_DEFUN (dcc.h), whose
 * case k calls target_k(caps_k..., x) = λ_k's body, its captured
 * variables caps_k read out of f's cell. The dispatch is then an ordinary
 * primitive with a forward rule and a vector-Jacobian rule: each is the
 * same dispatch over targets that are `jvp` / `vjp` forms of the previous
 * targets, expanded by the AD stages like any other form (so nesting to
 * any order works). The captured variables come from outside the region:
 * their tangents are zero, they are parameters of the targets that the
 * forms do not differentiate, and the rule is exact. A lambda applying
 * another opaque function (composition, recursion passing f down) gets
 * the same treatment inside its target. The candidates are collected
 * before the AD stages run (ad_defun_reset): the lambdas the stages
 * generate never leave their region. */

typedef struct DefunMemo {
    int m;
    DerivKind form;
    int64_t parent;
    Type *ft;
    int64_t id;
} DefunMemo;

static struct {
    Vec defuns;    /* Defun *, by id */
    CoreMap lams;  /* CLambda * -> its first DefunCase */
    Vec cand_lams; /* CLambda *: the candidates of the current program */
    Vec cand_funs; /* CFun *: top-level functions used as values */
    CoreMap seen;  /* CFun * -> 1 in cand_funs */
    Vec memo;      /* DefunMemo *, of the current program */
    bool seen_kind[2]; /* ad_defun_data_guard */
    Loc seen_loc[2];
} D;

static void defun_scan_block(CBlock *b);

static void defun_scan_atom(CAtom *a)
{
    if (a && a->kind == CA_FUN && (a->u.fun->nparams == 1 || a->u.fun->nparams == 2) && a->u.fun->body &&
        rs(a->type)->kind == TY_FUNC &&
        !core_map_get(&D.seen, a->u.fun)) {
        core_map_put(&D.seen, a->u.fun, (void *)1);
        vec_push(&D.cand_funs, a->u.fun);
    }
}

static void defun_scan_lambda(CLambda *l)
{
    if (l)
        defun_scan_block(l->body);
}

static void defun_scan_block(CBlock *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->nbinds; i++) {
        CExpr *e = b->binds[i].e;
        for (int j = 0; j < e->nargs; j++)
            defun_scan_atom(e->args[j]);
        switch (e->kind) {
        case CE_LAMBDA:
            if (e->u.lambda->nparams == 1 || e->u.lambda->nparams == 2) {
                vec_push(&D.cand_lams, e->u.lambda);
                if (!e->u.lambda->origin) /* before the AD stages copy it */
                    e->u.lambda->origin = e->u.lambda;
            }
            defun_scan_lambda(e->u.lambda);
            break;
        case CE_IF: defun_scan_block(e->u.if_.then_); defun_scan_block(e->u.if_.else_); break;
        case CE_CASE:
            for (int j = 0; j < e->u.case_.nalts; j++)
                defun_scan_block(e->u.case_.alts[j].body);
            break;
        case CE_LOOP:
            defun_scan_block(e->u.loop.cond);
            defun_scan_block(e->u.loop.body);
            break;
        case CE_SOAC: defun_scan_lambda(e->u.soac.fn); break;
        case CE_DERIV: defun_scan_lambda(e->u.deriv.fn); break;
        default: break;
        }
    }
    defun_scan_atom(b->result);
}

static CAtom *defun_jvp_rule(AdFwd *F, CExpr *e, CAtom **x, CAtom **dx, CAtom *y);

void ad_defun_reset(CProgram *p)
{
    vec_free(&D.cand_lams);
    vec_free(&D.cand_funs);
    vec_free(&D.memo);
    core_map_free(&D.seen);
    memset(&D.seen, 0, sizeof D.seen);
    for (int i = 0; i < p->nfuns; i++)
        defun_scan_block(p->funs[i]->body);
    core_prims[P_DEFUN].jvp_rule = (void *)defun_jvp_rule;
    D.seen_kind[0] = D.seen_kind[1] = false;
}

bool ad_defun_data_guard(int kind, Loc loc)
{
    if (!D.seen_kind[kind]) {
        D.seen_kind[kind] = true;
        D.seen_loc[kind] = loc;
    }
    if (!D.seen_kind[1 - kind])
        return true;
    Loc st = kind == 0 ? loc : D.seen_loc[0], use = kind == 1 ? loc : D.seen_loc[1];
    error_at(use, "reverse mode: cannot differentiate through this function value taken out of a data "
                  "structure: the program also stores a closure over the differentiated input in one");
    note_at(st, "the closure is stored here");
    D.seen_kind[kind] = D.seen_kind[1 - kind] = false; /* reported once */
    return false;
}

void ad_defun_candidate(CLambda *l)
{
    if (l->nparams != 1)
        return;
    if (!l->origin)
        l->origin = l;
    vec_push(&D.cand_lams, l);
}

Defun *ad_defun_get(int64_t id)
{
    return id >= 0 && id < D.defuns.len ? D.defuns.data[id] : NULL;
}

CVar **ad_defun_caps(const CLambda *l, int *n)
{
    DefunCase *c = l ? core_map_get(&D.lams, l) : NULL;
    *n = c ? c->ncaps : 0;
    return c ? c->caps : NULL;
}

static Type *fun_type(CFun *f)
{
    Type *t = f->ret;
    for (int j = f->nparams - 1; j >= 0; j--)
        t = type_func(f->params[j]->type, t);
    return t;
}

/* The type of the arguments of d's targets after the captured variables,
 * as one value (a tuple when several). */
static Type *defun_arg_type(Defun *d)
{
    CFun *t = d->cases[0].target;
    int c = d->cases[0].ncaps;
    if (d->nargs == 1)
        return t->params[c]->type;
    Type **ts = NEWN(Type *, d->nargs);
    for (int i = 0; i < d->nargs; i++)
        ts[i] = t->params[c + i]->type;
    return type_tuple(ts, d->nargs);
}

static CFun *defun_fun(CProgram *p, const char *base, DefunCase *c, Loc loc)
{
    CFun *g = core_fun_new(ad_fun_name(p, c->fun ? arena_printf(dcc_arena, "%s_%s", base, c->fun->name) : base),
                           "a function value", loc);
    g->is_helper = true;
    return g;
}

/* case k of a call with m (1 or 2) arguments: target(caps..., x[, z]) =
 * λ_k's body (applied to z when λ_k has one parameter), or F x [z] */
static CFun *defun_call_target(CProgram *p, Type *ft, int m, DefunCase *c, Loc loc)
{
    CFun *g = defun_fun(p, "defun_call", c, loc);
    g->nparams = c->ncaps + m;
    g->params = NEWN(CVar *, g->nparams);
    CVar **from = NEWN(CVar *, g->nparams);
    CAtom **to = NEWN(CAtom *, g->nparams);
    for (int i = 0; i < c->ncaps; i++) {
        g->params[i] = core_var(c->caps[i]->name, c->caps[i]->type, loc);
        from[i] = c->caps[i];
        to[i] = core_atom_var(g->params[i]);
    }
    Type *t = rs(ft);
    for (int i = 0; i < m; i++) {
        g->params[c->ncaps + i] = core_var(i ? "z" : "x", t->args[0], loc);
        t = rs(t->args[1]);
    }
    g->ret = t;
    int direct; /* the arguments the lambda or function takes itself */
    CAtom *r;
    if (c->lam) {
        direct = c->lam->nparams < m ? c->lam->nparams : m;
        for (int i = 0; i < direct; i++) {
            from[c->ncaps + i] = c->lam->params[i];
            to[c->ncaps + i] = core_atom_var(g->params[c->ncaps + i]);
        }
        g->body = core_copy_block(c->lam->body, from, to, c->ncaps + direct);
        r = g->body->result;
    } else {
        direct = c->fun->nparams < m ? c->fun->nparams : m;
        g->body = core_block_new();
        Type *rt = rs(ft);
        for (int i = 0; i < direct; i++)
            rt = rs(rt->args[1]);
        CExpr *call = core_expr(CE_CALL, rt, loc);
        call->u.fun = c->fun;
        call->nargs = direct;
        call->args = NEWN(CAtom *, direct);
        for (int i = 0; i < direct; i++)
            call->args[i] = core_atom_var(g->params[c->ncaps + i]);
        r = core_atom_var(core_bind(g->body, "y", call));
    }
    for (int i = direct; i < m; i++) {
        CExpr *ap = core_expr(CE_APPLY, rs(core_atom_type(r))->args[1], loc);
        ap->nargs = 2;
        ap->args = NEWN(CAtom *, 2);
        ap->args[0] = r;
        ap->args[1] = core_atom_var(g->params[c->ncaps + i]);
        r = core_atom_var(core_bind(g->body, "y", ap));
    }
    g->body->result = r;
    core_program_add(p, g);
    return g;
}

/* case k of a derivative of the parent's case pc:
 *   jvp:  target(caps..., p, dp) = jvp (fn q => pc.target(caps..., q...)) p dp
 *   vjp:  target(caps..., p, ȳ)  = (vjp (fn q => pc.target(caps..., q...)) p).1 ȳ */
static CFun *defun_deriv_target(CProgram *p, DerivKind form, Defun *pd, DefunCase *pc, Type *rt, Loc loc)
{
    CFun *g = defun_fun(p, form == DERIV_JVP ? "defun_jvp" : "defun_vjp", pc, loc);
    Type *pt = defun_arg_type(pd);
    g->nparams = pc->ncaps + 2;
    g->params = NEWN(CVar *, g->nparams);
    for (int i = 0; i < pc->ncaps; i++)
        g->params[i] = core_var(pc->caps[i]->name, pc->caps[i]->type, loc);
    CVar *pv = core_var("p", pt, loc);
    CVar *sv = core_var(form == DERIV_JVP ? "dp" : "ct", form == DERIV_JVP ? tangent_of(pt) : tangent_of(pc->target->ret), loc);
    g->params[pc->ncaps] = pv;
    g->params[pc->ncaps + 1] = sv;
    g->ret = rt;
    /* fn q => pc.target(caps..., q.0, ...) */
    CVar *q = core_var("q", pt, loc);
    CBlock *lb = core_block_new();
    CExpr *call = core_expr(CE_CALL, pc->target->ret, loc);
    call->u.fun = pc->target;
    call->nargs = pc->target->nparams;
    call->args = NEWN(CAtom *, call->nargs);
    for (int i = 0; i < pc->ncaps; i++)
        call->args[i] = core_atom_var(g->params[i]);
    CAtom *qa = core_atom_var(q);
    for (int i = 0; i < pd->nargs; i++)
        call->args[pc->ncaps + i] =
            pd->nargs == 1 ? qa
                           : core_atom_var(core_bind(lb, "q", core_prim(P_PROJ, rs(pt)->args[i], loc, &qa, 1, i)));
    lb->result = core_atom_var(core_bind(lb, "y", call));
    CLambda *l = core_lambda(&q, 1, lb, type_func(pt, pc->target->ret), loc);
    g->body = core_block_new();
    CExpr *d = core_expr(CE_DERIV, rt, loc);
    d->u.deriv.fn = l;
    if (form == DERIV_JVP) {
        d->u.deriv.kind = DERIV_JVP;
        d->nargs = 2;
        d->args = NEWN(CAtom *, 2);
        d->args[0] = core_atom_var(pv);
        d->args[1] = core_atom_var(sv);
        g->body->result = core_atom_var(core_bind(g->body, "r", d));
    } else {
        Type *pbt = type_func(tangent_of(pc->target->ret), tangent_of(pt));
        d->type = type_tuple2(pc->target->ret, pbt);
        d->u.deriv.kind = DERIV_VJP;
        d->nargs = 1;
        d->args = NEWN(CAtom *, 1);
        d->args[0] = core_atom_var(pv);
        CAtom *r = core_atom_var(core_bind(g->body, "r", d));
        CAtom *pb = core_atom_var(core_bind(g->body, "pb", core_prim(P_PROJ, pbt, loc, &r, 1, 1)));
        CExpr *ap = core_expr(CE_APPLY, rt, loc);
        ap->nargs = 2;
        ap->args = NEWN(CAtom *, 2);
        ap->args[0] = pb;
        ap->args[1] = core_atom_var(sv);
        g->body->result = core_atom_var(core_bind(g->body, "g", ap));
    }
    core_program_add(p, g);
    return g;
}

static Defun *defun_new(DerivKind form, int64_t parent, Type *ft, int nargs, int64_t *id)
{
    Defun *d = NEW(Defun);
    d->form = form;
    d->parent = parent;
    d->ftype = ft;
    d->nargs = form == DERIV_NONE ? nargs : 2;
    *id = D.defuns.len;
    vec_push(&D.defuns, d);
    DefunMemo *m = NEW(DefunMemo);
    m->m = d->nargs;
    m->form = form;
    m->parent = parent;
    m->ft = ft;
    m->id = *id;
    vec_push(&D.memo, m);
    return d;
}

static int64_t defun_memo(DerivKind form, int64_t parent, Type *ft, int nargs)
{
    for (int i = 0; i < D.memo.len; i++) {
        DefunMemo *m = D.memo.data[i];
        if (m->form == form && m->parent == parent && (parent >= 0 || (m->m == nargs && core_type_equal(m->ft, ft))))
            return m->id;
    }
    return -1;
}

static CExpr *defun_prim(Defun *d, int64_t id, CAtom *f, CAtom **args, Type *rt, Loc loc)
{
    CExpr *e = core_expr(CE_PRIM, rt, loc);
    e->u.prim.op = P_DEFUN;
    e->u.prim.imm = id;
    e->nargs = 1 + d->nargs + d->ncases;
    e->args = NEWN(CAtom *, e->nargs);
    e->args[0] = f;
    for (int i = 0; i < d->nargs; i++)
        e->args[1 + i] = args[i];
    for (int i = 0; i < d->ncases; i++)
        e->args[1 + d->nargs + i] = core_atom_fun(d->cases[i].target, fun_type(d->cases[i].target));
    return e;
}

/* Whether a candidate of type ct taking np parameters itself is one for f
 * of type ft applied to m arguments. */
static bool defun_fits(Type *ct, int np, Type *ft, int m)
{
    return np <= m && core_type_equal(ct, ft);
}

CExpr *ad_defun_call(CProgram *p, CAtom *f, CAtom **xs, int m, Type *rt, Loc loc)
{
    Type *ft = rs(core_atom_type(f));
    int64_t id = defun_memo(DERIV_NONE, -1, ft, m);
    Defun *d;
    if (id >= 0) {
        d = ad_defun_get(id);
    } else {
        d = defun_new(DERIV_NONE, -1, ft, m, &id);
        int n = 0;
        for (int i = 0; i < D.cand_lams.len; i++) {
            CLambda *l = D.cand_lams.data[i];
            n += defun_fits(l->type, l->nparams, ft, m);
        }
        for (int i = 0; i < D.cand_funs.len; i++) {
            CFun *g = D.cand_funs.data[i];
            n += defun_fits(fun_type(g), g->nparams, ft, m);
        }
        d->cases = NEWN(DefunCase, n > 0 ? n : 1);
        for (int i = 0; i < D.cand_lams.len; i++) {
            CLambda *l = D.cand_lams.data[i];
            if (!defun_fits(l->type, l->nparams, ft, m))
                continue;
            DefunCase *c = &d->cases[d->ncases++];
            c->lam = l;
            Vec fv = {0};
            ad_lambda_free_vars(l, &fv);
            c->ncaps = fv.len;
            c->caps = NEWN(CVar *, fv.len > 0 ? fv.len : 1);
            for (int j = 0; j < fv.len; j++)
                c->caps[j] = fv.data[j];
            vec_free(&fv);
            if (!l->origin)
                l->origin = l;
            if (!core_map_get(&D.lams, l->origin))
                core_map_put(&D.lams, l->origin, c);
        }
        for (int i = 0; i < D.cand_funs.len; i++) {
            CFun *g = D.cand_funs.data[i];
            if (defun_fits(fun_type(g), g->nparams, ft, m))
                d->cases[d->ncases++].fun = g;
        }
        for (int i = 0; i < d->ncases; i++)
            d->cases[i].target = defun_call_target(p, ft, m, &d->cases[i], loc);
    }
    if (d->ncases == 0)
        return NULL;
    return defun_prim(d, id, f, xs, rt, loc);
}

CExpr *ad_defun_derive(CProgram *p, CExpr *e, DerivKind form, CAtom *pa, CAtom *s, Type *rt)
{
    int64_t pid = e->u.prim.imm;
    Defun *pd = ad_defun_get(pid);
    int64_t id = defun_memo(form, pid, NULL, 2);
    Defun *d;
    if (id >= 0) {
        d = ad_defun_get(id);
    } else {
        d = defun_new(form, pid, pd->ftype, 2, &id);
        d->ncases = pd->ncases;
        d->cases = NEWN(DefunCase, pd->ncases > 0 ? pd->ncases : 1);
        for (int i = 0; i < pd->ncases; i++) {
            d->cases[i] = pd->cases[i];
            d->cases[i].target = defun_deriv_target(p, form, pd, &pd->cases[i], rt, e->loc);
        }
    }
    CAtom *args[2] = {pa, s};
    return defun_prim(d, id, e->args[0], args, rt, e->loc);
}

/* P_DEFUN's forward rule: dy = (jvp of the dispatch at (xs, dxs)).1, the
 * same dispatch over jvp targets (ad_defun_derive). */
static CAtom *defun_jvp_rule(AdFwd *F, CExpr *e, CAtom **x, CAtom **dx, CAtom *y)
{
    (void)y;
    Defun *d = ad_defun_get(e->u.prim.imm);
    int m = d->nargs;
    CAtom *pa, *dp;
    if (m == 1) {
        pa = x[1];
        dp = ad_materialise(F, dx[1], core_atom_type(x[1]), x[1]);
    } else {
        CAtom **xs = NEWN(CAtom *, m), **ds = NEWN(CAtom *, m);
        Type **ts = NEWN(Type *, m);
        for (int i = 0; i < m; i++) {
            xs[i] = x[1 + i];
            ts[i] = core_atom_type(xs[i]);
            ds[i] = ad_materialise(F, dx[1 + i], ts[i], xs[i]);
        }
        Type *pt = type_tuple(ts, m);
        pa = ad_emit(F, "p", P_TUPLE, pt, xs, m, 0);
        dp = ad_emit(F, "dp", P_TUPLE, tangent_of(pt), ds, m, 0);
    }
    Type *rt = type_tuple2(e->type, tangent_of(e->type));
    CAtom *r = ad_bind_expr(F, "r", ad_defun_derive(F->prog, e, DERIV_JVP, pa, dp, rt));
    return ad_nz(ad_emit1(F, "dy", P_PROJ, tangent_of(e->type), r, 1));
}
