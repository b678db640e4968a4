/* CPU ISA paths (scalar / AVX2 / AVX-512): every path must give bitwise the
 * same results as the scalar reference for every dtype, shape, block shape, T,
 * thread count and (mis)alignment. The AMX path (BF16/FP8 weights on the AMX
 * kernel, the rest on AVX-512): within f32 accuracy of a double reference and
 * bitwise invariant across T, threads and row ranges (F32/F16 weights and row
 * decode bitwise equal to scalar). DSV3_CPU_ISA handling. */
#include <float.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "dsv3/ops.h"
#include "ops/cpu/amx.h"
#include "ops/cpu/cpu_kernels.h"

static uint64_t rng(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}
static float frand(uint64_t *s) { return (float)(rng(s) & 0xffffff) / 16777216.0f * 2.0f - 1.0f; }

/* Restores the automatic ISA when a test ends (also after a failed CHECK). */
static void isa_reset(void) { dsv3_cpu_isa_set(DSV3_CPU_ISA_AUTO); }

/* A random weight of dtype dt whose data starts misaligned by `mis` bytes.
 * FP8 codes cover all non-NaN (E4M3) / finite (E5M2) values incl. subnormals
 * and zeros; special 1: NaN (and E5M2 Inf) codes appear too; special 2: only
 * two subnormal codes (E4M3; the avx512 decode in 32-bit lanes when n >= 8192). */
typedef struct {
    dsv3_weight W;
    uint8_t *alloc;
    float *scale;
} test_weight;

static void weight_make(test_weight *tw, dsv3_dtype dt, int64_t rows, int64_t cols, int64_t br, int64_t bc, int mis,
                        int special, float scale_mul, uint64_t seed) {
    uint64_t s = seed;
    size_t esz = dsv3_dtype_size(dt), n = (size_t)(rows * cols);
    tw->alloc = malloc(n * esz + 64);
    uint8_t *d = tw->alloc + mis;
    for (size_t i = 0; i < n; i++) {
        float v = frand(&s);
        if (dt == DSV3_F32) memcpy(d + 4 * i, &v, 4);
        else if (dt == DSV3_BF16) { uint16_t h = dsv3_f32_to_bf16(v); memcpy(d + 2 * i, &h, 2); }
        else if (dt == DSV3_F16) {
            /* normal and subnormal halves */
            uint16_t h = dsv3_f32_to_f16(rng(&s) % 8 == 0 ? v * 1e-5f : v);
            memcpy(d + 2 * i, &h, 2);
        } else {
            uint8_t q = (uint8_t)rng(&s);
            if (special != 1) {
                if (dt == DSV3_F8_E4M3 && (q & 0x7f) == 0x7f) q ^= 1;
                if (dt == DSV3_F8_E5M2 && (q & 0x7f) > 0x7b) q &= 0xbb;
            }
            if (special == 2 && dt == DSV3_F8_E4M3 && !(q & 0x78) && (q & 0x07)) q |= 0x08;
            d[i] = q;
        }
        if (special == 2 && dt == DSV3_F8_E4M3) {
            d[0] = 0x03;
            d[n / 2] = 0x85;
        }
    }
    int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
    tw->scale = malloc(sizeof(float) * (size_t)(sr * sc));
    for (int64_t i = 0; i < sr * sc; i++) tw->scale[i] = (0.5f + (float)(rng(&s) % 1000) / 1000.0f) * scale_mul;
    int fp8 = dt == DSV3_F8_E4M3 || dt == DSV3_F8_E5M2;
    /* odd seeds: the weight marked as read from memory (the few-token tiles prefetch the next rows; the
     * same bits) */
    dsv3_weight W = {dt, rows, cols, d, fp8 ? tw->scale : NULL, br, bc, sr, sc, 0, (int)(seed & 1)};
    tw->W = W;
}

static void weight_free(test_weight *tw) {
    free(tw->alloc);
    free(tw->scale);
}

/* Bitwise equality, NaNs compared as "both NaN" (payloads are not part of the contract). */
static int same_bits(const float *a, const float *b, int64_t n, int64_t *where) {
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i])) continue;
        if (memcmp(a + i, b + i, 4)) { *where = i; return 0; }
    }
    return 1;
}

