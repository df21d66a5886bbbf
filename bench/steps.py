"""Where sw_sys_enter / sw_sys_exit spend their time, step by step.

Builds variants of bpf/watcher.bpf.c with one step cut out each (a text edit of a copy, never
of the source), loads each with `swatch load --pid` on a getppid storm (build/workloads/storm)
and reads each program's ns per run over 1 s with the kernel's BPF run-time statistics on
(what `swatch status --programs` shows, read here from the link pins so that main's swatch can
be measured the same way). The difference between a variant and `full`
is what the step costs. Variants are interleaved over --runs rounds; medians are printed.

    flock /tmp/swatch-kernel.lock .venv/bin/python bench/steps.py --runs 3
    flock /tmp/swatch-kernel.lock .venv/bin/python bench/steps.py --storm read \
        --only main,full,full_detect --runs 5

`full_detect` is `full` while a `swatch detect` on the pinned tracer holds its lease (the
file-bytes counters and the DNS ring on, bpf/watcher.h SW_DETECT_LEASE): what detect costs per
syscall, against `full`, what `summary` alone costs.

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
MAIN_SWATCH = os.environ.get("BENCH_SWATCH_BEFORE", "/work/main/.venv/bin/swatch")
STORM = str(ROOT / "build" / "workloads" / "storm")

# name -> [(text in watcher.bpf.c, its replacement)]; every text must be found once.
VARIANTS: dict[str, list[tuple[str, str]]] = {
    "main": [],  # main's swatch as it is (BENCH_SWATCH_BEFORE, default /work/main/.venv/bin/swatch)
    "main_obj": [],  # main's watcher.bpf.c loaded by this tree's swatch (SWATCH_BPF_OBJ)
    "full": [],
    "full_detect": [],  # full, a detect run holding the lease meanwhile
    # sys_exit without the per-process counts (the slot lookup and its adds)
    "no_pid_stats": [("\tstruct sw_pid_stat *ps = process_stat(p, id, shared, true);\n",
                      "\tstruct sw_pid_stat *ps = NULL;\n")],
    # sys_exit without detect's counters (connects; file bytes and DNS under the lease)
    "no_detect": [("\t\t\tsw_detect_io(p, ps, info, ret, now);\n\t}\n\tif (wants_event",
                   "\t\t\t;\n\t}\n\tif (wants_event")],
    # sys_exit without account(): no per-syscall nor per-process statistics (nor detect's)
    "no_account": [("\t\tstruct sw_pid_stat *ps = account(p, id, nr, ret, dur, info->flags, "
                    "&shared);\n", "\t\tstruct sw_pid_stat *ps = NULL;\n\t\tshared = false;\n")],
    # sys_exit stops once the thread's syscall in flight is ended (filter + task storage)
    "exit_filter_only": [("\tnr = p->nr;\n\tif (nr >= SW_MAX_SYSCALLS)\n\t\treturn 0;\n\tret",
                          "\treturn 0;\n\tnr = p->nr;\n\tif (nr >= SW_MAX_SYSCALLS)\n"
                          "\t\treturn 0;\n\tret")],
    # sys_enter without the syscall_info + streaming lookups (stats-only: no args read anyway)
    "no_enter_info": [("\tif (nr < SW_MAX_SYSCALLS) {\n\t\tstruct sw_syscall_info *info",
                       "\tif (0) {\n\t\tstruct sw_syscall_info *info")],
    # no clock reads: the entry's timestamp and the duration are constants
    "no_ktime": [("\tp->detect_args = 0;\n\tnow = bpf_ktime_get_ns();\n",
                  "\tp->detect_args = 0;\n\tnow = 1;\n"),
                 ("\tnow = bpf_ktime_get_ns();\n\tdur = now - ts;\n", "\tnow = 1;\n\tdur = ts;\n")],
    # the clock read of one side only (no_ktime split): which side's read costs what
    "no_ktime_enter": [("\tp->detect_args = 0;\n\tnow = bpf_ktime_get_ns();\n",
                        "\tp->detect_args = 0;\n\tnow = 1;\n")],
    "no_ktime_exit": [("\tnow = bpf_ktime_get_ns();\n\tdur = now - ts;\n",
                       "\tnow = 1;\n\tdur = ts;\n")],
    # both programs return at once: the floor (raw_tp dispatch + the statistics' own clocks)
    "empty": [
        ("sw_sys_enter, struct pt_regs *regs, long syscall_nr)\n{\n",
         "sw_sys_enter, struct pt_regs *regs, long syscall_nr)\n{\n\treturn 0;\n"),
        ("sw_sys_exit, struct pt_regs *regs, long syscall_ret)\n{\n",
         "sw_sys_exit, struct pt_regs *regs, long syscall_ret)\n{\n\treturn 0;\n"),
    ],
}


def build(name: str, edits: list[tuple[str, str]]) -> Path:
    if name == "full_detect":
        return build("full", edits)
    if name in ("main", "main_obj"):
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


def sample(pin: str, seconds: float = 1.0) -> dict[str, float]:
    """ns per run and runs of sys_enter/sys_exit over `seconds`, BPF statistics on meanwhile
    (read from the link pins directly: main's swatch has no `status --programs`)."""
    import time

    from syscall_watcher.kernel import libbpf

    links = {"sw_sys_enter": Path(pin) / "links" / "sys_enter",
             "sw_sys_exit": Path(pin) / "links" / "sys_exit"}
    fd = libbpf.enable_run_stats()
    try:
        before = {n: libbpf.linked_prog_stats(p) for n, p in links.items()}
        time.sleep(seconds)
        after = {n: libbpf.linked_prog_stats(p) for n, p in links.items()}
    finally:
        os.close(fd)
    out: dict[str, float] = {}
    for n in links:
        runs = after[n].run_cnt - before[n].run_cnt
        out[n] = (after[n].run_time_ns - before[n].run_time_ns) / max(1, runs)
        out[n + "_runs"] = runs
    return out


def hold_detect_lease(swatch: str, pin: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A `swatch detect` on the pinned tracer, observing (its lease held) until killed."""
    sys.path.insert(0, str(ROOT))  # run as a script: bench/ is on the path, not the root
    from bench.setups import start_detect

    proc, err = start_detect(swatch, pin, env)
    if proc is None:
        sys.exit(f"steps: {err}")
    return proc


def measure(name: str, obj: Path, storm_call: str = "getppid") -> dict[str, float]:
    pin = f"/sys/fs/bpf/swatch-bench-steps-{os.getpid()}"
    swatch, env = SWATCH, {**os.environ, "SWATCH_BPF_OBJ": str(obj)}
    if name == "main":  # main's own swatch: its Python and its object
        swatch, env = MAIN_SWATCH, {k: v for k, v in os.environ.items()
                                    if k != "SWATCH_BPF_OBJ"}
    storm = subprocess.Popen([STORM, storm_call, str(10**15), "gate"], stdin=subprocess.PIPE)
    detect = None
    try:
        subprocess.run([swatch, "load", "--pid", str(storm.pid), "--pin-dir", pin], env=env,
                       check=True, capture_output=True)
        if name == "full_detect":
            detect = hold_detect_lease(swatch, pin, env)
        assert storm.stdin is not None
        storm.stdin.write(b"g")
        storm.stdin.flush()
        return sample(pin)
    finally:
        if detect is not None:
            detect.terminate()
            detect.wait()
        storm.kill()
        storm.wait()
        subprocess.run([swatch, "unload", "--pin-dir", pin], env=env, capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated variant names")
    ap.add_argument("--storm", choices=("getppid", "read"), default="getppid",
                    help="the traced loop: getppid, or 1-byte reads from /dev/zero")
    args = ap.parse_args()
    names = [n for n in VARIANTS if not args.only or n in args.only.split(",")]
    objs = {n: build(n, VARIANTS[n]) for n in names}
    got: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for _ in range(args.runs):
        for n in names:
            got[n].append(measure(n, objs[n], args.storm))
    print(f"{'variant':<18} {'sys_enter ns/run':>17} {'sys_exit ns/run':>16} "
          f"{'sys_exit runs/s':>16}   (medians of {args.runs})")
    for n in names:
        med = {k: statistics.median(r[k] for r in got[n]) for k in got[n][0]}
        print(f"{n:<18} {med.get('sw_sys_enter', 0):>17.1f} {med.get('sw_sys_exit', 0):>16.1f} "
              f"{med['sw_sys_exit_runs']:>16.0f}")
    print(json.dumps(got), file=sys.stderr)


if __name__ == "__main__":
    main()
