/* ad_reverse.c — reverse mode: vjp, grad, value_and_grad and jacrev, as a
 * source-to-source transformation of Core IR into ordinary Core IR: no tape
 * interpreter, no run-time graph. (hessian and hvp are forward over
 * forward, ad_forward.c.)
 *
 * The design follows CHAD (Vákár & Smeding, "CHAD: Combinatory Homomorphic
 * Automatic Differentiation", TOPLAS 2022) on A-normal form; docs/ad.md
 * ("Reverse mode") has the correctness argument. For a block in ANF:
 *
 *   forward sweep  the primal bindings themselves, in order (moved, not
 *                  copied): every primal variable is its own residual, so
 *                  there is no tape for straight-line code;
 *   backward sweep the bindings in reverse order, each `let y = op(xs)`
 *                  adding op's vector-Jacobian product of ȳ to the adjoints
 *                  x̄ (fan-out accumulates with +). Adjoints are symbolic
 *                  zeros until a contribution arrives, so unused adjoints
 *                  emit no code; adjoints of tuples, records and variants
 *                  stay partial (component by component) until needed.
 *
 * Control flow is where residuals appear. A nested block (a branch, a loop
 * body) gets its own frame: its forward sweep is emitted in place, and its
 * backward sweep is generated once as a template (a block over a
 * placeholder cotangent) whose free variables bound in the frame are the
 * residuals the forward sweep must hand over:
 *   if / case   the taken branch returns its residuals with its value
 *               (dummies for the other branches' slots); the backward sweep
 *               branches again on the same condition / scrutinee and runs
 *               the taken branch's template only (no NaN from a branch not
 *               taken);
 *   loops       loop invariants are hoisted first; the residuals of every
 *               iteration are saved in arrays (one per residual: a struct
 *               of arrays; while loops grow them by doubling) unless cheap
 *               to recompute from the counter, or per segment only with
 *               checkpointing; the reversed loop runs the body's template
 *               from the last iteration to the first, carrying the state's
 *               cotangent and the adjoints of the variables the body reads
 *               (updated in place: x[i] in a loop costs O(1) per step);
 *   map         transposes to maps: the pullback lambda recomputes the
 *               element's primal and runs its template (no per-element
 *               closure, no stored residuals); captured floats' adjoints
 *               are summed over the elements, captured arrays' accumulated
 *               in place by one loop;
 *   reduce (+)  to a broadcast; scan (+) to a reversed scan; other folds,
 *               reduces and scans become loops first;
 *   calls       are inlined when the callee is not recursive and small;
 *               otherwise f_rev (memoised, so recursion works) returns the
 *               value and its pullback closure, and differentiated again
 *               f_bwd (the same sweeps, first order, no closure). `with
 *               vjp` rules are called as given; a `with jvp` rule is linear
 *               in dx, and its transpose is the reverse mode of
 *               dx -> (rule (x, dx)).1.
 *
 * Array code stays at array level: every primitive has a vector-Jacobian
 * rule on whole arrays (vjp_prim in ad_reverse_rules.c, the rule written
 * above each case). Loops and SOACs are in ad_reverse_loops.c; the files
 * share ad_reverse.h.
 */
#include "ad_reverse.h"


Rv rv_state;

static void fwd_bind(Frame *F, CBlock *dst, CVar *x, CExpr *e);
static void bwd_entry(Bwd *B, CBlock *b, Entry *en);
static CFun *get_vjp(CFun *f); /* f_rev */

void rv_error(Loc loc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (R->ok) /* the first error of a region: the others follow from it */
        error_at(loc, "%s", msg);
    R->ok = false;
}

/* ------------------------------------------------------------ adjoints */

Adj *A(CAtom *a)
{
    Adj *r = NEW(Adj);
    r->kind = ADJ_ATOM;
    r->atom = a;
    return r;
}

static Adj *adj_prod1(Type *pt, int i, Adj *part)
{
    if (!part)
        return NULL;
    Adj *r = NEW(Adj);
    r->kind = ADJ_PROD;
    r->n = nparts(pt);
    r->parts = NEWN(Adj *, r->n > 0 ? r->n : 1);
    r->parts[i] = part;
    return r;
}

static Adj *adj_con(int k, Adj *part)
{
    Adj *r = NEW(Adj);
    r->kind = ADJ_CON;
    r->con = k;
    r->n = 1;
    r->parts = NEWN(Adj *, 1);
    r->parts[0] = part;
    return r;
}

/* Component i of the adjoint of a product. */
static Adj *adj_part(CBlock *b, Adj *a, int i)
{
    if (!a)
        return NULL;
    if (a->kind == ADJ_PROD)
        return a->parts[i];
    if (a->kind == ADJ_ATOM)
        return A(proj(b, a->atom, i));
    return NULL;
}

/* The payload of the adjoint of a variant whose constructor is k. */
static Adj *adj_payload(CBlock *b, Adj *a, Type *pt, int k)
{
    if (!a)
        return NULL;
    if (a->kind == ADJ_CON)
        return a->con == k ? a->parts[0] : NULL;
    if (a->kind == ADJ_ATOM) {
        Type *arg = core_type_con_arg(pt, k);
        return arg ? A(prim(b, P_PAYLOAD, tan_t(arg), &a->atom, 1, k)) : NULL;
    }
    return NULL;
}

static Adj *adj_add(CBlock *b, Type *pt, Adj *x, Adj *y)
{
    if (!x)
        return y;
    if (!y)
        return x;
    if (x->kind == ADJ_ATOM && y->kind == ADJ_ATOM)
        return A(add_of(b, x->atom, y->atom));
    if (x->kind == ADJ_PROD || y->kind == ADJ_PROD) {
        int n = nparts(pt);
        Adj *r = NEW(Adj);
        r->kind = ADJ_PROD;
        r->n = n;
        r->parts = NEWN(Adj *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            r->parts[i] = adj_add(b, part_t(pt, i), adj_part(b, x, i), adj_part(b, y, i));
        return r;
    }
    if (x->kind == ADJ_CON && y->kind == ADJ_CON && x->con == y->con)
        return adj_con(x->con, adj_add(b, core_type_con_arg(pt, x->con), x->parts[0], y->parts[0]));
    if (x->kind == ADJ_CON || y->kind == ADJ_CON) {
        Adj *c = x->kind == ADJ_CON ? x : y, *a = x->kind == ADJ_CON ? y : x;
        if (a->kind != ADJ_ATOM) {
            rv_error(R->loc, "internal error: reverse mode: adjoints of two constructors");
            return a;
        }
        Type *arg = core_type_con_arg(pt, c->con);
        if (!arg || !c->parts[0])
            return a;
        Adj *s = adj_add(b, arg, adj_payload(b, a, pt, c->con), c->parts[0]);
        return A(con(b, tan_t(pt), c->con, materialize(b, s, NULL, arg)));
    }
    return x;
}

static bool adj_total(Adj *a)
{
    if (!a)
        return false;
    if (a->kind == ADJ_PROD)
        for (int i = 0; i < a->n; i++)
            if (!adj_total(a->parts[i]))
                return false;
    if (a->kind == ADJ_CON)
        return !a->parts[0] || adj_total(a->parts[0]);
    return true;
}

/* The adjoint as a value of T(pt); missing parts are zeros shaped like
 * the primal value tmpl. */
CAtom *materialize(CBlock *b, Adj *a, CAtom *tmpl, Type *pt)
{
    if (!a) {
        if (!tmpl) {
            rv_error(R->loc, "internal error: reverse mode: zero without a shape");
            return core_atom_unit();
        }
        return zeros_of(b, tmpl);
    }
    switch (a->kind) {
    case ADJ_ATOM:
        return a->atom;
    case ADJ_PROD: {
        int n = a->n;
        CAtom **ps = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++) {
            Adj *p = a->parts[i];
            CAtom *sub = adj_total(p) ? NULL : proj(b, tmpl, i);
            ps[i] = materialize(b, p, sub, part_t(pt, i));
        }
        return mkprod(b, tan_t(pt), ps, n);
    }
    case ADJ_CON: {
        Type *arg = core_type_con_arg(pt, a->con);
        CAtom *pay = NULL;
        if (arg) {
            Adj *p = a->parts[0];
            CAtom *sub = adj_total(p) ? NULL : prim(b, P_PAYLOAD, arg, &tmpl, 1, a->con);
            pay = materialize(b, p, sub, arg);
        }
        return con(b, tan_t(pt), a->con, pay);
    }
    }
    return core_atom_unit();
}

