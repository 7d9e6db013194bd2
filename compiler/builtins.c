/* builtins.c — the built-in functions (LANGUAGE.md §5, §6) and the
 * operators used as functions: their type schemes, written in DL type
 * syntax, and their class constraints.
 *
 * Scheme syntax: 'a.. are quantified; int float f32 bool unit string key;
 * []t; (t, u); t -> u; T(t) the tangent type. Constraint syntax, items
 * separated by ';':
 *   num 'a | floating 'a | numeric 'a | scalar 'a | ord 'a | eq 'a
 *   | array 'a | anyarray 'a            class membership (CK_CLASS)
 *   vfloating 'a | vnumeric 'a          floating / numeric, and also tuples
 *                                       and records of such values (the
 *                                       elementwise math built-ins act
 *                                       componentwise, LANGUAGE.md §3)
 *   bcast CLASS 'a 'b 'c                'a op 'b : 'c with broadcasting
 *   matmul 'a 'b 'c | convert 'a 'b SCALAR | shape 's 'r SCALAR
 *   reshape 's 'a 'b | reduce_all CLASS 'a 'e | drop_axis CLASS 'a 'b [SCALAR]
 *   rank_in N M CLASS 'a [SCALAR] | one_hot 'a 'b | hessian 'a 'b
 *   compose 'a 'b 'c */
