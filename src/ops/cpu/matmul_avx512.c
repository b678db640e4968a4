/* AVX-512 (F/BW/VL) kernels, bitwise equal to the scalar reference
 * (cpu_kernels.h): the 32 lanes of a dot product are two zmm accumulators
 * (lanes 0-15, 16-31); each lane gets exactly the reference's fmaf() sequence
 * over the 32-element chunks; tails use masked loads and masked FMAs (lanes past
 * the tail are left untouched, as in the reference); the reduction tree is
 * reproduced by in-register halvings (reduce32 below).
 *
 * Matmul structure:
 *  - T <= 4 (decode, MTP verification): a tile of R weight rows x T tokens (R rows
 *    far apart, each read front to back: see matmul_direct); every 32-element
 *    weight chunk is decoded in registers once and used for all T tokens.
 *  - T > 4 (prefill, batches): groups of rows (~128 KiB of weights) swept by every
 *    group of 4 tokens with the same tiles (matmul_block_avx512): the weights come from
 *    memory once and are decoded in registers per token group, from L2. (A GEMM
 *    over an f32 copy of the rows, 4 rows x 3 tokens per tile, measured 1.5-2x
 *    slower at 16-64 tokens on Zen 5: 4 bytes of L2 traffic per weight and token tile.)
 * The whole file is compiled for AVX-512 via the target pragma, independent of
 * -march; it is only called when dispatch.c found the CPU features. */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

#define LANES DSV3_LANES
#define AI static inline __attribute__((always_inline))


/* Fixed tree of the reference over lanes 0-15 (a) and 16-31 (b):
 * w=16: a+b; w=8: low 8 + high 8; w=4, 2, 1 likewise (low operand first). */
AI float reduce32(__m512 a, __m512 b) {
    __m512 v = _mm512_add_ps(a, b);
    __m256 lo = _mm512_castps512_ps256(v), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 y = _mm256_add_ps(lo, hi);
    __m128 z = _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
    z = _mm_add_ps(z, _mm_movehl_ps(z, z));
    z = _mm_add_ss(z, _mm_movehdup_ps(z));
    return _mm_cvtss_f32(z);
}

/* reduce32 of n <= 16 dot products at once: v[i] = a_i + b_i (the w=16 step, done by the caller),
 * then the w=8, 4, 2, 1 steps of all of them together, two vectors per add: at each step the low and
 * high parts of two vectors are shuffled into one pair of operands, so every output lane adds exactly
 * the operands it adds in reduce32 (same tree, same bits) with ~1/3 of the instructions and
 * independent chains. The sum of v[i] lands in res[4 * (i % 4) + i / 4]. */
AI void reduce16_many(const int n, const __m512 *v, float *res) {
    const __m512 z = _mm512_setzero_ps();
    __m512 w[8], u[4], r[2];
    for (int i = 0; i < 8; i++) { /* w=8: w[i] = [8-sums of v[2i] | of v[2i+1]] */
        const __m512 a = 2 * i < n ? v[2 * i] : z, b = 2 * i + 1 < n ? v[2 * i + 1] : z;
        w[i] = 2 * i < n ? _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)))
                         : z;
    }
    for (int i = 0; i < 4; i++) /* w=4: u[i] 128-bit lane L = 4-sums of v[4i + L] */
        u[i] = 4 * i < n ? _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                                         _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)))
                         : z;
    for (int i = 0; i < 2; i++) /* w=2: r[i] lane L = [2-sums of v[8i + L] | of v[8i + 4 + L]] */
        r[i] = 8 * i < n ? _mm512_add_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                                         _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)))
                         : z;
    /* w=1: lane L = sums of v[L], v[4 + L], v[8 + L], v[12 + L] */
    _mm512_storeu_ps(res, _mm512_add_ps(_mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(3, 1, 3, 1))));
}

static float dot_f32_avx512(const float *a, const float *b, int64_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    if (i < n) {
        int64_t len = n - i;
        __mmask16 m0 = len >= 16 ? 0xffff : (__mmask16)((1u << len) - 1);
        __mmask16 m1 = len > 16 ? (__mmask16)((1u << (len - 16)) - 1) : 0;
        acc0 = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(m0, a + i), _mm512_maskz_loadu_ps(m0, b + i), acc0, m0);
        acc1 = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(m1, a + i + 16), _mm512_maskz_loadu_ps(m1, b + i + 16), acc1,
                                     m1);
    }
    return reduce32(acc0, acc1);
}

