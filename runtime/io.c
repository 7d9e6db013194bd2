/* io.c — CSV, NumPy .npy and IDX (MNIST) files.
 *
 * Each entry point runs its body under an error trap of its own: an error
 * anywhere inside (a bad header, out of memory) closes the file and frees the
 * buffers and the half-built array, then raises the same message again with
 * the caller's source position. So a failure never leaks, even when the
 * caller's trap catches it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* strtod_l */
#endif
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

/* ---------------------------------------------------------------- guarded bodies */

/* What a body holds; freed on success and on error alike. */
typedef struct Io {
    const char *path;
    FILE *f;
    gzFile gz;
    void *buf, *buf2;
    dl_array *tmp;        /* intermediate array */
    dl_array *result;     /* released on error, returned on success */
} Io;

typedef void (*IoBody)(Io *io, void *arg);

static void io_cleanup(Io *io, bool failed)
{
    if (io->f)
        fclose(io->f);
    if (io->gz)
        gzclose(io->gz);
    dlrt_free(io->buf);
    dlrt_free(io->buf2);
    dl_array_release(io->tmp);
    if (failed)
        dl_array_release(io->result);
    io->f = NULL;
    io->gz = NULL;
    io->buf = io->buf2 = NULL;
    io->tmp = NULL;
}

/* io is reached through a pointer that does not change after setjmp, and
 * the body writes its fields through that pointer, so they are in memory
 * when the error longjmps back (C11 7.13.2.1p3 concerns objects changed
 * directly in the function that called setjmp). */
static dl_array *io_run(const char *path, IoBody body, void *arg, const dl_srcloc *loc)
{
    Io state = { 0 };
    Io *volatile io = &state;
    io->path = path;
    jmp_buf jb;
    if (setjmp(jb)) {
        io_cleanup(io, true);
        dlrt_error_raise(loc);
    }
    dl_error_trap_push(&jb);
    body(io, arg);
    dl_error_trap_pop();
    io_cleanup(io, false);
    return io->result;
}

#define FAIL(io, ...) io_fail(io, __VA_ARGS__)

DL_PRINTF(2, 3) DL_NORETURN static void io_fail(Io *io, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dl_error(NULL, "%s: %s", io->path, msg);
}

/* Data sets shipped as Debian packages live in /usr/share/datasets/NAME/,
 * installed by the package dataset-NAME: a missing file there says which
 * package to install. Writes the hint (or "") into buf. */
#define DATASETS_DIR "/usr/share/datasets/"

static void missing_hint(char *buf, size_t n, const char *path, int err)
{
    buf[0] = 0;
    if (err != ENOENT || strncmp(path, DATASETS_DIR, strlen(DATASETS_DIR)) != 0)
        return;
    const char *name = path + strlen(DATASETS_DIR);
    const char *end = strchr(name, '/');
    if (!end || end == name)
        return;
    snprintf(buf, n, " (install the Debian package dataset-%.*s)", (int)(end - name), name);
}

static DL_NORETURN void open_error(Io *io, int err)
{
    char hint[160];
    missing_hint(hint, sizeof hint, io->path, err);
    dl_error(NULL, "cannot open '%s': %s%s", io->path, err ? strerror(err) : "out of memory",
             hint);
}

static void open_file(Io *io, const char *mode)
{
    io->f = fopen(io->path, mode);
    if (!io->f)
        open_error(io, errno);
}

static int64_t file_size(Io *io)
{
    struct stat st;
    if (fstat(fileno(io->f), &st) != 0 || !S_ISREG(st.st_mode))
        return -1;
    return st.st_size;
}

static bool host_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static void swap_bytes(void *data, int64_t n, int es)
{
    uint8_t *p = data;
    for (int64_t i = 0; i < n; i++, p += es)
        for (int j = 0; j < es / 2; j++) {
            uint8_t t = p[j];
            p[j] = p[es - 1 - j];
            p[es - 1 - j] = t;
        }
}

/* Size of a shape read from a file, checked before anything is allocated. */
static int64_t io_shape_size(Io *io, int32_t rank, const int64_t *shape, int64_t es)
{
    int64_t size = 1, bytes;
    for (int32_t i = 0; i < rank; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(size, shape[i], &size))
            goto bad;
    if (__builtin_mul_overflow(size, es, &bytes) || bytes > (INT64_C(1) << 48))
        goto bad;
    return size;
bad:;
    char s[256];
    dl_format_shape(s, sizeof s, rank, shape);
    FAIL(io, "implausible shape %s", s);
}

