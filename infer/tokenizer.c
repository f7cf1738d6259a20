/* Byte-level BPE tokenizer (Llama 3 family).
 *
 * Internally every token is kept as the raw bytes it stands for; the GPT-2 "byte to unicode"
 * spelling of the files (tokenizer.json, tokenizer.ggml.tokens) is decoded once at load and kept
 * only to hand the vocabulary back (tokenizer_vocab).
 *
 * Encoding = pre-tokenization by the Llama 3 regex, then BPE inside each piece:
 *   - pre-tokenization: a hand-written matcher for the regex on ASCII text; as soon as it would
 *     have to look at a non-ASCII byte it hands that one match to PCRE2 (UTF + UCP, JIT), so
 *     Unicode classes are always PCRE2's. Invalid UTF-8 never matches (PCRE2_MATCH_INVALID_UTF);
 *     the bytes between matches become pieces of their own and are encoded as byte tokens, so
 *     they round-trip.
 *   - BPE: a piece that is itself a token is taken whole (ignore_merges, Llama 3); otherwise
 *     merges are applied lowest rank first (leftmost on ties) using a binary heap over a linked
 *     list of symbols: O(n log n) in the piece length.
 * tokenizer_encode_reference does the same with PCRE2 only and O(n^2) merging; tests compare.
 * The tokenizer.json reader is tokenizer_json.c; UTF-8 rules come from utf8.c. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "infer/tokenizer.h"
#include "infer/tokenizer_spm.h"

#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/tokenizer_internal.h"
#include "infer/utf8.h"

/* A limit that keeps hostile files from asking for absurd allocations (with MAX_VOCAB and
 * MAX_MERGES of tokenizer_internal.h). */
#define MAX_TOKEN_BYTES 65536

static const char LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- GPT-2 byte <-> unicode spelling ------------------------------------------------------- */

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes map, in order, to
 * U+0100.. so that every byte has a visible, non-space code point. */
static int byte_is_self(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}
#define U2B_SIZE 324
typedef struct {
    uint16_t b2u[256];
    int16_t u2b[U2B_SIZE];
} ByteMap;

static void bytemap_init(ByteMap *m) {
    for (int i = 0; i < U2B_SIZE; i++) m->u2b[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int cp = byte_is_self(b) ? b : 256 + n++;
        m->b2u[b] = (uint16_t)cp;
        m->u2b[cp] = (int16_t)b;
    }
}

/* File spelling -> raw bytes. Returns the byte count, or -1 if `s` is not in the byte-level
 * spelling (then the caller keeps the text as it is). out needs n bytes. */
static long bytelevel_decode(const ByteMap *m, const char *s, size_t n, unsigned char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        int l = utf8_decode(s + i, n - i, &cp);
        if (!l || cp >= U2B_SIZE || m->u2b[cp] < 0) return -1;
        out[o++] = (unsigned char)m->u2b[cp];
        i += (size_t)l;
    }
    return (long)o;
}

/* ---- hashing -------------------------------------------------------------------------------- */

static inline uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint32_t table_size_for(size_t n) {
    uint32_t s = 16;
    while (s < n * 2 + 16) s <<= 1;
    return s;
}

/* ---- the tokenizer ---------------------------------------------------------------------------- */

typedef struct {
    uint32_t id_plus1; /* 0: empty */
    uint32_t hash32;
} TokSlot;

typedef struct {
    uint64_t key;      /* left << 32 | right; UINT64_MAX: empty */
    int32_t rank;
    int32_t merged;
} MergeSlot;

struct Tokenizer {
    int n_vocab;
    uint32_t *tok_off, *tok_len; /* raw bytes of token i: bytes + tok_off[i] */
    unsigned char *bytes;
    int32_t *types;
    TokSlot *map; /* raw bytes -> id (ordinary tokens only, never CONTROL) */
    uint32_t map_mask;
    MergeSlot *merges;
    uint32_t merge_mask;
    int n_merge_pairs;
    int32_t byte_id[256];
    int bos, eos, eot;
    int ignore_merges;
    /* Pre-tokenizer. */
    pcre2_code *re;
    int re_jit;
    int fast_ascii; /* the Llama 3 pattern: the ASCII matcher below applies */
    /* The vocabulary in file form, for tokenizer_vocab. */
    char *file_arena;
    const char **file_tokens;
    size_t *file_token_lens;
    const char **file_merges;
    size_t *file_merge_lens;
    char pre[32];
    TokenizerVocab view;
    SpmModel *spm; /* a SentencePiece model (tokenizer_spm.c) answers instead, when set */
};

