/* HuggingFace tokenizer.json byte-level BPE tokenizer and the DeepSeek-V3
 * chat template (spec §5.1).
 *
 * Supported tokenizer.json components (anything else is rejected at load
 * time with DSV3_ERR_UNSUPPORTED naming the component):
 *   model          BPE (vocab; merges as "a b" strings or ["a","b"] pairs;
 *                  unk_token, fuse_unk, byte_fallback,
 *                  continuing_subword_prefix, end_of_word_suffix; no dropout)
 *   added_tokens   special and non-special, lstrip/rstrip/single_word,
 *                  normalized (matched after normalization) or not;
 *                  leftmost-longest matching in the raw text
 *   normalizer     null, Sequence, NFC
 *   pre_tokenizer  null, Sequence, Split (Regex/String pattern; Isolated,
 *                  Removed, MergedWithPrevious, MergedWithNext, Contiguous;
 *                  invert), ByteLevel (add_prefix_space, use_regex; must be
 *                  the last step), Digits
 *   post_processor null, ByteLevel, TemplateProcessing (single sequence)
 *   decoder        null, ByteLevel, Sequence holding one ByteLevel
 * Regexes follow Oniguruma (HF tokenizers) semantics. They run on PCRE2
 * (UTF + Unicode properties + JIT) with Oniguruma's \s \w \h translated;
 * the three DeepSeek-V3 Split regexes have hand-written matchers (checked
 * against PCRE2 in the tests) whose Unicode classes are those of HF's
 * Oniguruma (Unicode 16.0). PCRE2 10.42 has Unicode 14.0, so other patterns
 * can differ from HF on the ~10k code points assigned in Unicode 15/16.
 * Special tokens: DSV3_TOK_ADD_SPECIAL follows a TemplateProcessing
 * post-processor when there is one, else tokenizer_config.json's
 * add_bos_token / add_eos_token.
 *
 * Input text is bytes: invalid UTF-8 is accepted (invalid bytes never match
 * a regex item and go through byte-level BPE as-is), so with a byte-level
 * model decode(encode(x)) == x for every byte string x.
 *
 * Threading: a loaded dsv3_tokenizer is immutable and may be shared by any
 * number of threads. dsv3_tokenizer_encode() is thread-safe (it uses an
 * internal encoder when free, a temporary one otherwise); for sustained
 * multi-threaded encoding give each thread its own dsv3_tok_encoder. */
#ifndef DSV3_TOKENIZER_H
#define DSV3_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "dsv3/status.h"

typedef struct dsv3_tokenizer dsv3_tokenizer;
typedef struct dsv3_tok_encoder dsv3_tok_encoder;

/* Growable id buffer. Zero-initialise ({0}); release with dsv3_ids_free. */
typedef struct {
    int32_t *data;
    size_t len, cap;
} dsv3_ids;

void dsv3_ids_free(dsv3_ids *ids);
dsv3_status dsv3_ids_push(dsv3_ids *ids, int32_t id, dsv3_error *err);

/* ---- loading ---- */

/* Loads DIR/tokenizer.json and, if present, DIR/tokenizer_config.json
 * (bos/eos/pad tokens, add_bos_token/add_eos_token, chat_template). */
dsv3_status dsv3_tokenizer_load(const char *dir, dsv3_tokenizer **out, dsv3_error *err);

/* Same from memory. config_json may be NULL. The buffers are not retained. */
dsv3_status dsv3_tokenizer_load_mem(const char *tokenizer_json, size_t len,
                                    const char *config_json, size_t config_len,
                                    dsv3_tokenizer **out, dsv3_error *err);

void dsv3_tokenizer_free(dsv3_tokenizer *tok);

/* ---- vocabulary ---- */

/* 1 + the largest id (model vocab and added tokens). */
int32_t dsv3_tokenizer_vocab_size(const dsv3_tokenizer *tok);
/* Special ids from tokenizer_config.json (bos_token, eos_token, pad_token);
 * -1 when not configured. */
int32_t dsv3_tokenizer_bos_id(const dsv3_tokenizer *tok);
int32_t dsv3_tokenizer_eos_id(const dsv3_tokenizer *tok);
int32_t dsv3_tokenizer_pad_id(const dsv3_tokenizer *tok);
/* Token string as stored in tokenizer.json (byte-level form, e.g. "Ġworld"),
 * or NULL for an unused/out-of-range id. *len (if non-NULL) gets its length. */
const char *dsv3_tokenizer_id_to_token(const dsv3_tokenizer *tok, int32_t id, size_t *len);
/* Id of a token string (added tokens first, then the model vocab); -1 if none. */
int32_t dsv3_tokenizer_token_to_id(const dsv3_tokenizer *tok, const char *s, size_t len);
/* The raw bytes a token decodes to (what decode emits for it), or NULL. */
const char *dsv3_tokenizer_token_bytes(const dsv3_tokenizer *tok, int32_t id, size_t *len);
/* 1 if id is an added token marked "special" (e.g. <｜begin▁of▁sentence｜>). */
int dsv3_tokenizer_is_special(const dsv3_tokenizer *tok, int32_t id);

