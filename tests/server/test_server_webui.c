/* The chat page at GET / in headless Chromium: the page loads, sends a
 * message (/?q=... submits it on load), and shows the streamed answer, which
 * must equal the API's greedy answer. Leaves a screenshot in
 * tmp/webui-chat.png. Skipped when Chromium is not installed. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../test.h"
#include "server_test_util.h"

static const char *chromium_bin(void) {
    static const char *names[] = {"chromium", "chromium-browser", "google-chrome"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", names[i]);
        if (system(cmd) == 0) return names[i];
    }
    return NULL;
}

/* Undoes the escaping of text nodes in serialised HTML (&amp; &lt; &gt; &nbsp;). */
static void html_unescape(char *s) {
    static const struct { const char *ent, *ch; } map[] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&nbsp;", "\xc2\xa0"},
                                                           {"&quot;", "\""}};
    char *w = s;
    for (const char *r = s; *r;) {
        size_t i = 0;
        for (; i < sizeof map / sizeof *map; i++)
            if (!strncmp(r, map[i].ent, strlen(map[i].ent))) break;
        if (i < sizeof map / sizeof *map) {
            size_t n = strlen(map[i].ch);
            memcpy(w, map[i].ch, n);
            w += n;
            r += strlen(map[i].ent);
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
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

    char cmd[8192], url[256], profile[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/?q=hello&temperature=0&max_tokens=16", port);
    snprintf(profile, sizeof profile, "%s/chromium-profile", test_tmp_dir());
    /* virtual time runs the page until its network fetches (the SSE stream) are done */
    const char *flags = "--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --disable-extensions "
                        "--virtual-time-budget=60000 --window-size=900,600";
    snprintf(cmd, sizeof cmd, "timeout 120 %s %s --user-data-dir=%s --dump-dom '%s' 2>/dev/null", chrome, flags, profile, url);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    dsv3_buf dom = {0};
    char buf[4096];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) dsv3_buf_add(&dom, buf, n);
    dsv3_buf_add(&dom, "", 0);
    int rc = p ? pclose(p) : -1;
    CHECK_MSG(WIFEXITED(rc) && WEXITSTATUS(rc) == 0 && dom.n > 100, "chromium --dump-dom failed (status 0x%x, %zu bytes)", rc, dom.n);
    CHECK_MSG(strstr(dom.p, "data-state=\"idle\""), "the answer did not finish in the page");
    const char *u = strstr(dom.p, "<div class=\"m user\">hello</div>");
    CHECK_MSG(u, "no user message in the page");
    const char *a = u ? strstr(u, "<div class=\"m assistant\">") : NULL;
    CHECK_MSG(a, "no assistant message in the page");
    if (a) {
        a += strlen("<div class=\"m assistant\">");
        const char *e = strstr(a, "</div>");
        CHECK(e);
        char got[8192];
        snprintf(got, sizeof got, "%.*s", e ? (int)(e - a) : 0, a);
        html_unescape(got);
        CHECK_MSG(!strcmp(got, want), "page shows '%s', API answered '%s'", got, want);
    }
    CHECK_MSG(!strstr(dom.p, "class=\"m error\""), "the page shows an error");
    dsv3_buf_free(&dom);

    /* the screenshot, for people to look at */
    mkdir("tmp", 0755);
    remove("tmp/webui-chat.png");
    snprintf(cmd, sizeof cmd, "timeout 120 %s %s --user-data-dir=%s --screenshot=tmp/webui-chat.png '%s' >/dev/null 2>&1", chrome,
             flags, profile, url);
    rc = system(cmd);
    CHECK_MSG(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "chromium --screenshot failed (status 0x%x)", rc);
    FILE *f = fopen("tmp/webui-chat.png", "rb");
    unsigned char sig[8] = {0};
    CHECK_MSG(f && fread(sig, 1, 8, f) == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8), "no PNG screenshot");
    if (f) {
        fseek(f, 0, SEEK_END);
        CHECK(ftell(f) > 2000);
        fclose(f);
    }
    dsv3_server_stop(s);
}
