/* ad_reverse_loops.c — reverse mode of loops and SOACs: residuals saved
 * per iteration or recomputed, checkpointing, the reversed loop; folds and
 * scans as loops; the pullbacks of map, reduce (+) and scan (+). The
 * design is described at the top of ad_reverse.c. */
#include "ad_reverse.h"

/* ------------------------------------------------------------ loops */

/* How the values of a residual are saved per iteration: scalars in an
 * array, arrays as the rows of an array of one more rank (their shape
 * must not change from one iteration to the next), other values in an
 * array of them. */
typedef enum { SAVE_NONE, SAVE_SCALAR, SAVE_ARRAY, SAVE_OTHER } SaveKind;

static SaveKind save_kind(Type *t)
{
    switch (kind_of(t)) {
    case TY_UNIT: return SAVE_NONE;
    case TY_INT: case TY_FLOAT: case TY_F32: case TY_BOOL: return SAVE_SCALAR;
    case TY_ARRAY: return SAVE_ARRAY;
    default: return SAVE_OTHER;
    }
}

static Type *save_t(Type *t)
{
    return is_arr(t) ? type_array(elem_of(t), rank_of(t) + 1) : type_array(t, 1);
}

/* An empty buffer (for loops: n slots of scalars and others; arrays are
 * allocated at the first store, when their shape is known). */
static CAtom *buf_init(CBlock *b, Type *t, CAtom *n)
{
    CAtom *d[8];
    switch (save_kind(t)) {
    case SAVE_SCALAR:
        return zeros_dims(b, t, &n, 1);
    case SAVE_ARRAY:
        for (int i = 0; i <= rank_of(t); i++)
            d[i] = ilit(0);
        return zeros_dims(b, elem_of(t), d, rank_of(t) + 1);
    default:
        return fill(b, dummy_of(b, t, 0), &n, 1);
    }
}

/* buf with slot i set to v; for loops (n slots) or while loops (grown by
 * doubling when n is NULL). */
static CAtom *buf_store(CBlock *b, CAtom *buf, CAtom *v, CAtom *i, CAtom *n)
{
    Type *t = aty(v);
    SaveKind k = save_kind(t);
    if (!n) {
        CAtom *cap = length_of(b, buf);
        CAtom *full = cmp2(b, P_GE, i, cap);
        CBlock *th = core_block_new();
        CAtom *more = iadd(th, cap, ilit(16));
        if (k == SAVE_ARRAY) {
            CAtom *d[9], *d2[9];
            int r = dims_of(th, v, d + 1);
            d[0] = ilit(16);
            d2[0] = cap;
            for (int j = 1; j <= r; j++)
                d2[j] = d[j];
            CBlock *t1 = core_block_new(), *t2 = core_block_new();
            t1->result = zeros_dims(t1, elem_of(t), d, r + 1);
            t2->result = P2(t2, P_CONCAT, aty(buf), buf, zeros_dims(t2, elem_of(t), d2, r + 1));
            th->result = bind(th, "grow", if_e(cmp2(th, P_EQ, cap, ilit(0)), aty(buf), t1, t2));
        } else {
            CAtom *ext = k == SAVE_SCALAR ? zeros_dims(th, t, &more, 1) : fill(th, dummy_of(th, t, 0), &more, 1);
            th->result = P2(th, P_CONCAT, aty(buf), buf, ext);
        }
        buf = bind(b, "grow", if_e(full, aty(buf), th, block_of(buf)));
    } else if (k == SAVE_ARRAY) {
        CBlock *th = core_block_new();
        CAtom *d[9];
        int r = dims_of(th, v, d + 1);
        d[0] = n;
        th->result = zeros_dims(th, elem_of(t), d, r + 1);
        buf = bind(b, "buf", if_e(cmp2(b, P_EQ, i, ilit(0)), aty(buf), th, block_of(buf)));
    }
    return update_at(b, buf, v, &i, 1);
}

int ad_reverse_checkpoint = 0;

/* The checkpointing of for loops without their own setting: the driver's
 * (ad_reverse_checkpoint), else $DCC_AD_CHECKPOINT (to run a test suite
 * with checkpoints everywhere). */
static int checkpoint_default(void)
{
    if (ad_reverse_checkpoint)
        return ad_reverse_checkpoint;
    const char *v = getenv("DCC_AD_CHECKPOINT");
    return v && *v ? atoi(v) : 0;
}

/* Rematerialisation: a residual of a loop body that a few cheap scalar
 * operations compute from the counter and loop invariants (x[i] for an
 * outer x, say) is recomputed by the reversed loop instead of saved. */
typedef struct Remat {
    CoreMap defs;  /* body var -> its expression */
    CoreMap memo;  /* var -> (void *)1 yes, 2 no */
    Frame *frame;
    CVar *ivar;
} Remat;

static bool remat_prim(CExpr *e, CVar *v)
{
    if (e->kind != CE_PRIM)
        return false;
    switch (e->u.prim.op) {
    case P_INDEX: case P_PROJ: case P_FIELD: case P_LENGTH: case P_TO_FLOAT: case P_TO_F32:
        return true;
    case P_ADD: case P_SUB: case P_MUL: case P_NEG: case P_MOD: case P_EQ: case P_LT: case P_GT:
    case P_LE: case P_GE: case P_NE: case P_NOT:
        return !is_arr(v->type) && (e->u.prim.op != P_MOD || !core_prim_may_fail(e));
    default:
        return false;
    }
}