/* AMX path: y[t][o] vs the double reference (W decoded exactly, since the row
 * decode is the reference one): |y - ref| <= 2e-6 sum|w x| + 1e-43 (f32
 * accumulation; the floor covers subnormal products); elements whose sum|w x|
 * overflows f32 are unconstrained; a non-finite reference (NaN/Inf codes)
 * needs a non-finite result. */
static void check_amx_vs_ref(const dsv3_weight *W, const float *x, int64_t T, const float *y, const char *what) {
    const int64_t rows = W->rows, cols = W->cols;
    float *row = malloc(sizeof(float) * (size_t)cols);
    for (int64_t o = 0; o < rows && !test_failed_now(); o++) {
        dsv3_weight_row_f32(W, o, row);
        for (int64_t t = 0; t < T; t++) {
            const float *xt = x + t * cols;
            double ref = dsv3_dot_ref(row, xt, cols), mag = 0;
            for (int64_t i = 0; i < cols; i++) mag += fabs((double)row[i] * xt[i]);
            double got = y[t * rows + o];
            int ok;
            if (!isfinite(ref)) ok = !isfinite(got);
            else if (!(mag <= FLT_MAX)) ok = 1;
            else ok = fabs(got - ref) <= 2e-6 * mag + 1e-43;
            if (!ok) {
                test_fail_at(__FILE__, __LINE__, "%s: amx out[%lld][%lld] = %.9g, reference %.9g (sum|wx| %.3g)", what,
                             (long long)t, (long long)o, got, ref, mag);
                break;
            }
        }
    }
    free(row);
}

/* Runs W x for every T in Ts on every ISA and thread count; all must equal the
 * scalar single-thread T=max result bitwise (amx for BF16/FP8: its own
 * single-thread T=max result bitwise, and that within tolerance of the double
 * reference). x is misaligned by xmis floats. */
static void check_all_paths(const dsv3_weight *W, int xmis, uint64_t seed, const char *what) {
    static const int64_t Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 16, 17, 18}; /* 2-16: direct (avx2: groups of 2-3), more: GEMM */
    const int64_t TMAX = 18, rows = W->rows, cols = W->cols;
    uint64_t s = seed;
    float *xa = malloc(sizeof(float) * (size_t)(TMAX * cols + 16)), *x = xa + xmis;
    for (int64_t i = 0; i < TMAX * cols; i++) x[i] = frand(&s);
    float *ref0 = malloc(sizeof(float) * (size_t)(TMAX * rows)), *y = malloc(sizeof(float) * (size_t)(TMAX * rows));
    float *ref_amx = malloc(sizeof(float) * (size_t)(TMAX * rows));
    float *dref = malloc(sizeof(float) * (size_t)cols), *drow = malloc(sizeof(float) * (size_t)cols);
    const dsv3_backend *be = dsv3_backend_cpu();
    int nt0 = omp_get_max_threads();
    dsv3_cpu_isa_set(DSV3_CPU_ISA_SCALAR);
    omp_set_num_threads(1);
    be->matmul(ref0, x, TMAX, W);
    for (int isa = 0; isa < DSV3_CPU_ISA_COUNT && !test_failed_now(); isa++) {
        if (!dsv3_cpu_isa_supported((dsv3_cpu_isa)isa)) continue;
        dsv3_cpu_isa_set((dsv3_cpu_isa)isa);
        const float *ref = ref0;
        if (isa == DSV3_CPU_ISA_AMX && dsv3_amx_supports(W)) { /* its own reference, checked against double */
            omp_set_num_threads(1);
            be->matmul(ref_amx, x, TMAX, W);
            check_amx_vs_ref(W, x, TMAX, ref_amx, what);
            ref = ref_amx;
        }
        for (int th = 1; th <= 2 && !test_failed_now(); th++) {
            omp_set_num_threads(th);
            for (size_t k = 0; k < sizeof Ts / sizeof Ts[0] && !test_failed_now(); k++) {
                int64_t T = Ts[k], bad = 0;
                for (int64_t i = 0; i < T * rows; i++) y[i] = 12345.0f;
                be->matmul(y, x, T, W);
                if (!same_bits(y, ref, T * rows, &bad))
                    test_fail_at(__FILE__, __LINE__, "%s: %s threads %d T=%lld: out[%lld][%lld] = %.9g, %s %.9g", what,
                                 dsv3_cpu_isa_name((dsv3_cpu_isa)isa), th, (long long)T, (long long)(bad / rows),
                                 (long long)(bad % rows), y[bad], ref == ref0 ? "scalar" : "amx T=18", ref[bad]);
            }
        }
        /* a row subrange with a wider output stride */
        if (!test_failed_now() && rows > 2) {
            int64_t r0 = 1, r1 = rows - 1, ld = rows + 3, T = 5;
            float *z = malloc(sizeof(float) * (size_t)(T * ld));
            be->matmul_rows(z, ld, x, T, W, r0, r1);
            for (int64_t t = 0; t < T && !test_failed_now(); t++) {
                int64_t bad;
                if (!same_bits(z + t * ld, ref + t * rows + r0, r1 - r0, &bad))
                    test_fail_at(__FILE__, __LINE__, "%s: %s matmul_rows t=%lld row %lld differs", what,
                                 dsv3_cpu_isa_name((dsv3_cpu_isa)isa), (long long)t, (long long)(r0 + bad));
            }
            free(z);
        }
        /* row decode (bitwise on every path, amx included) */
        for (int64_t r = 0; r < rows && !test_failed_now(); r += 1 + rows / 7) {
            int64_t bad;
            dsv3_cpu_isa_set(DSV3_CPU_ISA_SCALAR);
            dsv3_weight_row_f32(W, r, dref);
            dsv3_cpu_isa_set((dsv3_cpu_isa)isa);
            dsv3_weight_row_f32(W, r, drow);
            if (!same_bits(drow, dref, cols, &bad))
                test_fail_at(__FILE__, __LINE__, "%s: %s row %lld decode differs at col %lld", what,
                             dsv3_cpu_isa_name((dsv3_cpu_isa)isa), (long long)r, (long long)bad);
        }
    }
    omp_set_num_threads(nt0);
    isa_reset();
    free(xa); free(ref0); free(ref_amx); free(y); free(dref); free(drow);
}

