/* Multi-head Latent Attention, absorbed form (spec §3.4-§3.7).
 *
 * The cache holds, per token, [c_KV (kv_lora_rank, normalised) ; k_R (rope
 * dim, rotated)]. For each head the query is absorbed into the latent space:
 *   q~ = W_UK^T q_C  (kv_lora_rank),   score_s = σ·([q~ ; q_R] · cache_s),
 *   latent = Σ_s softmax(score)_s c_KV_s,   o = W_UV latent.
 * Prefill and decode use this same path, so a token's result is bitwise the
 * same however it is batched.
 *
 * Speed: heads are processed in groups of up to 16 that share every pass over
 * a token's cache rows (at 4096 tokens of context a V3 layer's cache is
 * 4096 x 576 floats): q~ of the group is stored transposed so that the scores
 * of a tile of 16 rows are computed with the heads as vector lanes, and the
 * latent sums take 4 heads per cache value loaded. The softmax runs in fixed
 * chunks of 64 keys folded in order (flash-decoding, see "one token's
 * attention" below), so each chunk of the cache is read from memory once.
 * Many tokens (prefill): blocks of 32 tokens; the absorbed queries and the W_UV
 * outputs of a block run 4 tokens per pass over a head's kv_b rows, then one
 * thread per (token, group). Few tokens at long contexts (decode): the threads
 * share one token's chunks, folded per head afterwards.
 *
 * Every kernel uses explicit fmaf in a fixed order per output element (a score:
 * one chain over the row, j ascending; a chunk's latent element: one chain over
 * its keys, s ascending; the chunk fold in ascending chunk order; q~ and W_UV
 * products likewise fixed), so neither the group size, the schedule, the vector
 * width nor the thread count changes a result (tests/model/test_mla_invariance.c). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dsv3/dtype.h"
#include "model/mla_kernels.h"
#include "model/model_internal.h"

/* 512-bit vectors for the loops below when the target has them (GCC otherwise prefers 256 bits on
 * AVX-512 machines); a tuning choice only: every result is fixed by the explicit fmaf sequence. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

/* Interleaved-pair RoPE (spec §3.5): pair j = (x[2j], x[2j+1]) rotated by pos·f'_j. */
static void rope_apply(float *dst, const float *src, int64_t dim, int64_t pos, const float *freqs, float amp) {
    for (int64_t j = 0; j < dim / 2; j++) {
        float ang = (float)pos * freqs[j];
        float c = cosf(ang) * amp, s = sinf(ang) * amp;
        float x0 = src[2 * j], x1 = src[2 * j + 1];
        dst[2 * j] = x0 * c - x1 * s;
        dst[2 * j + 1] = x0 * s + x1 * c;
    }
}

/* ---- fixed-order kernels (explicit fmaf: the rounding of every step is fixed by the source, whatever
 * the compiler vectorises, so a head's result does not depend on tiling or grouping) ---- */

#define LANES 16    /* partial sums of a dot product: element j goes to lane j % 16 */
/* score-kernel prefetch: rows this far ahead, into L1 (tried 32/48 rows and L2 hints at 4096 tokens of
 * context: slower) */
#define PF_ROWS 16
#define PF_HINT _MM_HINT_T0
#define ROW_TILE 16 /* cache rows per tile (16 x 576 floats = 36 KB) */

/* Combines the 16 lanes pairwise: (0+8, 1+9, ...), then (0+4, ...), (0+2, ...), 0+1. */
static inline float reduce16(const float *a) {
    float b[8], c[4];
    for (int k = 0; k < 8; k++) b[k] = a[k] + a[k + 8];
    for (int k = 0; k < 4; k++) c[k] = b[k] + b[k + 4];
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* accumulate_rows for 4 heads at once (lat rows at stride lst; head g's weight of row s at
 * p[g * pst + s * pss]): every cache value loaded feeds 4 heads; each element's fmaf sequence is the
 * same as accumulate_rows'. */
static void accumulate_rows4(float *restrict lat, int64_t lst, const float *restrict p, int64_t pst, int64_t pss,
                             const float *restrict rows, int64_t ld, int64_t ns, int64_t len) {
    int64_t j = 0;
    for (; j + 64 <= len; j += 64) {
        float a0[64], a1[64], a2[64], a3[64];
        for (int k = 0; k < 64; k++) {
            a0[k] = lat[j + k];
            a1[k] = lat[lst + j + k];
            a2[k] = lat[2 * lst + j + k];
            a3[k] = lat[3 * lst + j + k];
        }
        for (int64_t s = 0; s < ns; s++) {
            const float *ps = p + s * pss;
            const float p0 = ps[0], p1 = ps[pst], p2 = ps[2 * pst], p3 = ps[3 * pst], *r = rows + s * ld + j;
            for (int k = 0; k < 64; k++) {
                const float x = r[k];
                a0[k] = fmaf(p0, x, a0[k]);
                a1[k] = fmaf(p1, x, a1[k]);
                a2[k] = fmaf(p2, x, a2[k]);
                a3[k] = fmaf(p3, x, a3[k]);
            }
        }
        for (int k = 0; k < 64; k++) {
            lat[j + k] = a0[k];
            lat[lst + j + k] = a1[k];
            lat[2 * lst + j + k] = a2[k];
            lat[3 * lst + j + k] = a3[k];
        }
    }
    for (int g = 0; g < 4 && j < len; g++)
        for (int64_t s = 0; s < ns; s++) {
            const float ps = p[g * pst + s * pss], *r = rows + s * ld;
            for (int64_t k = j; k < len; k++) lat[g * lst + k] = fmaf(ps, r[k], lat[g * lst + k]);
        }
}

/* q~_t[j] = sum_d W_UK[d][j] q_C,t[d], d ascending, one fmaf chain per element from 0 (wuk: [nope][kvl]),
 * for NT tokens (q_C rows at stride lqc, q~ rows at stride lq): each W_UK row is loaded once for the NT
 * tokens; per element the same chain whatever NT. */
#define DEFINE_ABSORB(NT, SFX, WT, CVT)                                                                        \
    static void absorb_##NT##SFX(float *restrict qt, int64_t lq, const float *restrict qc, int64_t lqc,       \
                                 const WT *restrict wuk, int64_t nope, int64_t kvl) {                          \
        int64_t j = 0;                                                                                         \
        for (; j + 64 <= kvl; j += 64) {                                                                       \
            float acc[NT][64];                                                                                 \
            for (int t = 0; t < NT; t++)                                                                       \
                for (int k = 0; k < 64; k++) acc[t][k] = 0.0f;                                                 \
            for (int64_t d = 0; d < nope; d++) {                                                               \
                const WT *w = wuk + d * kvl + j;                                                               \
                for (int t = 0; t < NT; t++) {                                                                 \
                    const float qd = qc[t * lqc + d];                                                          \
                    for (int k = 0; k < 64; k++) acc[t][k] = fmaf(CVT(w[k]), qd, acc[t][k]);                   \
                }                                                                                              \
            }                                                                                                  \
            for (int t = 0; t < NT; t++) memcpy(qt + t * lq + j, acc[t], sizeof acc[t]);                       \
        }                                                                                                      \
        for (int t = 0; t < NT && j < kvl; t++) {                                                              \
            float *o = qt + t * lq;                                                                            \
            for (int64_t k = j; k < kvl; k++) o[k] = 0.0f;                                                     \
            for (int64_t d = 0; d < nope; d++) {                                                               \
                const WT *w = wuk + d * kvl;                                                                   \
                const float qd = qc[t * lqc + d];                                                              \
                for (int64_t k = j; k < kvl; k++) o[k] = fmaf(CVT(w[k]), qd, o[k]);                            \
            }                                                                                                  \
        }                                                                                                      \
    }
/* BF16 weights read directly (the conversion to f32 is exact: the same values as an f32 copy) */
#define F32_VALUE(x) (x)
DEFINE_ABSORB(4, , float, F32_VALUE)
DEFINE_ABSORB(1, , float, F32_VALUE)
DEFINE_ABSORB(4, _bf16, uint16_t, dsv3_bf16_to_f32)
DEFINE_ABSORB(1, _bf16, uint16_t, dsv3_bf16_to_f32)

/* out_t[v] = W_UV[v] . lat_t (v < vd) for NT tokens (lat rows at stride ll, out rows at stride lo): 16
 * lane chains (element j into lane j % 16, j ascending; the tail into lanes 0..), then reduce16; two W_UV
 * rows at a time, each loaded once for the NT tokens. */