static int map_find(const Tokenizer *t, const unsigned char *s, size_t n) {
    uint64_t h = hash_bytes(s, n);
    uint32_t h32 = (uint32_t)(h >> 32), i = (uint32_t)h & t->map_mask;
    for (;;) {
        const TokSlot *e = &t->map[i];
        if (!e->id_plus1) return -1;
        if (e->hash32 == h32) {
            uint32_t id = e->id_plus1 - 1;
            if (t->tok_len[id] == n && memcmp(t->bytes + t->tok_off[id], s, n) == 0) return (int)id;
        }
        i = (i + 1) & t->map_mask;
    }
}

/* Inserts id unless an equal byte string is already present (the first id wins). */
static void map_insert(Tokenizer *t, int id) {
    const unsigned char *s = t->bytes + t->tok_off[id];
    size_t n = t->tok_len[id];
    uint64_t h = hash_bytes(s, n);
    uint32_t h32 = (uint32_t)(h >> 32), i = (uint32_t)h & t->map_mask;
    for (;;) {
        TokSlot *e = &t->map[i];
        if (!e->id_plus1) {
            e->id_plus1 = (uint32_t)id + 1;
            e->hash32 = h32;
            return;
        }
        if (e->hash32 == h32) {
            uint32_t o = e->id_plus1 - 1;
            if (t->tok_len[o] == n && memcmp(t->bytes + t->tok_off[o], s, n) == 0) return;
        }
        i = (i + 1) & t->map_mask;
    }
}

