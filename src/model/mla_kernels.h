/* SIMD kernels of the absorbed MLA (mla.c) for ISAs without their own code there. Each computes exactly
 * what the portable mla.c kernel of the same name computes, bit for bit (see the comments there). */
#ifndef DSV3_MODEL_MLA_KERNELS_H
#define DSV3_MODEL_MLA_KERNELS_H

#include <stdint.h>

#include "dsv3/ops.h"

/* e^x of the attention softmax: dsv3_exp_fixed (dsv3/ops.h) on x <= 0; its SIMD copies use the
 * DSV3_EXP_* constants defined there. */

/* The portable chunk softmax of one head's scores p[0..ns) in place (mla.c; the reference of the SIMD ones). */
void dsv3_mla_softmax_chunk(float *p, int64_t ns, float *m_out, float *l_out);

/* AVX2+FMA (mla_avx2.c); callers check dsv3_cpu_isa_get() == DSV3_CPU_ISA_AVX2 */
/* scores_tile_8 / scores_tile_16 (HL = 8 / 16 heads as lanes); softmax_chunk for every head of sc [ns][HL] */
void dsv3_mla_scores_tile_avx2(int64_t HL, const float *qT, const float *rows, int64_t ld, int64_t nrows,
                               int64_t len, float scale, float *out);
/* the same as HL = 8 for groups of at most 4 heads (qT lanes 4..7 zero; out lanes 4..7 = 0), two rows per vector */
void dsv3_mla_scores_tile4_avx2(const float *qT, const float *rows, int64_t ld, int64_t nrows, int64_t len, float scale,
                                float *out);
void dsv3_mla_softmax_rows_avx2(int64_t HL, float *sc, int64_t ns, float *m, float *l);
/* accumulate_rows4; from_zero: the sums start at 0 (lat's contents not read: no memset needed) */
void dsv3_mla_accumulate_rows4_avx2(float *lat, int64_t lst, const float *p, int64_t pst, int64_t pss,
                                    const float *rows, int64_t ld, int64_t ns, int64_t len, int from_zero);
void dsv3_mla_absorb4_f32_avx2(float *qt, int64_t lq, const float *qc, int64_t lqc, const float *wuk, int64_t nope,
                               int64_t kvl);
void dsv3_mla_absorb4_bf16_avx2(float *qt, int64_t lq, const float *qc, int64_t lqc, const uint16_t *wuk,
                                int64_t nope, int64_t kvl);
void dsv3_mla_absorb1_f32_avx2(float *qt, const float *qc, const float *wuk, int64_t nope, int64_t kvl);
void dsv3_mla_absorb1_bf16_avx2(float *qt, const float *qc, const uint16_t *wuk, int64_t nope, int64_t kvl);
void dsv3_mla_output1_f32_avx2(float *out, const float *lat, const float *wuv, int64_t kvl, int64_t vd);
void dsv3_mla_output1_bf16_avx2(float *out, const float *lat, const uint16_t *wuv, int64_t kvl, int64_t vd);
/* FP8 kv_b_proj read as stored (decode, one token): ok when W is E4M3 without NaN codes, with rare
 * subnormal codes, scales that fold 2^120 and 64-aligned column blocks (and kvl % 64 == 0); absorb_1 of
 * rows [r0, r0 + nope), output_1 of rows [r0, r0 + vd). */
int dsv3_mla_fp8_kvb_avx2_ok(const dsv3_weight *W, int64_t kvl);
void dsv3_mla_absorb1_fp8_avx2(float *qt, const float *qc, const dsv3_weight *W, int64_t r0, int64_t nope, int64_t kvl);
void dsv3_mla_output1_fp8_avx2(float *out, const float *lat, const dsv3_weight *W, int64_t r0, int64_t kvl, int64_t vd);
void dsv3_mla_output4_f32_avx2(float *out, int64_t lo, const float *lat, int64_t ll, const float *wuv, int64_t kvl,
                               int64_t vd);
void dsv3_mla_output4_bf16_avx2(float *out, int64_t lo, const float *lat, int64_t ll, const uint16_t *wuv,
                                int64_t kvl, int64_t vd);

#endif
