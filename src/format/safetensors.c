/* safetensors reader (spec §2.1) and checkpoint directories (spec §2.2).
 *
 * A file is mmapped read-only (PROT_READ, MAP_PRIVATE) and its header is
 * validated completely before any view is handed out; views point into the
 * mapping. Lookup by name goes through a hash map (dsv3/hashmap.h).
 *
 * Checkpoint directories: tensors are listed in weight_map order; tensors that
 * a shard holds but weight_map does not mention are appended afterwards (shard
 * open order, then header order) unless a tensor of that name is already
 * present, so dsv3_ckpt_find always returns the tensor weight_map names. */
#include "dsv3/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsv3/hashmap.h"

struct dsv3_st_file {
    char *path;
    void *map;
    size_t map_len;
    size_t n;
    dsv3_tensor_view *t; /* header order */
    char *names;         /* arena holding every tensor name */
    size_t nmeta;
    char **meta;         /* 2*nmeta strings: key, value, key, value, ... */
    dsv3_hashmap *index; /* name -> dsv3_tensor_view * */
};

/* ---------------------------------------------------------------- helpers */

/* Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and
 * code points above U+10FFFF are invalid), or n if all of s[0..n) is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the 2nd byte */
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;      /* overlong */
            else if (c == 0xED) hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;      /* overlong */
            else if (c == 0xF4) hi = 0x8F; /* > U+10FFFF */
        } else return i;
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return n;
}

/* Error about one tensor: "PATH: tensor 'NAME': <message>". */
__attribute__((format(printf, 5, 6)))
static dsv3_status tensor_err(dsv3_error *err, dsv3_status code, const char *path, const char *name,
                              const char *fmt, ...) {
    char buf[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return dsv3_fail(err, code, "%s: tensor '%.200s': %s", path, name, buf);
}

static void format_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t used = 0;
    buf[0] = 0;
    used += (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? "," : "", (long long)shape[d]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

/* True if a key from json_object_foreach contains an escaped NUL ("\u0000"),
 * which would silently truncate it as a C string. */
static int key_has_nul(const char *key) {
    return json_object_iter_key_len(json_object_key_to_iter(key)) != strlen(key);
}

/* Reads a JSON integer that must be >= 0. */
static int json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return -1;
    *out = (uint64_t)x;
    return 0;
}

/* Safetensors dtypes that exist in the format but that this engine does not handle. */
static int dtype_known_unsupported(const char *s) {
    static const char *names[] = {"F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", "C128", "U4", "I4"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0) return 1;
    return 0;
}

/* ------------------------------------------------------------ header parse */

/* Validates one header entry and fills v (all fields but name/data/file);
 * begin/end receive data_offsets. */
static dsv3_status parse_entry(const char *path, const char *name, json_t *e, dsv3_tensor_view *v,
                               uint64_t *begin, uint64_t *end, dsv3_error *err) {
    if (!json_is_object(e)) return tensor_err(err, DSV3_ERR_FORMAT, path, name, "entry is not a JSON object");
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
           *jo = json_object_get(e, "data_offsets");
    if (!jd) return tensor_err(err, DSV3_ERR_FORMAT, path, name, "missing \"dtype\"");
    if (!js) return tensor_err(err, DSV3_ERR_FORMAT, path, name, "missing \"shape\"");
    if (!jo) return tensor_err(err, DSV3_ERR_FORMAT, path, name, "missing \"data_offsets\"");

    if (!json_is_string(jd)) return tensor_err(err, DSV3_ERR_FORMAT, path, name, "\"dtype\" is not a string");
    const char *ds = json_string_value(jd);
    if (dsv3_dtype_parse(ds, &v->dtype) != 0) {
        if (dtype_known_unsupported(ds))
            return tensor_err(err, DSV3_ERR_UNSUPPORTED, path, name, "dtype '%.40s' is not supported", ds);
        return tensor_err(err, DSV3_ERR_FORMAT, path, name, "unknown dtype '%.40s'", ds);
    }

    if (!json_is_array(js)) return tensor_err(err, DSV3_ERR_FORMAT, path, name, "\"shape\" is not an array");
    size_t nd = json_array_size(js);
    if (nd > DSV3_MAX_DIMS)
        return tensor_err(err, DSV3_ERR_UNSUPPORTED, path, name, "shape has %zu dimensions (at most %d supported)",
                          nd, DSV3_MAX_DIMS);
    v->ndim = (int)nd;
    uint64_t numel = 1;
    int overflow = 0, zero = 0;
    for (size_t d = 0; d < nd; d++) {
        uint64_t dim;
        if (json_u64(json_array_get(js, d), &dim) != 0)
            return tensor_err(err, DSV3_ERR_FORMAT, path, name,
                              "shape[%zu] is not a non-negative integer", d);
        v->shape[d] = (int64_t)dim;
        unsigned long long p;
        if (dim == 0) zero = 1;
        else if (!overflow) {
            if (dsv3_mul_u64(numel, dim, &p) != 0) overflow = 1;
            else numel = (uint64_t)p;
        }
    }
    /* A zero dimension makes the product 0 even if the other dims overflow. */
    if (zero) numel = 0, overflow = 0;
    for (size_t d = nd; d < DSV3_MAX_DIMS; d++) v->shape[d] = 0;
    char shp[200];
    format_shape(shp, sizeof shp, v->shape, v->ndim);
    unsigned long long nbytes = 0;
    if (overflow || dsv3_mul_u64(numel, dsv3_dtype_size(v->dtype), &nbytes) != 0)
        return tensor_err(err, DSV3_ERR_FORMAT, path, name, "shape %s x %s overflows 64-bit byte count", shp,
                          dsv3_dtype_name(v->dtype));
    v->numel = numel;
    v->nbytes = nbytes;

    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return tensor_err(err, DSV3_ERR_FORMAT, path, name, "\"data_offsets\" is not an array [begin, end]");
    if (json_u64(json_array_get(jo, 0), begin) != 0 || json_u64(json_array_get(jo, 1), end) != 0)
        return tensor_err(err, DSV3_ERR_FORMAT, path, name, "\"data_offsets\" entries are not non-negative integers");
    if (*begin > *end)
        return tensor_err(err, DSV3_ERR_FORMAT, path, name, "data_offsets [%llu,%llu]: begin > end",
                          (unsigned long long)*begin, (unsigned long long)*end);
    if (*end - *begin != nbytes)
        return tensor_err(err, DSV3_ERR_FORMAT, path, name, "shape %s x %s = %llu bytes but data_offsets span %llu",
                          shp, dsv3_dtype_name(v->dtype), nbytes, (unsigned long long)(*end - *begin));
    return DSV3_OK;
}

static dsv3_status parse_metadata(dsv3_st_file *f, json_t *m, dsv3_error *err) {
    if (!json_is_object(m))
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", f->path);
    size_t cnt = json_object_size(m);
    f->meta = calloc(cnt ? 2 * cnt : 1, sizeof(char *));
    if (!f->meta) return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", f->path);
    const char *k;
    json_t *val;
    json_object_foreach(m, k, val) {
        if (key_has_nul(k))
            return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: \"__metadata__\" key '%.200s' contains a NUL character",
                             f->path, k);
        if (!json_is_string(val))
            return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: \"__metadata__\" value for key '%.200s' is not a string",
                             f->path, k);
        char *ks = strdup(k), *vs = strdup(json_string_value(val));
        f->meta[2 * f->nmeta] = ks;
        f->meta[2 * f->nmeta + 1] = vs;
        f->nmeta++; /* counted before the check so close() frees both */
        if (!ks || !vs) return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", f->path);
    }
    return DSV3_OK;
}

