/* codegen.h — private interface between the files of the LLVM back end
 * (codegen*.c, the only files of dcc that include llvm-c/). The value
 * representation is described at the top of codegen.c, the ownership rules
 * at the top of codegen_mem.c. */
#ifndef DCC_CODEGEN_H
#define DCC_CODEGEN_H

#include "dcc.h"

#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>

/* What codegen knows about one ground type (cached per canonical key). */
typedef struct CgType {
    const char *key;      /* interned canonical spelling */
    Type *type;           /* a normalised representative */
    LLVMTypeRef ll;       /* value type */
    bool rc;              /* holds references that need retain/release */
    LLVMValueRef release; /* void (T) helper, or NULL until made */
    LLVMValueRef retain;  /* void (T) helper */
    LLVMValueRef print;   /* void (T, i32 nested) helper */
    LLVMValueRef eq;      /* i1 (T, T) helper */
    LLVMValueRef *nullary; /* variant: immortal cells of nullary constructors */
} CgType;

/* A top-level function or an anonymous function being compiled. */
typedef struct CgFun {
    LLVMValueRef fn;
    LLVMTypeRef fty;
    LLVMMetadataRef sp; /* debug info subprogram (NULL without -g) */
} CgFun;

typedef struct CgPending CgPending;

/* The state of one block being emitted: the variables it owns. */
typedef struct CgScope {
    struct CgScope *up;
    int serial;
    int cur;          /* index of the binding being emitted */
    CExpr *cur_expr;  /* the expression of that binding */
} CgScope;

enum { CG_NONE = 0, CG_OWNED, CG_GONE }; /* Cg.vstate */

typedef struct Cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTargetMachineRef tm;
    LLVMTargetDataRef td;
    const Options *opt;
    CProgram *prog;

    LLVMTypeRef t_void, t_i1, t_i8, t_i32, t_i64, t_f32, t_f64, t_ptr, t_key;
    LLVMTypeRef t_array;  /* struct dl_array */
    LLVMTypeRef t_srcloc; /* struct dl_srcloc */

    /* per variable (indexed by CVar.id) */
    LLVMValueRef *val;
    int *owner, *last, *mark, *ucount, *direct;
    CExpr **defer; /* producers computed inside their consumer's loop */
    unsigned char *stored; /* deferred producers also stored into an array of their own */
    unsigned char *vstate;
    int stamp;
    int nvar;
    int serial;
    CgScope *scope;

    /* current function */
    LLVMValueRef fn;
    LLVMBasicBlockRef entry; /* allocas go here */
    LLVMMetadataRef sp;      /* its subprogram */

    CgFun *funs;          /* parallel to prog->funs */
    CgPending *pending;   /* lambdas whose bodies are still to emit */

    /* caches (open hashing on interned keys) */
    void **map_keys, **map_vals;
    int map_cap, map_len;

    /* type-based alias analysis: array headers never alias elements */
    LLVMValueRef tbaa[6]; /* CG_TBAA_* */
    unsigned tbaa_kind;

    /* debug info */
    LLVMDIBuilderRef dib;
    LLVMMetadataRef di_cu, di_file;
    int nerrors;

    struct CgPtx *ptx; /* GPU kernels (codegen_ptx.c); NULL without --gpu/--target=nvptx */
} Cg;

enum { CG_TBAA_HEADER, CG_TBAA_F64, CG_TBAA_F32, CG_TBAA_I64, CG_TBAA_BOOL, CG_TBAA_CELL };
/* Tags a load or store with a TBAA access type (returns inst). */
LLVMValueRef cg_tbaa(Cg *cg, LLVMValueRef inst, int kind);

/* ---- codegen.c: types, helpers, debug information */
Type *cg_norm(Type *t);                 /* resolves links, flattens [][]a */
Type *cg_mk_type(TypeKind k);           /* a new type node of kind k */
CgType *cg_tinfo(Cg *cg, Type *t);
LLVMTypeRef cg_type(Cg *cg, Type *t);
bool cg_is_rc(Cg *cg, Type *t);
bool cg_is_variant(Type *t);
/* Field types of a record, constructor argument types of a variant (NULL for
 * nullary), instantiated at the type's arguments. */
