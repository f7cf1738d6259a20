/* Chat template: see chat_template.h for the format and why messages are tokenized apart. */
#include "infer/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *chat_role_label(ChatRole r) {
    switch (r) {
    case ROLE_SYSTEM: return "System";
    case ROLE_USER: return "User";
    case ROLE_ASSISTANT: return "Assistant";
    }
    return "User";
}

/* Length of the whitespace character at s (0 if none). The trained template trims with Jinja's
 * `trim`, i.e. Python's str.strip(): ASCII whitespace, \x1c-\x1f, and Unicode spaces. */
static size_t space_len(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c == 0xc2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (n >= 3) {
        unsigned cp = 0;
        if ((c & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80)
            cp = ((c & 0x0f) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
        if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
            cp == 0x202f || cp == 0x205f || cp == 0x3000)
            return 3;
    }
    return 0;
}

/* Is the tail of s[0..n) a whitespace character? Returns its length (0 if not). */
static size_t space_len_back(const unsigned char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        size_t l = space_len(s + n - k, k);
        if (l == k) return k;
    }
    return 0;
}

static void trim(const char *text, const char **start, size_t *len) {
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    size_t n = strlen((const char *)s), l;
    while ((l = space_len(s, n)) > 0) s += l, n -= l;
    while ((l = space_len_back(s, n)) > 0) n -= l;
    *start = (const char *)s;
    *len = n;
}

typedef struct {
    int32_t *ids;
    int n, cap;
} IdBuf;

static int idbuf_push(IdBuf *b, const int32_t *ids, int n, Err *err) {
    if (n > 0x3fffffff - b->n) return err_set(err, "chat template: conversation too long");
    if (b->n + n > b->cap) {
        int cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap = cap > 0x1fffffff ? 0x3fffffff : cap * 2;
        int32_t *p = realloc(b->ids, (size_t)cap * sizeof *p);
        if (!p) return err_set(err, "chat template: out of memory");
        b->ids = p;
        b->cap = cap;
    }
    memcpy(b->ids + b->n, ids, (size_t)n * sizeof *ids);
    b->n += n;
    return 0;
}

/* "Role: content" as one plain-text piece. */
static int push_text(IdBuf *b, const Tokenizer *t, const char *label, const char *content,
                     size_t content_len, Err *err) {
    size_t ll = strlen(label);
    char *buf = malloc(ll + 2 + content_len + 1);
    if (!buf) return err_set(err, "chat template: out of memory");
    memcpy(buf, label, ll);
    memcpy(buf + ll, ": ", 2);
    memcpy(buf + ll + 2, content, content_len);
    buf[ll + 2 + content_len] = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = tokenizer_encode(t, buf, ll + 2 + content_len, &ids, &n_ids, err);
    free(buf);
    if (rc < 0) return -1;
    rc = n_ids > 0x3fffffff ? err_set(err, "chat template: message too long")
                            : idbuf_push(b, ids, (int)n_ids, err);
    free(ids);
    return rc;
}

int chat_template_tokens(const Tokenizer *t, const ChatTurn *turns, int n_turns,
                         int add_generation_prompt, ChatTokens *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (!t) return err_set(err, "chat template: the model has no tokenizer");
    if (n_turns < 0 || (n_turns > 0 && !turns)) return err_set(err, "chat template: no turns");
    int32_t eot = tokenizer_eot(t);
    if (eot < 0) eot = tokenizer_eos(t);
    if (eot < 0) return err_set(err, "chat template: the tokenizer has no <|eot_id|> or eos token");
    int32_t bos = tokenizer_bos(t);

    IdBuf b = {0};
    int n_head = 0;
    while (n_head < n_turns && turns[n_head].role == ROLE_SYSTEM) n_head++;
    out->n_msgs = n_turns - n_head;
    out->msg_end = malloc((size_t)(out->n_msgs > 0 ? out->n_msgs : 1) * sizeof *out->msg_end);
    out->msg_role = malloc((size_t)(out->n_msgs > 0 ? out->n_msgs : 1) * sizeof *out->msg_role);
    if (!out->msg_end || !out->msg_role) {
        err_set(err, "chat template: out of memory");
        goto fail;
    }
    if (bos >= 0 && idbuf_push(&b, &bos, 1, err)) goto fail;
    for (int i = 0; i < n_turns; i++) {
        const char *s;
        size_t len;
        trim(turns[i].text, &s, &len);
        if (push_text(&b, t, chat_role_label(turns[i].role), s, len, err)) goto fail;
        if (idbuf_push(&b, &eot, 1, err)) goto fail;
        if (i < n_head) {
            out->head_end = b.n;
        } else {
            out->msg_end[i - n_head] = b.n;
            out->msg_role[i - n_head] = turns[i].role;
        }
    }
    if (n_head == 0) out->head_end = bos >= 0 ? 1 : 0;
    if (add_generation_prompt) {
        int before = b.n;
        if (push_text(&b, t, "Assistant", "", 0, err)) goto fail;
        out->gen_len = b.n - before;
    }
    out->ids = b.ids;
    out->n_ids = b.n;
    return 0;
fail:
    free(b.ids);
    chat_tokens_free(out);
    return -1;
}

void chat_tokens_free(ChatTokens *ct) {
    if (!ct) return;
    free(ct->ids);
    free(ct->msg_end);
    free(ct->msg_role);
    memset(ct, 0, sizeof *ct);
}

static int msg_start(const ChatTokens *ct, int i) { return i == 0 ? ct->head_end : ct->msg_end[i - 1]; }

int chat_tokens_len_from(const ChatTokens *ct, int first) {
    if (first < 0) first = 0;
    if (first > ct->n_msgs) first = ct->n_msgs;
    return ct->head_end + (ct->n_ids - ct->gen_len - msg_start(ct, first)) + ct->gen_len;
}

int chat_tokens_assemble(const ChatTokens *ct, int first, int32_t *out) {
    if (first < 0) first = 0;
    if (first > ct->n_msgs) first = ct->n_msgs;
    int n = 0;
    memcpy(out, ct->ids, (size_t)ct->head_end * sizeof *out);
    n += ct->head_end;
    int from = msg_start(ct, first);
    memcpy(out + n, ct->ids + from, (size_t)(ct->n_ids - from) * sizeof *out);
    n += ct->n_ids - from;
    return n;
}

char *chat_template_text(const ChatTurn *turns, int n_turns, int add_generation_prompt) {
    static const char bos[] = "<|begin_of_text|>", eot[] = "<|eot_id|>";
    size_t cap = sizeof bos + 16;
    for (int i = 0; i < n_turns; i++) cap += strlen(turns[i].text ? turns[i].text : "") + 32;
    char *out = malloc(cap), *w = out;
    if (!out) return NULL;
    w += sprintf(w, "%s", bos);
    for (int i = 0; i < n_turns; i++) {
        const char *s;
        size_t len;
        trim(turns[i].text, &s, &len);
        w += sprintf(w, "%s: ", chat_role_label(turns[i].role));
        memcpy(w, s, len);
        w += len;
        w += sprintf(w, "%s", eot);
    }
    if (add_generation_prompt) w += sprintf(w, "Assistant: ");
    *w = 0;
    return out;
}
