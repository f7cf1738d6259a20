/* Chat template of BitNet-b1.58-2B-4T (research/bitnet.md section 5): the trained format is
 *   <|begin_of_text|>System: {trimmed}<|eot_id|>User: {trimmed}<|eot_id|>Assistant: {trimmed}<|eot_id|>...Assistant: 
 * one "Role: content" piece per message, no newlines between messages, and "Assistant: " (with
 * its trailing space) as the generation prompt. Each "Role: content" piece is tokenized as ONE
 * plain-text piece (so "User: hi" tokenizes as in training, not "User: " + "hi"), and the special
 * tokens (BOS, <|eot_id|>) are inserted as ids here and nowhere else: text a user types that looks
 * like "<|eot_id|>" stays plain text.
 *
 * Because the specials split the token stream, tokenizing message by message gives exactly the
 * tokens of the whole rendered string; the engine uses that to drop the oldest messages when the
 * conversation outgrows the context, and to reuse the KV cache across requests. */
#ifndef BN_CHAT_TEMPLATE_H
#define BN_CHAT_TEMPLATE_H

#include <stdint.h>

#include "infer/err.h"
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
    int gen_len;       /* tokens of the generation prompt ("Assistant: "), at the very end */
} ChatTokens;

/* Renders turns (system turns at the start form the pinned head; a system turn later on is an
 * ordinary message). add_generation_prompt appends "Assistant: ". Returns 0 or -1 with err. */
int chat_template_tokens(const Tokenizer *t, const ChatTurn *turns, int n_turns,
                         int add_generation_prompt, ChatTokens *out, Err *err);
void chat_tokens_free(ChatTokens *ct);

/* Number of tokens when messages [first, n_msgs) are kept (head and generation prompt always). */
int chat_tokens_len_from(const ChatTokens *ct, int first);
/* Writes head + messages [first, n_msgs) + generation prompt to out (room for
 * chat_tokens_len_from(ct, first) ids) and returns the count. */
int chat_tokens_assemble(const ChatTokens *ct, int first, int32_t *out);

/* The rendered text with specials spelled out ("<|begin_of_text|>User: hi<|eot_id|>Assistant: "),
 * for display and tests. malloc'ed; NULL if out of memory. */
char *chat_template_text(const ChatTurn *turns, int n_turns, int add_generation_prompt);

/* "System", "User", "Assistant". */
const char *chat_role_label(ChatRole r);

#endif