/* E4M3 codes -> IEEE half bits of (e4m3 value * 2^-8), exactly, subnormals
 * included: sign-extending the byte to 16 bits puts exponent+mantissa (bits 0..6)
 * below copies of the sign (bits 7..15); << 7 moves them to bits 7..13 and the
 * sign to 14..15; the mask keeps bit 15 and bits 7..13. That is a half with
 * exponent field E and mantissa m << 7: 2^(E-15) (1 + m/8) = e4m3 * 2^-8 for
 * E >= 1, and the half subnormal 2^-14 (m/8) = e4m3 * 2^-8 for E = 0. The
 * conversion to f32 (vcvtph2ps) is exact and never produces an f32 subnormal
 * (those would cost microcode assists in the multiplies). */
AI __m256i e4m3_to_half_bits(__m128i b16) {
    __m256i v = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b16), 7);
    return _mm256_and_si256(v, _mm256_set1_epi16((short)0xbf80));
}

/* E4M3 codes -> f32 of (e4m3 value * 2^-120), exactly, in 32-bit lanes (fewer
 * operations than the half route: no vcvtph2ps): sign-extending the byte to 32
 * bits and shifting left by 20 puts mantissa bits at 20..22, exponent bits at
 * 23..26 and sign copies above; the mask keeps bit 31 and bits 20..26. That is
 * an f32 with exponent field E: 2^(E-127) (1 + m/8) = e4m3 * 2^-120 (E >= 1), and
 * the f32 subnormal 2^-126 (m/8) = e4m3 * 2^-120 for E = 0. Multiplying by
 * s * 2^120 (exact while finite) rounds the exact lut[q] * s once, as the
 * reference. NaN codes decode to ordinary numbers, and the f32 subnormals of
 * subnormal codes cost a microcode assist in the multiply (~100 cycles each):
 * only for weights without NaN codes and with at most one subnormal code in
 * 4096 (dsv3_cpu_fp8_scan; ~1 in 10^4 in block-quantised weights). */
AI __m512 e4m3_to_f32_scaled(__m128i b16) {
    __m512i v = _mm512_slli_epi32(_mm512_cvtepi8_epi32(b16), 20);
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0x87f00000u)));
}

/* Bytes of the 32 FP8 codes at p that are NaN (0xff), else 0: E4M3FN 0x7f/0xff,
 * E5M2 (b & 0x7f) > 0x7c (Inf is exact in the half conversion). The decoders
 * below treat NaN codes as ordinary numbers; chunks with any NaN code take the
 * reference decode (tile() checks with these, in 256-bit ops that can use the
 * port the 512-bit units leave free). */
AI __m256i fp8_nan_bytes(const int kind, const uint8_t *p) {
    __m256i b = _mm256_loadu_si256((const __m256i *)p);
    if (kind == K_E5M2) return _mm256_cmpgt_epi8(_mm256_and_si256(b, _mm256_set1_epi8(0x7f)), _mm256_set1_epi8(0x7c));
    return _mm256_cmpeq_epi8(_mm256_or_si256(b, _mm256_set1_epi8((char)0x80)), _mm256_set1_epi8((char)0xff));
}

/* Decodes the 32-element chunk at column i of one row into w[0..1].
 * sc: FP8 scale for the chunk, times 2^8 for K_E4M3 (see e4m3_to_half_bits):
 * the product (q * 2^-8) * (s * 2^8) is the exact real q*s rounded once, i.e.
 * lut[q] * s; K_E4M3_UNFOLDED (s * 2^8 would overflow) multiplies by 2^8 first
 * (exact) and then by s. */
