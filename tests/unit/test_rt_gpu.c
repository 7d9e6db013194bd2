/* test_rt_gpu.c — libdlrt's GPU layer without a GPU: the no-driver paths
 * (missing library, the toolkit's stub libcuda, cuInit failing, DL_GPU=0),
 * and the side table, transfers, kernel cache, cuBLAS calls and errors
 * against tests/unit/fake_cuda.c, a host-memory stand-in for libcuda and
 * libcublas loaded through DL_CUDA_LIB / DL_CUBLAS_LIB. Check runs each test
 * in a fresh process, so each starts before libdlrt's one-time GPU setup.
 * With the CUDA toolkit, libdlrt's own declarations of the driver and cuBLAS
 * entry points are checked against cuda.h and cublas_v2.h at compile time. */
#include <check.h>
#include <dlfcn.h>
#include <dlrt.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpu_support.h"
#include "internal.h"

#ifdef DLRT_HAVE_CUDA_H
#include <cublas_v2.h>
#include <cuda.h>

/* Each entry of libdlrt's lists, instantiated with the real types, has the
 * real prototype (cuda.h maps cuMemAlloc to cuMemAlloc_v2 and so on, but the
 * lists name the _v2 symbols themselves). */
#define SAME_PROTOTYPE(field, sym, ret, params)                                         \
    _Static_assert(__builtin_types_compatible_p(__typeof__(sym), ret params), #sym);
DLRT_CU_ENTRIES(SAME_PROTOTYPE, CUresult, CUdevice, CUdevice_attribute, CUjit_option, CUcontext,
                CUmodule, CUfunction, CUstream, CUdeviceptr)
DLRT_CUBLAS_ENTRIES(SAME_PROTOTYPE, cublasStatus_t, cublasHandle_t, cublasOperation_t)
#undef SAME_PROTOTYPE
/* ... and libdlrt's stand-in types have the real ones' sizes. */
_Static_assert(sizeof(dlrt_cu_result) == sizeof(CUresult), "CUresult");
_Static_assert(sizeof(dlrt_cu_device) == sizeof(CUdevice), "CUdevice");
_Static_assert(sizeof(dlrt_cu_enum) == sizeof(CUdevice_attribute), "CUdevice_attribute");
_Static_assert(sizeof(dlrt_cu_enum) == sizeof(CUjit_option), "CUjit_option");
_Static_assert(sizeof(dlrt_cu_deviceptr) == sizeof(CUdeviceptr), "CUdeviceptr");
_Static_assert(sizeof(dlrt_cublas_status) == sizeof(cublasStatus_t), "cublasStatus_t");
_Static_assert(sizeof(dlrt_cublas_op) == sizeof(cublasOperation_t), "cublasOperation_t");
_Static_assert(DLRT_CU_SUCCESS == CUDA_SUCCESS, "CUDA_SUCCESS");
_Static_assert(DLRT_CU_ERROR_OUT_OF_MEMORY == CUDA_ERROR_OUT_OF_MEMORY, "OUT_OF_MEMORY");
_Static_assert(DLRT_CU_ATTR_SM_COUNT == CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "SM count");
_Static_assert(DLRT_CU_JIT_ERROR_LOG_BUFFER == CU_JIT_ERROR_LOG_BUFFER, "JIT log");
_Static_assert(DLRT_CU_JIT_ERROR_LOG_SIZE == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, "JIT log size");
_Static_assert(DLRT_CUBLAS_OP_N == CUBLAS_OP_N && DLRT_CUBLAS_OP_T == CUBLAS_OP_T, "ops");
#endif

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

/* ---------------------------------------------------------------- helpers */

static char fake_path[4096];

/* The fake driver (built next to this test by libtool) as libcuda and
 * libcublas; its counters. */
static struct fake_cuda_stats {
    long inits, allocs, frees, live_blocks, htod, dtoh, dtod, launches, module_loads,
        get_functions, gemms, geams, ctx_sets;
    size_t live_bytes;
} *use_fake(void)
{
    const char *b = getenv("DCC_BUILDDIR");
    snprintf(fake_path, sizeof fake_path, "%s/tests/unit/.libs/libfakecuda.so", b ? b : ".");
    ck_assert_msg(access(fake_path, R_OK) == 0, "missing %s", fake_path);
    setenv("DL_CUDA_LIB", fake_path, 1);
    setenv("DL_CUBLAS_LIB", fake_path, 1);
    void *h = dlopen(fake_path, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(h != NULL, "%s", dlerror());
    struct fake_cuda_stats *s = dlsym(h, "fake_cuda_stats");
    ck_assert_ptr_nonnull(s);
    return s;
}

/* stderr into a file while the GPU layer starts; returns what it wrote. */
static char stderr_text[4096];

static int capture_available(void)
{
    fflush(stderr);
    int saved = dup(2);
    FILE *t = tmpfile();
    dup2(fileno(t), 2);
    int r = dl_gpu_available();
    int r2 = dl_gpu_available();   /* the second call says nothing */
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(t);
    size_t n = fread(stderr_text, 1, sizeof stderr_text - 1, t);
    stderr_text[n] = 0;
    fclose(t);
    ck_assert_int_eq(r, r2);
    return r;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void expect_one_no_gpu_line(const char *reason)
{
    ck_assert_int_eq(count_lines(stderr_text), 1);
    ck_assert_msg(strncmp(stderr_text, "dlrt: no CUDA GPU (", 19) == 0, "%s", stderr_text);
    ck_assert_msg(strstr(stderr_text, "); running on the CPU\n") != NULL, "%s", stderr_text);
    ck_assert_msg(strstr(stderr_text, reason) != NULL, "'%s' lacks '%s'", stderr_text, reason);
}

static dl_array *vec(int64_t n, double scale)
{
    dl_array *a = dl_array_new(DL_F64, 1, &n);
    for (int64_t i = 0; i < n; i++)
        ((double *)a->data)[i] = scale * (double)i;
    return a;
}

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

/* op(A) op(B) by the definition, row-major. */
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

/* Runs kernel `name` of test_ptx on a (scale2, or fill with v). */
static void run_kernel(const char *name, dl_array *a, double v, bool out_only)
{
    void *k = dl_gpu_kernel(test_ptx, name);
    ck_assert_ptr_nonnull(k);
    uint64_t d = out_only ? dl_gpu_dev_out(a) : dl_gpu_dev(a);
    long n = (long)a->size;
    void *args[] = { &d, &n, &v };
    dl_gpu_launch(k, dl_gpu_grid(n, 256), 256, 0, args);
    if (!out_only)
        dl_gpu_wrote(a);
}

/* ---------------------------------------------------------------- no GPU */

START_TEST(test_no_driver)
{
    setenv("DL_CUDA_LIB", "/nonexistent/libcuda.so.1", 1);
    ck_assert_int_eq(capture_available(), 0);
    expect_one_no_gpu_line("/nonexistent/libcuda.so.1");
    ck_assert_ptr_null(dl_gpu_kernel(test_ptx, "scale2"));
    dl_array *a = mat(3, 4, 1), *b = mat(4, 2, 2);
    int64_t sh[2] = { 3, 2 };
    dl_array *c = dl_array_new(DL_F64, 2, sh);
    ck_assert_int_eq(dl_gpu_dgemm(0, 0, a, b, c), 0);
    /* the CPU path, and host calls that are no-ops */
    dl_array *p = dl_matmul(a, b, NULL);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            ck_assert_double_eq_tol(((double *)p->data)[i * 2 + j], ref_entry(0, 0, a, b, i, j),
                                    1e-12);
    dl_gpu_host(a);
    dl_gpu_host(NULL);
    dl_gpu_forget(a);
    ck_assert_int_eq(dl_gpu_resident, 0);
    EXPECT_ERROR(dl_gpu_dev(a), "no CUDA GPU");
    EXPECT_ERROR(dl_gpu_launch(NULL, 1, 1, 0, NULL), "no kernel");
    dl_array_release(a);
    dl_array_release(b);
    dl_array_release(c);
    dl_array_release(p);
}
END_TEST

/* The toolkit's stub libcuda (for linking only) fails cuInit. */
START_TEST(test_stub_driver)
{
    const char *dir = getenv("CUDA_DIR") ? getenv("CUDA_DIR") : "/usr/local/cuda";
    char path[4096];
    snprintf(path, sizeof path, "%s/lib64/stubs/libcuda.so", dir);
    if (access(path, R_OK) != 0)
        return;   /* no toolkit: nothing to try */
    setenv("DL_CUDA_LIB", path, 1);
    ck_assert_int_eq(capture_available(), 0);
    expect_one_no_gpu_line("cuInit: CUDA_ERROR_STUB_LIBRARY");
}
END_TEST

START_TEST(test_init_error)
{
    struct fake_cuda_stats *s = use_fake();
    setenv("FAKE_CUDA_INIT_ERROR", "100", 1);
    ck_assert_int_eq(capture_available(), 0);
    expect_one_no_gpu_line("cuInit: CUDA_ERROR_NO_DEVICE");
    ck_assert_int_eq(s->inits, 1);
}
END_TEST

START_TEST(test_gpu_off)
{
    struct fake_cuda_stats *s = use_fake();
    setenv("DL_GPU", "0", 1);
    ck_assert_int_eq(capture_available(), 0);
    ck_assert_str_eq(stderr_text, "");
    ck_assert_int_eq(s->inits, 0);   /* not even loaded */
    dl_array *a = mat(300, 300, 3), *b = mat(300, 300, 4);
    dl_array *c = dl_matmul(a, b, NULL);   /* large, but on the CPU */
    ck_assert_int_eq(s->gemms, 0);
    ck_assert_double_eq_tol(((double *)c->data)[7], ref_entry(0, 0, a, b, 0, 7), 1e-12);
    dl_array_release(a);
    dl_array_release(b);
    dl_array_release(c);
}
END_TEST

/* ---------------------------------------------------------------- residency */

START_TEST(test_fake_starts)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert_int_eq(capture_available(), 1);
    ck_assert_str_eq(stderr_text, "");
    ck_assert_int_eq(s->inits, 1);
    /* 4 multiprocessors: at most 32 blocks each */
    ck_assert_uint_eq(dl_gpu_grid(1000, 256), 4);
    ck_assert_uint_eq(dl_gpu_grid(1024, 256), 4);
    ck_assert_uint_eq(dl_gpu_grid(1025, 256), 5);
    ck_assert_uint_eq(dl_gpu_grid(1000000000, 256), 128);
    ck_assert_uint_eq(dl_gpu_grid(0, 256), 1);
}
END_TEST

START_TEST(test_round_trip)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert(dl_gpu_available());
    dl_array *a = vec(10000, 1.0);
    uint64_t d = dl_gpu_dev(a);
    ck_assert_uint_ne(d, 0);
    ck_assert_int_eq(s->htod, 1);
    ck_assert_int_eq(dl_gpu_resident, 1);
    ck_assert_uint_eq(dl_gpu_dev(a), d);   /* already there: no upload */
    ck_assert_int_eq(s->htod, 1);
    run_kernel("scale2", a, 0, false);
    ck_assert_int_eq(s->launches, 1);
    ck_assert_int_eq(s->htod, 1);
    /* the host copy is old until asked for */
    ck_assert_double_eq(((double *)a->data)[5000], 5000.0);
    ck_assert_int_eq(dl_gpu_resident, 1);
    dl_gpu_host(a);
    ck_assert_int_eq(s->dtoh, 1);
    ck_assert_double_eq(((double *)a->data)[5000], 10000.0);
    ck_assert_double_eq(((double *)a->data)[9999], 19998.0);
    /* the host may now write it: the device copy is dropped, re-sent next time */
    ck_assert_int_eq(dl_gpu_resident, 0);
    dl_gpu_host(a);
    ck_assert_int_eq(s->dtoh, 1);
    ((double *)a->data)[0] = 42.0;
    ck_assert_uint_eq(dl_gpu_dev(a), d);   /* same block */
    ck_assert_int_eq(s->htod, 2);
    run_kernel("scale2", a, 0, false);
    dl_gpu_host(a);
    ck_assert_double_eq(((double *)a->data)[0], 84.0);
    ck_assert_double_eq(((double *)a->data)[1], 4.0);
    ck_assert_int_eq(s->allocs, 1);
    dl_array_release(a);
    ck_assert_int_eq(dl_gpu_resident, 0);
}
END_TEST

/* libdlrt's own readers (print, copy, ==) download but keep the device copy. */
START_TEST(test_readers_keep_copy)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert(dl_gpu_available());
    int64_t n = 3;
    dl_array *a = dl_array_new(DL_F64, 1, &n);
    run_kernel("fill", a, 2.5, true);   /* a fresh output: nothing uploaded */
    ck_assert_int_eq(s->htod, 0);
    ck_assert_int_eq(dl_gpu_resident, 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    FILE *old = dl_set_output(f);
    dl_print_array(a);
    dl_flush();
    dl_set_output(old);
    fclose(f);
    ck_assert_str_eq(buf, "[2.5, 2.5, 2.5]");
    free(buf);
    ck_assert_int_eq(s->dtoh, 1);
    ck_assert_int_eq(dl_gpu_resident, 1);
    dl_array *c = dl_array_copy(a);
    ck_assert(dl_array_equal(a, c));
    ck_assert_int_eq(s->dtoh, 1);
    dl_gpu_dev(a);
    ck_assert_int_eq(s->htod, 0);
    /* a kernel writes it again: the next reader downloads again */
    run_kernel("scale2", a, 0, false);
    ck_assert(!dl_array_equal(a, c));
    ck_assert_int_eq(s->dtoh, 2);
    ck_assert_double_eq(((double *)a->data)[2], 5.0);
    dl_array_release(a);
    dl_array_release(c);
}
END_TEST

/* Freed arrays leave the table; their blocks are reused. */
START_TEST(test_forget_reuses_blocks)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert(dl_gpu_available());
    dl_array *a = vec(1000, 1.0), *b = vec(1000, 3.0);
    uint64_t da = dl_gpu_dev(a);
    dl_gpu_dev(b);
    run_kernel("scale2", a, 0, false);
    ck_assert_int_eq(dl_gpu_resident, 2);
    dl_array_release(a);
    ck_assert_int_eq(dl_gpu_resident, 1);
    ck_assert_int_eq(s->frees, 0);   /* kept for reuse */
    dl_array *c = vec(900, 1.0);     /* same size class */
    ck_assert_uint_eq(dl_gpu_dev(c), da);
    ck_assert_int_eq(s->allocs, 2);
    /* many arrays through the table: entries come and go (deletions shift) */
    dl_array *many[300];
    for (int i = 0; i < 300; i++) {
        many[i] = vec(10 + i % 7, (double)i);
        dl_gpu_dev(many[i]);
    }
    for (int i = 0; i < 300; i += 2)
        dl_array_release(many[i]);
    for (int i = 1; i < 300; i += 2) {
        run_kernel("scale2", many[i], 0, false);
        dl_gpu_host(many[i]);
        ck_assert_double_eq(((double *)many[i]->data)[3], 2.0 * 3 * i);
        dl_array_release(many[i]);
    }
    ck_assert_int_eq(dl_gpu_resident, 2);
    dl_array_release(b);
    dl_array_release(c);
    ck_assert_int_eq(dl_gpu_resident, 0);
}
END_TEST

