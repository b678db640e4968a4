/* dsv3 quantize --to fp8: the quantised tiny fixture keeps its logits close to
 * the BF16 ones, every FP8 weight dequantises within FP8 precision with
 * scale = block amax / 448, other tensors are copied bit for bit, F32 input
 * gives exactly init-model's FP8 bytes, sharded input works, already-FP8
 * weights pass through, and bad input / output give clear errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../test.h"
#include "cli/commands.h"
#include "dsv3/config.h"
#include "dsv3/fp8.h"
#include "dsv3/init_model.h"
#include "dsv3/model.h"
#include "dsv3/ops.h"
#include "dsv3/quantize.h"
#include "dsv3/safetensors.h"
#include "fixture_util.h"

static int tiny_dir(char *buf, size_t n) {
    const char *fx = test_fixtures_dir();
    if (!fx) return 0;
    snprintf(buf, n, "%s/tiny", fx);
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", buf);
    return access(p, R_OK) == 0;
}

static dsv3_status quantize(const char *in, const char *sub, int block, int overwrite, char *out, size_t n,
                            dsv3_quantize_result *r, dsv3_error *err) {
    snprintf(out, n, "%s/%s", test_tmp_dir(), sub);
    dsv3_quantize_opts o;
    dsv3_quantize_opts_default(&o);
    o.block = block;
    o.overwrite = overwrite;
    return dsv3_quantize_fp8(in, out, &o, r, err);
}

TEST(quantize_fp8_weight_names) {
    const char *yes[] = {"model.layers.0.self_attn.q_a_proj.weight", "model.layers.12.self_attn.q_b_proj.weight",
                         "model.layers.3.self_attn.q_proj.weight", "model.layers.3.self_attn.kv_a_proj_with_mqa.weight",
                         "model.layers.3.self_attn.kv_b_proj.weight", "model.layers.3.self_attn.o_proj.weight",
                         "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.down_proj.weight",
                         "model.layers.61.mlp.experts.255.up_proj.weight",
                         "model.layers.5.mlp.shared_experts.down_proj.weight"};
    const char *no[] = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                        "model.layers.3.input_layernorm.weight", "model.layers.3.self_attn.q_a_layernorm.weight",
                        "model.layers.3.self_attn.kv_a_layernorm.weight", "model.layers.3.mlp.gate.weight",
                        "model.layers.3.mlp.gate.e_score_correction_bias", "model.layers.61.eh_proj.weight",
                        "model.layers.61.embed_tokens.weight", "model.layers.61.shared_head.head.weight",
                        "model.layers.3.self_attn.o_proj.weight_scale_inv", "model.layers.x.mlp.up_proj.weight",
                        "model.layers.3.mlp.experts.up_proj.weight", "layers.3.mlp.up_proj.weight", ""};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) CHECK_MSG(dsv3_quantize_is_fp8_weight(yes[i]), "%s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) CHECK_MSG(!dsv3_quantize_is_fp8_weight(no[i]), "%s", no[i]);
    CHECK(!dsv3_quantize_is_fp8_weight(NULL));
}

/* Logits [n, V] (and the residual stream after layer 0, [n, H]) of tokens through model dir. */
static float *run_logits(const char *dir, const int32_t *toks, int64_t n, int64_t *V, float **layer0, int64_t *H) {
    dsv3_error err = {0};
    dsv3_model *m = NULL;
    dsv3_kv_cache *kc = NULL;
    float *logits = NULL, *lo = NULL;
    if (dsv3_model_load(dir, &m, &err) || dsv3_kv_cache_new(m, n + 1, &kc, &err)) {
        test_fail_at(__FILE__, __LINE__, "%s: %s", dir, err.msg);
    } else {
        const dsv3_config *c = dsv3_model_config(m);
        *V = c->vocab_size;
        *H = c->hidden_size;
        logits = malloc(sizeof(float) * (size_t)(n * *V));
        lo = malloc(sizeof(float) * (size_t)(c->num_hidden_layers * n * *H));
        dsv3_batch_item it = {kc, toks, n};
        dsv3_forward_out out = {.logits = logits, .layer_outputs = lo};
        if (dsv3_forward(m, &it, 1, &out, &err)) {
            test_fail_at(__FILE__, __LINE__, "forward %s: %s", dir, err.msg);
            free(logits);
            logits = NULL;
        }
    }
    *layer0 = lo;
    dsv3_kv_cache_free(kc);
    dsv3_model_free(m);
    return logits;
}

