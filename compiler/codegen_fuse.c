/* codegen_fuse.c — elementwise primitives as fused loops.
 *
 * Elementwise primitives follow NumPy broadcasting
 * (numpy.org/doc/stable/user/basics.broadcasting.html): shapes are aligned
 * on the right, a dimension of 1 stretches. When the operands have one
 * shape (the common case) the loop is a single flat loop over contiguous
 * data that LLVM's loop vectoriser handles; otherwise an outer loop walks
 * the rows of the result and an inner loop its last axis, with a stride of
 * 0 along broadcast axes. Producers used once are computed inside their
 * consumer's loop (below), and a result may take the place of an operand
 * the loop consumes (in-place reuse). */
#include "codegen.h"

#include <string.h>

/* ------------------------------------------------------------ elementwise */

static const char *op_spell(Prim op)
{
    switch (op) {
    case P_ADD: return "+";
    case P_SUB: return "-";
    case P_MUL: return "*";
    case P_DIV: return "/";
    case P_MOD: return "%";
    case P_POW: return "^";
    case P_EQ: return "==";
    case P_NE: return "!=";
    case P_LT: return "<";
    case P_LE: return "<=";
    case P_GT: return ">";
    case P_GE: return ">=";
    default: return core_prims[op].name;
    }
}

/* ------------------------------------------------------------ fused loops
 *
 * Elementwise primitives, iota, and map over vectors with scalar results
 * are computed inside the loop of the operation that consumes them when the
 * consumer is their only use (cg_emit_block decides, see cg_fusable): an
 * expression tree (GNode) is evaluated per element of the result, reading
 * the materialised arrays at its leaves. The shape of the result is the
 * broadcast of the shapes of all leaves, which is the shape the unfused
 * operations would give (broadcasting composes), so `sum (x * y)`,
 * `0.5 * x + y` and `sum (map f (iota n))` are each a single loop. */

enum { G_LEAF, G_IOTA, G_SCALAR, G_PRIM, G_MAP };

typedef struct GNode GNode;
struct GNode {
    int kind;
    Type *elem;          /* the scalar type of its elements */
    int rank;            /* G_LEAF, G_IOTA: static rank of the source */
    LLVMValueRef val;    /* G_LEAF: the array; G_IOTA: n; G_SCALAR: the value */
    CExpr *e;            /* G_PRIM, G_MAP */
    CAtom *atom;         /* G_LEAF */
    GNode *kid[8];
    int nkid;
    /* loop state of sources */
    LLVMValueRef data, shape, off, stride[8];
    LLVMValueRef scope;  /* G_LEAF: alias scope list of its loads, or NULL */
    /* G_PRIM, G_MAP stored into an array of their own as well (the variable
     * has later uses, cg->stored): the variable, the array, its data and
     * shape, and the alias scope metadata of the stores */
    CVar *var;
    LLVMValueRef arr, own, noalias;
};

typedef struct GTree {
    GNode *src[32];
    int nsrc;
    GNode *st[32]; /* the stored nodes */
    int nst;
} GTree;

static bool pure_block(CBlock *b);

static bool pure_expr(CExpr *e)
{
    switch (e->kind) {
    case CE_ATOM:
    case CE_LAMBDA:
        return true;
    case CE_PRIM:
        return !(core_prims[e->u.prim.op].flags & PRIM_EFFECT);
    case CE_IF:
        return pure_block(e->u.if_.then_) && pure_block(e->u.if_.else_);
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            if (!pure_block(e->u.case_.alts[i].body))
                return false;
        return true;
    case CE_LOOP:
        return (!e->u.loop.cond || pure_block(e->u.loop.cond)) && pure_block(e->u.loop.body);
    case CE_SOAC:
        return pure_block(e->u.soac.fn->body);
    default:
        return false;
    }
}

static bool pure_block(CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++)
        if (!pure_expr(b->binds[i].e))
            return false;
    return true;
}

/* map over vectors giving a vector of scalars */
bool cg_scalar_map(CExpr *e)
{
    if (e->kind != CE_SOAC || e->u.soac.kind != SOAC_MAP)
        return false;
    Type *rt = cg_norm(e->type);
    if (rt->kind != TY_ARRAY || rt->rank != 1 || !cg_is_scalar(rt->elem) || e->nargs > 8)
        return false;
    for (int i = 0; i < e->nargs; i++) {
        Type *t = cg_norm(core_atom_type(e->args[i]));
        if (t->kind != TY_ARRAY || t->rank != 1 || !cg_is_scalar(t->elem))
            return false;
    }
    return true;
}

static bool elementwise_prim(CExpr *e)
{
    if (e->kind != CE_PRIM || !(core_prims[e->u.prim.op].flags & PRIM_ELEMENTWISE) || e->nargs > 8)
        return false;
    Type *rt = cg_norm(e->type);
    return rt->kind == TY_ARRAY && cg_is_scalar(rt->elem);
}

static bool reduction_prim(CExpr *e)
{
    if (e->kind != CE_PRIM)
        return false;
    Prim op = e->u.prim.op;
    return (op == P_SUM || op == P_PROD || op == P_MEAN || op == P_MAXIMUM || op == P_MINIMUM) &&
           cg_is_scalar(e->type) && cg_is_array(core_atom_type(e->args[0])) && cg_is_scalar(cg_elem(core_atom_type(e->args[0])));
}

/* reduce/fold over a vector of scalars */
bool cg_scalar_fold(CExpr *e)
{
    if (e->kind != CE_SOAC || (e->u.soac.kind != SOAC_REDUCE && e->u.soac.kind != SOAC_FOLD))
        return false;
    Type *t = cg_norm(core_atom_type(e->args[1]));
    return t->kind == TY_ARRAY && t->rank == 1 && cg_is_scalar(t->elem);
}