/* An immortal array cannot be written: its device copy stays valid. */
START_TEST(test_immortal)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert(dl_gpu_available());
    dl_array *a = vec(100, 1.0);
    a->refcount = -1;
    dl_gpu_dev(a);
    dl_gpu_host(a);
    ck_assert_int_eq(dl_gpu_resident, 1);
    dl_gpu_dev(a);
    ck_assert_int_eq(s->htod, 1);
    dl_gpu_forget(a);
    ck_assert_int_eq(dl_gpu_resident, 0);
    a->refcount = 1;
    dl_array_release(a);
}
END_TEST

START_TEST(test_empty_array)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert(dl_gpu_available());
    int64_t z = 0;
    dl_array *a = dl_array_new(DL_F64, 1, &z);
    ck_assert_uint_eq(dl_gpu_dev(a), 0);
    dl_gpu_wrote(a);
    dl_gpu_host(a);
    ck_assert_int_eq(s->allocs, 0);
    ck_assert_int_eq(dl_gpu_resident, 0);
    dl_array_release(a);
}
END_TEST

/* ---------------------------------------------------------------- kernels */

START_TEST(test_kernel_cache)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert(dl_gpu_available());
    void *k1 = dl_gpu_kernel(test_ptx, "scale2");
    void *k2 = dl_gpu_kernel(test_ptx, "fill");
    ck_assert_ptr_eq(dl_gpu_kernel(test_ptx, "scale2"), k1);
    ck_assert_ptr_ne(k1, k2);
    ck_assert_int_eq(s->module_loads, 1);
    ck_assert_int_eq(s->get_functions, 2);
    EXPECT_ERROR(dl_gpu_kernel(test_ptx, "nope"), "no kernel 'nope'");
    static const char bad[] = ".version 7.0\nsyntax error\n";
    EXPECT_ERROR(dl_gpu_kernel(bad, "scale2"), "CUDA_ERROR_INVALID_PTX");
    EXPECT_ERROR(dl_gpu_kernel(bad, "scale2"), "fake syntax error");
}
END_TEST

