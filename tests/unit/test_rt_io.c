/* test_rt_io.c — libdlrt files: .npy, IDX (raw and gzip), CSV, and their
 * errors. Files are written by the test itself (by hand, byte by byte, to
 * check the formats, and through the writers, to check round trips). */
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

static const char *tpath(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void fill(dl_array *a)
{
    for (int64_t i = 0; i < a->size; i++) {
        switch (a->dtype) {
        case DL_F64: ((double *)a->data)[i] = i * 0.37 - 1e-3 * i * i; break;
        case DL_F32: ((float *)a->data)[i] = (float)(i * -1.25 + 0.1); break;
        case DL_I64: ((int64_t *)a->data)[i] = (i - 5) * INT64_C(1000000007); break;
        case DL_U8: ((uint8_t *)a->data)[i] = (uint8_t)(i * 37); break;
        case DL_BOOL: ((uint8_t *)a->data)[i] = (i % 3) == 0; break;
        }
    }
}

/* ---------------------------------------------------------------- npy */

START_TEST(test_npy_round_trip)
{
    int32_t dts[5] = { DL_F64, DL_F32, DL_I64, DL_U8, DL_BOOL };
    const char *descr[5] = { "'<f8'", "'<f4'", "'<i8'", "'|u1'", "'|b1'" };
    int64_t shapes[4][3] = { { 0 }, { 7 }, { 3, 4 }, { 2, 0, 5 } };
    int32_t ranks[4] = { 0, 1, 2, 3 };
    for (int d = 0; d < 5; d++)
        for (int s = 0; s < 4; s++) {
            dl_array *a = dl_array_new(dts[d], ranks[s], shapes[s]);
            fill(a);
            const char *p = tpath("rt.npy");
            dl_write_npy(p, a, NULL);
            unsigned char buf[4096];
            size_t n = read_bytes(p, buf, sizeof buf);
            ck_assert(memcmp(buf, "\x93NUMPY\x01\x00", 8) == 0);
            size_t hlen = buf[8] | buf[9] << 8;
            ck_assert_int_eq((10 + hlen) % 64, 0);
            ck_assert_int_eq(buf[10 + hlen - 1], '\n');
            ck_assert_int_eq(n, 10 + hlen + (size_t)dl_array_nbytes(a));
            char head[512];
            memcpy(head, buf + 10, hlen);
            head[hlen] = 0;
            ck_assert_ptr_nonnull(strstr(head, descr[d]));
            ck_assert_ptr_nonnull(strstr(head, "'fortran_order': False"));
            ck_assert_ptr_nonnull(strstr(head, ranks[s] == 0   ? "'shape': ()"
                                               : ranks[s] == 1 ? "'shape': (7,)"
                                               : ranks[s] == 2 ? "'shape': (3, 4)"
                                                               : "'shape': (2, 0, 5)"));
            dl_array *b = dl_read_npy(p, dts[d], ranks[s], NULL);
            ck_assert(dl_array_equal(a, b));
            dl_array *c = dl_read_npy(p, DL_DTYPE_ANY, -1, NULL);
            ck_assert(dl_array_equal(a, c));
            dl_array_release(a);
            dl_array_release(b);
            dl_array_release(c);
        }
}
END_TEST

/* A .npy file written by hand: version, header (padded as NumPy pads), data. */
static void write_npy_raw(const char *path, int major, const char *dict, const void *data,
                          size_t n)
{
    unsigned char buf[4096];
    size_t pre = major == 1 ? 10 : 12, hl = strlen(dict);
    size_t total = pre + hl + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = hl + pad + 1;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    if (major == 1) {
        buf[8] = hlen & 0xff;
        buf[9] = hlen >> 8;
    } else {
        buf[8] = hlen & 0xff;
        buf[9] = (hlen >> 8) & 0xff;
        buf[10] = (hlen >> 16) & 0xff;
        buf[11] = hlen >> 24;
    }
    memcpy(buf + pre, dict, hl);
    memset(buf + pre + hl, ' ', pad);
    buf[pre + hl + pad] = '\n';
    memcpy(buf + pre + hlen, data, n);
    write_bytes(path, buf, pre + hlen + n);
}

START_TEST(test_npy_versions)
{
    double v[6] = { 1, 2, 3, 4, 5, 6 };
    for (int major = 1; major <= 3; major++) {
        const char *p = tpath("v.npy");
        write_npy_raw(p, major, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", v,
                      sizeof v);
        dl_array *a = dl_read_npy(p, DL_F64, 2, NULL);
        ck_assert_int_eq(a->shape[0], 2);
        ck_assert_int_eq(a->shape[1], 3);
        ck_assert(memcmp(a->data, v, sizeof v) == 0);
        dl_array_release(a);
    }
    const char *p = tpath("v4.npy");
    write_npy_raw(p, 4, "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", v, sizeof v);
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 1, NULL), "unsupported .npy format version 4.0");
}
END_TEST

