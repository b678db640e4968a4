/* Training data: binary token shards and a deterministic batch sampler.
 *
 * Token shard file (little-endian):
 *   bytes 0..7   magic "DSV3TOKS"
 *   bytes 8..11  u32 version (1)
 *   bytes 12..15 u32 bytes per token (2 or 4)
 *   bytes 16..23 u64 token count N
 *   bytes 24..31 u64 vocabulary size (every token < this)
 *   bytes 32..   N tokens (documents packed, separated by EOS)
 */
#ifndef DSV3_DATA_H
#define DSV3_DATA_H

#include <stdint.h>

#include "dsv3/status.h"

#define DSV3_SHARD_MAGIC "DSV3TOKS"
#define DSV3_SHARD_HEADER 32

typedef struct dsv3_token_shard dsv3_token_shard;

dsv3_status dsv3_shard_open(const char *path, dsv3_token_shard **out, dsv3_error *err);
void dsv3_shard_close(dsv3_token_shard *s);
uint64_t dsv3_shard_len(const dsv3_token_shard *s);
uint64_t dsv3_shard_vocab(const dsv3_token_shard *s);
int32_t dsv3_shard_token(const dsv3_token_shard *s, uint64_t i);
/* Writes tokens to path atomically (temp file + fsync + rename). */
dsv3_status dsv3_shard_write(const char *path, const int32_t *tokens, uint64_t n, uint64_t vocab, dsv3_error *err);

/* Splits the shard into non-overlapping windows of seq_len tokens; the last
 * val_frac of windows (at least one when val_frac > 0) are validation; training
 * windows are visited in a seeded random order, reshuffled every epoch. */
typedef struct {
    const dsv3_token_shard *shard;
    int64_t seq_len, n_windows, n_train, n_val;
    uint64_t seed;
    int64_t *perm;          /* permutation of the current epoch */
    uint64_t perm_epoch;
} dsv3_sampler_data;

dsv3_status dsv3_data_init(dsv3_sampler_data *d, const dsv3_token_shard *s, int64_t seq_len, double val_frac,
                           uint64_t seed, dsv3_error *err);
/* Fills ids[B*seq_len] with training sample indices cursor .. cursor+B-1 (global, across epochs). */
void dsv3_data_train_batch(dsv3_sampler_data *d, uint64_t cursor, int64_t B, int32_t *ids);
void dsv3_data_free(dsv3_sampler_data *d);
/* Validation window i (0 <= i < n_val) into ids[seq_len]. */
void dsv3_data_val_window(const dsv3_sampler_data *d, int64_t i, int32_t *ids);

#endif
