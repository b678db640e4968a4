/* Fast FP8 E4M3FN encoding (bit manipulation instead of the table search of
 * dsv3_f32_to_fp8_e4m3 in dtype.h; results are identical for every input). */
#ifndef DSV3_FP8_H
#define DSV3_FP8_H

#include <stddef.h>
#include <stdint.h>

/* Round-to-nearest-even to E4M3FN, saturating to +-448 (so +-Inf -> +-448);
 * NaN -> 0x7F; -0.0 -> 0x80. Equals dsv3_f32_to_fp8_e4m3(f) bit for bit. */
uint8_t dsv3_fp8_e4m3_encode(float f);

/* Block quantisation helper: dst[i] = dsv3_fp8_e4m3_encode(src[i] / scale) for i < n. */
void dsv3_fp8_e4m3_encode_n(const float *src, float scale, uint8_t *dst, size_t n);

/* Block quantisation of one block-row of a row-major matrix (spec §2.4): src holds
 * nr rows of cols floats (nr <= the block height, e.g. 128); for each block of
 * block_c columns cb, scales[cb] = max(amax, 1e-12) / 448 (amax = max |x| over
 * the nr x block_c block, the last block may be narrower) and
 * dst[r * cols + j] = dsv3_fp8_e4m3_encode(src[r * cols + j] / scales[cb]).
 * With pow2_scales, scales[cb] is that value rounded up to a power of two
 * (DeepSeek-V3.1's "scale_fmt": "ue8m0": the block's largest value then codes
 * as 224..448 instead of 448). scales gets ceil(cols / block_c) entries. Used
 * by init-model and quantize. */
/* 1 when s is a positive, finite power of two: what a "ue8m0" block scale is. */
int dsv3_fp8_scale_is_pow2(float s);

void dsv3_fp8_e4m3_quantize_rows(const float *src, int64_t nr, int64_t cols, int64_t block_c, uint8_t *dst,
                                 float *scales, int pow2_scales);

#endif
