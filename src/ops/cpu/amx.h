/* AMX BF16 matmul kernel (internal to the CPU backend).
 *
 * Computes the same contract as dsv3_backend.matmul_rows (include/dsv3/ops.h)
 * on Intel AMX tiles, f32-accurate and batch invariant:
 *
 *  - Activations are split exactly into three bf16 parts, x = hi + mid + lo
 *    (hi = bf16(x), mid = bf16(x - hi), lo = bf16(x - hi - mid); exact for
 *    normal x), and W.x = W.hi + W.mid + W.lo with f32 accumulation in the
 *    tiles (bf16 x bf16 products are exact in f32). BF16 and FP8 weights are
 *    exact in bf16, so the only roundings are the f32 accumulations: the
 *    result is as accurate as an f32 dot product (~1e-7 relative to
 *    sum |w_i x_i|).
 *  - Every output element is computed by the same sequence of tile operations
 *    over k whatever T, the row range or the thread count is (AMX computes each
 *    element of a tile independently), so a token's outputs are bitwise
 *    identical in decode (T=1) and in any prefill/batch.
 *
 * The results are NOT bitwise equal to the generic CPU kernel's (different
 * summation order); a backend must use one kernel for a given weight always.
 *
 * Numerical edge cases: |x| < ~2^-110 loses its lo/mid parts (bf16 denormals
 * are treated as zero by AMX), |x| > bf16 max (~3.39e38) or Inf/NaN in x give
 * Inf/NaN. */
#ifndef DSV3_OPS_CPU_AMX_H
#define DSV3_OPS_CPU_AMX_H

#include <stdint.h>

#include "dsv3/ops.h"

/* 1 when the CPU has AMX-BF16 (+ AVX-512F/BW/BF16) and the OS granted this
 * process the AMX tile state (requested once, thread-safe). Returns 0 when the
 * environment variable DSV3_NO_AMX is set (non-empty, not "0"). */
int dsv3_amx_available(void);

/* 1 when dsv3_matmul_rows_amx handles W's dtype: BF16, FP8 E4M3 or E5M2 (with
 * block scales). F32/F16 weights are not exact in bf16 and are not supported. */
int dsv3_amx_supports(const dsv3_weight *W);

/* Same contract as dsv3_backend.matmul_rows: out[t*ld + (o-r0)] = sum_i W[o][i]*x[t][i]
 * for o in [r0, r1), t < T; x is f32 [T][W->cols]. Requires dsv3_amx_available()
 * and dsv3_amx_supports(W). Threads with OpenMP over output rows (called inside
 * a parallel region it runs on the calling thread). Scratch is per thread and
 * kept between calls (freed at thread exit); only the shared packed activations
 * of calls with T > 10 are allocated per call. The CPU backend's amx level
 * (dispatch.c) does not fall back when this fails (another kernel would change
 * a token's bits depending on memory luck): it writes NaN and flags the failure,
 * which dsv3_forward returns as an error.
 * Returns 0, or -1 (out unspecified) when unsupported or out of memory. */
int dsv3_matmul_rows_amx_try(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t r0,
                             int64_t r1);

/* Same, with dsv3_backend.matmul_rows's signature; on failure (see _try) the
 * outputs are set to NaN rather than left unwritten. */
void dsv3_matmul_rows_amx(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t r0,
                          int64_t r1);

#endif
