/* fake_cuda.c — a stand-in for libcuda.so.1 and libcublas.so.13 with the
 * entry points runtime/gpu.c loads, for tests on machines without a GPU
 * (test_rt_gpu.c points DL_CUDA_LIB and DL_CUBLAS_LIB here).
 *
 * "Device" memory is host memory from malloc, filled with 0xFF bytes (NaN as
 * doubles) when allocated, so that a missing upload shows. Every device
 * pointer a call receives must lie in a live block, and every call needs a
 * current context on the calling thread, else the call fails as the driver
 * would (CUDA_ERROR_ILLEGAL_ADDRESS, CUDA_ERROR_INVALID_CONTEXT). Kernels are
 * host functions looked up by name, and a module must declare the entry
 * (".entry NAME("). cuBLAS is the reference column-major BLAS definition.
 * Counters of every call are in fake_cuda_stats.
 *
 * Environment: FAKE_CUDA_INIT_ERROR=N makes cuInit return N;
 * FAKE_CUDA_MEM_LIMIT=B makes allocations beyond B live bytes fail with
 * CUDA_ERROR_OUT_OF_MEMORY. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum {
    SUCCESS = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    INVALID_CONTEXT = 201,
    INVALID_PTX = 218,
    NOT_FOUND = 500,
    ILLEGAL_ADDRESS = 700
};

struct fake_cuda_stats {
    long inits, allocs, frees, live_blocks, htod, dtoh, dtod, launches, module_loads,
        get_functions, gemms, geams, ctx_sets;
    size_t live_bytes;
} fake_cuda_stats;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static __thread void *current_ctx;
static int the_ctx;

typedef struct Block {
    char *p;
    size_t n;
    struct Block *next;
} Block;

static Block *blocks;

/* 1 when [d, d + n) lies inside one live block. */
static int valid(CUdeviceptr d, size_t n)
{
    pthread_mutex_lock(&mu);
    int ok = 0;
    for (Block *b = blocks; b && !ok; b = b->next)
        ok = (char *)(uintptr_t)d >= b->p && (char *)(uintptr_t)d + n <= b->p + b->n;
    pthread_mutex_unlock(&mu);
    return ok;
}

CUresult cuInit(unsigned flags)
{
    const char *e = getenv("FAKE_CUDA_INIT_ERROR");
    fake_cuda_stats.inits++;
    return flags ? INVALID_VALUE : e ? atoi(e) : SUCCESS;
}

CUresult cuDeviceGet(int *dev, int ordinal)
{
    if (ordinal != 0)
        return INVALID_VALUE;
    *dev = 0;
    return SUCCESS;
}

CUresult cuDeviceGetAttribute(int *v, int attr, int dev)
{
    *v = attr == 16 ? 4 : 0;   /* 4 multiprocessors */
    return SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, int dev)
{
    strncpy(name, "Fake GPU", (size_t)len);
    return SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev)
{
    *ctx = &the_ctx;
    return SUCCESS;
}

CUresult cuCtxSetCurrent(void *ctx)
{
    current_ctx = ctx;
    fake_cuda_stats.ctx_sets++;
    return SUCCESS;
}

CUresult cuCtxSynchronize(void) { return current_ctx ? SUCCESS : INVALID_CONTEXT; }

static const char *const errors[][2] = {
    { "0", "CUDA_SUCCESS" },
    { "1", "CUDA_ERROR_INVALID_VALUE" },
    { "2", "CUDA_ERROR_OUT_OF_MEMORY" },
    { "100", "CUDA_ERROR_NO_DEVICE" },
    { "201", "CUDA_ERROR_INVALID_CONTEXT" },
    { "218", "CUDA_ERROR_INVALID_PTX" },
    { "500", "CUDA_ERROR_NOT_FOUND" },
    { "700", "CUDA_ERROR_ILLEGAL_ADDRESS" },
};

CUresult cuGetErrorName(CUresult err, const char **name)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (atoi(errors[i][0]) == err) {
            *name = errors[i][1];
            return SUCCESS;
        }
    *name = NULL;
    return INVALID_VALUE;
}