/* ||a - b|| / ||b|| */
static double rel_rms(const float *a, const float *b, int64_t n) {
    double d2 = 0, n2 = 0;
    for (int64_t k = 0; k < n; k++) {
        d2 += (double)(a[k] - b[k]) * (a[k] - b[k]);
        n2 += (double)b[k] * b[k];
    }
    return sqrt(d2 / n2);
}

/* Checks the quantised checkpoint q against the original o: projections are
 * FP8 with scale = amax/448 per block and dequantise within FP8 precision,
 * everything else is byte-identical. */
static void check_against_fmt(const char *odir, const char *qdir, int64_t B, int ue8m0, int64_t *n_fp8) {
    dsv3_error err = {0};
    dsv3_checkpoint *co = NULL, *cq = NULL;
    if (dsv3_ckpt_open(odir, &co, &err) || dsv3_ckpt_open(qdir, &cq, &err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err.msg);
        goto out;
    }
    *n_fp8 = 0;
    size_t n_expected = 0;
    for (size_t i = 0; i < dsv3_ckpt_count(co) && !test_failed_now(); i++) {
        const dsv3_tensor_view *o = dsv3_ckpt_tensor(co, i), *q = dsv3_ckpt_find(cq, o->name);
        if (!q || q->numel != o->numel || q->ndim != o->ndim) {
            test_fail_at(__FILE__, __LINE__, "%s: missing or reshaped in the output", o->name);
            break;
        }
        n_expected++;
        if (!dsv3_quantize_is_fp8_weight(o->name)) {
            if (q->dtype != o->dtype || memcmp(q->data, o->data, o->nbytes) != 0)
                test_fail_at(__FILE__, __LINE__, "%s: not copied unchanged (%s -> %s)", o->name,
                             dsv3_dtype_name(o->dtype), dsv3_dtype_name(q->dtype));
            continue;
        }
        char sname[600];
        snprintf(sname, sizeof sname, "%s_scale_inv", o->name);
        const dsv3_tensor_view *s = dsv3_ckpt_find(cq, sname);
        int64_t R = o->shape[0], C = o->shape[1], sr = (R + B - 1) / B, sc = (C + B - 1) / B;
        if (q->dtype != DSV3_F8_E4M3 || !s || s->dtype != DSV3_F32 || s->ndim != 2 || s->shape[0] != sr ||
            s->shape[1] != sc) {
            test_fail_at(__FILE__, __LINE__, "%s: not F8_E4M3 with an F32 [%lld,%lld] scale", o->name, (long long)sr,
                         (long long)sc);
            break;
        }
        n_expected++;
        (*n_fp8)++;
        float *w = malloc(sizeof(float) * o->numel), *scale = malloc(sizeof(float) * (size_t)(sr * sc)),
              *amax = calloc((size_t)(sr * sc), sizeof(float)), *row = malloc(sizeof(float) * (size_t)C);
        dsv3_convert_to_f32(o->dtype, o->data, w, o->numel);
        memcpy(scale, s->data, sizeof(float) * (size_t)(sr * sc));
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) {
                float *a = &amax[(r / B) * sc + c / B];
                *a = fmaxf(*a, fabsf(w[r * C + c]));
            }
        for (int64_t k = 0; k < sr * sc && !test_failed_now(); k++) {
            const float want = fmaxf(amax[k], 1e-12f) / 448.0f;
            /* ue8m0: the smallest power of two >= amax / 448 */
            if (ue8m0 ? !(dsv3_fp8_scale_is_pow2(scale[k]) && scale[k] >= want && scale[k] * 0.5f < want) : scale[k] != want)
                test_fail_at(__FILE__, __LINE__, "%s: scale[%lld] = %g, want %samax/448 = %g", o->name, (long long)k,
                             (double)scale[k], ue8m0 ? "the power of two >= " : "", (double)want);
        }
        dsv3_weight W = {.dtype = DSV3_F8_E4M3, .rows = R, .cols = C, .data = q->data, .scale = scale,
                         .block_r = B, .block_c = B, .scale_rows = sr, .scale_cols = sc};
        for (int64_t r = 0; r < R && !test_failed_now(); r++) {
            dsv3_weight_row_f32(&W, r, row);
            for (int64_t c = 0; c < C; c++) {
                float x = w[r * C + c], S = scale[(r / B) * sc + c / B];
                /* e4m3: 3 mantissa bits -> relative 2^-4; subnormal step 2^-9 * S -> absolute 2^-10 * S */
                double tol = fabs(x) * 0x1p-4 + S * 0x1p-10 + fabs(x) * 1e-6;
                if (fabs(row[c] - x) > tol) {
                    test_fail_at(__FILE__, __LINE__, "%s[%lld,%lld]: dequantised %g vs %g (tol %g)", o->name,
                                 (long long)r, (long long)c, (double)row[c], (double)x, tol);
                    break;
                }
            }
        }
        free(w);
        free(scale);
        free(amax);
        free(row);
    }
    if (!test_failed_now() && dsv3_ckpt_count(cq) != n_expected)
        test_fail_at(__FILE__, __LINE__, "output has %zu tensors, expected %zu", dsv3_ckpt_count(cq), n_expected);
