"""Processes as targets: resolve a --pid, refuse what cannot be one, hold it by pidfd.

A pid is only a number: the process it names can exit and the number be reused. A pidfd
(``pidfd_open``) names one process for good, and polls readable once that process has exited,
so a loader opens one before it writes the pid into a map and checks it after attaching.
"""

from __future__ import annotations

import os
import select
from dataclasses import dataclass

from syscall_watcher.errors import SwatchError

PF_KTHREAD = 0x00200000
PIDFD_THREAD = getattr(os, "PIDFD_THREAD", os.O_EXCL)  # Linux 6.9: a pidfd for one thread
DEFAULT_PID_MAX = 4194304  # PID_MAX_LIMIT on 64-bit


@dataclass(frozen=True)
class Resolved:
    """A --pid after resolution: the process (tgid), and a notice if the user gave a thread."""

    pid: int
    notice: str | None = None


def _stat(pid: int) -> tuple[str, int, int]:
    """(state, ppid, flags) from /proc/<pid>/stat; FileNotFoundError if there is no such task."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[1]), int(fields[6])


def _tgid(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"Tgid:"):
                return int(line.split()[1])
    raise FileNotFoundError(pid)


def resolve_pid(pid: int) -> Resolved:
    """The process a --pid names. A thread id resolves to its process (with a notice);
    no such task, a zombie or a kernel thread is refused in one line."""
    if pid <= 0:
        raise SwatchError(f"no such process: {pid}")
    try:
        tgid = _tgid(pid)
        state, _, flags = _stat(tgid)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        raise SwatchError(f"no such process: {pid}") from None
    notice = None
    if tgid != pid:
        notice = f"swatch: {pid} is a thread of process {tgid}; targeting process {tgid}"
    if flags & PF_KTHREAD:
        raise SwatchError(f"pid {tgid} is a kernel thread: it makes no system calls to trace "
                          "or police")
    if state in ("Z", "X"):
        raise SwatchError(f"pid {tgid} is a zombie (it has exited; its parent has not reaped "
                          "it): nothing to trace or police")
    return Resolved(tgid, notice)


def pid_exists(pid: int) -> bool:
    return pid > 0 and os.path.isdir(f"/proc/{pid}")


def pid_max() -> int:
    """The kernel's highest pid + 1 (/proc/sys/kernel/pid_max)."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return DEFAULT_PID_MAX


def descendants(pid: int, skip: int | None = None) -> list[int]:
    """Every live descendant process of pid, from /proc; ``skip`` and its subtree left out."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state, ppid, _ = _stat(int(entry))
        except (OSError, ValueError):
            continue
        if state in ("Z", "X"):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child == skip:
                continue
            out.append(child)
            todo.append(child)
    return out


def threads(pid: int) -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


class PidFd:
    """One process, held by a pidfd from before its pid is written anywhere."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self.fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise SwatchError(f"no such process: {pid}") from None

    def exited(self) -> bool:
        """Has this very process exited (zombie or reaped)? Never fooled by a reused pid."""
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        return bool(p.poll(0))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PidFd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pidfds(pids: list[int]) -> list[PidFd]:
    """pidfds for the pids still alive (those that exited meanwhile are left out)."""
    out = []
    for pid in pids:
        try:
            out.append(PidFd(pid))
        except SwatchError:
            continue
    return out


def thread_pidfds(pid: int) -> list[int]:
    """A pidfd per thread of pid (Linux >= 6.9), else one for the process (its main thread).
    The caller closes them."""
    fds: list[int] = []
    try:
        for tid in threads(pid):
            try:
                fds.append(os.pidfd_open(tid, PIDFD_THREAD))
            except ProcessLookupError:
                continue
        return fds
    except OSError:
        for fd in fds:
            os.close(fd)
    return [os.pidfd_open(pid)]


def add_existing(session, pids: list[int], max_pids: int) -> None:  # type: ignore[no-untyped-def]
    """Add processes that already exist to a tracer's or an enforcer's pid map (its add_pid /
    remove_pid); any that exit meanwhile are taken out again, so a reused pid inherits
    nothing."""
    held = open_pidfds(pids)
    try:
        for h in held:
            try:
                session.add_pid(h.pid)
            except SwatchError as err:
                raise SwatchError(f"the target tree already has more than {max_pids} processes "
                                  f"(--max-pids); nothing was loaded: {err}") from None
        for h in held:
            if h.exited():
                session.remove_pid(h.pid)
    finally:
        for h in held:
            h.close()
