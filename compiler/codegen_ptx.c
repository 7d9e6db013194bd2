/* codegen_ptx.c — array loops as PTX kernels (--gpu, --target=nvptx,
 * --emit=ptx; docs/gpu.md).
 *
 * A fused elementwise loop (codegen_fuse.c: a tree of elementwise
 * primitives, maps and iotas over arrays of one shape) becomes one kernel
 * with a grid-stride loop; a reduction of such a tree (sum, prod, mean,
 * maximum, minimum, reduce with an associative lambda) becomes two: per
 * block partial results (a thread folds its elements, a warp combines
 * through shfl.sync.down, warps through shared memory), then one block
 * combining the partials. The host code runs
 *     if (n >= PTX_MIN && dl_gpu_available()) { launch } else { CPU loop }
 * with the arrays' device copies from dl_gpu_dev (runtime/gpu.c).
 *
 * The kernel body is the CPU loop's body: the element of the tree is
 * emitted by codegen_fuse.c into a function of the host module, which makes
 * every cache of Cg (runtime declarations, types, constants) stay in one
 * module. Host values the body uses (scalars bound outside the loop) become
 * kernel parameters. A body that calls anything but arithmetic intrinsics
 * and libm functions that libdevice provides (run-time errors, allocation,
 * closures that did not inline), or that needs a host pointer, is deleted
 * and that loop stays on the CPU. At the end of the module the kernels are
 * cloned into a module for nvptx64-nvidia-cuda (sm_80, PTX 7.5), libm calls
 * and the math intrinsics NVPTX cannot select become libdevice calls
 * (libdevice.10.bc linked, then internalised and optimised), and the PTX
 * text is a private string constant of the host module. */
#include "codegen.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Transforms/PassBuilder.h>

enum {
    PTX_MIN = 4096,      /* fewer elements run on the CPU (DL_GPU_MIN) */
    PTX_BLOCK = 256,     /* threads per block */
    PTX_PARTIALS = 1024, /* most blocks of a reduction's first pass */
};

typedef struct CgPtx {
    Vec kernels;  /* the kernel functions (host module until cg_ptx_finish) */
    Vec shared;   /* their shared-memory globals */
    Vec conds;    /* the launch conditions (false when no PTX was made) */
    LLVMValueRef text; /* placeholder for the PTX string */
    int serial;
    char *ptx;    /* the PTX module (malloc'd), after cg_ptx_finish */
} CgPtx;

static const char *libdevice_path(void)
{
    const char *p = getenv("DCC_LIBDEVICE");
    return p && *p ? p : "/usr/local/cuda/nvvm/libdevice/libdevice.10.bc";
}

static bool libdevice_found(void)
{
    static int found = -1;
    if (found < 0) {
        struct stat st;
        found = stat(libdevice_path(), &st) == 0 && S_ISREG(st.st_mode);
    }
    return found;
}

void cg_ptx_init(Cg *cg)
{
    const Options *o = cg->opt;
    if (!(o->gpu || o->emit == EMIT_PTX || (o->target && strcmp(o->target, "nvptx") == 0)))
        return;
    cg->ptx = NEW(CgPtx);
    memset(cg->ptx, 0, sizeof *cg->ptx);
}

void cg_ptx_dispose(Cg *cg)
{
    if (!cg->ptx)
        return;
    vec_free(&cg->ptx->kernels);
    vec_free(&cg->ptx->shared);
    vec_free(&cg->ptx->conds);
    free(cg->ptx->ptx);
    cg->ptx = NULL;
}

const char *cg_ptx_text(Cg *cg) { return cg->ptx && cg->ptx->ptx ? cg->ptx->ptx : ""; }

/* ------------------------------------------------------------ runtime API */

static LLVMValueRef rt_fun(Cg *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *ps, int n)
{
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (!f)
        f = LLVMAddFunction(cg->mod, name, LLVMFunctionType(ret, ps, (unsigned)n, 0));
    return f;
}

static LLVMValueRef rt_call(Cg *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *ps, LLVMValueRef *args, int n)
{
    LLVMValueRef f = rt_fun(cg, name, ret, ps, n);
    return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(f), f, args, (unsigned)n, "");
}

static LLVMValueRef gpu_dev(Cg *cg, LLVMValueRef a)
{
    return rt_call(cg, "dl_gpu_dev", cg->t_i64, &cg->t_ptr, &a, 1);
}

static void gpu_wrote(Cg *cg, LLVMValueRef a)
{
    rt_call(cg, "dl_gpu_wrote", cg->t_void, &cg->t_ptr, &a, 1);
}

static void gpu_host(Cg *cg, LLVMValueRef a)
{
    rt_call(cg, "dl_gpu_host", cg->t_void, &cg->t_ptr, &a, 1);
}

/* A new array (dl_array_new ...) has no device copy to fetch. */
static bool fresh_array(LLVMValueRef a)
{
    if (!LLVMIsACallInst(a))
        return false;
    LLVMValueRef f = LLVMGetCalledValue(a);
    if (!f || !LLVMIsAFunction(f))
        return false;
    const char *n = LLVMGetValueName(f);
    return strncmp(n, "dl_array_new", 12) == 0 || strcmp(n, "dl_array_zeros") == 0;
}

/* Before the CPU reads a's data: `if (dl_gpu_resident) dl_gpu_host(a)`. */
void cg_ptx_sync(Cg *cg, LLVMValueRef a)
{
    if (!cg->ptx || fresh_array(a))
        return;
    LLVMValueRef g = LLVMGetNamedGlobal(cg->mod, "dl_gpu_resident");
    if (!g)
        g = LLVMAddGlobal(cg->mod, cg->t_i64, "dl_gpu_resident");
    LLVMValueRef n = LLVMBuildLoad2(cg->b, cg->t_i64, g, "resident");
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(cg->b));
    LLVMBasicBlockRef get = LLVMAppendBasicBlockInContext(cg->ctx, fn, "gpu.fetch");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, fn, "gpu.fetched");
    LLVMValueRef br = LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, n, cg_i64(cg, 0), ""), get, done);
    /* rarely taken: arrays live on the device only in runs with a GPU */
    unsigned kind = LLVMGetMDKindIDInContext(cg->ctx, "prof", 4);
    LLVMMetadataRef w[3] = {LLVMMDStringInContext2(cg->ctx, "branch_weights", 14),
                            LLVMValueAsMetadata(cg_i32(cg, 1)), LLVMValueAsMetadata(cg_i32(cg, 100))};
    LLVMSetMetadata(br, kind, LLVMMetadataAsValue(cg->ctx, LLVMMDNodeInContext2(cg->ctx, w, 3)));
    LLVMPositionBuilderAtEnd(cg->b, get);
    gpu_host(cg, a);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
}