#define DEFINE_OUTPUT(NT, SFX, WT, CVT)                                                                        \
    static void output_##NT##SFX(float *restrict out, int64_t lo, const float *restrict lat, int64_t ll,      \
                                 const WT *restrict wuv, int64_t kvl, int64_t vd) {                            \
        for (int64_t v = 0; v < vd; v += 2) {                                                                  \
            const int nr = vd - v < 2 ? 1 : 2;                                                                 \
            float acc[2][NT][LANES];                                                                           \
            for (int r = 0; r < 2; r++)                                                                        \
                for (int t = 0; t < NT; t++)                                                                   \
                    for (int k = 0; k < LANES; k++) acc[r][t][k] = 0.0f;                                       \
            int64_t j = 0;                                                                                     \
            for (; j + LANES <= kvl; j += LANES)                                                               \
                for (int r = 0; r < nr; r++) {                                                                 \
                    const WT *w = wuv + (v + r) * kvl + j;                                                     \
                    for (int t = 0; t < NT; t++)                                                               \
                        for (int k = 0; k < LANES; k++) acc[r][t][k] = fmaf(lat[t * ll + j + k], CVT(w[k]), acc[r][t][k]); \
                }                                                                                              \
            for (int r = 0; r < nr; r++)                                                                       \
                for (int t = 0; t < NT; t++) {                                                                 \
                    const WT *w = wuv + (v + r) * kvl;                                                         \
                    for (int k = 0; j + k < kvl; k++) acc[r][t][k] = fmaf(lat[t * ll + j + k], CVT(w[j + k]), acc[r][t][k]); \
                    out[t * lo + v + r] = reduce16(acc[r][t]);                                                 \
                }                                                                                              \
        }                                                                                                      \
    }
DEFINE_OUTPUT(4, , float, F32_VALUE)
DEFINE_OUTPUT(1, , float, F32_VALUE)
DEFINE_OUTPUT(4, _bf16, uint16_t, dsv3_bf16_to_f32)
DEFINE_OUTPUT(1, _bf16, uint16_t, dsv3_bf16_to_f32)

/* lat[j] = fma(p[s * pss], rows[s][j], lat[j]) for s = 0..ns-1 in order, j < len; 64 columns at a time
 * are kept in registers across the ns rows. */
static void accumulate_rows(float *restrict lat, const float *restrict p, int64_t pss, const float *restrict rows,
                            int64_t ld, int64_t ns, int64_t len) {
    int64_t j = 0;
    for (; j + 64 <= len; j += 64) {
        float acc[64];
        for (int k = 0; k < 64; k++) acc[k] = lat[j + k];
        for (int64_t s = 0; s < ns; s++) {
            const float ps = p[s * pss], *r = rows + s * ld + j;
            for (int k = 0; k < 64; k++) acc[k] = fmaf(ps, r[k], acc[k]);
        }
        for (int k = 0; k < 64; k++) lat[j + k] = acc[k];
    }
    for (int64_t s = 0; s < ns; s++) {
        const float ps = p[s * pss], *r = rows + s * ld;
        for (int64_t k = j; k < len; k++) lat[k] = fmaf(ps, r[k], lat[k]);
    }
}

/* Scores of one tile of cache rows for a group of heads, heads as vector lanes: qT is the group's
 * [q~ ; q_R] transposed, [len][HL] (lane h = head h of the group, unused lanes zero), and
 * out[i][h] = scale * sum_j qT[j][h] rows[i][j] with one fmaf chain per (row, head), j ascending.
 * 4 rows at a time share each qT load. HL = 8 or 16 (same per-lane arithmetic). */
#define DEFINE_SCORES(HL)                                                                                       \
    static void scores_tile_##HL(const float *restrict qT, const float *restrict rows, int64_t ld, int64_t nrows, \
                                 int64_t len, float scale, float *restrict out) {                               \
        int64_t i = 0;                                                                                          \
        for (; i + 4 <= nrows; i += 4) {                                                                        \
            const float *r0 = rows + i * ld, *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;                        \
            float a0[HL] = {0}, a1[HL] = {0}, a2[HL] = {0}, a3[HL] = {0};                                        \
            for (int64_t j = 0; j < len; j++) {                                                                 \
                const float *q = qT + j * HL, k0 = r0[j], k1 = r1[j], k2 = r2[j], k3 = r3[j];                    \
                for (int h = 0; h < HL; h++) {                                                                  \
                    a0[h] = fmaf(q[h], k0, a0[h]);                                                              \
                    a1[h] = fmaf(q[h], k1, a1[h]);                                                              \
                    a2[h] = fmaf(q[h], k2, a2[h]);                                                              \
                    a3[h] = fmaf(q[h], k3, a3[h]);                                                              \
                }                                                                                               \
            }                                                                                                   \
            for (int h = 0; h < HL; h++) {                                                                      \
                out[i * HL + h] = a0[h] * scale;                                                                \
                out[(i + 1) * HL + h] = a1[h] * scale;                                                          \
                out[(i + 2) * HL + h] = a2[h] * scale;                                                          \
                out[(i + 3) * HL + h] = a3[h] * scale;                                                          \
            }                                                                                                   \
        }                                                                                                       \
        for (; i < nrows; i++) {                                                                                \
            const float *r0 = rows + i * ld;                                                                    \
            float a0[HL] = {0};                                                                                 \
            for (int64_t j = 0; j < len; j++)                                                                   \
                for (int h = 0; h < HL; h++) a0[h] = fmaf(qT[j * HL + h], r0[j], a0[h]);                         \
            for (int h = 0; h < HL; h++) out[i * HL + h] = a0[h] * scale;                                       \
        }                                                                                                       \
    }
DEFINE_SCORES(8)
DEFINE_SCORES(16)

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_SCORES_ROWS_AVX512 1
/* The same scores with the ROWS as vector lanes, for groups of at most 8 heads (where heads-as-lanes
 * leaves lanes idle): 16 cache rows x 16 columns are loaded and transposed in registers, then
 * acc_g[i] = fmaf(rows[i][j], qT[j][g], acc_g[i]) for j ascending — per (row, head) the very fmaf
 * chain of scores_tile_8, so the results are bitwise the same. Writes sc[g * ctx + i] = scale * acc_g[i]
 * for i < nrows (<= 16), g < gh (<= 8). */
__attribute__((target("avx512f"))) static void scores_tile_rows_avx512(const float *restrict qT, int64_t HL, int64_t gh,
                                                                       const float *restrict rows, int64_t ld,
                                                                       int64_t nrows, int64_t len, float scale,
                                                                       float *restrict sc, int64_t ctx) {
    __m512 acc[8];
    for (int g = 0; g < 8; g++) acc[g] = _mm512_setzero_ps();
    for (int64_t j0 = 0; j0 < len; j0 += 16) {
        const int64_t nj = len - j0 < 16 ? len - j0 : 16;
        const __mmask16 cm = (__mmask16)((1u << nj) - 1);
        __m512 r[16], t[16], u[16], v[16];
        for (int i = 0; i < 16; i++) r[i] = i < nrows ? _mm512_maskz_loadu_ps(cm, rows + i * ld + j0) : _mm512_setzero_ps();
        /* 16x16 transpose; afterwards c[j] = column j0 + j of the 16 rows */
        for (int i = 0; i < 16; i += 2) { /* per 128-bit lane: (a0 b0 a1 b1), (a2 b2 a3 b3) */
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int k = 0; k < 16; k += 4) { /* u[k + m], lane L: rows k..k+3 at column 4L + m */
            u[k] = _mm512_shuffle_ps(t[k], t[k + 2], 0x44);
            u[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], 0xEE);
            u[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0x44);
            u[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
        }
        for (int m = 0; m < 4; m++) { /* gather the four row groups' lane L into one vector */
            v[4 * m] = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88);
            v[4 * m + 1] = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xDD);
            v[4 * m + 2] = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88);
            v[4 * m + 3] = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xDD);
            r[m] = _mm512_shuffle_f32x4(v[4 * m], v[4 * m + 2], 0x88);
            r[8 + m] = _mm512_shuffle_f32x4(v[4 * m], v[4 * m + 2], 0xDD);
            r[4 + m] = _mm512_shuffle_f32x4(v[4 * m + 1], v[4 * m + 3], 0x88);
            r[12 + m] = _mm512_shuffle_f32x4(v[4 * m + 1], v[4 * m + 3], 0xDD);
        }
        for (int64_t j = 0; j < nj; j++) {
            const float *q = qT + (j0 + j) * HL;
            for (int g = 0; g < gh; g++) acc[g] = _mm512_fmadd_ps(r[j], _mm512_set1_ps(q[g]), acc[g]);
        }
    }
    float out[16];
    for (int g = 0; g < gh; g++) {
        _mm512_storeu_ps(out, _mm512_mul_ps(acc[g], _mm512_set1_ps(scale)));
        for (int64_t i = 0; i < nrows; i++) sc[g * ctx + i] = out[i];
    }
}

