/* CPU kernels: optimized vs scalar reference, and batch/thread invariance of matmul. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "dsv3/ops.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

TEST(kernel_dot_matches_reference) {
    uint64_t s = 1;
    for (int n = 0; n < 300; n += 7) {
        float a[300], b[300];
        for (int i = 0; i < n; i++) { a[i] = frand(&s); b[i] = frand(&s); }
        double ref = dsv3_dot_ref(a, b, n), got = dsv3_dot_f32(a, b, n);
        CHECK_NEAR(got, ref, 1e-5 * (1 + n));
    }
}

/* matmul on BF16 and FP8 weights vs dequantise-then-double-reference; T=1 vs T=5
 * and 1 vs 2 threads must agree bitwise. */
static void check_matmul(dsv3_dtype dt, int64_t rows, int64_t cols) {
    uint64_t s = 42;
    size_t esz = dsv3_dtype_size(dt);
    uint8_t *wdata = malloc(rows * cols * esz + 1);
    int64_t br = 128, bc = 128, sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
    float *scale = malloc(sizeof(float) * sr * sc);
    for (int64_t i = 0; i < sr * sc; i++) scale[i] = 0.01f + 0.001f * (float)i;
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = frand(&s);
        if (dt == DSV3_BF16) { uint16_t h = dsv3_f32_to_bf16(v); memcpy(wdata + 2 * i, &h, 2); }
        else if (dt == DSV3_F32) memcpy(wdata + 4 * i, &v, 4);
        else wdata[i] = dsv3_f32_to_fp8_e4m3(v * 400.0f);
    }
    dsv3_weight W = {dt, rows, cols, wdata, dt == DSV3_F8_E4M3 ? scale : NULL, br, bc, sr, sc, 0, 0};
    const int64_t T = 5;
    float *x = malloc(sizeof(float) * T * cols), *y = malloc(sizeof(float) * T * rows), *y1 = malloc(sizeof(float) * rows),
          *row = malloc(sizeof(float) * cols);
    for (int64_t i = 0; i < T * cols; i++) x[i] = frand(&s);
    const dsv3_backend *be = dsv3_backend_cpu();
    be->matmul(y, x, T, &W);
    for (int64_t t = 0; t < T && !test_failed_now(); t++) {
        be->matmul(y1, x + t * cols, 1, &W);
        CHECK_MSG(memcmp(y1, y + t * rows, sizeof(float) * rows) == 0, "matmul row %lld differs between T=1 and T=5", (long long)t);
        for (int64_t o = 0; o < rows; o++) {
            dsv3_weight_row_f32(&W, o, row);
            double ref = dsv3_dot_ref(row, x + t * cols, cols);
            CHECK_NEAR(y[t * rows + o], ref, 1e-4 * (1 + fabs(ref)));
        }
    }
    int nt = omp_get_max_threads();
    omp_set_num_threads(nt > 1 ? 1 : 2);
    float *y2 = malloc(sizeof(float) * T * rows);
    be->matmul(y2, x, T, &W);
    omp_set_num_threads(nt);
    CHECK_MSG(memcmp(y2, y, sizeof(float) * T * rows) == 0, "matmul differs with another thread count");
    free(wdata); free(scale); free(x); free(y); free(y1); free(row); free(y2);
}

TEST(kernel_matmul_bf16) { check_matmul(DSV3_BF16, 67, 300); }
TEST(kernel_matmul_f32) { check_matmul(DSV3_F32, 33, 129); }
TEST(kernel_matmul_fp8_partial_blocks) { check_matmul(DSV3_F8_E4M3, 200, 260); }

TEST(kernel_fp8_dequant_block_scale) {
    /* W[i][j] = decode(q) * S[i/128][j/128] (spec §2.4, C.2) incl. a partial last block */
    int64_t rows = 130, cols = 3;
    uint8_t q[390];
    for (int i = 0; i < 390; i++) q[i] = 0x38; /* 1.0 */
    float scale[2] = {2.0f, 0.5f};
    dsv3_weight W = {DSV3_F8_E4M3, rows, cols, q, scale, 128, 128, 2, 1, 0, 0};
    float r[3];
    dsv3_weight_row_f32(&W, 127, r);
    CHECK(r[0] == 2.0f && r[2] == 2.0f);
    dsv3_weight_row_f32(&W, 128, r);
    CHECK(r[0] == 0.5f);
}