static void check_rank(Io *io, int32_t want, int32_t rank, const int64_t *shape)
{
    if (want >= 0 && want != rank) {
        char s[256];
        dl_format_shape(s, sizeof s, rank, shape);
        FAIL(io, "array has rank %d (shape %s), expected rank %d", (int)rank, s, (int)want);
    }
}

/* ---------------------------------------------------------------- CSV */

static void read_all(Io *io, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    io->buf = dlrt_alloc(cap);
    for (;;) {
        if (cap - n < 4096) {
            cap *= 2;
            io->buf = dlrt_realloc(io->buf, cap);
        }
        size_t got = fread((char *)io->buf + n, 1, cap - n - 1, io->f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(io->f))
        FAIL(io, "read error: %s", strerror(errno));
    ((char *)io->buf)[n] = 0;
    *len = n;
}

/* One field: optional blanks, a number (strtod in the C locale), optional
 * blanks, then ',' or the end of the line. Returns the position after the
 * field (at ',' or end) or NULL when the field is not a number. */
static const char *parse_field(const char *p, const char *end, double *x)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p == end || *p == ',')
        return NULL;
    char *e;
    *x = strtod_l(p, &e, dlrt_c_locale());
    if (e == p || e > end)
        return NULL;
    p = e;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p < end && *p != ',')
        return NULL;
    return p;
}

static void csv_body(Io *io, void *arg)
{
    (void)arg;
    open_file(io, "rb");
    size_t len;
    read_all(io, &len);
    fclose(io->f);
    io->f = NULL;
    const char *text = io->buf;
    size_t cap = 1024, nvals = 0;
    io->buf2 = dlrt_alloc(cap * sizeof(double));
    int64_t rows = 0, cols = -1, header_cols = 0;
    bool first = true;
    long line = 0;
    for (const char *p = text; p < text + len;) {
        const char *eol = memchr(p, '\n', text + len - p);
        if (!eol)
            eol = text + len;
        const char *end = eol;
        if (end > p && end[-1] == '\r')
            end--;
        line++;
        const char *q = p;
        p = eol + 1;
        const char *blank = q;
        while (blank < end && (*blank == ' ' || *blank == '\t'))
            blank++;
        if (blank == end)
            continue;
        /* count the fields first, then parse them */
        int64_t nf = 1;
        for (const char *c = q; c < end; c++)
            nf += *c == ',';
        bool numeric = true;
        size_t row_start = nvals;
        int64_t field = 0;
        const char *bad = NULL;
        for (const char *c = q; field < nf; field++) {
            double x;
            const char *next = parse_field(c, end, &x);
            if (!next) {
                numeric = false;
                bad = c;
                break;
            }
            if (nvals == cap) {
                cap *= 2;
                io->buf2 = dlrt_realloc(io->buf2, cap * sizeof(double));
            }
            ((double *)io->buf2)[nvals++] = x;
            c = next + 1;
        }
        if (!numeric && first) {       /* a header line */
            nvals = row_start;
            header_cols = nf;
            first = false;
            continue;
        }
        first = false;
        if (!numeric) {
            while (bad < end && (*bad == ' ' || *bad == '\t'))
                bad++;
            const char *stop = memchr(bad, ',', end - bad);
            int w = (int)((stop ? stop : end) - bad);
            dl_error(NULL, "%s:%ld: field %lld is not a number: '%.*s'", io->path, line,
                     (long long)field + 1, w > 40 ? 40 : w, bad);
        }
        if (cols < 0)
            cols = nf;
        else if (nf != cols)
            dl_error(NULL, "%s:%ld: expected %lld fields, found %lld", io->path, line,
                     (long long)cols, (long long)nf);
        rows++;
    }
    int64_t shape[2] = { rows, cols < 0 ? header_cols : cols };
    io->result = dl_array_new(DL_F64, 2, shape);
    if (nvals)
        memcpy(io->result->data, io->buf2, nvals * sizeof(double));
}

