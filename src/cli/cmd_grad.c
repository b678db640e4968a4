/* dsv3 grad --model DIR --input IN.safetensors --output OUT.safetensors
 * One training forward/backward + one AdamW step + one bias update, written
 * with the names of ../shared/fixtures/tiny/train_reference.safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 grad --model DIR --input IN.safetensors --output OUT.safetensors [-t N]\n\n"
               "Reads 'input_ids' (I64/I32 [B,T]) and 'hparams' (F32 [8] = lambda, alpha, gamma, lr,\n"
               "beta1, beta2, eps, weight_decay); runs one forward/backward in FP32 and writes\n"
               "loss_main, loss_mtp, loss_bal, loss_total, grad.<name>, after_adamw.<name> (one AdamW\n"
               "step from zero moments), expert_load.<layer> and bias_after_update.<bias name>.\n"
               "  -t N   threads (default: all cores)\n");
}

static int add_scalar(dsv3_st_writer *w, const char *name, double v, dsv3_error *err) {
    float f = (float)v;
    int64_t shape[1] = {1};
    return dsv3_st_writer_add(w, name, DSV3_F32, 1, shape, &f, err) != DSV3_OK;
}

int cmd_grad(int argc, char **argv) {
    const char *model_dir, *in_path, *out_path;
    int parsed = cli_parse_model_io("grad", argc, argv, usage, &model_dir, &in_path, &out_path);
    if (parsed >= 0) return parsed;

    dsv3_error err = {0};
    int rc = 1;
    dsv3_st_file *in = NULL;
    dsv3_train_model *tm = NULL;
    dsv3_st_writer *w = NULL;
    int32_t *ids = NULL;
    float *loads = NULL, hp[8];
    if (dsv3_st_open(in_path, &in, &err)) goto fail;
    const dsv3_tensor_view *th = dsv3_st_find(in, "hparams");
    if (!th || th->dtype != DSV3_F32 || th->numel != 8) {
        dsv3_fail(&err, DSV3_ERR_FORMAT, "%s: needs 'hparams' F32 [8]", in_path);
        goto fail;
    }
    memcpy(hp, th->data, sizeof hp);
    int64_t B, T;
    if (cli_read_input_ids(in, in_path, 2, &ids, &B, &T, &err)) goto fail;
    if (dsv3_train_model_load(model_dir, &tm, &err)) goto fail;
    const dsv3_config *c = dsv3_train_model_config(tm);
    const int64_t E = c->n_routed_experts > 0 ? c->n_routed_experts : 1;
    loads = calloc((size_t)(c->num_hidden_layers * E), sizeof(float));
    w = dsv3_st_writer_new();
    if (!loads || !w) { dsv3_fail(&err, DSV3_ERR_NOMEM, "out of memory"); goto fail; }
    dsv3_step_stats stats = {.expert_load = loads};
    dsv3_loss_params lp = {hp[0], hp[1]};
    dsv3_train_zero_grad(tm);
    if (dsv3_train_forward_backward(tm, ids, B, T, &lp, &stats, &err)) goto fail;
    if (add_scalar(w, "loss_main", stats.loss_main, &err) || add_scalar(w, "loss_mtp", stats.loss_mtp, &err) ||
        add_scalar(w, "loss_bal", stats.loss_bal, &err) || add_scalar(w, "loss_total", stats.loss_total, &err))
        goto fail;
    char name[700];
    for (int i = 0; i < dsv3_train_model_n_params(tm); i++) {
        dsv3_param *p = dsv3_train_model_param(tm, i);
        snprintf(name, sizeof name, "grad.%s", p->name);
        if (dsv3_st_writer_add(w, name, DSV3_F32, p->ndim, p->shape, p->g, &err)) goto fail;
    }
    dsv3_adamw_params ap = {hp[3], hp[4], hp[5], hp[6], hp[7], 0};
    if (dsv3_adamw_step(tm, &ap, 1, &err)) goto fail;
    for (int i = 0; i < dsv3_train_model_n_params(tm); i++) {
        dsv3_param *p = dsv3_train_model_param(tm, i);
        snprintf(name, sizeof name, "after_adamw.%s", p->name);
        if (dsv3_st_writer_add(w, name, DSV3_F32, p->ndim, p->shape, p->w, &err)) goto fail;
    }
    int64_t moe_i = 0;
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        float *bias = dsv3_train_model_bias(tm, l);
        if (!bias) continue;
        int64_t shape[1] = {E};
        snprintf(name, sizeof name, "expert_load.%lld", (long long)l);
        if (dsv3_st_writer_add(w, name, DSV3_F32, 1, shape, loads + moe_i * E, &err)) goto fail;
        dsv3_bias_update(bias, loads + moe_i * E, E, hp[2]);
        snprintf(name, sizeof name, "bias_after_update.model.layers.%lld.mlp.gate.e_score_correction_bias", (long long)l);
        if (dsv3_st_writer_add(w, name, DSV3_F32, 1, shape, bias, &err)) goto fail;
        moe_i++;
    }
    if (dsv3_st_writer_save(w, out_path, &err)) goto fail;
    fprintf(stderr, "loss_main %.6f  loss_mtp %.6f  loss_bal %.6f  loss_total %.6f\n", stats.loss_main, stats.loss_mtp,
            stats.loss_bal, stats.loss_total);
    rc = 0;
fail:
    if (rc) cli_error("grad", &err);
    dsv3_st_writer_free(w);
    dsv3_train_model_free(tm);
    dsv3_st_close(in);
    free(ids);
    free(loads);
    return rc;
}
