/* dsv3 train: all hyper-parameters from flags or a JSON file (--config). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/train.h"

typedef enum { OPT_STR, OPT_I64, OPT_F32, OPT_F64, OPT_U64, OPT_FLAG } opt_type;
typedef struct {
    const char *name;
    opt_type type;
    void *ptr;
    const char *help;
} opt_def;

static int set_opt(const opt_def *d, const char *val) {
    int64_t i;
    float f;
    switch (d->type) {
    case OPT_STR: *(const char **)d->ptr = val; return 0;
    case OPT_I64: if (cli_parse_i64(val, INT64_MIN, INT64_MAX, &i)) return -1; *(int64_t *)d->ptr = i; return 0;
    case OPT_U64: if (cli_parse_i64(val, 0, INT64_MAX, &i)) return -1; *(uint64_t *)d->ptr = (uint64_t)i; return 0;
    case OPT_F32: if (cli_parse_f32(val, &f)) return -1; *(float *)d->ptr = f; return 0;
    case OPT_F64: if (cli_parse_f32(val, &f)) return -1; *(double *)d->ptr = f; return 0;
    case OPT_FLAG: *(int *)d->ptr = 1; return 0;
    }
    return -1;
}

/* Applies a JSON object {"steps": 100, "lr": 3e-4, ...} (keys = flag names without "--"). */
static int load_json(const char *path, const opt_def *defs, int n, char **strings, int *n_strings) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        fprintf(stderr, "dsv3 train: %s: %s\n", path, root ? "must be a JSON object" : je.text);
        json_decref(root);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        const opt_def *d = NULL;
        for (int i = 0; i < n; i++)
            if (!strcmp(defs[i].name + 2, key)) d = &defs[i];
        if (!d || !strcmp(key, "config")) {
            fprintf(stderr, "dsv3 train: %s: unknown key '%s'\n", path, key);
            json_decref(root);
            return -1;
        }
        char buf[64];
        const char *val = NULL;
        if (json_is_string(v)) val = json_string_value(v);
        else if (json_is_integer(v)) { snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v)); val = buf; }
        else if (json_is_real(v)) { snprintf(buf, sizeof buf, "%.9g", json_real_value(v)); val = buf; }
        else if (json_is_true(v) && d->type == OPT_FLAG) val = "1";
        else if (json_is_false(v) && d->type == OPT_FLAG) continue;
        if (!val) {
            fprintf(stderr, "dsv3 train: %s: bad value for '%s'\n", path, key);
            json_decref(root);
            return -1;
        }
        if (d->type == OPT_STR) { /* keep the string alive after the JSON is freed */
            strings[*n_strings] = strdup(val);
            val = strings[(*n_strings)++];
        }
        if (set_opt(d, val)) {
            fprintf(stderr, "dsv3 train: %s: bad value for '%s'\n", path, key);
            json_decref(root);
            return -1;
        }
    }
    json_decref(root);
    return 0;
}

