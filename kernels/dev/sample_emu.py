#!/usr/bin/env python3
"""A CPU emulation of kcuda_sample_topk's algorithm (kernels/cuda/sample.cu) against the host sampler.

Lab check, run by hand (numpy; builds infer/sampler.c into a shared library with cc):
    python3 kernels/dev/sample_emu.py [vocab ...]      (default: 1000 5000 128256)
It follows the kernel step by step: the rank keys, each block's sorted list of its best
min(k, valid) (key, id) numbers, the last block's merge (the cutting rounds: the power of two s,
the heads, the bound of rank k - 1, each list cut at the bound, with the pool's capacity checked;
then the remaining candidates sorted) and the pick
(the host's walks, sums added left to right as the kernel adds them). Each draw is compared with
the host sampler (infer/sampler.c, through ctypes) given the same logits, penalty window and
uniform: the token, whether the uniform was used, and that the kernel declines exactly the
settings outside its range. It checks the algorithm, not the CUDA code (for that:
tests/gpu/test_sample_cuda.c on a GPU).
"""
import ctypes
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

THREADS, TOPK_MAX = 1024, 256
POOL = THREADS
KEY_NAN = 0xFFFFFFFF
KEY_ALL = KEY_NAN - 1
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Params(ctypes.Structure):
    _fields_ = [("temperature", ctypes.c_float), ("top_k", ctypes.c_int), ("top_p", ctypes.c_float),
                ("min_p", ctypes.c_float), ("repeat_penalty", ctypes.c_float), ("repeat_last_n", ctypes.c_int),
                ("seed", ctypes.c_uint64), ("max_tokens", ctypes.c_int)]


def load_sampler():
    out = os.path.join(tempfile.mkdtemp(), "libsampler.so")
    subprocess.check_call(["cc", "-O2", "-shared", "-fPIC", "-I", ROOT, os.path.join(ROOT, "infer/sampler.c"),
                           "-o", out, "-lm"])
    lib = ctypes.CDLL(out)
    lib.sampler_create.restype = ctypes.c_void_p
    lib.sampler_create.argtypes = [ctypes.POINTER(Params), ctypes.c_int]
    lib.sampler_free.argtypes = [ctypes.c_void_p]
    lib.sampler_accept.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.sampler_sample.restype = ctypes.c_int32
    lib.sampler_sample.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.sampler_penalty_ids.restype = ctypes.c_int
    lib.sampler_penalty_ids.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    lib.sampler_peek_uniform.restype = ctypes.c_double
    lib.sampler_peek_uniform.argtypes = [ctypes.c_void_p]
    return lib


LIBM = ctypes.CDLL("libm.so.6")
LIBM.logf.restype = ctypes.c_float
LIBM.logf.argtypes = [ctypes.c_float]


def rank_keys(v):
    v = v.astype(np.float32).copy()
    v[v == 0] = np.float32(0.0)  # -0 and +0 share a key
    u = v.view(np.uint32)
    order = np.where(u & np.uint32(0x80000000), ~u, u | np.uint32(0x80000000))
    key = ~order
    key[np.isnan(v)] = KEY_NAN
    return key.astype(np.uint32)


def rank_key(x):
    return int(rank_keys(np.array([x], dtype=np.float32))[0])


def key_value(k):
    order = (~k) & 0xFFFFFFFF
    bits = order & 0x7FFFFFFF if order & 0x80000000 else (~order) & 0xFFFFFFFF
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def exps(d):
    """exp() of each (glibc's, as the host sampler; numpy's own may differ in the last bit)."""
    return np.array([math.exp(x) for x in d], dtype=np.float64)


def mass_cut(vals, mx):
    d = vals - mx
    keep = d > -80.0
    out = np.zeros(len(d))
    out[keep] = exps(d[keep])
    return out


def draw_weight(vals, mx, inv_t):
    d = (vals - mx) * inv_t
    keep = d > -80.0
    out = np.zeros(len(d))
    out[keep] = exps(d[keep]).astype(np.float32).astype(np.float64)
    return out


STATS = {}  # merge rounds per draw, the largest pool used, for the summary


def stat(name, v=1, mode="add"):
    if mode == "max":
        STATS[name] = max(STATS.get(name, 0), v)
    else:
        STATS[name] = STATS.get(name, 0) + v


def lower_bound(a, v):
    return int(np.searchsorted(a, v, side="left"))


def upper_bound(a, v):
    return int(np.searchsorted(a, v, side="right"))


