/* learn.c — learners and optimisers for C programs (dlrt.h, "learners").
 *
 * A learner is a tree: leaves are the gradient-descent functor applied to an
 * exported DL function (LEARN_GRADIENT) or identities; inner nodes are
 * sequential and parallel composites. The paper's update and request
 * (Fong, Spivak & Tuyéras, "Backprop as Functor", LICS 2019) are computed
 * together by one recursion (learn_update_request); the training step runs
 * the tree as a parametric lens (Cruttwell et al., "Categorical foundations
 * of gradient-based learning", ESOP 2022): a forward pass that keeps each
 * leaf's pullback closure as its residual, then a backward pass.
 *
 * Error discipline: internal functions return 0 or 1 and set the message
 * with learn_fail (or leave the message of the DL export that failed). The
 * out lists they are given start as NULLs and only ever receive valid
 * references, so the public entry points release whatever is there after a
 * failure. The callbacks of an error function run under a trap of their
 * own (loss_call), and each entry point sets one for allocation failures
 * deep inside (which, like other run-time errors, may leave garbage). */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static int learn_fail(const char *fmt, ...) DL_PRINTF(1, 2);

static int learn_fail(const char *fmt, ...)
{
    va_list ap;
    dl_error_clear();
    va_start(ap, fmt);
    dlrt_error_setv(fmt, ap);
    va_end(ap);
    return 1;
}

typedef struct {
    char s[160];
} ShapeText;

static ShapeText shape_text(const dl_array *a)
{
    ShapeText t;
    dl_format_shape(t.s, sizeof t.s, a->rank, a->shape);
    return t;
}

