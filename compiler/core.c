/* core.c — the Core IR: the primitive table, builders, ground-type helpers,
 * copying with renaming, the printer (--emit=core) and the verifier.
 *
 * Core is A-normal form (Flanagan, Sabry, Duba, Felleisen, "The essence of
 * compiling with continuations", PLDI 1993): every intermediate value is
 * named by a `let`, and operations take atoms. dcc.h documents the IR and
 * the conventions lowering fixes. */
#include "dcc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- prims */

enum {
    EW = PRIM_ELEMENTWISE,
    LIN = PRIM_LINEAR,
    EFF = PRIM_EFFECT,
    ND = PRIM_NONDIFF,
    PART = PRIM_PARTIAL,
};

/* Flags and rough costs (flops per element). Elementwise binary prims are
 * PRIM_PARTIAL because broadcasting two arrays can fail on their shapes;
 * core_prim_may_fail refines that by the operand types. */
static const struct {
    unsigned flags;
    int cost;
} prim_props[P__COUNT] = {
    [P_ADD] = {EW | LIN | PART, 1},   [P_SUB] = {EW | LIN | PART, 1},
    [P_MUL] = {EW | PART, 1},         [P_DIV] = {EW | PART, 4},
    [P_MOD] = {EW | PART, 4},         [P_POW] = {EW | PART, 30},
    [P_NEG] = {EW | LIN, 1},          [P_EQ] = {EW | ND | PART, 1},
    [P_NE] = {EW | ND | PART, 1},     [P_LT] = {EW | ND | PART, 1},
    [P_LE] = {EW | ND | PART, 1},     [P_GT] = {EW | ND | PART, 1},
    [P_GE] = {EW | ND | PART, 1},     [P_NOT] = {EW | ND, 1},
    [P_EXP] = {EW, 20},               [P_LOG] = {EW, 20},
    [P_LOG1P] = {EW, 20},             [P_EXPM1] = {EW, 20},
    [P_SQRT] = {EW, 4},               [P_SIN] = {EW, 20},
    [P_COS] = {EW, 20},               [P_TAN] = {EW, 20},
    [P_TANH] = {EW, 20},              [P_ABS] = {EW, 1},
    [P_SIGMOID] = {EW, 22},           [P_SOFTPLUS] = {EW, 40},
    [P_RELU] = {EW, 1},               [P_FLOOR] = {EW, 1},
    [P_CEIL] = {EW, 1},               [P_ATAN2] = {EW | PART, 25},
    [P_MIN] = {EW | PART, 1},         [P_MAX] = {EW | PART, 1},
    [P_TO_FLOAT] = {EW, 1},           [P_TO_INT] = {EW | ND, 1},
    [P_TO_F32] = {EW, 1},             [P_SELECT] = {EW | LIN | PART, 1},
    [P_TUPLE] = {LIN, 0},             [P_PROJ] = {LIN, 0},
    [P_RECORD] = {LIN, 0},            [P_FIELD] = {LIN, 0},
    [P_CON] = {LIN, 1},               [P_TAG] = {ND, 0},
    [P_PAYLOAD] = {LIN, 0},           [P_ARRAY] = {LIN, 1},
    [P_INDEX] = {LIN | PART, 1},      [P_SLICE] = {LIN | PART, 1},
    [P_UPDATE] = {LIN | PART, 1},     [P_LENGTH] = {ND, 0},
    [P_SHAPE] = {ND, 1},              [P_IOTA] = {ND | PART, 1},
    [P_REPLICATE] = {LIN | PART, 1},  [P_ZEROS] = {ND | PART, 1},
    [P_ONES] = {ND | PART, 1},        [P_ZEROS_LIKE] = {ND, 1},
    [P_FILL] = {LIN | PART, 1},       [P_SUM] = {LIN, 1},
    [P_PROD] = {0, 1},                [P_MEAN] = {LIN, 1},
    [P_MAXIMUM] = {PART, 1},          [P_MINIMUM] = {PART, 1},
    [P_ARGMAX] = {ND | PART, 1},      [P_SUM_AXIS0] = {LIN, 1},
    [P_DOT] = {PART, 2},              [P_MATMUL] = {PART, 2},
    [P_TRANSPOSE] = {LIN, 1},         [P_RESHAPE] = {LIN | PART, 1},
    [P_CONCAT] = {LIN | PART, 1},     [P_REVERSE] = {LIN, 1},
    [P_TAKE] = {LIN | PART, 1},       [P_DROP] = {LIN | PART, 1},
    [P_ONE_HOT] = {ND | PART, 1},     [P_ZIP] = {LIN | PART, 1},
    [P_UNZIP] = {LIN, 1},             [P_SOFTMAX] = {PART, 25},
    [P_LOGSUMEXP] = {PART, 25},       [P_DET] = {PART, 10},
    [P_INV] = {PART, 10},             [P_SOLVE] = {PART, 10},
    [P_CHOLESKY] = {PART, 10},        [P_KEY] = {ND, 10},
    [P_SPLIT] = {ND, 10},             [P_UNIFORM] = {ND | PART, 10},
    [P_NORMAL] = {ND | PART, 20},     [P_PERMUTATION] = {ND | PART, 10},
    [P_PRINT] = {EFF | ND, 100},      [P_PRINTLN] = {EFF | ND, 100},
    [P_SHOW] = {ND, 100},             [P_STR_CONCAT] = {ND, 10},
    [P_READ_CSV] = {EFF | ND, 100},   [P_READ_NPY] = {EFF | ND, 100},
    [P_WRITE_NPY] = {EFF | ND, 100},  [P_READ_IDX] = {EFF | ND, 100},
    [P_ARGS] = {EFF | ND, 10},        [P_PROGRESS] = {EFF | ND, 100},
    [P_ERROR] = {EFF | ND, 100},
    [P_CLOCK] = {EFF | ND, 10},       [P_WRITE_TEXT] = {EFF | ND, 100},
    [P_DEFUN] = {PART, 10},
};

