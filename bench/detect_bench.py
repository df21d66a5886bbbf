"""swatch detect on its labelled corpus (tests/workloads/detect): each workload observed through
the real kernel counters over several window lengths and seeds; a confusion table and the ROC
AUC per window length, written to bench/results.json (key "detect") and printed as Markdown.

    sudo .venv/bin/python bench/detect_bench.py [--windows 5,10] [--interval 1] [--seeds 1,2,3]
        [--lock /tmp/swatch-kernel.lock] [--raw]

--lock takes the lock (flock) for one window length and seed at a time (the corpus once, about
9 windows), so a long bench lets others use a shared kernel in between.

Timings of a window are not asserted anywhere; this measures how well the score separates.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "workloads" / "detect"))

import corpus  # noqa: E402

from syscall_watcher.detect import observe, score  # noqa: E402
from syscall_watcher.detect.session import load_stats_tracer  # noqa: E402
from syscall_watcher.targets.target import Target  # noqa: E402


@contextlib.contextmanager
def locked(path: str | None):
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def measure(w: corpus.Workload, server: str, seed: int, samples: int, interval: float,
            tmp: Path) -> dict:
    run = corpus.start(w, server, tmp / f"{w.name}-{seed}-{samples}", seed=seed,
                       seconds=3600)
    try:
        tracer, maps = load_stats_tracer(Target(mode="pid", pid=run.pid, label=w.name))
        try:
            obs = observe.observe(maps, samples, interval)
            res = observe.result_of(obs, w.name)
            win, _ = observe.window_of(obs)
        finally:
            tracer.close()
    finally:
        run.stop()
    return {"workload": w.name, "agent": w.agent, "seed": seed, "window_s": round(res.window_s, 2),
            "score": res.score, "verdict": res.verdict,
            "signals": {s.name: [s.value, s.points] for s in res.signals},
            "raw": {k: v for k, v in vars(win).items()}}


def auc(rows: list[dict]) -> float:
    """ROC AUC: the chance that a random agent scores above a random non-agent (ties: half)."""
    pos = [r["score"] for r in rows if r["agent"]]
    neg = [r["score"] for r in rows if not r["agent"]]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def confusion(rows: list[dict]) -> dict[str, int]:
    out = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
    for r in rows:
        said = r["score"] >= score.AGENT_THRESHOLD
        out[("tp" if said else "fn") if r["agent"] else ("fp" if said else "tn")] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", default="4,10", help="window lengths in seconds")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--raw", action="store_true", help="print every measurement")
    ap.add_argument("--lock", default=None, help="flock this file around each measurement")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    a = ap.parse_args()
    windows = [float(x) for x in a.windows.split(",")]
    seeds = [int(x) for x in a.seeds.split(",")]
    chosen = [w for w in corpus.CORPUS if not a.only or w.name in a.only.split(",")]
    server = corpus.start_server()
    per_window: dict[str, dict] = {}
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="swatch-detect-bench-") as tmp:
            for win in windows:
                samples = max(2, round(win / a.interval))
                rows = []
                for seed in seeds:
                    with locked(a.lock):
                        for w in chosen:
                            r = measure(w, server.ready, seed, samples, a.interval, Path(tmp))
                            rows.append(r)
                            if a.raw:
                                print(json.dumps(r), flush=True)
                per_window[f"{win:g}s"] = {"samples": samples, "interval_s": a.interval,
                                           "auc": round(auc(rows), 4), "confusion": confusion(rows),
                                           "runs": rows}
    finally:
        server.stop()
    print("| window | runs | TP | FN | FP | TN | ROC AUC |")
    print("|---|---|---|---|---|---|---|")
    for name, d in per_window.items():
        c = d["confusion"]
        print(f"| {name} | {len(d['runs'])} | {c['tp']} | {c['fn']} | {c['fp']} | {c['tn']} "
              f"| {d['auc']:.3f} |")
    print()
    print("| workload | agent | " + " | ".join(per_window) + " |")
    print("|---|---|" + "---|" * len(per_window))
    for w in chosen:
        cells = []
        for d in per_window.values():
            cells.append(", ".join(str(r["score"]) for r in d["runs"] if r["workload"] == w.name))
        print(f"| {w.name} | {'yes' if w.agent else 'no'} | " + " | ".join(cells) + " |")
    results = json.loads(a.out.read_text()) if a.out.exists() else {}
    results["detect"] = {"seeds": seeds, "threshold": score.AGENT_THRESHOLD,
                         "wall_s": round(time.monotonic() - t0, 1), "windows": per_window}
    a.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