/* transpose of a float matrix, which a matrix product consuming it takes
 * as a transpose flag of xGEMM (codegen_array.c, matmul_prim). */
static bool float_transpose(CExpr *e)
{
    if (e->kind != CE_PRIM || e->u.prim.op != P_TRANSPOSE)
        return false;
    Type *t = cg_norm(core_atom_type(e->args[0]));
    return t->kind == TY_ARRAY && t->rank == 2 &&
           (cg_norm(t->elem)->kind == TY_FLOAT || cg_norm(t->elem)->kind == TY_F32);
}

bool cg_producer(CExpr *e)
{
    if (e->kind == CE_PRIM && e->u.prim.op == P_IOTA)
        return true;
    if (float_transpose(e))
        return true;
    if (elementwise_prim(e))
        return true;
    return cg_scalar_map(e) && pure_block(e->u.soac.fn->body);
}

bool cg_storable(CExpr *e)
{
    return elementwise_prim(e) || (cg_scalar_map(e) && pure_block(e->u.soac.fn->body));
}

/* May producer p (bound to v, used once) be computed inside consumer c? */
bool cg_fusable(CExpr *p, CExpr *c, CVar *v)
{
    if (float_transpose(p)) /* a matrix product with a vector or matrix */
        return c->kind == CE_PRIM && c->u.prim.op == P_MATMUL && cg_rank(c->type) >= 1 &&
               cg_is_array(core_atom_type(c->args[0])) && cg_is_array(core_atom_type(c->args[1])) &&
               !(c->args[0]->kind == CA_VAR && c->args[1]->kind == CA_VAR && c->args[0]->u.var == c->args[1]->u.var);
    int prank = cg_rank(p->type);
    bool source = p->kind == CE_PRIM && p->u.prim.op == P_IOTA;
    if (elementwise_prim(c))
        return prank == cg_rank(c->type);
    if (reduction_prim(c))
        return true;
    if (cg_scalar_map(c))
        return prank == 1 && (c->nargs == 1 || source);
    if (cg_scalar_fold(c))
        return prank == 1 && c->args[1]->kind == CA_VAR && c->args[1]->u.var == v &&
               !(c->args[0]->kind == CA_VAR && c->args[0]->u.var == v);
    return false;
}

static GNode *gexpr(Cg *cg, CExpr *e);

static GNode *gatom(Cg *cg, CAtom *a)
{
    if (a->kind == CA_VAR && a->u.var->id < cg->nvar && cg->defer[a->u.var->id]) {
        GNode *g = gexpr(cg, cg->defer[a->u.var->id]);
        if (cg->stored[a->u.var->id] && g->kind != G_IOTA)
            g->var = a->u.var;
        return g;
    }
    GNode *g = NEW(GNode);
    Type *t = cg_norm(core_atom_type(a));
    g->val = cg_atom(cg, a);
    g->atom = a;
    if (t->kind == TY_ARRAY) {
        g->kind = G_LEAF;
        g->elem = t->elem;
        g->rank = t->rank;
    } else {
        g->kind = G_SCALAR;
        g->elem = t;
    }
    return g;
}

static GNode *gexpr(Cg *cg, CExpr *e)
{
    GNode *g = NEW(GNode);
    g->e = e;
    if (e->kind == CE_PRIM && e->u.prim.op == P_IOTA) {
        g->kind = G_IOTA;
        g->elem = cg_elem(e->type);
        g->rank = 1;
        g->val = cg_atom(cg, e->args[0]);
        cg_check_dim(cg, g->val, e->loc, "iota");
        return g;
    }
    g->kind = e->kind == CE_SOAC ? G_MAP : G_PRIM;
    g->elem = cg_elem(e->type);
    g->nkid = e->nargs;
    for (int i = 0; i < e->nargs; i++)
        g->kid[i] = gatom(cg, e->args[i]);
    return g;
}

static void gsources(GNode *g, GTree *t)
{
    if (g->var) {
        if (t->nst < 32)
            t->st[t->nst++] = g;
        else
            fatal("internal error: codegen: too many stored results in one fused loop");
    }
    if (g->kind == G_LEAF || g->kind == G_IOTA) {
        if (t->nsrc < 32)
            t->src[t->nsrc++] = g;
        else
            fatal("internal error: codegen: too many arrays in one fused loop");
        return;
    }
    for (int i = 0; i < g->nkid; i++)
        gsources(g->kid[i], t);
}

/* map2/map3 need operands of one length (checked before the loop). */
static void gcheck_maps(Cg *cg, GNode *g)
{
    for (int i = 0; i < g->nkid; i++)
        gcheck_maps(cg, g->kid[i]);
    if (g->kind != G_MAP || g->nkid < 2)
        return;
    GNode *a = g->kid[0];
    for (int i = 1; i < g->nkid; i++) {
        GNode *b = g->kid[i];
        if ((a->kind != G_LEAF && a->kind != G_IOTA) || (b->kind != G_LEAF && b->kind != G_IOTA))
            continue; /* cg_fusable keeps other operands out */
        LLVMValueRef la = cg_tbaa(cg, LLVMBuildLoad2(cg->b, cg->t_i64, a->shape, ""), CG_TBAA_HEADER);
        LLVMValueRef lb = cg_tbaa(cg, LLVMBuildLoad2(cg->b, cg->t_i64, b->shape, ""), CG_TBAA_HEADER);
        LLVMBasicBlockRef bad = cg_block(cg, "map.fail"), good = cg_block(cg, "map.ok");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, la, lb, ""), good, bad);
        LLVMPositionBuilderAtEnd(cg->b, bad);
        const char *op = g->nkid == 2 ? "map2" : g->nkid == 3 ? "map3" : "map";
        cg_call_rt(cg, "dl_shape_error", (LLVMValueRef[]){cg_srcloc(cg, g->e->loc), cg_cstr(cg, op), cg_i32(cg, 1),
                                                          a->shape, cg_i32(cg, 1), b->shape}, 6);
        LLVMBuildUnreachable(cg->b);
        LLVMPositionBuilderAtEnd(cg->b, good);
    }
}

