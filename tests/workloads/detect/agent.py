"""An agent-like program for swatch detect's labelled corpus: the loop of an LLM agent.

Ask the model (fake_llm.py) what to do, run the tool it names — as a subprocess or by reading
and writing files — append the result to the conversation, pause briefly to "think", repeat.
Three styles: ``coding`` (edits a small Python project and runs its tests), ``shell`` (runs
shell commands), ``toolheavy`` (many HTTP tool calls, now and then a subprocess).

    python3 agent.py --style coding --server http://127.0.0.1:PORT --workdir DIR [--seed 1]

Prints "ready PID" once its workspace exists, then loops until --seconds pass (or it is killed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT = {
    "calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
    "test_calc.py": (
        "import unittest\n\nfrom calc import add, mul\n\n\n"
        "class T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
        "    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n\n\n"
        "if __name__ == '__main__':\n    unittest.main()\n"),
}


def post(server: str, payload: dict) -> dict:
    req = urllib.request.Request(server + "/v1/chat/completions", json.dumps(payload).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def get(server: str, path: str) -> str:
    with urllib.request.urlopen(server + path, timeout=30) as r:
        return r.read().decode()


def run(argv: list[str] | str, cwd: Path, shell: bool = False) -> str:
    p = subprocess.run(argv, cwd=cwd, shell=shell, capture_output=True, text=True, timeout=60)
    return (p.stdout + p.stderr)[-2000:]


class Tools:
    def __init__(self, workdir: Path, server: str, rng: random.Random) -> None:
        self.dir = workdir
        self.server = server
        self.rng = rng

    # coding
    def read_file(self, a: dict) -> str:
        name = self.rng.choice(sorted(p.name for p in self.dir.glob("*.py")))
        return (self.dir / name).read_text()

    def write_file(self, a: dict) -> str:
        # the model's edit: a new helper function in calc.py (tests still pass)
        path = self.dir / "calc.py"
        text = path.read_text() + f"\n\ndef f{a['n']}(x):\n    return x + {a['n'] % 97}\n"
        path.write_text(text)
        (self.dir / "NOTES.md").open("a").write(f"- added f{a['n']}\n")
        return f"wrote {len(text)} bytes"

    def run_tests(self, a: dict) -> str:
        return run([sys.executable, "-m", "unittest", "-q", "test_calc"], self.dir)

    def grep(self, a: dict) -> str:
        return run(["grep", "-rn", "def ", "."], self.dir)

    def list_dir(self, a: dict) -> str:
        return run(["ls", "-la"], self.dir)

    def git_diff(self, a: dict) -> str:
        return run(["git", "diff", "--stat"], self.dir)

    # shell
    def run_shell(self, a: dict) -> str:
        return run(a["cmd"], self.dir, shell=True)

    # tool-heavy
    def web_search(self, a: dict) -> str:
        return get(self.server, f"/tool/search?q={a['n']}")

    def fetch_url(self, a: dict) -> str:
        text = get(self.server, f"/tool/fetch?u={a['n']}")
        (self.dir / f"page{a['n'] % 8}.txt").write_text(text)  # the agent's cache
        return text[:500]

    def run_python(self, a: dict) -> str:
        code = "import sys, glob; print(sum(len(open(p).read()) for p in glob.glob('*.txt')))"
        return run([sys.executable, "-c", code], self.dir)


def setup(style: str, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    if style == "coding":
        for name, text in PROJECT.items():
            (workdir / name).write_text(text)
        env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b",
               "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"}
        for argv in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "start"]):
            subprocess.run(argv, cwd=workdir, env=env, check=True, capture_output=True)
    else:
        (workdir / "notes.txt").write_text("".join(f"line {i}\n" for i in range(200)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--style", choices=["coding", "shell", "toolheavy"], required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=120.0)
    a = ap.parse_args()
    setup(a.style, a.workdir)
    rng = random.Random(a.seed)
    tools = Tools(a.workdir, a.server, rng)
    messages: list[dict] = [{"role": "system", "content": f"You are a {a.style} agent."}]
    transcript = (a.workdir / "transcript.jsonl").open("a")
    print(f"ready {os.getpid()}", flush=True)
    end = time.monotonic() + a.seconds
    step = 0
    while time.monotonic() < end:
        reply = post(a.server, {"model": "fake-1", "messages": messages[-6:], "style": a.style,
                                "step": step, "seed": a.seed})
        msg = reply["choices"][0]["message"]
        messages.append(msg)
        for call in msg["tool_calls"]:
            fn = call["function"]
            out = getattr(tools, fn["name"])(json.loads(fn["arguments"]))
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": out})
            record = {"step": step, "tool": fn["name"], "out": out[:200]}
            transcript.write(json.dumps(record) + "\n")
        transcript.flush()
        time.sleep(rng.uniform(0.05, 0.4))  # the agent "thinks" before its next request
        step += 1


if __name__ == "__main__":
    main()