static bool remat_ok(Remat *rm, CVar *v, int depth)
{
    if (v == rm->ivar || !core_map_get(&rm->frame->bound, v))
        return true;
    intptr_t m = (intptr_t)core_map_get(&rm->memo, v);
    if (m)
        return m == 1;
    CExpr *e = core_map_get(&rm->defs, v);
    bool ok = e && depth < 16 && remat_prim(e, v);
    for (int i = 0; ok && e && i < e->nargs; i++)
        if (e->args[i]->kind == CA_VAR)
            ok = remat_ok(rm, e->args[i]->u.var, depth + 1);
    core_map_put(&rm->memo, v, (void *)(intptr_t)(ok ? 1 : 2));
    return ok;
}

static void remat_need(Remat *rm, CVar *v, CoreMap *need)
{
    if (v == rm->ivar || !core_map_get(&rm->frame->bound, v) || core_map_get(need, v))
        return;
    core_map_put(need, v, (void *)1);
    CExpr *e = core_map_get(&rm->defs, v);
    for (int i = 0; i < e->nargs; i++)
        if (e->args[i]->kind == CA_VAR)
            remat_need(rm, e->args[i]->u.var, need);
}

/* Loop-invariant code motion, before a for loop is differentiated: the
 * prims at the top of the body that only read values from outside the loop
 * (a row w[0] of a weight matrix, say) are computed once before it. Their
 * adjoints are then carried by the reversed loop as accumulators and
 * pushed into their operands once, instead of at every iteration (an O(1)
 * add per step instead of an indexing and an update). Prims that could
 * fail are computed under `if n > 0`, so a loop that runs no iteration
 * fails as before. Returns the body without them. */
static CBlock *hoist_invariants(Frame *F, CBlock *dst, CExpr *e)
{
    CBlock *body = e->u.loop.body;
    CoreMap inside = {0}, hoisted = {0};
    core_map_put(&inside, e->u.loop.state, (void *)1);
    core_map_put(&inside, e->u.loop.ivar, (void *)1);
    for (int i = 0; i < body->nbinds; i++)
        core_map_put(&inside, body->binds[i].var, (void *)1);
    CBlock *mini = core_block_new(), *rest = core_block_new();
    bool may_fail = false;
    for (int i = 0; i < body->nbinds; i++) {
        CBind *bd = &body->binds[i];
        CExpr *be = bd->e;
        bool inv = be->kind == CE_PRIM && !(core_prims[be->u.prim.op].flags & PRIM_EFFECT);
        for (int k = 0; inv && k < be->nargs; k++) {
            CAtom *a = be->args[k];
            if (a->kind == CA_VAR && core_map_get(&inside, a->u.var) && !core_map_get(&hoisted, a->u.var))
                inv = false;
        }
        if (inv) {
            push_bind(mini, bd->var, be);
            core_map_put(&hoisted, bd->var, (void *)1);
            may_fail |= core_prim_may_fail(be);
        } else {
            push_bind(rest, bd->var, be);
        }
    }
    core_map_free(&inside);
    core_map_free(&hoisted);
    if (!mini->nbinds)
        return body;
    rest->result = body->result;
    CBlock *tmp = core_block_new();
    CAtom *n = e->args[1];
    if (!may_fail || (n->kind == CA_INT && n->u.ival > 0)) {
        for (int i = 0; i < mini->nbinds; i++)
            push_bind(tmp, mini->binds[i].var, mini->binds[i].e);
    } else {
        /* h = if n > 0 then (the prims; their values) else dummies */
        int m = mini->nbinds;
        CAtom **vs = NEWN(CAtom *, m);
        for (int i = 0; i < m; i++)
            vs[i] = core_atom_var(mini->binds[i].var);
        mini->result = tuple_of(mini, vs, m);
        CBlock *th = core_copy_block(mini, NULL, NULL, 0);
        CBlock *el = core_block_new();
        Type *ht = core_atom_type(th->result);
        CAtom **ds = NEWN(CAtom *, m);
        for (int i = 0; i < m; i++)
            ds[i] = dummy_of(el, mini->binds[i].var->type, 0);
        el->result = tuple_of(el, ds, m);
        CAtom *h = bind(tmp, "inv", if_e(cmp2(tmp, P_GT, n, ilit(0)), ht, th, el));
        for (int i = 0; i < m; i++)
            push_bind(tmp, mini->binds[i].var,
                      m == 1 ? atom_e(h) : core_prim(P_PROJ, mini->binds[i].var->type, R->loc, &h, 1, i));
    }
    fwd_block(F, tmp, dst);
    return rest;
}