AI void decode32(const int kind, const uint8_t *p, int64_t i, __m512 sc, const dsv3_weight *W, int64_t r, __m512 *w) {
    switch (kind) {
    case K_F32:
        w[0] = _mm512_loadu_ps((const float *)p + i);
        w[1] = _mm512_loadu_ps((const float *)p + i + 16);
        break;
    case K_BF16:
        for (int h = 0; h < 2; h++) {
            __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + 2 * (i + 16 * h))));
            w[h] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        }
        break;
    case K_F16:
        for (int h = 0; h < 2; h++) w[h] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * (i + 16 * h))));
        break;
    case K_E4M3:
    case K_E4M3_CLEAN:
    case K_E4M3_UNFOLDED:
        for (int h = 0; h < 2; h++) {
            __m512 f = _mm512_cvtph_ps(e4m3_to_half_bits(_mm_loadu_si128((const __m128i *)(p + i + 16 * h))));
            if (kind == K_E4M3_UNFOLDED) f = _mm512_mul_ps(f, _mm512_set1_ps(0x1p8f)); /* exact */
            w[h] = _mm512_mul_ps(f, sc);
        }
        break;
    case K_E4M3_DWORD: /* see e4m3_to_f32_scaled */
        for (int h = 0; h < 2; h++) w[h] = _mm512_mul_ps(e4m3_to_f32_scaled(_mm_loadu_si128((const __m128i *)(p + i + 16 * h))), sc);
        break;
    case K_E5M2: /* E5M2 is the top byte of an IEEE half: (b << 8) converts exactly */
        for (int h = 0; h < 2; h++) {
            __m256i hv = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p + i + 16 * h))), 8);
            w[h] = _mm512_mul_ps(_mm512_cvtph_ps(hv), sc);
        }
        break;
    default: {
        float tmp[LANES];
        dsv3_cpu_decode_span(W, r, i, LANES, tmp);
        w[0] = _mm512_loadu_ps(tmp);
        w[1] = _mm512_loadu_ps(tmp + 16);
        break;
    }
    }
}



