/* typecheck.c — type inference for DL (LANGUAGE.md §3–§6).
 *
 * Hindley–Milner with let-polymorphism (Damas & Milner 1982), generalising
 * by levels (Rémy 1992). Top-level definitions of all modules are checked by
 * strongly connected components of their reference graph (Tarjan 1972) and
 * generalised per component; fully annotated definitions get their declared
 * type up front. Overloading is by deferred constraints (constraints.c);
 * names and type syntax are resolved in typeenv.c; patterns and their
 * exhaustiveness are checked in patterns.c. This file: expressions, the
 * top-level definitions, the program, --emit=types.
 *
 * Errors poison the types involved (TY_ERROR unifies with anything), so one
 * mistake gives one message. */
#include "typecheck.h"

#include <stdlib.h>
#include <string.h>

TcState tc;

/* ======================================================================
 * expressions
 * ====================================================================== */

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

static Type *infer(Expr *e);

static Type *fresh(void) { return type_fresh_var(tc.level); }

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
            tc_report_mismatch(loc, "this function", f, type_func(arg->type, r));
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
                 tc_a_an(s), s,
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
        tc_report_mismatch(arg->loc, "this argument", arg->type, f->args[0]);
        Type *r = type_resolve(f->args[1]);
        return type_has_vars(r, true) ? type_error() : r;
    }
    return f->args[1];
}

static Type *infer_var(Expr *e)
{
    const char *n = intern(e->u.var.name);
    Binding *b = tc_lookup_local(n);
    if (!b)
        b = tc_lookup_global(tc.env, n);
    if (!b) {
        const char *sug = tc_suggestion(n, NS_VALUE);
        if (sug)
            error_at(e->loc, "unknown name '%s'; did you mean '%s'?", n, sug);
        else
            error_at(e->loc, "unknown name '%s'", n);
        return type_error();
    }
    b->used = true;
    e->u.var.binding = b;
    Type **inst;
    Type *t = tc_instantiate(b, e->loc, &inst);
    e->u.var.inst = inst;
    e->u.var.ninst = b->nqvars;
    return t;
}

static Type *infer_con(Expr *e)
{
    const char *n = intern(e->u.con.name);
    ConRef *cr = tc_lookup_con(tc.env, n);
    if (!cr) {
        const char *sug = tc_suggestion(n, NS_CON);
        if (sug)
            error_at(e->loc, "unknown constructor '%s'; did you mean '%s'?", n, sug);
        else
            error_at(e->loc, "unknown constructor '%s'", n);
        return type_error();
    }
    e->u.con.decl = cr->decl;
    e->u.con.index = cr->index;
    Type *inst = tc_fresh_instance(cr->decl, tc.level);
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
    return tc_instantiate(b, e->loc, &inst);
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
    TypeDecl *d = tc_record_for_fields(e->u.rec.names, n, e->loc);
    if (!d)
        return type_error();
    e->u.rec.decl = d;
    Type *inst = tc_fresh_instance(d, tc.level);
    bool bad = false;
    StrBuf extra = {0};
    int nextra = 0;
    for (int i = 0; i < n; i++) {
        const char *f = intern(e->u.rec.names[i]);
        int k = tc_field_index(d, f);
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
        if (!tc_expect(e->u.rec.values[i], type_field_type(inst, k), what))
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
        d = tc_record_for_fields(e->u.rec.names, n, e->loc);
        if (!d)
            return type_error();
        type_unify(bt, tc_fresh_instance(d, tc.level));
    } else {
        char *s = type_to_string(r);
        error_at(e->u.rec.base->loc, "this expression has type %s, which is not a record; it "
                 "cannot be updated with `with`", s);
        return type_error();
    }
    e->u.rec.decl = d;
    for (int i = 0; i < n; i++) {
        const char *f = intern(e->u.rec.names[i]);
        int k = tc_field_index(d, f);
        if (k < 0) {
            error_at(e->u.rec.values[i]->loc, "the record type %s has no field %s", d->name, f);
            continue;
        }
        tc_expect(e->u.rec.values[i], type_field_type(bt, k), arena_printf(dcc_arena, "the field %s", f));
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
        if (tc_lookup_fields(tc.env, name, fs, 1) == 0) {
            const char *sug = tc_suggestion(name, NS_FIELD);
            if (sug)
                error_at(e->loc, "unknown field '%s'; did you mean '%s'?", name, sug);
            else
                error_at(e->loc, "unknown field '%s': no record type declares it", name);
            return type_error();
        }
    }
    Type *res = fresh();
    Constraint *c = tc_con_new(CK_FIELD, e->loc, name, -1);
    c->t[0] = t;
    c->t[1] = res;
    c->name = name;
    c->node = e;
    if (tc_solve_one(c, false))
        c->done = true;
    return res;
}