void fwd_loop(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    CVar *s = e->u.loop.state;
    CBlock *body = e->u.loop.body;
    bool isfor = e->u.loop.kind == LOOP_FOR;
    if (!has_tan(s->type) || !(atom_active(e->args[0]) || uses_active_block(body))) {
        fpush(F, dst, x, e);
        return;
    }
    if (isfor)
        body = hoist_invariants(F, dst, e);
    CVar **cands;
    bool *acc;
    int nc;
    candidates(NULL, body, true, &cands, &acc, &nc);
    set_active(s);
    Frame *FB = NEW(Frame);
    FB->recompute = F->recompute;
    FB->norec = F->norec;
    core_map_put(&FB->bound, s, (void *)1);
    if (isfor)
        core_map_put(&FB->bound, e->u.loop.ivar, (void *)1);
    CBlock *nb = core_block_new();
    fwd_block(FB, body, nb);
    CAtom *rnew = body->result;
    CVar **ps = NEWN(CVar *, 1);
    ps[0] = s;
    Tmpl *tm = tmpl_raw(FB, rnew, s->type, ps, NULL, 1, cands, acc, nc, NULL, NULL, 0);
    Vec outs = {0};
    CoreMap seen = {0};
    tmpl_escapes(tm, &outs, &seen);
    core_map_free(&seen);
    int no = outs.len;
    CVar **ov = (CVar **)vec_freeze(&outs);
    tmpl_finish(tm, ov, no, NULL);
    /* residuals to save: all but the counter, units, and the cheap ones
     * that only depend on the counter and loop invariants (recomputed) */
    CoreMap need = {0};
    Remat rm = {.defs = {0}, .frame = FB, .ivar = isfor ? e->u.loop.ivar : NULL};
    for (int j = 0; j < nb->nbinds; j++)
        core_map_put(&rm.defs, nb->binds[j].var, nb->binds[j].e);
    int nr = 0;
    CVar **rv_ = NEWN(CVar *, tm->nres > 0 ? tm->nres : 1);
    for (int j = 0; j < tm->nres; j++) {
        CVar *r = tm->res[j];
        if (r == e->u.loop.ivar || save_kind(r->type) == SAVE_NONE)
            continue;
        if (remat_ok(&rm, r, 0))
            remat_need(&rm, r, &need);
        else
            rv_[nr++] = r;
    }
    CBlock *remat = core_block_new();
    for (int j = 0; j < nb->nbinds; j++)
        if (core_map_get(&need, nb->binds[j].var))
            push_bind(remat, nb->binds[j].var, nb->binds[j].e);
    remat->result = core_atom_unit();
    core_map_free(&need);
    core_map_free(&rm.defs);
    core_map_free(&rm.memo);
    Entry *en;
    CAtom *count;
    CAtom **bufs = NEWN(CAtom *, nr > 0 ? nr : 1);
    int ck = e->u.loop.checkpoint ? e->u.loop.checkpoint : checkpoint_default();
    if (isfor && nr > 0 && ck != 0) {
        /* checkpointed: save the state at the start of each segment only */
        CAtom *n0 = e->args[1]->kind == CA_INT ? e->args[1] : P2(dst, P_MAX, type_int(), e->args[1], ilit(0));
        CAtom *K;
        if (ck > 0) {
            K = ilit(ck);
        } else { /* about sqrt n segments of about sqrt n iterations */
            CAtom *fn = P1(dst, P_TO_FLOAT, type_float(), n0);
            CAtom *sq = P1(dst, P_CEIL, type_float(), P1(dst, P_SQRT, type_float(), fn));
            K = P2(dst, P_MAX, type_int(), P1(dst, P_TO_INT, type_int(), sq), ilit(1));
        }
        CAtom *seg = P2(dst, P_DIV, type_int(), iadd(dst, n0, isub(dst, K, ilit(1))), K);
        seg = P2(dst, P_MAX, type_int(), seg, ilit(1));
        CBlock *ckb = core_block_new();
        for (int j = 0; j < nb->nbinds; j++)
            push_bind(ckb, nb->binds[j].var, nb->binds[j].e);
        CAtom **rr = NEWN(CAtom *, nr + 1);
        rr[0] = rnew;
        for (int j = 0; j < nr; j++)
            rr[1 + j] = core_atom_var(rv_[j]);
        ckb->result = tuple_of(ckb, rr, nr + 1);
        Type *ts[2] = {s->type, save_t(s->type)};
        Type *st = type_tuple(ts, 2);
        CAtom *init[2] = {e->args[0], buf_init(dst, s->type, K)};
        CAtom *init_t = mkprod(dst, st, init, 2);
        CVar *sv = core_var("st", st, e->loc);
        CAtom *sa = core_atom_var(sv);
        CBlock *NB = core_block_new();
        push_bind(NB, s, core_prim(P_PROJ, s->type, e->loc, &sa, 1, 0));
        CAtom *cb = prim(NB, P_PROJ, ts[1], &sa, 1, 1);
        CAtom *iv = core_atom_var(e->u.loop.ivar);
        CAtom *q = P2(NB, P_DIV, type_int(), iv, seg);
        CAtom *at = cmp2(NB, P_EQ, P2(NB, P_MOD, type_int(), iv, seg), ilit(0));
        CBlock *th = core_block_new();
        th->result = buf_store(th, cb, core_atom_var(s), q, K);
        CAtom *cb1 = bind(NB, "ck", if_e(at, ts[1], th, block_of(cb)));
        for (int j = 0; j < nb->nbinds; j++)
            push_bind(NB, nb->binds[j].var, nb->binds[j].e);
        CAtom *next[2] = {rnew, cb1};
        NB->result = mkprod(NB, st, next, 2);
        CExpr *ne = core_expr(CE_LOOP, st, e->loc);
        ne->u.loop.state = sv;
        ne->u.loop.kind = LOOP_FOR;
        ne->u.loop.ivar = e->u.loop.ivar;
        ne->u.loop.checkpoint = e->u.loop.checkpoint;
        ne->u.loop.body = NB;
        ne->nargs = 2;
        ne->args = NEWN(CAtom *, 2);
        ne->args[0] = init_t;
        ne->args[1] = e->args[1];
        CAtom *stf = bind(dst, "loop", ne);
        fpush(F, dst, x, core_prim(P_PROJ, x->type, e->loc, &stf, 1, 0));
        en = tape(F, EN_LOOP, x, e);
        en->ck_k = K;
        en->ck_seg = seg;
        en->ck_buf = prim(dst, P_PROJ, ts[1], &stf, 1, 1);
        en->ck_body = ckb;
        en->ck_state = s;
        en->body = tm;
        en->count = e->args[1];
        en->bufs = bufs;
        en->nargs = nr;
        en->outs = ov;
        en->nouts = no;
        en->init = e->args[0];
        en->ivar = e->u.loop.ivar;
        en->saved = rv_;
        en->remat = remat;
        return;
    }
    if (isfor && nr == 0) {
        CExpr *ne = core_expr(CE_LOOP, e->type, e->loc);
        *ne = *e;
        nb->result = rnew;
        ne->u.loop.body = nb;
        fpush(F, dst, x, ne);
        count = e->args[1];
    } else {
        CAtom *n0 = NULL;
        if (isfor)
            n0 = e->args[1]->kind == CA_INT ? e->args[1] : P2(dst, P_MAX, type_int(), e->args[1], ilit(0));
        int hdr = isfor ? 1 : 2;
        int tot = hdr + nr;
        Type **ts = NEWN(Type *, tot);
        CAtom **init = NEWN(CAtom *, tot);
        ts[0] = s->type;
        init[0] = e->args[0];
        if (!isfor) {
            ts[1] = type_int();
            init[1] = ilit(0);
        }
        for (int j = 0; j < nr; j++) {
            ts[hdr + j] = save_t(rv_[j]->type);
            init[hdr + j] = buf_init(dst, rv_[j]->type, isfor ? n0 : ilit(0));
        }
        Type *st = type_tuple(ts, tot);
        CAtom *init_t = mkprod(dst, st, init, tot);
        CVar *sv = core_var("st", st, e->loc);
        CAtom *sa = core_atom_var(sv);
        CBlock *NB = core_block_new();
        push_bind(NB, s, core_prim(P_PROJ, s->type, e->loc, &sa, 1, 0));
        CAtom *k = isfor ? core_atom_var(e->u.loop.ivar) : prim(NB, P_PROJ, type_int(), &sa, 1, 1);
        CAtom **bv = NEWN(CAtom *, nr > 0 ? nr : 1);
        for (int j = 0; j < nr; j++)
            bv[j] = prim(NB, P_PROJ, ts[hdr + j], &sa, 1, hdr + j);
        for (int j = 0; j < nb->nbinds; j++)
            push_bind(NB, nb->binds[j].var, nb->binds[j].e);
        CAtom **next = NEWN(CAtom *, tot);
        next[0] = rnew;
        if (!isfor)
            next[1] = iadd(NB, k, ilit(1));
        for (int j = 0; j < nr; j++)
            next[hdr + j] = buf_store(NB, bv[j], core_atom_var(rv_[j]), k, n0);
        NB->result = mkprod(NB, st, next, tot);
        CExpr *ne = core_expr(CE_LOOP, st, e->loc);
        ne->u.loop.state = sv;
        ne->u.loop.kind = e->u.loop.kind;
        ne->u.loop.ivar = e->u.loop.ivar;
        ne->u.loop.checkpoint = e->u.loop.checkpoint;
        ne->u.loop.body = NB;
        ne->nargs = isfor ? 2 : 1;
        ne->args = NEWN(CAtom *, 2);
        ne->args[0] = init_t;
        if (isfor)
            ne->args[1] = e->args[1];
        else {
            CBlock *cb = core_block_new();
            CAtom *s2 = prim(cb, P_PROJ, s->type, &sa, 1, 0);
            cb->result = splice(cb, e->u.loop.cond, &s, &s2, 1);
            ne->u.loop.cond = cb;
        }
        CAtom *stf = bind(dst, "loop", ne);
        fpush(F, dst, x, core_prim(P_PROJ, x->type, e->loc, &stf, 1, 0));
        count = isfor ? e->args[1] : prim(dst, P_PROJ, type_int(), &stf, 1, 1);
        for (int j = 0; j < nr; j++)
            bufs[j] = prim(dst, P_PROJ, ts[hdr + j], &stf, 1, hdr + j);
    }
    en = tape(F, EN_LOOP, x, e);
    en->body = tm;
    en->count = count;
    en->bufs = bufs;
    en->args = NULL;
    en->nargs = nr;
    en->outs = ov;
    en->nouts = no;
    en->init = e->args[0];
    en->ivar = isfor ? e->u.loop.ivar : NULL;
    en->saved = rv_;
    en->remat = remat;
}