/* ------------------------------------------------------------ walking */

static void walk_expr(CExpr *e, AtomFn af, ExprFn ef, void *ctx)
{
    if (ef)
        ef(e, ctx);
    if (af)
        for (int i = 0; i < e->nargs; i++)
            af(e->args[i], ctx);
    switch (e->kind) {
    case CE_LAMBDA:
        walk_block(e->u.lambda->body, af, ef, ctx);
        break;
    case CE_IF:
        walk_block(e->u.if_.then_, af, ef, ctx);
        walk_block(e->u.if_.else_, af, ef, ctx);
        break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            walk_block(e->u.case_.alts[i].body, af, ef, ctx);
        break;
    case CE_LOOP:
        if (e->u.loop.cond)
            walk_block(e->u.loop.cond, af, ef, ctx);
        walk_block(e->u.loop.body, af, ef, ctx);
        break;
    case CE_SOAC:
        walk_block(e->u.soac.fn->body, af, ef, ctx);
        break;
    case CE_DERIV:
        if (e->u.deriv.fn)
            walk_block(e->u.deriv.fn->body, af, ef, ctx);
        break;
    default:
        break;
    }
}

void walk_block(CBlock *b, AtomFn af, ExprFn ef, void *ctx)
{
    for (int i = 0; i < b->nbinds; i++)
        walk_expr(b->binds[i].e, af, ef, ctx);
    if (af && b->result)
        af(b->result, ctx);
}

static bool var_active(CVar *v) { return v && core_map_get(&R->active, v); }
bool atom_active(CAtom *a) { return a && a->kind == CA_VAR && var_active(a->u.var); }

void set_active(CVar *v)
{
    if (has_tan(v->type))
        core_map_put(&R->active, v, (void *)1);
}

/* Distinct variables of a walk, in order: the active ones, or those in a set. */
typedef struct Collect {
    Vec vars;
    CoreMap seen;
    CoreMap *in;    /* keep only these (NULL: the active ones) */
    CoreMap *skip;  /* never these */
} Collect;

static void collect_atom(CAtom *a, void *vctx)
{
    Collect *c = vctx;
    if (a->kind != CA_VAR)
        return;
    CVar *v = a->u.var;
    if (c->in ? !core_map_get(c->in, v) : !var_active(v))
        return;
    if ((c->skip && core_map_get(c->skip, v)) || core_map_get(&c->seen, v))
        return;
    core_map_put(&c->seen, v, (void *)1);
    vec_push(&c->vars, v);
}

bool uses_active_block(CBlock *b)
{
    Collect c = {0};
    walk_block(b, collect_atom, NULL, &c);
    bool r = c.vars.len > 0;
    vec_free(&c.vars);
    core_map_free(&c.seen);
    return r;
}

bool uses_active_expr(CExpr *e)
{
    Collect c = {0};
    walk_expr(e, collect_atom, NULL, &c);
    bool r = c.vars.len > 0;
    vec_free(&c.vars);
    core_map_free(&c.seen);
    return r;
}

static int size_count;
static void count_expr(CExpr *e, void *ctx)
{
    (void)e;
    (void)ctx;
    size_count++;
}

int block_size(CBlock *b)
{
    size_count = 0;
    walk_block(b, NULL, count_expr, NULL);
    return size_count;
}

/* Recursion: f reachable from its own callees. */
typedef struct Reach {
    CoreMap seen;
    Vec work;
} Reach;

static void reach_expr(CExpr *e, void *vctx)
{
    Reach *r = vctx;
    if (e->kind != CE_CALL || core_map_get(&r->seen, e->u.fun))
        return;
    core_map_put(&r->seen, e->u.fun, (void *)1);
    vec_push(&r->work, e->u.fun);
}

static bool is_recursive(CFun *f)
{
    intptr_t m = (intptr_t)core_map_get(&R->rec, f);
    if (m)
        return m == 1;
    Reach r = {0};
    if (f->body)
        walk_block(f->body, NULL, reach_expr, &r);
    while (r.work.len) {
        CFun *g = vec_pop(&r.work);
        if (g->body && g != f)
            walk_block(g->body, NULL, reach_expr, &r);
    }
    bool rec = core_map_get(&r.seen, f) != NULL;
    core_map_free(&r.seen);
    vec_free(&r.work);
    core_map_put(&R->rec, f, (void *)(intptr_t)(rec ? 1 : 2));
    return rec;
}

static bool has_fun_param(CFun *f)
{
    for (int i = 0; i < f->nparams; i++)
        if (kind_of(f->params[i]->type) == TY_FUNC)
            return true;
    return false;
}

/* ------------------------------------------------------------ forward sweep */

void fpush(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    push_bind(dst, x, e);
    core_map_put(&F->bound, x, (void *)1);
    core_map_put(&R->known, x, e);
}

Entry *tape(Frame *F, EntryKind k, CVar *y, CExpr *e)
{
    Entry *en = NEW(Entry);
    en->kind = k;
    en->y = y;
    en->e = e;
    vec_push(&F->tape, en);
    set_active(y);
    return en;
}

void fwd_block(Frame *F, CBlock *src, CBlock *dst)
{
    for (int i = 0; i < src->nbinds; i++)
        fwd_bind(F, dst, src->binds[i].var, src->binds[i].e);
}

/* Follows copies and projections of known tuples to a definition. */
static CExpr *resolve_def(CAtom *a)
{
    for (int depth = 0; depth < 64; depth++) {
        if (!a || a->kind != CA_VAR)
            return NULL;
        CExpr *d = core_map_get(&R->known, a->u.var);
        if (!d)
            d = ad_def_of(a); /* bound before the region */
        if (!d)
            return NULL;
        if (d->kind == CE_ATOM) {
            a = d->args[0];
            continue;
        }
        if (d->kind == CE_PRIM && (d->u.prim.op == P_PROJ || d->u.prim.op == P_FIELD)) {
            CExpr *p = resolve_def(d->args[0]);
            Prim want = d->u.prim.op == P_PROJ ? P_TUPLE : P_RECORD;
            if (p && p->kind == CE_PRIM && p->u.prim.op == want && d->u.prim.imm < p->nargs) {
                a = p->args[d->u.prim.imm];
                continue;
            }
        }
        return d;
    }
    return NULL;
}

