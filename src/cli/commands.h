/* CLI sub-commands. Each returns the process exit status (0 = success). */
#ifndef DSV3_CLI_COMMANDS_H
#define DSV3_CLI_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_plot_loss(int argc, char **argv);
int cmd_init_model(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_tokenizer_train(int argc, char **argv);
int cmd_tokenize_corpus(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_chat(int argc, char **argv);

#endif
