/* test_ptx.c — the PTX back end (compiler/codegen_ptx.c): small DL
 * programs compiled with --emit=ptx, and the text of their kernels checked
 * (entries, one kernel per fused chain, warp shuffles in reductions,
 * libdevice math, loops that stay on the CPU). When ptxas is installed
 * (/usr/local/cuda/bin/ptxas) each module must assemble for sm_80. No GPU
 * is needed. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core_support.h"

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *s = hay; (s = strstr(s, needle)); s += strlen(needle))
        n++;
    return n;
}

/* The PTX module of a program (the driver's pipeline at -O2). */
static char *ptx_of(const char *text)
{
    Vec order = {0};
    Module *root = module_load_text("t", text, strlen(text), &order);
    ck_assert_msg(root && diag_error_count() == 0, "does not parse:\n%s", captured());
    typecheck_program(&order);
    ck_assert_msg(diag_error_count() == 0, "does not type-check:\n%s", captured());
    CProgram *p = core_lower_program(&order, root);
    vec_free(&order);
    core_simplify(p, 2);
    ck_assert_msg(ad_transform_program(p), "AD failed:\n%s", captured());
    core_simplify(p, 2);
    char path[] = "/tmp/dcc-ptx-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    Options o = {0};
    o.input = "t.dl";
    o.output = path;
    o.opt_level = 2;
    o.emit = EMIT_PTX;
    ck_assert_msg(codegen_program(p, &o), "codegen failed:\n%s", captured());
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    /* the module assembles, when ptxas is there */
    struct stat st;
    if (stat("/usr/local/cuda/bin/ptxas", &st) == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "/usr/local/cuda/bin/ptxas -arch=sm_80 %s -o /dev/null", path);
        int rc = system(cmd);
        ck_assert_msg(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "ptxas rejects:\n%s", buf);
    }
    unlink(path);
    ck_assert_msg(strstr(buf, ".version") && strstr(buf, ".target sm_80"), "not a PTX module:\n%s", buf);
    return buf;
}

#define ENTRIES(s) count(s, ".entry ")

START_TEST(fused_chain_is_one_kernel)
{
    const char *p = ptx_of("export def f (x: []float) (y: []float) : []float = 2.0 * x + y * y - 0.5\n");
    ck_assert_int_eq(ENTRIES(p), 1);
    /* one pass: each operand loaded once, one store */
    ck_assert_int_eq(count(p, "ld.global.f64"), 2);
    ck_assert_int_eq(count(p, "st.global.f64"), 1);
    /* grid-stride: the loop steps by the grid's size */
    ck_assert(strstr(p, "%nctaid.x") && strstr(p, "%ntid.x"));
}
END_TEST

START_TEST(map_body_inlines)
{
    const char *p = ptx_of("export def f (x: []float) : []float = map (fn v => if v > 0.0 then v * v else 0.0 - v) (x + 1.0)\n");
    ck_assert_int_eq(ENTRIES(p), 1);
    ck_assert_int_eq(count(p, "call"), 0);
}
END_TEST

START_TEST(map2_with_captured_scalar)
{
    const char *p = ptx_of("export def f (a: float) (x: []float) (y: []float) : []float = map2 (fn u v => a * u + v) x y\n");
    ck_assert_int_eq(ENTRIES(p), 1);
    /* the captured scalar is a kernel parameter */
    ck_assert(strstr(p, ".param .f64"));
}
END_TEST

START_TEST(sum_uses_shuffles)
{
    const char *p = ptx_of("export def f (x: []float) (y: []float) : float = sum (x * y)\n");
    /* two passes: per-block partials, then one block */
    ck_assert_int_eq(ENTRIES(p), 2);
    ck_assert_int_ge(count(p, "shfl.sync.down"), 10);
    ck_assert(strstr(p, ".shared"));
    ck_assert(strstr(p, "bar.sync"));
}
END_TEST

START_TEST(reduce_lambda_and_f32)
{
    const char *p = ptx_of("export def f (x: []f32) : f32 = reduce (fn a b => if a > b then a else b) (f32 0.0) x\n"
                           "export def g (x: []float) : float = maximum (abs x)\n");
    ck_assert_int_eq(ENTRIES(p), 4);
    ck_assert(strstr(p, "shfl.sync.down.b32"));
    ck_assert(strstr(p, ".f32"));
}
END_TEST

START_TEST(math_from_libdevice)
{
    const char *p = ptx_of("export def f (x: []float) : []float = exp x + tanh x + log (1.0 + x * x)\n");
    ck_assert_int_eq(ENTRIES(p), 1);
    /* libdevice is linked in and inlined: no calls, no external functions */
    ck_assert_int_eq(count(p, ".extern"), 0);
    ck_assert_int_eq(count(p, "__nv_"), 0);
}
END_TEST

START_TEST(derivative_runs_as_kernels)
{
    const char *p = ptx_of("export def loss (w: []float) : float = sum (w * w * 0.5 + sin w)\n"
                           "export def g (w: []float) : []float = grad loss w\n");
    ck_assert_int_ge(ENTRIES(p), 3);
}
END_TEST

START_TEST(int_arithmetic_wraps)
{
    /* at -O2 integer + - * wrap (no run-time check): a kernel */
    const char *p = ptx_of("export def f (x: []int) : []int = x * 3 + 1\n");
    ck_assert_int_eq(ENTRIES(p), 1);
    ck_assert(strstr(p, "mul.lo.s64"));
}
END_TEST

START_TEST(cpu_only_loops)
{
    /* integer division checks for zero (a run-time error), fold is
     * sequential, strings are not scalars: no kernels */
    const char *p = ptx_of("export def f (x: []int) (y: []int) : []int = x / y\n"
                           "export def g (x: []float) : float = fold (fn a b => a * 0.5 + b) 0.0 x\n"
                           "export def h (x: []float) : []string = map (fn v => show v) x\n");
    ck_assert_int_eq(ENTRIES(p), 0);
}
END_TEST

START_TEST(no_arrays_no_kernels)
{
    const char *p = ptx_of("export def f (x: float) : float = x * 2.0\n");
    ck_assert_int_eq(ENTRIES(p), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ptx");
    TCase *t = tcase_create("kernels");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, fused_chain_is_one_kernel);
    tcase_add_test(t, map_body_inlines);
    tcase_add_test(t, map2_with_captured_scalar);
    tcase_add_test(t, sum_uses_shuffles);
    tcase_add_test(t, reduce_lambda_and_f32);
    tcase_add_test(t, math_from_libdevice);
    tcase_add_test(t, derivative_runs_as_kernels);
    tcase_add_test(t, int_arithmetic_wraps);
    tcase_add_test(t, cpu_only_loops);
    tcase_add_test(t, no_arrays_no_kernels);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
