/* codegen_mem.c — reference counting and ownership in the generated code:
 * retain/release helpers per type, the analysis of each block (uses, last
 * uses, loop fusion of producers into their consumers) and the emission of
 * blocks, which releases each owned variable after its last use.
 *
 * Arrays, strings, variant cells and closures are reference counted.
 * Ownership convention of the generated code:
 *   - function and lambda parameters, case payloads and captured variables
 *     are borrowed;
 *   - the value of every Core expression is owned (a new reference): results
 *     of primitives and calls, and projections retain what they extract;
 *   - storing a value into a tuple, record, closure, cell or array takes a
 *     reference (cg_take: moves an owned variable at its last use, otherwise
 *     retains);
 *   - a block releases each variable it owns right after the binding that
 *     uses it last (or after its definition when unused), except the one it
 *     returns, which moves into the block's result;
 *   - loop state is owned by the loop body, which consumes the old state and
 *     yields the new one; P_UPDATE and friends update an array in place when
 *     they own the only reference (dl_array_unique).
 * Releasing a DL_BYTES array whose elements hold references releases the
 * elements first when the array's count is 1 (libdlrt does not know them). */
#include "codegen.h"

#include <stdlib.h>
#include <string.h>

/* ========================================================================
 * reference counts
 * ======================================================================== */

/* Cells (variants, closures, string headers): i64 count at offset 0,
 * negative for immortal ones. */
static LLVMValueRef cell_retain_fn(Cg *cg)
{
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "dl.cell_retain");
    if (f)
        return f;
    CgSaved s;
    f = cg_helper_begin(cg, "dl.cell_retain", LLVMFunctionType(cg->t_void, &cg->t_ptr, 1, 0), &s);
    LLVMValueRef p = LLVMGetParam(f, 0);
    LLVMBasicBlockRef inc = cg_block(cg, "inc"), done = cg_block(cg, "done");
    LLVMValueRef rc = LLVMBuildLoad2(cg->b, cg->t_i64, p, "rc");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, rc, cg_i64(cg, 0), ""), inc, done);
    LLVMPositionBuilderAtEnd(cg->b, inc);
    LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, rc, cg_i64(cg, 1), ""), p);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    LLVMBuildRetVoid(cg->b);
    cg_helper_end(cg, &s);
    return f;
}

/* Decrements a cell's count; returns the i1 "now dead" in a new block
 * sequence: the caller frees when true. */
static LLVMValueRef cell_decrement(Cg *cg, LLVMValueRef p)
{
    LLVMBasicBlockRef dec = cg_block(cg, "dec"), out = cg_block(cg, "dec.out");
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMValueRef rc = LLVMBuildLoad2(cg->b, cg->t_i64, p, "rc");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, rc, cg_i64(cg, 0), ""), dec, out);
    LLVMPositionBuilderAtEnd(cg->b, dec);
    LLVMValueRef n = LLVMBuildSub(cg->b, rc, cg_i64(cg, 1), "");
    LLVMBuildStore(cg->b, n, p);
    LLVMValueRef dead = LLVMBuildICmp(cg->b, LLVMIntEQ, n, cg_i64(cg, 0), "");
    LLVMBuildBr(cg->b, out);
    LLVMPositionBuilderAtEnd(cg->b, out);
    LLVMValueRef phi = LLVMBuildPhi(cg->b, cg->t_i1, "dead");
    LLVMValueRef vals[2] = {LLVMConstInt(cg->t_i1, 0, 0), dead};
    LLVMBasicBlockRef bbs[2] = {here, dec};
    LLVMAddIncoming(phi, vals, bbs, 2);
    return phi;
}

static LLVMValueRef string_header(Cg *cg, LLVMValueRef s)
{
    return LLVMBuildGEP2(cg->b, cg->t_i8, s, (LLVMValueRef[]){cg_i64(cg, -8)}, 1, "");
}

static void release_body(Cg *cg, CgType *ti, LLVMValueRef v);

