/* End-to-end CLI tests: run the dsv3 binary next to this test binary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../test.h"
#include "dsv3/safetensors.h"

/* Runs "dsv3 <args>", captures stdout (and stderr when merge) into out; returns exit status. */
static int run(const char *args, char *out, size_t cap, int merge) {
    static char cmd[4096 + 16384 + 32];
    snprintf(cmd, sizeof cmd, "%.4095s %.16383s %s", test_dsv3_bin(), args, merge ? "2>&1" : "2>/dev/null");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_info_real_v3_config) {
    static char out[16384];
    CHECK(run("info tests/data/deepseek-v3", out, sizeof out, 0) == 0);
    CHECK_MSG(strstr(out, "671026419200") != NULL, "%s", out);
    CHECK(strstr(out, "(684.49B)") != NULL);
    CHECK(strstr(out, "activated per token") != NULL);
    CHECK(strstr(out, "70272 bytes BF16") != NULL);
}

TEST(cli_usage_and_errors) {
    static char out[16384];
    CHECK(run("--help", out, sizeof out, 0) == 0 && strstr(out, "generate"));
    CHECK(run("generate --help", out, sizeof out, 0) == 0 && strstr(out, "--top-p"));
    CHECK(run("forward --help", out, sizeof out, 0) == 0 && strstr(out, "-t N"));
    CHECK(run("nosuchcommand", out, sizeof out, 1) == 2 && strstr(out, "unknown command"));
    CHECK(run("info", out, sizeof out, 1) == 2);
    CHECK(run("info tests/data/missing-model", out, sizeof out, 1) == 1 && strstr(out, "missing-model/config.json"));
    CHECK(run("generate --model tests/data/deepseek-v3 --prompt-ids 1,2", out, sizeof out, 1) == 1 && strstr(out, "model.safetensors"));
    CHECK(run("generate --model x --prompt-ids 1 --temp abc", out, sizeof out, 1) == 2 && strstr(out, "--temp"));
    CHECK(run("generate --model x --prompt-ids 1 --mtp --mtp-draft-vocab -5", out, sizeof out, 1) == 2 &&
          strstr(out, "--mtp-draft-vocab"));
    CHECK(run("generate --model", out, sizeof out, 1) == 2 && strstr(out, "needs a value"));
}

TEST(cli_generate_greedy_fixture) {
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    static char out[16384], args[4096];
    /* greedy_prompt / greedy_tokens of tiny/reference.safetensors */
    snprintf(args, sizeof args, "generate --model %s/tiny --prompt-ids 415,52,117,466,246,99,63 -n 16 -t 2", test_fixtures_dir());
    CHECK(run(args, out, sizeof out, 0) == 0);
    CHECK_MSG(!strcmp(out, "141,254,509,156,253,471,251,297,26,52,151,368,103,315,261,290\n"), "got %s", out);
    snprintf(args, sizeof args, "generate --model %s/tiny --prompt-ids 1,2,3 -n 8 --temp 0.8 --top-p 0.9 --top-k 20 --seed 7 -t 1", test_fixtures_dir());
    static char out2[16384];
    CHECK(run(args, out, sizeof out, 0) == 0);
    CHECK(run(args, out2, sizeof out2, 0) == 0);
    CHECK_MSG(!strcmp(out, out2), "same seed must give the same tokens: %s vs %s", out, out2);
    snprintf(args, sizeof args, "generate --model %s/tiny --prompt-ids 1,2,999 -n 2", test_fixtures_dir());
    CHECK(run(args, out, sizeof out, 1) == 1 && strstr(out, "prompt-ids"));
}

TEST(cli_forward_writes_outputs) {
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    char in[4096], outp[4096], args[16384];
    static char out[16384];
    snprintf(in, sizeof in, "%s/fwd_in.safetensors", test_tmp_dir());
    snprintf(outp, sizeof outp, "%s/fwd_out.safetensors", test_tmp_dir());
    dsv3_error err = {0};
    dsv3_st_writer *w = dsv3_st_writer_new();
    int64_t ids[2 * 5] = {1, 2, 3, 4, 5, 9, 8, 7, 6, 5}, shape[2] = {2, 5};
    CHECK(dsv3_st_writer_add(w, "input_ids", DSV3_I64, 2, shape, ids, &err) == DSV3_OK);
    CHECK(dsv3_st_writer_save(w, in, &err) == DSV3_OK);
    dsv3_st_writer_free(w);
    snprintf(args, sizeof args, "forward --model %s/small --input %s --output %s -t 2", test_fixtures_dir(), in, outp);
    CHECK_MSG(run(args, out, sizeof out, 1) == 0, "%s", out);
    dsv3_st_file *f;
    CHECK_MSG(dsv3_st_open(outp, &f, &err) == DSV3_OK, "%s", err.msg);
    const dsv3_tensor_view *t = dsv3_st_find(f, "logits");
    CHECK(t && t->ndim == 3 && t->shape[0] == 2 && t->shape[1] == 5 && t->shape[2] == 1024);
    t = dsv3_st_find(f, "layer_outputs");
    CHECK(t && t->ndim == 4 && t->shape[0] == 2 && t->shape[3] == 256);
    t = dsv3_st_find(f, "mtp_logits");
    CHECK(t && t->shape[1] == 4);
    CHECK(dsv3_st_find(f, "final_hidden") != NULL);
    dsv3_st_close(f);
    /* missing input tensor -> error naming it */
    snprintf(args, sizeof args, "forward --model %s/small --input %s --output %s", test_fixtures_dir(), outp, in);
    CHECK(run(args, out, sizeof out, 1) == 1 && strstr(out, "input_ids"));
}