CExpr *known_def(CAtom *a)
{
    if (!a || a->kind != CA_VAR)
        return NULL;
    CExpr *d = core_map_get(&R->known, a->u.var);
    return d ? d : ad_def_of(a);
}

static bool is_io(Prim p) { return p == P_PRINT || p == P_PRINTLN || p == P_PROGRESS || p == P_WRITE_NPY; }

/* The call's value and pullback from fv (f_rev or a `with vjp` rule). */
static void fwd_pullback(Frame *F, CBlock *dst, CVar *x, CFun *fv, CAtom **args, int n)
{
    CAtom *r = call(dst, fv, args, n);
    fpush(F, dst, x, core_prim(P_PROJ, x->type, R->loc, &r, 1, 0));
    CAtom *pb = prim(dst, P_PROJ, core_type_proj(fv->ret, 1), &r, 1, 1);
    Entry *en = tape(F, EN_PULLBACK, x, NULL);
    en->pb = pb;
    en->args = args;
    en->nargs = n;
}

static void fwd_call(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    CFun *f = e->u.fun;
    bool act = false;
    for (int i = 0; i < e->nargs; i++)
        act |= atom_active(e->args[i]);
    if (!act || !has_tan(x->type)) {
        fpush(F, dst, x, e);
        return;
    }
    CFun *of = core_map_get(&R->rev_fun, f);
    if (of) {
        /* (y, pb) = f_rev xs, differentiated again: y is f xs, and the
         * applications of pb become calls of f_bwd (fwd_apply) */
        CExpr *ce = core_expr(CE_CALL, of->ret, e->loc);
        ce->u.fun = of;
        ce->nargs = e->nargs;
        ce->args = e->args;
        CVar *y = core_var("y", of->ret, e->loc);
        fwd_bind(F, dst, y, ce);
        CAtom *parts[2] = {core_atom_var(y), dummy_of(dst, core_type_proj(x->type, 1), 0)};
        fwd_bind(F, dst, x, core_prim(P_TUPLE, x->type, e->loc, parts, 2, 0));
        core_map_put(&R->rev_call, x, e);
        return;
    }
    if (f->vjp_rule) {
        if (f->vjp_rule->nparams != e->nargs) {
            rv_error(e->loc, "reverse mode: the 'with vjp' rule of '%s' must take all its parameters",
                     f->src_name);
            fpush(F, dst, x, e);
            return;
        }
        if (!ad_prepare_fun(f->vjp_rule))
            R->ok = false;
        fwd_pullback(F, dst, x, f->vjp_rule, e->args, e->nargs);
        return;
    }
    if (f->jvp_rule) {
        if (e->nargs != 1) {
            rv_error(e->loc, "reverse mode: the 'with jvp' rule of '%s' needs a function of one parameter",
                     f->src_name);
            fpush(F, dst, x, e);
            return;
        }
        if (!ad_prepare_fun(f->jvp_rule))
            R->ok = false;
        fpush(F, dst, x, e);
        Entry *en = tape(F, EN_JVP_RULE, x, e);
        en->rule = f->jvp_rule;
        en->args = e->args;
        en->nargs = 1;
        return;
    }
    if (!ad_prepare_fun(f)) {
        R->ok = false;
        fpush(F, dst, x, e);
        return;
    }
    if (!f->body) {
        rv_error(e->loc, "reverse mode: '%s' has no body to differentiate", f->src_name);
        fpush(F, dst, x, e);
        return;
    }
    int size = block_size(f->body);
    if (!is_recursive(f) && R->budget > 0 && (size <= 200 || has_fun_param(f))) {
        R->budget -= size;
        CBlock *c = core_copy_block(f->body, f->params, e->args, f->nparams);
        fwd_block(F, c, dst);
        fwd_bind(F, dst, x, atom_e(c->result));
        return;
    }
    /* hofn: f_rev and f_bwd take function parameters as constants (their
     * applications dispatch by ad_defun_call); a closure over the
     * differentiated variables cannot be one */
    for (int i = 0; i < e->nargs; i++)
        if (type_resolve(core_atom_type(e->args[i]))->kind == TY_FUNC && atom_active(e->args[i])) {
            rv_error(e->loc, "reverse mode: cannot differentiate this call of '%s': it passes a function "
                             "value that depends on the differentiated input to a function that is not "
                             "inlined (recursive or large)", f->src_name);
            fpush(F, dst, x, e);
            return;
        }
    if (F->norec) {
        fpush(F, dst, x, e);
        Entry *en = tape(F, EN_RECOMPUTE, x, e);
        en->rule = f;
        en->args = e->args;
        en->nargs = e->nargs;
        return;
    }
    fwd_pullback(F, dst, x, get_vjp(f), e->args, e->nargs);
}

static CFun *get_bwd(CFun *f);

/* hofn: f is a projection out of a tuple, record, array or variant */
static bool fun_from_data(CAtom *f)
{
    CExpr *d = known_def(f);
    while (d && d->kind == CE_ATOM)
        d = known_def(d->args[0]);
    if (!d || d->kind != CE_PRIM)
        return false;
    Prim op = d->u.prim.op;
    return op == P_FIELD || op == P_PROJ || op == P_INDEX || op == P_PAYLOAD;
}

