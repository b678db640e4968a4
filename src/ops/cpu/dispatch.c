/* CPU backend: runtime ISA dispatch (scalar / AVX2 / AVX-512) and the
 * multi-threaded matmul driver.
 *
 * The ISA is chosen once: the best one the CPU (and OS) supports, or the one
 * named by the environment variable DSV3_CPU_ISA=scalar|avx2|avx512|auto; an
 * invalid or unsupported name is reported on stderr and the automatic choice is
 * used. dsv3_cpu_isa_set() changes it at run time (tests). All paths give
 * bitwise identical results (cpu_kernels.h), so switching never changes output. */
#include <cpuid.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"

static const dsv3_cpu_kernels *const g_kernels[DSV3_CPU_ISA_COUNT] = {
    &dsv3_cpu_kernels_scalar, &dsv3_cpu_kernels_avx2, &dsv3_cpu_kernels_avx512};
static const char *const g_names[DSV3_CPU_ISA_COUNT] = {"scalar", "avx2", "avx512"};

static int g_supported[DSV3_CPU_ISA_COUNT];
static int g_best;
static int g_isa; /* accessed atomically */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

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
    g_best = g_supported[DSV3_CPU_ISA_AVX512] ? DSV3_CPU_ISA_AVX512
             : g_supported[DSV3_CPU_ISA_AVX2] ? DSV3_CPU_ISA_AVX2
                                               : DSV3_CPU_ISA_SCALAR;
    int isa = g_best;
    const char *env = getenv("DSV3_CPU_ISA");
    if (env && *env) {
        dsv3_cpu_isa want;
        if (dsv3_cpu_isa_parse(env, &want) != 0)
            fprintf(stderr, "dsv3: DSV3_CPU_ISA=%s is not one of scalar, avx2, avx512, auto; using %s\n", env,
                    g_names[g_best]);
        else if (want != DSV3_CPU_ISA_AUTO && !g_supported[want])
            fprintf(stderr, "dsv3: DSV3_CPU_ISA=%s is not supported by this CPU; using %s\n", env, g_names[g_best]);
        else if (want != DSV3_CPU_ISA_AUTO)
            isa = want;
    }
    __atomic_store_n(&g_isa, isa, __ATOMIC_RELEASE);
}

static inline const dsv3_cpu_kernels *active(void) {
    pthread_once(&g_once, isa_init);
    return g_kernels[__atomic_load_n(&g_isa, __ATOMIC_ACQUIRE)];
}

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
    const dsv3_cpu_kernels *k = active();
    const int64_t n = r1 - r0;
    if (n <= 0 || T <= 0) return;
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
