/* AVX2+FMA(+F16C) kernels, bitwise equal to the scalar reference
 * (cpu_kernels.h): the 32 lanes of a dot product are four ymm accumulators
 * (lanes 0-7, 8-15, 16-23, 24-31); each lane gets exactly the reference's
 * fmaf() sequence; tails use masked loads and blend the FMA result into the
 * covered lanes only; the reduction tree is reproduced by reduce32.
 *
 * T <= DSV3_AVX2_DIRECT_MAX_T (decode, MTP verification, small batches, experts
 * with few tokens): weights decoded in registers, R rows x up to 3 tokens per
 * tile (more tokens: groups over the same rows). Larger T (prefill): a packed
 * GEMM, rows decoded once per group into an f32 buffer (see "prefill path").
 * FP8 chunks holding a NaN code take the reference decode. */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "avx2_decode.h"
#include "cpu_kernels.h"

#define LANES DSV3_LANES
#define AI static inline __attribute__((always_inline))


/* Reference tree: w=16 pairs lane k with k+16 (a0+a2, a1+a3), w=8 the two
 * results, then the 128-bit halves, then pairs within an xmm (low operand first). */
AI float reduce32(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 y = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
    __m128 z = _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
    z = _mm_add_ps(z, _mm_movehl_ps(z, z));
    z = _mm_add_ss(z, _mm_movehdup_ps(z));
    return _mm_cvtss_f32(z);
}

/* reduce32's first step from the four quarter sums at q[0..3] (8 floats apart): y = (a0 + a2) + (a1 + a3). */
AI __m256 reduce32_y(const float q[4][8]) {
    return _mm256_add_ps(_mm256_add_ps(_mm256_load_ps(q[0]), _mm256_load_ps(q[2])),
                         _mm256_add_ps(_mm256_load_ps(q[1]), _mm256_load_ps(q[3])));
}

/* The rest of reduce32's tree (z = y.lo + y.hi, z + movehl(z), lane 0 + lane 1) for several dot products at
 * once, from their y vectors (reduce32_y). Every sum is reduce32's (operands swapped at most). */
/* [z of ya | z of yb] */
AI __m256 tree_z2(__m256 ya, __m256 yb) {
    return _mm256_add_ps(_mm256_permute2f128_ps(ya, yb, 0x20), _mm256_permute2f128_ps(ya, yb, 0x31));
}
/* z0 + z2, z1 + z3 of the four dot products of tree_z2(a, b) = za, tree_z2(c, d) = zc:
 * [a a c c | b b d d] */
AI __m256 tree_w4(__m256 za, __m256 zc) {
    return _mm256_add_ps(_mm256_shuffle_ps(za, zc, 0x44), _mm256_shuffle_ps(za, zc, 0xEE));
}
/* lane 0 + lane 1 of each pair: [w0's a c, w1's a c | w0's b d, w1's b d] */
AI __m256 tree_sum(__m256 w0, __m256 w1) {
    return _mm256_add_ps(_mm256_shuffle_ps(w0, w1, 0x88), _mm256_shuffle_ps(w0, w1, 0xDD));
}
/* 8 dot products y[0..7]: dot product k's sum in lane REDUCE8_LANE(k) (order 0 2 4 6 1 3 5 7) */
#define REDUCE8_LANE(k) (((k) & 1) ? 4 + (k) / 2 : (k) / 2)
AI __m256 reduce8_tree(const __m256 y[8]) {
    return tree_sum(tree_w4(tree_z2(y[0], y[1]), tree_z2(y[2], y[3])), tree_w4(tree_z2(y[4], y[5]), tree_z2(y[6], y[7])));
}
/* 4 dot products y[0..3], in the same lanes (REDUCE8_LANE(k), k < 4) */
AI __m256 reduce4_tree(const __m256 y[4]) {
    const __m256 w = tree_w4(tree_z2(y[0], y[1]), tree_z2(y[2], y[3]));
    return tree_sum(w, w);
}

/* Lane masks for a tail of len < 32 elements, quarter q (lanes 8q..8q+7). */
AI __m256i tail_mask(int64_t len, int q) {
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(len - 8 * q)), idx);
}

/* The reference tail of one dot product (cpu_kernels.h): the len < 32 decoded weights w (32 floats,
 * zero-padded) times the token's tail x go into lanes 0..len-1 of a[0..3]; the other lanes keep their
 * value (-0 included). */
AI void tail_fma(const float *w, const float *x, int64_t len, __m256 a[4]) {
    for (int q = 0; q < 4; q++) {
        const __m256i m = tail_mask(len, q);
        const __m256 f = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8 * q), _mm256_maskload_ps(x + 8 * q, m), a[q]);
        a[q] = _mm256_blendv_ps(a[q], f, _mm256_castsi256_ps(m));
    }
}

/* The tail of row r (columns nfull..n-1, n - nfull < 32) decoded into tmp, zero-padded to 32 lanes (the
 * zeros: tail_fma's w; not a `= {0}` initializer in the tiles, which gcc compiled to a rep stos per row even
 * without a tail: 27% of a 2-3 token tile). Nothing without a tail. */
AI void decode_tail(const dsv3_weight *W, int64_t r, int64_t nfull, int64_t n, float tmp[LANES]) {
    if (nfull == n) return;
    memset(tmp, 0, sizeof(float) * LANES);
    dsv3_cpu_decode_span(W, r, nfull, n - nfull, tmp);
}

static float dot_f32_avx2(const float *a, const float *b, int64_t n) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int q = 0; q < 4; q++)
            acc[q] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * q), _mm256_loadu_ps(b + i + 8 * q), acc[q]);
    if (i < n)
        for (int q = 0; q < 4; q++) {
            __m256i m = tail_mask(n - i, q);
            __m256 f = _mm256_fmadd_ps(_mm256_maskload_ps(a + i + 8 * q, m), _mm256_maskload_ps(b + i + 8 * q, m), acc[q]);
            acc[q] = _mm256_blendv_ps(acc[q], f, _mm256_castsi256_ps(m));
        }
    return reduce32(acc[0], acc[1], acc[2], acc[3]);
}

/* 8 weights at column i of a row. sc: FP8 scale, times 2^8 for K_E4M3 (see
 * matmul_avx512.c e4m3_to_half_bits: the sign-extended byte << 7, masked with
 * 0xbf80, is the IEEE half of e4m3 * 2^-8, subnormals included). */
