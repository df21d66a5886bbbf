"""Non-agent: a web server under steady load (one process: the server's threads and a paced
load generator that keeps fetching its pages over new connections).

    python3 webserver.py --workdir DIR [--seed 1] [--rate 150] [--seconds 120]
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=150.0, help="requests per second")
    ap.add_argument("--seconds", type=float, default=120.0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    a.workdir.mkdir(parents=True, exist_ok=True)
    pages = []
    for i in range(20):
        (a.workdir / f"p{i}.html").write_bytes(b"<p>" * rng.randint(100, 5000))
        pages.append(f"p{i}.html")
    srv = ThreadingHTTPServer(("127.0.0.1", 0),
                              functools.partial(Quiet, directory=str(a.workdir)))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/"
    print(f"ready {os.getpid()}", flush=True)
    end = time.monotonic() + a.seconds
    period = 1.0 / a.rate
    nxt = time.monotonic()
    while time.monotonic() < end:  # steady: one request every `period` seconds
        with urllib.request.urlopen(url + rng.choice(pages), timeout=10) as r:
            r.read()
        nxt += period
        time.sleep(max(0.0, nxt - time.monotonic()))


if __name__ == "__main__":
    main()
