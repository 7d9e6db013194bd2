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
 * a run-time error caught by an error trap (see emit_export, cheader.c).
 *
 * Memory: arrays, strings, variant cells and closures are reference counted.
 * Ownership convention of the generated code:
 *   - function and lambda parameters, case payloads and captured variables
 *     are borrowed;
 *   - the value of every Core expression is owned (a new reference): results
 *     of primitives and calls, and projections retain what they extract;
 *   - storing a value into a tuple, record, closure, cell or array takes a
 *     reference (cg_take: moves an owned variable at its last use, otherwise
 *     retains);
 *   - a block releases each variable it owns right after the binding that
 *     uses it last (or after its definition when unused), except the one it
 *     returns, which moves into the block's result;
 *   - loop state is owned by the loop body, which consumes the old state and
 *     yields the new one; P_UPDATE and friends update an array in place when
 *     they own the only reference (dl_array_unique).
 * Releasing a DL_BYTES array whose elements hold references releases the
 * elements first when the array's count is 1 (libdlrt does not know them). */
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
static const void *skey(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const void *skey(const char *fmt, ...)
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

static Type *mk_type(TypeKind k)
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
        return mk_type(TY_UNIT);
    switch (t->kind) {
    case TY_VAR:
    case TY_QVAR:
        return mk_type(TY_UNIT);
    case TY_TANGENT:
        return cg_norm(type_tangent(cg_norm(t->args[0])));
    case TY_ARRAY: {
        Type *e = cg_norm(t->elem);
        if (e->kind == TY_ARRAY) {
            Type *a = mk_type(TY_ARRAY);
            a->elem = e->elem;
            a->rank = t->rank + e->rank;
            return a;
        }
        if (e == t->elem)
            return t;
        Type *a = mk_type(TY_ARRAY);
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
        Type *c = mk_type(t->kind);
        *c = *t;
        c->args = NEWN(Type *, t->nargs);
        for (int i = 0; i < t->nargs; i++)
            c->args[i] = subst(t->args[i], args, n);
        return c;
    }
    case TY_ARRAY: {
        Type *c = mk_type(TY_ARRAY);
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

static bool is_variant(Type *t)
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
    const void *k = skey("cstr:%s", s);
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
    const void *k = skey("dlstr:%s", s);
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
    const void *k = skey("loc:%s:%d:%d", file, loc.line, loc.col);
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
 * reference counts
 * ======================================================================== */

/* Cells (variants, closures, string headers): i64 count at offset 0,
 * negative for immortal ones. */
static LLVMValueRef cell_retain_fn(Cg *cg)
{
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "dl.cell_retain");
    if (f)
        return f;
    CgSaved s;
    f = cg_helper_begin(cg, "dl.cell_retain", LLVMFunctionType(cg->t_void, &cg->t_ptr, 1, 0), &s);
    LLVMValueRef p = LLVMGetParam(f, 0);
    LLVMBasicBlockRef inc = cg_block(cg, "inc"), done = cg_block(cg, "done");
    LLVMValueRef rc = LLVMBuildLoad2(cg->b, cg->t_i64, p, "rc");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, rc, cg_i64(cg, 0), ""), inc, done);
    LLVMPositionBuilderAtEnd(cg->b, inc);
    LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, rc, cg_i64(cg, 1), ""), p);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    LLVMBuildRetVoid(cg->b);
    cg_helper_end(cg, &s);
    return f;
}

/* Decrements a cell's count; returns the i1 "now dead" in a new block
 * sequence: the caller frees when true. */
static LLVMValueRef cell_decrement(Cg *cg, LLVMValueRef p)
{
    LLVMBasicBlockRef dec = cg_block(cg, "dec"), out = cg_block(cg, "dec.out");
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMValueRef rc = LLVMBuildLoad2(cg->b, cg->t_i64, p, "rc");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, rc, cg_i64(cg, 0), ""), dec, out);
    LLVMPositionBuilderAtEnd(cg->b, dec);
    LLVMValueRef n = LLVMBuildSub(cg->b, rc, cg_i64(cg, 1), "");
    LLVMBuildStore(cg->b, n, p);
    LLVMValueRef dead = LLVMBuildICmp(cg->b, LLVMIntEQ, n, cg_i64(cg, 0), "");
    LLVMBuildBr(cg->b, out);
    LLVMPositionBuilderAtEnd(cg->b, out);
    LLVMValueRef phi = LLVMBuildPhi(cg->b, cg->t_i1, "dead");
    LLVMValueRef vals[2] = {LLVMConstInt(cg->t_i1, 0, 0), dead};
    LLVMBasicBlockRef bbs[2] = {here, dec};
    LLVMAddIncoming(phi, vals, bbs, 2);
    return phi;
}

static LLVMValueRef string_header(Cg *cg, LLVMValueRef s)
{
    return LLVMBuildGEP2(cg->b, cg->t_i8, s, (LLVMValueRef[]){cg_i64(cg, -8)}, 1, "");
}

static void release_body(Cg *cg, CgType *ti, LLVMValueRef v);
static LLVMTypeRef variant_cell_type(Cg *cg, Type *t, int con);

static void retain_body(Cg *cg, CgType *ti, LLVMValueRef v)
{
    Type *t = ti->type;
    switch (t->kind) {
    case TY_ARRAY:
        cg_call_rt(cg, "dl_array_retain", &v, 1);
        break;
    case TY_STRING: {
        LLVMValueRef h = string_header(cg, v);
        cg_call(cg, cell_retain_fn(cg), &h, 1);
        break;
    }
    case TY_FUNC:
        cg_call(cg, cell_retain_fn(cg), &v, 1);
        break;
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (cg_is_rc(cg, t->args[i]))
                cg_retain(cg, t->args[i], LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""));
        break;
    case TY_NAMED:
        if (t->decl->kind == TD_RECORD) {
            for (int i = 0; i < t->decl->nfields; i++) {
                Type *ft = cg_record_field(t, i);
                if (cg_is_rc(cg, ft))
                    cg_retain(cg, ft, LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""));
            }
        } else {
            cg_call(cg, cell_retain_fn(cg), &v, 1);
        }
        break;
    default:
        break;
    }
}

void cg_retain(Cg *cg, Type *t, LLVMValueRef v)
{
    CgType *ti = cg_tinfo(cg, t);
    if (!ti->rc)
        return;
    t = ti->type;
    if (t->kind == TY_ARRAY || t->kind == TY_STRING || t->kind == TY_FUNC || is_variant(t)) {
        retain_body(cg, ti, v);
        return;
    }
    if (!ti->retain) {
        CgSaved s;
        LLVMTypeRef ft = LLVMFunctionType(cg->t_void, &ti->ll, 1, 0);
        ti->retain = cg_helper_begin(cg, arena_printf(dcc_arena, "dl.retain.%s", ti->key), ft, &s);
        retain_body(cg, ti, LLVMGetParam(ti->retain, 0));
        LLVMBuildRetVoid(cg->b);
        cg_helper_end(cg, &s);
    }
    cg_call(cg, ti->retain, &v, 1);
}

void cg_release(Cg *cg, Type *t, LLVMValueRef v)
{
    CgType *ti = cg_tinfo(cg, t);
    if (!ti->rc)
        return;
    t = ti->type;
    if ((t->kind == TY_ARRAY && !cg_is_rc(cg, t->elem)) || t->kind == TY_STRING) {
        release_body(cg, ti, v);
        return;
    }
    if (!ti->release) {
        CgSaved s;
        LLVMTypeRef ft = LLVMFunctionType(cg->t_void, &ti->ll, 1, 0);
        ti->release = cg_helper_begin(cg, arena_printf(dcc_arena, "dl.release.%s", ti->key), ft, &s);
        release_body(cg, ti, LLVMGetParam(ti->release, 0));
        LLVMBuildRetVoid(cg->b);
        cg_helper_end(cg, &s);
    }
    cg_call(cg, ti->release, &v, 1);
}

static void release_body(Cg *cg, CgType *ti, LLVMValueRef v)
{
    Type *t = ti->type;
    switch (t->kind) {
    case TY_ARRAY:
        if (cg_is_rc(cg, t->elem)) {
            /* the elements die with the last reference */
            LLVMBasicBlockRef last = cg_block(cg, "last"), rel = cg_block(cg, "rel");
            LLVMValueRef rc = LLVMBuildLoad2(cg->b, cg->t_i64, v, "rc");
            LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, rc, cg_i64(cg, 1), ""), last, rel);
            LLVMPositionBuilderAtEnd(cg->b, last);
            cg_array_release_elems(cg, t->elem, v);
            LLVMBuildBr(cg->b, rel);
            LLVMPositionBuilderAtEnd(cg->b, rel);
        }
        cg_call_rt(cg, "dl_array_release", &v, 1);
        break;
    case TY_STRING: {
        LLVMValueRef h = string_header(cg, v);
        LLVMValueRef dead = cell_decrement(cg, h);
        LLVMBasicBlockRef fr = cg_block(cg, "free"), done = cg_block(cg, "done");
        LLVMBuildCondBr(cg->b, dead, fr, done);
        LLVMPositionBuilderAtEnd(cg->b, fr);
        cg_free(cg, h);
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, done);
        break;
    }
    case TY_FUNC: {
        LLVMValueRef dead = cell_decrement(cg, v);
        LLVMBasicBlockRef fr = cg_block(cg, "drop"), done = cg_block(cg, "done");
        LLVMBuildCondBr(cg->b, dead, fr, done);
        LLVMPositionBuilderAtEnd(cg->b, fr);
        LLVMValueRef dp = LLVMBuildGEP2(cg->b, cg->t_i8, v, (LLVMValueRef[]){cg_i64(cg, 16)}, 1, "");
        LLVMValueRef drop = LLVMBuildLoad2(cg->b, cg->t_ptr, dp, "drop");
        LLVMBuildCall2(cg->b, LLVMFunctionType(cg->t_void, &cg->t_ptr, 1, 0), drop, &v, 1, "");
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, done);
        break;
    }
    case TY_TUPLE:
        for (int i = 0; i < t->nargs; i++)
            if (cg_is_rc(cg, t->args[i]))
                cg_release(cg, t->args[i], LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""));
        break;
    case TY_NAMED:
        if (t->decl->kind == TD_RECORD) {
            for (int i = 0; i < t->decl->nfields; i++) {
                Type *ft = cg_record_field(t, i);
                if (cg_is_rc(cg, ft))
                    cg_release(cg, ft, LLVMBuildExtractValue(cg->b, v, (unsigned)i, ""));
            }
        } else {
            LLVMValueRef dead = cell_decrement(cg, v);
            LLVMBasicBlockRef fr = cg_block(cg, "drop"), done = cg_block(cg, "done");
            LLVMBuildCondBr(cg->b, dead, fr, done);
            LLVMPositionBuilderAtEnd(cg->b, fr);
            int ncons = t->decl->ncons;
            bool any = false;
            for (int c = 0; c < ncons; c++) {
                Type *at = cg_con_arg(t, c);
                any |= at && cg_is_rc(cg, at);
            }
            if (any) {
                LLVMValueRef tp = LLVMBuildGEP2(cg->b, cg->t_i8, v, (LLVMValueRef[]){cg_i64(cg, 8)}, 1, "");
                LLVMValueRef tag = LLVMBuildLoad2(cg->b, cg->t_i64, tp, "tag");
                LLVMBasicBlockRef fin = cg_block(cg, "free");
                LLVMValueRef sw = LLVMBuildSwitch(cg->b, tag, fin, (unsigned)ncons);
                for (int c = 0; c < ncons; c++) {
                    Type *at = cg_con_arg(t, c);
                    if (!at || !cg_is_rc(cg, at))
                        continue;
                    LLVMBasicBlockRef bb = cg_block(cg, "con");
                    LLVMAddCase(sw, cg_i64(cg, c), bb);
                    LLVMPositionBuilderAtEnd(cg->b, bb);
                    LLVMTypeRef cty = variant_cell_type(cg, t, c);
                    LLVMValueRef pp = LLVMBuildStructGEP2(cg->b, cty, v, 2, "");
                    cg_release(cg, at, LLVMBuildLoad2(cg->b, cg_type(cg, at), pp, "payload"));
                    LLVMBuildBr(cg->b, fin);
                }
                LLVMPositionBuilderAtEnd(cg->b, fin);
            }
            cg_free(cg, v);
            LLVMBuildBr(cg->b, done);
            LLVMPositionBuilderAtEnd(cg->b, done);
        }
        break;
    default:
        break;
    }
}

