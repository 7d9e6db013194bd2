/* cheader.c — the C view of exported DL functions (LANGUAGE.md §3) and the
 * header that `dcc -c m.dl --header m.h` writes; docs/c-api.md describes it
 * for users. codegen.c's export wrappers (emit_export) follow the same rules
 * through cview_kind and cview_mangle, so that header and object agree.
 *
 * Calling convention of an export SYM (and of a closure call wrapper):
 *     int SYM(P1 a1, ..., Pn an, R *out);
 * 0: success, the result is in *out; 1: a run-time error was raised inside
 * (dl_last_error, dl_last_error_loc name it) and *out is not written.
 * The process never exits inside a call: the wrapper sets an error trap
 * (libdlrt's dl_error_trap_push) around the DL code.
 *
 *   DL type        parameter                result (*out)
 *   float          double                   double
 *   f32            float                    float
 *   int            int64_t                  int64_t
 *   bool           bool                     bool
 *   string         const char * (copied)    const char * (DL string)
 *   key            dl_key                   dl_key
 *   []a, [][]a     dl_array * (borrowed)    dl_array * (new reference)
 *   tuple, record  const M_T_t * (borrowed) M_T_t (components as here)
 *   variant        const M_T_t * (borrowed) const M_T_t * (the cell)
 *   a -> b         dl_closure * (borrowed)  dl_closure * (new reference)
 *   unit           left out                 no out parameter
 * (M the module name, T the mangled type.) Inside structs a unit is a
 * uint8_t and a string a `const char *`. A result owns its references:
 * SYM_release(&out) gives them back (declared when the result holds any;
 * for a bare numeric array it is the same as dl_array_release).
 */
#include "dcc.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "config.h"

/* ========================================================================
 * types
 * ======================================================================== */

static Type *mk(TypeKind k)
{
    Type *t = NEW(Type);
    t->kind = k;
    return t;
}

/* The same normal form as codegen's cg_norm: links followed, T(t) computed,
 * [][]a one array of rank 2, a leftover variable unit. */
Type *cview_norm(Type *t)
{
    t = type_resolve(t);
    if (!t)
        return mk(TY_UNIT);
    switch (t->kind) {
    case TY_VAR:
    case TY_QVAR:
        return mk(TY_UNIT);
    case TY_TANGENT:
        return cview_norm(type_tangent(cview_norm(t->args[0])));
    case TY_ARRAY: {
        Type *e = cview_norm(t->elem);
        if (e->kind == TY_ARRAY) {
            Type *a = mk(TY_ARRAY);
            a->elem = e->elem;
            a->rank = t->rank + e->rank;
            return a;
        }
        if (e == t->elem)
            return t;
        Type *a = mk(TY_ARRAY);
        a->elem = e;
        a->rank = t->rank;
        return a;
    }
    default:
        return t;
    }
}

static bool is_record(Type *t) { return t->kind == TY_NAMED && t->decl->kind == TD_RECORD; }
static bool is_variant(Type *t) { return t->kind == TY_NAMED && t->decl->kind == TD_VARIANT; }

CViewKind cview_kind(Type *t)
{
    t = cview_norm(t);
    switch (t->kind) {
    case TY_FLOAT: return CVIEW_F64;
    case TY_F32: return CVIEW_F32;
    case TY_INT: return CVIEW_I64;
    case TY_BOOL: return CVIEW_BOOL;
    case TY_STRING: return CVIEW_STRING;
    case TY_KEY: return CVIEW_KEY;
    case TY_ARRAY: return CVIEW_ARRAY;
    case TY_TUPLE: return CVIEW_STRUCT;
    case TY_FUNC: return CVIEW_FUNC;
    case TY_NAMED: return is_record(t) ? CVIEW_STRUCT : CVIEW_VARIANT;
    default: return CVIEW_UNIT;
    }
}

static Type *field_type(Type *t, int i) { return cview_norm(core_type_field(t, i)); }
static Type *con_arg(Type *t, int c)
{
    Type *a = core_type_con_arg(t, c);
    return a ? cview_norm(a) : NULL;
}

/* An identifier made of the name: primes become _p, other odd bytes _. */
static void put_ident(StrBuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\'')
            sb_puts(b, "_p");
        else if (isalnum((unsigned char)*s) || *s == '_')
            sb_putc(b, *s);
        else
            sb_putc(b, '_');
    }
}

