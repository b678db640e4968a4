/* Helpers for golden tests against ../shared/fixtures. */
#ifndef DSV3_TEST_FIXTURE_UTIL_H
#define DSV3_TEST_FIXTURE_UTIL_H

#include <stdint.h>

#include "dsv3/model.h"
#include "dsv3/safetensors.h"

/* Opens <fixtures>/<set>/reference.safetensors and loads the model; returns 0
 * on success, 1 if fixtures are absent (caller SKIPs), -1 on error (reported). */
int fixture_open(const char *set, const char *file, dsv3_model **m, dsv3_st_file **ref);
/* Copies a float tensor (F32) into a malloc'd array; NULL if missing/wrong. */
float *fixture_f32(dsv3_st_file *ref, const char *name, int64_t expect_numel);
/* Copies an integer tensor (I64/I32) into a malloc'd int32 array. */
int32_t *fixture_i32(dsv3_st_file *ref, const char *name, int64_t expect_numel);
/* max|a-b| / max|ref| */
double rel_max_err(const float *a, const float *ref, int64_t n);

#endif
