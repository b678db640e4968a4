/* Compressed MLA KV cache (spec §3.7): per token per layer [c_KV ; k_R]. */
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

dsv3_status dsv3_kv_cache_new(const dsv3_model *m, int64_t max_tokens, dsv3_kv_cache **out, dsv3_error *err) {
    *out = NULL;
    const dsv3_config *c = &m->cfg;
    if (max_tokens <= 0 || max_tokens > ((int64_t)1 << 32))
        return dsv3_fail(err, DSV3_ERR_INVALID, "KV cache size %lld tokens out of range", (long long)max_tokens);
    dsv3_kv_cache *kc = calloc(1, sizeof *kc);
    if (!kc) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for KV cache");
    kc->cap = max_tokens;
    kc->row = c->kv_lora_rank + c->qk_rope_head_dim;
    kc->n_main = c->num_hidden_layers;
    kc->n_mtp = m->has_mtp ? 1 : 0;
    kc->dtype = m->kv_dtype;
    unsigned long long n;
    if (dsv3_mul_u64((unsigned long long)(kc->n_main + kc->n_mtp), (unsigned long long)max_tokens, &n) ||
        dsv3_mul_u64(n, (unsigned long long)kc->row * dsv3_dtype_size(kc->dtype), &n) || n > (size_t)-1 / 2) {
        free(kc);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "KV cache of %lld tokens overflows", (long long)max_tokens);
    }
    kc->data = malloc((size_t)n);
    if (!kc->data) {
        free(kc);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for a KV cache of %lld tokens (%llu bytes)",
                         (long long)max_tokens, n);
    }
    *out = kc;
    return DSV3_OK;
}

void dsv3_kv_cache_free(dsv3_kv_cache *c) {
    if (!c) return;
    free(c->data);
    free(c);
}

int64_t dsv3_kv_cache_len(const dsv3_kv_cache *c) { return c->len; }
int64_t dsv3_kv_cache_mtp_len(const dsv3_kv_cache *c) { return c->mtp_len; }
int64_t dsv3_kv_cache_capacity(const dsv3_kv_cache *c) { return c->cap; }

void dsv3_kv_cache_truncate(dsv3_kv_cache *c, int64_t len, int64_t mtp_len) {
    if (len >= 0 && len < c->len) c->len = len;
    if (mtp_len >= 0 && mtp_len < c->mtp_len) c->mtp_len = mtp_len;
}

dsv3_dtype dsv3_kv_cache_dtype(const dsv3_kv_cache *c) { return c->dtype; }

int64_t dsv3_kv_cache_bytes_per_token(const dsv3_model *m) {
    const dsv3_config *c = &m->cfg;
    return (c->num_hidden_layers + (m->has_mtp ? 1 : 0)) * (c->kv_lora_rank + c->qk_rope_head_dim) *
           (int64_t)dsv3_dtype_size(m->kv_dtype);
}

dsv3_status dsv3_model_set_kv_dtype(dsv3_model *m, dsv3_dtype dt, dsv3_error *err) {
    if (dt != DSV3_F32 && dt != DSV3_BF16)
        return dsv3_fail(err, DSV3_ERR_INVALID, "KV cache dtype %s is not supported (want F32 or BF16)",
                         dt >= 0 && dt < DSV3_DTYPE_COUNT ? dsv3_dtype_name(dt) : "?");
    m->kv_dtype = dt;
    return DSV3_OK;
}

dsv3_dtype dsv3_model_kv_dtype(const dsv3_model *m) { return m->kv_dtype; }

int dsv3_kv_dtype_parse(const char *s, dsv3_dtype *out) {
    if (!s) return -1;
    if (!strcmp(s, "f32") || !strcmp(s, "F32")) *out = DSV3_F32;
    else if (!strcmp(s, "bf16") || !strcmp(s, "BF16")) *out = DSV3_BF16;
    else return -1;
    return 0;
}
