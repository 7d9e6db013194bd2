/* constraints.c — overloading by deferred constraints, and schemes.
 *
 * Overloaded operators and built-ins emit constraints (qualified types,
 * Jones 1994) that are solved as soon as the types they mention are known:
 * class membership, NumPy broadcasting, matrix products, shapes, record
 * fields, tuple components, composition of functions or learners. Those
 * still open when a definition is generalised become part of its scheme
 * (generalisation by levels, Rémy 1992, with the open constraints
 * connected to the quantified variables) and are instantiated with it;
 * those left at the end of the program are defaulted (numbers to float,
 * record fields to the unique record with that field) or reported. */
#include "typecheck.h"

#include <string.h>

/* ======================================================================
 * constraints
 * ====================================================================== */

Constraint *tc_con_new(ConstraintKind k, Loc loc, const char *what, int op)
{
    Constraint *c = NEW(Constraint);
    c->kind = k;
    c->loc = loc;
    c->what = what;
    c->op = op;
    c->scope = tc.env;
    vec_push(&tc.pending, c);
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
static int max_level_rec(Type *t, int lv, unsigned mark)
{
    t = type_resolve(t);
    if (!t)
        return lv;
    switch (t->kind) {
    case TY_VAR:
        return t->level != TYPE_GENERIC_LEVEL && t->level > lv ? t->level : lv;
    case TY_ARRAY:
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT:
        if (t->visit == mark)
            return lv;
        t->visit = mark;
        if (t->kind == TY_ARRAY)
            return max_level_rec(t->elem, lv, mark);
        for (int i = 0; i < t->nargs; i++)
            lv = max_level_rec(t->args[i], lv, mark);
        return lv;
    default:
        return lv;
    }
}

static int max_level(Type *t, int lv)
{
    return max_level_rec(t, lv, type_visit_mark());
}

static int con_level(Constraint *c)
{
    int lv = tc.level;
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
        error_at(c->loc, "cannot negate %s %s", tc_a_an(t), t);
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
    tc_note_origin(slot);
}

static void poison(Type *t)
{
    if (t)
        type_unify(t, type_error());
}

/* Constraints derived while solving another (on the components of a tuple,
 * the elements of an array, the fields of a record) are made once per type
 * node, site and requirement. Types are DAGs: a component shared n times
 * would otherwise give n copies, each split again when a variable in it is
 * bound, which is exponential in the size of the program. */
typedef struct ConLink {
    Constraint *c;
    struct ConLink *next;
} ConLink;

static Constraint *derive(Constraint *site, ConstraintKind k, Type *t0, Type *t1, TypeClass cls,
                          bool structural, bool *fresh)
{
    Type *r0 = type_resolve(t0), *r1 = t1 ? type_resolve(t1) : NULL;
    ConLink *head = tc_map_get(&tc.derived, r0);
    for (ConLink *l = head; l; l = l->next) {
        Constraint *d = l->c;
        if (d->kind == k && d->cls == cls && d->structural == structural && d->op == site->op &&
            d->what == site->what && d->loc.file == site->loc.file &&
            d->loc.line == site->loc.line && d->loc.col == site->loc.col &&
            (d->t[1] ? type_resolve(d->t[1]) : NULL) == r1) {
            *fresh = false;
            return d;
        }
    }
    Constraint *c = tc_con_new(k, site->loc, site->what, site->op);
    c->t[0] = t0;
    c->t[1] = t1;
    c->cls = cls;
    c->structural = structural;
    ConLink *l = NEW(ConLink);
    l->c = c;
    l->next = head;
    tc_map_put(&tc.derived, r0, l);
    *fresh = true;
    return c;
}

/* t in cls (its scalar leaves equal to `leaves` if given), for c. */
static void sub_class(Constraint *c, Type *t, TypeClass cls, Type *leaves, bool structural)
{
    bool fresh;
    Constraint *s = derive(c, CK_CLASS, t, leaves, cls, structural, &fresh);
    if (fresh) {
        s->orig[0] = c->orig[0];
        s->orig[1] = c->orig[1];
    }
}

/* As sub_class, for a class constraint that solving a broadcast c leaves. */
static void bcast_class(Constraint *c, Type *t, Type *leaves, bool structural)
{
    bool fresh;
    Constraint *s = derive(c, CK_CLASS, t, leaves, c->cls, structural, &fresh);
    if (fresh) {
        s->orig[0] = c->t[0];
        s->orig[1] = c->t[1];
    }
}

/* Does the declaration contain a function type (for ==)? Coinductive. */
static bool decl_has_func(TypeDecl *d, Vec *seen, unsigned mark);

static bool type_has_func(Type *t, Vec *seen, unsigned mark)
{
    t = type_resolve(t);
    if (t->kind == TY_FUNC)
        return true;
    if (t->kind != TY_ARRAY && t->kind != TY_TUPLE && t->kind != TY_NAMED)
        return false;
    if (t->visit == mark)
        return false;
    t->visit = mark;
    if (t->kind == TY_ARRAY)
        return type_has_func(t->elem, seen, mark);
    for (int i = 0; i < t->nargs; i++)
        if (type_has_func(t->args[i], seen, mark))
            return true;
    return t->kind == TY_NAMED && decl_has_func(t->decl, seen, mark);
}

static bool decl_has_func(TypeDecl *d, Vec *seen, unsigned mark)
{
    for (int i = 0; i < seen->len; i++)
        if (seen->data[i] == d)
            return false;
    vec_push(seen, d);
    int n = d->kind == TD_RECORD ? d->nfields : d->ncons;
    Type **src = d->kind == TD_RECORD ? d->field_types : d->con_args;
    for (int i = 0; i < n; i++)
        if (src[i] && type_has_func(src[i], seen, mark))
            return true;
    return false;
}

/* Pushes "eq" on the variables of t (checked when they are known). */
static void eq_on_vars(Constraint *c, Type *t, unsigned mark)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_VAR:
    case TY_TANGENT:
        sub_class(c, t, TC_EQ, NULL, c->structural);
        return;
    case TY_ARRAY:
    case TY_TUPLE:
    case TY_NAMED:
    case TY_FUNC:
        if (t->visit == mark)
            return;
        t->visit = mark;
        if (t->kind == TY_ARRAY)
            eq_on_vars(c, t->elem, mark);
        for (int i = 0; i < t->nargs; i++)
            eq_on_vars(c, t->args[i], mark);
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
        bool bad = type_has_func(t, &seen, type_visit_mark());
        vec_free(&seen);
        if (bad)
            report_class(c, t);
        else
            eq_on_vars(c, t, type_visit_mark());
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
        sub_class(c, t->elem, c->cls == TC_ARRAY ? TC_SCALAR : c->cls, c->t[1],
                  c->structural && c->cls == TC_NUM);
        return true;
    case TY_TUPLE:
        if (!c->structural) {
            report_class(c, t);
            return true;
        }
        for (int i = 0; i < t->nargs; i++)
            sub_class(c, t->args[i], c->cls, c->t[1], c->structural);
        return true;
    case TY_NAMED:
        if (!c->structural || t->decl->kind != TD_RECORD) {
            report_class(c, t);
            return true;
        }
        for (int i = 0; i < t->decl->nfields; i++)
            sub_class(c, type_field_type(t, i), c->cls, c->t[1], c->structural);
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
        bcast_class(c, a, NULL, c->structural);
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
        bcast_class(c, x, s, c->structural);
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
            bool fresh;
            Constraint *k = derive(c, CK_BCAST, a->args[i], b->args[i], c->cls, true, &fresh);
            if (fresh) {
                k->t[2] = type_fresh_var(lv);
                k->orig[0] = c->orig[0] ? c->orig[0] : c->t[0];
                k->orig[1] = c->orig[1] ? c->orig[1] : c->t[1];
            }
            rs[i] = k->t[2];
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
        bcast_class(c, a, NULL, true);
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
    error_at(c->loc, "%s needs %s, but is given %s %s", c->what, need, tc_a_an(t), t);
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
             tc_a_an(t), t,
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
        error_at(c->loc, "%s needs an array, but is given %s %s", c->what, tc_a_an(s), s);
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
             tc_a_an(s), s);
    poison(c->t[1]);
    return true;
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
        int n = tc_lookup_fields(con_env(c), c->name, fs, 4);
        if (n != 1) {
            error_at(c->loc, "cannot infer the record type for field %s; annotate", c->name);
            poison(c->t[1]);
            return true;
        }
        type_unify(r, tc_fresh_instance(fs[0]->decl, con_level(c)));
        return false;
    }
    if (r->kind == TY_NAMED && r->decl->kind == TD_RECORD) {
        int i = tc_field_index(r->decl, c->name);
        if (i < 0) {
            const char *sug = tc_suggest_among(c->name, r->decl->fields, r->decl->nfields);
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
        int save = tc.level;
        tc.level = con_level(c);
        Type *ft = tc_instantiate(c->impl, c->loc, &inst);
        tc.level = save;
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
    return c->scope ? c->scope : tc.env;
}

static bool solve_one_raw(Constraint *c, bool final);

/* Tries c; true when it is solved (or reported). An error in an instance
 * of a scheme's constraint also points at where the generic definition
 * needed it. */
bool tc_solve_one(Constraint *c, bool final)
{
    /* its types may have grown since it was made (a variable in them was
     * bound): past the limit, solving would take exponential time */
    for (int i = 0; i < 3; i++)
        if (c->t[i] && tc_too_large(c->t[i], c->loc, "the type of this expression"))
            return true;
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
    for (int i = 0; i < tc.pending.len; i++)
        if (!((Constraint *)tc.pending.data[i])->done)
            tc.pending.data[j++] = tc.pending.data[i];
    tc.pending.len = j;
}

/* Solves what can be solved, to a fixed point. */
void tc_solve_pending(void)
{
    for (;;) {
        bool progress = false;
        for (int i = 0; i < tc.pending.len; i++) {
            Constraint *c = tc.pending.data[i];
            if (c->done)
                continue;
            if (tc_solve_one(c, false)) {
                c->done = true;
                progress = true;
            }
        }
        compact_pending();
        if (!progress)
            break;
    }
    tc.solved_at = type_bind_count;
}

void tc_maybe_solve(void)
{
    if (tc.solved_at != type_bind_count && tc.pending.len)
        tc_solve_pending();
}

/* Applies the default of one stuck constraint from `set` (NULL: all
 * pending), then solves again; false when none was left. */
static bool default_one(bool (*pick)(Constraint *))
{
    for (int i = 0; i < tc.pending.len; i++) {
        Constraint *c = tc.pending.data[i];
        if (c->done || (pick && !pick(c)))
            continue;
        if (tc_solve_one(c, true))
            c->done = true;
        tc_solve_pending();
        c->done = true; /* a default that did not settle it drops it */
        compact_pending();
        return true;
    }
    return false;
}

void tc_solve_final(void)
{
    tc_solve_pending();
    for (int guard = 0; guard < 100000 && default_one(NULL); guard++)
        ;
}

/* ======================================================================
 * schemes: instantiation and generalisation
 * ====================================================================== */

Binding *tc_find_learner_op(int op)
{
    const char *n = intern(op == OP_PAR ? "learner_par" : "learner_seq");
    Binding *b = tc.env ? tc_lookup_global(tc.env, n) : NULL;
    return b && b->def ? b : NULL;
}

/* Fresh variables for a scheme's quantifiers; its constraints are copied
 * into the pending set (re-checked for this use). */
Type *tc_instantiate(Binding *b, Loc loc, Type ***inst)
{
    *inst = NULL;
    if (b->nqvars == 0)
        return b->type;
    int n = b->nqvars;
    Type **fresh = NEWN(Type *, n);
    for (int i = 0; i < n; i++)
        fresh[i] = type_fresh_var(tc.level);
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
        k->scope = tc.env;
        if (k->kind == CK_COMPOSE && !k->impl)
            k->impl = tc_find_learner_op(k->op);
        vec_push(&tc.pending, k);
    }
    *inst = fresh;
    return t;
}