static void retain_body(Cg *cg, CgType *ti, LLVMValueRef v)
{
    Type *t = ti->type;
    switch (t->kind) {
    case TY_ARRAY:
        cg_call_rt(cg, "dl_array_retain", &v, 1);
        break;
    case TY_STRING: {
        LLVMValueRef h = string_header(cg, v);
        cg_call(cg, cell_retain_fn(cg), &h, 1);
        break;
    }
    case TY_FUNC:
        cg_call(cg, cell_retain_fn(cg), &v, 1);
        break;
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (cg_is_rc(cg, t->args[i]))
                cg_retain(cg, t->args[i], LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""));
        break;
    case TY_NAMED:
        if (t->decl->kind == TD_RECORD) {
            for (int i = 0; i < t->decl->nfields; i++) {
                Type *ft = cg_record_field(t, i);
                if (cg_is_rc(cg, ft))
                    cg_retain(cg, ft, LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""));
            }
        } else {
            cg_call(cg, cell_retain_fn(cg), &v, 1);
        }
        break;
    default:
        break;
    }
}

void cg_retain(Cg *cg, Type *t, LLVMValueRef v)
{
    CgType *ti = cg_tinfo(cg, t);
    if (!ti->rc)
        return;
    t = ti->type;
    if (t->kind == TY_ARRAY || t->kind == TY_STRING || t->kind == TY_FUNC || cg_is_variant(t)) {
        retain_body(cg, ti, v);
        return;
    }
    if (!ti->retain) {
        CgSaved s;
        LLVMTypeRef ft = LLVMFunctionType(cg->t_void, &ti->ll, 1, 0);
        ti->retain = cg_helper_begin(cg, arena_printf(dcc_arena, "dl.retain.%s", ti->key), ft, &s);
        retain_body(cg, ti, LLVMGetParam(ti->retain, 0));
        LLVMBuildRetVoid(cg->b);
        cg_helper_end(cg, &s);
    }
    cg_call(cg, ti->retain, &v, 1);
}

void cg_release(Cg *cg, Type *t, LLVMValueRef v)
{
    CgType *ti = cg_tinfo(cg, t);
    if (!ti->rc)
        return;
    t = ti->type;
    if ((t->kind == TY_ARRAY && !cg_is_rc(cg, t->elem)) || t->kind == TY_STRING) {
        release_body(cg, ti, v);
        return;
    }
    if (!ti->release) {
        CgSaved s;
        LLVMTypeRef ft = LLVMFunctionType(cg->t_void, &ti->ll, 1, 0);
        ti->release = cg_helper_begin(cg, arena_printf(dcc_arena, "dl.release.%s", ti->key), ft, &s);
        release_body(cg, ti, LLVMGetParam(ti->release, 0));
        LLVMBuildRetVoid(cg->b);
        cg_helper_end(cg, &s);
    }
    cg_call(cg, ti->release, &v, 1);
}

