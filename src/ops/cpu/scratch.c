/* Per-thread scratch buffers of the CPU kernels (cpu_kernels.h). */
#include <pthread.h>
#include <stdlib.h>

#include "cpu_kernels.h"

typedef struct {
    void *p[DSV3_SC_N];
    size_t cap[DSV3_SC_N];
} scratch;

/* the __thread pointer keeps the buffers reachable for leak checkers; the key frees them at thread exit */
static __thread scratch *t_scratch;
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static int g_scratch_key_ok;

static void scratch_free(void *v) {
    scratch *sc = v;
    for (int i = 0; i < DSV3_SC_N; i++) free(sc->p[i]);
    free(sc);
}
static void scratch_key_init(void) { g_scratch_key_ok = pthread_key_create(&g_scratch_key, scratch_free) == 0; }

void *dsv3_cpu_scratch(int slot, size_t n) {
    if (slot < 0 || slot >= DSV3_SC_N) return NULL;
    scratch *sc = t_scratch;
    if (!sc) {
        pthread_once(&g_scratch_once, scratch_key_init);
        sc = calloc(1, sizeof *sc);
        if (!sc) return NULL;
        if (g_scratch_key_ok) pthread_setspecific(g_scratch_key, sc);
        t_scratch = sc;
    }
    if (sc->cap[slot] < n) {
        free(sc->p[slot]);
        sc->cap[slot] = 0;
        size_t bytes = (n + 63) / 64 * 64;
        if (bytes < n || !(sc->p[slot] = aligned_alloc(64, bytes))) return NULL;
        sc->cap[slot] = bytes;
    }
    return sc->p[slot];
}
