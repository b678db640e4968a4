/* Every supported tokenizer.json component on small synthetic tokenizers.
 * Expected ids and decoded texts come from HF tokenizers 0.23 (the case
 * table below was produced by encoding each text with Tokenizer.from_str
 * on the same JSON). The tokenizer JSON is assembled here from a model spec
 * (byte-level: the 256 byte tokens plus one token per merge, in merge order;
 * char-level: k_char_vocab) and the component JSON of each case. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv3/tokenizer.h"
#include "../test.h"
#include "tokenizer/tokenizer_internal.h"

typedef struct {
    const char *name;
    const char *model;      /* {"kind": "byte"|"char", "pair", "unk", "fuse", "fallback", "prefix", "suffix", "merges"} */
    const char *components; /* {"added_tokens", "normalizer", "pre_tokenizer", "decoder"} */
    const char *text;
    const char *decoded;    /* HF decode(ids, skip_special_tokens=False) */
    /* check_decode is 0 where HF's decode is lossy (U+FFFD for bytes that are
     * not valid UTF-8, e.g. the added token "é" is the byte-level token of the
     * lone byte 0xE9); ours returns the exact bytes. */
    int32_t ids[64];
    int n_ids;
    int check_decode;
} comp_case;

static const comp_case k_cases[] = {
    {"split_Isolated",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 269, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 269}, 15, 1},
    {"split_Isolated_inv",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 269, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 269}, 15, 1},
    {"split_Removed",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Removed\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ababcx123xxabcd",
     {260, 261, 120, 264, 51, 266, 261, 100}, 8, 1},
    {"split_Removed_inv",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Removed\", \"invert\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "  \011  \012\012  ",
     {269, 9, 32, 32, 10, 10, 269}, 7, 1},
    {"split_MergedWithPrevious",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"MergedWithPrevious\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {97, 256, 32, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 269}, 16, 1},
    {"split_MergedWithPrevious_inv",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"MergedWithPrevious\", \"invert\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 269, 261, 258, 32, 264, 32, 51, 266, 10, 259, 98, 268, 269}, 14, 1},
    {"split_MergedWithNext",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"MergedWithNext\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 269, 261, 258, 32, 264, 32, 51, 266, 10, 259, 98, 268, 269}, 14, 1},
    {"split_MergedWithNext_inv",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"MergedWithNext\", \"invert\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {97, 256, 32, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 269}, 16, 1},
    {"split_Contiguous",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Contiguous\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 269, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 269}, 15, 1},
    {"split_Contiguous_inv",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Contiguous\", \"invert\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 269, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 269}, 15, 1},
    {"split1_Contiguous",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, \"behavior\": \"Contiguous\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 269, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 269}, 15, 1},
    {"split1_Contiguous_inv",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, \"behavior\": \"Contiguous\", \"invert\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 269, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 269}, 15, 1},
    {"split1_MergedWithPrevious",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, \"behavior\": \"MergedWithPrevious\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {97, 256, 32, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 32, 32}, 17, 1},
    {"split1_MergedWithPrevious_inv",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, \"behavior\": \"MergedWithPrevious\", \"invert\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 32, 32, 261, 258, 32, 264, 32, 51, 266, 10, 259, 98, 268, 32, 32}, 16, 1},
    {"split1_MergedWithNext",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, \"behavior\": \"MergedWithNext\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {260, 32, 32, 261, 258, 32, 264, 32, 51, 266, 10, 259, 98, 268, 32, 32}, 16, 1},
    {"split1_MergedWithNext_inv",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, \"behavior\": \"MergedWithNext\", \"invert\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     "ab  abc\011x 12 3xx\012\012abcd  ",
     {97, 256, 32, 261, 9, 120, 32, 264, 32, 51, 266, 10, 10, 261, 100, 32, 32}, 17, 1},
    {"split_empty_isolated",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"x*\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "abxxc xd",
     "abxxc xd",
     {97, 98, 266, 99, 32, 120, 100}, 7, 1},
    {"split_empty_removed",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"x*\"}, \"behavior\": \"Removed\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "abxxc xd",
     "abc d",
     {97, 98, 99, 32, 100}, 5, 1},
    {"split_empty_next",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"x*\"}, \"behavior\": \"MergedWithNext\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "abxxc xd",
     "abxxc xd",
     {97, 98, 266, 99, 32, 120, 100}, 7, 1},
    {"split_lookahead",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+(\077!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab   abc \302\205 x\343\200\200\343\200\200y",
     "ab   abc \302\205 x\343\200\200\343\200\200y",
     {260, 269, 32, 261, 32, 194, 133, 32, 120, 227, 128, 128, 227, 128, 128, 121}, 16, 1},
    {"split_string",
     "{\"kind\": \"byte\", \"pair\": false, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [\"b \304\240\", \"\304\240 x\", \"\304\211 x\", \"\304\212 a\", \"a b\", \"ab c\", \"\304\240 a\", \"\304\240a b\", \"1 2\", \"12 3\", \"x x\", \"xx x\", \"c d\", \"\304\240 \304\240\", \"\303\214 \304\243\", \"e \303\214\304\243\"]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"String\": \"b.\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "abcab.cb.ab",
     "abcab.cb.ab",
     {261, 97, 98, 46, 99, 98, 46, 260}, 8, 1},
    {"split_onig_classes",
     "{\"kind\": \"byte\", \"pair\": false, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [\"b \304\240\", \"\304\240 x\", \"\304\211 x\", \"\304\212 a\", \"a b\", \"ab c\", \"\304\240 a\", \"\304\240a b\", \"1 2\", \"12 3\", \"x x\", \"xx x\", \"c d\", \"\304\240 \304\240\", \"\303\214 \304\243\", \"e \303\214\304\243\"]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+|\\\\h+|[^\\\\s\\\\w]\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab_c\314\201 x1f.\303\251\342\200\277\302\205y",
     "ab_c\314\201 x1f.\303\251\342\200\277\302\205y",
     {260, 95, 99, 270, 32, 120, 49, 102, 46, 195, 169, 226, 128, 191, 194, 133, 121}, 17, 1},
    {"bytelevel_prefix0_regex0",
     "{\"kind\": \"byte\", \"pair\": false, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [\"b \304\240\", \"\304\240 x\", \"\304\211 x\", \"\304\212 a\", \"a b\", \"ab c\", \"\304\240 a\", \"\304\240a b\", \"1 2\", \"12 3\", \"x x\", \"xx x\", \"c d\", \"\304\240 \304\240\", \"\303\214 \304\243\", \"e \303\214\304\243\"]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "abc ab  x\01212's 3 \304\240ab",
     "abc ab  x\01212's 3 \304\240ab",
     {261, 262, 256, 257, 10, 264, 39, 115, 32, 51, 32, 196, 160, 260}, 14, 1},
    {"bytelevel_prefix0_regex1",
     "{\"kind\": \"byte\", \"pair\": false, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [\"b \304\240\", \"\304\240 x\", \"\304\211 x\", \"\304\212 a\", \"a b\", \"ab c\", \"\304\240 a\", \"\304\240a b\", \"1 2\", \"12 3\", \"x x\", \"xx x\", \"c d\", \"\304\240 \304\240\", \"\303\214 \304\243\", \"e \303\214\304\243\"]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "abc ab  x\01212's 3 \304\240ab",
     "abc ab  x\01212's 3 \304\240ab",
     {261, 32, 260, 32, 257, 10, 264, 39, 115, 32, 51, 32, 196, 160, 260}, 15, 1},
    {"bytelevel_prefix1_regex0",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": false}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "abc ab  x\01212's 3 \304\240ab",
     " abc ab  x\01212's 3 \304\240ab",
     {32, 261, 262, 256, 257, 10, 264, 39, 115, 32, 51, 32, 196, 160, 260}, 15, 1},
    {"bytelevel_prefix1_regex1",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "abc ab  x\01212's 3 \304\240ab",
     " abc ab  x\01212's 3 \304\240ab",
     {32, 261, 32, 260, 32, 257, 10, 264, 39, 115, 32, 51, 32, 196, 160, 260}, 16, 1},
    {"bytelevel_after_split",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\d\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "ab1ab 2x",
     " ab 1 ab  2 x",
     {32, 260, 32, 49, 32, 260, 32, 32, 50, 257}, 10, 1},
    {"digits_individual0",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "a123b 4567 \331\241\331\242x\302\262",
     "a123b 4567 \331\241\331\242x\302\262",
     {97, 265, 256, 52, 53, 54, 55, 32, 217, 161, 217, 162, 120, 194, 178}, 15, 1},
    {"digits_individual1",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "a123b 4567 \331\241\331\242x\302\262",
     "a123b 4567 \331\241\331\242x\302\262",
     {97, 49, 50, 51, 256, 52, 53, 54, 55, 32, 217, 161, 217, 162, 120, 194, 178}, 17, 1},
    {"nfc",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "e\314\201ab \341\270\213\314\243 \352\260\200\341\206\250 \342\204\253 A\314\212\314\201 \340\245\230 x",
     "\303\251ab \341\270\215\314\207 \352\260\201 \303\205 \307\272 \340\244\225\340\244\274 x",
     {195, 169, 260, 32, 225, 184, 141, 204, 135, 32, 234, 176, 129, 32, 195, 133, 32, 199, 186, 32, 224, 164, 149, 224, 164, 188, 32, 120}, 28, 1},
    {"nfc_sequence",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [], \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "e\314\201e\314\201 \341\204\200\341\205\241\341\206\250",
     "\303\251\303\251 \352\260\201",
     {195, 169, 195, 169, 32, 234, 176, 129}, 8, 1},
    {"added_tokens",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [{\"id\": 300, \"content\": \"<X>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": false}, {\"id\": 301, \"content\": \"<XY>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": false}, {\"id\": 302, \"content\": \"ab\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}, {\"id\": 303, \"content\": \"[L]\", \"single_word\": false, \"lstrip\": true, \"rstrip\": false, \"normalized\": false, \"special\": false}, {\"id\": 304, \"content\": \"[R]\", \"single_word\": false, \"lstrip\": false, \"rstrip\": true, \"normalized\": false, \"special\": false}, {\"id\": 305, \"content\": \"[W]\", \"single_word\": true, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": false}, {\"id\": 306, \"content\": \"[N]\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": true, \"special\": false}, {\"id\": 307, \"content\": \"[B]\", \"single_word\": false, \"lstrip\": true, \"rstrip\": true, \"normalized\": false, \"special\": false}], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "x<X><XY>Y<X abc  [L]  q  [R]  z [W] a[W]b [W]. [N]xx  [B]  end",
     "x<X><XY>Y<X abc[L]  q  [R]z [W] a[W]b [W]. [N]xx[B]end",
     {120, 272, 273, 89, 60, 88, 32, 260, 99, 274, 269, 113, 269, 275, 122, 32, 276, 32, 97, 91, 87, 93, 98, 32, 276, 46, 32, 277, 266, 278, 101, 110, 100}, 33, 1},
    {"added_normalized_nfc",
     "{\"kind\": \"byte\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"b\", \"\304\240\"], [\"\304\240\", \"x\"], [\"\304\211\", \"x\"], [\"\304\212\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"\304\240\", \"a\"], [\"\304\240a\", \"b\"], [\"1\", \"2\"], [\"12\", \"3\"], [\"x\", \"x\"], [\"xx\", \"x\"], [\"c\", \"d\"], [\"\304\240\", \"\304\240\"], [\"\303\214\", \"\304\243\"], [\"e\", \"\303\214\304\243\"]]}",
     "{\"added_tokens\": [{\"id\": 300, \"content\": \"\303\251\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": true, \"special\": false}, {\"id\": 301, \"content\": \"e\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": false}, {\"id\": 302, \"content\": \"A\314\212\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": false}], \"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}}",
     "e\314\201 \303\251 A\314\212 \303\205x",
     "e\314\201 \357\277\275 A\314\212 \303\205x",
     {101, 270, 32, 233, 32, 272, 32, 195, 133, 120}, 10, 0},
    {"char_unk",
     "{\"kind\": \"char\", \"pair\": true, \"unk\": \"[UNK]\", \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"a\", \"b\"], [\"ab\", \"c\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \" \"}, \"behavior\": \"Removed\", \"invert\": false}, \"decoder\": null}",
     "abzzc yab d",
     "ab [UNK] [UNK] c [UNK] ab d",
     {4, 0, 0, 3, 0, 4, 10}, 7, 1},
    {"char_unk_fuse",
     "{\"kind\": \"char\", \"pair\": true, \"unk\": \"[UNK]\", \"fuse\": true, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"a\", \"b\"], [\"ab\", \"c\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \" \"}, \"behavior\": \"Removed\", \"invert\": false}, \"decoder\": null}",
     "abzzc yab d",
     "ab [UNK] c [UNK] ab d",
     {4, 0, 3, 0, 4, 10}, 6, 1},
    {"char_no_unk",
     "{\"kind\": \"char\", \"pair\": true, \"unk\": null, \"fuse\": false, \"fallback\": false, \"prefix\": null, \"suffix\": null, \"merges\": [[\"a\", \"b\"], [\"ab\", \"c\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \" \"}, \"behavior\": \"Removed\", \"invert\": false}, \"decoder\": null}",
     "abzzc yab d",
     "abc ab d",
     {5, 4, 10}, 3, 1},
    {"char_byte_fallback",
     "{\"kind\": \"char\", \"pair\": true, \"unk\": \"[UNK]\", \"fuse\": false, \"fallback\": true, \"prefix\": null, \"suffix\": null, \"merges\": [[\"a\", \"b\"], [\"ab\", \"c\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \" \"}, \"behavior\": \"Removed\", \"invert\": false}, \"decoder\": null}",
     "abzzc yab dq",
     "ab <0x7A> <0x7A> c <0x79> ab d [UNK]",
     {4, 8, 8, 3, 9, 4, 10, 0}, 8, 1},
    {"char_prefix_suffix",
     "{\"kind\": \"char\", \"pair\": true, \"unk\": \"[UNK]\", \"fuse\": false, \"fallback\": false, \"prefix\": \"##\", \"suffix\": \"</w>\", \"merges\": [[\"a\", \"##b\"]]}",
     "{\"added_tokens\": [], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \" \"}, \"behavior\": \"Removed\", \"invert\": false}, \"decoder\": null}",
     "abc x ab",
     "ab [UNK] x</w> a [UNK]",
     {4, 0, 11, 1, 0}, 5, 1},
};

static const char *const k_char_vocab[] = {"[UNK]", "a", "b", "c", "ab", "abc", "##b", "##c", "<0x7A>", "<0x79>", "d",
                                           "x</w>", "a##b"};

/* Builds the tokenizer.json text of a case (malloc'd). */
char *tok_test_build_json(const char *model_spec, const char *components);
char *tok_test_build_json(const char *model_spec, const char *components) {
    json_t *ms = json_loads(model_spec, 0, NULL), *comp = json_loads(components, 0, NULL);
    if (!ms || !comp) return NULL;
    json_t *vocab = json_object();
    json_t *merges = json_object_get(ms, "merges");
    if (!strcmp(json_string_value(json_object_get(ms, "kind")), "byte")) {
        for (int b = 0; b < 256; b++) {
            char u[8] = {0};
            tok_utf8_encode(tok_byte_to_cp[b], u);
            json_object_set_new(vocab, u, json_integer(b));
        }
        size_t i;
        json_t *m;
        json_array_foreach(merges, i, m) {
            char a[64], b[64], ab[128];
            if (json_is_string(m)) {
                const char *s = json_string_value(m), *sp = strchr(s, ' ');
                snprintf(a, sizeof a, "%.*s", (int)(sp - s), s);
                snprintf(b, sizeof b, "%s", sp + 1);
            } else {
                snprintf(a, sizeof a, "%s", json_string_value(json_array_get(m, 0)));
                snprintf(b, sizeof b, "%s", json_string_value(json_array_get(m, 1)));
            }
            snprintf(ab, sizeof ab, "%s%s", a, b);
            if (!json_object_get(vocab, ab)) json_object_set_new(vocab, ab, json_integer((json_int_t)json_object_size(vocab)));
        }
    } else {
        for (size_t i = 0; i < sizeof k_char_vocab / sizeof *k_char_vocab; i++)
            json_object_set_new(vocab, k_char_vocab[i], json_integer((json_int_t)i));
    }
    json_t *model = json_pack("{s:s, s:n, s:O, s:O, s:O, s:O, s:O, s:o, s:O}", "type", "BPE", "dropout", "unk_token",
                              json_object_get(ms, "unk"), "continuing_subword_prefix", json_object_get(ms, "prefix"),
                              "end_of_word_suffix", json_object_get(ms, "suffix"), "fuse_unk", json_object_get(ms, "fuse"),
                              "byte_fallback", json_object_get(ms, "fallback"), "vocab", vocab, "merges", merges);
    json_t *root = json_pack("{s:s, s:n, s:n, s:O, s:O, s:O, s:n, s:O, s:o}", "version", "1.0", "truncation", "padding",
                             "added_tokens", json_object_get(comp, "added_tokens"), "normalizer",
                             json_object_get(comp, "normalizer"), "pre_tokenizer", json_object_get(comp, "pre_tokenizer"),
                             "post_processor", "decoder", json_object_get(comp, "decoder"), "model", model);
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    json_decref(ms);
    json_decref(comp);
    return s;
}

static dsv3_tokenizer *load_case(const comp_case *c) {
    char *js = tok_test_build_json(c->model, c->components);
    if (!js) return NULL;
    dsv3_tokenizer *t = NULL;
    dsv3_error err = {0};
    if (dsv3_tokenizer_load_mem(js, strlen(js), NULL, 0, &t, &err)) fprintf(stderr, "    %s: %s\n", c->name, err.msg);
    free(js);
    return t;
}

TEST(tok_components_match_hf) {
    int bad = 0;
    for (size_t k = 0; k < sizeof k_cases / sizeof *k_cases; k++) {
        const comp_case *c = &k_cases[k];
        dsv3_tokenizer *t = load_case(c);
        if (!t) { bad++; continue; }
        for (int pcre = 0; pcre < 2; pcre++) {
            t->disable_fast = pcre;
            dsv3_ids ids = {0};
            dsv3_error err = {0};
            if (dsv3_tokenizer_encode(t, c->text, strlen(c->text), 0, &ids, &err)) {
                fprintf(stderr, "    %s: %s\n", c->name, err.msg);
                bad++;
            } else if ((int)ids.len != c->n_ids || memcmp(ids.data, c->ids, ids.len * sizeof(int32_t))) {
                fprintf(stderr, "    %s: ids differ:", c->name);
                for (size_t i = 0; i < ids.len; i++) fprintf(stderr, " %d", (int)ids.data[i]);
                fprintf(stderr, "\n");
                bad++;
            } else if (c->check_decode) {
                char *dec;
                size_t dl;
                if (dsv3_tokenizer_decode(t, ids.data, ids.len, 0, &dec, &dl, &err) || strlen(c->decoded) != dl ||
                    memcmp(dec, c->decoded, dl)) {
                    fprintf(stderr, "    %s: decode differs: '%s'\n", c->name, dec ? dec : err.msg);
                    bad++;
                }
                free(dec);
            }
            dsv3_ids_free(&ids);
        }
        dsv3_tokenizer_free(t);
    }
    CHECK_MSG(bad == 0, "%d component cases failed", bad);
}

/* The same merges in "a b" and ["a", "b"] form give the same tokenizer. */
TEST(tok_merges_string_and_pair_forms) {
    const char *pre = "{\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
                      "\"add_prefix_space\":false,\"use_regex\":true},\"decoder\":{\"type\":\"ByteLevel\"}}";
    const char *m1 = "{\"kind\":\"byte\",\"pair\":true,\"unk\":null,\"fuse\":false,\"fallback\":false,\"prefix\":null,"
                     "\"suffix\":null,\"merges\":[[\"a\",\"b\"],[\"ab\",\"c\"],[\"\xc4\xa0\",\"ab\"]]}";
    const char *m2 = "{\"kind\":\"byte\",\"pair\":false,\"unk\":null,\"fuse\":false,\"fallback\":false,\"prefix\":null,"
                     "\"suffix\":null,\"merges\":[\"a b\",\"ab c\",\"\xc4\xa0 ab\"]}";
    char *j1 = tok_test_build_json(m1, pre), *j2 = tok_test_build_json(m2, pre);
    dsv3_tokenizer *t1 = NULL, *t2 = NULL;
    CHECK(j1 && j2);
    CHECK(dsv3_tokenizer_load_mem(j1, strlen(j1), NULL, 0, &t1, NULL) == DSV3_OK);
    CHECK(dsv3_tokenizer_load_mem(j2, strlen(j2), NULL, 0, &t2, NULL) == DSV3_OK);
    dsv3_ids a = {0}, b = {0};
    const char *x = "abc ab abcab";
    CHECK(dsv3_tokenizer_encode(t1, x, strlen(x), 0, &a, NULL) == DSV3_OK);
    CHECK(dsv3_tokenizer_encode(t2, x, strlen(x), 0, &b, NULL) == DSV3_OK);
    CHECK(a.len == 5 && b.len == a.len && !memcmp(a.data, b.data, a.len * 4));
    /* "abc" " ab" " abcab" -> abc, Ġab, Ġ abc ab */
    CHECK(a.data[0] == 257 && a.data[1] == 258 && a.data[2] == 32 && a.data[3] == 257 && a.data[4] == 256);
    dsv3_ids_free(&a);
    dsv3_ids_free(&b);
    dsv3_tokenizer_free(t1);
    dsv3_tokenizer_free(t2);
    free(j1);
    free(j2);
}

/* TemplateProcessing decides what DSV3_TOK_ADD_SPECIAL adds; tokenizer_config
 * add_bos_token/add_eos_token otherwise. */
TEST(tok_add_special_tokens) {
    const char *comp = "{\"added_tokens\":[{\"id\":300,\"content\":\"<s>\",\"special\":true},{\"id\":301,\"content\":\"</s>\","
                       "\"special\":true}],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
                       "\"add_prefix_space\":false,\"use_regex\":false},\"decoder\":{\"type\":\"ByteLevel\"}}";
    const char *model = "{\"kind\":\"byte\",\"pair\":true,\"unk\":null,\"fuse\":false,\"fallback\":false,\"prefix\":null,"
                        "\"suffix\":null,\"merges\":[]}";
    char *js = tok_test_build_json(model, comp);
    CHECK(js != NULL);
    const char *cfg = "{\"bos_token\":{\"content\":\"<s>\"},\"eos_token\":\"</s>\",\"add_bos_token\":true,\"add_eos_token\":true}";
    dsv3_tokenizer *t;
    CHECK(dsv3_tokenizer_load_mem(js, strlen(js), cfg, strlen(cfg), &t, NULL) == DSV3_OK);
    CHECK(dsv3_tokenizer_bos_id(t) == 256 && dsv3_tokenizer_eos_id(t) == 257); /* next ids after the 256 bytes */
    dsv3_ids ids = {0};
    CHECK(dsv3_tokenizer_encode(t, "a", 1, DSV3_TOK_ADD_SPECIAL, &ids, NULL) == DSV3_OK);
    CHECK(ids.len == 3 && ids.data[0] == 256 && ids.data[1] == 'a' && ids.data[2] == 257);
    CHECK(!dsv3_tokenizer_has_chat_template(t));
    char *out;
    dsv3_error err = {0};
    dsv3_chat_message m = {"user", "hi", NULL, 0};
    CHECK(dsv3_tokenizer_apply_chat_template(t, &m, 1, 1, &out, NULL, &err) == DSV3_ERR_NOT_FOUND);
    dsv3_tokenizer_free(t);

    /* TemplateProcessing: [CLS] $A [SEP] */
    json_t *root = json_loads(js, 0, NULL);
    json_t *post = json_loads("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                              "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}},"
                              "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":"
                              "{\"id\":\"<s>\",\"ids\":[256],\"tokens\":[\"<s>\"]},\"</s>\":{\"id\":\"</s>\",\"ids\":[257],"
                              "\"tokens\":[\"</s>\"]}}}",
                              0, NULL);
    json_object_set_new(root, "post_processor", post);
    char *js2 = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    CHECK(dsv3_tokenizer_load_mem(js2, strlen(js2), NULL, 0, &t, NULL) == DSV3_OK);
    ids.len = 0;
    CHECK(dsv3_tokenizer_encode(t, "ab", 2, DSV3_TOK_ADD_SPECIAL, &ids, NULL) == DSV3_OK);
    CHECK(ids.len == 5 && ids.data[0] == 256 && ids.data[3] == 257 && ids.data[4] == 257);
    ids.len = 0;
    CHECK(dsv3_tokenizer_encode(t, "ab", 2, 0, &ids, NULL) == DSV3_OK);
    CHECK(ids.len == 2);
    /* skip_special */
    int32_t x[] = {256, 'h', 'i', 257};
    CHECK(dsv3_tokenizer_decode(t, x, 4, DSV3_TOK_SKIP_SPECIAL, &out, NULL, NULL) == DSV3_OK);
    CHECK(!strcmp(out, "hi"));
    free(out);
    CHECK(dsv3_tokenizer_decode(t, x, 4, 0, &out, NULL, NULL) == DSV3_OK);
    CHECK(!strcmp(out, "<s>hi</s>"));
    free(out);
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(t);
    free(js2);
    free(js);
}

/* ignore_merges: a piece that is itself a vocab token is emitted whole. */
TEST(tok_ignore_merges) {
    const char *comp = "{\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
                       "\"add_prefix_space\":false,\"use_regex\":true},\"decoder\":{\"type\":\"ByteLevel\"}}";
    const char *model = "{\"kind\":\"byte\",\"pair\":true,\"unk\":null,\"fuse\":false,\"fallback\":false,\"prefix\":null,"
                        "\"suffix\":null,\"merges\":[[\"b\",\"c\"],[\"a\",\"b\"],[\"ab\",\"c\"]]}";
    char *js = tok_test_build_json(model, comp);
    dsv3_tokenizer *t;
    CHECK(dsv3_tokenizer_load_mem(js, strlen(js), NULL, 0, &t, NULL) == DSV3_OK);
    dsv3_ids ids = {0};
    CHECK(dsv3_tokenizer_encode(t, "abc", 3, 0, &ids, NULL) == DSV3_OK);
    CHECK(ids.len == 2 && ids.data[0] == 'a' && ids.data[1] == 256); /* a + bc: "bc" merges first */
    t->ignore_merges = 1;
    ids.len = 0;
    CHECK(dsv3_tokenizer_encode(t, "abc", 3, 0, &ids, NULL) == DSV3_OK);
    CHECK(ids.len == 1 && ids.data[0] == 258); /* "abc" is in the vocab */
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(t);
    free(js);
}

TEST(tok_nfc_direct) {
    struct { const char *in, *out; } c[] = {
        {"e\xcc\x81", "\xc3\xa9"},                                 /* e + acute -> é */
        {"\xe1\xb8\x8b\xcc\xa3", "\xe1\xb8\x8d\xcc\x87"},          /* ḋ + dot below -> ḍ + dot above */
        {"\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"},  /* Hangul L V T -> 각 */
        {"\xe2\x84\xab", "\xc3\x85"},                              /* Angstrom sign -> Å */
        {"\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc"},              /* excluded composition stays decomposed */
        {"\xcc\x81" "a", "\xcc\x81" "a"},                          /* leading mark */
        {"a\xff\xcc\x81", "a\xff\xcc\x81"},                        /* invalid byte is a boundary */
        {"plain ascii", "plain ascii"},
    };
    char *out = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        long l = tok_nfc(c[i].in, strlen(c[i].in), &out, &cap);
        CHECK_MSG(l == (long)strlen(c[i].out) && !memcmp(out, c[i].out, (size_t)l), "NFC case %zu", i);
    }
    free(out);
    CHECK(tok_nfc_quick_yes((const unsigned char *)"abc \xc3\xa9", 6));
    CHECK(!tok_nfc_quick_yes((const unsigned char *)"e\xcc\x81", 3));
}
