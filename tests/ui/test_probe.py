#!/usr/bin/env python3
"""The start-up width probe (ui/screen.c) against a terminal we play ourselves, in a pty.

The program writes three samples (an emoji ZWJ family, a thumbs-up with a skin tone, a heart
with VS16), each followed by a cursor position request. We answer as a terminal that does not
join ZWJ sequences (family 6 columns), joins skin tones (2) and widens VS16 (2), after typing a
line *before* the answers: the line must still arrive as input (kept, not lost in the probe),
and the program must report the conventions it measured. Then a terminal that never answers:
the program must start anyway (after the probe's timeout) with the defaults.
usage: test_probe.py PATH/bitnet-chat-fake
"""
import fcntl
import os
import pty
import select
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import time


def run(fake, tmp, answers, typed):
    db = os.path.join(tmp, "p.db")
    for s in ("", "-wal", "-shm"):
        if os.path.exists(db + s):
            os.unlink(db + s)
    open(os.path.join(tmp, "m.gguf"), "w").close()
    env = dict(os.environ, TERM="xterm-256color", LC_ALL="C.UTF-8", HOME=tmp,
               XDG_DATA_HOME=os.path.join(tmp, "data"), BN_FAKE_TOKENS="2", BN_FAKE_LOAD_MS="50",
               BN_FAKE_REPORT_TERM="1")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    p = subprocess.Popen([fake, "--db", db, os.path.join(tmp, "m.gguf")], stdin=slave,
                         stdout=slave, stderr=slave, env=env, start_new_session=True,
                         preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    out = b""
    answered = False
    reply = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.05)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not answered and out.count(b"\x1b[6n") >= 3:
            os.write(master, typed + answers)  # typed ahead, then the terminal's answers
            answered = True
        if answered and reply is None and os.path.exists(db):
            try:
                con = sqlite3.connect(db, timeout=1)
                row = con.execute("select text from messages where role='assistant' and"
                                  " stop_reason != '' order by id desc limit 1").fetchone()
                con.close()
            except sqlite3.Error:
                row = None
            if row:
                reply = row[0]
                os.write(master, b"\x04")
        if p.poll() is not None:
            # drain what is left
            while True:
                r, _, _ = select.select([master], [], [], 0.1)
                if not r:
                    break
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            break
    if p.poll() is None:
        p.kill()
        p.wait()
    os.close(master)
    return p.returncode, reply, out


def main():
    fake = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="bnprobe.")
    bad = 0
    # 1. A terminal that answers: family at column 7 (6 wide), thumbs at 3 (2), heart at 3 (2).
    rc, reply, out = run(fake, tmp, b"\x1b[1;7R\x1b[1;3R\x1b[1;3R", b"typed early\r")
    if rc != 0:
        print(f"FAIL: exit status {rc}")
        bad += 1
    if not reply or "You said: typed early." not in reply:
        print(f"FAIL: the line typed during the probe was lost (reply: {reply!r})")
        bad += 1
    if b"terminal: zwj_joins=0 modifier_joins=1 vs16_widens=1" not in out:
        print("FAIL: the measured conventions were not taken: " +
              repr(out[out.rfind(b"terminal:"):][:80]))
        bad += 1
    # 2. A terminal that never answers: starts anyway, with the defaults (tmux 3.3's).
    t0 = time.monotonic()
    rc, reply, out = run(fake, tmp, b"", b"no answers\r")
    if rc != 0 or not reply or "You said: no answers." not in reply:
        print(f"FAIL: without answers (rc {rc}, reply {reply!r})")
        bad += 1
    if b"terminal: zwj_joins=1 modifier_joins=0 vs16_widens=0" not in out:
        print("FAIL: defaults not kept without answers")
        bad += 1
    subprocess.run(["rm", "-rf", tmp])
    if bad:
        sys.exit(1)
    print(f"test_probe: all checks passed (no-answer run took {time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    main()