/* Tags the last load (or store) emitted in the current block with
 * metadata kind = md. */
static void tag_last(Cg *cg, LLVMValueRef (*is)(LLVMValueRef), const char *kind, LLVMValueRef md)
{
    LLVMValueRef inst = LLVMGetLastInstruction(LLVMGetInsertBlock(cg->b));
    while (inst && !is(inst))
        inst = LLVMGetPreviousInstruction(inst);
    if (inst)
        LLVMSetMetadata(inst, LLVMGetMDKindIDInContext(cg->ctx, kind, (unsigned)strlen(kind)), md);
}

/* The value v of a stored node also goes to its own array. */
static LLVMValueRef gstore(Cg *cg, GNode *g, LLVMValueRef v)
{
    if (!g->var || !g->arr)
        return v;
    cg_elem_store(cg, g->elem, g->data, g->off, v);
    if (g->own) {
        tag_last(cg, LLVMIsAStoreInst, "alias.scope", g->own);
        tag_last(cg, LLVMIsAStoreInst, "noalias", g->noalias);
    }
    return v;
}

static LLVMValueRef geval(Cg *cg, GNode *g)
{
    switch (g->kind) {
    case G_LEAF: {
        LLVMValueRef v = cg_elem_load(cg, g->elem, g->data, g->off);
        if (g->scope)
            tag_last(cg, LLVMIsALoadInst, "alias.scope", g->scope);
        return v;
    }
    case G_IOTA: {
        Type *it = NEW(Type);
        it->kind = TY_INT;
        return cg_convert(cg, g->off, it, g->elem);
    }
    case G_SCALAR:
        return g->val;
    case G_PRIM: {
        LLVMValueRef v[8];
        Type *t[8];
        for (int i = 0; i < g->nkid; i++) {
            v[i] = geval(cg, g->kid[i]);
            t[i] = g->kid[i]->elem;
        }
        return gstore(cg, g, cg_scalar_prim(cg, g->e->u.prim.op, g->e->u.prim.imm, g->elem, t, v, g->nkid, g->e->loc));
    }
    case G_MAP: {
        CLambda *fn = g->e->u.soac.fn;
        for (int i = 0; i < g->nkid; i++)
            cg_set_var(cg, fn->params[i], geval(cg, g->kid[i]));
        return gstore(cg, g, cg_emit_block(cg, fn->body, NULL, 0));
    }
    }
    return NULL;
}

/* What happens to each element: stored into a new array, or folded. */
typedef struct GSink GSink;
struct GSink {
    void (*begin)(Cg *cg, GSink *s, int rank, LLVMValueRef *dims);
    void (*put)(Cg *cg, GSink *s, LLVMValueRef i, LLVMValueRef v);
    Type *elem;
    LLVMValueRef out, data, acc, count;
    Prim op;
    CExpr *e;
    GNode *reuse;          /* store: an operand whose block may hold the result */
    LLVMValueRef reused;   /* i1: it does */
    LLVMValueRef scope;    /* store: alias scope list its stores do not alias */
    LLVMValueRef own;      /* store: the scope list of its stores */
};

/* The elementwise operation whose operands a shape error is about: the
 * first in the tree (what the unfused code would have reported). */
static GNode *first_prim(GNode *g)
{
    if (g->kind == G_PRIM && g->e->nargs > 1)
        return g;
    for (int i = 0; i < g->nkid; i++) {
        GNode *p = first_prim(g->kid[i]);
        if (p)
            return p;
    }
    return NULL;
}

static bool is_var(GNode *g, CVar *v)
{
    return v && g->kind == G_LEAF && g->atom->kind == CA_VAR && g->atom->u.var == v;
}

static bool has_map(GNode *g)
{
    if (g->kind == G_MAP)
        return true;
    for (int i = 0; i < g->nkid; i++)
        if (has_map(g->kid[i]))
            return true;
    return false;
}

static void store_put(Cg *cg, GSink *s, LLVMValueRef i, LLVMValueRef v);

/* The loops of fused_loop over the sources t of the tree, ending at done:
 * flat when every source has the result's shape (at run time unless full,
 * the only source), else over the rows of the result with broadcasting. */