out:
    dsv3_ckpt_close(co);
    dsv3_ckpt_close(cq);
}

static void check_against(const char *odir, const char *qdir, int64_t B, int64_t *n_fp8) {
    check_against_fmt(odir, qdir, B, 0, n_fp8);
}

TEST(quantize_tiny_logits_close) {
    char in[4096], out[4096];
    if (!tiny_dir(in, sizeof in)) SKIP("fixtures absent");
    dsv3_error err = {0};
    dsv3_quantize_result r;
    CHECK_MSG(quantize(in, "q-tiny", 128, 0, out, sizeof out, &r, &err) == DSV3_OK, "%s", err.msg);
    CHECK(r.n_quantized > 0 && r.n_fp8_kept == 0 && r.n_copied > 0 && r.n_shards == 1);
    CHECK(r.out_bytes < r.in_bytes);
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", out);
    dsv3_config c;
    CHECK_MSG(dsv3_config_load(p, &c, &err) == DSV3_OK, "%s", err.msg);
    CHECK(c.fp8 && c.fp8_block[0] == 128 && c.fp8_block[1] == 128 && !c.scale_fmt_ue8m0);
    CHECK(c.vocab_size == 512 && c.num_nextn_predict_layers == 1);
    int64_t n_fp8 = 0;
    check_against(in, out, 128, &n_fp8);
    if (test_failed_now()) return;
    CHECK(n_fp8 == r.n_quantized);
    /* 3 layers x 5 attention projections + (3 + 16*3 + 3)... : every projection incl. the MTP layer's */
    CHECK_MSG(n_fp8 == 176, "%lld FP8 weights", (long long)n_fp8);

    /* FP8 e4m3 keeps 3 mantissa bits (up to 2^-4 relative error per weight). On this random-weight model
     * that is ~4% on the residual stream after the dense layer 0; the MoE layers then amplify it where a
     * perturbed router picks another expert (measured: logits rms 12%, max 21% of max |logit|, per-token
     * cosine >= 0.96, argmax 11/12). The bounds leave room for rounding-order changes, not for a wrong scale or
     * layout (a transposed or mis-scaled block gives errors ~100%). */
    const int32_t toks[12] = {0, 5, 17, 300, 42, 7, 99, 511, 256, 1, 3, 64};
    int64_t V = 0, V2 = 0, H = 0;
    float *hb = NULL, *hq = NULL;
    float *lb = run_logits(in, toks, 12, &V, &hb, &H), *lq = run_logits(out, toks, 12, &V2, &hq, &H);
    if (lb && lq && V == V2) {
        double e = rel_max_err(lq, lb, 12 * V), rms = rel_rms(lq, lb, 12 * V), h0 = rel_rms(hq, hb, 12 * H);
        double min_cos = 1;
        int agree = 0;
        for (int t = 0; t < 12; t++) {
            int ab = 0, aq = 0;
            double dot = 0, nb = 0, nq = 0;
            for (int64_t v = 0; v < V; v++) {
                float b = lb[t * V + v], q = lq[t * V + v];
                if (b > lb[t * V + ab]) ab = (int)v;
                if (q > lq[t * V + aq]) aq = (int)v;
                dot += (double)b * q;
                nb += (double)b * b;
                nq += (double)q * q;
            }
            agree += ab == aq;
            double cs = dot / sqrt(nb * nq);
            if (cs < min_cos) min_cos = cs;
        }
        printf("    FP8 vs BF16: layer-0 output rms rel err %.4f; logits rms rel err %.4f, max rel err %.4f, "
               "min cosine %.5f, argmax agrees on %d/12 tokens\n", h0, rms, e, min_cos, agree);
        CHECK_MSG(h0 < 0.06, "layer-0 output too far from BF16: %g", h0);
        CHECK_MSG(rms < 0.2 && e < 0.35, "FP8 logits too far from BF16: rms %g, max %g", rms, e);
        CHECK_MSG(min_cos > 0.93, "logits cosine %g", min_cos);
        CHECK(agree >= 10);
    } else {
        test_fail_at(__FILE__, __LINE__, "no logits");
    }
    free(lb);
    free(lq);
    free(hb);
    free(hq);
}