/* options 5 and 6: CU_JIT_ERROR_LOG_BUFFER and its size */
CUresult cuModuleLoadDataEx(void **mod, const void *image, unsigned nopt, int *opts,
                            void **values)
{
    if (!current_ctx)
        return INVALID_CONTEXT;
    fake_cuda_stats.module_loads++;
    if (strstr(image, "syntax error")) {
        char *log = NULL;
        size_t n = 0;
        for (unsigned i = 0; i < nopt; i++) {
            if (opts[i] == 5)
                log = values[i];
            if (opts[i] == 6)
                n = (size_t)(uintptr_t)values[i];
        }
        if (log && n)
            strncpy(log, "ptxas application ptx input, line 3; fatal: fake syntax error", n - 1);
        return INVALID_PTX;
    }
    *mod = (void *)image;
    return SUCCESS;
}

typedef void (*HostKernel)(void **args, unsigned threads);
typedef struct FakeFunction {
    const char *name;
    HostKernel run;
    int nptr;            /* the first nptr arguments are device pointers to n doubles */
} FakeFunction;

/* scale2(double *x, long n): x *= 2 */
static void k_scale2(void **args, unsigned threads)
{
    double *x = (double *)(uintptr_t)*(CUdeviceptr *)args[0];
    long n = *(long *)args[1];
    for (long i = 0; i < n; i++)
        x[i] *= 2;
}

/* fill(double *x, long n, double v): x = v */
static void k_fill(void **args, unsigned threads)
{
    double *x = (double *)(uintptr_t)*(CUdeviceptr *)args[0];
    long n = *(long *)args[1];
    double v = *(double *)args[2];
    for (long i = 0; i < n; i++)
        x[i] = v;
}

static const FakeFunction functions[] = {
    { "scale2", k_scale2, 1 },
    { "fill", k_fill, 1 },
};

CUresult cuModuleGetFunction(void **fn, void *mod, const char *name)
{
    fake_cuda_stats.get_functions++;
    char decl[256];
    snprintf(decl, sizeof decl, ".entry %s(", name);
    if (!strstr(mod, decl))
        return NOT_FOUND;
    for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++)
        if (strcmp(functions[i].name, name) == 0) {
            *fn = (void *)&functions[i];
            return SUCCESS;
        }
    return NOT_FOUND;
}

CUresult cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shmem, void *stream, void **params,
                        void **extra)
{
    if (!current_ctx)
        return INVALID_CONTEXT;
    const FakeFunction *f = fn;
    if (!gx || !bx || gy != 1 || gz != 1 || by != 1 || bz != 1 || bx > 1024)
        return INVALID_VALUE;
    long n = *(long *)params[1];
    for (int i = 0; i < f->nptr; i++)
        if (n > 0 && !valid(*(CUdeviceptr *)params[i], (size_t)n * sizeof(double)))
            return ILLEGAL_ADDRESS;
    fake_cuda_stats.launches++;
    f->run(params, gx * bx);
    return SUCCESS;
}

CUresult cuMemAlloc_v2(CUdeviceptr *d, size_t n)
{
    if (!current_ctx)
        return INVALID_CONTEXT;
    if (n == 0)
        return INVALID_VALUE;
    const char *lim = getenv("FAKE_CUDA_MEM_LIMIT");
    if (lim && fake_cuda_stats.live_bytes + n > (size_t)atoll(lim))
        return OUT_OF_MEMORY;
    Block *b = malloc(sizeof *b);
    b->p = malloc(n);
    b->n = n;
    memset(b->p, 0xFF, n);
    pthread_mutex_lock(&mu);
    b->next = blocks;
    blocks = b;
    fake_cuda_stats.allocs++;
    fake_cuda_stats.live_blocks++;
    fake_cuda_stats.live_bytes += n;
    pthread_mutex_unlock(&mu);
    *d = (CUdeviceptr)(uintptr_t)b->p;
    return SUCCESS;
}

