/* ad_rules.c — the forward rule of each primitive (PrimInfo.jvp_rule,
 * filled by ad_forward_init; the contract is AdJvpRule in dcc.h): a linear
 * primitive applies itself to the tangents of its linear operands, the
 * others give their derivative applied to the tangents (each rule's formula
 * and conventions above it). Taylor mode's rules are in ad_taylor.c. */
#include "ad.h"

/* ================================================================ forward rules */

#define RULE(name) static CAtom *name(AdFwd *F, CExpr *e, CAtom **x, CAtom **dx, CAtom *y)
#define UNUSED_RULE_ARGS (void)F, (void)e, (void)x, (void)dx, (void)y

/* Which operands a linear primitive is linear in (the others are indices,
 * sizes, shapes: primal). */
static bool lin_operand(Prim op, int i)
{
    switch (op) {
    case P_TUPLE: case P_RECORD: case P_CON: case P_ARRAY: case P_ZIP: case P_CONCAT:
    case P_ADD: case P_SUB:
        return true;
    case P_UPDATE: return i <= 1;
    case P_REPLICATE: case P_TAKE: case P_DROP: return i == 1;
    case P_SELECT: return i == 1 || i == 2;
    default: return i == 0;
    }
}

/* A linear primitive: the same primitive on the tangents of its linear
 * operands (zeros materialised where some are non-zero). */
RULE(rule_linear)
{
    Prim op = e->u.prim.op;
    int n = e->nargs;
    bool any = false;
    for (int i = 0; i < n; i++)
        if (lin_operand(op, i) && dx[i])
            any = true;
    if (!any)
        return NULL;
    /* looking through: proj/field of a known tuple/record */
    if ((op == P_PROJ || op == P_FIELD) && dx[0]) {
        CExpr *d = ad_def_of(dx[0]);
        Prim want = op == P_PROJ ? P_TUPLE : P_RECORD;
        if (d && d->kind == CE_PRIM && d->u.prim.op == want && e->u.prim.imm < d->nargs)
            return ad_nz(d->args[e->u.prim.imm]);
    }
    if (op == P_PAYLOAD && dx[0]) {
        CExpr *d = ad_def_of(dx[0]);
        if (d && d->kind == CE_PRIM && d->u.prim.op == P_CON && d->u.prim.imm == e->u.prim.imm && d->nargs == 1)
            return ad_nz(d->args[0]);
    }
    CAtom **a = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        a[i] = lin_operand(op, i) ? ad_materialise(F, dx[i], core_atom_type(x[i]), x[i]) : x[i];
    if (op == P_SELECT)
        for (int i = 1; i < 3; i++)
            if (!dx[i] && is_floatish(core_atom_type(x[i])))
                a[i] = ad_lit(0, core_atom_type(x[i]));
    (void)y;
    return ad_emit(F, "d", op, tangent_of(e->type), a, n, e->u.prim.imm);
}

/* With one operand's tangent zero, a + b's tangent is the other one's,
 * which may have a smaller shape than the sum (broadcasting). */
static CAtom *fix_bcast(AdFwd *F, CAtom *d, CAtom **x, CAtom **dx, CAtom *y, int n)
{
    if (!d)
        return NULL;
    int ra = rank_of_atom(d), ry = rank_of_atom(y);
    bool need = ra < ry;
    for (int i = 0; i < n && !need; i++)
        if (!dx[i] && rank_of_atom(x[i]) > 0 && rank_of_atom(x[i]) >= ra)
            need = true;
    if (!need)
        return d;
    CAtom *z = ad_emit1(F, "z", P_ZEROS_LIKE, core_atom_type(y), y, 0);
    return ad_emit2(F, "t", P_ADD, core_atom_type(y), z, d);
}

RULE(rule_add)
{
    (void)e;
    return fix_bcast(F, ad_add(F, dx[0], dx[1]), x, dx, y, 2);
}

RULE(rule_sub)
{
    (void)e;
    return fix_bcast(F, ad_sub(F, dx[0], dx[1]), x, dx, y, 2);
}

