/* codegen_expr.c — Core expressions to LLVM IR: variant cells, structural
 * equality, closures (cells, currying, lambdas emitted after their
 * function), scalar primitives, and the expressions and control flow of
 * blocks (prims, calls, if, case, loops). The representation of values and
 * the ownership rules are described at the top of codegen.c and
 * codegen_mem.c. */
#include "codegen.h"

#include <stdlib.h>
#include <string.h>

/* ========================================================================
 * variants
 * ======================================================================== */

/* The cell of constructor con: {i64 refcount, i64 tag[, payload]}. */
LLVMTypeRef cg_variant_cell_type(Cg *cg, Type *t, int con)
{
    Type *at = cg_con_arg(t, con);
    LLVMTypeRef f[3] = {cg->t_i64, cg->t_i64, at ? cg_type(cg, at) : NULL};
    return LLVMStructTypeInContext(cg->ctx, f, at ? 3 : 2, 0);
}

static LLVMValueRef variant_nullary(Cg *cg, Type *t, int con)
{
    CgType *ti = cg_tinfo(cg, t);
    if (!ti->nullary)
        ti->nullary = NEWN(LLVMValueRef, ti->type->decl->ncons);
    if (!ti->nullary[con]) {
        LLVMValueRef f[2] = {cg_i64(cg, -1), cg_i64(cg, con)};
        LLVMValueRef init = LLVMConstStructInContext(cg->ctx, f, 2, 0);
        LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init),
                                       arena_printf(dcc_arena, "dl.con.%s", ti->type->decl->cons[con]));
        LLVMSetInitializer(g, init);
        LLVMSetLinkage(g, LLVMPrivateLinkage);
        LLVMSetAlignment(g, 8);
        ti->nullary[con] = g;
    }
    return ti->nullary[con];
}

/* A constructor application; payload owned (moved into the cell). */
static LLVMValueRef variant_make(Cg *cg, Type *t, int con, LLVMValueRef payload)
{
    if (!cg_con_arg(t, con))
        return variant_nullary(cg, t, con);
    LLVMTypeRef cty = cg_variant_cell_type(cg, t, con);
    LLVMValueRef p = cg_malloc(cg, cg_i64(cg, cg_sizeof(cg, cty)));
    LLVMBuildStore(cg->b, cg_i64(cg, 1), LLVMBuildStructGEP2(cg->b, cty, p, 0, ""));
    LLVMBuildStore(cg->b, cg_i64(cg, con), LLVMBuildStructGEP2(cg->b, cty, p, 1, ""));
    LLVMBuildStore(cg->b, payload, LLVMBuildStructGEP2(cg->b, cty, p, 2, ""));
    return p;
}

static LLVMValueRef variant_tag(Cg *cg, LLVMValueRef v)
{
    LLVMValueRef tp = LLVMBuildGEP2(cg->b, cg->t_i8, v, (LLVMValueRef[]){cg_i64(cg, 8)}, 1, "");
    return LLVMBuildLoad2(cg->b, cg->t_i64, tp, "tag");
}

/* The payload, borrowed. */
static LLVMValueRef variant_payload(Cg *cg, Type *t, int con, LLVMValueRef v)
{
    LLVMTypeRef cty = cg_variant_cell_type(cg, t, con);
    Type *at = cg_con_arg(t, con);
    if (!at)
        return cg_unit(cg);
    return LLVMBuildLoad2(cg->b, cg_type(cg, at), LLVMBuildStructGEP2(cg->b, cty, v, 2, ""), "payload");
}

/* ========================================================================
 * equality
 * ======================================================================== */

static void equal_body(Cg *cg, Type *t, LLVMValueRef a, LLVMValueRef b, LLVMValueRef fn);

LLVMValueRef cg_equal(Cg *cg, Type *t, LLVMValueRef a, LLVMValueRef b)
{
    t = cg_norm(t);
    switch (t->kind) {
    case TY_INT:
    case TY_BOOL:
        return LLVMBuildICmp(cg->b, LLVMIntEQ, a, b, "");
    case TY_FLOAT:
    case TY_F32:
        return LLVMBuildFCmp(cg->b, LLVMRealOEQ, a, b, "");
    case TY_UNIT:
        return LLVMConstInt(cg->t_i1, 1, 0);
    case TY_STRING: {
        LLVMValueRef args[2] = {a, b};
        LLVMValueRef r = cg_call_rt(cg, "strcmp", args, 2);
        return LLVMBuildICmp(cg->b, LLVMIntEQ, r, cg_i32(cg, 0), "");
    }
    case TY_KEY: {
        LLVMValueRef x = LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildExtractValue(cg->b, a, 0, ""),
                                       LLVMBuildExtractValue(cg->b, b, 0, ""), "");
        LLVMValueRef y = LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildExtractValue(cg->b, a, 1, ""),
                                       LLVMBuildExtractValue(cg->b, b, 1, ""), "");
        return LLVMBuildAnd(cg->b, x, y, "");
    }
    case TY_ARRAY:
        return cg_array_equal(cg, t, a, b);
    case TY_FUNC:
        return LLVMBuildICmp(cg->b, LLVMIntEQ, a, b, "");
    default:
        break;
    }
    CgType *ti = cg_tinfo(cg, t);
    if (!ti->eq) {
        CgSaved s;
        LLVMTypeRef ps[2] = {ti->ll, ti->ll};
        ti->eq = cg_helper_begin(cg, arena_printf(dcc_arena, "dl.eq.%s", ti->key),
                                 LLVMFunctionType(cg->t_i1, ps, 2, 0), &s);
        equal_body(cg, ti->type, LLVMGetParam(ti->eq, 0), LLVMGetParam(ti->eq, 1), ti->eq);
        cg_helper_end(cg, &s);
    }
    return cg_call(cg, ti->eq, (LLVMValueRef[]){a, b}, 2);
}

/* Component by component, stopping at the first difference. */
static void equal_body(Cg *cg, Type *t, LLVMValueRef a, LLVMValueRef b, LLVMValueRef fn)
{
    LLVMBasicBlockRef no = cg_block(cg, "ne");
    if (cg_is_variant(t)) {
        LLVMValueRef ta = variant_tag(cg, a), tb = variant_tag(cg, b);
        LLVMBasicBlockRef same = cg_block(cg, "same");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, ta, tb, ""), same, no);
        LLVMPositionBuilderAtEnd(cg->b, same);
        LLVMBasicBlockRef yes = cg_block(cg, "eq");
        LLVMValueRef sw = LLVMBuildSwitch(cg->b, ta, yes, (unsigned)t->decl->ncons);
        for (int c = 0; c < t->decl->ncons; c++) {
            Type *at = cg_con_arg(t, c);
            if (!at)
                continue;
            LLVMBasicBlockRef bb = cg_block(cg, "con");
            LLVMAddCase(sw, cg_i64(cg, c), bb);
            LLVMPositionBuilderAtEnd(cg->b, bb);
            LLVMValueRef r = cg_equal(cg, at, variant_payload(cg, t, c, a), variant_payload(cg, t, c, b));
            LLVMBuildRet(cg->b, r);
        }
        LLVMPositionBuilderAtEnd(cg->b, yes);
        LLVMBuildRet(cg->b, LLVMConstInt(cg->t_i1, 1, 0));
    } else {
        int n = t->kind == TY_TUPLE ? t->nargs : t->decl->nfields;
        for (int i = 0; i < n; i++) {
            Type *ct = t->kind == TY_TUPLE ? t->args[i] : cg_record_field(t, i);
            LLVMValueRef r = cg_equal(cg, ct, LLVMBuildExtractValue(cg->b, a, (unsigned)i, ""),
                                      LLVMBuildExtractValue(cg->b, b, (unsigned)i, ""));
            LLVMBasicBlockRef next = cg_block(cg, "next");
            LLVMBuildCondBr(cg->b, r, next, no);
            LLVMPositionBuilderAtEnd(cg->b, next);
        }
        LLVMBuildRet(cg->b, LLVMConstInt(cg->t_i1, 1, 0));
    }
    LLVMPositionBuilderAtEnd(cg->b, no);
    LLVMBuildRet(cg->b, LLVMConstInt(cg->t_i1, 0, 0));
    (void)fn;
}

