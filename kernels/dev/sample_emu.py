#!/usr/bin/env python3
"""A CPU emulation of kcuda_sample's algorithm (kernels/cuda/sample.cu) against the host sampler.

Lab check, run by hand (numpy; builds infer/sampler.c into a shared library with cc):
    python3 kernels/dev/sample_emu.py [vocab ...]      (default: 1000 5000 128256)
It follows the kernels step by step where their logic lives: the rank keys, the plan of the scan
kernel's last block, the three radix levels (histograms of key bits 31..20, 19..8, 7..0 and the
bucket of the k-th key), the pool or the per-block weight sums of the gather kernel, and its last
block's walk. The sums are added in another order than on the device (which adds them in trees);
like the device, they may differ from the host's left-to-right sums in the last bits. Each draw
is compared with the host sampler (infer/sampler.c, through ctypes) given the same logits,
penalty window and uniform: the token, whether the uniform was used, and that a declined draw
happens only where the bounds say so. It checks the algorithm, not the CUDA code (for that:
tests/test_sample_cuda.c on a GPU).
"""
import ctypes
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

THREADS, TOPK_CAP, POOL_CAP = 1024, 1024, 2048
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


def pool_goal(k):
    return min(POOL_CAP, max(4 * k, 256))


def find_bucket(hist, k):
    """The bucket holding the k-th key (1-based), the keys before it and in it; -1 if fewer."""
    cum = np.cumsum(hist)
    idx = int(np.searchsorted(cum, k))  # first bin with cum >= k
    if idx >= len(hist):
        return -1, 0, 0
    return idx, int(cum[idx] - hist[idx]), int(hist[idx])


PATHS = {}  # how the draws went (plan, radix levels, declines), for the summary


def path(name):
    PATHS[name] = PATHS.get(name, 0) + 1


