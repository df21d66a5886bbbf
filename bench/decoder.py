#!/usr/bin/env python3
"""Decoder throughput: how many events/s swatch turns into JSON lines (or human lines).

The producer is taken out of the measure: a traced storm fills a large ring buffer while no one
drains it, then the timer runs only while swatch drains the ring and writes every event to a file
on tmpfs — the same C-shim batching and formatting that `watch`/`run` use. Reports the median of
N runs, wall and CPU rates, and checks emitted == delivered + dropped.

    sudo .venv/bin/python bench/decoder.py [--events 2000000] [--runs 5] [--human]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syscall_watcher.trace.run import _held_child  # noqa: E402
from syscall_watcher.trace.stream import Streamer  # noqa: E402
from syscall_watcher.targets.target import Target  # noqa: E402
from syscall_watcher.trace.tracer import LoadedTracer  # noqa: E402


def one_run(events: int, json_mode: bool, out_dir: str) -> dict:  # type: ignore[type-arg]
    storm = str(ROOT / "build" / "workloads" / "storm")
    pid, release = _held_child(storm, [storm, "getppid", str(events)])
    tracer = LoadedTracer.load(Target(mode="pid", pid=pid), "all", ring_size=1 << 30)
    out_path = Path(out_dir) / "decoder.out"
    try:
        with open(out_path, "wb") as out, Streamer(tracer, out, json=json_mode) as s:
            os.close(release)
            os.waitpid(pid, 0)  # the storm runs to its end; nothing is drained meanwhile
            wall0, cpu0 = time.perf_counter(), time.process_time()
            s.finish()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            delivered = s.delivered
        counters = tracer.counters()
        size = out_path.stat().st_size
    finally:
        tracer.close()
        out_path.unlink(missing_ok=True)
    return {"delivered": delivered, "dropped": counters.total_dropped,
            "emitted": counters.total_emitted, "wall_s": wall, "cpu_s": cpu,
            "bytes": size, "events_per_s": delivered / wall,
            "events_per_cpu_s": delivered / cpu if cpu else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--human", action="store_true", help="human lines instead of JSON lines")
    ap.add_argument("--output", default=str(ROOT / "bench" / "decoder.json"))
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        for _ in range(args.runs):
            r = one_run(args.events, not args.human, d)
            assert r["emitted"] == r["delivered"] + r["dropped"], r
            runs.append(r)
    rate = statistics.median(r["events_per_s"] for r in runs)
    cpu_rate = statistics.median(r["events_per_cpu_s"] or 0 for r in runs)
    result = {"mode": "human" if args.human else "json", "events": args.events,
              "runs": runs, "median_events_per_s": rate, "median_events_per_cpu_s": cpu_rate,
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kernel": os.uname().release}
    Path(args.output).write_text(json.dumps(result, indent=1))
    print(f"decoder ({result['mode']}): median {rate:,.0f} events/s wall, "
          f"{cpu_rate:,.0f} events per CPU-second; {runs[0]['bytes'] / runs[0]['delivered']:.0f}"
          f" bytes/event; drops {sum(r['dropped'] for r in runs)} "
          f"(emitted == delivered + dropped in every run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
