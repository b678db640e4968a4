/* AMX BF16 matmul (see amx.h for the contract and the numerics).
 *
 * Operands (AMX TDPBF16PS: C[16][16] f32 += A[16][32] bf16 . B[32][16] bf16):
 *  - A = weights: 16 rows x 32 k (64 bytes). BF16 strips are loaded straight
 *    from the row-major checkpoint data (stride cols*2; tile loads accept any
 *    alignment). FP8 strips (and the BF16 strip at the end of the row range,
 *    which may have < 32 rows) are first converted/copied into a thread-local
 *    zero-padded bf16 buffer, once per group of strips, reused for every token.
 *  - B = activations, repacked once per call: each token t contributes three
 *    "columns" j = 3t+p (p = 0,1,2: hi, mid, lo of the exact bf16 split), and
 *    the columns are cut into panels of 16 in the VNNI pair layout
 *    (B row kk = the pairs (x[2kk], x[2kk+1]) of the 16 columns, 64 bytes).
 *    The three parts are combined at the end as hi + (mid + lo).
 *  - k is zero padded to a multiple of 32 in both operands (adds exact +0).
 *    FP8 weights are processed per scale block (block_c wide, padded to a
 *    multiple of 32 on its own): the C tile is zeroed for each block and its
 *    partial sum is added as acc = fma(S[o/block_r][kb], partial, acc) in
 *    ascending kb.
 *
 * Batch invariance: an output element (o, t) is always produced by the same
 * tile operation sequence over k (same 32-wide k steps in the same order, the
 * same per-block zeroing and scale-add for FP8, the same combine), whatever
 * the micro-kernel blocking (1-2 row tiles x 1-2 panels), the token chunking,
 * the row split across threads or the loop order; AMX computes every element
 * of a C tile independently of the other rows/columns, and storing a C tile to
 * memory and loading it back is exact.
 *
 * Threading: OpenMP; output rows are split statically in 32-row strips; the
 * activation packing is split over tokens. Every thread loads its own tile
 * configuration and releases it at the end. */
#define _GNU_SOURCE
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "amx.h"
#include "cpu_kernels.h"

#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16,avx512vbmi")))

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

#define KSTEP 32            /* bf16 elements of k per tile step (64-byte tile rows) */
#define STRIP 32            /* output rows per strip = 2 row tiles of 16 */
#ifndef KBLOCK
#define KBLOCK 8            /* BF16: k steps per pass over the panel pairs (A block of a strip: 16 KB, in L1) */
#endif
#ifndef PF_STEPS
#define PF_STEPS 4          /* BF16 A prefetch distance into L1, in k steps */
#endif
#ifndef PF_L2
#define PF_L2 0
#endif
#define AMX_OMP_MIN_WORK DSV3_OMP_MIN_WORK /* multiply-adds below which one thread runs (results identical) */
#define B_CHUNK_BYTES (1 << 20)    /* packed activations per token chunk (kept in L2 across strips) */
#define B_CALL_BYTES (64 << 20)    /* packed activations per parallel region (bounds memory for long T) */
#define A_GROUP_BYTES (768 << 10)  /* converted FP8 weights per strip group */
#define FP8_PREFETCH 4096          /* software prefetch distance of the FP8 conversion (bytes) */

/* ---------------------------------------------------------------- probe */

static int g_amx_ok;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void amx_probe(void) {
    const char *env = getenv("DSV3_NO_AMX");
    if (env && *env && strcmp(env, "0") != 0) return;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return; /* OSXSAVE: xgetbv usable */
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    int ok = (b >> 16 & 1) /* AVX512F */ && (b >> 30 & 1) /* AVX512BW */ && (c >> 1 & 1) /* AVX512_VBMI */ &&
             (d >> 22 & 1) /* AMX-BF16 */ && (d >> 24 & 1) /* AMX-TILE */;
    __cpuid_count(7, 1, a, b, c, d);
    ok = ok && (a >> 5 & 1); /* AVX512_BF16 */
    if (!ok) return;
    /* The OS must manage SSE/AVX/opmask/ZMM state (XCR0 bits 1,2,5,6,7) and the tile state (17, 18). */
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x600e6) != 0x600e6) return;
    /* Linux hands out the 8 KB tile data state only on request (per process, all threads). */
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return;
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) != 0 || !(perm & (1ul << XFEATURE_XTILEDATA))) return;
    g_amx_ok = 1;
}

int dsv3_amx_available(void) {
    pthread_once(&g_amx_once, amx_probe);
    return g_amx_ok;
}

int dsv3_amx_supports(const dsv3_weight *W) {
    if (W->cols <= 0) return 0; /* nothing to tile (the panels' sizes divide by the padded K) */
    if (W->dtype == DSV3_BF16) return 1;
    if (W->dtype == DSV3_F8_E4M3 || W->dtype == DSV3_F8_E5M2)
        return W->scale && W->block_r > 0 && W->block_c > 0 && W->scale_cols >= (W->cols + W->block_c - 1) / W->block_c &&
               W->scale_rows >= (W->rows + W->block_r - 1) / W->block_r;
    return 0;
}

/* ---------------------------------------------------------------- tiles */

/* Palette 1; tmm0-3 = C (16 x 16 f32), tmm4-5 = A, tmm6-7 = B: all 16 rows x 64 bytes.
 * Static so the whole 64-byte block is really in memory (ldtilecfg's asm only
 * names its first bytes as an operand). */