RULE(rule_select)
{
    UNUSED_RULE_ARGS;
    CAtom *d = ad_select(F, x[0], dx[1], dx[2]);
    CAtom *xx[2] = {x[1], x[2]}, *dd[2] = {dx[1], dx[2]};
    return fix_bcast(F, d, xx, dd, y, 2);
}

/* d(a b) = da b + a db */
RULE(rule_mul)
{
    UNUSED_RULE_ARGS;
    return ad_add(F, ad_mul(F, dx[0], x[1]), ad_mul(F, x[0], dx[1]));
}

/* d(a / b) = (da - y db) / b */
RULE(rule_div)
{
    UNUSED_RULE_ARGS;
    if (!dx[1])
        return ad_div(F, dx[0], x[1]);
    return ad_div(F, ad_sub(F, dx[0], ad_mul(F, y, dx[1])), x[1]);
}

/* fmod: a - trunc(a / b) b, so d = da - ((a - y) / b) db */
RULE(rule_mod)
{
    UNUSED_RULE_ARGS;
    if (!dx[1])
        return dx[0];
    CAtom *q = ad_div(F, ad_sub(F, x[0], y), x[1]);
    return ad_sub(F, dx[0], ad_mul(F, q, dx[1]));
}

/* d(a^c) = c a^(c-1) da + a^c log a dc, with the conventions of
 * ad-cases 4: the first term is 0 when c = 0 (never 0 * inf at a = 0), and
 * a literal c = 1 gives da exactly; the second is 0 where a = 0. */
RULE(rule_pow)
{
    UNUSED_RULE_ARGS;
    CAtom *d = NULL;
    if (dx[0]) {
        CAtom *c = x[1];
        if (is_flit(c)) {
            double cv = c->u.fval;
            if (cv == 0)
                d = NULL;
            else if (cv == 1)
                d = dx[0];
            else if (cv == 2)
                d = ad_mul(F, ad_mul(F, ad_lit(2, c->type), x[0]), dx[0]);
            else {
                CAtom *p = ad_bin(F, P_POW, x[0], ad_lit(cv - 1, c->type));
                d = ad_mul(F, ad_mul(F, c, p), dx[0]);
            }
        } else {
            CAtom *p = ad_bin(F, P_POW, x[0], ad_sub(F, c, ad_lit(1, core_atom_type(c))));
            CAtom *g = ad_mul(F, c, p);
            CAtom *z = ad_cmp(F, P_EQ, c, ad_lit(0, core_atom_type(c)));
            g = ad_select(F, z, ad_lit(0, core_atom_type(g)), g);
            d = ad_mul(F, g, dx[0]);
        }
    }
    if (dx[1]) {
        CAtom *l = ad_mul(F, y, ad_un(F, P_LOG, x[0]));
        CAtom *z = ad_cmp(F, P_EQ, x[0], ad_lit(0, core_atom_type(x[0])));
        l = ad_select(F, z, ad_lit(0, core_atom_type(l)), l);
        d = ad_add(F, d, ad_mul(F, l, dx[1]));
    }
    return d;
}

RULE(rule_exp) { UNUSED_RULE_ARGS; return ad_mul(F, y, dx[0]); }
RULE(rule_log) { UNUSED_RULE_ARGS; return ad_div(F, dx[0], x[0]); }
RULE(rule_log1p) { UNUSED_RULE_ARGS; return ad_div(F, dx[0], ad_add(F, x[0], ad_lit(1, core_atom_type(x[0])))); }
RULE(rule_expm1) { UNUSED_RULE_ARGS; return ad_mul(F, ad_add(F, y, ad_lit(1, core_atom_type(y))), dx[0]); }

/* d sqrt x = dx / (2 sqrt x), and 0 when dx = 0 (also at x = 0: the
 * convention that makes ad-cases 3 give PyTorch's [0, 0]). */
RULE(rule_sqrt)
{
    UNUSED_RULE_ARGS;
    CAtom *d = ad_div(F, dx[0], ad_mul(F, ad_lit(2, core_atom_type(y)), y));
    CAtom *z = ad_cmp(F, P_EQ, dx[0], ad_lit(0, core_atom_type(dx[0])));
    return ad_select(F, z, ad_lit(0, core_atom_type(d)), d);
}

