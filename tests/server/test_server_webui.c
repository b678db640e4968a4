/* The chat page at GET / in headless Chromium, driven over the DevTools
 * protocol (--remote-debugging-pipe: NUL-terminated JSON on fds 3 and 4):
 * open the page, type a message into the form and press Send, wait until the
 * streamed answer has finished, and compare it with the API's greedy answer.
 * Leaves a screenshot in tmp/webui-chat.png. Skipped when Chromium is not
 * installed. */
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../test.h"
#include "dsv3/clock.h"
#include "server_test_util.h"

static const char *chromium_bin(void) {
    static char path[512];
    static const char *names[] = {"chromium", "chromium-browser", "google-chrome"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "command -v %s 2>/dev/null", names[i]);
        FILE *p = popen(cmd, "r");
        int ok = p && fgets(path, sizeof path, p) != NULL;
        if (p) pclose(p);
        if (ok) {
            path[strcspn(path, "\n")] = 0;
            return path;
        }
    }
    return NULL;
}

typedef struct {
    pid_t pid;
    int to, from; /* our ends: commands to Chromium, messages from it */
    int next_id;
    dsv3_buf in;  /* received bytes not yet consumed */
    char session[128];
} cdp;

static int cdp_start(cdp *c, const char *chrome, const char *profile) {
    int cmd[2], res[2];
    memset(c, 0, sizeof *c);
    if (pipe(cmd) || pipe(res)) return -1;
    c->pid = fork();
    if (c->pid < 0) return -1;
    if (c->pid == 0) {
        /* Chromium reads commands on fd 3 and writes replies on fd 4 */
        int r = dup(cmd[0]), w = dup(res[1]);
        dup2(r, 3);
        dup2(w, 4);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) { dup2(devnull, 1); dup2(devnull, 2); }
        char prof[600];
        snprintf(prof, sizeof prof, "--user-data-dir=%s", profile);
        execl(chrome, chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-extensions", "--remote-debugging-pipe", "--window-size=900,600", prof, "about:blank", (char *)NULL);
        _exit(127);
    }
    close(cmd[0]);
    close(res[1]);
    c->to = cmd[1];
    c->from = res[0];
    c->next_id = 1;
    return 0;
}

/* Sends method(params) (in the page session if sess) and waits for its reply;
 * returns the reply's "result" (new reference) or NULL (error/timeout). */
static json_t *cdp_call(cdp *c, const char *method, json_t *params, int sess, double timeout) {
    int id = c->next_id++;
    json_t *msg = json_pack("{s:i, s:s, s:o}", "id", id, "method", method, "params", params ? params : json_object());
    if (sess) json_object_set_new(msg, "sessionId", json_string(c->session));
    char *s = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    size_t n = strlen(s) + 1; /* with the NUL terminator */
    for (size_t off = 0; off < n;) {
        ssize_t k = write(c->to, s + off, n - off);
        if (k <= 0) { free(s); return NULL; }
        off += (size_t)k;
    }
    free(s);
    double t_end = dsv3_now_s() + timeout;
    for (;;) {
        /* every complete message in the buffer: the reply, or an event to skip */
        char *nul;
        while (c->in.p && (nul = memchr(c->in.p, 0, c->in.n))) {
            json_t *j = json_loadb(c->in.p, (size_t)(nul - c->in.p), 0, NULL);
            size_t used = (size_t)(nul - c->in.p) + 1;
            memmove(c->in.p, c->in.p + used, c->in.n - used);
            c->in.n -= used;
            if (j && json_integer_value(json_object_get(j, "id")) == id) {
                json_t *r = json_incref(json_object_get(j, "result"));
                json_decref(j);
                return r;
            }
            json_decref(j);
        }
        double left = t_end - dsv3_now_s();
        if (left <= 0) return NULL;
        struct pollfd p = {c->from, POLLIN, 0};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        char buf[65536];
        ssize_t k = read(c->from, buf, sizeof buf);
        if (k <= 0) return NULL;
        dsv3_buf_add(&c->in, buf, (size_t)k);
    }
}

/* Evaluates a JS expression in the page; returns its value as a string (malloc'd) or NULL. */
static char *cdp_eval(cdp *c, const char *expr) {
    json_t *r = cdp_call(c, "Runtime.evaluate", json_pack("{s:s, s:b}", "expression", expr, "returnByValue", 1), 1, 30);
    json_t *v = json_object_get(json_object_get(r, "result"), "value");
    char *s = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
    json_decref(r);
    return s;
}

/* Polls expr every 50 ms until it evaluates to want (or timeout seconds); returns the last
 * value (malloc'd, NULL if there was no reply). */
static char *cdp_wait_eval(cdp *c, const char *expr, const char *want, double timeout) {
    char *v = NULL;
    for (double t0 = dsv3_now_s(); dsv3_now_s() - t0 < timeout;) {
        free(v);
        v = cdp_eval(c, expr);
        if (v && !strcmp(v, want)) break;
        usleep(50000);
    }
    return v;
}