dl_array *dl_read_csv(const char *path, const dl_srcloc *loc)
{
    return io_run(path, csv_body, NULL, loc);
}

/* ---------------------------------------------------------------- NPY */

/* The stored element types we read; numpy.lib.format writes `descr` as the
 * array-protocol type string: byte order ('<' little, '>' big, '|' n/a),
 * kind ('f' float, 'i' signed, 'u' unsigned, 'b' bool), size in bytes. */
typedef enum { ST_F64, ST_F32, ST_I64, ST_I32, ST_U8, ST_BOOL } Stored;

static const struct {
    char kind;
    int size;
    Stored st;
} npy_types[] = {
    { 'f', 8, ST_F64 }, { 'f', 4, ST_F32 }, { 'i', 8, ST_I64 },
    { 'i', 4, ST_I32 }, { 'u', 1, ST_U8 },  { 'b', 1, ST_BOOL },
};

static int32_t stored_natural(Stored st)
{
    switch (st) {
    case ST_F64: return DL_F64;
    case ST_F32: return DL_F32;
    case ST_I64: case ST_I32: return DL_I64;
    case ST_U8: return DL_U8;
    case ST_BOOL: return DL_BOOL;
    }
    return DL_F64;
}

/* Same type, or a widening that loses nothing a DL program cares about. */
static bool npy_convertible(Stored st, int32_t dtype)
{
    if (dtype == stored_natural(st))
        return true;
    switch (st) {
    case ST_U8: return dtype == DL_F64 || dtype == DL_F32 || dtype == DL_I64;
    case ST_I64: return dtype == DL_F64;
    case ST_I32: return dtype == DL_F64;
    default: return false;
    }
}