AI __m256 decode8(const int kind, const uint8_t *p, int64_t i, float sc) {
    switch (kind) {
    case K_F32: return _mm256_loadu_ps((const float *)p + i);
    case K_BF16: return dsv3_avx2_bf16x8((const uint16_t *)p + i);
    case K_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
    case K_E4M3:
    case K_E4M3_CLEAN: /* K_E4M3 of a weight without NaN codes: the same decode, no per-chunk check */
    case K_E4M3_UNFOLDED: {
        __m128i h = _mm_slli_epi16(_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(p + i))), 7);
        __m256 f = _mm256_cvtph_ps(_mm_and_si128(h, _mm_set1_epi16((short)0xbf80)));
        if (kind == K_E4M3_UNFOLDED) f = _mm256_mul_ps(f, _mm256_set1_ps(0x1p8f)); /* exact */
        return _mm256_mul_ps(f, _mm256_set1_ps(sc));
    }
    case K_E4M3_DWORD: return dsv3_avx2_e4m3x8_scaled(p + i, _mm256_set1_ps(sc)); /* sc folds 2^120 */
    default: { /* K_E5M2: the top byte of an IEEE half */
        __m128i h = _mm_slli_epi16(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(p + i))), 8);
        return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(sc));
    }
    }
}

/* 1 when the 32 FP8 codes at p hold a NaN (E4M3FN: 0x7f/0xff; E5M2: |b| > 0x7c). */
AI int fp8_has_nan(const int kind, const uint8_t *p) {
    __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), _mm256_set1_epi8(0x7f));
    __m256i c = kind == K_E5M2 ? _mm256_cmpgt_epi8(a, _mm256_set1_epi8(0x7c)) : _mm256_cmpeq_epi8(a, _mm256_set1_epi8(0x7f));
    return _mm256_movemask_epi8(c) != 0;
}



/* out[t*ldo + j] = dot(row j, x[t*ldx ...]) for j < R (<= 2), t < TT (<= 3). */
AI void tile(const int R, const int TT, const int kind, const dsv3_weight *W, const row_ref *rw, const float *x,
             int64_t ldx, int64_t n, float *out, int64_t ldo, int64_t ostr) {
    __m256 acc[2][3][4];
    for (int j = 0; j < R; j++)
        for (int t = 0; t < TT; t++)
            for (int q = 0; q < 4; q++) acc[j][t][q] = _mm256_setzero_ps();
    const int fp8 = kind == K_E4M3 || kind == K_E4M3_UNFOLDED || kind == K_E5M2 || kind == K_E4M3_CLEAN ||
                    kind == K_E4M3_DWORD;
    const int check_nan = fp8 && kind != K_E4M3_CLEAN && kind != K_E4M3_DWORD; /* those have none */
    const int64_t nfull = n - n % LANES, bc = fp8 ? W->block_c : nfull + LANES;
    const float fold = kind == K_E4M3 || kind == K_E4M3_CLEAN ? 0x1p8f : kind == K_E4M3_DWORD ? 0x1p120f : 1.0f;
    for (int64_t c0 = 0, blk = 0; c0 < nfull; c0 += bc, blk++) {
        int64_t c1 = c0 + bc < nfull ? c0 + bc : nfull;
        float sc[2];
        for (int j = 0; j < R; j++) sc[j] = fp8 ? rw[j].srow[blk] * fold : 1.0f;
        for (int64_t i = c0; i < c1; i += LANES) {
            int special = kind == K_GENERIC;
            if (check_nan)
                for (int j = 0; j < R; j++) special |= fp8_has_nan(kind, rw[j].p + i);
            if (!special) {
                for (int q = 0; q < 4; q++) {
                    __m256 w[2];
                    for (int j = 0; j < R; j++) w[j] = decode8(kind, rw[j].p, i + 8 * q, sc[j]);
                    for (int t = 0; t < TT; t++) {
                        __m256 xv = _mm256_loadu_ps(x + t * ldx + i + 8 * q);
                        for (int j = 0; j < R; j++) acc[j][t][q] = _mm256_fmadd_ps(w[j], xv, acc[j][t][q]);
                    }
                }
            } else { /* reference decode (generic block shapes, NaN codes) */
                float tmp[2][LANES];
                for (int j = 0; j < R; j++) dsv3_cpu_decode_span(W, rw[j].r, i, LANES, tmp[j]);
                for (int q = 0; q < 4; q++)
                    for (int t = 0; t < TT; t++) {
                        __m256 xv = _mm256_loadu_ps(x + t * ldx + i + 8 * q);
                        for (int j = 0; j < R; j++)
                            acc[j][t][q] = _mm256_fmadd_ps(_mm256_loadu_ps(tmp[j] + 8 * q), xv, acc[j][t][q]);
                    }
            }
        }
    }
    if (nfull < n)
        for (int j = 0; j < R; j++) {
            float tmp[LANES];
            decode_tail(W, rw[j].r, nfull, n, tmp);
            for (int t = 0; t < TT; t++) tail_fma(tmp, x + t * ldx + nfull, n - nfull, acc[j][t]);
        }
    for (int j = 0; j < R; j++)
        for (int t = 0; t < TT; t++) out[t * ldo + j * ostr] = reduce32(acc[j][t][0], acc[j][t][1], acc[j][t][2], acc[j][t][3]);
}

/* ------------------------------------------------------------ decode path */

/* No software prefetch of the weight rows (unlike the AVX-512 path): on Zen 3 the rows stream better
 * without (lm_head GEMV 0.85-0.92 of a plain read of the same bytes with 8-32 KiB ahead, 1.04-1.06 without;
 * bench_decode BF16 +6%). */

#define DIRECT_FN(R, TT, KIND, NAME)                                                                                  \
    static void NAME(const dsv3_weight *W, const row_ref *rw, const float *x, float *out, int64_t ldo, int64_t ostr) { \
        tile(R, TT, KIND, W, rw, x, W->cols, W->cols, out, ldo, ostr);                                                \
    }
