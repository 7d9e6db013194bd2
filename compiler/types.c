/* types.c — types: constructors, normalisation, tangent types, unification,
 * printing in DL syntax.
 *
 * Unification is Robinson's with an occurs check; type variables carry
 * levels so that generalisation is linear (Rémy 1992, "Extension of ML type
 * system with a sorted equational theory on types"; OCaml's typer). Arrays
 * have a static rank and are kept normalised: the element of an array is
 * never an array, so unifying []'a with [][]float binds 'a := []float
 * ("rank arithmetic"), which is what makes `map` over the rows of a matrix
 * typeable with map : ('a -> 'b) -> []'a -> []'b. */
#include "typecheck.h"

#include <string.h>

int type_bind_count;
static int next_var_id;
static UnifyFailure failure;
static unsigned visit_mark; /* the last mark of type_visit_mark */

/* ---- constructors -------------------------------------------------------- */

static Type *mk(TypeKind k)
{
    Type *t = NEW(Type);
    t->kind = k;
    return t;
}

/* The scalar types are one node each per compilation (cached; forgotten
 * by types_reset, and when the arena changes). */
static Type *singletons[TY_ERROR + 1];
static Arena *singletons_arena;

static Type *singleton(TypeKind k)
{
    if (singletons_arena != dcc_arena) {
        memset(singletons, 0, sizeof singletons);
        singletons_arena = dcc_arena;
    }
    if (!singletons[k])
        singletons[k] = mk(k);
    return singletons[k];
}

/* Forgets the cached nodes and the counters: the arena they live in is
 * about to be freed (typecheck_reset). */
void types_reset(void)
{
    memset(singletons, 0, sizeof singletons);
    singletons_arena = NULL;
    type_bind_count = 0;
    next_var_id = 0;
    memset(&failure, 0, sizeof failure);
}

#define SINGLETON(fn, K)                                                      \
    Type *fn(void) { return singleton(K); }
SINGLETON(type_int, TY_INT)
SINGLETON(type_float, TY_FLOAT)
SINGLETON(type_f32, TY_F32)
SINGLETON(type_bool, TY_BOOL)
SINGLETON(type_unit, TY_UNIT)
SINGLETON(type_string, TY_STRING)
SINGLETON(type_rng_key, TY_KEY)
SINGLETON(type_error, TY_ERROR)

Type *type_copy_node(Type *t)
{
    Type *c = NEW(Type);
    *c = *t;
    c->visit = 0;
    return c;
}

unsigned type_visit_mark(void)
{
    if (++visit_mark == 0) /* wrapped: 0 is every new node's mark */
        visit_mark = 1;
    return visit_mark;
}

Type *type_array(Type *elem, int rank)
{
    Type *e = type_resolve(elem);
    if (e->kind == TY_ARRAY)
        return type_array(e->elem, rank + e->rank);
    if (e->kind == TY_ERROR)
        return e;
    Type *t = mk(TY_ARRAY);
    t->elem = elem;
    t->rank = rank;
    return t;
}

Type *type_func(Type *a, Type *b)
{
    Type *t = mk(TY_FUNC);
    t->args = NEWN(Type *, 2);
    t->args[0] = a;
    t->args[1] = b;
    t->nargs = 2;
    return t;
}

Type *type_tuple(Type **items, int n)
{
    Type *t = mk(TY_TUPLE);
    t->args = NEWN(Type *, n ? n : 1);
    memcpy(t->args, items, sizeof(Type *) * (size_t)n);
    t->nargs = n;
    return t;
}

Type *type_tuple2(Type *a, Type *b)
{
    Type *it[2] = {a, b};
    return type_tuple(it, 2);
}

Type *type_named(TypeDecl *d, Type **args, int n)
{
    Type *t = mk(TY_NAMED);
    t->decl = d;
    t->args = NEWN(Type *, n ? n : 1);
    if (n)
        memcpy(t->args, args, sizeof(Type *) * (size_t)n);
    t->nargs = n;
    return t;
}

Type *type_qvar(int id)
{
    Type *t = mk(TY_QVAR);
    t->id = id;
    return t;
}

Type *type_fresh_var(int level)
{
    Type *t = mk(TY_VAR);
    t->id = ++next_var_id;
    t->level = level;
    return t;
}