/* Finds the value of key in the header dict: the position after ':' and blanks. */
static const char *dict_value(const char *h, const char *key)
{
    char k1[32], k2[32];
    snprintf(k1, sizeof k1, "'%s'", key);
    snprintf(k2, sizeof k2, "\"%s\"", key);
    const char *p = strstr(h, k1);
    if (!p)
        p = strstr(h, k2);
    if (!p)
        return NULL;
    p += strlen(k1);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

typedef struct NpyArgs {
    int32_t dtype, rank;
} NpyArgs;

static void npy_body(Io *io, void *arg)
{
    NpyArgs *want = arg;
    open_file(io, "rb");
    int64_t fsize = file_size(io);
    uint8_t pre[12];
    if (fread(pre, 1, 10, io->f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        FAIL(io, "not a .npy file (bad magic)");
    int major = pre[6], minor = pre[7];
    uint64_t hlen;
    int64_t off;
    if (major == 1) {
        hlen = pre[8] | (uint32_t)pre[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, io->f) != 2)
            FAIL(io, "truncated header");
        hlen = pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
        off = 12;
    } else {
        FAIL(io, "unsupported .npy format version %d.%d", major, minor);
    }
    if (hlen > (1u << 24) || (fsize >= 0 && (int64_t)hlen > fsize - off))
        FAIL(io, "truncated header");
    io->buf = dlrt_alloc(hlen + 1);
    char *h = io->buf;
    if (fread(h, 1, hlen, io->f) != hlen)
        FAIL(io, "truncated header");
    h[hlen] = 0;
    off += (int64_t)hlen;

    /* 'descr': '<f8' */
    const char *d = dict_value(h, "descr");
    if (!d || (*d != '\'' && *d != '"'))
        FAIL(io, "malformed header (no 'descr')");
    char quote = *d++;
    const char *dend = strchr(d, quote);
    if (!dend || dend - d > 16)
        FAIL(io, "malformed header ('descr')");
    char descr[20];
    memcpy(descr, d, dend - d);
    descr[dend - d] = 0;
    char order = descr[0];
    int tsize = atoi(descr + 2);
    int ti = -1;
    if ((order == '<' || order == '>' || order == '|' || order == '=') && descr[1])
        for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
            if (npy_types[i].kind == descr[1] && npy_types[i].size == tsize &&
                strspn(descr + 2, "0123456789") == strlen(descr + 2))
                ti = (int)i;
    if (ti < 0)
        FAIL(io, "unsupported element type '%s' (expected '<f8', '<f4', '<i8', '<i4', '|u1' "
                 "or '|b1')", descr);
    Stored st = npy_types[ti].st;
    bool big = order == '>' || (order == '=' && !host_little_endian());
    bool swap = tsize > 1 && big == host_little_endian();

    /* 'fortran_order': False */
    const char *fo = dict_value(h, "fortran_order");
    bool fortran;
    if (fo && strncmp(fo, "True", 4) == 0)
        fortran = true;
    else if (fo && strncmp(fo, "False", 5) == 0)
        fortran = false;
    else
        FAIL(io, "malformed header (no 'fortran_order')");

    /* 'shape': (3, 4) */
    const char *s = dict_value(h, "shape");
    if (!s || *s != '(')
        FAIL(io, "malformed header (no 'shape')");
    s++;
    int64_t shape[DL_MAX_RANK];
    int32_t rank = 0;
    for (;;) {
        while (*s == ' ')
            s++;
        if (*s == ')')
            break;
        if (*s < '0' || *s > '9')
            FAIL(io, "malformed header ('shape')");
        if (rank == DL_MAX_RANK)
            FAIL(io, "rank above %d is not supported", DL_MAX_RANK);
        char *e;
        errno = 0;
        long long v = strtoll(s, &e, 10);
        if (errno)
            FAIL(io, "malformed header ('shape')");
        shape[rank++] = v;
        s = e;
        if (*s == 'L')
            s++;
        while (*s == ' ')
            s++;
        if (*s == ',')
            s++;
        else if (*s != ')')
            FAIL(io, "malformed header ('shape')");
    }

    int32_t dtype = want->dtype == DL_DTYPE_ANY ? stored_natural(st) : want->dtype;
    if (!npy_convertible(st, dtype))
        FAIL(io, "holds '%s' data, which cannot be read as %s", descr, dl_dtype_name(dtype));
    check_rank(io, want->rank, rank, shape);
    int64_t size = io_shape_size(io, rank, shape, tsize);
    int64_t need = size * tsize;
    if (fsize >= 0 && fsize - off < need)
        FAIL(io, "truncated data: expected %lld bytes, found %lld", (long long)need,
             (long long)(fsize - off));

    /* Fortran order stores the array as the C-order array of the reversed
     * shape; reading that and reversing the axes gives C order. */
    int64_t fshape[DL_MAX_RANK];
    for (int32_t i = 0; i < rank; i++)
        fshape[i] = fortran ? shape[rank - 1 - i] : shape[i];
    dl_array *a = dl_array_new(dtype, rank, fshape);
    if (fortran)
        io->tmp = a;
    else
        io->result = a;
    void *raw = a->data;
    if (dtype != stored_natural(st) || st == ST_I32 || dl_dtype_size(dtype) != tsize)
        raw = io->buf2 = dlrt_alloc(need ? (size_t)need : 1);
    if ((int64_t)fread(raw, 1, (size_t)need, io->f) != need)
        FAIL(io, "truncated data: expected %lld bytes", (long long)need);
    if (swap)
        swap_bytes(raw, size, tsize);
    if (raw != a->data) {
        for (int64_t i = 0; i < size; i++) {
            double x;
            int64_t n;
            switch (st) {
            case ST_U8: n = ((uint8_t *)raw)[i]; x = (double)n; break;
            case ST_I32: n = ((int32_t *)raw)[i]; x = (double)n; break;
            case ST_I64: n = ((int64_t *)raw)[i]; x = (double)n; break;
            default: n = 0; x = 0; break;
            }
            switch (dtype) {
            case DL_F64: ((double *)a->data)[i] = x; break;
            case DL_F32: ((float *)a->data)[i] = (float)x; break;
            case DL_I64: ((int64_t *)a->data)[i] = n; break;
            }
        }
    }
    if (st == ST_BOOL)
        for (int64_t i = 0; i < size; i++)
            ((uint8_t *)a->data)[i] = ((uint8_t *)a->data)[i] != 0;
    if (fortran)
        io->result = dl_transpose(a, NULL);
}

dl_array *dl_read_npy(const char *path, int32_t dtype, int32_t rank, const dl_srcloc *loc)
{
    NpyArgs args = { dtype, rank };
    return io_run(path, npy_body, &args, loc);
}

static void write_checked(Io *io, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, io->f) != n)
        FAIL(io, "write failed: %s", strerror(errno));
}

