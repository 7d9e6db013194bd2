/* blas.c — matrix products through CBLAS (OpenBLAS), and transposition.
 * All arrays are row-major, so every call passes CblasRowMajor with the
 * leading dimension equal to the row length. BLAS rejects a leading dimension
 * of 0 and sizes beyond int, so empty operands are handled here, not by BLAS. */
#include "internal.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

static void check_float_pair(const char *op, const dl_array *a, const dl_array *b,
                             const dl_srcloc *loc)
{
    if (!((a->dtype == DL_F64 || a->dtype == DL_F32) && a->dtype == b->dtype))
        dl_error(loc, "'%s' needs two float or two f32 arrays, got %s and %s", op,
                 dl_dtype_name(a->dtype), dl_dtype_name(b->dtype));
}

static void check_blas_dims(const char *op, const dl_array *a, const dl_array *b,
                            const dl_srcloc *loc)
{
    for (int32_t i = 0; i < a->rank; i++)
        if (a->shape[i] > INT_MAX)
            goto big;
    for (int32_t i = 0; i < b->rank; i++)
        if (b->shape[i] > INT_MAX)
            goto big;
    return;
big:;
    char sa[256], sb[256];
    dl_format_shape(sa, sizeof sa, a->rank, a->shape);
    dl_format_shape(sb, sizeof sb, b->rank, b->shape);
    dl_error(loc, "'%s': dimension too large for BLAS in %s and %s", op, sa, sb);
}

static void shape_mismatch(const char *op, const dl_array *a, const dl_array *b,
                           const dl_srcloc *loc)
{
    dl_shape_error(loc, op, a->rank, a->shape, b->rank, b->shape);
}

static double dot_raw(const dl_array *a, const dl_array *b)
{
    int n = (int)a->size;
    if (n == 0)
        return 0.0;
    if (a->dtype == DL_F64)
        return cblas_ddot(n, a->data, 1, b->data, 1);
    return cblas_sdot(n, a->data, 1, b->data, 1);
}

/* y := alpha op(A) x + beta y with A [rows, cols]; y already holds its input
 * (ignored when beta is 0, as in BLAS). */
static void gemv_raw(bool trans, double alpha, const dl_array *a, const void *x, double beta,
                     dl_array *y)
{
    int rows = (int)a->shape[0], cols = (int)a->shape[1];
    int64_t ny = trans ? cols : rows, nx = trans ? rows : cols;
    if (ny == 0)
        return;
    if (nx == 0) {
        for (int64_t i = 0; i < ny; i++) {
            if (y->dtype == DL_F64) {
                double *p = (double *)y->data + i;
                *p = beta == 0.0 ? 0.0 : beta * *p;
            } else {
                float *p = (float *)y->data + i;
                *p = beta == 0.0 ? 0.0f : (float)beta * *p;
            }
        }
        return;
    }
    CBLAS_TRANSPOSE t = trans ? CblasTrans : CblasNoTrans;
    if (a->dtype == DL_F64)
        cblas_dgemv(CblasRowMajor, t, rows, cols, alpha, a->data, cols, x, 1, beta, y->data, 1);
    else
        cblas_sgemv(CblasRowMajor, t, rows, cols, (float)alpha, a->data, cols, x, 1,
                    (float)beta, y->data, 1);
}

/* C [m,n] := alpha op(A) op(B) + beta C, op(A) [m,k], op(B) [k,n]. */
static void gemm_raw(bool ta, bool tb, int m, int n, int k, double alpha, const dl_array *a,
                     const dl_array *b, double beta, dl_array *c)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        for (int64_t i = 0; i < c->size; i++) {
            if (c->dtype == DL_F64) {
                double *p = (double *)c->data + i;
                *p = beta == 0.0 ? 0.0 : beta * *p;
            } else {
                float *p = (float *)c->data + i;
                *p = beta == 0.0 ? 0.0f : (float)beta * *p;
            }
        }
        return;
    }
    int lda = (int)a->shape[1], ldb = (int)b->shape[1];
    CBLAS_TRANSPOSE tA = ta ? CblasTrans : CblasNoTrans, tB = tb ? CblasTrans : CblasNoTrans;
    if (a->dtype == DL_F64)
        cblas_dgemm(CblasRowMajor, tA, tB, m, n, k, alpha, a->data, lda, b->data, ldb, beta,
                    c->data, n);
    else
        cblas_sgemm(CblasRowMajor, tA, tB, m, n, k, (float)alpha, a->data, lda, b->data, ldb,
                    (float)beta, c->data, n);
}

