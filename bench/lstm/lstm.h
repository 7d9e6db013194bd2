/* lstm.h — ADBench's diagonal LSTM language-model loss (Srajer, Kukelova & Fitzgibbon
 * 2018); see shared/design/BENCHMARKS.md. */
#ifndef BENCH_LSTM_H
#define BENCH_LSTM_H

/* One problem: l layers, c steps, b units. theta = [main (2*l*4*b: per layer the
 * weights forget, ingate, outgate, change, b each, then the biases in that order),
 * extra (3*b: in_weight, out_weight, out_bias)]; the initial state (2*l*b: per layer
 * hidden then cell) and the sequence (c*b) are data. */
typedef struct {
    int l, c, b;
    double *theta;
    double *state;
    double *seq;
} LstmInput;

static inline int lstm_nmain(int l, int b) { return 2 * l * 4 * b; }
static inline int lstm_nparams(int l, int b) { return lstm_nmain(l, b) + 3 * b; }

/* lstm_read: parse an ADBench LSTM file; returns 0, or -1 with a message on stderr. */
int lstm_read(const char *path, LstmInput *in);
void lstm_free(LstmInput *in);

/* The loss of BENCHMARKS.md, in double and (for finite-difference checks) long double;
 * both are compiled from lstm_objective.inc. The initial state is not changed. */
double lstm_objective(const LstmInput *in, const double *theta);
long double lstm_objective_ld(const LstmInput *in, const long double *theta);

/* manual.c: the hand-written reverse-mode gradient of lstm_objective, with respect to
 * theta (main then extra). Returns the loss. */
double lstm_gradient(const LstmInput *in, const double *theta, double *grad);

#endif
