/* Does the AMX tile unit (TDPBF16PS) round like any AVX-512 formula?
 *   build/bench_amx_rounding [-n tiles=2000]
 *
 * Multiplies n random 16x16x32 bf16 tiles (random signs, exponents over 16
 * binades, half of them onto a nonzero C) on the AMX unit and counts the C
 * elements that differ bitwise from: sequential fmaf over k (pairs even-odd
 * and odd-even; bf16 products are exact in f32), exact pair sums rounded once
 * into C, and VDPBF16PS over the same pairs. If one matched, an AVX-512 decode
 * kernel could reproduce the AMX path's bits (AMX prefill + AVX-512 decode
 * without breaking batch invariance). On the issue-#5 machine none does
 * (bench/README.md). Prints "no AMX" and exits 0 where AMX is unavailable. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv3/dtype.h"
#include "ops/cpu/amx.h"

#define TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))

static const struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) g_cfg = {1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

static uint64_t g_s = 88172645463325252ull;
static uint64_t rnd(void) {
    g_s ^= g_s << 13;
    g_s ^= g_s >> 7;
    g_s ^= g_s << 17;
    return g_s;
}
#define bf dsv3_bf16_to_f32
static uint16_t rand_bf16(void) {
    uint64_t r = rnd();
    return (uint16_t)(((r >> 8) & 1) << 15 | (120 + (int)(r % 16)) << 7 | ((r >> 16) & 0x7f));
}
static float ftz(float x) { return fabsf(x) < 0x1p-126f ? copysignf(0.0f, x) : x; }

TARGET static void run(long tiles, long mism[4], long *total) {
    _tile_loadconfig(&g_cfg);
    for (long it = 0; it < tiles; it++) {
        uint16_t A[16][32], B[16][32]; /* B in the VNNI layout: row k holds the pairs of 16 columns */
        float C0[16][16], C[16][16];
        for (int i = 0; i < 16; i++)
            for (int k = 0; k < 32; k++) A[i][k] = rand_bf16(), B[i][k] = rand_bf16();
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 16; j++) C0[i][j] = it % 2 ? bf(rand_bf16()) * 1000.0f : 0.0f;
        memcpy(C, C0, sizeof C);
        _tile_loadd(0, C, 64);
        _tile_loadd(4, A, 64);
        _tile_loadd(6, B, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_stored(0, C, 64);
        for (int m = 0; m < 16; m++) {
            __m512 acc = _mm512_loadu_ps(C0[m]);
            for (int k = 0; k < 16; k++) {
                uint32_t ap;
                memcpy(&ap, &A[m][2 * k], 4);
                acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi32((int)ap), (__m512bh)_mm512_loadu_si512(B[k]));
            }
            float vd[16];
            _mm512_storeu_ps(vd, acc);
            for (int n = 0; n < 16; n++) {
                float c0 = C0[m][n], c1 = c0, c2 = c0;
                for (int k = 0; k < 16; k++) {
                    float a0 = bf(A[m][2 * k]), a1 = bf(A[m][2 * k + 1]), b0 = bf(B[k][2 * n]), b1 = bf(B[k][2 * n + 1]);
                    c0 = ftz(fmaf(a1, b1, ftz(fmaf(a0, b0, c0))));
                    c1 = ftz(fmaf(a0, b0, ftz(fmaf(a1, b1, c1))));
                    c2 = ftz((float)((double)c2 + ((double)a0 * b0 + (double)a1 * b1)));
                }
                const float got = C[m][n], cand[4] = {c0, c1, c2, vd[n]};
                for (int v = 0; v < 4; v++) mism[v] += memcmp(&cand[v], &got, 4) != 0;
                (*total)++;
            }
        }
    }
    _tile_release();
}

int main(int argc, char **argv) {
    long tiles = 2000;
    if (argc == 3 && !strcmp(argv[1], "-n")) tiles = atol(argv[2]);
    else if (argc != 1) {
        fprintf(stderr, "usage: bench_amx_rounding [-n tiles]\n");
        return 2;
    }
    if (tiles < 1) tiles = 1;
    if (!dsv3_amx_available()) {
        printf("no AMX\n");
        return 0;
    }
    long mism[4] = {0}, total = 0;
    run(tiles, mism, &total);
    printf("%ld C elements of %ld random tiles; bitwise different from AMX:\n", total, tiles);
    printf("  sequential fmaf, pairs even-odd   %ld\n  sequential fmaf, pairs odd-even   %ld\n"
           "  exact pair sums, one rounding     %ld\n  VDPBF16PS                         %ld\n",
           mism[0], mism[1], mism[2], mism[3]);
    return 0;
}