/* ========================================================================
 * variants
 * ======================================================================== */

/* The cell of constructor con: {i64 refcount, i64 tag[, payload]}. */
static LLVMTypeRef variant_cell_type(Cg *cg, Type *t, int con)
{
    Type *at = cg_con_arg(t, con);
    LLVMTypeRef f[3] = {cg->t_i64, cg->t_i64, at ? cg_type(cg, at) : NULL};
    return LLVMStructTypeInContext(cg->ctx, f, at ? 3 : 2, 0);
}

static LLVMValueRef variant_nullary(Cg *cg, Type *t, int con)
{
    CgType *ti = cg_tinfo(cg, t);
    if (!ti->nullary)
        ti->nullary = NEWN(LLVMValueRef, ti->type->decl->ncons);
    if (!ti->nullary[con]) {
        LLVMValueRef f[2] = {cg_i64(cg, -1), cg_i64(cg, con)};
        LLVMValueRef init = LLVMConstStructInContext(cg->ctx, f, 2, 0);
        LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init),
                                       arena_printf(dcc_arena, "dl.con.%s", ti->type->decl->cons[con]));
        LLVMSetInitializer(g, init);
        LLVMSetLinkage(g, LLVMPrivateLinkage);
        LLVMSetAlignment(g, 8);
        ti->nullary[con] = g;
    }
    return ti->nullary[con];
}

/* A constructor application; payload owned (moved into the cell). */
static LLVMValueRef variant_make(Cg *cg, Type *t, int con, LLVMValueRef payload)
{
    if (!cg_con_arg(t, con))
        return variant_nullary(cg, t, con);
    LLVMTypeRef cty = variant_cell_type(cg, t, con);
    LLVMValueRef p = cg_malloc(cg, cg_i64(cg, cg_sizeof(cg, cty)));
    LLVMBuildStore(cg->b, cg_i64(cg, 1), LLVMBuildStructGEP2(cg->b, cty, p, 0, ""));
    LLVMBuildStore(cg->b, cg_i64(cg, con), LLVMBuildStructGEP2(cg->b, cty, p, 1, ""));
    LLVMBuildStore(cg->b, payload, LLVMBuildStructGEP2(cg->b, cty, p, 2, ""));
    return p;
}

static LLVMValueRef variant_tag(Cg *cg, LLVMValueRef v)
{
    LLVMValueRef tp = LLVMBuildGEP2(cg->b, cg->t_i8, v, (LLVMValueRef[]){cg_i64(cg, 8)}, 1, "");
    return LLVMBuildLoad2(cg->b, cg->t_i64, tp, "tag");
}

/* The payload, borrowed. */
static LLVMValueRef variant_payload(Cg *cg, Type *t, int con, LLVMValueRef v)
{
    LLVMTypeRef cty = variant_cell_type(cg, t, con);
    Type *at = cg_con_arg(t, con);
    if (!at)
        return cg_unit(cg);
    return LLVMBuildLoad2(cg->b, cg_type(cg, at), LLVMBuildStructGEP2(cg->b, cty, v, 2, ""), "payload");
}

/* ========================================================================
 * equality
 * ======================================================================== */

static void equal_body(Cg *cg, Type *t, LLVMValueRef a, LLVMValueRef b, LLVMValueRef fn);

LLVMValueRef cg_equal(Cg *cg, Type *t, LLVMValueRef a, LLVMValueRef b)
{
    t = cg_norm(t);
    switch (t->kind) {
    case TY_INT:
    case TY_BOOL:
        return LLVMBuildICmp(cg->b, LLVMIntEQ, a, b, "");
    case TY_FLOAT:
    case TY_F32:
        return LLVMBuildFCmp(cg->b, LLVMRealOEQ, a, b, "");
    case TY_UNIT:
        return LLVMConstInt(cg->t_i1, 1, 0);
    case TY_STRING: {
        LLVMValueRef args[2] = {a, b};
        LLVMValueRef r = cg_call_rt(cg, "strcmp", args, 2);
        return LLVMBuildICmp(cg->b, LLVMIntEQ, r, cg_i32(cg, 0), "");
    }
    case TY_KEY: {
        LLVMValueRef x = LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildExtractValue(cg->b, a, 0, ""),
                                       LLVMBuildExtractValue(cg->b, b, 0, ""), "");
        LLVMValueRef y = LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildExtractValue(cg->b, a, 1, ""),
                                       LLVMBuildExtractValue(cg->b, b, 1, ""), "");
        return LLVMBuildAnd(cg->b, x, y, "");
    }
    case TY_ARRAY:
        return cg_array_equal(cg, t, a, b);
    case TY_FUNC:
        return LLVMBuildICmp(cg->b, LLVMIntEQ, a, b, "");
    default:
        break;
    }
    CgType *ti = cg_tinfo(cg, t);
    if (!ti->eq) {
        CgSaved s;
        LLVMTypeRef ps[2] = {ti->ll, ti->ll};
        ti->eq = cg_helper_begin(cg, arena_printf(dcc_arena, "dl.eq.%s", ti->key),
                                 LLVMFunctionType(cg->t_i1, ps, 2, 0), &s);
        equal_body(cg, ti->type, LLVMGetParam(ti->eq, 0), LLVMGetParam(ti->eq, 1), ti->eq);
        cg_helper_end(cg, &s);
    }
    return cg_call(cg, ti->eq, (LLVMValueRef[]){a, b}, 2);
}

/* Component by component, stopping at the first difference. */
static void equal_body(Cg *cg, Type *t, LLVMValueRef a, LLVMValueRef b, LLVMValueRef fn)
{
    LLVMBasicBlockRef no = cg_block(cg, "ne");
    if (is_variant(t)) {
        LLVMValueRef ta = variant_tag(cg, a), tb = variant_tag(cg, b);
        LLVMBasicBlockRef same = cg_block(cg, "same");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, ta, tb, ""), same, no);
        LLVMPositionBuilderAtEnd(cg->b, same);
        LLVMBasicBlockRef yes = cg_block(cg, "eq");
        LLVMValueRef sw = LLVMBuildSwitch(cg->b, ta, yes, (unsigned)t->decl->ncons);
        for (int c = 0; c < t->decl->ncons; c++) {
            Type *at = cg_con_arg(t, c);
            if (!at)
                continue;
            LLVMBasicBlockRef bb = cg_block(cg, "con");
            LLVMAddCase(sw, cg_i64(cg, c), bb);
            LLVMPositionBuilderAtEnd(cg->b, bb);
            LLVMValueRef r = cg_equal(cg, at, variant_payload(cg, t, c, a), variant_payload(cg, t, c, b));
            LLVMBuildRet(cg->b, r);
        }
        LLVMPositionBuilderAtEnd(cg->b, yes);
        LLVMBuildRet(cg->b, LLVMConstInt(cg->t_i1, 1, 0));
    } else {
        int n = t->kind == TY_TUPLE ? t->nargs : t->decl->nfields;
        for (int i = 0; i < n; i++) {
            Type *ct = t->kind == TY_TUPLE ? t->args[i] : cg_record_field(t, i);
            LLVMValueRef r = cg_equal(cg, ct, LLVMBuildExtractValue(cg->b, a, (unsigned)i, ""),
                                      LLVMBuildExtractValue(cg->b, b, (unsigned)i, ""));
            LLVMBasicBlockRef next = cg_block(cg, "next");
            LLVMBuildCondBr(cg->b, r, next, no);
            LLVMPositionBuilderAtEnd(cg->b, next);
        }
        LLVMBuildRet(cg->b, LLVMConstInt(cg->t_i1, 1, 0));
    }
    LLVMPositionBuilderAtEnd(cg->b, no);
    LLVMBuildRet(cg->b, LLVMConstInt(cg->t_i1, 0, 0));
    (void)fn;
}

/* ========================================================================
 * walking Core: uses and bindings of variables
 * ======================================================================== */

typedef struct Walk Walk;
struct Walk {
    Cg *cg;
    void (*use)(Walk *w, CVar *v);
    void (*bind)(Walk *w, CVar *v);
    int i;        /* block analysis: index of the binding walked */
    int serial;   /* block analysis: the block's serial */
    CVar *target; /* use counting */
    int count;
    Vec *out;     /* free variables */
};

static void walk_block(Walk *w, CBlock *b);

static void walk_atom(Walk *w, CAtom *a)
{
    if (a && a->kind == CA_VAR && w->use)
        w->use(w, a->u.var);
}

static void walk_bind(Walk *w, CVar *v)
{
    if (v && w->bind)
        w->bind(w, v);
}

static void walk_lambda(Walk *w, CLambda *l)
{
    for (int i = 0; i < l->nparams; i++)
        walk_bind(w, l->params[i]);
    walk_block(w, l->body);
}

static void walk_expr(Walk *w, CExpr *e)
{
    for (int i = 0; i < e->nargs; i++)
        walk_atom(w, e->args[i]);
    switch (e->kind) {
    case CE_LAMBDA:
        walk_lambda(w, e->u.lambda);
        break;
    case CE_IF:
        walk_block(w, e->u.if_.then_);
        walk_block(w, e->u.if_.else_);
        break;
    case CE_CASE:
        for (int i = 0; i < e->u.case_.nalts; i++) {
            walk_bind(w, e->u.case_.alts[i].payload);
            walk_block(w, e->u.case_.alts[i].body);
        }
        break;
    case CE_LOOP:
        walk_bind(w, e->u.loop.state);
        walk_bind(w, e->u.loop.ivar);
        if (e->u.loop.cond)
            walk_block(w, e->u.loop.cond);
        walk_block(w, e->u.loop.body);
        break;
    case CE_SOAC:
        walk_lambda(w, e->u.soac.fn);
        break;
    case CE_DERIV:
        walk_lambda(w, e->u.deriv.fn);
        break;
    default:
        break;
    }
}

static void walk_block(Walk *w, CBlock *b)
{
    for (int i = 0; i < b->nbinds; i++) {
        walk_expr(w, b->binds[i].e);
        walk_bind(w, b->binds[i].var);
    }
    walk_atom(w, b->result);
}

static void var_room(Cg *cg, int id)
{
    if (id < cg->nvar)
        return;
    int n = cg->nvar ? cg->nvar : 1024;
    while (n <= id)
        n *= 2;
    cg->val = xrealloc(cg->val, sizeof *cg->val * (size_t)n);
    cg->owner = xrealloc(cg->owner, sizeof *cg->owner * (size_t)n);
    cg->last = xrealloc(cg->last, sizeof *cg->last * (size_t)n);
    cg->mark = xrealloc(cg->mark, sizeof *cg->mark * (size_t)n);
    cg->ucount = xrealloc(cg->ucount, sizeof *cg->ucount * (size_t)n);
    cg->direct = xrealloc(cg->direct, sizeof *cg->direct * (size_t)n);
    cg->defer = xrealloc(cg->defer, sizeof *cg->defer * (size_t)n);
    cg->vstate = xrealloc(cg->vstate, (size_t)n);
    for (int i = cg->nvar; i < n; i++) {
        cg->val[i] = NULL;
        cg->owner[i] = cg->last[i] = cg->mark[i] = cg->ucount[i] = 0;
        cg->direct[i] = -1;
        cg->defer[i] = NULL;
        cg->vstate[i] = CG_NONE;
    }
    cg->nvar = n;
}

void cg_set_var(Cg *cg, CVar *v, LLVMValueRef x)
{
    var_room(cg, v->id);
    cg->val[v->id] = x;
    cg->owner[v->id] = 0;
    cg->vstate[v->id] = CG_NONE;
}

static void count_use(Walk *w, CVar *v)
{
    if (v == w->target)
        w->count++;
}

int cg_uses_in(CExpr *e, CVar *v)
{
    Walk w = {.use = count_use, .target = v};
    walk_expr(&w, e);
    return w.count;
}