RULE(rule_sin) { UNUSED_RULE_ARGS; return ad_mul(F, ad_un(F, P_COS, x[0]), dx[0]); }
RULE(rule_cos) { UNUSED_RULE_ARGS; return ad_neg(F, ad_mul(F, ad_un(F, P_SIN, x[0]), dx[0])); }

/* tan' = 1 + tan², tanh' = 1 - tanh², sigmoid' = s (1 - s) */
RULE(rule_tan)
{
    UNUSED_RULE_ARGS;
    return ad_mul(F, ad_add(F, ad_lit(1, core_atom_type(y)), ad_mul(F, y, y)), dx[0]);
}

RULE(rule_tanh)
{
    UNUSED_RULE_ARGS;
    return ad_mul(F, ad_sub(F, ad_lit(1, core_atom_type(y)), ad_mul(F, y, y)), dx[0]);
}

RULE(rule_sigmoid)
{
    UNUSED_RULE_ARGS;
    return ad_mul(F, ad_mul(F, y, ad_sub(F, ad_lit(1, core_atom_type(y)), y)), dx[0]);
}

RULE(rule_softplus) { UNUSED_RULE_ARGS; return ad_mul(F, ad_un(F, P_SIGMOID, x[0]), dx[0]); }

/* |x|' = sign x, with sign 0 = 0 */
static CAtom *sign_of(AdFwd *F, CAtom *a)
{
    Type *t = core_atom_type(a);
    CAtom *pos = ad_cmp(F, P_GT, a, ad_lit(0, t));
    CAtom *neg = ad_cmp(F, P_LT, a, ad_lit(0, t));
    return ad_select(F, pos, ad_lit(1, t), ad_select(F, neg, ad_lit(-1, t), ad_lit(0, t)));
}

RULE(rule_abs) { UNUSED_RULE_ARGS; return ad_mul(F, sign_of(F, x[0]), dx[0]); }

/* relu' = 1 for x > 0, else 0 */
RULE(rule_relu)
{
    UNUSED_RULE_ARGS;
    CAtom *pos = ad_cmp(F, P_GT, x[0], ad_lit(0, core_atom_type(x[0])));
    return ad_select(F, pos, dx[0], NULL);
}

/* atan2 y x: (x dy - y dx) / (x² + y²) */
RULE(rule_atan2)
{
    UNUSED_RULE_ARGS;
    CAtom *q = ad_add(F, ad_mul(F, x[0], x[0]), ad_mul(F, x[1], x[1]));
    CAtom *n = ad_sub(F, ad_mul(F, x[1], dx[0]), ad_mul(F, x[0], dx[1]));
    return ad_div(F, n, q);
}

/* Ties: max takes the first operand's tangent, min the second's, so that
 * max x y + min x y has the tangent of x + y (ad-cases 5). */
RULE(rule_max)
{
    UNUSED_RULE_ARGS;
    return ad_select(F, ad_cmp(F, P_GE, x[0], x[1]), dx[0], dx[1]);
}

RULE(rule_min)
{
    UNUSED_RULE_ARGS;
    return ad_select(F, ad_cmp(F, P_LT, x[0], x[1]), dx[0], dx[1]);
}

RULE(rule_zero) { UNUSED_RULE_ARGS; return NULL; }

/* ---- reductions and linear algebra ---- */

/* The dimensions of an array as int atoms. */
int ad_dims_of(AdFwd *F, CAtom *a, CAtom **out)
{
    int r = rank_of_atom(a);
    if (r == 1) {
        out[0] = ad_emit1(F, "n", P_LENGTH, type_int(), a, 0);
        return 1;
    }
    Type **ts = NEWN(Type *, r);
    for (int i = 0; i < r; i++)
        ts[i] = type_int();
    CAtom *s = ad_emit1(F, "sh", P_SHAPE, type_tuple(ts, r), a, 0);
    for (int i = 0; i < r && i < 8; i++)
        out[i] = ad_emit1(F, "n", P_PROJ, type_int(), s, i);
    return r;
}

