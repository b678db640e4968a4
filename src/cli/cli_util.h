/* Small helpers shared by the CLI commands. */
#ifndef DSV3_CLI_UTIL_H
#define DSV3_CLI_UTIL_H

#include <stdint.h>

#include "dsv3/dtype.h"
#include "dsv3/status.h"

/* Strict integer/float parsing: the whole string must be consumed. 0 on success. */
int cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
int cli_parse_f32(const char *s, float *out);
/* Parses "1,2,3" into a malloc'd array (caller frees); 0 on success. */
int cli_parse_ids(const char *s, int32_t **ids, int64_t *n, int64_t max_id);
/* --kv-dtype VALUE (NULL: the default, F32) -> *dt; on a bad value prints "dsv3 <cmd>: bad --kv-dtype ..."
 * and returns 2 (the usage-error exit code), else 0. */
int cli_parse_kv_dtype(const char *cmd, const char *s, dsv3_dtype *dt);
/* --scale-fmt VALUE (NULL: the default, float) -> *ue8m0 (1 for ue8m0: power-of-two FP8 block scales); on a
 * bad value prints "dsv3 <cmd>: bad --scale-fmt ..." and returns 2, else 0. */
int cli_parse_scale_fmt(const char *cmd, const char *s, int *ue8m0);
/* Applies -t N (0 = all cores). */
void cli_set_threads(int64_t n);
/* Prints "dsv3 <cmd>: <message>" to stderr and returns 1. */
int cli_error(const char *cmd, const dsv3_error *err);
/* If argv[*i] is opt and a value follows, stores it and advances; returns 1.
 * If opt is the last argument, prints an error and sets *bad. */
int cli_opt(int argc, char **argv, int *i, const char *opt, const char **val, int *bad);

#include <stdio.h>

/* Parses "--model DIR --input IN --output OUT [-t N]" (+ --help) for the
 * forward-style commands and applies -t. Returns -1 to continue, else the exit
 * code to return (0 after --help, 2 on a usage error). */
int cli_parse_model_io(const char *cmd, int argc, char **argv, void (*usage)(FILE *), const char **model,
                       const char **in, const char **out);

struct dsv3_st_file;
/* Reads tensor "input_ids" (I64 or I32, [B,T], T >= min_t) of f into a malloc'd
 * int32 array; fills *B, *T. Errors name path and the tensor. */
dsv3_status cli_read_input_ids(const struct dsv3_st_file *f, const char *path, int64_t min_t, int32_t **ids,
                               int64_t *B, int64_t *T, dsv3_error *err);

#endif
