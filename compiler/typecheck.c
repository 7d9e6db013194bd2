/* typecheck.c — type inference for DL (LANGUAGE.md §3–§6).
 *
 * Hindley–Milner with let-polymorphism (Damas & Milner 1982), generalising
 * by levels (Rémy 1992). Top-level definitions of all modules are checked by
 * strongly connected components of their reference graph (Tarjan 1972) and
 * generalised per component; fully annotated definitions get their declared
 * type up front. Overloading is by deferred constraints (qualified types,
 * Jones 1994): each overloaded operator or built-in emits a Constraint that
 * is solved as soon as the types it mentions are known; open constraints
 * are generalised into schemes, and those left at the end of the program
 * are defaulted (numbers to float, record fields to the unique record with
 * that field) or reported. Pattern matches are checked for exhaustiveness
 * and redundancy with Maranget's usefulness algorithm ("Warnings for
 * pattern matching", JFP 2007).
 *
 * Errors poison the types involved (TY_ERROR unifies with anything), so one
 * mistake gives one message. */
#include "dcc.h"

#include <stdlib.h>
#include <string.h>

/* ======================================================================
 * maps keyed by pointers (interned names, bindings)
 * ====================================================================== */

typedef struct Map {
    const void **keys;
    void **vals;
    int cap, n;
} Map;

static unsigned hash_ptr(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return (unsigned)(x >> 32);
}

static void *map_get(const Map *m, const void *k)
{
    if (!m->cap)
        return NULL;
    for (unsigned i = hash_ptr(k) & (unsigned)(m->cap - 1);; i = (i + 1) & (unsigned)(m->cap - 1)) {
        if (!m->keys[i])
            return NULL;
        if (m->keys[i] == k)
            return m->vals[i];
    }
}

static void map_put(Map *m, const void *k, void *v)
{
    if (2 * (m->n + 1) > m->cap) {
        Map old = *m;
        m->cap = old.cap ? 2 * old.cap : 16;
        m->keys = NEWN(const void *, m->cap);
        m->vals = NEWN(void *, m->cap);
        m->n = 0;
        for (int i = 0; i < old.cap; i++)
            if (old.keys[i])
                map_put(m, old.keys[i], old.vals[i]);
    }
    unsigned i = hash_ptr(k) & (unsigned)(m->cap - 1);
    while (m->keys[i] && m->keys[i] != k)
        i = (i + 1) & (unsigned)(m->cap - 1);
    if (!m->keys[i])
        m->n++;
    m->keys[i] = k;
    m->vals[i] = v;
}

/* ======================================================================
 * module scopes
 * ====================================================================== */

typedef struct ConRef {
    TypeDecl *decl;
    int index;
} ConRef;

typedef struct FieldRef {
    TypeDecl *decl;
    int index;
    struct FieldRef *next;
} FieldRef;

/* What a module sees: its own top-level names, then those of the modules
 * it imports (later imports shadow earlier ones), then the prelude's, then
 * the built-ins. */
typedef struct ModEnv {
    Module *m;
    Map values; /* name -> Binding */
    Map types;  /* name -> TypeDecl */
    Map cons;   /* name -> ConRef */
    Map fields; /* name -> FieldRef list */
    Vec imports; /* ModEnv*, most recent first, the prelude last */
} ModEnv;

/* An annotation type variable 'a of the current definition. */
typedef struct TVar {
    const char *name;
    Type *var;
} TVar;

static struct {
    int level;
    Vec locals;    /* Binding* in scope, innermost last */
    ModEnv *env;
    Vec pending;   /* Constraint* not yet solved */
    int solved_at; /* type_bind_count when last solved */
    Vec tvars;     /* TVar* of the current definition */
    Map envs;      /* Module* -> ModEnv* */
    ModEnv *prelude;
    bool quiet;    /* converting annotations without reporting */
    Vec pat_names; /* names bound by the pattern being checked */
    Vec all_exprs; /* every checked Expr (for defaulting) */
    Vec all_pats;
} S;

static ModEnv *env_of(Module *m) { return map_get(&S.envs, m); }

static Binding *lookup_local(const char *name)
{
    for (int i = S.locals.len - 1; i >= 0; i--) {
        Binding *b = S.locals.data[i];
        if (b->name == name)
            return b;
    }
    return NULL;
}

static Binding *lookup_global(ModEnv *e, const char *name)
{
    Binding *b = map_get(&e->values, name);
    for (int i = 0; !b && i < e->imports.len; i++)
        b = map_get(&((ModEnv *)e->imports.data[i])->values, name);
    if (!b) {
        Builtin id = builtin_lookup(name);
        if (id)
            b = builtin_binding(id);
    }
    return b;
}

static TypeDecl *lookup_type(ModEnv *e, const char *name)
{
    TypeDecl *d = map_get(&e->types, name);
    for (int i = 0; !d && i < e->imports.len; i++)
        d = map_get(&((ModEnv *)e->imports.data[i])->types, name);
    return d;
}

static ConRef *lookup_con(ModEnv *e, const char *name)
{
    ConRef *c = map_get(&e->cons, name);
    for (int i = 0; !c && i < e->imports.len; i++)
        c = map_get(&((ModEnv *)e->imports.data[i])->cons, name);
    return c;
}

/* All visible records with field `name`, nearest scope first. */
static int lookup_fields(ModEnv *e, const char *name, FieldRef **out, int max)
{
    int n = 0;
    for (int i = -1; i < e->imports.len; i++) {
        ModEnv *m = i < 0 ? e : e->imports.data[i];
        for (FieldRef *f = map_get(&m->fields, name); f && n < max; f = f->next)
            out[n++] = f;
    }
    return n;
}

/* ---- "did you mean": Levenshtein distance <= 2 ---------------------------- */

static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 40 || lb > 40 || abs(la - lb) > 2)
        return 99;
    int d[41][41];
    for (int i = 0; i <= la; i++)
        d[i][0] = i;
    for (int j = 0; j <= lb; j++)
        d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

typedef struct Suggest {
    const char *name;
    const char *best;
    int dist;
} Suggest;

static void suggest_try(Suggest *s, const char *cand)
{
    if (!cand || cand == s->name || cand[0] == '(')
        return;
    int d = edit_distance(s->name, cand);
    int len = (int)strlen(s->name);
    if (d <= (len <= 3 ? 1 : 2) && d < len && d < s->dist) {
        s->dist = d;
        s->best = cand;
    }
}

static void suggest_map(Suggest *s, const Map *m)
{
    for (int i = 0; i < m->cap; i++)
        if (m->keys[i])
            suggest_try(s, m->keys[i]);
}

enum { NS_VALUE, NS_TYPE, NS_CON, NS_FIELD };

static const char *suggestion(const char *name, int ns)
{
    Suggest s = {name, NULL, 3};
    if (ns == NS_VALUE)
        for (int i = S.locals.len - 1; i >= 0; i--)
            suggest_try(&s, ((Binding *)S.locals.data[i])->name);
    ModEnv *e = S.env;
    for (int i = -1; e && i < e->imports.len; i++) {
        ModEnv *m = i < 0 ? e : e->imports.data[i];
        suggest_map(&s, ns == NS_VALUE ? &m->values : ns == NS_TYPE ? &m->types
                        : ns == NS_CON ? &m->cons : &m->fields);
    }
    if (ns == NS_VALUE)
        for (int i = 1; i < B__COUNT; i++)
            suggest_try(&s, builtin_info((Builtin)i)->name);
    if (ns == NS_TYPE) {
        static const char *base[] = {"int", "float", "f32", "bool", "unit", "string", "key"};
        for (int i = 0; i < 7; i++)
            suggest_try(&s, base[i]);
    }
    return s.best;
}

/* ======================================================================
 * messages
 * ====================================================================== */

static const char *a_an(const char *s)
{
    return strchr("aeiou", s[0]) && s[0] ? "an" : "a";
}

/* Note pointing at the annotation a type came from. */
static void note_origin(Type *want)
{
    Type *w = type_resolve(want);
    if (w && w->origin.line)
        note_at(w->origin, "%s expected because of this annotation", type_to_string(w));
}

/* "WHAT has type X but Y was expected", or the occurs-check message. */
static void report_mismatch(Loc loc, const char *what, Type *got, Type *want)
{
    UnifyFailure f = type_unify_failure();
    TypePrinter p = {.n = 0};
    if (f.occurs) {
        char *a = type_to_string_with(&p, f.a);
        char *b = type_to_string_with(&p, f.b);
        error_at(loc, "infinite type: %s = %s", a, b);
        return;
    }
    char *g = type_to_string_with(&p, got);
    char *w = type_to_string_with(&p, want);
    Type *fa = f.a ? type_resolve(f.a) : NULL, *fb = f.b ? type_resolve(f.b) : NULL;
    Type *rg = type_resolve(got), *rw = type_resolve(want);
    if (fa && fb && !((fa == rg && fb == rw) || (fa == rw && fb == rg)) &&
        fa->kind != TY_VAR && fb->kind != TY_VAR) {
        char *x = type_to_string_with(&p, fa);
        char *y = type_to_string_with(&p, fb);
        error_at(loc, "%s has type %s but %s was expected (%s is not %s)", what, g, w, x, y);
    } else {
        error_at(loc, "%s has type %s but %s was expected", what, g, w);
    }
    note_origin(want);
}

/* Unifies e's type with want; reports at e on failure. */
static bool expect(Expr *e, Type *want, const char *what)
{
    if (type_unify(e->type, want))
        return true;
    report_mismatch(e->loc, what ? what : "this expression", e->type, want);
    return false;
}

/* ======================================================================
 * constraints
 * ====================================================================== */

static Constraint *con_new(ConstraintKind k, Loc loc, const char *what, int op)
{
    Constraint *c = NEW(Constraint);
    c->kind = k;
    c->loc = loc;
    c->what = what;
    c->op = op;
    c->scope = S.env;
    vec_push(&S.pending, c);
    return c;
}

static Constraint *con_copy(const Constraint *src)
{
    Constraint *c = NEW(Constraint);
    *c = *src;
    c->done = false;
    return c;
}

/* Level at which to create variables while solving c: the deepest level
 * among its variables, so that solving never blocks generalisation. */
static int max_level(Type *t, int lv)
{
    t = type_resolve(t);
    if (!t)
        return lv;
    switch (t->kind) {
    case TY_VAR:
        return t->level != TYPE_GENERIC_LEVEL && t->level > lv ? t->level : lv;
    case TY_ARRAY:
        return max_level(t->elem, lv);
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT:
        for (int i = 0; i < t->nargs; i++)
            lv = max_level(t->args[i], lv);
        return lv;
    default:
        return lv;
    }
}

static int con_level(Constraint *c)
{
    int lv = S.level;
    for (int i = 0; i < 3; i++)
        if (c->t[i])
            lv = max_level(c->t[i], lv);
    return lv;
}

static const char *op_verb_fmt(const Constraint *c, bool *swap)
{
    *swap = false;
    switch (c->op) {
    case OP_ADD: return "cannot add %s and %s";
    case OP_SUB: *swap = true; return "cannot subtract %s from %s";
    case OP_MUL: return "cannot multiply %s by %s";
    case OP_DIV: return "cannot divide %s by %s";
    case OP_MOD: return "cannot take the remainder of %s by %s";
    case OP_POW: return "cannot raise %s to the power %s";
    case OP_MATMUL: return "cannot matrix-multiply %s and %s";
    default: return NULL;
    }
}

/* "cannot add []float and [][]int", with both operand types. */
static void report_operands(Constraint *c)
{
    TypePrinter p = {.n = 0};
    char *a = type_to_string_with(&p, c->orig[0] ? c->orig[0] : c->t[0]);
    char *b = type_to_string_with(&p, c->orig[1] ? c->orig[1] : c->t[1]);
    bool swap;
    const char *fmt = op_verb_fmt(c, &swap);
    if (fmt)
        error_at(c->loc, fmt, swap ? b : a, swap ? a : b);
    else
        error_at(c->loc, "cannot apply %s to %s and %s", c->what, a, b);
    Type *ra = type_resolve(c->orig[0] ? c->orig[0] : c->t[0]);
    Type *rb = type_resolve(c->orig[1] ? c->orig[1] : c->t[1]);
    Type *ea = ra->kind == TY_ARRAY ? type_resolve(ra->elem) : ra;
    Type *eb = rb->kind == TY_ARRAY ? type_resolve(rb->elem) : rb;
    if ((ea->kind == TY_INT && (eb->kind == TY_FLOAT || eb->kind == TY_F32)) ||
        (eb->kind == TY_INT && (ea->kind == TY_FLOAT || ea->kind == TY_F32)))
        note_at(c->loc, "numbers are not converted implicitly: use float e or int e");
    else if ((ea->kind == TY_FLOAT && eb->kind == TY_F32) || (ea->kind == TY_F32 && eb->kind == TY_FLOAT))
        note_at(c->loc, "numbers are not converted implicitly: use f32 e or float e");
}

static const char *class_desc(TypeClass cls)
{
    switch (cls) {
    case TC_NUM: return "numbers, or arrays, tuples or records of numbers";
    case TC_FLOATING: return "float or f32 values, or arrays of them";
    case TC_NUMELEM: return "int, float or f32 values, or arrays of them";
    case TC_SCALAR: return "an int, float or f32";
    case TC_ORD: return "int, float or f32 values";
    case TC_EQ: return "values without functions";
    case TC_ARRAY: return "an array of int, float or f32";
    case TC_ANYARRAY: return "an array";
    }
    return "?";
}

static void report_class(Constraint *c, Type *at)
{
    if (c->orig[0] || c->orig[1]) {
        report_operands(c);
        return;
    }
    char *t = type_to_string(c->t[0]);
    (void)at;
    if (c->op == OP_NEG)
        error_at(c->loc, "cannot negate %s %s", a_an(t), t);
    else if (c->op == OP_EQ || c->op == OP_NE)
        error_at(c->loc, "cannot compare values of type %s with %s: they contain functions", t,
                 c->what);
    else if (c->op >= OP_LT && c->op <= OP_GE)
        error_at(c->loc, "cannot compare %s with %s: only int, float and f32 are ordered", t,
                 c->what);
    else
        error_at(c->loc, "%s needs %s, but is given %s", c->what, class_desc(c->cls), t);
}

static bool leaf_ok(Type *s, TypeClass cls)
{
    switch (s->kind) {
    case TY_FLOAT:
    case TY_F32:
        return true;
    case TY_INT:
        return cls != TC_FLOATING;
    default:
        return false;
    }
}

/* Sets a constraint's result; the result may already have been fixed by
 * the context (an annotation), which must then agree. */
static void con_result(Constraint *c, Type *slot, Type *val)
{
    if (type_unify(slot, val))
        return;
    TypePrinter p = {.n = 0};
    char *a = type_to_string_with(&p, val), *b = type_to_string_with(&p, slot);
    error_at(c->loc, "this expression has type %s but %s was expected", a, b);
    note_origin(slot);
}

static void poison(Type *t)
{
    if (t)
        type_unify(t, type_error());
}

static Constraint *sub_class(Constraint *c, Type *t, TypeClass cls)
{
    Constraint *s = con_new(CK_CLASS, c->loc, c->what, c->op);
    s->t[0] = t;
    s->t[1] = c->t[1];
    s->cls = cls;
    s->structural = c->structural;
    s->orig[0] = c->orig[0];
    s->orig[1] = c->orig[1];
    return s;
}

/* Does the declaration contain a function type (for ==)? Coinductive. */
static bool decl_has_func(TypeDecl *d, Vec *seen);

static bool type_has_func(Type *t, Vec *seen)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_FUNC:
        return true;
    case TY_ARRAY:
        return type_has_func(t->elem, seen);
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (type_has_func(t->args[i], seen))
                return true;
        return false;
    case TY_NAMED:
        for (int i = 0; i < t->nargs; i++)
            if (type_has_func(t->args[i], seen))
                return true;
        return decl_has_func(t->decl, seen);
    default:
        return false;
    }
}

static bool decl_has_func(TypeDecl *d, Vec *seen)
{
    for (int i = 0; i < seen->len; i++)
        if (seen->data[i] == d)
            return false;
    vec_push(seen, d);
    int n = d->kind == TD_RECORD ? d->nfields : d->ncons;
    Type **src = d->kind == TD_RECORD ? d->field_types : d->con_args;
    for (int i = 0; i < n; i++)
        if (src[i] && type_has_func(src[i], seen))
            return true;
    return false;
}