typedef struct { uint64_t begin, end; size_t idx; } span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorted by offsets, the entries must tile [0, data_size) exactly. */
static dsv3_status check_tiling(dsv3_st_file *f, span *sp, uint64_t data_size, dsv3_error *err) {
    qsort(sp, f->n, sizeof *sp, span_cmp);
    uint64_t pos = 0;
    for (size_t i = 0; i < f->n; i++) {
        const char *name = f->t[sp[i].idx].name;
        if (sp[i].begin > pos) {
            if (i == 0)
                return tensor_err(err, DSV3_ERR_FORMAT, f->path, name,
                                  "data_offsets [%llu,%llu]: gap of %llu bytes at the start of the data buffer",
                                  (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                                  (unsigned long long)sp[i].begin);
            return tensor_err(err, DSV3_ERR_FORMAT, f->path, name,
                              "data_offsets [%llu,%llu]: gap of %llu bytes after tensor '%.200s' (ends at %llu)",
                              (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                              (unsigned long long)(sp[i].begin - pos), f->t[sp[i - 1].idx].name,
                              (unsigned long long)pos);
        }
        if (sp[i].begin < pos)
            return tensor_err(err, DSV3_ERR_FORMAT, f->path, name,
                              "data_offsets [%llu,%llu] overlap tensor '%.200s' [%llu,%llu]",
                              (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                              f->t[sp[i - 1].idx].name, (unsigned long long)sp[i - 1].begin,
                              (unsigned long long)sp[i - 1].end);
        pos = sp[i].end;
    }
    if (pos != data_size)
        return dsv3_fail(err, DSV3_ERR_FORMAT,
                         "%s: tensors cover %llu bytes but the data buffer holds %llu (%llu unused bytes at the end)",
                         f->path, (unsigned long long)pos, (unsigned long long)data_size,
                         (unsigned long long)(data_size - pos));
    return DSV3_OK;
}

static dsv3_status parse_header(dsv3_st_file *f, const unsigned char *hdr, size_t hlen, uint64_t data_size,
                                dsv3_error *err) {
    size_t bad = utf8_invalid_at(hdr, hlen);
    if (bad != hlen)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: header is not valid UTF-8 (byte %zu of the header, 0x%02x)",
                         f->path, bad, hdr[bad]);
    json_error_t je;
    json_t *root = json_loadb((const char *)hdr, hlen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root)
        return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: header is not valid JSON (line %d, column %d): %s", f->path,
                         je.line, je.column, je.text);
    dsv3_status st = DSV3_OK;
    span *sp = NULL;
    if (!json_is_object(root)) {
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: header is not a JSON object", f->path);
        goto done;
    }
    /* Sizes first: one arena for all names. */
    size_t ntensors = 0, names_len = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        ntensors++;
        names_len += strlen(key) + 1;
    }
    f->t = calloc(ntensors ? ntensors : 1, sizeof *f->t);
    f->names = malloc(names_len ? names_len : 1);
    sp = calloc(ntensors ? ntensors : 1, sizeof *sp);
    f->index = dsv3_hashmap_new(ntensors);
    if (!f->t || !f->names || !sp || !f->index) {
        st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory for %zu tensors", f->path, ntensors);
        goto done;
    }
    const unsigned char *data = (const unsigned char *)f->map + 8 + hlen;
    char *np = f->names;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((st = parse_metadata(f, val, err)) != DSV3_OK) goto done;
            continue;
        }
        dsv3_tensor_view *v = &f->t[f->n];
        size_t kl = strlen(key);
        if (key_has_nul(key)) {
            st = tensor_err(err, DSV3_ERR_FORMAT, f->path, key, "tensor name contains a NUL character");
            goto done;
        }
        memcpy(np, key, kl + 1);
        v->name = np;
        np += kl + 1;
        v->file = f->path;
        uint64_t b = 0, e = 0;
        if ((st = parse_entry(f->path, key, val, v, &b, &e, err)) != DSV3_OK) goto done;
        if (e > data_size) {
            st = tensor_err(err, DSV3_ERR_FORMAT, f->path, key,
                            "data_offsets [%llu,%llu] extend past the end of the %llu-byte data buffer "
                            "(truncated file?)",
                            (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
            goto done;
        }
        v->data = data + b;
        sp[f->n] = (span){b, e, f->n};
        /* jansson already rejects duplicate keys; this also catches keys that
         * differ only after an embedded NUL. */
        int r = dsv3_hashmap_put(f->index, v->name, v, NULL);
        if (r != 0) {
            st = r > 0 ? tensor_err(err, DSV3_ERR_FORMAT, f->path, key, "duplicate tensor name")
                       : dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", f->path);
            goto done;
        }
        f->n++;
    }
    st = check_tiling(f, sp, data_size, err);
done:
    free(sp);
    json_decref(root);
    return st;
}

