/* f32 GEMMs of the training path. One register-tiled kernel, C (+)= A·B with
 * A [M][K], B [K][N] row-major; the transposed cases go through a packing
 * transpose. Every C element accumulates over k in increasing order, so the
 * result does not depend on the thread count. GNU vector extensions keep it
 * portable (AVX-512/AVX2/SSE/NEON as the compiler targets). */
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

typedef float v8 __attribute__((vector_size(64))); /* 16 lanes: one AVX-512 register, two AVX2 */

static inline v8 ld8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void st8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

#define MR 4  /* rows of C per micro-tile */
#define NR 32 /* columns of C per micro-tile (two vectors) */

/* C[i][j] = (acc ? C[i][j] : 0) + Σ_k A[i][k] B[k][j].
 * B is packed into 16-column panels [K][16] (zero-padded), so the inner loop
 * streams one contiguous panel that stays in L1 while A rows go by. */
void t_gemm_nn(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K, int acc) {
    const int64_t nt = (N + NR - 1) / NR, mt = (M + MR - 1) / MR;
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
        for (int64_t jt = 0; jt < nt; jt++) {
            const float *p = bp + jt * NR * K;
            int64_t j0 = jt * NR, nr = N - j0 < NR ? N - j0 : NR;
            for (int64_t it = 0; it < mt; it++) {
                int64_t i0 = it * MR, mr = M - i0 < MR ? M - i0 : MR;
                v8 c[MR][2] = {{{0}}};
                const float *a0 = A + i0 * K;
                if (mr == MR) {
                    for (int64_t k = 0; k < K; k++) {
                        v8 b0 = ld8(p + k * NR), b1 = ld8(p + k * NR + 16);
                        for (int r = 0; r < MR; r++) {
                            float a = a0[r * K + k];
                            c[r][0] += a * b0;
                            c[r][1] += a * b1;
                        }
                    }
                } else {
                    for (int64_t k = 0; k < K; k++) {
                        v8 b0 = ld8(p + k * NR), b1 = ld8(p + k * NR + 16);
                        for (int r = 0; r < mr; r++) {
                            float a = a0[r * K + k];
                            c[r][0] += a * b0;
                            c[r][1] += a * b1;
                        }
                    }
                }
                for (int64_t r = 0; r < mr; r++) {
                    float out[NR];
                    st8(out, c[r][0]);
                    st8(out + 16, c[r][1]);
                    float *crow = C + (i0 + r) * N + j0;
                    for (int64_t j = 0; j < nr; j++) crow[j] = acc ? crow[j] + out[j] : out[j];
                }
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
