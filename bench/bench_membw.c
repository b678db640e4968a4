/* Memory read bandwidth (STREAM-like "sum" kernel):
 *   build/bench_membw [--mib N=1024] [-t threads] [-r runs=5]
 *
 * Sum-reduces an N MiB buffer (default 1 GiB, far larger than any cache) with
 * AVX-512 (or AVX2) loads on OpenMP threads, R timed runs after a warm-up;
 * prints best and median GB/s (1 GB = 1e9 bytes) and one JSON line. This is
 * the ceiling for memory-bound decode (see bench_decode, which runs the same
 * kernel, bench/membw.h). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "membw.h"

static void usage(FILE *f) {
    fprintf(f, "usage: bench_membw [--mib N] [-t threads] [-r runs]\n"
               "  --mib N   buffer size in MiB (default 1024)\n"
               "  -t N      threads (default: all cores)\n"
               "  -r R      timed runs (default 5)\n");
}

int main(int argc, char **argv) {
    long mib = 1024, threads = 0, runs = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        int bad = !v;
        if (!bad && !strcmp(a, "--mib")) bad = bench_parse_long(v, 1, 1 << 20, &mib);
        else if (!bad && !strcmp(a, "-t")) bad = bench_parse_long(v, 0, 4096, &threads);
        else if (!bad && !strcmp(a, "-r")) bad = bench_parse_long(v, 1, 1000, &runs);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "bench_membw: bad or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (threads > 0) omp_set_num_threads((int)threads);
    membw_result r;
    if (membw_measure((uint64_t)mib << 20, (int)runs, (int)threads, &r)) {
        fprintf(stderr, "bench_membw: out of memory for a %ld MiB buffer\n", mib);
        return 1;
    }
    printf("buffer         %.0f MiB (%.3f GB), %s loads, %d threads\n", r.bytes / 1048576.0, r.bytes / 1e9, r.isa,
           r.threads);
    printf("read bandwidth %.2f GB/s best, %.2f GB/s median of %d runs\n", r.best_gb_s, r.median_gb_s, r.runs);
    printf("{\"bench\":\"membw\",\"bytes\":%llu,\"isa\":\"%s\",\"threads\":%d,\"runs\":%d,\"best_gb_s\":%.3f,"
           "\"median_gb_s\":%.3f,\"checksum\":%.6g}\n",
           (unsigned long long)r.bytes, r.isa, r.threads, r.runs, r.best_gb_s, r.median_gb_s, r.checksum);
    return 0;
}