/* numpy.lib.format: magic, version, header length (little-endian), then the
 * repr of a dict padded with spaces and ended by '\n' so that the data
 * starts at a multiple of 64 bytes. */
static void npy_write_body(Io *io, void *arg)
{
    const dl_array *a = arg;
    const char *descr;
    switch (a->dtype) {
    case DL_F64: descr = "<f8"; break;
    case DL_F32: descr = "<f4"; break;
    case DL_I64: descr = "<i8"; break;
    case DL_U8: descr = "|u1"; break;
    case DL_BOOL: descr = "|b1"; break;
    default: FAIL(io, "cannot write an array of %s as .npy", dl_dtype_name(a->dtype));
    }
    char h[512];
    int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int32_t i = 0; i < a->rank; i++)
        n += snprintf(h + n, sizeof h - n, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
    n += snprintf(h + n, sizeof h - n, "%s), }", a->rank == 1 ? "," : "");
    int pre = 10;
    while ((pre + n + 1) % 64)
        h[n++] = ' ';
    h[n++] = '\n';
    uint8_t head[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)n, (uint8_t)(n >> 8) };
    open_file(io, "wb");
    write_checked(io, head, sizeof head);
    write_checked(io, h, (size_t)n);
    int64_t nb = dl_array_nbytes(a);
    if (host_little_endian() || a->elem_size == 1) {
        write_checked(io, a->data, (size_t)nb);
    } else {
        io->buf = dlrt_alloc(nb ? (size_t)nb : 1);
        memcpy(io->buf, a->data, (size_t)nb);
        swap_bytes(io->buf, a->size, (int)a->elem_size);
        write_checked(io, io->buf, (size_t)nb);
    }
    FILE *f = io->f;
    io->f = NULL;
    if (fclose(f) != 0)
        FAIL(io, "write failed: %s", strerror(errno));
}

void dl_write_npy(const char *path, const dl_array *a, const dl_srcloc *loc)
{
    DL_HOST(a);
    io_run(path, npy_write_body, (void *)a, loc);
}

/* ---------------------------------------------------------------- IDX */

/* IDX element types (the third magic byte) and their sizes. */
enum { IDX_U8 = 0x08, IDX_I8 = 0x09, IDX_I16 = 0x0B, IDX_I32 = 0x0C, IDX_F32 = 0x0D,
       IDX_F64 = 0x0E };

static int idx_elem_size(int t)
{
    switch (t) {
    case IDX_U8: case IDX_I8: return 1;
    case IDX_I16: return 2;
    case IDX_I32: case IDX_F32: return 4;
    case IDX_F64: return 8;
    default: return 0;
    }
}

static const char *idx_type_name(int t)
{
    switch (t) {
    case IDX_U8: return "ubyte";
    case IDX_I8: return "sbyte";
    case IDX_I16: return "i16";
    case IDX_I32: return "i32";
    case IDX_F32: return "f32";
    default: return "f64";
    }
}

static bool idx_convertible(int t, int32_t dtype)
{
    switch (t) {
    case IDX_U8: return dtype == DL_U8 || dtype == DL_I64 || dtype == DL_F32 || dtype == DL_F64;
    case IDX_I8: case IDX_I16: case IDX_I32:
        return dtype == DL_I64 || dtype == DL_F32 || dtype == DL_F64;
    default: return dtype == DL_F32 || dtype == DL_F64;
    }
}

static int32_t idx_natural(int t)
{
    switch (t) {
    case IDX_U8: return DL_U8;
    case IDX_F32: return DL_F32;
    case IDX_F64: return DL_F64;
    default: return DL_I64;
    }
}

/* Reads exactly n bytes; gzread takes an unsigned count, so large reads go
 * in pieces. Returns the number read (less at end of file). */
