/* ad_taylor.c — Taylor mode: jet, by the forward macro of ad_forward.c at
 * order K, with one Taylor rule per primitive.
 *
 * Every value carries its truncated Taylor series x(t) = x_0 + x_1 t + ...
 * + x_K t^K in normalised coefficients (x_k = x^(k)(0) / k!); linear
 * primitives act coefficientwise (their forward rule per coefficient), and
 * the others use the standard recurrences (Griewank & Walther, "Evaluating
 * Derivatives", 2nd ed., ch. 13, table 13.1/13.2), O(K²) per primitive:
 *   product      y_k = Σ_{j=0..k} a_j b_{k-j}
 *   quotient     y_k = (a_k - Σ_{j=1..k} b_j y_{k-j}) / b_0
 *   exp          y_k = (1/k) Σ_{j=1..k} j a_j y_{k-j}
 *   log          y_k = (a_k - (1/k) Σ_{j=1..k-1} j y_j a_{k-j}) / a_0
 *   sqrt         y_k = (a_k - Σ_{j=1..k-1} y_j y_{k-j}) / (2 y_0)
 *   a^c          y_k = (1/(k a_0)) Σ_{j=1..k} (c j - (k - j)) a_j y_{k-j}
 *   sin, cos     s_k = (1/k) Σ j a_j c_{k-j},  c_k = -(1/k) Σ j a_j s_{k-j}
 *   y' = g a'    y_k = (1/k) Σ_{j=1..k} j a_j g_{k-j}   (tan, tanh, sigmoid,
 *                softplus, atan2 with g a series built from y or a)
 * jet's interface uses JAX's convention: the directions v_j are derivatives,
 * x(t) = x + v_1 t + v_2 t²/2! + ..., and the results d_j = j! y_j. */
#include "dcc.h"

#include <math.h>
#include <string.h>

static Type *rs(Type *t) { return type_resolve(t); }

static Type *atype(CAtom *a) { return core_atom_type(a); }

static CAtom **ser(AdFwd *F) { return NEWN(CAtom *, F->order + 1); }

/* Σ_{j=lo..hi} w_j a_j b_{k-j}, w_j = wa * j + wb (NULL when all zero) */
static CAtom *conv(AdFwd *F, CAtom **a, CAtom **b, int k, int lo, int hi, double wa, double wb)
{
    CAtom *s = NULL;
    for (int j = lo; j <= hi; j++) {
        if (!a[j] || !b[k - j])
            continue;
        double w = wa * j + wb;
        if (w == 0)
            continue;
        CAtom *t = ad_mul(F, a[j], b[k - j]);
        if (w != 1)
            t = ad_mul(F, ad_lit(w, atype(a[j])), t);
        s = ad_add(F, s, t);
    }
    return s;
}

/* y' = g a', y_0 given: y_k = (1/k) Σ_{j=1..k} j a_j g_{k-j} */
static CAtom *chain_k(AdFwd *F, CAtom **a, CAtom **g, int k)
{
    CAtom *s = conv(F, a, g, k, 1, k, 1, 0);
    return s ? ad_mul(F, ad_lit(1.0 / k, atype(s)), s) : NULL;
}

/* product of two series */
static void s_mul(AdFwd *F, CAtom **a, CAtom **b, CAtom **y, int from)
{
    for (int k = from; k <= F->order; k++)
        y[k] = conv(F, a, b, k, 0, k, 0, 1);
}

/* quotient: y_0 given */
static void s_div(AdFwd *F, CAtom **a, CAtom **b, CAtom **y)
{
    for (int k = 1; k <= F->order; k++) {
        CAtom *s = ad_sub(F, a[k], conv(F, b, y, k, 1, k, 0, 1));
        y[k] = ad_div(F, s, b[0]);
    }
}

/* exp: y_0 given */
static void s_exp(AdFwd *F, CAtom **a, CAtom **y)
{
    for (int k = 1; k <= F->order; k++)
        y[k] = chain_k(F, a, y, k);
}

