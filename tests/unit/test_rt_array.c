/* test_rt_array.c — libdlrt arrays: creation, reference counts, reshape,
 * casts, broadcasting, the reference kernels, errors and traps. */
#include <check.h>
#include <dlrt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs stmt under an error trap; the test fails unless it raises an error
 * whose message contains substr. */
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

/* An allocation hook that counts live blocks. */
static long live_blocks, total_allocs;

static void *counting_realloc(void *p, size_t n)
{
    if (n == 0) {
        if (p)
            live_blocks--;
        free(p);
        return NULL;
    }
    if (!p) {
        live_blocks++;
        total_allocs++;
    }
    return realloc(p, n);
}

START_TEST(test_new_fields)
{
    int64_t shape[3] = { 2, 3, 4 };
    int32_t dts[] = { DL_F64, DL_F32, DL_I64, DL_U8, DL_BOOL };
    int64_t sizes[] = { 8, 4, 8, 1, 1 };
    for (int i = 0; i < 5; i++) {
        dl_array *a = dl_array_new(dts[i], 3, shape);
        ck_assert_int_eq(a->refcount, 1);
        ck_assert_int_eq(a->dtype, dts[i]);
        ck_assert_int_eq(a->rank, 3);
        ck_assert_int_eq(a->elem_size, sizes[i]);
        ck_assert_int_eq(a->size, 24);
        ck_assert_int_eq(a->shape[0], 2);
        ck_assert_int_eq(a->shape[2], 4);
        ck_assert_int_eq(a->shape[3], 0);
        ck_assert_int_eq((uintptr_t)a->data % 64, 0);
        ck_assert_int_eq(dl_array_nbytes(a), 24 * sizes[i]);
        memset(a->data, 0xab, (size_t)dl_array_nbytes(a));   /* valgrind: writable */
        dl_array_release(a);
    }
}
END_TEST

START_TEST(test_alignment_many)
{
    dl_array *as[50];
    for (int64_t i = 0; i < 50; i++) {
        int64_t n = i * 7 + 1;
        as[i] = dl_array_new(DL_U8, 1, &n);
        ck_assert_int_eq((uintptr_t)as[i]->data % 64, 0);
    }
    for (int i = 0; i < 50; i++)
        dl_array_release(as[i]);
}
END_TEST

START_TEST(test_zeros_rank0_empty)
{
    int64_t shape[2] = { 5, 7 };
    dl_array *z = dl_array_zeros(DL_F64, 2, shape);
    for (int64_t i = 0; i < z->size; i++)
        ck_assert(((double *)z->data)[i] == 0.0);
    dl_array_release(z);

    dl_array *s = dl_array_new(DL_I64, 0, NULL);
    ck_assert_int_eq(s->size, 1);
    ck_assert_int_eq(s->rank, 0);
    *(int64_t *)s->data = 42;
    dl_array_release(s);

    int64_t e[2] = { 3, 0 };
    dl_array *em = dl_array_zeros(DL_F32, 2, e);
    ck_assert_int_eq(em->size, 0);
    dl_array_release(em);
}
END_TEST

START_TEST(test_new_bytes)
{
    int64_t n = 10;
    dl_array *a = dl_array_new_bytes(24, 1, &n);
    ck_assert_int_eq(a->dtype, DL_BYTES);
    ck_assert_int_eq(a->elem_size, 24);
    ck_assert_int_eq(a->size, 10);
    memset(a->data, 1, 240);
    dl_array *c = dl_array_copy(a);
    ck_assert(dl_array_equal(a, c));
    dl_array_release(c);
    dl_array_release(a);
    EXPECT_ERROR(dl_array_new_bytes(0, 1, &n), "element size");
    EXPECT_ERROR(dl_array_new(DL_BYTES, 1, &n), "bad dtype");
}
END_TEST

