/* dcc.h — the one internal header of the DL compiler.
 *
 * One section per stage, in pipeline order (see docs/internals.md):
 *   util     arenas, growable vectors, interned names
 *   diag     diagnostics: file:line:col, source line, caret, notes
 *   lexer    tokens (flex, reentrant; the token codes come from bison)
 *   ast      the syntax tree the parser builds
 *   parser   entry points of the bison parser
 *   module   import resolution, the module graph
 *   types    types, schemes, Hindley-Milner inference, tangent types
 *   driver   options shared by the stages
 *
 * Ownership: every compiler structure lives in the arena of its compilation
 * (Arena), freed as a whole at exit; nothing here is freed one by one.
 */
#ifndef DCC_H
#define DCC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ========================================================================
 * util
 * ======================================================================== */

/* An arena: bump allocation in chunks; arena_free releases all at once.
 * Out of memory is fatal (prints and exits 1): the compiler cannot recover. */
typedef struct ArenaChunk ArenaChunk;
typedef struct Arena {
    ArenaChunk *head;
} Arena;

extern Arena *dcc_arena; /* the arena of the current compilation */

void *arena_alloc(Arena *a, size_t size);          /* zeroed, 16-aligned */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void arena_free(Arena *a);

/* Allocation from the current compilation's arena. */
#define NEW(T) ((T *)arena_alloc(dcc_arena, sizeof(T)))
#define NEWN(T, n) ((T *)arena_alloc(dcc_arena, sizeof(T) * (size_t)(n)))

void *xmalloc(size_t n);           /* malloc or die */
void *xrealloc(void *p, size_t n); /* realloc or die */

/* Growable vector of pointers (heap-backed; vec_free releases). */
typedef struct Vec {
    void **data;
    int len, cap;
} Vec;
void vec_push(Vec *v, void *p);
void *vec_pop(Vec *v);
void vec_free(Vec *v);
/* Copies the elements into the arena and returns them (for AST arrays). */
void **vec_freeze(Vec *v);

/* Interned names: equal strings give the same pointer, compare with ==. */
const char *intern(const char *s);
const char *intern_n(const char *s, size_t n);

/* Growable string buffer. */
typedef struct StrBuf {
    char *data;
    size_t len, cap;
} StrBuf;
void sb_putc(StrBuf *b, char c);
void sb_puts(StrBuf *b, const char *s);
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_free(StrBuf *b);

/* ========================================================================
 * diag
 * ======================================================================== */

/* A source range: 1-based line and column (columns count bytes), the end
 * inclusive of its last character. file is the name printed in messages. */
typedef struct Loc {
    const char *file;
    int line, col;
    int end_line, end_col;
} Loc;

extern const Loc loc_none;

/* Source files are registered so that diagnostics can print the line. */
typedef struct SrcFile {
    const char *name; /* as given (printed in messages) */
    const char *path; /* resolved path, or "<stdin>" */
    const char *text; /* whole contents, NUL-terminated */
    size_t len;
} SrcFile;

SrcFile *diag_add_file(const char *name, const char *path, const char *text, size_t len);
SrcFile *diag_find_file(const char *name);

typedef enum { DIAG_ERROR, DIAG_WARNING, DIAG_NOTE } DiagLevel;

/* Prints "file:line:col: level: message", the source line and a caret or
 * underline under the range; colour when stderr is a terminal (or forced).
 * Errors are counted; the driver exits 1 after reporting them all. */
void diag_report(DiagLevel level, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_vreport(DiagLevel level, Loc loc, const char *fmt, va_list ap);
#define error_at(loc, ...) diag_report(DIAG_ERROR, (loc), __VA_ARGS__)
#define warning_at(loc, ...) diag_report(DIAG_WARNING, (loc), __VA_ARGS__)
#define note_at(loc, ...) diag_report(DIAG_NOTE, (loc), __VA_ARGS__)

int diag_error_count(void);
int diag_warning_count(void);
void diag_set_colour(int mode); /* -1 auto (terminal), 0 never, 1 always */
void diag_set_max_errors(int n); /* stop reporting after n errors (0 = none) */
void diag_reset(void);            /* forget counts (REPL, unit tests) */
/* Where diagnostics go (stderr by default; unit tests redirect). */
void diag_set_stream(FILE *f);

/* A fatal error outside any source position: prints "dcc: error: ..." and
 * exits 1. For failures of the environment (cannot open output, no memory). */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

Loc loc_span(Loc a, Loc b); /* from the start of a to the end of b */

/* ========================================================================
 * ast
 * ======================================================================== */

typedef struct Expr Expr;
typedef struct Pat Pat;
typedef struct TypeExpr TypeExpr;
typedef struct Decl Decl;
typedef struct Module Module;
typedef struct Type Type;
typedef struct TypeDecl TypeDecl;
typedef struct Binding Binding;

typedef enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD, OP_MATMUL, OP_POW,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE,
    OP_AND, OP_OR,
    OP_PIPE,    /* e |> f  =  f e */
    OP_COMPOSE, /* f >>> g */
    OP_PAR,     /* f *** g  (parallel composition of learners) */
    OP_NEG, OP_NOT, /* unary */
    OP__COUNT
} OpKind;

const char *op_spelling(OpKind op); /* "+", "-", ..., "|>" */

/* Type syntax as written. */
typedef enum {
    TE_NAME,   /* float, int, 'a option, ('p, 'a, 'b) learner */
    TE_VAR,    /* 'a */
    TE_TUPLE,  /* a * b, (a, b) */
    TE_ARRAY,  /* []a (rank 1 per brackets; [][]a is nested TE_ARRAY) */
    TE_FUNC,   /* a -> b */
    TE_RECORD, /* { f: a, g: b } (only on the right of a type declaration) */
} TypeExprKind;

struct TypeExpr {
    TypeExprKind kind;
    Loc loc;
    const char *name;  /* TE_NAME: type name; TE_VAR: without the quote */
    TypeExpr **args;   /* TE_NAME: parameters; TE_TUPLE: components */
    int nargs;
    TypeExpr *elem;    /* TE_ARRAY element; TE_FUNC parameter */
    TypeExpr *result;  /* TE_FUNC result */
    const char **fields; /* TE_RECORD: names (args hold their types) */
};

typedef enum {
    PAT_WILD,   /* _ */
    PAT_VAR,    /* x */
    PAT_INT, PAT_FLOAT, PAT_BOOL, PAT_STRING, PAT_UNIT,
    PAT_TUPLE,  /* (p, q, ...) */
    PAT_RECORD, /* { a, b = p, ... } */
    PAT_CON,    /* Some p, None, Node (l, x, r) */
    PAT_ANNOT,  /* (p : t) */
} PatKind;

struct Pat {
    PatKind kind;
    Loc loc;
    const char *name;    /* PAT_VAR, PAT_CON (constructor) */
    int64_t ival;        /* PAT_INT, PAT_BOOL */
    double fval;         /* PAT_FLOAT */
    bool is_f32;         /* PAT_FLOAT written with f32 suffix */
    const char *sval;    /* PAT_STRING (unescaped) */
    Pat **items;         /* PAT_TUPLE components, PAT_RECORD field patterns */
    const char **fields; /* PAT_RECORD field names */
    int nitems;
    bool open;           /* PAT_RECORD ends with ", .." (other fields ignored) */
    Pat *arg;            /* PAT_CON argument (NULL for a nullary one); PAT_ANNOT */
    TypeExpr *annot;     /* PAT_ANNOT */
    /* filled by the type checker */
    Type *type;
    Binding *binding;    /* PAT_VAR: the variable it binds */
    TypeDecl *con_decl;  /* PAT_CON: the type that declares the constructor */
    int con_index;       /* PAT_CON: index of the constructor in con_decl */
};

typedef enum {
    EX_INT, EX_FLOAT, EX_BOOL, EX_UNIT, EX_STRING,
    EX_VAR,      /* x, also built-ins such as grad, map, exp */
    EX_CON,      /* constructor used as a value: None, Some (applied via EX_APP) */
    EX_OPFN,     /* operator section: (+), (@), (^) */
    EX_TUPLE,    /* (a, b, ...) */
    EX_ARRAY,    /* [a, b, ...] */
    EX_RECORD,   /* { w1 = a, b1 = b } */
    EX_UPDATE,   /* { p with b1 = z } */
    EX_FIELD,    /* p.w1 */
    EX_PROJ,     /* t.0 */
    EX_INDEX,    /* xs[i], m[i, j], xs[i:j], m[i, :] */
    EX_APP,      /* f x  (one argument; f x y is EX_APP(EX_APP(f, x), y)) */
    EX_BINOP,
    EX_UNOP,
    EX_LAMBDA,   /* fn p1 p2 ... => body */
    EX_LET,      /* let p = e1 in e2 */
    EX_LETREC,   /* let rec f p1 ... = e1 in e2 */
    EX_IF,
    EX_MATCH,
    EX_LOOP,     /* loop p = init for i < n do body / while cond do body */
    EX_ANNOT,    /* (e : t) */
    EX_ERROR,    /* placeholder left by error recovery; type-checks as anything */
} ExprKind;