/* ------------------------------------------------------------ kernel bodies */

static LLVMValueRef sreg(Cg *cg, const char *name)
{
    return cg_intrinsic(cg, name, NULL, 0, NULL, 0);
}

/* The global index of the thread and the grid's size, as i64. */
static void thread_index(Cg *cg, LLVMValueRef *gid, LLVMValueRef *stride)
{
    LLVMValueRef tid = LLVMBuildZExt(cg->b, sreg(cg, "llvm.nvvm.read.ptx.sreg.tid.x"), cg->t_i64, "");
    LLVMValueRef ntid = LLVMBuildZExt(cg->b, sreg(cg, "llvm.nvvm.read.ptx.sreg.ntid.x"), cg->t_i64, "");
    LLVMValueRef ctaid = LLVMBuildZExt(cg->b, sreg(cg, "llvm.nvvm.read.ptx.sreg.ctaid.x"), cg->t_i64, "");
    LLVMValueRef nctaid = LLVMBuildZExt(cg->b, sreg(cg, "llvm.nvvm.read.ptx.sreg.nctaid.x"), cg->t_i64, "");
    *gid = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, ctaid, ntid, ""), tid, "gid");
    *stride = LLVMBuildMul(cg->b, nctaid, ntid, "stride");
}

/* Closes cg_loop_begin(cg, l, start, n) as a grid-stride loop: i += step. */
static void grid_loop_end(Cg *cg, CgLoop *l, LLVMValueRef step)
{
    LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, l->i, step, "i.next"), l->slot);
    LLVMBuildBr(cg->b, l->head);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

/* libm names and math intrinsics that become libdevice functions. */
static const char *const libm_names[] = {
    "exp", "exp2", "exp10", "expm1", "log", "log2", "log10", "log1p", "pow", "sin", "cos", "tan",
    "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf", "erfc",
    "lgamma", "tgamma", "cbrt", "hypot", "fmod", "remainder",
};

/* The libdevice function for a callee name, or NULL: llvm.exp.f64 -> __nv_exp,
 * llvm.exp.f32 and expf -> __nv_expf, tanh -> __nv_tanh. */
static const char *libdevice_name(const char *name)
{
    char base[64];
    bool f32 = false;
    if (strncmp(name, "llvm.", 5) == 0) {
        const char *dot = strchr(name + 5, '.');
        if (!dot || (strcmp(dot, ".f64") != 0 && strcmp(dot, ".f32") != 0) || (size_t)(dot - name - 5) >= sizeof base)
            return NULL;
        memcpy(base, name + 5, (size_t)(dot - name - 5));
        base[dot - name - 5] = 0;
        f32 = strcmp(dot, ".f32") == 0;
    } else {
        size_t n = strlen(name);
        if (n >= sizeof base)
            return NULL;
        strcpy(base, name);
        for (size_t k = 0; k < sizeof libm_names / sizeof *libm_names; k++)
            if (strcmp(base, libm_names[k]) == 0)
                goto found;
        if (n > 1 && base[n - 1] == 'f') {
            base[n - 1] = 0;
            f32 = true;
        } else {
            return NULL;
        }
    }
    for (size_t k = 0; k < sizeof libm_names / sizeof *libm_names; k++)
        if (strcmp(base, libm_names[k]) == 0)
            goto found;
    return NULL;
found:
    return arena_printf(dcc_arena, "__nv_%s%s", base, f32 ? "f" : "");
}

/* Intrinsics that the NVPTX back end selects. */
static bool intrinsic_ok(const char *name)
{
    static const char *const ok[] = {
        "llvm.nvvm.", "llvm.fabs.", "llvm.sqrt.", "llvm.floor.", "llvm.ceil.", "llvm.trunc.", "llvm.rint.",
        "llvm.nearbyint.", "llvm.round.", "llvm.roundeven.", "llvm.fma.", "llvm.fmuladd.", "llvm.minnum.",
        "llvm.maxnum.", "llvm.minimum.", "llvm.maximum.", "llvm.copysign.", "llvm.smax.", "llvm.smin.",
        "llvm.umax.", "llvm.umin.", "llvm.abs.", "llvm.ctpop.", "llvm.ctlz.", "llvm.cttz.",
        "llvm.lifetime.", "llvm.assume", "llvm.expect.", "llvm.dbg.",
    };
    for (size_t k = 0; k < sizeof ok / sizeof *ok; k++)
        if (strncmp(name, ok[k], strlen(ok[k])) == 0)
            return true;
    return false;
}

static bool scalar_lltype(LLVMTypeRef t)
{
    switch (LLVMGetTypeKind(t)) {
    case LLVMIntegerTypeKind: {
        unsigned w = LLVMGetIntTypeWidth(t);
        return w == 1 || w == 8 || w == 32 || w == 64;
    }
    case LLVMFloatTypeKind:
    case LLVMDoubleTypeKind:
        return true;
    default:
        return false;
    }
}

static LLVMValueRef value_function(LLVMValueRef v)
{
    if (LLVMIsAArgument(v))
        return LLVMGetParamParent(v);
    if (LLVMIsAInstruction(v))
        return LLVMGetBasicBlockParent(LLVMGetInstructionParent(v));
    return NULL;
}

/* A kernel under construction: its body is emitted into `tmp` (fixed
 * parameters only); host values it uses are collected, then the body moves
 * into the kernel, whose parameters are the fixed ones and those values. */
typedef struct Kern {
    LLVMValueRef tmp, fn;
    LLVMTypeRef fixed[320];
    int nfixed;
    LLVMValueRef host[64]; /* host values used by the body (in order) */
    int nhost;
    CgSaved saved;
    LLVMValueRef shared; /* the shared-memory array, or NULL */
} Kern;

static void kern_begin(Cg *cg, Kern *k)
{
    LLVMTypeRef fty = LLVMFunctionType(cg->t_void, k->fixed, (unsigned)k->nfixed, 0);
    const char *nm = arena_printf(dcc_arena, "dl_kernel_tmp_%d", cg->ptx->serial);
    k->tmp = cg_helper_begin(cg, nm, fty, &k->saved);
}

static int host_index(Kern *k, LLVMValueRef v)
{
    for (int i = 0; i < k->nhost; i++)
        if (k->host[i] == v)
            return i;
    if (k->nhost == 64)
        return -1;
    k->host[k->nhost] = v;
    return k->nhost++;
}