/* Pushes "eq" on the variables of t (checked when they are known). */
static void eq_on_vars(Constraint *c, Type *t)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_VAR:
    case TY_TANGENT: {
        Constraint *s = sub_class(c, t, TC_EQ);
        s->t[1] = NULL;
        return;
    }
    case TY_ARRAY:
        eq_on_vars(c, t->elem);
        return;
    case TY_TUPLE:
    case TY_NAMED:
    case TY_FUNC:
        for (int i = 0; i < t->nargs; i++)
            eq_on_vars(c, t->args[i]);
        return;
    default:
        return;
    }
}

/* CK_CLASS: membership of t[0]; its scalar leaves equal t[1] if given. */
static bool solve_class(Constraint *c)
{
    Type *t = type_resolve(c->t[0]);
    if (t->kind == TY_VAR || t->kind == TY_TANGENT)
        return false;
    if (t->kind == TY_ERROR)
        return true;
    if (c->cls == TC_EQ) {
        Vec seen = {0};
        bool bad = type_has_func(t, &seen);
        vec_free(&seen);
        if (bad)
            report_class(c, t);
        else
            eq_on_vars(c, t);
        return true;
    }
    switch (t->kind) {
    case TY_INT:
    case TY_FLOAT:
    case TY_F32:
        if (c->cls == TC_ARRAY || c->cls == TC_ANYARRAY || !leaf_ok(t, c->cls)) {
            report_class(c, t);
            return true;
        }
        if (c->t[1] && !type_unify(t, c->t[1]))
            report_class(c, t);
        return true;
    case TY_ARRAY:
        if (c->cls == TC_SCALAR || c->cls == TC_ORD) {
            report_class(c, t);
            return true;
        }
        if (c->cls == TC_ANYARRAY)
            return true;
        sub_class(c, t->elem, c->cls == TC_ARRAY ? TC_SCALAR : c->cls)->structural =
            c->structural && c->cls == TC_NUM;
        return true;
    case TY_TUPLE:
        if (!c->structural) {
            report_class(c, t);
            return true;
        }
        for (int i = 0; i < t->nargs; i++)
            sub_class(c, t->args[i], c->cls);
        return true;
    case TY_NAMED:
        if (!c->structural || t->decl->kind != TD_RECORD) {
            report_class(c, t);
            return true;
        }
        for (int i = 0; i < t->decl->nfields; i++)
            sub_class(c, type_field_type(t, i), c->cls);
        return true;
    default:
        report_class(c, t);
        return true;
    }
}

typedef enum { SH_VAR, SH_SCALAR, SH_ARRAY, SH_OPEN, SH_TUPLE, SH_RECORD, SH_OTHER, SH_ERROR } Shape;

static Shape shape_of(Type *t)
{
    switch (t->kind) {
    case TY_VAR:
    case TY_TANGENT:
        return SH_VAR;
    case TY_INT:
    case TY_FLOAT:
    case TY_F32:
        return SH_SCALAR;
    case TY_ARRAY: {
        Type *e = type_resolve(t->elem);
        if (e->kind == TY_VAR || e->kind == TY_TANGENT)
            return SH_OPEN;
        if (e->kind == TY_INT || e->kind == TY_FLOAT || e->kind == TY_F32)
            return SH_ARRAY;
        if (e->kind == TY_ERROR)
            return SH_ERROR;
        return SH_OTHER;
    }
    case TY_TUPLE:
        return SH_TUPLE;
    case TY_NAMED:
        return t->decl->kind == TD_RECORD ? SH_RECORD : SH_OTHER;
    case TY_ERROR:
        return SH_ERROR;
    default:
        return SH_OTHER;
    }
}

static void bcast_fail(Constraint *c)
{
    report_operands(c);
    poison(c->t[2]);
}

/* CK_BCAST: a op b : r, elementwise with NumPy broadcasting; a scalar
 * with anything (scalar * vector, scalar + tuple); tuples and records
 * component by component when structural. */
static bool solve_bcast(Constraint *c, bool final)
{
    Type *a = type_resolve(c->t[0]), *b = type_resolve(c->t[1]);
    Shape sa = shape_of(a), sb = shape_of(b);
    if (sa == SH_ERROR || sb == SH_ERROR) {
        poison(c->t[2]);
        return true;
    }
    if (sa == SH_OTHER || sb == SH_OTHER) {
        bcast_fail(c);
        return true;
    }
    if (a == b || type_equal(a, b)) {
        con_result(c, c->t[2], a);
        Constraint *s = con_new(CK_CLASS, c->loc, c->what, c->op);
        s->t[0] = a;
        s->cls = c->cls;
        s->structural = c->structural;
        s->orig[0] = c->t[0];
        s->orig[1] = c->t[1];
        return true;
    }
    if (sa == SH_SCALAR && sb == SH_SCALAR) {
        bcast_fail(c);
        return true;
    }
    if (sa == SH_SCALAR || sb == SH_SCALAR) {
        Type *s = sa == SH_SCALAR ? a : b, *x = sa == SH_SCALAR ? b : a;
        Shape sx = sa == SH_SCALAR ? sb : sa;
        if (((sx == SH_TUPLE || sx == SH_RECORD) && !c->structural) || !leaf_ok(s, c->cls)) {
            bcast_fail(c);
            return true;
        }
        con_result(c, c->t[2], x);
        Constraint *k = con_new(CK_CLASS, c->loc, c->what, c->op);
        k->t[0] = x;
        k->t[1] = s;
        k->cls = c->cls;
        k->structural = c->structural;
        k->orig[0] = c->t[0];
        k->orig[1] = c->t[1];
        return true;
    }
    if (sa == SH_ARRAY && sb == SH_ARRAY) {
        Type *e = type_resolve(a->elem);
        if (!type_equal(e, b->elem) || !leaf_ok(e, c->cls)) {
            bcast_fail(c);
            return true;
        }
        con_result(c, c->t[2], type_array(e, a->rank > b->rank ? a->rank : b->rank));
        return true;
    }
    if ((sa == SH_ARRAY || sa == SH_OPEN) && (sb == SH_ARRAY || sb == SH_OPEN)) {
        if (!final)
            return false;
        if (!type_unify(a, b))
            bcast_fail(c);
        return false; /* solved as equal types next round */
    }
    if (sa == SH_TUPLE && sb == SH_TUPLE) {
        if (!c->structural || a->nargs != b->nargs) {
            bcast_fail(c);
            return true;
        }
        int lv = con_level(c);
        Type **rs = NEWN(Type *, a->nargs);
        for (int i = 0; i < a->nargs; i++) {
            rs[i] = type_fresh_var(lv);
            Constraint *k = con_new(CK_BCAST, c->loc, c->what, c->op);
            k->t[0] = a->args[i];
            k->t[1] = b->args[i];
            k->t[2] = rs[i];
            k->cls = c->cls;
            k->structural = true;
            k->orig[0] = c->orig[0] ? c->orig[0] : c->t[0];
            k->orig[1] = c->orig[1] ? c->orig[1] : c->t[1];
        }
        con_result(c, c->t[2], type_tuple(rs, a->nargs));
        return true;
    }
    if (sa == SH_RECORD && sb == SH_RECORD) {
        if (!c->structural || !type_unify(a, b)) {
            bcast_fail(c);
            return true;
        }
        con_result(c, c->t[2], a);
        Constraint *k = con_new(CK_CLASS, c->loc, c->what, c->op);
        k->t[0] = a;
        k->cls = c->cls;
        k->structural = true;
        k->orig[0] = c->t[0];
        k->orig[1] = c->t[1];
        return true;
    }
    if (sa == SH_VAR || sb == SH_VAR) {
        if (!final)
            return false;
        /* default: the same type on both sides */
        if (!type_unify(a, b))
            bcast_fail(c);
        return false;
    }
    bcast_fail(c);
    return true;
}

/* An array with scalar elements whose rank is known: its rank, else 0
 * (scalar), -1 (unknown yet), -2 (not an array of numbers). */
static int known_rank(Type *t, Type **elem)
{
    t = type_resolve(t);
    switch (shape_of(t)) {
    case SH_SCALAR:
        *elem = t;
        return 0;
    case SH_ARRAY:
        *elem = type_resolve(t->elem);
        return t->rank;
    case SH_VAR:
    case SH_OPEN:
        return -1;
    case SH_ERROR:
        return -3;
    default:
        return -2;
    }
}

/* CK_MATMUL: [][]a@[][]a : [][]a, [][]a@[]a : []a, []a@[][]a : []a,
 * []a@[]a : a. */
static bool solve_matmul(Constraint *c, bool final)
{
    Type *ea = NULL, *eb = NULL;
    int ra = known_rank(c->t[0], &ea), rb = known_rank(c->t[1], &eb);
    if (ra == -3 || rb == -3) {
        poison(c->t[2]);
        return true;
    }
    if (ra == -2 || rb == -2 || ra == 0 || rb == 0 || ra > 2 || rb > 2) {
        TypePrinter p = {.n = 0};
        char *a = type_to_string_with(&p, c->t[0]), *b = type_to_string_with(&p, c->t[1]);
        error_at(c->loc, "cannot matrix-multiply %s and %s: @ needs vectors or matrices "
                 "(use * for scalars)", a, b);
        poison(c->t[2]);
        return true;
    }
    if (ra < 0 || rb < 0) {
        if (final) {
            error_at(c->loc, "cannot infer the ranks of the operands of @; annotate them");
            poison(c->t[2]);
            return true;
        }
        return false;
    }
    if (!type_equal(ea, eb) || !leaf_ok(ea, TC_NUM)) {
        report_operands(c);
        poison(c->t[2]);
        return true;
    }
    int r = ra + rb - 2;
    con_result(c, c->t[2], r ? type_array(ea, r) : ea);
    return true;
}

static void report_simple(Constraint *c, const char *need)
{
    char *t = type_to_string(c->t[0]);
    error_at(c->loc, "%s needs %s, but is given %s %s", c->what, need, a_an(t), t);
}

/* CK_CONVERT: float/int/f32 elementwise. */
static bool solve_convert(Constraint *c, bool final)
{
    Type *a = type_resolve(c->t[0]);
    switch (shape_of(a)) {
    case SH_ERROR:
        poison(c->t[1]);
        return true;
    case SH_SCALAR:
        con_result(c, c->t[1], c->t[2]);
        return true;
    case SH_ARRAY:
        con_result(c, c->t[1], type_array(c->t[2], a->rank));
        return true;
    case SH_VAR:
        if (final)
            type_unify(a, type_int());
        return false;
    case SH_OPEN:
        if (final)
            type_unify(a->elem, type_int());
        return false;
    default:
        report_simple(c, "a number or an array of numbers");
        poison(c->t[1]);
        return true;
    }
}

/* A static shape: an int (rank 1) or a tuple of n ints (rank n). Returns
 * the rank, 0 if not known yet, -1 after an error. */
static int shape_rank(Constraint *c, Type *s, bool final)
{
    s = type_resolve(s);
    if (s->kind == TY_ERROR)
        return -1;
    if (s->kind == TY_INT)
        return 1;
    if (s->kind == TY_VAR) {
        if (final) {
            type_unify(s, type_int());
            return 1;
        }
        return 0;
    }
    if (s->kind == TY_TUPLE) {
        for (int i = 0; i < s->nargs; i++)
            if (!type_unify(s->args[i], type_int())) {
                char *t = type_to_string(s);
                error_at(c->loc, "a shape is an int or a tuple of ints, but %s is given %s", c->what,
                         t);
                return -1;
            }
        return s->nargs;
    }
    char *t = type_to_string(s);
    error_at(c->loc, "a shape is an int or a tuple of ints, but %s is given %s %s%s", c->what,
             a_an(t), t,
             s->kind == TY_ARRAY ? " (the rank must be known statically)" : "");
    return -1;
}

static bool solve_shape(Constraint *c, bool final)
{
    int r = shape_rank(c, c->t[0], final);
    if (r == 0)
        return false;
    if (r < 0)
        poison(c->t[1]);
    else
        con_result(c, c->t[1], type_array(c->t[2], r));
    return true;
}

/* Element type of an array argument, for reshape and the reductions:
 * returns NULL while unknown; reports and returns type_error otherwise. */
static Type *array_elem(Constraint *c, Type *t, TypeClass cls, bool final, int *rank)
{
    t = type_resolve(t);
    switch (shape_of(t)) {
    case SH_ERROR:
        return type_error();
    case SH_ARRAY: {
        Type *e = type_resolve(t->elem);
        if (!leaf_ok(e, cls)) {
            char *s = type_to_string(t);
            error_at(c->loc, "%s needs %s, but is given %s", c->what, class_desc(cls), s);
            return type_error();
        }
        *rank = t->rank;
        return e;
    }
    case SH_OPEN:
        if (final)
            type_unify(t->elem, type_float());
        return NULL;
    case SH_VAR:
        if (final)
            type_unify(t, type_array(type_float(), 1));
        return NULL;
    default: {
        char *s = type_to_string(t);
        error_at(c->loc, "%s needs an array, but is given %s %s", c->what, a_an(s), s);
        return type_error();
    }
    }
}

static bool solve_reshape(Constraint *c, bool final)
{
    int rank = 0;
    Type *e = array_elem(c, c->t[1], TC_NUMELEM, final, &rank);
    if (!e)
        return false;
    int r = shape_rank(c, c->t[0], final);
    if (r == 0)
        return false;
    if (r < 0 || e->kind == TY_ERROR)
        poison(c->t[2]);
    else
        con_result(c, c->t[2], type_array(e, r));
    return true;
}

static bool solve_reduce_all(Constraint *c, bool final)
{
    int rank = 0;
    Type *e = array_elem(c, c->t[0], c->cls, final, &rank);
    if (!e)
        return false;
    con_result(c, c->t[1], e);
    return true;
}

static bool solve_drop_axis(Constraint *c, bool final)
{
    int rank = 0;
    Type *e = array_elem(c, c->t[0], c->cls, final, &rank);
    if (!e)
        return false;
    if (e->kind == TY_ERROR) {
        poison(c->t[1]);
        return true;
    }
    Type *re = c->t[2] ? c->t[2] : e;
    con_result(c, c->t[1], rank == 1 ? re : type_array(re, rank - 1));
    return true;
}

static bool solve_rank_in(Constraint *c, bool final)
{
    Type *t = type_resolve(c->t[0]);
    if (shape_of(t) == SH_OPEN && t->rank > c->m) {
        error_at(c->loc, "%s needs an array of rank %d to %d, but is given %s", c->what, c->n,
                 c->m, type_to_string(t));
        return true;
    }
    int rank = 0;
    Type *e = array_elem(c, t, c->cls, final, &rank);
    if (!e)
        return false;
    if (e->kind == TY_ERROR)
        return true;
    if (rank < c->n || rank > c->m) {
        error_at(c->loc, "%s needs an array of rank %d to %d, but is given %s", c->what, c->n,
                 c->m, type_to_string(t));
        return true;
    }
    if (c->t[1] && !type_unify(e, c->t[1]))
        error_at(c->loc, "%s needs elements of type %s, but is given %s", c->what,
                 type_to_string(c->t[1]), type_to_string(t));
    return true;
}

static bool solve_one_hot(Constraint *c, bool final)
{
    Type *b = type_resolve(c->t[0]);
    switch (shape_of(b)) {
    case SH_ERROR:
        poison(c->t[1]);
        return true;
    case SH_VAR:
        if (final)
            type_unify(b, type_int());
        return false;
    case SH_OPEN:
        if (final)
            type_unify(b->elem, type_int());
        return false;
    case SH_SCALAR:
    case SH_ARRAY: {
        Type *e = b->kind == TY_ARRAY ? type_resolve(b->elem) : b;
        if (e->kind != TY_INT) {
            report_simple(c, "class indices of type int or an array of int");
            poison(c->t[1]);
            return true;
        }
        con_result(c, c->t[1], type_array(type_float(), (b->kind == TY_ARRAY ? b->rank : 0) + 1));
        return true;
    }
    default:
        report_simple(c, "class indices of type int or an array of int");
        poison(c->t[1]);
        return true;
    }
}

