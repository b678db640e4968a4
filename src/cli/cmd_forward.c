/* dsv3 forward --model DIR --input IN.safetensors --output OUT.safetensors */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/model.h"
#include "dsv3/safetensors.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 forward --model DIR --input IN.safetensors --output OUT.safetensors [-t N]\n\n"
               "Reads I64 (or I32) 'input_ids' [B,T] and writes F32 tensors:\n"
               "  logits [B,T,V], final_hidden [B,T,H], layer_outputs [L,B,T,H],\n"
               "  mtp_logits [B,T-1,V] (when the model has an MTP layer and T >= 2),\n"
               "  router_topk_idx (I32) / router_topk_w [L_moe,B*T,K].\n"
               "  -t N   threads (default: all cores)\n");
}

int cmd_forward(int argc, char **argv) {
    const char *model_dir, *in_path, *out_path;
    int parsed = cli_parse_model_io("forward", argc, argv, usage, &model_dir, &in_path, &out_path);
    if (parsed >= 0) return parsed;

    dsv3_error err = {0};
    int rc = 1;
    dsv3_st_file *in = NULL;
    dsv3_model *m = NULL;
    dsv3_kv_cache **caches = NULL;
    dsv3_batch_item *items = NULL;
    int32_t *ids = NULL, *ridx = NULL;
    float *logits = NULL, *hidden = NULL, *layers = NULL, *rw = NULL, *mtp = NULL;
    dsv3_st_writer *w = NULL;
    int64_t n_caches = 0;

    if (dsv3_st_open(in_path, &in, &err)) goto fail;
    int64_t B, T;
    if (cli_read_input_ids(in, in_path, 1, &ids, &B, &T, &err)) goto fail;
    int64_t N = B * T;

    if (dsv3_model_load(model_dir, &m, &err)) goto fail;
    const dsv3_config *c = dsv3_model_config(m);
    int64_t V = c->vocab_size, H = c->hidden_size, L = c->num_hidden_layers, Lm = dsv3_model_n_moe_layers(m),
            K = c->num_experts_per_tok;
    caches = calloc(B, sizeof *caches);
    items = calloc(B, sizeof *items);
    logits = malloc(sizeof(float) * N * V);
    hidden = malloc(sizeof(float) * N * H);
    layers = malloc(sizeof(float) * L * N * H);
    ridx = malloc(sizeof(int32_t) * (Lm * N * K + 1));
    rw = malloc(sizeof(float) * (Lm * N * K + 1));
    if (!caches || !items || !logits || !hidden || !layers || !ridx || !rw) { dsv3_fail(&err, DSV3_ERR_NOMEM, "out of memory for outputs"); goto fail; }
    for (int64_t b = 0; b < B; b++) {
        if (dsv3_kv_cache_new(m, T, &caches[b], &err)) goto fail;
        n_caches = b + 1;
        items[b] = (dsv3_batch_item){caches[b], ids + b * T, T};
    }
    dsv3_forward_out out = {.logits = logits, .final_hidden = hidden, .layer_outputs = layers, .router_idx = ridx, .router_w = rw};
    if (dsv3_forward(m, items, (int)B, &out, &err)) goto fail;

    w = dsv3_st_writer_new();
    if (!w) { dsv3_fail(&err, DSV3_ERR_NOMEM, "out of memory"); goto fail; }
    int64_t s_logits[3] = {B, T, V}, s_hidden[3] = {B, T, H}, s_layers[4] = {L, B, T, H}, s_router[3] = {Lm, N, K};
    if (dsv3_st_writer_add(w, "logits", DSV3_F32, 3, s_logits, logits, &err) ||
        dsv3_st_writer_add(w, "final_hidden", DSV3_F32, 3, s_hidden, hidden, &err) ||
        dsv3_st_writer_add(w, "layer_outputs", DSV3_F32, 4, s_layers, layers, &err))
        goto fail;
    if (Lm > 0 && (dsv3_st_writer_add(w, "router_topk_idx", DSV3_I32, 3, s_router, ridx, &err) ||
                   dsv3_st_writer_add(w, "router_topk_w", DSV3_F32, 3, s_router, rw, &err)))
        goto fail;
    if (dsv3_model_has_mtp(m) && T >= 2) {
        mtp = malloc(sizeof(float) * B * (T - 1) * V);
        if (!mtp) { dsv3_fail(&err, DSV3_ERR_NOMEM, "out of memory"); goto fail; }
        for (int64_t b = 0; b < B; b++)
            if (dsv3_mtp_forward(m, caches[b], hidden + b * T * H, ids + b * T + 1, T - 1, mtp + b * (T - 1) * V, &err))
                goto fail;
        int64_t s_mtp[3] = {B, T - 1, V};
        if (dsv3_st_writer_add(w, "mtp_logits", DSV3_F32, 3, s_mtp, mtp, &err)) goto fail;
    }
    if (dsv3_st_writer_save(w, out_path, &err)) goto fail;
    rc = 0;
fail:
    if (rc) cli_error("forward", &err);
    dsv3_st_writer_free(w);
    if (caches)
        for (int64_t b = 0; b < n_caches; b++) dsv3_kv_cache_free(caches[b]);
    free(caches); free(items); free(ids); free(logits); free(hidden); free(layers); free(ridx); free(rw); free(mtp);
    dsv3_model_free(m);
    dsv3_st_close(in);
    return rc;
}
