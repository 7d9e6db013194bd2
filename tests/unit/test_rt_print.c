/* test_rt_print.c — printing in DL literal syntax, shortest round trip. */
#include <check.h>
#include <dlrt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Output captured in memory through dl_set_output. */
static char *cap_buf;
static size_t cap_len;
static FILE *cap;

static void cap_begin(void)
{
    cap = open_memstream(&cap_buf, &cap_len);
    ck_assert_ptr_nonnull(cap);
    dl_set_output(cap);
}

/* Returns what was printed since cap_begin; valid until the next cap_begin. */
static const char *cap_end(void)
{
    static char text[4096];
    dl_flush();
    fclose(cap);
    dl_set_output(NULL);
    snprintf(text, sizeof text, "%s", cap_buf);
    free(cap_buf);
    return text;
}

static const char *f64(double x)
{
    cap_begin();
    dl_print_f64(x);
    return cap_end();
}

static const char *f32(float x)
{
    cap_begin();
    dl_print_f32(x);
    return cap_end();
}

START_TEST(test_f64_cases)
{
    ck_assert_str_eq(f64(0.1), "0.1");
    ck_assert_str_eq(f64(1.0 / 3.0), "0.3333333333333333");
    ck_assert_str_eq(f64(2.0 / 3.0), "0.6666666666666666");
    ck_assert_str_eq(f64(1e300), "1e+300");
    ck_assert_str_eq(f64(5e-324), "5e-324");
    ck_assert_str_eq(f64(-0.0), "-0.0");
    ck_assert_str_eq(f64(0.0), "0.0");
    ck_assert_str_eq(f64(2.0), "2.0");
    ck_assert_str_eq(f64(-17.0), "-17.0");
    ck_assert_str_eq(f64(1.0), "1.0");
    ck_assert_str_eq(f64(0.5), "0.5");
    ck_assert_str_eq(f64(123.456), "123.456");
    ck_assert_str_eq(f64(0.1 + 0.2), "0.30000000000000004");
    ck_assert_str_eq(f64(1e-4), "0.0001");
    ck_assert_str_eq(f64(1e-5), "1e-05");
    ck_assert_str_eq(f64(1.5e-7), "1.5e-07");
    ck_assert_str_eq(f64(1e15), "1000000000000000.0");
    ck_assert_str_eq(f64(1e16), "1e+16");
    ck_assert_str_eq(f64(123456789012345678.0), "1.2345678901234568e+17");
    ck_assert_str_eq(f64(1.7976931348623157e308), "1.7976931348623157e+308");
    ck_assert_str_eq(f64(2.2250738585072014e-308), "2.2250738585072014e-308");
    ck_assert_str_eq(f64(INFINITY), "inf");
    ck_assert_str_eq(f64(-INFINITY), "-inf");
    ck_assert_str_eq(f64(NAN), "nan");
}
END_TEST

/* Every finite double prints as text that reads back to the same double,
 * looks like a float literal, and has no more digits than needed: dropping
 * the last significant digit (rounding) must change the value. */
START_TEST(test_f64_round_trip_random)
{
    uint64_t s = 88172645463325252u;
    for (int i = 0; i < 100000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;   /* xorshift64 (Marsaglia 2003) */
        double x;
        uint64_t bits = i % 2 ? s : (s >> 12) | 0x3ff0000000000000u;   /* also [1, 2) */
        memcpy(&x, &bits, 8);
        if (!isfinite(x))
            continue;
        char buf[40];
        int n = dl_format_f64(buf, sizeof buf, x);
        ck_assert_int_eq(n, (int)strlen(buf));
        ck_assert_msg(strtod(buf, NULL) == x, "%s does not read back", buf);
        ck_assert_msg(strpbrk(buf, ".e") != NULL, "%s is not a float literal", buf);
        /* the significant digits: no sign, dot, leading or trailing zeros */
        char dig[40];
        int sig = 0;
        for (const char *q = buf; *q && *q != 'e'; q++)
            if (*q >= '0' && *q <= '9' && (sig || *q != '0'))
                dig[sig++] = *q;
        while (sig > 1 && dig[sig - 1] == '0')
            sig--;
        if (sig > 1) {
            char shorter[40];
            snprintf(shorter, sizeof shorter, "%.*e", sig - 2, x);
            ck_assert_msg(strtod(shorter, NULL) != x, "%s is longer than %s", buf, shorter);
        }
    }
}
END_TEST