PrimInfo core_prims[P__COUNT] = {
#define X(name, spelling, arity) [P_##name] = {spelling, arity, 0, 0, NULL, NULL, NULL},
    CORE_PRIMS(X)
#undef X
};

__attribute__((constructor)) static void core_prims_init(void)
{
    for (int i = 0; i < P__COUNT; i++) {
        core_prims[i].flags = prim_props[i].flags;
        core_prims[i].cost = prim_props[i].cost;
    }
}

/* ---------------------------------------------------------------- maps */

static size_t map_hash(const void *k)
{
    uintptr_t x = (uintptr_t)k;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static void map_grow(CoreMap *m)
{
    CoreMap n = {0};
    n.cap = m->cap ? m->cap * 2 : 16;
    n.keys = xmalloc(sizeof *n.keys * (size_t)n.cap);
    n.vals = xmalloc(sizeof *n.vals * (size_t)n.cap);
    memset(n.keys, 0, sizeof *n.keys * (size_t)n.cap);
    for (int i = 0; i < m->cap; i++)
        if (m->keys[i])
            core_map_put(&n, m->keys[i], m->vals[i]);
    free(m->keys);
    free(m->vals);
    *m = n;
}

void *core_map_get(CoreMap *m, const void *key)
{
    if (!m->cap)
        return NULL;
    size_t mask = (size_t)m->cap - 1;
    for (size_t i = map_hash(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key)
            return m->vals[i];
        if (!m->keys[i])
            return NULL;
    }
}

void core_map_put(CoreMap *m, const void *key, void *val)
{
    if ((m->len + 1) * 2 > m->cap)
        map_grow(m);
    size_t mask = (size_t)m->cap - 1;
    for (size_t i = map_hash(key) & mask;; i = (i + 1) & mask) {
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return;
        }
        if (!m->keys[i]) {
            m->keys[i] = key;
            m->vals[i] = val;
            m->len++;
            return;
        }
    }
}

void core_map_free(CoreMap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- builders */

static int next_var_id = 1;

CVar *core_var(const char *name, Type *t, Loc loc)
{
    CVar *v = NEW(CVar);
    v->id = next_var_id++;
    v->name = name ? name : "t";
    v->type = t;
    v->loc = loc;
    return v;
}

CAtom *core_atom_var(CVar *v)
{
    CAtom *a = NEW(CAtom);
    a->kind = CA_VAR;
    a->type = v->type;
    a->u.var = v;
    return a;
}

CAtom *core_atom_int(int64_t v)
{
    CAtom *a = NEW(CAtom);
    a->kind = CA_INT;
    a->type = type_int();
    a->u.ival = v;
    return a;
}

CAtom *core_atom_float(double v, Type *t)
{
    CAtom *a = NEW(CAtom);
    a->kind = CA_FLOAT;
    a->type = t ? t : type_float();
    /* an f32 literal holds a value of single precision */
    a->u.fval = type_resolve(a->type)->kind == TY_F32 ? (double)(float)v : v;
    return a;
}

CAtom *core_atom_bool(bool v)
{
    CAtom *a = NEW(CAtom);
    a->kind = CA_BOOL;
    a->type = type_bool();
    a->u.ival = v;
    return a;
}

CAtom *core_atom_unit(void)
{
    CAtom *a = NEW(CAtom);
    a->kind = CA_UNIT;
    a->type = type_unit();
    return a;
}

CAtom *core_atom_string(const char *s)
{
    CAtom *a = NEW(CAtom);
    a->kind = CA_STRING;
    a->type = type_string();
    a->u.sval = s;
    return a;
}

CAtom *core_atom_fun(CFun *f, Type *t)
{
    CAtom *a = NEW(CAtom);
    a->kind = CA_FUN;
    a->type = t;
    a->u.fun = f;
    return a;
}

Type *core_atom_type(CAtom *a) { return a->kind == CA_VAR ? a->u.var->type : a->type; }

CBlock *core_block_new(void) { return NEW(CBlock); }

CVar *core_bind(CBlock *b, const char *name, CExpr *e)
{
    CVar *v = core_var(name, e->type, e->loc);
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
    return v;
}

CExpr *core_expr(CExprKind kind, Type *t, Loc loc)
{
    CExpr *e = NEW(CExpr);
    e->kind = kind;
    e->type = t;
    e->loc = loc;
    return e;
}

CExpr *core_prim(Prim op, Type *t, Loc loc, CAtom **args, int nargs, int64_t imm)
{
    CExpr *e = core_expr(CE_PRIM, t, loc);
    e->u.prim.op = op;
    e->u.prim.imm = imm;
    e->nargs = nargs;
    e->args = NEWN(CAtom *, nargs > 0 ? nargs : 1);
    for (int i = 0; i < nargs; i++)
        e->args[i] = args[i];
    return e;
}

CAtom *core_emit_prim(CBlock *b, const char *name, Prim op, Type *t, Loc loc,
                      CAtom **args, int nargs, int64_t imm)
{
    return core_atom_var(core_bind(b, name, core_prim(op, t, loc, args, nargs, imm)));
}

CLambda *core_lambda(CVar **params, int nparams, CBlock *body, Type *t, Loc loc)
{
    CLambda *l = NEW(CLambda);
    l->params = NEWN(CVar *, nparams > 0 ? nparams : 1);
    for (int i = 0; i < nparams; i++)
        l->params[i] = params[i];
    l->nparams = nparams;
    l->body = body;
    l->type = t;
    l->loc = loc;
    return l;
}

CFun *core_fun_new(const char *name, const char *src_name, Loc loc)
{
    CFun *f = NEW(CFun);
    f->name = name;
    f->src_name = src_name ? src_name : name;
    f->loc = loc;
    return f;
}

void core_program_add(CProgram *p, CFun *f)
{
    CFun **n = NEWN(CFun *, p->nfuns + 1);
    if (p->nfuns)
        memcpy(n, p->funs, sizeof *n * (size_t)p->nfuns);
    n[p->nfuns++] = f;
    p->funs = n;
}

/* ---------------------------------------------------------------- types */

Type *core_type_proj(Type *t, int i)
{
    t = type_resolve(t);
    if (t->kind != TY_TUPLE || i < 0 || i >= t->nargs)
        return NULL;
    return type_resolve(t->args[i]);
}

Type *core_type_field(Type *t, int i)
{
    t = type_resolve(t);
    if (t->kind != TY_NAMED || t->decl->kind != TD_RECORD || i < 0 || i >= t->decl->nfields)
        return NULL;
    return type_resolve(type_field_type(t, i));
}

Type *core_type_con_arg(Type *t, int con)
{
    t = type_resolve(t);
    if (t->kind != TY_NAMED || t->decl->kind != TD_VARIANT || con < 0 || con >= t->decl->ncons)
        return NULL;
    Type *a = type_con_arg(t, con);
    return a ? type_resolve(a) : NULL;
}

int core_field_index(TypeDecl *d, const char *name)
{
    for (int i = 0; d && i < d->nfields; i++)
        if (d->fields[i] == name || strcmp(d->fields[i], name) == 0)
            return i;
    return -1;
}

bool core_type_is_ground(Type *t)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_VAR: case TY_QVAR: case TY_TANGENT: case TY_ERROR:
        return false;
    case TY_ARRAY:
        return core_type_is_ground(t->elem);
    case TY_TUPLE: case TY_FUNC: case TY_NAMED:
        for (int i = 0; i < t->nargs; i++)
            if (!core_type_is_ground(t->args[i]))
                return false;
        return true;
    default:
        return true;
    }
}

