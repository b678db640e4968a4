/* safetensors writer (spec §2.1).
 *
 * Tensors are written in insertion order, both in the header and in the data
 * buffer, with contiguous data_offsets starting at 0 (no alignment padding:
 * readers must not assume alignment, spec §2.1). "__metadata__", when any key
 * was set, comes first in the header. The header is padded with spaces to a
 * multiple of 8 bytes. The file is written to "PATH.tmp.<pid>", fsynced and
 * renamed over PATH; on failure the temporary file is removed. */
#include "dsv3/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsv3/hashmap.h"

typedef struct {
    char *name;
    dsv3_dtype dt;
    int ndim;
    int64_t shape[DSV3_MAX_DIMS];
    void *data;
    size_t nbytes;
} wentry;

struct dsv3_st_writer {
    wentry *e;
    size_t n, cap;
    uint64_t total;      /* sum of nbytes so far */
    dsv3_hashmap *names; /* name -> entry index + 1 (keys borrowed from e[i].name) */
    char **meta;         /* key, value pairs */
    size_t nmeta, metacap;
};

dsv3_st_writer *dsv3_st_writer_new(void) {
    dsv3_st_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    if (!(w->names = dsv3_hashmap_new(0))) {
        free(w);
        return NULL;
    }
    return w;
}

void dsv3_st_writer_free(dsv3_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].data);
    }
    free(w->e);
    for (size_t i = 0; i < 2 * w->nmeta; i++) free(w->meta[i]);
    free(w->meta);
    dsv3_hashmap_free(w->names);
    free(w);
}

/* jansson's json_string() rejects invalid UTF-8, which the reader would reject too. */
static int valid_utf8(const char *s) {
    json_t *j = json_string(s);
    if (!j) return 0;
    json_decref(j);
    return 1;
}

dsv3_status dsv3_st_writer_add(dsv3_st_writer *w, const char *name, dsv3_dtype dt, int ndim,
                               const int64_t *shape, const void *data, dsv3_error *err) {
    if (!w || !name) return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: NULL writer or tensor name");
    if (strcmp(name, "__metadata__") == 0)
        return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: '__metadata__' is reserved, not a tensor name");
    if (!valid_utf8(name))
        return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: tensor name is not valid UTF-8");
    if ((unsigned)dt >= DSV3_DTYPE_COUNT)
        return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: tensor '%.200s': invalid dtype %d", name,
                         (int)dt);
    if (ndim < 0 || ndim > DSV3_MAX_DIMS || (ndim > 0 && !shape))
        return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: tensor '%.200s': invalid rank %d", name, ndim);
    unsigned long long numel = 1, nbytes, total;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: tensor '%.200s': negative dimension %lld",
                             name, (long long)shape[d]);
    }
    for (int d = 0; d < ndim; d++) if (shape[d] == 0) numel = 0;
    for (int d = 0; d < ndim && numel; d++)
        if (dsv3_mul_u64(numel, (unsigned long long)shape[d], &numel) != 0)
            return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: tensor '%.200s': element count overflows",
                             name);
    /* Total stays below 2^63 so every offset fits a JSON (signed 64-bit) integer. */
    if (dsv3_mul_u64(numel, dsv3_dtype_size(dt), &nbytes) != 0 || nbytes > SIZE_MAX ||
        dsv3_add_u64(w->total, nbytes, &total) != 0 || total > (unsigned long long)INT64_MAX)
        return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: tensor '%.200s': byte size overflows", name);
    if (nbytes > 0 && !data)
        return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: tensor '%.200s': NULL data", name);
    if (dsv3_hashmap_get(w->names, name))
        return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: tensor '%.200s' added twice", name);

    if (w->n == w->cap) {
        size_t ncap = w->cap ? 2 * w->cap : 16;
        wentry *ne = realloc(w->e, ncap * sizeof *ne);
        if (!ne) return dsv3_fail(err, DSV3_ERR_NOMEM, "safetensors writer: out of memory");
        w->e = ne;
        w->cap = ncap;
    }
    wentry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->data = malloc(nbytes ? nbytes : 1);
    if (!e->name || !e->data || dsv3_hashmap_put(w->names, e->name, (void *)(uintptr_t)(w->n + 1), NULL) != 0) {
        free(e->name);
        free(e->data);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "safetensors writer: out of memory for tensor '%.200s'", name);
    }
    if (nbytes) memcpy(e->data, data, nbytes);
    e->dt = dt;
    e->ndim = ndim;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d];
    e->nbytes = (size_t)nbytes;
    w->total = total;
    w->n++;
    return DSV3_OK;
}

