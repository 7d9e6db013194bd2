/* parser.y — the grammar of DL (LANGUAGE.md §2–§8) and the AST it builds.
 *
 * Pure bison parser (api.pure full, %locations with Loc as the location
 * type). The lexer (lexer.l) turns a whole file into a token array first;
 * the file is then cut into declarations at the keywords that can only begin
 * one (def, type, import, export; a def right after export belongs to it),
 * and each declaration is parsed by its own yyparse run. A syntax error thus
 * never reaches past its declaration, and recovery inside one (a bad let
 * value, a bad parenthesised expression, a bad def body) cannot swallow the
 * next. A def whose parse fails is still declared, with an EX_ERROR body, so
 * that its uses do not cascade into "unbound" errors.
 *
 * Grammar decisions (beyond LANGUAGE.md):
 *   - Precedence, loosest first: |> ; >>> ; *** ; || ; && ;
 *     == != < <= > >= (non-associative) ; + - ; * / % @ ; unary - ! ;
 *     ^ (right) ; application ; postfix .f .0 [...]. All binary operators
 *     but ^ and the comparisons associate to the left. *** binds tighter
 *     than >>> (as in Haskell's Control.Arrow): f >>> g *** h = f >>> (g *** h).
 *   - let, fn, if, match and loop extend as far right as possible and may
 *     be the right operand of an operator (x |> fn y => y); as a left
 *     operand or an application argument they need parentheses.
 *   - Application arguments are atoms: f -1 is a subtraction.
 *   - A match inside a case takes the following cases (as in OCaml).
 *   - `let f p1 p2 [: t] = e in b` is EX_LET(f, EX_LAMBDA); `let p : t = e`
 *     annotates the pattern (PAT_ANNOT); `fn p1 p2 [: t] => e` may carry a
 *     result type too.
 *   - Type syntax: a -> b (right assoc) ; a * b (tuple) ; []t (prefix,
 *     binds looser than application: []float tree = [](float tree)) ;
 *     postfix application t name, (t1, t2) name ; (a, b) is a tuple type.
 *   - A bare import path must start with std/ (import std/nn); local files
 *     are imported by a string (import "util.dl").
 *   - `with jvp p => e` / `with vjp p => e` after a def body: `with` then an
 *     identifier that must be jvp or vjp. This never conflicts with match
 *     ... with or { r with ... }: those are inside the open match or braces.
 *   - Operator sections: every binary operator, (***) included; `_` is a
 *     token of its own (a pattern, never an expression).
 *   - Type declarations may start their constructors with '|'; the first
 *     '|' of a match is optional too.
 *
 * Syntax errors read "unexpected X, expected Y", X and Y in DL spelling,
 * Y summarised as "expression", "pattern", "type" or the closing keyword or
 * bracket that is missing; a bracket left open gets a note "to match this".
 * Nothing is said when the unexpected token is one the lexer already
 * reported (YYUNDEF), or at an end of input the lexer reported (an
 * unterminated comment); in the REPL an error at the end of the input only
 * marks it incomplete.
 */

%code requires {
#include "dcc.h"

typedef struct List {
    void **items;
    int n, cap;
} List;

typedef struct FloatLit {
    double v;
    bool f32;
} FloatLit;

typedef struct ParseCtx ParseCtx;
}

%code provides {
/* One token of the array that lexer_tokenize builds. off/end: its bytes. */
typedef struct Token {
    int kind;
    YYSTYPE val;
    Loc loc;
    size_t off, end;
} Token;

Token *lexer_tokenize(SrcFile *file, int *ntok, bool repl, bool *eof_error, bool *incomplete);
}

%define api.pure full
%define api.location.type {Loc}
%define api.token.prefix {T_}
%define parse.error custom
%define parse.lac full
%locations
%param {ParseCtx *ctx}
%expect 0

%union {
    int64_t ival;
    FloatLit fl;
    const char *str;
    bool flag;
    OpKind op;
    Expr *expr;
    Pat *pat;
    TypeExpr *texpr;
    Decl *decl;
    List *list;
    IndexArg *idx;
    MatchCase *mcase;
    DerivRule *rule;
    ConDecl *con;
    void *ptr;
}

%code {
#include <stdlib.h>
#include <string.h>

/* A flat sequence of `let ... in` is right-nested in the grammar and takes
 * about five parser stack entries per binding; bison's default of 10000
 * stopped at 2000 bindings (long --emit=ad output). Brackets are limited to
 * 1000 levels by the lexer; this bounds everything else. */
#define YYMAXDEPTH 500000

struct ParseCtx {
    SrcFile *file;
    Token *toks;
    int ntoks;
    int start, end;       /* the token range of this run */
    int pos;              /* next token to hand out */
    int cur;              /* index of the last token handed out (end: EOF) */
    int start_kind;       /* T_START_DECL or T_START_EXPR */
    bool started;
    Loc eof_loc;          /* just after the last token of the file */
    Decl *decl;           /* results */
    Expr *expr;
    bool eof_error;       /* the lexer already reported an error at the end */
    bool repl;
    bool incomplete;      /* REPL: the input ended inside a construct */
    bool failed;          /* a syntax error was found */
};

static int yylex(YYSTYPE *val, Loc *loc, ParseCtx *ctx);
static Loc chunk_last_loc(ParseCtx *ctx);
static void yyerror(const Loc *loc, ParseCtx *ctx, const char *msg);

/* The location of a rule: from its first symbol to its last; an empty rule
 * gets the empty range just after the previous symbol. */
#define YYLLOC_DEFAULT(Cur, Rhs, N)                                  \
    do {                                                             \
        if (N) {                                                     \
            (Cur).file = YYRHSLOC(Rhs, 1).file;                      \
            (Cur).line = YYRHSLOC(Rhs, 1).line;                      \
            (Cur).col = YYRHSLOC(Rhs, 1).col;                        \
            (Cur).end_line = YYRHSLOC(Rhs, N).end_line;              \
            (Cur).end_col = YYRHSLOC(Rhs, N).end_col;                \
        } else {                                                     \
            (Cur).file = YYRHSLOC(Rhs, 0).file;                      \
            (Cur).line = (Cur).end_line = YYRHSLOC(Rhs, 0).end_line; \
            (Cur).col = YYRHSLOC(Rhs, 0).end_col + 1;                \
            (Cur).end_col = YYRHSLOC(Rhs, 0).end_col;                \
        }                                                            \
    } while (0)

/* Arena lists for the parts of a node while it is being parsed. */
static List *list_new(void) { return NEW(List); }

static List *list_push(List *l, void *p)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        void **items = NEWN(void *, cap);
        if (l->n)
            memcpy(items, l->items, sizeof(void *) * (size_t)l->n);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = p;
    return l;
}

static List *list1(void *p) { return list_push(list_new(), p); }