static int same_bytes(const dsv3_tensor_view *a, const dsv3_tensor_view *b) {
    return a && b && a->dtype == b->dtype && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
}

/* Logits of the same 6 tokens from checkpoints a and b: rms of (b - a) relative to a (-1 when either fails). */
static double logits_rel_rms(const char *a, const char *b) {
    const int32_t toks[6] = {0, 5, 17, 300, 42, 7};
    int64_t V = 0, V2 = 0, H = 0;
    float *h1 = NULL, *h2 = NULL;
    float *l1 = run_logits(a, toks, 6, &V, &h1, &H), *l2 = run_logits(b, toks, 6, &V2, &h2, &H);
    const double rms = l1 && l2 && V == V2 ? rel_rms(l2, l1, 6 * V) : -1;
    free(l1);
    free(l2);
    free(h1);
    free(h2);
    return rms;
}

/* Every FP8 weight and scale of init-model's checkpoint dq is byte-identical in quantize's qdir: their count. */
static int64_t same_fp8_tensors(const char *dq, const char *qdir, const char *what) {
    dsv3_error err = {0};
    dsv3_checkpoint *cq = NULL, *ci = NULL;
    int64_t same = 0;
    if (dsv3_ckpt_open(qdir, &cq, &err) || dsv3_ckpt_open(dq, &ci, &err)) /* the index maps every tensor */
        test_fail_at(__FILE__, __LINE__, "%s", err.msg);
    for (size_t i = 0; cq && ci && i < dsv3_ckpt_count(ci); i++) {
        const dsv3_tensor_view *a = dsv3_ckpt_tensor(ci, i), *b = dsv3_ckpt_find(cq, a->name);
        if (a->dtype != DSV3_F8_E4M3 && !strstr(a->name, "_scale_inv")) continue;
        if (!same_bytes(a, b)) {
            test_fail_at(__FILE__, __LINE__, "%s differs from %s", a->name, what);
            break;
        }
        same++;
    }
    dsv3_ckpt_close(cq);
    dsv3_ckpt_close(ci);
    return same;
}


/* The tiny fixture's config initialised twice with one seed: F32 into tmp/<f32_sub> (df), FP8 (ue8m0 scales when
 * asked) into tmp/<fp8_sub> (dq). Returns the F32 checkpoint's shard count, 0 on failure (reported). */