static void check_shape(dsv3_dtype dt, int64_t rows, int64_t cols, int64_t br, int64_t bc, int mis, float scale_mul,
                        uint64_t seed) {
    test_weight tw;
    weight_make(&tw, dt, rows, cols, br, bc, mis, 0, scale_mul, seed);
    char what[160];
    snprintf(what, sizeof what, "%s %lldx%lld block %lldx%lld mis %d", dsv3_dtype_name(dt), (long long)rows,
             (long long)cols, (long long)br, (long long)bc, mis);
    check_all_paths(&tw.W, mis % 3, seed + 1, what);
    weight_free(&tw);
}

static const dsv3_dtype g_dtypes[] = {DSV3_F32, DSV3_BF16, DSV3_F16, DSV3_F8_E4M3, DSV3_F8_E5M2};

TEST(cpu_isa_matmul_all_cols_1_to_300) {
    for (size_t d = 0; d < 5 && !test_failed_now(); d++)
        for (int64_t cols = 1; cols <= 300 && !test_failed_now(); cols += cols < 70 ? 1 : 7)
            check_shape(g_dtypes[d], cols % 2 ? 7 : 6, cols, 128, 128, (int)(cols % 4), 0.01f, (uint64_t)(cols * 31 + d));
}

/* A weight with no columns (a degenerate config): every output is the empty sum, +0, on every path and
 * batch size (the AVX2 GEMM once divided by its packed row length). */
TEST(cpu_isa_matmul_zero_cols) {
    static const float dummy[4] = {0};
    for (int dt = 0; dt < 2 && !test_failed_now(); dt++) {
        dsv3_weight W = {dt ? DSV3_BF16 : DSV3_F32, 7, 0, dummy, NULL, 0, 0, 0, 0, 0, 0};
        const dsv3_backend *be = dsv3_backend_cpu();
        for (int isa = 0; isa < DSV3_CPU_ISA_COUNT && !test_failed_now(); isa++) {
            if (!dsv3_cpu_isa_supported((dsv3_cpu_isa)isa)) continue;
            dsv3_cpu_isa_set((dsv3_cpu_isa)isa);
            static const int64_t Ts[] = {1, 3, 5, 17};
            for (size_t k = 0; k < 4; k++) {
                float y[17 * 7];
                for (int i = 0; i < 17 * 7; i++) y[i] = 123.0f;
                be->matmul(y, dummy, Ts[k], &W);
                for (int64_t i = 0; i < Ts[k] * 7; i++)
                    CHECK_MSG(y[i] == 0.0f && !signbit(y[i]), "%s T=%lld out[%lld] = %g", dsv3_cpu_isa_name((dsv3_cpu_isa)isa),
                              (long long)Ts[k], (long long)i, (double)y[i]);
            }
        }
        isa_reset();
    }
}

