/* Compute kernels behind a small backend table (CPU today; CUDA later).
 *
 * Batch invariance (DEVELOPERS guide): every output element of a matmul is one
 * dot product over the full input row, reduced in a fixed order that depends
 * only on the row length, never on the number of tokens or threads. */
#ifndef DSV3_OPS_H
#define DSV3_OPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "dsv3/dtype.h"

/* Parallel regions below this many multiply-adds run on one thread: forking
 * costs more than it saves (results are identical either way). */
#define DSV3_OMP_MIN_WORK (1 << 16)

/* A 2-D weight W[rows][cols] as stored in the checkpoint: F32, BF16, F16, or
 * FP8 (E4M3/E5M2) with block scales S[ceil(rows/br)][ceil(cols/bc)] that are
 * multiplied in (spec §2.4). Data may be unaligned (mmap). */
typedef struct {
    dsv3_dtype dtype;
    int64_t rows, cols;
    const void *data;
    const float *scale;      /* FP8 only: aligned f32 copy, row-major */
    int64_t block_r, block_c; /* FP8 block shape (128x128 for DeepSeek-V3) */
    int64_t scale_rows, scale_cols;
    /* FP8, internal to the CPU backend: what it learnt of the scales and codes (DSV3_FP8_* flags in
     * src/ops/cpu/cpu_kernels.h), set at the first matmul (the data must not change afterwards);
     * zero-initialise it. */
    int fp8_scan;
    /* Nonzero: a hint that the weight is read from memory rather than from cache at each use (its model's
     * checkpoint is larger than a last-level cache, dsv3_model_load): the CPU kernels then prefetch the
     * rows ahead. Never changes a value. */
    int streamed;
} dsv3_weight;

typedef struct {
    const char *name;
    /* out[t][o] = sum_i W[o][i] * x[t][i] for t < T, o < W->rows. x: [T][W->cols]. */
    void (*matmul)(float *out, const float *x, int64_t T, const dsv3_weight *W);
    /* Same, restricted to rows [r0, r1) of W, writing out[t][o - r0] with row stride ld. */
    void (*matmul_rows)(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t r0, int64_t r1);
} dsv3_backend;

const dsv3_backend *dsv3_backend_cpu(void);
/* Nonzero if a matmul could not run since the last call (out of memory for the AMX
 * kernel's scratch: the amx level never switches kernels, which would change bits);
 * its outputs were set to NaN. Reading clears it. dsv3_forward turns it into an error. */
int dsv3_backend_take_failure(void);

/* CPU instruction-set paths of the CPU backend. scalar, avx2 and avx512 give
 * bitwise identical results (32 fmaf partial sums per dot product, fixed
 * reduction tree); they differ only in speed. amx runs BF16 and FP8 weights
 * through the AMX tile kernel (src/ops/cpu/amx.h: f32-accurate, batch and
 * thread invariant, but NOT bitwise equal to the other paths) at every T,
 * everything else on avx512. Chosen once at first use: the automatic choice,
 * or DSV3_CPU_ISA=scalar|avx2|avx512|amx|auto from the environment (an invalid
 * or unsupported value is reported on stderr and auto is used). */
typedef enum {
    DSV3_CPU_ISA_AUTO = -1, /* automatic choice (see dsv3_cpu_isa_best) */
    DSV3_CPU_ISA_SCALAR = 0,
    DSV3_CPU_ISA_AVX2,   /* AVX2 + FMA + F16C */
    DSV3_CPU_ISA_AVX512, /* AVX-512 F/BW/VL */
    DSV3_CPU_ISA_AMX,    /* AVX-512 + AMX-BF16 for BF16/FP8 weights */
    DSV3_CPU_ISA_COUNT
} dsv3_cpu_isa;

/* What AUTO selects on this CPU. */
dsv3_cpu_isa dsv3_cpu_isa_best(void);
/* The path in use (never AUTO). */
dsv3_cpu_isa dsv3_cpu_isa_get(void);
/* Selects a path for all later calls (AUTO = best supported); returns 0, or -1
 * (unchanged) when the CPU lacks it. Not meant to race with running kernels. */
