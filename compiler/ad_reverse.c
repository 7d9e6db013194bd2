/* ad_reverse.c — reverse mode: vjp, grad, value_and_grad and jacrev, as a
 * source-to-source transformation of Core IR into ordinary Core IR: no tape
 * interpreter, no run-time graph. (hessian and hvp are forward over
 * forward, ad_forward.c.)
 *
 * The design follows CHAD (Vákár & Smeding, "CHAD: Combinatory Homomorphic
 * Automatic Differentiation", TOPLAS 2022) on A-normal form; docs/ad.md
 * ("Reverse mode") has the correctness argument. For a block in ANF:
 *
 *   forward sweep  the primal bindings themselves, in order (moved, not
 *                  copied): every primal variable is its own residual, so
 *                  there is no tape for straight-line code;
 *   backward sweep the bindings in reverse order, each `let y = op(xs)`
 *                  adding op's vector-Jacobian product of ȳ to the adjoints
 *                  x̄ (fan-out accumulates with +). Adjoints are symbolic
 *                  zeros until a contribution arrives, so unused adjoints
 *                  emit no code; adjoints of tuples, records and variants
 *                  stay partial (component by component) until needed.
 *
 * Control flow is where residuals appear. A nested block (a branch, a loop
 * body) gets its own frame: its forward sweep is emitted in place, and its
 * backward sweep is generated once as a template (a block over a
 * placeholder cotangent) whose free variables bound in the frame are the
 * residuals the forward sweep must hand over:
 *   if / case   the taken branch returns its residuals with its value
 *               (dummies for the other branches' slots); the backward sweep
 *               branches again on the same condition / scrutinee and runs
 *               the taken branch's template only (no NaN from a branch not
 *               taken);
 *   loops       loop invariants are hoisted first; the residuals of every
 *               iteration are saved in arrays (one per residual: a struct
 *               of arrays; while loops grow them by doubling) unless cheap
 *               to recompute from the counter, or per segment only with
 *               checkpointing; the reversed loop runs the body's template
 *               from the last iteration to the first, carrying the state's
 *               cotangent and the adjoints of the variables the body reads
 *               (updated in place: x[i] in a loop costs O(1) per step);
 *   map         transposes to maps: the pullback lambda recomputes the
 *               element's primal and runs its template (no per-element
 *               closure, no stored residuals); captured floats' adjoints
 *               are summed over the elements, captured arrays' accumulated
 *               in place by one loop;
 *   reduce (+)  to a broadcast; scan (+) to a reversed scan; other folds,
 *               reduces and scans become loops first;
 *   calls       are inlined when the callee is not recursive and small;
 *               otherwise f_rev (memoised, so recursion works) returns the
 *               value and its pullback closure, and differentiated again
 *               f_bwd (the same sweeps, first order, no closure). `with
 *               vjp` rules are called as given; a `with jvp` rule is linear
 *               in dx, and its transpose is the reverse mode of
 *               dx -> (rule (x, dx)).1.
 *
 * Array code stays at array level: every primitive has a vector-Jacobian
 * rule on whole arrays (vjp_prim below, the rule written above each case).
 */
#include "dcc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ state */

typedef struct Rv {
    CProgram *prog;
    CoreMap active;  /* CVar -> (void *)1: depends on the point of differentiation */
    CoreMap known;   /* CVar -> CExpr *: definitions seen (closures, products) */
    CoreMap vjp_of;  /* CFun -> its f_rev */
    CoreMap rev_fun; /* an f_rev -> the CFun it differentiates */
    CoreMap bwd_of;  /* CFun -> its f_bwd */
    CoreMap rev_call;/* var bound to (f xs, pullback) from f_rev xs -> that call */
    CoreMap rec;     /* CFun -> (void *)1 recursive, (void *)2 not */
    CoreMap helpers; /* interned key -> CFun (zeros / sums of variant tangents) */
    int budget;      /* inlining budget of the region (bindings) */
    Loc loc;
    bool ok;
} Rv;

static Rv rv;
static Rv *R = &rv;

/* Forward-sweep frame: one per block differentiated (the region's body, a
 * branch, a loop body, a pullback lambda, a function). */
typedef struct Frame {
    CoreMap bound;  /* vars bound by the forward sweep of this frame */
    Vec tape;       /* Entry *, in forward order */
    bool recompute; /* inside a pullback that recomputes its primal: no I/O */
    bool norec;     /* no pullback closures: recursive calls by f_bwd */
} Frame;

typedef enum {
    EN_ATOM,      /* y = x */
    EN_PRIM,      /* y = prim(xs) */
    EN_BRANCH,    /* y = if / case, with residuals */
    EN_LOOP,      /* y = loop, with saved residuals */
    EN_MAP,       /* y = map f xs */
    EN_REDUCE_ADD,/* y = reduce (+) ne xs */
    EN_SCAN_ADD,  /* y = scan (+) ne xs */
    EN_PULLBACK,  /* y, pb from f_rev or a `with vjp` rule */
    EN_JVP_RULE,  /* y = f xs with a `with jvp` rule */
    EN_CLOSURE,   /* y = a closure over active variables */
    EN_RECOMPUTE, /* y = f xs, reversed by f_bwd xs ȳ */
} EntryKind;

typedef struct Tmpl Tmpl;

typedef struct Entry {
    EntryKind kind;
    CVar *y;
    CExpr *e;       /* the expression (prims, soacs); the original if / case */
    /* EN_BRANCH */
    int nbr;
    Tmpl **tm;
    CAtom ***res;   /* per branch: its residuals after the branch */
    CVar **outs;    /* outer variables the branches' templates give adjoints */
    bool *accm;     /* per out: passed in and updated (arrays), or added */
    int nouts;
    /* EN_LOOP */
    Tmpl *body;
    CAtom *count;
    CVar **saved;   /* the residuals of body saved per iteration (nargs) */
    CAtom **bufs;   /* per saved residual: the array of its values */
    CAtom *init;
    CVar *ivar;
    /* EN_PULLBACK, EN_JVP_RULE */
    CAtom *pb;
    CAtom **args;
    int nargs;
    CFun *rule;
    /* EN_LOOP: residuals recomputed in the reversed loop instead of saved */
    CBlock *remat;
    /* EN_LOOP with checkpoints: ck_k segments of ck_seg iterations, the
     * states at their starts in ck_buf; ck_body is the body over ck_state
     * and ivar returning (new state, residuals...) */
    CAtom *ck_k, *ck_seg, *ck_buf;
    CBlock *ck_body;
    CVar *ck_state;
} Entry;

/* Adjoints: NULL is the symbolic zero. */
typedef enum { ADJ_ATOM, ADJ_PROD, ADJ_CON } AdjKind;
typedef struct Adj Adj;
struct Adj {
    AdjKind kind;
    CAtom *atom;  /* ADJ_ATOM */
    Adj **parts;  /* ADJ_PROD: per component (tuple or record); ADJ_CON: payload */
    int n;
    int con;      /* ADJ_CON */
};

/* Backward-sweep state over a frame. */
typedef struct Bwd {
    CoreMap adj; /* CVar -> Adj * */
    Vec keys;    /* vars given an adjoint, in order */
    Frame *F;
} Bwd;

/* A backward sweep generated once and instantiated by copying. */
struct Tmpl {
    CBlock *body;
    CVar *ct;       /* placeholder: the cotangent of the block's result */
    Bwd *B;
    CVar **params;  /* the frame's parameters: their adjoints come first */
    CAtom **ptmpl;  /* zero templates of the parameters (NULL: from ct) */
    int nparams;
    CVar **cands;   /* outer variables with an incoming adjoint ... */
    CVar **accv;    /* ... and its placeholder */
    int ncands;
    CVar **outs;    /* outer variables whose adjoints it gives, after params */
    bool *accm;
    int nouts;
    CVar **res;     /* frame variables the body reads */
    int nres;
    bool params_free; /* parameters are re-bound by the user (not residuals) */
};

static void fwd_block(Frame *F, CBlock *src, CBlock *dst);
static void fwd_bind(Frame *F, CBlock *dst, CVar *x, CExpr *e);
static void bwd_entry(Bwd *B, CBlock *b, Entry *en);
static void bwd_run(Bwd *B, CBlock *b, CAtom *result, CAtom *ct);
static CAtom *zeros_of(CBlock *b, CAtom *p);
static CAtom *add_of(CBlock *b, CAtom *x, CAtom *y);
static CAtom *materialize(CBlock *b, Adj *a, CAtom *tmpl, Type *pt);
static CFun *get_vjp(CFun *f); /* f_rev */

