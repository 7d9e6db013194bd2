/* test_rt_blas.c — libdlrt matrix products against naive loops. */
#include <check.h>
#include <dlrt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EXPECT_ERROR(stmt, substr)                                                       \
    do {                                                                                 \
        jmp_buf jb_;                                                                     \
        if (setjmp(jb_) == 0) {                                                          \
            dl_error_trap_push(&jb_);                                                    \
            stmt;                                                                        \
            dl_error_trap_pop();                                                         \
            ck_abort_msg("no error from: %s", #stmt);                                    \
        } else {                                                                         \
            ck_assert_msg(strstr(dl_last_error(), substr) != NULL,                       \
                          "error \"%s\" lacks \"%s\"", dl_last_error(), substr);         \
        }                                                                                \
    } while (0)

/* Test data from a fixed LCG (Knuth's MMIX constants), values in [-1, 1). */
static uint64_t lcg_state = 12345;

static double next_val(void)
{
    lcg_state = lcg_state * 6364136223846793005u + 1442695040888963407u;
    return (double)(lcg_state >> 11) * 0x1p-52 - 1.0;
}

static dl_array *rand_array(int32_t dtype, int32_t rank, const int64_t *shape)
{
    dl_array *a = dl_array_new(dtype, rank, shape);
    for (int64_t i = 0; i < a->size; i++) {
        if (dtype == DL_F64)
            ((double *)a->data)[i] = next_val();
        else
            ((float *)a->data)[i] = (float)next_val();
    }
    return a;
}

static double get(const dl_array *a, int64_t i)
{
    return a->dtype == DL_F64 ? ((double *)a->data)[i] : ((float *)a->data)[i];
}

/* Naive product with the @ rules: a vector on the left is a row, on the
 * right a column; the result drops those unit axes. */
static void naive_matmul(const dl_array *a, const dl_array *b, double *out, int64_t *m_out,
                         int64_t *n_out)
{
    int64_t m = a->rank == 2 ? a->shape[0] : 1, k = a->shape[a->rank - 1];
    int64_t n = b->rank == 2 ? b->shape[1] : 1;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++)
                s += get(a, i * k + l) * get(b, l * n + j);
            out[i * n + j] = s;
        }
    *m_out = m;
    *n_out = n;
}

static void check_matmul(int32_t dtype, int32_t ra, const int64_t *sa, int32_t rb,
                         const int64_t *sb, double tol)
{
    dl_array *a = rand_array(dtype, ra, sa), *b = rand_array(dtype, rb, sb);
    dl_array *c = dl_matmul(a, b, NULL);
    double *want = malloc(sizeof(double) * 4096);
    int64_t m, n;
    naive_matmul(a, b, want, &m, &n);
    ck_assert_int_eq(c->dtype, dtype);
    ck_assert_int_eq(c->rank, (ra == 2) + (rb == 2));
    if (ra == 2)
        ck_assert_int_eq(c->shape[0], m);
    if (rb == 2)
        ck_assert_int_eq(c->shape[c->rank - 1], n);
    ck_assert_int_eq(c->size, m * n);
    for (int64_t i = 0; i < m * n; i++)
        ck_assert_msg(fabs(get(c, i) - want[i]) <= tol, "element %lld: %g vs %g", (long long)i,
                      get(c, i), want[i]);
    free(want);
    dl_array_release(a);
    dl_array_release(b);
    dl_array_release(c);
}

START_TEST(test_matmul_f64)
{
    int64_t a[2] = { 7, 5 }, b[2] = { 5, 9 }, v5[1] = { 5 }, v7[1] = { 7 };
    check_matmul(DL_F64, 2, a, 2, b, 1e-12);    /* matrix · matrix */
    check_matmul(DL_F64, 2, a, 1, v5, 1e-12);   /* matrix · vector */
    check_matmul(DL_F64, 1, v7, 2, a, 1e-12);   /* vector · matrix */
    check_matmul(DL_F64, 1, v5, 1, v5, 1e-12);  /* vector · vector */
    int64_t big[2] = { 33, 47 }, big2[2] = { 47, 29 };
    check_matmul(DL_F64, 2, big, 2, big2, 1e-11);
}
END_TEST