def emulate(logits, a):
    """kcuda_sample's draw: (token, used, declined); a: dict of KcudaSampleArgs' fields."""
    n = len(logits)
    v = logits.astype(np.float32).copy()
    for i in a["pen_ids"]:  # penalised (a float divide or multiply, as on the device)
        v[i] = v[i] / np.float32(a["penalty"]) if v[i] > 0 else v[i] * np.float32(a["penalty"])
    keys = rank_keys(v)
    vals = v.astype(np.float64)
    vals[vals == 0] = 0.0  # what key_value gives back: the penalised logit, -0 as +0
    valid = keys != KEY_NAN
    n_valid = int(valid.sum())
    combo = (keys.astype(np.uint64) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    best = int(combo.min())
    best_key, best_id = best >> 32, best & 0xFFFFFFFF
    greedy = not (a["temperature"] > 0)
    if greedy:
        return (0 if keys[0] == KEY_NAN else best_id), 0, 0
    max_logit = key_value(best_key)
    if n_valid == 0 or max_logit == -math.inf:
        return (0 if n_valid == 0 else best_id), 0, 0
    top_k_on = 0 < a["top_k"] < n
    n_c = a["top_k"] if top_k_on and a["top_k"] < n_valid else n_valid
    minp_on = a["min_p"] > 0 and n_c > 1
    minp_key = rank_key(np.float32(max_logit) + np.float32(a["log_min_p"])) if minp_on else KEY_ALL
    k = a["top_k"] if top_k_on else TOPK_CAP
    thresh = KEY_ALL
    if not top_k_on and not a["top_p"] < 1:
        path("vocabulary order")
        mode = "unranked"
        thresh = minp_key
    elif top_k_on and a["top_k"] > TOPK_CAP:
        path("declined: top-k above 1024")
        return -1, 0, 1
    elif not top_k_on and minp_on:
        path("pool: min-p's survivors")
        mode = "gather"
        thresh = minp_key
    elif n_valid <= k:
        path("pool: every valid logit")
        mode = "gather"
    else:  # radix select of the k-th key: level 1 (bits 31..20)
        vk = keys[valid]
        b, before, count = find_bucket(np.bincount(vk >> 20, minlength=4096), k)
        if b < 0:
            return -1, 0, 1
        mode = "gather"
        if before + count <= pool_goal(k):
            path("radix level 1")
            thresh = b << 20 | 0xFFFFF
        else:  # level 2 (bits 19..8)
            need, prefix = k - before, b
            sub = vk[(vk >> 20) == prefix]
            b2, bef2, cnt2 = find_bucket(np.bincount((sub >> 8) & 0xFFF, minlength=4096), need)
            if b2 < 0:
                return -1, 0, 1
            if before + bef2 + cnt2 <= pool_goal(k):
                path("radix level 2")
                thresh = prefix << 20 | b2 << 8 | 0xFF
            else:  # level 3 (bits 7..0)
                need -= bef2
                before += bef2
                prefix = prefix << 12 | b2
                sub = vk[(vk >> 8) == prefix]
                b3, bef3, cnt3 = find_bucket(np.bincount(sub & 0xFF, minlength=256), need)
                if b3 < 0 or before + bef3 + cnt3 > POOL_CAP:
                    path("declined: ties with the k-th")
                    return -1, 0, 1
                path("radix level 3")
                thresh = prefix << 8 | b3
    mx = max_logit
    if mode == "unranked":
        w = np.where(keys <= thresh, draw_weight(np.where(keys <= thresh, vals, mx), mx, a["inv_temp"]), 0.0)
        parts = [w[b:b + THREADS].sum() for b in range(0, n, THREADS)]
        z = sum(parts)
        u = a["u01"] * z
        cum = 0.0
        for bi, p in enumerate(parts):
            if u < cum + p:
                c = cum
                for i in range(bi * THREADS, n):
                    c += w[i]
                    if u < c:
                        return i, 1, 0
                break
            cum += p
        pos = np.nonzero(w > 0)[0]
        if len(pos):
            return int(pos[-1]), 1, 0
        return int(np.nonzero(keys <= thresh)[0][0]), 1, 0
    # gather: the pool, sorted
    sel = np.nonzero(keys <= thresh)[0]
    pn = len(sel)
    if pn > POOL_CAP:
        path("declined: min-p keeps too many")
        return -1, 0, 1
    pool = sorted(int(keys[i]) << 32 | int(i) for i in sel)
    lg = np.array([vals[p & 0xFFFFFFFF] for p in pool])
    m = n_c if top_k_on else pn
    complete = top_k_on or minp_on or pn == n_valid
    z = 0.0
    if a["top_p"] < 1 and n_c > 1:
        if top_k_on:
            z = float(mass_cut(lg[:m], mx).sum())
        else:
            parts = mass_cut(np.where(valid, vals, mx), mx) * valid
            z = float(sum(parts[b:b + THREADS].sum() for b in range(0, n, THREADS)))
    if minp_on:
        keep = sum(1 for r in range(m) if (pool[r] >> 32) <= minp_key)  # a prefix: the pool is sorted
        m = max(keep, 1)
    if a["top_p"] < 1 and m > 1:
        target = (a["top_p"] if a["top_p"] > 0 else 0.0) * z
        cum, hit = 0.0, -1
        for r in range(m):
            cum += math.exp(lg[r] - mx)
            if cum >= target:
                hit = r
                break
        if hit >= 0:
            m = hit + 1
        elif not complete:
            path("declined: nucleus past the pool")
            return -1, 0, 1
    w = draw_weight(lg[:m], mx, a["inv_temp"])
    u = a["u01"] * float(w.sum())
    cum = 0.0
    for r in range(m):
        cum += w[r]
        if u < cum:
            return pool[r] & 0xFFFFFFFF, 1, 0
    for r in range(m - 1, 0, -1):
        if w[r] > 0:
            return pool[r] & 0xFFFFFFFF, 1, 0
    return pool[0] & 0xFFFFFFFF, 1, 0


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
    else:  # peaked, NaN first
        v = -4 + 3 * f + np.where(rng.integers(0, 200, n) == 0, 9 * rng.random(n), 0)
        v[0] = np.nan
    return np.ascontiguousarray(v, dtype=np.float32)


def wide_nucleus(v, top_p, min_p):
    """The host's top-p keep count without top-k (to leave out its quickselect-ordered draws)."""
    s = np.sort(v[~np.isnan(v)])[::-1].astype(np.float64)
    mx = s[0]
    z = sum(math.exp(x - mx) for x in s if x - mx > -80)
    if min_p > 0:
        s = s[: max(1, int((s >= np.float32(mx) + LIBM.logf(min_p)).sum()))]
    cum = 0.0
    for i, x in enumerate(s):
        cum += math.exp(x - mx)
        if cum >= top_p * z:
            return i + 1
    return len(s)


def run(lib, n, rng):
    temps, topks, topps, minps, pens = [0.0, 0.7, 1.5], [0, 1, 40, 1000, 2000], [1.0, 0.95, 0.5, 0.0], \
        [0.0, 0.05, 0.5], [1.0, 1.1, 0.8]
    compared = bad = declined = wide = 0
    ids = (ctypes.c_int32 * 4096)()
    for kind in range(7):
        base = make_logits(rng, n, kind)
        for t in temps:
            for k in topks:
                for p in topps:
                    for mp in minps:
                        if t == 0 and (k or p < 1 or mp):
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
                            if dec:
                                declined += 1
                            elif t > 0 and (k <= 0 or k >= n) and p < 1 and n > 1024 and wide_nucleus(copy, p, mp) > 1024:
                                wide += 1
                            else:
                                compared += 1
                                if tok != th or bool(used) != used_h:
                                    bad += 1
                                    if bad <= 10:
                                        print(f"vocab {n} kind {kind} t {t} k {k} p {p} min_p {mp} pen {pen}: host {th} "
                                              f"(used {used_h}), emulation {tok} (used {used})")
                            lib.sampler_accept(s, th)
                        lib.sampler_free(s)
    print(f"vocab {n}: {compared} draws compared, {bad} differ; {declined} declined (the sort takes them); "
          f"{wide} from wide nuclei not compared")
    return bad


def main():
    lib = load_sampler()
    rng = np.random.default_rng(7)
    sizes = [int(x) for x in sys.argv[1:]] or [1000, 5000, 128256]
    bad = sum(run(lib, n, rng) for n in sizes)
    print("paths: " + ", ".join(f"{k} {v}" for k, v in sorted(PATHS.items())))
    print("all draws equal" if bad == 0 else f"{bad} draws differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