START_TEST(test_npy_fortran_bigendian)
{
    /* column-major [[1, 2, 3], [4, 5, 6]] */
    double v[6] = { 1, 4, 2, 5, 3, 6 };
    const char *p = tpath("f.npy");
    write_npy_raw(p, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", v, sizeof v);
    dl_array *a = dl_read_npy(p, DL_F64, 2, NULL);
    ck_assert_int_eq(a->shape[0], 2);
    ck_assert_int_eq(a->shape[1], 3);
    for (int i = 0; i < 6; i++)
        ck_assert(((double *)a->data)[i] == i + 1);
    dl_array_release(a);

    /* '>i8' 1, 256, -2 */
    unsigned char be[24] = { 0, 0, 0, 0, 0, 0, 0, 1,  0, 0, 0, 0, 0, 0, 1, 0,
                             0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe };
    write_npy_raw(p, 1, "{'descr': '>i8', 'fortran_order': False, 'shape': (3,), }", be, 24);
    a = dl_read_npy(p, DL_I64, 1, NULL);
    ck_assert_int_eq(((int64_t *)a->data)[0], 1);
    ck_assert_int_eq(((int64_t *)a->data)[1], 256);
    ck_assert_int_eq(((int64_t *)a->data)[2], -2);
    dl_array_release(a);
}
END_TEST

START_TEST(test_npy_conversions)
{
    const char *p = tpath("c.npy");
    uint8_t u[4] = { 0, 1, 128, 255 };
    write_npy_raw(p, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", u, 4);
    dl_array *a = dl_read_npy(p, DL_F64, 1, NULL);
    ck_assert(((double *)a->data)[3] == 255.0 && ((double *)a->data)[2] == 128.0);
    dl_array_release(a);
    a = dl_read_npy(p, DL_F32, 1, NULL);
    ck_assert(((float *)a->data)[1] == 1.0f);
    dl_array_release(a);

    int64_t i8[3] = { -3, 0, 1 << 20 };
    write_npy_raw(p, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", i8, 24);
    a = dl_read_npy(p, DL_F64, 1, NULL);
    ck_assert(((double *)a->data)[0] == -3.0 && ((double *)a->data)[2] == 1048576.0);
    dl_array_release(a);
    EXPECT_ERROR(dl_read_npy(p, DL_F32, 1, NULL), "holds '<i8' data, which cannot be read as f32");

    int32_t i4[2] = { -7, 9 };
    write_npy_raw(p, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", i4, 8);
    a = dl_read_npy(p, DL_DTYPE_ANY, 1, NULL);
    ck_assert_int_eq(a->dtype, DL_I64);
    ck_assert_int_eq(((int64_t *)a->data)[0], -7);
    dl_array_release(a);

    float f[2] = { 1.5f, 2.5f };
    write_npy_raw(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f, 8);
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 1, NULL), "holds '<f4' data, which cannot be read as float");
    EXPECT_ERROR(dl_read_npy(p, DL_F32, 2, NULL), "array has rank 1 (shape [2]), expected rank 2");
}
END_TEST

START_TEST(test_npy_errors)
{
    dl_srcloc loc = { "load.dl", 2, 11 };
    EXPECT_ERROR(dl_read_npy(tpath("missing.npy"), DL_F64, 1, &loc), "cannot open '");
    ck_assert_ptr_nonnull(strstr(dl_last_error(), "missing.npy': No such file or directory"));
    ck_assert_int_eq(dl_last_error_loc().line, 2);

    const char *p = tpath("bad.npy");
    write_text(p, "PK\x03\x04 this is a zip file");
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 1, NULL), "bad.npy: not a .npy file (bad magic)");
    write_text(p, "");
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 1, NULL), "bad magic");

    double v[4] = { 1, 2, 3, 4 };
    write_npy_raw(p, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", v, 20);
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 1, NULL), "truncated data: expected 32 bytes, found 20");

    write_npy_raw(p, 1, "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", v, 16);
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 1, NULL), "unsupported element type '<c16'");
    write_npy_raw(p, 1, "{'descr': '<f8', 'shape': (1,), }", v, 8);
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 1, NULL), "no 'fortran_order'");
    write_npy_raw(p, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (x,), }", v, 8);
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 1, NULL), "malformed header ('shape')");
    write_npy_raw(p, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, "
                        "4294967296, 4294967296), }", v, 8);
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 3, NULL), "implausible shape");

    /* a header cut short */
    unsigned char h[12] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 200, 0, '{', '\'' };
    write_bytes(p, h, sizeof h);
    EXPECT_ERROR(dl_read_npy(p, DL_F64, 1, NULL), "truncated header");

    /* writing: bytes arrays and unwritable paths */
    int64_t n = 2;
    dl_array *b = dl_array_new_bytes(16, 1, &n);
    memset(b->data, 0, 32);
    EXPECT_ERROR(dl_write_npy(p, b, NULL), "cannot write an array of bytes");
    dl_array *a = dl_array_zeros(DL_F64, 1, &n);
    EXPECT_ERROR(dl_write_npy(tpath("no/such/dir.npy"), a, NULL), "cannot open");
    dl_array_release(a);
    dl_array_release(b);
}
END_TEST