/* log: y_0 given (a_0 > 0) */
static void s_log(AdFwd *F, CAtom **a, CAtom **y)
{
    for (int k = 1; k <= F->order; k++) {
        CAtom *s = conv(F, y, a, k, 1, k - 1, 1, 0);
        if (s)
            s = ad_mul(F, ad_lit(1.0 / k, atype(s)), s);
        y[k] = ad_div(F, ad_sub(F, a[k], s), a[0]);
    }
}

#define TRULE(name) static void name(AdFwd *F, CExpr *e, CAtom ***x, CAtom **y)

TRULE(t_mul)
{
    (void)e;
    s_mul(F, x[0], x[1], y, 1);
}

TRULE(t_div)
{
    (void)e;
    s_div(F, x[0], x[1], y);
}

/* fmod: y = a - q b with q = trunc(a0 / b0) constant */
TRULE(t_mod)
{
    (void)e;
    CAtom *q = ad_div(F, ad_sub(F, x[0][0], y[0]), x[1][0]);
    for (int k = 1; k <= F->order; k++)
        y[k] = ad_sub(F, x[0][k], ad_mul(F, q, x[1][k]));
}

TRULE(t_exp)
{
    (void)e;
    s_exp(F, x[0], y);
}

TRULE(t_expm1)
{
    (void)e;
    CAtom **ex = ser(F);
    ex[0] = ad_add(F, y[0], ad_lit(1, atype(y[0])));
    s_exp(F, x[0], ex);
    for (int k = 1; k <= F->order; k++)
        y[k] = ex[k];
}

TRULE(t_log)
{
    (void)e;
    s_log(F, x[0], y);
}

TRULE(t_log1p)
{
    (void)e;
    CAtom **b = ser(F);
    b[0] = ad_add(F, x[0][0], ad_lit(1, atype(x[0][0])));
    for (int k = 1; k <= F->order; k++)
        b[k] = x[0][k];
    s_log(F, b, y);
}

TRULE(t_sqrt)
{
    (void)e;
    CAtom *two_y0 = ad_mul(F, ad_lit(2, atype(y[0])), y[0]);
    for (int k = 1; k <= F->order; k++) {
        CAtom *s = ad_sub(F, x[0][k], conv(F, y, y, k, 1, k - 1, 0, 1));
        y[k] = ad_div(F, s, two_y0);
    }
}

/* sin and cos together */
static void s_sincos(AdFwd *F, CAtom **a, CAtom **s, CAtom **c)
{
    for (int k = 1; k <= F->order; k++) {
        s[k] = chain_k(F, a, c, k);
        c[k] = ad_neg(F, chain_k(F, a, s, k));
    }
}

TRULE(t_sin)
{
    (void)e;
    CAtom **c = ser(F);
    c[0] = ad_un(F, P_COS, x[0][0]);
    s_sincos(F, x[0], y, c);
}

TRULE(t_cos)
{
    (void)e;
    CAtom **s = ser(F);
    s[0] = ad_un(F, P_SIN, x[0][0]);
    s_sincos(F, x[0], s, y);
}

/* y' = w a' with w = sgn (1 ± y²) (tan: +, tanh: -), w_k from y_0..y_k */
static void square_chain(AdFwd *F, CAtom **a, CAtom **y, double one, double sgn)
{
    CAtom **w = ser(F);
    Type *t = atype(y[0]);
    w[0] = ad_add(F, ad_lit(one, t), ad_mul(F, ad_lit(sgn, t), ad_mul(F, y[0], y[0])));
    for (int k = 1; k <= F->order; k++) {
        y[k] = chain_k(F, a, w, k);
        CAtom *q = conv(F, y, y, k, 0, k, 0, 1);
        w[k] = ad_mul(F, ad_lit(sgn, t), q);
    }
}

TRULE(t_tan)
{
    (void)e;
    square_chain(F, x[0], y, 1, 1);
}

TRULE(t_tanh)
{
    (void)e;
    square_chain(F, x[0], y, 1, -1);
}

