/* Writing checkpoint directories (shared by init-model and quantize). */
#ifndef DSV3_MODEL_CKPT_OUT_H
#define DSV3_MODEL_CKPT_OUT_H

#include <jansson.h>

#include "dsv3/status.h"

/* Creates out_dir (mkdir -p) and checks it is a writable directory. If it
 * already holds a checkpoint (config.json, model.safetensors,
 * model-NNNNN-of-NNNNN.safetensors or the index), fails with DSV3_ERR_INVALID
 * unless overwrite; checks that needed_bytes fit in the free space (counting
 * the old checkpoint files that get replaced); then removes the old checkpoint
 * files (index first; other files are left alone). */
dsv3_status dsv3_out_dir_prepare(const char *out_dir, int overwrite, double needed_bytes, dsv3_error *err);

/* Writes text plus a newline to path via a temporary file + rename. */
dsv3_status dsv3_write_text_file(const char *path, const char *text, dsv3_error *err);

/* Copies src to dst (via a temporary file, fsynced, + rename). */
dsv3_status dsv3_copy_file(const char *src, const char *dst, dsv3_error *err);

/* Sets root["quantization_config"] to DeepSeek-V3's block-FP8 config
 * {"activation_scheme":"dynamic","fmt":"e4m3","quant_method":"fp8",
 *  "weight_block_size":[block,block]}, plus "scale_fmt":"ue8m0" (power-of-two
 * scales, as DeepSeek-V3.1) when ue8m0. Returns 0, or -1 when out of memory. */
int dsv3_json_set_fp8_quant_config(json_t *root, int block, int ue8m0);

#endif
