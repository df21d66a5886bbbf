"""`swatch run`: wall time from its start to the first event it writes (load → first event).

Each round starts `swatch run --json --filter all -o - -- /bin/true` and times, from the
moment it is started, the first JSON line on its stdout (the traced command's first syscall:
Python start-up, imports, BPF load and attach, the command's exec, the consumer's first
batch); also `swatch --version` (Python start-up and imports alone). BENCH_SWATCH_BEFORE names
another swatch executable to time in the same interleaved rounds.

    flock /tmp/swatch-kernel.lock .venv/bin/python bench/startup.py --runs 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWATCH = str(ROOT / ".venv" / "bin" / "swatch")


def first_event_s(swatch: str) -> float:
    start = time.monotonic()
    p = subprocess.Popen([swatch, "run", "--json", "--filter", "all", "-o", "-", "--",
                          "/bin/true"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    line = p.stdout.readline()
    took = time.monotonic() - start
    p.stdout.read()
    if p.wait(timeout=60) != 0 or not line.startswith(b"{"):
        raise SystemExit(f"startup: {swatch} run failed (first line {line[:80]!r})")
    return took


def version_s(swatch: str) -> float:
    start = time.monotonic()
    subprocess.run([swatch, "--version"], check=True, capture_output=True)
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    setups = {"this tree": SWATCH}
    if os.environ.get("BENCH_SWATCH_BEFORE"):
        setups["before"] = os.environ["BENCH_SWATCH_BEFORE"]
    first: dict[str, list[float]] = {k: [] for k in setups}
    imports: dict[str, list[float]] = {k: [] for k in setups}
    for _ in range(args.runs):
        for name, exe in setups.items():
            first[name].append(first_event_s(exe))
            imports[name].append(version_s(exe))
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {args.runs} interleaved rounds")
    print("| swatch | run → first event (s) | `swatch --version` (s) |")
    print("|---|---|---|")
    for name in setups:
        print(f"| {name} | {statistics.median(first[name]):.3f} | "
              f"{statistics.median(imports[name]):.3f} |")


if __name__ == "__main__":
    main()