static int init_f32_and_fp8(const char *tiny, const char *f32_sub, const char *fp8_sub, uint64_t seed, uint64_t shard_size,
                            int ue8m0, char *df, char *dq, size_t n) {
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", tiny);
    snprintf(df, n, "%s/%s", test_tmp_dir(), f32_sub);
    snprintf(dq, n, "%s/%s", test_tmp_dir(), fp8_sub);
    dsv3_init_opts o;
    dsv3_init_opts_default(&o);
    o.seed = seed;
    o.shard_size = shard_size;
    o.overwrite = 1;
    dsv3_error err = {0};
    dsv3_init_result ir;
    o.dtype = DSV3_INIT_F32;
    if (dsv3_init_model(cfg, df, &o, &ir, &err)) { test_fail_at(__FILE__, __LINE__, "%s", err.msg); return 0; }
    const int shards = ir.n_shards;
    o.dtype = DSV3_INIT_FP8;
    o.ue8m0_scales = ue8m0;
    if (dsv3_init_model(cfg, dq, &o, &ir, &err)) { test_fail_at(__FILE__, __LINE__, "%s", err.msg); return 0; }
    return shards;
}

/* F32 input: quantize gives exactly init-model's --dtype fp8 bytes for the same seed
 * (same values, same encoder); sharded input gives a sharded output with an index. */
TEST(quantize_sharded_f32_matches_init_fp8) {
    char tiny[4096], df[4200], dq[4200], out[4096];
    if (!tiny_dir(tiny, sizeof tiny)) SKIP("fixtures absent");
    const int in_shards = init_f32_and_fp8(tiny, "qi-f32", "qi-fp8", 5, 150000, 0, df, dq, sizeof df);
    CHECK(in_shards > 2);
    dsv3_error err = {0};
    /* a tokenizer file next to the weights is copied */
    char p[4300];
    snprintf(p, sizeof p, "%s/tokenizer.json", df);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    fputs("{\"model\": {\"type\": \"BPE\"}}\n", f);
    fclose(f);

    dsv3_quantize_result r;
    CHECK_MSG(quantize(df, "q-sharded", 128, 0, out, sizeof out, &r, &err) == DSV3_OK, "%s", err.msg);
    CHECK(r.n_shards == in_shards && r.n_tokenizer_files == 1);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", out);
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/model-00001-of-%05d.safetensors", out, in_shards);
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/tokenizer.json", out);
    CHECK(access(p, F_OK) == 0);
    int64_t n_fp8 = 0;
    check_against(df, out, 128, &n_fp8);
    if (test_failed_now()) return;
    CHECK(n_fp8 == 176);

    CHECK(same_fp8_tensors(dq, out, "init-model --dtype fp8") == 2 * 176);
    dsv3_model *m = NULL;
    CHECK_MSG(dsv3_model_load(out, &m, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_model_has_mtp(m) && dsv3_model_config(m)->fp8);
    dsv3_model_free(m);
}

/* Already-FP8 input: the weights and scales are kept bit for bit; another block size is refused. */
TEST(quantize_fp8_input_passthrough) {
    char in[4096], q1[4096], q2[4096], q3[4096];
    if (!tiny_dir(in, sizeof in)) SKIP("fixtures absent");
    dsv3_error err = {0};
    dsv3_quantize_result r;
    CHECK_MSG(quantize(in, "qp-1", 128, 0, q1, sizeof q1, &r, &err) == DSV3_OK, "%s", err.msg);
    CHECK_MSG(quantize(q1, "qp-2", 128, 0, q2, sizeof q2, &r, &err) == DSV3_OK, "%s", err.msg);
    CHECK(r.n_quantized == 0 && r.n_fp8_kept == 176);
    dsv3_checkpoint *a = NULL, *b = NULL;
    CHECK(dsv3_ckpt_open(q1, &a, &err) == DSV3_OK);
    CHECK(dsv3_ckpt_open(q2, &b, &err) == DSV3_OK);
    CHECK(dsv3_ckpt_count(a) == dsv3_ckpt_count(b));
    for (size_t i = 0; i < dsv3_ckpt_count(a); i++)
        if (!same_bytes(dsv3_ckpt_tensor(a, i), dsv3_ckpt_find(b, dsv3_ckpt_tensor(a, i)->name))) {
            test_fail_at(__FILE__, __LINE__, "%s changed", dsv3_ckpt_tensor(a, i)->name);
            break;
        }
    dsv3_ckpt_close(a);
    dsv3_ckpt_close(b);
    CHECK(quantize(q1, "qp-3", 64, 0, q3, sizeof q3, &r, &err) == DSV3_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "already FP8") != NULL, "%s", err.msg);
    /* a BF16 input with another block size works: 64x64 scales */
    CHECK_MSG(quantize(in, "qp-64", 64, 0, q3, sizeof q3, &r, &err) == DSV3_OK, "%s", err.msg);
    int64_t n_fp8 = 0;
    check_against(in, q3, 64, &n_fp8);
    CHECK(n_fp8 == 176);
    /* --scale-fmt ue8m0 keeps FP8 weights only when their scales are powers of two already (the config would
     * otherwise promise what the scales are not) */
    dsv3_quantize_opts o;
    dsv3_quantize_opts_default(&o);
    o.ue8m0_scales = 1;
    snprintf(q3, sizeof q3, "%s/qp-ue8m0-from-float", test_tmp_dir());
    CHECK(dsv3_quantize_fp8(q1, q3, &o, &r, &err) == DSV3_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "not all powers of two") != NULL, "%s", err.msg);
    snprintf(q2, sizeof q2, "%s/qp-ue8m0", test_tmp_dir());
    CHECK_MSG(dsv3_quantize_fp8(in, q2, &o, &r, &err) == DSV3_OK, "%s", err.msg);
    snprintf(q3, sizeof q3, "%s/qp-ue8m0-kept", test_tmp_dir());
    CHECK_MSG(dsv3_quantize_fp8(q2, q3, &o, &r, &err) == DSV3_OK, "%s", err.msg);
    CHECK(r.n_quantized == 0 && r.n_fp8_kept == 176);
}

