"""A local stand-in for a chat-completions API (127.0.0.1 only), for swatch detect's corpus.

POST /v1/chat/completions answers like an OpenAI-style endpoint: one assistant message that
names the tool to run next (``tool_calls``), chosen from the caller's style by a seeded
generator, after a "model latency" drawn from the same generator. GET /tool/search and
/tool/fetch stand in for the web tools a tool-heavy agent calls. Deterministic: the answer to
step n of style s with seed k is always the same.

    python3 fake_llm.py [--port 0]      # prints "ready http://127.0.0.1:PORT" when listening
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The tools each agent style knows (agent.py implements them), with how often a model picks
# each: a coding agent mostly reads, edits and runs the tests; a shell agent runs commands.
TOOLS = {
    "coding": [("read_file", 3), ("write_file", 3), ("run_tests", 3), ("grep", 2),
               ("list_dir", 1), ("git_diff", 1)],
    "shell": [("run_shell", 1)],
    "toolheavy": [("web_search", 3), ("fetch_url", 3), ("run_python", 1)],
}
SHELL_COMMANDS = [
    "ls -la", "find . -maxdepth 2 -name '*.txt'", "wc -l *.txt", "head -n 5 notes.txt",
    "df -h .", "ps -eo pid,comm | head -n 20", "uname -a", "du -sh .", "grep -c line *.txt",
    "sort notes.txt | uniq | tail -n 3", "cat /proc/loadavg", "date +%s > stamp.txt",
    "tar cf backup.tar notes.txt && ls -l backup.tar", "cp notes.txt notes.bak && wc -c notes.bak",
]
# Model latency (s): what the agent waits for an answer. Real models take 1-10 s; the corpus
# compresses the cycle so that a test window of a few seconds sees several tool calls.
LATENCY = (0.3, 1.0)


def answer(style: str, step: int, seed: int) -> tuple[dict, float]:
    rng = random.Random(f"{seed}:{style}:{step}")
    names, weights = zip(*TOOLS[style])
    calls = []
    n = rng.randint(2, 4) if style == "toolheavy" else 1
    for i in range(n):
        name = rng.choices(names, weights)[0]
        if style == "toolheavy" and i == 0 and step % 3 == 2:
            name = "run_python"  # every third step parses what it fetched in a subprocess
        args: dict[str, object] = {"n": rng.randint(0, 1_000_000)}
        if name == "run_shell":
            args["cmd"] = rng.choice(SHELL_COMMANDS)
        calls.append({"id": f"call_{step}_{i}", "type": "function",
                      "function": {"name": name, "arguments": json.dumps(args)}})
    body = {
        "id": f"chatcmpl-{seed}-{step}", "object": "chat.completion", "model": "fake-1",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "tool_calls": calls,
            # a model answer carries prose too: a few KB the agent reads and keeps
            "content": " ".join(f"tok{rng.randint(0, 9999)}"
                                for _ in range(rng.randint(200, 800)))}}],
        "usage": {"prompt_tokens": 1000 + 50 * step, "completion_tokens": 120},
    }
    return body, rng.uniform(*LATENCY)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection, as a plain urllib client does

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        body, latency = answer(req.get("style", "shell"), int(req.get("step", 0)),
                               int(req.get("seed", 0)))
        time.sleep(latency)
        self._send(json.dumps(body).encode())

    def do_GET(self) -> None:
        rng = random.Random(self.path)
        if self.path.startswith("/tool/"):
            text = "\n".join(f"result {i}: {rng.random():.6f} " + "x" * rng.randint(20, 200)
                             for i in range(rng.randint(5, 40)))
            time.sleep(rng.uniform(0.01, 0.05))  # a web service's latency
            self._send(text.encode(), "text/plain")
        else:
            self._send(b"ok\n", "text/plain")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client killed mid-answer (the corpus stops agents with SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    print(f"ready http://127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
