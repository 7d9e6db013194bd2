/* One learner (a composite of two compiled layers) used by 4 threads at
 * once: each computes the paper's update and request at its own examples
 * many times, and trains a composite of its own made from the shared parts
 * (dl_learner_seq) with its own optimiser. The results equal those of the
 * same work done one thread at a time, and the shared learner's parameters
 * are unchanged. */
#define _POSIX_C_SOURCE 200809L
#include "learn_threads.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>

#define THREADS 4
#define ROUNDS 20

static dl_learner *first, *second, *net;

typedef struct {
    dl_array *x, *y;
    double upd, req, loss;   /* sums of the results, the final training loss */
    int failed;
} Work;

static dl_array *filled(int64_t rows, int64_t cols, double seed)
{
    int64_t shape[2] = {rows, cols};
    dl_array *a = dl_array_new(DL_F64, cols ? 2 : 1, shape);
    for (int64_t i = 0; i < a->size; i++)
        ((double *)a->data)[i] = sin(seed + 1.3 * (double)i);
    return a;
}

/* The sum of the elements of n arrays, which it releases. */
static double sum(int n, dl_array **a)
{
    double s = 0;
    for (int k = 0; k < n; k++) {
        for (int64_t i = 0; i < a[k]->size; i++)
            s += ((double *)a[k]->data)[i];
        dl_array_release(a[k]);
    }
    return s;
}

static void *work(void *arg)
{
    Work *w = arg;
    dl_array *xa[] = {w->x}, *ya[] = {w->y}, *out[4];
    w->upd = w->req = 0;
    for (int r = 0; r < ROUNDS; r++) {
        if (dl_learner_update(net, 0, NULL, xa, ya, out) != 0 ||
            (w->upd += sum(4, out), dl_learner_request(net, 0, NULL, xa, ya, out) != 0)) {
            w->failed = 1;
            return NULL;
        }
        w->req += sum(1, out);
    }
    dl_learner *mine = dl_learner_seq(first, second);
    dl_optimiser *opt = dl_optim_adam(0.05, 0.9, 0.999, 1e-8);
    for (int r = 0; r < ROUNDS && !w->failed; r++)
        w->failed = dl_learner_step(mine, opt, xa, ya, NULL);
    if (!w->failed)
        w->failed = dl_learner_loss(mine, 0, NULL, xa, ya, &w->loss);
    dl_optim_free(opt);
    dl_learner_release(mine);
    return NULL;
}

int main(void)
{
    static const dl_export layer = DL_EXPORT("layer", 2, 1, 1, learn_threads_layer,
        learn_threads_layer_vjp, learn_threads_call_arr2_float_to_tup2_tup2_arr2_float_arr1_float_arr2_float);
    dl_array *p1[] = {filled(3, 4, 0.1), filled(4, 0, 0.2)};
    dl_array *p2[] = {filled(4, 2, 0.3), filled(2, 0, 0.4)};
    first = dl_learner_gradient(&layer, 0.1, &dl_loss_half_squared, 2, p1);
    second = dl_learner_gradient(&layer, 0.1, &dl_loss_half_squared, 2, p2);
    net = dl_learner_seq(first, second);
    if (!net)
        return 1;

    Work par[THREADS] = {{0}}, ser[THREADS] = {{0}};
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        par[i].x = ser[i].x = filled(8, 3, 1.0 + i);
        par[i].y = ser[i].y = filled(8, 2, 5.0 + 0.5 * i);
        for (int64_t k = 0; k < par[i].y->size; k++)
            ((double *)par[i].y->data)[k] *= 0.5;
    }
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, work, &par[i]);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        work(&ser[i]);
    int same[3] = {1, 1, 1}, failed = 0;
    for (int i = 0; i < THREADS; i++) {
        failed |= par[i].failed | ser[i].failed;
        same[0] &= par[i].upd == ser[i].upd;
        same[1] &= par[i].req == ser[i].req;
        same[2] &= par[i].loss == ser[i].loss;
    }
    printf("%d threads, no failures: %d\n", THREADS, !failed);
    printf("update, request and training equal the serial results: %d %d %d\n", same[0], same[1],
           same[2]);
    printf("the shared parameters are unchanged: %d\n",
           dl_learner_params(net)[0] == p1[0] && dl_learner_params(net)[3] == p2[1]);

    for (int i = 0; i < THREADS; i++) {
        dl_array_release(par[i].x);
        dl_array_release(par[i].y);
    }
    dl_learner_release(net);
    dl_learner_release(first);
    dl_learner_release(second);
    for (int k = 0; k < 2; k++) {
        dl_array_release(p1[k]);
        dl_array_release(p2[k]);
    }
    return 0;
}
// expect: 4 threads, no failures: 1
// expect: update, request and training equal the serial results: 1 1 1
// expect: the shared parameters are unchanged: 1
