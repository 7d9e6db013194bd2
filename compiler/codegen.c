/* codegen.c — Core IR to LLVM IR through the LLVM C API (LLVM 16, opaque
 * pointers), then optimisation with the new pass manager, object/assembly
 * emission and linking with the system C compiler.
 *
 * Value representation (one LLVM value per Core variable):
 *   float -> double      f32 -> float      int -> i64      bool -> i1 (i8 in arrays)
 *   unit -> i8 0         key -> {i32, i32} (an i64 when passed to libdlrt, SysV)
 *   string -> ptr to NUL-terminated characters; an i64 reference count sits
 *             in the 8 bytes before them (< 0: immortal, e.g. literals)
 *   tuple, record -> LLVM struct value of the components (unboxed; records in
 *             declaration order)
 *   variant -> ptr to a heap cell {i64 refcount, i64 tag, payload}; nullary
 *             constructors are immortal global cells (refcount -1)
 *   []a, [][]a ... -> ptr to a dl_array (dlrt.h): dtype f64/f32/i64/bool for
 *             scalar elements, DL_BYTES with the element's LLVM store size
 *             for anything else (tuples, strings, variants, closures)
 *   a -> b  -> ptr to a closure cell {i64 refcount, ptr code, ptr drop,
 *             captured values...}; a call is code(cell, arg); drop(cell)
 *             releases the captures and frees the cell. A top-level function
 *             used as a value is an immortal global cell whose code curries.
 * Top-level functions are internal LLVM functions "dl.NAME" taking their
 * parameters uncurried; exports get an external wrapper named CFun.name with
 * the C view of LANGUAGE.md §3, `int SYM(params..., R *out)` returning 1 after
 * a run-time error caught by an error trap (see codegen_export.c, cheader.c).
 *
 * The back end's files: codegen.c (this one: types, runtime functions and
 * small helpers, debug information, functions and main, the module's
 * set-up, optimisation, output and linking), codegen_mem.c (reference
 * counting and the ownership of each block's variables), codegen_expr.c
 * (expressions, control flow, closures, scalar primitives),
 * codegen_export.c (the C view of exports), codegen_array.c and
 * codegen_fuse.c (arrays; elementwise loops and their fusion) and
 * codegen_print.c (printing). */
#include "codegen.h"

#include <errno.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"

/* ========================================================================
 * small maps, keyed by interned strings or any pointer
 * ======================================================================== */

static unsigned ptr_hash(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0x9E3779B97F4A7C15ull;
    return (unsigned)(x >> 32);
}

void *cg_map_get(Cg *cg, const void *key)
{
    if (!cg->map_cap)
        return NULL;
    unsigned m = (unsigned)cg->map_cap - 1;
    for (unsigned i = ptr_hash(key) & m;; i = (i + 1) & m) {
        if (cg->map_keys[i] == key)
            return cg->map_vals[i];
        if (!cg->map_keys[i])
            return NULL;
    }
}

void cg_map_put(Cg *cg, const void *key, void *val)
{
    if (2 * (cg->map_len + 1) > cg->map_cap) {
        int ncap = cg->map_cap ? 2 * cg->map_cap : 256;
        void **ok = cg->map_keys, **ov = cg->map_vals;
        int ocap = cg->map_cap;
        cg->map_keys = calloc((size_t)ncap, sizeof(void *));
        cg->map_vals = calloc((size_t)ncap, sizeof(void *));
        if (!cg->map_keys || !cg->map_vals)
            fatal("out of memory");
        cg->map_cap = ncap;
        cg->map_len = 0;
        for (int i = 0; i < ocap; i++)
            if (ok[i])
                cg_map_put(cg, ok[i], ov[i]);
        free(ok);
        free(ov);
    }
    unsigned m = (unsigned)cg->map_cap - 1;
    for (unsigned i = ptr_hash(key) & m;; i = (i + 1) & m) {
        if (cg->map_keys[i] == key) {
            cg->map_vals[i] = val;
            return;
        }
        if (!cg->map_keys[i]) {
            cg->map_keys[i] = (void *)key;
            cg->map_vals[i] = val;
            cg->map_len++;
            return;
        }
    }
}

/* A map key built from a string: interned, so equal strings are one key. */
const void *cg_skey(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return intern(buf);
}

/* ========================================================================
 * types
 * ======================================================================== */

Type *cg_mk_type(TypeKind k)
{
    Type *t = NEW(Type);
    t->kind = k;
    return t;
}

/* Ground types after monomorphisation; an unconstrained variable left over
 * (the element of an empty literal nobody looks at) is represented as unit. */
Type *cg_norm(Type *t)
{
    t = type_resolve(t);
    if (!t)
        return cg_mk_type(TY_UNIT);
    switch (t->kind) {
    case TY_VAR:
    case TY_QVAR:
        return cg_mk_type(TY_UNIT);
    case TY_TANGENT:
        return cg_norm(type_tangent(cg_norm(t->args[0])));
    case TY_ARRAY: {
        Type *e = cg_norm(t->elem);
        if (e->kind == TY_ARRAY) {
            Type *a = cg_mk_type(TY_ARRAY);
            a->elem = e->elem;
            a->rank = t->rank + e->rank;
            return a;
        }
        if (e == t->elem)
            return t;
        Type *a = cg_mk_type(TY_ARRAY);
        a->elem = e;
        a->rank = t->rank;
        return a;
    }
    default:
        return t;
    }
}

Type *cg_elem(Type *t) { return cg_norm(t)->elem; }
int cg_rank(Type *t) { return cg_norm(t)->rank; }

static Type *subst(Type *t, Type **args, int n)
{
    t = type_resolve(t);
    if (!t)
        return t;
    switch (t->kind) {
    case TY_QVAR:
        return t->id < n ? args[t->id] : t;
    case TY_TUPLE:
    case TY_FUNC:
    case TY_NAMED:
    case TY_TANGENT: {
        if (!t->nargs)
            return t;
        Type *c = cg_mk_type(t->kind);
        *c = *t;
        c->args = NEWN(Type *, t->nargs);
        for (int i = 0; i < t->nargs; i++)
            c->args[i] = subst(t->args[i], args, n);
        return c;
    }
    case TY_ARRAY: {
        Type *c = cg_mk_type(TY_ARRAY);
        *c = *t;
        c->elem = subst(t->elem, args, n);
        return c;
    }
    default:
        return t;
    }
}

