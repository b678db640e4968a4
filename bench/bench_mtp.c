/* MTP speculative decoding benchmark:
 *   build/bench_mtp [--model DIR=models/dsv3-kjv-tiny] [--prompt TEXT]... [-n N=256] [--drafts LIST=1,2,3]
 *                   [--draft-vocab V=1024] [-t threads=1] [--repeat R=5]
 *                   [--temp T=0 [--top-k K] [--top-p P] [--seed S=1]]
 *
 * For every prompt (default: three in-domain ones for the default model), R rounds of greedy
 * generation of N tokens (--ignore-eos), each round alternating plain decoding and speculative
 * decoding with each draft count of the list (the runs of one round follow each other, so a
 * speed is compared with the others of the same moment). Prints per prompt and draft count the
 * median decode tok/s, the speedup over the plain median, drafts accepted / proposed, and checks
 * that every speculative run generated exactly the plain run's tokens (greedy: it must); then the
 * medians over the prompts and one JSON line. Exit status 1 when an output differed.
 * --temp T > 0: sampled generation instead (seed S + round in every run of a round), as `dsv3 generate
 * --temp`; speculative runs keep the output distribution but not the plain run's tokens (the random
 * numbers go to other uses), so nothing is compared.
 *
 * --costs: instead, the parts of a speculative step, each timed alone at a context of 128 tokens
 * (median over --repeat rounds of 64 calls): a main-model step of T = 1..4 tokens (a verification of
 * T-1 drafts) and an MTP draft step (one row, draft head), each also as a multiple of the 1-token step. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "dsv3/clock.h"
#include "dsv3/model.h"
#include "dsv3/sampling.h"
#include "dsv3/tokenizer.h"

#define MAX_PROMPTS 16
#define MAX_DRAFTS DSV3_MTP_MAX_DRAFTS

typedef struct {
    int32_t *ids;
    int64_t n, cap;
} tok_list;

static int collect_cb(int32_t t, void *ctx) {
    tok_list *l = ctx;
    if (l->n < l->cap) l->ids[l->n++] = t;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_mtp [--model DIR] [--prompt TEXT]... [-n N] [--drafts N[,N...]] [--draft-vocab V]\n"
               "                 [-t threads] [--repeat R] [--temp T [--top-k K] [--top-p P] [--seed S]]\n"
               "  --model DIR      model with an MTP layer (default models/dsv3-kjv-tiny)\n"
               "  --prompt TEXT    a prompt (repeatable; default: three in-domain prompts of the default model)\n"
               "  -n N             tokens to generate per run (default 256)\n"
               "  --drafts LIST    draft counts per step to compare with plain decoding (default 1,2,3)\n"
               "  --draft-vocab V  draft vocabulary (dsv3_model_set_mtp_draft_vocab; default 1024, 0 = all)\n"
               "  -t N             threads (default 1)\n"
               "  --repeat R       rounds; speeds are medians over them (default 5)\n"
               "  --temp T         sample at temperature T (default 0: greedy, outputs compared)\n"
               "  --top-k K, --top-p P, --seed S   sampling settings (defaults 0 = off, 1 = off, 1)\n"
               "  --costs          time the parts of a speculative step instead (see the source's header)\n");
}

/* One generation with sampler settings sp (temperature 0: greedy); tok/s of the decode phase, or -1 on error. */
static double run(dsv3_model *m, const int32_t *prompt, int64_t np, int64_t n_new, int drafts,
                  const dsv3_sampler_params *sp, tok_list *out, dsv3_gen_stats *gs) {
    dsv3_error err = {0};
    dsv3_kv_cache *kc = NULL;
    dsv3_sampler smp;
    if (dsv3_kv_cache_new(m, np + n_new + 1, &kc, &err) ||
        dsv3_sampler_init(&smp, sp, dsv3_model_config(m)->vocab_size, &err)) {
        fprintf(stderr, "bench_mtp: %s\n", err.msg);
        dsv3_kv_cache_free(kc);
        return -1;
    }
    out->n = 0;
    dsv3_status st = dsv3_generate(m, kc, prompt, np, n_new, &smp, drafts, -1, collect_cb, out, gs, &err);
    dsv3_sampler_free(&smp);
    dsv3_kv_cache_free(kc);
    if (st) {
        fprintf(stderr, "bench_mtp: %s\n", err.msg);
        return -1;
    }
    return gs->decode_s > 0 ? (double)(gs->generated - 1) / gs->decode_s : 0; /* the first token is the prefill's */
}