static void release_body(Cg *cg, CgType *ti, LLVMValueRef v)
{
    Type *t = ti->type;
    switch (t->kind) {
    case TY_ARRAY:
        if (cg_is_rc(cg, t->elem)) {
            /* the elements die with the last reference */
            LLVMBasicBlockRef last = cg_block(cg, "last"), rel = cg_block(cg, "rel");
            LLVMValueRef rc = LLVMBuildLoad2(cg->b, cg->t_i64, v, "rc");
            LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, rc, cg_i64(cg, 1), ""), last, rel);
            LLVMPositionBuilderAtEnd(cg->b, last);
            cg_array_release_elems(cg, t->elem, v);
            LLVMBuildBr(cg->b, rel);
            LLVMPositionBuilderAtEnd(cg->b, rel);
        }
        cg_call_rt(cg, "dl_array_release", &v, 1);
        break;
    case TY_STRING: {
        LLVMValueRef h = string_header(cg, v);
        LLVMValueRef dead = cell_decrement(cg, h);
        LLVMBasicBlockRef fr = cg_block(cg, "free"), done = cg_block(cg, "done");
        LLVMBuildCondBr(cg->b, dead, fr, done);
        LLVMPositionBuilderAtEnd(cg->b, fr);
        cg_free(cg, h);
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, done);
        break;
    }
    case TY_FUNC: {
        LLVMValueRef dead = cell_decrement(cg, v);
        LLVMBasicBlockRef fr = cg_block(cg, "drop"), done = cg_block(cg, "done");
        LLVMBuildCondBr(cg->b, dead, fr, done);
        LLVMPositionBuilderAtEnd(cg->b, fr);
        LLVMValueRef dp = LLVMBuildGEP2(cg->b, cg->t_i8, v, (LLVMValueRef[]){cg_i64(cg, 16)}, 1, "");
        LLVMValueRef drop = LLVMBuildLoad2(cg->b, cg->t_ptr, dp, "drop");
        LLVMBuildCall2(cg->b, LLVMFunctionType(cg->t_void, &cg->t_ptr, 1, 0), drop, &v, 1, "");
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, done);
        break;
    }
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (cg_is_rc(cg, t->args[i]))
                cg_release(cg, t->args[i], LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""));
        break;
    case TY_NAMED:
        if (t->decl->kind == TD_RECORD) {
            for (int i = 0; i < t->decl->nfields; i++) {
                Type *ft = cg_record_field(t, i);
                if (cg_is_rc(cg, ft))
                    cg_release(cg, ft, LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""));
            }
        } else {
            LLVMValueRef dead = cell_decrement(cg, v);
            LLVMBasicBlockRef fr = cg_block(cg, "drop"), done = cg_block(cg, "done");
            LLVMBuildCondBr(cg->b, dead, fr, done);
            LLVMPositionBuilderAtEnd(cg->b, fr);
            int ncons = t->decl->ncons;
            bool any = false;
            for (int c = 0; c < ncons; c++) {
                Type *at = cg_con_arg(t, c);
                any |= at && cg_is_rc(cg, at);
            }
            if (any) {
                LLVMValueRef tp = LLVMBuildGEP2(cg->b, cg->t_i8, v, (LLVMValueRef[]){cg_i64(cg, 8)}, 1, "");
                LLVMValueRef tag = LLVMBuildLoad2(cg->b, cg->t_i64, tp, "tag");
                LLVMBasicBlockRef fin = cg_block(cg, "free");
                LLVMValueRef sw = LLVMBuildSwitch(cg->b, tag, fin, (unsigned)ncons);
                for (int c = 0; c < ncons; c++) {
                    Type *at = cg_con_arg(t, c);
                    if (!at || !cg_is_rc(cg, at))
                        continue;
                    LLVMBasicBlockRef bb = cg_block(cg, "con");
                    LLVMAddCase(sw, cg_i64(cg, c), bb);
                    LLVMPositionBuilderAtEnd(cg->b, bb);
                    LLVMTypeRef cty = cg_variant_cell_type(cg, t, c);
                    LLVMValueRef pp = LLVMBuildStructGEP2(cg->b, cty, v, 2, "");
                    cg_release(cg, at, LLVMBuildLoad2(cg->b, cg_type(cg, at), pp, "payload"));
                    LLVMBuildBr(cg->b, fin);
                }
                LLVMPositionBuilderAtEnd(cg->b, fin);
            }
            cg_free(cg, v);
            LLVMBuildBr(cg->b, done);
            LLVMPositionBuilderAtEnd(cg->b, done);
        }
        break;
    default:
        break;
    }
}

/* ========================================================================
 * walking Core: uses and bindings of variables
 * ======================================================================== */

typedef struct Walk Walk;
struct Walk {
    Cg *cg;
    void (*use)(Walk *w, CVar *v);
    void (*bind)(Walk *w, CVar *v);
    int i;        /* block analysis: index of the binding walked */
    int serial;   /* block analysis: the block's serial */
    CVar *target; /* use counting */
    int count;
    Vec *out;     /* free variables */
};

static void walk_block(Walk *w, CBlock *b);

static void walk_atom(Walk *w, CAtom *a)
{
    if (a && a->kind == CA_VAR && w->use)
        w->use(w, a->u.var);
}

static void walk_bind(Walk *w, CVar *v)
{
    if (v && w->bind)
        w->bind(w, v);
}

static void walk_lambda(Walk *w, CLambda *l)
{
    for (int i = 0; i < l->nparams; i++)
        walk_bind(w, l->params[i]);
    walk_block(w, l->body);
}

static void walk_expr(Walk *w, CExpr *e)
{
    for (int i = 0; i < e->nargs; i++)
        walk_atom(w, e->args[i]);
    switch (e->kind) {
    case CE_LAMBDA:
        walk_lambda(w, e->u.lambda);
        break;
    case CE_IF:
        walk_block(w, e->u.if_.then_);
        walk_block(w, e->u.if_.else_);
        break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++) {
            walk_bind(w, e->u.case_.alts[i].payload);
            walk_block(w, e->u.case_.alts[i].body);
        }
        break;
    case CE_LOOP:
        walk_bind(w, e->u.loop.state);
        walk_bind(w, e->u.loop.ivar);
        if (e->u.loop.cond)
            walk_block(w, e->u.loop.cond);
        walk_block(w, e->u.loop.body);
        break;
    case CE_SOAC:
        walk_lambda(w, e->u.soac.fn);
        break;
    case CE_DERIV:
        walk_lambda(w, e->u.deriv.fn);
        break;
    default:
        break;
    }
}