Type *cg_record_field(Type *t, int i)
{
    t = cg_norm(t);
    return cg_norm(subst(t->decl->field_types[i], t->args, t->nargs));
}

Type *cg_con_arg(Type *t, int con)
{
    t = cg_norm(t);
    Type *a = t->decl->con_args ? t->decl->con_args[con] : NULL;
    return a ? cg_norm(subst(a, t->args, t->nargs)) : NULL;
}

static void type_key(StrBuf *sb, Type *t)
{
    t = cg_norm(t);
    switch (t->kind) {
    case TY_INT: sb_puts(sb, "int"); break;
    case TY_FLOAT: sb_puts(sb, "float"); break;
    case TY_F32: sb_puts(sb, "f32"); break;
    case TY_BOOL: sb_puts(sb, "bool"); break;
    case TY_UNIT: sb_puts(sb, "unit"); break;
    case TY_STRING: sb_puts(sb, "string"); break;
    case TY_KEY: sb_puts(sb, "key"); break;
    case TY_TUPLE:
        sb_putc(sb, '(');
        for (int i = 0; i < t->nargs; i++) {
            if (i)
                sb_putc(sb, ',');
            type_key(sb, t->args[i]);
        }
        sb_putc(sb, ')');
        break;
    case TY_ARRAY:
        for (int i = 0; i < t->rank; i++)
            sb_puts(sb, "[]");
        type_key(sb, t->elem);
        break;
    case TY_FUNC:
        sb_puts(sb, "fn(");
        type_key(sb, t->args[0]);
        sb_puts(sb, "->");
        type_key(sb, t->args[1]);
        sb_putc(sb, ')');
        break;
    case TY_NAMED:
        sb_printf(sb, "%s#%p", t->decl->name, (void *)t->decl);
        if (t->nargs) {
            sb_putc(sb, '<');
            for (int i = 0; i < t->nargs; i++) {
                if (i)
                    sb_putc(sb, ',');
                type_key(sb, t->args[i]);
            }
            sb_putc(sb, '>');
        }
        break;
    default:
        sb_puts(sb, "unit");
        break;
    }
}

bool cg_is_variant(Type *t)
{
    return t->kind == TY_NAMED && t->decl->kind == TD_VARIANT;
}

CgType *cg_tinfo(Cg *cg, Type *t)
{
    t = cg_norm(t);
    StrBuf sb = {0};
    type_key(&sb, t);
    const char *key = intern(sb.data);
    sb_free(&sb);
    CgType *ti = cg_map_get(cg, key);
    if (ti)
        return ti;
    ti = NEW(CgType);
    ti->key = key;
    ti->type = t;
    cg_map_put(cg, key, ti);
    switch (t->kind) {
    case TY_INT: ti->ll = cg->t_i64; break;
    case TY_FLOAT: ti->ll = cg->t_f64; break;
    case TY_F32: ti->ll = cg->t_f32; break;
    case TY_BOOL: ti->ll = cg->t_i1; break;
    case TY_KEY: ti->ll = cg->t_key; break;
    case TY_STRING:
    case TY_ARRAY:
    case TY_FUNC:
        ti->ll = cg->t_ptr;
        ti->rc = true;
        break;
    case TY_TUPLE: {
        LLVMTypeRef *el = NEWN(LLVMTypeRef, t->nargs + 1);
        for (int i = 0; i < t->nargs; i++) {
            CgType *c = cg_tinfo(cg, t->args[i]);
            el[i] = c->ll;
            ti->rc |= c->rc;
        }
        ti->ll = LLVMStructTypeInContext(cg->ctx, el, (unsigned)t->nargs, 0);
        break;
    }
    case TY_NAMED:
        if (t->decl->kind == TD_RECORD) {
            int n = t->decl->nfields;
            LLVMTypeRef *el = NEWN(LLVMTypeRef, n + 1);
            for (int i = 0; i < n; i++) {
                CgType *c = cg_tinfo(cg, cg_record_field(t, i));
                el[i] = c->ll;
                ti->rc |= c->rc;
            }
            ti->ll = LLVMStructTypeInContext(cg->ctx, el, (unsigned)n, 0);
        } else {
            ti->ll = cg->t_ptr;
            ti->rc = true;
        }
        break;
    default:
        ti->ll = cg->t_i8;
        break;
    }
    return ti;
}

LLVMTypeRef cg_type(Cg *cg, Type *t) { return cg_tinfo(cg, t)->ll; }
bool cg_is_rc(Cg *cg, Type *t) { return cg_tinfo(cg, t)->rc; }

int64_t cg_sizeof(Cg *cg, LLVMTypeRef t) { return (int64_t)LLVMABISizeOfType(cg->td, t); }

/* ========================================================================
 * constants, runtime functions, small helpers
 * ======================================================================== */

LLVMValueRef cg_i64(Cg *cg, int64_t v) { return LLVMConstInt(cg->t_i64, (unsigned long long)v, 1); }
LLVMValueRef cg_i32(Cg *cg, int32_t v) { return LLVMConstInt(cg->t_i32, (unsigned long long)(int64_t)v, 1); }
LLVMValueRef cg_unit(Cg *cg) { return LLVMConstInt(cg->t_i8, 0, 0); }

LLVMBasicBlockRef cg_block(Cg *cg, const char *name)
{
    return LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, name);
}

/* Allocas go to the entry block so that mem2reg/SROA promote them. */
LLVMValueRef cg_alloca(Cg *cg, LLVMTypeRef t, const char *name)
{
    LLVMBuilderRef b = LLVMCreateBuilderInContext(cg->ctx);
    LLVMValueRef first = LLVMGetFirstInstruction(cg->entry);
    if (first)
        LLVMPositionBuilderBefore(b, first);
    else
        LLVMPositionBuilderAtEnd(b, cg->entry);
    LLVMValueRef a = LLVMBuildAlloca(b, t, name);
    LLVMDisposeBuilder(b);
    return a;
}

/* Runtime and C library functions, declared on first use. Signature letters:
 * v void, p ptr, l i64, i i32, d double, f float, b bool (i1 zeroext),
 * '.' variadic; the first letter is the result. */