static Type *mk_tangent(Type *of)
{
    Type *t = mk(TY_TANGENT);
    t->args = NEWN(Type *, 1);
    t->args[0] = of;
    t->nargs = 1;
    return t;
}

/* ---- normalisation ------------------------------------------------------- */

static bool is_open(Type *t) /* an unknown: variable or stuck tangent */
{
    return t->kind == TY_VAR || t->kind == TY_QVAR || t->kind == TY_TANGENT;
}

/* Follows links; flattens arrays of arrays in place (a node keeps denoting
 * the same type); computes T(t) once t is known. */
Type *type_resolve(Type *t)
{
    for (;;) {
        if (!t)
            return t;
        if (t->kind == TY_VAR && t->link) {
            Type *r = t->link;
            while (r->kind == TY_VAR && r->link)
                r = r->link;
            t->link = r; /* path compression */
            t = r;
            continue;
        }
        if (t->kind == TY_TANGENT) {
            if (t->link) {
                t = t->link;
                continue;
            }
            Type *a = type_resolve(t->args[0]);
            t->args[0] = a;
            if (is_open(a))
                return t;
            t->link = type_tangent(a);
            t = t->link;
            continue;
        }
        if (t->kind == TY_ARRAY) {
            Type *e = type_resolve(t->elem);
            if (e->kind == TY_ARRAY) {
                t->rank += e->rank;
                t->elem = e->elem;
                continue;
            }
            t->elem = e;
            return t;
        }
        return t;
    }
}

/* ---- declarations: instances, tangent declarations ---------------------- */

Type *type_field_type(Type *named, int field)
{
    named = type_resolve(named);
    TypeDecl *d = named->decl;
    return type_subst(d->field_types[field], named->args, named->nargs);
}

Type *type_con_arg(Type *named, int con)
{
    named = type_resolve(named);
    TypeDecl *d = named->decl;
    if (!d->con_args[con])
        return NULL;
    return type_subst(d->con_args[con], named->args, named->nargs);
}

static Type **tangent_qvars_of(int n)
{
    Type **q = NEWN(Type *, n ? n : 1);
    for (int i = 0; i < n; i++)
        q[i] = mk_tangent(type_qvar(i));
    return q;
}

/* A declaration D with parameters 'a.. is functorial for T when each field
 * (constructor argument) f satisfies T(f) = f['a := T 'a]: then
 * T(D a..) = D (T a)... (e.g. T(float option) = float option,
 * T(int option) = unit option; T(params) = params). Otherwise T(D a..) is a
 * synthesised declaration whose fields are T(f). Recursion through the
 * declaration assumes functoriality (a coinductive check). */
static void decl_tangent(TypeDecl *d)
{
    if (d->tangent_state != 0)
        return;
    d->tangent_state = 1;
    Type **tq = tangent_qvars_of(d->ntparams);
    bool functorial = true;
    int n = d->kind == TD_RECORD ? d->nfields : d->ncons;
    Type **src = d->kind == TD_RECORD ? d->field_types : d->con_args;
    for (int i = 0; i < n && functorial; i++) {
        if (!src[i])
            continue;
        Type *tf = type_tangent(src[i]);
        Type *sf = type_subst(src[i], tq, d->ntparams);
        if (!type_equal(tf, sf))
            functorial = false;
    }
    if (functorial) {
        d->tangent_state = 2;
        d->tangent = d;
        return;
    }
    TypeDecl *t = NEW(TypeDecl);
    *t = *d;
    t->decl = NULL;
    t->primal = d;
    t->tangent = NULL;
    t->tangent_state = 0;
    t->name = arena_printf(dcc_arena, "T(%s)", d->name);
    d->tangent = t; /* before the fields: they may refer to T(D) */
    d->tangent_state = 3;
    Type **dst = NEWN(Type *, n ? n : 1);
    for (int i = 0; i < n; i++)
        dst[i] = src[i] ? type_tangent(src[i]) : NULL;
    if (d->kind == TD_RECORD)
        t->field_types = dst;
    else
        t->con_args = dst;
}

