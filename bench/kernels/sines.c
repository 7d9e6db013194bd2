/* sum of sin(x_i) over 10^7 points, 10 times (baseline for sines.dl) */
#include <math.h>
#include <stdio.h>
int main(void)
{
    long n = 10000000;
    double acc = 0.0;
    for (int r = 0; r < 10; r++) {
        double s = 0.0;
        for (long i = 0; i < n; i++)
            s += sin((double)i * 1e-6 + (double)r);
        acc += s;
    }
    printf("%.17g\n", acc);
    return 0;
}
