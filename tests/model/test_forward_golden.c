/* Golden tests: full forward vs HF transformers on the tiny (BF16) and small (FP8)
 * fixtures, on every CPU ISA path, all with the same tolerances. scalar, avx2
 * and avx512 must also give bitwise identical logits; amx (the AMX kernel for
 * BF16/FP8 weights) is not bitwise equal to them and is only held to the
 * tolerances. */
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "dsv3/ops.h"
#include "dsv3/sampling.h"
#include "fixture_util.h"

#define TOL 1e-4

static void golden_forward_isa(const char *set, dsv3_cpu_isa isa, float **first_logits) {
    dsv3_model *m;
    dsv3_st_file *ref;
    dsv3_cpu_isa_set(isa); /* before loading: the loader decodes some weights too */
    int r = fixture_open(set, "reference.safetensors", &m, &ref);
    dsv3_cpu_isa_set(DSV3_CPU_ISA_AUTO);
    if (r > 0) SKIP("fixtures absent");
    if (r < 0) return;
    fprintf(stderr, "    %s on cpu isa %s\n", set, dsv3_cpu_isa_name(isa));
    dsv3_cpu_isa_set(isa);
    const dsv3_config *c = dsv3_model_config(m);
    const int64_t B = 2, T = 40, N = B * T, V = c->vocab_size, H = c->hidden_size, L = c->num_hidden_layers,
                  K = c->num_experts_per_tok, Lm = dsv3_model_n_moe_layers(m);
    int32_t *ids = fixture_i32(ref, "input_ids", N);
    float *ref_logits = fixture_f32(ref, "logits", N * V), *ref_hidden = fixture_f32(ref, "final_hidden", N * H),
          *ref_layers = fixture_f32(ref, "layer_outputs", L * N * H), *ref_mtp = fixture_f32(ref, "mtp_logits", B * (T - 1) * V),
          *ref_rw = fixture_f32(ref, "router_topk_w", Lm * N * K);
    int32_t *ref_ridx = fixture_i32(ref, "router_topk_idx", Lm * N * K);
    float *logits = malloc(sizeof(float) * N * V), *hidden = malloc(sizeof(float) * N * H),
          *layers = malloc(sizeof(float) * L * N * H), *rw = malloc(sizeof(float) * Lm * N * K),
          *mtp = malloc(sizeof(float) * B * (T - 1) * V);
    int32_t *ridx = malloc(sizeof(int32_t) * Lm * N * K);
    dsv3_kv_cache *kc[2] = {0};
    dsv3_error err = {0};
    int ok = ids && ref_logits && ref_hidden && ref_layers && ref_mtp && ref_rw && ref_ridx;
    for (int b = 0; ok && b < B; b++) ok = dsv3_kv_cache_new(m, T, &kc[b], &err) == DSV3_OK;
    if (ok) {
        dsv3_batch_item items[2] = {{kc[0], ids, T}, {kc[1], ids + T, T}};
        dsv3_forward_out out = {.logits = logits, .final_hidden = hidden, .layer_outputs = layers, .router_idx = ridx, .router_w = rw};
        ok = dsv3_forward(m, items, 2, &out, &err) == DSV3_OK;
        for (int b = 0; ok && b < B; b++)
            ok = dsv3_mtp_forward(m, kc[b], hidden + b * T * H, ids + b * T + 1, T - 1, mtp + b * (T - 1) * V, &err) == DSV3_OK;
        if (!ok) test_fail_at(__FILE__, __LINE__, "forward failed: %s", err.msg);
    }
    if (ok) {
        double e;
        e = rel_max_err(layers, ref_layers, L * N * H);
        fprintf(stderr, "    %s layer_outputs rel err %.3g\n", set, e);
        if (!(e <= TOL)) test_fail_at(__FILE__, __LINE__, "layer_outputs rel err %.3g", e);
        e = rel_max_err(hidden, ref_hidden, N * H);
        fprintf(stderr, "    %s final_hidden rel err %.3g\n", set, e);
        if (!(e <= TOL)) test_fail_at(__FILE__, __LINE__, "final_hidden rel err %.3g", e);
        e = rel_max_err(logits, ref_logits, N * V);
        fprintf(stderr, "    %s logits rel err %.3g\n", set, e);
        if (!(e <= TOL)) test_fail_at(__FILE__, __LINE__, "logits rel err %.3g", e);
        e = rel_max_err(mtp, ref_mtp, B * (T - 1) * V);
        fprintf(stderr, "    %s mtp_logits rel err %.3g\n", set, e);
        if (!(e <= TOL)) test_fail_at(__FILE__, __LINE__, "mtp_logits rel err %.3g", e);
        int64_t idx_bad = 0;
        double wmax = 0;
        for (int64_t i = 0; i < Lm * N * K; i++) {
            idx_bad += ridx[i] != ref_ridx[i];
            double d = fabs(rw[i] - ref_rw[i]);
            if (d > wmax) wmax = d;
        }
        fprintf(stderr, "    %s router: %lld idx mismatches, max weight err %.3g\n", set, (long long)idx_bad, wmax);
        if (idx_bad) test_fail_at(__FILE__, __LINE__, "%lld router choices differ", (long long)idx_bad);
        if (!(wmax <= 1e-5)) test_fail_at(__FILE__, __LINE__, "router weights err %.3g", wmax);
        /* every ISA path but amx gives the same bits */
        if (isa == DSV3_CPU_ISA_AMX) {
        } else if (!*first_logits) {
            *first_logits = logits;
            logits = NULL;
        } else if (memcmp(*first_logits, logits, sizeof(float) * N * V) != 0) {
            test_fail_at(__FILE__, __LINE__, "%s: logits on %s differ bitwise from the first ISA path", set,
                         dsv3_cpu_isa_name(isa));
        }
    }
    dsv3_cpu_isa_set(DSV3_CPU_ISA_AUTO);
    for (int b = 0; b < B; b++) dsv3_kv_cache_free(kc[b]);
    free(ids); free(ref_logits); free(ref_hidden); free(ref_layers); free(ref_mtp); free(ref_rw); free(ref_ridx);
    free(logits); free(hidden); free(layers); free(rw); free(mtp); free(ridx);
    dsv3_model_free(m);
    dsv3_st_close(ref);
}

static void golden_forward(const char *set) {
    float *first = NULL;
    for (int isa = DSV3_CPU_ISA_COUNT - 1; isa >= 0 && !test_failed_now(); isa--)
        if (dsv3_cpu_isa_supported((dsv3_cpu_isa)isa)) golden_forward_isa(set, (dsv3_cpu_isa)isa, &first);
    free(first);
}

TEST(golden_forward_tiny) { golden_forward("tiny"); }
TEST(golden_forward_small) { golden_forward("small"); }
