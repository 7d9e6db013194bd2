/* test_rt_random.c — Philox4x32-10 known answers, keys, and the samplers. */
#include <check.h>
#include <dlrt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Known-answer vectors of Random123 (kat_vectors, philox4x32 10 rounds). */
START_TEST(test_philox_kat)
{
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        { { 0, 0, 0, 0 }, { 0, 0 }, { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 } },
        { { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff },
          { 0xffffffff, 0xffffffff },
          { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd } },
        { { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 },
          { 0xa4093822, 0x299f31d0 },
          { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 } },
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        dl_philox4x32_10(kat[i].ctr, kat[i].key, out);
        for (int j = 0; j < 4; j++)
            ck_assert_msg(out[j] == kat[i].out[j], "vector %zu word %d: %08x, want %08x", i, j,
                          out[j], kat[i].out[j]);
    }
}
END_TEST

START_TEST(test_keys)
{
    dl_key k = dl_key_from_seed(INT64_C(0x123456789));
    ck_assert_uint_eq(k.k[0], 0x23456789u);
    ck_assert_uint_eq(k.k[1], 0x1u);
    dl_key c[2], d[2];
    dl_split(k, c);
    dl_split(k, d);
    ck_assert(memcmp(c, d, sizeof c) == 0);   /* deterministic */
    ck_assert(memcmp(&c[0], &c[1], sizeof c[0]) != 0);
    ck_assert(memcmp(&c[0], &k, sizeof k) != 0);
    /* the children are Philox(counter (0, 0, 3, 0), key), as documented */
    uint32_t ctr[4] = { 0, 0, 3, 0 }, w[4];
    dl_philox4x32_10(ctr, k.k, w);
    ck_assert(c[0].k[0] == w[0] && c[0].k[1] == w[1] && c[1].k[0] == w[2] && c[1].k[1] == w[3]);
    dl_key f1 = dl_fold_in(k, 1), f2 = dl_fold_in(k, 2), f1b = dl_fold_in(k, 1);
    ck_assert(memcmp(&f1, &f2, sizeof f1) != 0);
    ck_assert(memcmp(&f1, &f1b, sizeof f1) == 0);
}
END_TEST

START_TEST(test_uniform_layout)
{
    dl_key k = dl_key_from_seed(7);
    int64_t n = 5;
    dl_array *a = dl_uniform(k, DL_F64, 1, &n);
    /* element 2j+m from words 2m, 2m+1 of block j */
    for (int64_t i = 0; i < 5; i++) {
        uint32_t ctr[4] = { (uint32_t)(i / 2), 0, 0, 0 }, w[4];
        dl_philox4x32_10(ctr, k.k, w);
        int m = (int)(i % 2);
        uint64_t bits = ((uint64_t)w[2 * m + 1] << 32 | w[2 * m]) >> 11;
        ck_assert(((double *)a->data)[i] == ldexp((double)bits, -53));
    }
    /* a prefix of a longer draw is the shorter draw */
    int64_t n2 = 8;
    dl_array *b = dl_uniform(k, DL_F64, 1, &n2);
    ck_assert(memcmp(a->data, b->data, 5 * sizeof(double)) == 0);
    /* same key, same result; shape does not change the stream */
    int64_t s2[2] = { 2, 4 };
    dl_array *c = dl_uniform(k, DL_F64, 2, s2);
    ck_assert(memcmp(c->data, b->data, 8 * sizeof(double)) == 0);
    dl_array *d = dl_uniform(dl_key_from_seed(8), DL_F64, 1, &n2);
    ck_assert(memcmp(d->data, b->data, 8 * sizeof(double)) != 0);
    dl_array_release(a);
    dl_array_release(b);
    dl_array_release(c);
    dl_array_release(d);
}
END_TEST

