/* dsv3 plot-loss --log train_log.jsonl --out loss.png: training (blue) and
 * validation (red) loss against the step, as a PNG. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "dsv3/png.h"

int cmd_plot_loss(int argc, char **argv) {
    const char *log = NULL, *out = NULL, *key = "loss_main";
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: dsv3 plot-loss --log train_log.jsonl --out loss.png [--key loss_main]\n"
                   "Plots the per-step training loss (blue, key --key) and validation loss (red).\n");
            return 0;
        }
        if (cli_opt(argc, argv, &i, "--log", &log, &bad) || cli_opt(argc, argv, &i, "--out", &out, &bad) ||
            cli_opt(argc, argv, &i, "--key", &key, &bad))
            continue;
        fprintf(stderr, "dsv3 plot-loss: unknown argument '%s'\n", argv[i]);
        bad = 1;
    }
    if (bad || !log || !out) {
        if (!bad) fprintf(stderr, "dsv3 plot-loss: --log and --out are required\n");
        return 2;
    }
    FILE *f = fopen(log, "r");
    if (!f) { fprintf(stderr, "dsv3 plot-loss: %s: cannot open\n", log); return 1; }
    int64_t cap = 1024, nt = 0, nv = 0;
    double *tx = malloc(sizeof(double) * cap), *ty = malloc(sizeof(double) * cap), *vx = malloc(sizeof(double) * cap),
           *vy = malloc(sizeof(double) * cap);
    char line[4096];
    int64_t lineno = 0;
    while (tx && ty && vx && vy && fgets(line, sizeof line, f)) {
        lineno++;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) { fprintf(stderr, "dsv3 plot-loss: %s:%lld: bad JSON (%s), skipped\n", log, (long long)lineno, je.text); continue; }
        json_t *st = json_object_get(o, "step"), *tl = json_object_get(o, key), *vl = json_object_get(o, "val_loss");
        if (nt == cap || nv == cap) {
            cap *= 2;
            tx = realloc(tx, sizeof(double) * cap); ty = realloc(ty, sizeof(double) * cap);
            vx = realloc(vx, sizeof(double) * cap); vy = realloc(vy, sizeof(double) * cap);
            if (!tx || !ty || !vx || !vy) { json_decref(o); break; }
        }
        if (json_is_number(st) && json_is_number(tl)) { tx[nt] = json_number_value(st); ty[nt++] = json_number_value(tl); }
        if (json_is_number(st) && json_is_number(vl)) { vx[nv] = json_number_value(st); vy[nv++] = json_number_value(vl); }
        json_decref(o);
    }
    fclose(f);
    int rc = 1;
    if (tx && ty && vx && vy) {
        dsv3_plot_series s[2] = {{tx, ty, nt, 30, 90, 200}, {vx, vy, nv, 210, 40, 40}};
        dsv3_error err = {0};
        if (dsv3_plot_png(out, s, 2, 900, 500, &err)) cli_error("plot-loss", &err);
        else { printf("%s: %lld training and %lld validation points\n", out, (long long)nt, (long long)nv); rc = 0; }
    }
    free(tx); free(ty); free(vx); free(vy);
    return rc;
}
