"""Where the time goes, per BPF program: the kernel's own run-time statistics.

While an fd from libbpf's bpf_enable_stats(BPF_STATS_RUN_TIME) is open, the kernel counts each
program's runs and their total time (run_cnt, run_time_ns; `bpftool prog show` prints them).
This costs every program on the machine a little (two clock reads per run), so the harness turns
it on only for the `programs` part, and says so; the ns/call figures of that part are therefore
not comparable with the other parts', only the per-program figures are the point.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
from typing import Any

from bench.procs import which

BPF_STATS_RUN_TIME = 0


class BpfStats:
    """Context manager: kernel BPF run-time statistics on while inside (error says why not)."""

    def __init__(self) -> None:
        self.fd = -1
        self.error = ""

    def __enter__(self) -> BpfStats:
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            fd = lib.bpf_enable_stats(BPF_STATS_RUN_TIME)
        except (OSError, AttributeError) as e:
            self.error = f"bpf_enable_stats from {name}: {e}"
            return self
        if fd < 0:
            err = ctypes.get_errno() or -fd
            self.error = f"bpf_enable_stats: {os.strerror(err)}"
        else:
            self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def programs() -> dict[int, dict[str, Any]]:
    """Every loaded BPF program: id -> {name, run_cnt, run_time_ns} (from bpftool)."""
    bpftool = which("bpftool")
    if not bpftool:
        return {}
    r = subprocess.run([bpftool, "-j", "prog", "show"], capture_output=True, text=True,
                       check=False)
    try:
        progs = json.loads(r.stdout or "[]")
    except ValueError:
        return {}
    return {p["id"]: {"name": p.get("name", "?"), "run_cnt": p.get("run_cnt", 0),
                      "run_time_ns": p.get("run_time_ns", 0)} for p in progs}


def new_programs(before: set[int]) -> dict[str, dict[str, Any]]:
    """The programs loaded since `before` was taken that ran: name -> runs, time, ns per run."""
    out: dict[str, dict[str, Any]] = {}
    for prog_id, p in sorted(programs().items()):
        if prog_id in before or not p["run_cnt"]:
            continue
        name = p["name"] if p["name"] not in out else f"{p['name']}#{prog_id}"
        out[name] = {"run_cnt": p["run_cnt"], "run_time_ns": p["run_time_ns"],
                     "ns_per_run": p["run_time_ns"] / p["run_cnt"]}
    return out


def per_call(progs: dict[str, dict[str, Any]], calls: int) -> dict[str, Any]:
    """What the programs cost per call of the workload's loop: all together and each."""
    return {"bpf_ns_per_call": sum(p["run_time_ns"] for p in progs.values()) / calls,
            "runs_per_call": {n: p["run_cnt"] / calls for n, p in progs.items()}}