/* sigmoid: y' = (y - y²) a' */
static void s_sigmoid(AdFwd *F, CAtom **a, CAtom **y)
{
    CAtom **w = ser(F);
    Type *t = atype(y[0]);
    w[0] = ad_mul(F, y[0], ad_sub(F, ad_lit(1, t), y[0]));
    for (int k = 1; k <= F->order; k++) {
        y[k] = chain_k(F, a, w, k);
        w[k] = ad_sub(F, y[k], conv(F, y, y, k, 0, k, 0, 1));
    }
}

TRULE(t_sigmoid)
{
    (void)e;
    s_sigmoid(F, x[0], y);
}

/* softplus: y' = sigmoid(a) a' */
TRULE(t_softplus)
{
    (void)e;
    CAtom **s = ser(F);
    s[0] = ad_un(F, P_SIGMOID, x[0][0]);
    s_sigmoid(F, x[0], s);
    for (int k = 1; k <= F->order; k++)
        y[k] = chain_k(F, x[0], s, k);
}

/* |a|: sign(a_0) a_k (sign 0 = 0, as in forward mode) */
TRULE(t_abs)
{
    (void)e;
    Type *t = atype(x[0][0]);
    CAtom *pos = ad_cmp(F, P_GT, x[0][0], ad_lit(0, t));
    CAtom *neg = ad_cmp(F, P_LT, x[0][0], ad_lit(0, t));
    CAtom *sg = ad_select(F, pos, ad_lit(1, t), ad_select(F, neg, ad_lit(-1, t), ad_lit(0, t)));
    for (int k = 1; k <= F->order; k++)
        y[k] = ad_mul(F, sg, x[0][k]);
}

TRULE(t_relu)
{
    (void)e;
    CAtom *pos = ad_cmp(F, P_GT, x[0][0], ad_lit(0, atype(x[0][0])));
    for (int k = 1; k <= F->order; k++)
        y[k] = ad_select(F, pos, x[0][k], NULL);
}

/* max: the first operand's series on ties, min: the second's */
TRULE(t_minmax)
{
    Prim op = e->u.prim.op;
    CAtom *c = ad_cmp(F, op == P_MAX ? P_GE : P_LT, x[0][0], x[1][0]);
    for (int k = 1; k <= F->order; k++)
        y[k] = ad_select(F, c, x[0][k], x[1][k]);
}

TRULE(t_zero)
{
    (void)e, (void)x;
    for (int k = 1; k <= F->order; k++)
        y[k] = NULL;
}

/* a^b. With b a literal integer 0 <= b <= 64: repeated products (exact at
 * a = 0, ad-cases 4); with b constant: the pow recurrence; else
 * exp(b log a). */
TRULE(t_pow)
{
    (void)e;
    int K = F->order;
    CAtom **a = x[0], **b = x[1];
    bool bconst = true;
    for (int k = 1; k <= K; k++)
        if (b[k])
            bconst = false;
    CAtom *c = b[0];
    if (bconst && c->kind == CA_FLOAT && c->u.fval >= 0 && c->u.fval <= 64 && c->u.fval == floor(c->u.fval)) {
        int n = (int)c->u.fval;
        if (n == 0) {
            for (int k = 1; k <= K; k++)
                y[k] = NULL;
            return;
        }
        /* binary powering of the series */
        CAtom **r = NULL, **p = ser(F);
        for (int k = 0; k <= K; k++)
            p[k] = a[k];
        while (n) {
            if (n & 1) {
                if (!r) {
                    r = ser(F);
                    for (int k = 0; k <= K; k++)
                        r[k] = p[k];
                } else {
                    CAtom **q = ser(F);
                    q[0] = ad_mul(F, r[0], p[0]);
                    s_mul(F, r, p, q, 1);
                    r = q;
                }
            }
            n >>= 1;
            if (n) {
                CAtom **q = ser(F);
                q[0] = ad_mul(F, p[0], p[0]);
                s_mul(F, p, p, q, 1);
                p = q;
            }
        }
        for (int k = 1; k <= K; k++)
            y[k] = r[k];
        return;
    }
    if (bconst) {
        for (int k = 1; k <= K; k++) {
            CAtom *s = NULL;
            for (int j = 1; j <= k; j++) {
                if (!a[j] || !y[k - j])
                    continue;
                /* (c j - (k - j)) */
                CAtom *w = ad_sub(F, ad_mul(F, ad_lit((double)j, atype(c)), c), ad_lit((double)(k - j), atype(c)));
                s = ad_add(F, s, ad_mul(F, w, ad_mul(F, a[j], y[k - j])));
            }
            y[k] = s ? ad_div(F, s, ad_mul(F, ad_lit((double)k, atype(a[0])), a[0])) : NULL;
        }
        return;
    }
    /* y = exp(b log a) */
    CAtom **l = ser(F), **q = ser(F);
    l[0] = ad_un(F, P_LOG, a[0]);
    s_log(F, a, l);
    q[0] = ad_mul(F, b[0], l[0]);
    s_mul(F, b, l, q, 1);
    s_exp(F, q, y);
}