bool core_type_equal(Type *a, Type *b)
{
    a = type_resolve(a);
    b = type_resolve(b);
    if (a == b)
        return true;
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case TY_VAR: case TY_QVAR:
        return a->id == b->id && a->kind == TY_QVAR;
    case TY_ARRAY:
        return a->rank == b->rank && core_type_equal(a->elem, b->elem);
    case TY_NAMED:
        if (a->decl != b->decl)
            return false;
        /* fall through */
    case TY_TUPLE: case TY_FUNC: case TY_TANGENT:
        if (a->nargs != b->nargs)
            return false;
        for (int i = 0; i < a->nargs; i++)
            if (!core_type_equal(a->args[i], b->args[i]))
                return false;
        return true;
    default:
        return true;
    }
}

static bool is_scalar_type(Type *t)
{
    t = type_resolve(t);
    return t->kind == TY_INT || t->kind == TY_FLOAT || t->kind == TY_F32 || t->kind == TY_BOOL;
}

static bool is_int_type(Type *t)
{
    t = type_resolve(t);
    if (t->kind == TY_ARRAY)
        t = type_resolve(t->elem);
    return t->kind == TY_INT;
}

/* A partial prim cannot fail when its operands rule the failure out:
 * broadcasting with at most one array operand, float division, integer
 * division by a non-zero literal. Integer overflow is a debug check only
 * and does not count. */