/* scores_tile_16 with its accumulators in registers and 8 rows in flight (8 independent fmaf chains
 * per head lane): per (row, head) the same chain, so bitwise the same; rows past the last 8-block go
 * to scores_tile_16. */
__attribute__((target("avx512f"))) static void scores_tile_16_avx512(const float *restrict qT, const float *restrict rows,
                                                                     int64_t ld, int64_t nrows, int64_t len, float scale,
                                                                     float *restrict out) {
    int64_t i = 0;
    for (; i + 8 <= nrows; i += 8) {
        const float *r = rows + i * ld;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        /* the rows PF_ROWS ahead (the same tile's next 8, or the next tile's; a chunk's rows are contiguous):
         * one cache line per 2 columns covers 8 rows over the j loop (strided short rows defeat the
         * hardware prefetcher) */
        const char *pf = (const char *)(r + PF_ROWS * ld);
        const int64_t pf_lines = 8 * ld * (int64_t)sizeof(float) / 64;
        for (int64_t j = 0; j < len; j++) {
            if (!(j & 1) && (j >> 1) < pf_lines) _mm_prefetch(pf + (j >> 1) * 64, PF_HINT);
            const __m512 q = _mm512_loadu_ps(qT + j * 16);
            a0 = _mm512_fmadd_ps(q, _mm512_set1_ps(r[j]), a0);
            a1 = _mm512_fmadd_ps(q, _mm512_set1_ps(r[ld + j]), a1);
            a2 = _mm512_fmadd_ps(q, _mm512_set1_ps(r[2 * ld + j]), a2);
            a3 = _mm512_fmadd_ps(q, _mm512_set1_ps(r[3 * ld + j]), a3);
            a4 = _mm512_fmadd_ps(q, _mm512_set1_ps(r[4 * ld + j]), a4);
            a5 = _mm512_fmadd_ps(q, _mm512_set1_ps(r[5 * ld + j]), a5);
            a6 = _mm512_fmadd_ps(q, _mm512_set1_ps(r[6 * ld + j]), a6);
            a7 = _mm512_fmadd_ps(q, _mm512_set1_ps(r[7 * ld + j]), a7);
        }
        const __m512 sv = _mm512_set1_ps(scale);
        _mm512_storeu_ps(out + (i + 0) * 16, _mm512_mul_ps(a0, sv));
        _mm512_storeu_ps(out + (i + 1) * 16, _mm512_mul_ps(a1, sv));
        _mm512_storeu_ps(out + (i + 2) * 16, _mm512_mul_ps(a2, sv));
        _mm512_storeu_ps(out + (i + 3) * 16, _mm512_mul_ps(a3, sv));
        _mm512_storeu_ps(out + (i + 4) * 16, _mm512_mul_ps(a4, sv));
        _mm512_storeu_ps(out + (i + 5) * 16, _mm512_mul_ps(a5, sv));
        _mm512_storeu_ps(out + (i + 6) * 16, _mm512_mul_ps(a6, sv));
        _mm512_storeu_ps(out + (i + 7) * 16, _mm512_mul_ps(a7, sv));
    }
    if (i < nrows) scores_tile_16(qT, rows + i * ld, ld, nrows - i, len, scale, out + i * 16);
}

/* accumulate_rows4 for NH heads (4 or 8) x 16*NV columns (NV 4 or 2) per register block, 16 accumulators:
 * the same fmaf per element and s order, so bitwise the same. 8 x 32 streams a chunk's rows from L2 twice
 * per 16 heads instead of four times (4 x 64). Columns past the last block go to accumulate_rows4. */
__attribute__((target("avx512f"), always_inline)) static inline void
accumulate_heads_avx512(const int NH, const int NV, float *restrict lat, int64_t lst, const float *restrict p, int64_t pst,
                        int64_t pss, const float *restrict rows, int64_t ld, int64_t ns, int64_t len) {
    const int64_t cols = 16 * NV;
    int64_t j = 0;
    for (; j + cols <= len; j += cols) {
        __m512 a[8][4];
#pragma GCC unroll 8
        for (int g = 0; g < NH; g++)
#pragma GCC unroll 4
            for (int k = 0; k < NV; k++) a[g][k] = _mm512_loadu_ps(lat + g * lst + j + 16 * k);
        for (int64_t s = 0; s < ns; s++) {
            const float *r = rows + s * ld + j;
            /* the next tile's row (strided rows: help the hardware prefetcher) */
#pragma GCC unroll 2
            for (int k = 0; k < NV; k += 2) _mm_prefetch((const char *)(r + 16 * ld + 16 * k), _MM_HINT_T0);
            __m512 x[4];
#pragma GCC unroll 4
            for (int k = 0; k < NV; k++) {
                x[k] = _mm512_loadu_ps(r + 16 * k);
                /* in registers: left to itself gcc reloads it in every head's FMAs (load bound where a
                 * core loads one zmm per cycle) */
                __asm__("" : "+v"(x[k]));
            }
#pragma GCC unroll 8
            for (int g = 0; g < NH; g++) {
                const __m512 pg = _mm512_set1_ps(p[g * pst + s * pss]);
#pragma GCC unroll 4
                for (int k = 0; k < NV; k++) a[g][k] = _mm512_fmadd_ps(pg, x[k], a[g][k]);
            }
        }
#pragma GCC unroll 8
        for (int g = 0; g < NH; g++)
#pragma GCC unroll 4
            for (int k = 0; k < NV; k++) _mm512_storeu_ps(lat + g * lst + j + 16 * k, a[g][k]);
    }
    if (j < len)
        for (int g = 0; g < NH; g += 4)
            accumulate_rows4(lat + g * lst + j, lst, p + g * pst, pst, pss, rows + j, ld, ns, len - j);
}

__attribute__((target("avx512f"))) static void accumulate_rows4_avx512(float *restrict lat, int64_t lst, const float *restrict p,
                                                                       int64_t pst, int64_t pss, const float *restrict rows,
                                                                       int64_t ld, int64_t ns, int64_t len) {
    accumulate_heads_avx512(4, 4, lat, lst, p, pst, pss, rows, ld, ns, len);
}

__attribute__((target("avx512f"))) static void accumulate_rows8_avx512(float *restrict lat, int64_t lst, const float *restrict p,
                                                                       int64_t pst, int64_t pss, const float *restrict rows,
                                                                       int64_t ld, int64_t ns, int64_t len) {
    accumulate_heads_avx512(8, 2, lat, lst, p, pst, pss, rows, ld, ns, len);
}

/* attn_exp (below) on 16 lanes: the same IEEE single operations in the same order, so the same bits. */
__attribute__((target("avx512f"))) static inline __m512 attn_exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.0f);
    const __mmask16 ok = _mm512_cmp_ps_mask(x, lo, _CMP_GT_OQ), nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __m512 xc = _mm512_mask_mov_ps(lo, ok, x);
    const __m512 n = _mm512_roundscale_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(DSV3_EXP_LOG2E), _mm512_set1_ps(0.5f)),
                                          _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(DSV3_EXP_LN2_HI), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(DSV3_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(DSV3_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(DSV3_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(DSV3_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(DSV3_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(DSV3_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(DSV3_EXP_P5));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
    y = _mm512_maskz_mov_ps(ok, _mm512_mul_ps(y, _mm512_castsi512_ps(bits)));
    return _mm512_mask_mov_ps(y, nan, x);
}

/* Chunk softmax of a heads-as-lanes score tile sc[s][16], s < ns, in place: per lane (head) the
 * arithmetic of softmax_chunk (max in s order, attn_exp, the 16 partial sums by s mod 16 combined by
 * reduce16's tree), so bitwise the same. m, l: [16]. */
__attribute__((target("avx512f"))) static void softmax_rows16_avx512(float *sc, int64_t ns, float *m, float *l) {
    __m512 mx = _mm512_set1_ps(-INFINITY), acc[16];
    for (int64_t s = 0; s < ns; s++) {
        const __m512 v = _mm512_loadu_ps(sc + 16 * s);
        mx = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask(v, mx, _CMP_GT_OQ), v);
    }
    for (int k = 0; k < 16; k++) acc[k] = _mm512_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        const __m512 e = attn_exp16(_mm512_sub_ps(_mm512_loadu_ps(sc + 16 * s), mx));
        _mm512_storeu_ps(sc + 16 * s, e);
        acc[s % 16] = _mm512_add_ps(acc[s % 16], e);
    }
    for (int k = 0; k < 8; k++) acc[k] = _mm512_add_ps(acc[k], acc[k + 8]);
    for (int k = 0; k < 4; k++) acc[k] = _mm512_add_ps(acc[k], acc[k + 4]);
    _mm512_storeu_ps(l, _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3])));
    _mm512_storeu_ps(m, mx);
}
/* softmax_chunk (below) of one head's scores p[i], i < ns, with 16-lane vectors: the max (in any order:
 * the same value, and a -0/+0 difference never changes a result), attn_exp16, and the same 16 partial
 * sums (element i into lane i % 16, i ascending) combined by reduce16: bitwise the same. */