static const struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) g_tilecfg = {
    1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

static AMX_TARGET void tiles_begin(void) { _tile_loadconfig(&g_tilecfg); }
static AMX_TARGET void tiles_end(void) { _tile_release(); }

typedef struct {
    const uint8_t *a0, *a1; /* A row tiles at the first k step; a1 = a0 when 1 row tile */
    int64_t lda;            /* bytes between weight rows */
    const uint8_t *b0, *b1; /* B panels at the first k step (1 KB per step); b1 = b0 when 1 panel */
    int64_t steps;          /* k steps of 32 */
    float *c[2][2];         /* C tiles [row tile][panel], 16 x 16 f32, 64-byte rows */
    int load_c;             /* 1: continue from c, 0: start from zero */
    /* Software prefetch of A (or pf0 = NULL): at step s, the 64 bytes of each of the 16*MR rows
     * at pf0 + 64 s (s < pfn), then at pf1 + 64 (s - pfn), into L1; and (pf2 != NULL) at pf2 + 64 s into L2. */
    const uint8_t *pf0, *pf1, *pf2;
    int64_t pfn;
} mk_args;

/* Micro-kernel: MR row tiles x NR panels, `steps` k steps, C stored back to g->c.
 * GCC's tile load intrinsics are asm without a memory clobber, hence the
 * barrier: buffers written just before (packing, conversion) must be in memory. */
#define MK_DEF(MR, NR)                                                                        \
    static AMX_TARGET void mk_##MR##x##NR(const mk_args *g) {                                 \
        __asm__ volatile("" ::: "memory");                                                    \
        if (g->load_c) {                                                                      \
            _tile_loadd(0, g->c[0][0], 64);                                                   \
            if (NR > 1) _tile_loadd(1, g->c[0][1], 64);                                       \
            if (MR > 1) _tile_loadd(2, g->c[1][0], 64);                                       \
            if (MR > 1 && NR > 1) _tile_loadd(3, g->c[1][1], 64);                             \
        } else {                                                                              \
            _tile_zero(0);                                                                    \
            if (NR > 1) _tile_zero(1);                                                        \
            if (MR > 1) _tile_zero(2);                                                        \
            if (MR > 1 && NR > 1) _tile_zero(3);                                              \
        }                                                                                     \
        const uint8_t *a0 = g->a0, *a1 = g->a1, *b0 = g->b0, *b1 = g->b1;                     \
        const int64_t lda = g->lda;                                                           \
        for (int64_t s = 0; s < g->steps; s++) {                                              \
            if (g->pf0) {                                                                     \
                const char *p = (const char *)(s < g->pfn ? g->pf0 + 64 * s : g->pf1 + 64 * (s - g->pfn)); \
                for (int r = 0; r < 16 * MR; r++) _mm_prefetch(p + r * lda, _MM_HINT_T0);     \
                if (g->pf2)                                                                   \
                    for (int r = 0; r < 16 * MR; r++) _mm_prefetch((const char *)g->pf2 + 64 * s + r * lda, _MM_HINT_T1); \
            }                                                                                 \
            _tile_loadd(4, a0, lda);                                                          \
            _tile_loadd(6, b0, 64);                                                           \
            if (NR > 1) _tile_loadd(7, b1, 64);                                               \
            if (MR > 1) _tile_loadd(5, a1, lda);                                              \
            _tile_dpbf16ps(0, 4, 6);                                                          \
            if (NR > 1) _tile_dpbf16ps(1, 4, 7);                                              \
            if (MR > 1) _tile_dpbf16ps(2, 5, 6);                                              \
            if (MR > 1 && NR > 1) _tile_dpbf16ps(3, 5, 7);                                    \
            a0 += 64, a1 += 64, b0 += 1024, b1 += 1024;                                       \
        }                                                                                     \
        _tile_stored(0, g->c[0][0], 64);                                                      \
        if (NR > 1) _tile_stored(1, g->c[0][1], 64);                                          \
        if (MR > 1) _tile_stored(2, g->c[1][0], 64);                                          \
        if (MR > 1 && NR > 1) _tile_stored(3, g->c[1][1], 64);                                \
    }
MK_DEF(2, 2)
MK_DEF(2, 1)
MK_DEF(1, 2)
MK_DEF(1, 1)

static AMX_TARGET void mk_run(int mr, int nr, const mk_args *g) {
    if (mr == 2) nr == 2 ? mk_2x2(g) : mk_2x1(g);
    else nr == 2 ? mk_1x2(g) : mk_1x1(g);
}

/* ---------------------------------------------------------------- layout */

/* Padded k layout shared by A and B. The k range is cut into segments of seg_k
 * (BF16: one segment = all of k; FP8: one per scale block); segment s holds
 * original k in [s*seg_k, min(K, (s+1)*seg_k)) at padded offset s*seg_kp and is
 * zero padded to a multiple of KSTEP. */
typedef struct {
    const dsv3_weight *W;
    int fp8;
    int64_t K, Kp, nseg, seg_k, seg_kp;
    int64_t T;                 /* tokens in this region */
    const float *x;            /* [T][K] */
    uint32_t *B;               /* packed panels */
    int64_t panel_words;       /* u32 words per panel = Kp/2 * 16 */
    int64_t tc_max;            /* tokens per chunk (multiple of 16 => chunks start on a panel) */
    int64_t r0, r1, ld;
    float *out;
    uint16_t lut[128];         /* FP8: bf16 bits of the magnitude 0..127 */
    uint8_t lut_lo[128] __attribute__((aligned(64))), lut_hi[128] __attribute__((aligned(64))); /* its low / high bytes */
} plan;

static inline int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }
static inline int64_t seg_len(const plan *P, int64_t s) {
    int64_t rem = P->K - s * P->seg_k;
    return rem < P->seg_k ? rem : P->seg_k;
}

/* ---------------------------------------------------------------- activations */

/* bf16 round-to-nearest-even of 16 floats as 32-bit lanes holding the bf16 bits
 * (same as dsv3_f32_to_bf16, NaN stays a quiet NaN). */
static AMX_TARGET inline __m512i bf16_rne(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
}

