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

/* ---- rendering -------------------------------------------------------------------------------
 * One renderer writes every format to an Out, which either tokenizes (text between specials
 * gathered and encoded as one piece at the next special or message end) or spells the text
 * out (chat_template_text). */

typedef struct {
    const Tokenizer *t;
    int as_text;
    IdBuf ids;       /* as_text == 0 */
    char *pend;      /* text since the last special (tokens) / the whole text (as_text) */
    size_t pn, pcap;
    Err *err;
} Out;

static int out_text(Out *o, const char *s, size_t n) {
    if (o->pn + n + 1 > o->pcap) {
        size_t cap = o->pcap ? o->pcap : 256;
        while (cap < o->pn + n + 1) cap *= 2;
        char *p = realloc(o->pend, cap);
        if (!p) return err_set(o->err, "chat template: out of memory");
        o->pend = p;
        o->pcap = cap;
    }
    memcpy(o->pend + o->pn, s, n);
    o->pn += n;
    o->pend[o->pn] = 0;
    return 0;
}

static int out_str(Out *o, const char *s) { return out_text(o, s, strlen(s)); }

/* Tokenizes the text gathered since the last special. */
static int out_flush(Out *o) {
    if (o->as_text || o->pn == 0) return 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = tokenizer_encode(o->t, o->pend, o->pn, &ids, &n_ids, o->err);
    if (rc == 0)
        rc = n_ids > 0x3fffffff ? err_set(o->err, "chat template: message too long")
                                : idbuf_push(&o->ids, ids, (int)n_ids, o->err);
    free(ids);
    o->pn = 0;
    return rc;
}

/* A special token: id when known (>= 0), else looked up by name; in text, its name. */
static int out_special(Out *o, int id, const char *name) {
    if (o->as_text) {
        size_t len = 0;
        const char *b = id >= 0 && o->t ? tokenizer_token_bytes(o->t, id, &len) : NULL;
        return b ? out_text(o, b, len) : out_str(o, name);
    }
    if (id < 0) id = tokenizer_find(o->t, name);
    if (id < 0) return err_set(o->err, "chat template: the tokenizer has no %s token", name);
    int32_t v = id;
    return out_flush(o) || idbuf_push(&o->ids, &v, 1, o->err) ? -1 : 0;
}

static int tok_id(const Tokenizer *t, int id) { return t ? id : -1; }

static const char *role_lower(ChatRole r) {
    return r == ROLE_SYSTEM ? "system" : r == ROLE_ASSISTANT ? "assistant" : "user";
}

/* The leading BOS, where the format's template writes one. Falcon3's published template
 * (Falcon3-*-Instruct and the -1.58bit copies made from it) never writes bos_token: its
 * conversation starts with the first role marker even when a GGUF names a BOS id (bitnet.cpp's
 * converter takes config.json's bos_token_id, 11 = <|endoftext|> for the 3B/7B models). */
static int render_bos(Out *o, ChatFormat f) {
    if (f == CHAT_FALCON3) return 0;
    if (!o->t) return out_str(o, "<|begin_of_text|>");
    int bos = tokenizer_bos(o->t);
    return bos >= 0 ? out_special(o, bos, "<bos>") : 0;
}

/* BitNet's end of message: <|eot_id|>, or the eos of a tokenizer without one. */
static int bitnet_eot(const Tokenizer *t) {
    if (!t) return -1;
    int eot = tokenizer_eot(t);
    return eot >= 0 ? eot : tokenizer_eos(t);
}