int dsv3_cpu_isa_set(dsv3_cpu_isa isa);
/* 1 when this CPU (and OS) can run isa (AUTO: always). */
int dsv3_cpu_isa_supported(dsv3_cpu_isa isa);
/* "scalar", "avx2", "avx512", "amx", "auto". */
const char *dsv3_cpu_isa_name(dsv3_cpu_isa isa);
/* Parses one of those names; returns 0, or -1 if unknown. */
int dsv3_cpu_isa_parse(const char *name, dsv3_cpu_isa *out);

/* Fixed-order f32 dot product (32 interleaved fmaf partial sums, combined by a fixed pairwise tree). */
float dsv3_dot_f32(const float *a, const float *b, int64_t n);
/* Scalar reference for tests: plain left-to-right sum in double. */
double dsv3_dot_ref(const float *a, const float *b, int64_t n);

/* Dequantises row r of W into dst[W->cols] (exact for BF16/F16/F32; FP8: one f32 rounding of lut*scale). */
void dsv3_weight_row_f32(const dsv3_weight *W, int64_t r, float *dst);

/* y = w ⊙ x / sqrt(mean(x²) + eps) in fp32 (spec §3.3); w may be NULL (no weight). */
void dsv3_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
void dsv3_softmax_inplace(float *x, int64_t n);

/* e^x with fixed arithmetic (no libm call, so loops over it vectorise, and every loop gives the bits of
 * the scalar code): Cody-Waite reduction x = n ln2 + r (ln2 = HI + LO), |r| <= ln2/2, the Cephes
 * degree-6 polynomial (< 2 ulp on (-87, 88], tests/ops), times 2^n. x <= -87 gives 0, x > 88 +inf (e^88 is
 * 1.7e38; e^x up to 88.72 is finite, but its uses do not need it), NaN stays NaN. The attention softmax
 * (mla.c attn_exp and its SIMD copies) is this function on x <= 0. */
#define DSV3_EXP_LOG2E 1.44269504088896341f
#define DSV3_EXP_LN2_HI (-0.693359375f)
#define DSV3_EXP_LN2_LO 2.12194440e-4f
#define DSV3_EXP_P0 1.9875691500e-4f
#define DSV3_EXP_P1 1.3981999507e-3f
#define DSV3_EXP_P2 8.3334519073e-3f
#define DSV3_EXP_P3 4.1665795894e-2f
#define DSV3_EXP_P4 1.6666665459e-1f
#define DSV3_EXP_P5 5.0000001201e-1f
static inline float dsv3_exp_fixed(float x) {
    const float xc = x > -87.0f ? (x < 88.0f ? x : 88.0f) : -87.0f; /* NaN -> -87 here, restored below */
    const float n = floorf(fmaf(xc, DSV3_EXP_LOG2E, 0.5f));           /* [-126, 127] */
    float r = fmaf(n, DSV3_EXP_LN2_HI, xc);
    r = fmaf(n, DSV3_EXP_LN2_LO, r);
    float p = DSV3_EXP_P0;
    p = fmaf(p, r, DSV3_EXP_P1);
    p = fmaf(p, r, DSV3_EXP_P2);
    p = fmaf(p, r, DSV3_EXP_P3);
    p = fmaf(p, r, DSV3_EXP_P4);
    p = fmaf(p, r, DSV3_EXP_P5);
    const float y = fmaf(p * r, r, r) + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {((int32_t)n + 127) << 23}; /* a normal power of two */
    const float e = y * scale.f;
    return x > -87.0f ? (x <= 88.0f ? e : INFINITY) : x != x ? x : 0.0f;
}
/* SiLU (spec §3.8): z * sigmoid(z) as z / (1 + e^-z) */
static inline float dsv3_silu(float z) { return z / (1.0f + dsv3_exp_fixed(-z)); }
/* out[i] = silu(gate[i]) * up[i] for i < n (out may be gate), vectorised; the bits of the scalar
 * dsv3_silu(gate[i]) * up[i] for every i (src/ops/cpu/activation.c). */
void dsv3_swiglu(float *out, const float *gate, const float *up, int64_t n);
static inline float dsv3_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

#endif
