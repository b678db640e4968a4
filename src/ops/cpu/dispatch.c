/* CPU backend: runtime ISA dispatch (scalar / AVX2 / AVX-512 / AMX) and the
 * multi-threaded matmul driver.
 *
 * The ISA is chosen once: the automatic choice (ISA_AUTO_ORDER below), or the
 * one named by the environment variable DSV3_CPU_ISA=scalar|avx2|avx512|amx|auto;
 * an invalid or unsupported name is reported on stderr and the automatic choice
 * is used. dsv3_cpu_isa_set() changes it at run time (tests). scalar, avx2 and
 * avx512 give bitwise identical results (cpu_kernels.h).
 *
 * amx: every BF16 or FP8 weight goes through the AMX kernel (amx.h) for every
 * T, decode included, so a weight always uses one kernel and a token's result
 * does not depend on the batch; all other work (F32/F16 weights, dot products,
 * row decode) runs on the avx512 kernels. The AMX kernel's results are not
 * bitwise equal to the other paths', so switching to or from amx changes
 * output bits (within f32 rounding). The kernel cannot silently fall back (any
 * other kernel would give different bits for the same token): if it fails (out
 * of memory for its scratch) the outputs become NaN and a failure flag is set,
 * which dsv3_forward reports as an error (dsv3_backend_take_failure). */
#include <cpuid.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "cpu_kernels.h"

/* amx: the avx512 kernels for everything the AMX kernel does not take */
static const dsv3_cpu_kernels *const g_kernels[DSV3_CPU_ISA_COUNT] = {
    &dsv3_cpu_kernels_scalar, &dsv3_cpu_kernels_avx2, &dsv3_cpu_kernels_avx512, &dsv3_cpu_kernels_avx512};
static const char *const g_names[DSV3_CPU_ISA_COUNT] = {"scalar", "avx2", "avx512", "amx"};

/* AUTO: the first supported path of this list. */
static const dsv3_cpu_isa ISA_AUTO_ORDER[] = {DSV3_CPU_ISA_AVX512, DSV3_CPU_ISA_AVX2, DSV3_CPU_ISA_SCALAR};

static int g_supported[DSV3_CPU_ISA_COUNT];
static int g_best;
static int g_isa; /* accessed atomically */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_failed; /* a matmul could not run (accessed atomically) */

int dsv3_backend_take_failure(void) { return __atomic_exchange_n(&g_failed, 0, __ATOMIC_ACQ_REL); }

static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static void isa_init(void) {
    __builtin_cpu_init();
    g_supported[DSV3_CPU_ISA_SCALAR] = 1;
    /* __builtin_cpu_supports also checks that the OS saves the ymm/zmm state */
    g_supported[DSV3_CPU_ISA_AVX2] = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    g_supported[DSV3_CPU_ISA_AVX512] = g_supported[DSV3_CPU_ISA_AVX2] && __builtin_cpu_supports("avx512f") &&
                                       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    g_supported[DSV3_CPU_ISA_AMX] = g_supported[DSV3_CPU_ISA_AVX512] && dsv3_amx_available();
    g_best = DSV3_CPU_ISA_SCALAR;
    for (size_t i = sizeof ISA_AUTO_ORDER / sizeof *ISA_AUTO_ORDER; i-- > 0;)
        if (g_supported[ISA_AUTO_ORDER[i]]) g_best = ISA_AUTO_ORDER[i];
    int isa = g_best;
    const char *env = getenv("DSV3_CPU_ISA");
    if (env && *env) {
        dsv3_cpu_isa want;
        if (dsv3_cpu_isa_parse(env, &want) != 0)
            fprintf(stderr, "dsv3: DSV3_CPU_ISA=%s is not one of scalar, avx2, avx512, amx, auto; using %s\n", env,
                    g_names[g_best]);
        else if (want != DSV3_CPU_ISA_AUTO && !g_supported[want])
            fprintf(stderr, "dsv3: DSV3_CPU_ISA=%s is not supported by this CPU; using %s\n", env, g_names[g_best]);
        else if (want != DSV3_CPU_ISA_AUTO)
            isa = want;
    }
    __atomic_store_n(&g_isa, isa, __ATOMIC_RELEASE);
}

static inline int active_isa(void) {
    pthread_once(&g_once, isa_init);
    return __atomic_load_n(&g_isa, __ATOMIC_ACQUIRE);
}

static inline const dsv3_cpu_kernels *active(void) { return g_kernels[active_isa()]; }