/* ========================================================================
 * closures
 * ======================================================================== */

struct CgPending {
    CgPending *next;
    CLambda *lam;
    LLVMValueRef fn;
    CVar **caps;
    int ncaps;
    LLVMTypeRef cell;
};

/* Closure cells: {i64 refcount, ptr code, ptr drop, captures...}. */
static LLVMTypeRef closure_cell_type(Cg *cg, Type **caps, int n)
{
    LLVMTypeRef *f = NEWN(LLVMTypeRef, n + 3);
    f[0] = cg->t_i64;
    f[1] = cg->t_ptr;
    f[2] = cg->t_ptr;
    for (int i = 0; i < n; i++)
        f[3 + i] = cg_type(cg, caps[i]);
    return LLVMStructTypeInContext(cg->ctx, f, (unsigned)n + 3, 0);
}

/* void drop(ptr cell): releases the captures and frees the cell. */
static LLVMValueRef closure_drop_fn(Cg *cg, LLVMTypeRef cell, Type **caps, int n)
{
    CgSaved s;
    LLVMValueRef f = cg_helper_begin(cg, "dl.drop", LLVMFunctionType(cg->t_void, &cg->t_ptr, 1, 0), &s);
    LLVMValueRef p = LLVMGetParam(f, 0);
    for (int i = 0; i < n; i++)
        if (cg_is_rc(cg, caps[i]))
            cg_release(cg, caps[i], LLVMBuildLoad2(cg->b, cg_type(cg, caps[i]),
                                                   LLVMBuildStructGEP2(cg->b, cell, p, (unsigned)(3 + i), ""), ""));
    cg_free(cg, p);
    LLVMBuildRetVoid(cg->b);
    cg_helper_end(cg, &s);
    return f;
}

/* A new closure cell (refcount 1) holding the owned values caps. */
static LLVMValueRef closure_new(Cg *cg, LLVMTypeRef cell, LLVMValueRef code, LLVMValueRef drop,
                                LLVMValueRef *caps, int n)
{
    LLVMValueRef p = cg_malloc(cg, cg_i64(cg, cg_sizeof(cg, cell)));
    LLVMBuildStore(cg->b, cg_i64(cg, 1), LLVMBuildStructGEP2(cg->b, cell, p, 0, ""));
    LLVMBuildStore(cg->b, code, LLVMBuildStructGEP2(cg->b, cell, p, 1, ""));
    LLVMBuildStore(cg->b, drop, LLVMBuildStructGEP2(cg->b, cell, p, 2, ""));
    for (int i = 0; i < n; i++)
        LLVMBuildStore(cg->b, caps[i], LLVMBuildStructGEP2(cg->b, cell, p, (unsigned)(3 + i), ""));
    return p;
}

static LLVMTypeRef closure_code_type(Cg *cg, Type *fty)
{
    fty = cg_norm(fty);
    LLVMTypeRef ps[2] = {cg->t_ptr, cg_type(cg, fty->args[0])};
    return LLVMFunctionType(cg_type(cg, fty->args[1]), ps, 2, 0);
}

LLVMValueRef cg_apply_closure(Cg *cg, Type *fty, LLVMValueRef clo, LLVMValueRef arg)
{
    LLVMValueRef cp = LLVMBuildGEP2(cg->b, cg->t_i8, clo, (LLVMValueRef[]){cg_i64(cg, 8)}, 1, "");
    LLVMValueRef code = LLVMBuildLoad2(cg->b, cg->t_ptr, cp, "code");
    LLVMValueRef args[2] = {clo, arg};
    return LLVMBuildCall2(cg->b, closure_code_type(cg, fty), code, args, 2, "");
}

/* fn x y => e is fn x => (fn y => e). */
static CLambda *curry(Cg *cg, CLambda *l)
{
    if (l->nparams <= 1)
        return l;
    CLambda *c = cg_map_get(cg, l);
    if (c)
        return c;
    CLambda *rest = NEW(CLambda);
    rest->params = l->params + 1;
    rest->nparams = l->nparams - 1;
    rest->body = l->body;
    rest->type = cg_norm(l->type)->args[1];
    rest->loc = l->loc;
    CExpr *e = NEW(CExpr);
    e->kind = CE_LAMBDA;
    e->type = rest->type;
    e->loc = l->loc;
    e->u.lambda = rest;
    CBlock *b = core_block_new();
    CVar *v = core_bind(b, "curried", e);
    b->result = core_atom_var(v);
    c = NEW(CLambda);
    c->params = l->params;
    c->nparams = 1;
    c->body = b;
    c->type = l->type;
    c->loc = l->loc;
    c->origin = l->origin; /* its closures are l's (defun_layout) */
    cg_map_put(cg, l, c);
    return c;
}

/* Closures of a lambda some P_DEFUN dispatches on, and of every copy of
 * it (CLambda.origin), lay out their captures as ad_defun_caps lists them
 * and share one drop function: the drop pointer identifies the lambda for
 * P_DEFUN whichever copy made the closure. NULL for the other lambdas, and
 * for a copy whose captures no longer match (the simplifier replaced one
 * by a constant): its closures match no case. */
static LLVMValueRef defun_drop(Cg *cg, const CLambda *o)
{
    int n;
    CVar **caps = ad_defun_caps(o, &n);
    if (!caps)
        return NULL;
    const void *k = cg_skey("defun.drop:%p", (const void *)o);
    LLVMValueRef d = cg_map_get(cg, k);
    if (!d) {
        Type **ct = NEWN(Type *, n + 1);
        for (int i = 0; i < n; i++)
            ct[i] = caps[i]->type;
        d = closure_drop_fn(cg, closure_cell_type(cg, ct, n), ct, n);
        cg_map_put(cg, k, d);
    }
    return d;
}

static LLVMValueRef defun_layout(Cg *cg, CLambda *l, CVar **caps, int n)
{
    int on;
    CVar **oc = l->origin ? ad_defun_caps(l->origin, &on) : NULL;
    if (!oc || on != n || l->nparams != 1)
        return NULL;
    Vec fv = {0};
    ad_lambda_free_vars(l, &fv);
    bool ok = fv.len == n;
    for (int i = 0; i < n && ok; i++) {
        CVar *v = fv.data[i];
        ok = core_type_equal(v->type, oc[i]->type);
        bool in = false;
        for (int j = 0; j < n && !in; j++)
            in = caps[j] == v;
        ok = ok && in;
    }
    if (ok)
        for (int i = 0; i < n; i++)
            caps[i] = fv.data[i];
    vec_free(&fv);
    return ok ? defun_drop(cg, l->origin) : NULL;
}

/* P_DEFUN f, args..., targets (dcc.h, ad_defun_call): tests f's drop
 * function against each case's lambda (defun_layout), or f against the
 * top-level function's cell, and calls the case's target with the
 * captured variables read out of f's cell, then the arguments. */