CUresult cuMemFree_v2(CUdeviceptr d)
{
    pthread_mutex_lock(&mu);
    for (Block **pb = &blocks; *pb; pb = &(*pb)->next)
        if ((*pb)->p == (char *)(uintptr_t)d) {
            Block *b = *pb;
            *pb = b->next;
            fake_cuda_stats.frees++;
            fake_cuda_stats.live_blocks--;
            fake_cuda_stats.live_bytes -= b->n;
            pthread_mutex_unlock(&mu);
            free(b->p);
            free(b);
            return SUCCESS;
        }
    pthread_mutex_unlock(&mu);
    return INVALID_VALUE;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
    if (!current_ctx)
        return INVALID_CONTEXT;
    if (!valid(dst, n))
        return ILLEGAL_ADDRESS;
    memcpy((void *)(uintptr_t)dst, src, n);
    fake_cuda_stats.htod++;
    return SUCCESS;
}

CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    if (!current_ctx)
        return INVALID_CONTEXT;
    if (!valid(src, n))
        return ILLEGAL_ADDRESS;
    memcpy(dst, (void *)(uintptr_t)src, n);
    fake_cuda_stats.dtoh++;
    return SUCCESS;
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    if (!current_ctx)
        return INVALID_CONTEXT;
    if (!valid(src, n) || !valid(dst, n))
        return ILLEGAL_ADDRESS;
    memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, n);
    fake_cuda_stats.dtod++;
    return SUCCESS;
}

/* ---------------------------------------------------------------- cuBLAS */

static int handle_obj;

int cublasCreate_v2(void **h)
{
    if (!current_ctx)
        return 1;   /* CUBLAS_STATUS_NOT_INITIALIZED */
    *h = &handle_obj;
    return 0;
}

/* Column-major X [rows x cols] with leading dimension ld: X(i, j) = x[i + j ld]. */
static double at(const double *x, int ld, int trans, int i, int j)
{
    return trans ? x[j + (size_t)i * ld] : x[i + (size_t)j * ld];
}

/* C = alpha op(A) op(B) + beta C; C m x n, op(A) m x k, op(B) k x n. */
int cublasDgemm_v2(void *h, int ta, int tb, int m, int n, int k, const double *alpha,
                   const double *a, int lda, const double *b, int ldb, const double *beta,
                   double *c, int ldc)
{
    if (h != &handle_obj || !current_ctx)
        return 1;
    if (m <= 0 || n <= 0 || k <= 0 || lda < (ta ? k : m) || ldb < (tb ? n : k) || ldc < m)
        return 7;   /* CUBLAS_STATUS_INVALID_VALUE */
    if (!valid((uintptr_t)a, sizeof(double) * ((size_t)lda * ((ta ? m : k) - 1) + (ta ? k : m))) ||
        !valid((uintptr_t)b, sizeof(double) * ((size_t)ldb * ((tb ? k : n) - 1) + (tb ? n : k))) ||
        !valid((uintptr_t)c, sizeof(double) * ((size_t)ldc * (n - 1) + m)))
        return 14;  /* CUBLAS_STATUS_INTERNAL_ERROR: an illegal address */
    fake_cuda_stats.gemms++;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int l = 0; l < k; l++)
                s += at(a, lda, ta, i, l) * at(b, ldb, tb, l, j);
            double *p = &c[i + (size_t)j * ldc];
            *p = *beta == 0 ? *alpha * s : *alpha * s + *beta * *p;
        }
    return 0;
}

/* C = alpha op(A) + beta op(B), C m x n; with beta 0, B is not read, and
 * B may be C (the in-place form). */
int cublasDgeam(void *h, int ta, int tb, int m, int n, const double *alpha, const double *a,
                int lda, const double *beta, const double *b, int ldb, double *c, int ldc)
{
    if (h != &handle_obj || !current_ctx)
        return 1;
    if (m <= 0 || n <= 0 || lda < (ta ? n : m) || ldc < m)
        return 7;
    if (!valid((uintptr_t)a, sizeof(double) * ((size_t)lda * ((ta ? m : n) - 1) + (ta ? n : m))) ||
        !valid((uintptr_t)c, sizeof(double) * ((size_t)ldc * (n - 1) + m)))
        return 14;
    fake_cuda_stats.geams++;
    double *t = malloc(sizeof(double) * (size_t)m * n);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++)
            t[i + (size_t)j * m] = *alpha * at(a, lda, ta, i, j) +
                                   (*beta == 0 ? 0 : *beta * at(b, ldb, tb, i, j));
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++)
            c[i + (size_t)j * ldc] = t[i + (size_t)j * m];
    free(t);
    return 0;
}