START_TEST(test_matmul_f32)
{
    int64_t a[2] = { 6, 4 }, b[2] = { 4, 3 }, v4[1] = { 4 }, v6[1] = { 6 };
    check_matmul(DL_F32, 2, a, 2, b, 1e-5);
    check_matmul(DL_F32, 2, a, 1, v4, 1e-5);
    check_matmul(DL_F32, 1, v6, 2, a, 1e-5);
    check_matmul(DL_F32, 1, v4, 1, v4, 1e-5);
}
END_TEST

START_TEST(test_matmul_exact)
{
    int64_t s[2] = { 2, 2 };
    double x[4] = { 1, 2, 3, 4 }, y[4] = { 5, 6, 7, 8 };
    dl_array *a = dl_array_from_data(DL_F64, 2, s, x), *b = dl_array_from_data(DL_F64, 2, s, y);
    dl_array *c = dl_matmul(a, b, NULL);
    double want[4] = { 19, 22, 43, 50 };
    for (int i = 0; i < 4; i++)
        ck_assert(((double *)c->data)[i] == want[i]);
    int64_t n = 2;
    dl_array *v = dl_array_from_data(DL_F64, 1, &n, x);
    dl_array *d = dl_matmul(v, v, NULL);
    ck_assert_int_eq(d->rank, 0);
    ck_assert(*(double *)d->data == 5.0);
    ck_assert(dl_dot(v, v, NULL) == 5.0);
    dl_array *e = dl_matmul(v, a, NULL);   /* [1,2] @ [[1,2],[3,4]] = [7, 10] */
    ck_assert(((double *)e->data)[0] == 7 && ((double *)e->data)[1] == 10);
    dl_array *f = dl_matmul(a, v, NULL);   /* [[1,2],[3,4]] @ [1,2] = [5, 11] */
    ck_assert(((double *)f->data)[0] == 5 && ((double *)f->data)[1] == 11);
    dl_array *arrs[] = { a, b, c, v, d, e, f };
    for (int i = 0; i < 7; i++)
        dl_array_release(arrs[i]);
}
END_TEST

START_TEST(test_matmul_empty)
{
    int64_t s03[2] = { 0, 3 }, s32[2] = { 3, 2 }, s20[2] = { 2, 0 }, s04[2] = { 0, 4 };
    dl_array *a = dl_array_zeros(DL_F64, 2, s03), *b = rand_array(DL_F64, 2, s32);
    dl_array *c = dl_matmul(a, b, NULL);
    ck_assert_int_eq(c->shape[0], 0);
    ck_assert_int_eq(c->shape[1], 2);
    dl_array *p = dl_array_zeros(DL_F64, 2, s20), *q = dl_array_zeros(DL_F64, 2, s04);
    dl_array *r = dl_matmul(p, q, NULL);   /* k = 0: zeros [2, 4] */
    ck_assert_int_eq(r->size, 8);
    for (int i = 0; i < 8; i++)
        ck_assert(((double *)r->data)[i] == 0.0);
    int64_t z = 0;
    dl_array *e = dl_array_zeros(DL_F32, 1, &z);
    dl_array *d = dl_matmul(e, e, NULL);
    ck_assert(*(float *)d->data == 0.0f);
    dl_array *arrs[] = { a, b, c, p, q, r, e, d };
    for (int i = 0; i < 8; i++)
        dl_array_release(arrs[i]);
}
END_TEST

START_TEST(test_matmul_errors)
{
    int64_t s32[2] = { 3, 2 }, s4[1] = { 4 }, s222[3] = { 2, 2, 2 }, s2[1] = { 2 };
    dl_array *a = dl_array_zeros(DL_F64, 2, s32), *v = dl_array_zeros(DL_F64, 1, s4);
    dl_array *t = dl_array_zeros(DL_F64, 3, s222), *w = dl_array_zeros(DL_F32, 1, s2);
    dl_array *i = dl_array_zeros(DL_I64, 1, s2);
    dl_srcloc loc = { "nn.dl", 7, 3 };
    EXPECT_ERROR(dl_matmul(a, v, &loc), "shape mismatch in '@': [3, 2] and [4]");
    ck_assert_int_eq(dl_last_error_loc().line, 7);
    EXPECT_ERROR(dl_matmul(v, a, NULL), "shape mismatch in '@': [4] and [3, 2]");
    EXPECT_ERROR(dl_matmul(a, a, NULL), "[3, 2] and [3, 2]");
    EXPECT_ERROR(dl_matmul(t, a, NULL), "vectors or matrices, got shapes [2, 2, 2] and [3, 2]");
    EXPECT_ERROR(dl_matmul(a, w, NULL), "two float or two f32 arrays, got float and f32");
    EXPECT_ERROR(dl_matmul(i, i, NULL), "got int and int");
    EXPECT_ERROR(dl_dot(v, a, NULL), "shape mismatch in 'dot'");
    dl_array *arrs[] = { a, v, t, w, i };
    for (int k = 0; k < 5; k++)
        dl_array_release(arrs[k]);
}
END_TEST

