/* Text corpus -> packed token stream (dsv3 tokenize-corpus), spec §5.1.
 *
 * Input files are split into documents; each document is tokenized without
 * BOS and followed by EOS (document packing with EOS separators). With
 * probability fim_rate a document is turned into Fill-in-the-Middle in PSM
 * form: two cut points are drawn uniformly among its character boundaries
 * (UTF-8: never inside a multi-byte character), giving prefix | middle |
 * suffix, and the document becomes
 *     <｜fim▁begin｜> prefix <｜fim▁hole｜> suffix <｜fim▁end｜> middle <EOS>
 * where the three parts are tokenized separately and the special ids are
 * inserted directly. Special-token strings written in a document's text are
 * matched as special tokens, as dsv3_tokenizer_encode always does.
 *
 * Randomness comes from a per-document stream derived from (seed, document
 * index over all inputs), so the output depends only on the inputs, the
 * options and the seed, not on the number of threads. */
#ifndef DSV3_CORPUS_H
#define DSV3_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "dsv3/status.h"
#include "dsv3/tokenizer.h"

typedef enum {
    DSV3_DOCS_BLANK_LINE = 0, /* documents are separated by one or more blank (whitespace-only) lines */
    DSV3_DOCS_LINE,           /* every non-blank line is a document */
    DSV3_DOCS_FILE            /* every non-empty file is one document, verbatim */
} dsv3_doc_mode;

/* A document: text[off .. off+len). In BLANK_LINE / LINE mode it excludes
 * the newline (LF or CRLF) that ends its last line. */
typedef struct {
    size_t off, len;
} dsv3_doc_span;

/* Splits text into documents; *docs is malloc'd (free it), *n its length. */
dsv3_status dsv3_corpus_split(const char *text, size_t len, dsv3_doc_mode mode, dsv3_doc_span **docs, size_t *n,
                              dsv3_error *err);

/* The FIM decision for document number doc_index (0-based over all inputs):
 * returns 1 and the byte offsets 0 <= *cut0 <= *cut1 <= len of the middle
 * part when the document gets FIM, else 0. */
int dsv3_corpus_fim_cuts(uint64_t seed, uint64_t doc_index, double fim_rate, const char *doc, size_t len,
                         size_t *cut0, size_t *cut1);

typedef struct {
    dsv3_doc_mode mode;
    double fim_rate; /* in [0, 1] */
    uint64_t seed;
    int threads;     /* 0 = all (OpenMP default) */
} dsv3_corpus_opts;

typedef struct {
    uint64_t files, docs, tokens, bytes, fim_docs;
} dsv3_corpus_stats;

/* Ids the corpus needs: EOS always, the three FIM tokens when fim_rate > 0
 * (looked up by the DeepSeek-V3 names). Clear error when one is missing. */
typedef struct {
    int32_t eos, fim_begin, fim_hole, fim_end;
} dsv3_corpus_ids;
dsv3_status dsv3_corpus_special_ids(const dsv3_tokenizer *tok, double fim_rate, dsv3_corpus_ids *ids,
                                    dsv3_error *err);

/* Tokenizes the documents of text[0..len) (one input "file"), appending to
 * out; documents are numbered from stats->docs on, and stats is updated
 * (stats->files is not). */
dsv3_status dsv3_corpus_tokenize_text(const dsv3_tokenizer *tok, const char *text, size_t len,
                                      const dsv3_corpus_opts *o, dsv3_ids *out, dsv3_corpus_stats *stats,
                                      dsv3_error *err);

/* Reads and tokenizes each file in order (stats zeroed first). */
dsv3_status dsv3_corpus_tokenize_files(const dsv3_tokenizer *tok, const char *const *paths, size_t n_paths,
                                       const dsv3_corpus_opts *o, dsv3_ids *out, dsv3_corpus_stats *stats,
                                       dsv3_error *err);

#endif
