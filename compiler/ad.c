/* ad.c — the derivative stages' entry point: finds every CE_DERIV and hands
 * it to forward mode (ad_forward.c: jvp, jacfwd, hessian, hvp, fwdgrad,
 * fwdgrad_dir), Taylor mode (ad_taylor.c: jet) or reverse mode
 * (ad_reverse.c: vjp, grad, value_and_grad, jacrev).
 *
 * Order: innermost first. A form's inline lambda is expanded before the
 * form itself, and a function is expanded before any derivative of it is
 * taken (ad_prepare_fun), so that every transformation sees ordinary Core
 * IR: nesting needs no run-time tags and cannot confuse perturbations.
 * stop_gradient stays in the code while derivatives around it are taken
 * (each reads it as "derivative zero"), and becomes its argument at the
 * end. */
#include "dcc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *deriv_name(DerivKind k)
{
    switch (k) {
    case DERIV_JVP: return "jvp";
    case DERIV_VJP: return "vjp";
    case DERIV_GRAD: return "grad";
    case DERIV_VALUE_AND_GRAD: return "value_and_grad";
    case DERIV_JACFWD: return "jacfwd";
    case DERIV_JACREV: return "jacrev";
    case DERIV_HESSIAN: return "hessian";
    case DERIV_HVP: return "hvp";
    case DERIV_JET: return "jet";
    case DERIV_FWDGRAD: return "fwdgrad";
    case DERIV_FWDGRAD_DIR: return "fwdgrad_dir";
    case DERIV_STOP_GRADIENT: return "stop_gradient";
    case DERIV_NONE: break;
    }
    return "derivative";
}

/* The state of one run of the stage. */
static struct {
    CProgram *p;
    CoreMap state; /* CFun -> 1 being expanded, 2 done */
    CoreMap defs;  /* CVar -> the CExpr bound to it */
    CoreMap names; /* interned CFun names in use */
    CProgram *named; /* the program `names` is of */
    int nnamed;    /* functions of `named` already in `names` */
} A;

CExpr *ad_def_of(CAtom *a)
{
    return a && a->kind == CA_VAR ? core_map_get(&A.defs, a->u.var) : NULL;
}

void ad_note_def(CVar *v, CExpr *e) { core_map_put(&A.defs, v, e); }

