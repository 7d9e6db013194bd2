/* gmm.h — ADBench Gaussian mixture model objective (Srajer, Kukelova & Fitzgibbon
 * 2018, "A benchmark of selected algorithmic differentiation tools on some problems
 * in computer vision and machine learning"); see shared/design/BENCHMARKS.md. */
#ifndef BENCH_GMM_H
#define BENCH_GMM_H

/* One problem: the parameter vector theta = [alpha (K), mu (K*D), icf (K*D(D+1)/2,
 * each component's q (D) then l (D(D-1)/2))], the N points x (N*D, row-major) and
 * the Wishart prior (gamma, m). */
typedef struct {
    int d, k, n;
    int replicated;       /* the file gave one point, replicated N times ("2.5M") */
    double *theta;        /* gmm_nparams() values */
    double *x;            /* n*d values */
    double gamma, m;
} GmmInput;

static inline int gmm_icf_size(int d) { return d * (d + 1) / 2; }
static inline int gmm_nparams(int d, int k) { return k + k * d + k * gmm_icf_size(d); }

/* gmm_read: parse an ADBench GMM file; returns 0, or -1 with a message on stderr. */
int gmm_read(const char *path, GmmInput *in);
void gmm_free(GmmInput *in);

/* The objective f(theta) of BENCHMARKS.md, in double and (for finite-difference
 * checks) in long double; both are compiled from gmm_objective.inc. */
double gmm_objective(const GmmInput *in, const double *theta);
long double gmm_objective_ld(const GmmInput *in, const long double *theta);

/* manual.c: the hand-written gradient of gmm_objective; grad has gmm_nparams()
 * entries in theta's order. Returns f. */
double gmm_gradient(const GmmInput *in, const double *theta, double *grad);

#endif
