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

/* B^T (6 x 6) and A^T (4 x 6) of Lavin & Gray (2016) for the points 0, +-1, +-2 and infinity */
static const float BT[6][6] = {
    {4, 0, -5, 0, 1, 0},
    {0, -4, -4, 1, 1, 0},
    {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0},
    {0, 2, -1, -2, 1, 0},
    {0, 4, 0, -5, 0, 1}};
static const float AT[4][6] = {
    {1, 1, 1, 1, 1, 0},
    {0, 1, -1, 2, -2, 0},
    {0, 1, 1, 4, 4, 0},
    {0, 1, -1, 8, -8, 1}};

typedef struct { int n, ty, tx; } tile_pos;

static inline tile_pos tile_of(long p, int th, int tw) {
    tile_pos t;
    t.n = (int)(p / ((long)th * tw));
    int r = (int)(p % ((long)th * tw));
    t.ty = r / tw;
    t.tx = r % tw;
    return t;
}

/* V = B^T d B for every 6 x 6 input tile d: x (N, H, W, C) -> V (36, P, C) */
void wino_input_fwd(const float *x, float *V, int N, int H, int W, int C) {
    int th = (H + 3) / 4, tw = (W + 3) / 4;
    long P = (long)N * th * tw;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < P; p++) {
        tile_pos tp = tile_of(p, th, tw);
        int y0 = 4 * tp.ty - 1, x0 = 4 * tp.tx - 1;
        float d[6][6][CB], t[6][6][CB];
        for (int c0 = 0; c0 < C; c0 += CB) {
            int cb = C - c0 < CB ? C - c0 : CB;
            memset(d, 0, sizeof d);
            for (int i = 0; i < 6; i++) {
                int iy = y0 + i;
                if (iy < 0 || iy >= H) continue;
                for (int j = 0; j < 6; j++) {
                    int ix = x0 + j;
                    if (ix < 0 || ix >= W) continue;
                    memcpy(d[i][j], x + (((long)tp.n * H + iy) * W + ix) * C + c0,
                           cb * sizeof(float));
                }
            }
            for (int a = 0; a < 6; a++)
                for (int j = 0; j < 6; j++)
                    for (int c = 0; c < CB; c++) {
                        float s = 0.0f;
                        for (int i = 0; i < 6; i++) s += BT[a][i] * d[i][j][c];
                        t[a][j][c] = s;
                    }
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++) {
                    float o[CB];
                    for (int c = 0; c < CB; c++) {
                        float s = 0.0f;
                        for (int j = 0; j < 6; j++) s += t[a][j][c] * BT[b][j];
                        o[c] = s;
                    }
                    memcpy(V + ((long)(a * 6 + b) * P + p) * C + c0, o, cb * sizeof(float));
                }
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
        float m[6][6][CB], t[4][6][CB];
        for (int k0 = 0; k0 < K; k0 += CB) {
            int kb = K - k0 < CB ? K - k0 : CB;
            if (kb < CB) memset(m, 0, sizeof m);
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++)
                    memcpy(m[a][b], M + ((long)(a * 6 + b) * P + p) * K + k0, kb * sizeof(float));
            for (int i = 0; i < 4; i++)
                for (int b = 0; b < 6; b++)
                    for (int c = 0; c < CB; c++) {
                        float s = 0.0f;
                        for (int a = 0; a < 6; a++) s += AT[i][a] * m[a][b][c];
                        t[i][b][c] = s;
                    }
            for (int i = 0; i < 4; i++) {
                int oy = 4 * tp.ty + i;
                if (oy >= H) break;
                for (int j = 0; j < 4; j++) {
                    int ox = 4 * tp.tx + j;
                    if (ox >= W) break;
                    float o[CB];
                    for (int c = 0; c < CB; c++) {
                        float s = 0.0f;
                        for (int b = 0; b < 6; b++) s += t[i][b][c] * AT[j][b];
                        o[c] = s;
                    }
                    memcpy(y + (((long)tp.n * H + oy) * W + ox) * K + k0, o, kb * sizeof(float));
                }
            }
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
        float g[4][4][CB], t[6][4][CB];
        for (int k0 = 0; k0 < K; k0 += CB) {
            int kb = K - k0 < CB ? K - k0 : CB;
            memset(g, 0, sizeof g);
            for (int i = 0; i < 4; i++) {
                int oy = 4 * tp.ty + i;
                if (oy >= H) break;
                for (int j = 0; j < 4; j++) {
                    int ox = 4 * tp.tx + j;
                    if (ox >= W) break;
                    memcpy(g[i][j], gy + (((long)tp.n * H + oy) * W + ox) * K + k0,
                           kb * sizeof(float));
                }
            }
            for (int a = 0; a < 6; a++)
                for (int j = 0; j < 4; j++)
                    for (int c = 0; c < CB; c++) {
                        float s = 0.0f;
                        for (int i = 0; i < 4; i++) s += AT[i][a] * g[i][j][c];
                        t[a][j][c] = s;
                    }
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++) {
                    float o[CB];
                    for (int c = 0; c < CB; c++) {
                        float s = 0.0f;
                        for (int j = 0; j < 4; j++) s += t[a][j][c] * AT[j][b];
                        o[c] = s;
                    }
                    memcpy(gM + ((long)(a * 6 + b) * P + p) * K + k0, o, kb * sizeof(float));
                }
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
        memset(gx + (long)n * H * W * C, 0, (size_t)H * W * C * sizeof(float));
        float g[6][6][CB], t[6][6][CB];
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++) {
                long p = ((long)n * th + ty) * tw + tx;
                int y0 = 4 * ty - 1, x0 = 4 * tx - 1;
                for (int c0 = 0; c0 < C; c0 += CB) {
                    int cb = C - c0 < CB ? C - c0 : CB;
                    if (cb < CB) memset(g, 0, sizeof g);
                    for (int a = 0; a < 6; a++)
                        for (int b = 0; b < 6; b++)
                            memcpy(g[a][b], gV + ((long)(a * 6 + b) * P + p) * C + c0,
                                   cb * sizeof(float));
                    for (int i = 0; i < 6; i++)
                        for (int b = 0; b < 6; b++)
                            for (int c = 0; c < CB; c++) {
                                float s = 0.0f;
                                for (int a = 0; a < 6; a++) s += BT[a][i] * g[a][b][c];
                                t[i][b][c] = s;
                            }
                    for (int i = 0; i < 6; i++) {
                        int iy = y0 + i;
                        if (iy < 0 || iy >= H) continue;
                        for (int j = 0; j < 6; j++) {
                            int ix = x0 + j;
                            if (ix < 0 || ix >= W) continue;
                            float *dst = gx + (((long)n * H + iy) * W + ix) * C + c0;
                            float o[CB];
                            for (int c = 0; c < CB; c++) {
                                float s = 0.0f;
                                for (int b = 0; b < 6; b++) s += t[i][b][c] * BT[b][j];
                                o[c] = s;
                            }
                            for (int c = 0; c < cb; c++) dst[c] += o[c];
                        }
                    }
                }
            }
    }
}

int winograd_abi_version(void) { return 1; }
