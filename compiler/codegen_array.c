/* codegen_array.c — array primitives and SOACs as generated loops.
 *
 * Arrays are libdlrt's dl_array (dense, row-major, contiguous); see the top
 * of codegen.c for the representation. This file has the basics (headers,
 * elements, checks, building arrays of unknown length), reductions along an
 * axis, construction, indexing and update, matrix products (CBLAS via
 * libdlrt for floats), the dispatch of array primitives and the SOACs:
 * map/reduce/fold/scan/filter inline their lambda's body into the loop.
 * Elementwise primitives and the fusion of producers into their consumers'
 * loops are in codegen_fuse.c. Index and shape errors call libdlrt with the
 * expression's source position. */
#include "codegen.h"

#include <string.h>

/* ------------------------------------------------------------ basics */

int cg_dtype(Type *elem)
{
    switch (cg_norm(elem)->kind) {
    case TY_FLOAT: return 0; /* DL_F64 */
    case TY_F32: return 1;   /* DL_F32 */
    case TY_INT: return 2;   /* DL_I64 */
    case TY_BOOL: return 4;  /* DL_BOOL */
    default: return 5;       /* DL_BYTES */
    }
}

bool cg_is_array(Type *t) { return cg_norm(t)->kind == TY_ARRAY; }

bool cg_is_scalar(Type *t)
{
    TypeKind k = cg_norm(t)->kind;
    return k == TY_FLOAT || k == TY_F32 || k == TY_INT || k == TY_BOOL;
}

LLVMValueRef cg_arr_field(Cg *cg, LLVMValueRef a, int field)
{
    static const int is64[] = {1, 0, 0, 1, 1, 1, 0};
    LLVMTypeRef t = field == CG_ARR_DATA ? cg->t_ptr : is64[field] ? cg->t_i64 : cg->t_i32;
    return cg_tbaa(cg, LLVMBuildLoad2(cg->b, t, LLVMBuildStructGEP2(cg->b, cg->t_array, a, (unsigned)field, ""), ""),
                   CG_TBAA_HEADER);
}

LLVMValueRef cg_arr_data(Cg *cg, LLVMValueRef a)
{
    if (cg->ptx) /* ptx: the host copy current first (codegen_ptx.c) */
        cg_ptx_sync(cg, a);
    return cg_arr_field(cg, a, CG_ARR_DATA);
}
LLVMValueRef cg_arr_size(Cg *cg, LLVMValueRef a) { return cg_arr_field(cg, a, CG_ARR_SIZE); }

LLVMValueRef cg_shape_ptr(Cg *cg, LLVMValueRef a)
{
    return LLVMBuildStructGEP2(cg->b, cg->t_array, a, CG_ARR_SHAPE, "shape");
}

LLVMValueRef cg_arr_dim(Cg *cg, LLVMValueRef a, LLVMValueRef axis)
{
    LLVMValueRef p = LLVMBuildGEP2(cg->b, cg->t_i64, cg_shape_ptr(cg, a), &axis, 1, "");
    return cg_tbaa(cg, LLVMBuildLoad2(cg->b, cg->t_i64, p, "dim"), CG_TBAA_HEADER);
}

LLVMValueRef cg_arr_dimk(Cg *cg, LLVMValueRef a, int axis) { return cg_arr_dim(cg, a, cg_i64(cg, axis)); }

static LLVMTypeRef mem_type(Cg *cg, Type *elem)
{
    return cg_norm(elem)->kind == TY_BOOL ? cg->t_i8 : cg_type(cg, elem);
}

static int64_t elem_size(Cg *cg, Type *elem) { return cg_sizeof(cg, mem_type(cg, elem)); }
static unsigned elem_align(Cg *cg, Type *elem) { return LLVMABIAlignmentOfType(cg->td, mem_type(cg, elem)); }

static LLVMValueRef elem_ptr(Cg *cg, Type *elem, LLVMValueRef data, LLVMValueRef i)
{
    return LLVMBuildInBoundsGEP2(cg->b, mem_type(cg, elem), data, &i, 1, "");
}

static int elem_tbaa(Type *elem)
{
    switch (cg_norm(elem)->kind) {
    case TY_FLOAT: return CG_TBAA_F64;
    case TY_F32: return CG_TBAA_F32;
    case TY_INT: return CG_TBAA_I64;
    case TY_BOOL: return CG_TBAA_BOOL;
    default: return -1;
    }
}

LLVMValueRef cg_elem_load(Cg *cg, Type *elem, LLVMValueRef data, LLVMValueRef i)
{
    LLVMValueRef v = cg_tbaa(cg, LLVMBuildLoad2(cg->b, mem_type(cg, elem), elem_ptr(cg, elem, data, i), ""),
                             elem_tbaa(elem));
    if (cg_norm(elem)->kind == TY_BOOL)
        v = LLVMBuildICmp(cg->b, LLVMIntNE, v, LLVMConstInt(cg->t_i8, 0, 0), "");
    return v;
}

void cg_elem_store(Cg *cg, Type *elem, LLVMValueRef data, LLVMValueRef i, LLVMValueRef v)
{
    if (cg_norm(elem)->kind == TY_BOOL)
        v = LLVMBuildZExt(cg->b, v, cg->t_i8, "");
    cg_tbaa(cg, LLVMBuildStore(cg->b, v, elem_ptr(cg, elem, data, i)), elem_tbaa(elem));
}

/* A shape buffer of DL_MAX_RANK entries holding dims. */
static LLVMValueRef shape_buf(Cg *cg, int rank, LLVMValueRef *dims)
{
    LLVMValueRef buf = cg_alloca(cg, LLVMArrayType(cg->t_i64, 8), "dims");
    for (int i = 0; i < rank; i++)
        LLVMBuildStore(cg->b, dims[i], LLVMBuildGEP2(cg->b, cg->t_i64, buf, (LLVMValueRef[]){cg_i64(cg, i)}, 1, ""));
    return buf;
}

LLVMValueRef cg_arr_new(Cg *cg, Type *elem, int rank, LLVMValueRef *dims)
{
    LLVMValueRef buf = shape_buf(cg, rank, dims);
    int dt = cg_dtype(elem);
    if (dt == 5)
        return cg_call_rt(cg, "dl_array_new_bytes",
                          (LLVMValueRef[]){cg_i64(cg, elem_size(cg, elem)), cg_i32(cg, rank), buf}, 3);
    return cg_call_rt(cg, "dl_array_new", (LLVMValueRef[]){cg_i32(cg, dt), cg_i32(cg, rank), buf}, 3);
}

static LLVMValueRef arr_zeros(Cg *cg, Type *elem, int rank, LLVMValueRef *dims)
{
    int dt = cg_dtype(elem);
    if (dt == 5) {
        LLVMValueRef a = cg_arr_new(cg, elem, rank, dims);
        LLVMValueRef n = LLVMBuildMul(cg->b, cg_arr_size(cg, a), cg_i64(cg, elem_size(cg, elem)), "");
        LLVMBuildMemSet(cg->b, cg_arr_data(cg, a), LLVMConstInt(cg->t_i8, 0, 0), n, 1);
        return a;
    }
    LLVMValueRef buf = shape_buf(cg, rank, dims);
    return cg_call_rt(cg, "dl_array_zeros", (LLVMValueRef[]){cg_i32(cg, dt), cg_i32(cg, rank), buf}, 3);
}

static void raise_fmt(Cg *cg, Loc loc, const char *fmt, LLVMValueRef *vals, int n)
{
    LLVMValueRef a[8] = {cg_srcloc(cg, loc), cg_cstr(cg, fmt)};
    for (int i = 0; i < n; i++)
        a[2 + i] = vals[i];
    cg_call_rt(cg, "dl_error", a, 2 + n);
    LLVMBuildUnreachable(cg->b);
}

/* if (!ok) error; continues in a new block */
void cg_check(Cg *cg, LLVMValueRef ok, Loc loc, const char *fmt, LLVMValueRef *vals, int n)
{
    LLVMBasicBlockRef bad = cg_block(cg, "check.fail"), good = cg_block(cg, "check.ok");
    LLVMBuildCondBr(cg->b, ok, good, bad);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    raise_fmt(cg, loc, fmt, vals, n);
    LLVMPositionBuilderAtEnd(cg->b, good);
}

void cg_check_dim(Cg *cg, LLVMValueRef n, Loc loc, const char *what)
{
    cg_check(cg, LLVMBuildICmp(cg->b, LLVMIntSGE, n, cg_i64(cg, 0), ""), loc,
          arena_printf(dcc_arena, "%s: negative dimension %%lld", what), &n, 1);
}

static void bounds_check(Cg *cg, LLVMValueRef idx, LLVMValueRef extent, int axis, Loc loc)
{
    LLVMBasicBlockRef bad = cg_block(cg, "oob"), good = cg_block(cg, "inb");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntULT, idx, extent, ""), good, bad);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    cg_call_rt(cg, "dl_bounds_error", (LLVMValueRef[]){idx, extent, cg_i32(cg, axis), cg_srcloc(cg, loc)}, 4);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, good);
}

/* "shape mismatch in 'op': [..] and [..]" unless the two shapes (rank r,
 * from axis `from`) are equal. */
static void check_same_shape(Cg *cg, LLVMValueRef a, int ra, LLVMValueRef b, int rb, int from, const char *op,
                             Loc loc)
{
    if (ra - from != rb - from || ra <= from)
        return;
    LLVMValueRef ok = LLVMConstInt(cg->t_i1, 1, 0);
    for (int k = from; k < ra; k++)
        ok = LLVMBuildAnd(cg->b, ok, LLVMBuildICmp(cg->b, LLVMIntEQ, cg_arr_dimk(cg, a, k), cg_arr_dimk(cg, b, k), ""), "");
    LLVMBasicBlockRef bad = cg_block(cg, "shape.fail"), good = cg_block(cg, "shape.ok");
    LLVMBuildCondBr(cg->b, ok, good, bad);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    cg_call_rt(cg, "dl_shape_error", (LLVMValueRef[]){cg_srcloc(cg, loc), cg_cstr(cg, op), cg_i32(cg, ra),
                                                      cg_shape_ptr(cg, a), cg_i32(cg, rb), cg_shape_ptr(cg, b)}, 6);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, good);
}

