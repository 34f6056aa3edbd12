/* Fused max-pool 2x2 -> BatchNorm (batch statistics) -> GELU/ReLU, forward and backward,
 * for channels-last (NHWC) bfloat16 or float32 tensors. See models/fused.py for why.
 *
 * Plain C (no PyTorch headers), so it compiles in about a second; OpenMP threads come from
 * the libgomp that PyTorch already loaded (same soname), so the two share one thread pool.
 * Every pass streams its tensors once, with the channel as the innermost, vectorized loop.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t bf16;

/* row helpers stay functions of their own: inlined into the OpenMP loops, they lose the
 * restrict qualifiers that let the compiler vectorize them */
#define NOINLINE __attribute__((noinline))

typedef union { uint32_t u; float f; } bits32;

static inline float bf16_load(bf16 v) {
    bits32 b;
    b.u = (uint32_t)v << 16;
    return b.f;
}

static inline bf16 bf16_store(float f) {  /* round to nearest even; NaN stays NaN */
    bits32 b;
    b.f = f;
    uint32_t r = (b.u + 0x7FFFu + ((b.u >> 16) & 1u)) >> 16;
    return (bf16)(((b.u & 0x7FFFFFFFu) > 0x7F800000u) ? 0x7FC0u : r);
}

static inline float f32_load(float v) { return v; }
static inline float f32_store(float f) { return f; }

/* exp(x) for x <= 0 as 2^n * p(f), n the nearest integer to x / ln 2 (the 1.5 * 2^23 trick:
 * libm's expf and floorf do not vectorize), f in [-ln2/2, ln2/2]; relative error ~2e-7, far
 * below bf16's 4e-3. */
static inline float exp_neg(float x) {
    x = x < -87.0f ? -87.0f : x;
    float t = x * 1.44269504f;                      /* x / ln 2 */
    float n = (t + 12582912.0f) - 12582912.0f;      /* round to nearest */
    float f = (t - n) * 0.69314718f;
    float p = 1.0f + f * (1.0f + f * (0.5f + f * (0.16666667f + f * (0.041666668f
              + f * (0.0083333338f + f * 0.0013888889f)))));
    bits32 b;
    b.u = (uint32_t)((int32_t)n + 127) << 23;
    return p * b.f;
}

/* GELU: 0.5 z (1 + erf(z / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7);
 * its derivative Phi(z) + z phi(z) shares exp(-z^2/2) with it. */
typedef struct { float cdf, e; } gelu_terms;  /* Phi(z) and exp(-z^2/2) */

static inline gelu_terms gelu_terms_of(float z) {
    float a = fabsf(z) * 0.70710678f;
    float e = exp_neg(-a * a);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f
                 + t * (-1.453152027f + t * 1.061405429f))));
    float erf_a = 1.0f - poly * e;
    gelu_terms g = {0.5f * (1.0f + (z < 0.0f ? -erf_a : erf_a)), e};
    return g;
}

/* act(z) and act'(z): GELU, or ReLU when relu != 0 */
static inline float act_fwd(float z, int relu) {
    if (relu) return z > 0.0f ? z : 0.0f;
    return z * gelu_terms_of(z).cdf;
}

static inline float act_grad(float z, int relu) {
    if (relu) return z > 0.0f ? 1.0f : 0.0f;
    gelu_terms g = gelu_terms_of(z);
    return g.cdf + z * g.e * 0.39894228f;
}

/* Sum the threads' partial channel sums in thread order: with a static schedule every run
 * adds the same numbers in the same order, so training is bit-for-bit repeatable. */
static void sum_parts(double *parts, int nparts, double *stats, int C) {
    for (int c = 0; c < 2 * C; c++) {
        double t = 0.0;
        for (int k = 0; k < nparts; k++) t += parts[(size_t)k * 2 * C + c];
        stats[c] = t;
    }
    free(parts);
}

/* One unit of work (a row or a block of pixels) of a pass that also sums per channel: it adds
 * its pixels' values into rs[0..2C), zeroed before each unit. */
typedef void (*unit_fn)(const void *ctx, long unit, float *rs);

/* Run fn over units 0..units-1 on the OpenMP threads (static schedule), summing each unit's
 * float sums into a per-thread double accumulator, then the threads' sums into stats[0..2C)
 * in thread order. If memory runs out the sums are NaN, which the training loop reports. */