/* Exact split of xs[0..n) (n multiple of 16): hi = bf16(x), mid = bf16(x-hi), lo = bf16(x-hi-mid). */
static AMX_TARGET void split3(const float *xs, int64_t n, uint16_t *hi, uint16_t *mid, uint16_t *lo) {
    for (int64_t i = 0; i < n; i += 16) {
        __m512 v = _mm512_loadu_ps(xs + i);
        __m512i h = bf16_rne(v);
        __m512 r = _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16))); /* exact */
        __m512i m = bf16_rne(r);
        __m512 r2 = _mm512_sub_ps(r, _mm512_castsi512_ps(_mm512_slli_epi32(m, 16))); /* exact */
        __m512i l = bf16_rne(r2);                                                      /* exact */
        _mm256_storeu_si256((__m256i *)(hi + i), _mm512_cvtepi32_epi16(h));
        _mm256_storeu_si256((__m256i *)(mid + i), _mm512_cvtepi32_epi16(m));
        _mm256_storeu_si256((__m256i *)(lo + i), _mm512_cvtepi32_epi16(l));
    }
}

/* In-place transpose of a 16 x 16 matrix of 32-bit values held in 16 zmm rows. */
static AMX_TARGET inline void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) { /* within 128-bit lanes: pairs of rows interleaved */
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) { /* r[4i+k] lane L = rows 4i..4i+3 of column 4L+k */
        r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int k = 0; k < 4; k++) { /* then whole 128-bit lanes across the row groups */
        t[k] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x88);
        t[k + 4] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xdd);
        t[k + 8] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x88);
        t[k + 12] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xdd);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0x88);
        r[k + 8] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0xdd);
        r[k + 4] = _mm512_shuffle_i32x4(t[4 + k], t[12 + k], 0x88);
        r[k + 12] = _mm512_shuffle_i32x4(t[4 + k], t[12 + k], 0xdd);
    }
}

/* Packs tokens [16 tb, 16 tb + 16) of the region = columns [48 tb, 48 tb + 48)
 * = panels 3 tb .. 3 tb + 2. xs: scratch f32 [Kp]; S: scratch u16 [48][Kp]
 * (column-major parts). Each panel is a 16 x (Kp/2) transpose of 32-bit pair
 * words: panel row kk = word kk (x[2kk] low, x[2kk+1] high) of its 16 columns. */
static AMX_TARGET void pack_block(const plan *P, int64_t tb, float *xs, uint16_t *S) {
    const int64_t t0 = 16 * tb, n = P->T - t0 < 16 ? P->T - t0 : 16;
    for (int64_t tl = 0; tl < n; tl++) {
        const float *xt = P->x + (t0 + tl) * P->K;
        for (int64_t s = 0; s < P->nseg; s++) { /* gather into the padded layout */
            int64_t len = seg_len(P, s), plen = round_up(len, KSTEP);
            memcpy(xs + s * P->seg_kp, xt + s * P->seg_k, sizeof(float) * len);
            memset(xs + s * P->seg_kp + len, 0, sizeof(float) * (plen - len));
        }
        uint16_t *col = S + 3 * tl * P->Kp;
        split3(xs, P->Kp, col, col + P->Kp, col + 2 * P->Kp);
    }
    const int64_t npan_all = (3 * P->T + 15) / 16, ncols = 3 * n;
    for (int64_t q = 0; q < 3 && 3 * tb + q < npan_all; q++) {
        uint32_t *panel = P->B + (3 * tb + q) * P->panel_words;
        for (int64_t kk0 = 0; kk0 < P->Kp / 2; kk0 += 16) {
            __m512i r[16];
            for (int c = 0; c < 16; c++) {
                int64_t j = 16 * q + c;
                r[c] = j < ncols ? _mm512_load_si512(S + j * P->Kp + 2 * kk0) : _mm512_setzero_si512();
            }
            transpose16(r);
            for (int kk = 0; kk < 16; kk++) _mm512_store_si512(panel + (kk0 + kk) * 16, r[kk]);
        }
    }
}

/* ---------------------------------------------------------------- weights */

/* FP8 -> bf16 bits for n bytes (exact: 3 or 2 mantissa bits fit in bf16), 64 at a time
 * (fp8x64_bf16 below: byte-table lookups of the bf16 low/high bytes). */
static AMX_TARGET inline void fp8x64_bf16(__m512i x, const __m512i tab[4], const __m512i il[2], __m512i *o0, __m512i *o1);
static AMX_TARGET void fp8_tables(const plan *P, __m512i tab[4], __m512i il[2]);

static AMX_TARGET void fp8_to_bf16(uint16_t *dst, const uint8_t *src, int64_t n, const plan *P) {
    __m512i tab[4], il[2];
    fp8_tables(P, tab, il);
    for (int64_t i = 0; i < n; i += 64) {
        _mm_prefetch((const char *)src + i + FP8_PREFETCH, _MM_HINT_T0); /* never faults, even past the end */
        const int64_t rem = n - i;
        __m512i o0, o1;
        if (rem >= 64) {
            fp8x64_bf16(_mm512_loadu_si512(src + i), tab, il, &o0, &o1);
            _mm512_storeu_si512(dst + i, o0);
            _mm512_storeu_si512(dst + i + 32, o1);
        } else {
            fp8x64_bf16(_mm512_maskz_loadu_epi8(((__mmask64)1 << rem) - 1, src + i), tab, il, &o0, &o1);
            _mm512_mask_storeu_epi16(dst + i, rem >= 32 ? ~(__mmask32)0 : ((__mmask32)1 << rem) - 1, o0);
            if (rem > 32) _mm512_mask_storeu_epi16(dst + i + 32, ((__mmask32)1 << (rem - 32)) - 1, o1);
        }
    }
}

/* Writes rows [o0, o0+nrows) of W into buf [STRIP][Kp] in the padded layout
 * (FP8 converted to bf16, BF16 copied), rows nrows..STRIP-1 zero. */