/* atan2 a b: y' = (b a' - a b') / (a² + b²) = u a' - v b', u = b/q, v = a/q */
TRULE(t_atan2)
{
    (void)e;
    int K = F->order;
    CAtom **a = x[0], **b = x[1];
    CAtom **q = ser(F), **u = ser(F), **v = ser(F);
    q[0] = ad_add(F, ad_mul(F, a[0], a[0]), ad_mul(F, b[0], b[0]));
    for (int k = 1; k <= K; k++)
        q[k] = ad_add(F, conv(F, a, a, k, 0, k, 0, 1), conv(F, b, b, k, 0, k, 0, 1));
    u[0] = ad_div(F, b[0], q[0]);
    v[0] = ad_div(F, a[0], q[0]);
    s_div(F, b, q, u);
    s_div(F, a, q, v);
    for (int k = 1; k <= K; k++)
        y[k] = ad_sub(F, chain_k(F, a, u, k), chain_k(F, b, v, k));
}

/* dot, @: bilinear, so the product recurrence with the operation */
TRULE(t_bilinear)
{
    Prim op = e->u.prim.op;
    Type *t = rs(type_tangent(e->type));
    for (int k = 1; k <= F->order; k++) {
        CAtom *s = NULL;
        for (int j = 0; j <= k; j++) {
            if (!x[0][j] || !x[1][k - j])
                continue;
            CAtom *xs[2] = {x[0][j], x[1][k - j]};
            s = ad_add(F, s, ad_emit(F, "t", op, t, xs, 2, 0));
        }
        y[k] = s;
    }
}

/* maximum/minimum: the series at the arg max (of -x for minimum) */
TRULE(t_maximum)
{
    CAtom *xf = ad_flatten(F, x[0][0], NULL);
    if (e->u.prim.op == P_MINIMUM)
        xf = ad_neg(F, xf);
    CAtom *xs[1] = {xf};
    CAtom *i = ad_emit(F, "i", P_ARGMAX, type_int(), xs, 1, 0);
    Type *et = atype(y[0]);
    for (int k = 1; k <= F->order; k++) {
        if (!x[0][k]) {
            y[k] = NULL;
            continue;
        }
        CAtom *ys[2] = {ad_flatten(F, x[0][k], NULL), i};
        y[k] = ad_emit(F, "d", P_INDEX, et, ys, 2, 0);
    }
}

