/* lower.h — internals shared by the files of the lowering (typed AST to
 * Core IR); the interface shared with match.c and the rest of the compiler
 * is the lowering part of dcc.h.
 *
 *   lower.c      programs and exported derivatives, monomorphisation (def
 *                instances, lambda-lifted `let rec`), known functions and
 *                their application, closures, expressions
 *   lower_ops.c  operators (vector-space arithmetic on tuples and records,
 *                structural equality with eq_<type> helpers), built-ins to
 *                primitives, SOACs and DERIVs
 *
 * Everything here lives in the compilation's arena. */
#ifndef DCC_LOWER_H
#define DCC_LOWER_H

#include "dcc.h"

/* ---- values and known functions ------------------------------------------ */

typedef struct Fn Fn;

/* The value of an expression during lowering: an atom, or a known function
 * not yet turned into a closure. */
typedef struct Val {
    CAtom *atom;
    Fn *fn;
} Val;

/* Substitution entries captured with a syntactic lambda, pushed again when
 * its body is lowered (a polymorphic let's value applied later). */
typedef struct Snap {
    Type **from, **to;
    int n;
} Snap;

typedef enum {
    FN_DEF,      /* a top-level def instance (or a lifted let rec) */
    FN_BUILTIN,  /* a built-in function */
    FN_CON,      /* a constructor with an argument */
    FN_OPFN,     /* an operator section (+) */
    FN_LAMBDA,   /* fn p1 .. pn => e, not yet lowered */
    FN_CLOSURE,  /* an unknown function value */
    FN_COMPOSE,  /* f >>> g on functions */
} FnKind;

struct Fn {
    FnKind kind;
    Type *type;  /* ground type of the function still to be applied */
    int arity;   /* arguments still needed before it acts */
    Val *pre;    /* arguments received so far (DEF: also free variables) */
    int npre;
    CFun *fun;   /* FN_DEF */
    Builtin bi;  /* FN_BUILTIN */
    int con;     /* FN_CON */
    OpKind op;   /* FN_OPFN */
    Pat **lparams; /* FN_LAMBDA: fn p1 => .. fn pn => body, flattened */
    int nlparams;
    Expr *lbody;
    Snap *snap;  /* FN_LAMBDA */
    CAtom *clo;  /* FN_CLOSURE */
    Val f, g;    /* FN_COMPOSE: g after f */
    Loc loc;
};

/* ---- the lowering state (see dcc.h) --------------------------------------- */

struct Lower {
    CProgram *prog;
    Module *root;
    CoreMap insts;     /* Decl -> Vec* of Inst* */
    Vec pending;       /* Inst* not yet lowered */
    CoreMap names;     /* interned function name -> (void*)1 */
    CoreMap sub;       /* generic TY_VAR -> ground type */
    Vec sub_stack;     /* SubEntry* */
    CoreMap env;       /* Binding -> EnvEntry* (innermost) */
    Vec env_stack;     /* EnvEntry* */
    Vec eq_helpers;    /* CFun* of eq_<type> helpers */
    CoreMap visiting;  /* free-variable walk: EV_POLY values seen */
};

/* ---- small helpers ------------------------------------------------------- */

static inline Val val_atom(CAtom *a) { return (Val){a, NULL}; }
static inline Val val_fn(Fn *f) { return (Val){NULL, f}; }

static inline Type *fn_arg(Type *t)
{
    t = type_resolve(t);
    return t->kind == TY_FUNC ? type_resolve(t->args[0]) : type_unit();
}

static inline Type *fn_res(Type *t, int n)
{
    for (int i = 0; i < n; i++) {
        t = type_resolve(t);
        t = t->kind == TY_FUNC ? t->args[1] : type_unit();
    }
    return type_resolve(t);
}

static inline CAtom *emit_comp(CBlock *b, CAtom *x, Type *t, int i, Loc loc)
{
    t = type_resolve(t);
    if (t->kind == TY_TUPLE)
        return core_emit_prim(b, "c", P_PROJ, core_type_proj(t, i), loc, &x, 1, i);
    return core_emit_prim(b, t->decl->fields[i], P_FIELD, core_type_field(t, i), loc, &x, 1, i);
}

static inline CAtom *bind_expr(CBlock *b, const char *name, CExpr *e)
{
    return core_atom_var(core_bind(b, name, e));
}

static inline CAtom *emit_error(CBlock *b, Type *t, Loc loc, const char *msg)
{
    CAtom *m = core_atom_string(msg);
    return core_emit_prim(b, "err", P_ERROR, t, loc, &m, 1, 0);
}

static inline CExpr *mk_call(CFun *f, Type *t, Loc loc, CAtom **args, int n)
{
    CExpr *e = core_expr(CE_CALL, t, loc);
    e->u.fun = f;
    e->nargs = n;
    e->args = NEWN(CAtom *, n > 0 ? n : 1);
    for (int i = 0; i < n; i++)
        e->args[i] = args[i];
    return e;
}

static inline CExpr *mk_if(CAtom *c, Type *t, Loc loc, CBlock *th, CBlock *el)
{
    CExpr *e = core_expr(CE_IF, t, loc);
    e->nargs = 1;
    e->args = NEWN(CAtom *, 1);
    e->args[0] = c;
    e->u.if_.then_ = th;
    e->u.if_.else_ = el;
    return e;
}

static inline CBlock *block_of(CAtom *a)
{
    CBlock *b = core_block_new();
    b->result = a;
    return b;
}

static inline Fn *fn_new(FnKind k, Type *t, int arity, Loc loc)
{
    Fn *f = NEW(Fn);
    f->kind = k;
    f->type = t;
    f->arity = arity;
    f->loc = loc;
    return f;
}

/* ---- lower.c ------------------------------------------------------------- */

/* A fresh C-friendly function name from base (base, base_1, ...). */
const char *lower_unique_name(Lower *L, const char *base);
/* A C-friendly base name: primes become _p, other odd characters _. */
const char *lower_fun_base(const char *name);
/* The value as an atom: a known function becomes a closure. */
CAtom *lower_to_atom(Lower *L, Val v, CBlock *b, Loc loc);
/* Applies the known function f to n arguments, emitting into b. */
Val lower_apply(Lower *L, Fn *f, Val *args, int n, CBlock *b, Loc loc);

/* ---- lower_ops.c --------------------------------------------------------- */

/* -x, componentwise on tuples and records. */
CAtom *lower_negate(Lower *L, CAtom *x, CBlock *b, Loc loc);
/* `a && b` / `a || b` (EX_BINOP e), the right operand evaluated if needed. */
CAtom *lower_short_circuit(Lower *L, Expr *e, CBlock *b);
/* A binary operator on two evaluated operands. rt: the result type. */
CAtom *lower_binop(Lower *L, OpKind op, CAtom *x, CAtom *y, Type *rt, CBlock *b, Loc loc);
/* A saturated built-in: args[0..n) (function positions may be known
 * functions), rt the result type. */
Val lower_builtin(Lower *L, Builtin id, Val *args, int n, Type *rt, CBlock *b, Loc loc);

#endif