static void collect_rec(Type *t, int lv, Vec *out, unsigned mark)
{
    t = type_resolve(t);
    if (!t)
        return;
    switch (t->kind) {
    case TY_VAR:
        if (t->level > lv && t->level != TYPE_GENERIC_LEVEL && t->visit != mark) {
            t->visit = mark;
            for (int i = 0; i < out->len; i++)
                if (out->data[i] == t)
                    return;
            vec_push(out, t);
        }
        return;
    case TY_ARRAY:
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT:
        if (t->visit == mark)
            return;
        t->visit = mark;
        if (t->kind == TY_ARRAY)
            collect_rec(t->elem, lv, out, mark);
        for (int i = 0; i < t->nargs; i++)
            collect_rec(t->args[i], lv, out, mark);
        return;
    default:
        return;
    }
}

void tc_collect_vars(Type *t, int lv, Vec *out)
{
    collect_rec(t, lv, out, type_visit_mark());
}

static void con_vars(Constraint *c, int lv, Vec *out)
{
    for (int j = 0; j < 3; j++)
        if (c->t[j])
            tc_collect_vars(c->t[j], lv, out);
}

static bool con_is_local(Constraint *c, int lv)
{
    Vec v = {0};
    con_vars(c, lv, &v);
    bool r = v.len > 0;
    vec_free(&v);
    return r;
}

