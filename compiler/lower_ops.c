/* lower_ops.c — lowering of operators and built-ins (see lower.h).
 *
 * Arithmetic on tuples and records is the vector-space arithmetic of
 * LANGUAGE.md §3, componentwise and recursive; `==` on products, variants
 * and arrays of them is structural (variants through eq_<type> helper
 * CFuns); a saturated built-in becomes a primitive, a SOAC or a DERIV with
 * its function argument as an inline lambda. */
#include "lower.h"

#include <stdlib.h>
#include <string.h>

static CAtom *eq_struct(Lower *L, CAtom *x, CAtom *y, Type *t, CBlock *b, Loc loc);

/* ---------------------------------------------------------------- products */

/* Element type of an array (rank r -> rank r-1, or the element). */
static Type *row_type(Type *t)
{
    t = type_resolve(t);
    if (t->kind != TY_ARRAY)
        return t;
    return t->rank == 1 ? type_resolve(t->elem) : type_resolve(type_array(t->elem, t->rank - 1));
}

static bool is_product(Type *t)
{
    t = type_resolve(t);
    return t->kind == TY_TUPLE || (t->kind == TY_NAMED && t->decl->kind == TD_RECORD);
}

static int product_size(Type *t)
{
    t = type_resolve(t);
    return t->kind == TY_TUPLE ? t->nargs : t->decl->nfields;
}

static Type *product_comp(Type *t, int i)
{
    t = type_resolve(t);
    return t->kind == TY_TUPLE ? core_type_proj(t, i) : core_type_field(t, i);
}

static CAtom *emit_product(CBlock *b, Type *t, CAtom **parts, int n, Loc loc)
{
    t = type_resolve(t);
    return core_emit_prim(b, t->kind == TY_TUPLE ? "tup" : "rec",
                          t->kind == TY_TUPLE ? P_TUPLE : P_RECORD, t, loc, parts, n, 0);
}

/* ---------------------------------------------------------------- operators */

static Prim arith_prim(OpKind op)
{
    switch (op) {
    case OP_ADD: return P_ADD;
    case OP_SUB: return P_SUB;
    case OP_MUL: return P_MUL;
    case OP_DIV: return P_DIV;
    case OP_MOD: return P_MOD;
    case OP_POW: return P_POW;
    case OP_MATMUL: return P_MATMUL;
    case OP_EQ: return P_EQ;
    case OP_NE: return P_NE;
    case OP_LT: return P_LT;
    case OP_LE: return P_LE;
    case OP_GT: return P_GT;
    case OP_GE: return P_GE;
    default: return P_ADD;
    }
}

/* The result type of an elementwise op on (non-product) operands:
 * NumPy broadcasting gives the operand of higher rank. */
static Type *bcast_type(Type *a, Type *b, bool cmp)
{
    a = type_resolve(a);
    b = type_resolve(b);
    Type *r = a;
    if (b->kind == TY_ARRAY && (a->kind != TY_ARRAY || b->rank > a->rank))
        r = b;
    if (!cmp)
        return r;
    return r->kind == TY_ARRAY ? type_array(type_bool(), r->rank) : type_bool();
}

/* Vector-space arithmetic (LANGUAGE.md §3): on tuples and records
 * componentwise and recursively; a scalar or array operand meets every
 * component of a product. rt is the result type when known (NULL: from
 * the operands). */
static CAtom *arith(Lower *L, OpKind op, CAtom *x, CAtom *y, Type *rt, CBlock *b, Loc loc)
{
    Type *xt = type_resolve(core_atom_type(x));
    Type *yt = type_resolve(core_atom_type(y));
    if (is_product(xt) || is_product(yt)) {
        Type *pt = is_product(xt) ? xt : yt;
        if (!rt || !is_product(rt))
            rt = pt;
        int n = product_size(pt);
        CAtom **parts = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++) {
            CAtom *xi = is_product(xt) ? emit_comp(b, x, xt, i, loc) : x;
            CAtom *yi = is_product(yt) ? emit_comp(b, y, yt, i, loc) : y;
            parts[i] = arith(L, op, xi, yi, product_comp(rt, i), b, loc);
        }
        return emit_product(b, rt, parts, n, loc);
    }
    if (op == OP_ADD && xt->kind == TY_STRING) {
        CAtom *args[2] = {x, y};
        return core_emit_prim(b, "s", P_STR_CONCAT, type_string(), loc, args, 2, 0);
    }
    if (!rt)
        rt = bcast_type(xt, yt, false);
    CAtom *args[2] = {x, y};
    return core_emit_prim(b, "t", arith_prim(op), rt, loc, args, 2, 0);
}

