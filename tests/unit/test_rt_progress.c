/* test_rt_progress.c — progress reports: plain lines and the terminal bar. */
#include <check.h>
#include <dlrt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *buf;
static size_t len;

static FILE *capture(int tty)
{
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    dl_progress_set_output(f, tty);
    return f;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

START_TEST(test_plain_lines)
{
    FILE *f = capture(0);
    dl_progress *p = dl_progress_begin("train", 200);
    for (int i = 1; i <= 200; i++)
        dl_progress_update(p, i, i % 2 ? "loss=0.5" : "loss=0.25");
    dl_progress_end(p);
    fclose(f);
    dl_progress_set_output(NULL, -1);
    /* one line at each 10% from 10% to 90%, one at the end */
    ck_assert_int_eq(count_lines(buf), 10);
    ck_assert_msg(strncmp(buf, "train: 10% (20/200), ", 21) == 0, "%s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "train: 50% (100/200)"));
    ck_assert_ptr_nonnull(strstr(buf, "train: 90% (180/200)"));
    ck_assert_ptr_null(strstr(buf, "95%"));
    ck_assert_ptr_nonnull(strstr(buf, "ETA "));
    const char *last = strstr(buf, "train: 100% (200/200) in ");
    ck_assert_ptr_nonnull(last);
    ck_assert_ptr_nonnull(strstr(last, "it/s, loss=0.25\n"));
    ck_assert_ptr_null(strchr(buf, '\r'));
    free(buf);
}
END_TEST

START_TEST(test_plain_jumps)
{
    /* large steps: one line per update that crosses a new tenth */
    FILE *f = capture(0);
    dl_progress *p = dl_progress_begin("", 10);
    dl_progress_update(p, 3, NULL);    /* 30% */
    dl_progress_update(p, 3, NULL);    /* nothing new */
    dl_progress_update(p, 9, NULL);    /* 90% */
    dl_progress_end(p);
    fclose(f);
    dl_progress_set_output(NULL, -1);
    ck_assert_int_eq(count_lines(buf), 3);
    ck_assert(strncmp(buf, "30% (3/10)", 10) == 0);
    free(buf);

    f = capture(0);
    p = dl_progress_begin("scan", 0);   /* unknown total */
    for (int i = 1; i <= 5; i++)
        dl_progress_update(p, i, NULL);
    dl_progress_end(p);
    fclose(f);
    dl_progress_set_output(NULL, -1);
    ck_assert_int_eq(count_lines(buf), 1);
    ck_assert(strncmp(buf, "scan: 5 done in 0:00", 20) == 0);
    free(buf);
    dl_progress_end(NULL);
    dl_progress_update(NULL, 1, NULL);
}
END_TEST

START_TEST(test_bar)
{
    FILE *f = capture(1);
    dl_progress *p = dl_progress_begin("epoch", 1000);
    for (int i = 1; i <= 1000; i++)
        dl_progress_update(p, i, "acc=0.9");   /* fast: redraws throttled */
    dl_progress_end(p);
    fclose(f);
    dl_progress_set_output(NULL, -1);
    int draws = 0;
    for (const char *s = buf; *s; s++)
        draws += *s == '\r';
    ck_assert_int_ge(draws, 1);
    ck_assert_int_lt(draws, 20);
    ck_assert_int_eq(count_lines(buf), 1);
    const char *last = strrchr(buf, '\r');
    ck_assert_msg(strncmp(last, "\repoch [##############################] 100% 1000/1000 ", 54) == 0,
                  "%s", last);
    ck_assert_ptr_nonnull(strstr(last, "acc=0.9\x1b[K\n"));
    free(buf);
}
END_TEST

START_TEST(test_bar_redraw_rate)
{
    FILE *f = capture(1);
    dl_progress *p = dl_progress_begin("slow", 4);
    struct timespec pause = { 0, 120 * 1000 * 1000 };
    for (int i = 1; i <= 4; i++) {
        nanosleep(&pause, NULL);
        dl_progress_update(p, i, NULL);   /* each one past the 0.1 s interval */
    }
    dl_progress_end(p);
    fclose(f);
    dl_progress_set_output(NULL, -1);
    int draws = 0;
    for (const char *s = buf; *s; s++)
        draws += *s == '\r';
    ck_assert_int_eq(draws, 5);
    ck_assert_ptr_nonnull(strstr(buf, "[#######.......................]  25% 1/4 "));
    ck_assert_ptr_nonnull(strstr(buf, " ETA 0:0"));
    free(buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rt_progress");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_plain_lines);
    tcase_add_test(tc, test_plain_jumps);
    tcase_add_test(tc, test_bar);
    tcase_add_test(tc, test_bar_redraw_rate);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