static void rv_error(Loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rv_error(Loc loc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (R->ok) /* the first error of a region: the others follow from it */
        error_at(loc, "%s", msg);
    R->ok = false;
}

/* ------------------------------------------------------------ types */

static Type *rs(Type *t) { return type_resolve(t); }
static Type *tan_t(Type *t) { return type_resolve(type_tangent(t)); }
static TypeKind kind_of(Type *t) { return rs(t)->kind; }
static bool is_fl(Type *t) { TypeKind k = kind_of(t); return k == TY_FLOAT || k == TY_F32; }
static bool is_arr(Type *t) { return kind_of(t) == TY_ARRAY; }
static int rank_of(Type *t) { t = rs(t); return t->kind == TY_ARRAY ? t->rank : 0; }
static Type *elem_of(Type *t) { t = rs(t); return t->kind == TY_ARRAY ? rs(t->elem) : t; }
static Type *aty(CAtom *a) { return rs(core_atom_type(a)); }
/* An array of rank r of elem (a scalar when r is 0). */
static Type *arr_t(Type *elem, int r) { return r > 0 ? type_array(elem, r) : rs(elem); }
/* Axis 0 taken away: the rows of an array. */
static Type *row_t(Type *t) { return arr_t(elem_of(t), rank_of(t) - 1); }
static bool is_record(Type *t) { t = rs(t); return t->kind == TY_NAMED && t->decl->kind == TD_RECORD; }
static bool is_variant(Type *t) { t = rs(t); return t->kind == TY_NAMED && t->decl->kind == TD_VARIANT; }

static int nparts(Type *t)
{
    t = rs(t);
    if (t->kind == TY_TUPLE)
        return t->nargs;
    if (is_record(t))
        return t->decl->nfields;
    return -1;
}

static Type *part_t(Type *t, int i) { return kind_of(t) == TY_TUPLE ? core_type_proj(t, i) : core_type_field(t, i); }

/* Whether T(t) holds a float somewhere (else no derivative flows). */
static bool has_tan_d(Type *t, int depth)
{
    t = rs(t);
    if (depth > 12)
        return true;
    switch (t->kind) {
    case TY_FLOAT: case TY_F32:
        return true;
    case TY_ARRAY:
        return has_tan_d(t->elem, depth + 1);
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (has_tan_d(t->args[i], depth + 1))
                return true;
        return false;
    case TY_FUNC:
        return has_tan_d(t->args[1], depth + 1);
    case TY_NAMED:
        if (t->decl->kind == TD_RECORD) {
            for (int i = 0; i < t->decl->nfields; i++)
                if (has_tan_d(core_type_field(t, i), depth + 1))
                    return true;
        } else if (t->decl->kind == TD_VARIANT) {
            for (int i = 0; i < t->decl->ncons; i++) {
                Type *a = core_type_con_arg(t, i);
                if (a && has_tan_d(a, depth + 1))
                    return true;
            }
        }
        return false;
    default:
        return false;
    }
}

static bool has_tan(Type *t) { return has_tan_d(t, 0); }

static Type *fn_t(Type **params, int n, Type *res)
{
    for (int i = n - 1; i >= 0; i--)
        res = type_func(params[i], res);
    return res;
}

static Type *tuple_t(Type **ts, int n)
{
    if (n == 1)
        return ts[0];
    if (n == 0)
        return type_unit();
    return type_tuple(ts, n);
}

/* ------------------------------------------------------------ emitting */

static void push_bind(CBlock *b, CVar *v, CExpr *e)
{
    if (b->nbinds == b->cap) {
        int cap = b->cap ? b->cap * 2 : 8;
        CBind *nb = NEWN(CBind, cap);
        if (b->nbinds)
            memcpy(nb, b->binds, sizeof *nb * (size_t)b->nbinds);
        b->binds = nb;
        b->cap = cap;
    }
    b->binds[b->nbinds].var = v;
    b->binds[b->nbinds].e = e;
    b->nbinds++;
}

static CAtom *bind(CBlock *b, const char *name, CExpr *e) { return core_atom_var(core_bind(b, name, e)); }

static CExpr *atom_e(CAtom *a)
{
    CExpr *e = core_expr(CE_ATOM, core_atom_type(a), R->loc);
    e->nargs = 1;
    e->args = NEWN(CAtom *, 1);
    e->args[0] = a;
    return e;
}

static CAtom *prim(CBlock *b, Prim op, Type *t, CAtom **args, int n, int64_t imm)
{
    return bind(b, "d", core_prim(op, t, R->loc, args, n, imm));
}

#define P1(b, op, t, x) prim((b), (op), (t), (CAtom *[]){(x)}, 1, 0)
#define P2(b, op, t, x, y) prim((b), (op), (t), (CAtom *[]){(x), (y)}, 2, 0)
#define P3(b, op, t, x, y, z) prim((b), (op), (t), (CAtom *[]){(x), (y), (z)}, 3, 0)

static CAtom *ilit(int64_t v) { return core_atom_int(v); }
/* A float literal of the element type of t. */
static CAtom *flit(Type *t, double v) { return core_atom_float(v, elem_of(t)); }
static bool is_lit(CAtom *a, double v) { return a->kind == CA_FLOAT && a->u.fval == v; }

/* The type of an elementwise operation: the operand of higher rank. */
static Type *bc_t(CAtom *x, CAtom *y)
{
    Type *a = aty(x), *b = aty(y);
    return rank_of(b) > rank_of(a) ? b : a;
}

static CAtom *add2(CBlock *b, CAtom *x, CAtom *y)
{
    if (is_lit(x, 0) && core_type_equal(aty(y), bc_t(x, y)))
        return y;
    if (is_lit(y, 0) && core_type_equal(aty(x), bc_t(x, y)))
        return x;
    return P2(b, P_ADD, bc_t(x, y), x, y);
}

static CAtom *sub2(CBlock *b, CAtom *x, CAtom *y) { return P2(b, P_SUB, bc_t(x, y), x, y); }

static CAtom *mul2(CBlock *b, CAtom *x, CAtom *y)
{
    if (is_lit(x, 1) && core_type_equal(aty(y), bc_t(x, y)))
        return y;
    if (is_lit(y, 1) && core_type_equal(aty(x), bc_t(x, y)))
        return x;
    return P2(b, P_MUL, bc_t(x, y), x, y);
}

static CAtom *div2(CBlock *b, CAtom *x, CAtom *y) { return P2(b, P_DIV, bc_t(x, y), x, y); }
static CAtom *neg1(CBlock *b, CAtom *x) { return P1(b, P_NEG, aty(x), x); }
static CAtom *un(CBlock *b, Prim op, CAtom *x) { return P1(b, op, aty(x), x); }

static CAtom *cmp2(CBlock *b, Prim op, CAtom *x, CAtom *y)
{
    return P2(b, op, arr_t(type_bool(), rank_of(bc_t(x, y))), x, y);
}

/* select c x y, elementwise with broadcasting (x, y floats). */
static CAtom *sel(CBlock *b, CAtom *c, CAtom *x, CAtom *y)
{
    Type *t = bc_t(x, y);
    int r = rank_of(aty(c));
    if (r > rank_of(t))
        t = arr_t(elem_of(t), r);
    return P3(b, P_SELECT, t, c, x, y);
}

static CAtom *iadd(CBlock *b, CAtom *x, CAtom *y) { return P2(b, P_ADD, type_int(), x, y); }
static CAtom *isub(CBlock *b, CAtom *x, CAtom *y) { return P2(b, P_SUB, type_int(), x, y); }

static CExpr *known_def(CAtom *a);

/* An array of the same shape as x computed earlier, when x's definition
 * shows one (elementwise operations with one array operand): the shape is
 * read from there, so that x itself may be dead after the forward sweep. */
static CAtom *same_shape(CAtom *x, bool axis0_only)
{
    for (int depth = 0; depth < 32; depth++) {
        CExpr *d = known_def(x);
        if (!d)
            break;
        if (d->kind == CE_SOAC && d->u.soac.kind == SOAC_MAP && axis0_only) {
            x = d->args[0];
            continue;
        }
        if (d->kind != CE_PRIM || !(core_prims[d->u.prim.op].flags & PRIM_ELEMENTWISE))
            break;
        CAtom *arr = NULL;
        int narr = 0;
        for (int i = 0; i < d->nargs; i++)
            if (is_arr(aty(d->args[i]))) {
                arr = d->args[i];
                narr++;
            }
        if (narr != 1 || rank_of(aty(arr)) != rank_of(aty(x)))
            break;
        x = arr;
    }
    return x;
}

static CAtom *length_of(CBlock *b, CAtom *x) { return P1(b, P_LENGTH, type_int(), same_shape(x, true)); }

/* The dimensions of an array, one int atom each. */
static int dims_of(CBlock *b, CAtom *x, CAtom **out)
{
    int r = rank_of(aty(x));
    x = same_shape(x, r == 1);
    if (r == 1) {
        out[0] = length_of(b, x);
        return 1;
    }
    Type *it[8];
    for (int i = 0; i < r; i++)
        it[i] = type_int();
    CAtom *sh = P1(b, P_SHAPE, type_tuple(it, r), x);
    for (int i = 0; i < r; i++)
        out[i] = prim(b, P_PROJ, type_int(), &sh, 1, i);
    return r;
}

static CAtom *size_of(CBlock *b, CAtom *x)
{
    CAtom *d[8];
    int r = dims_of(b, x, d);
    CAtom *n = d[0];
    for (int i = 1; i < r; i++)
        n = P2(b, P_MUL, type_int(), n, d[i]);
    return n;
}

static CAtom *index_at(CBlock *b, CAtom *a, CAtom **idx, int k)
{
    CAtom *args[10];
    args[0] = a;
    for (int i = 0; i < k; i++)
        args[i + 1] = idx[i];
    Type *t = aty(a);
    return prim(b, P_INDEX, arr_t(elem_of(t), rank_of(t) - k), args, k + 1, 0);
}

static CAtom *index1(CBlock *b, CAtom *a, CAtom *i) { return index_at(b, a, &i, 1); }

static CAtom *update_at(CBlock *b, CAtom *a, CAtom *v, CAtom **idx, int k)
{
    CAtom *args[11];
    args[0] = a;
    args[1] = v;
    for (int i = 0; i < k; i++)
        args[i + 2] = idx[i];
    return prim(b, P_UPDATE, aty(a), args, k + 2, 0);
}

static CAtom *fill(CBlock *b, CAtom *v, CAtom **dims, int r)
{
    CAtom *args[9];
    args[0] = v;
    for (int i = 0; i < r; i++)
        args[i + 1] = dims[i];
    return prim(b, P_FILL, arr_t(aty(v), r), args, r + 1, 0);
}

static CAtom *zeros_dims(CBlock *b, Type *elem, CAtom **dims, int r)
{
    return prim(b, P_ZEROS, arr_t(elem, r), dims, r, 0);
}

static CAtom *reshape(CBlock *b, CAtom *a, CAtom **dims, int r)
{
    CAtom *args[9];
    args[0] = a;
    for (int i = 0; i < r; i++)
        args[i + 1] = dims[i];
    return prim(b, P_RESHAPE, arr_t(elem_of(aty(a)), r), args, r + 1, 0);
}

static CAtom *matmul(CBlock *b, CAtom *x, CAtom *y)
{
    int r = rank_of(aty(x)) + rank_of(aty(y)) - 2;
    return P2(b, P_MATMUL, arr_t(elem_of(aty(x)), r), x, y);
}


/* transpose (transpose y) is y */
static CAtom *transpose(CBlock *b, CAtom *x)
{
    CExpr *d = known_def(x);
    if (d && d->kind == CE_PRIM && d->u.prim.op == P_TRANSPOSE)
        return d->args[0];
    return P1(b, P_TRANSPOSE, aty(x), x);
}

/* The outer product u v^T of two vectors, as the broadcast product of a
 * column and a row (elementwise: it fuses with what consumes it). */
static CAtom *outer(CBlock *b, CAtom *u, CAtom *v)
{
    CAtom *m[2] = {length_of(b, u), ilit(1)};
    CAtom *n[2] = {ilit(1), length_of(b, v)};
    CAtom *col = reshape(b, u, m, 2), *row = reshape(b, v, n, 2);
    return P2(b, P_MUL, aty(col), col, row);
}

/* Sum over all elements (a scalar stays). */
static CAtom *sum_all(CBlock *b, CAtom *x)
{
    if (!is_arr(aty(x)))
        return x;
    return P1(b, P_SUM, elem_of(aty(x)), x);
}

/* Components of products. */
static CAtom *proj(CBlock *b, CAtom *x, int i)
{
    Type *t = aty(x);
    return prim(b, kind_of(t) == TY_TUPLE ? P_PROJ : P_FIELD, part_t(t, i), &x, 1, i);
}

static CAtom *mkprod(CBlock *b, Type *t, CAtom **parts, int n)
{
    return prim(b, kind_of(t) == TY_TUPLE ? P_TUPLE : P_RECORD, t, parts, n, 0);
}

/* Several values as one: nothing is unit, one is itself, more a tuple. */
static CAtom *tuple_of(CBlock *b, CAtom **xs, int n)
{
    if (n == 0)
        return core_atom_unit();
    if (n == 1)
        return xs[0];
    Type **ts = NEWN(Type *, n);
    for (int i = 0; i < n; i++)
        ts[i] = core_atom_type(xs[i]);
    return mkprod(b, type_tuple(ts, n), xs, n);
}

static CAtom *untuple(CBlock *b, CAtom *t, int n, int i) { return n == 1 ? t : proj(b, t, i); }

static CExpr *if_e(CAtom *c, Type *t, CBlock *th, CBlock *el)
{
    CExpr *e = core_expr(CE_IF, t, R->loc);
    e->nargs = 1;
    e->args = NEWN(CAtom *, 1);
    e->args[0] = c;
    e->u.if_.then_ = th;
    e->u.if_.else_ = el;
    return e;
}

static CBlock *block_of(CAtom *a)
{
    CBlock *b = core_block_new();
    b->result = a;
    return b;
}

/* A for loop under construction: state `s`, counter `i`, body `body`. */
typedef struct ForLoop {
    CExpr *e;
    CBlock *body;
    CAtom *s, *i;
} ForLoop;

static ForLoop for_begin(CAtom *n, CAtom *init)
{
    ForLoop L;
    Type *st = core_atom_type(init);
    L.e = core_expr(CE_LOOP, st, R->loc);
    CVar *s = core_var("s", st, R->loc), *i = core_var("i", type_int(), R->loc);
    L.e->u.loop.state = s;
    L.e->u.loop.kind = LOOP_FOR;
    L.e->u.loop.ivar = i;
    L.e->nargs = 2;
    L.e->args = NEWN(CAtom *, 2);
    L.e->args[0] = init;
    L.e->args[1] = n;
    L.body = core_block_new();
    L.e->u.loop.body = L.body;
    L.s = core_atom_var(s);
    L.i = core_atom_var(i);
    return L;
}

static CAtom *for_end(CBlock *b, ForLoop *L, CAtom *next)
{
    L->body->result = next;
    return bind(b, "loop", L->e);
}

/* A lambda of n parameters (curried type) for SOACs. */
static CLambda *lambda_n(CVar **ps, int n, CBlock *body)
{
    Type **pt = NEWN(Type *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        pt[i] = ps[i]->type;
    return core_lambda(ps, n, body, fn_t(pt, n, core_atom_type(body->result)), R->loc);
}

static CAtom *soac(CBlock *b, SoacKind k, Type *t, CLambda *l, CAtom **args, int n)
{
    CExpr *e = core_expr(CE_SOAC, t, R->loc);
    e->u.soac.kind = k;
    e->u.soac.fn = l;
    e->nargs = n;
    e->args = NEWN(CAtom *, n);
    for (int i = 0; i < n; i++)
        e->args[i] = args[i];
    return bind(b, k == SOAC_MAP ? "map" : "scan", e);
}

/* scan op ne xs over the scalars xs, op a binary prim. */
static CAtom *scan_prim(CBlock *b, Prim op, CAtom *ne, CAtom *xs)
{
    Type *el = elem_of(aty(xs));
    CVar *p[2] = {core_var("a", el, R->loc), core_var("x", el, R->loc)};
    CBlock *body = core_block_new();
    body->result = P2(body, op, el, core_atom_var(p[0]), core_atom_var(p[1]));
    CAtom *args[2] = {ne, xs};
    return soac(b, SOAC_SCAN, aty(xs), lambda_n(p, 2, body), args, 2);
}

static CAtom *lit_array1(CBlock *b, CAtom *v)
{
    return prim(b, P_ARRAY, type_array(aty(v), 1), &v, 1, 0);
}

/* A block copied with substitutions; its bindings go to dst, its result
 * is returned. */
static CAtom *splice(CBlock *dst, CBlock *src, CVar **from, CAtom **to, int n)
{
    CBlock *c = core_copy_block(src, from, to, n);
    for (int i = 0; i < c->nbinds; i++)
        push_bind(dst, c->binds[i].var, c->binds[i].e);
    return c->result;
}

/* ------------------------------------------------------------ zeros and sums */

static CFun *helper_fun(const char *kind, Type *t, Type **pts, int np, Type *ret, CVar **ps, bool *fresh)
{
    const char *key = intern(arena_printf(dcc_arena, "%s:%s", kind, type_to_string(t)));
    CFun *f = core_map_get(&R->helpers, key);
    *fresh = !f;
    if (f)
        return f;
    const char *dn = is_variant(t) ? rs(t)->decl->name : "t";
    f = core_fun_new(ad_fun_name(R->prog, arena_printf(dcc_arena, "%s_%s", kind, dn)), NULL, R->loc);
    f->is_helper = true;
    f->nparams = np;
    f->params = NEWN(CVar *, np);
    for (int i = 0; i < np; i++)
        f->params[i] = ps[i] = core_var(i ? "y" : "x", pts[i], R->loc);
    f->ret = ret;
    f->body = core_block_new();
    core_map_put(&R->helpers, key, f);
    core_program_add(R->prog, f);
    return f;
}

static CAtom *call(CBlock *b, CFun *f, CAtom **args, int n)
{
    CExpr *e = core_expr(CE_CALL, f->ret, R->loc);
    e->u.fun = f;
    e->nargs = n;
    e->args = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        e->args[i] = args[i];
    return bind(b, "r", e);
}

static CAtom *apply1(CBlock *b, CAtom *clo, CAtom *arg)
{
    Type *ft = aty(clo);
    CExpr *e = core_expr(CE_APPLY, rs(ft->args[1]), R->loc);
    e->nargs = 2;
    e->args = NEWN(CAtom *, 2);
    e->args[0] = clo;
    e->args[1] = arg;
    return bind(b, "r", e);
}

static CAtom *closure(CBlock *b, CVar *param, CBlock *body)
{
    Type *t = type_func(param->type, core_atom_type(body->result));
    CExpr *e = core_expr(CE_LAMBDA, t, R->loc);
    e->u.lambda = core_lambda(&param, 1, body, t, R->loc);
    return bind(b, "pb", e);
}

/* case x of every constructor k => body(k, payload): one alternative per
 * constructor of x's variant type. */
typedef CAtom *(*AltFn)(CBlock *b, int con, CAtom *payload, void *ctx);

static CAtom *case_all(CBlock *b, CAtom *x, Type *rt, AltFn fn, void *ctx)
{
    Type *t = aty(x);
    int n = t->decl->ncons;
    CExpr *e = core_expr(CE_CASE, rt, R->loc);
    e->nargs = 1;
    e->args = NEWN(CAtom *, 1);
    e->args[0] = x;
    e->u.case_.nalts = n;
    e->u.case_.alts = NEWN(CAlt, n);
    for (int k = 0; k < n; k++) {
        CAlt *a = &e->u.case_.alts[k];
        a->con = k;
        Type *pt = core_type_con_arg(t, k);
        a->payload = pt ? core_var("p", pt, R->loc) : NULL;
        a->body = core_block_new();
        a->body->result = fn(a->body, k, pt ? core_atom_var(a->payload) : NULL, ctx);
    }
    return bind(b, "c", e);
}

static CAtom *con(CBlock *b, Type *t, int k, CAtom *payload)
{
    return prim(b, P_CON, t, &payload, payload ? 1 : 0, k);
}

static CAtom *zero_alt(CBlock *b, int k, CAtom *payload, void *ctx)
{
    return con(b, (Type *)ctx, k, payload ? zeros_of(b, payload) : NULL);
}

/* The zero of T(t) for the value p : t. Zeros of a variant take p's
 * constructor (zeros_<type> helpers, recursive for recursive types). */
static CAtom *zeros_of(CBlock *b, CAtom *p)
{
    Type *t = aty(p), *tt = tan_t(t);
    switch (t->kind) {
    case TY_FLOAT: case TY_F32:
        return core_atom_float(0.0, t);
    case TY_ARRAY:
        return P1(b, P_ZEROS_LIKE, tt, p);
    case TY_TUPLE: case TY_NAMED:
        if (nparts(t) >= 0) {
            int n = nparts(t);
            CAtom **ps = NEWN(CAtom *, n > 0 ? n : 1);
            for (int i = 0; i < n; i++)
                ps[i] = zeros_of(b, proj(b, p, i));
            return mkprod(b, tt, ps, n);
        }
        if (is_variant(t)) {
            CVar *x;
            bool fresh;
            CFun *f = helper_fun("zeros", t, &t, 1, tt, &x, &fresh);
            if (fresh)
                f->body->result = case_all(f->body, core_atom_var(x), tt, zero_alt, tt);
            return call(b, f, &p, 1);
        }
        return core_atom_unit();
    case TY_FUNC: {
        CVar *x = core_var("x", rs(t->args[0]), R->loc);
        CBlock *body = core_block_new();
        body->result = zeros_of(body, apply1(body, p, core_atom_var(x)));
        return closure(b, x, body);
    }
    default:
        return core_atom_unit();
    }
}

typedef struct AddCtx {
    CAtom *y;
    Type *t;
} AddCtx;

static CAtom *add_alt(CBlock *b, int k, CAtom *payload, void *vctx)
{
    AddCtx *c = vctx;
    if (!payload)
        return con(b, c->t, k, NULL);
    CAtom *q = prim(b, P_PAYLOAD, aty(payload), &c->y, 1, k);
    return con(b, c->t, k, add_of(b, payload, q));
}

/* x + y on a tangent type. Sums of variants take x's constructor (both
 * are tangents at one primal value, so they share it). */
static CAtom *add_of(CBlock *b, CAtom *x, CAtom *y)
{
    Type *t = aty(x);
    if (!has_tan(t))
        return x;
    switch (t->kind) {
    case TY_FLOAT: case TY_F32:
        return add2(b, x, y);
    case TY_ARRAY:
        if (is_fl(t->elem))
            return add2(b, x, y);
        else {
            Type *el = rs(t->elem);
            CVar *p[2] = {core_var("a", el, R->loc), core_var("b", el, R->loc)};
            CBlock *body = core_block_new();
            body->result = add_of(body, core_atom_var(p[0]), core_atom_var(p[1]));
            CAtom *args[2] = {x, y};
            return soac(b, SOAC_MAP, t, lambda_n(p, 2, body), args, 2);
        }
    case TY_TUPLE: case TY_NAMED:
        if (nparts(t) >= 0) {
            int n = nparts(t);
            CAtom **ps = NEWN(CAtom *, n > 0 ? n : 1);
            for (int i = 0; i < n; i++)
                ps[i] = has_tan(part_t(t, i)) ? add_of(b, proj(b, x, i), proj(b, y, i)) : proj(b, x, i);
            return mkprod(b, t, ps, n);
        }
        if (is_variant(t)) {
            CVar *v[2];
            bool fresh;
            Type *ts[2] = {t, t};
            CFun *f = helper_fun("add", t, ts, 2, t, v, &fresh);
            if (fresh) {
                AddCtx c = {core_atom_var(v[1]), t};
                f->body->result = case_all(f->body, core_atom_var(v[0]), t, add_alt, &c);
            }
            CAtom *args[2] = {x, y};
            return call(b, f, args, 2);
        }
        return x;
    case TY_FUNC: {
        CVar *a = core_var("x", rs(t->args[0]), R->loc);
        CBlock *body = core_block_new();
        body->result = add_of(body, apply1(body, x, core_atom_var(a)), apply1(body, y, core_atom_var(a)));
        return closure(b, a, body);
    }
    default:
        return x;
    }
}

/* Some value of type t, for residual slots of branches not taken and for
 * buffers before they are written. */
static CAtom *dummy_of(CBlock *b, Type *t, int depth)
{
    t = rs(t);
    switch (t->kind) {
    case TY_FLOAT: case TY_F32: return core_atom_float(0.0, t);
    case TY_INT: return ilit(0);
    case TY_BOOL: return core_atom_bool(false);
    case TY_STRING: return core_atom_string("");
    case TY_KEY: return P1(b, P_KEY, t, ilit(0));
    case TY_ARRAY: {
        CAtom *d[8];
        for (int i = 0; i < t->rank; i++)
            d[i] = ilit(0);
        return zeros_dims(b, t->elem, d, t->rank);
    }
    case TY_TUPLE: case TY_NAMED:
        if (nparts(t) >= 0) {
            int n = nparts(t);
            CAtom **ps = NEWN(CAtom *, n > 0 ? n : 1);
            for (int i = 0; i < n; i++)
                ps[i] = dummy_of(b, part_t(t, i), depth + 1);
            return mkprod(b, t, ps, n);
        }
        if (is_variant(t)) {
            for (int k = 0; k < t->decl->ncons; k++)
                if (!core_type_con_arg(t, k))
                    return con(b, t, k, NULL);
            if (depth < 8)
                return con(b, t, 0, dummy_of(b, core_type_con_arg(t, 0), depth + 1));
        }
        break;
    case TY_FUNC: {
        CVar *x = core_var("x", rs(t->args[0]), R->loc);
        CBlock *body = core_block_new();
        body->result = dummy_of(body, t->args[1], depth + 1);
        return closure(b, x, body);
    }
    default:
        break;
    }
    return core_atom_unit();
}

/* ------------------------------------------------------------ adjoints */

static Adj *A(CAtom *a)
{
    Adj *r = NEW(Adj);
    r->kind = ADJ_ATOM;
    r->atom = a;
    return r;
}

static Adj *adj_prod1(Type *pt, int i, Adj *part)
{
    if (!part)
        return NULL;
    Adj *r = NEW(Adj);
    r->kind = ADJ_PROD;
    r->n = nparts(pt);
    r->parts = NEWN(Adj *, r->n > 0 ? r->n : 1);
    r->parts[i] = part;
    return r;
}

static Adj *adj_con(int k, Adj *part)
{
    Adj *r = NEW(Adj);
    r->kind = ADJ_CON;
    r->con = k;
    r->n = 1;
    r->parts = NEWN(Adj *, 1);
    r->parts[0] = part;
    return r;
}

/* Component i of the adjoint of a product. */
static Adj *adj_part(CBlock *b, Adj *a, int i)
{
    if (!a)
        return NULL;
    if (a->kind == ADJ_PROD)
        return a->parts[i];
    if (a->kind == ADJ_ATOM)
        return A(proj(b, a->atom, i));
    return NULL;
}

/* The payload of the adjoint of a variant whose constructor is k. */
static Adj *adj_payload(CBlock *b, Adj *a, Type *pt, int k)
{
    if (!a)
        return NULL;
    if (a->kind == ADJ_CON)
        return a->con == k ? a->parts[0] : NULL;
    if (a->kind == ADJ_ATOM) {
        Type *arg = core_type_con_arg(pt, k);
        return arg ? A(prim(b, P_PAYLOAD, tan_t(arg), &a->atom, 1, k)) : NULL;
    }
    return NULL;
}

static Adj *adj_add(CBlock *b, Type *pt, Adj *x, Adj *y)
{
    if (!x)
        return y;
    if (!y)
        return x;
    if (x->kind == ADJ_ATOM && y->kind == ADJ_ATOM)
        return A(add_of(b, x->atom, y->atom));
    if (x->kind == ADJ_PROD || y->kind == ADJ_PROD) {
        int n = nparts(pt);
        Adj *r = NEW(Adj);
        r->kind = ADJ_PROD;
        r->n = n;
        r->parts = NEWN(Adj *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            r->parts[i] = adj_add(b, part_t(pt, i), adj_part(b, x, i), adj_part(b, y, i));
        return r;
    }
    if (x->kind == ADJ_CON && y->kind == ADJ_CON && x->con == y->con)
        return adj_con(x->con, adj_add(b, core_type_con_arg(pt, x->con), x->parts[0], y->parts[0]));
    if (x->kind == ADJ_CON || y->kind == ADJ_CON) {
        Adj *c = x->kind == ADJ_CON ? x : y, *a = x->kind == ADJ_CON ? y : x;
        if (a->kind != ADJ_ATOM) {
            rv_error(R->loc, "internal error: reverse mode: adjoints of two constructors");
            return a;
        }
        Type *arg = core_type_con_arg(pt, c->con);
        if (!arg || !c->parts[0])
            return a;
        Adj *s = adj_add(b, arg, adj_payload(b, a, pt, c->con), c->parts[0]);
        return A(con(b, tan_t(pt), c->con, materialize(b, s, NULL, arg)));
    }
    return x;
}

static bool adj_total(Adj *a)
{
    if (!a)
        return false;
    if (a->kind == ADJ_PROD)
        for (int i = 0; i < a->n; i++)
            if (!adj_total(a->parts[i]))
                return false;
    if (a->kind == ADJ_CON)
        return !a->parts[0] || adj_total(a->parts[0]);
    return true;
}

/* The adjoint as a value of T(pt); missing parts are zeros shaped like
 * the primal value tmpl. */
static CAtom *materialize(CBlock *b, Adj *a, CAtom *tmpl, Type *pt)
{
    if (!a) {
        if (!tmpl) {
            rv_error(R->loc, "internal error: reverse mode: zero without a shape");
            return core_atom_unit();
        }
        return zeros_of(b, tmpl);
    }
    switch (a->kind) {
    case ADJ_ATOM:
        return a->atom;
    case ADJ_PROD: {
        int n = a->n;
        CAtom **ps = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++) {
            Adj *p = a->parts[i];
            CAtom *sub = adj_total(p) ? NULL : proj(b, tmpl, i);
            ps[i] = materialize(b, p, sub, part_t(pt, i));
        }
        return mkprod(b, tan_t(pt), ps, n);
    }
    case ADJ_CON: {
        Type *arg = core_type_con_arg(pt, a->con);
        CAtom *pay = NULL;
        if (arg) {
            Adj *p = a->parts[0];
            CAtom *sub = adj_total(p) ? NULL : prim(b, P_PAYLOAD, arg, &tmpl, 1, a->con);
            pay = materialize(b, p, sub, arg);
        }
        return con(b, tan_t(pt), a->con, pay);
    }
    }
    return core_atom_unit();
}

/* ------------------------------------------------------------ walking */

typedef void (*AtomFn)(CAtom *a, void *ctx);
typedef void (*ExprFn)(CExpr *e, void *ctx);

static void walk_block(CBlock *b, AtomFn af, ExprFn ef, void *ctx);

static void walk_expr(CExpr *e, AtomFn af, ExprFn ef, void *ctx)
{
    if (ef)
        ef(e, ctx);
    if (af)
        for (int i = 0; i < e->nargs; i++)
            af(e->args[i], ctx);
    switch (e->kind) {
    case CE_LAMBDA:
        walk_block(e->u.lambda->body, af, ef, ctx);
        break;
    case CE_IF:
        walk_block(e->u.if_.then_, af, ef, ctx);
        walk_block(e->u.if_.else_, af, ef, ctx);
        break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            walk_block(e->u.case_.alts[i].body, af, ef, ctx);
        break;
    case CE_LOOP:
        if (e->u.loop.cond)
            walk_block(e->u.loop.cond, af, ef, ctx);
        walk_block(e->u.loop.body, af, ef, ctx);
        break;
    case CE_SOAC:
        walk_block(e->u.soac.fn->body, af, ef, ctx);
        break;
    case CE_DERIV:
        if (e->u.deriv.fn)
            walk_block(e->u.deriv.fn->body, af, ef, ctx);
        break;
    default:
        break;
    }
}

static void walk_block(CBlock *b, AtomFn af, ExprFn ef, void *ctx)
{
    for (int i = 0; i < b->nbinds; i++)
        walk_expr(b->binds[i].e, af, ef, ctx);
    if (af && b->result)
        af(b->result, ctx);
}

static bool var_active(CVar *v) { return v && core_map_get(&R->active, v); }
static bool atom_active(CAtom *a) { return a && a->kind == CA_VAR && var_active(a->u.var); }

static void set_active(CVar *v)
{
    if (has_tan(v->type))
        core_map_put(&R->active, v, (void *)1);
}

/* Distinct variables of a walk, in order: the active ones, or those in a set. */
typedef struct Collect {
    Vec vars;
    CoreMap seen;
    CoreMap *in;    /* keep only these (NULL: the active ones) */
    CoreMap *skip;  /* never these */
} Collect;

static void collect_atom(CAtom *a, void *vctx)
{
    Collect *c = vctx;
    if (a->kind != CA_VAR)
        return;
    CVar *v = a->u.var;
    if (c->in ? !core_map_get(c->in, v) : !var_active(v))
        return;
    if ((c->skip && core_map_get(c->skip, v)) || core_map_get(&c->seen, v))
        return;
    core_map_put(&c->seen, v, (void *)1);
    vec_push(&c->vars, v);
}

static bool uses_active_block(CBlock *b)
{
    Collect c = {0};
    walk_block(b, collect_atom, NULL, &c);
    bool r = c.vars.len > 0;
    vec_free(&c.vars);
    core_map_free(&c.seen);
    return r;
}

static bool uses_active_expr(CExpr *e)
{
    Collect c = {0};
    walk_expr(e, collect_atom, NULL, &c);
    bool r = c.vars.len > 0;
    vec_free(&c.vars);
    core_map_free(&c.seen);
    return r;
}

static int size_count;
static void count_expr(CExpr *e, void *ctx)
{
    (void)e;
    (void)ctx;
    size_count++;
}

static int block_size(CBlock *b)
{
    size_count = 0;
    walk_block(b, NULL, count_expr, NULL);
    return size_count;
}

/* Recursion: f reachable from its own callees. */
typedef struct Reach {
    CoreMap seen;
    Vec work;
} Reach;

static void reach_expr(CExpr *e, void *vctx)
{
    Reach *r = vctx;
    if (e->kind != CE_CALL || core_map_get(&r->seen, e->u.fun))
        return;
    core_map_put(&r->seen, e->u.fun, (void *)1);
    vec_push(&r->work, e->u.fun);
}

static bool is_recursive(CFun *f)
{
    intptr_t m = (intptr_t)core_map_get(&R->rec, f);
    if (m)
        return m == 1;
    Reach r = {0};
    if (f->body)
        walk_block(f->body, NULL, reach_expr, &r);
    while (r.work.len) {
        CFun *g = vec_pop(&r.work);
        if (g->body && g != f)
            walk_block(g->body, NULL, reach_expr, &r);
    }
    bool rec = core_map_get(&r.seen, f) != NULL;
    core_map_free(&r.seen);
    vec_free(&r.work);
    core_map_put(&R->rec, f, (void *)(intptr_t)(rec ? 1 : 2));
    return rec;
}

static bool has_fun_param(CFun *f)
{
    for (int i = 0; i < f->nparams; i++)
        if (kind_of(f->params[i]->type) == TY_FUNC)
            return true;
    return false;
}

/* ------------------------------------------------------------ forward sweep */

static void fpush(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    push_bind(dst, x, e);
    core_map_put(&F->bound, x, (void *)1);
    core_map_put(&R->known, x, e);
}

static Entry *tape(Frame *F, EntryKind k, CVar *y, CExpr *e)
{
    Entry *en = NEW(Entry);
    en->kind = k;
    en->y = y;
    en->e = e;
    vec_push(&F->tape, en);
    set_active(y);
    return en;
}

static void fwd_block(Frame *F, CBlock *src, CBlock *dst)
{
    for (int i = 0; i < src->nbinds; i++)
        fwd_bind(F, dst, src->binds[i].var, src->binds[i].e);
}

/* Follows copies and projections of known tuples to a definition. */
static CExpr *resolve_def(CAtom *a)
{
    for (int depth = 0; depth < 64; depth++) {
        if (!a || a->kind != CA_VAR)
            return NULL;
        CExpr *d = core_map_get(&R->known, a->u.var);
        if (!d)
            d = ad_def_of(a); /* bound before the region */
        if (!d)
            return NULL;
        if (d->kind == CE_ATOM) {
            a = d->args[0];
            continue;
        }
        if (d->kind == CE_PRIM && (d->u.prim.op == P_PROJ || d->u.prim.op == P_FIELD)) {
            CExpr *p = resolve_def(d->args[0]);
            Prim want = d->u.prim.op == P_PROJ ? P_TUPLE : P_RECORD;
            if (p && p->kind == CE_PRIM && p->u.prim.op == want && d->u.prim.imm < p->nargs) {
                a = p->args[d->u.prim.imm];
                continue;
            }
        }
        return d;
    }
    return NULL;
}

static CExpr *known_def(CAtom *a)
{
    if (!a || a->kind != CA_VAR)
        return NULL;
    CExpr *d = core_map_get(&R->known, a->u.var);
    return d ? d : ad_def_of(a);
}

static bool is_io(Prim p) { return p == P_PRINT || p == P_PRINTLN || p == P_PROGRESS || p == P_WRITE_NPY; }

/* The call's value and pullback from fv (f_rev or a `with vjp` rule). */
static void fwd_pullback(Frame *F, CBlock *dst, CVar *x, CFun *fv, CAtom **args, int n)
{
    CAtom *r = call(dst, fv, args, n);
    fpush(F, dst, x, core_prim(P_PROJ, x->type, R->loc, &r, 1, 0));
    CAtom *pb = prim(dst, P_PROJ, core_type_proj(fv->ret, 1), &r, 1, 1);
    Entry *en = tape(F, EN_PULLBACK, x, NULL);
    en->pb = pb;
    en->args = args;
    en->nargs = n;
}

static void fwd_call(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    CFun *f = e->u.fun;
    bool act = false;
    for (int i = 0; i < e->nargs; i++)
        act |= atom_active(e->args[i]);
    if (!act || !has_tan(x->type)) {
        fpush(F, dst, x, e);
        return;
    }
    CFun *of = core_map_get(&R->rev_fun, f);
    if (of) {
        /* (y, pb) = f_rev xs, differentiated again: y is f xs, and the
         * applications of pb become calls of f_bwd (fwd_apply) */
        CExpr *ce = core_expr(CE_CALL, of->ret, e->loc);
        ce->u.fun = of;
        ce->nargs = e->nargs;
        ce->args = e->args;
        CVar *y = core_var("y", of->ret, e->loc);
        fwd_bind(F, dst, y, ce);
        CAtom *parts[2] = {core_atom_var(y), dummy_of(dst, core_type_proj(x->type, 1), 0)};
        fwd_bind(F, dst, x, core_prim(P_TUPLE, x->type, e->loc, parts, 2, 0));
        core_map_put(&R->rev_call, x, e);
        return;
    }
    if (f->vjp_rule) {
        if (f->vjp_rule->nparams != e->nargs) {
            rv_error(e->loc, "reverse mode: the 'with vjp' rule of '%s' must take all its parameters",
                     f->src_name);
            fpush(F, dst, x, e);
            return;
        }
        if (!ad_prepare_fun(f->vjp_rule))
            R->ok = false;
        fwd_pullback(F, dst, x, f->vjp_rule, e->args, e->nargs);
        return;
    }
    if (f->jvp_rule) {
        if (e->nargs != 1) {
            rv_error(e->loc, "reverse mode: the 'with jvp' rule of '%s' needs a function of one parameter",
                     f->src_name);
            fpush(F, dst, x, e);
            return;
        }
        if (!ad_prepare_fun(f->jvp_rule))
            R->ok = false;
        fpush(F, dst, x, e);
        Entry *en = tape(F, EN_JVP_RULE, x, e);
        en->rule = f->jvp_rule;
        en->args = e->args;
        en->nargs = 1;
        return;
    }
    if (!ad_prepare_fun(f)) {
        R->ok = false;
        fpush(F, dst, x, e);
        return;
    }
    if (!f->body) {
        rv_error(e->loc, "reverse mode: '%s' has no body to differentiate", f->src_name);
        fpush(F, dst, x, e);
        return;
    }
    int size = block_size(f->body);
    if (!is_recursive(f) && R->budget > 0 && (size <= 200 || has_fun_param(f))) {
        R->budget -= size;
        CBlock *c = core_copy_block(f->body, f->params, e->args, f->nparams);
        fwd_block(F, c, dst);
        fwd_bind(F, dst, x, atom_e(c->result));
        return;
    }
    if (F->norec) {
        fpush(F, dst, x, e);
        Entry *en = tape(F, EN_RECOMPUTE, x, e);
        en->rule = f;
        en->args = e->args;
        en->nargs = e->nargs;
        return;
    }
    fwd_pullback(F, dst, x, get_vjp(f), e->args, e->nargs);
}

static CFun *get_bwd(CFun *f);

static void fwd_apply(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    bool act = has_tan(x->type) && (atom_active(e->args[0]) || atom_active(e->args[1]));
    CExpr *d = act ? known_def(e->args[0]) : NULL;
    while (d && d->kind == CE_ATOM)
        d = known_def(d->args[0]);
    if (d && d->kind == CE_PRIM && d->u.prim.op == P_PROJ && d->u.prim.imm == 1 &&
        d->args[0]->kind == CA_VAR && core_map_get(&R->rev_call, d->args[0]->u.var)) {
        /* the pullback of an f_rev applied (reverse over reverse through a
         * recursive function): f_bwd, which recomputes f's forward sweep and
         * returns the adjoints, is the same function without a closure */
        CExpr *c = core_map_get(&R->rev_call, d->args[0]->u.var);
        CFun *f = core_map_get(&R->rev_fun, c->u.fun);
        {
            CFun *fb = get_bwd(f);
            CExpr *ce = core_expr(CE_CALL, fb->ret, e->loc);
            ce->u.fun = fb;
            ce->nargs = c->nargs + 1;
            ce->args = NEWN(CAtom *, ce->nargs);
            for (int i = 0; i < c->nargs; i++)
                ce->args[i] = c->args[i];
            ce->args[c->nargs] = e->args[1];
            fwd_bind(F, dst, x, ce);
            return;
        }
    }
    d = act ? resolve_def(e->args[0]) : NULL;
    if (d && d->kind == CE_LAMBDA && R->budget > 0) {
        CLambda *l = d->u.lambda;
        R->budget -= block_size(l->body);
        CBlock *c = core_copy_block(l->body, l->params, &e->args[1], 1);
        fwd_block(F, c, dst);
        fwd_bind(F, dst, x, atom_e(c->result));
        return;
    }
    fpush(F, dst, x, e);
    if (act)
        rv_error(e->loc, "reverse mode: cannot differentiate through this call of a function value: "
                         "the function is not known here (a closure from outside the differentiated "
                         "function, or one passed through a data structure or a recursive function)");
}

static void fwd_branch(Frame *F, CBlock *dst, CVar *x, CExpr *e);
static void fwd_loop(Frame *F, CBlock *dst, CVar *x, CExpr *e);
static void fwd_soac(Frame *F, CBlock *dst, CVar *x, CExpr *e);

static void fwd_bind(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    Loc saved = R->loc;
    int mark = dst->nbinds;
    R->loc = e->loc;
    switch (e->kind) {
    case CE_ATOM:
        fpush(F, dst, x, e);
        if (atom_active(e->args[0]) && has_tan(x->type))
            tape(F, EN_ATOM, x, e);
        break;
    case CE_PRIM: {
        Prim op = e->u.prim.op;
        if (F->recompute && is_io(op) && kind_of(x->type) == TY_UNIT) {
            fpush(F, dst, x, atom_e(core_atom_unit()));
            break;
        }
        fpush(F, dst, x, e);
        if ((core_prims[op].flags & PRIM_NONDIFF) || !has_tan(x->type))
            break;
        for (int i = 0; i < e->nargs; i++)
            if (atom_active(e->args[i])) {
                tape(F, EN_PRIM, x, e);
                break;
            }
        break;
    }
    case CE_CALL:
        fwd_call(F, dst, x, e);
        break;
    case CE_APPLY:
        fwd_apply(F, dst, x, e);
        break;
    case CE_LAMBDA:
        fpush(F, dst, x, e);
        if (has_tan(x->type) && uses_active_expr(e))
            tape(F, EN_CLOSURE, x, e);
        break;
    case CE_IF: case CE_CASE:
        fwd_branch(F, dst, x, e);
        break;
    case CE_LOOP:
        fwd_loop(F, dst, x, e);
        break;
    case CE_SOAC:
        fwd_soac(F, dst, x, e);
        break;
    case CE_DERIV:
        if (e->u.deriv.kind == DERIV_STOP_GRADIENT) {
            fpush(F, dst, x, e); /* its value carries no derivative */
            break;
        } else {
            /* a derivative form in a copied callee: expand it first */
            CBlock *tmp = core_block_new();
            push_bind(tmp, x, e);
            tmp->result = core_atom_unit();
            if (!ad_expand_block(tmp))
                R->ok = false;
            fwd_block(F, tmp, dst);
        }
        break;
    }
    for (int i = mark; i < dst->nbinds; i++)
        core_map_put(&F->bound, dst->binds[i].var, (void *)1);
    R->loc = saved;
}

/* ------------------------------------------------------------ templates */

static Adj *adj_get(Bwd *B, CVar *v) { return core_map_get(&B->adj, v); }

static void adj_set(Bwd *B, CVar *v, Adj *a)
{
    if (!core_map_get(&B->adj, v))
        vec_push(&B->keys, v);
    core_map_put(&B->adj, v, a);
}

/* Adds a to the adjoint of target (nothing for constants and inactive
 * variables). */
static void contrib(Bwd *B, CBlock *b, CAtom *target, Adj *a)
{
    if (!a || !target || target->kind != CA_VAR || !var_active(target->u.var))
        return;
    CVar *v = target->u.var;
    adj_set(B, v, adj_add(b, v->type, adj_get(B, v), a));
}

static void bwd_run(Bwd *B, CBlock *b, CAtom *result, CAtom *ct)
{
    contrib(B, b, result, A(ct));
    for (int i = B->F->tape.len - 1; i >= 0 && R->ok; i--)
        bwd_entry(B, b, B->F->tape.data[i]);
}

/* The backward sweep of frame F over a placeholder cotangent of result.
 * cands[i] with acc[i] start from a placeholder adjoint (passed in and
 * updated: in-place accumulation into arrays); the others from zero. For
 * a case alternative, the adjoint of its payload pay goes to the scrutinee
 * as the constructor con. */
static Tmpl *tmpl_raw(Frame *F, CAtom *result, Type *rtype, CVar **params, CAtom **ptmpl, int np,
                      CVar **cands, bool *acc, int nc, CVar *pay, CAtom *scrut, int conk)
{
    Tmpl *tm = NEW(Tmpl);
    tm->body = core_block_new();
    tm->ct = core_var("ct", tan_t(rtype), R->loc);
    Bwd *B = NEW(Bwd);
    B->F = F;
    tm->B = B;
    tm->params = params;
    tm->ptmpl = ptmpl;
    tm->nparams = np;
    tm->cands = cands;
    tm->ncands = nc;
    tm->accv = NEWN(CVar *, nc > 0 ? nc : 1);
    for (int i = 0; i < nc; i++)
        if (acc[i]) {
            tm->accv[i] = core_var("acc", tan_t(cands[i]->type), R->loc);
            adj_set(B, cands[i], A(core_atom_var(tm->accv[i])));
        }
    bwd_run(B, tm->body, result, core_atom_var(tm->ct));
    if (pay) {
        Adj *pa = adj_get(B, pay);
        if (pa)
            contrib(B, tm->body, scrut, adj_con(conk, pa));
    }
    return tm;
}

static int cand_index(Tmpl *tm, CVar *v)
{
    for (int i = 0; i < tm->ncands; i++)
        if (tm->cands[i] == v)
            return i;
    return -1;
}

static bool is_param(Tmpl *tm, CVar *v)
{
    for (int i = 0; i < tm->nparams; i++)
        if (tm->params[i] == v)
            return true;
    return false;
}

/* Adds to outs the outer variables whose adjoints tm changes. */
static void tmpl_escapes(Tmpl *tm, Vec *outs, CoreMap *seen)
{
    Bwd *B = tm->B;
    for (int i = 0; i < B->keys.len; i++) {
        CVar *v = B->keys.data[i];
        if (core_map_get(&B->F->bound, v) || is_param(tm, v) || core_map_get(seen, v))
            continue;
        int ci = cand_index(tm, v);
        if (ci >= 0 && tm->accv[ci]) {
            Adj *a = adj_get(B, v);
            if (a && a->kind == ADJ_ATOM && a->atom->kind == CA_VAR && a->atom->u.var == tm->accv[ci])
                continue; /* passed through unchanged */
        }
        core_map_put(seen, v, (void *)1);
        vec_push(outs, v);
    }
}

/* Sets the result: the parameters' adjoints, then outs'; and finds the
 * residuals (frame variables the body reads). pay is re-bound by whoever
 * instantiates it. */
static void tmpl_finish(Tmpl *tm, CVar **outs, int nouts, CVar *pay)
{
    CBlock *b = tm->body;
    Bwd *B = tm->B;
    int n = tm->nparams + nouts;
    CAtom **r = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < tm->nparams; i++) {
        CVar *p = tm->params[i];
        CAtom *z = tm->ptmpl && tm->ptmpl[i] ? tm->ptmpl[i] : core_atom_var(tm->ct);
        Adj *a = adj_get(B, p);
        r[i] = a ? materialize(b, a, z, p->type) : zeros_of(b, z);
    }
    tm->outs = outs;
    tm->nouts = nouts;
    tm->accm = NEWN(bool, nouts > 0 ? nouts : 1);
    for (int j = 0; j < nouts; j++) {
        CVar *v = outs[j];
        int ci = cand_index(tm, v);
        tm->accm[j] = ci >= 0 && tm->accv[ci];
        Adj *a = adj_get(B, v);
        r[tm->nparams + j] = materialize(b, a, core_atom_var(v), v->type);
    }
    b->result = tuple_of(b, r, n);
    /* residuals */
    CoreMap in = {0}, skip = {0};
    for (int i = 0; i < B->F->bound.cap; i++)
        if (B->F->bound.keys && B->F->bound.keys[i] && B->F->bound.vals[i])
            core_map_put(&in, B->F->bound.keys[i], (void *)1);
    for (int i = 0; i < tm->nparams; i++)
        core_map_put(&in, tm->params[i], (void *)1);
    if (pay)
        core_map_put(&skip, pay, (void *)1);
    Collect c = {.in = &in, .skip = &skip};
    walk_block(b, collect_atom, NULL, &c);
    tm->nres = c.vars.len;
    tm->res = NEWN(CVar *, c.vars.len > 0 ? c.vars.len : 1);
    for (int i = 0; i < c.vars.len; i++)
        tm->res[i] = c.vars.data[i];
    vec_free(&c.vars);
    core_map_free(&c.seen);
    core_map_free(&in);
    core_map_free(&skip);
}

/* Instantiates tm into dst: ct and the incoming adjoints accs (per out, for
 * the accumulating ones) and the given substitutions. Returns the result. */
static CAtom *tmpl_inst(CBlock *dst, Tmpl *tm, CAtom *ct, CAtom **accs, CVar **from, CAtom **to, int n)
{
    int m = 1 + tm->nouts + n;
    CVar **f = NEWN(CVar *, m);
    CAtom **t = NEWN(CAtom *, m);
    int k = 0;
    f[k] = tm->ct;
    t[k++] = ct;
    for (int j = 0; j < tm->nouts; j++)
        if (tm->accm[j]) {
            f[k] = tm->accv[cand_index(tm, tm->outs[j])];
            t[k++] = accs[j];
        }
    for (int i = 0; i < n; i++) {
        f[k] = from[i];
        t[k++] = to[i];
    }
    return splice(dst, tm->body, f, t, k);
}

/* The active variables a construct reads from outside (candidates for
 * adjoints flowing out), and whether each is accumulated in place. */
static void candidates(CExpr *e, CBlock *blk, bool all_acc, CVar ***cands, bool **acc, int *n)
{
    Collect c = {0};
    if (e)
        walk_expr(e, collect_atom, NULL, &c);
    else
        walk_block(blk, collect_atom, NULL, &c);
    *n = c.vars.len;
    *cands = NEWN(CVar *, *n > 0 ? *n : 1);
    *acc = NEWN(bool, *n > 0 ? *n : 1);
    for (int i = 0; i < *n; i++) {
        (*cands)[i] = c.vars.data[i];
        (*acc)[i] = all_acc || is_arr((*cands)[i]->type);
    }
    vec_free(&c.vars);
    core_map_free(&c.seen);
}

/* ------------------------------------------------------------ if / case */

static void fwd_branch(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    bool isif = e->kind == CE_IF;
    int nb = isif ? 2 : e->u.case_.nalts;
    CBlock **src = NEWN(CBlock *, nb);
    for (int k = 0; k < nb; k++)
        src[k] = isif ? (k ? e->u.if_.else_ : e->u.if_.then_) : e->u.case_.alts[k].body;
    if (!has_tan(x->type) || !uses_active_expr(e)) {
        fpush(F, dst, x, e);
        return;
    }
    CVar **cands;
    bool *acc;
    int nc;
    candidates(e, NULL, false, &cands, &acc, &nc);
    Tmpl **tm = NEWN(Tmpl *, nb);
    CBlock **fb = NEWN(CBlock *, nb);
    for (int k = 0; k < nb; k++) {
        Frame *Fk = NEW(Frame);
        Fk->recompute = F->recompute;
        Fk->norec = F->norec;
        CVar *pay = isif ? NULL : e->u.case_.alts[k].payload;
        if (pay) {
            core_map_put(&Fk->bound, pay, (void *)1);
            if (atom_active(e->args[0]))
                set_active(pay);
        }
        fb[k] = core_block_new();
        fwd_block(Fk, src[k], fb[k]);
        fb[k]->result = src[k]->result;
        tm[k] = tmpl_raw(Fk, src[k]->result, x->type, NULL, NULL, 0, cands, acc, nc, pay, e->args[0],
                         isif ? 0 : e->u.case_.alts[k].con);
    }
    Vec outs = {0};
    CoreMap seen = {0};
    for (int k = 0; k < nb; k++)
        tmpl_escapes(tm[k], &outs, &seen);
    core_map_free(&seen);
    int no = outs.len;
    CVar **ov = (CVar **)vec_freeze(&outs);
    for (int k = 0; k < nb; k++)
        tmpl_finish(tm[k], ov, no, isif ? NULL : e->u.case_.alts[k].payload);
    /* the residuals leave the branch with its value */
    int total = 1;
    int *off = NEWN(int, nb);
    for (int k = 0; k < nb; k++) {
        off[k] = total;
        total += tm[k]->nres;
    }
    CExpr *ne = core_expr(e->kind, x->type, e->loc);
    ne->nargs = 1;
    ne->args = e->args;
    if (!isif) {
        ne->u.case_.nalts = nb;
        ne->u.case_.alts = NEWN(CAlt, nb);
        for (int k = 0; k < nb; k++)
            ne->u.case_.alts[k] = e->u.case_.alts[k];
    }
    CAtom ***res = NEWN(CAtom **, nb);
    if (total > 1) {
        Type **ts = NEWN(Type *, total);
        ts[0] = x->type;
        for (int k = 0; k < nb; k++)
            for (int j = 0; j < tm[k]->nres; j++)
                ts[off[k] + j] = tm[k]->res[j]->type;
        Type *tt = type_tuple(ts, total);
        for (int k = 0; k < nb; k++) {
            CAtom **parts = NEWN(CAtom *, total);
            parts[0] = fb[k]->result;
            for (int q = 0; q < nb; q++)
                for (int j = 0; j < tm[q]->nres; j++)
                    parts[off[q] + j] = q == k ? core_atom_var(tm[k]->res[j]) : dummy_of(fb[k], ts[off[q] + j], 0);
            fb[k]->result = mkprod(fb[k], tt, parts, total);
        }
        ne->type = tt;
    }
    for (int k = 0; k < nb; k++) {
        if (isif)
            *(k ? &ne->u.if_.else_ : &ne->u.if_.then_) = fb[k];
        else
            ne->u.case_.alts[k].body = fb[k];
    }
    if (total > 1) {
        CAtom *t = bind(dst, "br", ne);
        fpush(F, dst, x, core_prim(P_PROJ, x->type, e->loc, &t, 1, 0));
        for (int k = 0; k < nb; k++) {
            res[k] = NEWN(CAtom *, tm[k]->nres > 0 ? tm[k]->nres : 1);
            for (int j = 0; j < tm[k]->nres; j++)
                res[k][j] = prim(dst, P_PROJ, tm[k]->res[j]->type, &t, 1, off[k] + j);
        }
    } else {
        fpush(F, dst, x, ne);
        for (int k = 0; k < nb; k++)
            res[k] = NULL;
    }
    Entry *en = tape(F, EN_BRANCH, x, e);
    en->nbr = nb;
    en->tm = tm;
    en->res = res;
    en->outs = ov;
    en->nouts = no;
    en->accm = tm[0]->accm;
}

static void bwd_branch(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a || !en->nouts)
        return;
    CExpr *e = en->e;
    bool isif = e->kind == CE_IF;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    int no = en->nouts;
    CAtom **accs = NEWN(CAtom *, no);
    Type **ot = NEWN(Type *, no);
    for (int j = 0; j < no; j++) {
        CVar *v = en->outs[j];
        ot[j] = tan_t(v->type);
        accs[j] = en->accm[j] ? materialize(b, adj_get(B, v), core_atom_var(v), v->type) : NULL;
    }
    CExpr *ne = core_expr(e->kind, tuple_t(ot, no), R->loc);
    ne->nargs = 1;
    ne->args = e->args;
    if (!isif) {
        ne->u.case_.nalts = en->nbr;
        ne->u.case_.alts = NEWN(CAlt, en->nbr);
    }
    for (int k = 0; k < en->nbr; k++) {
        Tmpl *tm = en->tm[k];
        CBlock *blk = core_block_new();
        int ns = tm->nres + 1;
        CVar **from = NEWN(CVar *, ns);
        CAtom **to = NEWN(CAtom *, ns);
        int m = 0;
        for (int j = 0; j < tm->nres; j++) {
            from[m] = tm->res[j];
            to[m++] = en->res[k][j];
        }
        if (!isif) {
            CAlt *alt = &e->u.case_.alts[k];
            CAlt *na = &ne->u.case_.alts[k];
            na->con = alt->con;
            if (alt->payload) {
                na->payload = core_var(alt->payload->name, alt->payload->type, R->loc);
                from[m] = alt->payload;
                to[m++] = core_atom_var(na->payload);
            }
            na->body = blk;
        } else {
            *(k ? &ne->u.if_.else_ : &ne->u.if_.then_) = blk;
        }
        blk->result = tmpl_inst(blk, tm, ct, accs, from, to, m);
    }
    CAtom *t = bind(b, "dbr", ne);
    for (int j = 0; j < no; j++) {
        CAtom *v = untuple(b, t, no, j);
        if (en->accm[j])
            adj_set(B, en->outs[j], A(v));
        else
            contrib(B, b, core_atom_var(en->outs[j]), A(v));
    }
}