static void fwd_apply(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    bool act = has_tan(x->type) && (atom_active(e->args[0]) || atom_active(e->args[1]));
    CExpr *d = act ? known_def(e->args[0]) : NULL;
    while (d && d->kind == CE_ATOM)
        d = known_def(d->args[0]);
    if (d && d->kind == CE_PRIM && d->u.prim.op == P_PROJ && d->u.prim.imm == 1 &&
        d->args[0]->kind == CA_VAR && core_map_get(&R->rev_call, d->args[0]->u.var)) {
        /* the pullback of an f_rev applied (reverse over reverse through a
         * recursive function): f_bwd, which recomputes f's forward sweep and
         * returns the adjoints, is the same function without a closure */
        CExpr *c = core_map_get(&R->rev_call, d->args[0]->u.var);
        CFun *f = core_map_get(&R->rev_fun, c->u.fun);
        {
            CFun *fb = get_bwd(f);
            CExpr *ce = core_expr(CE_CALL, fb->ret, e->loc);
            ce->u.fun = fb;
            ce->nargs = c->nargs + 1;
            ce->args = NEWN(CAtom *, ce->nargs);
            for (int i = 0; i < c->nargs; i++)
                ce->args[i] = c->args[i];
            ce->args[c->nargs] = e->args[1];
            fwd_bind(F, dst, x, ce);
            return;
        }
    }
    d = act ? resolve_def(e->args[0]) : NULL;
    if (d && d->kind == CE_LAMBDA && R->budget > 0) {
        CLambda *l = d->u.lambda;
        R->budget -= block_size(l->body);
        CBlock *c = core_copy_block(l->body, l->params, &e->args[1], 1);
        fwd_block(F, c, dst);
        fwd_bind(F, dst, x, atom_e(c->result));
        return;
    }
    /* hofn: a function value from outside the region (or taken out of a
     * data structure: a constant, ad_defun_data_guard), as a dispatch on
     * its code (ad_defun_call in ad_forms.c; its VJP is vjp_prim's) */
    bool konst = !atom_active(e->args[0]) || fun_from_data(e->args[0]);
    bool fres = type_resolve(x->type)->kind == TY_FUNC;
    CExpr *pa = known_def(e->args[0]);
    if (act && !konst && !fres && pa && pa->kind == CE_APPLY && pa->nargs == 2 &&
        (!atom_active(pa->args[0]) || (fun_from_data(pa->args[0]) && ad_defun_data_guard(1, e->loc)))) {
        /* f q z with f a constant of two (curried) parameters: one
         * dispatch on both arguments; the partial application f q below
         * gets no adjoint */
        CAtom *xs[2] = {pa->args[1], e->args[1]};
        CExpr *de = ad_defun_call(R->prog, pa->args[0], xs, 2, x->type, e->loc);
        if (de) {
            fwd_bind(F, dst, x, de);
            return;
        }
    }
    if (act && konst && fres) {
        /* the partial application f q of a constant: applied above; any
         * other use of its adjoint is reported (EN_CLOSURE) */
        fpush(F, dst, x, e);
        tape(F, EN_CLOSURE, x, e);
        return;
    }
    if (act && konst && !atom_active(e->args[1]) && ad_defun_data_guard(1, e->loc)) {
        fpush(F, dst, x, e);
        return;
    }
    if (act && konst && has_tan(core_atom_type(e->args[1])) &&
        (!atom_active(e->args[0]) || ad_defun_data_guard(1, e->loc))) {
        CExpr *de = ad_defun_call(R->prog, e->args[0], &e->args[1], 1, x->type, e->loc);
        if (de) {
            fwd_bind(F, dst, x, de);
            return;
        }
    }
    fpush(F, dst, x, e);
    if (act)
        rv_error(e->loc, "reverse mode: cannot differentiate through this call of a function value: "
                         "the function is not known here (a closure from outside the differentiated "
                         "function, or one passed through a data structure or a recursive function)");
}

static void fwd_branch(Frame *F, CBlock *dst, CVar *x, CExpr *e);

static void fwd_bind(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    Loc saved = R->loc;
    int mark = dst->nbinds;
    R->loc = e->loc;
    switch (e->kind) {
    case CE_ATOM:
        fpush(F, dst, x, e);
        if (atom_active(e->args[0]) && has_tan(x->type))
            tape(F, EN_ATOM, x, e);
        break;
    case CE_PRIM: {
        Prim op = e->u.prim.op;
        if (F->recompute && is_io(op) && kind_of(x->type) == TY_UNIT) {
            fpush(F, dst, x, atom_e(core_atom_unit()));
            break;
        }
        fpush(F, dst, x, e);
        for (int i = 0; op != P_DEFUN && i < e->nargs; i++) /* hofn: see ad_defun_data_guard */
            if (type_resolve(core_atom_type(e->args[i]))->kind == TY_FUNC && atom_active(e->args[i]) &&
                !fun_from_data(e->args[i]))
                ad_defun_data_guard(0, e->loc);
        if ((core_prims[op].flags & PRIM_NONDIFF) || !has_tan(x->type))
            break;
        for (int i = 0; i < e->nargs; i++)
            if (atom_active(e->args[i])) {
                tape(F, EN_PRIM, x, e);
                break;
            }
        break;
    }
    case CE_CALL:
        fwd_call(F, dst, x, e);
        break;
    case CE_APPLY:
        fwd_apply(F, dst, x, e);
        break;
    case CE_LAMBDA:
        fpush(F, dst, x, e);
        if (has_tan(x->type) && uses_active_expr(e))
            tape(F, EN_CLOSURE, x, e);
        break;
    case CE_IF: case CE_CASE:
        fwd_branch(F, dst, x, e);
        break;
    case CE_LOOP:
        fwd_loop(F, dst, x, e);
        break;
    case CE_SOAC:
        fwd_soac(F, dst, x, e);
        break;
    case CE_DERIV:
        if (e->u.deriv.kind == DERIV_STOP_GRADIENT) {
            fpush(F, dst, x, e); /* its value carries no derivative */
            break;
        } else {
            /* a derivative form in a copied callee: expand it first */
            CBlock *tmp = core_block_new();
            push_bind(tmp, x, e);
            tmp->result = core_atom_unit();
            if (!ad_expand_block(tmp))
                R->ok = false;
            fwd_block(F, tmp, dst);
        }
        break;
    }
    for (int i = mark; i < dst->nbinds; i++)
        core_map_put(&F->bound, dst->binds[i].var, (void *)1);
    R->loc = saved;
}

/* ------------------------------------------------------------ templates */

Adj *adj_get(Bwd *B, CVar *v) { return core_map_get(&B->adj, v); }

void adj_set(Bwd *B, CVar *v, Adj *a)
{
    if (!core_map_get(&B->adj, v))
        vec_push(&B->keys, v);
    core_map_put(&B->adj, v, a);
}

/* Adds a to the adjoint of target (nothing for constants and inactive
 * variables). */
void contrib(Bwd *B, CBlock *b, CAtom *target, Adj *a)
{
    if (!a || !target || target->kind != CA_VAR || !var_active(target->u.var))
        return;
    CVar *v = target->u.var;
    adj_set(B, v, adj_add(b, v->type, adj_get(B, v), a));
}

void bwd_run(Bwd *B, CBlock *b, CAtom *result, CAtom *ct)
{
    contrib(B, b, result, A(ct));
    for (int i = B->F->tape.len - 1; i >= 0 && R->ok; i--)
        bwd_entry(B, b, B->F->tape.data[i]);
}

/* The backward sweep of frame F over a placeholder cotangent of result.
 * cands[i] with acc[i] start from a placeholder adjoint (passed in and
 * updated: in-place accumulation into arrays); the others from zero. For
 * a case alternative, the adjoint of its payload pay goes to the scrutinee
 * as the constructor con. */
Tmpl *tmpl_raw(Frame *F, CAtom *result, Type *rtype, CVar **params, CAtom **ptmpl, int np,
                      CVar **cands, bool *acc, int nc, CVar *pay, CAtom *scrut, int conk)
{
    Tmpl *tm = NEW(Tmpl);
    tm->body = core_block_new();
    tm->ct = core_var("ct", tan_t(rtype), R->loc);
    Bwd *B = NEW(Bwd);
    B->F = F;
    tm->B = B;
    tm->params = params;
    tm->ptmpl = ptmpl;
    tm->nparams = np;
    tm->cands = cands;
    tm->ncands = nc;
    tm->accv = NEWN(CVar *, nc > 0 ? nc : 1);
    for (int i = 0; i < nc; i++)
        if (acc[i]) {
            tm->accv[i] = core_var("acc", tan_t(cands[i]->type), R->loc);
            adj_set(B, cands[i], A(core_atom_var(tm->accv[i])));
        }
    bwd_run(B, tm->body, result, core_atom_var(tm->ct));
    if (pay) {
        Adj *pa = adj_get(B, pay);
        if (pa)
            contrib(B, tm->body, scrut, adj_con(conk, pa));
    }
    return tm;
}

