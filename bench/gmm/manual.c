/* manual.c — hand-written gradient of the ADBench GMM objective (gmm_objective.inc).
 *
 * Derivation. For point i and component k write
 *   z = x_i - mu_k,   y = Q_k z,   beta_ik = alpha_k + sum_j q_kj - 1/2 |y|^2,
 *   r_ik = exp(beta_ik - logsumexp_k beta_ik)       (softmax over k; sum_k r_ik = 1),
 * so that d logsumexp_k beta_ik = sum_k r_ik d beta_ik. With Q = diag(exp q) + L
 * (L strictly lower, L[j][a] = l_idx, filled column by column):
 *
 *   d beta / d alpha_k  = 1
 *   d beta / d mu_k     = -(dy/dmu)^T y = Q^T y                     (dy/dmu = -Q)
 *   d beta / d q_kj     = 1 - y_j exp(q_kj) z_j                      (dy_j/dq_j = exp(q_j) z_j)
 *   d beta / d L[j][a]  = - y_j z_a      for j > a                   (dy_j/dL[j][a] = z_a)
 *
 * The other terms:
 *   d/d alpha_k ( -N logsumexp alpha )          = -N softmax(alpha)_k
 *   d/d q_kj    ( 1/2 g^2 exp(q_kj)^2 - m q_kj ) = g^2 exp(2 q_kj) - m
 *   d/d l       ( 1/2 g^2 l^2 )                 = g^2 l
 *   the constants (-N D/2 log 2pi, -K C) have none.
 *
 * Hence
 *   df/dalpha_k = sum_i r_ik - N softmax(alpha)_k
 *   df/dmu_k    = sum_i r_ik Q_k^T y_ik
 *   df/dq_kj    = sum_i r_ik (1 - y_ikj exp(q_kj) z_ikj) + g^2 exp(2 q_kj) - m
 *   df/dL_k[j][a] = - sum_i r_ik y_ikj z_ika + g^2 L_k[j][a]
 * One pass over the points: the forward sweep keeps z and y of every component for the
 * current point, then the r-weighted contributions are accumulated. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "gmm.h"

static double lse(const double *v, int n)
{
    double mx = v[0];
    for (int i = 1; i < n; i++)
        if (v[i] > mx) mx = v[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp(v[i] - mx);
    return mx + log(s);
}

double gmm_gradient(const GmmInput *in, const double *theta, double *grad)
{
    const int d = in->d, k = in->k, n = in->n, isz = gmm_icf_size(d);
    const double *alpha = theta, *mu = theta + k, *icf = theta + k + k * d;
    double *galpha = grad, *gmu = grad + k, *gicf = grad + k + k * d;
    const double pi = 3.14159265358979323846;
    double *qdiag = malloc(sizeof(double) * (size_t)(k * d + 2 * k + 2 * k * d + d));
    double *sumq = qdiag + k * d, *beta = sumq + k, *z = beta + k, *y = z + k * d,
           *wy = y + k * d;

    memset(grad, 0, sizeof(double) * (size_t)gmm_nparams(d, k));
    for (int c = 0; c < k; c++) {
        sumq[c] = 0;
        for (int j = 0; j < d; j++) {
            sumq[c] += icf[c * isz + j];
            qdiag[c * d + j] = exp(icf[c * isz + j]);
        }
    }
    double slse = 0;
    for (int i = 0; i < n; i++) {
        const double *xi = in->x + (size_t)i * d;
        /* forward: z, y = Q z and beta for every component */
        for (int c = 0; c < k; c++) {
            const double *l = icf + c * isz + d, *qd = qdiag + c * d;
            double *zc = z + c * d, *yc = y + c * d;
            for (int j = 0; j < d; j++) {
                zc[j] = xi[j] - mu[c * d + j];
                yc[j] = qd[j] * zc[j];
            }
            int idx = 0;
            for (int a = 0; a < d; a++)
                for (int b = a + 1; b < d; b++) yc[b] += l[idx++] * zc[a];
            double sq = 0;
            for (int j = 0; j < d; j++) sq += yc[j] * yc[j];
            beta[c] = alpha[c] + sumq[c] - 0.5 * sq;
        }
        const double li = lse(beta, k);
        slse += li;
        /* reverse: r_ik-weighted contributions */
        for (int c = 0; c < k; c++) {
            const double r = exp(beta[c] - li);
            const double *l = icf + c * isz + d, *qd = qdiag + c * d;
            const double *zc = z + c * d, *yc = y + c * d;
            double *gq = gicf + c * isz, *gl = gq + d, *gm = gmu + c * d;
            galpha[c] += r;
            /* r (Q^T y)_a = r exp(q_a) y_a + sum_{b>a} L[b][a] (r y_b); the sum runs in
             * four partial sums, so that it is not one chain of dependent adds */
            for (int j = 0; j < d; j++) wy[j] = r * yc[j];
            int idx = 0;
            for (int a = 0; a < d; a++) {
                const double za = zc[a], *lc = l + idx - (a + 1);
                double *glc = gl + idx - (a + 1);
                double s0 = qd[a] * wy[a], s1 = 0, s2 = 0, s3 = 0;
                int b = a + 1;
                for (; b + 3 < d; b += 4) {
                    s0 += lc[b] * wy[b];
                    s1 += lc[b + 1] * wy[b + 1];
                    s2 += lc[b + 2] * wy[b + 2];
                    s3 += lc[b + 3] * wy[b + 3];
                    glc[b] -= wy[b] * za;
                    glc[b + 1] -= wy[b + 1] * za;
                    glc[b + 2] -= wy[b + 2] * za;
                    glc[b + 3] -= wy[b + 3] * za;
                }
                for (; b < d; b++) {
                    s0 += lc[b] * wy[b];
                    glc[b] -= wy[b] * za;
                }
                idx += d - a - 1;
                gm[a] += (s0 + s1) + (s2 + s3);
                gq[a] += r - wy[a] * qd[a] * za;
            }
        }
    }
    const double la = lse(alpha, k);
    for (int c = 0; c < k; c++) galpha[c] -= n * exp(alpha[c] - la);

    /* Wishart prior, as in gmm_objective.inc */
    const double g = in->gamma, m = in->m, nn = d + m + 1;
    double lgd = 0.25 * d * (d - 1) * log(pi);
    for (int j = 1; j <= d; j++) lgd += lgamma(0.5 * nn + 0.5 * (1 - j));
    const double cst = nn * d * (log(g) - 0.5 * log(2.0)) - lgd;
    double f = -n * d * 0.5 * log(2 * pi) + slse - n * la;
    for (int c = 0; c < k; c++) {
        double fro = 0;
        for (int j = 0; j < d; j++) {
            const double e = qdiag[c * d + j];
            fro += e * e;
            gicf[c * isz + j] += g * g * e * e - m;
        }
        for (int j = d; j < isz; j++) {
            fro += icf[c * isz + j] * icf[c * isz + j];
            gicf[c * isz + j] += g * g * icf[c * isz + j];
        }
        f += 0.5 * g * g * fro - m * sumq[c];
    }
    f -= k * cst;
    free(qdiag);
    return f;
}