void cg_array_release_elems(Cg *cg, Type *elem, LLVMValueRef arr)
{
    LLVMValueRef data = cg_arr_data(cg, arr);
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), cg_arr_size(cg, arr));
    cg_release(cg, elem, cg_elem_load(cg, elem, data, i));
    cg_loop_end(cg, &l);
}

void cg_array_retain_elems(Cg *cg, Type *elem, LLVMValueRef arr)
{
    if (!cg_is_rc(cg, elem))
        return;
    LLVMValueRef data = cg_arr_data(cg, arr);
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), cg_arr_size(cg, arr));
    cg_retain(cg, elem, cg_elem_load(cg, elem, data, i));
    cg_loop_end(cg, &l);
}

/* Retains count elements from index `from` (after a copy of them). */
static void retain_range(Cg *cg, Type *elem, LLVMValueRef data, LLVMValueRef from, LLVMValueRef count)
{
    if (!cg_is_rc(cg, elem))
        return;
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, from, LLVMBuildAdd(cg->b, from, count, ""));
    cg_retain(cg, elem, cg_elem_load(cg, elem, data, i));
    cg_loop_end(cg, &l);
}

static void release_range(Cg *cg, Type *elem, LLVMValueRef data, LLVMValueRef from, LLVMValueRef count)
{
    if (!cg_is_rc(cg, elem))
        return;
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, from, LLVMBuildAdd(cg->b, from, count, ""));
    cg_release(cg, elem, cg_elem_load(cg, elem, data, i));
    cg_loop_end(cg, &l);
}

/* Copies count elements (memcpy), retaining them when they hold references. */
static void copy_elems(Cg *cg, Type *elem, LLVMValueRef dst, LLVMValueRef doff, LLVMValueRef src, LLVMValueRef soff,
                       LLVMValueRef count)
{
    LLVMValueRef bytes = LLVMBuildMul(cg->b, count, cg_i64(cg, elem_size(cg, elem)), "");
    unsigned al = elem_align(cg, elem);
    LLVMBuildMemCpy(cg->b, elem_ptr(cg, elem, dst, doff), al, elem_ptr(cg, elem, src, soff), al, bytes);
    retain_range(cg, elem, dst, doff, count);
}

/* dl_array_unique that keeps element references right: a copy of an array
 * of references retains them. Consumes a. */
static LLVMValueRef arr_unique(Cg *cg, Type *elem, LLVMValueRef a)
{
    if (!cg_is_rc(cg, elem))
        return cg_call_rt(cg, "dl_array_unique", &a, 1);
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef cp = cg_block(cg, "copy"), done = cg_block(cg, "unique");
    LLVMValueRef rc = cg_arr_field(cg, a, CG_ARR_RC);
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, rc, cg_i64(cg, 1), ""), done, cp);
    LLVMPositionBuilderAtEnd(cg->b, cp);
    LLVMValueRef c = cg_call_rt(cg, "dl_array_copy", &a, 1);
    cg_array_retain_elems(cg, elem, c);
    cg_call_rt(cg, "dl_array_release", &a, 1);
    LLVMBasicBlockRef cpend = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    LLVMValueRef phi = LLVMBuildPhi(cg->b, cg->t_ptr, "");
    LLVMAddIncoming(phi, (LLVMValueRef[]){a, c}, (LLVMBasicBlockRef[]){here, cpend}, 2);
    return phi;
}

/* Product of dims k.. of a (the number of elements in one sub-array). */
static LLVMValueRef inner_size(Cg *cg, LLVMValueRef a, int from, int rank)
{
    LLVMValueRef n = cg_i64(cg, 1);
    for (int k = from; k < rank; k++)
        n = LLVMBuildMul(cg->b, n, cg_arr_dimk(cg, a, k), "");
    return n;
}

/* Element i along axis 0: the scalar or element (borrowed) when rank is 1,
 * else a new sub-array (*owned set). */
static LLVMValueRef outer_elem(Cg *cg, Type *at, LLVMValueRef a, LLVMValueRef i, bool *owned)
{
    at = cg_norm(at);
    if (at->rank == 1) {
        *owned = false;
        return cg_elem_load(cg, at->elem, cg_arr_data(cg, a), i);
    }
    *owned = true;
    LLVMValueRef dims[8];
    for (int k = 1; k < at->rank; k++)
        dims[k - 1] = cg_arr_dimk(cg, a, k);
    LLVMValueRef sub = cg_arr_new(cg, at->elem, at->rank - 1, dims);
    LLVMValueRef n = inner_size(cg, a, 1, at->rank);
    copy_elems(cg, at->elem, cg_arr_data(cg, sub), cg_i64(cg, 0), cg_arr_data(cg, a), LLVMBuildMul(cg->b, i, n, ""), n);
    return sub;
}

/* Assembling an array from values v_0 .. v_{n-1} of type vt (scalars,
 * structures or arrays of one shape) into an array of rank 1 + rank(vt). */
typedef struct ArrBuild {
    Type *vt, *elem;
    int vrank;
    LLVMValueRef n, slot;
    Loc loc;
    const char *op;
} ArrBuild;

static void build_begin(Cg *cg, ArrBuild *ab, Type *vt, LLVMValueRef n, Loc loc, const char *op)
{
    ab->vt = cg_norm(vt);
    ab->vrank = ab->vt->kind == TY_ARRAY ? ab->vt->rank : 0;
    ab->elem = ab->vrank ? ab->vt->elem : ab->vt;
    ab->n = n;
    ab->loc = loc;
    ab->op = op;
    ab->slot = cg_alloca(cg, cg->t_ptr, "result");
    if (!ab->vrank)
        LLVMBuildStore(cg->b, cg_arr_new(cg, ab->elem, 1, &n), ab->slot);
    else
        LLVMBuildStore(cg->b, LLVMConstNull(cg->t_ptr), ab->slot);
}

/* Stores the owned value v at position i (moves it). */
static void build_put(Cg *cg, ArrBuild *ab, LLVMValueRef i, LLVMValueRef v)
{
    if (!ab->vrank) {
        LLVMValueRef r = LLVMBuildLoad2(cg->b, cg->t_ptr, ab->slot, "");
        cg_elem_store(cg, ab->elem, cg_arr_data(cg, r), i, v);
        return;
    }
    LLVMValueRef r0 = LLVMBuildLoad2(cg->b, cg->t_ptr, ab->slot, "");
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef mk = cg_block(cg, "alloc"), have = cg_block(cg, "have");
    LLVMBuildCondBr(cg->b, LLVMBuildIsNull(cg->b, r0, ""), mk, have);
    LLVMPositionBuilderAtEnd(cg->b, mk);
    LLVMValueRef dims[8];
    dims[0] = ab->n;
    for (int k = 0; k < ab->vrank; k++)
        dims[k + 1] = cg_arr_dimk(cg, v, k);
    LLVMValueRef r1 = cg_arr_new(cg, ab->elem, ab->vrank + 1, dims);
    LLVMBuildStore(cg->b, r1, ab->slot);
    LLVMBasicBlockRef mkend = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, have);
    LLVMPositionBuilderAtEnd(cg->b, have);
    LLVMValueRef r = LLVMBuildPhi(cg->b, cg->t_ptr, "");
    LLVMAddIncoming(r, (LLVMValueRef[]){r0, r1}, (LLVMBasicBlockRef[]){here, mkend}, 2);
    /* every value must have the shape of the first */
    LLVMValueRef ok = LLVMConstInt(cg->t_i1, 1, 0);
    for (int k = 0; k < ab->vrank; k++)
        ok = LLVMBuildAnd(cg->b, ok, LLVMBuildICmp(cg->b, LLVMIntEQ, cg_arr_dimk(cg, r, k + 1), cg_arr_dimk(cg, v, k), ""), "");
    LLVMBasicBlockRef bad = cg_block(cg, "ragged"), good = cg_block(cg, "same");
    LLVMBuildCondBr(cg->b, ok, good, bad);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    LLVMValueRef rs = LLVMBuildGEP2(cg->b, cg->t_i64, cg_shape_ptr(cg, r), (LLVMValueRef[]){cg_i64(cg, 1)}, 1, "");
    cg_call_rt(cg, "dl_shape_error", (LLVMValueRef[]){cg_srcloc(cg, ab->loc), cg_cstr(cg, ab->op),
                                                      cg_i32(cg, ab->vrank), rs, cg_i32(cg, ab->vrank),
                                                      cg_shape_ptr(cg, v)}, 6);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, good);
    LLVMValueRef m = inner_size(cg, v, 0, ab->vrank);
    LLVMValueRef bytes = LLVMBuildMul(cg->b, m, cg_i64(cg, elem_size(cg, ab->elem)), "");
    LLVMBuildMemCpy(cg->b, elem_ptr(cg, ab->elem, cg_arr_data(cg, r), LLVMBuildMul(cg->b, i, m, "")),
                    elem_align(cg, ab->elem), cg_arr_data(cg, v), elem_align(cg, ab->elem), bytes);
    /* the elements now have one more owner; v's own go with v */
    retain_range(cg, ab->elem, cg_arr_data(cg, r), LLVMBuildMul(cg->b, i, m, ""), m);
    cg_release(cg, ab->vt, v);
}

static LLVMValueRef build_end(Cg *cg, ArrBuild *ab)
{
    LLVMValueRef r0 = LLVMBuildLoad2(cg->b, cg->t_ptr, ab->slot, "");
    if (!ab->vrank)
        return r0;
    /* no element: shape [n, 0, ...] (n is 0 here) */
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef mk = cg_block(cg, "empty"), done = cg_block(cg, "built");
    LLVMBuildCondBr(cg->b, LLVMBuildIsNull(cg->b, r0, ""), mk, done);
    LLVMPositionBuilderAtEnd(cg->b, mk);
    LLVMValueRef dims[8];
    dims[0] = ab->n;
    for (int k = 0; k < ab->vrank; k++)
        dims[k + 1] = cg_i64(cg, 0);
    LLVMValueRef r1 = cg_arr_new(cg, ab->elem, ab->vrank + 1, dims);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    LLVMValueRef r = LLVMBuildPhi(cg->b, cg->t_ptr, "");
    LLVMAddIncoming(r, (LLVMValueRef[]){r0, r1}, (LLVMBasicBlockRef[]){here, mk}, 2);
    return r;
}