/* ---------------------------------------------------------------- idx */

/* An idx3-ubyte file by hand: magic 00 00 08 03, dims 2 3 4 big-endian. */
static size_t make_idx3(unsigned char *buf)
{
    unsigned char head[16] = { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4 };
    memcpy(buf, head, 16);
    for (int i = 0; i < 24; i++)
        buf[16 + i] = (unsigned char)(i * 11);
    return 40;
}

/* CRC-32 of gzip (RFC 1952 section 8), bit by bit. */
static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

/* A gzip file written by hand (RFC 1952 member, RFC 1951 stored blocks), so
 * that the reader is checked against a writer other than zlib. */
static void write_gz(const char *path, const void *data, size_t n)
{
    const unsigned char *p = data;
    unsigned char out[8192];
    size_t k = 0;
    const unsigned char head[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff };
    memcpy(out, head, 10);
    k = 10;
    size_t off = 0;
    do {   /* stored blocks of at most 1000 bytes: BFINAL, BTYPE 00, LEN, NLEN */
        size_t m = n - off < 1000 ? n - off : 1000;
        out[k++] = off + m == n;
        out[k++] = m & 0xff, out[k++] = m >> 8;
        out[k++] = ~m & 0xff, out[k++] = (~m >> 8) & 0xff;
        memcpy(out + k, p + off, m);
        k += m;
        off += m;
    } while (off < n);
    uint32_t crc = crc32_of(p, n);
    for (int i = 0; i < 4; i++)
        out[k++] = (crc >> (8 * i)) & 0xff;
    for (int i = 0; i < 4; i++)
        out[k++] = ((uint32_t)n >> (8 * i)) & 0xff;
    write_bytes(path, out, k);
}

static void check_idx3(const char *path)
{
    int32_t dts[4] = { DL_U8, DL_F64, DL_F32, DL_I64 };
    for (int d = 0; d < 4; d++) {
        dl_array *a = dl_read_idx(path, dts[d], 3, NULL);
        ck_assert_int_eq(a->dtype, dts[d]);
        ck_assert_int_eq(a->rank, 3);
        ck_assert_int_eq(a->shape[0], 2);
        ck_assert_int_eq(a->shape[1], 3);
        ck_assert_int_eq(a->shape[2], 4);
        for (int i = 0; i < 24; i++) {
            double want = (unsigned char)(i * 11);
            double got = dts[d] == DL_U8    ? ((uint8_t *)a->data)[i]
                         : dts[d] == DL_F64 ? ((double *)a->data)[i]
                         : dts[d] == DL_F32 ? ((float *)a->data)[i]
                                            : (double)((int64_t *)a->data)[i];
            ck_assert(got == want);
        }
        dl_array_release(a);
    }
}

