/* internal.h — libdlrt internals shared between its files; not installed.
 * Everything here has hidden visibility (the library is built with
 * -fvisibility=hidden) and the prefix dlrt_, so a static link cannot clash
 * with a user's names. One section per .c file. */
#ifndef DLRT_INTERNAL_H
#define DLRT_INTERNAL_H

#include "dlrt.h"

#include <locale.h>
#include <stdarg.h>

#define DLRT_ALIGN 64
/* Header block before the data of every array: sizeof(dl_array) rounded up
 * to the alignment, so that data = (char *)a + DLRT_HEADER is aligned. */
#define DLRT_HEADER ((sizeof(dl_array) + DLRT_ALIGN - 1) / DLRT_ALIGN * DLRT_ALIGN)

/* ------------------------------------------------------------------ array.c */

/* 64-byte aligned blocks from the allocation hook; raise on out of memory. */
void *dlrt_alloc(size_t n);
void *dlrt_realloc(void *p, size_t n);   /* p may be NULL */
void dlrt_free(void *p);                 /* p may be NULL */
char *dlrt_strdup(const char *s);        /* s may be NULL: gives NULL */
/* Product of the shape; checks rank, negative dimensions and overflow of
 * size * elem_size, raising an error naming the shape. */
int64_t dlrt_checked_size(int32_t rank, const int64_t *shape, int64_t elem_size,
                          const dl_srcloc *loc);

/* ------------------------------------------------------------------ error.c */

/* Formats the thread's error message without raising. */
void dlrt_error_set(const char *fmt, ...) DL_PRINTF(1, 2);
void dlrt_error_setv(const char *fmt, va_list ap);
/* Raises the message already set, with position loc (NULL keeps none). */
DL_NORETURN void dlrt_error_raise(const dl_srcloc *loc);
/* The "C" locale, for locale-independent number parsing and printing. */
locale_t dlrt_c_locale(void);

/* ------------------------------------------------------------------ print.c */

/* The stream of the print functions (stdout unless set). */
FILE *dlrt_output(void);

/* ------------------------------------------------------------------ gpu.c */

/* The few CUDA driver and cuBLAS types gpu.c uses, declared here so that the
 * build needs no CUDA headers (libcuda and libcublas are dlopen'ed). Each has
 * the size and calling class of its cuda.h / cublas_api.h counterpart;
 * tests/unit/test_rt_gpu.c checks that against the real headers when present. */
typedef int dlrt_cu_result;                     /* CUresult; CUDA_SUCCESS = 0 */
typedef int dlrt_cu_device;                     /* CUdevice */
typedef int dlrt_cu_enum;                       /* CUdevice_attribute, CUjit_option */
typedef struct dlrt_cu_ctx *dlrt_cu_context;    /* CUcontext */
typedef struct dlrt_cu_mod *dlrt_cu_module;     /* CUmodule */
typedef struct dlrt_cu_func *dlrt_cu_function;  /* CUfunction */
typedef struct dlrt_cu_strm *dlrt_cu_stream;    /* CUstream */
typedef unsigned long long dlrt_cu_deviceptr;   /* CUdeviceptr (64-bit) */
typedef int dlrt_cublas_status;                 /* cublasStatus_t; 0 = success */
typedef int dlrt_cublas_op;                     /* cublasOperation_t: N 0, T 1 */
typedef struct dlrt_cublas_ctx *dlrt_cublas_handle;

/* The enumerators gpu.c uses (cuda.h and cublas_api.h values). */
#define DLRT_CU_SUCCESS 0                       /* CUDA_SUCCESS */
#define DLRT_CU_ERROR_OUT_OF_MEMORY 2           /* CUDA_ERROR_OUT_OF_MEMORY */
#define DLRT_CU_ATTR_SM_COUNT 16                /* CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT */
#define DLRT_CU_JIT_ERROR_LOG_BUFFER 5          /* CU_JIT_ERROR_LOG_BUFFER */
#define DLRT_CU_JIT_ERROR_LOG_SIZE 6            /* CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES */
#define DLRT_CUBLAS_OP_N 0                      /* CUBLAS_OP_N */
#define DLRT_CUBLAS_OP_T 1                      /* CUBLAS_OP_T */

/* X(field, symbol, return type, parameters) for every driver entry point, with
 * the types as macro parameters (R result, D device, A attribute enum, J JIT
 * option enum, C context, M module, F function, S stream, P device pointer), so that the
 * test can instantiate the list with cuda.h's types and compare each against
 * the real prototype. The symbols are the _v2 ones where the driver has both. */