START_TEST(test_f32)
{
    ck_assert_str_eq(f32(0.1f), "0.1");
    ck_assert_str_eq(f32(1.0f / 3.0f), "0.33333334");
    ck_assert_str_eq(f32(2.0f), "2.0");
    ck_assert_str_eq(f32(-0.0f), "-0.0");
    ck_assert_str_eq(f32(16777216.0f), "16777216.0");
    ck_assert_str_eq(f32(3.4028235e38f), "3.4028235e+38");
    ck_assert_str_eq(f32(1e-45f), "1e-45");
    ck_assert_str_eq(f32(INFINITY), "inf");
    uint32_t s = 2463534242u;
    for (int i = 0; i < 100000; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;   /* xorshift32 */
        float x;
        memcpy(&x, &s, 4);
        if (!isfinite(x))
            continue;
        char buf[40];
        dl_format_f32(buf, sizeof buf, x);
        ck_assert_msg(strtof(buf, NULL) == x, "%s does not read back", buf);
        ck_assert(strpbrk(buf, ".e") != NULL);
    }
}
END_TEST

START_TEST(test_scalars)
{
    cap_begin();
    dl_print_i64(INT64_MIN);
    dl_print_str(" ");
    dl_print_i64(42);
    dl_print_str(" ");
    dl_print_bool(true);
    dl_print_str(",");
    dl_print_bool(false);
    dl_print_unit();
    dl_print_newline();
    ck_assert_str_eq(cap_end(), "-9223372036854775808 42 true,false()\n");

    cap_begin();
    dl_print_string_literal("a\"b\\c\n\t\r\x01\x7f é");
    ck_assert_str_eq(cap_end(), "\"a\\\"b\\\\c\\n\\t\\r\\x01\\x7f é\"");
    cap_begin();
    dl_print_string_literal("");
    ck_assert_str_eq(cap_end(), "\"\"");
}
END_TEST

START_TEST(test_arrays)
{
    int64_t s22[2] = { 2, 2 };
    double v[4] = { 1, 2, 3, 4.5 };
    dl_array *a = dl_array_from_data(DL_F64, 2, s22, v);
    cap_begin();
    dl_print_array(a);
    ck_assert_str_eq(cap_end(), "[[1.0, 2.0], [3.0, 4.5]]");
    dl_array_release(a);

    int64_t z = 0;
    dl_array *e = dl_array_new(DL_F64, 1, &z);
    cap_begin();
    dl_print_array(e);
    ck_assert_str_eq(cap_end(), "[]");
    dl_array_release(e);

    int64_t s20[2] = { 2, 0 };
    e = dl_array_new(DL_F64, 2, s20);
    cap_begin();
    dl_print_array(e);
    ck_assert_str_eq(cap_end(), "[[], []]");
    dl_array_release(e);

    int64_t s02[2] = { 0, 2 };
    e = dl_array_new(DL_F64, 2, s02);
    cap_begin();
    dl_print_array(e);
    ck_assert_str_eq(cap_end(), "[]");
    dl_array_release(e);

    dl_array *r0 = dl_array_new(DL_F64, 0, NULL);
    *(double *)r0->data = 0.1;
    cap_begin();
    dl_print_array(r0);
    ck_assert_str_eq(cap_end(), "0.1");
    dl_array_release(r0);

    int64_t s3[3] = { 2, 1, 3 };
    int64_t iv[6] = { 1, -2, 3, 4, 5, 6 };
    dl_array *i = dl_array_from_data(DL_I64, 3, s3, iv);
    cap_begin();
    dl_print_array(i);
    ck_assert_str_eq(cap_end(), "[[[1, -2, 3]], [[4, 5, 6]]]");
    dl_array_release(i);

    int64_t n3 = 3;
    uint8_t bv[3] = { 1, 0, 1 };
    dl_array *b = dl_array_from_data(DL_BOOL, 1, &n3, bv);
    dl_array *u = dl_array_from_data(DL_U8, 1, &n3, (uint8_t[]){ 0, 128, 255 });
    float fv[3] = { 0.1f, 1e20f, -2.0f };
    dl_array *f = dl_array_from_data(DL_F32, 1, &n3, fv);
    cap_begin();
    dl_print_array(b);
    dl_print_array(u);
    dl_print_array(f);
    ck_assert_str_eq(cap_end(), "[true, false, true][0, 128, 255][0.1, 1e+20, -2.0]");
    dl_array_release(b);
    dl_array_release(u);
    dl_array_release(f);

    dl_array *by = dl_array_new_bytes(8, 1, &n3);
    jmp_buf jb;
    if (setjmp(jb) == 0) {
        dl_error_trap_push(&jb);
        dl_print_array(by);
        ck_abort_msg("no error");
    }
    ck_assert_ptr_nonnull(strstr(dl_last_error(), "cannot print an array of bytes"));
    dl_array_release(by);
}
END_TEST

START_TEST(test_set_output)
{
    FILE *prev = dl_set_output(NULL);
    ck_assert_ptr_eq(prev, stdout);
    cap_begin();
    ck_assert_ptr_eq(dl_set_output(cap), cap);
    dl_print_str("x");
    ck_assert_str_eq(cap_end(), "x");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rt_print");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_f64_cases);
    tcase_add_test(tc, test_f64_round_trip_random);
    tcase_add_test(tc, test_f32);
    tcase_add_test(tc, test_scalars);
    tcase_add_test(tc, test_arrays);
    tcase_add_test(tc, test_set_output);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
