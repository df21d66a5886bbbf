"""Where sw_sys_enter / sw_sys_exit spend their time, step by step.

Builds variants of bpf/watcher.bpf.c with one step cut out each (a text edit of a copy, never
of the source), loads each with `swatch load --pid` on a getppid storm (build/workloads/storm)
and reads each program's ns per run from `swatch status --programs --json` (the kernel's BPF
run-time statistics, on only while it samples). The difference between a variant and `full`
is what the step costs. Variants are interleaved over --runs rounds; medians are printed.

    flock /tmp/swatch-kernel.lock .venv/bin/python bench/steps.py --runs 3

Only for measuring: a variant without a step does not count what swatch counts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench" / "steps"
SWATCH = str(ROOT / ".venv" / "bin" / "swatch")
STORM = str(ROOT / "build" / "workloads" / "storm")

ACCOUNT_PID = "\t}\n\tif (!ps) { /* first syscall of this process: name it once */"
# name -> [(text in watcher.bpf.c, its replacement)]; every text must be found once.
VARIANTS: dict[str, list[tuple[str, str]]] = {
    "main": [],  # watcher.bpf.c as it is on the branch main (the "before" of a change)
    "full": [],
    # sys_exit without the per-process per-CPU hash lookup and its adds
    "no_pid_stats": [
        ("bpf_map_lookup_elem(&pid_stats, &tgid);\n\tbool err", "NULL;\n\tbool err"),
        (ACCOUNT_PID, "\t}\n\treturn;\n" + ACCOUNT_PID[3:]),
    ],
    # sys_exit without account(): no per-syscall nor per-process statistics
    "no_account": [("\taccount(p, id, nr, ret, dur, info->flags);\n", "")],
    # sys_exit stops once the thread's syscall in flight is ended (filter + task storage)
    "exit_filter_only": [("\tnr = p->nr;\n\tif (nr >= SW_MAX_SYSCALLS)\n\t\treturn 0;\n\tret",
                          "\treturn 0;\n\tnr = p->nr;\n\tif (nr >= SW_MAX_SYSCALLS)\n"
                          "\t\treturn 0;\n\tret")],
    # sys_enter without the syscall_info + streaming lookups (stats-only: no args read anyway)
    "no_enter_info": [("\tif (nr < SW_MAX_SYSCALLS && streaming()) {",
                       "\tif (0) {")],
    # no clock reads: the entry's timestamp and the duration are constants
    "no_ktime": [("\tp->ts = bpf_ktime_get_ns();\n", "\tp->ts = 1;\n"),
                 ("\tdur = bpf_ktime_get_ns() - ts;\n", "\tdur = ts;\n")],
    # both programs return at once: the floor (raw_tp dispatch + the statistics' own clocks)
    "empty": [
        ("\tu32 nr;\n\n\tif (cfg.mode == SW_TARGET_PID) {", "\tu32 nr;\n\n\treturn 0;\n"
         "\tif (cfg.mode == SW_TARGET_PID) {"),
        ("\tp = end_syscall(id, &ts);\n", "\treturn 0;\n\tp = end_syscall(id, &ts);\n"),
    ],
}


def build(name: str, edits: list[tuple[str, str]]) -> Path:
    if name == "main":
        src = subprocess.run(["git", "-C", str(ROOT), "show", "main:bpf/watcher.bpf.c"],
                             check=True, capture_output=True, text=True).stdout
    else:
        src = (ROOT / "bpf" / "watcher.bpf.c").read_text()
    for old, new in edits:
        if src.count(old) != 1:
            sys.exit(f"steps: variant {name}: the text to cut is not in watcher.bpf.c once: "
                     f"{old[:60]!r}")
        src = src.replace(old, new)
    OUT.mkdir(parents=True, exist_ok=True)
    c = OUT / f"watcher_{name}.bpf.c"
    c.write_text(src)
    obj = OUT / f"watcher_{name}.bpf.o"
    arch = {"x86_64": "x86", "aarch64": "arm64"}[os.uname().machine]
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", "-mcpu=v3",
                    f"-D__TARGET_ARCH_{arch}", "-Wall", f"-I{ROOT}/vmlinux/{arch}",
                    f"-I{ROOT}/bpf", f"-I{ROOT}/bpf/include", "-c", str(c), "-o", str(obj)],
                   check=True)
    return obj


def measure(obj: Path) -> dict[str, float]:
    pin = f"/sys/fs/bpf/swatch-bench-steps-{os.getpid()}"
    env = {**os.environ, "SWATCH_BPF_OBJ": str(obj)}
    storm = subprocess.Popen([STORM, "getppid", str(10**15), "gate"], stdin=subprocess.PIPE)
    try:
        subprocess.run([SWATCH, "load", "--pid", str(storm.pid), "--pin-dir", pin], env=env,
                       check=True, capture_output=True)
        assert storm.stdin is not None
        storm.stdin.write(b"g")
        storm.stdin.flush()
        r = subprocess.run([SWATCH, "status", "--json", "--programs", "--pin-dir", pin],
                           env=env, check=True, capture_output=True, text=True)
        sample = json.loads(r.stdout)["program_stats"]
    finally:
        storm.kill()
        storm.wait()
        subprocess.run([SWATCH, "unload", "--pin-dir", pin], env=env, capture_output=True)
    out = {p["program"]: p["ns_per_run"] or 0.0 for p in sample["programs"]}
    out["runs_per_counted"] = (sum(p["runs"] for p in sample["programs"]
                                   if p["program"] == "sw_sys_exit")
                               / max(1, sample["syscalls_counted"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated variant names")
    args = ap.parse_args()
    names = [n for n in VARIANTS if not args.only or n in args.only.split(",")]
    objs = {n: build(n, VARIANTS[n]) for n in names}
    got: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for _ in range(args.runs):
        for n in names:
            got[n].append(measure(objs[n]))
    print(f"{'variant':<18} {'sys_enter ns/run':>17} {'sys_exit ns/run':>16} "
          f"{'exit runs/counted':>18}   (medians of {args.runs})")
    for n in names:
        med = {k: statistics.median(r[k] for r in got[n]) for k in got[n][0]}
        print(f"{n:<18} {med.get('sw_sys_enter', 0):>17.1f} {med.get('sw_sys_exit', 0):>16.1f} "
              f"{med['runs_per_counted']:>18.3f}")
    print(json.dumps(got), file=sys.stderr)


if __name__ == "__main__":
    main()
