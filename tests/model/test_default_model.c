/* The embedded default model (models/dsv3-kjv-tiny) loads with its tokenizer
 * and generates text; MTP speculative decoding gives the same greedy text, with
 * the full draft head and with `dsv3 generate`'s default draft vocabulary. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../test.h"
#include "dsv3/model.h"
#include "dsv3/sampling.h"
#include "dsv3/tokenizer.h"

#define MODEL_DIR "models/dsv3-kjv-tiny"

typedef struct {
    int32_t toks[64];
    int n;
} collect;

static int collect_cb(int32_t t, void *ctx) {
    collect *c = ctx;
    if (c->n < 64) c->toks[c->n++] = t;
    return 0;
}

TEST(default_model_generates_text) {
    struct stat st;
    if (stat(MODEL_DIR "/model.safetensors", &st) != 0) SKIP("default model not built yet");
    dsv3_error err = {0};
    dsv3_model *m = NULL;
    dsv3_tokenizer *tok = NULL;
    CHECK_MSG(dsv3_model_load(MODEL_DIR, &m, &err) == DSV3_OK, "%s", err.msg);
    CHECK_MSG(dsv3_tokenizer_load(MODEL_DIR, &tok, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_model_has_mtp(m));
    const char *prompt = "And God said";
    dsv3_ids ids = {0};
    CHECK(dsv3_tokenizer_encode(tok, prompt, strlen(prompt), DSV3_TOK_ADD_SPECIAL, &ids, &err) == DSV3_OK);
    collect out[3];
    dsv3_gen_stats gs[3];
    CHECK(dsv3_model_mtp_draft_vocab_default(m) == 1024); /* vocab 8192 / 8 */
    for (int mtp = 0; mtp < 3; mtp++) { /* plain; 1 draft, all ids; 2 drafts, the default draft vocabulary */
        dsv3_model_set_mtp_draft_vocab(m, mtp == 2 ? dsv3_model_mtp_draft_vocab_default(m) : 0);
        dsv3_kv_cache *kc = NULL;
        dsv3_sampler smp;
        dsv3_sampler_params sp = {0.0f, 1.0f, 0, 0};
        memset(&out[mtp], 0, sizeof out[mtp]);
        CHECK(dsv3_kv_cache_new(m, (int64_t)ids.len + 33, &kc, &err) == DSV3_OK);
        CHECK(dsv3_sampler_init(&smp, &sp, dsv3_model_config(m)->vocab_size, &err) == DSV3_OK);
        CHECK_MSG(dsv3_generate(m, kc, ids.data, (int64_t)ids.len, 32, &smp, mtp, -1, collect_cb, &out[mtp], &gs[mtp], &err) ==
                      DSV3_OK, "%s", err.msg);
        dsv3_sampler_free(&smp);
        dsv3_kv_cache_free(kc);
    }
    for (int v = 1; v < 3; v++)
        CHECK_MSG(out[0].n == 32 && out[v].n == 32 && !memcmp(out[0].toks, out[v].toks, sizeof(int32_t) * 32),
                  "MTP variant %d: the greedy output differs", v);
    char *text = NULL;
    size_t len = 0;
    CHECK(dsv3_tokenizer_decode(tok, out[0].toks, 32, DSV3_TOK_SKIP_SPECIAL, &text, &len, &err) == DSV3_OK);
    fprintf(stderr, "    \"%s\" ->%s\n    MTP acceptance %lld/%lld (1 draft), %lld/%lld (2 drafts, draft vocabulary 1024)\n",
            prompt, text, (long long)gs[1].mtp_accepted, (long long)gs[1].mtp_drafted, (long long)gs[2].mtp_accepted,
            (long long)gs[2].mtp_drafted);
    CHECK(len > 20);
    free(text);
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    dsv3_model_free(m);
}
