#!/usr/bin/env python3
"""swatch benchmark suite: swatch vs strace, perf trace, bpftrace and libbpf-tools.

Usage (as root; `make bench` runs it, `make bench BENCH_QUICK=1` the quick one):
    .venv/bin/python bench/run.py            # full run (5 interleaved runs per setup)
    .venv/bin/python bench/run.py --quick    # smoke run: small sizes, 2 runs, about a minute
    .venv/bin/python -m bench --only read,bystander --runs 7

Every workload is a small C program (bench/workloads/) that times its OWN loop and prints one
`RESULT key=value ...` line, so tracer start-up never enters the per-call figures. Runs are
interleaved (runner.py); ratios are taken only between setups of one run.

Outputs: a table on stdout, bench/results.json, bench/results.md (the README's tables) and
bench/results.png (matplotlib, optional). Installs nothing: `make bench-deps` does.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report, runner, workloads  # noqa: E402
from bench.peers import find_tools  # noqa: E402
from bench.procs import (  # noqa: E402
    CLEANUP_HOOKS, bpf_prog_ids, cleanup, is_bpffs, live, log, set_child_subreaper,
)
from bench.setups import Tools  # noqa: E402
from bench.trial import TrialRunner  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARTS = ("read", "getppid", "forkexec", "fileio", "bystander", "streaming", "programs")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                    help="small sizes and 2 runs: a smoke run, about a minute "
                         "(also BENCH_QUICK=1 in the environment)")
    ap.add_argument("--runs", type=int, default=None,
                    help="interleaved repetitions (default 5, quick 2)")
    ap.add_argument("--only", default="", help=f"comma list of parts: {','.join(PARTS)}")
    ap.add_argument("--setups", default="",
                    help="comma list of the syscall workloads' setups to run (their names in "
                         "the tables, e.g. 'swatch load --pid,swatch load --pid + detect'); "
                         "untraced always runs")
    ap.add_argument("--bystanders", default="",
                    help="comma list of the bystander part's tracers to run (their names, e.g. "
                         "'syscount -p OTHER,swatch load --pid OTHER --no-latency'); the "
                         "baseline always runs")
    ap.add_argument("--swatch", default=os.environ.get("SWATCH", str(ROOT / ".venv/bin/swatch")),
                    help="swatch CLI path")
    ap.add_argument("--pin-dir", default="/sys/fs/bpf/swatch-bench",
                    help="private bpffs pin dir for swatch load")
    ap.add_argument("--tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="scratch dir (tmpfs): workload files and tracer output files")
    ap.add_argument("--no-install", action="store_true",
                    help="no effect, kept for older command lines: the harness never installs "
                         "(make bench-deps does)")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--markdown", default=str(HERE / "results.md"))
    ap.add_argument("--chart", default=str(HERE / "results.png"))
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args(argv)
    args.only_parts = {x.strip() for x in args.only.split(",") if x.strip()}
    args.setup_names = {x.strip() for x in args.setups.split(",") if x.strip()} or None
    args.bystander_names = {x.strip() for x in args.bystanders.split(",") if x.strip()} or None
    unknown = args.only_parts - set(PARTS)
    if unknown:
        ap.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}; choose from "
                 f"{','.join(PARTS)}")
    return args


def meta_of(args: argparse.Namespace, reps: int, tools: Tools, notes: dict[str, str],
            versions: dict[str, str]) -> dict[str, Any]:
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(), "quick": args.quick, "runs_per_setup": reps,
        "interleaved": "round-robin over the setups of a workload each repetition, order "
                       "rotated per repetition",
        "binaries": tools.bins, "versions": versions, "peer_notes": notes,
        "workload_sizes": {w.name: {"fast": w.size(args.quick, False),
                                    "slow_tracers": w.size(args.quick, True)}
                           for w in workloads.WORKLOADS},
        "slow_tracers": [s.name for s in runner.syscall_setups(tools, args.pin_dir) if s.slow],
        "note": ("ns_per_call is timed by the workload around its own loop; slow (ptrace/perf/"
                 "printf) tracers run fewer calls, which does not change a per-call figure"),
    }


def prepare_swatch(tools: Tools, pin_dir: str, meta: dict[str, Any]) -> None:
    """bpffs mounted; the private pin dir unloaded and removed at the end, whatever happens."""
    swatch = tools.bins.get("swatch")
    if not swatch:
        return
    if not is_bpffs("/sys/fs/bpf"):
        r = subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], capture_output=True,
                           text=True)
        meta["bpffs"] = ("mounted bpffs on /sys/fs/bpf" if r.returncode == 0
                         else f"mount bpffs failed: {r.stderr}")

    def final_unload() -> None:
        if os.path.isdir(pin_dir):
            subprocess.run([swatch, "unload", "--pin-dir", pin_dir], capture_output=True,
                           timeout=60, env=dict(os.environ, SWATCH_PIN_DIR=pin_dir))
            try:
                os.rmdir(pin_dir)
            except OSError:
                pass

    CLEANUP_HOOKS.insert(0, final_unload)


def run_parts(args: argparse.Namespace, reps: int, tools: Tools,
              meta: dict[str, Any]) -> dict[str, Any]:
    trials = TrialRunner(args.quick, args.pin_dir, args.tmp, args.keep_tmp)
    res: dict[str, Any] = {"meta": meta}
    only = args.only_parts
    wl_only = only & set(workloads.BY_NAME) if only else None
    phases = [("workloads", not only or bool(wl_only),
               lambda: runner.run_syscall_workloads(trials, tools, reps, wl_only,
                                                   args.setup_names)),
              ("bystander", not only or "bystander" in only,
               lambda: runner.run_bystander(trials, tools, reps, args.bystander_names)),
              ("streaming", not only or "streaming" in only,
               lambda: runner.run_streaming(trials, tools, reps)),
              ("programs", not only or "programs" in only,
               lambda: runner.run_programs(trials, tools, reps))]
    for name, wanted, run in phases:
        if not wanted:
            continue
        log(f"{name}: {reps} interleaved runs per setup")
        t0 = time.monotonic()
        res[name] = run()
        meta[f"phase_s_{name}"] = time.monotonic() - t0
    return res


def leftovers(progs_before: dict[int, str] | None, pin_dir: str) -> dict[str, Any]:
    time.sleep(0.5)  # let the kernel free the programs of tracers that just exited
    progs_after = bpf_prog_ids()
    left: dict[str, Any] = {}
    if progs_before is not None and progs_after is not None:
        new = {i: n for i, n in progs_after.items() if i not in progs_before}
        if new:
            left["bpf_progs_new_since_start"] = new
            left["note"] = "may belong to other users of this machine; pids of ours all ended"
    if os.path.exists(pin_dir):
        left["pin_dir_still_exists"] = pin_dir
    left["our_processes_alive"] = live()
    return left


def _interrupted(_signo: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reps = args.runs or (2 if args.quick else 5)
    if os.geteuid() != 0:
        sys.exit("bench: error: must run as root (BPF tracers, perf, ptrace of other pids)")
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    set_child_subreaper()
    t_start = time.monotonic()
    progs_before = bpf_prog_ids()
    try:
        workloads.build()
        tools, notes, versions = find_tools(args.swatch)
        meta = meta_of(args, reps, tools, notes, versions)
        known = {s.name for s in runner.syscall_setups(tools, args.pin_dir)}
        if args.setup_names and args.setup_names - known:
            sys.exit(f"bench: error: --setups: unknown setup(s) "
                     f"{', '.join(sorted(args.setup_names - known))}; choose from "
                     f"{', '.join(sorted(known))}")
        prepare_swatch(tools, args.pin_dir, meta)
        res = run_parts(args, reps, tools, meta)
        meta["elapsed_s"] = time.monotonic() - t_start
        meta["loadavg_end"] = os.getloadavg()
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        cleanup()
        return 130
    finally:
        cleanup()
    left = res["leftovers"] = leftovers(progs_before, args.pin_dir)
    report.write_json(res, Path(args.out))
    Path(args.markdown).write_text(report.markdown(res))
    report.print_tables(res)
    why = report.write_chart(res, Path(args.chart))
    print(f"\nresults: {args.out}\ntables:  {args.markdown}", flush=True)
    print(f"chart:   {args.chart}" if why is None else f"chart:   skipped: {why}", flush=True)
    if left.get("bpf_progs_new_since_start") or left.get("pin_dir_still_exists"):
        print(f"leftovers: {left}", flush=True)
    print(f"elapsed: {meta.get('elapsed_s', 0):.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