__attribute__((target("avx512f"))) static void softmax_chunk_avx512(float *p, int64_t ns, float *m_out, float *l_out) {
    __m512 mx = _mm512_set1_ps(-INFINITY), acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < ns; i += 16) {
        const __mmask16 k = ns - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (ns - i)) - 1);
        const __m512 v = _mm512_mask_loadu_ps(mx, k, p + i);
        mx = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask(v, mx, _CMP_GT_OQ), v);
    }
    float lanes[16], m = -INFINITY;
    _mm512_storeu_ps(lanes, mx);
    for (int k = 0; k < 16; k++) m = lanes[k] > m ? lanes[k] : m;
    const __m512 mv = _mm512_set1_ps(m);
    for (int64_t i = 0; i < ns; i += 16) {
        const __mmask16 k = ns - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (ns - i)) - 1);
        const __m512 e = attn_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + i), mv));
        _mm512_mask_storeu_ps(p + i, k, e);
        acc = _mm512_mask_add_ps(acc, k, acc, e);
    }
    _mm512_storeu_ps(lanes, acc);
    *m_out = m;
    *l_out = reduce16(lanes);
}
/* reduce16 of 8 vectors at once (halving tree: lanes k + k+8, then k + k+4, then (0+2, 1+3), then 0+1,
 * the very adds of reduce16 per vector): r[i] = reduce16(a[i]). */
__attribute__((target("avx512f"))) static inline void reduce16_x8(const __m512 a[8], float r[8]) {
    __m512 s[4], c[2];
    for (int i = 0; i < 4; i++) /* [a_2i lanes 0-7 | a_2i+1 lanes 0-7] + [.. lanes 8-15 ..] */
        s[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
    for (int i = 0; i < 2; i++) /* 128-bit block b: c[0..3] of source 4i + b */
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * i], s[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(s[2 * i], s[2 * i + 1], 0xDD));
    /* per block: [c0+c2, c1+c3] of source b (from c[0]) and of source 4 + b (from c[1]) */
    const __m512 d = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x44), _mm512_shuffle_ps(c[0], c[1], 0xEE));
    const __m512 e = _mm512_add_ps(d, _mm512_permute_ps(d, 0xB1)); /* lane 0: source b, lane 2: source 4 + b */
    float v[16];
    _mm512_storeu_ps(v, e);
    for (int b = 0; b < 4; b++) {
        r[b] = v[4 * b];
        r[4 + b] = v[4 * b + 2];
    }
}

/* W_UV row chunks as f32: F32 rows, or BF16 rows widened (exact) */
#define LOAD_W_F32(k, p) _mm512_maskz_loadu_ps(k, p)
#define LOAD_W_BF16(k, p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)), 16))

/* output_4 (the W_UV products of 4 tokens) with its 8 accumulators (2 rows x 4 tokens) in registers and
 * the reductions done 8 at a time: the same fmaf per lane and the same tree, so bitwise the same. */
#define DEFINE_OUTPUT4_AVX512(SFX, WT, LOADW)                                                                  \
    __attribute__((target("avx512f,avx512bw,avx512vl"))) static void output_4##SFX##_avx512(                \
        float *restrict out, int64_t lo, const float *restrict lat, int64_t ll, const WT *restrict wuv,       \
        int64_t kvl, int64_t vd) {                                                                             \
        int64_t v = 0;                                                                                         \
        for (; v + 2 <= vd; v += 2) {                                                                          \
            __m512 acc[8];                                                                                     \
            for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();                                          \
            const WT *w0 = wuv + v * kvl, *w1 = w0 + kvl;                                                      \
            for (int64_t j = 0; j < kvl; j += 16) {                                                            \
                const __mmask16 k = kvl - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (kvl - j)) - 1);    \
                const __m512 x0 = LOADW(k, w0 + j), x1 = LOADW(k, w1 + j);                                     \
                for (int t = 0; t < 4; t++) {                                                                  \
                    const __m512 l = _mm512_maskz_loadu_ps(k, lat + t * ll + j);                               \
                    acc[t] = _mm512_mask3_fmadd_ps(l, x0, acc[t], k);                                          \
                    acc[4 + t] = _mm512_mask3_fmadd_ps(l, x1, acc[4 + t], k);                                  \
                }                                                                                              \
            }                                                                                                  \
            float r[8];                                                                                        \
            reduce16_x8(acc, r);                                                                               \
            for (int t = 0; t < 4; t++) {                                                                      \
                out[t * lo + v] = r[t];                                                                        \
                out[t * lo + v + 1] = r[4 + t];                                                                \
            }                                                                                                  \
        }                                                                                                      \
        if (v < vd) output_4##SFX(out + v, lo, lat, ll, wuv + v * kvl, kvl, vd - v);                          \
    }
DEFINE_OUTPUT4_AVX512(, float, LOAD_W_F32)
DEFINE_OUTPUT4_AVX512(_bf16, uint16_t, LOAD_W_BF16)
#define MLA_SIMD() (dsv3_cpu_isa_get() >= DSV3_CPU_ISA_AVX512)
#define MLA_AVX2() (dsv3_cpu_isa_get() == DSV3_CPU_ISA_AVX2) /* mla_avx2.c */
#endif
#ifndef HAVE_SCORES_ROWS_AVX512 /* other targets: the portable kernels (same bits) */
#define MLA_SIMD() 0
#define MLA_AVX2() 0
#define scores_tile_16_avx512 scores_tile_16
#define accumulate_rows4_avx512 accumulate_rows4
#endif

/* ---- one token's attention, by pieces (the same arithmetic whichever schedule calls them) ----
 *
 * Softmax in fixed chunks of keys (flash-decoding; spec §3.6 defines the plain softmax, this is the same
 * function, rounded differently): the keys of a token are cut at absolute positions k * ATTN_CHUNK. For
 * each chunk c and head: m_c = max score, l_c = sum_s e^(score_s - m_c) (16 lanes, reduce16),
 * L_c[j] = sum_s e^(score_s - m_c) c_s[j] (s ascending). The chunks are then folded in ascending order:
 *   M' = max(M, m_c), α = e^(M - M'), β = e^(m_c - M'), l = fmaf(l_c, β, l α), acc[j] = fmaf(L_c[j], β, acc[j] α)
 * (the first chunk is copied), and latent = acc / l. A chunk's keys are read from memory once for both
 * the scores and the latent sums (they stay in L2), and no buffer grows with the context. The chunk
 * boundaries and the fold order depend only on the token's position, never on the batch, the schedule
 * or the thread count. */

#define ATTN_CHUNK DSV3_MLA_CHUNK
#define SPLIT_WINDOW DSV3_MLA_SPLIT_WINDOW
#define MLA_SPLIT_MIN_CTX 256 /* shortest context for which that schedule's barriers pay off */

typedef struct {
    dsv3_workspace *ws;
    dsv3_kv_cache **caches;
    const float *kvb;        /* kv_b_proj in f32 [nh * (nope + vd)][kvl] (cached at load, or F32 data), else NULL */
    const uint16_t *kvb16;   /* a BF16 kv_b_proj's data when kvb is NULL (read directly), else NULL */
    const dsv3_weight *kvw;  /* kv_b_proj as stored (decoded per head into wbuf when kvb is NULL) */
    float *wbuf;             /* per thread: [nope + vd][kvl] */
    int fp8_avx2;            /* FP8 kv_b read as stored by the AVX2 one-token kernels (mla_avx2.c) */
    int64_t cache_layer, nh, nope, rd, qk, vd, kvl, row, kvb_stride;
    float sigma;
    int n_wide;                                   /* sequences whose BF16 rows of this layer are widened */
    int64_t wide_item[DSV3_MLA_WIDE_ITEMS];       /* their batch items */
    const float *wide_rows[DSV3_MLA_WIDE_ITEMS];  /* their rows from position 0, f32 */
} mla_attn;

/* e^x of the softmax (x = score - max <= 0): dsv3_exp_fixed (x <= -87 gives 0, NaN stays NaN, e^0 = 1
 * exactly); the SIMD copies (attn_exp16 here, mla_avx2.c attn_exp8) compute the same bits lane for lane. */
