/* Internal structures of the training path (the files of src/train). */
#ifndef DSV3_TRAIN_INTERNAL_H
#define DSV3_TRAIN_INTERNAL_H

#include "dsv3/ops.h"
#include "dsv3/train.h"
#include "model/model_internal.h" /* DSV3_MAX_MTP */

typedef struct {
    dsv3_param *gate, *up, *down;
} tffn;

typedef struct {
    dsv3_param *attn_norm, *ffn_norm;
    dsv3_param *q_a, *q_a_norm, *q_b, *q_proj;
    dsv3_param *kv_a, *kv_a_norm, *kv_b, *o;
    int is_moe;
    tffn mlp;
    dsv3_param *router;
    float *bias;          /* e_score_correction_bias (not trained by gradient) */
    tffn *experts;
    tffn shared;
    int has_shared;
} tlayer;

typedef struct {
    dsv3_param *enorm, *hnorm, *eh_proj, *head_norm;
    tlayer block;
} tmtp;

struct dsv3_train_model {
    dsv3_config cfg;
    dsv3_param *params;
    int n_params;
    dsv3_param *embed, *lm_head, *final_norm;
    tlayer *layers;
    int has_mtp, n_mtp;   /* MTP depths D (modules model.layers.L .. L+D-1) */
    tmtp mtp[DSV3_MAX_MTP];
    float **biases;       /* [num_hidden_layers] (NULL for dense) */
    float *rope_freqs;
    float sigma, rope_amp;
    char *config_json;    /* config.json text of the source checkpoint */
    float *big[4];        /* reused [tokens, vocab] buffers (logits and their gradients) */
    int64_t big_cap[4];
};

/* Sequence layout of a block call: B sequences of S tokens each, rows b*S+s, position s. */
typedef struct {
    int64_t B, S;
} tseq;

/* ---- f32 GEMMs (src/train/gemm_f32.c); each C element reduces over k in order ---- */
void t_gemm_nn(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K, int acc);
int t_gemm_nt(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K);     /* C = A·Bᵀ */
int t_gemm_tn_acc(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t K); /* C += Aᵀ·B */

/* ---- f32 matmul helpers over params (fixed reduction orders) ---- */
/* out[n, W.rows] = x[n, W.cols] · Wᵀ */
void t_mm(float *out, const float *x, int64_t n, const dsv3_param *W);
/* dx[n, cols] (+)= dy[n, rows] · W ; W->g += dyᵀ · x. dx may be NULL. accumulate: add into dx. */
void t_mm_bwd(float *dx, int accumulate, const float *dy, const float *x, int64_t n, dsv3_param *W);
/* rows of RMSNorm with weight param w */
void t_rms(float *y, const float *x, int64_t n, const dsv3_param *w, float eps);
/* dx (+)= ∂/∂x, w->g += ∂/∂w, for y = rmsnorm(x)·w */
void t_rms_bwd(float *dx, int accumulate, const float *dy, const float *x, int64_t n, dsv3_param *w, float eps);
/* Interleaved-pair RoPE (spec §3.5) at position pos; inverse rotates by −angle. */
void t_rope(float *v, int64_t dim, int64_t pos, const float *freqs, float amp, int inverse);

/* ---- blocks: forward saves what backward needs ---- */
typedef struct mla_cache mla_cache;
typedef struct ffn_cache ffn_cache;

/* x[n, H] += MLA(attn_norm(x)); returns a cache for mla_backward (NULL on OOM). */
mla_cache *mla_train_forward(const dsv3_train_model *tm, const tlayer *L, tseq sq, float *x);
/* dx[n, H]: gradient w.r.t. the block output (residual); adds the gradient
 * through the attention branch into dx and params. Frees the cache. */
void mla_train_backward(dsv3_train_model *tm, tlayer *L, tseq sq, mla_cache *c, float *dx);
void mla_cache_release(mla_cache *c); /* frees a cache without a backward pass */

/* x += FFN(ffn_norm(x)) (dense or MoE). load: per-expert counts (+=) or NULL.
 * For MoE with bal_alpha > 0 also computes the sequence-wise balance loss into *bal. */
ffn_cache *ffn_train_forward(const dsv3_train_model *tm, const tlayer *L, tseq sq, float *x, float bal_alpha,
                             double *bal, float *load);
void ffn_train_backward(dsv3_train_model *tm, tlayer *L, tseq sq, ffn_cache *c, float *dx);
void ffn_cache_release(ffn_cache *c);

#endif