/* C := alpha op(A) op(B) + beta C for all four transpose combinations. */
static void check_gemm(int32_t dtype, bool ta, bool tb, double tol)
{
    int64_t m = 4, k = 6, n = 5;
    int64_t sa[2] = { ta ? k : m, ta ? m : k }, sb[2] = { tb ? n : k, tb ? k : n };
    int64_t sc[2] = { m, n };
    dl_array *a = rand_array(dtype, 2, sa), *b = rand_array(dtype, 2, sb);
    dl_array *c = rand_array(dtype, 2, sc);
    dl_array *c0 = dl_array_copy(c);
    dl_array *shared = dl_array_retain(c);   /* a second holder: c must not change */
    double alpha = 0.75, beta = -0.5;
    dl_array *r = dl_gemm(ta, tb, alpha, a, b, beta, c, NULL);
    ck_assert_ptr_ne(r, shared);
    ck_assert(dl_array_equal(shared, c0));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++) {
                double x = ta ? get(a, l * m + i) : get(a, i * k + l);
                double y = tb ? get(b, j * k + l) : get(b, l * n + j);
                s += x * y;
            }
            double want = alpha * s + beta * get(c0, i * n + j);
            ck_assert_msg(fabs(get(r, i * n + j) - want) <= tol, "gemm %d%d (%lld,%lld)", ta, tb,
                          (long long)i, (long long)j);
        }
    /* C NULL: a fresh product, beta ignored */
    dl_array *r2 = dl_gemm(ta, tb, 1.0, a, b, 123.0, NULL, NULL);
    ck_assert_int_eq(r2->shape[0], m);
    ck_assert_int_eq(r2->shape[1], n);
    /* unique C: updated in place */
    dl_array *r3 = dl_gemm(ta, tb, 1.0, a, b, 1.0, r2, NULL);
    ck_assert_ptr_eq(r3, r2);
    dl_array *arrs[] = { a, b, c0, shared, r, r3 };
    for (int i = 0; i < 6; i++)
        dl_array_release(arrs[i]);
}

START_TEST(test_gemm)
{
    for (int t = 0; t < 4; t++) {
        check_gemm(DL_F64, t & 1, t & 2, 1e-12);
        check_gemm(DL_F32, t & 1, t & 2, 1e-5);
    }
    int64_t s[2] = { 2, 3 };
    dl_array *a = dl_array_zeros(DL_F64, 2, s);
    EXPECT_ERROR(dl_gemm(false, false, 1, a, a, 0, NULL, NULL),
                 "shape mismatch in 'gemm A B': [2, 3] and [2, 3]");
    dl_array *ok = dl_gemm(false, true, 1, a, a, 0, NULL, NULL);   /* [2,3] [3,2] */
    ck_assert_int_eq(ok->shape[0], 2);
    ck_assert_int_eq(ok->shape[1], 2);
    EXPECT_ERROR(dl_gemm(false, true, 1, a, a, 0, a, NULL), "output must be float of shape [2, 2]");
    dl_array_release(ok);
    dl_array_release(a);
}
END_TEST