typedef struct FieldInit {
    const char *name;
    Loc loc;
    void *value; /* Expr, Pat or TypeExpr */
} FieldInit;

static FieldInit *field_init(const char *name, Loc loc, void *value)
{
    FieldInit *f = NEW(FieldInit);
    f->name = name;
    f->loc = loc;
    f->value = value;
    return f;
}

static Expr *mk_binop(OpKind op, Expr *l, Expr *r, Loc loc)
{
    Expr *e = expr_new(EX_BINOP, loc);
    e->u.op.op = op;
    e->u.op.l = l;
    e->u.op.r = r;
    return e;
}

/* Comparisons do not chain (LANGUAGE.md: they are non-associative). Bison
 * parses `a < b < c` as left-nested so that the error can say so and suggest
 * the conjunction; a parenthesised comparison has a narrower location than its
 * operand position and is allowed. */
static bool is_comparison(OpKind op)
{
    return op == OP_EQ || op == OP_NE || op == OP_LT || op == OP_LE || op == OP_GT || op == OP_GE;
}

static Expr *mk_compare(OpKind op, Expr *l, Loc lloc, Expr *r, Loc loc)
{
    if (l->kind == EX_BINOP && is_comparison(l->u.op.op) &&
        l->loc.line == lloc.line && l->loc.col == lloc.col &&
        l->loc.end_line == lloc.end_line && l->loc.end_col == lloc.end_col) {
        error_at(loc, "comparison operators do not chain");
        note_at(l->loc, "this comparison gives a bool; write 'a < b && b < c' instead");
    }
    return mk_binop(op, l, r, loc);
}

static Expr *mk_unop(OpKind op, Expr *x, Loc loc)
{
    Expr *e = expr_new(EX_UNOP, loc);
    e->u.op.op = op;
    e->u.op.l = x;
    return e;
}

static Expr *mk_list_expr(ExprKind kind, List *l, Loc loc)
{
    Expr *e = expr_new(kind, loc);
    e->u.list.n = l ? l->n : 0;
    e->u.list.items = l ? (Expr **)l->items : NULL;
    return e;
}

static Expr *mk_record(Expr *base, List *fields, Loc loc)
{
    Expr *e = expr_new(base ? EX_UPDATE : EX_RECORD, loc);
    e->u.rec.base = base;
    e->u.rec.n = fields->n;
    e->u.rec.names = NEWN(const char *, fields->n);
    e->u.rec.values = NEWN(Expr *, fields->n);
    for (int i = 0; i < fields->n; i++) {
        FieldInit *f = fields->items[i];
        e->u.rec.names[i] = f->name;
        e->u.rec.values[i] = f->value;
        for (int j = 0; j < i; j++)
            if (e->u.rec.names[j] == f->name)
                error_at(f->loc, "field '%s' is given twice", f->name);
    }
    return e;
}

static Expr *mk_lambda(List *params, TypeExpr *ret, Expr *body, Loc loc)
{
    Expr *e = expr_new(EX_LAMBDA, loc);
    e->u.lam.params = (Pat **)params->items;
    e->u.lam.nparams = params->n;
    e->u.lam.ret = ret;
    e->u.lam.body = body;
    return e;
}

static Expr *mk_let(Pat *p, Expr *value, Expr *body, Loc loc)
{
    Expr *e = expr_new(EX_LET, loc);
    e->u.let.pat = p;
    e->u.let.value = value;
    e->u.let.body = body;
    return e;
}

static Pat *mk_pat_var(const char *name, Loc loc)
{
    Pat *p = pat_new(PAT_VAR, loc);
    p->name = name;
    return p;
}

static Pat *mk_pat_annot(Pat *inner, TypeExpr *t, Loc loc)
{
    Pat *p = pat_new(PAT_ANNOT, loc);
    p->arg = inner;
    p->annot = t;
    return p;
}

static TypeExpr *mk_tname(const char *name, List *args, Loc loc)
{
    TypeExpr *t = texpr_new(TE_NAME, loc);
    t->name = name;
    if (args) {
        t->args = (TypeExpr **)args->items;
        t->nargs = args->n;
    }
    return t;
}

}

%token <ival> INT "integer literal"
%token <fl> FLOAT "float literal"
%token <str> STRING "string literal"
%token <str> IDENT "identifier"
%token <str> CONID "constructor"
%token <str> TYVAR "type variable"
%token DEF "def" EXPORT "export" IMPORT "import" AS "as" TYPE "type" OF "of"
%token LET "let" REC "rec" IN "in" FN "fn" IF "if" THEN "then" ELSE "else"
%token MATCH "match" WITH "with" LOOP "loop" FOR "for" WHILE "while" DO "do"
%token TRUE "true" FALSE "false"
%token LPAREN "(" RPAREN ")" LBRACK "[" LBRACK_IDX "[ (index)" RBRACK "]"
%token LBRACE "{" RBRACE "}" COMMA "," COLON ":" DOT "." DOTDOT ".." BAR "|"
%token EQ "=" FATARROW "=>" ARROW "->" WILD "_"
%token PLUS "+" MINUS "-" STAR "*" SLASH "/" PERCENT "%" AT "@" CARET "^"
%token EQEQ "==" NE "!=" LT "<" LE "<=" GT ">" GE ">="
%token ANDAND "&&" OROR "||" PIPE "|>" COMPOSE ">>>" PAR "***" BANG "!"
%token START_DECL START_EXPR

%nterm <decl> decl def_decl def_head type_decl import_decl export_deriv
%nterm <list> params apats rules tparams tyvars tfields condecls texprs targs
%nterm <list> exprs finits idxargs cases tpats fpats modpath
%nterm <rule> rule
%nterm <con> condecl
%nterm <ptr> tfield finit fpat type_rhs
%nterm <texpr> texpr tprod tstar tarr tapp tatom ret_opt
%nterm <pat> pat apat tpat
%nterm <expr> expr app postfix atom
%nterm <idx> idxarg
%nterm <mcase> case
%nterm <op> opsec
%nterm <str> as_opt

/* Rules ending in an open expression (let ... in e, fn ... => e, if ...
 * else e, loop ... do e, match ... with cases) take everything to their
 * right: their precedence is below every operator. A match meeting '|'
 * shifts it (the case belongs to the innermost match). */
%precedence IN ELSE DO FATARROW WITH
%precedence BAR
%left PIPE
%left COMPOSE
%left PAR
%left OROR
%left ANDAND
%left EQEQ NE LT LE GT GE
%left PLUS MINUS
%left STAR SLASH PERCENT AT
%precedence UMINUS BANG
%right CARET
/* (t1, t2) name is an application of name, not a tuple type applied. */
%precedence TARGS
%precedence IDENT

%%

start
    : START_DECL decl           { ctx->decl = $2; }
    | START_DECL error          { ctx->decl = NULL; }
    | START_EXPR expr           { ctx->expr = $2; }
    | START_EXPR error          { ctx->expr = NULL; }
    ;