/* ------------------------------------------------------------- public API */

dsv3_status dsv3_st_open(const char *path, dsv3_st_file **out, dsv3_error *err) {
    if (out) *out = NULL;
    if (!path || !out) return dsv3_fail(err, DSV3_ERR_INVALID, "dsv3_st_open: NULL argument");
    dsv3_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", path);
    }
    dsv3_status st = DSV3_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* O_NONBLOCK: never hang on a FIFO */
    if (fd < 0) {
        st = dsv3_fail(err, errno == ENOENT ? DSV3_ERR_NOT_FOUND : DSV3_ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = dsv3_fail(err, DSV3_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = dsv3_fail(err, DSV3_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size == 0) {
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: file is empty (not a safetensors file)", path);
        goto fail;
    }
    if (size < 8) {
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: file is only %llu bytes, too short for the 8-byte header length",
                       path, (unsigned long long)size);
        goto fail;
    }
    if (size > SIZE_MAX) {
        st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: file too large to map", path);
        goto fail;
    }
    f->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = dsv3_fail(err, DSV3_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    f->map_len = (size_t)size;
    close(fd);
    fd = -1;

    const unsigned char *p = f->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | p[i]; /* little-endian */
    if (n > DSV3_ST_MAX_HEADER) {
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                       (unsigned long long)n, DSV3_ST_MAX_HEADER);
        goto fail;
    }
    if (n > size - 8) { /* 8 + n > size, written without overflow */
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: header length %llu runs past the end of the %llu-byte file "
                       "(truncated file?)", path, (unsigned long long)n, (unsigned long long)size);
        goto fail;
    }
    if ((st = parse_header(f, p + 8, (size_t)n, size - 8 - n, err)) != DSV3_OK) goto fail;
    *out = f;
    return DSV3_OK;
fail:
    if (fd >= 0) close(fd);
    dsv3_st_close(f);
    return st;
}

