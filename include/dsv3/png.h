/* Minimal PNG writer (8-bit RGB, uncompressed deflate blocks) and a line-plot
 * renderer for loss curves. No dependencies. */
#ifndef DSV3_PNG_H
#define DSV3_PNG_H

#include <stdint.h>

#include "dsv3/status.h"

/* rgb: width*height*3 bytes, row-major. */
dsv3_status dsv3_png_write(const char *path, const uint8_t *rgb, int width, int height, dsv3_error *err);

typedef struct {
    const double *x, *y;
    int64_t n;
    uint8_t r, g, b;
} dsv3_plot_series;

/* Renders series on shared axes (linear x, linear y) with a light grid and
 * writes a PNG. */
dsv3_status dsv3_plot_png(const char *path, const dsv3_plot_series *s, int n_series, int width, int height,
                          dsv3_error *err);

#endif