/* Free variables of a lambda, in order of first use. */
static void fv_bind(Walk *w, CVar *v)
{
    var_room(w->cg, v->id);
    w->cg->mark[v->id] = -w->cg->stamp; /* bound inside */
}

static void fv_use(Walk *w, CVar *v)
{
    (void)w;
    (void)v;
}

static void fv_collect(Walk *w, CVar *v)
{
    var_room(w->cg, v->id);
    int *m = &w->cg->mark[v->id];
    if (*m == -w->cg->stamp || *m == w->cg->stamp)
        return;
    *m = w->cg->stamp;
    vec_push(w->out, v);
}

static CVar **free_vars(Cg *cg, CLambda *l, int *n)
{
    Vec out = {0};
    cg->stamp++;
    Walk w = {.cg = cg, .use = fv_use, .bind = fv_bind};
    walk_lambda(&w, l); /* first mark everything bound inside */
    w.use = fv_collect;
    w.bind = NULL;
    w.out = &out;
    walk_lambda(&w, l);
    *n = out.len;
    CVar **r = (CVar **)vec_freeze(&out);
    vec_free(&out);
    return r;
}

/* ========================================================================
 * blocks and ownership
 * ======================================================================== */

LLVMValueRef cg_atom(Cg *cg, CAtom *a)
{
    switch (a->kind) {
    case CA_VAR: {
        CVar *v = a->u.var;
        var_room(cg, v->id);
        if (!cg->val[v->id])
            fatal("internal error: codegen: variable %s_%d used before its definition",
                  v->name ? v->name : "", v->id);
        return cg->val[v->id];
    }
    case CA_INT:
        if (cg_norm(a->type)->kind == TY_BOOL)
            return LLVMConstInt(cg->t_i1, a->u.ival != 0, 0);
        if (cg_norm(a->type)->kind == TY_FLOAT)
            return LLVMConstReal(cg->t_f64, (double)a->u.ival);
        if (cg_norm(a->type)->kind == TY_F32)
            return LLVMConstReal(cg->t_f32, (double)a->u.ival);
        return cg_i64(cg, a->u.ival);
    case CA_BOOL:
        return LLVMConstInt(cg->t_i1, a->u.ival != 0, 0);
    case CA_FLOAT:
        return LLVMConstReal(cg_norm(a->type)->kind == TY_F32 ? cg->t_f32 : cg->t_f64, a->u.fval);
    case CA_UNIT:
        return cg_unit(cg);
    case CA_STRING:
        return cg_const_string(cg, a->u.sval);
    case CA_FUN:
        break;
    }
    extern LLVMValueRef cg_fun_value(Cg *, CFun *);
    return cg_fun_value(cg, a->u.fun);
}

/* Uses of v by e and by the producers fused into it. */
static int uses_fused(Cg *cg, CExpr *e, CVar *v)
{
    int n = cg_uses_in(e, v);
    for (int i = 0; i < e->nargs; i++) {
        CAtom *a = e->args[i];
        if (a->kind == CA_VAR && a->u.var->id < cg->nvar && cg->defer[a->u.var->id])
            n += uses_fused(cg, cg->defer[a->u.var->id], v);
    }
    return n;
}

LLVMValueRef cg_take(Cg *cg, CAtom *a)
{
    LLVMValueRef v = cg_atom(cg, a);
    if (!cg_is_rc(cg, core_atom_type(a)))
        return v;
    CgScope *s = cg->scope;
    if (a->kind == CA_VAR && s) {
        int id = a->u.var->id;
        if (cg->owner[id] == s->serial && cg->vstate[id] == CG_OWNED && cg->last[id] == s->cur &&
            s->cur_expr && uses_fused(cg, s->cur_expr, a->u.var) == 1) {
            cg->vstate[id] = CG_GONE;
            return v;
        }
    }
    if (a->kind != CA_STRING && a->kind != CA_FUN)
        cg_retain(cg, core_atom_type(a), v);
    return v;
}

static void count_block_use(Walk *w, CVar *v)
{
    var_room(w->cg, v->id);
    if (w->cg->owner[v->id] == w->serial)
        w->cg->ucount[v->id]++;
}

/* The last use is the latest position at which a use is emitted. A fused
 * producer's operands are read where its consumer is emitted (w->i is that
 * position), which may come after later bindings: positions are not
 * monotonic in binding order, so keep the maximum. */
static void last_use(Walk *w, CVar *v)
{
    var_room(w->cg, v->id);
    if (w->cg->owner[v->id] == w->serial && w->i > w->cg->last[v->id])
        w->cg->last[v->id] = w->i;
}

static LLVMValueRef emit_expr(Cg *cg, CExpr *e);
static void set_loc(Cg *cg, Loc loc);

static void release_var(Cg *cg, CVar *v)
{
    if (cg->vstate[v->id] == CG_OWNED) {
        cg_release(cg, v->type, cg->val[v->id]);
        cg->vstate[v->id] = CG_GONE;
    }
}

LLVMValueRef cg_emit_block(Cg *cg, CBlock *b, CVar **pre, int npre)
{
    CgScope sc = {.up = cg->scope, .serial = ++cg->serial};
    for (int i = 0; i < npre; i++) {
        CVar *v = pre[i];
        var_room(cg, v->id);
        cg->owner[v->id] = sc.serial;
        cg->last[v->id] = -1;
        cg->vstate[v->id] = cg_is_rc(cg, v->type) ? CG_OWNED : CG_NONE;
    }
    for (int i = 0; i < b->nbinds; i++) {
        CVar *v = b->binds[i].var;
        var_room(cg, v->id);
        cg->owner[v->id] = sc.serial;
        cg->last[v->id] = -1;
        cg->vstate[v->id] = CG_NONE;
    }
    /* loop fusion: a producer used once, directly by a later binding that
     * can compute it per element, is emitted inside that binding's loop;
     * nothing with an effect may come between the two. */
    int *eff = xmalloc(sizeof(int) * (size_t)(b->nbinds + 1));
    int *consumer = xmalloc(sizeof(int) * (size_t)(b->nbinds + 1));
    {
        Walk cw = {.cg = cg, .use = count_block_use, .serial = sc.serial};
        for (int i = 0; i < b->nbinds; i++) {
            CVar *v = b->binds[i].var;
            cg->ucount[v->id] = 0;
            cg->direct[v->id] = -1;
            cg->defer[v->id] = NULL;
        }
        for (int i = 0; i < b->nbinds; i++) {
            walk_expr(&cw, b->binds[i].e);
            CExpr *e = b->binds[i].e;
            for (int k = 0; k < e->nargs; k++)
                if (e->args[k]->kind == CA_VAR && cg->owner[e->args[k]->u.var->id] == sc.serial)
                    cg->direct[e->args[k]->u.var->id] = i;
        }
        walk_atom(&cw, b->result);
        for (int j = b->nbinds - 1; j >= 0; j--) {
            CVar *v = b->binds[j].var;
            CExpr *e = b->binds[j].e;
            consumer[j] = -1;
            int k = cg->direct[v->id];
            if (cg->opt->opt_level <= 0 || cg->ucount[v->id] != 1 || k <= j || !cg_producer(e) ||
                !cg_fusable(e, b->binds[k].e, v))
                continue;
            bool ok = true;
            for (int m = j + 1; m < k && ok; m++) {
                CExpr *x = b->binds[m].e;
                ok = x->kind == CE_ATOM || cg->defer[b->binds[m].var->id] ||
                     (x->kind == CE_PRIM && !(core_prims[x->u.prim.op].flags & PRIM_EFFECT));
            }
            if (!ok)
                continue;
            cg->defer[v->id] = e;
            consumer[j] = k;
        }
        for (int j = b->nbinds - 1; j >= 0; j--)
            eff[j] = consumer[j] >= 0 ? eff[consumer[j]] : j;
    }
    Walk w = {.cg = cg, .use = last_use, .serial = sc.serial};
    for (int i = 0; i < b->nbinds; i++) {
        w.i = eff[i];
        walk_expr(&w, b->binds[i].e);
    }
    w.i = b->nbinds; /* used by the result: moved, never released here */
    walk_atom(&w, b->result);

    /* release lists: bucket[i] holds owned variables last used by binding i */
    Vec *bucket = xmalloc(sizeof(Vec) * (size_t)(b->nbinds + 1));
    memset(bucket, 0, sizeof(Vec) * (size_t)(b->nbinds + 1));
    for (int i = 0; i < npre; i++) {
        CVar *v = pre[i];
        if (cg->vstate[v->id] != CG_OWNED)
            continue;
        if (cg->last[v->id] < 0)
            release_var(cg, v); /* unused state */
        else if (cg->last[v->id] < b->nbinds)
            vec_push(&bucket[cg->last[v->id]], v);
    }
    for (int i = 0; i < b->nbinds; i++) {
        CVar *v = b->binds[i].var;
        if (cg->last[v->id] >= 0 && cg->last[v->id] < b->nbinds)
            vec_push(&bucket[cg->last[v->id]], v);
    }

    cg->scope = &sc;
    for (int i = 0; i < b->nbinds; i++) {
        CBind *bd = &b->binds[i];
        if (consumer[i] >= 0)
            continue; /* computed by its consumer */
        sc.cur = i;
        sc.cur_expr = bd->e;
        set_loc(cg, bd->e->loc);
        LLVMValueRef v = emit_expr(cg, bd->e);
        cg->val[bd->var->id] = v;
        if (cg_is_rc(cg, bd->var->type)) {
            cg->vstate[bd->var->id] = CG_OWNED;
            if (cg->last[bd->var->id] < 0)
                release_var(cg, bd->var);
        }
        for (int k = 0; k < bucket[i].len; k++)
            release_var(cg, bucket[i].data[k]);
    }
    sc.cur = b->nbinds;
    sc.cur_expr = NULL;
    LLVMValueRef r;
    CAtom *res = b->result;
    if (res->kind == CA_VAR && cg->owner[res->u.var->id] == sc.serial &&
        cg->vstate[res->u.var->id] == CG_OWNED) {
        r = cg->val[res->u.var->id];
        cg->vstate[res->u.var->id] = CG_GONE; /* moved out */
    } else {
        r = cg_atom(cg, res);
        if (res->kind == CA_VAR)
            cg_retain(cg, core_atom_type(res), r);
    }
    for (int i = 0; i <= b->nbinds; i++)
        vec_free(&bucket[i]);
    free(bucket);
    free(eff);
    free(consumer);
    cg->scope = sc.up;
    return r;
}

/* ========================================================================
 * closures
 * ======================================================================== */

struct CgPending {
    CgPending *next;
    CLambda *lam;
    LLVMValueRef fn;
    CVar **caps;
    int ncaps;
    LLVMTypeRef cell;
};

/* Closure cells: {i64 refcount, ptr code, ptr drop, captures...}. */
static LLVMTypeRef closure_cell_type(Cg *cg, Type **caps, int n)
{
    LLVMTypeRef *f = NEWN(LLVMTypeRef, n + 3);
    f[0] = cg->t_i64;
    f[1] = cg->t_ptr;
    f[2] = cg->t_ptr;
    for (int i = 0; i < n; i++)
        f[3 + i] = cg_type(cg, caps[i]);
    return LLVMStructTypeInContext(cg->ctx, f, (unsigned)n + 3, 0);
}

/* void drop(ptr cell): releases the captures and frees the cell. */
static LLVMValueRef closure_drop_fn(Cg *cg, LLVMTypeRef cell, Type **caps, int n)
{
    CgSaved s;
    LLVMValueRef f = cg_helper_begin(cg, "dl.drop", LLVMFunctionType(cg->t_void, &cg->t_ptr, 1, 0), &s);
    LLVMValueRef p = LLVMGetParam(f, 0);
    for (int i = 0; i < n; i++)
        if (cg_is_rc(cg, caps[i]))
            cg_release(cg, caps[i], LLVMBuildLoad2(cg->b, cg_type(cg, caps[i]),
                                                   LLVMBuildStructGEP2(cg->b, cell, p, (unsigned)(3 + i), ""), ""));
    cg_free(cg, p);
    LLVMBuildRetVoid(cg->b);
    cg_helper_end(cg, &s);
    return f;
}

