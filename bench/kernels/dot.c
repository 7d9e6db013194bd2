/* dot product of two 10^7-element vectors, 20 times (baseline for dot.dl) */
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    long n = 10000000;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (long i = 0; i < n; i++) {
        x[i] = (double)i * 1e-7;
        y[i] = 1.0 - (double)i * 1e-7;
    }
    double acc = 0.0;
    for (int r = 0; r < 20; r++) {
        double s = 0.0;
        for (long i = 0; i < n; i++)
            s += x[i] * y[i];
        acc += s;
    }
    printf("%.17g\n", acc);
    free(x);
    free(y);
    return 0;
}