decl
    : def_decl
    | type_decl
    | import_decl
    | export_deriv
    ;

/* ---------------------------------------------------------------- def */

/* def_decl = ["export"] "def" IDENT apat* [":" type] "=" expr rule* */
def_decl
    : def_head EQ expr rules
        {
            $$ = $1;
            $$->body = $3;
            $$->rules = (DerivRule **)$4->items;
            $$->nrules = $4->n;
            $$->loc = @$;
        }
    | def_head EQ error
        {
            $$ = $1;
            $$->loc = loc_span(@1, chunk_last_loc(ctx));
            $$->body = expr_new(EX_ERROR, loc_span(@3, chunk_last_loc(ctx)));
        }
    ;

def_head
    : DEF IDENT params ret_opt
        {
            $$ = decl_new(DECL_DEF, @$);
            $$->name = $2;
            $$->name_loc = @2;
            $$->params = (Pat **)$3->items;
            $$->nparams = $3->n;
            $$->ret = $4;
        }
    | EXPORT DEF IDENT params ret_opt
        {
            $$ = decl_new(DECL_DEF, @$);
            $$->is_export = true;
            $$->name = $3;
            $$->name_loc = @3;
            $$->params = (Pat **)$4->items;
            $$->nparams = $4->n;
            $$->ret = $5;
        }
    ;

params
    : %empty                    { $$ = list_new(); }
    | params apat               { $$ = list_push($1, $2); }
    ;

apats
    : apat                      { $$ = list1($1); }
    | apats apat                { $$ = list_push($1, $2); }
    ;

ret_opt
    : %empty                    { $$ = NULL; }
    | COLON texpr               { $$ = $2; }
    ;

rules
    : %empty                    { $$ = list_new(); }
    | rules rule                { $$ = $2 ? list_push($1, $2) : $1; }
    ;

/* rule = "with" ("jvp" | "vjp") apat+ "=>" expr */
rule
    : WITH IDENT apats FATARROW expr
        {
            $$ = NEW(DerivRule);
            $$->loc = @$;
            if (strcmp($2, "jvp") == 0)
                $$->kind = RULE_JVP;
            else if (strcmp($2, "vjp") == 0)
                $$->kind = RULE_VJP;
            else {
                error_at(@2, "expected 'jvp' or 'vjp' after 'with', not '%s'", $2);
                $$ = NULL;
            }
            if ($$) {
                $$->params = (Pat **)$3->items;
                $$->nparams = $3->n;
                $$->body = $5;
            }
        }
    ;

/* ---------------------------------------------------------------- type */

/* type_decl = "type" tparams IDENT "=" (type | "{" fields "}" | ["|"] con ("|" con)*) */
type_decl
    : TYPE tparams IDENT EQ type_rhs
        {
            $$ = $5;
            $$->loc = @$;
            $$->name = $3;
            $$->name_loc = @3;
            $$->tparams = (const char **)$2->items;
            $$->ntparams = $2->n;
            for (int i = 0; i < $2->n; i++)
                for (int j = 0; j < i; j++)
                    if ($$->tparams[i] == $$->tparams[j])
                        error_at(@2, "type parameter '%s is given twice", $$->tparams[i]);
        }
    ;

tparams
    : %empty                    { $$ = list_new(); }
    | TYVAR                     { $$ = list1((void *)$1); }
    | LPAREN tyvars RPAREN      { $$ = $2; }
    ;

tyvars
    : TYVAR                     { $$ = list1((void *)$1); }
    | tyvars COMMA TYVAR        { $$ = list_push($1, (void *)$3); }
    ;

type_rhs
    : texpr
        {
            Decl *d = decl_new(DECL_TYPE, @$);
            d->tkind = TD_ALIAS;
            d->alias = $1;
            $$ = d;
        }
    | LBRACE tfields RBRACE
        {
            Decl *d = decl_new(DECL_TYPE, @$);
            d->tkind = TD_RECORD;
            TypeExpr *t = texpr_new(TE_RECORD, @$);
            t->nargs = $2->n;
            t->args = NEWN(TypeExpr *, $2->n);
            t->fields = NEWN(const char *, $2->n);
            for (int i = 0; i < $2->n; i++) {
                FieldInit *f = $2->items[i];
                t->fields[i] = f->name;
                t->args[i] = f->value;
                for (int j = 0; j < i; j++)
                    if (t->fields[j] == f->name)
                        error_at(f->loc, "field '%s' is declared twice", f->name);
            }
            d->record = t;
            $$ = d;
        }
    | condecls
        {
            Decl *d = decl_new(DECL_TYPE, @$);
            d->tkind = TD_VARIANT;
            d->ncons = $1->n;
            d->cons = NEWN(ConDecl, $1->n);
            for (int i = 0; i < $1->n; i++) {
                d->cons[i] = *(ConDecl *)$1->items[i];
                for (int j = 0; j < i; j++)
                    if (d->cons[j].name == d->cons[i].name)
                        error_at(d->cons[i].loc, "constructor '%s' is declared twice", d->cons[i].name);
            }
            $$ = d;
        }
    | BAR condecls
        {
            Decl *d = decl_new(DECL_TYPE, @$);
            d->tkind = TD_VARIANT;
            d->ncons = $2->n;
            d->cons = NEWN(ConDecl, $2->n);
            for (int i = 0; i < $2->n; i++) {
                d->cons[i] = *(ConDecl *)$2->items[i];
                for (int j = 0; j < i; j++)
                    if (d->cons[j].name == d->cons[i].name)
                        error_at(d->cons[i].loc, "constructor '%s' is declared twice", d->cons[i].name);
            }
            $$ = d;
        }
    ;

tfields
    : tfield                    { $$ = list1($1); }
    | tfields COMMA tfield      { $$ = list_push($1, $3); }
    ;

tfield
    : IDENT COLON texpr         { $$ = field_init($1, @1, $3); }
    ;

condecls
    : condecl                   { $$ = list1($1); }
    | condecls BAR condecl      { $$ = list_push($1, $3); }
    ;

condecl
    : CONID                     { $$ = NEW(ConDecl); $$->name = $1; $$->loc = @$; }
    | CONID OF texpr            { $$ = NEW(ConDecl); $$->name = $1; $$->loc = @$; $$->arg = $3; }
    ;

/* ---------------------------------------------------------------- import, export */

import_decl
    : IMPORT STRING as_opt
        {
            $$ = decl_new(DECL_IMPORT, @$);
            $$->path = $2;
            $$->as = $3;
            if (!*$2)
                error_at(@2, "empty import path");
        }
    | IMPORT modpath as_opt
        {
            $$ = decl_new(DECL_IMPORT, @$);
            StrBuf b = {0};
            for (int i = 0; i < $2->n; i++) {
                if (i)
                    sb_putc(&b, '/');
                sb_puts(&b, $2->items[i]);
            }
            $$->path = arena_strdup(dcc_arena, b.data);
            sb_free(&b);
            $$->is_std = true;
            $$->as = $3;
            if ($2->n < 2 || strcmp($2->items[0], "std") != 0) {
                error_at(@2, "a module path must start with 'std/' (import std/nn); "
                             "import a local file by its name in quotes: import \"%s.dl\"", $$->path);
                $$ = NULL;
            }
        }
    ;