#define DLRT_CU_ENTRIES(X, R, D, A, J, C, M, F, S, P)                                     \
    X(init, cuInit, R, (unsigned flags))                                                \
    X(device_get, cuDeviceGet, R, (D *dev, int ordinal))                                \
    X(device_get_attribute, cuDeviceGetAttribute, R, (int *value, A attr, D dev))       \
    X(device_get_name, cuDeviceGetName, R, (char *name, int len, D dev))                \
    X(primary_ctx_retain, cuDevicePrimaryCtxRetain, R, (C *ctx, D dev))                 \
    X(ctx_set_current, cuCtxSetCurrent, R, (C ctx))                                     \
    X(ctx_synchronize, cuCtxSynchronize, R, (void))                                     \
    X(module_load_data_ex, cuModuleLoadDataEx, R,                                       \
      (M *mod, const void *image, unsigned nopt, J *opts, void **values))               \
    X(module_get_function, cuModuleGetFunction, R, (F *fn, M mod, const char *name))    \
    X(launch_kernel, cuLaunchKernel, R,                                                 \
      (F fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,           \
       unsigned bz, unsigned shmem, S stream, void **params, void **extra))             \
    X(mem_alloc, cuMemAlloc_v2, R, (P *dptr, size_t bytes))                             \
    X(mem_free, cuMemFree_v2, R, (P dptr))                                              \
    X(memcpy_htod, cuMemcpyHtoD_v2, R, (P dst, const void *src, size_t bytes))          \
    X(memcpy_dtoh, cuMemcpyDtoH_v2, R, (void *dst, P src, size_t bytes))                \
    X(memcpy_dtod, cuMemcpyDtoD_v2, R, (P dst, P src, size_t bytes))                   \
    X(get_error_name, cuGetErrorName, R, (R err, const char **name))

/* The same for cuBLAS (ST status, H handle, O operation). Column-major, as
 * all BLAS; cublasDgeam computes C = alpha op(A) + beta op(B). */
#define DLRT_CUBLAS_ENTRIES(X, ST, H, O)                                                 \
    X(create, cublasCreate_v2, ST, (H *handle))                                         \
    X(dgemm, cublasDgemm_v2, ST,                                                        \
      (H h, O ta, O tb, int m, int n, int k, const double *alpha, const double *a,      \
       int lda, const double *b, int ldb, const double *beta, double *c, int ldc))      \
    X(dgeam, cublasDgeam, ST,                                                           \
      (H h, O ta, O tb, int m, int n, const double *alpha, const double *a, int lda,    \
       const double *beta, const double *b, int ldb, double *c, int ldc))

/* Number of arrays in the device side table (live or stale device copies);
 * the free path calls dl_gpu_forget only when it is nonzero. */
extern int64_t dlrt_gpu_entries;
/* dl_gpu_host for readers: downloads a device-newer a, and keeps the device
 * copy valid (the caller does not write a). */
void dlrt_gpu_host_read(const dl_array *a);
/* a @ b on the GPU for rank-2 DL_F64 operands when the GPU is in use and
 * worth it (an operand has a device copy, or m*n*k >= 256^3); NULL when the
 * caller must use the CPU. Shapes are checked by the caller. */
dl_array *dlrt_gpu_matmul(const dl_array *a, const dl_array *b);
/* The transpose of a rank-2 DL_F64 array whose device copy is newer, on the
 * device (cublasDgeam); NULL otherwise. */
dl_array *dlrt_gpu_transpose(const dl_array *a);

/* At the entry of a runtime function that reads a's data (DL_HOST) or writes
 * it in place (DL_HOST_W): make the host copy current. One load and branch
 * when no array has a device copy. */
#define DL_HOST(a)                                                                      \
    do {                                                                                \
        if (__atomic_load_n(&dl_gpu_resident, __ATOMIC_RELAXED))                        \
            dlrt_gpu_host_read(a);                                                      \
    } while (0)
#define DL_HOST_W(a)                                                                    \
    do {                                                                                \
        if ((a) && __atomic_load_n(&dl_gpu_resident, __ATOMIC_RELAXED))                 \
            dl_gpu_host(a);                                                             \
    } while (0)
/* In the array free path. */
#define DL_GPU_FORGET(a)                                                                \
    do {                                                                                \
        if (__atomic_load_n(&dlrt_gpu_entries, __ATOMIC_RELAXED))                       \
            dl_gpu_forget(a);                                                           \
    } while (0)

#endif /* DLRT_INTERNAL_H */
