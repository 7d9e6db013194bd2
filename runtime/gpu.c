/* gpu.c — PTX kernels, device copies of arrays and cuBLAS through the CUDA
 * driver API, loaded with dlopen on first use (so neither the build nor a
 * machine without a GPU needs CUDA; the types are those of internal.h).
 *
 * Residency: a side table, keyed by the array's address, holds each array's
 * device block and which copy is current:
 *   STALE   the host copy is the current one (the block is kept for reuse);
 *   SYNCED  both copies are equal;
 *   DEVICE  the device copy is newer (a kernel wrote it).
 * dl_gpu_resident counts SYNCED and DEVICE entries: host code must call
 * dl_gpu_host before it touches such an array, which downloads a DEVICE copy
 * and, since the host may then write, makes the entry STALE (readers inside
 * libdlrt keep it SYNCED: dlrt_gpu_host_read). Device blocks come in power-of-
 * two size classes and go back to a free list when their array dies, since
 * cuMemFree synchronises the device and cuMemAlloc is slow; the free lists
 * are emptied when the device runs out of memory. One mutex guards the table,
 * the free lists and the caches; they grow with malloc, not the allocation
 * hook, whose failure would raise with the mutex held. */
#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int64_t dl_gpu_resident;
int64_t dlrt_gpu_entries;

/* ---------------------------------------------------------------- driver */

#define DECLARE(field, sym, ret, params) ret(*field) params;
static struct {
    DLRT_CU_ENTRIES(DECLARE, dlrt_cu_result, dlrt_cu_device, dlrt_cu_enum, dlrt_cu_enum,
                    dlrt_cu_context, dlrt_cu_module, dlrt_cu_function, dlrt_cu_stream,
                    dlrt_cu_deviceptr)
} cu;
static struct {
    DLRT_CUBLAS_ENTRIES(DECLARE, dlrt_cublas_status, dlrt_cublas_handle, dlrt_cublas_op)
} cublas;
#undef DECLARE

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int gpu_ok;                 /* set once, by gpu_init */
static int gpu_asked;              /* dl_gpu_available was called: the program uses the GPU */
static dlrt_cu_context context;    /* device 0's primary context */
static int sm_count = 80;
static __thread int context_current;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool verbose;

static struct {
    int64_t uploads, downloads, launches, gemms, allocs;
    double up_bytes, down_bytes;
} stats;

/* The driver's name for an error; a few by number when the driver cannot
 * say (the toolkit's stub libcuda answers nothing). */
static const char *err_name(dlrt_cu_result r)
{
    static __thread char buf[32];
    const char *s = NULL;
    if (cu.get_error_name && cu.get_error_name(r, &s) == DLRT_CU_SUCCESS && s)
        return s;
    switch (r) {
    case 3: return "CUDA_ERROR_NOT_INITIALIZED";
    case 34: return "CUDA_ERROR_STUB_LIBRARY (a stub libcuda, not a driver)";
    case 35: return "CUDA_ERROR_INSUFFICIENT_DRIVER";
    case 100: return "CUDA_ERROR_NO_DEVICE";
    default: break;
    }
    snprintf(buf, sizeof buf, "CUDA error %d", r);
    return buf;
}

/* A failed driver call: a run-time error. Called without the lock held. */
static DL_NORETURN void cu_fail(dlrt_cu_result r, const char *what)
{
    dl_error(NULL, "CUDA error in %s: %s", what, err_name(r));
}

static void no_gpu(const char *fmt, ...) DL_PRINTF(1, 2);
static void no_gpu(const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    dl_flush();
    fprintf(stderr, "dlrt: no CUDA GPU (%s); running on the CPU\n", reason);
    memset(&cu, 0, sizeof cu);
}

static void print_stats(void)
{
    fprintf(stderr,
            "dlrt: GPU: %lld uploads (%.1f MB), %lld downloads (%.1f MB), %lld kernel "
            "launches, %lld cuBLAS calls, %lld device blocks allocated\n",
            (long long)stats.uploads, stats.up_bytes / 1e6, (long long)stats.downloads,
            stats.down_bytes / 1e6, (long long)stats.launches, (long long)stats.gemms,
            (long long)stats.allocs);
}

