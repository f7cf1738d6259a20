#!/usr/bin/env python3
"""Decode speed with the full-screen UI open against `bitnet-chat -p`, without tmux.

Each UI run starts `bitnet-chat` in a pseudo-terminal of a fixed size (TERM=xterm-256color),
keeps reading what it draws (as a terminal would, so that drawing never blocks on a full pty),
types the prompt and Enter, waits until the reply is final in the session store (--db, a fresh
file per run), then sends Ctrl-D. The reply's tokens/s is the one the engine measured and the
store kept (messages.tok_per_s: reply tokens / decode time). Each -p run prints the same figure
on stderr ("reply N tokens (X tok/s)"). Runs alternate in ABBA order so that a drift in the
machine's state falls on both sides alike; the same options and seed are passed to both, so
both write the same tokens (checked: the token counts must match).

Also reported per UI run, from /proc: the CPU time of the UI (main) thread against the whole
program while the reply was written, and how many bytes the UI drew per second.

usage: bench_ui_vs_prompt.py BITNET_CHAT MODEL [--runs N] [--label L] [-- OPTIONS...]
Prints every run, then median, min-max spread, the ratio UI/-p of the medians with a 95%
bootstrap interval, and the per-pair ratios.
"""
import argparse
import os
import pty
import random
import re
import select
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import fcntl
import termios

PROMPT = "Tell me a long story about a lighthouse keeper."
REPLY_RE = re.compile(rb"reply (\d+) tokens \(([0-9.]+) tok/s\)")


def cpu_ticks(pid, tid=None):
    """utime+stime of one thread (tid) or of all the process's threads, in clock ticks."""
    try:
        if tid is not None:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        total = 0
        for t in os.listdir(f"/proc/{pid}/task"):
            total += cpu_ticks(pid, t)
        return total
    except (OSError, IndexError, ValueError):
        return None


def run_p(binary, model, opts):
    # stdin from /dev/null: -p adds a stdin that is not a terminal to the prompt.
    r = subprocess.run([binary, "-p", PROMPT, "--no-history", *opts, model],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=300)
    m = REPLY_RE.search(r.stderr)
    if r.returncode != 0 or not m:
        sys.exit(f"-p run failed (rc {r.returncode}): {r.stderr.decode(errors='replace')}")
    return int(m.group(1)), float(m.group(2))


def final_reply(db):
    """(tokens, tok/s) of the finished assistant reply in db, or None while it is running."""
    if not os.path.exists(db):
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("select reply_tokens, tok_per_s, stop_reason, interrupted from messages"
                              " where role='assistant' order by id desc limit 1").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    if not row or not row[2]:
        return None  # not saved yet, or only a checkpoint of a reply still being written
    if row[3]:
        sys.exit("the UI reply was marked interrupted")
    return int(row[0]), float(row[1])