CAtom *lower_negate(Lower *L, CAtom *x, CBlock *b, Loc loc)
{
    Type *t = type_resolve(core_atom_type(x));
    if (is_product(t)) {
        int n = product_size(t);
        CAtom **parts = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            parts[i] = lower_negate(L, emit_comp(b, x, t, i, loc), b, loc);
        return emit_product(b, t, parts, n, loc);
    }
    return core_emit_prim(b, "t", P_NEG, t, loc, &x, 1, 0);
}

/* `a && b` is `if a then b else false`; `a || b` is `if a then true else b`.
 * The right operand is a block of its own: it is evaluated only if needed. */
CAtom *lower_short_circuit(Lower *L, Expr *e, CBlock *b)
{
    CAtom *c = lower_expr(L, e->u.op.l, b);
    CBlock *rb = core_block_new();
    rb->result = lower_expr(L, e->u.op.r, rb);
    CBlock *kb = block_of(core_atom_bool(e->u.op.op == OP_OR));
    CExpr *ife = e->u.op.op == OP_AND ? mk_if(c, type_bool(), e->loc, rb, kb)
                                      : mk_if(c, type_bool(), e->loc, kb, rb);
    return bind_expr(b, "b", ife);
}

/* ---- structural equality ----------------------------------------------- */

static bool is_eq_leaf(Type *t)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_INT: case TY_FLOAT: case TY_F32: case TY_BOOL: case TY_STRING: case TY_KEY:
        return true;
    default:
        return false;
    }
}

/* x == y on tuples/records: the components left to right, stopping at the
 * first difference. */
static CAtom *eq_components(Lower *L, CAtom *x, CAtom *y, Type *t, int i, int n, CBlock *b,
                            Loc loc)
{
    if (i == n)
        return core_atom_bool(true);
    CAtom *xi = emit_comp(b, x, t, i, loc);
    CAtom *yi = emit_comp(b, y, t, i, loc);
    CAtom *c = eq_struct(L, xi, yi, product_comp(t, i), b, loc);
    if (i + 1 == n)
        return c;
    CBlock *rest = core_block_new();
    rest->result = eq_components(L, x, y, t, i + 1, n, rest, loc);
    return bind_expr(b, "eq", mk_if(c, type_bool(), loc, rest, block_of(core_atom_bool(false))));
}