/* A new closure cell (refcount 1) holding the owned values caps. */
static LLVMValueRef closure_new(Cg *cg, LLVMTypeRef cell, LLVMValueRef code, LLVMValueRef drop,
                                LLVMValueRef *caps, int n)
{
    LLVMValueRef p = cg_malloc(cg, cg_i64(cg, cg_sizeof(cg, cell)));
    LLVMBuildStore(cg->b, cg_i64(cg, 1), LLVMBuildStructGEP2(cg->b, cell, p, 0, ""));
    LLVMBuildStore(cg->b, code, LLVMBuildStructGEP2(cg->b, cell, p, 1, ""));
    LLVMBuildStore(cg->b, drop, LLVMBuildStructGEP2(cg->b, cell, p, 2, ""));
    for (int i = 0; i < n; i++)
        LLVMBuildStore(cg->b, caps[i], LLVMBuildStructGEP2(cg->b, cell, p, (unsigned)(3 + i), ""));
    return p;
}

static LLVMTypeRef closure_code_type(Cg *cg, Type *fty)
{
    fty = cg_norm(fty);
    LLVMTypeRef ps[2] = {cg->t_ptr, cg_type(cg, fty->args[0])};
    return LLVMFunctionType(cg_type(cg, fty->args[1]), ps, 2, 0);
}

LLVMValueRef cg_apply_closure(Cg *cg, Type *fty, LLVMValueRef clo, LLVMValueRef arg)
{
    LLVMValueRef cp = LLVMBuildGEP2(cg->b, cg->t_i8, clo, (LLVMValueRef[]){cg_i64(cg, 8)}, 1, "");
    LLVMValueRef code = LLVMBuildLoad2(cg->b, cg->t_ptr, cp, "code");
    LLVMValueRef args[2] = {clo, arg};
    return LLVMBuildCall2(cg->b, closure_code_type(cg, fty), code, args, 2, "");
}

/* fn x y => e is fn x => (fn y => e). */
static CLambda *curry(Cg *cg, CLambda *l)
{
    if (l->nparams <= 1)
        return l;
    CLambda *c = cg_map_get(cg, l);
    if (c)
        return c;
    CLambda *rest = NEW(CLambda);
    rest->params = l->params + 1;
    rest->nparams = l->nparams - 1;
    rest->body = l->body;
    rest->type = cg_norm(l->type)->args[1];
    rest->loc = l->loc;
    CExpr *e = NEW(CExpr);
    e->kind = CE_LAMBDA;
    e->type = rest->type;
    e->loc = l->loc;
    e->u.lambda = rest;
    CBlock *b = core_block_new();
    CVar *v = core_bind(b, "curried", e);
    b->result = core_atom_var(v);
    c = NEW(CLambda);
    c->params = l->params;
    c->nparams = 1;
    c->body = b;
    c->type = l->type;
    c->loc = l->loc;
    cg_map_put(cg, l, c);
    return c;
}

static LLVMMetadataRef di_subprogram(Cg *cg, const char *name, const char *linkage, Loc loc,
                                     bool local);

static LLVMValueRef emit_lambda(Cg *cg, CExpr *e)
{
    CLambda *l = curry(cg, e->u.lambda);
    int ncaps;
    CVar **caps = free_vars(cg, l, &ncaps);
    Type **ct = NEWN(Type *, ncaps + 1);
    LLVMValueRef *cv = NEWN(LLVMValueRef, ncaps + 1);
    for (int i = 0; i < ncaps; i++) {
        ct[i] = caps[i]->type;
        cv[i] = cg_atom(cg, core_atom_var(caps[i]));
        cg_retain(cg, ct[i], cv[i]);
    }
    LLVMTypeRef cell = closure_cell_type(cg, ct, ncaps);
    LLVMValueRef drop = closure_drop_fn(cg, cell, ct, ncaps);
    LLVMValueRef code = LLVMAddFunction(cg->mod, "dl.lambda", closure_code_type(cg, l->type));
    LLVMSetLinkage(code, LLVMInternalLinkage);
    CgPending *p = NEW(CgPending);
    p->lam = l;
    p->fn = code;
    p->caps = caps;
    p->ncaps = ncaps;
    p->cell = cell;
    p->next = cg->pending;
    cg->pending = p;
    return closure_new(cg, cell, code, drop, cv, ncaps);
}

static void emit_pending(Cg *cg, CgPending *p)
{
    cg->fn = p->fn;
    cg->entry = cg_block(cg, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);
    cg->sp = di_subprogram(cg, "lambda", LLVMGetValueName(p->fn), p->lam->loc, true);
    if (cg->sp)
        LLVMSetSubprogram(p->fn, cg->sp);
    set_loc(cg, p->lam->loc);
    LLVMValueRef cell = LLVMGetParam(p->fn, 0);
    for (int i = 0; i < p->ncaps; i++) {
        CVar *v = p->caps[i];
        cg_set_var(cg, v, LLVMBuildLoad2(cg->b, cg_type(cg, v->type),
                                      LLVMBuildStructGEP2(cg->b, p->cell, cell, (unsigned)(3 + i), ""),
                                      v->name ? v->name : ""));
    }
    cg_set_var(cg, p->lam->params[0], LLVMGetParam(p->fn, 1));
    cg->scope = NULL;
    LLVMValueRef r = cg_emit_block(cg, p->lam->body, NULL, 0);
    LLVMBuildRet(cg->b, r);
}

static LLVMValueRef emit_fun_decl(Cg *cg, CFun *f);

/* A top-level function as a value: an immortal cell whose code takes the
 * first argument; with more parameters each stage captures the arguments so
 * far in a new cell, the last stage calls the function. */
LLVMValueRef cg_fun_value(Cg *cg, CFun *f)
{
    const void *k = skey("funval:%p", (void *)f);
    LLVMValueRef g = cg_map_get(cg, k);
    if (g)
        return g;
    if (f->nparams == 0) { /* a constant def: its value */
        return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(emit_fun_decl(cg, f)), emit_fun_decl(cg, f),
                              NULL, 0, "");
    }
    int n = f->nparams;
    Type **pt = NEWN(Type *, n);
    for (int i = 0; i < n; i++)
        pt[i] = f->params[i]->type;
    /* the type of stage k's closure: pt[k] -> ... -> ret */
    Type **stage_ty = NEWN(Type *, n + 1);
    stage_ty[n] = f->ret;
    for (int i = n - 1; i >= 0; i--) {
        Type *t = mk_type(TY_FUNC);
        t->nargs = 2;
        t->args = NEWN(Type *, 2);
        t->args[0] = pt[i];
        t->args[1] = stage_ty[i + 1];
        stage_ty[i] = t;
    }
    LLVMValueRef *code = NEWN(LLVMValueRef, n);
    for (int s = 0; s < n; s++) {
        code[s] = LLVMAddFunction(cg->mod, arena_printf(dcc_arena, "dl.curry.%s.%d", f->name, s),
                                  closure_code_type(cg, stage_ty[s]));
        LLVMSetLinkage(code[s], LLVMInternalLinkage);
    }
    for (int s = 0; s < n; s++) {
        CgSaved sv;
        /* cg_helper_begin adds a function; reuse its bookkeeping on code[s] */
        sv.block = LLVMGetInsertBlock(cg->b);
        sv.fn = cg->fn;
        sv.entry = cg->entry;
        sv.sp = cg->sp;
        sv.dloc = cg->dib ? LLVMGetCurrentDebugLocation2(cg->b) : NULL;
        cg->fn = code[s];
        cg->sp = NULL;
        cg->entry = cg_block(cg, "entry");
        LLVMPositionBuilderAtEnd(cg->b, cg->entry);
        if (cg->dib)
            LLVMSetCurrentDebugLocation2(cg->b, NULL);
        LLVMValueRef cellp = LLVMGetParam(code[s], 0);
        LLVMValueRef arg = LLVMGetParam(code[s], 1);
        LLVMTypeRef cell_in = closure_cell_type(cg, pt, s);
        LLVMValueRef *vals = NEWN(LLVMValueRef, n);
        for (int i = 0; i < s; i++)
            vals[i] = LLVMBuildLoad2(cg->b, cg_type(cg, pt[i]),
                                     LLVMBuildStructGEP2(cg->b, cell_in, cellp, (unsigned)(3 + i), ""), "");
        vals[s] = arg;
        if (s == n - 1) {
            LLVMValueRef fn = emit_fun_decl(cg, f);
            LLVMBuildRet(cg->b, LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, vals, (unsigned)n, ""));
        } else {
            for (int i = 0; i <= s; i++)
                cg_retain(cg, pt[i], vals[i]);
            LLVMTypeRef cell_out = closure_cell_type(cg, pt, s + 1);
            LLVMValueRef drop = closure_drop_fn(cg, cell_out, pt, s + 1);
            LLVMBuildRet(cg->b, closure_new(cg, cell_out, code[s + 1], drop, vals, s + 1));
        }
        cg_helper_end(cg, &sv);
    }
    LLVMTypeRef cell0 = closure_cell_type(cg, NULL, 0);
    LLVMValueRef init = LLVMConstStructInContext(cg->ctx, (LLVMValueRef[]){cg_i64(cg, -1), code[0],
                                                                           LLVMConstNull(cg->t_ptr)}, 3, 0);
    g = LLVMAddGlobal(cg->mod, cell0, arena_printf(dcc_arena, "dl.funval.%s", f->name));
    LLVMSetInitializer(g, init);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetAlignment(g, 8);
    cg_map_put(cg, k, g);
    return g;
}

/* ========================================================================
 * scalar primitives
 * ======================================================================== */

static bool is_float_kind(Type *t)
{
    t = cg_norm(t);
    return t->kind == TY_FLOAT || t->kind == TY_F32;
}

/* b ^ e on integers by squaring; a negative exponent gives the truncated
 * quotient 1 / b^-e (so 0 unless b is 1 or -1; b = 0 is a division by zero). */
static LLVMValueRef ipow_fn(Cg *cg)
{
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "dl.ipow");
    if (f)
        return f;
    CgSaved s;
    LLVMTypeRef ps[3] = {cg->t_i64, cg->t_i64, cg->t_ptr};
    f = cg_helper_begin(cg, "dl.ipow", LLVMFunctionType(cg->t_i64, ps, 3, 0), &s);
    LLVMValueRef b = LLVMGetParam(f, 0), e = LLVMGetParam(f, 1), loc = LLVMGetParam(f, 2);
    LLVMBasicBlockRef neg = cg_block(cg, "neg"), pos = cg_block(cg, "pos"), zero = cg_block(cg, "zero"),
                      nz = cg_block(cg, "nonzero");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, e, cg_i64(cg, 0), ""), neg, pos);
    LLVMPositionBuilderAtEnd(cg->b, neg);
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, 0), ""), zero, nz);
    LLVMPositionBuilderAtEnd(cg->b, zero);
    cg_call_rt(cg, "dl_div_by_zero", &loc, 1);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, nz);
    LLVMValueRef one = LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, 1), "");
    LLVMValueRef mone = LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, -1), "");
    LLVMValueRef odd = LLVMBuildTrunc(cg->b, e, cg->t_i1, "");
    LLVMValueRef mres = LLVMBuildSelect(cg->b, odd, cg_i64(cg, -1), cg_i64(cg, 1), "");
    LLVMBuildRet(cg->b, LLVMBuildSelect(cg->b, one, cg_i64(cg, 1),
                                        LLVMBuildSelect(cg->b, mone, mres, cg_i64(cg, 0), ""), ""));
    LLVMPositionBuilderAtEnd(cg->b, pos);
    LLVMValueRef rs = cg_alloca(cg, cg->t_i64, "r"), bs = cg_alloca(cg, cg->t_i64, "b"),
                 es = cg_alloca(cg, cg->t_i64, "e");
    LLVMBuildStore(cg->b, cg_i64(cg, 1), rs);
    LLVMBuildStore(cg->b, b, bs);
    LLVMBuildStore(cg->b, e, es);
    LLVMBasicBlockRef head = cg_block(cg, "head"), body = cg_block(cg, "body"), done = cg_block(cg, "done");
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, head);
    LLVMValueRef ev = LLVMBuildLoad2(cg->b, cg->t_i64, es, "");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, ev, cg_i64(cg, 0), ""), body, done);
    LLVMPositionBuilderAtEnd(cg->b, body);
    LLVMValueRef rv = LLVMBuildLoad2(cg->b, cg->t_i64, rs, ""), bv = LLVMBuildLoad2(cg->b, cg->t_i64, bs, "");
    LLVMValueRef bit = LLVMBuildTrunc(cg->b, ev, cg->t_i1, "");
    LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, bit, LLVMBuildMul(cg->b, rv, bv, ""), rv, ""), rs);
    LLVMBuildStore(cg->b, LLVMBuildMul(cg->b, bv, bv, ""), bs);
    LLVMBuildStore(cg->b, LLVMBuildAShr(cg->b, ev, cg_i64(cg, 1), ""), es);
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, done);
    LLVMBuildRet(cg->b, LLVMBuildLoad2(cg->b, cg->t_i64, rs, ""));
    cg_helper_end(cg, &s);
    return f;
}

