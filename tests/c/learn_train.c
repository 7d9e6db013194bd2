/* A C training loop over compiled DL: the layers hidden and linear of
 * learn_train.dl become learners (the gradient-descent functor), compose
 * with dl_learner_seq, and dl_learner_step trains the composite on a
 * regression problem with Adam, then with momentum on mini-batches; the
 * loss must fall. A custom error function (defined here in C: the
 * pseudo-Huber error, with its derivative and the inverse for the request
 * rule) trains too. */
#include "learn_train.h"

#include <math.h>
#include <stdio.h>

#define N 64

static dl_array *filled(int64_t rows, int64_t cols, double scale, double seed)
{
    int64_t shape[2] = {rows, cols};
    dl_array *a = dl_array_new(DL_F64, cols ? 2 : 1, shape);
    double *d = a->data;
    for (int64_t i = 0; i < a->size; i++)
        d[i] = scale * sin(seed + 2.39996 * (double)i);
    return a;
}

/* Rows [from, from + n) of a 2-D array. */
static dl_array *rows(const dl_array *a, int64_t from, int64_t n)
{
    int64_t shape[2] = {n, a->shape[1]};
    dl_array *r = dl_array_new(DL_F64, 2, shape);
    const double *s = (const double *)a->data + from * a->shape[1];
    for (int64_t i = 0; i < r->size; i++)
        ((double *)r->data)[i] = s[i];
    return r;
}

/* Pseudo-Huber error e(x, y) = d² (sqrt(1 + ((x - y)/d)²) - 1) (Charbonnier
 * et al. 1997), its derivative (x - y) / sqrt(1 + ((x - y)/d)²), and the
 * inverse of the derivative in y: for z with |z| < d, y = x - z / sqrt(1 - (z/d)²). */
static double huber_value(const dl_array *y, const dl_array *b, void *ctx)
{
    double d = *(const double *)ctx, s = 0;
    for (int64_t i = 0; i < y->size; i++) {
        double r = (((const double *)y->data)[i] - ((const double *)b->data)[i]) / d;
        s += d * d * (sqrt(1 + r * r) - 1);
    }
    return s;
}

static dl_array *huber_deriv(const dl_array *y, const dl_array *b, void *ctx)
{
    double d = *(const double *)ctx;
    dl_array *g = dl_array_new(DL_F64, y->rank, y->shape);
    for (int64_t i = 0; i < y->size; i++) {
        double r = ((const double *)y->data)[i] - ((const double *)b->data)[i];
        ((double *)g->data)[i] = r / sqrt(1 + (r / d) * (r / d));
    }
    return g;
}

static dl_array *huber_inverse(const dl_array *x0, const dl_array *z, void *ctx)
{
    double d = *(const double *)ctx;
    for (int64_t i = 0; i < z->size; i++)
        if (fabs(((const double *)z->data)[i]) >= d)
            dl_error(NULL, "pseudo-Huber request: gradient %g beyond %g",
                     ((const double *)z->data)[i], d);
    dl_array *y = dl_array_new(DL_F64, x0->rank, x0->shape);
    for (int64_t i = 0; i < x0->size; i++) {
        double zi = ((const double *)z->data)[i];
        ((double *)y->data)[i] = ((const double *)x0->data)[i] - zi / sqrt(1 - (zi / d) * (zi / d));
    }
    return y;
}