/* T(t), LANGUAGE.md §3. */
Type *type_tangent(Type *t)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_FLOAT:
    case TY_F32:
    case TY_ERROR:
        return t;
    case TY_INT:
    case TY_BOOL:
    case TY_STRING:
    case TY_UNIT:
    case TY_KEY:
        return type_unit();
    case TY_TUPLE: {
        Type **it = NEWN(Type *, t->nargs ? t->nargs : 1);
        for (int i = 0; i < t->nargs; i++)
            it[i] = type_tangent(t->args[i]);
        return type_tuple(it, t->nargs);
    }
    case TY_ARRAY:
        return type_array(type_tangent(t->elem), t->rank);
    case TY_FUNC:
        return type_func(t->args[0], type_tangent(t->args[1]));
    case TY_NAMED: {
        TypeDecl *d = t->decl;
        decl_tangent(d);
        if (d->tangent_state == 1 || d->tangent_state == 2) {
            Type **as = NEWN(Type *, t->nargs ? t->nargs : 1);
            for (int i = 0; i < t->nargs; i++)
                as[i] = type_tangent(t->args[i]);
            return type_named(d, as, t->nargs);
        }
        return type_named(d->tangent, t->args, t->nargs);
    }
    case TY_VAR:
    case TY_QVAR:
    case TY_TANGENT:
        return mk_tangent(t);
    }
    return t;
}

/* ---- structural operations ----------------------------------------------- */

bool type_equal(Type *a, Type *b)
{
    a = type_resolve(a);
    b = type_resolve(b);
    if (a == b)
        return true;
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case TY_VAR:
        return false;
    case TY_QVAR:
        return a->id == b->id;
    case TY_ARRAY:
        return a->rank == b->rank && type_equal(a->elem, b->elem);
    case TY_NAMED:
        if (a->decl != b->decl)
            return false;
        /* fallthrough */
    case TY_TUPLE:
    case TY_FUNC:
    case TY_TANGENT:
        if (a->nargs != b->nargs)
            return false;
        for (int i = 0; i < a->nargs; i++)
            if (!type_equal(a->args[i], b->args[i]))
                return false;
        return true;
    default:
        return true;
    }
}

static bool has_vars_rec(Type *t, bool skip_generic, unsigned mark)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_VAR:
        return !(skip_generic && t->level == TYPE_GENERIC_LEVEL);
    case TY_ARRAY:
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT:
        if (t->visit == mark)
            return false;
        t->visit = mark;
        if (t->kind == TY_ARRAY)
            return has_vars_rec(t->elem, skip_generic, mark);
        for (int i = 0; i < t->nargs; i++)
            if (has_vars_rec(t->args[i], skip_generic, mark))
                return true;
        return false;
    default:
        return false;
    }
}

bool type_has_vars(Type *t, bool skip_generic)
{
    return has_vars_rec(t, skip_generic, type_visit_mark());
}

/* Nodes of t as a tree, counted up to a little past `limit`: shared
 * subterms count once per occurrence, as the recursive walks see them. */
long type_tree_size(Type *t, long limit)
{
    t = type_resolve(t);
    if (!t)
        return 0;
    long n = 1;
    switch (t->kind) {
    case TY_ARRAY:
        return 1 + type_tree_size(t->elem, limit - 1);
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT:
        for (int i = 0; i < t->nargs && n <= limit; i++)
            n += type_tree_size(t->args[i], limit - n);
        return n;
    default:
        return 1;
    }
}

Type *type_subst(Type *t, Type **to, int n)
{
    if (!t)
        return NULL;
    t = type_resolve(t);
    Type *r;
    switch (t->kind) {
    case TY_QVAR:
        return t->id < n ? to[t->id] : t;
    case TY_ARRAY:
        r = type_array(type_subst(t->elem, to, n), t->rank);
        break;
    case TY_TANGENT:
        return type_tangent(type_subst(t->args[0], to, n));
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED: {
        bool same = true;
        Type **as = NEWN(Type *, t->nargs ? t->nargs : 1);
        for (int i = 0; i < t->nargs; i++) {
            as[i] = type_subst(t->args[i], to, n);
            if (as[i] != t->args[i])
                same = false;
        }
        if (same)
            return t;
        r = type_copy_node(t);
        r->args = as;
        break;
    }
    default:
        return t;
    }
    if (r->kind != TY_ERROR)
        r->origin = t->origin;
    return r;
}

