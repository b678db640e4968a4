/* config.json parsing, YaRN tables (spec Appendix A) and parameter counts (spec §1.3). */
#include <string.h>

#include "../test.h"
#include "dsv3/config.h"
#include "dsv3/model.h"

TEST(config_real_v3_yarn_and_counts) {
    dsv3_config c;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_config_load("tests/data/deepseek-v3/config.json", &c, &err) == DSV3_OK, "%s", err.msg);
    CHECK(c.hidden_size == 7168 && c.num_hidden_layers == 61 && c.q_lora_rank == 1536 && c.fp8 && c.rope_yarn);
    CHECK(c.topk_method == DSV3_TOPK_NOAUX_TC && c.scoring_func == DSV3_SCORE_SIGMOID && c.n_group == 8);
    CHECK_NEAR(dsv3_config_softmax_scale(&c), 0.1352337789, 1e-9);
    CHECK_NEAR(dsv3_config_rope_attn_factor(&c), 1.0, 0);
    float f[32];
    dsv3_config_rope_freqs(&c, f);
    /* Appendix A check values */
    CHECK_NEAR(f[0], 1.0, 1e-7);
    CHECK_NEAR(f[10], 5.623413e-02, 1e-7);
    CHECK_NEAR(f[11], 3.900693e-02, 1e-7);
    CHECK_NEAR(f[16], 5.5e-3, 1e-8);
    CHECK_NEAR(f[22], 1.778279e-04, 1e-9);
    CHECK_NEAR(f[23], 3.333804e-05, 1e-10);
    CHECK_NEAR(f[31], 3.333804e-06, 1e-11);
    dsv3_param_counts pc;
    dsv3_count_params(&c, &pc);
    CHECK(pc.total_main == 671026419200LL);  /* spec §1.3 */
    CHECK(pc.attn_per_layer == 187107328LL);
    CHECK(fabs(pc.total_main + pc.mtp - 685e9) / 685e9 < 0.01);
    CHECK(fabs(pc.activated - 37e9) / 37e9 < 0.02);
}

static dsv3_status parse(const char *json, dsv3_config *c, dsv3_error *err) {
    return dsv3_config_parse(json, strlen(json), "config.json", c, err);
}

#define BASE "\"vocab_size\":100,\"hidden_size\":8,\"intermediate_size\":16,\"num_hidden_layers\":1," \
             "\"num_attention_heads\":2,\"kv_lora_rank\":4,\"qk_nope_head_dim\":2,\"qk_rope_head_dim\":2,\"v_head_dim\":2"

TEST(config_errors_name_the_key) {
    dsv3_config c;
    dsv3_error err = {0};
    CHECK(parse("{" BASE "}", &c, &err) == DSV3_OK);
    CHECK(c.q_lora_rank == 0 && !c.rope_yarn && c.n_routed_experts == 0);
    CHECK(parse("{\"hidden_size\":8}", &c, &err) != DSV3_OK && strstr(err.msg, "vocab_size"));
    CHECK(parse("{" BASE ",\"hidden_size\":\"big\"}", &c, &err) != DSV3_OK); /* duplicate key: last wins in jansson, still typed */
    CHECK(parse("{\"vocab_size\":100,\"hidden_size\":\"8\"}", &c, &err) != DSV3_OK && strstr(err.msg, "hidden_size"));
    CHECK(parse("{" BASE ",\"topk_method\":\"magic\"}", &c, &err) == DSV3_ERR_UNSUPPORTED && strstr(err.msg, "magic"));
    CHECK(parse("{" BASE ",\"scoring_func\":7}", &c, &err) != DSV3_OK && strstr(err.msg, "scoring_func"));
    CHECK(parse("{" BASE ",\"rope_scaling\":{\"type\":\"yarn\"}}", &c, &err) != DSV3_OK && strstr(err.msg, "factor"));
    CHECK(parse("{" BASE ",\"qk_rope_head_dim\":3}", &c, &err) != DSV3_OK && strstr(err.msg, "qk_rope_head_dim"));
    CHECK(parse("{" BASE ",\"num_hidden_layers\":-1}", &c, &err) != DSV3_OK && strstr(err.msg, "num_hidden_layers"));
    CHECK(parse("[1,2]", &c, &err) != DSV3_OK);
    CHECK(parse("{" BASE, &c, &err) != DSV3_OK && strstr(err.msg, "invalid JSON"));
    CHECK(dsv3_config_load("tests/data/no-such-dir/config.json", &c, &err) == DSV3_ERR_IO && strstr(err.msg, "no-such-dir"));
}

TEST(config_v2_family) {
    dsv3_config c;
    dsv3_error err = {0};
    /* V2-Lite style: q_lora_rank null, softmax + greedy, no groups */
    CHECK_MSG(parse("{" BASE ",\"model_type\":\"deepseek_v2\",\"q_lora_rank\":null,\"n_routed_experts\":4,"
                    "\"moe_intermediate_size\":4,\"num_experts_per_tok\":2,\"scoring_func\":\"softmax\","
                    "\"topk_method\":\"greedy\",\"n_group\":1,\"topk_group\":1,\"norm_topk_prob\":false,"
                    "\"rope_scaling\":{\"type\":\"yarn\",\"factor\":40,\"original_max_position_embeddings\":4096,"
                    "\"mscale\":0.707,\"mscale_all_dim\":0.707,\"beta_fast\":32,\"beta_slow\":1}}",
                    &c, &err) == DSV3_OK, "%s", err.msg);
    CHECK(c.q_lora_rank == 0 && c.scoring_func == DSV3_SCORE_SOFTMAX && c.topk_method == DSV3_TOPK_GREEDY && !c.norm_topk_prob);
    CHECK_NEAR(dsv3_config_rope_attn_factor(&c), 1.0, 1e-12);
    /* V2: group_limited_greedy, n_group absent -> defaults 1 */
    CHECK(parse("{" BASE ",\"model_type\":\"deepseek_v2\",\"n_routed_experts\":4,\"moe_intermediate_size\":4,"
                "\"num_experts_per_tok\":2,\"topk_method\":\"group_limited_greedy\"}", &c, &err) == DSV3_OK);
    CHECK(c.n_group == 1 && c.topk_group == 1 && c.scoring_func == DSV3_SCORE_SOFTMAX);
    CHECK(parse("{" BASE ",\"n_routed_experts\":4,\"moe_intermediate_size\":4,\"num_experts_per_tok\":5}", &c, &err) != DSV3_OK);
    CHECK(parse("{" BASE ",\"n_routed_experts\":6,\"moe_intermediate_size\":4,\"num_experts_per_tok\":2,\"n_group\":4}", &c, &err) != DSV3_OK);
    /* more experts than the router's stack scratch is sized for: an error naming the key, not a crash */
    CHECK(parse("{" BASE ",\"n_routed_experts\":1048576,\"moe_intermediate_size\":4,\"num_experts_per_tok\":2}", &c, &err) != DSV3_OK &&
          strstr(err.msg, "n_routed_experts"));
}
