/* Decode benchmark:
 *   build/bench_decode --model DIR [--prompt N=32] [--gen N=64] [-t threads] [--repeat R=1] [--seed S=1]
 *
 * Loads the model, then R times: prefills N seeded random prompt tokens into a
 * fresh KV cache (logits for the last row only) and greedily decodes --gen
 * tokens one at a time through the cache. Prints prefill tok/s, decode tok/s
 * and ms/token (medians over the repeats), load time, peak RSS (VmHWM) and the
 * thread count: a human-readable block, then one JSON line. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsv3/clock.h"
#include "dsv3/model.h"
#include "dsv3/sampling.h"

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

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_decode --model DIR [--prompt N] [--gen N] [-t threads] [--repeat R] [--seed S]\n"
               "  --prompt N   prompt tokens to prefill (default 32)\n"
               "  --gen N      tokens to decode one at a time (default 64)\n"
               "  -t N         threads (default: all cores)\n"
               "  --repeat R   runs; speeds are medians over them (default 1)\n"
               "  --seed S     seed of the random prompt (default 1)\n");
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
    long n_prompt = 32, n_gen = 64, threads = 0, repeat = 1, seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!v) bad = 1;
        else if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--prompt")) bad = parse_int(v, 1, 1 << 20, &n_prompt);
        else if (!strcmp(a, "--gen")) bad = parse_int(v, 0, 1 << 20, &n_gen);
        else if (!strcmp(a, "-t")) bad = parse_int(v, 0, 4096, &threads);
        else if (!strcmp(a, "--repeat")) bad = parse_int(v, 1, 1000, &repeat);
        else if (!strcmp(a, "--seed")) bad = parse_int(v, 0, INT32_MAX, &seed);
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

    dsv3_error err = {0};
    dsv3_model *m = NULL;
    double t0 = dsv3_now_s();
    if (dsv3_model_load(model_dir, &m, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
        return 1;
    }
    double load_s = dsv3_now_s() - t0;
    const dsv3_config *c = dsv3_model_config(m);
    const int64_t V = c->vocab_size;

    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)n_prompt), *gen = malloc(sizeof(int32_t) * (size_t)(n_gen + 1));
    float *logits = malloc(sizeof(float) * (size_t)V);
    uint8_t *mask = calloc((size_t)n_prompt, 1);
    double *pf = malloc(sizeof(double) * (size_t)repeat), *dec = malloc(sizeof(double) * (size_t)repeat);
    if (!prompt || !gen || !logits || !mask || !pf || !dec) { fprintf(stderr, "bench_decode: out of memory\n"); return 1; }
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)seed;
    for (long i = 0; i < n_prompt; i++) prompt[i] = (int32_t)(dsv3_rand_uniform(&rng) * (double)V) % (int32_t)V;
    mask[n_prompt - 1] = 1;

    /* Prefill writes only the last row's logits (mask), but at its row offset: full-size buffer. */
    float *prefill_logits = malloc(sizeof(float) * (size_t)V * (size_t)n_prompt);
    if (!prefill_logits) { fprintf(stderr, "bench_decode: out of memory\n"); return 1; }
    uint64_t checksum = 0;
    int rc = 0;
    for (long r = 0; r < repeat && !rc; r++) {
        dsv3_kv_cache *kc = NULL;
        if (dsv3_kv_cache_new(m, n_prompt + n_gen + 1, &kc, &err)) { rc = 1; break; }
        dsv3_batch_item it = {kc, prompt, n_prompt};
        dsv3_forward_out out = {.logits = prefill_logits, .logits_mask = mask};
        double a = dsv3_now_s();
        if (dsv3_forward(m, &it, 1, &out, &err)) rc = 1;
        double b = dsv3_now_s();
        int32_t tok = dsv3_argmax(prefill_logits + (n_prompt - 1) * V, V);
        gen[0] = tok;
        for (long i = 0; i < n_gen && !rc; i++) { /* each step: feed the last token, pick the next */
            dsv3_batch_item step = {kc, &tok, 1};
            dsv3_forward_out o1 = {.logits = logits};
            if (dsv3_forward(m, &step, 1, &o1, &err)) rc = 1;
            tok = dsv3_argmax(logits, V);
            gen[i + 1] = tok;
        }
        double d = dsv3_now_s();
        pf[r] = n_prompt / (b - a);
        dec[r] = n_gen > 0 ? n_gen / (d - b) : 0;
        uint64_t h = 1469598103934665603ull; /* FNV-1a of the generated ids: equal across repeats */
        for (long i = 0; i <= n_gen; i++) h = (h ^ (uint32_t)gen[i]) * 1099511628211ull;
        if (r > 0 && h != checksum) fprintf(stderr, "bench_decode: warning: repeat %ld generated different tokens\n", r);
        checksum = h;
        dsv3_kv_cache_free(kc);
    }
    if (rc) {
        fprintf(stderr, "bench_decode: %s\n", err.msg);
    } else {
        double pf_med = median(pf, (int)repeat), dec_med = median(dec, (int)repeat), rss = peak_rss_mib();
        double ms_tok = dec_med > 0 ? 1000.0 / dec_med : 0;
        printf("model          %s (%lld layers, hidden %lld, vocab %lld, %s weights)\n", model_dir,
               (long long)c->num_hidden_layers, (long long)c->hidden_size, (long long)V, c->fp8 ? "fp8" : "bf16/f32");
        printf("threads        %d\n", nthreads);
        printf("load           %.3f s\n", load_s);
        printf("prefill        %ld tokens: %.1f tok/s (median of %ld)\n", n_prompt, pf_med, repeat);
        printf("decode         %ld tokens: %.2f tok/s, %.2f ms/token (median of %ld)\n", n_gen, dec_med, ms_tok, repeat);
        printf("peak RSS       %.1f MiB\n", rss);
        printf("tokens hash    %016llx (first generated id %d)\n", (unsigned long long)checksum, gen[0]);
        printf("{\"bench\":\"decode\",\"model\":\"");
        json_str(stdout, model_dir);
        printf("\",\"fp8\":%s,\"threads\":%d,\"prompt\":%ld,\"gen\":%ld,\"repeat\":%ld,\"load_s\":%.4f,"
               "\"prefill_tok_s\":%.3f,\"decode_tok_s\":%.4f,\"decode_ms_per_tok\":%.4f,\"peak_rss_mib\":%.1f,"
               "\"tokens_hash\":\"%016llx\"}\n",
               c->fp8 ? "true" : "false", nthreads, n_prompt, n_gen, repeat, load_s, pf_med, dec_med, ms_tok, rss,
               (unsigned long long)checksum);
    }
    free(prompt);
    free(gen);
    free(logits);
    free(prefill_logits);
    free(mask);
    free(pf);
    free(dec);
    dsv3_model_free(m);
    return rc;
}