START_TEST(test_gemv_outer)
{
    int64_t sa[2] = { 3, 4 }, s3 = 3, s4 = 4;
    dl_array *a = rand_array(DL_F64, 2, sa), *x4 = rand_array(DL_F64, 1, &s4);
    dl_array *x3 = rand_array(DL_F64, 1, &s3);
    dl_array *y = dl_gemv(false, 2.0, a, x4, 0.0, NULL, NULL);
    dl_array *yt = dl_gemv(true, 1.0, a, x3, 0.0, NULL, NULL);
    ck_assert_int_eq(y->size, 3);
    ck_assert_int_eq(yt->size, 4);
    for (int i = 0; i < 3; i++) {
        double s = 0;
        for (int j = 0; j < 4; j++)
            s += get(a, i * 4 + j) * get(x4, j);
        ck_assert(fabs(get(y, i) - 2 * s) < 1e-12);
    }
    for (int j = 0; j < 4; j++) {
        double s = 0;
        for (int i = 0; i < 3; i++)
            s += get(a, i * 4 + j) * get(x3, i);
        ck_assert(fabs(get(yt, j) - s) < 1e-12);
    }
    EXPECT_ERROR(dl_gemv(false, 1, a, x3, 0, NULL, NULL), "shape mismatch in 'gemv A x'");
    dl_array *o = dl_outer(x3, x4, NULL);
    ck_assert_int_eq(o->shape[0], 3);
    ck_assert_int_eq(o->shape[1], 4);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            ck_assert(fabs(get(o, i * 4 + j) - get(x3, i) * get(x4, j)) < 1e-15);
    dl_array *arrs[] = { a, x4, x3, y, yt, o };
    for (int i = 0; i < 6; i++)
        dl_array_release(arrs[i]);
}
END_TEST

START_TEST(test_transpose)
{
    int64_t s[2] = { 37, 45 };
    int32_t dts[3] = { DL_F64, DL_F32, DL_U8 };
    for (int d = 0; d < 3; d++) {
        dl_array *a = dl_array_new(dts[d], 2, s);
        for (int64_t i = 0; i < a->size; i++) {
            if (dts[d] == DL_F64)
                ((double *)a->data)[i] = (double)i;
            else if (dts[d] == DL_F32)
                ((float *)a->data)[i] = (float)i;
            else
                ((uint8_t *)a->data)[i] = (uint8_t)(i * 7);
        }
        dl_array *t = dl_transpose(a, NULL);
        ck_assert_int_eq(t->shape[0], 45);
        ck_assert_int_eq(t->shape[1], 37);
        for (int64_t i = 0; i < 37; i++)
            for (int64_t j = 0; j < 45; j++) {
                size_t es = (size_t)a->elem_size;
                ck_assert(memcmp((char *)t->data + (j * 37 + i) * es,
                                 (char *)a->data + (i * 45 + j) * es, es) == 0);
            }
        dl_array_release(t);
        dl_array_release(a);
    }
    /* rank 3 reverses the axes: t[k][j][i] = a[i][j][k] */
    int64_t s3[3] = { 2, 3, 4 };
    dl_array *a = dl_array_new(DL_I64, 3, s3);
    for (int64_t i = 0; i < 24; i++)
        ((int64_t *)a->data)[i] = i;
    dl_array *t = dl_transpose(a, NULL);
    ck_assert_int_eq(t->shape[0], 4);
    ck_assert_int_eq(t->shape[2], 2);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++)
                ck_assert_int_eq(((int64_t *)t->data)[k * 6 + j * 2 + i], i * 12 + j * 4 + k);
    dl_array_release(t);
    /* vectors are their own transpose */
    int64_t n = 3;
    dl_array *v = dl_array_zeros(DL_F64, 1, &n);
    dl_array *vt = dl_transpose(v, NULL);
    ck_assert_ptr_eq(vt, v);
    ck_assert_int_eq(v->refcount, 2);
    dl_array_release(vt);
    dl_array_release(v);
    /* records: 12-byte elements */
    int64_t s2[2] = { 2, 3 };
    dl_array *r = dl_array_new_bytes(12, 2, s2);
    for (int64_t i = 0; i < 72; i++)
        ((uint8_t *)r->data)[i] = (uint8_t)i;
    dl_array *rt = dl_transpose(r, NULL);
    ck_assert_int_eq(rt->dtype, DL_BYTES);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)   /* rt[j][i] == r[i][j] */
            ck_assert(memcmp((char *)rt->data + 12 * (j * 2 + i), (char *)r->data + 12 * (i * 3 + j),
                             12) == 0);
    dl_array_release(rt);
    dl_array_release(r);
    dl_array_release(a);
}
END_TEST

/* ---------------------------------------------------------------- LAPACK */