static AMX_TARGET void fill_strip(const plan *P, int64_t o0, int64_t nrows, uint16_t *buf) {
    const dsv3_weight *W = P->W;
    for (int64_t r = 0; r < STRIP; r++) {
        uint16_t *dst = buf + r * P->Kp;
        if (r >= nrows) {
            memset(dst, 0, 2 * P->Kp);
            continue;
        }
        if (P->fp8 && P->seg_k == P->seg_kp) { /* blocks are multiples of 32: padded layout = original + tail */
            fp8_to_bf16(dst, (const uint8_t *)W->data + (o0 + r) * P->K, P->K, P);
            memset(dst + P->K, 0, 2 * (P->Kp - P->K));
            continue;
        }
        for (int64_t s = 0; s < P->nseg; s++) {
            int64_t len = seg_len(P, s), plen = round_up(len, KSTEP), k0 = s * P->seg_k;
            uint16_t *d = dst + s * P->seg_kp;
            if (P->fp8) fp8_to_bf16(d, (const uint8_t *)W->data + (o0 + r) * P->K + k0, len, P);
            else memcpy(d, (const uint8_t *)W->data + 2 * ((o0 + r) * P->K + k0), 2 * len);
            memset(d + len, 0, 2 * (plen - len));
        }
    }
}

/* ---------------------------------------------------------------- compute */

typedef struct {
    float *cbuf;   /* [2 row tiles][ncp panels][256] f32: BF16 results / FP8 accumulators */
    float *tmp;    /* FP8: [4][256] f32 partial sums of one block */
    uint16_t *tail; /* BF16: [STRIP][KSTEP] zero-padded last k step of a direct strip */
    uint16_t *sbuf; /* small-T path: [SMALL_KB steps][STRIP rows][KSTEP] bf16 A sub-block */
} work;

static inline float *ctile(float *cbuf, int64_t ncp, int rt, int64_t pan) { return cbuf + (rt * ncp + pan) * 256; }

/* The C tiles of a strip chunk (wk->cbuf, [row tile][panel], tile = [column][row]
 * of f32 sums) -> out: transposed in place, then out = hi + (mid + lo), 16 rows at a time. */
static AMX_TARGET void combine(const plan *P, work *wk, int mr, int64_t npan, int64_t o0, int64_t nrows, int64_t t0,
                               int64_t tc) {
    const int64_t ncp = 3 * P->tc_max / 16;
    for (int rt = 0; rt < mr; rt++)
        for (int64_t pan = 0; pan < npan; pan++) {
            float *c = ctile(wk->cbuf, ncp, rt, pan);
            __m512i r[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_load_si512(c + 16 * i);
            transpose16(r);
            for (int i = 0; i < 16; i++) _mm512_store_si512(c + 16 * i, r[i]);
        }
    for (int64_t tl = 0; tl < tc; tl++) {
        float *dst = P->out + (t0 + tl) * P->ld + (o0 - P->r0);
        for (int rt = 0; rt < mr; rt++) {
            const float *part[3];
            for (int p = 0; p < 3; p++) {
                int64_t j = 3 * tl + p;
                part[p] = ctile(wk->cbuf, ncp, rt, j >> 4) + 16 * (j & 15);
            }
            __m512 v = _mm512_add_ps(_mm512_load_ps(part[0]), _mm512_add_ps(_mm512_load_ps(part[1]), _mm512_load_ps(part[2])));
            int64_t left = nrows - 16 * rt;
            _mm512_mask_storeu_ps(dst + 16 * rt, left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1), v);
        }
    }
}


/* Rows [o0, o0+nrows) x tokens [t0, t0+tc) of the region. A: `a` with row
 * stride lda bytes (a direct BF16 strip or a filled buffer); `direct`: the
 * last partial k step comes from wk->tail. BF16 loops panel pairs over all of
 * k; FP8 loops scale blocks, then panel pairs (the per-element sequence is the
 * same either way). */