#include "typecheck.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const BuiltinInfo table[] = {
    {B_NONE, "", "", NULL, DERIV_NONE},
    /* elementwise math: floating (float, f32, arrays of them), and
     * componentwise on tuples and records of these */
    {B_EXP, "exp", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_LOG, "log", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_LOG1P, "log1p", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_EXPM1, "expm1", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_SQRT, "sqrt", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_SIN, "sin", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_COS, "cos", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_TAN, "tan", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_TANH, "tanh", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_ABS, "abs", "'a -> 'a", "vnumeric 'a", DERIV_NONE},
    {B_SIGMOID, "sigmoid", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_SOFTPLUS, "softplus", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_RELU, "relu", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_FLOOR, "floor", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_CEIL, "ceil", "'a -> 'a", "vfloating 'a", DERIV_NONE},
    {B_ATAN2, "atan2", "'a -> 'b -> 'c", "bcast floating 'a 'b 'c", DERIV_NONE},
    {B_POW, "pow", "'a -> 'b -> 'c", "bcast floating 'a 'b 'c", DERIV_NONE},
    {B_MIN, "min", "'a -> 'b -> 'c", "bcast numeric 'a 'b 'c", DERIV_NONE},
    {B_MAX, "max", "'a -> 'b -> 'c", "bcast numeric 'a 'b 'c", DERIV_NONE},
    {B_TO_FLOAT, "float", "'a -> 'b", "convert 'a 'b float", DERIV_NONE},
    {B_TO_INT, "int", "'a -> 'b", "convert 'a 'b int", DERIV_NONE},
    {B_TO_F32, "f32", "'a -> 'b", "convert 'a 'b f32", DERIV_NONE},
    /* arrays (over the outer axis unless said otherwise) */
    {B_LENGTH, "length", "[]'a -> int", NULL, DERIV_NONE},
    {B_IOTA, "iota", "int -> []int", NULL, DERIV_NONE},
    {B_REPLICATE, "replicate", "int -> 'a -> []'a", NULL, DERIV_NONE},
    {B_ZEROS, "zeros", "'s -> 'r", "shape 's 'r float", DERIV_NONE},
    {B_ONES, "ones", "'s -> 'r", "shape 's 'r float", DERIV_NONE},
    {B_ZEROS_LIKE, "zeros_like", "'a -> T('a)", NULL, DERIV_NONE},
    {B_MAP, "map", "('a -> 'b) -> []'a -> []'b", NULL, DERIV_NONE},
    {B_MAP2, "map2", "('a -> 'b -> 'c) -> []'a -> []'b -> []'c", NULL, DERIV_NONE},
    {B_MAP3, "map3", "('a -> 'b -> 'c -> 'd) -> []'a -> []'b -> []'c -> []'d", NULL,
     DERIV_NONE},
    {B_ZIP, "zip", "[]'a -> []'b -> []('a, 'b)", NULL, DERIV_NONE},
    {B_UNZIP, "unzip", "[]('a, 'b) -> ([]'a, []'b)", NULL, DERIV_NONE},
    {B_REDUCE, "reduce", "('a -> 'a -> 'a) -> 'a -> []'a -> 'a", NULL, DERIV_NONE},
    {B_FOLD, "fold", "('b -> 'a -> 'b) -> 'b -> []'a -> 'b", NULL, DERIV_NONE},
    {B_SCAN, "scan", "('a -> 'a -> 'a) -> 'a -> []'a -> []'a", NULL, DERIV_NONE},
    {B_FILTER, "filter", "('a -> bool) -> []'a -> []'a", NULL, DERIV_NONE},
    /* reductions over all elements */
    {B_SUM, "sum", "'a -> 'e", "reduce_all numeric 'a 'e", DERIV_NONE},
    {B_PROD, "prod", "'a -> 'e", "reduce_all numeric 'a 'e", DERIV_NONE},
    {B_MEAN, "mean", "'a -> 'e", "reduce_all floating 'a 'e", DERIV_NONE},
    {B_MAXIMUM, "maximum", "'a -> 'e", "reduce_all numeric 'a 'e", DERIV_NONE},
    {B_MINIMUM, "minimum", "'a -> 'e", "reduce_all numeric 'a 'e", DERIV_NONE},
    /* over the last axis: []a -> int, [][]a -> []int */
    {B_ARGMAX, "argmax", "'a -> 'b", "drop_axis numeric 'a 'b int", DERIV_NONE},
    {B_DOT, "dot", "[]'a -> []'a -> 'a", "scalar 'a", DERIV_NONE},
    {B_TRANSPOSE, "transpose", "[][]'a -> [][]'a", NULL, DERIV_NONE},
    {B_RESHAPE, "reshape", "'s -> 'a -> 'b", "reshape 's 'a 'b", DERIV_NONE},
    {B_CONCAT, "concat", "[]'a -> []'a -> []'a", NULL, DERIV_NONE},
    {B_REVERSE, "reverse", "[]'a -> []'a", NULL, DERIV_NONE},
    {B_SLICE, "slice", "[]'a -> int -> int -> []'a", NULL, DERIV_NONE},
    {B_TAKE, "take", "int -> []'a -> []'a", NULL, DERIV_NONE},
    {B_DROP, "drop", "int -> []'a -> []'a", NULL, DERIV_NONE},
    {B_ONE_HOT, "one_hot", "int -> 'a -> 'b", "one_hot 'a 'b", DERIV_NONE},
    {B_SHAPE, "shape", "'a -> []int", "anyarray 'a", DERIV_NONE},
    /* numerics with derivative rules; softmax/logsumexp on the last axis */
    {B_SOFTMAX, "softmax", "'a -> 'a", "rank_in 1 2 floating 'a", DERIV_NONE},
    {B_LOGSUMEXP, "logsumexp", "'a -> 'b", "drop_axis floating 'a 'b", DERIV_NONE},
    {B_DET, "det", "[][]float -> float", NULL, DERIV_NONE},
    {B_INV, "inv", "[][]float -> [][]float", NULL, DERIV_NONE},
    {B_SOLVE, "solve", "[][]float -> 'b -> 'b", "rank_in 1 2 floating 'b float", DERIV_NONE},
    {B_CHOLESKY, "cholesky", "[][]float -> [][]float", NULL, DERIV_NONE},
    /* random numbers */
    {B_KEY, "key", "int -> key", NULL, DERIV_NONE},
    {B_SPLIT, "split", "key -> (key, key)", NULL, DERIV_NONE},
    {B_UNIFORM, "uniform", "key -> 's -> 'r", "shape 's 'r float", DERIV_NONE},
    {B_NORMAL, "normal", "key -> 's -> 'r", "shape 's 'r float", DERIV_NONE},
    {B_PERMUTATION, "permutation", "key -> int -> []int", NULL, DERIV_NONE},
    /* N(0, I) with the structure of the second argument (float, f32,
     * arrays of them, tuples and records of these) */
    {B_NORMAL_LIKE, "normal_like", "key -> 'a -> 'a", "vfloating 'a", DERIV_NONE},
    /* I/O */
    {B_PRINT, "print", "'a -> unit", NULL, DERIV_NONE},
    {B_PRINTLN, "println", "'a -> unit", NULL, DERIV_NONE},
    {B_READ_CSV, "read_csv", "string -> [][]float", NULL, DERIV_NONE},
    {B_READ_NPY, "read_npy", "string -> 'a", "array 'a", DERIV_NONE},
    {B_WRITE_NPY, "write_npy", "string -> 'a -> unit", "array 'a", DERIV_NONE},
    {B_READ_IDX, "read_idx", "string -> 'a", "array 'a", DERIV_NONE},
    {B_PROGRESS, "progress", "string -> int -> int -> string -> unit", NULL, DERIV_NONE},
    {B_ARGS, "args", "unit -> []string", NULL, DERIV_NONE},
    {B_SHOW, "show", "'a -> string", NULL, DERIV_NONE},
    {B_STR_CONCAT, "str_concat", "string -> string -> string", NULL, DERIV_NONE},
    {B_ERROR, "error", "string -> 'a", NULL, DERIV_NONE},
    {B_CLOCK, "clock", "unit -> float", NULL, DERIV_NONE},
    {B_WRITE_TEXT, "write_text", "string -> string -> unit", NULL, DERIV_NONE},
    /* derivatives */
    {B_JVP, "jvp", "('a -> 'b) -> 'a -> T('a) -> ('b, T('b))", NULL, DERIV_JVP},
    {B_VJP, "vjp", "('a -> 'b) -> 'a -> ('b, T('b) -> T('a))", NULL, DERIV_VJP},
    {B_GRAD, "grad", "('a -> float) -> 'a -> T('a)", NULL, DERIV_GRAD},
    {B_VALUE_AND_GRAD, "value_and_grad", "('a -> float) -> 'a -> (float, T('a))", NULL,
     DERIV_VALUE_AND_GRAD},
    {B_JACFWD, "jacfwd", "([]float -> []float) -> []float -> [][]float", NULL, DERIV_JACFWD},
    {B_JACREV, "jacrev", "([]float -> []float) -> []float -> [][]float", NULL, DERIV_JACREV},
    {B_HESSIAN, "hessian", "('a -> float) -> 'a -> 'b", "hessian 'a 'b", DERIV_HESSIAN},
    {B_HVP, "hvp", "('a -> float) -> 'a -> T('a) -> T('a)", NULL, DERIV_HVP},
    {B_JET, "jet", "('a -> 'b) -> 'a -> []T('a) -> ('b, []T('b))", NULL, DERIV_JET},
    {B_FWDGRAD, "fwdgrad", "('a -> float) -> 'a -> key -> T('a)", NULL, DERIV_FWDGRAD},
    {B_FWDGRAD_DIR, "fwdgrad_dir", "('a -> float) -> 'a -> T('a) -> T('a)", NULL,
     DERIV_FWDGRAD_DIR},
    {B_STOP_GRADIENT, "stop_gradient", "'a -> 'a", NULL, DERIV_STOP_GRADIENT},
    /* Core primitives that have no other syntax; --emit=ad prints them
     * (docs/language.md, "Built-ins that --emit=ad uses").
     * select c a b: elementwise c ? a : b (c of a's shape, holding bools);
     * update_at a i v: a copy of a with a[i] = v (i an int or a tuple of
     * ints, v an element or a sub-array); fill s v: an array of shape s
     * holding v; sum_axis0 a: the sum of a's rows (undoes broadcasting);
     * dims a: a's shape as an int or a tuple of ints (its type says how
     * many); lt_each a b ...: elementwise comparisons with broadcasting,
     * giving bools of the broadcast shape */
    {B_SELECT, "select", "'c -> 'a -> 'a -> 'a", "convert 'a 'c bool", DERIV_NONE},
    {B_UPDATE_AT, "update_at", "'r -> 's -> 'e -> 'r", "shape 's 'r 'e", DERIV_NONE},
    {B_FILL, "fill", "'s -> 'e -> 'r", "shape 's 'r 'e", DERIV_NONE},
    {B_SUM_AXIS0, "sum_axis0", "[][]'a -> []'a", NULL, DERIV_NONE},
    {B_DIMS, "dims", "'r -> 's", "shape 's 'r 'e", DERIV_NONE},
    {B_LT_EACH, "lt_each", "'a -> 'b -> 'r", "bcast numeric 'a 'b 'c; convert 'c 'r bool", DERIV_NONE},
    {B_LE_EACH, "le_each", "'a -> 'b -> 'r", "bcast numeric 'a 'b 'c; convert 'c 'r bool", DERIV_NONE},
    {B_GT_EACH, "gt_each", "'a -> 'b -> 'r", "bcast numeric 'a 'b 'c; convert 'c 'r bool", DERIV_NONE},
    {B_GE_EACH, "ge_each", "'a -> 'b -> 'r", "bcast numeric 'a 'b 'c; convert 'c 'r bool", DERIV_NONE},
    {B_EQ_EACH, "eq_each", "'a -> 'b -> 'r", "bcast numeric 'a 'b 'c; convert 'c 'r bool", DERIV_NONE},
    {B_NE_EACH, "ne_each", "'a -> 'b -> 'r", "bcast numeric 'a 'b 'c; convert 'c 'r bool", DERIV_NONE},
};