void dsv3_st_close(dsv3_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    for (size_t i = 0; i < 2 * f->nmeta; i++) free(f->meta[i]);
    free(f->meta);
    dsv3_hashmap_free(f->index);
    free(f->t);
    free(f->names);
    free(f->path);
    free(f);
}

size_t dsv3_st_count(const dsv3_st_file *f) { return f ? f->n : 0; }

const dsv3_tensor_view *dsv3_st_tensor(const dsv3_st_file *f, size_t i) {
    return f && i < f->n ? &f->t[i] : NULL;
}

const dsv3_tensor_view *dsv3_st_find(const dsv3_st_file *f, const char *name) {
    return f && name ? dsv3_hashmap_get(f->index, name) : NULL;
}

const char *dsv3_st_metadata(const dsv3_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

/* ------------------------------------------------------------- checkpoint */

struct dsv3_checkpoint {
    dsv3_st_file **files;
    size_t nfiles;
    const dsv3_tensor_view **t;
    size_t n, cap;
    dsv3_hashmap *index; /* name -> const dsv3_tensor_view * */
};

static char *path_join(const char *dir, const char *name) {
    size_t dl = strlen(dir), nl = strlen(name);
    int slash = dl > 0 && dir[dl - 1] != '/';
    char *p = malloc(dl + slash + nl + 1);
    if (!p) return NULL;
    memcpy(p, dir, dl);
    if (slash) p[dl] = '/';
    memcpy(p + dl + slash, name, nl + 1);
    return p;
}

/* Adds v unless its name is already present (returns 1 then), -1 on OOM. */
static int ckpt_add(dsv3_checkpoint *c, const dsv3_tensor_view *v) {
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        const dsv3_tensor_view **nt = realloc(c->t, ncap * sizeof *nt);
        if (!nt) return -1;
        c->t = nt;
        c->cap = ncap;
    }
    int r = dsv3_hashmap_put(c->index, v->name, (void *)v, NULL);
    if (r == 0) c->t[c->n++] = v;
    return r;
}

/* Shard names must be plain file names inside the checkpoint directory. */
static int bad_shard_name(const char *s) {
    return s[0] == 0 || strchr(s, '/') || strchr(s, '\\') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0;
}

static dsv3_status open_sharded(dsv3_checkpoint *c, const char *dir, const char *idx, dsv3_error *err) {
    json_error_t je;
    json_t *root = json_load_file(idx, JSON_REJECT_DUPLICATES, &je);
    if (!root) return dsv3_fail(err, DSV3_ERR_FORMAT, "%s: invalid JSON (line %d, column %d): %s", idx, je.line,
                                je.column, je.text);
    dsv3_status st = DSV3_OK;
    dsv3_hashmap *shards = NULL; /* shard file name -> (file index + 1) */
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    json_t *md = json_is_object(root) ? json_object_get(root, "metadata") : NULL;
    if (!json_is_object(root)) {
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: not a JSON object", idx);
        goto done;
    }
    if (md && !json_is_object(md) && !json_is_null(md)) {
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: \"metadata\" is not a JSON object", idx);
        goto done;
    }
    if (!json_is_object(wm)) {
        st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: \"weight_map\" is %s", idx,
                       wm ? "not a JSON object" : "missing");
        goto done;
    }
    size_t nw = json_object_size(wm);
    shards = dsv3_hashmap_new(0);
    c->files = calloc(nw ? nw : 1, sizeof *c->files);
    if (!shards || !c->files) {
        st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", idx);
        goto done;
    }
    const char *name;
    json_t *val;
    json_object_foreach(wm, name, val) {
        if (!json_is_string(val)) {
            st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: weight_map entry for tensor '%.200s' is not a string", idx,
                           name);
            goto done;
        }
        if (key_has_nul(name)) {
            st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: weight_map tensor name '%.200s' contains a NUL character",
                           idx, name);
            goto done;
        }
        const char *shard = json_string_value(val);
        if (bad_shard_name(shard)) {
            st = dsv3_fail(err, DSV3_ERR_FORMAT,
                           "%s: tensor '%.200s': shard name '%.200s' is not a plain file name", idx, name, shard);
            goto done;
        }
        void *slot = NULL;
        dsv3_st_file *f;
        if (dsv3_hashmap_findn(shards, shard, strlen(shard), &slot)) {
            f = c->files[(size_t)(uintptr_t)slot - 1];
        } else {
            char *sp = path_join(dir, shard);
            if (!sp) {
                st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", idx);
                goto done;
            }
            st = dsv3_st_open(sp, &f, err);
            free(sp);
            if (st != DSV3_OK) {
                dsv3_wrap(err, st, "%s: shard '%.200s' (for tensor '%.200s')", idx, shard, name);
                goto done;
            }
            c->files[c->nfiles++] = f;
            /* Key is borrowed from root, which lives until the end of this function. */
            if (dsv3_hashmap_put(shards, shard, (void *)(uintptr_t)c->nfiles, NULL) < 0) {
                st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", idx);
                goto done;
            }
        }
        const dsv3_tensor_view *v = dsv3_st_find(f, name);
        if (!v) {
            st = dsv3_fail(err, DSV3_ERR_FORMAT, "%s: tensor '%.200s' is mapped to shard '%.200s' but %s does not "
                           "contain it", idx, name, shard, f->path);
            goto done;
        }
        if (ckpt_add(c, v) < 0) {
            st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", idx);
            goto done;
        }
    }
    /* Tensors present in a shard but absent from weight_map: appended (harmless extras). */
    for (size_t i = 0; i < c->nfiles; i++)
        for (size_t k = 0; k < c->files[i]->n; k++)
            if (ckpt_add(c, &c->files[i]->t[k]) < 0) {
                st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", idx);
                goto done;
            }
