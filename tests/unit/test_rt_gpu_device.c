/* test_rt_gpu_device.c — libdlrt's GPU layer on a real CUDA device: PTX
 * kernels through the driver, device residency, cuBLAS products and
 * transposes against host loops. Without a GPU it prints "skipped: no CUDA
 * GPU" and exits 77 (Automake's SKIP). Like any program it honours
 * DL_CUDA_LIB and DL_CUBLAS_LIB: pointed at tests/unit/fake_cuda.c's library
 * it runs on the host, which is how it was checked on a machine without a GPU. */
#include <check.h>
#include <dlrt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gpu_support.h"

static dl_array *mat(int64_t r, int64_t c, uint64_t seed)
{
    int64_t shape[2] = { r, c };
    dl_array *a = dl_array_new(DL_F64, 2, shape);
    for (int64_t i = 0; i < a->size; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        ((double *)a->data)[i] = (double)(seed >> 11) * 0x1p-52 - 1.0;
    }
    return a;
}

static double ref_entry(int ta, int tb, const dl_array *a, const dl_array *b, int64_t i,
                        int64_t j)
{
    int64_t k = ta ? a->shape[0] : a->shape[1];
    const double *x = a->data, *y = b->data;
    double s = 0;
    for (int64_t l = 0; l < k; l++)
        s += (ta ? x[l * a->shape[1] + i] : x[i * a->shape[1] + l]) *
             (tb ? y[j * b->shape[1] + l] : y[l * b->shape[1] + j]);
    return s;
}

START_TEST(test_kernels)
{
    int64_t n = 3000001;   /* more than one grid's worth at 256 threads */
    dl_array *a = dl_array_new(DL_F64, 1, &n);
    for (int64_t i = 0; i < n; i++)
        ((double *)a->data)[i] = (double)i;
    void *scale2 = dl_gpu_kernel(test_ptx, "scale2"), *fill = dl_gpu_kernel(test_ptx, "fill");
    ck_assert_ptr_nonnull(scale2);
    ck_assert_ptr_nonnull(fill);
    uint64_t d = dl_gpu_dev(a);
    long ln = (long)n;
    void *args[] = { &d, &ln };
    for (int r = 0; r < 3; r++) {   /* three kernels, no transfer between them */
        dl_gpu_launch(scale2, dl_gpu_grid(n, 256), 256, 0, args);
        dl_gpu_wrote(a);
    }
    ck_assert_int_eq(dl_gpu_resident, 1);
    dl_gpu_host(a);
    for (int64_t i = 0; i < n; i += 99991)
        ck_assert_double_eq(((double *)a->data)[i], 8.0 * (double)i);
    ck_assert_double_eq(((double *)a->data)[n - 1], 8.0 * (double)(n - 1));
    dl_array *b = dl_array_new(DL_F64, 1, &n);
    uint64_t db = dl_gpu_dev_out(b);
    double v = -1.5;
    void *fargs[] = { &db, &ln, &v };
    dl_gpu_launch(fill, dl_gpu_grid(n, 128), 128, 0, fargs);
    dl_gpu_host(b);
    ck_assert_double_eq(((double *)b->data)[0], -1.5);
    ck_assert_double_eq(((double *)b->data)[n - 1], -1.5);
    dl_array_release(a);
    dl_array_release(b);
    ck_assert_int_eq(dl_gpu_resident, 0);
}
END_TEST

START_TEST(test_dgemm)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t m = 129, k = 70, n = 33;
            dl_array *a = ta ? mat(k, m, 1 + ta) : mat(m, k, 1 + ta);
            dl_array *b = tb ? mat(n, k, 3 + tb) : mat(k, n, 3 + tb);
            int64_t sh[2] = { m, n };
            dl_array *c = dl_array_new(DL_F64, 2, sh);
            ck_assert_int_eq(dl_gpu_dgemm(ta, tb, a, b, c), 1);
            dl_gpu_host(c);
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++)
                    ck_assert_double_eq_tol(((double *)c->data)[i * n + j],
                                            ref_entry(ta, tb, a, b, i, j), 1e-11);
            dl_array_release(a);
            dl_array_release(b);
            dl_array_release(c);
        }
}
END_TEST

/* A product of large matrices, then its transpose and a product with it, all
 * on the device; one download at the end. */
START_TEST(test_matmul_chain)
{
    dl_array *a = mat(300, 260, 7), *b = mat(260, 280, 8);
    dl_array *c = dl_matmul(a, b, NULL);            /* GPU: large */
    dl_array *t = dl_transpose(c, NULL);            /* GPU: c is device-newer */
    dl_array *p = dl_matmul(t, a, NULL);            /* GPU: t is on the device; [280,260] */
    ck_assert_int_eq(p->shape[0], 280);
    ck_assert_int_eq(p->shape[1], 260);
    dl_gpu_host(c);
    dl_gpu_host(p);
    /* p[i][j] = sum_l c[l][i] a[l][j] */
    for (int64_t i = 0; i < 280; i += 37)
        for (int64_t j = 0; j < 260; j += 41) {
            double s = 0;
            for (int64_t l = 0; l < 300; l++)
                s += ((double *)c->data)[l * 280 + i] * ((double *)a->data)[l * 260 + j];
            ck_assert_double_eq_tol(((double *)p->data)[i * 260 + j], s, 1e-9);
        }
    ck_assert_double_eq_tol(((double *)c->data)[5 * 280 + 6], ref_entry(0, 0, a, b, 5, 6), 1e-11);
    dl_array *all[] = { a, b, c, t, p };
    for (int i = 0; i < 5; i++)
        dl_array_release(all[i]);
}
END_TEST

int main(void)
{
    if (!dl_gpu_available()) {
        printf("skipped: no CUDA GPU\n");
        return 77;
    }
    Suite *s = suite_create("rt_gpu_device");
    TCase *tc = tcase_create("device");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_kernels);
    tcase_add_test(tc, test_dgemm);
    tcase_add_test(tc, test_matmul_chain);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    /* one process: the CUDA context does not survive fork */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