/* One index in e[...]: a single index, or a slice lo:hi (either may be
 * absent: xs[:j], xs[i:], m[:, j]). */
typedef struct IndexArg {
    Expr *lo, *hi;
    bool is_slice;
} IndexArg;

typedef struct MatchCase {
    Pat *pat;
    Expr *guard; /* reserved: NULL (no guards in DL yet) */
    Expr *body;
    Loc loc;
} MatchCase;

typedef enum { LOOP_FOR, LOOP_WHILE } LoopKind;

struct Expr {
    ExprKind kind;
    Loc loc;
    Type *type; /* filled by the type checker */
    union {
        int64_t ival;     /* EX_INT, EX_BOOL */
        struct { double val; bool is_f32; } fl; /* EX_FLOAT */
        const char *sval; /* EX_STRING (unescaped contents) */
        struct {
            const char *name;
            Binding *binding; /* filled by the type checker */
            Type **inst;      /* checker: the types its scheme's TY_QVARs */
            int ninst;        /* were instantiated with (binding->nqvars) */
        } var;            /* EX_VAR, EX_CON (con: constructor name) */
        struct {
            const char *name;
            TypeDecl *decl; int index; /* filled by the type checker */
        } con;            /* EX_CON */
        OpKind opfn;      /* EX_OPFN */
        struct {
            Expr **items;
            int n;
        } list;           /* EX_TUPLE, EX_ARRAY */
        struct {
            Expr *base;         /* EX_UPDATE: the record updated; else NULL */
            const char **names;
            Expr **values;
            int n;
            TypeDecl *decl;     /* filled by the type checker */
        } rec;            /* EX_RECORD, EX_UPDATE */
        struct {
            Expr *e;
            const char *name;   /* EX_FIELD */
            int index;          /* EX_PROJ; EX_FIELD: filled by the checker */
        } field;          /* EX_FIELD, EX_PROJ */
        struct {
            Expr *e;
            IndexArg *args;
            int n;
        } index;          /* EX_INDEX */
        struct {
            Expr *fn, *arg;
        } app;            /* EX_APP */
        struct {
            OpKind op;
            Expr *l, *r;  /* EX_UNOP uses l only */
            /* checker: OP_COMPOSE / OP_PAR on learners resolve to the DL
             * function learner_seq / learner_par (NULL: plain composition
             * of functions), instantiated with inst[0..ninst) */
            Binding *binding;
            Type **inst;
            int ninst;
        } op;             /* EX_BINOP, EX_UNOP */
        struct {
            Pat **params;
            int nparams;
            TypeExpr *ret; /* optional */
            Expr *body;
        } lam;            /* EX_LAMBDA */
        struct {
            Pat *pat;
            Expr *value;
            Expr *body;
        } let;            /* EX_LET */
        struct {
            const char *name;
            Loc name_loc;
            Pat **params;
            int nparams;
            TypeExpr *ret;
            Expr *value;  /* the function body */
            Expr *body;   /* the scope of the binding */
            Binding *binding;
        } letrec;         /* EX_LETREC */
        struct {
            Expr *cond, *then_, *else_;
        } if_;            /* EX_IF */
        struct {
            Expr *e;
            MatchCase *cases;
            int n;
        } match;          /* EX_MATCH */
        struct {
            Pat *pat;      /* loop state pattern */
            Expr *init;
            LoopKind kind;
            const char *ivar; /* LOOP_FOR: counter name */
            Loc ivar_loc;
            Binding *ivar_binding;
            Expr *bound;   /* LOOP_FOR: i < bound */
            Expr *cond;    /* LOOP_WHILE */
            Expr *body;
        } loop;           /* EX_LOOP */
        struct {
            Expr *e;
            TypeExpr *t;
        } annot;          /* EX_ANNOT */
    } u;
};

/* A custom derivative rule attached to a def:
 *   with jvp (x, dx) => e     -- e : (b, T b) for the def's a -> b
 *   with vjp x => e           -- e : (b, T b -> T a) */
typedef enum { RULE_JVP, RULE_VJP } RuleKind;
typedef struct DerivRule {
    RuleKind kind;
    Loc loc;
    Pat **params;
    int nparams;
    Expr *body;
} DerivRule;

typedef enum {
    DECL_DEF,          /* [export] def f p1 ... [: t] = e [with jvp ...] */
    DECL_TYPE,         /* type ('a, 'b) name = ... */
    DECL_IMPORT,       /* import std/nn | import "file.dl" [as m] */
    DECL_EXPORT_DERIV, /* export grad f as f_grad */
} DeclKind;

typedef enum { TD_ALIAS, TD_RECORD, TD_VARIANT } TypeDeclKind;

/* One constructor of a variant type: C or C of t1 * t2 (arg may be NULL). */
typedef struct ConDecl {
    const char *name;
    Loc loc;
    TypeExpr *arg;
} ConDecl;

/* The derivative forms (LANGUAGE.md §6); DERIV_NONE for plain functions. */
typedef enum {
    DERIV_NONE, DERIV_JVP, DERIV_VJP, DERIV_GRAD, DERIV_VALUE_AND_GRAD,
    DERIV_JACFWD, DERIV_JACREV, DERIV_HESSIAN, DERIV_HVP, DERIV_JET,
    DERIV_FWDGRAD, DERIV_FWDGRAD_DIR, DERIV_STOP_GRADIENT,
} DerivKind;

struct Decl {
    DeclKind kind;
    Loc loc;
    const char *name;   /* DEF: function; TYPE: type name; EXPORT_DERIV: alias */
    Loc name_loc;
    bool is_export;
    /* DECL_DEF */
    Pat **params;
    int nparams;
    TypeExpr *ret;
    Expr *body;
    DerivRule **rules;
    int nrules;
    Binding *binding;   /* filled by the type checker */
    /* DECL_TYPE */
    const char **tparams; /* without quotes */
    int ntparams;
    TypeDeclKind tkind;
    TypeExpr *alias;      /* TD_ALIAS */
    TypeExpr *record;     /* TD_RECORD: a TE_RECORD */
    ConDecl *cons;        /* TD_VARIANT */
    int ncons;
    TypeDecl *tdecl;      /* filled by the type checker */
    /* DECL_IMPORT */
    const char *path;     /* "std/nn" or the string as written */
    bool is_std;
    const char *as;       /* optional alias (reserved) */
    Module *imported;     /* filled by module resolution */
    /* DECL_EXPORT_DERIV */
    DerivKind deriv;
    const char *target;   /* the function differentiated */
    Loc target_loc;
};

struct Module {
    const char *name;     /* "prelude", "nn", "main" ... (C symbol prefix) */
    const char *path;     /* file path */
    SrcFile *file;
    Decl **decls;
    int ndecls;
    bool is_std;
    int state;            /* module resolution: 0 new, 1 loading, 2 done */
};

/* Constructors (arena-allocated, fields zeroed). */
Expr *expr_new(ExprKind kind, Loc loc);
Pat *pat_new(PatKind kind, Loc loc);
TypeExpr *texpr_new(TypeExprKind kind, Loc loc);
Decl *decl_new(DeclKind kind, Loc loc);

/* --emit=ast: an S-expression dump, one node per line, with positions. */
void ast_dump_module(FILE *out, const Module *m);
void ast_dump_expr(FILE *out, const Expr *e, int indent);
/* Prints as DL source (used by --emit=ad and error messages). */
void ast_print_expr(StrBuf *b, const Expr *e);
void ast_print_pat(StrBuf *b, const Pat *p);
void ast_print_texpr(StrBuf *b, const TypeExpr *t);
/* A whole declaration as DL source (def with its rules, type, import,
 * export); no trailing newline. */
void ast_print_decl(StrBuf *b, const Decl *d);

/* ========================================================================
 * parser  (parser.y; lexer.l)
 * ======================================================================== */

/* Parses one source file into a Module. Syntax errors are reported through
 * diag and recovered from (the module then holds what could be parsed);
 * returns NULL only if nothing could be read. */
Module *parse_file(SrcFile *file);

/* REPL entry: one line is a declaration or an expression; *out_expr or
 * *out_decls is set. Returns false on a syntax error (reported), and sets
 * *incomplete when the input ended inside an unfinished construct (so the
 * REPL can read a continuation line). */
bool parse_repl_input(SrcFile *file, Decl ***out_decls, int *out_ndecls,
                      Expr **out_expr, bool *incomplete);

/* --emit=tokens: one token per line: "line:col KIND 'text'" (the source
 * text, with \\, \' and non-printable bytes escaped as \xNN). */
void lexer_dump_tokens(FILE *out, SrcFile *file);

/* ========================================================================
 * module
 * ======================================================================== */

/* The directory of the std modules: $DCC_STDLIB, else the source tree's
 * stdlib/ when dcc runs uninstalled, else the installed pkgdatadir. */
const char *module_stdlib_dir(void);
void module_set_stdlib_dir(const char *dir);

/* Reads and parses `path` (NULL for stdin with text given) and everything it
 * imports, transitively; the prelude is always loaded first. Cycles and
 * missing modules are reported at the import's position. Returns the root
 * module; all loaded modules in dependency order are in *order. */