static const struct {
    const char *name, *sig;
} rt_funs[] = {
    {"dl_array_new", "piip"},
    {"dl_array_zeros", "piip"},
    {"dl_array_new_bytes", "plip"},
    {"dl_array_retain", "pp"},
    {"dl_array_release", "vp"},
    {"dl_array_copy", "pp"},
    {"dl_array_unique", "pp"},
    {"dl_array_reshape", "ppipp"},
    {"dl_array_cast", "ppip"},
    {"dl_array_equal", "bpp"},
    {"dl_broadcast_shapes", "iipipppp"},
    {"dl_shape_error", "vppipip"},
    {"dl_bounds_error", "vllip"},
    {"dl_div_by_zero", "vp"},
    {"dl_overflow_error", "vpp"},
    {"dl_error", "vpp."},
    {"dl_format_shape", "iplip"},
    {"dl_matmul", "pppp"},
    {"dl_dot", "dppp"},
    {"dl_transpose", "ppp"},
    {"dl_outer", "pppp"},
    {"dl_read_csv", "ppp"},
    {"dl_read_npy", "ppiip"},
    {"dl_write_npy", "vppp"},
    {"dl_read_idx", "ppiip"},
    {"dl_set_output", "pp"},
    {"dl_flush", "v"},
    {"dl_print_f64", "vd"},
    {"dl_print_f32", "vf"},
    {"dl_print_i64", "vl"},
    {"dl_print_bool", "vb"},
    {"dl_print_unit", "v"},
    {"dl_print_str", "vp"},
    {"dl_print_string_literal", "vp"},
    {"dl_print_array", "vp"},
    {"dl_print_newline", "v"},
    {"dl_key_from_seed", "ll"},
    {"dl_split", "vlp"},
    {"dl_fold_in", "lll"},
    {"dl_uniform", "pliip"},
    {"dl_normal", "pliip"},
    {"dl_random_permutation", "pll"},
    {"dl_progress_begin", "ppl"},
    {"dl_progress_update", "vplp"},
    {"dl_progress_end", "vp"},
    {"dl_clock", "d"},
    {"dl_write_text", "vppp"},
    {"dl_init", "vip"},
    {"dl_set_source_root", "vp"},
    {"dl_argc", "i"},
    {"dl_argv", "pi"},
    {"dl_det", "dpp"},
    {"dl_inv", "ppp"},
    {"dl_solve", "pppp"},
    {"dl_cholesky", "ppp"},
    {"malloc", "pl"},
    {"free", "vp"},
    {"strlen", "lp"},
    {"strcmp", "ipp"},
    {"open_memstream", "ppp"},
    {"fclose", "ip"},
    {"tan", "dd"}, {"tanh", "dd"}, {"log1p", "dd"}, {"expm1", "dd"}, {"atan2", "ddd"},
    {"tanf", "ff"}, {"tanhf", "ff"}, {"log1pf", "ff"}, {"expm1f", "ff"}, {"atan2f", "fff"},
};

static LLVMTypeRef sig_type(Cg *cg, char c)
{
    switch (c) {
    case 'v': return cg->t_void;
    case 'p': return cg->t_ptr;
    case 'l': return cg->t_i64;
    case 'i': return cg->t_i32;
    case 'd': return cg->t_f64;
    case 'f': return cg->t_f32;
    case 'b': return cg->t_i1;
    }
    fatal("internal error: bad runtime signature letter '%c'", c);
}

LLVMValueRef cg_rt(Cg *cg, const char *name, LLVMTypeRef *fty)
{
    size_t k;
    for (k = 0; k < sizeof rt_funs / sizeof *rt_funs; k++)
        if (strcmp(rt_funs[k].name, name) == 0)
            break;
    if (k == sizeof rt_funs / sizeof *rt_funs)
        fatal("internal error: unknown runtime function %s", name);
    const char *sig = rt_funs[k].sig;
    LLVMTypeRef params[16];
    unsigned n = 0;
    bool va = false;
    for (const char *s = sig + 1; *s; s++) {
        if (*s == '.')
            va = true;
        else
            params[n++] = sig_type(cg, *s);
    }
    LLVMTypeRef ft = LLVMFunctionType(sig_type(cg, sig[0]), params, n, va);
    if (fty)
        *fty = ft;
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (f)
        return f;
    f = LLVMAddFunction(cg->mod, name, ft);
    unsigned zext = LLVMGetEnumAttributeKindForName("zeroext", 7);
    if (sig[0] == 'b')
        LLVMAddAttributeAtIndex(f, LLVMAttributeReturnIndex, LLVMCreateEnumAttribute(cg->ctx, zext, 0));
    for (unsigned i = 0; i < n; i++)
        if (sig[1 + i] == 'b')
            LLVMAddAttributeAtIndex(f, i + 1, LLVMCreateEnumAttribute(cg->ctx, zext, 0));
    static const char *noret[] = {"dl_error", "dl_bounds_error", "dl_div_by_zero",
                                  "dl_overflow_error", "dl_shape_error"};
    for (size_t i = 0; i < sizeof noret / sizeof *noret; i++)
        if (strcmp(name, noret[i]) == 0) {
            unsigned kn = LLVMGetEnumAttributeKindForName("noreturn", 8);
            LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kn, 0));
            unsigned kc = LLVMGetEnumAttributeKindForName("cold", 4);
            LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kc, 0));
        }
    return f;
}

/* TBAA (LLVM LangRef, "tbaa" metadata): a root and one scalar type per kind
 * of memory the generated code touches; distinct kinds do not alias, so the
 * data pointer and shape of an array stay in registers across the stores of
 * a loop over its elements. */
static void tbaa_init(Cg *cg)
{
    LLVMMetadataRef root_s = LLVMMDStringInContext2(cg->ctx, "dcc tbaa", 8);
    LLVMMetadataRef root = LLVMMDNodeInContext2(cg->ctx, &root_s, 1);
    static const char *names[] = {"dl_array header", "double", "float", "long", "bool", "cell"};
    LLVMMetadataRef zero = LLVMValueAsMetadata(LLVMConstInt(cg->t_i64, 0, 0));
    for (int k = 0; k < 6; k++) {
        LLVMMetadataRef nm = LLVMMDStringInContext2(cg->ctx, names[k], strlen(names[k]));
        LLVMMetadataRef ty_ops[3] = {nm, root, zero};
        LLVMMetadataRef ty = LLVMMDNodeInContext2(cg->ctx, ty_ops, 3);
        LLVMMetadataRef tag_ops[3] = {ty, ty, zero};
        cg->tbaa[k] = LLVMMetadataAsValue(cg->ctx, LLVMMDNodeInContext2(cg->ctx, tag_ops, 3));
    }
    cg->tbaa_kind = LLVMGetMDKindIDInContext(cg->ctx, "tbaa", 4);
}

