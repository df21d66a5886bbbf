"""`swatch status`: what a pinned tracer is doing — target, filter, traced pids, counters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syscall_watcher.kernel import libbpf
from syscall_watcher.kernel.libbpf import to_str
from syscall_watcher.kernel.system import require_root
from syscall_watcher.trace.pidstats import memory_bytes, slot_bytes
from syscall_watcher.trace.summary import plural
from syscall_watcher.trace.tracer import (
    MODE_IDS,
    MODE_NAMES,
    PinnedSession,
    membership_warnings,
    pin_state,
    program_lines,
    sample_programs,
)


@dataclass
class TracerStatus:
    """``info`` is `status --json`'s object; ``lines`` and ``warnings`` the human report."""

    info: dict[str, Any]
    lines: list[str]
    warnings: list[str] = field(default_factory=list)


def tracer_status(path: Path, programs: bool = False) -> TracerStatus:
    """Read the tracer pinned at ``path``; a stale or foreign pin dir is a SwatchError.
    ``programs``: also sample each program's cost (sample_programs: 1 s, BPF run-time
    statistics on for that second only)."""
    require_root()
    if pin_state(path).state == "absent":
        return TracerStatus({"loaded": False, "pin_dir": str(path)},
                            [f"swatch: nothing loaded at {path}"])
    session = PinnedSession.open(path)  # unless loaded: why not, in one line
    try:
        meta = session.meta()
        counters = session.counters()
        streaming, consumer = session.state()
        info = {
            "loaded": True,
            "pin_dir": str(path),
            "target": to_str(meta.target_label),
            "mode": MODE_NAMES.get(meta.mode, "?"),
            "filter": to_str(meta.profile),
            "latency_measured": session.latency_measured,
            "loaded_at": time.strftime("%Y-%m-%d %H:%M:%S",
                                       time.localtime(meta.load_time_ns / 1e9)),
            "pids": session.pids() if meta.mode == MODE_IDS["pid"] else [],
            "ring_size": int(meta.ring_size),
            "watching": consumer if streaming else None,
            "events_emitted": counters.emitted,
            "events_dropped": counters.dropped,
            "syscalls_counted": sum(int(s["count"]) for s in session.syscall_stats().values()),
            "max_pids": int(meta.max_pids),
            "pid_slots": int(meta.pid_slots),
            "pid_slots_memory": memory_bytes(int(meta.pid_slots)),
            "pid_slots_full": counters.pid_slots_full,
            "pid_filter_full": counters.pid_filter_full,
            "pid_stats_full": counters.pid_stats_full,
            "untracked": counters.untracked,
            "consumer_wakeups": counters.wakeups,
            "io_uring": {"traced": (path / "links" / "io_uring_complete").exists(),
                         "submitted": counters.uring_submitted,
                         "completed": counters.uring_completed,
                         "ops_counted": sum(int(s["count"])
                                            for s in session.uring_stats().values())},
        }
        if programs:
            info["program_stats"] = sample_programs(path, session)
    finally:
        session.close()
    lines = [f"swatch: loaded at {info['pin_dir']} since {info['loaded_at']}",
             f"  target     {info['target']} (filter {info['filter']})"]
    if info["pids"]:
        lines.append(f"  traced     {plural(len(info['pids']), 'process', 'processes')}: "
                     + " ".join(map(str, info["pids"][:20])))
    lines += [
        f"  watching   {'pid ' + str(consumer) if streaming else 'no consumer attached'}",
        f"  syscalls   {info['syscalls_counted']:,} counted"
        + ("" if info["latency_measured"] else
           ", latency not measured (--no-latency: sys_exit only, no events)"),
        (f"  processes  {int(meta.pid_slots):,} slots counted per CPU "
         f"({info['pid_slots_memory'] / (1 << 20):.1f} MiB: slots x {libbpf.NUM_CPUS} CPUs x "
         f"{slot_bytes(1)} B, preallocated; --stats-slots), up to {int(meta.max_pids):,} "
         "exited (--max-pids)"),
        (f"  io_uring   {counters.uring_submitted:,} operations submitted, "
         f"{counters.uring_completed:,} completed" if info["io_uring"]["traced"] else
         "  io_uring   NOT traced (this kernel has no io_uring tracepoints)"),
        (f"  events     {counters.total_emitted:,} emitted, {counters.total_dropped:,} "
         "dropped (ring buffer full)"),
    ]
    if programs:
        lines += program_lines(info["program_stats"])
    return TracerStatus(info, lines, membership_warnings(counters, int(meta.max_pids),
                                                         int(meta.pid_slots)))