static void fused_loops(Cg *cg, GNode *root, GTree *tp, int R, LLVMValueRef *dims, LLVMValueRef total,
                        bool maybe_flat, GNode *full, LLVMValueRef same, GSink *sink, LLVMBasicBlockRef done)
{
    GTree t = *tp;
    if (maybe_flat) {
        LLVMBasicBlockRef flat = cg_block(cg, "fused.flat"), general = cg_block(cg, "fused.bcast");
        if (full)
            LLVMBuildBr(cg->b, flat);
        else
            LLVMBuildCondBr(cg->b, same, flat, general);
        LLVMPositionBuilderAtEnd(cg->b, flat);
        CgLoop l;
        LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), total);
        for (int k = 0; k < t.nsrc; k++)
            t.src[k]->off = i;
        for (int k = 0; k < t.nst; k++)
            t.st[k]->off = i;
        sink->put(cg, sink, i, geval(cg, root));
        cg_loop_end(cg, &l);
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, general);
        if (full) {
            LLVMBuildUnreachable(cg->b);
            return;
        }
    }
    /* broadcasting: rows of the result, stride 0 along stretched axes (also
     * into the arrays of stored nodes, which have their sources' shape) */
    GNode *at[64];
    int nall = 0;
    for (int k = 0; k < t.nsrc; k++)
        at[nall++] = t.src[k];
    for (int k = 0; k < t.nst; k++)
        if (t.st[k]->arr)
            at[nall++] = t.st[k];
    for (int k = 0; k < nall; k++) {
        GNode *s = at[k];
        LLVMValueRef nat = cg_i64(cg, 1);
        for (int j = R - 1; j >= 0; j--) {
            int ax = j - (R - s->rank);
            if (ax < 0) {
                s->stride[j] = cg_i64(cg, 0);
                continue;
            }
            LLVMValueRef d = cg_tbaa(cg, LLVMBuildLoad2(cg->b, cg->t_i64,
                                                        LLVMBuildGEP2(cg->b, cg->t_i64, s->shape, (LLVMValueRef[]){cg_i64(cg, ax)}, 1, ""), ""),
                                     CG_TBAA_HEADER);
            s->stride[j] = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, d, cg_i64(cg, 1), ""), cg_i64(cg, 0), nat, "");
            nat = LLVMBuildMul(cg->b, nat, d, "");
        }
    }
    LLVMValueRef last = dims[R - 1];
    LLVMValueRef rows = cg_i64(cg, 1);
    for (int j = 0; j < R - 1; j++)
        rows = LLVMBuildMul(cg->b, rows, dims[j], "");
    CgLoop lr;
    LLVMValueRef r = cg_loop_begin(cg, &lr, cg_i64(cg, 0), rows);
    LLVMValueRef base[64];
    for (int k = 0; k < nall; k++)
        base[k] = cg_i64(cg, 0);
    LLVMValueRef rem = r;
    for (int j = R - 2; j >= 0; j--) {
        LLVMValueRef idx = LLVMBuildURem(cg->b, rem, dims[j], "");
        rem = LLVMBuildUDiv(cg->b, rem, dims[j], "");
        for (int k = 0; k < nall; k++)
            base[k] = LLVMBuildAdd(cg->b, base[k], LLVMBuildMul(cg->b, idx, at[k]->stride[j], ""), "");
    }
    LLVMValueRef obase = LLVMBuildMul(cg->b, r, last, "");
    CgLoop li;
    LLVMValueRef i = cg_loop_begin(cg, &li, cg_i64(cg, 0), last);
    for (int k = 0; k < nall; k++)
        at[k]->off = LLVMBuildAdd(cg->b, base[k], LLVMBuildMul(cg->b, i, at[k]->stride[R - 1], ""), "");
    sink->put(cg, sink, LLVMBuildAdd(cg->b, obase, i, ""), geval(cg, root));
    cg_loop_end(cg, &li);
    cg_loop_end(cg, &lr);
    LLVMBuildBr(cg->b, done);
}

static void ptx_offload(Cg *cg, GNode *root, GTree *t, GSink *s, int R, LLVMValueRef *dims, LLVMValueRef n,
                        LLVMValueRef flat, LLVMBasicBlockRef done);

/* The broadcast shape (rank R) of the sources t into dims; the source that
 * has it when it is the only one, else NULL. */
static GNode *tree_dims(Cg *cg, GTree *t, int R, const char *opname, Loc loc, LLVMValueRef *dims)
{
    GNode *full = NULL; /* a source of rank R, when only one source */
    if (t->nsrc == 1 && t->src[0]->rank == R)
        full = t->src[0];
    if (full) {
        for (int j = 0; j < R; j++)
            dims[j] = cg_tbaa(cg, LLVMBuildLoad2(cg->b, cg->t_i64,
                                                 LLVMBuildGEP2(cg->b, cg->t_i64, full->shape, (LLVMValueRef[]){cg_i64(cg, j)}, 1, ""), "dim"),
                              CG_TBAA_HEADER);
    } else {
        LLVMValueRef buf[2] = {cg_alloca(cg, LLVMArrayType(cg->t_i64, 8), "bshape"),
                               cg_alloca(cg, LLVMArrayType(cg->t_i64, 8), "bshape")};
        LLVMValueRef cur = t->src[0]->shape;
        LLVMValueRef crank = cg_i32(cg, t->src[0]->rank);
        int which = 0;
        for (int k = 1; k < t->nsrc; k++) {
            crank = cg_call_rt(cg, "dl_broadcast_shapes",
                               (LLVMValueRef[]){crank, cur, cg_i32(cg, t->src[k]->rank), t->src[k]->shape,
                                                cg_cstr(cg, opname), buf[which], cg_srcloc(cg, loc)}, 7);
            cur = buf[which];
            which ^= 1;
        }
        int r0 = t->src[0]->rank;
        for (int j = 0; j < R; j++) {
            if (t->nsrc > 1)
                dims[j] = LLVMBuildLoad2(cg->b, cg->t_i64, LLVMBuildGEP2(cg->b, cg->t_i64, cur, (LLVMValueRef[]){cg_i64(cg, j)}, 1, ""), "");
            else if (j - (R - r0) >= 0)
                dims[j] = LLVMBuildLoad2(cg->b, cg->t_i64,
                                         LLVMBuildGEP2(cg->b, cg->t_i64, cur, (LLVMValueRef[]){cg_i64(cg, j - (R - r0))}, 1, ""), "");
            else
                dims[j] = cg_i64(cg, 1);
        }
    }
    return full;
}