#define DIRECT_SET(KIND, SFX)                                                                                          \
    DIRECT_FN(2, 1, KIND, d21_##SFX) DIRECT_FN(1, 1, KIND, d11_##SFX) DIRECT_FN(1, 2, KIND, d12_##SFX)                \
    DIRECT_FN(1, 3, KIND, d13_##SFX)
DIRECT_SET(K_F32, f32)
DIRECT_SET(K_BF16, bf16)
DIRECT_SET(K_F16, f16)
DIRECT_SET(K_E4M3, e4m3)
DIRECT_SET(K_E4M3_UNFOLDED, e4m3u)
DIRECT_SET(K_E5M2, e5m2)
DIRECT_SET(K_GENERIC, gen)
DIRECT_SET(K_E4M3_CLEAN, e4m3c)
DIRECT_SET(K_E4M3_DWORD, e4m3d)

typedef void (*direct_fn)(const dsv3_weight *, const row_ref *, const float *, float *, int64_t, int64_t);
/* [kind][T-1]: {multi-row tile (NULL: none), single-row tile} */
#define DIRECT_ROW(SFX) {{d21_##SFX, d11_##SFX}, {NULL, d12_##SFX}, {NULL, d13_##SFX}}
static const direct_fn g_direct[9][3][2] = {DIRECT_ROW(f32),   DIRECT_ROW(bf16), DIRECT_ROW(f16),
                                            DIRECT_ROW(e4m3),  DIRECT_ROW(e4m3u), DIRECT_ROW(e5m2),
                                            DIRECT_ROW(gen),   DIRECT_ROW(e4m3c), DIRECT_ROW(e4m3d)};


/* One token, BF16, 2 rows h apart, without the widening shuffles: a 32-element chunk is loaded as two
 * vectors of 8 dwords; dword << 16 is the f32 of its even element, dword & 0xffff0000 that of its odd one.
 * The token is split alike once per call (split_token), so accumulator E0 holds the reference lanes
 * 0, 2, .., 14, O0 1, 3, .., 15, E1 16, .., 30, O1 17, .., 31, each with the reference's fmaf sequence;
 * reduce_split (no tail) or unsplit + tail_fma + reduce32 turn them into the reference's dot product. Per 64 weights: 4 + 4 loads, 4 shifts,
 * 4 ands, 8 FMAs (the widening decode: 16 loads, 8 shuffles, 8 shifts). */
static void split_token(const float *x, int64_t nfull, float *xs) {
    for (int64_t i = 0; i < nfull; i += LANES)
        for (int h = 0; h < 2; h++) { /* elements 16h .. 16h+15 -> their 8 even, then their 8 odd */
            const __m256 a = _mm256_loadu_ps(x + i + 16 * h), b = _mm256_loadu_ps(x + i + 16 * h + 8);
            /* shuffle: (0 2 8 10 | 4 6 12 14) and (1 3 9 11 | 5 7 13 15); the 64-bit pairs reordered 0 2 1 3 */
            const __m256 e = _mm256_shuffle_ps(a, b, 0x88), o = _mm256_shuffle_ps(a, b, 0xDD);
            _mm256_storeu_ps(xs + i + 16 * h, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
            _mm256_storeu_ps(xs + i + 16 * h + 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
        }
}

/* (e, o) lane k = reference lanes 2k, 2k+1 -> the reference order: lanes 0-7 and 8-15 */
AI void unsplit(__m256 e, __m256 o, __m256 *lo, __m256 *hi) {
    const __m256 a = _mm256_unpacklo_ps(e, o), b = _mm256_unpackhi_ps(e, o);
    *lo = _mm256_permute2f128_ps(a, b, 0x20);
    *hi = _mm256_permute2f128_ps(a, b, 0x31);
}

/* reduce32 of the split accumulators (d21_bf16_split's E0, O0, E1, O1) without interleaving them back:
 * E0 + E1 holds the reference's a0 + a2 (lanes 0-3) and a1 + a3 (lanes 4-7) at its even lanes, O0 + O1
 * at the odd ones; their 128-bit halves summed are the reference's y at lanes 0, 2, 4, 6 and 1, 3, 5, 7;
 * interleaved, the rest of reduce32's tree. Every sum is the reference's (operands swapped at most). */
AI float reduce_split(__m256 e0, __m256 o0, __m256 e1, __m256 o1) {
    const __m256 se = _mm256_add_ps(e0, e1), so = _mm256_add_ps(o0, o1);
    const __m128 ye = _mm_add_ps(_mm256_castps256_ps128(se), _mm256_extractf128_ps(se, 1)),
                 yo = _mm_add_ps(_mm256_castps256_ps128(so), _mm256_extractf128_ps(so, 1));
    __m128 z = _mm_add_ps(_mm_unpacklo_ps(ye, yo), _mm_unpackhi_ps(ye, yo));
    z = _mm_add_ps(z, _mm_movehl_ps(z, z));
    z = _mm_add_ss(z, _mm_movehdup_ps(z));
    return _mm_cvtss_f32(z);
}

/* The dot product of split accumulators: the reference tree straight from them without a tail (len 0);
 * with one, interleaved back into the reference's lanes, the tail's FMAs (tail_fma: the decoded tail tw,
 * the token's tail xt), reduce32. */
AI float split_result(__m256 e0, __m256 o0, __m256 e1, __m256 o1, const float *tw, const float *xt, int64_t len) {
    if (!len) return reduce_split(e0, o0, e1, o1);
    __m256 a[4];
    unsplit(e0, o0, &a[0], &a[1]);
    unsplit(e1, o1, &a[2], &a[3]);
    tail_fma(tw, xt, len, a);
    return reduce32(a[0], a[1], a[2], a[3]);
}

static void d21_bf16_split(const dsv3_weight *W, const row_ref *rw, const float *xs, const float *x, float *out,
                           int64_t ostr) {
    const int64_t n = W->cols, nfull = n - n % LANES;
    const __m256i himask = _mm256_set1_epi32((int)0xffff0000u);
    __m256 e0[2], o0[2], e1[2], o1[2];
    for (int j = 0; j < 2; j++) e0[j] = o0[j] = e1[j] = o1[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nfull; i += LANES) {
        __m256 xe0 = _mm256_loadu_ps(xs + i), xo0 = _mm256_loadu_ps(xs + i + 8), xe1 = _mm256_loadu_ps(xs + i + 16),
               xo1 = _mm256_loadu_ps(xs + i + 24);
        DSV3_AVX2_PIN(xe0);
        DSV3_AVX2_PIN(xo0);
        DSV3_AVX2_PIN(xe1);
        DSV3_AVX2_PIN(xo1);
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            __m256i v0 = _mm256_loadu_si256((const __m256i *)(rw[j].p + 2 * i)),
                    v1 = _mm256_loadu_si256((const __m256i *)(rw[j].p + 2 * i + 32));
            DSV3_AVX2_PIN(v0); /* loaded once for both its halves */
            DSV3_AVX2_PIN(v1);
            e0[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), xe0, e0[j]);
            o0[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v0, himask)), xo0, o0[j]);
            e1[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), xe1, e1[j]);
            o1[j] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v1, himask)), xo1, o1[j]);
        }
    }
    /* split_result's steps written out: with split_result / decode_tail here this hot one-token tile
     * measured 0.118-0.125 ms against 0.101 (default-model lm_head; gcc laid the accumulators out on
     * the stack in one such build) */
    for (int j = 0; j < 2; j++) {
        if (nfull == n) { /* no tail: the reference tree straight from the split lanes */
            out[j * ostr] = reduce_split(e0[j], o0[j], e1[j], o1[j]);
            continue;
        }
        __m256 a[4];
        unsplit(e0[j], o0[j], &a[0], &a[1]);
        unsplit(e1[j], o1[j], &a[2], &a[3]);
        float tmp[LANES] = {0};
        dsv3_cpu_decode_span(W, rw[j].r, nfull, n - nfull, tmp);
        tail_fma(tmp, x + nfull, n - nfull, a);
        out[j * ostr] = reduce32(a[0], a[1], a[2], a[3]);
    }
}