_Static_assert(sizeof table / sizeof table[0] == B__COUNT, "one table row per Builtin");

const BuiltinInfo *builtin_info(Builtin id)
{
    if (id <= B_NONE || id >= B__COUNT)
        return NULL;
    return &table[id];
}

static const char *interned[B__COUNT];

Builtin builtin_lookup(const char *name)
{
    if (!interned[1])
        for (int i = 1; i < B__COUNT; i++)
            interned[i] = intern(table[i].name);
    name = intern(name);
    for (int i = 1; i < B__COUNT; i++)
        if (interned[i] == name)
            return (Builtin)i;
    return B_NONE;
}

/* ---- the scheme parser ---------------------------------------------------- */

typedef struct SP {
    const char *s;
    int level; /* < 0: quantified variables */
    const char **names;
    Type **vars;
    int *n;
    bool err;
} SP;

static void skip(SP *p)
{
    while (*p->s == ' ')
        p->s++;
}

static bool eat(SP *p, const char *tok)
{
    skip(p);
    size_t n = strlen(tok);
    if (strncmp(p->s, tok, n) == 0) {
        p->s += n;
        return true;
    }
    return false;
}

static const char *word(SP *p)
{
    skip(p);
    const char *b = p->s;
    while (isalnum((unsigned char)*p->s) || *p->s == '_')
        p->s++;
    if (p->s == b)
        return NULL;
    return intern_n(b, (size_t)(p->s - b));
}