dsv3_status dsv3_st_writer_metadata(dsv3_st_writer *w, const char *key, const char *value, dsv3_error *err) {
    if (!w || !key || !value) return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: NULL metadata argument");
    if (!valid_utf8(key) || !valid_utf8(value))
        return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: metadata key/value is not valid UTF-8");
    char *v = strdup(value);
    if (!v) return dsv3_fail(err, DSV3_ERR_NOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) { /* setting a key again replaces its value */
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return DSV3_OK;
        }
    if (w->nmeta == w->metacap) {
        size_t ncap = w->metacap ? 2 * w->metacap : 8;
        char **nm = realloc(w->meta, 2 * ncap * sizeof *nm);
        if (!nm) {
            free(v);
            return dsv3_fail(err, DSV3_ERR_NOMEM, "safetensors writer: out of memory");
        }
        w->meta = nm;
        w->metacap = ncap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->meta[2 * w->nmeta] = k;
    w->meta[2 * w->nmeta + 1] = v;
    w->nmeta++;
    return DSV3_OK;
}

/* Builds the compact JSON header; NULL on out of memory. */
static char *build_header(const dsv3_st_writer *w) {
    json_t *root = json_object();
    int bad = !root;
    if (!bad && w->nmeta) {
        json_t *m = json_object();
        bad = json_object_set_new(root, "__metadata__", m) != 0;
        for (size_t i = 0; i < w->nmeta && !bad; i++)
            bad = json_object_set_new(m, w->meta[2 * i], json_string(w->meta[2 * i + 1])) != 0;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n && !bad; i++) {
        const wentry *e = &w->e[i];
        json_t *t = json_object(), *shape = json_array(), *offs = json_array();
        bad = !t || !shape || !offs;
        for (int d = 0; d < e->ndim && !bad; d++) bad = json_array_append_new(shape, json_integer(e->shape[d])) != 0;
        if (!bad) bad = json_array_append_new(offs, json_integer((json_int_t)off)) != 0;
        off += e->nbytes;
        if (!bad) bad = json_array_append_new(offs, json_integer((json_int_t)off)) != 0;
        if (!bad) bad = json_object_set_new(t, "dtype", json_string(dsv3_dtype_name(e->dt))) != 0;
        if (!bad) {
            bad = json_object_set_new(t, "shape", shape) != 0;
            shape = NULL;
        }
        if (!bad) {
            bad = json_object_set_new(t, "data_offsets", offs) != 0;
            offs = NULL;
        }
        json_decref(shape);
        json_decref(offs);
        if (!bad) bad = json_object_set_new(root, e->name, t) != 0;
        else json_decref(t);
    }
    char *s = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

dsv3_status dsv3_st_writer_save(dsv3_st_writer *w, const char *path, dsv3_error *err) {
    if (!w || !path) return dsv3_fail(err, DSV3_ERR_INVALID, "safetensors writer: NULL writer or path");
    char *hdr = build_header(w);
    if (!hdr) return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory building the header", path);
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    if (padded > DSV3_ST_MAX_HEADER) {
        free(hdr);
        return dsv3_fail(err, DSV3_ERR_INVALID, "%s: header of %zu bytes exceeds the %llu-byte limit", path, padded,
                         DSV3_ST_MAX_HEADER);
    }
    unsigned char *buf = malloc(8 + padded);
    size_t tl = strlen(path) + 32;
    char *tmp = malloc(tl);
    if (!buf || !tmp) {
        free(hdr);
        free(buf);
        free(tmp);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i)); /* little-endian */
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    free(hdr);
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());

    dsv3_status st = DSV3_OK;
    const char *what = NULL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    int saved = 0; /* errno of the first failure (close/unlink may change errno) */
    if (write_all(fd, buf, 8 + padded) != 0) what = "write", saved = errno;
    for (size_t i = 0; i < w->n && !what; i++)
        if (write_all(fd, w->e[i].data, w->e[i].nbytes) != 0) what = "write", saved = errno;
    if (!what && fsync(fd) != 0) what = "fsync", saved = errno;
    if (close(fd) != 0 && !what) what = "close", saved = errno;
    if (!what && rename(tmp, path) != 0) what = "rename", saved = errno;
    if (what) {
        st = dsv3_fail(err, DSV3_ERR_IO, "%s: %s failed: %s", path, what, strerror(saved));
        unlink(tmp);
        goto out;
    }
    /* Make the rename durable (best effort: some filesystems refuse fsync on directories). */
    {
        char *dir = strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            const char *d = ".";
            if (slash) {
                if (slash == dir) slash[1] = 0;
                else *slash = 0;
                d = dir;
            }
            int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
out:
    free(buf);
    free(tmp);
    return st;
}