/* The reversed loop: from the last iteration to the first, the body's
 * template on the saved residuals, carrying the state's cotangent and the
 * adjoints of the variables the body reads. */
/* The reversed iterations off + count - 1 down to off of a loop entry,
 * from the reversed state st (the state's cotangent, then the carried
 * adjoints); the residuals of iteration off + t are bufs[.][t]. Returns
 * the reversed state after them. */
static CAtom *rev_steps(CBlock *b, Entry *en, CAtom *count, CAtom *off, CAtom *st, CAtom **bufs)
{
    Tmpl *tm = en->body;
    int no = en->nouts, tot = 1 + no, nr = en->nargs;
    CVar **rv_ = en->saved;
    ForLoop L = for_begin(count, st);
    CBlock *lb = L.body;
    CAtom *c = untuple(lb, L.s, tot, 0);
    CAtom **accs = NEWN(CAtom *, no > 0 ? no : 1);
    for (int j = 0; j < no; j++)
        accs[j] = untuple(lb, L.s, tot, 1 + j);
    CAtom *t = isub(lb, isub(lb, count, ilit(1)), L.i);
    CAtom *it = off ? iadd(lb, off, t) : t;
    CVar **from = NEWN(CVar *, tm->nres + 1);
    CAtom **to = NEWN(CAtom *, tm->nres + 1);
    int m = 0;
    if (en->remat->nbinds) {
        CBlock *rc = en->ivar ? core_copy_block(en->remat, &en->ivar, &it, 1)
                              : core_copy_block(en->remat, NULL, NULL, 0);
        for (int j = 0; j < rc->nbinds; j++) {
            push_bind(lb, rc->binds[j].var, rc->binds[j].e);
            for (int q = 0; q < tm->nres; q++)
                if (tm->res[q] == en->remat->binds[j].var) {
                    from[m] = tm->res[q];
                    to[m++] = core_atom_var(rc->binds[j].var);
                }
        }
    }
    for (int j = 0; j < nr; j++) {
        from[m] = rv_[j];
        to[m++] = index1(lb, bufs[j], t);
    }
    for (int j = 0; j < tm->nres; j++) {
        if (tm->res[j] == en->ivar) {
            from[m] = en->ivar;
            to[m++] = it;
        } else if (save_kind(tm->res[j]->type) == SAVE_NONE) {
            from[m] = tm->res[j];
            to[m++] = core_atom_unit();
        }
    }
    CAtom *r = tmpl_inst(lb, tm, c, accs, from, to, m);
    bool all_acc = true;
    for (int j = 0; j < no; j++)
        all_acc &= tm->accm[j];
    if (!all_acc) { /* adjoints not passed in: add this iteration's */
        CAtom **nx = NEWN(CAtom *, tot);
        nx[0] = untuple(lb, r, tot, 0);
        for (int j = 0; j < no; j++) {
            CAtom *v = untuple(lb, r, tot, 1 + j);
            nx[1 + j] = tm->accm[j] ? v : add_of(lb, accs[j], v);
        }
        r = tuple_of(lb, nx, tot);
    }
    return for_end(b, &L, r);
}