/* ------------------------------------------------------------ loops */

/* How the values of a residual are saved per iteration: scalars in an
 * array, arrays as the rows of an array of one more rank (their shape
 * must not change from one iteration to the next), other values in an
 * array of them. */
typedef enum { SAVE_NONE, SAVE_SCALAR, SAVE_ARRAY, SAVE_OTHER } SaveKind;

static SaveKind save_kind(Type *t)
{
    switch (kind_of(t)) {
    case TY_UNIT: return SAVE_NONE;
    case TY_INT: case TY_FLOAT: case TY_F32: case TY_BOOL: return SAVE_SCALAR;
    case TY_ARRAY: return SAVE_ARRAY;
    default: return SAVE_OTHER;
    }
}

static Type *save_t(Type *t)
{
    return is_arr(t) ? type_array(elem_of(t), rank_of(t) + 1) : type_array(t, 1);
}

/* An empty buffer (for loops: n slots of scalars and others; arrays are
 * allocated at the first store, when their shape is known). */
static CAtom *buf_init(CBlock *b, Type *t, CAtom *n)
{
    CAtom *d[8];
    switch (save_kind(t)) {
    case SAVE_SCALAR:
        return zeros_dims(b, t, &n, 1);
    case SAVE_ARRAY:
        for (int i = 0; i <= rank_of(t); i++)
            d[i] = ilit(0);
        return zeros_dims(b, elem_of(t), d, rank_of(t) + 1);
    default:
        return fill(b, dummy_of(b, t, 0), &n, 1);
    }
}

