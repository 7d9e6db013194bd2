/* test_rt_text.c — libdlrt's text output and clock (dl_write_text, dl_clock)
 * and the hint for a missing file of a Debian data-set package. */
#include <check.h>
#include <dlrt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static char tmpdir[256];

static size_t read_all(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return n;
}

START_TEST(test_write_text)
{
    char path[512], buf[256];
    snprintf(path, sizeof path, "%s/out.svg", tmpdir);
    dl_write_text(path, "<svg>\n\xc3\xa9</svg>\n", NULL);
    ck_assert_int_eq(read_all(path, buf, sizeof buf), 15);
    ck_assert_str_eq(buf, "<svg>\n\xc3\xa9</svg>\n");
    /* replaces the file; the empty text gives an empty file */
    dl_write_text(path, "", NULL);
    ck_assert_int_eq(read_all(path, buf, sizeof buf), 0);
    snprintf(path, sizeof path, "%s/no-such-dir/out.txt", tmpdir);
    EXPECT_ERROR(dl_write_text(path, "x", NULL), "for writing: No such file or directory");
}
END_TEST

START_TEST(test_clock)
{
    double t0 = dl_clock();
    usleep(20000);
    double t1 = dl_clock();
    ck_assert(t1 - t0 >= 0.019);
    ck_assert(t1 - t0 < 10.0);
}
END_TEST

START_TEST(test_dataset_hint)
{
    EXPECT_ERROR(dl_read_idx("/usr/share/datasets/no-such-set/labels.gz", DL_I64, 1, NULL),
                 "No such file or directory (install the Debian package dataset-no-such-set)");
    EXPECT_ERROR(dl_read_npy("/usr/share/datasets/other/x.npy", DL_DTYPE_ANY, -1, NULL),
                 "(install the Debian package dataset-other)");
    /* elsewhere, and for a directory name alone, no hint */
    char path[512];
    snprintf(path, sizeof path, "%s/none.idx", tmpdir);
    EXPECT_ERROR(dl_read_idx(path, DL_I64, 1, NULL), "none.idx': No such file or directory");
    ck_assert_ptr_null(strstr(dl_last_error(), "install"));
    EXPECT_ERROR(dl_read_csv("/usr/share/datasets/x.csv", NULL), "No such file");
    ck_assert_ptr_null(strstr(dl_last_error(), "install"));
}
END_TEST

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/dlrt-text-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("rt_text");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_write_text);
    tcase_add_test(tc, test_clock);
    tcase_add_test(tc, test_dataset_hint);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