static inline const MergeSlot *merge_find(const Tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t i = (uint32_t)hash_u64(key) & t->merge_mask;
    for (;;) {
        const MergeSlot *e = &t->merges[i];
        if (e->key == key) return e;
        if (e->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* Returns 1 if inserted, 0 if the pair was already there (the lower rank stays). */
static int merge_insert(Tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t i = (uint32_t)hash_u64(key) & t->merge_mask;
    for (;;) {
        MergeSlot *e = &t->merges[i];
        if (e->key == key) return 0;
        if (e->key == UINT64_MAX) {
            e->key = key;
            e->rank = rank;
            e->merged = merged;
            return 1;
        }
        i = (i + 1) & t->merge_mask;
    }
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    spm_free(t->spm);
    if (t->re) pcre2_code_free(t->re);
    free(t->tok_off);
    free(t->tok_len);
    free(t->bytes);
    free(t->types);
    free(t->map);
    free(t->merges);
    free(t->file_arena);
    free(t->file_tokens);
    free(t->file_token_lens);
    free(t->file_merges);
    free(t->file_merge_lens);
    free(t);
}

static int compile_pattern(Tokenizer *t, const char *pattern, Err *err) {
    int ec;
    PCRE2_SIZE eoff;
    t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eoff, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return err_set(err, "pre-tokenizer regex: %s at offset %zu", (const char *)msg,
                       (size_t)eoff);
    }
    t->re_jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    t->fast_ascii = strcmp(pattern, LLAMA3_PATTERN) == 0;
    return 0;
}

static size_t str_len(const char *const *strs, const size_t *lens, int i) {
    return lens ? lens[i] : strlen(strs[i]);
}

/* Copies s[0..l) and a NUL to arena + *off, advances *off, returns the copy. */
static const char *arena_put(char *arena, size_t *off, const char *s, size_t l) {
    char *d = arena + *off;
    memcpy(d, s, l);
    d[l] = 0;
    *off += l + 1;
    return d;
}

Tokenizer *tokenizer_build(const TokenizerVocab *v, const char *pattern, Err *err) {
    if (!v || !v->tokens || v->n_tokens <= 0)
        return err_set(err, "tokenizer: empty vocabulary"), NULL;
    if (v->n_tokens > MAX_VOCAB)
        return err_set(err, "tokenizer: %d tokens is more than the limit of %d", v->n_tokens,
                       MAX_VOCAB), NULL;
    if (v->n_merges < 0 || v->n_merges > MAX_MERGES || (v->n_merges > 0 && !v->merges))
        return err_set(err, "tokenizer: bad merge count %d", v->n_merges), NULL;
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, "tokenizer: out of memory"), NULL;
    int n = v->n_tokens;
    t->n_vocab = n;
    ByteMap bm;
    bytemap_init(&bm);

    /* File-form copies and raw bytes. */
    size_t file_total = 0;
    for (int i = 0; i < n; i++) {
        if (!v->tokens[i]) {
            err_set(err, "tokenizer: token %d is missing", i);
            goto fail;
        }
        size_t l = str_len(v->tokens, v->token_lens, i);
        if (l > MAX_TOKEN_BYTES) {
            err_set(err, "tokenizer: token %d is %zu bytes long (limit %d)", i, l, MAX_TOKEN_BYTES);
            goto fail;
        }
        file_total += l + 1;
    }
    for (int i = 0; i < v->n_merges; i++) {
        if (!v->merges[i]) {
            err_set(err, "tokenizer: merge %d is missing", i);
            goto fail;
        }
        size_t l = str_len(v->merges, v->merge_lens, i);
        if (l > 2 * MAX_TOKEN_BYTES + 1) {
            err_set(err, "tokenizer: merge %d is %zu bytes long", i, l);
            goto fail;
        }
        file_total += l + 1;
    }
    t->file_arena = malloc(file_total ? file_total : 1);
    t->file_tokens = malloc(sizeof *t->file_tokens * (size_t)n);
    t->file_token_lens = malloc(sizeof *t->file_token_lens * (size_t)n);
    t->file_merges = malloc(sizeof *t->file_merges * (size_t)(v->n_merges + 1));
    t->file_merge_lens = malloc(sizeof *t->file_merge_lens * (size_t)(v->n_merges + 1));
    t->tok_off = malloc(sizeof *t->tok_off * (size_t)n);
    t->tok_len = malloc(sizeof *t->tok_len * (size_t)n);
    t->types = malloc(sizeof *t->types * (size_t)n);
    t->bytes = malloc(file_total ? file_total : 1); /* raw bytes are never longer than the text */
    if (!t->file_arena || !t->file_tokens || !t->file_token_lens || !t->file_merges ||
        !t->file_merge_lens || !t->tok_off || !t->tok_len || !t->types || !t->bytes) {
        err_set(err, "tokenizer: out of memory");
        goto fail;
    }
    size_t fo = 0, bo = 0;
    for (int i = 0; i < n; i++) {
        size_t l = str_len(v->tokens, v->token_lens, i);
        t->file_tokens[i] = arena_put(t->file_arena, &fo, v->tokens[i], l);
        t->file_token_lens[i] = l;
        long rl = bytelevel_decode(&bm, v->tokens[i], l, t->bytes + bo);
        if (rl < 0) { /* not byte-level spelled (e.g. a special like "<|x y|>"): keep the text */
            memcpy(t->bytes + bo, v->tokens[i], l);
            rl = (long)l;
        }
        t->tok_off[i] = (uint32_t)bo;
        t->tok_len[i] = (uint32_t)rl;
        bo += (size_t)rl;
    }
    for (int i = 0; i < v->n_merges; i++) {
        size_t l = str_len(v->merges, v->merge_lens, i);
        t->file_merges[i] = arena_put(t->file_arena, &fo, v->merges[i], l);
        t->file_merge_lens[i] = l;
    }

    /* Token types. Without them, ids from the first known special onwards are CONTROL. */
    int first_special = -1;
    if (!v->token_types) {
        int cand[3] = {v->bos_id, v->eos_id, v->eot_id};
        for (int k = 0; k < 3; k++)
            if (cand[k] >= 0 && cand[k] < n && (first_special < 0 || cand[k] < first_special))
                first_special = cand[k];
        if (first_special < 0)
            for (int i = 0; i < n; i++)
                if (t->file_token_lens[i] == 17 && !memcmp(t->file_tokens[i], "<|begin_of_text|>", 17)) {
                    first_special = i;
                    break;
                }
    }
    for (int i = 0; i < n; i++) {
        int ty = v->token_types ? v->token_types[i]
                                : (first_special >= 0 && i >= first_special ? TOKTYPE_CONTROL
                                                                            : TOKTYPE_NORMAL);
        t->types[i] = ty;
    }

    /* Raw bytes -> id, for ordinary tokens only: specials are never produced from text. */
    t->map_mask = table_size_for((size_t)n) - 1;
    t->map = calloc((size_t)t->map_mask + 1, sizeof *t->map);
    if (!t->map) {
        err_set(err, "tokenizer: out of memory");
        goto fail;
    }
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (int i = 0; i < n; i++) {
        int ty = t->types[i];
        if (ty == TOKTYPE_CONTROL || ty == TOKTYPE_UNKNOWN || ty == TOKTYPE_UNUSED) continue;
        if (t->tok_len[i] == 0) continue;
        map_insert(t, i);
    }
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_id[b] = map_find(t, &c, 1);
    }

    /* Merges "left right" (split at the first space: byte-level spellings contain none). */
    t->merge_mask = table_size_for((size_t)v->n_merges) - 1;
    t->merges = malloc(((size_t)t->merge_mask + 1) * sizeof *t->merges);
    if (!t->merges) {
        err_set(err, "tokenizer: out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i <= t->merge_mask; i++) t->merges[i].key = UINT64_MAX;
    {
        unsigned char *buf = malloc(2 * MAX_TOKEN_BYTES + 2);
        if (!buf) {
            err_set(err, "tokenizer: out of memory");
            goto fail;
        }
        for (int r = 0; r < v->n_merges; r++) {
            const char *m = t->file_merges[r];
            size_t l = t->file_merge_lens[r];
            const char *sp = memchr(m, ' ', l);
            if (!sp || sp == m || sp == m + l - 1) {
                free(buf);
                err_set(err, "tokenizer: merge %d (\"%s\") is not of the form \"left right\"",
                        r, quote(m).s);
                goto fail;
            }
            size_t la = (size_t)(sp - m), lb = l - la - 1;
            long ra = bytelevel_decode(&bm, m, la, buf);
            if (ra < 0) memcpy(buf, m, la), ra = (long)la;
            int a = map_find(t, buf, (size_t)ra);
            long rb = bytelevel_decode(&bm, sp + 1, lb, buf + ra);
            if (rb < 0) memcpy(buf + ra, sp + 1, lb), rb = (long)lb;
            int b = map_find(t, buf + ra, (size_t)rb);
            int c = map_find(t, buf, (size_t)(ra + rb));
            /* A merge whose parts or result are not ordinary tokens can never apply. */
            if (a < 0 || b < 0 || c < 0) continue;
            t->n_merge_pairs += merge_insert(t, a, b, r, c);
        }
        free(buf);
    }

    t->ignore_merges = v->ignore_merges;
    t->bos = v->bos_id >= 0 && v->bos_id < n ? v->bos_id : -1;
    t->eos = v->eos_id >= 0 && v->eos_id < n ? v->eos_id : -1;
    t->eot = v->eot_id >= 0 && v->eot_id < n ? v->eot_id : -1;
    if (t->bos < 0) t->bos = tokenizer_find(t, "<|begin_of_text|>");
    if (t->eos < 0) t->eos = tokenizer_find(t, "<|end_of_text|>");
    if (t->eot < 0) t->eot = tokenizer_find(t, "<|eot_id|>");

    if (!pattern) {
        if (v->pre && !strcmp(v->pre, "gpt2")) pattern = GPT2_PATTERN;
        else pattern = LLAMA3_PATTERN; /* also when tokenizer.ggml.pre is missing (BitNet) */
    }
    if (compile_pattern(t, pattern, err) < 0) goto fail;
    /* Llama 3 was trained with tiktoken, which always takes a pre-token that is a token whole;
     * GGUF has no field for it and older tokenizer.json conversions lack the flag (588 Llama 3
     * tokens come out split without it). */
    if (t->fast_ascii) t->ignore_merges = 1;
    snprintf(t->pre, sizeof t->pre, "%s",
             t->fast_ascii ? "llama-bpe" : pattern == GPT2_PATTERN ? "gpt2" : "custom");

    t->view.n_tokens = n;
    t->view.tokens = t->file_tokens;
    t->view.token_lens = t->file_token_lens;
    t->view.token_types = t->types;
    t->view.n_merges = v->n_merges;
    t->view.merges = t->file_merges;
    t->view.merge_lens = t->file_merge_lens;
    t->view.pre = t->pre;
    t->view.bos_id = t->bos;
    t->view.eos_id = t->eos;
    t->view.eot_id = t->eot;
    t->view.ignore_merges = t->ignore_merges;
    return t;
fail:
    tokenizer_free(t);
    return NULL;
}

Tokenizer *tokenizer_from_vocab(const TokenizerVocab *v, Err *err) {
    return tokenizer_build(v, NULL, err);
}

void tokenizer_set_bos_eos(Tokenizer *t, int bos, int eos) {
    if (bos >= 0) t->bos = t->view.bos_id = bos;
    if (eos >= 0) t->eos = t->view.eos_id = eos;
}

/* ---- accessors -------------------------------------------------------------------------------- */

int tokenizer_n_vocab(const Tokenizer *t) { return t ? t->n_vocab : 0; }
int tokenizer_bos(const Tokenizer *t) { return t ? t->bos : -1; }
int tokenizer_eos(const Tokenizer *t) { return t ? t->eos : -1; }
int tokenizer_eot(const Tokenizer *t) { return t ? t->eot : -1; }
const TokenizerVocab *tokenizer_vocab(const Tokenizer *t) { return t && !t->spm ? &t->view : NULL; }
const SpmModel *tokenizer_spm(const Tokenizer *t) { return t ? t->spm : NULL; }

Tokenizer *tokenizer_from_spm(SpmModel *s, Err *err) {
    Tokenizer *t = s ? calloc(1, sizeof *t) : NULL;
    if (!t) {
        spm_free(s);
        err_set(err, "tokenizer: out of memory");
        return NULL;
    }
    t->spm = s;
    t->n_vocab = spm_n_vocab(s);
    t->bos = spm_bos(s);
    t->eos = spm_eos(s);
    t->eot = -1;
    return t;
}

int tokenizer_is_special(const Tokenizer *t, int id) {
    if (t && t->spm) return spm_is_special(t->spm, id);
    return t && id >= 0 && id < t->n_vocab && t->types[id] == TOKTYPE_CONTROL;
}

const char *tokenizer_token_bytes(const Tokenizer *t, int id, size_t *len) {
    if (t && t->spm) return spm_token_bytes(t->spm, id, len);
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->tok_len[id];
    return (const char *)t->bytes + t->tok_off[id];
}

/* Specials by their text first, then ordinary tokens by file spelling, then by raw bytes. */
int tokenizer_find(const Tokenizer *t, const char *text) {
    if (!t || !text || !*text) return -1;
    if (t->spm) return spm_find(t->spm, text);
    size_t n = strlen(text);
    for (int i = 0; i < t->n_vocab; i++)
        if (t->types[i] != TOKTYPE_NORMAL && t->file_token_lens[i] == n &&
            !memcmp(t->file_tokens[i], text, n))
            return i;
    unsigned char stackbuf[256];
    unsigned char *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!buf) return -1;
    ByteMap bm;
    bytemap_init(&bm);
    int id = -1;
    long rl = bytelevel_decode(&bm, text, n, buf);
    if (rl >= 0) id = map_find(t, buf, (size_t)rl);
    if (id < 0) id = map_find(t, (const unsigned char *)text, n);
    if (buf != stackbuf) free(buf);
    return id;
}

static int is_ordinary(int type) {
    return type != TOKTYPE_CONTROL && type != TOKTYPE_UNKNOWN && type != TOKTYPE_UNUSED;
}

int tokenizer_check(const Tokenizer *t, Err *err) {
    if (!t || t->n_vocab <= 0) return err_set(err, "tokenizer: empty vocabulary");
    if (t->spm) return spm_check(t->spm, err);
    /* Ordinary tokens: none empty (it would match nothing yet take an id), none twice (the
     * second could never be produced, and decoding would disagree with encoding). */
    for (int i = 0; i < t->n_vocab; i++) {
        if (!is_ordinary(t->types[i])) continue;
        if (t->tok_len[i] == 0) return err_set(err, "tokenizer: token %d is empty", i);
        int first = map_find(t, t->bytes + t->tok_off[i], t->tok_len[i]);
        if (first != i)
            return err_set(err, "tokenizer: tokens %d and %d stand for the same bytes (\"%s\")", first, i,
                           quote(t->file_tokens[i]).s);
    }
    /* Byte-level BPE spells any text with byte tokens: one missing fails the first text that
     * holds that byte, long after the load. */
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0)
            return err_set(err, "tokenizer: byte 0x%02x has no token (a byte-level BPE vocabulary "
                                "needs one for each of the 256 bytes)", b);
    /* Special tokens are found by their text (the chat template's <|eot_id|>): none twice. */
    int n_special = 0;
    for (int i = 0; i < t->n_vocab; i++) n_special += !is_ordinary(t->types[i]) && t->file_token_lens[i];
    if (n_special > 1) {
        const uint32_t mask = table_size_for((size_t)n_special) - 1;
        int32_t *slot = malloc(((size_t)mask + 1) * sizeof *slot);
        if (!slot) return err_set(err, "tokenizer: out of memory");
        memset(slot, 0xff, ((size_t)mask + 1) * sizeof *slot);
        for (int i = 0; i < t->n_vocab; i++) {
            if (is_ordinary(t->types[i]) || !t->file_token_lens[i]) continue;
            const unsigned char *txt = (const unsigned char *)t->file_tokens[i];
            const size_t n = t->file_token_lens[i];
            uint32_t h = (uint32_t)hash_bytes(txt, n) & mask;
            for (; slot[h] >= 0; h = (h + 1) & mask) {
                const int o = slot[h];
                if (t->file_token_lens[o] == n && !memcmp(t->file_tokens[o], txt, n)) {
                    free(slot);
                    return err_set(err, "tokenizer: special tokens %d and %d are the same string "
                                        "\"%s\"", o, i, quote(t->file_tokens[i]).s);
                }
            }
            slot[h] = i;
        }
        free(slot);
    }
    return 0;
}