static void walk_block(Walk *w, CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++) {
        walk_expr(w, b->binds[i].e);
        walk_bind(w, b->binds[i].var);
    }
    walk_atom(w, b->result);
}

static void var_room(Cg *cg, int id)
{
    if (id < cg->nvar)
        return;
    int n = cg->nvar ? cg->nvar : 1024;
    while (n <= id)
        n *= 2;
    cg->val = xrealloc(cg->val, sizeof *cg->val * (size_t)n);
    cg->owner = xrealloc(cg->owner, sizeof *cg->owner * (size_t)n);
    cg->last = xrealloc(cg->last, sizeof *cg->last * (size_t)n);
    cg->mark = xrealloc(cg->mark, sizeof *cg->mark * (size_t)n);
    cg->ucount = xrealloc(cg->ucount, sizeof *cg->ucount * (size_t)n);
    cg->direct = xrealloc(cg->direct, sizeof *cg->direct * (size_t)n);
    cg->defer = xrealloc(cg->defer, sizeof *cg->defer * (size_t)n);
    cg->stored = xrealloc(cg->stored, (size_t)n);
    cg->vstate = xrealloc(cg->vstate, (size_t)n);
    for (int i = cg->nvar; i < n; i++) {
        cg->val[i] = NULL;
        cg->owner[i] = cg->last[i] = cg->mark[i] = cg->ucount[i] = 0;
        cg->direct[i] = -1;
        cg->defer[i] = NULL;
        cg->stored[i] = 0;
        cg->vstate[i] = CG_NONE;
    }
    cg->nvar = n;
}

void cg_set_var(Cg *cg, CVar *v, LLVMValueRef x)
{
    var_room(cg, v->id);
    cg->val[v->id] = x;
    cg->owner[v->id] = 0;
    cg->vstate[v->id] = CG_NONE;
}

static void count_use(Walk *w, CVar *v)
{
    if (v == w->target)
        w->count++;
}

int cg_uses_in(CExpr *e, CVar *v)
{
    Walk w = {.use = count_use, .target = v};
    walk_expr(&w, e);
    return w.count;
}

/* Free variables of a lambda, in order of first use. */
static void fv_bind(Walk *w, CVar *v)
{
    var_room(w->cg, v->id);
    w->cg->mark[v->id] = -w->cg->stamp; /* bound inside */
}

static void fv_use(Walk *w, CVar *v)
{
    (void)w;
    (void)v;
}

static void fv_collect(Walk *w, CVar *v)
{
    var_room(w->cg, v->id);
    int *m = &w->cg->mark[v->id];
    if (*m == -w->cg->stamp || *m == w->cg->stamp)
        return;
    *m = w->cg->stamp;
    vec_push(w->out, v);
}

CVar **cg_free_vars(Cg *cg, CLambda *l, int *n)
{
    Vec out = {0};
    cg->stamp++;
    Walk w = {.cg = cg, .use = fv_use, .bind = fv_bind};
    walk_lambda(&w, l); /* first mark everything bound inside */
    w.use = fv_collect;
    w.bind = NULL;
    w.out = &out;
    walk_lambda(&w, l);
    *n = out.len;
    CVar **r = (CVar **)vec_freeze(&out);
    vec_free(&out);
    return r;
}

/* ========================================================================
 * blocks and ownership
 * ======================================================================== */

LLVMValueRef cg_atom(Cg *cg, CAtom *a)
{
    switch (a->kind) {
    case CA_VAR: {
        CVar *v = a->u.var;
        var_room(cg, v->id);
        if (!cg->val[v->id])
            fatal("internal error: codegen: variable %s_%d used before its definition",
                  v->name ? v->name : "", v->id);
        return cg->val[v->id];
    }
    case CA_INT:
        if (cg_norm(a->type)->kind == TY_BOOL)
            return LLVMConstInt(cg->t_i1, a->u.ival != 0, 0);
        if (cg_norm(a->type)->kind == TY_FLOAT)
            return LLVMConstReal(cg->t_f64, (double)a->u.ival);
        if (cg_norm(a->type)->kind == TY_F32)
            return LLVMConstReal(cg->t_f32, (double)a->u.ival);
        return cg_i64(cg, a->u.ival);
    case CA_BOOL:
        return LLVMConstInt(cg->t_i1, a->u.ival != 0, 0);
    case CA_FLOAT:
        return LLVMConstReal(cg_norm(a->type)->kind == TY_F32 ? cg->t_f32 : cg->t_f64, a->u.fval);
    case CA_UNIT:
        return cg_unit(cg);
    case CA_STRING:
        return cg_const_string(cg, a->u.sval);
    case CA_FUN:
        break;
    }
    return cg_fun_value(cg, a->u.fun);
}