/* eq_<type>(x, y) for a variant type: equal tags, then equal payloads. */
static CFun *eq_helper(Lower *L, Type *t, Loc loc)
{
    for (int i = 0; i < L->eq_helpers.len; i++) {
        CFun *f = L->eq_helpers.data[i];
        if (core_type_equal(f->params[0]->type, t))
            return f;
    }
    TypeDecl *d = type_resolve(t)->decl;
    CFun *f = core_fun_new(lower_unique_name(L, arena_printf(dcc_arena, "eq_%s", lower_fun_base(d->name))),
                           "==", loc);
    f->is_helper = true;
    f->nparams = 2;
    f->params = NEWN(CVar *, 2);
    f->params[0] = core_var("x", t, loc);
    f->params[1] = core_var("y", t, loc);
    f->ret = type_bool();
    vec_push(&L->eq_helpers, f);
    core_program_add(L->prog, f);
    CBlock *b = core_block_new();
    f->body = b;
    CAtom *x = core_atom_var(f->params[0]), *y = core_atom_var(f->params[1]);
    CAtom *tags[2];
    tags[0] = core_emit_prim(b, "tx", P_TAG, type_int(), loc, &x, 1, 0);
    tags[1] = core_emit_prim(b, "ty", P_TAG, type_int(), loc, &y, 1, 0);
    CAtom *same = core_emit_prim(b, "same", P_EQ, type_bool(), loc, tags, 2, 0);
    /* case x of C_i p => eq(p, payload_i y) */
    CExpr *ce = core_expr(CE_CASE, type_bool(), loc);
    ce->nargs = 1;
    ce->args = NEWN(CAtom *, 1);
    ce->args[0] = x;
    ce->u.case_.alts = NEWN(CAlt, d->ncons + 1);
    bool any_nullary = false;
    for (int c = 0; c < d->ncons; c++) {
        Type *arg = core_type_con_arg(t, c);
        if (!arg) {
            any_nullary = true;
            continue;
        }
        CAlt *a = &ce->u.case_.alts[ce->u.case_.nalts++];
        a->con = c;
        a->payload = core_var("px", arg, loc);
        a->body = core_block_new();
        CAtom *py = core_emit_prim(a->body, "py", P_PAYLOAD, arg, loc, &y, 1, c);
        a->body->result = eq_struct(L, core_atom_var(a->payload), py, arg, a->body, loc);
    }
    if (any_nullary) {
        CAlt *a = &ce->u.case_.alts[ce->u.case_.nalts++];
        a->con = -1;
        a->body = block_of(core_atom_bool(true));
    }
    CBlock *th = core_block_new();
    if (ce->u.case_.nalts == 1 && ce->u.case_.alts[0].con == -1)
        th->result = core_atom_bool(true);
    else
        th->result = bind_expr(th, "eq", ce);
    b->result = bind_expr(b, "eq", mk_if(same, type_bool(), loc, th, block_of(core_atom_bool(false))));
    return f;
}

static CAtom *eq_struct(Lower *L, CAtom *x, CAtom *y, Type *t, CBlock *b, Loc loc)
{
    t = type_resolve(t);
    if (t->kind == TY_UNIT)
        return core_atom_bool(true);
    if (is_eq_leaf(t)) {
        CAtom *args[2] = {x, y};
        return core_emit_prim(b, "eq", P_EQ, type_bool(), loc, args, 2, 0);
    }
    if (is_product(t))
        return eq_components(L, x, y, t, 0, product_size(t), b, loc);
    if (t->kind == TY_NAMED && t->decl->kind == TD_VARIANT) {
        CAtom *args[2] = {x, y};
        return bind_expr(b, "eq", mk_call(eq_helper(L, t, loc), type_bool(), loc, args, 2));
    }
    if (t->kind == TY_ARRAY) {
        Type *el = type_resolve(t->elem);
        CAtom *args[2] = {x, y};
        if (is_eq_leaf(el) || el->kind == TY_UNIT)
            return core_emit_prim(b, "eq", P_EQ, type_bool(), loc, args, 2, 0);
        /* arrays of products or variants: same shape, then all rows equal */
        CAtom *sh[2];
        sh[0] = core_emit_prim(b, "sx", P_SHAPE, type_array(type_int(), 1), loc, &x, 1, 0);
        sh[1] = core_emit_prim(b, "sy", P_SHAPE, type_array(type_int(), 1), loc, &y, 1, 0);
        CAtom *same = core_emit_prim(b, "same", P_EQ, type_bool(), loc, sh, 2, 0);
        CBlock *th = core_block_new();
        Type *rt = row_type(t);
        CVar *px = core_var("x", rt, loc), *py = core_var("y", rt, loc);
        CBlock *mb = core_block_new();
        mb->result = eq_struct(L, core_atom_var(px), core_atom_var(py), rt, mb, loc);
        CExpr *m = core_expr(CE_SOAC, type_array(type_bool(), 1), loc);
        CVar *ps[2] = {px, py};
        m->u.soac.kind = SOAC_MAP;
        m->u.soac.fn = core_lambda(ps, 2, mb, type_func(rt, type_func(rt, type_bool())), loc);
        m->nargs = 2;
        m->args = NEWN(CAtom *, 2);
        m->args[0] = x;
        m->args[1] = y;
        CAtom *eqs = bind_expr(th, "eqs", m);
        CVar *pa = core_var("p", type_bool(), loc), *pb = core_var("q", type_bool(), loc);
        CBlock *rb = core_block_new();
        rb->result = bind_expr(rb, "and", mk_if(core_atom_var(pa), type_bool(), loc,
                                                 block_of(core_atom_var(pb)),
                                                 block_of(core_atom_bool(false))));
        CExpr *r = core_expr(CE_SOAC, type_bool(), loc);
        CVar *qs[2] = {pa, pb};
        r->u.soac.kind = SOAC_REDUCE;
        r->u.soac.fn = core_lambda(qs, 2, rb, type_func(type_bool(), type_func(type_bool(), type_bool())), loc);
        r->nargs = 2;
        r->args = NEWN(CAtom *, 2);
        r->args[0] = core_atom_bool(true);
        r->args[1] = eqs;
        th->result = bind_expr(th, "all", r);
        return bind_expr(b, "eq", mk_if(same, type_bool(), loc, th, block_of(core_atom_bool(false))));
    }
    /* functions are not comparable (the checker rejects them) */
    return emit_error(b, type_bool(), loc, "cannot compare functions");
}

