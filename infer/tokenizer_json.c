/* The Hugging Face tokenizer.json reader (with tokenizer_config.json for bos/eos): checks the
 * model and pre-tokenizer it describes, gathers vocab, added tokens and merges (either the older
 * "a b" strings or the newer ["a", "b"] pairs) into a TokenizerVocab, and builds the tokenizer
 * from it (tokenizer.c). Hostile or malformed files give an error, never a crash. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "infer/tokenizer.h"
#include "infer/tokenizer_internal.h"
#include "infer/tokenizer_spm.h"

#define MAX_JSON_BYTES ((size_t)1 << 30)

/* bos_token / eos_token in tokenizer_config.json: a string or {"content": "..."}. */
static const char *config_token(json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Finds the pre-tokenizer regex. Supported: Split(Regex, Isolated) and ByteLevel, alone or in
 * a Sequence; ByteLevel(use_regex) without a Split means the GPT-2 pattern. */
static int find_pattern(json_t *pt, const char **pattern, int *bytelevel_regex, Err *err) {
    if (!json_is_object(pt)) return err_set(err, "pre_tokenizer is not an object");
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type) return err_set(err, "pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(pt, "pretokenizers");
        if (!json_is_array(list)) return err_set(err, "pre_tokenizer Sequence without a list");
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            if (find_pattern(item, pattern, bytelevel_regex, err) < 0) return -1;
        }
        return 0;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(pt, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        if (!re) return err_set(err, "pre_tokenizer Split without a Regex pattern (unsupported)");
        const char *behavior = json_string_value(json_object_get(pt, "behavior"));
        if (behavior && strcmp(behavior, "Isolated"))
            return err_set(err, "pre_tokenizer Split behavior \"%s\" is not supported", quote(behavior).s);
        if (json_is_true(json_object_get(pt, "invert")))
            return err_set(err, "pre_tokenizer Split with invert is not supported");
        if (*pattern) return err_set(err, "more than one pre_tokenizer regex is not supported");
        *pattern = re;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (json_is_true(json_object_get(pt, "add_prefix_space")))
            return err_set(err, "pre_tokenizer ByteLevel add_prefix_space is not supported");
        json_t *ur = json_object_get(pt, "use_regex");
        if (!ur || json_is_true(ur)) *bytelevel_regex = 1;
        return 0;
    }
    return err_set(err, "pre_tokenizer type \"%s\" is not supported", quote(type).s);
}

typedef struct {
    const char **tokens;
    size_t *lens;
    int32_t *types;
    const char **merges;
    size_t *merge_lens;
    char *merge_arena;
} JsonArrays;

/* ---- SentencePiece models in tokenizer.json ---------------------------------------------------
 * LLaMA-2's file (and 1bitLLM's copy) is a BPE model with byte_fallback over text whose spaces
 * became U+2581: either normalizer Sequence[Prepend "\u2581", Replace " " -> "\u2581"] and no
 * pre-tokenizer (transformers' legacy conversion), or no normalizer and a Metaspace
 * pre-tokenizer (prepend_scheme "always" / "first" / "never", split false). Unigram models
 * come with Metaspace. The pieces go to a SpmModel (tokenizer_spm.c), which encodes them. */

static int is_str(json_t *o, const char *key, const char *want) {
    const char *v = json_string_value(json_object_get(o, key));
    return v && !strcmp(v, want);
}

#define METASPACE "\xe2\x96\x81"

/* The space handling the file describes: *prefix (a leading U+2581 added), *unless_space (not
 * when the text starts with one: Metaspace's rule). */