/* A prefix code: each constructor of types says how many parts follow. */
static void mangle(StrBuf *b, Type *t)
{
    t = cview_norm(t);
    switch (t->kind) {
    case TY_FLOAT: sb_puts(b, "float"); break;
    case TY_F32: sb_puts(b, "f32"); break;
    case TY_INT: sb_puts(b, "int"); break;
    case TY_BOOL: sb_puts(b, "bool"); break;
    case TY_STRING: sb_puts(b, "string"); break;
    case TY_KEY: sb_puts(b, "key"); break;
    case TY_ARRAY:
        sb_printf(b, "arr%d_", t->rank);
        mangle(b, t->elem);
        break;
    case TY_TUPLE:
        sb_printf(b, "tup%d", t->nargs);
        for (int i = 0; i < t->nargs; i++) {
            sb_putc(b, '_');
            mangle(b, t->args[i]);
        }
        break;
    case TY_FUNC:
        sb_puts(b, "fn_");
        mangle(b, t->args[0]);
        sb_putc(b, '_');
        mangle(b, t->args[1]);
        break;
    case TY_NAMED:
        put_ident(b, t->decl->name);
        for (int i = 0; i < t->nargs; i++) {
            sb_putc(b, '_');
            mangle(b, t->args[i]);
        }
        break;
    default:
        sb_puts(b, "unit");
        break;
    }
}

const char *cview_mangle(Type *t)
{
    StrBuf b = {0};
    mangle(&b, t);
    const char *s = arena_strdup(dcc_arena, b.data);
    sb_free(&b);
    return s;
}

const char *cview_call_name(const char *module, Type *fty)
{
    fty = cview_norm(fty);
    return arena_printf(dcc_arena, "%s_call_%s_to_%s", module, cview_mangle(fty->args[0]),
                        cview_mangle(fty->args[1]));
}

const char *cview_release_name(const char *sym) { return arena_printf(dcc_arena, "%s_release", sym); }

bool cview_has_refs(Type *t)
{
    t = cview_norm(t);
    switch (t->kind) {
    case TY_STRING: case TY_ARRAY: case TY_FUNC:
        return true;
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (cview_has_refs(t->args[i]))
                return true;
        return false;
    case TY_NAMED:
        if (is_variant(t))
            return true;
        for (int i = 0; i < t->decl->nfields; i++)
            if (cview_has_refs(field_type(t, i)))
                return true;
        return false;
    default:
        return false;
    }
}

/* ---- walking the types of the signatures ---------------------------------- */

typedef struct Walk {
    Vec seen;   /* mangled names (interned) */
    Vec funcs;  /* function types, each once */
    Vec decls;  /* struct-like types in definition order (by-value deps first) */
} Walk;

static bool seen(Walk *w, const char *key)
{
    for (int i = 0; i < w->seen.len; i++)
        if (w->seen.data[i] == key)
            return true;
    vec_push(&w->seen, (void *)key);
    return false;
}

static void walk(Walk *w, Type *t)
{
    t = cview_norm(t);
    const char *key = intern(cview_mangle(t));
    switch (t->kind) {
    case TY_ARRAY:
        walk(w, t->elem);
        return;
    case TY_FUNC:
        if (seen(w, key))
            return;
        vec_push(&w->funcs, t);
        walk(w, t->args[0]);
        walk(w, t->args[1]);
        return;
    case TY_TUPLE:
        if (seen(w, key))
            return;
        for (int i = 0; i < t->nargs; i++)
            walk(w, t->args[i]);
        vec_push(&w->decls, t);
        return;
    case TY_NAMED:
        if (seen(w, key))
            return;
        if (is_record(t)) {
            for (int i = 0; i < t->decl->nfields; i++)
                walk(w, field_type(t, i));
        } else {
            /* cells are reached through pointers: recursion is fine, but
             * the payloads are inside the cell by value */
            for (int c = 0; c < t->decl->ncons; c++)
                if (con_arg(t, c))
                    walk(w, con_arg(t, c));
        }
        vec_push(&w->decls, t);
        return;
    default:
        return;
    }
}

static void walk_program(Walk *w, CProgram *p)
{
    for (int i = 0; i < p->nfuns; i++) {
        CFun *f = p->funs[i];
        if (!f->is_export)
            continue;
        for (int k = 0; k < f->nparams; k++)
            walk(w, f->params[k]->type);
        walk(w, f->ret);
    }
}

void cview_closure_types(CProgram *p, Vec *out)
{
    Walk w = {0};
    walk_program(&w, p);
    for (int i = 0; i < w.funcs.len; i++)
        vec_push(out, w.funcs.data[i]);
    vec_free(&w.seen);
    vec_free(&w.funcs);
    vec_free(&w.decls);
}

/* ========================================================================
 * the header
 * ======================================================================== */

static const char *module_of(CProgram *p) { return p->module ? p->module : "main"; }