static void gpu_init(void)
{
    const char *env = getenv("DL_GPU");
    if (env && strcmp(env, "0") == 0)
        return;
    env = getenv("DL_GPU_VERBOSE");
    verbose = env && *env && strcmp(env, "0") != 0;
    const char *path = getenv("DL_CUDA_LIB");
    if (!path || !*path)
        path = "libcuda.so.1";
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        no_gpu("%s", e ? e : path);
        return;
    }
#define RESOLVE(field, sym, ret, params)                                                 \
    if (!(*(void **)&cu.field = dlsym(h, #sym))) {                                       \
        no_gpu("%s has no %s", path, #sym);                                              \
        return;                                                                          \
    }
    DLRT_CU_ENTRIES(RESOLVE, , , , , , , , , )
#undef RESOLVE
    dlrt_cu_result r;
    dlrt_cu_device dev;
    if ((r = cu.init(0)) != DLRT_CU_SUCCESS) {
        no_gpu("cuInit: %s", err_name(r));
        return;
    }
    if ((r = cu.device_get(&dev, 0)) != DLRT_CU_SUCCESS) {
        no_gpu("cuDeviceGet: %s", err_name(r));
        return;
    }
    if ((r = cu.primary_ctx_retain(&context, dev)) != DLRT_CU_SUCCESS ||
        (r = cu.ctx_set_current(context)) != DLRT_CU_SUCCESS) {
        no_gpu("no context on device 0: %s", err_name(r));
        return;
    }
    context_current = 1;
    int n = 0;
    if (cu.device_get_attribute(&n, DLRT_CU_ATTR_SM_COUNT, dev) == DLRT_CU_SUCCESS && n > 0)
        sm_count = n;
    gpu_ok = 1;
    if (verbose) {
        char name[256] = "?";
        cu.device_get_name(name, sizeof name, dev);
        fprintf(stderr, "dlrt: GPU 0: %s, %d multiprocessors (%s)\n", name, sm_count, path);
        atexit(print_stats);
    }
}

int dl_gpu_available(void)
{
    __atomic_store_n(&gpu_asked, 1, __ATOMIC_RELAXED);
    pthread_once(&init_once, gpu_init);
    return gpu_ok;
}

/* The primary context is made current once per calling thread. */
static void ensure_context(void)
{
    if (!context_current) {
        dlrt_cu_result r = cu.ctx_set_current(context);
        if (r != DLRT_CU_SUCCESS)
            cu_fail(r, "cuCtxSetCurrent");
        context_current = 1;
    }
}

static void need_gpu(const char *fn)
{
    if (!dl_gpu_available())
        dl_error(NULL, "%s: no CUDA GPU", fn);
    ensure_context();
}

/* ---------------------------------------------------------------- device blocks */

#define MIN_CLASS 8   /* 256 bytes */
#define NCLASSES 48

static struct {
    dlrt_cu_deviceptr *p;
    size_t n, cap;
} pool[NCLASSES];

static int size_class(size_t bytes)
{
    int c = MIN_CLASS;
    while (c < NCLASSES - 1 && ((size_t)1 << c) < bytes)
        c++;
    return c;
}

static void pool_flush(void)
{
    for (int c = 0; c < NCLASSES; c++) {
        for (size_t i = 0; i < pool[c].n; i++)
            cu.mem_free(pool[c].p[i]);
        pool[c].n = 0;
    }
}

static void drop_stale_blocks(void);

/* A block of at least `bytes` (lock held); 0 and *err set on failure. When
 * the device is full, the cached free blocks and the blocks of STALE entries
 * are given back to the driver first. */
static dlrt_cu_deviceptr block_get(size_t bytes, int *cls, dlrt_cu_result *err)
{
    int c = size_class(bytes);
    *cls = c;
    if (pool[c].n)
        return pool[c].p[--pool[c].n];
    dlrt_cu_deviceptr p = 0;
    dlrt_cu_result r = cu.mem_alloc(&p, (size_t)1 << c);
    if (r == DLRT_CU_ERROR_OUT_OF_MEMORY) {
        pool_flush();
        drop_stale_blocks();
        r = cu.mem_alloc(&p, (size_t)1 << c);
    }
    *err = r;
    if (r != DLRT_CU_SUCCESS)
        return 0;
    stats.allocs++;
    return p;
}

static void block_put(dlrt_cu_deviceptr p, int c)
{
    if (pool[c].n == pool[c].cap) {
        size_t cap = pool[c].cap ? 2 * pool[c].cap : 16;
        dlrt_cu_deviceptr *q = realloc(pool[c].p, cap * sizeof *q);
        if (!q) {             /* cannot keep it: give it back to the driver */
            cu.mem_free(p);
            return;
        }
        pool[c].p = q;
        pool[c].cap = cap;
    }
    pool[c].p[pool[c].n++] = p;
}

/* ---------------------------------------------------------------- side table */

enum { STALE, SYNCED, DEVICE };

typedef struct Entry {
    dl_array *a;              /* NULL: empty slot */
    dlrt_cu_deviceptr dptr;
    size_t bytes;             /* the array's size when the block was taken */
    int cls;                  /* the block's size class */
    int state;
} Entry;

/* Open addressing with linear probing; deletion shifts entries back (Knuth,
 * TAOCP vol. 3, 6.4, Algorithm R), so there are no tombstones. */
static Entry *tab;
static size_t tab_cap;        /* a power of two, or 0 */

static size_t slot_of(const dl_array *a)
{
    return (size_t)(((uint64_t)(uintptr_t)a * 0x9E3779B97F4A7C15ull) >> 20) & (tab_cap - 1);
}

static Entry *table_find(const dl_array *a)
{
    if (!tab_cap)
        return NULL;
    for (size_t i = slot_of(a);; i = (i + 1) & (tab_cap - 1)) {
        if (tab[i].a == a)
            return &tab[i];
        if (!tab[i].a)
            return NULL;
    }
}

static Entry *table_insert(dl_array *a)
{
    int64_t n = dlrt_gpu_entries;
    if ((size_t)(n + 1) * 2 > tab_cap) {
        size_t cap = tab_cap ? 2 * tab_cap : 64;
        Entry *old = tab;
        size_t ocap = tab_cap;
        tab = calloc(cap, sizeof *tab);
        if (!tab) {
            tab = old;
            return NULL;
        }
        tab_cap = cap;
        for (size_t i = 0; i < ocap; i++)
            if (old[i].a) {
                size_t j = slot_of(old[i].a);
                while (tab[j].a)
                    j = (j + 1) & (cap - 1);
                tab[j] = old[i];
            }
        free(old);
    }
    size_t i = slot_of(a);
    while (tab[i].a)
        i = (i + 1) & (tab_cap - 1);
    tab[i] = (Entry){ .a = a, .state = STALE };
    __atomic_store_n(&dlrt_gpu_entries, n + 1, __ATOMIC_RELAXED);
    return &tab[i];
}

static void drop_stale_blocks(void)
{
    for (size_t i = 0; i < tab_cap; i++)
        if (tab[i].a && tab[i].state == STALE && tab[i].dptr) {
            cu.mem_free(tab[i].dptr);
            tab[i].dptr = 0;
        }
}

static void set_state(Entry *e, int s)
{
    int d = (s != STALE) - (e->state != STALE);
    e->state = s;
    if (d)
        __atomic_add_fetch(&dl_gpu_resident, d, __ATOMIC_RELAXED);
}

static void table_remove(Entry *e)
{
    set_state(e, STALE);
    size_t i = (size_t)(e - tab), mask = tab_cap - 1;
    tab[i].a = NULL;
    for (size_t j = (i + 1) & mask; tab[j].a; j = (j + 1) & mask) {
        size_t k = slot_of(tab[j].a);
        /* move tab[j] into the hole at i unless its home k lies cyclically in (i, j] */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        tab[i] = tab[j];
        tab[j].a = NULL;
        i = j;
    }
    __atomic_store_n(&dlrt_gpu_entries, dlrt_gpu_entries - 1, __ATOMIC_RELAXED);
}

/* a's entry with a device block of its size (lock held); unlocks and raises
 * on failure. */
static Entry *entry_with_block(dl_array *a, size_t bytes)
{
    Entry *e = table_find(a);
    if (e && e->dptr && e->bytes != bytes) {   /* the header changed under us */
        block_put(e->dptr, e->cls);
        e->dptr = 0;
        set_state(e, STALE);
    }
    if (!e && !(e = table_insert(a))) {
        pthread_mutex_unlock(&lock);
        dl_error(NULL, "out of memory (GPU side table)");
    }
    if (!e->dptr) {
        dlrt_cu_result r = DLRT_CU_SUCCESS;
        e->dptr = block_get(bytes, &e->cls, &r);
        if (!e->dptr) {
            table_remove(e);
            pthread_mutex_unlock(&lock);
            if (r == DLRT_CU_ERROR_OUT_OF_MEMORY)
                dl_error(NULL, "out of GPU memory (asked for %zu bytes)", bytes);
            cu_fail(r, "cuMemAlloc");
        }
        e->bytes = bytes;
        e->state = STALE;
    }
    return e;
}

static uint64_t device_address(dl_array *a, bool upload, const char *fn)
{
    need_gpu(fn);
    size_t bytes = (size_t)dl_array_nbytes(a);
    if (bytes == 0)
        return 0;
    pthread_mutex_lock(&lock);
    Entry *e = entry_with_block(a, bytes);
    if (!upload) {
        set_state(e, DEVICE);
    } else if (e->state == STALE) {
        dlrt_cu_result r = cu.memcpy_htod(e->dptr, a->data, bytes);
        if (r != DLRT_CU_SUCCESS) {
            pthread_mutex_unlock(&lock);
            cu_fail(r, "cuMemcpyHtoD");
        }
        stats.uploads++;
        stats.up_bytes += (double)bytes;
        set_state(e, SYNCED);
    }
    uint64_t d = e->dptr;
    pthread_mutex_unlock(&lock);
    return d;
}

uint64_t dl_gpu_dev(dl_array *a) { return device_address(a, true, "dl_gpu_dev"); }

uint64_t dl_gpu_dev_out(dl_array *a) { return device_address(a, false, "dl_gpu_dev_out"); }

void dl_gpu_wrote(dl_array *a)
{
    if (dl_array_nbytes(a) == 0)
        return;
    pthread_mutex_lock(&lock);
    Entry *e = table_find(a);
    if (!e || !e->dptr) {
        pthread_mutex_unlock(&lock);
        dl_error(NULL, "dl_gpu_wrote: the array has no device copy (dl_gpu_dev first)");
    }
    set_state(e, DEVICE);
    pthread_mutex_unlock(&lock);
}

/* Downloads a DEVICE copy; then the entry is SYNCED when `keep` (the caller
 * only reads) or a is immortal, else STALE. */
static void host_sync(dl_array *a, bool keep)
{
    if (!a || !__atomic_load_n(&dl_gpu_resident, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&lock);
    Entry *e = table_find(a);
    if (!e || e->state == STALE) {
        pthread_mutex_unlock(&lock);
        return;
    }
    if (e->state == DEVICE) {
        if (!context_current && cu.ctx_set_current(context) == DLRT_CU_SUCCESS)
            context_current = 1;
        dlrt_cu_result r = cu.memcpy_dtoh(a->data, e->dptr, e->bytes);
        if (r != DLRT_CU_SUCCESS) {
            pthread_mutex_unlock(&lock);
            cu_fail(r, "cuMemcpyDtoH");
        }
        stats.downloads++;
        stats.down_bytes += (double)e->bytes;
    }
    set_state(e, keep || a->refcount < 0 ? SYNCED : STALE);
    pthread_mutex_unlock(&lock);
}

void dl_gpu_host(dl_array *a) { host_sync(a, false); }

void dlrt_gpu_host_read(const dl_array *a) { host_sync((dl_array *)a, true); }

void dl_gpu_forget(dl_array *a)
{
    if (!a || !__atomic_load_n(&dlrt_gpu_entries, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&lock);
    Entry *e = table_find(a);
    if (e) {
        if (e->dptr)
            block_put(e->dptr, e->cls);
        table_remove(e);
    }
    pthread_mutex_unlock(&lock);
}

/* ---------------------------------------------------------------- kernels */

/* Modules by PTX address; kernels by (PTX address, name address). Both are
 * small: one module per program, one entry per kernel. */
typedef struct Module {
    const char *ptx;
    dlrt_cu_module mod;
} Module;

typedef struct Kernel {
    const char *ptx, *name;
    dlrt_cu_function fn;
} Kernel;

static Module *modules;
static size_t nmodules, cap_modules;
static Kernel *kernels;
static size_t nkernels, cap_kernels;

/* Lock held; unlocks and raises on failure. */
static dlrt_cu_module module_for(const char *ptx)
{
    for (size_t i = 0; i < nmodules; i++)
        if (modules[i].ptx == ptx)
            return modules[i].mod;
    char log[4096] = "";
    dlrt_cu_enum opts[2] = { DLRT_CU_JIT_ERROR_LOG_BUFFER, DLRT_CU_JIT_ERROR_LOG_SIZE };
    void *vals[2] = { log, (void *)(uintptr_t)sizeof log };
    dlrt_cu_module mod;
    dlrt_cu_result r = cu.module_load_data_ex(&mod, ptx, 2, opts, vals);
    if (r != DLRT_CU_SUCCESS) {
        pthread_mutex_unlock(&lock);
        log[sizeof log - 1] = 0;
        dl_error(NULL, "CUDA cannot load the PTX module: %s%s%s", err_name(r), *log ? ": " : "",
                 log);
    }
    if (nmodules == cap_modules) {
        size_t cap = cap_modules ? 2 * cap_modules : 4;
        Module *m = realloc(modules, cap * sizeof *m);
        if (!m) {
            pthread_mutex_unlock(&lock);
            dl_error(NULL, "out of memory (GPU module cache)");
        }
        modules = m;
        cap_modules = cap;
    }
    modules[nmodules++] = (Module){ ptx, mod };
    return mod;
}

void *dl_gpu_kernel(const char *ptx, const char *name)
{
    if (!dl_gpu_available())
        return NULL;
    ensure_context();
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nkernels; i++)
        if (kernels[i].ptx == ptx && kernels[i].name == name) {
            void *fn = kernels[i].fn;
            pthread_mutex_unlock(&lock);
            return fn;
        }
    dlrt_cu_module mod = module_for(ptx);
    dlrt_cu_function fn;
    dlrt_cu_result r = cu.module_get_function(&fn, mod, name);
    if (r != DLRT_CU_SUCCESS) {
        pthread_mutex_unlock(&lock);
        dl_error(NULL, "no kernel '%s' in the PTX module: %s", name, err_name(r));
    }
    if (nkernels == cap_kernels) {
        size_t cap = cap_kernels ? 2 * cap_kernels : 16;
        Kernel *k = realloc(kernels, cap * sizeof *k);
        if (!k) {
            pthread_mutex_unlock(&lock);
            dl_error(NULL, "out of memory (GPU kernel cache)");
        }
        kernels = k;
        cap_kernels = cap;
    }
    kernels[nkernels++] = (Kernel){ ptx, name, fn };
    pthread_mutex_unlock(&lock);
    return fn;
}

void dl_gpu_launch(void *kernel, uint32_t grid, uint32_t block, uint32_t shmem, void **args)
{
    if (!kernel)
        dl_error(NULL, "dl_gpu_launch: no kernel (no CUDA GPU)");
    ensure_context();
    dlrt_cu_result r = cu.launch_kernel(kernel, grid, 1, 1, block, 1, 1, shmem, NULL, args, NULL);
    if (r != DLRT_CU_SUCCESS)
        cu_fail(r, "cuLaunchKernel");
    __atomic_add_fetch(&stats.launches, 1, __ATOMIC_RELAXED);
}

/* Enough blocks to cover n, but no more than 32 per multiprocessor: a
 * grid-stride loop covers the rest. */
uint32_t dl_gpu_grid(int64_t n, uint32_t block)
{
    if (n <= 0 || block == 0)
        return 1;
    int64_t g = (n + block - 1) / block, cap = (int64_t)sm_count * 32;
    return (uint32_t)(g < cap ? g : cap);
}

/* ---------------------------------------------------------------- cuBLAS */

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static dlrt_cublas_handle blas_handle;
static int blas_ok;

static void blas_init(void)
{
    const char *env = getenv("DL_CUBLAS_LIB");
    const char *names[] = { env && *env ? env : "libcublas.so.13", "libcublas.so" };
    void *h = NULL;
    const char *path = names[0];
    for (int i = 0; i < (env && *env ? 1 : 2) && !h; i++)
        h = dlopen(path = names[i], RTLD_NOW | RTLD_LOCAL);
    const char *why = NULL;
    char buf[512];
    if (!h) {
        why = dlerror();
    } else {
#define RESOLVE(field, sym, ret, params)                                                 \
        if (!why && !(*(void **)&cublas.field = dlsym(h, #sym))) {                       \
            snprintf(buf, sizeof buf, "%s has no %s", path, #sym);                       \
            why = buf;                                                                   \
        }
        DLRT_CUBLAS_ENTRIES(RESOLVE, , , )
#undef RESOLVE
        int st;
        if (!why && (st = cublas.create(&blas_handle)) != 0) {
            snprintf(buf, sizeof buf, "cublasCreate: status %d", st);
            why = buf;
        }
    }
    if (why) {
        dl_flush();
        fprintf(stderr, "dlrt: no cuBLAS (%s); matrix products on the CPU\n", why);
        return;
    }
    blas_ok = 1;
}

static bool blas_ready(void)
{
    if (!dl_gpu_available())
        return false;
    ensure_context();
    pthread_once(&blas_once, blas_init);
    return blas_ok;
}

static bool fits_int(int64_t x) { return x > 0 && x <= 0x7fffffff; }

/* Row-major C [m,n] = op(A) op(B). Read column-major, every row-major matrix
 * is its transpose, so cuBLAS computes C^T = op(B)^T op(A)^T: B first, with
 * B's transposition, leading dimensions the row lengths. */
int dl_gpu_dgemm(int transa, int transb, dl_array *a, dl_array *b, dl_array *c)
{
    if (a->dtype != DL_F64 || b->dtype != DL_F64 || c->dtype != DL_F64 || a->rank != 2 ||
        b->rank != 2 || c->rank != 2 || c == a || c == b)
        return 0;
    int64_t m = transa ? a->shape[1] : a->shape[0], k = transa ? a->shape[0] : a->shape[1];
    int64_t kb = transb ? b->shape[1] : b->shape[0], n = transb ? b->shape[0] : b->shape[1];
    if (k != kb || c->shape[0] != m || c->shape[1] != n || !fits_int(m) || !fits_int(n) ||
        !fits_int(k) || !fits_int(a->shape[1]) || !fits_int(b->shape[1]))
        return 0;
    if (!blas_ready())
        return 0;
    uint64_t da = dl_gpu_dev(a), db = dl_gpu_dev(b), dc = dl_gpu_dev_out(c);
    const double one = 1.0, zero = 0.0;
    pthread_mutex_lock(&lock);
    int st = cublas.dgemm(blas_handle, transb ? DLRT_CUBLAS_OP_T : DLRT_CUBLAS_OP_N,
                          transa ? DLRT_CUBLAS_OP_T : DLRT_CUBLAS_OP_N, (int)n, (int)m, (int)k,
                          &one, (const double *)(uintptr_t)db, (int)b->shape[1],
                          (const double *)(uintptr_t)da, (int)a->shape[1], &zero,
                          (double *)(uintptr_t)dc, (int)n);
    stats.gemms++;
    pthread_mutex_unlock(&lock);
    if (st != 0)
        dl_error(NULL, "cuBLAS error in cublasDgemm_v2: status %d", st);
    return 1;
}

/* The GPU is used for products only in programs that asked for it (they
 * called dl_gpu_available) or with DL_GPU=1. */
static bool gpu_in_use(void)
{
    static int forced = -1;
    if (forced < 0) {
        const char *e = getenv("DL_GPU");
        forced = e && strcmp(e, "1") == 0;
    }
    if (!__atomic_load_n(&gpu_asked, __ATOMIC_RELAXED) && !forced)
        return false;
    return dl_gpu_available();
}

static bool has_live_copy(const dl_array *a)
{
    if (!__atomic_load_n(&dl_gpu_resident, __ATOMIC_RELAXED))
        return false;
    pthread_mutex_lock(&lock);
    Entry *e = table_find(a);
    bool live = e && e->state != STALE;
    pthread_mutex_unlock(&lock);
    return live;
}

/* Worth it when an operand is on the device already (a CPU product would
 * download it), or when the product is large: m n k >= 256^3. */
dl_array *dlrt_gpu_matmul(const dl_array *a, const dl_array *b)
{
    if (a->dtype != DL_F64 || b->dtype != DL_F64 || a->rank != 2 || b->rank != 2 ||
        a->shape[1] != b->shape[0] || !gpu_in_use())
        return NULL;
    int64_t m = a->shape[0], k = a->shape[1], n = b->shape[1];
    if (m == 0 || n == 0 || k == 0)
        return NULL;
    if (!has_live_copy(a) && !has_live_copy(b) && (double)m * (double)n * (double)k < 16777216.0)
        return NULL;
    int64_t shape[2] = { m, n };
    dl_array *c = dl_array_new(DL_F64, 2, shape);
    if (dl_gpu_dgemm(0, 0, (dl_array *)a, (dl_array *)b, c))
        return c;
    dl_array_release(c);
    return NULL;
}

/* Row-major a [r, s] is column-major A' [s x r] (lda s); its transpose,
 * row-major [s, r], is column-major [r x s] (ldc r): C = op_T(A') by
 * cublasDgeam with beta 0, in its documented in-place form B = C. */
dl_array *dlrt_gpu_transpose(const dl_array *a)
{
    if (a->dtype != DL_F64 || a->rank != 2 || !a->size ||
        !__atomic_load_n(&dl_gpu_resident, __ATOMIC_RELAXED) || !fits_int(a->shape[0]) ||
        !fits_int(a->shape[1]))
        return NULL;
    pthread_mutex_lock(&lock);
    Entry *e = table_find(a);
    bool device = e && e->state == DEVICE;
    pthread_mutex_unlock(&lock);
    if (!device || !blas_ready())
        return NULL;
    int r = (int)a->shape[0], s = (int)a->shape[1];
    int64_t shape[2] = { s, r };
    dl_array *t = dl_array_new(DL_F64, 2, shape);
    uint64_t da = dl_gpu_dev((dl_array *)a), dt = dl_gpu_dev_out(t);
    const double one = 1.0, zero = 0.0;
    pthread_mutex_lock(&lock);
    int st = cublas.dgeam(blas_handle, DLRT_CUBLAS_OP_T, DLRT_CUBLAS_OP_N, r, s, &one,
                          (const double *)(uintptr_t)da, s, &zero, (const double *)(uintptr_t)dt,
                          r, (double *)(uintptr_t)dt, r);
    stats.gemms++;
    pthread_mutex_unlock(&lock);
    if (st != 0) {
        dl_array_release(t);
        dl_error(NULL, "cuBLAS error in cublasDgeam: status %d", st);
    }
    return t;
}