/* Why a body cannot run on the GPU (DCC_PTX_VERBOSE=1 prints it). */
static bool refuse(const char *why, LLVMValueRef v)
{
    static int verbose = -1;
    if (verbose < 0) {
        const char *e = getenv("DCC_PTX_VERBOSE");
        verbose = e && *e && strcmp(e, "0") != 0;
    }
    if (verbose) {
        const char *n = v ? LLVMGetValueName(v) : "";
        fprintf(stderr, "dcc: ptx: a loop stays on the CPU: %s%s%s\n", why, *n ? " " : "", n);
    }
    return false;
}

/* Checks the body; false (body deleted) when it cannot run on the GPU. */
static bool kern_check(Kern *k)
{
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(k->tmp); bb; bb = LLVMGetNextBasicBlock(bb))
        for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in)) {
            if (LLVMIsACallInst(in)) {
                LLVMValueRef f = LLVMGetCalledValue(in);
                if (!f || !LLVMIsAFunction(f))
                    return refuse("an indirect call", NULL);
                const char *n = LLVMGetValueName(f);
                if (libdevice_name(n)) {
                    if (!libdevice_found())
                        return refuse("no libdevice for", f);
                } else if (!intrinsic_ok(n)) {
                    return refuse("it calls", f);
                }
            } else if (LLVMIsAInvokeInst(in)) {
                return refuse("an invoke", NULL);
            }
            int nops = LLVMGetNumOperands(in);
            for (int i = 0; i < nops; i++) {
                LLVMValueRef op = LLVMGetOperand(in, (unsigned)i);
                if (!op || LLVMIsABasicBlock(op) || LLVMIsAFunction(op))
                    continue;
                if (LLVMIsAGlobalValue(op)) {
                    if (op != k->shared)
                        return refuse("it uses the global", op);
                    continue;
                }
                if (LLVMIsAConstantExpr(op))
                    return refuse("a constant expression", NULL);
                LLVMValueRef of = value_function(op);
                if (of && of != k->tmp) {
                    if (!scalar_lltype(LLVMTypeOf(op)))
                        return refuse("it uses a host value that is not a scalar", NULL);
                    if (host_index(k, op) < 0)
                        return refuse("too many host values", NULL);
                }
            }
        }
    return true;
}

/* Widened type of a host value as a kernel parameter (bool, byte: i32). */
static LLVMTypeRef param_type(Cg *cg, LLVMTypeRef t)
{
    if (LLVMGetTypeKind(t) == LLVMIntegerTypeKind && LLVMGetIntTypeWidth(t) < 32)
        return cg->t_i32;
    return t;
}

/* Ends the body: the kernel, or NULL when the body cannot run on the GPU. */
static LLVMValueRef kern_end(Cg *cg, Kern *k)
{
    cg_helper_end(cg, &k->saved);
    CgPtx *px = cg->ptx;
    if (!kern_check(k)) {
        LLVMDeleteFunction(k->tmp);
        if (k->shared)
            LLVMDeleteGlobal(k->shared);
        k->shared = NULL;
        return NULL;
    }
    LLVMTypeRef ps[384];
    int np = 0;
    for (int i = 0; i < k->nfixed; i++)
        ps[np++] = k->fixed[i];
    for (int i = 0; i < k->nhost; i++)
        ps[np++] = param_type(cg, LLVMTypeOf(k->host[i]));
    const char *name = arena_printf(dcc_arena, "dl_kernel_%d", px->serial++);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, ps, (unsigned)np, 0));
    LLVMSetFunctionCallConv(fn, LLVMPTXKernelCallConv);
    LLVMBasicBlockRef pos = LLVMAppendBasicBlockInContext(cg->ctx, fn, "kernel");
    LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(k->tmp);
    LLVMBasicBlockRef last = pos;
    while (bb) {
        LLVMBasicBlockRef next = LLVMGetNextBasicBlock(bb);
        LLVMMoveBasicBlockAfter(bb, last);
        last = bb;
        bb = next;
    }
    LLVMDeleteBasicBlock(pos);
    for (int i = 0; i < k->nfixed; i++)
        LLVMReplaceAllUsesWith(LLVMGetParam(k->tmp, (unsigned)i), LLVMGetParam(fn, (unsigned)i));
    /* host values: parameters (narrowed back at the kernel's entry) */
    LLVMValueRef local[64];
    LLVMBasicBlockRef entry = LLVMGetFirstBasicBlock(fn);
    LLVMBuilderRef b = LLVMCreateBuilderInContext(cg->ctx);
    LLVMPositionBuilderBefore(b, LLVMGetFirstInstruction(entry));
    for (int i = 0; i < k->nhost; i++) {
        LLVMValueRef p = LLVMGetParam(fn, (unsigned)(k->nfixed + i));
        LLVMTypeRef t = LLVMTypeOf(k->host[i]);
        local[i] = param_type(cg, t) == t ? p : LLVMBuildTrunc(b, p, t, "");
    }
    LLVMDisposeBuilder(b);
    for (LLVMBasicBlockRef bb2 = LLVMGetFirstBasicBlock(fn); bb2; bb2 = LLVMGetNextBasicBlock(bb2))
        for (LLVMValueRef in = LLVMGetFirstInstruction(bb2); in; in = LLVMGetNextInstruction(in)) {
            int nops = LLVMGetNumOperands(in);
            for (int i = 0; i < nops; i++) {
                LLVMValueRef op = LLVMGetOperand(in, (unsigned)i);
                if (!op || LLVMIsABasicBlock(op))
                    continue;
                LLVMValueRef of = value_function(op);
                if (of && of != fn)
                    for (int h = 0; h < k->nhost; h++)
                        if (k->host[h] == op && local[h] != in)
                            LLVMSetOperand(in, (unsigned)i, local[h]);
            }
        }
    LLVMDeleteFunction(k->tmp);
    vec_push(&px->kernels, fn);
    if (k->shared)
        vec_push(&px->shared, k->shared);
    k->fn = fn;
    return fn;
}

/* ------------------------------------------------------------ reductions */