/* A new alias scope, declared here. */
static LLVMMetadataRef new_scope(Cg *cg)
{
    static unsigned serial;
    char name[48];
    int len = snprintf(name, sizeof name, "dcc.fused.%u", serial++);
    LLVMMetadataRef dom_s = LLVMMDStringInContext2(cg->ctx, "dcc.fused", 9);
    LLVMMetadataRef dom = LLVMMDNodeInContext2(cg->ctx, &dom_s, 1);
    LLVMMetadataRef ops[2] = {LLVMMDStringInContext2(cg->ctx, name, (size_t)len), dom};
    LLVMMetadataRef sc = LLVMMDNodeInContext2(cg->ctx, ops, 2);
    LLVMValueRef list = LLVMMetadataAsValue(cg->ctx, LLVMMDNodeInContext2(cg->ctx, &sc, 1));
    cg_intrinsic(cg, "llvm.experimental.noalias.scope.decl", NULL, 0, &list, 1);
    return sc;
}

/* The list of scope i alone (own), or of all the others. */
static LLVMValueRef scope_list(Cg *cg, LLVMMetadataRef *sc, int n, int i, bool own)
{
    LLVMMetadataRef l[40];
    int m = 0;
    for (int k = 0; k < n; k++)
        if ((k == i) == own)
            l[m++] = sc[k];
    return LLVMMetadataAsValue(cg->ctx, LLVMMDNodeInContext2(cg->ctx, l, (size_t)m));
}

