/* dsv3 chat: Ctrl-C (SIGINT) interrupts the answer being generated, not the
 * program; the next turn is answered and /exit ends with status 0. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../server/server_test_util.h"
#include "../test.h"
#include "dsv3/buf.h"
#include "dsv3/clock.h"

/* Reads what the child writes for up to timeout seconds: until want appears, or
 * (want NULL) until anything new arrived; stops at EOF. */
static void read_for(int fd, dsv3_buf *out, double timeout, const char *want) {
    double t_end = dsv3_now_s() + timeout;
    size_t n0 = out->n;
    while (dsv3_now_s() < t_end) {
        if (want ? out->p && strstr(out->p, want) != NULL : out->n > n0) return;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        char buf[4096];
        ssize_t k = read(fd, buf, sizeof buf);
        if (k <= 0) return;
        dsv3_buf_add(out, buf, (size_t)k);
        dsv3_buf_add(out, "", 0);
        out->n--; /* keep NUL-terminated */
    }
}

TEST(cli_chat_ctrl_c_interrupts_answer) {
    const char *dir = ts_chat_model_dir();
    if (!dir) SKIP("fixtures or the DeepSeek-V3 chat template absent");
    int in[2], outp[2];
    CHECK(pipe(in) == 0 && pipe(outp) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(outp[1], 1);
        close(in[1]);
        close(outp[0]);
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) dup2(devnull, 2);
        /* a random-weight model: EOS (1 of 512 ids) is unlikely, so the answer runs to -n */
        execl(ts_dsv3_bin(), "dsv3", "chat", "--model", dir, "-n", "100000", "--temp", "1", "--seed", "3", "-t", "1", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    signal(SIGPIPE, SIG_IGN);
    dsv3_buf out = {0};
    CHECK(write(in[1], "hello\n", 6) == 6);
    read_for(outp[0], &out, 30, NULL);
    CHECK_MSG(out.n > 0, "no answer text");
    /* some answer text has streamed: interrupt it */
    CHECK(kill(pid, SIGINT) == 0);
    read_for(outp[0], &out, 60, " [interrupted]\n");
    CHECK_MSG(out.p && strstr(out.p, " [interrupted]\n"), "no interruption mark in '%s'", out.p ? out.p : "");
    /* still alive: a second turn is answered (it may run to -n; interrupt it too), then /exit */
    size_t before = out.n;
    CHECK(write(in[1], "again\n", 6) == 6);
    read_for(outp[0], &out, 30, NULL);
    CHECK_MSG(out.n > before, "no second answer");
    kill(pid, SIGINT);
    CHECK(write(in[1], "/exit\n", 6) == 6);
    close(in[1]);
    read_for(outp[0], &out, 60, "\x01"); /* drain to EOF */
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "chat ended with status 0x%x", st);
    close(outp[0]);
    dsv3_buf_free(&out);
}