/* ---- unification --------------------------------------------------------- */

UnifyFailure type_unify_failure(void) { return failure; }

static bool fail(Type *a, Type *b)
{
    failure.a = a;
    failure.b = b;
    failure.occurs = false;
    return false;
}

/* Occurs check, and lowers the levels of the variables of t to `level`
 * (a variable bound to t may be generalised only where all of t may). */
static bool occurs_rec(Type *v, Type *t, int level, unsigned mark)
{
    t = type_resolve(t);
    switch (t->kind) {
    case TY_VAR:
        if (t == v)
            return true;
        if (t->level > level && t->level != TYPE_GENERIC_LEVEL)
            t->level = level;
        return false;
    case TY_ARRAY:
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT:
        if (t->visit == mark)
            return false;
        t->visit = mark;
        if (t->kind == TY_ARRAY)
            return occurs_rec(v, t->elem, level, mark);
        for (int i = 0; i < t->nargs; i++)
            if (occurs_rec(v, t->args[i], level, mark))
                return true;
        return false;
    default:
        return false;
    }
}

static bool occurs_adjust(Type *v, Type *t, int level)
{
    return occurs_rec(v, t, level, type_visit_mark());
}

static bool bind(Type *v, Type *t)
{
    if (t->kind == TY_TANGENT && type_resolve(t->args[0]) == v)
        return true; /* 'a = T 'a: holds for every self-tangent 'a; keep open */
    if (occurs_adjust(v, t, v->level)) {
        failure.a = v;
        failure.b = t;
        failure.occurs = true;
        return false;
    }
    v->link = t;
    type_bind_count++;
    return true;
}

static bool unify_rec(Type *a, Type *b);

/* T('a) = x with x known: invert T structurally (T is injective except
 * onto unit, where 'a := unit is chosen). */
static bool unify_tangent(Type *tan, Type *x)
{
    Type *v = type_resolve(tan->args[0]);
    if (x->kind == TY_TANGENT)
        return unify_rec(v, x->args[0]);
    if (v->kind != TY_VAR)
        return fail(tan, x);
    int lv = v->level;
    switch (x->kind) {
    case TY_FLOAT:
    case TY_F32:
    case TY_UNIT:
        return unify_rec(v, x);
    case TY_TUPLE: {
        Type **it = NEWN(Type *, x->nargs ? x->nargs : 1);
        for (int i = 0; i < x->nargs; i++)
            it[i] = type_fresh_var(lv);
        if (!unify_rec(v, type_tuple(it, x->nargs)))
            return false;
        for (int i = 0; i < x->nargs; i++)
            if (!unify_rec(type_tangent(it[i]), x->args[i]))
                return false;
        return true;
    }
    case TY_ARRAY: {
        Type *e = type_fresh_var(lv);
        if (!unify_rec(v, type_array(e, x->rank)))
            return false;
        return unify_rec(type_tangent(e), x->elem);
    }
    case TY_FUNC: {
        Type *r = type_fresh_var(lv);
        if (!unify_rec(v, type_func(x->args[0], r)))
            return false;
        return unify_rec(type_tangent(r), x->args[1]);
    }
    case TY_NAMED: {
        TypeDecl *d = x->decl->primal ? x->decl->primal : x->decl;
        Type **as = NEWN(Type *, d->ntparams ? d->ntparams : 1);
        for (int i = 0; i < d->ntparams; i++)
            as[i] = type_fresh_var(lv);
        if (!unify_rec(v, type_named(d, as, d->ntparams)))
            return false;
        return unify_rec(type_tangent(v), x);
    }
    default:
        return fail(tan, x);
    }
}

