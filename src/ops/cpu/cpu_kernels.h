/* Internal interface between the CPU backend's ISA dispatcher (dispatch.c)
 * and its per-ISA kernels (matmul_scalar.c, matmul_avx2.c, matmul_avx512.c).
 *
 * The numerical contract every ISA path implements bit for bit (the scalar
 * path is the reference):
 *
 *   dot(w, x, n): 32 partial sums ("lanes"); for every full chunk of 32
 *   elements at i = 0, 32, 64, ...:  acc[k] = fmaf(w[i+k], x[i+k], acc[k]),
 *   k < 32; the tail of n % 32 elements goes into lanes 0.. (the other lanes
 *   are left untouched, not "added zero": -0 stays -0); then a fixed pairwise
 *   tree: for w = 16, 8, 4, 2, 1: acc[k] += acc[k + w] for k < w; result acc[0].
 *
 *   Weight decode: BF16/F16 exact; FP8: w = lut[q] * S[r/block_r][c/block_c]
 *   rounded once to f32 (decode_span in kernels.c).
 *
 * So every output element depends only on its weight row and its token's
 * activations: never on T, on which rows are computed together, on the
 * thread split, or on the ISA. */
#ifndef DSV3_OPS_CPU_KERNELS_H
#define DSV3_OPS_CPU_KERNELS_H

#include <stdint.h>

#include "dsv3/dtype.h"
#include "dsv3/ops.h"

#define DSV3_LANES 32 /* partial sums per dot product (see above) */

typedef struct {
    const char *name;
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    /* For o in [o0, o1) and t < T: out[t*ld + (o - obase)] = dot(row o of W, x[t]).
     * Single-threaded; the dispatcher splits rows across threads. Returns 0, or
     * -1 when out of memory (nothing is guaranteed written; callers retry with the
     * scalar kernel, which needs no memory). */
    int (*matmul_block)(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t obase,
                        int64_t o0, int64_t o1);
    /* dst[c] = W[r][c] for c < W->cols (same values as the reference decode). */
    void (*decode_row)(const dsv3_weight *W, int64_t r, float *dst);
} dsv3_cpu_kernels;

extern const dsv3_cpu_kernels dsv3_cpu_kernels_scalar;
extern const dsv3_cpu_kernels dsv3_cpu_kernels_avx2;
extern const dsv3_cpu_kernels dsv3_cpu_kernels_avx512;

/* Reference decode of elements [c0, c0+n) of row r of W into dst (kernels.c). */
void dsv3_cpu_decode_span(const dsv3_weight *W, int64_t r, int64_t c0, int64_t n, float *dst);

/* What the SIMD FP8 decoders need to know of a weight, computed once and remembered in
 * W->fp8_scan (thread-safe: concurrent first calls compute the same bits):
 *  - dsv3_cpu_fp8_scale_flags (the block scales, cheap): DSV3_FP8_FOLD8 / DSV3_FP8_FOLD120 when no
 *    finite scale s overflows in s * 2^8 / s * 2^120 (the E4M3 decoders fold their exponent offset
 *    into the scale, see matmul_avx512.c); DSV3_FP8_POW2 when every scale is a power of two in
 *    [2^-120, 2^7] (DeepSeek's "ue8m0" scales: the decoded weights are exact, and so is a token
 *    scaled by s * 2^120 unless it overflows; matmul_avx2.c d21_e4m3_pow2);
 *  - dsv3_cpu_fp8_scan (a pass over the codes): DSV3_FP8_HAS_NAN (E4M3FN 0x7f/0xff; E5M2 exponent 31
 *    with a nonzero mantissa, or Inf) and DSV3_FP8_MANY_SUBNORMAL (more than one code in 4096 has
 *    exponent field 0 and a nonzero mantissa; block-quantised trained or random weights have ~1 in
 *    10^4); it includes the scale flags.
 * Both return all flags known so far. */
enum {
    DSV3_FP8_SCALES_DONE = 1,
    DSV3_FP8_FOLD8 = 2,
    DSV3_FP8_FOLD120 = 4,
    DSV3_FP8_CODES_DONE = 8,
    DSV3_FP8_HAS_NAN = 16,
    DSV3_FP8_MANY_SUBNORMAL = 32,
    DSV3_FP8_POW2 = 64
};
int dsv3_cpu_fp8_scale_flags(const dsv3_weight *W);
int dsv3_cpu_fp8_scan(const dsv3_weight *W);

/* Fast-path eligibility: FP8 scale blocks must not split a 32-element chunk. */
static inline int dsv3_cpu_blocks_aligned(const dsv3_weight *W) {
    return !(W->dtype == DSV3_F8_E4M3 || W->dtype == DSV3_F8_E5M2) || W->block_c % DSV3_LANES == 0;
}