/* One token, E4M3 in 32-bit lanes (K_E4M3_DWORD), 2 rows h apart, one 32-byte load per 32 weights: dword l
 * of a chunk holds the codes of elements 4l .. 4l+3. 16-bit arithmetic shifts place two codes at a time the
 * way dsv3_avx2_e4m3x8_scaled places one (sign at bit 31 of a dword, the other 7 bits at 26..20 once masked):
 * hi = word >> 4 for the odd bytes, lo = (word << 8) >> 4 for the even ones; element 4l + k is phase k of
 * (lo << 16, hi << 16, lo, hi) & 0x87f00000 (a dword shift brings a low word up). The same values times the
 * same scale: accumulator k, lane l holds the reference's lane 4l + k with its fmaf sequence; the token is
 * permuted alike once per call (quad_token), unquad restores the reference's lanes. Per 32 weights: 1 load,
 * 5 shifts, 4 ands where the widening decode takes 4 extending loads, 4 shifts, 4 ands (an L1-resident
 * microbenchmark: 12.7 -> 14.2-15.8 G weights/s on a Zen 3 core). */
static void quad_token(const float *x, int64_t nfull, float *xq) {
    for (int64_t i = 0; i < nfull; i += LANES)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 8; l++) xq[i + 8 * k + l] = x[i + 4 * l + k];
}

/* Quad-phase accumulators (A[k] lane l: the reference's lane 4l + k) -> the reference's quarters (a[q]: lanes
 * 8q .. 8q+7), a 4 x 8 transpose. */
AI void unquad(const __m256 A[4], __m256 a[4]) {
    const __m256 t0 = _mm256_unpacklo_ps(A[0], A[1]), t1 = _mm256_unpacklo_ps(A[2], A[3]);
    const __m256 t2 = _mm256_unpackhi_ps(A[0], A[1]), t3 = _mm256_unpackhi_ps(A[2], A[3]);
    /* u0: reference lanes 0-3 | 16-19, u1: 4-7 | 20-23, u2: 8-11 | 24-27, u3: 12-15 | 28-31 */
    const __m256 u0 = _mm256_shuffle_ps(t0, t1, 0x44), u1 = _mm256_shuffle_ps(t0, t1, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t2, t3, 0x44), u3 = _mm256_shuffle_ps(t2, t3, 0xEE);
    a[0] = _mm256_permute2f128_ps(u0, u1, 0x20);
    a[1] = _mm256_permute2f128_ps(u2, u3, 0x20);
    a[2] = _mm256_permute2f128_ps(u0, u1, 0x31);
    a[3] = _mm256_permute2f128_ps(u2, u3, 0x31);
}

/* The 32 E4M3 codes v of a chunk in 32-bit lanes: phase k of each dword (element 4l + k of the chunk in lane l)
 * as the code times 2^-120 (f32 bits: sign at 31, the other 7 bits at 26..20; see above). */
AI void e4m3_dword_phases(__m256i v, __m256i d[4]) {
    const __m256i m = _mm256_set1_epi32((int)0x87f00000u);
    const __m256i hi = _mm256_srai_epi16(v, 4), lo = _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 4);
    d[0] = _mm256_and_si256(_mm256_slli_epi32(lo, 16), m);
    d[1] = _mm256_and_si256(_mm256_slli_epi32(hi, 16), m);
    d[2] = _mm256_and_si256(lo, m);
    d[3] = _mm256_and_si256(hi, m);
}

/* The dot product of row rw from its quad-phase accumulators A (and the row's tail: the reference decode). */
AI float quad_result(const dsv3_weight *W, const row_ref *rw, const __m256 A[4], const float *x) {
    const int64_t n = W->cols, nfull = n - n % LANES;
    __m256 a[4];
    unquad(A, a);
    if (nfull < n) {
        float tmp[LANES];
        decode_tail(W, rw->r, nfull, n, tmp);
        tail_fma(tmp, x + nfull, n - nfull, a);
    }
    return reduce32(a[0], a[1], a[2], a[3]);
}

/* The one-token E4M3 tile of rows rw[0], rw[1] on tokens xt[0], xt[1] (quad_token's layout): pow2 0, the token
 * itself for both rows, each weight times its block scale (s * 2^120); pow2 1, each row's token scaled by its
 * scales (d21_e4m3_pow2 below), no multiply. */
AI void dword_tile(const int pow2, const dsv3_weight *W, const row_ref *rw, const float *const xt[2], const float *x,
                   float *out, int64_t ostr) {
    const int64_t n = W->cols, nfull = n - n % LANES, bc = pow2 ? nfull + LANES : W->block_c; /* pow2: one pass */
    __m256 A[2][4];
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < 4; k++) A[j][k] = _mm256_setzero_ps();
    for (int64_t c0 = 0, blk = 0; c0 < nfull; c0 += bc, blk++) {
        const int64_t c1 = c0 + bc < nfull ? c0 + bc : nfull;
        __m256 S[2];
        for (int j = 0; j < 2 && !pow2; j++) S[j] = _mm256_set1_ps(rw[j].srow[blk] * 0x1p120f);
        for (int64_t i = c0; i < c1; i += LANES) {
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                __m256i d[4];
                e4m3_dword_phases(_mm256_loadu_si256((const __m256i *)(rw[j].p + i)), d);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    const __m256 w = pow2 ? _mm256_castsi256_ps(d[k]) : _mm256_mul_ps(_mm256_castsi256_ps(d[k]), S[j]);
                    A[j][k] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xt[j] + i + 8 * k), A[j][k]);
                }
            }
        }
    }
    for (int j = 0; j < 2; j++) out[j * ostr] = quad_result(W, &rw[j], A[j], x);
}

AI void d21_e4m3_quad(const dsv3_weight *W, const row_ref *rw, const float *xq, const float *x, float *out, int64_t ostr) {
    const float *const xt[2] = {xq, xq};
    dword_tile(0, W, rw, xt, x, out, ostr);
}

/* Rows o0 + i and o0 + h + i, i < h, by d21_e4m3_quad (out: row o0 at out[0]). Not inlined into matmul_direct:
 * there it slowed the BF16 one-token tile inlined beside it (default-model lm_head 0.102 -> 0.139 ms). */
__attribute__((noinline)) static void rows_e4m3_quad(const dsv3_weight *W, int64_t o0, int64_t h, const float *xq,
                                                     const float *x, float *out) {
    for (int64_t i = 0; i < h; i++) {
        const row_ref rw[2] = {dsv3_cpu_row(W, o0 + i), dsv3_cpu_row(W, o0 + h + i)};
        d21_e4m3_quad(W, rw, xq, x, out + i, h);
    }
}

/* One token, E4M3 in 32-bit lanes, every block scale a power of two (DSV3_FP8_POW2): the reference's weight
 * w = code * s is then exact, and so is the token scaled by a power of two, xs = x * (s * 2^120), unless it
 * overflows: fma(w, x, acc) = fma(code * 2^-120, xs, acc) bitwise (the same exact product). The tile takes
 * the token scaled per column block of the row's row block (xs, built once per row block) and skips
 * d21_e4m3_quad's multiply per weight (4 of its 17 vector operations per 32 weights, on the two FMA pipes): an L2-resident
 * microbenchmark 5.2 -> 3.7 TSC cycles per 32 weights per row, rows read from memory by 2 threads 25 -> 35
 * GB/s (Zen 3). DeepSeek-V3.1 and later checkpoints have such scales ("scale_fmt": "ue8m0"); `dsv3
 * quantize --scale-fmt ue8m0` writes them. */