/* out[t*ldo + j*ostr] = dot(row j, x[t*ldx ...]) for j < R, t < TT; n = row length. */
AI void tile(const int R, const int TT, const int kind, const dsv3_weight *W, const row_ref *rw, const float *x,
             int64_t ldx, int64_t n, float *out, int64_t ldo, int64_t ostr, int64_t pf) {
    const int esz = kind == K_F32 ? 4 : kind == K_BF16 || kind == K_BF16_SPLIT || kind == K_F16 ? 2 : 1;
    __m512 acc[4][4][2]; /* R <= 4, TT <= 4, R * TT <= 12 (fixed sizes keep them in registers) */
    for (int j = 0; j < R; j++)
        for (int t = 0; t < TT; t++) acc[j][t][0] = acc[j][t][1] = _mm512_setzero_ps();
    const int fp8 = kind == K_E4M3 || kind == K_E4M3_UNFOLDED || kind == K_E5M2 || kind == K_E4M3_CLEAN ||
                    kind == K_E4M3_DWORD;
    const int check_nan = fp8 && kind != K_E4M3_CLEAN && kind != K_E4M3_DWORD; /* those have none */
    const int64_t nfull = n - n % LANES, bc = fp8 ? W->block_c : nfull + LANES;
    const float fold = kind == K_E4M3 || kind == K_E4M3_CLEAN ? 0x1p8f : kind == K_E4M3_DWORD ? 0x1p120f : 1.0f;
    /* K_BF16_SPLIT, BF16 without the widening shuffles: a 32-element chunk loaded as 16 dwords is split into
     * the even-k (dword << 16) and the odd-k (dword & 0xffff0000) elements; x comes split the same way
     * (split_x), and at the end the accumulator lanes are permuted back. Every lane still sums the same k in
     * the same order, so the result is bitwise that of the widening decode (and of the other paths). */
    const int split = kind == K_BF16_SPLIT;
    /* original lane l of half 0 is k = l: even l in lane l/2 of the even half, odd l in lane (l-1)/2 of the odd one */
    const __m512i lanes_lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i lanes_hi = _mm512_add_epi32(lanes_lo, _mm512_set1_epi32(8));
    for (int64_t c0 = 0, blk = 0; c0 < nfull; c0 += bc, blk++) { /* FP8: one scale block (multiple of 32 wide) at a time */
        int64_t c1 = c0 + bc < nfull ? c0 + bc : nfull;
        __m512 sc[4];
        for (int j = 0; j < R; j++) sc[j] = _mm512_set1_ps(fp8 ? rw[j].srow[blk] * fold : 1.0f);
        for (int64_t i = c0; i < c1; i += LANES) {
            __m512 w[4][2];
            if (pf && !((i * esz) & 63)) /* one prefetch per cache line (a 1-byte chunk is half a line) */
                for (int j = 0; j < R; j++) _mm_prefetch((const char *)rw[j].p + i * esz + pf, _MM_HINT_T1);
            int special = 0;
            if (check_nan) {
                __m256i any = fp8_nan_bytes(kind, rw[0].p + i);
                for (int j = 1; j < R; j++) any = _mm256_or_si256(any, fp8_nan_bytes(kind, rw[j].p + i));
                special = _mm256_movemask_epi8(any) != 0;
            }
            /* the TT activation chunks stay in registers and the rows are decoded one at a time: with
             * 24 accumulators (4 rows x 3 tokens) that is exactly the 32 registers, so no FMA takes a
             * memory operand */
            __m512 xv[4][2];
            for (int t = 0; t < TT; t++) {
                xv[t][0] = _mm512_loadu_ps(x + t * ldx + i);
                xv[t][1] = _mm512_loadu_ps(x + t * ldx + i + 16);
                if (TT > 1) /* loaded once for all R rows, not in every FMA (see below) */
                    __asm__("" : "+v"(xv[t][0]), "+v"(xv[t][1]));
            }
            for (int j = 0; j < R; j++) {
                if (split) { /* dword d of the chunk holds bf16 k = 2d (low half) and 2d+1 (high half) */
                    __m512i raw = _mm512_loadu_si512((const void *)(rw[j].p + 2 * i));
                    __asm__("" : "+v"(raw)); /* one load, not one per use (the loads bound this loop) */
                    w[j][0] = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
                    w[j][1] = _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32((int)0xffff0000u)));
                } else {
                    decode32(kind, rw[j].p, i, sc[j], W, rw[j].r, w[j]);
                }
                /* With TT > 1, left to itself gcc folds x or w loads into every FMA (30 loads per 24 FMAs in
                 * the 4x3 tile): load bound on cores that load one zmm per cycle (Zen 4: pp512 +49% with
                 * both in registers). One token (decode) measured no better, so its code stays as it was. */
                if (TT > 1) __asm__("" : "+v"(w[j][0]), "+v"(w[j][1]));
                if (__builtin_expect(special, 0)) { /* NaN codes: the lut value NaN (no call: acc stays in registers) */
                    uint32_t m = (uint32_t)_mm256_movemask_epi8(fp8_nan_bytes(kind, rw[j].p + i));
                    w[j][0] = _mm512_mask_mov_ps(w[j][0], (__mmask16)m, _mm512_set1_ps(NAN));
                    w[j][1] = _mm512_mask_mov_ps(w[j][1], (__mmask16)(m >> 16), _mm512_set1_ps(NAN));
                }
                for (int t = 0; t < TT; t++) {
                    acc[j][t][0] = _mm512_fmadd_ps(w[j][0], xv[t][0], acc[j][t][0]);
                    acc[j][t][1] = _mm512_fmadd_ps(w[j][1], xv[t][1], acc[j][t][1]);
                }
            }
        }
    }
    if (split) /* back to the lanes of the other kinds (lane l of half h: k = 16h + l), exactly */
        for (int j = 0; j < R; j++)
            for (int t = 0; t < TT; t++) {
                __m512 e = acc[j][t][0], o = acc[j][t][1];
                acc[j][t][0] = _mm512_permutex2var_ps(e, lanes_lo, o);
                acc[j][t][1] = _mm512_permutex2var_ps(e, lanes_hi, o);
            }
    if (nfull < n) {
        int64_t len = n - nfull;
        __mmask16 m0 = len >= 16 ? 0xffff : (__mmask16)((1u << len) - 1);
        __mmask16 m1 = len > 16 ? (__mmask16)((1u << (len - 16)) - 1) : 0;
        __m512 w[4][2];
        for (int j = 0; j < R; j++) {
            if (kind == K_F32) {
                w[j][0] = _mm512_maskz_loadu_ps(m0, (const float *)rw[j].p + nfull);
                w[j][1] = _mm512_maskz_loadu_ps(m1, (const float *)rw[j].p + nfull + 16);
            } else {
                float tmp[LANES] = {0};
                dsv3_cpu_decode_span(W, rw[j].r, nfull, len, tmp);
                w[j][0] = _mm512_loadu_ps(tmp);
                w[j][1] = _mm512_loadu_ps(tmp + 16);
            }
        }
        for (int t = 0; t < TT; t++) {
            const float *xt = x + t * ldx + nfull;
            __m512 x0 = _mm512_maskz_loadu_ps(m0, xt), x1 = _mm512_maskz_loadu_ps(m1, xt + 16);
            for (int j = 0; j < R; j++) {
                acc[j][t][0] = _mm512_mask3_fmadd_ps(w[j][0], x0, acc[j][t][0], m0);
                acc[j][t][1] = _mm512_mask3_fmadd_ps(w[j][1], x1, acc[j][t][1], m1);
            }
        }
    }
    __m512 v[16];
    float res[16];
    for (int j = 0; j < R; j++)
        for (int t = 0; t < TT; t++) v[j * TT + t] = _mm512_add_ps(acc[j][t][0], acc[j][t][1]);
    reduce16_many(R * TT, v, res);
    for (int j = 0; j < R; j++)
        for (int t = 0; t < TT; t++) {
            const int i = j * TT + t;
            out[t * ldo + j * ostr] = res[4 * (i % 4) + i / 4];
        }
}

