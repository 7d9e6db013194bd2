/* main.c — trains the DL model of model.dl from C.
 *
 *   make && ./train houses.csv
 *
 * Loads a CSV file (columns: features..., target) with libdlrt, then runs
 * gradient descent: each step calls the compiled model_loss_grad (the loss
 * and its gradient, computed by reverse-mode AD in DL) and the derived
 * export model_penalty_grad, and updates the parameters in C. Errors inside
 * DL come back as a status of 1 with dl_last_error(). */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* columns [from, to) of a 2-D array, as a new array */
static dl_array *columns(const dl_array *a, int64_t from, int64_t to)
{
    int64_t rows = a->shape[0], cols = a->shape[1], n = to - from;
    int64_t shape[2] = {rows, n};
    dl_array *r = dl_array_new(DL_F64, n == 1 ? 1 : 2, shape);
    const double *src = a->data;
    double *dst = r->data;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < n; j++)
            dst[i * n + j] = src[i * cols + from + j];
    return r;
}

static int fail(const char *what)
{
    dl_srcloc l = dl_last_error_loc();
    fprintf(stderr, "train: %s failed: %s", what, dl_last_error());
    if (l.file)
        fprintf(stderr, " (%s:%d:%d)", l.file, (int)l.line, (int)l.col);
    fprintf(stderr, "\n");
    return 1;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "houses.csv";
    /* dl_read_csv raises errors too: catch them with a trap of our own */
    jmp_buf trap;
    dl_array *data;
    if (setjmp(trap) == 0) {
        dl_error_trap_push(&trap);
        data = dl_read_csv(path, NULL);
        dl_error_trap_pop();
    } else {
        return fail("reading the data");
    }
    int64_t nfeat = data->shape[1] - 1;
    dl_array *x = columns(data, 0, nfeat), *y = columns(data, nfeat, nfeat + 1);
    printf("%lld examples, %lld features\n", (long long)data->shape[0], (long long)nfeat);

    model_params_t p = {dl_array_zeros(DL_F64, 1, &nfeat), 0.0};
    const double rate = 0.05, decay = 1e-4;
    for (int step = 0; step <= 2000; step++) {
        model_tup2_float_params_t lg;
        model_params_t pg;
        if (model_loss_grad(&p, x, y, &lg) != 0)
            return fail("model_loss_grad");
        if (model_penalty_grad(&p, &pg) != 0)
            return fail("model_penalty_grad");
        if (step % 500 == 0)
            printf("step %4d  loss %.6f\n", step, lg._0);
        double *w = p.w->data;
        const double *gw = lg._1.w->data, *pw = pg.w->data;
        for (int64_t j = 0; j < nfeat; j++)
            w[j] -= rate * (gw[j] + decay * pw[j]);
        p.b -= rate * lg._1.b;
        model_loss_grad_release(&lg);
        model_penalty_grad_release(&pg);
    }
    printf("weights:");
    for (int64_t j = 0; j < nfeat; j++)
        printf(" %.3f", ((double *)p.w->data)[j]);
    printf("  bias %.3f\n", p.b);

    /* predict a new example */
    int64_t shape[2] = {1, nfeat};
    double row[] = {1.2, 3.0};
    dl_array *q = dl_array_from_data(DL_F64, 2, shape, row);
    dl_array *pred;
    if (nfeat == 2 && model_predict(&p, q, &pred) == 0) {
        printf("prediction for (1.2, 3): %.3f\n", ((double *)pred->data)[0]);
        dl_array_release(pred);
    }
    /* a shape error inside DL is an error status, not an exit */
    if (model_predict(&p, data, &pred) != 0)
        fail("predicting with the wrong number of columns");

    dl_array_release(q);
    dl_array_release(p.w);
    dl_array_release(x);
    dl_array_release(y);
    dl_array_release(data);
    return 0;
}