/* The combining operation of a reduction, on two partial results. */
static LLVMValueRef combine(Cg *cg, CgPtxLoop *l, LLVMValueRef a, LLVMValueRef b)
{
    Type *rt = l->elem;
    if (l->kind == CG_PTX_FOLD) {
        CLambda *fn = l->fn;
        cg_set_var(cg, fn->params[0], a);
        cg_set_var(cg, fn->params[1], b);
        return cg_emit_block(cg, fn->body, NULL, 0);
    }
    Prim op = l->op == P_PROD ? P_MUL : l->op == P_MAXIMUM ? P_MAX : l->op == P_MINIMUM ? P_MIN : P_ADD;
    Type *tys[2] = {rt, rt};
    LLVMValueRef r = cg_scalar_prim(cg, op, 0, rt, tys, (LLVMValueRef[]){a, b}, 2, loc_none);
    TypeKind tk = cg_norm(rt)->kind;
    if ((op == P_MAX || op == P_MIN) && (tk == TY_FLOAT || tk == TY_F32)) /* NaN from either side stays */
        r = LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealUNO, b, b, ""), b, r, "");
    return r;
}

/* The register form of a value for shuffles and shared memory. */
static LLVMTypeRef reg_type(Cg *cg, LLVMTypeRef t)
{
    return LLVMGetTypeKind(t) == LLVMIntegerTypeKind && LLVMGetIntTypeWidth(t) < 32 ? cg->t_i32 : t;
}

static LLVMValueRef shfl_i32(Cg *cg, LLVMValueRef v, int delta)
{
    LLVMValueRef args[4] = {cg_i32(cg, -1), v, cg_i32(cg, delta), cg_i32(cg, 31)};
    return cg_intrinsic(cg, "llvm.nvvm.shfl.sync.down.i32", NULL, 0, args, 4);
}

/* __shfl_down_sync(0xffffffff, v, delta): 64-bit values as two halves. */
static LLVMValueRef shfl_down(Cg *cg, LLVMValueRef v, int delta)
{
    LLVMTypeRef t = LLVMTypeOf(v);
    switch (LLVMGetTypeKind(t)) {
    case LLVMFloatTypeKind: {
        LLVMValueRef args[4] = {cg_i32(cg, -1), v, cg_i32(cg, delta), cg_i32(cg, 31)};
        return cg_intrinsic(cg, "llvm.nvvm.shfl.sync.down.f32", NULL, 0, args, 4);
    }
    case LLVMDoubleTypeKind:
        return LLVMBuildBitCast(cg->b, shfl_down(cg, LLVMBuildBitCast(cg->b, v, cg->t_i64, ""), delta), t, "");
    default:
        break;
    }
    if (LLVMGetIntTypeWidth(t) == 64) {
        LLVMValueRef lo = shfl_i32(cg, LLVMBuildTrunc(cg->b, v, cg->t_i32, ""), delta);
        LLVMValueRef hi = shfl_i32(cg, LLVMBuildTrunc(cg->b, LLVMBuildLShr(cg->b, v, cg_i64(cg, 32), ""), cg->t_i32, ""), delta);
        return LLVMBuildOr(cg->b, LLVMBuildZExt(cg->b, lo, cg->t_i64, ""),
                           LLVMBuildShl(cg->b, LLVMBuildZExt(cg->b, hi, cg->t_i64, ""), cg_i64(cg, 32), ""), "");
    }
    return shfl_i32(cg, v, delta);
}

static LLVMValueRef to_reg(Cg *cg, LLVMValueRef v)
{
    LLVMTypeRef t = LLVMTypeOf(v);
    return reg_type(cg, t) == t ? v : LLVMBuildZExt(cg->b, v, cg->t_i32, "");
}

static LLVMValueRef from_reg(Cg *cg, LLVMValueRef v, LLVMTypeRef t)
{
    return LLVMTypeOf(v) == t ? v : LLVMBuildTrunc(cg->b, v, t, "");
}

/* The warp's values combined into lane 0's. */
static LLVMValueRef warp_reduce(Cg *cg, CgPtxLoop *l, LLVMValueRef v)
{
    LLVMTypeRef t = LLVMTypeOf(v);
    for (int d = 16; d >= 1; d /= 2)
        v = combine(cg, l, v, from_reg(cg, shfl_down(cg, to_reg(cg, v), d), t));
    return v;
}

/* The first source reading the same array as source s (y * y reads y
 * once per element: one pointer, so the loads are one). */
static int same_source(CgPtxLoop *l, int s)
{
    for (int t = 0; t < s; t++)
        if (l->arr[s] && l->arr[t] == l->arr[s])
            return t;
    return s;
}

/* Broadcasting (codegen_fuse.c): after the sources' data pointers a kernel
 * takes `flat` (i32), the result's dims and, per source, its stride along
 * each axis of the result (0 where it is stretched). */
static void shape_params(Cg *cg, CgPtxLoop *l, Kern *k)
{
    k->fixed[k->nfixed++] = cg->t_i32;
    for (int j = 0; j < l->rank; j++)
        k->fixed[k->nfixed++] = cg->t_i64;
    for (int s = 0; s < l->nsrc; s++)
        for (int j = 0; j < l->rank; j++)
            k->fixed[k->nfixed++] = cg->t_i64;
}

/* The sources' offsets for the result's flat index i: i itself when flat,
 * else from the index's coordinates and the strides. first: the index of
 * the `flat` parameter. */
static void source_offsets(Cg *cg, CgPtxLoop *l, LLVMValueRef fn, int first, LLVMValueRef i, LLVMValueRef *off)
{
    int R = l->rank;
    LLVMValueRef flat = LLVMGetParam(fn, (unsigned)first);
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef bc = cg_block(cg, "bcast"), join = cg_block(cg, "offsets");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, flat, cg_i32(cg, 0), ""), join, bc);
    LLVMPositionBuilderAtEnd(cg->b, bc);
    LLVMValueRef boff[32];
    for (int s = 0; s < l->nsrc; s++)
        boff[s] = cg_i64(cg, 0);
    LLVMValueRef rem = i;
    for (int j = R - 1; j >= 0; j--) {
        LLVMValueRef d = LLVMGetParam(fn, (unsigned)(first + 1 + j));
        LLVMValueRef idx = j > 0 ? LLVMBuildURem(cg->b, rem, d, "") : rem;
        if (j > 0)
            rem = LLVMBuildUDiv(cg->b, rem, d, "");
        for (int s = 0; s < l->nsrc; s++) {
            LLVMValueRef st = LLVMGetParam(fn, (unsigned)(first + 1 + R + s * R + j));
            boff[s] = LLVMBuildAdd(cg->b, boff[s], LLVMBuildMul(cg->b, idx, st, ""), "");
        }
    }
    LLVMBasicBlockRef bcend = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
    for (int s = 0; s < l->nsrc; s++) {
        int t = same_source(l, s); /* the same array: the same offset */
        if (t < s) {
            off[s] = off[t];
            continue;
        }
        off[s] = LLVMBuildPhi(cg->b, cg->t_i64, "off");
        LLVMAddIncoming(off[s], (LLVMValueRef[]){i, boff[s]}, (LLVMBasicBlockRef[]){here, bcend}, 2);
    }
}

