/* Training loop: loss goes down, same seed -> identical run, resume -> bitwise
 * identical continuation, SIGKILL while checkpointing leaves 'latest' loadable. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../test.h"
#include "dsv3/data.h"
#include "dsv3/safetensors.h"
#include "dsv3/train.h"

/* A shard of a repeating pattern with some noise: learnable quickly. */
static int make_shard(const char *path, int64_t n, int vocab) {
    int32_t *t = malloc(sizeof(int32_t) * n);
    uint64_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (s >> 60) == 0 ? (int32_t)((s >> 33) % (uint64_t)vocab) : (int32_t)((i * 7) % 50 + 2);
    }
    dsv3_error err = {0};
    int rc = dsv3_shard_write(path, t, (uint64_t)n, (uint64_t)vocab, &err) == DSV3_OK ? 0 : -1;
    free(t);
    return rc;
}

static void options(dsv3_train_options *o, const char *model, const char *data, const char *out, int64_t steps) {
    dsv3_train_options_default(o);
    o->model_dir = model;
    o->data_path = data;
    o->out_dir = out;
    o->steps = steps;
    o->batch = 2;
    o->seq_len = 16;
    o->lr.peak_lr = 1e-2f;
    o->lr.warmup_steps = 2;
    o->lr.decay_start = 3; /* explicit: the default depends on --steps */
    o->lr.decay_steps = 3;
    o->loss.bal_alpha = 1e-3f;
    o->eval_every = 3;
    o->eval_windows = 2;
    o->save_every = 3;
    o->keep = 0;
    o->quiet = 1;
    o->val_frac = 0.05;
}

static int files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int eq = fa && fb;
    while (eq) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) eq = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return eq;
}

TEST(train_loop_resume_bitwise) {
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    char model[4096], data[4200], a[4200], b[4200], pa[4300], pb[4300];
    snprintf(model, sizeof model, "%s/tiny", test_fixtures_dir());
    snprintf(data, sizeof data, "%s/train.tokens", test_tmp_dir());
    snprintf(a, sizeof a, "%s/run_a", test_tmp_dir());
    snprintf(b, sizeof b, "%s/run_b", test_tmp_dir());
    CHECK(make_shard(data, 4000, 512) == 0);
    dsv3_error err = {0};
    dsv3_train_options o;
    options(&o, model, data, a, 6);
    CHECK_MSG(dsv3_train_run(&o, &err) == DSV3_OK, "%s", err.msg);
    /* run B: 3 steps, then resume to 6 */
    options(&o, model, data, b, 3);
    CHECK_MSG(dsv3_train_run(&o, &err) == DSV3_OK, "%s", err.msg);
    options(&o, NULL, data, b, 6);
    o.resume = 1;
    CHECK_MSG(dsv3_train_run(&o, &err) == DSV3_OK, "%s", err.msg);
    const char *files[] = {"model.safetensors", "trainer_state.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(pa, sizeof pa, "%s/step-00000006/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/step-00000006/%s", b, files[i]);
        CHECK_MSG(files_equal(pa, pb), "%s differs between the uninterrupted and the resumed run", files[i]);
    }
    /* loss went down (log lines of run A) */
    snprintf(pa, sizeof pa, "%s/train_log.jsonl", a);
    FILE *f = fopen(pa, "r");
    CHECK(f != NULL);
    char line[1024];
    double first = -1, last = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"loss_main\":");
        if (!p) continue;
        double v = atof(p + 12);
        if (first < 0) first = v;
        last = v;
    }
    fclose(f);
    CHECK_MSG(last < first, "loss did not decrease: %.4f -> %.4f", first, last);
    /* a checkpoint loads as a normal model */
    dsv3_train_model *tm = NULL;
    dsv3_train_state ts;
    CHECK_MSG(dsv3_train_resume(a, &tm, &ts, &err) == DSV3_OK, "%s", err.msg);
    CHECK(ts.step == 6 && ts.data_cursor == 12);
    dsv3_train_model_free(tm);
}