START_TEST(test_idx_raw_and_gzip)
{
    unsigned char buf[64];
    size_t n = make_idx3(buf);
    write_bytes(tpath("x.idx3"), buf, n);
    check_idx3(tpath("x.idx3"));
    write_gz(tpath("x.idx3.gz"), buf, n);
    check_idx3(tpath("x.idx3.gz"));
    dl_array *a = dl_read_idx(tpath("x.idx3.gz"), DL_DTYPE_ANY, -1, NULL);
    ck_assert_int_eq(a->dtype, DL_U8);
    dl_array_release(a);
}
END_TEST

START_TEST(test_idx_types)
{
    /* f32 data 1.5, -2.0 big-endian; i16 data -2, 300 */
    unsigned char f[16] = { 0, 0, 0x0d, 1, 0, 0, 0, 2, 0x3f, 0xc0, 0, 0, 0xc0, 0, 0, 0 };
    write_bytes(tpath("f.idx"), f, sizeof f);
    dl_array *a = dl_read_idx(tpath("f.idx"), DL_F64, 1, NULL);
    ck_assert(((double *)a->data)[0] == 1.5 && ((double *)a->data)[1] == -2.0);
    dl_array_release(a);
    EXPECT_ERROR(dl_read_idx(tpath("f.idx"), DL_U8, 1, NULL), "holds f32 data, which cannot be read as u8");
    unsigned char s[12] = { 0, 0, 0x0b, 1, 0, 0, 0, 2, 0xff, 0xfe, 0x01, 0x2c };
    write_bytes(tpath("s.idx"), s, sizeof s);
    a = dl_read_idx(tpath("s.idx"), DL_DTYPE_ANY, 1, NULL);
    ck_assert_int_eq(a->dtype, DL_I64);
    ck_assert_int_eq(((int64_t *)a->data)[0], -2);
    ck_assert_int_eq(((int64_t *)a->data)[1], 300);
    dl_array_release(a);
}
END_TEST

START_TEST(test_idx_write_round_trip)
{
    int64_t shape[3] = { 3, 5, 2 };
    int32_t dts[3] = { DL_U8, DL_F32, DL_F64 };
    for (int d = 0; d < 3; d++)
        for (int gz = 0; gz < 2; gz++) {
            dl_array *a = dl_array_new(dts[d], 3, shape);
            fill(a);
            const char *p = tpath(gz ? "w.idx.gz" : "w.idx");
            dl_write_idx(p, a, gz, NULL);
            unsigned char head[4];
            ck_assert_int_eq(read_bytes(p, head, 4), 4);
            if (gz)
                ck_assert(head[0] == 0x1f && head[1] == 0x8b);
            else
                ck_assert(head[0] == 0 && head[1] == 0 && head[3] == 3);
            dl_array *b = dl_read_idx(p, dts[d], 3, NULL);
            ck_assert(dl_array_equal(a, b));
            dl_array_release(a);
            dl_array_release(b);
        }
    int64_t n = 3;
    dl_array *i = dl_array_zeros(DL_I64, 1, &n);
    EXPECT_ERROR(dl_write_idx(tpath("i.idx"), i, false, NULL), "cannot write an array of int as IDX");
    dl_array_release(i);
}
END_TEST