static Type *infer_proj(Expr *e)
{
    Type *t = infer(e->u.field.e);
    Type *res = fresh();
    Constraint *c = tc_con_new(CK_PROJ, e->loc, "a tuple component", -1);
    c->t[0] = t;
    c->t[1] = res;
    c->n = e->u.field.index;
    c->node = e;
    if (tc_solve_one(c, false))
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
            tc_expect(a->lo, type_int(), "this index");
        }
        if (a->hi) {
            infer(a->hi);
            tc_expect(a->hi, type_int(), "this index");
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
        error_at(e->u.index.e->loc, "this is %s %s, not an array; it cannot be indexed", tc_a_an(s), s);
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
        tc_report_mismatch(e->u.index.e->loc, "this expression", bt, type_array(el, n));
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
        tc_expect(l, type_bool(), what);
        tc_expect(r, type_bool(), what);
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
        Constraint *c = tc_con_new(CK_CLASS, e->loc, op_spelling(op), op);
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
        Constraint *c = tc_con_new(CK_BCAST, e->loc, op_spelling(op), op);
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
        Constraint *c = tc_con_new(CK_MATMUL, e->loc, "@", op);
        c->t[0] = lt;
        c->t[1] = rt;
        c->t[2] = res;
        return res;
    }
    case OP_COMPOSE:
    case OP_PAR: {
        Type *res = fresh();
        Constraint *c = tc_con_new(CK_COMPOSE, e->loc, op_spelling(op), op);
        c->t[0] = lt;
        c->t[1] = rt;
        c->t[2] = res;
        c->node = e;
        c->impl = tc_find_learner_op(op);
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
        tc_expect(e->u.op.l, type_bool(), "the operand of !");
        return type_bool();
    }
    Constraint *c = tc_con_new(CK_CLASS, e->loc, "-", OP_NEG);
    c->t[0] = t;
    c->cls = TC_NUM;
    c->structural = true;
    return t;
}

/* fn p1 .. pn [: t] => body */
static Type *infer_lambda(Expr *e)
{
    int mark = tc.locals.len;
    int n = e->u.lam.nparams;
    Type **pts = NEWN(Type *, n ? n : 1);
    tc.pat_names.len = 0;
    for (int i = 0; i < n; i++) {
        pts[i] = fresh();
        tc_check_pat(e->u.lam.params[i], pts[i]);
    }
    for (int i = 0; i < n; i++)
        tc_warn_refutable(e->u.lam.params[i], "parameter pattern");
    Type *bt = infer(e->u.lam.body);
    if (e->u.lam.ret) {
        Type *rt = tc_conv_annot(e->u.lam.ret);
        if (tc_expect(e->u.lam.body, rt, "the body of this function"))
            bt = rt;
    }
    tc.locals.len = mark;
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
    int mark = tc.locals.len;
    if (v) {
        /* let x = e1 in e2: x is generalised (if e1 is a value) */
        tc.level++;
        Type *t = infer(e->u.let.value);
        if (annot) {
            Type *at = tc_conv_annot(annot);
            if (tc_expect(e->u.let.value, at, "this expression"))
                t = at;
        }
        tc.level--;
        Binding *b = NEW(Binding);
        b->name = intern(v->name);
        b->loc = v->loc;
        b->type = t;
        b->module = tc.env->m;
        bool ok = nonexpansive(e->u.let.value);
        tc_generalise(&b, &ok, 1, tc.level);
        v->binding = b;
        v->type = t;
        if (p != v)
            p->type = t;
        vec_push(&tc.all_pats, v);
        vec_push(&tc.locals, b);
    } else {
        Type *t = infer(e->u.let.value);
        tc.pat_names.len = 0;
        tc_check_pat(p, t);
        tc_warn_refutable(p, "pattern");
    }
    Type *r = infer(e->u.let.body);
    tc.locals.len = mark;
    return r;
}

