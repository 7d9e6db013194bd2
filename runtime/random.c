/* random.c — Philox4x32-10 and the samplers built on it.
 *
 * Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011: a counter-based generator is a keyed bijection of the counter, so
 * block i of any stream is computed directly and every result depends only on
 * (key, counter). Keys are split like JAX's (Bradbury et al.; Claessen & Pałka,
 * "Splittable pseudorandom number generators using cryptographic hashing",
 * Haskell 2013): children are outputs of the parent under fixed counters. */
#include "internal.h"

#include <math.h>

/* Philox4x32 constants from Random123 (philox.h). */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u   /* golden ratio */
#define PHILOX_W1 0xBB67AE85u   /* sqrt(3) - 1 */

/* Counter domains: the third counter word separates the streams drawn from
 * one key, so that different uses never share a block. */
enum { DOM_UNIFORM = 0, DOM_NORMAL = 1, DOM_PERMUTE = 2, DOM_SPLIT = 3, DOM_FOLD = 4 };

/* One round: two 32x32->64 multiplications; the high halves are xored with
 * the other two counter words and the round key, and the words permuted:
 * (c0, c1, c2, c3) -> (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)). */
void dl_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) {              /* the key schedule: a Weyl sequence */
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static void block(dl_key key, uint64_t i, uint32_t domain, uint32_t out[4])
{
    uint32_t ctr[4] = { (uint32_t)i, (uint32_t)(i >> 32), domain, 0 };
    dl_philox4x32_10(ctr, key.k, out);
}

dl_key dl_key_from_seed(int64_t seed)
{
    uint64_t s = (uint64_t)seed;
    return (dl_key){ { (uint32_t)s, (uint32_t)(s >> 32) } };
}

void dl_split(dl_key key, dl_key out[2])
{
    uint32_t w[4];
    block(key, 0, DOM_SPLIT, w);
    out[0] = (dl_key){ { w[0], w[1] } };
    out[1] = (dl_key){ { w[2], w[3] } };
}

dl_key dl_fold_in(dl_key key, int64_t data)
{
    uint32_t w[4];
    block(key, (uint64_t)data, DOM_FOLD, w);
    return (dl_key){ { w[0], w[1] } };
}

/* 53 bits of two words, as a double in [0, 1): exact, since 2^53 values fit. */
static double u53(uint32_t lo, uint32_t hi)
{
    uint64_t x = ((uint64_t)hi << 32 | lo) >> 11;
    return (double)x * 0x1p-53;
}

static void check_float_dtype(const char *fn, int32_t dtype)
{
    if (dtype != DL_F64 && dtype != DL_F32)
        dl_error(NULL, "%s: dtype must be float or f32, got %s", fn, dl_dtype_name(dtype));
}

dl_array *dl_uniform(dl_key key, int32_t dtype, int32_t rank, const int64_t *shape)
{
    check_float_dtype("uniform", dtype);
    dl_array *a = dl_array_new(dtype, rank, shape);
    uint32_t w[4];
    if (dtype == DL_F64) {
        double *x = a->data;
        for (int64_t i = 0; i < a->size; i += 2) {
            block(key, (uint64_t)i / 2, DOM_UNIFORM, w);
            x[i] = u53(w[0], w[1]);
            if (i + 1 < a->size)
                x[i + 1] = u53(w[2], w[3]);
        }
    } else {
        float *x = a->data;
        for (int64_t i = 0; i < a->size; i += 4) {
            block(key, (uint64_t)i / 4, DOM_UNIFORM, w);
            for (int j = 0; j < 4 && i + j < a->size; j++)
                x[i + j] = (float)(w[j] >> 8) * 0x1p-24f;
        }
    }
    return a;
}

/* Box–Muller: for independent u1, u2 uniform on (0, 1], r = sqrt(-2 ln u1)
 * and theta = 2 pi u2 give the independent normals r cos theta, r sin theta.
 * 1 - u53 lies in (0, 1], so the logarithm is finite. */
dl_array *dl_normal(dl_key key, int32_t dtype, int32_t rank, const int64_t *shape)
{
    check_float_dtype("normal", dtype);
    dl_array *a = dl_array_new(dtype, rank, shape);
    uint32_t w[4];
    for (int64_t i = 0; i < a->size; i += 2) {
        block(key, (uint64_t)i / 2, DOM_NORMAL, w);
        double u1 = 1.0 - u53(w[0], w[1]), u2 = u53(w[2], w[3]);
        double r = sqrt(-2.0 * log(u1)), t = 2.0 * M_PI * u2;
        double z0 = r * cos(t), z1 = r * sin(t);
        if (dtype == DL_F64) {
            double *x = a->data;
            x[i] = z0;
            if (i + 1 < a->size)
                x[i + 1] = z1;
        } else {
            float *x = a->data;
            x[i] = (float)z0;
            if (i + 1 < a->size)
                x[i + 1] = (float)z1;
        }
    }
    return a;
}

/* A stream of 64-bit words: word j is (w[2m+1] << 32 | w[2m]) of block j/2,
 * m = j mod 2. */
typedef struct WordStream {
    dl_key key;
    uint64_t next_block;
    uint32_t w[4];
    int pos;   /* words of w already used: 0, 2 or 4 */
} WordStream;

static uint64_t next_word(WordStream *s)
{
    if (s->pos == 4) {
        block(s->key, s->next_block++, DOM_PERMUTE, s->w);
        s->pos = 0;
    }
    uint64_t x = (uint64_t)s->w[s->pos + 1] << 32 | s->w[s->pos];
    s->pos += 2;
    return x;
}

/* Uniform on 0..m-1 without bias: 2^64 mod m = (-m) mod m words at the bottom
 * are rejected, leaving a multiple of m values, each residue equally often. */
static uint64_t bounded(WordStream *s, uint64_t m)
{
    uint64_t threshold = (0 - m) % m;
    for (;;) {
        uint64_t x = next_word(s);
        if (x >= threshold)
            return x % m;
    }
}

/* Fisher–Yates, Durstenfeld's form: for i from n-1 down to 1 swap a[i] with
 * a[j], j uniform on 0..i. */
dl_array *dl_random_permutation(dl_key key, int64_t n)
{
    if (n < 0)
        dl_error(NULL, "random_permutation: negative length %lld", (long long)n);
    dl_array *a = dl_array_new(DL_I64, 1, &n);
    int64_t *p = a->data;
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    WordStream s = { key, 0, { 0 }, 4 };
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)bounded(&s, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return a;
}
