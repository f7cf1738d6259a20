/* SentencePiece BPE with byte fallback: see tokenizer_spm.h. */
#include "infer/tokenizer_spm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "infer/tokenizer.h"

enum { SPM_MAX_PIECES = 1 << 22, SPM_MAX_PIECE_LEN = 1 << 16 };

typedef struct {
    uint64_t hash;
    int32_t id_plus1;
} Slot;

typedef struct {
    uint64_t key;        /* (left id + 1) << 32 | (right id + 1); 0 = empty */
    int32_t rank, id;    /* merge rank, resulting piece */
} PairSlot;

struct SpmModel {
    int n;
    char **piece;        /* spelling, NUL-terminated */
    uint32_t *plen;
    float *score;
    int32_t *type;       /* TOKTYPE_* (SentencePiece's own type numbers are the same) */
    char **bytes;        /* what each piece stands for (spm_token_bytes) */
    uint32_t *blen;
    Slot *map;           /* spelling -> id, mergeable pieces only (normal, user-defined) */
    uint32_t mask;
    int byte_id[256];    /* <0xXX> pieces, -1 when absent */
    int unk, bos, eos;
    int add_dummy_prefix, remove_extra_ws;
    int prefix_unless_space; /* Metaspace: no dummy prefix when the text starts with a space */
    /* tokenizer.json's BPE: pairs merge by rank (lowest first), not by the result's score */
    PairSlot *pairs;
    uint32_t pair_mask;
    int unigram;             /* Unigram: the segmentation with the highest total score */
    float unk_score;         /* Unigram: score of an unknown character (lowest score - 10) */
    uint32_t max_piece;      /* Unigram: longest mergeable piece, bytes */
};

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static int map_find(const SpmModel *s, const char *p, size_t n) {
    const uint64_t h = fnv(p, n);
    for (uint32_t i = (uint32_t)h & s->mask;; i = (i + 1) & s->mask) {
        const Slot *e = &s->map[i];
        if (!e->id_plus1) return -1;
        const int id = e->id_plus1 - 1;
        if (e->hash == h && s->plen[id] == n && !memcmp(s->piece[id], p, n)) return id;
    }
}

void spm_free(SpmModel *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        if (s->piece) free(s->piece[i]);
        if (s->bytes) free(s->bytes[i]);
    }
    free(s->piece);
    free(s->plen);
    free(s->score);
    free(s->type);
    free(s->bytes);
    free(s->blen);
    free(s->map);
    free(s->pairs);
    free(s);
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Fills bytes, the map and the byte pieces once pieces, scores and types are in place. */
static int finish(SpmModel *s, Err *err) {
    s->bytes = calloc((size_t)s->n, sizeof *s->bytes);
    s->blen = calloc((size_t)s->n, sizeof *s->blen);
    uint32_t cap = 16;
    while (cap < (uint32_t)s->n * 2u) cap *= 2;
    s->map = calloc(cap, sizeof *s->map);
    s->mask = cap - 1;
    if (!s->bytes || !s->blen || !s->map) return err_set(err, "sentencepiece: out of memory");
    for (int b = 0; b < 256; b++) s->byte_id[b] = -1;
    s->unk = -1;
    for (int i = 0; i < s->n; i++) {
        const char *p = s->piece[i];
        const uint32_t n = s->plen[i];
        char *out = malloc(n + 1);
        if (!out) return err_set(err, "sentencepiece: out of memory");
        uint32_t o = 0;
        if (s->type[i] == TOKTYPE_BYTE) {
            int hi, lo;
            if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>' || (hi = hexval(p[3])) < 0 ||
                (lo = hexval(p[4])) < 0) {
                free(out);
                return err_set(err, "sentencepiece: byte piece %d is \"%.16s\", not <0xXX>", i, p);
            }
            out[o++] = (char)(hi * 16 + lo);
            s->byte_id[hi * 16 + lo] = i;
        } else {
            for (uint32_t j = 0; j < n; j++) {
                if (j + 2 < n && (unsigned char)p[j] == 0xe2 && (unsigned char)p[j + 1] == 0x96 &&
                    (unsigned char)p[j + 2] == 0x81) { /* U+2581 */
                    out[o++] = ' ';
                    j += 2;
                } else {
                    out[o++] = p[j];
                }
            }
        }
        out[o] = 0;
        s->bytes[i] = out;
        s->blen[i] = o;
        if (s->type[i] == TOKTYPE_UNKNOWN && s->unk < 0) s->unk = i;
        if (s->type[i] == TOKTYPE_NORMAL || s->type[i] == TOKTYPE_USER) {
            if (map_find(s, p, n) >= 0) continue; /* the first of two equal spellings wins */
            const uint64_t h = fnv(p, n);
            uint32_t k = (uint32_t)h & s->mask;
            while (s->map[k].id_plus1) k = (k + 1) & s->mask;
            s->map[k] = (Slot){h, i + 1};
        }
    }
    return 0;
}

