/* match.c — pattern matching to decision trees.
 *
 * The classic column-based algorithm on a clause matrix (Wadler, "Efficient
 * compilation of pattern matching", ch. 5 of Peyton Jones 1987; Maranget,
 * "Compiling pattern matching to good decision trees", ML 2008): rows are
 * clauses, columns are occurrences (atoms). Variables and wildcards are
 * peeled off into bindings; a product column (tuple, record) is replaced by
 * its components; a sum column becomes a CE_CASE with one alternative per
 * constructor that appears (and a default when not all do), each on the
 * specialised matrix; bool columns become CE_IF; int/float/string columns a
 * chain of equality tests. Column choice: the first column where the first
 * row is refutable (Maranget's heuristic "f"). Row order is kept, so the
 * first matching clause wins. An empty matrix is a match failure, a run-time
 * error. Actions reached along several paths are lowered once per path. */
#include "dcc.h"

#include <string.h>

typedef struct Bnd {
    Binding *b;
    CAtom *a;
    struct Bnd *next;
} Bnd;

typedef struct Row {
    Pat **pats; /* one per column; NULL matches anything */
    int action;
    Bnd *binds;
} Row;

typedef struct Match {
    Lower *L;
    Type *rtype;
    Loc loc;
    MatchCase *cases; /* match: the actions are case bodies */
    LowerCont k;      /* bind: the one action is the continuation */
    void *ctx;
} Match;

static CAtom *compile(Match *M, CAtom **occ, int ncol, Row *rows, int nrows, CBlock *b);

static Pat *strip(Pat *p)
{
    while (p && p->kind == PAT_ANNOT)
        p = p->arg;
    return p;
}

/* A pattern that matches every value of its type without binding. */
static bool is_wild(Pat *p)
{
    p = strip(p);
    return !p || p->kind == PAT_WILD || p->kind == PAT_UNIT;
}

static CAtom *fail_with(Match *M, CBlock *b, const char *text)
{
    CAtom *msg = core_atom_string(text);
    return core_emit_prim(b, "fail", P_ERROR, M->rtype, M->loc, &msg, 1, 0);
}

static CAtom *fail_leaf(Match *M, CBlock *b)
{
    return fail_with(M, b, "match failure: no case covers the value");
}

/* The failure of a switch's default branch that no row reaches names the
 * constructors the value can have there: "the value is B or C, which no
 * case covers" (up to six names, then "..."). */
static CAtom *fail_constructors(Match *M, CBlock *b, TypeDecl *d, const bool *have)
{
    StrBuf sb = {0};
    sb_puts(&sb, "match failure: the value is ");
    int n = 0, missing = 0;
    for (int c = 0; c < d->ncons; c++)
        missing += !have[c];
    for (int c = 0; c < d->ncons; c++) {
        if (have[c])
            continue;
        if (n == 6) {
            sb_puts(&sb, ", ...");
            break;
        }
        if (n > 0)
            sb_puts(&sb, n == missing - 1 ? " or " : ", ");
        sb_puts(&sb, d->cons[c]);
        n++;
    }
    sb_puts(&sb, ", which no case covers");
    CAtom *r = fail_with(M, b, arena_strdup(dcc_arena, sb.data));
    sb_free(&sb);
    return r;
}

static CAtom *action_leaf(Match *M, Row *r, CBlock *b)
{
    int mark = lower_env_mark(M->L);
    for (Bnd *x = r->binds; x; x = x->next)
        lower_env_bind(M->L, x->b, x->a);
    CAtom *res;
    if (M->cases)
        res = lower_expr(M->L, M->cases[r->action].body, b);
    else
        res = M->k(M->L, b, M->ctx);
    lower_env_pop(M->L, mark);
    return res;
}

/* Rows with column j replaced by `nnew` columns: sub(r, k) gives row r's
 * pattern for new column k (called only for kept rows). */
typedef Pat *(*SubPat)(Pat *p, int k, void *ctx);

static Row *specialise(Row *rows, int nrows, int ncol, int j, int nnew, bool (*keep)(Pat *, void *),
                       SubPat sub, void *ctx, int *out_n)
{
    Row *out = NEWN(Row, nrows > 0 ? nrows : 1);
    int n = 0;
    int nc = ncol - 1 + nnew;
    for (int r = 0; r < nrows; r++) {
        Pat *p = strip(rows[r].pats[j]);
        if (!keep(p, ctx))
            continue;
        Row *o = &out[n++];
        o->action = rows[r].action;
        o->binds = rows[r].binds;
        o->pats = NEWN(Pat *, nc > 0 ? nc : 1);
        int c = 0;
        for (int i = 0; i < j; i++)
            o->pats[c++] = rows[r].pats[i];
        for (int k = 0; k < nnew; k++)
            o->pats[c++] = p ? sub(p, k, ctx) : NULL;
        for (int i = j + 1; i < ncol; i++)
            o->pats[c++] = rows[r].pats[i];
    }
    *out_n = n;
    return out;
}