/* Host side of shape_params: flat, dims, strides (as fused_loops makes them). */
static int shape_args(Cg *cg, CgPtxLoop *l, LLVMValueRef *args)
{
    int n = 0;
    args[n++] = LLVMBuildZExt(cg->b, l->flat, cg->t_i32, "");
    for (int j = 0; j < l->rank; j++)
        args[n++] = l->dims[j];
    for (int s = 0; s < l->nsrc; s++) {
        LLVMValueRef st[8];
        LLVMValueRef nat = cg_i64(cg, 1);
        for (int j = l->rank - 1; j >= 0; j--) {
            int ax = j - (l->rank - l->srank[s]);
            if (ax < 0) {
                st[j] = cg_i64(cg, 0);
                continue;
            }
            LLVMValueRef d = LLVMBuildLoad2(cg->b, cg->t_i64,
                                            LLVMBuildGEP2(cg->b, cg->t_i64, l->shape[s], (LLVMValueRef[]){cg_i64(cg, ax)}, 1, ""), "");
            st[j] = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, d, cg_i64(cg, 1), ""), cg_i64(cg, 0), nat, "");
            nat = LLVMBuildMul(cg->b, nat, d, "");
        }
        for (int j = 0; j < l->rank; j++)
            args[n++] = st[j];
    }
    return n;
}

/* Pass one (fin false): block b combines the tree's elements b, b+grid ...
 * into partial[b]. Pass two (fin): one block combines partial[0..n) into
 * partial[0]. Parameters: partial, n, init, then the sources' data. */
static LLVMValueRef reduce_kernel(Cg *cg, CgPtxLoop *l, bool fin, Kern *kp)
{
    LLVMTypeRef vt = cg_type(cg, l->elem);
    LLVMTypeRef rt = reg_type(cg, vt);
    Kern k = {0};
    k.fixed[k.nfixed++] = cg->t_ptr;
    k.fixed[k.nfixed++] = cg->t_i64;
    k.fixed[k.nfixed++] = rt;
    if (!fin) {
        for (int s = 0; s < l->nsrc; s++)
            k.fixed[k.nfixed++] = cg->t_ptr;
        shape_params(cg, l, &k);
    }
    k.shared = LLVMAddGlobalInAddressSpace(cg->mod, LLVMArrayType(rt, 32),
                                           arena_printf(dcc_arena, "dl_kernel_shared_%d", cg->ptx->serial), 3);
    LLVMSetLinkage(k.shared, LLVMInternalLinkage);
    LLVMSetInitializer(k.shared, LLVMGetUndef(LLVMArrayType(rt, 32)));
    LLVMSetAlignment(k.shared, 8);
    kern_begin(cg, &k);
    LLVMValueRef partial = LLVMGetParam(k.tmp, 0), n = LLVMGetParam(k.tmp, 1);
    LLVMValueRef init = from_reg(cg, LLVMGetParam(k.tmp, 2), vt);
    LLVMValueRef data[32] = {0};
    if (!fin)
        for (int s = 0; s < l->nsrc; s++)
            data[s] = LLVMGetParam(k.tmp, (unsigned)(3 + same_source(l, s)));
    LLVMValueRef acc = cg_alloca(cg, vt, "acc");
    LLVMBuildStore(cg->b, init, acc);
    LLVMValueRef gid, stride;
    thread_index(cg, &gid, &stride);
    CgLoop lp;
    LLVMValueRef i = cg_loop_begin(cg, &lp, gid, n);
    LLVMValueRef x;
    if (fin) {
        x = cg_elem_load(cg, l->elem, partial, i);
    } else {
        LLVMValueRef off[32];
        source_offsets(cg, l, k.tmp, 3 + l->nsrc, i, off);
        x = l->elem_at(cg, l->tree, data, off);
    }
    LLVMValueRef cur = LLVMBuildLoad2(cg->b, vt, acc, "");
    LLVMBuildStore(cg->b, combine(cg, l, cur, x), acc);
    grid_loop_end(cg, &lp, stride);
    /* the block: warps, then warp 0 over the warps' results */
    LLVMValueRef v = warp_reduce(cg, l, LLVMBuildLoad2(cg->b, vt, acc, ""));
    LLVMValueRef tid = sreg(cg, "llvm.nvvm.read.ptx.sreg.tid.x");
    LLVMValueRef lane = LLVMBuildAnd(cg->b, tid, cg_i32(cg, 31), "lane");
    LLVMValueRef warp = LLVMBuildLShr(cg->b, tid, cg_i32(cg, 5), "warp");
    LLVMValueRef nwarps = LLVMBuildLShr(cg->b, LLVMBuildAdd(cg->b, sreg(cg, "llvm.nvvm.read.ptx.sreg.ntid.x"), cg_i32(cg, 31), ""),
                                        cg_i32(cg, 5), "");
    LLVMBasicBlockRef put = cg_block(cg, "warp.put"), sync = cg_block(cg, "warp.sync");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, lane, cg_i32(cg, 0), ""), put, sync);
    LLVMPositionBuilderAtEnd(cg->b, put);
    LLVMTypeRef at = LLVMArrayType(rt, 32);
    LLVMBuildStore(cg->b, to_reg(cg, v), LLVMBuildGEP2(cg->b, at, k.shared, (LLVMValueRef[]){cg_i32(cg, 0), warp}, 2, ""));
    LLVMBuildBr(cg->b, sync);
    LLVMPositionBuilderAtEnd(cg->b, sync);
    cg_intrinsic(cg, "llvm.nvvm.barrier0", NULL, 0, NULL, 0);
    LLVMBasicBlockRef w0 = cg_block(cg, "warp0"), out = cg_block(cg, "done");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, warp, cg_i32(cg, 0), ""), w0, out);
    LLVMPositionBuilderAtEnd(cg->b, w0);
    LLVMValueRef has = LLVMBuildICmp(cg->b, LLVMIntULT, lane, nwarps, "");
    LLVMValueRef sv = LLVMBuildLoad2(cg->b, rt, LLVMBuildGEP2(cg->b, at, k.shared, (LLVMValueRef[]){cg_i32(cg, 0), lane}, 2, ""), "");
    LLVMValueRef w = LLVMBuildSelect(cg->b, has, from_reg(cg, sv, vt), init, "");
    w = warp_reduce(cg, l, w);
    LLVMBasicBlockRef wr = cg_block(cg, "write");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, lane, cg_i32(cg, 0), ""), wr, out);
    LLVMPositionBuilderAtEnd(cg->b, wr);
    LLVMValueRef slot = fin ? cg_i64(cg, 0) : LLVMBuildZExt(cg->b, sreg(cg, "llvm.nvvm.read.ptx.sreg.ctaid.x"), cg->t_i64, "");
    cg_elem_store(cg, l->elem, partial, slot, w);
    LLVMBuildBr(cg->b, out);
    LLVMPositionBuilderAtEnd(cg->b, out);
    LLVMBuildRetVoid(cg->b);
    LLVMValueRef f = kern_end(cg, &k);
    *kp = k;
    return f;
}

