/* gmm_bench — time the GMM objective and its hand-written gradient, or check the
 * gradient against central finite differences.
 *   gmm_bench FILE [reps]         timing (reps: samples per best-of; default automatic)
 *   gmm_bench --check FILE [n]    finite-difference check of <= n (200) coordinates
 *   gmm_bench --grad FILE         print the objective and the whole gradient */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "gmm.h"

/* Wall clock, or this process's CPU time when BENCH_CLOCK=cpu (steadier on a loaded
 * machine: time spent descheduled is not counted). */
static clockid_t clock_id = CLOCK_MONOTONIC;
static double now(void)
{
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static const GmmInput *g_in;
static double *g_grad;
static volatile double g_sink;
static void run_objective(void) { g_sink = gmm_objective(g_in, g_in->theta); }
static void run_gradient(void) { g_sink = gmm_gradient(g_in, g_in->theta, g_grad); }

/* Best-of-N timing, seconds per call: a sample runs the call `inner` times, doubled
 * until a sample lasts >= 1 ms; the fastest of N samples is kept, N making the samples
 * together last >= 0.2 s (and N >= 5), or N = reps when reps > 0. */
static double time_best(void (*fn)(void), int reps)
{
    long inner = 1;
    double t0;
    for (;; inner *= 2) {
        t0 = now();
        for (long r = 0; r < inner; r++) fn();
        if (now() - t0 >= 1e-3) break;
    }
    double best = INFINITY, total = 0;
    for (int s = 0; reps > 0 ? s < reps : (s < 5 || total < 0.2); s++) {
        t0 = now();
        for (long r = 0; r < inner; r++) fn();
        double t = now() - t0;
        total += t;
        if (t < best) best = t;
    }
    return best / inner;
}

/* Central differences in long double, h = 1e-6 max(1, |x|). The error is relative to
 * max(|g|, |fd|), except for entries tiny beside the objective: below TINY max(1, |f|)
 * it is the absolute error over that floor. The difference's own rounding error is a
 * few ulp of f over 2h, about 5e-13 |f| in x87 long double (measured: it grows tenfold
 * per tenfold smaller h), so an entry much smaller than |f| cannot be resolved to TOL
 * relative; at the floor that noise is ~5e-9 relative, far under TOL. */
#define TINY 1e-4
#define TOL 1e-6
static int check(const GmmInput *in, int maxn)
{
    const int d = in->d, k = in->k, isz = gmm_icf_size(d), np = gmm_nparams(d, k);
    double *grad = malloc(sizeof(double) * np);
    long double *th = malloc(sizeof(long double) * np);
    for (int i = 0; i < np; i++) th[i] = in->theta[i];
    const double f = gmm_objective(in, in->theta), fg = gmm_gradient(in, in->theta, grad);
    const long double fl = gmm_objective_ld(in, th);
    int bad = 0;
    if (fabs(f - fg) > 1e-12 * fmax(1, fabs(f)) || fabsl(f - fl) > 1e-12L * fmaxl(1, fabsl(fl))) {
        fprintf(stderr, "objective disagrees: %.17g (objective) %.17g (gradient) %.17Lg (long double)\n",
                f, fg, fl);
        bad = 1;
    }
    /* coordinate groups: alpha, mu, q, l; each gets an equal share of the sample */
    int *grp[4], cnt[4] = {0}, ngroups = 0;
    for (int g = 0; g < 4; g++) grp[g] = malloc(sizeof(int) * np);
    for (int i = 0; i < np; i++) {
        int g = i < k ? 0 : i < k + k * d ? 1 : (i - k - k * d) % isz < d ? 2 : 3;
        grp[g][cnt[g]++] = i;
    }
    for (int g = 0; g < 4; g++) ngroups += cnt[g] > 0;
    static const char *names[4] = {"alpha", "mu", "q", "l"};
    /* shares: smaller groups first, what a small group leaves goes to the others */
    int take[4] = {0}, left = maxn, done[4] = {0};
    for (int r = ngroups; r > 0; r--) {
        int s = -1;
        for (int g = 0; g < 4; g++)
            if (cnt[g] && !done[g] && (s < 0 || cnt[g] < cnt[s])) s = g;
        take[s] = cnt[s] < left / r ? cnt[s] : left / r;
        left -= take[s];
        done[s] = 1;
    }
    double worst = 0;
    int nchecked = 0;
    unsigned long long rng = 0x9e3779b97f4a7c15ULL;
    for (int g = 0; g < 4; g++) {
        double gworst = 0;
        /* a fixed pseudo-random sample (partial Fisher-Yates, xorshift64), so that no
         * position inside a block is systematically skipped */
        for (int s = 0; s < take[g]; s++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int j = s + (int)(rng % (unsigned long long)(cnt[g] - s)), i = grp[g][j];
            grp[g][j] = grp[g][s], grp[g][s] = i;
            long double x = th[i], h = 1e-6L * fmaxl(1, fabsl(x));
            th[i] = x + h;
            long double fp = gmm_objective_ld(in, th);
            th[i] = x - h;
            long double fm = gmm_objective_ld(in, th);
            th[i] = x;
            double fd = (double)((fp - fm) / (2 * h));
            double scale = fmax(fmax(fabs(grad[i]), fabs(fd)), TINY * fmax(1, fabs(f)));
            double err = fabs(grad[i] - fd) / scale;
            if (err > gworst) gworst = err;
            if (err > TOL) {
                fprintf(stderr, "theta[%d] (%s): gradient %.17g, finite difference %.17g, error %.3g\n",
                        i, names[g], grad[i], fd, err);
                bad = 1;
            }
            nchecked++;
        }
        if (take[g])
            printf("check %-5s %4d of %6d coordinates, max error %.3g\n", names[g], take[g], cnt[g], gworst);
        if (gworst > worst) worst = gworst;
    }
    printf("check %d coordinates, max error %.3g (tolerance %g): %s\n", nchecked, worst, TOL,
           bad ? "FAIL" : "ok");
    for (int g = 0; g < 4; g++) free(grp[g]);
    free(th);
    free(grad);
    return bad;
}

int main(int argc, char **argv)
{
    int checking = argc > 1 && strcmp(argv[1], "--check") == 0;
    int dumping = argc > 1 && strcmp(argv[1], "--grad") == 0;
    const int a = 1 + (checking || dumping); /* argv[a] is FILE */
    if (argc < a + 1 || argc > a + 1 + !dumping) {
        fprintf(stderr, "usage: gmm_bench FILE [reps]\n       gmm_bench --check FILE [ncoords]\n"
                        "       gmm_bench --grad FILE\n");
        return 2;
    }
    GmmInput in;
    if (gmm_read(argv[a], &in)) return 2;
    int opt = argc > a + 1 ? atoi(argv[a + 1]) : 0;
    const int np = gmm_nparams(in.d, in.k);
    printf("file %s\nsize d=%d K=%d N=%d params=%d%s\n", argv[a], in.d, in.k, in.n, np,
           in.replicated ? " (one point replicated)" : "");
    const char *clk = getenv("BENCH_CLOCK");
    if (clk && strcmp(clk, "cpu") == 0) clock_id = CLOCK_PROCESS_CPUTIME_ID;
    int rc = 0;
    if (dumping) {
        double *grad = malloc(sizeof(double) * np);
        printf("objective %.17g\n", gmm_gradient(&in, in.theta, grad));
        for (int i = 0; i < np; i++) printf("%.17g\n", grad[i]);
        free(grad);
    } else if (checking) {
        rc = check(&in, opt > 0 ? opt : 200);
    } else {
        g_in = &in;
        g_grad = malloc(sizeof(double) * np);
        double to = time_best(run_objective, opt), tg = time_best(run_gradient, opt);
        printf("clock %s\nobjective_s %.6e\ngradient_s %.6e\nratio %.3f\n",
               clock_id == CLOCK_MONOTONIC ? "wall" : "cpu", to, tg, tg / to);
        printf("objective %.17g\ngradient", gmm_objective(&in, in.theta));
        gmm_gradient(&in, in.theta, g_grad);
        for (int i = 0; i < np && i < 8; i++) printf(" %.10g", g_grad[i]);
        printf("%s\n", np > 8 ? " ..." : "");
        free(g_grad);
    }
    gmm_free(&in);
    return rc;
}