static Type *array_type(Type *elem, int rank)
{
    if (rank == 0)
        return elem;
    Type *t = NEW(Type);
    t->kind = TY_ARRAY;
    t->elem = elem;
    t->rank = rank;
    return t;
}

/* The type of one element along axis 0. */
static Type *outer_type(Type *at)
{
    at = cg_norm(at);
    return array_type(at->elem, at->rank - 1);
}

static LLVMValueRef load_slot(Cg *cg, LLVMTypeRef t, LLVMValueRef slot)
{
    return LLVMBuildLoad2(cg->b, t, slot, "");
}

LLVMValueRef cg_zero_of(Cg *cg, Type *t)
{
    return LLVMConstNull(cg_type(cg, t));
}

LLVMValueRef cg_one_of(Cg *cg, Type *t)
{
    t = cg_norm(t);
    if (t->kind == TY_FLOAT || t->kind == TY_F32)
        return LLVMConstReal(cg_type(cg, t), 1.0);
    return LLVMConstInt(cg_type(cg, t), 1, 0);
}

/* Converts a scalar element to the scalar type `to` (int to float...). */
LLVMValueRef cg_convert(Cg *cg, LLVMValueRef v, Type *from, Type *to)
{
    from = cg_norm(from);
    to = cg_norm(to);
    if (from->kind == to->kind)
        return v;
    Prim p = to->kind == TY_FLOAT ? P_TO_FLOAT : to->kind == TY_F32 ? P_TO_F32 : P_TO_INT;
    return cg_scalar_prim(cg, p, 0, to, &from, &v, 1, loc_none);
}

/* ------------------------------------------------------------ reductions */

/* sum over axis 0: [n, rest...] -> [rest...] */
static LLVMValueRef sum_axis0(Cg *cg, CExpr *e)
{
    Type *at = cg_norm(core_atom_type(e->args[0]));
    Type *el = at->elem;
    LLVMValueRef a = cg_atom(cg, e->args[0]);
    int R = at->rank;
    LLVMValueRef dims[8];
    for (int k = 1; k < R; k++)
        dims[k - 1] = cg_arr_dimk(cg, a, k);
    LLVMValueRef out = arr_zeros(cg, el, R - 1, dims);
    LLVMValueRef m = inner_size(cg, a, 1, R), n = cg_arr_dimk(cg, a, 0);
    LLVMValueRef od = cg_arr_data(cg, out), ad = cg_arr_data(cg, a);
    CgLoop li;
    LLVMValueRef i = cg_loop_begin(cg, &li, cg_i64(cg, 0), n);
    CgLoop lj;
    LLVMValueRef j = cg_loop_begin(cg, &lj, cg_i64(cg, 0), m);
    Type *tys[2] = {el, el};
    LLVMValueRef x = cg_elem_load(cg, el, ad, LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, i, m, ""), j, ""));
    LLVMValueRef s = cg_scalar_prim(cg, P_ADD, 0, el, tys, (LLVMValueRef[]){cg_elem_load(cg, el, od, j), x}, 2, e->loc);
    cg_elem_store(cg, el, od, j, s);
    cg_loop_end(cg, &lj);
    cg_loop_end(cg, &li);
    return out;
}

/* argmax, softmax, logsumexp: along the last axis. */
static LLVMValueRef last_axis(Cg *cg, CExpr *e)
{
    Prim op = e->u.prim.op;
    Type *at = cg_norm(core_atom_type(e->args[0]));
    Type *el = at->elem;
    LLVMTypeRef elt = cg_type(cg, el);
    LLVMValueRef a = cg_atom(cg, e->args[0]);
    int R = at->rank;
    LLVMValueRef L = cg_arr_dimk(cg, a, R - 1);
    LLVMValueRef rows = inner_size(cg, a, 0, R - 1);
    LLVMValueRef ad = cg_arr_data(cg, a);
    Type *rt = cg_norm(e->type);
    LLVMValueRef out = NULL, od = NULL;
    if (op == P_SOFTMAX) {
        LLVMValueRef dims[8];
        for (int k = 0; k < R; k++)
            dims[k] = cg_arr_dimk(cg, a, k);
        out = cg_arr_new(cg, el, R, dims);
        od = cg_arr_data(cg, out);
    } else if (R > 1) {
        LLVMValueRef dims[8];
        for (int k = 0; k < R - 1; k++)
            dims[k] = cg_arr_dimk(cg, a, k);
        out = cg_arr_new(cg, rt->elem, R - 1, dims);
        od = cg_arr_data(cg, out);
    }
    LLVMValueRef res = cg_alloca(cg, cg_type(cg, R > 1 || op == P_SOFTMAX ? (op == P_ARGMAX ? rt->elem : el) : rt), "res");
    if (op == P_ARGMAX)
        cg_check(cg, LLVMBuildOr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, L, cg_i64(cg, 0), ""),
                              LLVMBuildICmp(cg->b, LLVMIntEQ, rows, cg_i64(cg, 0), ""), ""),
              e->loc, "argmax of an empty array", NULL, 0);
    CgLoop lr;
    LLVMValueRef r = cg_loop_begin(cg, &lr, cg_i64(cg, 0), rows);
    LLVMValueRef base = LLVMBuildMul(cg->b, r, L, "");
    /* the maximum (first index of it for argmax; NaN wins) */
    LLVMValueRef best = cg_alloca(cg, elt, "best"), bi = cg_alloca(cg, cg->t_i64, "bi");
    bool fl = cg_norm(el)->kind == TY_FLOAT || cg_norm(el)->kind == TY_F32;
    LLVMValueRef init = fl ? LLVMConstReal(elt, -__builtin_inf()) : cg_i64(cg, INT64_MIN);
    LLVMBuildStore(cg->b, init, best);
    LLVMBuildStore(cg->b, cg_i64(cg, 0), bi);
    {
        CgLoop l;
        LLVMValueRef j = cg_loop_begin(cg, &l, cg_i64(cg, 0), L);
        LLVMValueRef x = cg_elem_load(cg, el, ad, LLVMBuildAdd(cg->b, base, j, ""));
        LLVMValueRef b = load_slot(cg, elt, best);
        LLVMValueRef gt;
        if (fl) {
            LLVMValueRef bnan = LLVMBuildFCmp(cg->b, LLVMRealUNO, b, b, "");
            gt = LLVMBuildAnd(cg->b, LLVMBuildNot(cg->b, bnan, ""),
                              LLVMBuildOr(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGT, x, b, ""),
                                          LLVMBuildFCmp(cg->b, LLVMRealUNO, x, x, ""), ""), "");
            /* the first element always counts (it may equal -inf) */
            gt = LLVMBuildOr(cg->b, gt, LLVMBuildICmp(cg->b, LLVMIntEQ, j, cg_i64(cg, 0), ""), "");
        } else {
            gt = LLVMBuildOr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, x, b, ""),
                             LLVMBuildICmp(cg->b, LLVMIntEQ, j, cg_i64(cg, 0), ""), "");
        }
        LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, gt, x, b, ""), best);
        LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, gt, j, load_slot(cg, cg->t_i64, bi), ""), bi);
        cg_loop_end(cg, &l);
    }
    if (op == P_ARGMAX) {
        LLVMValueRef v = load_slot(cg, cg->t_i64, bi);
        if (out)
            cg_elem_store(cg, rt->elem, od, r, v);
        else
            LLVMBuildStore(cg->b, v, res);
    } else {
        LLVMValueRef m = load_slot(cg, elt, best);
        /* a row of infinities: subtract 0 instead (exp(inf - inf) would be NaN) */
        LLVMValueRef finite = LLVMBuildFCmp(cg->b, LLVMRealONE, cg_intrinsic(cg, "llvm.fabs", &elt, 1, &m, 1),
                                            LLVMConstReal(elt, __builtin_inf()), "");
        LLVMValueRef shift = LLVMBuildSelect(cg->b, finite, m, LLVMConstReal(elt, 0), "");
        LLVMValueRef sum = cg_alloca(cg, elt, "sum");
        LLVMBuildStore(cg->b, LLVMConstReal(elt, 0), sum);
        CgLoop l;
        LLVMValueRef j = cg_loop_begin(cg, &l, cg_i64(cg, 0), L);
        LLVMValueRef idx = LLVMBuildAdd(cg->b, base, j, "");
        LLVMValueRef x = cg_elem_load(cg, el, ad, idx);
        LLVMValueRef ex = cg_intrinsic(cg, "llvm.exp", &elt, 1, (LLVMValueRef[]){LLVMBuildFSub(cg->b, x, shift, "")}, 1);
        if (op == P_SOFTMAX)
            cg_elem_store(cg, el, od, idx, ex);
        LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, load_slot(cg, elt, sum), ex, ""), sum);
        cg_loop_end(cg, &l);
        LLVMValueRef s = load_slot(cg, elt, sum);
        if (op == P_SOFTMAX) {
            CgLoop l2;
            LLVMValueRef j2 = cg_loop_begin(cg, &l2, cg_i64(cg, 0), L);
            LLVMValueRef idx2 = LLVMBuildAdd(cg->b, base, j2, "");
            cg_elem_store(cg, el, od, idx2, LLVMBuildFDiv(cg->b, cg_elem_load(cg, el, od, idx2), s, ""));
            cg_loop_end(cg, &l2);
        } else {
            LLVMValueRef lse = LLVMBuildFAdd(cg->b, shift, cg_intrinsic(cg, "llvm.log", &elt, 1, &s, 1), "");
            if (out)
                cg_elem_store(cg, el, od, r, lse);
            else
                LLVMBuildStore(cg->b, lse, res);
        }
    }
    cg_loop_end(cg, &lr);
    return out ? out : load_slot(cg, cg_type(cg, rt), res);
}

/* ------------------------------------------------------------ construction */

