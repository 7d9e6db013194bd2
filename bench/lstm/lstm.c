/* lstm.c — reader for ADBench LSTM files and the loss (see lstm.h). */
#include <stdio.h>
#include <stdlib.h>
#include <tgmath.h>
#include "lstm.h"

/* File (whitespace-separated): l c b; 2*l*4*b main parameters; 3*b extra parameters;
 * 2*l*b initial state; c*b sequence values. */
int lstm_read(const char *path, LstmInput *in)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        perror(path);
        return -1;
    }
    if (fscanf(fp, "%d %d %d", &in->l, &in->c, &in->b) != 3 || in->l < 1 || in->c < 2 ||
        in->b < 1) {
        fprintf(stderr, "%s: not an ADBench LSTM file (bad header)\n", path);
        fclose(fp);
        return -1;
    }
    size_t np = (size_t)lstm_nparams(in->l, in->b), ns = (size_t)2 * in->l * in->b,
           nq = (size_t)in->c * in->b;
    in->theta = malloc(np * sizeof(double));
    in->state = malloc(ns * sizeof(double));
    in->seq = malloc(nq * sizeof(double));
    size_t got = 0;
    for (size_t i = 0; i < np && fscanf(fp, "%lf", &in->theta[i]) == 1; i++) got++;
    for (size_t i = 0; i < ns && got == np + i && fscanf(fp, "%lf", &in->state[i]) == 1; i++) got++;
    for (size_t i = 0; i < nq && got == np + ns + i && fscanf(fp, "%lf", &in->seq[i]) == 1; i++) got++;
    double extra;
    int trailing = fscanf(fp, "%lf", &extra) == 1;
    fclose(fp);
    if (got != np + ns + nq || trailing) {
        fprintf(stderr, "%s: not an ADBench LSTM file (%s after %zu of %zu values)\n", path,
                trailing ? "extra values" : "ended", got, np + ns + nq);
        lstm_free(in);
        return -1;
    }
    return 0;
}

void lstm_free(LstmInput *in)
{
    free(in->theta);
    free(in->state);
    free(in->seq);
}

#define REAL double
#define LSTM_OBJECTIVE lstm_objective
#include "lstm_objective.inc"
#undef REAL
#undef LSTM_OBJECTIVE

#define REAL long double
#define LSTM_OBJECTIVE lstm_objective_ld
#include "lstm_objective.inc"