def merge(lists, k):
    """topk_merge: the k best of the blocks' sorted lists, ascending."""
    lens = [len(x) for x in lists]
    total = sum(lens)
    goal, target = max(2 * k, 256), k + (k + 1) // 2
    rounds = 0
    while total > goal:
        rounds += 1
        n_lists = sum(1 for x in lens if x > 0)
        h = 1
        while h * n_lists < target:
            h <<= 1
        while sum(min(x, h) for x in lens) < target:
            h <<= 1
        segs = [lists[b][: min(lens[b], h)] for b in range(len(lists)) if lens[b] > 0]
        heads = np.concatenate(segs)
        assert len(heads) <= POOL, (len(heads), k)
        stat("largest pool", len(heads), "max")
        bound = np.sort(heads)[k - 1]  # pool_sorted: thread k - 1's entry
        new = []
        for b in range(len(lists)):
            if lens[b] == 0:
                new.append(0)
                continue
            mine = min(lens[b], h)
            c = upper_bound(lists[b][:mine], bound)
            if c == mine and lens[b] > mine:
                c = mine + upper_bound(lists[b][mine:lens[b]], bound)
            new.append(c)
        assert sum(new) < total
        lens, total = new, sum(new)
    stat(f"draws with {rounds} cutting round{'s' if rounds != 1 else ''}")
    segs = [lists[b][: lens[b]] for b in range(len(lists)) if lens[b] > 0]
    if not segs:
        return np.zeros(0, dtype=np.uint64)
    pool = np.concatenate(segs)
    assert len(pool) <= POOL
    stat("largest pool", len(pool), "max")
    return np.sort(pool)[: min(k, total)]