/* buf with slot i set to v; for loops (n slots) or while loops (grown by
 * doubling when n is NULL). */
static CAtom *buf_store(CBlock *b, CAtom *buf, CAtom *v, CAtom *i, CAtom *n)
{
    Type *t = aty(v);
    SaveKind k = save_kind(t);
    if (!n) {
        CAtom *cap = length_of(b, buf);
        CAtom *full = cmp2(b, P_GE, i, cap);
        CBlock *th = core_block_new();
        CAtom *more = iadd(th, cap, ilit(16));
        if (k == SAVE_ARRAY) {
            CAtom *d[9], *d2[9];
            int r = dims_of(th, v, d + 1);
            d[0] = ilit(16);
            d2[0] = cap;
            for (int j = 1; j <= r; j++)
                d2[j] = d[j];
            CBlock *t1 = core_block_new(), *t2 = core_block_new();
            t1->result = zeros_dims(t1, elem_of(t), d, r + 1);
            t2->result = P2(t2, P_CONCAT, aty(buf), buf, zeros_dims(t2, elem_of(t), d2, r + 1));
            th->result = bind(th, "grow", if_e(cmp2(th, P_EQ, cap, ilit(0)), aty(buf), t1, t2));
        } else {
            CAtom *ext = k == SAVE_SCALAR ? zeros_dims(th, t, &more, 1) : fill(th, dummy_of(th, t, 0), &more, 1);
            th->result = P2(th, P_CONCAT, aty(buf), buf, ext);
        }
        buf = bind(b, "grow", if_e(full, aty(buf), th, block_of(buf)));
    } else if (k == SAVE_ARRAY) {
        CBlock *th = core_block_new();
        CAtom *d[9];
        int r = dims_of(th, v, d + 1);
        d[0] = n;
        th->result = zeros_dims(th, elem_of(t), d, r + 1);
        buf = bind(b, "buf", if_e(cmp2(b, P_EQ, i, ilit(0)), aty(buf), th, block_of(buf)));
    }
    return update_at(b, buf, v, &i, 1);
}

int ad_reverse_checkpoint = 0;

/* The checkpointing of for loops without their own setting: the driver's
 * (ad_reverse_checkpoint), else $DCC_AD_CHECKPOINT (to run a test suite
 * with checkpoints everywhere). */
static int checkpoint_default(void)
{
    if (ad_reverse_checkpoint)
        return ad_reverse_checkpoint;
    const char *v = getenv("DCC_AD_CHECKPOINT");
    return v && *v ? atoi(v) : 0;
}

/* Rematerialisation: a residual of a loop body that a few cheap scalar
 * operations compute from the counter and loop invariants (x[i] for an
 * outer x, say) is recomputed by the reversed loop instead of saved. */
typedef struct Remat {
    CoreMap defs;  /* body var -> its expression */
    CoreMap memo;  /* var -> (void *)1 yes, 2 no */
    Frame *frame;
    CVar *ivar;
} Remat;

static bool remat_prim(CExpr *e, CVar *v)
{
    if (e->kind != CE_PRIM)
        return false;
    switch (e->u.prim.op) {
    case P_INDEX: case P_PROJ: case P_FIELD: case P_LENGTH: case P_TO_FLOAT: case P_TO_F32:
        return true;
    case P_ADD: case P_SUB: case P_MUL: case P_NEG: case P_MOD: case P_EQ: case P_LT: case P_GT:
    case P_LE: case P_GE: case P_NE: case P_NOT:
        return !is_arr(v->type) && (e->u.prim.op != P_MOD || !core_prim_may_fail(e));
    default:
        return false;
    }
}

static bool remat_ok(Remat *rm, CVar *v, int depth)
{
    if (v == rm->ivar || !core_map_get(&rm->frame->bound, v))
        return true;
    intptr_t m = (intptr_t)core_map_get(&rm->memo, v);
    if (m)
        return m == 1;
    CExpr *e = core_map_get(&rm->defs, v);
    bool ok = e && depth < 16 && remat_prim(e, v);
    for (int i = 0; ok && e && i < e->nargs; i++)
        if (e->args[i]->kind == CA_VAR)
            ok = remat_ok(rm, e->args[i]->u.var, depth + 1);
    core_map_put(&rm->memo, v, (void *)(intptr_t)(ok ? 1 : 2));
    return ok;
}