/* An elementwise kernel: out[i] = tree(i). Parameters: out, n, sources. */
static LLVMValueRef store_kernel(Cg *cg, CgPtxLoop *l, Kern *kp)
{
    Kern k = {0};
    k.fixed[k.nfixed++] = cg->t_ptr;
    k.fixed[k.nfixed++] = cg->t_i64;
    for (int s = 0; s < l->nsrc; s++)
        k.fixed[k.nfixed++] = cg->t_ptr;
    shape_params(cg, l, &k);
    kern_begin(cg, &k);
    LLVMValueRef out = LLVMGetParam(k.tmp, 0), n = LLVMGetParam(k.tmp, 1);
    LLVMValueRef data[32];
    for (int s = 0; s < l->nsrc; s++)
        data[s] = LLVMGetParam(k.tmp, (unsigned)(2 + same_source(l, s)));
    LLVMValueRef gid, stride;
    thread_index(cg, &gid, &stride);
    CgLoop lp;
    LLVMValueRef i = cg_loop_begin(cg, &lp, gid, n);
    LLVMValueRef off[32];
    source_offsets(cg, l, k.tmp, 2 + l->nsrc, i, off);
    cg_elem_store(cg, l->elem, out, i, l->elem_at(cg, l->tree, data, off));
    grid_loop_end(cg, &lp, stride);
    LLVMBuildRetVoid(cg->b);
    LLVMValueRef f = kern_end(cg, &k);
    *kp = k;
    return f;
}

/* ------------------------------------------------------------ host side */

/* The PTX text of the module (a placeholder until cg_ptx_finish). */
static LLVMValueRef ptx_text(Cg *cg)
{
    if (!cg->ptx->text) {
        cg->ptx->text = LLVMAddGlobal(cg->mod, cg->t_i8, "dl_ptx_placeholder");
        LLVMSetLinkage(cg->ptx->text, LLVMExternalLinkage);
    }
    return cg->ptx->text;
}

static void push_arg(Cg *cg, LLVMValueRef argv, int i, int n, LLVMValueRef v)
{
    LLVMValueRef slot = cg_alloca(cg, LLVMTypeOf(v), "karg");
    LLVMBuildStore(cg->b, v, slot);
    LLVMValueRef p = LLVMBuildGEP2(cg->b, LLVMArrayType(cg->t_ptr, (unsigned)n), argv,
                                   (LLVMValueRef[]){cg_i32(cg, 0), cg_i32(cg, i)}, 2, "");
    LLVMBuildStore(cg->b, slot, p);
}

static void do_launch(Cg *cg, Kern *k, LLVMValueRef grid, LLVMValueRef *fixed)
{
    int n = k->nfixed + k->nhost;
    LLVMValueRef argv = cg_alloca(cg, LLVMArrayType(cg->t_ptr, (unsigned)(n ? n : 1)), "kargs");
    for (int i = 0; i < k->nfixed; i++)
        push_arg(cg, argv, i, n, fixed[i]);
    for (int i = 0; i < k->nhost; i++) {
        LLVMValueRef v = k->host[i];
        LLVMTypeRef t = LLVMTypeOf(v);
        if (param_type(cg, t) != t)
            v = LLVMBuildZExt(cg->b, v, cg->t_i32, "");
        push_arg(cg, argv, k->nfixed + i, n, v);
    }
    const char *name = LLVMGetValueName(k->fn);
    LLVMTypeRef kps[2] = {cg->t_ptr, cg->t_ptr};
    LLVMValueRef h = rt_call(cg, "dl_gpu_kernel", cg->t_ptr, kps, (LLVMValueRef[]){ptx_text(cg), cg_cstr(cg, name)}, 2);
    LLVMTypeRef lps[5] = {cg->t_ptr, cg->t_i32, cg->t_i32, cg->t_i32, cg->t_ptr};
    rt_call(cg, "dl_gpu_launch", cg->t_void, lps,
            (LLVMValueRef[]){h, grid, cg_i32(cg, PTX_BLOCK), cg_i32(cg, 0), argv}, 5);
}

/* The loop of l as a kernel launch when the GPU can run it; the builder is
 * left in the CPU path (where the sources' host copies are made current). */