static bool same_shape(const dl_array *a, const dl_array *b)
{
    if (a->rank != b->rank)
        return false;
    for (int32_t i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

static void release_list(dl_array **a, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        dl_array_release(a[i]);
        a[i] = NULL;
    }
}

static void *learn_calloc(size_t n, size_t size)
{
    size_t bytes = n * size;
    if (bytes == 0)
        bytes = 1;
    void *p = dlrt_alloc(bytes);
    memset(p, 0, bytes);
    return p;
}

/* A list of n array slots, all NULL; freed with dlrt_free. */
static dl_array **slots(int32_t n) { return learn_calloc((size_t)n, sizeof(dl_array *)); }

/* Checks that each of the n arrays is present and DL_F64. */
static int check_f64(const char *role, const char *who, int32_t n, dl_array *const *a)
{
    if (n > 0 && !a)
        return learn_fail("%ss of learner '%s' missing (NULL list)", role, who);
    for (int32_t i = 0; i < n; i++) {
        if (!a[i])
            return learn_fail("%s %d of learner '%s' is NULL", role, (int)i, who);
        if (a[i]->dtype != DL_F64)
            return learn_fail("%s %d of learner '%s' has dtype %s, expected float",
                              role, (int)i, who, dl_dtype_name(a[i]->dtype));
    }
    return 0;
}

/* y := p - s * g, a new array. */
static dl_array *sub_scaled(const dl_array *p, double s, const dl_array *g)
{
    dl_array *r = dl_array_new(DL_F64, p->rank, p->shape);
    const double *pp = p->data, *gg = g->data;
    double *rr = r->data;
    for (int64_t i = 0; i < p->size; i++)
        rr[i] = pp[i] - s * gg[i];
    return r;
}

/* ------------------------------------------------------------------ the quadratic error */

/* e(x, y) = ½ (x - y)²; summed over the elements. */
static double half_squared_value(const dl_array *y, const dl_array *b, void *ctx)
{
    (void)ctx;
    const double *yy = y->data, *bb = b->data;
    double s = 0.0;
    for (int64_t i = 0; i < y->size; i++) {
        double d = yy[i] - bb[i];
        s += d * d;
    }
    return 0.5 * s;
}

static dl_array *half_squared_deriv(const dl_array *y, const dl_array *b, void *ctx)
{
    (void)ctx;
    return sub_scaled(y, 1.0, b);
}

/* ∂e/∂x(x0, b) = x0 - b = z  gives  b = x0 - z. */
static dl_array *half_squared_inverse(const dl_array *x0, const dl_array *z, void *ctx)
{
    (void)ctx;
    return sub_scaled(x0, 1.0, z);
}

const dl_loss dl_loss_half_squared = {
    "half_squared", half_squared_value, half_squared_deriv, half_squared_inverse, NULL
};

/* ------------------------------------------------------------------ learner objects */

typedef enum { LEARN_GRADIENT, LEARN_IDENTITY, LEARN_SEQ, LEARN_PAR } LearnKind;

struct dl_learner {
    int64_t refcount;
    LearnKind kind;
    int32_t np, nin, nout;
    char *name;
    dl_array **params;          /* np current parameters */
    dl_export fn;               /* LEARN_GRADIENT: the export, its rate and error */
    double rate;
    dl_loss err;
    dl_learner *f, *g;          /* LEARN_SEQ, LEARN_PAR: the parts */
};

static dl_learner *learner_alloc(LearnKind kind, int32_t np, int32_t nin, int32_t nout)
{
    dl_learner *l = learn_calloc(1, sizeof *l);
    l->refcount = 1;
    l->kind = kind;
    l->np = np;
    l->nin = nin;
    l->nout = nout;
    l->params = slots(np);
    return l;
}

static char *name_join(const char *a, const char *op, const char *b)
{
    size_t n = strlen(a) + strlen(op) + strlen(b) + 5;
    char *s = dlrt_alloc(n);
    snprintf(s, n, "(%s %s %s)", a, op, b);
    return s;
}

dl_learner *dl_learner_retain(dl_learner *l)
{
    if (l)
        __atomic_add_fetch(&l->refcount, 1, __ATOMIC_RELAXED);
    return l;
}

void dl_learner_release(dl_learner *l)
{
    if (!l || __atomic_sub_fetch(&l->refcount, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    release_list(l->params, l->np);
    dlrt_free(l->params);
    dlrt_free(l->name);
    dl_learner_release(l->f);
    dl_learner_release(l->g);
    dlrt_free(l);
}

const char *dl_learner_name(const dl_learner *l) { return l->name; }
int32_t dl_learner_nparams(const dl_learner *l) { return l->np; }
int32_t dl_learner_nin(const dl_learner *l) { return l->nin; }
int32_t dl_learner_nout(const dl_learner *l) { return l->nout; }
dl_array *const *dl_learner_params(const dl_learner *l) { return l->params; }

/* Public constructors return NULL on failure; the trap turns an allocation
 * failure into one. */
#define TRAP_OR(fail_value)                      \
    jmp_buf trap_;                               \
    if (setjmp(trap_) != 0)                      \
        return (fail_value);                     \
    dl_error_trap_push(&trap_)

dl_learner *dl_learner_gradient(const dl_export *f, double rate, const dl_loss *err,
                                int32_t n, dl_array *const *params)
{
    if (!f)
        return learn_fail("dl_learner_gradient: no export given"), NULL;
    const char *who = f->name ? f->name : "?";
    if (f->nparams < 0 || f->nin < 1 || f->nout < 1)
        return learn_fail("learner '%s': needs nparams >= 0, nin >= 1 and nout >= 1, "
                          "given %d, %d and %d", who, (int)f->nparams, (int)f->nin,
                          (int)f->nout), NULL;
    if (!f->vjp || !f->pullback || !f->vjp_release)
        return learn_fail("learner '%s': the export needs its vjp, the pullback's call "
                          "wrapper and the vjp's release function", who), NULL;
    if (!err || !err->value || !err->deriv)
        return learn_fail("learner '%s': the error function needs its value and its "
                          "derivative", who), NULL;
    if (n != f->nparams)
        return learn_fail("learner '%s' has %d parameter arrays, given %d", who,
                          (int)f->nparams, (int)n), NULL;
    if (check_f64("parameter", who, n, params))
        return NULL;
    TRAP_OR(NULL);
    dl_learner *l = learner_alloc(LEARN_GRADIENT, f->nparams, f->nin, f->nout);
    l->fn = *f;
    l->rate = rate;
    l->err = *err;
    l->name = dlrt_strdup(who);
    for (int32_t i = 0; i < n; i++)
        l->params[i] = dl_array_retain(params[i]);
    dl_error_trap_pop();
    return l;
}

dl_learner *dl_learner_identity(int32_t n)
{
    if (n < 1)
        return learn_fail("the identity learner needs at least 1 array, given %d", (int)n),
               NULL;
    TRAP_OR(NULL);
    dl_learner *l = learner_alloc(LEARN_IDENTITY, 0, n, n);
    l->name = dlrt_strdup("id");
    dl_error_trap_pop();
    return l;
}

static dl_learner *learner_join(LearnKind kind, dl_learner *f, dl_learner *g)
{
    if (!f || !g)
        return learn_fail("cannot compose a NULL learner"), NULL;
    if (kind == LEARN_SEQ && f->nout != g->nin)
        return learn_fail("cannot compose '%s' >>> '%s': '%s' gives %d array%s, '%s' "
                          "takes %d", f->name, g->name, f->name, (int)f->nout,
                          f->nout == 1 ? "" : "s", g->name, (int)g->nin), NULL;
    TRAP_OR(NULL);
    bool seq = kind == LEARN_SEQ;
    dl_learner *l = learner_alloc(kind, f->np + g->np, seq ? f->nin : f->nin + g->nin,
                                  seq ? g->nout : f->nout + g->nout);
    l->name = name_join(f->name, seq ? ">>>" : "***", g->name);
    for (int32_t i = 0; i < f->np; i++)
        l->params[i] = dl_array_retain(f->params[i]);
    for (int32_t i = 0; i < g->np; i++)
        l->params[f->np + i] = dl_array_retain(g->params[i]);
    l->f = dl_learner_retain(f);
    l->g = dl_learner_retain(g);
    dl_error_trap_pop();
    return l;
}

dl_learner *dl_learner_seq(dl_learner *f, dl_learner *g) { return learner_join(LEARN_SEQ, f, g); }
dl_learner *dl_learner_par(dl_learner *f, dl_learner *g) { return learner_join(LEARN_PAR, f, g); }

/* n parameters p against the learner's: count, dtype and shape. */
static int check_params(const dl_learner *l, int32_t n, dl_array *const *p)
{
    if (n != l->np)
        return learn_fail("learner '%s' has %d parameter arrays, given %d", l->name,
                          (int)l->np, (int)n);
    if (check_f64("parameter", l->name, n, p))
        return 1;
    for (int32_t i = 0; i < n; i++)
        if (!same_shape(p[i], l->params[i]))
            return learn_fail("parameter %d of learner '%s' has shape %s, given %s", (int)i,
                              l->name, shape_text(l->params[i]).s, shape_text(p[i]).s);
    return 0;
}

int dl_learner_set_params(dl_learner *l, int32_t n, dl_array *const *p)
{
    if (check_params(l, n, p))
        return 1;
    for (int32_t i = 0; i < n; i++) {
        dl_array *old = l->params[i];
        l->params[i] = dl_array_retain(p[i]);
        dl_array_release(old);
    }
    return 0;
}

/* ------------------------------------------------------------------ calling exports */

/* The number of pointers in the vjp's result struct (B, pullback). */
static int32_t vjp_slots(const dl_export *e) { return e->nout + 1; }

/* Calls fn with the struct (P, A) = p ++ a, laid out as a row of pointers
 * (one array alone is passed itself); out receives the result struct. */
static int call_export(dl_export_fn fn, const dl_export *e, dl_array *const *p,
                       dl_array *const *a, void *out)
{
    int32_t k = e->nparams + e->nin;
    dl_array **in = slots(k);
    for (int32_t i = 0; i < e->nparams; i++)
        in[i] = p[i];
    for (int32_t i = 0; i < e->nin; i++)
        in[e->nparams + i] = a[i];
    int st = k == 1 ? fn(in[0], out) : fn(in, out);
    dlrt_free(in);
    return st;
}

/* Applies the pullback of a vjp result to the cotangent db (nout arrays);
 * res receives nparams + nin arrays. The gradients' shapes are checked
 * against the parameters' (a wrong dl_export shows up here first). */
static int call_pullback(const dl_learner *l, void **vjp_out, dl_array *const *db,
                         dl_array **res)
{
    const dl_export *e = &l->fn;
    dl_closure *pb = vjp_out[e->nout];
    const void *ct = e->nout == 1 ? (const void *)db[0] : (const void *)db;
    dl_array **tmp = slots(e->nparams + e->nin);
    if (e->pullback(pb, ct, tmp)) {
        dlrt_free(tmp);
        return 1;
    }
    for (int32_t i = 0; i < e->nparams + e->nin; i++)
        res[i] = tmp[i];
    dlrt_free(tmp);
    for (int32_t i = 0; i < e->nparams; i++)
        if (!res[i] || !same_shape(res[i], l->params[i]))
            return learn_fail("the pullback of '%s' gave %s for parameter %d of shape %s "
                              "(does its dl_export describe it?)", l->name,
                              res[i] ? shape_text(res[i]).s : "NULL", (int)i,
                              shape_text(l->params[i]).s);
    return 0;
}

/* ------------------------------------------------------------------ implement */

static int learn_implement(const dl_learner *l, dl_array *const *p, dl_array *const *a,
                           dl_array **b)
{
    switch (l->kind) {
    case LEARN_GRADIENT: {
        const dl_export *e = &l->fn;
        void **out = learn_calloc((size_t)vjp_slots(e), sizeof(void *));
        int st;
        if (e->forward) {
            st = call_export(e->forward, e, p, a, out);
            if (st == 0)
                for (int32_t j = 0; j < l->nout; j++)
                    b[j] = out[j];
        } else {
            st = call_export(e->vjp, e, p, a, out);
            if (st == 0) {
                for (int32_t j = 0; j < l->nout; j++)
                    b[j] = dl_array_retain(out[j]);
                e->vjp_release(out);
            }
        }
        dlrt_free(out);
        return st;
    }
    case LEARN_IDENTITY:
        for (int32_t j = 0; j < l->nout; j++)
            b[j] = dl_array_retain(a[j]);
        return 0;
    case LEARN_SEQ: {
        dl_array **mid = slots(l->f->nout);
        int st = learn_implement(l->f, p, a, mid) ||
                 learn_implement(l->g, p + l->f->np, mid, b);
        release_list(mid, l->f->nout);
        dlrt_free(mid);
        return st;
    }
    case LEARN_PAR:
        return learn_implement(l->f, p, a, b) ||
               learn_implement(l->g, p + l->f->np, a + l->f->nin, b + l->f->nout);
    }
    return 0;
}

/* ------------------------------------------------------------------ output errors */

/* The error function at output j. */
static const dl_loss *output_loss(const dl_learner *l, int32_t j)
{
    switch (l->kind) {
    case LEARN_GRADIENT: return &l->err;
    case LEARN_IDENTITY: return &dl_loss_half_squared;
    case LEARN_SEQ: return output_loss(l->g, j);
    case LEARN_PAR:
        return j < l->f->nout ? output_loss(l->f, j) : output_loss(l->g, j - l->f->nout);
    }
    return &dl_loss_half_squared;
}

static int check_target(const dl_learner *l, int32_t j, const dl_array *y, const dl_array *b)
{
    if (!same_shape(y, b))
        return learn_fail("target %d of learner '%s' has shape %s, its output %s", (int)j,
                          l->name, shape_text(b).s, shape_text(y).s);
    return 0;
}

/* Calls one of an error function's callbacks (which may raise with
 * dl_error) under a trap, so that a raise fails the learner call after the
 * usual clean-up instead of jumping over it. */
typedef enum { LOSS_VALUE, LOSS_DERIV, LOSS_INVERSE } LossPart;

typedef struct {
    const dl_loss *e;
    LossPart part;
    const dl_array *u, *w;
    double value;
    dl_array *result;
} LossCall;

static int loss_call(LossCall *c)
{
    jmp_buf trap;
    if (setjmp(trap) != 0)
        return 1;
    dl_error_trap_push(&trap);
    switch (c->part) {
    case LOSS_VALUE: c->value = c->e->value(c->u, c->w, c->e->ctx); break;
    case LOSS_DERIV: c->result = c->e->deriv(c->u, c->w, c->e->ctx); break;
    case LOSS_INVERSE: c->result = c->e->inverse(c->u, c->w, c->e->ctx); break;
    }
    dl_error_trap_pop();
    return 0;
}

/* db[j] = ∂E/∂y_j for the outputs y of l and targets b (of l's own error
 * when err is NULL, the leaf's). */
static int output_deriv(const dl_learner *l, const dl_loss *err, dl_array *const *y,
                        dl_array *const *b, dl_array **db)
{
    for (int32_t j = 0; j < l->nout; j++) {
        if (check_target(l, j, y[j], b[j]))
            return 1;
        const dl_loss *e = err ? err : output_loss(l, j);
        LossCall c = { e, LOSS_DERIV, y[j], b[j], 0.0, NULL };
        if (loss_call(&c))
            return 1;
        db[j] = c.result;
        if (!db[j] || db[j]->dtype != DL_F64 || !same_shape(db[j], y[j]))
            return learn_fail("the derivative of the error '%s' at output %d of learner '%s' "
                              "has shape %s, expected %s", e->name ? e->name : "?", (int)j,
                              l->name, db[j] ? shape_text(db[j]).s : "NULL",
                              shape_text(y[j]).s);
    }
    return 0;
}

/* ------------------------------------------------------------------ update and request */

/* The paper's U and r together: pout (NULL: not wanted) receives the np new
 * parameters, aout (NULL: not wanted) the nin requested inputs. */
static int learn_update_request(const dl_learner *l, dl_array *const *p, dl_array *const *a,
                                dl_array *const *b, dl_array **pout, dl_array **aout)
{
    switch (l->kind) {
    case LEARN_GRADIENT: {
        /* U(p, a, b) = p - rate ∇_p E_I;  r(p, a, b) = inverse(a, ∇_a E_I), the
         * gradients the pullback of f at (p, a) applied to ∂e/∂y(f(p, a), b). */
        const dl_export *e = &l->fn;
        int32_t k = e->nparams + e->nin;
        void **out = learn_calloc((size_t)vjp_slots(e), sizeof(void *));
        if (call_export(e->vjp, e, p, a, out)) {
            dlrt_free(out);
            return 1;
        }
        dl_array **dy = slots(l->nout), **grads = slots(k);
        int st = output_deriv(l, &l->err, (dl_array *const *)out, b, dy) ||
                 call_pullback(l, out, dy, grads);
        if (st == 0 && pout)
            for (int32_t i = 0; i < l->np; i++)
                pout[i] = sub_scaled(p[i], l->rate, grads[i]);
        if (st == 0 && aout)
            for (int32_t i = 0; i < l->nin && st == 0; i++) {
                dl_array *da = grads[e->nparams + i];
                if (!da || !same_shape(da, a[i]))
                    st = learn_fail("the pullback of '%s' gave %s for input %d of shape %s",
                                    l->name, da ? shape_text(da).s : "NULL", (int)i,
                                    shape_text(a[i]).s);
                else if (!l->err.inverse)
                    aout[i] = sub_scaled(a[i], 1.0, da);
                else {
                    LossCall c = { &l->err, LOSS_INVERSE, a[i], da, 0.0, NULL };
                    st = loss_call(&c);
                    aout[i] = c.result;
                    if (st == 0 && (!c.result || c.result->dtype != DL_F64 ||
                                    !same_shape(c.result, a[i])))
                        st = learn_fail("the request rule of the error '%s' of learner '%s' "
                                        "gave %s for input %d of shape %s",
                                        l->err.name ? l->err.name : "?", l->name,
                                        c.result ? shape_text(c.result).s : "NULL", (int)i,
                                        shape_text(a[i]).s);
                }
            }
        release_list(dy, l->nout);
        release_list(grads, k);
        dlrt_free(dy);
        dlrt_free(grads);
        e->vjp_release(out);
        dlrt_free(out);
        return st;
    }
    case LEARN_IDENTITY:
        if (aout)
            for (int32_t i = 0; i < l->nin; i++)
                aout[i] = dl_array_retain(b[i]);
        return 0;
    case LEARN_SEQ: {
        /* b = I_f(p, a);  (q', b') = (U_g, r_g)(q, b, c);  (p', a') = (U_f, r_f)(p, a, b') */
        const dl_learner *f = l->f, *g = l->g;
        dl_array **mid = slots(f->nout), **want = slots(g->nin);
        int st = learn_implement(f, p, a, mid) ||
                 learn_update_request(g, p + f->np, mid, b, pout ? pout + f->np : NULL, want) ||
                 learn_update_request(f, p, a, want, pout, aout);
        release_list(mid, f->nout);
        release_list(want, g->nin);
        dlrt_free(mid);
        dlrt_free(want);
        return st;
    }
    case LEARN_PAR: {
        const dl_learner *f = l->f, *g = l->g;
        return learn_update_request(f, p, a, b, pout, aout) ||
               learn_update_request(g, p + f->np, a + f->nin, b + f->nout,
                                    pout ? pout + f->np : NULL, aout ? aout + f->nin : NULL);
    }
    }
    return 0;
}

/* ------------------------------------------------------------------ the lens */

/* The residual of a forward pass: a leaf's vjp result (its outputs and
 * pullback), or the parts' residuals. */
typedef struct Residual {
    const dl_learner *l;
    void **vjp_out;
    struct Residual *f, *g;
} Residual;

static void residual_free(Residual *r)
{
    if (!r)
        return;
    if (r->vjp_out) {
        r->l->fn.vjp_release(r->vjp_out);
        dlrt_free(r->vjp_out);
    }
    residual_free(r->f);
    residual_free(r->g);
    dlrt_free(r);
}

static int lens_forward(const dl_learner *l, dl_array *const *p, dl_array *const *a,
                        dl_array **b, Residual **res)
{
    Residual *r = learn_calloc(1, sizeof *r);
    r->l = l;
    *res = r;
    switch (l->kind) {
    case LEARN_GRADIENT: {
        const dl_export *e = &l->fn;
        void **out = learn_calloc((size_t)vjp_slots(e), sizeof(void *));
        if (call_export(e->vjp, e, p, a, out)) {
            dlrt_free(out);
            return 1;
        }
        r->vjp_out = out;
        for (int32_t j = 0; j < l->nout; j++)
            b[j] = dl_array_retain(out[j]);
        return 0;
    }
    case LEARN_IDENTITY:
        for (int32_t j = 0; j < l->nout; j++)
            b[j] = dl_array_retain(a[j]);
        return 0;
    case LEARN_SEQ: {
        dl_array **mid = slots(l->f->nout);
        int st = lens_forward(l->f, p, a, mid, &r->f) ||
                 lens_forward(l->g, p + l->f->np, mid, b, &r->g);
        release_list(mid, l->f->nout);
        dlrt_free(mid);
        return st;
    }
    case LEARN_PAR:
        return lens_forward(l->f, p, a, b, &r->f) ||
               lens_forward(l->g, p + l->f->np, a + l->f->nin, b + l->f->nout, &r->g);
    }
    return 0;
}

/* The reverse derivative: cotangents db of the outputs to the gradients dp
 * of the parameters and da (NULL: not wanted) of the inputs. */
static int lens_backward(const Residual *r, dl_array *const *db, dl_array **dp, dl_array **da)
{
    const dl_learner *l = r->l;
    switch (l->kind) {
    case LEARN_GRADIENT: {
        int32_t k = l->np + l->nin;
        dl_array **grads = slots(k);
        int st = call_pullback(l, r->vjp_out, db, grads);
        if (st == 0) {
            for (int32_t i = 0; i < l->np; i++) {
                dp[i] = grads[i];
                grads[i] = NULL;
            }
            if (da)
                for (int32_t i = 0; i < l->nin; i++) {
                    da[i] = grads[l->np + i];
                    grads[l->np + i] = NULL;
                }
        }
        release_list(grads, k);
        dlrt_free(grads);
        return st;
    }
    case LEARN_IDENTITY:
        if (da)
            for (int32_t i = 0; i < l->nin; i++)
                da[i] = dl_array_retain(db[i]);
        return 0;
    case LEARN_SEQ: {
        dl_array **dmid = slots(l->g->nin);
        int st = lens_backward(r->g, db, dp + l->f->np, dmid) ||
                 lens_backward(r->f, dmid, dp, da);
        release_list(dmid, l->g->nin);
        dlrt_free(dmid);
        return st;
    }
    case LEARN_PAR:
        return lens_backward(r->f, db, dp, da) ||
               lens_backward(r->g, db + l->f->nout, dp + l->f->np, da ? da + l->f->nin : NULL);
    }
    return 0;
}

/* ------------------------------------------------------------------ public calls */

/* The parameters to use: p, checked, or the current ones when p is NULL. */
static int params_for(const dl_learner *l, int32_t n, dl_array *const *p,
                      dl_array *const **use)
{
    if (!p) {
        *use = l->params;
        return 0;
    }
    *use = p;
    return check_params(l, n, p);
}

/* The arguments of a public call, for run_guarded. */
typedef struct {
    dl_learner *l;
    dl_array *const *p, *const *a, *const *b;
    dl_array **pout, **aout;
    double *loss;
    dl_optimiser *opt;
} Call;

/* Runs body (which cleans up after itself) under a trap for the errors
 * raised deep inside (out of memory). */
static int run_guarded(int (*body)(const Call *), const Call *c)
{
    jmp_buf trap;
    if (setjmp(trap) != 0)
        return 1;
    dl_error_trap_push(&trap);
    int st = body(c);
    dl_error_trap_pop();
    return st;
}

/* Writes n slots of a fresh list to out only when all succeeded. */
static void hand_over(dl_array **from, dl_array **out, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        out[i] = from[i];
}

static int implement_into(const Call *c)
{
    const dl_learner *l = c->l;
    dl_array *const *p = c->p, *const *a = c->a, **out = c->pout;
    dl_array **b = slots(l->nout);
    int st = learn_implement(l, p, a, b);
    if (st)
        release_list(b, l->nout);
    else
        hand_over(b, out, l->nout);
    dlrt_free(b);
    return st;
}

int dl_learner_implement(const dl_learner *l, int32_t n, dl_array *const *p,
                         dl_array *const *a, dl_array **out)
{
    dl_array *const *use;
    if (params_for(l, n, p, &use) || check_f64("input", l->name, l->nin, a))
        return 1;
    return run_guarded(implement_into, &(Call){ .l = (dl_learner *)l, .p = use, .a = a, .pout = out });
}

static int update_request_into(const Call *c)
{
    const dl_learner *l = c->l;
    dl_array *const *p = c->p, *const *a = c->a, *const *b = c->b;
    dl_array **pout = c->pout, **aout = c->aout;
    dl_array **pp = pout ? slots(l->np) : NULL, **aa = aout ? slots(l->nin) : NULL;
    int st = learn_update_request(l, p, a, b, pp, aa);
    if (pp) {
        if (st)
            release_list(pp, l->np);
        else
            hand_over(pp, pout, l->np);
        dlrt_free(pp);
    }
    if (aa) {
        if (st)
            release_list(aa, l->nin);
        else
            hand_over(aa, aout, l->nin);
        dlrt_free(aa);
    }
    return st;
}

static int check_example(const dl_learner *l, dl_array *const *a, dl_array *const *b)
{
    return check_f64("input", l->name, l->nin, a) || check_f64("target", l->name, l->nout, b);
}

int dl_learner_update(const dl_learner *l, int32_t n, dl_array *const *p, dl_array *const *a,
                      dl_array *const *b, dl_array **out)
{
    dl_array *const *use;
    if (params_for(l, n, p, &use) || check_example(l, a, b))
        return 1;
    return run_guarded(update_request_into,
                       &(Call){ .l = (dl_learner *)l, .p = use, .a = a, .b = b, .pout = out });
}

int dl_learner_request(const dl_learner *l, int32_t n, dl_array *const *p, dl_array *const *a,
                       dl_array *const *b, dl_array **out)
{
    dl_array *const *use;
    if (params_for(l, n, p, &use) || check_example(l, a, b))
        return 1;
    return run_guarded(update_request_into,
                       &(Call){ .l = (dl_learner *)l, .p = use, .a = a, .b = b, .aout = out });
}

/* The sum of the output errors at outputs y and targets b. */
static int output_loss_sum(const dl_learner *l, dl_array *const *y, dl_array *const *b,
                           double *loss)
{
    double s = 0.0;
    for (int32_t j = 0; j < l->nout; j++) {
        if (check_target(l, j, y[j], b[j]))
            return 1;
        const dl_loss *e = output_loss(l, j);
        LossCall c = { e, LOSS_VALUE, y[j], b[j], 0.0, NULL };
        if (loss_call(&c))
            return 1;
        s += c.value;
    }
    *loss = s;
    return 0;
}

static int loss_at(const Call *c)
{
    const dl_learner *l = c->l;
    dl_array *const *p = c->p, *const *a = c->a, *const *b = c->b;
    double *loss = c->loss;
    dl_array **y = slots(l->nout);
    int st = learn_implement(l, p, a, y) || output_loss_sum(l, y, b, loss);
    release_list(y, l->nout);
    dlrt_free(y);
    return st;
}

int dl_learner_loss(const dl_learner *l, int32_t n, dl_array *const *p, dl_array *const *a,
                    dl_array *const *b, double *loss)
{
    dl_array *const *use;
    if (params_for(l, n, p, &use) || check_example(l, a, b))
        return 1;
    return run_guarded(loss_at,
                       &(Call){ .l = (dl_learner *)l, .p = use, .a = a, .b = b, .loss = loss });
}

/* ------------------------------------------------------------------ optimisers */

typedef enum { OPT_SGD, OPT_MOMENTUM, OPT_NESTEROV, OPT_ADAM, OPT_ADAMW } OptKind;

struct dl_optimiser {
    OptKind kind;
    double rate, beta, b1, b2, eps, wd;
    int64_t t;          /* steps taken */
    int32_t n;          /* parameter arrays of the state; -1 before the first step */
    dl_array **m, **v;  /* first and second moments (momentum: v is the velocity) */
};

static dl_optimiser *optim_new(OptKind kind, double rate)
{
    dl_optimiser *o = learn_calloc(1, sizeof *o);
    o->kind = kind;
    o->rate = rate;
    o->n = -1;
    return o;
}

dl_optimiser *dl_optim_sgd(double rate) { return optim_new(OPT_SGD, rate); }

dl_optimiser *dl_optim_momentum(double rate, double beta)
{
    dl_optimiser *o = optim_new(OPT_MOMENTUM, rate);
    o->beta = beta;
    return o;
}

dl_optimiser *dl_optim_nesterov(double rate, double beta)
{
    dl_optimiser *o = optim_new(OPT_NESTEROV, rate);
    o->beta = beta;
    return o;
}

dl_optimiser *dl_optim_adam(double rate, double b1, double b2, double eps)
{
    dl_optimiser *o = optim_new(OPT_ADAM, rate);
    o->b1 = b1;
    o->b2 = b2;
    o->eps = eps;
    return o;
}

dl_optimiser *dl_optim_adamw(double rate, double wd, double b1, double b2, double eps)
{
    dl_optimiser *o = dl_optim_adam(rate, b1, b2, eps);
    o->kind = OPT_ADAMW;
    o->wd = wd;
    return o;
}

void dl_optim_reset(dl_optimiser *o)
{
    if (o->n > 0) {
        if (o->m)
            release_list(o->m, o->n);
        if (o->v)
            release_list(o->v, o->n);
    }
    dlrt_free(o->m);
    dlrt_free(o->v);
    o->m = o->v = NULL;
    o->n = -1;
    o->t = 0;
}

void dl_optim_free(dl_optimiser *o)
{
    if (!o)
        return;
    dl_optim_reset(o);
    dlrt_free(o);
}

int64_t dl_optim_steps(const dl_optimiser *o) { return o->t; }

static int optim_check(const dl_optimiser *o, int32_t n, dl_array **p, dl_array *const *g)
{
    if (n < 0 || (n > 0 && (!p || !g)))
        return learn_fail("optimiser step: bad parameter list (%d arrays)", (int)n);
    if (o->n >= 0 && n != o->n)
        return learn_fail("optimiser step: the state is for %d parameter arrays, given %d",
                          (int)o->n, (int)n);
    for (int32_t i = 0; i < n; i++) {
        if (!p[i] || !g[i])
            return learn_fail("optimiser step: %s %d is NULL", p[i] ? "gradient" : "parameter",
                              (int)i);
        if (p[i]->dtype != DL_F64 || g[i]->dtype != DL_F64)
            return learn_fail("optimiser step: parameter %d has dtype %s and its gradient %s, "
                              "expected float", (int)i, dl_dtype_name(p[i]->dtype),
                              dl_dtype_name(g[i]->dtype));
        if (!same_shape(p[i], g[i]))
            return learn_fail("optimiser step: parameter %d has shape %s, its gradient %s",
                              (int)i, shape_text(p[i]).s, shape_text(g[i]).s);
        const dl_array *s = o->m ? o->m[i] : o->v ? o->v[i] : NULL;
        if (s && !same_shape(p[i], s))
            return learn_fail("optimiser step: parameter %d has shape %s, the optimiser's "
                              "state %s", (int)i, shape_text(p[i]).s, shape_text(s).s);
    }
    return 0;
}

static dl_array **zeros_like_list(int32_t n, dl_array **p)
{
    dl_array **z = slots(n);
    for (int32_t i = 0; i < n; i++)
        z[i] = dl_array_zeros(DL_F64, p[i]->rank, p[i]->shape);
    return z;
}

/* The formulas of std/optim, operation for operation (so the numbers agree
 * with the compiled DL to the last bit: no reassociation, no contraction). */
static void optim_update(dl_optimiser *o, int32_t n, dl_array **p, dl_array *const *g)
{
    if (o->n < 0) {
        o->n = n;
        if (o->kind == OPT_MOMENTUM || o->kind == OPT_NESTEROV)
            o->v = zeros_like_list(n, p);
        if (o->kind == OPT_ADAM || o->kind == OPT_ADAMW) {
            o->m = zeros_like_list(n, p);
            o->v = zeros_like_list(n, p);
        }
    }
    int64_t t1 = o->t + 1;
    /* Adam's bias corrections, scalars: r2 = sqrt(1 - b2^t'), a = rate r2 / (1 - b1^t') */
    double r2 = sqrt(1.0 - pow(o->b2, (double)t1));
    double a = o->rate * r2 / (1.0 - pow(o->b1, (double)t1));
    for (int32_t i = 0; i < n; i++) {
        p[i] = dl_array_unique(p[i]);
        double *pp = p[i]->data;
        const double *gg = g[i]->data;
        double *mm = o->m ? o->m[i]->data : NULL, *vv = o->v ? o->v[i]->data : NULL;
        int64_t size = p[i]->size;
        switch (o->kind) {
        case OPT_SGD:
            for (int64_t j = 0; j < size; j++)
                pp[j] = pp[j] - o->rate * gg[j];
            break;
        case OPT_MOMENTUM:
            for (int64_t j = 0; j < size; j++) {
                double v1 = o->beta * vv[j] + gg[j];
                vv[j] = v1;
                pp[j] = pp[j] - o->rate * v1;
            }
            break;
        case OPT_NESTEROV:
            for (int64_t j = 0; j < size; j++) {
                double v1 = o->beta * vv[j] + gg[j];
                vv[j] = v1;
                pp[j] = pp[j] - o->rate * (gg[j] + o->beta * v1);
            }
            break;
        case OPT_ADAM:
        case OPT_ADAMW:
            for (int64_t j = 0; j < size; j++) {
                double m1 = o->b1 * mm[j] + (1.0 - o->b1) * gg[j];
                double v1 = o->b2 * vv[j] + (1.0 - o->b2) * (gg[j] * gg[j]);
                double step = a * (m1 / (sqrt(v1) + o->eps * r2));
                mm[j] = m1;
                vv[j] = v1;
                if (o->kind == OPT_ADAM)
                    pp[j] = pp[j] - step;
                else
                    pp[j] = pp[j] - (step + (o->rate * o->wd) * pp[j]);
            }
            break;
        }
    }
    o->t = t1;
}

int dl_optim_apply(dl_optimiser *o, int32_t n, dl_array **p, dl_array *const *g)
{
    if (optim_check(o, n, p, g))
        return 1;
    jmp_buf trap;
    if (setjmp(trap) != 0)
        return 1;
    dl_error_trap_push(&trap);
    optim_update(o, n, p, g);
    dl_error_trap_pop();
    return 0;
}

/* ------------------------------------------------------------------ the training step */

static int learn_step(const Call *c)
{
    dl_learner *l = c->l;
    dl_optimiser *opt = c->opt;
    dl_array *const *x = c->a, *const *y = c->b;
    double *loss = c->loss;
    dl_array **b = slots(l->nout), **db = slots(l->nout), **dp = slots(l->np);
    Residual *r = NULL;
    double e = 0.0;
    int st = lens_forward(l, l->params, x, b, &r) || output_loss_sum(l, b, y, &e) ||
             output_deriv(l, NULL, b, y, db) || lens_backward(r, db, dp, NULL);
    residual_free(r);
    if (st == 0)
        st = optim_check(opt, l->np, l->params, dp);
    if (st == 0) {
        optim_update(opt, l->np, l->params, dp);
        if (loss)
            *loss = e;
    }
    release_list(b, l->nout);
    release_list(db, l->nout);
    release_list(dp, l->np);
    dlrt_free(b);
    dlrt_free(db);
    dlrt_free(dp);
    return st;
}

int dl_learner_step(dl_learner *l, dl_optimiser *opt, dl_array *const *x, dl_array *const *y,
                    double *loss)
{
    if (!opt)
        return learn_fail("dl_learner_step: no optimiser given for learner '%s'", l->name);
    if (check_example(l, x, y))
        return 1;
    return run_guarded(learn_step, &(Call){ .l = l, .a = x, .b = y, .loss = loss, .opt = opt });
}
