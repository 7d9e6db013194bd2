/* patterns.c — patterns: their types and the variables they bind, then
 * whether a match covers every value and whether each case can be reached,
 * by Maranget's usefulness algorithm ("Warnings for pattern matching",
 * JFP 2007). */
#include "typecheck.h"

#include <stdlib.h>
#include <string.h>

/* ======================================================================
 * patterns
 * ====================================================================== */

Binding *tc_new_local(const char *name, Loc loc, Type *t)
{
    Binding *b = NEW(Binding);
    b->name = name;
    b->loc = loc;
    b->type = t;
    b->module = tc.env ? tc.env->m : NULL;
    vec_push(&tc.locals, b);
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

static void pat_poison(Pat *p)
{
    if (p)
        tc_check_pat(p, type_error());
}

static void pat_expect(Pat *p, Type *t, Type *want)
{
    if (!type_unify(t, want))
        pat_mismatch(p, want, t);
}

/* Finds the record type a literal or pattern with these fields has: the
 * expected type when it is known, else the nearest record declaring the
 * first field and all the others. */
TypeDecl *tc_record_for_fields(const char **names, int n, Loc loc)
{
    FieldRef *fs[32];
    if (n == 0)
        return NULL;
    int nf = tc_lookup_fields(tc.env, intern(names[0]), fs, 32);
    if (nf == 0) {
        const char *sug = tc_suggestion(intern(names[0]), NS_FIELD);
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
            all = tc_field_index(d, intern(names[i])) >= 0;
        if (all)
            return d;
    }
    return fs[0]->decl;
}

void tc_check_pat(Pat *p, Type *t)
{
    if (!p)
        return;
    vec_push(&tc.all_pats, p);
    p->type = t;
    switch (p->kind) {
    case PAT_WILD:
        return;
    case PAT_VAR: {
        const char *n = intern(p->name);
        if (tc_vec_has(&tc.pat_names, (void *)n))
            error_at(p->loc, "the variable %s is bound twice in this pattern", n);
        vec_push(&tc.pat_names, (void *)n);
        p->binding = tc_new_local(n, p->loc, t);
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
                its[i] = r->kind == TY_ERROR ? type_error() : type_fresh_var(tc.level);
            Type *tt = type_tuple(its, p->nitems);
            if (!type_unify(t, tt)) {
                pat_mismatch(p, tt, t);
                for (int i = 0; i < p->nitems; i++)
                    pat_poison(p->items[i]);
                return;
            }
        }
        for (int i = 0; i < p->nitems; i++)
            tc_check_pat(p->items[i], its[i]);
        return;
    }
    case PAT_RECORD: {
        Type *r = type_resolve(t);
        TypeDecl *d = NULL;
        if (r->kind == TY_NAMED && r->decl->kind == TD_RECORD)
            d = r->decl;
        else if (r->kind != TY_ERROR)
            d = tc_record_for_fields(p->fields, p->nitems, p->loc);
        if (!d) {
            for (int i = 0; i < p->nitems; i++)
                pat_poison(p->items[i]);
            return;
        }
        Type *inst = r->kind == TY_NAMED && r->decl == d ? r : tc_fresh_instance(d, tc.level);
        if (inst != r && !type_unify(t, inst)) {
            pat_mismatch(p, inst, t);
            for (int i = 0; i < p->nitems; i++)
                pat_poison(p->items[i]);
            return;
        }
        for (int i = 0; i < p->nitems; i++) {
            const char *f = intern(p->fields[i]);
            int k = tc_field_index(d, f);
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
                tc_check_pat(p->items[i], type_field_type(inst, k));
        }
        /* fields not mentioned are ignored, with or without `..`
         * (LANGUAGE.md §4: let {w1, b1} = p in ...) */
        return;
    }
    case PAT_CON: {
        const char *n = intern(p->name);
        ConRef *cr = tc_lookup_con(tc.env, n);
        if (!cr) {
            const char *sug = tc_suggestion(n, NS_CON);
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
                                                                : tc_fresh_instance(cr->decl, tc.level);
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
            tc_check_pat(p->arg, at);
        }
        return;
    }
    case PAT_ANNOT: {
        Type *at = tc_conv_annot(p->annot);
        if (!type_unify(t, at)) {
            TypePrinter pr = {.n = 0};
            char *a = type_to_string_with(&pr, at), *b = type_to_string_with(&pr, t);
            error_at(p->loc, "this pattern is annotated %s but the value it matches has type %s", a,
                     b);
            tc_check_pat(p->arg, at);
            return;
        }
        tc_check_pat(p->arg, at);
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
void tc_warn_refutable(Pat *p, const char *what)
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

void tc_check_match_cases(Expr *e)
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