/* A well-conditioned random matrix: random entries plus n on the diagonal. */
static dl_array *rand_square(int32_t dtype, int64_t n)
{
    int64_t s[2] = { n, n };
    dl_array *a = rand_array(dtype, 2, s);
    for (int64_t i = 0; i < n; i++) {
        if (dtype == DL_F64)
            ((double *)a->data)[i * n + i] += (double)n;
        else
            ((float *)a->data)[i * n + i] += (float)n;
    }
    return a;
}

/* det by Laplace expansion along the first row (n <= 4). */
static double det_naive(const double *m, int n)
{
    if (n == 1)
        return m[0];
    double d = 0, sub[16];
    for (int c = 0; c < n; c++) {
        int k = 0;
        for (int i = 1; i < n; i++)
            for (int j = 0; j < n; j++)
                if (j != c)
                    sub[k++] = m[i * n + j];
        d += (c % 2 ? -1 : 1) * m[c] * det_naive(sub, n - 1);
    }
    return d;
}

START_TEST(test_det)
{
    int64_t s2[2] = { 2, 2 };
    dl_array *a = dl_array_from_data(DL_F64, 2, s2, (double[]){ 1, 2, 3, 4 });
    ck_assert(fabs(dl_det(a, NULL) + 2.0) < 1e-12);
    dl_array_release(a);
    a = dl_array_from_data(DL_F64, 2, s2, (double[]){ 0, 1, 1, 0 });   /* one row swap */
    ck_assert(fabs(dl_det(a, NULL) + 1.0) < 1e-15);
    dl_array_release(a);
    a = dl_array_from_data(DL_F64, 2, s2, (double[]){ 1, 2, 2, 4 });
    ck_assert(dl_det(a, NULL) == 0.0);
    dl_array_release(a);
    for (int n = 1; n <= 4; n++) {
        int64_t s[2] = { n, n };
        a = rand_array(DL_F64, 2, s);
        double want = det_naive(a->data, n);
        ck_assert_msg(fabs(dl_det(a, NULL) - want) < 1e-12, "n=%d", n);
        dl_array *f = dl_array_cast(a, DL_F32, NULL);
        ck_assert(fabs(dl_det(f, NULL) - want) < 1e-5);
        dl_array_release(f);
        dl_array_release(a);
    }
    int64_t s0[2] = { 0, 0 }, s23[2] = { 2, 3 };
    a = dl_array_zeros(DL_F64, 2, s0);
    ck_assert(dl_det(a, NULL) == 1.0);
    dl_array_release(a);
    a = dl_array_zeros(DL_F64, 2, s23);
    EXPECT_ERROR(dl_det(a, NULL), "'det' needs a square matrix, got shape [2, 3]");
    dl_array_release(a);
}
END_TEST

/* max |A B - I| */
static double off_identity(const dl_array *a, const dl_array *b)
{
    int64_t n = a->shape[0];
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++)
                s += get(a, i * n + k) * get(b, k * n + j);
            s -= i == j;
            worst = fabs(s) > worst ? fabs(s) : worst;
        }
    return worst;
}

START_TEST(test_inv)
{
    for (int d = 0; d < 2; d++) {
        int32_t dt = d ? DL_F32 : DL_F64;
        dl_array *a = rand_square(dt, 7);
        dl_array *ai = dl_inv(a, NULL);
        ck_assert_int_eq(ai->dtype, dt);
        ck_assert_int_eq(ai->shape[0], 7);
        ck_assert(off_identity(a, ai) < (d ? 1e-5 : 1e-13));
        ck_assert(off_identity(ai, a) < (d ? 1e-5 : 1e-13));
        dl_array_release(ai);
        dl_array_release(a);
    }
    int64_t s2[2] = { 2, 2 };
    dl_array *a = dl_array_from_data(DL_F64, 2, s2, (double[]){ 2, 0, 0, 4 });
    dl_array *ai = dl_inv(a, NULL);
    ck_assert(((double *)ai->data)[0] == 0.5 && ((double *)ai->data)[3] == 0.25);
    ck_assert(((double *)ai->data)[1] == 0.0);
    dl_array_release(ai);
    dl_array_release(a);
    dl_srcloc loc = { "la.dl", 3, 9 };
    a = dl_array_from_data(DL_F64, 2, s2, (double[]){ 1, 2, 2, 4 });
    EXPECT_ERROR(dl_inv(a, &loc), "'inv': the matrix is singular");
    ck_assert_int_eq(dl_last_error_loc().line, 3);
    dl_array_release(a);
}
END_TEST