/* A binary operator on two evaluated operands. rt: the result type. */
CAtom *lower_binop(Lower *L, OpKind op, CAtom *x, CAtom *y, Type *rt, CBlock *b, Loc loc)
{
    switch (op) {
    case OP_EQ:
    case OP_NE: {
        Type *t = type_resolve(core_atom_type(x));
        CAtom *eq;
        if (is_eq_leaf(t) || (t->kind == TY_ARRAY && is_eq_leaf(t->elem))) {
            CAtom *args[2] = {x, y};
            return core_emit_prim(b, op == OP_EQ ? "eq" : "ne", op == OP_EQ ? P_EQ : P_NE,
                                  type_bool(), loc, args, 2, 0);
        }
        eq = eq_struct(L, x, y, t, b, loc);
        if (op == OP_EQ)
            return eq;
        return core_emit_prim(b, "ne", P_NOT, type_bool(), loc, &eq, 1, 0);
    }
    case OP_LT: case OP_LE: case OP_GT: case OP_GE: {
        CAtom *args[2] = {x, y};
        return core_emit_prim(b, "c", arith_prim(op), rt, loc, args, 2, 0);
    }
    case OP_AND: case OP_OR: {
        /* operands already evaluated (operator section): no short circuit
         * is observable */
        CExpr *ife = op == OP_AND ? mk_if(x, type_bool(), loc, block_of(y), block_of(core_atom_bool(false)))
                                  : mk_if(x, type_bool(), loc, block_of(core_atom_bool(true)), block_of(y));
        return bind_expr(b, "b", ife);
    }
    case OP_MATMUL: {
        CAtom *args[2] = {x, y};
        return core_emit_prim(b, "mm", P_MATMUL, rt, loc, args, 2, 0);
    }
    default:
        return arith(L, op, x, y, rt, b, loc);
    }
}

/* ---------------------------------------------------------------- built-ins */

/* Appends the dimensions of a shape (an int, or a tuple of ints). */
static int shape_dims(CAtom *s, CAtom **out, int at, CBlock *b, Loc loc)
{
    Type *t = type_resolve(core_atom_type(s));
    if (t->kind == TY_TUPLE) {
        for (int i = 0; i < t->nargs; i++)
            out[at++] = emit_comp(b, s, t, i, loc);
        return at;
    }
    out[at++] = s;
    return at;
}

static CLambda *fn_lambda(Lower *L, Val f, Type **ptypes, int np, Type *ft, Loc loc)
{
    CVar **ps = NEWN(CVar *, np);
    Val *args = NEWN(Val, np);
    for (int i = 0; i < np; i++) {
        ps[i] = core_var(i == 0 ? "x" : "y", ptypes[i], loc);
        args[i] = val_atom(core_atom_var(ps[i]));
    }
    CBlock *body = core_block_new();
    Fn *fn = f.fn;
    if (!fn) {
        fn = fn_new(FN_CLOSURE, core_atom_type(f.atom), 1, loc);
        fn->clo = f.atom;
    }
    body->result = lower_to_atom(L, lower_apply(L, fn, args, np, body, loc), body, loc);
    return core_lambda(ps, np, body, ft, loc);
}

