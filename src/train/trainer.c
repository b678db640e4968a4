/* The training loop: batches from a token shard, forward/backward, clipping,
 * AdamW with the report's LR schedule, bias updates, validation, JSONL log,
 * progress bar, loss-spike detection, atomic checkpoints and bitwise resume. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dsv3/clock.h"
#include "dsv3/data.h"
#include "train/train_internal.h"

void dsv3_train_options_default(dsv3_train_options *o) {
    memset(o, 0, sizeof *o);
    o->steps = 1000;
    o->batch = 8;
    o->seq_len = 256;
    o->grad_accum = 1;
    o->lr = (dsv3_lr_schedule){.peak_lr = 2.2e-4f, .final_lr = 2.2e-5f, .warmup_steps = 100, .decay_start = -1};
    o->adam = (dsv3_adamw_params){.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    o->clip_norm = 1.0f;
    o->loss = (dsv3_loss_params){.mtp_lambda = 0.3f, .bal_alpha = 1e-4f};
    o->bias_gamma = 1e-3f;
    o->val_frac = 0.02;
    o->eval_every = 100;
    o->eval_windows = 16;
    o->save_every = 200;
    o->keep = 3;
    o->spike_factor = 0;
}

dsv3_status dsv3_train_eval_loss(dsv3_train_model *tm, const int32_t *ids, int64_t B, int64_t T, double *loss,
                                 dsv3_error *err) {
    dsv3_loss_params lp = {0.0f, 0.0f};
    dsv3_step_stats s = {0};
    dsv3_status st = dsv3_train_forward_backward(tm, ids, B, T, &lp, &s, err);
    dsv3_train_zero_grad(tm);
    *loss = s.loss_main;
    return st;
}

static void progress(int64_t step, int64_t steps, double loss, float lr, double tok_s, double eta) {
    int width = 30, fill = (int)(width * (double)step / (double)steps);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %02d:%02d:%02d ", bar, (long long)step,
            (long long)steps, loss, lr, tok_s, (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60));
    fflush(stderr);
}

/* max/mean expert load over MoE layers (1.0 = perfectly balanced) */
static double load_imbalance(const float *load, int64_t n_layers, int64_t E) {
    double worst = 0;
    for (int64_t l = 0; l < n_layers; l++) {
        double mx = 0, sum = 0;
        for (int64_t e = 0; e < E; e++) {
            sum += load[l * E + e];
            if (load[l * E + e] > mx) mx = load[l * E + e];
        }
        if (sum > 0 && mx / (sum / E) > worst) worst = mx / (sum / E);
    }
    return worst;
}

