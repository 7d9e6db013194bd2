/* 5-point Jacobi stencil on a 3162x3162 grid (~10^7 points), 10 sweeps
 * (baseline for stencil.dl); the boundary is kept fixed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void)
{
    long n = 3162;
    double *a = malloc(n * n * sizeof *a), *b = malloc(n * n * sizeof *b);
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++)
            a[i * n + j] = (double)((i * 7 + j * 3) % 11);
    for (int s = 0; s < 10; s++) {
        memcpy(b, a, n * n * sizeof *a);
        for (long i = 1; i < n - 1; i++)
            for (long j = 1; j < n - 1; j++)
                b[i * n + j] = 0.2 * (a[i * n + j] + a[(i - 1) * n + j] + a[(i + 1) * n + j] +
                                      a[i * n + j - 1] + a[i * n + j + 1]);
        double *t = a; a = b; b = t;
    }
    double sum = 0.0;
    for (long i = 0; i < n * n; i++)
        sum += a[i];
    printf("%.17g\n", sum);
    free(a);
    free(b);
    return 0;
}