START_TEST(test_idx_errors)
{
    dl_srcloc loc = { "mnist.dl", 5, 1 };
    EXPECT_ERROR(dl_read_idx(tpath("nope.gz"), DL_F64, 3, &loc), "cannot open '");
    ck_assert_ptr_nonnull(strstr(dl_last_error(), "nope.gz'"));
    ck_assert_str_eq(dl_last_error_loc().file, "mnist.dl");

    write_text(tpath("bad.idx"), "\x89PNG\r\n\x1a\n not idx");
    EXPECT_ERROR(dl_read_idx(tpath("bad.idx"), DL_F64, 3, NULL),
                 "bad.idx: not an IDX file (bad magic 0x89504e47)");
    write_text(tpath("short.idx"), "\0");
    EXPECT_ERROR(dl_read_idx(tpath("short.idx"), DL_F64, 3, NULL), "not an IDX file");

    unsigned char buf[64];
    size_t n = make_idx3(buf);
    write_bytes(tpath("t.idx"), buf, n - 5);
    EXPECT_ERROR(dl_read_idx(tpath("t.idx"), DL_U8, 3, NULL),
                 "truncated data: expected 24 bytes, found 19");
    write_bytes(tpath("th.idx"), buf, 10);
    EXPECT_ERROR(dl_read_idx(tpath("th.idx"), DL_U8, 3, NULL), "truncated header");

    /* gzip: data cut short inside the compressed stream */
    write_gz(tpath("t.idx.gz"), buf, n - 5);
    EXPECT_ERROR(dl_read_idx(tpath("t.idx.gz"), DL_F32, 3, NULL), "truncated data");
    /* gzip: the compressed file itself cut short */
    write_gz(tpath("full.gz"), buf, n);
    unsigned char z[256];
    size_t zn = read_bytes(tpath("full.gz"), z, sizeof z);
    write_bytes(tpath("cut.gz"), z, zn / 2);
    EXPECT_ERROR(dl_read_idx(tpath("cut.gz"), DL_U8, 3, NULL), "cut.gz: ");

    write_bytes(tpath("r.idx"), buf, n);
    EXPECT_ERROR(dl_read_idx(tpath("r.idx"), DL_U8, 2, NULL),
                 "array has rank 3 (shape [2, 3, 4]), expected rank 2");
    EXPECT_ERROR(dl_read_idx(tpath("r.idx"), DL_BOOL, 3, NULL), "cannot be read as bool");
    ck_assert_int_eq(dl_error_trap_depth(), 0);
}
END_TEST

#define FASHION "/usr/share/datasets/fashion-mnist/"

/* The installed Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60000 training
 * and 10000 test images of 28x28; the test set has exactly 1000 of each of
 * the 10 classes and the training set 6000. */
START_TEST(test_fashion_mnist)
{
    if (access(FASHION "t10k-labels-idx1-ubyte.gz", R_OK) != 0)
        return;   /* not installed: the round trips above cover the format */
    dl_array *l = dl_read_idx(FASHION "t10k-labels-idx1-ubyte.gz", DL_I64, 1, NULL);
    ck_assert_int_eq(l->shape[0], 10000);
    int64_t count[10] = { 0 };
    for (int64_t i = 0; i < l->size; i++) {
        int64_t c = ((int64_t *)l->data)[i];
        ck_assert(c >= 0 && c < 10);
        count[c]++;
    }
    for (int c = 0; c < 10; c++)
        ck_assert_int_eq(count[c], 1000);
    dl_array_release(l);

    dl_array *x = dl_read_idx(FASHION "t10k-images-idx3-ubyte.gz", DL_F32, 3, NULL);
    ck_assert_int_eq(x->shape[0], 10000);
    ck_assert_int_eq(x->shape[1], 28);
    ck_assert_int_eq(x->shape[2], 28);
    double sum = 0, mx = 0;
    for (int64_t i = 0; i < x->size; i++) {
        float v = ((float *)x->data)[i];
        ck_assert(v >= 0 && v <= 255 && v == (float)(int)v);
        sum += v;
        mx = v > mx ? v : mx;
    }
    ck_assert(mx == 255);
    ck_assert(sum / x->size > 40 && sum / x->size < 110);   /* mean pixel ~73 */
    dl_array_release(x);

    dl_array *tl = dl_read_idx(FASHION "train-labels-idx1-ubyte.gz", DL_U8, 1, NULL);
    ck_assert_int_eq(tl->shape[0], 60000);
    int64_t tc[10] = { 0 };
    for (int64_t i = 0; i < tl->size; i++)
        tc[((uint8_t *)tl->data)[i] % 10]++;
    for (int c = 0; c < 10; c++)
        ck_assert_int_eq(tc[c], 6000);
    dl_array_release(tl);
    EXPECT_ERROR(dl_read_idx(FASHION "t10k-images-idx3-ubyte.gz", DL_F32, 2, NULL),
                 "rank 3 (shape [10000, 28, 28]), expected rank 2");
}
END_TEST