TEST(cpu_isa_matmul_large_shapes) {
    static const int64_t shapes[][2] = {{67, 1024}, {33, 2816}, {129, 1024}, {5, 7168}};
    for (size_t d = 0; d < 5 && !test_failed_now(); d++)
        for (size_t k = 0; k < 4 && !test_failed_now(); k++)
            check_shape(g_dtypes[d], shapes[k][0], shapes[k][1], 128, 128, (int)k, 0.003f, 1000 + k * 5 + d);
}

TEST(cpu_isa_matmul_fp8_block_shapes) {
    /* partial 128-blocks, block_c 64 (chunk aligned) and 100 / 48 (chunks straddle blocks), block_r 1 / 7 */
    static const int64_t blocks[][2] = {{128, 128}, {128, 64}, {128, 100}, {7, 48}, {1, 32}, {64, 96}};
    for (int dt = 0; dt < 2 && !test_failed_now(); dt++)
        for (size_t b = 0; b < 6 && !test_failed_now(); b++) {
            dsv3_dtype t = dt ? DSV3_F8_E5M2 : DSV3_F8_E4M3;
            check_shape(t, 200, 260, blocks[b][0], blocks[b][1], 1, 0.01f, 77 + b);
            check_shape(t, 131, 300, blocks[b][0], blocks[b][1], 2, 0.02f, 88 + b);
            check_shape(t, 19, 1000, blocks[b][0], blocks[b][1], 3, 0.02f, 99 + b);
        }
}

TEST(cpu_isa_matmul_fp8_extreme_scales) {
    /* scales whose 2^8 multiple overflows (unfolded E4M3 decode), tiny scales
     * (subnormal products), and a mix in one matrix */
    check_shape(DSV3_F8_E4M3, 40, 256, 16, 128, 1, 1e37f, 5);
    check_shape(DSV3_F8_E4M3, 40, 256, 16, 128, 0, 1e-40f, 6);
    check_shape(DSV3_F8_E5M2, 40, 256, 16, 128, 3, 1e-38f, 7);
    test_weight tw;
    weight_make(&tw, DSV3_F8_E4M3, 64, 384, 32, 128, 1, 0, 1.0f, 8);
    tw.scale[0] = 3e38f;
    tw.scale[1] = 1e-44f;
    check_all_paths(&tw.W, 1, 9, "E4M3 mixed scales");
    weight_free(&tw);
}

TEST(cpu_isa_matmul_fp8_rare_subnormal_codes) {
    /* E4M3 weights with no NaN codes and at most 1 in 4096 subnormal ones (two here) take the avx512
     * decode in 32-bit lanes (scales that fold 2^120), the others the half decode without NaN checks:
     * the same bits everywhere */
    static const int64_t shapes[][2] = {{7, 32}, {6, 61}, {33, 1024}, {19, 1000}, {5, 2816}};
    static const float muls[] = {0.01f, 1e-40f, 1e30f}; /* 1e30: s * 2^120 overflows */
    for (size_t k = 0; k < 5 && !test_failed_now(); k++)
        for (size_t s = 0; s < 3 && !test_failed_now(); s++) {
            test_weight tw;
            weight_make(&tw, DSV3_F8_E4M3, shapes[k][0], shapes[k][1], 128, 128, (int)k, 2, muls[s], 300 + k * 3 + s);
            char what[96];
            snprintf(what, sizeof what, "E4M3 with 2 subnormal codes %lldx%lld, scales x %g", (long long)shapes[k][0],
                     (long long)shapes[k][1], (double)muls[s]);
            check_all_paths(&tw.W, (int)(k % 3), 301 + k, what);
            weight_free(&tw);
        }
}

