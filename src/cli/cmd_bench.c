/* dsv3 bench --model DIR [-p 512] [-n 128] [-t THREADS] [-r REPS]: llama-bench
 * style prefill (ppP) and decode (tgN) throughput, mean ± stddev and median over REPS. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/clock.h"
#include "dsv3/model.h"
#include "dsv3/safetensors.h"
#include "dsv3/sampling.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 bench --model DIR [-p 512] [-n 128] [-t THREADS] [-r 5] [--kv-dtype f32|bf16]\n\n"
               "ppP: prefill of P random tokens into an empty cache; tgN: N greedy decode steps\n"
               "of one token each (after a 1-token prompt). Prints mean ± stddev and the median tokens/s over -r runs.\n"
               "--kv-dtype: the KV cache's storage (default f32; bf16 halves it).\n");
}

static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0.0;
}


int cmd_bench(int argc, char **argv) {
    const char *model = NULL, *p_s = "512", *n_s = "128", *t_s = NULL, *r_s = "5", *kvd = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (cli_opt(argc, argv, &i, "--model", &model, &bad) || cli_opt(argc, argv, &i, "-p", &p_s, &bad) ||
            cli_opt(argc, argv, &i, "-n", &n_s, &bad) || cli_opt(argc, argv, &i, "-t", &t_s, &bad) ||
            cli_opt(argc, argv, &i, "-r", &r_s, &bad) || cli_opt(argc, argv, &i, "--kv-dtype", &kvd, &bad))
            continue;
        fprintf(stderr, "dsv3 bench: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    int64_t P, N, R, T = 0;
    if (bad || !model || cli_parse_i64(p_s, 0, 1 << 20, &P) || cli_parse_i64(n_s, 0, 1 << 20, &N) ||
        cli_parse_i64(r_s, 1, 1000, &R) || (t_s && cli_parse_i64(t_s, 0, 4096, &T))) {
        if (!bad) fprintf(stderr, "dsv3 bench: --model is required; -p, -n >= 0, -r >= 1\n");
        usage(stderr);
        return 2;
    }
    dsv3_dtype kv_dtype;
    if (cli_parse_kv_dtype("bench", kvd, &kv_dtype)) return 2;
    cli_set_threads(T);
    dsv3_error err = {0};
    dsv3_model *m = NULL;
    dsv3_checkpoint *ck = NULL;
    if (dsv3_model_load(model, &m, &err) || dsv3_model_set_kv_dtype(m, kv_dtype, &err) || dsv3_ckpt_open(model, &ck, &err)) {
        dsv3_model_free(m);
        return cli_error("bench", &err);
    }
    /* size and bits per weight from the checkpoint (scales count as bytes, not weights) */
    double bytes = 0, weights = 0;
    for (size_t i = 0; i < dsv3_ckpt_count(ck); i++) {
        const dsv3_tensor_view *t = dsv3_ckpt_tensor(ck, i);
        bytes += (double)t->nbytes;
        size_t len = strlen(t->name);
        if (len < 10 || strcmp(t->name + len - 10, "_scale_inv") != 0) weights += (double)t->numel;
    }
    dsv3_ckpt_close(ck);
    const dsv3_config *c = dsv3_model_config(m);
    int64_t cap = (P > N + 1 ? P : N + 1) + 1;
    int32_t *ids = malloc(sizeof(int32_t) * (P > 0 ? P : 1));
    float *logits = malloc(sizeof(float) * c->vocab_size);
    uint8_t *mask = calloc((size_t)(P > 0 ? P : 1), 1);
    double *pp = malloc(sizeof(double) * R), *tg = malloc(sizeof(double) * R);
    dsv3_kv_cache *kc = NULL;
    int rc = 1;
    if (!ids || !logits || !mask || !pp || !tg || dsv3_kv_cache_new(m, cap, &kc, &err)) {
        if (!err.msg[0]) dsv3_fail(&err, DSV3_ERR_NOMEM, "out of memory");
        goto done;
    }
    uint64_t s = 1;
    for (int64_t i = 0; i < P; i++) ids[i] = (int32_t)((s = s * 6364136223846793005ull + 1442695040888963407ull) >> 33) % (int32_t)c->vocab_size;
    for (int64_t r = 0; r <= R; r++) { /* run 0 warms up (page-in) */
        if (P > 0) {
            /* like llama-bench pp: logits of the last prompt token only (into a [1, vocab] buffer) */
            mask[P - 1] = 1;
            dsv3_kv_cache_truncate(kc, 0, 0);
            dsv3_batch_item it = {kc, ids, P};
            dsv3_forward_out out = {.logits = logits, .logits_mask = mask, .logits_packed = 1};
            double t0 = dsv3_now_s();
            dsv3_status st = dsv3_forward(m, &it, 1, &out, &err);
            double dt = dsv3_now_s() - t0;
            if (st) goto done;
            if (r > 0) pp[r - 1] = (double)P / dt;
        }
        if (N > 0) {
            dsv3_kv_cache_truncate(kc, 0, 0);
            int32_t tok = 1;
            double t0 = dsv3_now_s();
            for (int64_t i = 0; i < N; i++) {
                dsv3_batch_item it = {kc, &tok, 1};
                dsv3_forward_out out = {.logits = logits};
                if (dsv3_forward(m, &it, 1, &out, &err)) goto done;
                tok = dsv3_argmax(logits, c->vocab_size);
            }
            if (r > 0) tg[r - 1] = (double)N / (dsv3_now_s() - t0);
        }
    }
    const char *name = strrchr(model, '/');
    name = name && name[1] ? name + 1 : model;
    printf("| model | size | params | bits/w | threads | test | t/s | median t/s | kv |\n|---|---|---|---|---|---|---|---|---|\n");
    double mean, sd;
    const char *tests[2] = {"pp", "tg"};
    int64_t counts[2] = {P, N};
    double *vals[2] = {pp, tg};
    for (int k = 0; k < 2; k++) {
        if (counts[k] <= 0) continue;
        mean_sd(vals[k], (int)R, &mean, &sd);
        double med = dsv3_median(vals[k], (int)R);
        printf("| %s | %.2f MiB | %.2f M | %.2f | %d | %s%lld | %.2f ± %.2f | %.2f | %s |\n", name, bytes / 1048576.0,
               weights / 1e6, weights > 0 ? bytes * 8 / weights : 0.0, omp_get_max_threads(), tests[k], (long long)counts[k],
               mean, sd, med, kv_dtype == DSV3_BF16 ? "bf16" : "f32");
    }
    rc = 0;
done:
    if (rc) cli_error("bench", &err);
    dsv3_kv_cache_free(kc);
    free(ids); free(logits); free(mask); free(pp); free(tg);
    dsv3_model_free(m);
    return rc;
}