/* Runs the loop over the broadcast shape of the tree's sources (rank R). */
static void fused_loop(Cg *cg, GNode *root, int R, Loc loc, const char *opname, GSink *sink)
{
    GNode *fp = first_prim(root);
    if (fp) {
        opname = op_spell(fp->e->u.prim.op);
        loc = fp->e->loc;
    }
    GTree t = {0};
    gsources(root, &t);
    for (int k = 0; k < t.nsrc; k++) {
        GNode *s = t.src[k];
        if (s->kind == G_LEAF) {
            s->shape = cg_shape_ptr(cg, s->val);
            /* ptx: made current on the CPU path by cg_ptx_loop */
            s->data = cg->ptx ? cg_arr_field(cg, s->val, CG_ARR_DATA) : cg_arr_data(cg, s->val);
        } else {
            s->shape = cg_alloca(cg, LLVMArrayType(cg->t_i64, 8), "iota.shape");
            LLVMBuildStore(cg->b, s->val, s->shape);
        }
    }
    gcheck_maps(cg, root);
    /* the shape of the result */
    LLVMValueRef dims[8];
    GNode *full = tree_dims(cg, &t, R, opname, loc, dims);
    sink->begin(cg, sink, R, dims);
    /* stored nodes: an array of the shape of their own sources */
    for (int k = 0; k < t.nst; k++) {
        GNode *g = t.st[k];
        GTree sub = {0};
        gsources(g, &sub);
        if (cg_rank(g->e->type) != R || sub.nsrc == 0) /* cg_fusable keeps the ranks */
            fatal("internal error: codegen: a stored result of another rank in a fused loop");
        LLVMValueRef sd[8];
        GNode *fp = first_prim(g);
        tree_dims(cg, &sub, R, fp ? op_spell(fp->e->u.prim.op) : opname, fp ? fp->e->loc : loc, sd);
        g->arr = cg_arr_new(cg, g->elem, R, sd);
        g->data = cg_arr_data(cg, g->arr);
        g->shape = cg_shape_ptr(cg, g->arr);
        g->rank = R;
    }
    LLVMValueRef total = cg_i64(cg, 1);
    for (int j = 0; j < R; j++)
        total = LLVMBuildMul(cg->b, total, dims[j], "");

    /* flat when every source has the full shape */
    bool maybe_flat = true;
    for (int k = 0; k < t.nsrc; k++)
        maybe_flat &= t.src[k]->rank == R;
    LLVMValueRef same = LLVMConstInt(cg->t_i1, maybe_flat, 0);
    if (maybe_flat && !full)
        for (int k = 0; k < t.nsrc; k++)
            for (int j = 0; j < R; j++) {
                LLVMValueRef d = cg_tbaa(cg, LLVMBuildLoad2(cg->b, cg->t_i64,
                                                            LLVMBuildGEP2(cg->b, cg->t_i64, t.src[k]->shape, (LLVMValueRef[]){cg_i64(cg, j)}, 1, ""), ""),
                                         CG_TBAA_HEADER);
                same = LLVMBuildAnd(cg->b, same, LLVMBuildICmp(cg->b, LLVMIntEQ, d, dims[j], ""), "");
            }
    /* Alias scopes (LLVM's scoped noalias metadata): the leaves' loads are
     * in one scope, each array written in a scope of its own, and no store
     * aliases another scope. The result is a fresh block, or the block of
     * the reused operand, which only that operand's leaves (left out of the
     * leaves' scope) read, at the index being written; stored nodes write
     * fresh blocks. The scopes are declared (noalias.scope.decl) so that
     * copies of this code made by unrolling or inlining get their own. */
    CVar *rv = sink->reuse ? sink->reuse->atom->u.var : NULL;
    if (sink->put == store_put || t.nst > 0) {
        int ns = 0;
        LLVMMetadataRef sc[40];
        sc[ns++] = new_scope(cg); /* the leaves */
        int main_sc = sink->put == store_put ? ns++ : -1;
        if (main_sc >= 0)
            sc[main_sc] = new_scope(cg);
        int first_st = ns;
        for (int k = 0; k < t.nst; k++)
            sc[ns++] = new_scope(cg);
        LLVMValueRef leaves = LLVMMetadataAsValue(cg->ctx, LLVMMDNodeInContext2(cg->ctx, sc, 1));
        for (int k = 0; k < t.nsrc; k++)
            if (t.src[k]->kind == G_LEAF && !is_var(t.src[k], rv))
                t.src[k]->scope = leaves;
        if (main_sc >= 0) {
            sink->own = scope_list(cg, sc, ns, main_sc, true);
            sink->scope = scope_list(cg, sc, ns, main_sc, false);
        }
        for (int k = 0; k < t.nst; k++) {
            t.st[k]->own = scope_list(cg, sc, ns, first_st + k, true);
            t.st[k]->noalias = scope_list(cg, sc, ns, first_st + k, false);
        }
    }
    LLVMBasicBlockRef done = cg_block(cg, "fused.done");
    if (cg->ptx) /* ptx: a GPU kernel when eligible, the loops below otherwise */
        ptx_offload(cg, root, &t, sink, R, dims, total, same, done);
    /* In place, the flat loop reads the reused operand through the result's
     * pointer, so that LLVM sees each element read before it is written
     * at the same index and vectorises without a run-time overlap check
     * (which an operand overwritten in place would always fail). That loop
     * is a version of its own, taken when the block is reused and the shapes
     * are the same; the loops after it serve every other case. Lambda bodies
     * are emitted once, so a tree with a map keeps one version. */
    if (rv && maybe_flat && !has_map(root)) {
        LLVMBasicBlockRef inplace = cg_block(cg, "fused.inplace"), other = cg_block(cg, "fused.other");
        LLVMBuildCondBr(cg->b, LLVMBuildAnd(cg->b, sink->reused, same, ""), inplace, other);
        LLVMPositionBuilderAtEnd(cg->b, inplace);
        LLVMValueRef saved[32];
        for (int k = 0; k < t.nsrc; k++) {
            saved[k] = t.src[k]->data;
            if (is_var(t.src[k], rv)) {
                t.src[k]->data = sink->data;
                t.src[k]->scope = sink->own;
            }
        }
        fused_loops(cg, root, &t, R, dims, total, true, full ? full : root, same, sink, done); /* flat only */
        for (int k = 0; k < t.nsrc; k++) { /* the other loops may run in place too */
            t.src[k]->data = saved[k];
            if (is_var(t.src[k], rv))
                t.src[k]->scope = NULL;
        }
        LLVMPositionBuilderAtEnd(cg->b, other);
    }
    fused_loops(cg, root, &t, R, dims, total, maybe_flat, full, same, sink, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    for (int k = 0; k < t.nst; k++)
        if (t.st[k]->var && t.st[k]->arr) { /* later uses read the array */
            int id = t.st[k]->var->id;
            cg->val[id] = t.st[k]->arr;
            cg->vstate[id] = CG_OWNED;
            cg->defer[id] = NULL;
            cg->stored[id] = 0;
        }
}

static void store_begin(Cg *cg, GSink *s, int rank, LLVMValueRef *dims)
{
    if (!s->reuse) {
        s->out = cg_arr_new(cg, s->elem, rank, dims);
        s->data = cg_arr_data(cg, s->out);
        return;
    }
    /* in place when we hold the only reference and the shape is the result's */
    LLVMValueRef a = s->reuse->val;
    LLVMValueRef ok = LLVMBuildICmp(cg->b, LLVMIntEQ, cg_arr_field(cg, a, CG_ARR_RC), cg_i64(cg, 1), "");
    for (int j = 0; j < rank; j++)
        ok = LLVMBuildAnd(cg->b, ok, LLVMBuildICmp(cg->b, LLVMIntEQ, cg_arr_dimk(cg, a, j), dims[j], ""), "");
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef mk = cg_block(cg, "fresh"), done = cg_block(cg, "out");
    LLVMBuildCondBr(cg->b, ok, done, mk);
    LLVMPositionBuilderAtEnd(cg->b, mk);
    LLVMValueRef n = cg_arr_new(cg, s->elem, rank, dims);
    LLVMBasicBlockRef mkend = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    s->out = LLVMBuildPhi(cg->b, cg->t_ptr, "out");
    LLVMAddIncoming(s->out, (LLVMValueRef[]){a, n}, (LLVMBasicBlockRef[]){here, mkend}, 2);
    s->reused = ok;
    /* ptx: a reused operand is a source, made current by cg_ptx_loop */
    s->data = cg->ptx ? cg_arr_field(cg, s->out, CG_ARR_DATA) : cg_arr_data(cg, s->out);
}

static int count_leaves(GNode *g, CVar *v)
{
    int n = g->kind == G_LEAF && g->atom->kind == CA_VAR && g->atom->u.var == v;
    for (int i = 0; i < g->nkid; i++)
        n += count_leaves(g->kid[i], v);
    return n;
}

static int count_uses(GNode *g, CVar *v)
{
    int n = (g->kind == G_PRIM || g->kind == G_MAP) && g->e ? cg_uses_in(g->e, v) : 0;
    for (int i = 0; i < g->nkid; i++)
        n += count_uses(g->kid[i], v);
    return n;
}

/* An operand array the result may overwrite: owned by the block, used for
 * the last time here, read only elementwise (never by a lambda), of the
 * result's element type and rank. It is consumed (the loop releases it
 * when it is not reused). */
static GNode *reuse_candidate(Cg *cg, GNode *root, GNode *g, Type *elem, int R)
{
    if (g->kind == G_LEAF && g->atom->kind == CA_VAR && g->rank == R && cg_dtype(g->elem) == cg_dtype(elem) &&
        cg_dtype(elem) != 5 && cg->scope) {
        CVar *v = g->atom->u.var;
        CgScope *sc = cg->scope;
        if (cg->owner[v->id] == sc->serial && cg->vstate[v->id] == CG_OWNED && cg->last[v->id] == sc->cur &&
            count_leaves(root, v) == count_uses(root, v)) {
            cg->vstate[v->id] = CG_GONE;
            return g;
        }
    }
    for (int i = 0; i < g->nkid; i++) {
        GNode *c = reuse_candidate(cg, root, g->kid[i], elem, R);
        if (c)
            return c;
    }
    return NULL;
}

static void store_put(Cg *cg, GSink *s, LLVMValueRef i, LLVMValueRef v)
{
    cg_elem_store(cg, s->elem, s->data, i, v);
    if (s->scope) {
        tag_last(cg, LLVMIsAStoreInst, "alias.scope", s->own);
        tag_last(cg, LLVMIsAStoreInst, "noalias", s->scope);
    }
}

/* An elementwise primitive, a map of scalars: a new array. */
LLVMValueRef cg_fused_store(Cg *cg, CExpr *e, const char *opname)
{
    GNode *root = gexpr(cg, e);
    GSink s = {.begin = store_begin, .put = store_put, .elem = cg_elem(e->type)};
    if (cg->opt->opt_level > 0)
        s.reuse = reuse_candidate(cg, root, root, s.elem, cg_rank(e->type));
    fused_loop(cg, root, cg_rank(e->type), e->loc, opname, &s);
    if (s.reuse) { /* the consumed operand, when its block was not reused */
        LLVMBasicBlockRef rel = cg_block(cg, "release"), done = cg_block(cg, "released");
        LLVMBuildCondBr(cg->b, s.reused, done, rel);
        LLVMPositionBuilderAtEnd(cg->b, rel);
        cg_call_rt(cg, "dl_array_release", &s.reuse->val, 1);
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, done);
    }
    return s.out;
}

