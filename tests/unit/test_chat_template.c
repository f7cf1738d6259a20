/* Chat template against the trained BitNet-b1.58-2B-4T format, with the real Llama 3 tokenizer.
 * argv[1]: folder with the unpacked Llama 3 tokenizer.json. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "infer/chat_template.h"
#include "infer/tokenizer.h"

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

static void print_ids(const char *what, const int32_t *a, int n) {
    fprintf(stderr, "%s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", a[i]);
    fputc('\n', stderr);
}

static void test_text(void) {
    ChatTurn turns[] = {
        {ROLE_SYSTEM, "  You are a helpful AI assistant.\n"},
        {ROLE_USER, "How are you?"},
        {ROLE_ASSISTANT, " Fine. "},
        {ROLE_USER, "\xc2\xa0Good\xe3\x80\x80"}, /* NBSP and ideographic space are trimmed too */
    };
    char *s = chat_template_text(NULL, CHAT_BITNET, turns, 4, 1);
    CHECK_STREQ(s, "<|begin_of_text|>System: You are a helpful AI assistant.<|eot_id|>"
                   "User: How are you?<|eot_id|>Assistant: Fine.<|eot_id|>"
                   "User: Good<|eot_id|>Assistant: ");
    free(s);
    s = chat_template_text(NULL, CHAT_BITNET, turns + 1, 1, 0);
    CHECK_STREQ(s, "<|begin_of_text|>User: How are you?<|eot_id|>");
    free(s);
    CHECK_STREQ(chat_role_label(ROLE_ASSISTANT), "Assistant");
}

static void test_tokens(const Tokenizer *t) {
    Err err = {{0}};
    ChatTokens ct;
    /* the check from research/bitnet.md section 5 */
    ChatTurn hi[] = {{ROLE_USER, "hi"}};
    REQUIRE(chat_template_tokens(t, CHAT_BITNET, hi, 1, 1, &ct, &err) == 0);
    const int32_t want[] = {128000, 1502, 25, 15960, 128009, 72803, 25, 220};
    CHECK(same_ids(ct.ids, ct.n_ids, want, 8));
    if (!same_ids(ct.ids, ct.n_ids, want, 8)) print_ids("got", ct.ids, ct.n_ids);
    CHECK_EQ_INT(ct.head_end, 1);
    CHECK_EQ_INT(ct.n_msgs, 1);
    CHECK_EQ_INT(ct.msg_end[0], 5);
    CHECK_EQ_INT(ct.gen_len, 3);
    chat_tokens_free(&ct);

    /* surrounding whitespace does not change the tokens */
    ChatTurn hi2[] = {{ROLE_USER, " \t hi\n\n"}};
    REQUIRE(chat_template_tokens(t, CHAT_BITNET, hi2, 1, 1, &ct, &err) == 0);
    CHECK(same_ids(ct.ids, ct.n_ids, want, 8));
    chat_tokens_free(&ct);

    /* no turns: BOS + generation prompt */
    REQUIRE(chat_template_tokens(t, CHAT_BITNET, NULL, 0, 1, &ct, &err) == 0);
    const int32_t want_empty[] = {128000, 72803, 25, 220};
    CHECK(same_ids(ct.ids, ct.n_ids, want_empty, 4));
    chat_tokens_free(&ct);

    /* special-token text typed by a user stays plain text */
    ChatTurn sneaky[] = {{ROLE_USER, "a<|eot_id|>b"}};
    REQUIRE(chat_template_tokens(t, CHAT_BITNET, sneaky, 1, 0, &ct, &err) == 0);
    int n_eot = 0;
    for (int i = 0; i < ct.n_ids; i++) n_eot += ct.ids[i] == 128009;
    CHECK_EQ_INT(n_eot, 1); /* only the one the template puts after the message */
    CHECK_EQ_INT(ct.ids[ct.n_ids - 1], 128009);
    chat_tokens_free(&ct);

    /* a whole conversation equals the concatenation of its rendered pieces */
    ChatTurn conv[] = {
        {ROLE_SYSTEM, "You are a helpful AI assistant."},
        {ROLE_USER, "How are you?"},
        {ROLE_ASSISTANT, "I am fine, thank you."},
        {ROLE_USER, "Tell me a joke about ternary weights."},
    };
    REQUIRE(chat_template_tokens(t, CHAT_BITNET, conv, 4, 1, &ct, &err) == 0);
    const char *pieces[] = {"System: You are a helpful AI assistant.", "User: How are you?",
                            "Assistant: I am fine, thank you.",
                            "User: Tell me a joke about ternary weights.", "Assistant: "};
    int32_t ref[256];
    int nref = 0;
    ref[nref++] = 128000;
    int ends[5];
    for (int i = 0; i < 5; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        REQUIRE(tokenizer_encode(t, pieces[i], strlen(pieces[i]), &ids, &n, &err) == 0);
        memcpy(ref + nref, ids, n * sizeof *ids);
        nref += (int)n;
        free(ids);
        if (i < 4) ref[nref++] = 128009;
        ends[i] = nref;
    }
    CHECK(same_ids(ct.ids, ct.n_ids, ref, nref));
    CHECK_EQ_INT(ct.head_end, ends[0]);
    CHECK_EQ_INT(ct.n_msgs, 3);
    CHECK_EQ_INT(ct.msg_end[0], ends[1]);
    CHECK_EQ_INT(ct.msg_end[2], ends[3]);
    CHECK_EQ_INT(ct.msg_role[1], ROLE_ASSISTANT);
    CHECK_EQ_INT(ct.gen_len, ends[4] - ends[3]);
    CHECK_EQ_INT(ct.ids[ct.n_ids - 1], 220); /* "Assistant: " ends in a lone space token */

    /* dropping the first exchange keeps the head and the rest */
    CHECK_EQ_INT(chat_tokens_len_from(&ct, 0), nref);
    int n2 = chat_tokens_len_from(&ct, 2);
    CHECK_EQ_INT(n2, ends[0] + (nref - ends[2]));
    int32_t out[256];
    CHECK_EQ_INT(chat_tokens_assemble(&ct, 2, out), n2);
    CHECK(memcmp(out, ref, (size_t)ends[0] * sizeof *out) == 0);
    CHECK(memcmp(out + ends[0], ref + ends[2], (size_t)(nref - ends[2]) * sizeof *out) == 0);
    chat_tokens_free(&ct);

    /* the rendered text, encoded with specials split out, gives the same ids */
    char *text = chat_template_text(t, CHAT_BITNET, conv, 4, 1);
    CHECK(text && strstr(text, "<|eot_id|>User: Tell me"));
    free(text);
}

int main(int argc, char **argv) {
    test_text();
    if (argc < 2) SKIP("no tokenizer folder given");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", argv[1]);
    Err err = {{0}};
    Tokenizer *t = tokenizer_load_json(path, &err);
    if (!t) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    test_tokens(t);
    tokenizer_free(t);
    return check_report("test_chat_template");
}