static void remat_need(Remat *rm, CVar *v, CoreMap *need)
{
    if (v == rm->ivar || !core_map_get(&rm->frame->bound, v) || core_map_get(need, v))
        return;
    core_map_put(need, v, (void *)1);
    CExpr *e = core_map_get(&rm->defs, v);
    for (int i = 0; i < e->nargs; i++)
        if (e->args[i]->kind == CA_VAR)
            remat_need(rm, e->args[i]->u.var, need);
}

/* Loop-invariant code motion, before a for loop is differentiated: the
 * prims at the top of the body that only read values from outside the loop
 * (a row w[0] of a weight matrix, say) are computed once before it. Their
 * adjoints are then carried by the reversed loop as accumulators and
 * pushed into their operands once, instead of at every iteration (an O(1)
 * add per step instead of an indexing and an update). Prims that could
 * fail are computed under `if n > 0`, so a loop that runs no iteration
 * fails as before. Returns the body without them. */
static CBlock *hoist_invariants(Frame *F, CBlock *dst, CExpr *e)
{
    CBlock *body = e->u.loop.body;
    CoreMap inside = {0}, hoisted = {0};
    core_map_put(&inside, e->u.loop.state, (void *)1);
    core_map_put(&inside, e->u.loop.ivar, (void *)1);
    for (int i = 0; i < body->nbinds; i++)
        core_map_put(&inside, body->binds[i].var, (void *)1);
    CBlock *mini = core_block_new(), *rest = core_block_new();
    bool may_fail = false;
    for (int i = 0; i < body->nbinds; i++) {
        CBind *bd = &body->binds[i];
        CExpr *be = bd->e;
        bool inv = be->kind == CE_PRIM && !(core_prims[be->u.prim.op].flags & PRIM_EFFECT);
        for (int k = 0; inv && k < be->nargs; k++) {
            CAtom *a = be->args[k];
            if (a->kind == CA_VAR && core_map_get(&inside, a->u.var) && !core_map_get(&hoisted, a->u.var))
                inv = false;
        }
        if (inv) {
            push_bind(mini, bd->var, be);
            core_map_put(&hoisted, bd->var, (void *)1);
            may_fail |= core_prim_may_fail(be);
        } else {
            push_bind(rest, bd->var, be);
        }
    }
    core_map_free(&inside);
    core_map_free(&hoisted);
    if (!mini->nbinds)
        return body;
    rest->result = body->result;
    CBlock *tmp = core_block_new();
    CAtom *n = e->args[1];
    if (!may_fail || (n->kind == CA_INT && n->u.ival > 0)) {
        for (int i = 0; i < mini->nbinds; i++)
            push_bind(tmp, mini->binds[i].var, mini->binds[i].e);
    } else {
        /* h = if n > 0 then (the prims; their values) else dummies */
        int m = mini->nbinds;
        CAtom **vs = NEWN(CAtom *, m);
        for (int i = 0; i < m; i++)
            vs[i] = core_atom_var(mini->binds[i].var);
        mini->result = tuple_of(mini, vs, m);
        CBlock *th = core_copy_block(mini, NULL, NULL, 0);
        CBlock *el = core_block_new();
        Type *ht = core_atom_type(th->result);
        CAtom **ds = NEWN(CAtom *, m);
        for (int i = 0; i < m; i++)
            ds[i] = dummy_of(el, mini->binds[i].var->type, 0);
        el->result = tuple_of(el, ds, m);
        CAtom *h = bind(tmp, "inv", if_e(cmp2(tmp, P_GT, n, ilit(0)), ht, th, el));
        for (int i = 0; i < m; i++)
            push_bind(tmp, mini->binds[i].var,
                      m == 1 ? atom_e(h) : core_prim(P_PROJ, mini->binds[i].var->type, R->loc, &h, 1, i));
    }
    fwd_block(F, tmp, dst);
    return rest;
}

static void fwd_loop(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    CVar *s = e->u.loop.state;
    CBlock *body = e->u.loop.body;
    bool isfor = e->u.loop.kind == LOOP_FOR;
    if (!has_tan(s->type) || !(atom_active(e->args[0]) || uses_active_block(body))) {
        fpush(F, dst, x, e);
        return;
    }
    if (isfor)
        body = hoist_invariants(F, dst, e);
    CVar **cands;
    bool *acc;
    int nc;
    candidates(NULL, body, true, &cands, &acc, &nc);
    set_active(s);
    Frame *FB = NEW(Frame);
    FB->recompute = F->recompute;
    FB->norec = F->norec;
    core_map_put(&FB->bound, s, (void *)1);
    if (isfor)
        core_map_put(&FB->bound, e->u.loop.ivar, (void *)1);
    CBlock *nb = core_block_new();
    fwd_block(FB, body, nb);
    CAtom *rnew = body->result;
    CVar **ps = NEWN(CVar *, 1);
    ps[0] = s;
    Tmpl *tm = tmpl_raw(FB, rnew, s->type, ps, NULL, 1, cands, acc, nc, NULL, NULL, 0);
    Vec outs = {0};
    CoreMap seen = {0};
    tmpl_escapes(tm, &outs, &seen);
    core_map_free(&seen);
    int no = outs.len;
    CVar **ov = (CVar **)vec_freeze(&outs);
    tmpl_finish(tm, ov, no, NULL);
    /* residuals to save: all but the counter, units, and the cheap ones
     * that only depend on the counter and loop invariants (recomputed) */
    CoreMap need = {0};
    Remat rm = {.defs = {0}, .frame = FB, .ivar = isfor ? e->u.loop.ivar : NULL};
    for (int j = 0; j < nb->nbinds; j++)
        core_map_put(&rm.defs, nb->binds[j].var, nb->binds[j].e);
    int nr = 0;
    CVar **rv_ = NEWN(CVar *, tm->nres > 0 ? tm->nres : 1);
    for (int j = 0; j < tm->nres; j++) {
        CVar *r = tm->res[j];
        if (r == e->u.loop.ivar || save_kind(r->type) == SAVE_NONE)
            continue;
        if (remat_ok(&rm, r, 0))
            remat_need(&rm, r, &need);
        else
            rv_[nr++] = r;
    }
    CBlock *remat = core_block_new();
    for (int j = 0; j < nb->nbinds; j++)
        if (core_map_get(&need, nb->binds[j].var))
            push_bind(remat, nb->binds[j].var, nb->binds[j].e);
    remat->result = core_atom_unit();
    core_map_free(&need);
    core_map_free(&rm.defs);
    core_map_free(&rm.memo);
    Entry *en;
    CAtom *count;
    CAtom **bufs = NEWN(CAtom *, nr > 0 ? nr : 1);
    int ck = e->u.loop.checkpoint ? e->u.loop.checkpoint : checkpoint_default();
    if (isfor && nr > 0 && ck != 0) {
        /* checkpointed: save the state at the start of each segment only */
        CAtom *n0 = e->args[1]->kind == CA_INT ? e->args[1] : P2(dst, P_MAX, type_int(), e->args[1], ilit(0));
        CAtom *K;
        if (ck > 0) {
            K = ilit(ck);
        } else { /* about sqrt n segments of about sqrt n iterations */
            CAtom *fn = P1(dst, P_TO_FLOAT, type_float(), n0);
            CAtom *sq = P1(dst, P_CEIL, type_float(), P1(dst, P_SQRT, type_float(), fn));
            K = P2(dst, P_MAX, type_int(), P1(dst, P_TO_INT, type_int(), sq), ilit(1));
        }
        CAtom *seg = P2(dst, P_DIV, type_int(), iadd(dst, n0, isub(dst, K, ilit(1))), K);
        seg = P2(dst, P_MAX, type_int(), seg, ilit(1));
        CBlock *ckb = core_block_new();
        for (int j = 0; j < nb->nbinds; j++)
            push_bind(ckb, nb->binds[j].var, nb->binds[j].e);
        CAtom **rr = NEWN(CAtom *, nr + 1);
        rr[0] = rnew;
        for (int j = 0; j < nr; j++)
            rr[1 + j] = core_atom_var(rv_[j]);
        ckb->result = tuple_of(ckb, rr, nr + 1);
        Type *ts[2] = {s->type, save_t(s->type)};
        Type *st = type_tuple(ts, 2);
        CAtom *init[2] = {e->args[0], buf_init(dst, s->type, K)};
        CAtom *init_t = mkprod(dst, st, init, 2);
        CVar *sv = core_var("st", st, e->loc);
        CAtom *sa = core_atom_var(sv);
        CBlock *NB = core_block_new();
        push_bind(NB, s, core_prim(P_PROJ, s->type, e->loc, &sa, 1, 0));
        CAtom *cb = prim(NB, P_PROJ, ts[1], &sa, 1, 1);
        CAtom *iv = core_atom_var(e->u.loop.ivar);
        CAtom *q = P2(NB, P_DIV, type_int(), iv, seg);
        CAtom *at = cmp2(NB, P_EQ, P2(NB, P_MOD, type_int(), iv, seg), ilit(0));
        CBlock *th = core_block_new();
        th->result = buf_store(th, cb, core_atom_var(s), q, K);
        CAtom *cb1 = bind(NB, "ck", if_e(at, ts[1], th, block_of(cb)));
        for (int j = 0; j < nb->nbinds; j++)
            push_bind(NB, nb->binds[j].var, nb->binds[j].e);
        CAtom *next[2] = {rnew, cb1};
        NB->result = mkprod(NB, st, next, 2);
        CExpr *ne = core_expr(CE_LOOP, st, e->loc);
        ne->u.loop.state = sv;
        ne->u.loop.kind = LOOP_FOR;
        ne->u.loop.ivar = e->u.loop.ivar;
        ne->u.loop.checkpoint = e->u.loop.checkpoint;
        ne->u.loop.body = NB;
        ne->nargs = 2;
        ne->args = NEWN(CAtom *, 2);
        ne->args[0] = init_t;
        ne->args[1] = e->args[1];
        CAtom *stf = bind(dst, "loop", ne);
        fpush(F, dst, x, core_prim(P_PROJ, x->type, e->loc, &stf, 1, 0));
        en = tape(F, EN_LOOP, x, e);
        en->ck_k = K;
        en->ck_seg = seg;
        en->ck_buf = prim(dst, P_PROJ, ts[1], &stf, 1, 1);
        en->ck_body = ckb;
        en->ck_state = s;
        en->body = tm;
        en->count = e->args[1];
        en->bufs = bufs;
        en->nargs = nr;
        en->outs = ov;
        en->nouts = no;
        en->init = e->args[0];
        en->ivar = e->u.loop.ivar;
        en->saved = rv_;
        en->remat = remat;
        return;
    }
    if (isfor && nr == 0) {
        CExpr *ne = core_expr(CE_LOOP, e->type, e->loc);
        *ne = *e;
        nb->result = rnew;
        ne->u.loop.body = nb;
        fpush(F, dst, x, ne);
        count = e->args[1];
    } else {
        CAtom *n0 = NULL;
        if (isfor)
            n0 = e->args[1]->kind == CA_INT ? e->args[1] : P2(dst, P_MAX, type_int(), e->args[1], ilit(0));
        int hdr = isfor ? 1 : 2;
        int tot = hdr + nr;
        Type **ts = NEWN(Type *, tot);
        CAtom **init = NEWN(CAtom *, tot);
        ts[0] = s->type;
        init[0] = e->args[0];
        if (!isfor) {
            ts[1] = type_int();
            init[1] = ilit(0);
        }
        for (int j = 0; j < nr; j++) {
            ts[hdr + j] = save_t(rv_[j]->type);
            init[hdr + j] = buf_init(dst, rv_[j]->type, isfor ? n0 : ilit(0));
        }
        Type *st = type_tuple(ts, tot);
        CAtom *init_t = mkprod(dst, st, init, tot);
        CVar *sv = core_var("st", st, e->loc);
        CAtom *sa = core_atom_var(sv);
        CBlock *NB = core_block_new();
        push_bind(NB, s, core_prim(P_PROJ, s->type, e->loc, &sa, 1, 0));
        CAtom *k = isfor ? core_atom_var(e->u.loop.ivar) : prim(NB, P_PROJ, type_int(), &sa, 1, 1);
        CAtom **bv = NEWN(CAtom *, nr > 0 ? nr : 1);
        for (int j = 0; j < nr; j++)
            bv[j] = prim(NB, P_PROJ, ts[hdr + j], &sa, 1, hdr + j);
        for (int j = 0; j < nb->nbinds; j++)
            push_bind(NB, nb->binds[j].var, nb->binds[j].e);
        CAtom **next = NEWN(CAtom *, tot);
        next[0] = rnew;
        if (!isfor)
            next[1] = iadd(NB, k, ilit(1));
        for (int j = 0; j < nr; j++)
            next[hdr + j] = buf_store(NB, bv[j], core_atom_var(rv_[j]), k, n0);
        NB->result = mkprod(NB, st, next, tot);
        CExpr *ne = core_expr(CE_LOOP, st, e->loc);
        ne->u.loop.state = sv;
        ne->u.loop.kind = e->u.loop.kind;
        ne->u.loop.ivar = e->u.loop.ivar;
        ne->u.loop.checkpoint = e->u.loop.checkpoint;
        ne->u.loop.body = NB;
        ne->nargs = isfor ? 2 : 1;
        ne->args = NEWN(CAtom *, 2);
        ne->args[0] = init_t;
        if (isfor)
            ne->args[1] = e->args[1];
        else {
            CBlock *cb = core_block_new();
            CAtom *s2 = prim(cb, P_PROJ, s->type, &sa, 1, 0);
            cb->result = splice(cb, e->u.loop.cond, &s, &s2, 1);
            ne->u.loop.cond = cb;
        }
        CAtom *stf = bind(dst, "loop", ne);
        fpush(F, dst, x, core_prim(P_PROJ, x->type, e->loc, &stf, 1, 0));
        count = isfor ? e->args[1] : prim(dst, P_PROJ, type_int(), &stf, 1, 1);
        for (int j = 0; j < nr; j++)
            bufs[j] = prim(dst, P_PROJ, ts[hdr + j], &stf, 1, hdr + j);
    }
    en = tape(F, EN_LOOP, x, e);
    en->body = tm;
    en->count = count;
    en->bufs = bufs;
    en->args = NULL;
    en->nargs = nr;
    en->outs = ov;
    en->nouts = no;
    en->init = e->args[0];
    en->ivar = isfor ? e->u.loop.ivar : NULL;
    en->saved = rv_;
    en->remat = remat;
}

/* The reversed loop: from the last iteration to the first, the body's
 * template on the saved residuals, carrying the state's cotangent and the
 * adjoints of the variables the body reads. */
/* The reversed iterations off + count - 1 down to off of a loop entry,
 * from the reversed state st (the state's cotangent, then the carried
 * adjoints); the residuals of iteration off + t are bufs[.][t]. Returns
 * the reversed state after them. */
static CAtom *rev_steps(CBlock *b, Entry *en, CAtom *count, CAtom *off, CAtom *st, CAtom **bufs)
{
    Tmpl *tm = en->body;
    int no = en->nouts, tot = 1 + no, nr = en->nargs;
    CVar **rv_ = en->saved;
    ForLoop L = for_begin(count, st);
    CBlock *lb = L.body;
    CAtom *c = untuple(lb, L.s, tot, 0);
    CAtom **accs = NEWN(CAtom *, no > 0 ? no : 1);
    for (int j = 0; j < no; j++)
        accs[j] = untuple(lb, L.s, tot, 1 + j);
    CAtom *t = isub(lb, isub(lb, count, ilit(1)), L.i);
    CAtom *it = off ? iadd(lb, off, t) : t;
    CVar **from = NEWN(CVar *, tm->nres + 1);
    CAtom **to = NEWN(CAtom *, tm->nres + 1);
    int m = 0;
    if (en->remat->nbinds) {
        CBlock *rc = en->ivar ? core_copy_block(en->remat, &en->ivar, &it, 1)
                              : core_copy_block(en->remat, NULL, NULL, 0);
        for (int j = 0; j < rc->nbinds; j++) {
            push_bind(lb, rc->binds[j].var, rc->binds[j].e);
            for (int q = 0; q < tm->nres; q++)
                if (tm->res[q] == en->remat->binds[j].var) {
                    from[m] = tm->res[q];
                    to[m++] = core_atom_var(rc->binds[j].var);
                }
        }
    }
    for (int j = 0; j < nr; j++) {
        from[m] = rv_[j];
        to[m++] = index1(lb, bufs[j], t);
    }
    for (int j = 0; j < tm->nres; j++) {
        if (tm->res[j] == en->ivar) {
            from[m] = en->ivar;
            to[m++] = it;
        } else if (save_kind(tm->res[j]->type) == SAVE_NONE) {
            from[m] = tm->res[j];
            to[m++] = core_atom_unit();
        }
    }
    CAtom *r = tmpl_inst(lb, tm, c, accs, from, to, m);
    bool all_acc = true;
    for (int j = 0; j < no; j++)
        all_acc &= tm->accm[j];
    if (!all_acc) { /* adjoints not passed in: add this iteration's */
        CAtom **nx = NEWN(CAtom *, tot);
        nx[0] = untuple(lb, r, tot, 0);
        for (int j = 0; j < no; j++) {
            CAtom *v = untuple(lb, r, tot, 1 + j);
            nx[1 + j] = tm->accm[j] ? v : add_of(lb, accs[j], v);
        }
        r = tuple_of(lb, nx, tot);
    }
    return for_end(b, &L, r);
}

/* Checkpointing (Griewank, "Achieving logarithmic growth of temporal and
 * spatial complexity in reverse automatic differentiation", 1992, in its
 * simplest form): the forward loop saved the state at the start of each
 * of K segments of seg iterations; the reversed loop takes the segments
 * from the last, recomputes one segment's iterations from its saved state
 * while saving their residuals, and reverses them. Memory: K states plus
 * one segment's residuals; time: one more forward pass. */