static void reduce_begin(Cg *cg, GSink *s, int rank, LLVMValueRef *dims)
{
    LLVMValueRef n = cg_i64(cg, 1);
    for (int j = 0; j < rank; j++)
        n = LLVMBuildMul(cg->b, n, dims[j], "");
    s->count = n;
    Type *rt = s->elem;
    LLVMTypeRef t = cg_type(cg, rt);
    bool fl = cg_norm(rt)->kind == TY_FLOAT || cg_norm(rt)->kind == TY_F32;
    s->acc = cg_alloca(cg, t, "acc");
    LLVMValueRef init;
    switch (s->op) {
    case P_PROD: init = cg_one_of(cg, rt); break;
    case P_MAXIMUM:
    case P_MINIMUM:
        cg_check(cg, LLVMBuildICmp(cg->b, LLVMIntSGT, n, cg_i64(cg, 0), ""), s->e->loc,
              s->op == P_MAXIMUM ? "maximum of an empty array" : "minimum of an empty array", NULL, 0);
        if (fl)
            init = LLVMConstReal(t, s->op == P_MAXIMUM ? -__builtin_inf() : __builtin_inf());
        else if (cg_norm(rt)->kind == TY_BOOL)
            init = LLVMConstInt(t, s->op == P_MINIMUM, 0);
        else
            init = cg_i64(cg, s->op == P_MAXIMUM ? INT64_MIN : INT64_MAX);
        break;
    default: init = cg_zero_of(cg, rt); break;
    }
    LLVMBuildStore(cg->b, init, s->acc);
}

static void reduce_put(Cg *cg, GSink *s, LLVMValueRef i, LLVMValueRef v)
{
    (void)i;
    Type *rt = s->elem;
    LLVMTypeRef t = cg_type(cg, rt);
    LLVMValueRef cur = LLVMBuildLoad2(cg->b, t, s->acc, "");
    Prim op = s->op == P_PROD ? P_MUL : s->op == P_MAXIMUM ? P_MAX : s->op == P_MINIMUM ? P_MIN : P_ADD;
    Type *tys[2] = {rt, rt};
    LLVMValueRef r;
    if (op == P_MAX || op == P_MIN) { /* a NaN, once in the accumulator, stays */
        r = cg_scalar_prim(cg, op, 0, rt, tys, (LLVMValueRef[]){v, cur}, 2, s->e->loc);
        if (cg_norm(rt)->kind == TY_FLOAT || cg_norm(rt)->kind == TY_F32)
            r = LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealUNO, cur, cur, ""), cur, r, "");
    } else {
        r = cg_scalar_prim(cg, op, 0, rt, tys, (LLVMValueRef[]){cur, v}, 2, s->e->loc);
    }
    LLVMBuildStore(cg->b, r, s->acc);
}

/* sum, prod, mean, maximum, minimum of all elements (of a fused tree). */
LLVMValueRef cg_reduce_all(Cg *cg, CExpr *e)
{
    GNode *root = gatom(cg, e->args[0]);
    Type *rt = cg_norm(e->type);
    GSink s = {.begin = reduce_begin, .put = reduce_put, .elem = rt, .op = e->u.prim.op, .e = e};
    if (!cg_is_scalar(root->elem) || cg_norm(root->elem)->kind != rt->kind) {
        /* e.g. mean of ints as a float: convert each element */
        GNode *c = NEW(GNode);
        c->kind = G_PRIM;
        CExpr *ce = core_prim(rt->kind == TY_F32 ? P_TO_F32 : rt->kind == TY_INT ? P_TO_INT : P_TO_FLOAT, rt, e->loc,
                              NULL, 0, 0);
        c->e = ce;
        c->elem = rt;
        c->kid[0] = root;
        c->nkid = 1;
        root = c;
    }
    int R = root->kind == G_LEAF ? root->rank : cg_rank(core_atom_type(e->args[0]));
    fused_loop(cg, root, R, e->loc, core_prims[e->u.prim.op].name, &s);
    LLVMValueRef r = LLVMBuildLoad2(cg->b, cg_type(cg, rt), s.acc, "");
    if (e->u.prim.op == P_MEAN) {
        Type *it = NEW(Type);
        it->kind = TY_INT;
        Type *tys[2] = {rt, rt};
        r = cg_scalar_prim(cg, P_DIV, 0, rt, tys, (LLVMValueRef[]){r, cg_convert(cg, s.count, it, rt)}, 2, e->loc);
    }
    return r;
}

