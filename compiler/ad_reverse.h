/* ad_reverse.h — internal interface between the files of reverse mode:
 * ad_reverse.c (the state, adjoints, activity, the forward and backward
 * sweeps of blocks, branches, calls and the forms), ad_reverse_loops.c
 * (loops, checkpointing, SOAC pullbacks) and ad_reverse_rules.c (zeros and
 * sums of tangents, the vector-Jacobian rule of each primitive). The
 * design is described at the top of ad_reverse.c. The interface shared
 * with the other AD files is the ad section of dcc.h. */
#ifndef DCC_AD_REVERSE_H
#define DCC_AD_REVERSE_H

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

extern Rv rv_state; /* ad_reverse.c */
#define R (&rv_state)

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

typedef void (*AtomFn)(CAtom *a, void *ctx);
typedef void (*ExprFn)(CExpr *e, void *ctx);

/* ---- ad_reverse.c */

CExpr *known_def(CAtom *a);
void rv_error(Loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
Adj *A(CAtom *a);
CAtom *materialize(CBlock *b, Adj *a, CAtom *tmpl, Type *pt);
void walk_block(CBlock *b, AtomFn af, ExprFn ef, void *ctx);
bool atom_active(CAtom *a);
void set_active(CVar *v);
bool uses_active_block(CBlock *b);
bool uses_active_expr(CExpr *e);
int block_size(CBlock *b);
void fpush(Frame *F, CBlock *dst, CVar *x, CExpr *e);
Entry *tape(Frame *F, EntryKind k, CVar *y, CExpr *e);
void fwd_block(Frame *F, CBlock *src, CBlock *dst);
Adj *adj_get(Bwd *B, CVar *v);
void adj_set(Bwd *B, CVar *v, Adj *a);
void contrib(Bwd *B, CBlock *b, CAtom *target, Adj *a);
void bwd_run(Bwd *B, CBlock *b, CAtom *result, CAtom *ct);
Tmpl *tmpl_raw(Frame *F, CAtom *result, Type *rtype, CVar **params, CAtom **ptmpl, int np,
              CVar **cands, bool *acc, int nc, CVar *pay, CAtom *scrut, int conk);
void tmpl_escapes(Tmpl *tm, Vec *outs, CoreMap *seen);
void tmpl_finish(Tmpl *tm, CVar **outs, int nouts, CVar *pay);
CAtom *tmpl_inst(CBlock *dst, Tmpl *tm, CAtom *ct, CAtom **accs, CVar **from, CAtom **to, int n);
void candidates(CExpr *e, CBlock *blk, bool all_acc, CVar ***cands, bool **acc, int *n);

/* ---- ad_reverse_loops.c */

void fwd_loop(Frame *F, CBlock *dst, CVar *x, CExpr *e);
void bwd_loop(Bwd *B, CBlock *b, Entry *en);
void fwd_soac(Frame *F, CBlock *dst, CVar *x, CExpr *e);
void bwd_map(Bwd *B, CBlock *b, Entry *en);
void bwd_reduce_add(Bwd *B, CBlock *b, Entry *en);
void bwd_scan_add(Bwd *B, CBlock *b, Entry *en);

/* ---- ad_reverse_rules.c */

CAtom *zeros_of(CBlock *b, CAtom *p);
CAtom *add_of(CBlock *b, CAtom *x, CAtom *y);
CAtom *dummy_of(CBlock *b, Type *t, int depth);
void vjp_prim(Bwd *B, CBlock *b, CExpr *e, CVar *y, CAtom *ct);

/* ---- the small type and Core-building helpers all three files use */

/* ------------------------------------------------------------ types */

static inline Type *rs(Type *t) { return type_resolve(t); }
static inline Type *tan_t(Type *t) { return type_resolve(type_tangent(t)); }
static inline TypeKind kind_of(Type *t) { return rs(t)->kind; }
static inline bool is_fl(Type *t) { TypeKind k = kind_of(t); return k == TY_FLOAT || k == TY_F32; }
static inline bool is_arr(Type *t) { return kind_of(t) == TY_ARRAY; }
static inline int rank_of(Type *t) { t = rs(t); return t->kind == TY_ARRAY ? t->rank : 0; }
static inline Type *elem_of(Type *t) { t = rs(t); return t->kind == TY_ARRAY ? rs(t->elem) : t; }
static inline Type *aty(CAtom *a) { return rs(core_atom_type(a)); }
/* An array of rank r of elem (a scalar when r is 0). */
static inline Type *arr_t(Type *elem, int r) { return r > 0 ? type_array(elem, r) : rs(elem); }
/* Axis 0 taken away: the rows of an array. */
static inline Type *row_t(Type *t) { return arr_t(elem_of(t), rank_of(t) - 1); }
static inline bool is_record(Type *t) { t = rs(t); return t->kind == TY_NAMED && t->decl->kind == TD_RECORD; }
static inline bool is_variant(Type *t) { t = rs(t); return t->kind == TY_NAMED && t->decl->kind == TD_VARIANT; }

static inline int nparts(Type *t)
{
    t = rs(t);
    if (t->kind == TY_TUPLE)
        return t->nargs;
    if (is_record(t))
        return t->decl->nfields;
    return -1;
}

static inline Type *part_t(Type *t, int i) { return kind_of(t) == TY_TUPLE ? core_type_proj(t, i) : core_type_field(t, i); }

/* Whether T(t) holds a float somewhere (else no derivative flows). */
static inline bool has_tan_d(Type *t, int depth)
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

static inline bool has_tan(Type *t) { return has_tan_d(t, 0); }

static inline Type *fn_t(Type **params, int n, Type *res)
{
    for (int i = n - 1; i >= 0; i--)
        res = type_func(params[i], res);
    return res;
}

static inline Type *tuple_t(Type **ts, int n)
{
    if (n == 1)
        return ts[0];
    if (n == 0)
        return type_unit();
    return type_tuple(ts, n);
}

/* ------------------------------------------------------------ emitting */

static inline void push_bind(CBlock *b, CVar *v, CExpr *e)
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

static inline CAtom *bind(CBlock *b, const char *name, CExpr *e) { return core_atom_var(core_bind(b, name, e)); }

static inline CExpr *atom_e(CAtom *a)
{
    CExpr *e = core_expr(CE_ATOM, core_atom_type(a), R->loc);
    e->nargs = 1;
    e->args = NEWN(CAtom *, 1);
    e->args[0] = a;
    return e;
}

static inline CAtom *prim(CBlock *b, Prim op, Type *t, CAtom **args, int n, int64_t imm)
{
    return bind(b, "d", core_prim(op, t, R->loc, args, n, imm));
}

#define P1(b, op, t, x) prim((b), (op), (t), (CAtom *[]){(x)}, 1, 0)
#define P2(b, op, t, x, y) prim((b), (op), (t), (CAtom *[]){(x), (y)}, 2, 0)
#define P3(b, op, t, x, y, z) prim((b), (op), (t), (CAtom *[]){(x), (y), (z)}, 3, 0)

static inline CAtom *ilit(int64_t v) { return core_atom_int(v); }
/* A float literal of the element type of t. */
static inline CAtom *flit(Type *t, double v) { return core_atom_float(v, elem_of(t)); }
static inline bool is_lit(CAtom *a, double v) { return a->kind == CA_FLOAT && a->u.fval == v; }

/* The type of an elementwise operation: the operand of higher rank. */
static inline Type *bc_t(CAtom *x, CAtom *y)
{
    Type *a = aty(x), *b = aty(y);
    return rank_of(b) > rank_of(a) ? b : a;
}

static inline CAtom *add2(CBlock *b, CAtom *x, CAtom *y)
{
    if (is_lit(x, 0) && core_type_equal(aty(y), bc_t(x, y)))
        return y;
    if (is_lit(y, 0) && core_type_equal(aty(x), bc_t(x, y)))
        return x;
    return P2(b, P_ADD, bc_t(x, y), x, y);
}

static inline CAtom *sub2(CBlock *b, CAtom *x, CAtom *y) { return P2(b, P_SUB, bc_t(x, y), x, y); }

static inline CAtom *mul2(CBlock *b, CAtom *x, CAtom *y)
{
    if (is_lit(x, 1) && core_type_equal(aty(y), bc_t(x, y)))
        return y;
    if (is_lit(y, 1) && core_type_equal(aty(x), bc_t(x, y)))
        return x;
    return P2(b, P_MUL, bc_t(x, y), x, y);
}

static inline CAtom *div2(CBlock *b, CAtom *x, CAtom *y) { return P2(b, P_DIV, bc_t(x, y), x, y); }
static inline CAtom *neg1(CBlock *b, CAtom *x) { return P1(b, P_NEG, aty(x), x); }
static inline CAtom *un(CBlock *b, Prim op, CAtom *x) { return P1(b, op, aty(x), x); }

static inline CAtom *cmp2(CBlock *b, Prim op, CAtom *x, CAtom *y)
{
    return P2(b, op, arr_t(type_bool(), rank_of(bc_t(x, y))), x, y);
}

/* select c x y, elementwise with broadcasting (x, y floats). */
static inline CAtom *sel(CBlock *b, CAtom *c, CAtom *x, CAtom *y)
{
    Type *t = bc_t(x, y);
    int r = rank_of(aty(c));
    if (r > rank_of(t))
        t = arr_t(elem_of(t), r);
    return P3(b, P_SELECT, t, c, x, y);
}

static inline CAtom *iadd(CBlock *b, CAtom *x, CAtom *y) { return P2(b, P_ADD, type_int(), x, y); }
static inline CAtom *isub(CBlock *b, CAtom *x, CAtom *y) { return P2(b, P_SUB, type_int(), x, y); }


/* An array of the same shape as x computed earlier, when x's definition
 * shows one (elementwise operations with one array operand): the shape is
 * read from there, so that x itself may be dead after the forward sweep. */
static inline CAtom *same_shape(CAtom *x, bool axis0_only)
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

static inline CAtom *length_of(CBlock *b, CAtom *x) { return P1(b, P_LENGTH, type_int(), same_shape(x, true)); }

/* The dimensions of an array, one int atom each. */
static inline int dims_of(CBlock *b, CAtom *x, CAtom **out)
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

static inline CAtom *size_of(CBlock *b, CAtom *x)
{
    CAtom *d[8];
    int r = dims_of(b, x, d);
    CAtom *n = d[0];
    for (int i = 1; i < r; i++)
        n = P2(b, P_MUL, type_int(), n, d[i]);
    return n;
}

static inline CAtom *index_at(CBlock *b, CAtom *a, CAtom **idx, int k)
{
    CAtom *args[10];
    args[0] = a;
    for (int i = 0; i < k; i++)
        args[i + 1] = idx[i];
    Type *t = aty(a);
    return prim(b, P_INDEX, arr_t(elem_of(t), rank_of(t) - k), args, k + 1, 0);
}

static inline CAtom *index1(CBlock *b, CAtom *a, CAtom *i) { return index_at(b, a, &i, 1); }

static inline CAtom *update_at(CBlock *b, CAtom *a, CAtom *v, CAtom **idx, int k)
{
    CAtom *args[11];
    args[0] = a;
    args[1] = v;
    for (int i = 0; i < k; i++)
        args[i + 2] = idx[i];
    return prim(b, P_UPDATE, aty(a), args, k + 2, 0);
}

static inline CAtom *fill(CBlock *b, CAtom *v, CAtom **dims, int r)
{
    CAtom *args[9];
    args[0] = v;
    for (int i = 0; i < r; i++)
        args[i + 1] = dims[i];
    return prim(b, P_FILL, arr_t(aty(v), r), args, r + 1, 0);
}

static inline CAtom *zeros_dims(CBlock *b, Type *elem, CAtom **dims, int r)
{
    return prim(b, P_ZEROS, arr_t(elem, r), dims, r, 0);
}

static inline CAtom *reshape(CBlock *b, CAtom *a, CAtom **dims, int r)
{
    CAtom *args[9];
    args[0] = a;
    for (int i = 0; i < r; i++)
        args[i + 1] = dims[i];
    return prim(b, P_RESHAPE, arr_t(elem_of(aty(a)), r), args, r + 1, 0);
}

static inline CAtom *matmul(CBlock *b, CAtom *x, CAtom *y)
{
    int r = rank_of(aty(x)) + rank_of(aty(y)) - 2;
    return P2(b, P_MATMUL, arr_t(elem_of(aty(x)), r), x, y);
}


/* transpose (transpose y) is y */
static inline CAtom *transpose(CBlock *b, CAtom *x)
{
    CExpr *d = known_def(x);
    if (d && d->kind == CE_PRIM && d->u.prim.op == P_TRANSPOSE)
        return d->args[0];
    return P1(b, P_TRANSPOSE, aty(x), x);
}

/* The outer product u v^T of two vectors, as the broadcast product of a
 * column and a row (elementwise: it fuses with what consumes it). */
static inline CAtom *outer(CBlock *b, CAtom *u, CAtom *v)
{
    CAtom *m[2] = {length_of(b, u), ilit(1)};
    CAtom *n[2] = {ilit(1), length_of(b, v)};
    CAtom *col = reshape(b, u, m, 2), *row = reshape(b, v, n, 2);
    return P2(b, P_MUL, aty(col), col, row);
}

/* Sum over all elements (a scalar stays). */
static inline CAtom *sum_all(CBlock *b, CAtom *x)
{
    if (!is_arr(aty(x)))
        return x;
    return P1(b, P_SUM, elem_of(aty(x)), x);
}

/* Components of products. */
static inline CAtom *proj(CBlock *b, CAtom *x, int i)
{
    Type *t = aty(x);
    return prim(b, kind_of(t) == TY_TUPLE ? P_PROJ : P_FIELD, part_t(t, i), &x, 1, i);
}

static inline CAtom *mkprod(CBlock *b, Type *t, CAtom **parts, int n)
{
    return prim(b, kind_of(t) == TY_TUPLE ? P_TUPLE : P_RECORD, t, parts, n, 0);
}

/* Several values as one: nothing is unit, one is itself, more a tuple. */
static inline CAtom *tuple_of(CBlock *b, CAtom **xs, int n)
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

static inline CAtom *untuple(CBlock *b, CAtom *t, int n, int i) { return n == 1 ? t : proj(b, t, i); }

static inline CExpr *if_e(CAtom *c, Type *t, CBlock *th, CBlock *el)
{
    CExpr *e = core_expr(CE_IF, t, R->loc);
    e->nargs = 1;
    e->args = NEWN(CAtom *, 1);
    e->args[0] = c;
    e->u.if_.then_ = th;
    e->u.if_.else_ = el;
    return e;
}

static inline CBlock *block_of(CAtom *a)
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

static inline ForLoop for_begin(CAtom *n, CAtom *init)
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

static inline CAtom *for_end(CBlock *b, ForLoop *L, CAtom *next)
{
    L->body->result = next;
    return bind(b, "loop", L->e);
}

/* A lambda of n parameters (curried type) for SOACs. */
static inline CLambda *lambda_n(CVar **ps, int n, CBlock *body)
{
    Type **pt = NEWN(Type *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        pt[i] = ps[i]->type;
    return core_lambda(ps, n, body, fn_t(pt, n, core_atom_type(body->result)), R->loc);
}

static inline CAtom *soac(CBlock *b, SoacKind k, Type *t, CLambda *l, CAtom **args, int n)
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
static inline CAtom *scan_prim(CBlock *b, Prim op, CAtom *ne, CAtom *xs)
{
    Type *el = elem_of(aty(xs));
    CVar *p[2] = {core_var("a", el, R->loc), core_var("x", el, R->loc)};
    CBlock *body = core_block_new();
    body->result = P2(body, op, el, core_atom_var(p[0]), core_atom_var(p[1]));
    CAtom *args[2] = {ne, xs};
    return soac(b, SOAC_SCAN, aty(xs), lambda_n(p, 2, body), args, 2);
}

static inline CAtom *lit_array1(CBlock *b, CAtom *v)
{
    return prim(b, P_ARRAY, type_array(aty(v), 1), &v, 1, 0);
}

/* A block copied with substitutions; its bindings go to dst, its result
 * is returned. */
static inline CAtom *splice(CBlock *dst, CBlock *src, CVar **from, CAtom **to, int n)
{
    CBlock *c = core_copy_block(src, from, to, n);
    for (int i = 0; i < c->nbinds; i++)
        push_bind(dst, c->binds[i].var, c->binds[i].e);
    return c->result;
}

/* ------------------------------------------------------------ zeros and sums */

static inline CFun *helper_fun(const char *kind, Type *t, Type **pts, int np, Type *ret, CVar **ps, bool *fresh)
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

static inline CAtom *call(CBlock *b, CFun *f, CAtom **args, int n)
{
    CExpr *e = core_expr(CE_CALL, f->ret, R->loc);
    e->u.fun = f;
    e->nargs = n;
    e->args = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        e->args[i] = args[i];
    return bind(b, "r", e);
}

static inline CAtom *apply1(CBlock *b, CAtom *clo, CAtom *arg)
{
    Type *ft = aty(clo);
    CExpr *e = core_expr(CE_APPLY, rs(ft->args[1]), R->loc);
    e->nargs = 2;
    e->args = NEWN(CAtom *, 2);
    e->args[0] = clo;
    e->args[1] = arg;
    return bind(b, "r", e);
}

static inline CAtom *closure(CBlock *b, CVar *param, CBlock *body)
{
    Type *t = type_func(param->type, core_atom_type(body->result));
    CExpr *e = core_expr(CE_LAMBDA, t, R->loc);
    e->u.lambda = core_lambda(&param, 1, body, t, R->loc);
    return bind(b, "pb", e);
}

/* case x of every constructor k => body(k, payload): one alternative per
 * constructor of x's variant type. */
typedef CAtom *(*AltFn)(CBlock *b, int con, CAtom *payload, void *ctx);

static inline CAtom *case_all(CBlock *b, CAtom *x, Type *rt, AltFn fn, void *ctx)
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

static inline CAtom *con(CBlock *b, Type *t, int k, CAtom *payload)
{
    return prim(b, P_CON, t, &payload, payload ? 1 : 0, k);
}

#endif /* DCC_AD_REVERSE_H */