static LLVMValueRef emit_defun(Cg *cg, CExpr *e)
{
    Defun *d = ad_defun_get(e->u.prim.imm);
    LLVMValueRef clo = cg_atom(cg, e->args[0]);
    LLVMValueRef drop = LLVMBuildLoad2(cg->b, cg->t_ptr,
                                       LLVMBuildGEP2(cg->b, cg->t_i8, clo, (LLVMValueRef[]){cg_i64(cg, 16)}, 1, ""),
                                       "drop");
    LLVMTypeRef rt = cg_type(cg, e->type);
    LLVMBasicBlockRef done = cg_block(cg, "defun.done");
    int n = d ? d->ncases : 0;
    LLVMValueRef *vals = NEWN(LLVMValueRef, n + 1);
    LLVMBasicBlockRef *from = NEWN(LLVMBasicBlockRef, n + 1);
    int nin = 0;
    for (int k = 0; k < n; k++) {
        DefunCase *c = &d->cases[k];
        LLVMValueRef test;
        LLVMTypeRef cell = NULL;
        if (c->fun) {
            test = LLVMBuildICmp(cg->b, LLVMIntEQ, clo, cg_fun_value(cg, c->fun), "");
        } else {
            Type **ct = NEWN(Type *, c->ncaps + 1);
            for (int i = 0; i < c->ncaps; i++)
                ct[i] = c->caps[i]->type;
            cell = closure_cell_type(cg, ct, c->ncaps);
            LLVMValueRef od = defun_drop(cg, c->lam->origin ? c->lam->origin : c->lam);
            if (!od)
                continue;
            test = LLVMBuildICmp(cg->b, LLVMIntEQ, drop, od, "");
        }
        LLVMBasicBlockRef yes = cg_block(cg, "defun.case"), no = cg_block(cg, "defun.next");
        LLVMBuildCondBr(cg->b, test, yes, no);
        LLVMPositionBuilderAtEnd(cg->b, yes);
        CFun *t = c->target;
        LLVMValueRef *av = NEWN(LLVMValueRef, t->nparams + 1);
        for (int i = 0; i < c->ncaps; i++)
            av[i] = LLVMBuildLoad2(cg->b, cg_type(cg, c->caps[i]->type),
                                   LLVMBuildStructGEP2(cg->b, cell, clo, (unsigned)(3 + i), ""), "");
        for (int i = 0; i < d->nargs; i++)
            av[c->ncaps + i] = cg_atom(cg, e->args[1 + i]);
        LLVMValueRef fn = cg_fun_decl(cg, t);
        vals[nin] = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, av, (unsigned)t->nparams, "");
        from[nin++] = LLVMGetInsertBlock(cg->b);
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, no);
    }
    LLVMValueRef a[3] = {cg_srcloc(cg, e->loc), cg_cstr(cg, "%s"),
                         cg_cstr(cg, "cannot differentiate through this function value: its code is not "
                                     "among the lambdas the derivative was compiled for")};
    cg_call_rt(cg, "dl_error", a, 3);
    vals[nin] = LLVMGetPoison(rt);
    from[nin++] = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    LLVMValueRef phi = LLVMBuildPhi(cg->b, rt, "defun");
    LLVMAddIncoming(phi, vals, from, (unsigned)nin);
    return phi;
}

static LLVMValueRef emit_lambda(Cg *cg, CExpr *e)
{
    CLambda *l = curry(cg, e->u.lambda);
    int ncaps;
    CVar **caps = cg_free_vars(cg, l, &ncaps);
    LLVMValueRef shared_drop = defun_layout(cg, l, caps, ncaps);
    Type **ct = NEWN(Type *, ncaps + 1);
    LLVMValueRef *cv = NEWN(LLVMValueRef, ncaps + 1);
    for (int i = 0; i < ncaps; i++) {
        ct[i] = caps[i]->type;
        cv[i] = cg_atom(cg, core_atom_var(caps[i]));
        cg_retain(cg, ct[i], cv[i]);
    }
    LLVMTypeRef cell = closure_cell_type(cg, ct, ncaps);
    LLVMValueRef drop = shared_drop ? shared_drop : closure_drop_fn(cg, cell, ct, ncaps);
    LLVMValueRef code = LLVMAddFunction(cg->mod, "dl.lambda", closure_code_type(cg, l->type));
    LLVMSetLinkage(code, LLVMInternalLinkage);
    CgPending *p = NEW(CgPending);
    p->lam = l;
    p->fn = code;
    p->caps = caps;
    p->ncaps = ncaps;
    p->cell = cell;
    p->next = cg->pending;
    cg->pending = p;
    return closure_new(cg, cell, code, drop, cv, ncaps);
}

static void emit_pending(Cg *cg, CgPending *p)
{
    cg->fn = p->fn;
    cg->entry = cg_block(cg, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);
    cg->sp = cg_di_subprogram(cg, "lambda", LLVMGetValueName(p->fn), p->lam->loc, true);
    if (cg->sp)
        LLVMSetSubprogram(p->fn, cg->sp);
    cg_set_loc(cg, p->lam->loc);
    LLVMValueRef cell = LLVMGetParam(p->fn, 0);
    for (int i = 0; i < p->ncaps; i++) {
        CVar *v = p->caps[i];
        cg_set_var(cg, v, LLVMBuildLoad2(cg->b, cg_type(cg, v->type),
                                      LLVMBuildStructGEP2(cg->b, p->cell, cell, (unsigned)(3 + i), ""),
                                      v->name ? v->name : ""));
    }
    cg_set_var(cg, p->lam->params[0], LLVMGetParam(p->fn, 1));
    cg->scope = NULL;
    LLVMValueRef r = cg_emit_block(cg, p->lam->body, NULL, 0);
    LLVMBuildRet(cg->b, r);
}

/* Emits the bodies of the lambdas met so far (and of those they contain). */
void cg_emit_pending_all(Cg *cg)
{
    while (cg->pending) {
        CgPending *p = cg->pending;
        cg->pending = p->next;
        emit_pending(cg, p);
    }
}


/* A top-level function as a value: an immortal cell whose code takes the
 * first argument; with more parameters each stage captures the arguments so
 * far in a new cell, the last stage calls the function. */
LLVMValueRef cg_fun_value(Cg *cg, CFun *f)
{
    const void *k = cg_skey("funval:%p", (void *)f);
    LLVMValueRef g = cg_map_get(cg, k);
    if (g)
        return g;
    if (f->nparams == 0) { /* a constant def: its value */
        return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(cg_fun_decl(cg, f)), cg_fun_decl(cg, f),
                              NULL, 0, "");
    }
    int n = f->nparams;
    Type **pt = NEWN(Type *, n);
    for (int i = 0; i < n; i++)
        pt[i] = f->params[i]->type;
    /* the type of stage k's closure: pt[k] -> ... -> ret */
    Type **stage_ty = NEWN(Type *, n + 1);
    stage_ty[n] = f->ret;
    for (int i = n - 1; i >= 0; i--) {
        Type *t = cg_mk_type(TY_FUNC);
        t->nargs = 2;
        t->args = NEWN(Type *, 2);
        t->args[0] = pt[i];
        t->args[1] = stage_ty[i + 1];
        stage_ty[i] = t;
    }
    LLVMValueRef *code = NEWN(LLVMValueRef, n);
    for (int s = 0; s < n; s++) {
        code[s] = LLVMAddFunction(cg->mod, arena_printf(dcc_arena, "dl.curry.%s.%d", f->name, s),
                                  closure_code_type(cg, stage_ty[s]));
        LLVMSetLinkage(code[s], LLVMInternalLinkage);
    }
    for (int s = 0; s < n; s++) {
        CgSaved sv;
        /* cg_helper_begin adds a function; reuse its bookkeeping on code[s] */
        sv.block = LLVMGetInsertBlock(cg->b);
        sv.fn = cg->fn;
        sv.entry = cg->entry;
        sv.sp = cg->sp;
        sv.dloc = cg->dib ? LLVMGetCurrentDebugLocation2(cg->b) : NULL;
        cg->fn = code[s];
        cg->sp = NULL;
        cg->entry = cg_block(cg, "entry");
        LLVMPositionBuilderAtEnd(cg->b, cg->entry);
        if (cg->dib)
            LLVMSetCurrentDebugLocation2(cg->b, NULL);
        LLVMValueRef cellp = LLVMGetParam(code[s], 0);
        LLVMValueRef arg = LLVMGetParam(code[s], 1);
        LLVMTypeRef cell_in = closure_cell_type(cg, pt, s);
        LLVMValueRef *vals = NEWN(LLVMValueRef, n);
        for (int i = 0; i < s; i++)
            vals[i] = LLVMBuildLoad2(cg->b, cg_type(cg, pt[i]),
                                     LLVMBuildStructGEP2(cg->b, cell_in, cellp, (unsigned)(3 + i), ""), "");
        vals[s] = arg;
        if (s == n - 1) {
            LLVMValueRef fn = cg_fun_decl(cg, f);
            LLVMBuildRet(cg->b, LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, vals, (unsigned)n, ""));
        } else {
            for (int i = 0; i <= s; i++)
                cg_retain(cg, pt[i], vals[i]);
            LLVMTypeRef cell_out = closure_cell_type(cg, pt, s + 1);
            LLVMValueRef drop = closure_drop_fn(cg, cell_out, pt, s + 1);
            LLVMBuildRet(cg->b, closure_new(cg, cell_out, code[s + 1], drop, vals, s + 1));
        }
        cg_helper_end(cg, &sv);
    }
    LLVMTypeRef cell0 = closure_cell_type(cg, NULL, 0);
    LLVMValueRef init = LLVMConstStructInContext(cg->ctx, (LLVMValueRef[]){cg_i64(cg, -1), code[0],
                                                                           LLVMConstNull(cg->t_ptr)}, 3, 0);
    g = LLVMAddGlobal(cg->mod, cell0, arena_printf(dcc_arena, "dl.funval.%s", f->name));
    LLVMSetInitializer(g, init);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetAlignment(g, 8);
    cg_map_put(cg, k, g);
    return g;
}