static bool solve_hessian(Constraint *c, bool final)
{
    Type *x = type_resolve(c->t[0]);
    if (x->kind == TY_ERROR) {
        poison(c->t[1]);
        return true;
    }
    if (x->kind == TY_VAR || x->kind == TY_TANGENT || shape_of(x) == SH_OPEN) {
        if (final)
            type_unify(x, type_float());
        return false;
    }
    if (x->kind == TY_FLOAT) {
        con_result(c, c->t[1], type_float());
        return true;
    }
    if (x->kind == TY_ARRAY && x->rank == 1 && type_resolve(x->elem)->kind == TY_FLOAT) {
        con_result(c, c->t[1], type_array(type_float(), 2));
        return true;
    }
    char *s = type_to_string(x);
    error_at(c->loc, "hessian needs a function of float or []float, but this one takes %s %s",
             a_an(s), s);
    poison(c->t[1]);
    return true;
}

static int field_index(TypeDecl *d, const char *name)
{
    for (int i = 0; i < d->nfields; i++)
        if (d->fields[i] == name)
            return i;
    return -1;
}

static Type *fresh_instance(TypeDecl *d, int level)
{
    Type **as = NEWN(Type *, d->ntparams ? d->ntparams : 1);
    for (int i = 0; i < d->ntparams; i++)
        as[i] = type_fresh_var(level);
    return type_named(d, as, d->ntparams);
}

static ModEnv *con_env(Constraint *c);

/* CK_FIELD: t[0].name : t[1]. */
static bool solve_field(Constraint *c, bool final)
{
    Type *r = type_resolve(c->t[0]);
    if (r->kind == TY_ERROR) {
        poison(c->t[1]);
        return true;
    }
    if (r->kind == TY_VAR || r->kind == TY_TANGENT) {
        if (!final)
            return false;
        FieldRef *fs[4];
        int n = lookup_fields(con_env(c), c->name, fs, 4);
        if (n != 1) {
            error_at(c->loc, "cannot infer the record type for field %s; annotate", c->name);
            poison(c->t[1]);
            return true;
        }
        type_unify(r, fresh_instance(fs[0]->decl, con_level(c)));
        return false;
    }
    if (r->kind == TY_NAMED && r->decl->kind == TD_RECORD) {
        int i = field_index(r->decl, c->name);
        if (i < 0) {
            const char *sug = NULL;
            Suggest s = {c->name, NULL, 3};
            for (int k = 0; k < r->decl->nfields; k++)
                suggest_try(&s, r->decl->fields[k]);
            sug = s.best;
            char *t = type_to_string(r);
            if (sug)
                error_at(c->loc, "the record type %s has no field %s; did you mean '%s'?", t,
                         c->name, sug);
            else
                error_at(c->loc, "the record type %s has no field %s", t, c->name);
            poison(c->t[1]);
            return true;
        }
        if (c->node && c->node->kind == EX_FIELD)
            c->node->u.field.index = i;
        con_result(c, c->t[1], type_field_type(r, i));
        return true;
    }
    char *t = type_to_string(r);
    error_at(c->loc, "this expression has type %s, which is not a record; it has no field %s", t,
             c->name);
    poison(c->t[1]);
    return true;
}

static bool solve_proj(Constraint *c, bool final)
{
    Type *t = type_resolve(c->t[0]);
    if (t->kind == TY_ERROR) {
        poison(c->t[1]);
        return true;
    }
    if (t->kind == TY_VAR || t->kind == TY_TANGENT) {
        if (!final)
            return false;
        error_at(c->loc, "cannot infer the tuple type of this expression (for .%d); annotate",
                 c->n);
        poison(c->t[1]);
        return true;
    }
    if (t->kind != TY_TUPLE) {
        char *s = type_to_string(t);
        error_at(c->loc, "this expression has type %s, which is not a tuple; it has no component .%d",
                 s, c->n);
        poison(c->t[1]);
        return true;
    }
    if (c->n >= t->nargs) {
        error_at(c->loc, "this tuple has %d components; .%d does not exist", t->nargs, c->n);
        poison(c->t[1]);
        return true;
    }
    con_result(c, c->t[1], t->args[c->n]);
    return true;
}

static Type *instantiate(Binding *b, Loc loc, Type ***inst);

/* CK_COMPOSE: f >>> g on functions is fn x => g (f x); on learners it is
 * learner_seq f g (and f *** g is learner_par f g), from std/learn. */
static bool solve_compose(Constraint *c, bool final)
{
    Type *a = type_resolve(c->t[0]);
    const char *sp = c->what;
    if (a->kind == TY_ERROR) {
        poison(c->t[2]);
        return true;
    }
    if (a->kind == TY_VAR || a->kind == TY_TANGENT) {
        if (!final)
            return false;
        int lv = con_level(c);
        type_unify(a, type_func(type_fresh_var(lv), type_fresh_var(lv)));
        return false;
    }
    if (a->kind == TY_FUNC && c->op == OP_COMPOSE) {
        Type *z = type_fresh_var(con_level(c));
        Type *want = type_func(a->args[1], z);
        if (!type_unify(c->t[1], want)) {
            TypePrinter p = {.n = 0};
            char *x = type_to_string_with(&p, a), *y = type_to_string_with(&p, c->t[1]);
            error_at(c->loc, "cannot compose %s with %s: the result of the first is not the "
                     "argument of the second", x, y);
            poison(c->t[2]);
            return true;
        }
        con_result(c, c->t[2], type_func(a->args[0], z));
        return true;
    }
    if (a->kind == TY_NAMED && !strcmp(a->decl->name, "learner")) {
        if (!c->impl) {
            error_at(c->loc, "%s on learners needs %s from std/learn; add `import std/learn`", sp,
                     c->op == OP_PAR ? "learner_par" : "learner_seq");
            poison(c->t[2]);
            return true;
        }
        Type **inst = NULL;
        int save = S.level;
        S.level = con_level(c);
        Type *ft = instantiate(c->impl, c->loc, &inst);
        S.level = save;
        if (!type_unify(ft, type_func(c->t[0], type_func(c->t[1], c->t[2])))) {
            TypePrinter p = {.n = 0};
            char *x = type_to_string_with(&p, a), *y = type_to_string_with(&p, c->t[1]);
            error_at(c->loc, "cannot compose the learners %s and %s with %s", x, y, sp);
            poison(c->t[2]);
            return true;
        }
        if (c->node && c->node->kind == EX_BINOP) {
            c->node->u.op.binding = c->impl;
            c->node->u.op.inst = inst;
            c->node->u.op.ninst = c->impl->nqvars;
        }
        return true;
    }
    char *s = type_to_string(a);
    if (c->op == OP_PAR)
        error_at(c->loc, "*** composes learners in parallel, but the left operand has type %s", s);
    else
        error_at(c->loc, ">>> composes functions or learners, but the left operand has type %s",
                 s);
    poison(c->t[2]);
    return true;
}

/* The module a constraint was made in (for CK_FIELD's record lookup). */
static ModEnv *con_env(Constraint *c)
{
    return c->scope ? c->scope : S.env;
}

static bool solve_one_raw(Constraint *c, bool final);

/* Tries c; true when it is solved (or reported). An error in an instance
 * of a scheme's constraint also points at where the generic definition
 * needed it. */
static bool solve_one(Constraint *c, bool final)
{
    int errs = diag_error_count();
    bool r = solve_one_raw(c, final);
    if (diag_error_count() != errs && c->origin.line &&
        (c->origin.line != c->loc.line || c->origin.col != c->loc.col))
        note_at(c->origin, "required by this use of %s in a polymorphic definition", c->what);
    return r;
}

static bool solve_one_raw(Constraint *c, bool final)
{
    switch (c->kind) {
    case CK_CLASS:
        if (!solve_class(c)) {
            if (!final)
                return false;
            /* defaults: a number is float unless its leaves say otherwise */
            Type *t = type_resolve(c->t[0]);
            if (c->cls == TC_ARRAY || c->cls == TC_ANYARRAY) {
                error_at(c->loc, "cannot infer the rank and element type of this array; "
                         "annotate the result of %s", c->what);
                poison(t);
                return true;
            }
            Type *d = c->t[1] ? c->t[1] : c->cls == TC_EQ ? type_unit() : type_float();
            type_unify(t, d);
            return false;
        }
        return true;
    case CK_BCAST: return solve_bcast(c, final);
    case CK_MATMUL: return solve_matmul(c, final);
    case CK_CONVERT: return solve_convert(c, final);
    case CK_SHAPE: return solve_shape(c, final);
    case CK_RESHAPE: return solve_reshape(c, final);
    case CK_REDUCE_ALL: return solve_reduce_all(c, final);
    case CK_DROP_AXIS: return solve_drop_axis(c, final);
    case CK_RANK_IN: return solve_rank_in(c, final);
    case CK_ONE_HOT: return solve_one_hot(c, final);
    case CK_HESSIAN: return solve_hessian(c, final);
    case CK_FIELD: return solve_field(c, final);
    case CK_PROJ: return solve_proj(c, final);
    case CK_COMPOSE: return solve_compose(c, final);
    }
    return true;
}

static void compact_pending(void)
{
    int j = 0;
    for (int i = 0; i < S.pending.len; i++)
        if (!((Constraint *)S.pending.data[i])->done)
            S.pending.data[j++] = S.pending.data[i];
    S.pending.len = j;
}

/* Solves what can be solved, to a fixed point. */
static void solve_pending(void)
{
    for (;;) {
        bool progress = false;
        for (int i = 0; i < S.pending.len; i++) {
            Constraint *c = S.pending.data[i];
            if (c->done)
                continue;
            if (solve_one(c, false)) {
                c->done = true;
                progress = true;
            }
        }
        compact_pending();
        if (!progress)
            break;
    }
    S.solved_at = type_bind_count;
}

static void maybe_solve(void)
{
    if (S.solved_at != type_bind_count && S.pending.len)
        solve_pending();
}

/* Applies the default of one stuck constraint from `set` (NULL: all
 * pending), then solves again; false when none was left. */
static bool default_one(bool (*pick)(Constraint *))
{
    for (int i = 0; i < S.pending.len; i++) {
        Constraint *c = S.pending.data[i];
        if (c->done || (pick && !pick(c)))
            continue;
        if (solve_one(c, true))
            c->done = true;
        solve_pending();
        c->done = true; /* a default that did not settle it drops it */
        compact_pending();
        return true;
    }
    return false;
}

static void solve_final(void)
{
    solve_pending();
    for (int guard = 0; guard < 100000 && default_one(NULL); guard++)
        ;
}

/* ======================================================================
 * type expressions and declarations
 * ====================================================================== */

static void ensure_alias(TypeDecl *d);

typedef struct TEnv {
    TypeDecl *decl; /* converting the body of this declaration (its 'a are
                       TY_QVARs), or NULL for an annotation */
} TEnv;

static Type *with_origin(Type *t, Loc loc)
{
    if (t->kind == TY_ERROR || t->kind == TY_VAR)
        return t;
    Type *c = type_copy_node(t);
    c->origin = loc;
    return c;
}

static Type *annot_var(const char *name)
{
    for (int i = 0; i < S.tvars.len; i++) {
        TVar *v = S.tvars.data[i];
        if (v->name == name)
            return v->var;
    }
    TVar *v = NEW(TVar);
    v->name = name;
    v->var = type_fresh_var(S.level);
    vec_push(&S.tvars, v);
    return v->var;
}

static Type *base_type(const char *n)
{
    if (!strcmp(n, "int")) return type_int();
    if (!strcmp(n, "float")) return type_float();
    if (!strcmp(n, "f32")) return type_f32();
    if (!strcmp(n, "bool")) return type_bool();
    if (!strcmp(n, "unit")) return type_unit();
    if (!strcmp(n, "string")) return type_string();
    if (!strcmp(n, "key")) return type_rng_key();
    return NULL;
}

static Type *conv(TypeExpr *te, TEnv *te_env)
{
    if (!te)
        return type_error();
    switch (te->kind) {
    case TE_VAR: {
        const char *n = intern(te->name);
        if (te_env->decl) {
            for (int i = 0; i < te_env->decl->ntparams; i++)
                if (te_env->decl->tparams[i] == n)
                    return type_qvar(i);
            if (!S.quiet)
                error_at(te->loc, "unbound type variable '%s in the declaration of %s", n,
                         te_env->decl->name);
            return type_error();
        }
        return annot_var(n);
    }
    case TE_NAME: {
        const char *n = intern(te->name);
        Type *b = base_type(n);
        if (b && te->nargs == 0)
            return with_origin(b, te->loc);
        TypeDecl *d = lookup_type(S.env, n);
        if (!d) {
            if (!S.quiet) {
                const char *sug = suggestion(n, NS_TYPE);
                if (b)
                    error_at(te->loc, "the type %s takes no arguments", n);
                else if (sug)
                    error_at(te->loc, "unknown type '%s'; did you mean '%s'?", n, sug);
                else
                    error_at(te->loc, "unknown type '%s'", n);
            }
            return type_error();
        }
        if (d->ntparams != te->nargs) {
            if (!S.quiet)
                error_at(te->loc, "the type %s expects %d argument%s, but is given %d", n,
                         d->ntparams, d->ntparams == 1 ? "" : "s", te->nargs);
            return type_error();
        }
        Type **as = NEWN(Type *, te->nargs ? te->nargs : 1);
        for (int i = 0; i < te->nargs; i++)
            as[i] = conv(te->args[i], te_env);
        if (d->kind == TD_ALIAS) {
            ensure_alias(d);
            return with_origin(type_subst(d->alias, as, te->nargs), te->loc);
        }
        Type *t = type_named(d, as, te->nargs);
        t->origin = te->loc;
        return t;
    }
    case TE_TUPLE: {
        Type **as = NEWN(Type *, te->nargs ? te->nargs : 1);
        for (int i = 0; i < te->nargs; i++)
            as[i] = conv(te->args[i], te_env);
        Type *t = type_tuple(as, te->nargs);
        t->origin = te->loc;
        return t;
    }
    case TE_ARRAY: {
        Type *t = type_array(conv(te->elem, te_env), 1);
        return with_origin(t, te->loc);
    }
    case TE_FUNC: {
        Type *t = type_func(conv(te->elem, te_env), conv(te->result, te_env));
        t->origin = te->loc;
        return t;
    }
    case TE_RECORD:
        if (!S.quiet)
            error_at(te->loc, "a record type must be declared with `type name = { ... }`");
        return type_error();
    }
    return type_error();
}

static Type *conv_annot(TypeExpr *te)
{
    TEnv e = {NULL};
    return conv(te, &e);
}

static void ensure_alias(TypeDecl *d)
{
    if (d->alias_state == 2)
        return;
    if (d->alias_state == 1) {
        if (!S.quiet)
            error_at(d->loc, "the type alias %s refers to itself", d->name);
        d->alias = type_error();
        d->alias_state = 2;
        return;
    }
    d->alias_state = 1;
    ModEnv *save = S.env;
    S.env = env_of(d->module);
    TEnv e = {d};
    Type *t = conv(d->decl->alias, &e);
    S.env = save;
    if (d->alias_state == 1)
        d->alias = t;
    d->alias_state = 2;
}

static ModEnv *new_env(Module *m)
{
    ModEnv *e = NEW(ModEnv);
    e->m = m;
    map_put(&S.envs, m, e);
    return e;
}

/* Registers the names of a module's type declarations (all declarations
 * of a module may refer to each other). */
static void declare_types(ModEnv *e)
{
    for (int i = 0; i < e->m->ndecls; i++) {
        Decl *d = e->m->decls[i];
        if (d->kind != DECL_TYPE)
            continue;
        TypeDecl *td = NEW(TypeDecl);
        td->name = intern(d->name);
        td->loc = d->name_loc.line ? d->name_loc : d->loc;
        td->decl = d;
        td->kind = d->tkind;
        td->module = e->m;
        td->ntparams = d->ntparams;
        td->tparams = NEWN(const char *, d->ntparams ? d->ntparams : 1);
        for (int k = 0; k < d->ntparams; k++) {
            td->tparams[k] = intern(d->tparams[k]);
            for (int j = 0; j < k; j++)
                if (td->tparams[j] == td->tparams[k])
                    error_at(td->loc, "the type parameter '%s appears twice", td->tparams[k]);
        }
        d->tdecl = td;
        TypeDecl *old = map_get(&e->types, td->name);
        if (old) {
            error_at(td->loc, "duplicate definition of the type %s", td->name);
            note_at(old->loc, "%s was first defined here", td->name);
            continue;
        }
        if (base_type(td->name))
            error_at(td->loc, "cannot redefine the built-in type %s", td->name);
        map_put(&e->types, td->name, td);
    }
}

