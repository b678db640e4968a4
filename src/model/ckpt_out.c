/* Writing checkpoint directories (see ckpt_out.h). */
#include "model/ckpt_out.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* mkdir -p */
static dsv3_status make_dirs(const char *dir, dsv3_error *err) {
    char *p = strdup(dir);
    if (!p) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != 0) continue;
        char save = *s;
        *s = 0;
        struct stat sb;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            dsv3_status st = dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
            free(p);
            return st;
        }
        if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            dsv3_status st = dsv3_fail(err, DSV3_ERR_IO, "%s: exists and is not a directory", p);
            free(p);
            return st;
        }
        *s = save;
        if (!save) break;
    }
    free(p);
    if (access(dir, W_OK | X_OK) != 0)
        return dsv3_fail(err, DSV3_ERR_IO, "%s: directory is not writable: %s", dir, strerror(errno));
    /* root passes access(): also honour a directory marked read-only (no write bits) */
    struct stat sb;
    if (stat(dir, &sb) == 0 && !(sb.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)))
        return dsv3_fail(err, DSV3_ERR_IO, "%s: directory is read-only (mode %03o)", dir, (unsigned)(sb.st_mode & 0777));
    return DSV3_OK;
}

/* Checkpoint files of an earlier run: model.safetensors.index.json,
 * model.safetensors and model-NNNNN-of-NNNNN.safetensors. With remove == 0
 * only adds up their sizes into *bytes and names one of them in found[64]
 * (empty if none); else deletes them, index first, so the directory never
 * points at a mix of old and new shards. */
static int is_old_checkpoint_file(const char *name) {
    int a, b, end = 0;
    if (!strcmp(name, "model.safetensors.index.json") || !strcmp(name, "model.safetensors")) return 1;
    return sscanf(name, "model-%5d-of-%5d.safetensors%n", &a, &b, &end) == 2 && end > 0 && name[end] == 0;
}

static dsv3_status old_checkpoint(const char *dir, int remove, double *bytes, char *found, dsv3_error *err) {
    char path[4200];
    if (found) found[0] = 0;
    if (remove) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (unlink(path) != 0 && errno != ENOENT)
            return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot remove old file: %s", path, strerror(errno));
    }
    DIR *d = opendir(dir);
    if (!d) return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot list directory: %s", dir, strerror(errno));
    struct dirent *de;
    dsv3_status st = DSV3_OK;
    while (!st && (de = readdir(d))) {
        if (!is_old_checkpoint_file(de->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (!remove && bytes && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) *bytes += (double)sb.st_size;
        if (found && !found[0]) snprintf(found, 64, "%.63s", de->d_name);
        if (remove && unlink(path) != 0 && errno != ENOENT)
            st = dsv3_fail(err, DSV3_ERR_IO, "%s: cannot remove old file: %s", path, strerror(errno));
    }
    closedir(d);
    return st;
}

/* Writes text to path via a temporary file + rename. */
dsv3_status dsv3_write_text_file(const char *path, const char *text, dsv3_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n || fputc('\n', f) == EOF;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return dsv3_fail(err, DSV3_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return DSV3_OK;
}


dsv3_status dsv3_out_dir_prepare(const char *out_dir, int overwrite, double needed_bytes, dsv3_error *err) {
    if (strlen(out_dir) > 3000) return dsv3_fail(err, DSV3_ERR_INVALID, "%.200s...: output path too long", out_dir);
    dsv3_status st = make_dirs(out_dir, err);
    char path[4200];
    /* free space (counting the old checkpoint files that get replaced) before deleting anything */
    double old_bytes = 0;
    char found[64] = "";
    if (!st) st = old_checkpoint(out_dir, 0, &old_bytes, found, err);
    if (!st && !found[0]) {
        snprintf(path, sizeof path, "%s/config.json", out_dir);
        if (access(path, F_OK) == 0) snprintf(found, sizeof found, "config.json");
    }
    if (!st && found[0] && !overwrite) /* never clobber a checkpoint by accident */
        st = dsv3_fail(err, DSV3_ERR_INVALID, "%s already holds a checkpoint (%s); choose another directory or allow "
                       "overwriting it (--force)", out_dir, found);
    struct statvfs vfs;
    if (!st && statvfs(out_dir, &vfs) == 0 && (double)vfs.f_bavail * vfs.f_frsize + old_bytes < needed_bytes)
        st = dsv3_fail(err, DSV3_ERR_IO, "%s: not enough free space (%.2f GB needed, %.2f GB available)", out_dir,
                       needed_bytes / 1e9, ((double)vfs.f_bavail * vfs.f_frsize + old_bytes) / 1e9);
    if (!st) st = old_checkpoint(out_dir, 1, NULL, NULL, err);
    return st;
}

dsv3_status dsv3_copy_file(const char *src, const char *dst, dsv3_error *err) {
    char tmp[4200];
    if (strlen(dst) > 4000) return dsv3_fail(err, DSV3_ERR_INVALID, "%.200s...: path too long", dst);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    FILE *a = fopen(src, "rb");
    if (!a) return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    FILE *b = fopen(tmp, "wb");
    if (!b) {
        int e = errno;
        fclose(a);
        return dsv3_fail(err, DSV3_ERR_IO, "%s: cannot create: %s", tmp, strerror(e));
    }
    char buf[1 << 16];
    size_t n;
    int ok = 1;
    while (ok && (n = fread(buf, 1, sizeof buf, a)) > 0) ok = fwrite(buf, 1, n, b) == n;
    ok = ok && !ferror(a) && fflush(b) == 0 && fsync(fileno(b)) == 0; /* durable before it replaces dst */
    fclose(a);
    ok = fclose(b) == 0 && ok;
    if (!ok || rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        return dsv3_fail(err, DSV3_ERR_IO, "copying %s to %s failed: %s", src, dst, strerror(e));
    }
    return DSV3_OK;
}

int dsv3_json_set_fp8_quant_config(json_t *root, int block, int ue8m0) {
    json_t *q = json_pack("{s:s, s:s, s:s, s:[i,i]}", "activation_scheme", "dynamic", "fmt", "e4m3", "quant_method",
                          "fp8", "weight_block_size", block, block);
    if (q && ue8m0 && json_object_set_new(q, "scale_fmt", json_string("ue8m0")) != 0) {
        json_decref(q);
        return -1;
    }
    return q && json_object_set_new(root, "quantization_config", q) == 0 ? 0 : -1;
}
