/* safetensors reader/writer, checkpoint directories and a corruption set. */
#include "../test.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsv3/hashmap.h"
#include "dsv3/safetensors.h"

/* ------------------------------------------------------------------ helpers */

static void tpath(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tpath(char *buf, size_t cap, const char *fmt, ...) {
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    if ((size_t)snprintf(buf, cap, "%s/%s", test_tmp_dir(), rel) >= cap) buf[0] = 0;
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(sz > 0 ? (size_t)sz : 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) { free(p); p = NULL; }
    fclose(f);
    *n = (size_t)sz;
    return p;
}

/* A file whose header length is exactly strlen(hdr) (no padding) followed by ndata zero bytes. */
static int write_st_raw(const char *path, const char *hdr, size_t hlen, size_t ndata) {
    size_t n = 8 + hlen + ndata;
    unsigned char *b = calloc(1, n);
    if (!b) return -1;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, hdr, hlen);
    int r = write_bytes(path, b, n);
    free(b);
    return r;
}

/* Opens path expecting failure with a message that names the path and contains want (if non-NULL). */
static int expect_bad(const char *path, const char *want) {
    dsv3_st_file *f = NULL;
    dsv3_error err = {0};
    dsv3_status st = dsv3_st_open(path, &f, &err);
    if (st == DSV3_OK) {
        fprintf(stderr, "    %s: unexpectedly opened (%zu tensors)\n", path, dsv3_st_count(f));
        dsv3_st_close(f);
        return 0;
    }
    if (f || !err.msg[0] || !strstr(err.msg, path) || (want && !strstr(err.msg, want))) {
        fprintf(stderr, "    %s: bad error (want '%s'): %s\n", path, want ? want : "", err.msg);
        return 0;
    }
    return 1;
}

static int expect_bad_hdr(const char *hdr, size_t ndata, const char *want) {
    static int k;
    char p[512];
    tpath(p, sizeof p, "bad_%d.safetensors", k++);
    if (write_st_raw(p, hdr, strlen(hdr), ndata) != 0) return 0;
    int ok = expect_bad(p, want);
    if (!ok) fprintf(stderr, "    header was: %s\n", hdr);
    return ok;
}

static int expect_good_hdr(const char *hdr, size_t ndata, size_t ntensors) {
    char p[512];
    tpath(p, sizeof p, "good.safetensors");
    if (write_st_raw(p, hdr, strlen(hdr), ndata) != 0) return 0;
    dsv3_st_file *f = NULL;
    dsv3_error err = {0};
    if (dsv3_st_open(p, &f, &err) != DSV3_OK) {
        fprintf(stderr, "    rejected valid header %s: %s\n", hdr, err.msg);
        return 0;
    }
    size_t n = dsv3_st_count(f);
    dsv3_st_close(f);
    return n == ntensors;
}

static int mkdir_p(const char *p) { return mkdir(p, 0755) == 0 || errno == EEXIST ? 0 : -1; }

/* ------------------------------------------------------------------ hashmap */

TEST(st_hashmap_basic) {
    dsv3_hashmap *m = dsv3_hashmap_new(0);
    CHECK(m);
    enum { N = 5000 };
    static char keys[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "model.layers.%d.w", i);
        CHECK(dsv3_hashmap_put(m, keys[i], (void *)(intptr_t)(i + 1), NULL) == 0);
    }
    CHECK(dsv3_hashmap_count(m) == N);
    void *old = NULL;
    CHECK(dsv3_hashmap_put(m, keys[7], (void *)1, &old) == 1 && old == (void *)(intptr_t)8);
    for (int i = 0; i < N; i++) CHECK(dsv3_hashmap_get(m, keys[i]) == (void *)(intptr_t)(i + 1));
    CHECK(dsv3_hashmap_get(m, "model.layers.5000.w") == NULL);
    CHECK(dsv3_hashmap_findn(m, "model.layers.12.wXYZ", 17, &old) == 1 && old == (void *)(intptr_t)13);
    CHECK(dsv3_hashmap_putn(m, "a\0b", 3, NULL, NULL) == 0);
    CHECK(dsv3_hashmap_findn(m, "a\0b", 3, &old) == 1 && old == NULL);
    CHECK(dsv3_hashmap_findn(m, "a", 1, NULL) == 0);
    dsv3_hashmap_free(m);
}

/* --------------------------------------------------------------- round trip */

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