AI void d21_e4m3_pow2(const dsv3_weight *W, const row_ref *rw, const float *const xs[2], const float *x, float *out,
                      int64_t ostr) {
    dword_tile(1, W, rw, xs, x, out, ostr);
}

/* xs = xq scaled by srow[b] * 2^120 over column block b (nfull columns, blocks of a whole number of chunks).
 * Returns 1 when every scaled value is finite (the scaling is then exact), else 0. */
static int scale_token_blocks(const float *xq, const float *srow, int64_t bc, int64_t nfull, float *xs) {
    const __m256 inf = _mm256_set1_ps(INFINITY), abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 fin = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int64_t c0 = 0, b = 0; c0 < nfull; c0 += bc, b++) {
        const int64_t c1 = c0 + bc < nfull ? c0 + bc : nfull;
        const __m256 sv = _mm256_set1_ps(srow[b] * 0x1p120f);
        for (int64_t c = c0; c < c1; c += 8) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xq + c), sv);
            _mm256_storeu_ps(xs + c, v);
            fin = _mm256_and_ps(fin, _mm256_cmp_ps(_mm256_and_ps(v, abs_mask), inf, _CMP_LT_OQ)); /* NaN: false */
        }
    }
    return _mm256_movemask_ps(fin) == 0xff;
}

/* rows_e4m3_quad's rows by d21_e4m3_pow2, each tile row with the token scaled for its row block (xs: 2 x nfull
 * floats); a row block whose scaled token is not finite takes d21_e4m3_quad (the same bits). */
__attribute__((noinline)) static void rows_e4m3_pow2(const dsv3_weight *W, int64_t o0, int64_t h, const float *xq,
                                                     float *xs, const float *x, float *out) {
    const int64_t nfull = W->cols - W->cols % LANES;
    float *buf[2] = {xs, xs + nfull};
    int64_t left[2] = {0, 0};
    int ok[2] = {0, 0};
    row_ref rw[2] = {{NULL, NULL, 0}, {NULL, NULL, 0}}; /* set at each row block's first row */
    for (int64_t i = 0; i < h; i++) {
        for (int j = 0; j < 2; j++) {
            if (left[j]-- == 0) { /* the row starts its row block here (or the call does) */
                rw[j] = dsv3_cpu_row(W, o0 + j * h + i);
                left[j] = W->block_r - rw[j].r % W->block_r - 1;
                ok[j] = scale_token_blocks(xq, rw[j].srow, W->block_c, nfull, buf[j]);
            }
            rw[j].r = o0 + j * h + i; /* srow stays the row block's */
            rw[j].p = (const uint8_t *)W->data + (size_t)rw[j].r * (size_t)W->cols;
        }
        const float *const xsj[2] = {buf[0], buf[1]};
        if (ok[0] && ok[1]) d21_e4m3_pow2(W, rw, xsj, x, out + i, h);
        else d21_e4m3_quad(W, rw, xq, x, out + i, h);
    }
}

/* Rows per tile: 4 for 2 tokens (8 accumulators + 4 w + 1 x), else 3 (3 x 3: 9 + 3 + 1; the 3 x 2 groups
 * of 4, 5, 7.. tokens: 6 + 3 + 1) */
#define QROWS(T) ((T) == 2 ? 4 : 3)
/* tokens per group: at most 3 (the 3 x 4 split tile, 16 registers with its mask, measured slower than
 * two 3 x 2 groups: tiny-model lm_head T=4 0.557 vs 0.315 ms) */
#define QGROUP 3

/* T = 2..DSV3_AVX2_DIRECT_MAX_T tokens (MTP verification, small batches, experts with few tokens): R rows
 * x TT <= 3 tokens per tile in four passes, each over one quarter of the lanes (as the prefill GEMM), so
 * that R*TT accumulators fit the 16 ymm: a 1-row x 3-token tile holding all four quarters loads 4 weight
 * and 12 activation vectors per 12 FMAs (load bound); here 3 rows x 3 tokens load 3 + 3 per 9. Each
 * weight is decoded in the pass of its quarter (the rows' later passes read them from L1/L2). More tokens
 * run in groups of 2-3 over the same rows (matmul_direct), which are in L1 by then. For the kinds without
 * a per-chunk NaN check.
 * K_BF16_SPLIT (BF16): the passes run over the one-token split's lane sets E0, O0, E1, O1 instead (a
 * 32-byte load of 16 weights: dword << 16 the even ones, dword & 0xffff0000 the odd ones; the split tokens
 * xs in split_token's layout, token t at xs + t * xld): one shift or and per 8 weights, where the widening
 * decode needs a zero-extension and a shift; split_result reduces them. */
