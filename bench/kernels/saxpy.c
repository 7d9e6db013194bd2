/* y <- a*x + y over 10^7 elements, 20 times (baseline for saxpy.dl) */
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    long n = 10000000;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (long i = 0; i < n; i++) {
        x[i] = (double)i * 1e-7;
        y[i] = 1.0;
    }
    for (int r = 0; r < 20; r++)
        for (long i = 0; i < n; i++)
            y[i] = 0.5 * x[i] + y[i];
    double s = 0.0;
    for (long i = 0; i < n; i++)
        s += y[i];
    printf("%.17g\n", s);
    free(x);
    free(y);
    return 0;
}