dl_array *dl_matmul(const dl_array *a, const dl_array *b, const dl_srcloc *loc)
{
    check_float_pair("@", a, b, loc);
    if (a->rank < 1 || a->rank > 2 || b->rank < 1 || b->rank > 2) {
        char sa[256], sb[256];
        dl_format_shape(sa, sizeof sa, a->rank, a->shape);
        dl_format_shape(sb, sizeof sb, b->rank, b->shape);
        dl_error(loc, "'@' needs vectors or matrices, got shapes %s and %s", sa, sb);
    }
    check_blas_dims("@", a, b, loc);
    int64_t ka = a->shape[a->rank - 1], kb = b->shape[0];
    if (ka != kb)
        shape_mismatch("@", a, b, loc);
    dl_array *gpu = dlrt_gpu_matmul(a, b);
    if (gpu)
        return gpu;
    DL_HOST(a); DL_HOST(b);
    int32_t dt = a->dtype;
    if (a->rank == 1 && b->rank == 1) {
        dl_array *r = dl_array_new(dt, 0, NULL);
        double d = dot_raw(a, b);
        if (dt == DL_F64)
            *(double *)r->data = d;
        else
            *(float *)r->data = (float)d;
        return r;
    }
    if (a->rank == 2 && b->rank == 1) {           /* [m,k] @ [k] -> [m] */
        dl_array *y = dl_array_new(dt, 1, a->shape);
        gemv_raw(false, 1.0, a, b->data, 0.0, y);
        return y;
    }
    if (a->rank == 1) {                           /* [k] @ [k,n] = B^T x -> [n] */
        dl_array *y = dl_array_new(dt, 1, &b->shape[1]);
        gemv_raw(true, 1.0, b, a->data, 0.0, y);
        return y;
    }
    int64_t shape[2] = { a->shape[0], b->shape[1] };
    dl_array *c = dl_array_new(dt, 2, shape);
    gemm_raw(false, false, (int)shape[0], (int)shape[1], (int)ka, 1.0, a, b, 0.0, c);
    return c;
}

double dl_dot(const dl_array *a, const dl_array *b, const dl_srcloc *loc)
{
    check_float_pair("dot", a, b, loc);
    if (a->rank != 1 || b->rank != 1 || a->size != b->size)
        shape_mismatch("dot", a, b, loc);
    check_blas_dims("dot", a, b, loc);
    DL_HOST(a); DL_HOST(b);
    return dot_raw(a, b);
}

/* The output operand of dl_gemm/dl_gemv: new when NULL, else made unique
 * after its shape and dtype are checked (so that an error leaves it alone). */
static dl_array *output_operand(const char *op, dl_array *c, int32_t dtype, int32_t rank,
                                const int64_t *shape, double *beta, const dl_srcloc *loc)
{
    if (!c) {
        *beta = 0.0;
        return dl_array_new(dtype, rank, shape);
    }
    bool ok = c->dtype == dtype && c->rank == rank;
    for (int32_t i = 0; ok && i < rank; i++)
        ok = c->shape[i] == shape[i];
    if (!ok) {
        char want[256], got[256];
        dl_format_shape(want, sizeof want, rank, shape);
        dl_format_shape(got, sizeof got, c->rank, c->shape);
        dl_error(loc, "'%s': output must be %s of shape %s, got %s of shape %s", op,
                 dl_dtype_name(dtype), want, dl_dtype_name(c->dtype), got);
    }
    return dl_array_unique(c);
}

dl_array *dl_gemm(bool trans_a, bool trans_b, double alpha, const dl_array *a,
                  const dl_array *b, double beta, dl_array *c, const dl_srcloc *loc)
{
    check_float_pair("gemm", a, b, loc);
    if (a->rank != 2 || b->rank != 2)
        shape_mismatch("gemm", a, b, loc);
    check_blas_dims("gemm", a, b, loc);
    int64_t m = trans_a ? a->shape[1] : a->shape[0], ka = trans_a ? a->shape[0] : a->shape[1];
    int64_t kb = trans_b ? b->shape[1] : b->shape[0], n = trans_b ? b->shape[0] : b->shape[1];
    if (ka != kb)
        shape_mismatch(trans_a ? (trans_b ? "gemm A^T B^T" : "gemm A^T B")
                               : (trans_b ? "gemm A B^T" : "gemm A B"), a, b, loc);
    int64_t shape[2] = { m, n };
    DL_HOST(a); DL_HOST(b); DL_HOST_W(c);
    c = output_operand("gemm", c, a->dtype, 2, shape, &beta, loc);
    gemm_raw(trans_a, trans_b, (int)m, (int)n, (int)ka, alpha, a, b, beta, c);
    return c;
}