AI void tile_passes(const int R, const int TT, const int kind, const dsv3_weight *W, const row_ref *rw, const float *xs,
                    int64_t xld, const float *x, int64_t n, float *out, int64_t ldo, int64_t ostr) {
    const int split = kind == K_BF16_SPLIT, fp8 = kind == K_E4M3_CLEAN || kind == K_E4M3_DWORD;
    const int64_t nfull = n - n % LANES, bc = fp8 ? W->block_c : nfull + LANES;
    const float fold = kind == K_E4M3_CLEAN ? 0x1p8f : kind == K_E4M3_DWORD ? 0x1p120f : 1.0f;
    const __m256i himask = _mm256_set1_epi32((int)0xffff0000u);
    float part[4][QGROUP][4][8] __attribute__((aligned(32)));
    /* Weights read from memory (W->streamed): the next tile's rows (each rb bytes after this tile's) are
     * prefetched, quarter p of their bytes during pass p, one line per row every few chunks: only pass 0
     * reads this tile's rows from memory, passes 1-3 run from L1 and would leave the memory idle (the
     * hardware prefetcher learns from misses). bench-1b BF16 decode steps of 2 / 3 / 4 tokens, in-process
     * A/B: 17.4 / 20.8 / 26.1 -> 14.7 / 18.2 / 24.2 ms; a 6-layer F32 model 1986 / 2285 / 2558 -> 1743 /
     * 1908 / 2256 us. Weights in cache (the default model): 2-6% slower, so not there. */
    const int pf = W->streamed;
    const int64_t rb = n * (int64_t)dsv3_cpu_esize(W->dtype), pf_step = nfull ? rb / (4 * (nfull / LANES)) : 0;
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        int64_t pfo = rb + p * (rb / 4);
        /* quarter kinds: chunk i + 8p, the token at the same column; split: the half 16 * (p >> 1) of the
         * chunk at i, the token's split lanes of pass p */
        const int64_t i0 = split ? 0 : 8 * p, wo = split ? 16 * (p >> 1) : 0, xo = split ? 16 * (p >> 1) + 8 * (p & 1) : 0;
        const float *xp = split ? xs + xo : x;
        const int64_t xstep = split ? xld : n;
        __m256 acc[4][QGROUP];
#pragma GCC unroll 4
        for (int j = 0; j < R; j++)
#pragma GCC unroll 4
            for (int t = 0; t < TT; t++) acc[j][t] = _mm256_setzero_ps();
        for (int64_t c0 = 0, blk = 0; c0 < nfull; c0 += bc, blk++) {
            const int64_t c1 = c0 + bc < nfull ? c0 + bc : nfull;
            float sc[4];
#pragma GCC unroll 4
            for (int j = 0; j < R; j++) sc[j] = fp8 ? rw[j].srow[blk] * fold : 1.0f;
            for (int64_t i = c0 + i0; i < c1; i += LANES) {
                if (pf) {
#pragma GCC unroll 4
                    for (int j = 0; j < R; j++) _mm_prefetch((const char *)rw[j].p + pfo, _MM_HINT_T0); /* never faults */
                    pfo += pf_step;
                }
                __m256 w[4];
#pragma GCC unroll 4
                for (int j = 0; j < R; j++) {
                    if (split) {
                        const __m256i v = _mm256_loadu_si256((const __m256i *)(rw[j].p + 2 * (i + wo)));
                        w[j] = _mm256_castsi256_ps((p & 1) ? _mm256_and_si256(v, himask) : _mm256_slli_epi32(v, 16));
                    } else {
                        w[j] = decode8(kind, rw[j].p, i, sc[j]);
                    }
                    DSV3_AVX2_PIN(w[j]);
                }
#pragma GCC unroll 4
                for (int t = 0; t < TT; t++) {
                    __m256 xv = _mm256_loadu_ps(xp + t * xstep + i);
                    DSV3_AVX2_PIN(xv);
#pragma GCC unroll 4
                    for (int j = 0; j < R; j++) acc[j][t] = _mm256_fmadd_ps(w[j], xv, acc[j][t]);
                }
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < R; j++)
#pragma GCC unroll 4
            for (int t = 0; t < TT; t++) _mm256_store_ps(part[j][t][p], acc[j][t]);
    }
    for (int j = 0; j < R; j++) {
        float tmp[LANES];
        decode_tail(W, rw[j].r, nfull, n, tmp);
        for (int t = 0; t < TT; t++) {
            __m256 a[4];
            for (int q = 0; q < 4; q++) a[q] = _mm256_load_ps(part[j][t][q]);
            const float *xt = x + t * n + nfull;
            if (split) {
                out[t * ldo + j * ostr] = split_result(a[0], a[1], a[2], a[3], tmp, xt, n - nfull);
            } else {
                if (nfull < n) tail_fma(tmp, xt, n - nfull, a);
                out[t * ldo + j * ostr] = reduce32(a[0], a[1], a[2], a[3]);
            }
        }
    }
}

typedef void (*quarter_fn)(const dsv3_weight *, const row_ref *, const float *, int64_t, const float *, float *, int64_t,
                           int64_t);
#define QUARTER_FN(R, TT, KIND, NAME)                                                                                 \
    static void NAME(const dsv3_weight *W, const row_ref *rw, const float *xs, int64_t xld, const float *x, float *out, \
                     int64_t ldo, int64_t ostr) {                                                                      \
        tile_passes(R, TT, KIND, W, rw, xs, xld, x, W->cols, out, ldo, ostr);                                          \
    }
