/* Load test of `dsv3 serve`: concurrent streaming chat clients for a fixed time.
 *
 *   bench_serve --model DIR [--clients 32] [--duration 300] [--single 30]
 *               [--max-tokens 64] [-t N] [--max-batch 32] [--dsv3 PATH]
 *
 * Starts `dsv3 serve --port 0` as a child process, then
 *   1. single-stream phase (--single seconds): one client, requests back to back;
 *   2. load phase (--duration seconds): --clients threads, each sending streaming
 *      /v1/chat/completions requests back to back (temperature 0.8, seeded).
 * Per request it records time to first token (TTFT: request sent -> first
 * content event) and inter-token latencies (between content events); HTTP 429
 * is counted apart (the server's intended back-pressure; the client waits for
 * Retry-After and retries); anything else is an error. The server's RSS
 * (VmRSS of the child) is sampled every 5 s. Prints a table and one JSON line. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dsv3/clock.h"

static const char *k_prompts[] = {
    "Who made the heaven and the earth?", "Tell me of the flood.", "What did Moses say unto Pharaoh?",
    "Sing a psalm of David.", "What is love?", "Who was Abraham?", "Speak of the kings of Israel.",
    "What said the prophet Isaiah?"};
#define N_PROMPTS (int)(sizeof k_prompts / sizeof *k_prompts)

typedef struct { double *v; size_t n, cap; } vec;
static void vec_push(vec *a, double x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 1024;
        a->v = realloc(a->v, sizeof(double) * a->cap);
        if (!a->v) { perror("bench_serve"); exit(1); }
    }
    a->v[a->n++] = x;
}
static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static double pct(vec *a, double p) {
    if (!a->n) return 0;
    qsort(a->v, a->n, sizeof(double), cmp_d);
    size_t i = (size_t)(p * (double)(a->n - 1) + 0.5);
    return a->v[i];
}

typedef struct {
    int port, max_tokens, id;
    double t_end;
    /* results */
    vec ttft, itl;
    long tokens, ok, rejected_429, errors;
    char last_error[256];
} client;

/* One streaming request; returns the HTTP status (0 on a transport error). */
static int one_request(client *c, unsigned seed, int *retry_after) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return 0; }
    char body[1024], req[2048];
    int bl = snprintf(body, sizeof body,
                      "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,\"temperature\":0.8,"
                      "\"top_p\":0.95,\"seed\":%u,\"stream\":true}",
                      k_prompts[seed % N_PROMPTS], c->max_tokens, seed);
    /* HTTP/1.0: the streamed body comes unchunked and ends when the server closes */
    int rl = snprintf(req, sizeof req, "POST /v1/chat/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n%s", bl, body);
    double t0 = dsv3_now_s();
    for (int off = 0; off < rl;) {
        ssize_t k = send(fd, req + off, (size_t)(rl - off), MSG_NOSIGNAL);
        if (k <= 0) { close(fd); return 0; }
        off += (int)k;
    }
    char buf[65536];
    size_t have = 0;
    int status = -1, in_body = 0, done = 0;
    double last = 0;
    long toks = 0;
    *retry_after = 1;
    for (;;) {
        ssize_t k = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (k <= 0) break;
        have += (size_t)k;
        buf[have] = 0;
        char *p = buf;
        if (!in_body) {
            char *eoh = strstr(buf, "\r\n\r\n");
            if (!eoh) continue;
            if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) status = 0;
            char *ra = strcasestr(buf, "Retry-After:");
            if (ra && ra < eoh) *retry_after = atoi(ra + 12);
            in_body = 1;
            p = eoh + 4;
        }
        /* complete events "data: ...\n\n" */
        for (;;) {
            char *e = strstr(p, "\n\n");
            if (!e) break;
            if (!strncmp(p, "data: [DONE]", 12)) done = 1;
            else if (!strncmp(p, "data: ", 6) && strstr(p, "\"content\":\"") && strstr(p, "\"content\":\"") < e &&
                     strncmp(strstr(p, "\"content\":\""), "\"content\":\"\"", 12) != 0) {
                double now = dsv3_now_s();
                if (toks == 0) vec_push(&c->ttft, now - t0);
                else vec_push(&c->itl, now - last);
                last = now;
                toks++;
            }
            p = e + 2;
        }
        size_t rest = have - (size_t)(p - buf);
        memmove(buf, p, rest);
        have = rest;
        if (have > sizeof buf - 4096) have = 0; /* an oversized event; drop it */
    }
    close(fd);
    if (status == 200 && !done) {
        snprintf(c->last_error, sizeof c->last_error, "stream ended without [DONE]");
        return -2;
    }
    if (status == 200) c->tokens += toks;
    return status;
}