/* How the SIMD kernels decode a weight (shared by matmul_avx2.c and matmul_avx512.c). */
/* Per-thread scratch, kept between calls (decode makes thousands of small calls per token: no
 * malloc per call; a fresh 256 KB buffer is an mmap, its pages faulted in every time). Buffer `slot`
 * of the calling thread with at least n bytes, 64-byte aligned, grown on demand, freed at thread
 * exit; NULL when out of memory (the caller then fails or takes a path without it, same bits). */
enum { DSV3_SC_CBUF, DSV3_SC_TMP, DSV3_SC_TAIL, DSV3_SC_SBUF, DSV3_SC_XS, DSV3_SC_S, DSV3_SC_ABUF, DSV3_SC_B, /* AMX */
       DSV3_SC_GEMM_ROWS, /* decoded, packed weight rows of the AVX2 GEMM */
       DSV3_SC_GEMM_X,    /* packed activations of the AVX2 GEMM */
       DSV3_SC_XSPLIT,    /* activations permuted for the split BF16 (AVX-512, AVX2) or quad E4M3 (AVX2) tiles, and
                        * (E4M3, power-of-two scales) two copies scaled per row block */
       DSV3_SC_N };
void *dsv3_cpu_scratch(int slot, size_t n);

/* Tokens up to which the AVX-512 matmul decodes weights in registers for all tokens at once (decode,
 * MTP verification, small batches); more go through the decoded-rows GEMM. */
#define DSV3_CPU_DIRECT_MAX_T 4
/* ... and the AVX2 matmul (in token groups of up to 3, each weight tile hot in L1 for the later groups) */
#define DSV3_AVX2_DIRECT_MAX_T 16

enum { K_F32, K_BF16, K_F16, K_E4M3, K_E4M3_UNFOLDED, K_E5M2, K_GENERIC,
       K_E4M3_CLEAN, /* avx512, avx2 decode: K_E4M3 of a weight without NaN codes (no per-chunk check) */
       K_E4M3_DWORD, /* avx512, avx2 decode: ... and with rare subnormal codes (decoded in 32-bit lanes) */
       K_BF16_SPLIT  /* avx512, avx2 tiles: BF16 as even/odd k halves of 32-bit lanes, x split alike (few tokens) */ };
static inline int dsv3_cpu_kind(const dsv3_weight *W) {
    if (!dsv3_cpu_blocks_aligned(W)) return K_GENERIC;
    switch (W->dtype) {
    case DSV3_F32: return K_F32;
    case DSV3_BF16: return K_BF16;
    case DSV3_F16: return K_F16;
    case DSV3_F8_E4M3: return dsv3_cpu_fp8_scale_flags(W) & DSV3_FP8_FOLD8 ? K_E4M3 : K_E4M3_UNFOLDED;
    case DSV3_F8_E5M2: return K_E5M2;
    default: return K_GENERIC;
    }
}

/* The kind the decode kernels use for W (dsv3_cpu_kind's, refined for E4M3): the same values with fewer
 * operations: no per-chunk NaN check for weights without NaN codes (K_E4M3_CLEAN); in 32-bit lanes when
 * subnormal codes are rare too and the scales fold 2^120 (K_E4M3_DWORD). Runs the one-time code scan. */
static inline int dsv3_cpu_fp8_decode_kind(const dsv3_weight *W, int kind) {
    if (kind != K_E4M3 && kind != K_E4M3_UNFOLDED) return kind;
    const int scan = dsv3_cpu_fp8_scan(W);
    if (!(scan & (DSV3_FP8_HAS_NAN | DSV3_FP8_MANY_SUBNORMAL)) && (scan & DSV3_FP8_FOLD120)) return K_E4M3_DWORD;
    if (!(scan & DSV3_FP8_HAS_NAN) && kind == K_E4M3) return K_E4M3_CLEAN;
    return kind;
}

/* One weight row for a tile: data pointer, FP8 scale row, row index (for the generic decode). */
typedef struct {
    const uint8_t *p;
    const float *srow;
    int64_t r;
} row_ref;
/* bytes per element of the dtypes the kernels read (dsv3_dtype_size, inline: called per tile) */
static inline size_t dsv3_cpu_esize(dsv3_dtype dt) {
    return dt == DSV3_F32 ? 4 : dt == DSV3_BF16 || dt == DSV3_F16 ? 2 : dt == DSV3_F8_E4M3 || dt == DSV3_F8_E5M2 ? 1
                                                                                                              : dsv3_dtype_size(dt);
}
static inline row_ref dsv3_cpu_row(const dsv3_weight *W, int64_t r) {
    row_ref rr = {(const uint8_t *)W->data + (size_t)r * (size_t)W->cols * dsv3_cpu_esize(W->dtype),
                  W->scale ? W->scale + (r / W->block_r) * W->scale_cols : NULL, r};
    return rr;
}

#endif
