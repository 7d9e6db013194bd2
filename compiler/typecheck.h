/* typecheck.h — internals shared by the files of the type checker; the
 * public interface is the `types` section of dcc.h.
 *
 *   typeenv.c      module scopes and name lookup, "did you mean", type
 *                  mismatch messages, annotations and type declarations
 *   constraints.c  deferred constraints (overloading), instantiation and
 *                  generalisation of schemes
 *   patterns.c     typing of patterns; exhaustiveness and redundancy
 *   typecheck.c    expressions, top-level definitions by components, the
 *                  program; typecheck_reset
 *
 * Everything here lives in the compilation's arena, except the vectors of
 * TcState (heap, freed at the end of typecheck_program). */
#ifndef DCC_TYPECHECK_H
#define DCC_TYPECHECK_H

#include "dcc.h"

/* ---- maps keyed by pointers (interned names, bindings); arena ---------- */

typedef struct Map {
    const void **keys;
    void **vals;
    int cap, n;
} Map;

void *tc_map_get(const Map *m, const void *k);
void tc_map_put(Map *m, const void *k, void *v);
bool tc_vec_has(Vec *v, void *p);

/* ---- module scopes ------------------------------------------------------ */

typedef struct ConRef {
    TypeDecl *decl;
    int index;
} ConRef;

typedef struct FieldRef {
    TypeDecl *decl;
    int index;
    struct FieldRef *next;
} FieldRef;

/* What a module sees: its own top-level names, then those of the modules
 * it imports (later imports shadow earlier ones), then the prelude's, then
 * the built-ins. */
typedef struct ModEnv {
    Module *m;
    Map values; /* name -> Binding */
    Map types;  /* name -> TypeDecl */
    Map cons;   /* name -> ConRef */
    Map fields; /* name -> FieldRef list */
    Vec imports; /* ModEnv*, most recent first, the prelude last */
} ModEnv;

/* An annotation type variable 'a of the current definition. */
typedef struct TVar {
    const char *name;
    Type *var;
} TVar;

/* The state of one run of typecheck_program (cleared at its start and by
 * typecheck_reset). */
typedef struct TcState {
    int level;
    Vec locals;    /* Binding* in scope, innermost last */
    ModEnv *env;
    Vec pending;   /* Constraint* not yet solved */
    int solved_at; /* type_bind_count when last solved */
    Vec tvars;     /* TVar* of the current definition */
    Map envs;      /* Module* -> ModEnv* */
    ModEnv *prelude;
    bool quiet;    /* converting annotations without reporting */
    Vec pat_names; /* names bound by the pattern being checked */
    Vec all_exprs; /* every checked Expr (for defaulting) */
    Vec all_pats;
    bool too_large; /* a type past TYPE_TREE_LIMIT was reported */
    Map derived;    /* type node -> constraints derived on it (constraints.c) */
} TcState;

extern TcState tc;

/* ---- typeenv.c ---------------------------------------------------------- */

ModEnv *tc_env_of(Module *m);
ModEnv *tc_new_env(Module *m);
Binding *tc_lookup_local(const char *name);
Binding *tc_lookup_global(ModEnv *e, const char *name);
ConRef *tc_lookup_con(ModEnv *e, const char *name);
/* All visible records with field `name`, nearest scope first (at most max). */
int tc_lookup_fields(ModEnv *e, const char *name, FieldRef **out, int max);
int tc_field_index(TypeDecl *d, const char *name); /* -1 if none */
Type *tc_fresh_instance(TypeDecl *d, int level);   /* D 'a1 .. 'an */

enum { NS_VALUE, NS_TYPE, NS_CON, NS_FIELD };
/* A visible name of namespace ns close to `name` (edit distance), or NULL. */
const char *tc_suggestion(const char *name, int ns);
const char *tc_suggest_among(const char *name, const char **cands, int n);

const char *tc_a_an(const char *s); /* "a" or "an" before s */
void tc_note_origin(Type *want);
void tc_report_mismatch(Loc loc, const char *what, Type *got, Type *want);
bool tc_expect(Expr *e, Type *want, const char *what);

/* Whether t is past TYPE_TREE_LIMIT as a tree; reports the first such type
 * of the program at loc ("WHAT is too large"), the others are poisoned
 * silently (they grow out of the first). */
bool tc_too_large(Type *t, Loc loc, const char *what);
Type *tc_base_type(const char *name); /* int, float, ...; NULL otherwise */
Type *tc_conv_annot(TypeExpr *te);    /* an annotation; 'a from tc.tvars */
void tc_declare_types(ModEnv *e);
void tc_define_types(ModEnv *e);
void tc_mark_recursive(ModEnv *e);

/* ---- constraints.c ------------------------------------------------------ */

Constraint *tc_con_new(ConstraintKind k, Loc loc, const char *what, int op);
bool tc_solve_one(Constraint *c, bool final);
void tc_solve_pending(void);
void tc_maybe_solve(void); /* when a variable was bound since the last time */
void tc_solve_final(void); /* with defaults, at the end of the program */
Binding *tc_find_learner_op(int op);
Type *tc_instantiate(Binding *b, Loc loc, Type ***inst);
void tc_collect_vars(Type *t, int lv, Vec *out); /* variables above lv */
Type *tc_abstract(Type *t, Vec *vars);           /* vars[i] -> TY_QVAR i */
void tc_generalise(Binding **bs, const bool *gen_ok, int n, int lv);

/* ---- patterns.c --------------------------------------------------------- */

Binding *tc_new_local(const char *name, Loc loc, Type *t);
void tc_check_pat(Pat *p, Type *t);
/* The record type of a literal or pattern with these fields (reported and
 * NULL when no record declares the first). */
TypeDecl *tc_record_for_fields(const char **names, int n, Loc loc);
void tc_warn_refutable(Pat *p, const char *what);
void tc_check_match_cases(Expr *e);

/* ---- types.c, builtins.c: forget per-compilation caches ---------------- */

void types_reset(void);
void builtins_reset(void);

#endif /* DCC_TYPECHECK_H */