/* ------------------------------------------------------------ decode path */

/* Software prefetch distance of the decode path: each weight row stream is
 * prefetched this many bytes ahead (for short rows that lands in the next rows of
 * the same stream, which follow in memory; see matmul_direct). On Zen 5 4-8 KiB
 * measured alike (16 KiB, tuned for adjacent-row tiles on a Xeon, ~5% less). */
#define PF_BYTES 6144

/* NAME runs nt tiles of R rows x TT tokens: tile i has the rows r0 + i + j*h (j < R) and writes
 * out[t*ldo + i + j*h]; the loop over tiles is inside, so the per-row setup is an add, not a call. */
#define DIRECT_FN(R, TT, KIND, NAME)                                                                                  \
    static void NAME(const dsv3_weight *W, const float *x, float *out, int64_t ldo, int64_t r0, int64_t h,            \
                     int64_t nt) {                                                                                    \
        const size_t rb = (size_t)W->cols * (KIND == K_F32 ? 4 : KIND == K_BF16 || KIND == K_BF16_SPLIT ||           \
                                                                   KIND == K_F16 ? 2 : KIND == K_GENERIC ?          \
                                                                   dsv3_dtype_size(W->dtype) : 1);                   \
        for (int64_t i = 0; i < nt; i++) {                                                                            \
            row_ref rw[R];                                                                                            \
            for (int j = 0; j < R; j++) {                                                                             \
                const int64_t r = r0 + i + j * h;                                                                     \
                rw[j].p = (const uint8_t *)W->data + (size_t)r * rb;                                                  \
                rw[j].srow = W->scale ? W->scale + (r / W->block_r) * W->scale_cols : NULL;                           \
                rw[j].r = r;                                                                                          \
            }                                                                                                         \
            tile(R, TT, KIND, W, rw, x, W->cols, W->cols, out + i, ldo, h, PF_BYTES);                                 \
        }                                                                                                             \
    }