/* Checkpointing (Griewank, "Achieving logarithmic growth of temporal and
 * spatial complexity in reverse automatic differentiation", 1992, in its
 * simplest form): the forward loop saved the state at the start of each
 * of K segments of seg iterations; the reversed loop takes the segments
 * from the last, recomputes one segment's iterations from its saved state
 * while saving their residuals, and reverses them. Memory: K states plus
 * one segment's residuals; time: one more forward pass. */
static CAtom *rev_segments(CBlock *b, Entry *en, CAtom *st)
{
    int nr = en->nargs;
    CVar **rv_ = en->saved;
    ForLoop OL = for_begin(en->ck_k, st);
    CBlock *ob = OL.body;
    CAtom *g = isub(ob, isub(ob, en->ck_k, ilit(1)), OL.i);
    CAtom *lo = P2(ob, P_MUL, type_int(), g, en->ck_seg);
    CAtom *len = P2(ob, P_MIN, type_int(), en->ck_seg, isub(ob, en->count, lo));
    CAtom *len0 = P2(ob, P_MAX, type_int(), len, ilit(0));
    CAtom *s0 = index1(ob, en->ck_buf, g);
    /* the segment again, saving its residuals */
    int tot = 1 + nr;
    CAtom **init = NEWN(CAtom *, tot);
    init[0] = s0;
    for (int j = 0; j < nr; j++)
        init[1 + j] = buf_init(ob, rv_[j]->type, len0);
    ForLoop FL = for_begin(len, tuple_of(ob, init, tot));
    CBlock *fb = FL.body;
    CAtom *sv = untuple(fb, FL.s, tot, 0);
    /* the buffers taken out of the state first, as the forward loop does,
     * so that each store updates its buffer in place (a projection after
     * the body leaves the state holding it: a copy per store, quadratic) */
    CAtom **bv = NEWN(CAtom *, nr > 0 ? nr : 1);
    for (int j = 0; j < nr; j++)
        bv[j] = untuple(fb, FL.s, tot, 1 + j);
    CAtom *iv = iadd(fb, lo, FL.i);
    CVar *from[2] = {en->ck_state, en->ivar};
    CAtom *to[2] = {sv, iv};
    CAtom *r = splice(fb, en->ck_body, from, to, 2);
    CAtom **next = NEWN(CAtom *, tot);
    next[0] = proj(fb, r, 0);
    for (int j = 0; j < nr; j++) {
        CAtom *v = proj(fb, r, 1 + j);
        next[1 + j] = buf_store(fb, bv[j], v, FL.i, len0);
    }
    CAtom *seg = for_end(ob, &FL, tuple_of(fb, next, tot));
    CAtom **bufs = NEWN(CAtom *, nr > 0 ? nr : 1);
    for (int j = 0; j < nr; j++)
        bufs[j] = untuple(ob, seg, tot, 1 + j);
    return for_end(b, &OL, rev_steps(ob, en, len, lo, OL.s, bufs));
}