static LLVMValueRef libm1(Cg *cg, const char *name, bool f32, LLVMValueRef x)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%s%s", name, f32 ? "f" : "");
    return cg_call_rt(cg, buf, &x, 1);
}

static LLVMValueRef intrin1(Cg *cg, const char *name, LLVMValueRef x)
{
    LLVMTypeRef t = LLVMTypeOf(x);
    return cg_intrinsic(cg, name, &t, 1, &x, 1);
}

/* Integer arithmetic with an overflow check at -O0 ("wraps are errors in
 * debug builds"), plain wrapping otherwise. */
static LLVMValueRef int_arith(Cg *cg, Prim op, LLVMValueRef a, LLVMValueRef b, Loc loc)
{
    if (cg->opt->opt_level > 0) {
        switch (op) {
        case P_ADD: return LLVMBuildAdd(cg->b, a, b, "");
        case P_SUB: return LLVMBuildSub(cg->b, a, b, "");
        default: return LLVMBuildMul(cg->b, a, b, "");
        }
    }
    const char *in = op == P_ADD ? "llvm.sadd.with.overflow" : op == P_SUB ? "llvm.ssub.with.overflow"
                                                                          : "llvm.smul.with.overflow";
    LLVMTypeRef t = cg->t_i64;
    LLVMValueRef r = cg_intrinsic(cg, in, &t, 1, (LLVMValueRef[]){a, b}, 2);
    LLVMBasicBlockRef bad = cg_block(cg, "overflow"), ok = cg_block(cg, "ok");
    LLVMBuildCondBr(cg->b, LLVMBuildExtractValue(cg->b, r, 1, ""), bad, ok);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    const char *sp = op == P_ADD ? "+" : op == P_SUB ? "-" : "*";
    cg_call_rt(cg, "dl_overflow_error", (LLVMValueRef[]){cg_cstr(cg, sp), cg_srcloc(cg, loc)}, 2);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, ok);
    return LLVMBuildExtractValue(cg->b, r, 0, "");
}

/* Integer / and %: C semantics; a zero divisor is an error; INT64_MIN / -1
 * wraps (it would trap in hardware). */
static LLVMValueRef int_divmod(Cg *cg, bool div, LLVMValueRef a, LLVMValueRef b, Loc loc)
{
    LLVMBasicBlockRef bad = cg_block(cg, "divzero"), ok = cg_block(cg, "ok");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, 0), ""), bad, ok);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    LLVMValueRef l = cg_srcloc(cg, loc);
    cg_call_rt(cg, "dl_div_by_zero", &l, 1);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, ok);
    /* b == -1: a / -1 = -a (wrapping), a % -1 = 0 */
    LLVMValueRef m1 = LLVMBuildICmp(cg->b, LLVMIntEQ, b, cg_i64(cg, -1), "");
    LLVMValueRef safe_b = LLVMBuildSelect(cg->b, m1, cg_i64(cg, 1), b, "");
    if (div) {
        LLVMValueRef q = LLVMBuildSDiv(cg->b, a, safe_b, "");
        return LLVMBuildSelect(cg->b, m1, LLVMBuildSub(cg->b, cg_i64(cg, 0), a, ""), q, "");
    }
    LLVMValueRef r = LLVMBuildSRem(cg->b, a, safe_b, "");
    return LLVMBuildSelect(cg->b, m1, cg_i64(cg, 0), r, "");
}

static LLVMValueRef to_float_type(Cg *cg, LLVMValueRef x, Type *from, LLVMTypeRef to)
{
    from = cg_norm(from);
    switch (from->kind) {
    case TY_INT: return LLVMBuildSIToFP(cg->b, x, to, "");
    case TY_BOOL: return LLVMBuildUIToFP(cg->b, x, to, "");
    case TY_FLOAT: return to == cg->t_f64 ? x : LLVMBuildFPTrunc(cg->b, x, to, "");
    case TY_F32: return to == cg->t_f32 ? x : LLVMBuildFPExt(cg->b, x, to, "");
    default: return LLVMGetPoison(to);
    }
}

LLVMValueRef cg_scalar_prim(Cg *cg, Prim op, int64_t imm, Type *rt, Type **at, LLVMValueRef *v,
                            int n, Loc loc)
{
    (void)imm;
    Type *t0 = n > 0 ? cg_norm(at[0]) : NULL;
    bool fl = t0 && is_float_kind(t0);
    bool f32 = t0 && t0->kind == TY_F32;
    LLVMBuilderRef b = cg->b;
    switch (op) {
    case P_ADD:
    case P_SUB:
    case P_MUL:
        if (fl)
            return op == P_ADD ? LLVMBuildFAdd(b, v[0], v[1], "")
                 : op == P_SUB ? LLVMBuildFSub(b, v[0], v[1], "")
                               : LLVMBuildFMul(b, v[0], v[1], "");
        return int_arith(cg, op, v[0], v[1], loc);
    case P_DIV:
        return fl ? LLVMBuildFDiv(b, v[0], v[1], "") : int_divmod(cg, true, v[0], v[1], loc);
    case P_MOD:
        return fl ? LLVMBuildFRem(b, v[0], v[1], "") : int_divmod(cg, false, v[0], v[1], loc);
    case P_POW:
        if (fl) {
            LLVMTypeRef t = LLVMTypeOf(v[0]);
            return cg_intrinsic(cg, "llvm.pow", &t, 1, v, 2);
        }
        return cg_call(cg, ipow_fn(cg), (LLVMValueRef[]){v[0], v[1], cg_srcloc(cg, loc)}, 3);
    case P_NEG:
        return fl ? LLVMBuildFNeg(b, v[0], "") : LLVMBuildSub(b, cg_i64(cg, 0), v[0], "");
    case P_NOT:
        return LLVMBuildNot(b, v[0], "");
    case P_EQ:
    case P_NE:
    case P_LT:
    case P_LE:
    case P_GT:
    case P_GE: {
        if (fl) {
            static const LLVMRealPredicate rp[] = {LLVMRealOEQ, LLVMRealUNE, LLVMRealOLT,
                                                   LLVMRealOLE, LLVMRealOGT, LLVMRealOGE};
            return LLVMBuildFCmp(b, rp[op - P_EQ], v[0], v[1], "");
        }
        if (t0->kind == TY_INT || t0->kind == TY_BOOL || t0->kind == TY_UNIT) {
            bool u = t0->kind != TY_INT;
            static const LLVMIntPredicate sp[] = {LLVMIntEQ, LLVMIntNE, LLVMIntSLT, LLVMIntSLE,
                                                  LLVMIntSGT, LLVMIntSGE};
            static const LLVMIntPredicate up[] = {LLVMIntEQ, LLVMIntNE, LLVMIntULT, LLVMIntULE,
                                                  LLVMIntUGT, LLVMIntUGE};
            return LLVMBuildICmp(b, u ? up[op - P_EQ] : sp[op - P_EQ], v[0], v[1], "");
        }
        if (t0->kind == TY_STRING && op != P_EQ && op != P_NE) {
            LLVMValueRef c = cg_call_rt(cg, "strcmp", v, 2);
            static const LLVMIntPredicate sp[] = {LLVMIntEQ, LLVMIntNE, LLVMIntSLT, LLVMIntSLE,
                                                  LLVMIntSGT, LLVMIntSGE};
            return LLVMBuildICmp(b, sp[op - P_EQ], c, cg_i32(cg, 0), "");
        }
        LLVMValueRef eq = cg_equal(cg, t0, v[0], v[1]);
        if (op == P_EQ)
            return eq;
        if (op == P_NE)
            return LLVMBuildNot(b, eq, "");
        cg_error(cg, loc, "ordering comparison of structured values is not supported");
        return LLVMGetPoison(cg->t_i1);
    }
    case P_EXP: return intrin1(cg, "llvm.exp", v[0]);
    case P_LOG: return intrin1(cg, "llvm.log", v[0]);
    case P_SQRT: return intrin1(cg, "llvm.sqrt", v[0]);
    case P_SIN: return intrin1(cg, "llvm.sin", v[0]);
    case P_COS: return intrin1(cg, "llvm.cos", v[0]);
    case P_FLOOR: return fl ? intrin1(cg, "llvm.floor", v[0]) : v[0];
    case P_CEIL: return fl ? intrin1(cg, "llvm.ceil", v[0]) : v[0];
    case P_LOG1P: return libm1(cg, "log1p", f32, v[0]);
    case P_EXPM1: return libm1(cg, "expm1", f32, v[0]);
    case P_TAN: return libm1(cg, "tan", f32, v[0]);
    case P_TANH: return libm1(cg, "tanh", f32, v[0]);
    case P_ATAN2:
        return cg_call_rt(cg, f32 ? "atan2f" : "atan2", v, 2);
    case P_ABS:
        if (fl)
            return intrin1(cg, "llvm.fabs", v[0]);
        return cg_intrinsic(cg, "llvm.abs", &cg->t_i64, 1,
                            (LLVMValueRef[]){v[0], LLVMConstInt(cg->t_i1, 0, 0)}, 2);
    case P_SIGMOID: {
        /* 1 / (1 + exp(-x)) */
        LLVMTypeRef t = LLVMTypeOf(v[0]);
        LLVMValueRef e = intrin1(cg, "llvm.exp", LLVMBuildFNeg(b, v[0], ""));
        return LLVMBuildFDiv(b, LLVMConstReal(t, 1.0), LLVMBuildFAdd(b, LLVMConstReal(t, 1.0), e, ""), "");
    }
    case P_SOFTPLUS: {
        /* max(x, 0) + log1p(exp(-|x|)): no overflow for large x */
        LLVMTypeRef t = LLVMTypeOf(v[0]);
        LLVMValueRef pos = LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, v[0], LLVMConstReal(t, 0), ""),
                                           v[0], LLVMConstReal(t, 0), "");
        LLVMValueRef ax = intrin1(cg, "llvm.fabs", v[0]);
        LLVMValueRef l = libm1(cg, "log1p", f32, intrin1(cg, "llvm.exp", LLVMBuildFNeg(b, ax, "")));
        return LLVMBuildFAdd(b, pos, l, "");
    }
    case P_RELU:
        if (fl) {
            LLVMTypeRef t = LLVMTypeOf(v[0]);
            return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOGT, v[0], LLVMConstReal(t, 0), ""), v[0],
                                   LLVMConstReal(t, 0), "");
        }
        return LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGT, v[0], cg_i64(cg, 0), ""), v[0], cg_i64(cg, 0), "");
    case P_MIN:
    case P_MAX: {
        LLVMValueRef c;
        if (fl)
            c = LLVMBuildFCmp(b, op == P_MIN ? LLVMRealOLT : LLVMRealOGT, v[0], v[1], "");
        else if (t0->kind == TY_BOOL)
            c = LLVMBuildICmp(b, op == P_MIN ? LLVMIntULT : LLVMIntUGT, v[0], v[1], "");
        else
            c = LLVMBuildICmp(b, op == P_MIN ? LLVMIntSLT : LLVMIntSGT, v[0], v[1], "");
        /* NaN propagates (as NumPy's minimum/maximum) */
        if (fl) {
            LLVMValueRef nan = LLVMBuildFCmp(b, LLVMRealUNO, v[0], v[0], "");
            c = LLVMBuildOr(b, c, nan, "");
        }
        return LLVMBuildSelect(b, c, v[0], v[1], "");
    }
    case P_TO_FLOAT:
        return to_float_type(cg, v[0], t0, cg->t_f64);
    case P_TO_F32:
        return to_float_type(cg, v[0], t0, cg->t_f32);
    case P_TO_INT:
        if (fl) {
            /* NaN or outside the int64 range is an error (the conversion would be poison) */
            LLVMTypeRef t = LLVMTypeOf(v[0]);
            LLVMValueRef okl = LLVMBuildFCmp(b, LLVMRealOGE, v[0], LLVMConstReal(t, -9223372036854775808.0), "");
            LLVMValueRef okh = LLVMBuildFCmp(b, LLVMRealOLT, v[0], LLVMConstReal(t, 9223372036854775808.0), "");
            LLVMBasicBlockRef bad = cg_block(cg, "badint"), ok = cg_block(cg, "ok");
            LLVMBuildCondBr(b, LLVMBuildAnd(b, okl, okh, ""), ok, bad);
            LLVMPositionBuilderAtEnd(b, bad);
            LLVMValueRef d = f32 ? LLVMBuildFPExt(b, v[0], cg->t_f64, "") : v[0];
            cg_call_rt(cg, "dl_error", (LLVMValueRef[]){cg_srcloc(cg, loc),
                                                        cg_cstr(cg, "cannot convert %g to int"), d}, 3);
            LLVMBuildUnreachable(b);
            LLVMPositionBuilderAtEnd(b, ok);
            return LLVMBuildFPToSI(b, v[0], cg->t_i64, "");
        }
        if (t0->kind == TY_BOOL)
            return LLVMBuildZExt(b, v[0], cg->t_i64, "");
        return v[0];
    case P_SELECT:
        return LLVMBuildSelect(b, v[0], v[1], v[2], "");
    default:
        break;
    }
    (void)rt;
    fatal("internal error: codegen: primitive '%s' on scalars", core_prims[op].name);
}

