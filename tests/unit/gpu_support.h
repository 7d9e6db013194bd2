/* gpu_support.h — what the GPU runtime tests share: a hand-written PTX
 * module (ISA 7.0, sm_80) with two grid-stride kernels over f64 vectors,
 *     scale2(double *x, long n)           x[i] *= 2
 *     fill(double *x, long n, double v)   x[i] = v
 * (tests/unit/fake_cuda.c implements the same two on the host). */
#ifndef GPU_SUPPORT_H
#define GPU_SUPPORT_H

#define GRID_STRIDE_HEAD(PARAMS)                                               \
    "{\n"                                                                      \
    "    .reg .pred %p;\n"                                                     \
    "    .reg .b32 %r<4>;\n"                                                   \
    "    .reg .b64 %rd<8>;\n"                                                  \
    "    .reg .f64 %fd<3>;\n"                                                  \
    "    ld.param.u64 %rd1, [x];\n"                                            \
    "    ld.param.u64 %rd2, [n];\n"                                            \
    PARAMS                                                                     \
    "    cvta.to.global.u64 %rd1, %rd1;\n"                                     \
    "    mov.u32 %r1, %ctaid.x;\n"                                             \
    "    mov.u32 %r2, %ntid.x;\n"                                              \
    "    mov.u32 %r3, %tid.x;\n"                                               \
    "    mul.wide.u32 %rd3, %r1, %r2;\n"                                       \
    "    cvt.u64.u32 %rd4, %r3;\n"                                             \
    "    add.s64 %rd3, %rd3, %rd4;\n"                                          \
    "    mov.u32 %r1, %nctaid.x;\n"                                            \
    "    mul.wide.u32 %rd4, %r1, %r2;\n"                                       \
    "LOOP:\n"                                                                  \
    "    setp.ge.s64 %p, %rd3, %rd2;\n"                                        \
    "    @%p bra DONE;\n"                                                      \
    "    shl.b64 %rd5, %rd3, 3;\n"                                             \
    "    add.s64 %rd6, %rd1, %rd5;\n"

#define GRID_STRIDE_TAIL                                                       \
    "    add.s64 %rd3, %rd3, %rd4;\n"                                          \
    "    bra LOOP;\n"                                                          \
    "DONE:\n"                                                                  \
    "    ret;\n"                                                               \
    "}\n"

static const char test_ptx[] =
    ".version 7.0\n"
    ".target sm_80\n"
    ".address_size 64\n"
    "\n"
    ".visible .entry scale2(.param .u64 x, .param .u64 n)\n"
    GRID_STRIDE_HEAD("")
    "    ld.global.f64 %fd1, [%rd6];\n"
    "    add.f64 %fd1, %fd1, %fd1;\n"
    "    st.global.f64 [%rd6], %fd1;\n"
    GRID_STRIDE_TAIL
    "\n"
    ".visible .entry fill(.param .u64 x, .param .u64 n, .param .f64 v)\n"
    GRID_STRIDE_HEAD("    ld.param.f64 %fd2, [v];\n")
    "    st.global.f64 [%rd6], %fd2;\n"
    GRID_STRIDE_TAIL;

#endif