bool core_prim_may_fail(CExpr *e)
{
    if (e->kind != CE_PRIM)
        return true;
    Prim op = e->u.prim.op;
    unsigned f = core_prims[op].flags;
    if (f & PRIM_EFFECT)
        return true;
    if (!(f & PRIM_PARTIAL))
        return false;
    if (f & PRIM_ELEMENTWISE) {
        int narrays = 0;
        for (int i = 0; i < e->nargs; i++)
            if (!is_scalar_type(core_atom_type(e->args[i])))
                narrays++;
        if (narrays > 1)
            return true;
        if (op == P_DIV || op == P_MOD) {
            if (!is_int_type(core_atom_type(e->args[0])))
                return false;
            CAtom *d = e->args[1];
            return !(d->kind == CA_INT && d->u.ival != 0);
        }
        if (op == P_POW)
            return is_int_type(core_atom_type(e->args[0]));
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- copying */

typedef struct CopyCtx {
    CoreMap map; /* CVar -> CAtom */
} CopyCtx;

static CVar *copy_bound(CopyCtx *c, CVar *v)
{
    if (!v)
        return NULL;
    CVar *n = core_var(v->name, v->type, v->loc);
    core_map_put(&c->map, v, core_atom_var(n));
    return n;
}

static CAtom *copy_atom(CopyCtx *c, CAtom *a)
{
    if (a->kind != CA_VAR)
        return a;
    CAtom *n = core_map_get(&c->map, a->u.var);
    return n ? n : a;
}

static CBlock *copy_block(CopyCtx *c, CBlock *b);

static CLambda *copy_lambda(CopyCtx *c, CLambda *l)
{
    if (!l)
        return NULL;
    CLambda *n = NEW(CLambda);
    *n = *l;
    n->params = NEWN(CVar *, l->nparams > 0 ? l->nparams : 1);
    for (int i = 0; i < l->nparams; i++)
        n->params[i] = copy_bound(c, l->params[i]);
    n->body = copy_block(c, l->body);
    return n;
}

static CExpr *copy_expr(CopyCtx *c, CExpr *e)
{
    CExpr *n = NEW(CExpr);
    *n = *e;
    n->args = NEWN(CAtom *, e->nargs > 0 ? e->nargs : 1);
    for (int i = 0; i < e->nargs; i++)
        n->args[i] = copy_atom(c, e->args[i]);
    switch (e->kind) {
    case CE_LAMBDA:
        n->u.lambda = copy_lambda(c, e->u.lambda);
        break;
    case CE_IF:
        n->u.if_.then_ = copy_block(c, e->u.if_.then_);
        n->u.if_.else_ = copy_block(c, e->u.if_.else_);
        break;
    case CE_CASE:
        n->u.case_.alts = NEWN(CAlt, e->u.case_.nalts > 0 ? e->u.case_.nalts : 1);
        for (int i = 0; i < e->u.case_.nalts; i++) {
            CAlt *a = &e->u.case_.alts[i];
            n->u.case_.alts[i].con = a->con;
            n->u.case_.alts[i].payload = copy_bound(c, a->payload);
            n->u.case_.alts[i].body = copy_block(c, a->body);
        }
        break;
    case CE_LOOP:
        n->u.loop.state = copy_bound(c, e->u.loop.state);
        n->u.loop.ivar = copy_bound(c, e->u.loop.ivar);
        n->u.loop.cond = e->u.loop.cond ? copy_block(c, e->u.loop.cond) : NULL;
        n->u.loop.body = copy_block(c, e->u.loop.body);
        break;
    case CE_SOAC:
        n->u.soac.fn = copy_lambda(c, e->u.soac.fn);
        break;
    case CE_DERIV:
        n->u.deriv.fn = copy_lambda(c, e->u.deriv.fn);
        break;
    default:
        break;
    }
    return n;
}

static CBlock *copy_block(CopyCtx *c, CBlock *b)
{
    CBlock *n = core_block_new();
    for (int i = 0; i < b->nbinds; i++) {
        CExpr *e = copy_expr(c, b->binds[i].e);
        CVar *old = b->binds[i].var;
        CVar *v = core_bind(n, old->name, e);
        v->type = old->type;
        v->loc = old->loc;
        core_map_put(&c->map, old, core_atom_var(v));
    }
    n->result = copy_atom(c, b->result);
    return n;
}

CBlock *core_copy_block(CBlock *b, CVar **from, CAtom **to, int n)
{
    CopyCtx c = {0};
    for (int i = 0; i < n; i++)
        core_map_put(&c.map, from[i], to[i]);
    CBlock *r = copy_block(&c, b);
    core_map_free(&c.map);
    return r;
}

CLambda *core_copy_lambda(CLambda *l, CVar **from, CAtom **to, int n)
{
    CopyCtx c = {0};
    for (int i = 0; i < n; i++)
        core_map_put(&c.map, from[i], to[i]);
    CLambda *r = copy_lambda(&c, l);
    core_map_free(&c.map);
    return r;
}

/* ---------------------------------------------------------------- printing */

void core_print_type(FILE *out, Type *t)
{
    StrBuf b = {0};
    type_print(&b, t);
    fputs(b.data ? b.data : "?", out);
    sb_free(&b);
}

static void print_var(FILE *out, CVar *v)
{
    const char *n = v->name && *v->name ? v->name : "t";
    size_t len = strlen(n);
    if (n[len - 1] >= '0' && n[len - 1] <= '9')
        fprintf(out, "%s_%d", n, v->id);
    else
        fprintf(out, "%s%d", n, v->id);
}

/* The shortest decimal that reads back to the same value (as Python's
 * repr), always with a '.' or an exponent so that it reads as a float. */
static void print_float(FILE *out, double v, bool f32)
{
    char buf[64];
    if (isnan(v)) {
        strcpy(buf, "nan");
    } else if (isinf(v)) {
        strcpy(buf, v < 0 ? "-inf" : "inf");
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, v);
            if (f32 ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v)
                break;
        }
        if (!strpbrk(buf, ".e"))
            strcat(buf, ".0");
    }
    fputs(buf, out);
    if (f32)
        fputs("f32", out);
}

void core_print_string_literal(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        switch (ch) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\t': fputs("\\t", out); break;
        case '\r': fputs("\\r", out); break;
        default:
            if (ch < 32 || ch == 127)
                fprintf(out, "\\x%02x", ch);
            else
                fputc(ch, out);
        }
    }
    fputc('"', out);
}

void core_print_atom(FILE *out, CAtom *a)
{
    switch (a->kind) {
    case CA_VAR: print_var(out, a->u.var); break;
    case CA_INT: fprintf(out, "%lld", (long long)a->u.ival); break;
    case CA_FLOAT: print_float(out, a->u.fval, type_resolve(a->type)->kind == TY_F32); break;
    case CA_BOOL: fputs(a->u.ival ? "true" : "false", out); break;
    case CA_UNIT: fputs("()", out); break;
    case CA_STRING: core_print_string_literal(out, a->u.sval); break;
    case CA_FUN: fprintf(out, "@%s", a->u.fun->name); break;
    }
}

static void print_args(FILE *out, CAtom **args, int n)
{
    fputc('(', out);
    for (int i = 0; i < n; i++) {
        if (i)
            fputs(", ", out);
        core_print_atom(out, args[i]);
    }
    fputc(')', out);
}

static void print_param(FILE *out, CVar *v)
{
    fputc('(', out);
    print_var(out, v);
    fputs(" : ", out);
    core_print_type(out, v->type);
    fputc(')', out);
}

static const char *soac_names[] = {"map", "reduce", "fold", "scan", "filter"};
static const char *deriv_names[] = {
    "none", "jvp", "vjp", "grad", "value_and_grad", "jacfwd", "jacrev",
    "hessian", "hvp", "jet", "fwdgrad", "fwdgrad_dir", "stop_gradient",
};

static void indent_to(FILE *out, int n)
{
    for (int i = 0; i < n; i++)
        fputc(' ', out);
}

static void print_lambda(FILE *out, CLambda *l, int indent)
{
    fputs("fn ", out);
    for (int i = 0; i < l->nparams; i++) {
        print_param(out, l->params[i]);
        fputc(' ', out);
    }
    fputs("=>\n", out);
    core_print_block(out, l->body, indent + 4);
}

static const char *con_name(Type *t, int con)
{
    t = type_resolve(t);
    if (con < 0)
        return "_";
    if (t->kind == TY_NAMED && t->decl->kind == TD_VARIANT && con < t->decl->ncons)
        return t->decl->cons[con];
    return "?";
}