static AMX_TARGET void strip_chunk(const plan *P, work *wk, const uint8_t *a, int64_t lda, int direct, int64_t o0,
                                   int64_t nrows, int64_t t0, int64_t tc) {
    const int mr = nrows > 16 ? 2 : 1;
    const int64_t ncp = 3 * P->tc_max / 16, npan = (3 * tc + 15) / 16, pan0 = 3 * t0 / 16;
    const int64_t full = direct ? P->K / KSTEP : P->Kp / KSTEP;
    /* BF16: k blocks of KBLOCK steps outside the panel pairs so the strip's
     * block of A stays in L1 while the pairs stream their B from L2; C goes
     * through memory between blocks (exact). Then the partial last step. */
    for (int64_t k0 = 0; k0 < full && !P->fp8; k0 += KBLOCK) {
        for (int64_t pp = 0; pp < npan; pp += 2) {
            const int nr = npan - pp >= 2 ? 2 : 1;
            mk_args g;
            for (int rt = 0; rt < 2; rt++)
                for (int pn = 0; pn < 2; pn++) g.c[rt][pn] = ctile(wk->cbuf, ncp, rt < mr ? rt : 0, pp + (pn < nr ? pn : 0));
            g.a0 = a + 64 * k0;
            g.a1 = mr > 1 ? g.a0 + 16 * lda : g.a0;
            g.lda = lda;
            g.b0 = (const uint8_t *)(P->B + (pan0 + pp) * P->panel_words) + 1024 * k0;
            g.b1 = nr > 1 ? g.b0 + 4 * P->panel_words : g.b0;
            g.steps = full - k0 < KBLOCK ? full - k0 : KBLOCK;
            g.load_c = k0 > 0;
            /* prefetch (first panel pair): this strip PF_STEPS steps ahead, then the next strip's
             * rows (prefetches never fault, even past the end of W) */
            g.pf0 = direct && pp == 0 ? g.a0 + 64 * PF_STEPS : NULL;
            g.pfn = full - k0 - PF_STEPS;
            g.pf1 = a + STRIP * lda;
            g.pf2 = PF_L2 ? g.a0 + STRIP * lda : NULL;
            mk_run(mr, nr, &g);
        }
    }
    if (!P->fp8 && direct && full * KSTEP < P->K) /* last partial k step from the zero-padded copy */
        for (int64_t pp = 0; pp < npan; pp += 2) {
            const int nr = npan - pp >= 2 ? 2 : 1;
            mk_args g;
            for (int rt = 0; rt < 2; rt++)
                for (int pn = 0; pn < 2; pn++) g.c[rt][pn] = ctile(wk->cbuf, ncp, rt < mr ? rt : 0, pp + (pn < nr ? pn : 0));
            g.a0 = (const uint8_t *)wk->tail;
            g.a1 = mr > 1 ? g.a0 + 16 * 64 : g.a0;
            g.lda = 64;
            g.b0 = (const uint8_t *)(P->B + (pan0 + pp) * P->panel_words) + 1024 * full;
            g.b1 = nr > 1 ? g.b0 + 4 * P->panel_words : g.b0;
            g.steps = 1;
            g.load_c = full > 0;
            g.pf0 = NULL;
            mk_run(mr, nr, &g);
        }
    if (P->fp8) { /* FP8: per scale block, partial sum from zero, then acc = fma(scale, partial, acc), ascending blocks */
        const dsv3_weight *W = P->W;
        const float *srow[STRIP]; /* scale row of each weight row (one division per row, not per block) */
        for (int64_t r = 0; r < nrows; r++) srow[r] = W->scale + ((o0 + r) / W->block_r) * W->scale_cols;
        for (int rt = 0; rt < mr; rt++) memset(ctile(wk->cbuf, ncp, rt, 0), 0, 1024 * npan);
        for (int64_t s = 0; s < P->nseg; s++) {
            const uint8_t *as = a + 2 * s * P->seg_kp;
            const int64_t las = lda;
            float scl[STRIP];
            for (int64_t r = 0; r < nrows; r++) scl[r] = srow[r][s];
            for (int64_t pp = 0; pp < npan; pp += 2) {
                const int nr = npan - pp >= 2 ? 2 : 1;
                mk_args g;
                for (int rt = 0; rt < 2; rt++)
                    for (int pn = 0; pn < 2; pn++) g.c[rt][pn] = wk->tmp + (rt * 2 + pn) * 256;
                g.a0 = as;
                g.a1 = mr > 1 ? as + 16 * las : as;
                g.lda = las;
                g.b0 = (const uint8_t *)(P->B + (pan0 + pp) * P->panel_words) + 32 * s * P->seg_kp; /* 64 B per k pair */
                g.b1 = nr > 1 ? g.b0 + 4 * P->panel_words : g.b0;
                g.steps = round_up(seg_len(P, s), KSTEP) / KSTEP;
                g.load_c = 0;
                g.pf0 = NULL;
                mk_run(mr, nr, &g);
                for (int64_t r = 0; r < nrows; r++) {
                    const int rt = (int)(r >> 4), rr = (int)(r & 15);
                    const __m512 sc = _mm512_set1_ps(scl[r]);
                    for (int pn = 0; pn < nr; pn++) {
                        float *acc = ctile(wk->cbuf, ncp, rt, pp + pn) + rr * 16;
                        const float *part = wk->tmp + (rt * 2 + pn) * 256 + rr * 16;
                        _mm512_store_ps(acc, _mm512_fmadd_ps(sc, _mm512_load_ps(part), _mm512_load_ps(acc)));
                    }
                }
            }
        }
    }
    combine(P, wk, mr, npan, o0, nrows, t0, tc);
}


/* ---------------------------------------------------------------- small T
 *
 * Few tokens (at most 2 panels: T <= 10, decode) make the kernel a stream over
 * the weights. Tile loads straight from the weight rows are slow there (every
 * one is 16 cache lines at a large, often power-of-two, stride; misses and L1
 * set conflicts stall the tile pipeline), so the strip is converted (FP8) or
 * copied (BF16) with AVX-512 a sub-block of SMALL_KB k steps at a time into a
 * small L1 buffer in tile layout, with software prefetch ahead in each row,
 * and the C tiles stay in registers over all of k. The per-element sequence of
 * tile operations is the same as in strip_chunk (same k steps in the same
 * order, zero padding, FP8 per-block zeroing and scale-add), so results are
 * bitwise those of the other path. */

#define SMALL_KB 4       /* FP8: k steps per sub-block (A buffer: 8 KB) */
#ifndef SMALL_KB_BF16
#define SMALL_KB_BF16 2  /* BF16: k steps per sub-block */
#endif
#define SMALL_PF_BF16 512 /* software prefetch distance ahead in a weight row, bytes */
#define SMALL_PF_FP8 512

/* 64 FP8 codes -> 64 bf16 (two 32-element k steps): byte tables of the magnitude's
 * bf16 low and high bytes (vpermi2b), the sign or-ed into the high byte, bytes interleaved. */
static AMX_TARGET inline void fp8x64_bf16(__m512i x, const __m512i tab[4], const __m512i il[2], __m512i *o0, __m512i *o1) {
    __m512i lo = _mm512_permutex2var_epi8(tab[0], x, tab[1]);
    __m512i hi = _mm512_permutex2var_epi8(tab[2], x, tab[3]);
    hi = _mm512_ternarylogic_epi32(hi, x, _mm512_set1_epi8((char)0x80), 0xf8); /* hi | (x & 0x80) */
    *o0 = _mm512_permutex2var_epi8(lo, il[0], hi);
    *o1 = _mm512_permutex2var_epi8(lo, il[1], hi);
}

static AMX_TARGET void fp8_tables(const plan *P, __m512i tab[4], __m512i il[2]) {
    tab[0] = _mm512_load_si512(P->lut_lo), tab[1] = _mm512_load_si512(P->lut_lo + 64);
    tab[2] = _mm512_load_si512(P->lut_hi), tab[3] = _mm512_load_si512(P->lut_hi + 64);
    uint8_t idx[2][64];
    for (int i = 0; i < 32; i++)
        for (int h = 0; h < 2; h++) idx[h][2 * i] = (uint8_t)(32 * h + i), idx[h][2 * i + 1] = (uint8_t)(64 + 32 * h + i);
    il[0] = _mm512_loadu_si512(idx[0]), il[1] = _mm512_loadu_si512(idx[1]);
}

static inline const char *pf_addr(const uint8_t *row, int64_t off, int64_t rowbytes) {
    /* `off` bytes into this row's stream, continuing into the same row of the next strip */
    return (const char *)(off < rowbytes ? row + off : row + STRIP * rowbytes + (off - rowbytes));
}

