/* The laws of learners (Fong, Spivak & Tuyéras, "Backprop as Functor",
 * LICS 2019) with numbers, through the runtime's learner API: >>> is
 * associative, identities are units, the gradient-descent functor preserves
 * >>> (learning the compiled composite equals composing the learnt parts)
 * and ***, the interchange law, the update is p - rate ∇_p E (checked by
 * finite differences), the request is a - ∇_a E, and a training step with
 * sgd equals the update. */
#include "learn_laws.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define RATE 0.1

/* A [rows, cols] (cols 0: a vector of rows) array of deterministic values. */
static dl_array *filled(int64_t rows, int64_t cols, double seed)
{
    int64_t shape[2] = {rows, cols};
    dl_array *a = dl_array_new(DL_F64, cols ? 2 : 1, shape);
    double *d = a->data;
    for (int64_t i = 0; i < a->size; i++)
        d[i] = 0.8 * sin(seed + 1.7 * (double)i) + 0.1 * cos(3.1 * seed * (double)i);
    return a;
}

/* The largest |a[i] - b[i]| over n arrays of equal shapes (inf otherwise). */
static double max_diff(int n, dl_array *const *a, dl_array *const *b)
{
    double m = 0;
    for (int k = 0; k < n; k++) {
        if (a[k]->size != b[k]->size || a[k]->rank != b[k]->rank)
            return INFINITY;
        const double *x = a[k]->data, *y = b[k]->data;
        for (int64_t i = 0; i < a[k]->size; i++)
            if (fabs(x[i] - y[i]) > m)
                m = fabs(x[i] - y[i]);
    }
    return m;
}

static void release(int n, dl_array **a)
{
    for (int k = 0; k < n; k++)
        dl_array_release(a[k]);
}

static int check(int st, const char *what)
{
    if (st)
        printf("%s failed: %s\n", what, dl_last_error());
    return st;
}

/* implement, update and request of l and m (same parameter, input and
 * output counts) at the same parameters; the largest difference of each. */
static int compare(dl_learner *l, dl_learner *m, dl_array *const *p, dl_array *const *a,
                   dl_array *const *b, double out[3])
{
    dl_array *r1[8], *r2[8];
    int np = dl_learner_nparams(l), nin = dl_learner_nin(l), nout = dl_learner_nout(l);
    if (check(dl_learner_implement(l, np, p, a, r1), "implement") ||
        check(dl_learner_implement(m, np, p, a, r2), "implement"))
        return 1;
    out[0] = max_diff(nout, r1, r2);
    release(nout, r1);
    release(nout, r2);
    if (check(dl_learner_update(l, np, p, a, b, r1), "update") ||
        check(dl_learner_update(m, np, p, a, b, r2), "update"))
        return 1;
    out[1] = max_diff(np, r1, r2);
    release(np, r1);
    release(np, r2);
    if (check(dl_learner_request(l, np, p, a, b, r1), "request") ||
        check(dl_learner_request(m, np, p, a, b, r2), "request"))
        return 1;
    out[2] = max_diff(nin, r1, r2);
    release(nin, r1);
    release(nin, r2);
    return 0;
}