static void cdp_stop(cdp *c) {
    json_decref(cdp_call(c, "Browser.close", NULL, 0, 5));
    close(c->to);
    close(c->from);
    for (int i = 0; i < 50 && waitpid(c->pid, NULL, WNOHANG) == 0; i++) usleep(100000);
    if (waitpid(c->pid, NULL, WNOHANG) == 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
    }
    dsv3_buf_free(&c->in);
}

static size_t b64_decode(const char *s, unsigned char *out) {
    size_t n = 0;
    unsigned v = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", *q = strchr(a, *s);
        if (!q) continue;
        v = (v << 6) | (unsigned)(q - a);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(v >> bits);
        }
    }
    return n;
}

TEST(server_webui_headless_chromium) {
    const char *chrome = chromium_bin();
    if (!chrome) SKIP("chromium not installed");
    const char *dir = ts_chat_model_dir();
    if (!dir) SKIP("fixtures or the DeepSeek-V3 chat template absent");
    dsv3_server *s = ts_start_server(dir, NULL);
    CHECK(s);
    int port = dsv3_server_port(s), st;
    /* the answer the page must show */
    json_t *j = ts_post_json(port, "/v1/chat/completions",
                             "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"max_tokens\":16,\"temperature\":0}", &st);
    CHECK(st == 200 && ts_choice_str(j, "message", "content"));
    char want[4096];
    snprintf(want, sizeof want, "%s", ts_choice_str(j, "message", "content") ? ts_choice_str(j, "message", "content") : "");
    json_decref(j);

    char profile[512], url[128];
    snprintf(profile, sizeof profile, "%s/chromium-profile", test_tmp_dir());
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    cdp c;
    CHECK(cdp_start(&c, chrome, profile) == 0);
    json_t *r = cdp_call(&c, "Target.createTarget", json_pack("{s:s}", "url", url), 0, 60);
    const char *target = json_string_value(json_object_get(r, "targetId"));
    CHECK_MSG(target, "Chromium did not open the page");
    json_t *a = target ? cdp_call(&c, "Target.attachToTarget", json_pack("{s:s, s:b}", "targetId", target, "flatten", 1), 0, 30) : NULL;
    json_decref(r);
    const char *sid = json_string_value(json_object_get(a, "sessionId"));
    CHECK(sid);
    snprintf(c.session, sizeof c.session, "%s", sid ? sid : "");
    json_decref(a);
    /* wait for the page's script, then type the message and press Send */
    char *v = cdp_wait_eval(&c, "document.readyState + (document.getElementById('send') ? ':form' : '')", "complete:form", 60);
    CHECK_MSG(v && !strcmp(v, "complete:form"), "the page did not load (%s)", v ? v : "no reply");
    free(v);
    v = cdp_eval(&c, "document.getElementById('q').value='hello';document.getElementById('temp').value='0';"
                     "document.getElementById('maxtok').value='16';document.getElementById('send').click();'sent'");
    CHECK(v && !strcmp(v, "sent"));
    free(v);
    /* the answer streams in; the page marks the end with data-state="idle" */
    v = cdp_wait_eval(&c, "document.body.dataset.state || ''", "idle", 120);
    CHECK_MSG(v && !strcmp(v, "idle"), "the answer did not finish in the page (state '%s')", v ? v : "no reply");
    free(v);
    char *msgs = cdp_eval(&c, "JSON.stringify([...document.querySelectorAll('#log .m')].map(d=>[d.className,d.textContent]))");
    json_t *m = msgs ? json_loads(msgs, 0, NULL) : NULL;
    CHECK_MSG(json_array_size(m) == 2, "page messages: %s", msgs ? msgs : "none");
    const char *c0 = json_string_value(json_array_get(json_array_get(m, 0), 0)), *t0s = json_string_value(json_array_get(json_array_get(m, 0), 1));
    const char *c1 = json_string_value(json_array_get(json_array_get(m, 1), 0)), *t1s = json_string_value(json_array_get(json_array_get(m, 1), 1));
    CHECK(c0 && !strcmp(c0, "m user") && t0s && !strcmp(t0s, "hello"));
    CHECK(c1 && !strcmp(c1, "m assistant"));
    CHECK_MSG(t1s && !strcmp(t1s, want), "page shows '%s', API answered '%s'", t1s ? t1s : "", want);
    json_decref(m);
    free(msgs);

    /* the screenshot, for people to look at */
    r = cdp_call(&c, "Page.captureScreenshot", json_pack("{s:s}", "format", "png"), 1, 60);
    const char *b64 = json_string_value(json_object_get(r, "data"));
    CHECK_MSG(b64, "no screenshot");
    if (b64) {
        unsigned char *png = malloc(strlen(b64));
        size_t n = b64_decode(b64, png);
        CHECK(n > 2000 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8));
        mkdir("tmp", 0755);
        FILE *f = fopen("tmp/webui-chat.png", "wb");
        CHECK(f && fwrite(png, 1, n, f) == n);
        if (f) fclose(f);
        free(png);
    }
    json_decref(r);
    cdp_stop(&c);
    dsv3_server_stop(s);
}