static Type *var_named(SP *p, const char *name)
{
    for (int i = 0; i < *p->n; i++)
        if (p->names[i] == name)
            return p->vars[i];
    Type *v = p->level < 0 ? type_qvar(*p->n) : type_fresh_var(p->level);
    p->names[*p->n] = name;
    p->vars[*p->n] = v;
    (*p->n)++;
    return v;
}

static Type *scalar_named(const char *w)
{
    if (!w)
        return NULL;
    if (!strcmp(w, "int")) return type_int();
    if (!strcmp(w, "float")) return type_float();
    if (!strcmp(w, "f32")) return type_f32();
    if (!strcmp(w, "bool")) return type_bool();
    if (!strcmp(w, "unit")) return type_unit();
    if (!strcmp(w, "string")) return type_string();
    if (!strcmp(w, "key")) return type_rng_key();
    return NULL;
}

static Type *p_type(SP *p);

static Type *p_atom(SP *p)
{
    skip(p);
    if (eat(p, "'"))
        return var_named(p, word(p));
    if (eat(p, "[]")) {
        Type *e = p_atom(p);
        return e ? type_array(e, 1) : NULL;
    }
    if (eat(p, "T(")) {
        Type *t = p_type(p);
        if (!eat(p, ")"))
            p->err = true;
        return t ? type_tangent(t) : NULL;
    }
    if (eat(p, "(")) {
        Type *items[8];
        int n = 0;
        do {
            if (n == 8) {
                p->err = true;
                return NULL;
            }
            items[n++] = p_type(p);
        } while (eat(p, ","));
        if (!eat(p, ")"))
            p->err = true;
        return n == 1 ? items[0] : type_tuple(items, n);
    }
    Type *t = scalar_named(word(p));
    if (!t)
        p->err = true;
    return t;
}

