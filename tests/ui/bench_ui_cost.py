#!/usr/bin/env python3
"""CPU time of the UI (main) thread while a reply streams, independent of machine load.

Runs one or more UI builds (e.g. bitnet-chat-fake of two versions) in a 120x40 pty over the
scripted engine at a fixed rate (BN_FAKE_RATE tokens/s), alternating builds, and prints the
main thread's CPU time per second of streaming from /proc/PID/task/PID/schedstat (nanosecond
on-CPU time, which other load on the machine does not inflate much, unlike wall-clock rates).
usage: bench_ui_cost.py [--secs S] [--rate R] [--runs N] FAKE_BINARY [FAKE_BINARY...]
"""
import argparse
import fcntl
import os
import pty
import select
import shutil
import statistics
import struct
import subprocess
import tempfile
import termios
import time


def on_cpu_ns(pid):
    with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def run(binary, secs, rate, tmp):
    db = os.path.join(tmp, "u.db")
    for s in ("", "-wal", "-shm"):
        if os.path.exists(db + s):
            os.unlink(db + s)
    model = os.path.join(tmp, "m.gguf")
    open(model, "w").close()
    env = dict(os.environ, TERM="xterm-256color", LC_ALL="C.UTF-8", HOME=tmp,
               XDG_DATA_HOME=os.path.join(tmp, "data"), BN_FAKE_TOKENS=str(int(rate * (secs + 2))),
               BN_FAKE_RATE=str(rate), BN_FAKE_LOAD_MS="50")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    p = subprocess.Popen([binary, "--db", db, model], stdin=slave, stdout=slave, stderr=slave,
                         env=env, start_new_session=True,
                         preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    seen = b""
    t0 = c0 = None
    result = None
    deadline = time.monotonic() + secs + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.01)
        if r:
            try:
                seen = (seen + os.read(master, 65536))[-4096:]
            except OSError:
                break
        if t0 is None and b"Loaded" in seen:
            time.sleep(0.2)
            os.write(master, b"tell me\r")
            time.sleep(0.5)  # past the first token and the start of streaming
            t0, c0 = time.monotonic(), on_cpu_ns(p.pid)
        if t0 is not None and time.monotonic() - t0 >= secs:
            result = (on_cpu_ns(p.pid) - c0) / 1e6 / (time.monotonic() - t0)
            break
    os.write(master, b"\x03")
    time.sleep(0.2)
    os.write(master, b"\x04")
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    os.close(master)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--secs", type=float, default=4)
    ap.add_argument("--rate", type=int, default=4000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bnuicost.")
    res = {b: [] for b in a.binaries}
    try:
        for _ in range(a.runs):
            for b in a.binaries:
                res[b].append(run(b, a.secs, a.rate, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"UI thread CPU per second of a {a.rate} tok/s reply (120x40, {a.secs:g} s, {a.runs} runs each, alternating):")
    for b, v in res.items():
        v = [x for x in v if x is not None]
        print(f"  {b}: median {statistics.median(v):.1f} ms/s (runs: {', '.join(f'{x:.1f}' for x in v)})")


if __name__ == "__main__":
    main()
