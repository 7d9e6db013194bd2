/* Records as C structs, nested, with arrays and strings inside. */
#include "records.h"

#include <stdio.h>

static dl_array *matrix(int64_t r, int64_t c, const double *v)
{
    int64_t shape[2] = {r, c};
    return dl_array_from_data(DL_F64, 2, shape, v);
}

static dl_array *vector(int64_t n, const double *v)
{
    return dl_array_from_data(DL_F64, 1, &n, v);
}

static void show(const char *what, const dl_array *a)
{
    printf("%s [", what);
    for (int64_t i = 0; i < a->size; i++)
        printf("%s%g", i ? ", " : "", ((const double *)a->data)[i]);
    printf("] rank %d\n", (int)a->rank);
}

int main(void)
{
    const double w1[] = {1, 0, -1, 0, 1, 1}, b1[] = {0.5, -3}, w2[] = {2, 1}, b2[] = {0.25};
    records_net_t n = {
        .first = {matrix(2, 3, w1), vector(2, b1), "hidden"},
        .second = {matrix(1, 2, w2), vector(1, b2), "output"},
        .rate = 0.5,
    };
    const double xv[] = {3, 1, 2};
    dl_array *x = vector(3, xv);
    dl_array *y;
    if (records_forward(&n, x, &y) != 0) return 1;
    show("forward", y); /* relu([1.5, 0]) -> 2*1.5 + 0 + 0.25 */
    dl_array_release(y);

    const double g[] = {1, 1, 1, 1, 1, 1};
    dl_array *dw = matrix(2, 3, g);
    records_net_t m;
    if (records_step(&n, dw, &m) != 0) return 1;
    show("stepped", m.first.w);
    show("unchanged", n.first.w);
    printf("names %s %s, second layer shared: %d\n", m.first.name, m.second.name,
           m.second.w == n.second.w);
    records_step_release(&m);

    records_dims_t d;
    if (records_dims_of(&n.first, &d) != 0) return 1;
    printf("dims %lld x %lld square %d\n", (long long)d.rows, (long long)d.cols, d.square);

    dl_array_release(dw);
    dl_array_release(x);
    dl_array_release(n.first.w);
    dl_array_release(n.first.b);
    dl_array_release(n.second.w);
    dl_array_release(n.second.b);
    return 0;
}
// expect: forward [3.25] rank 1
// expect: stepped [0.5, -0.5, -1.5, -0.5, 0.5, 0.5] rank 2
// expect: unchanged [1, 0, -1, 0, 1, 1] rank 2
// expect: names hidden output, second layer shared: 1
// expect: dims 2 x 3 square 0
