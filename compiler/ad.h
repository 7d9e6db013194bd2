/* ad.h — internal interface between the files of the forward / Taylor
 * engine: ad_tangent.c (types, emission helpers, zeros, representations),
 * ad_forward.c (the macro), ad_rules.c (the forward rule of each
 * primitive) and ad_forms.c (jvp, jacfwd, hessian, hvp, fwdgrad and the
 * reusable entry ad_forward_lambda). The interface shared with the other
 * AD files (ad.c, ad_taylor.c, ad_reverse.c) is the ad section of dcc.h. */
#ifndef DCC_AD_H
#define DCC_AD_H

#include "dcc.h"

/* ---- types */

static inline Type *rs(Type *t) { return type_resolve(t); }

static inline bool is_floatish(Type *t)
{
    t = rs(t);
    return t->kind == TY_FLOAT || t->kind == TY_F32;
}

static inline Type *elem_of(Type *t) /* the element type of an array, else t */
{
    t = rs(t);
    return t->kind == TY_ARRAY ? rs(t->elem) : t;
}

static inline int rank_of(Type *t) /* 0 for a non-array */
{
    t = rs(t);
    return t->kind == TY_ARRAY ? t->rank : 0;
}

static inline int rank_of_atom(CAtom *a) { return rank_of(core_atom_type(a)); }

static inline Type *tangent_of(Type *t) { return rs(type_tangent(t)); }

/* How values of a type are represented by the macro. */
typedef enum {
    TK_DIFF, /* coefficients c[0..K] */
    TK_NONE, /* c[0] only: no tangent (int, bool, ...) or functions inside data */
    TK_FUNC, /* a function: its dual closure */
} TKind;

TKind ad_tkind(Type *t);
Type *ad_pack_type(Type *t, int K); /* Pack(t) for order K (see dcc.h) */

/* ---- emission (ad_tangent.c) */

const char *ad_dname(const char *n);              /* the tangent's name: dx for x */
void ad_push_bind(CBlock *b, CVar *v, CExpr *e);  /* appends an existing binding */
CAtom *ad_bind_expr(AdFwd *F, const char *name, CExpr *e); /* binds e in F->blk */
CAtom *ad_emit1(AdFwd *F, const char *name, Prim op, Type *t, CAtom *a, int64_t imm);
CAtom *ad_emit2(AdFwd *F, const char *name, Prim op, Type *t, CAtom *a, CAtom *b);
static inline bool is_flit(CAtom *a) { return a && a->kind == CA_FLOAT; }
/* NULL when the atom is a known zero tangent: a 0.0 literal, zeros_like,
 * a tuple or record of known zeros. */
CAtom *ad_nz(CAtom *a);
void ad_zero_reset(void); /* forgets the zero_<D> helpers (ad_forward_reset) */

/* ---- representations (ad_tangent.c) */

AdRep *ad_rep_new(AdFwd *F);               /* all coefficients NULL */
AdRep *ad_rep_of(AdFwd *F, CAtom *a);      /* of an atom of the region, or constant */
bool ad_rep_has_tangent(AdFwd *F, AdRep *r);
/* Pack(t) of a representation (materialising zeros), and back. */
CAtom *ad_pack(AdFwd *F, AdRep *r, Type *t, Loc loc);
AdRep *ad_unpack(AdFwd *F, CAtom *a, Type *t);

/* ---- the macro (ad_forward.c) */

CAtom *ad_emit_soac(AdFwd *F, const char *name, SoacKind k, Type *t, CLambda *l, CAtom **args, int n);
CAtom *ad_bind_lambda(AdFwd *F, const char *name, CLambda *l, Type *t);

/* ---- rules (ad_rules.c) */

int ad_dims_of(AdFwd *F, CAtom *a, CAtom **out); /* the dimensions of an array as int atoms */

#endif /* DCC_AD_H */