/* The C spelling of a type inside a struct or as a result. */
static void c_type(StrBuf *b, CProgram *p, Type *t)
{
    t = cview_norm(t);
    switch (cview_kind(t)) {
    case CVIEW_F64: sb_puts(b, "double"); break;
    case CVIEW_F32: sb_puts(b, "float"); break;
    case CVIEW_I64: sb_puts(b, "int64_t"); break;
    case CVIEW_BOOL: sb_puts(b, "bool"); break;
    case CVIEW_STRING: sb_puts(b, "const char *"); break;
    case CVIEW_KEY: sb_puts(b, "dl_key"); break;
    case CVIEW_ARRAY: sb_puts(b, "dl_array *"); break;
    case CVIEW_FUNC: sb_puts(b, "dl_closure *"); break;
    case CVIEW_STRUCT: sb_printf(b, "%s_%s_t", module_of(p), cview_mangle(t)); break;
    case CVIEW_VARIANT: sb_printf(b, "const %s_%s_t *", module_of(p), cview_mangle(t)); break;
    case CVIEW_UNIT: sb_puts(b, "uint8_t"); break;
    }
}

/* A declaration "T name" (no space after a '*'). */
static void c_decl(StrBuf *b, CProgram *p, Type *t, const char *name)
{
    StrBuf tb = {0};
    c_type(&tb, p, t);
    sb_puts(b, tb.data);
    if (tb.len && tb.data[tb.len - 1] != '*')
        sb_putc(b, ' ');
    sb_puts(b, name);
    sb_free(&tb);
}

static void c_param(StrBuf *b, CProgram *p, Type *t, const char *name)
{
    StrBuf tb = {0};
    CViewKind k = cview_kind(t);
    if (k == CVIEW_STRUCT)
        sb_puts(&tb, "const ");
    c_type(&tb, p, t);
    if (k == CVIEW_STRUCT)
        sb_puts(&tb, " *");
    sb_puts(b, tb.data);
    if (tb.data[tb.len - 1] != '*')
        sb_putc(b, ' ');
    sb_puts(b, name);
    sb_free(&tb);
}

static const char *const c_keywords[] = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "bool", "true", "false", "out",
    "_Bool", "_Complex", "_Imaginary", "_Alignas", "_Alignof", "_Atomic", "_Generic",
    "_Noreturn", "_Static_assert", "_Thread_local", "asm", "typeof", "NULL",
};

/* A C identifier for a DL name (fields, parameters). */
static const char *c_ident(const char *name)
{
    StrBuf b = {0};
    put_ident(&b, name && *name ? name : "_");
    if (isdigit((unsigned char)b.data[0]))
        sb_putc(&b, '_');
    for (size_t i = 0; i < sizeof c_keywords / sizeof *c_keywords; i++)
        if (strcmp(b.data, c_keywords[i]) == 0) {
            sb_putc(&b, '_');
            break;
        }
    const char *s = arena_strdup(dcc_arena, b.data);
    sb_free(&b);
    return s;
}

static void upper(StrBuf *b, const char *s)
{
    for (; *s; s++)
        sb_putc(b, (char)toupper((unsigned char)*s));
}

static void emit_struct(StrBuf *b, CProgram *p, Type *t)
{
    const char *m = module_of(p);
    const char *name = cview_mangle(t);
    char *dl = type_to_string(t);
    if (t->kind == TY_TUPLE) {
        sb_printf(b, "/* the tuple %s */\nstruct %s_%s_t {\n", dl, m, name);
        for (int i = 0; i < t->nargs; i++) {
            sb_puts(b, "    ");
            c_decl(b, p, t->args[i], arena_printf(dcc_arena, "_%d", i));
            sb_puts(b, cview_kind(t->args[i]) == CVIEW_UNIT ? "; /* unit */\n" : ";\n");
        }
        sb_puts(b, "};\n\n");
    } else if (is_record(t)) {
        sb_printf(b, "/* the record %s */\nstruct %s_%s_t {\n", dl, m, name);
        for (int i = 0; i < t->decl->nfields; i++) {
            Type *ft = field_type(t, i);
            sb_puts(b, "    ");
            c_decl(b, p, ft, c_ident(t->decl->fields[i]));
            sb_puts(b, cview_kind(ft) == CVIEW_UNIT ? "; /* unit */\n" : ";\n");
        }
        sb_puts(b, "};\n\n");
    } else {
        /* the cell of a constructor: {refcount, tag, payload} */
        StrBuf en = {0};
        upper(&en, arena_printf(dcc_arena, "%s_%s", m, name));
        sb_printf(b, "/* the variant %s: a pointer to the cell of one constructor;\n"
                     " * `tag` tells which (%s_*), `of` holds its argument. refcount < 0\n"
                     " * marks a cell that is never freed (one built by C, say). */\n",
                  dl, en.data);
        sb_puts(b, "enum {");
        for (int c = 0; c < t->decl->ncons; c++) {
            sb_printf(b, "%s %s_", c ? "," : "", en.data);
            upper(b, c_ident(t->decl->cons[c]));
            sb_printf(b, " = %d", c);
        }
        sb_puts(b, " };\n");
        sb_printf(b, "struct %s_%s_t {\n    int64_t refcount;\n    int64_t tag;\n", m, name);
        bool any = false;
        for (int c = 0; c < t->decl->ncons; c++)
            any |= con_arg(t, c) != NULL;
        if (any) {
            sb_puts(b, "    union {\n");
            for (int c = 0; c < t->decl->ncons; c++) {
                Type *a = con_arg(t, c);
                if (!a)
                    continue;
                sb_puts(b, "        ");
                c_decl(b, p, a, c_ident(t->decl->cons[c]));
                sb_puts(b, ";\n");
            }
            sb_puts(b, "    } of;\n");
        }
        sb_puts(b, "};\n\n");
        sb_free(&en);
    }
}