LLVMValueRef cg_tbaa(Cg *cg, LLVMValueRef inst, int kind)
{
    if (kind >= 0)
        LLVMSetMetadata(inst, cg->tbaa_kind, cg->tbaa[kind]);
    return inst;
}

LLVMValueRef cg_call(Cg *cg, LLVMValueRef fn, LLVMValueRef *args, int n)
{
    LLVMTypeRef ft = LLVMGlobalGetValueType(fn);
    return LLVMBuildCall2(cg->b, ft, fn, args, (unsigned)n, "");
}

LLVMValueRef cg_call_rt(Cg *cg, const char *name, LLVMValueRef *args, int n)
{
    LLVMTypeRef ft;
    LLVMValueRef f = cg_rt(cg, name, &ft);
    return LLVMBuildCall2(cg->b, ft, f, args, (unsigned)n, "");
}

LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef *types, int ntypes,
                          LLVMValueRef *args, int nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    if (!id)
        fatal("internal error: no intrinsic %s", name);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, types, (size_t)ntypes);
    LLVMTypeRef ft = LLVMIntrinsicGetType(cg->ctx, id, types, (size_t)ntypes);
    return LLVMBuildCall2(cg->b, ft, f, args, (unsigned)nargs, "");
}

LLVMValueRef cg_malloc(Cg *cg, LLVMValueRef size)
{
    return cg_call_rt(cg, "malloc", &size, 1);
}

void cg_free(Cg *cg, LLVMValueRef p) { cg_call_rt(cg, "free", &p, 1); }

/* A private constant C string. */
LLVMValueRef cg_cstr(Cg *cg, const char *s)
{
    const void *k = cg_skey("cstr:%s", s);
    LLVMValueRef g = cg_map_get(cg, k);
    if (g)
        return g;
    LLVMValueRef init = LLVMConstStringInContext(cg->ctx, s, (unsigned)strlen(s), 0);
    g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), ".str");
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    cg_map_put(cg, k, g);
    return g;
}

/* A DL string literal: an immortal {i64 -1, chars} global; the value points
 * at the characters. */
LLVMValueRef cg_const_string(Cg *cg, const char *s)
{
    const void *k = cg_skey("dlstr:%s", s);
    LLVMValueRef g = cg_map_get(cg, k);
    if (g)
        return g;
    LLVMValueRef chars = LLVMConstStringInContext(cg->ctx, s, (unsigned)strlen(s), 0);
    LLVMValueRef fields[2] = {cg_i64(cg, -1), chars};
    LLVMValueRef init = LLVMConstStructInContext(cg->ctx, fields, 2, 0);
    LLVMValueRef gv = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), ".dlstr");
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 0); /* the count is only read, but keep it writable-safe */
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    LLVMSetAlignment(gv, 8);
    LLVMValueRef idx[2] = {cg_i32(cg, 0), cg_i32(cg, 1)};
    g = LLVMConstInBoundsGEP2(LLVMTypeOf(init), gv, idx, 2);
    cg_map_put(cg, k, g);
    return g;
}

LLVMValueRef cg_string_new(Cg *cg, LLVMValueRef len)
{
    LLVMValueRef size = LLVMBuildAdd(cg->b, len, cg_i64(cg, 9), "");
    LLVMValueRef p = cg_malloc(cg, size);
    LLVMBuildStore(cg->b, cg_i64(cg, 1), p);
    LLVMValueRef s = LLVMBuildGEP2(cg->b, cg->t_i8, p, (LLVMValueRef[]){cg_i64(cg, 8)}, 1, "str");
    LLVMValueRef end = LLVMBuildGEP2(cg->b, cg->t_i8, s, &len, 1, "");
    LLVMBuildStore(cg->b, LLVMConstInt(cg->t_i8, 0, 0), end);
    return s;
}

/* A constant dl_srcloc for a source position (one per distinct position). */
LLVMValueRef cg_srcloc(Cg *cg, Loc loc)
{
    const char *file = loc.file ? loc.file : "<unknown>";
    const void *k = cg_skey("loc:%s:%d:%d", file, loc.line, loc.col);
    LLVMValueRef g = cg_map_get(cg, k);
    if (g)
        return g;
    LLVMValueRef f[3] = {cg_cstr(cg, file), cg_i32(cg, loc.line), cg_i32(cg, loc.col)};
    LLVMValueRef init = LLVMConstNamedStruct(cg->t_srcloc, f, 3);
    g = LLVMAddGlobal(cg->mod, cg->t_srcloc, ".loc");
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    cg_map_put(cg, k, g);
    return g;
}

void cg_error(Cg *cg, Loc loc, const char *msg)
{
    LLVMValueRef a[3] = {cg_srcloc(cg, loc), cg_cstr(cg, "%s"), cg_cstr(cg, msg)};
    cg_call_rt(cg, "dl_error", a, 3);
}

LLVMValueRef cg_loop_begin(Cg *cg, CgLoop *l, LLVMValueRef lo, LLVMValueRef n)
{
    l->slot = cg_alloca(cg, cg->t_i64, "i.slot");
    LLVMBuildStore(cg->b, lo, l->slot);
    l->head = cg_block(cg, "loop.head");
    l->body = cg_block(cg, "loop.body");
    l->exit = cg_block(cg, "loop.exit");
    LLVMBuildBr(cg->b, l->head);
    LLVMPositionBuilderAtEnd(cg->b, l->head);
    l->i = LLVMBuildLoad2(cg->b, cg->t_i64, l->slot, "i");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, l->i, n, ""), l->body, l->exit);
    LLVMPositionBuilderAtEnd(cg->b, l->body);
    return l->i;
}

void cg_loop_end(Cg *cg, CgLoop *l)
{
    LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, l->i, cg_i64(cg, 1), "i.next"), l->slot);
    LLVMBuildBr(cg->b, l->head);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