Module *module_load_root(const char *path, const char *display_name, Vec *order);
Module *module_load_text(const char *name, const char *text, size_t len, Vec *order);
/* Forgets every loaded module and source file (REPL :reload, the fuzzer).
 * Call before arena_free of the compilation's arena. */
void module_reset(void);
void diag_forget_files(void);

/* ========================================================================
 * types
 * ======================================================================== */

typedef enum {
    TY_VAR,     /* unification variable (link != NULL once bound) */
    TY_QVAR,    /* quantified variable inside a Scheme */
    TY_INT, TY_FLOAT, TY_F32, TY_BOOL, TY_UNIT, TY_STRING,
    TY_KEY,     /* Philox RNG key */
    TY_TUPLE,   /* args[0..nargs) */
    TY_ARRAY,   /* elem, rank >= 1 */
    TY_FUNC,    /* args[0] -> args[1] */
    TY_NAMED,   /* record or variant: decl + type arguments */
    TY_TANGENT, /* T(args[0]) while args[0] is not yet known (link once it is) */
    TY_ERROR,   /* poison after a reported error: unifies with anything */
} TypeKind;

/* Types are normalised as they are resolved (type_resolve): an array's elem
 * is never an array ([]([]float) is [][]float, rank 2), and T(t) is computed
 * as soon as t is known. Unifying []'a with [][]float binds 'a := []float. */
struct Type {
    TypeKind kind;
    int id;          /* TY_VAR/TY_QVAR: number; for printing 'a, 'b */
    int level;       /* TY_VAR: let-level for generalisation */
    Type *link;      /* TY_VAR: bound to this type; TY_TANGENT: its value */
    Type **args;
    int nargs;
    Type *elem;      /* TY_ARRAY */
    int rank;        /* TY_ARRAY */
    TypeDecl *decl;  /* TY_NAMED */
    Loc origin;      /* where the type was demanded (for "expected ... here") */
    unsigned visit;  /* scratch for walks that visit each node once */
};

/* Types are DAGs (a subterm is shared, not copied), so a walk that must not
 * take time exponential in the program marks the nodes it has seen: it
 * takes a fresh mark, `if (t->visit == mark) return; t->visit = mark;`. A
 * walk that nests another walk inside loses its marks (not its result). */
unsigned type_visit_mark(void);

/* TY_VAR level of a generalised variable (owned by a scheme; never bound). */
#define TYPE_GENERIC_LEVEL 0x3fffffff

/* A declared record or variant type after checking. */
struct TypeDecl {
    const char *name;
    Loc loc;
    Decl *decl;         /* the declaration (NULL for a synthesised tangent) */
    int ntparams;
    TypeDeclKind kind;
    /* TD_RECORD */
    const char **fields;
    Type **field_types; /* in terms of TY_QVAR 0..ntparams-1 */
    int nfields;
    /* TD_VARIANT */
    const char **cons;
    Type **con_args;    /* NULL for a nullary constructor */
    int ncons;
    bool recursive;
    /* the tangent type T(t) of this declaration, built on demand */
    TypeDecl *tangent;
    /* checker */
    Type *alias;        /* TD_ALIAS: the expansion, over TY_QVAR 0.. */
    const char **tparams;
    Module *module;
    TypeDecl *primal;   /* a synthesised tangent declaration: whose tangent */
    /* T(D a1..an) = D (T a1)..(T an) when the declaration maps through T
     * field by field (then `tangent` is the declaration itself; without
     * parameters this is T(D) = D); otherwise T(D as) = tangent as. */
    int tangent_state;  /* 0 unknown, 1 computing, 2 functorial, 3 synthesised */
    int alias_state;    /* 0 unexpanded, 1 expanding, 2 done */
};

/* Type classes and deferred constraints (qualified types, Jones 1994):
 * overloaded operators and built-ins produce constraints that are solved as
 * soon as the types involved are known; those still open when a definition
 * is generalised become part of its scheme (Binding.cons, over TY_QVARs)
 * and are instantiated with it. */
typedef enum {
    TC_NUM,      /* int, float, f32; arrays; tuples and records of these */
    TC_FLOATING, /* float, f32 or arrays of them */
    TC_NUMELEM,  /* int, float, f32 or arrays of them */
    TC_SCALAR,   /* int, float, f32 */
    TC_ORD,      /* int, float, f32 (ordered comparisons) */
    TC_EQ,       /* any type without functions (== and !=) */
    TC_ARRAY,    /* an array of int, float or f32, any rank */
    TC_ANYARRAY, /* any array */
} TypeClass;

typedef enum {
    CK_CLASS,     /* t[0] in class cls; leaves equal to t[1] if given; tuples
                     and records allowed when `structural` */
    CK_BCAST,     /* t[0] op t[1] : t[2], NumPy broadcasting, leaves in cls */
    CK_MATMUL,    /* t[0] @ t[1] : t[2] */
    CK_CONVERT,   /* t[1] = t[0] with elements converted to t[2] (scalar) */
    CK_SHAPE,     /* t[0] an int or a tuple of n ints; t[1] = [ ]^n t[2] */
    CK_RESHAPE,   /* shape t[0], array t[1]: t[2] of rank from the shape */
    CK_REDUCE_ALL,/* t[0] an array with scalar elements t[1] in cls */
    CK_DROP_AXIS, /* t[0] rank r array, t[1] rank r-1 (elem t[2] if given) */
    CK_RANK_IN,   /* t[0] an array of rank n..m with elements in cls */
    CK_ONE_HOT,   /* t[0] int of rank r (0 = scalar), t[1] = float rank r+1 */
    CK_HESSIAN,   /* t[0] float -> t[1] float; []float -> [][]float */
    CK_FIELD,     /* t[0] a record with field `name` of type t[1] */
    CK_PROJ,      /* t[0] a tuple with component n of type t[1] */
    CK_COMPOSE,   /* t[0] >>> t[1] : t[2] (op OP_COMPOSE or OP_PAR) */
} ConstraintKind;

typedef struct Constraint {
    ConstraintKind kind;
    Type *t[3];
    TypeClass cls;
    bool structural;
    int op;             /* OpKind, or -1 for a built-in named `what` */
    int n, m;           /* CK_PROJ index; CK_RANK_IN bounds */
    const char *name;   /* CK_FIELD field name */
    const char *what;   /* for messages: the operator or built-in */
    Type *orig[2];      /* the operand types as written, for messages */
    Loc loc;
    Loc origin;         /* instances of scheme constraints: where the
                           constraint arose in the generic definition */
    Expr *node;         /* CK_FIELD / CK_PROJ / CK_COMPOSE: node to fill */
    Binding *impl;      /* CK_COMPOSE: learner_seq / learner_par in scope */
    void *scope;        /* checker: the module scope it was made in */
    bool done;
} Constraint;

/* A variable bound in the program: a def, a let, a pattern variable. */
struct Binding {
    const char *name;
    Loc loc;
    Type *type;        /* monotype, or the body of the scheme */
    int nqvars;        /* > 0: polymorphic (TY_QVAR 0..nqvars-1 in type) */
    Decl *def;         /* top-level def, if any */
    int builtin;       /* > 0: a Builtin id (the index into the table) */
    Module *module;
    bool used;
    /* checker */
    Constraint **cons; /* scheme constraints, over the TY_QVARs */
    int ncons;
    Type **generic;    /* generalised defs: the TY_VARs (level
                          TYPE_GENERIC_LEVEL) of the body that QVAR i
                          stands for; the body's Expr types use them */
    bool provisional;  /* declared type in use before the body is checked */
};

Type *type_resolve(Type *t); /* follows links, normalises the head */
Type *type_int(void);
Type *type_float(void);
Type *type_f32(void);
Type *type_bool(void);
Type *type_unit(void);
Type *type_string(void);
Type *type_rng_key(void); /* the type key */
Type *type_error(void);
Type *type_array(Type *elem, int rank);
Type *type_func(Type *a, Type *b);
Type *type_tuple(Type **items, int n);
Type *type_tuple2(Type *a, Type *b);
Type *type_named(TypeDecl *d, Type **args, int n);
Type *type_qvar(int id);
Type *type_fresh_var(int level);
Type *type_copy_node(Type *t); /* a fresh node equal to t (to set origin) */
/* T(t), LANGUAGE.md §3: float->float, int/bool/string->unit, structural
 * on tuples/records/variants/arrays, T(a->b) = a -> T b. Stays symbolic
 * (TY_TANGENT) while t is an unbound variable. */
Type *type_tangent(Type *t);
bool type_equal(Type *a, Type *b);
/* True when t still contains unbound variables (not counting generic ones
 * when skip_generic). */
bool type_has_vars(Type *t, bool skip_generic);
/* The number of nodes of t as a tree (a shared subterm counts at each
 * occurrence), counting no further than just past `limit`. Types are DAGs:
 * `let b = (a, a)` shares a, so a chain of such lets doubles the tree at
 * each step; the checker rejects types past TYPE_TREE_LIMIT, whose walks
 * would take exponential time. */
long type_tree_size(Type *t, long limit);
#define TYPE_TREE_LIMIT 100000
/* Replaces TY_QVAR i by to[i] (normalising arrays and tangents). */
Type *type_subst(Type *t, Type **to, int n);
/* Record field types / constructor arguments of an instance D args. */
Type *type_field_type(Type *named, int field);
Type *type_con_arg(Type *named, int con); /* NULL for a nullary one */