/* Copies the tiny checkpoint into dir with tensor `name` element 3 replaced by NaN. */
static int write_with_nan(const char *tiny, const char *dir, const char *name) {
    char p[4300];
    dsv3_error err = {0};
    dsv3_st_file *f = NULL;
    snprintf(p, sizeof p, "%s/model.safetensors", tiny);
    if (dsv3_st_open(p, &f, &err)) return -1;
    dsv3_st_writer *w = dsv3_st_writer_new();
    int rc = 0;
    for (size_t i = 0; i < dsv3_st_count(f) && !rc; i++) {
        const dsv3_tensor_view *t = dsv3_st_tensor(f, i);
        void *d = malloc(t->nbytes + 1);
        memcpy(d, t->data, t->nbytes);
        if (!strcmp(t->name, name) && t->dtype == DSV3_BF16) ((uint16_t *)d)[3] = 0x7fc0;
        rc = dsv3_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, d, &err) != DSV3_OK;
        free(d);
    }
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (!rc) rc = dsv3_st_writer_save(w, p, &err) != DSV3_OK;
    dsv3_st_writer_free(w);
    dsv3_st_close(f);
    char src[4300], dst[4300], buf[1 << 14];
    snprintf(src, sizeof src, "%s/config.json", tiny);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    size_t n;
    if (!a || !b) rc = -1;
    else
        while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    if (a) fclose(a);
    if (b) fclose(b);
    return rc;
}