START_TEST(test_launch_errors)
{
    use_fake();
    ck_assert(dl_gpu_available());
    dl_array *a = vec(100, 1.0);
    void *k = dl_gpu_kernel(test_ptx, "scale2");
    uint64_t host = (uint64_t)(uintptr_t)a->data;   /* not a device address */
    long n = 100;
    void *args[] = { &host, &n };
    EXPECT_ERROR(dl_gpu_launch(k, 1, 128, 0, args), "CUDA_ERROR_ILLEGAL_ADDRESS");
    EXPECT_ERROR(dl_gpu_launch(k, 1, 4096, 0, args), "cuLaunchKernel");
    EXPECT_ERROR(dl_gpu_wrote(a), "no device copy");
    dl_array_release(a);
}
END_TEST

static void *thread_body(void *arg)
{
    dl_array *a = arg;
    run_kernel("scale2", a, 0, false);
    dl_gpu_host(a);
    return NULL;
}

/* Another thread gets the context made current for it. */
START_TEST(test_other_thread)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert(dl_gpu_available());
    long sets = s->ctx_sets;
    dl_array *a = vec(50, 1.0);
    pthread_t t;
    pthread_create(&t, NULL, thread_body, a);
    pthread_join(t, NULL);
    ck_assert_int_eq(s->ctx_sets, sets + 1);
    ck_assert_double_eq(((double *)a->data)[49], 98.0);
    dl_array_release(a);
}
END_TEST

