/* safetensors reader (mmap, fully validated; spec §2.1), sharded checkpoint
 * directories (model.safetensors.index.json; spec §2.2) and a writer. */
#ifndef DSV3_SAFETENSORS_H
#define DSV3_SAFETENSORS_H

#include <stdint.h>

#include "dsv3/dtype.h"
#include "dsv3/status.h"

#define DSV3_MAX_DIMS 8
#define DSV3_ST_MAX_HEADER 100000000ull /* reference reader's bound (spec §2.1) */

typedef struct {
    const char *name;             /* owned by the file/checkpoint */
    dsv3_dtype dtype;
    int ndim;
    int64_t shape[DSV3_MAX_DIMS];
    uint64_t numel;               /* product of shape (1 for rank 0) */
    uint64_t nbytes;              /* numel * dtype size == data_offsets[1]-data_offsets[0] */
    const void *data;             /* points into the mmap; may be unaligned */
    const char *file;             /* path of the file holding it (for messages) */
} dsv3_tensor_view;

/* ---- one .safetensors file ---- */
typedef struct dsv3_st_file dsv3_st_file;

/* Opens and mmaps path, validates the header completely (length bound, UTF-8
 * JSON object, known dtypes, shape*size == byte range, offsets tile the data
 * buffer from 0 with no gap/overlap and cover it exactly, no duplicate names,
 * checked 64-bit arithmetic). Errors name the file and the tensor. */
dsv3_status dsv3_st_open(const char *path, dsv3_st_file **out, dsv3_error *err);
void dsv3_st_close(dsv3_st_file *f);
size_t dsv3_st_count(const dsv3_st_file *f);
const dsv3_tensor_view *dsv3_st_tensor(const dsv3_st_file *f, size_t i);  /* in header order */
const dsv3_tensor_view *dsv3_st_find(const dsv3_st_file *f, const char *name); /* NULL if absent */
/* __metadata__ value for key, or NULL. */
const char *dsv3_st_metadata(const dsv3_st_file *f, const char *key);

/* ---- a checkpoint directory: model.safetensors.index.json (sharded) or
 *      a single model.safetensors ---- */
typedef struct dsv3_checkpoint dsv3_checkpoint;

/* If DIR/model.safetensors.index.json exists, opens every shard its weight_map
 * names (each once) and checks that every mapped tensor is present in its shard;
 * else opens DIR/model.safetensors. */
dsv3_status dsv3_ckpt_open(const char *dir, dsv3_checkpoint **out, dsv3_error *err);
void dsv3_ckpt_close(dsv3_checkpoint *c);
size_t dsv3_ckpt_count(const dsv3_checkpoint *c);
const dsv3_tensor_view *dsv3_ckpt_tensor(const dsv3_checkpoint *c, size_t i);
const dsv3_tensor_view *dsv3_ckpt_find(const dsv3_checkpoint *c, const char *name); /* NULL if absent */

/* ---- writer ---- */
typedef struct dsv3_st_writer dsv3_st_writer;

dsv3_st_writer *dsv3_st_writer_new(void);
/* Adds a tensor; data is copied. nbytes must equal numel*dtype size. */
dsv3_status dsv3_st_writer_add(dsv3_st_writer *w, const char *name, dsv3_dtype dt, int ndim,
                               const int64_t *shape, const void *data, dsv3_error *err);
dsv3_status dsv3_st_writer_metadata(dsv3_st_writer *w, const char *key, const char *value, dsv3_error *err);
/* Writes header (padded with spaces to a multiple of 8) and data to path via a
 * temporary file + rename, so a failed write never destroys an existing file. */
dsv3_status dsv3_st_writer_save(dsv3_st_writer *w, const char *path, dsv3_error *err);
void dsv3_st_writer_free(dsv3_st_writer *w);

#endif
