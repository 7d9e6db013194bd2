/* Errors: status 1, the message and the position of the failing index. */
#include "errors.h"

#include <stdio.h>
#include <string.h>

static void report(const char *what, int st)
{
    dl_srcloc l = dl_last_error_loc();
    const char *f = l.file ? strrchr(l.file, '/') : NULL;
    printf("%s: status %d: %s", what, st, st ? dl_last_error() : "-");
    if (st && l.file)
        printf(" at %s:%d:%d", f ? f + 1 : l.file, (int)l.line, (int)l.col);
    printf("\n");
}

int main(void)
{
    int64_t n = 3;
    double v[] = {1, 2, 3};
    dl_array *xs = dl_array_from_data(DL_F64, 1, &n, v);
    double d = -1;
    report("at 1", errors_at(xs, 1, &d));
    printf("value %g\n", d);
    d = -1;
    report("at 3", errors_at(xs, 3, &d));
    printf("out untouched: %g\n", d);
    report("at -1", errors_at(xs, -1, &d));

    int64_t n2 = 2;
    dl_array *ys = dl_array_from_data(DL_F64, 1, &n2, v);
    dl_array *r = NULL;
    report("add", errors_add(xs, ys, &r));
    printf("result untouched: %d\n", r == NULL);

    int64_t q = 0;
    report("quot", errors_quot(1, 0, &q));
    report("quot ok", errors_quot(9, 2, &q));
    printf("quot %lld\n", (long long)q);

    report("check", errors_check(-4.0, &d));
    report("check ok", errors_check(16.0, &d));
    printf("sqrt %g\n", d);

    const char *s = NULL;
    report("label", errors_label("custom message from C", 0, &s));
    report("label ok", errors_label("fine", 1, &s));
    printf("%s\n", s);
    errors_label_release(&s);

    int64_t shape[2] = {2, 2};
    dl_array *m = dl_array_from_data(DL_F64, 2, shape, v);
    errors_tup2_float_arr1_float_t row;
    report("row 5", errors_row(m, 5, &row));
    report("row 1", errors_row(m, 1, &row));
    printf("row %g, %lld elements\n", row._0, (long long)row._1->size);
    errors_row_release(&row);

    /* the caller's own trap is not disturbed by the calls' traps */
    printf("trap depth %d\n", dl_error_trap_depth());
    dl_array_release(m);
    dl_array_release(xs);
    dl_array_release(ys);
    return 0;
}
// expect: at 1: status 0: -
// expect: value 2
// expect: at 3: status 1: index 3 out of bounds for axis 0 of length 3 at errors.dl:3:48
// expect: out untouched: -1
// expect: at -1: status 1: index -1 out of bounds for axis 0 of length 3 at errors.dl:3:48
// expect: add: status 1: shape mismatch in '+': [3] and [2] at errors.dl:4:54
// expect: result untouched: 1
// expect: quot: status 1: integer division by zero at errors.dl:5:43
// expect: quot ok: status 0: -
// expect: quot 4
// expect: check: status 1: negative input at errors.dl:6:55
// expect: check ok: status 0: -
// expect: sqrt 4
// expect: label: status 1: custom message from C at errors.dl:7:86
// expect: label ok: status 0: -
// expect: fine!
// expect: row 5: status 1: index 5 out of bounds for axis 0 of length 2 at errors.dl:8:62
// expect: row 1: status 0: -
// expect: row 3, 2 elements
// expect: trap depth 0