/* Uses of v by e and by the producers fused into it. */
static int uses_fused(Cg *cg, CExpr *e, CVar *v)
{
    int n = cg_uses_in(e, v);
    for (int i = 0; i < e->nargs; i++) {
        CAtom *a = e->args[i];
        if (a->kind == CA_VAR && a->u.var->id < cg->nvar && cg->defer[a->u.var->id])
            n += uses_fused(cg, cg->defer[a->u.var->id], v);
    }
    return n;
}

LLVMValueRef cg_take(Cg *cg, CAtom *a)
{
    LLVMValueRef v = cg_atom(cg, a);
    if (!cg_is_rc(cg, core_atom_type(a)))
        return v;
    CgScope *s = cg->scope;
    if (a->kind == CA_VAR && s) {
        int id = a->u.var->id;
        if (cg->owner[id] == s->serial && cg->vstate[id] == CG_OWNED && cg->last[id] == s->cur &&
            s->cur_expr && uses_fused(cg, s->cur_expr, a->u.var) == 1) {
            cg->vstate[id] = CG_GONE;
            return v;
        }
    }
    if (a->kind != CA_STRING && a->kind != CA_FUN)
        cg_retain(cg, core_atom_type(a), v);
    return v;
}

static void count_block_use(Walk *w, CVar *v)
{
    var_room(w->cg, v->id);
    if (w->cg->owner[v->id] == w->serial)
        w->cg->ucount[v->id]++;
}

/* The last use is the latest position at which a use is emitted. A fused
 * producer's operands are read where its consumer is emitted (w->i is that
 * position), which may come after later bindings: positions are not
 * monotonic in binding order, so keep the maximum. */
static void last_use(Walk *w, CVar *v)
{
    var_room(w->cg, v->id);
    if (w->cg->owner[v->id] == w->serial && w->i > w->cg->last[v->id])
        w->cg->last[v->id] = w->i;
}


static void release_var(Cg *cg, CVar *v)
{
    if (cg->vstate[v->id] == CG_OWNED) {
        cg_release(cg, v->type, cg->val[v->id]);
        cg->vstate[v->id] = CG_GONE;
    }
}

/* A fused loop reads at most CG_FUSE_MAX_SOURCES arrays (the fixed tables of
 * codegen_fuse.c's GTree and codegen_ptx.c's kernels). Bottom-up over the
 * block, a binding whose fused tree would read more keeps its largest fused
 * producer as an array of its own, until it fits (e.g. a high-order jet of a
 * long elementwise expression). Returns whether it split any. */
#define CG_FUSE_MAX_SOURCES 24

static int fused_producer(Cg *cg, CBlock *b, int i, CAtom *a, const int *consumer)
{
    if (a->kind != CA_VAR || !cg->defer[a->u.var->id])
        return -1;
    for (int p = i - 1; p >= 0; p--)
        if (b->binds[p].var == a->u.var)
            return consumer[p] == i ? p : -1;
    return -1;
}

static bool cap_fused_sources(Cg *cg, CBlock *b, int *consumer)
{
    int n = b->nbinds;
    bool changed = false;
    int *cnt = xmalloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) {
        CExpr *e = b->binds[i].e;
        cnt[i] = 1;
        if (e->kind == CE_PRIM && e->u.prim.op == P_IOTA)
            continue;
        for (;;) {
            int total = 0, worst = -1;
            for (int k = 0; k < e->nargs; k++) {
                int p = fused_producer(cg, b, i, e->args[k], consumer);
                if (p >= 0) {
                    total += cnt[p];
                    if (worst < 0 || cnt[p] > cnt[worst])
                        worst = p;
                } else if (e->args[k]->kind == CA_VAR && cg_rank(core_atom_type(e->args[k])) > 0) {
                    total += 1;
                }
            }
            if (total <= CG_FUSE_MAX_SOURCES || worst < 0) {
                cnt[i] = total > 0 ? total : 1;
                break;
            }
            consumer[worst] = -1;
            cg->defer[b->binds[worst].var->id] = NULL;
            cg->stored[b->binds[worst].var->id] = 0;
            changed = true;
        }
    }
    free(cnt);
    return changed;
}