static int render_msg(Out *o, ChatFormat f, ChatRole r, const char *text, int last) {
    const char *s;
    size_t len;
    const char *label = chat_role_label(r);
    switch (f) {
    case CHAT_BITNET:
        trim(text, &s, &len);
        if (out_str(o, label) || out_str(o, ": ") || out_text(o, s, len)) return -1;
        if (o->t && bitnet_eot(o->t) < 0)
            return err_set(o->err, "chat template: the tokenizer has no <|eot_id|> or eos token");
        return out_special(o, bitnet_eot(o->t), "<|eot_id|>");
    case CHAT_LLAMA3:
        trim(text, &s, &len);
        return out_special(o, -1, "<|start_header_id|>") || out_str(o, role_lower(r)) ||
                       out_special(o, -1, "<|end_header_id|>") || out_str(o, "\n\n") ||
                       out_text(o, s, len) || out_special(o, -1, "<|eot_id|>") ? -1 : 0;
    case CHAT_FALCON3: {
        const char *mark = r == ROLE_SYSTEM ? "<|system|>" : r == ROLE_ASSISTANT ? "<|assistant|>" : "<|user|>";
        text = text ? text : "";
        if (out_special(o, -1, mark) || out_str(o, "\n") || out_str(o, text)) return -1;
        if (r != ROLE_ASSISTANT) return out_str(o, "\n");
        if (o->t && tokenizer_eos(o->t) < 0)
            return err_set(o->err, "chat template: the tokenizer has no eos token");
        if (out_special(o, tok_id(o->t, o->t ? tokenizer_eos(o->t) : -1), "<|endoftext|>")) return -1;
        return last ? 0 : out_str(o, "\n");
    }
    case CHAT_CHATML:
        return out_special(o, -1, "<|im_start|>") || out_str(o, role_lower(r)) || out_str(o, "\n") ||
                       out_str(o, text ? text : "") || out_special(o, -1, "<|im_end|>") ||
                       out_str(o, "\n") ? -1 : 0;
    case CHAT_PLAIN:
        trim(text, &s, &len);
        return out_str(o, label) || out_str(o, ": ") || out_text(o, s, len) || out_str(o, "\n\n") ? -1 : 0;
    }
    return err_set(o->err, "chat template: unknown format %d", (int)f);
}

static int render_gen(Out *o, ChatFormat f) {
    switch (f) {
    case CHAT_BITNET: return out_str(o, "Assistant: ");
    case CHAT_LLAMA3:
        return out_special(o, -1, "<|start_header_id|>") || out_str(o, "assistant") ||
                       out_special(o, -1, "<|end_header_id|>") || out_str(o, "\n\n") ? -1 : 0;
    case CHAT_FALCON3: return out_special(o, -1, "<|assistant|>") || out_str(o, "\n") ? -1 : 0;
    case CHAT_CHATML: return out_special(o, -1, "<|im_start|>") || out_str(o, "assistant\n") ? -1 : 0;
    case CHAT_PLAIN: return out_str(o, "Assistant:");
    }
    return err_set(o->err, "chat template: unknown format %d", (int)f);
}