/* A literal of numeric constants: an immortal global array (refcount -1). */
static LLVMValueRef const_array(Cg *cg, CExpr *e, Type *el)
{
    int n = e->nargs;
    LLVMTypeRef mt = mem_type(cg, el);
    LLVMValueRef *vals = NEWN(LLVMValueRef, n + 1);
    for (int i = 0; i < n; i++) {
        LLVMValueRef v = cg_atom(cg, e->args[i]);
        if (cg_norm(el)->kind == TY_BOOL)
            v = LLVMConstInt(cg->t_i8, LLVMConstIntGetZExtValue(v), 0);
        vals[i] = v;
    }
    LLVMValueRef init = LLVMConstArray(mt, vals, (unsigned)n);
    LLVMValueRef dg = LLVMAddGlobal(cg->mod, LLVMArrayType(mt, (unsigned)n), "dl.data");
    LLVMSetInitializer(dg, init);
    LLVMSetLinkage(dg, LLVMPrivateLinkage);
    LLVMSetAlignment(dg, 64);
    LLVMValueRef shape[8];
    for (int k = 0; k < 8; k++)
        shape[k] = cg_i64(cg, k == 0 ? n : 0);
    LLVMValueRef hf[7] = {cg_i64(cg, -1), cg_i32(cg, cg_dtype(el)), cg_i32(cg, 1), cg_i64(cg, elem_size(cg, el)),
                          cg_i64(cg, n), LLVMConstArray(cg->t_i64, shape, 8), dg};
    LLVMValueRef hg = LLVMAddGlobal(cg->mod, cg->t_array, "dl.array");
    LLVMSetInitializer(hg, LLVMConstNamedStruct(cg->t_array, hf, 7));
    LLVMSetLinkage(hg, LLVMPrivateLinkage);
    LLVMSetAlignment(hg, 64);
    return hg;
}

static LLVMValueRef array_literal(Cg *cg, CExpr *e)
{
    Type *rt = cg_norm(e->type);
    Type *el = rt->elem;
    int n = e->nargs;
    bool rows = n > 0 && cg_is_array(core_atom_type(e->args[0]));
    if (!rows && rt->rank == 1) {
        bool lit = n > 0 && cg_is_scalar(el);
        for (int i = 0; i < n && lit; i++)
            lit = e->args[i]->kind == CA_INT || e->args[i]->kind == CA_FLOAT || e->args[i]->kind == CA_BOOL;
        if (lit)
            return const_array(cg, e, el);
        LLVMValueRef nn = cg_i64(cg, n);
        LLVMValueRef a = cg_arr_new(cg, el, 1, &nn);
        LLVMValueRef d = cg_arr_data(cg, a);
        for (int i = 0; i < n; i++)
            cg_elem_store(cg, el, d, cg_i64(cg, i), cg_take(cg, e->args[i]));
        return a;
    }
    if (!rows) { /* [] of a higher rank: shape [0, 0, ...] */
        LLVMValueRef dims[8];
        for (int k = 0; k < rt->rank; k++)
            dims[k] = cg_i64(cg, 0);
        return cg_arr_new(cg, el, rt->rank, dims);
    }
    /* rows: arrays of rank R-1, all of the shape of the first */
    LLVMValueRef r0 = cg_atom(cg, e->args[0]);
    int rr = rt->rank - 1;
    LLVMValueRef dims[8];
    dims[0] = cg_i64(cg, n);
    for (int k = 0; k < rr; k++)
        dims[k + 1] = cg_arr_dimk(cg, r0, k);
    LLVMValueRef a = cg_arr_new(cg, el, rt->rank, dims);
    LLVMValueRef d = cg_arr_data(cg, a);
    LLVMValueRef m = inner_size(cg, r0, 0, rr);
    for (int i = 0; i < n; i++) {
        LLVMValueRef ri = cg_atom(cg, e->args[i]);
        check_same_shape(cg, r0, rr, ri, rr, 0, "array literal", e->loc);
        copy_elems(cg, el, d, LLVMBuildMul(cg->b, cg_i64(cg, i), m, ""), cg_arr_data(cg, ri), cg_i64(cg, 0), m);
    }
    return a;
}

/* Row-major offset of the index atoms (first k axes), bounds-checked. */
static LLVMValueRef index_offset(Cg *cg, LLVMValueRef a, CAtom **idx, int k, Loc loc)
{
    LLVMValueRef off = cg_i64(cg, 0);
    for (int j = 0; j < k; j++) {
        LLVMValueRef d = cg_arr_dimk(cg, a, j);
        LLVMValueRef i = cg_atom(cg, idx[j]);
        bounds_check(cg, i, d, j, loc);
        off = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, off, d, ""), i, "");
    }
    return off;
}

static LLVMValueRef index_prim(Cg *cg, CExpr *e)
{
    Type *at = cg_norm(core_atom_type(e->args[0]));
    LLVMValueRef a = cg_atom(cg, e->args[0]);
    int k = e->nargs - 1, R = at->rank;
    LLVMValueRef off = index_offset(cg, a, e->args + 1, k, e->loc);
    if (k == R) {
        LLVMValueRef v = cg_elem_load(cg, at->elem, cg_arr_data(cg, a), off);
        cg_retain(cg, at->elem, v);
        return v;
    }
    LLVMValueRef dims[8];
    for (int j = k; j < R; j++)
        dims[j - k] = cg_arr_dimk(cg, a, j);
    LLVMValueRef sub = cg_arr_new(cg, at->elem, R - k, dims);
    LLVMValueRef m = inner_size(cg, a, k, R);
    copy_elems(cg, at->elem, cg_arr_data(cg, sub), cg_i64(cg, 0), cg_arr_data(cg, a), LLVMBuildMul(cg->b, off, m, ""), m);
    return sub;
}

/* P_SLICE a, (lo_j, hi_j) per position (see dcc.h). */
static LLVMValueRef slice_prim(Cg *cg, CExpr *e)
{
    Type *at = cg_norm(core_atom_type(e->args[0]));
    Type *el = at->elem;
    LLVMValueRef a = cg_atom(cg, e->args[0]);
    int R = at->rank, npos = (e->nargs - 1) / 2;
    int64_t imm = e->u.prim.imm;
    LLVMValueRef start[8], ext[8], dim[8], outd[8];
    int orank = 0;
    for (int j = 0; j < R; j++) {
        dim[j] = cg_arr_dimk(cg, a, j);
        if (j >= npos) {
            start[j] = cg_i64(cg, 0);
            ext[j] = dim[j];
            outd[orank++] = dim[j];
            continue;
        }
        LLVMValueRef lo = cg_atom(cg, e->args[1 + 2 * j]);
        if (imm & (1ll << j)) {
            LLVMValueRef hi = (imm & (1ll << (16 + j))) ? dim[j] : cg_atom(cg, e->args[2 + 2 * j]);
            LLVMValueRef ok = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, lo, cg_i64(cg, 0), ""),
                                           LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLE, lo, hi, ""),
                                                        LLVMBuildICmp(cg->b, LLVMIntSLE, hi, dim[j], ""), ""), "");
            LLVMValueRef vals[4] = {lo, hi, cg_i32(cg, j), dim[j]};
            cg_check(cg, ok, e->loc, "slice %lld:%lld out of bounds for axis %d of length %lld", vals, 4);
            start[j] = lo;
            ext[j] = LLVMBuildSub(cg->b, hi, lo, "");
            outd[orank++] = ext[j];
        } else {
            bounds_check(cg, lo, dim[j], j, e->loc);
            start[j] = lo;
            ext[j] = cg_i64(cg, 1);
        }
    }
    LLVMValueRef out = cg_arr_new(cg, el, orank, outd);
    LLVMValueRef od = cg_arr_data(cg, out), ad = cg_arr_data(cg, a);
    /* source strides (row-major) */
    LLVMValueRef stride[8];
    stride[R - 1] = cg_i64(cg, 1);
    for (int j = R - 2; j >= 0; j--)
        stride[j] = LLVMBuildMul(cg->b, stride[j + 1], dim[j + 1], "");
    LLVMValueRef pos = cg_alloca(cg, cg->t_i64, "pos");
    LLVMBuildStore(cg->b, cg_i64(cg, 0), pos);
    /* nested loops over axes 0..R-2, a contiguous run along the last */
    CgLoop loops[8];
    LLVMValueRef off = cg_i64(cg, 0);
    for (int j = 0; j < R - 1; j++) {
        LLVMValueRef i = cg_loop_begin(cg, &loops[j], cg_i64(cg, 0), ext[j]);
        off = LLVMBuildAdd(cg->b, off, LLVMBuildMul(cg->b, LLVMBuildAdd(cg->b, start[j], i, ""), stride[j], ""), "");
    }
    off = LLVMBuildAdd(cg->b, off, start[R - 1], "");
    LLVMValueRef p = load_slot(cg, cg->t_i64, pos);
    copy_elems(cg, el, od, p, ad, off, ext[R - 1]);
    LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, p, ext[R - 1], ""), pos);
    for (int j = R - 2; j >= 0; j--)
        cg_loop_end(cg, &loops[j]);
    if (orank == 0) { /* every axis indexed: the element */
        LLVMValueRef v = cg_elem_load(cg, el, od, cg_i64(cg, 0));
        cg_retain(cg, el, v);
        cg_release(cg, at, out); /* the rank-0 holder */
        return v;
    }
    return out;
}