/* The reversed loop: from the last iteration to the first, the body's
 * template on the saved residuals, carrying the state's cotangent and the
 * adjoints of the variables the body reads. */
void bwd_loop(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    int no = en->nouts, tot = 1 + no;
    CAtom **init = NEWN(CAtom *, tot);
    init[0] = materialize(b, a, core_atom_var(en->y), en->y->type);
    for (int j = 0; j < no; j++)
        init[1 + j] = materialize(b, adj_get(B, en->outs[j]), core_atom_var(en->outs[j]), en->outs[j]->type);
    CAtom *st = tuple_of(b, init, tot);
    CAtom *fin = en->ck_body ? rev_segments(b, en, st) : rev_steps(b, en, en->count, NULL, st, en->bufs);
    for (int j = 0; j < no; j++)
        adj_set(B, en->outs[j], A(untuple(b, fin, tot, 1 + j)));
    contrib(B, b, en->init, A(untuple(b, fin, tot, 0)));
}

/* ------------------------------------------------------------ SOACs */

/* The prim a two-parameter lambda applies to its parameters, if that is
 * all it does. */
static Prim lambda_binop(CLambda *l)
{
    if (l->nparams != 2 || l->body->nbinds != 1)
        return P__COUNT;
    CBind *bd = &l->body->binds[0];
    CExpr *e = bd->e;
    if (e->kind != CE_PRIM || e->nargs != 2 || l->body->result->kind != CA_VAR ||
        l->body->result->u.var != bd->var)
        return P__COUNT;
    CAtom *a = e->args[0], *b = e->args[1];
    if (a->kind != CA_VAR || b->kind != CA_VAR)
        return P__COUNT;
    bool same = a->u.var == l->params[0] && b->u.var == l->params[1];
    bool swap = a->u.var == l->params[1] && b->u.var == l->params[0];
    if (same || (swap && (e->u.prim.op == P_ADD || e->u.prim.op == P_MUL)))
        return e->u.prim.op;
    return P__COUNT;
}

/* fold f acc xs (and reduce) as a loop over the elements. */
static void fold_to_loop(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    CLambda *l = e->u.soac.fn;
    CBlock *tmp = core_block_new();
    CAtom *xs = e->args[1];
    ForLoop L = for_begin(length_of(tmp, xs), e->args[0]);
    CAtom *to[2] = {L.s, index1(L.body, xs, L.i)};
    CAtom *r = splice(L.body, l->body, l->params, to, 2);
    CAtom *lp = for_end(tmp, &L, r);
    push_bind(tmp, x, atom_e(lp));
    fwd_block(F, tmp, dst);
}

/* scan f ne xs as a loop that writes each partial result. */
static void scan_to_loop(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    CLambda *l = e->u.soac.fn;
    CBlock *tmp = core_block_new();
    CAtom *ne = e->args[0], *xs = e->args[1];
    CAtom *n = length_of(tmp, xs);
    CAtom *out0 = P2(tmp, P_REPLICATE, x->type, n, ne);
    CAtom *init[2] = {ne, out0};
    ForLoop L = for_begin(n, tuple_of(tmp, init, 2));
    CAtom *acc = proj(L.body, L.s, 0), *o = proj(L.body, L.s, 1);
    CAtom *to[2] = {acc, index1(L.body, xs, L.i)};
    CAtom *r = splice(L.body, l->body, l->params, to, 2);
    CAtom *next[2] = {r, update_at(L.body, o, r, &L.i, 1)};
    CAtom *lp = for_end(tmp, &L, tuple_of(L.body, next, 2));
    push_bind(tmp, x, core_prim(P_PROJ, x->type, e->loc, &lp, 1, 1));
    fwd_block(F, tmp, dst);
}

/* filter p xs as a gather: the kept indices keep = filter (fn i => p xs[i])
 * (iota n) carry no derivative, and y = map (fn j => xs[j]) keep
 * transposes, as any gather, to a scatter of ȳ into one zero array (the
 * map's pullback accumulates a captured array in place). */
static void filter_to_gather(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    CLambda *l = e->u.soac.fn;
    CBlock *tmp = core_block_new();
    CAtom *xs = e->args[0];
    Type *it = type_array(type_int(), 1);
    CAtom *is = P1(tmp, P_IOTA, it, length_of(tmp, xs));
    CVar *i = core_var("i", type_int(), R->loc);
    CBlock *pb = core_block_new();
    CAtom *xi = index1(pb, xs, core_atom_var(i));
    pb->result = splice(pb, l->body, l->params, &xi, 1);
    CAtom *keep = soac(tmp, SOAC_FILTER, it, lambda_n(&i, 1, pb), &is, 1);
    CVar *j = core_var("j", type_int(), R->loc);
    CBlock *gb = core_block_new();
    gb->result = index1(gb, xs, core_atom_var(j));
    CAtom *y = soac(tmp, SOAC_MAP, x->type, lambda_n(&j, 1, gb), &keep, 1);
    push_bind(tmp, x, atom_e(y));
    fwd_block(F, tmp, dst);
}