Type *cg_record_field(Type *t, int i);
Type *cg_con_arg(Type *t, int con);
/* Element type and rank of an array type. */
Type *cg_elem(Type *t);
int cg_rank(Type *t);
int64_t cg_sizeof(Cg *cg, LLVMTypeRef t);

void *cg_map_get(Cg *cg, const void *key);
void cg_map_put(Cg *cg, const void *key, void *val);
/* A map key built from a string: interned, so equal strings are one key. */
const void *cg_skey(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

LLVMValueRef cg_rt(Cg *cg, const char *name, LLVMTypeRef *fty); /* runtime function */
LLVMValueRef cg_call_rt(Cg *cg, const char *name, LLVMValueRef *args, int n);
LLVMValueRef cg_srcloc(Cg *cg, Loc loc);  /* pointer to a constant dl_srcloc */
LLVMValueRef cg_cstr(Cg *cg, const char *s); /* pointer to a private C string */
LLVMValueRef cg_const_string(Cg *cg, const char *s); /* a DL string constant */
LLVMValueRef cg_i64(Cg *cg, int64_t v);
LLVMValueRef cg_i32(Cg *cg, int32_t v);
LLVMValueRef cg_alloca(Cg *cg, LLVMTypeRef t, const char *name);
LLVMValueRef cg_unit(Cg *cg);
LLVMValueRef cg_malloc(Cg *cg, LLVMValueRef size);
void cg_free(Cg *cg, LLVMValueRef p);
LLVMBasicBlockRef cg_block(Cg *cg, const char *name);
LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef *types, int ntypes,
                          LLVMValueRef *args, int nargs);
LLVMValueRef cg_call(Cg *cg, LLVMValueRef fn, LLVMValueRef *args, int n);

/* Helper functions are generated with the builder saved and restored. */
typedef struct CgSaved {
    LLVMBasicBlockRef block;
    LLVMValueRef fn;
    LLVMBasicBlockRef entry;
    LLVMMetadataRef sp;
    LLVMMetadataRef dloc;
} CgSaved;
LLVMValueRef cg_helper_begin(Cg *cg, const char *name, LLVMTypeRef fty, CgSaved *saved);
void cg_helper_end(Cg *cg, CgSaved *saved);

/* Refcounted strings: a pointer to the characters, the count 8 bytes before. */
LLVMValueRef cg_string_new(Cg *cg, LLVMValueRef len); /* uninitialised, NUL at len */
/* Loops over 0..n-1 with i64 counter; cg_loop_end closes the loop. */
typedef struct CgLoop {
    LLVMBasicBlockRef head, body, exit;
    LLVMValueRef slot, i;
} CgLoop;
LLVMValueRef cg_loop_begin(Cg *cg, CgLoop *l, LLVMValueRef lo, LLVMValueRef n);
void cg_loop_end(Cg *cg, CgLoop *l);
void cg_error(Cg *cg, Loc loc, const char *msg); /* raises a run-time error */

/* Debug information (-g; no-ops without): the subprogram of a function, the
 * source position of the code emitted next. */
LLVMMetadataRef cg_di_subprogram(Cg *cg, const char *name, const char *linkage, Loc loc, bool local);
void cg_set_loc(Cg *cg, Loc loc);

/* ---- codegen_mem.c: reference counts, uses, blocks and ownership */
void cg_retain(Cg *cg, Type *t, LLVMValueRef v);
void cg_release(Cg *cg, Type *t, LLVMValueRef v);
int cg_uses_in(CExpr *e, CVar *v); /* occurrences of v in e, nested blocks too */
/* Free variables of a lambda, in order of first use. */
CVar **cg_free_vars(Cg *cg, CLambda *l, int *n);
/* Binds a variable to a (borrowed) value. */
void cg_set_var(Cg *cg, CVar *v, LLVMValueRef x);
/* Operands of the expression being emitted. */
LLVMValueRef cg_atom(Cg *cg, CAtom *a);
/* An owned reference to the atom's value: moves an owned variable at its last
 * use, otherwise retains. */
LLVMValueRef cg_take(Cg *cg, CAtom *a);
/* Emits a block; pre-owned variables (loop state) are released by it. The
 * result is owned. */
