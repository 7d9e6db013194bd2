/* array.c — allocation, reference-counted arrays, shapes and broadcasting. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- allocation */

/* One hook for every allocation, as Lua's lua_Alloc and Wren's reallocateFn:
 * (NULL, n) allocates, (p, 0) frees, (p, n) resizes. */
static void *default_realloc(void *p, size_t n)
{
    if (n == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, n);
}

static void *(*alloc_hook)(void *, size_t) = default_realloc;

void dl_set_allocator(void *(*realloc_fn)(void *ptr, size_t size))
{
    alloc_hook = realloc_fn ? realloc_fn : default_realloc;
}

/* Each block is [padding | raw pointer, size | payload], the payload aligned
 * to DLRT_ALIGN; the pair just below the payload finds the raw block again. */
typedef struct BlockInfo {
    void *raw;
    size_t size;
} BlockInfo;

#define BLOCK_EXTRA (DLRT_ALIGN + sizeof(BlockInfo))

void *dlrt_alloc(size_t n)
{
    if (n > SIZE_MAX - BLOCK_EXTRA)
        dl_error(NULL, "out of memory (asked for %zu bytes)", n);
    char *raw = alloc_hook(NULL, n + BLOCK_EXTRA);
    if (!raw)
        dl_error(NULL, "out of memory (asked for %zu bytes)", n);
    uintptr_t p = ((uintptr_t)raw + sizeof(BlockInfo) + DLRT_ALIGN - 1) & ~(uintptr_t)(DLRT_ALIGN - 1);
    BlockInfo *info = (BlockInfo *)p - 1;
    info->raw = raw;
    info->size = n;
    return (void *)p;
}

void dlrt_free(void *p)
{
    if (p)
        alloc_hook(((BlockInfo *)p - 1)->raw, 0);
}

/* The offset of the payload inside the raw block depends on the raw
 * address, so a resize cannot use the hook's realloc in place. */
void *dlrt_realloc(void *p, size_t n)
{
    if (!p)
        return dlrt_alloc(n);
    size_t old = ((BlockInfo *)p - 1)->size;
    void *q = dlrt_alloc(n);
    memcpy(q, p, old < n ? old : n);
    dlrt_free(p);
    return q;
}

char *dlrt_strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    return memcpy(dlrt_alloc(n), s, n);
}

/* ---------------------------------------------------------------- dtypes */

int64_t dl_dtype_size(int32_t dtype)
{
    switch (dtype) {
    case DL_F64: return 8;
    case DL_F32: return 4;
    case DL_I64: return 8;
    case DL_U8: return 1;
    case DL_BOOL: return 1;
    default: return 0;
    }
}

const char *dl_dtype_name(int32_t dtype)
{
    switch (dtype) {
    case DL_F64: return "float";
    case DL_F32: return "f32";
    case DL_I64: return "int";
    case DL_U8: return "u8";
    case DL_BOOL: return "bool";
    case DL_BYTES: return "bytes";
    default: return "?";
    }
}

/* ---------------------------------------------------------------- shapes */

int dl_format_shape(char *buf, size_t n, int32_t rank, const int64_t *shape)
{
    size_t len = 0;
    int total = 0;
#define PUT(...)                                                                 \
    do {                                                                         \
        int w_ = snprintf(buf ? buf + len : NULL, len < n ? n - len : 0, __VA_ARGS__); \
        total += w_;                                                             \
        len = len + w_ < n ? len + w_ : (n ? n - 1 : 0);                         \
    } while (0)
    if (n && buf)
        buf[0] = 0;
    PUT("[");
    for (int32_t i = 0; i < rank; i++)
        PUT("%s%lld", i ? ", " : "", (long long)shape[i]);
    PUT("]");
#undef PUT
    return total;
}

int64_t dlrt_checked_size(int32_t rank, const int64_t *shape, int64_t elem_size,
                          const dl_srcloc *loc)
{
    if (rank < 0 || rank > DL_MAX_RANK)
        dl_error(loc, "array rank %d is outside 0..%d", (int)rank, DL_MAX_RANK);
    int64_t size = 1;
    for (int32_t i = 0; i < rank; i++)
        if (shape[i] < 0) {
            char s[256];
            dl_format_shape(s, sizeof s, rank, shape);
            dl_error(loc, "negative dimension %lld in shape %s", (long long)shape[i], s);
        }
    int64_t bytes;
    for (int32_t i = 0; i < rank; i++)
        if (__builtin_mul_overflow(size, shape[i], &size))
            goto overflow;
    if (__builtin_mul_overflow(size, elem_size, &bytes) ||
        (uint64_t)bytes > (uint64_t)(SIZE_MAX / 2 - DLRT_HEADER - BLOCK_EXTRA))
        goto overflow;
    return size;
overflow:;
    char s[256];
    dl_format_shape(s, sizeof s, rank, shape);
    dl_error(loc, "array of shape %s is too large", s);
}

