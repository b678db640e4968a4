/* The official openai Python client against `dsv3 serve` with the default
 * model (tools/openai_client_check.py); skipped without python3 + openai. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../test.h"
#include "server_test_util.h"

TEST(server_openai_python_client) {
    struct stat sb;
    if (stat("models/dsv3-kjv-tiny/model.safetensors", &sb) != 0) SKIP("default model absent");
    if (system("python3 -c 'import openai' >/dev/null 2>&1") != 0) SKIP("python3 openai package not installed");
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        execl(ts_dsv3_bin(), "dsv3", "serve", "--model", "models/dsv3-kjv-tiny", "--port", "0", "-t", "1", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[512] = "", cmd[1024];
    int port = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "dsv3 serve: listening on http://127.0.0.1:%d/", &port) == 1) break;
    if (port > 0) {
        snprintf(cmd, sizeof cmd, "python3 tools/openai_client_check.py http://127.0.0.1:%d/v1 1>&2", port);
        int st = system(cmd);
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (code == 77) test_skip("openai client unavailable");
        else if (code != 0) test_fail_at(__FILE__, __LINE__, "tools/openai_client_check.py exited %d", code);
    } else {
        test_fail_at(__FILE__, __LINE__, "server did not report its port: %s", line);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    fclose(f);
}
