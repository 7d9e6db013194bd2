/* ad.c — the derivative stages' entry point: finds every CE_DERIV and hands
 * it to forward mode (ad_forward.c), Taylor mode (ad_taylor.c) or reverse
 * mode (ad_reverse.c). Until a mode exists its forms are reported as not
 * implemented, at their position. */
#include "dcc.h"

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

static bool ad_block(CBlock *b);

static bool ad_lambda(CLambda *l) { return !l || ad_block(l->body); }

static bool ad_expr(CExpr *e)
{
    bool ok = true;
    switch (e->kind) {
    case CE_LAMBDA: return ad_lambda(e->u.lambda);
    case CE_IF: return ad_block(e->u.if_.then_) & ad_block(e->u.if_.else_);
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            ok &= ad_block(e->u.case_.alts[i].body);
        return ok;
    case CE_LOOP:
        if (e->u.loop.cond)
            ok &= ad_block(e->u.loop.cond);
        return ok & ad_block(e->u.loop.body);
    case CE_SOAC: return ad_lambda(e->u.soac.fn);
    case CE_DERIV:
        ad_lambda(e->u.deriv.fn);
        error_at(e->loc, "'%s' is not implemented yet: this dcc has no AD stages",
                 deriv_name(e->u.deriv.kind));
        return false;
    default: return true;
    }
}

static bool ad_block(CBlock *b)
{
    bool ok = true;
    if (!b)
        return true;
    for (int i = 0; i < b->nbinds; i++)
        ok &= ad_expr(b->binds[i].e);
    return ok;
}

bool ad_transform_program(CProgram *p)
{
    bool ok = true;
    for (int i = 0; i < p->nfuns; i++)
        ok &= ad_block(p->funs[i]->body);
    return ok;
}