/* The parameter list of a wrapper: the C view of each non-unit parameter,
 * then `R *out` unless the result is unit. */
static void emit_params(StrBuf *b, CProgram *p, Type **pts, const char **names, int n, Type *ret)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (cview_kind(pts[i]) == CVIEW_UNIT)
            continue;
        if (k++)
            sb_puts(b, ", ");
        c_param(b, p, pts[i], names[i]);
    }
    if (cview_kind(ret) != CVIEW_UNIT) {
        if (k++)
            sb_puts(b, ", ");
        c_type(b, p, ret);
        sb_puts(b, b->data[b->len - 1] == '*' ? "*out" : " *out");
    }
    if (!k)
        sb_puts(b, "void");
}

static const char *param_name(CVar *v, int i, const char **prev, int nprev)
{
    const char *n = v->name && (isalpha((unsigned char)v->name[0]) || v->name[0] == '_')
                        ? c_ident(v->name)
                        : arena_printf(dcc_arena, "a%d", i + 1);
    for (int k = 0; k < nprev; k++)
        if (strcmp(prev[k], n) == 0)
            return arena_printf(dcc_arena, "a%d", i + 1);
    return n;
}

static void emit_export_decl(StrBuf *b, CProgram *p, Module *root, CFun *f)
{
    /* the DL signature, for the comment */
    StrBuf sig = {0};
    TypePrinter tp = {.n = 0};
    for (int i = 0; i < f->nparams; i++) {
        const char *ps = type_to_string_with(&tp, f->params[i]->type);
        sb_printf(&sig, cview_kind(f->params[i]->type) == CVIEW_FUNC ? "(%s) -> " : "%s -> ", ps);
    }
    sb_puts(&sig, type_to_string_with(&tp, f->ret));
    const char *what = "";
    Decl *d = NULL;
    for (int i = 0; root && !f->decl && i < root->ndecls; i++)
        if (root->decls[i]->kind == DECL_EXPORT_DERIV && root->decls[i]->name == intern(f->src_name))
            d = root->decls[i];
    if (d) {
        static const char *const kinds[] = {
            [DERIV_JVP] = "jvp", [DERIV_VJP] = "vjp", [DERIV_GRAD] = "grad",
            [DERIV_VALUE_AND_GRAD] = "value_and_grad", [DERIV_JACFWD] = "jacfwd",
            [DERIV_JACREV] = "jacrev", [DERIV_HESSIAN] = "hessian", [DERIV_HVP] = "hvp",
        };
        const char *k = d->deriv < (int)(sizeof kinds / sizeof *kinds) && kinds[d->deriv] ? kinds[d->deriv]
                                                                                          : "derivative";
        what = arena_printf(dcc_arena, ", export %s %s as %s", k, d->target, d->name);
    }
    sb_printf(b, "/* %s : %s%s */\n", f->src_name ? f->src_name : f->name, sig.data, what);
    sb_free(&sig);

    Type **pts = NEWN(Type *, f->nparams + 1);
    const char **names = NEWN(const char *, f->nparams + 1);
    for (int i = 0; i < f->nparams; i++) {
        pts[i] = f->params[i]->type;
        names[i] = param_name(f->params[i], i, names, i);
    }
    sb_printf(b, "int %s(", f->name);
    emit_params(b, p, pts, names, f->nparams, f->ret);
    sb_puts(b, ");\n");
    if (cview_has_refs(f->ret)) {
        sb_printf(b, "void %s(", cview_release_name(f->name));
        c_type(b, p, f->ret);
        sb_puts(b, b->data[b->len - 1] == '*' ? "*out);\n" : " *out);\n");
    }
    sb_putc(b, '\n');
}

