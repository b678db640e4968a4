/* dsv3 export --checkpoint DIR --out DIR [--dtype bf16|f32]: training
 * checkpoint (or a training output directory, via its 'latest') -> inference
 * checkpoint with tokenizer files. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/train.h"

int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *dtype = "bf16";
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: dsv3 export --checkpoint DIR --out DIR [--dtype bf16|f32]\n"
                   "DIR is a checkpoint directory or a 'dsv3 train --out' directory (its latest checkpoint).\n");
            return 0;
        }
        if (cli_opt(argc, argv, &i, "--checkpoint", &ckpt, &bad) || cli_opt(argc, argv, &i, "--out", &out, &bad) ||
            cli_opt(argc, argv, &i, "--dtype", &dtype, &bad))
            continue;
        fprintf(stderr, "dsv3 export: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    if (bad || !ckpt || !out || (strcmp(dtype, "bf16") && strcmp(dtype, "f32"))) {
        if (!bad) fprintf(stderr, "dsv3 export: --checkpoint and --out are required; --dtype is bf16 or f32\n");
        return 2;
    }
    dsv3_error err = {0};
    dsv3_train_model *tm = NULL;
    dsv3_train_state ts;
    char latest[4200], dir[4200];
    struct stat sb;
    snprintf(latest, sizeof latest, "%s/latest", ckpt);
    dsv3_status st;
    if (stat(latest, &sb) == 0) {
        st = dsv3_train_resume(ckpt, &tm, &ts, &err);
        snprintf(dir, sizeof dir, "%s/step-%08lld", ckpt, (long long)(st ? 0 : ts.step));
    } else {
        st = dsv3_train_model_load(ckpt, &tm, &err);
        snprintf(dir, sizeof dir, "%s", ckpt);
    }
    if (!st) st = dsv3_train_export(tm, out, !strcmp(dtype, "bf16"), dir, &err);
    dsv3_train_model_free(tm);
    if (st) return cli_error("export", &err);
    printf("%s: exported %s (%s)\n", out, dir, dtype);
    return 0;
}