/* --costs: seconds per call of a main-model step of T tokens (T = 1..4) and of one MTP draft row, at a
 * context of ctx tokens; medians over `repeat` rounds of `calls` calls. Returns 0 or 1 on error. */
static int step_costs(dsv3_model *m, long repeat) {
    enum { CTX = 128, CALLS = 64, TMAX = 4 };
    const int64_t H = dsv3_model_config(m)->hidden_size, V = dsv3_model_config(m)->vocab_size;
    dsv3_error err = {0};
    dsv3_kv_cache *kc = NULL;
    int32_t ids[CTX + TMAX];
    for (int i = 0; i < CTX + TMAX; i++) ids[i] = 2 + (i * 7919) % (int)(V - 2);
    float *logits = malloc(sizeof(float) * (size_t)(TMAX * V)), *hid = malloc(sizeof(float) * (size_t)((CTX + TMAX) * H)),
          *g = malloc(sizeof(float) * (size_t)H);
    double *sec = malloc(sizeof(double) * (size_t)repeat), med[TMAX + 1];
    int rc = !logits || !hid || !g || !sec || dsv3_kv_cache_new(m, CTX + TMAX + 1, &kc, &err);
    if (!rc) {
        dsv3_batch_item it = {kc, ids, CTX};
        dsv3_forward_out o = {.final_hidden = hid};
        rc = dsv3_forward(m, &it, 1, &o, &err) || dsv3_mtp_draft(m, kc, hid, ids + 1, CTX - 1, logits, g, &err);
    }
    for (int v = 0; v <= TMAX && !rc; v++) { /* v < TMAX: main step of v+1 tokens; v == TMAX: MTP draft row */
        for (long r = 0; r < repeat && !rc; r++) {
            double t0 = dsv3_now_s();
            for (int c = 0; c < CALLS && !rc; c++) {
                if (v < TMAX) {
                    dsv3_batch_item it = {kc, ids + CTX, v + 1};
                    dsv3_forward_out o = {.logits = logits, .final_hidden = hid};
                    rc = dsv3_forward(m, &it, 1, &o, &err) != DSV3_OK;
                    dsv3_kv_cache_truncate(kc, CTX, -1);
                } else {
                    rc = dsv3_mtp_draft(m, kc, g, ids + CTX, 1, logits, g, &err) != DSV3_OK;
                    dsv3_kv_cache_truncate(kc, CTX, CTX - 1);
                }
            }
            sec[r] = (dsv3_now_s() - t0) / CALLS;
        }
        if (rc) break;
        med[v] = dsv3_median(sec, (int)repeat);
        if (v < TMAX) printf("  main step, %d token%s   %8.1f us  %.2fx\n", v + 1, v ? "s" : " ", 1e6 * med[v], med[v] / med[0]);
        else printf("  MTP draft row        %8.1f us  %.2fx\n", 1e6 * med[v], med[v] / med[0]);
    }
    if (rc) fprintf(stderr, "bench_mtp: %s\n", err.msg[0] ? err.msg : "out of memory");
    else
        printf("{\"bench\":\"mtp_costs\",\"threads\":%d,\"ctx\":%d,\"step_us\":[%.1f,%.1f,%.1f,%.1f],\"draft_us\":%.1f}\n",
               omp_get_max_threads(), CTX, 1e6 * med[0], 1e6 * med[1], 1e6 * med[2], 1e6 * med[3], 1e6 * med[4]);
    dsv3_kv_cache_free(kc);
    free(logits); free(hid); free(g); free(sec);
    return rc;
}