static int spm_spaces(json_t *root, int *prefix, int *unless_space, Err *err) {
    json_t *norm = json_object_get(root, "normalizer"), *pt = json_object_get(root, "pre_tokenizer");
    *prefix = 0;
    *unless_space = 0;
    int replaced = 0;
    if (norm && !json_is_null(norm)) {
        json_t *list = json_object_get(norm, "normalizers"), *one[1] = {norm};
        const size_t n = is_str(norm, "type", "Sequence") && json_is_array(list) ? json_array_size(list) : 1;
        for (size_t i = 0; i < n; i++) {
            json_t *x = n == 1 && !json_is_array(list) ? one[0] : json_array_get(list, i);
            if (is_str(x, "type", "Prepend") && is_str(x, "prepend", METASPACE) && !replaced) {
                *prefix = 1;
            } else if (is_str(x, "type", "Replace") && is_str(json_object_get(x, "pattern"), "String", " ") &&
                       is_str(x, "content", METASPACE)) {
                replaced = 1;
            } else {
                const char *ty = json_string_value(json_object_get(x, "type"));
                return err_set(err, "tokenizer.json: SentencePiece normalizer \"%s\" is not supported (only "
                                    "Prepend \"\\u2581\" and Replace \" \" -> \"\\u2581\", as LLaMA's)",
                               quote(ty ? ty : "?").s);
            }
        }
    }
    if (pt && !json_is_null(pt)) {
        if (!is_str(pt, "type", "Metaspace") || !is_str(pt, "replacement", METASPACE))
            return err_set(err, "tokenizer.json: pre_tokenizer \"%s\" is not supported with a SentencePiece "
                                "model (only Metaspace \"\\u2581\")",
                           quote(json_string_value(json_object_get(pt, "type"))).s);
        if (json_is_true(json_object_get(pt, "split")))
            return err_set(err, "tokenizer.json: Metaspace with split is not supported");
        if (replaced || *prefix)
            return err_set(err, "tokenizer.json: both a normalizer and Metaspace write U+2581 (unsupported)");
        json_t *scheme = json_object_get(pt, "prepend_scheme");
        if (json_is_string(scheme)) {
            const char *v = json_string_value(scheme);
            /* "first" prepends to the first piece of the input only, not to text after a special
             * token; the text here is always such a first piece (chat templates tokenize between
             * specials, and no SentencePiece family has a template), so it is "always" */
            if (!strcmp(v, "always") || !strcmp(v, "first")) *prefix = 1;
            else if (strcmp(v, "never"))
                return err_set(err, "tokenizer.json: Metaspace prepend_scheme \"%s\" is not supported", quote(v).s);
        } else {
            *prefix = !json_is_false(json_object_get(pt, "add_prefix_space")); /* older files */
        }
        *unless_space = 1;
        replaced = 1;
    }
    if (!replaced)
        return err_set(err, "tokenizer.json: a SentencePiece model whose spaces are not written as U+2581 "
                            "(no Replace normalizer or Metaspace) is not supported");
    return 0;
}

static int looks_byte_piece(const char *p, size_t n) {
    return n == 6 && !memcmp(p, "<0x", 3) && p[5] == '>' && isxdigit((unsigned char)p[3]) &&
           isxdigit((unsigned char)p[4]);
}

static int read_vocab(json_t *root, json_t *model, JsonArrays *a, int *n_out, Err *err);
static int read_merges(json_t *model, JsonArrays *a, size_t *n_out, Err *err);

