/* dsv3 tokenize / detokenize / chat-template. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "dsv3/tokenizer.h"

typedef struct {
    const char *tokenizer, *text, *jsonl, *ids;
    int add_special, skip_special, help;
} tok_args;

static int parse_args(const char *cmd, int argc, char **argv, tok_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **dst = NULL;
        if (!strcmp(o, "--tokenizer")) dst = &a->tokenizer;
        else if (!strcmp(o, "--text")) dst = &a->text;
        else if (!strcmp(o, "--jsonl")) dst = &a->jsonl;
        else if (!strcmp(o, "--ids")) dst = &a->ids;
        else if (!strcmp(o, "--add-special")) { a->add_special = 1; continue; }
        else if (!strcmp(o, "--skip-special")) { a->skip_special = 1; continue; }
        else if (!strcmp(o, "--help") || !strcmp(o, "-h")) { a->help = 1; continue; }
        else {
            fprintf(stderr, "dsv3 %s: unknown option '%s'\n", cmd, o);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "dsv3 %s: %s needs a value\n", cmd, o);
            return -1;
        }
        *dst = argv[++i];
    }
    if (!a->help && !a->tokenizer) {
        fprintf(stderr, "dsv3 %s: --tokenizer DIR is required\n", cmd);
        return -1;
    }
    return 0;
}

static dsv3_tokenizer *load_tok(const char *cmd, const char *dir) {
    dsv3_tokenizer *tok;
    dsv3_error err = {0};
    if (dsv3_tokenizer_load(dir, &tok, &err)) {
        fprintf(stderr, "dsv3 %s: %s\n", cmd, err.msg);
        return NULL;
    }
    return tok;
}

static void print_ids(FILE *f, const int32_t *ids, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++) fprintf(f, i ? ", %d" : "%d", (int)ids[i]);
    fputc(']', f);
}

static FILE *open_jsonl(const char *cmd, const char *path) {
    if (!strcmp(path, "-")) return stdin;
    FILE *f = fopen(path, "r");
    if (!f) fprintf(stderr, "dsv3 %s: %s: %s\n", cmd, path, strerror(errno));
    return f;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
    return 1;
}

int cmd_tokenize(int argc, char **argv) {
    tok_args a;
    if (parse_args("tokenize", argc, argv, &a)) return 2;
    if (a.help || (!a.text == !a.jsonl)) {
        fprintf(a.help ? stdout : stderr,
                "usage: dsv3 tokenize --tokenizer DIR (--text STR | --jsonl FILE) [--add-special]\n"
                "  --text STR     print the ids of STR as a JSON array\n"
                "  --jsonl FILE   one JSON object per line with \"text\"; prints one JSON array of ids per line\n"
                "                 (FILE '-' = stdin)\n"
                "  --add-special  add BOS/EOS as the tokenizer config says (default: none; special tokens written\n"
                "                 in the text are always matched)\n");
        return a.help ? 0 : 2;
    }
    dsv3_tokenizer *tok = load_tok("tokenize", a.tokenizer);
    if (!tok) return 1;
    unsigned flags = a.add_special ? DSV3_TOK_ADD_SPECIAL : 0;
    dsv3_ids ids = {0};
    dsv3_error err = {0};
    int rc = 0;
    if (a.text) {
        if (dsv3_tokenizer_encode(tok, a.text, strlen(a.text), flags, &ids, &err)) {
            fprintf(stderr, "dsv3 tokenize: %s\n", err.msg);
            rc = 1;
        } else {
            print_ids(stdout, ids.data, ids.len);
            fputc('\n', stdout);
        }
    } else {
        FILE *f = open_jsonl("tokenize", a.jsonl);
        if (!f) rc = 1;
        char *line = NULL;
        size_t cap = 0;
        long lineno = 0;
        while (f && getline(&line, &cap, f) >= 0) {
            lineno++;
            if (blank(line)) continue;
            json_error_t je;
            json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
            json_t *t = json_object_get(o, "text");
            if (!json_is_string(t)) {
                fprintf(stderr, "dsv3 tokenize: %s:%ld: expected an object with a string \"text\"%s%s\n", a.jsonl,
                        lineno, o ? "" : ": ", o ? "" : je.text);
                json_decref(o);
                rc = 1;
                break;
            }
            ids.len = 0;
            if (dsv3_tokenizer_encode(tok, json_string_value(t), json_string_length(t), flags, &ids, &err)) {
                fprintf(stderr, "dsv3 tokenize: %s:%ld: %s\n", a.jsonl, lineno, err.msg);
                json_decref(o);
                rc = 1;
                break;
            }
            json_decref(o);
            print_ids(stdout, ids.data, ids.len);
            fputc('\n', stdout);
        }
        free(line);
        if (f && f != stdin) fclose(f);
    }
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    return rc;
}

/* Parses "1,2,3" (spaces and brackets allowed). */
static int parse_id_list(const char *s, dsv3_ids *ids) {
    const char *p = s;
    dsv3_error err;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '[' || *p == ']' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) return -1;
        if (dsv3_ids_push(ids, (int32_t)v, &err)) return -1;
        p = end;
        if (*p && *p != ',' && *p != ' ' && *p != ']' && *p != '\n') return -1;
    }
    return 0;
}