static CAtom *rev_segments(CBlock *b, Entry *en, CAtom *st)
{
    int nr = en->nargs;
    CVar **rv_ = en->saved;
    ForLoop OL = for_begin(en->ck_k, st);
    CBlock *ob = OL.body;
    CAtom *g = isub(ob, isub(ob, en->ck_k, ilit(1)), OL.i);
    CAtom *lo = P2(ob, P_MUL, type_int(), g, en->ck_seg);
    CAtom *len = P2(ob, P_MIN, type_int(), en->ck_seg, isub(ob, en->count, lo));
    CAtom *len0 = P2(ob, P_MAX, type_int(), len, ilit(0));
    CAtom *s0 = index1(ob, en->ck_buf, g);
    /* the segment again, saving its residuals */
    int tot = 1 + nr;
    CAtom **init = NEWN(CAtom *, tot);
    init[0] = s0;
    for (int j = 0; j < nr; j++)
        init[1 + j] = buf_init(ob, rv_[j]->type, len0);
    ForLoop FL = for_begin(len, tuple_of(ob, init, tot));
    CBlock *fb = FL.body;
    CAtom *sv = untuple(fb, FL.s, tot, 0);
    CAtom *iv = iadd(fb, lo, FL.i);
    CVar *from[2] = {en->ck_state, en->ivar};
    CAtom *to[2] = {sv, iv};
    CAtom *r = splice(fb, en->ck_body, from, to, 2);
    CAtom **next = NEWN(CAtom *, tot);
    next[0] = proj(fb, r, 0);
    for (int j = 0; j < nr; j++) {
        CAtom *v = proj(fb, r, 1 + j);
        next[1 + j] = buf_store(fb, untuple(fb, FL.s, tot, 1 + j), v, FL.i, len0);
    }
    CAtom *seg = for_end(ob, &FL, tuple_of(fb, next, tot));
    CAtom **bufs = NEWN(CAtom *, nr > 0 ? nr : 1);
    for (int j = 0; j < nr; j++)
        bufs[j] = untuple(ob, seg, tot, 1 + j);
    return for_end(b, &OL, rev_steps(ob, en, len, lo, OL.s, bufs));
}

/* The reversed loop: from the last iteration to the first, the body's
 * template on the saved residuals, carrying the state's cotangent and the
 * adjoints of the variables the body reads. */
static void bwd_loop(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    int no = en->nouts, tot = 1 + no;
    CAtom **init = NEWN(CAtom *, tot);
    init[0] = materialize(b, a, core_atom_var(en->y), en->y->type);
    for (int j = 0; j < no; j++)
        init[1 + j] = materialize(b, adj_get(B, en->outs[j]), core_atom_var(en->outs[j]), en->outs[j]->type);
    CAtom *st = tuple_of(b, init, tot);
    CAtom *fin = en->ck_body ? rev_segments(b, en, st) : rev_steps(b, en, en->count, NULL, st, en->bufs);
    for (int j = 0; j < no; j++)
        adj_set(B, en->outs[j], A(untuple(b, fin, tot, 1 + j)));
    contrib(B, b, en->init, A(untuple(b, fin, tot, 0)));
}

/* ------------------------------------------------------------ SOACs */

/* The prim a two-parameter lambda applies to its parameters, if that is
 * all it does. */
static Prim lambda_binop(CLambda *l)
{
    if (l->nparams != 2 || l->body->nbinds != 1)
        return P__COUNT;
    CBind *bd = &l->body->binds[0];
    CExpr *e = bd->e;
    if (e->kind != CE_PRIM || e->nargs != 2 || l->body->result->kind != CA_VAR ||
        l->body->result->u.var != bd->var)
        return P__COUNT;
    CAtom *a = e->args[0], *b = e->args[1];
    if (a->kind != CA_VAR || b->kind != CA_VAR)
        return P__COUNT;
    bool same = a->u.var == l->params[0] && b->u.var == l->params[1];
    bool swap = a->u.var == l->params[1] && b->u.var == l->params[0];
    if (same || (swap && (e->u.prim.op == P_ADD || e->u.prim.op == P_MUL)))
        return e->u.prim.op;
    return P__COUNT;
}

/* fold f acc xs (and reduce) as a loop over the elements. */
static void fold_to_loop(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    CLambda *l = e->u.soac.fn;
    CBlock *tmp = core_block_new();
    CAtom *xs = e->args[1];
    ForLoop L = for_begin(length_of(tmp, xs), e->args[0]);
    CAtom *to[2] = {L.s, index1(L.body, xs, L.i)};
    CAtom *r = splice(L.body, l->body, l->params, to, 2);
    CAtom *lp = for_end(tmp, &L, r);
    push_bind(tmp, x, atom_e(lp));
    fwd_block(F, tmp, dst);
}

/* scan f ne xs as a loop that writes each partial result. */
static void scan_to_loop(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    CLambda *l = e->u.soac.fn;
    CBlock *tmp = core_block_new();
    CAtom *ne = e->args[0], *xs = e->args[1];
    CAtom *n = length_of(tmp, xs);
    CAtom *out0 = P2(tmp, P_REPLICATE, x->type, n, ne);
    CAtom *init[2] = {ne, out0};
    ForLoop L = for_begin(n, tuple_of(tmp, init, 2));
    CAtom *acc = proj(L.body, L.s, 0), *o = proj(L.body, L.s, 1);
    CAtom *to[2] = {acc, index1(L.body, xs, L.i)};
    CAtom *r = splice(L.body, l->body, l->params, to, 2);
    CAtom *next[2] = {r, update_at(L.body, o, r, &L.i, 1)};
    CAtom *lp = for_end(tmp, &L, tuple_of(L.body, next, 2));
    push_bind(tmp, x, core_prim(P_PROJ, x->type, e->loc, &lp, 1, 1));
    fwd_block(F, tmp, dst);
}

static void fwd_soac(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    if (!has_tan(x->type) || !uses_active_expr(e)) {
        fpush(F, dst, x, e);
        return;
    }
    Prim op = lambda_binop(e->u.soac.fn);
    switch (e->u.soac.kind) {
    case SOAC_MAP:
        fpush(F, dst, x, e);
        tape(F, EN_MAP, x, e);
        return;
    case SOAC_REDUCE:
        if (op == P_ADD && is_fl(elem_of(aty(e->args[1])))) {
            fpush(F, dst, x, e);
            tape(F, EN_REDUCE_ADD, x, e);
            return;
        }
        fold_to_loop(F, dst, x, e);
        return;
    case SOAC_FOLD:
        fold_to_loop(F, dst, x, e);
        return;
    case SOAC_SCAN:
        if (op == P_ADD && rank_of(aty(e->args[1])) == 1 && is_fl(aty(e->args[0]))) {
            fpush(F, dst, x, e);
            tape(F, EN_SCAN_ADD, x, e);
            return;
        }
        scan_to_loop(F, dst, x, e);
        return;
    case SOAC_FILTER:
        fpush(F, dst, x, e);
        rv_error(e->loc, "reverse mode through 'filter' is not implemented yet");
        return;
    }
}

/* Dead code in a pullback that recomputes its primal: an unused binding
 * without effects goes, also one that could fail (an index, a map with
 * one) since it already succeeded once in the primal. Calls stay. */
static bool dce_pure_block(CBlock *b);

static bool dce_pure(CExpr *e)
{
    switch (e->kind) {
    case CE_ATOM: case CE_LAMBDA:
        return true;
    case CE_PRIM:
        return !(core_prims[e->u.prim.op].flags & PRIM_EFFECT);
    case CE_IF:
        return dce_pure_block(e->u.if_.then_) && dce_pure_block(e->u.if_.else_);
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            if (!dce_pure_block(e->u.case_.alts[i].body))
                return false;
        return true;
    case CE_LOOP:
        return (!e->u.loop.cond || dce_pure_block(e->u.loop.cond)) && dce_pure_block(e->u.loop.body);
    case CE_SOAC:
        return dce_pure_block(e->u.soac.fn->body);
    default:
        return false;
    }
}

static bool dce_pure_block(CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++)
        if (!dce_pure(b->binds[i].e))
            return false;
    return true;
}

static void count_use(CAtom *a, void *ctx)
{
    if (a->kind == CA_VAR)
        core_map_put(ctx, a->u.var, (void *)((intptr_t)core_map_get(ctx, a->u.var) + 1));
}

static void dce_recomputed(CBlock *b)
{
    for (bool changed = true; changed;) {
        changed = false;
        CoreMap uses = {0};
        walk_block(b, count_use, NULL, &uses);
        int k = 0;
        for (int i = 0; i < b->nbinds; i++) {
            CBind *bd = &b->binds[i];
            if (!core_map_get(&uses, bd->var) && dce_pure(bd->e)) {
                changed = true;
                continue;
            }
            b->binds[k++] = *bd;
        }
        b->nbinds = k;
        core_map_free(&uses);
    }
}

/* The frame of a map's pullback: a fresh copy of f whose parameters are
 * active where the arrays are, its forward sweep (recomputed) emitted into
 * body. */
static CLambda *map_frame(Bwd *B, CExpr *e, CBlock *body, Frame **out)
{
    CLambda *l = core_copy_lambda(e->u.soac.fn, NULL, NULL, 0);
    Frame *F2 = NEW(Frame);
    F2->recompute = true;
    F2->norec = B->F->norec;
    for (int k = 0; k < e->nargs; k++) {
        core_map_put(&F2->bound, l->params[k], (void *)1);
        if (atom_active(e->args[k]))
            set_active(l->params[k]);
    }
    fwd_block(F2, l->body, body);
    *out = F2;
    return l;
}

/* map f xs1 .. xsn: for each active xs_k, a map of the pullback lambda
 * (which recomputes f's primal at the element, then runs its backward
 * sweep) over the xs and ȳ. Captured variables: the adjoints of floats are
 * mapped and summed; those of arrays and structures are accumulated by one
 * loop over the elements into the incoming adjoint, in place (a gather
 * a[idx[i]] in f costs O(1) per element, not an array per element). */
static void bwd_map(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    CExpr *e = en->e;
    int n = e->nargs;
    CAtom *cty = materialize(b, a, core_atom_var(en->y), en->y->type);
    Frame *F2;
    CBlock *pb = core_block_new();
    CLambda *l = map_frame(B, e, pb, &F2);
    CVar *c = core_var("ct", row_t(aty(cty)), R->loc);
    Bwd *B2 = NEW(Bwd);
    B2->F = F2;
    bwd_run(B2, pb, l->body->result, core_atom_var(c));
    /* outputs of the mapped pullback: the active arrays' elements, then
     * captured floats; the other captured variables go to the loop */
    Vec outs = {0}, tgts = {0}, looped = {0};
    for (int k = 0; k < n; k++)
        if (atom_active(e->args[k])) {
            CAtom *g = materialize(pb, adj_get(B2, l->params[k]), core_atom_var(l->params[k]), l->params[k]->type);
            vec_push(&outs, g);
            vec_push(&tgts, e->args[k]);
        }
    int narr = outs.len;
    for (int i = 0; i < B2->keys.len; i++) {
        CVar *v = B2->keys.data[i];
        if (core_map_get(&F2->bound, v))
            continue;
        if (!is_fl(v->type)) {
            vec_push(&looped, v);
            continue;
        }
        vec_push(&outs, materialize(pb, adj_get(B2, v), core_atom_var(v), v->type));
        vec_push(&tgts, core_atom_var(v));
    }
    int no = outs.len;
    CAtom **arrs = NEWN(CAtom *, n + 1);
    for (int k = 0; k < n; k++)
        arrs[k] = e->args[k];
    arrs[n] = cty;
    if (no) {
        pb->result = tuple_of(pb, (CAtom **)outs.data, no);
        dce_recomputed(pb);
        CVar **ps = NEWN(CVar *, n + 1);
        for (int k = 0; k < n; k++)
            ps[k] = l->params[k];
        ps[n] = c;
        CLambda *pl = lambda_n(ps, n + 1, pb);
        /* several outputs of a costly body: one map to an array of tuples,
         * then one cheap map per output (instead of recomputing the body
         * per output) */
        CAtom *all = NULL;
        if (no > 1 && block_size(pb) > 12)
            all = soac(b, SOAC_MAP, type_array(aty(pb->result), 1), pl, arrs, n + 1);
        for (int j = 0; j < no; j++) {
            CAtom *tg = tgts.data[j];
            CAtom *per;
            Type *et;
            if (all) {
                CVar *t = core_var("t", aty(pb->result), R->loc);
                CBlock *tb = core_block_new();
                tb->result = proj(tb, core_atom_var(t), j);
                et = aty(tb->result);
                Type *rt = j < narr ? tan_t(aty(tg)) : type_array(et, 1);
                per = soac(b, SOAC_MAP, rt, lambda_n(&t, 1, tb), &all, 1);
            } else {
                CLambda *cl = core_copy_lambda(pl, NULL, NULL, 0);
                cl->body->result = untuple(cl->body, cl->body->result, no, j);
                et = aty(cl->body->result);
                cl->type = lambda_n(cl->params, n + 1, cl->body)->type;
                Type *rt = j < narr ? tan_t(aty(tg)) : type_array(et, 1);
                per = soac(b, SOAC_MAP, rt, cl, arrs, n + 1);
            }
            contrib(B, b, tg, A(j < narr ? per : sum_all(b, per)));
        }
    }
    int nl = looped.len;
    if (nl) {
        /* for i < length xs: the element's pullback, the looped adjoints
         * passed in and out */
        CAtom **init = NEWN(CAtom *, nl);
        for (int j = 0; j < nl; j++) {
            CVar *v = looped.data[j];
            init[j] = materialize(b, adj_get(B, v), core_atom_var(v), v->type);
        }
        ForLoop L = for_begin(length_of(b, e->args[0]), tuple_of(b, init, nl));
        CBlock *lb = L.body;
        CBlock *body = core_block_new();
        Frame *F3;
        CLambda *l3 = core_copy_lambda(e->u.soac.fn, NULL, NULL, 0);
        for (int k = 0; k < n; k++)
            push_bind(lb, l3->params[k], atom_e(index1(lb, arrs[k], L.i)));
        CAtom *ci = index1(lb, cty, L.i);
        F3 = NEW(Frame);
        F3->recompute = true;
        F3->norec = B->F->norec;
        for (int k = 0; k < n; k++) {
            core_map_put(&F3->bound, l3->params[k], (void *)1);
            if (atom_active(e->args[k]))
                set_active(l3->params[k]);
        }
        fwd_block(F3, l3->body, body);
        Bwd *B3 = NEW(Bwd);
        B3->F = F3;
        for (int j = 0; j < nl; j++)
            adj_set(B3, looped.data[j], A(untuple(lb, L.s, nl, j)));
        bwd_run(B3, body, l3->body->result, ci);
        CAtom **next = NEWN(CAtom *, nl);
        for (int j = 0; j < nl; j++) {
            CVar *v = looped.data[j];
            next[j] = materialize(body, adj_get(B3, v), core_atom_var(v), v->type);
        }
        body->result = tuple_of(body, next, nl);
        dce_recomputed(body);
        for (int i = 0; i < body->nbinds; i++)
            push_bind(lb, body->binds[i].var, body->binds[i].e);
        CAtom *fin = for_end(b, &L, body->result);
        for (int j = 0; j < nl; j++)
            adj_set(B, looped.data[j], A(untuple(b, fin, nl, j)));
    }
    vec_free(&outs);
    vec_free(&tgts);
    vec_free(&looped);
}

/* reduce (+) ne xs: every element and ne get ȳ. */
static void bwd_reduce_add(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    CExpr *e = en->e;
    CAtom *xs = e->args[1];
    contrib(B, b, e->args[0], A(ct));
    if (atom_active(xs)) {
        CAtom *n = length_of(b, xs);
        contrib(B, b, xs, A(is_arr(aty(ct)) ? P2(b, P_REPLICATE, tan_t(aty(xs)), n, ct) : fill(b, ct, &n, 1)));
    }
}

/* scan (+) ne xs: x̄_j = sum over i >= j of ȳ_i (a reversed scan), ne gets
 * the sum of ȳ. */
static void bwd_scan_add(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    CExpr *e = en->e;
    contrib(B, b, e->args[0], A(sum_all(b, ct)));
    if (atom_active(e->args[1])) {
        CAtom *r = scan_prim(b, P_ADD, flit(aty(ct), 0), un(b, P_REVERSE, ct));
        contrib(B, b, e->args[1], A(un(b, P_REVERSE, r)));
    }
}

/* ------------------------------------------------------------ primitive rules */

/* ct summed down to the shape of the operand x it came from through
 * broadcasting: all of it for a scalar x, the leading axes for an x of
 * lower rank. (Broadcasting along axes of length 1 of an operand of the
 * same rank is not summed: a documented limitation.) */
static CAtom *unbroadcast(CBlock *b, CAtom *ct, CAtom *x)
{
    Type *xt = aty(x);
    if (!is_arr(xt))
        return sum_all(b, ct);
    while (rank_of(aty(ct)) > rank_of(xt))
        ct = P1(b, P_SUM_AXIS0, row_t(aty(ct)), ct);
    return ct;
}

static void give(Bwd *B, CBlock *b, CAtom *x, CAtom *g) { contrib(B, b, x, A(unbroadcast(b, g, x))); }

/* x̄[i..] += ct, in place when x̄ is not shared. */
static void index_add(Bwd *B, CBlock *b, CAtom *arr, CAtom **idx, int k, CAtom *ct)
{
    if (!atom_active(arr))
        return;
    CVar *v = arr->u.var;
    Adj *cur = adj_get(B, v);
    CAtom *base, *nv;
    if (!cur) {
        base = zeros_of(b, arr);
        nv = ct;
    } else {
        base = materialize(b, cur, arr, v->type);
        nv = add_of(b, index_at(b, base, idx, k), ct);
    }
    adj_set(B, v, A(update_at(b, base, nv, idx, k)));
}

/* x̄[slice] += ct: loops over the ranges of the slice, adding element (or
 * trailing sub-array) by element in place. */
static CAtom *slice_acc(CBlock *b, CAtom *acc, CExpr *e, CAtom *ct, int j, CAtom **I, CAtom **T, int nt)
{
    int npos = (e->nargs - 1) / 2;
    if (j == npos) {
        CAtom *c = nt ? index_at(b, ct, T, nt) : ct;
        CAtom *old = index_at(b, acc, I, npos);
        return update_at(b, acc, add_of(b, old, c), I, npos);
    }
    CAtom *lo = e->args[1 + 2 * j];
    if (!(e->u.prim.imm & (1ll << j))) {
        I[j] = lo;
        return slice_acc(b, acc, e, ct, j + 1, I, T, nt);
    }
    CAtom *hi;
    if (e->u.prim.imm & (1ll << (16 + j))) {
        CAtom *d[8];
        dims_of(b, e->args[0], d);
        hi = d[j];
    } else {
        hi = e->args[2 + 2 * j];
    }
    ForLoop L = for_begin(isub(b, hi, lo), acc);
    I[j] = iadd(L.body, lo, L.i);
    T[nt] = L.i;
    CAtom *r = slice_acc(L.body, L.s, e, ct, j + 1, I, T, nt + 1);
    return for_end(b, &L, r);
}

/* A map over iota n: fn(body, i) gives the element. */
typedef CAtom *(*IotaFn)(CBlock *b, CAtom *i, void *ctx);