static Type *val_type(Val v) { return v.atom ? core_atom_type(v.atom) : v.fn->type; }

static Prim builtin_prim(Builtin id)
{
    switch (id) {
    case B_EXP: return P_EXP;
    case B_LOG: return P_LOG;
    case B_LOG1P: return P_LOG1P;
    case B_EXPM1: return P_EXPM1;
    case B_SQRT: return P_SQRT;
    case B_SIN: return P_SIN;
    case B_COS: return P_COS;
    case B_TAN: return P_TAN;
    case B_TANH: return P_TANH;
    case B_ABS: return P_ABS;
    case B_SIGMOID: return P_SIGMOID;
    case B_SOFTPLUS: return P_SOFTPLUS;
    case B_RELU: return P_RELU;
    case B_FLOOR: return P_FLOOR;
    case B_CEIL: return P_CEIL;
    case B_ATAN2: return P_ATAN2;
    case B_POW: return P_POW;
    case B_MIN: return P_MIN;
    case B_MAX: return P_MAX;
    case B_TO_FLOAT: return P_TO_FLOAT;
    case B_TO_INT: return P_TO_INT;
    case B_TO_F32: return P_TO_F32;
    case B_LENGTH: return P_LENGTH;
    case B_IOTA: return P_IOTA;
    case B_REPLICATE: return P_REPLICATE;
    case B_ZEROS: return P_ZEROS;
    case B_ONES: return P_ONES;
    case B_ZEROS_LIKE: return P_ZEROS_LIKE;
    case B_ZIP: return P_ZIP;
    case B_UNZIP: return P_UNZIP;
    case B_SUM: return P_SUM;
    case B_PROD: return P_PROD;
    case B_MEAN: return P_MEAN;
    case B_MAXIMUM: return P_MAXIMUM;
    case B_MINIMUM: return P_MINIMUM;
    case B_ARGMAX: return P_ARGMAX;
    case B_DOT: return P_DOT;
    case B_TRANSPOSE: return P_TRANSPOSE;
    case B_RESHAPE: return P_RESHAPE;
    case B_CONCAT: return P_CONCAT;
    case B_REVERSE: return P_REVERSE;
    case B_SLICE: return P_SLICE;
    case B_TAKE: return P_TAKE;
    case B_DROP: return P_DROP;
    case B_ONE_HOT: return P_ONE_HOT;
    case B_SHAPE: return P_SHAPE;
    case B_SOFTMAX: return P_SOFTMAX;
    case B_LOGSUMEXP: return P_LOGSUMEXP;
    case B_DET: return P_DET;
    case B_INV: return P_INV;
    case B_SOLVE: return P_SOLVE;
    case B_CHOLESKY: return P_CHOLESKY;
    case B_KEY: return P_KEY;
    case B_SPLIT: return P_SPLIT;
    case B_UNIFORM: return P_UNIFORM;
    case B_NORMAL: return P_NORMAL;
    case B_PERMUTATION: return P_PERMUTATION;
    case B_PRINT: return P_PRINT;
    case B_PRINTLN: return P_PRINTLN;
    case B_READ_CSV: return P_READ_CSV;
    case B_READ_NPY: return P_READ_NPY;
    case B_WRITE_NPY: return P_WRITE_NPY;
    case B_READ_IDX: return P_READ_IDX;
    case B_PROGRESS: return P_PROGRESS;
    case B_ARGS: return P_ARGS;
    case B_SHOW: return P_SHOW;
    case B_STR_CONCAT: return P_STR_CONCAT;
    case B_ERROR: return P_ERROR;
    case B_CLOCK: return P_CLOCK;
    case B_WRITE_TEXT: return P_WRITE_TEXT;
    case B_SELECT: return P_SELECT;
    case B_UPDATE_AT: return P_UPDATE;
    case B_FILL: return P_FILL;
    case B_SUM_AXIS0: return P_SUM_AXIS0;
    case B_DIMS: return P_SHAPE;
    case B_LT_EACH: return P_LT;
    case B_LE_EACH: return P_LE;
    case B_GT_EACH: return P_GT;
    case B_GE_EACH: return P_GE;
    case B_EQ_EACH: return P_EQ;
    case B_NE_EACH: return P_NE;
    default: return P__COUNT;
    }
}