static Tokenizer *spm_json(json_t *root, json_t *model, json_t *cfg, Err *err) {
    const int unigram = is_str(model, "type", "Unigram");
    const int byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    int prefix, unless_space;
    if (spm_spaces(root, &prefix, &unless_space, err)) return NULL;
    JsonArrays a;
    memset(&a, 0, sizeof a);
    float *scores = NULL;
    int n = 0;
    size_t n_merges = 0;
    Tokenizer *t = NULL;
    SpmModel *sm = NULL;
    if (unigram) {
        json_t *vocab = json_object_get(model, "vocab");
        if (!json_is_array(vocab) || json_array_size(vocab) == 0 || json_array_size(vocab) > MAX_VOCAB) {
            err_set(err, "tokenizer.json: Unigram vocab is not a list of [piece, score]");
            goto done;
        }
        n = (int)json_array_size(vocab);
        a.tokens = calloc((size_t)n, sizeof *a.tokens);
        a.lens = calloc((size_t)n, sizeof *a.lens);
        a.types = calloc((size_t)n, sizeof *a.types);
        scores = calloc((size_t)n, sizeof *scores);
        if (!a.tokens || !a.lens || !a.types || !scores) {
            err_set(err, "tokenizer.json: out of memory");
            goto done;
        }
        for (int i = 0; i < n; i++) {
            json_t *e = json_array_get(vocab, (size_t)i), *p = json_array_get(e, 0), *sc = json_array_get(e, 1);
            if (!json_is_string(p) || !json_is_number(sc)) {
                err_set(err, "tokenizer.json: Unigram vocab entry %d is not [piece, score]", i);
                goto done;
            }
            a.tokens[i] = json_string_value(p);
            a.lens[i] = json_string_length(p);
            a.types[i] = TOKTYPE_NORMAL;
            scores[i] = (float)json_number_value(sc);
        }
        json_t *unk = json_object_get(model, "unk_id");
        if (json_is_integer(unk) && json_integer_value(unk) >= 0 && json_integer_value(unk) < n)
            a.types[json_integer_value(unk)] = TOKTYPE_UNKNOWN;
        size_t ai;
        json_t *at;
        json_array_foreach(json_object_get(root, "added_tokens"), ai, at) {
            json_t *id = json_object_get(at, "id");
            const char *c = json_string_value(json_object_get(at, "content"));
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= n || !c ||
                strcmp(c, a.tokens[json_integer_value(id)])) {
                err_set(err, "tokenizer.json: added_tokens[%zu] is not a piece of the Unigram vocab", ai);
                goto done;
            }
            if (a.types[json_integer_value(id)] != TOKTYPE_UNKNOWN)
                a.types[json_integer_value(id)] =
                    json_is_false(json_object_get(at, "special")) ? TOKTYPE_USER : TOKTYPE_CONTROL;
        }
    } else {
        if (read_vocab(root, model, &a, &n, err) || read_merges(model, &a, &n_merges, err)) goto done;
        const char *unk = json_string_value(json_object_get(model, "unk_token"));
        for (int i = 0; i < n; i++)
            if (unk && a.types[i] == TOKTYPE_NORMAL && !strcmp(a.tokens[i], unk)) a.types[i] = TOKTYPE_UNKNOWN;
        /* in SentencePiece's BPE the merges come from the scores; here the ranks decide */
    }
    for (int i = 0; i < n; i++)
        if (byte_fallback && a.types[i] == TOKTYPE_NORMAL && looks_byte_piece(a.tokens[i], a.lens[i]))
            a.types[i] = TOKTYPE_BYTE;
    int bos = -1, eos = -1;
    for (int k = 0; k < 2; k++) {
        const char *name = cfg ? config_token(cfg, k ? "eos_token" : "bos_token") : NULL;
        const char *dflt = k ? "</s>" : "<s>";
        int id = -1;
        for (int i = 0; i < n && id < 0; i++)
            if (!strcmp(a.tokens[i], name ? name : dflt) && strlen(a.tokens[i]) == a.lens[i]) id = i;
        if (name && id < 0) {
            err_set(err, "tokenizer_config.json: %s \"%s\" is not a token of tokenizer.json",
                    k ? "eos_token" : "bos_token", quote(name).s);
            goto done;
        }
        if (k) eos = id;
        else bos = id;
    }
    sm = spm_from_pieces(n, a.tokens, a.lens, scores, a.types, prefix, bos, eos, err);
    if (!sm) {
        err_prefix(err, "tokenizer.json");
        goto done;
    }
    spm_set_prefix(sm, prefix, unless_space);
    if (unigram) spm_set_unigram(sm);
    else if (spm_set_merges(sm, (int)n_merges, a.merges, a.merge_lens, err)) goto done;
    t = tokenizer_from_spm(sm, err);
    sm = NULL; /* owned by t, or freed */
done:
    spm_free(sm);
    free(scores);
    free(a.tokens);
    free(a.lens);
    free(a.types);
    free(a.merges);
    free(a.merge_lens);
    free(a.merge_arena);
    return t;
}

/* Step 1: the model and pre-tokenizer the file describes must be what tokenizer.c implements
 * (byte-level BPE, no normalizer); *pattern gets the pre-tokenizer regex. */
