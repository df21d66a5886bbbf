"""What the kernel's verifier spends on each tracer program, loaded as `swatch run` loads it.

Loads the tracer (SW_TARGET_PID, a held child as the target, the default profile) with every
program's log level set to BPF_LOG_STATS (4: the verifier's summary only) and a log buffer of
its own, then prints per program: the verification time the kernel reports, the instructions
it processed and the states it kept, and the wall time of bpf_object__load as a whole
(relocations, map creation, BTF, every program). Nothing is left loaded.

    flock /tmp/swatch-kernel.lock .venv/bin/python bench/verifier.py [--runs 3]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syscall_watcher.kernel import libbpf  # noqa: E402
from syscall_watcher.kernel._libbpf import ffi  # noqa: E402
from syscall_watcher.targets.target import Target  # noqa: E402
from syscall_watcher.trace.tracer import LoadedTracer  # noqa: E402

BPF_LOG_STATS = 4
LOG_BYTES = 1 << 16
_lib = ctypes.CDLL("libbpf.so.1")
_lib.bpf_program__set_log_level.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
_lib.bpf_program__set_log_buf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]

_logs: dict[str, ctypes.Array] = {}  # type: ignore[type-arg]
_load_s: list[float] = []
_real_load = libbpf.BpfObject.load


def stats_logs(obj: libbpf.BpfObject,
               logs: dict[str, ctypes.Array]) -> None:  # type: ignore[type-arg]
    """Give every program obj will load a BPF_LOG_STATS log of its own: logs[its name]."""
    for name, prog in obj.programs.items():
        if not prog.autoload:
            continue
        buf = logs[name] = ctypes.create_string_buffer(LOG_BYTES)
        ptr = int(ffi.cast("uintptr_t", prog._ptr))
        _lib.bpf_program__set_log_buf(ptr, buf, LOG_BYTES)
        _lib.bpf_program__set_log_level(ptr, BPF_LOG_STATS)


def _load_with_stats(self: libbpf.BpfObject) -> None:
    stats_logs(self, _logs)
    t0 = time.monotonic()
    _real_load(self)
    _load_s.append(time.monotonic() - t0)


def parse(log: str) -> tuple[float, int, int]:
    """(verification ms, instructions processed, total states) from a BPF_LOG_STATS log."""
    us = re.search(r"verification time (\d+) usec", log)
    insns = re.search(r"processed (\d+) insns", log)
    states = re.search(r"total_states (\d+)", log)
    return (int(us.group(1)) / 1000 if us else float("nan"),
            int(insns.group(1)) if insns else -1, int(states.group(1)) if states else -1)


def one_load() -> dict[str, tuple[float, int, int]]:
    _logs.clear()
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    try:
        tracer = LoadedTracer.load(Target(mode="pid", pid=pid, follow_children=True,
                                          label="verifier"), "default")
        tracer.close()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return {name: parse(buf.value.decode(errors="replace")) for name, buf in _logs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--log", action="store_true", help="print each program's verifier log")
    args = ap.parse_args()
    libbpf.BpfObject.load = _load_with_stats  # type: ignore[method-assign]
    runs = [one_load() for _ in range(args.runs)]
    if args.log:
        for name, buf in _logs.items():
            print(f"--- {name}\n{buf.value.decode(errors='replace')}")
    print(f"load average {os.getloadavg()[0]:.2f}; medians of {args.runs} loads")
    print("| program | verification (ms) | insns processed | states |")
    print("|---|---|---|---|")
    total = 0.0
    for name in runs[0]:
        ms = statistics.median(r[name][0] for r in runs)
        total += ms
        print(f"| {name} | {ms:.1f} | {runs[-1][name][1]:,} | {runs[-1][name][2]:,} |")
    print(f"| all programs | {total:.1f} | | |")
    print(f"bpf_object__load wall: {statistics.median(_load_s) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