static inline float attn_exp(float x) { return dsv3_exp_fixed(x); }

/* Cache rows [s0, s0 + ns) of token t (ns <= ATTN_CHUNK) as f32 rows a->row apart: the cache itself when
 * it stores f32; for BF16 the rows widen_prefill_rows widened for the layer, or else this thread's buffer
 * with the chunk widened (exact either way: every kernel reads the stored values, whichever schedule or
 * batch it runs in). */
static const float *chunk_keys(const mla_attn *a, int64_t t, int64_t s0, int64_t ns) {
    const int64_t item = a->ws->item_of[t];
    for (int k = 0; k < a->n_wide; k++)
        if (a->wide_item[k] == item) return a->wide_rows[k] + s0 * a->row;
    const dsv3_kv_cache *kc = a->caches[item];
    const int64_t off = kv_cache_off(kc, a->cache_layer, s0);
    if (kc->dtype == DSV3_F32) return (const float *)kc->data + off;
    float *buf = a->ws->mla_keys + (int64_t)omp_get_thread_num() * ATTN_CHUNK * a->row;
    dsv3_convert_to_f32(DSV3_BF16, (const uint16_t *)kc->data + off, buf, (size_t)(ns * a->row));
    return buf;
}

/* The item schedule reads a sequence's cache rows once per token of it: the BF16 rows of sequences with
 * several tokens in this call (prefill) are widened once for the layer, within DSV3_MLA_WIDE_MAX_BYTES
 * (the same values chunk_keys widens a chunk at a time: the same bits). par: in parallel. */
static void widen_prefill_rows(mla_attn *a, int64_t n, int par) {
    dsv3_workspace *ws = a->ws;
    int64_t off[DSV3_MLA_WIDE_ITEMS], rows[DSV3_MLA_WIDE_ITEMS], need = 0;
    a->n_wide = 0;
    for (int64_t t = 0, t1; t < n; t = t1) { /* a batch item's tokens are contiguous */
        const int64_t item = ws->item_of[t];
        int64_t last = ws->pos[t];
        for (t1 = t + 1; t1 < n && ws->item_of[t1] == item; t1++) last = ws->pos[t1] > last ? ws->pos[t1] : last;
        const int64_t nf = (last + 1) * a->row;
        if (t1 - t < 2 || a->caches[item]->dtype != DSV3_BF16 || a->n_wide == DSV3_MLA_WIDE_ITEMS ||
            (need + nf) * (int64_t)sizeof(float) > DSV3_MLA_WIDE_MAX_BYTES)
            continue;
        a->wide_item[a->n_wide] = item;
        off[a->n_wide] = need;
        rows[a->n_wide++] = last + 1;
        need += nf;
    }
    if (!a->n_wide) return;
    if (need > ws->mla_wide_cap) {
        free(ws->mla_wide);
        ws->mla_wide = malloc(sizeof(float) * (size_t)need);
        ws->mla_wide_cap = ws->mla_wide ? need : 0;
        if (!ws->mla_wide) { /* no memory: chunk by chunk as for decode */
            a->n_wide = 0;
            return;
        }
    }
    for (int k = 0; k < a->n_wide; k++) {
        const dsv3_kv_cache *kc = a->caches[a->wide_item[k]];
        const uint16_t *src = (const uint16_t *)kc->data + kv_cache_off(kc, a->cache_layer, 0);
        float *dst = ws->mla_wide + off[k];
        a->wide_rows[k] = dst;
#pragma omp parallel for schedule(static) if (par)
        for (int64_t r = 0; r < rows[k]; r++)
            dsv3_convert_to_f32(DSV3_BF16, src + r * a->row, dst + r * a->row, (size_t)a->row);
    }
}

/* Rows [r0, r0 + nr) of head h's block of kv_b_proj (W_UK: rows 0..nope-1, W_UV: nope..nope+vd-1) in
 * f32: the load-time cache, or this thread's buffer filled with the reference decode (the same values,
 * so the same bits; a big model's kv_b is never expanded as a whole). */
static const float *head_rows(const mla_attn *a, int64_t h, int64_t r0, int64_t nr) {
    const int64_t base = h * a->kvb_stride + r0;
    if (a->kvb) return a->kvb + base * a->kvl;
    float *buf = a->wbuf + (int64_t)omp_get_thread_num() * (a->nope + a->vd) * a->kvl + r0 * a->kvl;
    for (int64_t r = 0; r < nr; r++) dsv3_weight_row_f32(a->kvw, base + r, buf + r * a->kvl);
    return buf;
}

/* q~ of head h for tokens [t, t + nt) into dst rows at stride ld. */
static void absorb_tokens(const mla_attn *a, int64_t t, int64_t nt, int64_t h, float *dst, int64_t ld) {
    const float *qc = a->ws->q + t * a->nh * a->qk + h * a->qk;
    const int64_t lqc = a->nh * a->qk;
    int64_t i = 0;
    if (a->fp8_avx2 && nt < 4) { /* decode: the FP8 rows as stored (the 4-token kernels amortise a decode) */
        for (; i < nt; i++)
            dsv3_mla_absorb1_fp8_avx2(dst + i * ld, qc + i * lqc, a->kvw, h * a->kvb_stride, a->nope, a->kvl);
        return;
    }
    if (a->kvb16) {
        const uint16_t *wuk = a->kvb16 + h * a->kvb_stride * a->kvl;
        if (MLA_AVX2())
            for (; i + 4 <= nt; i += 4) dsv3_mla_absorb4_bf16_avx2(dst + i * ld, ld, qc + i * lqc, lqc, wuk, a->nope, a->kvl);
        for (; i + 4 <= nt; i += 4) absorb_4_bf16(dst + i * ld, ld, qc + i * lqc, lqc, wuk, a->nope, a->kvl);
        if (MLA_AVX2())
            for (; i < nt; i++) dsv3_mla_absorb1_bf16_avx2(dst + i * ld, qc + i * lqc, wuk, a->nope, a->kvl);
        for (; i < nt; i++) absorb_1_bf16(dst + i * ld, ld, qc + i * lqc, lqc, wuk, a->nope, a->kvl);
        return;
    }
    const float *wuk = head_rows(a, h, 0, a->nope);
    if (MLA_AVX2())
        for (; i + 4 <= nt; i += 4) dsv3_mla_absorb4_f32_avx2(dst + i * ld, ld, qc + i * lqc, lqc, wuk, a->nope, a->kvl);
    for (; i + 4 <= nt; i += 4) absorb_4(dst + i * ld, ld, qc + i * lqc, lqc, wuk, a->nope, a->kvl);
    if (MLA_AVX2())
        for (; i < nt; i++) dsv3_mla_absorb1_f32_avx2(dst + i * ld, qc + i * lqc, wuk, a->nope, a->kvl);
    for (; i < nt; i++) absorb_1(dst + i * ld, ld, qc + i * lqc, lqc, wuk, a->nope, a->kvl);
}

/* o_h = W_UV_h latent for tokens [t, t + nt) of head h (latents at stride ll) into the attention output. */
static void output_tokens(const mla_attn *a, int64_t t, int64_t nt, int64_t h, const float *lat, int64_t ll) {
    float *out = a->ws->attn + t * a->nh * a->vd + h * a->vd;
    const int64_t lo = a->nh * a->vd;
    int64_t i = 0;
    if (a->fp8_avx2 && nt < 4) {
        for (; i < nt; i++)
            dsv3_mla_output1_fp8_avx2(out + i * lo, lat + i * ll, a->kvw, h * a->kvb_stride + a->nope, a->kvl, a->vd);
        return;
    }
    if (a->kvb16) {
        const uint16_t *wuv = a->kvb16 + (h * a->kvb_stride + a->nope) * a->kvl;
#ifdef HAVE_SCORES_ROWS_AVX512
        if (MLA_SIMD())
            for (; i + 4 <= nt; i += 4) output_4_bf16_avx512(out + i * lo, lo, lat + i * ll, ll, wuv, a->kvl, a->vd);
#endif
        if (MLA_AVX2())
            for (; i + 4 <= nt; i += 4) dsv3_mla_output4_bf16_avx2(out + i * lo, lo, lat + i * ll, ll, wuv, a->kvl, a->vd);
        for (; i + 4 <= nt; i += 4) output_4_bf16(out + i * lo, lo, lat + i * ll, ll, wuv, a->kvl, a->vd);
        if (MLA_AVX2())
            for (; i < nt; i++) dsv3_mla_output1_bf16_avx2(out + i * lo, lat + i * ll, wuv, a->kvl, a->vd);
        for (; i < nt; i++) output_1_bf16(out + i * lo, lo, lat + i * ll, ll, wuv, a->kvl, a->vd);
        return;
    }
    const float *wuv = head_rows(a, h, a->nope, a->vd);
#ifdef HAVE_SCORES_ROWS_AVX512
    if (MLA_SIMD())
        for (; i + 4 <= nt; i += 4) output_4_avx512(out + i * lo, lo, lat + i * ll, ll, wuv, a->kvl, a->vd);
#endif
    if (MLA_AVX2())
        for (; i + 4 <= nt; i += 4) dsv3_mla_output4_f32_avx2(out + i * lo, lo, lat + i * ll, ll, wuv, a->kvl, a->vd);
    for (; i + 4 <= nt; i += 4) output_4(out + i * lo, lo, lat + i * ll, ll, wuv, a->kvl, a->vd);
    if (MLA_AVX2())
        for (; i < nt; i++) dsv3_mla_output1_f32_avx2(out + i * lo, lat + i * ll, wuv, a->kvl, a->vd);
    for (; i < nt; i++) output_1(out + i * lo, lo, lat + i * ll, ll, wuv, a->kvl, a->vd);
}