static void define_types(ModEnv *e)
{
    S.env = e;
    for (int i = 0; i < e->m->ndecls; i++) {
        Decl *d = e->m->decls[i];
        if (d->kind != DECL_TYPE || !d->tdecl)
            continue;
        TypeDecl *td = d->tdecl;
        TEnv te = {td};
        if (td->kind == TD_ALIAS) {
            ensure_alias(td);
        } else if (td->kind == TD_RECORD) {
            TypeExpr *r = d->record;
            int n = r ? r->nargs : 0;
            td->nfields = n;
            td->fields = NEWN(const char *, n ? n : 1);
            td->field_types = NEWN(Type *, n ? n : 1);
            for (int k = 0; k < n; k++) {
                td->fields[k] = intern(r->fields[k]);
                td->field_types[k] = conv(r->args[k], &te);
                bool dup = false;
                for (int j = 0; j < k; j++)
                    if (td->fields[j] == td->fields[k])
                        dup = true;
                if (dup) {
                    error_at(r->args[k] ? r->args[k]->loc : td->loc,
                             "the field %s appears twice in the record %s", td->fields[k],
                             td->name);
                    continue;
                }
                FieldRef *f = NEW(FieldRef);
                f->decl = td;
                f->index = k;
                f->next = map_get(&e->fields, td->fields[k]);
                map_put(&e->fields, td->fields[k], f);
            }
        } else {
            td->ncons = d->ncons;
            td->cons = NEWN(const char *, d->ncons ? d->ncons : 1);
            td->con_args = NEWN(Type *, d->ncons ? d->ncons : 1);
            for (int k = 0; k < d->ncons; k++) {
                ConDecl *cd = &d->cons[k];
                td->cons[k] = intern(cd->name);
                td->con_args[k] = cd->arg ? conv(cd->arg, &te) : NULL;
                ConRef *old = map_get(&e->cons, td->cons[k]);
                if (old) {
                    error_at(cd->loc.line ? cd->loc : td->loc,
                             "duplicate definition of the constructor %s", td->cons[k]);
                    note_at(old->decl->decl && old->decl->decl->cons
                                ? old->decl->decl->cons[old->index].loc
                                : old->decl->loc,
                            "%s was first defined here", td->cons[k]);
                    continue;
                }
                ConRef *c = NEW(ConRef);
                c->decl = td;
                c->index = k;
                map_put(&e->cons, td->cons[k], c);
            }
        }
    }
}

/* A variant is recursive when it can reach itself through its fields. */
static bool type_reaches(Type *t, TypeDecl *target, Vec *seen);

static bool decl_reaches(TypeDecl *d, TypeDecl *target, Vec *seen)
{
    for (int i = 0; i < seen->len; i++)
        if (seen->data[i] == d)
            return false;
    vec_push(seen, d);
    int n = d->kind == TD_RECORD ? d->nfields : d->kind == TD_VARIANT ? d->ncons : 0;
    Type **src = d->kind == TD_RECORD ? d->field_types : d->con_args;
    for (int i = 0; i < n; i++)
        if (src[i] && type_reaches(src[i], target, seen))
            return true;
    return false;
}

static bool type_reaches(Type *t, TypeDecl *target, Vec *seen)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_ARRAY:
        return type_reaches(t->elem, target, seen);
    case TY_NAMED:
        if (t->decl == target)
            return true;
        if (decl_reaches(t->decl, target, seen))
            return true;
        /* fallthrough */
    case TY_TUPLE:
    case TY_FUNC:
        for (int i = 0; i < t->nargs; i++)
            if (type_reaches(t->args[i], target, seen))
                return true;
        return false;
    default:
        return false;
    }
}

static void mark_recursive(ModEnv *e)
{
    for (int i = 0; i < e->m->ndecls; i++) {
        Decl *d = e->m->decls[i];
        if (d->kind != DECL_TYPE || !d->tdecl || d->tdecl->kind == TD_ALIAS)
            continue;
        TypeDecl *td = d->tdecl;
        Vec seen = {0};
        int n = td->kind == TD_RECORD ? td->nfields : td->ncons;
        Type **src = td->kind == TD_RECORD ? td->field_types : td->con_args;
        for (int k = 0; k < n && !td->recursive; k++)
            if (src[k] && type_reaches(src[k], td, &seen))
                td->recursive = true;
        vec_free(&seen);
    }
}

/* ======================================================================
 * schemes: instantiation and generalisation
 * ====================================================================== */

static Binding *find_learner_op(int op)
{
    const char *n = intern(op == OP_PAR ? "learner_par" : "learner_seq");
    Binding *b = S.env ? lookup_global(S.env, n) : NULL;
    return b && b->def ? b : NULL;
}

/* Fresh variables for a scheme's quantifiers; its constraints are copied
 * into the pending set (re-checked for this use). */
static Type *instantiate(Binding *b, Loc loc, Type ***inst)
{
    *inst = NULL;
    if (b->nqvars == 0)
        return b->type;
    int n = b->nqvars;
    Type **fresh = NEWN(Type *, n);
    for (int i = 0; i < n; i++)
        fresh[i] = type_fresh_var(S.level);
    Type *t = type_subst(b->type, fresh, n);
    for (int i = 0; i < b->ncons; i++) {
        Constraint *k = con_copy(b->cons[i]);
        for (int j = 0; j < 3; j++)
            k->t[j] = type_subst(k->t[j], fresh, n);
        for (int j = 0; j < 2; j++)
            k->orig[j] = type_subst(k->orig[j], fresh, n);
        if (!k->origin.line)
            k->origin = k->loc;
        k->loc = loc;
        k->node = NULL;
        k->scope = S.env;
        if (k->kind == CK_COMPOSE && !k->impl)
            k->impl = find_learner_op(k->op);
        vec_push(&S.pending, k);
    }
    *inst = fresh;
    return t;
}

static void collect_vars(Type *t, int lv, Vec *out)
{
    t = type_resolve(t);
    if (!t)
        return;
    switch (t->kind) {
    case TY_VAR:
        if (t->level > lv && t->level != TYPE_GENERIC_LEVEL) {
            for (int i = 0; i < out->len; i++)
                if (out->data[i] == t)
                    return;
            vec_push(out, t);
        }
        return;
    case TY_ARRAY:
        collect_vars(t->elem, lv, out);
        return;
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT:
        for (int i = 0; i < t->nargs; i++)
            collect_vars(t->args[i], lv, out);
        return;
    default:
        return;
    }
}

static void con_vars(Constraint *c, int lv, Vec *out)
{
    for (int j = 0; j < 3; j++)
        if (c->t[j])
            collect_vars(c->t[j], lv, out);
}

static bool con_is_local(Constraint *c, int lv)
{
    Vec v = {0};
    con_vars(c, lv, &v);
    bool r = v.len > 0;
    vec_free(&v);
    return r;
}

static bool vec_has(Vec *v, void *p)
{
    for (int i = 0; i < v->len; i++)
        if (v->data[i] == p)
            return true;
    return false;
}

static bool con_mentions(Constraint *c, int lv, Vec *vars)
{
    Vec v = {0};
    con_vars(c, lv, &v);
    bool r = false;
    for (int i = 0; i < v.len && !r; i++)
        r = vec_has(vars, v.data[i]);
    vec_free(&v);
    return r;
}

/* Adds to `vars` the variables of the constraints connected to them;
 * those constraints go to `kept`. */
static void close_over_constraints(Vec *vars, Vec *kept, int lv)
{
    bool changed = true;
    while (changed) {
        changed = false;
        for (int i = 0; i < S.pending.len; i++) {
            Constraint *c = S.pending.data[i];
            if (c->done || vec_has(kept, c) || !con_mentions(c, lv, vars))
                continue;
            vec_push(kept, c);
            con_vars(c, lv, vars);
            changed = true;
        }
    }
}

static void lower_levels(Type *t, int lv)
{
    Vec v = {0};
    collect_vars(t, lv, &v);
    for (int i = 0; i < v.len; i++)
        ((Type *)v.data[i])->level = lv;
    vec_free(&v);
}

static Type *abstract(Type *t, Vec *vars)
{
    if (!t)
        return NULL;
    t = type_resolve(t);
    switch (t->kind) {
    case TY_VAR:
        for (int i = 0; i < vars->len; i++)
            if (vars->data[i] == t)
                return type_qvar(i);
        return t;
    case TY_ARRAY:
        return type_array(abstract(t->elem, vars), t->rank);
    case TY_TANGENT:
        return type_tangent(abstract(t->args[0], vars));
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED: {
        Type *r = type_copy_node(t);
        r->args = NEWN(Type *, t->nargs ? t->nargs : 1);
        for (int i = 0; i < t->nargs; i++)
            r->args[i] = abstract(t->args[i], vars);
        return r;
    }
    default:
        return t;
    }
}

static int pick_level;
static Vec *pick_kept;

/* A field access whose record type is a variable of this let. */
static bool pick_local_field(Constraint *c)
{
    Type *r = type_resolve(c->t[0]);
    return c->kind == CK_FIELD && r->kind == TY_VAR && r->level > pick_level &&
           r->level != TYPE_GENERIC_LEVEL;
}

static bool pick_ambiguous(Constraint *c)
{
    return con_is_local(c, pick_level) && !vec_has(pick_kept, c);
}

/* Does c mention a variable of the enclosing scopes (level <= lv)? */
static bool con_mentions_outer(Constraint *c, int lv)
{
    Vec v = {0};
    for (int j = 0; j < 3; j++)
        if (c->t[j])
            collect_vars(c->t[j], -1, &v);
    bool r = false;
    for (int i = 0; i < v.len && !r; i++)
        r = ((Type *)v.data[i])->level <= lv;
    vec_free(&v);
    return r;
}

/* Local constraints that are not generalised but involve the enclosing
 * scopes belong to them: their variables move out to level lv. */
static void lower_outer_constraints(Vec *kept, int lv)
{
    for (int i = 0; i < S.pending.len; i++) {
        Constraint *c = S.pending.data[i];
        if (c->done || vec_has(kept, c) || !con_is_local(c, lv) || !con_mentions_outer(c, lv))
            continue;
        for (int j = 0; j < 3; j++)
            if (c->t[j])
                lower_levels(c->t[j], lv);
    }
}

/* a makes b redundant: the same requirement, or CLASS with leaves given
 * against the same CLASS without. */
static bool con_subsumes(Constraint *a, Constraint *b)
{
    if (a->kind == CK_CLASS && b->kind == CK_CLASS) {
        /* the operator only matters for messages; non-structural is
         * the stronger requirement */
        return a->cls == b->cls && (!a->structural || b->structural) &&
               type_equal(a->t[0], b->t[0]) &&
               (!b->t[1] || (a->t[1] && type_equal(a->t[1], b->t[1])));
    }
    if (a->kind != b->kind || a->op != b->op || a->cls != b->cls || a->n != b->n ||
        a->m != b->m || a->name != b->name || a->structural != b->structural)
        return false;
    if (a->what != b->what && (!a->what || !b->what || strcmp(a->what, b->what)))
        return false;
    for (int j = 0; j < 3; j++) {
        if (!a->t[j] && !b->t[j])
            continue;
        if (a->kind == CK_CLASS && j == 1 && a->t[1] && !b->t[1])
            continue;
        if (!a->t[j] || !b->t[j] || !type_equal(a->t[j], b->t[j]))
            return false;
    }
    return true;
}

static void dedup_constraints(Vec *cs)
{
    int n = 0;
    for (int i = 0; i < cs->len; i++) {
        Constraint *c = cs->data[i];
        bool redundant = false;
        for (int k = 0; k < cs->len && !redundant; k++) {
            Constraint *o = cs->data[k];
            if (k == i || !con_subsumes(o, c))
                continue;
            /* of two equal ones keep the first */
            redundant = !con_subsumes(c, o) || k < i;
        }
        if (!redundant)
            cs->data[n++] = c;
    }
    cs->len = n;
}

/* Generalises the bindings bs[0..n) (one let, or one component of
 * top-level defs) at level lv: their variables above lv become quantified,
 * with the open constraints connected to them. A field access on a type
 * still unknown here picks the unique record with that field; constraints
 * on variables that appear in no type (ambiguous) are defaulted. */
static void generalise(Binding **bs, const bool *gen_ok, int n, int lv)
{
    for (int i = 0; i < n; i++)
        if (!gen_ok[i])
            lower_levels(bs[i]->type, lv);
    solve_pending();
    pick_level = lv;
    while (default_one(pick_local_field))
        ;
    Vec qall = {0}, kept = {0};
    for (int round = 0; round < 1000; round++) {
        qall.len = kept.len = 0;
        for (int i = 0; i < n; i++)
            if (gen_ok[i])
                collect_vars(bs[i]->type, lv, &qall);
        close_over_constraints(&qall, &kept, lv);
        lower_outer_constraints(&kept, lv);
        pick_kept = &kept;
        if (!default_one(pick_ambiguous))
            break;
    }
    for (int i = 0; i < n; i++) {
        Binding *b = bs[i];
        if (!gen_ok[i])
            continue;
        Vec vars = {0}, mine = {0};
        collect_vars(b->type, lv, &vars);
        close_over_constraints(&vars, &mine, lv);
        dedup_constraints(&mine);
        b->nqvars = vars.len;
        b->generic = NEWN(Type *, vars.len ? vars.len : 1);
        for (int k = 0; k < vars.len; k++)
            b->generic[k] = vars.data[k];
        Type *body = abstract(b->type, &vars);
        b->ncons = mine.len;
        b->cons = NEWN(Constraint *, mine.len ? mine.len : 1);
        for (int k = 0; k < mine.len; k++) {
            Constraint *c = con_copy(mine.data[k]);
            for (int j = 0; j < 3; j++)
                c->t[j] = abstract(c->t[j], &vars);
            for (int j = 0; j < 2; j++)
                c->orig[j] = abstract(c->orig[j], &vars);
            c->node = NULL;
            b->cons[k] = c;
        }
        b->type = body;
        vec_free(&vars);
        vec_free(&mine);
    }
    for (int i = 0; i < qall.len; i++)
        ((Type *)qall.data[i])->level = TYPE_GENERIC_LEVEL;
    for (int i = 0; i < kept.len; i++)
        ((Constraint *)kept.data[i])->done = true;
    compact_pending();
    vec_free(&qall);
    vec_free(&kept);
}

/* Value restriction (Wright 1995): only syntactic values are generalised,
 * so that `let x = read_npy "f"` has one type. */
static bool nonexpansive(Expr *e)
{
    switch (e->kind) {
    case EX_INT: case EX_FLOAT: case EX_BOOL: case EX_UNIT: case EX_STRING:
    case EX_VAR: case EX_CON: case EX_OPFN: case EX_LAMBDA:
        return true;
    case EX_TUPLE:
    case EX_ARRAY:
        for (int i = 0; i < e->u.list.n; i++)
            if (!nonexpansive(e->u.list.items[i]))
                return false;
        return true;
    case EX_RECORD:
        for (int i = 0; i < e->u.rec.n; i++)
            if (!nonexpansive(e->u.rec.values[i]))
                return false;
        return true;
    case EX_ANNOT:
        return nonexpansive(e->u.annot.e);
    case EX_APP:
        return e->u.app.fn->kind == EX_CON && nonexpansive(e->u.app.arg);
    default:
        return false;
    }
}

/* ======================================================================
 * patterns
 * ====================================================================== */

static Binding *new_local(const char *name, Loc loc, Type *t)
{
    Binding *b = NEW(Binding);
    b->name = name;
    b->loc = loc;
    b->type = t;
    b->module = S.env ? S.env->m : NULL;
    vec_push(&S.locals, b);
    return b;
}