modpath
    : IDENT                     { $$ = list1((void *)$1); }
    | modpath SLASH IDENT       { $$ = list_push($1, (void *)$3); }
    ;

as_opt
    : %empty                    { $$ = NULL; }
    | AS IDENT                  { $$ = $2; }
    ;

/* export_deriv = "export" ("grad" | "jvp" | "vjp" | "value_and_grad") IDENT "as" IDENT */
export_deriv
    : EXPORT IDENT IDENT AS IDENT
        {
            $$ = decl_new(DECL_EXPORT_DERIV, @$);
            static const struct { const char *name; DerivKind kind; } forms[] = {
                {"grad", DERIV_GRAD}, {"jvp", DERIV_JVP}, {"vjp", DERIV_VJP},
                {"value_and_grad", DERIV_VALUE_AND_GRAD},
            };
            $$->deriv = DERIV_NONE;
            for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
                if (strcmp($2, forms[i].name) == 0)
                    $$->deriv = forms[i].kind;
            $$->target = $3;
            $$->target_loc = @3;
            $$->name = $5;
            $$->name_loc = @5;
            $$->is_export = true;
            if ($$->deriv == DERIV_NONE) {
                error_at(@2, "cannot export '%s' of a function: expected grad, jvp, vjp or value_and_grad", $2);
                $$ = NULL;
            }
        }
    ;

/* ---------------------------------------------------------------- types */

/* type = tprod ["->" type] */
texpr
    : tprod
    | tprod ARROW texpr
        {
            $$ = texpr_new(TE_FUNC, @$);
            $$->elem = $1;
            $$->result = $3;
        }
    ;

tprod
    : tarr
    | tstar
    ;

/* t1 * t2 * t3 is one 3-tuple; (t1 * t2) * t3 nests */
tstar
    : tarr STAR tarr
        {
            $$ = texpr_new(TE_TUPLE, @$);
            List *l = list_push(list1($1), $3);
            $$->args = (TypeExpr **)l->items;
            $$->nargs = l->n;
        }
    | tstar STAR tarr
        {
            $$ = $1;
            List l = {(void **)$1->args, $1->nargs, $1->nargs};
            list_push(&l, $3);
            $$->args = (TypeExpr **)l.items;
            $$->nargs = l.n;
            $$->loc = @$;
        }
    ;

tarr
    : tapp
    | LBRACK RBRACK tarr        { $$ = texpr_new(TE_ARRAY, @$); $$->elem = $3; }
    | LBRACK_IDX RBRACK tarr    { $$ = texpr_new(TE_ARRAY, @$); $$->elem = $3; }
    ;

tapp
    : tatom
    | tapp IDENT                { $$ = mk_tname($2, list1($1), @$); }
    | targs IDENT               { $$ = mk_tname($2, $1, @$); }
    ;

targs
    : LPAREN texpr COMMA texprs RPAREN
        {
            $$ = list1($2);
            for (int i = 0; i < $4->n; i++)
                list_push($$, $4->items[i]);
        }
    ;

tatom
    : IDENT                     { $$ = mk_tname($1, NULL, @$); }
    | TYVAR                     { $$ = texpr_new(TE_VAR, @$); $$->name = $1; }
    | LPAREN texpr RPAREN       { $$ = $2; }
    | targs %prec TARGS
        {
            $$ = texpr_new(TE_TUPLE, @$);
            $$->args = (TypeExpr **)$1->items;
            $$->nargs = $1->n;
        }
    ;

texprs
    : texpr                     { $$ = list1($1); }
    | texprs COMMA texpr        { $$ = list_push($1, $3); }
    ;

/* ---------------------------------------------------------------- patterns */

/* pat = CONID apat | apat */
pat
    : CONID apat                { $$ = pat_new(PAT_CON, @$); $$->name = $1; $$->arg = $2; }
    | apat
    ;

apat
    : WILD                      { $$ = pat_new(PAT_WILD, @$); }
    | IDENT                     { $$ = mk_pat_var($1, @$); }
    | CONID                     { $$ = pat_new(PAT_CON, @$); $$->name = $1; }
    | INT                       { $$ = pat_new(PAT_INT, @$); $$->ival = $1; }
    | MINUS INT                 { $$ = pat_new(PAT_INT, @$); $$->ival = -$2; }
    | FLOAT                     { $$ = pat_new(PAT_FLOAT, @$); $$->fval = $1.v; $$->is_f32 = $1.f32; }
    | MINUS FLOAT               { $$ = pat_new(PAT_FLOAT, @$); $$->fval = -$2.v; $$->is_f32 = $2.f32; }
    | TRUE                      { $$ = pat_new(PAT_BOOL, @$); $$->ival = 1; }
    | FALSE                     { $$ = pat_new(PAT_BOOL, @$); $$->ival = 0; }
    | STRING                    { $$ = pat_new(PAT_STRING, @$); $$->sval = $1; }
    | LPAREN RPAREN             { $$ = pat_new(PAT_UNIT, @$); }
    | LPAREN tpat RPAREN        { $$ = $2; }
    | LPAREN tpat COMMA tpats RPAREN
        {
            $$ = pat_new(PAT_TUPLE, @$);
            List *l = list1($2);
            for (int i = 0; i < $4->n; i++)
                list_push(l, $4->items[i]);
            $$->items = (Pat **)l->items;
            $$->nitems = l->n;
        }
    | LBRACE fpats RBRACE
        {
            $$ = pat_new(PAT_RECORD, @$);
            $$->nitems = $2->n;
            $$->items = NEWN(Pat *, $2->n);
            $$->fields = NEWN(const char *, $2->n);
            for (int i = 0; i < $2->n; i++) {
                FieldInit *f = $2->items[i];
                $$->fields[i] = f->name;
                $$->items[i] = f->value;
                for (int j = 0; j < i; j++)
                    if ($$->fields[j] == f->name)
                        error_at(f->loc, "field '%s' appears twice in the pattern", f->name);
            }
        }
    | LBRACE fpats COMMA DOTDOT RBRACE
        {
            $$ = pat_new(PAT_RECORD, @$);
            $$->open = true;
            $$->nitems = $2->n;
            $$->items = NEWN(Pat *, $2->n);
            $$->fields = NEWN(const char *, $2->n);
            for (int i = 0; i < $2->n; i++) {
                FieldInit *f = $2->items[i];
                $$->fields[i] = f->name;
                $$->items[i] = f->value;
                for (int j = 0; j < i; j++)
                    if ($$->fields[j] == f->name)
                        error_at(f->loc, "field '%s' appears twice in the pattern", f->name);
            }
        }
    ;