/* prod: a loop multiplying the series of the elements */
TRULE(t_prod)
{
    (void)e;
    int K = F->order;
    CAtom *n;
    CAtom *xf = ad_flatten(F, x[0][0], &n);
    Type *et = atype(y[0]);
    CAtom **cf = ser(F);
    for (int k = 1; k <= K; k++)
        cf[k] = x[0][k] ? ad_flatten(F, x[0][k], NULL) : NULL;
    Type **ts = NEWN(Type *, K + 1);
    CAtom **ini = ser(F);
    for (int k = 0; k <= K; k++) {
        ts[k] = et;
        ini[k] = ad_lit(k == 0 ? 1 : 0, et);
    }
    Type *st = type_tuple(ts, K + 1);
    CAtom *init = ad_emit(F, "s", P_TUPLE, st, ini, K + 1, 0);
    CVar *s = core_var("s", st, F->loc), *iv = core_var("i", type_int(), F->loc);
    CBlock *body = core_block_new();
    CBlock *save = F->blk;
    F->blk = body;
    CAtom *sa = core_atom_var(s), *ia = core_atom_var(iv);
    CAtom **p = ser(F), **xi = ser(F), **np = ser(F);
    for (int k = 0; k <= K; k++) {
        CAtom *one[1] = {sa};
        p[k] = ad_emit(F, "p", P_PROJ, et, one, 1, k);
        CAtom *ix[2] = {k == 0 ? xf : cf[k], ia};
        xi[k] = (k == 0 || cf[k]) ? ad_emit(F, "x", P_INDEX, et, ix, 2, 0) : NULL;
    }
    np[0] = ad_mul(F, p[0], xi[0]);
    s_mul(F, p, xi, np, 1);
    for (int k = 0; k <= K; k++)
        if (!np[k])
            np[k] = ad_lit(0, et);
    body->result = ad_emit(F, "s", P_TUPLE, st, np, K + 1, 0);
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
    CVar *rv = core_bind(F->blk, "pr", lp);
    ad_note_def(rv, lp);
    CAtom *r = core_atom_var(rv);
    for (int k = 1; k <= K; k++) {
        CAtom *one[1] = {r};
        y[k] = ad_emit(F, "dprod", P_PROJ, et, one, 1, k);
    }
}

/* logsumexp and softmax through exp, the sum over the last axis and log or
 * division, all shifted by the (constant) maximum for stability */
TRULE(t_softmax)
{
    int K = F->order;
    bool lse = e->u.prim.op == P_LOGSUMEXP;
    CAtom *a0 = x[0][0];
    /* e_0 = softmax(a0) * s_0 with the shift folded: work with the
     * normalised p = softmax(a0) and s_0 = 1 */
    CAtom *one[1] = {a0};
    CAtom **ex = ser(F), **s = ser(F);
    ex[0] = ad_emit(F, "p", P_SOFTMAX, atype(a0), one, 1, 0);
    s_exp(F, x[0], ex); /* exp(a - lse(a0)): the same recurrence, e_0 = p */
    s[0] = NULL;
    for (int k = 1; k <= K; k++)
        s[k] = ex[k] ? ad_sum_last(F, ex[k], !lse) : NULL;
    if (lse) {
        /* y = lse(a0) + log(s), s_0 = 1 */
        CAtom **l = ser(F);
        l[0] = NULL;
        CAtom **sb = ser(F);
        sb[0] = ad_lit(1, atype(y[0]));
        for (int k = 1; k <= K; k++)
            sb[k] = s[k];
        s_log(F, sb, l);
        for (int k = 1; k <= K; k++)
            y[k] = l[k];
        return;
    }
    /* y = ex / s, s_0 = 1 (keeping the last axis for broadcasting) */
    CAtom **sb = ser(F);
    sb[0] = ad_lit(1, atype(y[0]));
    for (int k = 1; k <= K; k++)
        sb[k] = s[k];
    s_div(F, ex, sb, y);
}

/* inv: Y_k = -Y_0 Σ_{j=1..k} A_j Y_{k-j} */
static void s_inv(AdFwd *F, CAtom **a, CAtom **y)
{
    Type *mt = atype(y[0]);
    for (int k = 1; k <= F->order; k++) {
        CAtom *s = NULL;
        for (int j = 1; j <= k; j++) {
            if (!a[j] || !y[k - j])
                continue;
            CAtom *xs[2] = {a[j], y[k - j]};
            s = ad_add(F, s, ad_emit(F, "t", P_MATMUL, mt, xs, 2, 0));
        }
        if (!s) {
            y[k] = NULL;
            continue;
        }
        CAtom *xs[2] = {y[0], s};
        y[k] = ad_neg(F, ad_emit(F, "t", P_MATMUL, mt, xs, 2, 0));
    }
}

TRULE(t_inv)
{
    (void)e;
    s_inv(F, x[0], y);
}