int dsv3_cpu_isa_parse(const char *name, dsv3_cpu_isa *out) {
    if (!name) return -1;
    if (!strcmp(name, "auto")) { *out = DSV3_CPU_ISA_AUTO; return 0; }
    for (int i = 0; i < DSV3_CPU_ISA_COUNT; i++)
        if (!strcmp(name, g_names[i])) { *out = (dsv3_cpu_isa)i; return 0; }
    return -1;
}

const char *dsv3_cpu_isa_name(dsv3_cpu_isa isa) {
    if (isa == DSV3_CPU_ISA_AUTO) return "auto";
    return isa >= 0 && isa < DSV3_CPU_ISA_COUNT ? g_names[isa] : "unknown";
}

int dsv3_cpu_isa_supported(dsv3_cpu_isa isa) {
    pthread_once(&g_once, isa_init);
    if (isa == DSV3_CPU_ISA_AUTO) return 1;
    return isa >= 0 && isa < DSV3_CPU_ISA_COUNT && g_supported[isa];
}

int dsv3_cpu_isa_set(dsv3_cpu_isa isa) {
    if (!dsv3_cpu_isa_supported(isa)) return -1;
    __atomic_store_n(&g_isa, isa == DSV3_CPU_ISA_AUTO ? g_best : (int)isa, __ATOMIC_RELEASE);
    return 0;
}

dsv3_cpu_isa dsv3_cpu_isa_best(void) {
    pthread_once(&g_once, isa_init);
    return (dsv3_cpu_isa)g_best;
}

dsv3_cpu_isa dsv3_cpu_isa_get(void) {
    pthread_once(&g_once, isa_init);
    return (dsv3_cpu_isa)__atomic_load_n(&g_isa, __ATOMIC_ACQUIRE);
}

float dsv3_dot_f32(const float *a, const float *b, int64_t n) { return active()->dot_f32(a, b, n); }

void dsv3_weight_row_f32(const dsv3_weight *W, int64_t r, float *dst) { active()->decode_row(W, r, dst); }

static void run_block(const dsv3_cpu_kernels *k, float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W,
                      int64_t obase, int64_t o0, int64_t o1) {
    /* out of memory for a decode buffer: the scalar kernel needs none (same bits) */
    if (k->matmul_block(out, ld, x, T, W, obase, o0, o1) != 0)
        dsv3_cpu_kernels_scalar.matmul_block(out, ld, x, T, W, obase, o0, o1);
}

#define ROW_UNIT 16 /* rows are split across threads in multiples of this */

static void cpu_matmul_rows(float *out, int64_t ld, const float *x, int64_t T, const dsv3_weight *W, int64_t r0,
                            int64_t r1) {
    const int isa = active_isa();
    const int64_t n = r1 - r0;
    if (n <= 0 || T <= 0) return;
    if (isa == DSV3_CPU_ISA_AMX && dsv3_amx_supports(W)) { /* threads on its own (one level, never nested in ours) */
        if (dsv3_matmul_rows_amx_try(out, ld, x, T, W, r0, r1) != 0) {
            for (int64_t t = 0; t < T; t++)
                for (int64_t o = 0; o < n; o++) out[t * ld + o] = NAN;
            __atomic_store_n(&g_failed, 1, __ATOMIC_RELEASE);
        }
        return;
    }
    const dsv3_cpu_kernels *k = g_kernels[isa];
    /* the kernels' FP8 decode choice needs the weight's one-time scans: here, before the row split */
    if (W->dtype == DSV3_F8_E4M3) {
        if (isa == DSV3_CPU_ISA_AVX512 || (isa == DSV3_CPU_ISA_AVX2 && T <= DSV3_AVX2_DIRECT_MAX_T)) dsv3_cpu_fp8_scan(W);
        else dsv3_cpu_fp8_scale_flags(W);
    }
    if (n * W->cols * T <= DSV3_OMP_MIN_WORK || n <= ROW_UNIT || omp_in_parallel() || omp_get_max_threads() == 1) {
        run_block(k, out, ld, x, T, W, r0, r0, r1);
        return;
    }
#pragma omp parallel
    {
        /* static contiguous split; a row's result does not depend on it */
        const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num(), units = (n + ROW_UNIT - 1) / ROW_UNIT;
        int64_t a = r0 + ROW_UNIT * (units * id / nt), b = r0 + ROW_UNIT * (units * (id + 1) / nt);
        if (b > r1) b = r1;
        if (a < b) run_block(k, out, ld, x, T, W, r0, a, b);
    }
}

static void cpu_matmul(float *out, const float *x, int64_t T, const dsv3_weight *W) {
    cpu_matmul_rows(out, W->rows, x, T, W, 0, W->rows);
}

static const dsv3_backend g_cpu = {"cpu", cpu_matmul, cpu_matmul_rows};
const dsv3_backend *dsv3_backend_cpu(void) { return &g_cpu; }
