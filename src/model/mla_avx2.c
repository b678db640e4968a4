/* AVX2+FMA kernels of the absorbed MLA (mla.c), bitwise equal to its portable
 * kernels: every output element gets the same fmaf chain in the same order
 * (see the kernels' comments in mla.c), only with explicit registers. gcc's
 * vectorisation of the portable kernels keeps 32-64 accumulators (sized for
 * AVX-512) and spills them on a 16-register ISA; these tiles keep theirs in
 * registers: 12 accumulators, each fed by 7-10 loads per 12 FMAs. */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "dsv3/dtype.h"
#include "model/mla_kernels.h"
#include "ops/cpu/avx2_decode.h"
#include "ops/cpu/cpu_kernels.h"

#define AI static inline __attribute__((always_inline))
#define PIN DSV3_AVX2_PIN

/* 8 weights at w[0..7] as f32 (BF16: exact widening). */
AI __m256 load8_f32(const float *w) { return _mm256_loadu_ps(w); }
AI __m256 load8_bf16(const uint16_t *w) { return dsv3_avx2_bf16x8(w); }
/* one weight (the tails) */
AI float one_f32(const float *w) { return *w; }
AI float one_bf16(const uint16_t *w) { return dsv3_bf16_to_f32(*w); }

/* ---- scores: out[i*HL + h] = scale * sum_j qT[j*HL + h] rows[i][j], one fmaf chain per (row, head), j
 * ascending (mla.c scores_tile_8 / scores_tile_16). Heads are the lanes (HV = HL / 8 ymm); R rows share
 * each qT load: 12 accumulators (6 rows x 2 or 12 rows x 1). */
AI void scores_rows(const int HV, const int R, const float *qT, const float *rows, int64_t ld, int64_t len,
                    float scale, float *out, const char *pf, int64_t pf_lines) {
    __m256 a[12][2];
#pragma GCC unroll 12
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int v = 0; v < HV; v++) a[i][v] = _mm256_setzero_ps();
    for (int64_t j = 0; j < len; j++) {
        if (pf && !(j & 1) && (j >> 1) < pf_lines) _mm_prefetch(pf + (j >> 1) * 64, _MM_HINT_T0);
        __m256 q[2];
#pragma GCC unroll 2
        for (int v = 0; v < HV; v++) {
            q[v] = _mm256_loadu_ps(qT + j * 8 * HV + 8 * v);
            PIN(q[v]);
        }
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            __m256 k = _mm256_broadcast_ss(rows + i * ld + j);
            PIN(k);
#pragma GCC unroll 2
            for (int v = 0; v < HV; v++) a[i][v] = _mm256_fmadd_ps(q[v], k, a[i][v]);
        }
    }
    const __m256 sv = _mm256_set1_ps(scale);
#pragma GCC unroll 12
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int v = 0; v < HV; v++) _mm256_storeu_ps(out + (i * HV + v) * 8, _mm256_mul_ps(a[i][v], sv));
}

#define PF_ROWS 16 /* prefetch the rows this far ahead (strided short rows defeat the hardware prefetcher) */

/* one function per tile shape: gcc allocates the registers of each tile on its own (inlined into one
 * function, the 6-row tile spilled a q vector) */
typedef void (*scores_fn)(const float *, const float *, int64_t, int64_t, float, float *, const char *, int64_t);
#define SCORES_FN(HV, R)                                                                                       \
    static void scores_##HV##_##R(const float *qT, const float *rows, int64_t ld, int64_t len, float scale,    \
                                  float *out, const char *pf, int64_t pf_lines) {                              \
        scores_rows(HV, R, qT, rows, ld, len, scale, out, pf, pf_lines);                                       \
    }
SCORES_FN(2, 1) SCORES_FN(2, 2) SCORES_FN(2, 3) SCORES_FN(2, 4) SCORES_FN(2, 5) SCORES_FN(2, 6)
SCORES_FN(1, 1) SCORES_FN(1, 2) SCORES_FN(1, 3) SCORES_FN(1, 4) SCORES_FN(1, 5) SCORES_FN(1, 6)
SCORES_FN(1, 7) SCORES_FN(1, 8) SCORES_FN(1, 9) SCORES_FN(1, 10) SCORES_FN(1, 11) SCORES_FN(1, 12)
static const scores_fn g_scores16[6] = {scores_2_1, scores_2_2, scores_2_3, scores_2_4, scores_2_5, scores_2_6};
static const scores_fn g_scores8[12] = {scores_1_1, scores_1_2, scores_1_3, scores_1_4,  scores_1_5,  scores_1_6,
                                        scores_1_7, scores_1_8, scores_1_9, scores_1_10, scores_1_11, scores_1_12};