/* ========================================================================
 * scalar primitives
 * ======================================================================== */

static bool is_float_kind(Type *t)
{
    t = cg_norm(t);
    return t->kind == TY_FLOAT || t->kind == TY_F32;
}

/* b ^ e on integers by squaring; a negative exponent gives the truncated
 * quotient 1 / b^-e (so 0 unless b is 1 or -1; b = 0 is a division by zero). */
static LLVMValueRef ipow_fn(Cg *cg)
{
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "dl.ipow");
    if (f)
        return f;
    CgSaved s;
    LLVMTypeRef ps[3] = {cg->t_i64, cg->t_i64, cg->t_ptr};
    f = cg_helper_begin(cg, "dl.ipow", LLVMFunctionType(cg->t_i64, ps, 3, 0), &s);
    LLVMValueRef b = LLVMGetParam(f, 0), e = LLVMGetParam(f, 1), loc = LLVMGetParam(f, 2);
    LLVMBasicBlockRef neg = cg_block(cg, "neg"), pos = cg_block(cg, "pos"), zero = cg_block(cg, "zero"),
                      nz = cg_block(cg, "nonzero");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, e, cg_i64(cg, 0), ""), neg, pos);
    LLVMPositionBuilderAtEnd(cg->b, neg);
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, 0), ""), zero, nz);
    LLVMPositionBuilderAtEnd(cg->b, zero);
    cg_call_rt(cg, "dl_div_by_zero", &loc, 1);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, nz);
    LLVMValueRef one = LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, 1), "");
    LLVMValueRef mone = LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, -1), "");
    LLVMValueRef odd = LLVMBuildTrunc(cg->b, e, cg->t_i1, "");
    LLVMValueRef mres = LLVMBuildSelect(cg->b, odd, cg_i64(cg, -1), cg_i64(cg, 1), "");
    LLVMBuildRet(cg->b, LLVMBuildSelect(cg->b, one, cg_i64(cg, 1),
                                        LLVMBuildSelect(cg->b, mone, mres, cg_i64(cg, 0), ""), ""));
    LLVMPositionBuilderAtEnd(cg->b, pos);
    LLVMValueRef rs = cg_alloca(cg, cg->t_i64, "r"), bs = cg_alloca(cg, cg->t_i64, "b"),
                 es = cg_alloca(cg, cg->t_i64, "e");
    LLVMBuildStore(cg->b, cg_i64(cg, 1), rs);
    LLVMBuildStore(cg->b, b, bs);
    LLVMBuildStore(cg->b, e, es);
    LLVMBasicBlockRef head = cg_block(cg, "head"), body = cg_block(cg, "body"), done = cg_block(cg, "done");
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, head);
    LLVMValueRef ev = LLVMBuildLoad2(cg->b, cg->t_i64, es, "");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, ev, cg_i64(cg, 0), ""), body, done);
    LLVMPositionBuilderAtEnd(cg->b, body);
    LLVMValueRef rv = LLVMBuildLoad2(cg->b, cg->t_i64, rs, ""), bv = LLVMBuildLoad2(cg->b, cg->t_i64, bs, "");
    LLVMValueRef bit = LLVMBuildTrunc(cg->b, ev, cg->t_i1, "");
    LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, bit, LLVMBuildMul(cg->b, rv, bv, ""), rv, ""), rs);
    LLVMBuildStore(cg->b, LLVMBuildMul(cg->b, bv, bv, ""), bs);
    LLVMBuildStore(cg->b, LLVMBuildAShr(cg->b, ev, cg_i64(cg, 1), ""), es);
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, done);
    LLVMBuildRet(cg->b, LLVMBuildLoad2(cg->b, cg->t_i64, rs, ""));
    cg_helper_end(cg, &s);
    return f;
}

static LLVMValueRef libm1(Cg *cg, const char *name, bool f32, LLVMValueRef x)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%s%s", name, f32 ? "f" : "");
    return cg_call_rt(cg, buf, &x, 1);
}

static LLVMValueRef intrin1(Cg *cg, const char *name, LLVMValueRef x)
{
    LLVMTypeRef t = LLVMTypeOf(x);
    return cg_intrinsic(cg, name, &t, 1, &x, 1);
}

/* Integer arithmetic with an overflow check at -O0 ("wraps are errors in
 * debug builds"), plain wrapping otherwise. */
static LLVMValueRef int_arith(Cg *cg, Prim op, LLVMValueRef a, LLVMValueRef b, Loc loc)
{
    if (cg->opt->opt_level > 0) {
        switch (op) {
        case P_ADD: return LLVMBuildAdd(cg->b, a, b, "");
        case P_SUB: return LLVMBuildSub(cg->b, a, b, "");
        default: return LLVMBuildMul(cg->b, a, b, "");
        }
    }
    const char *in = op == P_ADD ? "llvm.sadd.with.overflow" : op == P_SUB ? "llvm.ssub.with.overflow"
                                                                          : "llvm.smul.with.overflow";
    LLVMTypeRef t = cg->t_i64;
    LLVMValueRef r = cg_intrinsic(cg, in, &t, 1, (LLVMValueRef[]){a, b}, 2);
    LLVMBasicBlockRef bad = cg_block(cg, "overflow"), ok = cg_block(cg, "ok");
    LLVMBuildCondBr(cg->b, LLVMBuildExtractValue(cg->b, r, 1, ""), bad, ok);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    const char *sp = op == P_ADD ? "+" : op == P_SUB ? "-" : "*";
    cg_call_rt(cg, "dl_overflow_error", (LLVMValueRef[]){cg_cstr(cg, sp), cg_srcloc(cg, loc)}, 2);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, ok);
    return LLVMBuildExtractValue(cg->b, r, 0, "");
}

/* Integer / and %: C semantics; a zero divisor is an error; INT64_MIN / -1
 * wraps (it would trap in hardware). */
