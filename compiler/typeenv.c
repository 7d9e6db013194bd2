/* typeenv.c — what the type checker looks names up in, and what it says
 * when types clash: module scopes (own defs, then imports, the prelude, the
 * built-ins), "did you mean" suggestions (edit distance), mismatch
 * messages, and the conversion of type syntax: annotations, aliases and
 * the record and variant declarations of every module. */
#include "typecheck.h"

#include <stdlib.h>
#include <string.h>

/* ======================================================================
 * maps keyed by pointers (interned names, bindings)
 * ====================================================================== */

static unsigned hash_ptr(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return (unsigned)(x >> 32);
}

void *tc_map_get(const Map *m, const void *k)
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

void tc_map_put(Map *m, const void *k, void *v)
{
    if (2 * (m->n + 1) > m->cap) {
        Map old = *m;
        m->cap = old.cap ? 2 * old.cap : 16;
        m->keys = NEWN(const void *, m->cap);
        m->vals = NEWN(void *, m->cap);
        m->n = 0;
        for (int i = 0; i < old.cap; i++)
            if (old.keys[i])
                tc_map_put(m, old.keys[i], old.vals[i]);
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

ModEnv *tc_env_of(Module *m) { return tc_map_get(&tc.envs, m); }

Binding *tc_lookup_local(const char *name)
{
    for (int i = tc.locals.len - 1; i >= 0; i--) {
        Binding *b = tc.locals.data[i];
        if (b->name == name)
            return b;
    }
    return NULL;
}

Binding *tc_lookup_global(ModEnv *e, const char *name)
{
    Binding *b = tc_map_get(&e->values, name);
    for (int i = 0; !b && i < e->imports.len; i++)
        b = tc_map_get(&((ModEnv *)e->imports.data[i])->values, name);
    if (!b) {
        Builtin id = builtin_lookup(name);
        if (id)
            b = builtin_binding(id);
    }
    return b;
}

static TypeDecl *lookup_type(ModEnv *e, const char *name)
{
    TypeDecl *d = tc_map_get(&e->types, name);
    for (int i = 0; !d && i < e->imports.len; i++)
        d = tc_map_get(&((ModEnv *)e->imports.data[i])->types, name);
    return d;
}

ConRef *tc_lookup_con(ModEnv *e, const char *name)
{
    ConRef *c = tc_map_get(&e->cons, name);
    for (int i = 0; !c && i < e->imports.len; i++)
        c = tc_map_get(&((ModEnv *)e->imports.data[i])->cons, name);
    return c;
}

/* All visible records with field `name`, nearest scope first. */
int tc_lookup_fields(ModEnv *e, const char *name, FieldRef **out, int max)
{
    int n = 0;
    for (int i = -1; i < e->imports.len; i++) {
        ModEnv *m = i < 0 ? e : e->imports.data[i];
        for (FieldRef *f = tc_map_get(&m->fields, name); f && n < max; f = f->next)
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

const char *tc_suggestion(const char *name, int ns)
{
    Suggest s = {name, NULL, 3};
    if (ns == NS_VALUE)
        for (int i = tc.locals.len - 1; i >= 0; i--)
            suggest_try(&s, ((Binding *)tc.locals.data[i])->name);
    ModEnv *e = tc.env;
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

const char *tc_suggest_among(const char *name, const char **cands, int n)
{
    Suggest s = {name, NULL, 3};
    for (int k = 0; k < n; k++)
        suggest_try(&s, cands[k]);
    return s.best;
}

bool tc_vec_has(Vec *v, void *p)
{
    for (int i = 0; i < v->len; i++)
        if (v->data[i] == p)
            return true;
    return false;
}

/* ======================================================================
 * messages
 * ====================================================================== */

const char *tc_a_an(const char *s)
{
    return strchr("aeiou", s[0]) && s[0] ? "an" : "a";
}

/* Note pointing at the annotation a type came from. */
void tc_note_origin(Type *want)
{
    Type *w = type_resolve(want);
    if (w && w->origin.line)
        note_at(w->origin, "%s expected because of this annotation", type_to_string(w));
}

/* "WHAT has type X but Y was expected", or the occurs-check message. */
void tc_report_mismatch(Loc loc, const char *what, Type *got, Type *want)
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
    tc_note_origin(want);
}

bool tc_too_large(Type *t, Loc loc, const char *what)
{
    if (type_tree_size(t, TYPE_TREE_LIMIT) <= TYPE_TREE_LIMIT)
        return false;
    if (!tc.too_large && !tc.quiet) {
        error_at(loc, "%s is too large to check (over %d parts written out); a record or "
                 "variant type would keep it small", what, TYPE_TREE_LIMIT);
        tc.too_large = true;
    }
    return true;
}

/* Unifies e's type with want; reports at e on failure. */
bool tc_expect(Expr *e, Type *want, const char *what)
{
    if (type_unify(e->type, want))
        return true;
    tc_report_mismatch(e->loc, what ? what : "this expression", e->type, want);
    return false;
}

int tc_field_index(TypeDecl *d, const char *name)
{
    for (int i = 0; i < d->nfields; i++)
        if (d->fields[i] == name)
            return i;
    return -1;
}

Type *tc_fresh_instance(TypeDecl *d, int level)
{
    Type **as = NEWN(Type *, d->ntparams ? d->ntparams : 1);
    for (int i = 0; i < d->ntparams; i++)
        as[i] = type_fresh_var(level);
    return type_named(d, as, d->ntparams);
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
    for (int i = 0; i < tc.tvars.len; i++) {
        TVar *v = tc.tvars.data[i];
        if (v->name == name)
            return v->var;
    }
    TVar *v = NEW(TVar);
    v->name = name;
    v->var = type_fresh_var(tc.level);
    vec_push(&tc.tvars, v);
    return v->var;
}

Type *tc_base_type(const char *n)
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
            if (!tc.quiet)
                error_at(te->loc, "unbound type variable '%s in the declaration of %s", n,
                         te_env->decl->name);
            return type_error();
        }
        return annot_var(n);
    }
    case TE_NAME: {
        const char *n = intern(te->name);
        Type *b = tc_base_type(n);
        if (b && te->nargs == 0)
            return with_origin(b, te->loc);
        TypeDecl *d = lookup_type(tc.env, n);
        if (!d) {
            if (!tc.quiet) {
                const char *sug = tc_suggestion(n, NS_TYPE);
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
            if (!tc.quiet)
                error_at(te->loc, "the type %s expects %d argument%s, but is given %d", n,
                         d->ntparams, d->ntparams == 1 ? "" : "s", te->nargs);
            return type_error();
        }
        Type **as = NEWN(Type *, te->nargs ? te->nargs : 1);
        for (int i = 0; i < te->nargs; i++)
            as[i] = conv(te->args[i], te_env);
        if (d->kind == TD_ALIAS) {
            ensure_alias(d);
            /* the body first: substituting walks it */
            if (tc_too_large(d->alias, te->loc, "this type"))
                return type_error();
            Type *t = type_subst(d->alias, as, te->nargs);
            if (tc_too_large(t, te->loc, "this type"))
                return type_error();
            return with_origin(t, te->loc);
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
        if (!tc.quiet)
            error_at(te->loc, "a record type must be declared with `type name = { ... }`");
        return type_error();
    }
    return type_error();
}

Type *tc_conv_annot(TypeExpr *te)
{
    TEnv e = {NULL};
    return conv(te, &e);
}

static void ensure_alias(TypeDecl *d)
{
    if (d->alias_state == 2)
        return;
    if (d->alias_state == 1) {
        if (!tc.quiet)
            error_at(d->loc, "the type alias %s refers to itself", d->name);
        d->alias = type_error();
        d->alias_state = 2;
        return;
    }
    d->alias_state = 1;
    ModEnv *save = tc.env;
    tc.env = tc_env_of(d->module);
    TEnv e = {d};
    Type *t = conv(d->decl->alias, &e);
    tc.env = save;
    if (d->alias_state == 1 &&
        tc_too_large(t, d->loc, arena_printf(dcc_arena, "the type alias %s", d->name)))
        t = type_error();
    if (d->alias_state == 1)
        d->alias = t;
    d->alias_state = 2;
}

ModEnv *tc_new_env(Module *m)
{
    ModEnv *e = NEW(ModEnv);
    e->m = m;
    tc_map_put(&tc.envs, m, e);
    return e;
}

/* Registers the names of a module's type declarations (all declarations
 * of a module may refer to each other). */
void tc_declare_types(ModEnv *e)
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
        TypeDecl *old = tc_map_get(&e->types, td->name);
        if (old) {
            error_at(td->loc, "duplicate definition of the type %s", td->name);
            note_at(old->loc, "%s was first defined here", td->name);
            continue;
        }
        if (tc_base_type(td->name))
            error_at(td->loc, "cannot redefine the built-in type %s", td->name);
        tc_map_put(&e->types, td->name, td);
    }
}

void tc_define_types(ModEnv *e)
{
    tc.env = e;
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
                f->next = tc_map_get(&e->fields, td->fields[k]);
                tc_map_put(&e->fields, td->fields[k], f);
            }
        } else {
            td->ncons = d->ncons;
            td->cons = NEWN(const char *, d->ncons ? d->ncons : 1);
            td->con_args = NEWN(Type *, d->ncons ? d->ncons : 1);
            for (int k = 0; k < d->ncons; k++) {
                ConDecl *cd = &d->cons[k];
                td->cons[k] = intern(cd->name);
                td->con_args[k] = cd->arg ? conv(cd->arg, &te) : NULL;
                ConRef *old = tc_map_get(&e->cons, td->cons[k]);
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
                tc_map_put(&e->cons, td->cons[k], c);
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

void tc_mark_recursive(ModEnv *e)
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

