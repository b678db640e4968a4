/* Decode benchmark:
 *   build/bench_decode --model DIR [--ctx N[,N...]=32] [--gen N=64] [-t threads] [--repeat R=1] [--seed S=1]
 *                      [--membw-mib M=1024]
 *
 * Loads the model, then R times: prefills the largest context N of seeded
 * random tokens into a fresh KV cache (logits for the last row only) and
 * greedily decodes --gen tokens one at a time through the cache; then, for
 * each smaller N of the list, truncates the cache back to N tokens and times
 * --gen decode steps from there (the first N cache rows are exactly a prefill
 * of N tokens). Also measures the machine's read bandwidth with the
 * bench_membw kernel (bench/membw.h), interleaved with the decode runs: two
 * passes over its buffer right after every timed decode run, so that each
 * decode speed is compared with the bandwidth of the same moment (on shared
 * machines the bandwidth moves by 2x within minutes), and the weight bytes one
 * decode step reads; prints decode tok/s, ms/token, effective GB/s and the
 * share of the bandwidth per context (medians over the repeats of decode speed
 * and of the per-run share), prefill tok/s, load time, peak RSS (VmHWM, less
 * the bandwidth buffer) and the thread count: a human-readable block, then one
 * JSON line. --prompt N is the old name of --ctx N. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_args.h"
#include "dsv3/clock.h"
#include "dsv3/model.h"
#include "dsv3/safetensors.h"
#include "dsv3/sampling.h"
#include "membw.h"

#define MAX_CTX 8

/* Peak resident set size in MiB from /proc/self/status (VmHWM); -1 if unavailable. */
static double peak_rss_mib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) { kb = strtod(line + 6, NULL); break; }
    fclose(f);
    return kb < 0 ? -1 : kb / 1024.0;
}

/* "64,4096" -> ascending unique list; 0 on success. */
static int parse_ctx_list(const char *s, long *ctx, int *n) {
    long v[MAX_CTX];
    int m;
    if (bench_parse_list(s, 1, 1 << 20, MAX_CTX, v, &m)) return -1;
    *n = 0;
    for (int i = 0; i < m; i++) { /* insertion into the sorted list, duplicates dropped */
        int k = *n;
        while (k > 0 && ctx[k - 1] > v[i]) k--;
        if (k > 0 && ctx[k - 1] == v[i]) continue;
        memmove(ctx + k + 1, ctx + k, sizeof(long) * (size_t)(*n - k));
        ctx[k] = v[i];
        (*n)++;
    }
    return 0;
}

/* Bytes of the weights one decode step of the main model reads: every tensor of
 * the main layers, the final norm, lm_head and one embedding row, with each
 * routed expert counted at its expected share K/E (scales included; MTP
 * layers excluded: plain decode does not run them). */
