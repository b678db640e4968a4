/* UTF-8 helpers and the code point -> class table used by the hand-written
 * matchers and the added-token rules. The classes are those HF tokenizers'
 * Oniguruma uses (Unicode 16.0, unicode_data.c); PCRE2 10.42 has Unicode
 * 14.0, so the generic PCRE2 path differs from HF only on the ~10k code
 * points assigned in Unicode 15/16. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

int tok_utf8_encode(int32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int tok_utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* 8 ASCII bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) { i++; continue; }
        int32_t cp;
        int l = tok_utf8_decode(s + i, n - i, &cp);
        if (cp < 0) return 0;
        i += (size_t)l;
    }
    return 1;
}

/* Pages whose 256 code points share one class point at a shared constant
 * page; the others are allocated once (kept for the process lifetime). */
static unsigned char g_uniform[7][256];
const unsigned char *tok_uc_pages[0x1100];
static pthread_once_t g_uc_once = PTHREAD_ONCE_INIT;

static void uc_build(void) {
    for (int k = 0; k < 7; k++) memset(g_uniform[k], k, 256);
    size_t r = 0;
    unsigned char tmp[256];
    for (int32_t page = 0; page < 0x1100; page++) {
        int uniform = 1;
        for (int i = 0; i < 256; i++) {
            uint32_t cp = (uint32_t)page * 256 + (uint32_t)i;
            while (r + 1 < tok_uc_nruns && (tok_uc_runs[r + 1] >> 3) <= cp) r++;
            tmp[i] = (unsigned char)(tok_uc_runs[r] & 7);
            if (tmp[i] != tmp[0]) uniform = 0;
        }
        unsigned char *pg = NULL;
        if (!uniform && (pg = malloc(256))) memcpy(pg, tmp, 256);
        /* (allocation failure degrades to the page's first class: never crashes) */
        tok_uc_pages[page] = pg ? pg : g_uniform[tmp[0] < 7 ? tmp[0] : 0];
    }
}

void tok_uclass_init(void) { pthread_once(&g_uc_once, uc_build); }

/* One alternative per class, in UC_* order; the whitespace class is
 * Oniguruma's \s (White_Space: \t-\r, U+0085 and the Z categories). */
static const char k_classifier[] = "(\\p{L})|(\\p{M})|(\\p{N})|(\\p{P})|(\\p{S})|([\\t-\\r\\x{85}\\p{Z}])";

int tok_uclass_pcre2(int32_t cp) {
    static pcre2_code *re;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return UC_OTHER;
    pthread_mutex_lock(&lock);
    if (!re) {
        int ec;
        PCRE2_SIZE eo;
        re = pcre2_compile((PCRE2_SPTR)k_classifier, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    }
    pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
    int cls = UC_OTHER;
    if (md) {
        char buf[4];
        int l = tok_utf8_encode(cp, buf);
        int rc = pcre2_match(re, (PCRE2_SPTR)buf, (PCRE2_SIZE)l, 0, PCRE2_ANCHORED, md, NULL);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        for (int g = 1; g < rc; g++)
            if (ov[2 * g] != PCRE2_UNSET) { cls = g; break; }
        pcre2_match_data_free(md);
    }
    pthread_mutex_unlock(&lock);
    return cls;
}