void fwd_soac(Frame *F, CBlock *dst, CVar *x, CExpr *e)
{
    if (!has_tan(x->type) || !uses_active_expr(e)) {
        fpush(F, dst, x, e);
        return;
    }
    Prim op = lambda_binop(e->u.soac.fn);
    switch (e->u.soac.kind) {
    case SOAC_MAP:
        fpush(F, dst, x, e);
        tape(F, EN_MAP, x, e);
        return;
    case SOAC_REDUCE:
        if (op == P_ADD && is_fl(elem_of(aty(e->args[1])))) {
            fpush(F, dst, x, e);
            tape(F, EN_REDUCE_ADD, x, e);
            return;
        }
        fold_to_loop(F, dst, x, e);
        return;
    case SOAC_FOLD:
        fold_to_loop(F, dst, x, e);
        return;
    case SOAC_SCAN:
        if (op == P_ADD && rank_of(aty(e->args[1])) == 1 && is_fl(aty(e->args[0]))) {
            fpush(F, dst, x, e);
            tape(F, EN_SCAN_ADD, x, e);
            return;
        }
        scan_to_loop(F, dst, x, e);
        return;
    case SOAC_FILTER:
        filter_to_gather(F, dst, x, e);
        return;
    }
}

/* Dead code in a pullback that recomputes its primal: an unused binding
 * without effects goes, also one that could fail (an index, a map with
 * one) since it already succeeded once in the primal. Calls stay. */
static bool dce_pure_block(CBlock *b);

static bool dce_pure(CExpr *e)
{
    switch (e->kind) {
    case CE_ATOM: case CE_LAMBDA:
        return true;
    case CE_PRIM:
        return !(core_prims[e->u.prim.op].flags & PRIM_EFFECT);
    case CE_IF:
        return dce_pure_block(e->u.if_.then_) && dce_pure_block(e->u.if_.else_);
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++)
            if (!dce_pure_block(e->u.case_.alts[i].body))
                return false;
        return true;
    case CE_LOOP:
        return (!e->u.loop.cond || dce_pure_block(e->u.loop.cond)) && dce_pure_block(e->u.loop.body);
    case CE_SOAC:
        return dce_pure_block(e->u.soac.fn->body);
    default:
        return false;
    }
}

static bool dce_pure_block(CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++)
        if (!dce_pure(b->binds[i].e))
            return false;
    return true;
}

static void count_use(CAtom *a, void *ctx)
{
    if (a->kind == CA_VAR)
        core_map_put(ctx, a->u.var, (void *)((intptr_t)core_map_get(ctx, a->u.var) + 1));
}

static void dce_recomputed(CBlock *b)
{
    for (bool changed = true; changed;) {
        changed = false;
        CoreMap uses = {0};
        walk_block(b, count_use, NULL, &uses);
        int k = 0;
        for (int i = 0; i < b->nbinds; i++) {
            CBind *bd = &b->binds[i];
            if (!core_map_get(&uses, bd->var) && dce_pure(bd->e)) {
                changed = true;
                continue;
            }
            b->binds[k++] = *bd;
        }
        b->nbinds = k;
        core_map_free(&uses);
    }
}

/* The frame of a map's pullback: a fresh copy of f whose parameters are
 * active where the arrays are, its forward sweep (recomputed) emitted into
 * body. */
static CLambda *map_frame(Bwd *B, CExpr *e, CBlock *body, Frame **out)
{
    CLambda *l = core_copy_lambda(e->u.soac.fn, NULL, NULL, 0);
    Frame *F2 = NEW(Frame);
    F2->recompute = true;
    F2->norec = B->F->norec;
    for (int k = 0; k < e->nargs; k++) {
        core_map_put(&F2->bound, l->params[k], (void *)1);
        if (atom_active(e->args[k]))
            set_active(l->params[k]);
    }
    fwd_block(F2, l->body, body);
    *out = F2;
    return l;
}

/* map f xs1 .. xsn: for each active xs_k, a map of the pullback lambda
 * (which recomputes f's primal at the element, then runs its backward
 * sweep) over the xs and ȳ. Captured variables: the adjoints of floats are
 * mapped and summed; those of arrays and structures are accumulated by one
 * loop over the elements into the incoming adjoint, in place (a gather
 * a[idx[i]] in f costs O(1) per element, not an array per element). */