START_TEST(test_out_of_memory)
{
    struct fake_cuda_stats *s = use_fake();
    setenv("FAKE_CUDA_MEM_LIMIT", "100000", 1);
    ck_assert(dl_gpu_available());
    dl_array *a = vec(4000, 1.0), *b = vec(4000, 1.0);   /* 32000 B: 32 KiB blocks */
    dl_gpu_dev(a);
    dl_gpu_dev(b);
    dl_array_release(a);
    dl_array_release(b);
    ck_assert_int_eq(s->live_blocks, 2);
    dl_array *c = vec(8000, 1.0);   /* 64 KiB: fits once the cached blocks go */
    dl_gpu_dev(c);
    ck_assert_int_eq(s->frees, 2);
    dl_array *d = vec(20000, 1.0);
    EXPECT_ERROR(dl_gpu_dev(d), "out of GPU memory");
    ck_assert_int_eq(dl_gpu_resident, 1);
    dl_array_release(c);
    dl_array_release(d);
}
END_TEST

/* ---------------------------------------------------------------- cuBLAS */

START_TEST(test_dgemm)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert(dl_gpu_available());
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t m = 5, k = 7, n = 3;
            dl_array *a = ta ? mat(k, m, 10 + ta) : mat(m, k, 10 + ta);
            dl_array *b = tb ? mat(n, k, 20 + tb) : mat(k, n, 20 + tb);
            int64_t sh[2] = { m, n };
            dl_array *c = dl_array_new(DL_F64, 2, sh);
            ck_assert_int_eq(dl_gpu_dgemm(ta, tb, a, b, c), 1);
            ck_assert_int_eq(dl_gpu_resident, 3);
            dl_gpu_host(c);
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++)
                    ck_assert_double_eq_tol(((double *)c->data)[i * n + j],
                                            ref_entry(ta, tb, a, b, i, j), 1e-12);
            dl_array_release(a);
            dl_array_release(b);
            dl_array_release(c);
        }
    ck_assert_int_eq(s->gemms, 4);
    /* what the CPU must do */
    dl_array *a = mat(2, 3, 1), *b = mat(3, 2, 2), *c = mat(2, 2, 3), *w = mat(3, 3, 4);
    dl_array *f = dl_array_cast(a, DL_F32, NULL);
    ck_assert_int_eq(dl_gpu_dgemm(0, 0, f, b, c), 0);         /* f32 */
    ck_assert_int_eq(dl_gpu_dgemm(0, 0, a, w, c), 0);         /* c's shape */
    ck_assert_int_eq(dl_gpu_dgemm(1, 0, a, b, c), 0);         /* k mismatch */
    ck_assert_int_eq(dl_gpu_dgemm(0, 0, w, w, w), 0);         /* c aliases */
    ck_assert_int_eq(s->gemms, 4);
    dl_array_release(a);
    dl_array_release(b);
    dl_array_release(c);
    dl_array_release(w);
    dl_array_release(f);
}
END_TEST