/* ---- pre-tokenization ------------------------------------------------------------------------- */

/* ASCII classes as PCRE2 (UCP) sees them: letters, digits, \s, everything else. */
enum { CL_OTHER = 0, CL_LETTER = 1, CL_DIGIT = 2, CL_SPACE = 3 };
static const unsigned char ascii_class[128] = {
    ['a' ... 'z'] = CL_LETTER, ['A' ... 'Z'] = CL_LETTER, ['0' ... '9'] = CL_DIGIT,
    [' '] = CL_SPACE, ['\t'] = CL_SPACE, ['\n'] = CL_SPACE, ['\v'] = CL_SPACE,
    ['\f'] = CL_SPACE, ['\r'] = CL_SPACE,
};

/* The Llama 3 pattern on ASCII, alternatives in the pattern's order:
 *   1 (?i:'s|'t|'re|'ve|'m|'ll|'d)   2 [^\r\n\p{L}\p{N}]?\p{L}+   3 \p{N}{1,3}
 *   4 ' '?[^\s\p{L}\p{N}]+[\r\n]*    5 \s*[\r\n]+   6 \s+(?!\S)   7 \s+
 * Returns the end of the match that starts at i (s[i] is ASCII), or 0 when deciding would need
 * the class of a non-ASCII character: the caller then asks PCRE2. */