dsv3_status dsv3_train_run(const dsv3_train_options *o, dsv3_error *err) {
    dsv3_status st;
    dsv3_train_model *tm = NULL;
    dsv3_token_shard *shard = NULL;
    dsv3_sampler_data data = {0};
    dsv3_train_state ts = {0};
    int32_t *ids = NULL;
    float *load = NULL, *load_sum = NULL;
    FILE *log = NULL;
    if (o->steps < 1 || o->batch < 1 || o->seq_len < 3 || o->grad_accum < 1)
        return dsv3_fail(err, DSV3_ERR_INVALID, "steps, batch and grad-accum must be >= 1 and seq-len >= 3");
    if (!o->out_dir) return dsv3_fail(err, DSV3_ERR_INVALID, "an output directory is required");
    if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST)
        return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create: %s", o->out_dir, strerror(errno));
    if (o->resume) {
        st = dsv3_train_resume(o->out_dir, &tm, &ts, err);
        if (st) return st;
        if (ts.seed != o->seed) fprintf(stderr, "note: resuming with the checkpoint's seed %llu\n", (unsigned long long)ts.seed);
    } else {
        if (!o->model_dir) return dsv3_fail(err, DSV3_ERR_INVALID, "--model (initial checkpoint) is required");
        st = dsv3_train_model_load(o->model_dir, &tm, err);
        if (st) return st;
        ts.seed = o->seed;
        ts.bf16_moments = o->adam.bf16_moments;
    }
    const dsv3_config *c = dsv3_train_model_config(tm);
    const int64_t E = c->n_routed_experts > 0 ? c->n_routed_experts : 1, B = o->batch, T = o->seq_len;
    st = dsv3_shard_open(o->data_path, &shard, err);
    if (!st && dsv3_shard_vocab(shard) > (uint64_t)c->vocab_size)
        st = dsv3_fail(err, DSV3_ERR_INVALID, "%s: vocabulary %llu larger than the model's %lld", o->data_path,
                       (unsigned long long)dsv3_shard_vocab(shard), (long long)c->vocab_size);
    if (!st) st = dsv3_data_init(&data, shard, T, o->val_frac, ts.seed, err);
    if (st) goto done;
    ids = malloc(sizeof(int32_t) * B * T);
    load = calloc((size_t)(c->num_hidden_layers * E), sizeof(float));
    load_sum = calloc((size_t)(c->num_hidden_layers * E), sizeof(float));
    if (!ids || !load || !load_sum) { st = dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory"); goto done; }
    char log_path[4200];
    if (o->log_path) snprintf(log_path, sizeof log_path, "%s", o->log_path);
    else snprintf(log_path, sizeof log_path, "%s/train_log.jsonl", o->out_dir);
    log = fopen(log_path, o->resume ? "a" : "w");
    if (!log) { st = dsv3_fail(err, DSV3_ERR_IO, "%s: cannot open the log: %s", log_path, strerror(errno)); goto done; }
    const char *tok_dir = o->tokenizer_dir ? o->tokenizer_dir : o->model_dir;
    dsv3_lr_schedule sched = o->lr;
    if (sched.decay_start < 0) sched.decay_start = o->steps / 2;
    if (sched.decay_steps <= 0) sched.decay_steps = o->steps - sched.decay_start;
    dsv3_adamw_params ap = o->adam;
    ap.bf16_moments = ts.bf16_moments;
    int64_t n_moe = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) n_moe += dsv3_train_model_bias(tm, l) != NULL;
    double t_start = dsv3_now_s(), tokens_run = 0, last_loss = 0;
    int64_t first_step = ts.step;
    while (ts.step < o->steps) {
        double t0 = dsv3_now_s();
        dsv3_train_zero_grad(tm);
        memset(load_sum, 0, sizeof(float) * n_moe * E);
        dsv3_step_stats acc = {0};
        dsv3_loss_params lp = o->loss;
        for (int64_t a = 0; a < o->grad_accum; a++) {
            dsv3_data_train_batch(&data, ts.data_cursor, B, ids);
            ts.data_cursor += (uint64_t)B;
            dsv3_step_stats s = {.expert_load = load};
            st = dsv3_train_forward_backward(tm, ids, B, T, &lp, &s, err);
            if (st) goto done;
            acc.loss_main += s.loss_main / o->grad_accum;
            acc.loss_mtp += s.loss_mtp / o->grad_accum;
            acc.loss_bal += s.loss_bal / o->grad_accum;
            acc.loss_total += s.loss_total / o->grad_accum;
            for (int64_t i = 0; i < n_moe * E; i++) load_sum[i] += load[i];
        }
        if (o->grad_accum > 1) /* gradients of the mean loss */
            for (int i = 0; i < dsv3_train_model_n_params(tm); i++) {
                dsv3_param *p = dsv3_train_model_param(tm, i);
                for (int64_t j = 0; j < p->numel; j++) p->g[j] /= (float)o->grad_accum;
            }
        int spike = o->spike_factor > 0 && ts.loss_ema > 0 && acc.loss_total > o->spike_factor * ts.loss_ema;
        double gnorm = dsv3_clip_grad_norm(tm, o->clip_norm);
        float lr = dsv3_lr_at(&sched, ts.step);
        int skipped = spike && o->skip_spikes;
        if (!skipped) {
            ap.lr = lr;
            st = dsv3_adamw_step(tm, &ap, ts.step + 1, err);
            if (st) goto done;
            int64_t mi = 0;
            for (int64_t l = 0; l < c->num_hidden_layers; l++) {
                float *bias = dsv3_train_model_bias(tm, l);
                if (bias) dsv3_bias_update(bias, load_sum + (mi++) * E, E, o->bias_gamma);
            }
            ts.loss_ema = ts.loss_ema > 0 ? 0.95 * ts.loss_ema + 0.05 * acc.loss_total : acc.loss_total;
        }
        ts.step++;
        double dt = dsv3_now_s() - t0, tok = (double)(B * T * o->grad_accum);
        tokens_run += tok;
        last_loss = acc.loss_main;
        fprintf(log, "{\"step\":%lld,\"loss\":%.6f,\"loss_main\":%.6f,\"loss_mtp\":%.6f,\"loss_bal\":%.6f,"
                     "\"grad_norm\":%.5f,\"lr\":%.4e,\"tok_s\":%.1f,\"load_imbalance\":%.4f%s%s}\n",
                (long long)ts.step, acc.loss_total, acc.loss_main, acc.loss_mtp, acc.loss_bal, gnorm, lr, tok / dt,
                load_imbalance(load_sum, n_moe, E), spike ? ",\"spike\":true" : "", skipped ? ",\"skipped\":true" : "");
        if (spike) fprintf(stderr, "\nloss spike at step %lld: %.4f vs average %.4f%s\n", (long long)ts.step, acc.loss_total,
                           ts.loss_ema, skipped ? " (update skipped)" : "");
        if (o->eval_every > 0 && data.n_val > 0 && (ts.step % o->eval_every == 0 || ts.step == o->steps)) {
            int64_t nv = o->eval_windows < data.n_val ? o->eval_windows : data.n_val;
            double vl = 0, l1;
            for (int64_t i = 0; i < nv; i++) {
                dsv3_data_val_window(&data, i, ids);
                st = dsv3_train_eval_loss(tm, ids, 1, T, &l1, err);
                if (st) goto done;
                vl += l1 / nv;
            }
            fprintf(log, "{\"step\":%lld,\"val_loss\":%.6f}\n", (long long)ts.step, vl);
            if (!o->quiet) fprintf(stderr, "\nstep %lld: validation loss %.4f\n", (long long)ts.step, vl);
        }
        fflush(log);
        if ((o->save_every > 0 && ts.step % o->save_every == 0) || ts.step == o->steps) {
            st = dsv3_train_save(tm, &ts, o->out_dir, tok_dir, (int)o->keep, err);
            if (st) goto done;
        }
        if (!o->quiet) {
            double el = dsv3_now_s() - t_start, rate = tokens_run / el;
            progress(ts.step, o->steps, last_loss, lr, rate, el / (double)(ts.step - first_step) * (double)(o->steps - ts.step));
        }
    }
    if (!o->quiet) fprintf(stderr, "\n");
done:
    if (log) fclose(log);
    free(ids);
    free(load);
    free(load_sum);
    dsv3_data_free(&data);
    dsv3_shard_close(shard);
    dsv3_train_model_free(tm);
    return st;
}