static void channel_sums(unit_fn fn, const void *ctx, long units, int C, double *stats) {
    int nparts = omp_get_max_threads();
    double *parts = calloc((size_t)nparts * 2 * C, sizeof(double));
    if (!parts) {
        for (int c = 0; c < 2 * C; c++) stats[c] = NAN;
        return;
    }
#pragma omp parallel
    {
        double *acc = calloc(2 * (size_t)C, sizeof(double));
        float *rs = malloc(2 * (size_t)C * sizeof(float));
        if (acc && rs) {
#pragma omp for schedule(static)
            for (long u = 0; u < units; u++) {
                memset(rs, 0, 2 * (size_t)C * sizeof(float));
                fn(ctx, u, rs);
                for (int c = 0; c < 2 * C; c++) acc[c] += rs[c];
            }
            memcpy(parts + (size_t)omp_get_thread_num() * 2 * C, acc, 2 * (size_t)C * sizeof(double));
        } else {
            for (int c = 0; c < 2 * C; c++) parts[(size_t)omp_get_thread_num() * 2 * C + c] = NAN;
        }
        free(acc);
        free(rs);
    }
    sum_parts(parts, nparts, stats, C);
}

/* The kernels for one element type T (bf16 or float), as a macro so both share one text.
 * Row helpers take restrict pointers and loop over the channels, which is what lets the
 * compiler vectorize them; the outer functions spread rows over OpenMP threads. */
#define DEFINE_KERNELS(SUF, T, LOAD, STORE)                                                  \
                                                                                             \
/* one output pixel of the pool: max of the 2x2 window a b / c d, its argmax, the sums */   \
NOINLINE static void pool_px_##SUF(const T *restrict a, const T *restrict b, const T *restrict c2,    \
                          const T *restrict d, T *restrict po, uint8_t *restrict io,         \
                          float *restrict s, float *restrict q, int C) {                     \
    for (int c = 0; c < C; c++) {                                                            \
        float va = LOAD(a[c]), vb = LOAD(b[c]), vc = LOAD(c2[c]), vd = LOAD(d[c]);           \
        float m = va; uint8_t k = 0;                                                         \
        if (vb > m || vb != vb) { m = vb; k = 1; }                                           \
        if (vc > m || vc != vc) { m = vc; k = 2; }                                           \
        if (vd > m || vd != vd) { m = vd; k = 3; }                                           \
        T mt = STORE(m);                                                                     \
        po[c] = mt; io[c] = k;                                                               \
        float mf = LOAD(mt);                                                                 \
        s[c] += mf; q[c] += mf * mf;                                                         \
    }                                                                                        \
}                                                                                            \
                                                                                             \
NOINLINE static void sums_px_##SUF(const T *restrict a, float *restrict s, float *restrict q, int C) { \
    for (int c = 0; c < C; c++) { float v = LOAD(a[c]); s[c] += v; q[c] += v * v; }         \
}                                                                                            \
                                                                                             \
NOINLINE static void act_px_##SUF(const T *restrict p, T *restrict y, const float *restrict scale,    \
                         const float *restrict shift, int C, int relu) {                     \
    if (relu) {                                                                              \
        for (int c = 0; c < C; c++) y[c] = STORE(act_fwd(LOAD(p[c]) * scale[c] + shift[c], 1)); \
    } else {                                                                                 \
        for (int c = 0; c < C; c++) y[c] = STORE(act_fwd(LOAD(p[c]) * scale[c] + shift[c], 0)); \
    }                                                                                        \
}                                                                                            \
                                                                                             \