TEST(st_roundtrip_all_dtypes) {
    char path[512];
    tpath(path, sizeof path, "roundtrip.safetensors");
    dsv3_error err = {0};
    dsv3_st_writer *w = dsv3_st_writer_new();
    CHECK(w);
    unsigned char buf[1024];
    const int64_t shape[2] = {2, 3};
    for (int dt = 0; dt < DSV3_DTYPE_COUNT; dt++) {
        char name[64];
        snprintf(name, sizeof name, "t.%s", dsv3_dtype_name((dsv3_dtype)dt));
        fill(buf, 6 * dsv3_dtype_size((dsv3_dtype)dt), (unsigned)dt);
        CHECK_MSG(dsv3_st_writer_add(w, name, (dsv3_dtype)dt, 2, shape, buf, &err) == DSV3_OK, "%s", err.msg);
    }
    float scalar = 3.5f;
    CHECK(dsv3_st_writer_add(w, "scalar", DSV3_F32, 0, NULL, &scalar, &err) == DSV3_OK);
    const int64_t z1[2] = {0, 5}, z2[3] = {3, 0, 7};
    CHECK(dsv3_st_writer_add(w, "empty.a", DSV3_BF16, 2, z1, NULL, &err) == DSV3_OK);
    CHECK(dsv3_st_writer_add(w, "empty.b", DSV3_F64, 3, z2, NULL, &err) == DSV3_OK);
    const int64_t s8[8] = {1, 2, 1, 2, 1, 2, 1, 2};
    fill(buf, 16, 99);
    CHECK(dsv3_st_writer_add(w, "rank8", DSV3_U8, 8, s8, buf, &err) == DSV3_OK);
    CHECK(dsv3_st_writer_add(w, "名前.ü", DSV3_I8, 1, (int64_t[]){1}, "x", &err) == DSV3_OK);
    CHECK(dsv3_st_writer_metadata(w, "format", "np", &err) == DSV3_OK);
    CHECK(dsv3_st_writer_metadata(w, "format", "pt", &err) == DSV3_OK); /* replaces */
    CHECK(dsv3_st_writer_metadata(w, "note \"quoted\"", "line\nbreak ✓", &err) == DSV3_OK);
    CHECK_MSG(dsv3_st_writer_save(w, path, &err) == DSV3_OK, "%s", err.msg);
    dsv3_st_writer_free(w);

    /* Raw layout: header length multiple of 8, padded with spaces. */
    size_t n;
    unsigned char *raw = read_bytes(path, &n);
    CHECK(raw && n >= 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    int ok = hl % 8 == 0 && 8 + hl <= n && raw[8] == '{';
    size_t e = 8 + (size_t)hl;
    while (ok && e > 8 && raw[e - 1] == ' ') e--;
    ok = ok && raw[e - 1] == '}';
    free(raw);
    CHECK(ok);

    dsv3_st_file *f = NULL;
    CHECK_MSG(dsv3_st_open(path, &f, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_st_count(f) == DSV3_DTYPE_COUNT + 5);
    for (int dt = 0; dt < DSV3_DTYPE_COUNT; dt++) {
        const dsv3_tensor_view *v = dsv3_st_tensor(f, (size_t)dt); /* insertion order */
        char name[64];
        snprintf(name, sizeof name, "t.%s", dsv3_dtype_name((dsv3_dtype)dt));
        fill(buf, 6 * dsv3_dtype_size((dsv3_dtype)dt), (unsigned)dt);
        CHECK(v && strcmp(v->name, name) == 0 && dsv3_st_find(f, name) == v);
        CHECK(v->dtype == (dsv3_dtype)dt && v->ndim == 2 && v->shape[0] == 2 && v->shape[1] == 3);
        CHECK(v->numel == 6 && v->nbytes == 6 * dsv3_dtype_size((dsv3_dtype)dt));
        CHECK(memcmp(v->data, buf, v->nbytes) == 0);
        CHECK(strcmp(v->file, path) == 0);
    }
    const dsv3_tensor_view *v = dsv3_st_find(f, "scalar");
    float got;
    CHECK(v && v->ndim == 0 && v->numel == 1 && v->nbytes == 4);
    memcpy(&got, v->data, 4);
    CHECK(got == 3.5f);
    v = dsv3_st_find(f, "empty.a");
    CHECK(v && v->ndim == 2 && v->shape[0] == 0 && v->shape[1] == 5 && v->numel == 0 && v->nbytes == 0);
    v = dsv3_st_find(f, "empty.b");
    CHECK(v && v->ndim == 3 && v->shape[2] == 7 && v->numel == 0 && v->dtype == DSV3_F64);
    v = dsv3_st_find(f, "rank8");
    fill(buf, 16, 99);
    CHECK(v && v->ndim == 8 && v->numel == 16 && memcmp(v->data, buf, 16) == 0);
    v = dsv3_st_find(f, "名前.ü");
    CHECK(v && v->nbytes == 1 && ((const char *)v->data)[0] == 'x');
    CHECK(dsv3_st_find(f, "nope") == NULL && dsv3_st_find(f, "__metadata__") == NULL);
    CHECK(dsv3_st_tensor(f, dsv3_st_count(f)) == NULL);
    CHECK(strcmp(dsv3_st_metadata(f, "format"), "pt") == 0);
    CHECK(strcmp(dsv3_st_metadata(f, "note \"quoted\""), "line\nbreak ✓") == 0);
    CHECK(dsv3_st_metadata(f, "missing") == NULL);
    dsv3_st_close(f);
}

TEST(st_roundtrip_empty_and_overwrite) {
    char path[512];
    tpath(path, sizeof path, "empty.safetensors");
    dsv3_error err = {0};
    dsv3_st_writer *w = dsv3_st_writer_new();
    CHECK(dsv3_st_writer_save(w, path, &err) == DSV3_OK); /* no tensors, no metadata: "{}" */
    dsv3_st_writer_free(w);
    dsv3_st_file *f = NULL;
    CHECK_MSG(dsv3_st_open(path, &f, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_st_count(f) == 0 && dsv3_st_metadata(f, "format") == NULL);
    dsv3_st_close(f);
    /* Saving again over an existing file replaces it. */
    w = dsv3_st_writer_new();
    int32_t x[3] = {1, -2, 3};
    CHECK(dsv3_st_writer_add(w, "x", DSV3_I32, 1, (int64_t[]){3}, x, &err) == DSV3_OK);
    CHECK(dsv3_st_writer_save(w, path, &err) == DSV3_OK);
    dsv3_st_writer_free(w);
    CHECK(dsv3_st_open(path, &f, &err) == DSV3_OK);
    const dsv3_tensor_view *v = dsv3_st_find(f, "x");
    CHECK(dsv3_st_count(f) == 1 && v && memcmp(v->data, x, sizeof x) == 0);
    dsv3_st_close(f);
}

TEST(st_many_tensors_lookup) {
    char path[512];
    tpath(path, sizeof path, "many.safetensors");
    dsv3_error err = {0};
    dsv3_st_writer *w = dsv3_st_writer_new();
    enum { N = 20000 };
    char name[64];
    for (int i = 0; i < N; i++) {
        uint16_t val = (uint16_t)i;
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.w", i / 256, i % 256);
        CHECK(dsv3_st_writer_add(w, name, DSV3_U16, 1, (int64_t[]){1}, &val, &err) == DSV3_OK);
    }
    CHECK(dsv3_st_writer_save(w, path, &err) == DSV3_OK);
    dsv3_st_writer_free(w);
    dsv3_st_file *f = NULL;
    CHECK_MSG(dsv3_st_open(path, &f, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_st_count(f) == N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.w", i / 256, i % 256);
        const dsv3_tensor_view *v = dsv3_st_find(f, name);
        uint16_t val;
        CHECK(v && v == dsv3_st_tensor(f, (size_t)i));
        memcpy(&val, v->data, 2);
        CHECK(val == (uint16_t)i);
    }
    dsv3_st_close(f);
}

TEST(st_writer_errors) {
    dsv3_error err = {0};
    dsv3_st_writer *w = dsv3_st_writer_new();
    uint8_t d[16] = {0};
    CHECK(dsv3_st_writer_add(w, "a", DSV3_U8, 1, (int64_t[]){4}, d, &err) == DSV3_OK);
    CHECK(dsv3_st_writer_add(w, "a", DSV3_U8, 1, (int64_t[]){4}, d, &err) != DSV3_OK && strstr(err.msg, "'a'"));
    CHECK(dsv3_st_writer_add(w, "__metadata__", DSV3_U8, 1, (int64_t[]){4}, d, &err) != DSV3_OK);
    CHECK(dsv3_st_writer_add(w, "neg", DSV3_U8, 1, (int64_t[]){-1}, d, &err) != DSV3_OK && strstr(err.msg, "'neg'"));
    CHECK(dsv3_st_writer_add(w, "r9", DSV3_U8, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, d, &err) != DSV3_OK);
    CHECK(dsv3_st_writer_add(w, "rneg", DSV3_U8, -1, NULL, d, &err) != DSV3_OK);
    CHECK(dsv3_st_writer_add(w, "dt", (dsv3_dtype)99, 1, (int64_t[]){1}, d, &err) != DSV3_OK);
    CHECK(dsv3_st_writer_add(w, "nodata", DSV3_U8, 1, (int64_t[]){4}, NULL, &err) != DSV3_OK);
    CHECK(dsv3_st_writer_add(w, "big", DSV3_F64, 2, (int64_t[]){INT64_MAX, 4}, d, &err) != DSV3_OK);
    CHECK(dsv3_st_writer_add(w, "bad\xff", DSV3_U8, 1, (int64_t[]){1}, d, &err) != DSV3_OK);
    CHECK(dsv3_st_writer_metadata(w, "k", "\xc0\xaf", &err) != DSV3_OK);
    CHECK(dsv3_st_writer_add(w, NULL, DSV3_U8, 1, (int64_t[]){1}, d, &err) != DSV3_OK);
    /* Save into a missing directory, and over a directory (rename fails): error
     * names the path and no temporary file is left behind. */
    char path[512], tmp[600];
    tpath(path, sizeof path, "no/such/dir/x.safetensors");
    err.msg[0] = 0;
    CHECK(dsv3_st_writer_save(w, path, &err) == DSV3_ERR_IO && strstr(err.msg, path));
    tpath(path, sizeof path, "a_directory");
    CHECK(mkdir_p(path) == 0);
    err.msg[0] = 0;
    CHECK(dsv3_st_writer_save(w, path, &err) == DSV3_ERR_IO && strstr(err.msg, path));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);
    dsv3_st_writer_free(w);
    dsv3_st_writer_free(NULL);
}

/* --------------------------------------------------------- open failures */

TEST(st_open_missing_short_empty) {
    char p[512];
    tpath(p, sizeof p, "does_not_exist.safetensors");
    CHECK(expect_bad(p, "does_not_exist"));
    tpath(p, sizeof p, "zero.safetensors");
    CHECK(write_bytes(p, "", 0) == 0);
    CHECK(expect_bad(p, "empty"));
    tpath(p, sizeof p, "seven.safetensors");
    CHECK(write_bytes(p, "\x02\0\0\0\0\0\0", 7) == 0);
    CHECK(expect_bad(p, "too short"));
    tpath(p, sizeof p, "%s", "");
    CHECK(expect_bad(p, NULL)); /* a directory */
    dsv3_error err = {0};
    dsv3_st_file *f = (dsv3_st_file *)1;
    CHECK(dsv3_st_open(NULL, &f, &err) != DSV3_OK && f == NULL);
    CHECK(dsv3_st_count(NULL) == 0 && dsv3_st_find(NULL, "x") == NULL && dsv3_st_tensor(NULL, 0) == NULL);
    dsv3_st_close(NULL);
}

/* Edge cases that must be ACCEPTED. */
TEST(st_valid_edge_cases) {
    CHECK(expect_good_hdr("{}", 0, 0));
    CHECK(expect_good_hdr(" { } \n\t", 0, 0));                  /* N not a multiple of 8, whitespace */
    CHECK(expect_good_hdr("{\"__metadata__\":{}}", 0, 0));
    CHECK(expect_good_hdr("{\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", 1, 1));
    /* zero-size tensors at the same offset, at the start and at the end */
    CHECK(expect_good_hdr("{\"z1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                          "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                          "\"z2\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]},"
                          "\"z3\":{\"dtype\":\"F32\",\"shape\":[4,0],\"data_offsets\":[3,3]}}", 3, 4));
    /* a zero dimension makes the count 0 even when the other dims would overflow */
    CHECK(expect_good_hdr("{\"z\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904,0,4611686018427387904],"
                          "\"data_offsets\":[0,0]}}", 0, 1));
    /* unordered offsets in the header; unknown extra entry keys are ignored */
    CHECK(expect_good_hdr("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4],\"extra\":1},"
                          "\"a\":{\"data_offsets\":[0,2],\"shape\":[1],\"dtype\":\"BF16\"}}", 4, 2));
}

/* ---------------------------------------------------------- corruption set */

/* A valid file written by the writer; returns its bytes. */
static unsigned char *make_base(char *path, size_t cap, size_t *n, uint64_t *hlen) {
    tpath(path, cap, "base.safetensors");
    dsv3_error err = {0};
    dsv3_st_writer *w = dsv3_st_writer_new();
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[4] = {0x3f80, 0x4000, 0xbf80, 0};
    uint8_t c = 7;
    int ok = w && dsv3_st_writer_add(w, "a.weight", DSV3_F32, 2, (int64_t[]){2, 3}, a, &err) == DSV3_OK &&
             dsv3_st_writer_add(w, "b.bias", DSV3_BF16, 1, (int64_t[]){4}, b, &err) == DSV3_OK &&
             dsv3_st_writer_add(w, "c", DSV3_U8, 0, NULL, &c, &err) == DSV3_OK &&
             dsv3_st_writer_add(w, "z", DSV3_I32, 1, (int64_t[]){0}, NULL, &err) == DSV3_OK &&
             dsv3_st_writer_metadata(w, "format", "pt", &err) == DSV3_OK &&
             dsv3_st_writer_save(w, path, &err) == DSV3_OK;
    dsv3_st_writer_free(w);
    if (!ok) return NULL;
    unsigned char *p = read_bytes(path, n);
    *hlen = 0;
    for (int i = 7; p && i >= 0; i--) *hlen = (*hlen << 8) | p[i];
    return p;
}

TEST(st_corrupt_truncated_and_extended) {
    char base[512], p[512];
    size_t n;
    uint64_t hl;
    unsigned char *b = make_base(base, sizeof base, &n, &hl);
    CHECK(b);
    CHECK(expect_good_hdr("{}", 0, 0)); /* sanity */
    tpath(p, sizeof p, "trunc.safetensors");
    int bad = 0;
    /* every length from 0 to one byte short: 0, 1, 7, 8, mid-header, mid-data, n-1 */
    for (size_t len = 0; len < n && !bad; len++) {
        if (write_bytes(p, b, len) != 0 || !expect_bad(p, NULL)) {
            fprintf(stderr, "    truncation to %zu of %zu bytes accepted\n", len, n);
            bad = 1;
        }
    }
    /* one extra byte after the data */
    unsigned char *x = malloc(n + 1);
    memcpy(x, b, n);
    x[n] = 0;
    if (!bad && (write_bytes(p, x, n + 1) != 0 || !expect_bad(p, "unused"))) bad = 1;
    free(x);
    free(b);
    CHECK(!bad);
}

TEST(st_corrupt_header_length) {
    char base[512], p[512];
    size_t n;
    uint64_t hl;
    unsigned char *b = make_base(base, sizeof base, &n, &hl);
    CHECK(b);
    const uint64_t lens[] = {1ull << 63, 100000001ull, n - 8 + 1, UINT64_MAX, 0, hl - 1, hl + 1, 1};
    tpath(p, sizeof p, "hlen.safetensors");
    int bad = 0;
    for (size_t k = 0; k < sizeof lens / sizeof lens[0] && !bad; k++) {
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(lens[k] >> (8 * i));
        if (write_bytes(p, b, n) != 0 || !expect_bad(p, NULL)) {
            fprintf(stderr, "    header length %llu accepted\n", (unsigned long long)lens[k]);
            bad = 1;
        }
    }
    free(b);
    CHECK(!bad);
    /* The bound is checked before anything else: a large length in a tiny file. */
    unsigned char hdr[16] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'}; /* 100,000,001 */
    CHECK(write_bytes(p, hdr, sizeof hdr) == 0 && expect_bad(p, "limit"));
}

TEST(st_corrupt_every_header_byte) {
    char base[512], p[512];
    size_t n;
    uint64_t hl;
    unsigned char *b = make_base(base, sizeof base, &n, &hl);
    CHECK(b);
    tpath(p, sizeof p, "flip.safetensors");
    int bad = 0;
    size_t accepted = 0;
    /* XOR 0xFF: length bytes give a wrong length; a lone byte >= 0x80 among
     * ASCII is never valid UTF-8, so every such flip must be rejected. */
    for (size_t i = 0; i < 8 + hl && !bad; i++) {
        b[i] ^= 0xFF;
        if (write_bytes(p, b, n) != 0 || !expect_bad(p, NULL)) {
            fprintf(stderr, "    flipping byte %zu accepted\n", i);
            bad = 1;
        }
        b[i] ^= 0xFF;
    }
    /* Every single-bit flip: some give valid files (a changed name); none may crash,
     * and accepted files must still be self-consistent. */
    for (size_t i = 0; i < 8 + hl && !bad; i++)
        for (int bit = 0; bit < 8 && !bad; bit++) {
            b[i] ^= (unsigned char)(1u << bit);
            dsv3_st_file *f = NULL;
            dsv3_error err = {0};
            if (write_bytes(p, b, n) != 0) bad = 1;
            else if (dsv3_st_open(p, &f, &err) == DSV3_OK) {
                accepted++;
                uint64_t sum = 0;
                for (size_t t = 0; t < dsv3_st_count(f); t++) {
                    const dsv3_tensor_view *v = dsv3_st_tensor(f, t);
                    sum += v->nbytes;
                    if (dsv3_st_find(f, v->name) != v) bad = 1;
                }
                if (sum != n - 8 - hl) bad = 1;
                dsv3_st_close(f);
            } else if (!err.msg[0] || !strstr(err.msg, p)) {
                bad = 1;
            }
            if (bad) fprintf(stderr, "    bit %d of byte %zu: %s\n", bit, i, err.msg);
            b[i] ^= (unsigned char)(1u << bit);
        }
    free(b);
    CHECK(!bad);
    CHECK(accepted < 8 * (8 + hl) / 2); /* the vast majority must be rejected */
}

#define T(name, dt, shape, offs) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

TEST(st_corrupt_offsets) {
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[0,4]") "}", 2, "'a'"));            /* out of range */
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[0,4]") "}", 2, "past the end"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[0]", "[4,0]") "}", 4, "begin > end"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[0,4]") "," T("b", "U8", "[4]", "[2,6]") "}", 6, "overlap"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[0,4]") "," T("b", "U8", "[4]", "[0,4]") "}", 4, "overlap"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[0,4]") "," T("b", "U8", "[4]", "[6,10]") "}", 10, "gap"));
    CHECK(expect_bad_hdr("{" T("b", "U8", "[4]", "[2,6]") "}", 6, "gap"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[0,4]") "}", 6, "unused"));
    CHECK(expect_bad_hdr("{}", 1, "unused"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[0,4,8]") "}", 4, "'a'"));        /* 3 entries */
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[0]") "}", 4, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "4") "}", 4, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[0]", "[-4,-4]") "}", 0, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[0.0,4]") "}", 4, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[4]", "[\"0\",4]") "}", 4, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[0]", "[18446744073709551615,18446744073709551615]") "}", 0, NULL));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[1]", "[9223372036854775806,9223372036854775807]") "}", 0, "'a'"));
}

