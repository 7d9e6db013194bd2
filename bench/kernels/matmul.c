/* 512x512 matrix product through OpenBLAS directly, 20 times
 * (baseline for matmul.dl) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
    int n = 512;
    double *a = malloc(sizeof(double) * n * n), *b = malloc(sizeof(double) * n * n),
           *c = malloc(sizeof(double) * n * n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            a[i * n + j] = (double)((i + j) % 7) * 0.1;
            b[i * n + j] = (double)((i * 3 + j) % 5) * 0.2;
        }
    double acc = 0.0;
    for (int r = 0; r < 20; r++) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
        acc += c[(r * 37) % (n * n)];
    }
    printf("%.17g\n", acc);
    free(a);
    free(b);
    free(c);
    return 0;
}