/* Unification (Robinson, with an occurs check and levels for
 * generalisation, Rémy 1992). Returns false on a clash; then
 * type_unify_failure() tells which parts clashed. */
bool type_unify(Type *a, Type *b);
typedef struct UnifyFailure {
    Type *a, *b;    /* the innermost clashing components */
    bool occurs;    /* a is a variable occurring in b (infinite type) */
} UnifyFailure;
UnifyFailure type_unify_failure(void);
extern int type_bind_count; /* incremented on every variable binding */

/* Prints a type in DL syntax, naming variables 'a, 'b, ... consistently
 * within one call. */
void type_print(StrBuf *b, Type *t);
char *type_to_string(Type *t); /* arena string */
/* Several types (and scheme constraints) printed with one naming. */
typedef struct TypePrinter {
    const void *keys[64];
    int n;
} TypePrinter;
void type_print_with(TypePrinter *p, StrBuf *b, Type *t);
char *type_to_string_with(TypePrinter *p, Type *t);
void constraint_print(TypePrinter *p, StrBuf *b, const Constraint *c);

/* ---- built-ins (builtins.c) ------------------------------------------- */

/* The built-in functions of LANGUAGE.md §5 and §6. The ids are stable: the
 * code generator and the AD stages switch on them. X(ID, "name"). */
#define DCC_BUILTINS(X)                                                       \
    /* elementwise math */                                                    \
    X(EXP, "exp") X(LOG, "log") X(LOG1P, "log1p") X(EXPM1, "expm1")           \
    X(SQRT, "sqrt") X(SIN, "sin") X(COS, "cos") X(TAN, "tan")                 \
    X(TANH, "tanh") X(ABS, "abs") X(SIGMOID, "sigmoid")                       \
    X(SOFTPLUS, "softplus") X(RELU, "relu") X(FLOOR, "floor")                 \
    X(CEIL, "ceil") X(ATAN2, "atan2") X(POW, "pow") X(MIN, "min")             \
    X(MAX, "max") X(TO_FLOAT, "float") X(TO_INT, "int") X(TO_F32, "f32")      \
    /* arrays */                                                              \
    X(LENGTH, "length") X(IOTA, "iota") X(REPLICATE, "replicate")             \
    X(ZEROS, "zeros") X(ONES, "ones") X(ZEROS_LIKE, "zeros_like")             \
    X(MAP, "map") X(MAP2, "map2") X(MAP3, "map3") X(ZIP, "zip")               \
    X(UNZIP, "unzip") X(REDUCE, "reduce") X(FOLD, "fold") X(SCAN, "scan")     \
    X(FILTER, "filter") X(SUM, "sum") X(PROD, "prod") X(MEAN, "mean")         \
    X(MAXIMUM, "maximum") X(MINIMUM, "minimum") X(ARGMAX, "argmax")           \
    X(DOT, "dot") X(TRANSPOSE, "transpose") X(RESHAPE, "reshape")             \
    X(CONCAT, "concat") X(REVERSE, "reverse") X(SLICE, "slice")               \
    X(TAKE, "take") X(DROP, "drop") X(ONE_HOT, "one_hot") X(SHAPE, "shape")   \
    /* numerics with derivative rules */                                      \
    X(SOFTMAX, "softmax") X(LOGSUMEXP, "logsumexp") X(DET, "det")             \
    X(INV, "inv") X(SOLVE, "solve") X(CHOLESKY, "cholesky")                   \
    /* random numbers */                                                      \
    X(KEY, "key") X(SPLIT, "split") X(UNIFORM, "uniform")                     \
    X(NORMAL, "normal") X(PERMUTATION, "permutation")                         \
    X(NORMAL_LIKE, "normal_like")                                             \
    /* I/O */                                                                 \
    X(PRINT, "print") X(PRINTLN, "println") X(READ_CSV, "read_csv")           \
    X(READ_NPY, "read_npy") X(WRITE_NPY, "write_npy")                         \
    X(READ_IDX, "read_idx") X(PROGRESS, "progress") X(ARGS, "args")           \
    X(SHOW, "show") X(STR_CONCAT, "str_concat") X(ERROR, "error")             \
    X(CLOCK, "clock") X(WRITE_TEXT, "write_text")                             \
    /* derivatives (LANGUAGE.md §6) */                                        \
    X(JVP, "jvp") X(VJP, "vjp") X(GRAD, "grad")                               \
    X(VALUE_AND_GRAD, "value_and_grad") X(JACFWD, "jacfwd")                   \
    X(JACREV, "jacrev") X(HESSIAN, "hessian") X(HVP, "hvp") X(JET, "jet")     \
    X(FWDGRAD, "fwdgrad") X(FWDGRAD_DIR, "fwdgrad_dir")                       \
    X(STOP_GRADIENT, "stop_gradient")                                         \
    /* Core primitives without other syntax, for --emit=ad (core_dl.c) */      \
    X(SELECT, "select") X(UPDATE_AT, "update_at") X(FILL, "fill")             \
    X(SUM_AXIS0, "sum_axis0") X(DIMS, "dims") X(LT_EACH, "lt_each")          \
    X(LE_EACH, "le_each") X(GT_EACH, "gt_each") X(GE_EACH, "ge_each")         \
    X(EQ_EACH, "eq_each") X(NE_EACH, "ne_each")

typedef enum {
    B_NONE,
#define X(id, name) B_##id,
    DCC_BUILTINS(X)
#undef X
    B__COUNT
} Builtin;

typedef struct BuiltinInfo {
    Builtin id;
    const char *name;
    const char *scheme;      /* DL type syntax; 'a.. quantified; T(t) tangent */
    const char *constraints; /* "floating 'a", "bcast max 'a 'b 'c", ... */
    DerivKind deriv;         /* the derivative forms; DERIV_NONE otherwise */
} BuiltinInfo;

const BuiltinInfo *builtin_info(Builtin id);
Builtin builtin_lookup(const char *name); /* B_NONE if not a built-in */
/* The binding of a built-in (its scheme), shared by all uses. */
Binding *builtin_binding(Builtin id);
/* The scheme of an operator used as a function, (+) etc.; NULL for |>
 * and the unary ones. */
Binding *builtin_op_binding(OpKind op);
/* Parses a type in the scheme syntax of the table: 'a (quantified, or
 * fresh variables at `level` when level >= 0), int float f32 bool unit
 * string key, []t, (t, u), t -> u, T(t). names/n: the variables seen.
 * Returns NULL on a syntax error (a bug in the table). */
Type *builtin_parse_type(const char *src, int level, const char **names, Type **vars, int *n);

/* Type-checks all modules in dependency order. Reports every error it
 * finds; returns the number of errors. Fills Expr.type, Pat.type, bindings. */
int typecheck_program(Vec *modules);
/* Forgets what the checker caches across compilations (scalar type nodes,
 * the built-ins' schemes, counters): call before the arena they live in is
 * freed (module_reset does). */
void typecheck_reset(void);

/* --emit=types: each top-level def with its inferred type scheme. */
void types_dump_module(FILE *out, Module *m);
/* A scheme in DL syntax, with its constraints ("where ..."). */
char *types_scheme_string(Binding *b);

