/* Post-training quantisation of a checkpoint to DeepSeek-V3's block FP8 format
 * (spec §2.4): `dsv3 quantize --to fp8`.
 *
 * Every 2-D projection weight that DeepSeek-V3 ships as FP8 (attention
 * q_a/q_b/q_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj; dense, shared and
 * routed expert gate/up/down, in the main layers and the MTP layers) becomes
 * F8_E4M3 plus "<name>_scale_inv" F32 [ceil(rows/B), ceil(cols/B)] with
 * scale = max(block amax, 1e-12) / 448 per BxB block; every other tensor
 * (embeddings, lm_head, norms, router gate, e_score_correction_bias, eh_proj)
 * is copied unchanged (lm_head too unless fp8_lm_head). */
#ifndef DSV3_QUANTIZE_H
#define DSV3_QUANTIZE_H

#include <stdint.h>

#include "dsv3/status.h"

typedef struct {
    int block;              /* block edge B (default 128; 1..65536) */
    int overwrite;          /* replace an existing checkpoint in out_dir (else that is an error) */
    int fp8_lm_head;        /* also quantise lm_head.weight (DeepSeek-V3 keeps it BF16; FP8 halves the
                             * bytes decode reads for it, the largest matrix of small models) */
    int ue8m0_scales;       /* block scales rounded up to powers of two ("scale_fmt": "ue8m0" in the config,
                             * as DeepSeek-V3.1 and later; the CPU decode then skips a multiply per weight) */
    /* Optional progress callback, called after each output shard is written. */
    void (*progress)(void *ctx, int shard, int n_shards, const char *path);
    void *progress_ctx;
} dsv3_quantize_opts;

typedef struct {
    int64_t n_quantized;    /* weights converted to FP8 */
    int64_t n_fp8_kept;     /* weights that were already FP8 (copied with their scales) */
    int64_t n_copied;       /* other tensors copied unchanged */
    int n_shards;           /* output files (one per input file) */
    uint64_t in_bytes, out_bytes; /* tensor data bytes */
    int64_t n_tokenizer_files;    /* tokenizer/generation files copied */
} dsv3_quantize_result;

/* block 128, no overwrite, no progress callback. */
void dsv3_quantize_opts_default(dsv3_quantize_opts *o);

/* 1 if the tensor name is one that DeepSeek-V3 stores as FP8 (see above). */
int dsv3_quantize_is_fp8_weight(const char *name);

/* Reads the checkpoint in in_dir (validated like dsv3_model_load: config.json,
 * every tensor's presence, dtype and shape), writes out_dir/config.json (with
 * quantization_config {"quant_method":"fp8","fmt":"e4m3","activation_scheme":
 * "dynamic","weight_block_size":[B,B]}), the quantised tensors in one output
 * file per input file (same names; model.safetensors.index.json when the input
 * has one), and copies the tokenizer files. Weights already in FP8 are kept
 * as they are when their block size is B (and, with ue8m0_scales, when their
 * scales are all powers of two), else it is an error. out_dir must
 * not be in_dir; an existing checkpoint there is an error unless o->overwrite.
 * Peak memory is about one output shard plus one tensor. res may be NULL. */
dsv3_status dsv3_quantize_fp8(const char *in_dir, const char *out_dir, const dsv3_quantize_opts *o,
                              dsv3_quantize_result *res, dsv3_error *err);

#endif