done:
    dsv3_hashmap_free(shards);
    json_decref(root);
    return st;
}

dsv3_status dsv3_ckpt_open(const char *dir, dsv3_checkpoint **out, dsv3_error *err) {
    if (out) *out = NULL;
    if (!dir || !out) return dsv3_fail(err, DSV3_ERR_INVALID, "dsv3_ckpt_open: NULL argument");
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return dsv3_fail(err, errno == ENOENT ? DSV3_ERR_NOT_FOUND : DSV3_ERR_IO, "%s: cannot access: %s", dir,
                         strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return dsv3_fail(err, DSV3_ERR_INVALID, "%s: not a directory", dir);
    dsv3_checkpoint *c = calloc(1, sizeof *c);
    char *idx = path_join(dir, "model.safetensors.index.json");
    char *single = path_join(dir, "model.safetensors");
    dsv3_status st = DSV3_OK;
    if (!c || !idx || !single || !(c->index = dsv3_hashmap_new(0))) {
        st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if (stat(idx, &sb) == 0) {
        if (!S_ISREG(sb.st_mode)) st = dsv3_fail(err, DSV3_ERR_IO, "%s: not a regular file", idx);
        else st = open_sharded(c, dir, idx, err);
    } else if (errno != ENOENT) {
        st = dsv3_fail(err, DSV3_ERR_IO, "%s: cannot access: %s", idx, strerror(errno));
    } else if (stat(single, &sb) == 0 || errno != ENOENT) {
        dsv3_st_file *f = NULL;
        st = dsv3_st_open(single, &f, err);
        if (st == DSV3_OK) {
            c->files = malloc(sizeof *c->files);
            if (!c->files) {
                dsv3_st_close(f);
                st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", dir);
                goto done;
            }
            c->files[c->nfiles++] = f;
            for (size_t k = 0; k < f->n && st == DSV3_OK; k++)
                if (ckpt_add(c, &f->t[k]) < 0) st = dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", dir);
        }
    } else {
        st = dsv3_fail(err, DSV3_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
done:
    free(idx);
    free(single);
    if (st != DSV3_OK) {
        dsv3_ckpt_close(c);
        return st;
    }
    *out = c;
    return DSV3_OK;
}

void dsv3_ckpt_close(dsv3_checkpoint *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nfiles; i++) dsv3_st_close(c->files[i]);
    free(c->files);
    free(c->t);
    dsv3_hashmap_free(c->index);
    free(c);
}

size_t dsv3_ckpt_count(const dsv3_checkpoint *c) { return c ? c->n : 0; }

const dsv3_tensor_view *dsv3_ckpt_tensor(const dsv3_checkpoint *c, size_t i) {
    return c && i < c->n ? c->t[i] : NULL;
}

const dsv3_tensor_view *dsv3_ckpt_find(const dsv3_checkpoint *c, const char *name) {
    return c && name ? dsv3_hashmap_get(c->index, name) : NULL;
}
