/* Winograd F(4x4, 3x3) tile transforms for channels-last (NHWC) float32 tensors.
 * See models/winograd.py for why and for the arithmetic; the GEMMs between them are PyTorch's.
 *
 * Layout: a map of H x W output pixels is cut into th x tw tiles of 4 x 4 outputs
 * (th = ceil(H / 4)); tile p = (n * th + ty) * tw + tx reads the 6 x 6 input window whose
 * top-left pixel is (4 ty - 1, 4 tx - 1) (padding 1: pixels outside the map are zero) and
 * writes outputs (4 ty .. 4 ty + 3, 4 tx .. 4 tx + 3) that lie inside the map.
 * The transformed tiles are stored as 36 matrices of P x C (P tiles, C channels), so each of
 * the 36 Winograd points is one GEMM against a C x K matrix of transformed filters.
 *
 * Plain C like fused_kernels.c; every loop over channels works on a block of CB floats, which
 * the compiler keeps in vector registers. Forward passes spread tiles over the OpenMP
 * threads; the input-gradient pass (tiles overlap by 2 pixels, so it accumulates) spreads
 * whole images, so no two threads ever write the same pixel.
 */
#include <omp.h>
#include <string.h>

#define CB 16

/* B^T (6 x 6) and A^T (4 x 6) of Lavin & Gray (2016) for the points 0, +-1, +-2 and infinity,
 * and their transposes B and A, which the backward passes apply */
static const float BT[6][6] = {
    {4, 0, -5, 0, 1, 0},
    {0, -4, -4, 1, 1, 0},
    {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0},
    {0, 2, -1, -2, 1, 0},
    {0, 4, 0, -5, 0, 1}};
static const float B[6][6] = {
    {4, 0, 0, 0, 0, 0},
    {0, -4, 4, -2, 2, 4},
    {-5, -4, -4, -1, -1, 0},
    {0, 1, -1, 2, -2, -5},
    {1, 1, 1, 1, 1, 0},
    {0, 0, 0, 0, 0, 1}};
static const float AT[4][6] = {
    {1, 1, 1, 1, 1, 0},
    {0, 1, -1, 2, -2, 0},
    {0, 1, 1, 4, 4, 0},
    {0, 1, -1, 8, -8, 1}};
static const float A[6][4] = {
    {1, 0, 0, 0},
    {1, 1, 1, 1},
    {1, -1, 1, -1},
    {1, 2, 4, 8},
    {1, -2, 4, -8},
    {0, 0, 0, 1}};

typedef float tile[6][6][CB];  /* up to 6 x 6 points, each a block of CB channels */

/* out = L in R^T for one tile, channel by channel: out[r][s] = sum_p,q L[r][p] in[p][q] R[s][q]
 * (L is m x n, R is m x n, in is n x n, out m x m). Inlined with constant matrices and sizes,
 * the compiler unrolls it and drops the zero coefficients. */
static inline __attribute__((always_inline)) void transform(const float *L, const float *R,
                                                            int m, int n, tile in, tile out) {
    float t[6][6][CB];
    for (int r = 0; r < m; r++)
        for (int q = 0; q < n; q++)
            for (int c = 0; c < CB; c++) {
                float s = 0.0f;
                for (int p = 0; p < n; p++) s += L[r * n + p] * in[p][q][c];
                t[r][q][c] = s;
            }
    for (int r = 0; r < m; r++)
        for (int s2 = 0; s2 < m; s2++)
            for (int c = 0; c < CB; c++) {
                float s = 0.0f;
                for (int q = 0; q < n; q++) s += t[r][q][c] * R[s2 * n + q];
                out[r][s2][c] = s;
            }
}

typedef struct { int n, ty, tx; } tile_pos;

static inline tile_pos tile_of(long p, int th, int tw) {
    tile_pos t;
    t.n = (int)(p / ((long)th * tw));
    int r = (int)(p % ((long)th * tw));
    t.ty = r / tw;
    t.tx = r % tw;
    return t;
}

/* a map's pixel block (NHWC) <-> a tile's points; rows/columns outside the map read as zero
 * and are not written; (y0, x0) is the tile's top-left pixel, size x size its extent */
static inline void load_tile(const float *img, int H, int W, int C, int c0, int cb, int y0,
                             int x0, int size, tile d) {
    memset(d, 0, sizeof(tile));
    for (int i = 0; i < size; i++) {
        int iy = y0 + i;
        if (iy < 0 || iy >= H) continue;
        for (int j = 0; j < size; j++) {
            int ix = x0 + j;
            if (ix < 0 || ix >= W) continue;
            memcpy(d[i][j], img + ((long)iy * W + ix) * C + c0, cb * sizeof(float));
        }
    }
}