START_TEST(test_solve)
{
    int64_t n = 6, sb[2] = { 6, 3 };
    for (int d = 0; d < 2; d++) {
        int32_t dt = d ? DL_F32 : DL_F64;
        double tol = d ? 1e-5 : 1e-12;
        dl_array *a = rand_square(dt, n);
        dl_array *b = rand_array(dt, 1, &n);
        dl_array *x = dl_solve(a, b, NULL);
        ck_assert_int_eq(x->rank, 1);
        ck_assert_int_eq(x->dtype, dt);
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++)
                s += get(a, i * n + k) * get(x, k);
            ck_assert(fabs(s - get(b, i)) < tol);
        }
        dl_array *bm = rand_array(dt, 2, sb);
        dl_array *xm = dl_solve(a, bm, NULL);
        ck_assert_int_eq(xm->shape[0], 6);
        ck_assert_int_eq(xm->shape[1], 3);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < 3; j++) {
                double s = 0;
                for (int64_t k = 0; k < n; k++)
                    s += get(a, i * n + k) * get(xm, k * 3 + j);
                ck_assert_msg(fabs(s - get(bm, i * 3 + j)) < tol, "(%lld,%lld)", (long long)i,
                              (long long)j);
            }
        dl_array *arrs[] = { a, b, x, bm, xm };
        for (int i = 0; i < 5; i++)
            dl_array_release(arrs[i]);
    }
    int64_t s2[2] = { 2, 2 }, three = 3;
    dl_array *a = dl_array_from_data(DL_F64, 2, s2, (double[]){ 1, 1, 1, 1 });
    dl_array *b = dl_array_zeros(DL_F64, 1, &three);
    EXPECT_ERROR(dl_solve(a, b, NULL), "shape mismatch in 'solve': [2, 2] and [3]");
    dl_array_release(b);
    int64_t two = 2;
    b = dl_array_zeros(DL_F64, 1, &two);
    EXPECT_ERROR(dl_solve(a, b, NULL), "'solve': the matrix is singular");
    dl_array_release(b);
    dl_array_release(a);
}
END_TEST

START_TEST(test_cholesky)
{
    int64_t n = 5, s[2] = { 5, 5 };
    dl_array *g = rand_array(DL_F64, 2, s);
    dl_array *m = dl_gemm(false, true, 1.0, g, g, 0.0, NULL, NULL);   /* G G^T + I: SPD */
    for (int64_t i = 0; i < n; i++)
        ((double *)m->data)[i * n + i] += 1.0;
    for (int d = 0; d < 2; d++) {
        dl_array *md = d ? dl_array_cast(m, DL_F32, NULL) : dl_array_retain(m);
        dl_array *l = dl_cholesky(md, NULL);
        ck_assert_int_eq(l->dtype, md->dtype);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                if (j > i)
                    ck_assert(get(l, i * n + j) == 0.0);
                double s2 = 0;
                for (int64_t k = 0; k < n; k++)
                    s2 += get(l, i * n + k) * get(l, j * n + k);
                ck_assert(fabs(s2 - get(md, i * n + j)) < (d ? 1e-4 : 1e-12));
            }
        for (int64_t i = 0; i < n; i++)
            ck_assert(get(l, i * n + i) > 0);
        dl_array_release(l);
        dl_array_release(md);
    }
    int64_t s2[2] = { 2, 2 };
    dl_array *bad = dl_array_from_data(DL_F64, 2, s2, (double[]){ 1, 2, 2, 1 });
    EXPECT_ERROR(dl_cholesky(bad, NULL), "'cholesky': the matrix is not positive definite");
    dl_array_release(bad);
    dl_array_release(m);
    dl_array_release(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rt_blas");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_matmul_f64);
    tcase_add_test(tc, test_matmul_f32);
    tcase_add_test(tc, test_matmul_exact);
    tcase_add_test(tc, test_matmul_empty);
    tcase_add_test(tc, test_matmul_errors);
    tcase_add_test(tc, test_gemm);
    tcase_add_test(tc, test_gemv_outer);
    tcase_add_test(tc, test_transpose);
    tcase_add_test(tc, test_det);
    tcase_add_test(tc, test_inv);
    tcase_add_test(tc, test_solve);
    tcase_add_test(tc, test_cholesky);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