void dl_check_shape(int32_t rank, const int64_t *shape, const dl_srcloc *loc)
{
    dlrt_checked_size(rank, shape, 8, loc);
}

static dl_array *array_alloc(int32_t dtype, int64_t elem_size, int32_t rank,
                             const int64_t *shape)
{
    int64_t size = dlrt_checked_size(rank, shape, elem_size, NULL);
    dl_array *a = dlrt_alloc(DLRT_HEADER + (size_t)(size * elem_size));
    a->refcount = 1;
    a->dtype = dtype;
    a->rank = rank;
    a->elem_size = elem_size;
    a->size = size;
    for (int32_t i = 0; i < DL_MAX_RANK; i++)
        a->shape[i] = i < rank ? shape[i] : 0;
    a->data = (char *)a + DLRT_HEADER;
    return a;
}

dl_array *dl_array_new(int32_t dtype, int32_t rank, const int64_t *shape)
{
    int64_t es = dl_dtype_size(dtype);
    if (es == 0)
        dl_error(NULL, "dl_array_new: bad dtype %d (DL_BYTES arrays come from "
                       "dl_array_new_bytes)", (int)dtype);
    return array_alloc(dtype, es, rank, shape);
}

dl_array *dl_array_zeros(int32_t dtype, int32_t rank, const int64_t *shape)
{
    dl_array *a = dl_array_new(dtype, rank, shape);
    memset(a->data, 0, (size_t)dl_array_nbytes(a));
    return a;
}

dl_array *dl_array_new_bytes(int64_t elem_size, int32_t rank, const int64_t *shape)
{
    if (elem_size < 1)
        dl_error(NULL, "dl_array_new_bytes: element size %lld must be positive",
                 (long long)elem_size);
    return array_alloc(DL_BYTES, elem_size, rank, shape);
}

dl_array *dl_array_from_data(int32_t dtype, int32_t rank, const int64_t *shape,
                             const void *data)
{
    dl_array *a = dl_array_new(dtype, rank, shape);
    if (a->size)
        memcpy(a->data, data, (size_t)dl_array_nbytes(a));
    return a;
}

int64_t dl_array_nbytes(const dl_array *a) { return a->size * a->elem_size; }

/* ---------------------------------------------------------------- references */

dl_array *dl_array_retain(dl_array *a)
{
    if (a && a->refcount >= 0)
        __atomic_add_fetch(&a->refcount, 1, __ATOMIC_RELAXED);
    return a;
}

void dl_array_release(dl_array *a)
{
    if (!a || a->refcount < 0)
        return;
    if (__atomic_sub_fetch(&a->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
        DL_GPU_FORGET(a);
        dlrt_free(a);
    }
}

dl_array *dl_array_copy(const dl_array *a)
{
    DL_HOST(a);
    dl_array *c = array_alloc(a->dtype, a->elem_size, a->rank, a->shape);
    if (a->size)
        memcpy(c->data, a->data, (size_t)dl_array_nbytes(a));
    return c;
}

/* The count is read once: when it is 1 the caller holds the only reference,
 * so no other thread can raise it concurrently. */
dl_array *dl_array_unique(dl_array *a)
{
    if (__atomic_load_n(&a->refcount, __ATOMIC_ACQUIRE) == 1)
        return a;
    dl_array *c = dl_array_copy(a);
    dl_array_release(a);
    return c;
}

dl_array *dl_array_reshape(dl_array *a, int32_t rank, const int64_t *shape,
                           const dl_srcloc *loc)
{
    int64_t sh[DL_MAX_RANK];
    if (rank < 0 || rank > DL_MAX_RANK)
        dl_error(loc, "cannot reshape to rank %d (at most %d)", (int)rank, DL_MAX_RANK);
    int infer = -1;
    int64_t known = 1;
    bool bad = false;
    for (int32_t i = 0; i < rank; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1 && infer < 0)
            infer = i;
        else if (shape[i] < 0)
            bad = true;
        else if (__builtin_mul_overflow(known, shape[i], &known))
            bad = true;
    }
    if (!bad && infer >= 0) {
        if (known == 0 || a->size % known != 0)
            bad = true;
        else
            sh[infer] = a->size / known;
    } else if (!bad && known != a->size) {
        bad = true;
    }
    if (bad) {
        char s1[256], s2[256];
        dl_format_shape(s1, sizeof s1, a->rank, a->shape);
        dl_format_shape(s2, sizeof s2, rank, shape);
        dl_array_release(a);
        dl_error(loc, "cannot reshape %s to %s", s1, s2);
    }
    a = dl_array_unique(a);
    a->rank = rank;
    for (int32_t i = 0; i < DL_MAX_RANK; i++)
        a->shape[i] = i < rank ? sh[i] : 0;
    return a;
}