/* Lane g of the group's transposed query qt [row][HL] (head h0 + g of token t): [q~ ; q_R] with q~ = qabs
 * (absorb_tokens); lane 0 also zeroes the unused lanes gh..HL-1 (HL = 16 when gh > 8 else 8,
 * gh = min(G, nh - h0)). */
static void group_query_lane(const mla_attn *a, int64_t t, int64_t h0, int64_t G, int64_t g, float *qt,
                             const float *qabs) {
    const int64_t gh = a->nh - h0 < G ? a->nh - h0 : G, HL = gh > 8 ? 16 : 8, kvl = a->kvl, h = h0 + g;
    const float *qc = a->ws->q + t * a->nh * a->qk + h * a->qk;
    for (int64_t j = 0; j < kvl; j++) qt[j * HL + g] = qabs[j];
    for (int64_t j = 0; j < a->rd; j++) qt[(kvl + j) * HL + g] = qc[a->nope + j];
    if (g == 0)
        for (int64_t j = 0; j < a->row; j++)
            for (int64_t u = gh; u < HL; u++) qt[j * HL + u] = 0.0f;
}

/* Scores of a chunk's ns cache rows (keys: their f32 rows) for the group: sc[g * ld + s] = σ [q~ ; q_R]_h · keys_s for
 * head h = h0 + g, g < gh. Each tile of 16 rows is read once for all heads of the group. Causal: the caller
 * passes rows below pos + 1 only (spec §3.6, mask p_s <= p_t). */
static void group_scores(const mla_attn *a, const float *keys, int64_t h0, int64_t G, const float *qt, int64_t ns,
                         float *sc, int64_t ld) {
    const int64_t gh = a->nh - h0 < G ? a->nh - h0 : G, HL = gh > 8 ? 16 : 8, row = a->row;
    float tile[ROW_TILE * 16];
    /* a speed choice only: the kernels give the same bits (the golden test compares the ISA paths) */
    const int simd = MLA_SIMD();
#ifdef HAVE_SCORES_ROWS_AVX512
    if (gh <= 8 && simd) {
        for (int64_t s = 0; s < ns; s += ROW_TILE) {
            const int64_t nt = ns - s < ROW_TILE ? ns - s : ROW_TILE;
            scores_tile_rows_avx512(qt, HL, gh, keys + s * row, row, nt, row, a->sigma, sc + s, ld);
        }
        return;
    }
#endif
    for (int64_t s = 0; s < ns; s += ROW_TILE) {
        const int64_t nt = ns - s < ROW_TILE ? ns - s : ROW_TILE;
        if (HL == 16 && simd) scores_tile_16_avx512(qt, keys + s * row, row, nt, row, a->sigma, tile);
        else if (HL == 16) scores_tile_16(qt, keys + s * row, row, nt, row, a->sigma, tile);
        else scores_tile_8(qt, keys + s * row, row, nt, row, a->sigma, tile);
        for (int64_t g = 0; g < gh; g++)
            for (int64_t i = 0; i < nt; i++) sc[g * ld + s + i] = tile[i * HL + g];
    }
}

/* Chunk softmax of one head's scores p[i], i < ns, in place: m = max (i order), p = attn_exp(p - m),
 * l = 16 partial sums (element i into lane i % 16, i ascending) combined by reduce16. */
static void softmax_chunk(float *p, int64_t ns, float *m_out, float *l_out) {
    float m = -INFINITY, acc[LANES] = {0};
    for (int64_t i = 0; i < ns; i++) m = p[i] > m ? p[i] : m;
    for (int64_t i = 0; i < ns; i++) p[i] = attn_exp(p[i] - m);
    for (int64_t i = 0; i < ns; i++) acc[i % LANES] += p[i];
    *m_out = m;
    *l_out = reduce16(acc);
}

void dsv3_mla_softmax_chunk(float *p, int64_t ns, float *m_out, float *l_out) { softmax_chunk(p, ns, m_out, l_out); }

/* One chunk of keys [s0, s0 + ns) for the group (see the top of this part): out [gh][kvl + 2] holds per
 * head L_c (kvl floats), m_c, l_c. sc: scratch [DSV3_MLA_MAX_GROUP * ATTN_CHUNK]. */
static void chunk_attend(const mla_attn *a, int64_t t, int64_t h0, int64_t G, const float *qt, int64_t s0, int64_t ns,
                         float *sc, float *out) {
    const int64_t gh = a->nh - h0 < G ? a->nh - h0 : G, row = a->row, kvl = a->kvl, ost = kvl + 2;
    const float *keys = chunk_keys(a, t, s0, ns);
    const int simd = MLA_SIMD(), avx2 = MLA_AVX2(); /* same bits, faster */
    int64_t pst = ATTN_CHUNK, pss = 1; /* head g's probability of key s: sc[g * pst + s * pss] */
    if (avx2) { /* heads as lanes throughout: sc [s][HL] (mla_avx2.c) */
        const int64_t HL = gh > 8 ? 16 : 8;
        float m[16], l[16];
        if (gh <= 4) dsv3_mla_scores_tile4_avx2(qt, keys, row, ns, row, a->sigma, sc); /* no idle lanes */
        else dsv3_mla_scores_tile_avx2(HL, qt, keys, row, ns, row, a->sigma, sc);
        dsv3_mla_softmax_rows_avx2(HL, sc, ns, m, l);
        for (int64_t g = 0; g < gh; g++) {
            out[g * ost + kvl] = m[g];
            out[g * ost + kvl + 1] = l[g];
        }
        pst = 1;
        pss = HL;
    } else
#ifdef HAVE_SCORES_ROWS_AVX512
    if (gh > 8 && simd) { /* heads as lanes throughout: sc [s][16] */
        float m[16], l[16];
        scores_tile_16_avx512(qt, keys, row, ns, row, a->sigma, sc);
        softmax_rows16_avx512(sc, ns, m, l);
        for (int64_t g = 0; g < gh; g++) {
            out[g * ost + kvl] = m[g];
            out[g * ost + kvl + 1] = l[g];
        }
        pst = 1;
        pss = 16;
    } else
#endif
    {
        group_scores(a, keys, h0, G, qt, ns, sc, ATTN_CHUNK);
        for (int64_t g = 0; g < gh; g++) {
            float *p = sc + g * ATTN_CHUNK, *m = out + g * ost + kvl, *l = m + 1;
#ifdef HAVE_SCORES_ROWS_AVX512
            if (simd) {
                softmax_chunk_avx512(p, ns, m, l);
                continue;
            }
#endif
            softmax_chunk(p, ns, m, l);
        }
    }
    /* the latent sums start at 0: the AVX2 4-head kernel starts its registers there itself (the memset was
     * ~2% of a decode step at 4096 tokens of context), the others add to a zeroed buffer */
    for (int64_t g = avx2 ? gh / 4 * 4 : 0; g < gh; g++) memset(out + g * ost, 0, sizeof(float) * (size_t)kvl);
    int64_t g = 0;
#ifdef HAVE_SCORES_ROWS_AVX512
    if (simd)
        for (; g + 8 <= gh; g += 8) accumulate_rows8_avx512(out + g * ost, ost, sc + g * pst, pst, pss, keys, row, ns, kvl);
#endif
    for (; g + 4 <= gh; g += 4) {
        if (simd) accumulate_rows4_avx512(out + g * ost, ost, sc + g * pst, pst, pss, keys, row, ns, kvl);
        else if (avx2) dsv3_mla_accumulate_rows4_avx2(out + g * ost, ost, sc + g * pst, pst, pss, keys, row, ns, kvl, 1);
        else accumulate_rows4(out + g * ost, ost, sc + g * pst, pst, pss, keys, row, ns, kvl);
    }
    for (; g < gh; g++) accumulate_rows(out + g * ost, sc + g * pst, pss, keys, row, ns, kvl);
}