/* ========================================================================
 * expressions
 * ======================================================================== */

LLVMValueRef cg_key_to_i64(Cg *cg, LLVMValueRef k)
{
    LLVMValueRef lo = LLVMBuildZExt(cg->b, LLVMBuildExtractValue(cg->b, k, 0, ""), cg->t_i64, "");
    LLVMValueRef hi = LLVMBuildZExt(cg->b, LLVMBuildExtractValue(cg->b, k, 1, ""), cg->t_i64, "");
    return LLVMBuildOr(cg->b, lo, LLVMBuildShl(cg->b, hi, cg_i64(cg, 32), ""), "");
}

static LLVMValueRef i64_to_key(Cg *cg, LLVMValueRef x)
{
    LLVMValueRef lo = LLVMBuildTrunc(cg->b, x, cg->t_i32, "");
    LLVMValueRef hi = LLVMBuildTrunc(cg->b, LLVMBuildLShr(cg->b, x, cg_i64(cg, 32), ""), cg->t_i32, "");
    LLVMValueRef k = LLVMGetUndef(cg->t_key);
    k = LLVMBuildInsertValue(cg->b, k, lo, 0, "");
    return LLVMBuildInsertValue(cg->b, k, hi, 1, "key");
}

/* progress label done total metrics: one bar at a time, begun on first use
 * and ended when done reaches total. */
static LLVMValueRef emit_progress(Cg *cg, CExpr *e)
{
    LLVMValueRef g = LLVMGetNamedGlobal(cg->mod, "dl.progress");
    if (!g) {
        g = LLVMAddGlobal(cg->mod, cg->t_ptr, "dl.progress");
        LLVMSetInitializer(g, LLVMConstNull(cg->t_ptr));
        LLVMSetLinkage(g, LLVMInternalLinkage);
        /* a module for C programs may be called from several threads */
        if (cg->opt->compile_only)
            LLVMSetThreadLocal(g, 1);
    }
    LLVMValueRef label = cg_atom(cg, e->args[0]), done = cg_atom(cg, e->args[1]);
    LLVMValueRef total = cg_atom(cg, e->args[2]), metrics = cg_atom(cg, e->args[3]);
    LLVMValueRef p = LLVMBuildLoad2(cg->b, cg->t_ptr, g, "");
    LLVMBasicBlockRef begin = cg_block(cg, "pbegin"), upd = cg_block(cg, "pupdate");
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMBuildCondBr(cg->b, LLVMBuildIsNull(cg->b, p, ""), begin, upd);
    LLVMPositionBuilderAtEnd(cg->b, begin);
    LLVMValueRef np = cg_call_rt(cg, "dl_progress_begin", (LLVMValueRef[]){label, total}, 2);
    LLVMBuildStore(cg->b, np, g);
    LLVMBuildBr(cg->b, upd);
    LLVMPositionBuilderAtEnd(cg->b, upd);
    LLVMValueRef ph = LLVMBuildPhi(cg->b, cg->t_ptr, "");
    LLVMAddIncoming(ph, (LLVMValueRef[]){p, np}, (LLVMBasicBlockRef[]){here, begin}, 2);
    cg_call_rt(cg, "dl_progress_update", (LLVMValueRef[]){ph, done, metrics}, 3);
    LLVMBasicBlockRef end = cg_block(cg, "pend"), out = cg_block(cg, "pout");
    LLVMValueRef fin = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, done, total, ""),
                                    LLVMBuildICmp(cg->b, LLVMIntSGT, total, cg_i64(cg, 0), ""), "");
    LLVMBuildCondBr(cg->b, fin, end, out);
    LLVMPositionBuilderAtEnd(cg->b, end);
    cg_call_rt(cg, "dl_progress_end", &ph, 1);
    LLVMBuildStore(cg->b, LLVMConstNull(cg->t_ptr), g);
    LLVMBuildBr(cg->b, out);
    LLVMPositionBuilderAtEnd(cg->b, out);
    return cg_unit(cg);
}

/* args (): the program's arguments after its name, as []string. */
static LLVMValueRef emit_args(Cg *cg, CExpr *e)
{
    LLVMValueRef argc = LLVMBuildSExt(cg->b, cg_call_rt(cg, "dl_argc", NULL, 0), cg->t_i64, "");
    LLVMValueRef n = LLVMBuildSub(cg->b, argc, cg_i64(cg, 1), "");
    n = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, n, cg_i64(cg, 0), ""), cg_i64(cg, 0), n, "");
    Type *st = mk_type(TY_STRING);
    LLVMValueRef arr = cg_arr_new(cg, st, 1, &n);
    LLVMValueRef data = cg_arr_data(cg, arr);
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), n);
    LLVMValueRef s = cg_call_rt(cg, "dl_argv", (LLVMValueRef[]){LLVMBuildTrunc(cg->b, LLVMBuildAdd(cg->b, i, cg_i64(cg, 1), ""), cg->t_i32, "")}, 1);
    LLVMValueRef len = cg_call_rt(cg, "strlen", &s, 1);
    LLVMValueRef ns = cg_string_new(cg, len);
    LLVMBuildMemCpy(cg->b, ns, 1, s, 1, len);
    cg_elem_store(cg, st, data, i, ns);
    cg_loop_end(cg, &l);
    (void)e;
    return arr;
}

static LLVMValueRef emit_str_concat(Cg *cg, CExpr *e)
{
    LLVMValueRef a = cg_atom(cg, e->args[0]), b = cg_atom(cg, e->args[1]);
    LLVMValueRef la = cg_call_rt(cg, "strlen", &a, 1), lb = cg_call_rt(cg, "strlen", &b, 1);
    LLVMValueRef s = cg_string_new(cg, LLVMBuildAdd(cg->b, la, lb, ""));
    LLVMBuildMemCpy(cg->b, s, 1, a, 1, la);
    LLVMBuildMemCpy(cg->b, LLVMBuildGEP2(cg->b, cg->t_i8, s, &la, 1, ""), 1, b, 1, lb);
    return s;
}

static LLVMValueRef emit_prim(Cg *cg, CExpr *e)
{
    Prim op = e->u.prim.op;
    if (cg_prim_is_array(e))
        return cg_array_prim(cg, e);
    switch (op) {
    case P_TUPLE:
    case P_RECORD: {
        LLVMValueRef v = LLVMGetUndef(cg_type(cg, e->type));
        for (int i = 0; i < e->nargs; i++)
            v = LLVMBuildInsertValue(cg->b, v, cg_take(cg, e->args[i]), (unsigned)i, "");
        return v;
    }
    case P_PROJ:
    case P_FIELD: {
        LLVMValueRef v = LLVMBuildExtractValue(cg->b, cg_atom(cg, e->args[0]), (unsigned)e->u.prim.imm, "");
        cg_retain(cg, e->type, v);
        return v;
    }
    case P_CON:
        return variant_make(cg, e->type, (int)e->u.prim.imm, e->nargs ? cg_take(cg, e->args[0]) : NULL);
    case P_TAG: {
        LLVMValueRef t = variant_tag(cg, cg_atom(cg, e->args[0]));
        if (cg_norm(e->type)->kind == TY_BOOL)
            return LLVMBuildTrunc(cg->b, t, cg->t_i1, "");
        return t;
    }
    case P_PAYLOAD: {
        LLVMValueRef v = variant_payload(cg, core_atom_type(e->args[0]), (int)e->u.prim.imm, cg_atom(cg, e->args[0]));
        cg_retain(cg, e->type, v);
        return v;
    }
    case P_PRINT:
    case P_PRINTLN:
        cg_print(cg, core_atom_type(e->args[0]), cg_atom(cg, e->args[0]), false);
        if (op == P_PRINTLN)
            cg_call_rt(cg, "dl_print_newline", NULL, 0);
        return cg_unit(cg);
    case P_SHOW:
        return cg_show(cg, core_atom_type(e->args[0]), cg_atom(cg, e->args[0]));
    case P_STR_CONCAT:
        return emit_str_concat(cg, e);
    case P_KEY: {
        LLVMValueRef s = cg_atom(cg, e->args[0]);
        return i64_to_key(cg, cg_call_rt(cg, "dl_key_from_seed", &s, 1));
    }
    case P_SPLIT: {
        LLVMTypeRef at = LLVMArrayType(cg->t_i64, 2);
        LLVMValueRef out = cg_alloca(cg, at, "keys");
        cg_call_rt(cg, "dl_split", (LLVMValueRef[]){cg_key_to_i64(cg, cg_atom(cg, e->args[0])), out}, 2);
        LLVMValueRef k0 = i64_to_key(cg, LLVMBuildLoad2(cg->b, cg->t_i64, out, ""));
        LLVMValueRef p1 = LLVMBuildGEP2(cg->b, cg->t_i64, out, (LLVMValueRef[]){cg_i64(cg, 1)}, 1, "");
        LLVMValueRef k1 = i64_to_key(cg, LLVMBuildLoad2(cg->b, cg->t_i64, p1, ""));
        LLVMValueRef t = LLVMGetUndef(cg_type(cg, e->type));
        t = LLVMBuildInsertValue(cg->b, t, k0, 0, "");
        return LLVMBuildInsertValue(cg->b, t, k1, 1, "");
    }
    case P_ERROR: {
        LLVMValueRef a[3] = {cg_srcloc(cg, e->loc), cg_cstr(cg, "%s"), cg_atom(cg, e->args[0])};
        cg_call_rt(cg, "dl_error", a, 3);
        return LLVMGetPoison(cg_type(cg, e->type));
    }
    case P_ARGS:
        return emit_args(cg, e);
    case P_PROGRESS:
        return emit_progress(cg, e);
    case P_CLOCK:
        return cg_call_rt(cg, "dl_clock", NULL, 0);
    case P_WRITE_TEXT:
        cg_call_rt(cg, "dl_write_text", (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_atom(cg, e->args[1]),
                                                         cg_srcloc(cg, e->loc)}, 3);
        return cg_unit(cg);
    default:
        break;
    }
    LLVMValueRef v[8];
    Type *at[8];
    if (e->nargs > 8)
        fatal("internal error: codegen: too many operands for '%s'", core_prims[op].name);
    for (int i = 0; i < e->nargs; i++) {
        v[i] = cg_atom(cg, e->args[i]);
        at[i] = core_atom_type(e->args[i]);
    }
    return cg_scalar_prim(cg, op, e->u.prim.imm, e->type, at, v, e->nargs, e->loc);
}

