/* dsv3 info <model_dir>: config summary, parameter counts, bytes per dtype, KV bytes per token. */
#include <stdio.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/config.h"
#include "dsv3/model.h"
#include "dsv3/safetensors.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 info <model_dir>\n\n"
               "Prints the config summary, parameter counts (total, activated per token, MTP),\n"
               "checkpoint bytes per dtype (when weights are present) and KV-cache bytes per token.\n"
               "Works with a directory holding only config.json.\n");
}

static void print_count(const char *label, int64_t n) {
    if (n >= 1000000000LL) printf("  %-34s %16lld  (%.2fB)\n", label, (long long)n, (double)n / 1e9);
    else printf("  %-34s %16lld  (%.2fM)\n", label, (long long)n, (double)n / 1e6);
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (argv[i][0] == '-') { fprintf(stderr, "dsv3 info: unknown option %s\n", argv[i]); usage(stderr); return 2; }
        if (dir) { fprintf(stderr, "dsv3 info: more than one model directory given\n"); return 2; }
        dir = argv[i];
    }
    if (!dir) { usage(stderr); return 2; }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    dsv3_config c;
    dsv3_error err = {0};
    if (dsv3_config_load(path, &c, &err)) return cli_error("info", &err);

    printf("model: %s\n", dir);
    printf("  layers %lld (dense %lld, MoE %lld), hidden %lld, heads %lld, vocab %lld\n", (long long)c.num_hidden_layers,
           (long long)(c.first_k_dense_replace < c.num_hidden_layers ? c.first_k_dense_replace : c.num_hidden_layers),
           (long long)(c.num_hidden_layers - (c.first_k_dense_replace < c.num_hidden_layers ? c.first_k_dense_replace : c.num_hidden_layers)),
           (long long)c.hidden_size, (long long)c.num_attention_heads, (long long)c.vocab_size);
    printf("  MLA: q_lora_rank %lld, kv_lora_rank %lld, qk_nope %lld, qk_rope %lld, v %lld\n", (long long)c.q_lora_rank,
           (long long)c.kv_lora_rank, (long long)c.qk_nope_head_dim, (long long)c.qk_rope_head_dim, (long long)c.v_head_dim);
    printf("  MoE: %lld routed + %lld shared experts, top-%lld, groups %lld (keep %lld), width %lld, dense width %lld\n",
           (long long)c.n_routed_experts, (long long)c.n_shared_experts, (long long)c.num_experts_per_tok,
           (long long)c.n_group, (long long)c.topk_group, (long long)c.moe_intermediate_size, (long long)c.intermediate_size);
    printf("  router: %s, %s, norm_topk_prob %d, routed_scaling_factor %g\n",
           c.scoring_func == DSV3_SCORE_SIGMOID ? "sigmoid" : "softmax",
           c.topk_method == DSV3_TOPK_NOAUX_TC ? "noaux_tc" : c.topk_method == DSV3_TOPK_GREEDY ? "greedy" : "group_limited_greedy",
           c.norm_topk_prob, c.routed_scaling_factor);
    if (c.rope_yarn)
        printf("  RoPE: theta %g, YaRN factor %g (original %lld), softmax scale %.10f\n", c.rope_theta, c.rope_factor,
               (long long)c.rope_original_max_pos, dsv3_config_softmax_scale(&c));
    else
        printf("  RoPE: theta %g, no scaling, softmax scale %.10f\n", c.rope_theta, dsv3_config_softmax_scale(&c));
    printf("  MTP modules: %lld; weights: %s\n", (long long)c.num_nextn_predict_layers,
           c.fp8 ? "FP8 e4m3 block-scaled" : "unquantised");

    dsv3_param_counts pc;
    dsv3_count_params(&c, &pc);
    printf("parameters:\n");
    print_count("main model (total)", pc.total_main);
    print_count("main model + MTP", pc.total_main + pc.mtp);
    print_count("MTP (with embedding/head copies)", pc.mtp);
    print_count("MTP (unique)", pc.mtp_unique);
    print_count("activated per token", pc.activated);
    print_count("activated per token, w/o embedding", pc.activated - pc.embedding);
    print_count("attention per layer", pc.attn_per_layer);

    int64_t row = c.kv_lora_rank + c.qk_rope_head_dim, layers = c.num_hidden_layers;
    printf("KV cache per token (compressed MLA, %lld values per layer):\n", (long long)row);
    printf("  main model: %lld bytes F32 (dsv3's default), %lld bytes BF16 (--kv-dtype bf16); the MTP layer adds\n"
           "  %lld / %lld bytes\n",
           (long long)(row * layers * 4), (long long)(row * layers * 2), (long long)(row * 4), (long long)(row * 2));

    /* checkpoint bytes per dtype, when weights are present */
    dsv3_checkpoint *ck = NULL;
    if (dsv3_ckpt_open(dir, &ck, &err) == DSV3_OK) {
        unsigned long long bytes[DSV3_DTYPE_COUNT] = {0}, count[DSV3_DTYPE_COUNT] = {0}, total = 0;
        size_t n = dsv3_ckpt_count(ck);
        for (size_t i = 0; i < n; i++) {
            const dsv3_tensor_view *t = dsv3_ckpt_tensor(ck, i);
            bytes[t->dtype] += t->nbytes;
            count[t->dtype]++;
            total += t->nbytes;
        }
        printf("checkpoint: %zu tensors, %llu bytes\n", n, total);
        for (int d = 0; d < DSV3_DTYPE_COUNT; d++)
            if (count[d]) printf("  %-8s %8llu tensors %16llu bytes\n", dsv3_dtype_name((dsv3_dtype)d), count[d], bytes[d]);
        dsv3_ckpt_close(ck);
    } else {
        printf("checkpoint: not loaded (%s)\n", err.msg);
    }
    return 0;
}