static int cand_index(Tmpl *tm, CVar *v)
{
    for (int i = 0; i < tm->ncands; i++)
        if (tm->cands[i] == v)
            return i;
    return -1;
}

static bool is_param(Tmpl *tm, CVar *v)
{
    for (int i = 0; i < tm->nparams; i++)
        if (tm->params[i] == v)
            return true;
    return false;
}

/* Adds to outs the outer variables whose adjoints tm changes. */
void tmpl_escapes(Tmpl *tm, Vec *outs, CoreMap *seen)
{
    Bwd *B = tm->B;
    for (int i = 0; i < B->keys.len; i++) {
        CVar *v = B->keys.data[i];
        if (core_map_get(&B->F->bound, v) || is_param(tm, v) || core_map_get(seen, v))
            continue;
        int ci = cand_index(tm, v);
        if (ci >= 0 && tm->accv[ci]) {
            Adj *a = adj_get(B, v);
            if (a && a->kind == ADJ_ATOM && a->atom->kind == CA_VAR && a->atom->u.var == tm->accv[ci])
                continue; /* passed through unchanged */
        }
        core_map_put(seen, v, (void *)1);
        vec_push(outs, v);
    }
}

/* Sets the result: the parameters' adjoints, then outs'; and finds the
 * residuals (frame variables the body reads). pay is re-bound by whoever
 * instantiates it. */
void tmpl_finish(Tmpl *tm, CVar **outs, int nouts, CVar *pay)
{
    CBlock *b = tm->body;
    Bwd *B = tm->B;
    int n = tm->nparams + nouts;
    CAtom **r = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < tm->nparams; i++) {
        CVar *p = tm->params[i];
        CAtom *z = tm->ptmpl && tm->ptmpl[i] ? tm->ptmpl[i] : core_atom_var(tm->ct);
        Adj *a = adj_get(B, p);
        r[i] = a ? materialize(b, a, z, p->type) : zeros_of(b, z);
    }
    tm->outs = outs;
    tm->nouts = nouts;
    tm->accm = NEWN(bool, nouts > 0 ? nouts : 1);
    for (int j = 0; j < nouts; j++) {
        CVar *v = outs[j];
        int ci = cand_index(tm, v);
        tm->accm[j] = ci >= 0 && tm->accv[ci];
        Adj *a = adj_get(B, v);
        r[tm->nparams + j] = materialize(b, a, core_atom_var(v), v->type);
    }
    b->result = tuple_of(b, r, n);
    /* residuals */
    CoreMap in = {0}, skip = {0};
    for (int i = 0; i < B->F->bound.cap; i++)
        if (B->F->bound.keys && B->F->bound.keys[i] && B->F->bound.vals[i])
            core_map_put(&in, B->F->bound.keys[i], (void *)1);
    for (int i = 0; i < tm->nparams; i++)
        core_map_put(&in, tm->params[i], (void *)1);
    if (pay)
        core_map_put(&skip, pay, (void *)1);
    Collect c = {.in = &in, .skip = &skip};
    walk_block(b, collect_atom, NULL, &c);
    tm->nres = c.vars.len;
    tm->res = NEWN(CVar *, c.vars.len > 0 ? c.vars.len : 1);
    for (int i = 0; i < c.vars.len; i++)
        tm->res[i] = c.vars.data[i];
    vec_free(&c.vars);
    core_map_free(&c.seen);
    core_map_free(&in);
    core_map_free(&skip);
}

/* Instantiates tm into dst: ct and the incoming adjoints accs (per out, for
 * the accumulating ones) and the given substitutions. Returns the result. */
CAtom *tmpl_inst(CBlock *dst, Tmpl *tm, CAtom *ct, CAtom **accs, CVar **from, CAtom **to, int n)
{
    int m = 1 + tm->nouts + n;
    CVar **f = NEWN(CVar *, m);
    CAtom **t = NEWN(CAtom *, m);
    int k = 0;
    f[k] = tm->ct;
    t[k++] = ct;
    for (int j = 0; j < tm->nouts; j++)
        if (tm->accm[j]) {
            f[k] = tm->accv[cand_index(tm, tm->outs[j])];
            t[k++] = accs[j];
        }
    for (int i = 0; i < n; i++) {
        f[k] = from[i];
        t[k++] = to[i];
    }
    return splice(dst, tm->body, f, t, k);
}

/* The active variables a construct reads from outside (candidates for
 * adjoints flowing out), and whether each is accumulated in place. */
void candidates(CExpr *e, CBlock *blk, bool all_acc, CVar ***cands, bool **acc, int *n)
{
    Collect c = {0};
    if (e)
        walk_expr(e, collect_atom, NULL, &c);
    else
        walk_block(blk, collect_atom, NULL, &c);
    *n = c.vars.len;
    *cands = NEWN(CVar *, *n > 0 ? *n : 1);
    *acc = NEWN(bool, *n > 0 ? *n : 1);
    for (int i = 0; i < *n; i++) {
        (*cands)[i] = c.vars.data[i];
        (*acc)[i] = all_acc || is_arr((*cands)[i]->type);
    }
    vec_free(&c.vars);
    core_map_free(&c.seen);
}

/* ------------------------------------------------------------ if / case */