LLVMValueRef cg_emit_block(Cg *cg, CBlock *b, CVar **preowned, int npre);

/* ---- codegen_expr.c: expressions, control flow, closures */
/* The value of one Core expression (owned). */
LLVMValueRef cg_emit_expr(Cg *cg, CExpr *e);
/* The LLVM function of a top-level function (declared on first use). */
LLVMValueRef cg_fun_decl(Cg *cg, CFun *f);
/* A top-level function as a value: an immortal closure cell. */
LLVMValueRef cg_fun_value(Cg *cg, CFun *f);
/* Emits the bodies of the lambdas met so far (and of those inside them). */
void cg_emit_pending_all(Cg *cg);
/* The cell type of a variant's constructor con. */
LLVMTypeRef cg_variant_cell_type(Cg *cg, Type *t, int con);
/* Scalar primitive on scalar operands (also the body of elementwise loops). */
LLVMValueRef cg_scalar_prim(Cg *cg, Prim op, int64_t imm, Type *rt, Type **at,
                            LLVMValueRef *v, int n, Loc loc);
/* Calls a closure value with one argument; the result is owned. */
LLVMValueRef cg_apply_closure(Cg *cg, Type *fty, LLVMValueRef clo, LLVMValueRef arg);
/* Structural equality of two values of type t. */
LLVMValueRef cg_equal(Cg *cg, Type *t, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef cg_key_to_i64(Cg *cg, LLVMValueRef k); /* dl_key as passed to C */
LLVMValueRef cg_i64_to_key(Cg *cg, LLVMValueRef x); /* and back */

/* ---- codegen_export.c: the C view of exports */
void cg_emit_export(Cg *cg, CFun *f);  /* the wrapper and release function of an export */
void cg_emit_export_closures(Cg *cg);  /* call wrappers of closure types at the boundary */

/* ---- codegen_array.c */
/* Fields of struct dl_array (dlrt.h), for cg_arr_field. */
enum { CG_ARR_RC = 0, CG_ARR_DTYPE, CG_ARR_RANK, CG_ARR_ESIZE, CG_ARR_SIZE, CG_ARR_SHAPE, CG_ARR_DATA };
int cg_dtype(Type *elem);                 /* DL_F64 ... DL_BYTES */
bool cg_is_array(Type *t);
bool cg_is_scalar(Type *t);               /* int, float, f32, bool */
LLVMValueRef cg_arr_field(Cg *cg, LLVMValueRef a, int field); /* loaded */
LLVMValueRef cg_arr_data(Cg *cg, LLVMValueRef a);
LLVMValueRef cg_arr_dim(Cg *cg, LLVMValueRef a, LLVMValueRef axis);
LLVMValueRef cg_arr_dimk(Cg *cg, LLVMValueRef a, int axis);
LLVMValueRef cg_arr_size(Cg *cg, LLVMValueRef a);
LLVMValueRef cg_shape_ptr(Cg *cg, LLVMValueRef a); /* address of the shape */
/* A new array of element type elem with rank dims (i64 values). */
LLVMValueRef cg_arr_new(Cg *cg, Type *elem, int rank, LLVMValueRef *dims);
LLVMValueRef cg_elem_load(Cg *cg, Type *elem, LLVMValueRef data, LLVMValueRef i);
void cg_elem_store(Cg *cg, Type *elem, LLVMValueRef data, LLVMValueRef i, LLVMValueRef v);
/* Raises the run-time error fmt (with vals) at loc unless ok. */
void cg_check(Cg *cg, LLVMValueRef ok, Loc loc, const char *fmt, LLVMValueRef *vals, int n);
void cg_check_dim(Cg *cg, LLVMValueRef n, Loc loc, const char *what); /* n >= 0 */
/* Scalars: 0 and 1 of a type, a conversion between scalar types. */
LLVMValueRef cg_zero_of(Cg *cg, Type *t);
LLVMValueRef cg_one_of(Cg *cg, Type *t);
LLVMValueRef cg_convert(Cg *cg, LLVMValueRef v, Type *from, Type *to);
LLVMValueRef cg_array_prim(Cg *cg, CExpr *e);
LLVMValueRef cg_soac(Cg *cg, CExpr *e);
bool cg_prim_is_array(CExpr *e);
void cg_array_release_elems(Cg *cg, Type *elem, LLVMValueRef arr);
void cg_array_retain_elems(Cg *cg, Type *elem, LLVMValueRef arr);

/* ---- codegen_fuse.c: elementwise primitives as fused loops */
/* Loop fusion: may e be computed inside its only consumer, and may that be c? */
bool cg_producer(CExpr *e);
bool cg_fusable(CExpr *p, CExpr *c, CVar *v);
/* A producer that may also be stored into its own array while computed inside
 * its consumer's loop (an elementwise primitive or a map of scalars). */
bool cg_storable(CExpr *e);
bool cg_scalar_map(CExpr *e);   /* map over vectors giving a vector of scalars */
bool cg_scalar_fold(CExpr *e);  /* reduce/fold over a vector of scalars */
LLVMValueRef cg_elementwise(Cg *cg, CExpr *e);
/* An elementwise primitive, a map of scalars: a new array. */
LLVMValueRef cg_fused_store(Cg *cg, CExpr *e, const char *opname);
LLVMValueRef cg_reduce_all(Cg *cg, CExpr *e);  /* sum, prod, mean, maximum, minimum */
LLVMValueRef cg_fused_fold(Cg *cg, CExpr *e);  /* reduce/fold of scalars */
LLVMValueRef cg_array_equal(Cg *cg, Type *t, LLVMValueRef a, LLVMValueRef b);

/* ---- codegen_print.c */
/* Prints v of type t; nested: strings quoted (inside other values). */
void cg_print(Cg *cg, Type *t, LLVMValueRef v, bool nested);
/* The printed form of v as a new DL string (show). */
LLVMValueRef cg_show(Cg *cg, Type *t, LLVMValueRef v);

/* ---- codegen_ptx.c: array loops as PTX kernels (--gpu, --target=nvptx,
 * --emit=ptx; docs/gpu.md) */
enum { CG_PTX_NONE, CG_PTX_STORE, CG_PTX_REDUCE, CG_PTX_FOLD };
/* A fused loop that may run as a kernel (codegen_fuse.c fills it in). */
typedef struct CgPtxLoop {
    int kind;              /* CG_PTX_*: stored, reduced by op, reduced by fn */
    int nsrc;
    LLVMValueRef arr[32];  /* the source arrays (NULL: an iota) */
    Type *elem;            /* of the result (store) or the accumulator */
    LLVMValueRef n;        /* number of elements (i64) */
    LLVMValueRef flat;     /* i1: every source has the result's shape */
    int rank;              /* of the result, dims: its shape (broadcast) */
    LLVMValueRef dims[8];
    int srank[32];         /* the sources' ranks and shape pointers */
    LLVMValueRef shape[32];
    LLVMValueRef out;      /* store: the result array */
    LLVMValueRef acc;      /* reductions: slot holding the initial value, then the result */
    Prim op;               /* CG_PTX_REDUCE: P_SUM, P_PROD, P_MEAN, P_MAXIMUM, P_MINIMUM */
    CLambda *fn;           /* CG_PTX_FOLD: the associative operation */
    LLVMBasicBlockRef done; /* where the GPU path continues */
    /* The element whose sources are at data[s] + off[s] (emitted where the
     * builder is). */
    LLVMValueRef (*elem_at)(Cg *cg, void *tree, LLVMValueRef *data, LLVMValueRef *off);
    void *tree;
} CgPtxLoop;
void cg_ptx_init(Cg *cg);     /* sets cg->ptx when compiling for the GPU */
void cg_ptx_dispose(Cg *cg);
/* Emits the GPU path of l (when it can be a kernel) and leaves the builder
 * in the CPU path, after making the sources' host copies current. */
void cg_ptx_loop(Cg *cg, CgPtxLoop *l);
/* Before generated code reads a's data on the CPU (cg_arr_data). */
void cg_ptx_sync(Cg *cg, LLVMValueRef a);
/* At the end of the host module: the PTX module, the kernels moved out. */
bool cg_ptx_finish(Cg *cg);
const char *cg_ptx_text(Cg *cg); /* the PTX module after cg_ptx_finish */

#endif /* DCC_CODEGEN_H */