static SpmModel *alloc_model(int n, Err *err) {
    if (n < 1 || n > SPM_MAX_PIECES) {
        err_set(err, "sentencepiece: %d pieces", n);
        return NULL;
    }
    SpmModel *s = calloc(1, sizeof *s);
    if (s) {
        s->n = n;
        s->piece = calloc((size_t)n, sizeof *s->piece);
        s->plen = calloc((size_t)n, sizeof *s->plen);
        s->score = calloc((size_t)n, sizeof *s->score);
        s->type = calloc((size_t)n, sizeof *s->type);
    }
    if (!s || !s->piece || !s->plen || !s->score || !s->type) {
        spm_free(s);
        err_set(err, "sentencepiece: out of memory");
        return NULL;
    }
    s->bos = s->eos = -1;
    s->add_dummy_prefix = 1;
    return s;
}

SpmModel *spm_from_pieces(int n, const char *const *pieces, const size_t *lens,
                          const float *scores, const int32_t *types, int add_dummy_prefix,
                          int bos, int eos, Err *err) {
    SpmModel *s = alloc_model(n, err);
    if (!s) return NULL;
    for (int i = 0; i < n; i++) {
        const size_t l = lens ? lens[i] : strlen(pieces[i]);
        if (l > SPM_MAX_PIECE_LEN || !(s->piece[i] = malloc(l + 1))) {
            err_set(err, "sentencepiece: piece %d too long or out of memory", i);
            spm_free(s);
            return NULL;
        }
        memcpy(s->piece[i], pieces[i], l);
        s->piece[i][l] = 0;
        s->plen[i] = (uint32_t)l;
        s->score[i] = scores ? scores[i] : 0.0f;
        s->type[i] = types ? types[i] : TOKTYPE_NORMAL;
    }
    s->add_dummy_prefix = add_dummy_prefix;
    s->bos = bos >= 0 && bos < n ? bos : -1;
    s->eos = eos >= 0 && eos < n ? eos : -1;
    if (finish(s, err)) {
        spm_free(s);
        return NULL;
    }
    return s;
}

static uint64_t pair_key(int a, int b) { return (uint64_t)(a + 1) << 32 | (uint32_t)(b + 1); }

static const PairSlot *pair_find(const SpmModel *s, int a, int b) {
    const uint64_t k = pair_key(a, b);
    for (uint32_t i = (uint32_t)(k * 0x9e3779b97f4a7c15ull >> 32) & s->pair_mask;; i = (i + 1) & s->pair_mask) {
        const PairSlot *e = &s->pairs[i];
        if (!e->key) return NULL;
        if (e->key == k) return e;
    }
}