/* ========================================================================
 * core — the typed Core IR (A-normal form)
 *
 * Every intermediate value is named; operands of every operation are atoms
 * (variables or literals). Types are ground (after monomorphisation) and
 * reuse Type. A function body is a CBlock: bindings, then a result atom.
 *
 *   block  ::= (let x = cexpr)* ; atom
 *   cexpr  ::= atom | prim(op, atoms) | call(fun, atoms) | apply(clo, atom)
 *            | lambda(params, block)           -- closure creation
 *            | if(atom, block, block) | case(atom, alts, default)
 *            | loop(state, init, for i < n | while block, body)
 *            | soac(map|reduce|..., lambda, atoms)
 *            | deriv(jvp|vjp|..., lambda, atoms)  -- removed by the AD stages
 *
 * Products (tuples, records) are built and taken apart with P_TUPLE/P_PROJ
 * and P_RECORD/P_FIELD; sums with P_CON / P_TAG / P_PAYLOAD and CE_CASE.
 * Vector-space arithmetic on tuples and records is expanded into component
 * operations during lowering, so primitives see scalars and arrays only.
 *
 * Conventions fixed by lowering (lower.c, match.c), relied on by later stages:
 *  - Scoping is lexical: a variable is visible in the rest of its block and
 *    in every block nested there (branches, loop bodies, lambda bodies).
 *    Each CVar is bound exactly once in the program. Inline lambdas (SOAC,
 *    DERIV) and closure bodies may use variables of enclosing blocks.
 *  - Closures (CE_LAMBDA, the value of a `fn` or of a partial application)
 *    take ONE parameter: `fn a b => e` is lambda(a) => lambda(b) => e, and
 *    CE_APPLY passes one argument. Inline lambdas of CE_SOAC / CE_DERIV take
 *    as many parameters as the operation needs (map of n arrays: n).
 *  - A def `def f p1 .. pn` is a CFun with n parameters (0 for a constant
 *    `def xs = ...`, called with no arguments); a parameter pattern is taken
 *    apart at the start of the body. Lowering emits no CA_FUN atoms yet
 *    (a def used as a value becomes a CE_LAMBDA wrapping a CE_CALL). A
 *    constant def's body runs at each use (no globals in Core yet).
 *  - Names: one CFun per (def, instance): `f`, `f_1`, ...; exports
 *    `<module>_<name>` (is_export); `main` (is_main); lifted `let rec`s by
 *    their name (is_lifted); rules `<f>_jvp` / `<f>_vjp`; helpers `eq_<type>`
 *    (is_helper). All names are C identifiers, unique in the program.
 *  - `a && b`, `a || b` are CE_IF with b evaluated in its branch only.
 *  - CE_LOOP: args[0] init, args[1] the count n (LOOP_FOR); `state` is bound
 *    in cond and body, `ivar` (int) in body; both blocks start by taking the
 *    state pattern apart. The loop's value is the final state.
 *  - CE_CASE: args[0] a variant value; an alt for a constructor with an
 *    argument binds `payload` (never NULL then) to that argument (a tuple
 *    when it has several); payload is NULL for nullary constructors and the
 *    default (con == -1, at most one, last). No constructor appears twice.
 *  - CE_SOAC args: MAP a1..an (lambda x1..xn -> b);
 *    REDUCE ne, a (lambda acc x -> acc); FOLD acc0, a (lambda acc x -> acc);
 *    SCAN ne, a (lambda acc x -> acc); FILTER a (lambda x -> bool).
 *  - CE_DERIV: the function argument is the inline lambda (one parameter:
 *    the point), args the remaining arguments in source order:
 *    JVP x dx; VJP x; GRAD x; VALUE_AND_GRAD x; JACFWD x; JACREV x;
 *    HESSIAN x; HVP x v; JET x vs; FWDGRAD x k; FWDGRAD_DIR as its
 *    built-in's remaining arguments. STOP_GRADIENT has fn == NULL and
 *    args[0] the value. The CExpr's type is the form's result type.
 *  - P_INDEX a, i1..ik (k <= rank; fewer indices give a sub-array).
 *    P_SLICE a, then two atoms lo_j, hi_j per index position j (0-based,
 *    in source order, at most 16); imm bit j (1 << j) set: position j is a
 *    range lo_j:hi_j (the axis stays); clear: a single index lo_j (the axis
 *    goes; hi_j is the literal 0). imm bit 16 + j set: hi_j was absent
 *    (`xs[i:]`: up to the axis length; hi_j is the literal 0). An absent
 *    lo_j is the literal 0. Positions past the last keep their whole axis.
 *    The built-in `slice xs i j` is P_SLICE with imm 1.
 *  - P_ZEROS, P_ONES: dims... one int atom per dimension (a shape given as
 *    a tuple is taken apart); P_UNIFORM / P_NORMAL: key, dims...;
 *    P_RESHAPE: a, dims... (the array first, unlike the built-in);
 *    P_REPLICATE n, v; P_ONE_HOT n, i; P_TAKE/P_DROP n, a; P_SLICE above.
 *  - P_EQ / P_NE on arrays with result type bool compare whole arrays
 *    (shapes and elements); with an array of bool result, elementwise.
 *    On strings they compare contents. Equality of tuples, records and
 *    variants is expanded by lowering (helper CFuns named eq_<type> for
 *    variants), so P_EQ sees scalars, strings and arrays of scalars only.
 *  - A string `+` is P_STR_CONCAT. `println s` of a string prints it raw.
 *  - P_ERROR's argument is the message string; the CExpr's Loc is where.
 *    Non-exhaustive matches end in `prim error("match failure")`.
 *  - Every CExpr that can fail at run time carries the Loc of its source
 *    expression (index, slice, division, shapes, I/O, calls).
 * ======================================================================== */

typedef struct CVar CVar;
typedef struct CAtom CAtom;
typedef struct CExpr CExpr;
typedef struct CBlock CBlock;
typedef struct CLambda CLambda;
typedef struct CFun CFun;

/* Primitive operations: one table (core_prims) with name, arity and flags;
 * the AD stages add each primitive's forward, transpose and Taylor rules to
 * the same table, and the simplifier its cost. X(name, spelling, arity)
 * with arity -1 for variadic. */
#define CORE_PRIMS(X)                                                         \
    /* arithmetic, elementwise with broadcasting on arrays */                 \
    X(ADD, "add", 2) X(SUB, "sub", 2) X(MUL, "mul", 2) X(DIV, "div", 2)       \
    X(MOD, "mod", 2) X(POW, "pow", 2) X(NEG, "neg", 1)                        \
    X(EQ, "eq", 2) X(NE, "ne", 2) X(LT, "lt", 2) X(LE, "le", 2)               \
    X(GT, "gt", 2) X(GE, "ge", 2) X(NOT, "not", 1)                            \
    X(EXP, "exp", 1) X(LOG, "log", 1) X(LOG1P, "log1p", 1)                    \
    X(EXPM1, "expm1", 1) X(SQRT, "sqrt", 1) X(SIN, "sin", 1)                  \
    X(COS, "cos", 1) X(TAN, "tan", 1) X(TANH, "tanh", 1) X(ABS, "abs", 1)     \
    X(SIGMOID, "sigmoid", 1) X(SOFTPLUS, "softplus", 1) X(RELU, "relu", 1)    \
    X(FLOOR, "floor", 1) X(CEIL, "ceil", 1) X(ATAN2, "atan2", 2)              \
    X(MIN, "min", 2) X(MAX, "max", 2)                                         \
    X(TO_FLOAT, "float", 1) X(TO_INT, "int", 1) X(TO_F32, "f32", 1)           \
    X(SELECT, "select", 3) /* select c a b: c ? a : b, no branch */           \
    /* products and sums */                                                   \
    X(TUPLE, "tuple", -1) X(PROJ, "proj", 1)     /* imm = index */            \
    X(RECORD, "record", -1) X(FIELD, "field", 1) /* imm = field index */      \
    X(CON, "con", -1)  /* imm = constructor index; 0 or 1 argument */         \
    X(TAG, "tag", 1) X(PAYLOAD, "payload", 1) /* imm = constructor index */   \
    /* arrays */                                                              \
    X(ARRAY, "array", -1) /* literal; rows of a matrix literal are arrays */  \
    X(INDEX, "index", -1) /* a, i, j, ...: scalar or sub-array */             \
    X(SLICE, "slice", -1) /* a, then (lo, hi) per axis; imm = axis mask */    \
    X(UPDATE, "update", -1) /* a, v, i, ...: copy of a with a[i..] = v */     \
    X(LENGTH, "length", 1) X(SHAPE, "shape", 1) X(IOTA, "iota", 1)            \
    X(REPLICATE, "replicate", 2) X(ZEROS, "zeros", -1) X(ONES, "ones", -1)    \
    X(ZEROS_LIKE, "zeros_like", 1) X(FILL, "fill", -1) /* v, dims... */       \
    X(SUM, "sum", 1) X(PROD, "prod", 1) X(MEAN, "mean", 1)                    \
    X(MAXIMUM, "maximum", 1) X(MINIMUM, "minimum", 1) X(ARGMAX, "argmax", 1)  \
    X(SUM_AXIS0, "sum_axis0", 1) /* [][]a -> []a: reverse of broadcasting */  \
    X(DOT, "dot", 2) X(MATMUL, "matmul", 2) X(TRANSPOSE, "transpose", 1)      \
    X(RESHAPE, "reshape", -1) X(CONCAT, "concat", 2) X(REVERSE, "reverse", 1) \
    X(TAKE, "take", 2) X(DROP, "drop", 2) X(ONE_HOT, "one_hot", 2)            \
    X(ZIP, "zip", 2) X(UNZIP, "unzip", 1)                                     \
    X(SOFTMAX, "softmax", 1) X(LOGSUMEXP, "logsumexp", 1)                     \
    X(DET, "det", 1) X(INV, "inv", 1) X(SOLVE, "solve", 2)                    \
    X(CHOLESKY, "cholesky", 1)                                                \
    /* random numbers (Philox-4x32-10) */                                     \
    X(KEY, "key", 1) X(SPLIT, "split", 1) X(UNIFORM, "uniform", -1)           \
    X(NORMAL, "normal", -1) X(PERMUTATION, "permutation", 2)                  \
    /* effects, performed in evaluation order */                              \
    X(PRINT, "print", 1) X(PRINTLN, "println", 1) X(SHOW, "show", 1)          \
    X(STR_CONCAT, "str_concat", 2) X(READ_CSV, "read_csv", 1)                 \
    X(READ_NPY, "read_npy", 1) X(WRITE_NPY, "write_npy", 2)                   \
    X(READ_IDX, "read_idx", 1) X(ARGS, "args", 0) X(PROGRESS, "progress", 4)  \
    X(ERROR, "error", 1) /* run-time error with a message; type any */        \
    X(CLOCK, "clock", 0) /* seconds on a monotonic clock, as a float */       \
    X(WRITE_TEXT, "write_text", 2) /* path, text: writes the file */ \
    X(DEFUN, "defun", -1) /* f, args..., targets: ad_defun (AD section) */

