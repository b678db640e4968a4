/* dsv3 quantize --model IN_DIR --out OUT_DIR --to fp8 [--block 128] [--fp8-lm-head] [--scale-fmt float|ue8m0] [--force]
 *               [-q] [-t N] */
#include <stdio.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/clock.h"
#include "dsv3/quantize.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 quantize --model IN_DIR --out OUT_DIR --to fp8 [options]\n\n"
               "Writes a DeepSeek-V3 style FP8 checkpoint from a BF16/F16/F32 one (sharded or not):\n"
               "every attention/MLP/expert projection weight becomes float8_e4m3fn plus\n"
               "<name>_scale_inv (F32, one scale = block amax / 448 per BxB block); embeddings,\n"
               "lm_head, norms, the router gate, e_score_correction_bias and eh_proj are copied\n"
               "unchanged. config.json gets quantization_config; tokenizer files are copied.\n"
               "Weights that are already FP8 (same block size; with ue8m0, power-of-two scales)\n"
               "are kept as they are.\n\n"
               "  --to fp8          target format (only fp8)\n"
               "  --block B         block edge (default 128, as DeepSeek-V3)\n"
               "  --fp8-lm-head     quantise lm_head.weight too (DeepSeek-V3 keeps it BF16; in FP8\n"
               "                    decode reads half the bytes for the vocabulary projection)\n"
               "  --scale-fmt F     FP8 block scales: float (default, amax / 448 as DeepSeek-V3) or ue8m0\n"
               "                    (rounded up to powers of two, as DeepSeek-V3.1; decodes faster on CPUs)\n"
               "  --force           replace an existing checkpoint in OUT_DIR\n"
               "  -q                no progress output\n"
               "  -t N              threads (default: all cores)\n");
}

static void progress(void *ctx, int shard, int n_shards, const char *path) {
    (void)ctx;
    fprintf(stderr, "  wrote %s (%d/%d)\n", path, shard + 1, n_shards);
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *to = NULL, *block_s = "128", *threads = NULL, *scale_fmt = NULL;
    int bad = 0, quiet = 0, force = 0, fp8_head = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "-q")) { quiet = 1; continue; }
        if (!strcmp(argv[i], "--force")) { force = 1; continue; }
        if (!strcmp(argv[i], "--fp8-lm-head")) { fp8_head = 1; continue; }
        if (cli_opt(argc, argv, &i, "--model", &in, &bad) || cli_opt(argc, argv, &i, "--out", &out, &bad) ||
            cli_opt(argc, argv, &i, "--to", &to, &bad) || cli_opt(argc, argv, &i, "--block", &block_s, &bad) ||
            cli_opt(argc, argv, &i, "-t", &threads, &bad) || cli_opt(argc, argv, &i, "--scale-fmt", &scale_fmt, &bad))
            continue;
        fprintf(stderr, "dsv3 quantize: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    if (bad || !in || !out || !to) {
        if (!bad) fprintf(stderr, "dsv3 quantize: --model, --out and --to are required\n");
        usage(stderr);
        return 2;
    }
    if (strcmp(to, "fp8") != 0) {
        fprintf(stderr, "dsv3 quantize: unsupported --to '%s' (only fp8)\n", to);
        return 2;
    }
    int64_t block, nthreads = 0;
    int ue8m0;
    if (cli_parse_scale_fmt("quantize", scale_fmt, &ue8m0)) return 2;
    if (cli_parse_i64(block_s, 1, 65536, &block)) {
        fprintf(stderr, "dsv3 quantize: bad --block '%s' (want 1..65536)\n", block_s);
        return 2;
    }
    if (threads && cli_parse_i64(threads, 0, 4096, &nthreads)) {
        fprintf(stderr, "dsv3 quantize: bad -t '%s'\n", threads);
        return 2;
    }
    cli_set_threads(nthreads);
    dsv3_quantize_opts o;
    dsv3_quantize_opts_default(&o);
    o.block = (int)block;
    o.overwrite = force;
    o.fp8_lm_head = fp8_head;
    o.ue8m0_scales = ue8m0;
    if (!quiet) o.progress = progress;
    dsv3_error err = {0};
    dsv3_quantize_result r;
    double t0 = dsv3_now_s();
    if (dsv3_quantize_fp8(in, out, &o, &r, &err)) return cli_error("quantize", &err);
    if (!quiet) {
        fprintf(stderr, "%s: %lld weights quantised to FP8 (%lldx%lld blocks), %lld already FP8 kept, %lld tensors "
                "copied; %.3f GB -> %.3f GB in %d file(s), %lld tokenizer file(s) copied (%.1fs)\n",
                out, (long long)r.n_quantized, (long long)block, (long long)block, (long long)r.n_fp8_kept,
                (long long)r.n_copied, r.in_bytes / 1e9, r.out_bytes / 1e9, r.n_shards,
                (long long)r.n_tokenizer_files, dsv3_now_s() - t0);
        if (r.n_quantized == 0)
            fprintf(stderr, "note: nothing to quantise (the projection weights were already FP8)\n");
    }
    return 0;
}