def run_ui(binary, model, opts, cols, rows, tmp):
    db = os.path.join(tmp, "ui.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    env = dict(os.environ, TERM="xterm-256color", LC_ALL="C.UTF-8", LANG="C.UTF-8",
               HOME=os.path.join(tmp, "home"), XDG_DATA_HOME=os.path.join(tmp, "data"),
               XDG_CONFIG_HOME=os.path.join(tmp, "config"))
    env.pop("NO_COLOR", None)
    env.pop("LINES", None)
    env.pop("COLUMNS", None)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([binary, "--db", db, *opts, model], stdin=slave, stdout=slave,
                            stderr=slave, env=env, start_new_session=True, close_fds=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    drawn = bytearray()
    state = "loading"
    t_sent = t_done = None
    cpu0 = None
    result = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.01)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break  # the program closed the terminal
                if not chunk:
                    break
                if state == "writing":
                    drawn_bytes_during[0] += len(chunk)
                drawn += chunk if len(drawn) < 1 << 20 else b""
            if state == "loading" and (b"Loaded" in drawn or b"Could not load" in drawn):
                if b"Could not load" in drawn:
                    sys.exit("the UI could not load the model")
                cpu0 = (cpu_ticks(proc.pid, proc.pid), cpu_ticks(proc.pid))
                drawn_bytes_during = [0]
                os.write(master, PROMPT.encode() + b"\r")
                t_sent = time.monotonic()
                state = "writing"
            elif state == "writing":
                result = final_reply(db)
                if result:
                    t_done = time.monotonic()
                    cpu1 = (cpu_ticks(proc.pid, proc.pid), cpu_ticks(proc.pid))
                    os.write(master, b"\x04")  # Ctrl-D on the empty input line: quit
                    state = "quitting"
            elif state == "quitting" and proc.poll() is not None:
                break
        else:
            sys.exit(f"UI run timed out in state {state}")
    finally:
        if proc.poll() is None:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.close(master)
    if proc.returncode != 0:
        sys.exit(f"the UI exited with {proc.returncode}")
    ui_share = None
    if cpu0 and None not in cpu0 and None not in cpu1 and cpu1[1] > cpu0[1]:
        ui_share = (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])
    secs = max(t_done - t_sent, 1e-6)
    return result[0], result[1], ui_share, drawn_bytes_during[0] / secs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--cols", type=int, default=120)
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--label", default="")
    argv = sys.argv[1:]
    opts = argv[argv.index("--") + 1:] if "--" in argv else []
    a = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    a.opts = opts
    tmp = tempfile.mkdtemp(prefix="bnbench.")
    for d in ("home", "data", "config"):
        os.makedirs(os.path.join(tmp, d))
    print(f"== {a.label or 'UI vs -p'}")
    print(f"method: {a.runs} alternating (ABBA) runs of '-p' and the UI in a {a.cols}x{a.rows} pty"
          f" (TERM=xterm-256color); prompt \"{PROMPT}\"; options: {' '.join(a.opts)};"
          f" tok/s as measured by the engine (reply tokens / decode time): -p from stderr, UI"
          f" from the session store")
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    p_rates, u_rates, shares, bps = [], [], [], []
    try:
        for i in range(a.runs):
            order = ("p", "ui") if i % 4 in (0, 3) else ("ui", "p")
            for side in order:
                if side == "p":
                    p_tok, p_rate = run_p(a.binary, a.model, a.opts)
                else:
                    u_tok, u_rate, share, rate = run_ui(a.binary, a.model, a.opts, a.cols, a.rows, tmp)
            if p_tok != u_tok:
                sys.exit(f"run {i + 1}: -p wrote {p_tok} tokens, the UI {u_tok}: not the same reply")
            p_rates.append(p_rate)
            u_rates.append(u_rate)
            if share:
                shares.append(share)
            bps.append(rate)
            print(f"run {i + 1}: {p_tok} tokens; -p {p_rate:.1f} tok/s | UI {u_rate:.1f} tok/s"
                  f" (UI drew {rate / 1024:.1f} KiB/s)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mp, mu = statistics.median(p_rates), statistics.median(u_rates)
    print(f"-p: median {mp:.1f} tok/s, spread {min(p_rates):.1f}-{max(p_rates):.1f}")
    print(f"UI: median {mu:.1f} tok/s, spread {min(u_rates):.1f}-{max(u_rates):.1f}")
    if shares:
        m = sum(s[0] for s in shares)
        t = sum(s[1] for s in shares)
        print(f"UI (main) thread: {100.0 * m / t:.1f}% of the program's CPU time while replies were"
              f" written ({m} of {t} clock ticks)")
    pairs = sorted(u / p for u, p in zip(u_rates, p_rates))
    # 95% bootstrap interval of the ratio of medians: resample the runs (pairs) with
    # replacement, a fixed seed so that the figure is reproducible from the printed runs.
    rng = random.Random(1)
    n = len(p_rates)
    boot = []
    for _ in range(4000):
        idx = [rng.randrange(n) for _ in range(n)]
        boot.append(statistics.median(u_rates[i] for i in idx) / statistics.median(p_rates[i] for i in idx))
    boot.sort()
    lo, hi = boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1]
    print(f"ratio UI/-p of the medians: {mu / mp:.3f}, 95% bootstrap interval {lo:.3f}-{hi:.3f}"
          f" (per-pair ratios {pairs[0]:.3f}-{pairs[-1]:.3f}, median {statistics.median(pairs):.3f})")


if __name__ == "__main__":
    main()