/* Prints the right-hand side of a binding; nested blocks go on the next
 * lines, indented under the binding. */
static void print_expr(FILE *out, CExpr *e, int indent)
{
    switch (e->kind) {
    case CE_ATOM:
        core_print_atom(out, e->args[0]);
        fputc('\n', out);
        break;
    case CE_PRIM:
        fprintf(out, "prim %s", core_prims[e->u.prim.op].name);
        switch (e->u.prim.op) {
        case P_PROJ: case P_FIELD: case P_CON: case P_PAYLOAD: case P_SLICE:
            fprintf(out, "[%lld]", (long long)e->u.prim.imm);
            break;
        default:
            if (e->u.prim.imm)
                fprintf(out, "[%lld]", (long long)e->u.prim.imm);
        }
        print_args(out, e->args, e->nargs);
        if (e->u.prim.op == P_CON || e->u.prim.op == P_PAYLOAD) {
            Type *vt = e->u.prim.op == P_CON ? e->type
                       : e->nargs ? core_atom_type(e->args[0]) : NULL;
            if (vt)
                fprintf(out, "  -- %s", con_name(vt, (int)e->u.prim.imm));
        }
        fputc('\n', out);
        break;
    case CE_CALL:
        fprintf(out, "call %s", e->u.fun->name);
        print_args(out, e->args, e->nargs);
        fputc('\n', out);
        break;
    case CE_APPLY:
        fputs("apply ", out);
        core_print_atom(out, e->args[0]);
        print_args(out, e->args + 1, e->nargs - 1);
        fputc('\n', out);
        break;
    case CE_LAMBDA:
        print_lambda(out, e->u.lambda, indent);
        break;
    case CE_IF:
        fputs("if ", out);
        core_print_atom(out, e->args[0]);
        fputc('\n', out);
        indent_to(out, indent + 2);
        fputs("then\n", out);
        core_print_block(out, e->u.if_.then_, indent + 4);
        indent_to(out, indent + 2);
        fputs("else\n", out);
        core_print_block(out, e->u.if_.else_, indent + 4);
        break;
    case CE_CASE: {
        fputs("case ", out);
        core_print_atom(out, e->args[0]);
        fputs(" of\n", out);
        Type *vt = core_atom_type(e->args[0]);
        for (int i = 0; i < e->u.case_.nalts; i++) {
            CAlt *a = &e->u.case_.alts[i];
            indent_to(out, indent + 2);
            fprintf(out, "| %s", con_name(vt, a->con));
            if (a->payload) {
                fputc(' ', out);
                print_param(out, a->payload);
            }
            fputs(" =>\n", out);
            core_print_block(out, a->body, indent + 4);
        }
        break;
    }
    case CE_LOOP:
        fputs("loop ", out);
        print_param(out, e->u.loop.state);
        fputs(" = ", out);
        core_print_atom(out, e->args[0]);
        if (e->u.loop.kind == LOOP_FOR) {
            fputs(" for ", out);
            print_var(out, e->u.loop.ivar);
            fputs(" < ", out);
            core_print_atom(out, e->args[1]);
            fputs(" do\n", out);
        } else {
            fputs(" while\n", out);
            core_print_block(out, e->u.loop.cond, indent + 4);
            indent_to(out, indent + 2);
            fputs("do\n", out);
        }
        core_print_block(out, e->u.loop.body, indent + 4);
        break;
    case CE_SOAC:
        fprintf(out, "soac %s", soac_names[e->u.soac.kind]);
        print_args(out, e->args, e->nargs);
        fputc(' ', out);
        print_lambda(out, e->u.soac.fn, indent);
        break;
    case CE_DERIV:
        fprintf(out, "deriv %s", deriv_names[e->u.deriv.kind]);
        print_args(out, e->args, e->nargs);
        if (e->u.deriv.fn) {
            fputc(' ', out);
            print_lambda(out, e->u.deriv.fn, indent);
        } else {
            fputc('\n', out);
        }
        break;
    }
}

void core_print_block(FILE *out, CBlock *b, int indent)
{
    for (int i = 0; i < b->nbinds; i++) {
        CBind *bd = &b->binds[i];
        indent_to(out, indent);
        fputs("let ", out);
        print_var(out, bd->var);
        fputs(" : ", out);
        core_print_type(out, bd->var->type);
        fputs(" = ", out);
        print_expr(out, bd->e, indent);
    }
    indent_to(out, indent);
    fputs("in ", out);
    if (b->result)
        core_print_atom(out, b->result);
    else
        fputs("<no result>", out);
    fputc('\n', out);
}

void core_print_fun(FILE *out, CFun *f)
{
    if (f->is_export)
        fputs("export ", out);
    fprintf(out, "def %s", f->name);
    for (int i = 0; i < f->nparams; i++) {
        fputc(' ', out);
        print_param(out, f->params[i]);
    }
    fputs(" : ", out);
    core_print_type(out, f->ret);
    fputs(" =", out);
    const char *sep = "  -- ";
    if (f->is_main) {
        fprintf(out, "%smain", sep);
        sep = ", ";
    } else if (f->src_name && strcmp(f->src_name, f->name) != 0) {
        fprintf(out, "%s%s", sep, f->src_name);
        sep = ", ";
    }
    if (f->jvp_rule) {
        fprintf(out, "%sjvp rule %s", sep, f->jvp_rule->name);
        sep = ", ";
    }
    if (f->vjp_rule) {
        fprintf(out, "%svjp rule %s", sep, f->vjp_rule->name);
        sep = ", ";
    }
    if (f->rule_of)
        fprintf(out, "%srule of %s", sep, f->rule_of->name);
    fputc('\n', out);
    if (f->body)
        core_print_block(out, f->body, 2);
}

void core_print_program(FILE *out, CProgram *p)
{
    for (int i = 0; i < p->nfuns; i++) {
        if (i)
            fputc('\n', out);
        core_print_fun(out, p->funs[i]);
    }
}