typedef enum {
#define X(name, spelling, arity) P_##name,
    CORE_PRIMS(X)
#undef X
    P__COUNT
} Prim;

enum { /* PrimInfo.flags */
    PRIM_ELEMENTWISE = 1, /* maps over array elements with broadcasting */
    PRIM_LINEAR = 2,      /* linear in its float arguments */
    PRIM_EFFECT = 4,      /* has an effect: never removed, never reordered */
    PRIM_NONDIFF = 8,     /* result carries no tangent (int, bool, ...) */
    PRIM_PARTIAL = 16,    /* may fail at run time (bounds, shapes, division
                             by zero): kept by DCE even when unused, see
                             core_prim_may_fail */
};

typedef struct PrimInfo {
    const char *name;
    int arity;
    unsigned flags;
    int cost; /* rough cost in flops per element, for the simplifier */
    /* rules, filled by the AD stages (ad_forward.c, ad_reverse.c, ad_taylor.c) */
    void *jvp_rule, *transpose_rule, *taylor_rule;
} PrimInfo;

extern PrimInfo core_prims[P__COUNT];

struct CVar {
    int id;           /* unique in the program */
    const char *name; /* source name or hint, for printing */
    Type *type;
    Loc loc;
    int uses;         /* use count, maintained by analyses that need it */
};

typedef enum { CA_VAR, CA_INT, CA_FLOAT, CA_BOOL, CA_UNIT, CA_STRING, CA_FUN } CAtomKind;

struct CAtom {
    CAtomKind kind;
    Type *type;
    union {
        CVar *var;
        int64_t ival;     /* CA_INT, CA_BOOL */
        double fval;      /* CA_FLOAT (type float or f32; an f32 one holds a
                             value representable in single precision) */
        const char *sval; /* CA_STRING */
        CFun *fun;        /* CA_FUN: a top-level function used as a value */
    } u;
};

typedef enum {
    CE_ATOM, CE_PRIM, CE_CALL, CE_APPLY, CE_LAMBDA, CE_IF, CE_CASE, CE_LOOP,
    CE_SOAC, CE_DERIV,
} CExprKind;

typedef enum {
    SOAC_MAP,    /* map f a1 .. an           (lambda: n params) */
    SOAC_REDUCE, /* reduce op ne a           (lambda: 2 params, associative) */
    SOAC_FOLD,   /* fold f acc a             (lambda: acc, elem; sequential) */
    SOAC_SCAN,   /* scan op ne a             (inclusive) */
    SOAC_FILTER, /* filter p a */
} SoacKind;

struct CLambda {
    CVar **params;
    int nparams;
    CBlock *body;
    Type *type; /* the function type */
    Loc loc;
    const CLambda *origin; /* ad_defun: the lambda this is a copy of (copies keep it) */
};

typedef struct CAlt {
    int con;        /* constructor index; -1 for the default */
    CVar *payload;  /* bound to the constructor's argument, or NULL */
    CBlock *body;
} CAlt;

struct CExpr {
    CExprKind kind;
    Type *type;
    Loc loc;
    CAtom **args;
    int nargs;
    union {
        struct { Prim op; int64_t imm; } prim;       /* CE_PRIM */
        CFun *fun;                                   /* CE_CALL */
        CLambda *lambda;                             /* CE_LAMBDA */
        struct { CBlock *then_, *else_; } if_;       /* CE_IF: args[0] cond */
        struct { CAlt *alts; int nalts; } case_;     /* CE_CASE: args[0] */
        struct {
            CVar *state;    /* loop state (a tuple when several) */
            LoopKind kind;
            CVar *ivar;     /* LOOP_FOR counter, 0..n-1; args[1] is n */
            CBlock *cond;   /* LOOP_WHILE: over state, returns bool */
            CBlock *body;   /* over state (and ivar), returns the new state */
            int checkpoint; /* reverse mode: 0 store all, k > 0 segments */
        } loop;                                      /* CE_LOOP: args[0] init */
        struct { SoacKind kind; CLambda *fn; } soac; /* CE_SOAC */
        struct { DerivKind kind; CLambda *fn; } deriv; /* CE_DERIV */
    } u;
};

typedef struct CBind {
    CVar *var;
    CExpr *e;
} CBind;

struct CBlock {
    CBind *binds;
    int nbinds, cap;
    CAtom *result;
};

struct CFun {
    const char *name;      /* unique; the C symbol for exports */
    const char *src_name;  /* the DL name */
    CVar **params;         /* uncurried: def f a b has two */
    int nparams;
    Type *ret;
    CBlock *body;
    Loc loc;
    bool is_export;
    bool is_main;
    Decl *decl;
    /* A custom derivative rule of the def (`with jvp` / `with vjp`), lowered
     * for the same instance as a CFun of its own: jvp_rule takes the rule's
     * parameter pattern (x, dx) as one tuple parameter and returns
     * (b, T b); vjp_rule takes x and returns (b, T b -> T a). NULL if none. */
    CFun *jvp_rule, *vjp_rule;
    CFun *rule_of;         /* set on a rule's CFun: the def it belongs to */
    bool is_lifted;        /* a lambda-lifted `let rec` (free vars first) */
    bool is_root;          /* kept by the simplifier even if unreachable (REPL) */
    bool is_helper;        /* synthesised by lowering (eq_<type>, ...) */
};

typedef struct CProgram {
    CFun **funs;
    int nfuns;
    CFun *main;            /* def main () : unit of the root module, or NULL */
    const char *module;    /* root module name (prefix of exported symbols) */
} CProgram;

/* A pointer -> pointer hash map (heap memory; core_map_free releases),
 * used by the Core stages for substitutions and environments. */
typedef struct CoreMap {
    const void **keys;
    void **vals;
    int len, cap;
} CoreMap;
void *core_map_get(CoreMap *m, const void *key); /* NULL if absent */
void core_map_put(CoreMap *m, const void *key, void *val);
void core_map_free(CoreMap *m);

/* Builders (arena). */
CVar *core_var(const char *name, Type *t, Loc loc);
CAtom *core_atom_var(CVar *v);
CAtom *core_atom_int(int64_t v);
CAtom *core_atom_float(double v, Type *t);
CAtom *core_atom_bool(bool v);
CAtom *core_atom_unit(void);
CAtom *core_atom_string(const char *s);
CBlock *core_block_new(void);
CVar *core_bind(CBlock *b, const char *name, CExpr *e); /* appends let */
CExpr *core_prim(Prim op, Type *t, Loc loc, CAtom **args, int nargs, int64_t imm);
CExpr *core_expr(CExprKind kind, Type *t, Loc loc); /* fields zeroed */
CAtom *core_atom_fun(CFun *f, Type *t);
CLambda *core_lambda(CVar **params, int nparams, CBlock *body, Type *t, Loc loc);
CFun *core_fun_new(const char *name, const char *src_name, Loc loc);
void core_program_add(CProgram *p, CFun *f);
/* Convenience: binds prim(op, args) and returns the new variable's atom. */
CAtom *core_emit_prim(CBlock *b, const char *name, Prim op, Type *t, Loc loc,
                      CAtom **args, int nargs, int64_t imm);
/* The type an atom or a variable's uses have. */
Type *core_atom_type(CAtom *a);
/* Ground-type helpers: component i of a tuple, field i of a record
 * instance, argument of constructor i of a variant instance (NULL when
 * nullary), the number of components/fields/constructors. */
Type *core_type_proj(Type *t, int i);
Type *core_type_field(Type *t, int i);
Type *core_type_con_arg(Type *t, int con);
int core_field_index(TypeDecl *d, const char *name); /* -1 if none */
bool core_type_is_ground(Type *t); /* no variables left */
bool core_type_equal(Type *a, Type *b); /* structural, on ground types */
/* Whether evaluating e may fail or have an effect (conservative): prims
 * with PRIM_EFFECT or (refined by their operands) PRIM_PARTIAL. */
bool core_prim_may_fail(CExpr *e);
/* Deep copy of a block / lambda with every variable bound inside renamed
 * to a fresh one; `from[i]` is replaced by the atom `to[i]` (n pairs). */
CBlock *core_copy_block(CBlock *b, CVar **from, CAtom **to, int n);
CLambda *core_copy_lambda(CLambda *l, CVar **from, CAtom **to, int n);
/* Prints one atom / expression / type as --emit=core does. */
void core_print_atom(FILE *out, CAtom *a);
void core_print_type(FILE *out, Type *t);
void core_print_fun(FILE *out, CFun *f);

/* Lowering internals shared by lower.c and match.c. A Lower holds the
 * instance worklist, the type substitution of the instance being lowered
 * and the environment (Binding -> Core atom), both scoped. */
typedef struct Lower Lower;
typedef CAtom *(*LowerCont)(Lower *L, CBlock *b, void *ctx);
Type *lower_ground(Lower *L, Type *t); /* substitute, default to unit */
CAtom *lower_expr(Lower *L, Expr *e, CBlock *b);
void lower_env_bind(Lower *L, Binding *bnd, CAtom *a);
int lower_env_mark(Lower *L);
void lower_env_pop(Lower *L, int mark);
/* match.c: `match e with cases` on the scrutinee atom, as a decision tree
 * of CE_CASE / CE_IF / literal comparisons. */