/* Folds one head's chunk result c ([kvl] L_c, m_c, l_c) into its running state st (same layout). */
static void fold_chunk(float *restrict st, const float *restrict c, int64_t kvl, int first) {
    if (first) {
        memcpy(st, c, sizeof(float) * (size_t)(kvl + 2));
        return;
    }
    const float M = st[kvl], mc = c[kvl], Mn = mc > M ? mc : M;
    const float al = attn_exp(M - Mn), be = attn_exp(mc - Mn);
    for (int64_t j = 0; j < kvl; j++) st[j] = fmaf(c[j], be, st[j] * al);
    st[kvl] = Mn;
    st[kvl + 1] = fmaf(c[kvl + 1], be, st[kvl + 1] * al);
}

/* The folded state st of one head -> its latent acc / l, in place. */
static void normalize_state(float *st, int64_t kvl) {
    const float inv = 1.0f / st[kvl + 1];
    for (int64_t j = 0; j < kvl; j++) st[j] *= inv;
}

/* keys/values of the n rows of ws->hn (attn_norm output): [ĉ ; k̂_R] = kv_a h; cache row =
 * [kv_a_norm(ĉ) ; RoPE(k̂_R)] (spec §7.10) */
static void kv_to_cache(dsv3_model *m, const dsv3_layer *L, int64_t cache_layer, dsv3_kv_cache **caches, int64_t n) {
    const dsv3_config *c = &m->cfg;
    dsv3_workspace *ws = &m->ws;
    const int64_t kvl = c->kv_lora_rank, rd = c->qk_rope_head_dim, row = kvl + rd;
    m->be->matmul(ws->kv, ws->hn, n, &L->kv_a);
    for (int64_t t = 0; t < n; t++) {
        dsv3_kv_cache *kc = caches[ws->item_of[t]];
        const int64_t off = kv_cache_off(kc, cache_layer, ws->pos[t]);
        float *src = ws->kv + t * row, *dst = kc->dtype == DSV3_F32 ? (float *)kc->data + off : src;
        dsv3_rmsnorm(dst, src, L->kv_a_norm, kvl, (float)c->rms_norm_eps);
        rope_apply(dst + kvl, src + kvl, rd, ws->pos[t], m->rope_freqs, m->rope_attn_factor);
        if (kc->dtype == DSV3_BF16) /* the row computed in place, stored rounded (nearest even) */
            for (int64_t j = 0; j < row; j++) ((uint16_t *)kc->data)[off + j] = dsv3_f32_to_bf16(dst[j]);
    }
}

void dsv3_mla_append_kv(dsv3_model *m, const dsv3_layer *L, int64_t cache_layer, dsv3_kv_cache **caches,
                        const float *x, int64_t n) {
    const int64_t H = m->cfg.hidden_size;
    for (int64_t t = 0; t < n; t++) dsv3_rmsnorm(m->ws.hn + t * H, x + t * H, L->attn_norm, H, (float)m->cfg.rms_norm_eps);
    kv_to_cache(m, L, cache_layer, caches, n);
}

/* Weights read right after a long decode attention (the split schedule), prefetched while it runs: it is
 * compute bound over the cache and leaves the memory nearly idle. This layer's o_proj, router and shared
 * expert (or dense MLP), then the next main layer's query and KV projections, up to PF_MAX_BYTES, spread
 * over the attention's chunks, into L2 (and L3 as its victims): the matmuls after the attention then read
 * them from cache. Only for weights read from memory (dsv3_weight.streamed); a prefetch never changes a
 * value. bench-1b decode at 4096 tokens of context (8.6 MB per layer), old / new alternated: 21.01 / 19.42,
 * 21.55 / 19.30, 19.96 / 19.54 ms per token (at 64 tokens the split schedule does not run). */
#define PF_MAX_BYTES (16 << 20)
#define PF_MAX_RANGES 12
typedef struct {
    const char *p[PF_MAX_RANGES];
    int64_t lines[PF_MAX_RANGES]; /* 64-byte lines of each range */
    int n;
    int64_t total;
} pf_plan;

static void pf_add(pf_plan *pl, const void *p, int64_t bytes) {
    if (!p || bytes <= 0 || pl->n == PF_MAX_RANGES) return;
    int64_t lines = (bytes + 63) / 64;
    if ((pl->total + lines) * 64 > PF_MAX_BYTES) lines = PF_MAX_BYTES / 64 - pl->total;
    if (lines <= 0) return;
    pl->p[pl->n] = p;
    pl->lines[pl->n++] = lines;
    pl->total += lines;
}

static void pf_add_weight(pf_plan *pl, const dsv3_weight *w) {
    if (w->data) pf_add(pl, w->data, w->rows * w->cols * (int64_t)dsv3_dtype_size(w->dtype));
}

static void pf_plan_build(const dsv3_model *m, const dsv3_layer *L, int64_t cache_layer, pf_plan *pl) {
    memset(pl, 0, sizeof *pl);
    if (!L->o.streamed) return;
    pf_add_weight(pl, &L->o);
    const int64_t H = m->cfg.hidden_size;
    if (L->is_moe) {
        pf_add(pl, L->router, m->cfg.n_routed_experts * H * (int64_t)sizeof(float));
        pf_add_weight(pl, &L->shared.gate);
        pf_add_weight(pl, &L->shared.up);
        pf_add_weight(pl, &L->shared.down);
    } else {
        pf_add_weight(pl, &L->mlp.gate);
        pf_add_weight(pl, &L->mlp.up);
        pf_add_weight(pl, &L->mlp.down);
    }
    if (cache_layer + 1 < m->cfg.num_hidden_layers) {
        const dsv3_layer *N = &m->layers[cache_layer + 1];
        pf_add_weight(pl, &N->q_a);
        pf_add_weight(pl, &N->q_b);
        pf_add_weight(pl, &N->q_proj);
        pf_add_weight(pl, &N->kv_a);
        if (N->kv_b_f32) pf_add(pl, N->kv_b_f32, N->kv_b.rows * N->kv_b.cols * (int64_t)sizeof(float));
        else pf_add_weight(pl, &N->kv_b);
    }
}

/* Slice k of nk of the plan's lines. */
static void pf_slice(const pf_plan *pl, int64_t k, int64_t nk) {
    if (!pl->total) return;
    const int64_t per = (pl->total + nk - 1) / nk;
    int64_t a = k * per, b = a + per < pl->total ? a + per : pl->total;
    for (int r = 0; r < pl->n && a < b; r++) {
        if (a >= pl->lines[r]) {
            a -= pl->lines[r];
            b -= pl->lines[r];
            continue;
        }
        const int64_t e = b < pl->lines[r] ? b : pl->lines[r];
        for (int64_t l = a; l < e; l++) __builtin_prefetch(pl->p[r] + l * 64, 0, 2);
        a = 0;
        b -= pl->lines[r];
    }
}