static LLVMValueRef int_divmod(Cg *cg, bool div, LLVMValueRef a, LLVMValueRef b, Loc loc)
{
    LLVMBasicBlockRef bad = cg_block(cg, "divzero"), ok = cg_block(cg, "ok");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, 0), ""), bad, ok);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    LLVMValueRef l = cg_srcloc(cg, loc);
    cg_call_rt(cg, "dl_div_by_zero", &l, 1);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, ok);
    /* b == -1: a / -1 = -a (wrapping), a % -1 = 0 */
    LLVMValueRef m1 = LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, -1), "");
    LLVMValueRef safe_b = LLVMBuildSelect(cg->b, m1, cg_i64(cg, 1), b, "");
    if (div) {
        LLVMValueRef q = LLVMBuildSDiv(cg->b, a, safe_b, "");
        return LLVMBuildSelect(cg->b, m1, LLVMBuildSub(cg->b, cg_i64(cg, 0), a, ""), q, "");
    }
    LLVMValueRef r = LLVMBuildSRem(cg->b, a, safe_b, "");
    return LLVMBuildSelect(cg->b, m1, cg_i64(cg, 0), r, "");
}

static LLVMValueRef to_float_type(Cg *cg, LLVMValueRef x, Type *from, LLVMTypeRef to)
{
    from = cg_norm(from);
    switch (from->kind) {
    case TY_INT: return LLVMBuildSIToFP(cg->b, x, to, "");
    case TY_BOOL: return LLVMBuildUIToFP(cg->b, x, to, "");
    case TY_FLOAT: return to == cg->t_f64 ? x : LLVMBuildFPTrunc(cg->b, x, to, "");
    case TY_F32: return to == cg->t_f32 ? x : LLVMBuildFPExt(cg->b, x, to, "");
    default: return LLVMGetPoison(to);
    }
}

LLVMValueRef cg_scalar_prim(Cg *cg, Prim op, int64_t imm, Type *rt, Type **at, LLVMValueRef *v,
                            int n, Loc loc)
{
    (void)imm;
    Type *t0 = n > 0 ? cg_norm(at[0]) : NULL;
    bool fl = t0 && is_float_kind(t0);
    bool f32 = t0 && t0->kind == TY_F32;
    LLVMBuilderRef b = cg->b;
    switch (op) {
    case P_ADD:
    case P_SUB:
    case P_MUL:
        if (fl)
            return op == P_ADD ? LLVMBuildFAdd(b, v[0], v[1], "")
                 : op == P_SUB ? LLVMBuildFSub(b, v[0], v[1], "")
                               : LLVMBuildFMul(b, v[0], v[1], "");
        return int_arith(cg, op, v[0], v[1], loc);
    case P_DIV:
        return fl ? LLVMBuildFDiv(b, v[0], v[1], "") : int_divmod(cg, true, v[0], v[1], loc);
    case P_MOD:
        return fl ? LLVMBuildFRem(b, v[0], v[1], "") : int_divmod(cg, false, v[0], v[1], loc);
    case P_POW:
        if (fl) {
            LLVMTypeRef t = LLVMTypeOf(v[0]);
            return cg_intrinsic(cg, "llvm.pow", &t, 1, v, 2);
        }
        return cg_call(cg, ipow_fn(cg), (LLVMValueRef[]){v[0], v[1], cg_srcloc(cg, loc)}, 3);
    case P_NEG:
        return fl ? LLVMBuildFNeg(b, v[0], "") : LLVMBuildSub(b, cg_i64(cg, 0), v[0], "");
    case P_NOT:
        return LLVMBuildNot(b, v[0], "");
    case P_EQ:
    case P_NE:
    case P_LT:
    case P_LE:
    case P_GT:
    case P_GE: {
        if (fl) {
            static const LLVMRealPredicate rp[] = {LLVMRealOEQ, LLVMRealUNE, LLVMRealOLT,
                                                   LLVMRealOLE, LLVMRealOGT, LLVMRealOGE};
            return LLVMBuildFCmp(b, rp[op - P_EQ], v[0], v[1], "");
        }
        if (t0->kind == TY_INT || t0->kind == TY_BOOL || t0->kind == TY_UNIT) {
            bool u = t0->kind != TY_INT;
            static const LLVMIntPredicate sp[] = {LLVMIntEQ, LLVMIntNE, LLVMIntSLT, LLVMIntSLE,
                                                  LLVMIntSGT, LLVMIntSGE};
            static const LLVMIntPredicate up[] = {LLVMIntEQ, LLVMIntNE, LLVMIntULT, LLVMIntULE,
                                                  LLVMIntUGT, LLVMIntUGE};
            return LLVMBuildICmp(b, u ? up[op - P_EQ] : sp[op - P_EQ], v[0], v[1], "");
        }
        if (t0->kind == TY_STRING && op != P_EQ && op != P_NE) {
            LLVMValueRef c = cg_call_rt(cg, "strcmp", v, 2);
            static const LLVMIntPredicate sp[] = {LLVMIntEQ, LLVMIntNE, LLVMIntSLT, LLVMIntSLE,
                                                  LLVMIntSGT, LLVMIntSGE};
            return LLVMBuildICmp(b, sp[op - P_EQ], c, cg_i32(cg, 0), "");
        }
        LLVMValueRef eq = cg_equal(cg, t0, v[0], v[1]);
        if (op == P_EQ)
            return eq;
        if (op == P_NE)
            return LLVMBuildNot(b, eq, "");
        cg_error(cg, loc, "ordering comparison of structured values is not supported");
        return LLVMGetPoison(cg->t_i1);
    }
    case P_EXP: return intrin1(cg, "llvm.exp", v[0]);
    case P_LOG: return intrin1(cg, "llvm.log", v[0]);
    case P_SQRT: return intrin1(cg, "llvm.sqrt", v[0]);
    case P_SIN: return intrin1(cg, "llvm.sin", v[0]);
    case P_COS: return intrin1(cg, "llvm.cos", v[0]);
    case P_FLOOR: return fl ? intrin1(cg, "llvm.floor", v[0]) : v[0];
    case P_CEIL: return fl ? intrin1(cg, "llvm.ceil", v[0]) : v[0];
    case P_LOG1P: return libm1(cg, "log1p", f32, v[0]);
    case P_EXPM1: return libm1(cg, "expm1", f32, v[0]);
    case P_TAN: return libm1(cg, "tan", f32, v[0]);
    case P_TANH: return libm1(cg, "tanh", f32, v[0]);
    case P_ATAN2:
        return cg_call_rt(cg, f32 ? "atan2f" : "atan2", v, 2);
    case P_ABS:
        if (fl)
            return intrin1(cg, "llvm.fabs", v[0]);
        return cg_intrinsic(cg, "llvm.abs", &cg->t_i64, 1,
                            (LLVMValueRef[]){v[0], LLVMConstInt(cg->t_i1, 0, 0)}, 2);
    case P_SIGMOID: {
        /* 1 / (1 + exp(-x)) */
        LLVMTypeRef t = LLVMTypeOf(v[0]);
        LLVMValueRef e = intrin1(cg, "llvm.exp", LLVMBuildFNeg(b, v[0], ""));
        return LLVMBuildFDiv(b, LLVMConstReal(t, 1.0), LLVMBuildFAdd(b, LLVMConstReal(t, 1.0), e, ""), "");
    }
    case P_SOFTPLUS: {
        /* max(x, 0) + log1p(exp(-|x|)): no overflow for large x */
        LLVMTypeRef t = LLVMTypeOf(v[0]);
        LLVMValueRef pos = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, v[0], LLVMConstReal(t, 0), ""),
                                           v[0], LLVMConstReal(t, 0), "");
        LLVMValueRef ax = intrin1(cg, "llvm.fabs", v[0]);
        LLVMValueRef l = libm1(cg, "log1p", f32, intrin1(cg, "llvm.exp", LLVMBuildFNeg(b, ax, "")));
        return LLVMBuildFAdd(b, pos, l, "");
    }
    case P_RELU:
        if (fl) {
            LLVMTypeRef t = LLVMTypeOf(v[0]);
            return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, v[0], LLVMConstReal(t, 0), ""), v[0],
                                   LLVMConstReal(t, 0), "");
        }
        return LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGT, v[0], cg_i64(cg, 0), ""), v[0], cg_i64(cg, 0), "");
    case P_MIN:
    case P_MAX: {
        LLVMValueRef c;
        if (fl)
            c = LLVMBuildFCmp(b, op == P_MIN ? LLVMRealOLT : LLVMRealOGT, v[0], v[1], "");
        else if (t0->kind == TY_BOOL)
            c = LLVMBuildICmp(b, op == P_MIN ? LLVMIntULT : LLVMIntUGT, v[0], v[1], "");
        else
            c = LLVMBuildICmp(b, op == P_MIN ? LLVMIntSLT : LLVMIntSGT, v[0], v[1], "");
        /* NaN propagates (as NumPy's minimum/maximum) */
        if (fl) {
            LLVMValueRef nan = LLVMBuildFCmp(b, LLVMRealUNO, v[0], v[0], "");
            c = LLVMBuildOr(b, c, nan, "");
        }
        return LLVMBuildSelect(b, c, v[0], v[1], "");
    }
    case P_TO_FLOAT:
        return to_float_type(cg, v[0], t0, cg->t_f64);
    case P_TO_F32:
        return to_float_type(cg, v[0], t0, cg->t_f32);
    case P_TO_INT:
        if (fl) {
            /* NaN or outside the int64 range is an error (the conversion would be poison) */
            LLVMTypeRef t = LLVMTypeOf(v[0]);
            LLVMValueRef okl = LLVMBuildFCmp(b, LLVMRealOGE, v[0], LLVMConstReal(t, -9223372036854775808.0), "");
            LLVMValueRef okh = LLVMBuildFCmp(b, LLVMRealOLT, v[0], LLVMConstReal(t, 9223372036854775808.0), "");
            LLVMBasicBlockRef bad = cg_block(cg, "badint"), ok = cg_block(cg, "ok");
            LLVMBuildCondBr(b, LLVMBuildAnd(b, okl, okh, ""), ok, bad);
            LLVMPositionBuilderAtEnd(b, bad);
            LLVMValueRef d = f32 ? LLVMBuildFPExt(b, v[0], cg->t_f64, "") : v[0];
            cg_call_rt(cg, "dl_error", (LLVMValueRef[]){cg_srcloc(cg, loc),
                                                        cg_cstr(cg, "cannot convert %g to int"), d}, 3);
            LLVMBuildUnreachable(b);
            LLVMPositionBuilderAtEnd(b, ok);
            return LLVMBuildFPToSI(b, v[0], cg->t_i64, "");
        }
        if (t0->kind == TY_BOOL)
            return LLVMBuildZExt(b, v[0], cg->t_i64, "");
        return v[0];
    case P_SELECT:
        return LLVMBuildSelect(b, v[0], v[1], v[2], "");
    default:
        break;
    }
    (void)rt;
    fatal("internal error: codegen: primitive '%s' on scalars", core_prims[op].name);
}