int main(int argc, char **argv) {
    const char *model_dir = "models/dsv3-kjv-tiny", *prompts[MAX_PROMPTS];
    int n_prompts = 0, n_drafts = 0;
    long drafts[MAX_DRAFTS];
    long n_new = 256, threads = 1, repeat = 5, draft_vocab = 1024, top_k = 0, seed = 1;
    double temp = 0, top_p = 1;
    int costs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--costs")) { costs = 1; continue; }
        if (!v) bad = 1;
        else if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--prompt")) {
            if (n_prompts == MAX_PROMPTS) bad = 1;
            else prompts[n_prompts++] = v;
        } else if (!strcmp(a, "-n")) bad = bench_parse_long(v, 2, 1 << 20, &n_new);
        else if (!strcmp(a, "-t")) bad = bench_parse_long(v, 0, 4096, &threads);
        else if (!strcmp(a, "--repeat")) bad = bench_parse_long(v, 1, 1000, &repeat);
        else if (!strcmp(a, "--draft-vocab")) bad = bench_parse_long(v, 0, INT32_MAX, &draft_vocab);
        else if (!strcmp(a, "--temp")) bad = bench_parse_double(v, 0, 100, &temp);
        else if (!strcmp(a, "--top-p")) bad = bench_parse_double(v, 1e-6, 1, &top_p);
        else if (!strcmp(a, "--top-k")) bad = bench_parse_long(v, 0, INT32_MAX, &top_k);
        else if (!strcmp(a, "--seed")) bad = bench_parse_long(v, 0, INT32_MAX, &seed);
        else if (!strcmp(a, "--drafts")) bad = bench_parse_list(v, 1, MAX_DRAFTS, MAX_DRAFTS, drafts, &n_drafts);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "bench_mtp: bad or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!n_drafts) { drafts[0] = 1, drafts[1] = 2, drafts[2] = 3; n_drafts = 3; }
    if (!n_prompts) {
        prompts[n_prompts++] = "And the LORD spake unto Moses, saying";
        prompts[n_prompts++] = "In the beginning God created";
        prompts[n_prompts++] = "And Jesus answered and said unto them";
    }
    if (threads > 0) omp_set_num_threads((int)threads);

    dsv3_error err = {0};
    dsv3_model *m = NULL;
    dsv3_tokenizer *tok = NULL;
    if (dsv3_model_load(model_dir, &m, &err) || dsv3_tokenizer_load(model_dir, &tok, &err)) {
        fprintf(stderr, "bench_mtp: %s\n", err.msg);
        dsv3_model_free(m);
        return 1;
    }
    if (!dsv3_model_has_mtp(m)) {
        fprintf(stderr, "bench_mtp: %s has no MTP layer\n", model_dir);
        dsv3_model_free(m);
        dsv3_tokenizer_free(tok);
        return 1;
    }
    dsv3_model_set_mtp_draft_vocab(m, draft_vocab);
    if (costs) {
        printf("model %s, %d thread(s), draft vocabulary %ld, context 128, medians of %ld rounds\n", model_dir,
               omp_get_max_threads(), draft_vocab, repeat);
        int rc = step_costs(m, repeat);
        dsv3_tokenizer_free(tok);
        dsv3_model_free(m);
        return rc;
    }
    const int nv = n_drafts + 1; /* variant 0: plain */
    double *tps = malloc(sizeof(double) * (size_t)(n_prompts * nv * repeat));
    long long acc[MAX_PROMPTS][MAX_DRAFTS + 1] = {{0}}, prop[MAX_PROMPTS][MAX_DRAFTS + 1] = {{0}};
    tok_list ref = {malloc(sizeof(int32_t) * (size_t)n_new), 0, n_new}, got = {malloc(sizeof(int32_t) * (size_t)n_new), 0, n_new};
    int rc = !tps || !ref.ids || !got.ids, differ = 0;
    if (rc) fprintf(stderr, "bench_mtp: out of memory\n");
    printf("model %s, %d thread(s), %ld tokens per run, draft vocabulary %ld, %ld rounds, ", model_dir,
           omp_get_max_threads(), n_new, draft_vocab, repeat);
    if (temp > 0) printf("sampled (temperature %g, top-k %ld, top-p %g, seed %ld + round)\n", temp, top_k, top_p, seed);
    else printf("greedy\n");
    double med_speedup[MAX_DRAFTS][MAX_PROMPTS];
    for (int p = 0; p < n_prompts && !rc; p++) {
        dsv3_ids ids = {0};
        if (dsv3_tokenizer_encode(tok, prompts[p], strlen(prompts[p]), DSV3_TOK_ADD_SPECIAL, &ids, &err) || !ids.len) {
            fprintf(stderr, "bench_mtp: cannot tokenize prompt %d: %s\n", p, err.msg);
            dsv3_ids_free(&ids);
            rc = 1;
            break;
        }
        for (long r = 0; r < repeat && !rc; r++)
            for (int v = 0; v < nv && !rc; v++) {
                dsv3_gen_stats gs;
                tok_list *o = v ? &got : &ref;
                const dsv3_sampler_params sp = {(float)temp, (float)top_p, top_k, (uint64_t)(seed + r)};
                double s = run(m, ids.data, (int64_t)ids.len, n_new, v ? drafts[v - 1] : 0, &sp, o, &gs);
                if (s < 0) { rc = 1; break; }
                tps[(p * nv + v) * repeat + r] = s;
                if (r == 0 || temp > 0) /* greedy: every round the same; sampled: the sum over the rounds */
                    acc[p][v] += gs.mtp_accepted, prop[p][v] += gs.mtp_drafted;
                if (v && temp <= 0 && (got.n != ref.n || memcmp(got.ids, ref.ids, sizeof(int32_t) * (size_t)ref.n))) {
                    fprintf(stderr, "bench_mtp: prompt %d, %ld drafts: output differs from plain decoding\n", p, drafts[v - 1]);
                    differ = 1;
                }
            }
        const size_t np_tok = ids.len;
        dsv3_ids_free(&ids);
        if (rc) break;
        double med[MAX_DRAFTS + 1];
        for (int v = 0; v < nv; v++) med[v] = dsv3_median(tps + (p * nv + v) * repeat, (int)repeat);
        printf("prompt %d \"%s\" (%zu tokens)\n  plain      %8.1f tok/s\n", p, prompts[p], np_tok, med[0]);
        for (int v = 1; v < nv; v++) {
            med_speedup[v - 1][p] = med[v] / med[0];
            printf("  %ld draft%s   %8.1f tok/s  %.2fx  accepted %lld / %lld (%.1f%%)\n", drafts[v - 1],
                   drafts[v - 1] > 1 ? "s" : " ", med[v], med[v] / med[0], acc[p][v], prop[p][v],
                   prop[p][v] ? 100.0 * (double)acc[p][v] / (double)prop[p][v] : 0.0);
        }
    }
    if (!rc) {
        printf("{\"bench\":\"mtp\",\"threads\":%d,\"gen\":%ld,\"repeat\":%ld,\"draft_vocab\":%ld,\"temperature\":%g,"
               "\"identical\":%s,\"by_drafts\":[",
               omp_get_max_threads(), n_new, repeat, draft_vocab, temp, temp > 0 ? "null" : differ ? "false" : "true");
        for (int d = 0; d < n_drafts; d++) {
            long long a = 0, q = 0;
            for (int p = 0; p < n_prompts; p++) a += acc[p][d + 1], q += prop[p][d + 1];
            double sp[MAX_PROMPTS];
            memcpy(sp, med_speedup[d], sizeof(double) * (size_t)n_prompts);
            printf("%s{\"drafts\":%ld,\"median_speedup\":%.3f,\"accepted\":%lld,\"drafted\":%lld}", d ? "," : "", drafts[d],
                   dsv3_median(sp, n_prompts), a, q);
        }
        printf("]}\n");
    }
    free(tps);
    free(ref.ids);
    free(got.ids);
    dsv3_tokenizer_free(tok);
    dsv3_model_free(m);
    return rc ? 1 : differ;
}