static size_t ascii_match(const unsigned char *s, size_t n, size_t i) {
#define NONASCII(k) ((k) < n && s[k] >= 0x80)
#define CLS(k) ((k) < n ? ascii_class[s[k]] : 0xFF) /* only after !NONASCII(k) */
    unsigned c = s[i];
    int c0 = ascii_class[c];
    if (c == '\'' && i + 1 < n) {
        if (NONASCII(i + 1)) return 0;
        unsigned d = s[i + 1] | 0x20;
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if ((d == 'r' || d == 'v' || d == 'l') && i + 2 < n) {
            if (NONASCII(i + 2)) return 0;
            unsigned e = s[i + 2] | 0x20;
            if (((d == 'r' || d == 'v') && e == 'e') || (d == 'l' && e == 'l')) return i + 3;
        }
    }
    size_t k;
    if (c0 == CL_LETTER || (c0 != CL_DIGIT && c != '\r' && c != '\n')) {
        k = i;
        if (c0 != CL_LETTER) {
            if (NONASCII(i + 1)) return 0;
            if (CLS(i + 1) == CL_LETTER) k = i + 1;
        }
        if (CLS(k) == CL_LETTER) {
            while (k < n && s[k] < 0x80 && ascii_class[s[k]] == CL_LETTER) k++;
            if (NONASCII(k)) return 0;
            return k;
        }
    }
    if (c0 == CL_DIGIT) {
        k = i + 1;
        while (k < n && k < i + 3) {
            if (s[k] >= 0x80) return 0;
            if (ascii_class[s[k]] != CL_DIGIT) break;
            k++;
        }
        return k;
    }
    k = i;
    if (c == ' ' && i + 1 < n && s[i + 1] < 0x80 && ascii_class[s[i + 1]] == CL_OTHER) k = i + 1;
    if (ascii_class[s[k]] == CL_OTHER) {
        k++;
        while (k < n) {
            if (s[k] >= 0x80) return 0;
            if (ascii_class[s[k]] != CL_OTHER) break;
            k++;
        }
        while (k < n && (s[k] == '\r' || s[k] == '\n')) k++;
        return k;
    }
    /* c is \s: the whitespace run decides alternatives 5-7. */
    size_t last_nl = (size_t)-1;
    k = i;
    while (k < n) {
        if (s[k] >= 0x80) return 0;
        if (ascii_class[s[k]] != CL_SPACE) break;
        if (s[k] == '\r' || s[k] == '\n') last_nl = k;
        k++;
    }
    if (last_nl != (size_t)-1) return last_nl + 1;
    if (k == n) return n;
    if (k - i >= 2) return k - 1;
    return i + 1;
#undef NONASCII
#undef CLS
}