/* dl_matmul goes to the GPU when an operand is there, or when it is large. */
START_TEST(test_matmul_routing)
{
    struct fake_cuda_stats *s = use_fake();
    dl_array *a = mat(8, 6, 5), *b = mat(6, 4, 6);
    dl_array *c = dl_matmul(a, b, NULL);   /* before the program asked for the GPU */
    ck_assert_int_eq(s->gemms, 0);
    ck_assert(dl_gpu_available());
    dl_array *c2 = dl_matmul(a, b, NULL);  /* small, all on the host */
    ck_assert_int_eq(s->gemms, 0);
    ck_assert(dl_array_equal(c, c2));
    run_kernel("scale2", b, 0, false);     /* b doubled, on the device */
    dl_array *c3 = dl_matmul(a, b, NULL);
    ck_assert_int_eq(s->gemms, 1);
    ck_assert_int_eq(s->dtoh, 0);          /* b was not fetched */
    dl_array *sum = dl_add_f64(c3, c3, NULL);   /* a reader: fetches c3 */
    for (int64_t i = 0; i < c->size; i++)
        ck_assert_double_eq_tol(((double *)sum->data)[i], 4 * ((double *)c->data)[i], 1e-12);
    dl_array *big1 = mat(256, 256, 7), *big2 = mat(256, 256, 8);
    dl_array *big = dl_matmul(big1, big2, NULL);
    ck_assert_int_eq(s->gemms, 2);
    dl_gpu_host(big);
    ck_assert_double_eq_tol(((double *)big->data)[256 * 3 + 9], ref_entry(0, 0, big1, big2, 3, 9),
                            1e-10);
    dl_array *vec2 = mat(1, 6, 9), *mv = dl_matmul(vec2, b, NULL);   /* [1,6]@[6,4] */
    ck_assert_int_eq(s->gemms, 3);
    dl_array_release(mv);
    dl_array_release(vec2);
    dl_array *all[] = { a, b, c, c2, c3, sum, big1, big2, big };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        dl_array_release(all[i]);
    ck_assert_int_eq(dl_gpu_resident, 0);
}
END_TEST