CAtom *ad_flatten(AdFwd *F, CAtom *a, CAtom **size)
{
    CAtom *d[8];
    int r = ad_dims_of(F, a, d);
    if (r == 1) {
        if (size)
            *size = d[0];
        return a;
    }
    CAtom *n = d[0];
    for (int i = 1; i < r; i++)
        n = ad_emit2(F, "n", P_MUL, type_int(), n, d[i]);
    if (size)
        *size = n;
    CAtom *xs[2] = {a, n};
    return ad_emit(F, "flat", P_RESHAPE, type_array(elem_of(core_atom_type(a)), 1), xs, 2, 0);
}

/* d prod x: the product loop's tangent, (p, dp) -> (p x_i, dp x_i + p dx_i),
 * which is exact with zeros among the x_i (ad-cases 10) and divides by
 * nothing. */
RULE(rule_prod)
{
    UNUSED_RULE_ARGS;
    CAtom *n;
    CAtom *xf = ad_flatten(F, x[0], &n);
    CAtom *df = ad_flatten(F, dx[0], NULL);
    Type *et = elem_of(core_atom_type(x[0]));
    Type *st = type_tuple2(et, et);
    CAtom *ini[2] = {ad_lit(1, et), ad_lit(0, et)};
    CAtom *init = ad_emit(F, "s", P_TUPLE, st, ini, 2, 0);
    CVar *s = core_var("s", st, F->loc), *iv = core_var("i", type_int(), F->loc);
    CBlock *body = core_block_new();
    CBlock *save = F->blk;
    F->blk = body;
    CAtom *sa = core_atom_var(s), *ia = core_atom_var(iv);
    CAtom *p = ad_emit1(F, "p", P_PROJ, et, sa, 0), *dp = ad_emit1(F, "dp", P_PROJ, et, sa, 1);
    CAtom *xi = ad_emit2(F, "x", P_INDEX, et, xf, ia), *dxi = ad_emit2(F, "dx", P_INDEX, et, df, ia);
    CAtom *np = ad_mul(F, p, xi);
    CAtom *ndp = ad_add(F, ad_mul(F, dp, xi), ad_mul(F, p, dxi));
    CAtom *nx[2] = {np, ndp};
    body->result = ad_emit(F, "s", P_TUPLE, st, nx, 2, 0);
    F->blk = save;
    CExpr *lp = core_expr(CE_LOOP, st, F->loc);
    lp->nargs = 2;
    lp->args = NEWN(CAtom *, 2);
    lp->args[0] = init;
    lp->args[1] = n;
    lp->u.loop.state = s;
    lp->u.loop.kind = LOOP_FOR;
    lp->u.loop.ivar = iv;
    lp->u.loop.body = body;
    CAtom *r = ad_bind_expr(F, "pr", lp);
    return ad_emit1(F, "dprod", P_PROJ, et, r, 1);
}

/* maximum: the tangent at the (first) arg max; minimum: at the arg max of -x */
RULE(rule_maximum)
{
    UNUSED_RULE_ARGS;
    CAtom *xf = ad_flatten(F, x[0], NULL), *df = ad_flatten(F, dx[0], NULL);
    if (e->u.prim.op == P_MINIMUM)
        xf = ad_neg(F, xf);
    CAtom *i = ad_emit1(F, "i", P_ARGMAX, type_int(), xf, 0);
    return ad_emit2(F, "d", P_INDEX, elem_of(core_atom_type(x[0])), df, i);
}

/* dot and @ are bilinear */
RULE(rule_bilinear)
{
    UNUSED_RULE_ARGS;
    Prim op = e->u.prim.op;
    Type *t = tangent_of(e->type);
    CAtom *a = dx[0] ? ad_emit2(F, "d", op, t, dx[0], x[1]) : NULL;
    CAtom *b = dx[1] ? ad_emit2(F, "d", op, t, x[0], dx[1]) : NULL;
    return ad_add(F, a, b);
}