static Type *p_type(SP *p)
{
    Type *a = p_atom(p);
    if (eat(p, "->")) {
        Type *b = p_type(p);
        return a && b ? type_func(a, b) : NULL;
    }
    return a;
}

Type *builtin_parse_type(const char *src, int level, const char **names, Type **vars, int *n)
{
    SP p = {src, level, names, vars, n, false};
    Type *t = p_type(&p);
    skip(&p);
    if (p.err || *p.s)
        return NULL;
    return t;
}

/* A class name; *structural is set for num and the v- classes (tuples and
 * records of members are members). */
static bool parse_class(const char *w, TypeClass *c, bool *structural)
{
    static const struct { const char *n; TypeClass c; bool structural; } cls[] = {
        {"num", TC_NUM, true}, {"floating", TC_FLOATING, false},
        {"numeric", TC_NUMELEM, false}, {"scalar", TC_SCALAR, false},
        {"ord", TC_ORD, false}, {"eq", TC_EQ, false},
        {"array", TC_ARRAY, false}, {"anyarray", TC_ANYARRAY, false},
        {"vfloating", TC_FLOATING, true}, {"vnumeric", TC_NUMELEM, true},
    };
    for (size_t i = 0; w && i < sizeof cls / sizeof cls[0]; i++)
        if (!strcmp(w, cls[i].n)) {
            *c = cls[i].c;
            *structural = cls[i].structural;
            return true;
        }
    return false;
}

/* One constraint item (see the syntax at the top). */
static Constraint *p_constraint(SP *p)
{
    Constraint *c = NEW(Constraint);
    c->op = -1;
    const char *w = word(p);
    if (!w) {
        p->err = true;
        return c;
    }
    TypeClass cls;
    bool structural;
    if (parse_class(w, &cls, &structural)) {
        c->kind = CK_CLASS;
        c->cls = cls;
        c->structural = structural;
        c->t[0] = p_atom(p);
        return c;
    }
    static const struct { const char *n; ConstraintKind k; int ntypes; bool has_cls; } kinds[] = {
        {"bcast", CK_BCAST, 3, true},        {"matmul", CK_MATMUL, 3, false},
        {"convert", CK_CONVERT, 3, false},   {"shape", CK_SHAPE, 3, false},
        {"reshape", CK_RESHAPE, 3, false},   {"reduce_all", CK_REDUCE_ALL, 2, true},
        {"drop_axis", CK_DROP_AXIS, 2, true}, {"rank_in", CK_RANK_IN, 1, true},
        {"one_hot", CK_ONE_HOT, 2, false},   {"hessian", CK_HESSIAN, 2, false},
        {"compose", CK_COMPOSE, 3, false},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(w, kinds[i].n))
            continue;
        c->kind = kinds[i].k;
        if (c->kind == CK_RANK_IN) {
            skip(p);
            c->n = (int)strtol(p->s, (char **)&p->s, 10);
            skip(p);
            c->m = (int)strtol(p->s, (char **)&p->s, 10);
        }
        if (kinds[i].has_cls && !parse_class(word(p), &c->cls, &structural))
            p->err = true;
        for (int k = 0; k < kinds[i].ntypes; k++)
            c->t[k] = p_atom(p);
        skip(p);
        /* an optional trailing scalar: drop_axis's element, rank_in's */
        if (*p->s && *p->s != ';' && kinds[i].ntypes < 3)
            c->t[kinds[i].ntypes] = p_atom(p);
        c->structural = c->kind == CK_BCAST && c->cls == TC_NUM;
        return c;
    }
    p->err = true;
    return c;
}