TEST(cpu_isa_matmul_fp8_nan_codes) {
    /* NaN codes (E4M3 0x7f/0xff, E5M2 NaN/Inf) give NaN / Inf identically on every path */
    for (int dt = 0; dt < 2 && !test_failed_now(); dt++) {
        test_weight tw;
        weight_make(&tw, dt ? DSV3_F8_E5M2 : DSV3_F8_E4M3, 23, 160, 128, 128, 1, 1, 0.01f, 11 + dt);
        check_all_paths(&tw.W, 0, 12, dt ? "E5M2 with NaN/Inf codes" : "E4M3 with NaN codes");
        weight_free(&tw);
    }
}

/* E4M3 with power-of-two block scales (DeepSeek's "ue8m0"): the avx2 one-token tile runs on the token
 * scaled per row block instead of multiplying each weight by its scale (DSV3_FP8_POW2): the same bits. */
static void pow2_scales(test_weight *tw, uint64_t seed) {
    uint64_t s = seed;
    for (int64_t i = 0; i < tw->W.scale_rows * tw->W.scale_cols; i++) tw->scale[i] = ldexpf(1.0f, -(int)(rng(&s) % 24));
}

TEST(cpu_isa_matmul_fp8_pow2_scales) {
    /* rows x cols, row block: tiles whose two rows (h apart) sit in different row blocks, blocks that end
     * inside a thread's rows, tails */
    static const int64_t shapes[][3] = {{7, 32, 128}, {6, 61, 128}, {33, 1024, 16}, {19, 1000, 8},
                                        {260, 256, 128}, {5, 2816, 128}, {64, 160, 1}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0] && !test_failed_now(); k++) {
        test_weight tw;
        weight_make(&tw, DSV3_F8_E4M3, shapes[k][0], shapes[k][1], shapes[k][2], 32, (int)k % 3, 2, 1.0f, 400 + k);
        pow2_scales(&tw, 500 + k);
        if (k == 2) { tw.scale[0] = 0x1p7f; tw.scale[1] = 0x1p-120f; } /* the flag's range ends */
        CHECK(dsv3_cpu_fp8_scale_flags(&tw.W) & DSV3_FP8_POW2);
        char what[96];
        snprintf(what, sizeof what, "E4M3 power-of-two scales %lldx%lld, row block %lld", (long long)shapes[k][0],
                 (long long)shapes[k][1], (long long)shapes[k][2]);
        check_all_paths(&tw.W, (int)(k % 3), 501 + k, what);
        weight_free(&tw);
    }
    /* a scale outside the range, or not a power of two: no flag (the multiplying tile) */
    test_weight tw;
    weight_make(&tw, DSV3_F8_E4M3, 8, 64, 4, 32, 0, 2, 1.0f, 420);
    pow2_scales(&tw, 421);
    tw.scale[3] = 0x1p8f;
    CHECK(!(dsv3_cpu_fp8_scale_flags(&tw.W) & DSV3_FP8_POW2));
    weight_free(&tw);
    weight_make(&tw, DSV3_F8_E4M3, 8, 64, 4, 32, 0, 2, 1.0f, 422);
    pow2_scales(&tw, 423);
    tw.scale[2] = 0.75f;
    CHECK(!(dsv3_cpu_fp8_scale_flags(&tw.W) & DSV3_FP8_POW2));
    weight_free(&tw);
}

TEST(cpu_isa_matmul_fp8_pow2_scaled_token_overflows) {
    /* scales 2^7: the token scaled by 2^127 overflows where |x| >= 2 (and NaN / Inf inputs are not finite
     * either): those row blocks take the multiplying tile; every row equals the scalar reference */
    const int64_t rows = 48, cols = 256;
    test_weight tw;
    weight_make(&tw, DSV3_F8_E4M3, rows, cols, 16, 128, 1, 2, 1.0f, 430);
    pow2_scales(&tw, 431);
    tw.scale[0] = tw.scale[5] = 0x1p7f; /* row blocks 0 and 2 */
    uint64_t s = 432;
    float x[3][256], ref[48], y[48];
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < cols; i++) x[v][i] = frand(&s);
    x[0][7] = 3.0f;      /* overflows only in the 2^7 blocks */
    x[1][200] = NAN;     /* every block */
    x[2][31] = INFINITY; /* every block */
    const dsv3_backend *be = dsv3_backend_cpu();
    int nt0 = omp_get_max_threads();
    for (int v = 0; v < 3 && !test_failed_now(); v++)
        for (int th = 1; th <= 2; th++) {
            omp_set_num_threads(th);
            dsv3_cpu_isa_set(DSV3_CPU_ISA_SCALAR);
            be->matmul(ref, x[v], 1, &tw.W);
            for (int isa = 1; isa < DSV3_CPU_ISA_COUNT; isa++) {
                if (!dsv3_cpu_isa_supported((dsv3_cpu_isa)isa)) continue;
                dsv3_cpu_isa_set((dsv3_cpu_isa)isa);
                be->matmul(y, x[v], 1, &tw.W);
                int64_t bad;
                if (!same_bits(y, ref, rows, &bad))
                    test_fail_at(__FILE__, __LINE__, "%s token %d threads %d: row %lld = %.9g, scalar %.9g",
                                 dsv3_cpu_isa_name((dsv3_cpu_isa)isa), v, th, (long long)bad, y[bad], ref[bad]);
            }
        }
    omp_set_num_threads(nt0);
    isa_reset();
    weight_free(&tw);
}