void dsv3_mla_scores_tile_avx2(int64_t HL, const float *qT, const float *rows, int64_t ld, int64_t nrows,
                               int64_t len, float scale, float *out) {
    const scores_fn *fn = HL == 16 ? g_scores16 : g_scores8;
    const int64_t R = HL == 16 ? 6 : 12, pf_lines = R * ld * (int64_t)sizeof(float) / 64;
    int64_t i = 0;
    for (; i + R <= nrows; i += R)
        fn[R - 1](qT, rows + i * ld, ld, len, scale, out + i * HL, (const char *)(rows + (i + PF_ROWS) * ld), pf_lines);
    if (i < nrows) fn[nrows - i - 1](qT, rows + i * ld, ld, len, scale, out + i * HL, NULL, 0);
}

/* ---- scores of groups of at most 4 heads (HL = 8, lanes 4..7 of qT zero): two rows per vector, lanes 0-3
 * row i's heads, lanes 4-7 row i+1's, so no lane idles (the 8-lane tile above leaves 4 of 8 unused). Four
 * columns of a row pair are loaded as [row i | row i+1] (128 bits each) and spread by an in-lane
 * permute; the queries' four lanes come twice by a 128-bit broadcast. Each (row, head) keeps its one
 * chain over j ascending: the same bits as scores_rows. out rows get lanes 4..7 = 0 (as the 8-lane tile,
 * whose zero queries give 0 there). R row pairs: R accumulators + R row vectors + q. */
AI void scores_pairs(const int R, const float *qT, const float *rows, int64_t ld, int64_t len, float scale, float *out,
                     const char *pf, int64_t pf_lines) {
    __m256 a[6];
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) a[i] = _mm256_setzero_ps();
    const int64_t j4 = len - len % 4, pf_per = j4 ? (pf_lines + j4 / 4 - 1) / (j4 / 4) : 0; /* lines per step */
    for (int64_t j0 = 0; j0 < j4; j0 += 4) {
        if (pf)
            for (int64_t l = (j0 >> 2) * pf_per, le = l + pf_per < pf_lines ? l + pf_per : pf_lines; l < le; l++)
                _mm_prefetch(pf + l * 64, _MM_HINT_T0);
        __m256 r[6];
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            r[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(rows + 2 * i * ld + j0)),
                                        _mm_loadu_ps(rows + (2 * i + 1) * ld + j0), 1);
            PIN(r[i]);
        }
#define PAIR_STEP(JJ, IMM)                                                                                     \
    {                                                                                                          \
        __m256 q = _mm256_broadcast_ps((const __m128 *)(qT + (j0 + JJ) * 8));                                  \
        PIN(q);                                                                                                \
        _Pragma("GCC unroll 6") for (int i = 0; i < R; i++) a[i] = _mm256_fmadd_ps(q, _mm256_permute_ps(r[i], IMM), a[i]); \
    }
        PAIR_STEP(0, 0x00)
        PAIR_STEP(1, 0x55)
        PAIR_STEP(2, 0xAA)
        PAIR_STEP(3, 0xFF)
#undef PAIR_STEP
    }
    for (int64_t j = j4; j < len; j++) { /* the last len % 4 columns */
        const __m256 q = _mm256_broadcast_ps((const __m128 *)(qT + j * 8));
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            const __m256 k = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(rows + 2 * i * ld + j)),
                                                  _mm_broadcast_ss(rows + (2 * i + 1) * ld + j), 1);
            a[i] = _mm256_fmadd_ps(q, k, a[i]);
        }
    }
    const __m256 sv = _mm256_set1_ps(scale);
    const __m128 z = _mm_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) {
        const __m256 v = _mm256_mul_ps(a[i], sv);
        _mm_storeu_ps(out + 2 * i * 8, _mm256_castps256_ps128(v));
        _mm_storeu_ps(out + 2 * i * 8 + 4, z);
        _mm_storeu_ps(out + (2 * i + 1) * 8, _mm256_extractf128_ps(v, 1));
        _mm_storeu_ps(out + (2 * i + 1) * 8 + 4, z);
    }
}