typedef struct {
    const Tokenizer *t;
    const unsigned char *s;
    size_t n, pos;
    pcre2_match_data *md;
    int reference;
} PreTok;

static size_t utf8_char_len_at(const unsigned char *s, size_t n, size_t i) {
    uint32_t cp;
    int l = utf8_decode((const char *)s + i, n - i, &cp);
    return l ? (size_t)l : 1;
}

/* One PCRE2 match from pos: the match, or the bytes before it when it starts later (invalid
 * UTF-8, which never matches). */
static void pcre_piece(PreTok *p, size_t *start, size_t *end) {
    const Tokenizer *t = p->t;
    size_t pos = p->pos;
    int rc = pcre2_match(t->re, p->s, p->n, pos, 0, p->md, NULL);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && t->re_jit) /* e.g. JIT stack exhausted */
        rc = pcre2_match(t->re, p->s, p->n, pos, PCRE2_NO_JIT, p->md, NULL);
    *start = pos;
    if (rc == PCRE2_ERROR_NOMATCH) {
        *end = p->n;
    } else if (rc < 0) {
        /* Matching gave up (limits): take one character as its own piece, deterministic. */
        *end = pos + utf8_char_len_at(p->s, p->n, pos);
    } else {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
        if (ov[0] > pos && ov[0] <= p->n) *end = ov[0];
        else if (ov[1] > pos && ov[1] <= p->n) *end = ov[1];
        else *end = pos + utf8_char_len_at(p->s, p->n, pos); /* empty match (custom pattern) */
    }
    p->pos = *end;
}

/* Next piece [start, end); returns 0 at the end of the text. */
static inline int pretok_next(PreTok *p, size_t *start, size_t *end) {
    if (p->pos >= p->n) return 0;
    if (!p->reference && p->t->fast_ascii && p->s[p->pos] < 0x80) {
        size_t e = ascii_match(p->s, p->n, p->pos);
        if (e) {
            *start = p->pos;
            *end = e;
            p->pos = e;
            return 1;
        }
    }
    pcre_piece(p, start, end);
    return 1;
}