TEST(st_corrupt_shape_dtype) {
    /* the message quoted in the brief */
    CHECK(expect_bad_hdr("{" T("x.weight", "BF16", "[3,4]", "[0,20]") "}", 20,
                         "tensor 'x.weight': shape [3,4] x BF16 = 24 bytes but data_offsets span 20"));
    CHECK(expect_bad_hdr("{" T("a", "F32", "[]", "[0,8]") "}", 8, "'a'"));           /* rank 0 is 4 bytes */
    CHECK(expect_bad_hdr("{" T("a", "F17", "[2]", "[0,8]") "}", 8, "unknown dtype"));
    CHECK(expect_bad_hdr("{" T("a", "f32", "[2]", "[0,8]") "}", 8, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "F8_E8M0", "[2]", "[0,2]") "}", 2, "'a'"));
    CHECK(expect_bad_hdr("{\"a\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[-1]", "[0,0]") "}", 0, "'a'"));          /* negative */
    CHECK(expect_bad_hdr("{" T("a", "U8", "[2.0]", "[0,2]") "}", 2, "'a'"));          /* non-integer */
    CHECK(expect_bad_hdr("{" T("a", "U8", "[\"2\"]", "[0,2]") "}", 2, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[null]", "[0,0]") "}", 0, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[true]", "[0,1]") "}", 1, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "2", "[0,2]") "}", 2, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1, "'a'"));
    CHECK(expect_bad_hdr("{" T("a", "F32", "[4294967296,4294967296,4294967296]", "[0,0]") "}", 0, "overflow"));
    CHECK(expect_bad_hdr("{" T("a", "F32", "[4611686018427387904]", "[0,0]") "}", 0, "overflow"));
    CHECK(expect_bad_hdr("{" T("a", "U8", "[99999999999999999999]", "[0,0]") "}", 0, NULL));
    CHECK(expect_bad_hdr("{\"a\":{\"shape\":[2],\"data_offsets\":[0,2]}}", 2, "dtype"));
    CHECK(expect_bad_hdr("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,2]}}", 2, "shape"));
    CHECK(expect_bad_hdr("{\"a\":{\"dtype\":\"U8\",\"shape\":[2]}}", 2, "data_offsets"));
    CHECK(expect_bad_hdr("{\"a\":5}", 0, "'a'"));
    CHECK(expect_bad_hdr("{\"a\":[]}", 0, "'a'"));
}