/* ========================================================================
 * expressions
 * ======================================================================== */

LLVMValueRef cg_key_to_i64(Cg *cg, LLVMValueRef k)
{
    LLVMValueRef lo = LLVMBuildZExt(cg->b, LLVMBuildExtractValue(cg->b, k, 0, ""), cg->t_i64, "");
    LLVMValueRef hi = LLVMBuildZExt(cg->b, LLVMBuildExtractValue(cg->b, k, 1, ""), cg->t_i64, "");
    return LLVMBuildOr(cg->b, lo, LLVMBuildShl(cg->b, hi, cg_i64(cg, 32), ""), "");
}

LLVMValueRef cg_i64_to_key(Cg *cg, LLVMValueRef x)
{
    LLVMValueRef lo = LLVMBuildTrunc(cg->b, x, cg->t_i32, "");
    LLVMValueRef hi = LLVMBuildTrunc(cg->b, LLVMBuildLShr(cg->b, x, cg_i64(cg, 32), ""), cg->t_i32, "");
    LLVMValueRef k = LLVMGetUndef(cg->t_key);
    k = LLVMBuildInsertValue(cg->b, k, lo, 0, "");
    return LLVMBuildInsertValue(cg->b, k, hi, 1, "key");
}

/* progress label done total metrics: one bar at a time, begun on first use
 * and ended when done reaches total. */
static LLVMValueRef emit_progress(Cg *cg, CExpr *e)
{
    LLVMValueRef g = LLVMGetNamedGlobal(cg->mod, "dl.progress");
    if (!g) {
        g = LLVMAddGlobal(cg->mod, cg->t_ptr, "dl.progress");
        LLVMSetInitializer(g, LLVMConstNull(cg->t_ptr));
        LLVMSetLinkage(g, LLVMInternalLinkage);
        /* a module for C programs may be called from several threads */
        if (cg->opt->compile_only)
            LLVMSetThreadLocal(g, 1);
    }
    LLVMValueRef label = cg_atom(cg, e->args[0]), done = cg_atom(cg, e->args[1]);
    LLVMValueRef total = cg_atom(cg, e->args[2]), metrics = cg_atom(cg, e->args[3]);
    LLVMValueRef p = LLVMBuildLoad2(cg->b, cg->t_ptr, g, "");
    LLVMBasicBlockRef begin = cg_block(cg, "pbegin"), upd = cg_block(cg, "pupdate");
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMBuildCondBr(cg->b, LLVMBuildIsNull(cg->b, p, ""), begin, upd);
    LLVMPositionBuilderAtEnd(cg->b, begin);
    LLVMValueRef np = cg_call_rt(cg, "dl_progress_begin", (LLVMValueRef[]){label, total}, 2);
    LLVMBuildStore(cg->b, np, g);
    LLVMBuildBr(cg->b, upd);
    LLVMPositionBuilderAtEnd(cg->b, upd);
    LLVMValueRef ph = LLVMBuildPhi(cg->b, cg->t_ptr, "");
    LLVMAddIncoming(ph, (LLVMValueRef[]){p, np}, (LLVMBasicBlockRef[]){here, begin}, 2);
    cg_call_rt(cg, "dl_progress_update", (LLVMValueRef[]){ph, done, metrics}, 3);
    LLVMBasicBlockRef end = cg_block(cg, "pend"), out = cg_block(cg, "pout");
    LLVMValueRef fin = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, done, total, ""),
                                    LLVMBuildICmp(cg->b, LLVMIntSGT, total, cg_i64(cg, 0), ""), "");
    LLVMBuildCondBr(cg->b, fin, end, out);
    LLVMPositionBuilderAtEnd(cg->b, end);
    cg_call_rt(cg, "dl_progress_end", &ph, 1);
    LLVMBuildStore(cg->b, LLVMConstNull(cg->t_ptr), g);
    LLVMBuildBr(cg->b, out);
    LLVMPositionBuilderAtEnd(cg->b, out);
    return cg_unit(cg);
}

/* args (): the program's arguments after its name, as []string. */
static LLVMValueRef emit_args(Cg *cg, CExpr *e)
{
    LLVMValueRef argc = LLVMBuildSExt(cg->b, cg_call_rt(cg, "dl_argc", NULL, 0), cg->t_i64, "");
    LLVMValueRef n = LLVMBuildSub(cg->b, argc, cg_i64(cg, 1), "");
    n = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, n, cg_i64(cg, 0), ""), cg_i64(cg, 0), n, "");
    Type *st = cg_mk_type(TY_STRING);
    LLVMValueRef arr = cg_arr_new(cg, st, 1, &n);
    LLVMValueRef data = cg_arr_data(cg, arr);
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), n);
    LLVMValueRef s = cg_call_rt(cg, "dl_argv", (LLVMValueRef[]){LLVMBuildTrunc(cg->b, LLVMBuildAdd(cg->b, i, cg_i64(cg, 1), ""), cg->t_i32, "")}, 1);
    LLVMValueRef len = cg_call_rt(cg, "strlen", &s, 1);
    LLVMValueRef ns = cg_string_new(cg, len);
    LLVMBuildMemCpy(cg->b, ns, 1, s, 1, len);
    cg_elem_store(cg, st, data, i, ns);
    cg_loop_end(cg, &l);
    (void)e;
    return arr;
}