START_TEST(test_bad_shapes)
{
    int64_t neg[2] = { 3, -2 };
    EXPECT_ERROR(dl_array_new(DL_F64, 2, neg), "negative dimension -2 in shape [3, -2]");
    int64_t big[2] = { INT64_C(1) << 40, INT64_C(1) << 40 };
    EXPECT_ERROR(dl_array_new(DL_F64, 2, big), "too large");
    int64_t s9[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    EXPECT_ERROR(dl_array_new(DL_F64, 9, s9), "rank 9");
    dl_srcloc loc = { "z.dl", 8, 2 };
    EXPECT_ERROR(dl_check_shape(2, neg, &loc), "negative dimension -2 in shape [3, -2]");
    ck_assert_int_eq(dl_last_error_loc().line, 8);
    int64_t fine[2] = { 3, 0 };
    dl_check_shape(2, fine, &loc);
    /* the message buffer may be an argument of the next message */
    EXPECT_ERROR(dl_error(NULL, "again: %s", dl_last_error()),
                 "again: negative dimension -2 in shape [3, -2]");
    ck_assert_int_eq(dl_error_trap_depth(), 0);
}
END_TEST

START_TEST(test_refcount)
{
    dl_set_allocator(counting_realloc);
    long base = live_blocks;
    int64_t n = 4;
    dl_array *a = dl_array_new(DL_F64, 1, &n);
    ck_assert_int_eq(live_blocks, base + 1);
    ck_assert_ptr_eq(dl_array_retain(a), a);
    ck_assert_int_eq(a->refcount, 2);
    dl_array_release(a);
    ck_assert_int_eq(a->refcount, 1);
    ck_assert_int_eq(live_blocks, base + 1);
    dl_array_release(a);
    ck_assert_int_eq(live_blocks, base);
    dl_array_release(NULL);
    ck_assert_ptr_null(dl_array_retain(NULL));
    dl_set_allocator(NULL);
}
END_TEST

START_TEST(test_allocator_hook_used)
{
    dl_set_allocator(counting_realloc);
    long before = total_allocs;
    int64_t shape[2] = { 3, 3 };
    dl_array *a = dl_array_zeros(DL_F64, 2, shape);
    dl_array *b = dl_array_copy(a);
    ck_assert_int_eq(total_allocs, before + 2);
    dl_array_release(a);
    dl_array_release(b);
    ck_assert_int_eq(live_blocks, 0);
    dl_set_allocator(NULL);
}
END_TEST

START_TEST(test_copy_unique)
{
    int64_t n = 3;
    double v[3] = { 1, 2, 3 };
    dl_array *a = dl_array_from_data(DL_F64, 1, &n, v);
    dl_array *c = dl_array_copy(a);
    ck_assert_ptr_ne(c, a);
    ck_assert_ptr_ne(c->data, a->data);
    ck_assert(dl_array_equal(a, c));
    ((double *)c->data)[0] = 9;
    ck_assert(((double *)a->data)[0] == 1);
    ck_assert(!dl_array_equal(a, c));
    dl_array_release(c);

    /* unique of a sole reference is the array itself */
    dl_array *u = dl_array_unique(a);
    ck_assert_ptr_eq(u, a);
    /* shared: a copy, and the caller's reference to the original is given up */
    dl_array_retain(a);
    ck_assert_int_eq(a->refcount, 2);
    u = dl_array_unique(a);
    ck_assert_ptr_ne(u, a);
    ck_assert_int_eq(a->refcount, 1);
    ck_assert_int_eq(u->refcount, 1);
    ck_assert(dl_array_equal(a, u));
    dl_array_release(u);
    dl_array_release(a);
}
END_TEST

START_TEST(test_immortal)
{
    _Alignas(64) static double data[2] = { 1.5, 2.5 };
    dl_array s = { -1, DL_F64, 1, 8, 2, { 2 }, data };
    dl_array_retain(&s);
    dl_array_release(&s);
    dl_array_release(&s);
    ck_assert_int_eq(s.refcount, -1);
    dl_array *u = dl_array_unique(&s);
    ck_assert_ptr_ne(u, &s);
    ck_assert(((double *)u->data)[1] == 2.5);
    ck_assert_int_eq(s.refcount, -1);
    dl_array_release(u);
}
END_TEST

START_TEST(test_reshape)
{
    int64_t shape[2] = { 2, 3 };
    dl_array *a = dl_array_new(DL_I64, 2, shape);
    for (int64_t i = 0; i < 6; i++)
        ((int64_t *)a->data)[i] = i;
    int64_t to[3] = { 3, 1, -1 };
    dl_array *r = dl_array_reshape(a, 3, to, NULL);
    ck_assert_ptr_eq(r, a); /* unique: reused */
    ck_assert_int_eq(r->rank, 3);
    ck_assert_int_eq(r->shape[0], 3);
    ck_assert_int_eq(r->shape[1], 1);
    ck_assert_int_eq(r->shape[2], 2);
    ck_assert_int_eq(((int64_t *)r->data)[5], 5);

    /* shared: copied, the other holder keeps the old shape */
    dl_array_retain(r);
    int64_t flat = 6;
    dl_array *f = dl_array_reshape(r, 1, &flat, NULL);
    ck_assert_ptr_ne(f, r);
    ck_assert_int_eq(r->rank, 3);
    ck_assert_int_eq(f->rank, 1);
    ck_assert_int_eq(((int64_t *)f->data)[4], 4);
    dl_array_release(f);

    int64_t four = 4;
    dl_srcloc loc = { "m.dl", 4, 9 };
    EXPECT_ERROR(dl_array_reshape(r, 1, &four, &loc), "cannot reshape [3, 1, 2] to [4]");
    ck_assert_int_eq(dl_last_error_loc().line, 4);
    /* reshape consumed r even on error; nothing leaks (valgrind) */
}
END_TEST

START_TEST(test_cast)
{
    int64_t n = 4;
    double v[4] = { 1.9, -2.7, 0.0, 255.0 };
    dl_array *a = dl_array_from_data(DL_F64, 1, &n, v);
    dl_array *i = dl_array_cast(a, DL_I64, NULL);
    ck_assert_int_eq(((int64_t *)i->data)[0], 1);
    ck_assert_int_eq(((int64_t *)i->data)[1], -2);
    dl_array *b = dl_array_cast(a, DL_BOOL, NULL);
    ck_assert_int_eq(((uint8_t *)b->data)[1], 1);
    ck_assert_int_eq(((uint8_t *)b->data)[2], 0);
    dl_array *f = dl_array_cast(i, DL_F32, NULL);
    ck_assert(((float *)f->data)[3] == 255.0f);
    dl_array_release(i);
    dl_array_release(b);
    dl_array_release(f);
    ((double *)a->data)[2] = 1e300;
    EXPECT_ERROR(dl_array_cast(a, DL_I64, NULL), "cannot convert 1e+300 to int");
    dl_array_release(a);
}
END_TEST

START_TEST(test_equal)
{
    int64_t n = 2;
    double x[2] = { 0.0, 1.0 }, y[2] = { -0.0, 1.0 };
    dl_array *a = dl_array_from_data(DL_F64, 1, &n, x);
    dl_array *b = dl_array_from_data(DL_F64, 1, &n, y);
    ck_assert(dl_array_equal(a, b));
    int64_t sh[2] = { 1, 2 };
    dl_array *c = dl_array_from_data(DL_F64, 2, sh, x);
    ck_assert(!dl_array_equal(a, c));
    dl_array_release(a);
    dl_array_release(b);
    dl_array_release(c);
}
END_TEST

static int32_t bshape(int32_t ra, const int64_t *sa, int32_t rb, const int64_t *sb,
                      int64_t *out)
{
    return dl_broadcast_shapes(ra, sa, rb, sb, "+", out, NULL);
}

START_TEST(test_broadcast_shapes)
{
    int64_t out[DL_MAX_RANK];
    int64_t a[2] = { 3, 1 }, b[1] = { 4 };
    ck_assert_int_eq(bshape(2, a, 1, b, out), 2);
    ck_assert_int_eq(out[0], 3);
    ck_assert_int_eq(out[1], 4);

    int64_t c[3] = { 5, 1, 4 }, d[2] = { 3, 1 };
    ck_assert_int_eq(bshape(3, c, 2, d, out), 3);
    ck_assert_int_eq(out[0], 5);
    ck_assert_int_eq(out[1], 3);
    ck_assert_int_eq(out[2], 4);

    /* a scalar broadcasts to anything, including empty arrays */
    int64_t e[2] = { 0, 3 };
    ck_assert_int_eq(bshape(0, NULL, 2, e, out), 2);
    ck_assert_int_eq(out[0], 0);
    ck_assert_int_eq(out[1], 3);
    int64_t one = 1;
    ck_assert_int_eq(bshape(2, e, 1, &one, out), 2);
    ck_assert_int_eq(out[0], 0);
    ck_assert_int_eq(bshape(0, NULL, 0, NULL, out), 0);
}
END_TEST

START_TEST(test_broadcast_errors)
{
    int64_t out[DL_MAX_RANK];
    int64_t a[2] = { 3, 2 }, b[1] = { 4 };
    dl_srcloc loc = { "prog.dl", 12, 5 };
    EXPECT_ERROR(dl_broadcast_shapes(2, a, 1, b, "+", out, &loc),
                 "shape mismatch in '+': [3, 2] and [4]");
    dl_srcloc got = dl_last_error_loc();
    ck_assert_str_eq(got.file, "prog.dl");
    ck_assert_int_eq(got.line, 12);
    ck_assert_int_eq(got.col, 5);

    int64_t c[1] = { 0 }, d[1] = { 2 };
    EXPECT_ERROR(dl_broadcast_shapes(1, c, 1, d, "*", out, NULL),
                 "shape mismatch in '*': [0] and [2]");
    ck_assert_ptr_null(dl_last_error_loc().file);

    dl_array *x = dl_array_zeros(DL_F64, 2, a);
    dl_array *y = dl_array_zeros(DL_F64, 1, b);
    EXPECT_ERROR(dl_broadcast_shape(x, y, "-", out, NULL), "'-': [3, 2] and [4]");
    EXPECT_ERROR(dl_add_f64(x, y, NULL), "shape mismatch in '+': [3, 2] and [4]");
    dl_array_release(x);
    dl_array_release(y);
}
END_TEST

START_TEST(test_elementwise)
{
    int64_t sm[2] = { 3, 4 }, sv[1] = { 4 }, sc[2] = { 3, 1 };
    dl_array *m = dl_array_new(DL_F64, 2, sm);
    dl_array *v = dl_array_new(DL_F64, 1, sv);
    dl_array *c = dl_array_new(DL_F64, 2, sc);
    for (int i = 0; i < 12; i++)
        ((double *)m->data)[i] = i * 1.5 - 3;
    for (int i = 0; i < 4; i++)
        ((double *)v->data)[i] = 10.0 * (i + 1);
    for (int i = 0; i < 3; i++)
        ((double *)c->data)[i] = i + 0.25;
    dl_array *s = dl_add_f64(m, v, NULL);
    dl_array *p = dl_mul_f64(v, c, NULL);     /* [4] * [3,1] -> [3,4] */
    dl_array *q = dl_div_f64(m, c, NULL);
    dl_array *d = dl_sub_f64(c, v, NULL);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) {
            double mm = ((double *)m->data)[i * 4 + j], vv = ((double *)v->data)[j],
                   cc = ((double *)c->data)[i];
            ck_assert(((double *)s->data)[i * 4 + j] == mm + vv);
            ck_assert(((double *)p->data)[i * 4 + j] == vv * cc);
            ck_assert(((double *)q->data)[i * 4 + j] == mm / cc);
            ck_assert(((double *)d->data)[i * 4 + j] == cc - vv);
        }
    ck_assert_int_eq(p->shape[0], 3);
    ck_assert_int_eq(p->shape[1], 4);
    dl_array *sc0 = dl_array_new(DL_F64, 0, NULL);
    *(double *)sc0->data = 2.0;
    dl_array *t = dl_mul_f64(sc0, m, NULL);
    ck_assert(((double *)t->data)[11] == 2.0 * ((double *)m->data)[11]);
    dl_array *i64 = dl_array_zeros(DL_I64, 1, sv);
    EXPECT_ERROR(dl_add_f64(v, i64, NULL), "expected float");
    dl_array *arrs[] = { m, v, c, s, p, q, d, sc0, t, i64 };
    for (int i = 0; i < 10; i++)
        dl_array_release(arrs[i]);
}
END_TEST