int spm_set_merges(SpmModel *s, int n, const char *const *merges, const size_t *lens, Err *err) {
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2u + 2u) cap *= 2;
    free(s->pairs);
    s->pairs = calloc(cap, sizeof *s->pairs);
    if (!s->pairs) return err_set(err, "tokenizer: out of memory");
    s->pair_mask = cap - 1;
    size_t longest = 1;
    for (int r = 0; r < n; r++) {
        const size_t l = lens ? lens[r] : strlen(merges[r]);
        if (l > longest) longest = l;
    }
    char *buf = malloc(longest);
    if (!buf) return err_set(err, "tokenizer: out of memory");
    for (int r = 0; r < n; r++) {
        const size_t l = lens ? lens[r] : strlen(merges[r]);
        const char *sp = memchr(merges[r], ' ', l);
        if (!sp) {
            free(buf);
            return err_set(err, "tokenizer: merge %d is not \"left right\"", r);
        }
        const size_t la = (size_t)(sp - merges[r]), lb = l - la - 1;
        const int a = map_find(s, merges[r], la), b = map_find(s, sp + 1, lb);
        memcpy(buf, merges[r], la);
        memcpy(buf + la, sp + 1, lb);
        const int c = map_find(s, buf, la + lb);
        if (a < 0 || b < 0 || c < 0) continue; /* a merge of pieces that never occur never applies */
        const uint64_t k = pair_key(a, b);
        uint32_t i = (uint32_t)(k * 0x9e3779b97f4a7c15ull >> 32) & s->pair_mask;
        while (s->pairs[i].key && s->pairs[i].key != k) i = (i + 1) & s->pair_mask;
        if (!s->pairs[i].key) s->pairs[i] = (PairSlot){k, r, c}; /* the first rank of a pair wins */
    }
    free(buf);
    return 0;
}

void spm_set_unigram(SpmModel *s) {
    s->unigram = 1;
    float lo = 0.0f;
    int any = 0;
    s->max_piece = 1;
    for (int i = 0; i < s->n; i++) {
        if (s->type[i] != TOKTYPE_NORMAL && s->type[i] != TOKTYPE_USER) continue;
        if (!any || s->score[i] < lo) lo = s->score[i];
        any = 1;
        if (s->plen[i] > s->max_piece) s->max_piece = s->plen[i];
    }
    s->unk_score = lo - 10.0f; /* what the tokenizers package gives an unknown character */
}

void spm_set_prefix(SpmModel *s, int add_prefix, int unless_space) {
    s->add_dummy_prefix = add_prefix;
    s->prefix_unless_space = unless_space;
    s->remove_extra_ws = 0;
}

/* ---- protobuf (ModelProto) -------------------------------------------------------------------
 * Only what is needed: ModelProto.pieces (1) {piece 1, score 2, type 3}, trainer_spec (2)
 * {model_type 3, byte_fallback 35, unk/bos/eos id 40/41/42}, normalizer_spec (3) {name 1,
 * add_dummy_prefix 3, remove_extra_whitespaces 4, escape_whitespaces 5}. */

typedef struct {
    const unsigned char *p, *end;
} Pb;

static int pb_varint(Pb *b, uint64_t *v) {
    *v = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        if (b->p >= b->end) return -1;
        const unsigned char c = *b->p++;
        *v |= (uint64_t)(c & 0x7f) << sh;
        if (!(c & 0x80)) return 0;
    }
    return -1;
}

/* Next field: its number, wire type, and for wire type 2 the payload; 1 at the end, -1 bad. */
static int pb_next(Pb *b, int *field, int *wt, uint64_t *v, Pb *sub) {
    if (b->p >= b->end) return 1;
    uint64_t key;
    if (pb_varint(b, &key)) return -1;
    *field = (int)(key >> 3);
    *wt = (int)(key & 7);
    switch (*wt) {
    case 0: return pb_varint(b, v);
    case 1:
        if (b->end - b->p < 8) return -1;
        memcpy(v, b->p, 8);
        b->p += 8;
        return 0;
    case 5: {
        if (b->end - b->p < 4) return -1;
        uint32_t x;
        memcpy(&x, b->p, 4);
        *v = x;
        b->p += 4;
        return 0;
    }
    case 2:
        if (pb_varint(b, v) || *v > (uint64_t)(b->end - b->p)) return -1;
        sub->p = b->p;
        sub->end = b->p + *v;
        b->p += *v;
        return 0;
    default: return -1;
    }
}

