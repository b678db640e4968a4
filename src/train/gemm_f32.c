/* f32 GEMMs of the training path. One register-tiled kernel, C (+)= A·B with
 * A [M][K], B [K][N] row-major; the transposed cases go through a packing
 * transpose. Every C element accumulates over k in increasing order, so the
 * result does not depend on the thread count. GNU vector extensions keep it
 * portable (AVX-512/AVX2/SSE/NEON as the compiler targets). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

/* One vector: an AVX-512 register where the compiler targets it, else 8 lanes (one AVX2 register). The
 * micro-tile MR x NR of C keeps its MR * NV accumulators, NV vectors of B and the broadcast A element in
 * registers: 4 x 2 zmm (11 of 32), 6 x 2 ymm (15 of 16). A 16-lane type on AVX2 took two registers per
 * vector, 21 of 16: the accumulators spilled (training at ~2% of the FMA peak). */
#if defined(__AVX512F__)
#define VL 16
#define MR 4
#else
#define VL 8
#define MR 6
#endif
#define NV 2         /* vectors of C columns per micro-tile */
#define NR (VL * NV) /* columns of C per micro-tile: one packed panel of B */
#define MC 48        /* rows of A per block (MC x K floats stay in L2 while the panels of B go by) */
typedef float vf __attribute__((vector_size(VL * 4)));

static inline vf ldv(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void stv(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* c[r] += A row r . panel p over k ascending, r < mr (inlined with mr = MR: the full tile unrolled) */
static inline __attribute__((always_inline)) void tile_sums(vf c[MR][NV], const int mr, const float *a0, const float *p,
                                                            int64_t K) {
    for (int64_t k = 0; k < K; k++) {
        vf b[NV];
        for (int v = 0; v < NV; v++) b[v] = ldv(p + k * NR + v * VL);
        for (int r = 0; r < mr; r++) {
            const float a = a0[r * K + k];
            for (int v = 0; v < NV; v++) c[r][v] += a * b[v];
        }
    }
}

/* Rows [i0, i0 + mr) x panel p (columns j0.., nr of them) of C: each element one chain over k ascending. */
static inline void micro_tile(float *C, const float *A, const float *p, int64_t N, int64_t K, int64_t i0, int mr,
                              int64_t j0, int64_t nr, int acc) {
    vf c[MR][NV];
    memset(c, 0, sizeof c);
    if (mr == MR) tile_sums(c, MR, A + i0 * K, p, K);
    else tile_sums(c, mr, A + i0 * K, p, K);
    for (int r = 0; r < mr; r++) {
        float out[NR];
        for (int v = 0; v < NV; v++) stv(out + v * VL, c[r][v]);
        float *crow = C + (i0 + r) * N + j0;
        for (int64_t j = 0; j < nr; j++) crow[j] = acc ? crow[j] + out[j] : out[j];
    }
}

/* C[i][j] = (acc ? C[i][j] : 0) + Σ_k A[i][k] B[k][j].
 * B is packed into NR-column panels [K][NR] (zero-padded). With enough rows, the threads take blocks of
 * MC rows of A and run every panel over their block (A read from memory once, each panel reused by the
 * block's micro-tiles while in L2); with few rows, they take panels and run every row over them. A C
 * element's arithmetic is the same either way. */
void t_gemm_nn(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K, int acc) {
    const int64_t nt = (N + NR - 1) / NR, nib = (M + MC - 1) / MC;
    float *bp = malloc(sizeof(float) * nt * NR * K);
    if (!bp) { /* no memory for packing: plain loops, same k order */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float s = acc ? C[i * N + j] : 0.0f;
                for (int64_t k = 0; k < K; k++) s += A[i * K + k] * B[k * N + j];
                C[i * N + j] = s;
            }
        return;
    }
    const int by_rows = nib >= 2 * omp_get_max_threads();
#pragma omp parallel if (M * N * K > DSV3_OMP_MIN_WORK)
    {
#pragma omp for schedule(static)
        for (int64_t jt = 0; jt < nt; jt++) {
            float *p = bp + jt * NR * K;
            int64_t j0 = jt * NR, nr = N - j0 < NR ? N - j0 : NR;
            for (int64_t k = 0; k < K; k++)
                for (int64_t j = 0; j < NR; j++) p[k * NR + j] = j < nr ? B[k * N + j0 + j] : 0.0f;
        }
#pragma omp for schedule(static)
        for (int64_t w = 0; w < (by_rows ? nib : nt); w++) {
            const int64_t i_lo = by_rows ? w * MC : 0, i_hi = by_rows && (w + 1) * MC < M ? (w + 1) * MC : M;
            for (int64_t jt = by_rows ? 0 : w; jt < (by_rows ? nt : w + 1); jt++) {
                const int64_t j0 = jt * NR, nr = N - j0 < NR ? N - j0 : NR;
                for (int64_t i0 = i_lo; i0 < i_hi; i0 += MR)
                    micro_tile(C, A, bp + jt * NR * K, N, K, i0, i_hi - i0 < MR ? (int)(i_hi - i0) : MR, j0, nr, acc);
            }
        }
    }
    free(bp);
}

/* dst[c][r] = src[r][c] for src [R][Cn] */
static void transpose(float *dst, const float *src, int64_t R, int64_t Cn) {
    const int64_t bs = 32;
    for (int64_t r0 = 0; r0 < R; r0 += bs)
        for (int64_t c0 = 0; c0 < Cn; c0 += bs)
            for (int64_t r = r0; r < r0 + bs && r < R; r++)
                for (int64_t c = c0; c < c0 + bs && c < Cn; c++) dst[c * R + r] = src[r * Cn + c];
}

/* C[M][N] = A[M][K] · B[N][K]ᵀ  (B transposed once into scratch) */
int t_gemm_nt(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K) {
    float *bt = malloc(sizeof(float) * N * K);
    if (!bt) return -1;
    transpose(bt, B, N, K);
    t_gemm_nn(C, A, bt, M, N, K, 0);
    free(bt);
    return 0;
}

/* C[M][N] += A[K][M]ᵀ · B[K][N]  (A transposed once into scratch) */
int t_gemm_tn_acc(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K) {
    float *at = malloc(sizeof(float) * M * K);
    if (!at) return -1;
    transpose(at, A, K, M);
    t_gemm_nn(C, at, B, M, N, K, 1);
    free(at);
    return 0;
}
