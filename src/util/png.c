/* PNG writer (stored deflate blocks, CRC-32, Adler-32) and a tiny line plotter. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv3/png.h"

static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}
static uint32_t crc_update(uint32_t c, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static int chunk(FILE *f, const char *type, const uint8_t *data, uint32_t len) {
    uint8_t hdr[8], crc[4];
    put32(hdr, len);
    memcpy(hdr + 4, type, 4);
    uint32_t c = crc_update(0xffffffffu, hdr + 4, 4);
    c = crc_update(c, data, len) ^ 0xffffffffu;
    put32(crc, c);
    return fwrite(hdr, 1, 8, f) == 8 && (len == 0 || fwrite(data, 1, len, f) == len) && fwrite(crc, 1, 4, f) == 4;
}

dsv3_status dsv3_png_write(const char *path, const uint8_t *rgb, int width, int height, dsv3_error *err) {
    if (width <= 0 || height <= 0 || width > 16384 || height > 16384)
        return dsv3_fail(err, DSV3_ERR_INVALID, "bad image size %dx%d", width, height);
    crc_init();
    size_t row = (size_t)width * 3 + 1, raw_len = row * (size_t)height;
    size_t nblocks = (raw_len + 65534) / 65535;
    size_t z_len = 2 + raw_len + nblocks * 5 + 4;
    uint8_t *raw = malloc(raw_len), *z = malloc(z_len);
    if (!raw || !z) {
        free(raw); free(z);
        return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory for the PNG");
    }
    for (int y = 0; y < height; y++) {
        raw[y * row] = 0; /* filter: none */
        memcpy(raw + y * row + 1, rgb + (size_t)y * width * 3, (size_t)width * 3);
    }
    /* zlib stream: header, stored blocks, Adler-32 */
    size_t o = 0;
    z[o++] = 0x78;
    z[o++] = 0x01;
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < raw_len; i++) {
        a = (a + raw[i]) % 65521;
        b = (b + a) % 65521;
    }
    for (size_t off = 0; off < raw_len; off += 65535) {
        size_t n = raw_len - off < 65535 ? raw_len - off : 65535;
        z[o++] = off + n == raw_len ? 1 : 0;
        z[o++] = (uint8_t)n;
        z[o++] = (uint8_t)(n >> 8);
        z[o++] = (uint8_t)~n;
        z[o++] = (uint8_t)(~n >> 8);
        memcpy(z + o, raw + off, n);
        o += n;
    }
    put32(z + o, (b << 16) | a);
    o += 4;
    FILE *f = fopen(path, "wb");
    int ok = f != NULL;
    if (ok) {
        static const uint8_t sig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
        uint8_t ihdr[13];
        put32(ihdr, (uint32_t)width);
        put32(ihdr + 4, (uint32_t)height);
        ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
        ok = fwrite(sig, 1, 8, f) == 8 && chunk(f, "IHDR", ihdr, 13) && chunk(f, "IDAT", z, (uint32_t)o) &&
             chunk(f, "IEND", NULL, 0);
        ok = fclose(f) == 0 && ok;
    }
    free(raw);
    free(z);
    return ok ? DSV3_OK : dsv3_fail(err, DSV3_ERR_IO, "%s: cannot write PNG: %s", path, strerror(errno));
}

static void pixel(uint8_t *img, int w, int h, int x, int y, uint8_t r, uint8_t g, uint8_t b) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    uint8_t *p = img + ((size_t)y * w + x) * 3;
    p[0] = r; p[1] = g; p[2] = b;
}

static void line(uint8_t *img, int w, int h, int x0, int y0, int x1, int y1, uint8_t r, uint8_t g, uint8_t b) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        pixel(img, w, h, x0, y0, r, g, b);
        pixel(img, w, h, x0, y0 + 1, r, g, b);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) { e += dy; x0 += sx; }
        if (e2 <= dx) { e += dx; y0 += sy; }
    }
}

dsv3_status dsv3_plot_png(const char *path, const dsv3_plot_series *s, int n_series, int width, int height,
                          dsv3_error *err) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int k = 0; k < n_series; k++)
        for (int64_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            xmin = fmin(xmin, s[k].x[i]); xmax = fmax(xmax, s[k].x[i]);
            ymin = fmin(ymin, s[k].y[i]); ymax = fmax(ymax, s[k].y[i]);
        }
    if (!(xmax >= xmin)) return dsv3_fail(err, DSV3_ERR_INVALID, "nothing to plot");
    if (xmax == xmin) xmax = xmin + 1;
    if (ymax == ymin) ymax = ymin + 1;
    uint8_t *img = malloc((size_t)width * height * 3);
    if (!img) return dsv3_fail(err, DSV3_ERR_NOMEM, "out of memory");
    memset(img, 255, (size_t)width * height * 3);
    const int m = 40; /* margin */
    for (int g = 0; g <= 10; g++) { /* grid */
        int y = m + (height - 2 * m) * g / 10, x = m + (width - 2 * m) * g / 10;
        for (int i = m; i <= width - m; i++) pixel(img, width, height, i, y, 225, 225, 225);
        for (int j = m; j <= height - m; j++) pixel(img, width, height, x, j, 225, 225, 225);
    }
    line(img, width, height, m, height - m, width - m, height - m, 0, 0, 0);
    line(img, width, height, m, m, m, height - m, 0, 0, 0);
    for (int k = 0; k < n_series; k++) {
        int px = -1, py = -1;
        for (int64_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            int x = m + (int)((s[k].x[i] - xmin) / (xmax - xmin) * (width - 2 * m));
            int y = height - m - (int)((s[k].y[i] - ymin) / (ymax - ymin) * (height - 2 * m));
            if (px >= 0) line(img, width, height, px, py, x, y, s[k].r, s[k].g, s[k].b);
            else pixel(img, width, height, x, y, s[k].r, s[k].g, s[k].b);
            px = x;
            py = y;
        }
    }
    dsv3_status st = dsv3_png_write(path, img, width, height, err);
    free(img);
    return st;
}