START_TEST(test_bounds)
{
    ck_assert_int_eq(dl_bounds_check(0, 3, 0, NULL), 0);
    ck_assert_int_eq(dl_bounds_check(2, 3, 0, NULL), 2);
    EXPECT_ERROR(dl_bounds_check(3, 3, 1, NULL), "index 3 out of bounds for axis 1 of length 3");
    EXPECT_ERROR(dl_bounds_check(-1, 3, 0, NULL), "index -1 out of bounds");
    EXPECT_ERROR(dl_bounds_check(0, 0, 0, NULL), "length 0");
    EXPECT_ERROR(dl_div_by_zero(NULL), "integer division by zero");
    EXPECT_ERROR(dl_overflow_error("*", NULL), "integer overflow in '*'");
}
END_TEST

START_TEST(test_format_shape)
{
    char buf[64];
    int64_t s[3] = { 3, 0, 12 };
    ck_assert_int_eq(dl_format_shape(buf, sizeof buf, 3, s), 10);
    ck_assert_str_eq(buf, "[3, 0, 12]");
    dl_format_shape(buf, sizeof buf, 0, NULL);
    ck_assert_str_eq(buf, "[]");
    dl_format_shape(buf, 4, 3, s);
    ck_assert_str_eq(buf, "[3,");
}
END_TEST