static LLVMValueRef emit_str_concat(Cg *cg, CExpr *e)
{
    LLVMValueRef a = cg_atom(cg, e->args[0]), b = cg_atom(cg, e->args[1]);
    LLVMValueRef la = cg_call_rt(cg, "strlen", &a, 1), lb = cg_call_rt(cg, "strlen", &b, 1);
    LLVMValueRef s = cg_string_new(cg, LLVMBuildAdd(cg->b, la, lb, ""));
    LLVMBuildMemCpy(cg->b, s, 1, a, 1, la);
    LLVMBuildMemCpy(cg->b, LLVMBuildGEP2(cg->b, cg->t_i8, s, &la, 1, ""), 1, b, 1, lb);
    return s;
}

static LLVMValueRef emit_prim(Cg *cg, CExpr *e)
{
    Prim op = e->u.prim.op;
    if (cg_prim_is_array(e))
        return cg_array_prim(cg, e);
    switch (op) {
    case P_TUPLE:
    case P_RECORD: {
        LLVMValueRef v = LLVMGetUndef(cg_type(cg, e->type));
        for (int i = 0; i < e->nargs; i++)
            v = LLVMBuildInsertValue(cg->b, v, cg_take(cg, e->args[i]), (unsigned)i, "");
        return v;
    }
    case P_PROJ:
    case P_FIELD: {
        LLVMValueRef v = LLVMBuildExtractValue(cg->b, cg_atom(cg, e->args[0]), (unsigned)e->u.prim.imm, "");
        cg_retain(cg, e->type, v);
        return v;
    }
    case P_CON:
        return variant_make(cg, e->type, (int)e->u.prim.imm, e->nargs ? cg_take(cg, e->args[0]) : NULL);
    case P_TAG: {
        LLVMValueRef t = variant_tag(cg, cg_atom(cg, e->args[0]));
        if (cg_norm(e->type)->kind == TY_BOOL)
            return LLVMBuildTrunc(cg->b, t, cg->t_i1, "");
        return t;
    }
    case P_PAYLOAD: {
        LLVMValueRef v = variant_payload(cg, core_atom_type(e->args[0]), (int)e->u.prim.imm, cg_atom(cg, e->args[0]));
        cg_retain(cg, e->type, v);
        return v;
    }
    case P_PRINT:
    case P_PRINTLN:
        cg_print(cg, core_atom_type(e->args[0]), cg_atom(cg, e->args[0]), false);
        if (op == P_PRINTLN)
            cg_call_rt(cg, "dl_print_newline", NULL, 0);
        return cg_unit(cg);
    case P_SHOW:
        return cg_show(cg, core_atom_type(e->args[0]), cg_atom(cg, e->args[0]));
    case P_STR_CONCAT:
        return emit_str_concat(cg, e);
    case P_KEY: {
        LLVMValueRef s = cg_atom(cg, e->args[0]);
        return cg_i64_to_key(cg, cg_call_rt(cg, "dl_key_from_seed", &s, 1));
    }
    case P_SPLIT: {
        LLVMTypeRef at = LLVMArrayType(cg->t_i64, 2);
        LLVMValueRef out = cg_alloca(cg, at, "keys");
        cg_call_rt(cg, "dl_split", (LLVMValueRef[]){cg_key_to_i64(cg, cg_atom(cg, e->args[0])), out}, 2);
        LLVMValueRef k0 = cg_i64_to_key(cg, LLVMBuildLoad2(cg->b, cg->t_i64, out, ""));
        LLVMValueRef p1 = LLVMBuildGEP2(cg->b, cg->t_i64, out, (LLVMValueRef[]){cg_i64(cg, 1)}, 1, "");
        LLVMValueRef k1 = cg_i64_to_key(cg, LLVMBuildLoad2(cg->b, cg->t_i64, p1, ""));
        LLVMValueRef t = LLVMGetUndef(cg_type(cg, e->type));
        t = LLVMBuildInsertValue(cg->b, t, k0, 0, "");
        return LLVMBuildInsertValue(cg->b, t, k1, 1, "");
    }
    case P_DEFUN:
        return emit_defun(cg, e);
    case P_ERROR: {
        LLVMValueRef a[3] = {cg_srcloc(cg, e->loc), cg_cstr(cg, "%s"), cg_atom(cg, e->args[0])};
        cg_call_rt(cg, "dl_error", a, 3);
        return LLVMGetPoison(cg_type(cg, e->type));
    }
    case P_ARGS:
        return emit_args(cg, e);
    case P_PROGRESS:
        return emit_progress(cg, e);
    case P_CLOCK:
        return cg_call_rt(cg, "dl_clock", NULL, 0);
    case P_WRITE_TEXT:
        cg_call_rt(cg, "dl_write_text", (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_atom(cg, e->args[1]),
                                                         cg_srcloc(cg, e->loc)}, 3);
        return cg_unit(cg);
    default:
        break;
    }
    LLVMValueRef v[8];
    Type *at[8];
    if (e->nargs > 8)
        fatal("internal error: codegen: too many operands for '%s'", core_prims[op].name);
    for (int i = 0; i < e->nargs; i++) {
        v[i] = cg_atom(cg, e->args[i]);
        at[i] = core_atom_type(e->args[i]);
    }
    return cg_scalar_prim(cg, op, e->u.prim.imm, e->type, at, v, e->nargs, e->loc);
}

LLVMValueRef cg_fun_decl(Cg *cg, CFun *f)
{
    const void *k = cg_skey("fun:%p", (void *)f);
    LLVMValueRef fn = cg_map_get(cg, k);
    if (fn)
        return fn;
    LLVMTypeRef *ps = NEWN(LLVMTypeRef, f->nparams + 1);
    for (int i = 0; i < f->nparams; i++)
        ps[i] = cg_type(cg, f->params[i]->type);
    LLVMTypeRef ft = LLVMFunctionType(cg_type(cg, f->ret), ps, (unsigned)f->nparams, 0);
    fn = LLVMAddFunction(cg->mod, arena_printf(dcc_arena, "dl.%s", f->name), ft);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_map_put(cg, k, fn);
    return fn;
}

/* Applies the closure atom/value to args one at a time. fty is its type. */
static LLVMValueRef apply_chain(Cg *cg, Type *fty, LLVMValueRef clo, bool owned, CAtom **args, int n)
{
    for (int i = 0; i < n; i++) {
        fty = cg_norm(fty);
        LLVMValueRef r = cg_apply_closure(cg, fty, clo, cg_atom(cg, args[i]));
        if (owned)
            cg_release(cg, fty, clo);
        clo = r;
        owned = true;
        fty = fty->args[1];
    }
    return clo;
}

static LLVMValueRef emit_call(Cg *cg, CFun *f, CAtom **args, int n)
{
    if (f->nparams == 0) {
        LLVMValueRef fn = cg_fun_decl(cg, f);
        LLVMValueRef r = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, NULL, 0, "");
        return n ? apply_chain(cg, f->ret, r, true, args, n) : r;
    }
    if (n < f->nparams) {
        Type *fty = NULL, *t = f->ret; /* the curried type of f */
        for (int i = f->nparams - 1; i >= 0; i--) {
            fty = cg_mk_type(TY_FUNC);
            fty->nargs = 2;
            fty->args = NEWN(Type *, 2);
            fty->args[0] = f->params[i]->type;
            fty->args[1] = t;
            t = fty;
        }
        return apply_chain(cg, fty, cg_fun_value(cg, f), false, args, n);
    }
    LLVMValueRef fn = cg_fun_decl(cg, f);
    LLVMValueRef *av = NEWN(LLVMValueRef, f->nparams + 1);
    for (int i = 0; i < f->nparams; i++)
        av[i] = cg_atom(cg, args[i]);
    LLVMValueRef r = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, av, (unsigned)f->nparams, "");
    if (n > f->nparams)
        r = apply_chain(cg, f->ret, r, true, args + f->nparams, n - f->nparams);
    return r;
}