SpmModel *spm_load_buffer(const unsigned char *buf, size_t len, Err *err) {
    Pb b = {buf, buf + len}, sub;
    int field, wt, rc, n = 0, model_type = 1, byte_fallback = 0, bad = 0;
    uint64_t v;
    /* first pass: count pieces and read the specs */
    int add_prefix = 1, remove_ws = 1, escape_ws = 1;
    char norm_name[64] = "";
    while ((rc = pb_next(&b, &field, &wt, &v, &sub)) == 0) {
        if (field == 1 && wt == 2) {
            n++;
        } else if ((field == 2 || field == 3) && wt == 2) {
            const int trainer = field == 2;
            Pb s2 = sub, s3;
            int f2, w2;
            uint64_t v2;
            while ((rc = pb_next(&s2, &f2, &w2, &v2, &s3)) == 0) {
                if (trainer && f2 == 3 && w2 == 0) model_type = (int)v2;
                else if (trainer && f2 == 35 && w2 == 0) byte_fallback = v2 != 0;
                else if (!trainer && f2 == 1 && w2 == 2)
                    snprintf(norm_name, sizeof norm_name, "%.*s", (int)(s3.end - s3.p), (const char *)s3.p);
                else if (!trainer && f2 == 3 && w2 == 0) add_prefix = v2 != 0;
                else if (!trainer && f2 == 4 && w2 == 0) remove_ws = v2 != 0;
                else if (!trainer && f2 == 5 && w2 == 0) escape_ws = v2 != 0;
            }
            if (rc < 0) bad = 1;
        }
        if (n > SPM_MAX_PIECES) break;
    }
    if (rc < 0 || bad || n == 0) {
        err_set(err, "sentencepiece: not a SentencePiece model file (bad protobuf or no pieces)");
        return NULL;
    }
    if (model_type != 2) {
        err_set(err, "sentencepiece: model type %d is not supported (only BPE, type 2, as LLaMA's; "
                     "Unigram models are not)", model_type);
        return NULL;
    }
    if (norm_name[0] && strcmp(norm_name, "identity")) {
        err_set(err, "sentencepiece: normalization \"%s\" is not supported (only identity)", norm_name);
        return NULL;
    }
    if (!escape_ws) {
        err_set(err, "sentencepiece: models that keep spaces unescaped are not supported");
        return NULL;
    }
    (void)byte_fallback; /* the <0xXX> pieces themselves say whether bytes can fall back */
    SpmModel *s = alloc_model(n, err);
    if (!s) return NULL;
    s->add_dummy_prefix = add_prefix;
    s->remove_extra_ws = remove_ws;
    b = (Pb){buf, buf + len};
    int i = 0;
    while (i < n && pb_next(&b, &field, &wt, &v, &sub) == 0) {
        if (field != 1 || wt != 2) continue;
        Pb s2 = sub, s3;
        int f2, w2;
        uint64_t v2;
        s->type[i] = TOKTYPE_NORMAL;
        while (pb_next(&s2, &f2, &w2, &v2, &s3) == 0) {
            if (f2 == 1 && w2 == 2 && !s->piece[i] && (size_t)(s3.end - s3.p) <= SPM_MAX_PIECE_LEN) {
                const size_t l = (size_t)(s3.end - s3.p);
                if ((s->piece[i] = malloc(l + 1))) {
                    memcpy(s->piece[i], s3.p, l);
                    s->piece[i][l] = 0;
                    s->plen[i] = (uint32_t)l;
                }
            } else if (f2 == 2 && w2 == 5) {
                const uint32_t x = (uint32_t)v2;
                memcpy(&s->score[i], &x, 4);
            } else if (f2 == 3 && w2 == 0) {
                s->type[i] = (int32_t)v2;
            }
        }
        if (!s->piece[i] || s->type[i] < TOKTYPE_NORMAL || s->type[i] > TOKTYPE_BYTE) {
            err_set(err, "sentencepiece: piece %d has no text or a bad type", i);
            spm_free(s);
            return NULL;
        }
        i++;
    }
    for (int k = 0; k < n; k++)
        if (s->type[k] == TOKTYPE_CONTROL) {
            if (!strcmp(s->piece[k], "<s>") && s->bos < 0) s->bos = k;
            if (!strcmp(s->piece[k], "</s>") && s->eos < 0) s->eos = k;
        }
    if (finish(s, err)) {
        spm_free(s);
        return NULL;
    }
    return s;
}