LLVMValueRef cg_helper_begin(Cg *cg, const char *name, LLVMTypeRef fty, CgSaved *s)
{
    s->block = LLVMGetInsertBlock(cg->b);
    s->fn = cg->fn;
    s->entry = cg->entry;
    s->sp = cg->sp;
    s->dloc = cg->dib ? LLVMGetCurrentDebugLocation2(cg->b) : NULL;
    LLVMValueRef f = LLVMAddFunction(cg->mod, name, fty);
    LLVMSetLinkage(f, LLVMInternalLinkage);
    cg->fn = f;
    cg->sp = NULL;
    cg->entry = cg_block(cg, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);
    if (cg->dib)
        LLVMSetCurrentDebugLocation2(cg->b, NULL);
    return f;
}

void cg_helper_end(Cg *cg, CgSaved *s)
{
    cg->fn = s->fn;
    cg->entry = s->entry;
    cg->sp = s->sp;
    if (s->block)
        LLVMPositionBuilderAtEnd(cg->b, s->block);
    if (cg->dib)
        LLVMSetCurrentDebugLocation2(cg->b, s->dloc);
}

/* ========================================================================
 * debug information (-g): DWARF line tables through the DIBuilder
 * ======================================================================== */

static LLVMMetadataRef di_file(Cg *cg, const char *name)
{
    if (!name)
        return cg->di_file;
    const void *k = cg_skey("difile:%s", name);
    LLVMMetadataRef f = cg_map_get(cg, k);
    if (f)
        return f;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        strcpy(cwd, ".");
    f = LLVMDIBuilderCreateFile(cg->dib, name, strlen(name), cwd, strlen(cwd));
    cg_map_put(cg, k, f);
    return f;
}

LLVMMetadataRef cg_di_subprogram(Cg *cg, const char *name, const char *linkage, Loc loc, bool local)
{
    if (!cg->dib)
        return NULL;
    LLVMMetadataRef file = di_file(cg, loc.file);
    LLVMMetadataRef ty = LLVMDIBuilderCreateSubroutineType(cg->dib, file, NULL, 0, LLVMDIFlagZero);
    unsigned line = loc.line > 0 ? (unsigned)loc.line : 0;
    return LLVMDIBuilderCreateFunction(cg->dib, file, name, strlen(name), linkage, strlen(linkage), file,
                                       line, ty, local, 1, line, LLVMDIFlagZero, cg->opt->opt_level > 0);
}

/* Positions inside a function: the location of each Core binding. A position
 * in another file than the function's (code inlined by the simplifier) gets a
 * lexical block for that file. */
void cg_set_loc(Cg *cg, Loc loc)
{
    if (!cg->dib || !cg->sp || loc.line <= 0)
        return;
    LLVMMetadataRef scope = cg->sp;
    if (loc.file) {
        LLVMMetadataRef f = di_file(cg, loc.file);
        LLVMMetadataRef spf = LLVMDIScopeGetFile(cg->sp);
        if (f != spf) {
            const void *k = cg_skey("diblock:%p:%p", (void *)cg->sp, (void *)f);
            scope = cg_map_get(cg, k);
            if (!scope) {
                scope = LLVMDIBuilderCreateLexicalBlockFile(cg->dib, cg->sp, f, 0);
                cg_map_put(cg, k, scope);
            }
        }
    }
    LLVMSetCurrentDebugLocation2(
        cg->b, LLVMDIBuilderCreateDebugLocation(cg->ctx, (unsigned)loc.line, (unsigned)(loc.col > 0 ? loc.col : 0),
                                                scope, NULL));
}

static void begin_function_loc(Cg *cg, Loc loc)
{
    if (!cg->dib)
        return;
    if (cg->sp)
        LLVMSetCurrentDebugLocation2(cg->b, LLVMDIBuilderCreateDebugLocation(
                                                cg->ctx, loc.line > 0 ? (unsigned)loc.line : 0, 0, cg->sp, NULL));
    else
        LLVMSetCurrentDebugLocation2(cg->b, NULL);
}

/* ========================================================================
 * functions, main
 * ======================================================================== */

static void emit_fun(Cg *cg, CFun *f)
{
    LLVMValueRef fn = cg_fun_decl(cg, f);
    cg->fn = fn;
    cg->entry = cg_block(cg, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);
    cg->sp = cg_di_subprogram(cg, f->src_name ? f->src_name : f->name, LLVMGetValueName(fn), f->loc, true);
    if (cg->sp)
        LLVMSetSubprogram(fn, cg->sp);
    begin_function_loc(cg, f->loc);
    for (int i = 0; i < f->nparams; i++) {
        LLVMValueRef p = LLVMGetParam(fn, (unsigned)i);
        if (f->params[i]->name)
            LLVMSetValueName2(p, f->params[i]->name, strlen(f->params[i]->name));
        cg_set_var(cg, f->params[i], p);
    }
    cg->scope = NULL;
    LLVMValueRef r = cg_emit_block(cg, f->body, NULL, 0);
    LLVMBuildRet(cg->b, r);
    cg_emit_pending_all(cg);
}

/* int main(int argc, char **argv): records the arguments, runs DL's main,
 * flushes the output. */
static void emit_main(Cg *cg, CFun *m)
{
    LLVMTypeRef ps[2] = {cg->t_i32, cg->t_ptr};
    LLVMValueRef fn = LLVMAddFunction(cg->mod, "main", LLVMFunctionType(cg->t_i32, ps, 2, 0));
    cg->fn = fn;
    cg->sp = NULL;
    cg->entry = cg_block(cg, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);
    if (cg->dib)
        LLVMSetCurrentDebugLocation2(cg->b, NULL);
    cg_call_rt(cg, "dl_init", (LLVMValueRef[]){LLVMGetParam(fn, 0), LLVMGetParam(fn, 1)}, 2);
    char cwd[4096]; /* where relative source paths of run-time errors start */
    if (getcwd(cwd, sizeof cwd))
        cg_call_rt(cg, "dl_set_source_root", (LLVMValueRef[]){cg_cstr(cg, cwd)}, 1);
    LLVMValueRef dm = cg_fun_decl(cg, m);
    LLVMValueRef *args = NEWN(LLVMValueRef, m->nparams + 1);
    for (int i = 0; i < m->nparams; i++)
        args[i] = LLVMGetUndef(cg_type(cg, m->params[i]->type));
    LLVMValueRef r = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(dm), dm, args, (unsigned)m->nparams, "");
    cg_release(cg, m->ret, r);
    cg_call_rt(cg, "dl_flush", NULL, 0);
    LLVMBuildRet(cg->b, cg_i32(cg, 0));
}