void cg_ptx_loop(Cg *cg, CgPtxLoop *l)
{
    CgPtx *px = cg->ptx;
    bool can = l->kind != CG_PTX_NONE && l->nsrc <= 32 && l->rank >= 1 && l->rank <= 8 && cg_is_scalar(l->elem);
    if (!can)
        refuse(l->kind == CG_PTX_NONE ? "fold (sequential)" : "not a loop of scalars", NULL);
    if (can && l->kind == CG_PTX_FOLD)
        can = l->fn->nparams == 2 && cg_is_scalar(l->fn->params[1]->type) &&
              cg_dtype(l->fn->params[0]->type) == cg_dtype(l->fn->params[1]->type);
    Kern k1 = {0}, k2 = {0};
    bool ok = false;
    if (can) {
        if (l->kind == CG_PTX_STORE) {
            ok = store_kernel(cg, l, &k1) != NULL;
        } else if (reduce_kernel(cg, l, false, &k1)) {
            ok = reduce_kernel(cg, l, true, &k2) != NULL;
            if (!ok) {
                vec_pop(&px->kernels);
                if (k1.shared) {
                    vec_pop(&px->shared);
                    LLVMDeleteGlobal(k1.shared);
                }
                LLVMDeleteFunction(k1.fn);
            }
        }
    }
    if (ok) {
        /* the size first: small loops do not look for a GPU */
        LLVMBasicBlockRef ask = cg_block(cg, "gpu.ask"), gpu = cg_block(cg, "gpu"), cpu = cg_block(cg, "cpu");
        LLVMValueRef big = LLVMBuildICmp(cg->b, LLVMIntSGE, l->n, cg_i64(cg, PTX_MIN), "");
        LLVMBuildCondBr(cg->b, big, ask, cpu);
        LLVMPositionBuilderAtEnd(cg->b, ask);
        LLVMValueRef av = rt_call(cg, "dl_gpu_available", cg->t_i32, NULL, NULL, 0);
        LLVMValueRef cond = LLVMBuildICmp(cg->b, LLVMIntNE, av, cg_i32(cg, 0), "gpu.on");
        vec_push(&px->conds, cond);
        LLVMBuildCondBr(cg->b, cond, gpu, cpu);
        LLVMPositionBuilderAtEnd(cg->b, gpu);
        LLVMTypeRef gps[2] = {cg->t_i64, cg->t_i32};
        LLVMValueRef grid = rt_call(cg, "dl_gpu_grid", cg->t_i32, gps, (LLVMValueRef[]){l->n, cg_i32(cg, PTX_BLOCK)}, 2);
        LLVMValueRef fixed[320];
        int nf = 0;
        bool fresh = l->out && fresh_array(l->out);
        if (l->kind == CG_PTX_STORE) {
            /* a fresh result is not uploaded; a reused operand is a source */
            LLVMValueRef od = fresh ? rt_call(cg, "dl_gpu_dev_out", cg->t_i64, &cg->t_ptr, &l->out, 1) : gpu_dev(cg, l->out);
            fixed[nf++] = LLVMBuildIntToPtr(cg->b, od, cg->t_ptr, "");
            fixed[nf++] = l->n;
            for (int s = 0; s < l->nsrc; s++)
                fixed[nf++] = l->arr[s] ? LLVMBuildIntToPtr(cg->b, gpu_dev(cg, l->arr[s]), cg->t_ptr, "")
                                        : LLVMConstNull(cg->t_ptr);
            nf += shape_args(cg, l, fixed + nf);
            do_launch(cg, &k1, grid, fixed);
            if (!fresh)
                gpu_wrote(cg, l->out);
        } else {
            LLVMTypeRef vt = cg_type(cg, l->elem);
            grid = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntUGT, grid, cg_i32(cg, PTX_PARTIALS), ""),
                                   cg_i32(cg, PTX_PARTIALS), grid, "");
            LLVMValueRef g64 = LLVMBuildZExt(cg->b, grid, cg->t_i64, "");
            LLVMValueRef part = cg_arr_new(cg, l->elem, 1, &g64);
            LLVMValueRef pdev = LLVMBuildIntToPtr(cg->b, rt_call(cg, "dl_gpu_dev_out", cg->t_i64, &cg->t_ptr, &part, 1),
                                                  cg->t_ptr, "");
            LLVMValueRef init = LLVMBuildLoad2(cg->b, vt, l->acc, "init");
            if (reg_type(cg, vt) != vt)
                init = LLVMBuildZExt(cg->b, init, cg->t_i32, "");
            fixed[nf++] = pdev;
            fixed[nf++] = l->n;
            fixed[nf++] = init;
            for (int s = 0; s < l->nsrc; s++)
                fixed[nf++] = l->arr[s] ? LLVMBuildIntToPtr(cg->b, gpu_dev(cg, l->arr[s]), cg->t_ptr, "")
                                        : LLVMConstNull(cg->t_ptr);
            nf += shape_args(cg, l, fixed + nf);
            do_launch(cg, &k1, grid, fixed);
            LLVMValueRef fixed2[3] = {pdev, g64, init};
            do_launch(cg, &k2, cg_i32(cg, 1), fixed2);
            gpu_host(cg, part);
            LLVMValueRef r = cg_elem_load(cg, l->elem, cg_arr_field(cg, part, CG_ARR_DATA), cg_i64(cg, 0));
            LLVMBuildStore(cg->b, r, l->acc);
            cg_call_rt(cg, "dl_array_release", &part, 1);
        }
        LLVMBuildBr(cg->b, l->done);
        LLVMPositionBuilderAtEnd(cg->b, cpu);
    }
    for (int s = 0; s < l->nsrc; s++)
        if (l->arr[s])
            cg_ptx_sync(cg, l->arr[s]);
}

/* ------------------------------------------------------------ the PTX module */

static bool nvptx_ready;

static LLVMTargetMachineRef nvptx_machine(void)
{
    if (!nvptx_ready) {
        LLVMInitializeNVPTXTargetInfo();
        LLVMInitializeNVPTXTarget();
        LLVMInitializeNVPTXTargetMC();
        LLVMInitializeNVPTXAsmPrinter();
        nvptx_ready = true;
    }
    LLVMTargetRef t;
    char *err = NULL;
    if (LLVMGetTargetFromTriple("nvptx64-nvidia-cuda", &t, &err)) {
        LLVMDisposeMessage(err);
        return NULL;
    }
    return LLVMCreateTargetMachine(t, "nvptx64-nvidia-cuda", "sm_80", "+ptx75", LLVMCodeGenLevelAggressive,
                                   LLVMRelocDefault, LLVMCodeModelDefault);
}

static bool is_kernel(CgPtx *px, LLVMValueRef f)
{
    const char *n = LLVMGetValueName(f);
    if (strncmp(n, "dl_kernel_", 10) != 0)
        return false;
    for (int i = 0; i < px->kernels.len; i++)
        if (strcmp(LLVMGetValueName(px->kernels.data[i]), n) == 0)
            return true;
    return false;
}

/* Deletes declarations nothing calls (the host module's, cloned). */
static void drop_unused_decls(LLVMModuleRef m)
{
    for (LLVMValueRef f = LLVMGetFirstFunction(m), next; f; f = next) {
        next = LLVMGetNextFunction(f);
        if (LLVMIsDeclaration(f) && !LLVMGetFirstUse(f))
            LLVMDeleteFunction(f);
    }
    for (LLVMValueRef g = LLVMGetFirstGlobal(m), next; g; g = next) {
        next = LLVMGetNextGlobal(g);
        if (!LLVMGetFirstUse(g))
            LLVMDeleteGlobal(g);
    }
}

