#!/usr/bin/env python3
"""Alternated rounds of the CPU peer comparison (run by kernels/dev/bench_cpu_peers.sh, which
builds the peers and the models in PEERS). Python standard library only.

One round runs each configuration once, in an order rotated every round:
  ours-p    bitnet-chat -p on i2s.gguf: a 512-token prompt (prefill figure), and a short prompt
            with -n 64 (decode figure), greedy; figures from its stderr line
  ours-int8 the same short-prompt decode with --lm-head int8 (the optional int8 lm_head: 0.85 GB
            read per token instead of 1.18)
  bn        bitnet.cpp llama-bench on the same i2s.gguf: -p 512 -n 64 -r 1
  ik-rtr    ik_llama.cpp llama-bench on iq2bn.gguf with -rtr 1 (run-time repack): -p 512 -n 64 -r 1
Peak RSS of each process comes from wait4; the 1-minute load average is recorded before each run. Cells: median (min-max) over rounds; ratios ours/peer
are taken within a round, then the median. Once, after the rounds: bitnet-chat bench --model
(the same file through the backend alone, weights copied vs mapped, int8 lm_head) and the
engine's per-token overhead of -p (its decode against the backend-only decode of that bench)."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

TEXT = ("The history of computing is a story of people who wanted to count faster than their hands "
        "allowed. Early machines used gears and levers, later ones used relays and tubes, and today "
        "a single chip holds billions of switches that open and close in a fraction of a nanosecond. ")


def run(cmd):
    """Runs cmd; returns (stdout, stderr, seconds)."""
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), time.time() - t0


def run_rss(cmd):
    """Like run, with the peak RSS (MiB) of the child from wait4."""
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # read both pipes fully, then reap with wait4 for the child's rusage
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    secs = time.time() - t0
    if p.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-2000:])
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return out.decode(errors="replace"), err.decode(errors="replace"), secs, ru.ru_maxrss / 1024.0


def prompt_of(bc, model, n_target):
    """A text whose -p prompt (chat template included) is n_target tokens."""
    def ntok(text):
        out, _, _ = run([bc, "tokenize", model, text])
        return len(out.split())
    _, err, _, _ = run_rss([bc, "-p", "Hi", "-m", model, "--no-history", "--temp", "0", "-n", "1", "-t", "1"])
    m = re.search(r"prompt (\d+) tokens", err)
    overhead = int(m.group(1)) - ntok("Hi")
    words = (TEXT * 40).split()
    lo, hi = 1, len(words)
    while lo < hi:  # fewest words with at least n_target - overhead tokens
        mid = (lo + hi) // 2
        if ntok(" ".join(words[:mid])) >= n_target - overhead:
            hi = mid
        else:
            lo = mid + 1
    return " ".join(words[:lo])


def ours_p(bc, model, prompt, n, threads, extra=()):
    _, err, secs, rss = run_rss([bc, "-p", prompt, "-m", model, "-b", "cpu", "--no-history", "--temp", "0",
                                 "-n", str(n), "-t", str(threads)] + list(extra))
    # a 1-token reply has no decode rate: "(- tok/s)"
    m = re.search(r"prompt (\d+) tokens \(([\d.]+) tok/s\), reply (\d+) tokens \(([\d.]+|-) tok/s\)", err)
    if not m:
        raise SystemExit("cannot read bitnet-chat's stats line:\n" + err[-1000:])
    return {"pp_tokens": int(m.group(1)), "pp": float(m.group(2)), "tg_tokens": int(m.group(3)),
            "tg": float(m.group(4)) if m.group(4) != "-" else 0.0, "rss": rss, "secs": secs}


def llama_bench(binary, model, threads, extra):
    out, _, secs, rss = run_rss([binary, "-m", model, "-t", str(threads), "-p", "512", "-n", "64",
                                 "-r", "1", "-o", "json"] + extra)
    recs = json.loads(out)
    r = {"rss": rss, "secs": secs}
    for rec in recs:
        if rec.get("n_prompt") == 512 and rec.get("n_gen") == 0:
            r["pp"] = float(rec["avg_ts"])
        if rec.get("n_gen") == 64 and rec.get("n_prompt") == 0:
            r["tg"] = float(rec["avg_ts"])
    return r


def cell(xs):
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--bitnet-chat", required=True)
    a = ap.parse_args()
    bc, P = a.bitnet_chat, a.peers
    i2s, iq2 = f"{P}/models/i2s.gguf", f"{P}/models/iq2bn.gguf"
    ik_bench, bn_bench = f"{P}/ik/build/bin/llama-bench", f"{P}/bitnet/build/bin/llama-bench"
    long_prompt = prompt_of(bc, i2s, 512)
    short_prompt = "Write a short story about a robot."
    log = open(f"{P}/logs/rounds-{time.strftime('%Y%m%d-%H%M%S')}.jsonl", "w")
    configs = {
        # prefill figures from the long prompt, decode figures (and RSS) from the short one
        "ours-p": lambda: {**{k: v for k, v in ours_p(bc, i2s, long_prompt, 1, a.threads).items() if k.startswith("pp")},
                           **{k: v for k, v in ours_p(bc, i2s, short_prompt, 64, a.threads).items() if not k.startswith("pp")}},
        "ours-int8": lambda: {k: v for k, v in ours_p(bc, i2s, short_prompt, 64, a.threads, ["--lm-head", "int8"]).items()
                              if not k.startswith("pp")},
        "bn": lambda: llama_bench(bn_bench, i2s, a.threads, []),
        "ik-rtr": lambda: llama_bench(ik_bench, iq2, a.threads, ["-rtr", "1"]),
    }
    # a peer whose build or model is missing is left out (with a note), not waited for
    for n, need in (("bn", [bn_bench]), ("ik-rtr", [ik_bench, iq2])):
        missing = [f for f in need if not os.path.exists(f)]
        if missing:
            print(f"note: {n} left out, missing {', '.join(missing)}", file=sys.stderr)
            del configs[n]
    names = list(configs)
    res = {n: [] for n in names}
    t_start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            load = os.getloadavg()[0]
            x = configs[n]()
            x["round"], x["config"], x["load"] = r, n, load
            res[n].append(x)
            log.write(json.dumps(x) + "\n")
            log.flush()
            print(f"round {r + 1}/{a.rounds} {n}: pp {x.get('pp', 0):.1f} tg {x.get('tg', 0):.1f} tok/s "
                  f"rss {x['rss']:.0f} MiB (load {x['load']:.1f})", file=sys.stderr)
    t_end = time.strftime("%H:%M UTC", time.gmtime())
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    loads = [x["load"] for n in names for x in res[n]]
    print(f"\nCPU peers, {t_start} - {t_end}, {cpu}, {os.cpu_count()} CPUs, {a.threads} threads, "
          f"{a.rounds} alternated rounds; median (min-max), tok/s; 1-minute load average before the "
          f"runs {cell(loads)}")
    print(f"ours -p prompt: {res['ours-p'][0]['pp_tokens']} tokens for prefill; "
          f"reply tokens per decode run: {sorted(set(x['tg_tokens'] for x in res['ours-p']))}")
    print("\n| engine | prefill 512 tok/s | decode 64 tok/s | peak RSS MiB | load avg |\n|---|---:|---:|---:|---:|")
    label = {"ours-p": "bitnet-chat `-p` (I2_S file)", "ours-int8": "bitnet-chat `-p --lm-head int8`",
             "bn": "bitnet.cpp I2_S, llama-bench", "ik-rtr": "ik_llama.cpp IQ2_BN `-rtr 1`, llama-bench"}
    for n in names:
        pp = cell([x['pp'] for x in res[n]]) if "pp" in res[n][0] else "-"
        print(f"| {label[n]} | {pp} | {cell([x['tg'] for x in res[n]])} | "
              f"{statistics.median([x['rss'] for x in res[n]]):.0f} | {cell([x['load'] for x in res[n]])} |")
    for ours in ("ours-p", "ours-int8"):
        for peer in (p for p in ("ik-rtr", "bn") if p in res):
            rt = [o["tg"] / p["tg"] for o, p in zip(res[ours], res[peer])]
            if ours == "ours-p":
                rp = [o["pp"] / p["pp"] for o, p in zip(res[ours], res[peer])]
                pcell = f"{statistics.median(rp):.2f} ({min(rp):.2f}-{max(rp):.2f})"
            else:
                pcell = "-"
            print(f"| ratio {label[ours]} / {peer} (paired) | {pcell} | "
                  f"{statistics.median(rt):.2f} ({min(rt):.2f}-{max(rt):.2f}) | | |")
    # the backend alone on the same file, and the engine's per-token overhead in -p
    out, _, _, _ = run_rss([bc, "bench", "--backend", "cpu", "--quick", "-t", str(a.threads), "--model", i2s])
    print("\n`bitnet-chat bench --backend cpu --quick --model i2s.gguf` (once, after the rounds):")
    sec = out[out.index("On the real file"):] if "On the real file" in out else out
    print("\n".join(sec.splitlines()[:24]))
    m = re.search(r"\| huge-page copy \(default\) \|[^|]*\|[^|]*\|[^|]*\|[^|]*\| ([\d.]+) \|", sec)
    if m:
        tg_backend = float(m.group(1))
        tg_p = statistics.median([x["tg"] for x in res["ours-p"]])
        print(f"\nEngine per-token overhead of -p: 1/{tg_p:.1f} - 1/{tg_backend:.1f} tok/s = "
              f"{(1 / tg_p - 1 / tg_backend) * 1e3:.2f} ms per token (sampling, detokenize, channel, write; "
              f"not paired: the bench ran after the rounds)")
    print(f"\nraw records: {log.name}")


if __name__ == "__main__":
    main()
