"""Whom to watch: the Target every kernel component (the tracer, the enforcer) is loaded for,
and the room its pid-keyed maps get."""

from __future__ import annotations

from dataclasses import dataclass

from syscall_watcher.errors import SwatchError
from syscall_watcher.targets.process import pid_max


@dataclass
class Target:
    """Whom to trace or police. ``mode``: "all", "pid", "comm", "uid" or "cgroup" (the tracer's
    MODE_NAMES; the enforcer takes "pid" and "cgroup")."""

    mode: str = "all"
    pid: int = 0
    comm: str = ""
    uid: int = 0
    cgroup_id: int = 0
    cgroup_level: int = 0
    cgroup_path: str = ""
    follow_children: bool = True
    label: str = "system-wide"
    exclude_pids: tuple[int, ...] = ()
    more_pids: tuple[int, ...] = ()  # mode "pid": further processes traced with ``pid``
    max_pids: int = 0  # max_entries of the pid-keyed maps; 0 = the kernel's pid_max
    stats_slots: int | None = None  # the tracer's per-process slots; None = by memory

    @property
    def all_pids(self) -> tuple[int, ...]:
        return (self.pid, *(p for p in self.more_pids if p != self.pid))


# The pid-keyed hashes allocate their bucket array up front even with BPF_F_NO_PREALLOC:
# 16 bytes per slot (measured: 0.5 MB at 32,768, 64 MB at 4,194,304 per map). Membership does
# not depend on them (children are marked in task-local storage), so the default is the
# kernel's pid_max up to 65,536 (1 MB a map); --max-pids asks for more or less.
DEFAULT_MAX_PIDS_CAP = 65536


def max_pids_for(target: Target) -> int:
    """max_entries for the target's pid-keyed maps: --max-pids, else pid_max (capped)."""
    n = target.max_pids or min(pid_max(), DEFAULT_MAX_PIDS_CAP)
    if n < 1 or n > 1 << 22:
        raise SwatchError(f"--max-pids {n}: choose 1 to {1 << 22} (the kernel's pid limit)")
    return n