/* P_UPDATE a, v, i...: a with a[i...] = v; in place when a is unique. */
static LLVMValueRef update_prim(Cg *cg, CExpr *e)
{
    Type *at = cg_norm(core_atom_type(e->args[0]));
    Type *el = at->elem;
    int k = e->nargs - 2, R = at->rank;
    LLVMValueRef a = arr_unique(cg, el, cg_take(cg, e->args[0]));
    LLVMValueRef off = index_offset(cg, a, e->args + 2, k, e->loc);
    LLVMValueRef d = cg_arr_data(cg, a);
    if (k == R) {
        LLVMValueRef v = cg_take(cg, e->args[1]);
        if (cg_is_rc(cg, el))
            cg_release(cg, el, cg_elem_load(cg, el, d, off));
        cg_elem_store(cg, el, d, off, v);
        return a;
    }
    LLVMValueRef v = cg_atom(cg, e->args[1]);
    {
        /* compare v's shape with a's trailing axes */
        LLVMValueRef ok = LLVMConstInt(cg->t_i1, 1, 0);
        for (int j = 0; j < R - k; j++)
            ok = LLVMBuildAnd(cg->b, ok, LLVMBuildICmp(cg->b, LLVMIntEQ, cg_arr_dimk(cg, v, j), cg_arr_dimk(cg, a, k + j), ""), "");
        LLVMBasicBlockRef bad = cg_block(cg, "shape.fail"), good = cg_block(cg, "shape.ok");
        LLVMBuildCondBr(cg->b, ok, good, bad);
        LLVMPositionBuilderAtEnd(cg->b, bad);
        LLVMValueRef as = LLVMBuildGEP2(cg->b, cg->t_i64, LLVMBuildStructGEP2(cg->b, cg->t_array, a, 5, ""),
                                        (LLVMValueRef[]){cg_i64(cg, k)}, 1, "");
        cg_call_rt(cg, "dl_shape_error", (LLVMValueRef[]){cg_srcloc(cg, e->loc), cg_cstr(cg, "update"),
                                                          cg_i32(cg, R - k), as, cg_i32(cg, R - k),
                                                          LLVMBuildStructGEP2(cg->b, cg->t_array, v, 5, "")}, 6);
        LLVMBuildUnreachable(cg->b);
        LLVMPositionBuilderAtEnd(cg->b, good);
    }
    LLVMValueRef m = inner_size(cg, a, k, R);
    LLVMValueRef base = LLVMBuildMul(cg->b, off, m, "");
    release_range(cg, el, d, base, m);
    copy_elems(cg, el, d, base, cg_arr_data(cg, v), cg_i64(cg, 0), m);
    return a;
}

/* A fresh array of the given dims filled with v (owned once per element). */
static LLVMValueRef fill(Cg *cg, Type *el, int rank, LLVMValueRef *dims, LLVMValueRef v, bool v_owned)
{
    LLVMValueRef a = cg_arr_new(cg, el, rank, dims);
    LLVMValueRef d = cg_arr_data(cg, a);
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), cg_arr_size(cg, a));
    cg_retain(cg, el, v);
    cg_elem_store(cg, el, d, i, v);
    cg_loop_end(cg, &l);
    if (v_owned)
        cg_release(cg, el, v);
    return a;
}

static int dims_of(Cg *cg, CExpr *e, int from, LLVMValueRef *dims)
{
    int r = 0;
    for (int i = from; i < e->nargs && r < 8; i++) {
        dims[r] = cg_atom(cg, e->args[i]);
        cg_check_dim(cg, dims[r], e->loc, core_prims[e->u.prim.op].name);
        r++;
    }
    return r;
}

/* Rows [lo, lo + count) of a along axis 0 as a new array. */
static LLVMValueRef rows_copy(Cg *cg, Type *at, LLVMValueRef a, LLVMValueRef lo, LLVMValueRef count)
{
    at = cg_norm(at);
    LLVMValueRef dims[8];
    dims[0] = count;
    for (int k = 1; k < at->rank; k++)
        dims[k] = cg_arr_dimk(cg, a, k);
    LLVMValueRef out = cg_arr_new(cg, at->elem, at->rank, dims);
    LLVMValueRef m = inner_size(cg, a, 1, at->rank);
    copy_elems(cg, at->elem, cg_arr_data(cg, out), cg_i64(cg, 0), cg_arr_data(cg, a), LLVMBuildMul(cg->b, lo, m, ""),
               LLVMBuildMul(cg->b, count, m, ""));
    return out;
}

/* Integer matrix products (floats go to BLAS): [m,k]@[k,n], [m,k]@[k],
 * [k]@[k,n], [k]@[k]. */
static LLVMValueRef int_matmul(Cg *cg, CExpr *e, LLVMValueRef a, int ra, LLVMValueRef b, int rb)
{
    Type *el = cg_elem(core_atom_type(e->args[0]));
    LLVMValueRef M = ra == 2 ? cg_arr_dimk(cg, a, 0) : cg_i64(cg, 1);
    LLVMValueRef K = cg_arr_dimk(cg, a, ra - 1);
    LLVMValueRef Kb = cg_arr_dimk(cg, b, 0);
    LLVMValueRef N = rb == 2 ? cg_arr_dimk(cg, b, 1) : cg_i64(cg, 1);
    LLVMBasicBlockRef bad = cg_block(cg, "shape.fail"), good = cg_block(cg, "shape.ok");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, K, Kb, ""), good, bad);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    cg_call_rt(cg, "dl_shape_error", (LLVMValueRef[]){cg_srcloc(cg, e->loc), cg_cstr(cg, "@"), cg_i32(cg, ra),
                                                      cg_shape_ptr(cg, a), cg_i32(cg, rb), cg_shape_ptr(cg, b)}, 6);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, good);
    LLVMValueRef dims[2];
    int orank = 0;
    if (ra == 2)
        dims[orank++] = M;
    if (rb == 2)
        dims[orank++] = N;
    LLVMValueRef out = orank ? arr_zeros(cg, el, orank, dims) : NULL;
    LLVMValueRef acc = cg_alloca(cg, cg->t_i64, "acc");
    LLVMValueRef ad = cg_arr_data(cg, a), bd = cg_arr_data(cg, b);
    CgLoop li, lj, lk;
    LLVMValueRef i = cg_loop_begin(cg, &li, cg_i64(cg, 0), M);
    LLVMValueRef j = cg_loop_begin(cg, &lj, cg_i64(cg, 0), N);
    LLVMBuildStore(cg->b, cg_i64(cg, 0), acc);
    LLVMValueRef kk = cg_loop_begin(cg, &lk, cg_i64(cg, 0), K);
    LLVMValueRef x = cg_elem_load(cg, el, ad, LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, i, K, ""), kk, ""));
    LLVMValueRef y = cg_elem_load(cg, el, bd, LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, kk, N, ""), j, ""));
    LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, load_slot(cg, cg->t_i64, acc), LLVMBuildMul(cg->b, x, y, ""), ""), acc);
    cg_loop_end(cg, &lk);
    if (out)
        cg_elem_store(cg, el, cg_arr_data(cg, out), LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, i, N, ""), j, ""),
                      load_slot(cg, cg->t_i64, acc));
    cg_loop_end(cg, &lj);
    cg_loop_end(cg, &li);
    return out ? out : load_slot(cg, cg->t_i64, acc);
}

/* The operand of a transpose fused into the matrix product consuming it
 * (cg_fusable), else NULL. */
static CAtom *transposed(Cg *cg, CAtom *a)
{
    if (a->kind != CA_VAR || a->u.var->id >= cg->nvar)
        return NULL;
    CExpr *p = cg->defer[a->u.var->id];
    return p && p->kind == CE_PRIM && p->u.prim.op == P_TRANSPOSE ? p->args[0] : NULL;
}

/* A libdlrt BLAS entry point (dlrt.h) with its C signature: the result and
 * parameters spelt as in cg_rt ('b' bool, 'd' double, 'p' pointer). */
static LLVMValueRef blas_call(Cg *cg, const char *name, const char *sig, LLVMValueRef *args)
{
    LLVMTypeRef ps[16];
    int n = 0;
    for (const char *c = sig + 1; *c; c++)
        ps[n++] = *c == 'b' ? cg->t_i1 : *c == 'd' ? cg->t_f64 : cg->t_ptr;
    LLVMTypeRef ft = LLVMFunctionType(cg->t_ptr, ps, (unsigned)n, 0);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (!f) {
        f = LLVMAddFunction(cg->mod, name, ft);
        unsigned zext = LLVMGetEnumAttributeKindForName("zeroext", 7);
        for (int i = 0; i < n; i++)
            if (sig[1 + i] == 'b')
                LLVMAddAttributeAtIndex(f, (unsigned)i + 1, LLVMCreateEnumAttribute(cg->ctx, zext, 0));
    }
    return LLVMBuildCall2(cg->b, ft, f, args, (unsigned)n, "");
}

/* transpose a @ b, a @ transpose b (matrices, or one a vector) with the
 * transposes fused (as reverse mode writes the pullback of a product): one
 * xGEMM or xGEMV call with the transpose flags, never the transposed copy.
 * x @ B^T = B x. A mismatch is reported as '@' on the operands' shapes as
 * the program sees them. */
static LLVMValueRef matmul_transposed(Cg *cg, CExpr *e, CAtom *pa, bool ta, CAtom *pb, bool tb)
{
    LLVMValueRef a = cg_atom(cg, pa), b = cg_atom(cg, pb);
    int ra = cg_rank(core_atom_type(pa)), rb = cg_rank(core_atom_type(pb));
    LLVMValueRef da[2], db[2];
    for (int k = 0; k < ra; k++)
        da[ta ? ra - 1 - k : k] = cg_arr_dimk(cg, a, k);
    for (int k = 0; k < rb; k++)
        db[tb ? rb - 1 - k : k] = cg_arr_dimk(cg, b, k);
    LLVMBasicBlockRef bad = cg_block(cg, "mm.shape"), ok = cg_block(cg, "mm.ok");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, da[ra - 1], db[0], ""), ok, bad);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    cg_call_rt(cg, "dl_shape_error", (LLVMValueRef[]){cg_srcloc(cg, e->loc), cg_cstr(cg, "@"), cg_i32(cg, ra),
                                                      shape_buf(cg, ra, da), cg_i32(cg, rb), shape_buf(cg, rb, db)}, 6);
    LLVMBuildUnreachable(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, ok);
    LLVMValueRef one = LLVMConstReal(cg->t_f64, 1.0), zero = LLVMConstReal(cg->t_f64, 0.0);
    LLVMValueRef null = LLVMConstNull(cg->t_ptr), loc = cg_srcloc(cg, e->loc);
    if (ra == 2 && rb == 2)
        return blas_call(cg, "dl_gemm", "pbbdppdpp",
                         (LLVMValueRef[]){LLVMConstInt(cg->t_i1, ta, 0), LLVMConstInt(cg->t_i1, tb, 0), one, a, b,
                                          zero, null, loc});
    if (ra == 2) /* A^T x */
        return blas_call(cg, "dl_gemv", "pbdppdpp",
                         (LLVMValueRef[]){LLVMConstInt(cg->t_i1, 1, 0), one, a, b, zero, null, loc});
    /* x B^T = B x */
    return blas_call(cg, "dl_gemv", "pbdppdpp", (LLVMValueRef[]){LLVMConstInt(cg->t_i1, 0, 0), one, b, a, zero, null, loc});
}