static void moments(const dl_array *a, double *mean, double *var)
{
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < a->size; i++) {
        double x = a->dtype == DL_F64 ? ((double *)a->data)[i] : ((float *)a->data)[i];
        s += x;
        s2 += x * x;
    }
    *mean = s / a->size;
    *var = s2 / a->size - *mean * *mean;
}

/* n = 200000: the standard error of the mean of U(0,1) is 0.289/447 = 0.00065,
 * so the bounds below are more than 7 standard errors wide. */
START_TEST(test_uniform_stats)
{
    int64_t n = 200000;
    for (int d = 0; d < 2; d++) {
        int32_t dt = d ? DL_F32 : DL_F64;
        dl_array *a = dl_uniform(dl_key_from_seed(2024), dt, 1, &n);
        double mean, var, mn = 1, mx = 0;
        moments(a, &mean, &var);
        ck_assert_msg(fabs(mean - 0.5) < 0.005, "mean %g", mean);
        ck_assert_msg(fabs(var - 1.0 / 12) < 0.002, "variance %g", var);
        int bins[10] = { 0 };
        for (int64_t i = 0; i < n; i++) {
            double x = dt == DL_F64 ? ((double *)a->data)[i] : ((float *)a->data)[i];
            ck_assert(x >= 0 && x < 1);
            if (dt == DL_F32)
                ck_assert(x * 16777216.0 == floor(x * 16777216.0));   /* 24-bit grid */
            mn = x < mn ? x : mn;
            mx = x > mx ? x : mx;
            bins[(int)(x * 10)]++;
        }
        for (int b = 0; b < 10; b++)   /* 20000 expected, sd 134 */
            ck_assert_msg(abs(bins[b] - 20000) < 1000, "bin %d: %d", b, bins[b]);
        ck_assert(mn < 1e-4 && mx > 1 - 1e-4);
        dl_array_release(a);
    }
}
END_TEST

START_TEST(test_normal_stats)
{
    int64_t n = 200000;
    for (int d = 0; d < 2; d++) {
        int32_t dt = d ? DL_F32 : DL_F64;
        dl_array *a = dl_normal(dl_key_from_seed(99), dt, 1, &n);
        double mean, var;
        moments(a, &mean, &var);
        ck_assert_msg(fabs(mean) < 0.015, "mean %g", mean);
        ck_assert_msg(fabs(var - 1) < 0.02, "variance %g", var);
        int64_t within1 = 0, within2 = 0;
        for (int64_t i = 0; i < n; i++) {
            double x = dt == DL_F64 ? ((double *)a->data)[i] : ((float *)a->data)[i];
            ck_assert(isfinite(x));
            within1 += fabs(x) < 1;
            within2 += fabs(x) < 2;
        }
        /* P(|Z| < 1) = 0.6827, P(|Z| < 2) = 0.9545 */
        ck_assert(fabs((double)within1 / n - 0.6827) < 0.01);
        ck_assert(fabs((double)within2 / n - 0.9545) < 0.005);
        dl_array_release(a);
    }
    /* f32 values are the f64 values rounded */
    int64_t m = 9;
    dl_array *x = dl_normal(dl_key_from_seed(5), DL_F64, 1, &m);
    dl_array *y = dl_normal(dl_key_from_seed(5), DL_F32, 1, &m);
    for (int i = 0; i < 9; i++)
        ck_assert(((float *)y->data)[i] == (float)((double *)x->data)[i]);
    dl_array_release(x);
    dl_array_release(y);
    /* another dtype is an error */
    jmp_buf jb;
    if (setjmp(jb) == 0) {
        dl_error_trap_push(&jb);
        dl_normal(dl_key_from_seed(5), DL_I64, 1, &m);
        ck_abort_msg("no error");
    }
    ck_assert_ptr_nonnull(strstr(dl_last_error(), "dtype must be float or f32, got int"));
}
END_TEST