static Type *infer_letrec(Expr *e)
{
    int mark = tc.locals.len;
    const char *name = intern(e->u.letrec.name);
    tc.level++;
    Binding *b = tc_new_local(name, e->u.letrec.name_loc.line ? e->u.letrec.name_loc : e->loc,
                           fresh());
    e->u.letrec.binding = b;
    int inner = tc.locals.len;
    int n = e->u.letrec.nparams;
    Type **pts = NEWN(Type *, n ? n : 1);
    tc.pat_names.len = 0;
    for (int i = 0; i < n; i++) {
        pts[i] = fresh();
        tc_check_pat(e->u.letrec.params[i], pts[i]);
    }
    for (int i = 0; i < n; i++)
        tc_warn_refutable(e->u.letrec.params[i], "parameter pattern");
    Type *bt = infer(e->u.letrec.value);
    if (e->u.letrec.ret) {
        Type *rt = tc_conv_annot(e->u.letrec.ret);
        if (tc_expect(e->u.letrec.value, rt, "the body of this function"))
            bt = rt;
    }
    for (int i = n - 1; i >= 0; i--)
        bt = type_func(pts[i], bt);
    tc.locals.len = inner;
    if (!type_unify(b->type, bt))
        tc_report_mismatch(b->loc, arena_printf(dcc_arena, "the recursive function %s", name),
                        bt, b->type);
    tc.level--;
    bool ok = n > 0 || nonexpansive(e->u.letrec.value);
    if (tc_too_large(bt, b->loc, arena_printf(dcc_arena, "the type of %s", name)))
        bt = type_error();
    b->type = bt;
    tc_generalise(&b, &ok, 1, tc.level);
    Type *r = infer(e->u.letrec.body);
    tc.locals.len = mark;
    return r;
}

static Type *infer_if(Expr *e)
{
    infer(e->u.if_.cond);
    tc_expect(e->u.if_.cond, type_bool(), "the condition of if");
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
        int mark = tc.locals.len;
        tc.pat_names.len = 0;
        int perr = diag_error_count();
        tc_check_pat(mc->pat, st);
        if (diag_error_count() != perr)
            bad = true;
        Type *bt = infer(mc->body);
        tc.locals.len = mark;
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
        tc_check_match_cases(e);
    return res ? res : fresh();
}

/* loop p = init for i < n do body / loop p = init while c do body */
static Type *infer_loop(Expr *e)
{
    Type *t = infer(e->u.loop.init);
    if (e->u.loop.kind == LOOP_FOR && e->u.loop.bound) {
        infer(e->u.loop.bound);
        tc_expect(e->u.loop.bound, type_int(), "the bound of a for loop");
    }
    int mark = tc.locals.len;
    tc.pat_names.len = 0;
    tc_check_pat(e->u.loop.pat, t);
    tc_warn_refutable(e->u.loop.pat, "loop pattern");
    if (e->u.loop.kind == LOOP_FOR && e->u.loop.ivar) {
        e->u.loop.ivar_binding = tc_new_local(intern(e->u.loop.ivar),
                                           e->u.loop.ivar_loc.line ? e->u.loop.ivar_loc : e->loc,
                                           type_int());
    }
    if (e->u.loop.kind == LOOP_WHILE && e->u.loop.cond) {
        infer(e->u.loop.cond);
        tc_expect(e->u.loop.cond, type_bool(), "the condition of a while loop");
    }
    Type *bt = infer(e->u.loop.body);
    tc.locals.len = mark;
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
    Type *at = tc_conv_annot(e->u.annot.t);
    if (tc_expect(e->u.annot.e, at, "this expression"))
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
    if (tc_too_large(t, e->loc, "the type of this expression"))
        t = type_error();
    e->type = t;
    vec_push(&tc.all_exprs, e);
    tc_maybe_solve();
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
    Binding *b = tc_lookup_global(G.from->env, name);
    DefNode *n = b ? tc_map_get(&G.of_binding, b) : NULL;
    if (n && !tc_vec_has(&G.from->refs, n))
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
    case PAT_ANNOT: return tc_conv_annot(p->annot);
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
    tc.env = n->env;
    tc.tvars.len = 0;
    tc.quiet = true;
    tc.level = 1;
    Type *t = tc_conv_annot(d->ret);
    for (int i = d->nparams - 1; i >= 0; i--)
        t = type_func(pat_declared_type(d->params[i]), t);
    tc.quiet = false;
    tc.level = 0;
    Vec vars = {0};
    tc_collect_vars(t, 0, &vars);
    n->b->type = tc_abstract(t, &vars);
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
        int mark = tc.locals.len;
        Type *a = arg_type_of(pts, d->nparams);
        tc.pat_names.len = 0;
        Type *want;
        if (rule->kind == RULE_JVP) {
            if (rule->nparams == 1) {
                tc_check_pat(rule->params[0], type_tuple2(a, type_tangent(a)));
            } else if (rule->nparams == 2) {
                tc_check_pat(rule->params[0], a);
                tc_check_pat(rule->params[1], type_tangent(a));
            } else {
                error_at(rule->loc, "a jvp rule takes the pair (x, dx)");
            }
            want = type_tuple2(ret, type_tangent(ret));
        } else {
            if (rule->nparams == 1)
                tc_check_pat(rule->params[0], a);
            else
                error_at(rule->loc, "a vjp rule takes one parameter, the point x");
            want = type_tuple2(ret, type_func(type_tangent(ret), type_tangent(a)));
        }
        infer(rule->body);
        tc_expect(rule->body, want, rule->kind == RULE_JVP ? "this jvp rule" : "this vjp rule");
        tc.locals.len = mark;
    }
}