START_TEST(test_nested_traps)
{
    jmp_buf outer, inner;
    volatile int reached = 0;
    if (setjmp(outer) == 0) {
        dl_error_trap_push(&outer);
        if (setjmp(inner) == 0) {
            dl_error_trap_push(&inner);
            ck_assert_int_eq(dl_error_trap_depth(), 2);
            dl_error(NULL, "first %d", 1);
        } else {
            reached = 1;
            ck_assert_str_eq(dl_last_error(), "first 1");
            ck_assert_int_eq(dl_error_trap_depth(), 1);
        }
        /* the outer trap still holds; a second error reaches it */
        dl_error(NULL, "second");
    } else {
        ck_assert_int_eq(reached, 1);
        ck_assert_str_eq(dl_last_error(), "second");
        ck_assert_int_eq(dl_error_trap_depth(), 0);
    }
    dl_error_clear();
    ck_assert_str_eq(dl_last_error(), "");
}
END_TEST

static void *thread_error(void *arg)
{
    jmp_buf jb;
    if (setjmp(jb) == 0) {
        dl_error_trap_push(&jb);
        dl_error(NULL, "from thread %d", *(int *)arg);
    }
    return strstr(dl_last_error(), "from thread 7") ? (void *)1 : NULL;
}

START_TEST(test_thread_local_errors)
{
    dl_error_clear();
    jmp_buf jb;
    if (setjmp(jb) == 0) {
        dl_error_trap_push(&jb);
        dl_error(NULL, "main thread");
    }
    pthread_t t;
    int seven = 7;
    void *ok;
    pthread_create(&t, NULL, thread_error, &seven);
    pthread_join(t, &ok);
    ck_assert_ptr_nonnull(ok);
    ck_assert_str_eq(dl_last_error(), "main thread");
}
END_TEST

