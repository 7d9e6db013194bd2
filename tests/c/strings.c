/* Strings in and out of DL, alone and inside records and tuples. */
#include "strings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    const char *s = NULL;
    char buf[32];
    strcpy(buf, "world");
    if (strings_greet(buf, &s) != 0) return 1;
    buf[0] = 'W'; /* the argument was copied: the result does not change */
    printf("%s\n", s);
    strings_greet_release(&s);

    strings_person_t p = {"Ada", 36};
    if (strings_describe(&p, &s) != 0) return 1;
    printf("%s\n", s);
    strings_describe_release(&s);

    strings_person_t q;
    if (strings_rename(&p, "Grace", &q) != 0) return 1;
    printf("%s %lld (was %s)\n", q.name, (long long)q.age, p.name);
    strings_rename_release(&q);

    strings_tup2_string_string_t t = {"left", "right"};
    strings_tup2_string_int_t r;
    if (strings_both(&t, &r) != 0) return 1;
    printf("%s %lld\n", r._0, (long long)r._1);
    strings_both_release(&r);

    int64_t shape[1] = {3};
    dl_array *xs = dl_array_new(DL_F64, 1, shape);
    double *d = xs->data;
    d[0] = 0.5, d[1] = -1.0, d[2] = 1e-5;
    if (strings_shown(xs, &s) != 0) return 1;
    printf("%s (%zu characters)\n", s, strlen(s));
    strings_shown_release(&s);
    dl_array_release(xs);

    const char *text = "a string the caller frees at once";
    char *heap = malloc(strlen(text) + 1);
    strcpy(heap, text);
    if (strings_keep(heap) != 0) return 1;
    free(heap);
    dl_flush();
    return 0;
}
// expect: hello, world
// expect: Ada is 36
// expect: Grace 36 (was Ada)
// expect: rightleft 2
// expect: [0.5, -1.0, 1e-05] (18 characters)
// expect: a string the caller frees at once