static int check_model(json_t *root, json_t *model, const char **pattern, Err *err) {
    int bytelevel_regex = 0;
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE")) {
        err_set(err, "tokenizer.json: model type \"%s\" is not supported (BPE, or SentencePiece's BPE "
                     "with byte fallback or Unigram)", quote(mtype).s);
        return -1;
    }
    const char *csp = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *ews = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if ((csp && *csp) || (ews && *ews)) {
        err_set(err, "tokenizer.json: subword prefixes/suffixes are not supported");
        return -1;
    }
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        err_set(err, "tokenizer.json: normalizers are not supported");
        return -1;
    }
    json_t *pt = json_object_get(root, "pre_tokenizer");
    if (!pt || json_is_null(pt)) {
        err_set(err, "tokenizer.json: no pre_tokenizer (not a byte-level BPE tokenizer)");
        return -1;
    }
    if (find_pattern(pt, pattern, &bytelevel_regex, err) < 0) {
        err_prefix(err, "tokenizer.json");
        return -1;
    }
    if (*pattern && bytelevel_regex) {
        err_set(err, "tokenizer.json: a Split regex together with ByteLevel use_regex is not supported");
        return -1;
    }
    if (!*pattern && !bytelevel_regex) {
        err_set(err, "tokenizer.json: the pre_tokenizer has no regex");
        return -1;
    }
    if (!*pattern) *pattern = GPT2_PATTERN;
    return 0;
}

/* Step 2: model.vocab and added_tokens into a->tokens/lens/types, indexed by id (*n_out of them);
 * ids must be unique and dense-ish, holes become unused empty tokens. */
static int read_vocab(json_t *root, json_t *model, JsonArrays *a, int *n_out, Err *err) {
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) {
        err_set(err, "tokenizer.json: model.vocab is not an object");
        return -1;
    }
    if (added && !json_is_null(added) && !json_is_array(added)) {
        err_set(err, "tokenizer.json: added_tokens is not a list");
        return -1;
    }
    long long max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= MAX_VOCAB) {
            err_set(err, "tokenizer.json: vocab entry \"%s\" has a bad id", quote(key).s);
            return -1;
        }
        if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    }
    size_t ai;
    json_t *at;
    json_array_foreach(added, ai, at) {
        json_t *id = json_object_get(at, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= MAX_VOCAB ||
            !json_is_string(json_object_get(at, "content"))) {
            err_set(err, "tokenizer.json: added_tokens[%zu] needs an id and a content", ai);
            return -1;
        }
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) {
        err_set(err, "tokenizer.json: empty vocabulary");
        return -1;
    }
    /* Ids are dense in real files; a few entries with huge ids would only make us allocate. */
    size_t n_entries = json_object_size(vocab) + json_array_size(added);
    if ((size_t)max_id + 1 > 2 * n_entries + 65536) {
        err_set(err, "tokenizer.json: %zu tokens but ids up to %lld (too sparse)", n_entries, max_id);
        return -1;
    }
    const int n = (int)max_id + 1;
    *n_out = n;
    a->tokens = calloc((size_t)n, sizeof *a->tokens);
    a->lens = calloc((size_t)n, sizeof *a->lens);
    a->types = calloc((size_t)n, sizeof *a->types);
    if (!a->tokens || !a->lens || !a->types) {
        err_set(err, "tokenizer.json: out of memory");
        return -1;
    }
    json_object_foreach(vocab, key, val) {
        int id = (int)json_integer_value(val);
        if (a->tokens[id]) {
            err_set(err, "tokenizer.json: id %d is used twice in the vocab", id);
            return -1;
        }
        a->tokens[id] = key;
        a->lens[id] = strlen(key); /* jansson keys are NUL-terminated and NUL-free */
        a->types[id] = TOKTYPE_NORMAL;
    }
    json_array_foreach(added, ai, at) {
        int id = (int)json_integer_value(json_object_get(at, "id"));
        json_t *content = json_object_get(at, "content");
        const char *s = json_string_value(content);
        size_t l = json_string_length(content);
        if (a->tokens[id] && (a->lens[id] != l || memcmp(a->tokens[id], s, l))) {
            err_set(err, "tokenizer.json: added token %d (\"%s\") clashes with the vocab", id, quote(s).s);
            return -1;
        }
        a->tokens[id] = s;
        a->lens[id] = l;
        a->types[id] = json_is_false(json_object_get(at, "special")) ? TOKTYPE_USER : TOKTYPE_CONTROL;
    }
    /* Holes in the id range become unused, empty tokens. */
    for (int i = 0; i < n; i++)
        if (!a->tokens[i]) a->tokens[i] = "", a->lens[i] = 0, a->types[i] = TOKTYPE_UNUSED;
    return 0;
}

