/* lower.c — the typed AST to Core IR (A-normal form), monomorphising.
 *
 * Monomorphisation by specialisation on demand: starting from `main` of the
 * root module and its exports, each (def, ground instance) reached is
 * lowered once. An instance is the vector of ground types the def's scheme
 * variables (TY_QVAR i) were instantiated with at the use (Expr.var.inst);
 * inside the body, QVAR i is the TY_VAR Binding.generic[i], so lowering the
 * instance substitutes generic[i] := inst[i] through every Expr.type.
 * Variables still unconstrained after substitution default to unit.
 * Local polymorphic `let`s are re-lowered at each use, at the use's types
 * (their values are syntactic values); `let rec` functions are
 * lambda-lifted (Johnsson 1985) to CFuns taking their free variables first,
 * one CFun per instance.
 *
 * Application: a function position is lowered to a known function (Fn) when
 * it can be -- a def, a built-in, a constructor, an operator section, a
 * syntactic lambda, a composition -- so that a full application becomes a
 * CE_CALL, a prim, a SOAC or a DERIV with an inline lambda, and a lambda
 * applied on the spot is beta-reduced. Only unknown function values go
 * through closures (CE_LAMBDA / CE_APPLY, one argument at a time). */
#include "lower.h"

#include <stdlib.h>
#include <string.h>

/* A def instance. */
typedef struct Inst {
    Decl *decl;
    Binding *b;
    Type **targs; /* ground types of the scheme's variables */
    int ntargs;
    Type *type;   /* ground type of the def at this instance */
    CFun *fun;
    Module *module;
} Inst;

/* A lambda-lifted `let rec`, with its instances. */
typedef struct RecFun {
    Expr *e;          /* the EX_LETREC */
    Binding **fv;     /* free variables passed first (bound to variables) */
    int nfv;
    Vec insts;        /* Inst* (decl NULL) */
} RecFun;

typedef enum { EV_ATOM, EV_POLY, EV_REC } EnvKind;

typedef struct EnvEntry {
    Binding *b;
    EnvKind kind;
    CAtom *atom;       /* EV_ATOM */
    Fn *known;         /* EV_ATOM: the value is this partial application */
    Expr *value;       /* EV_POLY: the let's value */
    Pat *pat;          /* EV_POLY: the let's pattern */
    RecFun *rec;       /* EV_REC */
    struct EnvEntry *prev; /* the entry it shadows (same binding lowered again) */
} EnvEntry;

typedef struct SubEntry {
    Type *var;
    Type *prev;
} SubEntry;

static Val lower_val(Lower *L, Expr *e, CBlock *b);

/* ---------------------------------------------------------------- types */

static void sub_push(Lower *L, Type *var, Type *to)
{
    var = type_resolve(var);
    if (var->kind != TY_VAR && var->kind != TY_QVAR)
        return;
    SubEntry *s = NEW(SubEntry);
    s->var = var;
    s->prev = core_map_get(&L->sub, var);
    core_map_put(&L->sub, var, to);
    vec_push(&L->sub_stack, s);
}

static int sub_mark(Lower *L) { return L->sub_stack.len; }

static void sub_pop(Lower *L, int mark)
{
    while (L->sub_stack.len > mark) {
        SubEntry *s = vec_pop(&L->sub_stack);
        core_map_put(&L->sub, s->var, s->prev);
    }
}

static void snap_push(Lower *L, Snap *s)
{
    for (int i = 0; s && i < s->n; i++)
        sub_push(L, s->from[i], s->to[i]);
}

Type *lower_ground(Lower *L, Type *t)
{
    t = type_resolve(t);
    if (!t)
        return type_unit();
    switch (t->kind) {
    case TY_VAR:
    case TY_QVAR: {
        Type *g = core_map_get(&L->sub, t);
        return g ? g : type_unit();
    }
    case TY_ERROR:
        return type_unit();
    case TY_TANGENT:
        return type_resolve(type_tangent(lower_ground(L, t->args[0])));
    case TY_ARRAY: {
        Type *e = lower_ground(L, t->elem);
        return e == t->elem ? t : type_resolve(type_array(e, t->rank));
    }
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED: {
        Type **as = NULL;
        for (int i = 0; i < t->nargs; i++) {
            Type *a = lower_ground(L, t->args[i]);
            if (a != t->args[i] && !as) {
                as = NEWN(Type *, t->nargs);
                for (int k = 0; k < i; k++)
                    as[k] = t->args[k];
            }
            if (as)
                as[i] = a;
        }
        if (!as)
            return t;
        if (t->kind == TY_TUPLE)
            return type_tuple(as, t->nargs);
        if (t->kind == TY_FUNC)
            return type_func(as[0], as[1]);
        return type_named(t->decl, as, t->nargs);
    }
    default:
        return t;
    }
}

/* ---------------------------------------------------------------- names */

const char *lower_unique_name(Lower *L, const char *base)
{
    const char *n = intern(base);
    for (int k = 1; core_map_get(&L->names, n); k++)
        n = intern(arena_printf(dcc_arena, "%s_%d", base, k));
    core_map_put(&L->names, n, (void *)1);
    return n;
}