TEST(cli_bench_table) {
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    static char out[16384], args[4096];
    snprintf(args, sizeof args, "bench --model %s/small -p 8 -n 4 -r 2 -t 1", test_fixtures_dir());
    CHECK(run(args, out, sizeof out, 0) == 0);
    CHECK_MSG(strstr(out, "| small |") && strstr(out, "| pp8 |") && strstr(out, "| tg4 |"), "%s", out);
    CHECK(run("bench --model x -r 0", out, sizeof out, 1) == 2);
}

/* A "key":number field of a JSON line, or -1. */
static long long json_ll(const char *s, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    return p ? atoll(p + strlen(pat)) : -1;
}

/* --mtp drafts 2 tokens per step when greedy and 1 when sampling (DSV3_MTP_DEFAULT_DRAFTS[_SAMPLED]);
 * --mtp-drafts overrides both. A step emits its accepted drafts + 1 token, so steps = generated -
 * accepted, and drafted = drafts per step x steps but for the last steps (capped by what is left). */
TEST(cli_generate_mtp_default_drafts) {
    if (access("models/dsv3-kjv-tiny/model.safetensors", R_OK) != 0) SKIP("default model not built yet");
    static char out[16384];
    static const struct {
        const char *opts;
        long long per_step;
    } cases[] = {{"--temp 0", 2}, {"--temp 0.8 --top-k 40 --seed 3", 1}, {"--temp 0.8 --top-k 40 --seed 3 --mtp-drafts 2", 2}};
    for (int c = 0; c < 3; c++) {
        char args[512];
        snprintf(args, sizeof args, "generate --model models/dsv3-kjv-tiny --prompt 'And God said' -n 48 --ignore-eos --mtp --stats -t 1 %s",
                 cases[c].opts);
        CHECK(run(args, out, sizeof out, 1) == 0);
        const char *js = strstr(out, "{\"prompt_tokens\"");
        CHECK_MSG(js != NULL, "%s", out);
        const long long gen = json_ll(js, "generated_tokens"), dr = json_ll(js, "mtp_drafted"), ac = json_ll(js, "mtp_accepted");
        const long long steps = gen - 1 - ac; /* the prefill's token is not a step's */
        CHECK_MSG(gen == 48 && dr > 0 && dr <= cases[c].per_step * steps && dr >= cases[c].per_step * (steps - 2),
                  "%s: generated %lld, drafted %lld, accepted %lld", cases[c].opts, gen, dr, ac);
    }
}

/* --kv-dtype on the commands that make a KV cache: bf16 runs (the tiny fixture's greedy tokens are the
 * F32 cache's here: BF16 rounding moves no argmax of this prompt), anything else is a usage error
 * naming the option. */
TEST(cli_kv_dtype_option) {
    static char out[16384], args[4096];
    CHECK(run("generate --help", out, sizeof out, 0) == 0 && strstr(out, "--kv-dtype"));
    CHECK(run("chat --help", out, sizeof out, 0) == 0 && strstr(out, "--kv-dtype"));
    CHECK(run("serve --help", out, sizeof out, 0) == 0 && strstr(out, "--kv-dtype"));
    CHECK(run("generate --model x --prompt-ids 1 --kv-dtype fp8", out, sizeof out, 1) == 2 && strstr(out, "bad --kv-dtype 'fp8'"));
    CHECK(run("chat --model x --kv-dtype f16", out, sizeof out, 1) == 2 && strstr(out, "bad --kv-dtype"));
    CHECK(run("serve --model x --kv-dtype 16", out, sizeof out, 1) == 2 && strstr(out, "bad --kv-dtype"));
    CHECK(run("bench --model x --kv-dtype q8", out, sizeof out, 1) == 2 && strstr(out, "bad --kv-dtype"));
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    snprintf(args, sizeof args, "generate --model %s/tiny --prompt-ids 415,52,117,466,246,99,63 -n 16 -t 2 --kv-dtype bf16",
             test_fixtures_dir());
    CHECK(run(args, out, sizeof out, 0) == 0);
    CHECK_MSG(!strcmp(out, "141,254,509,156,253,471,251,297,26,52,151,368,103,315,261,290\n"), "got %s", out);
    snprintf(args, sizeof args, "bench --model %s/small -p 8 -n 4 -r 1 -t 1 --kv-dtype bf16", test_fixtures_dir());
    CHECK(run(args, out, sizeof out, 0) == 0);
    CHECK_MSG(strstr(out, "| tg4 |") && strstr(out, "| bf16 |"), "%s", out);
}