static bool unify_rec(Type *a, Type *b)
{
    a = type_resolve(a);
    b = type_resolve(b);
    if (a == b)
        return true;
    /* a variable unified with the poison becomes poison: no cascades */
    if (a->kind == TY_VAR)
        return bind(a, b);
    if (b->kind == TY_VAR)
        return bind(b, a);
    if (a->kind == TY_ERROR || b->kind == TY_ERROR)
        return true;
    if (a->kind == TY_TANGENT)
        return unify_tangent(a, b);
    if (b->kind == TY_TANGENT)
        return unify_tangent(b, a);
    if (a->kind == TY_ARRAY && b->kind == TY_ARRAY) {
        if (a->rank == b->rank)
            return unify_rec(a->elem, b->elem) || fail(a, b);
        Type *lo = a->rank < b->rank ? a : b, *hi = lo == a ? b : a;
        Type *e = type_resolve(lo->elem);
        if (e->kind == TY_ERROR)
            return true;
        if (e->kind == TY_VAR || e->kind == TY_TANGENT) {
            /* rank arithmetic: []'a = [][]float binds 'a := []float */
            if (!unify_rec(e, type_array(hi->elem, hi->rank - lo->rank)))
                return failure.occurs ? false : fail(a, b);
            return true;
        }
        return fail(a, b);
    }
    if (a->kind != b->kind)
        return fail(a, b);
    switch (a->kind) {
    case TY_QVAR:
        return a->id == b->id || fail(a, b);
    case TY_NAMED:
        if (a->decl != b->decl)
            return fail(a, b);
        /* fallthrough */
    case TY_TUPLE:
    case TY_FUNC:
        if (a->nargs != b->nargs)
            return fail(a, b);
        for (int i = 0; i < a->nargs; i++)
            if (!unify_rec(a->args[i], b->args[i]))
                return false;
        return true;
    default:
        return true;
    }
}

bool type_unify(Type *a, Type *b)
{
    failure.a = failure.b = NULL;
    failure.occurs = false;
    return unify_rec(a, b);
}

/* ---- printing ------------------------------------------------------------ */

/* Precedence levels: 0 function (right-assoc), 1 named application,
 * 2 atoms ([]t binds its operand at level 2). */
static void var_name(TypePrinter *p, StrBuf *b, const void *key)
{
    int i = 0;
    while (i < p->n && p->keys[i] != key)
        i++;
    if (i == p->n && p->n < 64)
        p->keys[p->n++] = key;
    if (i < 26)
        sb_printf(b, "'%c", 'a' + i);
    else
        sb_printf(b, "'%c%d", 'a' + i % 26, i / 26);
}

static void print_prec(TypePrinter *p, StrBuf *b, Type *t, int prec)
{
    t = type_resolve(t);
    if (!t) {
        sb_puts(b, "?");
        return;
    }
    switch (t->kind) {
    case TY_VAR:
        var_name(p, b, t);
        return;
    case TY_QVAR:
        var_name(p, b, (const void *)(uintptr_t)(1 + t->id)); /* never a Type * */
        return;
    case TY_INT: sb_puts(b, "int"); return;
    case TY_FLOAT: sb_puts(b, "float"); return;
    case TY_F32: sb_puts(b, "f32"); return;
    case TY_BOOL: sb_puts(b, "bool"); return;
    case TY_UNIT: sb_puts(b, "unit"); return;
    case TY_STRING: sb_puts(b, "string"); return;
    case TY_KEY: sb_puts(b, "key"); return;
    case TY_ERROR: sb_puts(b, "<error>"); return;
    case TY_TUPLE:
        sb_putc(b, '(');
        for (int i = 0; i < t->nargs; i++) {
            if (i)
                sb_puts(b, ", ");
            print_prec(p, b, t->args[i], 0);
        }
        sb_putc(b, ')');
        return;
    case TY_ARRAY:
        for (int i = 0; i < t->rank; i++)
            sb_puts(b, "[]");
        print_prec(p, b, t->elem, 2);
        return;
    case TY_FUNC:
        if (prec > 0)
            sb_putc(b, '(');
        print_prec(p, b, t->args[0], 1);
        sb_puts(b, " -> ");
        print_prec(p, b, t->args[1], 0);
        if (prec > 0)
            sb_putc(b, ')');
        return;
    case TY_TANGENT:
        sb_puts(b, "T(");
        print_prec(p, b, t->args[0], 0);
        sb_putc(b, ')');
        return;
    case TY_NAMED: {
        TypeDecl *d = t->decl->primal ? t->decl->primal : t->decl;
        bool tan = t->decl->primal != NULL;
        bool paren = !tan && t->nargs > 0 && prec > 1;
        if (paren)
            sb_putc(b, '(');
        if (tan)
            sb_puts(b, "T(");
        if (t->nargs == 1) {
            /* ([]float) option, ((float, int)) option: an array or a
             * tuple argument is parenthesised to stay unambiguous */
            Type *a = type_resolve(t->args[0]);
            bool wrap = a->kind == TY_ARRAY || a->kind == TY_TUPLE;
            if (wrap)
                sb_putc(b, '(');
            print_prec(p, b, a, 1); /* 'a option option */
            if (wrap)
                sb_putc(b, ')');
            sb_putc(b, ' ');
        } else if (t->nargs > 1) {
            sb_putc(b, '(');
            for (int i = 0; i < t->nargs; i++) {
                if (i)
                    sb_puts(b, ", ");
                print_prec(p, b, t->args[i], 0);
            }
            sb_puts(b, ") ");
        }
        sb_puts(b, d->name);
        if (tan)
            sb_putc(b, ')');
        if (paren)
            sb_putc(b, ')');
        return;
    }
    }
}