NOINLINE static void grad_px_##SUF(const T *restrict dy, const T *restrict p, T *restrict dz,         \
                          const float *restrict scale, const float *restrict shift,          \
                          float *restrict s, float *restrict q, int C, int relu) {           \
    if (relu) {                                                                              \
        for (int c = 0; c < C; c++) {                                                        \
            float pv = LOAD(p[c]);                                                           \
            T g = STORE(LOAD(dy[c]) * act_grad(pv * scale[c] + shift[c], 1));                \
            float gf = LOAD(g);                                                              \
            dz[c] = g; s[c] += gf; q[c] += gf * pv;                                          \
        }                                                                                    \
    } else {                                                                                 \
        for (int c = 0; c < C; c++) {                                                        \
            float pv = LOAD(p[c]);                                                           \
            T g = STORE(LOAD(dy[c]) * act_grad(pv * scale[c] + shift[c], 0));                \
            float gf = LOAD(g);                                                              \
            dz[c] = g; s[c] += gf; q[c] += gf * pv;                                          \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
NOINLINE static void bnback_px_##SUF(const T *restrict dz, const T *restrict p, T *restrict dx,       \
                            const float *restrict k1, const float *restrict k2,              \
                            const float *restrict k3, int C) {                               \
    for (int c = 0; c < C; c++) dx[c] = STORE(k1[c] * LOAD(dz[c]) + k2[c] * LOAD(p[c]) + k3[c]); \
}                                                                                            \
                                                                                             \
NOINLINE static void unpool_px_##SUF(const T *restrict dz, const T *restrict p,                      \
                            const uint8_t *restrict idx, T *restrict left, T *restrict right, \
                            const float *restrict k1, const float *restrict k2,              \
                            const float *restrict k3, int C, int dr) {                       \
    for (int c = 0; c < C; c++) {                                                            \
        float g = k1[c] * LOAD(dz[c]) + k2[c] * LOAD(p[c]) + k3[c];                          \
        int k = idx[c] - dr;                                                                 \
        left[c] = STORE(k == 0 ? g : 0.0f);                                                  \
        right[c] = STORE(k == 1 ? g : 0.0f);                                                 \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* inference: one output pixel of act(maxpool2(x) * scale + shift), nothing kept */         \
NOINLINE static void evalpool_px_##SUF(const T *restrict a, const T *restrict b,             \
                              const T *restrict c2, const T *restrict d, T *restrict y,      \
                              const float *restrict scale, const float *restrict shift,      \
                              int C, int relu) {                                             \
    for (int c = 0; c < C; c++) {                                                            \
        float m = LOAD(a[c]), vb = LOAD(b[c]), vc = LOAD(c2[c]), vd = LOAD(d[c]);            \
        if (vb > m || vb != vb) m = vb;                                                      \
        if (vc > m || vc != vc) m = vc;                                                      \
        if (vd > m || vd != vd) m = vd;                                                      \
        y[c] = STORE(act_fwd(m * scale[c] + shift[c], relu));                                \
    }                                                                                        \
}                                                                                            \
                                                                                             \
typedef struct { const T *x; T *p; uint8_t *idx; int H, W, C, Ho, Wo, pool; } pool_ctx_##SUF; \
                                                                                             \
static void pool_row_##SUF(const void *vc, long r, float *rs) {                              \
    const pool_ctx_##SUF *k = vc;                                                            \
    long n = r / k->Ho, i = r % k->Ho, C = k->C, W = k->W;                                   \
    for (int j = 0; j < k->Wo; j++) {                                                        \
        long o = (r * k->Wo + j) * C;                                                        \
        if (k->pool) {                                                                       \
            const T *a = k->x + (((n * k->H + 2 * i) * W) + 2 * j) * C;                      \
            pool_px_##SUF(a, a + C, a + W * C, a + W * C + C, k->p + o, k->idx + o, rs,      \
                          rs + C, (int)C);                                                   \
        } else {                                                                             \
            sums_px_##SUF(k->x + o, rs, rs + C, (int)C);                                     \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Pass 1: p = maxpool2(x) (floor mode; argmax 0..3 into idx) if pool, else p = x; sums of  \
 * p and p^2 per channel into stats[0..2C) (float per row of pixels, double across rows). */ \
void pool_stats_##SUF(const T *x, T *p, uint8_t *idx, double *stats, int N, int H, int W,   \
                      int C, int pool) {                                                     \
    pool_ctx_##SUF k = {x, p, idx, H, W, C, pool ? H / 2 : H, pool ? W / 2 : W, pool};      \
    channel_sums(pool_row_##SUF, &k, (long)N * k.Ho, C, stats);                              \
}                                                                                            \
                                                                                             \
/* Pass 2: y = act(p * scale + shift), M pixels. */                                         \
void bn_act_fwd_##SUF(const T *p, T *y, const float *scale, const float *shift, long M,      \
                      int C, int relu) {                                                     \
    _Pragma("omp parallel for schedule(static)")                                             \
    for (long m = 0; m < M; m++) act_px_##SUF(p + m * C, y + m * C, scale, shift, C, relu);  \
}                                                                                            \
                                                                                             \
/* Inference (BatchNorm with its running statistics folded into scale and shift): y =      \
 * act(maxpool2(x) * scale + shift) in one pass if pool, else pass 2 alone. */              \
void pool_act_eval_##SUF(const T *x, T *y, const float *scale, const float *shift, int N,    \
                         int H, int W, int C, int pool, int relu) {                          \
    if (!pool) {                                                                             \
        bn_act_fwd_##SUF(x, y, scale, shift, (long)N * H * W, C, relu);                      \
        return;                                                                              \
    }                                                                                        \
    int Ho = H / 2, Wo = W / 2;                                                              \
    _Pragma("omp parallel for schedule(static)")                                             \
    for (long r = 0; r < (long)N * Ho; r++) {                                                \
        long n = r / Ho, i = r % Ho;                                                         \
        for (int j = 0; j < Wo; j++) {                                                       \
            const T *a = x + (((n * H + 2 * i) * W) + 2 * j) * (long)C;                      \
            T *o = y + (r * Wo + j) * (long)C;                                               \
            if (relu)                                                                        \
                evalpool_px_##SUF(a, a + C, a + (long)W * C, a + (long)W * C + C, o, scale,  \
                                  shift, C, 1);                                              \
            else                                                                             \
                evalpool_px_##SUF(a, a + C, a + (long)W * C, a + (long)W * C + C, o, scale,  \
                                  shift, C, 0);                                              \
        }                                                                                    \
    }                                                                                        \
}                                                                                            \
                                                                                             \