/* Fills wk->sbuf with rows [o0, o0+nrows) (rows up to STRIP zero), elements
 * [k, k + n) of each weight row, as `steps` k steps (zero past n). */
static AMX_TARGET void small_fill(const plan *P, work *wk, const __m512i tab[4], const __m512i il[2], int64_t o0,
                                  int64_t nrows, int64_t k, int64_t n, int64_t steps) {
    const dsv3_weight *W = P->W;
    uint16_t *buf = wk->sbuf;
    /* steps outer, rows inner: the stores go in order through buf (rows inner, loads at
     * the weight row stride, are much faster than the other way round) */
    if (P->fp8) {
        const int64_t rowbytes = P->K;
        const uint8_t *base = (const uint8_t *)W->data + o0 * rowbytes;
        for (int64_t r = 0; r < nrows; r++)
            for (int64_t l = 0; l < n; l += 64)
                _mm_prefetch(pf_addr(base + r * rowbytes, k + l + SMALL_PF_FP8, rowbytes), _MM_HINT_T0);
        for (int64_t j = 0; j < steps; j += 2) {
            const int64_t rem = n - 32 * j;
            const __mmask64 m = rem >= 64 ? ~(__mmask64)0 : rem <= 0 ? 0 : (((__mmask64)1 << rem) - 1);
            const uint8_t *src = base + k + 32 * j;
            uint16_t *d0 = buf + j * STRIP * KSTEP, *d1 = d0 + STRIP * KSTEP;
            for (int64_t r = 0; r < nrows; r++) {
                __m512i o0v, o1v;
                fp8x64_bf16(_mm512_maskz_loadu_epi8(m, src + r * rowbytes), tab, il, &o0v, &o1v);
                _mm512_store_si512(d0 + r * KSTEP, o0v);
                if (j + 1 < steps) _mm512_store_si512(d1 + r * KSTEP, o1v);
            }
        }
    } else {
        const int64_t rowbytes = 2 * P->K;
        const uint8_t *base = (const uint8_t *)W->data + o0 * rowbytes;
        for (int64_t r = 0; r < nrows; r++)
            for (int64_t l = 0; l < 2 * n; l += 64)
                _mm_prefetch(pf_addr(base + r * rowbytes, 2 * k + l + SMALL_PF_BF16, rowbytes), _MM_HINT_T0);
        for (int64_t j = 0; j < steps; j++) {
            const int64_t rem = n - 32 * j;
            const __mmask32 m = rem >= 32 ? ~(__mmask32)0 : rem <= 0 ? 0 : (((__mmask32)1 << rem) - 1);
            const uint8_t *src = base + 2 * k + 64 * j;
            uint16_t *d = buf + j * STRIP * KSTEP;
            for (int64_t r = 0; r < nrows; r++) _mm512_store_si512(d + r * KSTEP, _mm512_maskz_loadu_epi16(m, src + r * rowbytes));
        }
    }
    for (int64_t r = nrows; r < STRIP; r++)
        for (int64_t j = 0; j < steps; j++) _mm512_store_si512(buf + j * STRIP * KSTEP + r * KSTEP, _mm512_setzero_si512());
    __asm__ volatile("" ::: "memory"); /* the tile loads below read buf */
}

/* Tile steps over the filled sub-block: C tiles tmm0..3 ([row tile][panel]),
 * B from panels pan0 (and pan0 + 1) at k step ks. */
