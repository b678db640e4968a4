/* dsv3 init-model --config CONFIG.json --out DIR [--dtype bf16|fp8|f32] [--fp8-lm-head] [--scale-fmt float|ue8m0]
 *                 [--seed S] [--std X] [--shard-size BYTES] [--force] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsv3/clock.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/init_model.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 init-model --config CONFIG.json --out DIR [options]\n\n"
               "Writes a randomly initialised DeepSeek-V3 checkpoint (config.json + safetensors\n"
               "shards + model.safetensors.index.json) that dsv3 can load, including the MTP layer\n"
               "when num_nextn_predict_layers > 0. Weights ~ N(0, std^2), norms 1, router bias 0.\n"
               "An existing checkpoint in DIR is an error unless --force is given.\n\n"
               "  --dtype D         bf16 (default), fp8 (E4M3 with 128x128 block scales), f32\n"
               "  --fp8-lm-head     with --dtype fp8: lm_head.weight in FP8 too (DeepSeek-V3 keeps it BF16)\n"
               "  --scale-fmt F     with --dtype fp8: block scales float (default, amax / 448 as DeepSeek-V3) or ue8m0\n"
               "                    (rounded up to powers of two, as DeepSeek-V3.1; decodes faster on CPUs)\n"
               "  --seed S          RNG seed (default 0); same seed -> identical files\n"
               "  --std X           weight standard deviation (default 0.006)\n"
               "  --shard-size N    max bytes per shard; suffixes K, M, G (powers of 1000) allowed;\n"
               "                    0 = a single model.safetensors (default 2G)\n"
               "  --force           replace an existing checkpoint in DIR (config.json,\n"
               "                    model*.safetensors, the index; other files are kept)\n"
               "  -q                no progress output\n"
               "  -t N              threads (default: all cores)\n");
}

/* Parses "123", "64K", "2G" (decimal units). */
static int parse_size(const char *s, uint64_t *out) {
    char buf[64];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n + 1);
    uint64_t mul = 1;
    char u = buf[n - 1];
    if (u == 'K' || u == 'k') mul = 1000ull;
    else if (u == 'M' || u == 'm') mul = 1000000ull;
    else if (u == 'G' || u == 'g') mul = 1000000000ull;
    if (mul > 1) buf[n - 1] = 0;
    int64_t v;
    if (cli_parse_i64(buf, 0, INT64_MAX / 1000000000ll, &v)) return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

static void progress(void *ctx, int shard, int n_shards, const char *path) {
    (void)ctx;
    fprintf(stderr, "  wrote %s (%d/%d)\n", path, shard + 1, n_shards);
}

int cmd_init_model(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *dtype_s = "bf16", *seed_s = "0", *std_s = NULL, *shard_s = NULL,
               *threads = NULL, *scale_fmt = NULL;
    int bad = 0, quiet = 0, force = 0, fp8_head = 0, ue8m0 = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "-q")) { quiet = 1; continue; }
        if (!strcmp(argv[i], "--fp8-lm-head")) { fp8_head = 1; continue; }
        if (!strcmp(argv[i], "--force")) { force = 1; continue; }
        if (cli_opt(argc, argv, &i, "--config", &config, &bad) || cli_opt(argc, argv, &i, "--out", &out, &bad) ||
            cli_opt(argc, argv, &i, "--dtype", &dtype_s, &bad) || cli_opt(argc, argv, &i, "--seed", &seed_s, &bad) ||
            cli_opt(argc, argv, &i, "--std", &std_s, &bad) || cli_opt(argc, argv, &i, "--shard-size", &shard_s, &bad) ||
            cli_opt(argc, argv, &i, "-t", &threads, &bad) || cli_opt(argc, argv, &i, "--scale-fmt", &scale_fmt, &bad))
            continue;
        fprintf(stderr, "dsv3 init-model: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    if (bad || !config || !out) {
        if (!bad) fprintf(stderr, "dsv3 init-model: --config and --out are required\n");
        usage(stderr);
        return 2;
    }
    dsv3_init_opts o;
    dsv3_init_opts_default(&o);
    int64_t seed, nthreads = 0;
    if (!strcmp(dtype_s, "bf16")) o.dtype = DSV3_INIT_BF16;
    else if (!strcmp(dtype_s, "fp8")) o.dtype = DSV3_INIT_FP8;
    else if (!strcmp(dtype_s, "f32")) o.dtype = DSV3_INIT_F32;
    else { fprintf(stderr, "dsv3 init-model: bad --dtype '%s' (want bf16, fp8 or f32)\n", dtype_s); return 2; }
    if (fp8_head && o.dtype != DSV3_INIT_FP8) {
        fprintf(stderr, "dsv3 init-model: --fp8-lm-head needs --dtype fp8\n");
        return 2;
    }
    o.fp8_lm_head = fp8_head;
    if (cli_parse_scale_fmt("init-model", scale_fmt, &ue8m0)) return 2;
    if (ue8m0 && o.dtype != DSV3_INIT_FP8) {
        fprintf(stderr, "dsv3 init-model: --scale-fmt needs --dtype fp8\n");
        return 2;
    }
    o.ue8m0_scales = ue8m0;
    if (cli_parse_i64(seed_s, 0, INT64_MAX, &seed)) { fprintf(stderr, "dsv3 init-model: bad --seed '%s'\n", seed_s); return 2; }
    o.seed = (uint64_t)seed;
    if (std_s && (cli_parse_f32(std_s, &o.std) || !(o.std > 0))) {
        fprintf(stderr, "dsv3 init-model: bad --std '%s' (want a positive number)\n", std_s);
        return 2;
    }
    if (shard_s && parse_size(shard_s, &o.shard_size)) {
        fprintf(stderr, "dsv3 init-model: bad --shard-size '%s' (bytes, optionally with K/M/G)\n", shard_s);
        return 2;
    }
    if (threads && cli_parse_i64(threads, 0, 4096, &nthreads)) { fprintf(stderr, "dsv3 init-model: bad -t '%s'\n", threads); return 2; }
    cli_set_threads(nthreads);
    o.overwrite = force;
    if (!quiet) o.progress = progress;

    dsv3_error err = {0};
    dsv3_init_result r;
    double t0 = dsv3_now_s();
    if (dsv3_init_model(config, out, &o, &r, &err)) return cli_error("init-model", &err);
    if (!quiet)
        fprintf(stderr, "%s: %lld parameters, %lld tensors, %.3f GB in %d file(s), %s, seed %lld, std %g (%.1fs)\n", out,
                (long long)r.n_params, (long long)r.n_tensors, r.total_bytes / 1e9, r.n_shards, dtype_s,
                (long long)seed, (double)o.std, dsv3_now_s() - t0);
    return 0;
}