static Binding *make_binding(const char *name, const char *scheme, const char *cons,
                             const char *what, int op)
{
    const char *names[16];
    Type *vars[16];
    int n = 0;
    SP p = {scheme, -1, names, vars, &n, false};
    Type *t = p_type(&p);
    skip(&p);
    if (p.err || *p.s || !t)
        fatal("internal error: bad built-in scheme for %s: %s", name, scheme);
    Binding *b = NEW(Binding);
    b->name = intern(name);
    b->type = t;
    Vec cv = {0};
    if (cons) {
        p.s = cons;
        while (*p.s) {
            Constraint *c = p_constraint(&p);
            c->what = what;
            c->op = op;
            vec_push(&cv, c);
            skip(&p);
            if (!eat(&p, ";"))
                break;
        }
        skip(&p);
        if (p.err || *p.s)
            fatal("internal error: bad built-in constraints for %s: %s", name, cons);
    }
    b->nqvars = n;
    b->ncons = cv.len;
    b->cons = (Constraint **)vec_freeze(&cv);
    vec_free(&cv);
    return b;
}

static Binding *bindings[B__COUNT];
static Binding *op_bindings[OP__COUNT];
static Arena *bindings_arena;

/* Forgets the bindings: the arena they live in is about to be freed
 * (typecheck_reset). */
void builtins_reset(void)
{
    memset(bindings, 0, sizeof bindings);
    memset(op_bindings, 0, sizeof op_bindings);
    bindings_arena = NULL;
}

static void reset_if_new_arena(void)
{
    if (bindings_arena != dcc_arena) {
        memset(bindings, 0, sizeof bindings);
        memset(op_bindings, 0, sizeof op_bindings);
        bindings_arena = dcc_arena;
    }
}

Binding *builtin_binding(Builtin id)
{
    if (id <= B_NONE || id >= B__COUNT)
        return NULL;
    reset_if_new_arena();
    if (!bindings[id]) {
        const BuiltinInfo *bi = &table[id];
        Binding *b = make_binding(bi->name, bi->scheme, bi->constraints, bi->name, -1);
        b->builtin = id;
        bindings[id] = b;
    }
    return bindings[id];
}

Binding *builtin_op_binding(OpKind op)
{
    static const struct { OpKind op; const char *scheme, *cons; } ops[] = {
        {OP_ADD, "'a -> 'b -> 'c", "bcast num 'a 'b 'c"},
        {OP_SUB, "'a -> 'b -> 'c", "bcast num 'a 'b 'c"},
        {OP_MUL, "'a -> 'b -> 'c", "bcast num 'a 'b 'c"},
        {OP_DIV, "'a -> 'b -> 'c", "bcast num 'a 'b 'c"},
        {OP_MOD, "'a -> 'b -> 'c", "bcast numeric 'a 'b 'c"},
        {OP_POW, "'a -> 'b -> 'c", "bcast floating 'a 'b 'c"},
        {OP_MATMUL, "'a -> 'b -> 'c", "matmul 'a 'b 'c"},
        {OP_EQ, "'a -> 'a -> bool", "eq 'a"},
        {OP_NE, "'a -> 'a -> bool", "eq 'a"},
        {OP_LT, "'a -> 'a -> bool", "ord 'a"},
        {OP_LE, "'a -> 'a -> bool", "ord 'a"},
        {OP_GT, "'a -> 'a -> bool", "ord 'a"},
        {OP_GE, "'a -> 'a -> bool", "ord 'a"},
        {OP_AND, "bool -> bool -> bool", NULL},
        {OP_OR, "bool -> bool -> bool", NULL},
        {OP_PIPE, "'a -> ('a -> 'b) -> 'b", NULL},
        {OP_COMPOSE, "'a -> 'b -> 'c", "compose 'a 'b 'c"},
        {OP_PAR, "'a -> 'b -> 'c", "compose 'a 'b 'c"},
        {OP_NEG, "'a -> 'a", "num 'a"},
        {OP_NOT, "bool -> bool", NULL},
    };
    reset_if_new_arena();
    if (op < 0 || op >= OP__COUNT)
        return NULL;
    if (!op_bindings[op]) {
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
            if (ops[i].op == op) {
                const char *sp = op_spelling(op);
                op_bindings[op] = make_binding(arena_printf(dcc_arena, "(%s)", sp),
                                               ops[i].scheme, ops[i].cons, sp, op);
            }
    }
    return op_bindings[op];
}
