/* Gradients from C, checked against central finite differences. */
#include "derivatives.h"

#include <math.h>
#include <stdio.h>

static double rosen(double a, double b) { return (1 - a) * (1 - a) + 100 * (b - a * a) * (b - a * a); }

int main(void)
{
    int64_t n = 2;
    double wv[] = {0.3, -0.2};
    derivatives_model_t m = {dl_array_from_data(DL_F64, 1, &n, wv), 0.1};
    derivatives_model_t g;
    if (derivatives_loss_grad(&m, &g) != 0) return 1;
    const double h = 1e-6;
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        double *p = i < 2 ? &((double *)m.w->data)[i] : &m.b;
        double keep = *p, up, down;
        *p = keep + h;
        derivatives_loss_value(&m, &up);
        *p = keep - h;
        derivatives_loss_value(&m, &down);
        *p = keep;
        double fd = (up - down) / (2 * h);
        double ad = i < 2 ? ((double *)g.w->data)[i] : g.b;
        if (fabs(fd - ad) > worst)
            worst = fabs(fd - ad);
    }
    printf("loss_grad: gradient record, w of %lld, agrees with differences: %d\n",
           (long long)g.w->size, worst < 1e-6);
    derivatives_loss_grad_release(&g);

    derivatives_tup2_float_float_t p = {-0.5, 1.5}, dp;
    if (derivatives_rosen_grad(&p, &dp) != 0) return 1;
    double fa = (rosen(-0.5 + h, 1.5) - rosen(-0.5 - h, 1.5)) / (2 * h);
    double fb = (rosen(-0.5, 1.5 + h) - rosen(-0.5, 1.5 - h)) / (2 * h);
    printf("rosen_grad (%.6f, %.6f) agrees: %d\n", dp._0, dp._1,
           fabs(fa - dp._0) < 1e-5 && fabs(fb - dp._1) < 1e-5);

    derivatives_tup2_float_float_t dir = {1.0, 2.0}, vt;
    if (derivatives_rosen_jvp(&p, &dir, &vt) != 0) return 1;
    printf("rosen_jvp value %.6f, directional %.6f = %.6f\n", vt._0, vt._1, dp._0 + 2 * dp._1);

    derivatives_tup2_float_fn_float_tup2_float_float_t vj;
    if (derivatives_rosen_vjp(&p, &vj) != 0) return 1;
    derivatives_tup2_float_float_t ct;
    if (derivatives_call_float_to_tup2_float_float(vj._1, 2.0, &ct) != 0) return 1;
    printf("rosen_vjp value %.6f, pullback of 2 (%.6f, %.6f)\n", vj._0, ct._0, ct._1);
    derivatives_rosen_vjp_release(&vj);
    dl_array_release(m.w);
    return 0;
}
// expect: loss_grad: gradient record, w of 2, agrees with differences: 1
// expect: rosen_grad (247.000000, 250.000000) agrees: 1
// expect: rosen_jvp value 158.500000, directional 747.000000 = 747.000000
// expect: rosen_vjp value 158.500000, pullback of 2 (494.000000, 500.000000)
