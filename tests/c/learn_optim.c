/* The runtime's optimiser objects (dl_optim_*) give the numbers of
 * std/optim's optimisers, run by compiled DL (learn_optim.dl) on the same
 * gradients: equal to the last bit. Also: the optimiser's errors, and that
 * dl_optim_apply updates in place only an array nobody else holds. */
#include "learn_optim.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define STEPS 25
#define N 6

static dl_array *filled(int rank, const int64_t *shape, double seed)
{
    dl_array *a = dl_array_new(DL_F64, rank, shape);
    double *d = a->data;
    for (int64_t i = 0; i < a->size; i++)
        d[i] = sin(seed + 0.37 * (double)i) * (1.0 + 0.5 * cos(0.11 * (double)i * seed));
    return a;
}

/* Row i of a [rows, ...] array, as a new array. */
static dl_array *row(const dl_array *a, int64_t i)
{
    int64_t n = a->size / a->shape[0];
    dl_array *r = dl_array_new(DL_F64, a->rank - 1, a->shape + 1);
    memcpy(r->data, (const double *)a->data + i * n, (size_t)n * sizeof(double));
    return r;
}

static double max_diff(const dl_array *a, const dl_array *b)
{
    if (a->size != b->size)
        return INFINITY;
    double m = 0;
    for (int64_t i = 0; i < a->size; i++) {
        double d = fabs(((const double *)a->data)[i] - ((const double *)b->data)[i]);
        if (d > m)
            m = d;
    }
    return m;
}

typedef int (*RunFn)(dl_array *, dl_array *, dl_array **);

/* STEPS steps of o from p0 on the rows of gs; the largest difference from
 * the DL function's result. */
static double run_both(const char *name, dl_optimiser *o, RunFn run, dl_array *p0,
                       dl_array *gs, bool *moved)
{
    dl_array *p = dl_array_copy(p0);
    for (int64_t i = 0; i < STEPS; i++) {
        dl_array *g = row(gs, i);
        if (dl_optim_apply(o, 1, &p, &g) != 0)
            printf("%s: step failed: %s\n", name, dl_last_error());
        dl_array_release(g);
    }
    dl_array *want;
    if (run(p0, gs, &want) != 0) {
        printf("%s: the DL run failed: %s\n", name, dl_last_error());
        dl_array_release(p);
        return INFINITY;
    }
    double d = max_diff(p, want);
    *moved = max_diff(p, p0) > 1e-3;
    dl_array_release(want);
    dl_array_release(p);
    return d;
}

/* From p0 and from zeros (where the parameters are as small as the steps,
 * so that a step rounded differently shows). */
static void compare(const char *name, dl_optimiser *o, RunFn run, dl_array *p0, dl_array *gs)
{
    bool moved, moved0;
    dl_array *z = dl_array_zeros(DL_F64, p0->rank, p0->shape);
    double d = run_both(name, o, run, p0, gs, &moved);
    int64_t steps = dl_optim_steps(o);
    dl_optim_reset(o);
    double d0 = run_both(name, o, run, z, gs, &moved0);
    printf("%s: %lld steps, moved %d, differs from std/optim by %g, from zero by %g\n", name,
           (long long)steps, moved && moved0, d, d0);
    dl_array_release(z);
    dl_optim_free(o);
}

