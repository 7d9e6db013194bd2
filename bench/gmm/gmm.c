/* gmm.c — reader for ADBench GMM files and the objective (see gmm.h). */
#include <stdio.h>
#include <stdlib.h>
#include <tgmath.h>
#include "gmm.h"

/* Read every number of a whitespace-separated text file; *count gets how many. */
static double *read_numbers(const char *path, size_t *count)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        perror(path);
        return NULL;
    }
    size_t n = 0, cap = 1024;
    double *v = malloc(cap * sizeof *v), t;
    while (fscanf(fp, "%lf", &t) == 1) {
        if (n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = t;
    }
    if (!feof(fp)) {
        fprintf(stderr, "%s: not a number after %zu values\n", path, n);
        free(v);
        fclose(fp);
        return NULL;
    }
    fclose(fp);
    *count = n;
    return v;
}

/* File: D K N; K alphas; K*D means; per component D q then D(D-1)/2 l; N points of D
 * values (or a single point, replicated N times: ADBench's "2.5M" sets); gamma m. */
int gmm_read(const char *path, GmmInput *in)
{
    size_t cnt;
    double *v = read_numbers(path, &cnt);
    if (!v) return -1;
    if (cnt < 3) goto bad;
    in->d = (int)v[0], in->k = (int)v[1], in->n = (int)v[2];
    if (in->d < 1 || in->k < 1 || in->n < 1) goto bad;
    size_t np = (size_t)gmm_nparams(in->d, in->k), nx = (size_t)in->n * in->d;
    if (cnt == 3 + np + nx + 2) in->replicated = 0;
    else if (cnt == 3 + np + in->d + 2) in->replicated = 1;
    else goto bad;
    in->theta = malloc(np * sizeof(double));
    in->x = malloc(nx * sizeof(double));
    for (size_t i = 0; i < np; i++) in->theta[i] = v[3 + i];
    const double *xs = v + 3 + np;
    for (size_t i = 0; i < nx; i++) in->x[i] = xs[in->replicated ? i % in->d : i];
    const double *w = xs + (in->replicated ? (size_t)in->d : nx);
    in->gamma = w[0], in->m = w[1];
    free(v);
    return 0;
bad:
    fprintf(stderr, "%s: not an ADBench GMM file (%zu numbers)\n", path, cnt);
    free(v);
    return -1;
}

void gmm_free(GmmInput *in)
{
    free(in->theta);
    free(in->x);
}

#define REAL double
#define GMM_OBJECTIVE gmm_objective
#define GMM_LSE gmm_lse
#include "gmm_objective.inc"
#undef REAL
#undef GMM_OBJECTIVE
#undef GMM_LSE

#define REAL long double
#define GMM_OBJECTIVE gmm_objective_ld
#define GMM_LSE gmm_lse_ld
#include "gmm_objective.inc"