static void pat_mismatch(Pat *p, Type *pt, Type *vt)
{
    UnifyFailure f = type_unify_failure();
    TypePrinter pr = {.n = 0};
    if (f.occurs) {
        char *a = type_to_string_with(&pr, f.a), *b = type_to_string_with(&pr, f.b);
        error_at(p->loc, "infinite type: %s = %s", a, b);
        return;
    }
    char *a = type_to_string_with(&pr, pt), *b = type_to_string_with(&pr, vt);
    error_at(p->loc, "this pattern has type %s but the value it matches has type %s", a, b);
}

static void check_pat(Pat *p, Type *t);

static void pat_poison(Pat *p)
{
    if (p)
        check_pat(p, type_error());
}

static void pat_expect(Pat *p, Type *t, Type *want)
{
    if (!type_unify(t, want))
        pat_mismatch(p, want, t);
}

/* Finds the record type a literal or pattern with these fields has: the
 * expected type when it is known, else the nearest record declaring the
 * first field and all the others. */
static TypeDecl *record_for_fields(const char **names, int n, Loc loc)
{
    FieldRef *fs[32];
    if (n == 0)
        return NULL;
    int nf = lookup_fields(S.env, intern(names[0]), fs, 32);
    if (nf == 0) {
        const char *sug = suggestion(intern(names[0]), NS_FIELD);
        if (sug)
            error_at(loc, "unknown field '%s'; did you mean '%s'?", names[0], sug);
        else
            error_at(loc, "unknown field '%s': no record type declares it", names[0]);
        return NULL;
    }
    for (int k = 0; k < nf; k++) {
        TypeDecl *d = fs[k]->decl;
        bool all = true;
        for (int i = 1; i < n && all; i++)
            all = field_index(d, intern(names[i])) >= 0;
        if (all)
            return d;
    }
    return fs[0]->decl;
}

static void check_pat(Pat *p, Type *t)
{
    if (!p)
        return;
    vec_push(&S.all_pats, p);
    p->type = t;
    switch (p->kind) {
    case PAT_WILD:
        return;
    case PAT_VAR: {
        const char *n = intern(p->name);
        if (vec_has(&S.pat_names, (void *)n))
            error_at(p->loc, "the variable %s is bound twice in this pattern", n);
        vec_push(&S.pat_names, (void *)n);
        p->binding = new_local(n, p->loc, t);
        return;
    }
    case PAT_INT:
        pat_expect(p, t, type_int());
        return;
    case PAT_FLOAT:
        pat_expect(p, t, p->is_f32 ? type_f32() : type_float());
        return;
    case PAT_BOOL:
        pat_expect(p, t, type_bool());
        return;
    case PAT_STRING:
        pat_expect(p, t, type_string());
        return;
    case PAT_UNIT:
        pat_expect(p, t, type_unit());
        return;
    case PAT_TUPLE: {
        Type *r = type_resolve(t);
        if (r->kind == TY_TUPLE && r->nargs != p->nitems) {
            char *s = type_to_string(r);
            error_at(p->loc, "this pattern has %d components, but the value is a %d-tuple of type %s",
                     p->nitems, r->nargs, s);
            for (int i = 0; i < p->nitems; i++)
                pat_poison(p->items[i]);
            return;
        }
        Type **its;
        if (r->kind == TY_TUPLE) {
            its = r->args;
        } else {
            its = NEWN(Type *, p->nitems ? p->nitems : 1);
            for (int i = 0; i < p->nitems; i++)
                its[i] = r->kind == TY_ERROR ? type_error() : type_fresh_var(S.level);
            Type *tt = type_tuple(its, p->nitems);
            if (!type_unify(t, tt)) {
                pat_mismatch(p, tt, t);
                for (int i = 0; i < p->nitems; i++)
                    pat_poison(p->items[i]);
                return;
            }
        }
        for (int i = 0; i < p->nitems; i++)
            check_pat(p->items[i], its[i]);
        return;
    }
    case PAT_RECORD: {
        Type *r = type_resolve(t);
        TypeDecl *d = NULL;
        if (r->kind == TY_NAMED && r->decl->kind == TD_RECORD)
            d = r->decl;
        else if (r->kind != TY_ERROR)
            d = record_for_fields(p->fields, p->nitems, p->loc);
        if (!d) {
            for (int i = 0; i < p->nitems; i++)
                pat_poison(p->items[i]);
            return;
        }
        Type *inst = r->kind == TY_NAMED && r->decl == d ? r : fresh_instance(d, S.level);
        if (inst != r && !type_unify(t, inst)) {
            pat_mismatch(p, inst, t);
            for (int i = 0; i < p->nitems; i++)
                pat_poison(p->items[i]);
            return;
        }
        for (int i = 0; i < p->nitems; i++) {
            const char *f = intern(p->fields[i]);
            int k = field_index(d, f);
            for (int j = 0; j < i; j++)
                if (intern(p->fields[j]) == f)
                    error_at(p->items[i] ? p->items[i]->loc : p->loc,
                             "the field %s appears twice in this pattern", f);
            if (k < 0) {
                error_at(p->items[i] ? p->items[i]->loc : p->loc,
                         "the record type %s has no field %s", d->name, f);
                pat_poison(p->items[i]);
                continue;
            }
            if (p->items[i])
                check_pat(p->items[i], type_field_type(inst, k));
        }
        /* fields not mentioned are ignored, with or without `..`
         * (LANGUAGE.md §4: let {w1, b1} = p in ...) */
        return;
    }
    case PAT_CON: {
        const char *n = intern(p->name);
        ConRef *cr = lookup_con(S.env, n);
        if (!cr) {
            const char *sug = suggestion(n, NS_CON);
            if (sug)
                error_at(p->loc, "unknown constructor '%s'; did you mean '%s'?", n, sug);
            else
                error_at(p->loc, "unknown constructor '%s'", n);
            pat_poison(p->arg);
            return;
        }
        p->con_decl = cr->decl;
        p->con_index = cr->index;
        Type *r = type_resolve(t);
        Type *inst = r->kind == TY_NAMED && r->decl == cr->decl ? r
                                                                : fresh_instance(cr->decl, S.level);
        if (inst != r && !type_unify(t, inst)) {
            pat_mismatch(p, inst, t);
            pat_poison(p->arg);
            return;
        }
        Type *at = type_con_arg(inst, cr->index);
        if (at && !p->arg) {
            error_at(p->loc, "the constructor %s expects an argument (write %s _ to ignore it)", n,
                     n);
        } else if (!at && p->arg) {
            error_at(p->loc, "the constructor %s takes no argument", n);
            pat_poison(p->arg);
        } else if (at) {
            check_pat(p->arg, at);
        }
        return;
    }
    case PAT_ANNOT: {
        Type *at = conv_annot(p->annot);
        if (!type_unify(t, at)) {
            TypePrinter pr = {.n = 0};
            char *a = type_to_string_with(&pr, at), *b = type_to_string_with(&pr, t);
            error_at(p->loc, "this pattern is annotated %s but the value it matches has type %s", a,
                     b);
            check_pat(p->arg, at);
            return;
        }
        check_pat(p->arg, at);
        return;
    }
    }
}

/* ======================================================================
 * exhaustiveness and redundancy (Maranget 2007)
 *
 * A pattern matrix P (rows of patterns) and a vector q: q is useful with
 * respect to P when some value matches q and no row of P. Specialising by
 * a constructor c keeps the rows whose first pattern is c or a wildcard,
 * replacing it by its arguments; the default matrix keeps the rows with a
 * wildcard first. A match is exhaustive when (_) is not useful; a case is
 * unreachable when it is not useful with respect to the cases above it.
 * missing() also builds a witness: a value no row matches.
 * ====================================================================== */

typedef enum { H_TUPLE, H_RECORD, H_CON, H_BOOL, H_UNIT, H_INT, H_FLOAT, H_STRING } HeadKind;

typedef struct Head {
    HeadKind kind;
    int index;      /* H_CON, H_BOOL */
    int arity;
    TypeDecl *decl; /* H_CON, H_RECORD */
    Pat *lit;       /* H_INT, H_FLOAT, H_STRING */
} Head;

static Pat wild_pat = {.kind = PAT_WILD};

static Pat *strip(Pat *p)
{
    while (p && p->kind == PAT_ANNOT)
        p = p->arg;
    return p ? p : &wild_pat;
}

static bool is_wild(Pat *p)
{
    p = strip(p);
    return p->kind == PAT_WILD || p->kind == PAT_VAR;
}

static bool head_of(Pat *p, Head *h)
{
    p = strip(p);
    memset(h, 0, sizeof *h);
    switch (p->kind) {
    case PAT_TUPLE:
        h->kind = H_TUPLE;
        h->arity = p->nitems;
        return true;
    case PAT_RECORD: {
        Type *t = type_resolve(p->type);
        if (!t || t->kind != TY_NAMED)
            return false;
        h->kind = H_RECORD;
        h->decl = t->decl;
        h->arity = t->decl->nfields;
        return true;
    }
    case PAT_CON:
        if (!p->con_decl)
            return false;
        h->kind = H_CON;
        h->decl = p->con_decl;
        h->index = p->con_index;
        h->arity = p->con_decl->con_args[p->con_index] ? 1 : 0;
        return true;
    case PAT_BOOL:
        h->kind = H_BOOL;
        h->index = p->ival != 0;
        return true;
    case PAT_UNIT:
        h->kind = H_UNIT;
        return true;
    case PAT_INT:
        h->kind = H_INT;
        h->lit = p;
        return true;
    case PAT_FLOAT:
        h->kind = H_FLOAT;
        h->lit = p;
        return true;
    case PAT_STRING:
        h->kind = H_STRING;
        h->lit = p;
        return true;
    default:
        return false;
    }
}

static bool head_eq(const Head *a, const Head *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case H_CON:
    case H_BOOL:
        return a->index == b->index;
    case H_INT:
        return a->lit->ival == b->lit->ival;
    case H_FLOAT:
        return a->lit->fval == b->lit->fval;
    case H_STRING:
        return !strcmp(a->lit->sval ? a->lit->sval : "", b->lit->sval ? b->lit->sval : "");
    default:
        return true;
    }
}

typedef struct Rows {
    Pat ***r; /* each row: n patterns */
    int len, cap;
} Rows;

static void rows_push(Rows *m, Pat **row)
{
    if (m->len == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 8;
        m->r = xrealloc(m->r, sizeof(Pat **) * (size_t)m->cap);
    }
    m->r[m->len++] = row;
}

/* The row specialised by h (n: the row's length), or NULL if it does
 * not match h. */
static Pat **spec_row(Pat **row, int n, const Head *h)
{
    Pat *p = strip(row[0]);
    Pat **out = NEWN(Pat *, h->arity + n);
    if (is_wild(p)) {
        for (int i = 0; i < h->arity; i++)
            out[i] = &wild_pat;
    } else {
        Head ph;
        if (!head_of(p, &ph) || !head_eq(&ph, h))
            return NULL;
        switch (h->kind) {
        case H_TUPLE:
            for (int i = 0; i < h->arity; i++)
                out[i] = i < p->nitems ? p->items[i] : &wild_pat;
            break;
        case H_RECORD:
            for (int i = 0; i < h->arity; i++) {
                out[i] = &wild_pat;
                for (int k = 0; k < p->nitems; k++)
                    if (intern(p->fields[k]) == h->decl->fields[i] && p->items[k])
                        out[i] = p->items[k];
            }
            break;
        case H_CON:
            if (h->arity)
                out[0] = p->arg ? p->arg : &wild_pat;
            break;
        default:
            break;
        }
    }
    for (int i = 1; i < n; i++)
        out[h->arity + i - 1] = row[i];
    return out;
}

static void specialise(Rows *P, int n, const Head *h, Rows *out)
{
    for (int i = 0; i < P->len; i++) {
        Pat **r = spec_row(P->r[i], n, h);
        if (r)
            rows_push(out, r);
    }
}

static void default_rows(Rows *P, Rows *out)
{
    for (int i = 0; i < P->len; i++)
        if (is_wild(P->r[i][0]))
            rows_push(out, P->r[i] + 1);
}

/* The distinct head constructors of the first column. */
static int column_heads(Rows *P, Head *hs, int max)
{
    int n = 0;
    for (int i = 0; i < P->len; i++) {
        Head h;
        if (is_wild(P->r[i][0]) || !head_of(P->r[i][0], &h))
            continue;
        bool seen = false;
        for (int k = 0; k < n && !seen; k++)
            seen = head_eq(&hs[k], &h);
        if (!seen && n < max)
            hs[n++] = h;
    }
    return n;
}

/* All constructors of the type of heads hs (complete signature), or -1
 * when hs does not cover them. */
static int signature(Head *hs, int n, Head *all, int max)
{
    if (n == 0)
        return -1;
    switch (hs[0].kind) {
    case H_TUPLE:
    case H_RECORD:
    case H_UNIT:
        all[0] = hs[0];
        return 1;
    case H_BOOL:
        if (n < 2)
            return -1;
        all[0] = hs[0];
        all[1] = hs[1];
        return 2;
    case H_CON: {
        TypeDecl *d = hs[0].decl;
        if (n < d->ncons || d->ncons > max)
            return -1;
        for (int i = 0; i < d->ncons; i++) {
            all[i].kind = H_CON;
            all[i].decl = d;
            all[i].index = i;
            all[i].arity = d->con_args[i] ? 1 : 0;
            all[i].lit = NULL;
        }
        return d->ncons;
    }
    default:
        return -1;
    }
}

#define MAX_HEADS 256

static bool useful(Rows *P, Pat **q, int n)
{
    if (n == 0)
        return P->len == 0;
    Pat *q1 = strip(q[0]);
    Head h;
    if (!is_wild(q1) && head_of(q1, &h)) {
        Rows S1 = {0};
        specialise(P, n, &h, &S1);
        Pat **q2 = spec_row(q, n, &h);
        bool r = useful(&S1, q2, h.arity + n - 1);
        free(S1.r);
        return r;
    }
    Head hs[MAX_HEADS], all[MAX_HEADS];
    int nh = column_heads(P, hs, MAX_HEADS);
    int na = signature(hs, nh, all, MAX_HEADS);
    if (na > 0) {
        for (int i = 0; i < na; i++) {
            Rows S1 = {0};
            specialise(P, n, &all[i], &S1);
            Pat **q2 = spec_row(q, n, &all[i]);
            bool r = useful(&S1, q2, all[i].arity + n - 1);
            free(S1.r);
            if (r)
                return true;
        }
        return false;
    }
    Rows D = {0};
    default_rows(P, &D);
    bool r = useful(&D, q + 1, n - 1);
    free(D.r);
    return r;
}

/* A witness: a value pattern printed in DL syntax. */
typedef struct Wit {
    bool wild;
    Head h;
    struct Wit **args;
} Wit;

static Wit *wit_wild(void)
{
    Wit *w = NEW(Wit);
    w->wild = true;
    return w;
}

static Wit **missing(Rows *P, int n)
{
    if (n == 0)
        return P->len == 0 ? NEWN(Wit *, 1) : NULL;
    Head hs[MAX_HEADS], all[MAX_HEADS];
    int nh = column_heads(P, hs, MAX_HEADS);
    int na = signature(hs, nh, all, MAX_HEADS);
    if (na > 0) {
        for (int i = 0; i < na; i++) {
            Rows S1 = {0};
            specialise(P, n, &all[i], &S1);
            int a = all[i].arity;
            Wit **w = missing(&S1, a + n - 1);
            free(S1.r);
            if (!w)
                continue;
            Wit *c = NEW(Wit);
            c->h = all[i];
            c->args = NEWN(Wit *, a ? a : 1);
            for (int k = 0; k < a; k++)
                c->args[k] = w[k];
            Wit **out = NEWN(Wit *, n);
            out[0] = c;
            for (int k = 1; k < n; k++)
                out[k] = w[a + k - 1];
            return out;
        }
        return NULL;
    }
    Rows D = {0};
    default_rows(P, &D);
    Wit **w = missing(&D, n - 1);
    free(D.r);
    if (!w)
        return NULL;
    Wit **out = NEWN(Wit *, n);
    for (int k = 1; k < n; k++)
        out[k] = w[k - 1];
    out[0] = wit_wild();
    if (nh > 0 && (hs[0].kind == H_CON || hs[0].kind == H_BOOL)) {
        /* name a constructor the column lacks */
        int count = hs[0].kind == H_BOOL ? 2 : hs[0].decl->ncons;
        for (int i = 0; i < count; i++) {
            bool have = false;
            for (int k = 0; k < nh && !have; k++)
                have = hs[k].index == i;
            if (have)
                continue;
            Wit *c = NEW(Wit);
            c->h = hs[0];
            c->h.index = i;
            c->h.arity = hs[0].kind == H_CON && hs[0].decl->con_args[i] ? 1 : 0;
            c->args = NEWN(Wit *, 1);
            c->args[0] = wit_wild();
            out[0] = c;
            break;
        }
    }
    return out;
}