TEST(kernel_rmsnorm_softmax) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 1}, y[4];
    dsv3_rmsnorm(y, x, w, 4, 0.0f);
    double inv = 1.0 / sqrt(30.0 / 4);
    CHECK_NEAR(y[0], 1 * inv, 1e-6);
    CHECK_NEAR(y[2], 6 * inv, 1e-6);
    float s[3] = {1000, 1000, -INFINITY};
    dsv3_softmax_inplace(s, 3);
    CHECK_NEAR(s[0], 0.5, 1e-7);
    CHECK(s[2] == 0.0f);
}

/* The scalar loop dsv3_swiglu must equal bit for bit (its file is compiled to vectorise). */
__attribute__((noinline, optimize("no-tree-vectorize"))) static void swiglu_scalar(float *out, const float *a, const float *b,
                                                                                    int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = dsv3_silu(a[i]) * b[i];
}

static int same_bits(float x, float y) { return (x != x && y != y) || !memcmp(&x, &y, sizeof x); }

TEST(kernel_swiglu_matches_scalar) {
    enum { N = 4096 + 13 };
    static const float special[] = {0.0f, -0.0f, 1e-40f, -1e-40f, 1.0f, -1.0f, 86.9f, -86.9f, 87.0f, -87.0f, 87.1f, -87.1f,
                                    88.0f, -88.0f, 88.1f, -88.1f, 89.0f, -89.0f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN};
    const int ns = (int)(sizeof special / sizeof special[0]);
    float *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N), *r = malloc(sizeof(float) * N);
    uint64_t s = 7;
    for (int64_t i = 0; i < N; i++) {
        a[i] = i < ns ? special[i] : frand(&s) * (i % 3 ? 12.0f : 100.0f);
        b[i] = i % 5 ? frand(&s) * 3.0f : 1.0f;
    }
    for (int off = 0; off < 3; off++) { /* unaligned starts and odd lengths: the vector loop's head and tail */
        const int64_t n = N - off - 2 * off;
        memcpy(r, a, sizeof(float) * N);
        float *c = malloc(sizeof(float) * N);
        memcpy(c, a, sizeof(float) * N);
        dsv3_swiglu(c + off, c + off, b + off, n); /* in place, as the model calls it */
        swiglu_scalar(r + off, r + off, b + off, n);
        int bad = 0;
        for (int64_t i = 0; i < N; i++) bad += !same_bits(c[i], r[i]);
        CHECK_MSG(bad == 0, "offset %d: %d values differ from the scalar loop", off, bad);
        float *o = malloc(sizeof(float) * N); /* out of place, as training calls it: the same values */
        dsv3_swiglu(o, a + off, b + off, n);
        bad = 0;
        for (int64_t i = 0; i < n; i++) bad += !same_bits(o[i], r[off + i]);
        CHECK_MSG(bad == 0, "offset %d, out of place: %d values differ", off, bad);
        free(o);
        free(c);
    }
    /* the values: silu(z) = z / (1 + e^-z) */
    CHECK(dsv3_silu(0.0f) == 0.0f && dsv3_silu(100.0f) == 100.0f && dsv3_silu(-100.0f) == 0.0f);
    CHECK(dsv3_silu(NAN) != dsv3_silu(NAN) && dsv3_silu(INFINITY) == INFINITY);
    CHECK_NEAR(dsv3_silu(1.0f), 1.0 / (1.0 + exp(-1.0)), 1e-7);
    CHECK_NEAR(dsv3_silu(-3.0f), -3.0 / (1.0 + exp(3.0)), 1e-8);
    free(a);
    free(b);
    free(r);
}

/* dsv3_exp_fixed: within 2 ulp of e^x on (-87, 88], and its limits */
TEST(kernel_exp_fixed_accuracy) {
    double worst = 0;
    for (int i = -869999; i <= 880000; i++) {
        const float x = (float)i * 1e-4f;
        const double e = exp((double)x), got = dsv3_exp_fixed(x), ulp = ldexp(1.0, ilogb(e) - 23);
        const double err = fabs(got - e) / ulp;
        worst = err > worst ? err : worst;
    }
    CHECK_MSG(worst <= 2.0, "worst error %.3f ulp", worst);
    CHECK(dsv3_exp_fixed(0.0f) == 1.0f && dsv3_exp_fixed(-0.0f) == 1.0f);
    CHECK(dsv3_exp_fixed(-87.0f) == 0.0f && dsv3_exp_fixed(-INFINITY) == 0.0f);
    CHECK(dsv3_exp_fixed(88.5f) == INFINITY && dsv3_exp_fixed(INFINITY) == INFINITY);
    CHECK(dsv3_exp_fixed(NAN) != dsv3_exp_fixed(NAN));
}
