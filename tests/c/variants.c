/* Variants, closures and random keys across the boundary. */
#include "variants.h"

#include <stdio.h>

int main(void)
{
    /* cells built by C: refcount -1, never freed by DL */
    variants_shape_t c = {-1, VARIANTS_SHAPE_CIRCLE, .of.Circle = 2.0};
    variants_shape_t r = {-1, VARIANTS_SHAPE_RECT, .of.Rect = {3.0, 5.0}};
    double a;
    if (variants_area(&c, &a) != 0) return 1;
    printf("circle %g\n", a);
    if (variants_area(&r, &a) != 0) return 1;
    printf("rect %g\n", a);
    const variants_shape_t *big;
    if (variants_biggest(&c, &r, &big) != 0) return 1;
    printf("biggest is the rect cell: %d\n", big == &r);
    variants_biggest_release(&big);

    for (int k = 0; k < 4; k++) {
        const variants_shape_t *s;
        if (variants_make(k, &s) != 0) return 1;
        printf("make %d: tag %lld", k, (long long)s->tag);
        if (s->tag == VARIANTS_SHAPE_CIRCLE)
            printf(" radius %g", s->of.Circle);
        else if (s->tag == VARIANTS_SHAPE_RECT)
            printf(" %g x %g", s->of.Rect._0, s->of.Rect._1);
        printf("\n");
        variants_make_release(&s);
    }

    const variants_tree_int_t *t;
    if (variants_build(1000, &t) != 0) return 1;
    int64_t d;
    if (variants_depth(t, &d) != 0) return 1;
    printf("tree depth %lld, root %lld\n", (long long)d, (long long)t->of.Node._1);
    variants_build_release(&t); /* the whole chain of cells */

    dl_closure *add5;
    if (variants_adder(5.0, &add5) != 0) return 1;
    double y;
    if (variants_call_float_to_float(add5, 1.5, &y) != 0) return 1;
    printf("add5 1.5 = %g\n", y);
    if (variants_apply_twice(add5, 0.5, &y) != 0) return 1;
    printf("twice = %g\n", y);
    variants_adder_release(&add5);

    dl_key k = dl_key_from_seed(42);
    dl_array *n1, *n2;
    if (variants_noise(k, 3, &n1) != 0 || variants_noise(k, 3, &n2) != 0) return 1;
    dl_array *direct = dl_normal(k, DL_F64, 1, (int64_t[]){3});
    printf("noise: same key same numbers %d, as dl_normal %d\n", dl_array_equal(n1, n2), dl_array_equal(n1, direct));
    dl_array_release(n1);
    dl_array_release(n2);
    dl_array_release(direct);
    return 0;
}
// expect: circle 12
// expect: rect 15
// expect: biggest is the rect cell: 1
// expect: make 0: tag 2
// expect: make 1: tag 0 radius 1
// expect: make 2: tag 1 2 x 2
// expect: make 3: tag 1 2 x 3
// expect: tree depth 1000, root 999
// expect: add5 1.5 = 6.5
// expect: twice = 10.5
// expect: noise: same key same numbers 1, as dl_normal 1
