#include "fixture_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../test.h"

int fixture_open(const char *set, const char *file, dsv3_model **m, dsv3_st_file **ref) {
    const char *fx = test_fixtures_dir();
    if (!fx) return 1;
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", fx, set);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    dsv3_error err = {0};
    *m = NULL;
    *ref = NULL;
    if (dsv3_model_load(dir, m, &err) || dsv3_st_open(path, ref, &err)) {
        test_fail_at(__FILE__, __LINE__, "fixture %s: %s", set, err.msg);
        dsv3_model_free(*m);
        *m = NULL;
        return -1;
    }
    return 0;
}

float *fixture_f32(dsv3_st_file *ref, const char *name, int64_t expect_numel) {
    const dsv3_tensor_view *t = dsv3_st_find(ref, name);
    if (!t || t->dtype != DSV3_F32 || (expect_numel >= 0 && (int64_t)t->numel != expect_numel)) {
        test_fail_at(__FILE__, __LINE__, "reference tensor '%s' missing or wrong size", name);
        return NULL;
    }
    float *a = malloc(t->numel * sizeof(float) + 1);
    memcpy(a, t->data, t->numel * sizeof(float));
    return a;
}

int32_t *fixture_i32(dsv3_st_file *ref, const char *name, int64_t expect_numel) {
    const dsv3_tensor_view *t = dsv3_st_find(ref, name);
    if (!t || (t->dtype != DSV3_I64 && t->dtype != DSV3_I32) || (expect_numel >= 0 && (int64_t)t->numel != expect_numel)) {
        test_fail_at(__FILE__, __LINE__, "reference tensor '%s' missing or wrong size", name);
        return NULL;
    }
    int32_t *a = malloc(t->numel * sizeof(int32_t) + 1);
    for (uint64_t i = 0; i < t->numel; i++) {
        if (t->dtype == DSV3_I64) { int64_t v; memcpy(&v, (const char *)t->data + 8 * i, 8); a[i] = (int32_t)v; }
        else memcpy(&a[i], (const char *)t->data + 4 * i, 4);
    }
    return a;
}

double rel_max_err(const float *a, const float *ref, int64_t n) {
    double mx = 0, mref = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= mx)) mx = d; /* NaN propagates as failure */
        if (fabs(ref[i]) > mref) mref = fabs(ref[i]);
    }
    return mref > 0 ? mx / mref : mx;
}