#define DIRECT_SET(KIND, SFX)                                                                                          \
    DIRECT_FN(2, 1, KIND, d21_##SFX)                                                                                   \
    DIRECT_FN(4, 1, KIND, d41_##SFX)                                                                                   \
    DIRECT_FN(4, 2, KIND, d42_##SFX)                                                                                      \
    DIRECT_FN(2, 3, KIND, d23_##SFX)                                                                                   \
    DIRECT_FN(2, 4, KIND, d24_##SFX)                                                                                   \
    DIRECT_FN(1, 1, KIND, d11_##SFX) DIRECT_FN(1, 2, KIND, d12_##SFX) DIRECT_FN(1, 3, KIND, d13_##SFX)             \
    DIRECT_FN(1, 4, KIND, d14_##SFX)
DIRECT_SET(K_F32, f32)
DIRECT_SET(K_BF16, bf16)
DIRECT_SET(K_F16, f16)
DIRECT_SET(K_E4M3, e4m3)
DIRECT_SET(K_E4M3_UNFOLDED, e4m3u)
DIRECT_SET(K_E5M2, e5m2)
DIRECT_SET(K_GENERIC, gen)
DIRECT_SET(K_E4M3_CLEAN, e4m3c)
DIRECT_SET(K_E4M3_DWORD, e4m3d)
DIRECT_SET(K_BF16_SPLIT, bf16s)

typedef void (*direct_fn)(const dsv3_weight *, const float *, float *, int64_t, int64_t, int64_t, int64_t);
/* [kind][slot] (see g_direct_rows): {multi-row tile, single-row tile} */
#define DIRECT_ROW(SFX)                                                                                                \
    {{d21_##SFX, d11_##SFX}, {d42_##SFX, d12_##SFX}, {d23_##SFX, d13_##SFX}, {d24_##SFX, d14_##SFX}, {d41_##SFX, d11_##SFX}}
static const direct_fn g_direct[10][5][2] = {DIRECT_ROW(f32),  DIRECT_ROW(bf16),  DIRECT_ROW(f16),
                                             DIRECT_ROW(e4m3), DIRECT_ROW(e4m3u), DIRECT_ROW(e5m2),
                                             DIRECT_ROW(gen),  DIRECT_ROW(e4m3c), DIRECT_ROW(e4m3d),
                                             DIRECT_ROW(bf16s)};
/* [slot]: slots 0-3 are T = 1-4; slot 4 is T = 1 with rows shorter than SHORT_ROW elements, where 4 rows
 * per tile spread the per-tile work (reductions, call) over more weights */
static const int g_direct_rows[5] = {2, 4, 2, 2, 4};
#define SHORT_ROW 512


static void matmul_direct(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t obase,
                          int64_t o0, int64_t o1, int kind) {
    /* The R rows of a tile are h rows apart, not adjacent: each of the R weight streams reads its own run of
     * rows front to back. Adjacent rows (2 KB for a 1024-wide BF16 row, 4 rows per 4 KB page for FP8) make
     * the streams interleave inside a page, which the hardware prefetchers of some cores follow poorly (Zen 5:
     * ~75% of the read bandwidth; ~95% with separate runs). One token takes 2 streams, not 4 (4 chains of
     * FMAs still hide their latency; fewer streams read a little faster). A row's result does not depend
     * on its tile. */
    const int slot = T == 1 && W->cols < SHORT_ROW ? 4 : (int)T - 1, R = g_direct_rows[slot];
    const int64_t h = (o1 - o0) / R;
    g_direct[kind][slot][0](W, x, out + (o0 - obase), ld, o0, h, h);
    g_direct[kind][slot][1](W, x, out + (o0 + R * h - obase), ld, o0 + R * h, 1, o1 - o0 - R * h);
}

/* Activations for K_BF16_SPLIT: each full 32-element chunk of a row becomes its 16 even-k then its 16 odd-k
 * elements; the tail is copied. */
static void split_x(float *xs, const float *x, int64_t T, int64_t n) {
    const int64_t nfull = n - n % LANES;
    const __m512i even_k = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd_k = _mm512_add_epi32(even_k, _mm512_set1_epi32(1));
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * n;
        float *st = xs + t * n;
        for (int64_t i = 0; i < nfull; i += LANES) {
            __m512 a = _mm512_loadu_ps(xt + i), b = _mm512_loadu_ps(xt + i + 16);
            _mm512_storeu_ps(st + i, _mm512_permutex2var_ps(a, even_k, b));
            _mm512_storeu_ps(st + i + 16, _mm512_permutex2var_ps(a, odd_k, b));
        }
        memcpy(st + nfull, xt + nfull, sizeof(float) * (size_t)(n - nfull));
    }
}

#define SPLIT_MIN_T 2              /* tokens from which K_BF16 takes the split (one token measured slower that way) */
#define GROUP_BYTES (128 << 10)    /* 64-256 KiB measured alike (Zen 5, 1 MB L2) */
#define XSPLIT_FLOATS (128 << 10)  /* split activations per block: 512 KiB of scratch per thread */

/* Up to DSV3_CPU_DIRECT_MAX_T tokens (decode): the direct tiles over all rows at once. More: groups of rows of
 * about GROUP_BYTES of weights, each swept by every token group of DSV3_CPU_DIRECT_MAX_T with the same tiles
 * (weights decoded in registers once per token group, from L2 after the first): the weights come from memory
 * once, as bf16/fp8, not as an f32 copy. BF16 activations of 2+ tokens are split (K_BF16_SPLIT) into the
 * thread's scratch, in blocks of tokens of at most XSPLIT_FLOATS (the weights are swept once per block). */
static int matmul_block_avx512(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t obase,
                               int64_t o0, int64_t o1) {
    const int kind = dsv3_cpu_fp8_decode_kind(W, dsv3_cpu_kind(W));
    const int64_t n = W->cols;
    int64_t G = o1 - o0;
    if (T > DSV3_CPU_DIRECT_MAX_T) {
        const int64_t esz = (int64_t)dsv3_dtype_size(W->dtype), rb = n * (esz > 0 ? esz : 1);
        G = rb > 0 ? GROUP_BYTES / rb : 64;
        G = G < 8 ? 8 : G - G % 8;
    }
    const int split = kind == K_BF16 && T >= SPLIT_MIN_T;
    int64_t TB = T;
    float *xs = NULL;
    if (split) {
        TB = XSPLIT_FLOATS / (n > 0 ? n : 1);
        TB = TB < DSV3_CPU_DIRECT_MAX_T ? DSV3_CPU_DIRECT_MAX_T : TB - TB % DSV3_CPU_DIRECT_MAX_T;
        TB = TB < T ? TB : T;
        if (!(xs = dsv3_cpu_scratch(DSV3_SC_XSPLIT, sizeof(float) * (size_t)(TB * n)))) return -1;
    }
    for (int64_t b0 = 0; b0 < T; b0 += TB) {
        const int64_t nb = T - b0 < TB ? T - b0 : TB;
        const float *xb = x + b0 * n;
        if (split) {
            split_x(xs, xb, nb, n);
            xb = xs;
        }
        for (int64_t g0 = o0; g0 < o1; g0 += G) {
            const int64_t g1 = o1 - g0 < G ? o1 : g0 + G;
            for (int64_t t0 = 0; t0 < nb; t0 += DSV3_CPU_DIRECT_MAX_T) {
                const int64_t tt = nb - t0 < DSV3_CPU_DIRECT_MAX_T ? nb - t0 : DSV3_CPU_DIRECT_MAX_T;
                matmul_direct(out + (b0 + t0) * ld, ld, xb + t0 * n, tt, W, obase, g0, g1, split ? K_BF16_SPLIT : kind);
            }
        }
    }
    return 0;
}

static void decode_row_avx512(const dsv3_weight *W, int64_t r, float *dst) {
    int kind = dsv3_cpu_kind(W);
    const int64_t n = W->cols, nfull = n - n % LANES;
    if (kind == K_GENERIC || kind == K_F32) {
        dsv3_cpu_decode_span(W, r, 0, n, dst);
        return;
    }
    row_ref rw = dsv3_cpu_row(W, r);
    const int fp8 = kind == K_E4M3 || kind == K_E4M3_UNFOLDED || kind == K_E5M2;
    const int64_t bc = fp8 ? W->block_c : nfull + LANES;
    const float fold = kind == K_E4M3 ? 0x1p8f : 1.0f;
    for (int64_t c0 = 0, blk = 0; c0 < nfull; c0 += bc, blk++) {
        int64_t c1 = c0 + bc < nfull ? c0 + bc : nfull;
        __m512 sc = _mm512_set1_ps(fp8 ? rw.srow[blk] * fold : 1.0f);
        for (int64_t i = c0; i < c1; i += LANES) {
            __m512 w[2];
            if (fp8) {
                __m256i nan = fp8_nan_bytes(kind == K_E5M2 ? K_E5M2 : K_E4M3, rw.p + i);
                if (!_mm256_testz_si256(nan, nan)) {
                    dsv3_cpu_decode_span(W, r, i, LANES, dst + i);
                    continue;
                }
            }
            switch (kind) { /* constant kind per call for the inlined decoder */
            case K_BF16: decode32(K_BF16, rw.p, i, sc, W, r, w); break;
            case K_F16: decode32(K_F16, rw.p, i, sc, W, r, w); break;
            case K_E4M3: decode32(K_E4M3, rw.p, i, sc, W, r, w); break;
            case K_E4M3_UNFOLDED: decode32(K_E4M3_UNFOLDED, rw.p, i, sc, W, r, w); break;
            default: decode32(K_E5M2, rw.p, i, sc, W, r, w); break;
            }
            _mm512_storeu_ps(dst + i, w[0]);
            _mm512_storeu_ps(dst + i + 16, w[1]);
        }
    }
    if (nfull < n) dsv3_cpu_decode_span(W, r, nfull, n - nfull, dst + nfull);
}

const dsv3_cpu_kernels dsv3_cpu_kernels_avx512 = {"avx512", dot_f32_avx512, matmul_block_avx512, decode_row_avx512};