/* Step 3: model.merges, "a b" strings or ["a", "b"] pairs, all into a->merges as "a b". */
static int read_merges(json_t *model, JsonArrays *a, size_t *n_out, Err *err) {
    json_t *merges = json_object_get(model, "merges");
    size_t n_merges = 0;
    if (merges && !json_is_null(merges)) {
        if (!json_is_array(merges)) {
            err_set(err, "tokenizer.json: model.merges is not a list");
            return -1;
        }
        n_merges = json_array_size(merges);
    }
    if (n_merges > MAX_MERGES) {
        err_set(err, "tokenizer.json: %zu merges is more than the limit", n_merges);
        return -1;
    }
    a->merges = calloc(n_merges + 1, sizeof *a->merges);
    a->merge_lens = calloc(n_merges + 1, sizeof *a->merge_lens);
    if (!a->merges || !a->merge_lens) {
        err_set(err, "tokenizer.json: out of memory");
        return -1;
    }
    size_t pair_bytes = 0;
    for (size_t i = 0; i < n_merges; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_array(m)) {
            json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
            if (json_array_size(m) != 2 || !json_is_string(l) || !json_is_string(r)) {
                err_set(err, "tokenizer.json: merge %zu is not a pair of strings", i);
                return -1;
            }
            pair_bytes += json_string_length(l) + json_string_length(r) + 2;
        } else if (!json_is_string(m)) {
            err_set(err, "tokenizer.json: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", i);
            return -1;
        }
    }
    if (pair_bytes) {
        a->merge_arena = malloc(pair_bytes);
        if (!a->merge_arena) {
            err_set(err, "tokenizer.json: out of memory");
            return -1;
        }
    }
    size_t mo = 0;
    for (size_t i = 0; i < n_merges; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) {
            a->merges[i] = json_string_value(m);
            a->merge_lens[i] = json_string_length(m);
            continue;
        }
        json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
        size_t ll = json_string_length(l), rl = json_string_length(r);
        if (memchr(json_string_value(l), ' ', ll) || memchr(json_string_value(r), ' ', rl)) {
            err_set(err, "tokenizer.json: merge %zu has a space inside a part (unsupported)", i);
            return -1;
        }
        char *d = a->merge_arena + mo;
        memcpy(d, json_string_value(l), ll);
        d[ll] = ' ';
        memcpy(d + ll + 1, json_string_value(r), rl);
        d[ll + 1 + rl] = 0;
        a->merges[i] = d;
        a->merge_lens[i] = ll + 1 + rl;
        mo += ll + rl + 2;
    }
    *n_out = n_merges;
    return 0;
}

