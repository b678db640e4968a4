/* Byte-level BPE tokenizer training (dsv3 tokenizer-train).
 *
 * Produces a HuggingFace tokenizer.json + tokenizer_config.json that
 * dsv3_tokenizer_load and HF `tokenizers` both load with identical encodings:
 *   - pre-tokenizer: the exact DeepSeek-V3 one (three Split regexes +
 *     ByteLevel without prefix space / regex), no normalizer;
 *   - model: BPE; ids 0..7 are the special tokens (also in added_tokens,
 *     special: true), then the 256 byte tokens in byte order, then one id
 *     per new token in merge order; merges as ["a","b"] pairs;
 *   - post-processor: TemplateProcessing that prepends BOS (so BOS is added
 *     alike by dsv3 with DSV3_TOK_ADD_SPECIAL, HF tokenizers and transformers);
 *   - decoder: ByteLevel; tokenizer_config.json: BOS/EOS/pad (ids 0/1/2),
 *     add_bos_token true, add_eos_token false, tokenizer_class
 *     PreTrainedTokenizerFast and the DeepSeek-V3 chat template (so
 *     dsv3_tokenizer_has_chat_template holds and generate --chat works).
 *
 * Training: the fed text is cut at special-token strings, pre-tokenized into
 * words, and unique words are counted. Then the classic BPE loop: the most
 * frequent adjacent pair (counted over unique words, weighted by frequency)
 * is merged, until the vocabulary has vocab_size ids or no pair occurs
 * min_frequency times. Ties between pairs of equal count go to the pair
 * whose left token has the smallest bytes (memcmp order, a prefix first),
 * then the smallest right-token bytes; so the output depends only on the
 * multiset of words (not on hash order or feed order). */
#ifndef DSV3_BPE_TRAIN_H
#define DSV3_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "dsv3/status.h"

#define DSV3_BPE_N_SPECIAL 8 /* ids 0..7, see dsv3_bpe_special_tokens */

/* The special tokens, by id: BOS, EOS, pad, fim hole, fim begin, fim end,
 * User, Assistant (UTF-8 strings). */
extern const char *const dsv3_bpe_special_tokens[DSV3_BPE_N_SPECIAL];

typedef struct dsv3_bpe_trainer dsv3_bpe_trainer;

typedef struct {
    uint64_t bytes;         /* bytes fed */
    uint64_t words;         /* pre-tokenized words (with repetition) */
    uint64_t unique_words;
    int64_t merges;         /* merges learned */
    int32_t vocab_size;     /* final vocabulary (specials + bytes + new tokens) */
    double pretokenize_s, train_s; /* wall time of feeding and of the merge loop */
} dsv3_bpe_stats;

dsv3_status dsv3_bpe_trainer_new(dsv3_bpe_trainer **out, dsv3_error *err);
void dsv3_bpe_trainer_free(dsv3_bpe_trainer *t);

/* Pre-tokenizes text[0..len) and counts its words. Each call is an
 * independent text (no piece spans two calls). Not after train. */
dsv3_status dsv3_bpe_trainer_feed(dsv3_bpe_trainer *t, const char *text, size_t len, dsv3_error *err);
/* Feeds a whole file. */
dsv3_status dsv3_bpe_trainer_feed_file(dsv3_bpe_trainer *t, const char *path, dsv3_error *err);

/* Learns merges until the vocabulary (8 specials + 256 bytes + new tokens)
 * has vocab_size ids (>= 264) or the best pair occurs < min_frequency times
 * (min_frequency >= 1). Call once. */
dsv3_status dsv3_bpe_trainer_train(dsv3_bpe_trainer *t, int32_t vocab_size, int64_t min_frequency, dsv3_error *err);

/* Writes dir/tokenizer.json and dir/tokenizer_config.json (dir is created,
 * with parents, if missing; files are replaced atomically). After train. */
dsv3_status dsv3_bpe_trainer_write(const dsv3_bpe_trainer *t, const char *dir, dsv3_error *err);

void dsv3_bpe_trainer_stats(const dsv3_bpe_trainer *t, dsv3_bpe_stats *st);

#endif