TEST(st_corrupt_json) {
    CHECK(expect_bad_hdr("{" T("a", "U8", "[2]", "[0,2]") "," T("a", "U8", "[2]", "[2,4]") "}", 4, NULL));
    CHECK(expect_bad_hdr("{" T("a\\u0000b", "U8", "[2]", "[0,2]") "}", 2, NULL));   /* NUL in name */
    CHECK(expect_bad_hdr("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__"));
    CHECK(expect_bad_hdr("{\"__metadata__\":{\"k\":null}}", 0, "__metadata__"));
    CHECK(expect_bad_hdr("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "__metadata__"));
    CHECK(expect_bad_hdr("{\"__metadata__\":\"pt\"}", 0, "__metadata__"));
    CHECK(expect_bad_hdr("{\"__metadata__\":[]}", 0, "__metadata__"));
    CHECK(expect_bad_hdr("{\"__metadata__\":{},\"__metadata__\":{}}", 0, NULL));
    CHECK(expect_bad_hdr("[]", 0, "not a JSON object"));
    CHECK(expect_bad_hdr("\"x\"", 0, "not a JSON object"));
    CHECK(expect_bad_hdr("5", 0, "not a JSON object"));
    CHECK(expect_bad_hdr("null", 0, "not a JSON object"));
    CHECK(expect_bad_hdr("", 0, "JSON"));
    CHECK(expect_bad_hdr("        ", 0, "JSON"));
    CHECK(expect_bad_hdr("{", 0, "JSON"));
    CHECK(expect_bad_hdr("{} x", 0, "JSON"));
    CHECK(expect_bad_hdr("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},}", 2, "JSON"));
    CHECK(expect_bad_hdr("{'a':1}", 0, "JSON"));
    /* invalid UTF-8: lone byte, overlong, surrogate, truncated sequence, > U+10FFFF, stray continuation */
    const char *bad_utf8[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80", "\x80", "\xc1\xbf"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        char hdr[256];
        snprintf(hdr, sizeof hdr, "{" T("a%s", "U8", "[2]", "[0,2]") "}", bad_utf8[i]);
        CHECK(expect_bad_hdr(hdr, 2, "UTF-8"));
        snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"k\":\"v%s\"}}", bad_utf8[i]);
        CHECK(expect_bad_hdr(hdr, 0, "UTF-8"));
    }
    /* raw NUL and trailing NUL padding inside the header length */
    char p[512];
    tpath(p, sizeof p, "nul.safetensors");
    CHECK(write_st_raw(p, "{}\0\0\0\0\0\0", 8, 0) == 0 && expect_bad(p, "JSON"));
    CHECK(write_st_raw(p, "{\"a\0\":1}", 8, 0) == 0 && expect_bad(p, NULL));
    /* very deep nesting must not overflow the stack */
    size_t depth = 200000;
    char *deep = malloc(2 * depth + 16);
    CHECK(deep);
    size_t k = 0;
    deep[k++] = '{';
    memcpy(deep + k, "\"a\":", 4);
    k += 4;
    for (size_t i = 0; i < depth; i++) deep[k++] = '[';
    for (size_t i = 0; i < depth; i++) deep[k++] = ']';
    deep[k++] = '}';
    int ok = write_st_raw(p, deep, k, 0) == 0 && expect_bad(p, NULL);
    free(deep);
    CHECK(ok);
}

/* ------------------------------------------------------------ checkpoints */

static int save_tensors(const char *path, const char *const *names, size_t n) {
    dsv3_st_writer *w = dsv3_st_writer_new();
    dsv3_error err = {0};
    int ok = w != NULL;
    for (size_t i = 0; i < n && ok; i++) {
        float v[2] = {(float)i, (float)strlen(names[i])};
        ok = dsv3_st_writer_add(w, names[i], DSV3_F32, 1, (int64_t[]){2}, v, &err) == DSV3_OK;
    }
    ok = ok && dsv3_st_writer_save(w, path, &err) == DSV3_OK;
    dsv3_st_writer_free(w);
    return ok;
}

/* Creates DIR (under the tmp dir) with two shards and the given index JSON text. */
static int make_sharded(char *dir, size_t cap, const char *sub, const char *index) {
    char p[700];
    tpath(dir, cap, "%s", sub);
    if (mkdir_p(dir) != 0) return 0;
    const char *s1[] = {"a", "b"}, *s2[] = {"c", "extra"};
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    if (!save_tensors(p, s1, 2)) return 0;
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    if (!save_tensors(p, s2, 2)) return 0;
    if (!index) return 1;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    return write_bytes(p, index, strlen(index)) == 0;
}

#define S1 "\"model-00001-of-00002.safetensors\""
#define S2 "\"model-00002-of-00002.safetensors\""

TEST(st_ckpt_sharded) {
    char dir[512];
    CHECK(make_sharded(dir, sizeof dir, "ck_ok",
                       "{\"metadata\":{\"total_size\":32},\"weight_map\":{\"c\":" S2 ",\"a\":" S1 ",\"b\":" S1 "}}"));
    dsv3_checkpoint *c = NULL;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_ckpt_open(dir, &c, &err) == DSV3_OK, "%s", err.msg);
    /* weight_map order, then the unmapped shard tensor "extra" */
    CHECK(dsv3_ckpt_count(c) == 4);
    const char *order[] = {"c", "a", "b", "extra"};
    for (size_t i = 0; i < 4; i++) {
        const dsv3_tensor_view *v = dsv3_ckpt_tensor(c, i);
        CHECK(v && strcmp(v->name, order[i]) == 0 && dsv3_ckpt_find(c, order[i]) == v);
    }
    CHECK(dsv3_ckpt_tensor(c, 4) == NULL && dsv3_ckpt_find(c, "zz") == NULL);
    const dsv3_tensor_view *a = dsv3_ckpt_find(c, "a"), *cc = dsv3_ckpt_find(c, "c");
    CHECK(strstr(a->file, "model-00001-of-00002") && strstr(cc->file, "model-00002-of-00002"));
    float v[2];
    memcpy(v, cc->data, 8);
    CHECK(v[0] == 0.0f && v[1] == 1.0f);
    memcpy(v, dsv3_ckpt_find(c, "b")->data, 8);
    CHECK(v[0] == 1.0f);
    dsv3_ckpt_close(c);
    dsv3_ckpt_close(NULL);
    /* with a trailing slash, too */
    char dir2[600];
    snprintf(dir2, sizeof dir2, "%s/", dir);
    CHECK(dsv3_ckpt_open(dir2, &c, &err) == DSV3_OK && dsv3_ckpt_count(c) == 4);
    dsv3_ckpt_close(c);
}