static double correlation(const dl_array *a, const dl_array *b)
{
    double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0;
    int64_t n = a->size;
    for (int64_t i = 0; i < n; i++) {
        double x = ((double *)a->data)[i], y = ((double *)b->data)[i];
        sa += x, sb += y, sab += x * y, saa += x * x, sbb += y * y;
    }
    double cov = sab / n - sa / n * sb / n;
    return cov / sqrt((saa / n - sa / n * sa / n) * (sbb / n - sb / n * sb / n));
}

/* Streams of the parent and of both children are pairwise uncorrelated
 * (|r| < 0.015 is over 6 standard errors at n = 200000), and consecutive
 * splits (a chain of keys) give distinct keys. */
START_TEST(test_split_independence)
{
    int64_t n = 200000;
    dl_key k = dl_key_from_seed(1), c[2];
    dl_split(k, c);
    dl_array *p = dl_uniform(k, DL_F64, 1, &n);
    dl_array *a = dl_uniform(c[0], DL_F64, 1, &n);
    dl_array *b = dl_uniform(c[1], DL_F64, 1, &n);
    ck_assert(fabs(correlation(p, a)) < 0.015);
    ck_assert(fabs(correlation(p, b)) < 0.015);
    ck_assert(fabs(correlation(a, b)) < 0.015);
    dl_array_release(p);
    dl_array_release(a);
    dl_array_release(b);

    dl_key seen[200];
    dl_key cur = k;
    for (int i = 0; i < 200; i++) {
        dl_key ch[2];
        dl_split(cur, ch);
        seen[i] = ch[1];
        cur = ch[0];
        for (int j = 0; j < i; j++)
            ck_assert(memcmp(&seen[i], &seen[j], sizeof(dl_key)) != 0);
    }
}
END_TEST

START_TEST(test_permutation)
{
    for (int64_t n = 0; n < 50; n += 7) {
        dl_array *p = dl_random_permutation(dl_key_from_seed(n), n);
        ck_assert_int_eq(p->dtype, DL_I64);
        ck_assert_int_eq(p->size, n);
        char seen[64] = { 0 };
        for (int64_t i = 0; i < n; i++) {
            int64_t v = ((int64_t *)p->data)[i];
            ck_assert(v >= 0 && v < n && !seen[v]);
            seen[v] = 1;
        }
        dl_array *q = dl_random_permutation(dl_key_from_seed(n), n);
        ck_assert(dl_array_equal(p, q));
        dl_array_release(p);
        dl_array_release(q);
    }
    int64_t n = 1000;
    dl_array *p = dl_random_permutation(dl_key_from_seed(1), n);
    dl_array *q = dl_random_permutation(dl_key_from_seed(2), n);
    ck_assert(!dl_array_equal(p, q));
    int64_t fixed = 0;
    for (int64_t i = 0; i < n; i++)
        fixed += ((int64_t *)p->data)[i] == i;
    ck_assert(fixed < 10);   /* expected 1 */
    dl_array_release(p);
    dl_array_release(q);

    /* all 6 orders of 3 elements equally likely: 12000 draws, 2000 each, sd 41 */
    int count[3][3][3] = { { { 0 } } };
    dl_key base = dl_key_from_seed(77);
    for (int t = 0; t < 12000; t++) {
        dl_array *r = dl_random_permutation(dl_fold_in(base, t), 3);
        int64_t *v = r->data;
        count[v[0]][v[1]][v[2]]++;
        dl_array_release(r);
    }
    int perms[6][3] = { { 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 } };
    for (int i = 0; i < 6; i++) {
        int c = count[perms[i][0]][perms[i][1]][perms[i][2]];
        ck_assert_msg(abs(c - 2000) < 250, "permutation %d drawn %d times", i, c);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rt_random");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_philox_kat);
    tcase_add_test(tc, test_keys);
    tcase_add_test(tc, test_uniform_layout);
    tcase_add_test(tc, test_uniform_stats);
    tcase_add_test(tc, test_normal_stats);
    tcase_add_test(tc, test_split_independence);
    tcase_add_test(tc, test_permutation);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