START_TEST(test_transpose_on_device)
{
    struct fake_cuda_stats *s = use_fake();
    ck_assert(dl_gpu_available());
    dl_array *a = mat(5, 3, 11);
    dl_array *host = dl_transpose(a, NULL);   /* on the host: a is not on the device */
    ck_assert_int_eq(s->geams, 0);
    run_kernel("scale2", a, 0, false);
    dl_array *t = dl_transpose(a, NULL);
    ck_assert_int_eq(s->geams, 1);
    ck_assert_int_eq(s->dtoh, 0);
    ck_assert_int_eq(t->shape[0], 3);
    ck_assert_int_eq(t->shape[1], 5);
    dl_gpu_host(t);
    for (int64_t i = 0; i < t->size; i++)
        ck_assert_double_eq(((double *)t->data)[i], 2 * ((double *)host->data)[i]);
    dl_array_release(a);
    dl_array_release(t);
    dl_array_release(host);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rt_gpu");
    TCase *tc = tcase_create("gpu");
    tcase_add_test(tc, test_no_driver);
    tcase_add_test(tc, test_stub_driver);
    tcase_add_test(tc, test_init_error);
    tcase_add_test(tc, test_gpu_off);
    tcase_add_test(tc, test_fake_starts);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_readers_keep_copy);
    tcase_add_test(tc, test_forget_reuses_blocks);
    tcase_add_test(tc, test_immortal);
    tcase_add_test(tc, test_empty_array);
    tcase_add_test(tc, test_kernel_cache);
    tcase_add_test(tc, test_launch_errors);
    tcase_add_test(tc, test_other_thread);
    tcase_add_test(tc, test_out_of_memory);
    tcase_add_test(tc, test_dgemm);
    tcase_add_test(tc, test_matmul_routing);
    tcase_add_test(tc, test_transpose_on_device);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
