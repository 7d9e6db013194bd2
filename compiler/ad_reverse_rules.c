/* ad_reverse_rules.c — reverse mode: zeros and sums of tangents (the
 * zeros_<type> / add_<type> helpers of variants), dummies of the branches
 * not taken, and the vector-Jacobian rule of each primitive on whole
 * arrays (vjp_prim). The design is described at the top of ad_reverse.c. */
#include "ad_reverse.h"

/* ------------------------------------------------------------ zeros and sums */

static CAtom *zero_alt(CBlock *b, int k, CAtom *payload, void *ctx)
{
    return con(b, (Type *)ctx, k, payload ? zeros_of(b, payload) : NULL);
}

/* The zero of T(t) for the value p : t. Zeros of a variant take p's
 * constructor (zeros_<type> helpers, recursive for recursive types). */
CAtom *zeros_of(CBlock *b, CAtom *p)
{
    Type *t = aty(p), *tt = tan_t(t);
    switch (t->kind) {
    case TY_FLOAT: case TY_F32:
        return core_atom_float(0.0, t);
    case TY_ARRAY:
        return P1(b, P_ZEROS_LIKE, tt, p);
    case TY_TUPLE: case TY_NAMED:
        if (nparts(t) >= 0) {
            int n = nparts(t);
            CAtom **ps = NEWN(CAtom *, n > 0 ? n : 1);
            for (int i = 0; i < n; i++)
                ps[i] = zeros_of(b, proj(b, p, i));
            return mkprod(b, tt, ps, n);
        }
        if (is_variant(t)) {
            CVar *x;
            bool fresh;
            CFun *f = helper_fun("zeros", t, &t, 1, tt, &x, &fresh);
            if (fresh)
                f->body->result = case_all(f->body, core_atom_var(x), tt, zero_alt, tt);
            return call(b, f, &p, 1);
        }
        return core_atom_unit();
    case TY_FUNC: {
        CVar *x = core_var("x", rs(t->args[0]), R->loc);
        CBlock *body = core_block_new();
        body->result = zeros_of(body, apply1(body, p, core_atom_var(x)));
        return closure(b, x, body);
    }
    default:
        return core_atom_unit();
    }
}

typedef struct AddCtx {
    CAtom *y;
    Type *t;
} AddCtx;

static CAtom *add_alt(CBlock *b, int k, CAtom *payload, void *vctx)
{
    AddCtx *c = vctx;
    if (!payload)
        return con(b, c->t, k, NULL);
    CAtom *q = prim(b, P_PAYLOAD, aty(payload), &c->y, 1, k);
    return con(b, c->t, k, add_of(b, payload, q));
}

/* x + y on a tangent type. Sums of variants take x's constructor (both
 * are tangents at one primal value, so they share it). */
CAtom *add_of(CBlock *b, CAtom *x, CAtom *y)
{
    Type *t = aty(x);
    if (!has_tan(t))
        return x;
    switch (t->kind) {
    case TY_FLOAT: case TY_F32:
        return add2(b, x, y);
    case TY_ARRAY:
        if (is_fl(t->elem))
            return add2(b, x, y);
        else {
            Type *el = rs(t->elem);
            CVar *p[2] = {core_var("a", el, R->loc), core_var("b", el, R->loc)};
            CBlock *body = core_block_new();
            body->result = add_of(body, core_atom_var(p[0]), core_atom_var(p[1]));
            CAtom *args[2] = {x, y};
            return soac(b, SOAC_MAP, t, lambda_n(p, 2, body), args, 2);
        }
    case TY_TUPLE: case TY_NAMED:
        if (nparts(t) >= 0) {
            int n = nparts(t);
            CAtom **ps = NEWN(CAtom *, n > 0 ? n : 1);
            for (int i = 0; i < n; i++)
                ps[i] = has_tan(part_t(t, i)) ? add_of(b, proj(b, x, i), proj(b, y, i)) : proj(b, x, i);
            return mkprod(b, t, ps, n);
        }
        if (is_variant(t)) {
            CVar *v[2];
            bool fresh;
            Type *ts[2] = {t, t};
            CFun *f = helper_fun("add", t, ts, 2, t, v, &fresh);
            if (fresh) {
                AddCtx c = {core_atom_var(v[1]), t};
                f->body->result = case_all(f->body, core_atom_var(v[0]), t, add_alt, &c);
            }
            CAtom *args[2] = {x, y};
            return call(b, f, args, 2);
        }
        return x;
    case TY_FUNC: {
        CVar *a = core_var("x", rs(t->args[0]), R->loc);
        CBlock *body = core_block_new();
        body->result = add_of(body, apply1(body, x, core_atom_var(a)), apply1(body, y, core_atom_var(a)));
        return closure(b, a, body);
    }
    default:
        return x;
    }
}

/* Some value of type t, for residual slots of branches not taken and for
 * buffers before they are written. */