static void *client_main(void *arg) {
    client *c = arg;
    unsigned seed = (unsigned)c->id * 7919u + 1;
    while (dsv3_now_s() < c->t_end) {
        int ra = 1, st = one_request(c, seed++, &ra);
        if (st == 200) c->ok++;
        else if (st == 429) {
            c->rejected_429++;
            usleep((useconds_t)(ra > 0 && ra < 10 ? ra : 1) * 100000); /* a tenth of Retry-After: keep pressure on */
        } else {
            c->errors++;
            if (st != -2) snprintf(c->last_error, sizeof c->last_error, "HTTP status %d%s", st, st == 0 ? " (transport)" : "");
            usleep(100000);
        }
    }
    return NULL;
}

static long rss_kib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
    if (f) fclose(f);
    return v;
}

typedef struct { vec ttft, itl; long tokens, ok, r429, errors; double secs; char err[256]; } phase;

static void run_phase(int port, int nclients, double secs, int max_tokens, pid_t server, vec *rss_t, vec *rss_v, phase *out) {
    client *cs = calloc((size_t)nclients, sizeof *cs);
    pthread_t *th = calloc((size_t)nclients, sizeof *th);
    double t0 = dsv3_now_s();
    for (int i = 0; i < nclients; i++) {
        cs[i] = (client){.port = port, .max_tokens = max_tokens, .id = i + nclients * 1000, .t_end = t0 + secs};
        pthread_create(&th[i], NULL, client_main, &cs[i]);
    }
    if (rss_t) {
        for (double next = t0 + 5; next < t0 + secs + 0.5; next += 5) {
            double now = dsv3_now_s();
            if (next > now) usleep((useconds_t)((next - now) * 1e6));
            vec_push(rss_t, dsv3_now_s() - t0);
            vec_push(rss_v, (double)rss_kib(server));
            fprintf(stderr, "\r  load phase: %3.0f / %.0f s, server RSS %.1f MiB   ", dsv3_now_s() - t0, secs, rss_v->v[rss_v->n - 1] / 1024);
        }
        fprintf(stderr, "\n");
    }
    memset(out, 0, sizeof *out);
    for (int i = 0; i < nclients; i++) {
        pthread_join(th[i], NULL);
        for (size_t k = 0; k < cs[i].ttft.n; k++) vec_push(&out->ttft, cs[i].ttft.v[k]);
        for (size_t k = 0; k < cs[i].itl.n; k++) vec_push(&out->itl, cs[i].itl.v[k]);
        out->tokens += cs[i].tokens;
        out->ok += cs[i].ok;
        out->r429 += cs[i].rejected_429;
        out->errors += cs[i].errors;
        if (cs[i].last_error[0]) snprintf(out->err, sizeof out->err, "%s", cs[i].last_error);
        free(cs[i].ttft.v);
        free(cs[i].itl.v);
    }
    out->secs = dsv3_now_s() - t0;
    free(cs);
    free(th);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_serve --model DIR [--clients 32] [--duration 300] [--single 30] [--max-tokens 64]\n"
                    "                   [-t N] [--max-batch 32] [--dsv3 PATH]\n");
}

