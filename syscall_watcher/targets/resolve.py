"""The target the user named (--pid, --comm, --uid, --container), checked and resolved to what
the kernel filters on: tgids, a command name, a uid, a cgroup."""

from __future__ import annotations

import pwd
import sys
from pathlib import Path
from typing import TextIO

from syscall_watcher.errors import SwatchError
from syscall_watcher.targets.target import Target

MAX_PIDS_LIMIT = 1 << 22  # the kernel's PID_MAX_LIMIT
TASK_COMM_LEN = 16
UID_NONE = 0xFFFFFFFF  # (uid_t)-1 means "no user"


def one_pid(pids: list[int] | None) -> int | None:
    """--pid names one process here; several would silently keep only the last."""
    if not pids:
        return None
    if len(pids) > 1:
        raise SwatchError(f"one --pid at a time (got {len(pids)}: "
                          f"{' '.join(map(str, pids))}); trace a tree with one --pid and its "
                          "children are followed")
    return pids[0]


def resolve_target(pid: int | list[int] | None = None, comm: str | None = None,
                   uid: str | None = None, container: str | None = None, *,
                   no_children: bool = False, max_pids: int | None = None,
                   stats_slots: int | None = None,
                   notices: TextIO | None = sys.stderr) -> Target:
    """One target from the options given (none: system-wide). A thread id becomes its process
    (said on ``notices``); zombies, kernel threads, unknown users and containers are refused."""
    pids = ([pid] if isinstance(pid, int) else list(dict.fromkeys(pid))) if pid else []
    chosen = [n for n, v in (("--pid", pids or None), ("--comm", comm), ("--uid", uid),
                             ("--container", container)) if v is not None]
    if len(chosen) > 1:
        raise SwatchError(f"choose one target, not {' and '.join(chosen)}")
    if max_pids is not None and not 1 <= max_pids <= MAX_PIDS_LIMIT:
        raise SwatchError(f"--max-pids {max_pids}: choose 1 to {MAX_PIDS_LIMIT}")
    if pids:
        target = _pids_target(pids, no_children, notices)
    elif comm is not None:
        target = _comm_target(comm)
    elif uid is not None:
        target = _uid_target(uid)
    elif container is not None:
        target = _container_target(container)
    else:
        target = Target(mode="all", label="system-wide")
    target.max_pids = max_pids or 0
    target.stats_slots = stats_slots
    return target


def _pids_target(pids: list[int], no_children: bool, notices: TextIO | None) -> Target:
    from syscall_watcher.targets.process import resolve_pid

    resolved = []
    for p in pids:  # a thread id becomes its process; zombies, kernel threads refused
        r = resolve_pid(p)
        if r.notice and notices is not None:
            notices.write(r.notice + "\n")
            notices.flush()
        resolved.append(r.pid)
    resolved = list(dict.fromkeys(resolved))
    label = ("pid " if len(resolved) == 1 else "pids ") + ",".join(map(str, resolved))
    return Target(mode="pid", pid=resolved[0], more_pids=tuple(resolved[1:]),
                  follow_children=not no_children, label=label[:63])


def _comm_target(comm: str) -> Target:
    if not comm or len(comm.encode()) > TASK_COMM_LEN - 1:
        raise SwatchError(f"--comm {comm!r}: a command name is 1 to 15 bytes (the kernel's "
                          "TASK_COMM_LEN)")
    return Target(mode="comm", comm=comm, label=f"comm {comm}")


def _uid_target(uid: str) -> Target:
    if uid.isdigit():
        n = int(uid)
        if n >= UID_NONE:
            raise SwatchError(f"--uid {uid}: a user id is 0 to {UID_NONE - 1}")
    else:
        try:
            n = pwd.getpwnam(uid).pw_uid
        except KeyError:
            raise SwatchError(f"no such user: {uid}") from None
    return Target(mode="uid", uid=n, label=f"uid {n}")


def _container_target(ref: str) -> Target:
    from syscall_watcher.targets.containers import cgroup_v2_root, resolve_container

    c = resolve_container(ref)
    level = len(Path(c.cgroup_path).relative_to(cgroup_v2_root()).parts)
    return Target(mode="cgroup", cgroup_id=c.cgroup_id, cgroup_level=level,
                  cgroup_path=c.cgroup_path, label=f"container {c.short_id} ({c.name})")