static void wit_print(StrBuf *b, Wit *w, bool atom)
{
    if (w->wild) {
        sb_puts(b, "_");
        return;
    }
    switch (w->h.kind) {
    case H_TUPLE:
        sb_putc(b, '(');
        for (int i = 0; i < w->h.arity; i++) {
            if (i)
                sb_puts(b, ", ");
            wit_print(b, w->args[i], false);
        }
        sb_putc(b, ')');
        return;
    case H_RECORD: {
        sb_puts(b, "{ ");
        int shown = 0;
        for (int i = 0; i < w->h.arity; i++) {
            if (w->args[i]->wild)
                continue;
            sb_printf(b, "%s%s = ", shown ? ", " : "", w->h.decl->fields[i]);
            wit_print(b, w->args[i], false);
            shown++;
        }
        sb_puts(b, shown ? ", .. }" : ".. }");
        return;
    }
    case H_CON:
        if (w->h.arity && atom)
            sb_putc(b, '(');
        sb_puts(b, w->h.decl->cons[w->h.index]);
        if (w->h.arity) {
            sb_putc(b, ' ');
            wit_print(b, w->args[0], true);
            if (atom)
                sb_putc(b, ')');
        }
        return;
    case H_BOOL:
        sb_puts(b, w->h.index ? "true" : "false");
        return;
    case H_UNIT:
        sb_puts(b, "()");
        return;
    default:
        sb_puts(b, "_");
        return;
    }
}

static char *witness_string(Wit *w)
{
    StrBuf b = {0};
    wit_print(&b, w, false);
    char *s = arena_strdup(dcc_arena, b.data ? b.data : "_");
    sb_free(&b);
    return s;
}

/* let/parameter patterns: warns when p can fail. */
static void warn_refutable(Pat *p, const char *what)
{
    if (!p)
        return;
    Rows P = {0};
    Pat **row = NEWN(Pat *, 1);
    row[0] = p;
    rows_push(&P, row);
    Wit **w = missing(&P, 1);
    free(P.r);
    if (w)
        warning_at(p->loc, "this %s does not match every value: %s is not matched", what,
                   witness_string(w[0]));
}

static void check_match_cases(Expr *e)
{
    for (int i = 0; i < e->u.match.n; i++)
        if (!e->u.match.cases[i].pat)
            return;
    Rows P = {0};
    for (int i = 0; i < e->u.match.n; i++) {
        MatchCase *mc = &e->u.match.cases[i];
        Pat **q = NEWN(Pat *, 1);
        q[0] = mc->pat;
        if (!useful(&P, q, 1))
            warning_at(mc->pat->loc, "this case is unreachable: the cases above match every "
                       "value it matches");
        rows_push(&P, q);
    }
    Wit **w = missing(&P, 1);
    free(P.r);
    if (w)
        warning_at(e->loc, "this match is not exhaustive: %s is not matched",
                   witness_string(w[0]));
}

/* ======================================================================
 * expressions
 * ====================================================================== */

static Type *infer(Expr *e);

static Type *fresh(void) { return type_fresh_var(S.level); }

static bool is_deriv_of_float(Expr *fn, const char **name)
{
    if (!fn || fn->kind != EX_VAR || !fn->u.var.binding)
        return false;
    switch (fn->u.var.binding->builtin) {
    case B_GRAD:
    case B_VALUE_AND_GRAD:
    case B_HVP:
    case B_FWDGRAD:
    case B_FWDGRAD_DIR:
        *name = builtin_info((Builtin)fn->u.var.binding->builtin)->name;
        return true;
    default:
        return false;
    }
}

/* Application of a function of type ft (the expression fn, may be NULL
 * for |>) to arg, already inferred. */
static Type *apply(Expr *fn, Type *ft, Expr *arg, Loc loc)
{
    Type *f = type_resolve(ft);
    if (f->kind == TY_ERROR)
        return type_error();
    if (f->kind == TY_VAR || f->kind == TY_TANGENT) {
        Type *r = fresh();
        if (!type_unify(f, type_func(arg->type, r))) {
            report_mismatch(loc, "this function", f, type_func(arg->type, r));
            return type_error();
        }
        return r;
    }
    if (f->kind != TY_FUNC) {
        if (fn && fn->kind == EX_CON) {
            error_at(fn->loc, "the constructor %s takes no argument", fn->u.con.name);
            return type_error();
        }
        char *s = type_to_string(f);
        error_at(fn ? fn->loc : loc, "this is %s %s, not a function; it cannot be applied to %s",
                 a_an(s), s,
                 fn && fn->kind == EX_APP ? "another argument" : "an argument");
        return type_error();
    }
    const char *dname;
    if (is_deriv_of_float(fn, &dname)) {
        Type *a = type_resolve(arg->type);
        if (a->kind == TY_FUNC) {
            Type *r = type_resolve(a->args[1]);
            if (r->kind != TY_VAR && r->kind != TY_TANGENT && r->kind != TY_ERROR &&
                r->kind != TY_FLOAT) {
                char *s = type_to_string(r);
                error_at(arg->loc, "%s needs a function returning float, but it returns %s", dname,
                         s);
                return type_error();
            }
        }
    }
    if (!type_unify(arg->type, f->args[0])) {
        report_mismatch(arg->loc, "this argument", arg->type, f->args[0]);
        Type *r = type_resolve(f->args[1]);
        return type_has_vars(r, true) ? type_error() : r;
    }
    return f->args[1];
}

static Type *infer_var(Expr *e)
{
    const char *n = intern(e->u.var.name);
    Binding *b = lookup_local(n);
    if (!b)
        b = lookup_global(S.env, n);
    if (!b) {
        const char *sug = suggestion(n, NS_VALUE);
        if (sug)
            error_at(e->loc, "unknown name '%s'; did you mean '%s'?", n, sug);
        else
            error_at(e->loc, "unknown name '%s'", n);
        return type_error();
    }
    b->used = true;
    e->u.var.binding = b;
    Type **inst;
    Type *t = instantiate(b, e->loc, &inst);
    e->u.var.inst = inst;
    e->u.var.ninst = b->nqvars;
    return t;
}

static Type *infer_con(Expr *e)
{
    const char *n = intern(e->u.con.name);
    ConRef *cr = lookup_con(S.env, n);
    if (!cr) {
        const char *sug = suggestion(n, NS_CON);
        if (sug)
            error_at(e->loc, "unknown constructor '%s'; did you mean '%s'?", n, sug);
        else
            error_at(e->loc, "unknown constructor '%s'", n);
        return type_error();
    }
    e->u.con.decl = cr->decl;
    e->u.con.index = cr->index;
    Type *inst = fresh_instance(cr->decl, S.level);
    Type *a = type_con_arg(inst, cr->index);
    return a ? type_func(a, inst) : inst;
}

static Type *infer_opfn(Expr *e)
{
    Binding *b = builtin_op_binding(e->u.opfn);
    if (!b) {
        error_at(e->loc, "the operator %s cannot be used as a function", op_spelling(e->u.opfn));
        return type_error();
    }
    Type **inst;
    return instantiate(b, e->loc, &inst);
}

static Type *infer_array(Expr *e)
{
    Type *el = fresh();
    Expr *first = NULL;
    for (int i = 0; i < e->u.list.n; i++) {
        Expr *x = e->u.list.items[i];
        infer(x);
        if (!first) {
            first = x;
            type_unify(el, x->type);
            continue;
        }
        if (!type_unify(x->type, el)) {
            TypePrinter p = {.n = 0};
            char *a = type_to_string_with(&p, x->type), *b = type_to_string_with(&p, el);
            error_at(x->loc, "this element has type %s, but the first element has type %s", a, b);
        }
    }
    return type_array(el, 1);
}

static Type *infer_record(Expr *e)
{
    int n = e->u.rec.n;
    for (int i = 0; i < n; i++)
        infer(e->u.rec.values[i]);
    TypeDecl *d = record_for_fields(e->u.rec.names, n, e->loc);
    if (!d)
        return type_error();
    e->u.rec.decl = d;
    Type *inst = fresh_instance(d, S.level);
    bool bad = false;
    StrBuf extra = {0};
    int nextra = 0;
    for (int i = 0; i < n; i++) {
        const char *f = intern(e->u.rec.names[i]);
        int k = field_index(d, f);
        for (int j = 0; j < i; j++)
            if (intern(e->u.rec.names[j]) == f) {
                error_at(e->u.rec.values[i]->loc, "the field %s is given twice", f);
                bad = true;
            }
        if (k < 0) {
            sb_printf(&extra, "%s%s", nextra++ ? ", " : "", f);
            continue;
        }
        char *what = arena_printf(dcc_arena, "the field %s", f);
        if (!expect(e->u.rec.values[i], type_field_type(inst, k), what))
            bad = true;
    }
    StrBuf miss = {0};
    int nmiss = 0;
    for (int k = 0; k < d->nfields; k++) {
        bool has = false;
        for (int i = 0; i < n && !has; i++)
            has = intern(e->u.rec.names[i]) == d->fields[k];
        if (!has)
            sb_printf(&miss, "%s%s", nmiss++ ? ", " : "", d->fields[k]);
    }
    if (nextra && nmiss)
        error_at(e->loc, "this record of type %s lacks the field%s %s and has no field%s %s",
                 d->name, nmiss > 1 ? "s" : "", miss.data, nextra > 1 ? "s" : "", extra.data);
    else if (nextra)
        error_at(e->loc, "the record type %s has no field%s %s", d->name, nextra > 1 ? "s" : "",
                 extra.data);
    else if (nmiss)
        error_at(e->loc, "this record of type %s lacks the field%s %s", d->name,
                 nmiss > 1 ? "s" : "", miss.data);
    sb_free(&miss);
    sb_free(&extra);
    if (nextra || nmiss)
        return type_error();
    (void)bad;
    return inst;
}

static Type *infer_update(Expr *e)
{
    Type *bt = infer(e->u.rec.base);
    Type *r = type_resolve(bt);
    int n = e->u.rec.n;
    for (int i = 0; i < n; i++)
        infer(e->u.rec.values[i]);
    if (r->kind == TY_ERROR)
        return r;
    TypeDecl *d = NULL;
    if (r->kind == TY_NAMED && r->decl->kind == TD_RECORD) {
        d = r->decl;
    } else if (r->kind == TY_VAR || r->kind == TY_TANGENT) {
        d = record_for_fields(e->u.rec.names, n, e->loc);
        if (!d)
            return type_error();
        type_unify(bt, fresh_instance(d, S.level));
    } else {
        char *s = type_to_string(r);
        error_at(e->u.rec.base->loc, "this expression has type %s, which is not a record; it "
                 "cannot be updated with `with`", s);
        return type_error();
    }
    e->u.rec.decl = d;
    for (int i = 0; i < n; i++) {
        const char *f = intern(e->u.rec.names[i]);
        int k = field_index(d, f);
        if (k < 0) {
            error_at(e->u.rec.values[i]->loc, "the record type %s has no field %s", d->name, f);
            continue;
        }
        expect(e->u.rec.values[i], type_field_type(bt, k), arena_printf(dcc_arena, "the field %s", f));
    }
    return bt;
}

static Type *infer_field(Expr *e)
{
    Type *t = infer(e->u.field.e);
    const char *name = intern(e->u.field.name);
    Type *r = type_resolve(t);
    if (r->kind == TY_ERROR)
        return r;
    if (r->kind == TY_VAR || r->kind == TY_TANGENT) {
        FieldRef *fs[1];
        if (lookup_fields(S.env, name, fs, 1) == 0) {
            const char *sug = suggestion(name, NS_FIELD);
            if (sug)
                error_at(e->loc, "unknown field '%s'; did you mean '%s'?", name, sug);
            else
                error_at(e->loc, "unknown field '%s': no record type declares it", name);
            return type_error();
        }
    }
    Type *res = fresh();
    Constraint *c = con_new(CK_FIELD, e->loc, name, -1);
    c->t[0] = t;
    c->t[1] = res;
    c->name = name;
    c->node = e;
    if (solve_one(c, false))
        c->done = true;
    return res;
}

static Type *infer_proj(Expr *e)
{
    Type *t = infer(e->u.field.e);
    Type *res = fresh();
    Constraint *c = con_new(CK_PROJ, e->loc, "a tuple component", -1);
    c->t[0] = t;
    c->t[1] = res;
    c->n = e->u.field.index;
    c->node = e;
    if (solve_one(c, false))
        c->done = true;
    return res;
}

/* xs[i], m[i, j], xs[i:j], m[:, j]: the base has rank >= the number of
 * indices; each scalar index removes an axis, a slice keeps it. */
static Type *infer_index(Expr *e)
{
    Type *bt = infer(e->u.index.e);
    int n = e->u.index.n, nslice = 0;
    for (int i = 0; i < n; i++) {
        IndexArg *a = &e->u.index.args[i];
        if (a->is_slice)
            nslice++;
        if (a->lo) {
            infer(a->lo);
            expect(a->lo, type_int(), "this index");
        }
        if (a->hi) {
            infer(a->hi);
            expect(a->hi, type_int(), "this index");
        }
    }
    Type *b = type_resolve(bt);
    if (b->kind == TY_ERROR)
        return b;
    if (b->kind == TY_TUPLE) {
        error_at(e->loc, "cannot index a tuple of type %s; write t.0, t.1, ... for its components",
                 type_to_string(b));
        return type_error();
    }
    if (b->kind != TY_ARRAY && b->kind != TY_VAR && b->kind != TY_TANGENT) {
        char *s = type_to_string(b);
        error_at(e->u.index.e->loc, "this is %s %s, not an array; it cannot be indexed", a_an(s), s);
        return type_error();
    }
    if (b->kind == TY_ARRAY) {
        Type *el = type_resolve(b->elem);
        if (el->kind != TY_VAR && el->kind != TY_TANGENT && b->rank < n) {
            error_at(e->loc, "too many indices: %s has rank %d but %d indices are given",
                     type_to_string(b), b->rank, n);
            return type_error();
        }
    }
    Type *el = fresh();
    if (!type_unify(bt, type_array(el, n))) {
        report_mismatch(e->u.index.e->loc, "this expression", bt, type_array(el, n));
        return type_error();
    }
    return nslice ? type_array(el, nslice) : el;
}

static Type *infer_binop(Expr *e)
{
    OpKind op = e->u.op.op;
    Expr *l = e->u.op.l, *r = e->u.op.r;
    Type *lt = infer(l);
    Type *rt = infer(r);
    switch (op) {
    case OP_PIPE:
        return apply(r, rt, l, e->loc);
    case OP_AND:
    case OP_OR: {
        char *what = arena_printf(dcc_arena, "the operand of %s", op_spelling(op));
        expect(l, type_bool(), what);
        expect(r, type_bool(), what);
        return type_bool();
    }
    case OP_EQ:
    case OP_NE:
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: {
        if (!type_unify(lt, rt)) {
            TypePrinter p = {.n = 0};
            char *a = type_to_string_with(&p, lt), *b = type_to_string_with(&p, rt);
            error_at(e->loc, "cannot compare %s with %s", a, b);
            return type_bool();
        }
        Constraint *c = con_new(CK_CLASS, e->loc, op_spelling(op), op);
        c->t[0] = lt;
        c->cls = op == OP_EQ || op == OP_NE ? TC_EQ : TC_ORD;
        return type_bool();
    }
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_MOD:
    case OP_POW: {
        Type *res = fresh();
        Constraint *c = con_new(CK_BCAST, e->loc, op_spelling(op), op);
        c->t[0] = lt;
        c->t[1] = rt;
        c->t[2] = res;
        c->cls = op == OP_POW ? TC_FLOATING : op == OP_MOD ? TC_NUMELEM : TC_NUM;
        c->structural = op != OP_POW && op != OP_MOD;
        Type *ra = type_resolve(lt), *rb = type_resolve(rt);
        if (op == OP_POW && rb->kind == TY_INT &&
            (ra->kind == TY_FLOAT || ra->kind == TY_ARRAY)) {
            error_at(r->loc, "the exponent of ^ has type int; write a float exponent such as 2.0");
            c->done = true;
            return type_error();
        }
        return res;
    }
    case OP_MATMUL: {
        Type *res = fresh();
        Constraint *c = con_new(CK_MATMUL, e->loc, "@", op);
        c->t[0] = lt;
        c->t[1] = rt;
        c->t[2] = res;
        return res;
    }
    case OP_COMPOSE:
    case OP_PAR: {
        Type *res = fresh();
        Constraint *c = con_new(CK_COMPOSE, e->loc, op_spelling(op), op);
        c->t[0] = lt;
        c->t[1] = rt;
        c->t[2] = res;
        c->node = e;
        c->impl = find_learner_op(op);
        return res;
    }
    default:
        error_at(e->loc, "%s is not a binary operator", op_spelling(op));
        return type_error();
    }
}

