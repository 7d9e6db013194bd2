/* manual.c — hand-written reverse-mode gradient of the ADBench LSTM loss
 * (lstm_objective.inc): a forward sweep that records every layer's input, previous
 * state, gates and new cell, then a backward sweep through time.
 *
 * Derivation, for one layer at one step (elementwise; u the layer's input, hp and cp
 * the previous hidden and cell state, s' = s (1 - s), tanh' = 1 - tanh^2):
 *   c = cp f + in g,   h = o tanh c
 *   given dh (from the layer above or the output, plus the next step's use of h) and
 *   dc (the next step's use of c):
 *     do  = dh tanh c                  dc += dh o (1 - tanh^2 c)
 *     df  = dc cp      din = dc g      dg = dc in      dcp = dc f
 *   through the nonlinearities, a = the pre-activation of each gate:
 *     a_f = df f (1-f)   a_in = din in (1-in)   a_o = do o (1-o)   a_g = dg (1 - g^2)
 *   and a = v W + B gives dW += a v, dB += a, dv += a W, with v = u for f and o,
 *   v = hp for in and g:
 *     du  = a_f W_f + a_o W_o              (to the layer below, or to in_weight)
 *     dhp = a_in W_in + a_g W_g            (to this layer at the previous step)
 * Output at step t: y = h_last out_w + out_b, S = sum_i exp y_i, lse = log(S + 2),
 *   loss = -1/n sum_t sum_i gold_i (y_i - lse),  n = (c-1) b,
 *   d loss / d y_i = -1/n (gold_i - (sum_j gold_j) exp(y_i) / (S + 2)),
 *   d out_w += dy h_last,  d out_b += dy,  dh_last = dy out_w;
 * input: y0 = x in_w gives d in_w += dy0 x. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "lstm.h"

/* What the forward sweep keeps per step and layer, b values each. */
enum { U, HP, CP, F, IG, O, G, TC, NREC }; /* TC = tanh of the new cell */

static double sigmoid(double v) { return 1 / (1 + exp(-v)); }

double lstm_gradient(const LstmInput *in, const double *theta, double *grad)
{
    const int l = in->l, c = in->c, b = in->b, steps = c - 1;
    const double *extra = theta + lstm_nmain(l, b);
    const double *in_w = extra, *out_w = extra + b, *out_b = extra + 2 * b;
    double *gextra = grad + lstm_nmain(l, b);
    double *gin_w = gextra, *gout_w = gextra + b, *gout_b = gextra + 2 * b;
    const size_t rec_step = (size_t)l * NREC * b;
    double *rec = malloc(sizeof(double) * (rec_step * steps + (size_t)steps * b));
    double *prec = rec + rec_step * steps; /* exp(y_i) / (S + 2) per step */
    double *state = malloc(sizeof(double) * (size_t)(2 * l * b + 2 * l * b + 2 * b));
    double *dstate = state + 2 * l * b, *du = dstate + 2 * l * b, *dn = du + b;
    memcpy(state, in->state, sizeof(double) * 2 * l * b);
    memset(grad, 0, sizeof(double) * lstm_nparams(l, b));

    /* forward sweep, recording */
    const double inv_n = 1.0 / ((double)steps * b);
    double total = 0;
    for (int t = 0; t < steps; t++) {
        const double *x = in->seq + (size_t)t * b, *gold = x + b;
        double *y = prec + (size_t)t * b;
        for (int i = 0; i < b; i++) y[i] = x[i] * in_w[i];
        for (int k = 0; k < l; k++) {
            const double *w = theta + k * 8 * b, *bias = w + 4 * b;
            double *h = state + k * 2 * b, *cell = h + b, *r = rec + t * rec_step + k * NREC * b;
            for (int i = 0; i < b; i++) {
                r[U * b + i] = y[i], r[HP * b + i] = h[i], r[CP * b + i] = cell[i];
                const double f = sigmoid(y[i] * w[i] + bias[i]);
                const double ig = sigmoid(h[i] * w[b + i] + bias[b + i]);
                const double o = sigmoid(y[i] * w[2 * b + i] + bias[2 * b + i]);
                const double g = tanh(h[i] * w[3 * b + i] + bias[3 * b + i]);
                r[F * b + i] = f, r[IG * b + i] = ig, r[O * b + i] = o, r[G * b + i] = g;
                cell[i] = cell[i] * f + ig * g;
                r[TC * b + i] = tanh(cell[i]);
                h[i] = o * r[TC * b + i];
                y[i] = h[i];
            }
        }
        double s = 0;
        for (int i = 0; i < b; i++) {
            y[i] = y[i] * out_w[i] + out_b[i];
            s += exp(y[i]);
        }
        const double lse = log(s + 2);
        for (int i = 0; i < b; i++) total += gold[i] * (y[i] - lse);
        for (int i = 0; i < b; i++) y[i] = exp(y[i]) / (s + 2);
    }

    /* backward sweep; dstate holds d/dh and d/dc of each layer's state at step t */
    memset(dstate, 0, sizeof(double) * 2 * l * b);
    for (int t = steps - 1; t >= 0; t--) {
        const double *x = in->seq + (size_t)t * b, *gold = x + b, *p = prec + (size_t)t * b;
        double gsum = 0;
        for (int i = 0; i < b; i++) gsum += gold[i];
        const double *top = rec + t * rec_step + (l - 1) * NREC * b;
        for (int i = 0; i < b; i++) {
            const double dy = -inv_n * (gold[i] - gsum * p[i]);
            const double hl = top[O * b + i] * top[TC * b + i];
            gout_w[i] += dy * hl;
            gout_b[i] += dy;
            du[i] = dy * out_w[i];
        }
        for (int k = l - 1; k >= 0; k--) {
            const double *w = theta + k * 8 * b, *r = rec + t * rec_step + k * NREC * b;
            double *gw = grad + k * 8 * b, *gb = gw + 4 * b;
            double *dh = dstate + k * 2 * b, *dc = dh + b;
            for (int i = 0; i < b; i++) {
                const double f = r[F * b + i], ig = r[IG * b + i], o = r[O * b + i],
                             g = r[G * b + i], tc = r[TC * b + i];
                const double dH = du[i] + dh[i];
                const double dC = dc[i] + dH * o * (1 - tc * tc);
                const double af = dC * r[CP * b + i] * f * (1 - f);
                const double ai = dC * g * ig * (1 - ig);
                const double ao = dH * tc * o * (1 - o);
                const double ag = dC * ig * (1 - g * g);
                const double u = r[U * b + i], hp = r[HP * b + i];
                gw[i] += af * u, gb[i] += af;
                gw[b + i] += ai * hp, gb[b + i] += ai;
                gw[2 * b + i] += ao * u, gb[2 * b + i] += ao;
                gw[3 * b + i] += ag * hp, gb[3 * b + i] += ag;
                dn[i] = af * w[i] + ao * w[2 * b + i];
                dh[i] = ai * w[b + i] + ag * w[3 * b + i];
                dc[i] = dC * f;
            }
            memcpy(du, dn, sizeof(double) * b);
        }
        for (int i = 0; i < b; i++) gin_w[i] += du[i] * x[i];
    }
    free(state);
    free(rec);
    return -total / ((double)steps * b);
}