dl_array *dl_gemv(bool trans_a, double alpha, const dl_array *a, const dl_array *x,
                  double beta, dl_array *y, const dl_srcloc *loc)
{
    check_float_pair("gemv", a, x, loc);
    if (a->rank != 2 || x->rank != 1)
        shape_mismatch("gemv", a, x, loc);
    check_blas_dims("gemv", a, x, loc);
    int64_t nin = trans_a ? a->shape[0] : a->shape[1], nout = trans_a ? a->shape[1] : a->shape[0];
    if (nin != x->shape[0])
        shape_mismatch(trans_a ? "gemv A^T x" : "gemv A x", a, x, loc);
    DL_HOST(a); DL_HOST(x); DL_HOST_W(y);
    y = output_operand("gemv", y, a->dtype, 1, &nout, &beta, loc);
    gemv_raw(trans_a, alpha, a, x->data, beta, y);
    return y;
}

dl_array *dl_outer(const dl_array *x, const dl_array *y, const dl_srcloc *loc)
{
    check_float_pair("outer", x, y, loc);
    if (x->rank != 1 || y->rank != 1)
        shape_mismatch("outer", x, y, loc);
    check_blas_dims("outer", x, y, loc);
    int64_t shape[2] = { x->shape[0], y->shape[0] };
    DL_HOST(x); DL_HOST(y);
    dl_array *c = dl_array_zeros(x->dtype, 2, shape);
    int m = (int)shape[0], n = (int)shape[1];
    if (m == 0 || n == 0)
        return c;
    if (x->dtype == DL_F64)
        cblas_dger(CblasRowMajor, m, n, 1.0, x->data, 1, y->data, 1, c->data, n);
    else
        cblas_sger(CblasRowMajor, m, n, 1.0f, x->data, 1, y->data, 1, c->data, n);
    return c;
}

/* ---------------------------------------------------------------- transpose */

#define TILE 32

/* 2-D, in tiles so that both the reads and the writes stay in cache. */
#define TRANSPOSE_2D(T)                                                            \
    do {                                                                           \
        const T *src = a->data;                                                    \
        T *dst = r->data;                                                          \
        for (int64_t i0 = 0; i0 < rows; i0 += TILE)                                \
            for (int64_t j0 = 0; j0 < cols; j0 += TILE) {                          \
                int64_t i1 = i0 + TILE < rows ? i0 + TILE : rows;                  \
                int64_t j1 = j0 + TILE < cols ? j0 + TILE : cols;                  \
                for (int64_t i = i0; i < i1; i++)                                  \
                    for (int64_t j = j0; j < j1; j++)                              \
                        dst[j * rows + i] = src[i * cols + j];                     \
            }                                                                      \
    } while (0)

