/* The SIMD MLA kernels of mla_kernels.h against the portable ones, on inputs the model tests rarely
 * produce: scores far apart (e^x below the -87 cut), -inf, NaN, equal maxima, +-0, short chunks. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../test.h"
#include "dsv3/ops.h"
#include "model/mla_kernels.h"

/* bitwise equal, except that any two NaNs match: C leaves the operand order of a + b free, and x86
 * returns the first NaN operand, so a NaN's sign differs between -O1 and -O3 builds of the same source */
static int same(float a, float b) { return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a); }

static uint64_t lcg(uint64_t *s) { return *s = *s * 6364136223846793005ULL + 1442695040888963407ULL; }

static float score_at(uint64_t *s) {
    const uint64_t r = lcg(s) >> 33;
    switch (r % 16) {
    case 0: return -INFINITY;
    case 1: return NAN;
    case 2: return -200.0f;
    case 3: return 0.0f;
    case 4: return -0.0f;
    case 5: return 3.0f; /* repeated maxima */
    default: return ((float)(r % 20001) - 10000.0f) * 0.01f; /* -100 .. 100 */
    }
}

TEST(mla_softmax_rows_avx2_matches_portable) {
    if (!dsv3_cpu_isa_supported(DSV3_CPU_ISA_AVX2)) { test_skip("no AVX2"); return; }
    uint64_t seed = 7;
    for (int HL = 8; HL <= 16 && !test_failed_now(); HL += 8)
        for (int64_t ns = 1; ns <= 64 && !test_failed_now(); ns += ns < 20 ? 1 : 11)
            for (int rep = 0; rep < 4 && !test_failed_now(); rep++) {
                float sc[64 * 16], col[64], m[16], l[16];
                const int special = rep < 2; /* reps 0-1: with -inf / NaN / +-0 / -200; 2-3: finite spread only */
                for (int64_t i = 0; i < ns * HL; i++) {
                    float v = score_at(&seed);
                    if (!special && (isnan(v) || isinf(v))) v = (float)(i % 7) - 3.0f;
                    sc[i] = v;
                }
                float ref[64 * 16];
                memcpy(ref, sc, sizeof(float) * (size_t)(ns * HL));
                dsv3_mla_softmax_rows_avx2(HL, sc, ns, m, l);
                for (int h = 0; h < HL && !test_failed_now(); h++) {
                    float rm, rl;
                    for (int64_t s = 0; s < ns; s++) col[s] = ref[s * HL + h];
                    dsv3_mla_softmax_chunk(col, ns, &rm, &rl);
                    CHECK_MSG(same(rm, m[h]) && same(rl, l[h]),
                              "HL %d ns %lld head %d: m %g l %g, portable m %g l %g", HL, (long long)ns, h, (double)m[h],
                              (double)l[h], (double)rm, (double)rl);
                    for (int64_t s = 0; s < ns && !test_failed_now(); s++)
                        CHECK_MSG(same(col[s], sc[s * HL + h]), "HL %d ns %lld head %d key %lld: %g vs portable %g",
                                  HL, (long long)ns, h, (long long)s, (double)sc[s * HL + h], (double)col[s]);
                }
            }
}
