/* Elementwise activations over whole rows. Compiled with -fno-trapping-math (Makefile): it lets gcc
 * if-convert dsv3_exp_fixed's clamps and vectorise the loop; it changes no value (every lane does the
 * scalar code's IEEE operations: fmaf, floorf, the division), only which floating-point exception flags
 * may be raised, and nothing here reads them. tests/ops/test_kernels.c compares with a scalar loop. */
#include "dsv3/ops.h"

void dsv3_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = dsv3_silu(gate[i]) * up[i];
}