static int pretok_init(PreTok *p, const Tokenizer *t, const char *text, size_t len, int reference,
                       Err *err) {
    memset(p, 0, sizeof *p);
    p->t = t;
    p->s = (const unsigned char *)text;
    p->n = len;
    p->reference = reference;
    p->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!p->md) return err_set(err, "tokenizer: out of memory");
    return 0;
}

int tokenizer_pretokenize(const Tokenizer *t, const char *text, size_t len, int reference,
                          size_t **bounds, size_t *n_pieces, Err *err) {
    *bounds = NULL;
    *n_pieces = 0;
    if (!t) return err_set(err, "tokenizer: none loaded");
    if (!text && len) return err_set(err, "tokenizer: no text");
    if (t->spm) return err_set(err, "tokenizer: SentencePiece has no pre-tokenizer");
    PreTok p;
    if (pretok_init(&p, t, text, len, reference, err) < 0) return -1;
    size_t cap = 64, n = 0;
    size_t *b = malloc(cap * sizeof *b);
    if (!b) {
        pcre2_match_data_free(p.md);
        return err_set(err, "tokenizer: out of memory");
    }
    b[0] = 0;
    size_t s0, e0;
    while (pretok_next(&p, &s0, &e0)) {
        if (n + 2 > cap) {
            size_t *nb = realloc(b, cap * 2 * sizeof *b);
            if (!nb) {
                free(b);
                pcre2_match_data_free(p.md);
                return err_set(err, "tokenizer: out of memory");
            }
            b = nb;
            cap *= 2;
        }
        b[++n] = e0;
    }
    pcre2_match_data_free(p.md);
    *bounds = b;
    *n_pieces = n;
    return 0;
}

/* ---- BPE ------------------------------------------------------------------------------------- */

/* A candidate merge: rank << 32 | position of its left symbol, so that one integer compare
 * orders by rank, then leftmost. */
typedef uint64_t HeapEnt;

typedef struct {
    int32_t *ids;
    size_t n_ids, cap_ids;
    int32_t *sym, *nxt, *prv;
    size_t cap_sym;
    HeapEnt *heap;
    size_t n_heap, cap_heap;
} Work;

static void work_free(Work *w) {
    free(w->ids);
    free(w->sym);
    free(w->nxt);
    free(w->prv);
    free(w->heap);
}

static int push_id(Work *w, int32_t id) {
    if (w->n_ids == w->cap_ids) {
        size_t nc = w->cap_ids ? w->cap_ids * 2 : 256;
        int32_t *ni = realloc(w->ids, nc * sizeof *ni);
        if (!ni) return -1;
        w->ids = ni;
        w->cap_ids = nc;
    }
    w->ids[w->n_ids++] = id;
    return 0;
}

static int work_reserve(Work *w, size_t n) {
    if (n <= w->cap_sym) return 0;
    size_t nc = w->cap_sym ? w->cap_sym : 64;
    while (nc < n) nc *= 2;
    int32_t *a = realloc(w->sym, nc * sizeof *a);
    if (a) w->sym = a;
    int32_t *b = realloc(w->nxt, nc * sizeof *b);
    if (b) w->nxt = b;
    int32_t *c = realloc(w->prv, nc * sizeof *c);
    if (c) w->prv = c;
    HeapEnt *h = realloc(w->heap, 2 * nc * sizeof *h);
    if (h) w->heap = h;
    if (!a || !b || !c || !h) return -1;
    w->cap_sym = nc;
    w->cap_heap = 2 * nc;
    return 0;
}

static inline int heap_less(const HeapEnt *a, const HeapEnt *b) { return *a < *b; }

static inline void heap_push(Work *w, HeapEnt e) {
    /* n - 1 pairs at first; each merge pops one entry and pushes at most two, and there are at
     * most n - 1 merges, so the heap never holds more than 2n entries (its capacity). */
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&e, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = e;
}

static inline HeapEnt heap_pop(Work *w) {
    HeapEnt top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t m = l + 1 < n && heap_less(&w->heap[l + 1], &w->heap[l]) ? l + 1 : l;
        if (!heap_less(&w->heap[m], &last)) break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (n) w->heap[i] = last;
    return top;
}

static inline void try_pair(const Tokenizer *t, Work *w, int32_t pos) {
    int32_t r = w->nxt[pos];
    if (r < 0) return;
    const MergeSlot *m = merge_find(t, w->sym[pos], w->sym[r]);
    if (!m) return;
    if (w->n_heap >= w->cap_heap) return; /* cannot happen: see heap_push */
    heap_push(w, (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)pos);
}

static int init_symbols(const Tokenizer *t, Work *w, const unsigned char *s, size_t n, Err *err) {
    if (work_reserve(w, n) < 0) return err_set(err, "tokenizer: out of memory");
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[s[i]];
        if (id < 0) return err_set(err, "tokenizer: byte 0x%02x has no token in this vocabulary", s[i]);
        w->sym[i] = id;
        w->prv[i] = (int32_t)i - 1;
        w->nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    return 0;
}

