"""Start-up cost of `swatch run --policy P` against plain `swatch run`: how long after the
harness starts `swatch run` the command runs its first instruction (a static C program that
prints CLOCK_MONOTONIC at the top of main: bench/workloads/first_insn.c), and the wall time of
the whole run (`swatch run -c -- CMD`, which exits once CMD has). The setups run interleaved,
``--runs`` times each; medians (and min/max) go to bench/results.json (key "startup") and are
printed as Markdown.

    sudo .venv/bin/python bench/startup_bench.py [--runs 10] [--policies no-network,...]
        [--lock /tmp/swatch-kernel.lock]

--policy builds a Landlock ruleset (read-only-fs: one handled-rights set, no grant; protect-
system: grants for the siblings of /etc, /usr, /boot and their ancestors) and/or a libseccomp
filter (no-network), both in swatch before CMD's exec. Nothing here is asserted on time.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "bench" / "workloads" / "first_insn.c"
PROG = ROOT / "build" / "bench" / "first_insn"
SWATCH = ROOT / ".venv" / "bin" / "swatch"
POLICIES = ("no-network", "read-only-fs", "protect-system")


def build() -> None:
    if PROG.exists() and PROG.stat().st_mtime >= SRC.stat().st_mtime:
        return
    PROG.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-O2", "-Wall", "-static", "-o", str(PROG), str(SRC)]
    if subprocess.run(cmd).returncode != 0:  # no static libc: the loader's time is then in
        subprocess.run([c for c in cmd if c != "-static"], check=True)  # every setup alike


@contextlib.contextmanager
def locked(path: str | None):  # type: ignore[no-untyped-def]
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def once(policy: str | None) -> tuple[float, float]:
    """(ms to CMD's first instruction, ms wall for the whole run) of one `swatch run`."""
    args = [str(SWATCH), "run", "-c"] + (["--policy", policy] if policy else []) + [
        "--", str(PROG)]
    start = time.monotonic_ns()
    r = subprocess.run(args, capture_output=True, text=True)
    end = time.monotonic_ns()
    if r.returncode != 0:
        sys.exit(f"startup_bench: {' '.join(args)} failed ({r.returncode}): {r.stderr[-400:]}")
    first = int(r.stdout.split()[0])
    return (first - start) / 1e6, (end - start) / 1e6


def summarize(xs: list[float]) -> dict:  # type: ignore[type-arg]
    return {"median_ms": round(statistics.median(xs), 2), "min_ms": round(min(xs), 2),
            "max_ms": round(max(xs), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--lock", default=None, help="flock this file around each run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("startup_bench: needs root (swatch run loads BPF)")
    build()
    setups: list[str | None] = [None, *[p for p in a.policies.split(",") if p]]
    first: dict[str, list[float]] = {str(s): [] for s in setups}
    wall: dict[str, list[float]] = {str(s): [] for s in setups}
    with locked(a.lock):
        once(None)  # warm the page cache and Python's imports once, unmeasured
    for _ in range(a.runs):
        for s in setups:
            with locked(a.lock):
                f, w = once(s)
            first[str(s)].append(f)
            wall[str(s)].append(w)
    base_first = statistics.median(first["None"])
    base_wall = statistics.median(wall["None"])
    rows = []
    for s in setups:
        key = str(s)
        rows.append({"setup": "swatch run" if s is None else f"swatch run --policy {s}",
                     "first_instruction": summarize(first[key]), "wall": summarize(wall[key]),
                     "added_first_ms": round(statistics.median(first[key]) - base_first, 2),
                     "added_wall_ms": round(statistics.median(wall[key]) - base_wall, 2)})
    results = json.loads(a.out.read_text()) if a.out.exists() else {}
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["startup"] = {"runs": a.runs, "cmd": str(PROG.relative_to(ROOT)), "rows": rows,
                          "kernel": os.uname().release, "time": when}
    a.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"| setup ({a.runs} runs) | to CMD's first instruction, median ms (min-max) | added "
          "| wall of `run -c`, median ms | added |")
    print("|---|---|---|---|---|")
    for r in rows:
        f, w = r["first_instruction"], r["wall"]
        print(f"| `{r['setup']}` | {f['median_ms']} ({f['min_ms']}-{f['max_ms']}) | "
              f"{r['added_first_ms']:+} | {w['median_ms']} | {r['added_wall_ms']:+} |")


if __name__ == "__main__":
    main()
