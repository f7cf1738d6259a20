/* What the tokenizer's two files share: tokenizer.c (vocabulary tables, pre-tokenization, BPE)
 * and tokenizer_json.c (the tokenizer.json reader). Not for other modules. */
#ifndef BN_TOKENIZER_INTERNAL_H
#define BN_TOKENIZER_INTERNAL_H

#include "infer/err.h"
#include "infer/tokenizer.h"

/* Limits that keep hostile files from asking for absurd allocations. */
#define MAX_VOCAB (1 << 21)
#define MAX_MERGES (1 << 23)

/* The GPT-2 pre-tokenizer regex (ByteLevel use_regex); tokenizer_build names a tokenizer
 * built with this very pattern "gpt2". */
extern const char GPT2_PATTERN[];

/* The one constructor behind tokenizer_from_vocab and the JSON loader. pattern: the
 * pre-tokenizer regex; NULL picks it from v->pre. */
Tokenizer *tokenizer_build(const TokenizerVocab *v, const char *pattern, Err *err);
/* Sets the BOS / EOS ids (tokenizer_config.json); -1 keeps the one there is. */
void tokenizer_set_bos_eos(Tokenizer *t, int bos, int eos);

/* A file's string quoted in a one-line message: at most 40 bytes, control characters as '?'. */
typedef struct {
    char s[48];
} Quoted;
static inline Quoted quote(const char *str) {
    Quoted q;
    size_t i = 0;
    for (; str && str[i] && i < 40; i++) {
        unsigned char c = (unsigned char)str[i];
        q.s[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (str && str[i]) q.s[i++] = '.', q.s[i++] = '.', q.s[i++] = '.';
    q.s[i] = 0;
    return q;
}

#endif