CAtom *dummy_of(CBlock *b, Type *t, int depth)
{
    t = rs(t);
    switch (t->kind) {
    case TY_FLOAT: case TY_F32: return core_atom_float(0.0, t);
    case TY_INT: return ilit(0);
    case TY_BOOL: return core_atom_bool(false);
    case TY_STRING: return core_atom_string("");
    case TY_KEY: return P1(b, P_KEY, t, ilit(0));
    case TY_ARRAY: {
        CAtom *d[8];
        for (int i = 0; i < t->rank; i++)
            d[i] = ilit(0);
        return zeros_dims(b, t->elem, d, t->rank);
    }
    case TY_TUPLE: case TY_NAMED:
        if (nparts(t) >= 0) {
            int n = nparts(t);
            CAtom **ps = NEWN(CAtom *, n > 0 ? n : 1);
            for (int i = 0; i < n; i++)
                ps[i] = dummy_of(b, part_t(t, i), depth + 1);
            return mkprod(b, t, ps, n);
        }
        if (is_variant(t)) {
            for (int k = 0; k < t->decl->ncons; k++)
                if (!core_type_con_arg(t, k))
                    return con(b, t, k, NULL);
            if (depth < 8)
                return con(b, t, 0, dummy_of(b, core_type_con_arg(t, 0), depth + 1));
        }
        break;
    case TY_FUNC: {
        CVar *x = core_var("x", rs(t->args[0]), R->loc);
        CBlock *body = core_block_new();
        body->result = dummy_of(body, t->args[1], depth + 1);
        return closure(b, x, body);
    }
    default:
        break;
    }
    return core_atom_unit();
}

/* ------------------------------------------------------------ primitive rules */

/* ct summed over axis j of a same-rank array, keeping the axis (length 1):
 * axis 0 by sum_axis0, a deeper axis by a map over the rows. */
static CAtom *sum_keep(CBlock *b, CAtom *ct, int j)
{
    Type *t = aty(ct);
    int r = rank_of(t);
    if (j > 0) {
        CVar *row = core_var("row", row_t(t), R->loc);
        CBlock *body = core_block_new();
        body->result = sum_keep(body, core_atom_var(row), j - 1);
        return soac(b, SOAC_MAP, t, lambda_n(&row, 1, body), &ct, 1);
    }
    if (r == 1)
        return lit_array1(b, sum_all(b, ct));
    CAtom *s = P1(b, P_SUM_AXIS0, row_t(t), ct), *d[8];
    d[0] = ilit(1);
    dims_of(b, s, d + 1);
    return reshape(b, s, d, r);
}

/* NumPy broadcasting also stretches axes of length 1 of an operand of the
 * same rank ([n, 1] + [n, m]): where ct's length differs from x's on an
 * axis, x's is 1 and ct is summed over it. Checked at run time, once by the
 * sizes (equal sizes of broadcast-compatible shapes of one rank mean equal
 * shapes), then axis by axis; in a helper function per type
 * (unbroadcast_t ct x), so that each rule adds one call, not the branches. */
static CAtom *unbroadcast_ones(CBlock *b, CAtom *ct, CAtom *x)
{
    Type *t = aty(ct);
    int r = rank_of(t);
    CVar *ps[2];
    bool fresh;
    Type *pts[2] = {t, aty(x)};
    CFun *f = helper_fun("unbroadcast", t, pts, 2, t, ps, &fresh);
    if (fresh) {
        CBlock *fb = f->body;
        CAtom *fct = core_atom_var(ps[0]), *fx = core_atom_var(ps[1]);
        CBlock *same = block_of(fct), *diff = core_block_new();
        CAtom *dx[8];
        dims_of(diff, fx, dx);
        CAtom *cur = fct;
        for (int j = 0; j < r; j++) {
            CAtom *dc[8];
            dims_of(diff, cur, dc);
            CBlock *sum = core_block_new();
            sum->result = sum_keep(sum, cur, j);
            cur = bind(diff, "ub", if_e(cmp2(diff, P_NE, dc[j], dx[j]), t, sum, block_of(cur)));
        }
        diff->result = cur;
        CAtom *c = cmp2(fb, P_EQ, size_of(fb, fct), size_of(fb, fx));
        fb->result = bind(fb, "ub", if_e(c, t, same, diff));
    }
    CAtom *args[2] = {ct, x};
    return call(b, f, args, 2);
}

/* The elementwise primitive whose rule is being emitted (vjp_prim): its
 * other operands tell whether an operand can have been broadcast. */
static CExpr *cur_prim;

/* Whether x, an array operand of cur_prim, may have been stretched along
 * axes of length 1: another operand is an array (not x itself) of at least
 * x's rank. */