static Type *infer_unop(Expr *e)
{
    Type *t = infer(e->u.op.l);
    if (e->u.op.op == OP_NOT) {
        expect(e->u.op.l, type_bool(), "the operand of !");
        return type_bool();
    }
    Constraint *c = con_new(CK_CLASS, e->loc, "-", OP_NEG);
    c->t[0] = t;
    c->cls = TC_NUM;
    c->structural = true;
    return t;
}

/* fn p1 .. pn [: t] => body */
static Type *infer_lambda(Expr *e)
{
    int mark = S.locals.len;
    int n = e->u.lam.nparams;
    Type **pts = NEWN(Type *, n ? n : 1);
    S.pat_names.len = 0;
    for (int i = 0; i < n; i++) {
        pts[i] = fresh();
        check_pat(e->u.lam.params[i], pts[i]);
    }
    for (int i = 0; i < n; i++)
        warn_refutable(e->u.lam.params[i], "parameter pattern");
    Type *bt = infer(e->u.lam.body);
    if (e->u.lam.ret) {
        Type *rt = conv_annot(e->u.lam.ret);
        if (expect(e->u.lam.body, rt, "the body of this function"))
            bt = rt;
    }
    S.locals.len = mark;
    for (int i = n - 1; i >= 0; i--)
        bt = type_func(pts[i], bt);
    return bt;
}

static Pat *simple_var_pat(Pat *p, TypeExpr **annot)
{
    *annot = NULL;
    if (!p)
        return NULL;
    if (p->kind == PAT_ANNOT && p->arg && p->arg->kind == PAT_VAR) {
        *annot = p->annot;
        return p->arg;
    }
    return p->kind == PAT_VAR ? p : NULL;
}

static Type *infer_let(Expr *e)
{
    Pat *p = e->u.let.pat;
    TypeExpr *annot;
    Pat *v = simple_var_pat(p, &annot);
    int mark = S.locals.len;
    if (v) {
        /* let x = e1 in e2: x is generalised (if e1 is a value) */
        S.level++;
        Type *t = infer(e->u.let.value);
        if (annot) {
            Type *at = conv_annot(annot);
            if (expect(e->u.let.value, at, "this expression"))
                t = at;
        }
        S.level--;
        Binding *b = NEW(Binding);
        b->name = intern(v->name);
        b->loc = v->loc;
        b->type = t;
        b->module = S.env->m;
        bool ok = nonexpansive(e->u.let.value);
        generalise(&b, &ok, 1, S.level);
        v->binding = b;
        v->type = t;
        if (p != v)
            p->type = t;
        vec_push(&S.all_pats, v);
        vec_push(&S.locals, b);
    } else {
        Type *t = infer(e->u.let.value);
        S.pat_names.len = 0;
        check_pat(p, t);
        warn_refutable(p, "pattern");
    }
    Type *r = infer(e->u.let.body);
    S.locals.len = mark;
    return r;
}

static Type *infer_letrec(Expr *e)
{
    int mark = S.locals.len;
    const char *name = intern(e->u.letrec.name);
    S.level++;
    Binding *b = new_local(name, e->u.letrec.name_loc.line ? e->u.letrec.name_loc : e->loc,
                           fresh());
    e->u.letrec.binding = b;
    int inner = S.locals.len;
    int n = e->u.letrec.nparams;
    Type **pts = NEWN(Type *, n ? n : 1);
    S.pat_names.len = 0;
    for (int i = 0; i < n; i++) {
        pts[i] = fresh();
        check_pat(e->u.letrec.params[i], pts[i]);
    }
    for (int i = 0; i < n; i++)
        warn_refutable(e->u.letrec.params[i], "parameter pattern");
    Type *bt = infer(e->u.letrec.value);
    if (e->u.letrec.ret) {
        Type *rt = conv_annot(e->u.letrec.ret);
        if (expect(e->u.letrec.value, rt, "the body of this function"))
            bt = rt;
    }
    for (int i = n - 1; i >= 0; i--)
        bt = type_func(pts[i], bt);
    S.locals.len = inner;
    if (!type_unify(b->type, bt))
        report_mismatch(b->loc, arena_printf(dcc_arena, "the recursive function %s", name),
                        bt, b->type);
    S.level--;
    bool ok = n > 0 || nonexpansive(e->u.letrec.value);
    b->type = bt;
    generalise(&b, &ok, 1, S.level);
    Type *r = infer(e->u.letrec.body);
    S.locals.len = mark;
    return r;
}

static Type *infer_if(Expr *e)
{
    infer(e->u.if_.cond);
    expect(e->u.if_.cond, type_bool(), "the condition of if");
    Type *a = infer(e->u.if_.then_);
    Type *b = infer(e->u.if_.else_);
    if (!type_unify(a, b)) {
        TypePrinter p = {.n = 0};
        char *x = type_to_string_with(&p, a), *y = type_to_string_with(&p, b);
        error_at(e->u.if_.then_->loc, "the branches of this if differ: the then-branch has type %s, here",
                 x);
        note_at(e->u.if_.else_->loc, "but the else-branch has type %s", y);
        return type_error();
    }
    return a;
}

static Type *infer_match(Expr *e)
{
    Type *st = infer(e->u.match.e);
    Type *res = NULL;
    Expr *first = NULL;
    int errs = diag_error_count();
    bool bad = false;
    for (int i = 0; i < e->u.match.n; i++) {
        MatchCase *mc = &e->u.match.cases[i];
        int mark = S.locals.len;
        S.pat_names.len = 0;
        int perr = diag_error_count();
        check_pat(mc->pat, st);
        if (diag_error_count() != perr)
            bad = true;
        Type *bt = infer(mc->body);
        S.locals.len = mark;
        if (!res) {
            res = bt;
            first = mc->body;
            continue;
        }
        if (!type_unify(bt, res)) {
            TypePrinter p = {.n = 0};
            char *y = type_to_string_with(&p, bt), *x = type_to_string_with(&p, res);
            error_at(mc->body->loc, "this case has type %s, but the first case has type %s", y, x);
            note_at(first->loc, "the first case has type %s here", x);
        }
    }
    if (!bad && diag_error_count() == errs && e->u.match.n > 0 &&
        type_resolve(st)->kind != TY_ERROR)
        check_match_cases(e);
    return res ? res : fresh();
}

/* loop p = init for i < n do body / loop p = init while c do body */
static Type *infer_loop(Expr *e)
{
    Type *t = infer(e->u.loop.init);
    if (e->u.loop.kind == LOOP_FOR && e->u.loop.bound) {
        infer(e->u.loop.bound);
        expect(e->u.loop.bound, type_int(), "the bound of a for loop");
    }
    int mark = S.locals.len;
    S.pat_names.len = 0;
    check_pat(e->u.loop.pat, t);
    warn_refutable(e->u.loop.pat, "loop pattern");
    if (e->u.loop.kind == LOOP_FOR && e->u.loop.ivar) {
        e->u.loop.ivar_binding = new_local(intern(e->u.loop.ivar),
                                           e->u.loop.ivar_loc.line ? e->u.loop.ivar_loc : e->loc,
                                           type_int());
    }
    if (e->u.loop.kind == LOOP_WHILE && e->u.loop.cond) {
        infer(e->u.loop.cond);
        expect(e->u.loop.cond, type_bool(), "the condition of a while loop");
    }
    Type *bt = infer(e->u.loop.body);
    S.locals.len = mark;
    if (!type_unify(bt, t)) {
        TypePrinter p = {.n = 0};
        char *x = type_to_string_with(&p, bt), *y = type_to_string_with(&p, t);
        error_at(e->u.loop.body->loc, "the loop body has type %s, but the loop state has type %s",
                 x, y);
        note_at(e->u.loop.init->loc, "the state starts here, with type %s", y);
    }
    return t;
}

static Type *infer_annot(Expr *e)
{
    infer(e->u.annot.e);
    Type *at = conv_annot(e->u.annot.t);
    if (expect(e->u.annot.e, at, "this expression"))
        return at;
    return type_error();
}

static Type *infer(Expr *e)
{
    if (!e)
        return type_error();
    Type *t;
    switch (e->kind) {
    case EX_INT: t = type_int(); break;
    case EX_FLOAT: t = e->u.fl.is_f32 ? type_f32() : type_float(); break;
    case EX_BOOL: t = type_bool(); break;
    case EX_UNIT: t = type_unit(); break;
    case EX_STRING: t = type_string(); break;
    case EX_VAR: t = infer_var(e); break;
    case EX_CON: t = infer_con(e); break;
    case EX_OPFN: t = infer_opfn(e); break;
    case EX_TUPLE: {
        int n = e->u.list.n;
        Type **its = NEWN(Type *, n ? n : 1);
        for (int i = 0; i < n; i++)
            its[i] = infer(e->u.list.items[i]);
        t = type_tuple(its, n);
        break;
    }
    case EX_ARRAY: t = infer_array(e); break;
    case EX_RECORD: t = infer_record(e); break;
    case EX_UPDATE: t = infer_update(e); break;
    case EX_FIELD: t = infer_field(e); break;
    case EX_PROJ: t = infer_proj(e); break;
    case EX_INDEX: t = infer_index(e); break;
    case EX_APP: {
        Type *ft = infer(e->u.app.fn);
        infer(e->u.app.arg);
        t = apply(e->u.app.fn, ft, e->u.app.arg, e->loc);
        break;
    }
    case EX_BINOP: t = infer_binop(e); break;
    case EX_UNOP: t = infer_unop(e); break;
    case EX_LAMBDA: t = infer_lambda(e); break;
    case EX_LET: t = infer_let(e); break;
    case EX_LETREC: t = infer_letrec(e); break;
    case EX_IF: t = infer_if(e); break;
    case EX_MATCH: t = infer_match(e); break;
    case EX_LOOP: t = infer_loop(e); break;
    case EX_ANNOT: t = infer_annot(e); break;
    case EX_ERROR:
    default: t = type_error(); break;
    }
    e->type = t;
    vec_push(&S.all_exprs, e);
    maybe_solve();
    return t;
}

/* ======================================================================
 * top-level definitions: reference graph, components, checking
 * ====================================================================== */

typedef struct DefNode {
    Decl *d;
    ModEnv *env;
    Binding *b;
    int index, low;
    bool on_stack;
    bool annotated;
    Vec refs; /* DefNode* */
} DefNode;

static struct {
    Map of_binding; /* Binding* -> DefNode* */
    Vec nodes;
    Vec stack;
    int counter;
    Vec sccs; /* Vec* of DefNode* in dependency order */
    Vec names; /* local names while walking (const char*) */
    DefNode *from;
} G;

static void ref_name(const char *name)
{
    for (int i = G.names.len - 1; i >= 0; i--)
        if (G.names.data[i] == name)
            return;
    Binding *b = lookup_global(G.from->env, name);
    DefNode *n = b ? map_get(&G.of_binding, b) : NULL;
    if (n && !vec_has(&G.from->refs, n))
        vec_push(&G.from->refs, n);
}

static void pat_names(Pat *p)
{
    if (!p)
        return;
    switch (p->kind) {
    case PAT_VAR:
        vec_push(&G.names, (void *)intern(p->name));
        return;
    case PAT_TUPLE:
    case PAT_RECORD:
        for (int i = 0; i < p->nitems; i++)
            pat_names(p->items[i]);
        return;
    case PAT_CON:
    case PAT_ANNOT:
        pat_names(p->arg);
        return;
    default:
        return;
    }
}

static void refs_expr(Expr *e)
{
    if (!e)
        return;
    int mark = G.names.len;
    switch (e->kind) {
    case EX_VAR:
        ref_name(intern(e->u.var.name));
        return;
    case EX_TUPLE:
    case EX_ARRAY:
        for (int i = 0; i < e->u.list.n; i++)
            refs_expr(e->u.list.items[i]);
        return;
    case EX_RECORD:
    case EX_UPDATE:
        refs_expr(e->u.rec.base);
        for (int i = 0; i < e->u.rec.n; i++)
            refs_expr(e->u.rec.values[i]);
        return;
    case EX_FIELD:
    case EX_PROJ:
        refs_expr(e->u.field.e);
        return;
    case EX_INDEX:
        refs_expr(e->u.index.e);
        for (int i = 0; i < e->u.index.n; i++) {
            refs_expr(e->u.index.args[i].lo);
            refs_expr(e->u.index.args[i].hi);
        }
        return;
    case EX_APP:
        refs_expr(e->u.app.fn);
        refs_expr(e->u.app.arg);
        return;
    case EX_BINOP:
        if (e->u.op.op == OP_COMPOSE || e->u.op.op == OP_PAR)
            ref_name(intern(e->u.op.op == OP_PAR ? "learner_par" : "learner_seq"));
        refs_expr(e->u.op.l);
        refs_expr(e->u.op.r);
        return;
    case EX_UNOP:
        refs_expr(e->u.op.l);
        return;
    case EX_LAMBDA:
        for (int i = 0; i < e->u.lam.nparams; i++)
            pat_names(e->u.lam.params[i]);
        refs_expr(e->u.lam.body);
        break;
    case EX_LET:
        refs_expr(e->u.let.value);
        pat_names(e->u.let.pat);
        refs_expr(e->u.let.body);
        break;
    case EX_LETREC:
        vec_push(&G.names, (void *)intern(e->u.letrec.name));
        for (int i = 0; i < e->u.letrec.nparams; i++)
            pat_names(e->u.letrec.params[i]);
        refs_expr(e->u.letrec.value);
        G.names.len = mark + 1;
        refs_expr(e->u.letrec.body);
        break;
    case EX_IF:
        refs_expr(e->u.if_.cond);
        refs_expr(e->u.if_.then_);
        refs_expr(e->u.if_.else_);
        return;
    case EX_MATCH:
        refs_expr(e->u.match.e);
        for (int i = 0; i < e->u.match.n; i++) {
            pat_names(e->u.match.cases[i].pat);
            refs_expr(e->u.match.cases[i].body);
            G.names.len = mark;
        }
        return;
    case EX_LOOP:
        refs_expr(e->u.loop.init);
        refs_expr(e->u.loop.bound);
        pat_names(e->u.loop.pat);
        if (e->u.loop.ivar)
            vec_push(&G.names, (void *)intern(e->u.loop.ivar));
        refs_expr(e->u.loop.cond);
        refs_expr(e->u.loop.body);
        break;
    case EX_ANNOT:
        refs_expr(e->u.annot.e);
        return;
    default:
        return;
    }
    G.names.len = mark;
}

static void strongconnect(DefNode *v)
{
    v->index = v->low = ++G.counter;
    vec_push(&G.stack, v);
    v->on_stack = true;
    for (int i = 0; i < v->refs.len; i++) {
        DefNode *w = v->refs.data[i];
        if (!w->index) {
            strongconnect(w);
            if (w->low < v->low)
                v->low = w->low;
        } else if (w->on_stack && w->index < v->low) {
            v->low = w->index;
        }
    }
    if (v->low == v->index) {
        Vec *scc = xmalloc(sizeof(Vec));
        memset(scc, 0, sizeof *scc);
        DefNode *w;
        do {
            w = vec_pop(&G.stack);
            w->on_stack = false;
            vec_push(scc, w);
        } while (w != v);
        vec_push(&G.sccs, scc);
    }
}