TEST(quantize_errors) {
    char in[4096], out[4096], p[4400], bad[4300];
    if (!tiny_dir(in, sizeof in)) SKIP("fixtures absent");
    dsv3_error err = {0};
    dsv3_quantize_result r;
    /* missing input */
    CHECK(quantize("/nonexistent/model", "qe-1", 128, 0, out, sizeof out, &r, &err) == DSV3_ERR_NOT_FOUND);
    CHECK_MSG(strstr(err.msg, "/nonexistent/model") != NULL, "%s", err.msg);
    /* directory without a checkpoint */
    snprintf(bad, sizeof bad, "%s/qe-empty", test_tmp_dir());
    mkdir(bad, 0755);
    CHECK(quantize(bad, "qe-2", 128, 0, out, sizeof out, &r, &err) != DSV3_OK);
    CHECK_MSG(strstr(err.msg, "config.json") != NULL, "%s", err.msg);
    /* truncated model.safetensors */
    snprintf(bad, sizeof bad, "%s/qe-trunc", test_tmp_dir());
    CHECK(write_with_nan(in, bad, "") == 0);
    snprintf(p, sizeof p, "%s/model.safetensors", bad);
    CHECK(truncate(p, 5000) == 0);
    CHECK(quantize(bad, "qe-3", 128, 0, out, sizeof out, &r, &err) == DSV3_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "model.safetensors") != NULL, "%s", err.msg);
    snprintf(p, sizeof p, "%s/config.json", out);
    CHECK_MSG(access(p, F_OK) != 0, "a failed quantize left %s behind", p);
    /* non-finite weight */
    snprintf(bad, sizeof bad, "%s/qe-nan", test_tmp_dir());
    CHECK(write_with_nan(in, bad, "model.layers.1.self_attn.o_proj.weight") == 0);
    CHECK(quantize(bad, "qe-4", 128, 0, out, sizeof out, &r, &err) == DSV3_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "o_proj") && strstr(err.msg, "non-finite") && strstr(err.msg, "[0,3]"), "%s", err.msg);
    /* output = input */
    CHECK(quantize(in, "qe-5", 128, 0, out, sizeof out, &r, &err) == DSV3_OK);
    CHECK(dsv3_quantize_fp8(out, out, &(dsv3_quantize_opts){.block = 128, .overwrite = 1}, &r, &err) ==
          DSV3_ERR_INVALID);
    CHECK_MSG(strstr(err.msg, "is the input directory") != NULL, "%s", err.msg);
    /* existing checkpoint: refused without overwrite, replaced with it */
    CHECK(quantize(in, "qe-5", 128, 0, out, sizeof out, &r, &err) == DSV3_ERR_INVALID);
    CHECK_MSG(strstr(err.msg, "already holds a checkpoint") && strstr(err.msg, "--force"), "%s", err.msg);
    CHECK_MSG(quantize(in, "qe-5", 128, 1, out, sizeof out, &r, &err) == DSV3_OK, "%s", err.msg);
    /* bad block size */
    CHECK(quantize(in, "qe-6", 0, 0, out, sizeof out, &r, &err) == DSV3_ERR_INVALID);
    /* CLI */
    snprintf(out, sizeof out, "%s/qe-cli", test_tmp_dir());
    char *a1[] = {"quantize", "--model", in, "--out", out, "--to", "bf16", NULL};
    CHECK(test_run_cli(cmd_quantize, 7, a1, NULL) == 2);
    char *a2[] = {"quantize", "--model", in, "--out", out, NULL};
    CHECK(test_run_cli(cmd_quantize, 5, a2, NULL) == 2);
    char *a3[] = {"quantize", "--model", in, "--out", out, "--to", "fp8", "--block", "x", NULL};
    CHECK(test_run_cli(cmd_quantize, 9, a3, NULL) == 2);
    char *a4[] = {"quantize", "--model", in, "--out", out, "--to", "fp8", "-q", "-t", "2", NULL};
    CHECK(test_run_cli(cmd_quantize, 10, a4, NULL) == 0);
    CHECK(test_run_cli(cmd_quantize, 10, a4, NULL) == 1); /* exists now */
    char *a5[] = {"quantize", "--model", in, "--out", out, "--to", "fp8", "-q", "--force", NULL};
    CHECK(test_run_cli(cmd_quantize, 9, a5, NULL) == 0);
    char *a6[] = {"quantize", "--model", in, "--out", out, "--to", "fp8", "--scale-fmt", "e8m0", NULL};
    CHECK(test_run_cli(cmd_quantize, 9, a6, NULL) == 2);
    char *a7[] = {"quantize", "--model", in, "--out", out, "--to", "fp8", "-q", "--force", "--scale-fmt", "ue8m0", NULL};
    CHECK(test_run_cli(cmd_quantize, 11, a7, NULL) == 0);
}

/* fp8_lm_head: lm_head.weight becomes F8_E4M3 + scale too (one more FP8 weight than the default), the
 * model loads, and its logits stay close to the default FP8 checkpoint's (only the head's rounding
 * differs: a few % of the logits' rms). */