typedef void (*pairs_fn)(const float *, const float *, int64_t, int64_t, float, float *, const char *, int64_t);
#define PAIRS_FN(R)                                                                                            \
    static void scores_pairs_##R(const float *qT, const float *rows, int64_t ld, int64_t len, float scale,     \
                                 float *out, const char *pf, int64_t pf_lines) {                               \
        scores_pairs(R, qT, rows, ld, len, scale, out, pf, pf_lines);                                          \
    }
PAIRS_FN(1) PAIRS_FN(2) PAIRS_FN(3) PAIRS_FN(4) PAIRS_FN(5) PAIRS_FN(6)
static const pairs_fn g_pairs[6] = {scores_pairs_1, scores_pairs_2, scores_pairs_3,
                                    scores_pairs_4, scores_pairs_5, scores_pairs_6};

void dsv3_mla_scores_tile4_avx2(const float *qT, const float *rows, int64_t ld, int64_t nrows, int64_t len, float scale,
                                float *out) {
    const int64_t R = 6, pf_lines = 2 * R * ld * (int64_t)sizeof(float) / 64;
    int64_t i = 0;
    for (; i + 2 * R <= nrows; i += 2 * R)
        g_pairs[R - 1](qT, rows + i * ld, ld, len, scale, out + i * 8, (const char *)(rows + (i + PF_ROWS) * ld), pf_lines);
    if (nrows - i >= 2) {
        const int64_t r = (nrows - i) / 2;
        g_pairs[r - 1](qT, rows + i * ld, ld, len, scale, out + i * 8, NULL, 0);
        i += 2 * r;
    }
    if (i < nrows) g_scores8[0](qT, rows + i * ld, ld, len, scale, out + i * 8, NULL, 0); /* an odd last row */
}

/* ---- chunk softmax with the heads as lanes (mla.c softmax_chunk, per head): e^x as mla.c attn_exp, lane
 * for lane (floor, the fmaf chain, the power-of-two scale, x <= -87 -> 0, NaN kept). */
AI __m256 attn_exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 ok = _mm256_cmp_ps(x, lo, _CMP_GT_OQ), nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    const __m256 xc = _mm256_blendv_ps(lo, x, ok);
    const __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(xc, _mm256_set1_ps(DSV3_EXP_LOG2E), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(DSV3_EXP_LN2_HI), xc);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(DSV3_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(DSV3_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(DSV3_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(DSV3_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(DSV3_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(DSV3_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(DSV3_EXP_P5));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(bits)), ok);
    return _mm256_blendv_ps(y, x, nan);
}

/* sc [ns][HL] scores in place -> e^(score - m) per head; m[h] = max (in s order: the first of equal values,
 * NaN skipped, as `p > m ? p : m`), l[h] = 16 partial sums (s into lane s % 16, s ascending) combined
 * by mla.c's reduce16 tree. */
void dsv3_mla_softmax_rows_avx2(int64_t HL, float *sc, int64_t ns, float *m, float *l) {
    const int HV = HL == 16 ? 2 : 1;
    for (int v = 0; v < HV; v++) {
        __m256 mx = _mm256_set1_ps(-__builtin_inff());
        for (int64_t s = 0; s < ns; s++) mx = _mm256_max_ps(_mm256_loadu_ps(sc + s * HL + 8 * v), mx); /* v > mx ? v : mx */
        __m256 acc[16];
        for (int k = 0; k < 16; k++) acc[k] = _mm256_setzero_ps();
        for (int64_t s = 0; s < ns; s++) {
            const __m256 e = attn_exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + s * HL + 8 * v), mx));
            _mm256_storeu_ps(sc + s * HL + 8 * v, e);
            acc[s % 16] = _mm256_add_ps(acc[s % 16], e);
        }
        for (int k = 0; k < 8; k++) acc[k] = _mm256_add_ps(acc[k], acc[k + 8]);
        for (int k = 0; k < 4; k++) acc[k] = _mm256_add_ps(acc[k], acc[k + 4]);
        _mm256_storeu_ps(l + 8 * v, _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3])));
        _mm256_storeu_ps(m + 8 * v, mx);
    }
}