static LLVMValueRef matmul_prim(Cg *cg, CExpr *e)
{
    Type *ta = cg_norm(core_atom_type(e->args[0])), *tb = cg_norm(core_atom_type(e->args[1]));
    CAtom *xa = e->u.prim.op == P_MATMUL ? transposed(cg, e->args[0]) : NULL;
    CAtom *xb = e->u.prim.op == P_MATMUL ? transposed(cg, e->args[1]) : NULL;
    if (xa || xb)
        return matmul_transposed(cg, e, xa ? xa : e->args[0], xa != NULL, xb ? xb : e->args[1], xb != NULL);
    LLVMValueRef a = cg_atom(cg, e->args[0]), b = cg_atom(cg, e->args[1]);
    Type *rt = cg_norm(e->type);
    if (cg_norm(ta->elem)->kind == TY_INT)
        return int_matmul(cg, e, a, ta->rank, b, tb->rank);
    if (rt->kind != TY_ARRAY) { /* vector . vector */
        LLVMValueRef d = cg_call_rt(cg, "dl_dot", (LLVMValueRef[]){a, b, cg_srcloc(cg, e->loc)}, 3);
        return rt->kind == TY_F32 ? LLVMBuildFPTrunc(cg->b, d, cg->t_f32, "") : d;
    }
    return cg_call_rt(cg, "dl_matmul", (LLVMValueRef[]){a, b, cg_srcloc(cg, e->loc)}, 3);
}

/* zip a b: pairs of the elements along axis 0. */
static LLVMValueRef zip_prim(Cg *cg, CExpr *e)
{
    Type *ta = cg_norm(core_atom_type(e->args[0])), *tb = cg_norm(core_atom_type(e->args[1]));
    Type *rt = cg_norm(e->type);
    LLVMValueRef a = cg_atom(cg, e->args[0]), b = cg_atom(cg, e->args[1]);
    LLVMValueRef n = cg_arr_dimk(cg, a, 0);
    check_same_shape(cg, a, 1, b, 1, 0, "zip", e->loc);
    ArrBuild ab;
    build_begin(cg, &ab, rt->elem, n, e->loc, "zip");
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), n);
    bool oa, ob;
    Type *ea = outer_type(ta), *eb = outer_type(tb);
    LLVMValueRef x = outer_elem(cg, ta, a, i, &oa), y = outer_elem(cg, tb, b, i, &ob);
    if (!oa)
        cg_retain(cg, ea, x);
    if (!ob)
        cg_retain(cg, eb, y);
    LLVMValueRef t = LLVMGetUndef(cg_type(cg, rt->elem));
    t = LLVMBuildInsertValue(cg->b, t, x, 0, "");
    t = LLVMBuildInsertValue(cg->b, t, y, 1, "");
    build_put(cg, &ab, i, t);
    cg_loop_end(cg, &l);
    return build_end(cg, &ab);
}

/* unzip: an array of pairs to a pair of arrays. */
static LLVMValueRef unzip_prim(Cg *cg, CExpr *e)
{
    Type *ta = cg_norm(core_atom_type(e->args[0]));
    Type *pt = cg_norm(ta->elem);
    LLVMValueRef a = cg_atom(cg, e->args[0]);
    LLVMValueRef n = cg_arr_dimk(cg, a, 0);
    int nc = pt->nargs;
    ArrBuild ab[8];
    for (int c = 0; c < nc && c < 8; c++)
        build_begin(cg, &ab[c], pt->args[c], n, e->loc, "unzip");
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), n);
    LLVMValueRef t = cg_elem_load(cg, pt, cg_arr_data(cg, a), i);
    for (int c = 0; c < nc && c < 8; c++) {
        LLVMValueRef x = LLVMBuildExtractValue(cg->b, t, (unsigned)c, "");
        cg_retain(cg, pt->args[c], x);
        build_put(cg, &ab[c], i, x);
    }
    cg_loop_end(cg, &l);
    LLVMValueRef r = LLVMGetUndef(cg_type(cg, e->type));
    for (int c = 0; c < nc && c < 8; c++)
        r = LLVMBuildInsertValue(cg->b, r, build_end(cg, &ab[c]), (unsigned)c, "");
    return r;
}

static LLVMValueRef random_prim(Cg *cg, CExpr *e, const char *fn)
{
    Type *rt = cg_norm(e->type);
    LLVMValueRef dims[8];
    int r = dims_of(cg, e, 1, dims);
    Type *el = rt->kind == TY_ARRAY ? rt->elem : rt;
    LLVMValueRef key = cg_key_to_i64(cg, cg_atom(cg, e->args[0]));
    LLVMValueRef a = cg_call_rt(cg, fn, (LLVMValueRef[]){key, cg_i32(cg, cg_dtype(el)), cg_i32(cg, r),
                                                         shape_buf(cg, r, dims)}, 4);
    if (rt->kind == TY_ARRAY)
        return a;
    LLVMValueRef v = cg_elem_load(cg, el, cg_arr_data(cg, a), cg_i64(cg, 0));
    cg_call_rt(cg, "dl_array_release", &a, 1);
    return v;
}

/* The zero of x's tangent space (type rt), structurally: arrays of the
 * same shape, tuples and records component by component. */
static LLVMValueRef zeros_like(Cg *cg, Type *rt, Type *xt, LLVMValueRef x)
{
    rt = cg_norm(rt);
    xt = cg_norm(xt);
    if (rt->kind == TY_ARRAY && xt->kind == TY_ARRAY) {
        LLVMValueRef dims[8];
        for (int k = 0; k < rt->rank; k++)
            dims[k] = cg_arr_dimk(cg, x, k);
        if (cg_is_scalar(rt->elem) || !cg_is_rc(cg, rt->elem))
            return arr_zeros(cg, rt->elem, rt->rank, dims);
        LLVMValueRef a = cg_arr_new(cg, rt->elem, rt->rank, dims);
        LLVMValueRef xd = cg_arr_data(cg, x), ad = cg_arr_data(cg, a);
        CgLoop l;
        LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), cg_arr_size(cg, a));
        cg_elem_store(cg, rt->elem, ad, i, zeros_like(cg, rt->elem, xt->elem, cg_elem_load(cg, xt->elem, xd, i)));
        cg_loop_end(cg, &l);
        return a;
    }
    bool rrec = rt->kind == TY_NAMED && rt->decl->kind == TD_RECORD;
    bool xrec = xt->kind == TY_NAMED && xt->decl->kind == TD_RECORD;
    if ((rt->kind == TY_TUPLE && xt->kind == TY_TUPLE) || (rrec && xrec)) {
        int n = rrec ? rt->decl->nfields : rt->nargs;
        LLVMValueRef v = LLVMGetUndef(cg_type(cg, rt));
        for (int i = 0; i < n; i++) {
            Type *rc = rrec ? cg_record_field(rt, i) : rt->args[i];
            Type *xc = xrec ? cg_record_field(xt, i) : xt->args[i];
            v = LLVMBuildInsertValue(cg->b, v,
                                     zeros_like(cg, rc, xc, LLVMBuildExtractValue(cg->b, x, (unsigned)i, "")),
                                     (unsigned)i, "");
        }
        return v;
    }
    if (cg_is_rc(cg, rt) && cg_tinfo(cg, rt) == cg_tinfo(cg, xt)) { /* no zero (variants): the value */
        cg_retain(cg, rt, x);
        return x;
    }
    return cg_zero_of(cg, rt);
}

/* ------------------------------------------------------------ dispatch */

bool cg_prim_is_array(CExpr *e)
{
    Prim op = e->u.prim.op;
    switch (op) {
    case P_ARRAY: case P_INDEX: case P_SLICE: case P_UPDATE: case P_LENGTH: case P_SHAPE:
    case P_IOTA: case P_REPLICATE: case P_ZEROS: case P_ONES: case P_ZEROS_LIKE: case P_FILL:
    case P_SUM: case P_PROD: case P_MEAN: case P_MAXIMUM: case P_MINIMUM: case P_ARGMAX:
    case P_SUM_AXIS0: case P_DOT: case P_MATMUL: case P_TRANSPOSE: case P_RESHAPE: case P_CONCAT:
    case P_REVERSE: case P_TAKE: case P_DROP: case P_ONE_HOT: case P_ZIP: case P_UNZIP:
    case P_SOFTMAX: case P_LOGSUMEXP: case P_DET: case P_INV: case P_SOLVE: case P_CHOLESKY:
    case P_UNIFORM: case P_NORMAL: case P_PERMUTATION: case P_READ_CSV: case P_READ_NPY:
    case P_WRITE_NPY: case P_READ_IDX:
        return true;
    default:
        break;
    }
    if (!(core_prims[op].flags & PRIM_ELEMENTWISE) && op != P_EQ && op != P_NE)
        return false;
    if (cg_is_array(e->type))
        return true;
    for (int i = 0; i < e->nargs; i++)
        if (cg_is_array(core_atom_type(e->args[i])))
            return true;
    return false;
}