static int64_t gz_read_full(Io *io, void *p, int64_t n)
{
    int64_t got = 0;
    while (got < n) {
        unsigned chunk = n - got > (1 << 30) ? 1u << 30 : (unsigned)(n - got);
        int r = gzread(io->gz, (char *)p + got, chunk);
        if (r < 0) {
            int errnum;
            const char *m = gzerror(io->gz, &errnum);
            FAIL(io, "corrupt gzip data: %s", errnum == Z_ERRNO ? strerror(errno) : m);
        }
        if (r == 0)
            break;
        got += r;
    }
    return got;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Element i of big-endian IDX data of type t, as an integer and as a double. */
static void idx_load(int t, const uint8_t *p, int64_t *n, double *x)
{
    switch (t) {
    case IDX_U8: *n = *p; *x = (double)*n; return;
    case IDX_I8: *n = (int8_t)*p; *x = (double)*n; return;
    case IDX_I16: *n = (int16_t)(p[0] << 8 | p[1]); *x = (double)*n; return;
    case IDX_I32: *n = (int32_t)be32(p); *x = (double)*n; return;
    case IDX_F32: {
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, 4);
        *x = f;
        *n = 0;
        return;
    }
    default: {
        uint64_t u = (uint64_t)be32(p) << 32 | be32(p + 4);
        memcpy(x, &u, 8);
        *n = 0;
        return;
    }
    }
}