/* The unary elementwise math built-ins (exp, sqrt, abs, ...) on a tuple or
 * record act componentwise and recursively, like the vector-space
 * arithmetic of LANGUAGE.md §3: sqrt (a, b) = (sqrt a, sqrt b). */
static CAtom *unary_math(Prim p, const char *name, CAtom *x, CBlock *b, Loc loc)
{
    Type *t = type_resolve(core_atom_type(x));
    if (is_product(t)) {
        int n = product_size(t);
        CAtom **parts = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            parts[i] = unary_math(p, name, emit_comp(b, x, t, i, loc), b, loc);
        return emit_product(b, t, parts, n, loc);
    }
    return core_emit_prim(b, name, p, t, loc, &x, 1, 0);
}

/* normal_like k x: a sample of N(0, I) with the structure of x. A float is
 * `normal k`, an array `normal k (shape x)`; a tuple or record splits the
 * key once per component, drawing component i from the first child and
 * going on with the second (the order fwdgrad's directions use). */
static CAtom *normal_like(CAtom *k, CAtom *x, CBlock *b, Loc loc)
{
    Type *t = type_resolve(core_atom_type(x));
    if (is_product(t)) {
        int n = product_size(t);
        CAtom **parts = NEWN(CAtom *, n > 0 ? n : 1);
        Type *kt = type_rng_key();
        for (int i = 0; i < n; i++) {
            CAtom *ks = core_emit_prim(b, "ks", P_SPLIT, type_tuple2(kt, kt), loc, &k, 1, 0);
            CAtom *ki = core_emit_prim(b, "k", P_PROJ, kt, loc, &ks, 1, 0);
            k = core_emit_prim(b, "k", P_PROJ, kt, loc, &ks, 1, 1);
            parts[i] = normal_like(ki, emit_comp(b, x, t, i, loc), b, loc);
        }
        return emit_product(b, t, parts, n, loc);
    }
    if (t->kind != TY_ARRAY)
        return core_emit_prim(b, "z", P_NORMAL, t, loc, &k, 1, 0);
    CAtom *ops[9]; /* the key and at most 8 dimensions (DL_MAX_RANK) */
    int r = t->rank < 8 ? t->rank : 8;
    ops[0] = k;
    CAtom *sh = core_emit_prim(b, "sh", P_SHAPE, type_array(type_int(), 1), loc, &x, 1, 0);
    for (int i = 0; i < r; i++) {
        CAtom *ix[2] = {sh, core_atom_int(i)};
        ops[i + 1] = core_emit_prim(b, "d", P_INDEX, type_int(), loc, ix, 2, 0);
    }
    return core_emit_prim(b, "z", P_NORMAL, t, loc, ops, r + 1, 0);
}

/* A saturated built-in: args[0..n) (function positions may be known
 * functions), rt the result type. */