CAtom *match_lower(Lower *L, Expr *e, CAtom *scrut, CBlock *b);
/* Binds patterns pats[i] to vals[i] (refutable ones are tested; a failure
 * is a run-time error at loc), then lowers the continuation k in the scope
 * of the pattern variables; returns its result (of type rtype). */
CAtom *match_bind(Lower *L, Pat **pats, CAtom **vals, int n, Type *rtype, Loc loc,
                  CBlock *b, LowerCont k, void *ctx);

/* Lowering from the typed AST, monomorphising from main and the exports:
 * each polymorphic def is copied per instance type. */
CProgram *core_lower_program(Vec *modules, Module *root);
/* Lowers one expression (REPL); free names refer to the program's defs. */
CFun *core_lower_expr(CProgram *p, Expr *e);

/* core_dl.c, --emit=ad: the program (the defs reachable from main and the
 * exports, the types they use) printed as DL source that compiles again to
 * the same Core. Variables with an id of first_ad_var or more were made by
 * the AD stages and are named for the derivative they hold (x_dot, y_bar);
 * core_dl_next_var_id, called before the AD stages, gives that bound. */
void core_dl_print_program(FILE *out, CProgram *p, int first_ad_var);
int core_dl_next_var_id(void);

/* --emit=core: readable text, one binding per line. */
void core_print_program(FILE *out, CProgram *p);
/* A string as a literal in double quotes with C escapes (\" \\ \n \t \r,
 * \xHH for other control bytes): the syntax of both Core and DL. */
void core_print_string_literal(FILE *out, const char *s);
void core_print_block(FILE *out, CBlock *b, int indent);
/* Checks the invariants (types of prims, scoping, ANF); reports internal
 * errors, returns false if broken. Run after every stage in debug builds. */
bool core_verify(CProgram *p);

/* simplify.c: inline, beta, let-float, CSE, DCE, constant folding,
 * algebraic identities, map fusion; to a fixed point. */
void core_simplify(CProgram *p, int opt_level);

/* ========================================================================
 * ad — the derivative stages (ad.c, ad_forward.c, ad_taylor.c, ad_reverse.c)
 *
 * Source-to-source: every CE_DERIV (jvp, grad, jet, ...) is replaced by
 * ordinary Core IR, innermost first, before simplification; the result is
 * printable as DL with --emit=ad. Forms not yet supported are reported as
 * errors at their position ("... is not implemented yet").
 * ======================================================================== */

/* Expands all derivative forms of the program; returns false after
 * reporting errors. */
bool ad_transform_program(CProgram *p);

/* ---- the forward / Taylor engine (ad_forward.c, ad_taylor.c) ----------
 *
 * One macro serves forward mode (order 1) and Taylor mode (order K): every
 * value of the differentiated region is represented by the coefficients
 * c[0..K] of its truncated Taylor series in the perturbation, c[0] the
 * primal value and c[1] the tangent (for K = 1) or the k-th normalised
 * Taylor coefficient; NULL stands for a symbolic zero (no code is emitted
 * for it). A value of function type a -> b is represented by its dual
 * closure Pack(a) -> Pack(b), where Pack(t) = (t, T t, ..., T t) (K
 * tangents) for a differentiable t, t itself for a type without tangent or
 * one holding functions inside data, and Dual(t) for a function type. */
typedef struct AdRep {
    CAtom **c;     /* c[0..order]; for function values c[0] is the primal
                      closure when one is at hand (else NULL) */
    CAtom *dual;   /* function values: Pack(a) -> Pack(b); NULL for a
                      function value from outside the region */
    bool active;   /* function values: captures differentiated values */
} AdRep;

typedef struct AdFwd {
    CProgram *prog;
    int order;       /* 1: forward mode; K > 1: Taylor mode */
    CBlock *blk;     /* where code is emitted */
    CoreMap env;     /* source CVar -> AdRep*; absent: outside the region */
    Loc loc;         /* the derivative form (for messages) */
    bool ok;
    int quiet;       /* > 0: speculative pass, errors are not printed */
} AdFwd;

/* PrimInfo.jvp_rule: x[i] the primal operands (new atoms), dx[i] their
 * tangents (NULL: zero), y the primal result already emitted. Emits the
 * tangent into F->blk and returns it (NULL: zero). The tangent is linear
 * in the dx[i]: built from linear primitives (PRIM_LINEAR, in their linear
 * operands) applied to tangents, products and quotients of one tangent by
 * primal values, matmul/dot/solve with one tangent operand, select on a
 * primal condition, det of a matrix with one row replaced by a tangent row,
 * and the guarded scale select(d == 0, 0, d * s) (sqrt's convention),
 * which is linear with transpose itself. */
typedef CAtom *(*AdJvpRule)(AdFwd *F, CExpr *e, CAtom **x, CAtom **dx, CAtom *y);
/* PrimInfo.taylor_rule: x[i][0..K] the operands' coefficients, y[0] the
 * primal result already emitted; fills y[1..K] (NULL: zero). */
typedef void (*AdTaylorRule)(AdFwd *F, CExpr *e, CAtom ***x, CAtom **y);

void ad_forward_init(void); /* fills PrimInfo.jvp_rule */
void ad_forward_reset(void); /* forgets the generated functions (a new run) */
void ad_taylor_init(void);  /* fills PrimInfo.taylor_rule */

/* The macro on an inline lambda applied to the argument representations
 * args[0..nparams): emits into F->blk, returns the result's. */
AdRep *ad_fwd_lambda(AdFwd *F, CLambda *l, AdRep **args);
/* For reverse mode and other clients: from `fn (x: a) => e : b` a new
 * lambda `fn (x: a) (dx: T a) => (e, de) : (b, T b)` (forward mode, fresh
 * variables; code outside the lambda is untouched). `linear`, if given,
 * receives (-> (void *)1) dx and every variable that depends on it: the
 * tangent program, linear in dx, apart from the primal bindings -- the
 * partition reverse mode by linearise + transpose needs. NULL after an
 * error. */
CLambda *ad_forward_lambda(CProgram *p, CLambda *l, CoreMap *linear);

/* Representations and emission helpers shared by the AD files. Arithmetic
 * takes NULL as zero and folds literals; types follow broadcasting. */