static void idx_body(Io *io, void *arg)
{
    NpyArgs *want = arg;
    errno = 0;
    io->gz = gzopen(io->path, "rb");
    if (!io->gz)
        open_error(io, errno);
    gzbuffer(io->gz, 1 << 17);
    uint8_t magic[4];
    int64_t got = gz_read_full(io, magic, 4);
    if (got < 4 || magic[0] != 0 || magic[1] != 0 || idx_elem_size(magic[2]) == 0 ||
        magic[3] > DL_MAX_RANK) {
        if (got < 4)
            FAIL(io, "not an IDX file (only %lld bytes)", (long long)got);
        FAIL(io, "not an IDX file (bad magic 0x%02x%02x%02x%02x)", magic[0], magic[1], magic[2],
             magic[3]);
    }
    int t = magic[2], es = idx_elem_size(t);
    int32_t rank = magic[3];
    uint8_t dims[4 * DL_MAX_RANK];
    if (gz_read_full(io, dims, 4 * rank) != 4 * rank)
        FAIL(io, "truncated header");
    int64_t shape[DL_MAX_RANK];
    for (int32_t i = 0; i < rank; i++)
        shape[i] = be32(dims + 4 * i);
    int32_t dtype = want->dtype == DL_DTYPE_ANY ? idx_natural(t) : want->dtype;
    if (!idx_convertible(t, dtype))
        FAIL(io, "holds %s data, which cannot be read as %s", idx_type_name(t),
             dl_dtype_name(dtype));
    check_rank(io, want->rank, rank, shape);
    int64_t size = io_shape_size(io, rank, shape, es);
    int64_t need = size * es;
    if (gzdirect(io->gz)) {
        /* a raw file: its size tells before the allocation whether the data is there */
        struct stat st;
        if (stat(io->path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size - (4 + 4 * rank) < need)
            FAIL(io, "truncated data: expected %lld bytes, found %lld", (long long)need,
                 (long long)(st.st_size - (4 + 4 * rank)));
    }
    dl_array *a = io->result = dl_array_new(dtype, rank, shape);
    if (t == IDX_U8 && dtype == DL_U8) {
        got = gz_read_full(io, a->data, need);
        if (got != need)
            FAIL(io, "truncated data: expected %lld bytes, found %lld", (long long)need,
                 (long long)got);
        return;
    }
    /* convert in chunks of whole elements */
    const int64_t chunk = 1 << 16;
    io->buf = dlrt_alloc((size_t)chunk);
    int64_t per = chunk / es;
    for (int64_t i0 = 0; i0 < size; i0 += per) {
        int64_t k = size - i0 < per ? size - i0 : per;
        got = gz_read_full(io, io->buf, k * es);
        if (got != k * es)
            FAIL(io, "truncated data: expected %lld bytes, found %lld", (long long)need,
                 (long long)(i0 * es + got));
        const uint8_t *p = io->buf;
        for (int64_t i = 0; i < k; i++, p += es) {
            int64_t n;
            double x;
            idx_load(t, p, &n, &x);
            switch (dtype) {
            case DL_F64: ((double *)a->data)[i0 + i] = x; break;
            case DL_F32: ((float *)a->data)[i0 + i] = (float)x; break;
            case DL_I64: ((int64_t *)a->data)[i0 + i] = n; break;
            case DL_U8: ((uint8_t *)a->data)[i0 + i] = (uint8_t)n; break;
            }
        }
    }
}

dl_array *dl_read_idx(const char *path, int32_t dtype, int32_t rank, const dl_srcloc *loc)
{
    NpyArgs args = { dtype, rank };
    return io_run(path, idx_body, &args, loc);
}

typedef struct IdxWriteArgs {
    const dl_array *a;
    bool gzip;
} IdxWriteArgs;

static void idx_write_body(Io *io, void *arg)
{
    const dl_array *a = ((IdxWriteArgs *)arg)->a;
    bool gzip = ((IdxWriteArgs *)arg)->gzip;
    int t;
    switch (a->dtype) {
    case DL_U8: t = IDX_U8; break;
    case DL_F32: t = IDX_F32; break;
    case DL_F64: t = IDX_F64; break;
    default: FAIL(io, "cannot write an array of %s as IDX (u8, f32 or float)",
                  dl_dtype_name(a->dtype));
    }
    for (int32_t i = 0; i < a->rank; i++)
        if (a->shape[i] > UINT32_MAX)
            FAIL(io, "dimension %lld does not fit IDX's 32 bits", (long long)a->shape[i]);
    /* "T": zlib writes without compression (transparent mode) */
    io->gz = gzopen(io->path, gzip ? "wb6" : "wbT");
    if (!io->gz)
        dl_error(NULL, "cannot open '%s' for writing: %s", io->path,
                 errno ? strerror(errno) : "out of memory");
    uint8_t head[4 + 4 * DL_MAX_RANK] = { 0, 0, (uint8_t)t, (uint8_t)a->rank };
    for (int32_t i = 0; i < a->rank; i++) {
        uint32_t d = (uint32_t)a->shape[i];
        head[4 + 4 * i] = d >> 24, head[5 + 4 * i] = d >> 16;
        head[6 + 4 * i] = d >> 8, head[7 + 4 * i] = (uint8_t)d;
    }
    int64_t es = a->elem_size, nb = dl_array_nbytes(a);
    bool ok = gzwrite(io->gz, head, 4 + 4 * a->rank) > 0;
    const int64_t chunk = 1 << 16;
    io->buf = dlrt_alloc((size_t)chunk);
    for (int64_t off = 0; ok && off < nb; off += chunk) {
        int64_t k = nb - off < chunk ? nb - off : chunk;
        memcpy(io->buf, (const char *)a->data + off, (size_t)k);
        if (es > 1 && host_little_endian())
            swap_bytes(io->buf, k / es, (int)es);
        ok = gzwrite(io->gz, io->buf, (unsigned)k) > 0;
    }
    gzFile gz = io->gz;
    io->gz = NULL;
    if (gzclose(gz) != Z_OK || !ok)
        FAIL(io, "write failed: %s", errno ? strerror(errno) : "zlib error");
}

void dl_write_idx(const char *path, const dl_array *a, bool gzip, const dl_srcloc *loc)
{
    DL_HOST(a);
    IdxWriteArgs args = { a, gzip };
    io_run(path, idx_write_body, &args, loc);
}

/* ---------------------------------------------------------------- text */

static void text_write_body(Io *io, void *arg)
{
    const char *text = arg;
    io->f = fopen(io->path, "wb");
    if (!io->f)
        dl_error(NULL, "cannot open '%s' for writing: %s", io->path, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, io->f) == n;
    FILE *f = io->f;
    io->f = NULL;
    if (fclose(f) != 0 || !ok)
        FAIL(io, "write failed: %s", strerror(errno));
}

void dl_write_text(const char *path, const char *text, const dl_srcloc *loc)
{
    io_run(path, text_write_body, (void *)(text ? text : ""), loc);
}

/* ---------------------------------------------------------------- clock */

/* clock (): the monotonic clock, or this process's CPU time when the
 * environment has DL_CLOCK=cpu (benchmarks on a shared machine: time spent
 * descheduled is not counted; bench/adbench.sh --cpu-time sets it). */
double dl_clock(void)
{
    static int cpu = -1;
    if (cpu < 0) {
        const char *c = getenv("DL_CLOCK");
        cpu = c && !strcmp(c, "cpu");
    }
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