Val lower_builtin(Lower *L, Builtin id, Val *args, int n, Type *rt, CBlock *b, Loc loc)
{
    const BuiltinInfo *bi = builtin_info(id);
    if (bi->deriv != DERIV_NONE) {
        CExpr *e = core_expr(CE_DERIV, rt, loc);
        e->u.deriv.kind = bi->deriv;
        if (id == B_STOP_GRADIENT) {
            e->nargs = 1;
            e->args = NEWN(CAtom *, 1);
            e->args[0] = lower_to_atom(L, args[0], b, loc);
            return val_atom(bind_expr(b, "sg", e));
        }
        Type *ft = val_type(args[0]);
        Type *at = fn_arg(ft);
        e->nargs = n - 1;
        e->args = NEWN(CAtom *, n);
        for (int i = 1; i < n; i++)
            e->args[i - 1] = lower_to_atom(L, args[i], b, loc);
        e->u.deriv.fn = fn_lambda(L, args[0], &at, 1, ft, loc);
        return val_atom(bind_expr(b, bi->name, e));
    }
    CExpr *e;
    switch (id) {
    case B_MAP: case B_MAP2: case B_MAP3: {
        int na = n - 1;
        Type **pt = NEWN(Type *, na);
        CAtom **arrs = NEWN(CAtom *, na);
        for (int i = 0; i < na; i++) {
            arrs[i] = lower_to_atom(L, args[i + 1], b, loc);
            pt[i] = row_type(core_atom_type(arrs[i]));
        }
        e = core_expr(CE_SOAC, rt, loc);
        e->u.soac.kind = SOAC_MAP;
        e->u.soac.fn = fn_lambda(L, args[0], pt, na, val_type(args[0]), loc);
        e->nargs = na;
        e->args = arrs;
        return val_atom(bind_expr(b, "map", e));
    }
    case B_REDUCE: case B_FOLD: case B_SCAN: {
        CAtom *init = lower_to_atom(L, args[1], b, loc);
        CAtom *arr = lower_to_atom(L, args[2], b, loc);
        Type *pt[2] = {core_atom_type(init), row_type(core_atom_type(arr))};
        e = core_expr(CE_SOAC, rt, loc);
        e->u.soac.kind = id == B_REDUCE ? SOAC_REDUCE : id == B_FOLD ? SOAC_FOLD : SOAC_SCAN;
        e->u.soac.fn = fn_lambda(L, args[0], pt, 2, val_type(args[0]), loc);
        e->nargs = 2;
        e->args = NEWN(CAtom *, 2);
        e->args[0] = init;
        e->args[1] = arr;
        return val_atom(bind_expr(b, bi->name, e));
    }
    case B_FILTER: {
        CAtom *arr = lower_to_atom(L, args[1], b, loc);
        Type *pt = row_type(core_atom_type(arr));
        e = core_expr(CE_SOAC, rt, loc);
        e->u.soac.kind = SOAC_FILTER;
        e->u.soac.fn = fn_lambda(L, args[0], &pt, 1, val_type(args[0]), loc);
        e->nargs = 1;
        e->args = NEWN(CAtom *, 1);
        e->args[0] = arr;
        return val_atom(bind_expr(b, "filter", e));
    }
    default:
        break;
    }
    CAtom **a = NEWN(CAtom *, n + 16);
    for (int i = 0; i < n; i++)
        a[i] = lower_to_atom(L, args[i], b, loc);
    CAtom *ops[20];
    int k = 0;
    int64_t imm = 0;
    switch (id) {
    case B_ZEROS: case B_ONES:
        k = shape_dims(a[0], ops, 0, b, loc);
        break;
    case B_UNIFORM: case B_NORMAL:
        ops[k++] = a[0];
        k = shape_dims(a[1], ops, k, b, loc);
        break;
    case B_RESHAPE:
        ops[k++] = a[1];
        k = shape_dims(a[0], ops, k, b, loc);
        break;
    case B_ARGS: case B_CLOCK:
        k = 0;
        break;
    case B_UPDATE_AT: /* update_at a i v: P_UPDATE a, v, i.. */
        ops[k++] = a[0];
        ops[k++] = a[2];
        k = shape_dims(a[1], ops, k, b, loc);
        break;
    case B_FILL: /* fill s v: P_FILL v, dims.. */
        ops[k++] = a[1];
        k = shape_dims(a[0], ops, k, b, loc);
        break;
    case B_NORMAL_LIKE:
        return val_atom(normal_like(a[0], a[1], b, loc));
    case B_SLICE:
        ops[k++] = a[0];
        ops[k++] = a[1];
        ops[k++] = a[2];
        imm = 1;
        break;
    default:
        for (int i = 0; i < n && k < 16; i++)
            ops[k++] = a[i];
    }
    Prim p = builtin_prim(id);
    if (p == P__COUNT)
        return val_atom(emit_error(b, rt, loc, "unsupported built-in"));
    if (k == 1 && id >= B_EXP && id <= B_CEIL &&
        is_product(type_resolve(core_atom_type(ops[0]))))
        return val_atom(unary_math(p, bi->name, ops[0], b, loc));
    return val_atom(core_emit_prim(b, bi->name, p, rt, loc, ops, k, imm));
}
