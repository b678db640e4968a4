/* Independent finite-difference check of the analytic gradients on a random
 * small config (q LoRA, YaRN, dense + MoE layer with groups, MTP). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"
#include "dsv3/init_model.h"
#include "dsv3/train.h"

static const char *CFG =
    "{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"model_type\":\"deepseek_v3\",\"vocab_size\":40,"
    "\"hidden_size\":16,\"intermediate_size\":24,\"moe_intermediate_size\":8,\"num_hidden_layers\":2,"
    "\"first_k_dense_replace\":1,\"num_attention_heads\":2,\"num_key_value_heads\":2,\"q_lora_rank\":12,"
    "\"kv_lora_rank\":8,\"qk_nope_head_dim\":4,\"qk_rope_head_dim\":4,\"v_head_dim\":6,\"n_routed_experts\":6,"
    "\"num_experts_per_tok\":2,\"n_group\":3,\"topk_group\":2,\"n_shared_experts\":1,\"routed_scaling_factor\":2.5,"
    "\"norm_topk_prob\":true,\"scoring_func\":\"sigmoid\",\"topk_method\":\"noaux_tc\",\"num_nextn_predict_layers\":1,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":10000,\"max_position_embeddings\":64,"
    "\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4,\"original_max_position_embeddings\":4,\"beta_fast\":32,"
    "\"beta_slow\":1,\"mscale\":1.0,\"mscale_all_dim\":1.0}}";

static double total_loss(dsv3_train_model *tm, const int32_t *ids, int64_t B, int64_t T, const dsv3_loss_params *lp) {
    dsv3_step_stats s = {0};
    dsv3_error err = {0};
    dsv3_train_forward_backward(tm, ids, B, T, lp, &s, &err);
    return s.loss_total;
}

/* FD check of every parameter tensor (3 entries each) with D MTP depths. */
static void fd_check(int depths) {
    char dir[4200], cfg[4300], text[4096];
    snprintf(dir, sizeof dir, "%s/fd-model-%d", test_tmp_dir(), depths);
    snprintf(cfg, sizeof cfg, "%s/fd-config-%d.json", test_tmp_dir(), depths);
    snprintf(text, sizeof text, "%s", CFG);
    char *d = strstr(text, "\"num_nextn_predict_layers\":1");
    if (d) d[strlen("\"num_nextn_predict_layers\":")] = (char)('0' + depths);
    FILE *f = fopen(cfg, "w");
    fputs(text, f);
    fclose(f);
    dsv3_init_opts io;
    dsv3_init_opts_default(&io);
    io.dtype = DSV3_INIT_F32;
    io.std = 0.3f;
    io.seed = 3;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_init_model(cfg, dir, &io, NULL, &err) == DSV3_OK, "%s", err.msg);
    dsv3_train_model *tm = NULL;
    CHECK_MSG(dsv3_train_model_load(dir, &tm, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_train_model_has_mtp(tm));
    const int64_t B = 2, T = 7;
    int32_t ids[14];
    for (int i = 0; i < 14; i++) ids[i] = (i * 17 + 5) % 40;
    dsv3_loss_params lp = {0.3f, 0.05f};
    dsv3_train_zero_grad(tm);
    dsv3_step_stats s = {0};
    CHECK(dsv3_train_forward_backward(tm, ids, B, T, &lp, &s, &err) == DSV3_OK);
    int n = dsv3_train_model_n_params(tm);
    float **g = calloc((size_t)n, sizeof(float *));
    for (int i = 0; i < n; i++) {
        dsv3_param *p = dsv3_train_model_param(tm, i);
        g[i] = malloc(sizeof(float) * p->numel);
        memcpy(g[i], p->g, sizeof(float) * p->numel);
    }
    int checked = 0, bad = 0;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        dsv3_param *p = dsv3_train_model_param(tm, i);
        for (int k = 0; k < 3; k++) {
            int64_t j = (int64_t)((k * 7919 + i * 104729) % p->numel);
            float w0 = p->w[j], h = 2e-3f;
            p->w[j] = w0 + h;
            double lplus = total_loss(tm, ids, B, T, &lp);
            p->w[j] = w0 - h;
            double lminus = total_loss(tm, ids, B, T, &lp);
            p->w[j] = w0;
            double fd = (lplus - lminus) / (2.0 * h), an = g[i][j];
            double e = fabs(fd - an) / (fabs(an) + 3e-3);
            if (e > worst) worst = e;
            if (e > 3e-2) {
                bad++;
                fprintf(stderr, "    %s[%lld]: analytic %.6g, finite difference %.6g\n", p->name, (long long)j, an, fd);
            }
            checked++;
        }
    }
    fprintf(stderr, "    D=%d: %d entries of %d tensors checked, worst relative error %.3g\n", depths, checked, n, worst);
    CHECK_MSG(bad == 0, "%d entries disagree", bad);
    for (int i = 0; i < n; i++) free(g[i]);
    free(g);
    dsv3_train_model_free(tm);
}

TEST(train_grad_finite_difference) { fd_check(1); }
TEST(train_grad_finite_difference_mtp_depth2) { fd_check(2); }