Tokenizer *tokenizer_load_json_buffer(const char *json, size_t len, const char *config_json,
                                      Err *err) {
    if (!json) return err_set(err, "tokenizer.json: no data"), NULL;
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root)
        return err_set(err, "tokenizer.json: line %d: %s", je.line, je.text), NULL;
    json_t *cfg = NULL;
    if (config_json) {
        cfg = json_loads(config_json, JSON_DECODE_INT_AS_REAL, &je); /* model_max_length: 1e30 */
        if (!cfg) {
            json_decref(root);
            return err_set(err, "tokenizer_config.json: line %d: %s", je.line, je.text), NULL;
        }
    }
    Tokenizer *t = NULL;
    JsonArrays a;
    memset(&a, 0, sizeof a);
    const char *pattern = NULL;
    int n = 0;
    size_t n_merges = 0;

    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        err_set(err, "tokenizer.json: no \"model\" object");
        goto done;
    }
    if (is_str(model, "type", "Unigram") ||
        ((is_str(model, "type", "BPE") || !json_object_get(model, "type")) &&
         json_is_true(json_object_get(model, "byte_fallback")))) {
        t = spm_json(root, model, cfg, err);
        goto done;
    }
    if (check_model(root, model, &pattern, err) || read_vocab(root, model, &a, &n, err) ||
        read_merges(model, &a, &n_merges, err))
        goto done;

    TokenizerVocab v;
    memset(&v, 0, sizeof v);
    v.n_tokens = n;
    v.tokens = a.tokens;
    v.token_lens = a.lens;
    v.token_types = a.types;
    v.n_merges = (int)n_merges;
    v.merges = a.merges;
    v.merge_lens = a.merge_lens;
    v.bos_id = v.eos_id = v.eot_id = -1;
    v.ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    t = tokenizer_build(&v, pattern, err);
    if (!t) {
        err_prefix(err, "tokenizer.json");
        goto done;
    }
    if (cfg) {
        /* A named token that is not in the vocabulary is refused: an eos that never matches
         * would let every reply run to the limit. */
        static const char *keys[2] = {"bos_token", "eos_token"};
        for (int k = 0; k < 2; k++) {
            const char *name = config_token(cfg, keys[k]);
            if (!name) continue;
            int id = tokenizer_find(t, name);
            if (id < 0) {
                err_set(err, "tokenizer_config.json: %s \"%s\" is not a token of tokenizer.json",
                        keys[k], quote(name).s);
                tokenizer_free(t);
                t = NULL;
                goto done;
            }
            tokenizer_set_bos_eos(t, k == 0 ? id : -1, k == 1 ? id : -1);
        }
    }
done:
    free(a.tokens);
    free(a.lens);
    free(a.types);
    free(a.merges);
    free(a.merge_lens);
    free(a.merge_arena);
    json_decref(root);
    json_decref(cfg);
    return t;
}

/* Reads a whole file (bounded); NULL with err set on failure. */
static char *read_file(const char *path, size_t *len, Err *err) {
    /* O_NONBLOCK: a FIFO would block the open until a writer comes; fstat refuses it below */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd);
        return err_set(err, "%s: %s", path, strerror(e)), NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(err, "%s: not a regular file", path), NULL;
    }
    if ((size_t)st.st_size > MAX_JSON_BYTES) {
        fclose(f);
        return err_set(err, "%s: too large (%lld bytes)", path, (long long)st.st_size), NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return err_set(err, "%s: out of memory", path), NULL;
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return err_set(err, "%s: read error", path), NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

Tokenizer *tokenizer_load_json(const char *path, Err *err) {
    if (!path) return err_set(err, "tokenizer: no path"), NULL;
    size_t len = 0, clen = 0;
    char *json = read_file(path, &len, err);
    if (!json) return NULL;
    /* tokenizer_config.json beside it, when present. */
    char cpath[4096];
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    char *config = NULL;
    if (dirlen + sizeof "tokenizer_config.json" <= sizeof cpath) {
        memcpy(cpath, path, dirlen);
        memcpy(cpath + dirlen, "tokenizer_config.json", sizeof "tokenizer_config.json");
        struct stat st;
        if (stat(cpath, &st) == 0) {
            config = read_file(cpath, &clen, err);
            if (!config) {
                free(json);
                return NULL;
            }
        }
    }
    Tokenizer *t = tokenizer_load_json_buffer(json, len, config, err);
    if (!t && err) {
        /* The buffer loader names the file by its kind; name it by its path instead. */
        char msg[sizeof err->msg];
        memcpy(msg, err->msg, sizeof msg);
        if (!strncmp(msg, "tokenizer.json: ", 16)) err_set(err, "%s: %s", path, msg + 16);
        else if (!strncmp(msg, "tokenizer_config.json: ", 23)) err_set(err, "%s: %s", cpath, msg + 23);
        else err_prefix(err, "%s", path);
    }
    free(json);
    free(config);
    return t;
}
