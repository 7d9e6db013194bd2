/* Scalars across the C boundary: each export returns 0 and writes *out. */
#include "scalars.h"

#include <stdio.h>

int main(void)
{
    double d = 0;
    float f = 0;
    int64_t i = 0;
    bool b = true;
    if (scalars_add(1.25, 2.5, &d) != 0) return 1;
    printf("add %.17g\n", d);
    if (scalars_scale32(1.5f, 3.0f, &f) != 0) return 1;
    printf("scale32 %.9g\n", (double)f);
    if (scalars_idiv(-7, 2, &i) != 0) return 1;
    printf("idiv %lld\n", (long long)i);
    if (scalars_negate(true, &b) != 0) return 1;
    printf("negate(true) %d\n", b);
    if (scalars_negate(false, &b) != 0) return 1;
    printf("negate(false) %d\n", b);
    if (scalars_count_true(true, false, true, &i) != 0) return 1;
    printf("count_true %lld\n", (long long)i);
    if (scalars_half(5, &d) != 0) return 1;
    printf("half %.17g\n", d);
    if (scalars_to_f32(0.1, &f) != 0) return 1;
    printf("to_f32 %d\n", f == 0.1f);
    fflush(stdout);
    if (scalars_ping() != 0) return 1; /* unit -> unit: no arguments at all */
    dl_flush();
    if (scalars_seven(&i) != 0) return 1;
    printf("seven %lld\n", (long long)i);
    if (scalars_mixed(1.5, 4, true, &d) != 0) return 1;
    printf("mixed %.17g\n", d);
    if (scalars_mixed(1.5, 4, false, &d) != 0) return 1;
    printf("mixed %.17g\n", d);
    if (scalars_big(&i) != 0) return 1;
    printf("big %lld\n", (long long)i);
    return 0;
}
// expect: add 3.75
// expect: scale32 4.5
// expect: idiv -3
// expect: negate(true) 0
// expect: negate(false) 1
// expect: count_true 2
// expect: half 2.5
// expect: to_f32 1
// expect: ping from DL
// expect: seven 7
// expect: mixed 6
// expect: mixed -1.5
// expect: big 9007199254740993