static CAtom **replace_cols(CAtom **occ, int ncol, int j, CAtom **news, int nnew)
{
    int nc = ncol - 1 + nnew;
    CAtom **o = NEWN(CAtom *, nc > 0 ? nc : 1);
    int c = 0;
    for (int i = 0; i < j; i++)
        o[c++] = occ[i];
    for (int k = 0; k < nnew; k++)
        o[c++] = news[k];
    for (int i = j + 1; i < ncol; i++)
        o[c++] = occ[i];
    return o;
}

/* ---- products ---------------------------------------------------------- */

typedef struct ProdCtx {
    bool record;
    TypeDecl *decl;
    int *comp; /* new column k -> component index */
} ProdCtx;

static bool keep_all(Pat *p, void *ctx) { return true; }

static Pat *prod_sub(Pat *p, int k, void *vctx)
{
    ProdCtx *c = vctx;
    int idx = c->comp[k];
    if (p->kind == PAT_TUPLE)
        return idx < p->nitems ? p->items[idx] : NULL;
    if (p->kind == PAT_RECORD) {
        const char *f = c->decl->fields[idx];
        for (int i = 0; i < p->nitems; i++)
            if (p->fields[i] == f || strcmp(p->fields[i], f) == 0)
                return p->items[i];
    }
    return NULL;
}

static CAtom *expand_product(Match *M, CAtom **occ, int ncol, Row *rows, int nrows, int j,
                             CBlock *b)
{
    Type *t = type_resolve(core_atom_type(occ[j]));
    ProdCtx c = {0};
    int n;
    if (t->kind == TY_TUPLE) {
        n = t->nargs;
    } else {
        c.record = true;
        c.decl = t->decl;
        n = t->decl->nfields;
    }
    /* only the components some row looks at get a column */
    int *all = NEWN(int, n > 0 ? n : 1);
    for (int k = 0; k < n; k++)
        all[k] = k;
    c.comp = all;
    int *used = NEWN(int, n > 0 ? n : 1);
    int nused = 0;
    for (int k = 0; k < n; k++) {
        for (int r = 0; r < nrows; r++) {
            Pat *p = strip(rows[r].pats[j]);
            Pat *s = p ? strip(prod_sub(p, k, &c)) : NULL;
            if (s && s->kind != PAT_WILD) {
                used[nused++] = k;
                break;
            }
        }
    }
    CAtom **news = NEWN(CAtom *, nused > 0 ? nused : 1);
    for (int i = 0; i < nused; i++) {
        int k = used[i];
        /* named after the first variable bound to it, for readability */
        const char *name = c.record ? c.decl->fields[k] : "c";
        for (int r = 0; r < nrows; r++) {
            Pat *p = strip(rows[r].pats[j]);
            Pat *s = p ? strip(prod_sub(p, k, &c)) : NULL;
            if (s && s->kind == PAT_VAR) {
                name = s->name;
                break;
            }
        }
        if (c.record)
            news[i] = core_emit_prim(b, name, P_FIELD, core_type_field(t, k), M->loc, &occ[j], 1, k);
        else
            news[i] = core_emit_prim(b, name, P_PROJ, core_type_proj(t, k), M->loc, &occ[j], 1, k);
    }
    c.comp = used;
    int nr;
    Row *nrs = specialise(rows, nrows, ncol, j, nused, keep_all, prod_sub, &c, &nr);
    return compile(M, replace_cols(occ, ncol, j, news, nused), ncol - 1 + nused, nrs, nr, b);
}

/* ---- sums -------------------------------------------------------------- */

typedef struct ConCtx {
    int con;
} ConCtx;

static bool keep_con(Pat *p, void *vctx)
{
    ConCtx *c = vctx;
    return !p || (p->kind == PAT_CON && p->con_index == c->con);
}

static bool keep_default(Pat *p, void *vctx) { return p == NULL; }

static Pat *con_sub(Pat *p, int k, void *vctx) { return p->arg; }