static void fold_begin(Cg *cg, GSink *s, int rank, LLVMValueRef *dims)
{
    (void)rank;
    (void)dims;
    CExpr *e = s->e;
    s->acc = cg_alloca(cg, cg_type(cg, e->u.soac.fn->params[0]->type), "acc");
    LLVMBuildStore(cg->b, cg_take(cg, e->args[0]), s->acc);
}

static void fold_put(Cg *cg, GSink *s, LLVMValueRef i, LLVMValueRef v)
{
    (void)i;
    CLambda *fn = s->e->u.soac.fn;
    Type *acct = fn->params[0]->type;
    LLVMValueRef old = LLVMBuildLoad2(cg->b, cg_type(cg, acct), s->acc, "");
    cg_set_var(cg, fn->params[0], old);
    cg_set_var(cg, fn->params[1], v);
    LLVMValueRef r = cg_emit_block(cg, fn->body, NULL, 0);
    cg_release(cg, acct, old);
    LLVMBuildStore(cg->b, r, s->acc);
}

/* reduce/fold over a vector of scalars, the vector possibly fused. */
LLVMValueRef cg_fused_fold(Cg *cg, CExpr *e)
{
    GNode *root = gatom(cg, e->args[1]);
    GSink s = {.begin = fold_begin, .put = fold_put, .e = e};
    fused_loop(cg, root, 1, e->loc, e->u.soac.kind == SOAC_REDUCE ? "reduce" : "fold", &s);
    return LLVMBuildLoad2(cg->b, cg_type(cg, e->u.soac.fn->params[0]->type), s.acc, "");
}

LLVMValueRef cg_elementwise(Cg *cg, CExpr *e) { return cg_fused_store(cg, e, op_spell(e->u.prim.op)); }

LLVMValueRef cg_array_equal(Cg *cg, Type *t, LLVMValueRef a, LLVMValueRef b)
{
    t = cg_norm(t);
    if (cg_dtype(t->elem) != 5)
        return cg_call_rt(cg, "dl_array_equal", (LLVMValueRef[]){a, b}, 2);
    LLVMValueRef slot = cg_alloca(cg, cg->t_i1, "eq");
    LLVMValueRef same = LLVMConstInt(cg->t_i1, 1, 0);
    for (int k = 0; k < t->rank; k++)
        same = LLVMBuildAnd(cg->b, same, LLVMBuildICmp(cg->b, LLVMIntEQ, cg_arr_dimk(cg, a, k), cg_arr_dimk(cg, b, k), ""), "");
    LLVMBuildStore(cg->b, same, slot);
    LLVMBasicBlockRef cmp = cg_block(cg, "cmp"), done = cg_block(cg, "cmpdone");
    LLVMBuildCondBr(cg->b, same, cmp, done);
    LLVMPositionBuilderAtEnd(cg->b, cmp);
    LLVMValueRef da = cg_arr_data(cg, a), db = cg_arr_data(cg, b);
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), cg_arr_size(cg, a));
    LLVMValueRef eq = cg_equal(cg, t->elem, cg_elem_load(cg, t->elem, da, i), cg_elem_load(cg, t->elem, db, i));
    LLVMBasicBlockRef ne = cg_block(cg, "ne"), next = cg_block(cg, "next");
    LLVMBuildCondBr(cg->b, eq, next, ne);
    LLVMPositionBuilderAtEnd(cg->b, ne);
    LLVMBuildStore(cg->b, LLVMConstInt(cg->t_i1, 0, 0), slot);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, next);
    cg_loop_end(cg, &l);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    return LLVMBuildLoad2(cg->b, cg->t_i1, slot, "");
}

/* ------------------------------------------------------------ ptx
 *
 * The loop of a tree as a GPU kernel (codegen_ptx.c builds it from the
 * tree's element at given source offsets, the shapes and the sink). */

static LLVMValueRef ptx_elem_at(Cg *cg, void *tree, LLVMValueRef *data, LLVMValueRef *off)
{
    GTree t = {0};
    gsources(tree, &t);
    LLVMValueRef keep[32];
    for (int k = 0; k < t.nsrc; k++) {
        keep[k] = t.src[k]->data;
        t.src[k]->data = data[k];
        t.src[k]->off = off[k];
    }
    LLVMValueRef v = geval(cg, tree);
    for (int k = 0; k < t.nsrc; k++)
        t.src[k]->data = keep[k];
    return v;
}

static void ptx_offload(Cg *cg, GNode *root, GTree *t, GSink *s, int R, LLVMValueRef *dims, LLVMValueRef n,
                        LLVMValueRef flat, LLVMBasicBlockRef done)
{
    CgPtxLoop l = {.nsrc = t->nsrc, .elem = s->elem, .n = n, .flat = flat, .rank = R, .done = done,
                   .elem_at = ptx_elem_at, .tree = root};
    for (int j = 0; j < R; j++)
        l.dims[j] = dims[j];
    for (int k = 0; k < t->nsrc; k++) {
        l.arr[k] = t->src[k]->kind == G_LEAF ? t->src[k]->val : NULL;
        l.srank[k] = t->src[k]->rank;
        l.shape[k] = t->src[k]->shape;
    }
    if (s->put == store_put) {
        l.kind = CG_PTX_STORE;
        l.out = s->out;
    } else if (s->put == reduce_put) {
        l.kind = CG_PTX_REDUCE;
        l.acc = s->acc;
        l.op = s->op;
    } else if (s->put == fold_put && s->e->u.soac.kind == SOAC_REDUCE) {
        l.kind = CG_PTX_FOLD;
        l.acc = s->acc;
        l.fn = s->e->u.soac.fn;
        l.elem = l.fn->params[0]->type;
    }
    cg_ptx_loop(cg, &l);
}