void type_print_with(TypePrinter *p, StrBuf *b, Type *t)
{
    print_prec(p, b, t, 0);
}

/* An array's element is printed at level 2, which parenthesises named
 * types with arguments and functions: [](float option), [](int -> int). */
void type_print(StrBuf *b, Type *t)
{
    TypePrinter p = {.n = 0};
    print_prec(&p, b, t, 0);
}

char *type_to_string_with(TypePrinter *p, Type *t)
{
    StrBuf b = {0};
    print_prec(p, &b, t, 0);
    char *s = arena_strdup(dcc_arena, b.data ? b.data : "");
    sb_free(&b);
    return s;
}

char *type_to_string(Type *t)
{
    TypePrinter p = {.n = 0};
    return type_to_string_with(&p, t);
}

static const char *class_name(TypeClass c)
{
    switch (c) {
    case TC_NUM: return "num";
    case TC_FLOATING: return "floating";
    case TC_NUMELEM: return "numeric";
    case TC_SCALAR: return "scalar";
    case TC_ORD: return "ord";
    case TC_EQ: return "eq";
    case TC_ARRAY: return "array";
    case TC_ANYARRAY: return "array";
    }
    return "?";
}

/* Scheme constraints, printed after "where": 'a + 'b = 'c, num 'a, ... */
void constraint_print(TypePrinter *p, StrBuf *b, const Constraint *c)
{
    const char *what = c->what ? c->what : "?";
    switch (c->kind) {
    case CK_CLASS:
        sb_printf(b, "%s ", class_name(c->cls));
        print_prec(p, b, c->t[0], 2);
        if (c->t[1]) {
            sb_puts(b, " of ");
            print_prec(p, b, c->t[1], 2);
        }
        return;
    case CK_BCAST:
    case CK_MATMUL:
    case CK_COMPOSE:
        if (c->op >= 0) {
            print_prec(p, b, c->t[0], 1);
            sb_printf(b, " %s ", what);
            print_prec(p, b, c->t[1], 1);
        } else {
            sb_printf(b, "%s ", what);
            print_prec(p, b, c->t[0], 2);
            sb_putc(b, ' ');
            print_prec(p, b, c->t[1], 2);
        }
        sb_puts(b, " = ");
        print_prec(p, b, c->t[2], 1);
        return;
    case CK_FIELD:
        print_prec(p, b, c->t[0], 2);
        sb_printf(b, ".%s = ", c->name);
        print_prec(p, b, c->t[1], 1);
        return;
    case CK_PROJ:
        print_prec(p, b, c->t[0], 2);
        sb_printf(b, ".%d = ", c->n);
        print_prec(p, b, c->t[1], 1);
        return;
    case CK_RANK_IN:
        sb_printf(b, "rank %d..%d ", c->n, c->m);
        print_prec(p, b, c->t[0], 2);
        return;
    default: {
        /* built-ins with a computed result: what t0 [t1] = result */
        int nargs = c->kind == CK_RESHAPE ? 2 : 1;
        int res = c->kind == CK_RESHAPE ? 2 : 1;
        sb_printf(b, "%s", what);
        for (int i = 0; i < nargs; i++) {
            sb_putc(b, ' ');
            print_prec(p, b, c->t[i], 2);
        }
        sb_puts(b, " = ");
        print_prec(p, b, c->t[res], 1);
        return;
    }
    }
}