/* the 36 points of tile p from (36, P, K) matrices, or back into them */
static inline void load_points(const float *M, long P, long p, int K, int k0, int kb, tile m) {
    if (kb < CB) memset(m, 0, sizeof(tile));
    for (int a = 0; a < 36; a++)
        memcpy(m[a / 6][a % 6], M + ((long)a * P + p) * K + k0, kb * sizeof(float));
}

static inline void store_points(float *M, long P, long p, int K, int k0, int kb, tile m) {
    for (int a = 0; a < 36; a++)
        memcpy(M + ((long)a * P + p) * K + k0, m[a / 6][a % 6], kb * sizeof(float));
}

/* V = B^T d B for every 6 x 6 input tile d: x (N, H, W, C) -> V (36, P, C) */
void wino_input_fwd(const float *x, float *V, int N, int H, int W, int C) {
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    long P = (long)N * th * tw;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < P; p++) {
        tile_pos tp = tile_of(p, th, tw);
        tile d, v;
        for (int c0 = 0; c0 < C; c0 += CB) {
            int cb = C - c0 < CB ? C - c0 : CB;
            load_tile(x + (long)tp.n * H * W * C, H, W, C, c0, cb, 4 * tp.ty - 1, 4 * tp.tx - 1,
                      6, d);
            transform(&BT[0][0], &BT[0][0], 6, 6, d, v);
            store_points(V, P, p, C, c0, cb, v);
        }
    }
}

/* y = A^T m A for every tile m of the 36 GEMM outputs: M (36, P, K) -> y (N, H, W, K) */
void wino_output_fwd(const float *M, float *y, int N, int H, int W, int K) {
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    long P = (long)N * th * tw;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < P; p++) {
        tile_pos tp = tile_of(p, th, tw);
        tile m, o;
        for (int k0 = 0; k0 < K; k0 += CB) {
            int kb = K - k0 < CB ? K - k0 : CB;
            load_points(M, P, p, K, k0, kb, m);
            transform(&AT[0][0], &AT[0][0], 4, 6, m, o);
            for (int i = 0; i < 4 && 4 * tp.ty + i < H; i++)
                for (int j = 0; j < 4 && 4 * tp.tx + j < W; j++)
                    memcpy(y + (((long)tp.n * H + 4 * tp.ty + i) * W + 4 * tp.tx + j) * K + k0,
                           o[i][j], kb * sizeof(float));
        }
    }
}

/* The transpose of wino_output_fwd: gM = A g A^T for every 4 x 4 tile g of the output
 * gradient (zero outside the map): gy (N, H, W, K) -> gM (36, P, K) */
void wino_output_bwd(const float *gy, float *gM, int N, int H, int W, int K) {
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    long P = (long)N * th * tw;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < P; p++) {
        tile_pos tp = tile_of(p, th, tw);
        tile g, m;
        for (int k0 = 0; k0 < K; k0 += CB) {
            int kb = K - k0 < CB ? K - k0 : CB;
            load_tile(gy + (long)tp.n * H * W * K, H, W, K, k0, kb, 4 * tp.ty, 4 * tp.tx, 4, g);
            transform(&A[0][0], &A[0][0], 6, 4, g, m);
            store_points(gM, P, p, K, k0, kb, m);
        }
    }
}

/* The transpose of wino_input_fwd: every tile's B g B^T added into the 6 x 6 window it came
 * from (pixels outside the map dropped): gV (36, P, C) -> gx (N, H, W, C), overwritten */
void wino_input_bwd(const float *gV, float *gx, int N, int H, int W, int C) {
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    long P = (long)N * th * tw;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *img = gx + (long)n * H * W * C;
        memset(img, 0, (size_t)H * W * C * sizeof(float));
        tile g, d;
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++) {
                long p = ((long)n * th + ty) * tw + tx;
                int y0 = 4 * ty - 1, x0 = 4 * tx - 1;
                for (int c0 = 0; c0 < C; c0 += CB) {
                    int cb = C - c0 < CB ? C - c0 : CB;
                    load_points(gV, P, p, C, c0, cb, g);
                    transform(&B[0][0], &B[0][0], 6, 6, g, d);
                    for (int i = 0; i < 6; i++) {
                        if (y0 + i < 0 || y0 + i >= H) continue;
                        for (int j = 0; j < 6; j++) {
                            if (x0 + j < 0 || x0 + j >= W) continue;
                            float *dst = img + ((long)(y0 + i) * W + x0 + j) * C + c0;
                            for (int c = 0; c < cb; c++) dst[c] += d[i][j][c];
                        }
                    }
                }
            }
    }
}

int winograd_abi_version(void) { return 2; }
