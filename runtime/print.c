/* print.c — values printed in DL literal syntax on one buffered stream. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* NULL: stdout. Per thread: generated code captures `show` by setting the
 * output for a moment, and compiled modules may be called from several
 * threads at once. */
static _Thread_local FILE *out_stream;

FILE *dlrt_output(void) { return out_stream ? out_stream : stdout; }

FILE *dl_set_output(FILE *f)
{
    FILE *old = dlrt_output();
    out_stream = f;
    return old;
}

void dl_flush(void) { fflush(dlrt_output()); }

/* ---------------------------------------------------------------- floats */

/* Lays out the decimal digits d[0..nd) times 10^(e - nd + 1) (so e is the
 * exponent of the first digit) as Python's float repr does: fixed notation
 * for -4 <= e < 16, with ".0" when there is no fraction; otherwise
 * "d.ddde+XX". */
static int layout(char *buf, size_t n, bool neg, const char *d, int nd, int e)
{
    char s[64];
    int k = 0;
    if (neg)
        s[k++] = '-';
    if (e >= -4 && e < 16) {
        if (e < 0) {
            s[k++] = '0';
            s[k++] = '.';
            for (int i = 0; i < -e - 1; i++)
                s[k++] = '0';
            for (int i = 0; i < nd; i++)
                s[k++] = d[i];
        } else {
            for (int i = 0; i <= e; i++)
                s[k++] = i < nd ? d[i] : '0';
            s[k++] = '.';
            if (nd > e + 1)
                for (int i = e + 1; i < nd; i++)
                    s[k++] = d[i];
            else
                s[k++] = '0';
        }
        s[k] = 0;
    } else {
        s[k++] = d[0];
        if (nd > 1) {
            s[k++] = '.';
            for (int i = 1; i < nd; i++)
                s[k++] = d[i];
        }
        snprintf(s + k, sizeof s - k, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
    return snprintf(buf, n, "%s", s);
}

/* Shortest round trip: the fewest significant digits p (1..max_digits) for
 * which "%.{p-1}e" reads back as the same value (17 digits always suffice for
 * double, 9 for float). */
static int format_float(char *buf, size_t n, double x, bool single)
{
    if (isnan(x))
        return snprintf(buf, n, "nan");
    if (isinf(x))
        return snprintf(buf, n, x < 0 ? "-inf" : "inf");
    bool neg = signbit(x);
    double ax = fabs(x);
    char digits[32];
    int nd = 1, e = 0;
    if (ax == 0.0) {
        digits[0] = '0';
    } else {
        locale_t old = uselocale(dlrt_c_locale());
        char s[40];
        int maxp = single ? 9 : 17;
        for (int p = 1; p <= maxp; p++) {
            snprintf(s, sizeof s, "%.*e", p - 1, ax);
            if (single ? strtof(s, NULL) == (float)ax : strtod(s, NULL) == ax)
                break;
        }
        uselocale(old);
        /* s = d[.ddd]e[+-]XX */
        nd = 0;
        char *p = s;
        for (; *p && *p != 'e'; p++)
            if (*p >= '0' && *p <= '9')
                digits[nd++] = *p;
        e = atoi(p + 1);
        while (nd > 1 && digits[nd - 1] == '0')
            nd--;
    }
    return layout(buf, n, neg, digits, nd, e);
}

int dl_format_f64(char *buf, size_t n, double x) { return format_float(buf, n, x, false); }

int dl_format_f32(char *buf, size_t n, float x) { return format_float(buf, n, x, true); }

void dl_print_f64(double x)
{
    char buf[40];
    dl_format_f64(buf, sizeof buf, x);
    fputs(buf, dlrt_output());
}

void dl_print_f32(float x)
{
    char buf[40];
    dl_format_f32(buf, sizeof buf, x);
    fputs(buf, dlrt_output());
}

/* ---------------------------------------------------------------- scalars */

void dl_print_i64(int64_t x) { fprintf(dlrt_output(), "%lld", (long long)x); }

void dl_print_bool(bool x) { fputs(x ? "true" : "false", dlrt_output()); }

void dl_print_unit(void) { fputs("()", dlrt_output()); }

void dl_print_str(const char *s) { fputs(s ? s : "", dlrt_output()); }

void dl_print_newline(void) { putc('\n', dlrt_output()); }

void dl_print_string_literal(const char *s)
{
    FILE *f = dlrt_output();
    putc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\x%02x", *p);
            else
                putc(*p, f);
        }
    }
    putc('"', f);
}

/* ---------------------------------------------------------------- arrays */

static void print_elem(FILE *f, const dl_array *a, int64_t i)
{
    char buf[40];
    switch (a->dtype) {
    case DL_F64:
        dl_format_f64(buf, sizeof buf, ((const double *)a->data)[i]);
        fputs(buf, f);
        break;
    case DL_F32:
        dl_format_f32(buf, sizeof buf, ((const float *)a->data)[i]);
        fputs(buf, f);
        break;
    case DL_I64: fprintf(f, "%lld", (long long)((const int64_t *)a->data)[i]); break;
    case DL_U8: fprintf(f, "%u", (unsigned)((const uint8_t *)a->data)[i]); break;
    case DL_BOOL: fputs(((const uint8_t *)a->data)[i] ? "true" : "false", f); break;
    }
}

/* Axis `axis` of the sub-array starting at element `start`; stride[axis] is
 * the number of elements per index along that axis. */
static void print_axis(FILE *f, const dl_array *a, int32_t axis, int64_t start,
                       const int64_t *stride)
{
    putc('[', f);
    for (int64_t i = 0; i < a->shape[axis]; i++) {
        if (i)
            fputs(", ", f);
        if (axis + 1 == a->rank)
            print_elem(f, a, start + i);
        else
            print_axis(f, a, axis + 1, start + i * stride[axis], stride);
    }
    putc(']', f);
}

void dl_print_array(const dl_array *a)
{
    DL_HOST(a);
    if (a->dtype == DL_BYTES || dl_dtype_size(a->dtype) == 0)
        dl_error(NULL, "dl_print_array: cannot print an array of %s", dl_dtype_name(a->dtype));
    FILE *f = dlrt_output();
    if (a->rank == 0) {
        print_elem(f, a, 0);
        return;
    }
    int64_t stride[DL_MAX_RANK];
    stride[a->rank - 1] = 1;
    for (int32_t i = a->rank - 2; i >= 0; i--)
        stride[i] = stride[i + 1] * a->shape[i + 1];
    print_axis(f, a, 0, 0, stride);
}