/* A C-friendly base name: primes become _p, other odd characters _. */
const char *lower_fun_base(const char *name)
{
    bool plain = true;
    for (const char *s = name; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            plain = false;
    if (plain)
        return name;
    StrBuf sb = {0};
    for (const char *s = name; *s; s++) {
        if (*s == '\'')
            sb_puts(&sb, "_p");
        else if (*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                 (*s >= '0' && *s <= '9'))
            sb_putc(&sb, *s);
        else if (sb.len && sb.data[sb.len - 1] != '_')
            sb_putc(&sb, '_');
    }
    char *r = arena_strdup(dcc_arena, sb.data ? sb.data : "f");
    sb_free(&sb);
    return r;
}

/* ---------------------------------------------------------------- env */

static EnvEntry *env_push(Lower *L, Binding *bnd)
{
    EnvEntry *en = NEW(EnvEntry);
    en->b = bnd;
    en->prev = core_map_get(&L->env, bnd);
    core_map_put(&L->env, bnd, en);
    vec_push(&L->env_stack, en);
    return en;
}

void lower_env_bind(Lower *L, Binding *bnd, CAtom *a)
{
    if (!bnd)
        return;
    EnvEntry *en = env_push(L, bnd);
    en->kind = EV_ATOM;
    en->atom = a;
}

int lower_env_mark(Lower *L) { return L->env_stack.len; }

void lower_env_pop(Lower *L, int mark)
{
    while (L->env_stack.len > mark) {
        EnvEntry *en = vec_pop(&L->env_stack);
        core_map_put(&L->env, en->b, en->prev);
    }
}

static EnvEntry *env_get(Lower *L, Binding *bnd) { return core_map_get(&L->env, bnd); }

/* ---------------------------------------------------------------- emitting */

static CAtom *emit_apply(CBlock *b, CAtom *clo, CAtom *arg, Loc loc)
{
    CExpr *e = core_expr(CE_APPLY, fn_res(core_atom_type(clo), 1), loc);
    e->nargs = 2;
    e->args = NEWN(CAtom *, 2);
    e->args[0] = clo;
    e->args[1] = arg;
    return bind_expr(b, "r", e);
}

/* ---------------------------------------------------------------- instances */

static bool types_equal_n(Type **a, Type **b, int n)
{
    for (int i = 0; i < n; i++)
        if (!core_type_equal(a[i], b[i]))
            return false;
    return true;
}

/* The instance of def d (binding bnd) at ground scheme arguments targs. */
static Inst *def_instance_named(Lower *L, Decl *d, Binding *bnd, Type **targs, int n,
                                const char *want)
{
    Vec *v = core_map_get(&L->insts, d);
    if (!v) {
        v = NEW(Vec);
        core_map_put(&L->insts, d, v);
    }
    for (int i = 0; i < v->len; i++) {
        Inst *I = v->data[i];
        if (I->ntargs == n && types_equal_n(I->targs, targs, n))
            return I;
    }
    Inst *I = NEW(Inst);
    I->decl = d;
    I->b = bnd;
    I->targs = targs;
    I->ntargs = n;
    Type *st = n ? type_subst(bnd->type, targs, n) : bnd->type;
    I->type = lower_ground(L, st);
    I->module = bnd->module;
    I->fun = core_fun_new(lower_unique_name(L, want ? want : lower_fun_base(d->name)), d->name, d->loc);
    I->fun->decl = d;
    I->fun->nparams = d->nparams;
    I->fun->ret = fn_res(I->type, d->nparams);
    core_program_add(L->prog, I->fun);
    vec_push(v, I);
    vec_push(&L->pending, I);
    return I;
}

static Inst *def_instance(Lower *L, Decl *d, Binding *bnd, Type **targs, int n)
{
    return def_instance_named(L, d, bnd, targs, n, NULL);
}

typedef struct BodyCtx {
    Expr *body;
} BodyCtx;

static CAtom *cont_body(Lower *L, CBlock *b, void *ctx)
{
    return lower_expr(L, ((BodyCtx *)ctx)->body, b);
}

static const char *pat_name(Pat *p, const char *dflt)
{
    while (p && p->kind == PAT_ANNOT)
        p = p->arg;
    return p && p->kind == PAT_VAR ? p->name : dflt;
}

/* Fills f's parameters (of types peeled from ft) and lowers `body` with
 * the parameter patterns bound; the first nfree parameters are given. */
static void lower_fun_body(Lower *L, CFun *f, Type *ft, CVar **free, int nfree, Pat **params,
                           int nparams, Expr *body)
{
    f->nparams = nfree + nparams;
    f->params = NEWN(CVar *, f->nparams > 0 ? f->nparams : 1);
    CAtom **vals = NEWN(CAtom *, nparams > 0 ? nparams : 1);
    for (int i = 0; i < nfree; i++)
        f->params[i] = free[i];
    Type *t = ft;
    for (int i = 0; i < nparams; i++) {
        CVar *v = core_var(pat_name(params[i], "p"), fn_arg(t), params[i]->loc);
        f->params[nfree + i] = v;
        vals[i] = core_atom_var(v);
        t = fn_res(t, 1);
    }
    f->ret = t;
    f->body = core_block_new();
    BodyCtx bc = {body};
    int mark = lower_env_mark(L);
    f->body->result = match_bind(L, params, vals, nparams, f->ret, body->loc, f->body, cont_body, &bc);
    lower_env_pop(L, mark);
}

/* A custom derivative rule `with jvp p => e` of instance I, as a CFun. */
static CFun *lower_rule(Lower *L, Inst *I, DerivRule *r)
{
    const char *kind = r->kind == RULE_JVP ? "jvp" : "vjp";
    CFun *f = core_fun_new(lower_unique_name(L, arena_printf(dcc_arena, "%s_%s", I->fun->name, kind)),
                           I->decl->name, r->loc);
    f->rule_of = I->fun;
    f->is_helper = true;
    /* the rule's type: its parameters' types to its body's */
    Type *t = lower_ground(L, r->body->type);
    for (int i = r->nparams - 1; i >= 0; i--)
        t = type_func(lower_ground(L, r->params[i]->type), t);
    core_program_add(L->prog, f);
    lower_fun_body(L, f, t, NULL, 0, r->params, r->nparams, r->body);
    return f;
}

static void lower_instance(Lower *L, Inst *I)
{
    Decl *d = I->decl;
    Binding *bnd = I->b;
    int smark = sub_mark(L);
    for (int i = 0; i < I->ntargs && bnd->generic; i++)
        sub_push(L, bnd->generic[i], I->targs[i]);
    lower_fun_body(L, I->fun, I->type, NULL, 0, d->params, d->nparams, d->body);
    for (int i = 0; i < d->nrules; i++) {
        CFun *rf = lower_rule(L, I, d->rules[i]);
        if (d->rules[i]->kind == RULE_JVP)
            I->fun->jvp_rule = rf;
        else
            I->fun->vjp_rule = rf;
    }
    sub_pop(L, smark);
}

/* ---------------------------------------------------------------- let rec */

static void collect_fv(Lower *L, RecFun *r, Vec *out, Expr *e);

static void add_fv(Lower *L, RecFun *r, Vec *out, Binding *bnd)
{
    EnvEntry *en = env_get(L, bnd);
    if (!en)
        return;
    switch (en->kind) {
    case EV_ATOM:
        if (en->atom->kind != CA_VAR)
            return;
        for (int i = 0; i < out->len; i++)
            if (out->data[i] == bnd)
                return;
        vec_push(out, bnd);
        break;
    case EV_POLY:
        if (core_map_get(&L->visiting, en))
            return;
        core_map_put(&L->visiting, en, (void *)1);
        collect_fv(L, r, out, en->value);
        break;
    case EV_REC:
        if (en->rec == r)
            return;
        for (int i = 0; i < en->rec->nfv; i++)
            add_fv(L, r, out, en->rec->fv[i]);
        break;
    }
}

/* The variables of the enclosing scopes that e uses (transitively through
 * polymorphic lets and other lifted functions). */
static void collect_fv(Lower *L, RecFun *r, Vec *out, Expr *e)
{
    if (!e)
        return;
    switch (e->kind) {
    case EX_VAR:
        if (e->u.var.binding && !e->u.var.binding->def && !e->u.var.binding->builtin)
            add_fv(L, r, out, e->u.var.binding);
        break;
    case EX_TUPLE: case EX_ARRAY:
        for (int i = 0; i < e->u.list.n; i++)
            collect_fv(L, r, out, e->u.list.items[i]);
        break;
    case EX_RECORD: case EX_UPDATE:
        collect_fv(L, r, out, e->u.rec.base);
        for (int i = 0; i < e->u.rec.n; i++)
            collect_fv(L, r, out, e->u.rec.values[i]);
        break;
    case EX_FIELD: case EX_PROJ:
        collect_fv(L, r, out, e->u.field.e);
        break;
    case EX_INDEX:
        collect_fv(L, r, out, e->u.index.e);
        for (int i = 0; i < e->u.index.n; i++) {
            collect_fv(L, r, out, e->u.index.args[i].lo);
            collect_fv(L, r, out, e->u.index.args[i].hi);
        }
        break;
    case EX_APP:
        collect_fv(L, r, out, e->u.app.fn);
        collect_fv(L, r, out, e->u.app.arg);
        break;
    case EX_BINOP: case EX_UNOP:
        collect_fv(L, r, out, e->u.op.l);
        collect_fv(L, r, out, e->u.op.r);
        break;
    case EX_LAMBDA:
        collect_fv(L, r, out, e->u.lam.body);
        break;
    case EX_LET:
        collect_fv(L, r, out, e->u.let.value);
        collect_fv(L, r, out, e->u.let.body);
        break;
    case EX_LETREC:
        collect_fv(L, r, out, e->u.letrec.value);
        collect_fv(L, r, out, e->u.letrec.body);
        break;
    case EX_IF:
        collect_fv(L, r, out, e->u.if_.cond);
        collect_fv(L, r, out, e->u.if_.then_);
        collect_fv(L, r, out, e->u.if_.else_);
        break;
    case EX_MATCH:
        collect_fv(L, r, out, e->u.match.e);
        for (int i = 0; i < e->u.match.n; i++)
            collect_fv(L, r, out, e->u.match.cases[i].body);
        break;
    case EX_LOOP:
        collect_fv(L, r, out, e->u.loop.init);
        collect_fv(L, r, out, e->u.loop.bound);
        collect_fv(L, r, out, e->u.loop.cond);
        collect_fv(L, r, out, e->u.loop.body);
        break;
    case EX_ANNOT:
        collect_fv(L, r, out, e->u.annot.e);
        break;
    default:
        break;
    }
}

static Inst *rec_instance(Lower *L, RecFun *r, Type **targs, int n)
{
    for (int i = 0; i < r->insts.len; i++) {
        Inst *I = r->insts.data[i];
        if (I->ntargs == n && types_equal_n(I->targs, targs, n))
            return I;
    }
    Expr *e = r->e;
    Binding *bnd = e->u.letrec.binding;
    Inst *I = NEW(Inst);
    I->b = bnd;
    I->targs = targs;
    I->ntargs = n;
    int smark = sub_mark(L);
    for (int i = 0; i < n && bnd->generic; i++)
        sub_push(L, bnd->generic[i], targs[i]);
    I->type = lower_ground(L, n ? type_subst(bnd->type, targs, n) : bnd->type);
    CFun *f = core_fun_new(lower_unique_name(L, lower_fun_base(e->u.letrec.name)), e->u.letrec.name, e->loc);
    f->is_lifted = true;
    I->fun = f;
    f->nparams = r->nfv + e->u.letrec.nparams;
    f->ret = fn_res(I->type, e->u.letrec.nparams);
    core_program_add(L->prog, f);
    vec_push(&r->insts, I);
    /* the body, with the free variables bound to the leading parameters */
    int mark = lower_env_mark(L);
    CVar **free = NEWN(CVar *, r->nfv > 0 ? r->nfv : 1);
    for (int i = 0; i < r->nfv; i++) {
        EnvEntry *en = env_get(L, r->fv[i]);
        CAtom *a = en->atom;
        free[i] = core_var(a->u.var->name, core_atom_type(a), a->u.var->loc);
    }
    for (int i = 0; i < r->nfv; i++) {
        EnvEntry *old = env_get(L, r->fv[i]);
        EnvEntry *en = env_push(L, r->fv[i]);
        en->kind = EV_ATOM;
        en->atom = core_atom_var(free[i]);
        en->known = NULL;
        (void)old;
    }
    lower_fun_body(L, f, I->type, free, r->nfv, e->u.letrec.params, e->u.letrec.nparams,
                   e->u.letrec.value);
    lower_env_pop(L, mark);
    sub_pop(L, smark);
    return I;
}

/* ---------------------------------------------------------------- Fn */

static Fn *fn_copy(Fn *f)
{
    Fn *n = NEW(Fn);
    *n = *f;
    return n;
}

static Snap *snap_join(Snap *a, Snap *b)
{
    if (!a)
        return b;
    Snap *s = NEW(Snap);
    s->n = a->n + b->n;
    s->from = NEWN(Type *, s->n > 0 ? s->n : 1);
    s->to = NEWN(Type *, s->n > 0 ? s->n : 1);
    for (int i = 0; i < b->n; i++) {
        s->from[i] = b->from[i];
        s->to[i] = b->to[i];
    }
    for (int i = 0; i < a->n; i++) {
        s->from[b->n + i] = a->from[i];
        s->to[b->n + i] = a->to[i];
    }
    return s;
}

static void fn_attach_snap(Fn *f, Snap *s)
{
    if (!f)
        return;
    if (f->kind == FN_LAMBDA)
        f->snap = snap_join(f->snap, s);
    for (int i = 0; i < f->npre; i++)
        fn_attach_snap(f->pre[i].fn, s);
    fn_attach_snap(f->f.fn, s);
    fn_attach_snap(f->g.fn, s);
}

/* Number of curried arguments in a built-in's scheme: arrows at the top. */
static int builtin_arity(Builtin id)
{
    const BuiltinInfo *bi = builtin_info(id);
    int depth = 0, n = 0;
    for (const char *s = bi->scheme; *s; s++) {
        if (*s == '(')
            depth++;
        else if (*s == ')')
            depth--;
        else if (s[0] == '-' && s[1] == '>' && depth == 0)
            n++;
    }
    return n;
}

/* Built-ins whose first argument is a function (kept known: it becomes the
 * inline lambda of a SOAC or DERIV). */
static bool builtin_takes_fn(Builtin id)
{
    switch (id) {
    case B_MAP: case B_MAP2: case B_MAP3: case B_REDUCE: case B_FOLD: case B_SCAN:
    case B_FILTER:
        return true;
    default:
        return builtin_info(id)->deriv != DERIV_NONE && id != B_STOP_GRADIENT;
    }
}

/* Matches a scheme's type (over TY_QVARs) against a ground type, filling
 * out[i] for QVAR i. */
static void match_qvars(Type *s, Type *g, Type **out, int n)
{
    s = type_resolve(s);
    g = type_resolve(g);
    if (!s || !g)
        return;
    switch (s->kind) {
    case TY_QVAR:
        if (s->id >= 0 && s->id < n && !out[s->id])
            out[s->id] = g;
        break;
    case TY_ARRAY:
        if (g->kind != TY_ARRAY)
            break;
        if (g->rank > s->rank) /* []'a against [][]float: 'a := []float */
            match_qvars(s->elem, type_array(g->elem, g->rank - s->rank), out, n);
        else
            match_qvars(s->elem, g->elem, out, n);
        break;
    case TY_TUPLE: case TY_FUNC: case TY_NAMED:
        if (g->kind != s->kind || g->nargs != s->nargs)
            break;
        for (int i = 0; i < s->nargs; i++)
            match_qvars(s->args[i], g->args[i], out, n);
        break;
    default:
        break;
    }
}

/* The ground scheme arguments of a use of a polymorphic binding: the
 * instantiation the checker recorded, or (a recursive use inside the
 * binding's own group, typed before generalisation) by matching the
 * scheme against the use's type. */
static Type **use_targs(Lower *L, Expr *e, Binding *bnd, int *n)
{
    *n = bnd->nqvars;
    Type **t = NEWN(Type *, *n > 0 ? *n : 1);
    if (*n && e->u.var.inst && e->u.var.ninst == *n) {
        for (int i = 0; i < *n; i++)
            t[i] = lower_ground(L, e->u.var.inst[i]);
        return t;
    }
    match_qvars(bnd->type, lower_ground(L, e->type), t, *n);
    for (int i = 0; i < *n; i++)
        if (!t[i])
            t[i] = type_unit();
    return t;
}

/* A def used at a ground instance: known function, or (no parameters) the
 * value, computed by a call. */
static Val def_val(Lower *L, Decl *d, Binding *bnd, Type **targs, int n, CBlock *b, Loc loc)
{
    Inst *I = def_instance(L, d, bnd, targs, n);
    if (d->nparams == 0)
        return val_atom(bind_expr(b, lower_fun_base(d->name), mk_call(I->fun, I->type, loc, NULL, 0)));
    Fn *f = fn_new(FN_DEF, I->type, d->nparams, loc);
    f->fun = I->fun;
    return val_fn(f);
}

/* The continuation that picks one variable out of a pattern just bound. */
static CAtom *cont_pick(Lower *L, CBlock *b, void *ctx)
{
    EnvEntry *en = env_get(L, (Binding *)ctx);
    return en && en->kind == EV_ATOM ? en->atom : core_atom_unit();
}

/* Lowers a use of a polymorphic let-bound variable: the value again, at
 * this use's types (a syntactic value, so nothing is evaluated twice). */
static Val poly_use(Lower *L, EnvEntry *en, Expr *use, CBlock *b)
{
    Binding *bnd = en->b;
    int n;
    Type **targs = use_targs(L, use, bnd, &n);
    Snap *s = NEW(Snap);
    s->n = bnd->generic ? n : 0;
    s->from = bnd->generic;
    s->to = targs;
    int smark = sub_mark(L);
    snap_push(L, s);
    Val v;
    Pat *p = en->pat;
    while (p && p->kind == PAT_ANNOT)
        p = p->arg;
    if (p && p->kind == PAT_VAR) {
        v = lower_val(L, en->value, b);
        fn_attach_snap(v.fn, s);
    } else {
        CAtom *val = lower_expr(L, en->value, b);
        v = val_atom(match_bind(L, &en->pat, &val, 1, lower_ground(L, use->type), use->loc, b,
                                cont_pick, bnd));
    }
    sub_pop(L, smark);
    return v;
}

/* ---------------------------------------------------------------- closures */

/* A closure for the known function f: lambda(x1) => ... lambda(xr) =>
 * f x1 .. xr, emitted in b. */
static CAtom *closure_chain(Lower *L, Fn *f, Val *got, int k, Type *ft, CBlock *b, Loc loc)
{
    CVar *x = core_var("x", fn_arg(ft), loc);
    got[k] = val_atom(core_atom_var(x));
    CBlock *body = core_block_new();
    if (k + 1 == f->arity)
        body->result = lower_to_atom(L, lower_apply(L, f, got, f->arity, body, loc), body, loc);
    else
        body->result = closure_chain(L, f, got, k + 1, fn_res(ft, 1), body, loc);
    CExpr *e = core_expr(CE_LAMBDA, type_resolve(ft), loc);
    e->u.lambda = core_lambda(&x, 1, body, type_resolve(ft), loc);
    return bind_expr(b, "clo", e);
}

CAtom *lower_to_atom(Lower *L, Val v, CBlock *b, Loc loc)
{
    if (v.atom)
        return v.atom;
    Fn *f = v.fn;
    if (f->kind == FN_CLOSURE && f->npre == 0)
        return f->clo;
    if (f->arity <= 0)
        return lower_to_atom(L, lower_apply(L, f, NULL, 0, b, loc), b, loc);
    Val *got = NEWN(Val, f->arity);
    return closure_chain(L, f, got, 0, f->type, b, loc);
}

/* ---------------------------------------------------------------- apply */

static Val *vals_concat(Val *a, int na, Val *b, int nb)
{
    Val *r = NEWN(Val, na + nb > 0 ? na + nb : 1);
    for (int i = 0; i < na; i++)
        r[i] = a[i];
    for (int i = 0; i < nb; i++)
        r[na + i] = b[i];
    return r;
}

/* Applies the known function f to n arguments, emitting into b. */
Val lower_apply(Lower *L, Fn *f, Val *args, int n, CBlock *b, Loc loc)
{
    if (f->kind == FN_CLOSURE) {
        CAtom *c = f->clo;
        for (int i = 0; i < n; i++)
            c = emit_apply(b, c, lower_to_atom(L, args[i], b, loc), loc);
        return val_atom(c);
    }
    if (f->kind == FN_COMPOSE) {
        if (n == 0)
            return val_fn(f);
        Val mid = lower_apply(L, f->f.fn ? f->f.fn : &(Fn){.kind = FN_CLOSURE, .clo = f->f.atom, .arity = 1},
                              args, 1, b, loc);
        Fn cg = {.kind = FN_CLOSURE, .clo = f->g.atom, .arity = 1};
        Val r = lower_apply(L, f->g.fn ? f->g.fn : &cg, &mid, 1, b, loc);
        if (n == 1)
            return r;
        Fn *rf = r.fn;
        if (!rf) {
            rf = fn_new(FN_CLOSURE, core_atom_type(r.atom), 1, loc);
            rf->clo = r.atom;
        }
        return lower_apply(L, rf, args + 1, n - 1, b, loc);
    }
    if (n < f->arity) {
        Fn *p = fn_copy(f);
        p->pre = vals_concat(f->pre, f->npre, args, n);
        p->npre = f->npre + n;
        p->arity = f->arity - n;
        p->type = fn_res(f->type, n);
        return val_fn(p);
    }
    int take = f->arity;
    Val *all = vals_concat(f->pre, f->npre, args, take);
    int nall = f->npre + take;
    Type *rt = fn_res(f->type, take);
    Val r;
    switch (f->kind) {
    case FN_DEF: {
        CAtom **as = NEWN(CAtom *, nall > 0 ? nall : 1);
        for (int i = 0; i < nall; i++)
            as[i] = lower_to_atom(L, all[i], b, loc);
        r = val_atom(bind_expr(b, lower_fun_base(f->fun->src_name), mk_call(f->fun, rt, loc, as, nall)));
        break;
    }
    case FN_BUILTIN:
        r = lower_builtin(L, f->bi, all, nall, rt, b, loc);
        break;
    case FN_CON: {
        CAtom *p = lower_to_atom(L, all[0], b, loc);
        r = val_atom(core_emit_prim(b, "con", P_CON, rt, loc, &p, 1, f->con));
        break;
    }
    case FN_OPFN: {
        CAtom *x = lower_to_atom(L, all[0], b, loc);
        if (f->op == OP_NEG)
            r = val_atom(lower_negate(L, x, b, loc));
        else if (f->op == OP_NOT)
            r = val_atom(core_emit_prim(b, "not", P_NOT, rt, loc, &x, 1, 0));
        else
            r = val_atom(lower_binop(L, f->op, x, lower_to_atom(L, all[1], b, loc), rt, b, loc));
        break;
    }
    case FN_LAMBDA: {
        CAtom **as = NEWN(CAtom *, nall > 0 ? nall : 1);
        for (int i = 0; i < nall; i++)
            as[i] = lower_to_atom(L, all[i], b, loc);
        int smark = sub_mark(L);
        snap_push(L, f->snap);
        BodyCtx bc = {f->lbody};
        r = val_atom(match_bind(L, f->lparams, as, f->nlparams, lower_ground(L, f->lbody->type),
                                f->loc, b, cont_body, &bc));
        sub_pop(L, smark);
        break;
    }
    default:
        r = val_atom(emit_error(b, rt, loc, "internal: bad function"));
    }
    if (n == take)
        return r;
    Fn *rf = r.fn;
    if (!rf) {
        rf = fn_new(FN_CLOSURE, core_atom_type(r.atom), 1, loc);
        rf->clo = r.atom;
    }
    return lower_apply(L, rf, args + take, n - take, b, loc);
}

/* ---------------------------------------------------------------- expressions */

static Expr *strip_annot(Expr *e)
{
    while (e && e->kind == EX_ANNOT)
        e = e->u.annot.e;
    return e;
}

/* Lowers an expression to a value, keeping functions known when they are. */
static Val lower_val(Lower *L, Expr *e, CBlock *b)
{
    e = strip_annot(e);
    switch (e->kind) {
    case EX_VAR: {
        Binding *bnd = e->u.var.binding;
        Type *t = lower_ground(L, e->type);
        if (!bnd)
            return val_atom(emit_error(b, t, e->loc, "internal: unresolved variable"));
        if (bnd->builtin) {
            Fn *f = fn_new(FN_BUILTIN, t, builtin_arity((Builtin)bnd->builtin), e->loc);
            f->bi = (Builtin)bnd->builtin;
            return val_fn(f);
        }
        EnvEntry *en = env_get(L, bnd);
        if (en) {
            switch (en->kind) {
            case EV_ATOM:
                return en->known ? val_fn(en->known) : val_atom(en->atom);
            case EV_POLY:
                return poly_use(L, en, e, b);
            case EV_REC: {
                int n;
                Type **targs = use_targs(L, e, bnd, &n);
                Inst *I = rec_instance(L, en->rec, targs, n);
                Fn *f = fn_new(FN_DEF, I->type, en->rec->e->u.letrec.nparams, e->loc);
                f->fun = I->fun;
                f->npre = en->rec->nfv;
                f->pre = NEWN(Val, f->npre > 0 ? f->npre : 1);
                for (int i = 0; i < f->npre; i++)
                    f->pre[i] = val_atom(env_get(L, en->rec->fv[i])->atom);
                return val_fn(f);
            }
            }
        }
        if (bnd->def) {
            int n;
            Type **targs = use_targs(L, e, bnd, &n);
            return def_val(L, bnd->def, bnd, targs, n, b, e->loc);
        }
        return val_atom(emit_error(b, t, e->loc, "internal: variable not in scope"));
    }
    case EX_CON: {
        Type *t = lower_ground(L, e->type);
        if (type_resolve(t)->kind == TY_FUNC) {
            Fn *f = fn_new(FN_CON, t, 1, e->loc);
            f->con = e->u.con.index;
            return val_fn(f);
        }
        return val_atom(core_emit_prim(b, e->u.con.name, P_CON, t, e->loc, NULL, 0, e->u.con.index));
    }
    case EX_OPFN: {
        Fn *f = fn_new(FN_OPFN, lower_ground(L, e->type), 2, e->loc);
        f->op = e->u.opfn;
        if (f->op == OP_NEG || f->op == OP_NOT)
            f->arity = 1;
        return val_fn(f);
    }
    case EX_LAMBDA: {
        /* fn x => fn y => e takes both: making the inner closure has no
         * effect, so it may wait for the second argument */
        Vec ps = {0};
        Expr *body = e;
        while (body->kind == EX_LAMBDA) {
            for (int i = 0; i < body->u.lam.nparams; i++)
                vec_push(&ps, body->u.lam.params[i]);
            body = strip_annot(body->u.lam.body);
        }
        Fn *f = fn_new(FN_LAMBDA, lower_ground(L, e->type), ps.len, e->loc);
        f->nlparams = ps.len;
        f->lparams = (Pat **)vec_freeze(&ps);
        vec_free(&ps);
        f->lbody = body;
        return val_fn(f);
    }
    case EX_APP: {
        Expr *spine[64];
        int n = 0;
        Expr *h = e;
        Vec extra = {0};
        while (h->kind == EX_APP) {
            vec_push(&extra, h->u.app.arg);
            h = strip_annot(h->u.app.fn);
        }
        n = extra.len;
        Expr **argx = n <= 64 ? spine : NEWN(Expr *, n);
        for (int i = 0; i < n; i++)
            argx[i] = extra.data[n - 1 - i];
        vec_free(&extra);
        if (h->kind == EX_CON && n >= 1) {
            /* constructor application: P_CON directly */
            CAtom *p = lower_expr(L, argx[0], b);
            Type *ct = lower_ground(L, h->type);
            CAtom *v = core_emit_prim(b, h->u.con.name, P_CON, fn_res(ct, 1), e->loc, &p, 1,
                                      h->u.con.index);
            if (n == 1)
                return val_atom(v);
            Fn *cf = fn_new(FN_CLOSURE, core_atom_type(v), 1, e->loc);
            cf->clo = v;
            Val *rest = NEWN(Val, n - 1);
            for (int i = 1; i < n; i++)
                rest[i - 1] = val_atom(lower_expr(L, argx[i], b));
            return lower_apply(L, cf, rest, n - 1, b, e->loc);
        }
        Val hv = lower_val(L, h, b);
        Fn *f = hv.fn;
        if (!f) {
            f = fn_new(FN_CLOSURE, core_atom_type(hv.atom), 1, e->loc);
            f->clo = hv.atom;
        }
        Val *args = NEWN(Val, n);
        for (int i = 0; i < n; i++) {
            bool keep_fn = f->kind == FN_BUILTIN && f->npre + i == 0 && builtin_takes_fn(f->bi);
            args[i] = keep_fn ? lower_val(L, argx[i], b) : val_atom(lower_expr(L, argx[i], b));
        }
        return lower_apply(L, f, args, n, b, e->loc);
    }
    case EX_BINOP:
        switch (e->u.op.op) {
        case OP_PIPE: {
            CAtom *x = lower_expr(L, e->u.op.l, b);
            Val fv = lower_val(L, e->u.op.r, b);
            Fn *f = fv.fn;
            if (!f) {
                f = fn_new(FN_CLOSURE, core_atom_type(fv.atom), 1, e->loc);
                f->clo = fv.atom;
            }
            Val a = val_atom(x);
            return lower_apply(L, f, &a, 1, b, e->loc);
        }
        case OP_COMPOSE:
        case OP_PAR:
            if (e->u.op.binding) {
                /* learners: a call of the resolved DL function */
                Binding *lb = e->u.op.binding;
                Val args[2];
                args[0] = val_atom(lower_expr(L, e->u.op.l, b));
                args[1] = val_atom(lower_expr(L, e->u.op.r, b));
                int n = lb->nqvars;
                Type **targs = NEWN(Type *, n > 0 ? n : 1);
                for (int i = 0; i < n; i++)
                    targs[i] = i < e->u.op.ninst ? lower_ground(L, e->u.op.inst[i]) : type_unit();
                if (!lb->def)
                    return val_atom(emit_error(b, lower_ground(L, e->type), e->loc,
                                               "internal: composition without a definition"));
                Val fv = def_val(L, lb->def, lb, targs, n, b, e->loc);
                if (!fv.fn) {
                    Fn *cf = fn_new(FN_CLOSURE, core_atom_type(fv.atom), 1, e->loc);
                    cf->clo = fv.atom;
                    fv = val_fn(cf);
                }
                return lower_apply(L, fv.fn, args, 2, b, e->loc);
            } else {
                Fn *f = fn_new(FN_COMPOSE, lower_ground(L, e->type), 1, e->loc);
                f->f = lower_val(L, e->u.op.l, b);
                f->g = lower_val(L, e->u.op.r, b);
                return val_fn(f);
            }
        default:
            break;
        }
        break;
    default:
        break;
    }
    return val_atom(lower_expr(L, e, b));
}

static CAtom *lower_let(Lower *L, Expr *e, CBlock *b)
{
    Pat *p = e->u.let.pat;
    Pat *ps = p;
    while (ps && ps->kind == PAT_ANNOT)
        ps = ps->arg;
    /* a polymorphic variable: lowered again at each use */
    if (ps && ps->kind == PAT_VAR && ps->binding && ps->binding->nqvars > 0) {
        int mark = lower_env_mark(L);
        EnvEntry *en = env_push(L, ps->binding);
        en->kind = EV_POLY;
        en->value = e->u.let.value;
        en->pat = p;
        CAtom *r = lower_expr(L, e->u.let.body, b);
        lower_env_pop(L, mark);
        return r;
    }
    Val v = lower_val(L, e->u.let.value, b);
    if (ps && ps->kind == PAT_VAR && v.fn && v.fn->kind != FN_LAMBDA) {
        /* a partial application stays known (and is also a closure, for
         * uses that need a value) */
        int mark = lower_env_mark(L);
        CAtom *a = lower_to_atom(L, v, b, e->loc);
        EnvEntry *en = env_push(L, ps->binding);
        en->kind = EV_ATOM;
        en->atom = a;
        en->known = v.fn->kind == FN_CLOSURE ? NULL : v.fn;
        CAtom *r = lower_expr(L, e->u.let.body, b);
        lower_env_pop(L, mark);
        return r;
    }
    CAtom *val = lower_to_atom(L, v, b, e->loc);
    if (ps && ps->kind == PAT_VAR && val->kind == CA_VAR && b->nbinds &&
        b->binds[b->nbinds - 1].var == val->u.var)
        val->u.var->name = ps->name; /* name the fresh temporary after the variable */
    BodyCtx bc = {e->u.let.body};
    return match_bind(L, &p, &val, 1, lower_ground(L, e->type), e->loc, b, cont_body, &bc);
}

static CAtom *lower_letrec(Lower *L, Expr *e, CBlock *b)
{
    RecFun *r = NEW(RecFun);
    r->e = e;
    Vec fv = {0};
    core_map_free(&L->visiting);
    collect_fv(L, r, &fv, e->u.letrec.value);
    r->nfv = fv.len;
    r->fv = (Binding **)vec_freeze(&fv);
    vec_free(&fv);
    int mark = lower_env_mark(L);
    EnvEntry *en = env_push(L, e->u.letrec.binding);
    en->kind = EV_REC;
    en->rec = r;
    CAtom *res = lower_expr(L, e->u.letrec.body, b);
    lower_env_pop(L, mark);
    return res;
}

typedef struct LoopCtx {
    Expr *e;
    bool cond;
} LoopCtx;

static CAtom *cont_loop(Lower *L, CBlock *b, void *ctx)
{
    LoopCtx *c = ctx;
    return lower_expr(L, c->cond ? c->e->u.loop.cond : c->e->u.loop.body, b);
}

static CAtom *lower_loop(Lower *L, Expr *e, CBlock *b)
{
    CAtom *init = lower_expr(L, e->u.loop.init, b);
    Type *st = lower_ground(L, e->type);
    CExpr *le = core_expr(CE_LOOP, st, e->loc);
    le->u.loop.kind = e->u.loop.kind;
    le->nargs = e->u.loop.kind == LOOP_FOR ? 2 : 1;
    le->args = NEWN(CAtom *, 2);
    le->args[0] = init;
    if (e->u.loop.kind == LOOP_FOR)
        le->args[1] = lower_expr(L, e->u.loop.bound, b);
    CVar *s = core_var(pat_name(e->u.loop.pat, "s"), st, e->loc);
    le->u.loop.state = s;
    CAtom *sa = core_atom_var(s);
    Pat *p = e->u.loop.pat;
    if (e->u.loop.kind == LOOP_WHILE) {
        CBlock *cb = core_block_new();
        LoopCtx c = {e, true};
        cb->result = match_bind(L, &p, &sa, 1, type_bool(), e->loc, cb, cont_loop, &c);
        le->u.loop.cond = cb;
    }
    int mark = lower_env_mark(L);
    if (e->u.loop.kind == LOOP_FOR) {
        le->u.loop.ivar = core_var(e->u.loop.ivar ? e->u.loop.ivar : "i", type_int(), e->loc);
        lower_env_bind(L, e->u.loop.ivar_binding, core_atom_var(le->u.loop.ivar));
    }
    CBlock *bb = core_block_new();
    LoopCtx c = {e, false};
    bb->result = match_bind(L, &p, &sa, 1, st, e->loc, bb, cont_loop, &c);
    le->u.loop.body = bb;
    lower_env_pop(L, mark);
    return bind_expr(b, pat_name(p, "loop"), le);
}

static CAtom *lower_index(Lower *L, Expr *e, CBlock *b)
{
    CAtom *a = lower_expr(L, e->u.index.e, b);
    int n = e->u.index.n;
    Type *t = lower_ground(L, e->type);
    bool slice = false;
    for (int i = 0; i < n; i++)
        slice |= e->u.index.args[i].is_slice;
    if (!slice) {
        CAtom **ops = NEWN(CAtom *, n + 1);
        ops[0] = a;
        for (int i = 0; i < n; i++)
            ops[i + 1] = lower_expr(L, e->u.index.args[i].lo, b);
        return core_emit_prim(b, "x", P_INDEX, t, e->loc, ops, n + 1, 0);
    }
    CAtom **ops = NEWN(CAtom *, 2 * n + 1);
    ops[0] = a;
    int64_t imm = 0;
    for (int i = 0; i < n && i < 16; i++) {
        IndexArg *ia = &e->u.index.args[i];
        if (ia->is_slice) {
            imm |= (int64_t)1 << i;
            ops[1 + 2 * i] = ia->lo ? lower_expr(L, ia->lo, b) : core_atom_int(0);
            if (ia->hi) {
                ops[2 + 2 * i] = lower_expr(L, ia->hi, b);
            } else {
                ops[2 + 2 * i] = core_atom_int(0);
                imm |= (int64_t)1 << (16 + i);
            }
        } else {
            ops[1 + 2 * i] = lower_expr(L, ia->lo, b);
            ops[2 + 2 * i] = core_atom_int(0);
        }
    }
    return core_emit_prim(b, "sl", P_SLICE, t, e->loc, ops, 2 * n + 1, imm);
}

static CAtom *lower_record(Lower *L, Expr *e, CBlock *b)
{
    Type *t = type_resolve(lower_ground(L, e->type));
    if (t->kind != TY_NAMED || t->decl->kind != TD_RECORD)
        return emit_error(b, t, e->loc, "internal: record of a non-record type");
    TypeDecl *d = t->decl;
    CAtom *base = e->kind == EX_UPDATE ? lower_expr(L, e->u.rec.base, b) : NULL;
    CAtom **vals = NEWN(CAtom *, d->nfields > 0 ? d->nfields : 1);
    for (int i = 0; i < e->u.rec.n; i++) {
        int k = core_field_index(d, e->u.rec.names[i]);
        CAtom *v = lower_expr(L, e->u.rec.values[i], b);
        if (k >= 0)
            vals[k] = v;
    }
    for (int k = 0; k < d->nfields; k++)
        if (!vals[k])
            vals[k] = base ? emit_comp(b, base, t, k, e->loc)
                           : emit_error(b, core_type_field(t, k), e->loc, "missing record field");
    return core_emit_prim(b, "rec", P_RECORD, t, e->loc, vals, d->nfields, 0);
}

CAtom *lower_expr(Lower *L, Expr *e, CBlock *b)
{
    switch (e->kind) {
    case EX_INT:
        return core_atom_int(e->u.ival);
    case EX_FLOAT: {
        Type *t = type_resolve(lower_ground(L, e->type));
        if (t->kind != TY_F32)
            t = e->u.fl.is_f32 ? type_f32() : type_float();
        return core_atom_float(e->u.fl.val, t);
    }
    case EX_BOOL:
        return core_atom_bool(e->u.ival != 0);
    case EX_UNIT:
        return core_atom_unit();
    case EX_STRING:
        return core_atom_string(e->u.sval);
    case EX_VAR: case EX_CON: case EX_OPFN: case EX_LAMBDA: case EX_APP:
        return lower_to_atom(L, lower_val(L, e, b), b, e->loc);
    case EX_TUPLE: {
        int n = e->u.list.n;
        CAtom **items = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            items[i] = lower_expr(L, e->u.list.items[i], b);
        return core_emit_prim(b, "tup", P_TUPLE, lower_ground(L, e->type), e->loc, items, n, 0);
    }
    case EX_ARRAY: {
        int n = e->u.list.n;
        CAtom **items = NEWN(CAtom *, n > 0 ? n : 1);
        for (int i = 0; i < n; i++)
            items[i] = lower_expr(L, e->u.list.items[i], b);
        return core_emit_prim(b, "arr", P_ARRAY, lower_ground(L, e->type), e->loc, items, n, 0);
    }
    case EX_RECORD: case EX_UPDATE:
        return lower_record(L, e, b);
    case EX_FIELD: {
        CAtom *r = lower_expr(L, e->u.field.e, b);
        Type *rt = type_resolve(core_atom_type(r));
        int k = rt->kind == TY_NAMED ? core_field_index(rt->decl, e->u.field.name) : -1;
        if (k < 0)
            return emit_error(b, lower_ground(L, e->type), e->loc, "internal: unknown field");
        return core_emit_prim(b, e->u.field.name, P_FIELD, lower_ground(L, e->type), e->loc, &r,
                              1, k);
    }
    case EX_PROJ: {
        CAtom *r = lower_expr(L, e->u.field.e, b);
        return core_emit_prim(b, "c", P_PROJ, lower_ground(L, e->type), e->loc, &r, 1,
                              e->u.field.index);
    }
    case EX_INDEX:
        return lower_index(L, e, b);
    case EX_BINOP: {
        OpKind op = e->u.op.op;
        if (op == OP_AND || op == OP_OR)
            return lower_short_circuit(L, e, b);
        if (op == OP_PIPE || op == OP_COMPOSE || op == OP_PAR)
            return lower_to_atom(L, lower_val(L, e, b), b, e->loc);
        CAtom *x = lower_expr(L, e->u.op.l, b);
        CAtom *y = lower_expr(L, e->u.op.r, b);
        return lower_binop(L, op, x, y, lower_ground(L, e->type), b, e->loc);
    }
    case EX_UNOP: {
        CAtom *x = lower_expr(L, e->u.op.l, b);
        if (e->u.op.op == OP_NOT)
            return core_emit_prim(b, "not", P_NOT, lower_ground(L, e->type), e->loc, &x, 1, 0);
        return lower_negate(L, x, b, e->loc);
    }
    case EX_LET:
        return lower_let(L, e, b);
    case EX_LETREC:
        return lower_letrec(L, e, b);
    case EX_IF: {
        CAtom *c = lower_expr(L, e->u.if_.cond, b);
        CBlock *th = core_block_new(), *el = core_block_new();
        th->result = lower_expr(L, e->u.if_.then_, th);
        el->result = lower_expr(L, e->u.if_.else_, el);
        return bind_expr(b, "if", mk_if(c, lower_ground(L, e->type), e->loc, th, el));
    }
    case EX_MATCH: {
        CAtom *s = lower_expr(L, e->u.match.e, b);
        return match_lower(L, e, s, b);
    }
    case EX_LOOP:
        return lower_loop(L, e, b);
    case EX_ANNOT:
        return lower_expr(L, e->u.annot.e, b);
    case EX_ERROR:
        break;
    }
    return emit_error(b, lower_ground(L, e->type), e->loc, "internal: erroneous expression");
}

/* ---------------------------------------------------------------- program */

static void drain(Lower *L)
{
    while (L->pending.len) {
        /* lower in the order requested */
        Inst *I = L->pending.data[0];
        for (int i = 1; i < L->pending.len; i++)
            L->pending.data[i - 1] = L->pending.data[i];
        L->pending.len--;
        lower_instance(L, I);
    }
}

static Decl *find_def(Module *m, const char *name)
{
    for (int i = 0; i < m->ndecls; i++)
        if (m->decls[i]->kind == DECL_DEF && m->decls[i]->name == intern(name))
            return m->decls[i];
    return NULL;
}

/* export grad f as f_grad: a C-callable function of f's parameter. */
static void lower_export_deriv(Lower *L, Module *m, Decl *d)
{
    Decl *fd = find_def(m, d->target);
    if (!fd || !fd->binding) {
        error_at(d->target_loc, "no definition '%s' to export the derivative of", d->target);
        return;
    }
    if (fd->nparams != 1) {
        error_at(d->loc, "exporting a derivative needs a function of one parameter ('%s' takes %d)",
                 d->target, fd->nparams);
        return;
    }
    Inst *I = def_instance(L, fd, fd->binding, NULL, 0);
    Type *a = fn_arg(I->type), *r = fn_res(I->type, 1);
    Type *ta = type_resolve(type_tangent(a)), *tr = type_resolve(type_tangent(r));
    Type *ps[2] = {a, NULL};
    int np = 1;
    Type *res;
    switch (d->deriv) {
    case DERIV_GRAD: res = ta; break;
    case DERIV_VALUE_AND_GRAD: res = type_tuple2(r, ta); break;
    case DERIV_JVP: ps[np++] = ta; res = type_tuple2(r, tr); break;
    case DERIV_VJP: res = type_tuple2(r, type_func(tr, ta)); break;
    case DERIV_HVP: ps[np++] = ta; res = ta; break;
    case DERIV_JACFWD: case DERIV_JACREV: res = type_array(type_float(), 2); break;
    case DERIV_HESSIAN:
        res = type_resolve(a)->kind == TY_ARRAY ? type_array(type_float(), 2) : type_float();
        break;
    default:
        error_at(d->loc, "this derivative cannot be exported");
        return;
    }
    CFun *f = core_fun_new(lower_unique_name(L, arena_printf(dcc_arena, "%s_%s",
                                                             lower_fun_base(L->root->name),
                                                             lower_fun_base(d->name))),
                           d->name, d->loc);
    f->is_export = true;
    f->nparams = np;
    f->params = NEWN(CVar *, np);
    CAtom **as = NEWN(CAtom *, np);
    for (int i = 0; i < np; i++) {
        f->params[i] = core_var(i ? "dx" : "x", ps[i], d->loc);
        as[i] = core_atom_var(f->params[i]);
    }
    f->ret = res;
    f->body = core_block_new();
    CExpr *e = core_expr(CE_DERIV, res, d->loc);
    e->u.deriv.kind = d->deriv;
    e->nargs = np;
    e->args = as;
    CVar *x = core_var("x", a, d->loc);
    CBlock *lb = core_block_new();
    CAtom *xa = core_atom_var(x);
    lb->result = bind_expr(lb, lower_fun_base(fd->name), mk_call(I->fun, r, d->loc, &xa, 1));
    e->u.deriv.fn = core_lambda(&x, 1, lb, I->type, d->loc);
    f->body->result = bind_expr(f->body, "d", e);
    core_program_add(L->prog, f);
}

CProgram *core_lower_program(Vec *modules, Module *root)
{
    Lower L = {0};
    L.prog = NEW(CProgram);
    L.root = root;
    L.prog->module = root ? root->name : "main";
    for (int i = 0; root && i < root->ndecls; i++) {
        Decl *d = root->decls[i];
        if (d->kind == DECL_DEF && d->binding && (d->is_export || d->name == intern("main"))) {
            const char *want = d->is_export ? arena_printf(dcc_arena, "%s_%s",
                                                           lower_fun_base(L.prog->module),
                                                           lower_fun_base(d->name))
                                            : "main";
            Inst *I = def_instance_named(&L, d, d->binding, NULL, 0, want);
            if (d->is_export)
                I->fun->is_export = true;
            if (d->name == intern("main") && !L.prog->main) {
                I->fun->is_main = true;
                L.prog->main = I->fun;
            }
        } else if (d->kind == DECL_EXPORT_DERIV) {
            lower_export_deriv(&L, root, d);
        }
    }
    drain(&L);
    core_map_free(&L.insts);
    core_map_free(&L.names);
    core_map_free(&L.sub);
    core_map_free(&L.env);
    core_map_free(&L.visiting);
    vec_free(&L.pending);
    vec_free(&L.sub_stack);
    vec_free(&L.env_stack);
    vec_free(&L.eq_helpers);
    (void)modules;
    return L.prog;
}

CFun *core_lower_expr(CProgram *p, Expr *e)
{
    Lower L = {0};
    L.prog = p;
    for (int i = 0; i < p->nfuns; i++)
        core_map_put(&L.names, intern(p->funs[i]->name), (void *)1);
    CFun *f = core_fun_new(lower_unique_name(&L, "expr"), "expr", e->loc);
    f->is_helper = true;
    f->is_root = true;
    f->body = core_block_new();
    f->ret = lower_ground(&L, e->type);
    f->params = NEWN(CVar *, 1);
    f->body->result = lower_expr(&L, e, f->body);
    core_program_add(p, f);
    drain(&L);
    core_map_free(&L.insts);
    core_map_free(&L.names);
    core_map_free(&L.sub);
    core_map_free(&L.env);
    core_map_free(&L.visiting);
    vec_free(&L.pending);
    vec_free(&L.sub_stack);
    vec_free(&L.env_stack);
    vec_free(&L.eq_helpers);
    return f;
}