AdRep *ad_rep(AdFwd *F, CAtom *primal);        /* all tangents zero */
CAtom *ad_emit(AdFwd *F, const char *name, Prim op, Type *t, CAtom **args, int n, int64_t imm);
CAtom *ad_lit(double v, Type *like);           /* scalar literal of like's element type */
CAtom *ad_add(AdFwd *F, CAtom *a, CAtom *b);
CAtom *ad_sub(AdFwd *F, CAtom *a, CAtom *b);
CAtom *ad_mul(AdFwd *F, CAtom *a, CAtom *b);
CAtom *ad_div(AdFwd *F, CAtom *a, CAtom *b);
CAtom *ad_neg(AdFwd *F, CAtom *a);
CAtom *ad_scale(AdFwd *F, double s, CAtom *a); /* s * a, structural */
CAtom *ad_un(AdFwd *F, Prim op, CAtom *a);     /* elementwise unary prim */
CAtom *ad_bin(AdFwd *F, Prim op, CAtom *a, CAtom *b); /* elementwise binary prim */
CAtom *ad_cmp(AdFwd *F, Prim op, CAtom *a, CAtom *b);
CAtom *ad_select(AdFwd *F, CAtom *c, CAtom *a, CAtom *b);
/* The zero of T(t) for the primal value x : t (materialised). */
CAtom *ad_zero(AdFwd *F, Type *t, CAtom *x);
CAtom *ad_materialise(AdFwd *F, CAtom *d, Type *t, CAtom *x);
/* T(t) has no float (int, bool, ...): such values never carry tangents. */
bool ad_tangent_trivial(Type *t);
void ad_error(AdFwd *F, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Shapes and linear algebra pieces shared by the forward and Taylor rules. */
CAtom *ad_flatten(AdFwd *F, CAtom *a, CAtom **size);   /* a as a []t, its length */
CAtom *ad_sum_last(AdFwd *F, CAtom *a, bool keep);     /* sum over the last axis */
CAtom *ad_chol_tangent(AdFwd *F, CAtom *L, CAtom *dA); /* L Φ(L⁻¹ dA L⁻ᵀ) */

/* ad.c: the expansion driver, for the forms built from other forms. */
bool ad_expand_block(CBlock *b); /* expands the forms in b, innermost first */
bool ad_prepare_fun(CFun *f);                 /* f's own forms expanded before f is differentiated */
CExpr *ad_def_of(CAtom *a);                   /* the binding of a variable seen so far, or NULL */
const char *ad_fun_name(CProgram *p, const char *base); /* unique CFun name */
void ad_note_def(CVar *v, CExpr *e);
/* Forward-mode forms (ad_forward.c) and jet (ad_taylor.c): each emits the
 * expansion of e into b and returns the atom of its value (NULL after an
 * error was reported). */
CAtom *ad_forward_form(CProgram *p, CExpr *e, CBlock *b);
/* A run-time check, emitted into b, that every float array inside `given`
 * has the shape of the corresponding array of `ref` (a tangent against its
 * primal, a cotangent against its result); the error reads
 * "<lead>[shape of given]<mid>[shape of ref]" (ad_reverse.c). */
void ad_check_shapes(CBlock *b, CAtom *given, CAtom *ref, const char *lead, const char *mid, Loc loc);
CAtom *ad_taylor_jet(CProgram *p, CExpr *e, CBlock *b);
/* grad, value_and_grad, jacrev by forward mode, one pass per input
 * component: a cross-check of reverse mode, used only when the environment
 * sets DCC_AD_GRAD_BY_FORWARD. */
CAtom *ad_forward_grad_form(CProgram *p, CExpr *e, CBlock *b);
/* Reverse-mode forms (ad_reverse.c): vjp, grad, value_and_grad, jacrev,
 * with the same contract (hessian and hvp are forward mode's). */
CAtom *ad_reverse_form(CProgram *p, CExpr *e, CBlock *b);
/* Checkpointing of the for loops reverse mode differentiates whose
 * CE_LOOP.checkpoint is 0: 0 none (every iteration's residuals saved),
 * k > 0 k segments, -1 about sqrt(n) segments of about sqrt(n) iterations
 * (the state saved per segment, a segment recomputed when reversed). For
 * the driver's --checkpoint=N; $DCC_AD_CHECKPOINT when left at 0. */
extern int ad_reverse_checkpoint;

/* Function values from outside a differentiated region (docs/ad.md):
 * defunctionalisation (Reynolds 1972) over the whole program. P_DEFUN's
 * operands are f, the m arguments, then the n targets as CA_FUN atoms (so
 * that they stay reachable); imm indexes ad_defun_get. Its value is
 * target_k(caps_k..., args...) for the case k that f is a closure of:
 * `lam` (a closure of that lambda, whose captured variables caps_k are
 * read out of f's cell) or `fun` (that top-level function as a value); a
 * run-time error when none matches. The form says what the targets
 * compute: DERIV_NONE the application f x [z] itself (λ_k's body); DERIV_JVP
 * `jvp (fn q => parent) p dp` and DERIV_VJP `(vjp (fn q => parent) p).1 ȳ`
 * of the parent P_DEFUN's targets, q the tuple of its arguments (so every
 * derivative of every order stays a P_DEFUN); --emit=ad prints that. */
typedef struct DefunCase {
    CLambda *lam;
    CFun *fun;
    CVar **caps;
    int ncaps;
    CFun *target;
} DefunCase;
typedef struct Defun {
    DerivKind form;
    int64_t parent; /* -1 for DERIV_NONE */
    int nargs;      /* 1 or 2 for DERIV_NONE, 2 (p and dp or ȳ) for the others */
    Type *ftype;    /* f's type */
    DefunCase *cases;
    int ncases;
} Defun;
void ad_defun_reset(CProgram *p);      /* collects the lambdas (ad.c, first) */
Defun *ad_defun_get(int64_t id);
/* The captured variables of a lambda some P_DEFUN tests for, in the order
 * of ad_lambda_free_vars; NULL for the other lambdas. Every copy of it
 * (origin) lays its closures out so (codegen_expr.c). */
CVar **ad_defun_caps(const CLambda *l, int *n);
void ad_lambda_free_vars(CLambda *l, Vec *out); /* in order of first use */
/* A lambda the AD stages generate whose closures may reach a dispatch (the
 * dual and primal closures of forward mode); dispatches created before it
 * do not know it. */
void ad_defun_candidate(CLambda *l);
/* Reverse mode takes a function value out of a data structure as a
 * constant (forward mode's rule: functions inside data carry no tangent),
 * which is sound unless the program stores a closure over a differentiated
 * variable in a data structure: kind 0 reports such a store, kind 1 such a
 * use; the second of the two kinds to come is an error (false). */
bool ad_defun_data_guard(int kind, Loc loc);
/* P_DEFUN for the application f xs[0] .. xs[m-1] : rt, m 1 or 2 (a curried
 * function of two parameters); NULL when no lambda or top-level function
 * of f's type exists in the program. */
CExpr *ad_defun_call(CProgram *p, CAtom *f, CAtom **xs, int m, Type *rt, Loc loc);
/* The derivative of the P_DEFUN e at pa (its arguments, a tuple when
 * several): DERIV_JVP with s the tangent of pa, of type (R, T R); DERIV_VJP
 * with s the cotangent ȳ, of type T(pa's type). */
CExpr *ad_defun_derive(CProgram *p, CExpr *e, DerivKind form, CAtom *pa, CAtom *s, Type *rt);

/* ========================================================================
 * codegen — Core IR to LLVM IR (the only files that include llvm-c/)
 * ======================================================================== */

typedef struct Options Options; /* driver section */

/* Compiles the program to an object file, an executable, or prints LLVM IR /
 * assembly, according to dcc_options. Returns false after reporting errors. */
bool codegen_program(CProgram *p, const Options *o);
/* dcc run: compiles to a temporary executable, runs it with o->run_args,
 * removes it; returns the program's exit status (1 when it did not build). */
int codegen_run(CProgram *p, const Options *o);

/* ========================================================================
 * cheader — the C view of exported functions (cheader.c; docs/c-api.md)
 *
 * Every export, and every call wrapper of a closure type that crosses the
 * boundary, is the C function
 *     int SYM(P1 a1, ..., Pn an, R *out);
 * returning 0 (result in *out) or 1 after a run-time error (dl_last_error);
 * unit parameters are left out, and a unit result has no out parameter.
 * codegen.c's export wrappers and the header agree through these functions.
 * ======================================================================== */

typedef enum {
    CVIEW_UNIT,    /* left out (a uint8_t inside structs) */
    CVIEW_F64,     /* double */
    CVIEW_F32,     /* float */
    CVIEW_I64,     /* int64_t */
    CVIEW_BOOL,    /* bool */
    CVIEW_STRING,  /* const char * (DL string inside results) */
    CVIEW_KEY,     /* dl_key */
    CVIEW_ARRAY,   /* dl_array * */
    CVIEW_STRUCT,  /* tuple or record: a struct, parameters by const pointer */
    CVIEW_VARIANT, /* pointer to the constructor cell (a tagged struct) */
    CVIEW_FUNC,    /* dl_closure * (opaque), applied with a call wrapper */
} CViewKind;

Type *cview_norm(Type *t);          /* resolved, [][]a flattened, T(t) computed */
CViewKind cview_kind(Type *t);
/* A C identifier naming the type: float, arr2_float, tup2_float_int,
 * params (a record), option_float (an instance), fn_float_arr1_float. */
const char *cview_mangle(Type *t);
/* Symbols of a module: the closure call wrapper of a function type, the
 * release function of an export's result. */
const char *cview_call_name(const char *module, Type *fty);
const char *cview_release_name(const char *sym);
/* Whether the type holds references (the result needs a release). */
bool cview_has_refs(Type *t);
/* Every function type reachable from the exports' signatures (through
 * tuples, records, arrays, variants and functions), each once. */
void cview_closure_types(CProgram *p, Vec *out);
/* Writes the header for the program's exports; false after an error
 * (reported). `root` is the module compiled (its export declarations give
 * the comments), `source` names its file. */
bool cheader_write(CProgram *p, Module *root, const char *path, const char *source);

/* ========================================================================
 * repl — the interactive session (repl.c; besides codegen, the one file
 * that includes llvm-c/, for ORC LLJIT)
 * ======================================================================== */

/* Runs the REPL: `load`, if given, is loaded first; interactive (prompt,
 * banner, line editing, history) when stdin is a terminal, otherwise a
 * script read from stdin. Returns the exit status of dcc. */
int repl_main(const char *load);
/* For the REPL's JIT (codegen.c): the program's module, with the C main
 * wrapper, optimised, as LLVM bitcode in a malloc'd buffer; false after
 * an error (reported). */
bool codegen_bitcode(CProgram *p, const Options *o, char **data, size_t *len);
/* The directory holding libdlrt (the build tree's when dcc runs from it). */
const char *codegen_runtime_dir(void);

/* ========================================================================
 * driver
 * ======================================================================== */

typedef enum {
    EMIT_EXE, EMIT_TOKENS, EMIT_AST, EMIT_TYPES, EMIT_CORE, EMIT_AD,
    EMIT_LLVM, EMIT_ASM, EMIT_OBJ, EMIT_PTX,
} EmitKind;

typedef struct Options {
    const char *input;    /* file, or "-" for stdin */
    const char *output;   /* -o */
    const char *header;   /* --header */
    EmitKind emit;
    int opt_level;        /* -O0..-O3 (default 2) */
    bool debug_info;      /* -g */
    bool compile_only;    /* -c */
    bool asm_only;        /* -S */
    bool run;             /* dcc run */
    bool gpu;             /* --gpu */
    const char *target;   /* --target=nvptx */
    int colour;           /* -1 auto */
    char **run_args;      /* dcc run file.dl ARGS */
    int nrun_args;
} Options;

extern Options dcc_options;

#endif /* DCC_H */