static LLVMValueRef emit_if(Cg *cg, CExpr *e)
{
    LLVMValueRef c = cg_atom(cg, e->args[0]);
    LLVMBasicBlockRef tb = cg_block(cg, "then"), eb = cg_block(cg, "else"), jb = cg_block(cg, "endif");
    LLVMBuildCondBr(cg->b, c, tb, eb);
    LLVMPositionBuilderAtEnd(cg->b, tb);
    LLVMValueRef tv = cg_emit_block(cg, e->u.if_.then_, NULL, 0);
    LLVMBasicBlockRef tend = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, jb);
    LLVMPositionBuilderAtEnd(cg->b, eb);
    LLVMValueRef ev = cg_emit_block(cg, e->u.if_.else_, NULL, 0);
    LLVMBasicBlockRef eend = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, jb);
    LLVMPositionBuilderAtEnd(cg->b, jb);
    LLVMValueRef phi = LLVMBuildPhi(cg->b, cg_type(cg, e->type), "if");
    LLVMAddIncoming(phi, (LLVMValueRef[]){tv, ev}, (LLVMBasicBlockRef[]){tend, eend}, 2);
    return phi;
}

static LLVMValueRef emit_case(Cg *cg, CExpr *e)
{
    CAtom *sa = e->args[0];
    Type *st = cg_norm(core_atom_type(sa));
    LLVMValueRef sv = cg_atom(cg, sa);
    LLVMValueRef key;
    bool var = cg_is_variant(st);
    if (var)
        key = variant_tag(cg, sv);
    else if (st->kind == TY_BOOL)
        key = LLVMBuildZExt(cg->b, sv, cg->t_i64, "");
    else if (st->kind == TY_INT)
        key = sv;
    else
        fatal("internal error: codegen: case on a value of type %s", type_to_string(st));
    int nalts = e->u.case_.nalts;
    LLVMBasicBlockRef join = cg_block(cg, "endcase");
    LLVMBasicBlockRef deflt = NULL;
    CAlt *dalt = NULL;
    for (int i = 0; i < nalts; i++)
        if (e->u.case_.alts[i].con < 0 && !dalt)
            dalt = &e->u.case_.alts[i];
    deflt = cg_block(cg, dalt ? "default" : "nomatch");
    LLVMValueRef sw = LLVMBuildSwitch(cg->b, key, deflt, (unsigned)nalts);
    LLVMValueRef *vals = NEWN(LLVMValueRef, nalts + 1);
    LLVMBasicBlockRef *bbs = NEWN(LLVMBasicBlockRef, nalts + 1);
    int nin = 0;
    for (int i = 0; i < nalts; i++) {
        CAlt *a = &e->u.case_.alts[i];
        LLVMBasicBlockRef bb;
        if (a->con < 0) {
            if (a != dalt)
                continue;
            bb = deflt;
        } else {
            /* the first alternative for a constructor wins */
            bool dup = false;
            for (int j = 0; j < i; j++)
                dup |= e->u.case_.alts[j].con == a->con;
            if (dup)
                continue;
            bb = cg_block(cg, "alt");
            LLVMAddCase(sw, cg_i64(cg, a->con), bb);
        }
        LLVMPositionBuilderAtEnd(cg->b, bb);
        if (a->payload) {
            LLVMValueRef pv = var && a->con >= 0 ? variant_payload(cg, st, a->con, sv) : sv;
            cg_set_var(cg, a->payload, pv);
        }
        vals[nin] = cg_emit_block(cg, a->body, NULL, 0);
        bbs[nin++] = LLVMGetInsertBlock(cg->b);
        LLVMBuildBr(cg->b, join);
    }
    if (!dalt) {
        LLVMPositionBuilderAtEnd(cg->b, deflt);
        LLVMBuildUnreachable(cg->b);
    }
    LLVMPositionBuilderAtEnd(cg->b, join);
    LLVMValueRef phi = LLVMBuildPhi(cg->b, cg_type(cg, e->type), "case");
    LLVMAddIncoming(phi, vals, bbs, (unsigned)nin);
    return phi;
}

static LLVMValueRef emit_loop(Cg *cg, CExpr *e)
{
    CVar *state = e->u.loop.state;
    LLVMTypeRef st = cg_type(cg, state->type);
    LLVMValueRef slot = cg_alloca(cg, st, "state");
    LLVMBuildStore(cg->b, cg_take(cg, e->args[0]), slot);
    bool isfor = e->u.loop.kind == LOOP_FOR;
    LLVMValueRef n = isfor ? cg_atom(cg, e->args[1]) : NULL;
    LLVMValueRef islot = NULL;
    if (isfor) {
        islot = cg_alloca(cg, cg->t_i64, "i");
        LLVMBuildStore(cg->b, cg_i64(cg, 0), islot);
    }
    LLVMBasicBlockRef head = cg_block(cg, "loop"), body = cg_block(cg, "body"), exit = cg_block(cg, "endloop");
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, head);
    LLVMValueRef sv = LLVMBuildLoad2(cg->b, st, slot, state->name ? state->name : "");
    LLVMValueRef c, iv = NULL;
    cg_set_var(cg, state, sv);
    if (isfor) {
        iv = LLVMBuildLoad2(cg->b, cg->t_i64, islot, "");
        c = LLVMBuildICmp(cg->b, LLVMIntSLT, iv, n, "");
    } else {
        c = cg_emit_block(cg, e->u.loop.cond, NULL, 0);
    }
    LLVMBuildCondBr(cg->b, c, body, exit);
    LLVMPositionBuilderAtEnd(cg->b, body);
    cg_set_var(cg, state, sv);
    if (isfor && e->u.loop.ivar)
        cg_set_var(cg, e->u.loop.ivar, iv);
    LLVMValueRef nv = cg_emit_block(cg, e->u.loop.body, &state, 1);
    LLVMBuildStore(cg->b, nv, slot);
    if (isfor)
        LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, iv, cg_i64(cg, 1), ""), islot);
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, exit);
    return LLVMBuildLoad2(cg->b, st, slot, "");
}

LLVMValueRef cg_emit_expr(Cg *cg, CExpr *e)
{
    switch (e->kind) {
    case CE_ATOM:
        return cg_take(cg, e->args[0]);
    case CE_PRIM:
        return emit_prim(cg, e);
    case CE_CALL:
        return emit_call(cg, e->u.fun, e->args, e->nargs);
    case CE_APPLY:
        if (e->args[0]->kind == CA_FUN)
            return emit_call(cg, e->args[0]->u.fun, e->args + 1, e->nargs - 1);
        return apply_chain(cg, core_atom_type(e->args[0]), cg_atom(cg, e->args[0]), false, e->args + 1, e->nargs - 1);
    case CE_LAMBDA:
        return emit_lambda(cg, e);
    case CE_IF:
        return emit_if(cg, e);
    case CE_CASE:
        return emit_case(cg, e);
    case CE_LOOP:
        return emit_loop(cg, e);
    case CE_SOAC:
        return cg_soac(cg, e);
    case CE_DERIV:
        error_at(e->loc, "internal error: a derivative reached code generation unexpanded");
        cg->nerrors++;
        return LLVMGetPoison(cg_type(cg, e->type));
    }
    return NULL;
}