static bool may_stretch(CAtom *x)
{
    if (!cur_prim || !(core_prims[cur_prim->u.prim.op].flags & PRIM_ELEMENTWISE))
        return false;
    for (int i = 0; i < cur_prim->nargs; i++) {
        CAtom *o = cur_prim->args[i];
        if (o == x || (o->kind == CA_VAR && x->kind == CA_VAR && o->u.var == x->u.var))
            continue;
        if (is_arr(aty(o)) && rank_of(aty(o)) >= rank_of(aty(x)))
            return true;
    }
    return false;
}

/* ct summed down to the shape of the operand x it came from through
 * broadcasting: all of it for a scalar x, the leading axes for an x of
 * lower rank, then the axes where x has length 1 and ct does not. */
static CAtom *unbroadcast(CBlock *b, CAtom *ct, CAtom *x)
{
    Type *xt = aty(x);
    if (!is_arr(xt))
        return sum_all(b, ct);
    while (rank_of(aty(ct)) > rank_of(xt))
        ct = P1(b, P_SUM_AXIS0, row_t(aty(ct)), ct);
    if (rank_of(aty(ct)) == rank_of(xt) && may_stretch(x))
        ct = unbroadcast_ones(b, ct, x);
    return ct;
}

static void give(Bwd *B, CBlock *b, CAtom *x, CAtom *g) { contrib(B, b, x, A(unbroadcast(b, g, x))); }

/* x̄[i..] += ct, in place when x̄ is not shared. */
static void index_add(Bwd *B, CBlock *b, CAtom *arr, CAtom **idx, int k, CAtom *ct)
{
    if (!atom_active(arr))
        return;
    CVar *v = arr->u.var;
    Adj *cur = adj_get(B, v);
    CAtom *base, *nv;
    if (!cur) {
        base = zeros_of(b, arr);
        nv = ct;
    } else {
        base = materialize(b, cur, arr, v->type);
        nv = add_of(b, index_at(b, base, idx, k), ct);
    }
    adj_set(B, v, A(update_at(b, base, nv, idx, k)));
}

/* x̄[slice] += ct: loops over the ranges of the slice, adding element (or
 * trailing sub-array) by element in place. */
static CAtom *slice_acc(CBlock *b, CAtom *acc, CExpr *e, CAtom *ct, int j, CAtom **I, CAtom **T, int nt)
{
    int npos = (e->nargs - 1) / 2;
    if (j == npos) {
        CAtom *c = nt ? index_at(b, ct, T, nt) : ct;
        CAtom *old = index_at(b, acc, I, npos);
        return update_at(b, acc, add_of(b, old, c), I, npos);
    }
    CAtom *lo = e->args[1 + 2 * j];
    if (!(e->u.prim.imm & (1ll << j))) {
        I[j] = lo;
        return slice_acc(b, acc, e, ct, j + 1, I, T, nt);
    }
    CAtom *hi;
    if (e->u.prim.imm & (1ll << (16 + j))) {
        CAtom *d[8];
        dims_of(b, e->args[0], d);
        hi = d[j];
    } else {
        hi = e->args[2 + 2 * j];
    }
    ForLoop L = for_begin(isub(b, hi, lo), acc);
    I[j] = iadd(L.body, lo, L.i);
    T[nt] = L.i;
    CAtom *r = slice_acc(L.body, L.s, e, ct, j + 1, I, T, nt + 1);
    return for_end(b, &L, r);
}

/* A map over iota n: fn(body, i) gives the element. */
typedef CAtom *(*IotaFn)(CBlock *b, CAtom *i, void *ctx);

static CAtom *map_iota(CBlock *b, CAtom *n, Type *elem, IotaFn fn, void *ctx)
{
    CAtom *is = P1(b, P_IOTA, type_array(type_int(), 1), n);
    CVar *i = core_var("i", type_int(), R->loc);
    CBlock *body = core_block_new();
    body->result = fn(body, core_atom_var(i), ctx);
    return soac(b, SOAC_MAP, arr_t(elem_of(elem), rank_of(elem) + 1), lambda_n(&i, 1, body), &is, 1);
}

/* Rows (or columns) of m except row i: concat (take i m) (drop (i+1) m). */
static CAtom *drop_row(CBlock *b, CAtom *m, CAtom *i)
{
    CAtom *t = P2(b, P_TAKE, aty(m), i, m);
    CAtom *d = P2(b, P_DROP, aty(m), iadd(b, i, ilit(1)), m);
    return P2(b, P_CONCAT, aty(m), t, d);
}

typedef struct CofCtx {
    CAtom *a, *i, *rows;
} CofCtx;

/* (-1)^(i+j) det (a without row i and column j), by the transposed minor. */
static CAtom *cof_elem(CBlock *b, CAtom *j, void *vctx)
{
    CofCtx *c = vctx;
    CAtom *t = transpose(b, c->rows);
    CAtom *m = drop_row(b, t, j);
    CAtom *d = P1(b, P_DET, type_float(), m);
    CAtom *par = P2(b, P_MOD, type_int(), iadd(b, c->i, j), ilit(2));
    CAtom *sg = sel(b, cmp2(b, P_EQ, par, ilit(0)), flit(type_float(), 1), flit(type_float(), -1));
    return mul2(b, d, sg);
}