/* ---------------------------------------------------------------- verifier */

/* The verifier walks every function with the set of variables in scope and
 * checks: each variable bound once and used only in scope; ANF (operands
 * are atoms by construction); types ground; prim arities; the types of
 * products, sums, calls, branches and loops. */
typedef struct Verify {
    CoreMap bound;    /* CVar -> (void*)1 once bound anywhere */
    CoreMap scope;    /* CVar -> (void*)1 while in scope */
    Vec stack;        /* vars in scope, for popping */
    CoreMap funs;     /* CFun -> (void*)1 for the program's functions */
    CFun *fun;
    CProgram *prog;
    bool ok;
} Verify;

static void vfail(Verify *v, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void vfail(Verify *v, Loc loc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!loc.file)
        loc = v->fun ? v->fun->loc : loc;
    error_at(loc, "internal error: core: %s (in %s)", msg, v->fun ? v->fun->name : "?");
    v->ok = false;
}

static void vbind(Verify *v, CVar *x, Loc loc)
{
    if (!x) {
        vfail(v, loc, "missing variable");
        return;
    }
    if (core_map_get(&v->bound, x)) {
        vfail(v, loc, "variable %s%d bound twice", x->name, x->id);
        return;
    }
    if (!x->type || !core_type_is_ground(x->type))
        vfail(v, loc, "variable %s%d has no ground type", x->name, x->id);
    core_map_put(&v->bound, x, (void *)1);
    core_map_put(&v->scope, x, (void *)1);
    vec_push(&v->stack, x);
}

static void vpop_to(Verify *v, int mark)
{
    while (v->stack.len > mark) {
        CVar *x = vec_pop(&v->stack);
        core_map_put(&v->scope, x, NULL);
    }
}

static void vatom(Verify *v, CAtom *a, Loc loc)
{
    if (!a) {
        vfail(v, loc, "missing atom");
        return;
    }
    if (a->kind == CA_VAR) {
        if (!core_map_get(&v->scope, a->u.var))
            vfail(v, loc, "variable %s%d used out of scope", a->u.var->name, a->u.var->id);
    } else if (!a->type || !core_type_is_ground(a->type)) {
        vfail(v, loc, "literal without a ground type");
    }
}

static bool vsame(Type *a, Type *b) { return a && b && core_type_equal(a, b); }

static char *tstr(Type *t) { return t ? type_to_string(t) : "<null>"; }

static void vblock(Verify *v, CBlock *b, Type *want, Loc loc);

static void vlambda(Verify *v, CLambda *l, Loc loc)
{
    if (!l) {
        vfail(v, loc, "missing lambda");
        return;
    }
    int mark = v->stack.len;
    for (int i = 0; i < l->nparams; i++)
        vbind(v, l->params[i], loc);
    vblock(v, l->body, NULL, loc);
    vpop_to(v, mark);
}

static bool is_arith_operand(Type *t)
{
    t = type_resolve(t);
    if (t->kind == TY_ARRAY)
        t = type_resolve(t->elem);
    return t->kind == TY_INT || t->kind == TY_FLOAT || t->kind == TY_F32 || t->kind == TY_BOOL;
}

static void vprim(Verify *v, CExpr *e)
{
    Prim op = e->u.prim.op;
    int ar = core_prims[op].arity;
    if (ar >= 0 && e->nargs != ar)
        vfail(v, e->loc, "prim %s takes %d operands, not %d", core_prims[op].name, ar, e->nargs);
    Type *t = type_resolve(e->type);
    long long imm = (long long)e->u.prim.imm;
    switch (op) {
    case P_TUPLE:
        if (t->kind != TY_TUPLE || t->nargs != e->nargs) {
            vfail(v, e->loc, "tuple of %d has type %s", e->nargs, tstr(t));
            return;
        }
        for (int i = 0; i < e->nargs; i++)
            if (!vsame(core_atom_type(e->args[i]), t->args[i]))
                vfail(v, e->loc, "tuple component %d: %s, not %s", i,
                      tstr(core_atom_type(e->args[i])), tstr(t->args[i]));
        break;
    case P_PROJ: {
        Type *c = e->nargs == 1 ? core_type_proj(core_atom_type(e->args[0]), (int)imm) : NULL;
        if (!vsame(c, t))
            vfail(v, e->loc, "proj[%lld] of %s has type %s", imm,
                  e->nargs ? tstr(core_atom_type(e->args[0])) : "?", tstr(t));
        break;
    }
    case P_RECORD:
        if (t->kind != TY_NAMED || t->decl->kind != TD_RECORD || t->decl->nfields != e->nargs) {
            vfail(v, e->loc, "record of %d fields has type %s", e->nargs, tstr(t));
            return;
        }
        for (int i = 0; i < e->nargs; i++)
            if (!vsame(core_atom_type(e->args[i]), core_type_field(t, i)))
                vfail(v, e->loc, "record field %s: %s, not %s", t->decl->fields[i],
                      tstr(core_atom_type(e->args[i])), tstr(core_type_field(t, i)));
        break;
    case P_FIELD: {
        Type *c = e->nargs == 1 ? core_type_field(core_atom_type(e->args[0]), (int)imm) : NULL;
        if (!vsame(c, t))
            vfail(v, e->loc, "field[%lld] of %s has type %s", imm,
                  e->nargs ? tstr(core_atom_type(e->args[0])) : "?", tstr(t));
        break;
    }
    case P_CON: {
        if (t->kind != TY_NAMED || t->decl->kind != TD_VARIANT || imm < 0 || imm >= t->decl->ncons) {
            vfail(v, e->loc, "con[%lld] has type %s", imm, tstr(t));
            return;
        }
        Type *arg = core_type_con_arg(t, (int)imm);
        if ((arg != NULL) != (e->nargs == 1) || e->nargs > 1)
            vfail(v, e->loc, "con %s with %d operands", t->decl->cons[imm], e->nargs);
        else if (arg && !vsame(arg, core_atom_type(e->args[0])))
            vfail(v, e->loc, "con %s payload %s, not %s", t->decl->cons[imm],
                  tstr(core_atom_type(e->args[0])), tstr(arg));
        break;
    }
    case P_TAG:
        if (t->kind != TY_INT)
            vfail(v, e->loc, "tag has type %s", tstr(t));
        break;
    case P_PAYLOAD: {
        Type *c = e->nargs == 1 ? core_type_con_arg(core_atom_type(e->args[0]), (int)imm) : NULL;
        if (!vsame(c, t))
            vfail(v, e->loc, "payload[%lld] has type %s", imm, tstr(t));
        break;
    }
    case P_ADD: case P_SUB: case P_MUL: case P_DIV: case P_MOD: case P_POW: case P_NEG:
    case P_MIN: case P_MAX: case P_ATAN2:
        for (int i = 0; i < e->nargs; i++)
            if (!is_arith_operand(core_atom_type(e->args[i])))
                vfail(v, e->loc, "%s on %s", core_prims[op].name, tstr(core_atom_type(e->args[i])));
        break;
    case P_EQ: case P_NE: case P_LT: case P_LE: case P_GT: case P_GE: case P_NOT: {
        Type *r = t->kind == TY_ARRAY ? type_resolve(t->elem) : t;
        if (r->kind != TY_BOOL)
            vfail(v, e->loc, "%s has type %s", core_prims[op].name, tstr(t));
        break;
    }
    case P_ARRAY:
        if (t->kind != TY_ARRAY)
            vfail(v, e->loc, "array literal has type %s", tstr(t));
        break;
    case P_INDEX: case P_SLICE:
        if (e->nargs < 1 || type_resolve(core_atom_type(e->args[0]))->kind != TY_ARRAY)
            vfail(v, e->loc, "%s of a non-array", core_prims[op].name);
        if (op == P_SLICE && (e->nargs - 1) % 2 != 0)
            vfail(v, e->loc, "slice with an odd number of bounds");
        break;
    default:
        break;
    }
}

