/* Placeholder: replaced by the tokenizer work (issue 3). */
#include <stdio.h>
#include "cli/commands.h"
static int not_yet(const char *what) { fprintf(stderr, "dsv3 %s: not implemented yet\n", what); return 1; }
int cmd_tokenize(int argc, char **argv) { (void)argc; (void)argv; return not_yet("tokenize"); }
int cmd_detokenize(int argc, char **argv) { (void)argc; (void)argv; return not_yet("detokenize"); }
int cmd_chat_template(int argc, char **argv) { (void)argc; (void)argv; return not_yet("chat-template"); }