static int ckpt_bad(const char *sub, const char *index, const char *want1, const char *want2) {
    char dir[512];
    if (!make_sharded(dir, sizeof dir, sub, index)) return 0;
    dsv3_checkpoint *c = (dsv3_checkpoint *)1;
    dsv3_error err = {0};
    dsv3_status st = dsv3_ckpt_open(dir, &c, &err);
    if (st == DSV3_OK || c != NULL || !strstr(err.msg, dir) || (want1 && !strstr(err.msg, want1)) ||
        (want2 && !strstr(err.msg, want2))) {
        fprintf(stderr, "    %s: status %d, message: %s\n", sub, (int)st, err.msg);
        if (st == DSV3_OK) dsv3_ckpt_close(c);
        return 0;
    }
    return 1;
}

TEST(st_ckpt_errors) {
    CHECK(ckpt_bad("ck_missing_shard", "{\"weight_map\":{\"a\":" S1 ",\"d\":\"model-00003-of-00002.safetensors\"}}",
                   "model-00003-of-00002.safetensors", "'d'"));
    CHECK(ckpt_bad("ck_missing_tensor", "{\"weight_map\":{\"a\":" S1 ",\"c\":" S1 "}}", "'c'",
                   "model-00001-of-00002.safetensors"));
    CHECK(ckpt_bad("ck_slash", "{\"weight_map\":{\"a\":\"sub/model.safetensors\"}}", "sub/model.safetensors", "'a'"));
    CHECK(ckpt_bad("ck_dotdot", "{\"weight_map\":{\"a\":\"..\"}}", "'..'", NULL));
    CHECK(ckpt_bad("ck_abs", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "/etc/passwd", NULL));
    CHECK(ckpt_bad("ck_nonstring", "{\"weight_map\":{\"a\":1}}", "'a'", NULL));
    CHECK(ckpt_bad("ck_nomap", "{\"metadata\":{}}", "weight_map", NULL));
    CHECK(ckpt_bad("ck_badjson", "{\"weight_map\":{\"a\":" S1 ",}", "JSON", NULL));
    CHECK(ckpt_bad("ck_dup", "{\"weight_map\":{\"a\":" S1 ",\"a\":" S1 "}}", NULL, NULL));
    CHECK(ckpt_bad("ck_array", "[]", "object", NULL));
    CHECK(ckpt_bad("ck_badmeta", "{\"metadata\":5,\"weight_map\":{}}", "metadata", NULL));

    /* a corrupt shard: error names the shard path */
    char dir[512], p[700];
    CHECK(make_sharded(dir, sizeof dir, "ck_corrupt_shard", "{\"weight_map\":{\"a\":" S1 "}}"));
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    CHECK(write_bytes(p, "\x02\0\0\0\0\0\0\0{}", 10) == 0);
    dsv3_checkpoint *c = NULL;
    dsv3_error err = {0};
    CHECK(dsv3_ckpt_open(dir, &c, &err) != DSV3_OK && c == NULL && strstr(err.msg, p));

    /* neither file */
    tpath(dir, sizeof dir, "ck_empty_dir");
    CHECK(mkdir_p(dir) == 0);
    char want[700];
    snprintf(want, sizeof want, "%s: no model.safetensors or model.safetensors.index.json", dir);
    CHECK(dsv3_ckpt_open(dir, &c, &err) == DSV3_ERR_NOT_FOUND && c == NULL);
    CHECK_MSG(strcmp(err.msg, want) == 0, "%s", err.msg);
    tpath(dir, sizeof dir, "ck_no_such_dir");
    CHECK(dsv3_ckpt_open(dir, &c, &err) != DSV3_OK && c == NULL && strstr(err.msg, dir));
}