int main(void)
{
    /* hidden: [5, 3] -> [5, 4]; linear: [5, 4] -> [5, 2]; wave: [5, 2] -> [5, 2] */
    dl_array *w1 = filled(3, 4, 0.3), *b1 = filled(4, 0, 1.1);
    dl_array *w2 = filled(4, 2, 2.3), *b2 = filled(2, 0, 0.7);
    dl_array *v = filled(2, 0, 1.9);
    dl_array *x = filled(5, 3, 0.5), *c = filled(5, 2, 2.9), *x2 = filled(5, 2, 3.7);

    static const dl_export hidden = DL_EXPORT("hidden", 2, 1, 1, learn_laws_hidden,
        learn_laws_hidden_vjp, learn_laws_call_arr2_float_to_tup2_tup2_arr2_float_arr1_float_arr2_float);
    static const dl_export linear = DL_EXPORT("linear", 2, 1, 1, learn_laws_linear,
        learn_laws_linear_vjp, learn_laws_call_arr2_float_to_tup2_tup2_arr2_float_arr1_float_arr2_float);
    /* no forward function: implement goes through the vjp */
    static const dl_export wave = { "wave", 1, 1, 1, NULL, (dl_export_fn)learn_laws_wave_vjp,
        (dl_pullback_fn)learn_laws_call_arr2_float_to_tup2_arr1_float_arr2_float,
        (dl_release_fn)learn_laws_wave_vjp_release };
    static const dl_export two = DL_EXPORT("two_layers", 4, 1, 1, learn_laws_two_layers,
        learn_laws_two_layers_vjp,
        learn_laws_call_arr2_float_to_tup2_tup4_arr2_float_arr1_float_arr2_float_arr1_float_arr2_float);

    dl_array *ph[] = {w1, b1}, *pl[] = {w2, b2}, *pw[] = {v}, *pt[] = {w1, b1, w2, b2};
    dl_learner *H = dl_learner_gradient(&hidden, RATE, &dl_loss_half_squared, 2, ph);
    dl_learner *L = dl_learner_gradient(&linear, RATE, &dl_loss_half_squared, 2, pl);
    dl_learner *W = dl_learner_gradient(&wave, RATE, &dl_loss_half_squared, 1, pw);
    dl_learner *T = dl_learner_gradient(&two, RATE, &dl_loss_half_squared, 4, pt);
    if (!H || !L || !W || !T) {
        printf("dl_learner_gradient failed: %s\n", dl_last_error());
        return 1;
    }
    dl_array *a[] = {x}, *b[] = {c};
    double d[3];

    /* (H >>> L) >>> W = H >>> (L >>> W): the same numbers */
    dl_learner *HL = dl_learner_seq(H, L), *LW = dl_learner_seq(L, W);
    dl_learner *A1 = dl_learner_seq(HL, W), *A2 = dl_learner_seq(H, LW);
    printf("%s and %s: %d parameter arrays\n", dl_learner_name(A1), dl_learner_name(A2),
           (int)dl_learner_nparams(A1));
    dl_array *p5[] = {w1, b1, w2, b2, v};
    if (compare(A1, A2, p5, a, b, d))
        return 1;
    printf("associativity: implement, update, request differ by %g %g %g\n", d[0], d[1], d[2]);

    /* id >>> H = H = H >>> id */
    dl_learner *I = dl_learner_identity(1);
    dl_learner *IH = dl_learner_seq(I, H), *HI = dl_learner_seq(H, I);
    double e[3];
    dl_array *c4 = filled(5, 4, 1.3), *b4[] = {c4};
    if (compare(IH, H, ph, a, b4, d) || compare(HI, H, ph, a, b4, e))
        return 1;
    dl_array_release(c4);
    printf("left identity: %g %g %g; right identity: %g %g %g\n", d[0], d[1], d[2], e[0], e[1],
           e[2]);

    /* L(two_layers) = L(hidden) >>> L(linear): functoriality (Theorem III.2) */
    if (compare(T, HL, pt, a, b, d))
        return 1;
    printf("functoriality: implement, update, request agree to 1e-12: %d %d %d\n",
           d[0] < 1e-12, d[1] < 1e-12, d[2] < 1e-12);
    dl_array *u[4];
    if (check(dl_learner_update(HL, 4, pt, a, b, u), "update"))
        return 1;
    printf("the update moves the parameters: %d\n", max_diff(4, u, pt) > 1e-3);

    /* U(p) = p - rate ∇_p E: (p - U(p)) / rate against central differences of
     * the loss E(p) = ½ Σ (I(p, x) - c)² */
    double worst = 0, h = 1e-6, loss0;
    if (check(dl_learner_loss(T, 4, pt, a, b, &loss0), "loss"))
        return 1;
    for (int k = 0; k < 4; k++) {
        for (int64_t i = 0; i < pt[k]->size; i++) {
            dl_array *q[4];
            for (int j = 0; j < 4; j++)
                q[j] = dl_array_copy(pt[j]);
            double up, down, keep = ((double *)q[k]->data)[i];
            ((double *)q[k]->data)[i] = keep + h;
            dl_learner_loss(T, 4, q, a, b, &up);
            ((double *)q[k]->data)[i] = keep - h;
            dl_learner_loss(T, 4, q, a, b, &down);
            double fd = (up - down) / (2 * h);
            double ad = (((double *)pt[k]->data)[i] - ((double *)u[k]->data)[i]) / RATE;
            if (fabs(fd - ad) > worst)
                worst = fabs(fd - ad);
            release(4, q);
        }
    }
    printf("update = p - rate * gradient of the loss (finite differences, 1e-6): %d\n",
           worst < 1e-6);

    /* r(p, a, c) = a - ∇_a E */
    dl_array *ra[1];
    if (check(dl_learner_request(T, 4, pt, a, b, ra), "request"))
        return 1;
    worst = 0;
    for (int64_t i = 0; i < x->size; i++) {
        dl_array *xq = dl_array_copy(x), *aq[] = {xq};
        double up, down, keep = ((double *)xq->data)[i];
        ((double *)xq->data)[i] = keep + h;
        dl_learner_loss(T, 4, pt, aq, b, &up);
        ((double *)xq->data)[i] = keep - h;
        dl_learner_loss(T, 4, pt, aq, b, &down);
        double fd = (up - down) / (2 * h);
        double ad = ((double *)x->data)[i] - ((double *)ra[0]->data)[i];
        if (fabs(fd - ad) > worst)
            worst = fabs(fd - ad);
        dl_array_release(xq);
    }
    printf("request = input - gradient of the loss in the input: %d\n", worst < 1e-6);
    dl_array_release(ra[0]);

    /* a step with sgd(rate) gives the update's parameters (and the loss before it) */
    dl_optimiser *sgd = dl_optim_sgd(RATE);
    double loss1, before;
    if (check(dl_learner_loss(HL, 4, pt, a, b, &before), "loss"))
        return 1;
    if (check(dl_learner_step(HL, sgd, a, b, &loss1), "step"))
        return 1;
    printf("sgd step = update: %d, its loss is the loss before: %d\n",
           max_diff(4, (dl_array **)dl_learner_params(HL), u) < 1e-12, loss1 == before);
    release(4, u);
    /* the parts keep their parameters (the composite's are its own) */
    printf("the parts' parameters are untouched: %d\n",
           max_diff(2, (dl_array **)dl_learner_params(H), ph) == 0 &&
               dl_learner_params(H)[0] == w1);
    double loss2;
    dl_learner_loss(HL, 0, NULL, a, b, &loss2);
    printf("the loss fell: %d\n", loss2 < loss1);
    dl_optim_free(sgd);

    /* H *** W updates each part on its own pair */
    dl_learner *HW = dl_learner_par(H, W);
    dl_array *a2[] = {x, x2}, *y2[2], *t2[2];
    dl_array *p3[] = {w1, b1, v};
    if (check(dl_learner_implement(HW, 3, p3, a2, y2), "implement"))
        return 1;
    t2[0] = dl_array_copy(y2[0]);
    t2[1] = filled(5, 2, 4.1);
    ((double *)t2[0]->data)[0] += 0.5;
    dl_array *up[3], *uh[2], *uw[1];
    dl_array *ah[] = {x}, *aw[] = {x2}, *bh[] = {t2[0]}, *bw[] = {t2[1]};
    if (check(dl_learner_update(HW, 3, p3, a2, t2, up), "update") ||
        check(dl_learner_update(H, 2, ph, ah, bh, uh), "update") ||
        check(dl_learner_update(W, 1, pw, aw, bw, uw), "update"))
        return 1;
    printf("%s: update = the parts' updates: %g %g\n", dl_learner_name(HW),
           max_diff(2, up, uh), max_diff(1, up + 2, uw));
    release(3, up);
    release(2, uh);
    release(1, uw);

    /* interchange: (H *** W) >>> (L *** id) = (H >>> L) *** (W >>> id), the
     * parameters in the orders (H, W, L) and (H, L, W) */
    dl_learner *I1 = dl_learner_identity(1);
    dl_learner *LI = dl_learner_par(L, I1), *WI = dl_learner_seq(W, I1);
    dl_learner *X1 = dl_learner_seq(HW, LI), *X2 = dl_learner_par(HL, WI);
    dl_array *px1[] = {w1, b1, v, w2, b2}, *px2[] = {w1, b1, w2, b2, v};
    dl_array *t3[] = {c, t2[1]};
    dl_array *o1[2], *o2[2], *n1[5], *n2[5], *q1[2], *q2[2];
    if (check(dl_learner_implement(X1, 5, px1, a2, o1), "implement") ||
        check(dl_learner_implement(X2, 5, px2, a2, o2), "implement") ||
        check(dl_learner_update(X1, 5, px1, a2, t3, n1), "update") ||
        check(dl_learner_update(X2, 5, px2, a2, t3, n2), "update") ||
        check(dl_learner_request(X1, 5, px1, a2, t3, q1), "request") ||
        check(dl_learner_request(X2, 5, px2, a2, t3, q2), "request"))
        return 1;
    dl_array *n2p[] = {n2[0], n2[1], n2[4], n2[2], n2[3]};
    printf("interchange: implement, update, request differ by %g %g %g\n", max_diff(2, o1, o2),
           max_diff(5, n1, n2p), max_diff(2, q1, q2));
    release(2, o1);
    release(2, o2);
    release(5, n1);
    release(5, n2);
    release(2, q1);
    release(2, q2);
    release(2, y2);
    release(2, t2);

    /* leaves of several outputs (split), several inputs (join), no parameters
     * (square): L(split_join_square) = L(split) >>> L(join) >>> L(square) */
    static const dl_export split = DL_EXPORT("split", 1, 1, 2, learn_laws_split,
        learn_laws_split_vjp, learn_laws_call_tup2_arr2_float_arr2_float_to_tup2_arr1_float_arr2_float);
    static const dl_export join = DL_EXPORT("join", 1, 2, 1, learn_laws_join, learn_laws_join_vjp,
        learn_laws_call_arr2_float_to_tup2_arr1_float_tup2_arr2_float_arr2_float);
    static const dl_export square = DL_EXPORT("square", 0, 1, 1, learn_laws_square,
        learn_laws_square_vjp, learn_laws_call_arr2_float_to_arr2_float);
    static const dl_export sjs = DL_EXPORT("split_join_square", 2, 1, 1,
        learn_laws_split_join_square, learn_laws_split_join_square_vjp,
        learn_laws_call_arr2_float_to_tup2_tup2_arr1_float_arr1_float_arr2_float);
    dl_array *vs = filled(2, 0, 0.2), *ss = filled(2, 0, 2.6);
    dl_array *pv[] = {vs}, *pss[] = {ss}, *pvs[] = {vs, ss};
    dl_learner *S = dl_learner_gradient(&split, RATE, &dl_loss_half_squared, 1, pv);
    dl_learner *J = dl_learner_gradient(&join, RATE, &dl_loss_half_squared, 1, pss);
    dl_learner *Q = dl_learner_gradient(&square, RATE, &dl_loss_half_squared, 0, NULL);
    dl_learner *SJS = dl_learner_gradient(&sjs, RATE, &dl_loss_half_squared, 2, pvs);
    dl_learner *SJ = dl_learner_seq(S, J), *SJ_Q = dl_learner_seq(SJ, Q);
    if (!SJ_Q || !SJS) {
        printf("%s\n", dl_last_error());
        return 1;
    }
    dl_array *a5[] = {x2};
    if (compare(SJS, SJ_Q, pvs, a5, b, d))
        return 1;
    printf("%s: functoriality with 2 outputs, 2 inputs, 0 parameters: %d %d %d\n",
           dl_learner_name(SJ_Q), d[0] < 1e-12, d[1] < 1e-12, d[2] < 1e-12);
    dl_optimiser *adam = dl_optim_adam(0.01, 0.9, 0.999, 1e-8);
    double l0, l1;
    dl_learner_loss(SJ_Q, 0, NULL, a5, b, &l0);
    for (int k = 0; k < 20; k++)
        if (check(dl_learner_step(SJ_Q, adam, a5, b, NULL), "step"))
            return 1;
    dl_learner_loss(SJ_Q, 0, NULL, a5, b, &l1);
    printf("and it trains: %d\n", l1 < l0);
    dl_optim_free(adam);
    dl_array_release(vs);
    dl_array_release(ss);

    dl_learner *all[] = {H, L, W, T, HL, LW, A1, A2, I, IH, HI, HW, I1, LI, WI, X1, X2,
                         S, J, Q, SJS, SJ, SJ_Q};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++)
        dl_learner_release(all[k]);
    dl_array *arrays[] = {w1, b1, w2, b2, v, x, c, x2};
    release(8, arrays);
    return 0;
}
// expect: ((hidden >>> linear) >>> wave) and (hidden >>> (linear >>> wave)): 5 parameter arrays
// expect: associativity: implement, update, request differ by 0 0 0
// expect: left identity: 0 0 0; right identity: 0 0 0
// expect: functoriality: implement, update, request agree to 1e-12: 1 1 1
// expect: the update moves the parameters: 1
// expect: update = p - rate * gradient of the loss (finite differences, 1e-6): 1
// expect: request = input - gradient of the loss in the input: 1
// expect: sgd step = update: 1, its loss is the loss before: 1
// expect: the parts' parameters are untouched: 1
// expect: the loss fell: 1
// expect: (hidden *** wave): update = the parts' updates: 0 0
// expect: interchange: implement, update, request differ by 0 0 0
// expect: ((split >>> join) >>> square): functoriality with 2 outputs, 2 inputs, 0 parameters: 1 1 1
// expect: and it trains: 1
