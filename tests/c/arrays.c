/* Arrays of each element type and rank, as parameters and results. */
#include "arrays.h"

#include <stdio.h>

static void shape(const char *what, const dl_array *a)
{
    printf("%s: %s rank %d shape [", what, dl_dtype_name(a->dtype), (int)a->rank);
    for (int i = 0; i < a->rank; i++)
        printf("%s%lld", i ? ", " : "", (long long)a->shape[i]);
    printf("] size %lld\n", (long long)a->size);
}

int main(void)
{
    int64_t n3 = 3, n2 = 2;
    double av[] = {1, 2, 3}, bv[] = {10, -1};
    dl_array *a = dl_array_from_data(DL_F64, 1, &n3, av);
    dl_array *b = dl_array_from_data(DL_F64, 1, &n2, bv);
    dl_array *o;
    if (arrays_outer(a, b, &o) != 0) return 1;
    shape("outer", o);
    printf("outer[2][0] %g outer[1][1] %g\n", ((double *)o->data)[4], ((double *)o->data)[3]);

    dl_array *c;
    if (arrays_cube(3, &c) != 0) return 1;
    shape("cube", c);
    printf("cube[2][1][0] %g\n", ((double *)c->data)[2 * 9 + 1 * 3 + 0]);
    dl_array_release(c);

    float fv[] = {1.0f, -3.0f, 0.5f};
    dl_array *f = dl_array_from_data(DL_F32, 1, &n3, fv);
    dl_array *h;
    if (arrays_halve32(f, &h) != 0) return 1;
    shape("halve32", h);
    printf("halve32 %g %g %g\n", ((float *)h->data)[0], ((float *)h->data)[1], ((float *)h->data)[2]);
    dl_array_release(h);
    dl_array_release(f);

    int64_t iv[] = {5, -2, 10, 1};
    int64_t n4 = 4;
    dl_array *ints = dl_array_from_data(DL_I64, 1, &n4, iv);
    dl_array *cs;
    if (arrays_cumsum(ints, &cs) != 0) return 1;
    shape("cumsum", cs);
    for (int i = 0; i < 4; i++)
        printf("%lld%s", (long long)((int64_t *)cs->data)[i], i < 3 ? " " : "\n");
    dl_array_release(cs);

    dl_array *pos;
    if (arrays_positive(o, &pos) != 0) return 1;
    shape("positive", pos);
    int64_t cnt;
    dl_array *flat = dl_array_reshape(dl_array_retain(pos), 1, &pos->size, NULL);
    if (arrays_count(flat, &cnt) != 0) return 1;
    printf("positive count %lld of %lld\n", (long long)cnt, (long long)pos->size);
    dl_array_release(flat);
    dl_array_release(pos);

    bool bools[] = {true, false, true, true};
    dl_array *bs = dl_array_from_data(DL_BOOL, 1, &n4, bools);
    if (arrays_count(bs, &cnt) != 0) return 1;
    printf("count %lld\n", (long long)cnt);
    dl_array_release(bs);

    dl_array *ps;
    if (arrays_pairs(ints, &ps) != 0) return 1;
    printf("pairs: dtype %s elem_size %lld == sizeof %zu\n", dl_dtype_name(ps->dtype),
           (long long)ps->elem_size, sizeof(arrays_tup2_int_float_t));
    arrays_tup2_int_float_t *pe = ps->data;
    printf("pairs[1] (%lld, %g) pairs[2] (%lld, %g)\n", (long long)pe[1]._0, pe[1]._1,
           (long long)pe[2]._0, pe[2]._1);
    /* C builds an array of tuples too */
    dl_array *mine = dl_array_new_bytes(sizeof(arrays_tup2_int_float_t), 1, &n2);
    arrays_tup2_int_float_t *me = mine->data;
    me[0] = (arrays_tup2_int_float_t){7, 0.0};
    me[1] = (arrays_tup2_int_float_t){9, 1.0};
    dl_array *fs;
    if (arrays_firsts(mine, &fs) != 0) return 1;
    printf("firsts %lld %lld\n", (long long)((int64_t *)fs->data)[0], (long long)((int64_t *)fs->data)[1]);
    dl_array_release(fs);
    dl_array_release(mine);
    arrays_pairs_release(&ps);

    dl_array *e;
    if (arrays_empty(&e) != 0) return 1;
    shape("empty", e);
    dl_array_release(e);

    dl_array *s;
    if (arrays_same(a, &s) != 0) return 1;
    printf("same array: %d, refcount %lld\n", s == a, (long long)a->refcount);
    dl_array_release(s);
    printf("refcount after release %lld\n", (long long)a->refcount);

    dl_array_release(ints);
    dl_array_release(o);
    dl_array_release(a);
    dl_array_release(b);
    return 0;
}
// expect: outer: float rank 2 shape [3, 2] size 6
// expect: outer[2][0] 30 outer[1][1] -2
// expect: cube: float rank 3 shape [3, 3, 3] size 27
// expect: cube[2][1][0] 21
// expect: halve32: f32 rank 1 shape [3] size 3
// expect: halve32 0.5 -1.5 0.25
// expect: cumsum: int rank 1 shape [4] size 4
// expect: 5 3 13 14
// expect: positive: bool rank 2 shape [3, 2] size 6
// expect: positive count 3 of 6
// expect: count 3
// expect: pairs: dtype bytes elem_size 16 == sizeof 16
// expect: pairs[1] (-2, -1) pairs[2] (10, 5)
// expect: firsts 7 9
// expect: empty: float rank 1 shape [0] size 0
// expect: same array: 1, refcount 2
// expect: refcount after release 1