bool cheader_write(CProgram *p, Module *root, const char *path, const char *source)
{
    const char *m = module_of(p);
    Walk w = {0};
    walk_program(&w, p);
    StrBuf b = {0};
    StrBuf guard = {0};
    sb_puts(&guard, "DCC_");
    upper(&guard, c_ident(m));
    sb_puts(&guard, "_H");

    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    sb_printf(&b,
              "/* %s — the C interface of the DL module %s, written by dcc %s from %s.\n"
              " * Do not edit: run dcc -c --header again. See docs/c-api.md.\n"
              " *\n"
              " * Every function returns 0 on success, with the result in *out, or 1\n"
              " * after a run-time error inside DL (an index out of bounds, a shape\n"
              " * mismatch, ...): dl_last_error() gives the message and\n"
              " * dl_last_error_loc() the position in the .dl source; *out is then not\n"
              " * written. A call never exits the process. Calls from several threads\n"
              " * at once are independent (each thread has its own error state).\n"
              " *\n"
              " * Ownership: parameters are borrowed (the caller keeps its references;\n"
              " * strings are copied). A result belongs to the caller: a dl_array * is a\n"
              " * new reference given back with dl_array_release, and a result holding\n"
              " * references (arrays, strings, closures, variants, also inside structs)\n"
              " * is given back as a whole with NAME_release(&out).\n"
              " */\n"
              "#ifndef %s\n#define %s\n\n"
              "#include <dlrt.h>\n#include <stdbool.h>\n#include <stdint.h>\n\n"
              "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n",
              base, m, PACKAGE_VERSION, source ? source : "?", guard.data, guard.data);

    if (w.funcs.len)
        sb_puts(&b, "#ifndef DL_CLOSURE_DEFINED\n#define DL_CLOSURE_DEFINED\n"
                    "/* A DL function value (a closure); opaque. Apply it with the call\n"
                    " * wrapper of its type; it is borrowed when passed. */\n"
                    "typedef struct dl_closure dl_closure;\n#endif\n\n");
    /* all struct names first (variants refer to each other by pointer) */
    for (int i = 0; i < w.decls.len; i++) {
        Type *t = w.decls.data[i];
        sb_printf(&b, "typedef struct %s_%s_t %s_%s_t;\n", m, cview_mangle(t), m, cview_mangle(t));
    }
    if (w.decls.len)
        sb_putc(&b, '\n');
    for (int i = 0; i < w.decls.len; i++)
        emit_struct(&b, p, w.decls.data[i]);

    for (int i = 0; i < p->nfuns; i++)
        if (p->funs[i]->is_export)
            emit_export_decl(&b, p, root, p->funs[i]);

    for (int i = 0; i < w.funcs.len; i++) {
        Type *ft = w.funcs.data[i];
        Type *pt[1] = {ft->args[0]};
        const char *names[1] = {"x"};
        sb_printf(&b, "/* applies a closure of type %s */\nint %s(dl_closure *f", type_to_string(ft),
                  cview_call_name(m, ft));
        StrBuf rest = {0};
        emit_params(&rest, p, pt, names, 1, ft->args[1]);
        if (strcmp(rest.data, "void") != 0)
            sb_printf(&b, ", %s", rest.data);
        sb_puts(&b, ");\n");
        if (cview_has_refs(ft->args[1])) {
            sb_printf(&b, "void %s(", cview_release_name(cview_call_name(m, ft)));
            c_type(&b, p, ft->args[1]);
            sb_puts(&b, b.data[b.len - 1] == '*' ? "*out);\n" : " *out);\n");
        }
        sb_putc(&b, '\n');
        sb_free(&rest);
    }

    sb_printf(&b, "#ifdef __cplusplus\n}\n#endif\n\n#endif /* %s */\n", guard.data);

    bool ok = true;
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
    if (!f) {
        fprintf(stderr, "dcc: error: cannot write '%s': %s\n", path, strerror(errno));
        ok = false;
    } else {
        fputs(b.data, f);
        if (f != stdout && fclose(f) != 0) {
            fprintf(stderr, "dcc: error: cannot write '%s': %s\n", path, strerror(errno));
            ok = false;
        }
    }
    sb_free(&b);
    sb_free(&guard);
    vec_free(&w.seen);
    vec_free(&w.funcs);
    vec_free(&w.decls);
    return ok;
}
