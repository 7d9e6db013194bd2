/* progress.c — progress reports for long loops (training epochs, batches). */
#include "internal.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 30
#define REDRAW_INTERVAL 0.1      /* seconds between redraws on a terminal */
#define QUIET_INTERVAL 10.0      /* seconds between lines when the total is unknown */

struct dl_progress {
    char *label;
    char *metrics;
    int64_t total, done;
    double start, last_draw;
    int next_tenth;      /* plain lines: the next multiple of 10% to report */
    bool tty;
    FILE *f;
};

static FILE *prog_out;   /* NULL: stderr */
static int prog_tty = -1;

FILE *dl_progress_set_output(FILE *f, int tty)
{
    FILE *old = prog_out ? prog_out : stderr;
    prog_out = f;
    prog_tty = tty;
    return old;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "0:07", "12:34", "1:02:03" */
static void format_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 359999)
        s = 359999;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

dl_progress *dl_progress_begin(const char *label, int64_t total)
{
    dl_progress *p = dlrt_alloc(sizeof *p);
    p->label = dlrt_strdup(label ? label : "");
    p->metrics = NULL;
    p->total = total > 0 ? total : 0;
    p->done = 0;
    p->start = p->last_draw = now();
    p->next_tenth = 1;
    p->f = prog_out ? prog_out : stderr;
    p->tty = prog_tty >= 0 ? prog_tty != 0 : isatty(fileno(p->f));
    return p;
}

/* label [#########.....]  45% 450/1000 123.4 it/s ETA 0:04 loss=0.25 */
static void draw_bar(dl_progress *p, double t)
{
    double el = t - p->start;
    double rate = el > 0 ? p->done / el : 0;
    char eta[32] = "", line[64];
    FILE *f = p->f;
    fputc('\r', f);
    if (p->label[0])
        fprintf(f, "%s ", p->label);
    if (p->total > 0) {
        int64_t done = p->done < p->total ? p->done : p->total;
        int filled = (int)(done * BAR_WIDTH / p->total);
        memset(line, '#', filled);
        memset(line + filled, '.', BAR_WIDTH - filled);
        line[BAR_WIDTH] = 0;
        if (rate > 0 && done < p->total)
            format_duration(eta, sizeof eta, (p->total - done) / rate);
        else
            format_duration(eta, sizeof eta, el);
        fprintf(f, "[%s] %3d%% %lld/%lld %.1f it/s %s %s", line, (int)(done * 100 / p->total),
                (long long)p->done, (long long)p->total, rate,
                done < p->total ? "ETA" : "in", eta);
    } else {
        format_duration(eta, sizeof eta, el);
        fprintf(f, "%lld %.1f it/s %s", (long long)p->done, rate, eta);
    }
    if (p->metrics && p->metrics[0])
        fprintf(f, " %s", p->metrics);
    fputs("\x1b[K", f);   /* clear the rest of the line */
    fflush(f);
}

/* label: 40% (400/1000), 12.3 it/s, ETA 0:05, loss=0.25 */
static void plain_line(dl_progress *p, double t, bool final)
{
    double el = t - p->start;
    double rate = el > 0 ? p->done / el : 0;
    char dur[32];
    FILE *f = p->f;
    fprintf(f, "%s%s", p->label, p->label[0] ? ": " : "");
    if (p->total > 0)
        fprintf(f, "%d%% (%lld/%lld)", (int)((p->done < p->total ? p->done : p->total) * 100 /
                                            p->total),
                (long long)p->done, (long long)p->total);
    else
        fprintf(f, "%lld done", (long long)p->done);
    if (final || p->total == 0) {
        format_duration(dur, sizeof dur, el);
        fprintf(f, " in %s, %.1f it/s", dur, rate);
    } else {
        format_duration(dur, sizeof dur, rate > 0 ? (p->total - p->done) / rate : 0);
        fprintf(f, ", %.1f it/s, ETA %s", rate, dur);
    }
    if (p->metrics && p->metrics[0])
        fprintf(f, ", %s", p->metrics);
    fputc('\n', f);
    fflush(f);
}

void dl_progress_update(dl_progress *p, int64_t done, const char *metrics)
{
    if (!p)
        return;
    p->done = done;
    if (metrics && (!p->metrics || strcmp(metrics, p->metrics) != 0)) {
        dlrt_free(p->metrics);
        p->metrics = dlrt_strdup(metrics);
    }
    double t = now();
    if (p->tty) {
        if (t - p->last_draw >= REDRAW_INTERVAL) {
            fflush(dlrt_output());
            draw_bar(p, t);
            p->last_draw = t;
        }
    } else if (p->total > 0) {
        if (done < p->total && done * 10 >= (int64_t)p->next_tenth * p->total) {
            fflush(dlrt_output());
            plain_line(p, t, false);
            p->next_tenth = (int)(done * 10 / p->total) + 1;
        }
    } else if (t - p->last_draw >= QUIET_INTERVAL) {
        fflush(dlrt_output());
        plain_line(p, t, false);
        p->last_draw = t;
    }
}

void dl_progress_end(dl_progress *p)
{
    if (!p)
        return;
    double t = now();
    fflush(dlrt_output());
    if (p->tty) {
        draw_bar(p, t);
        fputc('\n', p->f);
        fflush(p->f);
    } else {
        plain_line(p, t, true);
    }
    dlrt_free(p->label);
    dlrt_free(p->metrics);
    dlrt_free(p);
}