/* ---- latent sums: lat[g*lst + j] = fmaf(p[g*pst + s*pss], rows[s][j], lat[g*lst + j]) for s ascending, 4
 * heads g (mla.c accumulate_rows4). 4 heads x NV ymm of columns per block: NV row loads + 4 broadcasts
 * per 4*NV FMAs. */
AI void acc4_block(const int NV, float *lat, int64_t lst, const float *p, int64_t pst, int64_t pss, const float *rows,
                   int64_t ld, int64_t ns, int from_zero) {
    __m256 a[4][3];
#pragma GCC unroll 8
    for (int g = 0; g < 4; g++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) a[g][v] = from_zero ? _mm256_setzero_ps() : _mm256_loadu_ps(lat + g * lst + 8 * v);
    for (int64_t s = 0; s < ns; s++) {
        const float *r = rows + s * ld, *ps = p + s * pss;
        __m256 x[3];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            x[v] = _mm256_loadu_ps(r + 8 * v);
            PIN(x[v]);
        }
#pragma GCC unroll 8
        for (int g = 0; g < 4; g++) {
            const __m256 pg = _mm256_broadcast_ss(ps + g * pst);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) a[g][v] = _mm256_fmadd_ps(pg, x[v], a[g][v]);
        }
    }
#pragma GCC unroll 8
    for (int g = 0; g < 4; g++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) _mm256_storeu_ps(lat + g * lst + 8 * v, a[g][v]);
}

void dsv3_mla_accumulate_rows4_avx2(float *lat, int64_t lst, const float *p, int64_t pst, int64_t pss,
                                    const float *rows, int64_t ld, int64_t ns, int64_t len, int from_zero) {
    int64_t j = 0;
    for (; j + 24 <= len; j += 24) acc4_block(3, lat + j, lst, p, pst, pss, rows + j, ld, ns, from_zero);
    for (; j + 8 <= len; j += 8) acc4_block(1, lat + j, lst, p, pst, pss, rows + j, ld, ns, from_zero);
    for (int g = 0; g < 4 && j < len; g++) {
        if (from_zero)
            for (int64_t k = j; k < len; k++) lat[g * lst + k] = 0.0f;
        for (int64_t s = 0; s < ns; s++) {
            const float ps = p[g * pst + s * pss], *r = rows + s * ld;
            for (int64_t k = j; k < len; k++) lat[g * lst + k] = __builtin_fmaf(ps, r[k], lat[g * lst + k]);
        }
    }
}

/* ---- absorbed queries: qt[t*lq + j] = sum_d W_UK[d][j] qc[t*lqc + d], one fmaf chain per element from 0,
 * d ascending (mla.c absorb_4 / absorb_1): NT tokens x NV ymm of columns per block (4 x 3 for 4 tokens,
 * 1 x 8 for one: 8 independent chains). */