void bwd_map(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    CExpr *e = en->e;
    int n = e->nargs;
    CAtom *cty = materialize(b, a, core_atom_var(en->y), en->y->type);
    Frame *F2;
    CBlock *pb = core_block_new();
    CLambda *l = map_frame(B, e, pb, &F2);
    CVar *c = core_var("ct", row_t(aty(cty)), R->loc);
    Bwd *B2 = NEW(Bwd);
    B2->F = F2;
    bwd_run(B2, pb, l->body->result, core_atom_var(c));
    /* outputs of the mapped pullback: the active arrays' elements, then
     * captured floats; the other captured variables go to the loop */
    Vec outs = {0}, tgts = {0}, looped = {0};
    for (int k = 0; k < n; k++)
        if (atom_active(e->args[k])) {
            CAtom *g = materialize(pb, adj_get(B2, l->params[k]), core_atom_var(l->params[k]), l->params[k]->type);
            vec_push(&outs, g);
            vec_push(&tgts, e->args[k]);
        }
    int narr = outs.len;
    for (int i = 0; i < B2->keys.len; i++) {
        CVar *v = B2->keys.data[i];
        if (core_map_get(&F2->bound, v))
            continue;
        if (!is_fl(v->type)) {
            vec_push(&looped, v);
            continue;
        }
        vec_push(&outs, materialize(pb, adj_get(B2, v), core_atom_var(v), v->type));
        vec_push(&tgts, core_atom_var(v));
    }
    int no = outs.len;
    CAtom **arrs = NEWN(CAtom *, n + 1);
    for (int k = 0; k < n; k++)
        arrs[k] = e->args[k];
    arrs[n] = cty;
    if (no) {
        pb->result = tuple_of(pb, (CAtom **)outs.data, no);
        dce_recomputed(pb);
        CVar **ps = NEWN(CVar *, n + 1);
        for (int k = 0; k < n; k++)
            ps[k] = l->params[k];
        ps[n] = c;
        CLambda *pl = lambda_n(ps, n + 1, pb);
        /* several outputs of a costly body: one map to an array of tuples,
         * then one cheap map per output (instead of recomputing the body
         * per output) */
        CAtom *all = NULL;
        if (no > 1 && block_size(pb) > 12)
            all = soac(b, SOAC_MAP, type_array(aty(pb->result), 1), pl, arrs, n + 1);
        for (int j = 0; j < no; j++) {
            CAtom *tg = tgts.data[j];
            CAtom *per;
            Type *et;
            if (all) {
                CVar *t = core_var("t", aty(pb->result), R->loc);
                CBlock *tb = core_block_new();
                tb->result = proj(tb, core_atom_var(t), j);
                et = aty(tb->result);
                Type *rt = j < narr ? tan_t(aty(tg)) : type_array(et, 1);
                per = soac(b, SOAC_MAP, rt, lambda_n(&t, 1, tb), &all, 1);
            } else {
                CLambda *cl = core_copy_lambda(pl, NULL, NULL, 0);
                cl->body->result = untuple(cl->body, cl->body->result, no, j);
                et = aty(cl->body->result);
                cl->type = lambda_n(cl->params, n + 1, cl->body)->type;
                Type *rt = j < narr ? tan_t(aty(tg)) : type_array(et, 1);
                per = soac(b, SOAC_MAP, rt, cl, arrs, n + 1);
            }
            contrib(B, b, tg, A(j < narr ? per : sum_all(b, per)));
        }
    }
    int nl = looped.len;
    if (nl) {
        /* for i < length xs: the element's pullback, the looped adjoints
         * passed in and out */
        CAtom **init = NEWN(CAtom *, nl);
        for (int j = 0; j < nl; j++) {
            CVar *v = looped.data[j];
            init[j] = materialize(b, adj_get(B, v), core_atom_var(v), v->type);
        }
        ForLoop L = for_begin(length_of(b, e->args[0]), tuple_of(b, init, nl));
        CBlock *lb = L.body;
        CBlock *body = core_block_new();
        Frame *F3;
        CLambda *l3 = core_copy_lambda(e->u.soac.fn, NULL, NULL, 0);
        for (int k = 0; k < n; k++)
            push_bind(lb, l3->params[k], atom_e(index1(lb, arrs[k], L.i)));
        CAtom *ci = index1(lb, cty, L.i);
        F3 = NEW(Frame);
        F3->recompute = true;
        F3->norec = B->F->norec;
        for (int k = 0; k < n; k++) {
            core_map_put(&F3->bound, l3->params[k], (void *)1);
            if (atom_active(e->args[k]))
                set_active(l3->params[k]);
        }
        fwd_block(F3, l3->body, body);
        Bwd *B3 = NEW(Bwd);
        B3->F = F3;
        for (int j = 0; j < nl; j++)
            adj_set(B3, looped.data[j], A(untuple(lb, L.s, nl, j)));
        bwd_run(B3, body, l3->body->result, ci);
        CAtom **next = NEWN(CAtom *, nl);
        for (int j = 0; j < nl; j++) {
            CVar *v = looped.data[j];
            next[j] = materialize(body, adj_get(B3, v), core_atom_var(v), v->type);
        }
        body->result = tuple_of(body, next, nl);
        dce_recomputed(body);
        for (int i = 0; i < body->nbinds; i++)
            push_bind(lb, body->binds[i].var, body->binds[i].e);
        CAtom *fin = for_end(b, &L, body->result);
        for (int j = 0; j < nl; j++)
            adj_set(B, looped.data[j], A(untuple(b, fin, nl, j)));
    }
    vec_free(&outs);
    vec_free(&tgts);
    vec_free(&looped);
}

/* reduce (+) ne xs: every element and ne get ȳ. */
void bwd_reduce_add(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    CExpr *e = en->e;
    CAtom *xs = e->args[1];
    contrib(B, b, e->args[0], A(ct));
    if (atom_active(xs)) {
        CAtom *n = length_of(b, xs);
        contrib(B, b, xs, A(is_arr(aty(ct)) ? P2(b, P_REPLICATE, tan_t(aty(xs)), n, ct) : fill(b, ct, &n, 1)));
    }
}

/* scan (+) ne xs: x̄_j = sum over i >= j of ȳ_i (a reversed scan), ne gets
 * the sum of ȳ. */
void bwd_scan_add(Bwd *B, CBlock *b, Entry *en)
{
    Adj *a = adj_get(B, en->y);
    if (!a)
        return;
    CAtom *ct = materialize(b, a, core_atom_var(en->y), en->y->type);
    CExpr *e = en->e;
    contrib(B, b, e->args[0], A(sum_all(b, ct)));
    if (atom_active(e->args[1])) {
        CAtom *r = scan_prim(b, P_ADD, flit(aty(ct), 0), un(b, P_REVERSE, ct));
        contrib(B, b, e->args[1], A(un(b, P_REVERSE, r)));
    }
}