const char *ad_fun_name(CProgram *p, const char *base)
{
    if (A.named != p) {
        core_map_free(&A.names);
        A.named = p;
        A.nnamed = 0;
    }
    for (; A.nnamed < p->nfuns; A.nnamed++)
        core_map_put(&A.names, intern(p->funs[A.nnamed]->name), (void *)1);
    char *b = arena_strdup(dcc_arena, base);
    for (char *s = b; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            *s = '_';
    const char *name = intern(b);
    for (int i = 1; core_map_get(&A.names, name); i++)
        name = intern(arena_printf(dcc_arena, "%s_%d", b, i));
    core_map_put(&A.names, name, (void *)1);
    return name;
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

static bool walk_block(CBlock *b);

static bool walk_lambda(CLambda *l) { return !l || walk_block(l->body); }

static bool walk_nested(CExpr *e)
{
    bool ok = true;
    switch (e->kind) {
    case CE_LAMBDA: return walk_lambda(e->u.lambda);
    case CE_IF: return walk_block(e->u.if_.then_) & walk_block(e->u.if_.else_);
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            ok &= walk_block(e->u.case_.alts[i].body);
        return ok;
    case CE_LOOP:
        if (e->u.loop.cond)
            ok &= walk_block(e->u.loop.cond);
        return ok & walk_block(e->u.loop.body);
    case CE_SOAC: return walk_lambda(e->u.soac.fn);
    case CE_DERIV: return walk_lambda(e->u.deriv.fn);
    default: return true;
    }
}

/* DCC_AD_GRAD_BY_FORWARD=1: grad, value_and_grad and jacrev by forward
 * mode (n passes), to check reverse mode against. */
static bool grad_by_forward(void)
{
    const char *v = getenv("DCC_AD_GRAD_BY_FORWARD");
    return v && *v && strcmp(v, "0") != 0;
}

/* Emits the expansion of a derivative form into b; its value's atom, or
 * NULL after an error. */
static CAtom *expand(CExpr *e, CBlock *b)
{
    switch (e->u.deriv.kind) {
    case DERIV_JVP: case DERIV_JACFWD: case DERIV_HESSIAN: case DERIV_HVP:
    case DERIV_FWDGRAD: case DERIV_FWDGRAD_DIR:
        return ad_forward_form(A.p, e, b);
    case DERIV_JET:
        return ad_taylor_jet(A.p, e, b);
    default:
        /* reverse mode (vjp, grad, value_and_grad, jacrev): ad_reverse.c */
        if (grad_by_forward() && e->u.deriv.kind != DERIV_VJP)
            return ad_forward_grad_form(A.p, e, b);
        return ad_reverse_form(A.p, e, b);
    }
}

/* Rebuilds b with each derivative form replaced by its expansion (after
 * the forms inside it). */
static bool walk_block(CBlock *b)
{
    if (!b)
        return true;
    CBind *in = b->binds;
    int n = b->nbinds;
    b->binds = NULL;
    b->nbinds = b->cap = 0;
    bool ok = true;
    for (int i = 0; i < n; i++) {
        CVar *x = in[i].var;
        CExpr *e = in[i].e;
        bool inner = walk_nested(e);
        ok &= inner;
        if (e->kind == CE_DERIV && e->u.deriv.kind != DERIV_STOP_GRADIENT) {
            int errs = diag_error_count();
            CAtom *r = inner ? expand(e, b) : NULL;
            if (r && diag_error_count() == errs) {
                CExpr *a = core_expr(CE_ATOM, x->type, e->loc);
                a->nargs = 1;
                a->args = NEWN(CAtom *, 1);
                a->args[0] = r;
                push_bind(b, x, a);
                ad_note_def(x, a);
                continue;
            }
            if (inner && diag_error_count() == errs)
                error_at(e->loc, "internal error: ad: '%s' could not be expanded", deriv_name(e->u.deriv.kind));
            ok = false;
        }
        push_bind(b, x, e);
        ad_note_def(x, e);
    }
    return ok;
}

bool ad_expand_block(CBlock *b) { return walk_block(b); }

bool ad_prepare_fun(CFun *f)
{
    intptr_t st = (intptr_t)core_map_get(&A.state, f);
    if (st == 2)
        return true;
    if (st == 1) {
        error_at(f->loc, "cannot differentiate '%s': it takes a derivative of itself (a derivative form "
                         "reached again through the function it differentiates)", f->src_name);
        return false;
    }
    core_map_put(&A.state, f, (void *)1);
    for (int i = 0; i < f->nparams; i++)
        ad_note_def(f->params[i], NULL);
    bool ok = walk_block(f->body);
    core_map_put(&A.state, f, (void *)2);
    return ok;
}

/* ---------------------------------------------------------------- stop_gradient */

static void strip_block(CBlock *b);

static void strip_lambda(CLambda *l)
{
    if (l)
        strip_block(l->body);
}

static void strip_block(CBlock *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->nbinds; i++) {
        CExpr *e = b->binds[i].e;
        switch (e->kind) {
        case CE_LAMBDA: strip_lambda(e->u.lambda); break;
        case CE_IF: strip_block(e->u.if_.then_); strip_block(e->u.if_.else_); break;
        case CE_CASE:
            for (int j = 0; j < e->u.case_.nalts; j++)
                strip_block(e->u.case_.alts[j].body);
            break;
        case CE_LOOP:
            strip_block(e->u.loop.cond);
            strip_block(e->u.loop.body);
            break;
        case CE_SOAC: strip_lambda(e->u.soac.fn); break;
        case CE_DERIV:
            if (e->u.deriv.kind == DERIV_STOP_GRADIENT && e->nargs == 1) {
                e->kind = CE_ATOM;
                e->u.deriv.fn = NULL;
            } else {
                strip_lambda(e->u.deriv.fn);
            }
            break;
        default: break;
        }
    }
}

bool ad_transform_program(CProgram *p)
{
    memset(&A.state, 0, sizeof A.state);
    memset(&A.defs, 0, sizeof A.defs);
    A.p = p;
    A.named = NULL;
    memset(&A.names, 0, sizeof A.names);
    ad_forward_init();
    ad_taylor_init();
    ad_forward_reset();
    ad_defun_reset(p);
    bool ok = true;
    for (int i = 0; i < p->nfuns; i++)
        ok &= ad_prepare_fun(p->funs[i]);
    if (ok)
        for (int i = 0; i < p->nfuns; i++)
            strip_block(p->funs[i]->body);
    core_map_free(&A.state);
    core_map_free(&A.defs);
    core_map_free(&A.names);
    A.p = NULL;
    A.named = NULL;
    return ok;
}