static bool run_passes(LLVMModuleRef m, const char *pipeline, LLVMTargetMachineRef tm, char **why)
{
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMErrorRef err = LLVMRunPasses(m, pipeline, tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (err) {
        char *s = LLVMGetErrorMessage(err);
        *why = arena_strdup(dcc_arena, s);
        LLVMDisposeErrorMessage(s);
        return false;
    }
    return true;
}

/* The kernels of the host module as a PTX module (malloc'd text), or NULL
 * with *why set. */
static char *make_ptx(Cg *cg, char **why)
{
    CgPtx *px = cg->ptx;
    LLVMTargetMachineRef tm = nvptx_machine();
    if (!tm) {
        *why = "LLVM has no NVPTX target";
        return NULL;
    }
    LLVMModuleRef m = LLVMCloneModule(cg->mod);
    LLVMStripModuleDebugInfo(m);
    LLVMSetTarget(m, "nvptx64-nvidia-cuda");
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    char *dl = LLVMCopyStringRepOfTargetData(td);
    LLVMSetDataLayout(m, dl);
    LLVMDisposeMessage(dl);
    LLVMDisposeTargetData(td);
    /* only the kernels stay: everything else internal, then dead */
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
        if (LLVMIsDeclaration(f))
            continue;
        if (is_kernel(px, f)) {
            LLVMSetLinkage(f, LLVMExternalLinkage);
            LLVMRemoveStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, "target-cpu", 10);
            LLVMRemoveStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, "target-features", 15);
        } else {
            LLVMSetLinkage(f, LLVMInternalLinkage);
        }
    }
    for (LLVMValueRef g = LLVMGetFirstGlobal(m); g; g = LLVMGetNextGlobal(g))
        if (!LLVMIsDeclaration(g))
            LLVMSetLinkage(g, LLVMInternalLinkage);
    if (!run_passes(m, "globaldce", tm, why))
        goto fail;
    drop_unused_decls(m);
    /* math: libdevice functions of the same type */
    bool linked = false;
    for (LLVMValueRef f = LLVMGetFirstFunction(m), next; f; f = next) {
        next = LLVMGetNextFunction(f);
        if (!LLVMIsDeclaration(f))
            continue;
        const char *nv = libdevice_name(LLVMGetValueName(f));
        if (!nv)
            continue;
        LLVMValueRef g = LLVMGetNamedFunction(m, nv);
        if (!g)
            g = LLVMAddFunction(m, nv, LLVMGlobalGetValueType(f));
        LLVMReplaceAllUsesWith(f, g);
        LLVMDeleteFunction(f);
        if (!linked) {
            LLVMMemoryBufferRef buf;
            char *msg = NULL;
            if (LLVMCreateMemoryBufferWithContentsOfFile(libdevice_path(), &buf, &msg)) {
                *why = arena_printf(dcc_arena, "cannot read %s: %s", libdevice_path(), msg);
                LLVMDisposeMessage(msg);
                goto fail;
            }
            LLVMModuleRef lib;
            bool bad = LLVMParseBitcodeInContext2(cg->ctx, buf, &lib);
            LLVMDisposeMemoryBuffer(buf);
            if (bad) {
                *why = arena_printf(dcc_arena, "cannot parse %s", libdevice_path());
                goto fail;
            }
            LLVMSetTarget(lib, LLVMGetTarget(m));
            LLVMSetDataLayout(lib, LLVMGetDataLayoutStr(m));
            if (LLVMLinkModules2(m, lib)) {
                *why = "cannot link libdevice";
                goto fail;
            }
            linked = true;
            next = LLVMGetFirstFunction(m); /* the list changed: start again */
        }
    }
    if (linked) {
        for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
            if (!LLVMIsDeclaration(f) && !is_kernel(px, f))
                LLVMSetLinkage(f, LLVMInternalLinkage);
        for (LLVMValueRef g = LLVMGetFirstGlobal(m); g; g = LLVMGetNextGlobal(g))
            if (!LLVMIsDeclaration(g))
                LLVMSetLinkage(g, LLVMInternalLinkage);
    }
    /* NVVMReflect (libdevice's __nvvm_reflect) runs at the start of the
     * NVPTX target's pipelines */
    if (!run_passes(m, "default<O3>", tm, why))
        goto fail;
    drop_unused_decls(m);
    char *msg = NULL;
    if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
        *why = arena_printf(dcc_arena, "invalid kernel IR: %s", msg);
        if (getenv("DCC_DUMP_BAD_IR"))
            LLVMDumpModule(m);
        LLVMDisposeMessage(msg);
        goto fail;
    }
    if (msg)
        LLVMDisposeMessage(msg);
    if (getenv("DCC_DUMP_PTX_IR"))
        LLVMDumpModule(m);
    LLVMMemoryBufferRef out;
    char *err = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMAssemblyFile, &err, &out)) {
        *why = arena_printf(dcc_arena, "NVPTX code generation failed: %s", err);
        LLVMDisposeMessage(err);
        goto fail;
    }
    size_t n = LLVMGetBufferSize(out);
    char *text = xmalloc(n + 1);
    memcpy(text, LLVMGetBufferStart(out), n);
    text[n] = 0;
    LLVMDisposeMemoryBuffer(out);
    LLVMDisposeModule(m);
    LLVMDisposeTargetMachine(tm);
    return text;
fail:
    LLVMDisposeModule(m);
    LLVMDisposeTargetMachine(tm);
    return NULL;
}

/* The end of the host module: the PTX module from its kernels, the kernels
 * out of it, the PTX text a private constant. When no PTX can be made the
 * program runs on the CPU (warning). */
bool cg_ptx_finish(Cg *cg)
{
    CgPtx *px = cg->ptx;
    if (!px)
        return true;
    char *why = NULL;
    char *text = make_ptx(cg, &why);
    if (!text) {
        warning_at(loc_none, "no PTX for the GPU kernels (%s); the array loops run on the CPU", why);
        for (int i = 0; i < px->conds.len; i++)
            LLVMReplaceAllUsesWith(px->conds.data[i], LLVMConstInt(cg->t_i1, 0, 0));
        text = xmalloc(1);
        text[0] = 0;
    }
    px->ptx = text;
    for (int i = 0; i < px->kernels.len; i++)
        LLVMDeleteFunction(px->kernels.data[i]);
    for (int i = 0; i < px->shared.len; i++)
        LLVMDeleteGlobal(px->shared.data[i]);
    if (px->text) {
        LLVMValueRef init = LLVMConstStringInContext(cg->ctx, text, (unsigned)strlen(text), 0);
        LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), "dl_ptx");
        LLVMSetInitializer(g, init);
        LLVMSetGlobalConstant(g, 1);
        LLVMSetLinkage(g, LLVMPrivateLinkage);
        LLVMSetAlignment(g, 16);
        LLVMReplaceAllUsesWith(px->text, g);
        LLVMDeleteGlobal(px->text);
        px->text = NULL;
    }
    return true;
}