static CAtom *map_iota(CBlock *b, CAtom *n, Type *elem, IotaFn fn, void *ctx)
{
    CAtom *is = P1(b, P_IOTA, type_array(type_int(), 1), n);
    CVar *i = core_var("i", type_int(), R->loc);
    CBlock *body = core_block_new();
    body->result = fn(body, core_atom_var(i), ctx);
    return soac(b, SOAC_MAP, arr_t(elem_of(elem), rank_of(elem) + 1), lambda_n(&i, 1, body), &is, 1);
}

/* Rows (or columns) of m except row i: concat (take i m) (drop (i+1) m). */
static CAtom *drop_row(CBlock *b, CAtom *m, CAtom *i)
{
    CAtom *t = P2(b, P_TAKE, aty(m), i, m);
    CAtom *d = P2(b, P_DROP, aty(m), iadd(b, i, ilit(1)), m);
    return P2(b, P_CONCAT, aty(m), t, d);
}

typedef struct CofCtx {
    CAtom *a, *i, *rows;
} CofCtx;

/* (-1)^(i+j) det (a without row i and column j), by the transposed minor. */
static CAtom *cof_elem(CBlock *b, CAtom *j, void *vctx)
{
    CofCtx *c = vctx;
    CAtom *t = transpose(b, c->rows);
    CAtom *m = drop_row(b, t, j);
    CAtom *d = P1(b, P_DET, type_float(), m);
    CAtom *par = P2(b, P_MOD, type_int(), iadd(b, c->i, j), ilit(2));
    CAtom *sg = sel(b, cmp2(b, P_EQ, par, ilit(0)), flit(type_float(), 1), flit(type_float(), -1));
    return mul2(b, d, sg);
}

static CAtom *cof_row(CBlock *b, CAtom *i, void *vctx)
{
    CofCtx c = *(CofCtx *)vctx;
    c.i = i;
    c.rows = drop_row(b, c.a, i);
    return map_iota(b, length_of(b, c.a), type_float(), cof_elem, &c);
}

typedef struct MaskCtx {
    CAtom *n, *i;
} MaskCtx;

static CAtom *mask_elem(CBlock *b, CAtom *j, void *vctx)
{
    MaskCtx *c = vctx;
    Type *f = type_float();
    CAtom *on = sel(b, cmp2(b, P_EQ, j, c->i), flit(f, 0.5), flit(f, 0));
    return sel(b, cmp2(b, P_LT, j, c->i), flit(f, 1), on);
}

static CAtom *mask_row(CBlock *b, CAtom *i, void *vctx)
{
    MaskCtx c = *(MaskCtx *)vctx;
    c.i = i;
    return map_iota(b, c.n, type_float(), mask_elem, &c);
}

static CAtom *to_type(CBlock *b, CAtom *x, Type *want)
{
    Type *t = aty(x);
    if (kind_of(elem_of(t)) == kind_of(elem_of(want)))
        return x;
    Prim op = kind_of(elem_of(want)) == TY_F32 ? P_TO_F32 : P_TO_FLOAT;
    return P1(b, op, arr_t(elem_of(want), rank_of(t)), x);
}

/* The vector-Jacobian products of the primitives: given ȳ = ct for
 * y = op(a0, a1, ...), add āk to the adjoints of the active operands.
 * Elementwise rules broadcast and are summed back (unbroadcast). */
static void vjp_prim(Bwd *B, CBlock *b, CExpr *e, CVar *y, CAtom *ct)
{
    CAtom **a = e->args;
    CAtom *Y = core_atom_var(y);
    bool a0 = e->nargs > 0 && atom_active(a[0]);
    bool a1 = e->nargs > 1 && atom_active(a[1]);
    Type *ft = aty(ct);
    CAtom *zero = flit(ft, 0), *one = flit(ft, 1);
    switch (e->u.prim.op) {
    /* x + z: x̄ += ȳ, z̄ += ȳ */
    case P_ADD:
        if (a0) give(B, b, a[0], ct);
        if (a1) give(B, b, a[1], ct);
        break;
    /* x - z: x̄ += ȳ, z̄ -= ȳ (negated after summing back over the
     * broadcast axes: on the smaller array) */
    case P_SUB:
        if (a0) give(B, b, a[0], ct);
        if (a1) contrib(B, b, a[1], A(neg1(b, unbroadcast(b, ct, a[1]))));
        break;
    case P_NEG:
        give(B, b, a[0], neg1(b, ct));
        break;
    /* x z: x̄ += ȳ z, z̄ += ȳ x */
    case P_MUL:
        if (a0) give(B, b, a[0], mul2(b, ct, a[1]));
        if (a1) give(B, b, a[1], mul2(b, ct, a[0]));
        break;
    /* y = x / z: x̄ += ȳ / z, z̄ -= (ȳ / z) y */
    case P_DIV: {
        CAtom *q = div2(b, ct, a[1]);
        if (a0) give(B, b, a[0], q);
        if (a1) give(B, b, a[1], neg1(b, mul2(b, q, Y)));
        break;
    }
    /* y = x^z: x̄ += ȳ z x^(z-1), 0 when z = 0 (x^0 is constant, no 0 * inf
     * at x = 0; a literal z = 1 gives exactly ȳ); z̄ += ȳ y log x, 0 at x = 0 */
    case P_POW: {
        CAtom *x = a[0], *z = a[1];
        if (a0) {
            CAtom *g = NULL;
            if (z->kind == CA_FLOAT) {
                double zv = z->u.fval;
                if (zv == 1)
                    g = ct;
                else if (zv == 2)
                    g = mul2(b, ct, mul2(b, flit(ft, 2), x));
                else if (zv != 0)
                    g = mul2(b, ct, mul2(b, z, P2(b, P_POW, aty(x), x, flit(aty(x), zv - 1))));
            } else {
                CAtom *d = mul2(b, ct, mul2(b, z, P2(b, P_POW, bc_t(x, z), x, sub2(b, z, flit(aty(z), 1)))));
                g = sel(b, cmp2(b, P_EQ, z, flit(aty(z), 0)), zero, d);
            }
            if (g)
                give(B, b, x, g);
        }
        if (a1) {
            CAtom *d = mul2(b, ct, mul2(b, Y, un(b, P_LOG, x)));
            give(B, b, z, sel(b, cmp2(b, P_EQ, x, flit(aty(x), 0)), zero, d));
        }
        break;
    }
    /* exp: x̄ += ȳ y */
    case P_EXP: give(B, b, a[0], mul2(b, ct, Y)); break;
    /* log: x̄ += ȳ / x */
    case P_LOG: give(B, b, a[0], div2(b, ct, a[0])); break;
    /* log1p: x̄ += ȳ / (1 + x) */
    case P_LOG1P: give(B, b, a[0], div2(b, ct, add2(b, one, a[0]))); break;
    /* expm1: x̄ += ȳ (y + 1) */
    case P_EXPM1: give(B, b, a[0], mul2(b, ct, add2(b, Y, one))); break;
    /* sqrt: x̄ += ȳ / (2 y), and 0 where ȳ = 0 (PyTorch's convention: a zero
     * cotangent times the infinite derivative at 0 is 0, ad-cases #3) */
    case P_SQRT: {
        CAtom *d = div2(b, ct, mul2(b, flit(ft, 2), Y));
        give(B, b, a[0], sel(b, cmp2(b, P_EQ, ct, zero), zero, d));
        break;
    }
    /* sin: x̄ += ȳ cos x; cos: x̄ -= ȳ sin x */
    case P_SIN: give(B, b, a[0], mul2(b, ct, un(b, P_COS, a[0]))); break;
    case P_COS: give(B, b, a[0], neg1(b, mul2(b, ct, un(b, P_SIN, a[0])))); break;
    /* tan: x̄ += ȳ (1 + y²); tanh: x̄ += ȳ (1 - y²) */
    case P_TAN: give(B, b, a[0], mul2(b, ct, add2(b, one, mul2(b, Y, Y)))); break;
    case P_TANH: give(B, b, a[0], mul2(b, ct, sub2(b, one, mul2(b, Y, Y)))); break;
    /* abs: x̄ += ȳ sign x (sign 0 = 0) */
    case P_ABS: {
        CAtom *neg = sel(b, cmp2(b, P_LT, a[0], zero), neg1(b, ct), zero);
        give(B, b, a[0], sel(b, cmp2(b, P_GT, a[0], zero), ct, neg));
        break;
    }
    /* sigmoid: x̄ += ȳ y (1 - y); softplus: x̄ += ȳ sigmoid x */
    case P_SIGMOID: give(B, b, a[0], mul2(b, ct, mul2(b, Y, sub2(b, one, Y)))); break;
    case P_SOFTPLUS: give(B, b, a[0], mul2(b, ct, un(b, P_SIGMOID, a[0]))); break;
    /* relu: x̄ += ȳ where x > 0 */
    case P_RELU: give(B, b, a[0], sel(b, cmp2(b, P_GT, a[0], zero), ct, zero)); break;
    /* floor, ceil: derivative 0 */
    case P_FLOOR: case P_CEIL: break;
    /* atan2 u v: ū += ȳ v / (u² + v²), v̄ -= ȳ u / (u² + v²) */
    case P_ATAN2: {
        CAtom *d = add2(b, mul2(b, a[0], a[0]), mul2(b, a[1], a[1]));
        if (a0) give(B, b, a[0], div2(b, mul2(b, ct, a[1]), d));
        if (a1) give(B, b, a[1], neg1(b, div2(b, mul2(b, ct, a[0]), d)));
        break;
    }
    /* max u v: ȳ to u where u >= v (ties to the first operand), else to v;
     * min u v: ȳ to u where u < v, else to v (ties to the second). So
     * max x c + min x c has derivative 1 at the tie x = c (ad-cases #5);
     * forward mode splits the same way (docs/ad.md). */
    case P_MAX: case P_MIN: {
        CAtom *c = cmp2(b, e->u.prim.op == P_MAX ? P_GE : P_LT, a[0], a[1]);
        if (a0) give(B, b, a[0], sel(b, c, ct, zero));
        if (a1) give(B, b, a[1], sel(b, c, zero, ct));
        break;
    }
    /* select c u v: ū += ȳ where c, v̄ += ȳ elsewhere */
    case P_SELECT:
        if (a1) give(B, b, a[1], sel(b, a[0], ct, zero));
        if (e->nargs > 2 && atom_active(a[2])) give(B, b, a[2], sel(b, a[0], zero, ct));
        break;
    /* conversions between float and f32: the cotangent converted back */
    case P_TO_FLOAT: case P_TO_F32:
        if (is_fl(elem_of(aty(a[0]))))
            contrib(B, b, a[0], A(to_type(b, ct, aty(a[0]))));
        break;
    /* y = x mod z = x - trunc(x / z) z: x̄ += ȳ, z̄ -= ȳ (x - y) / z */
    case P_MOD:
        if (a0) give(B, b, a[0], ct);
        if (a1) give(B, b, a[1], neg1(b, mul2(b, ct, div2(b, sub2(b, a[0], Y), a[1]))));
        break;
    /* [x0, x1, ...]: x̄i += ȳ[i] */
    case P_ARRAY:
        for (int i = 0; i < e->nargs; i++)
            if (atom_active(a[i]))
                contrib(B, b, a[i], A(index1(b, ct, ilit(i))));
        break;
    /* a[i..]: ā[i..] += ȳ, in place */
    case P_INDEX:
        index_add(B, b, a[0], a + 1, e->nargs - 1, ct);
        break;
    /* a[lo:hi, ..]: ā[lo:hi, ..] += ȳ */
    case P_SLICE: {
        if (!a0)
            break;
        CVar *v = a[0]->u.var;
        Adj *cur = adj_get(B, v);
        CAtom *acc = cur ? materialize(b, cur, a[0], v->type) : zeros_of(b, a[0]);
        CAtom *I[16], *T[16];
        adj_set(B, v, A(slice_acc(b, acc, e, ct, 0, I, T, 0)));
        break;
    }
    /* a with a[i..] = v: v̄ += ȳ[i..]; ā += ȳ with [i..] = 0 */
    case P_UPDATE: {
        int k = e->nargs - 2;
        if (a1) contrib(B, b, a[1], A(index_at(b, ct, a + 2, k)));
        if (a0) contrib(B, b, a[0], A(update_at(b, ct, zeros_of(b, a[1]), a + 2, k)));
        break;
    }
    /* replicate n v: v̄ += sum of ȳ over axis 0 */
    case P_REPLICATE:
        if (a1) contrib(B, b, a[1], A(is_arr(aty(a[1])) ? P1(b, P_SUM_AXIS0, tan_t(aty(a[1])), ct) : sum_all(b, ct)));
        break;
    /* fill v dims: v̄ += sum of ȳ */
    case P_FILL:
        contrib(B, b, a[0], A(sum_all(b, ct)));
        break;
    /* sum x: x̄ += ȳ broadcast to x's shape (sum over axis 0: replicated) */
    case P_SUM: case P_MEAN: {
        CAtom *x = a[0];
        if (is_arr(aty(ct))) {
            contrib(B, b, x, A(P2(b, P_REPLICATE, tan_t(aty(x)), length_of(b, x), ct)));
            break;
        }
        CAtom *g = ct;
        if (e->u.prim.op == P_MEAN)
            g = div2(b, ct, P1(b, P_TO_FLOAT, ft, size_of(b, x)));
        CAtom *d[8];
        int r = dims_of(b, x, d);
        contrib(B, b, x, A(fill(b, g, d, r)));
        break;
    }
    /* prod x: x̄i += ȳ times the product of the others, by exclusive prefix
     * and suffix products (exact with zeros in x: ad-cases #10) */
    case P_PROD: {
        CAtom *x = a[0], *xf = x, *d[8], *sz;
        int r = rank_of(aty(x));
        if (r > 1) {
            dims_of(b, x, d);
            sz = size_of(b, x);
            xf = reshape(b, x, &sz, 1);
        }
        CAtom *n = length_of(b, xf);
        CAtom *o = lit_array1(b, one);
        CAtom *pre = scan_prim(b, P_MUL, one, xf);
        CAtom *suf = un(b, P_REVERSE, scan_prim(b, P_MUL, one, un(b, P_REVERSE, xf)));
        CAtom *expre = P2(b, P_TAKE, aty(xf), n, P2(b, P_CONCAT, aty(xf), o, pre));
        CAtom *exsuf = P2(b, P_DROP, aty(xf), ilit(1), P2(b, P_CONCAT, aty(xf), suf, o));
        CAtom *g = mul2(b, ct, mul2(b, expre, exsuf));
        contrib(B, b, x, A(r > 1 ? reshape(b, g, d, r) : g));
        break;
    }
    /* maximum x (minimum): ȳ to the first position of the extreme */
    case P_MAXIMUM: case P_MINIMUM: {
        CAtom *x = a[0], *xf = x, *d[8], *sz;
        int r = rank_of(aty(x));
        if (r > 1) {
            dims_of(b, x, d);
            sz = size_of(b, x);
            xf = reshape(b, x, &sz, 1);
        }
        CAtom *key = e->u.prim.op == P_MAXIMUM ? xf : neg1(b, xf);
        CAtom *idx = P1(b, P_ARGMAX, type_int(), key);
        CAtom *oh = P2(b, P_ONE_HOT, aty(xf), length_of(b, xf), idx);
        CAtom *g = mul2(b, ct, oh);
        contrib(B, b, x, A(r > 1 ? reshape(b, g, d, r) : g));
        break;
    }
    /* sum over axis 0: x̄ += ȳ replicated along axis 0 */
    case P_SUM_AXIS0:
        contrib(B, b, a[0], A(P2(b, P_REPLICATE, tan_t(aty(a[0])), length_of(b, a[0]), ct)));
        break;
    /* dot u v: ū += ȳ v, v̄ += ȳ u */
    case P_DOT:
        if (a0) contrib(B, b, a[0], A(mul2(b, ct, a[1])));
        if (a1) contrib(B, b, a[1], A(mul2(b, ct, a[0])));
        break;
    /* A @ B: Ā += Ȳ Bᵀ, B̄ += Aᵀ Ȳ (matrix-vector and vector-matrix forms
     * by outer products and the transposed product) */
    case P_MATMUL: {
        int ra = rank_of(aty(a[0])), rb = rank_of(aty(a[1]));
        if (ra == 1 && rb == 1) {
            if (a0) contrib(B, b, a[0], A(mul2(b, ct, a[1])));
            if (a1) contrib(B, b, a[1], A(mul2(b, ct, a[0])));
        } else if (ra == 2 && rb == 2) {
            if (a0) contrib(B, b, a[0], A(matmul(b, ct, transpose(b, a[1]))));
            if (a1) contrib(B, b, a[1], A(matmul(b, transpose(b, a[0]), ct)));
        } else if (ra == 2) { /* y = M v */
            if (a0) contrib(B, b, a[0], A(outer(b, ct, a[1])));
            if (a1) contrib(B, b, a[1], A(matmul(b, ct, a[0])));
        } else { /* y = v M */
            if (a0) contrib(B, b, a[0], A(matmul(b, a[1], ct)));
            if (a1) contrib(B, b, a[1], A(outer(b, a[0], ct)));
        }
        break;
    }
    /* transpose, reverse: the same on ȳ */
    case P_TRANSPOSE: contrib(B, b, a[0], A(transpose(b, ct))); break;
    case P_REVERSE: contrib(B, b, a[0], A(un(b, P_REVERSE, ct))); break;
    /* reshape: ȳ reshaped to x's shape */
    case P_RESHAPE: {
        CAtom *d[8];
        int r = dims_of(b, a[0], d);
        contrib(B, b, a[0], A(reshape(b, ct, d, r)));
        break;
    }
    /* concat u v: ū += take (length u) ȳ, v̄ += drop (length u) ȳ */
    case P_CONCAT: {
        CAtom *n = length_of(b, a[0]);
        if (a0) contrib(B, b, a[0], A(P2(b, P_TAKE, tan_t(aty(a[0])), n, ct)));
        if (a1) contrib(B, b, a[1], A(P2(b, P_DROP, tan_t(aty(a[1])), n, ct)));
        break;
    }
    /* take n x: x̄ += ȳ followed by zeros; drop n x: zeros then ȳ */
    case P_TAKE: case P_DROP:
        if (a1) {
            Type *t = tan_t(aty(a[1]));
            bool take = e->u.prim.op == P_TAKE;
            CAtom *rest = P2(b, take ? P_DROP : P_TAKE, aty(a[1]), a[0], a[1]);
            CAtom *z = zeros_of(b, rest);
            contrib(B, b, a[1], A(take ? P2(b, P_CONCAT, t, ct, z) : P2(b, P_CONCAT, t, z, ct)));
        }
        break;
    /* zip u v: (ū, v̄) += unzip ȳ; unzip p: p̄ += zip ȳ */
    case P_ZIP: {
        Type *ts[2] = {tan_t(aty(a[0])), tan_t(aty(a[1]))};
        CAtom *u = P1(b, P_UNZIP, type_tuple(ts, 2), ct);
        if (a0) contrib(B, b, a[0], A(proj(b, u, 0)));
        if (a1) contrib(B, b, a[1], A(proj(b, u, 1)));
        break;
    }
    case P_UNZIP:
        contrib(B, b, a[0], A(P2(b, P_ZIP, tan_t(aty(a[0])), proj(b, ct, 0), proj(b, ct, 1))));
        break;
    /* softmax (last axis): x̄ += y (ȳ - sum (ȳ y)), row by row; no
     * exponential of x appears, so it is finite wherever y is */
    case P_SOFTMAX:
        if (rank_of(aty(Y)) == 1) {
            CAtom *s = sum_all(b, mul2(b, ct, Y));
            contrib(B, b, a[0], A(mul2(b, Y, sub2(b, ct, s))));
        } else {
            Type *rt = row_t(aty(Y));
            CVar *p[2] = {core_var("yr", rt, R->loc), core_var("cr", rt, R->loc)};
            CBlock *lb = core_block_new();
            CAtom *yr = core_atom_var(p[0]), *cr = core_atom_var(p[1]);
            CAtom *s = sum_all(lb, mul2(lb, cr, yr));
            lb->result = mul2(lb, yr, sub2(lb, cr, s));
            CAtom *args[2] = {Y, ct};
            contrib(B, b, a[0], A(soac(b, SOAC_MAP, aty(Y), lambda_n(p, 2, lb), args, 2)));
        }
        break;
    /* logsumexp (last axis): x̄ += ȳ softmax x */
    case P_LOGSUMEXP:
        if (!is_arr(aty(Y))) {
            contrib(B, b, a[0], A(mul2(b, ct, P1(b, P_SOFTMAX, aty(a[0]), a[0]))));
        } else {
            Type *rt = row_t(aty(a[0]));
            CVar *p[2] = {core_var("xr", rt, R->loc), core_var("c", elem_of(rt), R->loc)};
            CBlock *lb = core_block_new();
            lb->result = mul2(lb, core_atom_var(p[1]), P1(lb, P_SOFTMAX, rt, core_atom_var(p[0])));
            CAtom *args[2] = {a[0], ct};
            contrib(B, b, a[0], A(soac(b, SOAC_MAP, aty(a[0]), lambda_n(p, 2, lb), args, 2)));
        }
        break;
    /* det A: Ā += ȳ adj(A)ᵀ, the cofactor matrix: det A · A⁻ᵀ when det A is
     * not 0, else the signed minors (exact at singular matrices, ad-cases
     * #11); a 1x1 A has cofactor [[1]] */
    case P_DET: {
        Type *mt = aty(a[0]);
        CAtom *n = length_of(b, a[0]);
        CBlock *reg = core_block_new(), *sing = core_block_new(), *one1 = core_block_new(),
               *minors = core_block_new();
        reg->result = mul2(reg, Y, transpose(reg, P1(reg, P_INV, mt, a[0])));
        CAtom *d11[2] = {ilit(1), ilit(1)};
        one1->result = prim(one1, P_ONES, mt, d11, 2, 0);
        CofCtx cc = {a[0], NULL, NULL};
        minors->result = map_iota(minors, n, type_array(type_float(), 1), cof_row, &cc);
        sing->result = bind(sing, "cof", if_e(cmp2(sing, P_EQ, n, ilit(1)), mt, one1, minors));
        CAtom *g = bind(b, "cof", if_e(cmp2(b, P_NE, Y, flit(type_float(), 0)), mt, reg, sing));
        contrib(B, b, a[0], A(mul2(b, ct, g)));
        break;
    }
    /* Y = inv A: Ā -= Yᵀ Ȳ Yᵀ */
    case P_INV: {
        CAtom *yt = transpose(b, Y);
        contrib(B, b, a[0], A(neg1(b, matmul(b, matmul(b, yt, ct), yt))));
        break;
    }
    /* x = solve A v: g = solve Aᵀ x̄; v̄ += g, Ā -= g xᵀ */
    case P_SOLVE: {
        CAtom *g = P2(b, P_SOLVE, aty(ct), transpose(b, a[0]), ct);
        if (a1) contrib(B, b, a[1], A(g));
        if (a0) {
            CAtom *o = is_arr(row_t(aty(Y))) ? matmul(b, g, transpose(b, Y)) : outer(b, g, Y);
            contrib(B, b, a[0], A(neg1(b, o)));
        }
        break;
    }
    /* L = cholesky A (Murray, "Differentiation of the Cholesky
     * decomposition", 2016): S = L⁻ᵀ Φ(Lᵀ L̄) L⁻¹ with Φ the lower triangle
     * and half the diagonal; Ā += (S + Sᵀ) / 2 */
    case P_CHOLESKY: {
        Type *mt = aty(Y);
        CAtom *n = length_of(b, Y);
        MaskCtx mc = {n, NULL};
        CAtom *mask = map_iota(b, n, type_array(type_float(), 1), mask_row, &mc);
        CAtom *phi = mul2(b, matmul(b, transpose(b, Y), ct), mask);
        CAtom *li = P1(b, P_INV, mt, Y);
        CAtom *s = matmul(b, matmul(b, transpose(b, li), phi), li);
        CAtom *g = mul2(b, flit(mt, 0.5), add2(b, s, transpose(b, s)));
        contrib(B, b, a[0], A(g));
        break;
    }
    default:
        rv_error(e->loc, "reverse mode: no derivative rule for '%s'", core_prims[e->u.prim.op].name);
        break;
    }
}

