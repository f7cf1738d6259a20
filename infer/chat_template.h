/* Chat templates: a conversation rendered to tokens in the format the model was trained on
 * (ChatFormat, infer/model.h). The formats, with <x> a special token inserted by id:
 *   CHAT_BITNET  (BitNet-b1.58-2B-4T, research/bitnet.md section 5)
 *       <bos>System: {trimmed}<|eot_id|>User: {trimmed}<|eot_id|>Assistant: {trimmed}<|eot_id|>...Assistant: 
 *       one "Role: content" piece per message, no newlines, "Assistant: " (with its space) as
 *       the generation prompt;
 *   CHAT_LLAMA3  (Llama3-8B-1.58: Llama 3 Instruct's headers)
 *       <bos><|start_header_id|>role<|end_header_id|>\n\n{trimmed}<|eot_id|>...
 *       <|start_header_id|>assistant<|end_header_id|>\n\n
 *   CHAT_FALCON3 (Falcon3-*-1.58bit)
 *       <|system|>\n{text}\n<|user|>\n{text}\n<|assistant|>\n{text}<eos>\n ... <|assistant|>\n
 *       (no newline after the eos of a conversation's last message; no BOS, even where the
 *       tokenizer names one: the published template writes none);
 *   CHAT_CHATML  (the form reported for Falcon-E)
 *       <bos><|im_start|>role\n{text}<|im_end|>\n ... <|im_start|>assistant\n
 *   CHAT_PLAIN   (no usable template: base models such as 1bitLLM's)
 *       <bos>System: {trimmed}\n\nUser: {trimmed}\n\nAssistant:
 * <bos> only where the tokenizer has one. The text between two specials is tokenized as ONE
 * plain-text piece, as a tokenizer given the whole rendered string would (so "User: hi" comes
 * out as in training, not "User: " + "hi"), and specials are inserted as ids here and nowhere
 * else: text a user types that looks like "<|eot_id|>" stays plain text.
 *
 * Each message ends at a special token or at a point where the plain-text pieces are cut
 * anyway (CHAT_PLAIN: after "\n\n"), so tokenizing message by message gives the tokens of the
 * whole rendered string; the engine uses that to drop the oldest messages when the
 * conversation outgrows the context, and to reuse the KV cache across requests. */
#ifndef BN_CHAT_TEMPLATE_H
#define BN_CHAT_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "infer/err.h"
#include "infer/model.h"
#include "infer/tokenizer.h"

/* One message of a conversation, as the engine receives it and the template renders it. */
typedef enum { ROLE_SYSTEM = 0, ROLE_USER, ROLE_ASSISTANT } ChatRole;

typedef struct {
    ChatRole role;
    const char *text;
} ChatTurn;

/* A conversation rendered to tokens, kept in pieces. ids = head | msg 0 | msg 1 | ... | gen. */
typedef struct {
    int32_t *ids;      /* all tokens, malloc'ed */
    int n_ids;
    int head_end;      /* end of BOS + the leading system message(s): always kept */
    int n_msgs;        /* messages after the leading system ones */
    int *msg_end;      /* [n_msgs] end offset of each message's tokens */
    ChatRole *msg_role;/* [n_msgs] */
    int gen_len;       /* tokens of the generation prompt ("Assistant: "...), at the very end */
} ChatTokens;

/* Renders turns in format f (system turns at the start form the pinned head; a system turn
 * later on is an ordinary message). add_generation_prompt appends the assistant's opening.
 * Returns 0 or -1 with err (also when the tokenizer lacks a special the format needs). */
int chat_template_tokens(const Tokenizer *t, ChatFormat f, const ChatTurn *turns, int n_turns,
                         int add_generation_prompt, ChatTokens *out, Err *err);
void chat_tokens_free(ChatTokens *ct);

/* Number of tokens when messages [first, n_msgs) are kept (head and generation prompt always). */
int chat_tokens_len_from(const ChatTokens *ct, int first);
/* Writes head + messages [first, n_msgs) + generation prompt to out (room for
 * chat_tokens_len_from(ct, first) ids) and returns the count. */
int chat_tokens_assemble(const ChatTokens *ct, int first, int32_t *out);

/* The rendered text with specials spelled out ("<|begin_of_text|>User: hi<|eot_id|>Assistant: "),
 * for display and tests; t (may be NULL) names the bos and eos tokens, else the Llama 3 names
 * are used. malloc'ed; NULL if out of memory or f is unknown. */
char *chat_template_text(const Tokenizer *t, ChatFormat f, const ChatTurn *turns, int n_turns,
                         int add_generation_prompt);

/* The format a model's template text asks for, recognised by the special tokens it uses (and
 * only when the tokenizer has them). Templates that share markers with a known format but
 * close turns differently are not taken for it: Phi-3 (<|end|>) and ChatGLM / GLM-Edge (no
 * end of turn) beside Falcon3, Phi-4 (<|im_sep|>) beside ChatML. tmpl may be NULL (the file has no template). A model
 * with no template, or one not recognised, gets CHAT_BITNET when it is a BitNet 2B-4T-style
 * model (relu2; what it was trained on) and CHAT_PLAIN otherwise; when such a fallback
 * happens, note (cap bytes) gets a sentence saying so, else it is set to "". */
ChatFormat chat_format_detect(const char *tmpl, const Tokenizer *t, FfnAct act, char *note,
                              size_t cap);
/* "bitnet", "llama3", "falcon3", "chatml", "plain". */
const char *chat_format_name(ChatFormat f);
/* The token that ends an assistant turn in format f (<|eot_id|>, eos, <|im_end|>), -1 if the
 * tokenizer has none: a stop token for generation. */
int chat_format_end_token(const Tokenizer *t, ChatFormat f);

/* "System", "User", "Assistant". */
const char *chat_role_label(ChatRole r);

#endif