dl_array *dl_transpose(const dl_array *a, const dl_srcloc *loc)
{
    if (a->rank < 2)
        return dl_array_retain((dl_array *)a);
    dl_array *gpu = dlrt_gpu_transpose(a);
    if (gpu)
        return gpu;
    DL_HOST(a);
    int64_t shape[DL_MAX_RANK];
    int32_t rk = a->rank;
    for (int32_t i = 0; i < rk; i++)
        shape[i] = a->shape[rk - 1 - i];
    dl_array *r = a->dtype == DL_BYTES ? dl_array_new_bytes(a->elem_size, rk, shape)
                                       : dl_array_new(a->dtype, rk, shape);
    if (a->size == 0)
        return r;
    if (rk == 2) {
        int64_t rows = a->shape[0], cols = a->shape[1];
        switch (a->elem_size) {
        case 8: TRANSPOSE_2D(uint64_t); return r;
        case 4: TRANSPOSE_2D(uint32_t); return r;
        case 1: TRANSPOSE_2D(uint8_t); return r;
        default: break;
        }
    }
    /* General case: walk the result in row-major order; result axis i is
     * source axis rk-1-i, whose source stride is the product of the source
     * dimensions after it. */
    int64_t sstride[DL_MAX_RANK], step[DL_MAX_RANK], idx[DL_MAX_RANK];
    int64_t s = 1;
    for (int32_t i = rk - 1; i >= 0; i--) {
        sstride[i] = s;
        s *= a->shape[i];
    }
    for (int32_t i = 0; i < rk; i++) {
        step[i] = sstride[rk - 1 - i];
        idx[i] = 0;
    }
    size_t es = (size_t)a->elem_size;
    const char *src = a->data;
    char *dst = r->data;
    int64_t off = 0;
    for (int64_t k = 0; k < r->size; k++) {
        memcpy(dst + k * es, src + off * es, es);
        for (int32_t i = rk - 1; i >= 0; i--) {
            off += step[i];
            if (++idx[i] < shape[i])
                break;
            off -= step[i] * shape[i];
            idx[i] = 0;
        }
    }
    return r;
}

/* ---------------------------------------------------------------- LAPACK */

/* LAPACK through OpenBLAS (which builds it in), called by its Fortran names:
 * every argument by reference, character arguments followed by their hidden
 * lengths. LAPACK is column-major; a row-major array read column-major is
 * its transpose, which the routines below use instead of copying:
 * det(A^T) = det(A), inv(A^T)^T = inv(A), and A = L L^T is, read the other
 * way, A = U^T U with U = L^T (LAPACK's upper Cholesky factor). */
extern void dgetrf_(const int *m, const int *n, double *a, const int *lda, int *ipiv, int *info);
extern void dgetrs_(const char *trans, const int *n, const int *nrhs, const double *a,
                    const int *lda, const int *ipiv, double *b, const int *ldb, int *info,
                    size_t trans_len);
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);

/* A square F64 or F32 matrix of order <= INT_MAX, as a new F64 copy. */
static dl_array *square_f64(const char *op, const dl_array *a, const dl_srcloc *loc)
{
    if (a->dtype != DL_F64 && a->dtype != DL_F32)
        dl_error(loc, "'%s' needs a float or f32 matrix, got %s", op, dl_dtype_name(a->dtype));
    if (a->rank != 2 || a->shape[0] != a->shape[1] || a->shape[0] > INT_MAX) {
        char s[256];
        dl_format_shape(s, sizeof s, a->rank, a->shape);
        dl_error(loc, "'%s' needs a square matrix, got shape %s", op, s);
    }
    return a->dtype == DL_F64 ? dl_array_copy(a) : dl_array_cast(a, DL_F64, loc);
}

/* The result in the dtype of the argument; consumes r. */
static dl_array *as_dtype(dl_array *r, int32_t dtype)
{
    if (dtype == DL_F64)
        return r;
    dl_array *c = dl_array_cast(r, dtype, NULL);
    dl_array_release(r);
    return c;
}

/* LU with partial pivoting (xGETRF) of lu in place; returns LAPACK's info
 * (> 0: U has an exact zero on the diagonal). ipiv: n entries. */
static int lu_factor(dl_array *lu, int *ipiv)
{
    int n = (int)lu->shape[0], info = 0;
    if (n > 0)
        dgetrf_(&n, &n, lu->data, &n, ipiv, &info);
    return info;
}

/* det A = (-1)^(row swaps) * prod diag(U). */
double dl_det(const dl_array *a, const dl_srcloc *loc)
{
    dl_array *lu = square_f64("det", a, loc);
    int n = (int)lu->shape[0];
    int *ipiv = dlrt_alloc(sizeof(int) * (size_t)(n ? n : 1));
    int info = lu_factor(lu, ipiv);
    double d = 1.0;
    if (info > 0) {
        d = 0.0;
    } else {
        const double *u = lu->data;
        for (int i = 0; i < n; i++) {
            d *= u[(size_t)i * n + i];
            if (ipiv[i] != i + 1)
                d = -d;
        }
    }
    dlrt_free(ipiv);
    dl_array_release(lu);
    return d;
}

/* Solves op(A) X = B for the columns of the column-major x (n x nrhs):
 * lu holds the factors of A read column-major, i.e. of the row-major A^T. */