#define DEFINE_ABSORB_AVX2(SFX, WT)                                                                           \
    AI void absorb_block##SFX(const int NT, const int NV, float *qt, int64_t lq, const float *qc, int64_t lqc, const WT *wuk, \
                               int64_t nope, int64_t kvl) {                                                    \
        __m256 a[4][8];                                                                                        \
        _Pragma("GCC unroll 8")                                                                                \
        for (int t = 0; t < NT; t++)                                                                           \
            _Pragma("GCC unroll 8")                                                                            \
            for (int v = 0; v < NV; v++) a[t][v] = _mm256_setzero_ps();                                        \
        for (int64_t d = 0; d < nope; d++) {                                                                   \
            __m256 w[8];                                                                                       \
            _Pragma("GCC unroll 8")                                                                            \
            for (int v = 0; v < NV; v++) {                                                                     \
                w[v] = load8##SFX(wuk + d * kvl + 8 * v);                                                      \
                PIN(w[v]);                                                                                     \
            }                                                                                                  \
            _Pragma("GCC unroll 8")                                                                            \
            for (int t = 0; t < NT; t++) {                                                                     \
                const __m256 q = _mm256_broadcast_ss(qc + t * lqc + d);                                        \
                _Pragma("GCC unroll 8")                                                                       \
                for (int v = 0; v < NV; v++) a[t][v] = _mm256_fmadd_ps(w[v], q, a[t][v]);                     \
            }                                                                                                  \
        }                                                                                                      \
        _Pragma("GCC unroll 8")                                                                                \
        for (int t = 0; t < NT; t++)                                                                           \
            _Pragma("GCC unroll 8")                                                                            \
            for (int v = 0; v < NV; v++) _mm256_storeu_ps(qt + t * lq + 8 * v, a[t][v]);                       \
    }                                                                                                          \
    /* the columns past the last 8-block (scalar, the same chain) */                                          \
    static void absorb_tail##SFX(int NT, int64_t j, float *qt, int64_t lq, const float *qc, int64_t lqc,       \
                                 const WT *wuk, int64_t nope, int64_t kvl) {                                   \
        for (int t = 0; t < NT && j < kvl; t++) {                                                               \
            float *o = qt + t * lq;                                                                            \
            for (int64_t k = j; k < kvl; k++) o[k] = 0.0f;                                                     \
            for (int64_t d = 0; d < nope; d++) {                                                               \
                const float qd = qc[t * lqc + d];                                                              \
                for (int64_t k = j; k < kvl; k++) o[k] = __builtin_fmaf(one##SFX(wuk + d * kvl + k), qd, o[k]);  \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    void dsv3_mla_absorb4##SFX##_avx2(float *qt, int64_t lq, const float *qc, int64_t lqc, const WT *wuk,      \
                                      int64_t nope, int64_t kvl) {                                             \
        int64_t j = 0;                                                                                         \
        for (; j + 24 <= kvl; j += 24) absorb_block##SFX(4, 3, qt + j, lq, qc, lqc, wuk + j, nope, kvl);       \
        for (; j + 8 <= kvl; j += 8) absorb_block##SFX(4, 1, qt + j, lq, qc, lqc, wuk + j, nope, kvl);         \
        absorb_tail##SFX(4, j, qt, lq, qc, lqc, wuk, nope, kvl);                                               \
    }                                                                                                          \
    void dsv3_mla_absorb1##SFX##_avx2(float *qt, const float *qc, const WT *wuk, int64_t nope, int64_t kvl) {  \
        int64_t j = 0;                                                                                         \
        for (; j + 64 <= kvl; j += 64) absorb_block##SFX(1, 8, qt + j, 0, qc, 0, wuk + j, nope, kvl);          \
        for (; j + 8 <= kvl; j += 8) absorb_block##SFX(1, 1, qt + j, 0, qc, 0, wuk + j, nope, kvl);            \
        absorb_tail##SFX(1, j, qt, 0, qc, 0, wuk, nope, kvl);                                                  \
    }

DEFINE_ABSORB_AVX2(_f32, float)
DEFINE_ABSORB_AVX2(_bf16, uint16_t)

/* ---- W_UV outputs: out[t*lo + v] = W_UV[v] . lat_t as 16 lane chains (element j into lane j % 16, j
 * ascending, the tail into lanes 0..) and mla.c's reduce16 (mla.c output_4). R rows x 2 tokens x 2 ymm. */

/* reduce16 of lanes lo (0-7), hi (8-15): (k + k+8), then (k + k+4), then (0+2) + (1+3). */
AI float reduce16_avx2(__m256 lo, __m256 hi) {
    const __m256 b = _mm256_add_ps(lo, hi);
    const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
    const __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c)); /* d0 = c0 + c2, d1 = c1 + c3 */
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

/* lane mask for the first n (< 16) lanes of half h (lanes 8h..8h+7) */
AI __m256i lanes_mask(int64_t n, int h) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - 8 * h)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#define DEFINE_OUTPUT_AVX2(SFX, WT)                                                                           \
    AI void output_block##SFX(const int R, const int NT, float *out, int64_t lo, const float *lat, int64_t ll,  \
                              const WT *wuv, int64_t kvl) {                                                    \
        __m256 a[4][2][2];                                                                                     \
        _Pragma("GCC unroll 8")                                                                                \
        for (int r = 0; r < R; r++)                                                                            \
            _Pragma("GCC unroll 8")                                                                            \
            for (int t = 0; t < NT; t++) a[r][t][0] = a[r][t][1] = _mm256_setzero_ps();                        \
        const int64_t jfull = kvl - kvl % 16;                                                                  \
        for (int64_t j = 0; j < jfull; j += 16)                                                                \
            _Pragma("GCC unroll 8")                                                                            \
            for (int h = 0; h < 2; h++) {                                                                      \
                __m256 w[4];                                                                                   \
                _Pragma("GCC unroll 8")                                                                        \
                for (int r = 0; r < R; r++) w[r] = load8##SFX(wuv + r * kvl + j + 8 * h);                      \
                _Pragma("GCC unroll 8")                                                                        \
                for (int t = 0; t < NT; t++) {                                                                 \
                    __m256 x = _mm256_loadu_ps(lat + t * ll + j + 8 * h);                                      \
                    PIN(x);                                                                                    \
                    _Pragma("GCC unroll 8")                                                                    \
                    for (int r = 0; r < R; r++) a[r][t][h] = _mm256_fmadd_ps(x, w[r], a[r][t][h]);             \
                }                                                                                              \
            }                                                                                                  \
        if (jfull < kvl) { /* tail into lanes 0..: the other lanes keep their value */                         \
            float wt[4][16] = {{0}}, xt[2][16] = {{0}};                                                        \
            for (int64_t k = 0; jfull + k < kvl; k++) {                                                        \
                _Pragma("GCC unroll 8")                                                                        \
                for (int r = 0; r < R; r++) wt[r][k] = one##SFX(wuv + r * kvl + jfull + k);                    \
                _Pragma("GCC unroll 8")                                                                        \
                for (int t = 0; t < NT; t++) xt[t][k] = lat[t * ll + jfull + k];                               \
            }                                                                                                  \
            _Pragma("GCC unroll 8")                                                                            \
            for (int h = 0; h < 2; h++) {                                                                      \
                const __m256 m = _mm256_castsi256_ps(lanes_mask(kvl - jfull, h));                              \
                _Pragma("GCC unroll 8")                                                                        \
                for (int r = 0; r < R; r++)                                                                    \
                    _Pragma("GCC unroll 8")                                                                    \
                    for (int t = 0; t < NT; t++) {                                                             \
                        __m256 f = _mm256_fmadd_ps(_mm256_loadu_ps(xt[t] + 8 * h), _mm256_loadu_ps(wt[r] + 8 * h), \
                                                   a[r][t][h]);                                                \
                        a[r][t][h] = _mm256_blendv_ps(a[r][t][h], f, m);                                       \
                    }                                                                                          \
            }                                                                                                  \
        }                                                                                                      \
        _Pragma("GCC unroll 8")                                                                                \
        for (int r = 0; r < R; r++)                                                                            \
            _Pragma("GCC unroll 8")                                                                            \
            for (int t = 0; t < NT; t++) out[t * lo + r] = reduce16_avx2(a[r][t][0], a[r][t][1]);              \
    }                                                                                                          \
    void dsv3_mla_output4##SFX##_avx2(float *out, int64_t lo, const float *lat, int64_t ll, const WT *wuv,     \
                                      int64_t kvl, int64_t vd) {                                               \
        _Pragma("GCC unroll 8")                                                                                \
        for (int t = 0; t < 4; t += 2) {                                                                       \
            int64_t v = 0;                                                                                     \
            for (; v + 3 <= vd; v += 3)                                                                        \
                output_block##SFX(3, 2, out + t * lo + v, lo, lat + t * ll, ll, wuv + v * kvl, kvl);           \
            if (vd - v == 2) output_block##SFX(2, 2, out + t * lo + v, lo, lat + t * ll, ll, wuv + v * kvl, kvl); \
            if (vd - v == 1) output_block##SFX(1, 2, out + t * lo + v, lo, lat + t * ll, ll, wuv + v * kvl, kvl); \
        }                                                                                                      \
    }                                                                                                          \
    void dsv3_mla_output1##SFX##_avx2(float *out, const float *lat, const WT *wuv, int64_t kvl, int64_t vd) {  \
        int64_t v = 0;                                                                                         \
        for (; v + 4 <= vd; v += 4) output_block##SFX(4, 1, out + v, 0, lat, 0, wuv + v * kvl, kvl);           \
        for (; v < vd; v++) output_block##SFX(1, 1, out + v, 0, lat, 0, wuv + v * kvl, kvl);                   \
    }