/* The sum over the last axis keeping it (length 1), for softmax. */
CAtom *ad_sum_last(AdFwd *F, CAtom *a, bool keep)
{
    Type *t = core_atom_type(a);
    int r = rank_of(t);
    Type *et = elem_of(t);
    if (r == 1)
        return ad_emit1(F, "s", P_SUM, et, a, 0);
    CAtom *d[8];
    ad_dims_of(F, a, d);
    CAtom *rows = d[0];
    for (int i = 1; i < r - 1; i++)
        rows = ad_emit2(F, "n", P_MUL, type_int(), rows, d[i]);
    CAtom *xs[3] = {a, rows, d[r - 1]};
    CAtom *m = ad_emit(F, "m", P_RESHAPE, type_array(et, 2), xs, 3, 0);
    CAtom *od[1] = {d[r - 1]};
    CAtom *ones = ad_emit(F, "o", P_ONES, type_array(et, 1), od, 1, 0);
    CAtom *s = ad_emit2(F, "s", P_MATMUL, type_array(et, 1), m, ones);
    CAtom **nd = NEWN(CAtom *, r + 1);
    nd[0] = s;
    for (int i = 0; i < r - 1; i++)
        nd[i + 1] = d[i];
    int nr = r - 1;
    if (keep)
        nd[++nr] = core_atom_int(1);
    return ad_emit(F, "s", P_RESHAPE, type_array(et, nr), nd, nr + 1, 0);
}

/* softmax: dy = y (dx - sum(y dx)) along the last axis */
RULE(rule_softmax)
{
    UNUSED_RULE_ARGS;
    CAtom *s = ad_sum_last(F, ad_mul(F, y, dx[0]), true);
    return ad_mul(F, y, ad_sub(F, dx[0], s));
}

/* logsumexp: d = sum(softmax x * dx) along the last axis (stable: softmax
 * is computed shifted by the maximum) */
RULE(rule_logsumexp)
{
    UNUSED_RULE_ARGS;
    CAtom *p = ad_emit1(F, "p", P_SOFTMAX, core_atom_type(x[0]), x[0], 0);
    return ad_sum_last(F, ad_mul(F, p, dx[0]), false);
}

/* Jacobi's formula by rows: d det A = Σ_i det (A with row i replaced by
 * row i of dA), det being multilinear in the rows. Exact at singular
 * matrices too (ad-cases 11: no inverse), and its own derivative is again
 * made of dets, so nesting grows the code by a constant factor per level.
 * O(n⁴) per tangent. */
RULE(rule_det)
{
    UNUSED_RULE_ARGS;
    Type *mt = core_atom_type(x[0]);
    Type *et = elem_of(mt);
    Type *rt = type_array(et, 1);
    CAtom *n = ad_emit1(F, "n", P_LENGTH, type_int(), x[0], 0);
    CAtom *idx = ad_emit1(F, "is", P_IOTA, type_array(type_int(), 1), n, 0);
    CVar *iv = core_var("i", type_int(), F->loc);
    CBlock *ib = core_block_new();
    CBlock *save = F->blk;
    F->blk = ib;
    CAtom *ia = core_atom_var(iv);
    CAtom *row = ad_emit2(F, "row", P_INDEX, rt, dx[0], ia);
    CAtom *us[3] = {x[0], row, ia};
    CAtom *ai = ad_emit(F, "ai", P_UPDATE, mt, us, 3, 0);
    ib->result = ad_emit1(F, "di", P_DET, et, ai, 0);
    F->blk = save;
    CLambda *il = core_lambda(&iv, 1, ib, type_func(type_int(), et), F->loc);
    CAtom *ds = ad_emit_soac(F, "ds", SOAC_MAP, rt, il, &idx, 1);
    return ad_emit1(F, "ddet", P_SUM, et, ds, 0);
}

/* d inv A = -inv A dA inv A */
RULE(rule_inv)
{
    UNUSED_RULE_ARGS;
    Type *mt = core_atom_type(y);
    CAtom *a = ad_emit2(F, "t", P_MATMUL, mt, y, dx[0]);
    return ad_neg(F, ad_emit2(F, "t", P_MATMUL, mt, a, y));
}