/* Checks one def's parameters, body and rules at the current level;
 * returns its type. */
static Type *check_def(DefNode *n)
{
    Decl *d = n->d;
    tc.env = n->env;
    tc.tvars.len = 0;
    tc.locals.len = 0;
    tc.pat_names.len = 0;
    int np = d->nparams;
    Type **pts = NEWN(Type *, np ? np : 1);
    for (int i = 0; i < np; i++) {
        pts[i] = fresh();
        tc_check_pat(d->params[i], pts[i]);
    }
    for (int i = 0; i < np; i++)
        tc_warn_refutable(d->params[i], "parameter pattern");
    Type *ret = d->ret ? tc_conv_annot(d->ret) : NULL;
    Type *bt = infer(d->body);
    if (ret) {
        if (!type_unify(bt, ret)) {
            TypePrinter p = {.n = 0};
            char *x = type_to_string_with(&p, bt), *y = type_to_string_with(&p, ret);
            if (type_unify_failure().occurs)
                tc_report_mismatch(d->body ? d->body->loc : d->loc, "the body", bt, ret);
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
    tc.locals.len = 0;
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
    tc.level = 1;
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
            for (int k = 0; k < tc.tvars.len; k++)
                vec_push(tvs[i], tc.tvars.data[k]);
            if (!dn->annotated) {
                if (!type_unify(dn->b->type, ts[i]))
                    tc_report_mismatch(dn->d->name_loc.line ? dn->d->name_loc : dn->d->loc,
                                    arena_printf(dcc_arena, "%s", dn->d->name), ts[i],
                                    dn->b->type);
            }
        }
    tc.level = 0;
    for (int i = 0; i < n; i++) {
        DefNode *dn = scc->data[i];
        if (tc_too_large(ts[i], bs[i]->loc, arena_printf(dcc_arena, "the type of %s", dn->d->name)))
            ts[i] = type_error();
        bs[i]->type = ts[i];
        bs[i]->nqvars = 0;
        bs[i]->ncons = 0;
        bs[i]->provisional = false;
        ok[i] = dn->d->nparams > 0 || nonexpansive(dn->d->body);
    }
    tc.env = ((DefNode *)scc->data[0])->env;
    tc_generalise(bs, ok, n, 0);
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
        Binding *old = tc_map_get(&e->values, b->name);
        if (old) {
            error_at(b->loc, "duplicate definition of %s", b->name);
            note_at(old->loc, "%s was first defined here", b->name);
            continue;
        }
        tc_map_put(&e->values, b->name, b);
        DefNode *n = NEW(DefNode);
        n->d = d;
        n->env = e;
        n->b = b;
        tc_map_put(&G.of_binding, b, n);
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
        ModEnv *ie = tc_env_of(d->imported);
        if (ie && ie != e && !tc_vec_has(&e->imports, ie))
            vec_push(&e->imports, ie);
    }
    if (tc.prelude && tc.prelude != e && !tc_vec_has(&e->imports, tc.prelude))
        vec_push(&e->imports, tc.prelude);
}