static CAtom *switch_con(Match *M, CAtom **occ, int ncol, Row *rows, int nrows, int j, CBlock *b)
{
    Type *t = type_resolve(core_atom_type(occ[j]));
    TypeDecl *d = t->decl;
    int *seen = NEWN(int, d->ncons > 0 ? d->ncons : 1);
    bool *have = NEWN(bool, d->ncons > 0 ? d->ncons : 1);
    int nseen = 0;
    for (int r = 0; r < nrows; r++) {
        Pat *p = strip(rows[r].pats[j]);
        if (p && p->kind == PAT_CON && p->con_index >= 0 && p->con_index < d->ncons &&
            !have[p->con_index]) {
            have[p->con_index] = true;
            seen[nseen++] = p->con_index;
        }
    }
    bool full = nseen == d->ncons;
    CExpr *e = core_expr(CE_CASE, M->rtype, M->loc);
    e->nargs = 1;
    e->args = NEWN(CAtom *, 1);
    e->args[0] = occ[j];
    e->u.case_.alts = NEWN(CAlt, nseen + 1);
    for (int i = 0; i < nseen; i++) {
        int con = seen[i];
        Type *arg = core_type_con_arg(t, con);
        CAlt *a = &e->u.case_.alts[e->u.case_.nalts++];
        a->con = con;
        a->body = core_block_new();
        ConCtx cc = {con};
        int nr;
        CAtom *pay = NULL;
        if (arg) {
            a->payload = core_var(d->cons[con], arg, M->loc);
            pay = core_atom_var(a->payload);
        }
        Row *nrs = specialise(rows, nrows, ncol, j, arg ? 1 : 0, keep_con, con_sub, &cc, &nr);
        CAtom **nocc = replace_cols(occ, ncol, j, &pay, arg ? 1 : 0);
        a->body->result = compile(M, nocc, ncol - 1 + (arg ? 1 : 0), nrs, nr, a->body);
    }
    if (!full) {
        CAlt *a = &e->u.case_.alts[e->u.case_.nalts++];
        a->con = -1;
        a->body = core_block_new();
        int nr;
        Row *nrs = specialise(rows, nrows, ncol, j, 0, keep_default, con_sub, NULL, &nr);
        if (nr == 0)
            a->body->result = fail_constructors(M, a->body, d, have);
        else
            a->body->result = compile(M, replace_cols(occ, ncol, j, NULL, 0), ncol - 1, nrs, nr, a->body);
    }
    return core_atom_var(core_bind(b, "m", e));
}

/* ---- literals ------------------------------------------------------------ */

static bool lit_equal(Pat *a, Pat *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case PAT_INT: case PAT_BOOL: return a->ival == b->ival;
    case PAT_FLOAT: return a->fval == b->fval;
    case PAT_STRING: return strcmp(a->sval, b->sval) == 0;
    default: return false;
    }
}

typedef struct LitCtx {
    Pat *lit;
} LitCtx;

static bool keep_lit(Pat *p, void *vctx)
{
    LitCtx *c = vctx;
    return !p || lit_equal(p, c->lit);
}

static CAtom *lit_atom(Pat *p, Type *t)
{
    switch (p->kind) {
    case PAT_INT: return core_atom_int(p->ival);
    case PAT_BOOL: return core_atom_bool(p->ival != 0);
    case PAT_FLOAT: return core_atom_float(p->fval, t);
    case PAT_STRING: return core_atom_string(p->sval);
    default: return core_atom_unit();
    }
}

static CAtom *lit_chain(Match *M, CAtom **occ, int ncol, Row *rows, int nrows, int j,
                        Pat **lits, int nlits, int i, CBlock *b)
{
    CAtom **rest = replace_cols(occ, ncol, j, NULL, 0);
    int nr;
    if (i == nlits) {
        Row *nrs = specialise(rows, nrows, ncol, j, 0, keep_default, con_sub, NULL, &nr);
        return compile(M, rest, ncol - 1, nrs, nr, b);
    }
    Type *t = core_atom_type(occ[j]);
    CAtom *args[2] = {occ[j], lit_atom(lits[i], t)};
    CAtom *test = core_emit_prim(b, "is", P_EQ, type_bool(), M->loc, args, 2, 0);
    CExpr *e = core_expr(CE_IF, M->rtype, M->loc);
    e->nargs = 1;
    e->args = NEWN(CAtom *, 1);
    e->args[0] = test;
    e->u.if_.then_ = core_block_new();
    e->u.if_.else_ = core_block_new();
    LitCtx lc = {lits[i]};
    Row *nrs = specialise(rows, nrows, ncol, j, 0, keep_lit, con_sub, &lc, &nr);
    e->u.if_.then_->result = compile(M, rest, ncol - 1, nrs, nr, e->u.if_.then_);
    e->u.if_.else_->result =
        lit_chain(M, occ, ncol, rows, nrows, j, lits, nlits, i + 1, e->u.if_.else_);
    return core_atom_var(core_bind(b, "m", e));
}

