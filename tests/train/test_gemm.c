/* Tiled f32 GEMMs of the training path vs a scalar double reference, and
 * identical results for 1 and 2 threads. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "train/train_internal.h"

static float rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f - 0.5f;
}

TEST(train_gemm_vs_reference) {
    const int64_t sizes[][3] = {{1, 1, 1}, {5, 17, 3}, {4, 16, 64}, {33, 70, 129}, {64, 48, 256}};
    uint64_t s = 9;
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        int64_t M = sizes[z][0], N = sizes[z][1], K = sizes[z][2];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *Bt = malloc(sizeof(float) * N * K),
              *At = malloc(sizeof(float) * K * M), *C = malloc(sizeof(float) * M * N), *C2 = malloc(sizeof(float) * M * N),
              *C3 = malloc(sizeof(float) * M * N);
        for (int64_t i = 0; i < M * K; i++) A[i] = rnd(&s);
        for (int64_t i = 0; i < K * N; i++) B[i] = rnd(&s);
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < N; j++) Bt[j * K + k] = B[k * N + j];
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) At[k * M + i] = A[i * K + k];
        t_gemm_nn(C, A, B, M, N, K, 0);
        CHECK(t_gemm_nt(C2, A, Bt, M, N, K) == 0);
        for (int64_t i = 0; i < M * N; i++) C3[i] = 1.0f;
        CHECK(t_gemm_tn_acc(C3, At, B, M, N, K) == 0);
        for (int64_t i = 0; i < M && !test_failed_now(); i++)
            for (int64_t j = 0; j < N; j++) {
                double ref = 0;
                for (int64_t k = 0; k < K; k++) ref += (double)A[i * K + k] * B[k * N + j];
                CHECK_NEAR(C[i * N + j], ref, 1e-5 * (1 + K));
                CHECK(C2[i * N + j] == C[i * N + j]);
                CHECK_NEAR(C3[i * N + j], ref + 1.0, 1e-5 * (1 + K));
            }
        int nt = omp_get_max_threads();
        omp_set_num_threads(nt > 1 ? 1 : 2);
        t_gemm_nn(C2, A, B, M, N, K, 0);
        omp_set_num_threads(nt);
        CHECK_MSG(memcmp(C, C2, sizeof(float) * M * N) == 0, "GEMM differs with another thread count");
        free(A); free(B); free(Bt); free(At); free(C); free(C2); free(C3);
    }
}

/* The two work splits of t_gemm_nn (blocks of rows when there are many, panels of columns when few) give
 * every C element the same bits: the first rows of a tall product equal the same rows computed alone, for
 * 1 and 2 threads; shapes with row and column remainders of the micro-tile. (The row blocks came with the
 * fix of the AVX2 tile, whose 16-lane vectors spilled: bench_train measures that speed, 101 -> 1295 tok/s.) */
TEST(train_gemm_row_blocks_equal_panels) {
    const int64_t shapes[][3] = {{389, 37, 70}, {250, 16, 9}, {200, 100, 300}};
    uint64_t s = 21;
    const int nt0 = omp_get_max_threads();
    for (size_t z = 0; z < sizeof shapes / sizeof shapes[0] && !test_failed_now(); z++) {
        const int64_t M = shapes[z][0], N = shapes[z][1], K = shapes[z][2], m = 5;
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N),
              *Cs = malloc(sizeof(float) * m * N);
        for (int64_t i = 0; i < M * K; i++) A[i] = rnd(&s);
        for (int64_t i = 0; i < K * N; i++) B[i] = rnd(&s);
        for (int th = 1; th <= 2 && !test_failed_now(); th++) {
            omp_set_num_threads(th);
            for (int acc = 0; acc < 2; acc++) {
                for (int64_t i = 0; i < M * N; i++) C[i] = 0.25f;
                for (int64_t i = 0; i < m * N; i++) Cs[i] = 0.25f;
                t_gemm_nn(C, A, B, M, N, K, acc);  /* M rows: blocks of rows */
                t_gemm_nn(Cs, A, B, m, N, K, acc); /* 5 rows: panels */
                CHECK_MSG(memcmp(C, Cs, sizeof(float) * m * N) == 0, "%lldx%lldx%lld threads %d acc %d: split changed bits",
                          (long long)M, (long long)N, (long long)K, th, acc);
                for (int64_t i = 0; i < M && !test_failed_now(); i += 7) /* and the values */
                    for (int64_t j = 0; j < N; j++) {
                        double ref = acc ? 0.25 : 0.0;
                        for (int64_t k = 0; k < K; k++) ref += (double)A[i * K + k] * B[k * N + j];
                        CHECK_NEAR(C[i * N + j], ref, 1e-5 * (1 + K));
                    }
            }
        }
        free(A); free(B); free(C); free(Cs);
    }
    omp_set_num_threads(nt0);
}