/* Without a trap: the message goes to stderr with the position, output
 * printed before it is flushed first, and the process exits with status 1. */
static void run_child_error(const dl_srcloc *loc, char *err, size_t n, char *out, size_t no,
                            int *status)
{
    int pe[2], po[2];
    ck_assert_int_eq(pipe(pe), 0);
    ck_assert_int_eq(pipe(po), 0);
    fflush(stdout);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(pe[1], 2);
        dup2(po[1], 1);
        close(pe[0]);
        close(po[0]);
        dl_print_str("before");
        dl_error(loc, "shape mismatch in '%s': %s", "+", "[3] and [4]");
    }
    close(pe[1]);
    close(po[1]);
    ssize_t k = read(pe[0], err, n - 1);
    err[k > 0 ? k : 0] = 0;
    k = read(po[0], out, no - 1);
    out[k > 0 ? k : 0] = 0;
    close(pe[0]);
    close(po[0]);
    waitpid(pid, status, 0);
}

START_TEST(test_error_exits)
{
    char err[256], out[64];
    int st;
    dl_srcloc loc = { "model.dl", 3, 14 };
    run_child_error(&loc, err, sizeof err, out, sizeof out, &st);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 1);
    ck_assert_str_eq(err, "model.dl:3:14: error: shape mismatch in '+': [3] and [4]\n");
    ck_assert_str_eq(out, "before");
    run_child_error(NULL, err, sizeof err, out, sizeof out, &st);
    ck_assert_int_eq(WEXITSTATUS(st), 1);
    ck_assert_str_eq(err, "dlrt: error: shape mismatch in '+': [3] and [4]\n");
}
END_TEST

START_TEST(test_dtype_names)
{
    ck_assert_str_eq(dl_dtype_name(DL_F64), "float");
    ck_assert_str_eq(dl_dtype_name(DL_F32), "f32");
    ck_assert_str_eq(dl_dtype_name(DL_I64), "int");
    ck_assert_int_eq(dl_dtype_size(DL_F32), 4);
    ck_assert_int_eq(dl_dtype_size(DL_BYTES), 0);
    char *argv[] = { "prog", "x", NULL };
    dl_init(2, argv);
    ck_assert_int_eq(dl_argc(), 2);
    ck_assert_str_eq(dl_argv(1), "x");
    ck_assert_ptr_null(dl_argv(2));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rt_array");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_new_fields);
    tcase_add_test(tc, test_alignment_many);
    tcase_add_test(tc, test_zeros_rank0_empty);
    tcase_add_test(tc, test_new_bytes);
    tcase_add_test(tc, test_bad_shapes);
    tcase_add_test(tc, test_refcount);
    tcase_add_test(tc, test_allocator_hook_used);
    tcase_add_test(tc, test_copy_unique);
    tcase_add_test(tc, test_immortal);
    tcase_add_test(tc, test_reshape);
    tcase_add_test(tc, test_cast);
    tcase_add_test(tc, test_equal);
    tcase_add_test(tc, test_broadcast_shapes);
    tcase_add_test(tc, test_broadcast_errors);
    tcase_add_test(tc, test_elementwise);
    tcase_add_test(tc, test_bounds);
    tcase_add_test(tc, test_format_shape);
    tcase_add_test(tc, test_nested_traps);
    tcase_add_test(tc, test_thread_local_errors);
    tcase_add_test(tc, test_error_exits);
    tcase_add_test(tc, test_dtype_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