int main(void)
{
    int64_t ps[1] = {N}, gsh[2] = {STEPS, N};
    dl_array *p0 = filled(1, ps, 0.4), *gs = filled(2, gsh, 1.3);

    compare("sgd", dl_optim_sgd(0.1), learn_optim_sgd_run, p0, gs);
    compare("momentum", dl_optim_momentum(0.05, 0.9), learn_optim_momentum_run, p0, gs);
    compare("nesterov", dl_optim_nesterov(0.05, 0.9), learn_optim_nesterov_run, p0, gs);
    compare("adam", dl_optim_adam(0.01, 0.9, 0.999, 1e-8), learn_optim_adam_run, p0, gs);
    compare("adamw", dl_optim_adamw(0.01, 0.1, 0.9, 0.999, 1e-8), learn_optim_adamw_run, p0, gs);

    /* two parameter arrays, one step count */
    int64_t s2[2] = {3, 2}, g1s[2] = {STEPS, N}, g2s[3] = {STEPS, 3, 2};
    dl_array *q0 = filled(2, s2, 2.2), *g1 = filled(2, g1s, 0.9), *g2 = filled(3, g2s, 3.1);
    dl_array *p[2] = {dl_array_copy(p0), dl_array_copy(q0)};
    dl_optimiser *o = dl_optim_adam(0.02, 0.8, 0.99, 1e-6);
    for (int64_t i = 0; i < STEPS; i++) {
        dl_array *g[2] = {row(g1, i), row(g2, i)};
        if (dl_optim_apply(o, 2, p, g) != 0)
            printf("adam pair: step failed: %s\n", dl_last_error());
        dl_array_release(g[0]);
        dl_array_release(g[1]);
    }
    learn_optim_tup2_arr1_float_arr2_float_t start = {p0, q0}, want;
    if (learn_optim_adam_pair(&start, g1, g2, &want) != 0)
        return 1;
    printf("adam on two arrays differs from std/optim by %g and %g\n", max_diff(p[0], want._0),
           max_diff(p[1], want._1));
    learn_optim_adam_pair_release(&want);

    /* errors: count, shape and dtype, named; nothing changes */
    dl_array *keep = p[0];
    dl_array *g[2] = {row(g1, 0), row(g2, 0)};
    if (dl_optim_apply(o, 1, p, g) != 0)
        printf("%s\n", dl_last_error());
    dl_array *wrong[2] = {g[1], g[0]};
    if (dl_optim_apply(o, 2, p, wrong) != 0)
        printf("%s\n", dl_last_error());
    int64_t s3[2] = {2, 3};
    dl_array *other[2] = {p[0], filled(2, s3, 0.1)};
    dl_array *gother[2] = {g[0], filled(2, s3, 0.2)};
    if (dl_optim_apply(o, 2, other, gother) != 0)
        printf("%s\n", dl_last_error());
    dl_array *ints = dl_array_zeros(DL_I64, 1, ps);
    dl_array *gi[2] = {ints, g[1]};
    if (dl_optim_apply(o, 2, p, gi) != 0)
        printf("%s\n", dl_last_error());
    printf("after the errors: steps %lld, parameters kept: %d\n", (long long)dl_optim_steps(o),
           p[0] == keep);
    dl_array_release(ints);
    dl_array_release(other[1]);
    dl_array_release(gother[1]);

    /* in place when unique, a copy when the caller holds another reference */
    dl_array *mine = dl_array_retain(p[0]);
    dl_optim_apply(o, 2, p, g);
    printf("shared parameter copied: %d; ", p[0] != mine);
    dl_array_release(mine);
    mine = p[0];
    dl_optim_apply(o, 2, p, g);
    printf("unique parameter updated in place: %d\n", p[0] == mine);
    dl_optim_reset(o);
    printf("after reset: %lld steps\n", (long long)dl_optim_steps(o));

    dl_optim_free(o);
    dl_array_release(g[0]);
    dl_array_release(g[1]);
    dl_array_release(p[0]);
    dl_array_release(p[1]);
    dl_array_release(q0);
    dl_array_release(g1);
    dl_array_release(g2);
    dl_array_release(p0);
    dl_array_release(gs);
    return 0;
}
// expect: sgd: 25 steps, moved 1, differs from std/optim by 0, from zero by 0
// expect: momentum: 25 steps, moved 1, differs from std/optim by 0, from zero by 0
// expect: nesterov: 25 steps, moved 1, differs from std/optim by 0, from zero by 0
// expect: adam: 25 steps, moved 1, differs from std/optim by 0, from zero by 0
// expect: adamw: 25 steps, moved 1, differs from std/optim by 0, from zero by 0
// expect: adam on two arrays differs from std/optim by 0 and 0
// expect: optimiser step: the state is for 2 parameter arrays, given 1
// expect: optimiser step: parameter 0 has shape [6], its gradient [3, 2]
// expect: optimiser step: parameter 1 has shape [2, 3], the optimiser's state [3, 2]
// expect: optimiser step: parameter 0 has dtype float and its gradient int, expected float
// expect: after the errors: steps 25, parameters kept: 1
// expect: shared parameter copied: 1; unique parameter updated in place: 1
// expect: after reset: 0 steps