/* ---- encoding ---- */

/* Encode flags. */
#define DSV3_TOK_ADD_SPECIAL 1u /* add BOS/EOS per the post-processor / tokenizer_config */

/* Appends the ids of text[0..len) to out (out->len grows). Special tokens
 * written in the text are matched as added tokens. Thread-safe. */
dsv3_status dsv3_tokenizer_encode(const dsv3_tokenizer *tok, const char *text, size_t len,
                                  unsigned flags, dsv3_ids *out, dsv3_error *err);

/* A reusable encoder (scratch buffers + a cache of BPE results); use one per
 * thread. */
dsv3_status dsv3_tok_encoder_new(const dsv3_tokenizer *tok, dsv3_tok_encoder **out, dsv3_error *err);
void dsv3_tok_encoder_free(dsv3_tok_encoder *enc);
dsv3_status dsv3_tok_encoder_encode(dsv3_tok_encoder *enc, const char *text, size_t len,
                                    unsigned flags, dsv3_ids *out, dsv3_error *err);

/* ---- decoding ---- */

#define DSV3_TOK_SKIP_SPECIAL 1u /* drop special added tokens (as HF skip_special_tokens) */

/* Decodes ids into a malloc'd, NUL-terminated byte string (*out, length
 * *out_len; free() it). Bytes are exact: invalid UTF-8 that was encoded is
 * restored as-is. Unknown ids are an error. */
dsv3_status dsv3_tokenizer_decode(const dsv3_tokenizer *tok, const int32_t *ids, size_t n,
                                  unsigned flags, char **out, size_t *out_len, dsv3_error *err);

/* Incremental decoder for generation: feed ids one at a time and print the
 * returned text; bytes of an incomplete UTF-8 sequence at the end are held
 * back until the next id completes them (or flush). Bytes that can never
 * form valid UTF-8 are passed through unchanged. */
typedef struct {
    const dsv3_tokenizer *tok;
    unsigned flags;            /* DSV3_TOK_SKIP_SPECIAL */
    char *buf;                 /* internal: returned text lives here */
    size_t cap;
    unsigned char pend[4];     /* held-back bytes of an incomplete sequence */
    int npend;
    int started;               /* internal */
} dsv3_tok_stream;

void dsv3_tok_stream_init(dsv3_tok_stream *s, const dsv3_tokenizer *tok, unsigned flags);
/* *text / *len: the newly complete text (valid until the next call). */
dsv3_status dsv3_tok_stream_push(dsv3_tok_stream *s, int32_t id, const char **text, size_t *len,
                                 dsv3_error *err);
/* Returns whatever is held back (possibly an incomplete sequence). */
void dsv3_tok_stream_flush(dsv3_tok_stream *s, const char **text, size_t *len);
void dsv3_tok_stream_free(dsv3_tok_stream *s);

/* ---- chat template ---- */

typedef struct {
    const char *type;       /* "function" */
    const char *name;
    const char *arguments;  /* JSON text, inserted verbatim */
} dsv3_tool_call;

typedef struct {
    const char *role;       /* "system", "user", "assistant", "tool"; others are ignored */
    const char *content;    /* NULL = none (an assistant turn made of tool calls) */
    const dsv3_tool_call *tool_calls;
    size_t n_tool_calls;
} dsv3_chat_message;

/* 1 if tokenizer_config.json has a chat template this library renders. */
int dsv3_tokenizer_has_chat_template(const dsv3_tokenizer *tok);

/* Renders messages with the model's chat template (recognised from
 * tokenizer_config.json; currently the DeepSeek-V3 template) into a malloc'd
 * NUL-terminated string. Unknown templates and missing fields the template
 * needs are errors. */
dsv3_status dsv3_tokenizer_apply_chat_template(const dsv3_tokenizer *tok, const dsv3_chat_message *msgs,
                                               size_t n, int add_generation_prompt, char **out,
                                               size_t *out_len, dsv3_error *err);

/* Same, with messages given as a JSON array text in the OpenAI/HF format:
 * [{"role": ..., "content": ..., "tool_calls": [{"type", "function": {"name",
 * "arguments"}}]}]. A missing "content" is an error except for roles the
 * template ignores; "content": null is "none". */
dsv3_status dsv3_tokenizer_apply_chat_template_json(const dsv3_tokenizer *tok, const char *messages_json,
                                                    size_t len, int add_generation_prompt, char **out,
                                                    size_t *out_len, dsv3_error *err);

#endif
