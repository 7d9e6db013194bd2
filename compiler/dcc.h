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

/* --emit=tokens: one token per line: "line:col KIND text". */
void lexer_dump_tokens(FILE *out, SrcFile *file);

/* ========================================================================
 * module
 * ======================================================================== */

/* The directory holding std/*.dl: $DCC_STDLIB, else the source tree's
 * stdlib/ when dcc runs uninstalled, else the installed pkgdatadir. */
const char *module_stdlib_dir(void);
void module_set_stdlib_dir(const char *dir);

/* Reads and parses `path` (NULL for stdin with text given) and everything it
 * imports, transitively; the prelude is always loaded first. Cycles and
 * missing modules are reported at the import's position. Returns the root
 * module; all loaded modules in dependency order are in *order. */
Module *module_load_root(const char *path, const char *display_name, Vec *order);
Module *module_load_text(const char *name, const char *text, size_t len, Vec *order);

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
    TY_TANGENT, /* T(args[0]) while args[0] is not yet known */
} TypeKind;

struct Type {
    TypeKind kind;
    int id;          /* TY_VAR/TY_QVAR: number; for printing 'a, 'b */
    int level;       /* TY_VAR: let-level for generalisation */
    Type *link;      /* TY_VAR: bound to this type */
    Type **args;
    int nargs;
    Type *elem;      /* TY_ARRAY */
    int rank;        /* TY_ARRAY */
    TypeDecl *decl;  /* TY_NAMED */
    Loc origin;      /* where the type was demanded (for "expected ... here") */
};

/* A declared record or variant type after checking. */
struct TypeDecl {
    const char *name;
    Loc loc;
    Decl *decl;         /* the declaration */
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
};

/* A variable bound in the program: a def, a let, a pattern variable. */
struct Binding {
    const char *name;
    Loc loc;
    Type *type;        /* monotype, or the body of the scheme */
    int nqvars;        /* > 0: polymorphic (TY_QVAR 0..nqvars-1 in type) */
    Decl *def;         /* top-level def, if any */
    int builtin;       /* > 0: index into the built-in table */
    Module *module;
    bool used;
};

Type *type_resolve(Type *t); /* follows links */
Type *type_int(void);
Type *type_float(void);
Type *type_f32(void);
Type *type_bool(void);
Type *type_unit(void);
Type *type_string(void);
Type *type_array(Type *elem, int rank);
Type *type_func(Type *a, Type *b);
Type *type_tuple(Type **items, int n);
Type *type_fresh_var(int level);
/* T(t), LANGUAGE.md §3: float->float, int/bool/string->unit, structural
 * on tuples/records/variants/arrays, T(a->b) = a -> T b. Stays symbolic
 * (TY_TANGENT) while t is an unbound variable. */
Type *type_tangent(Type *t);
bool type_equal(Type *a, Type *b);
/* Prints a type in DL syntax, naming variables 'a, 'b, ... consistently
 * within one call. */
void type_print(StrBuf *b, Type *t);
char *type_to_string(Type *t); /* arena string */

/* Type-checks all modules in dependency order. Reports every error it
 * finds; returns the number of errors. Fills Expr.type, Pat.type, bindings. */
int typecheck_program(Vec *modules);

/* --emit=types: each top-level def with its inferred type scheme. */
void types_dump_module(FILE *out, Module *m);

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