SpmModel *spm_load_file(const char *path, Err *err) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set(err, "%s: not a regular file", path);
        return NULL;
    }
    if (st.st_size > (1 << 28)) {
        err_set(err, "%s: %lld bytes is too large for a tokenizer model", path, (long long)st.st_size);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    size_t got = f && buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    if (f) fclose(f);
    SpmModel *s = NULL;
    if (!buf || got != (size_t)st.st_size) err_set(err, "%s: cannot read", path);
    else if (!(s = spm_load_buffer(buf, got, err))) err_prefix(err, "%s", path);
    free(buf);
    return s;
}

int spm_check(const SpmModel *s, Err *err) {
    int bytes = 0;
    for (int b = 0; b < 256; b++) bytes += s->byte_id[b] >= 0;
    if (bytes < 256 && s->unk < 0)
        return err_set(err, "tokenizer: the SentencePiece model has %d of the 256 byte pieces and no unknown "
                            "piece, so some text cannot be encoded", bytes);
    return 0;
}

/* ---- queries ------------------------------------------------------------------------------------ */

int spm_n_vocab(const SpmModel *s) { return s->n; }
int spm_bos(const SpmModel *s) { return s->bos; }
int spm_eos(const SpmModel *s) { return s->eos; }
int spm_is_special(const SpmModel *s, int id) {
    return id >= 0 && id < s->n && s->type[id] == TOKTYPE_CONTROL;
}