def emulate(logits, a):
    """kcuda_sample_topk's draw: (token, used, declined); a: dict of KcudaSampleArgs' fields."""
    n, k = len(logits), a["top_k"]
    if not (1 <= k < n and k <= TOPK_MAX):
        return -1, 0, 1
    v = logits.astype(np.float32).copy()
    ids = np.array(a["pen_ids"], dtype=np.int64)
    if len(ids):
        pv = v[ids]
        v[ids] = np.where(pv > 0, pv / np.float32(a["penalty"]), pv * np.float32(a["penalty"])).astype(np.float32)
    keys = rank_keys(v)
    comp = (keys.astype(np.uint64) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    lists = []
    for b in range(0, n, THREADS):
        blk = np.sort(comp[b:b + THREADS])
        valid = int((keys[b:b + THREADS] != KEY_NAN).sum())
        lists.append(blk[: min(k, valid)])
    top = merge(lists, k)
    # the exact k best, for the record
    vc = comp[keys != KEY_NAN]
    assert np.array_equal(top, np.sort(vc)[: min(k, len(vc))])
    mm = len(top)
    if not a["temperature"] > 0:
        nan0 = v[0] != v[0]
        return (0 if nan0 or mm == 0 else int(top[0] & np.uint64(0xFFFFFFFF))), 0, 0
    if mm == 0:
        return 0, 0, 0
    lg = [key_value(int(x >> np.uint64(32))) for x in top]
    best = int(top[0] & np.uint64(0xFFFFFFFF))
    max_logit = lg[0]
    if max_logit == -math.inf:
        return best, 0, 0
    mx = float(max_logit)
    d = np.array(lg, dtype=np.float64) - mx
    mass = exps(d)
    w = draw_weight(np.array(lg, dtype=np.float64), mx, a["inv_temp"])
    nc = mm
    z = 0.0
    if a["top_p"] < 1 and nc > 1:
        for r in range(nc):
            if lg[r] - mx > -80.0:
                z += mass[r]
    if a["min_p"] > 0 and nc > 1:
        thresh = np.float32(np.float32(max_logit) + np.float32(a["log_min_p"]))
        keep = 1
        while keep < nc and np.float32(lg[keep]) >= thresh:
            keep += 1
        nc = keep
    if a["top_p"] < 1 and nc > 1:
        target = float(np.float32(a["top_p"]) if a["top_p"] > 0 else 0.0) * z
        cum = 0.0
        for r in range(nc):
            cum += mass[r]
            if cum >= target:
                nc = r + 1
                break
    z2 = 0.0
    for r in range(nc):
        z2 += w[r]
    u = a["u01"] * z2
    cum = 0.0
    for r in range(nc):
        cum += w[r]
        if u < cum:
            return int(top[r] & np.uint64(0xFFFFFFFF)), 1, 0
    for r in range(nc - 1, 0, -1):
        if w[r] > 0:
            return int(top[r] & np.uint64(0xFFFFFFFF)), 1, 0
    return best, 1, 0


def make_logits(rng, n, kind):
    f = rng.integers(0, 1000001, n) / 1e6
    if kind == 0:  # peaked
        v = -4 + 3 * f + np.where(rng.integers(0, 200, n) == 0, 9 * rng.random(n), 0)
    elif kind == 1:  # flat
        v = 0.5 * f
    elif kind == 2:  # coarse ties, +-0
        v = (rng.integers(0, 17, n) - 8) * 0.25
        v = np.where((v == 0) & (rng.integers(0, 2, n) == 1), -0.0, v)
    elif kind == 3:  # NaN, -inf
        r = rng.integers(0, 2000, n)
        v = np.where(r % 50 == 0, np.nan, np.where(r % 40 == 1, -np.inf, 6 * f - 3))
    elif kind == 4:  # all -inf but one
        v = np.full(n, -np.inf)
        v[rng.integers(0, n)] = 1.0
    elif kind == 5:  # a few ulps apart
        v = (np.uint32(0x3F800000) + rng.integers(0, 4096, n).astype(np.uint32)).view(np.float32)
    elif kind == 6:  # peaked, NaN first
        v = -4 + 3 * f + np.where(rng.integers(0, 200, n) == 0, 9 * rng.random(n), 0)
        v[0] = np.nan
    elif kind == 7:  # all NaN
        v = np.full(n, np.nan)
    elif kind == 8:  # NaN but for 30 tokens
        v = np.full(n, np.nan)
        v[rng.integers(0, n, 30)] = 2 * rng.random(30)
    else:  # all equal
        v = np.full(n, 0.75)
    return np.ascontiguousarray(v, dtype=np.float32)


def run(lib, n, rng):
    cap = min(TOPK_MAX, n - 1)
    temps, topks, topps, minps, pens = [0.0, 0.7, 1.5], [0, 1, 2, 40, cap, cap + 1], [1.0, 0.95, 0.5, 0.0], \
        [0.0, 0.05, 0.5], [1.0, 1.1, 0.8]
    compared = bad = declined = bad_decline = 0
    ids = (ctypes.c_int32 * 4096)()
    for kind in range(10):
        base = make_logits(rng, n, kind)
        for t in temps:
            for k in topks:
                for p in topps:
                    for mp in minps:
                        if t == 0 and (p < 1 or mp):
                            continue
                        pen = pens[int(rng.integers(0, 3))]
                        prm = Params(t, k, p, mp, pen, 64, int(rng.integers(1, 1 << 30)), 0)
                        s = lib.sampler_create(ctypes.byref(prm), n)
                        for w in range(80):
                            lib.sampler_accept(s, int(rng.integers(0, 64 if w % 3 else n)))
                        for _ in range(2):
                            np_ = lib.sampler_penalty_ids(s, ids, 4096)
                            u = lib.sampler_peek_uniform(s)
                            a = dict(temperature=t, top_k=k, top_p=p, min_p=mp, penalty=pen,
                                     log_min_p=LIBM.logf(mp) if mp > 0 else 0.0, pen_ids=list(ids[:np_]),
                                     inv_temp=1.0 / t if t > 0 else 0.0, u01=u if t > 0 else 0.0)
                            copy = base.copy()
                            th = lib.sampler_sample(s, copy.ctypes.data, n)
                            used_h = lib.sampler_peek_uniform(s) != u
                            tok, used, dec = emulate(base, a)
                            if dec != (not (1 <= k < n and k <= TOPK_MAX)):
                                bad_decline += 1
                            if dec:
                                declined += 1
                            else:
                                compared += 1
                                if tok != th or bool(used) != used_h:
                                    bad += 1
                                    if bad <= 10:
                                        print(f"vocab {n} kind {kind} t {t} k {k} p {p} min_p {mp} pen {pen}: host {th} "
                                              f"(used {used_h}), emulation {tok} (used {used})")
                            lib.sampler_accept(s, th)
                        lib.sampler_free(s)
    print(f"vocab {n}: {compared} draws compared, {bad} differ; {declined} declined (the sort takes them), "
          f"{bad_decline} wrongly")
    return bad + bad_decline


def main():
    lib = load_sampler()
    rng = np.random.default_rng(7)
    sizes = [int(x) for x in sys.argv[1:]] or [1000, 5000, 128256]
    bad = sum(run(lib, n, rng) for n in sizes)
    print("merge: " + ", ".join(f"{k} {v}" for k, v in sorted(STATS.items())))
    print("all draws equal" if bad == 0 else f"{bad} draws differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