static bool con_mentions(Constraint *c, int lv, Vec *vars)
{
    Vec v = {0};
    con_vars(c, lv, &v);
    bool r = false;
    for (int i = 0; i < v.len && !r; i++)
        r = tc_vec_has(vars, v.data[i]);
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
        for (int i = 0; i < tc.pending.len; i++) {
            Constraint *c = tc.pending.data[i];
            if (c->done || tc_vec_has(kept, c) || !con_mentions(c, lv, vars))
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
    tc_collect_vars(t, lv, &v);
    for (int i = 0; i < v.len; i++)
        ((Type *)v.data[i])->level = lv;
    vec_free(&v);
}

static Type *abstract_rec(Type *t, Vec *vars, Map *done)
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
    case TY_TANGENT:
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED: {
        /* once per node: the result shares what t shares */
        Type *r = tc_map_get(done, t);
        if (r)
            return r;
        if (t->kind == TY_ARRAY) {
            r = type_array(abstract_rec(t->elem, vars, done), t->rank);
        } else if (t->kind == TY_TANGENT) {
            r = type_tangent(abstract_rec(t->args[0], vars, done));
        } else {
            r = type_copy_node(t);
            r->args = NEWN(Type *, t->nargs ? t->nargs : 1);
            for (int i = 0; i < t->nargs; i++)
                r->args[i] = abstract_rec(t->args[i], vars, done);
        }
        tc_map_put(done, t, r);
        return r;
    }
    default:
        return t;
    }
}

