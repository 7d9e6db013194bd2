/* Builds and runs examples/c-embed's compose (compose.c with encoder.dl and
 * head.dl, two modules compiled apart and composed by dl_learner_seq) in a
 * scratch copy, with this build's dcc and libdlrt in place of pkg-config;
 * checks that training reduced the error to the noise of the data and that
 * the model's prediction is close to the least-squares fit (computed by
 * learn_example.dl's least_squares). */
#define _POSIX_C_SOURCE 200809L
#include "learn_example.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    const char *src = getenv("DCC_SRCDIR"), *build = getenv("DCC_BUILDDIR");
    if (!src || !build || !getenv("DCC")) {
        printf("needs DCC, DCC_SRCDIR and DCC_BUILDDIR (make check sets them)\n");
        return 1;
    }
    /* a sanitizer build's libdlrt needs the sanitizer runtimes (configure
     * --enable-sanitizers; Makefile.am passes the flags) */
    const char *san = getenv("DCC_TEST_SANFLAGS") ? getenv("DCC_TEST_SANFLAGS") : "";
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "unset MAKEFLAGS MFLAGS MAKELEVEL; t=$(mktemp -d) || exit 1; e='%s/examples/c-embed'; "
             "cp \"$e/Makefile\" \"$e/compose.c\" \"$e/encoder.dl\" \"$e/head.dl\" "
             "\"$e/houses.csv\" \"$t\" && chmod u+w \"$t\"/* && "
             "make -s -C \"$t\" compose DCC=\"$DCC\" CFLAGS='-O2 -Wall -Wextra -Werror %s' "
             "DLRT_CFLAGS='-I%s/runtime' "
             "DLRT_LIBS='-L%s/runtime/.libs -ldlrt -Wl,-rpath,%s/runtime/.libs %s' >&2 && "
             "(cd \"$t\" && ./compose houses.csv); st=$?; rm -rf \"$t\"; exit $st",
             src, san, src, build, build, san);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 1;
    char line[256], name[64] = "";
    double first = -1, last = -1, paper = -1, pred = NAN, v;
    int step, nparams = 0;
    while (fgets(line, sizeof line, p)) {
        fputs(line, stderr);
        if (sscanf(line, "adam step %d mse %lf", &step, &v) == 2) {
            if (first < 0)
                first = v;
            last = v;
        }
        sscanf(line, "after 100 of the paper's updates mse %lf", &paper);
        sscanf(line, "prediction for (1.2, 3): %lf", &pred);
        const char *colon = strstr(line, ": ");
        if (colon && strstr(colon, " parameter arrays") && colon - line < 64) {
            memcpy(name, line, (size_t)(colon - line));
            name[colon - line] = 0;
            nparams = atoi(colon + 2);
        }
    }
    int st = pclose(p);
    printf("compose built and ran: %d\n", st == 0);
    printf("learner %s: %d parameter arrays\n", name, nparams);
    printf("mean squared error from above 1 to below 0.05: %d\n", first > 1 && last < 0.05);
    printf("the paper's updates keep it below 0.05: %d\n", paper >= 0 && paper < 0.05);

    char csv[2048];
    snprintf(csv, sizeof csv, "%s/examples/c-embed/houses.csv", src);
    dl_array *data = dl_read_csv(csv, NULL), *c;
    if (learn_example_least_squares(data, &c) != 0)
        return 1;
    const double *k = c->data;
    double ls = 1.2 * k[0] + 3.0 * k[1] + k[2];
    printf("prediction within 0.1 of least squares: %d\n", fabs(pred - ls) < 0.1);
    dl_array_release(c);
    dl_array_release(data);
    return 0;
}
// expect: compose built and ran: 1
// expect: learner (encoder >>> head): 4 parameter arrays
// expect: mean squared error from above 1 to below 0.05: 1
// expect: the paper's updates keep it below 0.05: 1
// expect: prediction within 0.1 of least squares: 1