/* [R == 4][TT - 1]: 4 rows only for TT = 2; no TT = 1 (T >= 2 splits into groups of 2-3) */
#define QUARTER_SET(KIND, SFX)                                                                                         \
    QUARTER_FN(3, 2, KIND, q32_##SFX) QUARTER_FN(3, 3, KIND, q33_##SFX) QUARTER_FN(4, 2, KIND, q42_##SFX)
QUARTER_SET(K_F32, f32)
QUARTER_SET(K_BF16_SPLIT, bf16s)
QUARTER_SET(K_F16, f16)
QUARTER_SET(K_E4M3_CLEAN, e4m3c)
QUARTER_SET(K_E4M3_DWORD, e4m3d)
#define QROW(SFX) {{NULL, q32_##SFX, q33_##SFX}, {NULL, q42_##SFX, NULL}}
/* [kind][R == 4][TT - 1], BF16 by its split tiles; NULL kinds: per-chunk checks (1-row tiles) */
static const quarter_fn g_quarters[9][2][QGROUP] = {
    [K_F32] = QROW(f32), [K_BF16] = QROW(bf16s), [K_F16] = QROW(f16), [K_E4M3_CLEAN] = QROW(e4m3c),
    [K_E4M3_DWORD] = QROW(e4m3d)};

/* T tokens as ng groups of near-equal sizes of at most gmax: sizes into g; returns ng. */
static int token_groups(int64_t T, int gmax, int g[DSV3_AVX2_DIRECT_MAX_T]) {
    const int ng = (int)((T + gmax - 1) / gmax);
    for (int k = 0; k < ng; k++) g[k] = (int)(T * (k + 1) / ng - T * k / ng);
    return ng;
}

static void matmul_direct(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t obase,
                          int64_t o0, int64_t o1, int kind) {
    const int64_t n = W->cols, nfull = n - n % LANES;
    /* BF16: the token(s) split for the split tiles (without scratch: the widening tiles, same bits) */
    float *xs = kind == K_BF16 ? dsv3_cpu_scratch(DSV3_SC_XSPLIT, sizeof(float) * (size_t)(T * (nfull ? nfull : 1))) : NULL;
    if (xs)
        for (int64_t t = 0; t < T; t++) split_token(x + t * n, nfull, xs + t * nfull);
    /* one token, E4M3 in 32-bit lanes: the token permuted for d21_e4m3_quad (power-of-two scales: and room for
     * rows_e4m3_pow2's two scaled copies) */
    const int pow2 = T == 1 && kind == K_E4M3_DWORD && (dsv3_cpu_fp8_scale_flags(W) & DSV3_FP8_POW2) && nfull;
    float *xq = T == 1 && kind == K_E4M3_DWORD
                    ? dsv3_cpu_scratch(DSV3_SC_XSPLIT, sizeof(float) * (size_t)(nfull ? nfull : 1) * (pow2 ? 3 : 1))
                    : NULL;
    if (xq) quad_token(x, nfull, xq);
    /* tiles of R rows h apart, each weight stream reading its own run of rows in order (as the AVX-512
     * path; adjacent rows interleave two streams in a page) */
    int64_t o = o0;
    if (T == 1) {
        const int64_t h = (o1 - o0) / 2;
        if (xq && pow2) rows_e4m3_pow2(W, o0, h, xq, xq + nfull, x, out + (o0 - obase));
        else if (xq) rows_e4m3_quad(W, o0, h, xq, x, out + (o0 - obase));
        else
            for (int64_t i = 0; i < h; i++) {
                row_ref rw[2] = {dsv3_cpu_row(W, o0 + i), dsv3_cpu_row(W, o0 + h + i)};
                if (xs) d21_bf16_split(W, rw, xs, x, out + (o0 + i - obase), h);
                else g_direct[kind][0][0](W, rw, x, out + (o0 + i - obase), ld, h);
            }
        o = o0 + 2 * h;
    } else if (g_quarters[kind][0][1] && (kind != K_BF16 || xs)) {
        int g[DSV3_AVX2_DIRECT_MAX_T];
        const int ng = token_groups(T, QGROUP, g), R = QROWS(T);
        const int64_t h = (o1 - o0) / R;
        for (int64_t i = 0; i < h; i++) {
            row_ref rw[4];
            for (int j = 0; j < R; j++) rw[j] = dsv3_cpu_row(W, o0 + i + j * h);
            for (int k = 0, t0 = 0; k < ng; t0 += g[k++])
                g_quarters[kind][R == 4][g[k] - 1](W, rw, xs + t0 * nfull, nfull, x + t0 * n,
                                                     out + t0 * ld + (o0 + i - obase), ld, h);
        }
        o = o0 + R * h;
    }
    /* the other rows (and the kinds with per-chunk checks): 1-row tiles of up to 3 tokens */
    int g[DSV3_AVX2_DIRECT_MAX_T];
    const int ng = token_groups(T, 3, g);
    for (; o < o1; o++) {
        row_ref rw = dsv3_cpu_row(W, o);
        for (int k = 0, t0 = 0; k < ng; t0 += g[k++]) g_direct[kind][g[k] - 1][1](W, &rw, x + t0 * n, out + t0 * ld + (o - obase), ld, 1);
    }
}

/* ----------------------------------------------------------- prefill path */

/* T > DSV3_AVX2_DIRECT_MAX_T: a packed GEMM. Element i of a row belongs to lane i % 32 of chunk i / 32 (cpu_kernels.h),
 * and the four quarters of a dot product's lanes (0-7, 8-15, 16-23, 24-31) are independent sums. So
 * rows (decoded to f32) and tokens are stored quarter-major: quarter q of chunk c at [q*L + 8*c],
 * L = 8 * chunks. A tile of GR rows x GTT tokens runs one quarter at a time with one ymm accumulator
 * per (row, token): 3 + 4 loads per 12 FMAs (FMA bound), against 16 per 12 for the unpacked 1 x 3
 * tile it replaces (load bound). The quarter sums go through the reference tree (reduce32). The tail
 * chunk is padded with w = +0 and x = -0: fma(+0, -0, acc) = acc + (-0) = acc exactly for every acc
 * (-0 stays -0), so the padded lanes are the reference's untouched ones. */
#define GR 3        /* rows per tile */
#define GTT 4       /* tokens per tile */
#define GTOK_BYTES (8 << 20) /* packed tokens per block: ~8 MB (a weight is read from memory once per block) */
#define GROW_BYTES (192 << 10) /* decoded rows per group: ~192 KB, in L2 with a token group's 4 rows of x */

/* out[t*ld + j] = dot(packed row j, packed token t) for j < R, t < TT; rows ws apart, tokens xs apart. */
AI void gemm_tile(const int R, const int TT, const float *w, int64_t ws, const float *x, int64_t xs, int64_t L,
                  float *out, int64_t ld) {
    float part[GR][GTT][4][8] __attribute__((aligned(32)));
    for (int q = 0; q < 4; q++) {
        __m256 acc[GR][GTT];
        for (int j = 0; j < R; j++)
            for (int t = 0; t < TT; t++) acc[j][t] = _mm256_setzero_ps();
        const float *wq = w + q * L, *xq = x + q * L;
        for (int64_t k = 0; k < L; k += 8) {
            __m256 wv[GR];
            /* w and x pinned in registers (12 accumulators + 3 w + 1 x = 16 ymm): gcc would otherwise fold
             * the loads of one of them into every FMA, 15 loads per 12 FMAs, load bound at two 256-bit
             * loads per cycle */
            for (int j = 0; j < R; j++) {
                wv[j] = _mm256_load_ps(wq + j * ws + k);
                DSV3_AVX2_PIN(wv[j]);
            }
            for (int t = 0; t < TT; t++) {
                __m256 xv = _mm256_load_ps(xq + t * xs + k);
                DSV3_AVX2_PIN(xv);
                for (int j = 0; j < R; j++) acc[j][t] = _mm256_fmadd_ps(wv[j], xv, acc[j][t]);
            }
        }
        for (int j = 0; j < R; j++)
            for (int t = 0; t < TT; t++) _mm256_store_ps(part[j][t][q], acc[j][t]);
    }
    if (R == GR && TT == GTT) { /* 12 dot products: reduce32's tree on 8 + 4 at once (reduce8_tree) */
        __m256 y[12];
        for (int t = 0; t < TT; t++)
            for (int j = 0; j < R; j++) y[t * R + j] = reduce32_y(part[j][t]);
        float res[16] __attribute__((aligned(32)));
        _mm256_store_ps(res, reduce8_tree(y));
        _mm256_store_ps(res + 8, reduce4_tree(y + 8));
        for (int o = 0; o < 12; o++) out[(o / R) * ld + o % R] = res[(o & 8) + REDUCE8_LANE(o & 7)];
        return;
    }
    for (int j = 0; j < R; j++)
        for (int t = 0; t < TT; t++)
            out[t * ld + j] = reduce32(_mm256_load_ps(part[j][t][0]), _mm256_load_ps(part[j][t][1]),
                                       _mm256_load_ps(part[j][t][2]), _mm256_load_ps(part[j][t][3]));
}

#define GEMM_FN(R, TT)                                                                                                 \
    static void gemm_##R##TT(const float *w, int64_t ws, const float *x, int64_t xs, int64_t L, float *out,            \
                             int64_t ld) {                                                                             \
        gemm_tile(R, TT, w, ws, x, xs, L, out, ld);                                                                    \
    }
#define GEMM_ROW(R) GEMM_FN(R, 1) GEMM_FN(R, 2) GEMM_FN(R, 3) GEMM_FN(R, 4)
GEMM_ROW(1) GEMM_ROW(2) GEMM_ROW(3)
typedef void (*gemm_fn)(const float *, int64_t, const float *, int64_t, int64_t, float *, int64_t);
static const gemm_fn g_gemm[GR][GTT] = {{gemm_11, gemm_12, gemm_13, gemm_14},
                                        {gemm_21, gemm_22, gemm_23, gemm_24},
                                        {gemm_31, gemm_32, gemm_33, gemm_34}};

/* 32 consecutive f32 values at src into the four quarters of chunk c of a packed vector. */
AI void pack_chunk(const float *src, float *dst, int64_t c, int64_t L) {
    for (int q = 0; q < 4; q++) _mm256_store_ps(dst + q * L + 8 * c, _mm256_loadu_ps(src + 8 * q));
}

/* The full 32-element chunks of row r of W decoded (the reference's values, kind = dsv3_cpu_kind(W)):
 * quarter q of chunk c goes to dst + c*cstride + q*qstride (a plain row: 32, 8; packed: 8, L). */
