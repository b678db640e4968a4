/* NFC normalization (UAX #15): canonical decomposition (recursive, Hangul
 * algorithmic), canonical ordering of combining marks, canonical
 * composition. Tables in nfc_data.c. Bytes that are not valid UTF-8 are
 * copied through unchanged and act as boundaries. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

extern const uint32_t tok_nfc_decomp[][3], tok_nfc_comp[][3], tok_nfc_ccc[][3];
extern const size_t tok_nfc_decomp_n, tok_nfc_comp_n, tok_nfc_ccc_n;

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21, TCOUNT = 28 };
#define NCOUNT (VCOUNT * TCOUNT)
#define SCOUNT (LCOUNT * NCOUNT)

static int ccc_of(int32_t cp) {
    if (cp < 0x300) return 0;
    size_t lo = 0, hi = tok_nfc_ccc_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)cp < tok_nfc_ccc[mid][0]) hi = mid;
        else if ((uint32_t)cp > tok_nfc_ccc[mid][1]) lo = mid + 1;
        else return (int)tok_nfc_ccc[mid][2];
    }
    return 0;
}

static const uint32_t *decomp_of(int32_t cp) {
    if (cp < 0xC0) return NULL;
    size_t lo = 0, hi = tok_nfc_decomp_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)cp < tok_nfc_decomp[mid][0]) hi = mid;
        else if ((uint32_t)cp > tok_nfc_decomp[mid][0]) lo = mid + 1;
        else return tok_nfc_decomp[mid];
    }
    return NULL;
}

/* Primary composite of (a, b), or -1. */
static int32_t compose(int32_t a, int32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    size_t lo = 0, hi = tok_nfc_comp_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t x = tok_nfc_comp[mid][0], y = tok_nfc_comp[mid][1];
        if ((uint32_t)a < x || ((uint32_t)a == x && (uint32_t)b < y)) hi = mid;
        else if ((uint32_t)a > x || (uint32_t)b > y) lo = mid + 1;
        else return (int32_t)tok_nfc_comp[mid][2];
    }
    return -1;
}

typedef struct {
    int32_t *cp;
    size_t n, cap;
} cpbuf;

static int cp_push(cpbuf *b, int32_t cp) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        int32_t *p = realloc(b->cp, nc * sizeof *p);
        if (!p) return -1;
        b->cp = p;
        b->cap = nc;
    }
    b->cp[b->n++] = cp;
    return 0;
}

static int decompose(cpbuf *b, int32_t cp, int depth) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        int32_t si = cp - SBASE, t = si % TCOUNT;
        if (cp_push(b, LBASE + si / NCOUNT) || cp_push(b, VBASE + (si % NCOUNT) / TCOUNT)) return -1;
        return t ? cp_push(b, TBASE + t) : 0;
    }
    const uint32_t *d = depth < 8 ? decomp_of(cp) : NULL;
    if (!d) return cp_push(b, cp);
    if (decompose(b, (int32_t)d[1], depth + 1)) return -1;
    return d[2] ? decompose(b, (int32_t)d[2], depth + 1) : 0;
}

/* Orders, composes and UTF-8-encodes b->cp[0..n) onto out; empties b. */
static int flush(cpbuf *b, char **out, size_t *cap, size_t *len) {
    int32_t *c = b->cp;
    size_t n = b->n;
    /* canonical ordering: stable insertion sort of each run of non-starters */
    for (size_t i = 1; i < n; i++) {
        int ci = ccc_of(c[i]);
        if (!ci) continue;
        size_t j = i;
        while (j > 0) {
            int cj = ccc_of(c[j - 1]);
            if (cj <= ci) break;
            int32_t t = c[j];
            c[j] = c[j - 1];
            c[j - 1] = t;
            j--;
        }
    }
    /* composition (the UAX #15 reference algorithm) */
    size_t comp_n = 0;
    if (n) {
        size_t starter = 0;
        int last = ccc_of(c[0]);
        if (last) last = 256; /* a leading non-starter blocks everything */
        comp_n = 1;
        for (size_t i = 1; i < n; i++) {
            int32_t ch = c[i];
            int cc = ccc_of(ch);
            int32_t k = compose(c[starter], ch);
            if (k >= 0 && (last < cc || last == 0)) {
                c[starter] = k;
            } else {
                if (!cc) starter = comp_n;
                last = cc;
                c[comp_n++] = ch;
            }
        }
    }
    if (*len + comp_n * 4 + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + comp_n * 4 + 1) nc *= 2;
        char *p = realloc(*out, nc);
        if (!p) return -1;
        *out = p;
        *cap = nc;
    }
    for (size_t i = 0; i < comp_n; i++) *len += (size_t)tok_utf8_encode(c[i], *out + *len);
    b->n = 0;
    return 0;
}

static int put_byte(char **out, size_t *cap, size_t *len, char byte) {
    if (*len + 2 > *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        char *p = realloc(*out, nc);
        if (!p) return -1;
        *out = p;
        *cap = nc;
    }
    (*out)[(*len)++] = byte;
    return 0;
}

int tok_nfc_quick_yes(const unsigned char *s, size_t n) {
    /* every code point below U+0300 is NFC-stable with combining class 0;
     * they are exactly the UTF-8 sequences whose lead byte is below 0xCC */
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0xCC) return 0;
    return 1;
}

long tok_nfc(const char *s, size_t n, char **out, size_t *cap) {
    cpbuf b = {0};
    size_t len = 0;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    int fail = 0;
    while (i < n && !fail) {
        int32_t cp;
        int l = tok_utf8_decode(u + i, n - i, &cp);
        if (cp < 0) {
            fail |= flush(&b, out, cap, &len) || put_byte(out, cap, &len, s[i]);
        } else {
            fail |= decompose(&b, cp, 0);
        }
        i += (size_t)l;
    }
    if (!fail) fail |= flush(&b, out, cap, &len);
    free(b.cp);
    if (fail) return -1;
    if (*out) (*out)[len] = 0;
    return (long)len;
}