/* x = solve A b: dx = solve A (db - dA x) */
RULE(rule_solve)
{
    UNUSED_RULE_ARGS;
    Type *bt = core_atom_type(y);
    CAtom *r = dx[1];
    if (dx[0])
        r = ad_sub(F, r, ad_emit2(F, "t", P_MATMUL, bt, dx[0], y));
    return ad_emit2(F, "dx", P_SOLVE, bt, x[0], r);
}

/* The mask of Φ: 1 below the diagonal, 1/2 on it, 0 above. */
static CAtom *phi_mask(AdFwd *F, CAtom *a)
{
    Type *et = elem_of(core_atom_type(a));
    CAtom *n = ad_emit1(F, "n", P_LENGTH, type_int(), a, 0);
    CAtom *iv = ad_emit1(F, "is", P_IOTA, type_array(type_int(), 1), n, 0);
    CAtom *cd[3] = {iv, n, core_atom_int(1)};
    CAtom *col = ad_emit(F, "col", P_RESHAPE, type_array(type_int(), 2), cd, 3, 0);
    CAtom *below = ad_cmp(F, P_LT, iv, col); /* j < i */
    CAtom *diag = ad_cmp(F, P_EQ, iv, col);
    return ad_select(F, below, ad_lit(1, et), ad_select(F, diag, ad_lit(0.5, et), ad_lit(0, et)));
}

/* L = chol A: dL = L Φ(L⁻¹ dA L⁻ᵀ) (Murray 2016, "Differentiation of the
 * Cholesky decomposition") */
CAtom *ad_chol_tangent(AdFwd *F, CAtom *L, CAtom *dA)
{
    Type *mt = core_atom_type(L);
    CAtom *li = ad_emit1(F, "linv", P_INV, mt, L, 0);
    CAtom *lt = ad_emit1(F, "linvt", P_TRANSPOSE, mt, li, 0);
    CAtom *m = ad_emit2(F, "m", P_MATMUL, mt, ad_emit2(F, "m", P_MATMUL, mt, li, dA), lt);
    CAtom *phi = ad_mul(F, m, phi_mask(F, L));
    return ad_emit2(F, "dl", P_MATMUL, mt, L, phi);
}

RULE(rule_cholesky)
{
    UNUSED_RULE_ARGS;
    return ad_chol_tangent(F, y, dx[0]);
}

#undef RULE

void ad_forward_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    for (int i = 0; i < P__COUNT; i++)
        if (core_prims[i].flags & PRIM_LINEAR)
            core_prims[i].jvp_rule = (void *)rule_linear;
    struct { Prim op; AdJvpRule r; } t[] = {
        {P_ADD, rule_add}, {P_SUB, rule_sub}, {P_NEG, rule_linear}, {P_MUL, rule_mul},
        {P_DIV, rule_div}, {P_MOD, rule_mod}, {P_POW, rule_pow}, {P_EXP, rule_exp},
        {P_LOG, rule_log}, {P_LOG1P, rule_log1p}, {P_EXPM1, rule_expm1}, {P_SQRT, rule_sqrt},
        {P_SIN, rule_sin}, {P_COS, rule_cos}, {P_TAN, rule_tan}, {P_TANH, rule_tanh},
        {P_ABS, rule_abs}, {P_SIGMOID, rule_sigmoid}, {P_SOFTPLUS, rule_softplus},
        {P_RELU, rule_relu}, {P_FLOOR, rule_zero}, {P_CEIL, rule_zero}, {P_ATAN2, rule_atan2},
        {P_MIN, rule_min}, {P_MAX, rule_max}, {P_TO_FLOAT, rule_linear}, {P_TO_F32, rule_linear},
        {P_SELECT, rule_select}, {P_PROD, rule_prod}, {P_MAXIMUM, rule_maximum},
        {P_MINIMUM, rule_maximum}, {P_DOT, rule_bilinear}, {P_MATMUL, rule_bilinear},
        {P_SOFTMAX, rule_softmax}, {P_LOGSUMEXP, rule_logsumexp}, {P_DET, rule_det},
        {P_INV, rule_inv}, {P_SOLVE, rule_solve}, {P_CHOLESKY, rule_cholesky},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        core_prims[t[i].op].jvp_rule = (void *)t[i].r;
}