/* solve A B: X_k = solve(A_0, B_k - Σ_{j=1..k} A_j X_{k-j}) */
TRULE(t_solve)
{
    (void)e;
    Type *bt = atype(y[0]);
    for (int k = 1; k <= F->order; k++) {
        CAtom *s = x[1][k];
        for (int j = 1; j <= k; j++) {
            if (!x[0][j] || !y[k - j])
                continue;
            CAtom *xs[2] = {x[0][j], y[k - j]};
            s = ad_sub(F, s, ad_emit(F, "t", P_MATMUL, bt, xs, 2, 0));
        }
        if (!s) {
            y[k] = NULL;
            continue;
        }
        CAtom *xs[2] = {x[0][0], s};
        y[k] = ad_emit(F, "x", P_SOLVE, bt, xs, 2, 0);
    }
}

/* det: (log det)' = tr(A⁻¹ A'), det' = det (log det)'. Needs A_0
 * invertible. */
TRULE(t_det)
{
    (void)e;
    int K = F->order;
    CAtom **a = x[0];
    Type *mt = atype(a[0]), *et = atype(y[0]);
    CAtom **inv = NEWN(CAtom *, K + 1);
    CAtom *one[1] = {a[0]};
    inv[0] = ad_emit(F, "inv", P_INV, mt, one, 1, 0);
    s_inv(F, a, inv);
    /* (log det)'_m = Σ_{i=0..m} (i+1) tr(Y_{m-i} A_{i+1}) */
    CAtom **lp = NEWN(CAtom *, K + 1);
    for (int m = 0; m < K; m++) {
        CAtom *s = NULL;
        for (int i = 0; i <= m; i++) {
            if (!a[i + 1] || !inv[m - i])
                continue;
            CAtom *yt[1] = {inv[m - i]};
            CAtom *t = ad_emit(F, "yt", P_TRANSPOSE, mt, yt, 1, 0);
            CAtom *pr[1] = {ad_mul(F, t, a[i + 1])};
            CAtom *tr = ad_emit(F, "tr", P_SUM, et, pr, 1, 0);
            s = ad_add(F, s, ad_mul(F, ad_lit(i + 1, et), tr));
        }
        lp[m] = s;
    }
    /* D_k = (1/k) Σ_{i=0..k-1} D_{k-1-i} (L')_i */
    for (int k = 1; k <= K; k++) {
        CAtom *s = NULL;
        for (int i = 0; i <= k - 1; i++)
            if (lp[i] && y[k - 1 - i])
                s = ad_add(F, s, ad_mul(F, y[k - 1 - i], lp[i]));
        y[k] = s ? ad_mul(F, ad_lit(1.0 / k, et), s) : NULL;
    }
}

/* cholesky: L_0 L_k^T + L_k L_0^T = A_k - Σ_{j=1..k-1} L_j L_{k-j}^T */
TRULE(t_cholesky)
{
    (void)e;
    Type *mt = atype(y[0]);
    for (int k = 1; k <= F->order; k++) {
        CAtom *m = x[0][k];
        for (int j = 1; j <= k - 1; j++) {
            if (!y[j] || !y[k - j])
                continue;
            CAtom *one[1] = {y[k - j]};
            CAtom *xs[2] = {y[j], ad_emit(F, "lt", P_TRANSPOSE, mt, one, 1, 0)};
            m = ad_sub(F, m, ad_emit(F, "t", P_MATMUL, mt, xs, 2, 0));
        }
        y[k] = m ? ad_chol_tangent(F, y[0], m) : NULL;
    }
}

#undef TRULE

