/* Reference counts across many calls; runs under valgrind (no leaks, no
 * invalid reads) in the test suite. */
#include "ownership.h"

#include <stdio.h>

int main(void)
{
    int64_t n = 4;
    double v[] = {1, 2, 3, 4};
    dl_array *xs = dl_array_from_data(DL_F64, 1, &n, v);
    long total = 0;
    for (int r = 0; r < 1000; r++) {
        ownership_pair_t p;
        if (ownership_split(xs, &p) != 0) return 1;
        if (r == 0)
            printf("left is the parameter: %d, its refcount now %lld\n", p.left == xs,
                   (long long)xs->refcount);
        dl_array *j;
        if (ownership_join(&p, &j) != 0) return 1;
        total += j->size;
        dl_array_release(j);
        ownership_split_release(&p); /* releases left and right */
    }
    printf("joined %ld elements, refcount back to %lld\n", total, (long long)xs->refcount);

    int64_t shape[2] = {2, 2};
    dl_array *m = dl_array_from_data(DL_F64, 2, shape, v);
    dl_array *row;
    if (ownership_keep_first(m, &row) != 0) return 1;
    dl_array_release(m); /* the row does not depend on the matrix staying alive */
    printf("row %g %g\n", ((double *)row->data)[0], ((double *)row->data)[1]);
    dl_array_release(row);

    dl_array *g;
    if (ownership_grow(5, &g) != 0) return 1;
    printf("grow: rank %d shape [%lld, %lld]\n", (int)g->rank, (long long)g->shape[0], (long long)g->shape[1]);
    dl_array_release(g);

    for (int r = 0; r < 100; r++) {
        dl_array *ws;
        if (ownership_words(r, &ws) != 0) return 1;
        int64_t c;
        if (ownership_count_chars(ws, &c) != 0) return 1;
        if (r == 99)
            printf("words: %lld, the last %s\n", (long long)c, ((const char **)ws->data)[98]);
        ownership_words_release(&ws); /* the strings inside too */
    }
    dl_array_release(xs);
    return 0;
}
// expect: left is the parameter: 1, its refcount now 2
// expect: joined 8000 elements, refcount back to 1
// expect: row 1 2
// expect: grow: rank 2 shape [1, 5]
// expect: words: 99, the last w98