TEST(cpu_isa_dot_f32) {
    uint64_t s = 3;
    float *a = malloc(sizeof(float) * 3000), *b = malloc(sizeof(float) * 3000);
    for (int i = 0; i < 3000; i++) {
        a[i] = frand(&s);
        b[i] = frand(&s);
    }
    a[5] = -0.0f; /* signed zeros and tiny products survive the masked tails */
    b[5] = 1e-30f;
    for (int isa = 1; isa < DSV3_CPU_ISA_COUNT && !test_failed_now(); isa++) {
        if (!dsv3_cpu_isa_supported((dsv3_cpu_isa)isa)) continue;
        for (int n = 0; n <= 2816 && !test_failed_now(); n += n < 300 ? 1 : 251)
            for (int off = 0; off < 3; off++) {
                dsv3_cpu_isa_set(DSV3_CPU_ISA_SCALAR);
                float r = dsv3_dot_f32(a + off, b + 2 * off, n);
                dsv3_cpu_isa_set((dsv3_cpu_isa)isa);
                float g = dsv3_dot_f32(a + off, b + 2 * off, n);
                if (memcmp(&r, &g, 4)) {
                    test_fail_at(__FILE__, __LINE__, "%s dot n=%d off=%d: %.9g vs scalar %.9g",
                                 dsv3_cpu_isa_name((dsv3_cpu_isa)isa), n, off, g, r);
                    break;
                }
            }
    }
    /* a lane that is exactly -0 must stay -0 through a tail (not become +0) */
    float na[33], nb[33];
    for (int i = 0; i < 33; i++) { na[i] = -1e-30f; nb[i] = 1e-30f; } /* products underflow to -0 */
    for (int isa = 0; isa < DSV3_CPU_ISA_COUNT; isa++) {
        if (!dsv3_cpu_isa_supported((dsv3_cpu_isa)isa)) continue;
        dsv3_cpu_isa_set((dsv3_cpu_isa)isa);
        float g = dsv3_dot_f32(na, nb, 33);
        CHECK_MSG(g == 0.0f && signbit(g), "%s: -0 lost", dsv3_cpu_isa_name((dsv3_cpu_isa)isa));
    }
    isa_reset();
    free(a); free(b);
}