void dsv3_mla_forward(dsv3_model *m, const dsv3_layer *L, int64_t cache_layer, dsv3_kv_cache **caches, float *x,
                      int64_t n) {
    const dsv3_config *c = &m->cfg;
    dsv3_workspace *ws = &m->ws;
    const dsv3_backend *be = m->be;
    const int64_t H = c->hidden_size, nh = c->num_attention_heads, nope = c->qk_nope_head_dim,
                  rd = c->qk_rope_head_dim, qk = nope + rd, vd = c->v_head_dim, kvl = c->kv_lora_rank,
                  row = kvl + rd, kvb_stride = nope + vd;
    const float eps = (float)c->rms_norm_eps;

    for (int64_t t = 0; t < n; t++) dsv3_rmsnorm(ws->hn + t * H, x + t * H, L->attn_norm, H, eps);

    /* queries: q_b(q_a_norm(q_a h)) or q_proj h  -> [n, nh*qk] */
    if (c->q_lora_rank > 0) {
        be->matmul(ws->qa, ws->hn, n, &L->q_a);
        for (int64_t t = 0; t < n; t++)
            dsv3_rmsnorm(ws->qa + t * c->q_lora_rank, ws->qa + t * c->q_lora_rank, L->q_a_norm, c->q_lora_rank, eps);
        be->matmul(ws->q, ws->qa, n, &L->q_b);
    } else {
        be->matmul(ws->q, ws->hn, n, &L->q_proj);
    }
    kv_to_cache(m, L, cache_layer, caches, n);
    for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < nh; h++) {
            float *qr = ws->q + t * nh * qk + h * qk + nope;
            rope_apply(qr, qr, rd, ws->pos[t], m->rope_freqs, m->rope_attn_factor);
        }
    /* kv_b_proj: rows [h*(nope+v), +nope) = W_UK_h, next vd rows = W_UV_h; an f32 copy cached at load, or
     * F32 / BF16 data read directly, or decoded per head where it is used (head_rows; weights.c) */
    const float *kvb = L->kv_b_f32 ? L->kv_b_f32 : L->kv_b.dtype == DSV3_F32 ? (const float *)L->kv_b.data : NULL;
    const uint16_t *kvb16 = !kvb && L->kv_b.dtype == DSV3_BF16 ? (const uint16_t *)L->kv_b.data : NULL;
    mla_attn a = {.ws = ws, .caches = caches, .kvb = kvb, .kvb16 = kvb16, .kvw = &L->kv_b, .wbuf = ws->kvb, .cache_layer = cache_layer, .nh = nh, .nope = nope,
                  .rd = rd, .qk = qk, .vd = vd, .kvl = kvl, .row = row, .kvb_stride = kvb_stride,
                  .sigma = m->softmax_scale, .fp8_avx2 = MLA_AVX2() && dsv3_mla_fp8_kvb_avx2_ok(&L->kv_b, kvl)};
    const int nthr = omp_get_max_threads();
    const int64_t ost = kvl + 2; /* a chunk result / folded state per head: [kvl] sums, max, normaliser */
    int64_t G = nh < DSV3_MLA_MAX_GROUP ? nh : DSV3_MLA_MAX_GROUP, ngroups = (nh + G - 1) / G;
    int64_t nk_max = 1; /* longest context of the batch (the schedule choice never changes a result) */
    for (int64_t t = 0; t < n; t++) nk_max = ws->pos[t] + 1 > nk_max ? ws->pos[t] + 1 : nk_max;
    const int par = n * nh * nk_max * row > DSV3_OMP_MIN_WORK;
    if (par && n < nthr && nk_max >= MLA_SPLIT_MIN_CTX && n * ngroups <= nthr) {
        /* Few tokens (decode): the chunks of a token are spread over the threads, in windows of
         * SPLIT_WINDOW chunks: every chunk result of the window is computed (dynamic schedule), then each
         * (token, head) folds the window's chunks in ascending order — the fold order of the item
         * schedule below, so the same bits. Buffers (n * ngroups <= threads items) fit in the scratch. */
        const int64_t items = n * ngroups, nch = (nk_max + ATTN_CHUNK - 1) / ATTN_CHUNK;
        float *qt = ws->head_scratch;                        /* [items][row][16] */
        float *st = qt + items * row * 16;                   /* [n][nh][ost] folded state */
        float *buf = st + n * nh * ost;                      /* [items][SPLIT_WINDOW][G][ost] */
        pf_plan pf;
        pf_plan_build(m, L, cache_layer, &pf);
#pragma omp parallel
        {
            float sc[DSV3_MLA_MAX_GROUP * ATTN_CHUNK];
#pragma omp for schedule(static)
            for (int64_t th = 0; th < n * nh; th++) { /* one head per iteration; its own state as tmp */
                const int64_t t = th / nh, h = th % nh, tg = t * ngroups + h / G;
                absorb_tokens(&a, t, 1, h, st + th * ost, ost);
                group_query_lane(&a, t, (h / G) * G, G, h % G, qt + tg * row * 16, st + th * ost);
            }
            for (int64_t w0 = 0; w0 < nch; w0 += SPLIT_WINDOW) {
                const int64_t nw = nch - w0 < SPLIT_WINDOW ? nch - w0 : SPLIT_WINDOW;
#pragma omp for schedule(dynamic, 1)
                for (int64_t it = 0; it < items * nw; it++) {
                    const int64_t tg = it / nw, c = w0 + it % nw, t = tg / ngroups, h0 = (tg % ngroups) * G;
                    const int64_t s0 = c * ATTN_CHUNK, nk = ws->pos[t] + 1;
                    if (s0 < nk)
                        chunk_attend(&a, t, h0, G, qt + tg * row * 16, s0, nk - s0 < ATTN_CHUNK ? nk - s0 : ATTN_CHUNK,
                                     sc, buf + (tg * SPLIT_WINDOW + (c - w0)) * G * ost);
                    pf_slice(&pf, w0 * items + it, items * nch);
                }
#pragma omp for schedule(static)
                for (int64_t th = 0; th < n * nh; th++) {
                    const int64_t t = th / nh, h = th % nh, tg = t * ngroups + h / G, nkc = (ws->pos[t] + ATTN_CHUNK) / ATTN_CHUNK;
                    for (int64_t c = w0; c < w0 + nw && c < nkc; c++)
                        fold_chunk(st + th * ost, buf + ((tg * SPLIT_WINDOW + (c - w0)) * G + h % G) * ost, kvl, c == 0);
                    if (w0 + nw >= nch) {
                        normalize_state(st + th * ost, kvl);
                        output_tokens(&a, t, 1, h, st + th * ost, ost);
                    }
                }
            }
        }
    } else {
        /* Work items (token, group of G heads), one thread each: the group's heads share every pass over
         * the token's cache rows, chunk by chunk, folded as they come. With fewer tokens than threads
         * (short contexts, where the split schedule's barriers cost more than they save) smaller groups
         * give every thread an item. */
        if (n < nthr) {
            int64_t per_tok = (nthr + n - 1) / n, g = (nh + per_tok - 1) / per_tok;
            if (g < G) G = g < 1 ? 1 : g;
            ngroups = (nh + G - 1) / G;
        }
        /* Blocks of DSV3_MLA_TOKEN_BLOCK tokens: the absorbed queries (W_UK^T q) and the outputs (W_UV
         * latent) of a block run 4 tokens per pass over a head's W_UK / W_UV; the items in between. */
        widen_prefill_rows(&a, n, par);
        const int64_t scratch = dsv3_mla_scratch_per_thread(c), TB = DSV3_MLA_TOKEN_BLOCK;
        float *qa = ws->mla_tok, *la = qa + TB * nh * ost; /* [TB][nh][ost]: q~, then the latents */
        for (int64_t t0 = 0; t0 < n; t0 += TB) {
            const int64_t nb = n - t0 < TB ? n - t0 : TB;
#pragma omp parallel if (par)
            {
#pragma omp for schedule(static)
                for (int64_t h = 0; h < nh; h++) absorb_tokens(&a, t0, nb, h, qa + h * ost, nh * ost);
#pragma omp for schedule(dynamic, 1)
                for (int64_t it = 0; it < nb * ngroups; it++) {
                    const int64_t tb = it / ngroups, t = t0 + tb, h0 = (it % ngroups) * G, gh = nh - h0 < G ? nh - h0 : G;
                    float *qt = ws->head_scratch + omp_get_thread_num() * scratch; /* [row][16] */
                    float *st = qt + DSV3_MLA_MAX_GROUP * row;                      /* [gh][ost] folded state */
                    float *cr = st + DSV3_MLA_MAX_GROUP * ost;                      /* [gh][ost] chunk result */
                    float *sc = cr + DSV3_MLA_MAX_GROUP * ost;                      /* [G][ATTN_CHUNK] */
                    const int64_t nk = ws->pos[t] + 1;
                    for (int64_t g = 0; g < gh; g++) group_query_lane(&a, t, h0, G, g, qt, qa + (tb * nh + h0 + g) * ost);
                    for (int64_t s0 = 0; s0 < nk; s0 += ATTN_CHUNK) {
                        chunk_attend(&a, t, h0, G, qt, s0, nk - s0 < ATTN_CHUNK ? nk - s0 : ATTN_CHUNK, sc, cr);
                        for (int64_t g = 0; g < gh; g++) fold_chunk(st + g * ost, cr + g * ost, kvl, s0 == 0);
                    }
                    for (int64_t g = 0; g < gh; g++) {
                        normalize_state(st + g * ost, kvl);
                        memcpy(la + (tb * nh + h0 + g) * ost, st + g * ost, sizeof(float) * (size_t)kvl);
                    }
                }
#pragma omp for schedule(static)
                for (int64_t h = 0; h < nh; h++) output_tokens(&a, t0, nb, h, la + h * ost, nh * ost);
            }
        }
    }
    be->matmul(ws->proj, ws->attn, n, &L->o);
    for (int64_t i = 0; i < n * H; i++) x[i] += ws->proj[i];
}
