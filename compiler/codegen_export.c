/* codegen_export.c — exports: the C view (LANGUAGE.md §3; cheader.c,
 * docs/c-api.md).
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
#include "codegen.h"

#include <string.h>

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
        return cg_i64_to_key(cg, p);
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
    LLVMValueRef dm = cg_fun_decl(cg, f);
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

void cg_emit_export(Cg *cg, CFun *f)
{
    Type **pts = NEWN(Type *, f->nparams + 1);
    for (int i = 0; i < f->nparams; i++)
        pts[i] = f->params[i]->type;
    export_wrapper(cg, f->name, 0, pts, f->nparams, f->ret, export_call_fun, f);
    export_release_fn(cg, f->name, f->ret);
}

/* The call wrappers of the closure types in the exports' signatures. */
void cg_emit_export_closures(Cg *cg)
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
