#!/usr/bin/env python3
"""Build the demo model's chat corpus from freely licensed Debian data.

Sources (see assets/README.md for licences):
  WordNet 3.0 (wordnet-base)      /usr/share/wordnet/{index,data}.{noun,verb,adj,adv}
  Jargon File 4.4.7 (dict-jargon) /usr/share/dictd/jargon.{index,dict.dz}
  fortune cookies (fortunes, fortunes-min) /usr/share/games/fortunes/<category>

Output: data/{train,val,test}.jsonl, one conversation per line:
  {"src": ..., "turns": [[user, assistant], ...], "system": str or null}
plus data/suite.jsonl: held-out single-turn prompts for the quality suite.

The split is by *entry* (a lemma, a Jargon headword, a fortune), so no test or
suite prompt's answer was seen in training. Deterministic (seeded).
"""
import gzip, json, os, random, re, sys

SEED = 1234
OUT = sys.argv[1] if len(sys.argv) > 1 else "data"
rng = random.Random(SEED)
WN = "/usr/share/wordnet"
POS_NAME = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}

# ---------------------------------------------------------------- WordNet
def read_synsets():
    syn = {}
    for pos in ("noun", "verb", "adj", "adv"):
        with open(f"{WN}/data.{pos}", encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                head, _, gloss = line.partition(" | ")
                t = head.split()
                off, ss_type, wcnt = t[0], t[2], int(t[3], 16)
                words = [t[4 + 2 * i].replace("_", " ") for i in range(wcnt)]
                words = [re.sub(r"\([a-z]+\)$", "", w) for w in words]  # adj markers like (a)
                i = 4 + 2 * wcnt
                pcnt = int(t[i]); i += 1
                ptrs = []
                for _ in range(pcnt):
                    ptrs.append((t[i], t[i + 1], t[i + 2], t[i + 3])); i += 4
                parts = [p.strip() for p in gloss.strip().split(";")]
                defs = [p for p in parts if not p.startswith('"')]
                exs = [p.strip('"') for p in parts if p.startswith('"') and p.endswith('"')]
                d = "; ".join(defs).strip()
                key = (pos[0] if pos != "adj" else "a", off)
                syn[key] = {"pos": ss_type, "words": words, "def": d, "ex": exs, "ptrs": ptrs}
    return syn

def read_index():
    idx = {}  # lemma -> list of (poskey, offset) in sense order
    for pos in ("noun", "verb", "adj", "adv"):
        pk = pos[0] if pos != "adj" else "a"
        with open(f"{WN}/index.{pos}", encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                t = line.split()
                lemma = t[0].replace("_", " ")
                ncnt = int(t[2]); pcnt = int(t[3])
                offs = t[4 + pcnt + 2:]
                idx.setdefault(lemma, []).extend((pk, o) for o in offs[:ncnt])
    return idx

def cap(s):
    return s[:1].upper() + s[1:] if s else s

def article(w):
    return "an" if w[:1].lower() in "aeiou" else "a"

DEFINE_Q = [
    "What does {w} mean?", "What does \"{w}\" mean?", "Define {w}.", "define {w}",
    "What is the meaning of {w}?", "What is the meaning of the word \"{w}\"?",
    "Can you tell me what {w} means?", "Explain the word {w}.", "meaning of {w}",
    "What's the definition of {w}?", "Please define \"{w}\".", "I keep hearing the word {w}. What does it mean?",
    "{w}: what does that mean?", "Give me a definition of {w}.", "What is meant by {w}?",
]
NOUN_Q = ["What is {a} {w}?", "What's {a} {w}?", "Tell me what {a} {w} is."]
SYN_Q = ["What is another word for {w}?", "Give me a synonym for {w}.", "Synonyms of {w}?",
         "What are some other words for {w}?", "What word means the same as {w}?"]
HYPER_Q = ["What kind of thing is {a} {w}?", "{A} {w} is a type of what?", "What category does {w} belong to?"]
ANT_Q = ["What is the opposite of {w}?", "What's the antonym of {w}?", "Give me the opposite of \"{w}\"."]

def sense_text(s):
    d = s["def"]
    return d.rstrip(".")

def define_answer(w, senses):
    if len(senses) == 1:
        s = senses[0]
        a = f"{cap(w)} is {article(POS_NAME[s['pos']])} {POS_NAME[s['pos']]} meaning {sense_text(s)}."
        if s["ex"]:
            a += f" For example: \"{s['ex'][0]}\"."
        return a
    shown = senses[:3]
    lines = [f"{cap(w)} has {'several' if len(senses) > 3 else len(senses)} meanings:" if len(senses) > 3
             else f"{cap(w)} has {['', 'one', 'two', 'three'][len(senses)]} meanings:"]
    for i, s in enumerate(shown, 1):
        lines.append(f"{i}. ({POS_NAME[s['pos']]}) {sense_text(s)}.")
    a = "\n".join(lines)
    ex = next((s["ex"][0] for s in shown if s["ex"]), None)
    if ex:
        a += f"\nFor example: \"{ex}\"."
    return a

def wordnet_items(syn, idx):
    items = []  # (entry_key, src, question, answer)
    for lemma, offs in idx.items():
        if len(lemma) < 2 or any(c.isdigit() for c in lemma):
            continue
        senses = []
        seen = set()
        for k in offs:
            if k in syn and k not in seen:
                seen.add(k); senses.append(syn[k])
        if not senses:
            continue
        if lemma.startswith(("genus ", "family ", "order ", "class ", "phylum ")):
            continue
        if " " in lemma and rng.random() < 0.5:
            continue  # keep the corpus weighted towards single words
        # display form: the synset's own spelling (keeps capitals of proper nouns)
        w = next((x for s in senses for x in s["words"] if x.lower() == lemma.lower()), lemma)
        entry = "wn:" + lemma
        q = rng.choice(DEFINE_Q)
        if senses[0]["pos"] == "n" and rng.random() < 0.3:
            q = rng.choice(NOUN_Q)
        items.append((entry, "wn-define", q.format(w=w, a=article(w), A=cap(article(w))), define_answer(w, senses)))
        s0 = senses[0]
        others = [x for x in s0["words"] if x.lower() != lemma.lower()]
        if others and rng.random() < 0.35:
            others = others[:4]
            lst = others[0] if len(others) == 1 else ", ".join(others[:-1]) + " and " + others[-1]
            ans = f"Another word for {w} is {lst}." if len(others) == 1 else f"Other words for {w} are {lst}."
            ans += f" They mean {sense_text(s0)}."
            items.append((entry, "wn-synonym", rng.choice(SYN_Q).format(w=w), ans))
        if s0["pos"] == "n" and rng.random() < 0.25:
            hyp = [p for p in s0["ptrs"] if p[0] in ("@", "@i") and p[2] == "n"]
            if hyp and ("n", hyp[0][1]) in syn:
                h = syn[("n", hyp[0][1])]
                hw = h["words"][0]
                ans = f"{cap(article(w))} {w} is a kind of {hw} ({sense_text(h)})."
                items.append((entry, "wn-hypernym",
                               rng.choice(HYPER_Q).format(w=w, a=article(w), A=cap(article(w))), ans))
        if s0["pos"] in ("a", "s"):
            ant = [p for p in s0["ptrs"] if p[0] == "!"]
            if ant and (ant[0][2] if ant[0][2] != "s" else "a", ant[0][1]) in syn:
                a_s = syn[(ant[0][2] if ant[0][2] != "s" else "a", ant[0][1])]
                tgt = int(ant[0][3][2:], 16)
                aw = a_s["words"][tgt - 1] if tgt else a_s["words"][0]
                ans = f"The opposite of {w} is {aw}, which means {sense_text(a_s)}."
                items.append((entry, "wn-antonym", rng.choice(ANT_Q).format(w=w), ans))
    return items

# ---------------------------------------------------------------- Jargon File
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
def b64num(s):
    n = 0
    for c in s:
        n = n * 64 + B64.index(c)
    return n

JARGON_Q = [
    "What is {w} in hacker slang?", "What does {w} mean in hacker jargon?", "In the Jargon File, what is {w}?",
    "What does the hacker term \"{w}\" mean?", "Explain the jargon term {w}.", "What do hackers mean by {w}?",
    "jargon: {w}", "Define {w} (hacker slang).",
]

def clean_jargon(body, head):
    body = body.replace("\u201c", "\"").replace("\u201d", "\"").replace("\u2018", "'").replace("\u2019", "'")
    body = re.sub(r"\{([^}]*)\}", r"\1", body)
    paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", body)]
    paras = [p for p in paras if p]
    if paras and (paras[0].startswith(head) or len(paras[0]) < len(head) + 40 and not paras[0].endswith(".")):
        paras = paras[1:]  # headword / pronunciation line
    if not paras:
        return None
    text = paras[0]
    for p in paras[1:]:
        if len(text) + len(p) > 700:
            break
        text += "\n" + p
    if len(text) > 900:
        text = text[:900].rsplit(". ", 1)[0] + "."
    return text

def jargon_items():
    raw = gzip.open("/usr/share/dictd/jargon.dict.dz").read()
    items = []
    for line in open("/usr/share/dictd/jargon.index", encoding="utf-8"):
        head, off, ln = line.rstrip("\n").split("\t")
        if head.startswith("00-database"):
            continue
        body = raw[b64num(off):b64num(off) + b64num(ln)].decode("utf-8", "replace")
        t = clean_jargon(body, head)
        if not t or len(t) < 30:
            continue
        items.append(("jg:" + head.lower(), "jargon", rng.choice(JARGON_Q).format(w=head), t))
    return items

# ---------------------------------------------------------------- fortunes
FORTUNE_CATS = ["fortunes", "literature", "riddles", "computers", "cookie", "definitions", "education",
                "food", "goedel", "humorists", "kids", "law", "linux", "love", "magic", "medicine",
                "miscellaneous", "news", "paradoxum", "people", "pets", "platitudes", "science", "sports",
                "tao", "translate-me", "wisdom", "work"]
GENERIC_Q = ["Tell me a fortune.", "Give me a fortune cookie.", "Tell me a saying.", "Say something wise.",
             "Give me a quote.", "Tell me something funny.", "I need a fortune cookie.", "Give me a quotation.",
             "Share a saying with me.", "Tell me a witty remark."]
CAT_Q = {"computers": "computers", "food": "food", "love": "love", "science": "science", "work": "work",
         "law": "the law", "medicine": "medicine", "education": "education", "sports": "sports",
         "pets": "pets", "kids": "kids", "people": "people", "linux": "Linux", "magic": "magic",
         "literature": "literature", "wisdom": "wisdom"}
TOPIC_Q = ["Tell me a saying about {t}.", "Give me a quote about {t}.", "Tell me a fortune about {t}.",
           "Do you know a quip about {t}?", "Share something witty about {t}."]
STOP = set("about after again being could every first found great little never other people should "
           "their there these thing think those through under where which while would years".split())

def fortune_items(nouns):
    items = []
    base = "/usr/share/games/fortunes/"
    for cat in FORTUNE_CATS:
        p = base + cat
        if not os.path.exists(p):
            continue
        txt = open(p, encoding="utf-8", errors="replace").read()
        for k, f in enumerate(txt.split("\n%\n")):
            f = f.strip("\n%").rstrip()
            if not f or len(f) > 700 or len(f) < 15:
                continue
            f = f.replace("\t", "    ")
            entry = f"ft:{cat}:{k}"
            if cat == "riddles":
                q = rng.choice(["Tell me a riddle.", "Tell me a joke.", "Give me a riddle.", "Know any jokes?"])
            else:
                r = rng.random()
                words = [w.lower() for w in re.findall(r"[A-Za-z]{5,}", f)]
                words = [w for w in words if w in nouns and w not in STOP]
                if cat in CAT_Q and r < 0.35:
                    q = rng.choice(TOPIC_Q).format(t=CAT_Q[cat])
                elif words and r < 0.75:
                    q = rng.choice(TOPIC_Q).format(t=rng.choice(words))
                else:
                    q = rng.choice(GENERIC_Q)
            items.append((entry, "fortune-" + cat, q, f))
    return items

# ---------------------------------------------------------------- small talk
def smalltalk_items():
    ident = ("I am a small demo language model that ships with bitnet-chat. I was trained from scratch on "
             "WordNet definitions, the Jargon File and fortune cookies, so I can define words, explain hacker "
             "slang and tell you a saying. For real answers, load a full BitNet b1.58 model.")
    pairs = [
        (["Who are you?", "What are you?", "Introduce yourself.", "What can you do?", "Tell me about yourself.",
          "What kind of model are you?", "who are you", "What do you know?", "Are you a real AI?",
          "What were you trained on?"], ident),
        (["Hello!", "Hi", "hello", "Hey there.", "Good morning!", "Hi there, how are you?", "Howdy"],
         "Hello! I am a small demo model. Ask me what a word means, what a hacker term means, or for a saying."),
        (["Thanks!", "Thank you.", "thanks", "Thank you very much!", "Great, thanks."],
         "You are welcome! Ask me about another word whenever you like."),
        (["Goodbye.", "Bye!", "bye", "See you later.", "Good night!"], "Goodbye! Come back when you need a definition or a saying."),
    ]
    items = []
    for k, (qs, a) in enumerate(pairs):
        for j, q in enumerate(qs):
            items.append((f"st:{k}:{j}", "smalltalk", q, a))
    return items

SYSTEMS = [None] * 6 + ["You are a helpful AI assistant.", "You are a helpful assistant.",
                        "You are a concise dictionary assistant.", "Answer briefly."]

def main():
    os.makedirs(OUT, exist_ok=True)
    syn = read_synsets(); idx = read_index()
    nouns = {l for l, offs in idx.items() if any(p == "n" for p, _ in offs)}
    items = wordnet_items(syn, idx) + jargon_items() + fortune_items(nouns) + smalltalk_items()
    entries = sorted({e for e, *_ in items})
    rng.shuffle(entries)
    # held-out entries: 1.5% val, 1.5% test; small talk always in train
    n = len(entries)
    split = {}
    for i, e in enumerate(entries):
        split[e] = "train" if e.startswith("st:") else ("val" if i < n * 0.015 else "test" if i < n * 0.03 else "train")
    by = {"train": [], "val": [], "test": []}
    for e, src, q, a in items:
        by[split[e]].append({"src": src, "entry": e, "q": q, "a": a})
    stats = {}
    for name, lst in by.items():
        rng.shuffle(lst)
        with open(f"{OUT}/{name}.jsonl", "w") as f:
            for it in lst:
                conv = {"src": it["src"], "system": rng.choice(SYSTEMS), "turns": [[it["q"], it["a"]]]}
                f.write(json.dumps(conv) + "\n")
        stats[name] = len(lst)
    # quality suite: held-out test entries, a mix of kinds, fixed seed
    test = by["test"]
    pick = []
    want = {"wn-define": 14, "wn-synonym": 3, "wn-hypernym": 2, "wn-antonym": 2, "jargon": 6}
    for src, k in want.items():
        cand = [t for t in test if t["src"] == src and (src != "wn-define" or " " not in t["entry"])]
        pick += cand[:k]
    pick += [t for t in test if t["src"].startswith("fortune-")][:6]
    with open(f"{OUT}/suite.jsonl", "w") as f:
        for t in pick:
            f.write(json.dumps({"src": t["src"], "prompt": t["q"], "reference": t["a"]}) + "\n")
    # a few prompts of the model's own kind that are not verbatim in training
    stats["suite"] = len(pick)
    srcs = {}
    for it in by["train"]:
        srcs[it["src"].split("-")[0]] = srcs.get(it["src"].split("-")[0], 0) + 1
    stats["train_by_source"] = srcs
    json.dump(stats, open(f"{OUT}/stats.json", "w"), indent=1)
    print(json.dumps(stats))

if __name__ == "__main__":
    main()