const char *spm_token_bytes(const SpmModel *s, int id, size_t *len) {
    if (id < 0 || id >= s->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = s->blen[id];
    return s->bytes[id];
}

int spm_gguf_form(const SpmModel *s, Err *err) {
    if (s->pairs || s->unigram || s->prefix_unless_space || s->remove_extra_ws)
        return err_set(err, "tokenizer: this SentencePiece model was read from a tokenizer.json (%s), which "
                            "GGUF's scored pieces cannot express; a folder with tokenizer.model converts",
                       s->unigram ? "Unigram" : s->pairs ? "merge ranks" : s->remove_extra_ws ? "whitespace collapsing" : "Metaspace");
    return 0;
}

const char *spm_piece(const SpmModel *s, int id, size_t *len) {
    if (id < 0 || id >= s->n) return NULL;
    if (len) *len = s->plen[id];
    return s->piece[id];
}

float spm_score(const SpmModel *s, int id) { return id >= 0 && id < s->n ? s->score[id] : 0.0f; }
int spm_type(const SpmModel *s, int id) { return id >= 0 && id < s->n ? s->type[id] : TOKTYPE_NORMAL; }
int spm_add_prefix(const SpmModel *s) { return s->add_dummy_prefix; }

int spm_find(const SpmModel *s, const char *piece) {
    if (!piece || !*piece) return -1;
    const size_t n = strlen(piece);
    for (int i = 0; i < s->n; i++)
        if (s->plen[i] == n && !memcmp(s->piece[i], piece, n)) return i;
    return -1;
}

/* ---- encoding ------------------------------------------------------------------------------------ */

static int utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

/* tokenizer.json's BPE: the adjacent pair with the lowest merge rank is merged (leftmost on a
 * tie) until no adjacent pair is a merge. Symbols are spans of norm (start/slen) linked by
 * next/prev; a symbol that is not a piece never merges. */
static int bpe_by_rank(const SpmModel *s, const char *norm, int *start, int *slen, int *prev,
                       int *next, int n, Err *err) {
    int *id = malloc((size_t)(n ? n : 1) * sizeof *id);
    if (!id) return err_set(err, "tokenizer: out of memory");
    for (int i = 0; i < n; i++) id[i] = map_find(s, norm + start[i], (size_t)slen[i]);
    for (;;) {
        int best = -1;
        const PairSlot *bp = NULL;
        for (int i = n ? 0 : -1; i >= 0 && next[i] >= 0; i = next[i]) {
            const int j = next[i];
            if (id[i] < 0 || id[j] < 0) continue;
            const PairSlot *p = pair_find(s, id[i], id[j]);
            if (p && (!bp || p->rank < bp->rank)) best = i, bp = p;
        }
        if (best < 0) break;
        const int j = next[best];
        slen[best] += slen[j];
        id[best] = bp->id;
        next[best] = next[j];
        if (next[j] >= 0) prev[next[j]] = best;
    }
    free(id);
    return 0;
}

/* Unigram: the segmentation of norm into pieces with the highest total score (Viterbi over
 * character boundaries), as the tokenizers package finds it: candidates at each position in
 * order of length, a later one taken only when strictly better; a character no single piece
 * covers is an unknown of score unk_score, and neighbouring unknowns are one symbol. On return
 * the symbol list (start/slen/next from the first symbol, 0) is the segmentation. */
static int unigram_segment(const SpmModel *s, const char *norm, size_t m, int *start, int *slen,
                           int *next, int n, Err *err) {
    if (n == 0) return 0;
    double *best = malloc((m + 1) * sizeof *best);
    int *from = malloc((m + 1) * sizeof *from), *piece = malloc((m + 1) * sizeof *piece);
    unsigned char *bound = calloc(m + 1, 1);
    if (!best || !from || !piece || !bound) {
        free(best), free(from), free(piece), free(bound);
        return err_set(err, "tokenizer: out of memory");
    }
    for (int i = 0; i < n; i++) bound[start[i]] = 1;
    bound[m] = 1;
    for (size_t p = 0; p <= m; p++) from[p] = -1;
    best[0] = 0.0;
    from[0] = 0;
    for (int i = 0; i < n; i++) {
        const size_t p = (size_t)start[i];
        if (from[p] < 0) continue;
        int single = 0;
        for (size_t l = 1; l <= s->max_piece && p + l <= m; l++) {
            if (!bound[p + l]) continue;
            const int id = map_find(s, norm + p, l);
            if (id < 0) continue;
            if (l == (size_t)slen[i]) single = 1;
            const double sc = best[p] + s->score[id];
            if (from[p + l] < 0 || sc > best[p + l]) best[p + l] = sc, from[p + l] = (int)p, piece[p + l] = id;
        }
        if (!single) {
            const size_t q = p + (size_t)slen[i];
            const double sc = best[p] + s->unk_score;
            if (from[q] < 0 || sc > best[q]) best[q] = sc, from[q] = (int)p, piece[q] = -1;
        }
    }
    /* back from the end: the pieces in reverse, unknowns fused */
    int k = 0;
    for (size_t q = m; q > 0;) {
        size_t p = (size_t)from[q];
        if (piece[q] < 0)
            while (p > 0 && piece[p] < 0) p = (size_t)from[p];
        start[k] = (int)p, slen[k] = (int)(q - p), k++;
        q = p;
    }
    for (int a = 0, b = k - 1; a < b; a++, b--) {
        int t = start[a];
        start[a] = start[b], start[b] = t;
        t = slen[a], slen[a] = slen[b], slen[b] = t;
    }
    for (int i = 0; i < k; i++) next[i] = i + 1 < k ? i + 1 : -1;
    free(best), free(from), free(piece), free(bound);
    return 0;
}

int spm_encode(const SpmModel *s, const char *text, size_t len, int32_t **ids, size_t *n_ids,
               Err *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return err_set(err, "tokenizer: no text");
    /* normalize: (collapse whitespace,) dummy prefix, ' ' -> U+2581 */
    char *norm = malloc(3 * len + 4);
    if (!norm) return err_set(err, "tokenizer: out of memory");
    size_t a = 0, e = len, m = 0;
    if (s->remove_extra_ws) {
        while (a < e && text[a] == ' ') a++;
        while (e > a && text[e - 1] == ' ') e--;
    }
    const int leading_space = e > a && (text[a] == ' ' || (e - a >= 3 && !memcmp(text + a, "\xe2\x96\x81", 3)));
    if (s->add_dummy_prefix && e > a && !(s->prefix_unless_space && leading_space))
        memcpy(norm, "\xe2\x96\x81", 3), m = 3;
    for (size_t i = a; i < e; i++) {
        if (text[i] == ' ') {
            if (s->remove_extra_ws && i > a && text[i - 1] == ' ') continue;
            memcpy(norm + m, "\xe2\x96\x81", 3);
            m += 3;
        } else {
            norm[m++] = text[i];
        }
    }
    /* symbols: UTF-8 characters, as a linked list over norm */
    int n = 0;
    int *start = malloc((m + 1) * sizeof *start), *slen = malloc((m + 1) * sizeof *slen);
    int *prev = malloc((m + 1) * sizeof *prev), *next = malloc((m + 1) * sizeof *next);
    int32_t *out = malloc((m * 4 + 1) * sizeof *out);
    if (!start || !slen || !prev || !next || !out) {
        free(norm), free(start), free(slen), free(prev), free(next), free(out);
        return err_set(err, "tokenizer: out of memory");
    }
    for (size_t i = 0; i < m;) {
        int l = utf8_len((unsigned char)norm[i]);
        if (i + (size_t)l > m) l = (int)(m - i);
        start[n] = (int)i, slen[n] = l, prev[n] = n - 1, next[n] = n + 1;
        n++;
        i += (size_t)l;
    }
    if (n) next[n - 1] = -1;
    if (s->unigram || s->pairs) {
        const int rc = s->unigram ? unigram_segment(s, norm, m, start, slen, next, n, err)
                                  : bpe_by_rank(s, norm, start, slen, prev, next, n, err);
        if (rc) {
            free(norm), free(start), free(slen), free(prev), free(next), free(out);
            return rc;
        }
    } else for (;;) {
        /* merge the best-scoring adjacent pair until none is a piece. O(n^2) per text;
         * messages are short next to a forward pass (2,000 characters: ~4 M pair lookups). */
        int best = -1;
        float best_score = 0.0f;
        for (int i = n ? 0 : -1; i >= 0 && next[i] >= 0; i = next[i]) {
            const int j = next[i];
            const int id = map_find(s, norm + start[i], (size_t)(slen[i] + slen[j]));
            if (id >= 0 && (best < 0 || s->score[id] > best_score)) best = i, best_score = s->score[id];
        }
        if (best < 0) break;
        const int j = next[best];
        slen[best] += slen[j];
        next[best] = next[j];
        if (next[j] >= 0) prev[next[j]] = best;
    }
    size_t k = 0;
    for (int i = n ? 0 : -1; i >= 0; i = next[i]) {
        const int id = map_find(s, norm + start[i], (size_t)slen[i]);
        if (id >= 0) {
            out[k++] = id;
            continue;
        }
        int all_bytes = 1;
        for (int b = 0; b < slen[i]; b++) all_bytes &= s->byte_id[(unsigned char)norm[start[i] + b]] >= 0;
        if (all_bytes) {
            for (int b = 0; b < slen[i]; b++) out[k++] = s->byte_id[(unsigned char)norm[start[i] + b]];
        } else if (s->unk >= 0) {
            out[k++] = s->unk;
        } else {
            free(norm), free(start), free(slen), free(prev), free(next), free(out);
            return err_set(err, "tokenizer: a character has no piece, no byte pieces and no unknown piece");
        }
    }
    free(norm), free(start), free(slen), free(prev), free(next);
    *ids = out;
    *n_ids = k;
    return 0;
}
