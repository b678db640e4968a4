/* dsv3 command-line entry point: dispatches to src/cli/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} g_cmds[] = {
    {"info", cmd_info, "print config summary, parameter counts and KV-cache size of a model"},
    {"forward", cmd_forward, "run the full forward pass on input ids from a safetensors file"},
    {"generate", cmd_generate, "generate tokens from a prompt (greedy or sampled)"},
    {"tokenize", cmd_tokenize, "text -> token ids with a HuggingFace tokenizer.json"},
    {"detokenize", cmd_detokenize, "token ids -> text"},
    {"chat-template", cmd_chat_template, "render chat messages with the model's chat template"},
    {"grad", cmd_grad, "one training forward/backward + AdamW step, written as safetensors"},
    {"train", cmd_train, "train a model on a token shard (checkpoints, resume, JSONL log)"},
    {"plot-loss", cmd_plot_loss, "plot a training log (JSONL) as a PNG loss curve"},
    {"init-model", cmd_init_model, "create a randomly initialised checkpoint from a config.json"},
    {"init", cmd_init_model, "alias of init-model"},
    {"quantize", cmd_quantize, "BF16/F32 checkpoint -> DeepSeek-style FP8 (e4m3, 128x128 block scales)"},
    {"bench", cmd_bench, "llama-bench style prefill/decode throughput (mean +- stddev)"},
    {"export", cmd_export, "training checkpoint -> inference checkpoint (BF16/F32 + tokenizer)"},
    {"tokenizer-train", cmd_tokenizer_train, "train a byte-level BPE tokenizer (HF tokenizer.json) on text files"},
    {"tokenize-corpus", cmd_tokenize_corpus, "text files -> token shard (documents + EOS, optional FIM)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP API server with continuous batching"},
    {"chat", cmd_chat, "interactive chat in the terminal (streamed, with history)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: dsv3 <command> [options]   (dsv3 <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        fprintf(out, "  %-16s %s\n", g_cmds[i].name, g_cmds[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        if (!strcmp(argv[1], g_cmds[i].name)) return g_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dsv3: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