static void fwd_branch(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    bool isif = e->kind == CE_IF;
    int nb = isif ? 2 : e->u.case_.nalts;
    CBlock **src = NEWN(CBlock *, nb);
    for (int k = 0; k < nb; k++)
        src[k] = isif ? (k ? e->u.if_.else_ : e->u.if_.then_) : e->u.case_.alts[k].body;
    if (!has_tan(x->type) || !uses_active_expr(e)) {
        fpush(F, dst, x, e);
        return;
    }
    CVar **cands;
    bool *acc;
    int nc;
    candidates(e, NULL, false, &cands, &acc, &nc);
    Tmpl **tm = NEWN(Tmpl *, nb);
    CBlock **fb = NEWN(CBlock *, nb);
    for (int k = 0; k < nb; k++) {
        Frame *Fk = NEW(Frame);
        Fk->recompute = F->recompute;
        Fk->norec = F->norec;
        CVar *pay = isif ? NULL : e->u.case_.alts[k].payload;
        if (pay) {
            core_map_put(&Fk->bound, pay, (void *)1);
            if (atom_active(e->args[0]))
                set_active(pay);
        }
        fb[k] = core_block_new();
        fwd_block(Fk, src[k], fb[k]);
        fb[k]->result = src[k]->result;
        tm[k] = tmpl_raw(Fk, src[k]->result, x->type, NULL, NULL, 0, cands, acc, nc, pay, e->args[0],
                         isif ? 0 : e->u.case_.alts[k].con);
    }
    Vec outs = {0};
    CoreMap seen = {0};
    for (int k = 0; k < nb; k++)
        tmpl_escapes(tm[k], &outs, &seen);
    core_map_free(&seen);
    int no = outs.len;
    CVar **ov = (CVar **)vec_freeze(&outs);
    for (int k = 0; k < nb; k++)
        tmpl_finish(tm[k], ov, no, isif ? NULL : e->u.case_.alts[k].payload);
    /* the residuals leave the branch with its value */
    int total = 1;
    int *off = NEWN(int, nb);
    for (int k = 0; k < nb; k++) {
        off[k] = total;
        total += tm[k]->nres;
    }
    CExpr *ne = core_expr(e->kind, x->type, e->loc);
    ne->nargs = 1;
    ne->args = e->args;
    if (!isif) {
        ne->u.case_.nalts = nb;
        ne->u.case_.alts = NEWN(CAlt, nb);
        for (int k = 0; k < nb; k++)
            ne->u.case_.alts[k] = e->u.case_.alts[k];
    }
    CAtom ***res = NEWN(CAtom **, nb);
    if (total > 1) {
        Type **ts = NEWN(Type *, total);
        ts[0] = x->type;
        for (int k = 0; k < nb; k++)
            for (int j = 0; j < tm[k]->nres; j++)
                ts[off[k] + j] = tm[k]->res[j]->type;
        Type *tt = type_tuple(ts, total);
        for (int k = 0; k < nb; k++) {
            CAtom **parts = NEWN(CAtom *, total);
            parts[0] = fb[k]->result;
            for (int q = 0; q < nb; q++)
                for (int j = 0; j < tm[q]->nres; j++)
                    parts[off[q] + j] = q == k ? core_atom_var(tm[k]->res[j]) : dummy_of(fb[k], ts[off[q] + j], 0);
            fb[k]->result = mkprod(fb[k], tt, parts, total);
        }
        ne->type = tt;
    }
    for (int k = 0; k < nb; k++) {
        if (isif)
            *(k ? &ne->u.if_.else_ : &ne->u.if_.then_) = fb[k];
        else
            ne->u.case_.alts[k].body = fb[k];
    }
    if (total > 1) {
        CAtom *t = bind(dst, "br", ne);
        fpush(F, dst, x, core_prim(P_PROJ, x->type, e->loc, &t, 1, 0));
        for (int k = 0; k < nb; k++) {
            res[k] = NEWN(CAtom *, tm[k]->nres > 0 ? tm[k]->nres : 1);
            for (int j = 0; j < tm[k]->nres; j++)
                res[k][j] = prim(dst, P_PROJ, tm[k]->res[j]->type, &t, 1, off[k] + j);
        }
    } else {
        fpush(F, dst, x, ne);
        for (int k = 0; k < nb; k++)
            res[k] = NULL;
    }
    Entry *en = tape(F, EN_BRANCH, x, e);
    en->nbr = nb;
    en->tm = tm;
    en->res = res;
    en->outs = ov;
    en->nouts = no;
    en->accm = tm[0]->accm;
}

static void bwd_branch(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a || !en->nouts)
        return;
    CExpr *e = en->e;
    bool isif = e->kind == CE_IF;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    int no = en->nouts;
    CAtom **accs = NEWN(CAtom *, no);
    Type **ot = NEWN(Type *, no);
    for (int j = 0; j < no; j++) {
        CVar *v = en->outs[j];
        ot[j] = tan_t(v->type);
        accs[j] = en->accm[j] ? materialize(b, adj_get(B, v), core_atom_var(v), v->type) : NULL;
    }
    CExpr *ne = core_expr(e->kind, tuple_t(ot, no), R->loc);
    ne->nargs = 1;
    ne->args = e->args;
    if (!isif) {
        ne->u.case_.nalts = en->nbr;
        ne->u.case_.alts = NEWN(CAlt, en->nbr);
    }
    for (int k = 0; k < en->nbr; k++) {
        Tmpl *tm = en->tm[k];
        CBlock *blk = core_block_new();
        int ns = tm->nres + 1;
        CVar **from = NEWN(CVar *, ns);
        CAtom **to = NEWN(CAtom *, ns);
        int m = 0;
        for (int j = 0; j < tm->nres; j++) {
            from[m] = tm->res[j];
            to[m++] = en->res[k][j];
        }
        if (!isif) {
            CAlt *alt = &e->u.case_.alts[k];
            CAlt *na = &ne->u.case_.alts[k];
            na->con = alt->con;
            if (alt->payload) {
                na->payload = core_var(alt->payload->name, alt->payload->type, R->loc);
                from[m] = alt->payload;
                to[m++] = core_atom_var(na->payload);
            }
            na->body = blk;
        } else {
            *(k ? &ne->u.if_.else_ : &ne->u.if_.then_) = blk;
        }
        blk->result = tmpl_inst(blk, tm, ct, accs, from, to, m);
    }
    CAtom *t = bind(b, "dbr", ne);
    for (int j = 0; j < no; j++) {
        CAtom *v = untuple(b, t, no, j);
        if (en->accm[j])
            adj_set(B, en->outs[j], A(v));
        else
            contrib(B, b, core_atom_var(en->outs[j]), A(v));
    }
}


/* ------------------------------------------------------------ calls */

/* y, pb = f_rev xs: x̄s += pb ȳ. */
static void bwd_pullback(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    CAtom *g = apply1(b, en->pb, ct);
    if (en->nargs == 1)
        contrib(B, b, en->args[0], A(g));
    else
        for (int i = 0; i < en->nargs; i++)
            if (atom_active(en->args[i]))
                contrib(B, b, en->args[i], A(proj(b, g, i)));
}

/* y = f x with `with jvp (x, dx) => (y, dy)`: dy is linear in dx, so
 * x̄ += the transpose of dx -> dy at ȳ, which is the reverse mode of
 * dx -> (rule (x, dx)).1 with x held constant (any dx; 0 here). */
static void bwd_jvp_rule(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a || !atom_active(en->args[0]))
        return;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    CAtom *x = bind(b, "x", atom_e(en->args[0])); /* a constant here */
    CVar *dx = core_var("dx", tan_t(aty(x)), R->loc);
    push_bind(b, dx, atom_e(zeros_of(b, x)));
    set_active(dx);
    Frame *FR = NEW(Frame);
    FR->recompute = true;
    FR->norec = B->F->norec;
    core_map_put(&FR->bound, dx, (void *)1);
    CBlock *tmp = core_block_new();
    CAtom *pair[2] = {x, core_atom_var(dx)};
    CAtom *p = mkprod(tmp, en->rule->params[0]->type, pair, 2);
    CAtom *r = call(tmp, en->rule, &p, 1);
    tmp->result = proj(tmp, r, 1);
    fwd_block(FR, tmp, b);
    Bwd *B2 = NEW(Bwd);
    B2->F = FR;
    bwd_run(B2, b, tmp->result, ct);
    Adj *g = adj_get(B2, dx);
    if (g)
        contrib(B, b, en->args[0], A(materialize(b, g, core_atom_var(dx), dx->type)));
}

/* f_rev xs = (f xs, fn ȳ => x̄s): f's forward sweep, then its pullback as a
 * closure over the residuals. Memoised, so recursion works. */