/* ---------------------------------------------------------------- csv */

static double at(const dl_array *a, int64_t i, int64_t j) { return ((double *)a->data)[i * a->shape[1] + j]; }

START_TEST(test_csv)
{
    const char *p = tpath("d.csv");
    write_text(p, "x,y,label\n1.5, 2,3\r\n\n-4e2 ,5.25,  6\n7,8,9");
    dl_array *a = dl_read_csv(p, NULL);
    ck_assert_int_eq(a->dtype, DL_F64);
    ck_assert_int_eq(a->rank, 2);
    ck_assert_int_eq(a->shape[0], 3);
    ck_assert_int_eq(a->shape[1], 3);
    ck_assert(at(a, 0, 0) == 1.5 && at(a, 0, 1) == 2 && at(a, 0, 2) == 3);
    ck_assert(at(a, 1, 0) == -400 && at(a, 1, 1) == 5.25 && at(a, 1, 2) == 6);
    ck_assert(at(a, 2, 2) == 9);
    dl_array_release(a);

    write_text(p, "0.1\n0.2\n");                 /* no header, one column */
    a = dl_read_csv(p, NULL);
    ck_assert_int_eq(a->shape[0], 2);
    ck_assert_int_eq(a->shape[1], 1);
    ck_assert(at(a, 1, 0) == 0.2);
    dl_array_release(a);

    write_text(p, "");
    a = dl_read_csv(p, NULL);
    ck_assert_int_eq(a->shape[0], 0);
    ck_assert_int_eq(a->shape[1], 0);
    dl_array_release(a);

    /* a large file, to cross the reader's buffer sizes */
    FILE *f = fopen(p, "w");
    for (int i = 0; i < 20000; i++)
        fprintf(f, "%d,%d.5\n", i, -i);
    fclose(f);
    a = dl_read_csv(p, NULL);
    ck_assert_int_eq(a->shape[0], 20000);
    ck_assert(at(a, 19999, 0) == 19999 && at(a, 12345, 1) == -12345.5);
    dl_array_release(a);
}
END_TEST

START_TEST(test_csv_errors)
{
    const char *p = tpath("bad.csv");
    write_text(p, "a,b\n1,2\n3,4,5\n");
    EXPECT_ERROR(dl_read_csv(p, NULL), "bad.csv:3: expected 2 fields, found 3");
    write_text(p, "1,2\n\n3\n");
    EXPECT_ERROR(dl_read_csv(p, NULL), "bad.csv:3: expected 2 fields, found 1");
    write_text(p, "1,2\n3,abc\n");
    EXPECT_ERROR(dl_read_csv(p, NULL), "bad.csv:2: field 2 is not a number: 'abc'");
    write_text(p, "1,2\n3,\n");
    EXPECT_ERROR(dl_read_csv(p, NULL), "bad.csv:2: field 2 is not a number");
    EXPECT_ERROR(dl_read_csv(tpath("none.csv"), NULL), "none.csv': No such file");
}
END_TEST

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/dlrt-io-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("rt_io");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_npy_round_trip);
    tcase_add_test(tc, test_npy_versions);
    tcase_add_test(tc, test_npy_fortran_bigendian);
    tcase_add_test(tc, test_npy_conversions);
    tcase_add_test(tc, test_npy_errors);
    tcase_add_test(tc, test_idx_raw_and_gzip);
    tcase_add_test(tc, test_idx_types);
    tcase_add_test(tc, test_idx_write_round_trip);
    tcase_add_test(tc, test_idx_errors);
    tcase_add_test(tc, test_fashion_mnist);
    tcase_add_test(tc, test_csv);
    tcase_add_test(tc, test_csv_errors);
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