/* ========================================================================
 * the module: set-up, optimisation, output
 * ======================================================================== */

static bool targets_ready;

static bool cg_init(Cg *cg, CProgram *p, const Options *o)
{
    memset(cg, 0, sizeof *cg);
    if (!targets_ready) {
        LLVMInitializeNativeTarget();
        LLVMInitializeNativeAsmPrinter();
        LLVMInitializeNativeAsmParser();
        targets_ready = true;
    }
    cg->opt = o;
    cg->prog = p;
    cg->ctx = LLVMContextCreate();
    cg->mod = LLVMModuleCreateWithNameInContext(p->module ? p->module : "main", cg->ctx);
    cg->b = LLVMCreateBuilderInContext(cg->ctx);
    char *triple = LLVMGetDefaultTargetTriple();
    char *err = NULL;
    LLVMTargetRef target;
    if (LLVMGetTargetFromTriple(triple, &target, &err)) {
        fprintf(stderr, "dcc: error: no LLVM target for %s: %s\n", triple, err);
        LLVMDisposeMessage(err);
        LLVMDisposeMessage(triple);
        return false;
    }
    LLVMCodeGenOptLevel lvl = o->opt_level <= 0 ? LLVMCodeGenLevelNone
                            : o->opt_level == 1 ? LLVMCodeGenLevelLess
                            : o->opt_level == 2 ? LLVMCodeGenLevelDefault
                                                : LLVMCodeGenLevelAggressive;
    /* The CPU: on x86-64, x86-64-v2 (SSE4.2, no AVX) unless DCC_CPU says
     * otherwise ("native" for the host, or any LLVM CPU name). v2 runs on
     * every x86-64 machine of the last decade and under valgrind, and
     * avoids a slowdown of VEX-encoded code around libm calls (false
     * dependencies of vcvtsi2sd: 2.5x on bench/kernels/sines.dl). Loops
     * still vectorise with SSE; fused multiply-add is never formed, so the
     * results do not depend on the CPU. Elsewhere: the host CPU. */
    const char *cpu_env = getenv("DCC_CPU");
    bool native = (cpu_env && strcmp(cpu_env, "native") == 0) || (!cpu_env && strncmp(triple, "x86_64", 6) != 0);
    char *cpu = native ? LLVMGetHostCPUName() : NULL;
    char *feat = native ? LLVMGetHostCPUFeatures() : NULL;
    const char *cpu_name = native ? cpu : cpu_env ? cpu_env : "x86-64-v2";
    cg->tm = LLVMCreateTargetMachine(target, triple, cpu_name, feat ? feat : "", lvl, LLVMRelocPIC,
                                     LLVMCodeModelDefault);
    if (cpu)
        LLVMDisposeMessage(cpu);
    if (feat)
        LLVMDisposeMessage(feat);
    LLVMSetTarget(cg->mod, triple);
    LLVMDisposeMessage(triple);
    cg->td = LLVMCreateTargetDataLayout(cg->tm);
    LLVMSetModuleDataLayout(cg->mod, cg->td);

    cg->t_void = LLVMVoidTypeInContext(cg->ctx);
    cg->t_i1 = LLVMInt1TypeInContext(cg->ctx);
    cg->t_i8 = LLVMInt8TypeInContext(cg->ctx);
    cg->t_i32 = LLVMInt32TypeInContext(cg->ctx);
    cg->t_i64 = LLVMInt64TypeInContext(cg->ctx);
    cg->t_f32 = LLVMFloatTypeInContext(cg->ctx);
    cg->t_f64 = LLVMDoubleTypeInContext(cg->ctx);
    cg->t_ptr = LLVMPointerTypeInContext(cg->ctx, 0);
    LLVMTypeRef kf[2] = {cg->t_i32, cg->t_i32};
    cg->t_key = LLVMStructTypeInContext(cg->ctx, kf, 2, 0);
    /* struct dl_array (dlrt.h): refcount, dtype, rank, elem_size, size, shape[8], data */
    LLVMTypeRef af[7] = {cg->t_i64, cg->t_i32, cg->t_i32, cg->t_i64, cg->t_i64,
                         LLVMArrayType(cg->t_i64, 8), cg->t_ptr};
    cg->t_array = LLVMStructCreateNamed(cg->ctx, "struct.dl_array");
    LLVMStructSetBody(cg->t_array, af, 7, 0);
    LLVMTypeRef lf[3] = {cg->t_ptr, cg->t_i32, cg->t_i32};
    cg->t_srcloc = LLVMStructCreateNamed(cg->ctx, "struct.dl_srcloc");
    LLVMStructSetBody(cg->t_srcloc, lf, 3, 0);

    tbaa_init(cg);
    cg_ptx_init(cg); /* ptx: GPU kernels (codegen_ptx.c) */
    if (o->debug_info) {
        cg->dib = LLVMCreateDIBuilder(cg->mod);
        const char *in = o->input && strcmp(o->input, "-") != 0 ? o->input : "<stdin>";
        cg->di_file = di_file(cg, in);
        const char *producer = "dcc " PACKAGE_VERSION;
        cg->di_cu = LLVMDIBuilderCreateCompileUnit(
            cg->dib, LLVMDWARFSourceLanguageC, cg->di_file, producer, strlen(producer), o->opt_level > 0, "", 0, 0,
            "", 0, LLVMDWARFEmissionLineTablesOnly, 0, 0, 0, "", 0, "", 0);
        LLVMAddModuleFlag(cg->mod, LLVMModuleFlagBehaviorWarning, "Debug Info Version", 18,
                          LLVMValueAsMetadata(LLVMConstInt(cg->t_i32, LLVMDebugMetadataVersion(), 0)));
        LLVMAddModuleFlag(cg->mod, LLVMModuleFlagBehaviorWarning, "Dwarf Version", 13,
                          LLVMValueAsMetadata(LLVMConstInt(cg->t_i32, 5, 0)));
    }
    return true;
}

