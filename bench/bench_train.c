/* Training throughput and MFU.
 *
 *   build/bench_train --model DIR [--batch 8] [--seq 256] [--steps 5] [-t N]
 *
 * Runs full training steps (forward + backward of main model and MTP, losses,
 * clipping, AdamW) on random tokens and reports tokens/s (median of steps after
 * one warm-up) and MFU = model FLOPs per token x tokens/s / peak FLOP/s, where
 * the peak is measured here by an FMA loop on all threads (the machine's
 * attainable f32 vector peak). Model FLOPs per token = 6 x (matmul parameters a
 * token touches: attention, dense/shared/K routed experts, router, lm_head, MTP
 * block + eh_proj + its head) + 6 x attention score/value FLOPs (causal mean). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsv3/clock.h"
#include "dsv3/model.h"
#include "dsv3/train.h"

/* the widest vector the compiler targets (as src/train/gemm_f32.c): a 16-lane type on AVX2 took two
 * registers per chain, 24 of 16, and the spills made the "peak" a sixth of the machine's */
#if defined(__AVX512F__)
typedef float v8 __attribute__((vector_size(64)));
#else
typedef float v8 __attribute__((vector_size(32)));
#endif
#define V8_LANES ((int)(sizeof(v8) / sizeof(float)))

/* f32 FMA peak: 12 independent vector chains per thread. */
static double measure_peak_flops(int threads) {
    const long iters = 40000000;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = dsv3_now_s();
        float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        {
            v8 a[12], m = (v8){0} + 1.0000001f,
                      c = (v8){0} + 1e-7f;
            for (int k = 0; k < 12; k++) a[k] = (v8){0} + (float)k;
            for (long i = 0; i < iters; i++)
                for (int k = 0; k < 12; k++) a[k] = a[k] * m + c;
            for (int k = 0; k < 12; k++) sink += a[k][0];
        }
        double dt = dsv3_now_s() - t0, flops = 2.0 * V8_LANES * 12 * (double)iters * threads / dt;
        if (flops > best) best = flops;
        if (sink == 12345.0f) printf(" ");
    }
    return best;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *model = NULL;
    int64_t B = 8, T = 256, steps = 5;
    int threads = omp_get_max_threads();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_train --model DIR [--batch 8] [--seq 256] [--steps 5] [-t N]\n");
            return 2;
        }
    }
    if (!model || B < 1 || T < 3 || steps < 1 || threads < 1) {
        fprintf(stderr, "usage: bench_train --model DIR [--batch 8] [--seq 256] [--steps 5] [-t N]\n");
        return 2;
    }
    omp_set_num_threads(threads);
    dsv3_error err = {0};
    dsv3_train_model *tm = NULL;
    if (dsv3_train_model_load(model, &tm, &err)) {
        fprintf(stderr, "bench_train: %s\n", err.msg);
        return 1;
    }
    const dsv3_config *c = dsv3_train_model_config(tm);
    dsv3_param_counts pc;
    dsv3_count_params(c, &pc);
    /* matmul parameters per token: activated minus the embedding lookup (and the
     * norm/bias vectors, negligible), plus the MTP module's active part + its head */
    double main_mm = (double)(pc.activated - pc.embedding);
    double mtp_mm = 0;
    if (dsv3_train_model_has_mtp(tm)) {
        int64_t H = c->hidden_size, E = c->n_routed_experts, K = c->num_experts_per_tok, I = c->moe_intermediate_size;
        mtp_mm = (double)(pc.mtp_unique - (E - K) * 3 * H * I) + (double)pc.head;
    }
    double attn = (double)c->num_hidden_layers * c->num_attention_heads *
                  (double)(c->qk_nope_head_dim + c->qk_rope_head_dim + c->v_head_dim) * (double)T / 2.0 * 2.0;
    double flops_per_token = 6.0 * (main_mm + mtp_mm) + 3.0 * attn * (1 + (mtp_mm > 0) / (double)c->num_hidden_layers);

    int32_t *ids = malloc(sizeof(int32_t) * B * T);
    uint64_t s = 7;
    for (int64_t i = 0; i < B * T; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)c->vocab_size);
    }
    dsv3_loss_params lp = {0.3f, 1e-4f};
    dsv3_adamw_params ap = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0};
    double *tps = malloc(sizeof(double) * (steps + 1));
    for (int64_t st = 0; st <= steps; st++) {
        double t0 = dsv3_now_s();
        dsv3_train_zero_grad(tm);
        dsv3_step_stats ss = {0};
        if (dsv3_train_forward_backward(tm, ids, B, T, &lp, &ss, &err) || dsv3_adamw_step(tm, &ap, st + 1, &err)) {
            fprintf(stderr, "bench_train: %s\n", err.msg);
            return 1;
        }
        dsv3_clip_grad_norm(tm, 1.0);
        tps[st] = (double)(B * T) / (dsv3_now_s() - t0);
    }
    qsort(tps + 1, (size_t)steps, sizeof(double), cmp_d); /* step 0 is warm-up */
    double med = tps[1 + steps / 2];
    double peak = measure_peak_flops(threads);
    double mfu = flops_per_token * med / peak;
    printf("model %s: %.2fM params (%.2fM matmul params per token incl. MTP), batch %lld x %lld, %d threads\n", model,
           (pc.total_main + pc.mtp_unique) / 1e6, (main_mm + mtp_mm) / 1e6, (long long)B, (long long)T, threads);
    printf("training: %.1f tokens/s (median of %lld steps), %.1f MFLOP/token, %.2f GFLOP/s achieved\n", med,
           (long long)steps, flops_per_token / 1e6, flops_per_token * med / 1e9);
    printf("peak (measured FMA loop): %.1f GFLOP/s  ->  MFU %.1f%%\n", peak / 1e9, 100 * mfu);
    printf("{\"bench\":\"train\",\"tokens_per_s\":%.2f,\"flops_per_token\":%.4e,\"peak_flops\":%.4e,\"mfu\":%.4f,"
           "\"batch\":%lld,\"seq\":%lld,\"threads\":%d}\n",
           med, flops_per_token, peak, mfu, (long long)B, (long long)T, threads);
    free(ids);
    free(tps);
    dsv3_train_model_free(tm);
    return 0;
}