TEST(train_checkpoint_survives_sigkill) {
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    char model[4096], out[4200];
    snprintf(model, sizeof model, "%s/tiny", test_fixtures_dir());
    snprintf(out, sizeof out, "%s/killed", test_tmp_dir());
    dsv3_error err = {0};
    dsv3_train_model *tm = NULL;
    CHECK(dsv3_train_model_load(model, &tm, &err) == DSV3_OK);
    dsv3_train_state ts = {.step = 1};
    CHECK(dsv3_train_save(tm, &ts, out, NULL, 2, &err) == DSV3_OK);
    for (int round = 0; round < 6; round++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            for (int64_t s = 2 + round * 100;; s++) {
                dsv3_train_state t2 = {.step = s};
                dsv3_train_save(tm, &t2, out, NULL, 2, NULL);
            }
        }
        struct timespec d = {0, 3000000L + round * 1700000L};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        dsv3_train_model *back = NULL;
        CHECK_MSG(dsv3_train_resume(out, &back, &ts, &err) == DSV3_OK, "after SIGKILL: %s", err.msg);
        dsv3_train_model_free(back);
    }
    dsv3_train_model_free(tm);
}

TEST(train_shard_errors) {
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.tokens", test_tmp_dir());
    FILE *f = fopen(path, "wb");
    fwrite("DSV3TOKS\1\0\0\0\2\0\0\0\x10\0\0\0\0\0\0\0\0\2\0\0\0\0\0\0", 1, 32, f);
    fclose(f);
    dsv3_token_shard *s = NULL;
    dsv3_error err = {0};
    CHECK(dsv3_shard_open(path, &s, &err) == DSV3_ERR_FORMAT && strstr(err.msg, "token count"));
    f = fopen(path, "wb");
    fwrite("NOTASHARD", 1, 9, f);
    fclose(f);
    CHECK(dsv3_shard_open(path, &s, &err) == DSV3_ERR_FORMAT);
    CHECK(dsv3_shard_open("tests/data/none.tokens", &s, &err) == DSV3_ERR_NOT_FOUND);
    int32_t toks[3] = {1, 2, 600};
    CHECK(dsv3_shard_write(path, toks, 3, 512, &err) == DSV3_ERR_INVALID);
}

TEST(train_lr_schedule) {
    dsv3_lr_schedule s = {.peak_lr = 1.0f, .final_lr = 0.1f, .tail_lr = 0.01f, .warmup_steps = 10, .decay_start = 20,
                          .decay_steps = 10, .tail_start = 40};
    CHECK_NEAR(dsv3_lr_at(&s, 0), 0.1, 1e-6);
    CHECK_NEAR(dsv3_lr_at(&s, 9), 1.0, 1e-6);
    CHECK_NEAR(dsv3_lr_at(&s, 15), 1.0, 1e-6);
    CHECK_NEAR(dsv3_lr_at(&s, 25), 0.55, 1e-6);
    CHECK_NEAR(dsv3_lr_at(&s, 35), 0.1, 1e-6);
    CHECK_NEAR(dsv3_lr_at(&s, 45), 0.01, 1e-6);
}

TEST(train_resume_corrupt_checkpoint_errors) {
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    char model[4096], out[4200], path[4400];
    snprintf(model, sizeof model, "%s/tiny", test_fixtures_dir());
    snprintf(out, sizeof out, "%s/corrupt", test_tmp_dir());
    dsv3_error err = {0};
    dsv3_train_model *tm = NULL, *back = NULL;
    CHECK(dsv3_train_model_load(model, &tm, &err) == DSV3_OK);
    dsv3_train_state ts = {.step = 4};
    CHECK(dsv3_train_save(tm, &ts, out, NULL, 0, &err) == DSV3_OK);
    dsv3_train_model_free(tm);
    /* truncate the model file: error names it */
    snprintf(path, sizeof path, "%s/step-00000004/model.safetensors", out);
    CHECK(truncate(path, 1000) == 0);
    CHECK(dsv3_train_resume(out, &back, &ts, &err) != DSV3_OK && back == NULL);
    CHECK_MSG(strstr(err.msg, "model.safetensors") != NULL, "%s", err.msg);
    /* 'latest' naming garbage */
    snprintf(path, sizeof path, "%s/latest", out);
    FILE *f = fopen(path, "w");
    fputs("../../etc\n", f);
    fclose(f);
    CHECK(dsv3_train_resume(out, &back, &ts, &err) == DSV3_ERR_FORMAT && strstr(err.msg, "latest"));
    /* no checkpoint at all */
    snprintf(path, sizeof path, "%s/none", test_tmp_dir());
    CHECK(dsv3_train_resume(path, &back, &ts, &err) == DSV3_ERR_NOT_FOUND);
}