static void cg_dispose(Cg *cg)
{
    cg_ptx_dispose(cg); /* ptx */
    if (cg->dib)
        LLVMDisposeDIBuilder(cg->dib);
    LLVMDisposeBuilder(cg->b);
    LLVMDisposeModule(cg->mod);
    LLVMDisposeTargetData(cg->td);
    LLVMDisposeTargetMachine(cg->tm);
    LLVMContextDispose(cg->ctx);
    free(cg->val);
    free(cg->owner);
    free(cg->last);
    free(cg->mark);
    free(cg->ucount);
    free(cg->direct);
    free(cg->defer);
    free(cg->vstate);
    free(cg->map_keys);
    free(cg->map_vals);
    free(cg->stored);
}

/* Builds the module of a whole program. */
static bool cg_build(Cg *cg, bool with_main)
{
    CProgram *p = cg->prog;
    for (int i = 0; i < p->nfuns; i++)
        cg_fun_decl(cg, p->funs[i]);
    for (int i = 0; i < p->nfuns; i++)
        emit_fun(cg, p->funs[i]);
    if (with_main && p->main)
        emit_main(cg, p->main);
    for (int i = 0; i < p->nfuns; i++)
        if (p->funs[i]->is_export)
            cg_emit_export(cg, p->funs[i]);
    cg_emit_export_closures(cg);
    if (cg->dib)
        LLVMDIBuilderFinalize(cg->dib);
    if (cg->nerrors)
        return false;
    if (cg->ptx && !cg_ptx_finish(cg)) /* ptx: kernels to PTX (codegen_ptx.c) */
        return false;
    char *msg = NULL;
    if (LLVMVerifyModule(cg->mod, LLVMReturnStatusAction, &msg)) {
        fprintf(stderr, "dcc: internal error: the generated LLVM IR is invalid:\n%s\n", msg);
        if (getenv("DCC_DUMP_BAD_IR"))
            LLVMDumpModule(cg->mod);
        LLVMDisposeMessage(msg);
        return false;
    }
    if (msg)
        LLVMDisposeMessage(msg);
    return true;
}

/* The new pass manager's standard pipelines, with loop and SLP vectorisation. */
static bool cg_optimise(Cg *cg)
{
    int lvl = cg->opt->opt_level;
    if (lvl <= 0)
        return true;
    char pipeline[32];
    snprintf(pipeline, sizeof pipeline, "default<O%d>", lvl > 3 ? 3 : lvl);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, lvl >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(po, lvl >= 2);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, lvl >= 2);
    LLVMPassBuilderOptionsSetLoopInterleaving(po, lvl >= 2);
    LLVMPassBuilderOptionsSetMergeFunctions(po, 0);
    LLVMErrorRef err = LLVMRunPasses(cg->mod, pipeline, cg->tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (err) {
        char *m = LLVMGetErrorMessage(err);
        fprintf(stderr, "dcc: internal error: LLVM optimisation failed: %s\n", m);
        LLVMDisposeErrorMessage(m);
        return false;
    }
    return true;
}

static bool emit_file(Cg *cg, const char *path, LLVMCodeGenFileType kind)
{
    char *err = NULL;
    if (strcmp(path, "-") == 0) {
        LLVMMemoryBufferRef buf;
        if (LLVMTargetMachineEmitToMemoryBuffer(cg->tm, cg->mod, kind, &err, &buf)) {
            fprintf(stderr, "dcc: error: cannot generate code: %s\n", err);
            LLVMDisposeMessage(err);
            return false;
        }
        fwrite(LLVMGetBufferStart(buf), 1, LLVMGetBufferSize(buf), stdout);
        fflush(stdout);
        LLVMDisposeMemoryBuffer(buf);
        return true;
    }
    if (LLVMTargetMachineEmitToFile(cg->tm, cg->mod, (char *)path, kind, &err)) {
        fprintf(stderr, "dcc: error: cannot write '%s': %s\n", path, err);
        LLVMDisposeMessage(err);
        return false;
    }
    return true;
}

/* foo/bar.dl -> bar.EXT (in the current directory, as cc does). */
static const char *default_output(const char *input, const char *ext)
{
    if (!input || strcmp(input, "-") == 0)
        return arena_printf(dcc_arena, "out%s", ext);
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    const char *dot = strrchr(base, '.');
    size_t n = dot ? (size_t)(dot - base) : strlen(base);
    return arena_printf(dcc_arena, "%.*s%s", (int)n, base, ext);
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Where libdlrt is: $DCC_BUILDDIR/runtime/.libs, or the build tree dcc was
 * built in when dcc runs from it (uninstalled), else the installed libdir:
 * <dir of dcc>/../lib when it holds libdlrt (an installation moved, or one
 * staged with DESTDIR), else the configured one. */
static const char *runtime_dir(void)
{
    const char *env = getenv("DCC_BUILDDIR");
    if (env && *env) {
        const char *d = arena_printf(dcc_arena, "%s/runtime/.libs", env);
        if (is_dir(d))
            return d;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        size_t bl = strlen(DCC_BUILDDIR);
        if (strncmp(self, DCC_BUILDDIR, bl) == 0 && self[bl] == '/') {
            const char *d = DCC_BUILDDIR "/runtime/.libs";
            if (is_dir(d))
                return d;
        }
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            const char *d = arena_printf(dcc_arena, "%s/../lib", self);
            if (is_file(arena_printf(dcc_arena, "%s/libdlrt.a", d)) ||
                is_file(arena_printf(dcc_arena, "%s/libdlrt.so", d)))
                return d;
        }
    }
    return DCC_LIBDIR;
}