TEST(st_ckpt_single_file) {
    char dir[512], p[700];
    tpath(dir, sizeof dir, "ck_single");
    CHECK(mkdir_p(dir) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    const char *names[] = {"x", "y", "z"};
    CHECK(save_tensors(p, names, 3));
    dsv3_checkpoint *c = NULL;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_ckpt_open(dir, &c, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_ckpt_count(c) == 3 && strcmp(dsv3_ckpt_tensor(c, 2)->name, "z") == 0);
    CHECK(dsv3_ckpt_find(c, "y") == dsv3_ckpt_tensor(c, 1) && strcmp(dsv3_ckpt_find(c, "y")->file, p) == 0);
    dsv3_ckpt_close(c);
    /* a corrupt single file is reported with its path */
    CHECK(write_bytes(p, "\0\0\0\0\0\0\0", 7) == 0);
    CHECK(dsv3_ckpt_open(dir, &c, &err) != DSV3_OK && c == NULL && strstr(err.msg, p));
}

/* ---------------------------------------------------------------- fixtures */

TEST(st_fixture_tiny) {
    const char *fx = test_fixtures_dir();
    if (!fx) SKIP("fixtures not found");
    char p[1024];
    snprintf(p, sizeof p, "%s/tiny/model.safetensors", fx);
    dsv3_st_file *f = NULL;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_st_open(p, &f, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_st_count(f) == 207);
    CHECK(dsv3_st_metadata(f, "format") && strcmp(dsv3_st_metadata(f, "format"), "pt") == 0);
    const dsv3_tensor_view *v = dsv3_st_find(f, "model.embed_tokens.weight");
    CHECK(v && v->dtype == DSV3_BF16 && v->ndim == 2 && v->shape[0] == 512 && v->shape[1] == 64);
    CHECK(v->nbytes == 512 * 64 * 2);
    uint16_t h0, hl;
    memcpy(&h0, v->data, 2);
    memcpy(&hl, (const char *)v->data + v->nbytes - 2, 2);
    CHECK(h0 == 0xbde5 && hl == 0x3f2d);
    v = dsv3_st_find(f, "model.layers.1.mlp.gate.e_score_correction_bias");
    CHECK(v && v->dtype == DSV3_F32 && v->ndim == 1 && v->shape[0] == 16);
    dsv3_st_close(f);

    snprintf(p, sizeof p, "%s/tiny", fx);
    dsv3_checkpoint *c = NULL;
    CHECK_MSG(dsv3_ckpt_open(p, &c, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_ckpt_count(c) == 207 && dsv3_ckpt_find(c, "model.layers.3.embed_tokens.weight"));
    dsv3_ckpt_close(c);
}

TEST(st_fixture_small_fp8) {
    const char *fx = test_fixtures_dir();
    if (!fx) SKIP("fixtures not found");
    char p[1024];
    snprintf(p, sizeof p, "%s/small", fx);
    dsv3_checkpoint *c = NULL;
    dsv3_error err = {0};
    CHECK_MSG(dsv3_ckpt_open(p, &c, &err) == DSV3_OK, "%s", err.msg);
    CHECK(dsv3_ckpt_count(c) == 169);
    const dsv3_tensor_view *w = dsv3_ckpt_find(c, "model.layers.0.self_attn.q_a_proj.weight");
    const dsv3_tensor_view *s = dsv3_ckpt_find(c, "model.layers.0.self_attn.q_a_proj.weight_scale_inv");
    CHECK(w && w->dtype == DSV3_F8_E4M3 && w->shape[0] == 192 && w->shape[1] == 256 && w->nbytes == 192 * 256);
    CHECK(s && s->dtype == DSV3_F32 && s->shape[0] == 2 && s->shape[1] == 2);
    dsv3_ckpt_close(c);
}