int main(void)
{
    /* y = sin(2 x0) cos(x1) on 64 points of [-1.5, 1.5]^2 */
    dl_array *x = filled(N, 2, 1.5, 0.3);
    int64_t ys[2] = {N, 1};
    dl_array *y = dl_array_new(DL_F64, 2, ys);
    for (int64_t i = 0; i < N; i++) {
        const double *xi = (const double *)x->data + 2 * i;
        ((double *)y->data)[i] = sin(2 * xi[0]) * cos(xi[1]);
    }

    static const dl_export hidden = DL_EXPORT("hidden", 2, 1, 1, learn_train_hidden,
        learn_train_hidden_vjp, learn_train_call_arr2_float_to_tup2_tup2_arr2_float_arr1_float_arr2_float);
    static const dl_export linear = DL_EXPORT("linear", 2, 1, 1, learn_train_linear,
        learn_train_linear_vjp, learn_train_call_arr2_float_to_tup2_tup2_arr2_float_arr1_float_arr2_float);
    dl_array *w1 = filled(2, 16, 1.0, 1.0), *b1 = filled(16, 0, 0.1, 2.0);
    dl_array *w2 = filled(16, 1, 0.3, 3.0), *b2 = dl_array_zeros(DL_F64, 1, (int64_t[]){1});
    dl_array *ph[] = {w1, b1}, *pl[] = {w2, b2};
    dl_learner *h = dl_learner_gradient(&hidden, 0.01, &dl_loss_half_squared, 2, ph);
    dl_learner *o = dl_learner_gradient(&linear, 0.01, &dl_loss_half_squared, 2, pl);
    dl_learner *net = dl_learner_seq(h, o);
    if (!net) {
        printf("%s\n", dl_last_error());
        return 1;
    }

    dl_array *xa[] = {x}, *ya[] = {y};
    double first = 0, loss = 0;
    dl_optimiser *adam = dl_optim_adam(0.02, 0.9, 0.999, 1e-8);
    for (int step = 0; step < 300; step++) {
        if (dl_learner_step(net, adam, xa, ya, &loss) != 0) {
            printf("step %d: %s\n", step, dl_last_error());
            return 1;
        }
        if (step == 0)
            first = loss;
    }
    double after;
    dl_learner_loss(net, 0, NULL, xa, ya, &after);
    printf("%s, adam, 300 full-batch steps: loss below a twentieth: %d, last step's loss "
           "above the final: %d\n", dl_learner_name(net), after < first / 20, loss > after);

    /* the same learner, more training with momentum on mini-batches of 16 */
    dl_optimiser *mom = dl_optim_momentum(0.01, 0.9);
    for (int epoch = 0; epoch < 50; epoch++)
        for (int64_t k = 0; k < N; k += 16) {
            dl_array *xb = rows(x, k, 16), *yb = rows(y, k, 16);
            dl_array *xba[] = {xb}, *yba[] = {yb};
            if (dl_learner_step(net, mom, xba, yba, NULL) != 0)
                printf("batch: %s\n", dl_last_error());
            dl_array_release(xb);
            dl_array_release(yb);
        }
    double later;
    dl_learner_loss(net, 0, NULL, xa, ya, &later);
    printf("momentum, 50 epochs of batches of 16: loss fell further: %d\n", later < after);

    /* a custom error function: the pseudo-Huber learner trains too, and its
     * request follows the inverse rule */
    double delta = 1.0;
    dl_loss huber = { "pseudo_huber", huber_value, huber_deriv, huber_inverse, &delta };
    dl_learner *hh = dl_learner_gradient(&hidden, 0.01, &huber, 2, ph);
    dl_learner *oh = dl_learner_gradient(&linear, 0.01, &huber, 2, pl);
    dl_learner *neth = dl_learner_seq(hh, oh);
    double h0, h1;
    dl_learner_loss(neth, 0, NULL, xa, ya, &h0);
    dl_optimiser *adam2 = dl_optim_adam(0.02, 0.9, 0.999, 1e-8);
    for (int step = 0; step < 200; step++)
        if (dl_learner_step(neth, adam2, xa, ya, NULL) != 0) {
            printf("huber step: %s\n", dl_last_error());
            return 1;
        }
    dl_learner_loss(neth, 0, NULL, xa, ya, &h1);
    printf("pseudo-Huber error: loss below a tenth: %d\n", h1 < h0 / 10);
    /* the paper's rule, U = p - rate ∇E with the composite's request going
     * through the inverse: 200 updates reduce the loss too */
    dl_array *cur[4];
    for (int i = 0; i < 4; i++)
        cur[i] = dl_array_retain(dl_learner_params(neth)[i]);
    for (int step = 0; step < 200; step++) {
        dl_array *next[4];
        if (dl_learner_update(neth, 4, cur, xa, ya, next) != 0) {
            printf("huber update: %s\n", dl_last_error());
            return 1;
        }
        for (int i = 0; i < 4; i++) {
            dl_array_release(cur[i]);
            cur[i] = next[i];
        }
    }
    double h2;
    dl_learner_loss(neth, 4, cur, xa, ya, &h2);
    printf("pseudo-Huber, 200 of the paper's updates: loss fell: %d\n", h2 < h1);
    for (int i = 0; i < 4; i++)
        dl_array_release(cur[i]);
    /* a callback's dl_error fails the call with its message */
    dl_array *big = filled(N, 1, 40.0, 0.0), *bigs[] = {big}, *req[1];
    if (dl_learner_request(neth, 0, NULL, xa, bigs, req) != 0)
        printf("request fails: %.30s\n", dl_last_error());
    dl_array_release(big);

    dl_optim_free(adam);
    dl_optim_free(adam2);
    dl_optim_free(mom);
    dl_learner *all[] = {h, o, net, hh, oh, neth};
    for (int i = 0; i < 6; i++)
        dl_learner_release(all[i]);
    dl_array *arrays[] = {x, y, w1, b1, w2, b2};
    for (int i = 0; i < 6; i++)
        dl_array_release(arrays[i]);
    return 0;
}
// expect: (hidden >>> linear), adam, 300 full-batch steps: loss below a twentieth: 1, last step's loss above the final: 1
// expect: momentum, 50 epochs of batches of 16: loss fell further: 1
// expect: pseudo-Huber error: loss below a tenth: 1
// expect: pseudo-Huber, 200 of the paper's updates: loss fell: 1
// expect: request fails: pseudo-Huber request: gradient