static LLVMValueRef emit_fun_decl(Cg *cg, CFun *f)
{
    const void *k = skey("fun:%p", (void *)f);
    LLVMValueRef fn = cg_map_get(cg, k);
    if (fn)
        return fn;
    LLVMTypeRef *ps = NEWN(LLVMTypeRef, f->nparams + 1);
    for (int i = 0; i < f->nparams; i++)
        ps[i] = cg_type(cg, f->params[i]->type);
    LLVMTypeRef ft = LLVMFunctionType(cg_type(cg, f->ret), ps, (unsigned)f->nparams, 0);
    fn = LLVMAddFunction(cg->mod, arena_printf(dcc_arena, "dl.%s", f->name), ft);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_map_put(cg, k, fn);
    return fn;
}

/* Applies the closure atom/value to args one at a time. fty is its type. */
static LLVMValueRef apply_chain(Cg *cg, Type *fty, LLVMValueRef clo, bool owned, CAtom **args, int n)
{
    for (int i = 0; i < n; i++) {
        fty = cg_norm(fty);
        LLVMValueRef r = cg_apply_closure(cg, fty, clo, cg_atom(cg, args[i]));
        if (owned)
            cg_release(cg, fty, clo);
        clo = r;
        owned = true;
        fty = fty->args[1];
    }
    return clo;
}

static LLVMValueRef emit_call(Cg *cg, CFun *f, CAtom **args, int n)
{
    if (f->nparams == 0) {
        LLVMValueRef fn = emit_fun_decl(cg, f);
        LLVMValueRef r = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, NULL, 0, "");
        return n ? apply_chain(cg, f->ret, r, true, args, n) : r;
    }
    if (n < f->nparams) {
        Type *fty = NULL, *t = f->ret; /* the curried type of f */
        for (int i = f->nparams - 1; i >= 0; i--) {
            fty = mk_type(TY_FUNC);
            fty->nargs = 2;
            fty->args = NEWN(Type *, 2);
            fty->args[0] = f->params[i]->type;
            fty->args[1] = t;
            t = fty;
        }
        return apply_chain(cg, fty, cg_fun_value(cg, f), false, args, n);
    }
    LLVMValueRef fn = emit_fun_decl(cg, f);
    LLVMValueRef *av = NEWN(LLVMValueRef, f->nparams + 1);
    for (int i = 0; i < f->nparams; i++)
        av[i] = cg_atom(cg, args[i]);
    LLVMValueRef r = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, av, (unsigned)f->nparams, "");
    if (n > f->nparams)
        r = apply_chain(cg, f->ret, r, true, args + f->nparams, n - f->nparams);
    return r;
}

static LLVMValueRef emit_if(Cg *cg, CExpr *e)
{
    LLVMValueRef c = cg_atom(cg, e->args[0]);
    LLVMBasicBlockRef tb = cg_block(cg, "then"), eb = cg_block(cg, "else"), jb = cg_block(cg, "endif");
    LLVMBuildCondBr(cg->b, c, tb, eb);
    LLVMPositionBuilderAtEnd(cg->b, tb);
    LLVMValueRef tv = cg_emit_block(cg, e->u.if_.then_, NULL, 0);
    LLVMBasicBlockRef tend = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, jb);
    LLVMPositionBuilderAtEnd(cg->b, eb);
    LLVMValueRef ev = cg_emit_block(cg, e->u.if_.else_, NULL, 0);
    LLVMBasicBlockRef eend = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, jb);
    LLVMPositionBuilderAtEnd(cg->b, jb);
    LLVMValueRef phi = LLVMBuildPhi(cg->b, cg_type(cg, e->type), "if");
    LLVMAddIncoming(phi, (LLVMValueRef[]){tv, ev}, (LLVMBasicBlockRef[]){tend, eend}, 2);
    return phi;
}

static LLVMValueRef emit_case(Cg *cg, CExpr *e)
{
    CAtom *sa = e->args[0];
    Type *st = cg_norm(core_atom_type(sa));
    LLVMValueRef sv = cg_atom(cg, sa);
    LLVMValueRef key;
    bool var = is_variant(st);
    if (var)
        key = variant_tag(cg, sv);
    else if (st->kind == TY_BOOL)
        key = LLVMBuildZExt(cg->b, sv, cg->t_i64, "");
    else if (st->kind == TY_INT)
        key = sv;
    else
        fatal("internal error: codegen: case on a value of type %s", type_to_string(st));
    int nalts = e->u.case_.nalts;
    LLVMBasicBlockRef join = cg_block(cg, "endcase");
    LLVMBasicBlockRef deflt = NULL;
    CAlt *dalt = NULL;
    for (int i = 0; i < nalts; i++)
        if (e->u.case_.alts[i].con < 0 && !dalt)
            dalt = &e->u.case_.alts[i];
    deflt = cg_block(cg, dalt ? "default" : "nomatch");
    LLVMValueRef sw = LLVMBuildSwitch(cg->b, key, deflt, (unsigned)nalts);
    LLVMValueRef *vals = NEWN(LLVMValueRef, nalts + 1);
    LLVMBasicBlockRef *bbs = NEWN(LLVMBasicBlockRef, nalts + 1);
    int nin = 0;
    for (int i = 0; i < nalts; i++) {
        CAlt *a = &e->u.case_.alts[i];
        LLVMBasicBlockRef bb;
        if (a->con < 0) {
            if (a != dalt)
                continue;
            bb = deflt;
        } else {
            /* the first alternative for a constructor wins */
            bool dup = false;
            for (int j = 0; j < i; j++)
                dup |= e->u.case_.alts[j].con == a->con;
            if (dup)
                continue;
            bb = cg_block(cg, "alt");
            LLVMAddCase(sw, cg_i64(cg, a->con), bb);
        }
        LLVMPositionBuilderAtEnd(cg->b, bb);
        if (a->payload) {
            LLVMValueRef pv = var && a->con >= 0 ? variant_payload(cg, st, a->con, sv) : sv;
            cg_set_var(cg, a->payload, pv);
        }
        vals[nin] = cg_emit_block(cg, a->body, NULL, 0);
        bbs[nin++] = LLVMGetInsertBlock(cg->b);
        LLVMBuildBr(cg->b, join);
    }
    if (!dalt) {
        LLVMPositionBuilderAtEnd(cg->b, deflt);
        LLVMBuildUnreachable(cg->b);
    }
    LLVMPositionBuilderAtEnd(cg->b, join);
    LLVMValueRef phi = LLVMBuildPhi(cg->b, cg_type(cg, e->type), "case");
    LLVMAddIncoming(phi, vals, bbs, (unsigned)nin);
    return phi;
}

static LLVMValueRef emit_loop(Cg *cg, CExpr *e)
{
    CVar *state = e->u.loop.state;
    LLVMTypeRef st = cg_type(cg, state->type);
    LLVMValueRef slot = cg_alloca(cg, st, "state");
    LLVMBuildStore(cg->b, cg_take(cg, e->args[0]), slot);
    bool isfor = e->u.loop.kind == LOOP_FOR;
    LLVMValueRef n = isfor ? cg_atom(cg, e->args[1]) : NULL;
    LLVMValueRef islot = NULL;
    if (isfor) {
        islot = cg_alloca(cg, cg->t_i64, "i");
        LLVMBuildStore(cg->b, cg_i64(cg, 0), islot);
    }
    LLVMBasicBlockRef head = cg_block(cg, "loop"), body = cg_block(cg, "body"), exit = cg_block(cg, "endloop");
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, head);
    LLVMValueRef sv = LLVMBuildLoad2(cg->b, st, slot, state->name ? state->name : "");
    LLVMValueRef c, iv = NULL;
    cg_set_var(cg, state, sv);
    if (isfor) {
        iv = LLVMBuildLoad2(cg->b, cg->t_i64, islot, "");
        c = LLVMBuildICmp(cg->b, LLVMIntSLT, iv, n, "");
    } else {
        c = cg_emit_block(cg, e->u.loop.cond, NULL, 0);
    }
    LLVMBuildCondBr(cg->b, c, body, exit);
    LLVMPositionBuilderAtEnd(cg->b, body);
    cg_set_var(cg, state, sv);
    if (isfor && e->u.loop.ivar)
        cg_set_var(cg, e->u.loop.ivar, iv);
    LLVMValueRef nv = cg_emit_block(cg, e->u.loop.body, &state, 1);
    LLVMBuildStore(cg->b, nv, slot);
    if (isfor)
        LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, iv, cg_i64(cg, 1), ""), islot);
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, exit);
    return LLVMBuildLoad2(cg->b, st, slot, "");
}

static LLVMValueRef emit_expr(Cg *cg, CExpr *e)
{
    switch (e->kind) {
    case CE_ATOM:
        return cg_take(cg, e->args[0]);
    case CE_PRIM:
        return emit_prim(cg, e);
    case CE_CALL:
        return emit_call(cg, e->u.fun, e->args, e->nargs);
    case CE_APPLY:
        if (e->args[0]->kind == CA_FUN)
            return emit_call(cg, e->args[0]->u.fun, e->args + 1, e->nargs - 1);
        return apply_chain(cg, core_atom_type(e->args[0]), cg_atom(cg, e->args[0]), false, e->args + 1, e->nargs - 1);
    case CE_LAMBDA:
        return emit_lambda(cg, e);
    case CE_IF:
        return emit_if(cg, e);
    case CE_CASE:
        return emit_case(cg, e);
    case CE_LOOP:
        return emit_loop(cg, e);
    case CE_SOAC:
        return cg_soac(cg, e);
    case CE_DERIV:
        error_at(e->loc, "internal error: a derivative reached code generation unexpanded");
        cg->nerrors++;
        return LLVMGetPoison(cg_type(cg, e->type));
    }
    return NULL;
}

/* ========================================================================
 * debug information (-g): DWARF line tables through the DIBuilder
 * ======================================================================== */