/* Loop fusion with a stored result: a producer used more than once may
 * still be computed inside the loop of its first consumer, which then also
 * stores it into an array of its own for the later uses (a loop with several
 * results). An optimiser step reads parameters, state and gradient once
 * instead of once per state variable. The first use must be a direct operand
 * of a consumer that could fuse it, every other use must come after the loop
 * that computes it (position eff[k] of the consumer chain), and nothing
 * with an effect may come in between. Producers are considered last first,
 * so the chain positions of later bindings are settled. */
static void fuse_stored(Cg *cg, CBlock *b, int *consumer, int *eff)
{
    for (int j = b->nbinds - 1; j >= 0; j--) {
        CVar *v = b->binds[j].var;
        CExpr *e = b->binds[j].e;
        if (consumer[j] >= 0 || cg->ucount[v->id] < 2 || !cg_storable(e))
            continue;
        int k = j + 1;
        while (k < b->nbinds && cg_uses_in(b->binds[k].e, v) == 0)
            k++;
        if (k == b->nbinds)
            continue;
        CExpr *c = b->binds[k].e;
        bool direct = false;
        for (int a = 0; a < c->nargs; a++)
            direct |= c->args[a]->kind == CA_VAR && c->args[a]->u.var == v;
        if (!direct || cg_uses_in(c, v) != 1 || !cg_fusable(e, c, v))
            continue;
        int at = eff[k];
        bool ok = true;
        for (int m = j + 1; m <= at && ok; m++) {
            CExpr *x = b->binds[m].e;
            if (m != k && cg_uses_in(x, v) > 0)
                ok = false;
            else if (m < at)
                ok = x->kind == CE_ATOM || consumer[m] >= 0 ||
                     (x->kind == CE_PRIM && !(core_prims[x->u.prim.op].flags & PRIM_EFFECT));
        }
        if (!ok)
            continue;
        cg->defer[v->id] = e;
        cg->stored[v->id] = 1;
        consumer[j] = k;
        for (int m = j; m >= 0; m--)
            eff[m] = consumer[m] >= 0 ? eff[consumer[m]] : m;
    }
}