int main(int argc, char **argv) {
    const char *model = NULL, *threads = "2", *max_batch = "32";
    char dsv3[4096];
    snprintf(dsv3, sizeof dsv3, "%s", argv[0]);
    char *slash = strrchr(dsv3, '/');
    snprintf(slash ? slash + 1 : dsv3, sizeof dsv3 - (size_t)(slash ? slash + 1 - dsv3 : 0), "dsv3");
    int clients = 32, max_tokens = 64;
    double duration = 300, single = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
        if (!v) { fprintf(stderr, "bench_serve: %s needs a value\n", a); usage(); return 2; }
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--clients")) clients = atoi(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--single")) single = atof(v);
        else if (!strcmp(a, "--max-tokens")) max_tokens = atoi(v);
        else if (!strcmp(a, "-t")) threads = v;
        else if (!strcmp(a, "--max-batch")) max_batch = v;
        else if (!strcmp(a, "--dsv3")) snprintf(dsv3, sizeof dsv3, "%s", v);
        else { fprintf(stderr, "bench_serve: unknown option %s\n", a); usage(); return 2; }
        i++;
    }
    if (!model || clients < 1 || clients > 1024 || duration <= 0 || single < 0 || max_tokens < 1) { usage(); return 2; }
    signal(SIGPIPE, SIG_IGN);
    int pfd[2];
    if (pipe(pfd)) { perror("pipe"); return 1; }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        execl(dsv3, "dsv3", "serve", "--model", model, "--port", "0", "-t", threads, "--max-batch", max_batch, (char *)NULL);
        fprintf(stderr, "bench_serve: cannot run %s: %s\n", dsv3, strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[1024] = "";
    int port = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "dsv3 serve: listening on http://127.0.0.1:%d/", &port) == 1) break;
    if (port <= 0) {
        fprintf(stderr, "bench_serve: the server did not start: %s", line);
        waitpid(pid, NULL, 0);
        return 1;
    }
    fprintf(stderr, "bench_serve: server pid %d on port %d (-t %s, --max-batch %s)\n", (int)pid, port, threads, max_batch);
    phase one = {0}, load = {0};
    if (single > 0) {
        fprintf(stderr, "  single-stream phase: %.0f s\n", single);
        run_phase(port, 1, single, max_tokens, pid, NULL, NULL, &one);
    }
    vec rt = {0}, rv = {0};
    fprintf(stderr, "  load phase: %d clients, %.0f s\n", clients, duration);
    run_phase(port, clients, duration, max_tokens, pid, &rt, &rv, &load);
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    fclose(f);

    double single_tps = one.secs > 0 ? (double)one.tokens / one.secs : 0, agg_tps = (double)load.tokens / load.secs;
    /* RSS drift: the sample nearest minute 1 vs the last one */
    double rss1 = 0, rss_end = rv.n ? rv.v[rv.n - 1] : 0;
    for (size_t i = 0; i < rt.n; i++)
        if (rt.v[i] <= 60.5 || rss1 == 0) rss1 = rv.v[i];
    double drift = rss1 > 0 ? 100.0 * (rss_end - rss1) / rss1 : 0;
    double l_ttft50 = pct(&load.ttft, 0.5), l_ttft99 = pct(&load.ttft, 0.99), l_itl50 = pct(&load.itl, 0.5), l_itl99 = pct(&load.itl, 0.99);
    double s_ttft50 = pct(&one.ttft, 0.5), s_itl50 = pct(&one.itl, 0.5);
    printf("\n| phase | clients | requests ok | 429 | errors | tokens | tok/s | TTFT p50 / p99 ms | ITL p50 / p99 ms |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    printf("| single | 1 | %ld | %ld | %ld | %ld | %.1f | %.1f / %.1f | %.1f / %.1f |\n", one.ok, one.r429, one.errors, one.tokens,
           single_tps, 1e3 * s_ttft50, 1e3 * pct(&one.ttft, 0.99), 1e3 * s_itl50, 1e3 * pct(&one.itl, 0.99));
    printf("| load | %d | %ld | %ld | %ld | %ld | %.1f | %.1f / %.1f | %.1f / %.1f |\n", clients, load.ok, load.r429, load.errors,
           load.tokens, agg_tps, 1e3 * l_ttft50, 1e3 * l_ttft99, 1e3 * l_itl50, 1e3 * l_itl99);
    printf("\nbatching gain (aggregate / single-stream tok/s): %.2fx\n", single_tps > 0 ? agg_tps / single_tps : 0);
    printf("server RSS: %.1f MiB at ~1 min, %.1f MiB at the end (%+.2f%%); server exit status %d\n", rss1 / 1024, rss_end / 1024,
           drift, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    if (load.errors + one.errors) printf("last error: %s\n", load.err[0] ? load.err : one.err);
    printf("{\"clients\":%d,\"duration_s\":%.1f,\"max_tokens\":%d,\"ok\":%ld,\"rejected_429\":%ld,\"errors\":%ld,\"tokens\":%ld,"
           "\"agg_tok_s\":%.2f,\"single_tok_s\":%.2f,\"batching_gain\":%.3f,\"ttft_p50_ms\":%.2f,\"ttft_p99_ms\":%.2f,"
           "\"itl_p50_ms\":%.2f,\"itl_p99_ms\":%.2f,\"single_ttft_p50_ms\":%.2f,\"single_itl_p50_ms\":%.2f,"
           "\"rss_1min_mib\":%.1f,\"rss_end_mib\":%.1f,\"rss_drift_pct\":%.2f}\n",
           clients, load.secs, max_tokens, load.ok, load.r429, load.errors + one.errors, load.tokens, agg_tps, single_tps,
           single_tps > 0 ? agg_tps / single_tps : 0, 1e3 * l_ttft50, 1e3 * l_ttft99, 1e3 * l_itl50, 1e3 * l_itl99, 1e3 * s_ttft50,
           1e3 * s_itl50, rss1 / 1024, rss_end / 1024, drift);
    free(rt.v);
    free(rv.v);
    free(one.ttft.v); free(one.itl.v); free(load.ttft.v); free(load.itl.v);
    return load.errors + one.errors ? 1 : 0;
}