/* ---------------------------------------------------------------- casts */

static double load_f64(const dl_array *a, int64_t i)
{
    switch (a->dtype) {
    case DL_F64: return ((const double *)a->data)[i];
    case DL_F32: return ((const float *)a->data)[i];
    case DL_I64: return (double)((const int64_t *)a->data)[i];
    case DL_U8: return ((const uint8_t *)a->data)[i];
    case DL_BOOL: return ((const uint8_t *)a->data)[i] != 0;
    }
    return 0;
}

dl_array *dl_array_cast(const dl_array *a, int32_t dtype, const dl_srcloc *loc)
{
    if (a->dtype == DL_BYTES || dl_dtype_size(dtype) == 0)
        dl_error(loc, "cannot convert an array of %s to %s", dl_dtype_name(a->dtype),
                 dl_dtype_name(dtype));
    DL_HOST(a);
    if (a->dtype == dtype)
        return dl_array_copy(a);
    dl_array *r = dl_array_new(dtype, a->rank, a->shape);
    for (int64_t i = 0; i < a->size; i++) {
        switch (dtype) {
        case DL_F64: ((double *)r->data)[i] = a->dtype == DL_I64
                         ? (double)((const int64_t *)a->data)[i] : load_f64(a, i);
            break;
        case DL_F32: ((float *)r->data)[i] = a->dtype == DL_I64
                         ? (float)((const int64_t *)a->data)[i] : (float)load_f64(a, i);
            break;
        case DL_I64:
            if (a->dtype == DL_F64 || a->dtype == DL_F32) {
                double x = load_f64(a, i);
                /* the int64 range is [-2^63, 2^63) */
                if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0)) {
                    dl_array_release(r);
                    dl_error(loc, "cannot convert %g to int", x);
                }
                ((int64_t *)r->data)[i] = (int64_t)x;
            } else {
                ((int64_t *)r->data)[i] = (int64_t)load_f64(a, i);
            }
            break;
        case DL_U8:
            if (a->dtype == DL_I64)
                ((uint8_t *)r->data)[i] = (uint8_t)((const int64_t *)a->data)[i];
            else {
                double x = load_f64(a, i);
                if (!(x > -1.0 && x < 256.0)) {
                    dl_array_release(r);
                    dl_error(loc, "cannot convert %g to u8", x);
                }
                ((uint8_t *)r->data)[i] = (uint8_t)x;
            }
            break;
        case DL_BOOL:
            ((uint8_t *)r->data)[i] = a->dtype == DL_I64
                ? ((const int64_t *)a->data)[i] != 0 : load_f64(a, i) != 0;
            break;
        }
    }
    return r;
}

