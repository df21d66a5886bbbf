"""The per-call cost of `--tls`: SSL_write of small buffers over a TLS connection on
127.0.0.1, timed by the client's own loop (ns per SSL_write, median of runs), in four setups:

- untraced
- `swatch run` (the tracer, no --tls)
- `swatch run --tls` (the uprobes on SSL_write_ex: entry + return, the plaintext copied)
- bystander: the untraced client while a `swatch run --tls -- sleep` runs elsewhere (the
  uprobe still traps in every process mapping libssl; the membership test turns it away)

    sudo .venv/bin/python bench/tls_bench.py [--calls N] [--size BYTES] [--runs R] [--json FILE]

On a shared machine: `flock /tmp/swatch-kernel.lock .venv/bin/python bench/tls_bench.py`.
The server (a thread of this process, reading and discarding) is not traced.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWATCH = str(Path(sys.executable).parent / "swatch")
sys.path.insert(0, str(ROOT / "tests"))

CLIENT = r"""
import os, socket, ssl, sys, time
ca, port, calls, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
buf = b"x" * size
for _ in range(1000):
    s.send(buf)
t0 = time.perf_counter_ns()
for _ in range(calls):
    s.send(buf)
ns = time.perf_counter_ns() - t0
print(f"RESULT calls={calls} ns_per_call={ns / calls:.1f}", flush=True)
s.close()
"""


def serve(ctx: ssl.SSLContext, listener: socket.socket) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=drain, args=(ctx, conn), daemon=True).start()


def drain(ctx: ssl.SSLContext, conn: socket.socket) -> None:
    try:
        with ctx.wrap_socket(conn, server_side=True) as s:
            while s.recv(1 << 16):
                pass
    except (OSError, ssl.SSLError):
        pass


def result(out: str) -> float:
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return float(line.split("ns_per_call=")[1])
    raise RuntimeError(f"no RESULT line in: {out[-500:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("tls_bench: needs root (it loads BPF programs)", file=sys.stderr)
        return 2
    from fake_model import make_certs

    d = Path(tempfile.mkdtemp(prefix="swatch-tls-bench-"))
    ca, cert, key = make_certs(d)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    threading.Thread(target=serve, args=(ctx, listener), daemon=True).start()
    client = d / "client.py"
    client.write_text(CLIENT)
    base = [sys.executable, str(client), str(ca), str(port), str(args.calls), str(args.size)]
    setups = {
        "untraced": base,
        "swatch run": [SWATCH, "run", "-o", "/dev/null", "--", *base],
        "swatch run --tls": [SWATCH, "run", "--tls", "-o", "/dev/null", "--", *base],
        "bystander (--tls elsewhere)": base,
    }
    times: dict[str, list[float]] = {k: [] for k in setups}
    for _ in range(args.runs):  # interleaved
        for name, argv in setups.items():
            other = None
            if name.startswith("bystander"):
                other = subprocess.Popen([SWATCH, "run", "--tls", "--", "sleep", "600"],
                                         stderr=subprocess.PIPE, text=True)
                assert other.stderr is not None
                while "--tls: uprobes on" not in other.stderr.readline():
                    pass
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, check=True)
                times[name].append(result(proc.stdout))
            finally:
                if other is not None:
                    other.terminate()
                    other.wait()
    base_ns = statistics.median(times["untraced"])
    rows = []
    print(f"SSL_write of {args.size} bytes, {args.calls} calls, median of {args.runs} runs")
    print(f"{'setup':30} {'ns/call':>10} {'added ns':>10}")
    for name, vals in times.items():
        med = statistics.median(vals)
        rows.append({"setup": name, "ns_per_call": med, "added_ns": med - base_ns,
                     "runs": vals})
        print(f"{name:30} {med:10.0f} {med - base_ns:10.0f}")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "calls": args.calls,
                                         "rows": rows}, indent=1) + "\n")
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