int cmd_train(int argc, char **argv) {
    dsv3_train_options o;
    dsv3_train_options_default(&o);
    const char *moments = "f32", *config = NULL, *threads = NULL;
    const opt_def defs[] = {
        {"--config", OPT_STR, &config, "JSON file with any of these options (keys without --)"},
        {"--model", OPT_STR, &o.model_dir, "initial checkpoint directory (e.g. from dsv3 init)"},
        {"--data", OPT_STR, &o.data_path, "token shard from dsv3 tokenize-corpus"},
        {"--out", OPT_STR, &o.out_dir, "output directory: checkpoints step-N/, latest, train_log.jsonl"},
        {"--tokenizer", OPT_STR, &o.tokenizer_dir, "tokenizer directory copied into checkpoints"},
        {"--log", OPT_STR, &o.log_path, "JSONL log path (default OUT/train_log.jsonl)"},
        {"--resume", OPT_FLAG, &o.resume, "continue from OUT/latest (bitwise-identical continuation)"},
        {"--steps", OPT_I64, &o.steps, "optimizer steps (1000)"},
        {"--batch", OPT_I64, &o.batch, "sequences per micro-batch (8)"},
        {"--seq-len", OPT_I64, &o.seq_len, "tokens per sequence (256)"},
        {"--grad-accum", OPT_I64, &o.grad_accum, "micro-batches per step (1)"},
        {"--lr", OPT_F32, &o.lr.peak_lr, "peak learning rate (2.2e-4)"},
        {"--final-lr", OPT_F32, &o.lr.final_lr, "learning rate after cosine decay (2.2e-5)"},
        {"--warmup", OPT_I64, &o.lr.warmup_steps, "linear warm-up steps (100)"},
        {"--decay-start", OPT_I64, &o.lr.decay_start, "step where cosine decay starts (steps/2)"},
        {"--decay-steps", OPT_I64, &o.lr.decay_steps, "cosine decay length (to the end)"},
        {"--tail-lr", OPT_F32, &o.lr.tail_lr, "final constant LR from --tail-start"},
        {"--tail-start", OPT_I64, &o.lr.tail_start, "step of the final constant phase (0 = none)"},
        {"--beta1", OPT_F32, &o.adam.beta1, "AdamW beta1 (0.9)"},
        {"--beta2", OPT_F32, &o.adam.beta2, "AdamW beta2 (0.95)"},
        {"--eps", OPT_F32, &o.adam.eps, "AdamW epsilon (1e-8)"},
        {"--weight-decay", OPT_F32, &o.adam.weight_decay, "decoupled weight decay (0.1)"},
        {"--moments", OPT_STR, &moments, "f32 or bf16 AdamW moments (f32)"},
        {"--clip", OPT_F32, &o.clip_norm, "global gradient-norm clip, 0 = off (1.0)"},
        {"--mtp-lambda", OPT_F32, &o.loss.mtp_lambda, "MTP loss weight lambda (0.3)"},
        {"--bal-alpha", OPT_F32, &o.loss.bal_alpha, "sequence-wise balance loss alpha (1e-4)"},
        {"--bias-gamma", OPT_F32, &o.bias_gamma, "bias update speed gamma, 0 = off (1e-3)"},
        {"--seed", OPT_U64, &o.seed, "data order seed (0)"},
        {"--val-frac", OPT_F64, &o.val_frac, "fraction of windows held out for validation (0.02)"},
        {"--eval-every", OPT_I64, &o.eval_every, "validation every N steps (100)"},
        {"--eval-windows", OPT_I64, &o.eval_windows, "validation windows per evaluation (16)"},
        {"--save-every", OPT_I64, &o.save_every, "checkpoint every N steps (200)"},
        {"--keep", OPT_I64, &o.keep, "checkpoints kept, 0 = all (3)"},
        {"--spike-factor", OPT_F32, &o.spike_factor, "loss > factor x running average is a spike, 0 = off (0)"},
        {"--skip-spikes", OPT_FLAG, &o.skip_spikes, "skip the update of spike batches"},
        {"--quiet", OPT_FLAG, &o.quiet, "no progress bar"},
        {"-t", OPT_STR, &threads, "threads (default: all cores)"},
    };
    const int n = (int)(sizeof defs / sizeof defs[0]);
    char *strings[64];
    int n_strings = 0, rc = 2;
    /* --config first so flags override it */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config") && load_json(argv[i + 1], defs, n, strings, &n_strings)) goto out;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: dsv3 train --model DIR --data FILE.tokens --out DIR [options]\n\noptions:\n");
            for (int k = 0; k < n; k++) printf("  %-16s %s\n", defs[k].name, defs[k].help);
            rc = 0;
            goto out;
        }
        const opt_def *d = NULL;
        for (int k = 0; k < n; k++)
            if (!strcmp(argv[i], defs[k].name)) d = &defs[k];
        if (!d) { fprintf(stderr, "dsv3 train: unknown argument '%s' (see --help)\n", argv[i]); goto out; }
        if (d->type == OPT_FLAG) { set_opt(d, "1"); continue; }
        if (i + 1 >= argc) { fprintf(stderr, "dsv3 train: %s needs a value\n", argv[i]); goto out; }
        if (set_opt(d, argv[++i])) { fprintf(stderr, "dsv3 train: bad value '%s' for %s\n", argv[i], d->name); goto out; }
    }
    if (strcmp(moments, "f32") && strcmp(moments, "bf16")) { fprintf(stderr, "dsv3 train: --moments must be f32 or bf16\n"); goto out; }
    o.adam.bf16_moments = !strcmp(moments, "bf16");
    if (!o.data_path || !o.out_dir || (!o.model_dir && !o.resume)) {
        fprintf(stderr, "dsv3 train: --data, --out and --model (or --resume) are required (see --help)\n");
        goto out;
    }
    int64_t nt = 0;
    if (threads && cli_parse_i64(threads, 0, 4096, &nt)) { fprintf(stderr, "dsv3 train: bad -t '%s'\n", threads); goto out; }
    cli_set_threads(nt);
    dsv3_error err = {0};
    rc = dsv3_train_run(&o, &err) ? cli_error("train", &err) : 0;
out:
    for (int i = 0; i < n_strings; i++) free(strings[i]);
    return rc;
}
