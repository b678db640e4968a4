/* Randomly initialised DeepSeek-V3 checkpoints (for benchmarks and tests).
 *
 * Writes DIR/config.json (the given config, with quantization_config added for
 * FP8 or removed otherwise) and safetensors shards holding every tensor that
 * dsv3_model_load needs, plus the MTP layer(s) with their embed/head copies
 * (spec §2.3). Weights ~ N(0, std²) (technical report init, std 0.006), RMSNorm
 * weights 1, e_score_correction_bias 0 (F32). Each tensor's values depend only
 * on (seed, tensor name, element index), never on dtype, sharding or threads,
 * so an FP8 checkpoint dequantises to the BF16 one of the same seed within FP8
 * precision. */
#ifndef DSV3_INIT_MODEL_H
#define DSV3_INIT_MODEL_H

#include <stdint.h>

#include "dsv3/status.h"

typedef enum {
    DSV3_INIT_BF16, /* BF16 weights and norms, F32 router bias */
    DSV3_INIT_FP8,  /* projections F8_E4M3 + 128x128 F32 block scales; embed/head/eh_proj/router/norms BF16 */
    DSV3_INIT_F32   /* everything F32 */
} dsv3_init_dtype;

typedef struct {
    dsv3_init_dtype dtype;
    uint64_t seed;
    float std;              /* standard deviation of the weights (> 0) */
    uint64_t shard_size;    /* max bytes of tensor data per shard (a bigger tensor gets its own); 0 = one file */
    int overwrite;          /* replace an existing checkpoint in out_dir (else that is an error) */
    int fp8_lm_head;        /* DSV3_INIT_FP8: lm_head.weight in FP8 + scales too (else BF16, as DeepSeek-V3) */
    int ue8m0_scales;       /* DSV3_INIT_FP8: power-of-two block scales ("scale_fmt": "ue8m0", as DeepSeek-V3.1) */
    /* Optional progress callback, called after each shard is written. */
    void (*progress)(void *ctx, int shard, int n_shards, const char *path);
    void *progress_ctx;
} dsv3_init_opts;

typedef struct {
    int64_t n_tensors;      /* incl. scale tensors */
    int64_t n_params;       /* weight elements (scales excluded) */
    int n_shards;           /* 1 = a single model.safetensors */
    uint64_t total_bytes;   /* tensor data bytes over all shards */
} dsv3_init_result;

#define DSV3_INIT_DEFAULT_STD 0.006f
#define DSV3_INIT_DEFAULT_SHARD_SIZE (2000000000ull)

/* dtype bf16, seed 0, std 0.006, 2 GB shards, no overwrite, no progress callback. */
void dsv3_init_opts_default(dsv3_init_opts *o);

/* Creates out_dir (and missing parents) and writes the checkpoint. If out_dir
 * already has config.json, model.safetensors, model-*-of-*.safetensors or the
 * index, fails with DSV3_ERR_INVALID unless o->overwrite; with it, those model
 * files are removed first (other files are left alone). res may be NULL. */
dsv3_status dsv3_init_model(const char *config_path, const char *out_dir, const dsv3_init_opts *o,
                            dsv3_init_result *res, dsv3_error *err);

/* The deterministic stream: out[i] = std * z(seed, name, start + i), z ~ N(0, 1)
 * (Box-Muller on a counter-based splitmix64). Exposed for tests. */
void dsv3_init_normal(uint64_t seed, const char *name, uint64_t start, uint64_t n, float std, float *out);

#endif