/* A parameter pattern that fixes its type: annotated, or made of
 * annotated parts, or a literal. */
static bool pat_annotated(Pat *p)
{
    if (!p)
        return false;
    switch (p->kind) {
    case PAT_ANNOT:
    case PAT_UNIT:
    case PAT_INT:
    case PAT_FLOAT:
    case PAT_BOOL:
    case PAT_STRING:
        return true;
    case PAT_TUPLE:
        for (int i = 0; i < p->nitems; i++)
            if (!pat_annotated(p->items[i]))
                return false;
        return true;
    default:
        return false;
    }
}

static bool def_annotated(Decl *d)
{
    if (!d->ret)
        return false;
    for (int i = 0; i < d->nparams; i++)
        if (!pat_annotated(d->params[i]))
            return false;
    return true;
}

static Type *pat_declared_type(Pat *p)
{
    switch (p->kind) {
    case PAT_ANNOT: return conv_annot(p->annot);
    case PAT_UNIT: return type_unit();
    case PAT_INT: return type_int();
    case PAT_FLOAT: return p->is_f32 ? type_f32() : type_float();
    case PAT_BOOL: return type_bool();
    case PAT_STRING: return type_string();
    case PAT_TUPLE: {
        Type **its = NEWN(Type *, p->nitems ? p->nitems : 1);
        for (int i = 0; i < p->nitems; i++)
            its[i] = pat_declared_type(p->items[i]);
        return type_tuple(its, p->nitems);
    }
    default: return fresh();
    }
}

/* The declared type of a fully annotated def, as a provisional scheme
 * (its annotation variables quantified), usable before its body is
 * checked. Annotation errors are reported later, with the body. */
static void declare_annotated(DefNode *n)
{
    Decl *d = n->d;
    S.env = n->env;
    S.tvars.len = 0;
    S.quiet = true;
    S.level = 1;
    Type *t = conv_annot(d->ret);
    for (int i = d->nparams - 1; i >= 0; i--)
        t = type_func(pat_declared_type(d->params[i]), t);
    S.quiet = false;
    S.level = 0;
    Vec vars = {0};
    collect_vars(t, 0, &vars);
    n->b->type = abstract(t, &vars);
    n->b->nqvars = vars.len;
    n->b->provisional = true;
    n->annotated = true;
    vec_free(&vars);
}

static Type *arg_type_of(Type **pts, int n)
{
    return n == 1 ? pts[0] : type_tuple(pts, n);
}

/* with jvp (x, dx) => e : for f : a -> b, x : a, dx : T a, e : (b, T b).
 * with vjp x => e : e : (b, T b -> T a). With several parameters, a is
 * their tuple. */
static void check_rules(Decl *d, Type **pts, Type *ret)
{
    for (int r = 0; r < d->nrules; r++) {
        DerivRule *rule = d->rules[r];
        if (d->nparams == 0) {
            error_at(rule->loc, "a derivative rule needs a definition with parameters");
            continue;
        }
        int mark = S.locals.len;
        Type *a = arg_type_of(pts, d->nparams);
        S.pat_names.len = 0;
        Type *want;
        if (rule->kind == RULE_JVP) {
            if (rule->nparams == 1) {
                check_pat(rule->params[0], type_tuple2(a, type_tangent(a)));
            } else if (rule->nparams == 2) {
                check_pat(rule->params[0], a);
                check_pat(rule->params[1], type_tangent(a));
            } else {
                error_at(rule->loc, "a jvp rule takes the pair (x, dx)");
            }
            want = type_tuple2(ret, type_tangent(ret));
        } else {
            if (rule->nparams == 1)
                check_pat(rule->params[0], a);
            else
                error_at(rule->loc, "a vjp rule takes one parameter, the point x");
            want = type_tuple2(ret, type_func(type_tangent(ret), type_tangent(a)));
        }
        infer(rule->body);
        expect(rule->body, want, rule->kind == RULE_JVP ? "this jvp rule" : "this vjp rule");
        S.locals.len = mark;
    }
}

/* Checks one def's parameters, body and rules at the current level;
 * returns its type. */
static Type *check_def(DefNode *n)
{
    Decl *d = n->d;
    S.env = n->env;
    S.tvars.len = 0;
    S.locals.len = 0;
    S.pat_names.len = 0;
    int np = d->nparams;
    Type **pts = NEWN(Type *, np ? np : 1);
    for (int i = 0; i < np; i++) {
        pts[i] = fresh();
        check_pat(d->params[i], pts[i]);
    }
    for (int i = 0; i < np; i++)
        warn_refutable(d->params[i], "parameter pattern");
    Type *ret = d->ret ? conv_annot(d->ret) : NULL;
    Type *bt = infer(d->body);
    if (ret) {
        if (!type_unify(bt, ret)) {
            TypePrinter p = {.n = 0};
            char *x = type_to_string_with(&p, bt), *y = type_to_string_with(&p, ret);
            if (type_unify_failure().occurs)
                report_mismatch(d->body ? d->body->loc : d->loc, "the body", bt, ret);
            else
                error_at(d->body ? d->body->loc : d->loc,
                         "the body of %s has type %s but its annotation says %s", d->name, x, y);
            note_at(d->ret->loc, "%s expected because of this annotation", y);
        }
        bt = ret;
    }
    check_rules(d, pts, bt);
    Type *t = bt;
    for (int i = np - 1; i >= 0; i--)
        t = type_func(pts[i], t);
    S.locals.len = 0;
    return t;
}

/* After generalisation: an annotated def must be as polymorphic as its
 * annotation says ('a must not have become float). */
static void check_polymorphism(DefNode *n, Vec *tvars)
{
    for (int i = 0; i < tvars->len; i++) {
        TVar *v = tvars->data[i];
        Type *t = type_resolve(v->var);
        bool bad = t->kind != TY_VAR;
        for (int k = 0; k < i && !bad; k++)
            if (type_resolve(((TVar *)tvars->data[k])->var) == t) {
                error_at(n->b->loc, "%s is less polymorphic than its annotation says: '%s and '%s "
                         "are the same type", n->d->name, ((TVar *)tvars->data[k])->name, v->name);
                return;
            }
        if (bad && t->kind != TY_ERROR) {
            error_at(n->b->loc, "%s is less polymorphic than its annotation says: '%s is %s",
                     n->d->name, v->name, type_to_string(t));
            return;
        }
    }
}

static void check_scc(Vec *scc)
{
    int n = scc->len;
    Binding **bs = NEWN(Binding *, n);
    bool *ok = NEWN(bool, n);
    Type **ts = NEWN(Type *, n);
    Vec **tvs = NEWN(Vec *, n);
    S.level = 1;
    for (int i = 0; i < n; i++) {
        DefNode *dn = scc->data[i];
        bs[i] = dn->b;
        if (!dn->annotated) {
            dn->b->type = fresh();
            dn->b->nqvars = 0;
        }
    }
    /* annotated defs first: their uses in the others see final types
     * sooner */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            DefNode *dn = scc->data[i];
            if (dn->annotated != (pass == 0))
                continue;
            ts[i] = check_def(dn);
            tvs[i] = NEW(Vec);
            for (int k = 0; k < S.tvars.len; k++)
                vec_push(tvs[i], S.tvars.data[k]);
            if (!dn->annotated) {
                if (!type_unify(dn->b->type, ts[i]))
                    report_mismatch(dn->d->name_loc.line ? dn->d->name_loc : dn->d->loc,
                                    arena_printf(dcc_arena, "%s", dn->d->name), ts[i],
                                    dn->b->type);
            }
        }
    S.level = 0;
    for (int i = 0; i < n; i++) {
        DefNode *dn = scc->data[i];
        bs[i]->type = ts[i];
        bs[i]->nqvars = 0;
        bs[i]->ncons = 0;
        bs[i]->provisional = false;
        ok[i] = dn->d->nparams > 0 || nonexpansive(dn->d->body);
    }
    S.env = ((DefNode *)scc->data[0])->env;
    generalise(bs, ok, n, 0);
    for (int i = 0; i < n; i++) {
        DefNode *dn = scc->data[i];
        if (dn->annotated)
            check_polymorphism(dn, tvs[i]);
        vec_free(tvs[i]);
    }
}

/* ======================================================================
 * the program
 * ====================================================================== */

static void register_defs(ModEnv *e)
{
    for (int i = 0; i < e->m->ndecls; i++) {
        Decl *d = e->m->decls[i];
        if (d->kind != DECL_DEF)
            continue;
        Binding *b = NEW(Binding);
        b->name = intern(d->name);
        b->loc = d->name_loc.line ? d->name_loc : d->loc;
        b->def = d;
        b->module = e->m;
        b->type = type_error();
        d->binding = b;
        Binding *old = map_get(&e->values, b->name);
        if (old) {
            error_at(b->loc, "duplicate definition of %s", b->name);
            note_at(old->loc, "%s was first defined here", b->name);
            continue;
        }
        map_put(&e->values, b->name, b);
        DefNode *n = NEW(DefNode);
        n->d = d;
        n->env = e;
        n->b = b;
        map_put(&G.of_binding, b, n);
        vec_push(&G.nodes, n);
        if (d->is_export && !def_annotated(d))
            error_at(b->loc, "the exported definition %s must annotate all its parameters and "
                     "its result type", b->name);
    }
}

static void setup_imports(ModEnv *e)
{
    for (int i = e->m->ndecls - 1; i >= 0; i--) {
        Decl *d = e->m->decls[i];
        if (d->kind != DECL_IMPORT || !d->imported)
            continue;
        ModEnv *ie = env_of(d->imported);
        if (ie && ie != e && !vec_has(&e->imports, ie))
            vec_push(&e->imports, ie);
    }
    if (S.prelude && S.prelude != e && !vec_has(&e->imports, S.prelude))
        vec_push(&e->imports, S.prelude);
}

static void check_export_derivs(ModEnv *e)
{
    S.env = e;
    for (int i = 0; i < e->m->ndecls; i++) {
        Decl *d = e->m->decls[i];
        if (d->kind != DECL_EXPORT_DERIV)
            continue;
        const char *n = intern(d->target ? d->target : "");
        Loc at = d->target_loc.line ? d->target_loc : d->loc;
        Binding *b = lookup_global(e, n);
        if (!b) {
            const char *sug = suggestion(n, NS_VALUE);
            if (sug)
                error_at(at, "unknown name '%s'; did you mean '%s'?", n, sug);
            else
                error_at(at, "unknown name '%s'", n);
            continue;
        }
        if (!b->def) {
            error_at(at, "only a def can be exported with its derivative; %s is a built-in", n);
            continue;
        }
        d->binding = b;
        Type *t = type_resolve(b->type);
        if (b->nqvars > 0) {
            error_at(at, "%s is polymorphic (%s); an exported function needs a monomorphic type",
                     n, types_scheme_string(b));
            continue;
        }
        if (t->kind != TY_FUNC) {
            error_at(at, "%s is not a function; it has type %s", n, type_to_string(t));
            continue;
        }
        if (d->deriv == DERIV_GRAD || d->deriv == DERIV_VALUE_AND_GRAD) {
            /* the result after all the def's parameters */
            Type *r = t;
            for (int k = 0; k < (b->def->nparams ? b->def->nparams : 1); k++)
                if (r->kind == TY_FUNC)
                    r = type_resolve(r->args[1]);
            if (r->kind != TY_FLOAT)
                error_at(at, "grad needs a function returning float, but %s returns %s", n,
                         type_to_string(r));
        }
    }
}

static void check_main(Module *root)
{
    ModEnv *e = env_of(root);
    if (!e)
        return;
    Binding *b = map_get(&e->values, intern("main"));
    if (!b || !b->def)
        return;
    if (b->nqvars > 0 || !type_unify(b->type, type_func(type_unit(), type_unit())))
        error_at(b->loc, "main must have type unit -> unit, but has type %s",
                 types_scheme_string(b));
}

/* Unbound variables left in monomorphic code (nothing constrains them):
 * any type will do; unit. */
static void default_free_vars(Type *t)
{
    t = type_resolve(t);
    if (!t)
        return;
    switch (t->kind) {
    case TY_VAR:
        if (t->level != TYPE_GENERIC_LEVEL)
            type_unify(t, type_unit());
        return;
    case TY_ARRAY:
        default_free_vars(t->elem);
        return;
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT:
        for (int i = 0; i < t->nargs; i++)
            default_free_vars(t->args[i]);
        return;
    default:
        return;
    }
}

int typecheck_program(Vec *modules)
{
    int errors0 = diag_error_count();
    memset(&S, 0, sizeof S);
    memset(&G, 0, sizeof G);
    if (!modules || modules->len == 0)
        return 0;
    for (int i = 0; i < modules->len; i++)
        new_env(modules->data[i]);
    S.prelude = env_of(modules->data[0]);
    for (int i = 0; i < modules->len; i++)
        setup_imports(env_of(modules->data[i]));
    for (int i = 0; i < modules->len; i++) {
        S.env = env_of(modules->data[i]);
        declare_types(S.env);
    }
    for (int i = 0; i < modules->len; i++)
        define_types(env_of(modules->data[i]));
    for (int i = 0; i < modules->len; i++)
        mark_recursive(env_of(modules->data[i]));
    for (int i = 0; i < modules->len; i++)
        register_defs(env_of(modules->data[i]));

    for (int i = 0; i < G.nodes.len; i++) {
        DefNode *n = G.nodes.data[i];
        G.from = n;
        G.names.len = 0;
        for (int k = 0; k < n->d->nparams; k++)
            pat_names(n->d->params[k]);
        refs_expr(n->d->body);
        for (int r = 0; r < n->d->nrules; r++) {
            G.names.len = 0;
            for (int k = 0; k < n->d->nparams; k++)
                pat_names(n->d->params[k]);
            for (int k = 0; k < n->d->rules[r]->nparams; k++)
                pat_names(n->d->rules[r]->params[k]);
            refs_expr(n->d->rules[r]->body);
        }
        if (def_annotated(n->d))
            declare_annotated(n);
    }
    for (int i = 0; i < G.nodes.len; i++) {
        DefNode *n = G.nodes.data[i];
        if (!n->index)
            strongconnect(n);
    }
    for (int i = 0; i < G.sccs.len; i++) {
        check_scc(G.sccs.data[i]);
        vec_free(G.sccs.data[i]);
        free(G.sccs.data[i]);
    }
    S.level = 0;
    for (int i = 0; i < modules->len; i++)
        check_export_derivs(env_of(modules->data[i]));
    S.env = env_of(modules->data[modules->len - 1]);
    solve_final();
    check_main(modules->data[modules->len - 1]);
    for (int i = 0; i < S.all_exprs.len; i++)
        default_free_vars(((Expr *)S.all_exprs.data[i])->type);
    for (int i = 0; i < S.all_pats.len; i++)
        default_free_vars(((Pat *)S.all_pats.data[i])->type);
    for (int i = 0; i < G.nodes.len; i++) {
        DefNode *n = G.nodes.data[i];
        vec_free(&n->refs);
        if (n->b->nqvars == 0)
            default_free_vars(n->b->type);
    }
    vec_free(&G.nodes);
    vec_free(&G.stack);
    vec_free(&G.sccs);
    vec_free(&G.names);
    vec_free(&S.locals);
    vec_free(&S.pending);
    vec_free(&S.tvars);
    vec_free(&S.pat_names);
    vec_free(&S.all_exprs);
    vec_free(&S.all_pats);
    return diag_error_count() - errors0;
}

/* ======================================================================
 * --emit=types
 * ====================================================================== */

char *types_scheme_string(Binding *b)
{
    TypePrinter p = {.n = 0};
    StrBuf sb = {0};
    type_print_with(&p, &sb, b->type);
    for (int i = 0; i < b->ncons; i++) {
        sb_puts(&sb, i ? ", " : " where ");
        constraint_print(&p, &sb, b->cons[i]);
    }
    char *s = arena_strdup(dcc_arena, sb.data ? sb.data : "");
    sb_free(&sb);
    return s;
}

void types_dump_module(FILE *out, Module *m)
{
    for (int i = 0; i < m->ndecls; i++) {
        Decl *d = m->decls[i];
        if (d->kind == DECL_DEF && d->binding)
            fprintf(out, "def %s : %s\n", d->name, types_scheme_string(d->binding));
    }
}