LLVMValueRef cg_emit_block(Cg *cg, CBlock *b, CVar **pre, int npre)
{
    CgScope sc = {.up = cg->scope, .serial = ++cg->serial};
    for (int i = 0; i < npre; i++) {
        CVar *v = pre[i];
        var_room(cg, v->id);
        cg->owner[v->id] = sc.serial;
        cg->last[v->id] = -1;
        cg->vstate[v->id] = cg_is_rc(cg, v->type) ? CG_OWNED : CG_NONE;
    }
    for (int i = 0; i < b->nbinds; i++) {
        CVar *v = b->binds[i].var;
        var_room(cg, v->id);
        cg->owner[v->id] = sc.serial;
        cg->last[v->id] = -1;
        cg->vstate[v->id] = CG_NONE;
    }
    /* loop fusion: a producer used once, directly by a later binding that
     * can compute it per element, is emitted inside that binding's loop;
     * nothing with an effect may come between the two. */
    int *eff = xmalloc(sizeof(int) * (size_t)(b->nbinds + 1));
    int *consumer = xmalloc(sizeof(int) * (size_t)(b->nbinds + 1));
    {
        Walk cw = {.cg = cg, .use = count_block_use, .serial = sc.serial};
        for (int i = 0; i < b->nbinds; i++) {
            CVar *v = b->binds[i].var;
            cg->ucount[v->id] = 0;
            cg->direct[v->id] = -1;
            cg->defer[v->id] = NULL;
            cg->stored[v->id] = 0;
        }
        for (int i = 0; i < b->nbinds; i++) {
            walk_expr(&cw, b->binds[i].e);
            CExpr *e = b->binds[i].e;
            for (int k = 0; k < e->nargs; k++)
                if (e->args[k]->kind == CA_VAR && cg->owner[e->args[k]->u.var->id] == sc.serial)
                    cg->direct[e->args[k]->u.var->id] = i;
        }
        walk_atom(&cw, b->result);
        for (int j = b->nbinds - 1; j >= 0; j--) {
            CVar *v = b->binds[j].var;
            CExpr *e = b->binds[j].e;
            consumer[j] = -1;
            int k = cg->direct[v->id];
            if (cg->opt->opt_level <= 0 || cg->ucount[v->id] != 1 || k <= j || !cg_producer(e) ||
                !cg_fusable(e, b->binds[k].e, v))
                continue;
            bool ok = true;
            for (int m = j + 1; m < k && ok; m++) {
                CExpr *x = b->binds[m].e;
                ok = x->kind == CE_ATOM || cg->defer[b->binds[m].var->id] ||
                     (x->kind == CE_PRIM && !(core_prims[x->u.prim.op].flags & PRIM_EFFECT));
            }
            if (!ok)
                continue;
            cg->defer[v->id] = e;
            consumer[j] = k;
        }
        for (int j = b->nbinds - 1; j >= 0; j--)
            eff[j] = consumer[j] >= 0 ? eff[consumer[j]] : j;
        if (cg->opt->opt_level > 0 && !cg->ptx)
            fuse_stored(cg, b, consumer, eff);
        if (cap_fused_sources(cg, b, consumer))
            for (int j = b->nbinds - 1; j >= 0; j--)
                eff[j] = consumer[j] >= 0 ? eff[consumer[j]] : j;
    }
    Walk w = {.cg = cg, .use = last_use, .serial = sc.serial};
    for (int i = 0; i < b->nbinds; i++) {
        w.i = eff[i];
        walk_expr(&w, b->binds[i].e);
    }
    w.i = b->nbinds; /* used by the result: moved, never released here */
    walk_atom(&w, b->result);

    /* release lists: bucket[i] holds owned variables last used by binding i */
    Vec *bucket = xmalloc(sizeof(Vec) * (size_t)(b->nbinds + 1));
    memset(bucket, 0, sizeof(Vec) * (size_t)(b->nbinds + 1));
    for (int i = 0; i < npre; i++) {
        CVar *v = pre[i];
        if (cg->vstate[v->id] != CG_OWNED)
            continue;
        if (cg->last[v->id] < 0)
            release_var(cg, v); /* unused state */
        else if (cg->last[v->id] < b->nbinds)
            vec_push(&bucket[cg->last[v->id]], v);
    }
    for (int i = 0; i < b->nbinds; i++) {
        CVar *v = b->binds[i].var;
        if (cg->last[v->id] >= 0 && cg->last[v->id] < b->nbinds)
            vec_push(&bucket[cg->last[v->id]], v);
    }

    cg->scope = &sc;
    for (int i = 0; i < b->nbinds; i++) {
        CBind *bd = &b->binds[i];
        if (consumer[i] >= 0)
            continue; /* computed by its consumer */
        sc.cur = i;
        sc.cur_expr = bd->e;
        cg_set_loc(cg, bd->e->loc);
        LLVMValueRef v = cg_emit_expr(cg, bd->e);
        cg->val[bd->var->id] = v;
        if (cg_is_rc(cg, bd->var->type)) {
            cg->vstate[bd->var->id] = CG_OWNED;
            if (cg->last[bd->var->id] < 0)
                release_var(cg, bd->var);
        }
        for (int j = 0; j < i; j++) /* stored producers are stored by now */
            if (consumer[j] >= 0 && eff[j] == i && cg->stored[b->binds[j].var->id])
                fatal("internal error: codegen: %s_%d was not stored by its consumer's loop",
                      b->binds[j].var->name ? b->binds[j].var->name : "", b->binds[j].var->id);
        for (int k = 0; k < bucket[i].len; k++)
            release_var(cg, bucket[i].data[k]);
    }
    sc.cur = b->nbinds;
    sc.cur_expr = NULL;
    LLVMValueRef r;
    CAtom *res = b->result;
    if (res->kind == CA_VAR && cg->owner[res->u.var->id] == sc.serial &&
        cg->vstate[res->u.var->id] == CG_OWNED) {
        r = cg->val[res->u.var->id];
        cg->vstate[res->u.var->id] = CG_GONE; /* moved out */
    } else {
        r = cg_atom(cg, res);
        if (res->kind == CA_VAR)
            cg_retain(cg, core_atom_type(res), r);
    }
    for (int i = 0; i <= b->nbinds; i++)
        vec_free(&bucket[i]);
    free(bucket);
    free(eff);
    free(consumer);
    cg->scope = sc.up;
    return r;
}