bool dl_array_equal(const dl_array *a, const dl_array *b)
{
    DL_HOST(a); DL_HOST(b);
    if (a->dtype != b->dtype || a->rank != b->rank || a->elem_size != b->elem_size)
        return false;
    for (int32_t i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    switch (a->dtype) {
    case DL_F64:
        for (int64_t i = 0; i < a->size; i++)
            if (((const double *)a->data)[i] != ((const double *)b->data)[i])
                return false;
        return true;
    case DL_F32:
        for (int64_t i = 0; i < a->size; i++)
            if (((const float *)a->data)[i] != ((const float *)b->data)[i])
                return false;
        return true;
    default:
        return a->size == 0 || memcmp(a->data, b->data, (size_t)dl_array_nbytes(a)) == 0;
    }
}

/* ---------------------------------------------------------------- broadcasting */

void dl_shape_error(const dl_srcloc *loc, const char *op, int32_t rank_a,
                    const int64_t *shape_a, int32_t rank_b, const int64_t *shape_b)
{
    char sa[256], sb[256];
    dl_format_shape(sa, sizeof sa, rank_a, shape_a);
    dl_format_shape(sb, sizeof sb, rank_b, shape_b);
    dl_error(loc, "shape mismatch in '%s': %s and %s", op ? op : "?", sa, sb);
}

/* NumPy rule: align on the right; equal dimensions, or one of them 1. */
int32_t dl_broadcast_shapes(int32_t rank_a, const int64_t *shape_a, int32_t rank_b,
                            const int64_t *shape_b, const char *op,
                            int64_t out_shape[DL_MAX_RANK], const dl_srcloc *loc)
{
    int32_t r = rank_a > rank_b ? rank_a : rank_b;
    for (int32_t i = 0; i < r; i++) {
        int32_t ia = rank_a - r + i, ib = rank_b - r + i;
        int64_t da = ia >= 0 ? shape_a[ia] : 1, db = ib >= 0 ? shape_b[ib] : 1;
        if (da == db || db == 1)
            out_shape[i] = da;
        else if (da == 1)
            out_shape[i] = db;
        else
            dl_shape_error(loc, op, rank_a, shape_a, rank_b, shape_b);
    }
    for (int32_t i = r; i < DL_MAX_RANK; i++)
        out_shape[i] = 0;
    return r;
}

int32_t dl_broadcast_shape(const dl_array *a, const dl_array *b, const char *op,
                           int64_t out_shape[DL_MAX_RANK], const dl_srcloc *loc)
{
    return dl_broadcast_shapes(a->rank, a->shape, b->rank, b->shape, op, out_shape, loc);
}

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } BinOp;

/* The reference loop: an index counter over the result shape, each operand
 * stepping by its row-major stride, or 0 along a broadcast dimension. */
static dl_array *binary_f64(BinOp op, const char *name, const dl_array *a, const dl_array *b,
                            const dl_srcloc *loc)
{
    if (a->dtype != DL_F64 || b->dtype != DL_F64)
        dl_error(loc, "'%s' on arrays of %s and %s (expected float)", name,
                 dl_dtype_name(a->dtype), dl_dtype_name(b->dtype));
    int64_t shape[DL_MAX_RANK], sa[DL_MAX_RANK], sb[DL_MAX_RANK], idx[DL_MAX_RANK];
    int32_t r = dl_broadcast_shape(a, b, name, shape, loc);
    DL_HOST(a); DL_HOST(b);
    int64_t stra = 1, strb = 1;
    for (int32_t i = r - 1; i >= 0; i--) {
        int32_t ia = a->rank - r + i, ib = b->rank - r + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        sa[i] = da == 1 ? 0 : stra;
        sb[i] = db == 1 ? 0 : strb;
        stra *= da;
        strb *= db;
        idx[i] = 0;
    }
    dl_array *c = dl_array_new(DL_F64, r, shape);
    const double *x = a->data, *y = b->data;
    double *z = c->data;
    int64_t oa = 0, ob = 0;
    for (int64_t k = 0; k < c->size; k++) {
        double u = x[oa], v = y[ob];
        switch (op) {
        case BIN_ADD: z[k] = u + v; break;
        case BIN_SUB: z[k] = u - v; break;
        case BIN_MUL: z[k] = u * v; break;
        case BIN_DIV: z[k] = u / v; break;
        }
        for (int32_t i = r - 1; i >= 0; i--) {
            oa += sa[i];
            ob += sb[i];
            if (++idx[i] < shape[i])
                break;
            oa -= sa[i] * shape[i];
            ob -= sb[i] * shape[i];
            idx[i] = 0;
        }
    }
    return c;
}

dl_array *dl_add_f64(const dl_array *a, const dl_array *b, const dl_srcloc *loc)
{
    return binary_f64(BIN_ADD, "+", a, b, loc);
}

dl_array *dl_sub_f64(const dl_array *a, const dl_array *b, const dl_srcloc *loc)
{
    return binary_f64(BIN_SUB, "-", a, b, loc);
}

dl_array *dl_mul_f64(const dl_array *a, const dl_array *b, const dl_srcloc *loc)
{
    return binary_f64(BIN_MUL, "*", a, b, loc);
}

dl_array *dl_div_f64(const dl_array *a, const dl_array *b, const dl_srcloc *loc)
{
    return binary_f64(BIN_DIV, "/", a, b, loc);
}
