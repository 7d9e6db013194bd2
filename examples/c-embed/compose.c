/* compose.c — composes two separately compiled DL layers into one model
 * with libdlrt's learner API, and trains it from C.
 *
 *   make compose && ./compose houses.csv
 *
 * encoder.dl (a tanh layer) and head.dl (a linear read-out) are compiled
 * apart (dcc -c). Each becomes a learner through the gradient-descent functor
 * (dl_learner_gradient: its forward pass and pullback are the exported
 * function and its vjp); dl_learner_seq composes them, encoder >>> head, as
 * in Fong, Spivak & Tuyéras, "Backprop as Functor" (LICS 2019); and
 * dl_learner_step trains the composite with Adam. Then the paper's own update
 * rule (dl_learner_update: each part steps at its rate, towards the input
 * the next part requests) trains a few more rounds. See docs/c-api.md. */
#include "encoder.h"
#include "head.h"

#include <math.h>
#include <stdio.h>

#define HIDDEN 8

static int fail(const char *what)
{
    dl_srcloc l = dl_last_error_loc();
    fprintf(stderr, "compose: %s: %s", what, dl_last_error());
    if (l.file)
        fprintf(stderr, " (%s:%d:%d)", l.file, (int)l.line, (int)l.col);
    fprintf(stderr, "\n");
    return 1;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "houses.csv";
    jmp_buf trap;
    dl_array *data;
    if (setjmp(trap) == 0) {
        dl_error_trap_push(&trap);
        data = dl_read_csv(path, NULL);
        dl_error_trap_pop();
    } else {
        return fail("reading the data");
    }
    /* inputs: the features, standardised; targets: the last column, [n, 1] */
    int64_t n = data->shape[0], nf = data->shape[1] - 1;
    if (nf < 1 || nf > 8 || n < 1) {
        fprintf(stderr, "compose: expected 1 to 8 feature columns and a target column\n");
        return 1;
    }
    int64_t xs[2] = {n, nf}, ys[2] = {n, 1};
    dl_array *x = dl_array_new(DL_F64, 2, xs), *y = dl_array_new(DL_F64, 2, ys);
    double mean[8] = {0}, sd[8] = {0};
    const double *d = data->data;
    for (int64_t j = 0; j < nf; j++) {
        for (int64_t i = 0; i < n; i++)
            mean[j] += d[i * (nf + 1) + j] / (double)n;
        for (int64_t i = 0; i < n; i++)
            sd[j] += pow(d[i * (nf + 1) + j] - mean[j], 2) / (double)n;
        sd[j] = sqrt(sd[j]);
        for (int64_t i = 0; i < n; i++)
            ((double *)x->data)[i * nf + j] = (d[i * (nf + 1) + j] - mean[j]) / sd[j];
    }
    for (int64_t i = 0; i < n; i++)
        ((double *)y->data)[i] = d[i * (nf + 1) + nf];
    printf("%lld examples, %lld features\n", (long long)n, (long long)nf);

    /* the two compiled layers, seen by the runtime: 2 parameter arrays (w, b),
     * 1 input, 1 output; the function, its vjp and the pullback's wrapper */
    static const dl_export encoder = DL_EXPORT("encoder", 2, 1, 1, encoder_layer,
        encoder_layer_vjp, encoder_call_arr2_float_to_tup2_tup2_arr2_float_arr1_float_arr2_float);
    static const dl_export head = DL_EXPORT("head", 2, 1, 1, head_layer, head_layer_vjp,
        head_call_arr2_float_to_tup2_tup2_arr2_float_arr1_float_arr2_float);

    /* initial parameters: Xavier-like normal weights from a fixed key */
    dl_key keys[2];
    dl_split(dl_key_from_seed(7), keys);
    int64_t w1s[2] = {nf, HIDDEN}, b1s[1] = {HIDDEN}, w2s[2] = {HIDDEN, 1}, b2s[1] = {1};
    dl_array *w1 = dl_normal(keys[0], DL_F64, 2, w1s), *w2 = dl_normal(keys[1], DL_F64, 2, w2s);
    for (int64_t i = 0; i < w1->size; i++)
        ((double *)w1->data)[i] /= sqrt((double)nf);
    for (int64_t i = 0; i < w2->size; i++)
        ((double *)w2->data)[i] /= sqrt((double)HIDDEN);
    dl_array *b1 = dl_array_zeros(DL_F64, 1, b1s), *b2 = dl_array_zeros(DL_F64, 1, b2s);

    dl_array *pe[] = {w1, b1}, *ph[] = {w2, b2};
    dl_learner *enc = dl_learner_gradient(&encoder, 1e-3, &dl_loss_half_squared, 2, pe);
    dl_learner *out = dl_learner_gradient(&head, 1e-3, &dl_loss_half_squared, 2, ph);
    dl_learner *model = enc && out ? dl_learner_seq(enc, out) : NULL;
    if (!model)
        return fail("making the learners");
    printf("%s: %d parameter arrays\n", dl_learner_name(model), (int)dl_learner_nparams(model));

    /* training: the loss is ½ Σ (prediction - price)², shown as the mean
     * squared error */
    dl_array *xa[] = {x}, *ya[] = {y};
    dl_optimiser *adam = dl_optim_adam(0.02, 0.9, 0.999, 1e-8);
    for (int step = 0; step <= 1500; step++) {
        double loss;
        if (dl_learner_step(model, adam, xa, ya, &loss) != 0)
            return fail("dl_learner_step");
        if (step % 300 == 0)
            printf("adam step %4d  mse %.6f\n", step, 2 * loss / (double)n);
    }

    /* the paper's update: each part moves at its own rate (1e-3 here) */
    for (int round = 0; round < 100; round++) {
        dl_array *next[4];
        if (dl_learner_update(model, 4, dl_learner_params(model), xa, ya, next) != 0)
            return fail("dl_learner_update");
        dl_learner_set_params(model, 4, next);
        for (int i = 0; i < 4; i++)
            dl_array_release(next[i]);
    }
    double loss;
    if (dl_learner_loss(model, 0, NULL, xa, ya, &loss) != 0)
        return fail("dl_learner_loss");
    printf("after 100 of the paper's updates  mse %.6f\n", 2 * loss / (double)n);

    /* a prediction for a new house */
    if (nf == 2) {
        int64_t qs[2] = {1, 2};
        double q[2] = {(1.2 - mean[0]) / sd[0], (3.0 - mean[1]) / sd[1]};
        dl_array *qa[] = {dl_array_from_data(DL_F64, 2, qs, q)}, *pred[1];
        if (dl_learner_implement(model, 0, NULL, qa, pred) != 0)
            return fail("dl_learner_implement");
        printf("prediction for (1.2, 3): %.3f\n", ((double *)pred[0]->data)[0]);
        dl_array_release(pred[0]);
        dl_array_release(qa[0]);
    }

    dl_optim_free(adam);
    dl_learner_release(model);
    dl_learner_release(enc);
    dl_learner_release(out);
    dl_array *arrays[] = {w1, b1, w2, b2, x, y, data};
    for (int i = 0; i < 7; i++)
        dl_array_release(arrays[i]);
    return 0;
}