static void decode_chunks(const dsv3_weight *W, int kind, int64_t r, float *dst, int64_t cstride, int64_t qstride) {
    const int64_t n = W->cols, nfull = n - n % LANES;
    const row_ref rw = dsv3_cpu_row(W, r);
    const int fp8 = kind == K_E4M3 || kind == K_E4M3_UNFOLDED || kind == K_E5M2;
    const int64_t bc = fp8 ? W->block_c : nfull + LANES;
    const float fold = kind == K_E4M3 ? 0x1p8f : 1.0f;
    float tmp[LANES];
    for (int64_t c0 = 0, blk = 0; c0 < nfull; c0 += bc, blk++) {
        const int64_t c1 = c0 + bc < nfull ? c0 + bc : nfull;
        const float sc = fp8 ? rw.srow[blk] * fold : 1.0f;
        for (int64_t i = c0; i < c1; i += LANES) {
            float *d = dst + i / LANES * cstride;
            if (kind == K_GENERIC || (fp8 && fp8_has_nan(kind, rw.p + i))) {
                dsv3_cpu_decode_span(W, r, i, LANES, tmp);
                for (int q = 0; q < 4; q++) _mm256_storeu_ps(d + q * qstride, _mm256_loadu_ps(tmp + 8 * q));
                continue;
            }
#define DECODE_KIND(KIND)                                                                                              \
    case KIND:                                                                                                         \
        for (int q = 0; q < 4; q++) _mm256_storeu_ps(d + q * qstride, decode8(KIND, rw.p, i + 8 * q, sc));            \
        break;
            switch (kind) {
                DECODE_KIND(K_F32)
                DECODE_KIND(K_BF16)
                DECODE_KIND(K_F16)
                DECODE_KIND(K_E4M3)
                DECODE_KIND(K_E4M3_UNFOLDED)
                default: DECODE_KIND(K_E5M2)
            }
#undef DECODE_KIND
        }
    }
}

/* Row r of W, decoded, packed into dst (4L floats). */
static void pack_row(const dsv3_weight *W, int kind, int64_t r, float *dst, int64_t L) {
    const int64_t n = W->cols, nfull = n - n % LANES;
    decode_chunks(W, kind, r, dst, 8, L);
    if (nfull < n) {
        float tmp[LANES]; /* +0 pads (see above) */
        decode_tail(W, r, nfull, n, tmp);
        pack_chunk(tmp, dst, nfull / LANES, L);
    }
}

/* Token x (n floats) packed into dst (4L floats), the tail padded with -0. */
static void pack_token(const float *x, int64_t n, float *dst, int64_t L) {
    const int64_t nfull = n - n % LANES;
    for (int64_t i = 0; i < nfull; i += LANES) pack_chunk(x + i, dst, i / LANES, L);
    if (nfull < n) {
        float tmp[LANES];
        for (int k = 0; k < LANES; k++) tmp[k] = nfull + k < n ? x[nfull + k] : -0.0f;
        pack_chunk(tmp, dst, nfull / LANES, L);
    }
}

static int matmul_gemm(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t obase, int64_t o0,
                       int64_t o1) {
    const int64_t n = W->cols, L = 8 * ((n + LANES - 1) / LANES), P = 4 * L; /* P: floats per packed vector */
    const int kind = dsv3_cpu_kind(W);
    if (P == 0) { /* no columns: every dot product is the reference's empty sum, +0 */
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = o0; o < o1; o++) out[t * ld + (o - obase)] = 0.0f;
        return 0;
    }
    int64_t G = GROW_BYTES / (4 * P) / GR * GR; /* rows per decoded group, a multiple of GR */
    G = G < GR ? GR : G;
    if (G > o1 - o0) G = o1 - o0;
    int64_t TB = GTOK_BYTES / (4 * P);
    TB = TB < GTT ? GTT : TB > T ? T : TB;
    const size_t esz = dsv3_cpu_esize(W->dtype);
    float *wbuf = dsv3_cpu_scratch(DSV3_SC_GEMM_ROWS, sizeof(float) * (size_t)(G * P));
    float *xbuf = dsv3_cpu_scratch(DSV3_SC_GEMM_X, sizeof(float) * (size_t)(TB * P));
    if (!wbuf || !xbuf) return -1;
    for (int64_t tb = 0; tb < T; tb += TB) {
        const int64_t nt = T - tb < TB ? T - tb : TB;
        for (int64_t t = 0; t < nt; t++) pack_token(x + (tb + t) * n, n, xbuf + t * P, L);
        for (int64_t g0 = o0; g0 < o1; g0 += G) {
            const int64_t nr = o1 - g0 < G ? o1 - g0 : G;
            for (int64_t j = 0; j < nr; j++) pack_row(W, kind, g0 + j, wbuf + j * P, L);
            /* the next group's weight bytes into L2 while this one computes, spread over its token groups
             * (its decode would otherwise wait for memory with nothing to overlap) */
            const int64_t nnext = o1 - (g0 + nr) < G ? o1 - (g0 + nr) : G;
            const char *pf = (const char *)W->data + (size_t)(g0 + nr) * (size_t)n * esz;
            const int64_t pf_lines = nnext * n * (int64_t)esz / 64, ngroups = (nt + GTT - 1) / GTT;
            const int64_t pf_per = (pf_lines + ngroups - 1) / ngroups;
            for (int64_t t0 = 0; t0 < nt; t0 += GTT) {
                const int tt = nt - t0 < GTT ? (int)(nt - t0) : GTT;
                for (int64_t l = (t0 / GTT) * pf_per, le = l + pf_per < pf_lines ? l + pf_per : pf_lines; l < le; l++)
                    _mm_prefetch(pf + l * 64, _MM_HINT_T1);
                for (int64_t j0 = 0; j0 < nr; j0 += GR) {
                    const int rr = nr - j0 < GR ? (int)(nr - j0) : GR;
                    g_gemm[rr - 1][tt - 1](wbuf + j0 * P, P, xbuf + t0 * P, P, L,
                                           out + (tb + t0) * ld + (g0 - obase) + j0, ld);
                }
            }
        }
    }
    return 0;
}

static int matmul_block_avx2(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t obase,
                             int64_t o0, int64_t o1) {
    if (T > DSV3_AVX2_DIRECT_MAX_T) return matmul_gemm(out, ld, x, T, W, obase, o0, o1);
    matmul_direct(out, ld, x, T, W, obase, o0, o1, dsv3_cpu_fp8_decode_kind(W, dsv3_cpu_kind(W)));
    return 0;
}

static void decode_row_avx2(const dsv3_weight *W, int64_t r, float *dst) {
    const int64_t n = W->cols, nfull = n - n % LANES;
    decode_chunks(W, dsv3_cpu_kind(W), r, dst, LANES, 8);
    if (nfull < n) dsv3_cpu_decode_span(W, r, nfull, n - nfull, dst + nfull);
}

const dsv3_cpu_kernels dsv3_cpu_kernels_avx2 = {"avx2", dot_f32_avx2, matmul_block_avx2, decode_row_avx2};