void ad_taylor_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    struct { Prim op; AdTaylorRule r; } t[] = {
        {P_MUL, t_mul}, {P_DIV, t_div}, {P_MOD, t_mod}, {P_POW, t_pow}, {P_EXP, t_exp},
        {P_EXPM1, t_expm1}, {P_LOG, t_log}, {P_LOG1P, t_log1p}, {P_SQRT, t_sqrt}, {P_SIN, t_sin},
        {P_COS, t_cos}, {P_TAN, t_tan}, {P_TANH, t_tanh}, {P_SIGMOID, t_sigmoid},
        {P_SOFTPLUS, t_softplus}, {P_ABS, t_abs}, {P_RELU, t_relu}, {P_MIN, t_minmax},
        {P_MAX, t_minmax}, {P_FLOOR, t_zero}, {P_CEIL, t_zero}, {P_ATAN2, t_atan2},
        {P_DOT, t_bilinear}, {P_MATMUL, t_bilinear}, {P_MAXIMUM, t_maximum},
        {P_MINIMUM, t_maximum}, {P_PROD, t_prod}, {P_SOFTMAX, t_softmax},
        {P_LOGSUMEXP, t_softmax}, {P_INV, t_inv}, {P_SOLVE, t_solve}, {P_DET, t_det},
        {P_CHOLESKY, t_cholesky},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        core_prims[t[i].op].taylor_rule = (void *)t[i].r;
}

/* ---------------------------------------------------------------- jet */

/* A direction known to be zero: the literal 0.0, or a `zeros`/`zeros_like`
 * in scope. Its coefficient stays symbolic, so no code is generated for it
 * (`jet f x [v, zeros_like v]`, the second-order jet of std/pde, costs the
 * jet of one direction plus the second-order terms). */
static bool zero_direction(CAtom *v)
{
    if (v->kind == CA_FLOAT && v->u.fval == 0)
        return true;
    CExpr *d = ad_def_of(v);
    return d && d->kind == CE_PRIM && (d->u.prim.op == P_ZEROS || d->u.prim.op == P_ZEROS_LIKE);
}

/* jet f x [v1, ..., vK] = (f x, [d1, ..., dK]): the input series is
 * x + Σ v_j t^j / j!, the outputs d_j = j! y_j. K is the length of the
 * list literal (it fixes the code: one coefficient per order). */
CAtom *ad_taylor_jet(CProgram *p, CExpr *e, CBlock *b)
{
    CLambda *l = e->u.deriv.fn;
    CExpr *d = ad_def_of(e->args[1]);
    if (!d || d->kind != CE_PRIM || d->u.prim.op != P_ARRAY) {
        error_at(e->loc, "jet needs its directions as a list literal [v1, ..., vk] (their number fixes the "
                         "order of the Taylor polynomial)");
        return NULL;
    }
    int K = d->nargs;
    Type *a = rs(l->params[0]->type);
    Type *bt = rs(core_atom_type(l->body->result));
    Type *rt = rs(e->type);
    Type *dlist = rs(rt->args[1]);
    if (rs(a)->kind == TY_FUNC || bt->kind == TY_FUNC) {
        error_at(e->loc, "jet of a function of or to functions is not supported");
        return NULL;
    }
    AdFwd F = {.prog = p, .order = K > 0 ? K : 1, .blk = b, .loc = e->loc, .ok = true};
    AdRep *arg = ad_rep(&F, e->args[0]);
    double fact = 1;
    bool diff = !ad_tangent_trivial(a);
    for (int j = 1; j <= K; j++) {
        fact *= j;
        CAtom *v = d->args[j - 1];
        if (diff && !zero_direction(v)) {
            ad_check_shapes(b, v, e->args[0], "jet: a direction has shape ", " but the primal has shape ", e->loc);
            arg->c[j] = ad_scale(&F, 1.0 / fact, v);
        }
    }
    AdRep *r = ad_fwd_lambda(&F, l, &arg);
    F.blk = b;
    CAtom *y = r->c[0];
    CAtom **ds = NEWN(CAtom *, K > 0 ? K : 1);
    fact = 1;
    for (int j = 1; j <= K; j++) {
        fact *= j;
        CAtom *c = ad_tangent_trivial(bt) ? NULL : r->c[j];
        ds[j - 1] = ad_materialise(&F, ad_scale(&F, fact, c), bt, y);
    }
    CAtom *list = ad_emit(&F, "ds", P_ARRAY, dlist, ds, K, 0);
    core_map_free(&F.env);
    if (!F.ok)
        return NULL;
    CAtom *xs[2] = {y, list};
    return ad_emit(&F, "jet", P_TUPLE, rt, xs, 2, 0);
}