/* a pattern in parentheses may carry a type: (x : float), (w : []float, b : float) */
tpat
    : pat
    | pat COLON texpr           { $$ = mk_pat_annot($1, $3, @$); }
    ;

tpats
    : tpat                      { $$ = list1($1); }
    | tpats COMMA tpat          { $$ = list_push($1, $3); }
    ;

fpats
    : fpat                      { $$ = list1($1); }
    | fpats COMMA fpat          { $$ = list_push($1, $3); }
    ;

/* { w1, b1 = p }: a field alone binds a variable of its name */
fpat
    : IDENT                     { $$ = field_init($1, @1, mk_pat_var($1, @1)); }
    | IDENT EQ pat              { $$ = field_init($1, @1, $3); }
    ;

/* ---------------------------------------------------------------- expressions */

expr
    : app
    | expr PIPE expr            { $$ = mk_binop(OP_PIPE, $1, $3, @$); }
    | expr COMPOSE expr         { $$ = mk_binop(OP_COMPOSE, $1, $3, @$); }
    | expr PAR expr             { $$ = mk_binop(OP_PAR, $1, $3, @$); }
    | expr OROR expr            { $$ = mk_binop(OP_OR, $1, $3, @$); }
    | expr ANDAND expr          { $$ = mk_binop(OP_AND, $1, $3, @$); }
    | expr EQEQ expr            { $$ = mk_compare(OP_EQ, $1, @1, $3, @$); }
    | expr NE expr              { $$ = mk_compare(OP_NE, $1, @1, $3, @$); }
    | expr LT expr              { $$ = mk_compare(OP_LT, $1, @1, $3, @$); }
    | expr LE expr              { $$ = mk_compare(OP_LE, $1, @1, $3, @$); }
    | expr GT expr              { $$ = mk_compare(OP_GT, $1, @1, $3, @$); }
    | expr GE expr              { $$ = mk_compare(OP_GE, $1, @1, $3, @$); }
    | expr PLUS expr            { $$ = mk_binop(OP_ADD, $1, $3, @$); }
    | expr MINUS expr           { $$ = mk_binop(OP_SUB, $1, $3, @$); }
    | expr STAR expr            { $$ = mk_binop(OP_MUL, $1, $3, @$); }
    | expr SLASH expr           { $$ = mk_binop(OP_DIV, $1, $3, @$); }
    | expr PERCENT expr         { $$ = mk_binop(OP_MOD, $1, $3, @$); }
    | expr AT expr              { $$ = mk_binop(OP_MATMUL, $1, $3, @$); }
    | expr CARET expr           { $$ = mk_binop(OP_POW, $1, $3, @$); }
    | MINUS expr %prec UMINUS   { $$ = mk_unop(OP_NEG, $2, @$); }
    | BANG expr                 { $$ = mk_unop(OP_NOT, $2, @$); }
    | LET pat EQ expr IN expr   { $$ = mk_let($2, $4, $6, @$); }
    | LET pat COLON texpr EQ expr IN expr
        { $$ = mk_let(mk_pat_annot($2, $4, loc_span(@2, @4)), $6, $8, @$); }
    | LET IDENT apats ret_opt EQ expr IN expr
        {
            Loc lam = loc_span(@3, @6);
            $$ = mk_let(mk_pat_var($2, @2), mk_lambda($3, $4, $6, lam), $8, @$);
        }
    | LET REC IDENT params ret_opt EQ expr IN expr
        {
            $$ = expr_new(EX_LETREC, @$);
            $$->u.letrec.name = $3;
            $$->u.letrec.name_loc = @3;
            $$->u.letrec.params = (Pat **)$4->items;
            $$->u.letrec.nparams = $4->n;
            $$->u.letrec.ret = $5;
            $$->u.letrec.value = $7;
            $$->u.letrec.body = $9;
        }
    | LET pat EQ error IN expr  { $$ = mk_let($2, expr_new(EX_ERROR, @4), $6, @$); }
    | FN apats ret_opt FATARROW expr { $$ = mk_lambda($2, $3, $5, @$); }
    | IF expr THEN expr ELSE expr
        {
            $$ = expr_new(EX_IF, @$);
            $$->u.if_.cond = $2;
            $$->u.if_.then_ = $4;
            $$->u.if_.else_ = $6;
        }
    | MATCH expr WITH cases
        {
            $$ = expr_new(EX_MATCH, @$);
            $$->u.match.e = $2;
            $$->u.match.n = $4->n;
            $$->u.match.cases = NEWN(MatchCase, $4->n);
            for (int i = 0; i < $4->n; i++)
                $$->u.match.cases[i] = *(MatchCase *)$4->items[i];
        }
    | MATCH expr WITH BAR cases %prec WITH
        {
            $$ = expr_new(EX_MATCH, @$);
            $$->u.match.e = $2;
            $$->u.match.n = $5->n;
            $$->u.match.cases = NEWN(MatchCase, $5->n);
            for (int i = 0; i < $5->n; i++)
                $$->u.match.cases[i] = *(MatchCase *)$5->items[i];
        }
    | LOOP pat EQ expr FOR IDENT LT expr DO expr
        {
            $$ = expr_new(EX_LOOP, @$);
            $$->u.loop.pat = $2;
            $$->u.loop.init = $4;
            $$->u.loop.kind = LOOP_FOR;
            $$->u.loop.ivar = $6;
            $$->u.loop.ivar_loc = @6;
            $$->u.loop.bound = $8;
            $$->u.loop.body = $10;
        }
    | LOOP pat EQ expr WHILE expr DO expr
        {
            $$ = expr_new(EX_LOOP, @$);
            $$->u.loop.pat = $2;
            $$->u.loop.init = $4;
            $$->u.loop.kind = LOOP_WHILE;
            $$->u.loop.cond = $6;
            $$->u.loop.body = $8;
        }
    ;

cases
    : case                      { $$ = list1($1); }
    | cases BAR case            { $$ = list_push($1, $3); }
    ;

case
    : pat FATARROW expr
        {
            $$ = NEW(MatchCase);
            $$->pat = $1;
            $$->body = $3;
            $$->loc = @$;
        }
    ;

/* application: juxtaposition of postfix expressions, to the left */
app
    : postfix
    | app postfix
        {
            $$ = expr_new(EX_APP, @$);
            $$->u.app.fn = $1;
            $$->u.app.arg = $2;
        }
    ;

