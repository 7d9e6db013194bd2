/* Errors of the learner API: status 1 (or NULL) and a dl_last_error that
 * names the learner and the shapes or counts; an error inside the DL code
 * keeps its message and position. Nothing exits, nothing leaks (valgrind). */
#include "learn_errors.h"

#include <stdio.h>
#include <string.h>

static void report(const char *what, int failed)
{
    printf("%s: %s\n", what, failed ? dl_last_error() : "no error");
}

int main(void)
{
    static const dl_export dense = DL_EXPORT("dense", 2, 1, 1, learn_errors_dense,
        learn_errors_dense_vjp, learn_errors_call_arr2_float_to_tup2_tup2_arr2_float_arr1_float_arr2_float);
    static const dl_export add = DL_EXPORT("add", 1, 2, 1, learn_errors_add, learn_errors_add_vjp,
        learn_errors_call_arr2_float_to_tup2_arr1_float_tup2_arr2_float_arr2_float);
    int64_t s32[2] = {3, 2}, s23[2] = {2, 3}, s2[1] = {2}, s43[2] = {4, 3}, s42[2] = {4, 2};
    int64_t s44[2] = {4, 4}, s4[1] = {4};
    dl_array *w = dl_array_zeros(DL_F64, 2, s32), *b = dl_array_zeros(DL_F64, 1, s2);
    dl_array *wt = dl_array_zeros(DL_F64, 2, s23), *bi = dl_array_zeros(DL_I64, 1, s2);
    dl_array *x = dl_array_zeros(DL_F64, 2, s43), *y = dl_array_zeros(DL_F64, 2, s42);
    dl_array *x44 = dl_array_zeros(DL_F64, 2, s44), *y4 = dl_array_zeros(DL_F64, 1, s4);

    /* construction */
    dl_array *p1[] = {w}, *pint[] = {w, bi}, *p[] = {w, b};
    report("one parameter for two", !dl_learner_gradient(&dense, 0.1, &dl_loss_half_squared, 1, p1));
    report("an int parameter", !dl_learner_gradient(&dense, 0.1, &dl_loss_half_squared, 2, pint));
    dl_export nothing = dense;
    nothing.nin = 0;
    report("no input", !dl_learner_gradient(&nothing, 0.1, &dl_loss_half_squared, 2, p));
    nothing = dense;
    nothing.vjp = NULL;
    report("no vjp", !dl_learner_gradient(&nothing, 0.1, &dl_loss_half_squared, 2, p));
    report("identity on 0 arrays", !dl_learner_identity(0));

    dl_learner *d = dl_learner_gradient(&dense, 0.1, &dl_loss_half_squared, 2, p);
    dl_array *ps[] = {b};
    dl_learner *a = dl_learner_gradient(&add, 0.1, &dl_loss_half_squared, 1, ps);
    report("dense >>> add", !dl_learner_seq(d, a));
    dl_learner *dd = dl_learner_par(d, d);
    dl_learner *dda = dl_learner_seq(dd, a);
    report("(dense *** dense) >>> add", !dda);

    /* parameters */
    dl_array *xa[] = {x}, *ya[] = {y}, *out[4] = {NULL};
    dl_array *pw[] = {wt, b};
    report("update at [2, 3] weights", dl_learner_update(d, 2, pw, xa, ya, out));
    report("update with 1 parameter", dl_learner_update(d, 1, p, xa, ya, out));
    report("update of the pair with 2", dl_learner_update(dd, 2, p, xa, ya, out));
    report("set [2, 3] weights", dl_learner_set_params(d, 2, pw));

    /* inputs and targets */
    dl_array *y4a[] = {y4}, *xi[] = {bi};
    report("target [4] for output [4, 2]", dl_learner_update(d, 0, NULL, xa, y4a, out));
    report("loss with target [4]", dl_learner_loss(d, 0, NULL, xa, y4a, &(double){0}));
    report("an int input", dl_learner_implement(d, 0, NULL, xi, out));
    report("a NULL target", dl_learner_request(d, 0, NULL, xa, (dl_array *[]){NULL}, out));
    printf("out untouched: %d\n", out[0] == NULL && out[1] == NULL);

    /* inside DL: [4, 4] @ [3, 2], with its position. The interrupted DL code
     * keeps its references to the arrays it was given (docs/c-api.md,
     * "Ownership"), so these arrays stay in `kept` to the end, reachable. */
    static dl_array *kept[3];
    kept[0] = dl_array_zeros(DL_F64, 2, s32);
    kept[1] = dl_array_zeros(DL_F64, 1, s2);
    kept[2] = x44;
    dl_learner *d2 = dl_learner_gradient(&dense, 0.1, &dl_loss_half_squared, 2, kept);
    dl_learner *dd2 = dl_learner_par(d2, d2), *dda2 = dl_learner_seq(dd2, a);
    dl_array *x44a[] = {x44};
    int st = dl_learner_implement(d2, 0, NULL, x44a, out);
    dl_srcloc l = dl_last_error_loc();
    const char *f = l.file ? strrchr(l.file, '/') : NULL;
    report("input [4, 4]", st);
    printf("at %s:%d:%d\n", f ? f + 1 : l.file ? l.file : "?", (int)l.line, (int)l.col);
    dl_optimiser *sgd = dl_optim_sgd(0.1);
    report("step on input [4, 4]", dl_learner_step(dda2, sgd, (dl_array *[]){x, x44}, ya, NULL));
    report("step on input [4, 3]", dl_learner_step(d, sgd, xa, ya, NULL));
    report("the same optimiser for the pair", dl_learner_step(dd, sgd, (dl_array *[]){x, x}, (dl_array *[]){y, y}, NULL));
    report("step without an optimiser", dl_learner_step(d, NULL, xa, ya, NULL));
    printf("after the errors: %lld step, weights [%lld, %lld]\n",
           (long long)dl_optim_steps(sgd), (long long)dl_learner_params(d)[0]->shape[0],
           (long long)dl_learner_params(d)[0]->shape[1]);

    dl_optim_free(sgd);
    dl_learner_release(d);
    dl_learner_release(a);
    dl_learner_release(dd);
    dl_learner_release(dda);
    dl_learner_release(d2);
    dl_learner_release(dd2);
    dl_learner_release(dda2);
    dl_array *arrays[] = {w, b, wt, bi, x, y, y4};
    for (int i = 0; i < 7; i++)
        dl_array_release(arrays[i]);
    return 0;
}
// expect: one parameter for two: learner 'dense' has 2 parameter arrays, given 1
// expect: an int parameter: parameter 1 of learner 'dense' has dtype int, expected float
// expect: no input: learner 'dense': needs nparams >= 0, nin >= 1 and nout >= 1, given 2, 0 and 1
// expect: no vjp: learner 'dense': the export needs its vjp, the pullback's call wrapper and the vjp's release function
// expect: identity on 0 arrays: the identity learner needs at least 1 array, given 0
// expect: dense >>> add: cannot compose 'dense' >>> 'add': 'dense' gives 1 array, 'add' takes 2
// expect: (dense *** dense) >>> add: no error
// expect: update at [2, 3] weights: parameter 0 of learner 'dense' has shape [3, 2], given [2, 3]
// expect: update with 1 parameter: learner 'dense' has 2 parameter arrays, given 1
// expect: update of the pair with 2: learner '(dense *** dense)' has 4 parameter arrays, given 2
// expect: set [2, 3] weights: parameter 0 of learner 'dense' has shape [3, 2], given [2, 3]
// expect: target [4] for output [4, 2]: target 0 of learner 'dense' has shape [4], its output [4, 2]
// expect: loss with target [4]: target 0 of learner 'dense' has shape [4], its output [4, 2]
// expect: an int input: input 0 of learner 'dense' has dtype int, expected float
// expect: a NULL target: target 0 of learner 'dense' is NULL
// expect: out untouched: 1
// expect: input [4, 4]: shape mismatch in '@': [4, 4] and [3, 2]
// expect: at learn_errors.dl:6:26
// expect: step on input [4, 4]: shape mismatch in '@': [4, 4] and [3, 2]
// expect: step on input [4, 3]: no error
// expect: the same optimiser for the pair: optimiser step: the state is for 2 parameter arrays, given 4
// expect: step without an optimiser: dl_learner_step: no optimiser given for learner 'dense'
// expect: after the errors: 1 step, weights [3, 2]