static AMX_TARGET inline void small_tiles(const plan *P, const uint16_t *buf, int mr, int nr, int64_t pan0, int64_t ks,
                                          int64_t steps) {
    const uint8_t *b0 = (const uint8_t *)(P->B + pan0 * P->panel_words) + 1024 * ks;
    const uint8_t *b1 = b0 + 4 * P->panel_words;
    for (int64_t j = 0; j < steps; j++) {
        const uint16_t *a = buf + j * STRIP * KSTEP;
        _tile_loadd(6, b0 + 1024 * j, 64);
        _tile_loadd(4, a, 64);
        if (nr > 1) _tile_loadd(7, b1 + 1024 * j, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (nr > 1) _tile_dpbf16ps(1, 4, 7);
        if (mr > 1) {
            _tile_loadd(5, a + 16 * KSTEP, 64);
            _tile_dpbf16ps(2, 5, 6);
            if (nr > 1) _tile_dpbf16ps(3, 5, 7);
        }
    }
    __asm__ volatile("" ::: "memory"); /* buf may be refilled after this */
}

static AMX_TARGET inline void small_zero(int mr, int nr) {
    _tile_zero(0);
    if (nr > 1) _tile_zero(1);
    if (mr > 1) _tile_zero(2);
    if (mr > 1 && nr > 1) _tile_zero(3);
}

static AMX_TARGET inline void small_store(int mr, int nr, float *c00, float *c01, float *c10, float *c11) {
    _tile_stored(0, c00, 64);
    if (nr > 1) _tile_stored(1, c01, 64);
    if (mr > 1) _tile_stored(2, c10, 64);
    if (mr > 1 && nr > 1) _tile_stored(3, c11, 64);
    __asm__ volatile("" ::: "memory");
}

/* strip_chunk for tc <= 10 tokens (1-2 panels), A from the weights via wk->sbuf. */
static AMX_TARGET void strip_small(const plan *P, work *wk, int64_t o0, int64_t nrows, int64_t t0, int64_t tc) {
    const int mr = nrows > 16 ? 2 : 1;
    const int64_t ncp = 3 * P->tc_max / 16, npan = (3 * tc + 15) / 16, pan0 = 3 * t0 / 16;
    const int nr = npan > 1 ? 2 : 1;
    __m512i tab[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()},
            il[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    if (P->fp8) fp8_tables(P, tab, il);
    float *c[2][2];
    for (int rt = 0; rt < 2; rt++)
        for (int pn = 0; pn < 2; pn++) c[rt][pn] = ctile(wk->cbuf, ncp, rt < mr ? rt : 0, pn < nr ? pn : 0);
    if (!P->fp8) { /* one pass over k, C in the tiles throughout */
        const int64_t steps_all = P->Kp / KSTEP;
        small_zero(mr, nr);
        for (int64_t ks = 0; ks < steps_all; ks += SMALL_KB_BF16) {
            const int64_t st = steps_all - ks < SMALL_KB_BF16 ? steps_all - ks : SMALL_KB_BF16;
            const int64_t n = P->K - KSTEP * ks < KSTEP * st ? P->K - KSTEP * ks : KSTEP * st;
            small_fill(P, wk, tab, il, o0, nrows, KSTEP * ks, n, st);
            small_tiles(P, wk->sbuf, mr, nr, pan0, ks, st);
        }
        small_store(mr, nr, c[0][0], c[0][1], c[1][0], c[1][1]);
    } else { /* per scale block: partial sums from zero, then acc = fma(scale, partial, acc) */
        const dsv3_weight *W = P->W;
        const float *srow[STRIP];
        for (int64_t r = 0; r < nrows; r++) srow[r] = W->scale + ((o0 + r) / W->block_r) * W->scale_cols;
        for (int rt = 0; rt < mr; rt++) memset(ctile(wk->cbuf, ncp, rt, 0), 0, 1024 * npan);
        for (int64_t sg = 0; sg < P->nseg; sg++) {
            const int64_t len = seg_len(P, sg), steps_seg = round_up(len, KSTEP) / KSTEP;
            small_zero(mr, nr);
            for (int64_t j0 = 0; j0 < steps_seg; j0 += SMALL_KB) {
                const int64_t st = steps_seg - j0 < SMALL_KB ? steps_seg - j0 : SMALL_KB;
                const int64_t n = len - KSTEP * j0 < KSTEP * st ? len - KSTEP * j0 : KSTEP * st;
                small_fill(P, wk, tab, il, o0, nrows, sg * P->seg_k + KSTEP * j0, n, st);
                small_tiles(P, wk->sbuf, mr, nr, pan0, (sg * P->seg_kp) / KSTEP + j0, st);
            }
            float *tmp = wk->tmp;
            small_store(mr, nr, tmp, tmp + 256, tmp + 512, tmp + 768);
            for (int64_t r = 0; r < nrows; r++) {
                const int rt = (int)(r >> 4), rr = (int)(r & 15);
                const __m512 sc = _mm512_set1_ps(srow[r][sg]);
                for (int pn = 0; pn < nr; pn++) {
                    float *acc = ctile(wk->cbuf, ncp, rt, pn) + rr * 16;
                    const float *part = tmp + (rt * 2 + pn) * 256 + rr * 16;
                    _mm512_store_ps(acc, _mm512_fmadd_ps(sc, _mm512_load_ps(part), _mm512_load_ps(acc)));
                }
            }
        }
    }
    combine(P, wk, mr, npan, o0, nrows, t0, tc);
}

static void *alloc64(size_t n) { return aligned_alloc(64, (n + 63) / 64 * 64); }

/* One parallel region over tokens [0, P->T) of P->x: pack the activations,
 * then every thread computes its strips. Few tokens (at most 2 panels): every
 * thread packs them itself into its scratch (no barrier) and runs
 * strip_small. Returns 0 or -1 (allocation failure). */
static AMX_TARGET int run_region(plan *P) {
    const int64_t rows = P->r1 - P->r0, nstrips = (rows + STRIP - 1) / STRIP;
    const int64_t work_ma = rows * P->K * P->T;
    const int small = 3 * P->T <= 32;
    int fail = 0;
#pragma omp parallel if (work_ma > AMX_OMP_MIN_WORK && nstrips > 1)
    {
        const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
        const int64_t s_begin = nstrips * tid / nth, s_end = nstrips * (tid + 1) / nth;
        const int64_t ncp = 3 * P->tc_max / 16;
        float *xs = dsv3_cpu_scratch(DSV3_SC_XS, sizeof(float) * P->Kp);
        uint16_t *S = dsv3_cpu_scratch(DSV3_SC_S, 2 * 48 * P->Kp);
        work wk = {dsv3_cpu_scratch(DSV3_SC_CBUF, sizeof(float) * 2 * ncp * 256), dsv3_cpu_scratch(DSV3_SC_TMP, sizeof(float) * 4 * 256),
                   dsv3_cpu_scratch(DSV3_SC_TAIL, 2 * STRIP * KSTEP), dsv3_cpu_scratch(DSV3_SC_SBUF, 2 * SMALL_KB * STRIP * KSTEP)};
        int ok = xs && S && wk.cbuf && wk.tmp && wk.tail && wk.sbuf;
        if (small) {
            plan Pl = *P; /* private copy: B in this thread's scratch */
            Pl.B = ok && s_end > s_begin ? dsv3_cpu_scratch(DSV3_SC_B, (size_t)((3 * P->T + 15) / 16) * P->panel_words * 4) : NULL;
            if (ok && s_end > s_begin && !Pl.B) ok = 0;
            if (ok && s_end > s_begin) {
                pack_block(&Pl, 0, xs, S);
                tiles_begin();
                for (int64_t s = s_begin; s < s_end; s++) {
                    const int64_t o0 = P->r0 + s * STRIP, nr = P->r1 - o0 < STRIP ? P->r1 - o0 : STRIP;
                    strip_small(&Pl, &wk, o0, nr, 0, P->T);
                }
                tiles_end();
            }
        } else {
            if (!ok) {
#pragma omp atomic write
                fail = 1;
            }
#pragma omp for schedule(static)
            for (int64_t tb = 0; tb < (P->T + 15) / 16; tb++)
                if (ok) pack_block(P, tb, xs, S);
            /* implicit barrier: B is complete */
            /* strips per group: FP8 converts a group once and reuses it for every token chunk */
            int64_t group = P->fp8 ? A_GROUP_BYTES / (STRIP * 2 * P->Kp) : 8;
            if (group < 1) group = 1;
            if (group > 8) group = 8;
            if (P->T <= P->tc_max) group = 1; /* one token chunk: no reuse, convert a strip and use it while in cache */
            uint16_t *abuf = ok && s_end > s_begin ? dsv3_cpu_scratch(DSV3_SC_ABUF, 2 * STRIP * P->Kp * (P->fp8 ? group : 1)) : NULL;
            if (ok && s_end > s_begin && !abuf) ok = 0;
            if (ok && s_end > s_begin) {
                tiles_begin();
                for (int64_t g0 = s_begin; g0 < s_end; g0 += group) {
                    const int64_t g1 = g0 + group < s_end ? g0 + group : s_end;
                    if (P->fp8)
                        for (int64_t s = g0; s < g1; s++) {
                            int64_t o0 = P->r0 + s * STRIP, nr = P->r1 - o0 < STRIP ? P->r1 - o0 : STRIP;
                            fill_strip(P, o0, nr, abuf + (s - g0) * STRIP * P->Kp);
                        }
                    for (int64_t t0 = 0; t0 < P->T; t0 += P->tc_max) {
                        const int64_t tc = P->T - t0 < P->tc_max ? P->T - t0 : P->tc_max;
                        for (int64_t s = g0; s < g1; s++) {
                            const int64_t o0 = P->r0 + s * STRIP, nr = P->r1 - o0 < STRIP ? P->r1 - o0 : STRIP;
                            if (P->fp8) {
                                strip_chunk(P, &wk, (const uint8_t *)(abuf + (s - g0) * STRIP * P->Kp),
                                            2 * P->Kp, 0, o0, nr, t0, tc);
                            } else if (nr < STRIP) { /* short strip: zero-padded copy (no reads past W) */
                                fill_strip(P, o0, nr, abuf);
                                strip_chunk(P, &wk, (const uint8_t *)abuf, 2 * P->Kp, 0, o0, nr, t0, tc);
                            } else {                 /* full BF16 strip: tiles straight from the checkpoint */
                                const int64_t kf = P->K / KSTEP * KSTEP;
                                if (kf < P->K)
                                    for (int64_t r = 0; r < STRIP; r++) {
                                        memcpy(wk.tail + r * KSTEP, (const uint8_t *)P->W->data + 2 * ((o0 + r) * P->K + kf),
                                               2 * (P->K - kf));
                                        memset(wk.tail + r * KSTEP + (P->K - kf), 0, 2 * (KSTEP - (P->K - kf)));
                                    }
                                strip_chunk(P, &wk, (const uint8_t *)P->W->data + 2 * o0 * P->K, 2 * P->K, 1, o0, nr, t0,
                                            tc);
                            }
                        }
                    }
                }
                tiles_end();
            }
        }
        if (!ok) {
#pragma omp atomic write
            fail = 1;
        }
    }
    return fail ? -1 : 0;
}

int dsv3_matmul_rows_amx_try(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t r0,
                             int64_t r1) {
    if (!dsv3_amx_available() || !dsv3_amx_supports(W) || r0 < 0 || r1 > W->rows) return -1;
    if (T <= 0 || r1 <= r0) return 0;
    const int64_t K = W->cols;
    if (K == 0) {
        for (int64_t t = 0; t < T; t++) memset(out + t * ld, 0, sizeof(float) * (r1 - r0));
        return 0;
    }
    plan Pst __attribute__((aligned(64))), *P = &Pst;
    memset(P, 0, sizeof *P);
    P->W = W;
    P->fp8 = W->dtype != DSV3_BF16;
    P->K = K;
    if (P->fp8) {
        P->seg_k = W->block_c < K ? W->block_c : K;
        P->seg_kp = round_up(P->seg_k, KSTEP);
        P->nseg = (K + P->seg_k - 1) / P->seg_k;
        P->Kp = (P->nseg - 1) * P->seg_kp + round_up(K - (P->nseg - 1) * P->seg_k, KSTEP);
        const float *tab = W->dtype == DSV3_F8_E4M3 ? dsv3_fp8_e4m3_table : dsv3_fp8_e5m2_table;
        for (int i = 0; i < 128; i++) {
            P->lut[i] = dsv3_f32_to_bf16(tab[i]); /* exact */
            P->lut_lo[i] = (uint8_t)(P->lut[i] & 0xff);
            P->lut_hi[i] = (uint8_t)(P->lut[i] >> 8);
        }
    } else {
        P->seg_k = K;
        P->Kp = P->seg_kp = round_up(K, KSTEP);
        P->nseg = 1;
    }
    P->panel_words = P->Kp / 2 * 16;
    /* tokens per chunk: packed chunk within B_CHUNK_BYTES, a multiple of 16 tokens (= 3 whole panels) */
    int64_t tc = B_CHUNK_BYTES / (3 * 2 * P->Kp) / 16 * 16;
    P->tc_max = tc < 16 ? 16 : tc > 256 ? 256 : tc;
    /* tokens per region: packed activations within B_CALL_BYTES, a multiple of the chunk */
    int64_t tr = B_CALL_BYTES / (3 * 2 * P->Kp) / P->tc_max * P->tc_max;
    if (tr < P->tc_max) tr = P->tc_max;
    P->r0 = r0;
    P->r1 = r1;
    P->ld = ld;
    int rc = 0;
    if (3 * T > 32) { /* shared packed activations (few tokens: per thread, run_region) */
        size_t bbytes = (size_t)((3 * (T < tr ? T : tr) + 15) / 16) * P->panel_words * 4;
        P->B = alloc64(bbytes);
        if (!P->B) rc = -1;
    }
    for (int64_t t0 = 0; t0 < T && rc == 0; t0 += tr) {
        P->T = T - t0 < tr ? T - t0 : tr;
        P->x = x + t0 * K;
        P->out = out + t0 * ld;
        rc = run_region(P);
    }
    free(P->B);
    return rc;
}

void dsv3_matmul_rows_amx(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t r0,
                          int64_t r1) {
    if (dsv3_matmul_rows_amx_try(out, ld, x, T, W, r0, r1) == 0) return;
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = r0; o < r1; o++) out[t * ld + (o - r0)] = NAN;
}
