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
 *   - each primitive has one forward rule (PrimInfo.jvp_rule, ad_rules.c).
 * A tangent that is zero is a NULL atom: no code is emitted for it, and
 * values without tangent (int, bool, ...) never get one. The macro runs on
 * program text, innermost derivative first (ad.c), and every application
 * creates fresh variables: nested derivatives cannot confuse their
 * perturbations (Siskind & Pearlmutter 2005).
 *
 * The engine's other files: ad_tangent.c (representations and emission
 * helpers), ad_rules.c (the rules of the primitives), ad_forms.c (jvp,
 * jacfwd, hessian, hvp, fwdgrad; ad_forward_lambda); ad.h declares what
 * they share. */
#include "ad.h"

#include <string.h>

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

/* The free variables of a lambda, in order of first use (ad_defun). */
void ad_lambda_free_vars(CLambda *l, Vec *out)
{
    CoreMap bound = {0}, seen = {0};
    fv_lambda(l, &bound, out, &seen);
    core_map_free(&bound);
    core_map_free(&seen);
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
        if (r && ad_rep_has_tangent(F, r))
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
        ar[i] = ad_rep_of(F, e->args[i]);
        x[i] = ar[i]->c[0];
        if (ad_tkind(core_atom_type(e->args[i])) == TK_FUNC) {
            if (!x[i] || ar[i]->active) {
                ad_error(F, e->loc, "cannot differentiate: a closure that depends on the differentiated "
                                    "input is stored in a data structure");
                x[i] = e->args[i];
            }
        } else if (ad_rep_has_tangent(F, ar[i])) {
            any = true;
        }
    }
    CExpr *pe = core_prim(op, e->type, e->loc, x, n, e->u.prim.imm);
    CAtom *y = ad_bind_expr(F, xv->name, pe);
    AdRep *res = ad_rep(F, y);
    unsigned fl = core_prims[op].flags;
    if (!any || (fl & (PRIM_NONDIFF | PRIM_EFFECT)) || ad_tkind(e->type) != TK_DIFF)
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
            d = ad_emit2(F, "t", P_ADD, tangent_of(e->type),
                      ad_emit1(F, "z", P_ZEROS_LIKE, tangent_of(e->type), y, 0), d);
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

void ad_forward_reset(void)
{
    ad_zero_reset();
    fun_memo = NULL;
    fun_memo_prog = NULL;
}

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
        AdRep *r = ad_rep_new(&G);
        switch (ad_tkind(t)) {
        case TK_FUNC:
            if (on) {
                CVar *d = core_var(p->name, ad_pack_type(t, K), p->loc);
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
                    CVar *d = core_var(ad_dname(p->name), tangent_of(t), p->loc);
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
    g->ret = ad_pack_type(f->ret, K);
    g->body = core_block_new();
    core_program_add(F->prog, g);
    AdRep *r = fwd_block(&G, f->body, g->body);
    G.blk = g->body;
    g->body->result = ad_pack(&G, r, f->ret, f->loc);
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
    return ad_bind_expr(F, name, e);
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
            s = ad_add(F, s, inner(F, ad_emit1(F, "u", tup ? P_PROJ : P_FIELD, ct, u, i),
                                   ad_emit1(F, "v", tup ? P_PROJ : P_FIELD, ct, v, i), et));
        }
        return s;
    }
    if (t->kind == TY_ARRAY && is_floatish(t->elem)) {
        CAtom *p = ad_mul(F, u, v);
        CAtom *s = ad_emit1(F, "s", P_SUM, rs(t->elem), ad_flatten(F, p, NULL), 0);
        return rs(t->elem)->kind == rs(et)->kind ? s : ad_emit1(F, "s", rs(et)->kind == TY_F32 ? P_TO_F32 : P_TO_FLOAT, et, s, 0);
    }
    if (is_floatish(t)) {
        CAtom *p = ad_mul(F, u, v);
        return t->kind == rs(et)->kind ? p : ad_emit1(F, "s", rs(et)->kind == TY_F32 ? P_TO_F32 : P_TO_FLOAT, et, p, 0);
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
        if (ad_tkind(core_atom_type(e->args[i])) == TK_FUNC)
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
    CAtom *pb = ad_emit1(F, "pb", P_PROJ, pbt, r, 1);
    CExpr *ap = core_expr(CE_APPLY, rs(pbt)->args[1], F->loc);
    ap->nargs = 2;
    ap->args = NEWN(CAtom *, 2);
    ap->args[0] = pb;
    ap->args[1] = ad_lit(1, e->type);
    CAtom *g = ad_bind_expr(F, "g", ap);
    AdRep *res = ad_rep_new(F);
    res->c[0] = ad_emit1(F, xv->name, P_PROJ, e->type, r, 0);
    res->c[1] = inner(F, g, da, e->type);
    return res;
}