TEST(cpu_isa_api) {
    dsv3_cpu_isa isa;
    CHECK(dsv3_cpu_isa_parse("scalar", &isa) == 0 && isa == DSV3_CPU_ISA_SCALAR);
    CHECK(dsv3_cpu_isa_parse("avx2", &isa) == 0 && isa == DSV3_CPU_ISA_AVX2);
    CHECK(dsv3_cpu_isa_parse("avx512", &isa) == 0 && isa == DSV3_CPU_ISA_AVX512);
    CHECK(dsv3_cpu_isa_parse("amx", &isa) == 0 && isa == DSV3_CPU_ISA_AMX);
    CHECK(dsv3_cpu_isa_parse("auto", &isa) == 0 && isa == DSV3_CPU_ISA_AUTO);
    CHECK(!strcmp(dsv3_cpu_isa_name(DSV3_CPU_ISA_AMX), "amx"));
    CHECK(dsv3_cpu_isa_supported(DSV3_CPU_ISA_AMX) == (dsv3_cpu_isa_supported(DSV3_CPU_ISA_AVX512) && dsv3_amx_available()));
    CHECK(dsv3_cpu_isa_parse("sse9", &isa) == -1 && dsv3_cpu_isa_parse("", &isa) == -1);
    CHECK(!strcmp(dsv3_cpu_isa_name(DSV3_CPU_ISA_AVX512), "avx512"));
    CHECK(dsv3_cpu_isa_supported(DSV3_CPU_ISA_SCALAR));
    CHECK(dsv3_cpu_isa_set(DSV3_CPU_ISA_SCALAR) == 0 && dsv3_cpu_isa_get() == DSV3_CPU_ISA_SCALAR);
    CHECK(dsv3_cpu_isa_set((dsv3_cpu_isa)7) == -1 && dsv3_cpu_isa_get() == DSV3_CPU_ISA_SCALAR);
    CHECK(dsv3_cpu_isa_set(DSV3_CPU_ISA_AUTO) == 0);
    /* auto = avx512 > avx2 > scalar, the best supported (amx only by name, see README) */
    dsv3_cpu_isa best = dsv3_cpu_isa_supported(DSV3_CPU_ISA_AVX512) ? DSV3_CPU_ISA_AVX512
                        : dsv3_cpu_isa_supported(DSV3_CPU_ISA_AVX2) ? DSV3_CPU_ISA_AVX2
                                                                    : DSV3_CPU_ISA_SCALAR;
    CHECK(dsv3_cpu_isa_best() == best);
    if (!getenv("DSV3_CPU_ISA")) CHECK(dsv3_cpu_isa_get() == best);
    if (dsv3_cpu_isa_supported(DSV3_CPU_ISA_AMX)) {
        CHECK(dsv3_cpu_isa_set(DSV3_CPU_ISA_AMX) == 0 && dsv3_cpu_isa_get() == DSV3_CPU_ISA_AMX);
        CHECK(dsv3_cpu_isa_set(DSV3_CPU_ISA_AUTO) == 0 && dsv3_cpu_isa_get() == best);
    } else {
        CHECK(dsv3_cpu_isa_set(DSV3_CPU_ISA_AMX) == -1);
    }
    fprintf(stderr, "    cpu isa paths:");
    for (int i = 0; i < DSV3_CPU_ISA_COUNT; i++)
        if (dsv3_cpu_isa_supported((dsv3_cpu_isa)i)) fprintf(stderr, " %s", dsv3_cpu_isa_name((dsv3_cpu_isa)i));
    fprintf(stderr, " (auto: %s)\n", dsv3_cpu_isa_name(best));
}

/* DSV3_CPU_ISA in a child process: a valid value is used, an invalid one is
 * reported on stderr and the program still runs (auto). */
TEST(cpu_isa_env_var) {
    const char *bin = test_dsv3_bin();
    if (!bin) SKIP("dsv3 binary not found");
    char cmd[1024], line[512];
    snprintf(cmd, sizeof cmd,
             "DSV3_CPU_ISA=sse9 %s generate --model models/dsv3-kjv-tiny --prompt-ids 1,2,3 -n 2 -t 1 2>&1 >/dev/null", bin);
    FILE *f = popen(cmd, "r");
    CHECK(f);
    int saw = 0;
    while (fgets(line, sizeof line, f)) saw |= strstr(line, "DSV3_CPU_ISA=sse9") != NULL;
    int rc = pclose(f);
    if (!saw && rc != 0) SKIP("default model not runnable here");
    CHECK_MSG(saw, "no message for an invalid DSV3_CPU_ISA");
    CHECK_MSG(rc == 0, "invalid DSV3_CPU_ISA made the command fail (%d)", rc);
    snprintf(cmd, sizeof cmd,
             "DSV3_CPU_ISA=scalar %s generate --model models/dsv3-kjv-tiny --prompt-ids 1,2,3 -n 2 -t 1 2>&1 >/dev/null", bin);
    f = popen(cmd, "r");
    CHECK(f);
    saw = 0;
    while (fgets(line, sizeof line, f)) saw |= strstr(line, "DSV3_CPU_ISA") != NULL;
    rc = pclose(f);
    CHECK_MSG(!saw && rc == 0, "DSV3_CPU_ISA=scalar was rejected");
}