Type *tc_abstract(Type *t, Vec *vars)
{
    Map done = {0};
    return abstract_rec(t, vars, &done);
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
    return con_is_local(c, pick_level) && !tc_vec_has(pick_kept, c);
}

/* Does c mention a variable of the enclosing scopes (level <= lv)? */
static bool con_mentions_outer(Constraint *c, int lv)
{
    Vec v = {0};
    for (int j = 0; j < 3; j++)
        if (c->t[j])
            tc_collect_vars(c->t[j], -1, &v);
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
    for (int i = 0; i < tc.pending.len; i++) {
        Constraint *c = tc.pending.data[i];
        if (c->done || tc_vec_has(kept, c) || !con_is_local(c, lv) || !con_mentions_outer(c, lv))
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
void tc_generalise(Binding **bs, const bool *gen_ok, int n, int lv)
{
    for (int i = 0; i < n; i++)
        if (!gen_ok[i])
            lower_levels(bs[i]->type, lv);
    tc_solve_pending();
    pick_level = lv;
    while (default_one(pick_local_field))
        ;
    Vec qall = {0}, kept = {0};
    for (int round = 0; round < 1000; round++) {
        qall.len = kept.len = 0;
        for (int i = 0; i < n; i++)
            if (gen_ok[i])
                tc_collect_vars(bs[i]->type, lv, &qall);
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
        tc_collect_vars(b->type, lv, &vars);
        close_over_constraints(&vars, &mine, lv);
        dedup_constraints(&mine);
        b->nqvars = vars.len;
        b->generic = NEWN(Type *, vars.len ? vars.len : 1);
        for (int k = 0; k < vars.len; k++)
            b->generic[k] = vars.data[k];
        Type *body = tc_abstract(b->type, &vars);
        b->ncons = mine.len;
        b->cons = NEWN(Constraint *, mine.len ? mine.len : 1);
        for (int k = 0; k < mine.len; k++) {
            Constraint *c = con_copy(mine.data[k]);
            for (int j = 0; j < 3; j++)
                c->t[j] = tc_abstract(c->t[j], &vars);
            for (int j = 0; j < 2; j++)
                c->orig[j] = tc_abstract(c->orig[j], &vars);
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
    pick_kept = NULL;
}