static void vexpr(Verify *v, CExpr *e)
{
    if (!e->type || !core_type_is_ground(e->type))
        vfail(v, e->loc, "expression without a ground type");
    for (int i = 0; i < e->nargs; i++)
        vatom(v, e->args[i], e->loc);
    switch (e->kind) {
    case CE_ATOM:
        if (e->nargs != 1)
            vfail(v, e->loc, "atom expression with %d operands", e->nargs);
        else if (!vsame(core_atom_type(e->args[0]), e->type))
            vfail(v, e->loc, "atom of type %s bound as %s",
                  tstr(core_atom_type(e->args[0])), tstr(e->type));
        break;
    case CE_PRIM:
        vprim(v, e);
        break;
    case CE_CALL: {
        CFun *f = e->u.fun;
        if (!f) {
            vfail(v, e->loc, "call without a function");
            break;
        }
        if (!core_map_get(&v->funs, f))
            vfail(v, e->loc, "call of %s, which is not in the program", f->name);
        if (f->nparams != e->nargs) {
            vfail(v, e->loc, "call %s with %d arguments, it takes %d", f->name, e->nargs, f->nparams);
            break;
        }
        for (int i = 0; i < e->nargs; i++)
            if (!vsame(core_atom_type(e->args[i]), f->params[i]->type))
                vfail(v, e->loc, "call %s argument %d: %s, not %s", f->name, i,
                      tstr(core_atom_type(e->args[i])), tstr(f->params[i]->type));
        if (!vsame(f->ret, e->type))
            vfail(v, e->loc, "call %s returns %s, bound as %s", f->name, tstr(f->ret), tstr(e->type));
        break;
    }
    case CE_APPLY: {
        if (e->nargs != 2) {
            vfail(v, e->loc, "apply with %d operands", e->nargs);
            break;
        }
        Type *ft = type_resolve(core_atom_type(e->args[0]));
        if (ft->kind != TY_FUNC) {
            vfail(v, e->loc, "apply of a %s", tstr(ft));
            break;
        }
        if (!vsame(ft->args[0], core_atom_type(e->args[1])))
            vfail(v, e->loc, "apply argument %s, not %s", tstr(core_atom_type(e->args[1])),
                  tstr(ft->args[0]));
        if (!vsame(ft->args[1], e->type))
            vfail(v, e->loc, "apply returns %s, bound as %s", tstr(ft->args[1]), tstr(e->type));
        break;
    }
    case CE_LAMBDA: {
        CLambda *l = e->u.lambda;
        Type *ft = type_resolve(e->type);
        if (!l || l->nparams != 1 || ft->kind != TY_FUNC) {
            vfail(v, e->loc, "closure must take one parameter and have a function type");
            break;
        }
        if (!vsame(l->params[0]->type, ft->args[0]))
            vfail(v, e->loc, "closure parameter %s, type says %s", tstr(l->params[0]->type),
                  tstr(ft->args[0]));
        int mark = v->stack.len;
        vbind(v, l->params[0], e->loc);
        vblock(v, l->body, ft->args[1], e->loc);
        vpop_to(v, mark);
        break;
    }
    case CE_IF:
        if (e->nargs != 1 || type_resolve(core_atom_type(e->args[0]))->kind != TY_BOOL)
            vfail(v, e->loc, "if on a non-bool");
        vblock(v, e->u.if_.then_, e->type, e->loc);
        vblock(v, e->u.if_.else_, e->type, e->loc);
        break;
    case CE_CASE: {
        Type *st = e->nargs == 1 ? type_resolve(core_atom_type(e->args[0])) : NULL;
        if (!st || st->kind != TY_NAMED || st->decl->kind != TD_VARIANT) {
            vfail(v, e->loc, "case on a non-variant");
            break;
        }
        for (int i = 0; i < e->u.case_.nalts; i++) {
            CAlt *a = &e->u.case_.alts[i];
            int mark = v->stack.len;
            if (a->con < -1 || a->con >= st->decl->ncons) {
                vfail(v, e->loc, "case alternative %d out of range", a->con);
                continue;
            }
            if (a->con == -1 && i != e->u.case_.nalts - 1)
                vfail(v, e->loc, "default alternative not last");
            for (int j = 0; j < i; j++)
                if (e->u.case_.alts[j].con == a->con)
                    vfail(v, e->loc, "constructor %d twice in a case", a->con);
            if (a->con >= 0) {
                Type *arg = core_type_con_arg(st, a->con);
                if ((arg != NULL) != (a->payload != NULL))
                    vfail(v, e->loc, "case alternative %s: payload mismatch", st->decl->cons[a->con]);
                else if (arg && !vsame(arg, a->payload->type))
                    vfail(v, e->loc, "case payload %s, not %s", tstr(a->payload->type), tstr(arg));
            } else if (a->payload) {
                vfail(v, e->loc, "default alternative with a payload");
            }
            if (a->payload)
                vbind(v, a->payload, e->loc);
            vblock(v, a->body, e->type, e->loc);
            vpop_to(v, mark);
        }
        break;
    }
    case CE_LOOP: {
        CVar *s = e->u.loop.state;
        if (!s || e->nargs < 1) {
            vfail(v, e->loc, "loop without state");
            break;
        }
        if (!vsame(core_atom_type(e->args[0]), s->type) || !vsame(s->type, e->type))
            vfail(v, e->loc, "loop state %s, init %s, result %s", tstr(s->type),
                  tstr(core_atom_type(e->args[0])), tstr(e->type));
        int mark = v->stack.len;
        vbind(v, s, e->loc);
        if (e->u.loop.kind == LOOP_FOR) {
            if (e->nargs != 2 || type_resolve(core_atom_type(e->args[1]))->kind != TY_INT)
                vfail(v, e->loc, "for loop without an int count");
            if (!e->u.loop.ivar || type_resolve(e->u.loop.ivar->type)->kind != TY_INT)
                vfail(v, e->loc, "for loop without an int counter");
            else
                vbind(v, e->u.loop.ivar, e->loc);
        } else {
            if (!e->u.loop.cond)
                vfail(v, e->loc, "while loop without a condition");
            else
                vblock(v, e->u.loop.cond, type_bool(), e->loc);
        }
        vblock(v, e->u.loop.body, s->type, e->loc);
        vpop_to(v, mark);
        break;
    }
    case CE_SOAC: {
        CLambda *l = e->u.soac.fn;
        int want = -1;
        switch (e->u.soac.kind) {
        case SOAC_MAP: want = e->nargs; break;
        case SOAC_REDUCE: case SOAC_FOLD: case SOAC_SCAN:
            want = 2;
            if (e->nargs != 2)
                vfail(v, e->loc, "soac %s with %d operands", soac_names[e->u.soac.kind], e->nargs);
            break;
        case SOAC_FILTER:
            want = 1;
            if (e->nargs != 1)
                vfail(v, e->loc, "filter with %d operands", e->nargs);
            break;
        }
        if (!l || l->nparams != want)
            vfail(v, e->loc, "soac %s lambda takes %d parameters, not %d",
                  soac_names[e->u.soac.kind], l ? l->nparams : -1, want);
        vlambda(v, l, e->loc);
        break;
    }
    case CE_DERIV:
        if (e->u.deriv.kind == DERIV_STOP_GRADIENT) {
            if (e->nargs != 1)
                vfail(v, e->loc, "stop_gradient with %d operands", e->nargs);
        } else if (!e->u.deriv.fn) {
            vfail(v, e->loc, "deriv without a function");
        } else {
            vlambda(v, e->u.deriv.fn, e->loc);
        }
        break;
    }
}