postfix
    : atom
    | postfix DOT IDENT
        {
            $$ = expr_new(EX_FIELD, @$);
            $$->u.field.e = $1;
            $$->u.field.name = $3;
        }
    | postfix DOT INT
        {
            $$ = expr_new(EX_PROJ, @$);
            $$->u.field.e = $1;
            if ($3 > 1000000) {
                error_at(@3, "tuple component %lld is out of range", (long long)$3);
                $$->u.field.index = 0;
            } else {
                $$->u.field.index = (int)$3;
            }
        }
    | postfix LBRACK_IDX idxargs RBRACK
        {
            $$ = expr_new(EX_INDEX, @$);
            $$->u.index.e = $1;
            $$->u.index.n = $3->n;
            $$->u.index.args = NEWN(IndexArg, $3->n);
            for (int i = 0; i < $3->n; i++)
                $$->u.index.args[i] = *(IndexArg *)$3->items[i];
        }
    ;

idxargs
    : idxarg                    { $$ = list1($1); }
    | idxargs COMMA idxarg      { $$ = list_push($1, $3); }
    ;

/* e | lo:hi | :hi | lo: | : */
idxarg
    : expr                      { $$ = NEW(IndexArg); $$->lo = $1; }
    | expr COLON expr           { $$ = NEW(IndexArg); $$->is_slice = true; $$->lo = $1; $$->hi = $3; }
    | COLON expr                { $$ = NEW(IndexArg); $$->is_slice = true; $$->hi = $2; }
    | expr COLON                { $$ = NEW(IndexArg); $$->is_slice = true; $$->lo = $1; }
    | COLON                     { $$ = NEW(IndexArg); $$->is_slice = true; }
    ;

atom
    : INT                       { $$ = expr_new(EX_INT, @$); $$->u.ival = $1; }
    | FLOAT                     { $$ = expr_new(EX_FLOAT, @$); $$->u.fl.val = $1.v; $$->u.fl.is_f32 = $1.f32; }
    | STRING                    { $$ = expr_new(EX_STRING, @$); $$->u.sval = $1; }
    | TRUE                      { $$ = expr_new(EX_BOOL, @$); $$->u.ival = 1; }
    | FALSE                     { $$ = expr_new(EX_BOOL, @$); $$->u.ival = 0; }
    | IDENT                     { $$ = expr_new(EX_VAR, @$); $$->u.var.name = $1; }
    | CONID                     { $$ = expr_new(EX_CON, @$); $$->u.con.name = $1; }
    | LPAREN RPAREN             { $$ = expr_new(EX_UNIT, @$); }
    | LPAREN expr RPAREN        { $$ = $2; }
    | LPAREN expr COMMA exprs RPAREN
        {
            List *l = list1($2);
            for (int i = 0; i < $4->n; i++)
                list_push(l, $4->items[i]);
            $$ = mk_list_expr(EX_TUPLE, l, @$);
        }
    | LPAREN expr COLON texpr RPAREN
        {
            $$ = expr_new(EX_ANNOT, @$);
            $$->u.annot.e = $2;
            $$->u.annot.t = $4;
        }
    | LPAREN opsec RPAREN       { $$ = expr_new(EX_OPFN, @$); $$->u.opfn = $2; }
    | LPAREN error RPAREN       { $$ = expr_new(EX_ERROR, @$); }
    | LBRACK RBRACK             { $$ = mk_list_expr(EX_ARRAY, NULL, @$); }
    | LBRACK exprs RBRACK       { $$ = mk_list_expr(EX_ARRAY, $2, @$); }
    | LBRACE finits RBRACE      { $$ = mk_record(NULL, $2, @$); }
    | LBRACE postfix WITH finits RBRACE { $$ = mk_record($2, $4, @$); }
    ;

exprs
    : expr                      { $$ = list1($1); }
    | exprs COMMA expr          { $$ = list_push($1, $3); }
    ;

finits
    : finit                     { $$ = list1($1); }
    | finits COMMA finit        { $$ = list_push($1, $3); }
    ;

finit
    : IDENT EQ expr             { $$ = field_init($1, @1, $3); }
    ;

/* operator sections: (+) (@) (|>) ... */
opsec
    : PLUS      { $$ = OP_ADD; }     | MINUS   { $$ = OP_SUB; }
    | STAR      { $$ = OP_MUL; }     | SLASH   { $$ = OP_DIV; }
    | PERCENT   { $$ = OP_MOD; }     | AT      { $$ = OP_MATMUL; }
    | CARET     { $$ = OP_POW; }     | EQEQ    { $$ = OP_EQ; }
    | NE        { $$ = OP_NE; }      | LT      { $$ = OP_LT; }
    | LE        { $$ = OP_LE; }      | GT      { $$ = OP_GT; }
    | GE        { $$ = OP_GE; }      | ANDAND  { $$ = OP_AND; }
    | OROR      { $$ = OP_OR; }      | COMPOSE { $$ = OP_COMPOSE; }
    | PAR       { $$ = OP_PAR; }     | PIPE    { $$ = OP_PIPE; }
    ;

%%
/* ---------------------------------------------------------------- tokens */

static const struct TokInfo {
    int kind;
    const char *name;  /* --emit=tokens */
    const char *spell; /* messages */
} tok_info[] = {
    {T_INT, "INT", "integer literal"}, {T_FLOAT, "FLOAT", "float literal"},
    {T_STRING, "STRING", "string literal"}, {T_IDENT, "IDENT", "identifier"},
    {T_CONID, "CONID", "constructor"}, {T_TYVAR, "TYVAR", "type variable"},
    {T_DEF, "DEF", "'def'"}, {T_EXPORT, "EXPORT", "'export'"},
    {T_IMPORT, "IMPORT", "'import'"}, {T_AS, "AS", "'as'"}, {T_TYPE, "TYPE", "'type'"},
    {T_OF, "OF", "'of'"}, {T_LET, "LET", "'let'"}, {T_REC, "REC", "'rec'"},
    {T_IN, "IN", "'in'"}, {T_FN, "FN", "'fn'"}, {T_IF, "IF", "'if'"},
    {T_THEN, "THEN", "'then'"}, {T_ELSE, "ELSE", "'else'"}, {T_MATCH, "MATCH", "'match'"},
    {T_WITH, "WITH", "'with'"}, {T_LOOP, "LOOP", "'loop'"}, {T_FOR, "FOR", "'for'"},
    {T_WHILE, "WHILE", "'while'"}, {T_DO, "DO", "'do'"}, {T_TRUE, "TRUE", "'true'"},
    {T_FALSE, "FALSE", "'false'"}, {T_LPAREN, "LPAREN", "'('"}, {T_RPAREN, "RPAREN", "')'"},
    {T_LBRACK, "LBRACK", "'['"}, {T_LBRACK_IDX, "LBRACK_INDEX", "'['"},
    {T_RBRACK, "RBRACK", "']'"}, {T_LBRACE, "LBRACE", "'{'"}, {T_RBRACE, "RBRACE", "'}'"},
    {T_COMMA, "COMMA", "','"}, {T_COLON, "COLON", "':'"}, {T_DOT, "DOT", "'.'"},
    {T_DOTDOT, "DOTDOT", "'..'"}, {T_BAR, "BAR", "'|'"}, {T_EQ, "EQ", "'='"},
    {T_FATARROW, "FATARROW", "'=>'"}, {T_ARROW, "ARROW", "'->'"}, {T_WILD, "WILD", "'_'"},
    {T_PLUS, "PLUS", "'+'"}, {T_MINUS, "MINUS", "'-'"}, {T_STAR, "STAR", "'*'"},
    {T_SLASH, "SLASH", "'/'"}, {T_PERCENT, "PERCENT", "'%'"}, {T_AT, "AT", "'@'"},
    {T_CARET, "CARET", "'^'"}, {T_EQEQ, "EQEQ", "'=='"}, {T_NE, "NE", "'!='"},
    {T_LT, "LT", "'<'"}, {T_LE, "LE", "'<='"}, {T_GT, "GT", "'>'"}, {T_GE, "GE", "'>='"},
    {T_ANDAND, "ANDAND", "'&&'"}, {T_OROR, "OROR", "'||'"}, {T_PIPE, "PIPE", "'|>'"},
    {T_COMPOSE, "COMPOSE", "'>>>'"}, {T_PAR, "PAR", "'***'"}, {T_BANG, "BANG", "'!'"},
    {T_YYUNDEF, "INVALID", "invalid character"}, {T_YYEOF, "EOF", "end of input"},
};