typedef struct { const T *dy, *p; T *dz; const float *scale, *shift; long M; int C, relu; }   \
    grad_ctx_##SUF;                                                                          \
                                                                                             \
static void grad_block_##SUF(const void *vc, long blk, float *rs) {                          \
    const grad_ctx_##SUF *k = vc;                                                            \
    long C = k->C, end = (blk + 1) * 16 < k->M ? (blk + 1) * 16 : k->M;                      \
    for (long m = blk * 16; m < end; m++)                                                    \
        grad_px_##SUF(k->dy + m * C, k->p + m * C, k->dz + m * C, k->scale, k->shift, rs,    \
                      rs + C, (int)C, k->relu);                                              \
}                                                                                            \
                                                                                             \
/* Backward pass 1: dz = dy * act'(p * scale + shift) (rounded to T, as an unfused          \
 * backward would store it); sums of dz and dz * p per channel into stats[0..2C), over      \
 * blocks of 16 pixels. */                                                                   \
void bn_act_bwd_stats_##SUF(const T *dy, const T *p, T *dz, const float *scale,              \
                            const float *shift, double *stats, long M, int C, int relu) {   \
    grad_ctx_##SUF k = {dy, p, dz, scale, shift, M, C, relu};                                \
    channel_sums(grad_block_##SUF, &k, (M + 15) / 16, C, stats);                             \
}                                                                                            \
                                                                                             \
/* Backward pass 2: dp = k1 dz + k2 p + k3 (BatchNorm's input gradient), written to dx at   \
 * the argmax of each 2x2 window (zeros elsewhere, and in a dropped odd last row/column)    \
 * if pool, else dx = dp. */                                                                 \
void bn_bwd_unpool_##SUF(const T *dz, const T *p, const uint8_t *idx, T *dx, const float *k1, \
                         const float *k2, const float *k3, int N, int H, int W, int C,       \
                         int pool) {                                                         \
    int Ho = pool ? H / 2 : H, Wo = pool ? W / 2 : W;                                       \
    long rows = (long)N * H;                                                                 \
    _Pragma("omp parallel for schedule(static)")                                             \
    for (long r = 0; r < rows; r++) {                                                        \
        long n = r / H, hi = r % H, i = hi / 2;                                              \
        T *out = dx + r * (long)W * C;                                                       \
        if (!pool) {                                                                         \
            for (long j = 0; j < W; j++)                                                     \
                bnback_px_##SUF(dz + (r * W + j) * C, p + (r * W + j) * C, out + j * C,      \
                                k1, k2, k3, C);                                              \
        } else if (i >= Ho) {                                                                \
            memset(out, 0, (size_t)W * C * sizeof(T));                                       \
        } else {                                                                             \
            for (int j = 0; j < Wo; j++) {                                                   \
                long o = ((n * Ho + i) * Wo + j) * (long)C;                                  \
                unpool_px_##SUF(dz + o, p + o, idx + o, out + 2L * j * C,                    \
                                out + (2L * j + 1) * C, k1, k2, k3, C, (int)(hi % 2) * 2);   \
            }                                                                                \
            if (W % 2) memset(out + (long)(W - 1) * C, 0, (size_t)C * sizeof(T));             \
        }                                                                                    \
    }                                                                                        \
}

DEFINE_KERNELS(bf16, bf16, bf16_load, bf16_store)
DEFINE_KERNELS(f32, float, f32_load, f32_store)

int fused_abi_version(void) { return 2; }