static int run_command(char **argv)
{
    if (getenv("DCC_VERBOSE")) {
        for (char **a = argv; *a; a++)
            fprintf(stderr, "%s%s", a == argv ? "" : " ", *a);
        fputc('\n', stderr);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "dcc: error: cannot run '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* cc -o out obj libdlrt.a -lopenblas -lz -lm (the static runtime when there
 * is one, so that executables are self-contained; else -ldlrt with an rpath). */
static bool link_executable(const char *obj, const char *out)
{
    const char *dir = runtime_dir();
    const char *cc = getenv("DCC_CC");
    if (!cc || !*cc)
        cc = DCC_CC;
    char *argv[24];
    int n = 0;
    argv[n++] = (char *)cc;
    argv[n++] = "-o";
    argv[n++] = (char *)out;
    argv[n++] = (char *)obj;
    const char *a = arena_printf(dcc_arena, "%s/libdlrt.a", dir);
    if (is_file(a)) {
        argv[n++] = (char *)a;
    } else {
        argv[n++] = arena_printf(dcc_arena, "-L%s", dir);
        argv[n++] = "-ldlrt";
        argv[n++] = arena_printf(dcc_arena, "-Wl,-rpath,%s", dir);
    }
    argv[n++] = "-lopenblas";
    argv[n++] = "-lz";
    argv[n++] = "-lm";
    argv[n++] = "-lpthread";
#ifdef DCC_SANITIZE_LDFLAGS
    /* a dcc built with --enable-sanitizers links its instrumented runtime */
    for (char *f = strtok(arena_strdup(dcc_arena, DCC_SANITIZE_LDFLAGS), " "); f && n < 23; f = strtok(NULL, " "))
        argv[n++] = f;
#endif
    argv[n] = NULL;
    int st = run_command(argv);
    if (st != 0) {
        fprintf(stderr, "dcc: error: linking '%s' failed (%s exited with status %d; libdlrt from %s)\n", out, cc,
                st, dir);
        return false;
    }
    return true;
}

static const char *temp_path(const char *suffix)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    char *p = arena_printf(dcc_arena, "%s/dcc-XXXXXX%s", tmp, suffix);
    int fd = mkstemps(p, (int)strlen(suffix));
    if (fd < 0)
        fatal("cannot create a temporary file in %s: %s", tmp, strerror(errno));
    close(fd);
    return p;
}

static bool write_executable(Cg *cg, const char *out)
{
    const char *obj = temp_path(".o");
    bool ok = emit_file(cg, obj, LLVMObjectFile) && link_executable(obj, out);
    unlink(obj);
    return ok;
}

bool codegen_program(CProgram *p, const Options *o)
{
    Cg cg;
    if (!cg_init(&cg, p, o))
        return false;
    if (o->emit == EMIT_PTX) { /* ptx: the kernels' PTX module (codegen_ptx.c) */
        bool ok = cg_build(&cg, false);
        if (ok) {
            const char *out = o->output ? o->output : "-";
            FILE *f = strcmp(out, "-") == 0 ? stdout : fopen(out, "w");
            ok = f && fputs(cg_ptx_text(&cg), f) >= 0;
            if (f && f != stdout)
                ok = fclose(f) == 0 && ok;
            if (!ok)
                fprintf(stderr, "dcc: error: cannot write '%s'\n", out);
        }
        cg_dispose(&cg);
        return ok;
    }
    bool obj = o->emit == EMIT_OBJ || (o->compile_only && o->emit == EMIT_EXE);
    bool asm_ = o->emit == EMIT_ASM || (o->asm_only && o->emit == EMIT_EXE);
    bool ok = cg_build(&cg, !obj || !o->compile_only) && cg_optimise(&cg);
    if (ok) {
        if (o->emit == EMIT_LLVM) {
            const char *out = o->output ? o->output : "-";
            if (strcmp(out, "-") == 0) {
                char *s = LLVMPrintModuleToString(cg.mod);
                fputs(s, stdout);
                LLVMDisposeMessage(s);
            } else {
                char *err = NULL;
                if (LLVMPrintModuleToFile(cg.mod, out, &err)) {
                    fprintf(stderr, "dcc: error: cannot write '%s': %s\n", out, err);
                    LLVMDisposeMessage(err);
                    ok = false;
                }
            }
        } else if (asm_) {
            const char *out = o->output ? o->output : o->emit == EMIT_ASM ? "-" : default_output(o->input, ".s");
            ok = emit_file(&cg, out, LLVMAssemblyFile);
        } else if (obj) {
            ok = emit_file(&cg, o->output ? o->output : default_output(o->input, ".o"), LLVMObjectFile);
        } else {
            if (!p->main) {
                error_at(loc_none, "the program has no 'def main () : unit' (use -c for a module)");
                ok = false;
            } else {
                ok = write_executable(&cg, o->output ? o->output : "a.out");
            }
        }
    }
    cg_dispose(&cg);
    return ok;
}

/* dcc run: compiles to a temporary executable, runs it with the arguments,
 * removes it; returns the program's exit status (1 if it did not build). */
int codegen_run(CProgram *p, const Options *o)
{
    if (!p->main) {
        error_at(loc_none, "the program has no 'def main () : unit'");
        return 1;
    }
    Cg cg;
    if (!cg_init(&cg, p, o))
        return 1;
    const char *exe = temp_path("");
    bool ok = cg_build(&cg, true) && cg_optimise(&cg) && write_executable(&cg, exe);
    cg_dispose(&cg);
    if (!ok) {
        unlink(exe);
        return 1;
    }
    char **argv = xmalloc(sizeof(char *) * (size_t)(o->nrun_args + 2));
    argv[0] = (char *)exe;
    for (int i = 0; i < o->nrun_args; i++)
        argv[i + 1] = o->run_args[i];
    argv[o->nrun_args + 1] = NULL;
    int st = run_command(argv);
    free(argv);
    unlink(exe);
    return st < 0 ? 1 : st;
}

/* The REPL (repl.c) runs the program with ORC LLJIT: the module, with the C
 * main wrapper, optimised, as bitcode that the JIT reads into its own
 * context. */
bool codegen_bitcode(CProgram *p, const Options *o, char **data, size_t *len)
{
    Cg cg;
    if (!cg_init(&cg, p, o))
        return false;
    bool ok = cg_build(&cg, true) && cg_optimise(&cg);
    if (ok) {
        LLVMMemoryBufferRef buf = LLVMWriteBitcodeToMemoryBuffer(cg.mod);
        *len = LLVMGetBufferSize(buf);
        *data = xmalloc(*len ? *len : 1);
        memcpy(*data, LLVMGetBufferStart(buf), *len);
        LLVMDisposeMemoryBuffer(buf);
    }
    cg_dispose(&cg);
    return ok;
}

/* Where libdlrt is, for the REPL's JIT (see runtime_dir). */
const char *codegen_runtime_dir(void) { return runtime_dir(); }
