#!/usr/bin/env python3
"""`make demo`: trace a small built-in workload with `swatch run` and show what the kernel saw.

The workload (build/workloads/known) opens and reads a file, writes another, fails to open a
missing one, connects to a local TCP listener and sends to it, forks and execs /bin/true, deletes
a file and exits with code 3 — the same program the tests check event by event.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWATCH = str(Path(sys.executable).parent / "swatch")


def main() -> int:
    if os.geteuid() != 0:
        print("make demo loads BPF programs: run it as root (sudo make demo)", file=sys.stderr)
        return 1
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(64)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="swatch-demo-") as d:
        (Path(d) / "input.txt").write_bytes(b"#" * 2000)
        cmd = [SWATCH, "run", "--filter", "default", "--",
               str(ROOT / "build" / "workloads" / "known"), d, str(port)]
        print("$ swatch run --filter default -- build/workloads/known", d, port, flush=True)
        code = subprocess.call(cmd)
    print(f"\n(the workload exits with code 3 on purpose; swatch passed on {code})")
    if code != 3:
        print(f"demo: error: swatch run exited {code}, not the workload's 3", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