static void vblock(Verify *v, CBlock *b, Type *want, Loc loc)
{
    if (!b) {
        vfail(v, loc, "missing block");
        return;
    }
    int mark = v->stack.len;
    for (int i = 0; i < b->nbinds; i++) {
        CBind *bd = &b->binds[i];
        if (!bd->e) {
            vfail(v, loc, "binding without an expression");
            continue;
        }
        vexpr(v, bd->e);
        if (bd->var && !vsame(bd->var->type, bd->e->type))
            vfail(v, bd->e->loc, "variable %s%d : %s bound to a %s", bd->var->name, bd->var->id,
                  tstr(bd->var->type), tstr(bd->e->type));
        vbind(v, bd->var, bd->e->loc);
    }
    if (!b->result)
        vfail(v, loc, "block without a result");
    else {
        vatom(v, b->result, loc);
        if (want && !vsame(core_atom_type(b->result), want))
            vfail(v, loc, "block result %s, expected %s", tstr(core_atom_type(b->result)), tstr(want));
    }
    vpop_to(v, mark);
}

bool core_verify(CProgram *p)
{
    Verify v = {.prog = p, .ok = true};
    for (int i = 0; i < p->nfuns; i++)
        core_map_put(&v.funs, p->funs[i], (void *)1);
    for (int i = 0; i < p->nfuns; i++) {
        CFun *f = p->funs[i];
        v.fun = f;
        int mark = v.stack.len;
        for (int j = 0; j < f->nparams; j++)
            vbind(&v, f->params[j], f->loc);
        if (!f->ret || !core_type_is_ground(f->ret))
            vfail(&v, f->loc, "function without a ground result type");
        if (f->body)
            vblock(&v, f->body, f->ret, f->loc);
        vpop_to(&v, mark);
    }
    core_map_free(&v.funs);
    core_map_free(&v.scope);
    core_map_free(&v.bound);
    vec_free(&v.stack);
    return v.ok;
}
