#include "cli/cli_util.h"
#include "dsv3/model.h"
#include "dsv3/safetensors.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int cli_parse_kv_dtype(const char *cmd, const char *s, dsv3_dtype *dt) {
    *dt = DSV3_F32;
    if (s && dsv3_kv_dtype_parse(s, dt)) {
        fprintf(stderr, "dsv3 %s: bad --kv-dtype '%s' (want f32 or bf16)\n", cmd, s);
        return 2;
    }
    return 0;
}

int cli_parse_scale_fmt(const char *cmd, const char *s, int *ue8m0) {
    *ue8m0 = s && !strcmp(s, "ue8m0");
    if (s && !*ue8m0 && strcmp(s, "float") != 0) {
        fprintf(stderr, "dsv3 %s: bad --scale-fmt '%s' (want float or ue8m0)\n", cmd, s);
        return 2;
    }
    return 0;
}

int cli_parse_f32(const char *s, float *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int cli_parse_ids(const char *s, int32_t **ids, int64_t *n, int64_t max_id) {
    *ids = NULL;
    *n = 0;
    if (!s || !*s) return -1;
    int64_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *a = malloc(sizeof(int32_t) * cap);
    if (!a) return -1;
    const char *p = s;
    int64_t k = 0;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > max_id || (*end && *end != ',')) { free(a); return -1; }
        a[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) { free(a); return -1; }
    }
    *ids = a;
    *n = k;
    return 0;
}

void cli_set_threads(int64_t n) {
    if (n > 0) omp_set_num_threads((int)n);
}

int cli_error(const char *cmd, const dsv3_error *err) {
    fprintf(stderr, "dsv3 %s: %s\n", cmd, err->msg[0] ? err->msg : dsv3_status_name(err->code));
    return 1;
}

int cli_opt(int argc, char **argv, int *i, const char *opt, const char **val, int *bad) {
    if (strcmp(argv[*i], opt) != 0) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "dsv3: option %s needs a value\n", opt);
        *bad = 1;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

dsv3_status cli_read_input_ids(const dsv3_st_file *f, const char *path, int64_t min_t, int32_t **ids, int64_t *B,
                               int64_t *T, dsv3_error *err) {
    *ids = NULL;
    const dsv3_tensor_view *t = dsv3_st_find(f, "input_ids");
    if (!t) return dsv3_fail(err, DSV3_ERR_NOT_FOUND, "%s: no tensor 'input_ids'", path);
    if (t->ndim != 2 || (t->dtype != DSV3_I64 && t->dtype != DSV3_I32) || t->shape[0] < 1 || t->shape[1] < min_t)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: 'input_ids' must be I64 or I32 with shape [B,T], B >= 1, T >= %lld",
                         path, (long long)min_t);
    if (t->shape[0] > 65536 || t->shape[1] > (1 << 24) || t->numel > (1u << 26))
        return dsv3_fail(err, DSV3_ERR_INVALID, "%s: 'input_ids' too large", path);
    int32_t *a = malloc(sizeof(int32_t) * t->numel);
    if (!a) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < t->numel; i++) {
        int64_t v;
        if (t->dtype == DSV3_I64) memcpy(&v, (const char *)t->data + 8 * i, 8);
        else { int32_t v32; memcpy(&v32, (const char *)t->data + 4 * i, 4); v = v32; }
        if (v < 0 || v > INT32_MAX) {
            free(a);
            return dsv3_fail(err, DSV3_ERR_INVALID, "%s: input_ids[%llu] = %lld is not a token id", path,
                             (unsigned long long)i, (long long)v);
        }
        a[i] = (int32_t)v;
    }
    *ids = a;
    *B = t->shape[0];
    *T = t->shape[1];
    return DSV3_OK;
}

int cli_parse_model_io(const char *cmd, int argc, char **argv, void (*usage)(FILE *), const char **model,
                       const char **in, const char **out) {
    const char *threads = NULL;
    int bad = 0;
    *model = *in = *out = NULL;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (cli_opt(argc, argv, &i, "--model", model, &bad) || cli_opt(argc, argv, &i, "--input", in, &bad) ||
            cli_opt(argc, argv, &i, "--output", out, &bad) || cli_opt(argc, argv, &i, "-t", &threads, &bad))
            continue;
        fprintf(stderr, "dsv3 %s: unknown argument '%s'\n", cmd, argv[i]);
        bad = 1;
    }
    if (bad || !*model || !*in || !*out) {
        if (!bad) fprintf(stderr, "dsv3 %s: --model, --input and --output are required\n", cmd);
        usage(stderr);
        return 2;
    }
    int64_t nthreads = 0;
    if (threads && cli_parse_i64(threads, 0, 4096, &nthreads)) {
        fprintf(stderr, "dsv3 %s: bad -t value '%s'\n", cmd, threads);
        return 2;
    }
    cli_set_threads(nthreads);
    return -1;
}