static LLVMMetadataRef di_file(Cg *cg, const char *name)
{
    if (!name)
        return cg->di_file;
    const void *k = skey("difile:%s", name);
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

static LLVMMetadataRef di_subprogram(Cg *cg, const char *name, const char *linkage, Loc loc, bool local)
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
static void set_loc(Cg *cg, Loc loc)
{
    if (!cg->dib || !cg->sp || loc.line <= 0)
        return;
    LLVMMetadataRef scope = cg->sp;
    if (loc.file) {
        LLVMMetadataRef f = di_file(cg, loc.file);
        LLVMMetadataRef spf = LLVMDIScopeGetFile(cg->sp);
        if (f != spf) {
            const void *k = skey("diblock:%p:%p", (void *)cg->sp, (void *)f);
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
 * functions, main, exports
 * ======================================================================== */

static void emit_pending_all(Cg *cg)
{
    while (cg->pending) {
        CgPending *p = cg->pending;
        cg->pending = p->next;
        emit_pending(cg, p);
    }
}

static void emit_fun(Cg *cg, CFun *f)
{
    LLVMValueRef fn = emit_fun_decl(cg, f);
    cg->fn = fn;
    cg->entry = cg_block(cg, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);
    cg->sp = di_subprogram(cg, f->src_name ? f->src_name : f->name, LLVMGetValueName(fn), f->loc, true);
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
    emit_pending_all(cg);
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
    LLVMValueRef dm = emit_fun_decl(cg, m);
    LLVMValueRef *args = NEWN(LLVMValueRef, m->nparams + 1);
    for (int i = 0; i < m->nparams; i++)
        args[i] = LLVMGetUndef(cg_type(cg, m->params[i]->type));
    LLVMValueRef r = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(dm), dm, args, (unsigned)m->nparams, "");
    cg_release(cg, m->ret, r);
    cg_call_rt(cg, "dl_flush", NULL, 0);
    LLVMBuildRet(cg->b, cg_i32(cg, 0));
}

/* ---- exports: the C view (LANGUAGE.md §3; cheader.c, docs/c-api.md) ----
 *
 * An export SYM is the external function
 *     int SYM(P1 a1, ..., Pn an, R *out)
 * that sets an error trap (_setjmp + dl_error_trap_push), calls the DL
 * function, pops the trap, writes the result to *out and returns 0; a
 * run-time error inside longjmps back to the trap and the wrapper returns 1
 * (dl_last_error has the message). Parameters as cview_kind says: scalars
 * by value, a key as an i64 (SysV passes dl_key so), strings copied into DL
 * strings (also inside tuples and records), tuples and records through a
 * const pointer, arrays, variants and closures as borrowed pointers; unit
 * parameters and a unit result are left out. Results are stored as their
 * LLVM values (the C structs of the header have the same layout). Each
 * function type that crosses the boundary gets a call wrapper of the same
 * shape (closure first), and each result holding references a release
 * function NAME_release(R *out). */

/* The jmp_buf of the trap: glibc's is 200 bytes on x86-64, 312 on AArch64. */
#define EXPORT_JMPBUF_SIZE 512

static LLVMValueRef export_rt(Cg *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *ps, unsigned n)
{
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (!f)
        f = LLVMAddFunction(cg->mod, name, LLVMFunctionType(ret, ps, n, 0));
    return f;
}

/* The C parameter type of a value of type t (NULL: left out). */
static LLVMTypeRef export_param_type(Cg *cg, Type *t)
{
    switch (cview_kind(t)) {
    case CVIEW_UNIT: return NULL;
    case CVIEW_STRUCT: case CVIEW_STRING: return cg->t_ptr;
    case CVIEW_KEY: return cg->t_i64;
    default: return cg_type(cg, t);
    }
}

static bool has_string(Type *t)
{
    t = cg_norm(t);
    if (t->kind == TY_STRING)
        return true;
    if (t->kind == TY_TUPLE) {
        for (int i = 0; i < t->nargs; i++)
            if (has_string(t->args[i]))
                return true;
    } else if (t->kind == TY_NAMED && t->decl->kind == TD_RECORD) {
        for (int i = 0; i < t->decl->nfields; i++)
            if (has_string(cg_record_field(t, i)))
                return true;
    }
    return false;
}

typedef struct ExportOwned {
    Type *t[64];
    LLVMValueRef v[64];
    int n;
} ExportOwned;

/* C strings have no reference count: each one (also inside tuples and
 * records) is copied into a DL string, released after the call. */
static LLVMValueRef export_import_strings(Cg *cg, Type *t, LLVMValueRef v, ExportOwned *own)
{
    t = cg_norm(t);
    if (!has_string(t))
        return v;
    if (t->kind == TY_STRING) {
        LLVMValueRef len = cg_call_rt(cg, "strlen", &v, 1);
        LLVMValueRef s = cg_string_new(cg, len);
        LLVMBuildMemCpy(cg->b, s, 1, v, 1, len);
        if (own->n < 64) {
            own->t[own->n] = t;
            own->v[own->n++] = s;
        }
        return s;
    }
    int n = t->kind == TY_TUPLE ? t->nargs : t->decl->nfields;
    for (int i = 0; i < n; i++) {
        Type *ct = t->kind == TY_TUPLE ? t->args[i] : cg_record_field(t, i);
        if (!has_string(ct))
            continue;
        LLVMValueRef c = LLVMBuildExtractValue(cg->b, v, (unsigned)i, "");
        v = LLVMBuildInsertValue(cg->b, v, export_import_strings(cg, ct, c, own), (unsigned)i, "");
    }
    return v;
}

/* The DL value of C parameter p of type t (borrowed, strings copied). */
static LLVMValueRef export_import(Cg *cg, Type *t, LLVMValueRef p, ExportOwned *own)
{
    switch (cview_kind(t)) {
    case CVIEW_STRUCT:
        return export_import_strings(cg, t, LLVMBuildLoad2(cg->b, cg_type(cg, t), p, ""), own);
    case CVIEW_KEY:
        return i64_to_key(cg, p);
    case CVIEW_STRING:
        return export_import_strings(cg, t, p, own);
    default:
        return p;
    }
}

typedef LLVMValueRef (*ExportCall)(Cg *cg, void *ctx, LLVMValueRef *args);

/* Emits `int name(params..., R *out)` around call(args): nskip leading
 * pointer parameters (a closure) are passed through to call in args[0..). */
static void export_wrapper(Cg *cg, const char *name, int nskip, Type **pts, int np, Type *rt,
                           ExportCall call, void *ctx)
{
    if (LLVMGetNamedFunction(cg->mod, name)) {
        error_at(loc_none, "two exported C functions are named '%s'", name);
        cg->nerrors++;
        return;
    }
    LLVMTypeRef *ps = NEWN(LLVMTypeRef, nskip + np + 2);
    unsigned n = 0;
    for (int i = 0; i < nskip; i++)
        ps[n++] = cg->t_ptr;
    for (int i = 0; i < np; i++) {
        LLVMTypeRef t = export_param_type(cg, pts[i]);
        if (t)
            ps[n++] = t;
    }
    bool has_out = cview_kind(rt) != CVIEW_UNIT;
    if (has_out)
        ps[n++] = cg->t_ptr;
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_i32, ps, n, 0));
    unsigned zext = LLVMGetEnumAttributeKindForName("zeroext", 7);
    cg->fn = fn;
    cg->sp = NULL;
    cg->entry = cg_block(cg, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);
    if (cg->dib)
        LLVMSetCurrentDebugLocation2(cg->b, NULL);

    /* arguments, before the trap: what is made here is released on both paths */
    ExportOwned own = {.n = 0};
    LLVMValueRef *args = NEWN(LLVMValueRef, nskip + np + 1);
    unsigned k = 0;
    for (int i = 0; i < nskip; i++)
        args[i] = LLVMGetParam(fn, k++);
    for (int i = 0; i < np; i++) {
        if (cview_kind(pts[i]) == CVIEW_UNIT) {
            args[nskip + i] = cg_unit(cg);
            continue;
        }
        if (cview_kind(pts[i]) == CVIEW_BOOL)
            LLVMAddAttributeAtIndex(fn, k + 1, LLVMCreateEnumAttribute(cg->ctx, zext, 0));
        args[nskip + i] = export_import(cg, pts[i], LLVMGetParam(fn, k++), &own);
    }
    LLVMValueRef out = has_out ? LLVMGetParam(fn, k) : NULL;

    LLVMTypeRef jbt = LLVMArrayType(cg->t_i8, EXPORT_JMPBUF_SIZE);
    LLVMValueRef jb = cg_alloca(cg, jbt, "trap");
    LLVMSetAlignment(jb, 16);
    LLVMValueRef sj = export_rt(cg, "_setjmp", cg->t_i32, &cg->t_ptr, 1);
    unsigned rt_twice = LLVMGetEnumAttributeKindForName("returns_twice", 13);
    LLVMAddAttributeAtIndex(sj, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, rt_twice, 0));
    LLVMValueRef st = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(sj), sj, &jb, 1, "");
    LLVMAddCallSiteAttribute(st, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, rt_twice, 0));
    LLVMBasicBlockRef body = cg_block(cg, "call"), fail = cg_block(cg, "error");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, st, cg_i32(cg, 0), ""), body, fail);

    LLVMPositionBuilderAtEnd(cg->b, body);
    LLVMValueRef push = export_rt(cg, "dl_error_trap_push", cg->t_void, &cg->t_ptr, 1);
    LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(push), push, &jb, 1, "");
    LLVMValueRef r = call(cg, ctx, args);
    LLVMValueRef pop = export_rt(cg, "dl_error_trap_pop", cg->t_void, NULL, 0);
    LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(pop), pop, NULL, 0, "");
    for (int i = 0; i < own.n; i++)
        cg_release(cg, own.t[i], own.v[i]);
    if (has_out) {
        LLVMValueRef v = r;
        if (cview_kind(rt) == CVIEW_BOOL)
            v = LLVMBuildZExt(cg->b, v, cg->t_i8, "");
        LLVMBuildStore(cg->b, v, out);
    } else {
        cg_release(cg, rt, r);
    }
    LLVMBuildRet(cg->b, cg_i32(cg, 0));

    /* the DL code raised an error; the runtime has popped the trap */
    LLVMPositionBuilderAtEnd(cg->b, fail);
    for (int i = 0; i < own.n; i++)
        cg_release(cg, own.t[i], own.v[i]);
    LLVMBuildRet(cg->b, cg_i32(cg, 1));
}

/* void NAME_release(R *out): gives back every reference the result holds. */
static void export_release_fn(Cg *cg, const char *sym, Type *rt)
{
    if (!cview_has_refs(rt))
        return;
    const char *name = cview_release_name(sym);
    if (LLVMGetNamedFunction(cg->mod, name)) {
        error_at(loc_none, "two exported C functions are named '%s'", name);
        cg->nerrors++;
        return;
    }
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, &cg->t_ptr, 1, 0));
    cg->fn = fn;
    cg->sp = NULL;
    cg->entry = cg_block(cg, "entry");
    LLVMPositionBuilderAtEnd(cg->b, cg->entry);
    if (cg->dib)
        LLVMSetCurrentDebugLocation2(cg->b, NULL);
    LLVMValueRef v = LLVMBuildLoad2(cg->b, cg_type(cg, rt), LLVMGetParam(fn, 0), "");
    cg_release(cg, rt, v);
    LLVMBuildRetVoid(cg->b);
}

static LLVMValueRef export_call_fun(Cg *cg, void *ctx, LLVMValueRef *args)
{
    CFun *f = ctx;
    LLVMValueRef dm = emit_fun_decl(cg, f);
    LLVMValueRef r = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(dm), dm, args, (unsigned)f->nparams, "");
    /* kept out of line: the trap's function stays small */
    unsigned noinl = LLVMGetEnumAttributeKindForName("noinline", 8);
    LLVMAddCallSiteAttribute(r, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, noinl, 0));
    return r;
}

static LLVMValueRef export_call_closure(Cg *cg, void *ctx, LLVMValueRef *args)
{
    return cg_apply_closure(cg, ctx, args[0], args[1]);
}

static void emit_export(Cg *cg, CFun *f)
{
    Type **pts = NEWN(Type *, f->nparams + 1);
    for (int i = 0; i < f->nparams; i++)
        pts[i] = f->params[i]->type;
    export_wrapper(cg, f->name, 0, pts, f->nparams, f->ret, export_call_fun, f);
    export_release_fn(cg, f->name, f->ret);
}

/* The call wrappers of the closure types in the exports' signatures. */
static void emit_export_closures(Cg *cg)
{
    Vec fts = {0};
    cview_closure_types(cg->prog, &fts);
    const char *m = cg->prog->module ? cg->prog->module : "main";
    for (int i = 0; i < fts.len; i++) {
        Type *ft = cg_norm(fts.data[i]);
        const char *name = cview_call_name(m, ft);
        export_wrapper(cg, name, 1, &ft->args[0], 1, ft->args[1], export_call_closure, ft);
        export_release_fn(cg, name, ft->args[1]);
    }
    vec_free(&fts);
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
}

/* Builds the module of a whole program. */
static bool cg_build(Cg *cg, bool with_main)
{
    CProgram *p = cg->prog;
    for (int i = 0; i < p->nfuns; i++)
        emit_fun_decl(cg, p->funs[i]);
    for (int i = 0; i < p->nfuns; i++)
        emit_fun(cg, p->funs[i]);
    if (with_main && p->main)
        emit_main(cg, p->main);
    for (int i = 0; i < p->nfuns; i++)
        if (p->funs[i]->is_export)
            emit_export(cg, p->funs[i]);
    emit_export_closures(cg);
    if (cg->dib)
        LLVMDIBuilderFinalize(cg->dib);
    if (cg->nerrors)
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
    if (o->emit == EMIT_PTX) {
        fprintf(stderr, "dcc: error: --emit=ptx is not handled by the host back end\n");
        return false;
    }
    Cg cg;
    if (!cg_init(&cg, p, o))
        return false;
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