static void check_export_derivs(ModEnv *e)
{
    tc.env = e;
    for (int i = 0; i < e->m->ndecls; i++) {
        Decl *d = e->m->decls[i];
        if (d->kind != DECL_EXPORT_DERIV)
            continue;
        const char *n = intern(d->target ? d->target : "");
        Loc at = d->target_loc.line ? d->target_loc : d->loc;
        Binding *b = tc_lookup_global(e, n);
        if (!b) {
            const char *sug = tc_suggestion(n, NS_VALUE);
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
    ModEnv *e = tc_env_of(root);
    if (!e)
        return;
    Binding *b = tc_map_get(&e->values, intern("main"));
    if (!b || !b->def)
        return;
    if (b->nqvars > 0 || !type_unify(b->type, type_func(type_unit(), type_unit())))
        error_at(b->loc, "main must have type unit -> unit, but has type %s",
                 types_scheme_string(b));
}

/* Unbound variables left in monomorphic code (nothing constrains them):
 * any type will do; unit. */
static void default_free_vars(Type *t, Map *seen)
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
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT:
        /* each node once: types are DAGs (see type_tree_size) */
        if (tc_map_get(seen, t))
            return;
        tc_map_put(seen, t, t);
        if (t->kind == TY_ARRAY)
            default_free_vars(t->elem, seen);
        for (int i = 0; i < t->nargs; i++)
            default_free_vars(t->args[i], seen);
        return;
    default:
        return;
    }
}

/* Frees the heap vectors of the checker's state (the rest is in the
 * arena) and clears it. */
static void free_state(void)
{
    for (int i = 0; i < tc.envs.cap; i++)
        if (tc.envs.keys[i])
            vec_free(&((ModEnv *)tc.envs.vals[i])->imports);
    for (int i = 0; i < G.nodes.len; i++)
        vec_free(&((DefNode *)G.nodes.data[i])->refs);
    for (int i = 0; i < G.sccs.len; i++) {
        vec_free(G.sccs.data[i]);
        free(G.sccs.data[i]);
    }
    vec_free(&G.nodes);
    vec_free(&G.stack);
    vec_free(&G.sccs);
    vec_free(&G.names);
    vec_free(&tc.locals);
    vec_free(&tc.pending);
    vec_free(&tc.tvars);
    vec_free(&tc.pat_names);
    vec_free(&tc.all_exprs);
    vec_free(&tc.all_pats);
    memset(&tc, 0, sizeof tc);
    memset(&G, 0, sizeof G);
}

/* Forgets everything the checker caches between compilations: its state,
 * the scalar type nodes, the built-ins' bindings (all in the arena about
 * to be freed). */
void typecheck_reset(void)
{
    free_state();
    types_reset();
    builtins_reset();
}

int typecheck_program(Vec *modules)
{
    int errors0 = diag_error_count();
    free_state();
    if (!modules || modules->len == 0)
        return 0;
    for (int i = 0; i < modules->len; i++)
        tc_new_env(modules->data[i]);
    tc.prelude = tc_env_of(modules->data[0]);
    for (int i = 0; i < modules->len; i++)
        setup_imports(tc_env_of(modules->data[i]));
    for (int i = 0; i < modules->len; i++) {
        tc.env = tc_env_of(modules->data[i]);
        tc_declare_types(tc.env);
    }
    for (int i = 0; i < modules->len; i++)
        tc_define_types(tc_env_of(modules->data[i]));
    for (int i = 0; i < modules->len; i++)
        tc_mark_recursive(tc_env_of(modules->data[i]));
    for (int i = 0; i < modules->len; i++)
        register_defs(tc_env_of(modules->data[i]));

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
    for (int i = 0; i < G.sccs.len; i++)
        check_scc(G.sccs.data[i]);
    tc.level = 0;
    for (int i = 0; i < modules->len; i++)
        check_export_derivs(tc_env_of(modules->data[i]));
    tc.env = tc_env_of(modules->data[modules->len - 1]);
    tc_solve_final();
    check_main(modules->data[modules->len - 1]);
    Map seen = {0};
    for (int i = 0; i < tc.all_exprs.len; i++)
        default_free_vars(((Expr *)tc.all_exprs.data[i])->type, &seen);
    for (int i = 0; i < tc.all_pats.len; i++)
        default_free_vars(((Pat *)tc.all_pats.data[i])->type, &seen);
    for (int i = 0; i < G.nodes.len; i++) {
        DefNode *n = G.nodes.data[i];
        if (n->b->nqvars == 0)
            default_free_vars(n->b->type, &seen);
    }
    free_state();
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