int cmd_detokenize(int argc, char **argv) {
    tok_args a;
    if (parse_args("detokenize", argc, argv, &a)) return 2;
    if (a.help || !a.ids) {
        fprintf(a.help ? stdout : stderr,
                "usage: dsv3 detokenize --tokenizer DIR --ids 1,2,3 [--skip-special]\n"
                "  prints the decoded bytes followed by a newline\n");
        return a.help ? 0 : 2;
    }
    dsv3_ids ids = {0};
    if (parse_id_list(a.ids, &ids)) {
        fprintf(stderr, "dsv3 detokenize: --ids: expected comma-separated non-negative integers\n");
        dsv3_ids_free(&ids);
        return 2;
    }
    dsv3_tokenizer *tok = load_tok("detokenize", a.tokenizer);
    if (!tok) {
        dsv3_ids_free(&ids);
        return 1;
    }
    char *text;
    size_t n;
    dsv3_error err = {0};
    int rc = 0;
    if (dsv3_tokenizer_decode(tok, ids.data, ids.len, a.skip_special ? DSV3_TOK_SKIP_SPECIAL : 0, &text, &n, &err)) {
        fprintf(stderr, "dsv3 detokenize: %s\n", err.msg);
        rc = 1;
    } else {
        fwrite(text, 1, n, stdout);
        fputc('\n', stdout);
        free(text);
    }
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    return rc;
}

int cmd_chat_template(int argc, char **argv) {
    tok_args a;
    if (parse_args("chat-template", argc, argv, &a)) return 2;
    if (a.help || !a.jsonl) {
        fprintf(a.help ? stdout : stderr,
                "usage: dsv3 chat-template --tokenizer DIR --jsonl FILE\n"
                "  FILE: one JSON object per line with \"messages\" and optional \"add_generation_prompt\";\n"
                "  prints {\"text\": ..., \"ids\": [...]} per line (FILE '-' = stdin)\n");
        return a.help ? 0 : 2;
    }
    dsv3_tokenizer *tok = load_tok("chat-template", a.tokenizer);
    if (!tok) return 1;
    FILE *f = open_jsonl("chat-template", a.jsonl);
    int rc = f ? 0 : 1;
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    dsv3_ids ids = {0};
    while (f && getline(&line, &cap, f) >= 0) {
        lineno++;
        if (blank(line)) continue;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        json_t *msgs = json_object_get(o, "messages");
        if (!json_is_array(msgs)) {
            fprintf(stderr, "dsv3 chat-template: %s:%ld: expected an object with a \"messages\" array\n", a.jsonl,
                    lineno);
            json_decref(o);
            rc = 1;
            break;
        }
        int agp = json_is_true(json_object_get(o, "add_generation_prompt"));
        char *mj = json_dumps(msgs, JSON_COMPACT);
        char *text = NULL;
        size_t tl = 0;
        dsv3_error err = {0};
        dsv3_status st = mj ? dsv3_tokenizer_apply_chat_template_json(tok, mj, strlen(mj), agp, &text, &tl, &err)
                            : dsv3_fail(&err, DSV3_ERR_NOMEM, "out of memory");
        free(mj);
        ids.len = 0;
        if (!st) st = dsv3_tokenizer_encode(tok, text, tl, 0, &ids, &err);
        if (st) {
            fprintf(stderr, "dsv3 chat-template: %s:%ld: %s\n", a.jsonl, lineno, err.msg);
            free(text);
            json_decref(o);
            rc = 1;
            break;
        }
        json_t *res = json_object();
        json_object_set_new(res, "text", json_stringn(text, tl));
        json_t *arr = json_array();
        for (size_t i = 0; i < ids.len; i++) json_array_append_new(arr, json_integer(ids.data[i]));
        json_object_set_new(res, "ids", arr);
        char *outs = json_dumps(res, JSON_COMPACT);
        if (outs) puts(outs);
        free(outs);
        json_decref(res);
        free(text);
        json_decref(o);
    }
    free(line);
    if (f && f != stdin) fclose(f);
    dsv3_ids_free(&ids);
    dsv3_tokenizer_free(tok);
    return rc;
}