static CAtom *switch_lit(Match *M, CAtom **occ, int ncol, Row *rows, int nrows, int j, CBlock *b)
{
    Pat **lits = NEWN(Pat *, nrows > 0 ? nrows : 1);
    int nlits = 0;
    for (int r = 0; r < nrows; r++) {
        Pat *p = strip(rows[r].pats[j]);
        if (!p)
            continue;
        bool dup = false;
        for (int i = 0; i < nlits && !dup; i++)
            dup = lit_equal(lits[i], p);
        if (!dup)
            lits[nlits++] = p;
    }
    if (type_resolve(core_atom_type(occ[j]))->kind == TY_BOOL) {
        /* bool: one CE_IF, both branches */
        CExpr *e = core_expr(CE_IF, M->rtype, M->loc);
        e->nargs = 1;
        e->args = NEWN(CAtom *, 1);
        e->args[0] = occ[j];
        CAtom **rest = replace_cols(occ, ncol, j, NULL, 0);
        for (int side = 0; side < 2; side++) {
            Pat lit = {.kind = PAT_BOOL, .ival = side == 0};
            LitCtx lc = {&lit};
            int nr;
            Row *nrs = specialise(rows, nrows, ncol, j, 0, keep_lit, con_sub, &lc, &nr);
            CBlock *blk = core_block_new();
            blk->result = compile(M, rest, ncol - 1, nrs, nr, blk);
            if (side == 0)
                e->u.if_.then_ = blk;
            else
                e->u.if_.else_ = blk;
        }
        return core_atom_var(core_bind(b, "m", e));
    }
    return lit_chain(M, occ, ncol, rows, nrows, j, lits, nlits, 0, b);
}

/* ---- the driver ---------------------------------------------------------- */

static CAtom *compile(Match *M, CAtom **occ, int ncol, Row *rows, int nrows, CBlock *b)
{
    if (nrows == 0)
        return fail_leaf(M, b);
    /* peel variables and wildcards off every row */
    Row *nr = NEWN(Row, nrows);
    for (int r = 0; r < nrows; r++) {
        nr[r] = rows[r];
        nr[r].pats = NEWN(Pat *, ncol > 0 ? ncol : 1);
        for (int c = 0; c < ncol; c++) {
            Pat *p = strip(rows[r].pats[c]);
            if (p && p->kind == PAT_VAR) {
                Bnd *x = NEW(Bnd);
                x->b = p->binding;
                x->a = occ[c];
                x->next = nr[r].binds;
                nr[r].binds = x;
                p = NULL;
            } else if (is_wild(p)) {
                p = NULL;
            }
            nr[r].pats[c] = p;
        }
    }
    rows = nr;
    int j = -1;
    for (int c = 0; c < ncol && j < 0; c++)
        if (rows[0].pats[c])
            j = c;
    if (j < 0)
        return action_leaf(M, &rows[0], b);
    Type *t = type_resolve(core_atom_type(occ[j]));
    if (t->kind == TY_TUPLE || (t->kind == TY_NAMED && t->decl->kind == TD_RECORD))
        return expand_product(M, occ, ncol, rows, nrows, j, b);
    if (t->kind == TY_NAMED && t->decl->kind == TD_VARIANT)
        return switch_con(M, occ, ncol, rows, nrows, j, b);
    return switch_lit(M, occ, ncol, rows, nrows, j, b);
}

CAtom *match_lower(Lower *L, Expr *e, CAtom *scrut, CBlock *b)
{
    Match M = {.L = L, .rtype = lower_ground(L, e->type), .loc = e->loc,
               .cases = e->u.match.cases};
    int n = e->u.match.n;
    Row *rows = NEWN(Row, n > 0 ? n : 1);
    for (int i = 0; i < n; i++) {
        rows[i].pats = NEWN(Pat *, 1);
        rows[i].pats[0] = e->u.match.cases[i].pat;
        rows[i].action = i;
    }
    CAtom **occ = NEWN(CAtom *, 1);
    occ[0] = scrut;
    return compile(&M, occ, 1, rows, n, b);
}

CAtom *match_bind(Lower *L, Pat **pats, CAtom **vals, int n, Type *rtype, Loc loc,
                  CBlock *b, LowerCont k, void *ctx)
{
    Match M = {.L = L, .rtype = rtype, .loc = loc, .k = k, .ctx = ctx};
    Row row = {.pats = NEWN(Pat *, n > 0 ? n : 1), .action = 0};
    for (int i = 0; i < n; i++)
        row.pats[i] = pats[i];
    CAtom **occ = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        occ[i] = vals[i];
    return compile(&M, occ, n, &row, 1, b);
}