TEST(quantize_fp8_lm_head_option) {
    char in[4096], out[4096], out2[4096];
    if (!tiny_dir(in, sizeof in)) SKIP("fixtures absent");
    dsv3_error err = {0};
    dsv3_quantize_result r, r2;
    CHECK_MSG(quantize(in, "q-tiny-head-default", 128, 1, out, sizeof out, &r, &err) == DSV3_OK, "%s", err.msg);
    snprintf(out2, sizeof out2, "%s/q-tiny-head-fp8", test_tmp_dir());
    dsv3_quantize_opts o;
    dsv3_quantize_opts_default(&o);
    o.overwrite = 1;
    o.fp8_lm_head = 1;
    CHECK_MSG(dsv3_quantize_fp8(in, out2, &o, &r2, &err) == DSV3_OK, "%s", err.msg);
    CHECK_MSG(r2.n_quantized == r.n_quantized + 1, "%lld vs %lld quantised", (long long)r2.n_quantized,
              (long long)r.n_quantized);
    CHECK(r2.out_bytes < r.out_bytes);
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", out2);
    dsv3_st_file *f = NULL;
    CHECK_MSG(dsv3_st_open(p, &f, &err) == DSV3_OK, "%s", err.msg);
    const dsv3_tensor_view *h = dsv3_st_find(f, "lm_head.weight"), *hs = dsv3_st_find(f, "lm_head.weight_scale_inv");
    CHECK(h && h->dtype == DSV3_F8_E4M3 && hs && hs->dtype == DSV3_F32);
    dsv3_st_close(f);
    const double rms = logits_rel_rms(out, out2);
    printf("    FP8 lm_head vs BF16 lm_head (FP8 checkpoints): logits rms rel err %.4f\n", rms);
    CHECK_MSG(rms > 0 && rms < 0.1, "logits rms rel err %g", rms);
}

/* --scale-fmt ue8m0: every block scale is the power of two at or above amax / 448 (DeepSeek-V3.1's format), the
 * config says so, init-model --dtype fp8 with the same option writes the same bytes from the same seed, and
 * the logits stay as close to the float-scale checkpoint's as FP8 allows. */
TEST(quantize_ue8m0_scales) {
    char tiny[4096], df[4200], dq[4200], out[4300], outf[4300];
    if (!tiny_dir(tiny, sizeof tiny)) SKIP("fixtures absent");
    if (!init_f32_and_fp8(tiny, "qu-f32", "qu-fp8", 9, 0, 1, df, dq, sizeof df)) return;
    snprintf(out, sizeof out, "%s/qu-q", test_tmp_dir());
    dsv3_error err = {0};
    dsv3_quantize_opts o;
    dsv3_quantize_opts_default(&o);
    o.overwrite = 1;
    o.ue8m0_scales = 1;
    dsv3_quantize_result r;
    CHECK_MSG(dsv3_quantize_fp8(df, out, &o, &r, &err) == DSV3_OK, "%s", err.msg);
    int64_t n_fp8 = 0;
    check_against_fmt(df, out, 128, 1, &n_fp8);
    if (test_failed_now()) return;
    CHECK(n_fp8 == 176);
    char p[4400];
    dsv3_config c;
    snprintf(p, sizeof p, "%s/config.json", out);
    CHECK_MSG(dsv3_config_load(p, &c, &err) == DSV3_OK, "%s", err.msg);
    CHECK(c.fp8 && c.scale_fmt_ue8m0);
    snprintf(p, sizeof p, "%s/config.json", dq);
    CHECK_MSG(dsv3_config_load(p, &c, &err) == DSV3_OK, "%s", err.msg);
    CHECK(c.fp8 && c.scale_fmt_ue8m0);
    CHECK(same_fp8_tensors(dq, out, "init-model --dtype fp8 --scale-fmt ue8m0") == 2 * 176);
    /* logits: ue8m0 vs float scales, both from the same F32 weights */
    snprintf(outf, sizeof outf, "%s/qu-qf", test_tmp_dir());
    o.ue8m0_scales = 0;
    CHECK_MSG(dsv3_quantize_fp8(df, outf, &o, &r, &err) == DSV3_OK, "%s", err.msg);
    const double rms = logits_rel_rms(outf, out);
    printf("    FP8 ue8m0 vs float scales: logits rms rel err %.4f\n", rms);
    CHECK_MSG(rms > 0 && rms < 0.2, "logits rms rel err %g", rms);
}