/* hofn: whether a block applies the variable p by a dispatch on its code
 * (P_DEFUN f = p, ad_defun_call): a function that does takes the closure
 * itself for p, not its dual. */
static bool defuns_var(CBlock *b, CVar *p)
{
    for (int i = 0; b && i < b->nbinds; i++) {
        CExpr *e = b->binds[i].e;
        if (e->kind == CE_PRIM && e->u.prim.op == P_DEFUN && e->args[0]->kind == CA_VAR && e->args[0]->u.var == p)
            return true;
        bool in = false;
        switch (e->kind) {
        case CE_LAMBDA: in = defuns_var(e->u.lambda->body, p); break;
        case CE_IF: in = defuns_var(e->u.if_.then_, p) || defuns_var(e->u.if_.else_, p); break;
        case CE_CASE:
            for (int j = 0; j < e->u.case_.nalts && !in; j++)
                in = defuns_var(e->u.case_.alts[j].body, p);
            break;
        case CE_LOOP: in = defuns_var(e->u.loop.cond, p) || defuns_var(e->u.loop.body, p); break;
        case CE_SOAC: in = defuns_var(e->u.soac.fn->body, p); break;
        default: break;
        }
        if (in)
            return true;
    }
    return false;
}

static AdRep *fwd_call(AdFwd *F, CVar *xv, CExpr *e)
{
    CFun *f = e->u.fun;
    int n = e->nargs;
    AdRep **ar = NEWN(AdRep *, n > 0 ? n : 1);
    bool active = false, primal_ok = true;
    uint64_t mask = 0;
    for (int i = 0; i < n; i++) {
        ar[i] = ad_rep_of(F, e->args[i]);
        TKind k = ad_tkind(core_atom_type(e->args[i]));
        if (k == TK_FUNC) {
            ensure_dual(F, ar[i], e->args[i]);
            if (ar[i]->active)
                active = true;
            if (!ar[i]->c[0])
                primal_ok = false;
            if (ar[i]->dual && i < 64 && !(ar[i]->c[0] && !ar[i]->active && f->body && i < f->nparams &&
                                           defuns_var(f->body, f->params[i])))
                mask |= (uint64_t)1 << i;
        } else if (k == TK_DIFF && ad_rep_has_tangent(F, ar[i])) {
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
            if (ad_tkind(core_atom_type(e->args[i])) == TK_FUNC || ad_tkind(e->type) == TK_FUNC) {
                ad_error(F, e->loc, "the jvp rule of '%s' cannot be used with function arguments or results",
                         f->src_name);
                return ad_rep(F, e->args[0]);
            }
        if (!ad_prepare_fun(f->jvp_rule))
            F->ok = false;
        if (F->order > 1) {
            AdRep *r = ad_rep_new(F);
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
        AdRep *res = ad_rep_new(F);
        res->c[0] = ad_emit1(F, xv->name, P_PROJ, e->type, r, 0);
        res->c[1] = ad_nz(ad_emit1(F, ad_dname(xv->name), P_PROJ, tangent_of(e->type), r, 1));
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
        TKind k = ad_tkind(core_atom_type(e->args[i]));
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
    return ad_unpack(F, r, e->type);
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
        AdRep *rx = ad_rep_new(&G), *rd = ad_rep_new(&G);
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

CAtom *ad_bind_lambda(AdFwd *F, const char *name, CLambda *l, Type *t)
{
    CExpr *e = core_expr(CE_LAMBDA, t, F->loc);
    e->u.lambda = l;
    return ad_bind_expr(F, name, e);
}

/* fn (pp : Pack a) => Pack (D body) */
static CAtom *dual_closure(AdFwd *F, CLambda *l, Type *ft, const char *name)
{
    ft = rs(ft);
    Type *a = ft->args[0], *b = ft->args[1];
    CVar *pp = core_var(l->params[0]->name, ad_pack_type(a, F->order), l->loc);
    CBlock *body = core_block_new();
    CBlock *save = F->blk;
    F->blk = body;
    env_put(F, l->params[0], ad_unpack(F, core_atom_var(pp), a));
    AdRep *r = fwd_block(F, l->body, body);
    F->blk = body;
    body->result = ad_pack(F, r, b, l->loc);
    F->blk = save;
    CLambda *nl = core_lambda(&pp, 1, body, ad_pack_type(ft, F->order), l->loc);
    ad_defun_candidate(nl);
    return ad_bind_lambda(F, name, nl, nl->type);
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
    r->dual = dual_closure(F, d->u.lambda, d->type, ad_dname(a->u.var->name));
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
        body->result = ad_pack(F, r, rs(ft)->args[1], l->loc); /* reports the error */
    } else {
        body->result = r->c[0];
    }
    F->blk = save;
    CLambda *nl = core_lambda(&p, 1, body, ft, l->loc);
    ad_defun_candidate(nl);
    return ad_bind_lambda(F, name, nl, ft);
}

static AdRep *fwd_closure(AdFwd *F, CVar *xv, CExpr *e)
{
    CLambda *l = e->u.lambda;
    AdRep *r = ad_rep_new(F);
    r->active = lambda_active(F, l);
    if (!r->active)
        r->c[0] = primal_closure(F, l, e->type, xv->name);
    r->dual = dual_closure(F, l, e->type, ad_dname(xv->name));
    return r;
}

static AdRep *fwd_apply(AdFwd *F, CVar *xv, CExpr *e)
{
    AdRep *c = ad_rep_of(F, e->args[0]);
    AdRep *a = ad_rep_of(F, e->args[1]);
    Type *at = core_atom_type(e->args[1]);
    if (!c->dual && ad_rep_has_tangent(F, a))
        ensure_dual(F, c, e->args[0]);
    if (c->dual && (ad_rep_has_tangent(F, a) || !c->c[0] || c->active || (ad_tkind(at) == TK_FUNC && !a->c[0]))) {
        CAtom *pa = ad_pack(F, a, at, e->loc);
        CExpr *ap = core_expr(CE_APPLY, ad_pack_type(e->type, F->order), e->loc);
        ap->nargs = 2;
        ap->args = NEWN(CAtom *, 2);
        ap->args[0] = c->dual;
        ap->args[1] = pa;
        CAtom *r = ad_bind_expr(F, xv->name, ap);
        return ad_unpack(F, r, e->type);
    }
    if (ad_rep_has_tangent(F, a) && c->c[0] && !c->active && ad_tkind(e->type) == TK_NONE)
        a = ad_rep(F, a->c[0]); /* no tangent to compute: the primal application below */
    if (ad_rep_has_tangent(F, a) && c->c[0] && !c->active && ad_tkind(at) == TK_DIFF &&
        ad_tkind(e->type) == TK_DIFF && F->order == 1) {
        /* a function value from outside: the application as a dispatch on
         * its code, differentiated by P_DEFUN's rule (ad_defun_call) */
        CExpr *d = ad_defun_call(F->prog, e->args[0], &e->args[1], 1, e->type, e->loc);
        if (d)
            return fwd_prim(F, xv, d);
    }
    if (ad_rep_has_tangent(F, a)) {
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
    return ad_rep(F, ad_bind_expr(F, xv->name, ap));
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
    J->kind = ad_tkind(t);
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
            J->type = ad_pack_type(t, F->order);
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
            res = ad_pack(F, r, J->base, loc);
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
            res = ad_pack(F, r, J->base, loc);
    }
    F->blk = save;
    return res;
}

static AdRep *join_unpack(AdFwd *F, CAtom *v, Join *J)
{
    AdRep *r = ad_rep_new(F);
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
        r->c[0] = ad_emit1(F, "x", P_PROJ, t, v, 0);
        int m = 1;
        for (int k = 1; k <= F->order && k < 64; k++)
            if (J->carry[k]) {
                r->c[k] = ad_emit1(F, "dx", P_PROJ, tangent_of(t), v, m);
                m++;
            }
        return r;
    }
    r->c[0] = v;
    return r;
}

static AdRep *fwd_if(AdFwd *F, CVar *xv, CExpr *e)
{
    CAtom *c = ad_rep_of(F, e->args[0])->c[0];
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
    return join_unpack(F, ad_bind_expr(F, xv->name, ne), &J);
}

static AdRep *fwd_case(AdFwd *F, CVar *xv, CExpr *e)
{
    AdRep *s = ad_rep_of(F, e->args[0]);
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
            if (ad_tkind(p->type) == TK_DIFF)
                for (int k = 1; k <= F->order; k++)
                    if (s->c[k])
                        pr->c[k] = ad_emit1(F, ad_dname(p->name), P_PAYLOAD, tangent_of(p->type), s->c[k], a->con);
            if (ad_tkind(p->type) == TK_FUNC && s->c[0] == NULL)
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
    return join_unpack(F, ad_bind_expr(F, xv->name, ne), &J);
}

/* ---------------------------------------------------------------- loops */

/* The loop state carries the tangent slots in `carry` (found by a
 * speculative pass: a slot is carried when the initial value or one
 * iteration makes it non-zero, to a fixed point). */
static AdRep *loop_state_rep(AdFwd *F, CAtom *s, Type *t, bool *carry, int ncarry)
{
    AdRep *r = ad_rep_new(F);
    if (!ncarry) {
        r->c[0] = s;
        return r;
    }
    r->c[0] = ad_emit1(F, "s", P_PROJ, t, s, 0);
    int m = 1;
    for (int k = 1; k <= F->order; k++)
        if (carry[k])
            r->c[k] = ad_emit1(F, "ds", P_PROJ, tangent_of(t), s, m++);
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
    TKind tk = ad_tkind(t);
    if (tk == TK_FUNC) {
        ad_error(F, e->loc, "cannot differentiate a loop whose state is a function");
        return ad_rep(F, e->args[0]);
    }
    AdRep *init = ad_rep_of(F, e->args[0]);
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
        ne->args[1] = ad_rep_of(F, e->args[1])->c[0];
    ne->u.loop.state = s;
    ne->u.loop.kind = e->u.loop.kind;
    ne->u.loop.ivar = iv;
    ne->u.loop.cond = cond;
    ne->u.loop.body = body;
    ne->u.loop.checkpoint = e->u.loop.checkpoint;
    CAtom *v = ad_bind_expr(F, xv->name, ne);
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

CAtom *ad_emit_soac(AdFwd *F, const char *name, SoacKind k, Type *t, CLambda *l, CAtom **args, int n)
{
    CExpr *e = core_expr(CE_SOAC, t, F->loc);
    e->u.soac.kind = k;
    e->u.soac.fn = l;
    e->nargs = n;
    e->args = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        e->args[i] = args[i];
    return ad_bind_expr(F, name, e);
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
    body->result = r->c[0] ? r->c[0] : ad_pack(F, r, core_atom_type(l->body->result), l->loc);
    F->blk = save;
    return core_lambda(ps, l->nparams, body, l->type, l->loc);
}

/* A map body whose work is more than a few scalar operations per element:
 * it computes arrays (a row operation, a matrix product) or runs a loop or
 * an inner SOAC. Forward mode then computes the primal and the tangents in
 * one map (an array of tuples, projected) instead of recomputing the body
 * for the primal: a second primal pass would cost as much as the primal. */
static bool block_costly(CBlock *b);

static bool expr_costly(CExpr *e)
{
    switch (e->kind) {
    case CE_SOAC:
    case CE_LOOP: return true;
    case CE_IF: return block_costly(e->u.if_.then_) || block_costly(e->u.if_.else_);
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            if (block_costly(e->u.case_.alts[i].body))
                return true;
        return false;
    default: return false;
    }
}

static bool block_costly(CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++) {
        CBind *bd = &b->binds[i];
        if (expr_costly(bd->e))
            return true;
        if (bd->e->kind == CE_PRIM && bd->var && rs(bd->var->type)->kind == TY_ARRAY &&
            bd->e->u.prim.op != P_INDEX)
            return true;
    }
    return false;
}

static AdRep *fwd_map(AdFwd *F, CVar *xv, CExpr *e)
{
    int n = e->nargs, K = F->order;
    CLambda *l = e->u.soac.fn;
    AdRep **ar = NEWN(AdRep *, n);
    for (int i = 0; i < n; i++)
        ar[i] = ad_rep_of(F, e->args[i]);
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
        if (ad_tkind(l->params[i]->type) != TK_DIFF)
            continue;
        for (int k = 1; k <= K; k++)
            if (ar[i]->c[k]) {
                CVar *d = core_var(ad_dname(l->params[i]->name), tangent_of(l->params[i]->type), l->loc);
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
    if (ad_tkind(bt) == TK_DIFF)
        for (int k = 1; k <= K && m < 64; k++)
            if (r->c[k])
                slot[m++] = k;
    AdRep *res = ad_rep_new(F);
    if (m == 0 && !effects) {
        CLambda *pl = primal_lambda(F, l);
        CAtom **pa = NEWN(CAtom *, n);
        for (int i = 0; i < n; i++)
            pa[i] = ar[i]->c[0];
        res->c[0] = ad_emit_soac(F, xv->name, SOAC_MAP, e->type, pl, pa, n);
        vec_free(&ps);
        vec_free(&as);
        return res;
    }
    /* the tangent map returns the carried slots; with effects in the body,
     * one map returns the primal too (its effects happen once), and so
     * does a costly body (computed once) */
    bool with_primal = effects || block_costly(l->body);
    int nout = m + (with_primal ? 1 : 0);
    Type **ots = NEWN(Type *, nout > 0 ? nout : 1);
    CAtom **oas = NEWN(CAtom *, nout > 0 ? nout : 1);
    CBlock *save = F->blk;
    F->blk = tb;
    int j = 0;
    if (with_primal) {
        ots[j] = bt;
        oas[j++] = r->c[0] ? r->c[0] : ad_pack(F, r, bt, e->loc);
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
        tm = ad_emit_soac(F, ad_dname(xv->name), SOAC_MAP, type_array(ot, 1), tl, (CAtom **)as.data, as.len);
    } else {
        /* more arrays than a map takes: map over the indices, the
         * arrays indexed inside */
        CBlock *ib = core_block_new();
        CVar *iv = core_var("i", type_int(), l->loc);
        CAtom *ia = core_atom_var(iv);
        for (int i = 0; i < ps.len; i++) {
            CAtom *xs[2] = {as.data[i], ia};
            CVar *p = ps.data[i];
            ad_push_bind(ib, p, core_prim(P_INDEX, p->type, l->loc, xs, 2, 0));
        }
        for (int i = 0; i < tb->nbinds; i++)
            ad_push_bind(ib, tb->binds[i].var, tb->binds[i].e);
        ib->result = tb->result;
        CAtom *len = ad_emit1(F, "n", P_LENGTH, type_int(), ar[0]->c[0], 0);
        CAtom *idx = ad_emit1(F, "is", P_IOTA, type_array(type_int(), 1), len, 0);
        CLambda *tl = core_lambda(&iv, 1, ib, type_func(type_int(), ot), l->loc);
        tm = ad_emit_soac(F, ad_dname(xv->name), SOAC_MAP, type_array(ot, 1), tl, &idx, 1);
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
            CAtom *pa = ad_emit_soac(F, jj == 0 && with_primal ? xv->name : ad_dname(xv->name), SOAC_MAP,
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
        res->c[0] = ad_emit_soac(F, xv->name, SOAC_MAP, e->type, pl, pa, n);
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
        ad_push_bind(body, fb->binds[i].var, fb->binds[i].e);
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
    AdRep *a = ad_rep_of(F, e->args[0]);
    CLambda *pl = primal_lambda(F, l);
    AdRep *res = ad_rep(F, ad_emit_soac(F, xv->name, SOAC_FILTER, e->type, pl, &a->c[0], 1));
    Type *et = l->params[0]->type;
    for (int k = 1; k <= F->order; k++) {
        if (!a->c[k] || ad_tkind(et) != TK_DIFF)
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
            ad_push_bind(pb, cb->binds[i].var, cb->binds[i].e);
        pb->result = cb->result;
        CLambda *fl = core_lambda(&p, 1, pb, type_func(pt, type_bool()), l->loc);
        CAtom *fz = ad_emit_soac(F, "fz", SOAC_FILTER, type_array(pt, 1), fl, &z, 1);
        Type *ut = type_tuple2(e->type, tangent_of(e->type));
        CAtom *u = ad_emit1(F, "u", P_UNZIP, ut, fz, 0);
        res->c[k] = ad_emit1(F, ad_dname(xv->name), P_PROJ, tangent_of(e->type), u, 1);
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
    AdRep *ri = ad_rep_of(F, e->args[0]), *ra = ad_rep_of(F, e->args[1]);
    bool active = ad_rep_has_tangent(F, ri) || ad_rep_has_tangent(F, ra) || lambda_active(F, l);
    if (!active) {
        CLambda *pl = primal_lambda(F, l);
        CAtom *xs[2] = {ri->c[0], ra->c[0]};
        return ad_rep(F, ad_emit_soac(F, xv->name, e->u.soac.kind, e->type, pl, xs, 2));
    }
    if ((e->u.soac.kind == SOAC_REDUCE || e->u.soac.kind == SOAC_SCAN) && is_plus_lambda(l) &&
        ad_tkind(l->params[0]->type) == TK_DIFF) {
        /* D(reduce (+) ne xs) = reduce (+) dne dxs; scan alike (linear) */
        CLambda *pl = primal_lambda(F, l);
        CAtom *xs[2] = {ri->c[0], ra->c[0]};
        AdRep *res = ad_rep(F, ad_emit_soac(F, xv->name, e->u.soac.kind, e->type, pl, xs, 2));
        Type *acct = l->params[0]->type;
        for (int k = 1; k <= F->order; k++) {
            if (!ri->c[k] && !ra->c[k])
                continue;
            CAtom *ys[2] = {ad_materialise(F, ri->c[k], acct, ri->c[0]),
                            ad_materialise(F, ra->c[k], core_atom_type(ra->c[0]), ra->c[0])};
            res->c[k] = ad_emit_soac(F, ad_dname(xv->name), e->u.soac.kind, tangent_of(e->type),
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
    case CE_ATOM: r = ad_rep_of(F, e->args[0]); break;
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
            AdRep *a = ad_rep_of(F, e->args[0]);
            ne->args[0] = a->c[0] ? a->c[0] : e->args[0];
            r = ad_rep(F, ad_bind_expr(F, x->name, ne));
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
    AdRep *r = ad_rep_of(F, in->result);
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
                    res->c[k] = ad_emit2(F, "t", P_ADD, tangent_of(e->type),
                                      ad_emit1(F, "z", P_ZEROS_LIKE, tangent_of(e->type), res->c[0], 0), res->c[k]);
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