int chat_template_tokens(const Tokenizer *t, ChatFormat f, const ChatTurn *turns, int n_turns,
                         int add_generation_prompt, ChatTokens *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (!t) return err_set(err, "chat template: the model has no tokenizer");
    if (n_turns < 0 || (n_turns > 0 && !turns)) return err_set(err, "chat template: no turns");
    Out o = {t, 0, {0}, NULL, 0, 0, err};
    int n_head = 0;
    while (n_head < n_turns && turns[n_head].role == ROLE_SYSTEM) n_head++;
    out->n_msgs = n_turns - n_head;
    out->msg_end = malloc((size_t)(out->n_msgs > 0 ? out->n_msgs : 1) * sizeof *out->msg_end);
    out->msg_role = malloc((size_t)(out->n_msgs > 0 ? out->n_msgs : 1) * sizeof *out->msg_role);
    if (!out->msg_end || !out->msg_role) {
        err_set(err, "chat template: out of memory");
        goto fail;
    }
    if (render_bos(&o, f) || out_flush(&o)) goto fail;
    out->head_end = o.ids.n;
    for (int i = 0; i < n_turns; i++) {
        if (render_msg(&o, f, turns[i].role, turns[i].text, i == n_turns - 1) || out_flush(&o))
            goto fail;
        if (i < n_head) {
            out->head_end = o.ids.n;
        } else {
            out->msg_end[i - n_head] = o.ids.n;
            out->msg_role[i - n_head] = turns[i].role;
        }
    }
    if (add_generation_prompt) {
        int before = o.ids.n;
        if (render_gen(&o, f) || out_flush(&o)) goto fail;
        out->gen_len = o.ids.n - before;
    }
    free(o.pend);
    out->ids = o.ids.ids;
    out->n_ids = o.ids.n;
    return 0;
fail:
    free(o.pend);
    free(o.ids.ids);
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

char *chat_template_text(const Tokenizer *t, ChatFormat f, const ChatTurn *turns, int n_turns,
                         int add_generation_prompt) {
    Err err = {{0}};
    Out o = {t, 1, {0}, NULL, 0, 0, &err};
    if (out_str(&o, "") || render_bos(&o, f)) goto fail;
    for (int i = 0; i < n_turns; i++)
        if (render_msg(&o, f, turns[i].role, turns[i].text, i == n_turns - 1)) goto fail;
    if (add_generation_prompt && render_gen(&o, f)) goto fail;
    return o.pend;
fail:
    free(o.pend);
    return NULL;
}

/* ---- which format ---------------------------------------------------------------------------- */

const char *chat_format_name(ChatFormat f) {
    switch (f) {
    case CHAT_BITNET: return "bitnet";
    case CHAT_LLAMA3: return "llama3";
    case CHAT_FALCON3: return "falcon3";
    case CHAT_CHATML: return "chatml";
    case CHAT_PLAIN: return "plain";
    }
    return "unknown";
}

static int has(const Tokenizer *t, const char *name) { return t && tokenizer_find(t, name) >= 0; }

int chat_format_end_token(const Tokenizer *t, ChatFormat f) {
    if (!t) return -1;
    switch (f) {
    case CHAT_BITNET: return bitnet_eot(t);
    case CHAT_LLAMA3: return tokenizer_find(t, "<|eot_id|>");
    case CHAT_CHATML: return tokenizer_find(t, "<|im_end|>");
    case CHAT_FALCON3:
    case CHAT_PLAIN: return tokenizer_eos(t);
    }
    return -1;
}

ChatFormat chat_format_detect(const char *tmpl, const Tokenizer *t, FfnAct act, char *note,
                              size_t cap) {
    if (cap) note[0] = 0;
    const char *missing = NULL;
    if (tmpl && strstr(tmpl, "<|start_header_id|>")) {
        if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>") && has(t, "<|eot_id|>"))
            return CHAT_LLAMA3;
        missing = "Llama 3 header";
    } else if (tmpl && strstr(tmpl, "<|im_start|>") && !strstr(tmpl, "<|im_sep|>")) {
        /* (Phi-4 writes <|im_start|>role<|im_sep|>: not ChatML's newline) */
        if (has(t, "<|im_start|>") && has(t, "<|im_end|>")) return CHAT_CHATML;
        missing = "ChatML";
    } else if (tmpl && strstr(tmpl, "<|assistant|>") && strstr(tmpl, "eos_token") &&
               !strstr(tmpl, "<|end|>") && !strstr(tmpl, "[gMASK]")) {
        /* Falcon3's: the role markers, and an assistant turn closed by eos_token. Phi-3 closes
         * every turn with <|end|> and ChatGLM / GLM-Edge close none, so their templates, which
         * use the same markers, are not taken for it. */
        if (has(t, "<|system|>") && has(t, "<|user|>") && has(t, "<|assistant|>") &&
            tokenizer_eos(t) >= 0)
            return CHAT_FALCON3;
        missing = "Falcon3";
    } else if (tmpl && ((strstr(tmpl, "capitalize") && strstr(tmpl, "<|eot_id|>")) ||
                        strstr(tmpl, "BITNETAssistant"))) {
        /* 2B-4T's trained "Role: text<|eot_id|>" (the template bitnet.cpp's converter writes
         * into the GGUF, "Human: ... BITNETAssistant:", is not what it was trained on) */
        if (bitnet_eot(t) >= 0) return CHAT_BITNET;
        missing = "BitNet";
    }
    const ChatFormat fb = act == FFN_RELU2 && bitnet_eot(t) >= 0 ? CHAT_BITNET : CHAT_PLAIN;
    const char *fbname = fb == CHAT_BITNET ? "BitNet's \"User: ...<|eot_id|>Assistant:\""
                                           : "the plain \"User: ... Assistant:\"";
    if (missing)
        snprintf(note, cap, "the chat template is %s style but the tokenizer lacks its special "
                 "tokens; using %s format", missing, fbname);
    else if (tmpl)
        snprintf(note, cap, "the model's chat template is not one bitnet-chat knows; using %s "
                 "format", fbname);
    else if (fb == CHAT_PLAIN)
        snprintf(note, cap, "the model has no chat template (a base model); using %s format",
                 fbname);
    return fb;
}