static CAtom *cof_row(CBlock *b, CAtom *i, void *vctx)
{
    CofCtx c = *(CofCtx *)vctx;
    c.i = i;
    c.rows = drop_row(b, c.a, i);
    return map_iota(b, length_of(b, c.a), type_float(), cof_elem, &c);
}

typedef struct MaskCtx {
    CAtom *n, *i;
} MaskCtx;

static CAtom *mask_elem(CBlock *b, CAtom *j, void *vctx)
{
    MaskCtx *c = vctx;
    Type *f = type_float();
    CAtom *on = sel(b, cmp2(b, P_EQ, j, c->i), flit(f, 0.5), flit(f, 0));
    return sel(b, cmp2(b, P_LT, j, c->i), flit(f, 1), on);
}

static CAtom *mask_row(CBlock *b, CAtom *i, void *vctx)
{
    MaskCtx c = *(MaskCtx *)vctx;
    c.i = i;
    return map_iota(b, c.n, type_float(), mask_elem, &c);
}

static CAtom *to_type(CBlock *b, CAtom *x, Type *want)
{
    Type *t = aty(x);
    if (kind_of(elem_of(t)) == kind_of(elem_of(want)))
        return x;
    Prim op = kind_of(elem_of(want)) == TY_F32 ? P_TO_F32 : P_TO_FLOAT;
    return P1(b, op, arr_t(elem_of(want), rank_of(t)), x);
}

/* The vector-Jacobian products of the primitives: given ȳ = ct for
 * y = op(a0, a1, ...), add āk to the adjoints of the active operands.
 * Elementwise rules broadcast and are summed back (unbroadcast). */
