#!/usr/bin/env python3
"""Writes history_v1.db: a history database in schema version 1, the first schema bitnet-chat
shipped (linear messages: no parent_id, no per-reply backend/model/sampling, no active_leaf,
no full-text index). tests/unit/test_store.c copies it and checks that opening migrates it to the
current version without losing or changing anything.

The v1 DDL below is the text of migration 1 in app/store.c; keep the two identical.
Run: python3 tests/data/store/gen_v1_fixture.py tests/data/store/history_v1.db
"""
import json
import os
import sqlite3
import sys

V1 = """
CREATE TABLE sessions(
  id INTEGER PRIMARY KEY,
  title TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  model_name TEXT NOT NULL DEFAULT '',
  model_path TEXT NOT NULL DEFAULT '',
  system_prompt TEXT NOT NULL DEFAULT '',
  sampling TEXT NOT NULL DEFAULT '{}');
CREATE TABLE messages(
  id INTEGER PRIMARY KEY,
  session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
  role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
  text TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL DEFAULT 0,
  reply_tokens INTEGER NOT NULL DEFAULT 0,
  ttft_ms REAL NOT NULL DEFAULT 0,
  tok_per_s REAL NOT NULL DEFAULT 0,
  stop_reason TEXT NOT NULL DEFAULT '',
  interrupted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX messages_by_session ON messages(session_id, id);
CREATE INDEX sessions_by_update ON sessions(updated_at);
"""

T0 = 1767225600000  # 2026-01-01 00:00:00 UTC, in ms

SAMPLING = {"temperature": 0.7, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
            "repeat_penalty": 1.1, "max_tokens": 1024, "seed": 42}

SESSIONS = [
    # id, title, created, updated, model_name, model_path, system_prompt, sampling
    (1, "Rust or C for a tokenizer?", T0, T0 + 65000, "bitnet-b1.58-2B-4T",
     "/models/ggml-model-i2_s.gguf", "You are a concise assistant.", SAMPLING),
    (2, "Crème brûlée", T0 + 3600000, T0 + 3700000, "bitnet-demo", "assets/bitnet-demo.gguf",
     "", {"temperature": 0.0, "top_k": 0, "max_tokens": 256, "seed": 7}),
    # Hostile text: terminal escape sequences must never reach a terminal raw (--show).
    (3, "Terminal \x1b[2J title", T0 - 86400000, T0 - 86000000, "bitnet-demo", "", "", {}),
]

MESSAGES = [
    # id, session, role, text, created, prompt_toks, reply_toks, ttft, tok/s, stop, interrupted
    (1, 1, "user", "Rust or C for a tokenizer?\nIt must be fast.", T0 + 1000, 0, 0, 0, 0, "", 0),
    (2, 1, "assistant", "C, with a hash map for merges. Rust works too; the algorithm matters more.",
     T0 + 2000, 31, 17, 120.5, 48.25, "eos", 0),
    (3, 1, "user", "What about the regex pre-tokenizer?", T0 + 60000, 0, 0, 0, 0, "", 0),
    (4, 1, "assistant", "Use PCRE2 with JIT; the Llama 3 pattern needs Unicode classes.",
     T0 + 61000, 64, 15, 95.0, 51.5, "eos", 0),
    (5, 2, "user", "Recette de crème brûlée, s'il te plaît 🍮", T0 + 3601000, 0, 0, 0, 0, "", 0),
    (6, 2, "assistant", "Crème : 50 cl, 6 jaunes, 80 g de sucre. Cuire à 100 °C pendant",
     T0 + 3602000, 22, 18, 210.0, 12.75, "", 1),
    (7, 3, "user", "show me \x1b]0;pwned\x07 escapes", T0 - 86300000, 0, 0, 0, 0, "", 0),
    (8, 3, "assistant", "ok \x1b[31mred\x1b[0m \u009b", T0 - 86200000, 5, 4, 10.0, 20.0, "eos", 0),
]


def main(out):
    if os.path.exists(out):
        os.remove(out)
    db = sqlite3.connect(out)
    db.executescript(V1)
    for s in SESSIONS:
        db.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)",
                   s[:7] + (json.dumps(s[7], sort_keys=True),))
    for m in MESSAGES:
        db.execute("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?)", m)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.execute("VACUUM")
    db.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(os.path.dirname(os.path.abspath(__file__)), "history_v1.db"))