LLVMValueRef cg_array_prim(Cg *cg, CExpr *e)
{
    Prim op = e->u.prim.op;
    Type *rt = cg_norm(e->type);
    Loc loc = e->loc;
    LLVMValueRef dims[8];
    switch (op) {
    case P_ARRAY:
        return array_literal(cg, e);
    case P_INDEX:
        return index_prim(cg, e);
    case P_SLICE:
        return slice_prim(cg, e);
    case P_UPDATE:
        return update_prim(cg, e);
    case P_LENGTH:
        return cg_arr_dimk(cg, cg_atom(cg, e->args[0]), 0);
    case P_SHAPE: {
        Type *at = cg_norm(core_atom_type(e->args[0]));
        LLVMValueRef a = cg_atom(cg, e->args[0]);
        if (rt->kind == TY_INT)
            return cg_arr_dimk(cg, a, 0);
        if (rt->kind == TY_TUPLE) {
            LLVMValueRef t = LLVMGetUndef(cg_type(cg, rt));
            for (int k = 0; k < rt->nargs; k++)
                t = LLVMBuildInsertValue(cg->b, t, cg_arr_dimk(cg, a, k), (unsigned)k, "");
            return t;
        }
        LLVMValueRef n = cg_i64(cg, at->rank);
        LLVMValueRef s = cg_arr_new(cg, rt->elem, 1, &n);
        for (int k = 0; k < at->rank; k++)
            cg_elem_store(cg, rt->elem, cg_arr_data(cg, s), cg_i64(cg, k), cg_arr_dimk(cg, a, k));
        return s;
    }
    case P_IOTA: {
        LLVMValueRef n = cg_atom(cg, e->args[0]);
        cg_check_dim(cg, n, loc, "iota");
        LLVMValueRef a = cg_arr_new(cg, rt->elem, 1, &n);
        LLVMValueRef d = cg_arr_data(cg, a);
        CgLoop l;
        LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), n);
        Type *it = NEW(Type);
        it->kind = TY_INT;
        cg_elem_store(cg, rt->elem, d, i, cg_convert(cg, i, it, rt->elem));
        cg_loop_end(cg, &l);
        return a;
    }
    case P_REPLICATE: {
        LLVMValueRef n = cg_atom(cg, e->args[0]);
        cg_check_dim(cg, n, loc, "replicate");
        Type *vt = cg_norm(core_atom_type(e->args[1]));
        LLVMValueRef v = cg_atom(cg, e->args[1]);
        if (vt->kind != TY_ARRAY)
            return fill(cg, rt->elem, 1, &n, v, false);
        dims[0] = n;
        for (int k = 0; k < vt->rank; k++)
            dims[k + 1] = cg_arr_dimk(cg, v, k);
        LLVMValueRef a = cg_arr_new(cg, rt->elem, rt->rank, dims);
        LLVMValueRef m = cg_arr_size(cg, v);
        CgLoop l;
        LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), n);
        copy_elems(cg, rt->elem, cg_arr_data(cg, a), LLVMBuildMul(cg->b, i, m, ""), cg_arr_data(cg, v), cg_i64(cg, 0), m);
        cg_loop_end(cg, &l);
        return a;
    }
    case P_ZEROS:
    case P_ONES: {
        int r = dims_of(cg, e, 0, dims);
        if (rt->kind != TY_ARRAY)
            return op == P_ZEROS ? cg_zero_of(cg, rt) : cg_one_of(cg, rt);
        if (op == P_ZEROS)
            return arr_zeros(cg, rt->elem, r, dims);
        return fill(cg, rt->elem, r, dims, cg_one_of(cg, rt->elem), false);
    }
    case P_FILL: {
        int r = dims_of(cg, e, 1, dims);
        return fill(cg, rt->elem, r, dims, cg_atom(cg, e->args[0]), false);
    }
    case P_ZEROS_LIKE:
        return zeros_like(cg, rt, core_atom_type(e->args[0]), cg_atom(cg, e->args[0]));
    case P_SUM:
    case P_PROD:
    case P_MEAN:
    case P_MAXIMUM:
    case P_MINIMUM:
        if (rt->kind == TY_ARRAY && op == P_SUM)
            return sum_axis0(cg, e);
        return cg_reduce_all(cg, e);
    case P_SUM_AXIS0:
        return sum_axis0(cg, e);
    case P_ARGMAX:
    case P_SOFTMAX:
    case P_LOGSUMEXP:
        return last_axis(cg, e);
    case P_DOT:
    case P_MATMUL:
        return matmul_prim(cg, e);
    case P_TRANSPOSE: {
        Type *at = cg_norm(core_atom_type(e->args[0]));
        LLVMValueRef r = cg_call_rt(cg, "dl_transpose", (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_srcloc(cg, loc)}, 2);
        if (at->rank >= 2)
            cg_array_retain_elems(cg, at->elem, r);
        return r;
    }
    case P_RESHAPE: {
        Type *at = cg_norm(core_atom_type(e->args[0]));
        int r = dims_of(cg, e, 1, dims);
        LLVMValueRef a = cg_take(cg, e->args[0]);
        if (cg_is_rc(cg, at->elem))
            a = arr_unique(cg, at->elem, a);
        return cg_call_rt(cg, "dl_array_reshape", (LLVMValueRef[]){a, cg_i32(cg, r), shape_buf(cg, r, dims),
                                                                   cg_srcloc(cg, loc)}, 4);
    }
    case P_CONCAT: {
        Type *at = cg_norm(core_atom_type(e->args[0]));
        LLVMValueRef a = cg_atom(cg, e->args[0]), b = cg_atom(cg, e->args[1]);
        check_same_shape(cg, a, at->rank, b, at->rank, 1, "concat", loc);
        LLVMValueRef na = cg_arr_dimk(cg, a, 0), nb = cg_arr_dimk(cg, b, 0);
        dims[0] = LLVMBuildAdd(cg->b, na, nb, "");
        for (int k = 1; k < at->rank; k++)
            dims[k] = cg_arr_dimk(cg, a, k);
        LLVMValueRef out = cg_arr_new(cg, at->elem, at->rank, dims);
        LLVMValueRef sa = cg_arr_size(cg, a);
        copy_elems(cg, at->elem, cg_arr_data(cg, out), cg_i64(cg, 0), cg_arr_data(cg, a), cg_i64(cg, 0), sa);
        copy_elems(cg, at->elem, cg_arr_data(cg, out), sa, cg_arr_data(cg, b), cg_i64(cg, 0), cg_arr_size(cg, b));
        return out;
    }
    case P_REVERSE: {
        Type *at = cg_norm(core_atom_type(e->args[0]));
        LLVMValueRef a = cg_atom(cg, e->args[0]);
        LLVMValueRef n = cg_arr_dimk(cg, a, 0);
        for (int k = 0; k < at->rank; k++)
            dims[k] = cg_arr_dimk(cg, a, k);
        LLVMValueRef out = cg_arr_new(cg, at->elem, at->rank, dims);
        LLVMValueRef m = inner_size(cg, a, 1, at->rank);
        CgLoop l;
        LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), n);
        LLVMValueRef src = LLVMBuildSub(cg->b, LLVMBuildSub(cg->b, n, cg_i64(cg, 1), ""), i, "");
        copy_elems(cg, at->elem, cg_arr_data(cg, out), LLVMBuildMul(cg->b, i, m, ""), cg_arr_data(cg, a),
                   LLVMBuildMul(cg->b, src, m, ""), m);
        cg_loop_end(cg, &l);
        return out;
    }
    case P_TAKE:
    case P_DROP: {
        Type *at = core_atom_type(e->args[1]);
        LLVMValueRef k = cg_atom(cg, e->args[0]), a = cg_atom(cg, e->args[1]);
        LLVMValueRef n = cg_arr_dimk(cg, a, 0);
        LLVMValueRef ok = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, k, cg_i64(cg, 0), ""),
                                       LLVMBuildICmp(cg->b, LLVMIntSLE, k, n, ""), "");
        LLVMValueRef vals[2] = {k, n};
        cg_check(cg, ok, loc, op == P_TAKE ? "cannot take %lld elements of an array of length %lld"
                                        : "cannot drop %lld elements of an array of length %lld", vals, 2);
        if (op == P_TAKE)
            return rows_copy(cg, at, a, cg_i64(cg, 0), k);
        return rows_copy(cg, at, a, k, LLVMBuildSub(cg->b, n, k, ""));
    }
    case P_ONE_HOT: {
        LLVMValueRef n = cg_atom(cg, e->args[0]);
        cg_check_dim(cg, n, loc, "one_hot");
        Type *it = cg_norm(core_atom_type(e->args[1]));
        LLVMValueRef iv = cg_atom(cg, e->args[1]);
        int r = 0;
        if (it->kind == TY_ARRAY)
            for (; r < it->rank; r++)
                dims[r] = cg_arr_dimk(cg, iv, r);
        dims[r] = n;
        LLVMValueRef out = arr_zeros(cg, rt->elem, r + 1, dims);
        LLVMValueRef od = cg_arr_data(cg, out);
        LLVMValueRef cnt = it->kind == TY_ARRAY ? cg_arr_size(cg, iv) : cg_i64(cg, 1);
        CgLoop l;
        LLVMValueRef t = cg_loop_begin(cg, &l, cg_i64(cg, 0), cnt);
        LLVMValueRef idx = it->kind == TY_ARRAY ? cg_elem_load(cg, it->elem, cg_arr_data(cg, iv), t) : iv;
        bounds_check(cg, idx, n, 0, loc);
        cg_elem_store(cg, rt->elem, od, LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, t, n, ""), idx, ""),
                      cg_one_of(cg, rt->elem));
        cg_loop_end(cg, &l);
        return out;
    }
    case P_ZIP:
        return zip_prim(cg, e);
    case P_UNZIP:
        return unzip_prim(cg, e);
    case P_DET: {
        LLVMValueRef d = cg_call_rt(cg, "dl_det", (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_srcloc(cg, loc)}, 2);
        return rt->kind == TY_F32 ? LLVMBuildFPTrunc(cg->b, d, cg->t_f32, "") : d;
    }
    case P_INV:
        return cg_call_rt(cg, "dl_inv", (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_srcloc(cg, loc)}, 2);
    case P_CHOLESKY:
        return cg_call_rt(cg, "dl_cholesky", (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_srcloc(cg, loc)}, 2);
    case P_SOLVE:
        return cg_call_rt(cg, "dl_solve", (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_atom(cg, e->args[1]),
                                                           cg_srcloc(cg, loc)}, 3);
    case P_UNIFORM:
        return random_prim(cg, e, "dl_uniform");
    case P_NORMAL:
        return random_prim(cg, e, "dl_normal");
    case P_PERMUTATION:
        return cg_call_rt(cg, "dl_random_permutation",
                          (LLVMValueRef[]){cg_key_to_i64(cg, cg_atom(cg, e->args[0])), cg_atom(cg, e->args[1])}, 2);
    case P_READ_CSV:
        return cg_call_rt(cg, "dl_read_csv", (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_srcloc(cg, loc)}, 2);
    case P_READ_NPY:
    case P_READ_IDX: {
        int dt = cg_dtype(rt->elem);
        return cg_call_rt(cg, op == P_READ_NPY ? "dl_read_npy" : "dl_read_idx",
                          (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_i32(cg, dt), cg_i32(cg, rt->rank),
                                           cg_srcloc(cg, loc)}, 4);
    }
    case P_WRITE_NPY:
        cg_call_rt(cg, "dl_write_npy", (LLVMValueRef[]){cg_atom(cg, e->args[0]), cg_atom(cg, e->args[1]),
                                                        cg_srcloc(cg, loc)}, 3);
        return cg_unit(cg);
    case P_EQ:
    case P_NE:
        if (rt->kind != TY_ARRAY) {
            LLVMValueRef eq = cg_array_equal(cg, core_atom_type(e->args[0]), cg_atom(cg, e->args[0]),
                                             cg_atom(cg, e->args[1]));
            return op == P_EQ ? eq : LLVMBuildNot(cg->b, eq, "");
        }
        return cg_elementwise(cg, e);
    default:
        break;
    }
    if (core_prims[op].flags & PRIM_ELEMENTWISE)
        return cg_elementwise(cg, e);
    fatal("internal error: codegen: array primitive '%s'", core_prims[op].name);
}

