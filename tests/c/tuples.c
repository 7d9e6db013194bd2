/* Tuples as C structs. */
#include "tuples.h"

#include <stdio.h>

int main(void)
{
    tuples_tup2_int_float_t p = {3, 0.25};
    tuples_tup2_float_int_t r;
    if (tuples_swap(&p, &r) != 0) return 1;
    printf("swap %g %lld\n", r._0, (long long)r._1);

    tuples_tup2_tup2_int_int_tup2_float_bool_t t = {{6, 7}, {1.5, false}};
    tuples_tup2_int_tup2_bool_float_t n;
    if (tuples_nested(&t, &n) != 0) return 1;
    printf("nested %lld %d %g\n", (long long)n._0, n._1._0, n._1._1);

    tuples_tup3_float_unit_int_t u;
    if (tuples_with_unit(2.5, &u) != 0) return 1;
    printf("with_unit %g %d %lld\n", u._0, u._1, (long long)u._2);

    tuples_tup3_int_unit_int_t tu = {40, 0, 2};
    int64_t k;
    if (tuples_takes_unit(&tu, &k) != 0) return 1;
    printf("takes_unit %lld\n", (long long)k);

    tuples_tup2_int_int_t dm;
    if (tuples_divmod(17, 5, &dm) != 0) return 1;
    printf("divmod %lld %lld\n", (long long)dm._0, (long long)dm._1);

    int64_t shape[1] = {4};
    dl_array *xs = dl_array_new(DL_F64, 1, shape);
    for (int i = 0; i < 4; i++)
        ((double *)xs->data)[i] = i + 1;
    tuples_tup3_float_float_int_t s;
    if (tuples_stats(xs, &s) != 0) return 1;
    printf("stats %g %g %lld\n", s._0, s._1, (long long)s._2);
    dl_array_release(xs);
    return 0;
}
// expect: swap 0.25 3
// expect: nested 42 1 2.5
// expect: with_unit 2.5 0 2
// expect: takes_unit 42
// expect: divmod 3 2
// expect: stats 10 2.5 4