static CFun *get_vjp(CFun *f)
{
    CFun *fv = core_map_get(&R->vjp_of, f);
    if (fv)
        return fv;
    Loc saved = R->loc;
    R->loc = f->loc;
    fv = core_fun_new(ad_fun_name(R->prog, arena_printf(dcc_arena, "%s_rev", f->name)), f->src_name, f->loc);
    fv->is_helper = true;
    int n = f->nparams;
    fv->nparams = n;
    fv->params = NEWN(CVar *, n > 0 ? n : 1);
    CAtom **pa = NEWN(CAtom *, n > 0 ? n : 1);
    Type **pt = NEWN(Type *, n > 0 ? n : 1);
    Frame *F = NEW(Frame);
    for (int i = 0; i < n; i++) {
        fv->params[i] = core_var(f->params[i]->name, f->params[i]->type, f->loc);
        pa[i] = core_atom_var(fv->params[i]);
        pt[i] = tan_t(f->params[i]->type);
        core_map_put(&F->bound, fv->params[i], (void *)1);
        if (type_resolve(fv->params[i]->type)->kind != TY_FUNC) /* hofn: see fwd_call */
            set_active(fv->params[i]);
    }
    Type *ta = tuple_t(pt, n);
    Type *tpb = type_func(tan_t(f->ret), ta);
    Type *rt[2] = {f->ret, tpb};
    fv->ret = type_tuple(rt, 2);
    core_map_put(&R->vjp_of, f, fv);
    core_map_put(&R->rev_fun, fv, f);
    core_program_add(R->prog, fv);
    fv->body = core_block_new();
    CBlock *c = core_copy_block(f->body, f->params, pa, n);
    int budget = R->budget;
    R->budget = 4000;
    fwd_block(F, c, fv->body);
    R->budget = budget;
    CVar *ct = core_var("ct", tan_t(f->ret), f->loc);
    CBlock *lb = core_block_new();
    Bwd *B = NEW(Bwd);
    B->F = F;
    bwd_run(B, lb, c->result, core_atom_var(ct));
    CAtom **outs = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        outs[i] = materialize(lb, adj_get(B, fv->params[i]), pa[i], fv->params[i]->type);
    lb->result = tuple_of(lb, outs, n);
    CAtom *pb = closure(fv->body, ct, lb);
    CAtom *res[2] = {c->result, pb};
    fv->body->result = mkprod(fv->body, fv->ret, res, 2);
    R->loc = saved;
    return fv;
}

/* f_bwd xs ȳ = x̄s: f's forward sweep and backward sweep in one function,
 * for differentiating the pullbacks of f_rev again (no closure to go
 * through; the primal is recomputed). */
static CFun *get_bwd(CFun *f)
{
    CFun *fb = core_map_get(&R->bwd_of, f);
    if (fb)
        return fb;
    Loc saved = R->loc;
    R->loc = f->loc;
    fb = core_fun_new(ad_fun_name(R->prog, arena_printf(dcc_arena, "%s_bwd", f->name)), f->src_name, f->loc);
    fb->is_helper = true;
    int n = f->nparams;
    fb->nparams = n + 1;
    fb->params = NEWN(CVar *, n + 1);
    CAtom **pa = NEWN(CAtom *, n > 0 ? n : 1);
    Type **pt = NEWN(Type *, n > 0 ? n : 1);
    Frame *F = NEW(Frame);
    for (int i = 0; i < n; i++) {
        fb->params[i] = core_var(f->params[i]->name, f->params[i]->type, f->loc);
        pa[i] = core_atom_var(fb->params[i]);
        pt[i] = tan_t(f->params[i]->type);
        core_map_put(&F->bound, fb->params[i], (void *)1);
        if (type_resolve(fb->params[i]->type)->kind != TY_FUNC) /* hofn: see fwd_call */
            set_active(fb->params[i]);
    }
    F->norec = true;
    CVar *ct = core_var("ct", tan_t(f->ret), f->loc);
    fb->params[n] = ct;
    fb->ret = tuple_t(pt, n);
    core_map_put(&R->bwd_of, f, fb);
    core_program_add(R->prog, fb);
    fb->body = core_block_new();
    CBlock *c = core_copy_block(f->body, f->params, pa, n);
    int budget = R->budget;
    R->budget = 4000;
    fwd_block(F, c, fb->body);
    R->budget = budget;
    Bwd *B = NEW(Bwd);
    B->F = F;
    bwd_run(B, fb->body, c->result, core_atom_var(ct));
    CAtom **outs = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        outs[i] = materialize(fb->body, adj_get(B, fb->params[i]), pa[i], fb->params[i]->type);
    fb->body->result = tuple_of(fb->body, outs, n);
    R->loc = saved;
    return fb;
}

static void bwd_entry(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    Loc saved = R->loc;
    if (en->e)
        R->loc = en->e->loc;
    switch (en->kind) {
    case EN_ATOM:
        contrib(B, b, en->e->args[0], a);
        break;
    case EN_PRIM: {
        CExpr *e = en->e;
        Type *yt = en->y->type;
        switch (e->u.prim.op) {
        /* products and sums: adjoints stay partial, component by component */
        case P_TUPLE: case P_RECORD:
            for (int i = 0; i < e->nargs; i++)
                if (atom_active(e->args[i]))
                    contrib(B, b, e->args[i], adj_part(b, a, i));
            break;
        case P_PROJ: case P_FIELD:
            contrib(B, b, e->args[0], adj_prod1(aty(e->args[0]), (int)e->u.prim.imm, a));
            break;
        case P_CON:
            if (e->nargs)
                contrib(B, b, e->args[0], adj_payload(b, a, yt, (int)e->u.prim.imm));
            break;
        case P_PAYLOAD:
            contrib(B, b, e->args[0], adj_con((int)e->u.prim.imm, a));
            break;
        default:
            vjp_prim(B, b, e, en->y, materialize(b, a, core_atom_var(en->y), yt));
        }
        break;
    }
    case EN_BRANCH: bwd_branch(B, b, en); break;
    case EN_LOOP: bwd_loop(B, b, en); break;
    case EN_MAP: bwd_map(B, b, en); break;
    case EN_REDUCE_ADD: bwd_reduce_add(B, b, en); break;
    case EN_SCAN_ADD: bwd_scan_add(B, b, en); break;
    case EN_PULLBACK: bwd_pullback(B, b, en); break;
    case EN_RECOMPUTE: {
        CFun *fb = get_bwd(en->rule);
        CAtom **args = NEWN(CAtom *, en->nargs + 1);
        for (int i = 0; i < en->nargs; i++)
            args[i] = en->args[i];
        args[en->nargs] = materialize(b, a, core_atom_var(en->y), en->y->type);
        CAtom *g = call(b, fb, args, en->nargs + 1);
        for (int i = 0; i < en->nargs; i++)
            if (atom_active(en->args[i]))
                contrib(B, b, en->args[i], A(en->nargs == 1 ? g : proj(b, g, i)));
        break;
    }
    case EN_JVP_RULE: bwd_jvp_rule(B, b, en); break;
    case EN_CLOSURE:
        rv_error(en->e->loc, "reverse mode: the derivative with respect to a function value is not "
                             "implemented yet (a closure over the differentiated variables is part "
                             "of the result)");
        break;
    }
    R->loc = saved;
}