static double weight_bytes_per_token(const dsv3_checkpoint *ck, const dsv3_config *c) {
    double total = 0;
    const double share = c->n_routed_experts > 0 ? (double)c->num_experts_per_tok / (double)c->n_routed_experts : 0;
    for (size_t i = 0; i < dsv3_ckpt_count(ck); i++) {
        const dsv3_tensor_view *t = dsv3_ckpt_tensor(ck, i);
        long long layer;
        int off = 0;
        if (!strcmp(t->name, "model.embed_tokens.weight")) {
            total += t->ndim == 2 && t->shape[0] > 0 ? (double)t->nbytes / (double)t->shape[0] : 0;
            if (c->tie_word_embeddings && !dsv3_ckpt_find(ck, "lm_head.weight")) total += (double)t->nbytes;
        } else if (!strcmp(t->name, "lm_head.weight") || !strcmp(t->name, "model.norm.weight")) {
            total += (double)t->nbytes;
        } else if (sscanf(t->name, "model.layers.%lld.%n", &layer, &off) == 1 && off > 0 && layer >= 0 &&
                   layer < c->num_hidden_layers) {
            total += strstr(t->name + off, "mlp.experts.") == t->name + off ? (double)t->nbytes * share
                                                                            : (double)t->nbytes;
        }
    }
    return total;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_decode --model DIR [--ctx N[,N...]] [--gen N] [-t threads] [--repeat R] [--seed S]\n"
               "                    [--membw-mib M] [--kv-dtype f32|bf16]\n"
               "  --ctx N,...    context lengths to decode at: the largest is prefilled, the others are\n"
               "                 truncations of it (default 32; --prompt N is the same as --ctx N)\n"
               "  --gen N        tokens to decode one at a time per context (default 64)\n"
               "  -t N           threads (default: all cores)\n"
               "  --repeat R     runs; speeds are medians over them (default 1)\n"
               "  --seed S       seed of the random prompt (default 1)\n"
               "  --membw-mib M  buffer of the read-bandwidth measurement (default 1024; 0 = skip)\n"
               "  --kv-dtype T   KV cache storage: f32 (default) or bf16 (half the bytes)\n");
}
/* Writes s as a JSON string body (escapes quotes, backslashes, control chars). */
static void json_str(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

int main(int argc, char **argv) {
    const char *model_dir = NULL;
    long ctx[MAX_CTX] = {32}, n_gen = 64, threads = 0, repeat = 1, seed = 1, membw_mib = 1024;
    dsv3_dtype kv_dtype = DSV3_F32;
    int n_ctx = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!v) bad = 1;
        else if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--prompt") || !strcmp(a, "--ctx")) bad = parse_ctx_list(v, ctx, &n_ctx);
        else if (!strcmp(a, "--gen")) bad = bench_parse_long(v, 0, 1 << 20, &n_gen);
        else if (!strcmp(a, "-t")) bad = bench_parse_long(v, 0, 4096, &threads);
        else if (!strcmp(a, "--repeat")) bad = bench_parse_long(v, 1, 1000, &repeat);
        else if (!strcmp(a, "--seed")) bad = bench_parse_long(v, 0, INT32_MAX, &seed);
        else if (!strcmp(a, "--membw-mib")) bad = bench_parse_long(v, 0, 1 << 20, &membw_mib);
        else if (!strcmp(a, "--kv-dtype")) bad = dsv3_kv_dtype_parse(v, &kv_dtype) != 0;
        else bad = 1;
        if (bad) {
            fprintf(stderr, "bench_decode: bad or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!model_dir) { usage(stderr); return 2; }
    if (threads > 0) omp_set_num_threads((int)threads);
    int nthreads = omp_get_max_threads();
    const long n_prompt = ctx[n_ctx - 1]; /* the largest context is the one prefilled */

    dsv3_error err = {0};
    dsv3_model *m = NULL;
    dsv3_checkpoint *ck = NULL;
    double t0 = dsv3_now_s();
    if (dsv3_model_load(model_dir, &m, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        return 1;
    }
    double load_s = dsv3_now_s() - t0;
    if (dsv3_model_set_kv_dtype(m, kv_dtype, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        dsv3_model_free(m);
        return 1;
    }
    const dsv3_config *c = dsv3_model_config(m);
    const int64_t V = c->vocab_size;
    if (dsv3_ckpt_open(model_dir, &ck, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        dsv3_model_free(m);
        return 1;
    }
    const double wbytes = weight_bytes_per_token(ck, c);
    dsv3_ckpt_close(ck);
    /* cache rows one decode step reads per layer: [c_KV ; k_R] for every cached token */
    const double kv_row_bytes = (double)c->num_hidden_layers * (double)(c->kv_lora_rank + c->qk_rope_head_dim) *
                                (double)dsv3_dtype_size(kv_dtype);

    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)n_prompt), *gen = malloc(sizeof(int32_t) * (size_t)(n_gen + 1));
    float *logits = malloc(sizeof(float) * (size_t)V);
    uint8_t *mask = calloc((size_t)n_prompt, 1);
    double *pf = malloc(sizeof(double) * (size_t)repeat), *dec = malloc(sizeof(double) * (size_t)(repeat * n_ctx)),
           *bwr = malloc(sizeof(double) * (size_t)(repeat * n_ctx)), *share = malloc(sizeof(double) * (size_t)(repeat * n_ctx));
    if (!prompt || !gen || !logits || !mask || !pf || !dec || !bwr || !share) {
        fprintf(stderr, "bench_decode: out of memory\n");
        return 1;
    }
    /* the bandwidth buffer, allocated and touched once (its pages are left out of the peak RSS) */
    membw_buf bwb = {0};
    double bw_sum = 0;
    if (membw_mib > 0 && membw_buf_init(&bwb, (uint64_t)membw_mib << 20, nthreads)) {
        fprintf(stderr, "bench_decode: no memory for the bandwidth measurement; skipped\n");
        memset(&bwb, 0, sizeof bwb);
    }
    if (bwb.buf) (void)membw_pass(&bwb, &bw_sum); /* warm-up */
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)seed;
    for (long i = 0; i < n_prompt; i++) prompt[i] = (int32_t)(dsv3_rand_uniform(&rng) * (double)V) % (int32_t)V;
    mask[n_prompt - 1] = 1;

    uint64_t checksum[MAX_CTX] = {0};
    int32_t first_id = -1;
    int rc = 0;
    for (long r = 0; r < repeat && !rc; r++) {
        dsv3_kv_cache *kc = NULL;
        if (dsv3_kv_cache_new(m, n_prompt + n_gen + 1, &kc, &err)) { rc = 1; break; }
        dsv3_batch_item it = {kc, prompt, n_prompt};
        /* only the last prompt row's logits, packed into a [1, vocab] buffer (as llama-bench pp) */
        dsv3_forward_out out = {.logits = logits, .logits_mask = mask, .logits_packed = 1};
        double a = dsv3_now_s();
        if (dsv3_forward(m, &it, 1, &out, &err)) rc = 1;
        pf[r] = n_prompt / (dsv3_now_s() - a);
        for (int ci = n_ctx - 1; ci >= 0 && !rc; ci--) { /* largest first: truncation keeps rows < ctx */
            int32_t tok;
            if (ci == n_ctx - 1) {
                tok = dsv3_argmax(logits, V);
            } else {
                dsv3_kv_cache_truncate(kc, ctx[ci], 0);
                tok = prompt[ctx[ci]]; /* the context's next token */
            }
            gen[0] = tok;
            double b = dsv3_now_s();
            for (long i = 0; i < n_gen && !rc; i++) { /* each step: feed the last token, pick the next */
                dsv3_batch_item step = {kc, &tok, 1};
                dsv3_forward_out o1 = {.logits = logits};
                if (dsv3_forward(m, &step, 1, &o1, &err)) rc = 1;
                tok = dsv3_argmax(logits, V);
                gen[i + 1] = tok;
            }
            double d = dsv3_now_s();
            dec[ci * repeat + r] = n_gen > 0 ? n_gen / (d - b) : 0;
            if (bwb.buf) { /* the bandwidth of this moment: best of two passes */
                double g0 = membw_pass(&bwb, &bw_sum), g1 = membw_pass(&bwb, &bw_sum);
                bwr[ci * repeat + r] = g0 > g1 ? g0 : g1;
                share[ci * repeat + r] = wbytes * dec[ci * repeat + r] / 1e9 / bwr[ci * repeat + r];
            }
            uint64_t h = 1469598103934665603ull; /* FNV-1a of the generated ids: equal across repeats */
            for (long i = 0; i <= n_gen; i++) h = (h ^ (uint32_t)gen[i]) * 1099511628211ull;
            if (r > 0 && h != checksum[ci])
                fprintf(stderr, "bench_decode: warning: repeat %ld generated different tokens at ctx %ld\n", r, ctx[ci]);
            checksum[ci] = h;
            if (ci == n_ctx - 1) first_id = gen[0];
        }
        dsv3_kv_cache_free(kc);
    }
    /* the buffer stays resident from its first touch on: the peak without it is the peak less its size */
    double rss = peak_rss_mib() - (bwb.buf ? (double)membw_buf_bytes(&bwb) / 1048576.0 : 0);
    const int have_bw = bwb.buf != NULL;
    double bw_med = 0, bw_best = 0, share_med[MAX_CTX] = {0};
    if (have_bw && !rc) {
        for (long k = 0; k < repeat * n_ctx; k++) bw_best = bwr[k] > bw_best ? bwr[k] : bw_best;
        for (int ci = 0; ci < n_ctx; ci++) share_med[ci] = dsv3_median(share + ci * repeat, (int)repeat);
        bw_med = dsv3_median(bwr, (int)(repeat * n_ctx)); /* sorts: after the best */
    }
    if (rc) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
    } else {
        double pf_med = dsv3_median(pf, (int)repeat);
        double dec_med[MAX_CTX];
        for (int ci = 0; ci < n_ctx; ci++) dec_med[ci] = dsv3_median(dec + ci * repeat, (int)repeat);
        const int L = n_ctx - 1;
        printf("model          %s (%lld layers, hidden %lld, vocab %lld, %s weights)\n", model_dir,
               (long long)c->num_hidden_layers, (long long)c->hidden_size, (long long)V, c->fp8 ? "fp8" : "bf16/f32");
        printf("threads        %d\n", nthreads);
        printf("kv cache       %s\n", dsv3_dtype_name(kv_dtype));
        printf("load           %.3f s\n", load_s);
        printf("prefill        %ld tokens: %.1f tok/s (median of %ld)\n", n_prompt, pf_med, repeat);
        printf("weights/token  %.1f MB read per decoded token (dense + attention + lm_head + K/E of the experts)\n",
               wbytes / 1e6);
        if (have_bw)
            printf("memory read bw %.2f GB/s median, %.2f best of %ld measurements between the decode runs "
                   "(%.0f MiB buffer, %s, %d threads)\n",
                   bw_med, bw_best, repeat * n_ctx, membw_buf_bytes(&bwb) / 1048576.0, membw_isa(), bwb.threads);
        for (int ci = 0; ci < n_ctx; ci++) {
            double gbs = wbytes * dec_med[ci] / 1e9, kv = kv_row_bytes * (double)ctx[ci];
            printf("decode @%-6ld %ld tokens: %.2f tok/s, %.2f ms/token; %.2f GB/s of weights", ctx[ci], n_gen,
                   dec_med[ci], dec_med[ci] > 0 ? 1000.0 / dec_med[ci] : 0, gbs);
            if (have_bw) printf(" = %.1f%% of the bw measured after each run (median)", 100.0 * share_med[ci]);
            printf(" (+ %.1f MB KV cache/token: %.2f GB/s)\n", kv / 1e6, (wbytes + kv) * dec_med[ci] / 1e9);
        }
        printf("peak RSS       %.1f MiB\n", rss);
        printf("tokens hash    %016llx (first generated id %d)\n", (unsigned long long)checksum[L], first_id);
        double gbs_l = wbytes * dec_med[L] / 1e9;
        printf("{\"bench\":\"decode\",\"model\":\"");
        json_str(stdout, model_dir);
        printf("\",\"fp8\":%s,\"kv_dtype\":\"%s\",\"threads\":%d,\"prompt\":%ld,\"gen\":%ld,\"repeat\":%ld,\"load_s\":%.4f,"
               "\"prefill_tok_s\":%.3f,\"decode_tok_s\":%.4f,\"decode_ms_per_tok\":%.4f,\"weight_bytes_per_tok\":%.0f,"
               "\"membw_gb_s\":%.3f,\"membw_best_gb_s\":%.3f,\"decode_gb_s\":%.3f,\"decode_pct_membw\":%.2f,\"by_ctx\":[",
               c->fp8 ? "true" : "false", dsv3_dtype_name(kv_dtype), nthreads, n_prompt, n_gen, repeat, load_s, pf_med, dec_med[L],
               dec_med[L] > 0 ? 1000.0 / dec_med[L] : 0, wbytes, bw_med, bw_best, gbs_l, 100.0 * share_med[L]);
        for (int ci = 0; ci < n_ctx; ci++) {
            double gbs = wbytes * dec_med[ci] / 1e9, kv = kv_row_bytes * (double)ctx[ci];
            printf("%s{\"ctx\":%ld,\"decode_tok_s\":%.4f,\"decode_ms_per_tok\":%.4f,\"decode_gb_s\":%.3f,"
                   "\"decode_pct_membw\":%.2f,\"kv_bytes_per_tok\":%.0f,\"decode_gb_s_incl_kv\":%.3f,"
                   "\"tokens_hash\":\"%016llx\"}",
                   ci ? "," : "", ctx[ci], dec_med[ci], dec_med[ci] > 0 ? 1000.0 / dec_med[ci] : 0, gbs,
                   100.0 * share_med[ci], kv, (wbytes + kv) * dec_med[ci] / 1e9,
                   (unsigned long long)checksum[ci]);
        }
        printf("],\"peak_rss_mib\":%.1f,\"tokens_hash\":\"%016llx\"}\n", rss, (unsigned long long)checksum[L]);
    }
    free(prompt);
    free(gen);
    free(logits);
    free(mask);
    free(pf);
    free(dec);
    free(bwr);
    free(share);
    membw_buf_free(&bwb);
    dsv3_model_free(m);
    return rc;
}