static const struct TokInfo *tok_lookup(int kind)
{
    for (size_t i = 0; i < sizeof tok_info / sizeof tok_info[0]; i++)
        if (tok_info[i].kind == kind)
            return &tok_info[i];
    return NULL;
}

static bool is_decl_start(const Token *toks, int i)
{
    switch (toks[i].kind) {
    case T_TYPE: case T_IMPORT: case T_EXPORT:
        return true;
    case T_DEF:
        return i == 0 || toks[i - 1].kind != T_EXPORT;
    default:
        return false;
    }
}

/* ---------------------------------------------------------------- parser interface */

static int yylex(YYSTYPE *val, Loc *loc, ParseCtx *ctx)
{
    if (!ctx->started) {
        ctx->started = true;
        Loc l = ctx->start < ctx->ntoks ? ctx->toks[ctx->start].loc : ctx->eof_loc;
        l.end_line = l.line;
        l.end_col = l.col - 1;
        *loc = l;
        return ctx->start_kind;
    }
    if (ctx->pos < ctx->end) {
        Token *t = &ctx->toks[ctx->pos];
        ctx->cur = ctx->pos++;
        *val = t->val;
        *loc = t->loc;
        return t->kind;
    }
    ctx->cur = ctx->end;
    *loc = ctx->end < ctx->ntoks ? ctx->toks[ctx->end].loc : ctx->eof_loc;
    return T_YYEOF;
}

/* The last token of the declaration being parsed. */
static Loc chunk_last_loc(ParseCtx *ctx)
{
    return ctx->end > ctx->start ? ctx->toks[ctx->end - 1].loc : ctx->eof_loc;
}

static void yyerror(const Loc *loc, ParseCtx *ctx, const char *msg)
{
    ctx->failed = true;
    if (strstr(msg, "exhausted"))
        error_at(*loc, "nesting too deep: the expression is too deeply nested to parse");
    else
        error_at(*loc, "%s", msg);
}

/* How a token is named in "unexpected X": keywords and punctuation by
 * their spelling, names and literals by their text. */
static void describe_token(StrBuf *b, ParseCtx *ctx, int idx)
{
    if (idx >= ctx->ntoks) {
        sb_puts(b, "end of input");
        return;
    }
    const Token *t = &ctx->toks[idx];
    const struct TokInfo *ti = tok_lookup(t->kind);
    switch (t->kind) {
    case T_IDENT: case T_CONID: case T_TYVAR: case T_INT: case T_FLOAT: case T_STRING: {
        size_t n = t->end - t->off;
        const char *text = ctx->file->text + t->off;
        if (t->kind == T_STRING) {
            sb_puts(b, "string literal");
            return;
        }
        sb_printf(b, "%s '%.*s%s'", ti->spell, (int)(n > 32 ? 32 : n), text, n > 32 ? "..." : "");
        return;
    }
    default:
        sb_puts(b, ti ? ti->spell : "token");
    }
}

static int closer_of(int kind)
{
    switch (kind) {
    case T_LPAREN: return T_RPAREN;
    case T_LBRACK: case T_LBRACK_IDX: return T_RBRACK;
    case T_LBRACE: return T_RBRACE;
    default: return 0;
    }
}

/* The message for a syntax error: "unexpected X[, expected Y]" where Y
 * names the expected tokens in DL terms (a closing keyword or bracket,
 * "expression", "pattern", "type"), plus "to match this '('" when a
 * bracket is left open. */
static int yyreport_syntax_error(const yypcontext_t *yyctx, ParseCtx *ctx)
{
    yysymbol_kind_t tok = yypcontext_token(yyctx);
    Loc loc = *yypcontext_location(yyctx);
    bool at_end = tok == YYSYMBOL_YYEOF && ctx->cur >= ctx->ntoks;
    if (tok == YYSYMBOL_YYUNDEF) {
        ctx->failed = true; /* the lexer has reported this one */
        return 0;
    }
    if (at_end && ctx->eof_error) {
        ctx->failed = true;
        return 0;
    }
    if (at_end && ctx->repl && !ctx->failed) {
        ctx->failed = true;
        ctx->incomplete = true;
        return 0;
    }
    ctx->failed = true;

    yysymbol_kind_t exp[YYNTOKENS];
    int nexp = yypcontext_expected_tokens(yyctx, exp, YYNTOKENS);
    bool has[YYNTOKENS];
    memset(has, 0, sizeof has);
    for (int i = 0; i < nexp; i++)
        if (exp[i] >= 0 && exp[i] < YYNTOKENS)
            has[exp[i]] = true;
#define HAS(code) has[YYTRANSLATE(code)]

    const char *parts[12];
    int nparts = 0;
    if (!HAS(T_YYEOF)) {
        static const int closers[] = {T_IN, T_THEN, T_ELSE, T_DO, T_OF, T_WITH, T_FATARROW,
                                      T_EQ, T_RPAREN, T_RBRACK, T_RBRACE, T_FOR, T_WHILE, T_AS};
        bool expr = HAS(T_LET);
        if (expr)
            parts[nparts++] = "expression";
        for (size_t i = 0; i < sizeof closers / sizeof closers[0]; i++)
            if (HAS(closers[i]) && nparts < 6)
                parts[nparts++] = tok_lookup(closers[i])->spell;
        if (nparts == 0) {
            if (HAS(T_WILD))
                parts[nparts++] = "pattern";
            else if (HAS(T_TYVAR) && HAS(T_LBRACK))
                parts[nparts++] = "type";
        }
        if (nparts == 0 && nexp <= 4)
            for (int i = 0; i < nexp; i++)
                for (size_t j = 0; j < sizeof tok_info / sizeof tok_info[0]; j++)
                    if (YYTRANSLATE(tok_info[j].kind) == exp[i] && tok_info[j].kind != T_LBRACK_IDX) {
                        parts[nparts++] = tok_info[j].spell;
                        break;
                    }
    }

    StrBuf b = {0};
    sb_puts(&b, "unexpected ");
    describe_token(&b, ctx, ctx->cur);
    for (int i = 0; i < nparts; i++)
        sb_printf(&b, "%s%s", i == 0 ? ", expected " : i == nparts - 1 ? " or " : ", ", parts[i]);
    error_at(loc, "%s", b.data);
    sb_free(&b);

    /* the innermost bracket still open before the error, if its closer
     * was one of the tokens expected */
    int stack[64], sp = 0, deep = 0;
    for (int i = ctx->start; i < ctx->cur && i < ctx->ntoks; i++) {
        int k = ctx->toks[i].kind;
        if (closer_of(k)) {
            if (sp < 64)
                stack[sp++] = i;
            else
                deep++;
        } else if (k == T_RPAREN || k == T_RBRACK || k == T_RBRACE) {
            if (deep)
                deep--;
            else if (sp)
                sp--;
        }
    }
    if (sp && !deep) {
        const Token *open = &ctx->toks[stack[sp - 1]];
        int closer = closer_of(open->kind);
        if (HAS(closer) && YYTRANSLATE(closer) != tok)
            note_at(open->loc, "to match this %s", tok_lookup(open->kind)->spell);
    }
#undef HAS
    return 0;
}