/* ------------------------------------------------------------ SOACs */

static void bind_elem(Cg *cg, CVar *p, Type *at, LLVMValueRef a, LLVMValueRef i, LLVMValueRef *owned_out)
{
    bool owned;
    LLVMValueRef x = outer_elem(cg, at, a, i, &owned);
    cg_set_var(cg, p, x);
    *owned_out = owned ? x : NULL;
}

/* map (fn i => x[i]) idx, x of rank >= 2 with scalar elements (a gather of
 * rows, as batching writes it): each row is copied once, straight into the
 * result, instead of into a new sub-array first. NULL when e is not that.
 * The result's shape is the general map's: [n, rows of x], [0, 0, ...] when
 * n is 0. */
static LLVMValueRef gather_rows(Cg *cg, CExpr *e)
{
    CLambda *fn = e->u.soac.fn;
    if (e->u.soac.kind != SOAC_MAP || e->nargs != 1 || fn->nparams != 1 || fn->body->nbinds != 1)
        return NULL;
    CBind *bd = &fn->body->binds[0];
    CExpr *x = bd->e;
    CAtom *res = fn->body->result;
    if (x->kind != CE_PRIM || x->u.prim.op != P_INDEX || x->nargs != 2 || res->kind != CA_VAR ||
        res->u.var != bd->var)
        return NULL;
    CAtom *src = x->args[0], *ix = x->args[1];
    if (ix->kind != CA_VAR || ix->u.var != fn->params[0] || src->kind != CA_VAR || src->u.var == fn->params[0])
        return NULL;
    Type *st = cg_norm(core_atom_type(src)), *it = cg_norm(core_atom_type(e->args[0]));
    if (st->kind != TY_ARRAY || st->rank < 2 || !cg_is_scalar(st->elem) || it->kind != TY_ARRAY || it->rank != 1 ||
        cg_norm(it->elem)->kind != TY_INT)
        return NULL;
    LLVMValueRef idx = cg_atom(cg, e->args[0]), a = cg_atom(cg, src);
    LLVMValueRef n = cg_arr_dimk(cg, idx, 0), rows = cg_arr_dimk(cg, a, 0);
    LLVMValueRef empty = LLVMBuildICmp(cg->b, LLVMIntEQ, n, cg_i64(cg, 0), "");
    LLVMValueRef dims[8];
    dims[0] = n;
    for (int k = 1; k < st->rank; k++)
        dims[k] = LLVMBuildSelect(cg->b, empty, cg_i64(cg, 0), cg_arr_dimk(cg, a, k), "");
    LLVMValueRef out = cg_arr_new(cg, st->elem, st->rank, dims);
    LLVMValueRef m = inner_size(cg, a, 1, st->rank);
    LLVMValueRef bytes = LLVMBuildMul(cg->b, m, cg_i64(cg, elem_size(cg, st->elem)), "");
    LLVMValueRef od = cg_arr_data(cg, out), ad = cg_arr_data(cg, a), id = cg_arr_data(cg, idx);
    CgLoop l;
    LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), n);
    LLVMValueRef j = cg_elem_load(cg, it->elem, id, i);
    bounds_check(cg, j, rows, 0, x->loc);
    unsigned al = elem_align(cg, st->elem);
    LLVMBuildMemCpy(cg->b, elem_ptr(cg, st->elem, od, LLVMBuildMul(cg->b, i, m, "")), al,
                    elem_ptr(cg, st->elem, ad, LLVMBuildMul(cg->b, j, m, "")), al, bytes);
    cg_loop_end(cg, &l);
    return out;
}

LLVMValueRef cg_soac(Cg *cg, CExpr *e)
{
    CLambda *fn = e->u.soac.fn;
    Type *rt = cg_norm(e->type);
    Loc loc = e->loc;
    if (cg_scalar_map(e))
        return cg_fused_store(cg, e, e->nargs == 2 ? "map2" : e->nargs == 3 ? "map3" : "map");
    if (cg_scalar_fold(e))
        return cg_fused_fold(cg, e);
    LLVMValueRef g = gather_rows(cg, e);
    if (g)
        return g;
    switch (e->u.soac.kind) {
    case SOAC_MAP: {
        int n = e->nargs;
        LLVMValueRef a[8];
        Type *at[8];
        for (int k = 0; k < n && k < 8; k++) {
            a[k] = cg_atom(cg, e->args[k]);
            at[k] = cg_norm(core_atom_type(e->args[k]));
        }
        LLVMValueRef len = cg_arr_dimk(cg, a[0], 0);
        for (int k = 1; k < n; k++)
            check_same_shape(cg, a[0], 1, a[k], 1, 0, n == 2 ? "map2" : n == 3 ? "map3" : "map", loc);
        ArrBuild ab;
        build_begin(cg, &ab, outer_type(rt), len, loc, "map");
        CgLoop l;
        LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), len);
        LLVMValueRef own[8];
        for (int k = 0; k < n; k++)
            bind_elem(cg, fn->params[k], at[k], a[k], i, &own[k]);
        LLVMValueRef r = cg_emit_block(cg, fn->body, NULL, 0);
        build_put(cg, &ab, i, r);
        for (int k = 0; k < n; k++)
            if (own[k])
                cg_release(cg, outer_type(at[k]), own[k]);
        cg_loop_end(cg, &l);
        return build_end(cg, &ab);
    }
    case SOAC_REDUCE:
    case SOAC_FOLD:
    case SOAC_SCAN: {
        Type *acct = fn->params[0]->type;
        LLVMTypeRef acclt = cg_type(cg, acct);
        Type *at = cg_norm(core_atom_type(e->args[1]));
        LLVMValueRef a = cg_atom(cg, e->args[1]);
        LLVMValueRef acc = cg_alloca(cg, acclt, "acc");
        LLVMBuildStore(cg->b, cg_take(cg, e->args[0]), acc);
        LLVMValueRef len = cg_arr_dimk(cg, a, 0);
        bool scan = e->u.soac.kind == SOAC_SCAN;
        ArrBuild ab;
        if (scan)
            build_begin(cg, &ab, outer_type(rt), len, loc, "scan");
        CgLoop l;
        LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), len);
        LLVMValueRef old = LLVMBuildLoad2(cg->b, acclt, acc, "");
        cg_set_var(cg, fn->params[0], old);
        LLVMValueRef own;
        bind_elem(cg, fn->params[1], at, a, i, &own);
        LLVMValueRef r = cg_emit_block(cg, fn->body, NULL, 0);
        cg_release(cg, acct, old);
        if (own)
            cg_release(cg, outer_type(at), own);
        LLVMBuildStore(cg->b, r, acc);
        if (scan) {
            cg_retain(cg, acct, r);
            build_put(cg, &ab, i, r);
        }
        cg_loop_end(cg, &l);
        LLVMValueRef fin = LLVMBuildLoad2(cg->b, acclt, acc, "");
        if (!scan)
            return fin;
        cg_release(cg, acct, fin);
        return build_end(cg, &ab);
    }
    case SOAC_FILTER: {
        Type *at = cg_norm(core_atom_type(e->args[0]));
        LLVMValueRef a = cg_atom(cg, e->args[0]);
        LLVMValueRef dims[8];
        for (int k = 0; k < at->rank; k++)
            dims[k] = cg_arr_dimk(cg, a, k);
        LLVMValueRef out = cg_arr_new(cg, at->elem, at->rank, dims);
        LLVMValueRef m = inner_size(cg, a, 1, at->rank);
        LLVMValueRef cnt = cg_alloca(cg, cg->t_i64, "kept");
        LLVMBuildStore(cg->b, cg_i64(cg, 0), cnt);
        CgLoop l;
        LLVMValueRef i = cg_loop_begin(cg, &l, cg_i64(cg, 0), dims[0]);
        LLVMValueRef own;
        bind_elem(cg, fn->params[0], at, a, i, &own);
        LLVMValueRef keep = cg_emit_block(cg, fn->body, NULL, 0);
        if (own)
            cg_release(cg, outer_type(at), own);
        LLVMBasicBlockRef yes = cg_block(cg, "keep"), next = cg_block(cg, "next");
        LLVMBuildCondBr(cg->b, keep, yes, next);
        LLVMPositionBuilderAtEnd(cg->b, yes);
        LLVMValueRef c = LLVMBuildLoad2(cg->b, cg->t_i64, cnt, "");
        copy_elems(cg, at->elem, cg_arr_data(cg, out), LLVMBuildMul(cg->b, c, m, ""), cg_arr_data(cg, a),
                   LLVMBuildMul(cg->b, i, m, ""), m);
        LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, c, cg_i64(cg, 1), ""), cnt);
        LLVMBuildBr(cg->b, next);
        LLVMPositionBuilderAtEnd(cg->b, next);
        cg_loop_end(cg, &l);
        /* shrink the header: the block stays, only the shape changes */
        LLVMValueRef c2 = LLVMBuildLoad2(cg->b, cg->t_i64, cnt, "");
        cg_tbaa(cg, LLVMBuildStore(cg->b, c2, LLVMBuildGEP2(cg->b, cg->t_i64, cg_shape_ptr(cg, out), (LLVMValueRef[]){cg_i64(cg, 0)}, 1, "")),
                CG_TBAA_HEADER);
        cg_tbaa(cg, LLVMBuildStore(cg->b, LLVMBuildMul(cg->b, c2, m, ""), LLVMBuildStructGEP2(cg->b, cg->t_array, out, CG_ARR_SIZE, "")),
                CG_TBAA_HEADER);
        return out;
    }
    }
    return NULL;
}