/* ------------------------------------------------------------ calls */

/* y, pb = f_rev xs: x̄s += pb ȳ. */
static void bwd_pullback(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    CAtom *g = apply1(b, en->pb, ct);
    if (en->nargs == 1)
        contrib(B, b, en->args[0], A(g));
    else
        for (int i = 0; i < en->nargs; i++)
            if (atom_active(en->args[i]))
                contrib(B, b, en->args[i], A(proj(b, g, i)));
}

/* y = f x with `with jvp (x, dx) => (y, dy)`: dy is linear in dx, so
 * x̄ += the transpose of dx -> dy at ȳ, which is the reverse mode of
 * dx -> (rule (x, dx)).1 with x held constant (any dx; 0 here). */
static void bwd_jvp_rule(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a || !atom_active(en->args[0]))
        return;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    CAtom *x = bind(b, "x", atom_e(en->args[0])); /* a constant here */
    CVar *dx = core_var("dx", tan_t(aty(x)), R->loc);
    push_bind(b, dx, atom_e(zeros_of(b, x)));
    set_active(dx);
    Frame *FR = NEW(Frame);
    FR->recompute = true;
    FR->norec = B->F->norec;
    core_map_put(&FR->bound, dx, (void *)1);
    CBlock *tmp = core_block_new();
    CAtom *pair[2] = {x, core_atom_var(dx)};
    CAtom *p = mkprod(tmp, en->rule->params[0]->type, pair, 2);
    CAtom *r = call(tmp, en->rule, &p, 1);
    tmp->result = proj(tmp, r, 1);
    fwd_block(FR, tmp, b);
    Bwd *B2 = NEW(Bwd);
    B2->F = FR;
    bwd_run(B2, b, tmp->result, ct);
    Adj *g = adj_get(B2, dx);
    if (g)
        contrib(B, b, en->args[0], A(materialize(b, g, core_atom_var(dx), dx->type)));
}

/* f_rev xs = (f xs, fn ȳ => x̄s): f's forward sweep, then its pullback as a
 * closure over the residuals. Memoised, so recursion works. */
static CFun *get_vjp(CFun *f)
{
    CFun *fv = core_map_get(&R->vjp_of, f);
    if (fv)
        return fv;
    Loc saved = R->loc;
    R->loc = f->loc;
    fv = core_fun_new(ad_fun_name(R->prog, arena_printf(dcc_arena, "%s_rev", f->name)), f->src_name, f->loc);
    fv->is_helper = true;
    int n = f->nparams;
    fv->nparams = n;
    fv->params = NEWN(CVar *, n > 0 ? n : 1);
    CAtom **pa = NEWN(CAtom *, n > 0 ? n : 1);
    Type **pt = NEWN(Type *, n > 0 ? n : 1);
    Frame *F = NEW(Frame);
    for (int i = 0; i < n; i++) {
        fv->params[i] = core_var(f->params[i]->name, f->params[i]->type, f->loc);
        pa[i] = core_atom_var(fv->params[i]);
        pt[i] = tan_t(f->params[i]->type);
        core_map_put(&F->bound, fv->params[i], (void *)1);
        set_active(fv->params[i]);
    }
    Type *ta = tuple_t(pt, n);
    Type *tpb = type_func(tan_t(f->ret), ta);
    Type *rt[2] = {f->ret, tpb};
    fv->ret = type_tuple(rt, 2);
    core_map_put(&R->vjp_of, f, fv);
    core_map_put(&R->rev_fun, fv, f);
    core_program_add(R->prog, fv);
    fv->body = core_block_new();
    CBlock *c = core_copy_block(f->body, f->params, pa, n);
    int budget = R->budget;
    R->budget = 4000;
    fwd_block(F, c, fv->body);
    R->budget = budget;
    CVar *ct = core_var("ct", tan_t(f->ret), f->loc);
    CBlock *lb = core_block_new();
    Bwd *B = NEW(Bwd);
    B->F = F;
    bwd_run(B, lb, c->result, core_atom_var(ct));
    CAtom **outs = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        outs[i] = materialize(lb, adj_get(B, fv->params[i]), pa[i], fv->params[i]->type);
    lb->result = tuple_of(lb, outs, n);
    CAtom *pb = closure(fv->body, ct, lb);
    CAtom *res[2] = {c->result, pb};
    fv->body->result = mkprod(fv->body, fv->ret, res, 2);
    R->loc = saved;
    return fv;
}

/* f_bwd xs ȳ = x̄s: f's forward sweep and backward sweep in one function,
 * for differentiating the pullbacks of f_rev again (no closure to go
 * through; the primal is recomputed). */
static CFun *get_bwd(CFun *f)
{
    CFun *fb = core_map_get(&R->bwd_of, f);
    if (fb)
        return fb;
    Loc saved = R->loc;
    R->loc = f->loc;
    fb = core_fun_new(ad_fun_name(R->prog, arena_printf(dcc_arena, "%s_bwd", f->name)), f->src_name, f->loc);
    fb->is_helper = true;
    int n = f->nparams;
    fb->nparams = n + 1;
    fb->params = NEWN(CVar *, n + 1);
    CAtom **pa = NEWN(CAtom *, n > 0 ? n : 1);
    Type **pt = NEWN(Type *, n > 0 ? n : 1);
    Frame *F = NEW(Frame);
    for (int i = 0; i < n; i++) {
        fb->params[i] = core_var(f->params[i]->name, f->params[i]->type, f->loc);
        pa[i] = core_atom_var(fb->params[i]);
        pt[i] = tan_t(f->params[i]->type);
        core_map_put(&F->bound, fb->params[i], (void *)1);
        set_active(fb->params[i]);
    }
    F->norec = true;
    CVar *ct = core_var("ct", tan_t(f->ret), f->loc);
    fb->params[n] = ct;
    fb->ret = tuple_t(pt, n);
    core_map_put(&R->bwd_of, f, fb);
    core_program_add(R->prog, fb);
    fb->body = core_block_new();
    CBlock *c = core_copy_block(f->body, f->params, pa, n);
    int budget = R->budget;
    R->budget = 4000;
    fwd_block(F, c, fb->body);
    R->budget = budget;
    Bwd *B = NEW(Bwd);
    B->F = F;
    bwd_run(B, fb->body, c->result, core_atom_var(ct));
    CAtom **outs = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        outs[i] = materialize(fb->body, adj_get(B, fb->params[i]), pa[i], fb->params[i]->type);
    fb->body->result = tuple_of(fb->body, outs, n);
    R->loc = saved;
    return fb;
}

static void bwd_entry(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    Loc saved = R->loc;
    if (en->e)
        R->loc = en->e->loc;
    switch (en->kind) {
    case EN_ATOM:
        contrib(B, b, en->e->args[0], a);
        break;
    case EN_PRIM: {
        CExpr *e = en->e;
        Type *yt = en->y->type;
        switch (e->u.prim.op) {
        /* products and sums: adjoints stay partial, component by component */
        case P_TUPLE: case P_RECORD:
            for (int i = 0; i < e->nargs; i++)
                if (atom_active(e->args[i]))
                    contrib(B, b, e->args[i], adj_part(b, a, i));
            break;
        case P_PROJ: case P_FIELD:
            contrib(B, b, e->args[0], adj_prod1(aty(e->args[0]), (int)e->u.prim.imm, a));
            break;
        case P_CON:
            if (e->nargs)
                contrib(B, b, e->args[0], adj_payload(b, a, yt, (int)e->u.prim.imm));
            break;
        case P_PAYLOAD:
            contrib(B, b, e->args[0], adj_con((int)e->u.prim.imm, a));
            break;
        default:
            vjp_prim(B, b, e, en->y, materialize(b, a, core_atom_var(en->y), yt));
        }
        break;
    }
    case EN_BRANCH: bwd_branch(B, b, en); break;
    case EN_LOOP: bwd_loop(B, b, en); break;
    case EN_MAP: bwd_map(B, b, en); break;
    case EN_REDUCE_ADD: bwd_reduce_add(B, b, en); break;
    case EN_SCAN_ADD: bwd_scan_add(B, b, en); break;
    case EN_PULLBACK: bwd_pullback(B, b, en); break;
    case EN_RECOMPUTE: {
        CFun *fb = get_bwd(en->rule);
        CAtom **args = NEWN(CAtom *, en->nargs + 1);
        for (int i = 0; i < en->nargs; i++)
            args[i] = en->args[i];
        args[en->nargs] = materialize(b, a, core_atom_var(en->y), en->y->type);
        CAtom *g = call(b, fb, args, en->nargs + 1);
        for (int i = 0; i < en->nargs; i++)
            if (atom_active(en->args[i]))
                contrib(B, b, en->args[i], A(en->nargs == 1 ? g : proj(b, g, i)));
        break;
    }
    case EN_JVP_RULE: bwd_jvp_rule(B, b, en); break;
    case EN_CLOSURE:
        rv_error(en->e->loc, "reverse mode: the derivative with respect to a function value is not "
                             "implemented yet (a closure over the differentiated variables is part "
                             "of the result)");
        break;
    }
    R->loc = saved;
}

/* ------------------------------------------------------------ the forms */

/* Reverse mode of the region lambda l at x0 into out; returns the form's
 * value. */
static CAtom *expand_form(CBlock *out, DerivKind kind, CLambda *l, CAtom *x0, Type *rtype)
{
    CVar *p = l->params[0];
    Frame *F = NEW(Frame);
    fpush(F, out, p, atom_e(x0));
    set_active(p);
    fwd_block(F, l->body, out);
    CAtom *y = l->body->result;
    Bwd *B = NEW(Bwd);
    B->F = F;
    switch (kind) {
    case DERIV_GRAD: case DERIV_VALUE_AND_GRAD: {
        bwd_run(B, out, y, flit(aty(y), 1));
        CAtom *g = materialize(out, adj_get(B, p), core_atom_var(p), p->type);
        if (kind == DERIV_GRAD)
            return g;
        CAtom *vg[2] = {y, g};
        return mkprod(out, rtype, vg, 2);
    }
    case DERIV_VJP: {
        CVar *c = core_var("ct", tan_t(aty(y)), R->loc);
        CBlock *lb = core_block_new();
        bwd_run(B, lb, y, core_atom_var(c));
        lb->result = materialize(lb, adj_get(B, p), core_atom_var(p), p->type);
        CAtom *vp[2] = {y, closure(out, c, lb)};
        return mkprod(out, rtype, vp, 2);
    }
    case DERIV_JACREV: {
        /* row i of the Jacobian: the pullback of the i-th unit vector */
        CAtom *m = length_of(out, y);
        CAtom *is = P1(out, P_IOTA, type_array(type_int(), 1), m);
        CVar *i = core_var("i", type_int(), R->loc);
        CBlock *lb = core_block_new();
        CAtom *u = P2(lb, P_ONE_HOT, tan_t(aty(y)), m, core_atom_var(i));
        bwd_run(B, lb, y, u);
        lb->result = materialize(lb, adj_get(B, p), core_atom_var(p), p->type);
        return soac(out, SOAC_MAP, rtype, lambda_n(&i, 1, lb), &is, 1);
    }
    default:
        rv_error(R->loc, "internal error: reverse mode: not a reverse-mode form");
        return NULL;
    }
}

/* The memo tables hold pointers into one compilation: they are dropped
 * when another program comes (the REPL and the fuzzer compile many). */
static int depth;
static CFun *fun_first, *fun_last;
static int nfuns_seen;

static void reset_if_new(CProgram *p)
{
    if (R->prog == p && p->nfuns >= nfuns_seen && p->nfuns > 0 && p->funs[0] == fun_first &&
        p->funs[nfuns_seen - 1] == fun_last)
        return;
    core_map_free(&R->active);
    core_map_free(&R->known);
    core_map_free(&R->vjp_of);
    core_map_free(&R->rev_fun);
    core_map_free(&R->bwd_of);
    core_map_free(&R->rev_call);
    core_map_free(&R->rec);
    core_map_free(&R->helpers);
    memset(R, 0, sizeof *R);
    R->prog = p;
}

CAtom *ad_reverse_form(CProgram *p, CExpr *e, CBlock *b)
{
    if (depth == 0)
        reset_if_new(p);
    depth++;
    Loc saved_loc = R->loc;
    int saved_budget = R->budget;
    bool saved_ok = R->ok;
    R->ok = true;
    R->loc = e->loc;
    R->budget = 20000;
    CAtom *r = expand_form(b, e->u.deriv.kind, e->u.deriv.fn, e->args[0], e->type);
    bool ok = R->ok;
    R->loc = saved_loc;
    R->budget = saved_budget;
    R->ok = saved_ok;
    if (--depth == 0) {
        nfuns_seen = p->nfuns;
        fun_first = p->nfuns ? p->funs[0] : NULL;
        fun_last = p->nfuns ? p->funs[p->nfuns - 1] : NULL;
    }
    return ok ? r : NULL;
}
