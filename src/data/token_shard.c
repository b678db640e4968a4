/* Binary token shards (format in include/dsv3/data.h) and the batch sampler. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsv3/data.h"

struct dsv3_token_shard {
    const uint8_t *map;
    size_t map_len;
    uint64_t n, vocab;
    uint32_t width;
};

dsv3_status dsv3_shard_open(const char *path, dsv3_token_shard **out, dsv3_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return dsv3_fail(err, errno == ENOENT ? DSV3_ERR_NOT_FOUND : DSV3_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dsv3_fail(err, DSV3_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size < DSV3_SHARD_HEADER) {
        close(fd);
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: %lld bytes, shorter than the %d-byte token shard header", path,
                         (long long)st.st_size, DSV3_SHARD_HEADER);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return dsv3_fail(err, DSV3_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    const uint8_t *p = m;
    uint32_t version, width;
    uint64_t n, vocab;
    memcpy(&version, p + 8, 4);
    memcpy(&width, p + 12, 4);
    memcpy(&n, p + 16, 8);
    memcpy(&vocab, p + 24, 8);
    const char *why = NULL;
    if (memcmp(p, DSV3_SHARD_MAGIC, 8) != 0) why = "bad magic (not a dsv3 token shard)";
    else if (version != 1) why = "unsupported version";
    else if (width != 2 && width != 4) why = "bytes per token must be 2 or 4";
    else if (vocab == 0 || vocab > ((uint64_t)1 << 31)) why = "bad vocabulary size";
    else if (n > ((uint64_t)st.st_size - DSV3_SHARD_HEADER) / width || DSV3_SHARD_HEADER + n * width != (uint64_t)st.st_size)
        why = "token count does not match the file size";
    if (why) {
        munmap(m, (size_t)st.st_size);
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: %s", path, why);
    }
    dsv3_token_shard *s = calloc(1, sizeof *s);
    if (!s) {
        munmap(m, (size_t)st.st_size);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    }
    *s = (dsv3_token_shard){p, (size_t)st.st_size, n, vocab, width};
    /* every token must be inside the vocabulary */
    for (uint64_t i = 0; i < n; i++)
        if ((uint64_t)dsv3_shard_token(s, i) >= vocab) {
            dsv3_shard_close(s);
            return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: token %llu is outside the vocabulary (%llu)", path,
                             (unsigned long long)i, (unsigned long long)vocab);
        }
    *out = s;
    return DSV3_OK;
}

void dsv3_shard_close(dsv3_token_shard *s) {
    if (!s) return;
    munmap((void *)s->map, s->map_len);
    free(s);
}

uint64_t dsv3_shard_len(const dsv3_token_shard *s) { return s->n; }
uint64_t dsv3_shard_vocab(const dsv3_token_shard *s) { return s->vocab; }

int32_t dsv3_shard_token(const dsv3_token_shard *s, uint64_t i) {
    const uint8_t *p = s->map + DSV3_SHARD_HEADER + i * s->width;
    if (s->width == 2) {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, p, 4);
    return (int32_t)v;
}

dsv3_status dsv3_shard_write(const char *path, const int32_t *tokens, uint64_t n, uint64_t vocab, dsv3_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    uint32_t version = 1, width = vocab <= 65536 ? 2 : 4;
    uint8_t hdr[DSV3_SHARD_HEADER];
    memcpy(hdr, DSV3_SHARD_MAGIC, 8);
    memcpy(hdr + 8, &version, 4);
    memcpy(hdr + 12, &width, 4);
    memcpy(hdr + 16, &n, 8);
    memcpy(hdr + 24, &vocab, 8);
    int ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr;
    for (uint64_t i = 0; ok && i < n; i++) {
        if (tokens[i] < 0 || (uint64_t)tokens[i] >= vocab) {
            fclose(f);
            remove(tmp);
            return dsv3_fail(err, DSV3_ERR_INVALID, "%s: token %d at %llu outside the vocabulary", path, tokens[i],
                             (unsigned long long)i);
        }
        if (width == 2) { uint16_t v = (uint16_t)tokens[i]; ok = fwrite(&v, 2, 1, f) == 1; }
        else { uint32_t v = (uint32_t)tokens[i]; ok = fwrite(&v, 4, 1, f) == 1; }
    }
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return dsv3_fail(err, DSV3_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return DSV3_OK;
}

static void build_perm(dsv3_sampler_data *d, uint64_t epoch);

dsv3_status dsv3_data_init(dsv3_sampler_data *d, const dsv3_token_shard *s, int64_t seq_len, double val_frac,
                           uint64_t seed, dsv3_error *err) {
    memset(d, 0, sizeof *d);
    if (seq_len < 2) return dsv3_fail(err, DSV3_ERR_INVALID, "sequence length must be >= 2");
    if (!(val_frac >= 0 && val_frac < 1)) return dsv3_fail(err, DSV3_ERR_INVALID, "validation fraction must be in [0, 1)");
    d->shard = s;
    d->seq_len = seq_len;
    d->seed = seed;
    d->n_windows = (int64_t)(s->n / (uint64_t)seq_len);
    d->n_val = val_frac > 0 ? (int64_t)(val_frac * (double)d->n_windows + 0.999999) : 0;
    d->n_train = d->n_windows - d->n_val;
    if (d->n_train < 1)
        return dsv3_fail(err, DSV3_ERR_INVALID, "data has %llu tokens: not enough for one training window of %lld (+%lld validation)",
                         (unsigned long long)s->n, (long long)seq_len, (long long)d->n_val);
    d->perm = malloc(sizeof(int64_t) * d->n_train);
    if (!d->perm) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for the data permutation");
    build_perm(d, 0);
    return DSV3_OK;
}

/* splitmix64: a stateless hash for the per-epoch permutation */
static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Fills d->perm with the seeded Fisher-Yates permutation of epoch e. */
static void build_perm(dsv3_sampler_data *d, uint64_t epoch) {
    for (int64_t i = 0; i < d->n_train; i++) d->perm[i] = i;
    uint64_t st = mix(d->seed ^ mix(epoch));
    for (int64_t i = d->n_train - 1; i > 0; i--) {
        st = mix(st);
        int64_t j = (int64_t)(st % (uint64_t)(i + 1));
        int64_t t = d->perm[i];
        d->perm[i] = d->perm[j];
        d->perm[j] = t;
    }
    d->perm_epoch = epoch;
}

static int64_t train_window(dsv3_sampler_data *d, uint64_t k) {
    uint64_t epoch = k / (uint64_t)d->n_train;
    if (epoch != d->perm_epoch) build_perm(d, epoch);
    return d->perm[k % (uint64_t)d->n_train];
}

void dsv3_data_free(dsv3_sampler_data *d) {
    free(d->perm);
    d->perm = NULL;
}

void dsv3_data_train_batch(dsv3_sampler_data *d, uint64_t cursor, int64_t B, int32_t *ids) {
    for (int64_t b = 0; b < B; b++) {
        int64_t w = train_window(d, cursor + (uint64_t)b);
        for (int64_t t = 0; t < d->seq_len; t++) ids[b * d->seq_len + t] = dsv3_shard_token(d->shard, (uint64_t)(w * d->seq_len + t));
    }
}

void dsv3_data_val_window(const dsv3_sampler_data *d, int64_t i, int32_t *ids) {
    int64_t w = d->n_train + i;
    for (int64_t t = 0; t < d->seq_len; t++) ids[t] = dsv3_shard_token(d->shard, (uint64_t)(w * d->seq_len + t));
}