/* ------------------------------------------------------------ the forms */

/* "[d0, d1, ...]" for the dims of an array, as a string at run time. */
static CAtom *shape_string(CBlock *b, CAtom **d, int r)
{
    Type *st = type_string();
    CAtom *s = core_atom_string("[");
    for (int j = 0; j < r; j++) {
        if (j)
            s = P2(b, P_STR_CONCAT, st, s, core_atom_string(", "));
        s = P2(b, P_STR_CONCAT, st, s, P1(b, P_SHOW, st, d[j]));
    }
    return P2(b, P_STR_CONCAT, st, s, core_atom_string("]"));
}

/* A derivative form checks the shape of what it is given against the value
 * it belongs to: a pullback its cotangent against the result y, jvp and the
 * other forward forms a tangent against the primal. Each array in `given`
 * must have the shape of the corresponding array of `ref`, else a run-time
 * error names both shapes, "LEAD[1] MID[2]" (a wrong shape would otherwise
 * broadcast silently into a wrong derivative, or fail deep inside). */
static void check_shapes(CBlock *b, CAtom *given, CAtom *ref, const char *lead, const char *mid, int depth)
{
    Type *t = aty(ref);
    if (!has_tan(t) || depth > 8)
        return;
    if (t->kind == TY_ARRAY) {
        if (!is_fl(elem_of(t)))
            return;
        CAtom *dc[8], *dy[8];
        int r = dims_of(b, given, dc);
        dims_of(b, ref, dy);
        CAtom *bad = cmp2(b, P_NE, dc[0], dy[0]);
        for (int j = 1; j < r; j++)
            bad = P3(b, P_SELECT, type_bool(), cmp2(b, P_NE, dc[j], dy[j]), core_atom_bool(true), bad);
        CBlock *fail = core_block_new();
        Type *st = type_string();
        CAtom *msg = core_atom_string(lead);
        msg = P2(fail, P_STR_CONCAT, st, msg, shape_string(fail, dc, r));
        msg = P2(fail, P_STR_CONCAT, st, msg, core_atom_string(mid));
        msg = P2(fail, P_STR_CONCAT, st, msg, shape_string(fail, dy, r));
        fail->result = P1(fail, P_ERROR, type_unit(), msg);
        bind(b, "chk", if_e(bad, type_unit(), fail, block_of(core_atom_unit())));
        return;
    }
    int n = nparts(t);
    for (int i = 0; i < n; i++)
        if (has_tan(part_t(t, i)))
            check_shapes(b, proj(b, given, i), proj(b, ref, i), lead, mid, depth + 1);
}

void ad_check_shapes(CBlock *b, CAtom *given, CAtom *ref, const char *lead, const char *mid, Loc loc)
{
    Loc saved = R->loc;
    R->loc = loc;
    check_shapes(b, given, ref, lead, mid, 0);
    R->loc = saved;
}

static void check_cotangent(CBlock *b, CAtom *ct, CAtom *y, int depth)
{
    check_shapes(b, ct, y, "vjp: the pullback was given a cotangent of shape ", " for a result of shape ", depth);
}

/* Reverse mode of the region lambda l at x0 into out; returns the form's
 * value. */
static CAtom *expand_form(CBlock *out, DerivKind kind, CLambda *l, CAtom *x0, Type *rtype)
{
    CVar *p = l->params[0];
    Frame *F = NEW(Frame);
    fpush(F, out, p, atom_e(x0));
    set_active(p);
    fwd_block(F, l->body, out);
    CAtom *y = l->body->result;
    Bwd *B = NEW(Bwd);
    B->F = F;
    switch (kind) {
    case DERIV_GRAD: case DERIV_VALUE_AND_GRAD: {
        bwd_run(B, out, y, flit(aty(y), 1));
        CAtom *g = materialize(out, adj_get(B, p), core_atom_var(p), p->type);
        if (kind == DERIV_GRAD)
            return g;
        CAtom *vg[2] = {y, g};
        return mkprod(out, rtype, vg, 2);
    }
    case DERIV_VJP: {
        CVar *c = core_var("ct", tan_t(aty(y)), R->loc);
        CBlock *lb = core_block_new();
        check_cotangent(lb, core_atom_var(c), y, 0);
        bwd_run(B, lb, y, core_atom_var(c));
        lb->result = materialize(lb, adj_get(B, p), core_atom_var(p), p->type);
        CAtom *vp[2] = {y, closure(out, c, lb)};
        return mkprod(out, rtype, vp, 2);
    }
    case DERIV_JACREV: {
        /* row i of the Jacobian: the pullback of the i-th unit vector */
        CAtom *m = length_of(out, y);
        CAtom *is = P1(out, P_IOTA, type_array(type_int(), 1), m);
        CVar *i = core_var("i", type_int(), R->loc);
        CBlock *lb = core_block_new();
        CAtom *u = P2(lb, P_ONE_HOT, tan_t(aty(y)), m, core_atom_var(i));
        bwd_run(B, lb, y, u);
        lb->result = materialize(lb, adj_get(B, p), core_atom_var(p), p->type);
        return soac(out, SOAC_MAP, rtype, lambda_n(&i, 1, lb), &is, 1);
    }
    default:
        rv_error(R->loc, "internal error: reverse mode: not a reverse-mode form");
        return NULL;
    }
}

/* The memo tables hold pointers into one compilation: they are dropped
 * when another program comes (the REPL and the fuzzer compile many). */
static int depth;
static CFun *fun_first, *fun_last;
static int nfuns_seen;

static void reset_if_new(CProgram *p)
{
    if (R->prog == p && p->nfuns >= nfuns_seen && p->nfuns > 0 && p->funs[0] == fun_first &&
        p->funs[nfuns_seen - 1] == fun_last)
        return;
    core_map_free(&R->active);
    core_map_free(&R->known);
    core_map_free(&R->vjp_of);
    core_map_free(&R->rev_fun);
    core_map_free(&R->bwd_of);
    core_map_free(&R->rev_call);
    core_map_free(&R->rec);
    core_map_free(&R->helpers);
    memset(R, 0, sizeof *R);
    R->prog = p;
}

CAtom *ad_reverse_form(CProgram *p, CExpr *e, CBlock *b)
{
    if (depth == 0)
        reset_if_new(p);
    depth++;
    Loc saved_loc = R->loc;
    int saved_budget = R->budget;
    bool saved_ok = R->ok;
    R->ok = true;
    R->loc = e->loc;
    R->budget = 20000;
    CAtom *r = expand_form(b, e->u.deriv.kind, e->u.deriv.fn, e->args[0], e->type);
    bool ok = R->ok;
    R->loc = saved_loc;
    R->budget = saved_budget;
    R->ok = saved_ok;
    if (--depth == 0) {
        nfuns_seen = p->nfuns;
        fun_first = p->nfuns ? p->funs[0] : NULL;
        fun_last = p->nfuns ? p->funs[p->nfuns - 1] : NULL;
    }
    return ok ? r : NULL;
}