static void lu_solve(const char *trans, dl_array *lu, const int *ipiv, double *x, int nrhs)
{
    int n = (int)lu->shape[0], info = 0;
    if (n > 0 && nrhs > 0)
        dgetrs_(trans, &n, &nrhs, lu->data, &n, ipiv, x, &n, &info, 1);
}

static DL_NORETURN void singular(const char *op, dl_array *lu, int *ipiv, dl_array *r,
                                 const dl_srcloc *loc)
{
    dlrt_free(ipiv);
    dl_array_release(lu);
    dl_array_release(r);
    dl_error(loc, "'%s': the matrix is singular", op);
}

/* inv A: the factors are of A^T (the row-major data read column-major);
 * solving A^T Y = I gives Y = inv(A)^T column-major, which is inv(A) read
 * row-major. */
dl_array *dl_inv(const dl_array *a, const dl_srcloc *loc)
{
    dl_array *lu = square_f64("inv", a, loc);
    int n = (int)lu->shape[0];
    dl_array *r = dl_array_zeros(DL_F64, 2, lu->shape);
    int *ipiv = dlrt_alloc(sizeof(int) * (size_t)(n ? n : 1));
    if (lu_factor(lu, ipiv) > 0)
        singular("inv", lu, ipiv, r, loc);
    for (int i = 0; i < n; i++)
        ((double *)r->data)[(size_t)i * n + i] = 1.0;
    lu_solve("N", lu, ipiv, r->data, n);
    dlrt_free(ipiv);
    dl_array_release(lu);
    return as_dtype(r, a->dtype);
}

/* solve A b: A [n,n] with b [n] or [n,k]. With the factors of A^T, the
 * transposed solve ('T') gives A x = b. A matrix right-hand side must be
 * column-major: its row-major transpose is, and so is the answer. */
dl_array *dl_solve(const dl_array *a, const dl_array *b, const dl_srcloc *loc)
{
    if (b->dtype != a->dtype)
        dl_error(loc, "'solve' needs arrays of one type, got %s and %s", dl_dtype_name(a->dtype),
                 dl_dtype_name(b->dtype));
    if (a->rank != 2 || (b->rank != 1 && b->rank != 2) || a->shape[0] != b->shape[0] ||
        b->shape[b->rank - 1] > INT_MAX)
        dl_shape_error(loc, "solve", a->rank, a->shape, b->rank, b->shape);
    dl_array *lu = square_f64("solve", a, loc);
    int n = (int)lu->shape[0];
    dl_array *x;
    int nrhs;
    if (b->rank == 1) {
        x = b->dtype == DL_F64 ? dl_array_copy(b) : dl_array_cast(b, DL_F64, loc);
        nrhs = 1;
    } else {
        dl_array *b64 = b->dtype == DL_F64 ? dl_array_retain((dl_array *)b)
                                           : dl_array_cast(b, DL_F64, loc);
        x = dl_transpose(b64, loc);
        dl_array_release(b64);
        nrhs = (int)b->shape[1];
    }
    int *ipiv = dlrt_alloc(sizeof(int) * (size_t)(n ? n : 1));
    if (lu_factor(lu, ipiv) > 0)
        singular("solve", lu, ipiv, x, loc);
    lu_solve("T", lu, ipiv, x->data, nrhs);
    dlrt_free(ipiv);
    dl_array_release(lu);
    if (b->rank == 2) {
        dl_array *t = dl_transpose(x, loc);
        dl_array_release(x);
        x = t;
    }
    return as_dtype(x, a->dtype);
}

/* cholesky A: the lower-triangular L with A = L L^T, for A symmetric positive
 * definite (only A's lower triangle is read). DPOTRF('U') on the row-major
 * data factors A^T = A as U^T U and leaves U column-major, which is L = U^T
 * row-major; the other triangle still holds A and is cleared. */
dl_array *dl_cholesky(const dl_array *a, const dl_srcloc *loc)
{
    dl_array *l = square_f64("cholesky", a, loc);
    int n = (int)l->shape[0], info = 0;
    if (n > 0)
        dpotrf_("U", &n, l->data, &n, &info, 1);
    if (info > 0) {
        dl_array_release(l);
        dl_error(loc, "'cholesky': the matrix is not positive definite (leading minor %d)", info);
    }
    double *p = l->data;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            p[(size_t)i * n + j] = 0.0;
    return as_dtype(l, a->dtype);
}