void vjp_prim(Bwd *B, CBlock *b, CExpr *e, CVar *y, CAtom *ct)
{
    CAtom **a = e->args;
    CAtom *Y = core_atom_var(y);
    bool a0 = e->nargs > 0 && atom_active(a[0]);
    bool a1 = e->nargs > 1 && atom_active(a[1]);
    Type *ft = aty(ct);
    CAtom *zero = flit(ft, 0), *one = flit(ft, 1);
    cur_prim = e;
    switch (e->u.prim.op) {
    /* x + z: x̄ += ȳ, z̄ += ȳ */
    case P_ADD:
        if (a0) give(B, b, a[0], ct);
        if (a1) give(B, b, a[1], ct);
        break;
    /* x - z: x̄ += ȳ, z̄ -= ȳ (negated after summing back over the
     * broadcast axes: on the smaller array) */
    case P_SUB:
        if (a0) give(B, b, a[0], ct);
        if (a1) contrib(B, b, a[1], A(neg1(b, unbroadcast(b, ct, a[1]))));
        break;
    case P_NEG:
        give(B, b, a[0], neg1(b, ct));
        break;
    /* x z: x̄ += ȳ z, z̄ += ȳ x */
    case P_MUL:
        if (a0) give(B, b, a[0], mul2(b, ct, a[1]));
        if (a1) give(B, b, a[1], mul2(b, ct, a[0]));
        break;
    /* y = x / z: x̄ += ȳ / z, z̄ -= (ȳ / z) y */
    case P_DIV: {
        CAtom *q = div2(b, ct, a[1]);
        if (a0) give(B, b, a[0], q);
        if (a1) give(B, b, a[1], neg1(b, mul2(b, q, Y)));
        break;
    }
    /* y = x^z: x̄ += ȳ z x^(z-1), 0 when z = 0 (x^0 is constant, no 0 * inf
     * at x = 0; a literal z = 1 gives exactly ȳ); z̄ += ȳ y log x, 0 at x = 0 */
    case P_POW: {
        CAtom *x = a[0], *z = a[1];
        if (a0) {
            CAtom *g = NULL;
            if (z->kind == CA_FLOAT) {
                double zv = z->u.fval;
                if (zv == 1)
                    g = ct;
                else if (zv == 2)
                    g = mul2(b, ct, mul2(b, flit(ft, 2), x));
                else if (zv != 0)
                    g = mul2(b, ct, mul2(b, z, P2(b, P_POW, aty(x), x, flit(aty(x), zv - 1))));
            } else {
                CAtom *d = mul2(b, ct, mul2(b, z, P2(b, P_POW, bc_t(x, z), x, sub2(b, z, flit(aty(z), 1)))));
                g = sel(b, cmp2(b, P_EQ, z, flit(aty(z), 0)), zero, d);
            }
            if (g)
                give(B, b, x, g);
        }
        if (a1) {
            CAtom *d = mul2(b, ct, mul2(b, Y, un(b, P_LOG, x)));
            give(B, b, z, sel(b, cmp2(b, P_EQ, x, flit(aty(x), 0)), zero, d));
        }
        break;
    }
    /* exp: x̄ += ȳ y */
    case P_EXP: give(B, b, a[0], mul2(b, ct, Y)); break;
    /* log: x̄ += ȳ / x */
    case P_LOG: give(B, b, a[0], div2(b, ct, a[0])); break;
    /* log1p: x̄ += ȳ / (1 + x) */
    case P_LOG1P: give(B, b, a[0], div2(b, ct, add2(b, one, a[0]))); break;
    /* expm1: x̄ += ȳ (y + 1) */
    case P_EXPM1: give(B, b, a[0], mul2(b, ct, add2(b, Y, one))); break;
    /* sqrt: x̄ += ȳ / (2 y), and 0 where ȳ = 0 (PyTorch's convention: a zero
     * cotangent times the infinite derivative at 0 is 0, ad-cases #3) */
    case P_SQRT: {
        CAtom *d = div2(b, ct, mul2(b, flit(ft, 2), Y));
        give(B, b, a[0], sel(b, cmp2(b, P_EQ, ct, zero), zero, d));
        break;
    }
    /* sin: x̄ += ȳ cos x; cos: x̄ -= ȳ sin x */
    case P_SIN: give(B, b, a[0], mul2(b, ct, un(b, P_COS, a[0]))); break;
    case P_COS: give(B, b, a[0], neg1(b, mul2(b, ct, un(b, P_SIN, a[0])))); break;
    /* tan: x̄ += ȳ (1 + y²); tanh: x̄ += ȳ (1 - y²) */
    case P_TAN: give(B, b, a[0], mul2(b, ct, add2(b, one, mul2(b, Y, Y)))); break;
    case P_TANH: give(B, b, a[0], mul2(b, ct, sub2(b, one, mul2(b, Y, Y)))); break;
    /* abs: x̄ += ȳ sign x (sign 0 = 0) */
    case P_ABS: {
        CAtom *neg = sel(b, cmp2(b, P_LT, a[0], zero), neg1(b, ct), zero);
        give(B, b, a[0], sel(b, cmp2(b, P_GT, a[0], zero), ct, neg));
        break;
    }
    /* sigmoid: x̄ += ȳ y (1 - y); softplus: x̄ += ȳ sigmoid x */
    case P_SIGMOID: give(B, b, a[0], mul2(b, ct, mul2(b, Y, sub2(b, one, Y)))); break;
    case P_SOFTPLUS: give(B, b, a[0], mul2(b, ct, un(b, P_SIGMOID, a[0]))); break;
    /* relu: x̄ += ȳ where x > 0 */
    case P_RELU: give(B, b, a[0], sel(b, cmp2(b, P_GT, a[0], zero), ct, zero)); break;
    /* floor, ceil: derivative 0 */
    case P_FLOOR: case P_CEIL: break;
    /* atan2 u v: ū += ȳ v / (u² + v²), v̄ -= ȳ u / (u² + v²) */
    case P_ATAN2: {
        CAtom *d = add2(b, mul2(b, a[0], a[0]), mul2(b, a[1], a[1]));
        if (a0) give(B, b, a[0], div2(b, mul2(b, ct, a[1]), d));
        if (a1) give(B, b, a[1], neg1(b, div2(b, mul2(b, ct, a[0]), d)));
        break;
    }
    /* max u v: ȳ to u where u >= v (ties to the first operand), else to v;
     * min u v: ȳ to u where u < v, else to v (ties to the second). So
     * max x c + min x c has derivative 1 at the tie x = c (ad-cases #5);
     * forward mode splits the same way (docs/ad.md). */
    case P_MAX: case P_MIN: {
        CAtom *c = cmp2(b, e->u.prim.op == P_MAX ? P_GE : P_LT, a[0], a[1]);
        if (a0) give(B, b, a[0], sel(b, c, ct, zero));
        if (a1) give(B, b, a[1], sel(b, c, zero, ct));
        break;
    }
    /* select c u v: ū += ȳ where c, v̄ += ȳ elsewhere */
    case P_SELECT:
        if (a1) give(B, b, a[1], sel(b, a[0], ct, zero));
        if (e->nargs > 2 && atom_active(a[2])) give(B, b, a[2], sel(b, a[0], zero, ct));
        break;
    /* conversions between float and f32: the cotangent converted back */
    case P_TO_FLOAT: case P_TO_F32:
        if (is_fl(elem_of(aty(a[0]))))
            contrib(B, b, a[0], A(to_type(b, ct, aty(a[0]))));
        break;
    /* y = x mod z = x - trunc(x / z) z: x̄ += ȳ, z̄ -= ȳ (x - y) / z */
    case P_MOD:
        if (a0) give(B, b, a[0], ct);
        if (a1) give(B, b, a[1], neg1(b, mul2(b, ct, div2(b, sub2(b, a[0], Y), a[1]))));
        break;
    /* [x0, x1, ...]: x̄i += ȳ[i] */
    case P_ARRAY:
        for (int i = 0; i < e->nargs; i++)
            if (atom_active(a[i]))
                contrib(B, b, a[i], A(index1(b, ct, ilit(i))));
        break;
    /* a[i..]: ā[i..] += ȳ, in place */
    case P_INDEX:
        index_add(B, b, a[0], a + 1, e->nargs - 1, ct);
        break;
    /* a[lo:hi, ..]: ā[lo:hi, ..] += ȳ */
    case P_SLICE: {
        if (!a0)
            break;
        CVar *v = a[0]->u.var;
        Adj *cur = adj_get(B, v);
        CAtom *acc = cur ? materialize(b, cur, a[0], v->type) : zeros_of(b, a[0]);
        CAtom *I[16], *T[16];
        adj_set(B, v, A(slice_acc(b, acc, e, ct, 0, I, T, 0)));
        break;
    }
    /* a with a[i..] = v: v̄ += ȳ[i..]; ā += ȳ with [i..] = 0 */
    case P_UPDATE: {
        int k = e->nargs - 2;
        if (a1) contrib(B, b, a[1], A(index_at(b, ct, a + 2, k)));
        if (a0) contrib(B, b, a[0], A(update_at(b, ct, zeros_of(b, a[1]), a + 2, k)));
        break;
    }
    /* replicate n v: v̄ += sum of ȳ over axis 0 */
    case P_REPLICATE:
        if (a1) contrib(B, b, a[1], A(is_arr(aty(a[1])) ? P1(b, P_SUM_AXIS0, tan_t(aty(a[1])), ct) : sum_all(b, ct)));
        break;
    /* fill v dims: v̄ += sum of ȳ */
    case P_FILL:
        contrib(B, b, a[0], A(sum_all(b, ct)));
        break;
    /* sum x: x̄ += ȳ broadcast to x's shape (sum over axis 0: replicated) */
    case P_SUM: case P_MEAN: {
        CAtom *x = a[0];
        if (is_arr(aty(ct))) {
            contrib(B, b, x, A(P2(b, P_REPLICATE, tan_t(aty(x)), length_of(b, x), ct)));
            break;
        }
        CAtom *g = ct;
        if (e->u.prim.op == P_MEAN)
            g = div2(b, ct, P1(b, P_TO_FLOAT, ft, size_of(b, x)));
        CAtom *d[8];
        int r = dims_of(b, x, d);
        contrib(B, b, x, A(fill(b, g, d, r)));
        break;
    }
    /* prod x: x̄i += ȳ times the product of the others, by exclusive prefix
     * and suffix products (exact with zeros in x: ad-cases #10) */
    case P_PROD: {
        CAtom *x = a[0], *xf = x, *d[8], *sz;
        int r = rank_of(aty(x));
        if (r > 1) {
            dims_of(b, x, d);
            sz = size_of(b, x);
            xf = reshape(b, x, &sz, 1);
        }
        CAtom *n = length_of(b, xf);
        CAtom *o = lit_array1(b, one);
        CAtom *pre = scan_prim(b, P_MUL, one, xf);
        CAtom *suf = un(b, P_REVERSE, scan_prim(b, P_MUL, one, un(b, P_REVERSE, xf)));
        CAtom *expre = P2(b, P_TAKE, aty(xf), n, P2(b, P_CONCAT, aty(xf), o, pre));
        CAtom *exsuf = P2(b, P_DROP, aty(xf), ilit(1), P2(b, P_CONCAT, aty(xf), suf, o));
        CAtom *g = mul2(b, ct, mul2(b, expre, exsuf));
        contrib(B, b, x, A(r > 1 ? reshape(b, g, d, r) : g));
        break;
    }
    /* maximum x (minimum): ȳ to the first position of the extreme */
    case P_MAXIMUM: case P_MINIMUM: {
        CAtom *x = a[0], *xf = x, *d[8], *sz;
        int r = rank_of(aty(x));
        if (r > 1) {
            dims_of(b, x, d);
            sz = size_of(b, x);
            xf = reshape(b, x, &sz, 1);
        }
        CAtom *key = e->u.prim.op == P_MAXIMUM ? xf : neg1(b, xf);
        CAtom *idx = P1(b, P_ARGMAX, type_int(), key);
        CAtom *oh = P2(b, P_ONE_HOT, aty(xf), length_of(b, xf), idx);
        CAtom *g = mul2(b, ct, oh);
        contrib(B, b, x, A(r > 1 ? reshape(b, g, d, r) : g));
        break;
    }
    /* sum over axis 0: x̄ += ȳ replicated along axis 0 */
    case P_SUM_AXIS0:
        contrib(B, b, a[0], A(P2(b, P_REPLICATE, tan_t(aty(a[0])), length_of(b, a[0]), ct)));
        break;
    /* dot u v: ū += ȳ v, v̄ += ȳ u */
    case P_DOT:
        if (a0) contrib(B, b, a[0], A(mul2(b, ct, a[1])));
        if (a1) contrib(B, b, a[1], A(mul2(b, ct, a[0])));
        break;
    /* A @ B: Ā += Ȳ Bᵀ, B̄ += Aᵀ Ȳ (matrix-vector and vector-matrix forms
     * by outer products and the transposed product) */
    case P_MATMUL: {
        int ra = rank_of(aty(a[0])), rb = rank_of(aty(a[1]));
        if (ra == 1 && rb == 1) {
            if (a0) contrib(B, b, a[0], A(mul2(b, ct, a[1])));
            if (a1) contrib(B, b, a[1], A(mul2(b, ct, a[0])));
        } else if (ra == 2 && rb == 2) {
            if (a0) contrib(B, b, a[0], A(matmul(b, ct, transpose(b, a[1]))));
            if (a1) contrib(B, b, a[1], A(matmul(b, transpose(b, a[0]), ct)));
        } else if (ra == 2) { /* y = M v */
            if (a0) contrib(B, b, a[0], A(outer(b, ct, a[1])));
            if (a1) contrib(B, b, a[1], A(matmul(b, ct, a[0])));
        } else { /* y = v M */
            if (a0) contrib(B, b, a[0], A(matmul(b, a[1], ct)));
            if (a1) contrib(B, b, a[1], A(outer(b, a[0], ct)));
        }
        break;
    }
    /* transpose, reverse: the same on ȳ */
    case P_TRANSPOSE: contrib(B, b, a[0], A(transpose(b, ct))); break;
    case P_REVERSE: contrib(B, b, a[0], A(un(b, P_REVERSE, ct))); break;
    /* reshape: ȳ reshaped to x's shape */
    case P_RESHAPE: {
        CAtom *d[8];
        int r = dims_of(b, a[0], d);
        contrib(B, b, a[0], A(reshape(b, ct, d, r)));
        break;
    }
    /* concat u v: ū += take (length u) ȳ, v̄ += drop (length u) ȳ */
    case P_CONCAT: {
        CAtom *n = length_of(b, a[0]);
        if (a0) contrib(B, b, a[0], A(P2(b, P_TAKE, tan_t(aty(a[0])), n, ct)));
        if (a1) contrib(B, b, a[1], A(P2(b, P_DROP, tan_t(aty(a[1])), n, ct)));
        break;
    }
    /* take n x: x̄ += ȳ followed by zeros; drop n x: zeros then ȳ */
    case P_TAKE: case P_DROP:
        if (a1) {
            Type *t = tan_t(aty(a[1]));
            bool take = e->u.prim.op == P_TAKE;
            CAtom *rest = P2(b, take ? P_DROP : P_TAKE, aty(a[1]), a[0], a[1]);
            CAtom *z = zeros_of(b, rest);
            contrib(B, b, a[1], A(take ? P2(b, P_CONCAT, t, ct, z) : P2(b, P_CONCAT, t, z, ct)));
        }
        break;
    /* zip u v: (ū, v̄) += unzip ȳ; unzip p: p̄ += zip ȳ */
    case P_ZIP: {
        Type *ts[2] = {tan_t(aty(a[0])), tan_t(aty(a[1]))};
        CAtom *u = P1(b, P_UNZIP, type_tuple(ts, 2), ct);
        if (a0) contrib(B, b, a[0], A(proj(b, u, 0)));
        if (a1) contrib(B, b, a[1], A(proj(b, u, 1)));
        break;
    }
    case P_UNZIP:
        contrib(B, b, a[0], A(P2(b, P_ZIP, tan_t(aty(a[0])), proj(b, ct, 0), proj(b, ct, 1))));
        break;
    /* softmax (last axis): x̄ += y (ȳ - sum (ȳ y)), row by row; no
     * exponential of x appears, so it is finite wherever y is */
    case P_SOFTMAX:
        if (rank_of(aty(Y)) == 1) {
            CAtom *s = sum_all(b, mul2(b, ct, Y));
            contrib(B, b, a[0], A(mul2(b, Y, sub2(b, ct, s))));
        } else {
            Type *rt = row_t(aty(Y));
            CVar *p[2] = {core_var("yr", rt, R->loc), core_var("cr", rt, R->loc)};
            CBlock *lb = core_block_new();
            CAtom *yr = core_atom_var(p[0]), *cr = core_atom_var(p[1]);
            CAtom *s = sum_all(lb, mul2(lb, cr, yr));
            lb->result = mul2(lb, yr, sub2(lb, cr, s));
            CAtom *args[2] = {Y, ct};
            contrib(B, b, a[0], A(soac(b, SOAC_MAP, aty(Y), lambda_n(p, 2, lb), args, 2)));
        }
        break;
    /* logsumexp (last axis): x̄ += ȳ softmax x */
    case P_LOGSUMEXP:
        if (!is_arr(aty(Y))) {
            contrib(B, b, a[0], A(mul2(b, ct, P1(b, P_SOFTMAX, aty(a[0]), a[0]))));
        } else {
            Type *rt = row_t(aty(a[0]));
            CVar *p[2] = {core_var("xr", rt, R->loc), core_var("c", elem_of(rt), R->loc)};
            CBlock *lb = core_block_new();
            lb->result = mul2(lb, core_atom_var(p[1]), P1(lb, P_SOFTMAX, rt, core_atom_var(p[0])));
            CAtom *args[2] = {a[0], ct};
            contrib(B, b, a[0], A(soac(b, SOAC_MAP, aty(a[0]), lambda_n(p, 2, lb), args, 2)));
        }
        break;
    /* det A: Ā += ȳ adj(A)ᵀ, the cofactor matrix: det A · A⁻ᵀ when det A is
     * not 0, else the signed minors (exact at singular matrices, ad-cases
     * #11); a 1x1 A has cofactor [[1]] */
    case P_DET: {
        Type *mt = aty(a[0]);
        CAtom *n = length_of(b, a[0]);
        CBlock *reg = core_block_new(), *sing = core_block_new(), *one1 = core_block_new(),
               *minors = core_block_new();
        reg->result = mul2(reg, Y, transpose(reg, P1(reg, P_INV, mt, a[0])));
        CAtom *d11[2] = {ilit(1), ilit(1)};
        one1->result = prim(one1, P_ONES, mt, d11, 2, 0);
        CofCtx cc = {a[0], NULL, NULL};
        minors->result = map_iota(minors, n, type_array(type_float(), 1), cof_row, &cc);
        sing->result = bind(sing, "cof", if_e(cmp2(sing, P_EQ, n, ilit(1)), mt, one1, minors));
        CAtom *g = bind(b, "cof", if_e(cmp2(b, P_NE, Y, flit(type_float(), 0)), mt, reg, sing));
        contrib(B, b, a[0], A(mul2(b, ct, g)));
        break;
    }
    /* Y = inv A: Ā -= Yᵀ Ȳ Yᵀ */
    case P_INV: {
        CAtom *yt = transpose(b, Y);
        contrib(B, b, a[0], A(neg1(b, matmul(b, matmul(b, yt, ct), yt))));
        break;
    }
    /* x = solve A v: g = solve Aᵀ x̄; v̄ += g, Ā -= g xᵀ */
    case P_SOLVE: {
        CAtom *g = P2(b, P_SOLVE, aty(ct), transpose(b, a[0]), ct);
        if (a1) contrib(B, b, a[1], A(g));
        if (a0) {
            CAtom *o = is_arr(row_t(aty(Y))) ? matmul(b, g, transpose(b, Y)) : outer(b, g, Y);
            contrib(B, b, a[0], A(neg1(b, o)));
        }
        break;
    }
    /* L = cholesky A (Murray, "Differentiation of the Cholesky
     * decomposition", 2016): S = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹ with Φ the lower triangle
     * and half the diagonal; Ā += (S + Sᵀ) / 2 */
    case P_CHOLESKY: {
        Type *mt = aty(Y);
        CAtom *n = length_of(b, Y);
        MaskCtx mc = {n, NULL};
        CAtom *mask = map_iota(b, n, type_array(type_float(), 1), mask_row, &mc);
        CAtom *phi = mul2(b, matmul(b, transpose(b, Y), ct), mask);
        CAtom *li = P1(b, P_INV, mt, Y);
        CAtom *s = matmul(b, matmul(b, transpose(b, li), phi), li);
        CAtom *g = mul2(b, flit(mt, 0.5), add2(b, s, transpose(b, s)));
        contrib(B, b, a[0], A(g));
        break;
    }
    /* hofn: y = defun(f, xs) (a function value from outside the region,
     * dispatched on its code): x̄s += (vjp (fn q => defun(f, q)) xs).1 ȳ,
     * the same dispatch over vjp targets (ad_defun_derive, ad_forms.c) */
    case P_DEFUN: {
        int m = ad_defun_get(e->u.prim.imm)->nargs;
        CAtom *pa = a[1];
        if (m > 1) {
            Type **ts = NEWN(Type *, m);
            for (int i = 0; i < m; i++)
                ts[i] = aty(a[1 + i]);
            pa = prim(b, P_TUPLE, type_tuple(ts, m), a + 1, m, 0);
        }
        Type *gt = type_tangent(aty(pa));
        CAtom *g = bind(b, "g", ad_defun_derive(R->prog, e, DERIV_VJP, pa, ct, gt));
        for (int i = 0; i < m; i++)
            if (atom_active(a[1 + i]))
                contrib(B, b, a[1 + i], A(m == 1 ? g : proj(b, g, i)));
        break;
    }
    default:
        rv_error(e->loc, "reverse mode: no derivative rule for '%s'", core_prims[e->u.prim.op].name);
        break;
    }
}