/* Runs the parser over tokens [start, end). */
static void run_parser(ParseCtx *ctx, int start, int end, int start_kind)
{
    ctx->start = start;
    ctx->end = end;
    ctx->pos = start;
    ctx->cur = start;
    ctx->start_kind = start_kind;
    ctx->started = false;
    ctx->decl = NULL;
    ctx->expr = NULL;
    if (yyparse(ctx) != 0)
        ctx->failed = true;
}

/* A def whose parse failed is still declared, with an error body, so that
 * its uses are not reported as unbound. */
static Decl *stub_def(ParseCtx *ctx, int start, int end)
{
    int i = start;
    if (i < end && ctx->toks[i].kind == T_EXPORT)
        i++;
    if (i + 1 >= end || ctx->toks[i].kind != T_DEF || ctx->toks[i + 1].kind != T_IDENT)
        return NULL;
    Decl *d = decl_new(DECL_DEF, loc_span(ctx->toks[start].loc, ctx->toks[end - 1].loc));
    d->name = ctx->toks[i + 1].val.str;
    d->name_loc = ctx->toks[i + 1].loc;
    d->body = expr_new(EX_ERROR, d->loc);
    return d;
}

static void ctx_init(ParseCtx *ctx, SrcFile *file, bool repl)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->file = file;
    ctx->repl = repl;
    ctx->toks = lexer_tokenize(file, &ctx->ntoks, repl, &ctx->eof_error, &ctx->incomplete);
    Loc eof = {file->name, 1, 1, 1, 1};
    if (ctx->ntoks) {
        Loc last = ctx->toks[ctx->ntoks - 1].loc;
        eof.line = eof.end_line = last.end_line;
        eof.col = eof.end_col = last.end_col + 1;
    }
    ctx->eof_loc = eof;
}

/* Parses declarations [0, ntoks), one yyparse run each. */
static void parse_decls(ParseCtx *ctx, Vec *out)
{
    int i = 0;
    while (i < ctx->ntoks) {
        int j = i + 1;
        while (j < ctx->ntoks && !is_decl_start(ctx->toks, j))
            j++;
        run_parser(ctx, i, j, T_START_DECL);
        Decl *d = ctx->decl ? ctx->decl : stub_def(ctx, i, j);
        if (d)
            vec_push(out, d);
        i = j;
    }
}

Module *parse_file(SrcFile *file)
{
    if (!file)
        return NULL;
    ParseCtx ctx;
    ctx_init(&ctx, file, false);
    Vec decls = {0};
    parse_decls(&ctx, &decls);
    free(ctx.toks);

    Module *m = NEW(Module);
    const char *base = strrchr(file->name, '/');
    base = base ? base + 1 : file->name;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".dl") == 0)
        n -= 3;
    m->name = (n == 0 || base[0] == '<' || strcmp(base, "-") == 0) ? "main"
                                                                    : arena_strndup(dcc_arena, base, n);
    m->path = file->path;
    m->file = file;
    m->ndecls = decls.len;
    m->decls = (Decl **)vec_freeze(&decls);
    vec_free(&decls);
    return m;
}

bool parse_repl_input(SrcFile *file, Decl ***out_decls, int *out_ndecls, Expr **out_expr,
                      bool *incomplete)
{
    int errors = diag_error_count();
    ParseCtx ctx;
    ctx_init(&ctx, file, true);
    *out_decls = NULL;
    *out_ndecls = 0;
    *out_expr = NULL;
    *incomplete = false;
    if (ctx.incomplete) {
        free(ctx.toks);
        *incomplete = true;
        return false;
    }
    if (ctx.ntoks > 0 && is_decl_start(ctx.toks, 0)) {
        Vec decls = {0};
        parse_decls(&ctx, &decls);
        *out_ndecls = decls.len;
        *out_decls = (Decl **)vec_freeze(&decls);
        vec_free(&decls);
    } else if (ctx.ntoks > 0) {
        run_parser(&ctx, 0, ctx.ntoks, T_START_EXPR);
        *out_expr = ctx.expr;
    }
    free(ctx.toks);
    *incomplete = ctx.incomplete && diag_error_count() == errors;
    if (*incomplete) {
        *out_decls = NULL;
        *out_ndecls = 0;
        *out_expr = NULL;
    }
    return !ctx.failed && diag_error_count() == errors;
}

void lexer_dump_tokens(FILE *out, SrcFile *file)
{
    int n = 0;
    Token *toks = lexer_tokenize(file, &n, false, NULL, NULL);
    for (int i = 0; i < n; i++) {
        const Token *t = &toks[i];
        const struct TokInfo *ti = tok_lookup(t->kind);
        fprintf(out, "%d:%d %s '", t->loc.line, t->loc.col, ti ? ti->name : "?");
        for (size_t k = t->off; k < t->end && k < file->len; k++) {
            unsigned char c = (unsigned char)file->text[k];
            if (c == '\\' || c == '\'')
                fprintf(out, "\\%c", c);
            else if (c >= 32 && c < 127)
                fputc(c, out);
            else
                fprintf(out, "\\x%02x", c);
        }
        fputs("'\n", out);
    }
    free(toks);
}