DEFINE_OUTPUT_AVX2(_f32, float)
DEFINE_OUTPUT_AVX2(_bf16, uint16_t)

/* ---- FP8 (E4M3, 128x128-style block scales) kv_b_proj read as stored, for decode: the values of the
 * reference decode (dsv3_avx2_e4m3x8_scaled), so the same bits as the f32 kernels above; a step reads
 * 1 byte per weight instead of the 4 of an f32 copy. */
int dsv3_mla_fp8_kvb_avx2_ok(const dsv3_weight *W, int64_t kvl) {
    return W->dtype == DSV3_F8_E4M3 && W->scale && W->block_c % 64 == 0 && kvl % 64 == 0 &&
           dsv3_cpu_fp8_decode_kind(W, dsv3_cpu_kind(W)) == K_E4M3_DWORD;
}

/* absorb_1 of rows [r0, r0 + nope) of W: 64 columns (8 chains) per block, within one scale block */
void dsv3_mla_absorb1_fp8_avx2(float *qt, const float *qc, const dsv3_weight *W, int64_t r0, int64_t nope, int64_t kvl) {
    for (int64_t j = 0; j < kvl; j += 64) {
        __m256 a[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) a[v] = _mm256_setzero_ps();
        for (int64_t d = 0; d < nope; d++) {
            const row_ref rw = dsv3_cpu_row(W, r0 + d);
            const __m256 sc = _mm256_set1_ps(rw.srow[j / W->block_c] * 0x1p120f), q = _mm256_broadcast_ss(qc + d);
#pragma GCC unroll 8
            for (int v = 0; v < 8; v++) a[v] = _mm256_fmadd_ps(dsv3_avx2_e4m3x8_scaled(rw.p + j + 8 * v, sc), q, a[v]);
        }
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) _mm256_storeu_ps(qt + j + 8 * v, a[v]);
    }
}