static int emit_symbols(Work *w, Err *err) {
    for (int32_t i = 0; i >= 0; i = w->nxt[i])
        if (push_id(w, w->sym[i]) < 0) return err_set(err, "tokenizer: out of memory");
    return 0;
}

static int bpe_piece(const Tokenizer *t, Work *w, const unsigned char *s, size_t n, Err *err) {
    if (n == 0) return 0;
    if (n == 1 || t->ignore_merges) {
        int id = n == 1 ? t->byte_id[s[0]] : map_find(t, s, n);
        if (id >= 0) {
            if (push_id(w, id) < 0) return err_set(err, "tokenizer: out of memory");
            return 0;
        }
    }
    if (n > (size_t)INT32_MAX / 4) return err_set(err, "tokenizer: piece too long");
    if (init_symbols(t, w, s, n, err) < 0) return -1;
    w->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(t, w, (int32_t)i);
    while (w->n_heap) {
        HeapEnt e = heap_pop(w);
        int32_t pos = (int32_t)(uint32_t)e, rank = (int32_t)(e >> 32);
        int32_t r = w->nxt[pos];
        /* Skip stale entries (the symbol was merged away, or a neighbour changed since): the
         * pair now at pos is the one queued exactly when it still has the queued rank, since
         * a rank names one merge. */
        if (w->sym[pos] < 0 || r < 0) continue;
        const MergeSlot *m = merge_find(t, w->sym[pos], w->sym[r]);
        if (!m || m->rank != rank) continue;
        w->sym[pos] = m->merged;
        w->sym[r] = -1;
        w->nxt[pos] = w->nxt[r];
        if (w->nxt[r] >= 0) w->prv[w->nxt[r]] = pos;
        if (w->prv[pos] >= 0) try_pair(t, w, w->prv[pos]);
        try_pair(t, w, pos);
    }
    return emit_symbols(w, err);
}

/* The O(n^2) reference: repeatedly merge the lowest-ranked pair, leftmost on ties. */
static int bpe_piece_reference(const Tokenizer *t, Work *w, const unsigned char *s, size_t n,
                               Err *err) {
    if (n == 0) return 0;
    if (t->ignore_merges) {
        int id = map_find(t, s, n);
        if (id >= 0) {
            if (push_id(w, id) < 0) return err_set(err, "tokenizer: out of memory");
            return 0;
        }
    }
    if (init_symbols(t, w, s, n, err) < 0) return -1;
    for (;;) {
        int32_t best = -1, best_rank = INT32_MAX, best_id = -1;
        for (int32_t i = 0; i >= 0 && w->nxt[i] >= 0; i = w->nxt[i]) {
            const MergeSlot *m = merge_find(t, w->sym[i], w->sym[w->nxt[i]]);
            if (m && m->rank < best_rank) best = i, best_rank = m->rank, best_id = m->merged;
        }
        if (best < 0) break;
        int32_t r = w->nxt[best];
        w->sym[best] = best_id;
        w->nxt[best] = w->nxt[r];
    }
    return emit_symbols(w, err);
}

static int encode_impl(const Tokenizer *t, const char *text, size_t len, int reference,
                       int32_t **ids, size_t *n_ids, Err *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!t) return err_set(err, "tokenizer: none loaded");
    if (!text && len) return err_set(err, "tokenizer: no text");
    if (t->spm) return spm_encode(t->spm, text, len, ids, n_ids, err);
    PreTok p;
    if (pretok_init(&p, t, text, len, reference, err) < 0) return -1;
    Work w;
    memset(&w, 0, sizeof w);
    int rc = 0;
    size_t s0, e0;
    while (pretok_next(&p, &s0, &e0)) {
        rc = reference ? bpe_piece_reference(t, &w, p.s + s0, e0 - s0, err)
                       : bpe_piece(t, &w, p.s + s0, e0 - s0, err);
        if (rc < 0) break;
    }
    pcre2_match_data_free(p.md);
    if (rc < 0) {
        work_free(&w);
        return -1;
    }
    if (!w.ids) w.ids = malloc(sizeof *w.ids); /* a valid pointer even for no ids */
    free(w.sym);
    free(w.nxt);
    free(w.prv);
    free(w.heap);
    if (!w.ids) return err_set(err, "tokenizer: out of memory");
    *ids = w.ids;
    *n_ids = w.n_ids;
    return 0;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int32_t **ids,
                     size_t *n_ids, Err *err) {
    return encode_impl(t, text, len, 0, ids, n_ids, err);
}

int tokenizer_encode_reference(const Tokenizer *t, const char *text, size_t len, int32_t **ids,
                               size_t *n_ids, Err *err) {
    return encode_impl(t, text, len, 1, ids, n_ids, err);
}