/* output_1 of rows [r0, r0 + vd) of W: R rows per block, 16 lane chains each, then reduce16 */
AI void output_fp8_rows(const int R, float *out, const float *lat, const dsv3_weight *W, int64_t r0, int64_t kvl) {
    __m256 a[4][2];
    row_ref rw[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        a[r][0] = a[r][1] = _mm256_setzero_ps();
        rw[r] = dsv3_cpu_row(W, r0 + r);
    }
    const int64_t bc = W->block_c;
    for (int64_t c0 = 0; c0 < kvl; c0 += bc) {
        const int64_t c1 = c0 + bc < kvl ? c0 + bc : kvl;
        __m256 sc[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) sc[r] = _mm256_set1_ps(rw[r].srow[c0 / bc] * 0x1p120f);
        for (int64_t j = c0; j < c1; j += 16) {
            __m256 x0 = _mm256_loadu_ps(lat + j), x1 = _mm256_loadu_ps(lat + j + 8);
            PIN(x0);
            PIN(x1);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                a[r][0] = _mm256_fmadd_ps(x0, dsv3_avx2_e4m3x8_scaled(rw[r].p + j, sc[r]), a[r][0]);
                a[r][1] = _mm256_fmadd_ps(x1, dsv3_avx2_e4m3x8_scaled(rw[r].p + j + 8, sc[r]), a[r][1]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) out[r] = reduce16_avx2(a[r][0], a[r][1]);
}

void dsv3_mla_output1_fp8_avx2(float *out, const float *lat, const dsv3_weight *W, int64_t r0, int64_t kvl, int64_t vd) {
    int64_t v = 0;
    for (; v + 4 <= vd; v += 4) output_fp8_rows(4, out + v, lat, W, r0 + v, kvl);
    for (; v < vd; v++) output_fp8_rows(1, out + v, lat, W, r0 + v, kvl);
}
